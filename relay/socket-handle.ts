import type { Socket } from 'node:net';

/*
 * While the kernel splices a body out of the origin's socket, libuv must not read it. Node's
 * public API has no way to stop libuv reading (the fd itself comes from native/repair.ts), so
 * that access lives here, in one place.
 */
interface StreamHandle {
  reading: boolean;
  readStart(): number;
  readStop(): number;
}

function handleOf(socket: Socket): StreamHandle {
  const handle = (socket as unknown as { _handle: StreamHandle | null })._handle;
  if (!handle) throw new Error('socket has no handle (closed)');
  return handle;
}

/*
 * Stop libuv reading from the fd so that no byte is consumed behind the kernel splice's back.
 * Node's own pause() is not enough: it keeps reading until its buffer is full, and a later
 * read(0) restarts libuv whenever `handle.reading` is false. So the handle is stopped while
 * Node is left believing it still reads, and nothing restarts it until startReading().
 */
export function stopReading(socket: Socket): void {
  socket.pause();
  const handle = handleOf(socket);
  handle.readStop();
  handle.reading = true;
}

export function startReading(socket: Socket): void {
  const handle = (socket as unknown as { _handle: StreamHandle | null })._handle;
  if (handle) handle.readStart();
  socket.resume();
}
