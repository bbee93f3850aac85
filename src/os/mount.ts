import { rm } from 'node:fs/promises';
import { CommandError, run } from './exec.js';

/** Unmounts and deletes a mount point; one already unmounted or gone is fine (removal is idempotent). */
export async function unmountAndRemove(path: string, recursive = false): Promise<void> {
  try {
    await run('umount', [path]);
  } catch (err) {
    const message = err instanceof CommandError ? err.stderr : '';
    if (!/not mounted|no such file|No such file/i.test(message)) throw err;
  }
  await rm(path, { recursive, force: true });
}
