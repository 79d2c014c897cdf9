/*
 * wlock.c - a direct writer's turn at a data directory (see wlock.h).
 *
 * Waiting polls the lock, backing off to WAIT_MAX_MS between attempts. A
 * blocking flock would be simpler, but a broker may take the lock between
 * two writers' turns, and a writer blocked behind a broker would wait for
 * ever instead of being told to go through it. The poll is a few system
 * calls, and a holder that sees a waiter hands over within a turn, so the
 * wait is short.
 */
#include "wlock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "io.h"
#include "lock.h"

#define WAIT_FILE "lock.wait"
#define WAIT_MAX_MS 2

static int wait_path(char *buf, size_t size, const char *dir, mq_err *err)
{
	if (snprintf(buf, size, "%s/%s", dir, WAIT_FILE) >= (int)size)
		return mq_errf(err, MQ_E_INVAL, "path too long: %s", dir);
	return 0;
}

int mq_wlock_refuse(const char *dir, pid_t pid, mq_err *err)
{
	return mq_errf(err, MQ_E_LOCKED, "data directory %s is in use by "
		       "mq-brokerd (pid %ld); use -b ADDR to go through it",
		       dir, (long)pid);
}

int mq_wlock_broker(const char *dir, pid_t *pid, mq_err *err)
{
	char what[40];
	pid_t holder;

	*pid = 0;
	if (mq_dirlock_probe(dir, &holder, what, sizeof what, err) < 0)
		return -1;
	if (holder > 0 && strcmp(what, "broker") == 0) {
		*pid = holder;
		return 1;
	}
	return 0;
}

/* Announce that we wait: a shared flock on DIR/lock.wait, kept until we
 * have the lock. A holder checks it with a non-blocking exclusive flock,
 * which it drops at once, so blocking here is brief. */
static int announce(const char *dir, mq_err *err)
{
	char path[PATH_MAX];
	int fd;

	if (wait_path(path, sizeof path, dir, err) < 0)
		return -1;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return mq_errsys(err, MQ_E_IO, errno, "open %s", path);
	while (flock(fd, LOCK_SH) < 0) {
		if (errno != EINTR) {
			int e = errno;
			close(fd);
			return mq_errsys(err, MQ_E_IO, e, "lock %s", path);
		}
	}
	return fd;
}

int mq_wlock_acquire(const char *dir, int timeout_ms, mq_err *err)
{
	int64_t deadline = mq_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	pid_t holder = 0, last = -2;
	bool broker = false;
	int fd, wait_fd = -1, delay = 1;
	mq_err e;

	for (;;) {
		fd = mq_dirlock_acquire(dir, false, "writer", &holder, &e);
		if (fd >= 0)
			break;
		if (e.code != MQ_E_LOCKED)
			goto fail;
		/* Who is it? Ask only when the holder changes: the probe
		 * holds a shared lock for a moment. */
		if (holder != last) {
			pid_t bpid;
			int r = mq_wlock_broker(dir, &bpid, &e);
			if (r < 0)
				goto fail;
			broker = r == 1;
			if (broker)
				holder = bpid;
			last = holder;
		}
		if (broker) {
			mq_wlock_refuse(dir, holder, &e);
			goto fail;
		}
		if (mq_mono_ms() >= deadline) {
			if (holder > 0)
				mq_errf(&e, MQ_E_LOCKED, "data directory %s: "
					"gave up waiting after %d ms for the "
					"writer holding it (pid %ld)", dir,
					timeout_ms, (long)holder);
			else
				mq_errf(&e, MQ_E_LOCKED, "data directory %s: "
					"gave up waiting after %d ms for the "
					"process holding it", dir, timeout_ms);
			goto fail;
		}
		if (wait_fd < 0 && (wait_fd = announce(dir, &e)) < 0)
			goto fail;
		mq_sleep_ms(delay);
		if (delay < WAIT_MAX_MS)
			delay *= 2;
	}
	if (wait_fd >= 0)
		close(wait_fd);
	return fd;
fail:
	if (wait_fd >= 0)
		close(wait_fd);
	if (err)
		*err = e;
	return -1;
}

void mq_wlock_release(int fd)
{
	mq_dirlock_release(fd);
}

bool mq_wlock_wanted(const char *dir)
{
	char path[PATH_MAX];
	bool wanted = false;
	int fd;

	if (wait_path(path, sizeof path, dir, NULL) < 0)
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		flock(fd, LOCK_UN);
	else
		wanted = errno == EWOULDBLOCK;
	close(fd);
	return wanted;
}
