/* One nftables script applied atomically (`nft -f -`); a failure is a WEDGE_ERR_TAKEOVER that
 * says what nft said. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { WedgeError } from '../errors/codes.js';

const run = promisify(execFile);

export async function nft(script: string): Promise<void> {
  try {
    const child = run('nft', ['-f', '-']);
    child.child.stdin!.end(script);
    await child;
  } catch (err) {
    throw new WedgeError('WEDGE_ERR_TAKEOVER', `nft failed (${(err as Error).message.trim()}); is nftables installed?`);
  }
}
