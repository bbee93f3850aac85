import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ContainerConfig } from '../generated/api.js';
import { loadRecords, saveRecord, type LoadedRecords } from '../persist.js';
import type { Container } from './container.js';

/** Containers on disk: <root_dir>/containers/<id>/container.json. */
const RECORD = 'container.json';

/** The JSON form: int64 nanoseconds as strings, the config as protobuf bytes. */
interface ContainerRecord extends Omit<Container, 'config' | 'createdAt' | 'startedAt' | 'finishedAt'> {
  config: string;
  createdAt: string;
  startedAt: string;
  finishedAt: string;
}

export function containersDir(rootDir: string): string {
  return join(rootDir, 'containers');
}

export async function saveContainer(container: Container): Promise<void> {
  const record: ContainerRecord = {
    ...container,
    config: Buffer.from(ContainerConfig.encode(container.config).finish()).toString('base64'),
    createdAt: container.createdAt.toString(),
    startedAt: container.startedAt.toString(),
    finishedAt: container.finishedAt.toString(),
  };
  await saveRecord(container.dir, RECORD, record);
}

export function loadContainers(rootDir: string): Promise<LoadedRecords<Container>> {
  return loadRecords(containersDir(rootDir), RECORD, (json) => {
    const record = json as ContainerRecord;
    return {
      ...record,
      config: ContainerConfig.decode(Buffer.from(record.config, 'base64')),
      createdAt: BigInt(record.createdAt),
      startedAt: BigInt(record.startedAt),
      finishedAt: BigInt(record.finishedAt),
      // Records of an icetray before crash recovery have nothing pending.
      pending: (record as Partial<ContainerRecord>).pending ?? undefined,
    };
  });
}

export async function deleteContainerDir(container: Pick<Container, 'dir'>): Promise<void> {
  await rm(container.dir, { recursive: true, force: true });
}
