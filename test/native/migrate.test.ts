import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeMigrateOption, migrateSynOptions, MIGRATE_EXID } from '../../migrate/option.js';
import { TCP_ACK, TCP_SYN } from '../../native/migrate.js';
import { assertBuilt, Lab, type NsProcess } from './lab.js';

/*
 * Migrate SYNs across real namespaces: server B sends hand-built segments through its raw
 * socket; the capture in the client namespace (on br0) must deliver exactly the Migrate SYN, with
 * the exact option bytes and header fields, and nothing else (plain SYN, another ExID, SYN-ACK,
 * Migrate option not first). An independent observer in B's namespace sees the client kernel
 * answer the Migrate SYN with RST (nothing listens on that port): a kernel only answers a
 * segment whose TCP checksum is right, so this proves the checksum.
 */

describe('Migrate SYN send and capture', () => {
  let lab: Lab;

  beforeAll(async () => {
    assertBuilt();
    lab = await Lab.create({ timestamps: true });
  });
  afterAll(async () => lab?.close());

  it('captures exactly the Migrate SYN with its exact option bytes, without blocking the event loop', async () => {
    const key = Buffer.alloc(32, 7);
    const token = Buffer.from('0102030405060708', 'hex');
    const seq = 0x10203040;
    const ack = 0x50607080;
    const client = { address: lab.clientAddress, port: 40000 };
    const option = encodeMigrateOption(key, { client, oldServer: { address: lab.addressA, port: 8080 }, newServer: { address: lab.addressB, port: 8080 }, seq, ack }, token, 9);
    const options = migrateSynOptions(option, 1460);
    const otherExid = Buffer.from(options);
    otherExid.writeUInt16BE(MIGRATE_EXID + 1, 2);
    const notFirst = Buffer.concat([Buffer.from([1, 1, 1, 1]), option]);
    const from = { localAddress: lab.addressB, localPort: 8080, remoteAddress: lab.clientAddress };
    const segments = [
      { ...from, remotePort: 40001, seq, ack, flags: TCP_SYN, options: '' },
      { ...from, remotePort: 40002, seq, ack, flags: TCP_SYN, options: otherExid.toString('hex') },
      { ...from, remotePort: 40003, seq, ack, flags: TCP_SYN | TCP_ACK, options: options.toString('hex') },
      { ...from, remotePort: 40004, seq, ack, flags: TCP_SYN, options: notFirst.toString('hex') },
      { ...from, remotePort: client.port, seq, ack, flags: TCP_SYN, window: 29200, options: options.toString('hex') },
    ];

    const capture: NsProcess = lab.start(lab.client, 'migrate-raw.mjs', 'capture', lab.clientAddress, lab.ifClient, MIGRATE_EXID);
    await capture.event('listening');
    const observer = lab.start(lab.serverB, 'capture.py', lab.ifB);
    await observer.event('ready');
    await lab.start(lab.serverB, 'migrate-raw.mjs', 'send', JSON.stringify(segments)).event('sent');

    const syn = await capture.event('syn');
    expect(syn).toMatchObject({
      sourceAddress: lab.addressB,
      sourcePort: 8080,
      destinationAddress: lab.clientAddress,
      destinationPort: client.port,
      seq,
      ack,
      window: 29200,
      flags: TCP_SYN,
      options: options.toString('hex'),
    });
    const reset = await observer.waitFor((p) => p.src === lab.clientAddress && p.dport === 8080 && p.sport === client.port && String(p.flags).includes('R'));
    expect(reset.ack).toBe(seq + 1);

    // Let any wrongly captured segment arrive before counting.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(capture.events.filter((e) => e.event === 'syn')).toHaveLength(1);
    capture.child.stdin!.end();
    const stopped = await capture.event('stopped');
    expect(stopped.dropped).toBe(0);
    expect(stopped.ticks as number).toBeGreaterThan(10);
    expect(await capture.exited).toBe(0);
  });

  it('refuses options that are not a multiple of 4 bytes or longer than 40', async () => {
    const { sendTcpSegment } = await import('../../native/migrate.js');
    const base = { localAddress: '127.0.0.1', localPort: 1, remoteAddress: '127.0.0.1', remotePort: 2, seq: 0, ack: 0, flags: TCP_SYN };
    expect(() => sendTcpSegment({ ...base, options: Buffer.alloc(3) })).toThrow(RangeError);
    expect(() => sendTcpSegment({ ...base, options: Buffer.alloc(44) })).toThrow(RangeError);
  });
});
