/*
 * `wedge demo`: the whole story on the built-in defaults, driven only through the public lab
 * contract (`wedge lab ...`): a lab cluster, a client download with a progress bar, the serving
 * server crashes mid-stream, another replica resumes it, the sha256 is checked and a timeline of
 * bytes received over time is written as SVG.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { PACKAGE_ROOT } from '../config/package.js';
import { WedgeError } from '../errors/codes.js';
import { timelineSvg, type TimelineMark, type TimelinePoint } from './timeline-svg.js';

const run = promisify(execFile);
const WEDGE = join(PACKAGE_ROOT, 'bin', 'wedge');

interface DemoFlags {
  servers: string;
  origin: string;
  sizeMib: string;
  rate: string;
  crash: boolean;
  crashAt: string;
  out: string;
}

interface LabInfo {
  client: string;
  servers: Array<{ name: string; service: string }>;
  files: Array<{ path: string; bytes: number; sha256: string }>;
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('lab cluster, a download through the wedge, the serving server crashes mid-stream, the download finishes intact')
    .option('--servers <n>', 'server hosts in the lab', '3')
    .option('--origin <kind>', 'builtin or apache', 'builtin')
    .option('--size-mib <n>', 'size of the downloaded file', '48')
    .option('--rate <rate>', 'each server\'s link speed (so the download lasts a few seconds)', '80mbit')
    .option('--crash-at <fraction>', 'crash the serving server when this fraction has arrived', '0.35')
    .option('--no-crash', 'only download through the wedge, crash nothing')
    .option('--out <dir>', 'where the downloaded file and timeline.svg go', 'demo-out')
    .action(async (flags: DemoFlags) => {
      const ok = await runDemo(flags);
      process.exitCode = ok ? 0 : 1;
    });
}

async function runDemo(flags: DemoFlags): Promise<boolean> {
  const lab = `demo${process.pid}`;
  const env = { ...process.env, WEDGE_LAB: lab };
  const out = resolve(flags.out);
  mkdirSync(out, { recursive: true });
  const say = (line: string) => process.stderr.write(line + '\n');
  say(`demo: building lab "${lab}" (${flags.servers} servers, ${flags.origin} origin, links at ${flags.rate})`);
  try {
    const up = await run(WEDGE, ['lab', 'up', '--servers', flags.servers, '--origin', flags.origin, '--file', `demo.bin:${flags.sizeMib}`,
      '--rate', flags.rate, '--json'], { env, maxBuffer: 1 << 20 });
    const info = JSON.parse(up.stdout) as LabInfo;
    const file = info.files[0]!;
    const server = info.servers[0]!;
    const target = join(out, 'demo.bin');
    // A file left by an earlier run would read as progress before curl truncates it.
    rmSync(target, { force: true });
    const url = `${server.service}${file.path}`;
    say(`demo: client downloads ${url} (${(file.bytes / 1048576).toFixed(0)} MiB) through ${server.name}'s wedge`);

    const started = performance.now();
    const curl = spawn(WEDGE, ['lab', 'exec', info.client, '--', 'curl', '-sS', '--max-time', '600', '-o', target, url], { env, stdio: ['ignore', 'inherit', 'inherit'] });
    const curlDone = new Promise<number>((resolveExit) => curl.on('close', (code) => resolveExit(code ?? 1)));
    const points: TimelinePoint[] = [];
    const marks: TimelineMark[] = [];
    let crashedAt: number | undefined;
    let crashBytes = 0;
    let finished = false;
    void curlDone.then(() => (finished = true));
    while (!finished) {
      await new Promise((r) => setTimeout(r, 50));
      const bytes = sizeOf(target);
      const seconds = (performance.now() - started) / 1000;
      points.push({ seconds, bytes });
      progress(bytes, file.bytes, seconds);
      if (flags.crash && crashedAt === undefined && bytes >= Number(flags.crashAt) * file.bytes) {
        crashedAt = seconds;
        crashBytes = bytes;
        marks.push({ seconds, label: `${server.name} crashes`, color: '#d62728' });
        await run(WEDGE, ['lab', 'crash', server.name], { env });
        process.stderr.write('\n');
        say(`demo: crashed ${server.name} at ${(bytes / 1048576).toFixed(1)} MiB`);
      } else if (crashedAt !== undefined && marks.length === 1 && bytes > crashBytes + 65536) {
        marks.push({ seconds, label: 'resumed', color: '#2ca02c' });
      }
    }
    const code = await curlDone;
    const bytes = sizeOf(target);
    points.push({ seconds: (performance.now() - started) / 1000, bytes });
    progress(bytes, file.bytes, points.at(-1)!.seconds);
    process.stderr.write('\n');
    const digest = await sha256File(target);
    writeFileSync(join(out, 'timeline.svg'), timelineSvg(`wedge demo: ${(file.bytes / 1048576).toFixed(0)} MiB download`, points, marks));
    const ok = code === 0 && digest === file.sha256;
    if (marks.length === 2) say(`demo: the client saw a stall of ${((marks[1]!.seconds - marks[0]!.seconds) * 1000).toFixed(0)} ms (including the link's queue)`);
    say(`demo: curl exit ${code}, received ${bytes} of ${file.bytes} bytes, sha256 ${digest === file.sha256 ? 'matches' : 'DOES NOT MATCH'}`);
    say(`demo: timeline written to ${join(out, 'timeline.svg')}`);
    say(ok ? 'demo: OK — the download survived' : 'demo: FAILED');
    return ok;
  } catch (err) {
    throw new WedgeError('WEDGE_ERR_LAB', `demo failed: ${(err as Error).message}`);
  } finally {
    await run(WEDGE, ['lab', 'down'], { env }).catch((err: Error) => say(`demo: lab down failed: ${err.message}`));
  }
}

function progress(bytes: number, total: number, seconds: number): void {
  const width = 40;
  const filled = Math.min(width, Math.round((bytes / total) * width));
  process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${((100 * bytes) / total).toFixed(0).padStart(3)}%  ${(bytes / 1048576).toFixed(1)} MiB  ${seconds.toFixed(1)} s`);
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
