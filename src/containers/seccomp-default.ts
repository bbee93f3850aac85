import { arch } from 'node:process';
import { LinuxContainerSecurityContext } from '../generated/api.js';
import { capabilityMask } from './security-context.js';
import type { SeccompCondition, SeccompProfile, SeccompRule } from './seccomp.js';

/**
 * icetray's RuntimeDefault seccomp profile: the coverage of containerd's default
 * (contrib/seccomp/seccomp_default.go, itself Docker's), written as data. It is an allowlist: a
 * call it does not name fails with EPERM. What it leaves out reaches past the container — the
 * kernel's keyrings, modules, clocks and accounting, reboot, swap, BPF and perf — or creates
 * namespaces; each of those comes back when the container holds the capability that makes it
 * safe to have (containerd reads the bounding set; icetray's is the capability mask).
 */

/** Allowed for every container. Names an architecture lacks are skipped by nsexec's libseccomp. */
const ALWAYS_ALLOWED = [
  'accept', 'accept4', 'access', 'adjtimex', 'alarm', 'bind', 'brk', 'cachestat', 'capget', 'capset', 'chdir', 'chmod',
  'chown', 'chown32', 'clock_adjtime', 'clock_adjtime64', 'clock_getres', 'clock_getres_time64', 'clock_gettime',
  'clock_gettime64', 'clock_nanosleep', 'clock_nanosleep_time64', 'close', 'close_range', 'connect', 'copy_file_range',
  'creat', 'dup', 'dup2', 'dup3', 'epoll_create', 'epoll_create1', 'epoll_ctl', 'epoll_ctl_old', 'epoll_pwait',
  'epoll_pwait2', 'epoll_wait', 'epoll_wait_old', 'eventfd', 'eventfd2', 'execve', 'execveat', 'exit', 'exit_group',
  'faccessat', 'faccessat2', 'fadvise64', 'fadvise64_64', 'fallocate', 'fanotify_mark', 'fchdir', 'fchmod', 'fchmodat',
  'fchmodat2', 'fchown', 'fchown32', 'fchownat', 'fcntl', 'fcntl64', 'fdatasync', 'fgetxattr', 'flistxattr', 'flock',
  'fork', 'fremovexattr', 'fsetxattr', 'fstat', 'fstat64', 'fstatat64', 'fstatfs', 'fstatfs64', 'fsync', 'ftruncate',
  'ftruncate64', 'futex', 'futex_requeue', 'futex_time64', 'futex_wait', 'futex_waitv', 'futex_wake', 'futimesat',
  'getcpu', 'getcwd', 'getdents', 'getdents64', 'getegid', 'getegid32', 'geteuid', 'geteuid32', 'getgid', 'getgid32',
  'getgroups', 'getgroups32', 'getitimer', 'getpeername', 'getpgid', 'getpgrp', 'getpid', 'getppid', 'getpriority',
  'getrandom', 'getresgid', 'getresgid32', 'getresuid', 'getresuid32', 'getrlimit', 'get_robust_list', 'getrusage',
  'getsid', 'getsockname', 'getsockopt', 'get_thread_area', 'gettid', 'gettimeofday', 'getuid', 'getuid32', 'getxattr',
  'getxattrat', 'inotify_add_watch', 'inotify_init', 'inotify_init1', 'inotify_rm_watch', 'io_cancel', 'ioctl',
  'io_destroy', 'io_getevents', 'io_pgetevents', 'io_pgetevents_time64', 'ioprio_get', 'ioprio_set', 'io_setup',
  'io_submit', 'ipc', 'kill', 'landlock_add_rule', 'landlock_create_ruleset', 'landlock_restrict_self', 'lchown',
  'lchown32', 'lgetxattr', 'link', 'linkat', 'listen', 'listmount', 'listxattr', 'listxattrat', 'llistxattr', '_llseek',
  'lremovexattr', 'lseek', 'lsetxattr', 'lsm_get_self_attr', 'lsm_list_modules', 'lsm_set_self_attr', 'lstat', 'lstat64',
  'madvise', 'membarrier', 'memfd_create', 'memfd_secret', 'mincore', 'mkdir', 'mkdirat', 'mknod', 'mknodat', 'mlock',
  'mlock2', 'mlockall', 'map_shadow_stack', 'mmap', 'mmap2', 'mprotect', 'mq_getsetattr', 'mq_notify', 'mq_open',
  'mq_timedreceive', 'mq_timedreceive_time64', 'mq_timedsend', 'mq_timedsend_time64', 'mq_unlink', 'mremap', 'mseal',
  'msgctl', 'msgget', 'msgrcv', 'msgsnd', 'msync', 'munlock', 'munlockall', 'munmap', 'name_to_handle_at', 'nanosleep',
  'newfstatat', '_newselect', 'open', 'openat', 'openat2', 'pause', 'pidfd_open', 'pidfd_send_signal', 'pipe', 'pipe2',
  'pkey_alloc', 'pkey_free', 'pkey_mprotect', 'poll', 'ppoll', 'ppoll_time64', 'prctl', 'pread64', 'preadv', 'preadv2',
  'prlimit64', 'process_mrelease', 'pselect6', 'pselect6_time64', 'pwrite64', 'pwritev', 'pwritev2', 'read', 'readahead',
  'readlink', 'readlinkat', 'readv', 'recv', 'recvfrom', 'recvmmsg', 'recvmmsg_time64', 'recvmsg', 'remap_file_pages',
  'removexattr', 'removexattrat', 'rename', 'renameat', 'renameat2', 'restart_syscall', 'rmdir', 'rseq', 'rt_sigaction',
  'rt_sigpending', 'rt_sigprocmask', 'rt_sigqueueinfo', 'rt_sigreturn', 'rt_sigsuspend', 'rt_sigtimedwait',
  'rt_sigtimedwait_time64', 'rt_tgsigqueueinfo', 'sched_getaffinity', 'sched_getattr', 'sched_getparam',
  'sched_get_priority_max', 'sched_get_priority_min', 'sched_getscheduler', 'sched_rr_get_interval',
  'sched_rr_get_interval_time64', 'sched_setaffinity', 'sched_setattr', 'sched_setparam', 'sched_setscheduler',
  'sched_yield', 'seccomp', 'select', 'semctl', 'semget', 'semop', 'semtimedop', 'semtimedop_time64', 'send', 'sendfile',
  'sendfile64', 'sendmmsg', 'sendmsg', 'sendto', 'setfsgid', 'setfsgid32', 'setfsuid', 'setfsuid32', 'setgid',
  'setgid32', 'setgroups', 'setgroups32', 'setitimer', 'setpgid', 'setpriority', 'setregid', 'setregid32', 'setresgid',
  'setresgid32', 'setresuid', 'setresuid32', 'setreuid', 'setreuid32', 'setrlimit', 'set_robust_list', 'setsid',
  'setsockopt', 'set_thread_area', 'set_tid_address', 'setuid', 'setuid32', 'setxattr', 'setxattrat', 'shmat', 'shmctl',
  'shmdt', 'shmget', 'shutdown', 'sigaltstack', 'signalfd', 'signalfd4', 'sigprocmask', 'sigreturn', 'socketcall',
  'socketpair', 'splice', 'stat', 'stat64', 'statfs', 'statfs64', 'statmount', 'statx', 'symlink', 'symlinkat', 'sync',
  'sync_file_range', 'syncfs', 'sysinfo', 'tee', 'tgkill', 'time', 'timer_create', 'timer_delete', 'timer_getoverrun',
  'timer_gettime', 'timer_gettime64', 'timer_settime', 'timer_settime64', 'timerfd_create', 'timerfd_gettime',
  'timerfd_gettime64', 'timerfd_settime', 'timerfd_settime64', 'times', 'tkill', 'truncate', 'truncate64', 'ugetrlimit',
  'umask', 'uname', 'unlink', 'unlinkat', 'uretprobe', 'utime', 'utimensat', 'utimensat_time64', 'utimes', 'vfork',
  'vmsplice', 'wait4', 'waitid', 'waitpid', 'write', 'writev',
]; // prettier-ignore

