/*
 * lock.c - the data directory lock: flock(2) on DIR/lock.
 *
 * flock is tied to the open file description, so the kernel drops it when
 * the holder dies, however it dies: there is no stale lock to clean up.
 * Two opens of the file conflict even inside one process, so a program
 * cannot accidentally take the directory twice either.
 *
 * The holder records "<pid> <what>\n" in the file so that a refused
 * process can say who is in the way. That record is only informative: it
 * may be stale (written by a holder that has since died) or briefly empty
 * (a new holder has truncated it but not yet written). The lock itself is
 * the flock, never the file's content.
 */
#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "io.h"

#define LOCK_FILE "lock"
#define WHAT_MAX 32

/*
 * A conflict can be transient: mq_dirlock_probe holds a shared lock for a
 * moment, and a new holder may not have written its pid yet. When the
 * recorded holder is not a live process we look again, every RETRY_MS,
 * up to RETRY_COUNT times, before reporting the directory as locked.
 */
#define RETRY_MS 5
#define RETRY_COUNT 20

static int lock_path(char *buf, size_t size, const char *dir, mq_err *err)
{
	int n = snprintf(buf, size, "%s/%s", dir, LOCK_FILE);

	if (n < 0 || (size_t)n >= size)
		return mq_errf(err, MQ_E_INVAL, "path too long: %s/%s", dir,
			       LOCK_FILE);
	return 0;
}

/* Copy the printable part of src (at most WHAT_MAX bytes, stopping at a
 * space or newline) into dst. */
static void clean_what(char *dst, size_t size, const char *src, size_t len)
{
	size_t i, o = 0;

	if (!size)
		return;
	for (i = 0; i < len && o + 1 < size && o < WHAT_MAX; i++) {
		unsigned char c = (unsigned char)src[i];
		if (c <= ' ' || c >= 0x7f)
			break;
		dst[o++] = (char)c;
	}
	dst[o] = '\0';
}

/* Read the holder record. *pid = 0 if there is none or it is malformed. */
static void read_holder(int fd, pid_t *pid, char *what, size_t what_size)
{
	char buf[128], *end;
	ssize_t n = mq_pread_full(fd, buf, sizeof buf - 1, 0);
	long v;

	*pid = 0;
	if (what_size)
		what[0] = '\0';
	if (n <= 0)
		return;
	buf[n] = '\0';
	errno = 0;
	v = strtol(buf, &end, 10);
	if (errno || end == buf || v <= 0 || v > INT_MAX ||
	    (*end != ' ' && *end != '\n'))
		return;
	*pid = (pid_t)v;
	if (*end == ' ')
		clean_what(what, what_size, end + 1, strlen(end + 1));
}


int mq_dirlock_acquire(const char *dir, bool wait, const char *what,
		       pid_t *holder, mq_err *err)
{
	char path[PATH_MAX], rec[64 + WHAT_MAX], hwhat[WHAT_MAX + 1];
	char mine[WHAT_MAX + 1];
	pid_t hpid = 0;
	int fd, n, tries;

	if (holder)
		*holder = 0;
	if (lock_path(path, sizeof path, dir, err) < 0)
		return -1;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return mq_errsys(err, MQ_E_IO, errno, "open %s", path);

	for (tries = 0;; tries++) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK) {
			int e = errno;
			close(fd);
			return mq_errsys(err, MQ_E_IO, e, "lock %s", path);
		}
		read_holder(fd, &hpid, hwhat, sizeof hwhat);
		if (wait && (hpid != getpid() || tries >= RETRY_COUNT)) {
			/*
			 * Blocking on a lock this very process holds (through
			 * another descriptor) would never end: refuse that
			 * instead, once the record has had time to change.
			 */
			if (hpid == getpid()) {
				close(fd);
				if (holder)
					*holder = hpid;
				return mq_errf(err, MQ_E_LOCKED,
					       "data directory %s is already "
					       "locked by this process (pid "
					       "%ld)", dir, (long)hpid);
			}
			while (flock(fd, LOCK_EX) < 0) {
				if (errno != EINTR) {
					int e = errno;
					close(fd);
					return mq_errsys(err, MQ_E_IO, e,
							 "lock %s", path);
				}
			}
			break;
		}
		if (wait) {
			mq_sleep_ms(RETRY_MS);
			continue;
		}
		if (mq_pid_alive(hpid)) {
			close(fd);
			if (holder)
				*holder = hpid;
			return mq_errf(err, MQ_E_LOCKED,
				       "data directory %s is locked by %s "
				       "(pid %ld)", dir,
				       hwhat[0] ? hwhat : "another process",
				       (long)hpid);
		}
		if (tries >= RETRY_COUNT) {
			/* The record is stale or missing: don't name a
			 * process that is not there. */
			close(fd);
			return mq_errf(err, MQ_E_LOCKED,
				       "data directory %s is locked by another "
				       "process", dir);
		}
		mq_sleep_ms(RETRY_MS);
	}

	/*
	 * Ours now. Record who we are; a failure to write the record leaves
	 * the lock held and only makes a refused process less informative,
	 * so it is not an error.
	 */
	clean_what(mine, sizeof mine, what ? what : "", what ? strlen(what) : 0);
	n = snprintf(rec, sizeof rec, "%ld %s\n", (long)getpid(),
		     mine[0] ? mine : "writer");
	if (ftruncate(fd, 0) == 0 && n > 0)
		(void)mq_pwrite_full(fd, rec, (size_t)n, 0);
	return fd;
}

void mq_dirlock_release(int fd)
{
	if (fd < 0)
		return;
	/* Closing the last descriptor of the open file releases the lock;
	 * unlock explicitly too, in case a child inherited it. The record is
	 * left in place: it is stale by definition once the lock is free. */
	flock(fd, LOCK_UN);
	close(fd);
}

int mq_dirlock_probe(const char *dir, pid_t *holder, char *what,
		     size_t what_size, mq_err *err)
{
	char path[PATH_MAX];
	pid_t pid = 0;
	int fd, tries;

	if (!what)
		what_size = 0;
	*holder = 0;
	if (what_size)
		what[0] = '\0';
	if (lock_path(path, sizeof path, dir, err) < 0)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)	/* never locked */
			return 0;
		return mq_errsys(err, MQ_E_IO, errno, "open %s", path);
	}
	for (tries = 0;; tries++) {
		if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
			/* Nobody holds it exclusively. */
			flock(fd, LOCK_UN);
			close(fd);
			if (what_size)
				what[0] = '\0';
			return 0;
		}
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK) {
			int e = errno;
			close(fd);
			return mq_errsys(err, MQ_E_IO, e, "lock %s", path);
		}
		read_holder(fd, &pid, what, what_size);
		if (mq_pid_alive(pid))
			break;
		if (tries >= RETRY_COUNT) {
			/* Held, but by whom is not recorded. */
			pid = -1;
			if (what_size)
				what[0] = '\0';
			break;
		}
		mq_sleep_ms(RETRY_MS);
	}
	close(fd);
	*holder = pid;
	return 0;
}
