/*
 * The `wedge agent` process: checks what it needs, then wires the parts together: the
 * MigrateAgent (Migrate SYNs and rewrite rules), the ConnectionLearner (finds and negotiates the
 * host's connections, forgets ended ones), the SlowWatch and MoveSender (client-triggered
 * migration), the OrphanWatch (resets what no replica can move), metrics and one JSON log line
 * per event. SIGTERM / SIGINT stop the captures, delete the agent's nftables table and exit 0.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { pino, type Logger } from 'pino';
import { checkPrivileges, PRIVILEGE_FIX } from '../native/privileges.js';
import { WedgeError } from '../errors/codes.js';
import type { Endpoint } from '../migrate/option.js';
import { MigrateAgent, type AgentEvent } from './agent.js';
import { parseAgentFlags, type AgentConfig, type AgentFlags } from './agent-config.js';
import { AgentMetrics, serveAgentMetrics } from './agent-metrics.js';
import { ConnectionLearner, type LearnerEvent } from './learner.js';
import { MoveSender } from './move-sender.js';
import { OrphanWatch } from './orphan-watch.js';
import { SlowWatch } from './slow-watch.js';

const run = promisify(execFile);

/* After a migration the new path needs a moment (slow start) before its throughput means much. */
const WARMUP_SAMPLES = 2;
const MIN_MOVE_INTERVAL_MS = 5000;

function text(endpoint: Endpoint): string {
  return `${endpoint.address}:${endpoint.port}`;
}

async function requireTool(command: string, args: string[], install: string): Promise<void> {
  try {
    await run(command, args);
  } catch (error) {
    throw new WedgeError('WEDGE_ERR_PRIVILEGE', `\`${command}\` is not usable (${(error as Error).message.split('\n')[0]}). Fix: ${install}`);
  }
}

async function assertPrerequisites(config: AgentConfig): Promise<void> {
  const { netAdmin, netRaw } = checkPrivileges();
  const missing = [
    ...(netAdmin ? [] : ['CAP_NET_ADMIN is missing (nftables rewrite rules)']),
    ...(netRaw ? [] : ['CAP_NET_RAW is missing (packet capture, SYN-ACK and RST answers)']),
  ];
  if (missing.length) throw new WedgeError('WEDGE_ERR_PRIVILEGE', `${missing.join('; ')}. Fix: ${PRIVILEGE_FIX}`);
  await requireTool('nft', ['--version'], 'install nftables (apt-get install nftables)');
  if (config.slowFraction > 0 || config.orphanTimeoutMs > 0) await requireTool('ss', ['-V'], 'install iproute2 (apt-get install iproute2), or pass --slow-fraction 0 --orphan-timeout 0');
}

function makeLogger(flags: AgentFlags, address: string): Logger {
  return pino(
    { name: 'wedge-agent', level: flags.logLevel, base: { address } },
    flags.logFile ? pino.destination({ dest: flags.logFile, mkdir: true, sync: false }) : pino.destination(2),
  );
}

