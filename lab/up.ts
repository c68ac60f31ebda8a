/*
 * `lab up`: builds the cluster. Options are validated before anything is created; the lab
 * directory is then created exclusively (a second `lab up` of the same name fails instead of
 * trampling the first) and the state file is written before the first namespace exists, so that
 * whatever happens next, `lab down` (run here on failure, on SIGINT/SIGTERM, or later by hand)
 * can remove it all.
 *
 * Order: switch namespace + bridge, client, servers (veth, own address, VIP, multicast route,
 * nonlocal bind, shaping) while the files are generated; files copied to every server; origins
 * started and polled until each file answers 200; then (when this build's `wedge serve` has
 * --listen) the wedges, polled until their admin API is healthy and the client gets an HTTP answer
 * on the service address.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WedgeError } from '../wedge/errors.js';
import { APACHE_BINARY } from '../examples/origins/apache.js';
import { labDown } from './down.js';
import { generateFiles, installFiles, parseFileSpecs, type FileSpec } from './files.js';
import { addAddress, addBridge, addNamespace, addRoute, listNamespaces, plugHost, sysctl } from './netns.js';
import {
  ADMIN_PORT,
  BRIDGE,
  CLIENT_HOST,
  HOST_IFACE,
  MAX_SERVERS,
  PREFIX_LEN,
  SERVICE_PORT,
  clientAddress,
  nsName,
  nsPrefix,
  serverAddress,
  serverName,
  serviceAddress,
  switchNs,
  switchPort,
} from './plan.js';
import type { Started } from './procs.js';
import { httpStatus, waitUntil } from './ready.js';
import { missingServeOptions, originUrl, startOrigin, startWedge, wedgeServeOptions } from './servers.js';
import { parseRate, shapeEgress, type Rate } from './shaping.js';
import { dataDirOf, runBase, runDirOf, writeState, type LabState, type OriginKind, type ServerState } from './state.js';

export interface UpOptions {
  lab: string;
  servers: number;
  origin: OriginKind;
  files: string[];
  rate?: string;
  timeoutSeconds: number;
  progress: (line: string) => void;
}

interface Plan {
  specs: FileSpec[];
  rate: Rate | undefined;
}

function validate(options: UpOptions): Plan {
  if (!Number.isInteger(options.servers) || options.servers < 1 || options.servers > MAX_SERVERS) {
    throw new WedgeError('WEDGE_ERR_CONFIG', `--servers must be a whole number from 1 to ${MAX_SERVERS}`);
  }
  if (options.origin !== 'builtin' && options.origin !== 'apache') {
    throw new WedgeError('WEDGE_ERR_CONFIG', `--origin must be builtin or apache, not "${String(options.origin)}"`);
  }
  if (options.origin === 'apache' && !existsSync(APACHE_BINARY)) {
    throw new WedgeError('WEDGE_ERR_CONFIG', `--origin apache needs ${APACHE_BINARY} (apt-get install apache2)`);
  }
  if (!(options.timeoutSeconds > 0)) throw new WedgeError('WEDGE_ERR_CONFIG', '--timeout must be a positive number of seconds');
  if (process.getuid?.() !== 0) {
    throw new WedgeError('WEDGE_ERR_PRIVILEGE', 'wedge lab needs root (network namespaces): run it with sudo');
  }
  return { specs: parseFileSpecs(options.files), rate: options.rate === undefined ? undefined : parseRate(options.rate) };
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

function initialState(options: UpOptions, rate: Rate | undefined): LabState {
  const { lab } = options;
  const runDir = runDirOf(lab);
  const dataDir = dataDirOf(lab);
  const servers: ServerState[] = [];
  for (let i = 1; i <= options.servers; i++) {
    const name = serverName(i);
    servers.push({
      name,
      ns: nsName(lab, name),
      address: serverAddress(i),
      vip: serviceAddress(i),
      iface: HOST_IFACE,
      service: `http://${serviceAddress(i)}:${SERVICE_PORT}`,
      admin: `http://127.0.0.1:${ADMIN_PORT}`,
      status: 'alive',
      root: join(dataDir, name, 'www'),
    });
  }
  const client = { name: CLIENT_HOST, ns: nsName(lab, CLIENT_HOST), address: clientAddress() };
  return {
    lab,
    phase: 'building',
    createdAt: new Date().toISOString(),
    origin: options.origin,
    ...(rate ? { rate: rate.text } : {}),
    runDir,
    dataDir,
    namespaces: [switchNs(lab), client.ns, ...servers.map((s) => s.ns)],
    client,
    servers,
    files: [],
  };
}

async function buildNetwork(state: LabState, rate: Rate | undefined, checkpoint: () => void): Promise<void> {
  const sw = switchNs(state.lab);
  await addNamespace(sw);
  await addBridge(sw, BRIDGE);
  checkpoint();
  await addNamespace(state.client.ns);
  await plugHost(sw, BRIDGE, switchPort(CLIENT_HOST), state.client.ns, HOST_IFACE);
  await addAddress(state.client.ns, HOST_IFACE, `${state.client.address}/${PREFIX_LEN}`);
  for (const server of state.servers) {
    checkpoint();
    await addNamespace(server.ns);
    await plugHost(sw, BRIDGE, switchPort(server.name), server.ns, server.iface);
    // Own address first, so it is the primary one and the source of the server's own traffic.
    await addAddress(server.ns, server.iface, `${server.address}/${PREFIX_LEN}`);
    await addAddress(server.ns, server.iface, `${server.vip}/${PREFIX_LEN}`);
    await addRoute(server.ns, '224.0.0.0/4', server.iface);
    // An adopter may bind a VIP before it has added it to its interface.
    await sysctl(server.ns, 'net.ipv4.ip_nonlocal_bind', '1');
    if (rate) await shapeEgress(server.ns, server.iface, rate);
  }
}

async function originsReady(state: LabState, started: Map<string, Started>, deadline: number, checkpoint: () => void): Promise<void> {
  await Promise.all(
    state.servers.map((server) =>
      waitUntil(`${server.name}'s ${state.origin} origin`, started.get(server.name)!, deadline, checkpoint, async () => {
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
  const [files] = await Promise.all([generateFiles(plan.specs, sourceDir, mtime), buildNetwork(state, plan.rate, checkpoint)]);
  state.files = files;
  await writeState(state);
  say(`network up: client ${state.client.address}, ${state.servers.map((s) => `${s.name} ${s.address} (service ${s.vip})`).join(', ')}`);
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
}

export async function labUp(options: UpOptions): Promise<LabState> {
  const plan = validate(options);
  await claim(options.lab);
  const state = initialState(options, plan.rate);
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
