/*
 * The connection lifecycle and the soft state each change produces. Every legal transition (and
 * every fact) is walked through a real Lifecycle, tracked by the real Replication; what the
 * support group is sent is recorded and compared with the table below, which is the contract.
 */
import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { RelayConnection } from '../../relay/connection.js';
import { IllegalTransitionError, Lifecycle, LEGAL_TRANSITIONS, type ConnectionFact, type ConnectionState } from '../../relay/lifecycle.js';
import { Replication, type ReplicaGroup } from '../../replication/replication.js';
import type { ConnectionRecord, TransportState } from '../../softstate/index.js';
import { StreamMap } from '../../stream-map/stream-map.js';
import { requestHead } from '../stream-map/stream-map-fixtures.js';

type Sent = 'advertise' | 'withdraw' | 'nothing, forgotten' | 'nothing';

/* What the group hears when a connection enters each state. */
const ON_ENTRY: Record<ConnectionState, Sent> = {
  idle: 'advertise',
  forwarding: 'advertise',
  'relaying-body': 'advertise',
  splicing: 'nothing',
  closing: 'nothing',
  closed: 'withdraw',
  aborted: 'withdraw',
  relinquished: 'nothing, forgotten',
};
const ON_FACT: Record<ConnectionFact, Sent> = {
  'last-request': 'nothing',
  'client-finished': 'nothing',
  'handed-off': 'advertise',
  'move-expected': 'nothing',
};

const silent = pino({ level: 'silent' });
const GET_X = requestHead('GET /x HTTP/1.1\r\nHost: t\r\n\r\n');
const TRANSPORT: TransportState = { sendSeq: 1, recvSeq: 2, mss: 1460, sndWscale: 7, rcvWscale: 7, sack: true, timestamps: true, tsClock: 3, tsReadAt: 4, sndWnd: 65535, rcvWnd: 65535 };

/* The parts of a RelayConnection the replication reads, around a real Lifecycle and StreamMap. */
class Subject extends EventEmitter {
  readonly id = '10.0.0.1:40000>10.0.0.100:80';
  readonly client = { remoteAddress: '10.0.0.1', remotePort: 40000, localAddress: '10.0.0.100', localPort: 80 };
  readonly lifecycle = new Lifecycle(silent);
  readonly streamMap = new StreamMap();
  bytesToClient = 0;
  bytesFromClient = 0;
  constructor() {
    super();
    this.lifecycle.on('change', (change) => this.emit('change', change));
    this.streamMap.onChange = (change) => this.emit('change', { kind: 'map', change });
  }
  get state(): ConnectionState {
    return this.lifecycle.state;
  }
  get handedOff(): boolean {
    return this.lifecycle.has('handed-off');
  }
  acknowledged(): number | undefined {
    return undefined;
  }
}

function tracked(): { subject: Subject; sent: () => Promise<Array<{ op: 'upsert'; record: ConnectionRecord } | { op: 'remove'; id: string }>> } {
  const ops: Array<{ op: 'upsert'; record: ConnectionRecord } | { op: 'remove'; id: string }> = [];
  const group = {
    upsert: (record: ConnectionRecord) => ops.push({ op: 'upsert', record }) > 0,
    remove: (id: string) => ops.push({ op: 'remove', id }) > 0,
    readvertise: () => undefined,
    on: () => group,
  } as unknown as ReplicaGroup;
  const replication = new Replication(group, '10.0.0.11', () => undefined, silent);
  const subject = new Subject();
  replication.track(subject as unknown as RelayConnection, TRANSPORT, 0);
  return {
    subject,
    // Adverts are coalesced on a microtask: let it run, then hand over what went out since the last look.
    sent: async () => {
      await new Promise((resolve) => setImmediate(resolve));
      return ops.splice(0);
    },
  };
}

/* A shortest legal path from idle (every connection's first state) to `state`. */
function pathTo(state: ConnectionState): ConnectionState[] {
  const previous = new Map<ConnectionState, ConnectionState>();
  const queue: ConnectionState[] = ['idle'];
  while (queue.length > 0) {
    const at = queue.shift()!;
    if (at === state) break;
    for (const next of LEGAL_TRANSITIONS[at]) if (next !== 'idle' && !previous.has(next)) previous.set(next, at), queue.push(next);
  }
  const path: ConnectionState[] = [];
  for (let at: ConnectionState | undefined = state; at && at !== 'idle'; at = previous.get(at)) path.unshift(at);
  return path;
}

