import { createSocket, type Socket } from 'node:dgram';
import { WedgeError } from '../errors/codes.js';
import { encodeMoveRequest } from '../migrate/move-request.js';
import type { Endpoint } from '../migrate/option.js';

/*
 * Sends the agent's MOVE requests (migrate/move-request.ts): one UDP socket on the client
 * address, a datagram to the server a connection currently talks to, on that server's TCP port
 * number. Sequences grow per connection and survive migrations, because every server that
 * ever serves the connection keeps the last one it accepted. Fire and forget: the answer, if any,
 * is a Migrate SYN from another replica.
 */
export class MoveSender {
  private readonly sequences = new Map<string, number>();

  private constructor(private readonly socket: Socket) {}

  static async open(clientAddress: string): Promise<MoveSender> {
    const socket = createSocket({ type: 'udp4' });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (error) => reject(new WedgeError('WEDGE_ERR_MIGRATE_AGENT', `MOVE socket on ${clientAddress}: ${error.message}`, { cause: error })));
      socket.bind(0, clientAddress, () => resolve());
    });
    // A send error (e.g. no route) must not crash the agent; the next slow spell asks again.
    socket.on('error', () => undefined);
    return new MoveSender(socket);
  }

  /** Sends the next MOVE for the connection; returns its sequence number. */
  send(key: Buffer, token: Buffer, server: Endpoint): number {
    const id = token.toString('hex');
    const sequence = (this.sequences.get(id) ?? 0) + 1;
    this.sequences.set(id, sequence);
    this.socket.send(encodeMoveRequest(key, token, sequence), server.port, server.address);
    return sequence;
  }

  /** The connection ended. */
  forget(token: Buffer): void {
    this.sequences.delete(token.toString('hex'));
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}
