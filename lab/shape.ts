/*
 * `lab shape SERVER RATE|off`: changes one server's egress shaping while the lab runs (e.g. to
 * throttle the server a download is coming from, mid-download). It shapes the link that carries
 * the server's service traffic: `eth0` on the one-segment lab (UDP soft state still bypasses the
 * tbf), the link to the router (`eth1`) in subnets mode. `off` removes the shaping.
 */
import { WedgeError } from '../errors/codes.js';
import { parseRate, shapeEgress, unshapeEgress } from './shaping.js';
import { findServer, serviceIfaceOf, writeState, type LabState } from './state.js';

export async function labShape(state: LabState, name: string, rateText: string): Promise<string | null> {
  const server = findServer(state, name);
  if (server.status !== 'alive') throw new WedgeError('WEDGE_ERR_LAB', `${server.name} has crashed; its links are down`);
  const iface = serviceIfaceOf(server);
  if (rateText === 'off') {
    await unshapeEgress(server.ns, iface);
    delete server.rate;
  } else {
    const rate = parseRate(rateText);
    await shapeEgress(server.ns, iface, rate, { bypassUdp: state.subnets !== true });
    server.rate = rate.text;
  }
  await writeState(state);
  return server.rate ?? null;
}
