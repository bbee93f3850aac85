import { readFileSync } from 'node:fs';
import { mkdir, readFile, realpath, rename, writeFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable, type Duplex } from 'node:stream';
import { FailedPreconditionError, InvalidArgumentError, messageOf, ResourceExhaustedError, UnavailableError } from '../errors.js';
import { MountPropagation, NamespaceMode, type ContainerConfig } from '../generated/api.js';
import { startChild, type ChildProcess } from '../os/child.js';
import { mountHolding } from '../os/mount.js';
import { closeChildEnds, closePipes, makePipes, reopenPipe } from '../os/pipe.js';
import { processGone, processStartTime } from '../os/proc-stat.js';
import type { DeviceNode } from './devices.js';
import type { LaunchRequest, LauncherPort, ProcessExit, RunningProcess } from './ports.js';
import { renderProfile, seccompProfile } from './seccomp.js';
import { capabilityMask, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, type ProcessUser } from './security-context.js';

/**
 * The launcher: native/nsexec.c does the privileged steps in order (cgroup placement, namespaces,
 * mounts, pivot_root, user, capabilities, no_new_privs, seccomp, exec); this module decides the
 * arguments from the CRI config. The process waits on fd 3 until icetray has placed it in its
 * cgroup, then answers on the same channel with one line, "PID OOM_SCORE_ADJ\n": the pid of
 * the container's process and the oom_score_adj in effect for it. It reports a failure before
 * exec on fd 4 (its end of file means it exec'd); with a tty, fd 5 carries the terminal's
 * control lines (its size, the end of input). Its stdin, stdout and stderr are kernel pipes.
 */
