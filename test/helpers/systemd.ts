import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { CgroupTree } from '../../src/cgroups/cgroup-files.js';
import { run } from '../../src/os/exec.js';
import { isRoot } from './tools.js';

/**
 * A real systemd for tests, booted as PID 1 of new pid, mount, cgroup, uts, ipc and net namespaces
 * (/work/shared/README.md, "The machine"). Guarded against the dangers seen there:
 * - it boots icetray-test.target, a target of its own with only dbus in it, from
 *   /run/systemd/system.control (the highest-priority unit folder), so none of the host's enabled
 *   units (a PostgreSQL on the host's data!) and no tmpfiles, journald or fstab mounts start;
 * - /tmp, /var/tmp and /run are fresh tmpfs inside, /sys a fresh read-only sysfs of its own network
 *   namespace (never a remount of the host's), and mount events do not propagate out (rprivate);
 * - container=… makes it behave as a container manager: no reboot(2) of the host, no unmounting at
 *   shutdown;
 * - it runs in a cgroup of its own in every host hierarchy, and sees only that subtree (cgroup
 *   namespace), where it mounts the same cgroup version as the host's;
 * - stop() powers it off, kills what is left, and removes its cgroups.
 */

const SYSTEMD = '/lib/systemd/systemd';
const DBUS_DAEMON = '/usr/bin/dbus-daemon';
const HOST_CGROUP = '/sys/fs/cgroup';

/** Why a real systemd cannot be booted here, or undefined when it can. In CI (CI=true) missing tools fail instead. */
export function systemdUnavailable(): string | undefined {
  if (!isRoot) return 'needs root: boots systemd in new namespaces';
  if (process.env['CI'] === 'true') return undefined;
  if (!existsSync(SYSTEMD)) return `systemd is not installed (${SYSTEMD})`;
  if (!existsSync(DBUS_DAEMON)) return `dbus-daemon is not installed (${DBUS_DAEMON}; Debian package dbus)`;
  return undefined;
}

function units(): Record<string, string> {
  return {
    'icetray-test.target': '[Unit]\nDescription=icetray test target\nDefaultDependencies=no\nWants=dbus.socket dbus.service\n',
    // systemd connects to the bus only when units named dbus.socket and dbus.service run.
    'dbus.socket': '[Unit]\nDefaultDependencies=no\n[Socket]\nListenStream=/run/dbus/system_bus_socket\n',
    'dbus.service':
      '[Unit]\nDefaultDependencies=no\nRequires=dbus.socket\nAfter=dbus.socket\n[Service]\n' +
      `ExecStart=${DBUS_DAEMON} --system --address=systemd: --nofork --nopidfile --systemd-activation --syslog-only\n`,
  };
}

/** The script PID 1 of the new namespaces runs before it becomes systemd. */
function innerScript(v1Controllers: string[]): string {
  const cgroups =
    v1Controllers.length === 0
      ? 'mount -t cgroup2 cgroup2 /sys/fs/cgroup'
      : [
          'mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup',
          ...v1Controllers.map((c) => `mkdir /sys/fs/cgroup/${c} && mount -t cgroup -o ${c} cgroup /sys/fs/cgroup/${c}`),
          'mkdir /sys/fs/cgroup/systemd && mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd',
        ].join('\n');
  const dir = '/run/systemd/system.control';
  const writeUnits = Object.entries(units())
    .map(([name, text]) => `printf '%s' '${text}' > ${dir}/${name}`)
    .join('\n');
  // The fresh /tmp, /var/tmp and /run would hide a checkout below them (a CI clone in /tmp), and
  // tests run icetray inside: it is opened first and bound back over its own path afterwards
  // (--no-canonicalize, so mount binds what fd 9 holds, not the new empty folder of that name).
  const hidden = ['/tmp', '/var/tmp', '/run'].some((d) => PACKAGE_ROOT.startsWith(`${d}/`));
  return [
    'set -e',
    'mount --make-rprivate /',
    ...(hidden ? [`exec 9< '${PACKAGE_ROOT}'`] : []),
    'mount -t tmpfs -o mode=1777 tmpfs /tmp',
    'mount -t tmpfs -o mode=1777 tmpfs /var/tmp',
    'mount -t tmpfs -o mode=755 tmpfs /run',
    ...(hidden
      ? [`mkdir -p '${PACKAGE_ROOT}'`, `mount --no-canonicalize --bind /proc/self/fd/9 '${PACKAGE_ROOT}'`, 'exec 9<&-']
      : []),
    'umount -R /sys',
    'mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys',
    cgroups,
    `mkdir -p ${dir} /run/dbus`,
    writeUnits,
    `exec env -i container=icetray-test PATH=/usr/sbin:/usr/bin:/sbin:/bin ${SYSTEMD} --system --unit=icetray-test.target ` +
      '--log-target=console --log-level=warning --default-standard-output=null --default-standard-error=null',
  ].join('\n');
}

