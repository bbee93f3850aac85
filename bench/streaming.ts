import { Worker } from 'node:worker_threads';
import { connectCri, type CriClient } from '../src/cli/cri-client.js';
import { ContainerConfig, PodSandboxConfig } from '../src/generated/api.js';
import { BUILTIN_BUSYBOX_IMAGE } from '../src/images/store.js';
import type { Runtime } from '../src/server/runtime.js';
import { startServer } from '../src/server/serve.js';
import { ms, percentile, printTable } from './stats.js';

/** Sequential calls of `call`, `count` times: their latencies in ms. */
async function latencies(count: number, call: () => Promise<unknown>): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await call();
    samples.push(performance.now() - started);
  }
  return samples;
}

/**
 * `count` exec sessions of a command that writes without pause, read as the kubelet's WebSocket
 * clients read them (v5.channel.k8s.io) by a worker thread (bench/stream-consumer.ts).
 */
async function busyStreams(
  cri: CriClient,
  containerId: string,
  count: number,
): Promise<{ bytes(): Promise<number>; close(): void }> {
  const urls: string[] = [];
  for (let i = 0; i < count; i++) {
    const { url } = await cri.runtime.exec({
      containerId,
      cmd: ['sh', '-c', 'while :; do cat /bin/busybox; done'],
      stdout: true,
    });
    urls.push(url);
  }
  const worker = new Worker(new URL('./stream-consumer.js', import.meta.url), { workerData: urls });
  const next = (): Promise<{ open?: boolean; bytes?: number }> => new Promise((resolve) => worker.once('message', resolve));
  await next();
  return {
    bytes: async () => {
      const answer = next();
      worker.postMessage('bytes');
      return (await answer).bytes ?? 0;
    },
    close: () => worker.postMessage('close'),
  };
}

/**
 * Whether busy streams slow the gRPC API down: Version and ListContainers latency over the
 * socket with no stream, then while `streams` exec sessions each pour output through the
 * streaming server as fast as they can.
 */
export async function benchStreaming(runtime: Runtime, streams: number): Promise<void> {
  const server = await startServer(runtime);
  const cri = connectCri(server.socket);
  try {
    await runtime.images.pull(BUILTIN_BUSYBOX_IMAGE, undefined, new AbortController().signal);
    const pod = await runtime.sandboxes.run(
      PodSandboxConfig.fromPartial({ metadata: { name: 'bench-s', namespace: 'bench', uid: 'bench-s-uid' } }),
      '',
    );
    const container = await runtime.containers.create(
      pod.id,
      ContainerConfig.fromPartial({
        metadata: { name: 's' },
        image: { image: BUILTIN_BUSYBOX_IMAGE },
        command: ['sleep', '3600'],
      }),
    );
    await runtime.containers.start(container.id);

    const measure = async (): Promise<[number[], number[]]> => [
      await latencies(300, () => cri.runtime.version({})),
      await latencies(300, () => cri.runtime.listContainers({})),
    ];
    const row = (load: string, [version, list]: [number[], number[]], throughput: string): string[] => [
      load,
      ms(percentile(version, 50)),
      ms(percentile(version, 99)),
      ms(percentile(list, 50)),
      ms(percentile(list, 99)),
      throughput,
    ];
    const idle = await measure();
    const sessions = await busyStreams(cri, container.id, streams);
    const before = await sessions.bytes();
    const started = performance.now();
    const busy = await measure();
    const seconds = (performance.now() - started) / 1000;
    const mib = ((await sessions.bytes()) - before) / 1024 / 1024;
    sessions.close();
    printTable(
      `gRPC latency while exec streams pour output (${String(streams)} WebSocket sessions of \`cat\` in a loop, 300 calls each)`,
      ['load', 'Version p50', 'Version p99', 'ListContainers p50', 'ListContainers p99', 'streamed'],
      [row('no stream', idle, '-'), row(`${String(streams)} busy streams`, busy, `${(mib / seconds).toFixed(0)} MiB/s`)],
    );
  } finally {
    cri.close();
    await server.stop();
  }
}
