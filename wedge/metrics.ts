import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RelayObserver } from '../splice/connection.js';
import type { WedgeErrorCode } from './errors.js';

/* Prometheus metrics of one wedge daemon. Names follow `wedge_<thing>_<unit>`. */
export class WedgeMetrics implements RelayObserver {
  readonly registry = new Registry();
  readonly connectionsActive = new Gauge({ name: 'wedge_connections_active', help: 'Client connections open now', registers: [this.registry] });
  readonly connectionsTotal = new Counter({ name: 'wedge_connections_total', help: 'Client connections accepted', registers: [this.registry] });
  readonly requestsTotal = new Counter({ name: 'wedge_requests_total', help: 'HTTP requests parsed, by method', labelNames: ['method'], registers: [this.registry] });
  readonly rejectsTotal = new Counter({ name: 'wedge_rejects_total', help: 'Requests refused with an error status, by error code', labelNames: ['code'], registers: [this.registry] });
  readonly bytesTotal = new Counter({ name: 'wedge_bytes_total', help: 'Bytes relayed, by direction', labelNames: ['direction'], registers: [this.registry] });
  readonly splicedBytesTotal = new Counter({ name: 'wedge_spliced_bytes_total', help: 'Response body bytes moved in the kernel by splice(2)', registers: [this.registry] });
  readonly abortsTotal = new Counter({ name: 'wedge_aborts_total', help: 'Connections reset because they could not be completed exactly, by reason', labelNames: ['reason'], registers: [this.registry] });

  readonly takeovers = new Counter({ name: 'wedge_takeovers_total', help: 'Connections of dead peers this server took over, by result', labelNames: ['result'], registers: [this.registry] });
  readonly takeoverSeconds = new Histogram({ name: 'wedge_takeover_seconds', help: 'Probe, restore and resume of one connection', buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2], registers: [this.registry] });
  readonly relinquished = new Counter({ name: 'wedge_relinquished_total', help: 'Connections given up silently because a peer took them over', registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'wedge_process_' });
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
  abort(reason: string): void {
    this.abortsTotal.inc({ reason });
  }
  spliced(count: number): void {
    this.splicedBytesTotal.inc(count);
  }
}

/* Methods are labels only when well known, so a client cannot blow up the label set. */
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE']);
