/*
 * examples/kubernetes/wedge.yaml, validated by structure (no cluster here): every document a
 * well-formed object; the DaemonSet's selector matches its pods, on the host network, with exactly
 * the capabilities the README names, probes on /healthz, the key Secret mounted 0400, Prometheus
 * annotations; every WEDGE_* variable is a `wedge serve` option; the ConfigMap's configuration
 * file, with those variables, is one `wedge serve` accepts.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { addServeOptions, resolveServeFlags } from '../../cli/serve-options.js';
import { PACKAGE_ROOT } from '../../config/package.js';

/* Parsed manifests: walked by the assertions, which fail on any shape they do not expect. */
type Json = any;

const documents: Json[] = parseAllDocuments(readFileSync(join(PACKAGE_ROOT, 'examples', 'kubernetes', 'wedge.yaml'), 'utf8')).map((d) => {
  expect(d.errors).toEqual([]);
  return d.toJS();
});
const find = (kind: string, name: string): Json => documents.find((d) => d.kind === kind && d.metadata?.name === name);

describe('examples/kubernetes', () => {
  it('every document has apiVersion, kind and a name, in the wedge namespace', () => {
    expect(documents.map((d) => d.kind).sort()).toEqual(['ConfigMap', 'DaemonSet', 'Namespace', 'Secret', 'Secret']);
    for (const d of documents) {
      expect(typeof d.apiVersion, JSON.stringify(d.metadata)).toBe('string');
      expect(d.metadata.name).toMatch(/^[a-z0-9-]+$/);
      if (d.kind !== 'Namespace') expect(d.metadata.namespace).toBe('wedge');
    }
  });

  it('the DaemonSet: host network, the three capabilities only, probes, key mounted 0400, scrape annotations', () => {
    const ds = find('DaemonSet', 'wedge');
    expect(ds.apiVersion).toBe('apps/v1');
    expect(ds.spec.template.metadata.labels).toMatchObject(ds.spec.selector.matchLabels);
    const pod = ds.spec.template.spec;
    expect(pod.hostNetwork).toBe(true);
    const [container] = pod.containers;
    expect(container.securityContext.capabilities.drop).toEqual(['ALL']);
    expect([...container.securityContext.capabilities.add].sort()).toEqual(['NET_ADMIN', 'NET_BIND_SERVICE', 'NET_RAW']);
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 9090 });
    expect(container.readinessProbe.httpGet.path).toBe('/healthz');
    expect(ds.spec.template.metadata.annotations).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9090', 'prometheus.io/path': '/metrics' });
    const volumes = new Map(pod.volumes.map((v: Json) => [v.name, v]));
    for (const mount of container.volumeMounts) expect(volumes.has(mount.name), mount.name).toBe(true);
    const key = pod.volumes.find((v: Json) => v.secret)?.secret;
    expect(key).toEqual({ secretName: 'wedge-cluster-key', defaultMode: 0o400 });
    expect(find('Secret', key.secretName)).toBeDefined();
    expect(find('ConfigMap', pod.volumes.find((v: Json) => v.configMap).configMap.name)).toBeDefined();
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(30);
  });

  it('its WEDGE_* variables are wedge serve options, and the ConfigMap file with them is a configuration serve accepts', () => {
    const ds = find('DaemonSet', 'wedge');
    const [container] = ds.spec.template.spec.containers;
    const serve = new Command('serve').exitOverride();
    addServeOptions(serve);
    const variables = new Set(serve.options.map((o) => o.envVar).filter(Boolean));
    const used = [...container.env.map((e: Json) => e.name), ...container.args.join(' ').matchAll(/export (WEDGE_[A-Z_]+)=/g)].map((x) => (typeof x === 'string' ? x : x[1]));
    for (const name of used) expect(variables.has(name), name).toBe(true);

    const dir = mkdtempSync(join(tmpdir(), 'wedge-k8s-'));
    const file = join(dir, 'wedge.yaml');
    writeFileSync(file, find('ConfigMap', 'wedge-config').data['wedge.yaml']);
    const services = find('ConfigMap', 'wedge-config').data.services.trim().split('\n').map((l: string) => l.trim().split(/\s+/));
    expect(services.length).toBeGreaterThan(1);
    const saved = { ...process.env };
    Object.assign(process.env, { WEDGE_NAME: services[0][0], WEDGE_ADDRESS: '10.0.0.11', WEDGE_SERVICE: services[0][1], WEDGE_ADMIN_TOKEN: 't' });
    try {
      let flags: Json;
      const command = new Command('serve').exitOverride();
      addServeOptions(command).action((_f: unknown, c: Command) => {
        flags = resolveServeFlags(c);
      });
      command.parse(['--config', file], { from: 'user' });
      expect(flags).toMatchObject({ name: 'node-a', address: '10.0.0.11', service: '10.0.0.101:80', admin: '0.0.0.0:9090', adminToken: 't', stateKeyFile: '/etc/wedge/key/cluster.key' });
    } finally {
      process.env = saved;
    }
  });
});
