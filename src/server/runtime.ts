import { access, readdir } from 'node:fs/promises';
import { constants } from 'node:fs';
import type { LoadedConfig } from '../config/config.js';
import { checkDriverRecord } from '../cgroups/state-record.js';
import { createDriver, type CgroupDriver } from '../cgroups/driver.js';
import { containerCgroupPath } from '../cgroups/names.js';
import { ImageStore } from '../images/store.js';
import { imageStoreDir } from '../images/usage.js';
import { NSEXEC_BINARY, PAUSE_BINARY } from '../paths.js';
import { ContainerService } from '../containers/service.js';
import { nsexecLauncher } from '../containers/nsexec-launcher.js';
import { ContainerEvents } from '../events.js';
import { parseDuration } from '../config/duration.js';
import { runtimeBackend } from '../streaming/runtime-backend.js';
import { startStreamingServer, type StreamingServer } from '../streaming/server.js';
import { bindMountPinner } from '../sandbox/namespaces.js';
import { cniNetworkManager, networkReadiness, type Readiness } from '../sandbox/network.js';
import { nativePauseLauncher } from '../sandbox/pause.js';
import { SandboxService } from '../sandbox/service.js';
import { sandboxesDir } from '../sandbox/state.js';
import { tmpfsShm } from '../sandbox/shm.js';

/**
 * What every RPC handler is handed: the config in force and the node-level services built
 * from it, created once at start.
 */
export interface Runtime {
  readonly loaded: LoadedConfig;
  readonly pauseBinary: string;
  /** Where `/proc/sys` is (tests point it at a folder of their own). */
  readonly procSys: string;
  readonly sandboxes: SandboxService;
  readonly cgroups: CgroupDriver;
  readonly images: ImageStore;
  readonly containers: ContainerService;
  readonly events: ContainerEvents;
  readonly streaming: StreamingServer;
  /** Releases what the runtime holds open (the systemd D-Bus connection). */
  close(): Promise<void>;
}

export interface RuntimeOverrides {
  pauseBinary?: string;
  procSys?: string;
}

/** Builds the runtime, reloads the pods a previous run left, and finishes what a crash left half-done. */
export async function createRuntime(loaded: LoadedConfig, overrides: RuntimeOverrides = {}): Promise<Runtime> {
  const { config } = loaded;
  const pauseBinary = overrides.pauseBinary ?? PAUSE_BINARY;
  // Pods keep the cgroups their driver made: another driver cannot take them over. Checked
  // first, so that this, the real reason, is what a changed driver reports.
  const podsExist = (await readdir(sandboxesDir(config.rootDir)).catch(() => [])).length > 0;
  await checkDriverRecord(config.rootDir, config.cgroupDriver, podsExist);
  const cgroups = await createDriver({ name: config.cgroupDriver });
  const images = await ImageStore.open({
    root: imageStoreDir(config.rootDir),
    pauseImage: config.pauseImage,
    pauseBinary,
    registry: config.registry,
  });
  const sandboxes = new SandboxService({
    config,
    pause: nativePauseLauncher(pauseBinary),
    pinner: bindMountPinner,
    shm: tmpfsShm,
    network: cniNetworkManager(config),
    cgroups,
    // RunPodSandbox makes sure the pause image is there (built in, or pulled when custom).
    ensurePauseImage: () => images.ensurePauseImage(),
  });
  await sandboxes.load();
  const events = new ContainerEvents();
  const containers = new ContainerService({
    config,
    sandboxes,
    images,
    cgroups,
    launcher: nsexecLauncher(NSEXEC_BINARY),
    events,
    cgroupOf: (sandbox, containerId) => containerCgroupPath(config.cgroupDriver, sandbox.cgroup.pod, containerId),
  });
  // Before serving, what a crash interrupted is finished or undone: containers first, since a
  // pod's teardown needs its containers gone (ContainerService.load), then the pods.
  await containers.load();
  await sandboxes.recover();
  const streaming = await startStreamingServer({
    host: config.streamServerAddress,
    port: config.streamServerPort,
    idleTimeoutMs: parseDuration(config.streamIdleTimeout),
    backend: runtimeBackend(containers, sandboxes),
  });
  return {
    loaded,
    pauseBinary,
    procSys: overrides.procSys ?? '/proc/sys',
    sandboxes,
    cgroups,
    images,
    containers,
    events,
    streaming,
    close: async () => {
      await streaming.close();
      await cgroups.close();
    },
  };
}

/**
 * RuntimeReady: icetray can start pods. That takes root (namespaces, mounts, cgroups) and
 * the pause binary that holds a pod's namespaces.
 */
export async function runtimeReadiness(runtime: Runtime): Promise<Readiness> {
  if (process.getuid?.() !== 0) {
    return {
      ready: false,
      reason: 'NotRunningAsRoot',
      message: 'icetray must run as root to create namespaces, mounts and cgroups',
    };
  }
  try {
    await access(runtime.pauseBinary, constants.X_OK);
  } catch {
    return {
      ready: false,
      reason: 'PauseBinaryMissing',
      message: `the pause binary ${runtime.pauseBinary} is missing: build it with "npm run build:native" (needs a C compiler: apt-get install gcc libc6-dev)`,
    };
  }
  return { ready: true, reason: '', message: '' };
}

export function networkReady(runtime: Runtime): Promise<Readiness> {
  return networkReadiness(runtime.loaded.config, runtime.procSys);
}
