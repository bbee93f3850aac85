import { readFileSync } from 'node:fs';
import { run } from '../os/exec.js';
import { processesInNamespace, type ProcessInfo } from '../os/namespaces-scan.js';
import { processStartTime } from '../os/proc-stat.js';

/** What icetray recorded about a pod (PodSandboxStatus verbose info), as explain reads it. */
export interface PodRecord {
  id: string;
  name: string;
  state: string;
  ip: string;
  info: {
    pid: number | null;
    hostname: string;
    netns: string | null;
    namespaces: Record<string, { path: string; inode: number | null }>;
    podDir: string;
  };
}

export interface NamespaceExplanation {
  kind: string;
  inode: number | null;
  pin: string;
  /** The processes that are in it right now, pause first. */
  members: ProcessInfo[];
}

export interface PodExplanation {
  id: string;
  name: string;
  state: string;
  pause: { pid: number | null; alive: boolean };
  namespaces: NamespaceExplanation[];
  network: { recordedIp: string; liveAddresses: string[]; interface: string };
  hostname: { recorded: string; live: string | null };
  resolvConf: string;
  /** Where icetray's record and the live system disagree. */
  disagreements: string[];
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

/**
 * Explains a pod from the live system: which processes share each of its namespaces (from
 * /proc, not from icetray's records), the addresses really on its eth0, the hostname really
 * set in its UTS namespace — and where those disagree with what icetray recorded.
 */
export async function explainPod(pod: PodRecord): Promise<PodExplanation> {
  const disagreements: string[] = [];
  const pid = pod.info.pid;
  const alive = pid !== null && processStartTime(pid) !== undefined;
  if (pod.state === 'SANDBOX_READY' && !alive)
    disagreements.push(`the pod is recorded ready but pause (pid ${String(pid)}) is not running`);

  const namespaces: NamespaceExplanation[] = [];
  for (const [kind, pin] of Object.entries(pod.info.namespaces)) {
    const members = pin.inode === null ? [] : processesInNamespace(kind, pin.inode);
    members.sort((a, b) => (a.pid === pid ? -1 : b.pid === pid ? 1 : a.pid - b.pid));
    if (alive && pin.inode !== null && !members.some((m) => m.pid === pid)) {
      disagreements.push(`pause (pid ${String(pid)}) is not in the pinned ${kind} namespace ${pin.inode}`);
    }
    namespaces.push({ kind, inode: pin.inode, pin: pin.path, members });
  }

  let liveAddresses: string[] = [];
  if (pod.info.netns !== null) {
    const addr = await run('nsenter', [`--net=${pod.info.netns}`, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']).catch(
      () => undefined,
    );
    liveAddresses = [...(addr?.stdout ?? '').matchAll(/inet (\S+)/g)].map((m) => m[1] ?? '');
    if (pod.ip !== '' && !liveAddresses.some((a) => a.startsWith(`${pod.ip}/`))) {
      disagreements.push(`icetray recorded IP ${pod.ip}, but eth0 has ${liveAddresses.join(', ') || 'no IPv4 address'}`);
    }
  }

  const uts = pod.info.namespaces['uts']?.path;
  const live =
    uts === undefined
      ? null
      : ((await run('nsenter', [`--uts=${uts}`, 'hostname']).catch(() => undefined))?.stdout.trim() ?? null);
  if (live !== null && live !== pod.info.hostname) disagreements.push(`hostname recorded "${pod.info.hostname}", set "${live}"`);

  return {
    id: pod.id,
    name: pod.name,
    state: pod.state,
    pause: { pid, alive },
    namespaces,
    network: { recordedIp: pod.ip, liveAddresses, interface: 'eth0' },
    hostname: { recorded: pod.info.hostname, live },
    resolvConf: readOr(`${pod.info.podDir}/resolv.conf`, '(missing)'),
    disagreements,
  };
}
