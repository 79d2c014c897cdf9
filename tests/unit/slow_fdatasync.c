/*
 * slow_fdatasync.c - an LD_PRELOAD shim for tests: a disk that stalls.
 *
 * While the file named by $MQ_SLOW_FDATASYNC_GATE exists, fdatasync(2)
 * waits (looking again every 5 ms) before doing its work; once the file
 * is gone, it goes through. A test starts the broker with this preloaded,
 * creates the file to stall every sync flush, and removes it to let the
 * disk catch up, so what the broker answers in between can be checked
 * (--flush-timeout) with no change to the broker itself.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int fdatasync(int fd)
{
	static int (*real)(int);
	const char *gate = getenv("MQ_SLOW_FDATASYNC_GATE");
	int saved = errno;

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "fdatasync");
	while (gate && access(gate, F_OK) == 0) {
		struct timespec ts = { 0, 5 * 1000000L };
		nanosleep(&ts, NULL);
	}
	errno = saved;
	return real ? real(fd) : (errno = ENOSYS, -1);
}
