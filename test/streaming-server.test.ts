import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { InvalidArgumentError } from '../src/errors.js';
import { setLogLevel } from '../src/log.js';
import { AttachRequest, ExecRequest, PortForwardRequest } from '../src/generated/api.js';
import { startStreamingServer, type StreamingServer } from '../src/streaming/server.js';
import { TestBackend } from './helpers/streaming-backend.js';

/** The streaming server's HTTP surface and the WebSocket channel protocol, byte for byte. */

interface WsResult {
  protocol: string;
  messages: Buffer[];
  closeCode: number;
}

/** Opens a WebSocket session, sends `input` messages once open, and collects everything. */
function wsSession(url: string, protocols: string[], input: Buffer[] = []): Promise<WsResult> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws'), protocols);
    const messages: Buffer[] = [];
    ws.on('open', () => {
      for (const message of input) ws.send(message);
    });
    ws.on('message', (data: Buffer) => messages.push(data));
    ws.on('close', (closeCode) => {
      resolve({ protocol: ws.protocol, messages, closeCode });
    });
    ws.on('error', reject);
  });
}

function channel(messages: Buffer[], number: number): string {
  return Buffer.concat(messages.filter((m) => m[0] === number).map((m) => m.subarray(1))).toString();
}

function httpStatus(url: string, method: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers });
    req.on('response', (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    // An upgrade the server refuses still answers with a normal status line.
    req.on('upgrade', (response, socket) => {
      socket.destroy();
      resolve(response.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

const exec = (cmd: string[], flags: Partial<ExecRequest> = {}): ExecRequest =>
  ExecRequest.fromPartial({ containerId: 'ctr', cmd, stdout: true, stderr: true, ...flags });

describe('streaming server', () => {
  let backend: TestBackend;
  let server: StreamingServer;
  beforeAll(async () => {
    setLogLevel('silent');
    backend = new TestBackend();
    server = await startStreamingServer({ backend, idleTimeoutMs: 500 });
  });
  afterAll(async () => {
    await server.close();
    await backend.close();
  });

  it('returns absolute loopback URLs', () => {
    expect(server.execUrl(exec(['true']))).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/exec\/[A-Za-z0-9_-]+$/);
    expect(server.portForwardUrl(PortForwardRequest.fromPartial({ podSandboxId: 'pod' }))).toMatch(/\/portforward\//);
  });

  it.each([
    ['tty with stderr', exec(['sh'], { tty: true })],
    ['no stream at all', exec(['sh'], { stdout: false, stderr: false })],
    ['no container id', exec(['sh'], { containerId: '' })],
  ])('rejects an exec request with %s', (_name, bad) => {
    expect(() => server.execUrl(bad)).toThrow(InvalidArgumentError);
  });

  it('answers 404 for an unknown token, a used one and one of another kind', async () => {
    const base = server.baseUrl;
    expect(await httpStatus(`${base}/exec/nosuchtoken`, 'POST')).toBe(404);
    const url = server.execUrl(exec(['true']));
    expect(await httpStatus(url, 'GET')).toBe(400); // not an upgrade, but the token is spent
    expect(await httpStatus(url, 'GET')).toBe(404);
    const attach = server.attachUrl(AttachRequest.fromPartial({ containerId: 'ctr', stdout: true }));
    expect(await httpStatus(attach.replace('/attach/', '/exec/'), 'POST')).toBe(404);
  });

  it('negotiates SPDY sub-protocols like httpstream.Handshake', async () => {
    const spdy = { Connection: 'Upgrade', Upgrade: 'SPDY/3.1' };
    expect(await httpStatus(server.execUrl(exec(['true'])), 'POST', spdy)).toBe(400);
    const refused = await httpStatus(server.execUrl(exec(['true'])), 'POST', {
      ...spdy,
      'X-Stream-Protocol-Version': 'v9.channel.k8s.io',
    });
    expect(refused).toBe(403);
    const upgraded = await httpStatus(server.execUrl(exec(['true'])), 'POST', {
      ...spdy,
      'X-Stream-Protocol-Version': 'v4.channel.k8s.io',
    });
    expect(upgraded).toBe(101);
  });

  it('runs an exec over WebSocket v5 with the kubelet greeting, channels and Success status', async () => {
    const result = await wsSession(server.execUrl(exec(['sh', '-c', 'printf out; printf err >&2'])), ['v5.channel.k8s.io']);
    expect(result.protocol).toBe('v5.channel.k8s.io');
    expect(result.messages[0]).toEqual(Buffer.from([1]));
    expect(channel(result.messages, 1)).toBe('out');
    expect(channel(result.messages, 2)).toBe('err');
    expect(channel(result.messages, 3)).toBe('{"metadata":{},"status":"Success"}');
    expect(result.closeCode).toBe(1000);
  });

  it('reports a non-zero exit as the v4 NonZeroExitCode status client-go decodes', async () => {
    const result = await wsSession(server.execUrl(exec(['sh', '-c', 'exit 7'])), ['v4.channel.k8s.io']);
    expect(result.protocol).toBe('v4.channel.k8s.io');
    expect(JSON.parse(channel(result.messages, 3))).toEqual({
      metadata: {},
      status: 'Failure',
      message: 'command terminated with non-zero exit code: error executing command [sh -c exit 7], exit code 7',
      reason: 'NonZeroExitCode',
      details: { causes: [{ reason: 'ExitCode', message: '7' }] },
    });
  });

  it('ends stdin on the v5 close signal', async () => {
    const url = server.execUrl(exec(['cat'], { stdin: true, stderr: false }));
    const result = await wsSession(url, ['v5.channel.k8s.io'], [Buffer.from('\u0000ping'), Buffer.from([255, 0])]);
    expect(channel(result.messages, 1)).toBe('ping');
    expect(channel(result.messages, 3)).toContain('Success');
  });

  it('reports a failing backend as an InternalError status', async () => {
    const url = server.attachUrl(AttachRequest.fromPartial({ containerId: 'nosuch', stdout: true }));
    const result = await wsSession(url, ['v5.channel.k8s.io']);
    expect(JSON.parse(channel(result.messages, 3))).toMatchObject({
      status: 'Failure',
      reason: 'InternalError',
      code: 500,
      message: 'Internal error occurred: error attaching to container: container "nosuch" not found',
    });
  });

  it('closes a session that stays idle past the idle timeout, and the exec is aborted', async () => {
    const started = Date.now();
    const result = await wsSession(server.execUrl(exec(['sleep', '30'])), ['v5.channel.k8s.io']);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(channel(result.messages, 3)).toBe('');
    expect(result.closeCode).not.toBe(1000);
    await expect.poll(() => backend.aborted).toContainEqual(['sleep', '30']);
  });

  it('refuses the old WebSocket port-forward protocol (client-go tunnels SPDY instead)', async () => {
    const url = server.portForwardUrl(PortForwardRequest.fromPartial({ podSandboxId: 'pod', port: [80] }));
    await expect(wsSession(url, ['portforward.k8s.io'])).rejects.toThrow('400');
  });
});
