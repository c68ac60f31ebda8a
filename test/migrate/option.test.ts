import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  decodeMigrateOption,
  encodeMigrateOption,
  findMigrateOption,
  migrateSynOptions,
  MIGRATE_EXID,
  MIGRATE_OPTION_LENGTH,
  verifyMigrateOption,
  type MigrateSegmentFields,
} from '../../migrate/option.js';
import { WedgeError } from '../../errors/codes.js';

const key = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
const token = Buffer.from('a1a2a3a4a5a6a7a8', 'hex');
const request = 0x01020304;
const fields: MigrateSegmentFields = {
  client: { address: '10.77.0.1', port: 40000 },
  oldServer: { address: '10.77.0.11', port: 8080 },
  newServer: { address: '10.77.0.12', port: 8080 },
  seq: 0xdeadbeef,
  ack: 0x12345678,
};

function flipBit(buffer: Buffer, bit: number): Buffer {
  const copy = Buffer.from(buffer);
  copy[bit >> 3]! ^= 0x80 >> (bit & 7);
  return copy;
}

function flipAddressBit(address: string, bit: number): string {
  const bytes = Buffer.from(address.split('.').map(Number));
  return [...flipBit(bytes, bit)].join('.');
}

function decoded(bytes: Buffer) {
  const result = findMigrateOption(bytes);
  if (!result.ok) throw new Error(`did not decode: ${result.reason}`);
  return result.option;
}

describe('Migrate option layout', () => {
  it('is exactly the documented 32 bytes', () => {
    const bytes = encodeMigrateOption(key, fields, token, request);
    expect(bytes.length).toBe(MIGRATE_OPTION_LENGTH);
    expect(bytes.subarray(0, 4).toString('hex')).toBe('fd205745');
    expect(bytes.subarray(4, 12)).toEqual(token);
    expect(bytes.readUInt32BE(12)).toBe(request);
    const input = Buffer.concat([
      Buffer.from('wedge-migrate-syn-v1'),
      Buffer.from([0x57, 0x45]),
      Buffer.from([10, 77, 0, 1, 40000 >> 8, 40000 & 0xff]),
      Buffer.from([10, 77, 0, 11, 0x1f, 0x90]),
      Buffer.from([10, 77, 0, 12, 0x1f, 0x90]),
      token,
      Buffer.from('01020304deadbeef12345678', 'hex'),
    ]);
    expect(input.length).toBe(60);
    const mac = createHmac('sha256', key).update(input).digest().subarray(0, 16);
    expect(bytes.subarray(16, 32)).toEqual(mac);
  });

  it('fits the 40-byte option budget with MSS, Migrate first', () => {
    const block = migrateSynOptions(encodeMigrateOption(key, fields, token, request), 1460);
    expect(block.length).toBe(36);
    expect(block.length % 4).toBe(0);
    expect(block[0]).toBe(253);
    expect(block.subarray(32).toString('hex')).toBe('020405b4');
  });
});

describe('Migrate option round trip and verification', () => {
  const bytes = encodeMigrateOption(key, fields, token, request);

  it('decodes what it encodes and verifies', () => {
    const option = decoded(migrateSynOptions(bytes, 1460));
    expect(option.token).toEqual(token);
    expect(option.request).toBe(request);
    expect(verifyMigrateOption(key, fields, option)).toBe(true);
  });

  it('is found behind NOPs, other options and another kind-253 experiment', () => {
    const otherExperiment = Buffer.from([253, 4, 0x12, 0x34]);
    const block = Buffer.concat([Buffer.from([1, 1]), otherExperiment, bytes]);
    expect(verifyMigrateOption(key, fields, decoded(block))).toBe(true);
  });

  it('rejects every single-bit flip of the token, request number and MAC', () => {
    for (let bit = 4 * 8; bit < MIGRATE_OPTION_LENGTH * 8; bit++) {
      const option = decoded(flipBit(bytes, bit));
      expect(verifyMigrateOption(key, fields, option), `bit ${bit}`).toBe(false);
    }
  });

  it('rejects every single-bit flip of every address, port and sequence field', () => {
    const endpoints = ['client', 'oldServer', 'newServer'] as const;
    let checked = 0;
    for (const role of endpoints) {
      for (let bit = 0; bit < 32; bit++) {
        const changed = { ...fields, [role]: { ...fields[role], address: flipAddressBit(fields[role].address, bit) } };
        expect(verifyMigrateOption(key, changed, decoded(bytes)), `${role} address bit ${bit}`).toBe(false);
        checked++;
      }
      for (let bit = 0; bit < 16; bit++) {
        const changed = { ...fields, [role]: { ...fields[role], port: fields[role].port ^ (1 << bit) } };
        expect(verifyMigrateOption(key, changed, decoded(bytes)), `${role} port bit ${bit}`).toBe(false);
        checked++;
      }
    }
    for (const field of ['seq', 'ack'] as const) {
      for (let bit = 0; bit < 32; bit++) {
        const changed = { ...fields, [field]: (fields[field] ^ (1 << bit)) >>> 0 };
        expect(verifyMigrateOption(key, changed, decoded(bytes)), `${field} bit ${bit}`).toBe(false);
        checked++;
      }
    }
    expect(checked).toBe(3 * 48 + 64);
  });

  it('rejects the same option under another connection key', () => {
    expect(verifyMigrateOption(randomBytes(32), fields, decoded(bytes))).toBe(false);
  });

  it('rejects the old servers swapped (the MAC names which server is which)', () => {
    const swapped = { ...fields, oldServer: fields.newServer, newServer: fields.oldServer };
    expect(verifyMigrateOption(key, swapped, decoded(bytes))).toBe(false);
  });
});

