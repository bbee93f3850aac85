import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';

export interface ChildOptions {
  env: NodeJS.ProcessEnv;
  /** The child's stdin, stdout and stderr: fds icetray opened (see pipe.ts), or 'ignore' for /dev/null. */
  stdio: [number | 'ignore', number | 'ignore', number | 'ignore'];
  /** Extra Node pipes after stdin/out/err, as fd 3, 4, … in the child (control channels). */
  extraPipes: number;
}

/**
 * Starts a long-lived child process (container processes, exec sessions). The one-shot
 * commands go through run() in exec.ts.
 */
export function startChild(file: string, args: readonly string[], options: ChildOptions): ChildProcess {
  return spawn(file, args, { env: options.env, stdio: [...options.stdio, ...Array<'pipe'>(options.extraPipes).fill('pipe')] });
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
