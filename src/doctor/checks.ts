import { access, readFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { Config } from '../config/config.js';
import { messageOf } from '../errors.js';
import { run } from '../os/exec.js';
import { basename } from 'node:path';
import {
  DEFAULT_CONFLIST_FILE,
  findPlugin,
  IP_FORWARD_FIX,
  loadNetwork,
  podCidrConflict,
  readIpForward,
} from '../sandbox/network.js';

/**
 * Node preflight checks: each says what it looked at (evidence) and, when it fails, the exact
 * fix. The facts are the ones CKA-style notes teach: IPv4 forwarding, matching cgroup
 * drivers, CRI v1 on the socket, the pause image, CNI plugins.
 */
export interface CheckResult {
  name: string;
  ok: boolean;
  evidence: string;
  fix: string;
}

const pass = (name: string, evidence: string): CheckResult => ({ name, ok: true, evidence, fix: '' });
const fail = (name: string, evidence: string, fix: string): CheckResult => ({ name, ok: false, evidence, fix });

export async function checkIpForward(procSys = '/proc/sys'): Promise<CheckResult> {
  const name = 'IPv4 forwarding';
  const on = await readIpForward(procSys);
  return on
    ? pass(name, 'net.ipv4.ip_forward = 1: the node routes pod traffic between interfaces')
    : fail(name, 'net.ipv4.ip_forward = 0: pods cannot reach other nodes or services through this one', IP_FORWARD_FIX);
}

/** Whether systemd runs this machine (sd_booted(3): the folder exists only then). */
export async function systemdIsInit(runSystemd = '/run/systemd/system'): Promise<boolean> {
  return access(runSystemd).then(
    () => true,
    () => false,
  );
}

export async function checkSystemd(config: Pick<Config, 'cgroupDriver'>, runSystemd?: string): Promise<CheckResult> {
  const name = 'systemd as PID 1';
  const booted = await systemdIsInit(runSystemd);
  if (booted) return pass(name, 'systemd is PID 1: the systemd cgroup driver can be used');
  if (config.cgroupDriver === 'systemd') {
    return fail(
      name,
      'systemd is not PID 1, yet icetray is configured with cgroup_driver = "systemd"',
      'set cgroup_driver = "cgroupfs" in icetray and cgroupDriver: cgroupfs in the kubelet config',
    );
  }
  return pass(name, 'systemd is not PID 1: only the cgroupfs driver is possible here, and it is the one in use');
}

/**
 * The classic misconfiguration: a kubelet and a runtime with different cgroup drivers. The
 * kubelet then creates pod cgroups where the runtime does not look, and pods fail or run
 * outside their limits. KubeletConfiguration's default is cgroupfs; kubeadm writes systemd.
 */
export async function checkKubeletDriver(config: Pick<Config, 'cgroupDriver'>, kubeletConfig: string): Promise<CheckResult> {
  const name = 'kubelet cgroup driver';
  let text: string;
  try {
    text = await readFile(kubeletConfig, 'utf8');
  } catch {
    return pass(name, `no kubelet config at ${kubeletConfig}: nothing to compare (pass --kubelet-config FILE)`);
  }
  let kubeletDriver: unknown;
  try {
    kubeletDriver = (parseYaml(text) as { cgroupDriver?: unknown } | null)?.cgroupDriver ?? 'cgroupfs';
  } catch (err) {
    return fail(name, `${kubeletConfig} is not valid YAML: ${messageOf(err)}`, `fix the YAML in ${kubeletConfig}`);
  }
  if (kubeletDriver === config.cgroupDriver) {
    return pass(name, `kubelet (${kubeletConfig}) and icetray both use cgroupDriver ${config.cgroupDriver}`);
  }
  return fail(
    name,
    `kubelet (${kubeletConfig}) uses cgroupDriver ${String(kubeletDriver)}, icetray uses ${config.cgroupDriver}: the kubelet would build pod cgroups where icetray does not put containers, so pods fail to start or escape their limits`,
    `make them equal: set cgroupDriver: ${config.cgroupDriver} in ${kubeletConfig} and restart the kubelet, or set cgroup_driver = "${String(kubeletDriver)}" in icetray's config (with no pods on the node) — the kubelet ≥ 1.28 can also take it from the runtime (RuntimeConfig)`,
  );
}

export async function checkCni(
  config: Pick<Config, 'cniConfDir' | 'cniBinDirs' | 'podCidr' | 'rootDir' | 'cniBridge'>,
  routeFile?: string,
): Promise<CheckResult> {
  const name = 'CNI plugins and config';
  const { file, conflist } = await loadNetwork(config);
  const types = ['loopback', ...conflist.plugins.map((plugin) => plugin.type)];
  const found: string[] = [];
  const missing: string[] = [];
  for (const type of types) ((await findPlugin(config.cniBinDirs, type)) === undefined ? missing : found).push(type);
  // icetray's own default network: say which bridge (per instance), and that its subnet is free.
  const own = basename(file) === DEFAULT_CONFLIST_FILE;
  const network = `network "${conflist.name}"${own ? ` (bridge ${String(conflist.plugins[0]?.['bridge'])})` : ''}`;
  const conflict = own ? await podCidrConflict(conflist, routeFile) : undefined;
  if (conflict !== undefined) return fail(name, `${network} from ${file}: ${conflict.problem}`, conflict.fix);
  if (missing.length === 0)
    return pass(name, `${network} from ${file}; plugins ${found.join(', ')} found in ${config.cniBinDirs.join(', ')}`);
  return fail(
    name,
    `${network} (${file}) needs ${missing.join(', ')}, not found in ${config.cniBinDirs.join(', ')}`,
    'apt-get install containernetworking-plugins',
  );
}

export async function checkPauseBinary(pauseBinary: string): Promise<CheckResult> {
  const name = 'pause binary and C compiler';
  const compiler = await run('cc', ['--version']).then(
    (r) => r.stdout.split('\n')[0] ?? 'cc',
    () => undefined,
  );
  const built = await access(pauseBinary, constants.X_OK).then(
    () => true,
    () => false,
  );
  if (built)
    return pass(
      name,
      `${pauseBinary} is built${compiler === undefined ? ' (no C compiler now: it cannot be rebuilt)' : ` (compiler: ${compiler})`}`,
    );
  return fail(
    name,
    `${pauseBinary} is missing${compiler === undefined ? ' and there is no C compiler' : ''}`,
    compiler === undefined ? 'apt-get install gcc libc6-dev && npm run build:native' : 'npm run build:native',
  );
}
