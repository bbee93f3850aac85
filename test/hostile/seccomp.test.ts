import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SecurityProfile_ProfileType, type DeepPartial, type LinuxContainerSecurityContext } from '../../src/generated/api.js';
import {
  containerPid,
  eventually,
  exec,
  HOST_TOOLS,
  runContainer,
  runPod,
  startHarness,
  statusField,
  stopHarness,
  type Harness,
  type Pod,
} from '../helpers/hostile.js';
import { useTempDirs } from '../helpers/temp.js';
import { isRoot } from '../helpers/tools.js';

/**
 * Issue #11: RuntimeDefault seccomp with containerd's coverage, over the real socket. The
 * containers get the host's /usr, /lib and /lib64 read-only, so that the host's python3 (ctypes)
 * and util-linux's unshare can make raw syscalls inside a busybox container. Each call is made
 * with arguments that the kernel itself would refuse with something other than EPERM (a NULL
 * pointer: EFAULT), so that EPERM can only come from the filter; the same calls in an
 * Unconfined container show the difference.
 */

const tempDir = useTempDirs('icetray-hostile-seccomp-');

/** x86_64 syscall numbers of the calls tried (arch/x86/entry/syscalls/syscall_64.tbl). */
const PROBE = `
import ctypes, errno, json
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):
    values = [a if isinstance(a, bytes) else ctypes.c_ulong(a & 0xffffffffffffffff) for a in args]
    r = libc.syscall(ctypes.c_long(nr), *values)
    return 'ok' if r >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
print(json.dumps({
    'keyctl': call(250, 0, -3, 0),
    'add_key': call(248, b'user', b'icetray-probe', b'v', 1, -2),
    'bpf': call(321, 0, 0, 0),
    'perf_event_open': call(298, 0, 0, -1, -1, 0),
    'init_module': call(175, 0, 0, 0),
    'clock_settime': call(227, 0, 0),
    'clone3': call(435, 0, 0),
    'socket_vsock': call(41, 40, 1, 0),
    'socket_inet6': call(41, 10, 1, 0),
    'socket_inet': call(41, 2, 1, 0),
    'personality_no_aslr': call(135, 0x0040000),
    'personality_query': call(135, 0xffffffff),
}))
`;

type Probe = Record<string, string>;

