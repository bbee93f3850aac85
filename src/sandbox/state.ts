import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PodSandboxConfig } from '../generated/api.js';
import { loadRecords, saveRecord } from '../persist.js';
import type { Sandbox } from './sandbox.js';

/** Sandboxes on disk: <root_dir>/sandboxes/<id>/sandbox.json. */
const RECORD = 'sandbox.json';

/** The JSON form: int64 nanoseconds as a string, the config as protobuf bytes (its wire form). */
interface SandboxRecord extends Omit<Sandbox, 'config' | 'createdAt'> {
  config: string;
  createdAt: string;
}

export function sandboxesDir(rootDir: string): string {
  return join(rootDir, 'sandboxes');
}

export async function saveSandbox(sandbox: Sandbox): Promise<void> {
  const record: SandboxRecord = {
    ...sandbox,
    config: Buffer.from(PodSandboxConfig.encode(sandbox.config).finish()).toString('base64'),
    createdAt: sandbox.createdAt.toString(),
  };
  await saveRecord(sandbox.dir, RECORD, record);
}

export function loadSandboxes(rootDir: string): Promise<Sandbox[]> {
  return loadRecords(sandboxesDir(rootDir), RECORD, (json) => {
    const record = json as SandboxRecord;
    return {
      ...record,
      config: PodSandboxConfig.decode(Buffer.from(record.config, 'base64')),
      createdAt: BigInt(record.createdAt),
    };
  });
}

export async function deleteSandboxDir(sandbox: Pick<Sandbox, 'dir'>): Promise<void> {
  await rm(sandbox.dir, { recursive: true, force: true });
}
