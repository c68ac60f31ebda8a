/*
 * The built-in origin: a plain HTTP/1.1 static file server (fastify + @fastify/static) with what
 * the wedge relies on when it resumes a download on another replica: byte ranges (206 with
 * Content-Range, 416 when unsatisfiable, `Accept-Ranges: bytes`), Last-Modified, keep-alive, and
 * STRONG ETags that are equal on every replica holding the same bytes (see etag.ts).
 *
 * @fastify/send only knows its own weak `W/"size-mtime"` tags, and evaluates If-Range,
 * If-Match and If-None-Match against them. So its tags are turned off and an onRequest hook
 * evaluates those preconditions against ours first: it answers 304/412 itself, and rewrites the
 * request for send (drops `Range` when If-Range does not match, so the full 200 is sent; drops
 * the precondition headers it has already decided). setHeaders then stamps our tag on the reply,
 * but only if send served exactly the file version the hook hashed (same size, mtime, ctime, inode):
 * a reply whose file changed in between carries no ETag rather than a wrong one.
 */
import { stat, realpath } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { resolve, sep } from 'node:path';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import fastifyStatic from '@fastify/static';
import { pino } from 'pino';
import { StrongEtags } from './etag.js';

export interface OriginOptions {
  /** The directory to serve. */
  root: string;
  /** Log requests (JSON on stderr). */
  log?: boolean;
}

interface Validated {
  path: string;
  stat: Stats;
  etag: string;
}

function listedTags(header: string): string[] {
  return header.split(',').map((tag) => tag.trim()).filter((tag) => tag.length > 0);
}

function stripWeak(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag;
}

/** If-Match uses the strong comparison: a weak tag never matches. */
function strongMatch(header: string, etag: string): boolean {
  return listedTags(header).some((tag) => tag === '*' || tag === etag);
}

/** If-None-Match uses the weak comparison. */
function weakMatch(header: string, etag: string): boolean {
  return listedTags(header).some((tag) => tag === '*' || stripWeak(tag) === stripWeak(etag));
}

/** If-Range holds a strong tag (exact match) or an HTTP date (exactly the Last-Modified). */
function ifRangeHolds(ifRange: string, etag: string, stat: Stats): boolean {
  const value = ifRange.trim();
  if (value.startsWith('"') || value.startsWith('W/')) return value === etag;
  const date = Date.parse(value);
  return !Number.isNaN(date) && date === Date.parse(stat.mtime.toUTCString());
}

/** The file a GET/HEAD names inside `root`, or null to leave the request to @fastify/static. */
async function targetFile(root: string, url: string): Promise<{ path: string; stat: Stats } | null> {
  let pathname: string;
  try {
    pathname = decodeURIComponent(url.split('?')[0] ?? '');
  } catch {
    return null;
  }
  if (pathname.split('/').some((segment) => segment.startsWith('.'))) return null;
  const path = resolve(root, '.' + pathname);
  if (!path.startsWith(root + sep)) return null;
  try {
    const info = await stat(path);
    return info.isFile() ? { path, stat: info } : null;
  } catch {
    return null;
  }
}

export async function createOrigin(options: OriginOptions): Promise<FastifyInstance> {
  const root = await realpath(options.root);
  const etags = new StrongEtags();
  const validated = new WeakMap<FastifyRequest, Validated>();
  const app = Fastify({
    // JSON logs on stderr (the lab sends them to the server's origin log file).
    loggerInstance: pino({ name: 'origin', level: options.log === false ? 'silent' : 'info' }, pino.destination(2)) as FastifyBaseLogger,
    keepAliveTimeout: 65_000,
    // A download may take long on a shaped link: never time a response out.
    requestTimeout: 0,
  });

  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') return;
    const target = await targetFile(root, request.url);
    if (target === null) return;
    const etag = await etags.get(target.path, target.stat);
    const headers = request.raw.headers;
    const lastModified = target.stat.mtime.toUTCString();

    const ifMatch = headers['if-match'];
    if (ifMatch !== undefined) {
      if (!strongMatch(ifMatch, etag)) return reply.code(412).header('etag', etag).send();
      delete headers['if-match'];
    }
    const ifNoneMatch = headers['if-none-match'];
    if (ifNoneMatch !== undefined) {
      if (weakMatch(ifNoneMatch, etag)) {
        return reply.code(304).header('etag', etag).header('last-modified', lastModified).send();
      }
      // A failed If-None-Match decides alone: If-Modified-Since is then ignored (RFC 9110 13.1.3).
      delete headers['if-none-match'];
      delete headers['if-modified-since'];
    }
    const ifRange = headers['if-range'];
    if (typeof ifRange === 'string') {
      if (!ifRangeHolds(ifRange, etag, target.stat)) delete headers.range;
      delete headers['if-range'];
    }
    validated.set(request, { path: target.path, stat: target.stat, etag });
  });

  await app.register(fastifyStatic, {
    root,
    etag: false,
    lastModified: true,
    acceptRanges: true,
    cacheControl: false,
    index: false,
    list: false,
    dotfiles: 'deny',
    setHeaders(reply: FastifyReply, path: string, served: Stats) {
      const check = validated.get(reply.request);
      if (check === undefined) return;
      const same =
        check.path === path &&
        check.stat.size === served.size &&
        check.stat.mtimeMs === served.mtimeMs &&
        check.stat.ctimeMs === served.ctimeMs &&
        check.stat.ino === served.ino;
      if (same) reply.header('etag', check.etag);
      else reply.log.warn({ path }, 'file changed while being served; reply sent without an ETag');
    },
  });
  return app;
}

/** Parses "ADDR:PORT" ("[v6]:PORT" for IPv6). */
export function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):([0-9]{1,5})$/.exec(text);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!match || host === undefined || !(port > 0 && port < 65536)) {
    throw new Error(`--listen "${text}" must be ADDR:PORT, e.g. 127.0.0.1:8080`);
  }
  return { host, port };
}
