import { execFile } from 'node:child_process';

/** A command that could not start or exited non-zero; carries what a caller needs to explain it. */
export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
    options?: ErrorOptions,
    /** What it printed before failing (CNI plugins report their errors on stdout). */
    readonly stdout = '',
  ) {
    const detail = stderr.trim() === '' ? '' : `: ${stderr.trim()}`;
    super(`${command} failed${exitCode === null ? '' : ` with exit code ${exitCode}`}${detail}`, options);
    this.name = 'CommandError';
  }
}

export interface RunOptions {
  /** Written to the command's stdin (bytes for a binary input, such as a device program). */
  input?: string | Uint8Array;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a program to completion (no shell), returning its output or throwing a CommandError. */
export function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { env: options.env ?? process.env, timeout: options.timeoutMs ?? 0, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err === null) {
          resolve({ stdout, stderr });
          return;
        }
        const code = typeof err.code === 'number' ? err.code : null;
        const why = code === null && typeof err.code === 'string' ? `${err.code} ${stderr}` : stderr;
        reject(new CommandError([file, ...args].join(' '), code, why, { cause: err }, stdout));
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}
