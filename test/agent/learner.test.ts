import { describe, expect, it } from 'vitest';
import { bindingFromSynAck } from '../../agent/learner.js';

describe('bindingFromSynAck', () => {
  const synAck = {
    sourceAddress: '10.77.0.11',
    sourcePort: 80,
    destinationAddress: '10.77.0.1',
    destinationPort: 48180,
    seq: 3292738223,
    ack: 4165293691,
    window: 65160,
    flags: 0x12,
    ifindex: 2,
    options: Buffer.alloc(0),
  };

  it('names the connection as the client socket sees it, with both ISNs', () => {
    expect(bindingFromSynAck(synAck)).toEqual({
      client: { address: '10.77.0.1', port: 48180 },
      server: { address: '10.77.0.11', port: 80 },
      clientIsn: 4165293690,
      serverIsn: 3292738223,
    });
  });

  it('wraps the client ISN around 2^32', () => {
    expect(bindingFromSynAck({ ...synAck, ack: 0 }).clientIsn).toBe(0xffffffff);
  });
});
