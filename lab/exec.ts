/*
 * `lab exec HOST -- CMD ARGS...`: runs a command on a lab host (`client`, `s1`, ..., and
 * `router` in subnets mode) through
 * `ip netns exec`, with stdio passed through and the project's bin/ first on PATH (so `wedge`
 * works inside). Resolves to the command's exit status (128+N when killed by signal N), and
 * forwards SIGINT/SIGTERM/SIGHUP to it so that stopping `lab exec` stops the command.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { WedgeError } from '../errors/codes.js';
import { CLIENT_HOST, ROUTER_HOST } from './plan.js';
import { labEnv } from './servers.js';
import { findServer, type LabState } from './state.js';

export function hostNamespace(state: LabState, host: string): string {
  if (host === CLIENT_HOST) return state.client.ns;
  if (host === ROUTER_HOST && state.router) return state.router.ns;
  return findServer(state, host).ns;
}

export function labExec(state: LabState, host: string, argv: readonly string[]): Promise<number> {
  const ns = hostNamespace(state, host);
  if (argv.length === 0) throw new WedgeError('WEDGE_ERR_CONFIG', 'lab exec needs a command: wedge lab exec HOST -- CMD ARGS...');
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: 'inherit', env: labEnv(state.lab) });
    const forward = (sig: NodeJS.Signals): void => {
      child.kill(sig);
    };
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (const sig of signals) process.on(sig, forward);
    const done = (): void => {
      for (const sig of signals) process.off(sig, forward);
    };
    child.on('error', (err) => {
      done();
      reject(new WedgeError('WEDGE_ERR_LAB', `cannot run ip netns exec in ${ns}`, { cause: err }));
    });
    child.on('exit', (code, signal) => {
      done();
      resolve(code ?? 128 + (signal ? constants.signals[signal] : 0));
    });
  });
}
