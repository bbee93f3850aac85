import { join } from 'node:path';
import { PodSandboxConfig } from '../generated/api.js';
import { loadRecords, saveRecord, type LoadedRecords } from '../persist.js';
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

export function loadSandboxes(rootDir: string): Promise<LoadedRecords<Sandbox>> {
  return loadRecords(sandboxesDir(rootDir), RECORD, (json) => {
    // Records of an icetray before crash recovery lack `pending` and `cgroup.podOwned`.
    const record = json as Omit<SandboxRecord, 'cgroup'> & {
      cgroup: Omit<Sandbox['cgroup'], 'podOwned'> & { podOwned?: boolean };
    };
    const config = PodSandboxConfig.decode(Buffer.from(record.config, 'base64'));
    return {
      ...record,
      config,
      createdAt: BigInt(record.createdAt),
      // Nothing was pending then; the pod cgroup was icetray's when it chose it.
      pending: record.pending,
      cgroup: { ...record.cgroup, podOwned: record.cgroup.podOwned ?? (config.linux?.cgroupParent ?? '') === '' },
    };
  });
}
