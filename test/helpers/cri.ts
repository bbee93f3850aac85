import { credentials, type Client, type handleUnaryCall, type ServiceError } from '@grpc/grpc-js';
import * as api from '../../src/generated/api.js';
import {
  ImageServiceClient,
  RuntimeServiceClient,
  type ImageServiceServer,
  type RuntimeServiceServer,
} from '../../src/generated/api.js';

/** Any part of a message, nested: fromPartial fills in the rest with defaults. */
type DeepPartial<T> = T extends bigint | string | number | boolean | Buffer
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

/** A CRI client whose unary methods return promises: `await cri.runtime.version({})`. */
export interface CriClient {
  runtime: Promised<RuntimeServiceServer>;
  image: Promised<ImageServiceServer>;
  runtimeClient: RuntimeServiceClient;
  imageClient: ImageServiceClient;
  close(): void;
}

function promised<Service>(client: Client): Promised<Service> {
  return new Proxy({} as Promised<Service>, {
    get(_target, key: string) {
      const method = (
        client as unknown as Record<string, (req: unknown, cb: (err: ServiceError | null, res: unknown) => void) => void>
      )[key];
      if (typeof method !== 'function') throw new Error(`no RPC ${key}`);
      // ts-proto's encoders need every field: complete the partial request with its defaults.
      const type = (api as unknown as Record<string, { fromPartial?: (partial: unknown) => unknown }>)[
        `${key.charAt(0).toUpperCase()}${key.slice(1)}Request`
      ];
      if (type?.fromPartial === undefined) throw new Error(`no request message for ${key}`);
      const fromPartial = type.fromPartial;
      return (request: unknown) =>
        new Promise((resolve, reject) => {
          method.call(client, fromPartial(request), (err, response) => (err ? reject(err) : resolve(response)));
        });
    },
  });
}

/** Connects the generated grpc-js clients of both CRI services to a Unix socket. */
export function connectCri(socket: string): CriClient {
  const address = `unix://${socket}`;
  const runtimeClient = new RuntimeServiceClient(address, credentials.createInsecure());
  const imageClient = new ImageServiceClient(address, credentials.createInsecure());
  return {
    runtime: promised<RuntimeServiceServer>(runtimeClient),
    image: promised<ImageServiceServer>(imageClient),
    runtimeClient,
    imageClient,
    close() {
      runtimeClient.close();
      imageClient.close();
    },
  };
}
