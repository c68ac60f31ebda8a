import { createHash } from 'node:crypto';

/*
 * Who adopts a dead server's service address: rendezvous (highest-random-weight) hashing of
 * the address over the live members of the group. Every member computes the same answer from
 * the same membership view without talking to the others, and when a member joins or leaves only
 * the addresses it would win (or held) move.
 */
export function chooseAdopter(serviceAddress: string, liveMembers: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestWeight = -1n;
  for (const member of liveMembers) {
    const weight = createHash('sha256').update(`${serviceAddress}|${member}`).digest().readBigUInt64BE(0);
    if (weight > bestWeight || (weight === bestWeight && best !== undefined && member < best)) {
      best = member;
      bestWeight = weight;
    }
  }
  return best;
}