/** How a process ended, as shells and the kubelet count it: its code, or 128 + the signal's number. */
function exitOf(code: number | null, signal: NodeJS.Signals | null): ProcessExit {
  if (signal !== null) return { exitCode: 128 + osConstants.signals[signal], signal };
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

/** nsexec's bind flag per CRI propagation; private is its default. */
const PROPAGATION_FLAGS: Partial<Record<MountPropagation, string>> = {
  [MountPropagation.PROPAGATION_HOST_TO_CONTAINER]: 'rslave',
  [MountPropagation.PROPAGATION_BIDIRECTIONAL]: 'rshared',
};

/**
 * Propagation can only flow where the host's mount lets it: bidirectional needs the source on a
 * shared mount, host-to-container on a shared or slave one (containerd refuses the same way,
 * rather than giving a mount that silently does not propagate).
 */
async function checkPropagation(source: string, propagation: MountPropagation): Promise<void> {
  if (
    propagation !== MountPropagation.PROPAGATION_BIDIRECTIONAL &&
    propagation !== MountPropagation.PROPAGATION_HOST_TO_CONTAINER
  )
    return;
  const holder = await mountHolding(source);
  if (propagation === MountPropagation.PROPAGATION_BIDIRECTIONAL && !holder.shared)
    throw new FailedPreconditionError(
      `path "${source}" is mounted on "${holder.mountPoint}" but it is not a shared mount (bidirectional propagation needs one: mount --make-rshared)`,
    );
  if (!holder.shared && !holder.slave)
    throw new FailedPreconditionError(
      `path "${source}" is mounted on "${holder.mountPoint}" but it is not a shared or slave mount (host-to-container propagation needs one)`,
    );
}

/** nsexec's arguments for one bind: the paths whole (they may hold colons), then its flags. */
function bindArgs(source: string, target: string, flags: readonly string[]): string[] {
  return ['--bind', source, '--bind-to', target, ...(flags.length > 0 ? ['--bind-flags', flags.join(',')] : [])];
}

async function mountArgs(request: LaunchRequest): Promise<string[]> {
  const context = request.config.linux?.securityContext;
  const args = [
    ...bindArgs(request.podFiles.hostname, '/etc/hostname', []),
    ...bindArgs(request.podFiles.hosts, '/etc/hosts', []),
    ...bindArgs(request.podFiles.resolvConf, '/etc/resolv.conf', context?.readonlyRootfs === true ? ['ro'] : []),
  ];
  for (const mount of request.config.mounts) {
    // containerd creates a missing host path as a folder; a symlink is followed to its target.
    await mkdir(mount.hostPath, { recursive: true }).catch(() => undefined);
    // A path that names nothing to mount (a magic link such as /proc/self/ns/net) is the config's fault.
    const source = await realpath(mount.hostPath).catch((err: unknown) => {
      throw new InvalidArgumentError(`mount host_path ${JSON.stringify(mount.hostPath)} cannot be used: ${messageOf(err)}`, {
        cause: err,
      });
    });
    await checkPropagation(source, mount.propagation);
    const readonly = mount.recursiveReadOnly ? 'rro' : mount.readonly ? 'ro' : '';
    const flags = [readonly, ...mount.mountOptions, PROPAGATION_FLAGS[mount.propagation] ?? ''].filter(Boolean);
    args.push(...bindArgs(source, mount.containerPath, flags));
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

/**
 * The device nodes, as nsexec's --device TYPE:MAJOR:MINOR:MODE:UID:GID:PATH (mode in octal; the
 * path last, so that it may hold colons). `devices` is undefined only from a caller that does
 * not fill LaunchRequest.devices yet: no extra nodes then.
 */
function deviceArgs(devices: readonly DeviceNode[] | undefined): string[] {
  return (devices ?? []).flatMap((d) => [
    '--device',
    [d.type, d.major, d.minor, d.fileMode.toString(8), d.uid, d.gid, d.path].join(':'),
  ]);
}

/** The kernel's limit on supplementary groups (NGROUPS_MAX), read once. */
const NGROUPS_MAX = Number(readFileSync('/proc/sys/kernel/ngroups_max', 'utf8').trim()) || 65536;

/** User, capabilities, no_new_privs, seccomp and oom_score_adj: the same for the container and its execs. */
async function processArgs(config: ContainerConfig, user: ProcessUser, stateDir: string): Promise<string[]> {
  if (user.groups.length > NGROUPS_MAX)
    throw new InvalidArgumentError(
      `${user.groups.length} supplementary groups: the kernel allows at most ${NGROUPS_MAX} (NGROUPS_MAX)`,
    );
  const context = config.linux?.securityContext;
  const args = ['--uid', String(user.uid), '--gid', String(user.gid), ...user.groups.flatMap((g) => ['--group', String(g)])];
  args.push('--caps', capabilityMask(context).toString(16));
  if (context?.noNewPrivs === true) args.push('--no-new-privs');
  const profile = await seccompProfile(context);
  if (profile !== undefined) {
    // Written aside and renamed into place: an nsexec starting meanwhile (another exec) reads
    // the whole old file or the whole new one, never half of one.
    const file = join(stateDir, 'seccomp.profile');
    const partial = `${file}.${String(process.pid)}-${String(nextProfile++)}`;
    await writeFile(partial, renderProfile(profile), { mode: 0o600 });
    await rename(partial, file);
    args.push('--seccomp', file);
  }
  const oom = config.linux?.resources?.oomScoreAdj ?? 0n;
  if (oom !== 0n) args.push('--oom-score-adj', String(oom));
  return args;
}

let nextProfile = 0;

interface Stdio {
  /** Whether the process gets a stdin icetray can write to (else /dev/null). */
  stdin: boolean;
  /** Whether it runs on a pseudo-terminal (nsexec --tty; stdout then carries all output). */
  tty: boolean;
  /** Where the pipes are made: the container's own folder. */
  dir: string;
}

/**
 * A terminal's input: bytes go down the stdin pipe; its end is said on the control channel
 * ("eof": the monitor types ^D), because the pipe alone also closes when icetray goes away,
 * which must not end an interactive container.
 */
function terminalInput(pipe: Writable, terminal: Writable): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      pipe.write(chunk, callback);
    },
    final(callback) {
      terminal.write('eof\n');
      pipe.end(callback);
    },
    // Destroying the input (the container ended) closes the pipe under it too, or its fd stays open.
    destroy(err, callback) {
      pipe.destroy();
      callback(err);
    },
  });
}

/**
 * What a failed spawn means for the caller: a request too large or malformed is the client's
 * error (InvalidArgument), no descriptor or process left is ResourceExhausted; anything else
 * means nsexec cannot run here.
 */
