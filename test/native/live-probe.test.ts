import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, Lab, PORT } from './lab.js';

/*
 * What the watchdog (takeover/watchdog.ts) reads of a connection served here, against a real
 * client kernel: progress() of the live socket once the client acknowledged every byte, and a
 * live re-probe (probeLive: the socket itself holds the 4-tuple) that reports the client's next
 * wanted byte exactly and leaves the stream intact.
 */

const SENT = 200_000;
const MORE = 50_000;

describe('live re-probe and progress', () => {
  let lab: Lab;

  beforeAll(async () => {
    assertBuilt();
    lab = await Lab.create({ timestamps: true });
  });
  afterAll(async () => lab?.close());

  it('reports the client at the end of what it acknowledged, and the stream goes on byte-exact', async () => {
    const a = lab.start(lab.serverA, 'live-probe.mjs', lab.ifA, lab.addressA, PORT, SENT, MORE);
    await a.event('listening');
    const client = lab.start(lab.client, 'client.mjs', lab.addressA, PORT, 1_000_000);

    const { progress } = (await a.event('progress')) as { progress: Record<string, unknown> };
    expect(progress).toMatchObject({ established: true, bytesAcked: SENT, inFlight: 0, notSent: 0, retransmits: 0 });
    expect(progress.peerWindow).toBeGreaterThan(0);

    const answer = (await a.event('answer')) as { offset: number; seq: number; recvSeq: number };
    expect(answer.offset).toBe(SENT);
    expect(answer.seq).toBe(answer.recvSeq);

    const end = (await client.event('end')) as { bytes: number; firstMismatch: number };
    expect(end).toMatchObject({ bytes: SENT + MORE, firstMismatch: -1 });
  });
});
