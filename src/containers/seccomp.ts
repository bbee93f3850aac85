import { readFile } from 'node:fs/promises';
import { arch, release } from 'node:os';
import { InvalidArgumentError, messageOf } from '../errors.js';
import { SecurityProfile_ProfileType, type LinuxContainerSecurityContext, type SecurityProfile } from '../generated/api.js';
import { holdsCapability, runtimeDefaultProfile } from './seccomp-default.js';
import { capabilityMask } from './security-context.js';

/**
 * A container's seccomp profile: which one the security context asks for (none, RuntimeDefault
 * or a Localhost file), as one structure, and the text nsexec applies (native/nsexec.c,
 * load_seccomp, documents the format). RuntimeDefault's data is in seccomp-default.ts.
 */

/** The comparison of one argument (libseccomp's SCMP_CMP_*); masked_eq is (arg & value) == valueTwo. */
export interface SeccompCondition {
  /** The argument, 0 to 5. */
  index: number;
  op: 'ne' | 'lt' | 'le' | 'eq' | 'ge' | 'gt' | 'masked_eq';
  value: bigint;
  valueTwo: bigint;
}

/** Calls whose conditions all hold get `action`, in nsexec's words: allow, errno:N, kill_process, kill_thread, trap, trace:N, log. */
export interface SeccompRule {
  names: readonly string[];
  action: string;
  conditions: readonly SeccompCondition[];
}

export interface SeccompProfile {
  /** What a call no rule matches gets. */
  defaultAction: string;
  /** libseccomp's names of the architectures filtered besides the native one (x86, x32, …). */
  architectures: readonly string[];
  /** Filter attributes: log, spec_allow. */
  flags: readonly string[];
  rules: readonly SeccompRule[];
}

/** The seccomp choice: privileged and Unconfined get none; RuntimeDefault icetray's; Localhost a file. */
type SeccompChoice = { kind: 'none' } | { kind: 'default' } | { kind: 'localhost'; path: string };

function seccompChoice(context: LinuxContainerSecurityContext | undefined): SeccompChoice {
  if (context?.privileged === true) return { kind: 'none' };
  const profile: SecurityProfile | undefined = context?.seccomp;
  if (profile !== undefined) {
    if (profile.profileType === SecurityProfile_ProfileType.Unconfined) return { kind: 'none' };
    if (profile.profileType === SecurityProfile_ProfileType.RuntimeDefault) return { kind: 'default' };
    if (profile.profileType === SecurityProfile_ProfileType.Localhost) return { kind: 'localhost', path: profile.localhostRef };
    throw new InvalidArgumentError(`unknown seccomp profile type ${String(profile.profileType)}`);
  }
  // The deprecated string field, which older kubelets still send: "runtime/default",
  // "unconfined", "localhost/<path>", or "" (unconfined).
  // eslint-disable-next-line @typescript-eslint/no-deprecated
  const path = context?.seccompProfilePath ?? '';
  if (path === '' || path === 'unconfined') return { kind: 'none' };
  if (path === 'runtime/default' || path === 'docker/default') return { kind: 'default' };
  if (path.startsWith('localhost/')) return { kind: 'localhost', path: path.slice('localhost/'.length) };
  throw new InvalidArgumentError(`seccomp profile "${path}" is not one of runtime/default, unconfined, localhost/<path>`);
}

// ---- Localhost profiles: the OCI runtime-spec's LinuxSeccomp, as containerd reads them, plus
// the conditional rules (includes/excludes, archMap) of Docker's profile format. ----

interface OciArg {
  index?: number;
  value?: number;
  valueTwo?: number;
  op?: string;
}

interface DockerFilter {
  caps?: string[];
  arches?: string[];
  minKernel?: string;
}

interface OciSyscall {
  names?: string[];
  name?: string;
  action?: string;
  errnoRet?: number;
  args?: OciArg[] | null;
  includes?: DockerFilter;
  excludes?: DockerFilter;
}

interface OciSeccomp {
  defaultAction?: string;
  defaultErrnoRet?: number;
  architectures?: string[] | null;
  archMap?: { architecture?: string; subArchitectures?: string[] | null }[] | null;
  flags?: string[] | null;
  listenerPath?: string;
  syscalls?: OciSyscall[] | null;
}

const EPERM = 1;

/** OCI action → nsexec's word; `number` is errnoRet (ERRNO's errno, TRACE's message). */
function ociAction(name: string | undefined, number: number | undefined, where: string): string {
  const value = number ?? EPERM;
  if (!Number.isInteger(value) || value < 0 || value > 0xffff)
    throw new InvalidArgumentError(`${where}: errnoRet ${String(number)} is not an errno`);
  switch (name ?? '') {
    case 'SCMP_ACT_ALLOW':
      return 'allow';
    case 'SCMP_ACT_ERRNO':
      return `errno:${value}`;
    case 'SCMP_ACT_TRACE':
      return `trace:${value}`;
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD':
      return 'kill_thread';
    case 'SCMP_ACT_KILL_PROCESS':
      return 'kill_process';
    case 'SCMP_ACT_TRAP':
      return 'trap';
    case 'SCMP_ACT_LOG':
      return 'log';
    case 'SCMP_ACT_NOTIFY':
      throw new InvalidArgumentError(`${where}: action SCMP_ACT_NOTIFY is not supported (icetray has no seccomp agent)`);
    default:
      throw new InvalidArgumentError(`${where}: action "${String(name)}" is not a seccomp action`);
  }
}

