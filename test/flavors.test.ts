import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../src/paths.js';
import { runIcetray, runProgram, spawnServe } from './helpers/cli.js';
import { ipForward, restoreIpForward } from './helpers/pods.js';
import { CRICTL, crictlFlags, crictlMissing } from './helpers/tools.js';

const examples = join(PACKAGE_ROOT, 'examples');
const skip = crictlMissing();

describe.skipIf(skip !== undefined)(
  `icetray standing in for the real runtimes, with examples/ (${skip ?? 'crictl built'})`,
  () => {
    it.each([
      ['containerd', ['--config', join(examples, 'containerd', 'config.toml')], '/run/containerd/containerd.sock'],
      ['crio', ['--config', join(examples, 'crio', 'crio.conf')], '/var/run/crio/crio.sock'],
      ['cri-dockerd', ['--pod-infra-container-image', 'registry.k8s.io/pause:3.10'], '/run/cri-dockerd.sock'],
    ])(
      '--flavor %s takes its socket, pause image and cgroup driver from its own settings',
      async (flavor, args, defaultSocket) => {
        const shown = await runIcetray(['config', 'show', '--flavor', flavor, ...args, '--output', 'json']);
        const config = JSON.parse(shown.stdout) as {
          values: { socket: string; pauseImage: string };
          origins: Record<string, string>;
        };
        expect(config.values.socket).toBe(defaultSocket);
        expect(config.values.pauseImage).toBe('registry.k8s.io/pause:3.10');

        // Served on a socket and folders of the test's own, so nothing of this host is disturbed.
        const before = ipForward();
        const dir = await mkdtemp(join(tmpdir(), `icetray-flavor-${flavor}-`));
        const socket = join(dir, 'cri.sock');
        const serve = await spawnServe(
          // The network config folder too: icetray writes its default network into an empty one.
          [
            ...['--flavor', flavor, ...args, '--socket', socket, '--root-dir', join(dir, 'root')],
            ...['--state-dir', join(dir, 'state'), '--cni-conf-dir', join(dir, 'net.d')],
          ],
          dir,
          socket,
        );
        try {
          const info = await runProgram(CRICTL, [...crictlFlags(socket), 'info']);
          const parsed = JSON.parse(info.stdout) as {
            pauseImage: string;
            cgroupDriver: string;
            config: { origins: Record<string, string> };
          };
          expect(parsed.pauseImage).toBe('registry.k8s.io/pause:3.10');
          expect(parsed.cgroupDriver).toBe('cgroupfs');
          if (flavor === 'containerd') {
            expect(parsed.config.origins['cgroupDriver']).toContain('SystemdCgroup');
            expect(serve.output()).toContain('containerd key \\"root\\" is not honoured by icetray');
          }
          if (flavor === 'crio') expect(parsed.config.origins['cgroupDriver']).toContain('crio.runtime.cgroup_manager');
        } finally {
          await serve.stop();
          restoreIpForward(before);
        }
      },
    );
  },
);
