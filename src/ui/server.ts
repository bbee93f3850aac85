import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { messageOf } from '../errors.js';
import type { NodeView, PodDetail } from './model.js';
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from './page.js';

/** One container event from GetContainerEvents, with the names the page shows. */
export interface UiEvent {
  type: string;
  containerId: string;
  containerName: string;
  podId: string;
  podName: string;
  /** Nanoseconds since the epoch, as a decimal string. */
  createdAt: string;
}

/** Where the page's data comes from: the node model over the CRI, and the CRI's event stream. */
export interface UiSource {
  view(): Promise<NodeView>;
  /** Changes whenever pods or containers come, go or change state. */
  fingerprint(): Promise<string>;
  detail(podId: string): Promise<PodDetail>;
  /** Calls `listener` for each container event until the returned function is called. */
  subscribe(listener: (event: UiEvent) => void): () => void;
}

export interface UiServer {
  url: string;
  close(): Promise<void>;
}

/** How often the page's view is checked for new or changed pods (the page must show a new pod within a second). */
const POLL_MS = 250;
/** How often the view is rebuilt anyway, for memory and CPU usage. */
const REFRESH_MS = 2_000;
const BACKLOG = 100;

/** No inline script or style, nothing from elsewhere: markup in a pod's name can do nothing. */
const SECURITY_HEADERS = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

const FILES: Record<string, { type: string; body: string }> = {
  '/': { type: 'text/html; charset=utf-8', body: PAGE_HTML },
  '/page.css': { type: 'text/css; charset=utf-8', body: PAGE_CSS },
  '/page.js': { type: 'text/javascript; charset=utf-8', body: PAGE_JS },
};

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/**
 * Serves the page, its JSON and a Server-Sent Events stream on `host:port`. GET only; a request
 * whose Host is not the address it was sent to is refused, so a web page elsewhere cannot reach
 * this one through DNS rebinding (it has no auth: it shows the node's processes).
 */
export async function startUiServer(source: UiSource, host: string, port: number): Promise<UiServer> {
  const streams = new Set<ServerResponse>();
  const backlog: UiEvent[] = [];
  let last = '';
  let lastPrint = '';
  let lastBuilt = 0;
  let dirty = true;
  let timer: NodeJS.Timeout | undefined;
  let polling = false;
  let fault = '';

  const broadcast = (event: string, data: string): void => {
    for (const res of streams) res.write(`event: ${event}\ndata: ${data}\n\n`);
  };

  const unsubscribe = source.subscribe((event) => {
    backlog.push(event);
    if (backlog.length > BACKLOG) backlog.shift();
    dirty = true;
    broadcast('cri', JSON.stringify(event));
  });

  // Polls only while a page is open; each tick checks the cheap fingerprint, and rebuilds the
  // view when it changed, after an event, or every REFRESH_MS for the usage figures.
  const tick = async (): Promise<void> => {
    try {
      const print = await source.fingerprint();
      if (print !== lastPrint || dirty || Date.now() - lastBuilt >= REFRESH_MS) {
        dirty = false;
        lastPrint = print;
        lastBuilt = Date.now();
        const json = JSON.stringify(await source.view());
        if (json !== last || fault !== '') broadcast('node', json);
        last = json;
      }
      fault = '';
    } catch (err) {
      const message = `cannot reach icetray: ${messageOf(err)}`;
      if (message !== fault) broadcast('fault', JSON.stringify(message));
      fault = message;
    }
    if (streams.size > 0) timer = setTimeout(() => void tick(), POLL_MS);
    else polling = false;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const address = server.address() as AddressInfo;
    const allowed = [`${host}:${address.port}`, `localhost:${address.port}`, `[${host}]:${address.port}`];
    if (!allowed.includes(req.headers.host ?? '')) {
      send(res, 421, 'text/plain; charset=utf-8', `icetray ui answers only to ${allowed[0] ?? ''}\n`);
      return;
    }
    if (req.method !== 'GET') {
      res.setHeader('Allow', 'GET');
      send(res, 405, 'text/plain; charset=utf-8', 'icetray ui is read-only: GET only\n');
      return;
    }
    const path = new URL(req.url ?? '/', 'http://ui').pathname;
    const file = FILES[path];
    if (file !== undefined) {
      send(res, 200, file.type, file.body);
    } else if (path === '/api/node') {
      send(res, 200, 'application/json', JSON.stringify(await source.view()));
    } else if (path.startsWith('/api/pod/')) {
      const id = decodeURIComponent(path.slice('/api/pod/'.length));
      const detail = await source.detail(id).catch((err: unknown) => new Error(messageOf(err)));
      if (detail instanceof Error) send(res, 404, 'text/plain; charset=utf-8', `${detail.message}\n`);
      else send(res, 200, 'application/json', JSON.stringify(detail));
    } else if (path === '/events') {
      res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/event-stream' });
      for (const event of backlog) res.write(`event: cri\ndata: ${JSON.stringify(event)}\n\n`);
      if (last !== '') res.write(`event: node\ndata: ${last}\n\n`);
      streams.add(res);
      req.on('close', () => streams.delete(res));
      dirty = true;
      if (!polling) {
        polling = true;
        void tick();
      }
    } else {
      send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 502, 'text/plain; charset=utf-8', `cannot reach icetray: ${messageOf(err)}\n`);
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  const shown = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  return {
    url: `http://${shown}:${bound.port}/`,
    async close() {
      unsubscribe();
      clearTimeout(timer);
      for (const res of streams) res.end();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
