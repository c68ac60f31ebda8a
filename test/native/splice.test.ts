import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NativeError, socketFd, splice } from '../../native/index.js';
import { Loopback, produce } from './loopback.js';

/* The splice engine on loopback: exact counts and bytes, bounded and unbounded transfers,
 * early EOF, a slow destination, cancel, failures, and many concurrent jobs. */

const MiB = 1 << 20;

/** Threads of this process: the engine adds one, whatever the number of jobs. */
function threadCount(): number {
  return Number(/^Threads:\s+(\d+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
}

function until(condition: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const timer = setInterval(() => condition() && (clearInterval(timer), resolve()), 5);
  });
}

describe('splice engine', () => {
  const loopback = new Loopback();
  beforeAll(() => loopback.open());
  afterAll(() => loopback.close());

  it('relays 256 MiB byte-exact until EOF', async () => {
    const { producer, source, destination, received } = await loopback.pair();
    const job = splice(socketFd(source), socketFd(destination), null);
    const sent = await produce(producer, 256 * MiB, true);
    const result = await job.done;
    destination.end();

    expect(result).toEqual({ bytes: sent.bytes, eof: true, cancelled: false });
    expect(job.bytes).toBe(sent.bytes);
    expect(await received).toEqual(sent);
    source.destroy();
  });

  it('stops at exactly `length` and leaves the rest to Node', async () => {
    const { producer, source, destination, received } = await loopback.pair();
    await produce(producer, 100_000, false);
    const result = await splice(socketFd(source), socketFd(destination), 60_000).done;
    destination.end();

    expect(result).toEqual({ bytes: 60_000, eof: false, cancelled: false });
    expect((await received).bytes).toBe(60_000);
    let rest = 0;
    source.on('data', (chunk: Buffer) => (rest += chunk.length));
    source.resume();
    producer.end();
    await new Promise((resolve) => source.once('end', resolve));
    expect(rest).toBe(40_000);
  });

  it('reports an early EOF with the count', async () => {
    const { producer, source, destination } = await loopback.pair();
    await produce(producer, 5_000, true);
    const result = await splice(socketFd(source), socketFd(destination), 10_000).done;
    expect(result).toEqual({ bytes: 5_000, eof: true, cancelled: false });
    destination.destroy();
    source.destroy();
  });

  it('waits for a slow destination', async () => {
    const { producer, source, destination, sink, received } = await loopback.pair();
    sink.pause();
    const job = splice(socketFd(source), socketFd(destination), null);
    const sending = produce(producer, 16 * MiB, true);
    let seen = -1;
    await until(() => {
      const stalled = job.bytes > 0 && job.bytes === seen;
      seen = job.bytes;
      return stalled;
    });
    expect(job.bytes).toBeLessThan(16 * MiB);
    sink.resume();
    const result = await job.done;
    destination.end();
    expect(result.bytes).toBe(16 * MiB);
    expect(await received).toEqual(await sending);
    source.destroy();
  });

  it('cancels a running job', async () => {
    const { producer, source, destination } = await loopback.pair();
    const job = splice(socketFd(source), socketFd(destination), null);
    await produce(producer, MiB, false);
    await until(() => job.bytes === MiB);
    job.cancel();
    expect(await job.done).toEqual({ bytes: MiB, eof: false, cancelled: true });
    for (const s of [producer, source, destination]) s.destroy();
  });

  it('rejects with the failing syscall when the destination resets mid-transfer', async () => {
    const { producer, source, destination, sink } = await loopback.pair();
    destination.on('error', () => undefined);
    const job = splice(socketFd(source), socketFd(destination), null);
    const sending = produce(producer, 64 * MiB, true).catch(() => undefined);
    await until(() => job.bytes > 0);
    sink.resetAndDestroy();
    const error = await job.done.then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(NativeError);
    expect(error).toMatchObject({
      syscall: expect.stringMatching(/^(splice|epoll_wait)$/),
      code: expect.stringMatching(/^(EPIPE|ECONNRESET)$/),
    });
    for (const s of [producer, source, destination]) s.destroy();
    await sending;
  });

  it('ends when the destination fails while the source is idle', async () => {
    const { producer, source, destination, sink } = await loopback.pair();
    destination.on('error', () => undefined);
    const job = splice(socketFd(source), socketFd(destination), null);
    sink.resetAndDestroy();
    const error = await job.done.then(() => null, (e: unknown) => e);
    expect(error).toMatchObject({ name: 'NativeError', syscall: 'epoll_wait', code: expect.stringMatching(/^(EPIPE|ECONNRESET)$/) });
    for (const s of [producer, source, destination]) s.destroy();
  });

  it('throws a NativeError at once for a bad fd', () => {
    expect(() => splice(1_000_000, 1_000_001, null)).toThrow(expect.objectContaining({ name: 'NativeError', code: 'EBADF' }));
  });

  it('runs 200 concurrent transfers on one engine thread', async () => {
    const pairs = await Promise.all(Array.from({ length: 200 }, () => loopback.pair()));
    const threadsBefore = threadCount();
    let threadsDuring = 0;
    const results = await Promise.all(
      pairs.map(async ({ producer, source, destination, received }) => {
        const job = splice(socketFd(source), socketFd(destination), null);
        const sent = await produce(producer, 64 * 1024, true);
        threadsDuring = Math.max(threadsDuring, threadCount());
        const result = await job.done;
        destination.end();
        source.destroy();
        return { result, sent, got: await received };
      }),
    );
    expect(threadsDuring - threadsBefore).toBeLessThanOrEqual(1);
    for (const { result, sent, got } of results) {
      expect(result).toEqual({ bytes: sent.bytes, eof: true, cancelled: false });
      expect(got).toEqual(sent);
    }
  });
});
