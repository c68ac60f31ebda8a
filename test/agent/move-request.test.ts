import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeMoveRequest, encodeMoveRequest, isMoveRequest, MOVE_REQUEST_LENGTH, verifyMoveRequest } from '../../migrate/move-request.js';
import { WedgeError } from '../../errors/codes.js';

describe('MOVE request', () => {
  const key = randomBytes(32);
  const token = randomBytes(8);

  it('has the documented layout: magic, type 3, token, sequence, truncated HMAC', () => {
    const message = encodeMoveRequest(key, token, 0x01020304);
    expect(message).toHaveLength(MOVE_REQUEST_LENGTH);
    expect(MOVE_REQUEST_LENGTH).toBe(33);
    expect(message.subarray(0, 4).toString('ascii')).toBe('WMK1');
    expect(message[4]).toBe(3);
    expect(message.subarray(5, 13)).toEqual(token);
    expect(message.subarray(13, 17)).toEqual(Buffer.from([1, 2, 3, 4]));
    const mac = createHmac('sha256', key).update('wedge-migrate-move-v1').update(token).update(Buffer.from([1, 2, 3, 4])).digest().subarray(0, 16);
    expect(message.subarray(17)).toEqual(mac);
  });

  it('decodes what it encodes and verifies with the same key only', () => {
    const decoded = decodeMoveRequest(encodeMoveRequest(key, token, 7));
    if (!decoded.ok) throw new Error(decoded.reason);
    expect(decoded.value.token).toEqual(token);
    expect(decoded.value.sequence).toBe(7);
    expect(verifyMoveRequest(key, decoded.value)).toBe(true);
    expect(verifyMoveRequest(randomBytes(32), decoded.value)).toBe(false);
  });

  it('fails verification when the token, sequence or MAC is changed', () => {
    const message = encodeMoveRequest(key, token, 9);
    for (const at of [5, 12, 13, 16, 17, 32]) {
      const tampered = Buffer.from(message);
      tampered[at]! ^= 0x01;
      const decoded = decodeMoveRequest(tampered);
      if (!decoded.ok) throw new Error(decoded.reason);
      expect(verifyMoveRequest(key, decoded.value)).toBe(false);
    }
  });

  it('tells MOVEs from the key exchange messages and garbage, never throwing', () => {
    const message = encodeMoveRequest(key, token, 1);
    expect(isMoveRequest(message)).toBe(true);
    const hello = Buffer.concat([Buffer.from('WMK1'), Buffer.from([1]), randomBytes(52)]);
    expect(isMoveRequest(hello)).toBe(false);
    expect(decodeMoveRequest(hello)).toEqual({ ok: false, reason: 'not-a-move' });
    expect(decodeMoveRequest(Buffer.alloc(0))).toEqual({ ok: false, reason: 'not-a-move' });
    expect(decodeMoveRequest(Buffer.from('WMK2'))).toEqual({ ok: false, reason: 'not-a-move' });
    expect(decodeMoveRequest(message.subarray(0, 32))).toEqual({ ok: false, reason: 'wrong-length' });
    expect(decodeMoveRequest(Buffer.concat([message, Buffer.from([0])]))).toEqual({ ok: false, reason: 'wrong-length' });
    expect(decodeMoveRequest(message.subarray(0, 5))).toEqual({ ok: false, reason: 'wrong-length' });
    for (let i = 0; i < 200; i++) expect(() => decodeMoveRequest(randomBytes(i % 40))).not.toThrow();
  });

  it('encodes the whole uint32 sequence range and refuses bad fields', () => {
    const decoded = decodeMoveRequest(encodeMoveRequest(key, token, 0xffffffff));
    expect(decoded.ok && decoded.value.sequence).toBe(0xffffffff);
    expect(() => encodeMoveRequest(key, token, 2 ** 32)).toThrow(WedgeError);
    expect(() => encodeMoveRequest(key, token, -1)).toThrow(WedgeError);
    expect(() => encodeMoveRequest(key, token, 1.5)).toThrow(WedgeError);
    expect(() => encodeMoveRequest(key, randomBytes(7), 1)).toThrow(WedgeError);
    expect(() => encodeMoveRequest(Buffer.alloc(0), token, 1)).toThrow(WedgeError);
  });

  it('does not accept a MAC of the wrong length', () => {
    const decoded = decodeMoveRequest(encodeMoveRequest(key, token, 3));
    if (!decoded.ok) throw new Error(decoded.reason);
    expect(verifyMoveRequest(key, { ...decoded.value, mac: decoded.value.mac.subarray(0, 8) })).toBe(false);
  });
});
