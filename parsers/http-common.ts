/*
 * Byte-level pieces shared by the request parser, the response head parser and the chunked
 * framer: character classes (RFC 9110 §5.6.2 tchar, §5.5 field-vchar) as 256-entry lookup
 * tables, the field-line parser for a complete header section, and list/Content-Length helpers.
 *
 * Everything here works on a Buffer plus index range and allocates only the strings it returns.
 * Every violation throws a WedgeError with the code the caller passes, so the same logic reports
 * WEDGE_ERR_HTTP_MALFORMED for a client and WEDGE_ERR_ORIGIN_MALFORMED for the origin.
 */

import { WedgeError, type WedgeErrorCode } from '../errors/codes.js';

export const CR = 0x0d;
export const LF = 0x0a;
export const SP = 0x20;
export const HTAB = 0x09;
export const COLON = 0x3a;

export type HeaderList = Array<[name: string, value: string]>;

/** tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA */
export const IS_TCHAR = new Uint8Array(256);
/** field-vchar = VCHAR / obs-text; SP and HTAB are allowed inside a value but not at its ends. */
export const IS_FIELD_VCHAR = new Uint8Array(256);
/** Characters allowed in a request-target: VCHAR only (no obs-text: RFC 3986 is ASCII). */
export const IS_TARGET_CHAR = new Uint8Array(256);
export const HEX_VALUE = new Int8Array(256).fill(-1);

for (let c = 0; c < 256; c++) {
  const isAlnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  IS_TCHAR[c] = isAlnum || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c)) ? 1 : 0;
  IS_FIELD_VCHAR[c] = (c >= 0x21 && c <= 0x7e) || c >= 0x80 ? 1 : 0;
  IS_TARGET_CHAR[c] = c >= 0x21 && c <= 0x7e ? 1 : 0;
}
for (let d = 0; d < 10; d++) HEX_VALUE[0x30 + d] = d;
for (let d = 0; d < 6; d++) {
  HEX_VALUE[0x41 + d] = 10 + d;
  HEX_VALUE[0x61 + d] = 10 + d;
}

/**
 * Parses the field lines of a complete header section. `from` is the first byte after the
 * start line's CRLF; `to` is the index of the CR of the final empty line (so [from, to) holds
 * zero or more lines, each ending in CRLF). Strict: a bare LF or CR, a line starting with
 * whitespace (obs-fold), whitespace before the colon, an empty or non-token name, or a control
 * character in a value is rejected.
 */
export function parseFieldLines(buf: Buffer, from: number, to: number, code: WedgeErrorCode): HeaderList {
  const headers: HeaderList = [];
  // One string for the whole section; names and values are cheap slices of it.
  const text = buf.toString('latin1', from, to);
  let lineStart = from;
  while (lineStart < to) {
    const lf = buf.indexOf(LF, lineStart);
    if (lf === -1 || lf >= to) throw new WedgeError(code, 'header line without CRLF');
    const lineEnd = lf - 1;
    if (lineEnd < lineStart || buf[lineEnd] !== CR) throw new WedgeError(code, 'bare LF in header section');
    const first = buf[lineStart]!;
    if (first === SP || first === HTAB) throw new WedgeError(code, 'obs-fold (header line starting with whitespace)');

    let i = lineStart;
    while (i < lineEnd && IS_TCHAR[buf[i]!]) i++;
    if (i === lineEnd || buf[i] !== COLON) {
      const c = buf[i];
      if (c === SP || c === HTAB) throw new WedgeError(code, 'whitespace between header name and colon');
      throw new WedgeError(code, 'invalid character in header name');
    }
    if (i === lineStart) throw new WedgeError(code, 'empty header name');
    const name = text.slice(lineStart - from, i - from).toLowerCase();

    let valueStart = i + 1;
    while (valueStart < lineEnd && (buf[valueStart] === SP || buf[valueStart] === HTAB)) valueStart++;
    let valueEnd = valueStart;
    for (let j = valueStart; j < lineEnd; j++) {
      const c = buf[j]!;
      if (IS_FIELD_VCHAR[c]) valueEnd = j + 1;
      else if (c !== SP && c !== HTAB) {
        throw new WedgeError(code, c === CR ? 'bare CR in header value' : 'control character in header value');
      }
    }
    headers.push([name, text.slice(valueStart - from, valueEnd - from)]);
    lineStart = lf + 1;
  }
  return headers;
}

/** Splits a comma-separated field value into trimmed members; empty members are kept as ''. */
export function splitList(value: string): string[] {
  const members = value.split(',');
  for (let k = 0; k < members.length; k++) members[k] = trimOws(members[k]!);
  return members;
}

function trimOws(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && (text.charCodeAt(start) === SP || text.charCodeAt(start) === HTAB)) start++;
  while (end > start && (text.charCodeAt(end - 1) === SP || text.charCodeAt(end - 1) === HTAB)) end--;
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

/** Lower-cased members of every field named `name` (e.g. the Connection options). */
export function listMembers(headers: HeaderList, name: string): string[] {
  const members: string[] = [];
  for (const [n, v] of headers) {
    if (n !== name) continue;
    for (const member of splitList(v)) members.push(member.toLowerCase());
  }
  return members;
}

export function headerValues(headers: HeaderList, name: string): string[] {
  const values: string[] = [];
  for (const [n, v] of headers) if (n === name) values.push(v);
  return values;
}

export function firstHeader(headers: HeaderList, name: string): string | undefined {
  for (const [n, v] of headers) if (n === name) return v;
  return undefined;
}

const DIGITS_ONLY = /^[0-9]+$/;

/** Parses one Content-Length member: 1*DIGIT, at most Number.MAX_SAFE_INTEGER; else undefined. */
export function parseDecimalLength(text: string): number | undefined {
  if (!DIGITS_ONLY.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}
