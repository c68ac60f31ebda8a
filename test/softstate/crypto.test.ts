import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { Inbox, Outbox } from '../../softstate/channel.js';
import { encodeHeartbeat } from '../../softstate/codec.js';
import { loadKeyRing, parseKeyMaterial, ReplayGuard, sealDatagram, type KeyRing } from '../../softstate/crypto.js';
import { WedgeError } from '../../errors/codes.js';
import { sampleRecord } from './sample.js';

const ring = (...keys: Buffer[]): KeyRing => ({ current: keys.length, keys: new Map(keys.map((k, i) => [i + 1, k])) });
const keyA = randomBytes(32);
const keyB = randomBytes(32);
const load = { connections: 1, bytesPerSec: 0 };

function pair(senderRing = ring(keyA), receiverRing = ring(keyA)) {
  return {
    out: new Outbox({ ring: senderRing, self: '10.99.0.1' }),
    inbox: new Inbox({ ring: receiverRing, self: '10.99.0.2' }),
  };
}

describe('datagram protection', () => {
  it('accepts an authentic datagram once', () => {
    const { out, inbox } = pair();
    const d = out.heartbeat(load);
    expect(inbox.receive(d)).toMatchObject({ kind: 'heartbeat', sender: '10.99.0.1', seq: 1 });
    expect(inbox.receive(d)).toBeUndefined();
    expect(inbox.rejected).toEqual({ replay: 1 });
    expect(inbox.accepted).toBe(1);
  });

  it('rejects garbled, truncated, forged, unknown-key and bad-version datagrams, counted by reason', () => {
    const { out, inbox } = pair();
    const good = out.heartbeat(load);
    const garbled = Buffer.from(good);
    garbled[garbled.length - 20] ^= 0x40; // ciphertext bit flip
    expect(inbox.receive(garbled)).toBeUndefined();
    const headerFlip = Buffer.from(out.heartbeat(load));
    headerFlip[headerFlip.length - 40] ^= 1; // inside the AAD-protected nonce/seq area or body
    expect(inbox.receive(headerFlip)).toBeUndefined();
    expect(inbox.receive(good.subarray(0, 3))).toBeUndefined();
    expect(inbox.receive(good.subarray(0, 30))).toBeUndefined();
    const forged = new Outbox({ ring: ring(keyB), self: '10.99.0.1' }).heartbeat(load);
    expect(inbox.receive(forged)).toBeUndefined();
    const unknownKey = new Outbox({ ring: ring(keyB, keyA, keyB), self: '10.99.0.3' }).heartbeat(load);
    expect(inbox.receive(unknownKey)).toBeUndefined();
    const badVersion = Buffer.from(out.heartbeat(load));
    badVersion[2] = 9;
    expect(inbox.receive(badVersion)).toBeUndefined();
    const notOurs = Buffer.from('hello world, not soft state');
    expect(inbox.receive(notOurs)).toBeUndefined();
    expect(inbox.receive(Buffer.alloc(5000))).toBeUndefined();
    expect(inbox.rejected).toEqual({
      'auth-failed': 3,
      truncated: 2,
      'unknown-key': 1,
      'bad-version': 1,
      'bad-magic': 1,
      'too-large': 1,
    });
    expect(inbox.receive(good)).toMatchObject({ kind: 'heartbeat' });
  });

  it('rejects authentic datagrams whose plaintext does not decode as garbled', () => {
    const { inbox } = pair();
    const d = sealDatagram(ring(keyA), { sender: '10.99.0.1', epoch: 5n, seq: 1 }, Buffer.from([0x92, 0x07, 0xc1]));
    expect(inbox.receive(d)).toBeUndefined();
    expect(inbox.rejected).toEqual({ garbled: 1 });
  });

  it('rejects a heartbeat claiming another sender than its authenticated header', () => {
    const { inbox } = pair();
    const body = encodeHeartbeat({ sender: '10.99.0.7', epoch: '0000000000000005', load });
    expect(inbox.receive(sealDatagram(ring(keyA), { sender: '10.99.0.1', epoch: 5n, seq: 1 }, body))).toBeUndefined();
    expect(inbox.rejected).toEqual({ 'sender-mismatch': 1 });
  });

  it('accepts reordering within the window, rejects replays and datagrams older than the window', () => {
    const { out, inbox } = pair();
    const sent = Array.from({ length: 100 }, () => out.heartbeat(load));
    expect(inbox.receive(sent[99]!)).toBeDefined();
    expect(inbox.receive(sent[50]!)).toBeDefined(); // 49 behind: inside the 64 window
    expect(inbox.receive(sent[50]!)).toBeUndefined(); // replay
    expect(inbox.receive(sent[10]!)).toBeUndefined(); // 89 behind: beyond the window
    expect(inbox.receive(sent[35]!)).toBeUndefined(); // 64 behind: just beyond
    expect(inbox.receive(sent[36]!)).toBeDefined(); // 63 behind: just inside
    expect(inbox.rejected).toEqual({ replay: 1, stale: 2 });
  });

  it('switches to a new epoch only on an authentic datagram and refuses the old epoch after', () => {
    const inbox = new Inbox({ ring: ring(keyA), self: '10.99.0.2' });
    const before = new Outbox({ ring: ring(keyA), self: '10.99.0.1', epoch: 1000n });
    const recorded = Array.from({ length: 5 }, () => before.heartbeat(load));
    expect(inbox.receive(recorded[0]!)).toBeDefined();
    // A forged "restart" (wrong key) does not move the epoch.
    const forgedRestart = new Outbox({ ring: ring(keyB), self: '10.99.0.1', epoch: 2000n }).heartbeat(load);
    expect(inbox.receive(forgedRestart)).toBeUndefined();
    expect(inbox.receive(recorded[1]!)).toBeDefined();
    // The real restart does; then the previous life's datagrams are refused.
    const after = new Outbox({ ring: ring(keyA), self: '10.99.0.1', epoch: 2000n });
    expect(inbox.receive(after.heartbeat(load))).toMatchObject({ epoch: 2000n, seq: 1 });
    expect(inbox.receive(recorded[2]!)).toBeUndefined();
    expect(inbox.rejected).toEqual({ 'auth-failed': 1, 'stale-epoch': 1 });
  });

  it('opens datagrams sealed with any key of the ring; the sender uses the newest', () => {
    const old = new Outbox({ ring: ring(keyA), self: '10.99.0.1' });
    const rotated = new Outbox({ ring: ring(keyA, keyB), self: '10.99.0.3' });
    const receiver = new Inbox({ ring: ring(keyA, keyB), self: '10.99.0.2' });
    expect(receiver.receive(old.heartbeat(load))).toBeDefined();
    const d = rotated.heartbeat(load);
    expect(d[3]).toBe(2);
    expect(receiver.receive(d)).toBeDefined();
    expect(new Inbox({ ring: ring(keyA), self: 'x' }).receive(d)).toBeUndefined();
  });

  it('carries adverts end to end, fragments included', () => {
    const { out, inbox } = pair();
    const records = [sampleRecord(1), sampleRecord(2, {}, 5000)];
    const { datagrams, refused } = out.adverts(records.map((record) => out.encodeItem({ kind: 'record', record })));
    expect(refused).toEqual([]);
    for (const d of datagrams) expect(d.length).toBeLessThanOrEqual(1400);
    const got = datagrams.flatMap((d) => {
      const m = inbox.receive(d);
      return m?.kind === 'advert' ? m.items : [];
    });
    expect(got).toHaveLength(2);
    expect(got).toEqual(expect.arrayContaining(records.map((record) => ({ kind: 'record', record }))));
  });

  it('guards against many senders with bounded memory', () => {
    const guard = new ReplayGuard({ maxSenders: 10 });
    for (let i = 0; i < 100; i++) guard.accept(`s${i}`, 1n, 1);
    expect(guard.last('s0')).toBeUndefined();
    expect(guard.last('s99')).toEqual({ epoch: 1n, seq: 1 });
  });
});

