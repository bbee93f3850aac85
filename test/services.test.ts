import { loadPackageDefinition, credentials, status, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../src/paths.js';
import { startTestServer, type TestServer } from './helpers/server.js';

/**
 * Reads proto/api.proto with @grpc/proto-loader — independently of the ts-proto output the server
 * is built from — and calls every method of both services. Each must either answer, fail with a
 * status of its own, or say UNIMPLEMENTED naming itself; grpc-js's generic "The server does not
 * implement the method" means a method was forgotten.
 */
const definition = loadSync(join(PACKAGE_ROOT, 'proto', 'api.proto'), { keepCase: false, longs: String, defaults: true });
const runtimeV1 = (loadPackageDefinition(definition)['runtime'] as Record<string, Record<string, unknown>>)['v1'] ?? {};

interface MethodInfo {
  service: string;
  name: string;
  originalName: string;
  responseStream: boolean;
}

const methods: MethodInfo[] = ['RuntimeService', 'ImageService'].flatMap((service) =>
  Object.entries(
    definition[`runtime.v1.${service}`] as Record<string, { originalName?: string; responseStream: boolean; path: string }>,
  ).map(([name, method]) => ({
    service,
    name,
    originalName: method.path.split('/').pop() ?? name,
    responseStream: method.responseStream,
  })),
);

type Callback = (err: ServiceError | null) => void;
type AnyMethod = (request: object, callback: Callback) => void;
type StreamMethod = (request: object) => NodeJS.EventEmitter & { cancel(): void };

/** Calls a method with an empty request; resolves with the status it ends in (OK when it answers). */
function probe(client: Client, method: MethodInfo): Promise<{ code: status; details: string }> {
  const fn = (client as unknown as Record<string, unknown>)[method.name];
  if (!method.responseStream) {
    return new Promise((resolve) => {
      (fn as AnyMethod).call(client, {}, (err) => resolve({ code: err?.code ?? status.OK, details: err?.details ?? '' }));
    });
  }
  return new Promise((resolve) => {
    const stream = (fn as StreamMethod).call(client, {});
    // A stream that answers anything (or stays open) is implemented.
    const timer = setTimeout(() => {
      stream.cancel();
      resolve({ code: status.OK, details: 'stream open' });
    }, 500);
    stream.on('data', () => undefined);
    stream.on('error', (err: ServiceError) => {
      clearTimeout(timer);
      resolve({ code: err.code, details: err.details });
    });
    stream.on('end', () => {
      clearTimeout(timer);
      resolve({ code: status.OK, details: 'stream ended' });
    });
  });
}

describe('every method of api.proto', () => {
  let t: TestServer;
  const clients: Record<string, Client> = {};
  beforeAll(async () => {
    t = await startTestServer();
    for (const service of ['RuntimeService', 'ImageService']) {
      const Ctor = runtimeV1[service] as new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client;
      clients[service] = new Ctor(`unix://${t.socket}`, credentials.createInsecure());
    }
  });
  afterAll(async () => {
    for (const client of Object.values(clients)) client.close();
    await t.close();
  });

  it('covers both services (the proto was read)', () => {
    expect(methods.filter((m) => m.service === 'RuntimeService').length).toBeGreaterThan(30);
    expect(methods.filter((m) => m.service === 'ImageService').length).toBeGreaterThanOrEqual(6);
  });

  it.each(methods.map((m) => [`${m.service}.${m.originalName}`, m] as const))(
    '%s is implemented or explicitly UNIMPLEMENTED',
    async (_label, method) => {
      const client = clients[method.service];
      if (client === undefined) throw new Error(`no client for ${method.service}`);
      const result = await probe(client, method);
      if (result.code === status.UNIMPLEMENTED) {
        expect(result.details).toContain(method.originalName);
        expect(result.details).not.toMatch(/does not implement the method/);
      }
    },
  );
});
