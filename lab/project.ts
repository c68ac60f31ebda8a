/*
 * Where the project lives on disk. The lab starts origins and wedges from the compiled CLI and
 * puts the project's `bin/` on PATH inside its hosts; both are found by walking up from this
 * module to the package.json named "wedge", so it works from `dist/lab/` and from `lab/` (tests).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cachedRoot: string | undefined;

export function projectRoot(): string {
  if (cachedRoot !== undefined) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'wedge') {
      cachedRoot = dir;
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the wedge project root above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

/** The compiled CLI entry: the lab runs `node <this> origin|serve ...` inside namespaces. */
export function compiledCli(): string {
  return join(projectRoot(), 'dist', 'cli', 'cli.js');
}

export function binDir(): string {
  return join(projectRoot(), 'bin');
}
