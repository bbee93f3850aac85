import { Client, credentials, Metadata, status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, isAbsolute, join, posix, resolve } from 'node:path';
import * as api from '../../src/generated/api.js';
import { MountPropagation, NamespaceMode, Protocol, Signal } from '../../src/generated/api.js';
import { BUILTIN_BUSYBOX_IMAGE } from '../../src/images/store.js';
import { formatReference, parseReference } from '../../src/images/reference.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import type { DeepPartial } from '../../src/cli/cri-client.js';

/**
 * A bounded fuzz run against a real icetray over its socket (issue #11): structured random
 * requests from the CRI schema, plausible requests that get past validation (real pods and
 * busybox containers, so that Start/Stop/Exec/Remove paths run), and valid requests with their
 * bytes mutated, all sent as raw bytes so the server's decoder sees garbage too.
 *
 * Replaying: every call's request comes from a PRNG seeded by (seed, call index), so a seed and
 * an index name the request; with concurrency 1 the whole run repeats (with more, the ids a
 * request picks depend on which calls finished first).
 *
 * The host is shared, so every request passes `hostProblems` before it is sent: anything that
 * could change the node *if icetray's own validation failed* is redrawn (a mutated request) or
 * is a bug of the fuzz (a plausible one). That is, host paths outside the test's folder are only
 * bound read-only and must exist, container paths may not climb out of the container's folder or
 * go through /proc/<pid>/, commands are a small whitelist (never an applet such as `reboot` or
 * `kill`), sysctls may only "set" a host value to what it already is, host ports stay in a range of
 * the test's, cgroup parents under the test's own cgroup, log paths in the test's folder, images
 * come only from loopback, and StopContainer waits long only for containers that exit on SIGTERM.
 *
 * Not fuzzed, on purpose: GetContainerEvents and StreamPodSandboxMetrics. Both take an empty
 * request (GetEventsRequest, StreamPodSandboxMetricsRequest have no fields), so there is nothing
 * to vary but bytes the decoder skips; GetContainerEvents is an endless subscription, so instead
 * one subscriber stays open for the whole run, as a kubelet's evented PLEG would, and must end
 * with no error; StreamPodSandboxMetrics is UNIMPLEMENTED. The other Stream* calls are list
 * calls with a filter and are fuzzed like their List* twins.
 */

// ---- randomness --------------------------------------------------------------------------------

/** mulberry32: small, fast and good enough to pick test inputs; the same seed gives the same numbers. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** The generator of call `index` of a run seeded with `seed`. */
  static forCall(seed: number, index: number): Rng {
    let h = (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
    return new Rng((h ^ (h >>> 16)) >>> 0);
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.next() * items.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }
  /** Picks by weight: [[weight, value], …]. */
  weighted<T>(items: readonly (readonly [number, T])[]): T {
    const total = items.reduce((sum, [w]) => sum + w, 0);
    let left = this.next() * total;
    for (const [w, value] of items) {
      left -= w;
      if (left < 0) return value;
    }
    return (items.at(-1) as readonly [number, T])[1];
  }
  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(this.next() * 256);
    return out;
  }
}

// ---- the CRI schema, for structured random messages ------------------------------------------

type Kind = 'string' | 'bytes' | 'bool' | 'int32' | 'uint32' | 'int64' | 'uint64' | 'double' | 'enum' | 'message' | 'map';

interface Field {
  /** The ts-proto property name (lowerCamel, as proto-loader's keepCase: false spells it). */
  name: string;
  kind: Kind;
  repeated: boolean;
  /** The message type, for kind 'message'. */
  type?: string;
  /** The enum's values, for kind 'enum'. */
  values?: number[];
}

interface DescriptorField {
  name: string;
  type: string;
  label: string;
  typeName: string;
}
interface Descriptor {
  name: string;
  field: DescriptorField[];
  nestedType: Descriptor[];
  enumType: { name: string; value: { number: number }[] }[];
  options: { mapEntry?: boolean } | null;
}

const PROTO = join(PACKAGE_ROOT, 'proto', 'api.proto');
const SCALARS: Record<string, Kind> = {
  TYPE_STRING: 'string',
  TYPE_BYTES: 'bytes',
  TYPE_BOOL: 'bool',
  TYPE_INT32: 'int32',
  TYPE_UINT32: 'uint32',
  TYPE_INT64: 'int64',
  TYPE_UINT64: 'uint64',
  TYPE_DOUBLE: 'double',
};

/** The messages of api.proto by simple name, with their fields, from proto-loader's descriptors. */
function loadSchema(): {
  messages: Map<string, Field[]>;
  methods: Map<string, { path: string; requestType: string; responseType: string; streaming: boolean }>;
} {
  const definition = loadSync(PROTO, { keepCase: false }) as unknown as Record<string, unknown>;
  const messages = new Map<string, Field[]>();
  const global = (name: string): { type: Descriptor } | undefined =>
    definition[`runtime.v1.${name}`] as { type: Descriptor } | undefined;
  for (const [full, value] of Object.entries(definition)) {
    const entry = value as { format?: string; type?: Descriptor };
    if (entry.format !== 'Protocol Buffer 3 DescriptorProto' || entry.type === undefined) continue;
    const d = entry.type;
    const fields: Field[] = d.field.map((f) => {
      const repeated = f.label === 'LABEL_REPEATED';
      const scalar = SCALARS[f.type];
      if (scalar !== undefined) return { name: f.name, kind: scalar, repeated };
      if (f.type === 'TYPE_ENUM') {
        const nested = d.enumType.find((e) => e.name === f.typeName);
        const values =
          (nested ?? (global(f.typeName)?.type as unknown as Descriptor['enumType'][number] | undefined))?.value ?? [];
        return { name: f.name, kind: 'enum', repeated, values: values.map((v) => v.number) };
      }
      if (d.nestedType.some((n) => n.name === f.typeName && n.options?.mapEntry === true)) {
        return { name: f.name, kind: 'map', repeated: false };
      }
      return { name: f.name, kind: 'message', repeated, type: f.typeName };
    });
    messages.set(full.replace(/^runtime\.v1\./, ''), fields);
  }
  const methods = new Map<string, { path: string; requestType: string; responseType: string; streaming: boolean }>();
  for (const service of ['RuntimeService', 'ImageService']) {
    const svc = definition[`runtime.v1.${service}`] as Record<
      string,
      { path: string; responseStream: boolean; requestType: { type: Descriptor }; responseType: { type: Descriptor } }
    >;
    for (const [name, m] of Object.entries(svc)) {
      methods.set(name, {
        path: m.path,
        requestType: m.requestType.type.name,
        responseType: m.responseType.type.name,
        streaming: m.responseStream,
      });
    }
  }
  return { messages, methods };
}

interface Codec {
  encode(message: unknown): { finish(): Uint8Array };
  decode(input: Uint8Array): unknown;
  fromPartial(object: unknown): unknown;
  create(): unknown;
}

function codec(name: string): Codec {
  const fns = (api as unknown as Record<string, Codec | undefined>)[name];
  if (fns?.encode === undefined) throw new Error(`no generated codec for ${name}`);
  return fns;
}

/** One fuzzed RPC: its path, whether the answer is a stream, and its request and response codecs. */
export interface Rpc {
  name: string;
  path: string;
  streaming: boolean;
  requestType: string;
  request: Codec;
  response: Codec;
}

/** RPCs left out of the fuzz, with the reason (see the top of this file). */
export const NOT_FUZZED: Record<string, string> = {
  GetContainerEvents: 'empty request, endless stream: one subscriber stays open during the whole run instead',
  StreamPodSandboxMetrics: 'empty request, UNIMPLEMENTED stream: nothing to vary',
};

const schema = loadSchema();

/** Every RPC of RuntimeService and ImageService that the fuzz calls. */
export const RPCS: Rpc[] = [...schema.methods.entries()]
  .filter(([name]) => NOT_FUZZED[name] === undefined)
  .map(([name, m]) => ({
    name,
    path: m.path,
    streaming: m.streaming,
    requestType: m.requestType,
    request: codec(m.requestType),
    response: codec(m.responseType),
  }));

// A field name proto-loader spells differently from ts-proto would silently never be set: check all.
for (const [name, fields] of schema.messages) {
  const keys = Object.keys(codec(name).create() as object);
  const missing = fields.filter((f) => !keys.includes(f.name)).map((f) => f.name);
  if (missing.length > 0) throw new Error(`fuzz schema: ${name} has no ts-proto field ${missing.join(', ')}`);
}

// ---- hostile values ----------------------------------------------------------------------------

const MiB = 1 << 20;
const HUGE_STRING = 'x'.repeat(MiB);
/** Strings every field gets now and then: empty, huge, NUL, paths, separators, unicode, format strings. */
export const HOSTILE_STRINGS: readonly string[] = [
  '',
  ' ',
  'a',
  '.',
  '..',
  '/',
  '//',
  '/..',
  '../..',
  '/../../etc',
  '../../../../etc/passwd',
  'relative/path',
  './x',
  'a/b',
  '-',
  '--',
  '-d',
  '--help',
  'x\0y',
  '\0',
  'a\nb',
  '\r\n',
  'a;b',
  'a=b',
  'k=v;x=y',
  '=',
  ';',
  '$(id)',
  '`id`',
  '${IFS}',
  '%s%n%x',
  "'",
  '"',
  '\\',
  'ü',
  '💥',
  '\u202e',
  '\ufeff',
  '\u0001\u001f\u007f',
  '\ud800',
  '*',
  '?',
  '[',
  'constructor',
  'toString',
  'hasOwnProperty',
  'CON',
  'UPPER',
  '0',
  '-1',
  '18446744073709551616',
  'NaN',
  'null',
  '{}',
  '/proc/self/root',
  '/proc/1/ns/net',
  '/dev/null',
  '/sys/fs/cgroup',
  'sha256:' + 'f'.repeat(64),
  'sha256:',
  'sha256:zz',
  'a'.repeat(255),
  'a'.repeat(256),
  'a'.repeat(4097),
  'x'.repeat(65536),
];
const INT32 = [0, 1, -1, 2, 7, 255, 65535, 65536, 2 ** 31 - 1, -(2 ** 31), 1000, -1000];
const UINT32 = [0, 1, 2, 2 ** 32 - 1, 2 ** 31, 65536];
const INT64 = [0n, 1n, -1n, 2n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 53n + 1n, 1_000_000_000n, 86400n, 4096n];
const UINT64 = [0n, 1n, 2n ** 64n - 1n, 2n ** 63n, 4096n, 1n << 40n];
const DOUBLES = [0, -0, 1.5, -1, NaN, Infinity, -Infinity, 1e308, 5e-324];

/** Commands containers run. Never an applet that acts on the node (kill, reboot, mount, …). */
const CONTAINER_SCRIPTS = {
  exitsOnTerm: 'trap "exit 0" TERM; while true; do sleep 1; done',
  logs: 'echo to-stdout; echo to-stderr >&2; sleep 600',
  forksAndExits: 'sleep 600 & exit 0',
  exit3: 'exit 3',
  bigLine: 'head -c 100000 /dev/zero | tr "\\0" x; echo; sleep 600',
  killsItself: 'kill -9 $$',
} as const;
/** Commands ExecSync runs: each ends within a few seconds. */
const EXEC_SCRIPTS = ['exit 7', 'echo out; echo err >&2', 'head -c 2000000 /dev/zero', 'echo $0 $1'] as const;
const SCRIPTS = new Set<string>([...Object.values(CONTAINER_SCRIPTS), ...EXEC_SCRIPTS]);

