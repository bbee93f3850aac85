import { mkdir } from 'node:fs/promises';
import { UnavailableError } from '../errors.js';
import { run } from '../os/exec.js';
import { unmountAndRemove } from '../os/mount.js';

/**
 * The pod's /dev/shm: one tmpfs per pod that every container of the pod mounts, so POSIX
 * shared memory is shared exactly as the pod's IPC namespace shares System V IPC. 64 MiB is
 * the size Docker and containerd give a container's /dev/shm by default.
 */
export interface ShmMounter {
  mount(path: string): Promise<void>;
  unmount(path: string): Promise<void>;
}

export const tmpfsShm: ShmMounter = {
  async mount(path) {
    await mkdir(path, { recursive: true });
    try {
      await run('mount', ['-t', 'tmpfs', '-o', 'nosuid,nodev,noexec,mode=1777,size=65536k', 'shm', path]);
    } catch (err) {
      throw new UnavailableError(`failed to mount the pod's /dev/shm at ${path}`, { cause: err });
    }
  },
  unmount: (path) => unmountAndRemove(path, true),
};
