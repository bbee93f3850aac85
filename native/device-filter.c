/*
 * nsexec device-filter CGROUP_DIR: attaches a device filter to a cgroup v2 folder.
 *
 * cgroup v1 has a `devices` controller with allow/deny files; cgroup v2 has none. There the
 * kernel asks an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE, attached to the cgroup,
 * whether a process may open or mknod a device (runc does the same). icetray writes the program
 * (src/cgroups/device-program.ts builds the instructions from the container's allowlist); this
 * mode only loads what arrives on stdin, 8 bytes per instruction, and attaches it.
 *
 * BPF_F_ALLOW_MULTI: a program attached higher up (systemd's, on a slice) keeps running too, and
 * a device is allowed only when every program on the way allows it.
 *
 * The kernel checks the filter of the process's cgroup in the v2 hierarchy whenever one is
 * mounted, also beside v1 controllers (hybrid mode), so the filter holds on such hosts as well.
 * On failure it prints the verifier's log and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "device-filter.h"

/* Far above what an allowlist needs (a few instructions per rule), and below the kernel's limit. */
#define MAX_INSNS 4096

static long bpf(int cmd, union bpf_attr *attr) { return syscall(SYS_bpf, cmd, attr, sizeof *attr); }

int device_filter_main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: nsexec device-filter CGROUP_DIR < program\n");
    return 2;
  }
  static struct bpf_insn insns[MAX_INSNS + 1];
  size_t bytes = 0, n;
  while ((n = fread((char *)insns + bytes, 1, sizeof insns - bytes, stdin)) > 0) bytes += n;
  if (bytes == 0 || bytes % sizeof(struct bpf_insn) != 0 || bytes > MAX_INSNS * sizeof(struct bpf_insn)) {
    fprintf(stderr, "device-filter: the program must be 1 to %d instructions of 8 bytes (got %zu bytes)\n", MAX_INSNS, bytes);
    return 1;
  }

  static char verifier_log[65536];
  union bpf_attr load;
  memset(&load, 0, sizeof load);
  load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  load.insns = (uint64_t)(uintptr_t)insns;
  load.insn_cnt = (uint32_t)(bytes / sizeof(struct bpf_insn));
  load.license = (uint64_t)(uintptr_t) "Apache-2.0";
  load.log_buf = (uint64_t)(uintptr_t)verifier_log;
  load.log_size = sizeof verifier_log;
  load.log_level = 1;
  int prog = (int)bpf(BPF_PROG_LOAD, &load);
  if (prog < 0) {
    fprintf(stderr, "device-filter: load: %s\n%s", strerror(errno), verifier_log);
    return 1;
  }

  int cgroup = open(argv[1], O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (cgroup < 0) {
    fprintf(stderr, "device-filter: %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  union bpf_attr attach;
  memset(&attach, 0, sizeof attach);
  attach.target_fd = (uint32_t)cgroup;
  attach.attach_bpf_fd = (uint32_t)prog;
  attach.attach_type = BPF_CGROUP_DEVICE;
  attach.attach_flags = BPF_F_ALLOW_MULTI;
  /* The attachment keeps the program alive for as long as the cgroup exists: no pin needed. */
  if (bpf(BPF_PROG_ATTACH, &attach) < 0) {
    fprintf(stderr, "device-filter: attach to %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  return 0;
}
