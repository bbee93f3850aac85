import { mkdir, readFile, realpath, writeFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable, type Duplex } from 'node:stream';
import { FailedPreconditionError, UnavailableError } from '../errors.js';
import { MountPropagation, NamespaceMode, type ContainerConfig } from '../generated/api.js';
import { startChild } from '../os/child.js';
import { mountHolding } from '../os/mount.js';
import { closeChildEnds, makePipes, reopenPipe } from '../os/pipe.js';
import { processGone, processStartTime } from '../os/proc-stat.js';
import type { LaunchRequest, LauncherPort, ProcessExit, RunningProcess } from './ports.js';
import { seccompProfile } from './seccomp.js';
import { capabilityMask, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, type ProcessUser } from './security-context.js';

/**
 * The launcher: native/nsexec.c does the privileged steps in order (cgroup placement, namespaces,
 * mounts, pivot_root, user, capabilities, no_new_privs, seccomp, exec); this module decides the
 * arguments from the CRI config. The process waits on fd 3 until icetray has placed it in its
 * cgroup, and reports a failure before exec on fd 4 (its end of file means it exec'd); with a
 * tty, fd 5 carries the terminal's control lines (its size, the end of input). Its stdin,
 * stdout and stderr are kernel pipes.
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

async function mountArgs(request: LaunchRequest): Promise<string[]> {
  const context = request.config.linux?.securityContext;
  const args = ['--bind', `${request.podFiles.hostname}:/etc/hostname`, '--bind', `${request.podFiles.hosts}:/etc/hosts`];
  args.push('--bind', `${request.podFiles.resolvConf}:/etc/resolv.conf${context?.readonlyRootfs === true ? ':ro' : ''}`);
  for (const mount of request.config.mounts) {
    // containerd creates a missing host path as a folder; a symlink is followed to its target.
    await mkdir(mount.hostPath, { recursive: true }).catch(() => undefined);
    const source = await realpath(mount.hostPath);
    await checkPropagation(source, mount.propagation);
    const readonly = mount.recursiveReadOnly ? 'rro' : mount.readonly ? 'ro' : '';
    const flags = [readonly, ...mount.mountOptions, PROPAGATION_FLAGS[mount.propagation]].filter(Boolean);
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
async function processArgs(config: ContainerConfig, user: ProcessUser, stateDir: string): Promise<string[]> {
  const context = config.linux?.securityContext;
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
  });
}

/** Starts nsexec, places it in its cgroup, lets it go, and waits until it exec'd or failed. */
async function launch(
  nsexec: string,
  args: string[],
  env: string[],
  stdio: Stdio,
  placeInCgroup: (pid: number) => Promise<void>,
): Promise<RunningProcess> {
  const environment = Object.fromEntries(
    env.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]),
  );
  const pipes = await makePipes(stdio.dir, stdio.stdin ? ['in', 'out', 'out'] : ['out', 'out']);
  const [stdin, stdout, stderr] = stdio.stdin ? pipes : [undefined, ...pipes];
  if (stdout === undefined || stderr === undefined) throw new Error('makePipes returned too few pipes');
  // On failure icetray's pipe ends go too: nothing will read or write them.
  const dropPipes = (): void => pipes.forEach((pipe) => pipe.stream.destroy());
  // fd 3: the cgroup handshake, fd 4: errors before exec, fd 5 (tty): the terminal's control lines.
  const control = ['--sync-fd', '3', '--error-fd', '4', ...(stdio.tty ? ['--tty', '--control-fd', '5'] : [])];
  const child = startChild(nsexec, [...control, ...args], {
    env: environment,
    stdio: [stdin?.childFd ?? 'ignore', stdout.childFd, stderr.childFd],
    extraPipes: stdio.tty ? 3 : 2,
  });
  closeChildEnds(pipes);
  const [, , , sync, errors, terminal] = child.stdio as unknown as [null, null, null, Duplex, Readable, Writable | undefined];
  const exited = new Promise<ProcessExit>((resolve) => child.once('exit', (code, signal) => resolve(exitOf(code, signal))));
  if (child.pid === undefined) {
    dropPipes();
    throw new UnavailableError(`failed to start ${nsexec}`);
  }
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
    dropPipes();
    throw err;
  }
  sync.write('g');
  await Promise.all([reported, told]);
  sync.destroy();
  if (report !== '') {
    await exited;
    dropPipes();
    throw new FailedPreconditionError(`failed to start the container process: ${report}`);
  }
  terminal?.on('error', () => undefined); // the process is gone: a late line has nowhere to go
  return {
    pid: child.pid,
    namespacePid: Number.parseInt(pidLine, 10) || child.pid,
    stdout: stdout.stream,
    stderr: stderr.stream,
    stdin: terminal === undefined || stdin === undefined ? stdin?.stream : terminalInput(stdin.stream, terminal),
    resize: terminal === undefined ? undefined : (size) => terminal.write(`size ${String(size.width)} ${String(size.height)}\n`),
    exited,
  };
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
