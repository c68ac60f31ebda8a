/*
 * Where a taken-over connection resumes, and how (the plan; relay/resume.ts carries it out).
 *
 * In: the dead owner's stream map, the client's next wanted byte (server-to-client offset) and
 * its own next byte to send (client-to-server offset), both learnt by the probe.
 * Out: a plan the adopting relay executes, or the reason the connection must be reset.
 *
 *   inside the response headers  resend the rest of the recorded header bytes, then the body
 *                                fetched again from the local origin (Range from byte 0)
 *   inside the body              Range: bytes=N- with If-Range: <validator> to the local origin;
 *                                the answer must be the 206 of exactly the same representation
 *   between exchanges            adopt the idle connection as it is
 * Requests the old owner had received but not begun to answer (pipelined) are sent to the
 * origin again in order if they are complete GETs or HEADs, or (the state contract) any request
 * whose body is in the replay log, once the origin's state is restored from the snapshot first;
 * anything else cannot be replayed.
 * A response that is not resumable this way (generated: chunked, no validator, not a GET) is
 * resumed from the origin's snapshot when one covers the client's position (the state contract).
 * A client that has sent bytes the soft state does not know about, an offset the map cannot
 * explain, or an unresumable response all mean reset: never a guess.
 */
import { notReplayable, requestOf, type Exchange, type StreamMap } from './stream-map.js';

/*
 * What the origin will know when the replayed requests reach it: 'restored' (a step restarts it
 * from the snapshot first), or the exchange after which the snapshot stands (the adopter hands it
 * to the origin with the next request, so the replay must start right there), or nothing.
 */
type Session = 'restored' | number | undefined;

function sessionEnd(map: StreamMap, snapshot: Snapshot | undefined): Session {
  return snapshot && sessionAt(map, snapshot)?.exchange;
}

/* The snapshot when it stands at the end of a whole exchange (a session between exchanges). */
export function sessionAt(map: StreamMap, snapshot: Snapshot): Snapshot | undefined {
  const exchange = map.retained.find((e) => e.index === snapshot.exchange);
  return exchange?.bodyLength !== undefined && exchange.bodyLength === snapshot.offset ? snapshot : undefined;
}

/* The origin's snapshot of a connection's state (the state contract): it accounts for every
 * request up to and including `exchange` and for the first `offset` bytes of its response body. */
export interface Snapshot {
  exchange: number;
  offset: number;
  data: Buffer;
}

/* One response to (re)send: the rest of its head, then its body from bodyOffset. With `state`,
 * a generated response: the origin restarts from the snapshot at body byte `state.offset`
 * (Wedge-Resume), and the bytes before bodyOffset are dropped. */
export interface ResumeStep {
  exchange: Exchange;
  headRest: Buffer;
  bodyOffset: number;
  state?: { snapshot: Snapshot; offset: number };
}

export type ResumePlan =
  /* clientFinished: the client has sent its FIN (no further requests will come). */
  | { kind: 'resume'; steps: ResumeStep[]; replay: Exchange[]; clientFinished: boolean }
  | { kind: 'finish' }
  /* The client has acknowledged our FIN: the connection is over, nothing to rebuild. */
  | { kind: 'closed' }
  | { kind: 'abort'; reason: string };

export function planResume(map: StreamMap, serverOffset: number, clientOffset: number, knownClientOffset: number, snapshot?: Snapshot): ResumePlan {
  // One sequence number beyond the known bytes is the client's FIN (a client that closed, or
  // half-closed after its request). Taken for a FIN, a lone unknown data byte would only make
  // the connection close after the current response, as a keep-alive race does.
  const clientFinished = clientOffset === knownClientOffset + 1;
  if (clientOffset !== knownClientOffset && !clientFinished) {
    return { kind: 'abort', reason: `client sent ${clientOffset - knownClientOffset} byte(s) the soft state does not know` };
  }
  const position = map.locate(serverOffset);
  switch (position.kind) {
    case 'out-of-range':
      return closedAt(map, serverOffset - 1) ? { kind: 'closed' } : { kind: 'abort', reason: position.reason };
    case 'unresumable': {
      const step = snapshot && stateStep(position.exchange, serverOffset, snapshot, map);
      if (typeof step !== 'object') return { kind: 'abort', reason: `${position.reason}${step ? `; ${step}` : ''}` };
      return followingSteps(map, position.exchange.index + 1, [step], clientFinished, 'restored');
    }
    case 'headers':
    case 'body': {
      const exchange = position.exchange;
      const first: ResumeStep =
        position.kind === 'headers'
          ? { exchange, headRest: exchange.head!.subarray(position.offset), bodyOffset: 0 }
          : { exchange, headRest: Buffer.alloc(0), bodyOffset: position.bodyOffset };
      return followingSteps(map, exchange.index + 1, [first], clientFinished, sessionEnd(map, snapshot));
    }
    case 'between': {
      // The last exchange closed the connection: all that is left to send is the FIN.
      if (position.after && closesConnection(position.after)) return { kind: 'finish' };
      const plan = followingSteps(map, position.after ? position.after.index + 1 : 0, [], clientFinished, sessionEnd(map, snapshot));
      // The client closed an idle connection: nothing to send but our FIN.
      return plan.kind === 'resume' && clientFinished && plan.replay.length === 0 && plan.steps.length === 0 ? { kind: 'finish' } : plan;
    }
  }
}

