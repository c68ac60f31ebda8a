/*
 * `lab up`: builds the cluster. Options are validated before anything is created; the lab
 * directory is then created exclusively (a second `lab up` of the same name fails instead of
 * trampling the first) and the state file is written before the first namespace exists, so that
 * whatever happens next, `lab down` (run here on failure, on SIGINT/SIGTERM, or later by hand)
 * can remove it all.
 *
 * Order: switch namespace + bridge, (subnets mode: the router), client, servers (veth, own
 * address, VIP or in subnets mode a second veth to the router, multicast route, nonlocal bind,
 * shaping) while the files are generated; the TCP Migrate key pair; files copied to every server;
 * origins started and polled until each file answers 200; then (when this build's `wedge serve`
 * has --listen) the wedges, polled until their admin API is healthy and the client gets an HTTP
 * answer on the service address; last (with --agent, when this build has `wedge agent`) the
 * client agent, polled until its metrics answer.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WedgeError } from '../errors/codes.js';
import { APACHE_BINARY } from '../examples/origins/apache.js';
import { agentMetricsUrl, agentOptions, missingAgentOptions, startAgent } from './agent.js';
import { labDown } from './down.js';
import { generateFiles, installFiles, parseFileSpecs, type FileSpec } from './files.js';
import { addAddress, addBridge, addDefaultRoute, addNamespace, addRoute, addVethPair, listNamespaces, plugHost, sysctl } from './netns.js';
import {
  ADMIN_PORT,
  AGENT_METRICS,
  BRIDGE,
  CLIENT_HOST,
  HOST_IFACE,
  MAX_SERVERS,
  PREFIX_LEN,
  ROUTER_HOST,
  SERVICE_IFACE,
  SERVICE_PORT,
  clientAddress,
  nsName,
  nsPrefix,
  routerNs,
  routerPort,
  serverAddress,
  serverName,
  serviceAddress,
  subnetClientAddress,
  subnetRouterAddress,
  subnetServerAddress,
  switchNs,
  switchPort,
} from './plan.js';
import type { Started } from './procs.js';
import { httpStatus, waitUntil } from './ready.js';
import { missingServeOptions, originUrl, startOrigin, startWedge, wedgeServeOptions } from './servers.js';
import { parseRateSpecs, rateFor, shapeEgress, type RateSpecs } from './shaping.js';
import { dataDirOf, runBase, runDirOf, writeState, type LabState, type OriginKind, type RouterState, type ServerState } from './state.js';

export interface UpOptions {
  lab: string;
  servers: number;
  origin: OriginKind;
  /** Run this through `sh -c` as every server's origin instead (origin kind 'command'). */
  originCmd?: string;
  files: string[];
  /** `--rate` specs: a rate for every server and/or `SERVER=RATE` (see parseRateSpecs). */
  rate?: string | readonly string[];
  /** Each server on its own subnet behind a router (TCP Migrate takeover). */
  subnets?: boolean;
  /** Run the TCP Migrate client agent (`wedge agent`) on the client. */
  agent?: boolean;
  timeoutSeconds: number;
  progress: (line: string) => void;
}

interface Plan {
  specs: FileSpec[];
  rates: RateSpecs;
}

function validate(options: UpOptions): Plan {
  if (!Number.isInteger(options.servers) || options.servers < 1 || options.servers > MAX_SERVERS) {
    throw new WedgeError('WEDGE_ERR_CONFIG', `--servers must be a whole number from 1 to ${MAX_SERVERS}`);
  }
  if (options.origin !== 'builtin' && options.origin !== 'apache' && options.origin !== 'command') {
    throw new WedgeError('WEDGE_ERR_CONFIG', `--origin must be builtin or apache, not "${String(options.origin)}"`);
  }
  if ((options.origin === 'command') !== (options.originCmd !== undefined) || options.originCmd?.trim() === '') {
    throw new WedgeError('WEDGE_ERR_CONFIG', 'give the origin command as --origin-cmd \'CMD\' (not empty), instead of --origin');
  }
  if (options.origin === 'apache' && !existsSync(APACHE_BINARY)) {
    throw new WedgeError('WEDGE_ERR_CONFIG', `--origin apache needs ${APACHE_BINARY} (apt-get install apache2)`);
  }
  if (!(options.timeoutSeconds > 0)) throw new WedgeError('WEDGE_ERR_CONFIG', '--timeout must be a positive number of seconds');
  if (process.getuid?.() !== 0) {
    throw new WedgeError('WEDGE_ERR_PRIVILEGE', 'wedge lab needs root (network namespaces): run it with sudo');
  }
  const names = Array.from({ length: options.servers }, (_, i) => serverName(i + 1));
  const rateSpecs = options.rate === undefined ? [] : typeof options.rate === 'string' ? [options.rate] : options.rate;
  return { specs: parseFileSpecs(options.files), rates: parseRateSpecs(rateSpecs, names) };
}

