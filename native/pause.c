/*
 * pause: the process that holds a pod's namespaces (the "ice tray").
 *
 * It does nothing but wait. While it lives, the pod's network, IPC and UTS namespaces
 * (and PID namespace, when the pod shares one) stay alive, whatever happens to the pod's
 * containers. When the pod shares a PID namespace, pause is its PID 1, so it must also:
 *   - install handlers for SIGINT/SIGTERM: the kernel drops signals that PID 1 of a
 *     namespace has no handler for, so without them only SIGKILL would stop it;
 *   - reap zombies: orphans of the namespace are re-parented to PID 1.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
  (void)sig;
  _exit(0);
}

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    puts("pause (icetray)");
    return 0;
  }
  struct sigaction on_stop = {.sa_handler = stop};
  struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
  if (sigaction(SIGINT, &on_stop, NULL) < 0 || sigaction(SIGTERM, &on_stop, NULL) < 0 ||
      sigaction(SIGCHLD, &on_child, NULL) < 0) {
    perror("pause: sigaction");
    return 1;
  }
  for (;;) pause();
}
