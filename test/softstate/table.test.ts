import { describe, expect, it } from 'vitest';
import { bucketOf, groupAddress, supportGroupOf, validateGroupConfig } from '../../softstate/groups.js';
import { compareVersions, SoftStateTable } from '../../softstate/table.js';
import { sampleRecord } from './sample.js';

const from = (seq: number, sender = '10.99.0.1') => ({ sender, seq });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('soft-state table', () => {
  it('keeps only the newest version by migration number', () => {
    const t = new SoftStateTable();
    const r0 = sampleRecord(1);
    const r1 = sampleRecord(1, { owner: '10.99.0.2', migration: 1, updatedAt: 1 });
    expect(t.offer(r0, from(1))).toBe('new');
    expect(t.offer(r1, from(1, '10.99.0.2'))).toBe('updated');
    // The old owner's later re-advert (newer updatedAt, but lower migration) loses.
    expect(t.offer({ ...r0, updatedAt: r0.updatedAt + 5000 }, from(2))).toBe('older');
    expect(t.get(r0.id)).toEqual(r1);
    expect(t.size).toBe(1);
  });

  it('breaks ties by updatedAt, then sequence, and across owners by a fixed rank', () => {
    const t = new SoftStateTable();
    const a = sampleRecord(1, { migration: 2 });
    expect(t.offer(a, from(5))).toBe('new');
    expect(t.offer({ ...a, updatedAt: a.updatedAt + 1 }, from(6))).toBe('updated');
    expect(t.offer({ ...a, updatedAt: a.updatedAt + 1 }, from(7))).toBe('refreshed');
    expect(t.offer({ ...a, updatedAt: a.updatedAt + 1 }, from(3))).toBe('older');
    // Two racing takeovers at the same migration number: both sides agree on one winner.
    const x = sampleRecord(2, { owner: '10.99.0.3', migration: 4 });
    const y = sampleRecord(2, { owner: '10.99.0.4', migration: 4, updatedAt: 0 });
    expect(compareVersions(y, x)).toBeGreaterThan(0);
    expect(compareVersions(x, y)).toBeLessThan(0);
    expect(t.offer(x, from(1, '10.99.0.3'))).toBe('new');
    expect(t.offer(y, from(1, '10.99.0.4'))).toBe('updated');
    expect(t.offer(x, from(2, '10.99.0.3'))).toBe('older');
  });

  it('looks records up by owner and honours withdrawals only from the current owner', () => {
    const t = new SoftStateTable();
    for (let i = 0; i < 10; i++) t.offer(sampleRecord(i, { owner: i < 4 ? '10.99.0.1' : '10.99.0.2' }), from(i));
    expect(t.ownedBy('10.99.0.1')).toHaveLength(4);
    expect(t.ownedBy('10.99.0.2')).toHaveLength(6);
    const moved = sampleRecord(0, { owner: '10.99.0.2', migration: 1 });
    t.offer(moved, from(20, '10.99.0.2'));
    expect(t.withdraw({ id: moved.id, owner: '10.99.0.1', migration: 0 })).toBe(false);
    expect(t.withdraw({ id: moved.id, owner: '10.99.0.2', migration: 1 })).toBe(true);
    expect(t.get(moved.id)).toBeUndefined();
    // A late copy of the withdrawn version does not bring it back; a later takeover does count.
    expect(t.offer(moved, from(19, '10.99.0.2'))).toBe('older');
    expect(t.get(moved.id)).toBeUndefined();
    expect(t.offer({ ...moved, owner: '10.99.0.3', migration: 2 }, from(1, '10.99.0.3'))).toBe('new');
  });

  it('expires entries after the TTL unless re-advertised', async () => {
    const t = new SoftStateTable({ ttlMs: 150 });
    const kept = sampleRecord(1);
    t.offer(kept, from(1));
    t.offer(sampleRecord(2), from(2));
    await sleep(100);
    t.offer(kept, from(3));
    await sleep(100);
    expect(t.records().map((r) => r.id)).toEqual([kept.id]);
    t.purgeStale();
    expect(t.size).toBe(1);
    await sleep(200);
    expect(t.get(kept.id)).toBeUndefined();
  });
});

describe('support groups', () => {
  it('hashes addresses into n buckets with a well-known function', () => {
    expect(bucketOf('10.99.0.1', 1)).toBe(0);
    // First four bytes of SHA-256("10.99.0.1"), big-endian, mod n: any implementation agrees.
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) counts[bucketOf(`10.${i >> 8}.${i & 255}.1`, 4)]!++;
    for (const c of counts) expect(c).toBeGreaterThan(800);
  });

  it('gives each bucket its own multicast address on the shared port', () => {
    expect(groupAddress(0)).toBe('239.77.0.1');
    expect(groupAddress(300, '239.77.0.1')).toBe('239.77.1.45');
    const g = supportGroupOf('10.99.0.1', { groups: 2, baseGroup: '239.1.2.3', port: 9000 });
    expect(g.port).toBe(9000);
    expect(g.address).toBe(groupAddress(bucketOf('10.99.0.1', 2), '239.1.2.3'));
  });

  it('refuses configurations outside the multicast range', () => {
    expect(() => validateGroupConfig({ groups: 0, baseGroup: '239.77.0.1', port: 7077 })).toThrow(/groups/);
    expect(() => validateGroupConfig({ groups: 2, baseGroup: '10.0.0.1', port: 7077 })).toThrow(/224/);
    expect(() => validateGroupConfig({ groups: 2, baseGroup: '239.255.255.255', port: 7077 })).toThrow(/224/);
  });
});
