/*
 * Theory of operation: the serving wedge's side of TCP Migrate.
 *
 * On the service address, on the service's port number (UDP), one socket answers the client
 * agents (migrate/transport.ts):
 *   HELLO  the agent asks for a key and token for a connection it just saw open. It is answered
 *          only if the binding names a connection served here, 4-tuple and both ISNs (the
 *          replication anchors are ISN+1). The agreed secrets then join the connection's soft
 *          state, so that any member of the support group can later send a valid Migrate SYN.
 *   INVITE the group must adopt a dead server's connection whose key never reached it (the server
 *          died during the exchange): invite() sends its client an invitation (migrate/option.ts)
 *          every INVITE_REPEAT_MS from the service address, and answers the agent's HELLO for
 *          that connection (checked against the soft-state record: 4-tuple and both ISNs) as the
 *          server would have. The agreed secrets go to the race, which then moves the
 *          connection as usual. The exchange is kept (a replayed HELLO gets the same answer and
 *          cannot swap the key) until the connection ends here, or INVITE_KEEP_MS if it never came.
 *   MOVE   the agent asks for a connection to be moved (its throughput fell): accepted only with
 *          a valid MAC under that connection's key, from the connection's client, with a
 *          sequence above the last accepted one; the connection is then handed off to the group.
 * Everything refused is counted by reason and answered with nothing.
 */
import type { RemoteInfo } from 'node:dgram';
import type { Logger } from 'pino';
import { connectionId } from '../softstate/index.js';
import type { Endpoint } from '../config/endpoints.js';
import type { WedgeMetrics } from './metrics.js';
import type { Replication } from '../replication/replication.js';
import type { WedgeServer } from './server.js';
import { decodeMoveRequest, isMoveRequest, verifyMoveRequest } from '../migrate/move-request.js';
import { ServerNegotiator, type ConnectionBinding, type ServerNegotiated, type ServiceIdentity } from '../migrate/negotiation.js';
import { NegotiationResponder } from '../migrate/transport.js';
import { invitationOption, migrateSynOptions } from '../migrate/option.js';
import { sendTcpSegment, TCP_SYN } from '../native/migrate.js';
import type { ConnectionRecord, MigrateSecrets } from '../softstate/index.js';

const INVITE_REPEAT_MS = 100;
const INVITE_KEEP_MS = 30_000;

interface Invitation {
  binding: ConnectionBinding;
  accepted: (secrets: MigrateSecrets) => void;
}

export class MigrateServing {
  private responder: NegotiationResponder | undefined;
  private readonly negotiator: ServerNegotiator;
  /* Per connection id: its binding (to forget the exchange when it closes) and the last MOVE sequence. */
  private readonly bindings = new Map<string, ConnectionBinding>();
  private readonly lastMove = new Map<string, number>();
  /* Adoptions waiting for their client's agent to run the key exchange with us, by connection id. */
  private readonly invitations = new Map<string, Invitation>();

  constructor(
    private readonly service: Endpoint,
    identity: ServiceIdentity,
    private readonly server: WedgeServer,
    private readonly replication: Replication,
    private readonly metrics: WedgeMetrics,
    private readonly logger: Logger,
  ) {
    this.negotiator = new ServerNegotiator(identity, (binding) => this.isServed(binding));
  }

  async start(): Promise<void> {
    this.responder = await NegotiationResponder.listen({
      address: this.service.host,
      port: this.service.port,
      negotiator: this.negotiator,
      onNegotiated: (negotiated) => this.onNegotiated(negotiated),
      onRejected: (reason) => this.metrics.migrateNegotiations.inc({ result: reason }),
      onOther: (message, from) => this.onMove(message, from),
    });
  }

  async stop(): Promise<void> {
    await this.responder?.close();
  }

