import { InvalidArgumentError } from '../errors.js';
import { explainContainer, type ContainerExplanation } from '../explain/container.js';
import { explainPod, type PodExplanation } from '../explain/pod.js';
import { containerRecord, podRecord } from '../explain/records.js';
import { CONFIG_HELP, CONFIG_OPTIONS, loadFromOptions, type Values } from './config-options.js';
import { connectCri, type CriClient } from './cri-client.js';

export const EXPLAIN_HELP = `Usage: icetray explain pod POD [options]
       icetray explain container CONTAINER [options]

Show what holds a pod: the pause process, each namespace with its inode and the processes
that really share it (read from /proc), the pod IP on eth0, the hostname set in its UTS
namespace, its resolv.conf — and where icetray's records and the live system disagree.
For a container: its namespaces next to pause's (which are shared, which are its own), its cgroup
and limits as the kernel has them, and its earlier attempts (restarts leave the pod untouched).
POD and CONTAINER are ids or unique prefixes of one.

Options:
${CONFIG_HELP}  --output FORMAT     text (default) or json
  -h, --help          show this help
`;

export const EXPLAIN_OPTIONS = { ...CONFIG_OPTIONS, output: { type: 'string' } } as const;

function print(pod: PodExplanation): string {
  const lines = [
    `pod ${pod.name} (${pod.id.slice(0, 13)}), ${pod.state === 'SANDBOX_READY' ? 'ready' : 'not ready'}`,
    `  pause: pid ${String(pod.pause.pid)} — ${pod.pause.alive ? 'running: it holds the namespaces below' : 'NOT running'}`,
    '  namespaces (the ice tray; each container joins them):',
  ];
  for (const ns of pod.namespaces) {
    lines.push(`    ${ns.kind.padEnd(4)} inode ${String(ns.inode)}  pinned at ${ns.pin}`);
    for (const member of ns.members) {
      const command = member.command.length > 100 ? `${member.command.slice(0, 99)}…` : member.command;
      lines.push(`           pid ${String(member.pid).padEnd(7)} ${command}`);
    }
  }
  lines.push(
    `  network: IP ${pod.network.recordedIp || '(none)'}; eth0 has ${pod.network.liveAddresses.join(', ') || 'no IPv4 address'}`,
  );
  lines.push(`  hostname: ${pod.hostname.live ?? pod.hostname.recorded}`);
  lines.push(`  resolv.conf:\n${pod.resolvConf.trimEnd().replace(/^/gm, '    ')}`);
  lines.push(
    pod.disagreements.length === 0
      ? '  records and live system agree'
      : `  DISAGREEMENTS:\n${pod.disagreements.map((d) => `    - ${d}`).join('\n')}`,
  );
  return `${lines.join('\n')}\n`;
}

function printContainer(c: ContainerExplanation): string {
  const lines = [
    `container ${c.name} (${c.id.slice(0, 13)}), attempt ${c.attempt}, ${c.state.replace('CONTAINER_', '').toLowerCase()}, pid ${String(c.pid)}`,
    ...(c.monitorPid === null
      ? []
      : [
          `  monitor: pid ${String(c.monitorPid)} (nsexec: forwards signals, records the exit, keeps the output while icetray restarts)`,
        ]),
    '  namespaces (container / pause):',
    ...c.namespaces.map(
      (ns) =>
        `    ${ns.kind.padEnd(4)} ${String(ns.container).padEnd(11)} ${String(ns.pause).padEnd(11)} ${ns.shared ? "shared: the pod's" : 'its own'}`,
    ),
    `  pod IP: ${c.podIp || '(none)'}`,
    `  cgroup: ${c.cgroup.path}`,
    `    memory limit: ${c.cgroup.memoryLimit}; cpu quota: ${c.cgroup.cpuQuota}`,
    c.restarts.length === 0
      ? '  no earlier attempts'
      : `  earlier attempts (each a new container; pause, IP and namespaces stayed):\n${c.restarts.map((r) => `    ${r}`).join('\n')}`,
    c.disagreements.length === 0
      ? '  records and live system agree'
      : `  DISAGREEMENTS:\n${c.disagreements.map((d) => `    - ${d}`).join('\n')}`,
  ];
  return `${lines.join('\n')}\n`;
}

async function explainContainerById(cri: CriClient, id: string, json: boolean): Promise<number> {
  const explanation = await explainContainer(await containerRecord(cri, id));
  process.stdout.write(json ? `${JSON.stringify(explanation, null, 2)}\n` : printContainer(explanation));
  return explanation.disagreements.length === 0 ? 0 : 1;
}

export async function explain(values: Values, positionals: string[]): Promise<number> {
  const [kind, id] = positionals;
  if ((kind !== 'pod' && kind !== 'container') || id === undefined)
    throw new InvalidArgumentError('usage: icetray explain pod POD | container CONTAINER');
  const { config } = loadFromOptions(values);
  const cri = connectCri(config.socket, 5_000);
  if (kind === 'container') {
    try {
      return await explainContainerById(cri, id, values['output'] === 'json');
    } finally {
      cri.close();
    }
  }
  try {
    const explanation = await explainPod(await podRecord(cri, id));
    process.stdout.write(values['output'] === 'json' ? `${JSON.stringify(explanation, null, 2)}\n` : print(explanation));
    return explanation.disagreements.length === 0 ? 0 : 1;
  } finally {
    cri.close();
  }
}
