/*
 * `wedge/app`: the state contract in a few lines of a node:http handler (the contract itself is
 * plain HTTP; see the README, "Stateful origins").
 *
 *   const state = wedgeState(req);
 *   const from = state.resume ? decode(state.resume.snapshot) : 0;   // restart after a takeover
 *   if (state.resume) res.setHeader('Wedge-Resumed', String(state.resume.offset));
 *   ... write the body; every so often:
 *   await state.save(encode(position), { offset: bytesWritten });
 *
 * Behind no wedge (no Wedge-State header) save() does nothing, so the same origin runs alone.
 */
import type { IncomingMessage } from 'node:http';

export class WedgeStateError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'WedgeStateError';
  }
}

export interface WedgeState {
  /* The exchange's index on its client connection (Wedge-Exchange), when behind a wedge. */
  readonly exchange: number | undefined;
  /* Where this connection's snapshots go (Wedge-State). */
  readonly url: string | undefined;
  /* Set when the wedge restarts this exchange from a snapshot after a takeover: answer with the
   * original status, `Wedge-Resumed: <offset>`, and the body from logical byte `offset` on
   * (with a Content-Length, or ending at close). */
  readonly resume: { snapshot: Buffer; offset: number } | undefined;
  /* Stores `snapshot` (at most 4 KiB): the state accounts for every request up to this exchange
   * (or `exchange`) and for the first `offset` bytes of its response body. Rejects with
   * WedgeStateError on 404 (connection ended), 409 (position went backwards), 413 (too large). */
  save(snapshot: Buffer | string, position: { offset: number; exchange?: number }): Promise<void>;
}

export function wedgeState(req: IncomingMessage): WedgeState {
  const url = single(req.headers['wedge-state']);
  const exchange = integer(single(req.headers['wedge-exchange']));
  const resumeData = single(req.headers['wedge-resume']);
  const resumeOffset = integer(single(req.headers['wedge-resume-offset']));
  const resume = resumeData !== undefined && resumeOffset !== undefined ? { snapshot: Buffer.from(resumeData, 'base64'), offset: resumeOffset } : undefined;
  return {
    exchange,
    url,
    resume,
    async save(snapshot, position) {
      if (url === undefined) return;
      const at = position.exchange ?? exchange;
      if (at === undefined) throw new WedgeStateError(400, 'no Wedge-Exchange: give position.exchange');
      const body = typeof snapshot === 'string' ? Buffer.from(snapshot) : snapshot;
      const response = await fetch(url, { method: 'PUT', body: new Uint8Array(body), headers: { 'wedge-exchange': String(at), 'wedge-offset': String(position.offset) } });
      if (response.status !== 204) throw new WedgeStateError(response.status, `snapshot refused: ${response.status} ${await response.text()}`);
    },
  };
}

function single(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function integer(value: string | undefined): number | undefined {
  return value !== undefined && /^\d{1,15}$/.test(value) ? Number(value) : undefined;
}
