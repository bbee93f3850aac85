import { execFile } from 'node:child_process';
import { readdir, readFile, readlink, rmdir } from 'node:fs/promises';
import { basename, join, posix } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CriClient } from './cri.js';

/**
 * An inventory of everything one icetray instance can leave on the node, and the difference
 * between two inventories: what a test made and did not take away.
 *
 *     const scope = leakScope(t, net);           // or write the LeakScope by hand
 *     const before = await inventory(scope);
 *     ... the test ...
 *     const leaks = await settle(scope, before); // re-counts until nothing leaked, or 10 s
 *     expect(leaks, formatLeaks(leaks)).toEqual([]);
 *
 * Everything is scoped to the one instance, so that other icetrays on the same host (other test
 * files, other people's runs, a real node's) never count: folders and mounts by the instance's
 * root and state dirs, veths by the test's own CNI bridge, leases by its host-local dataDir, and
 * processes and cgroups by the pod uids, sandbox and container ids the test used (pass the same
 * Set objects the test keeps filling: they are read at every inventory).
 *
 * How a process is attributed to the instance, first match wins (`OwnedProcess.why` says which):
 *  1. `tag`: a pause (`…/native/build/pause -d … -I <rootDir>/sandboxes/<id>`: any argument
 *     naming a path under rootDir, which is how src/sandbox/pause.ts labels it). This is the
 *     primary key, and the only one that still finds a pause that was never put in a cgroup and
 *     whose pins are gone. An older pause without the label is found by 3 or 4 only.
 *  2. `monitor`: an nsexec monitor, `--exit-file <rootDir>/containers/<id>/exit` in its cmdline.
 *  3. `pins`: a pause holding a namespace that is pinned (bind-mounted) under stateDir.
 *  4. `cgroup`: any process in a cgroup of the instance (see `cgroupOwner`): pause in its pod's
 *     cgroup, the containers' processes in theirs.
 */

/** What identifies one icetray instance on a node shared with others. */
export interface LeakScope {
  /** The instance's root_dir (`t.runtime.loaded.config.rootDir`). */
  rootDir: string;
  /** The instance's state_dir. */
  stateDir: string;
  /** The test's CNI bridge (writeTestNetwork's `bridge`): veths attached to it are its pods'. */
  bridge?: string;
  /** host-local's dataDir (writeTestNetwork's `dataDir`): one file per leased address. */
  leaseDir?: string;
  /**
   * The test network's subnet (writeTestNetwork's `subnet`): NAT rules (portmap's host ports)
   * that name an address of it are the instance's. Needs iptables-save; without it, no rules are
   * counted.
   */
  subnet?: string;
  /**
   * The CNI network's name, when it is the test's alone: portmap comments every rule with
   * `name: "<network>"`, which also finds the rules of a pod whose id was never answered (a
   * RunPodSandbox that failed half-way) and whose DNAT chain is already empty. writeTestNetwork's
   * networks all share the name "icetray-test", so leakScope leaves it out.
   */
  networkName?: string;
  /** The server process whose open descriptors are counted: `process.pid` for startTestServer. */
  serverPid?: number;
  /**
   * Whose mount table to read (mounts are per mount namespace): 'self' (the default) for an
   * in-process server, or a server process's pid.
   */
  mountinfoOf?: number | 'self';
  /** Lists the instance's pods and containers over CRI; left out for a server that is not running. */
  cri?: CriClient;
  /** Pod uids the test sent: a cgroup with a `pod<uid>` part (cgroupfs) or `…-pod<uid>.slice` (systemd) is the instance's. */
  podUids?: Iterable<string>;
  /** Sandbox and container ids the test was given: a cgroup whose last part is one (or `icetray-<id>.scope`) is the instance's. */
  ids?: Iterable<string>;
  /**
   * cgroup paths wholly owned by the test (from the root of a hierarchy, e.g. the cgroup_parent
   * values it sent): everything at or below them is the instance's. "/" is refused.
   */
  cgroupPrefixes?: Iterable<string>;
  /** Where the cgroup hierarchies are mounted (default /sys/fs/cgroup). */
  cgroupRoot?: string;
  /** More folders whose mounts count, besides rootDir and stateDir: host paths the test bound into containers. */
  extraDirs?: string[];
}

