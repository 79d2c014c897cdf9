/*
 * wlock.h - a direct writer's turn at a data directory.
 *
 * The directory lock (lock.h) admits one writer at a time. A broker takes
 * it for its whole life; a program working on the directory without a
 * broker takes it only for a turn, while it appends or commits, so that
 * several such programs can share the directory. This adds what those
 * programs need on top of lock.h:
 *
 * - a broker in the way is reported at once (naming its pid), never
 *   waited for: it would hold the directory for ever;
 * - another direct writer in the way is waited for, and told so: waiters
 *   hold a shared flock on DIR/lock.wait for as long as they wait, and a
 *   holder that finds that file locked (mq_wlock_wanted) ends its turn
 *   soon. So a busy writer does not starve a second one, and an idle one
 *   costs nothing.
 */
#ifndef MQ_WLOCK_H
#define MQ_WLOCK_H

#include <sys/types.h>
#include "mq.h"

/*
 * Take dir's lock (dir must exist) as a direct writer. Fails at once with
 * MQ_E_LOCKED and a message naming the broker's pid when a broker holds
 * it; waits while other writers take their turns, up to timeout_ms (then
 * MQ_E_LOCKED). Returns the descriptor for mq_wlock_release, or -1 + err.
 */
int mq_wlock_acquire(const char *dir, int timeout_ms, mq_err *err);
void mq_wlock_release(int fd);

/* True when another process waits for dir's lock. */
bool mq_wlock_wanted(const char *dir);

/* 1 if a broker holds dir's lock (*pid set), 0 if not, -1 + err. Never
 * takes the lock. */
int mq_wlock_broker(const char *dir, pid_t *pid, mq_err *err);

/* Fill err with the refusal a writer gets while a broker holds dir. */
int mq_wlock_refuse(const char *dir, pid_t pid, mq_err *err);

#endif
