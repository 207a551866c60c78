/* pause: the sandbox process of a pod (the node's sandbox_image, kubetasks/pause:3.10).
 * It holds the pod's namespaces, reaps orphaned children and exits 0 on SIGTERM or SIGINT.
 * Built static (gcc -static) so that the image needs nothing but this file. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
}

int main(void) {
    struct sigaction action = {.sa_handler = stop};
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    action.sa_handler = reap;
    action.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &action, NULL);
    for (;;) pause();
}
