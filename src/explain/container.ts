import { existsSync } from 'node:fs';
import { readFile, readlink } from 'node:fs/promises';
import { processStartTime } from '../os/proc-stat.js';

/** What icetray recorded about a container and its pod, as explain reads them over the CRI. */
export interface ContainerRecord {
  id: string;
  name: string;
  attempt: number;
  state: string;
  pid: number | null;
  monitorPid: number | null;
  pod: { id: string; pausePid: number | null; ip: string; namespaces: Record<string, number | null> };
  /** Earlier attempts of the same name in the pod: the kubelet's restarts. */
  previous: { id: string; attempt: number; state: string; exitCode: number; reason: string }[];
}

export interface ContainerExplanation {
  id: string;
  name: string;
  attempt: number;
  state: string;
  pid: number | null;
  /** nsexec's monitor beside the process (signals, exit record, output pipes across restarts). */
  monitorPid: number | null;
  /** For each namespace: the container's inode, pause's, and whether they are the same one. */
  namespaces: { kind: string; container: number | null; pause: number | null; shared: boolean }[];
  cgroup: { path: string; memoryLimit: string; cpuQuota: string };
  podIp: string;
  restarts: string[];
  disagreements: string[];
}

async function inode(pid: number, kind: string): Promise<number | null> {
  const link = await readlink(`/proc/${pid}/ns/${kind}`).catch(() => '');
  const match = /\[(\d+)\]/.exec(link);
  return match === null ? null : Number(match[1]);
}

async function read(path: string): Promise<string> {
  return (await readFile(path, 'utf8').catch(() => '?')).trim();
}

/** The process's memory cgroup and its limits, from /proc/<pid>/cgroup and the cgroup files (v1 or v2). */
async function cgroupOf(pid: number): Promise<ContainerExplanation['cgroup']> {
  const lines = (await read(`/proc/${pid}/cgroup`)).split('\n');
  const v1 = lines.find((line) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(line));
  if (v1 !== undefined) {
    const path = v1.split(':')[2] ?? '';
    const cpu = lines.find((line) => /^\d+:([^:]*,)?cpu(,[^:]*)?:/.test(line))?.split(':')[2] ?? path;
    // The cpu controller's mount is named "cpu" or "cpu,cpuacct", depending on the distribution.
    const cpuRoot = existsSync('/sys/fs/cgroup/cpu,cpuacct') ? '/sys/fs/cgroup/cpu,cpuacct' : '/sys/fs/cgroup/cpu';
    const cpuDir = `${cpuRoot}${cpu}`;
    return {
      path,
      memoryLimit: await read(`/sys/fs/cgroup/memory${path}/memory.limit_in_bytes`),
      cpuQuota: `${await read(`${cpuDir}/cpu.cfs_quota_us`)} per ${await read(`${cpuDir}/cpu.cfs_period_us`)} µs`,
    };
  }
  const path = lines.find((line) => line.startsWith('0::'))?.slice(3) ?? '?';
  return {
    path,
    memoryLimit: await read(`/sys/fs/cgroup${path}/memory.max`),
    cpuQuota: await read(`/sys/fs/cgroup${path}/cpu.max`),
  };
}

/**
 * Explains a container from the live system: its namespaces against pause's (shared, or its
 * own), its cgroup and limits as the kernel has them, and its earlier attempts — a restart is a
 * new container in the same pod, so pause, the IP and the namespaces stay.
 */
export async function explainContainer(record: ContainerRecord): Promise<ContainerExplanation> {
  const disagreements: string[] = [];
  const alive = record.pid !== null && processStartTime(record.pid) !== undefined;
  if (record.state === 'CONTAINER_RUNNING' && !alive)
    disagreements.push(`recorded running, but pid ${String(record.pid)} is gone`);
  const namespaces: ContainerExplanation['namespaces'] = [];
  for (const kind of ['net', 'ipc', 'uts', 'pid', 'mnt']) {
    const container = alive && record.pid !== null ? await inode(record.pid, kind) : null;
    const pause = record.pod.pausePid === null ? null : await inode(record.pod.pausePid, kind);
    namespaces.push({ kind, container, pause, shared: container !== null && container === pause });
  }
  const cgroup =
    alive && record.pid !== null ? await cgroupOf(record.pid) : { path: '(not running)', memoryLimit: '-', cpuQuota: '-' };
  if (alive && !cgroup.path.includes(record.id))
    disagreements.push(`the process is in cgroup ${cgroup.path}, not in one named for the container`);
  const restarts = record.previous.map(
    (p) =>
      `attempt ${p.attempt} (${p.id.slice(0, 13)}): ${p.state}, exit code ${p.exitCode}${p.reason === '' ? '' : ` (${p.reason})`}`,
  );
  return {
    id: record.id,
    name: record.name,
    attempt: record.attempt,
    state: record.state,
    pid: record.pid,
    monitorPid: alive ? record.monitorPid : null,
    namespaces,
    cgroup,
    podIp: record.pod.ip,
    restarts,
    disagreements,
  };
}
