import { addon } from './addon.js';

/** Tells systemd `state` ("READY=1\nMAINPID=...", sd_notify(3)); false when not started by
 * systemd (no $NOTIFY_SOCKET). Never blocks. */
export function notifySystemd(state: string): boolean {
  return addon.notifySystemd(state);
}
