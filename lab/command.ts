/*
 * `wedge lab ...`: a replica cluster on this machine, made of network namespaces. This file only
 * declares the subcommands and formats their output; each one's work is in its own module (up,
 * down, exec, crash, origin, shape, status). Every subcommand finds its lab by name (--lab, else $WEDGE_LAB,
 * else "wedge") through the state file, since each runs as a separate process. With --json,
 * stdout carries exactly one JSON object; progress and errors go to stderr.
 */
import { Command, Option } from 'commander';
import { WedgeError } from '../errors/codes.js';
import { labCrash, labDeclareDead } from './crash.js';
import { labDown } from './down.js';
import { labDrain, labRollingRestart } from './drain.js';
import { labUpgrade } from './upgrade.js';
import { labExec } from './exec.js';
import { DEFAULT_FILES } from './files.js';
import { AGENT_METRICS, resolveLabName } from './plan.js';
import { labOrigin, ORIGIN_ACTIONS } from './origin.js';
import { labShape } from './shape.js';
import { labStatus, type LabStatus } from './status.js';
import { requireState, type LabState, type OriginKind } from './state.js';
import { labUp } from './up.js';

interface LabOption {
  lab?: string;
}

interface UpFlags extends LabOption {
  servers: string;
  origin: OriginKind;
  originCmd?: string;
  file: string[];
  rate?: string[];
  subnets?: boolean;
  agent?: boolean;
  json?: boolean;
  timeout: string;
}

const LAB_OPTION_HELP = 'lab name (default: $WEDGE_LAB, else "wedge")';

const UP_HELP_AFTER = `
Addresses: client 10.77.0.10, server sN 10.77.0.(10+N) with service VIP 10.77.0.(100+N), all on one
bridge. With --subnets: a router (host "router", namespace wl_<lab>_rt, IPv4 forwarding); the client
10.78.0.10/24 (gateway 10.78.0.1); server sN's service address 10.78.N.10:80 on its own 10.78.N.0/24
(eth1, gateway 10.78.N.1); servers keep eth0 10.77.0.(10+N) on the bridge as the cluster backplane
(multicast soft state, --address); the client is not on it. Wedges get --takeover migrate and
--migrate-key <run dir>/migrate.key. Every lab gets an Ed25519 key pair <run dir>/migrate.key (0600)
and migrate.pub. --agent starts on the client: wedge agent --address <client> --service-key
<run dir>/migrate.pub --ports 80 --metrics ${AGENT_METRICS} --log-file <run dir>/client-agent.log
(options this build lacks are left out; without a wedge agent command it is skipped with a warning).
Throttle one server while the lab runs: wedge lab shape s1 10mbit (off to remove).`;

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function progress(lab: string): (line: string) => void {
  return (line) => process.stderr.write(`lab ${lab}: ${line}\n`);
}

/**
 * The stable `lab up --json` document. Fields are only ever added (the `servers` entries keep
 * exactly their four fields; per-server network details are in `serverLinks`).
 */
function upDocument(state: LabState): object {
  return {
    lab: state.lab,
    client: state.client.name,
    servers: state.servers.map((s) => ({ name: s.name, service: s.service, address: s.address, admin: s.admin })),
    files: state.files.map((f) => ({ path: f.path, bytes: f.bytes, sha256: f.sha256 })),
    subnets: state.subnets === true,
    clientAddress: state.client.address,
    router: state.router ?? null,
    serverLinks: state.servers.map((s) => ({
      name: s.name,
      serviceAddress: s.serviceAddress ?? s.vip,
      serviceIface: s.serviceIface ?? s.iface,
      backplaneIface: s.iface,
      gateway: s.gateway ?? null,
      rate: s.rate ?? null,
    })),
    migrateKey: state.migrateKey ?? null,
    migratePub: state.migratePub ?? null,
    agent: state.agent ?? null,
  };
}

function upSummary(state: LabState): string {
  const lines = [
    `lab ${state.lab} is up (${state.origin} origins${state.subnets === true ? ', each server on its own subnet behind a router' : ''}${state.rate ? `, egress shaped to ${state.rate}` : ''})`,
    `  client  ${state.client.address}   wedge lab exec client --lab ${state.lab} -- curl -o /dev/null ${state.servers[0]?.service ?? ''}${state.files[0]?.path ?? '/'}`,
  ];
  if (state.router) lines.push(`  router  ${state.router.interfaces.map((i) => `${i.name} ${i.address}`).join(', ')}  netns ${state.router.ns}`);
  for (const s of state.servers) {
    const wedge = s.wedge ? `wedge log ${s.wedge.log}` : 'no wedge';
    const rate = s.rate ? `  rate ${s.rate}` : '';
    lines.push(`  ${s.name.padEnd(6)}  ${s.address}  service ${s.service}${rate}  origin log ${s.origin?.log ?? '-'}  ${wedge}`);
  }
  if (state.agent) lines.push(`  agent   pid ${state.agent.pid}  log ${state.agent.log}${state.agent.metrics ? `  metrics ${state.agent.metrics}` : ''}`);
  else if (state.agentWanted === true) lines.push('  agent   NOT started (this build has no `wedge agent`)');
  if (state.migrateKey) lines.push(`  migrate key ${state.migrateKey} (public ${state.migratePub ?? '-'})`);
  for (const f of state.files) lines.push(`  file ${f.path}  ${f.bytes} bytes  sha256 ${f.sha256}`);
  lines.push(`  state ${state.runDir}/state.json`);
  return lines.join('\n') + '\n';
}

