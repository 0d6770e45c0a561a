/*
 * pause: the sandbox ("infra") container of the stand-in registry.k8s.io/pause:3.9.
 *
 * Same behaviour as Kubernetes' build/pause/linux/pause.c, written fresh: hold
 * the pod's namespaces open, reap zombies when it is PID 1 of the pod's PID
 * namespace, and exit 0 on SIGINT/SIGTERM so StopPodSandbox is quick.
 *
 * Built statically (see e2e/images/build.sh) so the image needs no libc.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_terminate(int sig)
{
	(void)sig;
	_exit(0);
}

static void on_child(int sig)
{
	(void)sig;
	int saved = errno;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

static int install(int sig, void (*handler)(int))
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = SA_RESTART | (sig == SIGCHLD ? SA_NOCLDSTOP : 0);
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL) < 0) {
		fprintf(stderr, "pause: sigaction(%d): %s\n", sig, strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		printf("pause (corral offline stand-in for registry.k8s.io/pause:3.9)\n");
		return 0;
	}
	if (install(SIGINT, on_terminate) < 0 || install(SIGTERM, on_terminate) < 0 ||
	    install(SIGCHLD, on_child) < 0)
		return 1;
	for (;;)
		pause();
}
