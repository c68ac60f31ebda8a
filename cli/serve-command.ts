import type { Command } from 'commander';
import { addServeOptions, resolveServeFlags, SOURCES_HELP } from './serve-options.js';

export function registerServeCommand(program: Command): void {
  const serve = program
    .command('serve')
    .description('run the wedge: relay client connections on the service address to the local HTTP origin, and take over a dead peer\'s');
  addServeOptions(serve)
    .addHelpText('after', SOURCES_HELP)
    .addHelpText(
      'after',
      `
Without --address the wedge is a plain relay that records stream maps. With it, the server joins
its support group, advertises every connection, and adopts a dead peer's service addresses and
connections. Failover needs root (CAP_NET_ADMIN, CAP_NET_RAW) and nftables.

Start-up checks (with --address; each printed as "[+] VERIFIED ..." or "[!] CHECK FAILED ...
Fix: ..." on stderr and in the log; a failure stops the wedge with exit status 2):
  root or CAP_NET_ADMIN + CAP_NET_RAW     TCP_REPAIR usable on a test socket
  \`nft\` present and usable               net.ipv4.ip_nonlocal_bind = 1 (--takeover address)
  the interface holding --address exists and is up
  a multicast route (224.0.0.0/4 or the group addresses) on that interface

Example (replica s1 of a cluster on 10.0.0.0/24, service address 10.0.0.101):
  wedge serve --name s1 --address 10.0.0.11 --service 10.0.0.101:80 \\
              --origin http://127.0.0.1:8080 --state-key-file /etc/wedge/cluster.key
Then: curl http://10.0.0.101/file   and   wedge status

Front-end limits (nginx and HAProxy defaults as the reference): request heads are parsed strictly
and bounded (16 KB head, --max-request-line, --max-empty-lines; HTTP/0.9 and malformed chunked
request bodies get 400 and are closed before the origin waits on them); each connection has one
timer for --header-timeout, --idle-timeout, --body-timeout and --response-timeout. Metrics:
wedge_rejects_total{code}, wedge_timeouts_total{deadline}, wedge_aborts_total{reason}.

TCP Migrate (replicas on different subnets; the client host runs \`wedge agent\` with the public
half of the service key): add  --takeover migrate --migrate-key /etc/wedge/service.key
and give each replica its own --service address. A member of the dead server's group then moves
each connection to its own address; POST /shed?count=N on the admin API hands N connections off.`,
    )
    .action(async (_flags: unknown, command: Command) => {
      const flags = resolveServeFlags(command);
      // Loaded here so that the other commands (lab, status, demo) never need the native addon.
      const { runDaemon } = await import('../daemon/daemon.js');
      await runDaemon(flags);
    });
}
