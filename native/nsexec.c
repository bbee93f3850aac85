/*
 * nsexec: starts a container's process inside its pod, or a command inside a running container.
 *
 * icetray runs it with everything decided already (src/containers/nsexec-launcher.ts builds the
 * arguments); nsexec only performs the steps, in the order a container needs them:
 *
 *   1. wait on --sync-fd until icetray has placed this process in the container's cgroup,
 *      so no code of the container ever runs outside it; then set oom_score_adj;
 *   2. join the pod's namespaces (setns on the pinned files), or all of a running container's
 *      (--join PID, for exec); a new mount namespace, and a new PID namespace when asked;
 *   3. fork when the PID namespace changed (it only applies to children), for a tty, or when
 *      icetray asks for an --exit-file: the parent stays as a small monitor that forwards
 *      signals, exits as the child did and writes that status to the exit file. It also keeps
 *      a read end of the container's stdout and stderr pipes, so that the container outlives
 *      an icetray restart: with no reader a write would kill it (SIGPIPE); with the monitor's
 *      it waits in the pipe until the new icetray reopens it from /proc/MONITOR/fd/1.
 *      The sync channel then carries one line to icetray: "PID OOM_SCORE_ADJ\n", the
 *      container's process and the oom_score_adj really in effect (see apply_oom_score_adj);
 *   4. mounts: /proc, /sys, /dev, the pod's files and the config's binds, device nodes, masked
 *      and read-only paths, then pivot_root into the rootfs. Every path is resolved inside the
 *      rootfs (see open_in_root): an image's symlink cannot send a mount, a folder or a file
 *      to the host;
 *   5. with --tty: a pseudo-terminal from the container's own /dev/pts becomes the process's
 *      stdin, stdout and stderr; the monitor relays it (see relay_tty);
 *   6. groups, gid, uid; capabilities; working dir; no_new_privs; seccomp; exec.
 *
 * A failure before exec is written to --error-fd ("step: reason") and the process exits 125;
 * a command that cannot be found or run exits 127/126, as shells do. No list in the arguments
 * has a fixed bound: what icetray asks for is applied, or the start fails saying why.
 *
 * `nsexec device-filter CGROUP_DIR` is a second mode: see device-filter.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/mount.h>
#include <linux/openat2.h>
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
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "device-filter.h"

#define EXIT_SETUP 125

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

/* Makes room for one more item at the end of a list: lists grow as long as icetray asks, so
 * a masked path or a group past some fixed count is never dropped. */
static void *grow(void *items, int count, size_t size) {
  void *grown = realloc(items, ((size_t)count + 1) * size);
  if (grown == NULL) die("memory", "out of memory");
  return grown;
}

struct bind {
  char *source, *target;
  unsigned int attrs;       /* MOUNT_ATTR_RDONLY, _NOSUID, _NODEV, _NOEXEC: on the bind itself */
  int recursive_readonly;   /* read-only down to every mount below it too */
  unsigned long propagation; /* MS_PRIVATE, MS_SLAVE or MS_SHARED */
};

/* A device node to make in the container (--device TYPE:MAJOR:MINOR:MODE:UID:GID:PATH). */
struct device {
  char *path;
  mode_t type; /* S_IFCHR or S_IFBLK */
  unsigned int major_, minor_;
  mode_t mode;
  uid_t uid;
  gid_t gid;
};

