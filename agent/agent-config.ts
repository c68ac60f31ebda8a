import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { networkInterfaces } from 'node:os';
import { parseEndpoint, type Endpoint } from '../config/endpoints.js';
import { WedgeError } from '../errors/codes.js';
import { trustedServiceKeys, type TrustedServiceKeys } from '../migrate/negotiation.js';

/* `wedge agent`'s command line, checked and turned into what the agent runs with. */

export interface AgentFlags {
  address?: string;
  serviceKey?: string[];
  ports: string;
  iface?: string;
  metrics: string;
  slowFraction: string;
  slowSamples: string;
  orphanTimeout: string;
  logFile?: string;
  logLevel: string;
}

export interface AgentConfig {
  address: string;
  trusted: TrustedServiceKeys;
  ports: number[];
  iface?: string;
  metrics: Endpoint;
  /** 0: client-triggered migration is off. */
  slowFraction: number;
  slowSamples: number;
  /** 0: connections nobody can move are never reset by the agent. */
  orphanTimeoutMs: number;
}

/** The native SYN-ACK filter lists each port (classic BPF jumps are 8 bits). */
const MAX_PORTS = 64;

function config(detail: string): WedgeError {
  return new WedgeError('WEDGE_ERR_CONFIG', detail);
}

function parsePorts(text: string): number[] {
  const ports = [...new Set(text.split(',').map((part) => part.trim()))].map(Number);
  if (ports.length === 0 || ports.length > MAX_PORTS || ports.some((port) => !Number.isInteger(port) || port < 1 || port > 65535)) {
    throw config(`--ports must be 1 to ${MAX_PORTS} comma-separated TCP ports (1-65535), got "${text}"`);
  }
  return ports;
}

function readServiceKeys(files: string[]): TrustedServiceKeys {
  if (files.length === 0) throw config('give at least one --service-key FILE (the Ed25519 public key PEM of the service)');
  const pems = files.map((file) => {
    let pem: string;
    try {
      pem = readFileSync(file, 'utf8');
    } catch (error) {
      throw config(`--service-key ${file}: ${(error as Error).message}`);
    }
    // Node would derive the public half, but the service's private key must never sit on clients.
    if (pem.includes('PRIVATE KEY')) throw config(`--service-key ${file} is a private key: give the service's public key (openssl pkey -pubout)`);
    return pem;
  });
  try {
    return trustedServiceKeys(pems);
  } catch (error) {
    throw config(`--service-key: not an Ed25519 public key PEM (${(error as Error).message})`);
  }
}

function checkLocalAddress(address: string | undefined, iface: string | undefined): string {
  if (!address || !isIPv4(address)) throw config(`--address must be the client host's IPv4 address, got "${address ?? ''}"`);
  const interfaces = networkInterfaces();
  if (iface && !interfaces[iface]) throw config(`--iface ${iface}: no such interface on this host`);
  const local = Object.values(interfaces).some((entries) => entries?.some((entry) => entry.family === 'IPv4' && entry.address === address));
  if (!local) throw config(`--address ${address} is not an address of this host`);
  return address;
}

export function parseAgentFlags(flags: AgentFlags): AgentConfig {
  const slowFraction = Number(flags.slowFraction);
  if (!Number.isFinite(slowFraction) || slowFraction < 0 || slowFraction >= 1) throw config(`--slow-fraction must be a number from 0 (off) to below 1, got "${flags.slowFraction}"`);
  const slowSamples = Number(flags.slowSamples);
  if (!Number.isSafeInteger(slowSamples) || slowSamples < 1) throw config(`--slow-samples must be a positive integer, got "${flags.slowSamples}"`);
  const orphanTimeoutMs = Number(flags.orphanTimeout);
  if (!Number.isSafeInteger(orphanTimeoutMs) || orphanTimeoutMs < 0) throw config(`--orphan-timeout must be a whole number of milliseconds (0: off), got "${flags.orphanTimeout}"`);
  return {
    address: checkLocalAddress(flags.address, flags.iface),
    trusted: readServiceKeys(flags.serviceKey ?? []),
    ports: parsePorts(flags.ports),
    ...(flags.iface ? { iface: flags.iface } : {}),
    metrics: parseEndpoint(flags.metrics, '--metrics'),
    slowFraction,
    slowSamples,
    orphanTimeoutMs,
  };
}
