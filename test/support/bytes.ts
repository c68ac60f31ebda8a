/*
 * "Same bytes as the file": bytes in hand (a Buffer) or a file on this filesystem, against a lab
 * file's advertised size and sha256 or against other bytes. One vitest assertion, byte-exact
 * (length and sha256 together), whose message names both sides.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { expect } from 'vitest';

/** What a lab (`lab up --json` files) or a generator advertises of a file. */
export interface Advertised {
  path?: string;
  bytes: number;
  sha256: string;
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** GOT (a path, or bytes named WHAT) holds exactly the bytes of WANT (an advertised file, or bytes). */
export async function expectSameBytes(got: string | Buffer, want: Advertised | Buffer, what?: string): Promise<void> {
  const data = typeof got === 'string' ? await readFile(got) : got;
  const expected = Buffer.isBuffer(want) ? { bytes: want.length, sha256: sha256(want) } : { bytes: want.bytes, sha256: want.sha256 };
  const gotName = what ?? (typeof got === 'string' ? got : `the ${data.length} bytes received`);
  const wantName = Buffer.isBuffer(want) ? `the ${want.length} bytes expected` : (want.path ?? 'the advertised file');
  expect({ bytes: data.length, sha256: sha256(data) }, `${gotName} vs ${wantName}`).toEqual(expected);
}
