/*
 * A small adapter over node:dgram for one multicast group.
 *
 * The socket is bound to the group address itself (not 0.0.0.0): on Linux a socket bound to
 * INADDR_ANY receives every group any socket on the host joined, so two members of different
 * groups on one host (tests, benches) would hear each other. SO_REUSEADDR lets several members
 * share the port. Membership and the outgoing interface are both pinned to `interfaceAddress`
 * so the datagrams use the cluster network whatever the routing table prefers. TTL 1 keeps
 * them on the segment; loopback is off by default (the member also drops its own datagrams
 * by sender id, for setups that need loopback on).
 *
 * A send-only transport (receive: false) binds an ephemeral port and joins nothing: the member's
 * sender thread uses one while the main thread's transport receives.
 *
 * Sending goes through a bounded queue with a bounded number of sends in flight: soft state is
 * periodic, so under pressure the oldest queued datagram is dropped (and counted) rather than
 * letting memory grow; the next period repairs the loss.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { EventEmitter } from 'node:events';
import { WedgeError } from '../errors/codes.js';

export interface MulticastTransportOptions {
  group: string;
  port: number;
  interfaceAddress: string;
  ttl?: number;
  loopback?: boolean;
  /* Join the group and receive (default), or only send. */
  receive?: boolean;
  maxQueue?: number;
  maxInFlight?: number;
  recvBufferSize?: number;
  sendBufferSize?: number;
}

export interface TransportStats {
  sent: number;
  sentBytes: number;
  received: number;
  receivedBytes: number;
  dropped: number;
  sendErrors: number;
}

export interface Destination {
  address: string;
  port: number;
}

export interface MulticastTransportEvents {
  message: [datagram: Buffer, from: RemoteInfo];
  error: [error: Error];
}

export class MulticastTransport extends EventEmitter<MulticastTransportEvents> {
  readonly options: Required<MulticastTransportOptions>;
  readonly stats: TransportStats = { sent: 0, sentBytes: 0, received: 0, receivedBytes: 0, dropped: 0, sendErrors: 0 };
  private socket: Socket | undefined;
  private readonly queue: { datagram: Buffer; to: Destination }[] = [];
  private inFlight = 0;

  constructor(options: MulticastTransportOptions) {
    super();
    this.options = {
      ttl: 1,
      loopback: false,
      receive: true,
      maxQueue: 8192,
      maxInFlight: 64,
      recvBufferSize: 4 << 20,
      sendBufferSize: 1 << 20,
      ...options,
    };
  }

  get queued(): number {
    return this.queue.length;
  }

  async start(): Promise<void> {
    const o = this.options;
    const socket = createSocket({ type: 'udp4', reuseAddr: true, recvBufferSize: o.recvBufferSize, sendBufferSize: o.sendBufferSize });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(o.receive ? { address: o.group, port: o.port, exclusive: false } : { port: 0 }, () => {
          socket.off('error', reject);
          resolve();
        });
      });
      if (o.receive) socket.addMembership(o.group, o.interfaceAddress);
      socket.setMulticastInterface(o.interfaceAddress);
      socket.setMulticastTTL(o.ttl);
      socket.setMulticastLoopback(o.loopback);
    } catch (err) {
      socket.close();
      throw new WedgeError(
        'WEDGE_ERR_STATE_TRANSPORT',
        `cannot join ${o.group}:${o.port} on ${o.interfaceAddress}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    socket.on('message', (datagram, from) => {
      this.stats.received++;
      this.stats.receivedBytes += datagram.length;
      this.emit('message', datagram, from);
    });
    socket.on('error', (err) => this.emit('error', err));
    this.socket = socket;
  }

  /* Queues a datagram for the group (or another destination); false if the queue overflowed
   * and the oldest queued datagram was dropped to make room. */
  send(datagram: Buffer, to: Destination = { address: this.options.group, port: this.options.port }): boolean {
    if (!this.socket) return false;
    let roomy = true;
    if (this.queue.length >= this.options.maxQueue) {
      this.queue.shift();
      this.stats.dropped++;
      roomy = false;
    }
    this.queue.push({ datagram, to });
    this.pump();
    return roomy;
  }

  private pump(): void {
    const socket = this.socket;
    while (socket && this.inFlight < this.options.maxInFlight && this.queue.length > 0) {
      const { datagram, to } = this.queue.shift()!;
      this.inFlight++;
      socket.send(datagram, to.port, to.address, (err) => {
        this.inFlight--;
        if (err) this.stats.sendErrors++;
        else {
          this.stats.sent++;
          this.stats.sentBytes += datagram.length;
        }
        this.pump();
      });
    }
  }

  async stop(): Promise<void> {
    const socket = this.socket;
    this.socket = undefined;
    this.queue.length = 0;
    if (!socket) return;
    await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
}
