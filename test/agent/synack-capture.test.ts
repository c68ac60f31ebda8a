import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../config/package.js';
import { TCP_ACK, TCP_RST, TCP_SYN } from '../../native/migrate.js';
import { assertBuilt, Lab, NsProcess } from '../native/lab.js';

/*
 * The native SYN-ACK capture (how the agent learns connections) against hand-made segments from
 * server B: only SYN-ACKs (not with RST, not bare SYNs or ACKs) from the listed ports are
 * delivered, with their sequence numbers as sent.
 */

describe('SynAckCapture', () => {
  let lab: Lab;
  let capture: NsProcess;

  beforeAll(async () => {
    assertBuilt();
    lab = await Lab.create({ timestamps: true });
    capture = new NsProcess(spawn('ip', ['netns', 'exec', lab.client, process.execPath, join(PACKAGE_ROOT, 'test', 'agent', 'fixtures', 'synack-capture.mjs'), lab.clientAddress, '80,8080'], { stdio: 'pipe' }));
    await capture.event('listening');
  });
  afterAll(async () => {
    capture?.kill();
    await capture?.exited;
    await lab?.close();
  });

  it('delivers SYN-ACKs from the service ports only', async () => {
    const segment = (seq: number, sourcePort: number, flags: number) => ({
      localAddress: lab.addressB,
      localPort: sourcePort,
      remoteAddress: lab.clientAddress,
      remotePort: 40000 + seq,
      seq,
      ack: 7000 + seq,
      flags,
    });
    const segments = [
      segment(1, 80, TCP_SYN | TCP_ACK),
      segment(2, 8080, TCP_SYN | TCP_ACK),
      segment(3, 81, TCP_SYN | TCP_ACK),
      segment(4, 80, TCP_SYN | TCP_ACK | TCP_RST),
      segment(5, 80, TCP_SYN),
      segment(6, 80, TCP_ACK),
      segment(7, 80, TCP_SYN | TCP_ACK),
    ];
    await lab.start(lab.serverB, 'migrate-raw.mjs', 'send', JSON.stringify(segments)).event('sent');
    await capture.waitFor((e) => e.event === 'synack' && e.seq === 7);
    const seen = capture.events.filter((e) => e.event === 'synack');
    expect(seen.map((e) => e.seq)).toEqual([1, 2, 7]);
    expect(seen[0]).toMatchObject({ sourceAddress: lab.addressB, sourcePort: 80, destinationAddress: lab.clientAddress, destinationPort: 40001, ack: 7001, flags: TCP_SYN | TCP_ACK });
    capture.child.stdin!.end();
    expect(await capture.event('stopped')).toMatchObject({ dropped: 0 });
  });
});
