/*
 * `wedge lab ...`: a replica cluster on this machine, made of network namespaces. This file only
 * declares the subcommands and formats their output; each one's work is in its own module (up,
 * down, exec, crash, status). Every subcommand finds its lab by name (--lab, else $WEDGE_LAB,
 * else "wedge") through the state file, since each runs as a separate process. With --json,
 * stdout carries exactly one JSON object; progress and errors go to stderr.
 */
import { Command, Option } from 'commander';
import { WedgeError } from '../wedge/errors.js';
import { labCrash, labDeclareDead } from './crash.js';
import { labDown } from './down.js';
import { labExec } from './exec.js';
import { DEFAULT_FILES } from './files.js';
import { resolveLabName } from './plan.js';
import { labStatus, type LabStatus } from './status.js';
import { requireState, type LabState, type OriginKind } from './state.js';
import { labUp } from './up.js';

interface LabOption {
  lab?: string;
}

interface UpFlags extends LabOption {
  servers: string;
  origin: OriginKind;
  file: string[];
  rate?: string;
  json?: boolean;
  timeout: string;
}

const LAB_OPTION_HELP = 'lab name (default: $WEDGE_LAB, else "wedge")';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function progress(lab: string): (line: string) => void {
  return (line) => process.stderr.write(`lab ${lab}: ${line}\n`);
}

/** The stable `lab up --json` document. */
function upDocument(state: LabState): object {
  return {
    lab: state.lab,
    client: state.client.name,
    servers: state.servers.map((s) => ({ name: s.name, service: s.service, address: s.address, admin: s.admin })),
    files: state.files.map((f) => ({ path: f.path, bytes: f.bytes, sha256: f.sha256 })),
  };
}

function upSummary(state: LabState): string {
  const lines = [
    `lab ${state.lab} is up (${state.origin} origins${state.rate ? `, egress shaped to ${state.rate}` : ''})`,
    `  client  ${state.client.address}   wedge lab exec client --lab ${state.lab} -- curl -o /dev/null ${state.servers[0]?.service ?? ''}${state.files[0]?.path ?? '/'}`,
  ];
  for (const s of state.servers) {
    const wedge = s.wedge ? `wedge log ${s.wedge.log}` : 'no wedge';
    lines.push(`  ${s.name.padEnd(6)}  ${s.address}  service ${s.service}  origin log ${s.origin?.log ?? '-'}  ${wedge}`);
  }
  for (const f of state.files) lines.push(`  file ${f.path}  ${f.bytes} bytes  sha256 ${f.sha256}`);
  lines.push(`  state ${state.runDir}/state.json`);
  return lines.join('\n') + '\n';
}

function statusSummary(status: LabStatus): string {
  const proc = (p: LabStatus['servers'][number]['origin']): string => (p === null ? '-' : `pid ${p.pid} ${p.running ? 'running' : 'NOT running'} (${p.log})`);
  const lines = [`lab ${status.lab}: ${status.phase}, ${status.origin} origins${status.rate ? `, rate ${status.rate}` : ''}, since ${status.createdAt}`];
  lines.push(`  client  ${status.client.address}  netns ${status.client.ns}`);
  for (const s of status.servers) {
    lines.push(`  ${s.name.padEnd(6)}  ${s.status.padEnd(7)}  ${s.address}  service ${s.service}  netns ${s.ns}`);
    lines.push(`          origin ${proc(s.origin)}`);
    lines.push(`          wedge  ${proc(s.wedge)}`);
  }
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
    .description('create the lab: a client and N servers on one L2 segment, each server an origin with a wedge in front')
    .option('--servers <n>', 'number of servers', '3')
    .addOption(new Option('--origin <kind>', 'origin on every server').choices(['builtin', 'apache']).default('builtin'))
    .option('--file <name:mib>', `a file every server holds, repeatable (default ${DEFAULT_FILES.join(' ')})`, collect, [])
    .option('--rate <rate>', "shape each server's egress (tbf; UDP soft state bypasses it), e.g. 100mbit")
    .option('--timeout <seconds>', 'how long to wait for origins and wedges to answer', '30')
    .option('--json', 'print one JSON object describing the lab on stdout')
    .option('--lab <name>', LAB_OPTION_HELP)
    .action(async (flags: UpFlags) => {
      const name = resolveLabName(flags.lab);
      const state = await labUp({
        lab: name,
        servers: Number(flags.servers),
        origin: flags.origin,
        files: flags.file.length > 0 ? flags.file : DEFAULT_FILES,
        ...(flags.rate !== undefined ? { rate: flags.rate } : {}),
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
