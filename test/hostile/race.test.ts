import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerConfig } from '../../src/generated/api.js';
import { BUILTIN_BUSYBOX_IMAGE } from '../../src/images/store.js';
import { formatLeaks, inventory, leakScope, settle, type Inventory, type LeakScope } from '../helpers/leaks.js';
import { codeOf, startHarness, stopHarness, type Harness } from '../helpers/hostile.js';
import { podConfig } from '../helpers/pods.js';
import type { TestServer } from '../helpers/server.js';
import { isRoot } from '../helpers/tools.js';

/**
 * CreateContainer and StartContainer racing RemovePodSandbox of the same pod, over the socket:
 * whichever wins, no container may be left under a pod that no longer exists — no record, rootfs
 * mount, cgroup or process.
 */
describe.skipIf(!isRoot)('creating containers in a pod while it is removed (needs root: real pods)', () => {
  let h: Harness | undefined;
  let t: TestServer;
  let scope: LeakScope;
  let before: Inventory;
  const podUids = new Set<string>();
  const ids = new Set<string>();

  beforeAll(async () => {
    h = await startHarness();
    t = h.t;
    const warm = podConfig();
    podUids.add(warm.metadata?.uid ?? '');
    await t.cri.runtime.removePodSandbox({ podSandboxId: (await t.cri.runtime.runPodSandbox({ config: warm })).podSandboxId });
    scope = leakScope(t, h.net, { podUids, ids });
    before = await inventory(scope);
  });
  afterAll(() => stopHarness(h));

  it('leaves nothing of any container, over 10 rounds of 6 creates against one removal', async () => {
    for (let round = 0; round < 10; round++) {
      const pod = podConfig();
      podUids.add(pod.metadata?.uid ?? '');
      const { podSandboxId } = await t.cri.runtime.runPodSandbox({ config: pod });
      ids.add(podSandboxId);
      // Each create+start ends as it must: done (and then removed with the pod), or refused as
      // FAILED_PRECONDITION (the pod is going) or NOT_FOUND (it is gone); never INTERNAL.
      const creates = Array.from({ length: 6 }, (_, i) =>
        codeOf(
          (async () => {
            const config = ContainerConfig.fromPartial({
              metadata: { name: `c${String(i)}` },
              image: { image: BUILTIN_BUSYBOX_IMAGE },
              command: ['sleep', '300'],
            });
            const { containerId } = await t.cri.runtime.createContainer({ podSandboxId, config, sandboxConfig: pod });
            ids.add(containerId);
            await t.cri.runtime.startContainer({ containerId });
          })(),
        ),
      );
      // The removal comes while the creates are on their way, a little later each round.
      await new Promise((resolve) => setTimeout(resolve, round * 3));
      await t.cri.runtime.removePodSandbox({ podSandboxId });
      for (const code of await Promise.all(creates))
        expect([status.OK, status.FAILED_PRECONDITION, status.NOT_FOUND]).toContain(code);
      expect((await t.cri.runtime.listContainers({})).containers).toEqual([]);
    }
    const leaks = await settle(scope, before);
    expect(leaks, formatLeaks(leaks)).toEqual([]);
  });
});