const CONTAINER_ARGV: readonly (readonly [number, string[]])[] = [
  [30, ['sleep', '600']],
  [10, ['sh', '-c', CONTAINER_SCRIPTS.exitsOnTerm]],
  [5, ['sh', '-c', CONTAINER_SCRIPTS.logs]],
  [3, ['sh', '-c', CONTAINER_SCRIPTS.forksAndExits]],
  [3, ['sh', '-c', CONTAINER_SCRIPTS.exit3]],
  [1, ['sh', '-c', CONTAINER_SCRIPTS.bigLine]],
  [1, ['sh', '-c', CONTAINER_SCRIPTS.killsItself]],
  [3, ['true']],
  [2, ['false']],
  [2, ['/no/such/binary']],
  [1, ['']],
  [1, ['echo', ...HOSTILE_STRINGS.slice(0, 20)]],
  [1, ['sleep', '0.1']],
  [1, ['id']],
];
const EXEC_ARGV: readonly (readonly [number, string[]])[] = [
  [10, ['true']],
  [4, ['false']],
  [6, ['echo', 'hello']],
  [4, ['sh', '-c', 'exit 7']],
  [4, ['sh', '-c', 'echo out; echo err >&2']],
  [3, ['cat', '/etc/hostname']],
  [2, ['cat', '/etc/resolv.conf']],
  [3, ['id']],
  [3, ['ls', '/']],
  [2, ['hostname']],
  [2, ['sleep', '2']],
  [2, ['/no/such']],
  [1, ['']],
  [1, []],
  [1, ['echo', 'x'.repeat(65536)]],
  [1, ['sh', '-c', 'head -c 2000000 /dev/zero']],
  [1, ['sh', '-c', 'echo $0 $1', '💥', 'a\nb']],
];
const SAFE_PROGRAMS = new Set(['true', 'false', 'echo', 'printf', 'id', 'hostname', 'pwd', 'uname', 'ls']);
/** Programs that exist nowhere (no mount of the fuzz has a /no folder). */
const NO_PROGRAMS = new Set(['', '/no/such', '/no/such/binary']);
const CAT_FILES = new Set(['/etc/hostname', '/etc/hosts', '/etc/resolv.conf', '/proc/self/status']);

/** busybox's applets: a command named like one of these is refused unless whitelisted above. */
const APPLETS = new Set(
  [
    'busybox',
    ...(existsSync('/bin/busybox') ? execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n') : []),
  ].filter(Boolean),
);

// ---- what a request may do to the host ----------------------------------------------------------

/** Where the fuzz may let icetray touch the host. */
export interface HostBounds {
  /** The test's folder: host paths, log folders and seccomp profiles of the fuzz live here. */
  fuzzDir: string;
  /** The cgroup (path from the root of each hierarchy) every non-empty cgroup_parent must be under. */
  cgroupPrefix: string;
  /** Registries a PullImage may reach (host:port): a loopback fake one, and a closed loopback port. */
  registryHosts: ReadonlySet<string>;
  /** Host ports a pod may map (portmap rules on the node), inclusive. */
  hostPorts: readonly [number, number];
  /** Containers known to exit on SIGTERM: only they may get a long StopContainer timeout. */
  exitsOnTerm: ReadonlySet<string>;
}

function under(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}

const PID_DIR = /^\/proc\/(self|thread-self|\d+)(\/|$)/;
const DEV_LINKS = /^\/dev\/(fd|stdin|stdout|stderr|core)(\/|$)/;

/**
 * A path inside the container (a mount target, device node, masked or readonly path, working
 * dir) resolved under the rootfs: it must not climb above the container's own folder (one ".."
 * past the rootfs) and must not go through /proc/<pid>/ or /dev/fd (whose links lead to the
 * host's root while nsexec still runs there) — except into the fuzz's folder, which is how the
 * test sees an escape, and only with no bidirectional mount in the container.
 */
function containerPathProblem(path: string, bounds: HostBounds, bidirectional: boolean): string | undefined {
  if (path.includes('\0')) return undefined;
  let depth = 0;
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    depth += part === '..' ? -1 : 1;
    if (depth < -1) return `container path ${JSON.stringify(path)} climbs out of the container's folder`;
  }
  const normal = posix.normalize(`/${path}`);
  if (PID_DIR.test(normal)) {
    const inside = /^\/proc\/(self|thread-self|1)\/root(\/.*)$/.exec(normal)?.[2];
    if (inside !== undefined && under(inside, bounds.fuzzDir) && !bidirectional) return undefined;
    return `container path ${JSON.stringify(path)} goes through /proc/<pid>/`;
  }
  if (DEV_LINKS.test(normal)) return `container path ${JSON.stringify(path)} goes through a /dev link to /proc`;
  return undefined;
}

function hostPathOf(path: string): string {
  return isAbsolute(path) ? posix.normalize(path) : resolve(path);
}

/** A file icetray reads on the host (a seccomp or AppArmor profile): never one that blocks or never ends. */
function profileProblem(ref: string): string | undefined {
  const path = ref.replace(/^localhost\//, '');
  if (path === '' || path.includes('\0')) return undefined;
  let st;
  try {
    st = statSync(path);
  } catch {
    return undefined;
  }
  // A folder cannot be read as a file (EISDIR); a device or a FIFO could block or never end.
  return st.isDirectory() || (st.isFile() && st.size < MiB)
    ? undefined
    : `profile ${JSON.stringify(ref)} is not a small regular file`;
}

/** The host's current value of a sysctl file, or undefined when it cannot be read. */
function hostSysctl(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim().replace(/\s+/g, ' ');
  } catch {
    return undefined;
  }
}

/**
 * A pod sysctl may name a host file under /proc/sys (in any spelling, cut at a NUL or an '=',
 * with any ".."): then its value must be what the host has already, so that even a sysctl
 * written on the node instead of in the pod changes nothing.
 */
function sysctlProblem(name: string, value: string): string | undefined {
  const cut = name.split('\0')[0] ?? '';
  const keys = new Set([name, cut, name.split('=')[0] ?? '', cut.split('=')[0] ?? '']);
  for (const key of keys) {
    const forms = [
      key.replaceAll('.', '/'),
      key,
      key
        .split('.')
        .map((p) => p.replaceAll('/', '.'))
        .join('/'),
    ];
    for (const form of forms) {
      const path = posix.normalize(`/proc/sys/${form}`);
      let isFile: boolean;
      try {
        isFile = statSync(path).isFile();
      } catch {
        continue;
      }
      if (!isFile) continue;
      if (key !== name) return `sysctl ${JSON.stringify(name)} would be cut to ${JSON.stringify(key)}, a host setting`;
      const current = hostSysctl(path);
      if (current === undefined || current !== value.trim().replace(/\s+/g, ' '))
        return `sysctl ${JSON.stringify(name)}=${JSON.stringify(value)} differs from the host's ${path}`;
    }
  }
  return undefined;
}

/** The applet (or program) a command runs, and whether it is one the fuzz lets a container run. */
function argvProblem(argv: readonly string[], forExec: boolean, hostMounts: boolean): string | undefined {
  const program = basename(argv[0] ?? '');
  const args = argv.slice(1);
  const refuse = `command ${JSON.stringify(argv.slice(0, 4))} is not on the fuzz's whitelist`;
  if (argv.length === 0) return undefined;
  if (program === 'sleep') {
    if (!forExec) return undefined;
    return args.every((a) => /^\d+(\.\d+)?$/.test(a) && Number(a) <= 5) ? undefined : refuse;
  }
  if (SAFE_PROGRAMS.has(program) || NO_PROGRAMS.has(argv[0] ?? '')) return undefined;
  if (program === 'cat') return args.length > 0 && args.every((a) => CAT_FILES.has(a)) ? undefined : refuse;
  if (program === 'sh' || program === 'ash') {
    if (argv.length === 1) return undefined;
    return argv[1] === '-c' && SCRIPTS.has(argv[2] ?? '') ? undefined : refuse;
  }
  // Anything else must be no program at all: not an applet, and nothing a host mount could offer.
  if (APPLETS.has(program) || hostMounts) return refuse;
  return undefined;
}

function resourcesProblems(r: api.LinuxContainerResources | undefined): string[] {
  if (r === undefined) return [];
  const problems: string[] = [];
  // A unified key is a file name in the container's cgroup: cgroup.procs or tasks would move
  // processes (PID 1!) into it, and a '/' would leave it.
  for (const key of Object.keys(r.unified)) {
    if (!/^(memory|cpu|pids|io|cpuset|hugetlb)\.[a-z0-9_.]+$/.test(key)) problems.push(`unified key ${JSON.stringify(key)}`);
  }
  for (const h of r.hugepageLimits) if (h.pageSize.includes('/')) problems.push(`hugepage size ${JSON.stringify(h.pageSize)}`);
  return problems;
}

function podConfigProblems(c: api.PodSandboxConfig | undefined, bounds: HostBounds): string[] {
  if (c === undefined) return [];
  const problems: string[] = [];
  const logs = join(bounds.fuzzDir, 'logs');
  if (c.logDirectory !== '' && !c.logDirectory.includes('\0')) {
    const dir = hostPathOf(c.logDirectory);
    // One level below logs/, so that a log_path with one ".." stays inside it.
    if (!isAbsolute(c.logDirectory) || !dir.startsWith(`${logs}/`))
      problems.push(`log_directory ${JSON.stringify(c.logDirectory)}`);
  }
  const parent = c.linux?.cgroupParent ?? '';
  if (
    parent !== '' &&
    !parent.split('/').includes('..') &&
    !posix.basename(parent).endsWith('.slice') &&
    !under(posix.normalize(`/${parent}`), bounds.cgroupPrefix)
  )
    problems.push(`cgroup_parent ${JSON.stringify(parent)}`);
  for (const port of c.portMappings) {
    const [lo, hi] = bounds.hostPorts;
    if (port.hostPort > 0 && port.hostPort <= 65535 && (port.hostPort < lo || port.hostPort > hi))
      problems.push(`host port ${port.hostPort}`);
  }
  for (const [name, value] of Object.entries(c.linux?.sysctls ?? {})) {
    const problem = sysctlProblem(name, value);
    if (problem !== undefined) problems.push(problem);
  }
  problems.push(...resourcesProblems(c.linux?.resources), ...resourcesProblems(c.linux?.overhead));
  const seccomp = c.linux?.securityContext?.seccomp?.localhostRef ?? '';
  // eslint-disable-next-line @typescript-eslint/no-deprecated -- older kubelets still send it
  const profile = profileProblem(seccomp) ?? profileProblem(c.linux?.securityContext?.seccompProfilePath ?? '');
  if (profile !== undefined) problems.push(profile);
  return problems;
}

