import { isIP } from 'node:net';
import { RUNTIME_HANDLER_NAME } from '../config/config.js';
import { InvalidArgumentError, NotFoundError } from '../errors.js';
import { Protocol, type PodSandboxConfig } from '../generated/api.js';
import { checkAbsolutePath, checkLine, checkNoNul, quote } from '../validate.js';

/**
 * A pod config checked before anything is made, so that RunPodSandbox refuses bad input as
 * INVALID_ARGUMENT and never half-makes a pod from it. Each check says where the field goes:
 * that is what decides what a hostile value could do.
 */

/**
 * Pod name, namespace and uid reach the CNI plugins as `CNI_ARGS`, a `K=V;K=V` list (CNI spec,
 * "Parameters"): a ';' or '=' in them would add arguments of the pod's own choosing
 * (`;IP=10.88.0.9` picks an address). The uid also names a cgroup folder.
 */
function checkMetadata(config: PodSandboxConfig): void {
  const m = config.metadata;
  if (m === undefined) throw new InvalidArgumentError('sandbox config: metadata is required');
  for (const [field, max] of [
    ['name', 253],
    ['namespace', 253],
    ['uid', 128],
  ] as const) {
    const value = m[field];
    if (value === '') throw new InvalidArgumentError(`sandbox config: metadata.${field} is required`);
    checkLine(value, `sandbox metadata.${field}`, max);
    if (/[;=]/.test(value))
      throw new InvalidArgumentError(
        `sandbox metadata.${field} ${quote(value)} must not contain ";" or "=" (it is a CNI argument)`,
      );
  }
}

/**
 * The hostname is set with sethostname(2) (at most 64 bytes, HOST_NAME_MAX) and written into
 * the pod's /etc/hostname and /etc/hosts, where a newline would add lines: RFC 1123 characters only.
 */
function checkHostname(hostname: string): void {
  if (hostname === '') return;
  if (hostname.length > 64 || !/^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/.test(hostname))
    throw new InvalidArgumentError(`hostname ${quote(hostname)} must be at most 64 letters, digits, '.', '-' or '_'`);
}

/**
 * Port mappings go to the portmap plugin and iptables: ports must be real ports, the host IP an
 * address, and one host port is mapped once per protocol and address.
 */
function checkPortMappings(config: PodSandboxConfig): void {
  const seen = new Set<string>();
  for (const port of config.portMappings) {
    const where = `port mapping ${String(port.containerPort)}->${String(port.hostPort)}`;
    if (![Protocol.TCP, Protocol.UDP, Protocol.SCTP].includes(port.protocol))
      throw new InvalidArgumentError(`${where}: unknown protocol ${String(port.protocol)}`);
    if (port.containerPort < 1 || port.containerPort > 65535)
      throw new InvalidArgumentError(`${where}: container_port must be 1 to 65535`);
    if (port.hostPort < 0 || port.hostPort > 65535) throw new InvalidArgumentError(`${where}: host_port must be 0 to 65535`);
    if (port.hostIp !== '' && isIP(port.hostIp) === 0)
      throw new InvalidArgumentError(`${where}: host_ip ${quote(port.hostIp)} is not an IP address`);
    if (port.hostPort === 0) continue;
    const key = `${port.hostIp}:${String(port.hostPort)}/${String(port.protocol)}`;
    if (seen.has(key)) throw new InvalidArgumentError(`${where}: host port ${key} is mapped twice`);
    seen.add(key);
  }
}

/** DNS settings become lines of the pod's resolv.conf: one word each, servers real addresses. */
function checkDns(config: PodSandboxConfig): void {
  const dns = config.dnsConfig;
  if (dns === undefined) return;
  for (const server of dns.servers)
    if (isIP(server) === 0) throw new InvalidArgumentError(`dns_config server ${quote(server)} is not an IP address`);
  for (const word of [...dns.searches, ...dns.options]) {
    checkLine(word, 'dns_config entry');
    if (/\s/.test(word) || word === '') throw new InvalidArgumentError(`dns_config entry ${quote(word)} must be one word`);
  }
}

/**
 * RunPodSandbox's runtime_handler (a RuntimeClass's `handler`) is a name the client chose: a DNS
 * label, as the Kubernetes API validates it, or "" for the default. It is recorded with the pod
 * and quoted in messages; it never names a path. An unknown one is NOT_FOUND naming the
 * configured ones (containerd answers `no runtime for "x" is configured`, with code UNKNOWN).
 */
function checkRuntimeHandler(handler: string, configured: readonly string[]): void {
  if (handler !== '' && !RUNTIME_HANDLER_NAME.test(handler))
    throw new InvalidArgumentError(
      `runtime handler ${quote(handler)} is not a valid name: at most 63 lowercase letters, digits or "-" (a DNS label)`,
    );
  if (!configured.includes(handler))
    throw new NotFoundError(
      `no runtime handler ${quote(handler)} is configured (configured: ${configured.map((name) => quote(name)).join(', ')})`,
    );
}

/** Everything about a pod config that can be told wrong without touching the node. */
export function validatePodConfig(config: PodSandboxConfig, runtimeHandler: string, handlers: readonly string[]): void {
  checkRuntimeHandler(runtimeHandler, handlers);
  checkMetadata(config);
  checkHostname(config.hostname);
  // CRI: log_directory is a path on the host; a relative one would depend on icetray's working dir.
  if (config.logDirectory !== '') checkAbsolutePath(config.logDirectory, 'log_directory');
  checkPortMappings(config);
  checkDns(config);
  checkNoNul(config.linux?.cgroupParent ?? '', 'cgroup_parent');
}