/** A process attributed to the instance, and why (see the rules at the top of this file). */
export interface OwnedProcess {
  pid: number;
  /** /proc/<pid>/stat start time: tells the process from a later one that reused its pid. */
  startTime: string;
  cmdline: string;
  why: string;
}

/** An open descriptor of the server process. */
export interface Descriptor {
  fd: number;
  /** readlink of /proc/<pid>/fd/<fd>: a path, `socket:[inode]`, `pipe:[inode]`, `anon_inode:…`. */
  target: string;
}

/** Everything one instance holds on the node at one moment. Lists are sorted. */
export interface Inventory {
  /** Sandbox ids ListPodSandbox answers ([] without `scope.cri`). */
  pods: string[];
  /** Container ids ListContainers answers ([] without `scope.cri`). */
  containers: string[];
  processes: OwnedProcess[];
  /** Mount points at or under rootDir, stateDir or `extraDirs`, as `<path> (<fstype>)`; a stacked mount appears once per layer. */
  mounts: string[];
  /** The instance's cgroups, as `<hierarchy>:<path>` ("memory:/kubepods/burstable/pod<uid>/<id>"; "unified" or "" for v2). */
  cgroups: string[];
  /** Interfaces attached to the test bridge. */
  veths: string[];
  /** host-local lease files, relative to the dataDir ("icetray-test/10.254.7.3"). */
  leases: string[];
  /** Entries of rootDir/sandboxes, rootDir/containers, stateDir/sandboxes and rootDir/images/uses. */
  folders: string[];
  /** `iptables-save -t nat` rules that name the test subnet, its network (`networkName`) or one of the instance's ids. */
  natRules: string[];
  /** The server's open descriptors ([] without `scope.serverPid`). */
  fds: Descriptor[];
}

export type LeakKind = keyof Inventory;

/** One thing present after that was not before. */
export interface Leak {
  kind: LeakKind;
  /** What it is, in words a failing test can print: a path, `pid 123 pause -d -n`, `fd 41 -> /x`. */
  item: string;
  /** Why it counts as the instance's (processes), or what it holds (leases). */
  detail?: string;
}

const LEASE_BOOKKEEPING = (name: string): boolean => name === 'lock' || name.startsWith('last_reserved_ip');

async function children(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort();
}

async function readOptional(path: string): Promise<string | undefined> {
  return readFile(path, 'utf8').catch(() => undefined);
}

function under(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

/** mountinfo escapes space, tab, newline and backslash as octal (\040). */
function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

interface MountEntry {
  root: string;
  mountPoint: string;
  fsType: string;
}

async function readMounts(of: number | 'self'): Promise<MountEntry[]> {
  const text = (await readOptional(`/proc/${String(of)}/mountinfo`)) ?? '';
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (left === undefined || right === undefined) continue;
    const fields = left.split(' ');
    entries.push({
      root: unescapeMountinfo(fields[3] ?? ''),
      mountPoint: unescapeMountinfo(fields[4] ?? ''),
      fsType: right.split(' ')[0] ?? '',
    });
  }
  return entries;
}

/** Decides whether a cgroup path (from the root of its hierarchy) is the instance's. */
export function cgroupOwner(scope: Pick<LeakScope, 'podUids' | 'ids' | 'cgroupPrefixes'>): (path: string) => boolean {
  const uids = new Set(scope.podUids ?? []);
  const systemdUids = new Set([...uids].map((uid) => uid.replaceAll('-', '_')));
  const ids = new Set(scope.ids ?? []);
  const prefixes = [...(scope.cgroupPrefixes ?? [])].map((p) => posix.normalize(`/${p}`).replace(/(.)\/$/, '$1'));
  if (prefixes.includes('/')) throw new Error('leak scope: the cgroup prefix "/" would claim every cgroup of the node');
  return (path) => {
    if (prefixes.some((prefix) => under(path, prefix))) return true;
    const parts = path.split('/').filter(Boolean);
    for (const part of parts) {
      if (part.startsWith('pod') && uids.has(part.slice(3))) return true;
      const slice = /-pod(.+)\.slice$/.exec(part);
      if (slice?.[1] !== undefined && systemdUids.has(slice[1])) return true;
    }
    const last = parts.at(-1) ?? '';
    const scopeId = /^icetray-(.+)\.scope$/.exec(last)?.[1];
    return ids.has(last) || (scopeId !== undefined && ids.has(scopeId));
  };
}

