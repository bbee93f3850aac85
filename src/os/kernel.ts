import { release } from 'node:os';

/** Whether the running kernel is at least `major.minor` (from uname's release, e.g. "6.1.0-18-amd64"). */
export function kernelAtLeast(major: number, minor: number): boolean {
  const [have = 0, haveMinor = 0] = release()
    .split(/[.-]/)
    .map((part) => Number.parseInt(part, 10));
  return have > major || (have === major && haveMinor >= minor);
}

/** mount_setattr(2), which makes a mount and all below it read-only in one step, came in Linux 5.12. */
export const RECURSIVE_READONLY_MOUNTS = kernelAtLeast(5, 12);
