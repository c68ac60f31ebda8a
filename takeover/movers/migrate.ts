/*
 * Theory of operation: TCP Migrate takeover (servers anywhere; the client host runs the agent).
 *
 *   trigger  a peer is reported dead (every live member of its group hears it), or a live owner
 *            hands a connection off (load shedding, or its client asked to move): its record
 *            arrives with `handoff`;
 *   race     every live member is a candidate. Per connection, each waits its rendezvous rank
 *            among the candidates (takeover/choose.ts) times a step, plus a delay that grows with
 *            the connections it already serves, plus a few ms of jitter. So a dead server's
 *            connections spread evenly over the group, each candidate first for its share, a
 *            loaded candidate lets the next one win (implosion avoidance), and a candidate that
 *            is slow or gone is replaced a step later. A connection someone else has taken
 *            meanwhile (a higher migration number heard) is dropped;
 *   migrate  the candidate sends a Migrate SYN from its own address (native probeAndRestore's first
 *            segment): token, request number = the next migration number, and a MAC under the
 *            connection key. The agent accepts the first valid request for a number and answers
 *            SYN-ACK; every other candidate gets a RST ('lost-race', not a failure), unless it
 *            heard of the winner before its turn came ('stood-down');
 *   probe    through the agent's rewrite, in the same native call: the client's next wanted
 *            byte and its own next byte; the same worker restores the endpoint at once, on this
 *            server's own address;
 *   resume   as after an address takeover (takeover/resume.ts);
 *            the record keeps its id (the client's view) and names this server as its service.
 * A connection whose client has no agent (no secrets) cannot move this way: it is counted
 * 'not-movable'.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { probeAndRestore, type RestoreRequest } from '../../native/index.js';
import type { ConnectionRecord, Endpoint, SoftStateMember } from '../../softstate/index.js';
import { rankMembers } from '../choose.js';
import type { Replication } from '../../replication/replication.js';
import type { Adoptee, Resumer } from '../resume.js';
import { RESTORED_MARK, type RstGuard } from '../guard.js';
import type { WedgeServer } from '../../daemon/server.js';
import { encodeMigrateOption, migrateSynOptions } from '../../migrate/option.js';

export interface RaceConfig {
  self: string;
  /* This server's own service endpoint: where migrated connections live. */
  service: Endpoint;
  /* Capture probe answers only here ('' = every interface). */
  iface: string;
  probeTimeoutMs: number;
  probeRetries: number;
  /* Delay per rendezvous rank: the first-ranked candidate goes at once, the next this much later. */
  rankStepMs: number;
  /* Random extra delay: breaks ties between candidates that disagree on who is alive. */
  jitterMs: number;
  /* Extra delay per connection this server already serves: the loaded back off. */
  loadDelayMsPerConnection: number;
  maxLoadDelayMs: number;
}

/* How often due connections are sent their Migrate SYNs, in one batch each time. */
const WAVE_MS = 5;

export class MigrateRace {
  /* `${id}#${migration}` of the versions already raced for. */
  private readonly raced = new Set<string>();

  constructor(
    private readonly config: RaceConfig,
    private readonly member: SoftStateMember,
    private readonly server: WedgeServer,
    private readonly resumer: Resumer,
    private readonly replication: Replication,
    private readonly guard: RstGuard,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.member.on('peer-dead', (peer, reason) => {
      const records = this.member.recordsOwnedBy(peer).filter((r) => !this.server.connections.has(r.id));
      this.logger.warn({ peer, reason, connections: records.length }, 'peer dead: racing for its connections');
      void this.race(records, 'death');
    });
    // Declared dead by mistake: peers take our connections; no address to give back here.
    this.member.on('declared-dead-self', () => this.replication.expectMoves());
    this.member.on('record', (record) => {
      if (record.handoff && record.owner !== this.config.self && !this.server.connections.has(record.id)) void this.race([record], 'handoff');
    });
  }

