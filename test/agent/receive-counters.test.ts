import { describe, expect, it } from 'vitest';
import { socketKey } from '../../agent/client-sockets.js';
import { parseReceiveState } from '../../agent/receive-counters.js';

// `ss -4tinH state established ...` prints no state column; without a state filter it does.
const SS = `0      0      10.77.0.1:48180 10.77.0.11:80
\t cubic wscale:7,7 rto:204 rtt:0.05/0.02 mss:1448 bytes_acked:79 bytes_received:123456 segs_out:10 segs_in:90 send 2Gbps
65536  0      10.77.0.1:48182 10.77.0.11:80
\t cubic wscale:7,7 rto:204 rtt:0.05/0.02 mss:1448 bytes_acked:1 segs_out:1
ESTAB 0 0 10.77.0.1:48184 10.77.0.12:8080
\t bbr bytes_received:42 bytes_acked:1
`;

describe('received bytes (ss -tinH)', () => {
  it('reads bytes_received and Recv-Q per client socket 4-tuple; a socket without bytes_received has received nothing', () => {
    const counts = parseReceiveState(SS);
    const key = (port: number, server: string, serverPort: number) => socketKey({ address: '10.77.0.1', port }, { address: server, port: serverPort });
    expect(counts.get(key(48180, '10.77.0.11', 80))).toEqual({ received: 123456, queued: 0 });
    expect(counts.get(key(48182, '10.77.0.11', 80))).toEqual({ received: 0, queued: 65536 });
    expect(counts.get(key(48184, '10.77.0.12', 8080))).toEqual({ received: 42, queued: 0 });
    expect(counts.size).toBe(3);
  });

  it('ignores what it does not understand', () => {
    expect(parseReceiveState('\n\t bytes_received:5\nnonsense\n\t bytes_received:7\n').size).toBe(0);
  });
});