function containerConfigProblems(c: api.ContainerConfig | undefined, bounds: HostBounds): string[] {
  if (c === undefined) return [];
  const problems: string[] = [];
  const bidirectional = c.mounts.some((m) => m.propagation === MountPropagation.PROPAGATION_BIDIRECTIONAL);
  const foreign = c.mounts.filter((m) => !m.hostPath.includes('\0') && !under(hostPathOf(m.hostPath), bounds.fuzzDir));
  for (const m of c.mounts) {
    const problem = containerPathProblem(m.containerPath, bounds, bidirectional);
    if (problem !== undefined) problems.push(problem);
  }
  for (const m of foreign) {
    // A host path icetray would create, or bind writable, or share back, or mount into: refused.
    const target = posix.normalize(`/${m.containerPath}`);
    const nested = c.mounts.some((o) => o !== m && under(posix.normalize(`/${o.containerPath}`), target));
    if (
      !existsSync(hostPathOf(m.hostPath)) ||
      !m.readonly ||
      m.propagation !== MountPropagation.PROPAGATION_PRIVATE ||
      bidirectional ||
      nested
    )
      problems.push(`host path ${JSON.stringify(m.hostPath)} outside the fuzz folder, not read-only and private`);
  }
  for (const d of c.devices) {
    const problem = containerPathProblem(d.containerPath, bounds, bidirectional);
    if (problem !== undefined) problems.push(problem);
  }
  const context = c.linux?.securityContext;
  for (const path of [...(context?.maskedPaths ?? []), ...(context?.readonlyPaths ?? []), c.workingDir]) {
    const problem = containerPathProblem(path, bounds, bidirectional);
    if (problem !== undefined) problems.push(problem);
  }
  for (const ref of [
    context?.seccomp?.localhostRef ?? '',
    // eslint-disable-next-line @typescript-eslint/no-deprecated -- older kubelets still send it
    context?.seccompProfilePath ?? '',
    context?.apparmor?.localhostRef ?? '',
    // eslint-disable-next-line @typescript-eslint/no-deprecated -- older kubelets still send it
    context?.apparmorProfile ?? '',
  ]) {
    const problem = profileProblem(ref);
    if (problem !== undefined) problems.push(problem);
  }
  const argv = c.command.length > 0 ? [...c.command, ...c.args] : c.args.length > 0 ? c.args : ['sh'];
  const command = argvProblem(argv, false, foreign.length > 0);
  if (command !== undefined) problems.push(command);
  if (c.logPath !== '' && !c.logPath.includes('\0')) {
    const target = isAbsolute(c.logPath) ? posix.normalize(c.logPath) : posix.normalize(`/logs/pod/${c.logPath}`);
    if (isAbsolute(c.logPath) ? !under(target, bounds.fuzzDir) : !under(target, '/logs'))
      problems.push(`log_path ${JSON.stringify(c.logPath)}`);
  }
  problems.push(...resourcesProblems(c.linux?.resources));
  return problems;
}

function imageProblem(ref: string, bounds: Pick<HostBounds, 'registryHosts'>): string | undefined {
  let parsed;
  try {
    parsed = parseReference(ref);
  } catch {
    return undefined;
  }
  if (formatReference(parsed) === BUILTIN_BUSYBOX_IMAGE || bounds.registryHosts.has(parsed.registry)) return undefined;
  return `image ${JSON.stringify(ref)} is not on a loopback registry of the test`;
}

/**
 * What a decoded request could do to the host if icetray's validation let it through; [] when
 * nothing (see the top of this file). Applied to every request before it is sent.
 */
export function hostProblems(rpc: string, request: unknown, bounds: HostBounds): string[] {
  switch (rpc) {
    case 'RunPodSandbox':
      return podConfigProblems((request as api.RunPodSandboxRequest).config, bounds);
    case 'RestorePod':
      return podConfigProblems((request as api.RestorePodRequest).config, bounds);
    case 'CreateContainer': {
      const r = request as api.CreateContainerRequest;
      return [...containerConfigProblems(r.config, bounds), ...podConfigProblems(r.sandboxConfig, bounds)];
    }
    case 'UpdateContainerResources':
      return resourcesProblems((request as api.UpdateContainerResourcesRequest).linux);
    case 'UpdatePodSandboxResources': {
      const r = request as api.UpdatePodSandboxResourcesRequest;
      return [...resourcesProblems(r.overhead), ...resourcesProblems(r.resources)];
    }
    case 'ExecSync': {
      const problem = argvProblem((request as api.ExecSyncRequest).cmd, true, true);
      return problem === undefined ? [] : [problem];
    }
    case 'StopContainer': {
      const r = request as api.StopContainerRequest;
      return r.timeout > 3n && !bounds.exitsOnTerm.has(r.containerId)
        ? [`StopContainer timeout ${r.timeout} for a container that may ignore SIGTERM`]
        : [];
    }
    case 'PullImage': {
      const r = request as api.PullImageRequest;
      const problem = imageProblem(r.image?.image ?? '', bounds);
      return [...(problem === undefined ? [] : [problem]), ...podConfigProblems(r.sandboxConfig, bounds)];
    }
    default:
      return [];
  }
}

// ---- the run's state ---------------------------------------------------------------------------

interface Pod {
  id: string;
  config: api.PodSandboxConfig;
  ready: boolean;
}
interface Ctr {
  id: string;
  podId: string;
  state: 'created' | 'running' | 'exited';
}

/** What the run knows of the server: its pods and containers, as the answers told it. */
class World {
  readonly pods = new Map<string, Pod>();
  readonly containers = new Map<string, Ctr>();
  readonly exitsOnTerm = new Set<string>();
  readonly gone: string[] = [];
  busyboxId = '';
  busyboxMaybeGone = false;
  counter = 0;

  find<T>(map: Map<string, T>, idOrPrefix: string): T | undefined {
    const exact = map.get(idOrPrefix);
    if (exact !== undefined || idOrPrefix === '') return exact;
    const matches = [...map.entries()].filter(([id]) => id.startsWith(idOrPrefix));
    return matches.length === 1 ? matches[0]?.[1] : undefined;
  }
  dropPod(id: string): void {
    this.pods.delete(id);
    this.gone.push(id);
    for (const c of [...this.containers.values()]) if (c.podId === id) this.dropContainer(c.id);
  }
  dropContainer(id: string): void {
    this.containers.delete(id);
    this.exitsOnTerm.delete(id);
    this.gone.push(id);
  }
}

// ---- plausible requests ------------------------------------------------------------------------

/** What a request builder works with: the call's randomness, the run's state and its bounds. */
interface Gen {
  rng: Rng;
  world: World;
  setup: FuzzSetup;
  /** Host sysctl values that a plausible pod may "set" (to the same value). */
  sysctls: Record<string, string>;
}

function hostile(g: Gen): string {
  return g.rng.pick(HOSTILE_STRINGS);
}

/** An enum value from numbers, defined or not: what a broken or hostile client sends. */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the enum the value is sent as
function anyEnum<E extends number>(g: Gen, values: readonly number[]): E {
  return g.rng.pick(values) as unknown as E;
}

/** A hostile string that `ok` accepts (a plausible request must pass the host check), else `fallback`. */
function hostileWhere(g: Gen, ok: (value: string) => boolean, fallback = 'x'): string {
  for (let tries = 0; tries < 20; tries++) {
    const value = hostile(g);
    if (ok(value)) return value;
  }
  return fallback;
}

/** A hostile container path that stays in the container's folder (see containerPathProblem). */
function hostileContainerPath(g: Gen): string {
  const bounds = { fuzzDir: g.setup.fuzzDir } as HostBounds;
  return hostileWhere(g, (path) => containerPathProblem(path, bounds, false) === undefined, '/x');
}

/** The value, or now and then a hostile one instead. */
function twist<T>(g: Gen, value: T, alternatives: readonly T[], p = 0.1): T {
  return g.rng.chance(p) ? g.rng.pick(alternatives) : value;
}

/** An id for a request: a live one mostly, else a unique prefix, a removed one, the other kind's, or garbage. */
function pickId(g: Gen, kind: 'pod' | 'container', filter?: (id: string) => boolean): string {
  const own = kind === 'pod' ? [...g.world.pods.keys()] : [...g.world.containers.keys()];
  const live = filter === undefined ? own : own.filter(filter);
  const other = kind === 'pod' ? [...g.world.containers.keys()] : [...g.world.pods.keys()];
  const r = g.rng.next();
  if (r < 0.6 && live.length > 0) return g.rng.pick(live);
  if (r < 0.68 && own.length > 0) return g.rng.pick(own).slice(0, g.rng.int(1, 12));
  if (r < 0.74 && g.world.gone.length > 0) return g.rng.pick(g.world.gone);
  if (r < 0.78 && other.length > 0) return g.rng.pick(other);
  if (r < 0.8) return 'f'.repeat(64);
  return hostile(g);
}

function imageRef(g: Gen): string {
  const { fake, closed } = g.setup.registries;
  return g.rng.weighted([
    [10, BUILTIN_BUSYBOX_IMAGE],
    [2, 'icetray.local/busybox'],
    [2, g.world.busyboxId === '' ? BUILTIN_BUSYBOX_IMAGE : g.world.busyboxId],
    [1, g.world.busyboxId.replace(/^sha256:/, '').slice(0, 12)],
    [2, `${fake}/fuzz/tiny:1`],
    [1, `${fake}/fuzz/tiny:missing`],
    [1, `${fake}/fuzz/nothing-here`],
    [1, `${closed}/fuzz/unreachable:1`],
    [1, `${fake}/Fuzz/UPPER`],
    [1, `${fake}/fuzz/tiny@sha256:${'0'.repeat(64)}`],
    [3, hostile(g)],
  ] as const);
}

/** An image reference a PullImage may fetch: one of imageRef's that names no registry but the test's. */
function pullRef(g: Gen): string {
  for (let tries = 0; tries < 10; tries++) {
    const ref = imageRef(g);
    if (imageProblem(ref, { registryHosts: new Set([g.setup.registries.fake, g.setup.registries.closed]) }) === undefined)
      return ref;
  }
  return BUILTIN_BUSYBOX_IMAGE;
}

function resources(g: Gen): DeepPartial<api.LinuxContainerResources> {
  const r = g.rng;
  return {
    cpuPeriod: r.pick([0n, 100000n, 1n, -1n, 2n ** 62n]),
    cpuQuota: r.pick([0n, 50000n, -1n, 1n, 2n ** 62n]),
    cpuShares: r.pick([0n, 2n, 1024n, 262145n, -5n]),
    memoryLimitInBytes: r.pick([0n, 64n << 20n, 1n, 4096n, -1n, 2n ** 62n]),
    oomScoreAdj: r.pick([0n, -1000n, 1000n, 5000n, -(2n ** 63n)]),
    cpusetCpus: r.pick(['', '', '0', '0-1', '0-1000', 'x', '1,', '\n']),
    cpusetMems: r.pick(['', '', '0', '5']),
    hugepageLimits: r.chance(0.1)
      ? [{ pageSize: r.pick(['2MB', '1GB', 'bogus', '']), limit: r.pick([0n, 1n, 2n ** 64n - 1n]) }]
      : [],
    unified: r.chance(0.1)
      ? { [r.pick(['memory.high', 'pids.max', 'cpu.weight', 'memory.bogus'])]: r.pick(['1M', 'max', '', '-1', 'x\ny']) }
      : {},
    memorySwapLimitInBytes: r.pick([0n, -1n, 64n << 20n, 1n]),
  };
}

function manyEntries(n: number, prefix: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < n; i++) out[`${prefix}${i}`] = `v${i}`;
  return out;
}

