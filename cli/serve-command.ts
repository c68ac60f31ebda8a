import type { Command } from 'commander';
import type { ServeFlags } from '../daemon/serve-flags.js';
import { DEFAULT_MAX_CONNECTIONS, DEFAULT_ORIGIN_RECOVERY, RELAY_LIMITS } from '../relay/options.js';
import { DEFAULT_PEER_PORT } from '../daemon/peer-range.js';

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the wedge: relay client connections on the service address to the local HTTP origin, and take over a dead peer\'s')
    .option('--name <name>', 'this server\'s name in logs and the admin API', 'wedge')
    .option('--listen <addr:port>', 'where clients connect; 0.0.0.0 also accepts on adopted addresses', '0.0.0.0:80')
    .option('--origin <url>', 'the local HTTP/1.1 origin', 'http://127.0.0.1:8080')
    .option('--admin <addr:port>', 'admin API (connections, metrics, health, death reports); loopback unless a token is set', '127.0.0.1:9090')
    .option('--admin-token <token>', 'require this bearer token on the admin API (env WEDGE_ADMIN_TOKEN)', process.env.WEDGE_ADMIN_TOKEN)
    .option('--state-listen <addr:port>', 'turn the state contract on (stateful origins, see README): origins PUT per-connection snapshots here (loopback only), e.g. 127.0.0.1:9092; every request to the origin then carries Wedge-Exchange and Wedge-State')
    .option('--no-splice', 'relay response bodies through JavaScript instead of moving them in the kernel with splice(2)')
    .option('--address <ip>', 'this server\'s own address on the cluster network: turns failover on (soft state, takeover)')
    .option('--service <addr:port>', 'the service address clients use here, adopted by a peer if this server dies')
    .option('--iface <name>', 'interface for adopted addresses and probes (default: the one holding --address)')
    .option('--state-key-file <path>', 'cluster key for soft state: 32 bytes or 64 hex digits (or env WEDGE_STATE_KEY)')
    .option('--takeover <mode>', 'how a dead peer\'s connections move here: address (adopt its service address; clients unmodified) or migrate (TCP Migrate to this server\'s own address; clients run `wedge agent`)', 'address')
    .option('--migrate-key <path>', 'the service\'s Ed25519 private key (PEM, the same on every replica): agree TCP Migrate keys with client agents')
    .option('--groups <n>', 'number of support groups (a server\'s group is a hash of its address)', '1')
    .option('--group-base <ip>', 'multicast address of group 0; group i uses base + i', '239.77.0.1')
    .option('--group-port <port>', 'UDP port of the soft-state channel', '7077')
    .option('--advert-interval <ms>', 'periodic soft-state advert of every connection', '3000')
    .option('--expire <ms>', 'a connection record not refreshed for this long is forgotten', '10000')
    .option('--heartbeat-interval <ms>', 'heartbeat period', '100')
    .option('--dead-after <ms>', 'a peer silent this long is dead (detection bound ~ this + 50 ms)', '400')
    .option('--heartbeat-lease <ms>', 'heartbeats (sent by their own thread) stop this long after the main event loop last ran, so a hung daemon is found dead', '1000')
    .option('--max-connections <n>', 'client connections served at once; beyond it a new client gets 503 (WEDGE_ERR_TOO_MANY_CONNECTIONS) and is closed', String(DEFAULT_MAX_CONNECTIONS))
    .option('--header-timeout <ms>', 'from the first byte of a request head to its end; then 408 and close', String(RELAY_LIMITS.headerTimeoutMs))
    .option('--idle-timeout <ms>', 'a keep-alive connection with no request (or closing, with nothing left to send) is closed quietly after this', String(RELAY_LIMITS.idleTimeoutMs))
    .option('--body-timeout <ms>', 'longest pause between two bytes of a request body; then 408 (or a reset once the response began)', String(RELAY_LIMITS.bodyTimeoutMs))
    .option('--response-timeout <ms>', 'longest pause in a response (origin silent, or client not reading); then 504 (or a reset once the response began)', String(RELAY_LIMITS.responseTimeoutMs))
    .option('--origin-retry <ms>', 'when the origin drops a response mid-body (restarted, a worker killed) or stalls in it for --response-timeout, ask it again for the rest (Range + If-Range) for this long, then the peers\' origins; only if none serves the same representation, a counted reset', String(DEFAULT_ORIGIN_RECOVERY.retryMs))
    .option('--peer-port <port>', 'with --address: TCP port on --address where this wedge serves the rest of a response from its origin to a peer whose own origin is away (requests signed with the cluster key; the same on every replica)', String(DEFAULT_PEER_PORT))
    .option('--max-request-line <bytes>', 'longest request line; beyond it 414 (WEDGE_ERR_HTTP_URI_TOO_LONG)', String(RELAY_LIMITS.maxRequestLineBytes))
    .option('--max-empty-lines <n>', 'empty lines (CRLF) ignored before a request line; more get 400', String(RELAY_LIMITS.maxEmptyLines))
    .option('--forwarded <mode>', 'tell the origin each client\'s address: none, xff (X-Forwarded-For) or forwarded (RFC 7239 Forwarded: for=...); the client\'s own X-Forwarded-For and Forwarded fields are then removed (Apache: mod_remoteip with RemoteIPHeader X-Forwarded-For; nginx: real_ip_header)', 'none')
    .option('--handover <path>', 'in-place upgrade: a unix socket (mode 0600) where this wedge hands its listener and live connections to a new `wedge serve` started with the same option; at start-up, take them from the wedge running there (none: start afresh)')
    .option('--on-sigterm <action>', 'drain (hand every connection to the support group, then exit; see `wedge drain`) or exit (stop at once, like SIGINT)', 'drain')
    .option('--drain-timeout <ms>', 'longest drain: connections still here then are reset (counted, reason drain-not-moved)', '30000')
    .option('--log-file <path>', 'write JSON logs here instead of stderr')
    .option('--log-level <level>', 'trace, debug, info, warn or error', process.env.WEDGE_LOG_LEVEL ?? 'info')
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
    .action(async (flags: ServeFlags) => {
      // Loaded here so that the other commands (lab, status, demo) never need the native addon.
      const { runDaemon } = await import('../daemon/daemon.js');
      await runDaemon(flags);
    });
}
