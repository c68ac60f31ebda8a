/*
 * The request head as the origin sees it: the client's exact head without any `Wedge-*` field
 * (those names belong to the wedge ↔ origin state contract, so a client must never be able to
 * forge them) and without any field the wedge sets itself, with the wedge's own fields added
 * before the final empty line. When the wedge tells the origin the client's address
 * (`--forwarded`), the client's own X-Forwarded-For and Forwarded fields go too, whichever the
 * wedge sets: an origin must never read an address the client made up.
 *
 * In: a head that parsed (CRLF lines, no obs-fold) and the fields to add. Out: new head bytes;
 * the head itself when there is nothing to strip or add.
 */
import type { HeaderList } from './http-common.js';

const CONTRACT_PREFIX = 'wedge-';
const CLIENT_ADDRESS_FIELDS = ['x-forwarded-for', 'forwarded'];

/* How the origin learns the client's address (`--forwarded`): not at all, X-Forwarded-For, or RFC 7239 Forwarded. */
export const FORWARDED_MODES = ['none', 'xff', 'forwarded'] as const;
export type ForwardedMode = (typeof FORWARDED_MODES)[number];

/* The field that names the client (`address`, IPv4 or IPv6) to the origin in `mode`. */
export function clientAddressFields(mode: ForwardedMode, address: string): HeaderList {
  if (mode === 'xff') return [['X-Forwarded-For', address]];
  if (mode === 'forwarded') return [['Forwarded', address.includes(':') ? `for="[${address}]"` : `for=${address}`]];
  return [];
}

/* Whether a client's field `name` is left out of what the origin sees when the wedge adds `extra`. */
export function strippedBy(extra: HeaderList): (name: string) => boolean {
  if (extra.length === 0) return isContractField;
  const names = new Set(extra.map(([name]) => name.toLowerCase()));
  if (CLIENT_ADDRESS_FIELDS.some((name) => names.has(name))) for (const name of CLIENT_ADDRESS_FIELDS) names.add(name);
  return (name) => isContractField(name) || names.has(name.toLowerCase());
}

export function forwardedHead(rawHead: Buffer, headers: HeaderList, extra: HeaderList): Buffer {
  const stripped = strippedBy(extra);
  const strips = headers.some(([name]) => stripped(name));
  if (!strips && extra.length === 0) return rawHead;
  // The head ends with CRLF CRLF: split leaves two empty strings at the end.
  const lines = rawHead.toString('latin1').split('\r\n').slice(0, -2);
  const [start, ...fields] = lines;
  const kept = fields.filter((line) => !stripped(line.slice(0, line.indexOf(':'))));
  const added = extra.map(([name, value]) => `${name}: ${value}`);
  return Buffer.from([start, ...kept, ...added, '', ''].join('\r\n'), 'latin1');
}

/* Whether a field name is one of the state contract's (never taken from a client). */
export function isContractField(name: string): boolean {
  return name.toLowerCase().startsWith(CONTRACT_PREFIX);
}
