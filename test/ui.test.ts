import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectCri, type CriClient, type DeepPartial } from '../src/cli/cri-client.js';
import { ContainerConfig, Protocol, type PodSandboxConfig } from '../src/generated/api.js';
import { BUILTIN_BUSYBOX_IMAGE } from '../src/images/store.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { ICETRAY_CLI, runIcetray, startServeProcess, type ServeProcess } from './helpers/cli.js';
import { ipForward, podConfig, restoreIpForward, sh, writeTestNetwork, type TestNetwork } from './helpers/pods.js';
import { isRoot } from './helpers/tools.js';

const HOSTILE = '<img src=x onerror=alert(1)>';
const HOSTILE_NAME = '<script>alert(1)</script>';
const hasChromium = spawnSync('sh', ['-c', 'command -v chromium']).status === 0;

/**
 * A minimal Chrome DevTools Protocol client over --remote-debugging-pipe (Node 20 has no
 * built-in WebSocket): JSON messages, each ended by a NUL, on the browser's fds 3 (in) and 4 (out).
 */
class Browser {
  private next = 1;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private readonly listeners: ((method: string, params: unknown) => void)[] = [];
  private buffer = '';
  sessionId = '';

  private constructor(
    readonly child: ChildProcess,
    readonly dataDir: string,
  ) {
    const input = child.stdio[3] as Writable;
    const output = child.stdio[4] as Readable;
    input.on('error', () => undefined);
    output.on('data', (chunk: Buffer) => {
      this.buffer += chunk.toString();
      let end: number;
      while ((end = this.buffer.indexOf('\0')) >= 0) {
        const message = JSON.parse(this.buffer.slice(0, end)) as {
          id?: number;
          result?: unknown;
          error?: { message: string };
          method?: string;
          params?: unknown;
        };
        this.buffer = this.buffer.slice(end + 1);
        if (message.id !== undefined) {
          const waiter = this.pending.get(message.id);
          this.pending.delete(message.id);
          if (message.error !== undefined) waiter?.reject(new Error(message.error.message));
          else waiter?.resolve(message.result);
        } else if (message.method !== undefined) {
          for (const listener of this.listeners) listener(message.method, message.params);
        }
      }
    });
  }

  /** Starts headless chromium with a profile folder of its own, and opens one page. */
  static async launch(): Promise<Browser> {
    const dataDir = await mkdtemp(join(tmpdir(), 'icetray-ui-chromium-'));
    const child = spawn(
      'chromium',
      [
        '--headless',
        // Root cannot use chromium's sandbox; the page is icetray's own, on loopback.
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        '--no-default-browser-check',
        '--remote-debugging-pipe',
        `--user-data-dir=${dataDir}`,
        'about:blank',
      ],
      { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] },
    );
    const browser = new Browser(child, dataDir);
    const { targetId } = (await browser.send('Target.createTarget', { url: 'about:blank' }, false)) as { targetId: string };
    const { sessionId } = (await browser.send('Target.attachToTarget', { targetId, flatten: true }, false)) as {
      sessionId: string;
    };
    browser.sessionId = sessionId;
    await browser.send('Page.enable');
    await browser.send('Runtime.enable');
    await browser.send('Emulation.setDeviceMetricsOverride', { width: 1400, height: 860, deviceScaleFactor: 1, mobile: false });
    return browser;
  }

  send(method: string, params: object = {}, inPage = true): Promise<unknown> {
    const id = this.next++;
    const message = { id, method, params, ...(inPage ? { sessionId: this.sessionId } : {}) };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      (this.child.stdio[3] as Writable).write(`${JSON.stringify(message)}\0`);
    });
  }

  on(listener: (method: string, params: unknown) => void): void {
    this.listeners.push(listener);
  }

  /** Evaluates an expression in the page (awaiting a promise), and returns its value. */
  async evaluate<T>(expression: string): Promise<T> {
    const reply = (await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true })) as {
      result: { value: T };
      exceptionDetails?: { text: string; exception?: { description?: string } };
    };
    if (reply.exceptionDetails !== undefined)
      throw new Error(reply.exceptionDetails.exception?.description ?? reply.exceptionDetails.text);
    return reply.result.value;
  }

  /** Resolves when `condition` (an expression) is truthy in the page, polled every 10 ms there. */
  waitFor(condition: string, timeoutMs = 5_000): Promise<boolean> {
    return this.evaluate<boolean>(`new Promise((resolve) => {
      const until = Date.now() + ${timeoutMs};
      const check = () => { if (${condition}) resolve(true); else if (Date.now() > until) resolve(false); else setTimeout(check, 10); };
      check();
    })`);
  }

  async close(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    await this.send('Browser.close', {}, false).catch(() => undefined);
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
    this.child.kill('SIGKILL');
    await rm(this.dataDir, { recursive: true, force: true });
  }
}

