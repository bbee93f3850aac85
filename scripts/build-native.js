// Builds native/pause.c into native/build/pause with the machine's C compiler.
//
// A static binary first (`cc -static -Os`): it needs no libc at run time, so it also runs
// inside any rootfs. Without a static libc it falls back to a dynamic build. Without a C
// compiler at all it fails loudly: icetray never pretends with `sleep infinity` instead.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'native', 'pause.c');
const output = join(root, 'native', 'build', 'pause');
const cc = process.env.CC ?? 'cc';

mkdirSync(dirname(output), { recursive: true });
const attempts = [
  ['-static', '-Os', '-s', '-o', output, source],
  ['-Os', '-s', '-o', output, source],
];
for (const [i, args] of attempts.entries()) {
  try {
    execFileSync(cc, args, { stdio: ['ignore', 'inherit', 'pipe'] });
    console.log(`built ${output} (${i === 0 ? 'static' : 'dynamic'})`);
    process.exit(0);
  } catch (err) {
    if (err.code === 'ENOENT') {
      console.error(`error: no C compiler ("${cc}") to build the pause process. Install one: apt-get install gcc`);
      process.exit(1);
    }
  }
}
console.error(`error: ${cc} could not build ${source}`);
process.exit(1);
