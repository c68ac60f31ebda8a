import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RelayObserver } from '../relay/connection.js';
import type { RecoveryResult, RecoverySource } from '../relay/origin-recovery.js';
import type { Deadline } from '../relay/deadlines.js';
import type { SoftStateMetrics } from '../softstate/index.js';
import type { WedgeErrorCode } from '../errors/codes.js';
import { takeoverOutcome, type AbortReason, type TakeoverAbort, type TakeoverResult } from '../errors/reasons.js';
import type { TakeoverObserver } from '../takeover/pipeline.js';
import { PACKAGE_VERSION } from '../config/package.js';

/* Prometheus metrics of one wedge daemon. Names follow `wedge_<thing>_<unit>`. */
export class WedgeMetrics implements RelayObserver, TakeoverObserver {
  readonly registry = new Registry();
  readonly connectionsActive = new Gauge({ name: 'wedge_connections_active', help: 'Client connections open now', registers: [this.registry] });
  readonly connectionsTotal = new Counter({ name: 'wedge_connections_total', help: 'Client connections accepted', registers: [this.registry] });
  readonly requestsTotal = new Counter({ name: 'wedge_requests_total', help: 'HTTP requests parsed, by method', labelNames: ['method'], registers: [this.registry] });
  readonly rejectsTotal = new Counter({ name: 'wedge_rejects_total', help: 'Requests refused with an error status, by error code', labelNames: ['code'], registers: [this.registry] });
  readonly bytesTotal = new Counter({ name: 'wedge_bytes_total', help: 'Bytes relayed, by direction', labelNames: ['direction'], registers: [this.registry] });
  readonly splicedBytesTotal = new Counter({ name: 'wedge_spliced_bytes_total', help: 'Response body bytes moved in the kernel by splice(2)', registers: [this.registry] });
  readonly abortsTotal = new Counter({ name: 'wedge_aborts_total', help: 'Connections reset because they could not be completed exactly, by reason', labelNames: ['reason'], registers: [this.registry] });
  readonly timeoutsTotal = new Counter({ name: 'wedge_timeouts_total', help: 'Client connection time limits that expired, by deadline: header (408), idle (closed quietly), body (408 or client-timeout abort), response (504 or response-timeout abort)', labelNames: ['deadline'], registers: [this.registry] });

  readonly takeovers = new Counter({ name: 'wedge_takeovers_total', help: 'Takeover attempts of dead (or handing-off) peers\' connections, by result: resumed, finished, aborted, lost-race and stood-down (TCP Migrate: another candidate took it)', labelNames: ['result'], registers: [this.registry] });
  readonly detectionSeconds = new Histogram({ name: 'wedge_failure_detection_seconds', help: 'Peers found dead here by silence: from the last heartbeat heard from the peer to its death', buckets: [0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.75, 1, 2, 5], registers: [this.registry] });
  readonly clientStallSeconds = new Histogram({ name: 'wedge_client_stall_seconds', help: 'Connections resumed here after a takeover: from the last heartbeat heard from the old owner to the resume (an upper estimate of the silence the client saw)', buckets: [0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2, 5], registers: [this.registry] });
  readonly takeoverSeconds = new Histogram({ name: 'wedge_takeover_seconds', help: 'Probe, restore and resume of one connection', buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2], registers: [this.registry] });
  readonly migrateNegotiations = new Counter({ name: 'wedge_migrate_negotiations_total', help: 'TCP Migrate key exchanges with client agents, by result', labelNames: ['result'], registers: [this.registry] });
  readonly migrateInvitations = new Counter({ name: 'wedge_migrate_invitations_total', help: 'Client agents invited to run the key exchange of a connection adopted without a key (its server died during the exchange), by result (agreed, unanswered)', labelNames: ['result'], registers: [this.registry] });
  readonly moveRequests = new Counter({ name: 'wedge_move_requests_total', help: 'Client agents\' requests to move a connection, by result', labelNames: ['result'], registers: [this.registry] });
  readonly handoffs = new Counter({ name: 'wedge_handoffs_total', help: 'Connections handed to the support group (TCP Migrate), by trigger', labelNames: ['trigger'], registers: [this.registry] });
  readonly snapshots = new Counter({ name: 'wedge_snapshots_total', help: 'Snapshot PUTs to the state listener (state contract), by result: stored, unknown (404), backwards (409), too-large (413), malformed (400), refused-peer (403)', labelNames: ['result'], registers: [this.registry] });
  readonly snapshotResumes = new Counter({ name: 'wedge_snapshot_resumes_total', help: 'Responses of taken-over connections restarted from the origin\'s snapshot (state contract; refusals are wedge_aborts_total{reason="resume-refused"})', registers: [this.registry] });
  readonly originResumes = new Counter({ name: 'wedge_origin_resumes_total', help: 'Responses the origin dropped mid-body, by where the rest came from (source: local, peer) and result: resumed, origin-lost, representation-changed', labelNames: ['source', 'result'], registers: [this.registry] });
  readonly drains = new Counter({ name: 'wedge_drains_total', help: 'Planned drains begun (wedge drain, POST /drain, SIGTERM)', registers: [this.registry] });
  readonly drainedConnections = new Counter({ name: 'wedge_drained_connections_total', help: 'Connections live during a drain, by how they left: moved (a peer took them over), finished (ended here), reset (not moved within --drain-timeout, or failed)', labelNames: ['result'], registers: [this.registry] });
  readonly inherited = new Counter({ name: 'wedge_upgrade_connections_total', help: 'Connections taken over in place from the previous wedge process (an in-place upgrade, --handover), by result: resumed, finished (nothing left to send), reset (not resumable exactly), untaken (its socket could not be taken; the old process reset it)', labelNames: ['result'], registers: [this.registry] });
  readonly relinquished = new Counter({ name: 'wedge_relinquished_total', help: 'Connections given up silently because a peer took them over', registers: [this.registry] });

  /* Wall-clock ms of the last heartbeat heard from a peer (the soft-state member's, when failover is on). */
  lastHeard: (peer: string) => number | undefined = () => undefined;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'wedge_' });
    new Gauge({ name: 'wedge_build_info', help: 'Always 1; the labels say which wedge runs (version) on which Node.js (node)', labelNames: ['version', 'node'], registers: [this.registry] }).set({ version: PACKAGE_VERSION, node: process.versions.node }, 1);
  }

  /* A peer found dead by silence (the member's 'peer-dead' with reason 'silent'). */
  peerSilent(peer: string): void {
    const heard = this.lastHeard(peer);
    if (heard !== undefined) this.detectionSeconds.observe((Date.now() - heard) / 1000);
  }

  resumed(owner: string): void {
    const heard = this.lastHeard(owner);
    if (heard !== undefined) this.clientStallSeconds.observe((Date.now() - heard) / 1000);
  }

  request(method: string): void {
    this.requestsTotal.inc({ method: KNOWN_METHODS.has(method) ? method : 'other' });
  }
  reject(code: WedgeErrorCode): void {
    this.rejectsTotal.inc({ code });
  }
  bytes(direction: 'client-to-origin' | 'origin-to-client', count: number): void {
    this.bytesTotal.inc({ direction }, count);
  }
  abort(reason: AbortReason | TakeoverAbort): void {
    this.abortsTotal.inc({ reason });
  }
  spliced(count: number): void {
    this.splicedBytesTotal.inc(count);
  }
  snapshot(result: string): void {
    this.snapshots.inc({ result });
  }
  snapshotResumed(): void {
    this.snapshotResumes.inc();
  }
  timeout(deadline: Deadline): void {
    this.timeoutsTotal.inc({ deadline });
  }
  originResume(source: RecoverySource, result: RecoveryResult): void {
    this.originResumes.inc({ source, result });
  }
  /* `seconds`: probe, restore and resume of the connection, when this server did them. */
  takeover(result: TakeoverResult, seconds: number | undefined): void {
    const aborted = takeoverOutcome(result) === 'aborted';
    this.takeovers.inc({ result: aborted ? 'aborted' : result });
    if (seconds !== undefined) this.takeoverSeconds.observe(seconds);
    if (aborted) this.abort(`takeover: ${result}`);
  }
}