export async function runAgent(flags: AgentFlags): Promise<void> {
  const config = parseAgentFlags(flags);
  await assertPrerequisites(config);
  const logger = makeLogger(flags, config.address);
  const metrics = new AgentMetrics(() => agent.size);
  const metricsServer = await serveAgentMetrics(metrics, config.metrics);
  const mover = await MoveSender.open(config.address);
  let watch: SlowWatch | undefined;

  const onAgentEvent = (event: AgentEvent) => {
    if (event.kind === 'migrated') {
      metrics.migrations.inc();
      watch?.migrated(event.token);
      logger.info({ token: event.token, request: event.request, from: text(event.from), to: text(event.to) }, 'migrated');
    } else if (event.kind === 'repeated') {
      logger.info({ token: event.token, request: event.request, to: text(event.to) }, 'retransmitted Migrate SYN answered again');
    } else if (event.kind === 'invited') {
      learner.invited({ address: event.syn.destinationAddress, port: event.syn.destinationPort }, { address: event.syn.sourceAddress, port: event.syn.sourcePort });
    } else if (event.kind === 'rejected') {
      metrics.rejectedSyns.inc({ reason: event.reason });
      logger.warn({ reason: event.reason, from: `${event.syn.sourceAddress}:${event.syn.sourcePort}` }, 'rejected Migrate SYN');
    } else {
      logger.error({ err: event.error }, 'Migrate SYN handling failed');
    }
  };
  const agent = new MigrateAgent({ address: config.address, ...(config.iface ? { ifname: config.iface } : {}), onEvent: onAgentEvent });

  const onLearnerEvent = (event: LearnerEvent) => {
    if (event.kind === 'error') return logger.error({ err: event.error }, 'connection learning failed');
    const connection = { client: text(event.binding.client), server: text(event.binding.server) };
    if (event.kind === 'learned') {
      logger.info(connection, 'connection learned');
    } else if (event.kind === 'negotiated') {
      metrics.negotiations.inc({ result: 'ok' });
      logger.info({ token: event.keys.token.toString('hex'), ...connection }, 'negotiated');
    } else if (event.kind === 'unnegotiated') {
      // Most servers on the service ports may well not be Wedges: not an error.
      metrics.negotiations.inc({ result: 'unnegotiated' });
      logger.debug({ ...connection, reason: event.error.message }, 'unnegotiated');
    } else if (event.kind === 'invitation') {
      metrics.invitations.inc({ result: event.accepted ? 'negotiated' : 'failed' });
      logger.info({ ...connection, via: event.via, accepted: event.accepted }, 'key exchange with an inviting replica');
    } else if (event.kind === 'ignored') {
      metrics.ignoredSynAcks.inc({ reason: event.reason });
      logger.warn({ ...connection, reason: event.reason }, 'SYN-ACK ignored');
    } else {
      mover.forget(event.keys.token);
      logger.info({ token: event.keys.token.toString('hex'), ...connection }, 'forgotten');
    }
  };
  const learner = new ConnectionLearner({
    address: config.address,
    ports: config.ports,
    ...(config.iface ? { ifname: config.iface } : {}),
    trusted: config.trusted,
    registry: agent,
    onEvent: onLearnerEvent,
  });

  if (config.slowFraction > 0) {
    watch = new SlowWatch({
      ports: config.ports,
      detector: { fraction: config.slowFraction, samples: config.slowSamples, warmupSamples: WARMUP_SAMPLES, minIntervalMs: MIN_MOVE_INTERVAL_MS },
      connections: () => learner.negotiated(),
      onSlow: ({ keys }, bestBytesPerSecond) => {
        const server = agent.currentServer(keys.token);
        if (!server) return;
        const sequence = mover.send(keys.key, keys.token, server);
        metrics.moveRequests.inc();
        logger.info({ token: keys.token.toString('hex'), server: text(server), sequence, bestBytesPerSecond: Math.round(bestBytesPerSecond) }, 'move requested');
      },
      onError: (error) => logger.warn({ err: error }, 'could not read socket byte counts (ss)'),
    });
  }

  const orphans = config.orphanTimeoutMs > 0
    ? new OrphanWatch({
        ports: config.ports,
        quietMs: config.orphanTimeoutMs,
        connections: () => learner.silent(),
        retry: (key) => learner.retry(key),
        onReset: (binding, quietMs) => {
          metrics.orphanResets.inc();
          logger.error({ client: text(binding.client), server: text(binding.server), quietMs }, 'connection reset: its server went silent before the key exchange finished, so no replica can move it');
        },
        onError: (error) => logger.warn({ err: error }, 'could not watch unprotected connections (ss)'),
      })
    : undefined;

  const stopAll = async () => {
    orphans?.stop();
    watch?.stop();
    await learner.stop();
    await agent.stop();
    await mover.close();
    await metricsServer.close();
  };
  try {
    await agent.start();
    learner.start();
    watch?.start();
    orphans?.start();
  } catch (error) {
    await stopAll().catch(() => undefined);
    throw error instanceof WedgeError ? error : new WedgeError('WEDGE_ERR_MIGRATE_AGENT', (error as Error).message, { cause: error });
  }
  logger.info({ table: agent.table, ports: config.ports, metrics: text({ address: config.metrics.host, port: config.metrics.port }), slowFraction: config.slowFraction }, 'agent started');

  const stop = (signal: string) => {
    logger.info({ signal }, 'stopping');
    stopAll()
      .catch((error: Error) => logger.error({ err: error }, 'stopping failed'))
      .finally(() => logger.flush(() => process.exit(0)));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