function podConfig(g: Gen): DeepPartial<api.PodSandboxConfig> {
  const r = g.rng;
  const n = g.world.counter++;
  const tag = g.setup.tag;
  const ns = (): NamespaceMode =>
    r.weighted([
      [6, NamespaceMode.POD],
      [1, NamespaceMode.CONTAINER],
      [1, NamespaceMode.NODE],
    ] as const);
  const config: DeepPartial<api.PodSandboxConfig> = {
    metadata: { name: `p${n}`, namespace: 'fuzz', uid: `${tag}-${n}`, attempt: 0 },
    hostname: `p${n}`,
    logDirectory: join(g.setup.fuzzDir, 'logs', `p${n}`),
    labels: { app: r.pick(['a', 'b', 'c']), fuzz: tag },
    annotations: { 'fuzz/seed': String(g.setup.seed) },
    dnsConfig: r.chance(0.3) ? { servers: ['10.0.0.10'], searches: ['svc.cluster.local'], options: ['ndots:5'] } : undefined,
    portMappings: r.chance(0.15)
      ? [
          {
            protocol: r.pick([Protocol.TCP, Protocol.UDP, Protocol.SCTP]),
            containerPort: 80,
            hostPort: g.setup.hostPorts[0] + (n % (g.setup.hostPorts[1] - g.setup.hostPorts[0])),
            hostIp: r.pick(['127.0.0.1', '', '::1']),
          },
        ]
      : [],
    linux: {
      cgroupParent: r.chance(0.85) ? '' : `${g.setup.cgroupPrefix}/p${n}`,
      securityContext: {
        namespaceOptions: { network: r.chance(0.85) ? NamespaceMode.POD : NamespaceMode.NODE, pid: ns(), ipc: ns() },
        privileged: r.chance(0.1),
      },
      sysctls: r.chance(0.2) ? Object.fromEntries(Object.entries(g.sysctls).filter(() => r.chance(0.5))) : {},
      resources: r.chance(0.1) ? resources(g) : undefined,
      overhead: r.chance(0.1) ? resources(g) : undefined,
    },
  };
  if (!r.chance(0.35)) return config;
  // One hostile twist on an otherwise plausible pod.
  const metadata = config.metadata ?? {};
  const linux = config.linux ?? {};
  switch (r.int(0, 13)) {
    case 0:
      metadata.name = hostile(g);
      break;
    case 1:
      metadata.uid = r.chance(0.5) ? `${tag}-${hostile(g)}` : r.pick(['', '.', '..', '/', 'a/b', '.hidden', '\0']);
      break;
    case 2:
      metadata.namespace = hostile(g);
      break;
    case 3:
      metadata.attempt = r.pick(UINT32);
      break;
    case 4: {
      // The name of a live pod: AlreadyExists.
      const other = [...g.world.pods.values()][0];
      if (other?.config.metadata !== undefined) config.metadata = { ...other.config.metadata };
      break;
    }
    case 5:
      config.hostname = hostile(g);
      break;
    case 6:
      config.labels = r.chance(0.5) ? { [hostile(g)]: hostile(g) } : manyEntries(3000, 'label-');
      break;
    case 7:
      config.annotations = r.chance(0.5) ? { [hostile(g)]: HUGE_STRING } : manyEntries(3000, 'note-');
      break;
    case 8:
      config.portMappings = [
        {
          protocol: anyEnum<Protocol>(g, [0, 1, 2, -1, 99]),
          containerPort: r.pick(INT32),
          hostPort: r.pick([0, -1, 70000, 2 ** 31 - 1, g.setup.hostPorts[0]]),
          hostIp: hostile(g),
        },
      ];
      break;
    case 9:
      config.dnsConfig = {
        servers: r.chance(0.5)
          ? [hostile(g), '1.1.1.1\nnameserver 6.6.6.6']
          : Array.from({ length: 2000 }, (_, i) => `10.0.${i >> 8}.${i & 255}`),
        searches: [hostile(g)],
        options: [hostile(g)],
      };
      break;
    case 10:
      linux.cgroupParent = r.pick([
        `${g.setup.cgroupPrefix}/${hostile(g).replaceAll('/', '_')}`,
        `${g.setup.cgroupPrefix}/x\0y`,
        `${g.setup.cgroupPrefix}/${'a'.repeat(300)}`,
        `${g.setup.cgroupPrefix}//double//`,
        `${g.setup.cgroupPrefix}/./dot`,
        `${g.setup.cgroupPrefix}/ü💥`,
        '/../../etc',
        `${g.setup.cgroupPrefix}/../escape`,
        'kubepods-burstable.slice',
        'x.slice',
      ]);
      break;
    case 11:
      linux.sysctls = r.pick([
        { [hostileWhere(g, (name) => sysctlProblem(name, '1') === undefined)]: '1' },
        { 'net.ipv4.conf.eth0/100.forwarding': '1' },
        { 'net.//.kernel.core_pattern': hostSysctl('/proc/sys/kernel/core_pattern') ?? '' },
        { 'kernel.core_pattern': hostSysctl('/proc/sys/kernel/core_pattern') ?? '' },
        { 'vm.swappiness': hostSysctl('/proc/sys/vm/swappiness') ?? '' },
        { 'net.ipv4.ip_unprivileged_port_start': hostSysctl('/proc/sys/net/ipv4/ip_unprivileged_port_start') ?? '' },
        { 'kernel.shmmni': hostSysctl('/proc/sys/kernel/shmmni') ?? '' },
        { 'fs.mqueue.msg_max': hostSysctl('/proc/sys/fs/mqueue/msg_max') ?? '' },
        { 'net.no.such.key': 'x\ny' },
        { 'net.no.such.key': 'a'.repeat(5000) },
        { 'kernel.no_such': '\0' },
        { '../../../nonexistent-fuzz': '1' },
        manyEntries(500, 'net.ipv4.no_such_'),
      ]);
      break;
    case 12:
      (linux.securityContext ??= {}).namespaceOptions = {
        network: anyEnum<NamespaceMode>(g, INT32),
        pid: anyEnum<NamespaceMode>(g, INT32),
        ipc: anyEnum<NamespaceMode>(g, INT32),
        targetId: hostile(g),
      };
      break;
    default:
      config.logDirectory = r.pick([
        '',
        join(g.setup.fuzzDir, 'logs', `q-${hostile(g).replaceAll('/', '_')}`),
        join(g.setup.fuzzDir, 'logs', `p${n}`, '..', `q${n}`),
      ]);
  }
  return config;
}

function mounts(g: Gen, n: number): DeepPartial<api.Mount>[] {
  type M = readonly [number, DeepPartial<api.Mount>];
  const r = g.rng;
  const host = join(g.setup.fuzzDir, 'host');
  const dir = join(host, 'dir');
  const escape = `/proc/self/root${g.setup.fuzzDir}/escape-${n}`;
  return [
    r.weighted<DeepPartial<api.Mount>>([
      [4, { containerPath: '/data', hostPath: dir }],
      [2, { containerPath: '/data', hostPath: dir, propagation: MountPropagation.PROPAGATION_BIDIRECTIONAL }],
      [2, { containerPath: '/data', hostPath: dir, propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER }],
      [2, { containerPath: '/file', hostPath: join(host, 'file'), readonly: true }],
      [2, { containerPath: '/made', hostPath: join(host, `missing-${n}`) }],
      [1, { containerPath: '/etc/hostname', hostPath: join(host, 'file') }],
      [1, { containerPath: 'relative', hostPath: dir }],
      [1, { containerPath: '/../escape-mount', hostPath: dir }],
      [1, { containerPath: '/', hostPath: dir }],
      [1, { containerPath: '/proc', hostPath: dir }],
      [1, { containerPath: '/dev/null', hostPath: join(host, 'file') }],
      [1, { containerPath: escape, hostPath: dir }],
      [1, { containerPath: '/host', hostPath: '/', readonly: true }],
      [1, { containerPath: '/netns', hostPath: '/proc/self/ns/net', readonly: true }],
      [1, { containerPath: '/null', hostPath: '/dev/null', readonly: true }],
      [1, { containerPath: '/pkg', hostPath: 'package.json', readonly: true }],
      [1, { containerPath: '/opts', hostPath: dir, mountOptions: r.pick([['nosuid'], ['bogus'], ['nodev', 'noexec'], ['']]) }],
      [
        1,
        {
          containerPath: '/rro',
          hostPath: dir,
          readonly: r.chance(0.5),
          recursiveReadOnly: true,
          propagation: anyEnum<MountPropagation>(g, [0, 1, 2]),
        },
      ],
      [1, { containerPath: '/selinux', hostPath: dir, selinuxRelabel: true }],
      [1, { containerPath: '/idmap', hostPath: dir, uidMappings: [{ hostId: 1000, containerId: 0, length: 1 }] }],
      [1, { containerPath: '/image', hostPath: join(host, 'image'), image: { image: BUILTIN_BUSYBOX_IMAGE } }],
      [1, { containerPath: hostileContainerPath(g), hostPath: dir, propagation: anyEnum<MountPropagation>(g, [0, 1, -1, 99]) }],
    ] as readonly M[]),
  ];
}

function devices(g: Gen, n: number): DeepPartial<api.Device>[] {
  return [
    g.rng.pick([
      { containerPath: '/dev/xnull', hostPath: '/dev/null', permissions: 'rwm' },
      { containerPath: '/dev/null', hostPath: '/dev/zero', permissions: 'rw' },
      { containerPath: '/dev/x', hostPath: '/etc/passwd', permissions: 'r' },
      { containerPath: 'relative', hostPath: '/dev/null', permissions: 'rwm' },
      { containerPath: '/dev/x', hostPath: '/dev/null', permissions: 'rwmx' },
      { containerPath: '/dev/../../x', hostPath: '/dev/null', permissions: 'r' },
      { containerPath: '/dev/x', hostPath: '/dev/no-such-device', permissions: 'r' },
      { containerPath: '/dev/x', hostPath: 'relative', permissions: 'r' },
      { containerPath: '/dev/x', hostPath: '/dev', permissions: '' },
      { containerPath: `/proc/self/root${g.setup.fuzzDir}/escape-dev-${n}`, hostPath: '/dev/null', permissions: 'rwm' },
      { containerPath: hostileContainerPath(g), hostPath: hostile(g), permissions: hostile(g) },
    ]),
  ];
}

function securityContext(g: Gen): DeepPartial<api.LinuxContainerSecurityContext> {
  const r = g.rng;
  const profile = (): DeepPartial<api.SecurityProfile> => ({
    profileType: anyEnum<api.SecurityProfile_ProfileType>(g, [0, 1, 2, -1, 9]),
    localhostRef: r.pick([
      '',
      join(g.setup.fuzzDir, 'seccomp.json'),
      join(g.setup.fuzzDir, 'bad.json'),
      join(g.setup.fuzzDir, 'no-such.json'),
      'relative.json',
      '/etc/hostname',
      hostileWhere(g, (ref) => profileProblem(ref) === undefined),
    ]),
  });
  return {
    privileged: r.chance(0.2),
    runAsUser: r.chance(0.3) ? { value: r.pick([0n, 65534n, 1000n, -1n, 2n ** 32n, 2n ** 63n - 1n]) } : undefined,
    runAsUsername: r.pick(['', '', '', 'nobody', 'root', 'no-such-user', hostile(g)]),
    runAsGroup: r.chance(0.1) ? { value: r.pick([0n, 65534n, -1n]) } : undefined,
    readonlyRootfs: r.chance(0.2),
    noNewPrivs: r.chance(0.3),
    capabilities: r.chance(0.3)
      ? {
          addCapabilities: r.pick([[], ['NET_ADMIN'], ['CAP_SYS_ADMIN'], ['ALL'], ['BOGUS'], [''], [hostile(g)]]),
          dropCapabilities: r.pick([[], ['ALL'], ['NET_RAW'], ['bogus']]),
          addAmbientCapabilities: r.pick([[], ['NET_BIND_SERVICE'], ['nope']]),
        }
      : undefined,
    supplementalGroups: r.chance(0.1) ? [1n, 2n ** 40n, -1n] : [],
    supplementalGroupsPolicy: anyEnum<api.SupplementalGroupsPolicy>(g, [0, 0, 1, 7]),
    seccomp: r.chance(0.3) ? profile() : undefined,
    apparmor: r.chance(0.1) ? profile() : undefined,
    // eslint-disable-next-line @typescript-eslint/no-deprecated -- older kubelets still send it
    seccompProfilePath: r.chance(0.05)
      ? r.pick([
          'runtime/default',
          'unconfined',
          `localhost/${join(g.setup.fuzzDir, 'seccomp.json')}`,
          hostileWhere(g, (ref) => profileProblem(ref) === undefined),
        ])
      : '',
    maskedPaths: r.chance(0.1)
      ? r.pick([
          ['/proc/kcore'],
          ['/nonexistent'],
          ['relative'],
          ['/../escape-mask'],
          ['/etc'],
          [`/proc/self/root${join(g.setup.fuzzDir, 'host', 'dir')}`],
        ])
      : [],
    readonlyPaths: r.chance(0.1) ? r.pick([['/proc/sys'], ['/'], ['/nonexistent'], ['relative']]) : [],
    namespaceOptions: r.chance(0.2)
      ? { pid: anyEnum<NamespaceMode>(g, [0, 1, 2, 3, -1]), targetId: pickId(g, 'container') }
      : undefined,
  };
}

