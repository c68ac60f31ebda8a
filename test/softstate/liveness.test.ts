/* Liveness on a fake clock: heartbeats, death notices and the silent check are fed in by hand,
 * timers and both clocks advance only when the test says, so the bounds in liveness.ts's header
 * (detection within dead-after + one check, a stall of our own loop is not a death, a bar that
 * only a newer heartbeat passes) are checked to the millisecond. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { epochHex } from '../../softstate/crypto.js';
import { Liveness, type LivenessWire } from '../../softstate/liveness.js';
import type { DeathNotice, Load, ServiceClaim } from '../../softstate/records.js';

const SELF = '10.97.0.1';
const PEER = '10.97.0.2';
const OTHER = '10.97.0.3';

interface Harness {
  liveness: Liveness;
  events: string[];
  beats: { load: Load; services: ServiceClaim[]; now: boolean }[];
  notices: DeathNotice[];
  silenced: number;
  /* Moves the monotonic clock without running timers: our event loop was stalled. */
  stall(ms: number): void;
}

function harness(): Harness {
  let skew = 0;
  const events: string[] = [];
  const beats: Harness['beats'] = [];
  const notices: DeathNotice[] = [];
  const liveness = new Liveness({
    self: SELF,
    heartbeatIntervalMs: 100,
    deadAfterMs: 400,
    expireMs: 10_000,
    connections: () => 7,
    now: () => Date.now() + skew,
    events: {
      peerDead: (peer, reason) => events.push(`dead ${peer} ${reason}`),
      peerAlive: (peer) => events.push(`alive ${peer}`),
      declaredDeadSelf: (declarer, reason) => events.push(`declared-dead-self ${declarer} ${reason}`),
    },
  });
  const wire: LivenessWire = {
    beat: (load, services, now) => beats.push({ load, services, now }),
    notice: (notice) => notices.push(notice),
    silence: () => made.silenced++,
  };
  const made: Harness = { liveness, events, beats, notices, silenced: 0, stall: (ms) => (skew += ms) };
  liveness.start(wire);
  return made;
}

function heartbeat(sender: string, seq: number, epoch = 1000n) {
  return { kind: 'heartbeat' as const, sender, epoch, seq, heartbeat: { sender, epoch: epochHex(epoch), load: { connections: 0, bytesPerSec: 0 } } };
}

let h: Harness;
beforeEach(() => {
  vi.useFakeTimers();
  h = harness();
});
afterEach(() => {
  h.liveness.stop();
  vi.useRealTimers();
});

