/*
 * watch.h - waiting for a partition to grow without polling: inotify(7)
 * watches on partition directories. An append by any process (a broker,
 * another direct writer) modifies a .log file there, a roll creates one,
 * and either wakes mq_watch_wait at once.
 *
 * A wake-up says only "something changed"; the caller refreshes its view
 * (mq_part_refresh) and looks. Spurious wake-ups (index and state file
 * writes, a batch only half written yet) are harmless.
 */
#ifndef MQ_WATCH_H
#define MQ_WATCH_H

#include "mq.h"

typedef struct mq_watch mq_watch;

int mq_watch_open(mq_watch **out, mq_err *err);
void mq_watch_close(mq_watch *w);

/* Watch the directory at path (adding one twice is harmless). Add it
 * before the last look at the data, so nothing written after that look
 * can be missed. 0 or -1 + err. */
int mq_watch_add(mq_watch *w, const char *path, mq_err *err);

/* Wait up to timeout_ms (-1 = no limit) for a change in any watched
 * directory; drains what arrived. 1 = changed, 0 = timeout, -1 + err. */
int mq_watch_wait(mq_watch *w, int timeout_ms, mq_err *err);

#endif