const OPERATORS: Record<string, SeccompCondition['op']> = {
  SCMP_CMP_NE: 'ne',
  SCMP_CMP_LT: 'lt',
  SCMP_CMP_LE: 'le',
  SCMP_CMP_EQ: 'eq',
  SCMP_CMP_GE: 'ge',
  SCMP_CMP_GT: 'gt',
  SCMP_CMP_MASKED_EQ: 'masked_eq',
};

/** The OCI architecture names and libseccomp's, for those the installed libseccomp (2.5) knows. */
const ARCHITECTURES: Record<string, string> = {
  SCMP_ARCH_X86: 'x86', SCMP_ARCH_X86_64: 'x86_64', SCMP_ARCH_X32: 'x32', SCMP_ARCH_ARM: 'arm',
  SCMP_ARCH_AARCH64: 'aarch64', SCMP_ARCH_MIPS: 'mips', SCMP_ARCH_MIPS64: 'mips64', SCMP_ARCH_MIPS64N32: 'mips64n32',
  SCMP_ARCH_MIPSEL: 'mipsel', SCMP_ARCH_MIPSEL64: 'mipsel64', SCMP_ARCH_MIPSEL64N32: 'mipsel64n32', SCMP_ARCH_PPC: 'ppc',
  SCMP_ARCH_PPC64: 'ppc64', SCMP_ARCH_PPC64LE: 'ppc64le', SCMP_ARCH_S390: 's390', SCMP_ARCH_S390X: 's390x',
  SCMP_ARCH_PARISC: 'parisc', SCMP_ARCH_PARISC64: 'parisc64', SCMP_ARCH_RISCV64: 'riscv64',
}; // prettier-ignore

/** This machine's architecture: OCI's name (for archMap) and Go's (Docker's includes.arches say amd64). */
const NATIVE = {
  x64: { oci: 'SCMP_ARCH_X86_64', go: 'amd64' },
  arm64: { oci: 'SCMP_ARCH_AARCH64', go: 'arm64' },
}[arch()] ?? { oci: '', go: arch() };

const FLAGS: Record<string, string | undefined> = {
  SECCOMP_FILTER_FLAG_LOG: 'log',
  SECCOMP_FILTER_FLAG_SPEC_ALLOW: 'spec_allow',
  // nsexec is single-threaded when it loads the filter: there are no threads to synchronise.
  SECCOMP_FILTER_FLAG_TSYNC: undefined,
};

function architecture(name: string, where: string): string {
  const mapped = ARCHITECTURES[name];
  if (mapped === undefined) throw new InvalidArgumentError(`${where}: architecture "${name}" is not supported`);
  return mapped;
}

function architecturesOf(profile: OciSeccomp, where: string): string[] {
  const listed = profile.architectures ?? [];
  const map = profile.archMap ?? [];
  if (listed.length > 0 && map.length > 0)
    throw new InvalidArgumentError(`${where}: architectures and archMap must not both be given`);
  if (listed.length > 0) return listed.map((name) => architecture(name, `${where}: architectures`));
  // Docker's archMap: this machine's entry and its sub-architectures.
  const entry = map.find((item) => item.architecture === NATIVE.oci);
  if (entry === undefined) return [];
  return [NATIVE.oci, ...(entry.subArchitectures ?? [])].map((name) => architecture(name, `${where}: archMap`));
}

/** An argument value: JSON numbers are exact only up to 2^53, and a rounded value would filter something else. */
function argValue(value: number | undefined, where: string): bigint {
  const number = value ?? 0;
  if (!Number.isSafeInteger(number) || number < 0)
    throw new InvalidArgumentError(`${where}: ${String(value)} is not an exact unsigned integer`);
  return BigInt(number);
}

function condition(arg: OciArg, where: string): SeccompCondition {
  const index = arg.index ?? 0;
  if (!Number.isInteger(index) || index < 0 || index > 5)
    throw new InvalidArgumentError(`${where}: index ${String(arg.index)} must be 0 to 5`);
  const op = OPERATORS[arg.op ?? ''];
  if (op === undefined) throw new InvalidArgumentError(`${where}: operator "${String(arg.op)}" is not a seccomp operator`);
  return { index, op, value: argValue(arg.value, `${where}.value`), valueTwo: argValue(arg.valueTwo, `${where}.valueTwo`) };
}

