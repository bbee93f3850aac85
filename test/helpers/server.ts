import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type Config } from '../../src/config/config.js';
import { setLogLevel } from '../../src/log.js';
import { createRuntime, type Runtime } from '../../src/server/runtime.js';
import { startServer, type RunningServer } from '../../src/server/serve.js';
import { connectCri, type CriClient } from './cri.js';

/** A real icetray server on a socket in a temp folder, with its state kept there too. */
export interface TestServer {
  dir: string;
  socket: string;
  runtime: Runtime;
  server: RunningServer;
  cri: CriClient;
  close(): Promise<void>;
}

/** Settings that keep a test server's files inside its own temp folder. */
export function testConfig(dir: string, overrides: Partial<Config> = {}): Partial<Config> {
  return {
    socket: join(dir, 'icetray.sock'),
    rootDir: join(dir, 'root'),
    stateDir: join(dir, 'state'),
    cniConfDir: join(dir, 'net.d'),
    logLevel: 'silent',
    ...overrides,
  };
}

/**
 * A fake /proc/sys with ip_forward as given: tests never flip the host's real sysctl.
 */
export async function fakeProcSys(dir: string, ipForward: boolean): Promise<string> {
  const procSys = join(dir, 'proc-sys');
  await mkdir(join(procSys, 'net', 'ipv4'), { recursive: true });
  await writeFile(join(procSys, 'net', 'ipv4', 'ip_forward'), ipForward ? '1\n' : '0\n');
  return procSys;
}

export interface StartOptions {
  config?: Partial<Config>;
  /** Extra TOML for the config file (tables such as [registry.mirrors."…"]). */
  toml?: string;
  ipForward?: boolean;
}

export async function startTestServer(options: StartOptions = {}): Promise<TestServer> {
  setLogLevel('silent');
  const dir = await mkdtemp(join(tmpdir(), 'icetray-test-'));
  const flags = testConfig(dir, options.config);
  const emptyFile = join(dir, 'config.toml');
  await writeFile(emptyFile, options.toml ?? '');
  const runtime = await createRuntime(loadConfig({ file: emptyFile, flags }), {
    procSys: await fakeProcSys(dir, options.ipForward ?? true),
  });
  const server = await startServer(runtime);
  const t: TestServer = {
    dir,
    socket: server.socket,
    runtime,
    server,
    cri: connectCri(server.socket),
    // Uses the fields, not the first values: a test may swap in a restarted server.
    async close() {
      t.cri.close();
      await t.server.stop();
      await t.runtime.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return t;
}
