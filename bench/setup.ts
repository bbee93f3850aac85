import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/config.js';
import { run } from '../src/os/exec.js';
import { createRuntime, type Runtime } from '../src/server/runtime.js';

/** The bench's own network: its own bridge and range, removed at the end. */
const BRIDGE = 'itbench0';
const SUBNET = '10.253.0.0/24';

/**
 * A runtime like `icetray serve` builds (the same services the gRPC handlers call), with its
 * state, CNI network and bridge of its own, all removed afterwards; ip_forward restored.
 */
export async function withBenchRuntime(body: (runtime: Runtime) => Promise<void>, toml = ''): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'icetray-bench-'));
  const confDir = join(dir, 'net.d');
  await mkdir(confDir, { recursive: true });
  await writeFile(
    join(confDir, '10-bench.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'icetray-bench',
      plugins: [
        {
          type: 'bridge',
          bridge: BRIDGE,
          isGateway: true,
          ipam: { type: 'host-local', ranges: [[{ subnet: SUBNET }]], dataDir: join(dir, 'leases') },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    }),
  );
  const ipForward = await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8');
  await writeFile(join(dir, 'config.toml'), toml);
  const flags = {
    rootDir: join(dir, 'root'),
    stateDir: join(dir, 'state'),
    cniConfDir: confDir,
    socket: join(dir, 'icetray.sock'),
  };
  const runtime = await createRuntime(loadConfig({ file: join(dir, 'config.toml'), flags }));
  try {
    await body(runtime);
  } finally {
    for (const sandbox of runtime.sandboxes.store.all()) {
      await runtime.sandboxes
        .remove(sandbox.id, (sandboxId) => runtime.containers.stopAll(sandboxId, true))
        .catch(() => undefined);
    }
    await runtime.close();
    await run('ip', ['link', 'del', BRIDGE]).catch(() => undefined);
    await writeFile('/proc/sys/net/ipv4/ip_forward', ipForward);
    await rm(dir, { recursive: true, force: true });
  }
}
