import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/* The addon is built by node-gyp at install into <package>/build/Release; find the package root
 * from here whether we run from source (vitest) or from dist/. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('wedge: package.json not found above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
}

export const PACKAGE_ROOT = packageRoot();

export function loadAddon<T>(): T {
  const require = createRequire(import.meta.url);
  return require(join(PACKAGE_ROOT, 'build', 'Release', 'wedge_native.node')) as T;
}