/**
 * Allowed too: ptrace and reading another process's memory are safe since Linux 4.8 (seccomp
 * rules can no longer be bypassed through ptrace), which every kernel icetray runs on is.
 */
const SINCE_LINUX_4_8 = ['process_vm_readv', 'process_vm_writev', 'ptrace'];

/** Calls only one architecture family has (Node's names for them). */
const BY_ARCHITECTURE: Partial<Record<NodeJS.Architecture, { architectures: string[]; syscalls: string[] }>> = {
  // The 32-bit ABIs too, so that i386 and x32 programs run (and are filtered) as on containerd.
  x64: { architectures: ['x86', 'x32'], syscalls: ['arch_prctl', 'modify_ldt'] },
  arm64: {
    architectures: ['arm'],
    syscalls: ['arm_fadvise64_64', 'arm_sync_file_range', 'sync_file_range2', 'breakpoint', 'cacheflush', 'set_tls'],
  },
};

/** What each capability brings back: the calls it governs in the kernel anyway. */
const BY_CAPABILITY: Record<string, string[]> = {
  DAC_READ_SEARCH: ['open_by_handle_at'],
  SYS_ADMIN: [
    'bpf', 'clone', 'clone3', 'fanotify_init', 'fsconfig', 'fsmount', 'fsopen', 'fspick', 'lookup_dcookie', 'mount',
    'mount_setattr', 'move_mount', 'open_tree', 'perf_event_open', 'quotactl', 'quotactl_fd', 'setdomainname',
    'sethostname', 'setns', 'syslog', 'umount', 'umount2', 'unshare',
  ],
  SYS_BOOT: ['reboot'],
  SYS_CHROOT: ['chroot'],
  SYS_MODULE: ['delete_module', 'init_module', 'finit_module'],
  SYS_PACCT: ['acct'],
  SYS_PTRACE: ['kcmp', 'pidfd_getfd', 'process_madvise', 'process_vm_readv', 'process_vm_writev', 'ptrace'],
  SYS_RAWIO: ['iopl', 'ioperm'],
  SYS_TIME: ['settimeofday', 'stime', 'clock_settime', 'clock_settime64'],
  SYS_TTY_CONFIG: ['vhangup'],
  SYS_NICE: ['get_mempolicy', 'mbind', 'set_mempolicy', 'set_mempolicy_home_node'],
  SYSLOG: ['syslog'],
  BPF: ['bpf'],
  PERFMON: ['perf_event_open'],
}; // prettier-ignore

