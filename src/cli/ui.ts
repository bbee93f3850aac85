import { credentials } from '@grpc/grpc-js';
import { isIP } from 'node:net';
import { InvalidArgumentError } from '../errors.js';
import { ContainerEventType, GetEventsRequest, RuntimeServiceClient, type ContainerEventResponse } from '../generated/api.js';
import { NodeModel } from '../ui/model.js';
import { startUiServer, type UiEvent, type UiSource } from '../ui/server.js';
import { CONFIG_HELP, CONFIG_OPTIONS, loadFromOptions, type Values } from './config-options.js';
import { connectCri } from './cri-client.js';

export const UI_HELP = `Usage: icetray ui [options]

Serve a live web page of this node: each pod drawn as a tray with its pause process and its
containers as cubes, the namespaces they share (inodes from /proc), the pod IP and host ports,
cgroup limits against usage, restarts, and the CRI's container events as they happen. Click a
pod for what "icetray explain" shows. It talks to the running icetray over its CRI socket.

The page has no login and shows the node's processes, namespaces and pod details: it listens
on loopback only unless you force otherwise (reach it from elsewhere through an SSH tunnel).

Options:
${CONFIG_HELP}  --address HOST:PORT the address to listen on (default 127.0.0.1:10355; PORT alone
                      means 127.0.0.1:PORT; port 0 picks a free one)
  --allow-non-loopback
                      listen on a non-loopback address anyway: anyone who reaches it sees
                      the node's processes and pods, without auth
  -h, --help          show this help
`;

export const UI_OPTIONS = {
  ...CONFIG_OPTIONS,
  address: { type: 'string' },
  'allow-non-loopback': { type: 'boolean' },
} as const;

function isLoopback(host: string): boolean {
  return host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

/** HOST:PORT, [IPv6]:PORT or PORT; `localhost` is 127.0.0.1 (its resolution is the system's to choose). */
export function parseAddress(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]:|([^:[\]]+):)?(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  const host = match?.[1] ?? match?.[2] ?? '127.0.0.1';
  if (match === null || port > 65_535 || (host !== 'localhost' && isIP(host) === 0)) {
    throw new InvalidArgumentError(`--address must be HOST:PORT with an IP address (such as 127.0.0.1:10355), got "${text}"`);
  }
  return { host: host === 'localhost' ? '127.0.0.1' : host, port };
}

const TYPES: Record<ContainerEventType, string> = {
  [ContainerEventType.CONTAINER_CREATED_EVENT]: 'created',
  [ContainerEventType.CONTAINER_STARTED_EVENT]: 'started',
  [ContainerEventType.CONTAINER_STOPPED_EVENT]: 'stopped',
  [ContainerEventType.CONTAINER_DELETED_EVENT]: 'deleted',
  [ContainerEventType.UNRECOGNIZED]: 'unknown',
};

function toUiEvent(e: ContainerEventResponse): UiEvent {
  return {
    type: TYPES[e.containerEventType],
    containerId: e.containerId,
    containerName: e.containersStatuses.find((c) => c.id === e.containerId)?.metadata?.name ?? '',
    podId: e.podSandboxStatus?.id ?? '',
    podName: e.podSandboxStatus?.metadata?.name ?? '',
    createdAt: e.createdAt.toString(),
  };
}

/**
 * GetContainerEvents, reopened a second after it ends (icetray restarted): each event goes to the
 * listeners. Returns the function that closes it.
 */
function followEvents(socket: string, emit: (event: UiEvent) => void): () => void {
  const client = new RuntimeServiceClient(`unix://${socket}`, credentials.createInsecure());
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  let call: ReturnType<RuntimeServiceClient['getContainerEvents']> | undefined;
  const open = (): void => {
    call = client.getContainerEvents(GetEventsRequest.create());
    call.on('data', (event: ContainerEventResponse) => emit(toUiEvent(event)));
    call.on('error', () => undefined);
    call.on('close', () => {
      if (!closed) retry = setTimeout(open, 1_000);
    });
  };
  open();
  return () => {
    closed = true;
    clearTimeout(retry);
    call?.cancel();
    client.close();
  };
}

export async function ui(values: Values): Promise<number> {
  const { config } = loadFromOptions(values);
  const { host, port } = parseAddress(typeof values['address'] === 'string' ? values['address'] : '127.0.0.1:10355');
  if (!isLoopback(host) && values['allow-non-loopback'] !== true) {
    throw new InvalidArgumentError(
      `refusing to listen on ${host}: icetray ui has no auth and shows this node's processes, namespaces and pods to anyone who reaches it. Use a loopback address (and an SSH tunnel: ssh -L 10355:127.0.0.1:10355 NODE), or pass --allow-non-loopback if this network is yours alone`,
    );
  }
  const cri = connectCri(config.socket, 5_000);
  const model = new NodeModel(cri);
  const listeners = new Set<(event: UiEvent) => void>();
  const stopEvents = followEvents(config.socket, (event) => {
    for (const listener of listeners) listener(event);
  });
  const source: UiSource = {
    view: () => model.view(),
    fingerprint: () => model.fingerprint(),
    detail: (id) => model.detail(id),
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  const server = await startUiServer(source, host, port).catch((err: unknown) => {
    stopEvents();
    cri.close();
    throw err;
  });
  process.stdout.write(`icetray ui: ${server.url} (the node behind ${config.socket}; no auth — keep it on loopback)\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.close();
  stopEvents();
  cri.close();
  return 0;
}
