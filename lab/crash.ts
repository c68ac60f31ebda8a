/*
 * Failure injection. `crash` is a power loss: the server's links (the cluster one and, in subnets
 * mode, the one to the router) go down first and only then is every process in its namespace
 * SIGKILLed, so the dying kernel sockets cannot get a FIN or RST onto the wire. `declare-dead` is the opposite mistake: the server stays up, but every other
 * live server's admin API is told it is dead (POST /peers/<own address>/dead, from inside that
 * server's namespace, where the admin API listens on loopback).
 */
import { WedgeError } from '../errors/codes.js';
import { killNamespaceProcesses, setLinkDown } from './netns.js';
import { ADMIN_PORT } from './plan.js';
import { tryRunIn } from './run.js';
import { findServer, linksOf, writeState, type LabState } from './state.js';

export async function labCrash(state: LabState, name: string): Promise<number[]> {
  const server = findServer(state, name);
  for (const link of linksOf(server)) await setLinkDown(server.ns, link);
  const killed = await killNamespaceProcesses(server.ns);
  server.status = 'crashed';
  await writeState(state);
  return killed;
}

export interface DeclareResult {
  server: string;
  ok: boolean;
  detail: string;
}

export async function labDeclareDead(state: LabState, name: string): Promise<DeclareResult[]> {
  const dead = findServer(state, name);
  const others = state.servers.filter((s) => s.name !== dead.name && s.status === 'alive');
  if (others.length === 0) throw new WedgeError('WEDGE_ERR_LAB', `no other live server to tell that ${dead.name} is dead`);
  const url = `http://127.0.0.1:${ADMIN_PORT}/peers/${dead.address}/dead`;
  return Promise.all(
    others.map(async (server): Promise<DeclareResult> => {
      const answer = await tryRunIn(server.ns, 'curl', ['-sS', '--max-time', '5', '--noproxy', '*', '-X', 'POST', '-w', '\n%{http_code}', url], {
        timeoutMs: 10_000,
      });
      if (answer === null) return { server: server.name, ok: false, detail: `its admin API at ${server.admin} does not answer` };
      const lines = answer.stdout.trimEnd().split('\n');
      const status = Number(lines.pop());
      const body = lines.join(' ').trim();
      return { server: server.name, ok: status >= 200 && status < 300, detail: `HTTP ${status} ${body}`.trim() };
    }),
  );
}