function containerConfig(g: Gen): DeepPartial<api.ContainerConfig> {
  const r = g.rng;
  const n = g.world.counter++;
  const argv = r.weighted(CONTAINER_ARGV);
  const split = r.chance(0.2) && argv.length > 1;
  const config: DeepPartial<api.ContainerConfig> = {
    metadata: { name: `c${n}`, attempt: r.chance(0.9) ? 0 : r.pick(UINT32) },
    image: { image: r.chance(0.85) ? BUILTIN_BUSYBOX_IMAGE : imageRef(g) },
    command: split ? argv.slice(0, 1) : argv,
    args: split ? argv.slice(1) : [],
    workingDir: r.chance(0.1) ? r.pick(['/tmp', '/nonexistent', 'relative', '/..', '/proc', '/etc/hostname']) : '',
    envs: r.chance(0.2)
      ? r
          .pick([
            [{ key: 'A', value: '1' }],
            [{ key: 'A=B', value: 'c' }],
            [{ key: '', value: 'x' }],
            [{ key: 'X\0Y', value: 'z' }],
            [{ key: 'BAD_UTF8', value: '\ud800' }],
            [{ key: hostile(g), value: hostile(g) }],
            Array.from({ length: 5000 }, (_, i) => ({ key: `E${i}`, value: 'v' })),
          ])
          .map((e) => ({ key: e.key, value: e.key === 'BAD_UTF8' ? Buffer.from([0xff, 0xfe, 0x00]) : Buffer.from(e.value) }))
      : [],
    mounts: r.chance(0.25) ? mounts(g, n) : [],
    devices: r.chance(0.1) ? devices(g, n) : [],
    labels: r.chance(0.9) ? { role: r.pick(['web', 'db']) } : { [hostile(g)]: hostile(g) },
    annotations: r.chance(0.95) ? {} : manyEntries(2000, 'a'),
    logPath: r.chance(0.85)
      ? `c${n}.log`
      : r.pick(['', 'sub/dir/x.log', '../up.log', '..', '.', join(g.setup.fuzzDir, 'abs.log'), 'x\0y', 'a'.repeat(300)]),
    stdin: r.chance(0.1),
    stdinOnce: r.chance(0.05),
    tty: r.chance(0.1),
    linux: {
      resources: r.chance(0.2) ? resources(g) : undefined,
      securityContext: r.chance(0.3) ? securityContext(g) : undefined,
    },
    stopSignal: r.chance(0.9)
      ? Signal.SIGNAL_RUNTIME_DEFAULT
      : anyEnum<Signal>(g, [Signal.SIGNAL_SIGTERM, Signal.SIGNAL_SIGKILL, Signal.SIGNAL_SIGSTOP, -1, 99]),
  };
  // Mounts, devices and masks chosen apart can together break the host check (a path through
  // /proc/self/root next to a bidirectional mount): then the container goes without them.
  const bounds = { ...g.setup, exitsOnTerm: new Set<string>() };
  if (containerConfigProblems(api.ContainerConfig.fromPartial(config), bounds).length > 0) {
    config.mounts = [];
    config.devices = [];
    if (config.linux?.securityContext !== undefined) {
      config.linux.securityContext.maskedPaths = [];
      config.linux.securityContext.readonlyPaths = [];
    }
  }
  return config;
}

function filterLabels(g: Gen): Record<string, string> {
  return g.rng.pick([{}, {}, { app: 'a' }, { role: 'web' }, { fuzz: g.setup.tag }, { [hostile(g)]: hostile(g) }]);
}

type Builder = (g: Gen) => unknown;

/** Plausible requests per RPC, typed against the generated messages so a misspelt field fails the build. */
const PLAUSIBLE: Record<string, { weight: number; build: Builder }> = {
  Version: { weight: 1, build: (g) => ({ version: twist(g, 'v1', HOSTILE_STRINGS) }) satisfies DeepPartial<api.VersionRequest> },
  Status: { weight: 1, build: (g) => ({ verbose: g.rng.chance(0.5) }) satisfies DeepPartial<api.StatusRequest> },
  RuntimeConfig: { weight: 0.5, build: () => ({}) },
  UpdateRuntimeConfig: {
    weight: 0.5,
    build: (g) =>
      ({
        runtimeConfig: {
          networkConfig: {
            podCidr: g.rng.pick(['10.88.0.0/16', '', '300.1.1.1/33', 'x', '::/0', '10.0.0.0/8,fd00::/64', hostile(g)]),
          },
        },
      }) satisfies DeepPartial<api.UpdateRuntimeConfigRequest>,
  },
  RunPodSandbox: {
    weight: 4,
    build: (g) =>
      ({
        config: podConfig(g),
        runtimeHandler: twist(g, '', HOSTILE_STRINGS, 0.05),
      }) satisfies DeepPartial<api.RunPodSandboxRequest>,
  },
  StopPodSandbox: {
    weight: 1.5,
    build: (g) => ({ podSandboxId: pickId(g, 'pod') }) satisfies DeepPartial<api.StopPodSandboxRequest>,
  },
  RemovePodSandbox: {
    weight: 1.5,
    build: (g) => ({ podSandboxId: pickId(g, 'pod') }) satisfies DeepPartial<api.RemovePodSandboxRequest>,
  },
  PodSandboxStatus: {
    weight: 3,
    build: (g) =>
      ({ podSandboxId: pickId(g, 'pod'), verbose: g.rng.chance(0.5) }) satisfies DeepPartial<api.PodSandboxStatusRequest>,
  },
  ListPodSandbox: {
    weight: 2,
    build: (g) =>
      ({
        filter: g.rng.chance(0.4)
          ? undefined
          : {
              id: g.rng.chance(0.5) ? '' : pickId(g, 'pod'),
              state: g.rng.chance(0.5) ? undefined : { state: anyEnum<api.PodSandboxState>(g, [0, 1, -1, 7]) },
              labelSelector: filterLabels(g),
            },
      }) satisfies DeepPartial<api.ListPodSandboxRequest>,
  },
  StreamPodSandboxes: {
    weight: 1,
    build: (g) => ({ filter: { id: g.rng.chance(0.5) ? '' : pickId(g, 'pod'), labelSelector: filterLabels(g) } }),
  },
  UpdatePodSandboxResources: {
    weight: 1,
    build: (g) =>
      ({
        podSandboxId: pickId(g, 'pod'),
        overhead: g.rng.chance(0.5) ? resources(g) : undefined,
        resources: g.rng.chance(0.5) ? resources(g) : undefined,
      }) satisfies DeepPartial<api.UpdatePodSandboxResourcesRequest>,
  },
  CreateContainer: {
    weight: 6,
    build: (g) => {
      const podSandboxId = pickId(g, 'pod', (id) => g.world.pods.get(id)?.ready === true);
      return {
        podSandboxId,
        config: containerConfig(g),
        sandboxConfig: g.world.pods.get(podSandboxId)?.config,
      } satisfies DeepPartial<api.CreateContainerRequest>;
    },
  },
  StartContainer: {
    weight: 5,
    build: (g) =>
      ({
        containerId: pickId(g, 'container', (id) => g.world.containers.get(id)?.state === 'created'),
      }) satisfies DeepPartial<api.StartContainerRequest>,
  },
  StopContainer: {
    weight: 2,
    build: (g) => {
      const containerId = pickId(g, 'container', (id) => g.world.containers.get(id)?.state === 'running');
      const long = g.world.exitsOnTerm.has(containerId);
      const timeout = long
        ? g.rng.pick([0n, 1n, 2n, 10n, 2n ** 62n, -1n, 2n ** 63n - 1n])
        : g.rng.pick([0n, 1n, -1n, 2n, -(2n ** 63n)]);
      return { containerId, timeout } satisfies DeepPartial<api.StopContainerRequest>;
    },
  },
  RemoveContainer: {
    weight: 2,
    build: (g) => ({ containerId: pickId(g, 'container') }) satisfies DeepPartial<api.RemoveContainerRequest>,
  },
  ListContainers: {
    weight: 2,
    build: (g) =>
      ({
        filter: g.rng.chance(0.4)
          ? undefined
          : {
              id: g.rng.chance(0.6) ? '' : pickId(g, 'container'),
              podSandboxId: g.rng.chance(0.6) ? '' : pickId(g, 'pod'),
              state: g.rng.chance(0.6) ? undefined : { state: anyEnum<api.ContainerState>(g, [0, 1, 2, 3, -1, 99]) },
              labelSelector: filterLabels(g),
            },
      }) satisfies DeepPartial<api.ListContainersRequest>,
  },
  StreamContainers: { weight: 1, build: (g) => ({ filter: { podSandboxId: g.rng.chance(0.5) ? '' : pickId(g, 'pod') } }) },
  ContainerStatus: {
    weight: 3,
    build: (g) =>
      ({ containerId: pickId(g, 'container'), verbose: g.rng.chance(0.5) }) satisfies DeepPartial<api.ContainerStatusRequest>,
  },
  UpdateContainerResources: {
    weight: 1.5,
    build: (g) =>
      ({
        containerId: pickId(g, 'container', (id) => g.world.containers.get(id)?.state === 'running'),
        linux: resources(g),
        annotations: g.rng.chance(0.9) ? {} : { [hostile(g)]: hostile(g) },
      }) satisfies DeepPartial<api.UpdateContainerResourcesRequest>,
  },
  ReopenContainerLog: {
    weight: 1,
    build: (g) => ({ containerId: pickId(g, 'container') }) satisfies DeepPartial<api.ReopenContainerLogRequest>,
  },
  ExecSync: {
    weight: 4,
    build: (g) =>
      ({
        containerId: pickId(g, 'container', (id) => g.world.containers.get(id)?.state === 'running'),
        cmd: g.rng.weighted(EXEC_ARGV),
        timeout: g.rng.pick([0n, 1n, 2n, 5n, -1n, 2n ** 62n]),
      }) satisfies DeepPartial<api.ExecSyncRequest>,
  },
  Exec: {
    weight: 1.5,
    build: (g) =>
      ({
        containerId: pickId(g, 'container', (id) => g.world.containers.get(id)?.state === 'running'),
        cmd: g.rng.weighted(EXEC_ARGV),
        tty: g.rng.chance(0.3),
        stdin: g.rng.chance(0.5),
        stdout: g.rng.chance(0.8),
        stderr: g.rng.chance(0.5),
      }) satisfies DeepPartial<api.ExecRequest>,
  },
  Attach: {
    weight: 1,
    build: (g) =>
      ({
        containerId: pickId(g, 'container'),
        stdin: g.rng.chance(0.5),
        tty: g.rng.chance(0.3),
        stdout: true,
        stderr: g.rng.chance(0.5),
      }) satisfies DeepPartial<api.AttachRequest>,
  },
  PortForward: {
    weight: 1,
    build: (g) =>
      ({
        podSandboxId: pickId(g, 'pod'),
        port: g.rng.pick([[80], [], [-1], [70000], [0, 1, 2, 3], [2 ** 31 - 1]]),
      }) satisfies DeepPartial<api.PortForwardRequest>,
  },
  ContainerStats: {
    weight: 1.5,
    build: (g) => ({ containerId: pickId(g, 'container') }) satisfies DeepPartial<api.ContainerStatsRequest>,
  },
  ListContainerStats: {
    weight: 1,
    build: (g) =>
      ({
        filter: g.rng.chance(0.5) ? undefined : { id: pickId(g, 'container'), podSandboxId: '', labelSelector: filterLabels(g) },
      }) satisfies DeepPartial<api.ListContainerStatsRequest>,
  },
  StreamContainerStats: { weight: 0.5, build: () => ({}) },
  PodSandboxStats: {
    weight: 1.5,
    build: (g) => ({ podSandboxId: pickId(g, 'pod') }) satisfies DeepPartial<api.PodSandboxStatsRequest>,
  },
  ListPodSandboxStats: {
    weight: 1,
    build: (g) =>
      ({
        filter: g.rng.chance(0.5) ? undefined : { id: pickId(g, 'pod'), labelSelector: filterLabels(g) },
      }) satisfies DeepPartial<api.ListPodSandboxStatsRequest>,
  },
  StreamPodSandboxStats: { weight: 0.5, build: () => ({}) },
  CheckpointContainer: {
    weight: 0.3,
    build: (g) =>
      ({
        containerId: pickId(g, 'container'),
        location: join(g.setup.fuzzDir, 'checkpoint.tar'),
        timeout: g.rng.pick(INT64),
      }) satisfies DeepPartial<api.CheckpointContainerRequest>,
  },
  CheckpointPod: {
    weight: 0.2,
    build: (g) => ({ podSandboxId: pickId(g, 'pod'), outputPath: join(g.setup.fuzzDir, 'pod.tar') }),
  },
  RestorePod: { weight: 0.2, build: (g) => ({ checkpointPath: join(g.setup.fuzzDir, 'pod.tar'), config: podConfig(g) }) },
  ListMetricDescriptors: { weight: 0.2, build: () => ({}) },
  ListPodSandboxMetrics: { weight: 0.2, build: () => ({}) },
  ListImages: {
    weight: 1,
    build: (g) =>
      ({
        filter: g.rng.chance(0.5) ? undefined : { image: { image: imageRef(g) } },
      }) satisfies DeepPartial<api.ListImagesRequest>,
  },
  StreamImages: { weight: 0.5, build: () => ({}) },
  ImageStatus: {
    weight: 2,
    build: (g) => ({ image: { image: imageRef(g) }, verbose: g.rng.chance(0.5) }) satisfies DeepPartial<api.ImageStatusRequest>,
  },
  PullImage: {
    weight: 1,
    build: (g) =>
      ({
        image: { image: pullRef(g), annotations: g.rng.chance(0.9) ? {} : { [hostile(g)]: hostile(g) } },
        auth: g.rng.chance(0.2)
          ? { username: hostile(g), password: hostile(g), auth: hostile(g), serverAddress: hostile(g) }
          : undefined,
      }) satisfies DeepPartial<api.PullImageRequest>,
  },
  RemoveImage: {
    weight: 0.7,
    build: (g) =>
      ({
        image: {
          image: g.rng.weighted([
            [6, `${g.setup.registries.fake}/fuzz/tiny:1`],
            [3, hostile(g)],
            [1, BUILTIN_BUSYBOX_IMAGE],
          ] as const),
        },
      }) satisfies DeepPartial<api.RemoveImageRequest>,
  },
  ImageFsInfo: { weight: 0.5, build: () => ({}) },
};

