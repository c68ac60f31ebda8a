import { ERRORS } from '../errors/codes.js';

/* A failed system call in the native helper: `syscall` names it ('setsockopt', 'splice', ...),
 * `errno` is the number and `code` its symbol ('EPERM', 'ETIMEDOUT', ...), like Node's own
 * system errors. Its row in the error table is WEDGE_ERR_NATIVE. */
export class NativeError extends Error {
  readonly wedgeCode = 'WEDGE_ERR_NATIVE' satisfies keyof typeof ERRORS;

  constructor(
    message: string,
    readonly syscall: string,
    readonly errno: number,
    readonly code: string,
  ) {
    super(message);
    this.name = 'NativeError';
  }
}
