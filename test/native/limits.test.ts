/*
 * The daemon raises its descriptor limit at start-up: a process started with a low soft limit
 * (as shells and some service managers hand out) ends with soft = hard, and can then hold more
 * sockets than the old soft limit allowed.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../config/package.js';

const run = promisify(execFile);
const LIMITS = join(PACKAGE_ROOT, 'dist', 'native', 'limits.js');

describe('open file limit', () => {
  it('raises a low soft limit to the hard one', async () => {
    const script = `
      import { raiseOpenFileLimit } from ${JSON.stringify(LIMITS)};
      import net from 'node:net';
      const limit = raiseOpenFileLimit();
      const sockets = Array.from({ length: 400 }, () => new net.Socket());
      const server = net.createServer().listen(0, '127.0.0.1', async () => {
        const { port } = server.address();
        const connected = await Promise.allSettled(sockets.map((s) => new Promise((ok, fail) => s.connect(port, '127.0.0.1', ok).once('error', fail))));
        console.log(JSON.stringify({ ...limit, connected: connected.filter((c) => c.status === 'fulfilled').length }));
        process.exit(0);
      });`;
    const { stdout } = await run('sh', ['-c', 'ulimit -S -n 256 && exec "$0" --input-type=module -e "$1"', process.execPath, script]);
    const result = JSON.parse(stdout) as { soft: number; hard: number; connected: number };
    expect(result.hard).toBeGreaterThan(256);
    expect(result.soft).toBe(result.hard);
    // 400 client sockets and their 400 accepted peers: impossible under the old soft limit of 256.
    expect(result.connected).toBe(400);
  });
});
