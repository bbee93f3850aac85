import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import dbus from 'dbus-next';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError, UnavailableError } from '../errors.js';
import type { LinuxContainerResources } from '../generated/api.js';
import { log } from '../log.js';
import { attachDeviceFilter } from '../os/device-filter.js';
import type { CgroupTree } from './cgroup-files.js';
import { deviceProgram } from './device-program.js';
import {
  checkV1Devices,
  DEFAULT_DEVICE_ACCESS,
  devicePolicy,
  type DeviceAccess,
  type DevicePolicy,
  type DeviceRule,
} from './devices.js';
import type { CgroupDriver, DeviceFilterAttacher, PodCgroupSpec } from './driver.js';
import { systemdContainerPath, systemdPodPath, unitOf, podKey } from './names.js';
import { DEFAULT_CPU_PERIOD, podResources, resourceWrites, sharesToWeight, swapToV2 } from './resources.js';
import { readOomKilled, readStats, type CgroupStats } from './stats.js';
import type { SystemdManager, UnitProperty } from './systemd-bus.js';

/**
 * The systemd driver: pods are slices and containers scopes, made through systemd's D-Bus API so
 * that systemd, which owns the cgroup tree on its hosts, knows them (the kubelet's and runc's
 * systemd driver). Limits systemd has a property for are set as properties (it would reset files
 * it manages on a reload); the rest are written to the files, which systemd leaves alone.
 */

/** systemd's "infinity" for a uint64 property. */
const INFINITY = 2n ** 64n - 1n;

/** v1 hierarchies systemd realizes units in; in the others (cpuset, freezer, hugetlb) the driver places processes itself, as runc does. */
const SYSTEMD_V1 = new Set(['cpu', 'cpuacct', 'blkio', 'memory', 'devices', 'pids']);

/** Files that systemd writes from unit properties (below), by version: icetray must not write them behind its back. */
const SYSTEMD_FILES = {
  1: new Set(['cpu.shares', 'cpu.cfs_period_us', 'cpu.cfs_quota_us', 'memory.limit_in_bytes']),
  2: new Set(['cpu.weight', 'cpu.max', 'memory.max', 'memory.swap.max', 'cpuset.cpus', 'cpuset.mems']),
};

const t = (value: bigint) => new dbus.Variant('t', value);

/** "0-3,6" → the byte mask of AllowedCPUs/AllowedMemoryNodes (bit n is byte n/8, bit n%8). */
export function cpusetMask(list: string): Buffer {
  const bits: number[] = [];
  for (const range of list.split(',').filter((r) => r.trim() !== '')) {
    const match = /^\s*(\d+)(?:-(\d+))?\s*$/.exec(range);
    if (match === null) throw new InvalidArgumentError(`cpuset ${JSON.stringify(list)} is not a list like "0-3,6"`);
    const from = Number(match[1]);
    const to = Number(match[2] ?? match[1]);
    if (to < from) throw new InvalidArgumentError(`cpuset ${JSON.stringify(list)} has a range that runs backwards`);
    for (let n = from; n <= to; n++) bits.push(n);
  }
  const mask = Buffer.alloc(bits.length === 0 ? 0 : Math.floor(Math.max(...bits) / 8) + 1);
  for (const n of bits) mask[Math.floor(n / 8)] = (mask[Math.floor(n / 8)] ?? 0) | (1 << (n % 8));
  return mask;
}

/** The unit properties for CRI resources (systemd.resource-control(5)); zero values are left out. */
export function unitProperties(r: LinuxContainerResources, version: 1 | 2): UnitProperty[] {
  const props: UnitProperty[] = [];
  if (r.cpuShares > 0n) props.push(version === 1 ? ['CPUShares', t(r.cpuShares)] : ['CPUWeight', t(sharesToWeight(r.cpuShares))]);
  const period = r.cpuPeriod > 0n ? r.cpuPeriod : DEFAULT_CPU_PERIOD;
  if (r.cpuPeriod > 0n) props.push(['CPUQuotaPeriodUSec', t(r.cpuPeriod)]);
  if (r.cpuQuota > 0n) {
    // systemd keeps CPU quota as whole percents (10 ms per second): round up, so the quota is never below the one asked (as runc does).
    const perSec = (r.cpuQuota * 1_000_000n) / period;
    props.push(['CPUQuotaPerSecUSec', t(((perSec + 9_999n) / 10_000n) * 10_000n)]);
  } else if (r.cpuQuota < 0n) {
    props.push(['CPUQuotaPerSecUSec', t(INFINITY)]);
  }
  // systemd ≥ 240 applies MemoryMax on v1 as memory.limit_in_bytes.
  if (r.memoryLimitInBytes !== 0n) props.push(['MemoryMax', t(r.memoryLimitInBytes < 0n ? INFINITY : r.memoryLimitInBytes)]);
  if (version === 2) {
    const swap = swapToV2(r.memoryLimitInBytes, r.memorySwapLimitInBytes);
    if (swap !== undefined) props.push(['MemorySwapMax', t(swap === 'max' ? INFINITY : BigInt(swap))]);
    if (r.cpusetCpus !== '') props.push(['AllowedCPUs', new dbus.Variant('ay', cpusetMask(r.cpusetCpus))]);
    if (r.cpusetMems !== '') props.push(['AllowedMemoryNodes', new dbus.Variant('ay', cpusetMask(r.cpusetMems))]);
  }
  return props;
}