/** `icetray ui` against a socket, on a free loopback port; resolves with its URL. */
async function startUi(socket: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [ICETRAY_CLI, 'ui', '--socket', socket, '--address', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`icetray ui did not start:\n${output}`)), 15_000);
    const take = (chunk: Buffer): void => {
      output += chunk.toString();
      const match = /icetray ui: (http:\/\/\S+)/.exec(output);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
  });
  return { child, url };
}

/** A raw HTTP request with a chosen method and Host header (fetch would not send a foreign Host). */
function raw(url: string, method: string, host?: string): Promise<{ status: number; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const req = request(
      { host: target.hostname, port: target.port, path: '/', method, headers: host === undefined ? {} : { host } },
      (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, headers: res.headers });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe.skipIf(!isRoot || !hasChromium)('icetray ui in headless chromium (needs root for pods, and chromium)', () => {
  let serve: ServeProcess;
  let cri: CriClient;
  let net: TestNetwork;
  let ui: { child: ChildProcess; url: string };
  let browser: Browser;
  let before: string;
  const dialogs: string[] = [];

  beforeAll(async () => {
    before = ipForward();
    serve = await startServeProcess();
    net = writeTestNetwork(join(serve.dir, 'net.d'), serve.dir);
    cri = connectCri(serve.socket, 20_000);
    await cri.image.pullImage({ image: { image: BUILTIN_BUSYBOX_IMAGE } });
    ui = await startUi(serve.socket);
    browser = await Browser.launch();
    browser.on((method, params) => {
      if (method === 'Page.javascriptDialogOpening') dialogs.push((params as { message: string }).message);
    });
    await browser.send('Page.navigate', { url: ui.url });
    expect(await browser.waitFor(`document.getElementById('status')?.textContent === 'live'`)).toBe(true);
  }, 60_000);

  afterAll(async () => {
    // Whatever beforeAll got to is undone, even if it failed half-way.
    await (browser as Browser | undefined)?.close();
    (ui as typeof ui | undefined)?.child.kill('SIGTERM');
    for (const pod of (await cri.runtime.listPodSandbox({})).items) {
      await cri.runtime.stopPodSandbox({ podSandboxId: pod.id });
      await cri.runtime.removePodSandbox({ podSandboxId: pod.id });
    }
    cri.close();
    await serve.stop();
    await sh('ip', ['link', 'del', net.bridge]);
    restoreIpForward(before);
  }, 60_000);

  const trayOf = (name: string): string =>
    `[...document.querySelectorAll('.tray')].find((t) => t.querySelector('.pod-name').textContent === ${JSON.stringify(name)})`;

  async function runContainer(podSandboxId: string, pod: PodSandboxConfig, name: string): Promise<string> {
    const config: DeepPartial<ContainerConfig> = {
      metadata: { name },
      image: { image: BUILTIN_BUSYBOX_IMAGE },
      command: ['sleep', '3600'],
      linux: { resources: { memoryLimitInBytes: BigInt(64 * 1024 * 1024) } },
    };
    const { containerId } = await cri.runtime.createContainer({
      podSandboxId,
      config: ContainerConfig.fromPartial(config),
      sandboxConfig: pod,
    });
    await cri.runtime.startContainer({ containerId });
    return containerId;
  }

  it('shows a pod created through the CRI within a second, with its IP, host port and namespace inodes', async () => {
    const pod = podConfig({
      metadata: { name: 'web', namespace: 'default', uid: `uid-web-${String(Date.now())}`, attempt: 0 },
      portMappings: [{ protocol: Protocol.TCP, containerPort: 80, hostPort: 38080, hostIp: '127.0.0.1' }],
    });
    // The page waits for it from before the pod exists; the clock starts when RunPodSandbox returns.
    const shown = browser.waitFor(`${trayOf('web')} !== undefined`, 10_000).then(() => Date.now());
    const { podSandboxId } = await cri.runtime.runPodSandbox({ config: pod });
    const created = Date.now();
    expect(await shown).toBeDefined();
    console.log(`the page showed the pod ${String((await shown) - created)} ms after RunPodSandbox returned`);
    expect((await shown) - created).toBeLessThan(1_000);

    const status = await cri.runtime.podSandboxStatus({ podSandboxId, verbose: true });
    const info = JSON.parse(status.info['info'] ?? '{}') as { pid: number; namespaces: Record<string, { inode: number }> };
    const text = await browser.evaluate<string>(`${trayOf('web')}.textContent`);
    expect(text).toContain(`IP ${status.status?.network?.ip ?? 'none'}`);
    expect(text).toContain('127.0.0.1:38080→80/TCP');
    expect(text).toContain(`pid ${String(info.pid)}, running`);
    for (const kind of ['net', 'ipc', 'uts', 'pid']) expect(text).toContain(`${kind} ${String(info.namespaces[kind]?.inode)}`);
  });

  it('draws containers as cubes that share the pod namespaces, with limit against usage, and feeds their events', async () => {
    const pod = (await cri.runtime.listPodSandbox({})).items.find((p) => p.metadata?.name === 'web');
    const config = podConfig({ metadata: pod?.metadata, portMappings: [] });
    const app = await runContainer(pod?.id ?? '', config, 'app');
    await runContainer(pod?.id ?? '', config, 'sidecar');
    expect(
      await browser.waitFor(`document.querySelector('#events li[data-container="${app}"]')?.textContent.includes('started')`),
    ).toBe(true);
    expect(await browser.waitFor(`${trayOf('web')}.querySelectorAll('.cube.running').length === 2`)).toBe(true);
    const cube = await browser.evaluate<string>(
      `[...${trayOf('web')}.querySelectorAll('.cube')].find((c) => c.querySelector('.container-name')?.textContent === 'app').textContent`,
    );
    expect(cube).toContain('shares net ipc uts pid');
    expect(cube).toContain('own mnt');
    expect(cube).toContain('restarts: 0');
    expect(cube).toMatch(/memory \d+\.\d MiB of 64\.0 MiB/);
    const events = await browser.evaluate<string>(`document.getElementById('events').textContent`);
    expect(events).toContain('created container app in pod web');
    expect(events).toContain('started container sidecar in pod web');
  });

  it('shows a hostile pod name and label as text: no element, no script', async () => {
    // icetray refuses "=" and ";" in names (CNI arguments), not in label values.
    await cri.runtime.runPodSandbox({
      config: podConfig({
        metadata: { name: HOSTILE_NAME, namespace: 'default', uid: `uid-h-${String(Date.now())}`, attempt: 0 },
        labels: { note: HOSTILE },
      }),
    });
    expect(await browser.waitFor(`${trayOf(HOSTILE_NAME)} !== undefined`)).toBe(true);
    expect(await browser.evaluate<string>(`${trayOf(HOSTILE_NAME)}.querySelector('.label').textContent`)).toBe(`note=${HOSTILE}`);
    expect(await browser.evaluate<number>(`document.querySelectorAll('img').length`)).toBe(0);
    expect(await browser.evaluate<number>(`document.scripts.length`)).toBe(1);
    expect(dialogs).toEqual([]);
  });

  it('shows what icetray explain shows when a pod is clicked', async () => {
    const pod = (await cri.runtime.listPodSandbox({})).items.find((p) => p.metadata?.name === 'web');
    const explained = await runIcetray(['explain', 'pod', pod?.id ?? '', '--socket', serve.socket, '--output', 'json']);
    const json = JSON.parse(explained.stdout) as { pause: { pid: number }; namespaces: { kind: string; inode: number }[] };
    await browser.evaluate(`${trayOf('web')}.click()`);
    expect(await browser.waitFor(`document.getElementById('detail-body').textContent.includes('container sidecar')`)).toBe(true);
    const detail = await browser.evaluate<string>(`document.getElementById('detail').textContent`);
    expect(detail).toContain(`pause pid ${String(json.pause.pid)} — running`);
    for (const ns of json.namespaces) expect(detail).toContain(`${ns.kind}${String(ns.inode)}`);
    expect(detail).toContain('sleep 3600');
    expect(detail).toContain('records and live system agree');
    await browser.evaluate(`document.getElementById('detail-close').click()`);
  });

  it('takes the pod away within a second of its removal, and a screenshot', async () => {
    const hostile = (await cri.runtime.listPodSandbox({})).items.find((p) => p.metadata?.name === HOSTILE_NAME);
    await cri.runtime.stopPodSandbox({ podSandboxId: hostile?.id ?? '' });
    await cri.runtime.removePodSandbox({ podSandboxId: hostile?.id ?? '' });
    const removed = Date.now();
    expect(await browser.waitFor(`${trayOf(HOSTILE_NAME)} === undefined`, 1_000)).toBe(true);
    expect(Date.now() - removed).toBeLessThan(1_000);

    const second = podConfig({ metadata: { name: 'batch', namespace: 'jobs', uid: `uid-b-${String(Date.now())}`, attempt: 0 } });
    const { podSandboxId } = await cri.runtime.runPodSandbox({ config: second });
    await runContainer(podSandboxId, second, 'worker');
    expect(await browser.waitFor(`${trayOf('batch')}?.querySelectorAll('.cube.running').length === 1`)).toBe(true);
    const { data } = (await browser.send('Page.captureScreenshot', { format: 'png' })) as { data: string };
    const png = Buffer.from(data, 'base64');
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    const file = join(serve.dir, 'ui.png');
    await writeFile(file, png);
    // ICETRAY_UPDATE_DOCS=1 refreshes the README's picture from this run.
    if (process.env['ICETRAY_UPDATE_DOCS'] === '1') await copyFile(file, join(PACKAGE_ROOT, 'docs', 'ui.png'));
    expect((await readFile(file)).length).toBeGreaterThan(20_000);
  });

  it('answers GET only, with a strict Content-Security-Policy, and only to its own address', async () => {
    const page = await raw(ui.url, 'GET');
    expect(page.status).toBe(200);
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    expect((await raw(ui.url, 'POST')).status).toBe(405);
    // DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends its own name as Host.
    expect((await raw(ui.url, 'GET', `evil.example:${new URL(ui.url).port}`)).status).toBe(421);
  });

  it('refuses a non-loopback address unless forced, and says why', async () => {
    const refused = await runIcetray(['ui', '--socket', serve.socket, '--address', '0.0.0.0:0']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('refusing to listen on 0.0.0.0');
    expect(refused.stderr).toContain('no auth');
    expect(refused.stderr).toContain('--allow-non-loopback');
    const bad = await runIcetray(['ui', '--socket', serve.socket, '--address', 'nowhere']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--address must be HOST:PORT');
  });
});
