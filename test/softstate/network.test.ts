/*
 * Soft state over a real L2 segment: one network namespace per server, veths into a bridge
 * namespace, each member a separate process (fixtures/member.mjs, running dist/). Needs root,
 * iproute2 and nftables; builds nothing outside its own namespaces and removes them after.
 * Timings are printed, not asserted.
 */
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bucketOf } from '../../softstate/groups.js';
import { SegmentLab, type Event, type MemberProcess } from './netns.js';

const root = process.getuid?.() === 0 && existsSync('/usr/sbin/nft');
const built = existsSync(new URL('../../dist/softstate/member.js', import.meta.url));
const keyHex = randomBytes(32).toString('hex');

const candidates = Array.from({ length: 40 }, (_, i) => `10.77.0.${i + 1}`);
const [A, B, C, D] = candidates.filter((a) => bucketOf(a, 2) === 0) as [string, string, string, string];
const [E, F] = candidates.filter((a) => bucketOf(a, 2) === 1) as [string, string];

const options = { groups: 2, advertIntervalMs: 300, expireMs: 3000, heartbeatIntervalMs: 100, deadAfterMs: 400 };

const recordsFrom = (dump: Event, owner: string) => (dump.records as { owner: string }[]).filter((r) => r.owner === owner).length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.timeOrigin + performance.now();