/** The cgroup hierarchies mounted under `root`: [name, dir], name '' for a pure v2 root. */
async function hierarchies(root: string): Promise<[string, string][]> {
  if ((await readOptional(join(root, 'cgroup.controllers'))) !== undefined) return [['', root]];
  const found: [string, string][] = [];
  for (const entry of await readdir(root, { withFileTypes: true }).catch(() => [])) {
    // cpu -> cpu,cpuacct style symlinks name a hierarchy already listed.
    if (!entry.isDirectory()) continue;
    if ((await readOptional(join(root, entry.name, 'cgroup.procs'))) !== undefined)
      found.push([entry.name, join(root, entry.name)]);
  }
  return found;
}

async function ownedCgroups(root: string, owns: (path: string) => boolean): Promise<string[]> {
  const found: string[] = [];
  for (const [name, dir] of await hierarchies(root)) {
    const walk = async (path: string, depth: number): Promise<void> => {
      if (depth > 16) return;
      for (const entry of await readdir(join(dir, path), { withFileTypes: true }).catch(() => [])) {
        if (!entry.isDirectory()) continue;
        const child = posix.join(path, entry.name);
        if (owns(child)) found.push(`${name}:${child}`);
        await walk(child, depth + 1);
      }
    };
    await walk('/', 0);
  }
  return found.sort();
}

/** The namespace inodes (`net:[4026532…]`) pinned by nsfs mounts under stateDir. */
function pinnedNamespaces(mounts: readonly MountEntry[], stateDir: string): Set<string> {
  return new Set(mounts.filter((m) => m.fsType === 'nsfs' && under(m.mountPoint, stateDir)).map((m) => m.root));
}

async function ownedProcesses(
  scope: LeakScope,
  mounts: readonly MountEntry[],
  owns: (path: string) => boolean,
): Promise<OwnedProcess[]> {
  const pins = pinnedNamespaces(mounts, scope.stateDir);
  const containersDir = join(scope.rootDir, 'containers');
  const found: OwnedProcess[] = [];
  for (const name of await children('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const raw = await readOptional(`/proc/${name}/cmdline`);
    const stat = await readOptional(`/proc/${name}/stat`);
    if (raw === undefined || stat === undefined) continue;
    // Field 22 (starttime), counted after the ")" that ends the command name.
    const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
    const argv = raw.split('\0').filter((arg, i, all) => arg !== '' || i < all.length - 1);
    const cmdline = argv.join(' ');
    const isPause = basename(argv[0] ?? '') === 'pause';
    let why: string | undefined;
    if (isPause) {
      const tag = argv.slice(1).find((arg) => under(arg.slice(arg.indexOf('=') + 1), scope.rootDir));
      if (tag !== undefined) why = `tag: pause names ${tag}`;
    }
    const exitFile = argv[argv.indexOf('--exit-file') + 1];
    if (why === undefined && argv.includes('--exit-file') && exitFile !== undefined && under(exitFile, containersDir)) {
      why = `monitor: --exit-file ${exitFile}`;
    }
    if (why === undefined && isPause && pins.size > 0) {
      for (const ns of ['net', 'ipc', 'uts', 'pid']) {
        const link = await readlink(`/proc/${name}/ns/${ns}`).catch(() => '');
        if (pins.has(link)) {
          why = `pins: holds ${link}, pinned under ${scope.stateDir}`;
          break;
        }
      }
    }
    if (why === undefined) {
      const cgroups = ((await readOptional(`/proc/${name}/cgroup`)) ?? '').split('\n');
      const line = cgroups.find((l) => {
        const path = l.split(':').slice(2).join(':');
        return path !== '' && owns(path);
      });
      if (line !== undefined) why = `cgroup: ${line}`;
    }
    if (why !== undefined) found.push({ pid, startTime, cmdline, why });
  }
  return found.sort((a, b) => a.pid - b.pid);
}

async function leaseFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (path: string): Promise<void> => {
    for (const entry of await readdir(join(dir, path), { withFileTypes: true }).catch(() => [])) {
      const child = path === '' ? entry.name : `${path}/${entry.name}`;
      if (entry.isDirectory()) await walk(child);
      else if (!LEASE_BOOKKEEPING(entry.name)) found.push(child);
    }
  };
  await walk('');
  return found.sort();
}

