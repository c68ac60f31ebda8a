/*
 * A passive ear on one support group: which members heartbeat there, heard for a while without
 * sending anything (so it never counts as a member). For `wedge check`, which then asks each
 * peer's clock. In: the cluster key, the group, the cluster interface's address. Out: the
 * addresses whose authentic heartbeats arrived, `self` excluded.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Inbox } from './channel.js';
import type { KeyRing } from './crypto.js';
import type { SupportGroup } from './groups.js';
import { MulticastTransport } from './transport.js';

export async function heartbeatsHeard(options: { ring: KeyRing; self: string; group: SupportGroup; interfaceAddress: string; listenMs: number }): Promise<string[]> {
  const inbox = new Inbox({ ring: options.ring, self: options.self });
  const transport = new MulticastTransport({ group: options.group.address, port: options.group.port, interfaceAddress: options.interfaceAddress });
  const heard = new Set<string>();
  transport.on('message', (datagram) => {
    const message = inbox.receive(datagram);
    if (message?.kind === 'heartbeat' && message.sender !== options.self) heard.add(message.sender);
  });
  transport.on('error', () => undefined);
  await transport.start();
  try {
    await sleep(options.listenMs);
  } finally {
    await transport.stop();
  }
  return [...heard];
}
