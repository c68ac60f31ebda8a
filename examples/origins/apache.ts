/*
 * Debian's Apache httpd as a Wedge origin. The lab renders apache.conf.template (beside this
 * file's source) once per server and runs `/usr/sbin/apache2 -f CONF -DFOREGROUND` inside the
 * server's namespace, so the process stays a child it can track and kill. Byte ranges are in
 * Apache's core; `FileETag MTime Size` gives strong ETags that are equal across replicas because
 * the lab preserves file mtimes. Workers drop root to www-data when that user exists.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../config/package.js';

export const APACHE_BINARY = '/usr/sbin/apache2';
export const APACHE_MODULES = '/usr/lib/apache2/modules';

export interface ApacheSite {
  /** Server name, used in log file names and ServerName. */
  server: string;
  /** Directory for the server root, run dir and config file (created). */
  serverRoot: string;
  /** Directory the logs go to. */
  logDir: string;
  docRoot: string;
  /** "127.0.0.1:8080". */
  listen: string;
}

function render(template: string, values: Record<string, string>): string {
  return template.replace(/\{\{([A-Z_]+)\}\}/g, (whole, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`apache template: no value for ${whole}`);
    if (/["\n]/.test(value)) throw new Error(`apache template: ${key} may not contain a quote or newline`);
    return value;
  });
}

/** Writes the site's config file and run directory; returns the config file's path. */
export async function writeApacheConfig(site: ApacheSite): Promise<string> {
  const template = await readFile(join(PACKAGE_ROOT, 'examples', 'origins', 'apache.conf.template'), 'utf8');
  const runDir = join(site.serverRoot, 'run');
  await mkdir(runDir, { recursive: true, mode: 0o755 });
  let typesConfig = '/etc/mime.types';
  if (!existsSync(typesConfig)) {
    typesConfig = join(site.serverRoot, 'mime.types');
    await writeFile(typesConfig, '');
  }
  const unprivileged = existsSync('/etc/passwd') && /^www-data:/m.test(await readFile('/etc/passwd', 'utf8'));
  const config = render(template, {
    SERVER: site.server,
    SERVER_ROOT: site.serverRoot,
    LOG_DIR: site.logDir,
    DOC_ROOT: site.docRoot,
    LISTEN: site.listen,
    TYPES_CONFIG: typesConfig,
    USER: unprivileged ? 'www-data' : '#0',
    GROUP: unprivileged ? 'www-data' : '#0',
  });
  const file = join(site.serverRoot, 'apache2.conf');
  await writeFile(file, config, { mode: 0o644 });
  return file;
}

/** The command line that runs the site in the foreground. */
export function apacheCommand(configFile: string): string[] {
  return [APACHE_BINARY, '-f', configFile, '-DFOREGROUND'];
}
