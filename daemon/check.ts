/*
 * `wedge check`: the configuration `wedge serve` would run with, and this host, checked without
 * starting anything (the model: `haproxy -c`, mmproxy's start-up checks). One result per item,
 * verified or failed with its fix:
 *   configuration   every value parses as the daemon will parse it
 *   cluster key     (failover on) readable by its owner only, 32 bytes or 64 hex digits per key
 *   origin          answers an HTTP request (any status)
 *   host            (failover on) the start-up checks of daemon/preflight.ts: privileges,
 *                   TCP_REPAIR, nftables, ip_nonlocal_bind, the cluster interface, its multicast route
 *   clocks          (failover on) the members heard heartbeating in our group (listening only)
 *                   are asked their wall clock (`GET /wedge-time` on --peer-port): the TCP
 *                   timestamps of a moved connection are carried by wall-clock time
 */
import { statSync } from 'node:fs';
import { request } from 'undici';
import { parseAddress, parseEndpoint, parseOriginUrl } from '../config/endpoints.js';
import { WedgeError } from '../errors/codes.js';
import { FORWARDED_MODES } from '../parsers/forwarded-head.js';
import { heartbeatsHeard, loadKeyRing, supportGroupOf } from '../softstate/index.js';
import { TIME_PATH } from './peer-range.js';
import { preflightTarget, runChecks, type CheckResult, type PreflightTarget } from './preflight.js';
import type { ServeFlags } from './serve-flags.js';

const ORIGIN_TIMEOUT_MS = 2000;
/* The TCP timestamp clock moves with the wall clock; the README asks for agreement within 1 s. */
const CLOCK_LIMIT_MS = 500;
const LISTEN_MS = 1200;
const KEY_FIX = 'make one with `openssl rand -hex 32 > FILE && chmod 600 FILE`, the same file on every replica';

/* `numeric`: the options that take positive integers (attribute names). */
export async function checkConfiguration(flags: ServeFlags, numeric: readonly (keyof ServeFlags)[]): Promise<CheckResult[]> {
  const results = [configuration(flags, numeric), await origin(flags)];
  if (!flags.address) return results;
  results.push(clusterKey(flags));
  try {
    const target = preflightTarget(flags);
    const host = await runChecks(target);
    results.push(...host);
    if (host.every((r) => r.ok)) results.push(await clocks(flags, target));
  } catch (err) {
    results.push(failed('host', 'the host checks', (err as Error).message, 'fix the configuration first'));
  }
  return results;
}

/* How far each live peer's wall clock is from ours (half a round trip of uncertainty). */
async function clocks(flags: ServeFlags, target: PreflightTarget): Promise<CheckResult> {
  const what = `clocks agree with the live peers' (within ${CLOCK_LIMIT_MS} ms)`;
  try {
    const ring = loadKeyRing({ ...(flags.stateKeyFile ? { keyFile: flags.stateKeyFile } : {}), env: process.env });
    const group = supportGroupOf(target.address, target.groups);
    const peers = await heartbeatsHeard({ ring, self: target.address, group, interfaceAddress: target.address, listenMs: LISTEN_MS });
    if (peers.length === 0) return { check: 'clocks', what, ok: true, detail: `no live peer heard in ${LISTEN_MS} ms: nothing to compare`, code: 'WEDGE_ERR_CONFIG' };
    const measured = await Promise.all(peers.map((peer) => offsetOf(peer, Number(flags.peerPort))));
    const answered = measured.filter((m): m is { peer: string; offsetMs: number } => m.offsetMs !== undefined);
    const silent = measured.filter((m) => m.offsetMs === undefined).map((m) => m.peer);
    const worst = answered.reduce<{ peer: string; offsetMs: number } | undefined>((w, m) => (!w || Math.abs(m.offsetMs) > Math.abs(w.offsetMs) ? m : w), undefined);
    const detail = `${answered.length} of ${peers.length} peer(s) answered${worst ? `, largest offset ${worst.offsetMs} ms (${worst.peer})` : ''}${silent.length ? `; no answer from ${silent.join(', ')}` : ''}`;
    if (worst && Math.abs(worst.offsetMs) > CLOCK_LIMIT_MS) return failed('clocks', what, detail, 'synchronise the clocks of every replica (chrony or systemd-timesyncd)');
    if (!worst) return failed('clocks', what, detail, `let the replicas reach each other on TCP --peer-port ${flags.peerPort}`);
    return { check: 'clocks', what, ok: true, detail, code: 'WEDGE_ERR_CONFIG' };
  } catch (err) {
    return failed('clocks', what, (err as Error).message, 'fix the checks above first');
  }
}