for (const rpc of RPCS) if (PLAUSIBLE[rpc.name] === undefined) throw new Error(`fuzz: no plausible request for ${rpc.name}`);

// ---- structured random requests -----------------------------------------------------------------

const ID_FIELDS: Record<string, 'pod' | 'container'> = { podSandboxId: 'pod', containerId: 'container', targetId: 'container' };

/** A random string for a field, biased by what the field is. */
function randomString(g: Gen, message: string, field: string): string {
  const r = g.rng;
  const kind = ID_FIELDS[field] ?? (field === 'id' ? (message.startsWith('Container') ? 'container' : 'pod') : undefined);
  if (kind !== undefined && r.chance(0.7)) return pickId(g, kind);
  if (message === 'ImageSpec' && field === 'image' && r.chance(0.7)) return imageRef(g);
  if (r.chance(0.75)) return hostile(g);
  const length = r.pick([1, 3, 8, 30]);
  let out = '';
  for (let i = 0; i < length; i++) {
    out += String.fromCodePoint(
      r.weighted([
        [6, r.int(0x20, 0x7e)],
        [1, r.int(0, 0x1f)],
        [2, r.int(0xa0, 0x2fff)],
        [1, r.int(0x1f300, 0x1f64f)],
      ] as const),
    );
  }
  return out;
}

function randomScalar(g: Gen, message: string, f: Field): unknown {
  const r = g.rng;
  switch (f.kind) {
    case 'string':
      return randomString(g, message, f.name);
    case 'bytes':
      return r.bytes(r.pick([0, 1, 16, 1024]));
    case 'bool':
      return r.chance(0.5);
    case 'int32':
      return r.chance(0.7) ? r.pick(INT32) : r.int(-5, 100);
    case 'uint32':
      return r.pick(UINT32);
    case 'int64':
      return r.pick(INT64);
    case 'uint64':
      return r.pick(UINT64);
    case 'double':
      return r.pick(DOUBLES);
    case 'enum':
      return r.chance(0.7) && (f.values?.length ?? 0) > 0 ? r.pick(f.values ?? [0]) : r.pick([-1, 99, 2 ** 31 - 1, -(2 ** 31)]);
    case 'message':
    case 'map':
      throw new Error(`not a scalar: ${f.kind}`);
  }
}

/** A message of `type` with random fields, nested to `depth` 5 at most. */
function randomMessage(g: Gen, type: string, depth = 0): Record<string, unknown> {
  const r = g.rng;
  const out: Record<string, unknown> = {};
  for (const f of schema.messages.get(type) ?? []) {
    if (!r.chance(depth === 0 ? 0.8 : 0.45)) continue;
    if (f.kind === 'map') {
      const n = r.chance(0.01) ? 2000 : r.pick([0, 1, 2, 3]);
      const map: Record<string, string> = {};
      for (let i = 0; i < n; i++) map[n > 3 ? `k${i}` : randomString(g, type, f.name)] = randomString(g, type, f.name);
      out[f.name] = map;
      continue;
    }
    const one = (): unknown =>
      f.kind === 'message' ? (depth >= 5 ? undefined : randomMessage(g, f.type ?? '', depth + 1)) : randomScalar(g, type, f);
    if (!f.repeated) {
      out[f.name] = one();
      continue;
    }
    const many = f.kind !== 'message' && r.chance(0.01);
    out[f.name] = Array.from({ length: many ? r.int(1000, 5000) : r.pick([0, 1, 1, 2, 3]) }, one).filter((v) => v !== undefined);
  }
  // Commands from the whitelist, most of the time, so that the safety check lets them through.
  if (type === 'ContainerConfig' && r.chance(0.8)) {
    out['command'] = r.weighted(CONTAINER_ARGV);
    out['args'] = [];
  }
  if ((type === 'ExecSyncRequest' || type === 'ExecRequest') && r.chance(0.8)) out['cmd'] = r.weighted(EXEC_ARGV);
  if (type === 'PodSandboxConfig' && r.chance(0.8)) out['logDirectory'] = join(g.setup.fuzzDir, 'logs', `r${g.world.counter++}`);
  if (type === 'LinuxPodSandboxConfig' && r.chance(0.8)) {
    out['cgroupParent'] = r.chance(0.7) ? '' : `${g.setup.cgroupPrefix}/r${g.world.counter++}`;
    out['sysctls'] = {};
  }
  if (type === 'PodSandboxMetadata' && r.chance(0.8)) out['uid'] = `${g.setup.tag}-r${g.world.counter++}`;
  return out;
}

// ---- mutated bytes -----------------------------------------------------------------------------

function varint(n: number): Buffer {
  const out: number[] = [];
  let v = n >>> 0;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return Buffer.from(out);
}

/** One to three damages to an encoded message: flips, truncation, insertions, bogus fields, huge lengths. */
export function mutate(rng: Rng, input: Buffer): { bytes: Buffer; ops: string[] } {
  let bytes = Buffer.from(input);
  const ops: string[] = [];
  const n = rng.int(1, 3);
  for (let i = 0; i < n; i++) {
    const at = rng.int(0, Math.max(0, bytes.length - 1));
    switch (rng.int(0, 8)) {
      case 0:
        if (bytes.length > 0) bytes[at] = (bytes[at] ?? 0) ^ (1 << rng.int(0, 7));
        ops.push(`flip@${at}`);
        break;
      case 1:
        if (bytes.length > 0) bytes[at] = rng.pick([0x00, 0xff, 0x80, 0x7f, rng.int(0, 255)]);
        ops.push(`set@${at}`);
        break;
      case 2:
        bytes = bytes.subarray(0, at);
        ops.push(`truncate@${at}`);
        break;
      case 3:
        bytes = Buffer.concat([bytes.subarray(0, at), rng.bytes(rng.int(1, 16)), bytes.subarray(at)]);
        ops.push(`insert@${at}`);
        break;
      case 4: {
        const len = rng.int(1, 32);
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + len)]);
        ops.push(`delete@${at}+${len}`);
        break;
      }
      case 5: {
        const len = rng.int(1, 64);
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at, at + len), bytes.subarray(at)]);
        ops.push(`duplicate@${at}+${len}`);
        break;
      }
      case 6: {
        // A field the schema does not have, or a known number with the wrong wire type.
        const field = rng.pick([1, 2, 3, 7, 15, 16, 40, 536870911]);
        const wire = rng.int(0, 7);
        const payload =
          wire === 2
            ? Buffer.concat([varint(8), rng.bytes(8)])
            : wire === 0
              ? varint(rng.int(0, 2 ** 31))
              : rng.bytes(rng.pick([0, 4, 8]));
        bytes = Buffer.concat([bytes, varint(field * 8 + wire), payload]);
        ops.push(`field${field}/wire${wire}`);
        break;
      }
      case 7:
        bytes = Buffer.concat([
          bytes.subarray(0, at),
          Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
          bytes.subarray(at + 1),
        ]);
        ops.push(`overlong-varint@${at}`);
        break;
      default:
        bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), bytes.subarray(at + 1)]);
        ops.push(`huge-length@${at}`);
    }
  }
  return { bytes, ops };
}

// ---- the run -----------------------------------------------------------------------------------

export type Mode = 'plausible' | 'random' | 'mutated' | 'upkeep';

/** One answer of the server. */
export interface Answer {
  /** The call's seed index (`123`), or `123.sync`-style for a call the fuzz made to keep its state. */
  index: string;
  method: string;
  mode: Mode;
  code: status;
  message: string;
  /** What was sent, shortened: the decoded request, or the undecodable bytes. */
  payload: string;
  ms: number;
}

export interface FuzzSetup extends Omit<HostBounds, 'exitsOnTerm'> {
  socket: string;
  seed: number;
  /** Seed-indexed calls to make (the upkeep calls come on top). */
  calls: number;
  concurrency: number;
  /** A tag in the run's pod uids and labels. */
  tag: string;
  /** The fake registry on loopback (host:port) and a closed loopback port: both in registryHosts. */
  registries: { fake: string; closed: string };
  /** Live pods at most: RunPodSandbox removes the oldest first when there are this many. */
  maxPods: number;
  maxContainers: number;
  /** The client's deadline for one call. */
  deadlineMs: number;
  /** Filled with every pod uid a RunPodSandbox request carried (for the leak inventory's cgroups). */
  podUids: Set<string>;
  /** Filled with every sandbox and container id the server answered. */
  ids: Set<string>;
  /**
   * Filled with every cgroup_parent a RunPodSandbox carried, normalised. They are the kubelet's:
   * like containerd, icetray leaves a pod's cgroup_parent in place, so the test removes them once
   * the pods are gone, as the kubelet would.
   */
  cgroupParents: Set<string>;
  /** Called with a progress line now and then. */
  progress?: (line: string) => void;
}

