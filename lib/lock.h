/*
 * lock.h - the data directory lock. One writer at a time: the broker holds
 * DIR/lock for its lifetime, a direct writer only while it appends. The
 * lock is flock(2) on DIR/lock (released by the kernel when the holder
 * dies); the holder's pid is written into the file so that a refused
 * process can name it.
 */
#ifndef MQ_LOCK_H
#define MQ_LOCK_H

#include <sys/types.h>
#include "mq.h"

/*
 * Take the lock on dir (which must exist). With wait, block until it is
 * free (unless this process holds it already: that would never end, so it
 * fails with MQ_E_LOCKED); without, fail at once with MQ_E_LOCKED,
 * *holder set to the pid recorded by the holder (0 if unknown or no
 * longer running) and a message naming it. what ("broker", "writer") is
 * recorded next to the pid. Returns a descriptor to pass to
 * mq_dirlock_release, or -1 + err.
 */
int mq_dirlock_acquire(const char *dir, bool wait, const char *what,
		       pid_t *holder, mq_err *err);
void mq_dirlock_release(int fd);

/* Who holds it now: 0 and *holder = pid if held (what gets "broker"...),
 * 0 and *holder = 0 if free, 0 and *holder = -1 if held by a process that
 * has not recorded a live pid, -1 + err on I/O error. Never takes it. */
int mq_dirlock_probe(const char *dir, pid_t *holder, char *what,
		     size_t what_size, mq_err *err);

#endif
