import { NativeError } from './errors.js';
import { loadAddon } from './load.js';

/* The raw shape of build/Release/wedge_native.node. Only native/*.ts use it; everything else
 * goes through the typed API in native/index.ts. */

export interface RawWindow {
  sndWl1: number;
  sndWnd: number;
  maxWindow: number;
  rcvWnd: number;
  rcvWup: number;
}

export interface RawEndpoints {
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
}

export interface RawDump extends RawEndpoints {
  sendSeq: number;
  recvSeq: number;
  timestamp: number;
  clockReadAt: number;
  mss: number;
  windowScaling: boolean;
  sndWscale: number;
  rcvWscale: number;
  sack: boolean;
  timestamps: boolean;
  window: RawWindow;
  /* Sequence space received from the peer in order (data and FIN): recvSeq - bytesReceived is its ISN+1. */
  bytesReceived: number;
}

/* What restoring a connection takes from its record; the client's answer and the clock at
 * restore time give the rest (the policy: native/src/repair.cc SpecFor). */
export type RawRestoreBase = Pick<RawDump, 'mss' | 'windowScaling' | 'sndWscale' | 'rcvWscale' | 'sack' | 'timestamps' | 'timestamp' | 'clockReadAt'> & {
  maxWindow: number;
  rcvWnd: number;
  timestampMarginMs: number;
  mark: number;
};

export interface RawProbeTarget extends RawEndpoints {
  seq: number;
  ack: number;
  migrateSyn?: { seq: number; ack: number; options: Buffer };
  restore?: RawRestoreBase;
  /* The 4-tuple is a live socket of ours: no placeholder. */
  live?: boolean;
}

export interface RawProbeBatch {
  ifname: string;
  timeoutMs: number;
  retries: number;
  targets: RawProbeTarget[];
}

export interface RawProbeAnswer {
  /** The client's rcv_nxt: the next server byte it wants. */
  ack: number;
  /** The client's snd_nxt. */
  seq: number;
  /** The client's advertised receive window, unscaled as on the wire. */
  window: number;
  /** The client's timestamp clock and echo, if the connection uses timestamps. */
  tsVal?: number;
  tsEcr?: number;
  /** From sending the answered probe to reading its answer (in a batch, early answers wait while later probes go out). */
  rttMs: number;
  /** TCP Migrate: from sending the Migrate SYN to the agent's SYN-ACK (absent without one). */
  moveMs?: number;
  /** Segments sent (Migrate SYNs and probes), the answered one included. */
  attempts: number;
}

/* A restoring target's result once its client answered: the new socket, or why there is none. */
export interface RawRestoredProbe {
  answer: RawProbeAnswer;
  restored: { fd: number; state: RawDump; restoreMs: number } | NativeError;
}

export interface RawTcpSegment extends RawEndpoints {
  seq: number;
  ack: number;
  flags: number;
  window: number;
  options: Buffer;
  mark?: number;
}

export interface RawCapturedSyn {
  sourceAddress: string;
  sourcePort: number;
  destinationAddress: string;
  destinationPort: number;
  seq: number;
  ack: number;
  window: number;
  flags: number;
  ifindex: number;
  options: Buffer;
}

export interface RawMigrateCapture {
  stop(): void;
  dropped(): number;
}

/* A live TCP socket's progress counters (native/src/progress.cc). */
export interface RawProgress {
  /** ESTABLISHED or CLOSE_WAIT: the socket may still send. */
  established: boolean;
  /** Bytes the peer has acknowledged since the socket was made. */
  bytesAcked: number;
  /** Bytes sent and not yet acknowledged (snd_nxt - snd_una). */
  inFlight: number;
  /** Bytes queued and not yet sent (write_seq - snd_nxt). */
  notSent: number;
  /** The peer's receive window, scaled. */
  peerWindow: number;
  /** Retransmissions of the oldest unacknowledged segment (0 when progressing). */
  retransmits: number;
}

export type RawSpliceDone = (error: NativeError | null, bytes: number, eof: boolean, cancelled: boolean) => void;

export interface RawAddon {
  setErrorClass(ctor: typeof NativeError): void;
  dump(fd: number): RawDump;
  raiseOpenFileLimit(): { soft: number; hard: number };
  restore(endpoints: RawEndpoints, base: RawRestoreBase, answer: Pick<RawProbeAnswer, 'ack' | 'seq' | 'window'>): number;
  setRepair(fd: number, on: boolean): void;
  repairProblem(): NativeError | null;
  /* One result per target, in order; a NativeError for a connection that could not be probed.
   * A target with `restore` answers RawRestoredProbe instead of RawProbeAnswer. */
  probeMany(batch: RawProbeBatch): Promise<(RawProbeAnswer | RawRestoredProbe | NativeError)[]>;
  gratuitousArp(ifname: string, ipv4: string): void;
  progress(fd: number): RawProgress;
  takeFd(pid: number, fd: number): number;
  notifySystemd(state: string): boolean;
  spliceStart(sourceFd: number, destinationFd: number, length: number, onDone: RawSpliceDone): number;
  spliceBytes(id: number): number | null;
  spliceCancel(id: number): void;
  sendTcpSegment(segment: RawTcpSegment): void;
  captureMigrateSyns(
    options: { address: string; ifname: string; exid: number },
    onSegment: (error: NativeError | null, segment: RawCapturedSyn | null) => void,
  ): RawMigrateCapture;
  captureSynAcks(
    options: { address: string; ifname: string; ports: number[] },
    onSegment: (error: NativeError | null, segment: RawCapturedSyn | null) => void,
  ): RawMigrateCapture;
}

function load(): RawAddon {
  const addon = loadAddon<RawAddon>();
  addon.setErrorClass(NativeError);
  return addon;
}

export const addon: RawAddon = load();
