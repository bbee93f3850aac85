/*
 * nsexec: starts a container's process inside its pod, or a command inside a running container.
 *
 * icetray runs it with everything decided already (src/containers/nsexec-launcher.ts builds the
 * arguments); nsexec only performs the steps, in the order a container needs them:
 *
 *   1. wait on --sync-fd until icetray has placed this process in the container's cgroup,
 *      so no code of the container ever runs outside it;
 *   2. join the pod's namespaces (setns on the pinned files), or all of a running container's
 *      (--join PID, for exec); a new mount namespace, and a new PID namespace when asked;
 *   3. fork when the PID namespace changed (it only applies to children), for a tty, or when
 *      icetray asks for an --exit-file: the parent stays as a small monitor that forwards
 *      signals, exits as the child did and writes that status to the exit file. It also keeps
 *      a read end of the container's stdout and stderr pipes, so that the container outlives
 *      an icetray restart: with no reader a write would kill it (SIGPIPE); with the monitor's
 *      it waits in the pipe until the new icetray reopens it from /proc/MONITOR/fd/1;
 *   4. mounts: /proc, /sys, /dev, the pod's files and the config's binds, masked and read-only
 *      paths, then pivot_root into the rootfs;
 *   5. with --tty: a pseudo-terminal from the container's own /dev/pts becomes the process's
 *      stdin, stdout and stderr; the monitor relays it (see relay_tty);
 *   6. groups, gid, uid; capabilities; no_new_privs; seccomp; working dir; exec.
 *
 * A failure before exec is written to --error-fd ("step: reason") and the process exits 125;
 * a command that cannot be found or run exits 127/126, as shells do.
 *
 * `nsexec device-filter CGROUP_DIR` is a second mode: see device-filter.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/mount.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "device-filter.h"

#define EXIT_SETUP 125
#define MAX_ITEMS 128

static int error_fd = -1;

/* Reports why the container could not start, to icetray and to stderr, then exits. */
static void die(const char *step, const char *fmt, ...) {
  char message[1024];
  va_list args;
  va_start(args, fmt);
  vsnprintf(message, sizeof message, fmt, args);
  va_end(args);
  char line[1200];
  int n = snprintf(line, sizeof line, "%s: %s", step, message);
  if (error_fd >= 0 && write(error_fd, line, (size_t)n) < 0) {
    /* nothing more to say */
  }
  fprintf(stderr, "nsexec: %s\n", line);
  _exit(EXIT_SETUP);
}

struct bind {
  char *source, *target;
  unsigned long flags;      /* MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC: set by a remount of the bind */
  int recursive_readonly;   /* read-only down to every mount below it too (mount_setattr) */
  unsigned long propagation; /* MS_PRIVATE, MS_SLAVE or MS_SHARED */
};

struct options {
  int sync_fd;
  char *ns[5]; /* net, ipc, uts, pid, mnt: files to setns */
  int new_pid;
  pid_t join; /* exec: the container process whose namespaces to enter */
  char *rootfs;
  int privileged, readonly_rootfs;
  struct bind binds[MAX_ITEMS];
  int nbinds;
  char *masked[MAX_ITEMS], *readonly[MAX_ITEMS];
  int nmasked, nreadonly;
  char *shm;
  uid_t uid;
  gid_t gid;
  gid_t groups[MAX_ITEMS];
  int ngroups;
  unsigned long long caps;
  int no_new_privs;
  char *seccomp;
  char *cwd;
  int oom_score_adj;
  int set_oom;
  int tty;
  int control_fd; /* with --tty: lines from icetray: "size COLUMNS ROWS", "eof" (see read_control) */
  char *exit_file;
  char **argv;
};

static const char *NS_NAMES[5] = {"net", "ipc", "uts", "pid", "mnt"};
static const int NS_FLAGS[5] = {CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWPID, CLONE_NEWNS};

static char *mkpath(const char *root, const char *path) {
  size_t n = strlen(root) + strlen(path) + 2;
  char *joined = malloc(n);
  if (joined == NULL) die("memory", "out of memory");
  snprintf(joined, n, "%s/%s", root, path[0] == '/' ? path + 1 : path);
  return joined;
}

/* mkdir -p */
static void mkdirs(const char *path, mode_t mode) {
  char buffer[4096];
  snprintf(buffer, sizeof buffer, "%s", path);
  for (char *p = buffer + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    mkdir(buffer, mode);
    *p = '/';
  }
  mkdir(buffer, mode);
}

