/*
 * The TCP Migrate mover (servers anywhere; the client host runs the agent).
 *
 *   detect   a peer is reported dead (every live member of its group hears it), or a live owner
 *            hands a connection off (load shedding, or its client asked to move): its record
 *            arrives with `handoff`;
 *   choose   a race: every live member is a candidate. Per connection, each waits its rendezvous
 *            rank among the candidates (takeover/choose.ts) times a step, plus a delay that grows
 *            with the connections it already serves, plus a few ms of jitter. So a dead server's
 *            connections spread evenly over the group, each candidate first for its share, a
 *            loaded candidate lets the next one win (implosion avoidance), and a candidate that
 *            is slow or gone is replaced a step later. A connection someone else has taken
 *            meanwhile (a higher migration number heard) is dropped ('stood-down');
 *   probe    led by a Migrate SYN from this server's own address (native probeAndRestore's first
 *            segment): token, request number = the next migration number, and a MAC under the
 *            connection key. The agent accepts the first valid request for a number and answers
 *            SYN-ACK; every other candidate gets a RST ('lost-race', not a failure). The probe then
 *            goes through the agent's rewrite and the endpoint is restored on this server's own
 *            address; the record keeps its id (the client's view) and names this server as its
 *            service.
 * A connection without secrets (its server died before the client's agent finished the key
 * exchange, or its client has no agent) gets one more chance: in rank order, one candidate at a
 * time (INVITE_MS each) invites the agent to run the exchange with it (daemon/migrate-serving.ts)
 * and, if the agent does, races for it as above. Otherwise it cannot move: 'not-movable'.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { TakeoverResult } from '../../errors/reasons.js';
import { encodeMigrateOption, migrateSynOptions } from '../../migrate/option.js';
import type { Replication } from '../../replication/replication.js';
import type { ConnectionRecord, Endpoint, MigrateSecrets, SoftStateMember } from '../../softstate/index.js';
import { rankMembers } from '../choose.js';
import { detect, type Trigger } from '../detect.js';
import type { Mover, TakeoverPipeline } from '../pipeline.js';

export interface RaceConfig {
  self: string;
  /* This server's own service endpoint: where migrated connections live. */
  service: Endpoint;
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
/* How long a candidate waits for an invited agent's key exchange; the next candidate then tries. */
const INVITE_MS = 400;
/* The agent registers the agreed key after its ACCEPT arrives; a Migrate SYN overtaking it would
 * be refused as an unknown token, so the first one waits this long. */
const AFTER_INVITE_MS = 20;

/* Runs a key exchange for a keyless connection through its client's agent (MigrateServing). */
export type Inviter = (record: ConnectionRecord, timeoutMs: number) => Promise<MigrateSecrets | undefined>;

export class MigrateRace {
  /* `${id}#${migration}` of the versions already raced for. */
  private readonly raced = new Set<string>();
  private readonly mover: Mover;

  constructor(
    private readonly config: RaceConfig,
    private readonly member: SoftStateMember,
    private readonly pipeline: TakeoverPipeline,
    private readonly replication: Replication,
    private readonly logger: Logger,
    private readonly invite?: Inviter,
  ) {
    this.mover = {
      local: () => config.service,
      claim: async () => undefined,
      request: ({ record, stream, state }) => {
        const migrate = record.migrate!;
        const seq = (state.sendSeq + stream.sent - 1) >>> 0;
        const ack = (state.recvSeq + stream.received) >>> 0;
        const fields = { client: record.client, oldServer: record.service, newServer: this.mover.local(record), seq, ack };
        const option = encodeMigrateOption(migrate.key, fields, migrate.token, record.migration + 1);
        return { ...state, ack, migrateSyn: { seq, ack, options: migrateSynOptions(option, state.mss) } };
      },
    };
  }

  start(): void {
    detect(this.member, this.config.self, this.pipeline.served, (trigger) => this.onTrigger(trigger));
  }

  private onTrigger(trigger: Trigger): void {
    switch (trigger.kind) {
      case 'death':
        this.logger.warn({ peer: trigger.peer, reason: trigger.reason, connections: trigger.records.length }, 'peer dead: racing for its connections');
        void this.race(trigger.records, 'death');
        return;
      case 'handoff':
        void this.race([trigger.record], 'handoff');
        return;
      case 'self':
        // Declared dead by mistake: peers take our connections; no address to give back here.
        this.replication.expectMoves();
        return;
    }
  }

  private async race(records: ConnectionRecord[], trigger: Trigger['kind']): Promise<void> {
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
    const candidates = this.candidates(fresh[0]!.owner);
    const invited = fresh.filter((r) => !r.migrate).map((record) => this.inviteThenTake(record, candidates, started));
    const pending = movable.map((record) => ({
      record,
      delayMs: rankMembers(record.id, candidates).indexOf(this.config.self) * this.config.rankStepMs + Math.random() * this.config.jitterMs,
    }));
    const waves: Promise<TakeoverResult[]>[] = [];
    while (pending.length > 0) {
      const elapsed = performance.now() - started;
      const loadDelay = Math.min(this.config.maxLoadDelayMs, this.pipeline.served.load * this.config.loadDelayMsPerConnection);
      const due: ConnectionRecord[] = [];
      for (let i = pending.length - 1; i >= 0; i--) {
        const { record, delayMs } = pending[i]!;
        if (this.takenElsewhere(record)) {
          pending.splice(i, 1);
          this.pipeline.count('stood-down');
        } else if (delayMs + loadDelay <= elapsed) {
          pending.splice(i, 1);
          due.push(record);
        }
      }
      if (due.length > 0) waves.push(this.wave(due, started));
      if (pending.length > 0) await sleep(WAVE_MS);
    }
    const results = [...(await Promise.all(waves)).flat(), ...(await Promise.all(invited))];
    const won = results.filter((r) => r === 'resumed').length;
    this.logger.info({ trigger, connections: fresh.length, candidates: movable.length, won, ms: +(performance.now() - started).toFixed(1) }, 'Migrate race over');
  }

  /* In rank order, one candidate after another invites the keyless connection's agent. */
  private async inviteThenTake(record: ConnectionRecord, candidates: string[], raceStarted: number): Promise<TakeoverResult> {
    await sleep(rankMembers(record.id, candidates).indexOf(this.config.self) * INVITE_MS);
    if (this.takenElsewhere(record)) return this.pipeline.count('stood-down');
    const migrate = this.invite && (await this.invite(record, INVITE_MS));
    if (!migrate) return this.pipeline.count('not-movable');
    await sleep(AFTER_INVITE_MS);
    const [result] = await this.wave([{ ...record, migrate }], raceStarted);
    return result!;
  }

  private async wave(records: ConnectionRecord[], raceStarted: number): Promise<TakeoverResult[]> {
    const taken = await this.pipeline.take(this.mover, records);
    for (const { record, result } of taken) {
      if (result === 'resumed') this.logger.info({ conn: record.id, sinceTriggerMs: +(performance.now() - raceStarted).toFixed(1) }, 'won the Migrate race');
    }
    return taken.map((t) => t.result);
  }

  /* This server and every live peer but the connections' owner (dead, or handing them off). */
  private candidates(owner: string): string[] {
    return [this.config.self, ...this.member.peers().filter((p) => p.alive && p.address !== owner).map((p) => p.address)];
  }

  /* A newer version of the connection exists (another candidate won), or it is served here. */
  private takenElsewhere(record: ConnectionRecord): boolean {
    const heard = this.member.heard(record.id);
    return this.pipeline.served.serves(record.id) || (heard !== undefined && heard.migration > record.migration);
  }
}
