/* Sample soft-state data shared by the soft-state tests. */
import { connectionId, type ConnectionRecord } from '../../softstate/records.js';

export function sampleRecord(n: number, overrides: Partial<ConnectionRecord> = {}, streamMapBytes = 40): ConnectionRecord {
  const client = { address: `10.1.${(n >> 8) & 255}.${n & 255}`, port: 40000 + (n % 20000) };
  const service = { address: '10.0.0.80', port: 80 };
  return {
    id: connectionId(client, service),
    client,
    service,
    owner: '10.99.0.1',
    migration: 0,
    transport: {
      sendSeq: 1_000_000 + n,
      recvSeq: 2_000_000 + n,
      mss: 1448,
      sndWscale: 7,
      rcvWscale: 7,
      sack: true,
      timestamps: true,
      tsClock: 123456,
      tsReadAt: 1_700_000_000_000,
      sndWnd: 65535,
      rcvWnd: 65535,
    },
    migrate: { token: Buffer.alloc(8, n & 255), key: Buffer.alloc(32, 7), original: service },
    streamMap: {
      exchanges: [
        {
          request: 'GET /big.bin HTTP/1.1',
          headerBytes: 'x'.repeat(streamMapBytes),
          requestAt: 0,
          responseAt: 0,
          bodyLength: 4_000_000,
          etag: '"abc"',
        },
      ],
    },
    updatedAt: 1_700_000_000_000 + n,
    ...overrides,
  };
}