function spawnFailure(err: unknown, nsexec: string): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'E2BIG') return new InvalidArgumentError('command and environment too large for exec (E2BIG)', { cause: err });
  if (code === 'ERR_INVALID_ARG_VALUE')
    return new InvalidArgumentError('command, environment and paths must not contain NUL bytes', { cause: err });
  if (code === 'EMFILE' || code === 'ENFILE' || code === 'EAGAIN')
    return new ResourceExhaustedError(`cannot start a process now (${code})`, { cause: err });
  return new UnavailableError(`failed to start ${nsexec}: ${messageOf(err)}`, { cause: err });
}

/** A NUL byte cannot pass through exec(2): said here, naming the field, rather than by spawn. */
function checkNoNul(values: readonly string[], what: string): void {
  const i = values.findIndex((value) => value.includes('\0'));
  if (i >= 0) throw new InvalidArgumentError(`${what}[${i}] contains a NUL byte`);
}

/** The environment as spawn takes it; an entry without "=" is a variable with an empty value. */
function environmentOf(env: readonly string[]): NodeJS.ProcessEnv {
  return Object.fromEntries(
    env.map((entry) => {
      const eq = entry.indexOf('=');
      return eq < 0 ? [entry, ''] : [entry.slice(0, eq), entry.slice(eq + 1)];
    }),
  );
}

/** nsexec's answer on the sync channel, "PID OOM_SCORE_ADJ\n" (see the header comment). */
function parseSyncLine(line: string, fallbackPid: number): { namespacePid: number; oomScoreAdj: number } {
  const [pid = '', oom = ''] = line.trim().split(' ');
  return { namespacePid: Number.parseInt(pid, 10) || fallbackPid, oomScoreAdj: Number.parseInt(oom, 10) || 0 };
}

/**
 * Starts nsexec, places it in its cgroup, lets it go, and waits until it exec'd or failed.
 * Whatever fails on the way — the spawn, the cgroup, nsexec's own steps, anything thrown — the
 * process is killed and awaited and every descriptor opened for it is closed before the error
 * goes on: a failed start leaves nothing behind.
 */
async function launch(
  nsexec: string,
  args: string[],
  env: string[],
  stdio: Stdio,
  placeInCgroup: (pid: number) => Promise<void>,
): Promise<RunningProcess> {
  checkNoNul(args, 'argument');
  checkNoNul(env, 'env');
  const pipes = await makePipes(stdio.dir, stdio.stdin ? ['in', 'out', 'out'] : ['out', 'out']);
  const [stdin, stdout, stderr] = stdio.stdin ? pipes : [undefined, ...pipes];
  let child: ChildProcess | undefined;
  let exited: Promise<ProcessExit> | undefined;
  try {
    if (stdout === undefined || stderr === undefined) throw new Error('makePipes returned too few pipes');
    // fd 3: the cgroup handshake, fd 4: errors before exec, fd 5 (tty): the terminal's control lines.
    const control = ['--sync-fd', '3', '--error-fd', '4', ...(stdio.tty ? ['--tty', '--control-fd', '5'] : [])];
    child = await startChild(nsexec, [...control, ...args], {
      env: environmentOf(env),
      stdio: [stdin?.childFd ?? 'ignore', stdout.childFd, stderr.childFd],
      extraPipes: stdio.tty ? 3 : 2,
    }).catch((err: unknown) => {
      throw spawnFailure(err, nsexec);
    });
    const started = child;
    exited = new Promise<ProcessExit>((resolve) => started.once('exit', (code, signal) => resolve(exitOf(code, signal))));
    closeChildEnds(pipes);
    const [, , , sync, errors, terminal] = child.stdio as unknown as [null, null, null, Duplex, Readable, Writable | undefined];
    // A channel whose other end is gone (nsexec died) must not throw: its 'close' says enough.
    for (const channel of [sync, errors, terminal]) channel?.on('error', () => undefined);
    let report = '';
    errors.on('data', (chunk: Buffer) => (report += chunk.toString()));
    // nsexec answers the go byte with its line on the sync channel and closes it.
    let syncLine = '';
    const told = new Promise<void>((resolve) => {
      sync.on('data', (chunk: Buffer) => (syncLine += chunk.toString()));
      sync.once('end', () => resolve());
      sync.once('close', () => resolve());
    });
    const reported = new Promise<void>((resolve) => errors.once('close', () => resolve()));
    const pid = child.pid ?? 0;
    await placeInCgroup(pid);
    sync.write('g');
    await Promise.all([reported, told]);
    sync.destroy();
    if (report !== '') throw new FailedPreconditionError(`failed to start the container process: ${report}`);
    return {
      pid,
      ...parseSyncLine(syncLine, pid),
      stdout: stdout.stream,
      stderr: stderr.stream,
      stdin: terminal === undefined || stdin === undefined ? stdin?.stream : terminalInput(stdin.stream, terminal),
      resize:
        terminal === undefined ? undefined : (size) => terminal.write(`size ${String(size.width)} ${String(size.height)}\n`),
      exited,
    };
  } catch (err) {
    if (child !== undefined) {
      child.kill('SIGKILL');
      await exited;
      for (const stream of child.stdio) stream?.destroy();
    }
    closePipes(pipes);
    throw err;
  }
}

