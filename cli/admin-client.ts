/* A request to a wedge's admin API (`--admin` as a URL or ADDR:PORT, the bearer token if one is
 * required), for the commands that talk to a running wedge. */
import { request } from 'undici';

export interface AdminAnswer {
  statusCode: number;
  text: string;
}

export async function adminRequest(admin: string, token: string | undefined, path: string, options: { method?: 'GET' | 'POST'; timeoutMs?: number } = {}): Promise<AdminAnswer> {
  const base = admin.includes('://') ? admin : `http://${admin}`;
  const timeouts = options.timeoutMs === undefined ? {} : { headersTimeout: options.timeoutMs, bodyTimeout: options.timeoutMs };
  const response = await request(new URL(path, base), {
    method: options.method ?? 'GET',
    headers: token ? { authorization: `Bearer ${token}` } : {},
    ...timeouts,
  });
  return { statusCode: response.statusCode, text: await response.body.text() };
}