/* The mount point for a bind: a folder for a folder, an empty file for anything else. */
static void make_target(const char *source, const char *target) {
  struct stat st;
  if (stat(source, &st) == 0 && S_ISDIR(st.st_mode)) {
    mkdirs(target, 0755);
    return;
  }
  char parent[4096];
  snprintf(parent, sizeof parent, "%s", target);
  char *slash = strrchr(parent, '/');
  if (slash != NULL && slash != parent) {
    *slash = '\0';
    mkdirs(parent, 0755);
  }
  int fd = open(target, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd >= 0) close(fd);
}

static void do_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data) {
  if (mount(source, target, type, flags, data) < 0) die("mount", "%s on %s: %s", source ? source : type, target, strerror(errno));
}

static void bind_readonly(const char *path) {
  do_mount(path, path, NULL, MS_BIND | MS_REC, NULL);
  do_mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL);
}

static void make_dev(const char *dev, const char *name, mode_t mode, int major_, int minor_) {
  char *path = mkpath(dev, name);
  if (mknod(path, S_IFCHR | mode, makedev(major_, minor_)) < 0 && errno != EEXIST) die("mknod", "%s: %s", path, strerror(errno));
  chmod(path, mode);
  free(path);
}

/* /dev as a container expects it: the usual character devices, ptys, shm, mqueue. */
static void setup_dev(struct options *o) {
  char *dev = mkpath(o->rootfs, "/dev");
  mkdirs(dev, 0755);
  do_mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");
  make_dev(dev, "null", 0666, 1, 3);
  make_dev(dev, "zero", 0666, 1, 5);
  make_dev(dev, "full", 0666, 1, 7);
  make_dev(dev, "random", 0666, 1, 8);
  make_dev(dev, "urandom", 0666, 1, 9);
  make_dev(dev, "tty", 0666, 5, 0);
  char *pts = mkpath(dev, "pts");
  mkdirs(pts, 0755);
  do_mount("devpts", pts, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
  char *ptmx = mkpath(dev, "ptmx");
  if (symlink("pts/ptmx", ptmx) < 0 && errno != EEXIST) die("symlink", "%s: %s", ptmx, strerror(errno));
  const char *links[][2] = {{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}};
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
    char *link = mkpath(dev, links[i][1]);
    if (symlink(links[i][0], link) < 0 && errno != EEXIST) die("symlink", "%s: %s", link, strerror(errno));
    free(link);
  }
  char *shm = mkpath(dev, "shm");
  mkdirs(shm, 01777);
  if (o->shm != NULL) {
    do_mount(o->shm, shm, NULL, MS_BIND | MS_REC, NULL);
    do_mount(NULL, shm, NULL, MS_REC | MS_PRIVATE, NULL);
  }
  else do_mount("shm", shm, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
  char *mqueue = mkpath(dev, "mqueue");
  mkdirs(mqueue, 0755);
  do_mount("mqueue", mqueue, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  free(dev), free(pts), free(ptmx), free(shm), free(mqueue);
}

/* The flags of the mount at `path` that a bind remount would otherwise drop. */
static unsigned long kept_flags(const char *path) {
  struct statvfs vfs;
  if (statvfs(path, &vfs) < 0) die("mount", "statvfs %s: %s", path, strerror(errno));
  const struct {
    unsigned long st, ms;
  } pairs[] = {{ST_RDONLY, MS_RDONLY}, {ST_NOSUID, MS_NOSUID},         {ST_NODEV, MS_NODEV},          {ST_NOEXEC, MS_NOEXEC},
               {ST_NOATIME, MS_NOATIME}, {ST_NODIRATIME, MS_NODIRATIME}, {ST_RELATIME, MS_RELATIME}};
  unsigned long flags = 0;
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
    if (vfs.f_flag & pairs[i].st) flags |= pairs[i].ms;
  return flags;
}

/* Makes the mount that holds `path` private (only that mount): the nearest mount point at or
 * above it, found by walking up until the kernel accepts MS_PRIVATE (EINVAL: not a mount point). */
static void make_holder_private(const char *path) {
  char buffer[4096];
  snprintf(buffer, sizeof buffer, "%s", path);
  while (mount(NULL, buffer, NULL, MS_PRIVATE, NULL) < 0) {
    char *slash = strrchr(buffer, '/');
    if (errno != EINVAL || slash == NULL || strcmp(buffer, "/") == 0) die("mount", "make the mount of %s private: %s", path, strerror(errno));
    if (slash == buffer) slash[1] = '\0';
    else *slash = '\0';
  }
}

/* The container's filesystem: its rootfs with /proc, /sys, /dev and the binds, then pivot_root. */
static void setup_rootfs(struct options *o) {
  /* Nothing mounted from here on may reach the host: every copied mount becomes private, or a
   * slave of the host's when a bind asks for host-to-container propagation. A bidirectional
   * bind (rshared) must stay in its host peer group instead: then the copies keep the host's
   * propagation, and only the mount holding the rootfs is made private, so that /proc, /dev
   * and the other binds mounted into it stay in this namespace (runc does the same). */
  unsigned long propagation = MS_PRIVATE;
  int bidirectional = 0;
  for (int i = 0; i < o->nbinds; i++) {
    if (o->binds[i].propagation == MS_SLAVE) propagation = MS_SLAVE;
    if (o->binds[i].propagation == MS_SHARED) bidirectional = 1;
  }
  if (bidirectional) make_holder_private(o->rootfs);
  else do_mount(NULL, "/", NULL, MS_REC | propagation, NULL);
  do_mount(o->rootfs, o->rootfs, NULL, MS_BIND | MS_REC, NULL);

  char *proc = mkpath(o->rootfs, "/proc");
  mkdirs(proc, 0555);
  do_mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  char *sys = mkpath(o->rootfs, "/sys");
  mkdirs(sys, 0555);
  do_mount("sysfs", sys, "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | (o->privileged ? 0 : MS_RDONLY), NULL);
  setup_dev(o);

  for (int i = 0; i < o->nbinds; i++) {
    struct bind *b = &o->binds[i];
    char *target = mkpath(o->rootfs, b->target);
    make_target(b->source, target);
    do_mount(b->source, target, NULL, MS_BIND | MS_REC, NULL);
    /* A remount applies to the bind itself, not to mounts below it (CRI's plain readonly). It
     * sets every flag at once: keep those the host's mount has (a nodev or noexec host folder
     * must not become less safe inside the container), then add the asked ones. */
    if (b->flags != 0) do_mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | kept_flags(target) | b->flags, NULL);
    /* recursive_read_only: every mount below it too, in one call (Linux >= 5.12). */
    if (b->recursive_readonly) {
      struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
      if (syscall(SYS_mount_setattr, AT_FDCWD, target, AT_RECURSIVE, &attr, sizeof attr) < 0)
        die("mount", "make %s recursively read-only: %s", target, strerror(errno));
    }
    do_mount(NULL, target, NULL, MS_REC | b->propagation, NULL);
    free(target);
  }
  for (int i = 0; i < o->nmasked; i++) {
    char *path = mkpath(o->rootfs, o->masked[i]);
    struct stat st;
    if (stat(path, &st) == 0) {
      if (S_ISDIR(st.st_mode)) do_mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0");
      else do_mount("/dev/null", path, NULL, MS_BIND, NULL);
    }
    free(path);
  }
  for (int i = 0; i < o->nreadonly; i++) {
    char *path = mkpath(o->rootfs, o->readonly[i]);
    if (access(path, F_OK) == 0) bind_readonly(path);
    free(path);
  }

  /* pivot_root(".", "."), then detach the old root, now stacked on the new one: runc's way, no
   * folder for it needed. The old root is made a slave first, so that unmounting it cannot
   * propagate to the host's mounts; an fd on it names it, as "." would name the new root. */
  int old_root = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (old_root < 0) die("open", "/: %s", strerror(errno));
  if (chdir(o->rootfs) < 0) die("chdir", "%s: %s", o->rootfs, strerror(errno));
  if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root", "%s", strerror(errno));
  if (fchdir(old_root) < 0) die("chdir", "old root: %s", strerror(errno));
  close(old_root);
  do_mount(NULL, ".", NULL, MS_REC | MS_SLAVE, NULL);
  if (umount2(".", MNT_DETACH) < 0) die("umount", "old root: %s", strerror(errno));
  if (chdir("/") < 0) die("chdir", "/: %s", strerror(errno));
  if (o->readonly_rootfs) do_mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, NULL);
  free(proc), free(sys);
}

/* A seccomp profile as icetray writes it: "default ACTION", then "NAME ACTION" per syscall,
 * ACTION being allow, errno N, kill or log. */
static uint32_t seccomp_action(const char *word, int number) {
  if (strcmp(word, "allow") == 0) return SCMP_ACT_ALLOW;
  if (strcmp(word, "errno") == 0) return SCMP_ACT_ERRNO((uint32_t)number);
  if (strcmp(word, "kill") == 0) return SCMP_ACT_KILL_PROCESS;
  if (strcmp(word, "log") == 0) return SCMP_ACT_LOG;
  if (strcmp(word, "trap") == 0) return SCMP_ACT_TRAP;
  die("seccomp", "unknown action \"%s\"", word);
  return 0;
}

/* Read before pivot_root: the profile file is a host path. */
static char *read_file(const char *file) {
  FILE *f = fopen(file, "re");
  if (f == NULL) die("seccomp", "%s: %s", file, strerror(errno));
  char *text = calloc(1, 1 << 20);
  if (text == NULL) die("memory", "out of memory");
  size_t n = fread(text, 1, (1 << 20) - 1, f);
  text[n] = '\0';
  fclose(f);
  return text;
}

static void load_seccomp(char *profile) {
  char name[128], action[16];
  int number = 0;
  scmp_filter_ctx ctx = NULL;
  for (char *line = strtok(profile, "\n"); line != NULL; line = strtok(NULL, "\n")) {
    number = 0;
    if (sscanf(line, "%127s %15s %d", name, action, &number) < 2) continue;
    if (strcmp(name, "default") == 0) {
      ctx = seccomp_init(seccomp_action(action, number));
      if (ctx == NULL) die("seccomp", "seccomp_init failed");
      continue;
    }
    if (ctx == NULL) die("seccomp", "the first line must be \"default ACTION\"");
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue; /* a syscall this kernel/arch does not have */
    int rc = seccomp_rule_add(ctx, seccomp_action(action, number), nr, 0);
    if (rc < 0 && rc != -EEXIST) die("seccomp", "rule for %s: %s", name, strerror(-rc));
  }
  if (ctx == NULL) die("seccomp", "the profile is empty");
  int rc = seccomp_load(ctx);
  if (rc < 0) die("seccomp", "load: %s", strerror(-rc));
  seccomp_release(ctx);
}

static int last_cap(void) {
  FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
  int last = CAP_LAST_CAP;
  if (f != NULL) {
    if (fscanf(f, "%d", &last) != 1) last = CAP_LAST_CAP;
    fclose(f);
  }
  return last;
}

/* Bounding set first (while we may still drop), then uid/gid keeping caps, then the sets. */
static void set_user_and_caps(struct options *o) {
  int last = last_cap();
  for (int cap = 0; cap <= last; cap++) {
    if ((o->caps >> cap) & 1ULL) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) die("capabilities", "drop %d: %s", cap, strerror(errno));
  }
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) die("capabilities", "keepcaps: %s", strerror(errno));
  if (setgroups((size_t)o->ngroups, o->groups) < 0) die("user", "setgroups: %s", strerror(errno));
  if (setresgid(o->gid, o->gid, o->gid) < 0) die("user", "setgid %u: %s", o->gid, strerror(errno));
  if (setresuid(o->uid, o->uid, o->uid) < 0) die("user", "setuid %u: %s", o->uid, strerror(errno));
  struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct have[2], data[2];
  /* A container cannot get a capability icetray itself lacks (a VM or an outer container may
   * have dropped some): ask for the ones in reach. */
  if (syscall(SYS_capget, &header, have) < 0) die("capabilities", "capget: %s", strerror(errno));
  memset(data, 0, sizeof data);
  for (int i = 0; i < 2; i++) {
    uint32_t mask = (uint32_t)(o->caps >> (32 * i)) & have[i].permitted;
    data[i].permitted = mask;
    data[i].inheritable = mask;
    /* A non-root process keeps no effective capabilities over exec (as in Docker/containerd). */
    data[i].effective = o->uid == 0 ? mask : 0;
  }
  if (syscall(SYS_capset, &header, data) < 0) die("capabilities", "capset: %s", strerror(errno));
}