/** "5.8" ≤ this kernel? (Docker's minKernel) */
function kernelAtLeast(version: string, where: string): boolean {
  const wanted = /^(\d+)\.(\d+)/.exec(version);
  const running = /^(\d+)\.(\d+)/.exec(release());
  if (wanted === null) throw new InvalidArgumentError(`${where}: minKernel "${version}" is not a kernel version`);
  if (running === null) return false;
  const [wantMajor, wantMinor] = [Number(wanted[1]), Number(wanted[2])];
  const [major, minor] = [Number(running[1]), Number(running[2])];
  return major > wantMajor || (major === wantMajor && minor >= wantMinor);
}

/** Docker's includes/excludes: whether a rule applies to this container on this machine. */
function ruleApplies(rule: OciSyscall, capabilities: bigint, where: string): boolean {
  const has = (cap: string): boolean => holdsCapability(capabilities, cap);
  const { includes = {}, excludes = {} } = rule;
  if ((includes.caps ?? []).some((cap) => !has(cap))) return false;
  if ((includes.arches ?? []).length > 0 && !(includes.arches ?? []).includes(NATIVE.go)) return false;
  if (includes.minKernel !== undefined && includes.minKernel !== '' && !kernelAtLeast(includes.minKernel, where)) return false;
  if ((excludes.caps ?? []).some(has)) return false;
  if ((excludes.arches ?? []).includes(NATIVE.go)) return false;
  return true;
}

/** A syscall name goes into nsexec's line format as it is: only the characters names have. */
function syscallName(name: string, where: string): string {
  if (!/^[a-z0-9_]{1,64}$/.test(name)) throw new InvalidArgumentError(`${where}: "${name}" is not a syscall name`);
  return name;
}

/** A Localhost profile, read and checked: anything icetray cannot apply exactly is an error naming the field. */
async function localhostProfile(path: string, capabilities: bigint): Promise<SeccompProfile> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new InvalidArgumentError(`seccomp profile ${path} cannot be read: ${messageOf(err)}`, { cause: err });
  }
  const where = `seccomp profile ${path}`;
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new InvalidArgumentError(`${where}: not a JSON object`);
  const profile = parsed as OciSeccomp;
  if ((profile.listenerPath ?? '') !== '')
    throw new InvalidArgumentError(`${where}: listenerPath is not supported (icetray has no seccomp agent)`);
  const flags = (profile.flags ?? []).flatMap((flag) => {
    if (!(flag in FLAGS)) throw new InvalidArgumentError(`${where}: flag "${flag}" is not supported`);
    const mapped = FLAGS[flag];
    return mapped === undefined ? [] : [mapped];
  });
  const rules: SeccompRule[] = [];
  for (const [i, rule] of (profile.syscalls ?? []).entries()) {
    const at = `${where}: syscalls[${i}]`;
    const names = (rule.names ?? (rule.name === undefined ? [] : [rule.name])).map((name) => syscallName(name, `${at}.names`));
    const action = ociAction(rule.action, rule.errnoRet, `${at}.action`);
    const conditions = (rule.args ?? []).map((arg, j) => condition(arg, `${at}.args[${j}]`));
    if (!ruleApplies(rule, capabilities, at)) continue;
    // libseccomp cannot test one argument twice in a rule: runc then makes one rule per
    // condition (any of them lets the call pass), and so does icetray, for the same result.
    const indexes = conditions.map((c) => c.index);
    if (new Set(indexes).size === indexes.length) rules.push({ names, action, conditions });
    else for (const single of conditions) rules.push({ names, action, conditions: [single] });
  }
  return {
    defaultAction: ociAction(profile.defaultAction, profile.defaultErrnoRet, `${where}: defaultAction`),
    architectures: architecturesOf(profile, where),
    flags,
    rules,
  };
}

/** The profile in nsexec's line format (see native/nsexec.c, load_seccomp). */
export function renderProfile(profile: SeccompProfile): string {
  const lines = [`default ${profile.defaultAction}`];
  for (const name of profile.architectures) lines.push(`arch ${name}`);
  for (const flag of profile.flags) lines.push(`flag ${flag}`);
  for (const rule of profile.rules) {
    const conditions = rule.conditions.map((c) => ` ${c.index}:${c.op}:${c.value}:${c.valueTwo}`).join('');
    for (const name of rule.names) lines.push(`${name} ${rule.action}${conditions}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The profile a container (and each of its execs) gets, or undefined for none. RuntimeDefault
 * depends on the capabilities, as containerd's does: CAP_SYS_ADMIN brings back mount, unshare
 * and namespace flags, CAP_SYS_TIME the clocks, and so on.
 */
export async function seccompProfile(context: LinuxContainerSecurityContext | undefined): Promise<SeccompProfile | undefined> {
  const choice = seccompChoice(context);
  if (choice.kind === 'none') return undefined;
  const capabilities = capabilityMask(context);
  if (choice.kind === 'default') return runtimeDefaultProfile(capabilities);
  return localhostProfile(choice.path, capabilities);
}

/** Rejects a seccomp choice that cannot be honoured, before anything is made (CreateContainer). */
export function validateSeccomp(context: LinuxContainerSecurityContext | undefined): void {
  seccompChoice(context);
}
