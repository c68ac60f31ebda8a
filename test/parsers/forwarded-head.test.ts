/* The head the origin sees: Wedge-* fields of the client gone, the wedge's own added, the rest byte-exact. */
import { describe, expect, it } from 'vitest';
import { forwardedHead } from '../../parsers/forwarded-head.js';
import { RequestParser } from '../../parsers/http-request.js';

function parse(text: string) {
  const event = new RequestParser().push(Buffer.from(text, 'latin1')).find((e) => e.type === 'head');
  if (event?.type !== 'head') throw new Error('no head');
  return event.head;
}

describe('forwardedHead', () => {
  it('keeps a head without contract fields as it is', () => {
    const head = parse('GET / HTTP/1.1\r\nHost: a\r\nX-Keep:  v \r\n\r\n');
    expect(forwardedHead(head.rawHead, head.headers, [])).toBe(head.rawHead);
  });
  it('strips every client Wedge-* field, whatever its case, and appends the wedge\'s', () => {
    const head = parse('POST /x HTTP/1.1\r\nHost: a\r\nwEdGe-Resume: abc\r\nContent-Length: 0\r\nWedge-Exchange: 9\r\n\r\n');
    const out = forwardedHead(head.rawHead, head.headers, [['Wedge-Exchange', '3']]).toString('latin1');
    expect(out).toBe('POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nWedge-Exchange: 3\r\n\r\n');
    expect(parse(out).headers.filter(([n]) => n.startsWith('wedge-'))).toEqual([['wedge-exchange', '3']]);
  });
});
