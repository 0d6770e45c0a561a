/*
 * nnp: the program of the stand-in registry.k8s.io/e2e-test-images/nonewprivs:1.3.
 *
 * The image installs it set-uid root. critest runs it as uid 1000 and reads the
 * log: "Effective uid: 0" when the kernel honoured the set-uid bit
 * (no_new_privs off), "Effective uid: 1000" when no_new_privs blocked it.
 */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	printf("Effective uid: %d\n", (int)geteuid());
	return 0;
}
