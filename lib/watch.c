/* watch.c - inotify watches on partition directories (see watch.h). */
#include "watch.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <unistd.h>

struct mq_watch {
	int fd;
};

/* Appends (IN_MODIFY), new segments (IN_CREATE), the state file replaced
 * (IN_MOVED_TO: the log start moved), segments deleted (IN_DELETE). */
#define WATCH_MASK (IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_DELETE | \
		    IN_ONLYDIR)

int mq_watch_open(mq_watch **out, mq_err *err)
{
	mq_watch *w = calloc(1, sizeof *w);

	if (!w)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd < 0) {
		int e = errno;
		free(w);
		return mq_errsys(err, MQ_E_IO, e, "inotify_init1");
	}
	*out = w;
	return 0;
}

void mq_watch_close(mq_watch *w)
{
	if (w) {
		close(w->fd);
		free(w);
	}
}

int mq_watch_add(mq_watch *w, const char *path, mq_err *err)
{
	if (inotify_add_watch(w->fd, path, WATCH_MASK) < 0)
		return mq_errsys(err, MQ_E_IO, errno, "inotify_add_watch %s",
				 path);
	return 0;
}

/* Read whatever events are queued. 1 if there were some, 0 if none. */
static int drain(mq_watch *w, mq_err *err)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int got = 0;

	for (;;) {
		ssize_t n = read(w->fd, buf, sizeof buf);
		if (n > 0) {
			got = 1;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return mq_errsys(err, MQ_E_IO, errno, "read inotify");
		return got;
	}
}

int mq_watch_wait(mq_watch *w, int timeout_ms, mq_err *err)
{
	struct pollfd pfd = { .fd = w->fd, .events = POLLIN };
	int64_t end = timeout_ms >= 0 ? mq_mono_ms() + timeout_ms : -1;

	for (;;) {
		int left = -1, r;

		if (end >= 0) {
			int64_t d = end - mq_mono_ms();
			left = d > 0 ? (int)d : 0;
		}
		r = poll(&pfd, 1, left);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return mq_errsys(err, MQ_E_IO, errno, "poll inotify");
		}
		if (r == 0)
			return 0;
		r = drain(w, err);
		if (r != 0)
			return r;
	}
}
