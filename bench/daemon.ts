import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectCri } from '../src/cli/cri-client.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { parseCpuTicks, parseSmapsRollup, type Memory } from './stats.js';

const CLI = join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js');

/** Starts `icetray serve` and resolves with it and the ms until Version first answers over the socket. */
export async function serveIcetray(configFile: string, socket: string): Promise<{ child: ChildProcess; ms: number }> {
  const started = performance.now();
  const child = spawn(process.execPath, [CLI, 'serve', '--config', configFile], { stdio: 'ignore' });
  return { child, ms: await waitForCri(socket, child, started) };
}

/** Resolves with the ms from `started` until the CRI socket answers Version; throws if `child` exits first. */
export async function waitForCri(socket: string, child: ChildProcess, started = performance.now()): Promise<number> {
  for (;;) {
    const cri = connectCri(socket, 200);
    const answered = await cri.runtime.version({ version: '' }).then(
      () => true,
      () => false,
    );
    cri.close();
    if (answered) return performance.now() - started;
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${child.spawnfile} exited before it answered on ${socket}`);
    await sleep(5);
  }
}

/** Sends `signal` and waits for the exit (SIGKILL after `graceMs`). */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL', graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** One process of the table: its parent and the name the kernel knows it by. */
export interface Proc {
  pid: number;
  ppid: number;
  comm: string;
  cmdline: string;
}

/** Every process on the host (those that exit while being read are left out). */
export async function processes(): Promise<Proc[]> {
  const list: Proc[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).replaceAll('\0', ' ');
      const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      list.push({
        pid: Number(entry),
        ppid: Number(after[1]),
        comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
        cmdline,
      });
    } catch {
      // gone meanwhile
    }
  }
  return list;
}

/** The processes below `roots` (not the roots themselves). */
export function descendants(all: readonly Proc[], roots: readonly number[]): Proc[] {
  const below: Proc[] = [];
  const seen = new Set(roots);
  for (let grew = true; grew;) {
    grew = false;
    for (const proc of all) {
      if (!seen.has(proc.pid) && seen.has(proc.ppid)) {
        seen.add(proc.pid);
        below.push(proc);
        grew = true;
      }
    }
  }
  return below;
}

/** RSS and PSS of a process from /proc/PID/smaps_rollup (NaN when it is gone). */
export async function memoryOf(pid: number): Promise<Memory> {
  return parseSmapsRollup(await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => ''));
}

/** CPU time (user + system) a process has used, in ms. */
export async function cpuMs(pid: number): Promise<number> {
  // USER_HZ is 100 on Linux for every architecture Node runs on.
  return parseCpuTicks(await readFile(`/proc/${pid}/stat`, 'utf8')) * 10;
}
