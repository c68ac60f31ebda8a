/*
 * The demo's timeline as a self-contained SVG: bytes received by the client over time, with
 * vertical markers for events (the crash, the first byte after it).
 */
export interface TimelinePoint {
  seconds: number;
  bytes: number;
}
export interface TimelineMark {
  seconds: number;
  label: string;
  color: string;
}

const WIDTH = 800;
const HEIGHT = 420;
const PAD = { left: 70, right: 20, top: 40, bottom: 50 };

export function timelineSvg(title: string, points: readonly TimelinePoint[], marks: readonly TimelineMark[]): string {
  const maxT = Math.max(1e-3, ...points.map((p) => p.seconds), ...marks.map((m) => m.seconds));
  const maxB = Math.max(1, ...points.map((p) => p.bytes));
  const x = (t: number) => PAD.left + (t / maxT) * (WIDTH - PAD.left - PAD.right);
  const y = (b: number) => HEIGHT - PAD.bottom - (b / maxB) * (HEIGHT - PAD.top - PAD.bottom);
  const mib = (b: number) => (b / 1048576).toFixed(b >= 10 * 1048576 ? 0 : 1);
  const line = points.map((p) => `${x(p.seconds).toFixed(1)},${y(p.bytes).toFixed(1)}`).join(' ');
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" font-family="sans-serif" font-size="12">
  <rect width="100%" height="100%" fill="white"/>
  <text x="${WIDTH / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(title)}</text>
  <line x1="${PAD.left}" y1="${HEIGHT - PAD.bottom}" x2="${WIDTH - PAD.right}" y2="${HEIGHT - PAD.bottom}" stroke="black"/>
  <line x1="${PAD.left}" y1="${PAD.top}" x2="${PAD.left}" y2="${HEIGHT - PAD.bottom}" stroke="black"/>
${ticks.map((f) => `  <text x="${x(f * maxT).toFixed(1)}" y="${HEIGHT - PAD.bottom + 18}" text-anchor="middle">${(f * maxT).toFixed(1)} s</text>`).join('\n')}
${ticks.map((f) => `  <text x="${PAD.left - 8}" y="${(y(f * maxB) + 4).toFixed(1)}" text-anchor="end">${mib(f * maxB)} MiB</text>`).join('\n')}
  <text x="${WIDTH / 2}" y="${HEIGHT - 12}" text-anchor="middle">time since the download started</text>
  <polyline points="${line}" fill="none" stroke="#1f77b4" stroke-width="2"/>
${marks.map((m) => `  <line x1="${x(m.seconds).toFixed(1)}" y1="${PAD.top}" x2="${x(m.seconds).toFixed(1)}" y2="${HEIGHT - PAD.bottom}" stroke="${m.color}" stroke-dasharray="4 3"/>
  <text x="${(x(m.seconds) + 4).toFixed(1)}" y="${PAD.top + 12}" fill="${m.color}">${escapeXml(m.label)}</text>`).join('\n')}
</svg>
`;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}
