/*
 * The layout's two rules, checked on the source itself: a folder imports only folders below it
 * (README.md, "Layout"), and no module imports itself through others (no import circles, type
 * imports included).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../config/package.js';

/* Lower first; a folder may import folders of a lower rank only (and itself). */
const RANKS: string[][] = [
  ['errors', 'app'],
  ['config'],
  ['parsers', 'native', 'softstate', 'migrate', 'examples'],
  ['stream-map'],
  ['relay'],
  ['replication'],
  ['takeover'],
  ['daemon', 'agent', 'lab'],
  ['cli'],
];
const rankOf = new Map(RANKS.flatMap((folders, rank) => folders.map((folder) => [folder, rank] as const)));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

/* module (relative path) -> modules it imports, statically or dynamically. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const folder of rankOf.keys()) {
    for (const file of sources(join(PACKAGE_ROOT, folder))) {
      const text = readFileSync(file, 'utf8');
      const targets = [...text.matchAll(/(?:from\s+|import\(\s*)'(\.{1,2}\/[^']+)\.js'/g)].map((m) => relative(PACKAGE_ROOT, normalize(join(dirname(file), m[1]! + '.ts'))));
      graph.set(relative(PACKAGE_ROOT, file), targets);
    }
  }
  return graph;
}

const folderOf = (module: string) => module.split('/')[0]!;

describe('layout', () => {
  const graph = importGraph();

  it('knows every source folder', () => {
    const folders = readdirSync(PACKAGE_ROOT).filter((name) => statSync(join(PACKAGE_ROOT, name)).isDirectory() && sources(join(PACKAGE_ROOT, name)).length > 0);
    expect(folders.filter((f) => !['test', 'dist', 'node_modules', 'build'].includes(f) && !rankOf.has(f))).toEqual([]);
  });

  it('no folder imports a folder above or beside it', () => {
    const upward: string[] = [];
    for (const [module, targets] of graph) {
      for (const target of targets) {
        const from = folderOf(module);
        const to = folderOf(target);
        if (from !== to && !(rankOf.get(to)! < rankOf.get(from)!)) upward.push(`${module} -> ${target}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('has no import circles', () => {
    const circles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (module: string) => {
      state.set(module, 'open');
      stack.push(module);
      for (const target of graph.get(module) ?? []) {
        if (state.get(target) === 'open') circles.push([...stack.slice(stack.indexOf(target)), target].join(' -> '));
        else if (!state.has(target)) visit(target);
      }
      stack.pop();
      state.set(module, 'done');
    };
    for (const module of graph.keys()) if (!state.has(module)) visit(module);
    expect(circles).toEqual([]);
  });
});