/**
 * A rule as a DeviceAllow= entry (systemd.resource-control(5)). systemd (≥ 240) reads major and
 * minor straight from a /dev/char/M:m or /dev/block/M:m path, with no node needed at that path;
 * "char-136" is a whole major, "char-*" every device of a type. (Named groups such as
 * "char-pts" are looked up in /proc/devices, which can match more majors than meant: not used.)
 */
function deviceAllowEntry(rule: DeviceRule): [string, string] {
  const group = rule.type === 'c' ? 'char' : 'block';
  if (rule.major === '*') {
    // No systemd spelling exists for "any major, this minor"; no rule of icetray's has that shape.
    if (rule.minor !== '*') throw new InvalidArgumentError(`device rule ${group} *:${rule.minor} cannot be given to systemd`);
    return [`${group}-*`, rule.access];
  }
  if (rule.minor === '*') return [`${group}-${rule.major}`, rule.access];
  return [`/dev/${group}/${rule.major}:${rule.minor}`, rule.access];
}

/**
 * The scope's device properties. "strict" allows exactly the DeviceAllow= entries, so the
 * allowlist is the same table under both drivers ("closed" would add systemd's own pseudo-device
 * list, which varies by version). Allow-all is "auto" with no entries (systemd then writes
 * `devices.allow a` on v1 and attaches no program on v2).
 */
export function deviceProperties(policy: DevicePolicy): UnitProperty[] {
  const entries = policy.kind === 'all' ? [] : policy.rules.map(deviceAllowEntry);
  return [
    ['DevicePolicy', new dbus.Variant('s', policy.kind === 'all' ? 'auto' : 'strict')],
    ['DeviceAllow', new dbus.Variant('a(ss)', entries)],
  ];
}

/** Reads the PID a process has in the PID namespace `level` deep (the NSpid line of /proc/<pid>/status). */
async function pidAtLevel(pid: number, level: number): Promise<number> {
  if (level === 0) return pid;
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const nspids = /^NSpid:\s*(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/) ?? [];
  const inner = nspids[level];
  if (inner === undefined) throw new NotFoundError(`process ${pid} is not visible to systemd (not in its PID namespace)`);
  return Number(inner);
}

export class SystemdDriver implements CgroupDriver {
  readonly name = 'systemd';
  /** Resources and devices of containers whose scope starts with their first process (a scope cannot be empty). */
  private readonly pending = new Map<string, { resources: LinuxContainerResources | undefined; devices: DevicePolicy }>();
  private level: number | undefined;

  constructor(
    private readonly manager: SystemdManager,
    private readonly tree: CgroupTree,
    private readonly systemdPid: number,
    /** Attaches a device program to a v2 folder: nsexec device-filter, or a test's recorder. */
    private readonly attachFilter: DeviceFilterAttacher = attachDeviceFilter,
  ) {}

  get version(): 1 | 2 {
    return this.tree.version;
  }

  /** Hierarchies systemd does not manage (v1 only): the driver creates and fills them itself. */
  private get ownHierarchies(): string[] {
    if (this.version === 2) return [];
    return this.tree.hierarchies
      .filter((h) => h.controllers.length > 0 && !h.controllers.some((c) => SYSTEMD_V1.has(c)))
      .map((h) => h.name);
  }

  /** The resource writes systemd has no property for. */
  private async writeFiles(cgroup: string, resources: LinuxContainerResources): Promise<void> {
    await this.tree.apply(
      cgroup,
      resourceWrites(resources, this.version).filter((w) => !SYSTEMD_FILES[this.version].has(w.file)),
    );
  }

  private baseProperties(description: string): UnitProperty[] {
    return [
      ['Description', new dbus.Variant('s', description)],
      // Not ordered against shutdown and basic.target: it lives as long as the pod, like the kubelet's.
      ['DefaultDependencies', new dbus.Variant('b', false)],
      ['MemoryAccounting', new dbus.Variant('b', true)],
      ['CPUAccounting', new dbus.Variant('b', true)],
      ['TasksAccounting', new dbus.Variant('b', true)],
    ];
  }

  async createPod(spec: PodCgroupSpec): Promise<string> {
    const path = systemdPodPath(podKey(spec), spec.cgroupParent);
    // A slice the kubelet (or critest) named is theirs: systemd creates it when a scope starts in it.
    if (spec.cgroupParent !== '') return path;
    const resources = podResources(spec.resources, spec.overhead);
    try {
      await this.manager.startTransientUnit(unitOf(path), [
        ...this.baseProperties(`icetray pod ${spec.podUid}`),
        ...(resources === undefined ? [] : unitProperties(resources, this.version)),
      ]);
    } catch (err) {
      // Another sandbox of the same pod made it (a pause that died is replaced by a new sandbox).
      if (!(err instanceof AlreadyExistsError)) throw err;
    }
    return path;
  }