static void report_pid(int fd, pid_t pid) {
  if (fd < 0) return;
  char line[32];
  int n = snprintf(line, sizeof line, "%d\n", (int)pid);
  if (write(fd, line, (size_t)n) < 0) {
    /* icetray then falls back to this process's pid */
  }
  close(fd);
}

/* --tty, in the container: a pty from the container's /dev/ptmx (its own devpts instance, so
 * `tty` prints /dev/pts/0 inside), the slave as the controlling terminal and as stdin, stdout
 * and stderr; the master goes to the monitor over `channel` (SCM_RIGHTS) and is closed here. */
static void take_pty(int channel) {
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) die("tty", "open /dev/ptmx: %s", strerror(errno));
  if (unlockpt(master) < 0) die("tty", "unlockpt: %s", strerror(errno));
  char name[64];
  if (ptsname_r(master, name, sizeof name) != 0) die("tty", "ptsname: %s", strerror(errno));
  int slave = open(name, O_RDWR | O_NOCTTY);
  if (slave < 0) die("tty", "%s: %s", name, strerror(errno));

  char byte = 't';
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    struct cmsghdr header;
    char space[CMSG_SPACE(sizeof(int))];
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space, .msg_controllen = sizeof control.space};
  struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cmsg), &master, sizeof(int));
  if (sendmsg(channel, &msg, 0) != 1) die("tty", "hand the pty to the monitor: %s", strerror(errno));
  close(master);
  close(channel);

  if (ioctl(slave, TIOCSCTTY, 0) < 0) die("tty", "make %s the controlling terminal: %s", name, strerror(errno));
  for (int fd = 0; fd <= 2; fd++)
    if (dup2(slave, fd) < 0) die("tty", "dup2: %s", strerror(errno));
  if (slave > 2) close(slave);
}

