import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UnavailableError } from '../errors.js';
import { run } from '../os/exec.js';
import { unmountAndRemove } from '../os/mount.js';
import type { PodNamespace } from './sandbox.js';

/**
 * Pinning: a namespace lives while a process is in it or a file is bind-mounted on it. Pause
 * holds the pod's namespaces; the pins keep them even if pause dies, so a crashed pause does
 * not take the pod's network away under its containers (and CNI DEL still has a netns to use).
 */
export interface NamespacePinner {
  /** Bind-mounts /proc/<pid>/ns/<ns> on a file in `dir`; returns the file's path. */
  pin(pid: number, ns: PodNamespace, dir: string): Promise<string>;
  /** Unmounts and deletes a pin; a pin already gone is fine (Remove is idempotent). */
  unpin(path: string): Promise<void>;
}

export const bindMountPinner: NamespacePinner = {
  async pin(pid, ns, dir) {
    await mkdir(dir, { recursive: true });
    const path = join(dir, ns);
    await writeFile(path, '');
    try {
      await run('mount', ['--bind', `/proc/${pid}/ns/${ns}`, path]);
    } catch (err) {
      await rm(path, { force: true });
      throw new UnavailableError(`failed to pin the ${ns} namespace of pid ${pid}`, { cause: err });
    }
    return path;
  },

  unpin: (path) => unmountAndRemove(path),
};
