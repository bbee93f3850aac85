import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../../test/helpers/temp.js';
import { UnavailableError } from '../errors.js';
import { attachDeviceFilter } from './device-filter.js';

/** attachDeviceFilter against a stand-in for nsexec: the program must arrive on stdin byte for byte. */
const tempDir = useTempDirs('icetray-device-filter-');

async function fakeNsexec(script: string): Promise<{ bin: string; dir: string }> {
  const dir = await tempDir();
  const bin = join(dir, 'nsexec');
  await writeFile(bin, `#!/bin/sh\n${script}\n`);
  await chmod(bin, 0o755);
  return { bin, dir };
}

describe('attachDeviceFilter', () => {
  it('runs nsexec device-filter DIR with the program as binary stdin', async () => {
    const { bin, dir } = await fakeNsexec('echo "$@" > "$(dirname "$0")/args"; cat > "$(dirname "$0")/stdin"');
    // Bytes a text pipe would mangle: NUL, a newline, high bytes.
    const program = Buffer.from([0x61, 0x12, 0x00, 0x00, 0x0a, 0xff, 0x80, 0x00]);
    await attachDeviceFilter('/sys/fs/cgroup/unified/x', program, bin);
    expect(await readFile(join(dir, 'args'), 'utf8')).toBe('device-filter /sys/fs/cgroup/unified/x\n');
    expect(await readFile(join(dir, 'stdin'))).toEqual(program);
  });

  it("fails as Unavailable with nsexec's reason", async () => {
    const { bin } = await fakeNsexec('cat > /dev/null; echo "device-filter: load: Permission denied" >&2; exit 1');
    const attached = attachDeviceFilter('/cg', Buffer.alloc(8), bin);
    await expect(attached).rejects.toThrow(UnavailableError);
    await expect(attached).rejects.toThrow(
      /failed to attach the device filter to cgroup \/cg: device-filter: load: Permission denied/,
    );
  });
});