  private async race(records: ConnectionRecord[], trigger: string): Promise<void> {
    const started = performance.now();
    const fresh = records.filter((r) => {
      const key = `${r.id}#${r.migration}`;
      if (this.raced.has(key)) return false;
      this.raced.add(key);
      setTimeout(() => this.raced.delete(key), 60_000).unref();
      return true;
    });
    if (fresh.length === 0) return;
    const movable = fresh.filter((r) => r.migrate);
    for (const record of fresh) if (!record.migrate) this.resumer.count('not-movable', 0);
    const candidates = this.candidates(fresh[0]!.owner);
    const pending = this.resumer.adoptees(movable, this.config.service).map((adoptee) => ({
      adoptee,
      delayMs: rankMembers(adoptee.record.id, candidates).indexOf(this.config.self) * this.config.rankStepMs + Math.random() * this.config.jitterMs,
    }));
    const waves: Promise<string[]>[] = [];
    while (pending.length > 0) {
      const elapsed = performance.now() - started;
      const loadDelay = Math.min(this.config.maxLoadDelayMs, this.server.connections.size * this.config.loadDelayMsPerConnection);
      const due: Adoptee[] = [];
      for (let i = pending.length - 1; i >= 0; i--) {
        const { adoptee, delayMs } = pending[i]!;
        if (this.takenElsewhere(adoptee.record)) {
          pending.splice(i, 1);
          this.resumer.count('stood-down', 0);
        } else if (delayMs + loadDelay <= elapsed) {
          pending.splice(i, 1);
          due.push(adoptee);
        }
      }
      if (due.length > 0) waves.push(this.migrate(due, started));
      if (pending.length > 0) await sleep(WAVE_MS);
    }
    const results = (await Promise.all(waves)).flat();
    const won = results.filter((r) => r === 'resumed').length;
    this.logger.info({ trigger, connections: fresh.length, candidates: movable.length, won, ms: +(performance.now() - started).toFixed(1) }, 'Migrate race over');
  }

  /* This server and every live peer but the connections' owner (dead, or handing them off). */
  private candidates(owner: string): string[] {
    return [this.config.self, ...this.member.peers().filter((p) => p.alive && p.address !== owner).map((p) => p.address)];
  }

  /* A newer version of the connection exists (another candidate won), or it is served here. */
  private takenElsewhere(record: ConnectionRecord): boolean {
    const heard = this.member.heard(record.id);
    return this.server.connections.has(record.id) || (heard !== undefined && heard.migration > record.migration);
  }

  /* Migrate SYN → probe → restore → resume, for one wave of connections. */
  private async migrate(adoptees: Adoptee[], raceStarted: number): Promise<string[]> {
    await this.guard.guard(adoptees.map((a) => a.record.client));
    const sent = performance.now();
    const answers = await probeAndRestore(adoptees.map((a) => this.request(a)), {
      ifname: this.config.iface,
      timeoutMs: this.config.probeTimeoutMs,
      retries: this.config.probeRetries,
      mark: RESTORED_MARK,
    });
    const probeMs = performance.now() - sent;
    const results: string[] = [];
    for (const [i, adoptee] of adoptees.entries()) {
      let result: string;
      try {
        result = this.resumer.resume(adoptee, answers[i]!, probeMs);
      } catch (err) {
        this.logger.warn({ conn: adoptee.record.id, err: (err as Error).message }, 'Migrate takeover failed');
        result = 'failed';
      }
      if (result === 'resumed') this.logger.info({ conn: adoptee.record.id, sinceTriggerMs: +(performance.now() - raceStarted).toFixed(1) }, 'won the Migrate race');
      results.push(this.resumer.count(result, probeMs));
    }
    return results;
  }

  /* The probe and restore of one connection, led by its Migrate SYN. */
  private request({ record, stream, state }: Adoptee): RestoreRequest {
    const migrate = record.migrate!;
    const seq = (state.sendSeq + stream.sent - 1) >>> 0;
    const ack = (state.recvSeq + stream.received) >>> 0;
    const fields = { client: record.client, oldServer: record.service, newServer: this.config.service, seq, ack };
    const option = encodeMigrateOption(migrate.key, fields, migrate.token, record.migration + 1);
    return { ...state, ack, migrateSyn: { seq, ack, options: migrateSynOptions(option, state.mss) } };
  }
}
