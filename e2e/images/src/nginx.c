/*
 * nginx: the "master process" of the stand-in web-server images
 * (registry.k8s.io/e2e-test-images/nginx:1.14-2 and
 * gcr.io/k8s-staging-cri-tools/hostnet-nginx-<arch>).
 *
 * It is not nginx. It reproduces exactly what critest observes of nginx:
 *   - a process whose name (comm) is "nginx", found by `pidof nginx` from a
 *     host-PID container (HostPID spec);
 *   - its pid in /var/run/nginx.pid (HostPID spec reads it);
 *   - "master process" in its /proc/PID/cmdline, as nginx's setproctitle does
 *     (ContainerPID spec greps /proc/1/cmdline for it, PodPID spec checks it is
 *     absent when the pod's pause process is PID 1);
 *   - HTTP 200 on GET / at the listen port (networking, port-forward and
 *     hostPort specs). A busybox httpd "worker" child serves the files.
 *
 * Listen port: $NGINX_PORT (default 80). Document root: /usr/share/nginx/html.
 * SIGTERM/SIGINT/SIGQUIT stop the worker and exit 0; if the worker dies the
 * master exits 1, so a broken image fails loudly instead of serving nothing.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SELF "/usr/sbin/nginx"
#define TITLE "nginx: master process nginx -g daemon off;"
#define PIDFILE "/var/run/nginx.pid"
#define DOCROOT "/usr/share/nginx/html"
#define HTTPD "/usr/sbin/httpd"

/* Re-exec ourselves with nginx's process title as argv[0]: exec keeps comm =
 * "nginx" (the file name) and makes /proc/PID/cmdline read like nginx's. */
static void become_master_title(char **argv)
{
	if (strcmp(argv[0], TITLE) == 0)
		return;
	char *title_argv[] = {TITLE, NULL};
	execv(SELF, title_argv);
	fprintf(stderr, "nginx: execv(%s): %s\n", SELF, strerror(errno));
	exit(1);
}

static int write_pidfile(void)
{
	if (mkdir("/var/run", 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "nginx: mkdir(/var/run): %s\n", strerror(errno));
		return -1;
	}
	FILE *f = fopen(PIDFILE, "w");
	if (!f) {
		fprintf(stderr, "nginx: open(%s): %s\n", PIDFILE, strerror(errno));
		return -1;
	}
	fprintf(f, "%d\n", (int)getpid());
	if (fclose(f) != 0) {
		fprintf(stderr, "nginx: write(%s): %s\n", PIDFILE, strerror(errno));
		return -1;
	}
	return 0;
}

static pid_t start_worker(const char *port, const sigset_t *original_mask)
{
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "nginx: fork: %s\n", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, original_mask, NULL);
		char *worker_argv[] = {"httpd", "-f", "-p", (char *)port, "-h", DOCROOT, NULL};
		execv(HTTPD, worker_argv);
		fprintf(stderr, "nginx: execv(%s): %s\n", HTTPD, strerror(errno));
		_exit(127);
	}
	return pid;
}

int main(int argc, char **argv)
{
	(void)argc;
	become_master_title(argv);

	const char *port = getenv("NGINX_PORT");
	if (!port || !*port)
		port = "80";

	/* All signals we care about are handled synchronously with sigwaitinfo:
	 * no async handlers, no races with the reaping below. */
	sigset_t wanted, original;
	sigemptyset(&wanted);
	sigaddset(&wanted, SIGTERM);
	sigaddset(&wanted, SIGINT);
	sigaddset(&wanted, SIGQUIT);
	sigaddset(&wanted, SIGCHLD);
	sigprocmask(SIG_BLOCK, &wanted, &original);

	pid_t worker = start_worker(port, &original);
	if (worker < 0 || write_pidfile() < 0)
		return 1;
	fprintf(stderr, "nginx: master %d serving %s on port %s (worker %d)\n", (int)getpid(),
		DOCROOT, port, (int)worker);

	for (;;) {
		siginfo_t info;
		int sig = sigwaitinfo(&wanted, &info);
		if (sig < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "nginx: sigwaitinfo: %s\n", strerror(errno));
			return 1;
		}
		if (sig != SIGCHLD) {
			kill(worker, SIGTERM);
			waitpid(worker, NULL, 0);
			unlink(PIDFILE);
			return 0;
		}
		/* Reap every exited child: as PID 1 we also adopt orphans of execs. */
		pid_t pid;
		int status;
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			if (pid == worker) {
				fprintf(stderr, "nginx: worker %d exited (status 0x%x)\n", (int)pid, status);
				unlink(PIDFILE);
				return 1;
			}
		}
	}
}
