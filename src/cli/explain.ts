import { InvalidArgumentError } from '../errors.js';
import { PodSandboxState } from '../generated/api.js';
import { explainPod, type PodExplanation, type PodRecord } from '../explain/pod.js';
import { CONFIG_HELP, CONFIG_OPTIONS, loadFromOptions, type Values } from './config-options.js';
import { connectCri } from './cri-client.js';

export const EXPLAIN_HELP = `Usage: icetray explain pod POD [options]

Show what holds a pod: the pause process, each namespace with its inode and the processes
that really share it (read from /proc), the pod IP on eth0, the hostname set in its UTS
namespace, its resolv.conf — and where icetray's records and the live system disagree.
POD is a pod id or a unique prefix of one.

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
    for (const member of ns.members) lines.push(`           pid ${String(member.pid).padEnd(7)} ${member.command}`);
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

export async function explain(values: Values, positionals: string[]): Promise<number> {
  const [kind, id] = positionals;
  if (kind !== 'pod' || id === undefined) throw new InvalidArgumentError('usage: icetray explain pod POD');
  const { config } = loadFromOptions(values);
  const cri = connectCri(config.socket, 5_000);
  try {
    const response = await cri.runtime.podSandboxStatus({ podSandboxId: id, verbose: true });
    const status = response.status;
    const record: PodRecord = {
      id: status?.id ?? id,
      name: status?.metadata?.name ?? '',
      state: status?.state === PodSandboxState.SANDBOX_READY ? 'SANDBOX_READY' : 'SANDBOX_NOTREADY',
      ip: status?.network?.ip ?? '',
      info: JSON.parse(response.info['info'] ?? '{}') as PodRecord['info'],
    };
    const explanation = await explainPod(record);
    process.stdout.write(values['output'] === 'json' ? `${JSON.stringify(explanation, null, 2)}\n` : print(explanation));
    return explanation.disagreements.length === 0 ? 0 : 1;
  } finally {
    cri.close();
  }
}
