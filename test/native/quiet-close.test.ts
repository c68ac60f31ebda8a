import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, Lab, PORT, type NsProcess } from './lab.js';

/*
 * quietClose() sends nothing. Server A drops one connection with quietClose() and another with
 * an ordinary destroy(); capture.py in the client namespace watches the wire. The loud close
 * must show up (a FIN: proof the capture sees the server), the quiet one must leave no packet
 * at all from the server after the close, and the client socket must notice nothing.
 */

const SETTLE_MS = 500;

function serverPackets(capture: NsProcess, clientPort: number) {
  return capture.events.filter((e) => e.event === 'packet' && e.sport === PORT && e.dport === clientPort);
}

describe('quietClose', () => {
  let lab: Lab;

  beforeAll(async () => {
    assertBuilt();
    lab = await Lab.create({ timestamps: true });
  });
  afterAll(async () => lab?.close());

  it('drops the connection without a packet to the client', async () => {
    const capture = lab.start(lab.client, 'capture.py', lab.ifClient);
    await capture.event('ready');
    const server = lab.start(lab.serverA, 'close-server.mjs', lab.addressA, PORT);
    await server.event('listening');
    const client = lab.start(lab.client, 'close-client.mjs', lab.addressA, PORT);

    const quiet = await server.waitFor((e) => e.event === 'closed' && e.mode === 'QUIET');
    const loud = await server.waitFor((e) => e.event === 'closed' && e.mode === 'LOUD');
    await client.waitFor((e) => e.event === 'end' && e.mode === 'LOUD');
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));

    const loudPackets = serverPackets(capture, loud.clientPort as number);
    expect(loudPackets.some((p) => (p.flags as string).includes('F'))).toBe(true);

    const quietPackets = serverPackets(capture, quiet.clientPort as number);
    expect(quietPackets.some((p) => (p.len as number) > 0)).toBe(true);
    const afterClose = quietPackets.filter((p) => BigInt(p.t as string) > BigInt(quiet.at as string));
    expect(afterClose).toEqual([]);
    expect(quietPackets.filter((p) => /[FR]/.test(p.flags as string))).toEqual([]);
    expect(client.events.filter((e) => e.mode === 'QUIET' && (e.event === 'end' || e.event === 'error'))).toEqual([]);
  });
});
