/*
 * pgrep: a small procps-compatible pgrep for the test images, because Debian's
 * busybox-static has no pgrep applet. critest runs `sh -c "pgrep sleep || true"`
 * to check that a timed-out ExecSync left no process behind.
 *
 *   pgrep [-f] [-l] [-x] PATTERN
 *
 * PATTERN is a POSIX extended regex matched against the process name (comm),
 * or the whole command line with -f; -x requires a whole-string match; -l
 * prints the name too. Exit 0 when something matched, 1 when nothing did,
 * 2 on bad usage. pgrep never lists itself.
 */
#include <ctype.h>
#include <dirent.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int read_name(const char *pid, int full, char *buf, size_t size)
{
	char path[sizeof("/proc//cmdline") + 256];
	snprintf(path, sizeof(path), "/proc/%s/%s", pid, full ? "cmdline" : "comm");
	FILE *f = fopen(path, "r");
	if (!f)
		return -1; /* the process is gone: not an error */
	size_t n = fread(buf, 1, size - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* cmdline separates arguments with NUL; comm ends with a newline. */
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return n > 0 ? 0 : -1;
}

static int usage(void)
{
	fprintf(stderr, "usage: pgrep [-f] [-l] [-x] PATTERN\n");
	return 2;
}

int main(int argc, char **argv)
{
	int full = 0, list = 0, exact = 0, opt;
	while ((opt = getopt(argc, argv, "flx")) != -1) {
		switch (opt) {
		case 'f': full = 1; break;
		case 'l': list = 1; break;
		case 'x': exact = 1; break;
		default: return usage();
		}
	}
	if (optind != argc - 1)
		return usage();

	const char *pattern = argv[optind];
	char *anchored = NULL;
	if (exact) {
		size_t len = strlen(pattern) + 5;
		anchored = malloc(len);
		if (!anchored)
			return 2;
		snprintf(anchored, len, "^(%s)$", pattern);
		pattern = anchored;
	}
	regex_t re;
	int rc = regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB);
	if (rc != 0) {
		char msg[256];
		regerror(rc, &re, msg, sizeof(msg));
		fprintf(stderr, "pgrep: invalid pattern %s: %s\n", argv[optind], msg);
		return 2;
	}

	DIR *proc = opendir("/proc");
	if (!proc) {
		perror("pgrep: /proc");
		return 2;
	}
	char self[32];
	snprintf(self, sizeof(self), "%d", (int)getpid());
	int matched = 0;
	struct dirent *entry;
	while ((entry = readdir(proc)) != NULL) {
		if (!isdigit((unsigned char)entry->d_name[0]) || strcmp(entry->d_name, self) == 0)
			continue;
		char name[4096];
		if (read_name(entry->d_name, full, name, sizeof(name)) < 0)
			continue;
		if (regexec(&re, name, 0, NULL, 0) != 0)
			continue;
		matched = 1;
		if (list)
			printf("%s %s\n", entry->d_name, name);
		else
			printf("%s\n", entry->d_name);
	}
	closedir(proc);
	regfree(&re);
	free(anchored);
	return matched ? 0 : 1;
}