/** A command that failed non-zero still answered (systemctl is-active says "inactive" with exit code 3). */
function outputOfFailure(err: unknown): { stdout: string } {
  return { stdout: (err as { stdout?: string }).stdout ?? '' };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export interface InsideProcess {
  /** Its PID as the host (and icetray) sees it. */
  pid: number;
  /** Lets it run its command (it waits on stdin until then, as the launcher holds a process). */
  go(): void;
  kill(): Promise<void>;
}

export interface BootedSystemd {
  /** systemd's PID on the host. */
  pid: number;
  /** Its root filesystem as the host reaches it: its /run and /sys/fs/cgroup are under here. */
  root: string;
  /** The host cgroup it runs in (in every hierarchy): its "/" as it sees it. */
  cgroup: string;
  /** "v1" when it runs the host's v1 controllers, "v2" when a unified tree. */
  version: 1 | 2;
  /** Runs systemctl inside. */
  systemctl(...args: string[]): Promise<string>;
  /** Starts a process in systemd's PID namespace and cgroup tree, held until go(). */
  spawnInside(argv: string[]): Promise<InsideProcess>;
  stop(): Promise<void>;
}

/** Boots systemd and waits until it is up with its bus (about 2 s). */
export async function bootSystemd(): Promise<BootedSystemd> {
  const host = await CgroupTree.open(HOST_CGROUP);
  const name = `icetray-test-systemd-${process.pid}-${Date.now().toString(36)}`;
  const cgroup = `/${name}`;
  // Fresh v1 controllers inside are the host's mounted ones (not the named or hybrid v2 trees).
  const v1Controllers = host.version === 1 ? host.hierarchies.filter((h) => h.controllers.length > 0).map((h) => h.name) : [];
  await host.create(cgroup);
  const log: string[] = [];
  // The launching shell joins the cgroup first: the new cgroup namespace is rooted where it is.
  const launcher = spawn(
    'sh',
    [
      '-c',
      `${host
        .dirs(cgroup)
        .map((d) => `echo $$ > ${d}/cgroup.procs`)
        .join(' && ')} && exec unshare --pid --fork --mount --mount-proc --cgroup --uts --ipc --net sh -c "$0"`,
      innerScript(v1Controllers),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  launcher.stdout.on('data', (d: Buffer) => log.push(d.toString()));
  launcher.stderr.on('data', (d: Buffer) => log.push(d.toString()));
  const exited = new Promise<void>((resolve) => launcher.once('exit', () => resolve()));
  const launcherPid = launcher.pid ?? 0;

  const nsenter = (args: string[]) =>
    run('nsenter', ['--target', String(pid), '--mount', '--pid', '--uts', '--ipc', '--net', '--cgroup', '--', ...args], {
      timeoutMs: 15_000,
    });
  let pid = 0;
  const cleanUp = async () => {
    if (pid !== 0 && commOf(pid) === 'systemd') {
      await nsenter(['systemctl', 'poweroff', '--no-block']).catch(() => undefined);
      await Promise.race([exited, sleep(10_000)]);
      if (commOf(pid) === 'systemd') process.kill(pid, 'SIGKILL');
    }
    launcher.kill('SIGKILL');
    await exited;
    await removeTree(host, cgroup);
  };

  try {
    pid = await waitFor('systemd to start', 10_000, () => childrenOf(launcherPid).find((p) => commOf(p) === 'systemd'));
    const root = `/proc/${pid}/root`;
    await waitFor('systemd to reach its target', 20_000, async () => {
      const state = (await nsenter(['systemctl', 'is-system-running']).catch(outputOfFailure)).stdout.trim();
      return (state === 'running' || state === 'degraded') && existsSync(`${root}/run/dbus/system_bus_socket`)
        ? state
        : undefined;
    });
    const staging = `${cgroup}/icetray-test-staging`;
    return {
      pid,
      root,
      cgroup,
      version: host.version,
      systemctl: async (...args) => (await nsenter(['systemctl', ...args]).catch(outputOfFailure)).stdout.trim(),
      spawnInside: async (argv) => {
        const child: ChildProcess = spawn(
          'nsenter',
          ['--target', String(pid), '--pid', '--', 'sh', '-c', 'read go; exec "$@"', 'sh', ...argv],
          {
            stdio: ['pipe', 'ignore', 'ignore'],
          },
        );
        const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        const inner = await waitFor('the process inside', 5_000, () => childrenOf(child.pid ?? 0)[0]);
        // A process outside systemd's cgroup namespace is one it cannot move: stage it inside first.
        await host.create(staging);
        await host.addProcess(staging, inner);
        return {
          pid: inner,
          go: () => child.stdin?.write('\n'),
          kill: async () => {
            try {
              process.kill(inner, 'SIGKILL');
            } catch {
              // already gone
            }
            await gone;
          },
        };
      },
      stop: cleanUp,
    };
  } catch (err) {
    await cleanUp();
    throw new Error(`cannot boot systemd: ${(err as Error).message}\n${log.join('')}`, { cause: err });
  }
}

/** Removes a cgroup and everything below it, leaves first, in every hierarchy. */
async function removeTree(tree: CgroupTree, cgroup: string): Promise<void> {
  for (const dir of tree.dirs(cgroup)) {
    const walk = async (path: string): Promise<void> => {
      const entries = await readdir(path, { withFileTypes: true }).catch(() => []);
      for (const e of entries) if (e.isDirectory()) await walk(join(path, e.name));
      for (let attempt = 0; attempt < 50; attempt++) {
        try {
          await rmdir(path);
          return;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
          await sleep(20);
        }
      }
    };
    await walk(dir);
  }
}
