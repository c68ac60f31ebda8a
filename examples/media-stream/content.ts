/* The synthetic media stream's content: a pure function of the stream id and the frame number,
 * so any replica (and a test) can compute every byte independently. */
import { createHash } from 'node:crypto';

export const FRAME_BYTES = 4096;

export function frame(stream: string, index: number): Buffer {
  const seed = createHash('sha256').update(`${stream}:${index}`).digest();
  const out = Buffer.alloc(FRAME_BYTES);
  for (let at = 0; at < FRAME_BYTES; at += seed.length) seed.copy(out, at);
  return out;
}

/* sha256 of frames [0, frames) of `stream`: what a client must receive. */
export function streamSha256(stream: string, frames: number): string {
  const hash = createHash('sha256');
  for (let i = 0; i < frames; i++) hash.update(frame(stream, i));
  return hash.digest('hex');
}