/** Creates the lab directory, failing if this lab already exists. */
async function claim(lab: string): Promise<void> {
  await mkdir(runBase(), { recursive: true, mode: 0o755 });
  const leftovers = await listNamespaces(nsPrefix(lab));
  try {
    if (leftovers.length > 0) throw Object.assign(new Error('namespaces exist'), { code: 'EEXIST' });
    await mkdir(runDirOf(lab), { mode: 0o755 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new WedgeError('WEDGE_ERR_LAB', `a lab named "${lab}" already exists; remove it with \`wedge lab down --lab ${lab}\` or pick another --lab`);
    }
    throw err;
  }
}

function initialState(options: UpOptions, rates: RateSpecs): LabState {
  const { lab } = options;
  const subnets = options.subnets === true;
  const runDir = runDirOf(lab);
  const dataDir = dataDirOf(lab);
  const servers: ServerState[] = [];
  for (let i = 1; i <= options.servers; i++) {
    const name = serverName(i);
    const service = subnets ? subnetServerAddress(i) : serviceAddress(i);
    const rate = rateFor(rates, name);
    servers.push({
      name,
      ns: nsName(lab, name),
      address: serverAddress(i),
      vip: service,
      iface: HOST_IFACE,
      service: `http://${service}:${SERVICE_PORT}`,
      admin: `http://127.0.0.1:${ADMIN_PORT}`,
      status: 'alive',
      root: join(dataDir, name, 'www'),
      serviceAddress: service,
      serviceIface: subnets ? SERVICE_IFACE : HOST_IFACE,
      ...(subnets ? { gateway: subnetRouterAddress(i) } : {}),
      ...(rate ? { rate: rate.text } : {}),
    });
  }
  const client = {
    name: CLIENT_HOST,
    ns: nsName(lab, CLIENT_HOST),
    address: subnets ? subnetClientAddress() : clientAddress(),
    iface: HOST_IFACE,
    ...(subnets ? { gateway: subnetRouterAddress(0) } : {}),
  };
  const router: RouterState | undefined = subnets
    ? {
        name: ROUTER_HOST,
        ns: routerNs(lab),
        interfaces: [
          { name: routerPort(CLIENT_HOST), address: `${subnetRouterAddress(0)}/${PREFIX_LEN}`, host: CLIENT_HOST },
          ...servers.map((s, i) => ({ name: routerPort(s.name), address: `${subnetRouterAddress(i + 1)}/${PREFIX_LEN}`, host: s.name })),
        ],
      }
    : undefined;
  return {
    lab,
    phase: 'building',
    createdAt: new Date().toISOString(),
    origin: options.origin,
    ...(options.originCmd !== undefined ? { originCmd: options.originCmd } : {}),
    ...(rates.all ? { rate: rates.all.text } : {}),
    runDir,
    dataDir,
    namespaces: [switchNs(lab), ...(router ? [router.ns] : []), client.ns, ...servers.map((s) => s.ns)],
    client,
    servers,
    files: [],
    subnets,
    ...(router ? { router } : {}),
    migrateKey: join(runDir, 'migrate.key'),
    migratePub: join(runDir, 'migrate.pub'),
    agentWanted: options.agent === true,
  };
}

async function buildNetwork(state: LabState, rates: RateSpecs, checkpoint: () => void): Promise<void> {
  const sw = switchNs(state.lab);
  const router = state.router;
  await addNamespace(sw);
  await addBridge(sw, BRIDGE);
  checkpoint();
  if (router) {
    await addNamespace(router.ns);
    await sysctl(router.ns, 'net.ipv4.ip_forward', '1');
  }
  await addNamespace(state.client.ns);
  if (router) {
    // Subnets mode: the client reaches the servers only through the router, never the backplane.
    await addVethPair(router.ns, routerPort(CLIENT_HOST), state.client.ns, HOST_IFACE);
    await addAddress(router.ns, routerPort(CLIENT_HOST), `${subnetRouterAddress(0)}/${PREFIX_LEN}`);
    await addAddress(state.client.ns, HOST_IFACE, `${state.client.address}/${PREFIX_LEN}`);
    await addDefaultRoute(state.client.ns, subnetRouterAddress(0), HOST_IFACE);
  } else {
    await plugHost(sw, BRIDGE, switchPort(CLIENT_HOST), state.client.ns, HOST_IFACE);
    await addAddress(state.client.ns, HOST_IFACE, `${state.client.address}/${PREFIX_LEN}`);
  }
  for (const [index, server] of state.servers.entries()) {
    checkpoint();
    await addNamespace(server.ns);
    await plugHost(sw, BRIDGE, switchPort(server.name), server.ns, server.iface);
    // Own address first, so it is the primary one and the source of the server's own traffic.
    await addAddress(server.ns, server.iface, `${server.address}/${PREFIX_LEN}`);
    if (router) {
      const iface = server.serviceIface ?? SERVICE_IFACE;
      await addVethPair(router.ns, routerPort(server.name), server.ns, iface);
      await addAddress(router.ns, routerPort(server.name), `${subnetRouterAddress(index + 1)}/${PREFIX_LEN}`);
      await addAddress(server.ns, iface, `${server.vip}/${PREFIX_LEN}`);
      await addDefaultRoute(server.ns, subnetRouterAddress(index + 1), iface);
    } else {
      await addAddress(server.ns, server.iface, `${server.vip}/${PREFIX_LEN}`);
    }
    // Soft-state multicast stays on the cluster segment (the backplane in subnets mode).
    await addRoute(server.ns, '224.0.0.0/4', server.iface);
    // An adopter may bind a VIP before it has added it to its interface.
    await sysctl(server.ns, 'net.ipv4.ip_nonlocal_bind', '1');
    const rate = rateFor(rates, server.name);
    if (rate) await shapeEgress(server.ns, server.serviceIface ?? server.iface, rate, { bypassUdp: !router });
  }
}

/** The TCP Migrate key pair: Ed25519, PEM (pkcs8 private, mode 0600; spki public). */
async function writeMigrateKeys(state: LabState): Promise<void> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519', {
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  await writeFile(state.migrateKey!, privateKey, { mode: 0o600 });
  await writeFile(state.migratePub!, publicKey, { mode: 0o644 });
}

