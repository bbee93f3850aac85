import { InvalidArgumentError } from '../errors.js';
import type { PodNamespace } from './sandbox.js';

/**
 * Pod sysctls. A name is a path under /proc/sys, so it is checked as a path before anything
 * else: `net.//.kernel.core_pattern` passes a plain "starts with net." test and yet names
 * /proc/sys/net/../kernel/core_pattern, a node-wide setting. The order is: parse the name into
 * its path parts by the kernel's grammar, then decide its namespace from those parts, then
 * (native/pause.c) write it beneath /proc/sys without following anything out of it.
 */

/**
 * One part of a sysctl path: letters, digits, '_' and '-', with single dots inside (an
 * interface name such as eth0.100). Never empty, ".", "..", or with a leading or trailing dot.
 */
const PART = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

/** The kernel's own longest sysctl paths are far shorter; a bound keeps the argument small. */
const MAX_NAME = 253;
const MAX_VALUE = 4096;

/**
 * The path parts of a sysctl name. Two spellings exist (sysctl(8), and the kubelet's
 * NormalizeName): dots between parts with '/' standing for a dot inside a part
 * ("net.ipv4.conf.eth0/100.forwarding"), or slashes between parts with dots inside
 * ("net/ipv4/conf/eth0.100/forwarding"). The first separator tells which one it is.
 */
export function sysctlPath(name: string): string[] {
  if (name === '' || name.length > MAX_NAME)
    throw new InvalidArgumentError(`sysctl name ${JSON.stringify(name)} is empty or too long`);
  const slashForm = /^[^./]*\//.test(name);
  const parts = slashForm ? name.split('/') : name.split('.').map((part) => part.replaceAll('/', '.'));
  for (const part of parts) {
    if (!PART.test(part))
      throw new InvalidArgumentError(`sysctl name ${JSON.stringify(name)} is not a valid kernel parameter name`);
  }
  return parts;
}

/** The dotted spelling pause takes (parts joined by '.', a dot inside a part written '/'). */
export function dottedName(parts: readonly string[]): string {
  return parts.map((part) => part.replaceAll('.', '/')).join('.');
}

/**
 * The namespace a sysctl lives in, or undefined when it is node-wide. The kubelet's rule
 * (pkg/kubelet/sysctl): kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* belong to the
 * IPC namespace, net.* to the network namespace; everything else would change the node.
 */
export function sysctlNamespace(parts: readonly string[]): PodNamespace | undefined {
  const [top, second = ''] = parts;
  if (top === 'net' && parts.length > 1) return 'net';
  if (top === 'kernel' && parts.length === 2 && (/^(shm|msg)/.test(second) || second === 'sem')) return 'ipc';
  if (top === 'fs' && second === 'mqueue' && parts.length === 3) return 'ipc';
  return undefined;
}

/**
 * Checks a pod's sysctls and returns them in the one spelling pause takes. Refused: a name that
 * is not a kernel parameter name, a sysctl that is not namespaced or whose namespace the pod
 * shares with the node, and a value that cannot be written as one line.
 */
export function validateSysctls(sysctls: Record<string, string>, owned: readonly PodNamespace[]): Record<string, string> {
  const valid: Record<string, string> = {};
  for (const [name, value] of Object.entries(sysctls)) {
    const parts = sysctlPath(name);
    const namespace = sysctlNamespace(parts);
    if (namespace === undefined) {
      throw new InvalidArgumentError(`sysctl "${name}" is not namespaced: setting it for a pod would change the whole node`);
    }
    if (!owned.includes(namespace)) {
      throw new InvalidArgumentError(
        `sysctl "${name}" belongs to the ${namespace === 'net' ? 'network' : 'IPC'} namespace, which this pod shares with the node`,
      );
    }
    if (value.length > MAX_VALUE || /[\n\0]/.test(value))
      throw new InvalidArgumentError(`sysctl "${name}" has a value that is too long or not a single line`);
    valid[dottedName(parts)] = value;
  }
  return valid;
}
