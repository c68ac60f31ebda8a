import { describe, expect, it } from 'vitest';
import { openSocketKeys, socketKey } from '../../agent/client-sockets.js';

// Lines as the kernel prints them (x86: addresses are little-endian words).
const PROC_NET_TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2383 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1589 1 0000000000000000 100 0 0 10 0
   1: 01004D0A:BC34 0B004D0A:0050 01 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 20 4 30 10 -1
   2: 01004D0A:BC35 0B004D0A:0050 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   3: 01004D0A:BC36 0B004D0A:1F90 07 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000
   4: 01004D0A:BC37 0B004D0A:0050 02 00000000:00000000 01:00000064 00000002     0        0 2002 1 0000000000000000
   5: 01004D0A:BC38 0B004D0A:0050 04 00000000:00000000 01:00000064 00000000     0        0 2003 1 0000000000000000
garbage line
`;

describe('client sockets (/proc/net/tcp)', () => {
  const client = (port: number) => ({ address: '10.77.0.1', port });
  const a = (port: number) => ({ address: '10.77.0.11', port });

  it('lists open connections by the client socket 4-tuple, without TIME_WAIT and CLOSE', () => {
    const open = openSocketKeys(PROC_NET_TCP, true);
    expect(open.has(socketKey(client(0xbc34), a(80)))).toBe(true); // ESTABLISHED
    expect(open.has(socketKey(client(0xbc37), a(80)))).toBe(true); // SYN_SENT: the handshake is on its way
    expect(open.has(socketKey(client(0xbc38), a(80)))).toBe(true); // FIN_WAIT1: still delivering
    expect(open.has(socketKey(client(0xbc35), a(80)))).toBe(false); // TIME_WAIT
    expect(open.has(socketKey(client(0xbc36), a(8080)))).toBe(false); // CLOSE
    expect(open.has(socketKey({ address: '127.0.0.1', port: 9091 }, { address: '0.0.0.0', port: 0 }))).toBe(true); // a listener is harmless
    expect(open.size).toBe(4);
  });

  it('reads addresses in the byte order of a big-endian kernel too', () => {
    const open = openSocketKeys('   1: 0A4D0001:BC34 0A4D000B:0050 01 0 0 0 0 0 0\n', false);
    expect([...open]).toEqual([socketKey(client(0xbc34), a(80))]);
  });
});
