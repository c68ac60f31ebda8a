/* The head the origin sees: Wedge-* fields of the client gone, the wedge's own added, the rest byte-exact. */
import { describe, expect, it } from 'vitest';
import { clientAddressFields, forwardedHead } from '../../parsers/forwarded-head.js';
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

  it("replaces whatever address the client claims (X-Forwarded-For or Forwarded, any case) by the one the wedge sees", () => {
    const head = parse('GET /f HTTP/1.1\r\nHost: a\r\nx-forwarded-FOR: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nAccept: */*\r\n\r\n');
    const xff = forwardedHead(head.rawHead, head.headers, clientAddressFields('xff', '10.77.0.10')).toString('latin1');
    expect(xff).toBe('GET /f HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Forwarded-For: 10.77.0.10\r\n\r\n');
    const rfc = forwardedHead(head.rawHead, head.headers, clientAddressFields('forwarded', '10.77.0.10')).toString('latin1');
    expect(rfc).toBe('GET /f HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nForwarded: for=10.77.0.10\r\n\r\n');
    expect(clientAddressFields('forwarded', '2001:db8::1')).toEqual([['Forwarded', 'for="[2001:db8::1]"']]);
  });
  it('passes the client\'s X-Forwarded-For on untouched when --forwarded is none', () => {
    const head = parse('GET /f HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n');
    expect(forwardedHead(head.rawHead, head.headers, clientAddressFields('none', '10.77.0.10'))).toBe(head.rawHead);
  });
});
