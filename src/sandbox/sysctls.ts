import { InvalidArgumentError } from '../errors.js';
import type { PodNamespace } from './sandbox.js';

/**
 * The namespace a sysctl lives in, or undefined when it is node-wide. The kubelet's rule
 * (pkg/kubelet/sysctl): kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* belong to the
 * IPC namespace, net.* to the network namespace; everything else would change the node.
 */
export function sysctlNamespace(key: string): PodNamespace | undefined {
  if (key.startsWith('net.')) return 'net';
  if (/^kernel\.(shm|msg)/.test(key) || key === 'kernel.sem' || key.startsWith('fs.mqueue.')) return 'ipc';
  return undefined;
}

/** Rejects a sysctl that is not namespaced, or whose namespace the pod shares with the node. */
export function validateSysctls(sysctls: Record<string, string>, owned: readonly PodNamespace[]): void {
  for (const [key, value] of Object.entries(sysctls)) {
    const namespace = sysctlNamespace(key.replaceAll('/', '.'));
    if (namespace === undefined) {
      throw new InvalidArgumentError(`sysctl "${key}" is not namespaced: setting it for a pod would change the whole node`);
    }
    if (!owned.includes(namespace)) {
      throw new InvalidArgumentError(
        `sysctl "${key}" belongs to the ${namespace === 'net' ? 'network' : 'IPC'} namespace, which this pod shares with the node`,
      );
    }
    if (value.includes('\n')) throw new InvalidArgumentError(`sysctl "${key}" has a value with a newline`);
  }
}
