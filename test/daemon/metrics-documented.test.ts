/* docs/metrics.md lists exactly the metrics the code exports (both directions), and every name
 * follows the Prometheus conventions the document states. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentMetrics } from '../../agent/agent-metrics.js';
import { PACKAGE_ROOT } from '../../config/package.js';
import { exportSoftStateMetrics, WedgeMetrics } from '../../daemon/metrics.js';
import type { SoftStateMetrics } from '../../softstate/index.js';

/* Node's standard process metrics, documented as a group. */
const PROCESS_DEFAULTS = /^wedge_(agent_)?(process|nodejs)_/;

async function exported(): Promise<{ name: string; type: string }[]> {
  const serve = new WedgeMetrics();
  const zero = new Proxy({ rejected: {} } as unknown as SoftStateMetrics, { get: (target, key) => (target as unknown as Record<string | symbol, unknown>)[key] ?? 0 });
  exportSoftStateMetrics(serve.registry, () => zero);
  const agent = new AgentMetrics(() => 0);
  const all = [...(await serve.registry.getMetricsAsJSON()), ...(await agent.registry.getMetricsAsJSON())];
  return all.map((m) => ({ name: m.name, type: String(m.type) })).filter((m) => !PROCESS_DEFAULTS.test(m.name));
}

function documented(): string[] {
  const text = readFileSync(join(PACKAGE_ROOT, 'docs', 'metrics.md'), 'utf8');
  return [...text.matchAll(/^\| `(wedge_[a-z_]+)` \|/gm)].map((m) => m[1]!);
}

describe('metrics', () => {
  it('docs/metrics.md documents every exported metric, and nothing else', async () => {
    const names = (await exported()).map((m) => m.name).sort();
    expect(documented().sort()).toEqual(names);
  });

  it('names follow the conventions: counters _total, histograms in seconds, base units, no _total on a gauge', async () => {
    for (const { name, type } of await exported()) {
      if (type === 'counter') expect(name, name).toMatch(/_total$/);
      else expect(name, name).not.toMatch(/_total$/);
      if (type === 'histogram') expect(name, name).toMatch(/_seconds$/);
      expect(name, name).not.toMatch(/_(ms|milliseconds|us|kb|kib|mb|mib)(_|$)/);
    }
  });
});

describe('the Grafana dashboard (examples/grafana)', () => {
  it('queries only documented metrics', () => {
    const dashboard = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'examples', 'grafana', 'wedge-dashboard.json'), 'utf8')) as { panels: { targets: { expr: string }[] }[] };
    const known = new Set(documented());
    const queried = dashboard.panels.flatMap((p) => p.targets.flatMap((t) => [...t.expr.matchAll(/\bwedge_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''))));
    expect(queried.length).toBeGreaterThan(8);
    expect(queried.filter((name) => !known.has(name))).toEqual([]);
  });
});