function natRules(subnet: string | undefined, networkName: string | undefined, ids: ReadonlySet<string>): Promise<string[]> {
  if (subnet === undefined && networkName === undefined) return Promise.resolve([]);
  // "10.254.7.0/24" -> "10.254.7.": an address of the subnet (the test networks are /24s).
  const prefix = subnet === undefined ? undefined : (subnet.split('/')[0]?.split('.').slice(0, 3).join('.') ?? '');
  return new Promise((resolve) => {
    execFile('iptables-save', ['-t', 'nat'], { timeout: 10_000 }, (err, stdout) => {
      if (err !== null) {
        resolve([]);
        return;
      }
      const mentions = (line: string): boolean =>
        (prefix !== undefined && line.includes(`${prefix}.`)) ||
        (networkName !== undefined && line.includes(`name: \\"${networkName}\\"`)) ||
        [...ids].some((id) => id.length >= 8 && line.includes(id));
      resolve(
        stdout
          .split('\n')
          .filter((line) => line.startsWith('-A ') && mentions(line))
          .sort(),
      );
    });
  });
}

async function descriptors(pid: number): Promise<Descriptor[]> {
  const found: Descriptor[] = [];
  for (const name of await children(`/proc/${pid}/fd`)) {
    const target = await readlink(`/proc/${pid}/fd/${name}`).catch(() => undefined);
    if (target !== undefined) found.push({ fd: Number(name), target });
  }
  return found.sort((a, b) => a.fd - b.fd);
}

/** Counts everything the instance holds now. Throws when `scope.cri` is given but does not answer. */
export async function inventory(scope: LeakScope): Promise<Inventory> {
  let pods: string[] = [];
  let containers: string[] = [];
  if (scope.cri !== undefined) {
    pods = (await scope.cri.runtime.listPodSandbox({})).items.map((p) => p.id).sort();
    containers = (await scope.cri.runtime.listContainers({})).containers.map((c) => c.id).sort();
  }
  const folders: string[] = [];
  for (const dir of [
    join(scope.rootDir, 'sandboxes'),
    join(scope.rootDir, 'containers'),
    join(scope.stateDir, 'sandboxes'),
    join(scope.rootDir, 'images', 'uses'),
  ]) {
    for (const name of await children(dir)) folders.push(join(dir, name));
  }
  // The ids on disk and over CRI count too, so that a cgroup of a pod the test never heard of
  // (a half-made one) is still the instance's while its folder is there.
  const ids = new Set([...(scope.ids ?? []), ...pods, ...containers, ...folders.map((f) => basename(f))]);
  const owns = cgroupOwner({ ...scope, ids });
  const mounts = await readMounts(scope.mountinfoOf ?? 'self');
  return {
    pods,
    containers,
    processes: await ownedProcesses(scope, mounts, owns),
    mounts: mounts
      .filter((m) => [scope.rootDir, scope.stateDir, ...(scope.extraDirs ?? [])].some((dir) => under(m.mountPoint, dir)))
      .map((m) => `${m.mountPoint} (${m.fsType})`)
      .sort(),
    cgroups: await ownedCgroups(scope.cgroupRoot ?? '/sys/fs/cgroup', owns),
    veths: scope.bridge === undefined ? [] : await children(`/sys/class/net/${scope.bridge}/brif`),
    leases: scope.leaseDir === undefined ? [] : await leaseFiles(scope.leaseDir),
    folders: folders.sort(),
    natRules: await natRules(scope.subnet, scope.networkName, ids),
    fds: scope.serverPid === undefined ? [] : await descriptors(scope.serverPid),
  };
}

