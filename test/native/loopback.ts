import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';

/*
 * Socket pairs on 127.0.0.1 for relay tests and benches:
 *
 *   producer ──TCP──▶ source (accepted, paused)      destination ──TCP──▶ sink (hashes)
 *                          └──────── relay under test (splice, pipe()) ────────┘
 *
 * The source socket never starts reading (pauseOnConnect); the sink counts and hashes
 * everything until EOF.
 */

export interface Received {
  bytes: number;
  sha256: string;
}

export interface RelayPair {
  producer: net.Socket;
  source: net.Socket;
  destination: net.Socket;
  /** The sink's socket (paused or reset by slow/error tests). */
  sink: net.Socket;
  received: Promise<Received>;
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(socket)).once('error', reject);
  });
}

export class Loopback {
  private readonly sourceServer = net.createServer({ pauseOnConnect: true });
  private readonly sinkServer = net.createServer();
  private readonly accepted = new Rendezvous();
  private readonly sinks = new Rendezvous();
  private sourcePort = 0;
  private sinkPort = 0;

  async open(): Promise<void> {
    this.sourceServer.on('connection', (s) => this.accepted.arrive(s));
    this.sinkServer.on('connection', (s) => this.sinks.arrive(s));
    this.sourcePort = await listen(this.sourceServer);
    this.sinkPort = await listen(this.sinkServer);
  }

  async pair(): Promise<RelayPair> {
    const producer = await connect(this.sourcePort);
    const source = await this.accepted.take(producer.localPort!);
    (source as unknown as { _handle: { readStop(): void } })._handle.readStop();
    const destination = await connect(this.sinkPort);
    const sink = await this.sinks.take(destination.localPort!);
    return { producer, source, destination, sink, received: hashUntilEnd(sink) };
  }

  close(): void {
    this.sourceServer.close();
    this.sinkServer.close();
  }
}

/* Accepted sockets meet their client by port, whichever side shows up first. */
class Rendezvous {
  private readonly arrived = new Map<number, net.Socket>();
  private readonly waiting = new Map<number, (socket: net.Socket) => void>();

  arrive(socket: net.Socket): void {
    const port = socket.remotePort!;
    const waiter = this.waiting.get(port);
    if (waiter) {
      this.waiting.delete(port);
      waiter(socket);
    } else {
      this.arrived.set(port, socket);
    }
  }

  take(port: number): Promise<net.Socket> {
    const socket = this.arrived.get(port);
    this.arrived.delete(port);
    return socket ? Promise.resolve(socket) : new Promise((resolve) => this.waiting.set(port, resolve));
  }
}

function hashUntilEnd(socket: net.Socket): Promise<Received> {
  const hash = createHash('sha256');
  let bytes = 0;
  return new Promise((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash.update(chunk);
    });
    socket.on('end', () => resolve({ bytes, sha256: hash.digest('hex') }));
    socket.on('error', reject);
  });
}

function drained(socket: net.Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    const onClose = () => reject(new Error('socket closed before drain'));
    socket.once('close', onClose);
    socket.once('drain', () => {
      socket.off('close', onClose);
      resolve();
    });
  });
}

/** Writes `total` random bytes in 1 MiB chunks (with backpressure), then ends if asked. */
export async function produce(socket: net.Socket, total: number, end: boolean): Promise<Received> {
  const hash = createHash('sha256');
  for (let written = 0; written < total; ) {
    const chunk = randomBytes(Math.min(1 << 20, total - written));
    hash.update(chunk);
    written += chunk.length;
    if (!socket.write(chunk)) await drained(socket);
  }
  if (end) socket.end();
  return { bytes: total, sha256: hash.digest('hex') };
}