function statusSummary(status: LabStatus): string {
  const proc = (p: LabStatus['servers'][number]['origin']): string => (p === null ? '-' : `pid ${p.pid} ${p.running ? 'running' : 'NOT running'} (${p.log})`);
  const mode = status.subnets ? ', subnets' : '';
  const lines = [`lab ${status.lab}: ${status.phase}, ${status.origin} origins${mode}${status.rate ? `, rate ${status.rate}` : ''}, since ${status.createdAt}`];
  lines.push(`  client  ${status.client.address}  netns ${status.client.ns}`);
  if (status.router) lines.push(`  router  ${status.router.interfaces.map((i) => `${i.name} ${i.address}`).join(', ')}  netns ${status.router.ns}`);
  for (const s of status.servers) {
    const rate = s.rate ? `  rate ${s.rate}` : '';
    lines.push(`  ${s.name.padEnd(6)}  ${s.status.padEnd(7)}  ${s.address}  service ${s.service} (${s.serviceIface})${rate}  netns ${s.ns}`);
    lines.push(`          origin ${proc(s.origin)}`);
    lines.push(`          wedge  ${proc(s.wedge)}`);
  }
  if (status.agent) lines.push(`  agent   ${proc(status.agent)}${status.agent.metrics ? `  metrics ${status.agent.metrics}` : ''}`);
  lines.push(`  state ${status.runDir}/state.json, files ${status.dataDir}`);
  return lines.join('\n') + '\n';
}

