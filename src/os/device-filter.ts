import { UnavailableError } from '../errors.js';
import { NSEXEC_BINARY } from '../paths.js';
import { CommandError, run } from './exec.js';

/**
 * Loads a cgroup v2 device program (src/cgroups/device-program.ts) and attaches it to a cgroup
 * folder, through `nsexec device-filter DIR` (native/device-filter.c), which reads the
 * instructions on stdin. The attachment lives as long as the cgroup: removing the folder
 * releases the program, so there is nothing to undo but the cgroup itself.
 */
export async function attachDeviceFilter(cgroupDir: string, program: Uint8Array, nsexec = NSEXEC_BINARY): Promise<void> {
  try {
    await run(nsexec, ['device-filter', cgroupDir], { input: program, timeoutMs: 10_000 });
  } catch (err) {
    // nsexec prints the reason, and the verifier's log when the kernel refused the program.
    const detail = err instanceof CommandError ? err.stderr.trim() : (err as Error).message;
    throw new UnavailableError(`failed to attach the device filter to cgroup ${cgroupDir}: ${detail}`, { cause: err });
  }
}
