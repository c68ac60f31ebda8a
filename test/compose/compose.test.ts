/*
 * The compose replica cluster of examples/compose, for real: a local base image from debootstrap
 * (no registry reachable here), the project image built on it, `docker-compose up`, a rate-limited
 * curl download from the client container, `docker kill` of the serving replica mid-download, the
 * download byte-exact, then `down` leaves no container and no network behind. Needs root.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../config/package.js';
import { sha256 } from '../support/bytes.js';
import { IS_ROOT } from '../support/lab.js';
import { dockerEngine, run, runOk } from './docker-engine.js';

const COMPOSE_DIR = join(PACKAGE_ROOT, 'examples', 'compose');
const BASE_IMAGE = 'wedge-base:bookworm';
const FILE_BYTES = 48 * 1024 * 1024;
const RATE = '4M';

describe.skipIf(!IS_ROOT)('docker compose replica cluster', () => {
  const project = `wedgetest${process.pid}`;
  const bridge = `wct${process.pid % 100_000}`;
  let work: string;
  let env: NodeJS.ProcessEnv;
  let engine: { stop(): Promise<void> } | undefined;
  let fileSha256: string;

  const compose = (args: readonly string[]) => runOk('docker-compose', ['-p', project, ...args], { cwd: COMPOSE_DIR, env });

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'wedge-compose-'));
    engine = await dockerEngine(join(work, 'dockerd.log'));
    await runOk('bash', [join(PACKAGE_ROOT, 'deploy', 'docker', 'base-image.sh'), BASE_IMAGE]);

    await writeFile(join(work, 'cluster.key'), randomBytes(32));
    await chmod(join(work, 'cluster.key'), 0o600);
    const data = randomBytes(FILE_BYTES);
    fileSha256 = sha256(data);
    await runOk('mkdir', ['-p', join(work, 'data')]);
    await writeFile(join(work, 'data', 'big.bin'), data);
    // A fixed mtime: every replica's origin derives the same strong ETag from it.
    await utimes(join(work, 'data', 'big.bin'), 1_700_000_000, 1_700_000_000);

    env = {
      ...process.env,
      WEDGE_BASE_IMAGE: BASE_IMAGE,
      WEDGE_IMAGE: `wedge:test-${process.pid}`,
      WEDGE_COMPOSE_BRIDGE: bridge,
      WEDGE_COMPOSE_KEY: join(work, 'cluster.key'),
      WEDGE_COMPOSE_DATA: join(work, 'data'),
    };
    await compose(['build']);
    await compose(['up', '-d']);
    // No IGMP querier on a docker bridge: snooping would stop the soft state after ~4 minutes.
    await writeFile(`/sys/class/net/${bridge}/bridge/multicast_snooping`, '0');
    await untilHealthy(['s1', 's2', 's3']);
  }, 900_000);

  afterAll(async () => {
    if (env !== undefined) await run('docker-compose', ['-p', project, 'down', '-v', '--remove-orphans', '--rmi', 'local'], { cwd: COMPOSE_DIR, env });
    if (env !== undefined) await run('docker', ['image', 'rm', String(env.WEDGE_IMAGE)]);
    await engine?.stop();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  }, 300_000);

  async function containerOf(service: string): Promise<string> {
    return (await compose(['ps', '-q', service])).trim();
  }

  async function untilHealthy(services: string[]): Promise<void> {
    const deadline = Date.now() + 120_000;
    for (const service of services) {
      const id = await containerOf(service);
      for (;;) {
        const health = (await runOk('docker', ['inspect', '--format', '{{.State.Health.Status}}', id])).trim();
        if (health === 'healthy') break;
        if (Date.now() > deadline) throw new Error(`${service} is ${health}:\n${(await run('docker', ['logs', '--tail', '30', id])).stderr}`);
        await sleep(500);
      }
    }
  }

  async function bytesReceived(client: string): Promise<number> {
    const result = await run('docker', ['exec', client, 'stat', '-c', '%s', '/tmp/big.bin']);
    return result.code === 0 ? Number(result.stdout.trim()) : 0;
  }

  it('finishes a download byte-exact after docker kill of the serving replica', async () => {
    const client = await containerOf('client');
    const download = run('docker', ['exec', client, 'curl', '-sS', '--fail', '--limit-rate', RATE, '-o', '/tmp/big.bin', 'http://10.79.0.101/big.bin']);

    const deadline = Date.now() + 60_000;
    while ((await bytesReceived(client)) < 4 * 1024 * 1024) {
      if (Date.now() > deadline) throw new Error('the download did not start');
      await sleep(200);
    }
    await runOk('docker', ['kill', await containerOf('s1')]);
    const atKill = await bytesReceived(client);
    expect(atKill, 'the kill came mid-download').toBeLessThan(FILE_BYTES);

    const curl = await download;
    expect(curl.stderr).toBe('');
    expect(curl.code).toBe(0);
    const got = (await runOk('docker', ['exec', client, 'sha256sum', '/tmp/big.bin'])).split(' ')[0];
    expect({ bytes: await bytesReceived(client), sha256: got }).toEqual({ bytes: FILE_BYTES, sha256: fileSha256 });

    const adopters = await Promise.all(['s2', 's3'].map(async (service) => {
      const logs = await run('docker', ['logs', await containerOf(service)]);
      return logs.stdout + logs.stderr;
    }));
    const resumed = adopters.join('\n').split('\n').filter((line) => line.includes('"msg":"connection resumed"'));
    expect(resumed, 'one peer resumed the connection').toHaveLength(1);
  });

  it('leaves no container and no network after down', async () => {
    await compose(['down', '-v', '--remove-orphans']);
    const label = `label=com.docker.compose.project=${project}`;
    expect((await runOk('docker', ['ps', '-aq', '--filter', label])).trim()).toBe('');
    expect((await runOk('docker', ['network', 'ls', '-q', '--filter', label])).trim()).toBe('');
  });
});
