import { PodSandboxStatusResponse, type PodSandboxStatusRequest } from '../generated/api.js';
import { namespaceInode } from '../os/proc-stat.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import type { Runtime } from './runtime.js';
import { toPodSandboxStatus } from './sandbox-convert.js';

/** The verbose `info` of a sandbox: what holds the pod, where, and what CNI said. */
async function verboseInfo(runtime: Runtime, sandbox: Sandbox): Promise<Record<string, string>> {
  const namespaces: Record<string, { path: string; inode: number | null }> = {};
  for (const [ns, path] of Object.entries(sandbox.namespaces)) {
    namespaces[ns] = { path, inode: await namespaceInode(path).catch(() => null) };
  }
  let cniCheck = 'not run: the sandbox has no CNI network';
  if (sandbox.network !== undefined && sandbox.network.name !== '') {
    cniCheck = await runtime.sandboxes.checkNetwork(sandbox).then(
      () => 'ok',
      (err: unknown) => `failed: ${(err as Error).message}`,
    );
  }
  const info = {
    pid: sandbox.pause?.pid ?? null,
    pauseImage: sandbox.pauseImage,
    hostname: sandbox.hostname,
    netns: sandbox.namespaces.net ?? null,
    namespaces,
    network: sandbox.network ?? null,
    cniCheck,
    podDir: sandbox.dir,
    logDirectory: sandbox.config.logDirectory,
    // Pod-level resources as last recorded (RunPodSandbox, then UpdatePodSandboxResources).
    overhead: sandbox.config.linux?.overhead ?? null,
    resources: sandbox.config.linux?.resources ?? null,
  };
  // CRI's int64 fields are bigints here: JSON carries them as numbers' decimal strings.
  return { info: JSON.stringify(info, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value)) };
}

/** PodSandboxStatus: state, IP and namespace options of one pod; verbose adds what holds it. */
export async function podSandboxStatus(runtime: Runtime, request: PodSandboxStatusRequest): Promise<PodSandboxStatusResponse> {
  const sandbox = await runtime.sandboxes.get(request.podSandboxId);
  const status = toPodSandboxStatus(sandbox);
  return PodSandboxStatusResponse.create({
    status,
    info: request.verbose ? await verboseInfo(runtime, sandbox) : {},
    containersStatuses: [],
  });
}
