import type { Command } from 'commander';
import type { AgentFlags } from '../agent/agent-config.js';

/* Repeatable option: each occurrence adds one value. */
function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function registerAgentCommand(program: Command): void {
  program
    .command('agent')
    .description('run the TCP Migrate client agent on a client host: lets Wedge servers move this host\'s connections between replicas')
    .option('--address <ip>', 'this client host\'s IPv4 address (the one its connections to the service use); required')
    .option('--service-key <file>', 'Ed25519 public key (PEM) of a service whose servers may move connections; repeat for several services; required', collect)
    .option('--ports <list>', 'comma-separated TCP ports of the services; connections to them are learned', '80')
    .option('--iface <name>', 'watch only this interface (default: all)')
    .option('--metrics <addr:port>', 'Prometheus metrics on GET /metrics (loopback only)', '127.0.0.1:9191')
    .option('--slow-fraction <f>', 'ask the server to move a connection whose throughput stays below this fraction of its best; 0 turns it off', '0.3')
    .option('--slow-samples <n>', 'how many consecutive 500 ms samples must be slow before asking', '4')
    .option('--orphan-timeout <ms>', 'reset a connection whose server never answered the key exchange (so no replica can move it) once it has received nothing for this long and a last key exchange fails; 0 turns it off', '5000')
    .option('--log-file <path>', 'write JSON logs here instead of stderr')
    .option('--log-level <level>', 'trace, debug, info, warn or error', process.env.WEDGE_LOG_LEVEL ?? 'info')
    .addHelpText(
      'after',
      `
The agent watches this host's new TCP connections to the service ports, agrees a secret key for
each with the server (checked against --service-key), and then accepts that key's Migrate SYNs:
when a Wedge server fails or sheds load, another replica takes the connection over and the agent
rewrites its packets (nftables) so the unmodified application keeps talking to "the old server".
It also asks the server to move a connection that became much slower than it was, and resets
(loudly, counted) a connection that nobody can save: its server went silent before their key
exchange finished and then stopped sending (--orphan-timeout), instead of leaving it hanging.
Connections to servers that are not Wedges are left alone. Needs root (CAP_NET_ADMIN,
CAP_NET_RAW), nftables (nft) and iproute2 (ss). Stop it with Ctrl-C or SIGTERM: it removes its
rules.

Example (client 10.0.0.5, service public key copied from the servers):
  wedge agent --address 10.0.0.5 --service-key /etc/wedge/service.pub --ports 80,8080
Then: curl -o big.iso http://10.0.0.101/big.iso   and   curl -s 127.0.0.1:9191/metrics`,
    )
    .action(async (flags: AgentFlags) => {
      // Loaded here so that the other commands never need the native addon.
      const { runAgent } = await import('../agent/run-agent.js');
      await runAgent(flags);
    });
}
