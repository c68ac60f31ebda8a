import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS } from '../errors/codes.js';
import { ABORT_REASONS, TAKEOVER_RESULTS } from '../errors/reasons.js';

/* The first cell of every table row under `## heading` (up to the next heading), unquoted. */
function documented(doc: string, heading: string | undefined): string[] {
  const sections = doc.split(/^## /m);
  const section = heading === undefined ? sections[0]! : sections.find((s) => s.startsWith(heading + '\n'));
  if (!section) throw new Error(`docs/errors.md has no section "## ${heading}"`);
  return [...section.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]!);
}

describe('docs/errors.md documents every table, and nothing else', () => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
  const tables = [
    { name: 'error codes', keys: Object.keys(ERRORS), heading: undefined },
    { name: 'abort reasons', keys: Object.keys(ABORT_REASONS), heading: 'Abort reasons' },
    { name: 'takeover results', keys: Object.keys(TAKEOVER_RESULTS), heading: 'Takeover results' },
  ];

  it.each(tables)('$name: every one in the code is documented', ({ keys, heading }) => {
    expect(keys.filter((key) => !documented(doc, heading).includes(key))).toEqual([]);
  });

  it.each(tables)('$name: every documented one exists in the code', ({ keys, heading }) => {
    expect(documented(doc, heading).filter((key) => !keys.includes(key))).toEqual([]);
  });

  it('takeover outcomes in the docs match the code', () => {
    const rows = [...doc.matchAll(/^\| `([^`]+)` \| (success|elsewhere|aborted) \|/gm)].map((m) => [m[1], m[2]]);
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(Object.entries(TAKEOVER_RESULTS).map(([k, v]) => [k, v.outcome])));
  });
});
