/*
 * What operators see as metric labels, in two tables beside the error codes: why a connection was
 * reset (wedge_aborts_total{reason}) and how a takeover of one connection ended
 * (wedge_takeovers_total{result}). Like error codes, a published name is never renamed or reused;
 * docs/errors.md documents every row (a test checks both directions).
 */

export const ABORT_REASONS = {
  'client-error': 'the client socket failed (usually the client reset the connection)',
  'client-request-malformed': 'a request the origin had already begun to receive turned out malformed',
  'splice-error': 'the kernel splice of a response body failed',
  'stream-map-error': 'the stream map could not record what happened (an invariant broke): the connection can no longer be resumed exactly',
  'origin-error': 'the origin connection failed',
  'origin-malformed': 'the origin sent a response head that does not parse',
  'origin-malformed-chunks': 'the origin sent a chunked body with bad framing',
  'origin-switched-protocols': 'the origin answered 101 Switching Protocols, which the wedge does not relay',
  'origin-closed-early': 'the origin closed before its response was complete',
  'origin-closed-mid-body': 'the origin closed in the middle of a body being spliced',
  'origin-data-during-splice': 'the origin sent bytes outside the body being spliced',
  'client-timeout': 'the client sent no byte of the request body the origin was receiving for --body-timeout, after its response had begun',
  'response-timeout': 'no byte of the response moved for --response-timeout (the origin went silent, or the client stopped reading it), after it had begun',
  'resume-refused': 'on a resume from a snapshot (state contract), the local origin did not answer Wedge-Resumed with the snapshot\'s offset and the original status, or ended the resumed body early',
  'representation-changed': 'on resume (after a takeover, or after the origin dropped a body), no origin answered with the rest of the same representation (changed file, no ranges)',
  'origin-lost': 'the origin dropped (or stalled in) a response body, and neither the local origin within --origin-retry nor any peer\'s origin served the rest',
  'handover-failed': 'an in-place upgrade: the new wedge process could not take the connection\'s socket, or failed after the old one had frozen it',
  'drain-not-moved': 'a planned drain ended (--drain-timeout) with the connection still here: no peer took it over and it did not finish',
  stalled: 'the watchdog found bytes for a waiting client unacknowledged for its bound, and no exact repair (the client is not ahead, or its position cannot be resumed)',
} as const satisfies Record<string, string>;

export type AbortReason = keyof typeof ABORT_REASONS;

/*
 * `outcome`: success (the client is served on), elsewhere (another server took the connection:
 * no failure) or aborted (the client is reset or left to time out; also counted as the abort
 * reason `takeover: <result>`).
 */
export const TAKEOVER_RESULTS = {
  resumed: { outcome: 'success', meaning: 'rebuilt here at the client\'s next byte and served on' },
  finished: { outcome: 'success', meaning: 'the connection was over (or only our FIN was left): nothing to rebuild' },
  'lost-race': { outcome: 'elsewhere', meaning: 'TCP Migrate: the client agent accepted another candidate' },
  'stood-down': { outcome: 'elsewhere', meaning: 'TCP Migrate: another candidate won before this one\'s turn came' },
  'not-movable': { outcome: 'aborted', meaning: 'TCP Migrate: the client runs no agent, so its connection cannot move' },
  'not-service-address': { outcome: 'aborted', meaning: 'address takeover: the connection\'s address is not a service address of its owner (a server\'s own): not moved' },
  'bad-record': { outcome: 'aborted', meaning: 'the advertised stream map does not parse' },
  'address-failed': { outcome: 'aborted', meaning: 'the service address could not be adopted (guard or ip addr failed)' },
  'client-gone': { outcome: 'aborted', meaning: 'the client answered the probe with RST' },
  'probe-failed': { outcome: 'aborted', meaning: 'the client never answered the probe' },
  'restore-failed': { outcome: 'aborted', meaning: 'TCP_REPAIR could not rebuild the socket; the client is reset by hand' },
  unresumable: { outcome: 'aborted', meaning: 'the client\'s position cannot be resumed exactly (see the stream map rules); reset' },
  failed: { outcome: 'aborted', meaning: 'an unexpected error while resuming; reset' },
} as const satisfies Record<string, { outcome: 'success' | 'elsewhere' | 'aborted'; meaning: string }>;

export type TakeoverResult = keyof typeof TAKEOVER_RESULTS;
export type TakeoverOutcome = (typeof TAKEOVER_RESULTS)[TakeoverResult]['outcome'];

export function takeoverOutcome(result: TakeoverResult): TakeoverOutcome {
  return TAKEOVER_RESULTS[result].outcome;
}

/* The abort label of a takeover that ended the client's connection. */
export type TakeoverAbort = `takeover: ${TakeoverResult}`;
