/*
 * The files every replica serves. `--file NAME:MIB` specs are parsed here; each file is generated
 * once per lab (deterministic pseudo-random bytes: the AES-256-CTR keystream under a key derived
 * from the file name, so the same spec always yields the same bytes and sha256), then copied into
 * each server's document root with the same mtime (a whole second), because validators must match
 * across replicas: Apache's `FileETag MTime Size`, Last-Modified, and the built-in origin's cache.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, copyFile, mkdir, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { WedgeError } from '../errors/codes.js';
import type { FileState } from './state.js';

export interface FileSpec {
  name: string;
  bytes: number;
}

export const DEFAULT_FILES = ['big.bin:64'];
const MIB = 1024 * 1024;
const MAX_MIB = 4096;
const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

export function parseFileSpecs(specs: readonly string[]): FileSpec[] {
  const seen = new Set<string>();
  return specs.map((spec) => {
    const match = /^([^:]+):([0-9]+(?:\.[0-9]+)?)$/.exec(spec);
    const name = match?.[1];
    const mib = Number(match?.[2]);
    if (!match || name === undefined || !FILE_NAME.test(name) || !(mib >= 0 && mib <= MAX_MIB)) {
      throw new WedgeError(
        'WEDGE_ERR_CONFIG',
        `--file "${spec}" must be NAME:MIB, NAME of letters, digits, ".", "_", "-" (no "/"), MIB a size from 0 to ${MAX_MIB} (e.g. big.bin:64)`,
      );
    }
    if (seen.has(name)) throw new WedgeError('WEDGE_ERR_CONFIG', `--file "${name}" is given twice`);
    seen.add(name);
    return { name, bytes: Math.round(mib * MIB) };
  });
}

function* keystream(name: string, bytes: number): Generator<Buffer> {
  const key = createHash('sha256').update(`wedge-lab-file:${name}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(MIB);
  for (let left = bytes; left > 0; left -= MIB) {
    yield cipher.update(left >= MIB ? zeros : zeros.subarray(0, left));
  }
}

/** Writes the file's content to `path` and returns its sha256 (hex). */
async function generate(spec: FileSpec, path: string): Promise<string> {
  const hash = createHash('sha256');
  const chunks = Readable.from(
    (function* () {
      for (const chunk of keystream(spec.name, spec.bytes)) {
        hash.update(chunk);
        yield chunk;
      }
    })(),
  );
  await pipeline(chunks, createWriteStream(path, { mode: 0o644 }));
  return hash.digest('hex');
}

/** Generates every file once under `sourceDir`, all with the mtime `mtimeSeconds`. */
export async function generateFiles(specs: readonly FileSpec[], sourceDir: string, mtimeSeconds: number): Promise<FileState[]> {
  await mkdir(sourceDir, { recursive: true, mode: 0o755 });
  const files: FileState[] = [];
  for (const spec of specs) {
    const path = join(sourceDir, spec.name);
    const sha256 = await generate(spec, path);
    await utimes(path, mtimeSeconds, mtimeSeconds);
    files.push({ path: '/' + spec.name, bytes: spec.bytes, sha256 });
  }
  return files;
}

/** Copies the generated files into a server's document root, keeping size and mtime identical. */
export async function installFiles(files: readonly FileState[], sourceDir: string, docRoot: string): Promise<void> {
  await mkdir(docRoot, { recursive: true, mode: 0o755 });
  for (const file of files) {
    const from = join(sourceDir, file.path);
    const to = join(docRoot, file.path);
    const source = await stat(from);
    await copyFile(from, to);
    await chmod(to, 0o644);
    await utimes(to, source.atime, source.mtime);
    const copy = await stat(to);
    if (copy.size !== source.size || copy.mtimeMs !== source.mtimeMs) {
      throw new WedgeError('WEDGE_ERR_LAB', `copy of ${from} to ${to} does not keep size and mtime`);
    }
  }
}
