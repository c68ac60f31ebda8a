/*
 * In-place upgrade: a new `wedge serve` on the same host takes over the running one's listening
 * socket and every live client connection, with its stream map and its exact position, so a
 * restart loses nothing even with no peer at all. Both run with `--handover PATH`; the running one
 * listens there (a unix socket, mode 0600), the new one connects at start-up. Messages are
 * msgpack, each after its 4-byte length:
 *
 *   new → old  hello      {pid}
 *   old → new  listener   {pid, fd}: the new process takes the listening socket (pidfd_getfd,
 *                          native/src/handover.cc) and accepts from it at once; the old one stops
 *   new → old  listening
 *   old → new  state      every connection frozen at a clean point (relay/connection.ts freeze():
 *                          nothing moves, `sent` is the kernel's write position), with its record
 *                          when failover is on; the soft-state sender (epoch and last sequence
 *                          number: peers see no restart) and the service addresses held. Before
 *                          this the old process has stopped its failover parts and freed the admin
 *                          and state ports
 *   new → old  taken      {ids}: the connections whose sockets it took; it serves them from
 *                          their position on (the same kernel socket: what the old process had
 *                          queued still reaches the client, the rest comes from the origin)
 * The old process then closes its descriptors of the taken connections (nothing is sent: the new
 * process holds the sockets), resets any it could not hand over (counted 'handover-failed'), lets
 * those not at a clean point (a request arriving) finish within --drain-timeout, and exits.
 */
import net from 'node:net';
import { chmod, unlink } from 'node:fs/promises';
import { pack, unpack } from 'msgpackr';
import type { Logger } from 'pino';
import { WedgeError } from '../errors/codes.js';
import { takeFd } from '../native/index.js';
import type { AdoptedStream, FrozenConnection, RelayConnection } from '../relay/connection.js';
import { parseReplicatedStream } from '../replication/records.js';
import type { ConnectionRecord, ServiceClaim } from '../softstate/index.js';
import { planResume } from '../stream-map/resume-plan.js';

const MESSAGE_TIMEOUT_MS = 10_000;

export interface HandedConnection extends FrozenConnection {
  record?: ConnectionRecord;
}

/* The soft-state side of a handover (with failover on); the epoch as a decimal string. */
export interface HandedFailover {
  sender: { epoch: string; lastSeq: number };
  services: ServiceClaim[];
}

type Message =
  | { kind: 'hello'; pid: number }
  | { kind: 'listener'; pid: number; fd: number }
  | { kind: 'listening' }
  | { kind: 'state'; connections: HandedConnection[]; failover?: HandedFailover }
  | { kind: 'taken'; ids: string[] };

/* One side of the handover socket: framed messages in order. */
class Channel {
  private buffered = Buffer.alloc(0);
  private readonly arrived: Message[] = [];
  private waiter: ((message: Message | Error) => void) | undefined;

  constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      while (this.buffered.length >= 4 && this.buffered.length >= 4 + this.buffered.readUInt32BE(0)) {
        const length = this.buffered.readUInt32BE(0);
        this.deliver(unpack(this.buffered.subarray(4, 4 + length)) as Message);
        this.buffered = this.buffered.subarray(4 + length);
      }
    });
    const gone = () => this.waiter?.(new WedgeError('WEDGE_ERR_HANDOVER', 'the other wedge process closed the handover socket'));
    socket.on('close', gone);
    socket.on('error', gone);
  }

  send(message: Message): void {
    const body = pack(message);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(body.length);
    this.socket.write(Buffer.concat([length, body]));
  }

  async next<K extends Message['kind']>(kind: K): Promise<Extract<Message, { kind: K }>> {
    const message =
      this.arrived.shift() ??
      (await new Promise<Message | Error>((resolve) => {
        const timer = setTimeout(() => resolve(new WedgeError('WEDGE_ERR_HANDOVER', `no "${kind}" from the other wedge process within ${MESSAGE_TIMEOUT_MS} ms`)), MESSAGE_TIMEOUT_MS);
        this.waiter = (m) => {
          clearTimeout(timer);
          this.waiter = undefined;
          resolve(m);
        };
      }));
    if (message instanceof Error) throw message;
    if (message.kind !== kind) throw new WedgeError('WEDGE_ERR_HANDOVER', `expected "${kind}" from the other wedge process, got "${message.kind}"`);
    return message as Extract<Message, { kind: K }>;
  }

  close(): void {
    this.socket.end();
  }

  private deliver(message: Message): void {
    if (this.waiter) this.waiter(message);
    else this.arrived.push(message);
  }
}

