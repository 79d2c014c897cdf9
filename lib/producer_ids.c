/* producer_ids.c - reserving producer ids in a data directory (see
 * producer_ids.h). The broker reserves them a block at a time, a direct
 * writer one at a time; both go through here. */
#include "producer_ids.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "io.h"

#define IDS_FILE "producer-ids"

int mq_producer_ids_reserve(const char *dir, int64_t count, int64_t *first,
			    mq_err *err)
{
	char path[PATH_MAX], buf[64], *text;
	long long next = 1;
	mq_err rerr;
	int len;

	if (count < 1)
		return mq_errf(err, MQ_E_INVAL, "cannot reserve %" PRId64
			       " producer ids", count);
	if (snprintf(path, sizeof path, "%s/%s", dir, IDS_FILE) >=
	    (int)sizeof path)
		return mq_errf(err, MQ_E_INVAL, "path too long: %s", dir);
	if (mq_read_file(path, 4096, &text, NULL, &rerr) == 0) {
		if (sscanf(text, "mq-producer-ids 1\nnext %lld", &next) != 1 ||
		    next < 1) {
			free(text);
			return mq_errf(err, MQ_E_CORRUPT,
				       "%s: not a producer id file", path);
		}
		free(text);
	} else if (rerr.sys_errno != ENOENT) {
		if (err)
			*err = rerr;
		return -1;
	}
	if (next > INT64_MAX - count)
		return mq_errf(err, MQ_E_CORRUPT, "%s: producer ids exhausted",
			       path);
	len = snprintf(buf, sizeof buf, "mq-producer-ids 1\nnext %lld\n",
		       next + (long long)count);
	if (mq_write_file_atomic(path, buf, (size_t)len, err) < 0)
		return -1;
	*first = next;
	return 0;
}
