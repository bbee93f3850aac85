import { readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { log } from './log.js';

/**
 * Records on disk, one JSON file per object in its own folder (<root>/<kind>/<id>/<file>), so a
 * restarted server finds its pods and containers again. Writes are atomic (temp file + rename):
 * a crash leaves the old record or the new one, never half of one. Records and their folders
 * are root's alone: a container's config holds its environment, and environments hold secrets.
 */
export async function writeAtomic(file: string, text: string): Promise<void> {
  const temp = `${file}.tmp`;
  await writeFile(temp, text, { mode: 0o600 });
  await rename(temp, file);
}

/** Writes of one file, in the order they were asked for: the last state asked is the one kept. */
const queues = new Map<string, Promise<void>>();

export function saveRecord(dir: string, file: string, record: unknown): Promise<void> {
  const path = join(dir, file);
  // The snapshot is taken now, at the call, so the queue's order is the order of changes.
  const text = `${JSON.stringify(record, null, 2)}\n`;
  const write = (queues.get(path) ?? Promise.resolve())
    .catch(() => undefined)
    // The folder is the object's, made when it was created: a save never makes it again, so a
    // late save cannot bring back an object that was removed meanwhile (it fails with ENOENT).
    .then(() => writeAtomic(path, text));
  queues.set(path, write);
  void write
    .finally(() => {
      if (queues.get(path) === write) queues.delete(path);
    })
    .catch(() => undefined);
  return write;
}

export interface LoadedRecords<T> {
  records: T[];
  /**
   * Folders with no record file: a create that a crash cut between its mkdir and its first
   * save. The caller removes them. A record that exists but cannot be read is not an orphan: it
   * is logged and kept, never deleted.
   */
  orphans: string[];
}

/** Every readable record under `parent`, and the folders that hold none. */
export async function loadRecords<T>(parent: string, file: string, decode: (json: unknown) => T): Promise<LoadedRecords<T>> {
  const ids = await readdir(parent).catch(() => []);
  const loaded: LoadedRecords<T> = { records: [], orphans: [] };
  for (const id of ids) {
    const dir = join(parent, id);
    let text: string;
    try {
      text = await readFile(join(dir, file), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') loaded.orphans.push(dir);
      else log.error({ err, dir }, 'cannot read a record: left as it is');
      continue;
    }
    try {
      loaded.records.push(decode(JSON.parse(text)));
    } catch (err) {
      log.error({ err, dir }, 'cannot decode a record: left as it is');
    }
  }
  return loaded;
}