export interface FuzzResult {
  seed: number;
  /** Every call made, upkeep included. */
  calls: number;
  ms: number;
  /** Answers per status code name. */
  byCode: Record<string, number>;
  /** Answers per method, per code name. */
  byMethod: Record<string, Record<string, number>>;
  /** INTERNAL or UNKNOWN answers from icetray's handlers. */
  internal: Answer[];
  /** grpc-js's own INTERNAL "Error deserializing request" for bytes that do not decode. */
  undecodable: Answer[];
  unavailable: Answer[];
  /** Calls the client gave up on at its deadline: the server did not answer in time. */
  hung: Answer[];
  /** Requests redrawn because they could have changed the host. */
  redrawn: number;
  /** The GetContainerEvents subscriber: events it got, and how it ended if not by our cancel. */
  events: { received: number; error: string | undefined };
  /**
   * Every call that named a sandbox or container id, or carried a pod uid, by that id or uid:
   * what happened to the object, for explaining a leak (`historyOf`).
   */
  history: Map<string, string[]>;
}

const identity = (b: Buffer): Buffer => b;

/** A short, printable account of a value: long strings and lists cut, bytes as hex. */
export function summarize(value: unknown, depth = 0): string {
  if (typeof value === 'string') {
    const shown = JSON.stringify(value.length > 80 ? value.slice(0, 60) : value);
    return value.length > 80 ? `${shown.slice(0, -1)}…"(${value.length} chars)` : shown;
  }
  if (typeof value === 'bigint') return `${value}n`;
  if (Buffer.isBuffer(value)) return `<${value.length} bytes ${value.subarray(0, 16).toString('hex')}>`;
  if (value === undefined || value === null || typeof value !== 'object') return String(value);
  if (depth > 6) return '…';
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    const shown = value.slice(0, 4).map((v) => summarize(v, depth + 1));
    return `[${shown.join(', ')}${value.length > 4 ? `, …(${value.length})` : ''}]`;
  }
  const entries = Object.entries(value as Record<string, unknown>).filter(
    ([, v]) =>
      !(
        v === '' ||
        v === 0 ||
        v === 0n ||
        v === false ||
        v === undefined ||
        (Array.isArray(v) && v.length === 0) ||
        (typeof v === 'object' && v !== null && !Buffer.isBuffer(v) && Object.keys(v).length === 0)
      ),
  );
  const shown = entries.slice(0, 12).map(([k, v]) => `${k}: ${summarize(v, depth + 1)}`);
  return `{${shown.join(', ')}${entries.length > 12 ? `, …(${entries.length} keys)` : ''}}`;
}

interface Sent {
  code: status;
  message: string;
  response: Buffer | undefined;
}

function unaryCall(client: Client, path: string, bytes: Buffer, deadlineMs: number): Promise<Sent> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      path,
      identity,
      identity,
      bytes,
      new Metadata(),
      { deadline: new Date(Date.now() + deadlineMs) },
      (err: ServiceError | null, response?: Buffer) => {
        resolve(
          err === null
            ? { code: status.OK, message: '', response }
            : { code: err.code, message: err.details, response: undefined },
        );
      },
    );
  });
}

function streamCall(client: Client, path: string, bytes: Buffer, deadlineMs: number): Promise<Sent> {
  return new Promise((resolve) => {
    const call: ClientReadableStream<Buffer> = client.makeServerStreamRequest(path, identity, identity, bytes, new Metadata(), {
      deadline: new Date(Date.now() + deadlineMs),
    });
    call.on('data', () => undefined);
    call.on('error', () => undefined);
    call.on('status', (s: { code: status; details: string }) =>
      resolve({ code: s.code, message: s.details, response: undefined }),
    );
  });
}

/**
 * Builds `draws` plausible requests of every RPC against a made-up state (live pods and
 * containers of random ids) and returns each one `hostProblems` refuses: a plausible request
 * must never need redrawing, so this is empty unless a builder is wrong. No server needed.
 */
export function selfCheck(
  setup: Pick<FuzzSetup, 'seed' | 'fuzzDir' | 'cgroupPrefix' | 'registries' | 'registryHosts' | 'hostPorts' | 'tag'>,
  draws: number,
): string[] {
  const world = new World();
  const rng = new Rng(setup.seed);
  for (let i = 0; i < 5; i++) {
    const id = rng.bytes(32).toString('hex');
    world.pods.set(id, { id, config: api.PodSandboxConfig.create(), ready: true });
    const cid = rng.bytes(32).toString('hex');
    world.containers.set(cid, { id: cid, podId: id, state: rng.pick(['created', 'running', 'exited'] as const) });
    if (i === 0) world.exitsOnTerm.add(cid);
  }
  const full = {
    ...setup,
    socket: '',
    calls: 0,
    concurrency: 1,
    maxPods: 0,
    maxContainers: 0,
    deadlineMs: 0,
    podUids: new Set<string>(),
    ids: new Set<string>(),
    cgroupParents: new Set<string>(),
  };
  const bounds: HostBounds = { ...full, exitsOnTerm: world.exitsOnTerm };
  const problems: string[] = [];
  for (let i = 0; i < draws; i++) {
    const g: Gen = { rng: Rng.forCall(setup.seed, i), world, setup: full, sysctls: {} };
    for (const rpc of RPCS) {
      const bytes = Buffer.from(rpc.request.encode(rpc.request.fromPartial(PLAUSIBLE[rpc.name]?.build(g) ?? {})).finish());
      for (const problem of hostProblems(rpc.name, rpc.request.decode(bytes), bounds))
        problems.push(`#${i} ${rpc.name}: ${problem}`);
    }
  }
  return problems;
}

