import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidArgumentError, UnavailableError } from '../errors.js';
import { CommandError, run } from '../os/exec.js';
import { processStartTime, signalProcess } from '../os/proc-stat.js';
import { processArgs, processesByArgs } from '../os/process-scan.js';
import type { PauseProcess, PodNamespace } from './sandbox.js';

/** What the pause process must set up before it starts waiting. */
export interface PauseSpec {
  namespaces: readonly PodNamespace[];
  /** Set in the pod's UTS namespace (only when the pod owns one). */
  hostname: string;
  /** Namespaced sysctls, validated beforehand (sysctls.ts); pause refuses any other. */
  sysctls: Record<string, string>;
  /** A mark in pause's arguments (the sandbox folder), by which `find` knows it after a crash. */
  label: string;
}

/** A pause found by its label (the sandbox folder it was started for). */
export interface LabelledPause extends PauseProcess {
  label: string;
}

/** The label of a pause: its last argument (see native/pause.c, -I). */
function readLabel(pid: number): string {
  return processArgs(pid)?.at(-1) ?? '';
}

/** Starts, watches and stops pause processes: the one OS-facing part of a sandbox's lifecycle. */
export interface PauseLauncher {
  start(spec: PauseSpec): Promise<PauseProcess>;
  /**
   * The live pause processes whose label `matches`: how a pause is found whose pid a crash kept
   * from its record, or whose record is gone.
   */
  find(matches: (label: string) => boolean): LabelledPause[];
  isAlive(pause: PauseProcess): Promise<boolean>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(pause: PauseProcess, graceMs: number): Promise<void>;
}

const FLAGS: Record<PodNamespace, string> = { net: '-n', ipc: '-i', uts: '-u', pid: '-p' };

/** `pause -d` exits 3 when the kernel refuses a sysctl (native/pause.c EXIT_BAD_SYSCTL). */
const EXIT_BAD_SYSCTL = 3;

async function waitGone(pause: PauseProcess, ms: number): Promise<boolean> {
  for (let waited = 0; waited <= ms; waited += 10) {
    if (processStartTime(pause.pid) !== pause.startTime) return true;
    await sleep(10);
  }
  return false;
}

/**
 * The real launcher: `pause -d` (native/pause.c) unshares the namespaces, sets hostname and
 * sysctls inside them, forks the waiting process and prints its pid. No parent stays behind.
 */
export function nativePauseLauncher(pauseBinary: string): PauseLauncher {
  return {
    async start(spec) {
      const args = ['-d', ...spec.namespaces.map((ns) => FLAGS[ns])];
      if (spec.namespaces.includes('uts')) args.push('-H', spec.hostname);
      for (const [key, value] of Object.entries(spec.sysctls)) args.push('-S', `${key}=${value}`);
      args.push('-I', spec.label);
      let stdout: string;
      try {
        ({ stdout } = await run(pauseBinary, args));
      } catch (err) {
        if (!(err instanceof CommandError)) throw err;
        const why = err.stderr.trim().replace(/^pause: /, '');
        if (err.exitCode === EXIT_BAD_SYSCTL)
          throw new InvalidArgumentError(`invalid sysctl for the pod: ${why}`, { cause: err });
        throw new UnavailableError(`failed to start the pause process: ${why}`, { cause: err });
      }
      const pid = Number(stdout.trim());
      const startTime = processStartTime(pid);
      if (!Number.isInteger(pid) || startTime === undefined) {
        throw new UnavailableError(`the pause process (pid "${stdout.trim()}") exited right after it started`);
      }
      return { pid, startTime };
    },

    find(matches) {
      const isPause = (args: readonly string[]): boolean => args[0] === pauseBinary && args[1] === '-d' && args.at(-2) === '-I';
      return processesByArgs((args) => isPause(args) && matches(args.at(-1) ?? '')).map((found) => ({
        ...found,
        label: readLabel(found.pid),
      }));
    },

    isAlive(pause) {
      return Promise.resolve(processStartTime(pause.pid) === pause.startTime);
    },

    async stop(pause, graceMs) {
      if (!(await this.isAlive(pause))) return;
      // pause exits 0 on SIGTERM; as PID 1 of the pod's PID namespace its exit also kills
      // every process left in that namespace.
      signalProcess(pause.pid, 'SIGTERM');
      if (await waitGone(pause, graceMs)) return;
      signalProcess(pause.pid, 'SIGKILL');
      if (!(await waitGone(pause, 5_000))) throw new UnavailableError(`pause process ${pause.pid} did not die after SIGKILL`);
    },
  };
}
