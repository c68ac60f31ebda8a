/*
 * A synthetic media stream server that keeps the wedge's state contract: `GET /stream/<id>?frames=N&fps=F`
 * sends N frames (examples/media-stream/content.ts) at F frames a second with a Content-Length
 * and no validator (generated, so a Range resume is impossible), and after every frame stores the
 * snapshot "next frame" with the wedge. Restarted from a snapshot (Wedge-Resume) it answers
 * `Wedge-Resumed: <k>` and streams on from that frame. `IGNORE_RESUME=1` makes it ignore
 * Wedge-Resume (to show the wedge resetting rather than splicing in wrong bytes).
 *
 *   PORT=8080 node dist/examples/media-stream/server.js    (the lab: --origin-cmd, see README.md)
 */
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { wedgeState } from '../../app/index.js';
import { FRAME_BYTES, frame } from './content.js';

const port = Number(process.env.PORT ?? '8080');
const ignoreResume = process.env.IGNORE_RESUME === '1';

const server = http.createServer((req, res) => {
  void serve(req, res).catch((err: unknown) => {
    process.stderr.write(`stream failed: ${err instanceof Error ? err.message : String(err)}\n`);
    res.destroy();
  });
});

async function serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://origin');
  const match = /^\/stream\/([\w-]{1,64})$/.exec(url.pathname);
  if (!match) {
    res.writeHead(req.url === '/' ? 200 : 404, { 'content-type': 'text/plain' }).end('media-stream: GET /stream/<id>?frames=N&fps=F\n');
    return;
  }
  const frames = Math.min(Number(url.searchParams.get('frames') ?? '250'), 100_000);
  const fps = Math.min(Math.max(Number(url.searchParams.get('fps') ?? '50'), 1), 1000);
  const state = wedgeState(req);
  const resume = ignoreResume ? undefined : state.resume;
  const from = resume ? Number(resume.snapshot.toString()) : 0;
  if (!Number.isInteger(from) || from < 0 || from > frames || (resume && resume.offset !== from * FRAME_BYTES)) {
    res.writeHead(400).end('bad snapshot\n');
    return;
  }
  res.writeHead(200, {
    'content-type': 'application/octet-stream',
    'content-length': String((frames - from) * FRAME_BYTES),
    ...(resume ? { 'wedge-resumed': String(resume.offset) } : {}),
  });
  for (let i = from; i < frames && !res.destroyed; i++) {
    res.write(frame(match[1]!, i));
    await state.save(String(i + 1), { offset: (i + 1) * FRAME_BYTES });
    await sleep(1000 / fps);
  }
  res.end();
}

server.listen(port, '127.0.0.1', () => process.stderr.write(`media-stream on 127.0.0.1:${port}\n`));