/* The monitor's end of take_pty: the master, or -1 when the child failed before sending it. */
static int receive_pty(int channel) {
  char byte;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    struct cmsghdr header;
    char space[CMSG_SPACE(sizeof(int))];
  } control;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space, .msg_controllen = sizeof control.space};
  ssize_t n;
  while ((n = recvmsg(channel, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  close(channel);
  struct cmsghdr *cmsg = n == 1 ? CMSG_FIRSTHDR(&msg) : NULL;
  if (cmsg == NULL || cmsg->cmsg_type != SCM_RIGHTS) return -1;
  int master;
  memcpy(&master, CMSG_DATA(cmsg), sizeof(int));
  return master;
}

static int write_all(int fd, const char *data, ssize_t n) {
  while (n > 0) {
    ssize_t written = write(fd, data, (size_t)n);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return -1;
    data += written, n -= written;
  }
  return 0;
}

/* icetray's control lines for a terminal: "size COLUMNS ROWS", the client's window size (the
 * child gets SIGWINCH), and "eof", the client closed its input. The stdin pipe closing is not
 * enough to tell: it also closes when icetray itself goes away, and that must not end an
 * interactive container. A line cut between two reads is kept until its end arrives. */
static int read_control(int control_fd, int master, int *send_eof) {
  static char line[64];
  static size_t used = 0;
  char buffer[256];
  ssize_t n = read(control_fd, buffer, sizeof buffer);
  if (n <= 0) return -1;
  for (ssize_t i = 0; i < n; i++) {
    if (buffer[i] != '\n') {
      if (used < sizeof line - 1) line[used++] = buffer[i];
      continue;
    }
    line[used] = '\0';
    used = 0;
    unsigned short columns, rows;
    if (strcmp(line, "eof") == 0) {
      *send_eof = 1;
    } else if (sscanf(line, "size %hu %hu", &columns, &rows) == 2) {
      struct winsize size = {.ws_row = rows, .ws_col = columns};
      ioctl(master, TIOCSWINSZ, &size);
    }
  }
  return 0;
}

/* The monitor of a --tty process: what icetray writes to our stdin goes to the terminal, what
 * the terminal prints goes to our stdout, until the child has exited and its output is read.
 * The master is non-blocking: input the terminal cannot take yet waits in `pending` while its
 * output keeps flowing, so a program that prints without reading its input cannot stall both. */
static void relay_tty(int master, int control_fd, pid_t child) {
  int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
  if (pidfd < 0) die("tty", "pidfd_open: %s", strerror(errno));
  fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
  /* icetray gives /dev/null as stdin to a container created without stdin: nothing to relay,
   * and no end of file to pass on. */
  struct stat st;
  int stdin_open = fstat(0, &st) == 0 && !S_ISCHR(st.st_mode);
  int send_eof = 0;
  char buffer[16384], pending[16384];
  ssize_t npending = 0;
  struct pollfd fds[4] = {{-1, POLLIN, 0}, {master, POLLIN, 0}, {control_fd, POLLIN, 0}, {pidfd, POLLIN, 0}};
  int exited = 0;
  while (!exited) {
    fds[0].fd = stdin_open && npending == 0 ? 0 : -1;
    fds[1].events = POLLIN | (npending > 0 || send_eof ? POLLOUT : 0);
    if (poll(fds, 4, -1) < 0) {
      if (errno == EINTR) continue; /* a forwarded signal */
      break;
    }
    if (fds[0].revents) {
      ssize_t n = read(0, pending, sizeof pending);
      if (n > 0) npending = n;
      else if (n == 0 || errno != EINTR) stdin_open = 0;
    }
    if (fds[1].fd >= 0 && (fds[1].revents & POLLOUT)) {
      if (npending > 0) {
        ssize_t n = write(master, pending, (size_t)npending);
        if (n > 0) memmove(pending, pending + n, (size_t)(npending -= n));
      } else if (send_eof) {
        /* As at a terminal, the program reads end of file when it gets ^D (VEOF). */
        struct termios modes;
        char eof = tcgetattr(master, &modes) == 0 ? (char)modes.c_cc[VEOF] : 4;
        if (write(master, &eof, 1) == 1) send_eof = 0;
      }
    }
    if (fds[1].fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = read(master, buffer, sizeof buffer);
      if (n > 0) write_all(1, buffer, n);
      else if (n == 0 || (errno != EINTR && errno != EAGAIN)) fds[1].fd = -1; /* EIO: no process holds the terminal */
    }
    if (fds[2].revents && read_control(control_fd, master, &send_eof) < 0) fds[2].fd = -1;
    if (fds[3].revents) exited = 1;
  }
  /* What the child printed just before it exited is still in the pty: read it out. A process it
   * left behind may hold the terminal open, so stop at the first empty read. */
  for (ssize_t n; fds[1].fd >= 0 && (n = read(master, buffer, sizeof buffer)) > 0;) write_all(1, buffer, n);
  close(master);
}

static pid_t child_pid = 0;

static void forward(int sig) {
  if (child_pid > 0) kill(child_pid, sig);
}

/* "exit N" or "signal N": how the container ended, for an icetray that did not see it end. */
static void write_exit_file(int fd, int status) {
  if (fd < 0) return;
  char line[32];
  int n = WIFEXITED(status) ? snprintf(line, sizeof line, "exit %d\n", WEXITSTATUS(status))
                            : snprintf(line, sizeof line, "signal %d\n", WTERMSIG(status));
  if (write(fd, line, (size_t)n) < 0) {
    /* icetray then reports the exit code as unknown */
  }
  close(fd);
}

/* When icetray died meanwhile (this process was reparented), what the container wrote last is
 * still in the pipes, and nobody else holds them: leaving now would lose it. So stay until a
 * restarted icetray has read it all (FIONREAD: bytes waiting), then go. */
static void wait_until_read(pid_t icetray, const int held[2]) {
  for (;;) {
    if (getppid() == icetray) return; /* icetray is there and reads to the end itself */
    int waiting = 0;
    for (int i = 0; i < 2; i++) {
      int n = 0;
      if (held[i] >= 0 && ioctl(held[i], FIONREAD, &n) == 0) waiting += n;
    }
    if (waiting == 0) return;
    usleep(100 * 1000);
  }
}

/* The parent after the fork: it forwards signals, relays the terminal when there is one, and
 * exits as the child did. */
static void monitor(pid_t child, int tty_channel, int control_fd, int exit_fd, const int held[2]) {
  pid_t icetray = getppid();
  child_pid = child;
  /* Every signal a stop may use goes on to the container (not the ones the monitor's own
   * faults raise, nor SIGCHLD, SIGKILL and SIGSTOP, which cannot be caught). */
  int sigs[] = {SIGHUP,  SIGINT,  SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGTERM,   SIGCONT, SIGTSTP, SIGTTIN,
                SIGTTOU, SIGURG,  SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO,   SIGPWR};
  struct sigaction sa = {.sa_handler = forward, .sa_flags = SA_RESTART};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
  if (tty_channel >= 0) {
    int master = receive_pty(tty_channel);
    if (master >= 0) relay_tty(master, control_fd, child);
  }
  int status;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) _exit(EXIT_SETUP);
  }
  write_exit_file(exit_fd, status);
  wait_until_read(icetray, held);
  if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
  int sig = WTERMSIG(status);
  signal(sig, SIG_DFL);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* no core dump of the monitor for a child's SIGSEGV */
  kill(getpid(), sig);
  _exit(128 + sig);
}

