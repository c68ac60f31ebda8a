import { describe, expect, it } from 'vitest';
import { unwrap } from '../../takeover/resume.js';

/* The probe gives 32-bit sequence differences; the record's byte counts place them in the stream. */
describe('unwrap', () => {
  const GiB = 2 ** 30;

  it('is the identity below 4 GiB when the hint is close', () => {
    expect(unwrap(1_000_000, 999_000)).toBe(1_000_000);
    expect(unwrap(0, 0)).toBe(0);
  });

  it('crosses the 4 GiB wrap in both directions', () => {
    // The record said 4 GiB - 1 KiB sent; the client is 2 KiB further, past the wrap.
    expect(unwrap(1024, 4 * GiB - 1024)).toBe(4 * GiB + 1024);
    // The record said just past the wrap; the client acknowledged bytes just before it.
    expect(unwrap(2 ** 32 - 512, 4 * GiB + 100)).toBe(4 * GiB - 512);
  });

  it('picks the candidate nearest the hint, far into the stream', () => {
    const hint = 37 * GiB + 123;
    expect(unwrap((hint + 5000) % 2 ** 32, hint)).toBe(hint + 5000);
    expect(unwrap((hint - 5000) % 2 ** 32, hint)).toBe(hint - 5000);
  });

  it('never returns a negative offset', () => {
    expect(unwrap(2 ** 32 - 10, 5)).toBe(2 ** 32 - 10);
  });
});