/* ---- the new process ---- */

/* What the new process needs of its server (daemon/server.ts). */
export interface Successor {
  listen(listenerFd: number): Promise<void>;
  adopt(socket: net.Socket, adopted: AdoptedStream, id: string): RelayConnection;
  readonly metrics: { inherited: { inc(labels: { result: InheritedResult }): void } };
}

type InheritedResult = 'resumed' | 'finished' | 'reset' | 'untaken';

/* The running predecessor at `path`, or undefined when none answers there (a first start). */
export async function connectPredecessor(path: string, logger: Logger): Promise<Predecessor | undefined> {
  const socket = await new Promise<net.Socket | undefined>((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => resolve(s));
    s.once('error', () => resolve(undefined));
  });
  if (!socket) return undefined;
  return new Predecessor(new Channel(socket), logger);
}

export class Predecessor {
  private pid = 0;

  constructor(
    private readonly channel: Channel,
    private readonly logger: Logger,
  ) {}

  /* Takes the listening socket and accepts on it; resolves once the predecessor has stopped. */
  async takeListener(server: Successor): Promise<void> {
    this.channel.send({ kind: 'hello', pid: process.pid });
    const { pid, fd } = await this.channel.next('listener');
    this.pid = pid;
    await server.listen(takeFd(pid, fd));
    this.channel.send({ kind: 'listening' });
  }

  /* What the predecessor hands over, once it has frozen everything and stopped its own failover. */
  async state(): Promise<{ connections: HandedConnection[]; failover?: HandedFailover }> {
    return this.channel.next('state');
  }

  /*
   * Each connection's socket taken and served on from its position; `track` (failover on) gets
   * each one served here with its record. Tells the predecessor which ones it has.
   */
  adopt(connections: readonly HandedConnection[], server: Successor, track: (connection: RelayConnection, record: ConnectionRecord) => void): number {
    const taken: string[] = [];
    for (const handed of connections) {
      let fd: number;
      try {
        fd = takeFd(this.pid, handed.fd);
      } catch (err) {
        this.logger.error({ conn: handed.id, err: (err as Error).message }, 'cannot take the socket of a handed-over connection');
        server.metrics.inherited.inc({ result: 'untaken' });
        continue;
      }
      taken.push(handed.id);
      const connection = serveHanded(handed, new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true }), server, this.logger);
      if (connection && handed.record) track(connection, handed.record);
    }
    this.channel.send({ kind: 'taken', ids: taken });
    this.channel.close();
    this.logger.warn({ from: this.pid, handedOver: connections.length, taken: taken.length }, 'in-place upgrade: connections taken over from the previous process');
    return taken.length;
  }
}

/* One handed-over socket, served on from where the client's stream stands in the kernel. */
function serveHanded(handed: HandedConnection, socket: net.Socket, server: Successor, logger: Logger): RelayConnection | undefined {
  const stream = parseReplicatedStream(handed.stream);
  const { sent, received } = handed.stream;
  const plan = stream ? planResume(stream.map, sent, received, received, stream.snapshot) : { kind: 'abort' as const, reason: 'the stream map does not parse' };
  server.metrics.inherited.inc({ result: plan.kind === 'resume' ? 'resumed' : plan.kind === 'abort' ? 'reset' : 'finished' });
  switch (plan.kind) {
    case 'closed':
      socket.destroy();
      return undefined;
    case 'finish':
      socket.end(() => socket.destroy());
      return undefined;
    case 'abort':
      logger.warn({ conn: handed.id, reason: plan.reason, sent }, 'handed-over connection cannot go on exactly; resetting');
      socket.resetAndDestroy();
      return undefined;
    case 'resume':
      return server.adopt(
        socket,
        {
          streamMap: stream!.map,
          bytesFromClient: received,
          bytesToClient: sent,
          ackBase: handed.ackBase,
          pending: Buffer.from(handed.pending),
          steps: plan.steps,
          replay: plan.replay,
          clientFinished: plan.clientFinished,
          ...(stream!.snapshot ? { snapshot: stream!.snapshot } : {}),
        },
        handed.id,
      );
  }
}