/** A descriptor's kind for counting: inode numbers of sockets and pipes change with every connection. */
function fdKey(target: string): string {
  return target.replace(/^(socket|pipe):\[\d+\]$/, '$1');
}

/** The entries of `after` beyond those `before` had, counting duplicates (a multiset difference). */
function extras<T>(before: readonly T[], after: readonly T[], key: (t: T) => string): T[] {
  const left = new Map<string, number>();
  for (const b of before) left.set(key(b), (left.get(key(b)) ?? 0) + 1);
  const out: T[] = [];
  for (const a of after) {
    const n = left.get(key(a)) ?? 0;
    if (n > 0) left.set(key(a), n - 1);
    else out.push(a);
  }
  return out;
}

/** What `after` holds that `before` did not, as an inventory of its own (what `reclaim` takes away). */
export function extrasOf(before: Inventory, after: Inventory): Inventory {
  const same = (x: string): string => x;
  return {
    pods: extras(before.pods, after.pods, same),
    containers: extras(before.containers, after.containers, same),
    processes: extras(before.processes, after.processes, (p) => `${p.pid}@${p.startTime}`),
    mounts: extras(before.mounts, after.mounts, same),
    cgroups: extras(before.cgroups, after.cgroups, same),
    veths: extras(before.veths, after.veths, same),
    leases: extras(before.leases, after.leases, same),
    folders: extras(before.folders, after.folders, same),
    natRules: extras(before.natRules, after.natRules, same),
    fds: extras(before.fds, after.fds, (d) => fdKey(d.target)),
  };
}

const CMDLINE_SHOWN = 240;

/**
 * What `after` holds that `before` did not, each thing named. Things gone since `before` are
 * not leaks and are not reported. Descriptors are compared by what they point at (sockets and
 * pipes by kind), so a reconnection is no leak but one more open log file is.
 */
export function diff(before: Inventory, after: Inventory): Leak[] {
  const leaked = extrasOf(before, after);
  const leaks: Leak[] = [];
  const plain = ['pods', 'containers', 'mounts', 'cgroups', 'veths', 'leases', 'folders', 'natRules'] as const;
  for (const kind of plain) if (kind !== 'cgroups') for (const item of leaked[kind]) leaks.push({ kind, item });
  // One leak per cgroup path, naming the hierarchies it is left in (on v1, usually all of them).
  const hierarchiesOf = new Map<string, string[]>();
  for (const cgroup of leaked.cgroups) {
    const [hierarchy = '', path = ''] = cgroup.split(/:(.*)/s);
    hierarchiesOf.set(path, [...(hierarchiesOf.get(path) ?? []), hierarchy]);
  }
  for (const [path, names] of hierarchiesOf) leaks.push({ kind: 'cgroups', item: path, detail: `in ${names.join(', ')}` });
  for (const p of leaked.processes) {
    const cmdline = p.cmdline.length > CMDLINE_SHOWN ? `${p.cmdline.slice(0, CMDLINE_SHOWN)}…` : p.cmdline;
    leaks.push({ kind: 'processes', item: `pid ${p.pid}: ${cmdline}`, detail: p.why });
  }
  for (const d of leaked.fds) leaks.push({ kind: 'fds', item: `fd ${d.fd} -> ${d.target}` });
  return leaks;
}

/**
 * Counts again until nothing has leaked since `before`, or `timeoutMs` has passed (processes
 * take a moment to exit, and the kernel to drop a veth): returns what is left.
 */
export async function settle(
  scope: LeakScope,
  before: Inventory,
  { timeoutMs = 10_000, intervalMs = 250 } = {},
): Promise<Leak[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const leaks = diff(before, await inventory(scope));
    if (leaks.length === 0 || Date.now() >= deadline) return leaks;
    await sleep(intervalMs);
  }
}

