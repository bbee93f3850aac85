import { readFile } from 'node:fs/promises';
import { InvalidArgumentError } from '../errors.js';
import { SecurityProfile_ProfileType, type LinuxContainerSecurityContext, type SecurityProfile } from '../generated/api.js';

/**
 * A container's seccomp profile: which one the security context asks for, and the text nsexec
 * applies (native/nsexec.c load_seccomp).
 */

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

/**
 * icetray's RuntimeDefault: everything is allowed except calls that reach past the container —
 * the kernel's modules, keyrings and clocks, rebooting, swapping, tracing other processes'
 * memory, BPF and perf, and handles to the host's files. A small list with one reason, instead
 * of Docker's long allowlist.
 */
const RUNTIME_DEFAULT_DENIED = [
  'acct', 'add_key', 'bpf', 'clock_adjtime', 'clock_settime', 'create_module', 'delete_module', 'finit_module',
  'get_kernel_syms', 'init_module', 'ioperm', 'iopl', 'kcmp', 'kexec_file_load', 'kexec_load', 'keyctl',
  'lookup_dcookie', 'move_pages', 'name_to_handle_at', 'nfsservctl', 'open_by_handle_at', 'perf_event_open',
  'process_vm_readv', 'process_vm_writev', 'query_module', 'quotactl', 'reboot', 'request_key', 'settimeofday',
  'stime', 'swapoff', 'swapon', 'syslog', 'uselib', 'userfaultfd', 'ustat', 'vhangup', 'adjtimex',
]; // prettier-ignore

const ACTIONS: Record<string, string> = {
  SCMP_ACT_ALLOW: 'allow',
  SCMP_ACT_ERRNO: 'errno',
  SCMP_ACT_KILL: 'kill',
  SCMP_ACT_KILL_PROCESS: 'kill',
  SCMP_ACT_KILL_THREAD: 'kill',
  SCMP_ACT_LOG: 'log',
  SCMP_ACT_TRAP: 'trap',
};

interface OciSeccomp {
  defaultAction?: string;
  defaultErrnoRet?: number;
  syscalls?: { names?: string[]; name?: string; action?: string; errnoRet?: number; args?: unknown[] }[];
}

function action(name: string | undefined, errno: number | undefined, where: string): string {
  const mapped = ACTIONS[name ?? ''];
  if (mapped === undefined) throw new InvalidArgumentError(`seccomp profile ${where}: action "${String(name)}" is not supported`);
  return mapped === 'errno' ? `errno ${errno ?? 1}` : mapped;
}

/**
 * The profile nsexec applies, in its line format ("default ACTION", then "NAME ACTION"), or
 * undefined for none. Localhost profiles are the OCI/Docker JSON format; rules with argument
 * conditions are refused rather than applied loosely.
 */
export async function seccompProfile(context: LinuxContainerSecurityContext | undefined): Promise<string | undefined> {
  const choice = seccompChoice(context);
  if (choice.kind === 'none') return undefined;
  if (choice.kind === 'default')
    return ['default allow', ...RUNTIME_DEFAULT_DENIED.map((name) => `${name} errno 1`)].join('\n') + '\n';
  let profile: OciSeccomp;
  try {
    profile = JSON.parse(await readFile(choice.path, 'utf8')) as OciSeccomp;
  } catch (err) {
    throw new InvalidArgumentError(`seccomp profile ${choice.path} cannot be read: ${(err as Error).message}`, { cause: err });
  }
  const lines = [`default ${action(profile.defaultAction, profile.defaultErrnoRet, choice.path)}`];
  for (const rule of profile.syscalls ?? []) {
    if ((rule.args ?? []).length > 0)
      throw new InvalidArgumentError(`seccomp profile ${choice.path}: rules with argument conditions are not supported`);
    for (const name of rule.names ?? (rule.name === undefined ? [] : [rule.name])) {
      lines.push(`${name} ${action(rule.action, rule.errnoRet, choice.path)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Rejects a seccomp choice that cannot be honoured, before anything is made (CreateContainer). */
export function validateSeccomp(context: LinuxContainerSecurityContext | undefined): void {
  seccompChoice(context);
}
