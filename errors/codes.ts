/*
 * Every error kind Wedge reports, in one table. Codes are stable: a code is never renamed or
 * reused once published; retired codes stay listed. `status` is the HTTP status sent to a client
 * where the error ends an exchange. docs/errors.md documents every code (a test checks it).
 */

export const ERRORS = {
  WEDGE_ERR_CONFIG: { message: 'invalid configuration' },
  WEDGE_ERR_PRIVILEGE: { message: 'missing privilege or kernel feature' },
  WEDGE_ERR_HTTP_MALFORMED: { status: 400, message: 'malformed HTTP request' },
  WEDGE_ERR_HTTP_HEADER_TOO_LARGE: { status: 431, message: 'request header section too large' },
  WEDGE_ERR_HTTP_SMUGGLING: { status: 400, message: 'ambiguous message framing (request smuggling vector)' },
  WEDGE_ERR_HTTP_UNSUPPORTED: { status: 501, message: 'unsupported HTTP feature' },
  WEDGE_ERR_HTTP_URI_TOO_LONG: { status: 414, message: 'request line too long' },
  WEDGE_ERR_HTTP_REQUEST_TIMEOUT: { status: 408, message: 'request not received in time' },
  WEDGE_ERR_ORIGIN_TIMEOUT: { status: 504, message: 'origin did not answer in time' },
  WEDGE_ERR_TOO_MANY_CONNECTIONS: { status: 503, message: 'too many client connections' },
  WEDGE_ERR_ORIGIN_MALFORMED: { status: 502, message: 'malformed response from origin' },
  WEDGE_ERR_STREAM_MAP: { message: 'stream map record out of order or inconsistent' },
  WEDGE_ERR_ORIGIN_UNREACHABLE: { status: 502, message: 'origin unreachable' },
  WEDGE_ERR_LAB: { message: 'lab operation failed' },
  WEDGE_ERR_TAKEOVER: { message: 'takeover step failed' },
  WEDGE_ERR_HANDOVER: { message: 'in-place upgrade failed' },
  WEDGE_ERR_STATE_KEY: { message: 'missing or invalid soft-state cluster key' },
  WEDGE_ERR_STATE_TRANSPORT: { message: 'soft-state multicast channel failed' },
  WEDGE_ERR_STATE_RECORD_TOO_LARGE: { message: 'soft-state record too large to advertise' },
  WEDGE_ERR_NATIVE: { message: 'system call in the native helper failed' },
  WEDGE_ERR_ADDRESS: { message: 'could not add or remove a service address' },
  WEDGE_ERR_MIGRATE_OPTION: { message: 'invalid TCP Migrate option field' },
  WEDGE_ERR_MIGRATE_NEGOTIATION: { message: 'TCP Migrate key negotiation failed' },
  WEDGE_ERR_MIGRATE_AGENT: { message: 'TCP Migrate client agent failed' },
} as const satisfies Record<string, { message: string; status?: number }>;

export type WedgeErrorCode = keyof typeof ERRORS;

export class WedgeError extends Error {
  readonly code: WedgeErrorCode;
  readonly status: number | undefined;

  constructor(code: WedgeErrorCode, detail?: string, options?: { cause?: unknown }) {
    const row: { message: string; status?: number } = ERRORS[code];
    super(detail ? `${row.message}: ${detail}` : row.message, options);
    this.name = 'WedgeError';
    this.code = code;
    this.status = row.status;
  }
}
