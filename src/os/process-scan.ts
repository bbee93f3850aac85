import { readFileSync, readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { processStartTime, signalProcess } from './proc-stat.js';

/**
 * Finding processes by what they are, not by a pid someone wrote down: after a crash icetray may
 * have started a process (a pause, a container's monitor, a CNI plugin) and died before it could
 * record the pid. Each such process carries a mark of its own — pause the sandbox folder in its
 * arguments, an nsexec monitor its container's exit file, a CNI plugin CNI_CONTAINERID in its
 * environment — and these functions find it by that mark in /proc.
 */

/** A live process: its pid and start time (which tell it apart from a later process with the same pid). */
export interface FoundProcess {
  pid: number;
  startTime: string;
}

function readArgs(path: string): string[] | undefined {
  try {
    return readFileSync(path, 'utf8').split('\0').slice(0, -1);
  } catch {
    return undefined; // the process ended while we looked, or it is a kernel thread
  }
}

function found(pid: number): FoundProcess[] {
  const startTime = processStartTime(pid);
  return startTime === undefined ? [] : [{ pid, startTime }];
}

function pids(): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number);
}

/** The argument list of a process, or undefined when it is gone. */
export function processArgs(pid: number): string[] | undefined {
  return readArgs(`/proc/${String(pid)}/cmdline`);
}

/** Every live process whose argument list satisfies `match`. */
export function processesByArgs(match: (args: readonly string[]) => boolean): FoundProcess[] {
  return pids().flatMap((pid) => {
    const args = readArgs(`/proc/${String(pid)}/cmdline`);
    return args !== undefined && match(args) ? found(pid) : [];
  });
}

/** Every live process whose environment holds exactly `entry` ("NAME=value"). */
export function processesByEnvironment(entry: string): FoundProcess[] {
  return pids().flatMap((pid) => (readArgs(`/proc/${String(pid)}/environ`)?.includes(entry) === true ? found(pid) : []));
}

/** SIGKILLs the processes and waits (up to `boundMs`) until each is gone. */
export async function killAndWait(processes: readonly FoundProcess[], boundMs = 5_000): Promise<void> {
  for (const process of processes) signalProcess(process.pid, 'SIGKILL');
  for (let waited = 0; waited < boundMs; waited += 10) {
    if (processes.every((p) => processStartTime(p.pid) !== p.startTime)) return;
    await sleep(10);
  }
}
