import { parentPort, workerData } from 'node:worker_threads';
import { WebSocket } from 'ws';

/**
 * The clients of bench/streaming.ts, in a thread of their own so that reading the streams does
 * not load the event loop whose gRPC latency is measured. Reads every URL it is given as a
 * v5.channel.k8s.io exec session; answers "bytes" with the total received, "close" ends them.
 */
const urls = workerData as string[];
let received = 0;
const sessions = urls.map((url) => {
  const ws = new WebSocket(url.replace(/^http/, 'ws'), ['v5.channel.k8s.io']);
  ws.on('message', (data: Buffer) => (received += data.length));
  ws.on('error', () => undefined);
  return ws;
});
await Promise.all(sessions.map((ws) => new Promise((resolve) => ws.once('open', resolve))));
parentPort?.postMessage({ open: true });
parentPort?.on('message', (message: string) => {
  if (message === 'bytes') parentPort?.postMessage({ bytes: received });
  if (message === 'close') {
    sessions.forEach((ws) => ws.terminate());
    parentPort?.close();
  }
});
