import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { log } from './log.js';

/**
 * Records on disk, one JSON file per object in its own folder (<root>/<kind>/<id>/<file>), so a
 * restarted server finds its pods and containers again. Writes are atomic (temp file + rename):
 * a crash leaves the old record or the new one, never half of one.
 */
export async function writeAtomic(file: string, text: string): Promise<void> {
  const temp = `${file}.tmp`;
  await writeFile(temp, text);
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
    .then(async () => {
      await mkdir(dir, { recursive: true });
      await writeAtomic(path, text);
    });
  queues.set(path, write);
  void write
    .finally(() => {
      if (queues.get(path) === write) queues.delete(path);
    })
    .catch(() => undefined);
  return write;
}

/** Every readable record under `parent`; a folder without one (a create that crashed) is skipped. */
export async function loadRecords<T>(parent: string, file: string, decode: (json: unknown) => T): Promise<T[]> {
  const ids = await readdir(parent).catch(() => []);
  const records: T[] = [];
  for (const id of ids) {
    try {
      records.push(decode(JSON.parse(await readFile(join(parent, id, file), 'utf8'))));
    } catch (err) {
      log.warn({ err, dir: join(parent, id) }, 'skipping a folder without a readable record');
    }
  }
  return records;
}