async function originsReady(state: LabState, started: Map<string, Started>, deadline: number, checkpoint: () => void): Promise<void> {
  await Promise.all(
    state.servers.map((server) =>
      waitUntil(`${server.name}'s ${state.origin} origin`, started.get(server.name)!, deadline, checkpoint, async () => {
        // The user's own origin need not serve the lab's files: it is up once it accepts.
        if (state.origin === 'command') return (await httpStatus(server.ns, originUrl() + '/', 'HEAD')) !== 0;
        for (const file of state.files) {
          if ((await httpStatus(server.ns, originUrl() + file.path, 'HEAD')) !== 200) return false;
        }
        return true;
      }),
    ),
  );
}

async function wedgesReady(state: LabState, started: Map<string, Started>, deadline: number, checkpoint: () => void): Promise<void> {
  const probePath = state.files[0]?.path ?? '/';
  await Promise.all(
    state.servers.map((server) =>
      waitUntil(`${server.name}'s wedge`, started.get(server.name)!, deadline, checkpoint, async () => {
        if ((await httpStatus(server.ns, `${server.admin}/healthz`)) !== 200) return false;
        return (await httpStatus(state.client.ns, server.service + probePath, 'HEAD')) !== 0;
      }),
    ),
  );
}

async function build(state: LabState, options: UpOptions, plan: Plan, checkpoint: () => void): Promise<void> {
  const say = options.progress;
  // Each wait (origins, then wedges) gets the whole --timeout; generating files does not count.
  const deadline = (): number => Date.now() + options.timeoutSeconds * 1000;
  const sourceDir = join(state.dataDir, 'source');
  const mtime = Math.floor(Date.now() / 1000);
  await mkdir(state.dataDir, { recursive: true, mode: 0o755 });
  await writeMigrateKeys(state);
  const [files] = await Promise.all([generateFiles(plan.specs, sourceDir, mtime), buildNetwork(state, plan.rates, checkpoint)]);
  state.files = files;
  await writeState(state);
  const mode = state.subnets === true ? 'subnets behind a router' : 'one segment';
  say(`network up (${mode}): client ${state.client.address}, ${state.servers.map((s) => `${s.name} ${s.address} (service ${s.vip})`).join(', ')}`);
  for (const server of state.servers) {
    checkpoint();
    await installFiles(files, sourceDir, server.root);
  }
  say(`files on every server: ${files.map((f) => `${f.path} (${f.bytes} bytes)`).join(', ')}`);

  const origins = new Map<string, Started>();
  for (const server of state.servers) {
    const started = await startOrigin(state, server, state.origin);
    origins.set(server.name, started);
    server.origin = { pid: started.pid, log: started.log };
  }
  await writeState(state);
  await originsReady(state, origins, deadline(), checkpoint);
  say(`${state.origin} origins answer on 127.0.0.1:8080 on every server`);
  checkpoint();

  const keyFile = join(state.runDir, 'cluster.key');
  const wanted = state.servers[0] ? wedgeServeOptions(state, state.servers[0], keyFile).map(([option]) => option) : [];
  const missing = await missingServeOptions(wanted);
  if (missing.includes('--listen')) {
    say("NOT starting wedges: this build's `wedge serve` has no --listen; servers run their origins only");
    await startClientAgent(state, options, deadline(), checkpoint);
    return;
  }
  if (missing.length > 0) say(`this build's \`wedge serve\` lacks ${missing.join(', ')}: wedges start without them`);
  await writeFile(keyFile, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
  const wedges = new Map<string, Started>();
  for (const server of state.servers) {
    const started = startWedge(state, server, keyFile, missing);
    wedges.set(server.name, started);
    server.wedge = { pid: started.pid, log: started.log };
  }
  await writeState(state);
  await wedgesReady(state, wedges, deadline(), checkpoint);
  say('wedges answer on every service address');
  await startClientAgent(state, options, deadline(), checkpoint);
}

/** With --agent: `wedge agent` on the client, polled until its metrics answer. */
async function startClientAgent(state: LabState, options: UpOptions, deadline: number, checkpoint: () => void): Promise<void> {
  if (state.agentWanted !== true) return;
  const say = options.progress;
  const wanted = agentOptions(state).map(([option]) => option);
  const missing = await missingAgentOptions(wanted);
  if (missing === null) {
    say('NOT starting the client agent: this build has no `wedge agent`');
    return;
  }
  if (missing.length > 0) say(`this build's \`wedge agent\` lacks ${missing.join(', ')}: the agent starts without them`);
  checkpoint();
  const started = startAgent(state, missing);
  state.agent = { pid: started.pid, log: started.log, metrics: missing.includes('--metrics') ? null : agentMetricsUrl() };
  await writeState(state);
  const since = Date.now();
  await waitUntil('the client agent', started, deadline, checkpoint, async () => {
    if (!missing.includes('--metrics')) return (await httpStatus(state.client.ns, agentMetricsUrl())) !== 0;
    // Nothing to ask: it counts as up once it has survived its first second.
    return Date.now() - since > 1_000;
  });
  say(`client agent runs (pid ${started.pid}${missing.includes('--metrics') ? '' : `, metrics on ${AGENT_METRICS}`})`);
}

export async function labUp(options: UpOptions): Promise<LabState> {
  const plan = validate(options);
  await claim(options.lab);
  const state = initialState(options, plan.rates);
  let interrupted: NodeJS.Signals | null = null;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupted = sig;
  };
  const checkpoint = (): void => {
    if (interrupted !== null) throw new WedgeError('WEDGE_ERR_LAB', `interrupted by ${interrupted}`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await writeState(state);
    await build(state, options, plan, checkpoint);
    checkpoint();
    state.phase = 'up';
    await writeState(state);
    return state;
  } catch (err) {
    options.progress(`lab up failed, removing what it made: ${(err as Error).message}`);
    await labDown(options.lab);
    if (err instanceof WedgeError) throw err;
    throw new WedgeError('WEDGE_ERR_LAB', `lab up: ${(err as Error).message}`, { cause: err });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
