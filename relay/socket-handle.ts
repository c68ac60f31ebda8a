import type { Socket } from 'node:net';

/*
 * The relay hands a socket's file descriptor to the kernel (splice) or to the native helper
 * (dump, quiet close) while Node still owns it. Node exposes neither the fd nor a way to stop
 * libuv from reading in its public API, so the two accesses live here, in one place.
 */
interface StreamHandle {
  fd: number;
  reading: boolean;
  readStart(): number;
  readStop(): number;
}

function handleOf(socket: Socket): StreamHandle {
  const handle = (socket as unknown as { _handle: StreamHandle | null })._handle;
  if (!handle) throw new Error('socket has no handle (closed)');
  return handle;
}

export function socketFd(socket: Socket): number {
  return handleOf(socket).fd;
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
