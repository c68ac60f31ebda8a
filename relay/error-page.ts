/*
 * The answer to a request the wedge refuses or cannot get answered (errors/codes.ts gives each
 * code its status): a short plain-text page naming the code, and `Connection: close`, since
 * nothing after it on the connection is read.
 */
import { WedgeError } from '../errors/codes.js';
import type { AbortReason } from '../errors/reasons.js';

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  414: 'URI Too Long',
  431: 'Request Header Fields Too Large',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

export function errorResponse(error: WedgeError): Buffer {
  const status = error.status ?? 400;
  const body = `${error.code}: ${error.message}\n`;
  const head =
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\n` +
    `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
    `Connection: close\r\n\r\n`;
  return Buffer.from(head + body);
}

/* The error a client is answered with when the origin failed before the response began. */
export function originError(reason: AbortReason, err: unknown): WedgeError {
  if (err instanceof WedgeError) return err;
  const detail = err instanceof Error ? err.message : reason;
  return new WedgeError(reason === 'origin-malformed' ? 'WEDGE_ERR_ORIGIN_MALFORMED' : 'WEDGE_ERR_ORIGIN_UNREACHABLE', detail);
}
