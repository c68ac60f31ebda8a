/*
 * Helpers for the lab tests: run the real `wedge` CLI (compiled, in dist/) as a separate process,
 * exactly as users and scripts do, and look at what the lab left on the machine.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = join(ROOT, 'dist', 'cli', 'cli.js');
export const IS_ROOT = process.getuid?.() === 0;

export interface Result {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** Runs `wedge ARGS...`; never rejects on a non-zero exit. */
export function wedge(args: readonly string[], timeoutMs = 120_000): Promise<Result> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024, timeout: timeoutMs },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
        if (code === -1) reject(err);
        else resolve({ code, stdout, stderr: stderr.toString('utf8') });
      },
    );
  });
}

/** Runs `wedge ARGS...` and fails with its stderr unless it exits 0. */
export async function wedgeOk(args: readonly string[]): Promise<Result> {
  const result = await wedge(args);
  if (result.code !== 0) throw new Error(`wedge ${args.join(' ')} exited ${result.code}:\n${result.stderr}`);
  return result;
}

export function uniqueLab(tag: string): string {
  return `t${process.pid}-${tag}`;
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function labNamespaces(lab: string): Promise<string[]> {
  const names = await readdir('/run/netns').catch(() => [] as string[]);
  return names.filter((name) => name.startsWith(`wl_${lab}_`));
}

/** PIDs of live (non-zombie) processes whose command line contains `text`. */
export async function processesMentioning(text: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.replaceAll('\0', ' ').includes(text)) found.push(Number(entry));
  }
  return found;
}

/**
 * Starts tcpdump on `iface` in namespace `ns` for TCP segments from `source` carrying FIN or RST.
 * `stop()` ends it and returns the lines it printed (one per such segment).
 */
export async function watchFinRst(ns: string, iface: string, source: string): Promise<{ stop(): Promise<string[]> }> {
  const filter = `tcp and src host ${source} and (tcp[tcpflags] & (tcp-fin|tcp-rst) != 0)`;
  const tcpdump = spawn('ip', ['netns', 'exec', ns, 'tcpdump', '-i', iface, '-n', '-l', '-U', filter], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  tcpdump.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<void>((resolve) => tcpdump.on('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let err = '';
    tcpdump.stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString();
      if (err.includes('listening on')) resolve();
    });
    tcpdump.on('exit', (code) => reject(new Error(`tcpdump exited ${code}: ${err}`)));
  });
  return {
    async stop() {
      if (tcpdump.exitCode === null && tcpdump.signalCode === null) tcpdump.kill('SIGINT');
      await exited;
      return out.split('\n').filter((line) => line.trim().length > 0);
    },
  };
}
