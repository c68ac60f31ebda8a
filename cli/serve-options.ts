/*
 * `wedge serve`'s options, shared with `wedge check` (which checks exactly what serve would run
 * with), and where their values come from: a flag, else the environment (WEDGE_ and the option in
 * upper snake case: --state-key-file is WEDGE_STATE_KEY_FILE), else the --config file (the option
 * without its dashes as the key: state-key-file), else the default.
 */
import { Option, type Command } from 'commander';
import { readConfigFile, type ConfigValue } from '../config/config-file.js';
import type { ServeFlags } from '../daemon/serve-flags.js';
import { DEFAULT_PEER_PORT } from '../daemon/peer-range.js';
import { WedgeError } from '../errors/codes.js';
import { DEFAULT_MAX_CONNECTIONS, DEFAULT_ORIGIN_RECOVERY, RELAY_LIMITS } from '../relay/options.js';

export const SOURCES_HELP = `
Every option can also come from the environment (WEDGE_ + the option in upper snake case, e.g.
WEDGE_STATE_KEY_FILE=/etc/wedge/cluster.key) or from a YAML file given with --config (one mapping,
the option without its dashes as the key, e.g. "state-key-file: /etc/wedge/cluster.key",
"splice: false"). A flag wins over the environment, the environment over the file. Unknown keys
and bad values in the file are refused with the key's name.`;

export function addServeOptions(command: Command): Command {
  const option = (flags: string, description: string, defaultValue?: string): void => {
    const added = new Option(flags, description);
    if (defaultValue !== undefined) added.default(defaultValue);
    if (takesValue(added)) added.env(envName(added));
    command.addOption(added);
  };
  option('--config <file>', 'read options from this YAML file (flags and WEDGE_* variables override it)');
  option('--name <name>', 'this server\'s name in logs and the admin API', 'wedge');
  option('--listen <addr:port>', 'where clients connect; 0.0.0.0 also accepts on adopted addresses', '0.0.0.0:80');
  option('--origin <url>', 'the local HTTP/1.1 origin', 'http://127.0.0.1:8080');
  option('--admin <addr:port>', 'admin API (connections, metrics, health, death reports); loopback unless a token is set', '127.0.0.1:9090');
  option('--admin-token <token>', 'require this bearer token on the admin API');
  option('--state-listen <addr:port>', 'turn the state contract on (stateful origins, see README): origins PUT per-connection snapshots here (loopback only), e.g. 127.0.0.1:9092; every request to the origin then carries Wedge-Exchange and Wedge-State');
  option('--no-splice', 'relay response bodies through JavaScript instead of moving them in the kernel with splice(2)');
  option('--address <ip>', 'this server\'s own address on the cluster network: turns failover on (soft state, takeover)');
  option('--service <addr:port>', 'the service address clients use here, adopted by a peer if this server dies');
  option('--iface <name>', 'interface for adopted addresses and probes (default: the one holding --address)');
  option('--state-key-file <path>', 'cluster key for soft state: 32 bytes or 64 hex digits (or env WEDGE_STATE_KEY)');
  option('--takeover <mode>', 'how a dead peer\'s connections move here: address (adopt its service address; clients unmodified) or migrate (TCP Migrate to this server\'s own address; clients run `wedge agent`)', 'address');
  option('--migrate-key <path>', 'the service\'s Ed25519 private key (PEM, the same on every replica): agree TCP Migrate keys with client agents');
  option('--groups <n>', 'number of support groups (a server\'s group is a hash of its address)', '1');
  option('--group-base <ip>', 'multicast address of group 0; group i uses base + i', '239.77.0.1');
  option('--group-port <port>', 'UDP port of the soft-state channel', '7077');
  option('--advert-interval <ms>', 'periodic soft-state advert of every connection', '3000');
  option('--expire <ms>', 'a connection record not refreshed for this long is forgotten', '10000');
  option('--heartbeat-interval <ms>', 'heartbeat period', '100');
  option('--dead-after <ms>', 'a peer silent this long is dead (detection bound ~ this + 50 ms)', '400');
  option('--heartbeat-lease <ms>', 'heartbeats (sent by their own thread) stop this long after the main event loop last ran, so a hung daemon is found dead', '1000');
  option('--max-connections <n>', 'client connections served at once; beyond it a new client gets 503 (WEDGE_ERR_TOO_MANY_CONNECTIONS) and is closed', String(DEFAULT_MAX_CONNECTIONS));
  option('--header-timeout <ms>', 'from the first byte of a request head to its end; then 408 and close', String(RELAY_LIMITS.headerTimeoutMs));
  option('--idle-timeout <ms>', 'a keep-alive connection with no request (or closing, with nothing left to send) is closed quietly after this', String(RELAY_LIMITS.idleTimeoutMs));
  option('--body-timeout <ms>', 'longest pause between two bytes of a request body; then 408 (or a reset once the response began)', String(RELAY_LIMITS.bodyTimeoutMs));
  option('--response-timeout <ms>', 'longest pause in a response (origin silent, or client not reading); then 504 (or a reset once the response began)', String(RELAY_LIMITS.responseTimeoutMs));
  option('--origin-retry <ms>', 'when the origin drops a response mid-body (restarted, a worker killed) or stalls in it for --response-timeout, ask it again for the rest (Range + If-Range) for this long, then the peers\' origins; only if none serves the same representation, a counted reset', String(DEFAULT_ORIGIN_RECOVERY.retryMs));
  option('--peer-port <port>', 'with --address: TCP port on --address where this wedge serves the rest of a response from its origin to a peer whose own origin is away (requests signed with the cluster key; the same on every replica)', String(DEFAULT_PEER_PORT));
  option('--max-request-line <bytes>', 'longest request line; beyond it 414 (WEDGE_ERR_HTTP_URI_TOO_LONG)', String(RELAY_LIMITS.maxRequestLineBytes));
  option('--max-empty-lines <n>', 'empty lines (CRLF) ignored before a request line; more get 400', String(RELAY_LIMITS.maxEmptyLines));
  option('--forwarded <mode>', 'tell the origin each client\'s address: none, xff (X-Forwarded-For) or forwarded (RFC 7239 Forwarded: for=...); the client\'s own X-Forwarded-For and Forwarded fields are then removed (Apache: mod_remoteip with RemoteIPHeader X-Forwarded-For; nginx: real_ip_header)', 'none');
  option('--handover <path>', 'in-place upgrade: a unix socket (mode 0600) where this wedge hands its listener and live connections to a new `wedge serve` started with the same option; at start-up, take them from the wedge running there (none: start afresh)');
  option('--on-sigterm <action>', 'drain (hand every connection to the support group, then exit; see `wedge drain`) or exit (stop at once, like SIGINT)', 'drain');
  option('--drain-timeout <ms>', 'longest drain: connections still here then are reset (counted, reason drain-not-moved)', '30000');
  option('--log-file <path>', 'write JSON logs here instead of stderr');
  option('--log-level <level>', 'trace, debug, info, warn or error', 'info');
  return command;
}

