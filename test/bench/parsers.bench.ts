/*
 * Parser throughput on one core: requests parsed per second for a typical ~400-byte GET (one
 * push per request, as it arrives from a socket), the same request split into 10 pushes,
 * pipelined in 16 KiB pushes, response heads per second, and StreamMap record + locate cost.
 * Each figure is the median of several timed rounds after a warm-up.
 */
import { performance } from 'node:perf_hooks';
import { RequestParser } from '../../parsers/http-request.js';
import { parseResponseHead } from '../../parsers/http-response.js';
import { StreamMap } from '../../stream-map/stream-map.js';
import { median, type BenchRow } from './report.js';

const ROUNDS = 7;

const GET = Buffer.from(
  'GET /media/videos/2025/launch-keynote-1080p.mp4?session=8f14e45fceea167a5a36dedd4bea2543 HTTP/1.1\r\n' +
    'Host: downloads.example.org\r\n' +
    'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n' +
    'Accept: */*\r\n' +
    'Accept-Language: en-US,en;q=0.5\r\n' +
    'Accept-Encoding: gzip, deflate, br\r\n' +
    'Referer: https://www.example.org/events/launch\r\n' +
    'Connection: keep-alive\r\n' +
    'Range: bytes=0-\r\n\r\n',
);

const RESPONSE = Buffer.from(
  'HTTP/1.1 200 OK\r\n' +
    'Server: nginx/1.24.0\r\n' +
    'Date: Wed, 02 Jul 2025 10:00:00 GMT\r\n' +
    'Content-Type: video/mp4\r\n' +
    'Content-Length: 734003200\r\n' +
    'Last-Modified: Mon, 30 Jun 2025 09:00:00 GMT\r\n' +
    'Connection: keep-alive\r\n' +
    'ETag: "6862510a-2bc00000"\r\n' +
    'Accept-Ranges: bytes\r\n\r\n',
);


/** Runs `work(iterations)` for rounds of about 200 ms; returns operations per second. */
function opsPerSecond(work: (iterations: number) => void, perRound = 20_000): number {
  work(perRound);
  const rates: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const started = performance.now();
    work(perRound);
    rates.push(perRound / ((performance.now() - started) / 1000));
  }
  return median(rates);
}

export default async function bench(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const note = `${GET.length}-byte GET`;

  const parser = new RequestParser();
  rows.push({
    suite: 'parsers',
    name: 'request: one push per request',
    value: opsPerSecond((n) => {
      for (let i = 0; i < n; i++) parser.push(GET);
    }, 100_000),
    unit: 'req/s',
    note,
  });

  const pieces = Array.from({ length: 10 }, (_, k) => GET.subarray((k * GET.length) / 10, ((k + 1) * GET.length) / 10));
  rows.push({
    suite: 'parsers',
    name: 'request: split into 10 pushes',
    value: opsPerSecond((n) => {
      for (let i = 0; i < n; i++) for (const piece of pieces) parser.push(piece);
    }, 50_000),
    unit: 'req/s',
    note,
  });

  const perChunk = Math.floor(16384 / GET.length);
  const pipelined = Buffer.concat(Array.from({ length: perChunk }, () => GET));
  rows.push({
    suite: 'parsers',
    name: `request: pipelined, ${perChunk} per 16 KiB push`,
    value: opsPerSecond((n) => {
      for (let i = 0; i < n; i += perChunk) parser.push(pipelined);
    }, 100_000),
    unit: 'req/s',
    note,
  });

  rows.push({
    suite: 'parsers',
    name: 'response head: parseResponseHead',
    value: opsPerSecond((n) => {
      for (let i = 0; i < n; i++) parseResponseHead(RESPONSE, 'GET');
    }, 100_000),
    unit: 'heads/s',
    note: `${RESPONSE.length}-byte 200 head`,
  });

  const head = parser.push(GET)[0]!;
  const response = parseResponseHead(RESPONSE, 'GET')!;
  if (head.type !== 'head') throw new Error('bench request did not parse');
  rows.push({
    suite: 'parsers',
    name: 'stream map: record an exchange + trim',
    value: opsPerSecond((n) => {
      const map = new StreamMap();
      let requestOffset = 0;
      let responseOffset = 0;
      for (let i = 0; i < n; i++) {
        map.beginRequest(requestOffset, head.head);
        requestOffset += GET.length;
        map.endRequest(requestOffset);
        map.beginResponse(responseOffset, response);
        responseOffset += response.headerLength + 734003200;
        map.endResponse(responseOffset);
        map.trim(responseOffset);
      }
    }, 100_000),
    unit: 'exch/s',
  });

  return rows;
}