describe('Migrate option decoding of hostile input', () => {
  const bytes = encodeMigrateOption(key, fields, token, request);

  it('rejects every truncation of the option, standalone and inside a block', () => {
    for (let length = 0; length < MIGRATE_OPTION_LENGTH; length++) {
      const cut = bytes.subarray(0, length);
      expect(decodeMigrateOption(cut).ok, `standalone ${length}`).toBe(false);
      expect(findMigrateOption(cut).ok, `block ${length}`).toBe(false);
    }
    expect(findMigrateOption(bytes.subarray(0, 20))).toEqual({ ok: false, reason: 'truncated' });
  });

  it('rejects a wrong length byte', () => {
    const wrong = Buffer.from(bytes);
    wrong[1] = 30;
    expect(findMigrateOption(wrong)).toEqual({ ok: false, reason: 'bad-length' });
    expect(decodeMigrateOption(Buffer.concat([bytes, Buffer.from([0])]))).toEqual({ ok: false, reason: 'bad-length' });
  });

  it('reports absent for other ExIDs, EOL before the option, and empty blocks', () => {
    const otherExid = Buffer.from(bytes);
    otherExid.writeUInt16BE(MIGRATE_EXID ^ 1, 2);
    expect(findMigrateOption(otherExid)).toEqual({ ok: false, reason: 'absent' });
    expect(findMigrateOption(Buffer.concat([Buffer.from([0, 0, 0, 0]), bytes]))).toEqual({ ok: false, reason: 'absent' });
    expect(findMigrateOption(Buffer.alloc(0))).toEqual({ ok: false, reason: 'absent' });
  });

  it('rejects malformed option blocks without throwing', () => {
    expect(findMigrateOption(Buffer.from([2]))).toEqual({ ok: false, reason: 'malformed-options' });
    expect(findMigrateOption(Buffer.from([2, 0, 0, 0]))).toEqual({ ok: false, reason: 'malformed-options' });
    expect(findMigrateOption(Buffer.alloc(44, 1))).toEqual({ ok: false, reason: 'malformed-options' });
    for (let i = 0; i < 2000; i++) expect(() => findMigrateOption(randomBytes(i % 41))).not.toThrow();
  });
});

describe('Migrate option encoding checks its inputs', () => {
  it.each([
    ['short token', () => encodeMigrateOption(key, fields, Buffer.alloc(7), request)],
    ['request beyond 32 bits', () => encodeMigrateOption(key, fields, token, 2 ** 32)],
    ['IPv6 client', () => encodeMigrateOption(key, { ...fields, client: { address: '::1', port: 1 } }, token, request)],
    ['port out of range', () => encodeMigrateOption(key, { ...fields, newServer: { address: '10.0.0.1', port: 70000 } }, token, request)],
    ['negative seq', () => encodeMigrateOption(key, { ...fields, seq: -1 }, token, request)],
    ['MSS out of range', () => migrateSynOptions(Buffer.alloc(32), 0)],
  ])('%s is a WEDGE_ERR_MIGRATE_OPTION', (_name, build) => {
    expect(build).toThrow(WedgeError);
    try {
      build();
    } catch (error) {
      expect((error as WedgeError).code).toBe('WEDGE_ERR_MIGRATE_OPTION');
    }
  });
});
