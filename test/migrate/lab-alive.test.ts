/*
 * Issue 6: TCP Migrate while the serving server is alive. One subnets lab (3 servers, client
 * agent), three stories on it, each with its own curl downloads through s1:
 *
 *   erroneous death   s1 is declared dead while it keeps sending: one peer migrates the
 *                     connection, the agent answers s1's late segments with RST, s1 steps back
 *                     without aborting anything; the download is byte-exact.
 *   load shedding     four downloads; POST /shed?count=2 on s1 hands two to the group; all four
 *                     are byte-exact and exactly two moved.
 *   forged SYNs       during a download, Migrate SYNs sent from the router in s2's name: a wrong
 *                     MAC, an unknown token; then a real handoff, and a replay of every Migrate
 *                     SYN captured on the router. Each forgery is refused with its reason, the
 *                     losers' SYNs replayed are refused, the winner's is answered again like a
 *                     retransmission and changes nothing; exactly one migration happens; the
 *                     download is byte-exact.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeMigrateOption, migrateSynOptions, MIGRATE_EXID } from '../../migrate/option.js';
import { TCP_SYN, type CapturedSyn as NativeCapturedSyn } from '../../native/migrate.js';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, until, waitForBytes, type Background } from '../support/lab.js';

const MIB = 1024 * 1024;
const REPEATED = 'retransmitted Migrate SYN answered again';
const RAW = join(import.meta.dirname, '..', 'native', 'fixtures', 'migrate-raw.mjs');

describe.skipIf(!IS_ROOT)('TCP Migrate with the old server alive', () => {
  const lab = new Lab('malive');

  beforeAll(async () => {
    await lab.up({ servers: 3, files: ['big.bin:16'], subnets: true, agent: true });
  });
  afterAll(async () => {
    await lab.down();
  });

  const download = (name: string): { out: string; curl: Background } => {
    const out = lab.out(name);
    return { out, curl: lab.background('client', ['curl', '-sS', '--limit-rate', '2M', '-o', out, lab.url('s1', '/big.bin')]) };
  };
  const expectExact = async (out: string, curl: Background) => {
    expect(await curl.done(), curl.stderr).toBe(0);
    await expectSameBytes(out, lab.file('/big.bin'));
  };
  const migrations = async () => (await lab.logged('client-agent', 'migrated')).length;

  it('survives an erroneous death report: one peer takes over, s1 steps back quietly', async () => {
    const { out, curl } = download('declared.out');
    try {
      await waitForBytes(out, MIB, curl);
      await lab.declareDead('s1');
      const [moved] = await lab.waitLogged('client-agent', 'migrated', 1);
      expect(moved!.from).toBe(`${lab.server('s1').vip}:80`);
      await expectExact(out, curl);
      const story = await lab.story();
      expect(await lab.waitLogged('s1', 'connection taken over by a peer; stepping back'), story).toHaveLength(1);
      expect((await lab.metrics('s1')).total('wedge_aborts_total'), story).toBe(0);
      expect((await lab.exec('s1', ['curl', '-fsS', 'http://127.0.0.1:9090/healthz'])).code, 's1 is alive').toBe(0);
    } finally {
      curl.kill();
    }
  });

  it('sheds load: two of four live downloads move, all four byte-exact', async () => {
    const before = await migrations();
    const downloads = ['shed-0', 'shed-1', 'shed-2', 'shed-3'].map((name) => download(name));
    try {
      await Promise.all(downloads.map(({ out, curl }) => waitForBytes(out, MIB, curl)));
      expect(await lab.shed('s1', 2)).toMatchObject({ handedOff: 2 });
      await lab.waitLogged('client-agent', 'migrated', before + 2);
      for (const { out, curl } of downloads) await expectExact(out, curl);
      const story = await lab.story();
      expect(await migrations(), story).toBe(before + 2);
      const s1 = await lab.metrics('s1');
      expect(s1.value('wedge_handoffs_total', { trigger: 'shed' }), story).toBe(2);
      expect(s1.total('wedge_aborts_total'), story).toBe(0);
    } finally {
      for (const { curl } of downloads) curl.kill();
    }
  });

  it('refuses forged and replayed Migrate SYNs without harming the connection', async () => {
    const before = await migrations();
    const negotiatedBefore = (await lab.logged('client-agent', 'negotiated')).length;
    const rejectedBefore = await lab.metrics('client-agent');
    const capture = await captureMigrateSyns(lab);
    const { out, curl } = download('forged.out');
    try {
      await waitForBytes(out, MIB, curl);
      const negotiated = (await lab.waitLogged('client-agent', 'negotiated', negotiatedBefore + 1)).at(-1)!;
      const token = Buffer.from(String(negotiated.token), 'hex');
      const client = { address: lab.clientAddress, port: Number(String(negotiated.client).split(':')[1]) };
      const s1 = { address: lab.server('s1').vip, port: 80 };
      const s2 = { address: lab.server('s2').vip, port: 80 };
      const forged = (key: Buffer, tokenBytes: Buffer) => {
        const fields = { client, oldServer: s1, newServer: s2, seq: 1000, ack: 2000 };
        return { localAddress: s2.address, localPort: 80, remoteAddress: client.address, remotePort: client.port, seq: 1000, ack: 2000, flags: TCP_SYN, options: migrateSynOptions(encodeMigrateOption(key, fields, tokenBytes, 7), 1460).toString('hex') };
      };
      await sendFromRouter(lab, [forged(randomBytes(32), token), forged(randomBytes(32), randomBytes(8))]);
      const afterForgery = await lab.metrics('client-agent');
      expect(afterForgery.value('wedge_agent_rejected_syns_total', { reason: 'bad-mac' }) - rejectedBefore.value('wedge_agent_rejected_syns_total', { reason: 'bad-mac' })).toBe(1);
      expect(afterForgery.value('wedge_agent_rejected_syns_total', { reason: 'unknown-token' }) - rejectedBefore.value('wedge_agent_rejected_syns_total', { reason: 'unknown-token' })).toBe(1);
      expect(await migrations(), 'a forged SYN moved nothing').toBe(before);

      expect(await lab.shed('s1', 1)).toMatchObject({ handedOff: 1 });
      const moved = (await lab.waitLogged('client-agent', 'migrated', before + 1)).at(-1)!;
      // The losing candidate's SYN may still be on its way.
      await sleep(500);
      const seen = await capture.stop();
      const genuine = seen.filter((syn) => syn.destinationPort === client.port);
      expect(genuine.length, 'the race sent Migrate SYNs').toBeGreaterThanOrEqual(1);
      const refusedBefore = (await lab.metrics('client-agent')).total('wedge_agent_rejected_syns_total');
      const repeatedBefore = (await lab.logged('client-agent', REPEATED)).length;
      await sendFromRouter(lab, genuine.map((syn) => ({
        localAddress: syn.sourceAddress, localPort: syn.sourcePort, remoteAddress: syn.destinationAddress, remotePort: syn.destinationPort,
        seq: syn.seq, ack: syn.ack, flags: syn.flags, options: syn.options,
      })));
      await expectExact(out, curl);
      const story = await lab.story();
      // The winner's SYN replayed is only answered again; every other one is refused.
      const fromWinner = genuine.filter((syn) => `${syn.sourceAddress}:${syn.sourcePort}` === moved.to).length;
      expect((await lab.logged('client-agent', REPEATED)).length - repeatedBefore, story).toBe(fromWinner);
      expect((await lab.metrics('client-agent')).total('wedge_agent_rejected_syns_total') - refusedBefore, story).toBe(genuine.length - fromWinner);
      expect(await migrations(), story).toBe(before + 1);
    } finally {
      curl.kill();
      await capture.stop();
    }
  });
});

/* As the capture fixture prints it: the option bytes in hex. */
type CapturedSyn = Omit<NativeCapturedSyn, 'options'> & { options: string };

/* Every Migrate SYN the router forwards to the client, captured on the router (a test process). */
async function captureMigrateSyns(lab: Lab): Promise<{ stop(): Promise<CapturedSyn[]> }> {
  const capture = lab.background('router', [process.execPath, RAW, 'capture', lab.clientAddress, '', String(MIGRATE_EXID)], { stdin: true });
  await until('the router to capture', async () => capture.stdout.includes('"event":"listening"') || !capture.running);
  return {
    async stop() {
      capture.end();
      await capture.exited;
      const events = capture.stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { event: string } & CapturedSyn);
      return events.filter((event) => event.event === 'syn');
    },
  };
}

/* Sends raw TCP segments from the router namespace (sources may be any address). */
async function sendFromRouter(lab: Lab, segments: unknown[]): Promise<void> {
  const sent = await lab.exec('router', [process.execPath, RAW, 'send', JSON.stringify(segments)]);
  if (sent.code !== 0) throw new Error(`raw send failed: ${sent.stderr}`);
}
