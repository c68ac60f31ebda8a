import { describe, expect, it } from 'vitest';
import { chooseAdopter } from '../../takeover/choose.js';

describe('chooseAdopter', () => {
  const members = ['10.0.0.11', '10.0.0.12', '10.0.0.13', '10.0.0.14'];

  it('is the same whatever order the members are listed in', () => {
    for (let i = 0; i < 50; i++) {
      const vip = `10.0.1.${i}`;
      expect(chooseAdopter(vip, members)).toBe(chooseAdopter(vip, [...members].reverse()));
    }
  });

  it('spreads addresses over the members and only moves those of a member that leaves', () => {
    const vips = Array.from({ length: 400 }, (_, i) => `10.1.${i >> 8}.${i & 255}`);
    const before = new Map(vips.map((v) => [v, chooseAdopter(v, members)]));
    const counts = new Map<string, number>();
    for (const owner of before.values()) counts.set(owner!, (counts.get(owner!) ?? 0) + 1);
    for (const m of members) expect(counts.get(m)).toBeGreaterThan(50);
    const remaining = members.filter((m) => m !== '10.0.0.12');
    for (const v of vips) {
      const after = chooseAdopter(v, remaining);
      if (before.get(v) !== '10.0.0.12') expect(after).toBe(before.get(v));
      else expect(remaining).toContain(after);
    }
  });

  it('has no adopter without live members', () => {
    expect(chooseAdopter('10.0.1.1', [])).toBeUndefined();
  });
});
