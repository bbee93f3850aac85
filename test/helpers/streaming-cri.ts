import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server, ServerCredentials, status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import {
  AttachResponse,
  ExecResponse,
  ImageFsInfoResponse,
  ImageServiceService,
  PortForwardResponse,
  RuntimeServiceService,
  VersionResponse,
  type AttachRequest,
  type ExecRequest,
  type PortForwardRequest,
} from '../../src/generated/api.js';
import { setLogLevel } from '../../src/log.js';
import { startStreamingServer, type StreamingServer, type StreamingServerOptions } from '../../src/streaming/server.js';
import { TestBackend } from './streaming-backend.js';
import { CRICTL, crictlFlags } from './tools.js';

/** Answers a unary call from a function that may throw (an error becomes its gRPC status). */
function unaryCall<Req, Res>(handler: (request: Req) => Res) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    try {
      callback(null, handler(call.request));
    } catch (err) {
      callback({ code: status.INVALID_ARGUMENT, details: err instanceof Error ? err.message : String(err) });
    }
  };
}

/**
 * A test-only CRI server with just what crictl's exec, attach and port-forward call: Version
 * and ImageFsInfo (cri-client checks both on connect), then Exec / Attach / PortForward,
 * answered with URLs of a real streaming server over a TestBackend.
 */
export interface StreamingCri {
  dir: string;
  socket: string;
  backend: TestBackend;
  streaming: StreamingServer;
  /** Runs crictl against this server; resolves with its exit code and output. */
  crictl(args: string[], options?: { stdin?: string }): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Starts a long-running crictl (port-forward, attach): wait for its output, then stop it. */
  crictlProcess(args: string[]): CrictlProcess;
  /** crictl's global flags for this server. */
  crictlFlags: string[];
  close(): Promise<void>;
}

export interface CrictlProcess {
  child: ChildProcessWithoutNullStreams;
  /** Resolves once stdout or stderr so far matches. */
  ready(pattern: RegExp, timeoutMs?: number): Promise<void>;
  output(): string;
  /** Waits for it to exit by itself. */
  exited(): Promise<number | null>;
  /** Signals it (SIGTERM by default), then waits for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

function crictlProcess(args: string[]): CrictlProcess {
  const child = spawn(CRICTL, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer): void => {
    output += chunk.toString();
    for (const listener of listeners) listener();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  return {
    child,
    output: () => output,
    exited: () => exited,
    ready(pattern, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (!pattern.test(output)) return;
          listeners.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`crictl never printed ${pattern.source}; output: ${output}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export async function startStreamingCri(options: Partial<StreamingServerOptions> = {}): Promise<StreamingCri> {
  setLogLevel('silent');
  const dir = await mkdtemp(join(tmpdir(), 'icetray-streaming-'));
  const socket = join(dir, 'cri.sock');
  const backend = new TestBackend();
  const streaming = await startStreamingServer({ ...options, backend });
  const server = new Server();
  server.addService(RuntimeServiceService, {
    version: unaryCall(() =>
      VersionResponse.create({ version: '0.1.0', runtimeName: 'test', runtimeVersion: '0', runtimeApiVersion: 'v1' }),
    ),
    exec: unaryCall((request: ExecRequest) => ExecResponse.create({ url: streaming.execUrl(request) })),
    attach: unaryCall((request: AttachRequest) => AttachResponse.create({ url: streaming.attachUrl(request) })),
    portForward: unaryCall((request: PortForwardRequest) =>
      PortForwardResponse.create({ url: streaming.portForwardUrl(request) }),
    ),
  });
  server.addService(ImageServiceService, {
    imageFsInfo: unaryCall(() => ImageFsInfoResponse.create({})),
  });
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix://${socket}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
  });
  const flags = [...crictlFlags(socket), '--timeout', '10s'];
  return {
    dir,
    socket,
    backend,
    streaming,
    crictlFlags: flags,
    crictlProcess: (args) => crictlProcess([...flags, ...args]),
    crictl(args, runOptions = {}) {
      return new Promise((resolve, reject) => {
        const child = spawn(CRICTL, [...flags, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        child.once('error', reject);
        child.once('close', (code) => {
          resolve({ code: code ?? -1, stdout, stderr });
        });
        if (runOptions.stdin !== undefined) child.stdin.end(runOptions.stdin);
      });
    },
    async close() {
      await new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
      });
      await streaming.close();
      await backend.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
