// Builds icetray's two small C programs into native/build/ with the machine's C compiler:
//   pause   (native/pause.c)   holds a pod's namespaces
//   nsexec  (native/nsexec.c, device-filter.c)  starts a container's process in its pod (needs
//           libseccomp); also attaches cgroup v2 device filters
//
// Static first (`cc -static -Os`): no libc needed at run time. Without a static libc it falls
// back to a dynamic build. Without a C compiler it fails loudly: icetray never pretends with
// `sleep infinity` instead of pause.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cc = process.env.CC ?? 'cc';
const programs = [
  { name: 'pause', sources: ['pause.c'], libs: [], packages: 'gcc libc6-dev' },
  { name: 'nsexec', sources: ['nsexec.c', 'device-filter.c'], libs: ['-lseccomp'], packages: 'gcc libc6-dev libseccomp-dev' },
];

mkdirSync(join(root, 'native', 'build'), { recursive: true });
for (const program of programs) {
  const sources = program.sources.map((file) => join(root, 'native', file));
  const output = join(root, 'native', 'build', program.name);
  let built = false;
  for (const mode of ['static', 'dynamic']) {
    const args = [...(mode === 'static' ? ['-static'] : []), '-Os', '-s', '-o', output, ...sources, ...program.libs];
    try {
      execFileSync(cc, args, { stdio: ['ignore', 'inherit', 'pipe'] });
      console.log(`built ${output} (${mode})`);
      built = true;
      break;
    } catch (err) {
      if (err.code === 'ENOENT') {
        console.error(
          `error: no C compiler ("${cc}") to build ${program.name}. Install one: apt-get install ${program.packages}`,
        );
        process.exit(1);
      }
      if (mode === 'dynamic') console.error(String(err.stderr ?? ''));
    }
  }
  if (!built) {
    console.error(`error: ${cc} could not build ${sources.join(' ')} (needs: apt-get install ${program.packages})`);
    process.exit(1);
  }
}
