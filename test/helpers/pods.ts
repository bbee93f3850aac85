import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NamespaceMode, PodSandboxConfig } from '../../src/generated/api.js';

/** A pod config as the kubelet sends it, unique per call. */
export function podConfig(overrides: Partial<PodSandboxConfig> = {}, pid: NamespaceMode = NamespaceMode.POD): PodSandboxConfig {
  const suffix = randomBytes(4).toString('hex');
  return PodSandboxConfig.fromPartial({
    metadata: { name: `pod-${suffix}`, namespace: 'icetray-test', uid: `uid-${suffix}`, attempt: 0 },
    hostname: `pod-${suffix}`,
    labels: { app: 'icetray-test' },
    annotations: { 'example.com/note': 'made by a test' },
    linux: { securityContext: { namespaceOptions: { network: NamespaceMode.POD, ipc: NamespaceMode.POD, pid } } },
    ...overrides,
  });
}

export interface TestNetwork {
  bridge: string;
  subnet: string;
  dataDir: string;
}

/**
 * A CNI network of the test's own: its own bridge and a /24 of 10.254/16, so tests never touch
 * icetray0 or the host's networks. The bridge plugin (isGateway) turns ip_forward on: callers
 * restore it with `restoreIpForward`.
 */
export function writeTestNetwork(confDir: string, dir: string): TestNetwork {
  const n = randomBytes(1)[0] ?? 1;
  const network: TestNetwork = { bridge: `ittest${n}`, subnet: `10.254.${n}.0/24`, dataDir: join(dir, 'cni-leases') };
  const conflist = {
    cniVersion: '1.0.0',
    name: 'icetray-test',
    plugins: [
      {
        type: 'bridge',
        bridge: network.bridge,
        isGateway: true,
        ipam: { type: 'host-local', ranges: [[{ subnet: network.subnet }]], dataDir: network.dataDir },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  };
  mkdirSync(confDir, { recursive: true });
  writeFileSync(join(confDir, '10-test.conflist'), JSON.stringify(conflist));
  return network;
}

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion without throwing. */
export function sh(file: string, args: string[], timeoutMs = 10_000): Promise<Result> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

export function inode(path: string): number {
  return statSync(path).ino;
}

export function ipForward(): string {
  return readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
}

export function restoreIpForward(value: string): void {
  writeFileSync('/proc/sys/net/ipv4/ip_forward', `${value}\n`);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
    return state !== 'Z';
  } catch {
    return false;
  }
}
