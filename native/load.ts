import { createRequire } from 'node:module';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../config/package.js';

/* The addon is built by node-gyp at install into <package>/build/Release. */
export function loadAddon<T>(): T {
  const require = createRequire(import.meta.url);
  return require(join(PACKAGE_ROOT, 'build', 'Release', 'wedge_native.node')) as T;
}
