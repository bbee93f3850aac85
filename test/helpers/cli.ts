import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../src/paths.js';

/** The built CLI, as `npm start` and the package's `bin` run it (npm test builds it first). */
export const ICETRAY_CLI = join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js');

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion and returns its exit code and output, without throwing. */
export function runProgram(file: string, args: readonly string[], timeoutMs = 20_000): Promise<Result> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

export function runIcetray(args: readonly string[]): Promise<Result> {
  return runProgram(process.execPath, [ICETRAY_CLI, ...args]);
}

/** An `icetray serve` process with its config, state and socket in a temp folder. */
export interface ServeProcess {
  dir: string;
  socket: string;
  configFile: string;
  child: ChildProcess;
  output(): string;
  /** Sends `signal` and waits for the exit; the folder stays (for a restart over the same state). */
  kill(signal: NodeJS.Signals): Promise<void>;
  /** SIGTERM, then the exit code; removes the folder. */
  stop(): Promise<number | null>;
}

/**
 * Starts `icetray serve` and waits until it says it is serving. `detached` gives it a process
 * group of its own, as a shell gives a command, so a test can signal that group (a Ctrl-C);
 * `wrap` is a command that execs it (see spawnServe).
 */
export async function startServeProcess(extraToml = '', { detached = false, wrap = [] as string[] } = {}): Promise<ServeProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'icetray-cli-'));
  const socket = join(dir, 'run', 'icetray.sock');
  const configFile = join(dir, 'config.toml');
  await writeFile(
    configFile,
    [
      `socket = "${socket}"`,
      `root_dir = "${join(dir, 'root')}"`,
      `state_dir = "${join(dir, 'run')}"`,
      `cni_conf_dir = "${join(dir, 'net.d')}"`,
      // Never flip the host's net.ipv4.ip_forward from a test.
      'enable_ip_forward = false',
      extraToml,
    ].join('\n'),
  );
  return spawnServe(['--config', configFile], dir, socket, configFile, { detached, wrap });
}

/**
 * Runs `icetray serve ARGS` and waits until it says it is serving; stop() also removes `dir`.
 * `wrap` is a command that execs the server (e.g. an `nsenter` into a node's mount namespace).
 */
export async function spawnServe(
  args: string[],
  dir: string,
  socket: string,
  configFile = '',
  { detached = false, wrap = [] as string[] } = {},
): Promise<ServeProcess> {
  const command = [...wrap, process.execPath, ICETRAY_CLI, 'serve', ...args];
  const child = spawn(command[0] ?? '', command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`icetray serve did not start:\n${output}`)), 15_000);
    const check = (): void => {
      if (output.includes('icetray serving CRI v1')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', check);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`icetray serve exited early:\n${output}`));
    });
  });
  return {
    dir,
    socket,
    configFile,
    child,
    output: () => output,
    async kill(signal) {
      child.kill(signal);
      await exited;
    },
    async stop() {
      child.kill('SIGTERM');
      const code = await exited;
      await rm(dir, { recursive: true, force: true });
      return code;
    },
  };
}
