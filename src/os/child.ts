import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';

export type { ChildProcess };

export interface ChildOptions {
  env: NodeJS.ProcessEnv;
  /** The child's stdin, stdout and stderr: fds icetray opened (see pipe.ts), or 'ignore' for /dev/null. */
  stdio: [number | 'ignore', number | 'ignore', number | 'ignore'];
  /** Extra Node pipes after stdin/out/err, as fd 3, 4, … in the child (control channels). */
  extraPipes: number;
}

/**
 * Starts a long-lived child process (container processes, exec sessions) and resolves once it
 * runs. The one-shot commands go through run() in exec.ts.
 *
 * When it cannot start, it rejects with Node's error, whose `code` says why: thrown at once for
 * E2BIG (arguments and environment past the kernel's limit) and ERR_INVALID_ARG_VALUE (a NUL
 * byte), emitted for ENOENT, EACCES, EAGAIN, EMFILE. Either way the pipes Node made for it are
 * closed again: a failed start leaves no descriptor behind. The fds in `stdio` stay the
 * caller's to close.
 */
export function startChild(file: string, args: readonly string[], options: ChildOptions): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(file, args, {
        env: options.env,
        stdio: [...options.stdio, ...Array<'pipe'>(options.extraPipes).fill('pipe')],
      });
    } catch (err) {
      reject(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    const failed = (err: Error): void => {
      for (const stream of child.stdio) stream?.destroy();
      reject(err);
    };
    child.once('error', failed);
    child.once('spawn', () => {
      child.off('error', failed);
      // From now on 'error' can only say that a kill() failed: the 'exit' event tells the rest.
      child.on('error', () => undefined);
      resolve(child);
    });
  });
}

/**
 * Resolves once a child's output stream is closed — at once if it already is (a quick command
 * may be done before anyone listens) — or after `boundMs` at the latest, so a descendant that
 * kept the pipe open cannot hang the caller.
 */
export function streamClosed(stream: Readable, boundMs = 2_000): Promise<void> {
  if (stream.closed || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, boundMs);
    stream.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
