/*
 * The processes a relay benchmark compares, each on loopback and configured at its best (see
 * BENCHMARKS.md in the project brief): nginx as the origin (sendfile, one worker), HAProxy in TCP
 * mode with one thread, splicing or copying, and nginx `stream` with one worker. Plus what every
 * measurement needs: free ports, waiting for a listener, and a process's CPU time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const NGINX = '/usr/sbin/nginx';
const HAPROXY = '/usr/sbin/haproxy';
const NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

export function checkPeersInstalled(): void {
  for (const [path, pkg] of [[NGINX, 'nginx-light'], [HAPROXY, 'haproxy'], [NGINX_STREAM_MODULE, 'libnginx-mod-stream'], ['/usr/bin/wrk', 'wrk']] as const) {
    if (!existsSync(path)) throw new Error(`${path} is missing: apt-get install ${pkg}`);
  }
}

/* nginx serving `dir`, the origin of every target (keep-alive for as long as the client likes). */
export function startOrigin(dir: string, port: number): ChildProcess {
  return startNginx(dir, 'origin', `http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
  client_body_temp_path ${dir}/ct; proxy_temp_path ${dir}/pt; fastcgi_temp_path ${dir}/ft; uwsgi_temp_path ${dir}/ut; scgi_temp_path ${dir}/st;
  server { listen 127.0.0.1:${port} backlog=4096; root ${dir}; } }`);
}

/* nginx `stream`: a plain TCP relay, one worker. */
export function startNginxStream(dir: string, port: number, originPort: number): ChildProcess {
  return startNginx(dir, 'stream', `stream { server { listen 127.0.0.1:${port} backlog=4096; proxy_pass 127.0.0.1:${originPort}; } }`, `load_module ${NGINX_STREAM_MODULE};`);
}

function startNginx(dir: string, name: string, body: string, preamble = ''): ChildProcess {
  const conf = join(dir, `nginx-${name}.conf`);
  writeFileSync(conf, `${preamble}
master_process off; user root; worker_processes 1; pid ${dir}/nginx-${name}.pid; error_log ${dir}/nginx-${name}-error.log;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
${body}
`);
  return spawn(NGINX, ['-c', conf, '-g', 'daemon off;'], { stdio: 'inherit' });
}

/* HAProxy 2.6 in TCP mode, one thread; `splice`: `option splice-request` and `splice-response`
 * (splice-auto does not splice here). */
export function startHaproxy(dir: string, name: string, port: number, originPort: number, splice: boolean): ChildProcess {
  const conf = join(dir, `haproxy-${name}.cfg`);
  writeFileSync(conf, `global
  nbthread 1
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen relay
  bind 127.0.0.1:${port}
${splice ? '  option splice-request\n  option splice-response\n' : ''}  server origin 127.0.0.1:${originPort}
`);
  return spawn(HAPROXY, ['-f', conf, '-db'], { stdio: 'inherit' });
}

/* utime + stime of every thread the process has had, in seconds (clock ticks of 10 ms). */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