describe.skipIf(!root)('soft state between network namespaces', () => {
  const lab = new SegmentLab();

  beforeAll(async () => {
    if (!built) throw new Error('dist/softstate is missing: run `npm run build` first (npm test does)');
    await lab.create([A, B, C, D, E, F]);
  });

  afterAll(async () => {
    await lab.destroy();
  });

  async function members(addresses: string[], extra: Record<string, unknown> = {}): Promise<MemberProcess[]> {
    await lab.stopMembers();
    const started = await Promise.all(addresses.map((a) => lab.spawnMember(a, keyHex, { ...options, ...extra })));
    // Everyone sees every other member of its group alive before the test starts.
    await Promise.all(
      started.map((m) => {
        const mates = addresses.filter((a) => a !== m.name && bucketOf(a, 2) === bucketOf(m.name, 2));
        return Promise.all(mates.map((peer) => m.waitFor((e) => e.ev === 'peer-alive' && e.peer === peer)));
      }),
    );
    return started;
  }

  it('adverts reach the members of the sender group and no one else', async () => {
    const [a, b, e, f] = await members([A, B, E, F]);
    a!.send({ cmd: 'advertise', count: 20 });
    e!.send({ cmd: 'advertise', from: 100, count: 10 });
    await b!.waitFor((ev) => ev.ev === 'record' && ev.owner === A && (ev.id as string).startsWith('10.200.0.19:'));
    await f!.waitFor((ev) => ev.ev === 'record' && ev.owner === E && (ev.id as string).startsWith('10.200.0.109:'));
    await sleep(3 * options.advertIntervalMs);
    const [da, db, de, df] = await Promise.all([a!.dump(), b!.dump(), e!.dump(), f!.dump()]);
    expect([recordsFrom(db, A), recordsFrom(db, E)]).toEqual([20, 0]);
    expect([recordsFrom(df, E), recordsFrom(df, A)]).toEqual([10, 0]);
    expect(recordsFrom(de, A)).toBe(0);
    expect(recordsFrom(da, E)).toBe(0);
    expect((db.peers as { address: string }[]).map((p) => p.address)).toEqual([A]);
    expect((de.peers as { address: string }[]).map((p) => p.address)).toEqual([F]);
    // Nothing from the other group even reached the socket.
    for (const d of [da, db, de, df]) expect((d.metrics as { rejected: object }).rejected).toEqual({});
    console.log(`groups: ${A},${B} in bucket 0; ${E},${F} in bucket 1; 20 + 10 records stayed in their groups`);
  });

  it('detects a killed peer and a peer whose link went down', async () => {
    const [a, b, c, d] = await members([A, B, C, D]);
    const killedAt = now();
    b!.kill();
    const seen = await Promise.all([a, c, d].map((m) => m!.waitFor((e) => e.ev === 'peer-dead' && e.peer === B)));
    for (const e of seen) expect(e.reason).toBe('silent');
    const killTimes = seen.map((e) => (e.t - killedAt).toFixed(0));
    const downAt = now();
    await lab.linkDown(D);
    const seenDown = await Promise.all([a, c].map((m) => m!.waitFor((e) => e.ev === 'peer-dead' && e.peer === D)));
    const downTimes = seenDown.map((e) => (e.t - downAt).toFixed(0));
    console.log(`death detection (heartbeat 100 ms, dead after 400 ms): kill -> ${killTimes.join(', ')} ms; link down -> ${downTimes.join(', ')} ms`);
    await lab.linkUp(D);
  });

  it("stays alive through its main thread's stall, but not past the heartbeat lease", async () => {
    const [a, b] = await members([A, B], { heartbeatLeaseMs: 1000 });
    let mark = a!.events.length;
    b!.send({ cmd: 'block', ms: 900 });
    await b!.waitFor((e) => e.ev === 'unblocked', 5000);
    await sleep(2 * options.deadAfterMs);
    expect(a!.events.slice(mark).filter((e) => e.ev === 'peer-dead')).toEqual([]);

    mark = a!.events.length;
    const blockedAt = now();
    b!.send({ cmd: 'block', ms: 2500 });
    const dead = await a!.waitFor((e) => e.ev === 'peer-dead' && e.peer === B, 5000, mark);
    expect(dead.reason).toBe('silent');
    await a!.waitFor((e) => e.ev === 'peer-alive' && e.peer === B, 5000, mark);
    console.log(`a 900 ms stall: no death reported; a 2.5 s stall: dead after ${(dead.t - blockedAt).toFixed(0)} ms (lease 1000 + dead-after 400), alive again after it`);
  });

  it('converges after an erroneous death report: the peer is alive again and the takeover wins', async () => {
    const [a, b, c] = await members([A, B, C]);
    b!.send({ cmd: 'advertise', count: 5 });
    await Promise.all([a, c].map((m) => m!.waitFor((e) => e.ev === 'record' && (e.id as string).startsWith('10.200.0.4:'))));
    const mark = c!.events.length;
    const declaredAt = now();
    a!.send({ cmd: 'declareDead', peer: B, reason: 'monitor timeout' });
    const dead = await c!.waitFor((e) => e.ev === 'peer-dead' && e.peer === B, 5000, mark);
    expect(dead.reason).toBe(`declared dead by ${A}: monitor timeout`);
    const self = await b!.waitFor((e) => e.ev === 'declared-dead-self');
    expect(self).toMatchObject({ declarer: A, reason: 'monitor timeout' });
    const alive = await c!.waitFor((e) => e.ev === 'peer-alive' && e.peer === B, 5000, mark);
    await a!.waitFor((e) => e.ev === 'peer-alive' && e.peer === B && e.t > declaredAt);
    // Meanwhile C acted on the report and took B's connections over (migration 1): B steps back.
    c!.send({ cmd: 'takeover', peer: B });
    await c!.waitFor((e) => e.ev === 'took-over' && e.count === 5);
    for (let n = 0; n < 5; n++) await b!.waitFor((e) => e.ev === 'superseded' && e.owner === C && (e.id as string).startsWith(`10.200.0.${n}:`));
    await sleep(2 * options.advertIntervalMs);
    const dumps = await Promise.all([a!.dump(), b!.dump(), c!.dump()]);
    for (const dump of dumps) expect([recordsFrom(dump, B), recordsFrom(dump, C)]).toEqual([0, 5]);
    const peerB = (dumps[0]!.peers as { address: string; alive: boolean }[]).find((p) => p.address === B);
    expect(peerB?.alive).toBe(true);
    console.log(`erroneous report: seen dead after ${(dead.t - declaredAt).toFixed(1)} ms, alive again after ${(alive.t - declaredAt).toFixed(1)} ms; takeover superseded all 5 of B's records`);
  });

  it('with 30% of multicast datagrams dropped, every advertised connection is known within a few periods', async () => {
    const [a, b, c, d] = await members([A, B, C, D]);
    for (const r of [B, C, D]) lab.addLoss(r, 30);
    const start = now();
    a!.send({ cmd: 'advertise', count: 300 });
    const learnedAt = await Promise.all(
      [b, c, d].map(async (m) => {
        for (;;) {
          const dump = await m!.dump();
          if (recordsFrom(dump, A) === 300) return now() - start;
          if (now() - start > 20 * options.advertIntervalMs) throw new Error(`${m!.name} knows ${recordsFrom(dump, A)} of 300`);
          await sleep(50);
        }
      }),
    );
    const drops = [B, C, D].map((r) => lab.lossCount(r));
    for (const n of drops) expect(n).toBeGreaterThan(0);
    console.log(
      `30% loss: all 300 records known after ${learnedAt.map((t) => t.toFixed(0)).join(', ')} ms ` +
        `(advert period ${options.advertIntervalMs} ms); datagrams dropped by nft: ${drops.join(', ')}`,
    );
  });
});
