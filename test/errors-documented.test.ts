import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS } from '../errors/codes.js';

describe('error table', () => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');

  it.each(Object.keys(ERRORS))('%s is documented in docs/errors.md', (code) => {
    expect(doc).toContain('`' + code + '`');
  });
});