/* The options as the daemon takes them: the --config file's values filled in where neither a flag
 * nor the environment gave one. */
export function resolveServeFlags(command: Command): ServeFlags {
  const given = command.opts<ServeFlags>();
  if (given.config === undefined) return given;
  for (const [key, value] of readConfigFile(given.config)) {
    const option = optionFor(command, key);
    if (!option) throw new WedgeError('WEDGE_ERR_CONFIG', `${given.config}: ${key}: not a \`wedge serve\` option${suggestion(command, key)}`);
    const name = option.attributeName();
    const source = command.getOptionValueSource(name);
    if (source !== undefined && source !== 'default') continue;
    command.setOptionValueWithSource(name, valueFor(option, key, value, given.config), 'config');
  }
  return command.opts<ServeFlags>();
}

/* The options that take positive integers (counts, durations, ports): those with a numeric default. */
export function numericOptions(command: Command): (keyof ServeFlags)[] {
  return command.options.filter(isNumeric).map((o) => o.attributeName() as keyof ServeFlags);
}

function isNumeric(option: Option): boolean {
  return typeof option.defaultValue === 'string' && /^\d+$/.test(option.defaultValue);
}

function takesValue(option: Option): boolean {
  return option.required || option.optional;
}

function envName(option: Option): string {
  return 'WEDGE_' + option.long!.slice(2).toUpperCase().replaceAll('-', '_');
}

/* The option a file key names: `listen` is --listen, `splice` the negatable --no-splice. */
function optionFor(command: Command, key: string): Option | undefined {
  if (key === 'config') return undefined;
  return command.options.find((o) => (o.negate ? o.long === `--no-${key}` : o.long === `--${key}`));
}

function valueFor(option: Option, key: string, value: ConfigValue, file: string): string | boolean {
  if (!takesValue(option)) {
    if (typeof value !== 'boolean') throw new WedgeError('WEDGE_ERR_CONFIG', `${file}: ${key}: expected true or false, got ${JSON.stringify(value)}`);
    return value;
  }
  if (typeof value === 'boolean') throw new WedgeError('WEDGE_ERR_CONFIG', `${file}: ${key}: expected a value, got ${value}`);
  const text = String(value);
  if (isNumeric(option) && !/^[1-9]\d*$/.test(text)) {
    throw new WedgeError('WEDGE_ERR_CONFIG', `${file}: ${key}: expected a positive integer, got ${JSON.stringify(value)}`);
  }
  return text;
}

function suggestion(command: Command, key: string): string {
  const names = command.options.map((o) => (o.negate ? o.long!.slice(5) : o.long!.slice(2)));
  const near = names.find((name) => distance(name, key) <= 2);
  return near ? ` (did you mean ${near}?)` : '';
}

/* Levenshtein distance, for the suggestion. */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row.push(Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    previous = row;
  }
  return previous[b.length]!;
}