export function registerLabCommands(program: Command): void {
  const lab = program
    .command('lab')
    .description('a replica cluster on this machine, made of network namespaces (needs root)')
    .enablePositionalOptions();

  lab
    .command('up')
    .description(
      'create the lab: a client and N servers on one L2 segment (--subnets: each server on its own subnet behind a router), each server an origin with a wedge in front',
    )
    .option('--servers <n>', 'number of servers', '3')
    .addOption(new Option('--origin <kind>', 'origin on every server').choices(['builtin', 'apache']).default('builtin'))
    .option('--origin-cmd <cmd>', 'run CMD (through sh -c) as every server\'s origin instead, with PORT=8080, WEDGE_LAB_SERVER=sN and WEDGE_LAB_ROOT=<its document root>; its wedge gets --state-listen 127.0.0.1:9092')
    .option('--file <name:mib>', `a file every server holds, repeatable (default ${DEFAULT_FILES.join(' ')})`, collect, [])
    .option(
      '--rate <rate>',
      "shape servers' egress (tbf; UDP soft state bypasses it): RATE for every server, SERVER=RATE for one (overrides), repeatable, e.g. 100mbit or s1=10mbit",
      collect,
    )
    .option('--subnets', 'put each server on its own subnet behind a router (TCP Migrate takeover); servers keep a multicast backplane')
    .option('--agent', `run the TCP Migrate client agent (wedge agent) on the client, metrics on ${AGENT_METRICS}`)
    .option('--timeout <seconds>', 'how long to wait for origins and wedges to answer', '30')
    .option('--json', 'print one JSON object describing the lab on stdout')
    .option('--lab <name>', LAB_OPTION_HELP)
    .addHelpText('after', UP_HELP_AFTER)
    .action(async (flags: UpFlags) => {
      const name = resolveLabName(flags.lab);
      const state = await labUp({
        lab: name,
        servers: Number(flags.servers),
        origin: flags.originCmd !== undefined ? 'command' : flags.origin,
        ...(flags.originCmd !== undefined ? { originCmd: flags.originCmd } : {}),
        files: flags.file.length > 0 ? flags.file : DEFAULT_FILES,
        ...(flags.rate !== undefined && flags.rate.length > 0 ? { rate: flags.rate } : {}),
        subnets: flags.subnets === true,
        agent: flags.agent === true,
        timeoutSeconds: Number(flags.timeout),
        progress: progress(name),
      });
      process.stdout.write(flags.json ? JSON.stringify(upDocument(state)) + '\n' : upSummary(state));
    });

  lab
    .command('exec')
    .description('run a command on a lab host (client, s1, ...); exits with its status')
    .argument('<host>', 'client or a server name')
    .argument('<command...>', 'the command and its arguments (after --)')
    .option('--lab <name>', LAB_OPTION_HELP)
    .passThroughOptions()
    .action(async (host: string, argv: string[], flags: LabOption) => {
      const state = await requireState(resolveLabName(flags.lab));
      process.exitCode = await labExec(state, host, argv);
    });

  lab
    .command('crash')
    .description('power-loss a server: link down, then SIGKILL every process in its namespace')
    .argument('<server>', 'server name, e.g. s1')
    .option('--lab <name>', LAB_OPTION_HELP)
    .action(async (server: string, flags: LabOption) => {
      const state = await requireState(resolveLabName(flags.lab));
      const killed = await labCrash(state, server);
      process.stderr.write(`lab ${state.lab}: ${server} crashed: link down, ${killed.length} processes killed\n`);
    });

  lab
    .command('origin')
    .description("fail or heal one server's origin while its wedge runs: stop, start, restart (apache: -k restart), kill-worker (SIGKILL the serving worker)")
    .argument('<server>', 'server name, e.g. s1')
    .argument('<action>', ORIGIN_ACTIONS.join('|'))
    .option('--lab <name>', LAB_OPTION_HELP)
    .action(async (server: string, action: string, flags: LabOption) => {
      const state = await requireState(resolveLabName(flags.lab));
      const done = await labOrigin(state, server, action);
      process.stderr.write(`lab ${state.lab}: ${server} origin ${done}\n`);
    });

  lab
    .command('shape')
    .description("change one server's egress shaping while the lab runs (its service link; off removes it)")
    .argument('<server>', 'server name, e.g. s1')
    .argument('<rate>', 'a tc rate (100mbit, 500kbit, 10mbps) or off')
    .option('--lab <name>', LAB_OPTION_HELP)
    .action(async (server: string, rate: string, flags: LabOption) => {
      const state = await requireState(resolveLabName(flags.lab));
      const now = await labShape(state, server, rate);
      process.stderr.write(`lab ${state.lab}: ${server} egress ${now === null ? 'unshaped' : `shaped to ${now}`}\n`);
    });

  lab
    .command('declare-dead')
    .description("tell every other live server's admin API that a server is dead (it stays up)")
    .argument('<server>', 'server name, e.g. s1')
    .option('--lab <name>', LAB_OPTION_HELP)
    .action(async (server: string, flags: LabOption) => {
      const state = await requireState(resolveLabName(flags.lab));
      const results = await labDeclareDead(state, server);
      for (const r of results) process.stderr.write(`lab ${state.lab}: ${r.server}: ${r.ok ? 'told' : 'FAILED'} ${r.detail}\n`);
      const failed = results.filter((r) => !r.ok).map((r) => r.server);
      if (failed.length > 0) throw new WedgeError('WEDGE_ERR_LAB', `declare-dead ${server}: not accepted by ${failed.join(', ')}`);
    });

  lab
    .command('drain')
    .description("drain a server's wedge (`wedge drain --wait` in its namespace): its connections move to peers, the wedge exits, the server becomes `drained`")
    .argument('<server>', 'server name, e.g. s1')
    .option('--json', 'print the drain\'s last status as JSON')
    .option('--lab <name>', LAB_OPTION_HELP)
    .action(async (server: string, flags: LabOption & { json?: boolean }) => {
      const state = await requireState(resolveLabName(flags.lab));
      const report = await labDrain(state, server);
      if (flags.json) process.stdout.write(JSON.stringify(report) + '\n');
      else process.stderr.write(`lab ${state.lab}: ${server} drained: moved ${report.moved}, finished ${report.finished}, reset ${report.reset}\n`);
    });

  lab
    .command('upgrade')
    .description("replace a server's wedge process in place: a new `wedge serve` takes its listener and every live connection (--handover), the old one exits")
    .argument('<server>', 'server name, e.g. s1')
    .option('--json', 'print {server, oldPid, newPid}')
    .option('--lab <name>', LAB_OPTION_HELP)
    .action(async (server: string, flags: LabOption & { json?: boolean }) => {
      const state = await requireState(resolveLabName(flags.lab));
      const report = await labUpgrade(state, server);
      if (flags.json) process.stdout.write(JSON.stringify(report) + '\n');
      else process.stderr.write(`lab ${state.lab}: ${server} upgraded in place: wedge ${report.oldPid} -> ${report.newPid}\n`);
    });

  lab
    .command('rolling-restart')
    .description('restart every live wedge in turn: drain, start again, wait until it rejoined its group; live downloads keep running')
    .option('--lab <name>', LAB_OPTION_HELP)
    .action(async (flags: LabOption) => {
      const state = await requireState(resolveLabName(flags.lab));
      await labRollingRestart(state, progress(state.lab));
    });

  lab
    .command('down')
    .description('stop every process of the lab and remove its namespaces, state and files (idempotent)')
    .option('--lab <name>', LAB_OPTION_HELP)
    .action(async (flags: LabOption) => {
      const name = resolveLabName(flags.lab);
      const report = await labDown(name);
      process.stderr.write(`lab ${name}: down (${report.namespaces.length} namespaces removed, ${report.processes} processes stopped)\n`);
    });

  lab
    .command('status')
    .description("show the lab's servers, whether they are alive, their processes and logs")
    .option('--json', 'print one JSON object on stdout')
    .option('--lab <name>', LAB_OPTION_HELP)
    .action(async (flags: LabOption & { json?: boolean }) => {
      const status = await labStatus(await requireState(resolveLabName(flags.lab)));
      process.stdout.write(flags.json ? JSON.stringify(status) + '\n' : statusSummary(status));
    });
}
