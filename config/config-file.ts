/*
 * `wedge serve --config FILE` (and `wedge check --config FILE`): the options in one YAML file.
 *
 * YAML because the files operators already write around replicas are YAML (docker compose,
 * Kubernetes ConfigMaps, Ansible), so the same file can sit in a ConfigMap unchanged; it is read
 * as YAML 1.2 core schema (no `no` meaning false), strictly, with duplicate keys refused.
 *
 * The file is one flat mapping: each key is a `wedge serve` option without its dashes
 * (`advert-interval: 3000`, `state-key-file: /etc/wedge/cluster.key`, `splice: false`), each value
 * a string, number or boolean. What this module checks is the file's shape; which keys exist and
 * what their values mean is the command's (cli/serve-options.ts), which names the key in every
 * error.
 */
import { readFileSync } from 'node:fs';
import { isMap, isScalar, parseDocument } from 'yaml';
import { WedgeError } from '../errors/codes.js';

export type ConfigValue = string | number | boolean;

/* The file's keys and values, in order; WEDGE_ERR_CONFIG naming the file (and line) otherwise. */
export function readConfigFile(path: string): Map<string, ConfigValue> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new WedgeError('WEDGE_ERR_CONFIG', `--config ${path}: ${(err as Error).message}`, { cause: err });
  }
  const document = parseDocument(text, { schema: 'core', strict: true, uniqueKeys: true, prettyErrors: true });
  const problem = document.errors[0];
  if (problem) throw new WedgeError('WEDGE_ERR_CONFIG', `${path}: not valid YAML: ${problem.message.split('\n')[0]}`);
  const values = new Map<string, ConfigValue>();
  if (document.contents === null) return values;
  if (!isMap(document.contents)) throw new WedgeError('WEDGE_ERR_CONFIG', `${path}: expected a mapping of options (key: value), not ${describe(document.toJS())}`);
  for (const pair of document.contents.items) {
    const key = isScalar(pair.key) ? pair.key.value : undefined;
    if (typeof key !== 'string') throw new WedgeError('WEDGE_ERR_CONFIG', `${path}: every key must be an option name, got ${describe(isScalar(pair.key) ? pair.key.value : pair.key)}`);
    const value = isScalar(pair.value) ? pair.value.value : pair.value;
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
      throw new WedgeError('WEDGE_ERR_CONFIG', `${path}: ${key}: expected a string, number or boolean, got ${describe(value)}`);
    }
    values.set(key, value);
  }
  return values;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return JSON.stringify(value);
}
