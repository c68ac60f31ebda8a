import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAgentFlags, type AgentFlags } from '../../agent/agent-config.js';
import { serviceKeyId } from '../../migrate/negotiation.js';

describe('wedge agent flags', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wedge-agent-config-'));
  const service = generateKeyPairSync('ed25519');
  const pub = join(dir, 'service.pub');
  writeFileSync(pub, service.publicKey.export({ type: 'spki', format: 'pem' }));
  const priv = join(dir, 'service.key');
  writeFileSync(priv, service.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(join(dir, 'garbage.pub'), '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const flags = (over: Partial<AgentFlags> = {}): AgentFlags => ({
    address: '127.0.0.1',
    serviceKey: [pub],
    ports: '80',
    metrics: '127.0.0.1:9191',
    slowFraction: '0.3',
    slowSamples: '4',
    orphanTimeout: '5000',
    logLevel: 'info',
    ...over,
  });

  it('turns the defaults into a configuration', () => {
    const config = parseAgentFlags(flags({ ports: '80, 8080,80' }));
    expect(config).toMatchObject({ address: '127.0.0.1', ports: [80, 8080], metrics: { host: '127.0.0.1', port: 9191 }, slowFraction: 0.3, slowSamples: 4, orphanTimeoutMs: 5000 });
    expect([...config.trusted.keys()]).toEqual([serviceKeyId(service.publicKey).toString('hex')]);
  });

  it.each([
    [{ address: undefined }, /--address/],
    [{ address: '192.0.2.77' }, /not an address of this host/],
    [{ address: '::1' }, /IPv4/],
    [{ serviceKey: [] }, /--service-key/],
    [{ serviceKey: undefined }, /--service-key/],
    [{ serviceKey: [join(dir, 'missing.pub')] }, /missing\.pub/],
    [{ serviceKey: [priv] }, /is a private key/],
    [{ serviceKey: [join(dir, 'garbage.pub')] }, /not an Ed25519 public key/],
    [{ ports: '' }, /--ports/],
    [{ ports: '80,http' }, /--ports/],
    [{ ports: '0' }, /--ports/],
    [{ ports: Array.from({ length: 65 }, (_, i) => 1000 + i).join(',') }, /--ports/],
    [{ metrics: '9191' }, /--metrics/],
    [{ slowFraction: '1' }, /--slow-fraction/],
    [{ slowFraction: '-0.1' }, /--slow-fraction/],
    [{ slowSamples: '0' }, /--slow-samples/],
    [{ orphanTimeout: '-1' }, /--orphan-timeout/],
    [{ orphanTimeout: '5s' }, /--orphan-timeout/],
    [{ iface: 'no-such-if0' }, /--iface/],
  ] as [Partial<AgentFlags>, RegExp][])('refuses %o with a WEDGE_ERR_CONFIG naming the option', (over, message) => {
    expect(() => parseAgentFlags(flags(over))).toThrow(expect.objectContaining({ code: 'WEDGE_ERR_CONFIG', message: expect.stringMatching(message) }));
  });

  it('accepts --slow-fraction 0 (client-triggered migration off)', () => {
    expect(parseAgentFlags(flags({ slowFraction: '0' })).slowFraction).toBe(0);
  });
});
