/* SoftStateMember logic over real sockets on the loopback interface (multicast loop on, TTL 1,
 * a random port and group so nothing else hears it). The namespace tests prove the same over
 * a real bridge, with loss and with groups. */
import { randomBytes, randomInt } from 'node:crypto';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { Outbox } from '../../softstate/channel.js';
import { bucketOf } from '../../softstate/groups.js';
import { SoftStateMember, type SoftStateMemberOptions } from '../../softstate/member.js';
import { WedgeError } from '../../errors/codes.js';
import { sampleRecord } from './sample.js';

const keyRing = { current: 1, keys: new Map([[1, randomBytes(32)]]) };
const port = randomInt(20000, 60000);
const baseGroup = `239.77.${randomInt(1, 250)}.1`;
const started: SoftStateMember[] = [];

async function member(self: string, options: Partial<SoftStateMemberOptions> = {}): Promise<SoftStateMember> {
  const m = new SoftStateMember({
    self,
    interfaceAddress: '127.0.0.1',
    loopback: true,
    keyRing,
    port,
    baseGroup,
    advertIntervalMs: 500,
    expireMs: 2000,
    ...options,
  });
  await m.start();
  started.push(m);
  return m;
}

const until = async (predicate: () => boolean, timeoutMs = 3000): Promise<void> => {
  const end = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
};

afterEach(async () => {
  await Promise.all(started.splice(0).map((m) => m.stop()));
});