static void parse_bind(struct options *o, char *spec) {
  if (o->nbinds >= MAX_ITEMS) die("arguments", "too many binds");
  struct bind *b = &o->binds[o->nbinds++];
  b->source = strtok(spec, ":");
  b->target = strtok(NULL, ":");
  b->propagation = MS_PRIVATE;
  if (b->source == NULL || b->target == NULL) die("arguments", "--bind SOURCE:TARGET[:ro|:rro][:nosuid][:nodev][:noexec][:rslave|:rshared]");
  for (char *flag = strtok(NULL, ":"); flag != NULL; flag = strtok(NULL, ":")) {
    if (strcmp(flag, "ro") == 0) b->flags |= MS_RDONLY;
    else if (strcmp(flag, "rro") == 0) b->flags |= MS_RDONLY, b->recursive_readonly = 1;
    else if (strcmp(flag, "nosuid") == 0) b->flags |= MS_NOSUID;
    else if (strcmp(flag, "nodev") == 0) b->flags |= MS_NODEV;
    else if (strcmp(flag, "noexec") == 0) b->flags |= MS_NOEXEC;
    else if (strcmp(flag, "rslave") == 0) b->propagation = MS_SLAVE;
    else if (strcmp(flag, "rshared") == 0) b->propagation = MS_SHARED;
    else if (strcmp(flag, "rprivate") != 0) die("arguments", "unknown bind flag %s", flag);
  }
}