describe.skipIf(!isRoot || process.arch !== 'x64')(
  'seccomp over the socket (needs root and x86_64: real containers, raw syscalls)',
  () => {
    let h: Harness | undefined;
    let pod: Pod;
    const harness = (): Harness => {
      if (h === undefined) throw new Error('no harness');
      return h;
    };

    beforeAll(async () => {
      h = await startHarness();
      pod = await runPod(h);
    }, 60_000);
    afterAll(async () => {
      await stopHarness(h);
    });

    async function container(
      securityContext: DeepPartial<LinuxContainerSecurityContext>,
      command = ['sleep', '600'],
    ): Promise<string> {
      return runContainer(harness(), pod, { command, mounts: HOST_TOOLS, linux: { securityContext } });
    }
    async function probe(id: string): Promise<Probe> {
      const result = await exec(harness(), id, ['/usr/bin/python3', '-c', PROBE]);
      expect(result.exitCode, result.stderr).toBe(0);
      return JSON.parse(result.stdout) as Probe;
    }
    const runtimeDefault = { seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault } };
    const unconfined = { seccomp: { profileType: SecurityProfile_ProfileType.Unconfined } };

    it('RuntimeDefault: no user namespace, no keyrings, BPF, perf, modules or clocks; clone3 is ENOSYS', async () => {
      const id = await container(runtimeDefault);
      const unshare = await exec(harness(), id, ['/usr/bin/unshare', '-U', 'true']);
      expect(unshare.exitCode).not.toBe(0);
      expect(unshare.stderr).toContain('Operation not permitted');
      expect((await exec(harness(), id, ['/usr/bin/unshare', '-m', 'true'])).exitCode).not.toBe(0);
      const calls = await probe(id);
      for (const name of ['keyctl', 'add_key', 'bpf', 'perf_event_open', 'init_module', 'clock_settime', 'socket_vsock'])
        expect(calls[name], name).toBe('EPERM');
      expect(calls['clone3']).toBe('ENOSYS');
      expect(calls['personality_no_aslr']).toBe('EPERM');
      expect(calls['personality_query']).toBe('ok');
      expect(calls['socket_inet']).toBe('ok');
      // The container's process and the exec both run under the filter.
      expect(statusField(containerPid(harness(), id), 'Seccomp')).toBe('2');
      expect((await exec(harness(), id, ['grep', 'Seccomp:', '/proc/self/status'])).stdout).toMatch(/Seccomp:\s+2/);
    });

    it('Unconfined: the same calls reach the kernel (EFAULT for the NULL pointers, keyrings answer)', async () => {
      const id = await container(unconfined);
      expect((await exec(harness(), id, ['/usr/bin/unshare', '-U', 'true'])).exitCode).toBe(0);
      const calls = await probe(id);
      expect(calls['keyctl']).toBe('ok');
      expect(calls['perf_event_open']).toBe('EFAULT');
      expect(calls['clock_settime']).toBe('EFAULT');
      expect(calls['clone3']).not.toBe('ENOSYS');
      expect(statusField(containerPid(harness(), id), 'Seccomp')).toBe('0');
    });

    it('RuntimeDefault with CAP_SYS_ADMIN added allows the namespace flags', async () => {
      const id = await container({ ...runtimeDefault, capabilities: { addCapabilities: ['SYS_ADMIN'] } });
      expect((await exec(harness(), id, ['/usr/bin/unshare', '-U', 'true'])).exitCode).toBe(0);
      expect((await exec(harness(), id, ['/usr/bin/unshare', '-m', 'true'])).exitCode).toBe(0);
      const calls = await probe(id);
      expect(calls['clone3']).not.toBe('ENOSYS');
      expect(calls['perf_event_open']).toBe('EFAULT');
      expect(calls['keyctl']).toBe('EPERM'); // no capability brings keyrings back
      expect(statusField(containerPid(harness(), id), 'Seccomp')).toBe('2');
    });

    it('a privileged container gets no filter even when RuntimeDefault is asked', async () => {
      const id = await container({ ...runtimeDefault, privileged: true });
      expect(statusField(containerPid(harness(), id), 'Seccomp')).toBe('0');
      expect((await exec(harness(), id, ['grep', 'Seccomp:', '/proc/self/status'])).stdout).toMatch(/Seccomp:\s+0/);
    });

    it('ordinary programs work under RuntimeDefault: sh, ls, sleep, an httpd on loopback and wget to it', async () => {
      const id = await container(runtimeDefault, [
        'sh',
        '-c',
        'mkdir -p /www && echo served under seccomp > /www/index.html && httpd -f -p 127.0.0.1:8080 -h /www',
      ]);
      expect((await exec(harness(), id, ['sh', '-c', 'ls / >/dev/null && sleep 0.1 && echo fine'])).stdout).toBe('fine\n');
      let body = '';
      await eventually(async () => {
        body = (await exec(harness(), id, ['wget', '-qO-', 'http://127.0.0.1:8080/'])).stdout;
        return body !== '';
      });
      expect(body).toBe('served under seccomp\n');
    });

    it('leaves no_new_privs alone unless asked: setuid programs keep working under a filter', async () => {
      const plain = await container(runtimeDefault);
      expect(statusField(containerPid(harness(), plain), 'NoNewPrivs')).toBe('0');
      const asked = await container({ ...runtimeDefault, noNewPrivs: true });
      expect(statusField(containerPid(harness(), asked), 'NoNewPrivs')).toBe('1');
      expect(statusField(containerPid(harness(), asked), 'Seccomp')).toBe('2');
    });

    it('applies a Localhost profile with argument conditions (socket(AF_INET6) refused with EAFNOSUPPORT)', async () => {
      const file = join(await tempDir(), 'profile.json');
      await writeFile(
        file,
        JSON.stringify({
          defaultAction: 'SCMP_ACT_ALLOW',
          architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
          syscalls: [
            { names: ['socket'], action: 'SCMP_ACT_ERRNO', errnoRet: 97, args: [{ index: 0, value: 10, op: 'SCMP_CMP_EQ' }] },
          ],
        }),
      );
      const id = await container({ seccomp: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: file } });
      const calls = await probe(id);
      expect(calls['socket_inet6']).toBe('EAFNOSUPPORT');
      expect(calls['socket_inet']).toBe('ok');
      expect(calls['keyctl']).toBe('ok');
    });
  },
);
