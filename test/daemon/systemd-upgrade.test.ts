/*
 * systemd's side of the deployment, on loopback without systemd: a unix datagram socket as
 * $NOTIFY_SOCKET, a plain-relay `wedge serve --handover` in front of the built-in origin, a slow
 * curl download through it, and `wedge upgrade` (what the unit's ExecReload runs) with the same
 * options. Checked: READY=1 with MAINPID from the first process, then from the second; `wedge
 * upgrade` returns once the new process serves and the old one has exited; the download is
 * byte-exact across the upgrade.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { pack, unpack } from 'msgpackr';
import { afterAll, describe, expect, it } from 'vitest';
import { COMPILED_CLI } from '../../config/package.js';
import { freePorts, waitForPort } from '../support/ports.js';

const dir = mkdtempSync(join(tmpdir(), 'wedge-systemd-'));
const started: ChildProcess[] = [];
/* Started by `wedge upgrade` (detached), not by the test. */
let upgraded: number | undefined;

function start(argv: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(child);
  return child;
}

/* Datagrams arriving on a unix socket (python3: Node has no unix datagram sockets), one per line. */
function notifySocket(path: string): { lines: string[] } {
  const receiver = start(['python3', '-c', 'import socket,sys\ns=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nprint("bound", flush=True)\nwhile True: print(s.recv(4096).decode().replace("\\n", " "), flush=True)', path]);
  const received = { lines: [] as string[] };
  receiver.stdout!.on('data', (chunk: Buffer) => received.lines.push(...chunk.toString().split('\n').filter((l) => l.length > 0)));
  return received;
}

async function until(what: string, predicate: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function exited(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null ? Promise.resolve(child.exitCode) : new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

afterAll(() => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  if (upgraded !== undefined) {
    try {
      process.kill(upgraded, 'SIGKILL');
    } catch {
      // exited already
    }
  }
});

describe('systemd readiness and wedge upgrade (loopback)', () => {
  it('READY=1 with each process as MAINPID, and a download survives `wedge upgrade` byte-exact', async () => {
    const [originPort, listenPort, adminPort] = await freePorts(3);
    const root = join(dir, 'root');
    const body = randomBytes(24 * 1024 * 1024);
    await import('node:fs/promises').then((fs) => fs.mkdir(root, { recursive: true }));
    writeFileSync(join(root, 'big.bin'), body);
    start([process.execPath, COMPILED_CLI, 'origin', '--root', root, '--listen', `127.0.0.1:${originPort}`]);
    await waitForPort(originPort!);

    const notify = join(dir, 'notify.sock');
    const received = notifySocket(notify);
    await until('the notify socket', () => received.lines.includes('bound'));
    const options = ['--listen', `127.0.0.1:${listenPort}`, '--origin', `http://127.0.0.1:${originPort}`, '--admin', `127.0.0.1:${adminPort}`, '--handover', join(dir, 'handover.sock'), '--log-file', join(dir, 'wedge.log')];
    const first = start([process.execPath, COMPILED_CLI, 'serve', ...options], { NOTIFY_SOCKET: notify });
    await until('READY from the first process', () => received.lines.some((l) => l.startsWith(`READY=1 MAINPID=${first.pid} `)));

    const out = join(dir, 'download.bin');
    const curl = start(['curl', '-sS', '--max-time', '60', '--limit-rate', '4M', '-o', out, `http://127.0.0.1:${listenPort}/big.bin`]);
    await until('the download under way', () => {
      try {
        return readFileSync(out).length > 2 * 1024 * 1024;
      } catch {
        return false;
      }
    });

    const upgrade = start([process.execPath, COMPILED_CLI, 'upgrade', ...options], { NOTIFY_SOCKET: notify });
    let said = '';
    upgrade.stdout!.on('data', (chunk: Buffer) => (said += chunk.toString()));
    let errors = '';
    upgrade.stderr!.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    expect(await exited(upgrade), errors).toBe(0);
    const second = Number(/-> (\d+)/.exec(said)?.[1]);
    upgraded = second;
    expect(said).toContain(`upgraded in place: wedge ${first.pid} -> ${second}`);
    expect(await exited(first), 'the old process exits cleanly').toBe(0);
    await until('READY from the new process', () => received.lines.some((l) => l.startsWith(`READY=1 MAINPID=${second} `)));

    expect(await exited(curl), 'curl').toBe(0);
    const got = readFileSync(out);
    expect({ bytes: got.length, sha256: createHash('sha256').update(got).digest('hex') }).toEqual({ bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') });
  });

  it('a successor that dies after the old process froze its connections: each is reset, counted, never left waiting; the old process exits 1', async () => {
    const [originPort, listenPort, adminPort] = await freePorts(3);
    const root = join(dir, 'root-dying');
    await import('node:fs/promises').then((fs) => fs.mkdir(root, { recursive: true }));
    writeFileSync(join(root, 'big.bin'), randomBytes(24 * 1024 * 1024));
    start([process.execPath, COMPILED_CLI, 'origin', '--root', root, '--listen', `127.0.0.1:${originPort}`]);
    await waitForPort(originPort!);
    const handover = join(dir, 'dying-handover.sock');
    const wedge = start([process.execPath, COMPILED_CLI, 'serve', '--listen', `127.0.0.1:${listenPort}`, '--origin', `http://127.0.0.1:${originPort}`, '--admin', `127.0.0.1:${adminPort}`, '--handover', handover, '--log-file', join(dir, 'dying.log')]);
    await waitForPort(listenPort!);
    const out = join(dir, 'dying.bin');
    const curl = start(['curl', '-sS', '--max-time', '60', '--limit-rate', '2M', '-o', out, `http://127.0.0.1:${listenPort}/big.bin`]);
    await until('the download under way', () => {
      try {
        return readFileSync(out).length > 1024 * 1024;
      } catch {
        return false;
      }
    });

    // The "successor": the handover's first steps, then it vanishes with the connections frozen.
    const socket = net.connect(handover);
    const frames = framesOf(socket);
    socket.write(frame({ kind: 'hello', pid: process.pid }));
    expect((await frames.next()).kind).toBe('listener');
    socket.write(frame({ kind: 'listening' }));
    expect((await frames.next()).kind).toBe('state');
    socket.destroy();

    expect(await exited(curl), 'the client is reset, not left waiting').not.toBe(0);
    expect(await exited(wedge), 'the old process exits non-zero (it has no listener any more)').toBe(1);
    const log = readFileSync(join(dir, 'dying.log'), 'utf8');
    expect(log).toMatch(/"reason":"handover-failed"/);
  });
});

function frame(message: unknown): Buffer {
  const body = pack(message);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length);
  return Buffer.concat([length, body]);
}

/* The handover's length-prefixed msgpack messages from `socket`, one at a time. */
function framesOf(socket: net.Socket): { next(): Promise<{ kind: string }> } {
  let buffered = Buffer.alloc(0);
  const arrived: { kind: string }[] = [];
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 4 && buffered.length >= 4 + buffered.readUInt32BE(0)) {
      arrived.push(unpack(buffered.subarray(4, 4 + buffered.readUInt32BE(0))) as { kind: string });
      buffered = buffered.subarray(4 + buffered.readUInt32BE(0));
    }
  });
  return {
    async next() {
      await until('a handover message', () => arrived.length > 0, 10_000);
      return arrived.shift()!;
    },
  };
}
