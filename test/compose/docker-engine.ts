/*
 * A Docker engine for the compose test: the one already running, or a dockerd this test starts
 * (Debian's docker.io, installed by scripts/system-deps.sh) and stops again by its PID. In: nothing;
 * out: a handle whose stop() ends only what it started, and `docker`/`docker-compose` runners.
 */
import { execFile, spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command; never rejects on a non-zero exit (the caller reads code and stderr). */
export function run(command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { env: options.env, cwd: options.cwd, timeout: options.timeoutMs ?? 600_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr: `${stderr}${err !== null && code === -1 ? String(err) : ''}` });
    });
  });
}

/** Runs a command and fails with what it printed unless it exits 0. */
export async function runOk(command: string, args: readonly string[], options: Parameters<typeof run>[2] = {}): Promise<string> {
  const result = await run(command, args, options);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.code}:\n${result.stderr}${result.stdout}`);
  return result.stdout;
}

async function engineAnswers(): Promise<boolean> {
  return (await run('docker', ['info', '--format', '{{.ServerVersion}}'], { timeoutMs: 20_000 })).code === 0;
}

/** Makes sure a Docker engine answers; stop() ends it only if this call started it. */
export async function dockerEngine(logFile: string): Promise<{ stop(): Promise<void> }> {
  if (await engineAnswers()) return { stop: async () => {} };
  const log = openSync(logFile, 'a');
  const dockerd = spawn('dockerd', [], { stdio: ['ignore', log, log], detached: true });
  const exited = new Promise<void>((resolve) => dockerd.once('exit', () => resolve()));
  const deadline = Date.now() + 60_000;
  while (!(await engineAnswers())) {
    if (dockerd.exitCode !== null || Date.now() > deadline) {
      dockerd.kill('SIGKILL');
      throw new Error(`dockerd did not start (exit ${dockerd.exitCode}); see ${logFile}`);
    }
    await sleep(500);
  }
  return {
    async stop() {
      if (dockerd.exitCode === null) dockerd.kill('SIGTERM');
      await Promise.race([exited, sleep(20_000)]);
      if (dockerd.exitCode === null) dockerd.kill('SIGKILL');
    },
  };
}
