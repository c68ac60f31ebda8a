import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  assertPrivileges,
  checkPrivileges,
  dump,
  NativeError,
  quietClose,
  restore,
  setRepair,
  socketFd,
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

  it("rebuilds a connection from a stale record at the client's position, by the native policy", async () => {
    const { client, server: accepted } = await connectPair(server, 'request');
    const record = dump(socketFd(accepted));
    // The stream moves on after the record, both ways, so the answer and the record differ.
    const toClient = readExactly(client, 1000);
    accepted.write(Buffer.alloc(1000, 1));
    await toClient;
    const toServer = readExactly(accepted, 300);
    client.write(Buffer.alloc(300, 2));
    await toServer;
    // The client's kernel state stands in for its probe answer; read while the server still
    // lives, since leaving repair mode sends a window probe the server must answer.
    const peer = dump(socketFd(client));
    const answer = { ack: peer.recvSeq, seq: peer.sendSeq, window: peer.window.rcvWnd >>> peer.rcvWscale, rttMs: 0, attempts: 1 };
    await new Promise((resolve) => setTimeout(resolve, 50));
    quietClose(accepted);

    const marginMs = 5000;
    const restoredAt = Date.now();
    const fd = restore(record, answer, { timestampMarginMs: marginMs });
    const rebuilt = dump(fd);
    const readAt = Date.now();
    const revived = new net.Socket({ fd, readable: true, writable: true });

    expect(rebuilt).toMatchObject({
      localPort: record.localPort,
      remotePort: record.remotePort,
      sendSeq: answer.ack,
      recvSeq: answer.seq,
      windowScaling: record.windowScaling,
      sndWscale: record.sndWscale,
      rcvWscale: record.rcvWscale,
      sack: record.sack,
      timestamps: record.timestamps,
    });
    expect(answer.ack).toBe((record.sendSeq + 1000) >>> 0);
    expect(answer.seq).toBe((record.recvSeq + 300) >>> 0);
    // Loopback's MSS is above what TCP_MAXSEG accepts (32767); the namespace takeover test sees it equal.
    expect(rebuilt.mss).toBe(Math.min(record.mss, 32767));
    expect(rebuilt.window.maxWindow).toBeGreaterThanOrEqual(answer.window * 2 ** record.sndWscale);
    // The clock: the record's, carried forward by the time since it was read, plus the margin.
    const ahead = (rebuilt.timestamp - record.timestamp) >>> 0;
    expect(ahead).toBeGreaterThanOrEqual(Math.floor(restoredAt - record.clockReadAt) + marginMs - 1);
    expect(ahead).toBeLessThanOrEqual(Math.ceil(readAt - record.clockReadAt) + marginMs + 2);

    const more = readExactly(client, 5);
    revived.write('world');
    expect((await more).toString()).toBe('world');
    client.destroy();
    revived.destroy();
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