describe('cluster key loading', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wedge-key-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads 32 raw bytes or 64 hex digits from --state-key-file', () => {
    const raw = join(dir, 'raw');
    writeFileSync(raw, keyA);
    expect(loadKeyRing({ keyFile: raw, env: {} }).keys.get(1)).toEqual(keyA);
    const hex = join(dir, 'hex');
    writeFileSync(hex, keyB.toString('hex') + '\n');
    expect(loadKeyRing({ keyFile: hex, env: {} })).toEqual({ current: 1, keys: new Map([[1, keyB]]) });
  });

  it('reads a rotated ring, newest last, with explicit ids', () => {
    const r = parseKeyMaterial(`3:${keyA.toString('hex')}\n7:${keyB.toString('hex')}\n`, 'test');
    expect(r.current).toBe(7);
    expect([...r.keys.keys()]).toEqual([3, 7]);
  });

  it('reads WEDGE_STATE_KEY', () => {
    expect(loadKeyRing({ env: { WEDGE_STATE_KEY: keyA.toString('hex') } }).keys.get(1)).toEqual(keyA);
  });

  it('fails with WEDGE_ERR_STATE_KEY when no key or a bad key is given', () => {
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return err instanceof WedgeError ? err.code : String(err);
      }
      return 'no error';
    };
    expect(code(() => loadKeyRing({ env: {} }))).toBe('WEDGE_ERR_STATE_KEY');
    expect(code(() => loadKeyRing({ keyFile: join(dir, 'missing'), env: {} }))).toBe('WEDGE_ERR_STATE_KEY');
    expect(code(() => loadKeyRing({ env: { WEDGE_STATE_KEY: 'abcd' } }))).toBe('WEDGE_ERR_STATE_KEY');
    expect(code(() => parseKeyMaterial(`${keyA.toString('hex')},1:${keyB.toString('hex')}`, 't'))).toBe('WEDGE_ERR_STATE_KEY');
  });
});
