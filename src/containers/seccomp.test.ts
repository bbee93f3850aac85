import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../errors.js';
import { LinuxContainerSecurityContext, SecurityProfile_ProfileType, type DeepPartial } from '../generated/api.js';
import { renderProfile, seccompProfile, type SeccompProfile, type SeccompRule } from './seccomp.js';

const CLONE_NEWUSER = 0x10000000n;
const CLONE_NEWNS = 0x00020000n;

function context(overrides: DeepPartial<LinuxContainerSecurityContext> = {}): LinuxContainerSecurityContext {
  return LinuxContainerSecurityContext.fromPartial({
    seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault },
    ...overrides,
  });
}

async function runtimeDefault(add: string[] = []): Promise<SeccompProfile> {
  const profile = await seccompProfile(context({ capabilities: { addCapabilities: add } }));
  if (profile === undefined) throw new Error('no profile');
  return profile;
}

/** The rules that name `syscall`. */
function rulesFor(profile: SeccompProfile, syscall: string): SeccompRule[] {
  return profile.rules.filter((rule) => rule.names.includes(syscall));
}

/** Whether `syscall` passes whatever its arguments. */
function allowedAlways(profile: SeccompProfile, syscall: string): boolean {
  return rulesFor(profile, syscall).some((rule) => rule.action === 'allow' && rule.conditions.length === 0);
}

describe('RuntimeDefault seccomp profile', () => {
  it('is an allowlist answering EPERM, for x86_64 and its 32-bit ABIs as containerd does', async () => {
    const profile = await runtimeDefault();
    expect(profile.defaultAction).toBe('errno:1');
    if (process.arch === 'x64') expect(profile.architectures).toEqual(['x86', 'x32']);
    for (const name of ['read', 'write', 'openat', 'execve', 'mmap', 'futex', 'epoll_wait', 'wait4', 'setuid', 'capset'])
      expect(allowedAlways(profile, name), name).toBe(true);
  });

  it.each([
    'keyctl', 'add_key', 'request_key', 'bpf', 'perf_event_open', 'init_module', 'finit_module', 'delete_module',
    'clock_settime', 'settimeofday', 'reboot', 'mount', 'umount2', 'setns', 'unshare', 'clone', 'clone3', 'kexec_load',
    'swapon', 'acct', 'iopl', 'open_by_handle_at', 'userfaultfd', 'personality', 'socket',
  ])('does not allow %s unconditionally without the capability that governs it', async (name) => {
    expect(allowedAlways(await runtimeDefault(), name)).toBe(false);
  }); // prettier-ignore

  it('allows clone and unshare only without namespace flags, and answers clone3 ENOSYS so that libc falls back to clone', async () => {
    const profile = await runtimeDefault();
    const [clone] = rulesFor(profile, 'clone');
    expect(clone?.conditions).toHaveLength(1);
    expect(clone?.conditions[0]).toMatchObject({ index: 0, op: 'masked_eq', valueTwo: 0n });
    expect((clone?.conditions[0]?.value ?? 0n) & CLONE_NEWUSER).toBe(CLONE_NEWUSER);
    expect((clone?.conditions[0]?.value ?? 0n) & CLONE_NEWNS).toBe(CLONE_NEWNS);
    const [unshare] = rulesFor(profile, 'unshare');
    expect((unshare?.conditions[0]?.value ?? 0n) & CLONE_NEWUSER).toBe(CLONE_NEWUSER);
    expect(rulesFor(profile, 'clone3')).toEqual([{ names: ['clone3'], action: 'errno:38', conditions: [] }]);
  });

  it('allows socket for every family but AF_ALG (38) and AF_VSOCK (40)', async () => {
    const rules = rulesFor(await runtimeDefault(), 'socket');
    const passes = (family: bigint): boolean =>
      rules.some((rule) =>
        rule.conditions.every((c) =>
          c.op === 'lt' ? family < c.value : c.op === 'eq' ? family === c.value : c.op === 'gt' ? family > c.value : false,
        ),
      );
    for (const family of [1n, 2n, 10n, 16n, 17n, 39n, 41n, 44n]) expect(passes(family), String(family)).toBe(true);
    expect(passes(38n)).toBe(false);
    expect(passes(40n)).toBe(false);
  });

  it('limits personality to Linux, PER_LINUX32, UNAME26 and the query', async () => {
    const values = rulesFor(await runtimeDefault(), 'personality').map((rule) => rule.conditions[0]?.value);
    expect(values.sort()).toEqual([0x0n, 0x8n, 0x20000n, 0x20008n, 0xffffffffn].sort());
  });

  it('with CAP_SYS_ADMIN allows namespaces, mounts and clone3 outright', async () => {
    const profile = await runtimeDefault(['SYS_ADMIN']);
    for (const name of ['clone', 'clone3', 'unshare', 'setns', 'mount', 'umount2', 'bpf', 'perf_event_open'])
      expect(allowedAlways(profile, name), name).toBe(true);
    expect(rulesFor(profile, 'clone3').some((rule) => rule.action === 'errno:38')).toBe(false);
    expect(rulesFor(profile, 'clone').every((rule) => rule.conditions.length === 0)).toBe(true);
  });

  it.each([
    ['SYS_TIME', ['clock_settime', 'settimeofday']],
    ['SYS_MODULE', ['init_module', 'finit_module', 'delete_module']],
    ['SYS_BOOT', ['reboot']],
    ['SYS_CHROOT', ['chroot']],
    ['SYS_PACCT', ['acct']],
    ['SYS_PTRACE', ['kcmp', 'pidfd_getfd', 'process_madvise']],
    ['SYS_RAWIO', ['iopl', 'ioperm']],
    ['SYS_TTY_CONFIG', ['vhangup']],
    ['SYS_NICE', ['mbind', 'set_mempolicy']],
    ['SYSLOG', ['syslog']],
    ['BPF', ['bpf']],
    ['PERFMON', ['perf_event_open']],
    ['DAC_READ_SEARCH', ['open_by_handle_at']],
  ])('with CAP_%s allows %j', async (capability, names) => {
    const profile = await runtimeDefault([capability]);
    for (const name of names) expect(allowedAlways(profile, name), name).toBe(true);
  });

  it('follows the capability mask: SYS_CHROOT is in the default set, dropping it takes chroot away', async () => {
    expect(allowedAlways(await runtimeDefault(), 'chroot')).toBe(true);
    const dropped = await seccompProfile(context({ capabilities: { dropCapabilities: ['SYS_CHROOT'] } }));
    expect(dropped !== undefined && allowedAlways(dropped, 'chroot')).toBe(false);
  });

  it('is rendered in nsexec line format: default, then architectures, then one line per syscall with its conditions', async () => {
    const text = renderProfile(await runtimeDefault());
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toBe('default errno:1');
    if (process.arch === 'x64') expect(lines.slice(1, 3)).toEqual(['arch x86', 'arch x32']);
    expect(lines).toContain('read allow');
    expect(lines).toContain('socket allow 0:lt:38:0');
    expect(lines).toContain(`clone allow 0:masked_eq:${String(0x7e020000)}:0`);
    expect(lines).toContain('clone3 errno:38');
    for (const line of lines.slice(3)) expect(line).toMatch(/^[a-z0-9_]+ [a-z_]+(:\d+)?( \d:[a-z_]+:\d+:\d+)*$/);
  });
});

