import { spawn } from 'node:child_process';
import { WedgeError } from '../errors/codes.js';
import { MIGRATE_EXID, MIGRATE_OPTION_KIND, type Endpoint } from '../migrate/option.js';

/*
 * Theory of operation: the client agent's nftables rules (text builders, and nft to apply them).
 *
 * One table per agent, `ip wedge_agent_<pid>`, so several agents (or a crashed one's leftovers)
 * never touch each other's rules and stopping removes everything in one statement.
 *
 * - chain migrate_syn (input, raw priority): drops incoming Migrate SYNs to the client address
 *   once the agent's AF_PACKET capture has seen them, so the client kernel never answers them
 *   with its own RST; the agent answers instead. Input, not prerouting: when the client address
 *   sits on a bridge with br_netfilter, prerouting chains already run at the bridge port, before
 *   the bridge device's AF_PACKET tap would see the SYN; input runs after it.
 * - per migrated connection, three chains named by its token (t<hex>), stateless and `notrack`
 *   so conntrack never sees two views of one flow (the rewrite of the reference recipe):
 *     pre_t<hex>  (prerouting): from the new server to the client: source rewritten to the old
 *                 server's address and port, marked, so the unmodified client socket accepts it.
 *                 SYNs are left alone: the restored flow never carries one, and a later Migrate
 *                 SYN from this server must reach the agent with its real source.
 *     in_t<hex>   (input): anything still from the old server for that connection, i.e. unmarked,
 *                 is answered with RST (the old server must learn the connection moved).
 *     out_t<hex>  (output): from the client socket to the old server: destination rewritten to
 *                 the new server. Except a RST without ACK: that is what in_'s reject (or the
 *                 client kernel, for a segment it has no socket for) answers to a segment that
 *                 carried an ACK, i.e. the answer to the OLD server's late data; rewritten, it
 *                 would reset the new server's healthy connection. The client socket's own
 *                 resets (an application abort) carry ACK and do go to the new server.
 *   A later migration of the same connection replaces the three chains in one nft transaction.
 */

export interface RewriteRule {
  /** Names the chains: the connection's token, in hex. */
  id: string;
  client: Endpoint;
  /** The address and port the client socket believes it talks to (the original server). */
  original: Endpoint;
  /** Where its packets now go. */
  current: Endpoint;
  /** Marks rewritten packets so in_ can tell them from the old server's. */
  mark: number;
}

export function agentTableName(pid = process.pid): string {
  return `wedge_agent_${pid}`;
}

/** The table with its Migrate SYN drop chain; `add` is idempotent in nft. */
export function baseTableText(table: string, clientAddress: string): string {
  return `add table ip ${table}
add chain ip ${table} migrate_syn { type filter hook input priority -300; }
flush chain ip ${table} migrate_syn
add rule ip ${table} migrate_syn ip daddr ${clientAddress} tcp flags & (syn | ack) == syn @th,160,8 ${MIGRATE_OPTION_KIND} @th,176,16 ${MIGRATE_EXID} drop
`;
}

function chainNames(id: string): [string, string, string] {
  return [`pre_t${id}`, `in_t${id}`, `out_t${id}`];
}

/** Installs (or replaces) one connection's rewrite. */
export function rewriteText(table: string, rule: RewriteRule): string {
  const { client: c, original: o, current: n } = rule;
  const mark = `0x${rule.mark.toString(16)}`;
  const [pre, input, out] = chainNames(rule.id);
  return `add chain ip ${table} ${pre} { type filter hook prerouting priority -300; }
add chain ip ${table} ${input} { type filter hook input priority -300; }
add chain ip ${table} ${out} { type filter hook output priority -300; }
flush chain ip ${table} ${pre}
flush chain ip ${table} ${input}
flush chain ip ${table} ${out}
add rule ip ${table} ${pre} ip saddr ${n.address} tcp sport ${n.port} ip daddr ${c.address} tcp dport ${c.port} tcp flags & syn == 0 ip saddr set ${o.address} tcp sport set ${o.port} meta mark set ${mark} notrack accept
add rule ip ${table} ${input} ip saddr ${o.address} tcp sport ${o.port} ip daddr ${c.address} tcp dport ${c.port} meta mark != ${mark} reject with tcp reset
add rule ip ${table} ${out} ip saddr ${c.address} tcp sport ${c.port} ip daddr ${o.address} tcp dport ${o.port} tcp flags & (rst | ack) == rst accept
add rule ip ${table} ${out} ip saddr ${c.address} tcp sport ${c.port} ip daddr ${o.address} tcp dport ${o.port} ip daddr set ${n.address} tcp dport set ${n.port} notrack accept
`;
}

/** Removes one connection's rewrite (chains must be emptied before they can be deleted). */
export function removeRewriteText(table: string, id: string): string {
  return chainNames(id).map((chain) => `flush chain ip ${table} ${chain}\ndelete chain ip ${table} ${chain}\n`).join('');
}

export function deleteTableText(table: string): string {
  return `delete table ip ${table}\n`;
}

/** Runs `nft -f -` with `script` as one transaction; rejects with WEDGE_ERR_MIGRATE_AGENT. */
export function runNft(script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('nft', ['-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let errors = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (errors += chunk));
    child.on('error', (error) => reject(new WedgeError('WEDGE_ERR_MIGRATE_AGENT', `nft: ${error.message}`, { cause: error })));
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new WedgeError('WEDGE_ERR_MIGRATE_AGENT', `nft -f - exited ${code}: ${errors.trim()}\n${script}`));
    });
    child.stdin.end(script);
  });
}
