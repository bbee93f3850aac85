import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folder of icetray's package.json, whether running from src/ (tests) or dist/src/ (built). */
function findPackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find icetray package.json above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
  return dir;
}

export const PACKAGE_ROOT = findPackageRoot();

/** The pause binary built from native/pause.c at install (`npm run build:native`). */
export const PAUSE_BINARY = join(PACKAGE_ROOT, 'native', 'build', 'pause');

/** The container launcher built from native/nsexec.c. */
export const NSEXEC_BINARY = join(PACKAGE_ROOT, 'native', 'build', 'nsexec');