/*
 * After the resume point: responses the old owner had begun are sent again whole, in order
 * (they must be resumable from their first byte); requests it had not answered yet are replayed
 * if they are complete GETs or HEADs.
 */
function followingSteps(map: StreamMap, fromIndex: number, steps: ResumeStep[], clientFinished: boolean, session: Session): ResumePlan {
  const replay: Exchange[] = [];
  for (const exchange of map.retained) {
    if (exchange.index < fromIndex) continue;
    if (exchange.responseStart !== undefined) {
      if (!exchange.resumable) return { kind: 'abort', reason: `later response ${exchange.index}: ${exchange.notResumableReason}` };
      steps.push({ exchange, headRest: exchange.head!, bodyOffset: 0 });
      continue;
    }
    // With the origin's state restored first, every replayed request takes effect once.
    const stateful = session === 'restored' || (session !== undefined && (replay[0] ?? exchange).index === session + 1);
    const reason = notReplayable(exchange, stateful);
    if (reason) return { kind: 'abort', reason };
    replay.push(exchange);
  }
  return { kind: 'resume', steps, replay, clientFinished };
}

/*
 * A generated response resumed from the origin's snapshot, if the snapshot covers where the
 * client stands: at or before its position in this exchange's body, or at the end of the one
 * before. The body's wire bytes must be its logical bytes (a Content-Length or read-until-close
 * body: chunked framing is not re-made), and its request must be one the wedge can send again
 * (no body). Else why not.
 */
function stateStep(exchange: Exchange, offset: number, snapshot: Snapshot, map: StreamMap): ResumeStep | string {
  if (exchange.bodyKind !== 'length' && exchange.bodyKind !== 'until-close') return `a ${exchange.bodyKind} body cannot be resumed from a snapshot`;
  // Its request goes to the origin again: with its body, from the replay log.
  const unsendable = notReplayable(exchange, true);
  if (unsendable) return unsendable;
  const headEnd = exchange.responseStart! + exchange.headerLength!;
  const inHead = offset < headEnd;
  const bodyOffset = inHead ? 0 : offset - headEnd;
  const headRest = inHead ? exchange.head!.subarray(offset - exchange.responseStart!) : Buffer.alloc(0);
  if (snapshot.exchange === exchange.index && snapshot.offset <= bodyOffset) return { exchange, headRest, bodyOffset, state: { snapshot, offset: snapshot.offset } };
  const previous = map.retained.find((e) => e.index === snapshot.exchange);
  if (snapshot.exchange === exchange.index - 1 && previous?.bodyLength === snapshot.offset) return { exchange, headRest, bodyOffset, state: { snapshot, offset: 0 } };
  return `the snapshot (exchange ${snapshot.exchange}, offset ${snapshot.offset}) does not cover body byte ${bodyOffset} of exchange ${exchange.index}`;
}

/* Whether `offset` is the end of an exchange after which the connection closed (so offset + 1
 * is our FIN, acknowledged). */
function closedAt(map: StreamMap, offset: number): boolean {
  const position = map.locate(offset);
  return position.kind === 'between' && position.after !== undefined && closesConnection(position.after);
}

function closesConnection(exchange: Exchange): boolean {
  return !(exchange.keepAlive && requestKeepsAlive(exchange));
}

export function requestKeepsAlive(exchange: Exchange): boolean {
  return requestOf(exchange).keepAlive;
}
