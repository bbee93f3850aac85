import { Client, credentials, Metadata, type handleUnaryCall, type ServiceError } from '@grpc/grpc-js';
import * as api from '../generated/api.js';
import {
  ImageServiceClient,
  RuntimeServiceClient,
  type ImageServiceServer,
  type RuntimeServiceServer,
} from '../generated/api.js';

/**
 * A CRI client for icetray's own commands (doctor, explain, demo) — and its tests: the two
 * generated grpc-js clients with promise-returning methods, each request completed from a
 * partial one, as a kubelet or crictl would call the runtime.
 */

/** Any part of a message, nested: fromPartial fills in the rest with defaults. */
export type DeepPartial<T> = T extends bigint | string | number | boolean | Buffer
  ? T
  : T extends (infer U)[]
    ? DeepPartial<U>[]
    : T extends object
      ? { [K in keyof T]?: DeepPartial<T[K]> }
      : T;

type Promised<Service> = {
  [
    K in keyof Service as Service[K] extends handleUnaryCall<infer _Req, infer _Res> ? K : never
  ]: Service[K] extends handleUnaryCall<infer Req, infer Res> ? (request: DeepPartial<Req>) => Promise<Res> : never;
};

export interface CriClient {
  runtime: Promised<RuntimeServiceServer>;
  image: Promised<ImageServiceServer>;
  /** The gRPC status code of the removed v1alpha2 Version call (12 = UNIMPLEMENTED). */
  v1alpha2Code(): Promise<number>;
  close(): void;
}

type Callback = (err: ServiceError | null, res: unknown) => void;
type Method = (req: unknown, metadata: Metadata, options: { deadline?: Date }, cb: Callback) => void;

function promised<Service>(client: Client, deadlineMs: number | undefined): Promised<Service> {
  return new Proxy({} as Promised<Service>, {
    get(_target, key: string) {
      const method = (client as unknown as Record<string, Method>)[key];
      // ts-proto's encoders need every field: complete the partial request with its defaults.
      const type = (api as unknown as Record<string, { fromPartial?: (partial: unknown) => unknown }>)[
        `${key.charAt(0).toUpperCase()}${key.slice(1)}Request`
      ];
      if (typeof method !== 'function' || type?.fromPartial === undefined) throw new Error(`no unary RPC ${key}`);
      const fromPartial = type.fromPartial;
      return (request: unknown) =>
        new Promise((resolve, reject) => {
          const options = deadlineMs === undefined ? {} : { deadline: new Date(Date.now() + deadlineMs) };
          method.call(client, fromPartial(request), new Metadata(), options, (err, response) =>
            err ? reject(err) : resolve(response),
          );
        });
    },
  });
}

/** Connects to a CRI socket; `deadlineMs` bounds every call (none by default). */
export function connectCri(socket: string, deadlineMs?: number): CriClient {
  const address = `unix://${socket}`;
  const runtimeClient = new RuntimeServiceClient(address, credentials.createInsecure());
  const imageClient = new ImageServiceClient(address, credentials.createInsecure());
  const raw = new Client(address, credentials.createInsecure());
  return {
    runtime: promised<RuntimeServiceServer>(runtimeClient, deadlineMs),
    image: promised<ImageServiceServer>(imageClient, deadlineMs),
    v1alpha2Code: () =>
      new Promise((resolve) => {
        const identity = (value: Buffer): Buffer => value;
        raw.makeUnaryRequest(
          '/runtime.v1alpha2.RuntimeService/Version',
          identity,
          identity,
          Buffer.alloc(0),
          { deadline: new Date(Date.now() + 5_000) },
          (err: ServiceError | null) => {
            resolve(err?.code ?? 0);
          },
        );
      }),
    close() {
      runtimeClient.close();
      imageClient.close();
      raw.close();
    },
  };
}