async function offsetOf(peer: string, port: number): Promise<{ peer: string; offsetMs?: number }> {
  try {
    const sent = Date.now();
    const response = await request(`http://${peer}:${port}${TIME_PATH}`, { headersTimeout: ORIGIN_TIMEOUT_MS, bodyTimeout: ORIGIN_TIMEOUT_MS });
    const { now } = (await response.body.json()) as { now: number };
    return { peer, offsetMs: Math.round(now - (sent + Date.now()) / 2) };
  } catch {
    return { peer };
  }
}

function configuration(flags: ServeFlags, numeric: readonly (keyof ServeFlags)[]): CheckResult {
  const what = 'configuration';
  try {
    parseEndpoint(flags.listen, '--listen');
    parseEndpoint(flags.admin, '--admin');
    parseOriginUrl(flags.origin);
    if (flags.stateListen) parseEndpoint(flags.stateListen, '--state-listen');
    if (flags.address) parseAddress(flags.address, '--address');
    if (flags.service) parseEndpoint(flags.service, '--service');
    oneOf(flags.takeover, ['address', 'migrate'], '--takeover');
    oneOf(flags.forwarded, FORWARDED_MODES, '--forwarded');
    oneOf(flags.onSigterm, ['drain', 'exit'], '--on-sigterm');
    if (flags.takeover === 'migrate' && !flags.migrateKey) throw new WedgeError('WEDGE_ERR_CONFIG', '--takeover migrate needs --migrate-key');
    for (const name of numeric) {
      const value = String(flags[name]);
      if (!/^[1-9]\d*$/.test(value)) throw new WedgeError('WEDGE_ERR_CONFIG', `--${dashed(name)} must be a positive integer, got "${value}"`);
    }
  } catch (err) {
    return failed('configuration', what, (err as Error).message, 'correct that option (flag, WEDGE_* variable or --config key)');
  }
  return { check: 'configuration', what, ok: true, detail: `every option parses${flags.config ? ` (${flags.config} included)` : ''}`, code: 'WEDGE_ERR_CONFIG' };
}

function clusterKey(flags: ServeFlags): CheckResult {
  const what = 'the cluster key';
  const file = flags.stateKeyFile;
  if (file) {
    let mode: number;
    try {
      mode = statSync(file).mode & 0o777;
    } catch (err) {
      return failed('cluster-key', what, `cannot read ${file}: ${(err as Error).message}`, KEY_FIX);
    }
    if ((mode & 0o077) !== 0) return failed('cluster-key', what, `${file} has mode ${mode.toString(8)}: others can read the cluster key`, `chmod 600 ${file}`);
  }
  try {
    const ring = loadKeyRing({ ...(file ? { keyFile: file } : {}), env: process.env });
    return { check: 'cluster-key', what, ok: true, detail: `${ring.keys.size} key(s) from ${file ?? 'WEDGE_STATE_KEY'}`, code: 'WEDGE_ERR_STATE_KEY' };
  } catch (err) {
    return failed('cluster-key', what, (err as Error).message, KEY_FIX);
  }
}

async function origin(flags: ServeFlags): Promise<CheckResult> {
  const what = `the origin ${flags.origin} answers`;
  try {
    const { host, port } = parseOriginUrl(flags.origin);
    const response = await request(`http://${host}:${port}/`, { method: 'HEAD', headersTimeout: ORIGIN_TIMEOUT_MS, bodyTimeout: ORIGIN_TIMEOUT_MS });
    await response.body.dump();
    return { check: 'origin', what, ok: true, detail: `HTTP ${response.statusCode} to HEAD /`, code: 'WEDGE_ERR_ORIGIN_UNREACHABLE' };
  } catch (err) {
    return failed('origin', what, (err as Error).message, 'start the origin, or point --origin at it');
  }
}

function oneOf(value: string, allowed: readonly string[], option: string): void {
  if (!allowed.includes(value)) throw new WedgeError('WEDGE_ERR_CONFIG', `${option} must be one of ${allowed.join(', ')}, got "${value}"`);
}

function dashed(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function failed(check: string, what: string, detail: string, fix: string): CheckResult {
  return { check, what, ok: false, detail, fix, code: 'WEDGE_ERR_CONFIG' };
}