struct options {
  int sync_fd;
  char *ns[5]; /* net, ipc, uts, pid, mnt: files to setns */
  int new_pid;
  pid_t join; /* exec: the container process whose namespaces to enter */
  char *rootfs;
  int privileged, readonly_rootfs;
  struct bind *binds;
  int nbinds;
  struct device *devices;
  int ndevices;
  char **masked, **readonly;
  int nmasked, nreadonly;
  char *shm;
  uid_t uid;
  gid_t gid;
  gid_t *groups;
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

/* ---- Paths inside the rootfs ---------------------------------------------------------------
 *
 * The rootfs is the image's, and an image is hostile until proven otherwise: a symlink such as
 * /data -> /../../../tmp/host, or /etc/hosts -> /etc/shadow-of-the-host, must not make a mount
 * or a created file land outside it (runc's CVE-2021-30465 and CVE-2019-19921). So no path of
 * the container is ever joined to the rootfs as a string and handed to the kernel: each is
 * resolved by openat2(RESOLVE_IN_ROOT) from an fd of the rootfs, where "/" and ".." stop at the
 * rootfs as they would after pivot_root; missing parts are made relative to the fd of the part
 * before them; and mounts go onto the fd that was resolved (move_mount), never onto a path. */

static int rootfs_fd = -1;

/* The container path `path`, opened inside the rootfs (-1 with errno when it cannot be). Magic
 * links (/proc/PID/fd/…, /proc/PID/root) are refused: they would lead anywhere. */
static int open_in_root(const char *path, int flags) {
  struct open_how how = {.flags = (unsigned long long)(flags | O_CLOEXEC), .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
  int fd;
  while ((fd = (int)syscall(SYS_openat2, rootfs_fd, path, &how, sizeof how)) < 0 && (errno == EAGAIN || errno == EINTR)) {
    /* the kernel asks for a retry when a rename raced the lookup */
  }
  return fd;
}

enum node_kind { NODE_DIR, NODE_FILE };

/* One step of make_in_root: walks `path` part by part from the root, making each missing part
 * (a folder, or for the last part a `kind`) relative to the fd of the part before it. Returns
 * NULL and the made object's O_PATH fd in *made; or, when a part is a symlink to something
 * that does not exist yet, the path to follow instead (its target, then the rest), which
 * make_in_root walks again, so a dangling link is followed inside the rootfs too. */
static char *make_missing(const char *path, enum node_kind kind, mode_t mode, int *made) {
  size_t length = strlen(path);
  char *prefix = calloc(1, length + 2);
  if (prefix == NULL) die("memory", "out of memory");
  int parent = fcntl(rootfs_fd, F_DUPFD_CLOEXEC, 0);
  if (parent < 0) die("rootfs", "dup: %s", strerror(errno));
  size_t used = 0;
  for (const char *part = path; *part != '\0';) {
    if (*part == '/') {
      part++;
      continue;
    }
    const char *end = strchrnul(part, '/');
    size_t n = (size_t)(end - part);
    char name[NAME_MAX + 1];
    if (n > NAME_MAX) die("rootfs", "%s: a part of the path is too long", path);
    memcpy(name, part, n), name[n] = '\0';
    size_t parent_length = used;
    prefix[used++] = '/';
    memcpy(prefix + used, part, n), used += n, prefix[used] = '\0';
    int last = end[strspn(end, "/")] == '\0';

    int child = open_in_root(prefix, O_PATH);
    if (child < 0 && errno != ENOENT) die("rootfs", "%s: %s", prefix, strerror(errno));
    if (child < 0) {
      char target[PATH_MAX];
      ssize_t t = readlinkat(parent, name, target, sizeof target - 1);
      if (t >= 0) {
        /* A symlink to nothing yet: follow it as the kernel would, from the root for an
         * absolute target, from this part's folder for a relative one. */
        target[t] = '\0';
        size_t size = parent_length + (size_t)t + strlen(end) + 3;
        char *next = malloc(size);
        if (next == NULL) die("memory", "out of memory");
        snprintf(next, size, "%.*s/%s%s", target[0] == '/' ? 0 : (int)parent_length, prefix, target, end);
        close(parent), free(prefix);
        return next;
      }
      if (errno != ENOENT) die("rootfs", "%s: %s", prefix, strerror(errno));
      if (last && kind == NODE_FILE) {
        int file = openat(parent, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, mode);
        if (file < 0) die("rootfs", "create %s: %s", prefix, strerror(errno));
        close(file);
      } else if (mkdirat(parent, name, last ? mode : 0755) < 0 && errno != EEXIST) {
        die("rootfs", "mkdir %s: %s", prefix, strerror(errno));
      }
      /* O_NOFOLLOW: what was just made, not a symlink someone put in its place. */
      struct stat st;
      child = openat(parent, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
      if (child < 0 || fstat(child, &st) < 0) die("rootfs", "%s: %s", prefix, strerror(errno));
      if (S_ISLNK(st.st_mode)) die("rootfs", "%s: replaced by a symlink while it was made", prefix);
    }
    close(parent);
    parent = child;
    part = end;
  }
  free(prefix);
  *made = parent;
  return NULL;
}

/* The container path `path` inside the rootfs as an O_PATH fd, made when missing: folders for
 * the parts before the last, and the last a folder or an empty file (`kind`, `mode`). */
static int make_in_root(const char *path, enum node_kind kind, mode_t mode) {
  char *current = strdup(path);
  if (current == NULL) die("memory", "out of memory");
  for (int links = 0; links <= 40; links++) { /* 40: the kernel's own limit on symlinks in a path */
    int fd = open_in_root(current, O_PATH);
    if (fd < 0 && errno != ENOENT) die("rootfs", "%s: %s", path, strerror(errno));
    if (fd < 0) {
      char *next = make_missing(current, kind, mode, &fd);
      free(current);
      if (next == NULL) return fd;
      current = next;
      continue;
    }
    free(current);
    return fd;
  }
  die("rootfs", "%s: too many levels of symbolic links", path);
  return -1;
}

/* ---- Mounts ---------------------------------------------------------------------------------
 * All by fd: a new filesystem is made detached (fsopen, fsmount) and a bind is a detached copy
 * (open_tree); each is given its flags while still detached, then moved onto the fd of its
 * mount point (move_mount). The fd of the new mount stays valid for what follows (entries
 * made in /dev, the propagation of a bind), with no path to resolve a second time. */

/* Attaches the detached mount `mount_fd` onto the object `target_fd`; `shown` names it in errors. */
static void attach(int mount_fd, int target_fd, const char *shown) {
  if (syscall(SYS_move_mount, mount_fd, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
    die("mount", "on %s: %s", shown, strerror(errno));
}

static void set_attrs(int mount_fd, unsigned int flags, struct mount_attr *attr, const char *shown) {
  if (syscall(SYS_mount_setattr, mount_fd, "", AT_EMPTY_PATH | flags, attr, sizeof *attr) < 0)
    die("mount", "set the flags of %s: %s", shown, strerror(errno));
}

/* A new filesystem of `type` mounted on `target_fd`, with `options` ("key=value,flag,…") and
 * MOUNT_ATTR_* `attrs`. Returns the fd of its root. */
static int mount_new(int target_fd, const char *shown, const char *type, const char *options, unsigned int attrs) {
  int context = (int)syscall(SYS_fsopen, type, FSOPEN_CLOEXEC);
  if (context < 0) die("mount", "%s on %s: fsopen: %s", type, shown, strerror(errno));
  char *copy = strdup(options), *saved = NULL;
  if (copy == NULL) die("memory", "out of memory");
  for (char *option = strtok_r(copy, ",", &saved); option != NULL; option = strtok_r(NULL, ",", &saved)) {
    char *value = strchr(option, '=');
    if (value != NULL) *value++ = '\0';
    int rc = value == NULL ? (int)syscall(SYS_fsconfig, context, FSCONFIG_SET_FLAG, option, NULL, 0)
                           : (int)syscall(SYS_fsconfig, context, FSCONFIG_SET_STRING, option, value, 0);
    if (rc < 0) die("mount", "%s on %s: option %s: %s", type, shown, option, strerror(errno));
  }
  free(copy);
  if (syscall(SYS_fsconfig, context, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
    die("mount", "%s on %s: %s", type, shown, strerror(errno));
  int mount_fd = (int)syscall(SYS_fsmount, context, FSMOUNT_CLOEXEC, attrs);
  if (mount_fd < 0) die("mount", "%s on %s: fsmount: %s", type, shown, strerror(errno));
  close(context);
  attach(mount_fd, target_fd, shown);
  return mount_fd;
}

/* A copy of the mount tree at `source_fd` (with the mounts below it) on `target_fd`, read-only
 * and so on per `attrs` (the bind itself only), every flag of the source kept otherwise. The
 * copy keeps the source's propagation, as mount --bind does. Returns the fd of its root. */
static int bind_on(int source_fd, int target_fd, const char *shown, unsigned int attrs) {
  int tree = (int)syscall(SYS_open_tree, source_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
  if (tree < 0) die("mount", "copy the mount for %s: %s", shown, strerror(errno));
  if (attrs != 0) {
    struct mount_attr attr = {.attr_set = attrs};
    set_attrs(tree, 0, &attr, shown);
  }
  attach(tree, target_fd, shown);
  return tree;
}

/* Whether two fds are the same object (the rootfs's own root must never be covered). */
static int same_object(int a, int b) {
  struct stat sa, sb;
  return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The character devices every container has, in its /dev tmpfs. */
static const struct {
  const char *name;
  unsigned int major_, minor_;
} DEFAULT_DEVICES[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};

/* A device node `name` in the folder `dir_fd`, with its mode and owner (mknod obeys the umask).
 * One already there is kept when it is the same device, as runc does; a different one is an error. */
static void make_node(int dir_fd, const char *name, const char *shown, mode_t type, unsigned int major_, unsigned int minor_,
                      mode_t mode, uid_t uid, gid_t gid) {
  if (mknodat(dir_fd, name, type | mode, makedev(major_, minor_)) < 0) {
    struct stat st;
    if (errno != EEXIST) die("mknod", "%s: %s", shown, strerror(errno));
    if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || (st.st_mode & S_IFMT) != type || st.st_rdev != makedev(major_, minor_))
      die("mknod", "%s: something else is there already", shown);
    return;
  }
  if (fchownat(dir_fd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) die("mknod", "chown %s: %s", shown, strerror(errno));
  if (fchmodat(dir_fd, name, mode, 0) < 0) die("mknod", "chmod %s: %s", shown, strerror(errno));
}

/* A folder `name` in the folder `dir_fd`, opened (O_PATH) for a mount on it. */
static int make_dir(int dir_fd, const char *name, mode_t mode) {
  if (mkdirat(dir_fd, name, mode) < 0 && errno != EEXIST) die("mkdir", "/dev/%s: %s", name, strerror(errno));
  int fd = openat(dir_fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) die("mkdir", "/dev/%s: %s", name, strerror(errno));
  return fd;
}

/* /dev as a container expects it: the usual character devices, ptys, shm, mqueue. Everything
 * in it is made relative to the fd of its new tmpfs, which nothing else can reach yet. */
static void setup_dev(struct options *o) {
  int target = make_in_root("/dev", NODE_DIR, 0755);
  int dev = mount_new(target, "/dev", "tmpfs", "mode=755,size=65536k", MOUNT_ATTR_NOSUID | MOUNT_ATTR_STRICTATIME);
  close(target);
  for (size_t i = 0; i < sizeof DEFAULT_DEVICES / sizeof DEFAULT_DEVICES[0]; i++)
    make_node(dev, DEFAULT_DEVICES[i].name, DEFAULT_DEVICES[i].name, S_IFCHR, DEFAULT_DEVICES[i].major_, DEFAULT_DEVICES[i].minor_,
              0666, 0, 0);
  int pts = make_dir(dev, "pts", 0755);
  close(mount_new(pts, "/dev/pts", "devpts", "ptmxmode=0666,mode=0620", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC));
  close(pts);
  const char *links[][2] = {
      {"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}};
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
    if (symlinkat(links[i][0], dev, links[i][1]) < 0 && errno != EEXIST) die("symlink", "/dev/%s: %s", links[i][1], strerror(errno));
  int shm = make_dir(dev, "shm", 01777);
  if (o->shm != NULL) {
    /* The pod's /dev/shm (a host path icetray chose), shared by its containers. */
    int source = open(o->shm, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (source < 0) die("mount", "%s: %s", o->shm, strerror(errno));
    int bound = bind_on(source, shm, "/dev/shm", 0);
    struct mount_attr attr = {.propagation = MS_PRIVATE};
    set_attrs(bound, AT_RECURSIVE, &attr, "/dev/shm");
    close(bound), close(source);
  } else {
    close(mount_new(shm, "/dev/shm", "tmpfs", "mode=1777,size=65536k", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
  }
  close(shm);
  int mqueue = make_dir(dev, "mqueue", 0755);
  close(mount_new(mqueue, "/dev/mqueue", "mqueue", "", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
  close(mqueue), close(dev);
}

/* The config's binds (the pod's hostname, hosts and resolv.conf first), each on a mount point
 * resolved in the rootfs: a folder for a folder, an empty file for anything else. */
static void mount_binds(struct options *o) {
  for (int i = 0; i < o->nbinds; i++) {
    struct bind *b = &o->binds[i];
    int source = open(b->source, O_PATH | O_CLOEXEC);
    struct stat st;
    if (source < 0 || fstat(source, &st) < 0) die("mount", "%s: %s", b->source, strerror(errno));
    int target = make_in_root(b->target, S_ISDIR(st.st_mode) ? NODE_DIR : NODE_FILE, S_ISDIR(st.st_mode) ? 0755 : 0644);
    if (same_object(target, rootfs_fd)) die("mount", "%s: the mount point is the container's root", b->target);
    /* A plain read-only bind is read-only itself, not the mounts below it (CRI's readonly);
     * recursive_read_only makes every one below read-only too (Linux >= 5.12). */
    int bound = bind_on(source, target, b->target, b->attrs);
    struct mount_attr attr = {.attr_set = b->recursive_readonly ? MOUNT_ATTR_RDONLY : 0, .propagation = b->propagation};
    set_attrs(bound, AT_RECURSIVE, &attr, b->target);
    close(bound), close(target), close(source);
  }
}

/* The config's device nodes (the CRI devices, every host device for a privileged container):
 * each at its container path, its folders made, all resolved in the rootfs. /dev/ptmx stays
 * the link to the container's own devpts, as in runc: the host's would open the host's ptys. */
static void make_devices(struct options *o) {
  for (int i = 0; i < o->ndevices; i++) {
    struct device *d = &o->devices[i];
    if (strcmp(d->path, "/dev/ptmx") == 0) continue;
    char *slash = strrchr(d->path, '/');
    if (slash == NULL || slash[1] == '\0') die("arguments", "device path %s", d->path);
    *slash = '\0';
    int dir = make_in_root(*d->path == '\0' ? "/" : d->path, NODE_DIR, 0755);
    *slash = '/';
    make_node(dir, slash + 1, d->path, d->type, d->major_, d->minor_, d->mode, d->uid, d->gid);
    close(dir);
  }
}

/* Masked paths: a folder gets an empty read-only tmpfs over it, anything else /dev/null; a
 * path the container does not have needs no mask. Read-only paths: a read-only bind of
 * themselves. Both are resolved in the rootfs, so /proc/kcore is the container's own. */
static void mask_and_protect(struct options *o) {
  int null = open("/dev/null", O_PATH | O_CLOEXEC);
  if (null < 0) die("mount", "/dev/null: %s", strerror(errno));
  for (int i = 0; i < o->nmasked; i++) {
    int target = open_in_root(o->masked[i], O_PATH);
    if (target < 0 && (errno == ENOENT || errno == ENOTDIR)) continue;
    struct stat st;
    if (target < 0 || fstat(target, &st) < 0) die("mount", "mask %s: %s", o->masked[i], strerror(errno));
    if (S_ISDIR(st.st_mode)) close(mount_new(target, o->masked[i], "tmpfs", "", MOUNT_ATTR_RDONLY));
    else close(bind_on(null, target, o->masked[i], 0));
    close(target);
  }
  close(null);
  for (int i = 0; i < o->nreadonly; i++) {
    int target = open_in_root(o->readonly[i], O_PATH);
    if (target < 0 && (errno == ENOENT || errno == ENOTDIR)) continue;
    if (target < 0) die("mount", "read-only %s: %s", o->readonly[i], strerror(errno));
    close(bind_on(target, target, o->readonly[i], MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV));
    close(target);
  }
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

static void do_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data) {
  if (mount(source, target, type, flags, data) < 0) die("mount", "%s on %s: %s", source ? source : type, target, strerror(errno));
}

/* Nothing mounted from here on may reach the host: every copied mount becomes private, or a
 * slave of the host's when a bind asks for host-to-container propagation. A bidirectional
 * bind (rshared) must stay in its host peer group instead: then the copies keep the host's
 * propagation, and only the mount holding the rootfs is made private, so that /proc, /dev
 * and the other binds mounted into it stay in this namespace (runc does the same). The rootfs
 * (a host path icetray made) is then bound onto itself, and rootfs_fd names that mount. */
static void isolate_rootfs(struct options *o) {
  unsigned long propagation = MS_PRIVATE;
  int bidirectional = 0;
  for (int i = 0; i < o->nbinds; i++) {
    if (o->binds[i].propagation == MS_SLAVE) propagation = MS_SLAVE;
    if (o->binds[i].propagation == MS_SHARED) bidirectional = 1;
  }
  if (bidirectional) make_holder_private(o->rootfs);
  else do_mount(NULL, "/", NULL, MS_REC | propagation, NULL);
  do_mount(o->rootfs, o->rootfs, NULL, MS_BIND | MS_REC, NULL);
  rootfs_fd = open(o->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfs_fd < 0) die("rootfs", "%s: %s", o->rootfs, strerror(errno));
}

/* pivot_root(".", "."), then detach the old root, now stacked on the new one: runc's way, no
 * folder for it needed. The old root is made a slave first, so that unmounting it cannot
 * propagate to the host's mounts; an fd on it names it, as "." would name the new root. */
static void enter_rootfs(struct options *o) {
  int old_root = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (old_root < 0) die("open", "/: %s", strerror(errno));
  if (fchdir(rootfs_fd) < 0) die("chdir", "%s: %s", o->rootfs, strerror(errno));
  if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root", "%s", strerror(errno));
  if (fchdir(old_root) < 0) die("chdir", "old root: %s", strerror(errno));
  close(old_root);
  do_mount(NULL, ".", NULL, MS_REC | MS_SLAVE, NULL);
  if (umount2(".", MNT_DETACH) < 0) die("umount", "old root: %s", strerror(errno));
  if (chdir("/") < 0) die("chdir", "/: %s", strerror(errno));
  close(rootfs_fd), rootfs_fd = -1;
  if (o->readonly_rootfs) do_mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, NULL);
}

/* The container's filesystem: its rootfs with /proc, /sys, /dev, the binds and devices, the
 * masks, then pivot_root. */
static void setup_rootfs(struct options *o) {
  isolate_rootfs(o);
  int proc = make_in_root("/proc", NODE_DIR, 0555);
  close(mount_new(proc, "/proc", "proc", "", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
  close(proc);
  int sys = make_in_root("/sys", NODE_DIR, 0555);
  unsigned int sys_attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC | (o->privileged ? 0 : MOUNT_ATTR_RDONLY);
  close(mount_new(sys, "/sys", "sysfs", "", sys_attrs));
  close(sys);
  setup_dev(o);
  mount_binds(o);
  make_devices(o);
  mask_and_protect(o);
  enter_rootfs(o);
}

/* ---- Seccomp ---------------------------------------------------------------------------------
 * The profile as icetray writes it (src/containers/seccomp.ts renders it), one item a line:
 *
 *   default ACTION            first: what a call no rule matches gets
 *   arch NAME                 each architecture besides the native one (x86, x32, …)
 *   flag log|spec_allow       filter attributes
 *   NAME ACTION [COND…]       a rule; COND is INDEX:OP:VALUE[:VALUE_TWO], OP one of ne lt le
 *                             eq ge gt masked_eq, values decimal; all conditions must hold
 *
 * ACTION is allow, errno:N, kill_process, kill_thread, trap, trace:N or log. A syscall the
 * installed libseccomp does not know is skipped (runc does the same); anything malformed
 * fails the start. */

static uint32_t seccomp_action(const char *word) {
  unsigned int number;
  char extra;
  if (strcmp(word, "allow") == 0) return SCMP_ACT_ALLOW;
  if (sscanf(word, "errno:%u%c", &number, &extra) == 1) return SCMP_ACT_ERRNO(number);
  if (sscanf(word, "trace:%u%c", &number, &extra) == 1) return SCMP_ACT_TRACE(number);
  if (strcmp(word, "kill_process") == 0) return SCMP_ACT_KILL_PROCESS;
  if (strcmp(word, "kill_thread") == 0) return SCMP_ACT_KILL_THREAD;
  if (strcmp(word, "log") == 0) return SCMP_ACT_LOG;
  if (strcmp(word, "trap") == 0) return SCMP_ACT_TRAP;
  die("seccomp", "unknown action \"%s\"", word);
  return 0;
}

static unsigned long long parse_number(const char *text, const char *what) {
  char *end;
  errno = 0;
  unsigned long long value = strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0') die("seccomp", "%s: \"%s\" is not a number", what, text);
  return value;
}

/* One argument condition, INDEX:OP:VALUE[:VALUE_TWO]. */
static struct scmp_arg_cmp seccomp_condition(char *text) {
  static const struct {
    const char *name;
    enum scmp_compare op;
  } ops[] = {{"ne", SCMP_CMP_NE}, {"lt", SCMP_CMP_LT}, {"le", SCMP_CMP_LE}, {"eq", SCMP_CMP_EQ},
             {"ge", SCMP_CMP_GE}, {"gt", SCMP_CMP_GT}, {"masked_eq", SCMP_CMP_MASKED_EQ}};
  char *saved = NULL;
  char *index = strtok_r(text, ":", &saved), *op = strtok_r(NULL, ":", &saved);
  char *value = strtok_r(NULL, ":", &saved), *value_two = strtok_r(NULL, ":", &saved);
  if (index == NULL || op == NULL || value == NULL || strtok_r(NULL, ":", &saved) != NULL)
    die("seccomp", "condition \"%s\": INDEX:OP:VALUE[:VALUE_TWO]", text);
  struct scmp_arg_cmp cmp = {.arg = (unsigned int)parse_number(index, "argument index")};
  if (cmp.arg > 5) die("seccomp", "argument index %u: a syscall has 6 arguments (0-5)", cmp.arg);
  cmp.op = _SCMP_CMP_MIN;
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    if (strcmp(op, ops[i].name) == 0) cmp.op = ops[i].op;
  if (cmp.op == _SCMP_CMP_MIN) die("seccomp", "unknown operator \"%s\"", op);
  cmp.datum_a = parse_number(value, "value");
  cmp.datum_b = value_two == NULL ? 0 : parse_number(value_two, "value_two");
  return cmp;
}

/* Read before pivot_root: the profile file is a host path. All of it, however long. */
static char *read_file(const char *file) {
  FILE *f = fopen(file, "re");
  if (f == NULL) die("seccomp", "%s: %s", file, strerror(errno));
  size_t size = 0, used = 0;
  char *text = NULL;
  do {
    if (used + 1 >= size) {
      size = size == 0 ? 65536 : size * 2;
      text = realloc(text, size);
      if (text == NULL) die("memory", "out of memory");
    }
    used += fread(text + used, 1, size - used - 1, f);
  } while (!feof(f) && !ferror(f));
  if (ferror(f)) die("seccomp", "%s: read failed", file);
  text[used] = '\0';
  fclose(f);
  return text;
}

/* Applies one line of the profile to `ctx` (made by its "default" line). */
static void seccomp_line(scmp_filter_ctx ctx, uint32_t default_action, char *line, int *rules) {
  char *saved = NULL;
  char *name = strtok_r(line, " ", &saved), *word = strtok_r(NULL, " ", &saved);
  if (name == NULL) return;
  if (word == NULL) die("seccomp", "\"%s\" has no action", name);
  if (strcmp(name, "arch") == 0) {
    /* Architectures first: libseccomp adds a rule only to the architectures present then. */
    if (*rules > 0) die("seccomp", "arch %s comes after a rule", word);
    uint32_t arch = seccomp_arch_resolve_name(word);
    if (arch == 0) die("seccomp", "unknown architecture \"%s\"", word);
    int rc = seccomp_arch_add(ctx, arch);
    if (rc < 0 && rc != -EEXIST) die("seccomp", "arch %s: %s", word, strerror(-rc));
    return;
  }
  if (strcmp(name, "flag") == 0) {
    enum scmp_filter_attr attr = strcmp(word, "log") == 0 ? SCMP_FLTATR_CTL_LOG : strcmp(word, "spec_allow") == 0 ? SCMP_FLTATR_CTL_SSB : 0;
    if (attr == 0) die("seccomp", "unknown flag \"%s\"", word);
    int rc = seccomp_attr_set(ctx, attr, 1);
    if (rc < 0) die("seccomp", "flag %s: %s", word, strerror(-rc));
    return;
  }
  uint32_t action = seccomp_action(word);
  struct scmp_arg_cmp conditions[6];
  unsigned int count = 0;
  for (char *text = strtok_r(NULL, " ", &saved); text != NULL; text = strtok_r(NULL, " ", &saved)) {
    if (count == 6) die("seccomp", "rule for %s: more than 6 conditions", name);
    conditions[count++] = seccomp_condition(text);
  }
  (*rules)++;
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) return; /* a syscall this libseccomp does not know */
  /* libseccomp refuses a rule that says what the default says already; it changes nothing. */
  if (action == default_action) return;
  int rc = seccomp_rule_add_array(ctx, action, nr, count, conditions);
  if (rc < 0 && rc != -EEXIST) die("seccomp", "rule for %s: %s", name, strerror(-rc));
}

/* Builds the filter from the profile and loads it. libseccomp would set no_new_privs itself:
 * it is told not to, because that is the container's choice (--no-new-privs), applied before. */
static void load_seccomp(char *profile) {
  scmp_filter_ctx ctx = NULL;
  uint32_t default_action = 0;
  int rules = 0;
  char *saved = NULL;
  for (char *line = strtok_r(profile, "\n", &saved); line != NULL; line = strtok_r(NULL, "\n", &saved)) {
    if (ctx == NULL) {
      char word[32];
      if (sscanf(line, "default %31s", word) != 1) die("seccomp", "the first line must be \"default ACTION\"");
      default_action = seccomp_action(word);
      ctx = seccomp_init(default_action);
      if (ctx == NULL) die("seccomp", "seccomp_init failed");
      if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0) < 0) die("seccomp", "cannot leave no_new_privs alone");
      continue;
    }
    seccomp_line(ctx, default_action, line, &rules);
  }
  if (ctx == NULL) die("seccomp", "the profile is empty");
  int rc = seccomp_load(ctx);
  if (rc < 0) die("seccomp", "load: %s", strerror(-rc));
  seccomp_release(ctx);
}

/* ---- User and capabilities ------------------------------------------------------------------ */

static int last_cap(void) {
  FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
  int last = CAP_LAST_CAP;
  if (f != NULL) {
    if (fscanf(f, "%d", &last) != 1) last = CAP_LAST_CAP;
    fclose(f);
  }
  return last;
}

/* The bounding set first, while this process may still drop from it. */
static void drop_bounding_set(struct options *o) {
  int last = last_cap();
  for (int cap = 0; cap <= last; cap++) {
    if ((o->caps >> cap) & 1ULL) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) die("capabilities", "drop %d: %s", cap, strerror(errno));
  }
}

/* Groups, gid, uid, keeping the permitted capabilities across the change of uid. No ambient
 * capability survives (icetray has none to give; none is asked for either). */
static void set_user(struct options *o) {
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) die("capabilities", "keepcaps: %s", strerror(errno));
  if (setgroups((size_t)o->ngroups, o->groups) < 0) {
    long limit = sysconf(_SC_NGROUPS_MAX);
    if (errno == EINVAL && o->ngroups > limit) die("user", "%d supplementary groups: the kernel allows %ld (NGROUPS_MAX)", o->ngroups, limit);
    die("user", "setgroups: %s", strerror(errno));
  }
  if (setresgid(o->gid, o->gid, o->gid) < 0) die("user", "setgid %u: %s", o->gid, strerror(errno));
  if (setresuid(o->uid, o->uid, o->uid) < 0) die("user", "setuid %u: %s", o->uid, strerror(errno));
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) die("capabilities", "clear ambient: %s", strerror(errno));
}

/* The permitted and effective sets; the inheritable set is always empty, as in containerd and
 * runc since CVE-2022-24769: a program with inheritable file capabilities gets nothing from it.
 * A container cannot get a capability icetray itself lacks (a VM or an outer container may
 * have dropped some): `extra` (the container's set plus what nsexec still needs for a moment)
 * is cut to the ones in reach. */
static void set_caps(struct options *o, unsigned long long extra) {
  struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct have[2], data[2];
  if (syscall(SYS_capget, &header, have) < 0) die("capabilities", "capget: %s", strerror(errno));
  memset(data, 0, sizeof data);
  for (int i = 0; i < 2; i++) {
    uint32_t mask = (uint32_t)(o->caps >> (32 * i)) & have[i].permitted;
    uint32_t more = (uint32_t)(extra >> (32 * i)) & have[i].permitted;
    data[i].permitted = mask | more;
    /* A non-root process keeps no effective capabilities over exec (as in Docker/containerd). */
    data[i].effective = (o->uid == 0 ? mask : 0) | more;
  }
  if (syscall(SYS_capset, &header, data) < 0) die("capabilities", "capset: %s", strerror(errno));
}

/* What icetray reads on the sync channel: "PID OOM_SCORE_ADJ\n" (the container's process, the
 * oom_score_adj in effect). The channel closes after it. */
static void report_pid(int fd, pid_t pid, int oom_score_adj) {
  if (fd < 0) return;
  char line[48];
  int n = snprintf(line, sizeof line, "%d %d\n", (int)pid, oom_score_adj);
  if (write(fd, line, (size_t)n) < 0) {
    /* icetray then falls back to this process's pid */
  }
  close(fd);
}

/* oom_score_adj, as asked, with a checked write(2); returns the value in effect, read back.
 * Lowering it needs CAP_SYS_RESOURCE (the kubelet asks -997 for a Guaranteed pod): refused,
 * the process keeps the value it has and the start goes on, as containerd's
 * restrict_oom_score_adj does; icetray reports what is really in effect. */
static int apply_oom_score_adj(struct options *o) {
  if (o->set_oom) {
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0) die("oom_score_adj", "%s", strerror(errno));
    char line[16];
    int n = snprintf(line, sizeof line, "%d", o->oom_score_adj);
    if (write(fd, line, (size_t)n) != n && errno != EACCES && errno != EPERM) die("oom_score_adj", "write %s: %s", line, strerror(errno));
    close(fd);
  }
  FILE *f = fopen("/proc/self/oom_score_adj", "re");
  int value;
  if (f == NULL || fscanf(f, "%d", &value) != 1) die("oom_score_adj", "cannot read it back: %s", strerror(errno));
  fclose(f);
  return value;
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

/* --bind-flags LIST: ro, rro, nosuid, nodev, noexec, rprivate, rslave, rshared, comma-separated. */
static void parse_bind_flags(struct bind *b, char *list) {
  char *saved = NULL;
  for (char *flag = strtok_r(list, ",", &saved); flag != NULL; flag = strtok_r(NULL, ",", &saved)) {
    if (strcmp(flag, "ro") == 0) b->attrs |= MOUNT_ATTR_RDONLY;
    else if (strcmp(flag, "rro") == 0) b->attrs |= MOUNT_ATTR_RDONLY, b->recursive_readonly = 1;
    else if (strcmp(flag, "nosuid") == 0) b->attrs |= MOUNT_ATTR_NOSUID;
    else if (strcmp(flag, "nodev") == 0) b->attrs |= MOUNT_ATTR_NODEV;
    else if (strcmp(flag, "noexec") == 0) b->attrs |= MOUNT_ATTR_NOEXEC;
    else if (strcmp(flag, "rslave") == 0) b->propagation = MS_SLAVE;
    else if (strcmp(flag, "rshared") == 0) b->propagation = MS_SHARED;
    else if (strcmp(flag, "rprivate") != 0) die("arguments", "unknown bind flag %s", flag);
  }
}

/* --device TYPE:MAJOR:MINOR:MODE:UID:GID:PATH, TYPE c or b, MODE octal; the path comes last
 * so that it may hold colons. */
static void parse_device(struct options *o, char *spec) {
  o->devices = grow(o->devices, o->ndevices, sizeof *o->devices);
  struct device *d = &o->devices[o->ndevices++];
  char type;
  unsigned int mode;
  int used = -1;
  if (sscanf(spec, "%c:%u:%u:%o:%u:%u:%n", &type, &d->major_, &d->minor_, &mode, &d->uid, &d->gid, &used) != 6 || used < 0 ||
      (type != 'c' && type != 'b') || spec[used] != '/')
    die("arguments", "--device TYPE:MAJOR:MINOR:MODE:UID:GID:PATH, not %s", spec);
  d->type = type == 'c' ? S_IFCHR : S_IFBLK;
  d->mode = (mode_t)mode & 07777;
  d->path = spec + used;
}

static void parse(int argc, char **argv, struct options *o) {
  static struct option longs[] = {
      {"sync-fd", required_argument, 0, 's'},    {"error-fd", required_argument, 0, 'e'},   {"ns", required_argument, 0, 'n'},
      {"new-pid", no_argument, 0, 'P'},          {"join", required_argument, 0, 'j'},       {"rootfs", required_argument, 0, 'r'},
      {"privileged", no_argument, 0, 'p'},       {"readonly-rootfs", no_argument, 0, 'R'},  {"bind", required_argument, 0, 'b'},
      {"bind-to", required_argument, 0, 'T'},    {"bind-flags", required_argument, 0, 'F'}, {"device", required_argument, 0, 'd'},
      {"mask", required_argument, 0, 'm'},       {"readonly", required_argument, 0, 'o'},   {"shm", required_argument, 0, 'S'},
      {"uid", required_argument, 0, 'u'},        {"gid", required_argument, 0, 'g'},        {"group", required_argument, 0, 'G'},
      {"caps", required_argument, 0, 'c'},       {"no-new-privs", no_argument, 0, 'N'},     {"seccomp", required_argument, 0, 'C'},
      {"cwd", required_argument, 0, 'w'},        {"oom-score-adj", required_argument, 0, 'O'}, {"tty", no_argument, 0, 't'},
      {"control-fd", required_argument, 0, 'z'}, {"exit-file", required_argument, 0, 'x'}, {0, 0, 0, 0}};
  int opt;
  o->sync_fd = -1;
  o->control_fd = -1;
  struct bind *last_bind = NULL;
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
      /* A bind is --bind SOURCE --bind-to TARGET [--bind-flags LIST]: paths stay whole,
       * colons and all. */
      case 'b':
        o->binds = grow(o->binds, o->nbinds, sizeof *o->binds);
        last_bind = &o->binds[o->nbinds++];
        *last_bind = (struct bind){.source = optarg, .propagation = MS_PRIVATE};
        break;
      case 'T':
        if (last_bind == NULL || last_bind->target != NULL) die("arguments", "--bind-to %s without its --bind", optarg);
        last_bind->target = optarg;
        break;
      case 'F':
        if (last_bind == NULL) die("arguments", "--bind-flags %s without its --bind", optarg);
        parse_bind_flags(last_bind, optarg);
        break;
      case 'd': parse_device(o, optarg); break;
      case 'm':
        o->masked = grow(o->masked, o->nmasked, sizeof *o->masked);
        o->masked[o->nmasked++] = optarg;
        break;
      case 'o':
        o->readonly = grow(o->readonly, o->nreadonly, sizeof *o->readonly);
        o->readonly[o->nreadonly++] = optarg;
        break;
      case 'S': o->shm = optarg; break;
      case 'u': o->uid = (uid_t)strtoul(optarg, NULL, 10); break;
      case 'g': o->gid = (gid_t)strtoul(optarg, NULL, 10); break;
      case 'G':
        o->groups = grow(o->groups, o->ngroups, sizeof *o->groups);
        o->groups[o->ngroups++] = (gid_t)strtoul(optarg, NULL, 10);
        break;
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
  for (int i = 0; i < o->nbinds; i++)
    if (o->binds[i].target == NULL) die("arguments", "--bind %s has no --bind-to", o->binds[i].source);
  if (optind >= argc) die("arguments", "no command after the options");
  o->argv = argv + optind;
}

/* Step 2: open every namespace file first (paths are the host's), then enter them. Returns
 * whether the PID namespace changed, which only applies to children (step 3 forks). */
static int enter_namespaces(struct options *o) {
  int fds[5];
  for (int i = 0; i < 5; i++) {
    fds[i] = -1;
    char path[64];
    const char *file = o->ns[i];
    if (o->join > 0) {
      snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)o->join, NS_NAMES[i]);
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
  if (o->join == 0) {
    int flags = CLONE_NEWNS | (o->new_pid ? CLONE_NEWPID : 0);
    if (unshare(flags) < 0) die("namespaces", "unshare: %s", strerror(errno));
  }
  return fds[3] >= 0 || o->new_pid;
}

/* Step 6: who it runs as, what it may do, where. Loading a filter needs no_new_privs or
 * CAP_SYS_ADMIN: with no_new_privs the capabilities are final before it; without, nsexec keeps
 * CAP_SYS_ADMIN until the filter is in and drops it right after (capset must then pass the
 * filter: every profile icetray makes allows it). Either way as few calls as possible come
 * after the filter, so a Localhost profile cannot break nsexec's own steps. */
static void become_container_user(struct options *o, char *seccomp, pid_t container_pid) {
  drop_bounding_set(o);
  set_user(o);
  int admin_for_filter = seccomp != NULL && !o->no_new_privs;
  set_caps(o, admin_for_filter ? 1ULL << CAP_SYS_ADMIN : 0);
  /* A change of uid or gid clears the parent-death signal: ask again, so that the container
   * dies with its monitor whoever it runs as. */
  if (container_pid != getpid()) prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (o->cwd != NULL && chdir(o->cwd) < 0) die("cwd", "%s: %s", o->cwd, strerror(errno));
  if (o->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs", "%s", strerror(errno));
  if (seccomp != NULL) load_seccomp(seccomp);
  if (admin_for_filter) set_caps(o, 0);
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
  int oom_score_adj = apply_oom_score_adj(&o);

  /* 2. Namespaces. */
  int pid_changed = enter_namespaces(&o);

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
      report_pid(o.sync_fd, child, oom_score_adj);
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
    report_pid(o.sync_fd, container_pid, oom_score_adj);
  }
  /* An exec gets a process group of its own, so that a timeout can kill all it started; a
   * terminal needs a session of its own to become its controlling terminal. */
  if (o.join > 0 || o.tty) setsid();

  /* 4. The filesystem (a new container only: exec finds it ready in the mount namespace). */
  if (o.join == 0 && o.rootfs != NULL) setup_rootfs(&o);

  /* 5. The terminal, once /dev/pts is the container's. */
  if (o.tty) take_pty(tty_channel[1]);

  /* 6. Who it runs as, what it may do, where, then the command. */
  become_container_user(&o, seccomp, container_pid);
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
