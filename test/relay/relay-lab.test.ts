/*
 * The relay in the lab, with both origins: real curl on the client host downloads several files
 * through the wedge, on one keep-alive connection and on several at once, and each sha256
 * matches; malformed requests get 400 and the wedge keeps serving; each server's status shows
 * the exchanges of a connection with their exact offsets.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { CLI, IS_ROOT, sha256, uniqueLab, wedge, wedgeOk } from '../lab/lab-cli.js';

interface UpDocument {
  servers: { name: string; service: string }[];
  files: { path: string; bytes: number; sha256: string }[];
}

const origins = ['builtin', ...(existsSync('/usr/sbin/apache2') ? ['apache'] : [])];

describe.skipIf(!IS_ROOT).each(origins)('relay in the lab, %s origin', (origin) => {
  const lab = uniqueLab(`relay-${origin}`);
  let up: UpDocument;
  const exec = (host: string, ...command: string[]) => wedge(['lab', 'exec', host, '--lab', lab, '--', ...command]);

  beforeAll(async () => {
    const result = await wedgeOk(['lab', 'up', '--json', '--lab', lab, '--origin', origin, '--servers', '2',
      '--file', 'a.bin:1', '--file', 'b.bin:3', '--file', 'c.bin:0.01']);
    up = JSON.parse(result.stdout.toString()) as UpDocument;
  });
  afterAll(async () => {
    await wedge(['lab', 'down', '--lab', lab]);
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
      expect(sha256(result.stdout.subarray(at, at + file.bytes)), file.path).toBe(file.sha256);
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
    const script = `for i in 1 2 3 4 5 6; do curl -fsS ${service}${file.path} | sha256sum & done; wait`;
    const result = await exec('client', 'sh', '-c', script);
    expect(result.code).toBe(0);
    const sums = result.stdout.toString().trim().split('\n').map((l) => l.split(' ')[0]);
    expect(sums).toEqual(Array(6).fill(file.sha256));
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
    expect(sha256(after.stdout)).toBe(file.sha256);
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
    const client = spawn(process.execPath, [CLI, 'lab', 'exec', 'client', '--lab', lab, '--', 'python3', '-c', python], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      const [line] = (await once(createInterface({ input: client.stdout! }), 'line')) as [string];
      const port = Number(line);
      const status = JSON.parse((await wedgeOk(['lab', 'exec', 's1', '--lab', lab, '--', 'wedge', 'status', '--json'])).stdout.toString()) as {
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
      client.stdin!.end();
    }
  });
});
