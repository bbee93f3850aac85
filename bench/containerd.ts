import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BUILTIN_PAUSE_IMAGE } from '../src/images/store.js';
import { run } from '../src/os/exec.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { waitForCri } from './daemon.js';

/** Where bench/install-containerd.sh puts containerd, ctr, the runc shim and runc. */
export const CONTAINERD_BIN = process.env['ICETRAY_CONTAINERD_DIR'] ?? '/var/cache/icetray/containerd/v2.4.2-runc-v1.5.2';

/**
 * containerd's config for the bench: every path in `dir`, overlayfs, cgroupfs (`SystemdCgroup =
 * false`), CNI from `confDir`, the pause image pinned, no NRI, CDI or /opt plugin (they would
 * write host folders). `restrict_oom_score_adj` because root here lacks CAP_SYS_RESOURCE: a
 * negative oom_score_adj cannot be written.
 */
export function containerdConfig(dir: string, confDir: string): string {
  const runtime = 'plugins."io.containerd.cri.v1.runtime"';
  return `version = 3
root = "${join(dir, 'root')}"
state = "${join(dir, 'state')}"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "${join(dir, 'containerd.sock')}"
[ttrpc]
  address = "${join(dir, 'containerd.sock.ttrpc')}"
[debug]
  level = "warn"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "${BUILTIN_PAUSE_IMAGE}"

[${runtime}]
  enable_cdi = false
  cdi_spec_dirs = ["${join(dir, 'cdi')}"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [${runtime}.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "${confDir}"
    max_conf_num = 1
  [${runtime}.containerd]
    default_runtime_name = "runc"
    [${runtime}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [${runtime}.containerd.runtimes.runc.options]
        BinaryName = "${join(CONTAINERD_BIN, 'runc')}"
        SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`;
}

/** A running containerd of the bench's own. */
export interface Containerd {
  child: ChildProcess;
  socket: string;
}

/**
 * Starts containerd on `dir` and imports icetray's pause and busybox images into its k8s.io
 * namespace. Its shims put their sockets in /run/containerd/s whatever the config says, so it
 * runs in a mount namespace of its own with a fresh tmpfs on /run: the host's /run/containerd is
 * never touched, and the pods' mounts go away with that namespace.
 */
export async function startContainerd(dir: string, confDir: string): Promise<Containerd> {
  const configFile = join(dir, 'containerd.toml');
  await mkdir(join(dir, 'cdi'), { recursive: true });
  await writeFile(configFile, containerdConfig(dir, confDir));
  const log = await open(join(dir, 'containerd.log'), 'a');
  const started = performance.now();
  const child = spawn(
    'unshare',
    [
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      'mount -t tmpfs -o mode=0755 tmpfs /run && exec "$0" --config "$1"',
      join(CONTAINERD_BIN, 'containerd'),
      configFile,
    ],
    // The shim is found on PATH.
    { stdio: ['ignore', log.fd, log.fd], env: { ...process.env, PATH: `${CONTAINERD_BIN}:${process.env['PATH'] ?? ''}` } },
  );
  await log.close();
  const socket = join(dir, 'containerd.sock');
  await waitForCri(socket, child, started);
  const images = join(dir, 'images');
  await run('bash', [join(PACKAGE_ROOT, 'bench', 'oci-images.sh'), images]);
  for (const archive of ['pause.tar', 'busybox.tar'])
    await run(join(CONTAINERD_BIN, 'ctr'), ['--address', socket, '-n', 'k8s.io', 'images', 'import', join(images, archive)]);
  return { child, socket };
}
