/*
 * The wedge's connection to the local origin, for one client connection: opened when an exchange
 * needs it (again after the origin closed), kept across keep-alive exchanges, dropped when the
 * origin breaks the protocol or the client connection ends. Only the current socket's events
 * reach the relay; each one runs through the relay's guard.
 */
import net, { type Socket } from 'node:net';

export interface OriginEvents {
  data(socket: Socket, chunk: Buffer): void;
  end(): void;
  error(err: Error): void;
}

export class OriginLink {
  private socket: Socket | undefined;

  constructor(
    private readonly endpoint: { host: string; port: number },
    private readonly events: OriginEvents,
    private readonly guard: (handle: () => void) => void,
  ) {}

  get current(): Socket | undefined {
    return this.socket;
  }

  /* `endpoint`: another origin than the local one, for one exchange (a peer's, after the local
   * origin dropped a response); the connection drops it after. */
  open(endpoint = this.endpoint): Socket {
    if (this.socket && !this.socket.destroyed) return this.socket;
    const socket = net.connect(endpoint);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.guard(() => this.socket === socket && this.events.data(socket, chunk)));
    socket.on('end', () =>
      this.guard(() => {
        if (this.socket !== socket) return;
        this.socket = undefined;
        socket.destroy();
        this.events.end();
      }),
    );
    socket.on('error', (err) =>
      this.guard(() => {
        if (this.socket !== socket) return;
        this.socket = undefined;
        this.events.error(err);
      }),
    );
    this.socket = socket;
    return socket;
  }

  /* Writes to the origin; false when its socket is full (the caller stops reading the client
   * until `drained` runs). */
  write(data: Buffer, drained: () => void): boolean {
    const socket = this.socket;
    if (!socket || socket.write(data)) return true;
    socket.once('drain', () => this.guard(drained));
    return false;
  }

  drop(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }
}