/** The oom_score_adj of a running process, from /proc (0 when it cannot be read: the kernel's default). */
function oomScoreAdjOf(...pids: number[]): number {
  for (const pid of pids) {
    try {
      return Number.parseInt(readFileSync(`/proc/${String(pid)}/oom_score_adj`, 'utf8'), 10);
    } catch {
      // gone or not readable: try the next one
    }
  }
  return 0;
}

/** Where nsexec's monitor records how the container ended ("exit N" or "signal N"). */
const exitFile = (stateDir: string): string => join(stateDir, 'exit');

/** The exit file's line as a ProcessExit; undefined for an empty or missing file. */
async function readExitFile(stateDir: string): Promise<ProcessExit | undefined> {
  const text = await readFile(exitFile(stateDir), 'utf8').catch(() => '');
  const [kind, value] = text.trim().split(' ');
  const number = Number.parseInt(value ?? '', 10);
  if (Number.isNaN(number)) return undefined;
  if (kind === 'exit') return { exitCode: number, signal: undefined };
  const signal = Object.entries(osConstants.signals).find(([, n]) => n === number)?.[0];
  return { exitCode: 128 + number, signal };
}

export function nsexecLauncher(nsexec: string): LauncherPort {
  return {
    reattach(process, stateDir) {
      // The pid with its start time, first: after a reboot the pid may belong to anything.
      if (processStartTime(process.pid) !== process.startTime) return undefined;
      // Its output pipes, when they can be opened again (else it is watched without output).
      const stdout = reopenPipe(process.pid, 1) ?? Readable.from([]);
      const stderr = reopenPipe(process.pid, 2) ?? Readable.from([]);
      const exited = processGone(process.pid, process.startTime).then(
        async () => (await readExitFile(stateDir)) ?? { exitCode: -1, signal: undefined },
      );
      return {
        pid: process.pid,
        namespacePid: process.namespacePid,
        // The container's own process is the one whose value counts (the monitor has the same).
        oomScoreAdj: oomScoreAdjOf(process.namespacePid, process.pid),
        stdout,
        stderr,
        stdin: undefined,
        resize: undefined,
        exited,
      };
    },

    lastExit: readExitFile,

    async start(request) {
      const args = [...namespaceArgs(request), '--rootfs', request.rootfs, ...(await mountArgs(request))];
      args.push(...deviceArgs(request.devices));
      args.push(...(await processArgs(request.config, request.user, request.stateDir)));
      args.push('--exit-file', exitFile(request.stateDir), '--cwd', request.cwd, '--', ...request.argv);
      const stdio = { stdin: request.config.stdin, tty: request.config.tty, dir: request.stateDir };
      return launch(nsexec, args, request.env, stdio, (pid) => request.placeInCgroup(pid));
    },

    async exec(request) {
      const args = [
        '--join',
        String(request.containerPid),
        ...(await processArgs(request.config, request.user, request.stateDir)),
      ];
      args.push('--cwd', request.cwd, '--', ...request.argv);
      const stdio = { stdin: true, tty: request.tty, dir: request.stateDir };
      return launch(nsexec, args, request.env, stdio, (pid) => request.placeInCgroup(pid));
    },
  };
}
