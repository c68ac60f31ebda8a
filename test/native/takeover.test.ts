import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectionDump, ProbeAnswer } from '../../native/index.js';
import { DEFAULT_TIMESTAMP_MARGIN_MS } from '../../native/repair.js';
import { sha256 } from '../support/bytes.js';
import { assertBuilt, Lab, pattern, PORT } from './lab.js';

/*
 * Address takeover, end to end:
 *   client ns: plain client streams 4 MiB from the VIP and checks every byte
 *   server A:  dumps its socket after reading the request, streams slowly, then vanishes
 *              (link down, SIGKILL) once the client has 1 MiB
 *   server B:  adds the VIP, gratuitous ARP, probe, restore, streams the rest from the
 *              client's next byte
 * The client must end with exactly the 4 MiB pattern.
 */

const SIZE = 4 * 1024 * 1024;
const CUT_AFTER = 1024 * 1024;

describe.each([
  { timestamps: true },
  { timestamps: false },
])('address takeover, TCP timestamps $timestamps', ({ timestamps }) => {
  let lab: Lab;

  beforeAll(async () => {
    assertBuilt();
    lab = await Lab.create({ timestamps });
    await lab.ip(lab.serverA, 'addr', 'add', `${lab.vip}/${lab.prefix}`, 'dev', lab.ifA);
  });
  afterAll(async () => lab?.close());

  it('B resumes the stream at the client next byte, byte-exact', async () => {
    const a = lab.start(lab.serverA, 'server-a.mjs', lab.vip, PORT, SIZE, 16384, 10);
    await a.event('listening');
    const client = lab.start(lab.client, 'client.mjs', lab.vip, PORT, 128 * 1024);
    const { dump } = (await a.event('dump')) as { dump: ConnectionDump };
    await client.waitFor((e) => e.event === 'read' && (e.bytes as number) >= CUT_AFTER);

    await lab.ip(lab.serverA, 'link', 'set', lab.ifA, 'down');
    a.kill('SIGKILL');

    const b = lab.start(lab.serverB, 'server-b.mjs', lab.ifB, `${lab.vip}/${lab.prefix}`, SIZE, JSON.stringify(dump));
    const { offset, answer } = (await b.event('answer')) as { offset: number; answer: ProbeAnswer };
    const { state, restoredAt } = (await b.event('restored')) as { state: ConnectionDump; restoredAt: number };
    const end = await client.event('end', 60_000);

    expect(dump).toMatchObject({ timestamps, sack: true, windowScaling: true });
    expect(answer.seq).toBe(dump.recvSeq);
    // Full-size segments, as on the original connection (not the 536-byte default).
    expect(state.mss).toBe(dump.mss);
    // The restore policy (native/src/repair.cc SpecFor), read back from the rebuilt socket.
    expect(state).toMatchObject({
      sendSeq: answer.ack,
      recvSeq: answer.seq,
      windowScaling: dump.windowScaling,
      sndWscale: dump.sndWscale,
      rcvWscale: dump.rcvWscale,
      sack: dump.sack,
      timestamps,
    });
    expect(state.window.maxWindow).toBeGreaterThanOrEqual(answer.window * 2 ** dump.sndWscale);
    if (timestamps) {
      // Never behind the old server's clock carried to restore time plus the default margin (PAWS).
      const ahead = (state.timestamp - dump.timestamp) >>> 0;
      expect(ahead).toBeGreaterThanOrEqual(Math.floor(restoredAt - dump.clockReadAt) + DEFAULT_TIMESTAMP_MARGIN_MS - 1);
      expect(ahead).toBeLessThan(2 ** 31);
    }
    expect(offset).toBeGreaterThanOrEqual(CUT_AFTER);
    expect(offset).toBeLessThan(SIZE);
    expect(end).toMatchObject({ bytes: SIZE, firstMismatch: -1, sha256: sha256(pattern(0, SIZE)) });
  });
});
