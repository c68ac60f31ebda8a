/*
 * The request head as the origin sees it: the client's exact head without any `Wedge-*` field
 * (those names belong to the wedge ↔ origin state contract, so a client must never be able to
 * forge them), with the wedge's own contract fields added before the final empty line.
 *
 * In: a head that parsed (CRLF lines, no obs-fold) and the fields to add. Out: new head bytes;
 * the head itself when there is nothing to strip or add.
 */
import type { HeaderList } from './http-common.js';

const CONTRACT_PREFIX = 'wedge-';

export function forwardedHead(rawHead: Buffer, headers: HeaderList, extra: HeaderList): Buffer {
  const strips = headers.some(([name]) => name.startsWith(CONTRACT_PREFIX));
  if (!strips && extra.length === 0) return rawHead;
  // The head ends with CRLF CRLF: split leaves two empty strings at the end.
  const lines = rawHead.toString('latin1').split('\r\n').slice(0, -2);
  const [start, ...fields] = lines;
  const kept = fields.filter((line) => !line.slice(0, CONTRACT_PREFIX.length).toLowerCase().startsWith(CONTRACT_PREFIX));
  const added = extra.map(([name, value]) => `${name}: ${value}`);
  return Buffer.from([start, ...kept, ...added, '', ''].join('\r\n'), 'latin1');
}

/* Whether a field name is one of the state contract's (never taken from a client). */
export function isContractField(name: string): boolean {
  return name.toLowerCase().startsWith(CONTRACT_PREFIX);
}
