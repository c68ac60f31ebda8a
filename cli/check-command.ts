import type { Command } from 'commander';
import { addServeOptions, numericOptions, resolveServeFlags, SOURCES_HELP } from './serve-options.js';

export function registerCheckCommand(program: Command): void {
  const check = program
    .command('check')
    .description('check the configuration `wedge serve` would run with (same options, --config included) and this host, without starting anything');
  addServeOptions(check)
    .option('--json', 'print the results as one JSON array')
    .addHelpText('after', SOURCES_HELP)
    .addHelpText(
      'after',
      `
Prints one line per item, "[+] VERIFIED ..." or "[!] CHECK FAILED ... Fix: ...", and exits 2 if any
failed: every option parses; the origin answers; with --address also the cluster key (mode 0600,
32 bytes or 64 hex digits), root or CAP_NET_ADMIN + CAP_NET_RAW, TCP_REPAIR, nft,
net.ipv4.ip_nonlocal_bind (address takeover), the interface holding --address, its multicast
route, and the clock offset to every live peer heard in the group (within 500 ms; asked on
--peer-port). Example:  wedge check --config /etc/wedge/wedge.yaml`,
    )
    .action(async (_flags: unknown, command: Command) => {
      const { checkConfiguration } = await import('../daemon/check.js');
      let results;
      try {
        results = await checkConfiguration(resolveServeFlags(command), numericOptions(command));
      } catch (err) {
        results = [{ check: 'configuration', what: 'configuration', ok: false, detail: (err as Error).message, fix: 'correct that key or option', code: 'WEDGE_ERR_CONFIG' as const }];
      }
      const { formatCheck } = await import('../daemon/preflight.js');
      if (command.opts<{ json?: boolean }>().json) process.stdout.write(JSON.stringify(results) + '\n');
      else for (const result of results) process.stdout.write(formatCheck(result) + '\n');
      if (results.some((r) => !r.ok)) process.exitCode = 2;
    });
}