/* Methods are labels only when well known, so a client cannot blow up the label set. */
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE']);

type CountersSource = () => Array<[labels: Record<string, string>, value: number]>;

/* A counter whose values are read from elsewhere at scrape time. */
function mirroredCounter(registry: Registry, name: string, help: string, labelNames: string[], read: CountersSource): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of read()) this.inc(labels, value);
    },
  });
}

function mirroredGauge(registry: Registry, name: string, help: string, labelNames: string[], read: CountersSource): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      for (const [labels, value] of read()) this.set(labels, value);
    },
  });
}

/* The soft-state member's own counters, exported with the daemon's metrics. */
export function exportSoftStateMetrics(registry: Registry, metrics: () => SoftStateMetrics): void {
  mirroredCounter(registry, 'wedge_softstate_datagrams_total', 'Soft-state datagrams, by direction (received counts every datagram, accepted only authentic fresh ones)', ['direction'], () => {
    const m = metrics();
    return [[{ direction: 'sent' }, m.datagramsSent], [{ direction: 'received' }, m.datagramsReceived], [{ direction: 'accepted' }, m.datagramsAccepted]];
  });
  mirroredCounter(registry, 'wedge_softstate_bytes_total', 'Soft-state bytes, by direction', ['direction'], () => {
    const m = metrics();
    return [[{ direction: 'sent' }, m.bytesSent], [{ direction: 'received' }, m.bytesReceived]];
  });
  mirroredCounter(registry, 'wedge_softstate_rejected_total', 'Soft-state datagrams dropped, by reason (garbled, forged, replayed, ...)', ['reason'], () =>
    Object.entries(metrics().rejected).map(([reason, value]) => [{ reason }, value ?? 0]),
  );
  mirroredCounter(registry, 'wedge_softstate_adverts_total', 'Connection adverts sent, by kind', ['kind'], () => {
    const m = metrics();
    return [[{ kind: 'triggered' }, m.triggeredAdverts], [{ kind: 'periodic' }, m.periodicAdverts]];
  });
  mirroredGauge(registry, 'wedge_softstate_records', 'Connection records known, by kind (local: served here; table: heard from the group)', ['kind'], () => {
    const m = metrics();
    return [[{ kind: 'local' }, m.localRecords], [{ kind: 'table' }, m.tableRecords]];
  });
  mirroredGauge(registry, 'wedge_softstate_peers', 'Peers of the support group, by state', ['state'], () => {
    const m = metrics();
    return [[{ state: 'alive' }, m.peersAlive], [{ state: 'dead' }, m.peersDead]];
  });
}
