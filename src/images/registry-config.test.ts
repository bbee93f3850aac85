import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRegistryConfig, registryHosts } from './registry-config.js';

describe('the [registry] config table', () => {
  it('reads inline mirrors and config_path', () => {
    const config = parseRegistryConfig({
      mirrors: { 'registry.k8s.io': { endpoints: ['http://127.0.0.1:5000/', 'https://mirror.example'] } },
      config_path: '/etc/icetray/certs.d',
    });
    expect(config).toEqual({
      mirrors: { 'registry.k8s.io': ['http://127.0.0.1:5000', 'https://mirror.example'] },
      configPath: '/etc/icetray/certs.d',
    });
  });

  it.each([
    [{ mirrors: { 'registry.k8s.io': { endpoints: ['ftp://x'] } } }, 'registry.mirrors.registry.k8s.io.endpoints'],
    [{ mirrors: { 'registry.k8s.io': { endpoints: 'http://x' } } }, 'registry.mirrors.registry.k8s.io.endpoints'],
    [{ mirrors: { 'registry.k8s.io': { endpoint: [] } } }, 'registry.mirrors.registry.k8s.io.endpoint'],
    [{ config_path: 'relative' }, 'registry.config_path'],
    [{ insecure: true }, 'registry.insecure'],
  ])('names the bad key in %j', (value, key) => {
    expect(() => parseRegistryConfig(value)).toThrow(`config key "${key}"`);
  });
});

describe('the hosts to pull from', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'icetray-hosts-'));
    await mkdir(join(dir, 'gcr.io'));
    await writeFile(
      join(dir, 'gcr.io', 'hosts.toml'),
      [
        'server = "https://gcr.io"',
        '[host."http://127.0.0.1:5000"]',
        '  capabilities = ["pull", "resolve"]',
        '[host."https://push-only.example"]',
        '  capabilities = ["push"]',
        '[host."https://mirror.example/v2/prefix"]',
        '  override_path = true',
        '  skip_verify = true',
        '  [host."https://mirror.example/v2/prefix".header]',
        '    x-team = "infra"',
      ].join('\n'),
    );
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('tries inline mirrors, then hosts.toml hosts in file order, then the server', async () => {
    const hosts = await registryHosts({ mirrors: { 'gcr.io': ['http://10.0.0.1:5000'] }, configPath: dir }, 'gcr.io');
    expect(hosts.map((h) => [h.apiRoot, h.upstream, h.skipVerify])).toEqual([
      ['http://10.0.0.1:5000/v2', false, false],
      ['http://127.0.0.1:5000/v2', false, false],
      ['https://mirror.example/v2/prefix', false, true],
      ['https://gcr.io/v2', true, false],
    ]);
    expect(hosts[2]?.headers).toEqual({ 'x-team': 'infra' });
  });

  it('uses the registry itself, plain HTTP only on loopback, when nothing is configured', async () => {
    const none = { mirrors: {}, configPath: dir };
    expect((await registryHosts(none, 'docker.io')).map((h) => h.apiRoot)).toEqual(['https://registry-1.docker.io/v2']);
    expect((await registryHosts(none, '127.0.0.1:5000')).map((h) => h.apiRoot)).toEqual(['http://127.0.0.1:5000/v2']);
  });
});
