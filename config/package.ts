/*
 * Where the project lives on disk: the package root, found by walking up from this module to the
 * package.json named "wedge" (so it holds from dist/ and from source, as in tests), and what lives
 * there: the native addon's build, the compiled CLI that the lab runs inside its hosts, and bin/.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'wedge') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the wedge package root above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

export const PACKAGE_ROOT = packageRoot();
export const PACKAGE_VERSION = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
/* `node <this> serve|origin|agent ...`: what the lab starts inside its hosts. */
export const COMPILED_CLI = join(PACKAGE_ROOT, 'dist', 'cli', 'cli.js');
export const BIN_DIR = join(PACKAGE_ROOT, 'bin');
