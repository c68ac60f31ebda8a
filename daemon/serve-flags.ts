/* `wedge serve`'s options as commander hands them over (text, checked by the daemon). */
export interface ServeFlags {
  name: string;
  listen: string;
  origin: string;
  admin: string;
  adminToken?: string;
  splice: boolean;
  stateListen?: string;
  address?: string;
  service?: string;
  iface?: string;
  stateKeyFile?: string;
  takeover: string;
  migrateKey?: string;
  groups: string;
  groupBase: string;
  groupPort: string;
  advertInterval: string;
  expire: string;
  heartbeatInterval: string;
  deadAfter: string;
  heartbeatLease: string;
  maxConnections: string;
  headerTimeout: string;
  idleTimeout: string;
  bodyTimeout: string;
  responseTimeout: string;
  originRetry: string;
  peerPort: string;
  maxRequestLine: string;
  maxEmptyLines: string;
  forwarded: string;
  onSigterm: string;
  drainTimeout: string;
  logFile?: string;
  logLevel: string;
}
