import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { WedgeError } from '../errors/codes.js';
import {
  AgentExchange,
  isHello,
  type ConnectionBinding,
  type ConnectionKeys,
  type NegotiationRejection,
  type ServerNegotiated,
  type ServerNegotiator,
  type TrustedServiceKeys,
} from './negotiation.js';

/*
 * Theory of operation: the Migrate key exchange (migrate/negotiation.ts) over UDP.
 *
 * The serving wedge runs one NegotiationResponder per service address, on the service's port
 * number (UDP). A HELLO datagram, if valid, is answered with its ACCEPT and reported through
 * onNegotiated, so the wedge can put key and token into the connection's soft state. Invalid
 * ones are counted by reason and answered with nothing (no amplification, no oracle). Any other
 * datagram (the agent's MOVE requests share the port) goes to onOther.
 *
 * The agent calls negotiateConnectionKey right after seeing a connection's handshake: it sends
 * the HELLO from the client address, resends it every retryMs (UDP may drop it) and resolves with
 * the keys of the first valid ACCEPT from the server's address and port, or rejects with
 * WEDGE_ERR_MIGRATE_NEGOTIATION at the deadline, or at once when the server's host refuses the
 * port (isRefusal: nothing there to negotiate with, as opposed to a server that went silent).
 * Datagrams from anywhere else are ignored.
 */

export interface ResponderOptions {
  address: string;
  port: number;
  negotiator: ServerNegotiator;
  onNegotiated?: (negotiated: ServerNegotiated) => void;
  onRejected?: (reason: NegotiationRejection) => void;
  onOther?: (message: Buffer, from: RemoteInfo) => void;
}

export class NegotiationResponder {
  readonly rejected = new Map<NegotiationRejection, number>();
  private constructor(private readonly socket: Socket) {}

  static async listen(options: ResponderOptions): Promise<NegotiationResponder> {
    const socket = createSocket({ type: 'udp4' });
    const responder = new NegotiationResponder(socket);
    socket.on('message', (message: Buffer, from: RemoteInfo) => responder.onHello(options, message, from));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (error) => reject(new WedgeError('WEDGE_ERR_MIGRATE_NEGOTIATION', `bind ${options.address}:${options.port}: ${error.message}`, { cause: error })));
      socket.bind(options.port, options.address, () => resolve());
    });
    return responder;
  }

  get port(): number {
    return this.socket.address().port;
  }

  private onHello(options: ResponderOptions, message: Buffer, from: RemoteInfo): void {
    if (options.onOther && !isHello(message)) return options.onOther(message, from);
    const outcome = options.negotiator.handleHello(message, from.address);
    if (!outcome.ok) {
      this.rejected.set(outcome.reason, (this.rejected.get(outcome.reason) ?? 0) + 1);
      options.onRejected?.(outcome.reason);
      return;
    }
    this.socket.send(outcome.value.reply, from.port, from.address);
    if (outcome.value.fresh) options.onNegotiated?.(outcome.value);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}

export interface NegotiateOptions {
  connection: ConnectionBinding;
  trusted: TrustedServiceKeys;
  /** UDP port of the responder (default: the service's TCP port number). */
  port?: number;
  /** Where the responder is, if not at the connection's server: a replica that invited the agent. */
  via?: string;
  /** Give up after this long (default 2000 ms). */
  timeoutMs?: number;
  /** Resend the HELLO this often (default 200 ms). */
  retryMs?: number;
}

/** The negotiation failed because the server's host has no responder on the port (ICMP port unreachable). */
export function isRefusal(error: unknown): boolean {
  return error instanceof WedgeError && (error.cause as NodeJS.ErrnoException | undefined)?.code === 'ECONNREFUSED';
}

/** Runs the agent's side of one exchange; resolves with the connection's key and token. */
export async function negotiateConnectionKey(options: NegotiateOptions): Promise<ConnectionKeys> {
  const { connection } = options;
  const exchange = new AgentExchange(connection);
  const port = options.port ?? connection.server.port;
  const responder = options.via ?? connection.server.address;
  const socket = createSocket({ type: 'udp4' });
  try {
    // Connected, so that the kernel drops datagrams from anyone else and reports a port
    // unreachable (a host without a responder) as ECONNREFUSED.
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, connection.client.address, () => socket.connect(port, responder, () => resolve()));
    });
    return await new Promise<ConnectionKeys>((resolve, reject) => {
      const reasons: NegotiationRejection[] = [];
      const send = () => socket.send(exchange.hello);
      const retry = setInterval(send, options.retryMs ?? 200);
      const fail = (error: WedgeError) => {
        clearInterval(retry);
        clearTimeout(deadline);
        reject(error);
      };
      const deadline = setTimeout(() => {
        const seen = reasons.length ? ` (rejected answers: ${reasons.join(', ')})` : '';
        fail(new WedgeError('WEDGE_ERR_MIGRATE_NEGOTIATION', `no valid answer from ${responder}:${port}${seen}`));
      }, options.timeoutMs ?? 2000);
      socket.removeAllListeners('error');
      socket.on('error', (error: NodeJS.ErrnoException) => {
        if (error.code !== 'ECONNREFUSED') return;
        fail(new WedgeError('WEDGE_ERR_MIGRATE_NEGOTIATION', `${responder}:${port} refused: no key exchange there (not a Wedge with TCP Migrate)`, { cause: error }));
      });
      socket.on('message', (message: Buffer) => {
        const outcome = exchange.receive(message, options.trusted);
        if (!outcome.ok) {
          reasons.push(outcome.reason);
          return;
        }
        clearInterval(retry);
        clearTimeout(deadline);
        resolve(outcome.value);
      });
      send();
    });
  } catch (error) {
    if (error instanceof WedgeError) throw error;
    throw new WedgeError('WEDGE_ERR_MIGRATE_NEGOTIATION', (error as Error).message, { cause: error });
  } finally {
    socket.close();
  }
}
