/*
 * Strong entity tags for the built-in origin: `"sha256-<hex of the content's SHA-256>"`. Two
 * replicas holding the same bytes give the same tag whatever their inode or mtime, which is what
 * the wedge needs to resume a download on another server with `If-Range`. Hashing a large file
 * takes a while, so each digest is computed once and cached by path, keyed by size, mtime, ctime
 * and inode: a file replaced or rewritten in place gets a new stat and is hashed again. ctime is
 * what catches a rewrite in place that keeps size and mtime (`touch -d` or utimes after writing):
 * every write and every utimes moves it, and no user can set it back.
 */
import { createHash } from 'node:crypto';
import { createReadStream, type Stats } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { LRUCache } from 'lru-cache';

interface Entry {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  etag: Promise<string>;
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return `"sha256-${hash.digest('hex')}"`;
}

function sameFile(entry: Entry, stat: Stats): boolean {
  return entry.size === stat.size && entry.mtimeMs === stat.mtimeMs && entry.ctimeMs === stat.ctimeMs && entry.ino === stat.ino;
}

export class StrongEtags {
  private readonly cache = new LRUCache<string, Entry>({ max: 4096 });

  /** The tag for `path` as described by `stat` (the caller's own stat of it). */
  async get(path: string, stat: Stats): Promise<string> {
    const cached = this.cache.get(path);
    if (cached && sameFile(cached, stat)) return cached.etag;
    const entry: Entry = { size: stat.size, mtimeMs: stat.mtimeMs, ctimeMs: stat.ctimeMs, ino: stat.ino, etag: hashFile(path) };
    this.cache.set(path, entry);
    try {
      return await entry.etag;
    } catch (err) {
      this.cache.delete(path);
      throw err;
    }
  }
}