describe('SoftStateMember (loopback)', () => {
  it('advertises upserts at once, batched per tick, and withdraws removed records', async () => {
    const a = await member('10.99.0.1');
    const b = await member('10.99.0.2');
    // Each one's arrival starts a round of the other's records: none yet.
    await until(() => a.peers().some((p) => p.alive) && b.peers().some((p) => p.alive));
    const records = Array.from({ length: 40 }, (_, i) => sampleRecord(i));
    for (const r of records) expect(a.upsert(r)).toBe(true);
    await until(() => b.recordsOwnedBy('10.99.0.1').length === 40);
    expect(a.metrics.triggeredAdverts).toBe(1);
    expect(a.metrics.advertDatagramsSent).toBeLessThan(15);
    expect(b.records()).toHaveLength(40);
    a.remove(records[0]!.id);
    await until(() => b.recordsOwnedBy('10.99.0.1').length === 39);
    await until(() => b.peers()[0]?.load?.connections === 39);
    expect(b.peers()).toEqual([expect.objectContaining({ address: '10.99.0.1', alive: true, load: { connections: 39, bytesPerSec: 0 } })]);
  });

  it('re-advertises periodically so records outlive the expiry, and they expire once the owner is gone', async () => {
    const fast = { advertIntervalMs: 100, expireMs: 400 };
    const a = await member('10.99.0.1', fast);
    const b = await member('10.99.0.2', fast);
    const records = Array.from({ length: 300 }, (_, i) => sampleRecord(i));
    for (const r of records) a.upsert(r);
    await until(() => b.records().length === 300);
    await new Promise((r) => setTimeout(r, 1000));
    expect(b.records()).toHaveLength(300);
    expect(a.metrics.periodicAdverts).toBeGreaterThan(3);
    await a.stop();
    await until(() => b.records().length === 0);
  });

  it('hands a connection over: the old owner hears the higher migration number and steps back', async () => {
    const a = await member('10.99.0.1');
    const b = await member('10.99.0.2');
    const r = sampleRecord(1);
    a.upsert(r);
    await until(() => b.records().length === 1);
    const superseded = once(a, 'superseded');
    b.upsert({ ...r, owner: '10.99.0.2', migration: 1 });
    const [winner] = await superseded;
    expect(winner).toMatchObject({ owner: '10.99.0.2', migration: 1 });
    expect(a.recordsOwnedBy('10.99.0.1')).toEqual([]);
    // The old owner cannot re-advertise its stale version.
    expect(a.upsert({ ...r, updatedAt: Date.now() })).toBe(false);
    expect(a.records()).toEqual([expect.objectContaining({ owner: '10.99.0.2', migration: 1 })]);
  });

  it('detects a silent peer and sees it alive again when it comes back', async () => {
    const a = await member('10.99.0.1');
    const b = await member('10.99.0.2');
    await until(() => a.peers().some((p) => p.address === '10.99.0.2' && p.alive));
    const dead = once(a, 'peer-dead');
    await b.stop();
    const [peer, reason] = await dead;
    expect([peer, reason]).toEqual(['10.99.0.2', 'silent']);
    const alive = once(a, 'peer-alive');
    await member('10.99.0.2');
    expect(await alive).toEqual(['10.99.0.2']);
  });

  it('converges after an erroneous death report', async () => {
    const a = await member('10.99.0.1');
    const b = await member('10.99.0.2');
    const c = await member('10.99.0.3');
    await until(() => a.peers().filter((p) => p.alive).length === 2);
    const events: string[] = [];
    a.on('peer-dead', (p, reason) => events.push(`dead ${p} ${reason}`));
    a.on('peer-alive', (p) => events.push(`alive ${p}`));
    const refuted = once(b, 'declared-dead-self');
    c.declareDead('10.99.0.2', 'operator says so');
    expect(await refuted).toEqual(['10.99.0.3', 'operator says so']);
    await until(() => events.length === 2);
    expect(events).toEqual(['dead 10.99.0.2 declared dead by 10.99.0.3: operator says so', 'alive 10.99.0.2']);
    await until(() => c.peers().find((p) => p.address === '10.99.0.2')?.alive === true);
    expect(c.metrics.noticesSent).toBeGreaterThanOrEqual(1);
  });

  it('a member that joins gets every record at once, not a round later', async () => {
    const slow = { advertIntervalMs: 60_000, expireMs: 120_000 };
    const a = await member('10.99.0.1', slow);
    for (let i = 0; i < 50; i++) a.upsert(sampleRecord(i));
    const b = await member('10.99.0.2', slow);
    await until(() => b.recordsOwnedBy('10.99.0.1').length === 50, 1500);
  });

  it('leaves on purpose: dead at once for its peers (no silence to wait out), never alive again by its heartbeats', async () => {
    const a = await member('10.99.0.1');
    const b = await member('10.99.0.2');
    await until(() => a.peers().some((p) => p.alive) && b.peers().some((p) => p.alive));
    const dead = once(b, 'peer-dead');
    a.leave('drain');
    // Its notice, not the silent check (that would say 'silent').
    expect(await dead).toEqual(['10.99.0.1', 'left: drain']);
    let revived = false;
    b.on('peer-alive', () => (revived = true));
    // The leaver still listens, and answers no death report with a heartbeat.
    b.declareDead('10.99.0.1', 'checking');
    await new Promise((r) => setTimeout(r, 600));
    expect(revived).toBe(false);
    expect(b.peers().find((p) => p.address === '10.99.0.1')?.alive).toBe(false);
  });

  it('refuses a record too large for the allowed fragments with a counted error', async () => {
    const a = await member('10.99.0.1', { maxFragments: 2 });
    expect(() => a.upsert(sampleRecord(1, {}, 10_000))).toThrow(WedgeError);
    expect(a.metrics.recordsTooLarge).toBe(1);
    expect(() => a.upsert(sampleRecord(2, { owner: '10.99.0.9' }))).toThrow(/owned by/);
  });

  it('carries fragmented records', async () => {
    const a = await member('10.99.0.1');
    const b = await member('10.99.0.2');
    const big = sampleRecord(3, {}, 6000);
    a.upsert(big);
    await until(() => b.records().length === 1);
    expect(b.records()[0]).toEqual(big);
    expect(a.metrics.fragmentsSent).toBeGreaterThan(1);
  });
});