static void parse(int argc, char **argv, struct options *o) {
  static struct option longs[] = {
      {"sync-fd", required_argument, 0, 's'}, {"error-fd", required_argument, 0, 'e'}, {"ns", required_argument, 0, 'n'},
      {"new-pid", no_argument, 0, 'P'},       {"join", required_argument, 0, 'j'},     {"rootfs", required_argument, 0, 'r'},
      {"privileged", no_argument, 0, 'p'},    {"readonly-rootfs", no_argument, 0, 'R'}, {"bind", required_argument, 0, 'b'},
      {"mask", required_argument, 0, 'm'},    {"readonly", required_argument, 0, 'o'}, {"shm", required_argument, 0, 'S'},
      {"uid", required_argument, 0, 'u'},     {"gid", required_argument, 0, 'g'},      {"group", required_argument, 0, 'G'},
      {"caps", required_argument, 0, 'c'},    {"no-new-privs", no_argument, 0, 'N'},   {"seccomp", required_argument, 0, 'C'},
      {"cwd", required_argument, 0, 'w'},     {"oom-score-adj", required_argument, 0, 'O'}, {"tty", no_argument, 0, 't'},
      {"control-fd", required_argument, 0, 'z'}, {"exit-file", required_argument, 0, 'x'}, {0, 0, 0, 0}};
  int opt;
  o->sync_fd = -1;
  o->control_fd = -1;
  while ((opt = getopt_long(argc, argv, "+", longs, NULL)) != -1) {
    switch (opt) {
      case 's': o->sync_fd = atoi(optarg); break;
      case 'e': error_fd = atoi(optarg); break;
      case 'n': {
        char *eq = strchr(optarg, '=');
        if (eq == NULL) die("arguments", "--ns KIND=PATH");
        *eq = '\0';
        int found = 0;
        for (int i = 0; i < 5; i++)
          if (strcmp(optarg, NS_NAMES[i]) == 0) o->ns[i] = eq + 1, found = 1;
        if (!found) die("arguments", "unknown namespace %s", optarg);
        break;
      }
      case 'P': o->new_pid = 1; break;
      case 'j': o->join = (pid_t)atoi(optarg); break;
      case 'r': o->rootfs = optarg; break;
      case 'p': o->privileged = 1; break;
      case 'R': o->readonly_rootfs = 1; break;
      case 'b': parse_bind(o, optarg); break;
      case 'm': if (o->nmasked < MAX_ITEMS) o->masked[o->nmasked++] = optarg; break;
      case 'o': if (o->nreadonly < MAX_ITEMS) o->readonly[o->nreadonly++] = optarg; break;
      case 'S': o->shm = optarg; break;
      case 'u': o->uid = (uid_t)strtoul(optarg, NULL, 10); break;
      case 'g': o->gid = (gid_t)strtoul(optarg, NULL, 10); break;
      case 'G': if (o->ngroups < MAX_ITEMS) o->groups[o->ngroups++] = (gid_t)strtoul(optarg, NULL, 10); break;
      case 'c': o->caps = strtoull(optarg, NULL, 16); break;
      case 'N': o->no_new_privs = 1; break;
      case 'C': o->seccomp = optarg; break;
      case 'w': o->cwd = optarg; break;
      case 'O': o->oom_score_adj = atoi(optarg), o->set_oom = 1; break;
      case 't': o->tty = 1; break;
      case 'z': o->control_fd = atoi(optarg); break;
      case 'x': o->exit_file = optarg; break;
      default: die("arguments", "see src/containers/nsexec-launcher.ts for the options");
    }
  }
  if (optind >= argc) die("arguments", "no command after the options");
  o->argv = argv + optind;
}

