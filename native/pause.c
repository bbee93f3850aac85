/*
 * pause: the process that holds a pod's namespaces (the "ice tray").
 *
 * It does nothing but wait. While it lives, the pod's network, IPC and UTS namespaces
 * (and PID namespace, when the pod shares one) stay alive, whatever happens to the pod's
 * containers.
 *
 *   pause                      wait; the entrypoint of the pause image
 *   pause -d [-n] [-i] [-u] [-p] [-H hostname] [-S key=value]... [-I label]
 *                              make the pod: new network (-n), IPC (-i), UTS (-u) and PID (-p)
 *                              namespaces, set the hostname and namespaced sysctls in them,
 *                              then start the waiting process, print its pid, and return.
 *                              The label is not used here: icetray passes its sandbox folder,
 *                              so that `ps` tells which pod a pause holds, and an icetray
 *                              restarted after a crash finds a pause whose pid it never wrote
 *                              down (the waiting process keeps these arguments).
 *
 * With -d the caller gets back a pid and no lingering parent: the waiting process is detached
 * (its own session, stdio on /dev/null), so a pod costs one small process and outlives the
 * runtime that started it. A new PID namespace only applies to children, hence the fork: the
 * waiting process is PID 1 of the pod, so it must also
 *   - install handlers for SIGINT/SIGTERM: the kernel drops signals that PID 1 of a namespace
 *     has no handler for, so without them only SIGKILL would stop it;
 *   - reap zombies: orphans of the namespace are re-parented to PID 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Exit status of `pause -d` when a sysctl is refused: the pod's config is wrong, not the node. */
#define EXIT_BAD_SYSCTL 3

static void stop(int sig) {
  (void)sig;
  _exit(0);
}

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

static int wait_forever(void) {
  struct sigaction on_stop = {.sa_handler = stop};
  struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
  if (sigaction(SIGINT, &on_stop, NULL) < 0 || sigaction(SIGTERM, &on_stop, NULL) < 0 ||
      sigaction(SIGCHLD, &on_child, NULL) < 0) {
    perror("pause: sigaction");
    return 1;
  }
  for (;;) pause();
}

/* A sysctl name in the dotted spelling icetray passes ("net.ipv4.conf.eth0/100.forwarding": dots
 * between parts, '/' for a dot inside one) as a path under /proc/sys. Every part must be a plain
 * name: no empty part, no "." or "..", nothing but letters, digits, '_', '-' and inner dots. */
static int sysctl_path(const char *key, size_t len, char *path, size_t size) {
  if (len == 0 || len >= size) return -1;
  for (size_t i = 0; i < len; i++) {
    char c = key[i];
    path[i] = c == '.' ? '/' : c == '/' ? '.' : c;
    if (!(c == '.' || c == '/' || c == '_' || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9')))
      return -1;
  }
  path[len] = '\0';
  /* Each part: not empty, and no dot at either end (which also rules out "." and ".."). */
  for (const char *part = path; *part;) {
    size_t n = strcspn(part, "/");
    if (n == 0 || part[0] == '.' || part[n - 1] == '.') return -1;
    part += n;
    if (*part == '/') part++;
    if (*part == '\0' && part[-1] == '/') return -1;
  }
  return 0;
}

/* The namespace a sysctl path belongs to (the kubelet's list of namespaced sysctls), or 0. A
 * sysctl is only ever written inside a namespace pause created itself: never the node's value. */
static int sysctl_namespace(const char *path) {
  int depth = 1;
  for (const char *c = path; *c; c++) depth += *c == '/';
  if (strncmp(path, "net/", 4) == 0) return CLONE_NEWNET;
  if (depth == 2 && (strncmp(path, "kernel/shm", 10) == 0 || strncmp(path, "kernel/msg", 10) == 0 ||
                     strcmp(path, "kernel/sem") == 0))
    return CLONE_NEWIPC;
  if (depth == 3 && strncmp(path, "fs/mqueue/", 10) == 0) return CLONE_NEWIPC;
  return 0;
}

/* Writes value to /proc/sys/<path>: the calling process's namespaces decide which instance of a
 * namespaced sysctl it reaches, so this runs after unshare(). openat2 resolves the path beneath
 * /proc/sys and refuses any symlink or mount crossing on the way, so whatever the name, the
 * write cannot land anywhere else. */
static int set_sysctl(const char *assignment, int created) {
  const char *eq = strchr(assignment, '=');
  int key_len = eq == NULL ? 0 : (int)(eq - assignment);
  char path[256];
  if (eq == NULL || sysctl_path(assignment, (size_t)key_len, path, sizeof path) < 0) {
    fprintf(stderr, "pause: sysctl %s: expected name=value with a valid kernel parameter name\n", assignment);
    return -1;
  }
  int ns = sysctl_namespace(path);
  if (ns == 0 || (ns & created) == 0) {
    fprintf(stderr, "pause: sysctl %.*s is not in a namespace of this pod\n", key_len, assignment);
    return -1;
  }
  int proc_sys = open("/proc/sys", O_PATH | O_DIRECTORY | O_CLOEXEC);
  struct open_how how = {
      .flags = O_WRONLY | O_CLOEXEC,
      .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
  };
  int fd = proc_sys < 0 ? -1 : (int)syscall(SYS_openat2, proc_sys, path, &how, sizeof how);
  size_t n = strlen(eq + 1);
  int ok = fd >= 0 && write(fd, eq + 1, n) == (ssize_t)n;
  if (!ok) fprintf(stderr, "pause: sysctl %.*s: %s\n", key_len, assignment, strerror(errno));
  if (fd >= 0) close(fd);
  if (proc_sys >= 0) close(proc_sys);
  return ok ? 0 : -1;
}

static int make_pod(int argc, char **argv) {
  int flags = 0, opt;
  const char *hostname = NULL;
  optind = 1;
  /* First pass: namespaces and hostname. Sysctls need the namespaces first. */
  while ((opt = getopt(argc, argv, "dniupH:S:I:")) != -1) {
    switch (opt) {
      case 'd': break;
      case 'n': flags |= CLONE_NEWNET; break;
      case 'i': flags |= CLONE_NEWIPC; break;
      case 'u': flags |= CLONE_NEWUTS; break;
      case 'p': flags |= CLONE_NEWPID; break;
      case 'H': hostname = optarg; break;
      case 'S': break;
      case 'I': break;
      default: return 2;
    }
  }
  if (flags != 0 && unshare(flags) < 0) {
    perror("pause: unshare");
    return 1;
  }
  if (hostname != NULL && sethostname(hostname, strlen(hostname)) < 0) {
    perror("pause: sethostname");
    return 1;
  }
  optind = 1;
  while ((opt = getopt(argc, argv, "dniupH:S:I:")) != -1) {
    if (opt == 'S' && set_sysctl(optarg, flags) < 0) return EXIT_BAD_SYSCTL;
  }

  pid_t child = fork();
  if (child < 0) {
    perror("pause: fork");
    return 1;
  }
  if (child == 0) {
    setsid();
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, 0);
      dup2(devnull, 1);
      dup2(devnull, 2);
      if (devnull > 2) close(devnull);
    }
    if (chdir("/") < 0) _exit(1);
    _exit(wait_forever());
  }
  printf("%d\n", (int)child);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    puts("pause (icetray)");
    return 0;
  }
  if (argc > 1 && strcmp(argv[1], "-d") == 0) return make_pod(argc, argv);
  return wait_forever();
}
