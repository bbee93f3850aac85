import {
  checkCni,
  checkIpForward,
  checkKubeletDriver,
  checkPauseBinary,
  checkSystemd,
  type CheckResult,
} from '../doctor/checks.js';
import { checkPauseImage, checkSocket, type CriProbe } from '../doctor/cri-checks.js';
import { PAUSE_BINARY } from '../paths.js';
import { CONFIG_HELP, CONFIG_OPTIONS, loadFromOptions, type Values } from './config-options.js';
import { connectCri } from './cri-client.js';

export const DOCTOR_HELP = `Usage: icetray doctor [options]

Check that this node can run Kubernetes pods with icetray: IPv4 forwarding, systemd, the
kubelet's cgroup driver against icetray's, CNI plugins, the CRI socket (v1, not v1alpha2), the
pinned pause image and the pause binary. Each check shows its evidence and, when it fails,
the exact fix. Exits 1 when a check fails.

Options:
${CONFIG_HELP}  --kubelet-config FILE
                      the kubelet's KubeletConfiguration (default /var/lib/kubelet/config.yaml)
  --output FORMAT     table (default) or json
  -h, --help          show this help
`;

export const DOCTOR_OPTIONS = { ...CONFIG_OPTIONS, 'kubelet-config': { type: 'string' }, output: { type: 'string' } } as const;

export async function doctor(values: Values): Promise<number> {
  const { config } = loadFromOptions(values);
  const kubeletConfig = typeof values['kubelet-config'] === 'string' ? values['kubelet-config'] : '/var/lib/kubelet/config.yaml';
  const cri = connectCri(config.socket, 5_000);
  const probe: CriProbe = {
    version: () => cri.runtime.version({ version: '0.1.0' }),
    imageStatus: (image) => cri.image.imageStatus({ image: { image } }),
    v1alpha2Code: () => cri.v1alpha2Code(),
    close: () => cri.close(),
  };
  let results: CheckResult[];
  try {
    results = [
      await checkIpForward(),
      await checkSystemd(config),
      await checkKubeletDriver(config, kubeletConfig),
      await checkCni(config),
      await checkSocket(probe, config.socket),
      await checkPauseImage(probe, config.pauseImage),
      await checkPauseBinary(PAUSE_BINARY),
    ];
  } finally {
    probe.close();
  }
  if (values['output'] === 'json') {
    process.stdout.write(`${JSON.stringify({ ok: results.every((r) => r.ok), checks: results }, null, 2)}\n`);
  } else {
    for (const result of results) {
      process.stdout.write(`${result.ok ? '✓' : '✗'} ${result.name}\n    ${result.evidence}\n`);
      if (!result.ok) process.stdout.write(`    fix: ${result.fix}\n`);
    }
  }
  return results.every((r) => r.ok) ? 0 : 1;
}
