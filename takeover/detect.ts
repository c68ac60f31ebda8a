/*
 * detect: what starts a takeover, as the soft-state member reports it.
 *
 * In: the member's events. Out: typed triggers for a mover —
 *   death     a peer was found dead (silent, restarted) or declared dead, with the records it
 *             owned that are not already served here (a peer can be reported dead again after
 *             late heartbeats made it look alive: what was taken already is not taken twice);
 *   handoff   a live owner asks its group to take one connection (TCP Migrate);
 *   self      this server was declared dead while alive: its group is about to take its
 *             connections, and it steps back as each one is taken.
 */
import type { ConnectionRecord, SoftStateMember } from '../softstate/index.js';
import type { ServedConnections } from './pipeline.js';

export type Trigger =
  | { kind: 'death'; peer: string; reason: string; records: ConnectionRecord[] }
  | { kind: 'handoff'; record: ConnectionRecord }
  | { kind: 'self'; declarer: string; reason: string };

export function detect(member: SoftStateMember, self: string, served: Pick<ServedConnections, 'serves'>, on: (trigger: Trigger) => void): void {
  member.on('peer-dead', (peer, reason) => on({ kind: 'death', peer, reason, records: member.recordsOwnedBy(peer).filter((r) => !served.serves(r.id)) }));
  member.on('record', (record) => {
    if (record.handoff && record.owner !== self && !served.serves(record.id)) on({ kind: 'handoff', record });
  });
  member.on('declared-dead-self', (declarer, reason) => on({ kind: 'self', declarer, reason }));
}
