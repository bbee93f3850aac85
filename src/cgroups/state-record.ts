import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CgroupDriverName } from '../config/config.js';
import { FailedPreconditionError } from '../errors.js';
import { writeAtomic } from '../persist.js';

/**
 * Which cgroup driver made the node's pods. Pods keep the cgroups their driver made (paths of one
 * kind, units of the other), so a driver cannot take over another's pods: the kubelet's docs say to
 * drain and recreate a node to change its cgroup driver.
 */
const FILE = 'cgroup-driver';

async function recorded(dir: string): Promise<string | undefined> {
  try {
    return (await readFile(join(dir, FILE), 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Records the driver; called when a pod is created (a no-op when it is recorded already). */
export async function recordDriver(dir: string, name: CgroupDriverName): Promise<void> {
  if ((await recorded(dir)) === name) return;
  await mkdir(dir, { recursive: true });
  await writeAtomic(join(dir, FILE), `${name}\n`);
}

/**
 * At start: refuses a driver other than the recorded one while pods exist. With no pods left the
 * old record no longer matters and is replaced when the next pod is created.
 */
export async function checkDriverRecord(dir: string, name: CgroupDriverName, podsExist: boolean): Promise<void> {
  const previous = await recorded(dir);
  if (previous === undefined || previous === name || !podsExist) return;
  throw new FailedPreconditionError(
    `cgroup_driver is "${name}" but the pods on this node were made with "${previous}" (recorded in ${join(dir, FILE)}): ` +
      `one driver cannot manage the other's cgroups. Set cgroup_driver = "${previous}" again, or to change it, ` +
      'drain the node and recreate it (kubectl drain), or remove all pods (crictl rmp -af), then start icetray again',
  );
}