  createContainer(
    podCgroup: string,
    id: string,
    resources?: LinuxContainerResources,
    devices: DeviceAccess = DEFAULT_DEVICE_ACCESS,
  ): Promise<string> {
    const path = systemdContainerPath(podCgroup, id);
    // Checked now, so that a malformed device fails the caller before any process starts.
    this.pending.set(path, { resources, devices: devicePolicy(devices) });
    return Promise.resolve(path);
  }

  /**
   * The first process starts the scope with PIDs=[pid] (systemd moves it before the job ends);
   * Delegate=yes hands the scope's cgroup to icetray, so later ones (exec) are written to it directly.
   */
  async addProcess(cgroup: string, pid: number): Promise<void> {
    const pending = this.pending.get(cgroup);
    if (pending === undefined) {
      // Only where the scope exists: systemd realizes a unit in the v1 controllers it accounts, not in all.
      await this.tree.addProcess(cgroup, pid, await this.tree.presentIn(cgroup));
      return;
    }
    const { resources, devices } = pending;
    const slice = unitOf(posix.dirname(cgroup));
    await this.manager.startTransientUnit(unitOf(cgroup), [
      ...this.baseProperties(`icetray container ${unitOf(cgroup)}`),
      ['Slice', new dbus.Variant('s', slice === '' ? '-.slice' : slice)],
      ['Delegate', new dbus.Variant('b', true)],
      ['PIDs', new dbus.Variant('au', [await this.busPid(pid)])],
      ...(resources === undefined ? [] : unitProperties(resources, this.version)),
      ...deviceProperties(devices),
    ]);
    this.pending.delete(cgroup);
    const own = this.ownHierarchies;
    if (own.length > 0) {
      await this.tree.create(cgroup, own);
      await this.tree.addProcess(cgroup, pid, own);
    }
    if (resources !== undefined) await this.writeFiles(cgroup, resources);
    await this.confirmDevices(cgroup, devices);
  }

  /**
   * systemd applies DeviceAllow= best-effort (a v1 write it cannot make is logged at debug level),
   * so before the process runs icetray confirms the allowlist itself: on v1 it reads devices.list
   * back; in the v2 hierarchy (pure v2, or "unified" on a hybrid host, where systemd attaches
   * nothing) it attaches its own program beside systemd's, as runc does. Either failing, or
   * neither being possible, fails the start.
   */
  private async confirmDevices(cgroup: string, policy: DevicePolicy): Promise<void> {
    const present = await this.tree.presentIn(cgroup);
    let confirmed = false;
    const devices = this.tree.hierarchies.find((h) => h.controllers.includes('devices'));
    if (devices !== undefined && present.includes(devices.name)) {
      await checkV1Devices(this.tree, cgroup, policy);
      confirmed = true;
    }
    const v2 = this.tree.hierarchies.find((h) => h.v2);
    const v2Dir = this.tree.v2Dir(cgroup);
    if (policy.kind === 'allowlist' && v2 !== undefined && v2Dir !== undefined && present.includes(v2.name)) {
      await this.attachFilter(v2Dir, deviceProgram(policy.rules));
      confirmed = true;
    }
    if (policy.kind === 'allowlist' && !confirmed)
      throw new UnavailableError(`cannot confirm the device allowlist of unit ${unitOf(cgroup)}: it has no devices cgroup`);
  }

  private async busPid(pid: number): Promise<number> {
    if (this.level === undefined) {
      const status = await readFile(`/proc/${this.systemdPid}/status`, 'utf8');
      this.level = (/^NSpid:\s*(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/).length ?? 1) - 1;
    }
    return pidAtLevel(pid, this.level);
  }

  async update(cgroup: string, resources: LinuxContainerResources): Promise<void> {
    const props = unitProperties(resources, this.version);
    if (props.length > 0) await this.manager.setUnitProperties(unitOf(cgroup), props);
    await this.writeFiles(cgroup, resources);
  }

  stats(cgroup: string): Promise<CgroupStats> {
    return readStats(this.tree, cgroup);
  }

  pids(cgroup: string): Promise<number[]> {
    return this.tree.pids(cgroup);
  }

  oomKilled(cgroup: string): Promise<boolean> {
    return readOomKilled(this.tree, cgroup);
  }

  async remove(cgroup: string): Promise<void> {
    this.pending.delete(cgroup);
    const children = await this.tree.children(cgroup);
    if (children.length > 0) {
      log.debug({ cgroup, children }, 'unit kept: its cgroup still has child cgroups');
      return;
    }
    // systemd removes the unit's cgroups; those in hierarchies it does not manage are icetray's.
    await this.manager.stopUnit(unitOf(cgroup));
    const own = this.ownHierarchies;
    if (own.length > 0) await this.tree.remove(cgroup, own);
  }

  close(): Promise<void> {
    this.manager.close();
    return Promise.resolve();
  }
}