/** The flags that make a new namespace (linux/sched.h), which only CAP_SYS_ADMIN may use here. */
const CLONE_NEWNS = 0x00020000n;
const CLONE_NEWCGROUP = 0x02000000n;
const CLONE_NEWUTS = 0x04000000n;
const CLONE_NEWIPC = 0x08000000n;
const CLONE_NEWUSER = 0x10000000n;
const CLONE_NEWPID = 0x20000000n;
const CLONE_NEWNET = 0x40000000n;
const CLONE_NEWTIME = 0x00000080n;
const NAMESPACE_FLAGS = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;

const ENOSYS = 38;
/** socket(2) families refused: AF_ALG (the kernel's crypto API) and AF_VSOCK (the hypervisor's sockets). */
const AF_ALG = 38n;
const AF_VSOCK = 40n;

/** `name` allowed when argument `index` compares to `value` as `op` says. */
function allowWhen(name: string, index: number, op: SeccompCondition['op'], value: bigint, valueTwo = 0n): SeccompRule {
  return { names: [name], action: 'allow', conditions: [{ index, op, value, valueTwo }] };
}

/**
 * Rules with argument conditions. Alternatives are separate rules (a call passes if one
 * matches): several conditions in one rule must all hold, and libseccomp cannot test one
 * argument twice in a rule.
 */
const CONDITIONAL: SeccompRule[] = [
  // Every socket family but the two refused, as three ranges around them.
  allowWhen('socket', 0, 'lt', AF_ALG),
  allowWhen('socket', 0, 'eq', AF_ALG + 1n),
  allowWhen('socket', 0, 'gt', AF_VSOCK),
  // personality(2): Linux, its 32-bit flavour, the 2.6-uname flag on either, and the query
  // (0xffffffff); not the flags that switch off address randomisation and the like.
  ...[0x0n, 0x8n, 0x20000n, 0x20008n, 0xffffffffn].map((value) => allowWhen('personality', 0, 'eq', value)),
];

/** Whether the capability mask holds `name`; security-context.ts keeps the one table of capability numbers. */
export function holdsCapability(mask: bigint, name: string): boolean {
  const bit = capabilityMask(
    LinuxContainerSecurityContext.fromPartial({ capabilities: { addCapabilities: [name], dropCapabilities: ['ALL'] } }),
  );
  return (mask & bit) !== 0n;
}

/** The RuntimeDefault profile for a container holding the capabilities of `capabilities` (capabilityMask). */
export function runtimeDefaultProfile(capabilities: bigint): SeccompProfile {
  const native = BY_ARCHITECTURE[arch];
  const rules: SeccompRule[] = [
    { names: [...ALWAYS_ALLOWED, ...SINCE_LINUX_4_8, ...(native?.syscalls ?? [])], action: 'allow', conditions: [] },
    ...CONDITIONAL,
  ];
  for (const [capability, syscalls] of Object.entries(BY_CAPABILITY))
    if (holdsCapability(capabilities, capability)) rules.push({ names: syscalls, action: 'allow', conditions: [] });
  if (!holdsCapability(capabilities, 'SYS_ADMIN')) {
    // A thread, a process, a vfork: yes; a new namespace: no. clone's flags are its first
    // argument on x86 and arm (the low byte is the exit signal, so CLONE_NEWTIME cannot be
    // tested there; clone cannot make a time namespace anyway). unshare without a namespace
    // flag (CLONE_FILES, CLONE_FS, CLONE_SYSVSEM) only touches the caller, so it stays allowed.
    rules.push(allowWhen('clone', 0, 'masked_eq', NAMESPACE_FLAGS, 0n));
    rules.push(allowWhen('unshare', 0, 'masked_eq', NAMESPACE_FLAGS | CLONE_NEWTIME, 0n));
    // clone3 keeps its flags in memory, where seccomp cannot look: ENOSYS rather than EPERM,
    // so that glibc falls back to clone, which is filtered (moby/moby#42681).
    rules.push({ names: ['clone3'], action: `errno:${ENOSYS}`, conditions: [] });
  }
  return { defaultAction: 'errno:1', architectures: native?.architectures ?? [], flags: [], rules };
}
