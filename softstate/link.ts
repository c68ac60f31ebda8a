/*
 * The member's wire end: one receiving socket on the main thread, one sending thread. In:
 * frames to seal and send (to our group, or to another one), the main thread's check-ins, key
 * rotations. Out: every datagram received on our group, and the counts of both directions.
 *
 * Sending. Every outgoing datagram is sealed and sent by a worker thread (sender.ts), which also
 * sends the heartbeats: a main thread busy for a few hundred milliseconds does not go silent.
 * The main thread checks in every heartbeat interval; after heartbeatLeaseMs without a check-in
 * the heartbeats stop, so a wedged daemon is still found dead (after lease + dead-after).
 * Heartbeats and death notices are never paced: they are small and time-critical.
 *
 * Receiving. The main thread's transport (transport.ts) joins our group only, on the cluster
 * interface; what it hears goes to the member unopened.
 */
import type { KeyRing } from './crypto.js';
import type { MemberSettings } from './options.js';
import type { Heartbeat, ServiceClaim } from './records.js';
import { SenderThread, type SenderSetup } from './sender.js';
import { MulticastTransport, type Destination, type TransportStats } from './transport.js';

export class Link {
  private readonly transport: MulticastTransport;
  private readonly sender: SenderThread;

  private constructor(transport: MulticastTransport, sender: SenderThread) {
    this.transport = transport;
    this.sender = sender;
  }

  /* Both ends open, or neither (WEDGE_ERR_STATE_TRANSPORT). The sender thread seals with our
   * epoch (so both threads are one sender) and starts heartbeating with `beat`. */
  static async open(
    settings: MemberSettings,
    start: { ring: KeyRing; epoch: bigint; lastSeq: number; beat: SenderSetup['beat'] },
    onDatagram: (datagram: Buffer) => void,
    onError: (err: Error) => void,
  ): Promise<Link> {
    const { group, interfaceAddress, loopback } = settings;
    const setup: SenderSetup = {
      ring: start.ring,
      self: settings.self,
      epoch: start.epoch.toString(),
      lastSeq: start.lastSeq,
      mtu: settings.mtu,
      transport: { group: group.address, port: group.port, interfaceAddress, loopback },
      heartbeatIntervalMs: settings.heartbeatIntervalMs,
      leaseMs: settings.heartbeatLeaseMs,
      beat: start.beat,
    };
    const transport = new MulticastTransport(setup.transport);
    // Listening before the first heartbeat leaves: peers answer it at once (with every record
    // they hold, when we are new to them), and what arrives before a listener is lost.
    transport.on('message', (datagram) => onDatagram(datagram));
    transport.on('error', onError);
    await transport.start();
    let sender: SenderThread;
    try {
      sender = await SenderThread.start(setup, onError);
    } catch (err) {
      await transport.stop();
      throw err;
    }
    return new Link(transport, sender);
  }

  /* Frame payloads to seal and send in this order; default destination: our group. */
  send(frames: readonly Buffer[], to?: Destination): void {
    this.sender.send(frames, to);
  }

  /* The main thread is alive: heartbeats go on with this content; `now` sends one at once. */
  beat(load: Heartbeat['load'], services: ServiceClaim[], now: boolean): void {
    this.sender.beat(load, services, now);
  }

  /* No heartbeat after this call (the member leaves its group). */
  silence(): void {
    this.sender.silence();
  }

  setKeyRing(ring: KeyRing): void {
    this.sender.setKeyRing(ring);
  }

  get sent(): TransportStats {
    return this.sender.stats;
  }

  /* The sequence number sealed last (exact after close()). */
  get lastSeq(): number {
    return this.sender.lastSeq;
  }

  get heartbeatsSent(): number {
    return this.sender.heartbeatsSent;
  }

  get received(): TransportStats {
    return this.transport.stats;
  }

  async close(): Promise<void> {
    await Promise.all([this.transport.stop(), this.sender.stop()]);
  }
}
