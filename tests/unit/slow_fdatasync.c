/*
 * slow_fdatasync.c - an LD_PRELOAD shim for tests: a disk that stalls.
 *
 * While the file named by $MQ_SLOW_FDATASYNC_GATE exists, fdatasync(2)
 * waits (looking again every 5 ms) before doing its work; once the file
 * is gone, it goes through. With $MQ_SLOW_FDATASYNC_PATH set, only files
 * whose path contains it wait (one topic's segments, say). A test starts the broker with this preloaded,
 * creates the file to stall every sync flush, and removes it to let the
 * disk catch up, so what the broker answers in between can be checked
 * (--flush-timeout) with no change to the broker itself.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Whether fd's file is one that waits. */
static int chosen(int fd)
{
	const char *part = getenv("MQ_SLOW_FDATASYNC_PATH");
	char link[64], path[4096];
	ssize_t n;

	if (!part)
		return 1;
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof path - 1);
	if (n < 0)
		return 0;
	path[n] = '\0';
	return strstr(path, part) != NULL;
}

int fdatasync(int fd)
{
	static int (*real)(int);
	const char *gate = getenv("MQ_SLOW_FDATASYNC_GATE");
	int saved = errno;

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "fdatasync");
	while (gate && access(gate, F_OK) == 0 && chosen(fd)) {
		struct timespec ts = { 0, 5 * 1000000L };
		nanosleep(&ts, NULL);
	}
	errno = saved;
	return real ? real(fd) : (errno = ENOSYS, -1);
}