  /**
   * Asks the client of RECORD (a connection without a key, being adopted here) to run the key
   * exchange with this server; the secrets, or undefined if its agent did not within TIMEOUT_MS.
   */
  async invite(record: ConnectionRecord, timeoutMs: number): Promise<MigrateSecrets | undefined> {
    const { transport } = record;
    const binding: ConnectionBinding = { client: record.client, server: record.service, clientIsn: (transport.recvSeq - 1) >>> 0, serverIsn: (transport.sendSeq - 1) >>> 0 };
    const options = migrateSynOptions(invitationOption(), transport.mss);
    const send = () =>
      sendTcpSegment({ localAddress: this.service.host, localPort: this.service.port, remoteAddress: record.client.address, remotePort: record.client.port, seq: transport.sendSeq, ack: 0, flags: TCP_SYN, options });
    let repeat: NodeJS.Timeout | undefined;
    let deadline: NodeJS.Timeout | undefined;
    const secrets = await new Promise<MigrateSecrets | undefined>((resolve) => {
      this.invitations.set(record.id, { binding, accepted: resolve });
      deadline = setTimeout(() => resolve(undefined), timeoutMs);
      repeat = setInterval(send, INVITE_REPEAT_MS);
      send();
    }).finally(() => {
      clearInterval(repeat);
      clearTimeout(deadline);
      this.invitations.delete(record.id);
    });
    this.metrics.migrateInvitations.inc({ result: secrets ? 'agreed' : 'unanswered' });
    return secrets;
  }

  private isServed(binding: ConnectionBinding): boolean {
    const id = connectionId(binding.client, binding.server);
    const invited = this.invitations.get(id)?.binding;
    if (invited) return invited.clientIsn === binding.clientIsn && invited.serverIsn === binding.serverIsn;
    const anchors = this.replication.anchors(id);
    return anchors !== undefined && anchors.sendSeq === ((binding.serverIsn + 1) >>> 0) && anchors.recvSeq === ((binding.clientIsn + 1) >>> 0);
  }

  private onNegotiated({ connection: binding, keys }: ServerNegotiated): void {
    const id = connectionId(binding.client, binding.server);
    const invitation = this.invitations.get(id);
    if (invitation) {
      this.logger.info({ conn: id, token: keys.token.toString('hex') }, 'TCP Migrate key agreed with an invited client agent');
      invitation.accepted({ token: keys.token, key: keys.key, original: binding.server });
      setTimeout(() => this.forgetWhenEnded(id, binding), INVITE_KEEP_MS).unref();
      return;
    }
    const connection = this.server.connections.get(id);
    if (!connection) {
      this.negotiator.forget(binding);
      return;
    }
    this.bindings.set(id, binding);
    connection.once('ended', () => {
      this.negotiator.forget(binding);
      this.bindings.delete(id);
      this.lastMove.delete(id);
    });
    this.replication.secure(id, { token: keys.token, key: keys.key, original: binding.server });
    this.metrics.migrateNegotiations.inc({ result: 'agreed' });
    this.logger.info({ conn: id, token: keys.token.toString('hex') }, 'TCP Migrate key agreed with the client agent');
  }

  private forgetWhenEnded(id: string, binding: ConnectionBinding): void {
    const connection = this.server.connections.get(id);
    if (!connection) return this.negotiator.forget(binding);
    connection.once('ended', () => this.negotiator.forget(binding));
  }

  private onMove(message: Buffer, from: RemoteInfo): void {
    const refuse = (result: string) => {
      this.metrics.moveRequests.inc({ result });
      this.logger.debug({ from: `${from.address}:${from.port}`, result }, 'MOVE request refused');
    };
    if (!isMoveRequest(message)) return refuse('malformed');
    const decoded = decodeMoveRequest(message);
    if (!decoded.ok) return refuse('malformed');
    const served = this.replication.byToken(decoded.value.token);
    if (!served) return refuse('unknown-token');
    if (!verifyMoveRequest(served.migrate.key, decoded.value)) return refuse('bad-mac');
    const client = this.server.connections.get(served.id)?.client.remoteAddress;
    if (client !== from.address) return refuse('wrong-source');
    if (decoded.value.sequence <= (this.lastMove.get(served.id) ?? -1)) return refuse('replayed');
    this.lastMove.set(served.id, decoded.value.sequence);
    if (!this.replication.handOff(served.id)) return refuse('not-movable');
    this.metrics.moveRequests.inc({ result: 'accepted' });
    this.metrics.handoffs.inc({ trigger: 'client' });
    this.logger.warn({ conn: served.id, sequence: decoded.value.sequence }, 'client agent asked to move the connection: handing it to the group');
  }
}