describe('no seccomp filter', () => {
  it.each([
    ['privileged', context({ privileged: true })],
    ['Unconfined', context({ seccomp: { profileType: SecurityProfile_ProfileType.Unconfined } })],
    ['no profile at all', LinuxContainerSecurityContext.fromPartial({})],
  ])('for a %s container', async (_what, ctx) => {
    expect(await seccompProfile(ctx)).toBeUndefined();
  });
});

describe('Localhost seccomp profiles (OCI JSON, with argument conditions)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'icetray-seccomp-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function load(profile: unknown, add: string[] = []): Promise<SeccompProfile | undefined> {
    const file = join(dir, `${String(Math.random())}.json`);
    await writeFile(file, JSON.stringify(profile));
    return seccompProfile(
      context({
        seccomp: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: file },
        capabilities: { addCapabilities: add },
      }),
    );
  }

  it('maps actions, errnoRet, architectures and every SCMP_CMP_* operator', async () => {
    const ops = ['NE', 'LT', 'LE', 'EQ', 'GE', 'GT', 'MASKED_EQ'];
    const profile = await load({
      defaultAction: 'SCMP_ACT_ERRNO',
      defaultErrnoRet: 38,
      architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'],
      flags: ['SECCOMP_FILTER_FLAG_LOG'],
      syscalls: [
        { names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' },
        { names: ['kill'], action: 'SCMP_ACT_KILL_PROCESS' },
        { names: ['tkill'], action: 'SCMP_ACT_KILL' },
        { names: ['getpid'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
        ...ops.map((op, index) => ({
          names: ['ioctl'],
          action: 'SCMP_ACT_ALLOW',
          args: [{ index: index % 6, value: 5, valueTwo: 4, op: `SCMP_CMP_${op}` }],
        })),
      ],
    });
    expect(profile?.defaultAction).toBe('errno:38');
    expect(profile?.architectures).toEqual(['x86_64', 'x86']);
    expect(profile?.flags).toEqual(['log']);
    const text = renderProfile(profile as SeccompProfile);
    expect(text).toContain('read allow\nwrite allow\n');
    expect(text).toContain('kill kill_process\n');
    expect(text).toContain('tkill kill_thread\n');
    expect(text).toContain('getpid errno:13\n');
    for (const [index, op] of ['ne', 'lt', 'le', 'eq', 'ge', 'gt', 'masked_eq'].entries())
      expect(text).toContain(`ioctl allow ${index % 6}:${op}:5:4\n`);
  });

  it('makes one rule per condition when a rule tests one argument twice, as runc does', async () => {
    const profile = await load({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [
        {
          names: ['socket'],
          action: 'SCMP_ACT_ERRNO',
          args: [
            { index: 0, value: 38, op: 'SCMP_CMP_EQ' },
            { index: 0, value: 40, op: 'SCMP_CMP_EQ' },
          ],
        },
      ],
    });
    expect(renderProfile(profile as SeccompProfile)).toBe('default allow\nsocket errno:1 0:eq:38:0\nsocket errno:1 0:eq:40:0\n');
  });

  it("honours Docker's includes and excludes (capabilities, architectures) and archMap", async () => {
    const profile = await load(
      {
        defaultAction: 'SCMP_ACT_ERRNO',
        archMap: [{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] }],
        syscalls: [
          { names: ['mount'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMIN'] } },
          { names: ['reboot'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_BOOT'] } },
          { names: ['clone'], action: 'SCMP_ACT_ALLOW', excludes: { caps: ['CAP_SYS_ADMIN'] } },
          { names: ['arch_prctl'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['amd64'] } },
          { names: ['breakpoint'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['arm64'] } },
          { names: ['openat2'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '5.6' } },
        ],
      },
      ['SYS_ADMIN'],
    );
    const names = profile?.rules.flatMap((rule) => rule.names);
    expect(names).toContain('mount');
    expect(names).toContain('openat2');
    expect(names).not.toContain('reboot');
    expect(names).not.toContain('clone');
    if (process.arch === 'x64') {
      expect(names).toContain('arch_prctl');
      expect(names).not.toContain('breakpoint');
      expect(profile?.architectures).toEqual(['x86_64', 'x86', 'x32']);
    }
  });

  it.each([
    [{ defaultAction: 'SCMP_ACT_MAYBE' }, /defaultAction: action "SCMP_ACT_MAYBE"/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_NOPE' }] }, /syscalls\[0\]\.action/],
    [
      { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, op: 'SCMP_CMP_ABOUT' }] }] },
      /syscalls\[0\]\.args\[0\]: operator "SCMP_CMP_ABOUT"/,
    ],
    [
      { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 6, op: 'SCMP_CMP_EQ' }] }] },
      /args\[0\]: index 6/,
    ],
    [
      { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 2 ** 60, op: 'SCMP_CMP_EQ' }] }] },
      /args\[0\]\.value: .* is not an exact unsigned integer/,
    ],
    [{ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_Z80'] }, /architecture "SCMP_ARCH_Z80"/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_NEW_LISTENER'] }, /flag "SECCOMP_FILTER_FLAG_NEW_LISTENER"/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', listenerPath: '/run/agent.sock' }, /listenerPath/],
    [{ defaultAction: 'SCMP_ACT_NOTIFY' }, /SCMP_ACT_NOTIFY is not supported/],
    // A name is written into nsexec's line format: one that could start a line of its own is refused.
    [{ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read allow\nwrite'], action: 'SCMP_ACT_ALLOW' }] }, /is not a syscall name/],
    [[1, 2], /not a JSON object/],
  ])('refuses %j naming the field', async (profile, message) => {
    const error = await load(profile).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toMatch(message);
  }); // prettier-ignore

  it('refuses a file that is not JSON or not there as InvalidArgument', async () => {
    const missing = seccompProfile(
      context({ seccomp: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: join(dir, 'none.json') } }),
    );
    await expect(missing).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});
