/*
 * Hostile soft-state traffic against real daemons in the lab: a host on the cluster segment
 * sends garbage, truncated datagrams and a replay of a genuine datagram to the group. Every one is
 * dropped and counted by reason in the target's /metrics, and the group keeps working: peers stay
 * alive and a download through the wedge is still byte-exact.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, type UpDocument } from '../support/lab.js';

const ATTACK = `import socket, struct, sys, os
group = ("239.77.0.1", 7077)
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
rx.bind(("", 7077))
rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("4s4s", socket.inet_aton(group[0]), socket.inet_aton(sys.argv[1])))
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[1]))
while True:
    data, source = rx.recvfrom(65535)
    if source[0] == sys.argv[2]:
        break
tx.sendto(data, group)                     # a replay of s3's genuine datagram
tx.sendto(data[:len(data) // 2], group)    # truncated
for _ in range(20):
    tx.sendto(os.urandom(200), group)      # garbage
print(len(data))
`;

describe.skipIf(!IS_ROOT)('hostile soft-state datagrams in the lab', () => {
  const lab = new Lab('hostile');
  let up: UpDocument;

  beforeAll(async () => {
    up = await lab.up({ servers: 3, files: ['f.bin:2'], clientRmem: null });
  });
  afterAll(async () => {
    await lab.down();
  });


  it('drops and counts replayed, truncated and garbage datagrams; the group and the relay keep working', async () => {
    const [s1, s2, s3] = up.servers;
    const before = await lab.metrics('s1');
    const sent = await lab.exec('s2', ['python3', '-c', ATTACK, s2!.address, s3!.address]);
    expect(sent.code).toBe(0);
    await new Promise((r) => setTimeout(r, 300));
    const after = await lab.metrics('s1');
    const grew = (reason: string) => after.value('wedge_softstate_rejected_total', { reason }) - before.value('wedge_softstate_rejected_total', { reason });
    expect(grew('replay')).toBeGreaterThanOrEqual(1);
    const hostileReasons = ['truncated', 'bad-magic', 'bad-version', 'bad-sender', 'unknown-key', 'auth-failed', 'garbled'];
    const dropped = hostileReasons.reduce((sum, reason) => sum + grew(reason), 0);
    expect(dropped).toBeGreaterThanOrEqual(21);
    expect(after.value('wedge_softstate_peers', { state: 'alive' })).toBe(2);
    const body = await lab.execOk('client', ['curl', '-fsS', `${s1!.service}/f.bin`]);
    await expectSameBytes(body.stdout, up.files[0]!);
  });

  it('an erroneous death report is corrected: the group sees the peer alive again', async () => {
    await lab.declareDead('s3');
    await new Promise((r) => setTimeout(r, 1000));
    for (const server of ['s1', 's2']) {
      expect((await lab.metrics(server)).value('wedge_softstate_peers', { state: 'alive' }), server).toBe(2);
    }
  });
});
