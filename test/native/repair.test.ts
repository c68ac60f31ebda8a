import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  assertPrivileges,
  checkPrivileges,
  dump,
  extrapolateClock,
  NativeError,
  quietClose,
  restore,
  restoreSpec,
  setRepair,
  socketFd,
  type ConnectionDump,
} from '../../native/index.js';

/* dump/restore on loopback, in-process: the two ends' dumps mirror each other, dumping does not
 * disturb the stream, and a connection dropped with quietClose() is rebuilt by restore() and
 * carries data both ways through a plain net.Socket. */

interface Connected {
  client: net.Socket;
  server: net.Socket;
}

function connectPair(server: net.Server, request: string): Promise<Connected> {
  return new Promise((resolve) => {
    server.once('connection', (accepted: net.Socket) => {
      accepted.once('data', () => resolve({ client, server: accepted }));
    });
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1', () => client.write(request));
  });
}

function readExactly(socket: net.Socket, length: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      got += chunk.length;
      if (got >= length) {
        socket.off('data', onData);
        resolve(Buffer.concat(chunks));
      }
    };
    socket.on('data', onData);
  });
}

describe('dump and restore on loopback', () => {
  const server = net.createServer();
  beforeAll(() => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)));
  afterAll(() => server.close());

  it('reports privileges once, and they are enough here', () => {
    const report = checkPrivileges();
    expect(report).toMatchObject({ netAdmin: true, netRaw: true, tcpRepair: true, ok: true, problems: [] });
    expect(checkPrivileges()).toBe(report);
    expect(() => assertPrivileges()).not.toThrow();
  });

  it("mirrors the peer's sequences and does not disturb the stream", async () => {
    const { client, server: accepted } = await connectPair(server, 'hello');
    const before = dump(socketFd(accepted));
    const peer = dump(socketFd(client));

    expect(before).toMatchObject({
      localPort: peer.remotePort,
      remotePort: peer.localPort,
      sendSeq: peer.recvSeq,
      recvSeq: peer.sendSeq,
      timestamps: peer.timestamps,
    });
    expect(before.mss).toBeGreaterThan(0);

    const body = Buffer.alloc(1 << 20, 7);
    const arriving = readExactly(client, body.length);
    accepted.write(body);
    expect((await arriving).equals(body)).toBe(true);
    expect((dump(socketFd(accepted)).sendSeq - before.sendSeq) >>> 0).toBe(body.length);
    client.destroy();
    accepted.destroy();
  });

  it("finds the peer's ISN exactly while its data keeps arriving", async () => {
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const { port } = server.address() as net.AddressInfo;
    // Another process writes small segments non-stop, so they land between the dump's syscalls.
    const writer = spawn(process.execPath, ['-e', `
      const socket = require('net').connect(${port}, '127.0.0.1', () => {
        const pump = () => { while (socket.write(Buffer.alloc(72, 65))); };
        socket.on('drain', pump);
        pump();
      });
      socket.on('error', () => process.exit(0));`]);
    const socket = await accepted;
    socket.on('data', () => undefined);
    try {
      await new Promise((r) => setTimeout(r, 100));
      const anchors = new Set<number>();
      for (let i = 0; i < 3000; i++) {
        const state = dump(socketFd(socket));
        anchors.add((state.recvSeq - state.bytesReceived) >>> 0);
      }
      expect(anchors.size).toBe(1);
    } finally {
      writer.kill();
      socket.destroy();
    }
  });

  it('rebuilds a quietly closed connection that then works both ways', async () => {
    const { client, server: accepted } = await connectPair(server, 'request');
    const state = dump(socketFd(accepted));
    quietClose(accepted);
    const answer = { ack: state.sendSeq, seq: state.recvSeq, window: state.window.sndWnd >>> state.sndWscale, rttMs: 0, attempts: 1 };
    const revived = new net.Socket({ fd: restore(state, answer), readable: true, writable: true });

    const toClient = readExactly(client, 5);
    revived.write('world');
    expect((await toClient).toString()).toBe('world');
    const toServer = readExactly(revived, 4);
    client.write('more');
    expect((await toServer).toString()).toBe('more');
    client.destroy();
    revived.destroy();
  });

  it('keeps the extrapolated clock even, ahead by elapsed time plus margin', () => {
    const base = { timestamp: 0xffff_fff0, clockReadAt: 1_000_000 } as ConnectionDump;
    const clock = extrapolateClock(base, 1_000_250, 1000);
    expect(clock % 2).toBe(0);
    expect(clock).toBe((0xffff_fff0 + 1250) % 2 ** 32);
  });

  it('scales the client window by its window scale', () => {
    const base = { windowScaling: true, sndWscale: 7, window: { maxWindow: 1000, rcvWnd: 5000 } } as ConnectionDump;
    const spec = restoreSpec(base, { ack: 10, seq: 20, window: 512, rttMs: 0, attempts: 1 }, { now: 0 });
    expect(spec).toMatchObject({ sendSeq: 10, recvSeq: 20, window: { sndWl1: 20, sndWnd: 512 << 7, maxWindow: 512 << 7, rcvWnd: 5000, rcvWup: 20 } });
  });

  it('names the syscall and errno when the fd is not a socket', () => {
    const file = openSync('/proc/self/status', 'r');
    let error: unknown;
    try {
      setRepair(file, true);
    } catch (e) {
      error = e;
    } finally {
      closeSync(file);
    }
    expect(error).toBeInstanceOf(NativeError);
    expect(error).toMatchObject({ syscall: 'setsockopt', code: 'ENOTSOCK', errno: 88 });
  });
});
