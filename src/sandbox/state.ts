import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PodSandboxConfig } from '../generated/api.js';
import { log } from '../log.js';
import type { Sandbox } from './sandbox.js';

/**
 * Sandboxes on disk, one JSON file each under <root_dir>/sandboxes/<id>/, so a restarted server
 * still lists, stops and removes its pods. Writes are atomic (temp file + rename): a crash
 * leaves the old record or the new one, never half of one.
 */
const RECORD = 'sandbox.json';

/** The JSON form: int64 nanoseconds as a string, the config as protobuf bytes (its wire form). */
interface SandboxRecord extends Omit<Sandbox, 'config' | 'createdAt'> {
  config: string;
  createdAt: string;
}

export function sandboxesDir(rootDir: string): string {
  return join(rootDir, 'sandboxes');
}

export async function writeAtomic(file: string, text: string): Promise<void> {
  const temp = `${file}.tmp`;
  await writeFile(temp, text);
  await rename(temp, file);
}

export async function saveSandbox(sandbox: Sandbox): Promise<void> {
  const record: SandboxRecord = {
    ...sandbox,
    config: Buffer.from(PodSandboxConfig.encode(sandbox.config).finish()).toString('base64'),
    createdAt: sandbox.createdAt.toString(),
  };
  await mkdir(sandbox.dir, { recursive: true });
  await writeAtomic(join(sandbox.dir, RECORD), `${JSON.stringify(record, null, 2)}\n`);
}

export async function loadSandboxes(rootDir: string): Promise<Sandbox[]> {
  const dir = sandboxesDir(rootDir);
  const ids = await readdir(dir).catch(() => []);
  const sandboxes: Sandbox[] = [];
  for (const id of ids) {
    try {
      const record = JSON.parse(await readFile(join(dir, id, RECORD), 'utf8')) as SandboxRecord;
      sandboxes.push({
        ...record,
        config: PodSandboxConfig.decode(Buffer.from(record.config, 'base64')),
        createdAt: BigInt(record.createdAt),
      });
    } catch (err) {
      // A folder without a complete record is a create that crashed before its end.
      log.warn({ err, podSandboxId: id }, 'skipping a sandbox folder without a readable record');
    }
  }
  return sandboxes;
}

export async function deleteSandboxDir(sandbox: Pick<Sandbox, 'dir'>): Promise<void> {
  await rm(sandbox.dir, { recursive: true, force: true });
}
