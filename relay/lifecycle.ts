/*
 * The lifecycle of one client connection through the wedge, from accept (or adoption after a
 * takeover) to its end. Every change goes through Lifecycle.enter() or Lifecycle.note(), which
 * check it against the tables below, log `old -> new`, and tell the listeners (the relay's owner
 * and the replication, which derives the connection's soft state from it: softStateOn()).
 *
 * States (exactly one at a time):
 *
 *   idle           between exchanges. May: parse requests, start the next exchange (or resume
 *                  step), close. The stream map ends at a response boundary (or before the first
 *                  response).
 *   forwarding     a request (or a resume range request) is at the origin; its final response head
 *                  is not in yet. May: relay request body bytes, relay interim 1xx heads, answer a
 *                  502 if the origin fails before any response byte. Can go wrong: the origin
 *                  fails or answers garbage (502 or abort), the client resets.
 *   relaying-body  the final head is recorded and relayed; the body flows through JavaScript,
 *                  framed exactly. Can go wrong: the origin closes early or stalls (the rest is
 *                  asked for again: back to forwarding) or frames badly (abort).
 *   splicing       the rest of a known-length body moves in the kernel (native splice). Nothing
 *                  may be written to the client or read from the origin by JavaScript until the
 *                  splice reports. Can go wrong: the splice fails or comes up short (abort).
 *   closing        our FIN is queued after the last response: nothing more is written. Ends when
 *                  the client closes too (or has already).
 *   closed         ended cleanly, or the client went away. Terminal.
 *   aborted        reset, because the stream could not be completed exactly; counted by reason
 *                  (errors/reasons.ts). Terminal.
 *   relinquished   another server took the connection over: closed in repair mode, so this host
 *                  sends nothing more to the client. Terminal.
 *
 * Facts (noted once, never undone; they qualify the state):
 *
 *   last-request     no further request will be parsed (the client sent `Connection: close`, a
 *                    request was rejected, or the client finished): once the queued exchanges are
 *                    answered the connection closes. Bytes still arriving are counted, not parsed.
 *   client-finished  the client has sent its FIN (implies last-request); after our own FIN there
 *                    is nothing left to wait for.
 *   handed-off       this server asked its group to take the connection (TCP Migrate; implies
 *                    move-expected). The soft state says so, and the group races for it.
 *   move-expected    the connection may move away any moment (handed off, or this server was
 *                    declared dead and its group is migrating its connections). It is served on
 *                    until the client's agent answers our segments with RST, which then ends it as
 *                    relinquished, not as a failure.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';

export type ConnectionState = 'idle' | 'forwarding' | 'relaying-body' | 'splicing' | 'closing' | 'closed' | 'aborted' | 'relinquished';
export type ConnectionFact = 'last-request' | 'client-finished' | 'handed-off' | 'move-expected';

const ENDINGS = ['closed', 'aborted', 'relinquished'] as const satisfies readonly ConnectionState[];

export const LEGAL_TRANSITIONS: Readonly<Record<ConnectionState, readonly ConnectionState[]>> = {
  idle: ['forwarding', 'closing', ...ENDINGS],
  // -> idle: a response with nothing left to send (a resumed one already complete), or a 502.
  forwarding: ['relaying-body', 'idle', 'closing', ...ENDINGS],
  // -> forwarding: the origin dropped the body; the rest is asked for again (relay/origin-recovery.ts).
  'relaying-body': ['splicing', 'forwarding', 'idle', 'closing', ...ENDINGS],
  splicing: ['forwarding', 'idle', 'closing', ...ENDINGS],
  closing: ENDINGS,
  closed: [],
  aborted: [],
  relinquished: [],
};

export type LifecycleChange =
  | { kind: 'state'; from: ConnectionState; to: ConnectionState; reason?: string }
  | { kind: 'fact'; fact: ConnectionFact };

export class IllegalTransitionError extends Error {
  constructor(from: ConnectionState, to: ConnectionState) {
    super(`illegal connection transition ${from} -> ${to}`);
    this.name = 'IllegalTransitionError';
  }
}

export class Lifecycle extends EventEmitter<{ change: [LifecycleChange] }> {
  private current: ConnectionState = 'idle';
  private readonly facts = new Set<ConnectionFact>();

  constructor(private readonly log: Pick<Logger, 'debug'>) {
    super();
  }

  get state(): ConnectionState {
    return this.current;
  }

  get ended(): boolean {
    return isEnding(this.current);
  }

  /* Serving: not ended and not closing (a new exchange may still start). */
  get serving(): boolean {
    return !this.ended && this.current !== 'closing';
  }

  has(fact: ConnectionFact): boolean {
    return this.facts.has(fact);
  }

  enter(next: ConnectionState, reason?: string): void {
    const from = this.current;
    if (next === from) return;
    if (!LEGAL_TRANSITIONS[from].includes(next)) throw new IllegalTransitionError(from, next);
    this.current = next;
    this.log.debug({ from, to: next, ...(reason ? { reason } : {}) }, 'state');
    this.emit('change', { kind: 'state', from, to: next, ...(reason ? { reason } : {}) });
  }

  note(fact: ConnectionFact): void {
    if (this.facts.has(fact) || this.ended) return;
    this.facts.add(fact);
    this.log.debug({ fact }, 'fact');
    this.emit('change', { kind: 'fact', fact });
    if (fact === 'client-finished') this.note('last-request');
    if (fact === 'handed-off') this.note('move-expected');
  }
}

export function isEnding(state: ConnectionState): boolean {
  return (ENDINGS as readonly ConnectionState[]).includes(state);
}

/*
 * What the group must hear after a change (replication/replication.ts acts on it):
 *   advertise  the record as it is now (stream map, byte counts, hand-off flag);
 *   withdraw   the connection is over: receivers forget it at once;
 *   release    taken over elsewhere: forget it here and say nothing (the taker's record stands);
 *   none       nothing the soft state carries changed.
 * Entering forwarding, relaying-body or idle is when a request begins, a response head is
 * recorded, a response ends: the stream map changed. Stream-map changes between transitions
 * (a request body that ends while its exchange runs) are advertised too (StreamMap.onChange).
 */
export type SoftStateAction = 'advertise' | 'withdraw' | 'release' | 'none';

const ON_ENTRY: Readonly<Record<ConnectionState, SoftStateAction>> = {
  idle: 'advertise',
  forwarding: 'advertise',
  'relaying-body': 'advertise',
  splicing: 'none',
  closing: 'none',
  closed: 'withdraw',
  aborted: 'withdraw',
  relinquished: 'release',
};

const ON_FACT: Readonly<Record<ConnectionFact, SoftStateAction>> = {
  'last-request': 'none',
  'client-finished': 'none',
  'handed-off': 'advertise',
  'move-expected': 'none',
};

export function softStateOn(change: LifecycleChange): SoftStateAction {
  return change.kind === 'state' ? ON_ENTRY[change.to] : ON_FACT[change.fact];
}
