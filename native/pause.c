/*
 * pause: the process that holds a pod's namespaces (the "ice tray").
 *
 * It does nothing but wait. While it lives, the pod's network, IPC and UTS namespaces
 * (and PID namespace, when the pod shares one) stay alive, whatever happens to the pod's
 * containers.
 *
 *   pause                      wait; the entrypoint of the pause image
 *   pause -d [-n] [-i] [-u] [-p] [-H hostname] [-S key=value]...
 *                              make the pod: new network (-n), IPC (-i), UTS (-u) and PID (-p)
 *                              namespaces, set the hostname and namespaced sysctls in them,
 *                              then start the waiting process, print its pid, and return.
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
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* The namespace a sysctl belongs to (the kubelet's list of namespaced sysctls), or 0. A sysctl
 * is only ever written inside a namespace pause created itself: never the node's own value. */
static int sysctl_namespace(const char *key) {
  if (strncmp(key, "net.", 4) == 0) return CLONE_NEWNET;
  if (strncmp(key, "kernel.shm", 10) == 0 || strncmp(key, "kernel.msg", 10) == 0 ||
      strncmp(key, "kernel.sem=", 11) == 0 || strncmp(key, "fs.mqueue.", 10) == 0)
    return CLONE_NEWIPC;
  if (strncmp(key, "kernel.hostname=", 16) == 0 || strncmp(key, "kernel.domainname=", 18) == 0) return CLONE_NEWUTS;
  return 0;
}

/* Writes value to /proc/sys/<key with dots as slashes>: the calling process's namespaces decide
 * which instance of a namespaced sysctl it reaches, so this runs after unshare(). */
static int set_sysctl(const char *assignment, int created) {
  const char *eq = strchr(assignment, '=');
  if (eq == NULL || eq == assignment) {
    fprintf(stderr, "pause: sysctl %s: expected key=value\n", assignment);
    return -1;
  }
  int ns = sysctl_namespace(assignment);
  if (ns == 0 || (ns & created) == 0) {
    fprintf(stderr, "pause: sysctl %.*s is not in a namespace of this pod\n", (int)(eq - assignment), assignment);
    return -1;
  }
  char path[512];
  int n = snprintf(path, sizeof path, "/proc/sys/%.*s", (int)(eq - assignment), assignment);
  if (n < 0 || (size_t)n >= sizeof path) return -1;
  for (char *c = path + strlen("/proc/sys/"); *c; c++) {
    if (*c == '.') *c = '/';
    else if (*c == '/') *c = '.'; /* a key may spell a dotted name with slashes */
  }
  int fd = open(path, O_WRONLY);
  if (fd < 0 || write(fd, eq + 1, strlen(eq + 1)) < 0) {
    fprintf(stderr, "pause: sysctl %.*s: %s\n", (int)(eq - assignment), assignment, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  return 0;
}

static int make_pod(int argc, char **argv) {
  int flags = 0, opt;
  const char *hostname = NULL;
  optind = 1;
  /* First pass: namespaces and hostname. Sysctls need the namespaces first. */
  while ((opt = getopt(argc, argv, "dniupH:S:")) != -1) {
    switch (opt) {
      case 'd': break;
      case 'n': flags |= CLONE_NEWNET; break;
      case 'i': flags |= CLONE_NEWIPC; break;
      case 'u': flags |= CLONE_NEWUTS; break;
      case 'p': flags |= CLONE_NEWPID; break;
      case 'H': hostname = optarg; break;
      case 'S': break;
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
  while ((opt = getopt(argc, argv, "dniupH:S:")) != -1) {
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
