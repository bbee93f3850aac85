import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import type { DNSConfig } from '../generated/api.js';

/** The files every container of the pod bind-mounts, so they all see the same ones. */
export interface PodFiles {
  hostname: string;
  resolvConf: string;
  hosts: string;
}

export function podFiles(dir: string): PodFiles {
  return { hostname: join(dir, 'hostname'), resolvConf: join(dir, 'resolv.conf'), hosts: join(dir, 'hosts') };
}

/**
 * resolv.conf from the pod's dns_config; without one, the node's (the kubelet's "Default" DNS
 * policy resolves to what the node uses).
 */
export async function resolvConf(dns: DNSConfig | undefined, hostResolvConf = '/etc/resolv.conf'): Promise<string> {
  const empty = dns === undefined || (dns.servers.length === 0 && dns.searches.length === 0 && dns.options.length === 0);
  if (empty) return readFile(hostResolvConf, 'utf8').catch(() => '');
  for (const line of [...dns.servers, ...dns.searches, ...dns.options]) {
    if (/\s/.test(line)) throw new InvalidArgumentError(`dns_config entry "${line}" must not contain white space`);
  }
  const lines = [
    ...dns.servers.map((server) => `nameserver ${server}`),
    ...(dns.searches.length > 0 ? [`search ${dns.searches.join(' ')}`] : []),
    ...(dns.options.length > 0 ? [`options ${dns.options.join(' ')}`] : []),
  ];
  return `${lines.join('\n')}\n`;
}

/** The pod's hosts file: localhost, and the pod's own name at its IP. */
export function hostsFile(hostname: string, ip: string): string {
  const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback'];
  if (ip !== '') lines.push(`${ip}\t${hostname}`);
  return `${lines.join('\n')}\n`;
}

export async function writePodFiles(dir: string, hostname: string, dns: DNSConfig | undefined, ip: string): Promise<PodFiles> {
  const files = podFiles(dir);
  await writeFile(files.hostname, `${hostname}\n`);
  await writeFile(files.resolvConf, await resolvConf(dns));
  await writeFile(files.hosts, hostsFile(hostname, ip));
  return files;
}