function summary(ops: Awaited<ReturnType<ReturnType<typeof tracked>['sent']>>): Sent {
  if (ops.length === 0) return 'nothing';
  expect(ops).toHaveLength(1);
  return ops[0]!.op === 'upsert' ? 'advertise' : 'withdraw';
}

const transitions = (Object.keys(LEGAL_TRANSITIONS) as ConnectionState[]).flatMap((from) => LEGAL_TRANSITIONS[from].map((to) => ({ from, to, sent: ON_ENTRY[to] })));

describe('connection lifecycle', () => {
  it.each(transitions)('$from -> $to: $sent', async ({ from, to, sent }) => {
    const { subject, sent: sentNow } = tracked();
    expect(summary(await sentNow())).toBe('advertise'); // tracking advertises the new connection
    for (const state of pathTo(from)) subject.lifecycle.enter(state);
    await sentNow();
    expect(subject.state).toBe(from);
    subject.lifecycle.enter(to);
    const ops = await sentNow();
    if (sent === 'nothing, forgotten') {
      expect(ops).toEqual([]);
      // Taken over elsewhere: the taker's record stands; nothing more is said about it here.
      subject.streamMap.beginRequest(0, GET_X);
      expect(await sentNow()).toEqual([]);
      return;
    }
    expect(summary(ops)).toBe(sent);
    if (sent === 'withdraw') {
      expect(ops[0]).toEqual({ op: 'remove', id: subject.id });
      subject.streamMap.beginRequest(0, GET_X);
      expect(await sentNow()).toEqual([]);
    }
  });

  it('covers every state: each is reachable from idle', () => {
    for (const state of Object.keys(LEGAL_TRANSITIONS) as ConnectionState[]) {
      const lifecycle = new Lifecycle(silent);
      for (const step of pathTo(state)) lifecycle.enter(step);
      expect(lifecycle.state).toBe(state);
    }
  });

  it('refuses every transition the table does not list, and nothing leaves an ending', () => {
    const states = Object.keys(LEGAL_TRANSITIONS) as ConnectionState[];
    for (const from of states) {
      for (const to of states) {
        if (to === from || LEGAL_TRANSITIONS[from].includes(to)) continue;
        const lifecycle = new Lifecycle(silent);
        for (const step of pathTo(from)) lifecycle.enter(step);
        expect(() => lifecycle.enter(to), `${from} -> ${to}`).toThrow(IllegalTransitionError);
      }
    }
    for (const ending of ['closed', 'aborted', 'relinquished'] as const) expect(LEGAL_TRANSITIONS[ending]).toEqual([]);
  });

  it.each(Object.entries(ON_FACT) as Array<[ConnectionFact, Sent]>)('fact %s: %s', async (fact, sent) => {
    const { subject, sent: sentNow } = tracked();
    await sentNow();
    subject.lifecycle.note(fact);
    const ops = await sentNow();
    expect(summary(ops)).toBe(sent);
    if (fact === 'handed-off') expect((ops[0] as { record: ConnectionRecord }).record.handoff).toBe(true);
  });

  it('implied facts: client-finished means last-request, handed-off means move-expected; a fact is noted once', async () => {
    const lifecycle = new Lifecycle(silent);
    const noted: string[] = [];
    lifecycle.on('change', (change) => change.kind === 'fact' && noted.push(change.fact));
    lifecycle.note('client-finished');
    lifecycle.note('handed-off');
    lifecycle.note('client-finished');
    expect(noted).toEqual(['client-finished', 'last-request', 'handed-off', 'move-expected']);
  });

  it('every stream-map change is advertised, and changes in one turn leave as one record', async () => {
    const { subject, sent } = tracked();
    await sent();
    subject.lifecycle.enter('forwarding');
    subject.streamMap.beginRequest(0, GET_X);
    const ops = await sent();
    expect(ops).toHaveLength(1);
    expect((ops[0] as { record: ConnectionRecord }).record.streamMap).toMatchObject({ map: { exchanges: [{ target: '/x' }] } });
    // A request that ends while its exchange runs changes the map without a transition.
    subject.streamMap.endRequest(GET_X.rawHead.length);
    expect(summary(await sent())).toBe('advertise');
  });
});
