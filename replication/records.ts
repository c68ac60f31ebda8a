/*
 * The parts of a connection record this daemon writes and reads back: the TCP transport (from a
 * dump of the serving socket) and the replicated stream (the stream map with both byte counts).
 */
import type { ConnectionDump } from '../native/index.js';
import type { TransportState } from '../softstate/index.js';
import { MAX_SNAPSHOT_BYTES, type Snapshot } from '../relay/state-slots.js';
import { StreamMap, type StreamMapJSON } from '../stream-map/stream-map.js';

/* ConnectionRecord.streamMap as this daemon writes it. */
export interface ReplicatedStream {
  map: StreamMapJSON;
  /* Bytes handed to the client, and received from it, when the record was made. */
  sent: number;
  received: number;
  /* The origin's latest snapshot of the connection's state (the state contract), if any. */
  snapshot?: Snapshot;
}

/* The record's transport: anchors are the sequence numbers of byte 0 of each stream. */
export function transportOf(state: ConnectionDump, bytesSent: number): TransportState {
  return {
    sendSeq: (state.sendSeq - bytesSent) >>> 0,
    recvSeq: (state.recvSeq - state.bytesReceived) >>> 0,
    mss: state.mss,
    sndWscale: state.windowScaling ? state.sndWscale : 0,
    rcvWscale: state.windowScaling ? state.rcvWscale : 0,
    sack: state.sack,
    timestamps: state.timestamps,
    tsClock: state.timestamp,
    tsReadAt: state.clockReadAt,
    sndWnd: state.window.sndWnd,
    rcvWnd: state.window.rcvWnd,
  };
}

/* Checks a ReplicatedStream heard from the network; the map re-checks all its own invariants. */
export function parseReplicatedStream(value: unknown): { map: StreamMap; sent: number; received: number; snapshot?: Snapshot } | undefined {
  const v = value as Partial<ReplicatedStream> | null;
  if (!v || typeof v !== 'object' || !Number.isSafeInteger(v.sent) || !Number.isSafeInteger(v.received)) return undefined;
  if (v.sent! < 0 || v.received! < 0) return undefined;
  const snapshot = v.snapshot === undefined || v.snapshot === null ? undefined : parseSnapshot(v.snapshot);
  if (snapshot === null) return undefined;
  try {
    return { map: StreamMap.fromJSON(v.map), sent: v.sent!, received: v.received!, ...(snapshot ? { snapshot } : {}) };
  } catch {
    return undefined;
  }
}

/* A snapshot heard from the network, copied; null if malformed. */
function parseSnapshot(value: unknown): Snapshot | null {
  const s = value as Partial<Snapshot> | null;
  if (typeof s !== 'object' || s === null || !isPosition(s.exchange) || !isPosition(s.offset)) return null;
  if (!(s.data instanceof Uint8Array) || s.data.length > MAX_SNAPSHOT_BYTES) return null;
  return { exchange: s.exchange, offset: s.offset, data: Buffer.from(s.data) };
}

function isPosition(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}