/** Runs the fuzz; the server must be up on `setup.socket` with icetray.local/busybox pullable. */
export async function runFuzz(setup: FuzzSetup): Promise<FuzzResult> {
  const started = Date.now();
  const client = new Client(`unix://${setup.socket}`, credentials.createInsecure(), {
    'grpc.max_receive_message_length': -1,
    'grpc.max_send_message_length': -1,
  });
  const world = new World();
  const rpcs = new Map(RPCS.map((rpc) => [rpc.name, rpc]));
  const rpc = (name: string): Rpc => {
    const found = rpcs.get(name);
    if (found === undefined) throw new Error(`no RPC ${name}`);
    return found;
  };
  const bounds: HostBounds = { ...setup, exitsOnTerm: world.exitsOnTerm };
  const sysctls: Record<string, string> = {};
  for (const name of [
    'net.ipv4.ip_unprivileged_port_start',
    'net.ipv4.ping_group_range',
    'net.core.somaxconn',
    'kernel.shmmni',
  ]) {
    const value = hostSysctl(`/proc/sys/${name.replaceAll('.', '/')}`);
    if (value !== undefined) sysctls[name] = value;
  }
  const result: FuzzResult = {
    seed: setup.seed,
    calls: 0,
    ms: 0,
    byCode: {},
    byMethod: {},
    internal: [],
    undecodable: [],
    unavailable: [],
    hung: [],
    redrawn: 0,
    events: { received: 0, error: undefined },
    history: new Map(),
  };
  const note = (key: string, line: string): void => {
    if (key === '') return;
    const lines = result.history.get(key) ?? [];
    lines.push(line);
    result.history.set(key, lines);
  };

  // The kubelet's evented PLEG: one GetContainerEvents subscriber for the whole run.
  const events = client.makeServerStreamRequest(
    rpcPath('GetContainerEvents'),
    identity,
    identity,
    Buffer.alloc(0),
    new Metadata(),
    {},
  );
  events.on('data', () => (result.events.received += 1));
  events.on('error', (err: ServiceError) => {
    if (err.code !== status.CANCELLED) result.events.error = `${status[err.code]}: ${err.details}`;
  });

  async function send(index: string, mode: Mode, r: Rpc, bytes: Buffer, decoded: unknown): Promise<Sent> {
    const t0 = performance.now();
    const sent = r.streaming
      ? await streamCall(client, r.path, bytes, setup.deadlineMs)
      : await unaryCall(client, r.path, bytes, setup.deadlineMs);
    const ms = Math.round(performance.now() - t0);
    result.calls += 1;
    const name = status[sent.code];
    result.byCode[name] = (result.byCode[name] ?? 0) + 1;
    const perMethod = (result.byMethod[r.name] ??= {});
    perMethod[name] = (perMethod[name] ?? 0) + 1;
    const answer = (): Answer => ({
      index,
      method: r.name,
      mode,
      code: sent.code,
      message: sent.message,
      payload: decoded === undefined ? `undecodable ${summarize(bytes)}` : summarize(decoded),
      ms,
    });
    const line = `#${index} ${r.name} ${name}${sent.message === '' ? '' : `: ${sent.message.slice(0, 200)}`}`;
    const named = decoded as
      { podSandboxId?: unknown; containerId?: unknown; config?: { metadata?: { uid?: unknown } } } | undefined;
    for (const key of [named?.podSandboxId, named?.containerId]) if (typeof key === 'string') note(key, line);
    if (r.name === 'RunPodSandbox' && typeof named?.config?.metadata?.uid === 'string')
      note(named.config.metadata.uid, sent.code === status.OK ? line : `${line}; sent: ${summarize(decoded).slice(0, 600)}`);
    // A container path aimed at the test's folder: named after its target, so an escape can be traced.
    if (r.name === 'CreateContainer' && decoded !== undefined) {
      for (const escape of summarize(decoded).match(/escape-(?:dev-)?\d+/g) ?? [])
        note(escape, `${line}; sent: ${summarize(decoded).slice(0, 800)}`);
    }
    if (sent.code === status.INTERNAL && sent.message.startsWith('Error deserializing request'))
      result.undecodable.push(answer());
    else if (sent.code === status.INTERNAL || sent.code === status.UNKNOWN) result.internal.push(answer());
    else if (sent.code === status.UNAVAILABLE) result.unavailable.push(answer());
    else if (sent.code === status.DEADLINE_EXCEEDED && sent.message.startsWith('Deadline exceeded')) result.hung.push(answer());
    return sent;
  }

  /** Sends a plausible request the fuzz needs for itself (keeping its state, its caps). */
  async function upkeep(
    index: string,
    name: string,
    partial: unknown,
    mode: Mode = 'upkeep',
  ): Promise<Sent & { decoded: unknown }> {
    const r = rpc(name);
    const bytes = Buffer.from(r.request.encode(r.request.fromPartial(partial)).finish());
    const decoded = r.request.decode(bytes);
    const sent = await send(index, mode, r, bytes, decoded);
    learn(r.name, decoded, sent);
    return { ...sent, decoded };
  }

  async function resync(index: string): Promise<void> {
    const pods = await upkeep(`${index}.sync`, 'ListPodSandbox', {});
    const containers = await upkeep(`${index}.sync`, 'ListContainers', {});
    if (pods.response === undefined || containers.response === undefined) return;
    const podList = (rpc('ListPodSandbox').response.decode(pods.response) as api.ListPodSandboxResponse).items;
    const ctrList = (rpc('ListContainers').response.decode(containers.response) as api.ListContainersResponse).containers;
    for (const id of [...world.pods.keys()]) if (!podList.some((p) => p.id === id)) world.dropPod(id);
    for (const p of podList) {
      const known = world.pods.get(p.id);
      if (known !== undefined) known.ready = p.state === api.PodSandboxState.SANDBOX_READY;
      else
        world.pods.set(p.id, {
          id: p.id,
          config: api.PodSandboxConfig.fromPartial({ metadata: p.metadata, labels: p.labels }),
          ready: p.state === api.PodSandboxState.SANDBOX_READY,
        });
      setup.ids.add(p.id);
    }
    for (const id of [...world.containers.keys()]) if (!ctrList.some((c) => c.id === id)) world.dropContainer(id);
    for (const c of ctrList) {
      const state =
        c.state === api.ContainerState.CONTAINER_CREATED
          ? 'created'
          : c.state === api.ContainerState.CONTAINER_RUNNING
            ? 'running'
            : 'exited';
      const known = world.containers.get(c.id);
      if (known !== undefined) known.state = state;
      else world.containers.set(c.id, { id: c.id, podId: c.podSandboxId, state });
      setup.ids.add(c.id);
    }
  }

  /** Updates the run's state from an answer. */
  function learn(name: string, decoded: unknown, sent: Sent): void {
    if (sent.code !== status.OK || decoded === undefined) return;
    const r = rpc(name);
    const response = sent.response === undefined ? undefined : r.response.decode(sent.response);
    switch (name) {
      case 'RunPodSandbox': {
        const id = (response as api.RunPodSandboxResponse).podSandboxId;
        const config = (decoded as api.RunPodSandboxRequest).config ?? api.PodSandboxConfig.create();
        note(id, `made with pod uid ${JSON.stringify(config.metadata?.uid ?? '')}; config ${summarize(config).slice(0, 600)}`);
        note(config.metadata?.uid ?? '', `made pod ${id}`);
        world.pods.set(id, { id, config, ready: true });
        setup.ids.add(id);
        break;
      }
      case 'CreateContainer': {
        const id = (response as api.CreateContainerResponse).containerId;
        const request = decoded as api.CreateContainerRequest;
        const pod = world.find(world.pods, request.podSandboxId);
        world.containers.set(id, { id, podId: pod?.id ?? '', state: 'created' });
        const argv = [...(request.config?.command ?? []), ...(request.config?.args ?? [])];
        note(
          id,
          `made in pod ${pod?.id ?? request.podSandboxId}, command ${JSON.stringify(argv).slice(0, 200)}; config ${summarize(request.config).slice(0, 600)}`,
        );
        note(pod?.id ?? '', `container ${id} made in it`);
        const c = request.config;
        const signal = c?.stopSignal ?? 0;
        if (
          c?.command[2] === CONTAINER_SCRIPTS.exitsOnTerm &&
          c.args.length === 0 &&
          (signal === Signal.SIGNAL_RUNTIME_DEFAULT || signal === Signal.SIGNAL_SIGTERM)
        )
          world.exitsOnTerm.add(id);
        setup.ids.add(id);
        break;
      }
      case 'StartContainer': {
        const c = world.find(world.containers, (decoded as api.StartContainerRequest).containerId);
        if (c !== undefined) c.state = 'running';
        break;
      }
      case 'StopContainer': {
        const c = world.find(world.containers, (decoded as api.StopContainerRequest).containerId);
        if (c !== undefined) c.state = 'exited';
        break;
      }
      case 'RemoveContainer': {
        const c = world.find(world.containers, (decoded as api.RemoveContainerRequest).containerId);
        if (c !== undefined) world.dropContainer(c.id);
        break;
      }
      case 'StopPodSandbox': {
        const p = world.find(world.pods, (decoded as api.StopPodSandboxRequest).podSandboxId);
        if (p !== undefined) {
          p.ready = false;
          for (const c of world.containers.values()) if (c.podId === p.id) c.state = 'exited';
        }
        break;
      }
      case 'RemovePodSandbox': {
        const p = world.find(world.pods, (decoded as api.RemovePodSandboxRequest).podSandboxId);
        if (p !== undefined) world.dropPod(p.id);
        break;
      }
      case 'RemoveImage':
        world.busyboxMaybeGone = true;
        break;
      case 'PullImage':
        if ((decoded as api.PullImageRequest).image?.image === BUILTIN_BUSYBOX_IMAGE)
          world.busyboxId = (response as api.PullImageResponse).imageRef;
        break;
      default:
    }
  }

  /** The request of call `index`: its mode, RPC, bytes and what the server will decode them to. */
  function draw(g: Gen): { mode: Mode; r: Rpc; bytes: Buffer; decoded: unknown; note: string } {
    const mode = g.rng.weighted([
      [55, 'plausible'],
      [25, 'random'],
      [20, 'mutated'],
    ] as const);
    const r =
      mode === 'plausible'
        ? rpc(g.rng.weighted(RPCS.map((x) => [PLAUSIBLE[x.name]?.weight ?? 1, x.name] as const)))
        : g.rng.pick(RPCS);
    const plausible = (): { bytes: Buffer; decoded: unknown } => {
      const bytes = Buffer.from(r.request.encode(r.request.fromPartial(PLAUSIBLE[r.name]?.build(g) ?? {})).finish());
      const decoded = r.request.decode(bytes);
      const problems = hostProblems(r.name, decoded, bounds);
      if (problems.length > 0) throw new Error(`fuzz bug: a plausible ${r.name} could change the host: ${problems.join('; ')}`);
      return { bytes, decoded };
    };
    if (mode === 'plausible') return { mode, r, ...plausible(), note: '' };
    for (let tries = 0; tries < 30; tries++) {
      if (mode === 'random') {
        let bytes: Buffer;
        try {
          bytes = Buffer.from(r.request.encode(r.request.fromPartial(randomMessage(g, r.requestType))).finish());
        } catch (err) {
          throw new Error(`fuzz bug: a random ${r.name} cannot be encoded: ${(err as Error).message}`, { cause: err });
        }
        const decoded = r.request.decode(bytes);
        if (hostProblems(r.name, decoded, bounds).length === 0) return { mode, r, bytes, decoded, note: '' };
      } else {
        const base = plausible().bytes;
        const { bytes, ops } = mutate(g.rng, base);
        let decoded: unknown;
        try {
          decoded = r.request.decode(bytes);
        } catch {
          return { mode, r, bytes, decoded: undefined, note: ops.join(' ') };
        }
        if (hostProblems(r.name, decoded, bounds).length === 0) return { mode, r, bytes, decoded, note: ops.join(' ') };
      }
      result.redrawn += 1;
    }
    return { mode: 'plausible', r, ...plausible(), note: '' };
  }

  // What the caps are removing now: two workers never remove the same oldest pod at once.
  const capping = new Set<string>();
  async function makeRoom(index: string, name: string): Promise<void> {
    const [map, method, key] =
      name === 'RunPodSandbox'
        ? ([world.pods, 'RemovePodSandbox', 'podSandboxId'] as const)
        : name === 'CreateContainer'
          ? ([world.containers, 'RemoveContainer', 'containerId'] as const)
          : [undefined, '', ''];
    const max = name === 'RunPodSandbox' ? setup.maxPods : setup.maxContainers;
    if (map === undefined || map.size - capping.size < max) return;
    const oldest = [...map.keys()].find((id) => !capping.has(id));
    if (oldest === undefined) return;
    capping.add(oldest);
    try {
      await upkeep(`${index}.cap`, method, { [key]: oldest });
    } finally {
      capping.delete(oldest);
    }
  }

  let next = 0;
  let failure: unknown;
  const worker = async (): Promise<void> => {
    while (next < setup.calls && failure === undefined) {
      const i = next++;
      if (i % 100 === 0) {
        await resync(String(i));
        setup.progress?.(
          `${i}/${setup.calls} calls, ${world.pods.size} pods, ${world.containers.size} containers, ` +
            `${result.internal.length} INTERNAL/UNKNOWN, ${Math.round((Date.now() - started) / 1000)} s`,
        );
      }
      if (world.busyboxMaybeGone) {
        world.busyboxMaybeGone = false;
        await upkeep(`${i}.pull`, 'PullImage', { image: { image: BUILTIN_BUSYBOX_IMAGE } });
      }
      const g: Gen = { rng: Rng.forCall(setup.seed, i), world, setup, sysctls };
      const { mode, r, bytes, decoded, note: ops } = draw(g);
      if (decoded !== undefined) await makeRoom(String(i), r.name);
      if (r.name === 'RunPodSandbox' && decoded !== undefined) {
        const linux = (decoded as api.RunPodSandboxRequest).config;
        if (linux?.metadata !== undefined) setup.podUids.add(linux.metadata.uid);
        const parent = linux?.linux?.cgroupParent ?? '';
        if (parent !== '' && !parent.includes('\0'))
          setup.cgroupParents.add(posix.normalize(`/${parent}`).replace(/(.)\/$/, '$1'));
      }
      const sent = await send(ops === '' ? String(i) : `${i} (${ops})`, mode, r, bytes, decoded);
      learn(r.name, decoded, sent);
      // The kubelet starts what it creates: most plausible containers are started at once.
      if (mode === 'plausible' && r.name === 'CreateContainer' && sent.response !== undefined && g.rng.chance(0.7)) {
        const { containerId } = r.response.decode(sent.response) as api.CreateContainerResponse;
        await upkeep(`${i}.start`, 'StartContainer', { containerId }, 'plausible');
      }
    }
  };
  // A bug of the fuzz itself stops every worker before it is thrown: never leave one running.
  const guarded = (): Promise<void> =>
    worker().catch((err: unknown) => {
      failure ??= err;
    });
  await upkeep('start', 'PullImage', { image: { image: BUILTIN_BUSYBOX_IMAGE } });
  await Promise.all(Array.from({ length: Math.max(1, setup.concurrency) }, guarded));
  if (failure !== undefined) {
    events.cancel();
    client.close();
    throw failure instanceof Error ? failure : new Error('the fuzz failed', { cause: failure });
  }

  // The end of the run: every pod it can list goes, then any container left over.
  await resync('end');
  for (const id of [...world.pods.keys()]) await upkeep('end', 'RemovePodSandbox', { podSandboxId: id });
  await resync('end');
  for (const id of [...world.containers.keys()]) await upkeep('end', 'RemoveContainer', { containerId: id });
  events.cancel();
  client.close();
  result.ms = Date.now() - started;
  return result;
}

function rpcPath(name: string): string {
  const m = schema.methods.get(name);
  if (m === undefined) throw new Error(`no RPC ${name}`);
  return m.path;
}

/** Answers grouped by method, code and message shape (ids and numbers blanked), every index listed. */
export function formatAnswers(title: string, answers: readonly Answer[], examples = 3): string {
  if (answers.length === 0) return `${title}: none`;
  const shape = (a: Answer): string =>
    `${a.method} ${status[a.code]} ${a.message
      .slice(0, 400)
      .replace(/"(?:[^"\\]|\\.)*"/g, '"…"')
      .replace(/[0-9a-f]{12,64}/g, '<id>')
      .replace(/\d+/g, 'N')}`;
  const groups = new Map<string, Answer[]>();
  for (const a of answers) groups.set(shape(a), [...(groups.get(shape(a)) ?? []), a]);
  const lines = [`${title}: ${answers.length} answers in ${groups.size} groups`];
  for (const [key, list] of [...groups].sort((a, b) => b[1].length - a[1].length)) {
    lines.push(`\n  ${list.length} × ${key}`);
    for (const a of list.slice(0, examples))
      lines.push(`    #${a.index} [${a.mode}] ${a.message.slice(0, 300)}\n      sent: ${a.payload.slice(0, 600)}`);
    lines.push(`    seed indices: ${list.map((a) => a.index.split(' ')[0]).join(', ')}`);
  }
  return lines.join('\n');
}

/**
 * What the run did with the ids and pod uids a leak's description names (as whole words, or as
 * `pod<uid>` path parts), and with the pods and containers those made: for the leak report.
 */
export function historyOf(result: FuzzResult, text: string): string[] {
  const words = new Set(text.split(/[\s/:[\],(){}"';]+/).flatMap((w) => (w.startsWith('pod') ? [w, w.slice(3)] : [w])));
  const keys = [...result.history.keys()].filter((key) => key.length >= 8 && words.has(key));
  for (const key of [...keys]) {
    for (const line of result.history.get(key) ?? []) {
      const made = /^(?:made pod|container) ([0-9a-f]{64})/.exec(line)?.[1];
      if (made !== undefined && !keys.includes(made)) keys.push(made);
    }
  }
  const lines: string[] = [];
  for (const key of keys) {
    const entries = result.history.get(key) ?? [];
    lines.push(`  ${key}:`, ...entries.slice(0, 40).map((e) => `    ${e}`));
    if (entries.length > 40) lines.push(`    … ${entries.length - 40} more`);
  }
  return lines;
}
