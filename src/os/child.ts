import { spawn, type ChildProcess } from 'node:child_process';

export interface ChildOptions {
  env: NodeJS.ProcessEnv;
  /** Whether the child gets a pipe for stdin (else /dev/null). */
  stdin: boolean;
  /** Extra pipes after stdin/out/err, as fd 3, 4, … in the child. */
  extraPipes: number;
}

/**
 * Starts a long-lived child process with pipes (container processes, exec sessions). The
 * one-shot commands go through run() in exec.ts.
 */
export function startChild(file: string, args: readonly string[], options: ChildOptions): ChildProcess {
  const stdio = [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe', ...Array<'pipe'>(options.extraPipes).fill('pipe')] as const;
  return spawn(file, args, { env: options.env, stdio: [...stdio] });
}