/* ---- the running process ---- */

/* What the running process hands over and how it stops (daemon.ts). */
export interface Handing {
  listenerFd(): number;
  stopAccepting(): void;
  connections(): RelayConnection[];
  /* Failover on: each connection's record, then every failover part stopped; the sender and claims. */
  record(id: string): ConnectionRecord | undefined;
  stopFailover(): Promise<HandedFailover | undefined>;
  stopServices(): Promise<void>;
}

/* How a handover ended, once this process had let go of its listener: the connections left here
 * (not at a clean point), and the error if the next process failed after that (the connections
 * frozen by then were reset, counted: nothing waits on a half-done handover). */
export interface HandoverEnd {
  left: RelayConnection[];
  error?: Error;
}

/*
 * Listens at `path` for the next process; a handover runs once one connects (later ones are
 * refused). One that fails before this process let go of anything leaves it serving on.
 */
export async function listenForSuccessor(path: string, handing: Handing, logger: Logger, done: (end: HandoverEnd) => void): Promise<net.Server> {
  await unlink(path).catch(() => undefined);
  let busy = false;
  const server = net.createServer((socket) => {
    if (busy) return socket.destroy();
    busy = true;
    handOver(new Channel(socket), handing, logger).then(
      (end) => {
        if (end) done(end);
        else busy = false;
      },
      (err: Error) => {
        logger.error({ err: err.message }, 'in-place upgrade failed before anything moved; serving on');
        busy = false;
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  server.unref();
  return server;
}

/* Undefined when it failed before this process let go of its listener (nothing changed here). */
async function handOver(channel: Channel, handing: Handing, logger: Logger): Promise<HandoverEnd | undefined> {
  const { pid } = await channel.next('hello');
  logger.warn({ successor: pid }, 'in-place upgrade: handing everything to the next process');
  channel.send({ kind: 'listener', pid: process.pid, fd: handing.listenerFd() });
  try {
    await channel.next('listening');
  } catch (err) {
    logger.error({ successor: pid, err: (err as Error).message }, 'in-place upgrade failed before anything moved; serving on');
    return undefined;
  }
  handing.stopAccepting();
  const frozen: { connection: RelayConnection; handed: HandedConnection }[] = [];
  let taken = new Set<string>();
  let error: Error | undefined;
  try {
    await Promise.all(
      handing.connections().map(async (connection) => {
        const state = await connection.freeze();
        if (!state) return;
        const record = handing.record(state.id);
        frozen.push({ connection, handed: { ...state, ...(record ? { record } : {}) } });
      }),
    );
    const failover = await handing.stopFailover();
    await handing.stopServices();
    channel.send({ kind: 'state', connections: frozen.map((f) => f.handed), ...(failover ? { failover } : {}) });
    taken = new Set((await channel.next('taken')).ids);
  } catch (err) {
    error = err as Error;
    logger.error({ successor: pid, err: error.message, frozen: frozen.length }, 'in-place upgrade failed after the listener moved: frozen connections are reset');
  }
  for (const { connection } of frozen) {
    if (taken.has(connection.id)) connection.handedOver();
    else connection.reset('handover-failed');
  }
  const left = handing.connections();
  logger.warn({ successor: pid, handedOver: taken.size, stayed: left.length }, 'in-place upgrade: handed over');
  return { left, ...(error ? { error } : {}) };
}
