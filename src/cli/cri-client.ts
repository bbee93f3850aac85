import { Client, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import type { CriProbe } from '../doctor/cri-checks.js';
import { ImageServiceClient, RuntimeServiceClient, type PodSandboxStatusResponse } from '../generated/api.js';

/** The CRI calls the CLI commands make (doctor's probe, and explain's look-ups). */
export interface CliCri extends CriProbe {
  podSandboxStatus(id: string): Promise<PodSandboxStatusResponse>;
}

const DEADLINE_MS = 5_000;
const deadline = (): Date => new Date(Date.now() + DEADLINE_MS);

export function connectCri(socket: string): CliCri {
  const address = `unix://${socket}`;
  const runtime = new RuntimeServiceClient(address, credentials.createInsecure());
  const image = new ImageServiceClient(address, credentials.createInsecure());
  const raw = new Client(address, credentials.createInsecure());
  return {
    version: () =>
      new Promise((resolve, reject) => {
        runtime.version({ version: '0.1.0' }, new Metadata(), { deadline: deadline() }, (err, res) =>
          err ? reject(err) : resolve(res),
        );
      }),
    imageStatus: (ref) =>
      new Promise((resolve, reject) => {
        image.imageStatus(
          { image: { image: ref, annotations: {}, userSpecifiedImage: ref, runtimeHandler: '', imageRef: '' }, verbose: false },
          new Metadata(),
          { deadline: deadline() },
          (err, res) => (err ? reject(err) : resolve(res)),
        );
      }),
    podSandboxStatus: (id) =>
      new Promise((resolve, reject) => {
        runtime.podSandboxStatus({ podSandboxId: id, verbose: true }, new Metadata(), { deadline: deadline() }, (err, res) =>
          err ? reject(err) : resolve(res),
        );
      }),
    v1alpha2Code: () =>
      new Promise((resolve) => {
        const identity = (value: Buffer): Buffer => value;
        raw.makeUnaryRequest(
          '/runtime.v1alpha2.RuntimeService/Version',
          identity,
          identity,
          Buffer.alloc(0),
          { deadline: deadline() },
          (err: ServiceError | null) => {
            resolve(err?.code ?? 0);
          },
        );
      }),
    close() {
      runtime.close();
      image.close();
      raw.close();
    },
  };
}