describe('Liveness', () => {
  it('leaving: heartbeats are silenced before the notice about itself goes out, and no notice is refuted afterwards', () => {
    const notice = h.liveness.leave('drain');
    expect(h.silenced).toBe(1);
    expect(notice).toMatchObject({ declarer: SELF, peer: SELF, reason: 'drain' });
    expect(h.notices).toEqual([notice]);
    vi.advanceTimersByTime(1000);
    expect(h.notices).toHaveLength(3);
    const beats = h.beats.length;
    h.liveness.notice({ declarer: PEER, peer: SELF, reason: 'admin', at: Date.now() });
    vi.advanceTimersByTime(500);
    expect(h.beats.length, 'no check-in (so no heartbeat) after leaving').toBe(beats);
    expect(h.events).toEqual([]);
  });

  it("a peer's notice about itself is its leave: dead at once, and only a newer heartbeat brings it back", () => {
    h.liveness.heartbeat(heartbeat(PEER, 5));
    h.liveness.notice({ declarer: PEER, peer: PEER, reason: 'drain', at: Date.now() });
    expect(h.events).toEqual([`alive ${PEER}`, `dead ${PEER} left: drain`]);
    h.liveness.heartbeat(heartbeat(PEER, 5));
    expect(h.liveness.peers()[0]!.alive, 'a replayed old heartbeat does not revive it').toBe(false);
    h.liveness.heartbeat(heartbeat(PEER, 1, 2000n));
    expect(h.events.at(-1), 'restarted: a new epoch').toBe(`alive ${PEER}`);
  });

  it('reports a silent peer dead after dead-after, within one check (400 + 50 ms)', () => {
    h.liveness.heartbeat(heartbeat(PEER, 1));
    expect(h.events).toEqual([`alive ${PEER}`]);
    vi.advanceTimersByTime(400);
    expect(h.events).toEqual([`alive ${PEER}`]);
    vi.advanceTimersByTime(50);
    expect(h.events).toEqual([`alive ${PEER}`, `dead ${PEER} silent`]);
    expect(h.liveness.peers()).toEqual([expect.objectContaining({ address: PEER, alive: false, deadReason: 'silent' })]);
    expect(h.liveness.counts()).toEqual({ alive: 0, dead: 1 });
  });

  it('keeps a peer alive while its heartbeats, or any of its datagrams, keep coming', () => {
    h.liveness.heartbeat(heartbeat(PEER, 1));
    for (let t = 0; t < 2000; t += 300) {
      vi.advanceTimersByTime(300);
      h.liveness.heard(PEER);
    }
    expect(h.events).toEqual([`alive ${PEER}`]);
  });

  it('does not take a stall of its own event loop for the silence of its peers', () => {
    h.liveness.heartbeat(heartbeat(PEER, 1));
    vi.advanceTimersByTime(40);
    h.stall(1000);
    vi.advanceTimersByTime(50);
    expect(h.events).toEqual([`alive ${PEER}`]);
    // After the stall the peer's clock restarts one heartbeat back: silent from then on, it is
    // dead after dead-after less that heartbeat, within one check.
    vi.advanceTimersByTime(300);
    expect(h.events).toEqual([`alive ${PEER}`]);
    vi.advanceTimersByTime(50);
    expect(h.events).toEqual([`alive ${PEER}`, `dead ${PEER} silent`]);
  });

  it('reports a new epoch as a death followed by life', () => {
    h.liveness.heartbeat(heartbeat(PEER, 5, 1000n));
    h.liveness.heartbeat(heartbeat(PEER, 1, 2000n));
    expect(h.events).toEqual([`alive ${PEER}`, `dead ${PEER} restarted`, `alive ${PEER}`]);
  });

  it('after a death notice, believes only a heartbeat above the bar', () => {
    h.liveness.heartbeat(heartbeat(PEER, 3));
    // The declarer heard seq 9: the bar is the higher of its word and ours.
    h.liveness.notice({ declarer: OTHER, peer: PEER, reason: 'operator', at: Date.now(), peerEpoch: epochHex(1000n), peerSeq: 9 });
    expect(h.events).toEqual([`alive ${PEER}`, `dead ${PEER} declared dead by ${OTHER}: operator`]);
    h.liveness.heartbeat(heartbeat(PEER, 9));
    expect(h.liveness.counts()).toEqual({ alive: 0, dead: 1 });
    h.liveness.heartbeat(heartbeat(PEER, 10));
    expect(h.events.at(-1)).toBe(`alive ${PEER}`);
    expect(h.liveness.peers()[0]).not.toHaveProperty('deadReason');
  });

  it('declares a peer dead in three copies carrying the bar, and stops sending them when stopped', () => {
    h.liveness.heartbeat(heartbeat(PEER, 4));
    const notice = h.liveness.declare(PEER, 'x'.repeat(1000));
    expect(notice).toMatchObject({ declarer: SELF, peer: PEER, peerEpoch: epochHex(1000n), peerSeq: 4 });
    expect(notice.reason.length).toBeLessThan(1000);
    expect(h.notices).toHaveLength(1);
    vi.advanceTimersByTime(50);
    expect(h.notices).toHaveLength(2);
    h.liveness.stop();
    vi.advanceTimersByTime(1000);
    expect(h.notices).toEqual([notice, notice]);
  });

  it('refutes a notice about itself with a heartbeat at once, then tells the member', () => {
    h.liveness.setLoad({ bytesPerSec: 5 });
    h.liveness.notice({ declarer: OTHER, peer: SELF, reason: 'looked dead', at: Date.now() });
    expect(h.beats).toEqual([{ load: { connections: 7, bytesPerSec: 5 }, services: [], now: true }]);
    expect(h.events).toEqual([`declared-dead-self ${OTHER} looked dead`]);
    expect(h.liveness.peers()).toEqual([]);
  });

  it('checks in every heartbeat interval with the current load and services', () => {
    const claims = [{ address: '10.97.9.9', generation: 1 }];
    h.liveness.setServices(claims);
    vi.advanceTimersByTime(250);
    expect(h.beats).toEqual([
      { load: { connections: 7, bytesPerSec: 0 }, services: claims, now: false },
      { load: { connections: 7, bytesPerSec: 0 }, services: claims, now: false },
    ]);
  });

  it('forgets a peer dead and unheard for a minute', () => {
    h.liveness.heartbeat(heartbeat(PEER, 1));
    vi.advanceTimersByTime(59_000);
    h.liveness.forget();
    expect(h.liveness.peers()).toHaveLength(1);
    vi.advanceTimersByTime(2_000);
    h.liveness.forget();
    expect(h.liveness.peers()).toEqual([]);
  });
});
