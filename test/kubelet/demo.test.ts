import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runProgram, ICETRAY_CLI, startServeProcess } from '../helpers/cli.js';
import { kubeletMissing } from '../helpers/kubelet.js';
import { CRICTL, crictlFlags } from '../helpers/tools.js';
import { ipForward, restoreIpForward, sh, writeTestNetwork } from '../helpers/pods.js';

const skip = kubeletMissing();

describe.skipIf(skip !== undefined)(`icetray demo --kubelet (${skip ?? 'kubelet built, root'})`, () => {
  it('a real kubelet restarts the crashing container while pause, the sandbox and the IP stay', async () => {
    const before = ipForward();
    // Its own icetray: a kubelet kills the pods of a runtime it does not know, so the demo's
    // kubelet must not share an icetray with another kubelet.
    const serve = await startServeProcess();
    const net = writeTestNetwork(join(serve.dir, 'net.d'), serve.dir);
    restoreIpForward('1');
    try {
      const result = await runProgram(
        process.execPath,
        [ICETRAY_CLI, 'demo', '--kubelet', '--config', serve.configFile],
        170_000,
      );
      expect(result.stdout).toMatch(/kubelet runs pod "tray": sandbox \w+, pause pid (\d+), IP ([\d.]+)/);
      const [, pid, ip] = /pause pid (\d+), IP ([\d.]+)/.exec(result.stdout) ?? [];
      expect(result.stdout).toContain(`the kubelet restarted "crasher" (restart 2); pause pid ${pid ?? ''}, IP ${ip ?? ''}`);
      expect(result.stdout).toContain('CrashLoopBackOff');
      expect(result.stdout).toContain('1 of 1 steps passed');
      expect(result.code).toBe(0);
      // Nothing of the demo is left in icetray.
      const pods = await runProgram(CRICTL, [...crictlFlags(serve.socket), 'pods', '-q']);
      expect(pods.code).toBe(0);
      expect(pods.stdout.trim()).toBe('');
    } finally {
      await serve.stop();
      await sh('ip', ['link', 'del', net.bridge]);
      restoreIpForward(before);
    }
  }, 180_000);
});
