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
 * origin again in order if they are complete GETs or HEADs; anything else cannot be replayed.
 * A client that has sent bytes the soft state does not know about, an offset the map cannot
 * explain, or an unresumable response all mean reset: never a guess.
 */
import { requestOf, type Exchange, type StreamMap } from './stream-map.js';

/* One response to (re)send: the rest of its head, then its body from bodyOffset. */
export interface ResumeStep {
  exchange: Exchange;
  headRest: Buffer;
  bodyOffset: number;
}

export type ResumePlan =
  /* clientFinished: the client has sent its FIN (no further requests will come). */
  | { kind: 'resume'; steps: ResumeStep[]; replay: Exchange[]; clientFinished: boolean }
  | { kind: 'finish' }
  /* The client has acknowledged our FIN: the connection is over, nothing to rebuild. */
  | { kind: 'closed' }
  | { kind: 'abort'; reason: string };

export function planResume(map: StreamMap, serverOffset: number, clientOffset: number, knownClientOffset: number): ResumePlan {
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
    case 'unresumable':
      return { kind: 'abort', reason: position.reason };
    case 'headers':
    case 'body': {
      const exchange = position.exchange;
      const first: ResumeStep =
        position.kind === 'headers'
          ? { exchange, headRest: exchange.head!.subarray(position.offset), bodyOffset: 0 }
          : { exchange, headRest: Buffer.alloc(0), bodyOffset: position.bodyOffset };
      return followingSteps(map, exchange.index + 1, [first], clientFinished);
    }
    case 'between': {
      // The last exchange closed the connection: all that is left to send is the FIN.
      if (position.after && closesConnection(position.after)) return { kind: 'finish' };
      const plan = followingSteps(map, position.after ? position.after.index + 1 : 0, [], clientFinished);
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
function followingSteps(map: StreamMap, fromIndex: number, steps: ResumeStep[], clientFinished: boolean): ResumePlan {
  const replay: Exchange[] = [];
  for (const exchange of map.retained) {
    if (exchange.index < fromIndex) continue;
    if (exchange.responseStart !== undefined) {
      if (!exchange.resumable) return { kind: 'abort', reason: `later response ${exchange.index}: ${exchange.notResumableReason}` };
      steps.push({ exchange, headRest: exchange.head!, bodyOffset: 0 });
      continue;
    }
    if (exchange.requestEnd === undefined) return { kind: 'abort', reason: `request ${exchange.index} was still arriving` };
    if (exchange.method !== 'GET' && exchange.method !== 'HEAD') return { kind: 'abort', reason: `${exchange.method} request in flight cannot be replayed` };
    replay.push(exchange);
  }
  return { kind: 'resume', steps, replay, clientFinished };
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
