import { closeSync, constants, openSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { run } from './exec.js';

/**
 * Kernel pipes for a container's stdio. Node's own `stdio: 'pipe'` hands a child one end of a
 * Unix socket pair, and on a socket `open("/dev/stdout")` fails with ENXIO — yet images such as
 * nginx log to /dev/stdout through a symlink. Node has no pipe(2), so a pipe here is a FIFO
 * opened at both ends and then unlinked: what is left is an ordinary anonymous pipe.
 */
export interface ChildPipe {
  /** The fd the child gets (its stdin's read end, or its stdout/stderr's write end); -1 once closed. */
  childFd: number;
  /** icetray's end, as a stream. */
  stream: Socket;
}

let nextPipe = 0;

/**
 * Makes one pipe per direction given: 'in' is read by the child (its stdin), 'out' is written
 * by it (stdout, stderr). The FIFOs live a moment in `dir` (a folder only root writes to).
 * Once the child is spawned, call `closeChildEnds` so that icetray holds only its own ends, and
 * a stream's end of file means the child and all it started have closed theirs.
 */
export async function makePipes(dir: string, directions: readonly ('in' | 'out')[]): Promise<ChildPipe[]> {
  const paths = directions.map(() => join(dir, `.pipe-${String(process.pid)}-${String(nextPipe++)}`));
  const pipes: ChildPipe[] = [];
  try {
    await run('mkfifo', ['-m', '0600', ...paths]);
    for (const [i, direction] of directions.entries())
      pipes.push(direction === 'in' ? stdinPipe(paths[i] ?? '') : outputPipe(paths[i] ?? ''));
    return pipes;
  } catch (err) {
    // Whatever was opened before the failure is closed again.
    closePipes(pipes);
    throw err;
  } finally {
    // Also when mkfifo failed half-way: no FIFO is left in the folder (one never made is no error).
    await Promise.all(paths.map((path) => unlink(path).catch(() => undefined)));
  }
}

/** Closes the child's ends (once it is spawned, or when it never will be); closing twice is harmless. */
export function closeChildEnds(pipes: ChildPipe[]): void {
  for (const pipe of pipes) {
    if (pipe.childFd < 0) continue;
    closeSync(pipe.childFd);
    pipe.childFd = -1;
  }
}

/** Closes everything of these pipes: the child's ends and icetray's streams (a failed start). */
export function closePipes(pipes: ChildPipe[]): void {
  closeChildEnds(pipes);
  for (const pipe of pipes) pipe.stream.destroy();
}

/** Opens fds one after the other; when one open fails, those opened before it are closed again. */
function openAll(opens: readonly (() => number)[]): number[] {
  const fds: number[] = [];
  try {
    for (const open of opens) fds.push(open());
    return fds;
  } catch (err) {
    for (const fd of fds) closeSync(fd);
    throw err;
  }
}

/**
 * Output: our read end first, non-blocking (a FIFO's open waits for the other side otherwise);
 * then the child's write end, which opens at once because a reader exists, and is blocking as a
 * program expects its stdout to be. Both opens return at once: safe on the event loop.
 */
function outputPipe(path: string): ChildPipe {
  const [ours = -1, childFd = -1] = openAll([
    () => openSync(path, constants.O_RDONLY | constants.O_NONBLOCK),
    () => openSync(path, constants.O_WRONLY),
  ]);
  return { childFd, stream: new Socket({ fd: ours, readable: true, writable: false }) };
}

/**
 * Input: the child's end must be a blocking read end, and opening one blocks until a writer
 * exists — so a read-write placeholder (Linux opens those at once) stands in while both real
 * ends are opened, then goes.
 */
function stdinPipe(path: string): ChildPipe {
  const [placeholder = -1, childFd = -1, ours = -1] = openAll([
    () => openSync(path, constants.O_RDWR),
    () => openSync(path, constants.O_RDONLY),
    () => openSync(path, constants.O_WRONLY),
  ]);
  closeSync(placeholder);
  return { childFd, stream: new Socket({ fd: ours, readable: false, writable: true }) };
}

/**
 * Opens again the read end of a pipe another process writes to, through /proc/PID/fd/FD (Linux
 * opens a pipe's magic link like a FIFO): how a restarted icetray gets a running container's
 * output back. Undefined when the process or its fd is gone.
 */
export function reopenPipe(pid: number, fd: number): Socket | undefined {
  try {
    const ours = openSync(`/proc/${String(pid)}/fd/${String(fd)}`, constants.O_RDONLY | constants.O_NONBLOCK);
    return new Socket({ fd: ours, readable: true, writable: false });
  } catch {
    return undefined;
  }
}
