import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, Lab, PORT } from './lab.js';

/*
 * The probe, against a real client kernel:
 *   - A sends exactly 300 000 bytes and idles; the client reads them all; A vanishes. B's probe
 *     must report the client's next byte as offset 300 000 and its send sequence as A saw it.
 *   - a probe nobody answers rejects with ETIMEDOUT after its retries while timers keep firing;
 *     a probe for a 4-tuple the client does not know comes back as ECONNRESET.
 */

const SENT = 300_000;

describe('probe', () => {
  let lab: Lab;

  beforeAll(async () => {
    assertBuilt();
    lab = await Lab.create({ timestamps: true });
    await lab.ip(lab.serverA, 'addr', 'add', `${lab.vip}/${lab.prefix}`, 'dev', lab.ifA);
  });
  afterAll(async () => lab?.close());

  it('returns the exact next byte the client expects and its snd_nxt', async () => {
    const a = lab.start(lab.serverA, 'server-a.mjs', lab.vip, PORT, SENT, 16384, 0);
    await a.event('listening');
    const client = lab.start(lab.client, 'client.mjs', lab.vip, PORT, 1);
    const { dump } = (await a.event('dump')) as { dump: Record<string, number> };
    await client.waitFor((e) => e.event === 'read' && e.bytes === SENT);

    await lab.ip(lab.serverA, 'link', 'set', lab.ifA, 'down');
    a.kill('SIGKILL');
    const b = lab.start(lab.serverB, 'server-b.mjs', lab.ifB, `${lab.vip}/${lab.prefix}`, SENT, JSON.stringify(dump), 'probe-only');
    const { offset, answer } = (await b.event('answer')) as { offset: number; answer: Record<string, number> };

    expect(offset).toBe(SENT);
    expect(answer.seq).toBe(dump.recvSeq);
    expect(answer.window).toBeGreaterThan(0);
    expect(answer.tsVal).toEqual(expect.any(Number));
    expect(answer.tsEcr).toEqual(expect.any(Number));
    expect(answer.attempts).toBeGreaterThanOrEqual(1);
  });

  it('times out without blocking the event loop', async () => {
    const silent = lab.start(lab.serverB, 'probe-silence.mjs', lab.addressB, '10.77.0.99', 40000);
    const result = await silent.event('rejected');
    expect(result).toMatchObject({ name: 'NativeError', syscall: 'poll', code: 'ETIMEDOUT' });
    expect(result.ticks as number).toBeGreaterThanOrEqual(5);
  });

  it('reports a client without that connection as ECONNRESET', async () => {
    const unknown = lab.start(lab.serverB, 'probe-silence.mjs', lab.addressB, lab.clientAddress, 40001);
    const result = await unknown.event('rejected');
    expect(result).toMatchObject({ name: 'NativeError', code: 'ECONNRESET' });
  });
});
