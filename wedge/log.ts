import { pino, type Logger } from 'pino';

/* Structured JSON logs on stderr, so stdout stays free for command output (`--json`). */
export function createLogger(name: string, level = process.env.WEDGE_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid, host: name } }, pino.destination(2));
}

export type { Logger };
