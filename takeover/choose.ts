import { createHash } from 'node:crypto';

/*
 * Who takes what over: rendezvous (highest-random-weight) hashing of a key (a dead server's
 * service address, or a connection) over the live members of the group. Every member computes
 * the same answer from the same membership view without talking to the others, and when a
 * member joins or leaves only the keys it would win (or held) move.
 */
export function chooseAdopter(key: string, liveMembers: readonly string[]): string | undefined {
  return rankMembers(key, liveMembers)[0];
}

/* The members in rendezvous order for `key`: the first one is its adopter, the next its fallback. */
export function rankMembers(key: string, liveMembers: readonly string[]): string[] {
  const weighed = [...new Set(liveMembers)].map((member) => ({
    member,
    weight: createHash('sha256').update(`${key}|${member}`).digest().readBigUInt64BE(0),
  }));
  weighed.sort((a, b) => (a.weight === b.weight ? (a.member < b.member ? -1 : 1) : a.weight > b.weight ? -1 : 1));
  return weighed.map((w) => w.member);
}