int main(int argc, char **argv) {
  /* `nsexec device-filter DIR`: not a process to start, a filter to attach (device-filter.c). */
  if (argc > 1 && strcmp(argv[1], "device-filter") == 0) return device_filter_main(argc - 1, argv + 1);
  struct options o;
  memset(&o, 0, sizeof o);
  parse(argc, argv, &o);
  /* A session of its own: a Ctrl-C or hangup on icetray's terminal goes to icetray's process
   * group, and must not reach the containers, which outlive icetray. */
  setsid();
  /* The error pipe must close when the command is exec'd: its end of file means "started". */
  if (error_fd >= 0) fcntl(error_fd, F_SETFD, FD_CLOEXEC);
  char *seccomp = o.seccomp == NULL ? NULL : read_file(o.seccomp);
  /* Opened now, while paths are the host's: the child's pivot_root moves the monitor's root too. */
  int exit_fd = -1, held[2] = {-1, -1};
  if (o.exit_file != NULL) {
    exit_fd = open(o.exit_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (exit_fd < 0) die("exit file", "%s: %s", o.exit_file, strerror(errno));
    for (int fd = 1; fd <= 2; fd++) {
      struct stat st;
      char path[32];
      snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
      if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode)) held[fd - 1] = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    }
  }

  /* 1. Wait until icetray has put this process in the container's cgroup. */
  if (o.sync_fd >= 0) {
    char go;
    if (read(o.sync_fd, &go, 1) != 1) die("sync", "icetray went away before placing the process");
  }
  if (o.set_oom) {
    FILE *f = fopen("/proc/self/oom_score_adj", "we");
    if (f == NULL || fprintf(f, "%d", o.oom_score_adj) < 0) die("oom_score_adj", "%s", strerror(errno));
    fclose(f);
  }

  /* 2. Namespaces: open every file first (paths are the host's), then enter them. */
  int fds[5];
  for (int i = 0; i < 5; i++) {
    fds[i] = -1;
    char path[64];
    const char *file = o.ns[i];
    if (o.join > 0) {
      snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)o.join, NS_NAMES[i]);
      file = path;
    }
    if (file == NULL) continue;
    fds[i] = open(file, O_RDONLY | O_CLOEXEC);
    if (fds[i] < 0) die("namespaces", "%s: %s", file, strerror(errno));
  }
  for (int i = 0; i < 5; i++) {
    if (fds[i] < 0) continue;
    if (setns(fds[i], NS_FLAGS[i]) < 0) die("namespaces", "join %s: %s", NS_NAMES[i], strerror(errno));
    close(fds[i]);
  }
  int pid_changed = fds[3] >= 0 || o.new_pid;
  if (o.join == 0) {
    int flags = CLONE_NEWNS | (o.new_pid ? CLONE_NEWPID : 0);
    if (unshare(flags) < 0) die("namespaces", "unshare: %s", strerror(errno));
  }

  /* 3. The fork: a PID namespace applies to children only; a tty needs a monitor holding the
   * terminal's master end; an --exit-file needs one to write it. icetray learns, on the sync
   * channel, which process is the container's: the child after a fork, else this one. */
  int tty_channel[2] = {-1, -1};
  if (o.tty && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, tty_channel) < 0) die("tty", "socketpair: %s", strerror(errno));
  pid_t container_pid = getpid();
  if (pid_changed || o.tty || exit_fd >= 0) {
    pid_t child = fork();
    if (child < 0) die("fork", "%s", strerror(errno));
    if (child > 0) {
      if (error_fd >= 0) close(error_fd), error_fd = -1; /* the child reports from here on */
      if (tty_channel[1] >= 0) close(tty_channel[1]);
      report_pid(o.sync_fd, child);
      monitor(child, tty_channel[0], o.control_fd, exit_fd, held);
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (o.sync_fd >= 0) close(o.sync_fd);
    if (exit_fd >= 0) close(exit_fd);
    for (int i = 0; i < 2; i++)
      if (held[i] >= 0) close(held[i]);
    if (tty_channel[0] >= 0) close(tty_channel[0]);
    if (o.control_fd >= 0) close(o.control_fd);
  } else {
    report_pid(o.sync_fd, container_pid);
  }
  /* An exec gets a process group of its own, so that a timeout can kill all it started; a
   * terminal needs a session of its own to become its controlling terminal. */
  if (o.join > 0 || o.tty) setsid();

  /* 4. The filesystem (a new container only: exec finds it ready in the mount namespace). */
  if (o.join == 0 && o.rootfs != NULL) setup_rootfs(&o);

  /* 5. The terminal, once /dev/pts is the container's. */
  if (o.tty) take_pty(tty_channel[1]);

  /* 6. Who it runs as, what it may do, where, then the command. */
  if (seccomp != NULL && !o.no_new_privs) load_seccomp(seccomp); /* needs CAP_SYS_ADMIN without nnp */
  set_user_and_caps(&o);
  /* A change of uid or gid clears the parent-death signal: ask again, so that the container
   * dies with its monitor whoever it runs as. */
  if (container_pid != getpid()) prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (o.no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs", "%s", strerror(errno));
  if (seccomp != NULL && o.no_new_privs) load_seccomp(seccomp);
  if (o.cwd != NULL && chdir(o.cwd) < 0) die("cwd", "%s: %s", o.cwd, strerror(errno));
  execvp(o.argv[0], o.argv);
  int code = errno == ENOENT ? 127 : 126;
  char line[600];
  int n = snprintf(line, sizeof line, "exec: %s: %s", o.argv[0], errno == ENOENT ? "executable file not found in $PATH" : strerror(errno));
  if (error_fd >= 0 && write(error_fd, line, (size_t)n) < 0) {
    /* nothing more to say */
  }
  fprintf(stderr, "nsexec: %s\n", line);
  _exit(code);
}
