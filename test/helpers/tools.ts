import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** Where conformance/install-cri-tools.sh puts crictl and critest. */
export const CRI_TOOLS_DIR =
  process.env['ICETRAY_TOOLS_DIR'] ?? join('/var/cache/icetray/cri-tools', process.env['CRI_TOOLS_VERSION'] ?? 'v1.37.0');
export const CRICTL = join(CRI_TOOLS_DIR, 'crictl');

/**
 * Why a crictl test cannot run here, or undefined when it can. In CI (CI=true) nothing is
 * skipped: .ci/run builds crictl, so a missing binary must fail the run, not hide.
 */
export function crictlMissing(): string | undefined {
  if (existsSync(CRICTL) || process.env['CI'] === 'true') return undefined;
  return `crictl is not built at ${CRICTL}: run conformance/install-cri-tools.sh`;
}

export const isRoot = process.getuid?.() === 0;

/**
 * crictl's flags for the icetray a test started. Both endpoints, and an empty config, because
 * crictl otherwise reads /etc/crictl.yaml — which the README has users write for their own
 * icetray — and would send image calls there.
 */
export function crictlFlags(socket: string): string[] {
  return ['--config', '/dev/null', '--runtime-endpoint', `unix://${socket}`, '--image-endpoint', `unix://${socket}`];
}