/** Leaks as lines grouped by kind, for an assertion message. */
export function formatLeaks(leaks: readonly Leak[]): string {
  if (leaks.length === 0) return 'nothing leaked';
  const byKind = new Map<LeakKind, Leak[]>();
  for (const leak of leaks) byKind.set(leak.kind, [...(byKind.get(leak.kind) ?? []), leak]);
  const lines = [`${leaks.length} leaked:`];
  for (const [kind, list] of byKind) {
    lines.push(`  ${kind} (${list.length}):`);
    for (const leak of list) lines.push(`    ${leak.item}${leak.detail === undefined ? '' : `  [${leak.detail}]`}`);
  }
  return lines.join('\n');
}

/** The scope of a startTestServer instance and its writeTestNetwork network, descriptors included. */
export function leakScope(
  server: { runtime: { loaded: { config: { rootDir: string; stateDir: string } } }; cri: CriClient },
  network?: { bridge: string; dataDir: string; subnet: string },
  more: Partial<LeakScope> = {},
): LeakScope {
  const { rootDir, stateDir } = server.runtime.loaded.config;
  return {
    rootDir,
    stateDir,
    cri: server.cri,
    serverPid: process.pid,
    ...(network === undefined ? {} : { bridge: network.bridge, leaseDir: network.dataDir, subnet: network.subnet }),
    ...more,
  };
}

function run(file: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 10_000 }, (err, _stdout, stderr) =>
      resolve(err === null ? undefined : `${file} ${args.join(' ')}: ${stderr.trim() || err.message}`),
    );
  });
}

/** An iptables-save line's words, its double-quoted parts kept whole. */
function iptablesWords(line: string): string[] {
  return [...line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) =>
    m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : (m[2] ?? ''),
  );
}

/**
 * Takes away what the instance holds now beyond `before`, for a test's afterAll, so that one
 * leaky run does not spoil the node for the next: SIGKILLs the processes (the same ones: pid and
 * start time), lazily unmounts the mounts (deepest first), removes the cgroups (leaves first),
 * deletes the veths and the NAT rules. Folders, leases and descriptors go with the test's temp
 * folder and its server. Returns what it could not take away.
 */
export async function reclaim(scope: LeakScope, before: Inventory): Promise<string[]> {
  const left: string[] = [];
  const leaked = extrasOf(before, await inventory(scope));
  for (const p of leaked.processes) {
    const stat = await readOptional(`/proc/${p.pid}/stat`);
    if (stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[19] !== p.startTime) continue;
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch (err) {
      left.push(`pid ${p.pid}: ${(err as Error).message}`);
    }
  }
  if (leaked.processes.length > 0) await sleep(500);
  const byDepth = (a: string, b: string): number => b.split('/').length - a.split('/').length;
  for (const mount of leaked.mounts.map((m) => m.replace(/ \([^)]*\)$/, '')).sort(byDepth)) {
    const problem = await run('umount', ['-l', mount]);
    if (problem !== undefined) left.push(problem);
  }
  const root = scope.cgroupRoot ?? '/sys/fs/cgroup';
  for (const cgroup of [...leaked.cgroups].sort(byDepth)) {
    const [hierarchy = '', path = ''] = cgroup.split(/:(.*)/s);
    const dir = join(root, hierarchy, path);
    let removed = false;
    for (let attempt = 0; attempt < 20 && !removed; attempt++) {
      removed = await rmdir(dir).then(
        () => true,
        (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT',
      );
      if (!removed) await sleep(50);
    }
    if (!removed) left.push(`cgroup ${cgroup}`);
  }
  for (const veth of leaked.veths) {
    const problem = await run('ip', ['link', 'del', veth]);
    if (problem !== undefined) left.push(problem);
  }
  for (const rule of leaked.natRules) {
    const problem = await run('iptables', ['-t', 'nat', '-D', ...iptablesWords(rule).slice(1)]);
    if (problem !== undefined) left.push(problem);
  }
  return left;
}
