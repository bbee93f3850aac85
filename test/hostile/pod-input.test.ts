import { status } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PodSandboxConfig, Protocol } from '../../src/generated/api.js';
import type { DeepPartial } from '../../src/cli/cri-client.js';
import { formatLeaks, inventory, leakScope, settle, type Inventory, type LeakScope } from '../helpers/leaks.js';
import { codeOf, startHarness, stopHarness, type Harness } from '../helpers/hostile.js';
import { podConfig, sh } from '../helpers/pods.js';
import type { TestServer } from '../helpers/server.js';
import { isRoot } from '../helpers/tools.js';

/**
 * Hostile pod configs over the real socket: each is refused with INVALID_ARGUMENT — never
 * INTERNAL or UNAVAILABLE — and leaves nothing behind (pods, processes, pins, cgroups, veths,
 * leases, folders, descriptors), counted before and after. Where a payload aims at the host,
 * the host is checked too.
 */

const long = (n: number): string => 'a'.repeat(n);

/** Payloads, by what they aim at: each a change to an otherwise valid pod config. */
const PAYLOADS: [string, DeepPartial<PodSandboxConfig>][] = [
  // A sysctl name that passes "starts with net." but is a path out of /proc/sys/net.
  ['a sysctl climbing out of net', { linux: { sysctls: { 'net.//.kernel.core_pattern': '|/bin/false' } } }],
  ['a slash-form sysctl climbing out', { linux: { sysctls: { 'net/../kernel/core_pattern': '|/bin/false' } } }],
  ['a sysctl climbing out of kernel.shm', { linux: { sysctls: { 'kernel.shm/../../core_pattern': 'x' } } }],
  ['an empty sysctl part', { linux: { sysctls: { 'net..ipv4.ip_forward': '1' } } }],
  ['a node-wide sysctl', { linux: { sysctls: { 'kernel.core_pattern': 'x' } } }],
  ['a sysctl value with a newline', { linux: { sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0\n1' } } }],
  ['a sysctl value with a NUL', { linux: { sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0\0' } } }],
  // Pod metadata becomes CNI_ARGS ("K=V;K=V"): these would add arguments, here choosing the IP.
  ['a pod name injecting a CNI argument', { metadata: { name: 'web;IP=10.254.0.77' } }],
  ['a namespace with "="', { metadata: { namespace: 'a=b' } }],
  ['a uid with a newline', { metadata: { uid: 'u\nK8S_POD_NAME=x' } }],
  ['a uid with a slash', { metadata: { uid: '../../../sys' } }],
  ['a pod name of 300 characters', { metadata: { name: long(300) } }],
  ['a NUL in the pod name', { metadata: { name: 'a\0b' } }],
  // The hostname goes to sethostname(2) and into /etc/hosts.
  ['a hostname over 64 characters', { hostname: long(65) }],
  ['a hostname with a newline (a line in /etc/hosts)', { hostname: 'web\n10.0.0.1 evil' }],
  ['a hostname with a NUL', { hostname: 'web\0' }],
  // log_directory is a host path: a relative one would depend on icetray's working directory.
  ['a relative log_directory', { logDirectory: 'logs/pod' }],
  ['a log_directory with ".."', { logDirectory: '/tmp/../etc' }],
  // ENAMETOOLONG at the first mkdir otherwise (a fuzz finding: StartContainer answered INTERNAL).
  ['a log_directory with a part longer than NAME_MAX', { logDirectory: `/tmp/${'a'.repeat(256)}` }],
  // Ports reach portmap and iptables.
  ['container port 0 with a host port', { portMappings: [{ containerPort: 0, hostPort: 18080 }] }],
  ['a host port above 65535', { portMappings: [{ containerPort: 80, hostPort: 70000 }] }],
  ['a negative container port', { portMappings: [{ containerPort: -1, hostPort: 18081 }] }],
  ['a host IP that is not an address', { portMappings: [{ containerPort: 80, hostPort: 18082, hostIp: '127.0.0.1; rm -rf /' }] }],
  ['an unknown protocol', { portMappings: [{ containerPort: 80, hostPort: 18083, protocol: Protocol.UNRECOGNIZED }] }],
  [
    'one host port mapped twice',
    {
      portMappings: [
        { containerPort: 80, hostPort: 18084 },
        { containerPort: 81, hostPort: 18084 },
      ],
    },
  ],
  // DNS settings become resolv.conf lines.
  ['a DNS server that is not an address', { dnsConfig: { servers: ['nameserver 1.2.3.4'] } }],
  ['a DNS search with a newline', { dnsConfig: { searches: ['a\nnameserver 6.6.6.6'] } }],
  // Resources reach cgroup files.
  ['a cpuset that is not a list', { linux: { resources: { cpusetCpus: '0,,1' } } }],
  ['a reversed cpuset range', { linux: { resources: { cpusetCpus: '1-0' } } }],
  ['unified resources on cgroup v1', { linux: { resources: { unified: { 'memory.max': '1' } } } }],
  ['a hugepage size that is not one', { linux: { resources: { hugepageLimits: [{ pageSize: '../x', limit: 1n }] } } }],
  ['a cgroup parent with ".."', { linux: { cgroupParent: '/kubepods/../../system.slice' } }],
  ['a systemd slice under cgroupfs', { linux: { cgroupParent: 'kubepods.slice' } }],
];

describe.skipIf(!isRoot)('hostile pod configs (needs root: real pods over the socket)', () => {
  let h: Harness | undefined;
  let t: TestServer;
  let scope: LeakScope;
  let before: Inventory;
  const podUids = new Set<string>();
  const corePattern = readFileSync('/proc/sys/kernel/core_pattern', 'utf8');

  beforeAll(async () => {
    h = await startHarness();
    t = h.t;
    scope = leakScope(t, h.net, { podUids });
    // One good pod first, so that the bridge exists and later counts see only what the payloads do.
    const warm = podConfig();
    podUids.add(warm.metadata?.uid ?? '');
    const { podSandboxId } = await t.cri.runtime.runPodSandbox({ config: warm });
    await t.cri.runtime.removePodSandbox({ podSandboxId });
    before = await inventory(scope);
  });
  afterAll(() => stopHarness(h));

  it.each(PAYLOADS)('refuses %s with INVALID_ARGUMENT', async (_, change) => {
    const base = podConfig();
    const config = PodSandboxConfig.fromPartial({
      ...base,
      ...change,
      metadata: { ...base.metadata, ...change.metadata },
      linux: { ...base.linux, ...change.linux } as PodSandboxConfig['linux'],
    });
    podUids.add(config.metadata?.uid ?? '');
    expect(await codeOf(t.cri.runtime.runPodSandbox({ config }))).toBe(status.INVALID_ARGUMENT);
  });

  it('left nothing behind, and the host kept its settings', async () => {
    const leaks = await settle(scope, before);
    expect(leaks, formatLeaks(leaks)).toEqual([]);
    expect(readFileSync('/proc/sys/kernel/core_pattern', 'utf8')).toBe(corePattern);
  });

  it('still sets a real namespaced sysctl, in the pod only', async () => {
    const base = podConfig();
    const config = PodSandboxConfig.fromPartial({
      ...base,
      linux: { ...base.linux, sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' } },
    });
    podUids.add(config.metadata?.uid ?? '');
    const { podSandboxId } = await t.cri.runtime.runPodSandbox({ config });
    const info = JSON.parse((await t.cri.runtime.podSandboxStatus({ podSandboxId, verbose: true })).info['info'] ?? '{}') as {
      netns: string;
    };
    const inPod = await sh('nsenter', [`--net=${info.netns}`, 'cat', '/proc/sys/net/ipv4/ip_unprivileged_port_start']);
    expect(inPod.stdout.trim()).toBe('0');
    expect(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim()).not.toBe('0');
    await t.cri.runtime.removePodSandbox({ podSandboxId });
  });
});
