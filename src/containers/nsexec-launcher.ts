import { mkdir, realpath, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Duplex, Readable } from 'node:stream';
import { FailedPreconditionError, UnavailableError } from '../errors.js';
import { MountPropagation, NamespaceMode, type ContainerConfig } from '../generated/api.js';
import { startChild } from '../os/child.js';
import type { LaunchRequest, LauncherPort, ProcessExit, RunningProcess } from './ports.js';
import { capabilityMask, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, resolveUser, seccompProfile } from './security-context.js';

/**
 * The launcher: native/nsexec.c does the privileged steps in order (cgroup placement, namespaces,
 * mounts, pivot_root, user, capabilities, no_new_privs, seccomp, exec); this module decides the
 * arguments from the CRI config. The process waits on fd 3 until icetray has placed it in its
 * cgroup, and reports a failure before exec on fd 4 (its end of file means it exec'd).
 */
const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGUSR1: 10, SIGUSR2: 12, SIGTERM: 15 };

function exitOf(code: number | null, signal: NodeJS.Signals | null): ProcessExit {
  if (signal !== null) return { exitCode: 128 + (SIGNALS[signal] ?? 0), signal };
  return { exitCode: code ?? 255, signal: undefined };
}

/** The namespace arguments, from the container's namespace_options (CRI: POD, CONTAINER, NODE, TARGET). */
function namespaceArgs(request: LaunchRequest): string[] {
  const options = request.config.linux?.securityContext?.namespaceOptions;
  const pod = request.podNamespaces;
  const args: string[] = [];
  const join = (kind: string, path: string | undefined): void => {
    if (path !== undefined) args.push('--ns', `${kind}=${path}`);
  };
  if (options?.network !== NamespaceMode.NODE) {
    join('net', pod.net);
    join('uts', pod.uts);
  }
  if (options?.ipc !== NamespaceMode.NODE) join('ipc', pod.ipc);
  const pid = options?.pid ?? NamespaceMode.POD;
  if (pid === NamespaceMode.TARGET) join('pid', `/proc/${String(request.targetPid)}/ns/pid`);
  else if (pid === NamespaceMode.POD && pod.pid !== undefined) join('pid', pod.pid);
  else if (pid !== NamespaceMode.NODE) args.push('--new-pid');
  return args;
}

async function mountArgs(request: LaunchRequest): Promise<string[]> {
  const context = request.config.linux?.securityContext;
  const args = ['--bind', `${request.podFiles.hostname}:/etc/hostname`, '--bind', `${request.podFiles.hosts}:/etc/hosts`];
  args.push('--bind', `${request.podFiles.resolvConf}:/etc/resolv.conf${context?.readonlyRootfs === true ? ':ro' : ''}`);
  for (const mount of request.config.mounts) {
    // containerd creates a missing host path as a folder; a symlink is followed to its target.
    await mkdir(mount.hostPath, { recursive: true }).catch(() => undefined);
    const source = await realpath(mount.hostPath);
    const flags = [
      mount.readonly ? 'ro' : '',
      mount.propagation === MountPropagation.PROPAGATION_HOST_TO_CONTAINER ? 'rslave' : '',
    ].filter(Boolean);
    args.push('--bind', [source, mount.containerPath, ...flags].join(':'));
  }
  const privileged = context?.privileged === true;
  const masked = privileged ? [] : (context?.maskedPaths.length ?? 0) > 0 ? (context?.maskedPaths ?? []) : DEFAULT_MASKED_PATHS;
  const readonly = privileged
    ? []
    : (context?.readonlyPaths.length ?? 0) > 0
      ? (context?.readonlyPaths ?? [])
      : DEFAULT_READONLY_PATHS;
  for (const path of masked) args.push('--mask', path);
  for (const path of readonly) args.push('--readonly', path);
  if (privileged) args.push('--privileged');
  if (context?.readonlyRootfs === true) args.push('--readonly-rootfs');
  if (request.podShm !== undefined && request.config.linux?.securityContext?.namespaceOptions?.ipc !== NamespaceMode.NODE)
    args.push('--shm', request.podShm);
  else if (request.config.linux?.securityContext?.namespaceOptions?.ipc === NamespaceMode.NODE) args.push('--shm', '/dev/shm');
  return args;
}

