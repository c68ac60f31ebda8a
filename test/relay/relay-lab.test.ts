/*
 * The relay in the lab, with both origins: real curl on the client host downloads several files
 * through the wedge, on one keep-alive connection and on several at once, and each sha256
 * matches; malformed requests get 400 and the wedge keeps serving; each server's status shows
 * the exchanges of a connection with their exact offsets.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSameBytes } from '../support/bytes.js';
import { IS_ROOT, Lab, until, type UpDocument } from '../support/lab.js';

const origins = ['builtin' as const, ...(existsSync('/usr/sbin/apache2') ? ['apache' as const] : [])];

describe.skipIf(!IS_ROOT).each(origins)('relay in the lab, %s origin', (origin) => {
  const lab = new Lab(`relay-${origin}`);
  let up: UpDocument;
  const exec = (host: string, ...command: string[]) => lab.exec(host, command);

  beforeAll(async () => {
    up = await lab.up({ servers: 2, origin, files: ['a.bin:1', 'b.bin:3', 'c.bin:0.01'], clientRmem: null });
  });
  afterAll(async () => {
    await lab.down();
  });

  it('downloads every file on one keep-alive connection, byte-exact', async () => {
    const service = up.servers[0]!.service;
    const urls = up.files.map((f) => `${service}${f.path}`);
    // One curl, several URLs: it reuses the connection; each body goes to stdout in turn.
    const result = await exec('client', 'curl', '-fsS', '-w', '%{num_connects}\\n', ...urls);
    expect(result.code).toBe(0);
    let at = 0;
    const connects: string[] = [];
    for (const file of up.files) {
      await expectSameBytes(result.stdout.subarray(at, at + file.bytes), file, file.path);
      at += file.bytes;
      const line = result.stdout.subarray(at, result.stdout.indexOf('\n', at) + 1).toString();
      connects.push(line.trim());
      at += line.length;
    }
    expect(connects).toEqual(['1', '0', '0']);
  });

  it('downloads on several connections at once, byte-exact', async () => {
    const service = up.servers[1]!.service;
    const file = up.files[1]!;
    const outs = [1, 2, 3, 4, 5, 6].map((i) => lab.out(`parallel-${i}`));
    const script = `for out in ${outs.join(' ')}; do curl -fsS -o $out ${service}${file.path} & done; wait`;
    const result = await exec('client', 'sh', '-c', script);
    expect(result.code).toBe(0);
    for (const out of outs) await expectSameBytes(out, file);
  });

  it('answers a smuggling attempt with 400 and keeps serving', async () => {
    const host = new URL(up.servers[0]!.service).hostname;
    const python = `import socket
s = socket.create_connection(("${host}", 80))
s.sendall(b"POST / HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 4\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n0\\r\\n\\r\\n")
print(s.recv(4096).decode("latin1"))`;
    const reply = await exec('client', 'python3', '-c', python);
    expect(reply.stdout.toString()).toMatch(/^HTTP\/1\.1 400 Bad Request[^]*WEDGE_ERR_HTTP_SMUGGLING/);
    const file = up.files[2]!;
    const after = await exec('client', 'curl', '-fsS', `${up.servers[0]!.service}${file.path}`);
    await expectSameBytes(after.stdout, file);
  });

  it("shows a live connection's stream map in `wedge status --json` on its server", async () => {
    const host = new URL(up.servers[0]!.service).hostname;
    // Two requests on one connection; print its port, then hold it open until stdin closes.
    const python = `import socket, sys
s = socket.create_connection(("${host}", 80))
for path in ("/c.bin", "/c.bin"):
    s.sendall(("GET %s HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" % path).encode())
    need, got = ${up.files[2]!.bytes}, b""
    while b"\\r\\n\\r\\n" not in got or len(got.split(b"\\r\\n\\r\\n", 1)[1]) < need:
        got += s.recv(65536)
print(s.getsockname()[1], flush=True)
sys.stdin.read()`;
    const client = lab.background('client', ['python3', '-c', python], { stdin: true });
    try {
      await until('the client to print its port', async () => client.stdout.includes('\n') || !client.running, 60_000);
      const port = Number(client.stdout.split('\n')[0]);
      const status = JSON.parse((await lab.execOk('s1', ['wedge', 'status', '--json'])).stdout.toString()) as {
        connections: Array<{ client: { port: number }; requests: number; streamMap: { exchanges: Array<Record<string, number>> } }>;
      };
      const connection = status.connections.find((c) => c.client.port === port);
      expect(connection?.requests).toBe(2);
      const [first, second] = connection!.streamMap.exchanges;
      expect(first!.requestStart).toBe(0);
      expect(second!.requestStart).toBe(first!.requestEnd);
      expect(first!.bodyLength).toBe(up.files[2]!.bytes);
      expect(second!.responseStart).toBe(first!.responseStart! + first!.headerLength! + first!.bodyLength!);
    } finally {
      client.end();
    }
  });
});
