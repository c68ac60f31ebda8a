import { isIP } from 'node:net';
import { WedgeError } from '../errors/codes.js';

export interface Endpoint {
  host: string;
  port: number;
}

/* "ADDR:PORT" or "[V6]:PORT" as given on the command line. */
export function parseEndpoint(text: string, option: string): Endpoint {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!host || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new WedgeError('WEDGE_ERR_CONFIG', `${option} must be ADDRESS:PORT, got "${text}"`);
  }
  return { host, port };
}

export function parseOriginUrl(text: string): Endpoint {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new WedgeError('WEDGE_ERR_CONFIG', `--origin must be an http:// URL, got "${text}"`);
  }
  if (url.protocol !== 'http:' || (url.pathname !== '/' && url.pathname !== '')) {
    throw new WedgeError('WEDGE_ERR_CONFIG', `--origin must be http://HOST:PORT with no path, got "${text}"`);
  }
  return { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 80) };
}

export function parseAddress(text: string, option: string): string {
  if (isIP(text) === 0) throw new WedgeError('WEDGE_ERR_CONFIG', `${option} must be an IP address, got "${text}"`);
  return text;
}

/* Whether a listening address is reachable only from this host. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}