/** User, capabilities, no_new_privs and seccomp: the same for the container and its execs. */
async function processArgs(config: ContainerConfig, rootfs: string, imageUser: string, stateDir: string): Promise<string[]> {
  const context = config.linux?.securityContext;
  const user = await resolveUser(rootfs, context, imageUser);
  const args = ['--uid', String(user.uid), '--gid', String(user.gid), ...user.groups.flatMap((g) => ['--group', String(g)])];
  args.push('--caps', capabilityMask(context).toString(16));
  if (context?.noNewPrivs === true) args.push('--no-new-privs');
  const profile = await seccompProfile(context);
  if (profile !== undefined) {
    const file = join(stateDir, 'seccomp.profile');
    await writeFile(file, profile);
    args.push('--seccomp', file);
  }
  const oom = config.linux?.resources?.oomScoreAdj ?? 0n;
  if (oom !== 0n) args.push('--oom-score-adj', String(oom));
  return args;
}

/** Starts nsexec, places it in its cgroup, lets it go, and waits until it exec'd or failed. */
async function launch(
  nsexec: string,
  args: string[],
  env: string[],
  stdin: boolean,
  placeInCgroup: (pid: number) => Promise<void>,
): Promise<RunningProcess> {
  const environment = Object.fromEntries(
    env.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]),
  );
  const child = startChild(nsexec, ['--sync-fd', '3', '--error-fd', '4', ...args], { env: environment, stdin, extraPipes: 2 });
  const sync = child.stdio[3] as Duplex;
  const errors = child.stdio[4] as Readable;
  const exited = new Promise<ProcessExit>((resolve) => child.once('exit', (code, signal) => resolve(exitOf(code, signal))));
  if (child.pid === undefined) throw new UnavailableError(`failed to start ${nsexec}`);
  let report = '';
  errors.on('data', (chunk: Buffer) => (report += chunk.toString()));
  // nsexec answers the go byte with the pid of the container's process (its child after a fork
  // into a PID namespace, else itself) and closes the channel.
  let pidLine = '';
  const told = new Promise<void>((resolve) => {
    sync.on('data', (chunk: Buffer) => (pidLine += chunk.toString()));
    sync.once('end', () => resolve());
    sync.once('close', () => resolve());
  });
  const reported = new Promise<void>((resolve) => errors.once('close', () => resolve()));
  try {
    await placeInCgroup(child.pid);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  sync.write('g');
  await Promise.all([reported, told]);
  sync.destroy();
  if (report !== '') {
    await exited;
    throw new FailedPreconditionError(`failed to start the container process: ${report}`);
  }
  return {
    pid: child.pid,
    namespacePid: Number.parseInt(pidLine, 10) || child.pid,
    stdout: child.stdout as Readable,
    stderr: child.stderr as Readable,
    stdin: child.stdin ?? undefined,
    exited,
  };
}

export function nsexecLauncher(nsexec: string): LauncherPort {
  return {
    async start(request) {
      const args = [...namespaceArgs(request), '--rootfs', request.rootfs, ...(await mountArgs(request))];
      args.push(...(await processArgs(request.config, request.rootfs, request.imageUser, request.stateDir)));
      args.push('--cwd', request.cwd, '--', ...request.argv);
      return launch(nsexec, args, request.env, request.config.stdin, (pid) => request.placeInCgroup(pid));
    },

    async exec(request) {
      const args = [
        '--join',
        String(request.containerPid),
        ...(await processArgs(request.config, request.rootfs, request.imageUser, request.stateDir)),
      ];
      args.push('--cwd', request.cwd, '--', ...request.argv);
      return launch(nsexec, args, request.env, true, (pid) => request.placeInCgroup(pid));
    },
  };
}