describe('SoftStateMember liveness', () => {
  it("counts a peer's adverts as signs of life, so a backlog of them does not make it look silent", async () => {
    const watcher = await member('10.99.1.1', { groups: 1, deadAfterMs: 300, heartbeatIntervalMs: 50 });
    const peer = new Outbox({ ring: keyRing, self: '10.99.1.2' });
    const deaths: string[] = [];
    watcher.on('peer-dead', (p) => deaths.push(p));
    watcher.receive(peer.heartbeat({ connections: 1, bytesPerSec: 0 }));
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 100));
      watcher.receive(peer.adverts([peer.encodeItem({ kind: 'record', record: sampleRecord(i, { owner: '10.99.1.2' }) })]).datagrams[0]!);
    }
    expect(deaths).toEqual([]);
    await until(() => deaths.length === 1, 2000);
    expect(deaths).toEqual(['10.99.1.2']);
  });
});

describe('SoftStateMember receive checks', () => {
  const candidates = Array.from({ length: 20 }, (_, i) => `10.98.0.${i + 1}`);
  const [self, mate, restarter] = candidates.filter((a) => bucketOf(a, 2) === 0) as [string, string, string];
  const stranger = candidates.find((a) => bucketOf(a, 2) === 1)!;
  const m = new SoftStateMember({ self, keyRing, groups: 2 });
  const from = (sender: string) => new Outbox({ ring: keyRing, self: sender });

  it('ignores heartbeats and adverts from another group', () => {
    const out = from(stranger);
    m.receive(out.heartbeat({ connections: 0, bytesPerSec: 0 }));
    m.receive(out.adverts([out.encodeItem({ kind: 'record', record: sampleRecord(1, { owner: stranger }) })]).datagrams[0]!);
    expect(m.metrics.rejected['wrong-group']).toBe(2);
    expect(m.peers()).toEqual([]);
    expect(m.records()).toEqual([]);
  });

  it('accepts a record only from its owner', () => {
    const out = from(mate);
    m.receive(out.adverts([out.encodeItem({ kind: 'record', record: sampleRecord(1, { owner: '10.98.0.200' }) })]).datagrams[0]!);
    expect(m.metrics.rejected['owner-mismatch']).toBe(1);
    m.receive(out.adverts([out.encodeItem({ kind: 'record', record: sampleRecord(1, { owner: mate }) })]).datagrams[0]!);
    expect(m.recordsOwnedBy(mate)).toHaveLength(1);
  });

  it("does not bring back, from its previous owner's stale advert, a connection that closed here", () => {
    const taker = new SoftStateMember({ self, keyRing, groups: 2 });
    const out = from(mate);
    const record = sampleRecord(7, { owner: self, migration: 1 });
    taker.upsert(record);
    taker.remove(record.id);
    taker.receive(out.adverts([out.encodeItem({ kind: 'record', record: { ...record, owner: mate, migration: 0 } })]).datagrams[0]!);
    expect(taker.recordsOwnedBy(mate)).toEqual([]);
    // A later takeover by that peer is news, and is kept.
    taker.receive(out.adverts([out.encodeItem({ kind: 'record', record: { ...record, owner: mate, migration: 2 } })]).datagrams[0]!);
    expect(taker.recordsOwnedBy(mate).map((r) => r.migration)).toEqual([2]);
  });

  it('reports a fast restart (new epoch) as a death followed by life', () => {
    const events: string[] = [];
    m.on('peer-dead', (p, reason) => events.push(`dead ${p} ${reason}`));
    m.on('peer-alive', (p) => events.push(`alive ${p}`));
    const before = new Outbox({ ring: keyRing, self: restarter, epoch: 1000n });
    m.receive(before.heartbeat({ connections: 1, bytesPerSec: 0 }));
    m.receive(before.heartbeat({ connections: 1, bytesPerSec: 0 }));
    m.receive(new Outbox({ ring: keyRing, self: restarter, epoch: 2000n }).heartbeat({ connections: 0, bytesPerSec: 0 }));
    expect(events).toEqual([`alive ${restarter}`, `dead ${restarter} restarted`, `alive ${restarter}`]);
  });
});
