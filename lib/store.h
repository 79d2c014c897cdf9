/*
 * store.h - a data directory:
 *
 *   DIR/lock                           the directory lock (lock.h)
 *   DIR/topics/<topic>/meta            "mq-topic 1\npartitions N\n"
 *   DIR/topics/<topic>/<partition>/    one partition (partition.h)
 *   DIR/groups/<group>/offsets         committed offsets (offsets.h)
 *
 * A topic is created whole or not at all: its directory is built under a
 * temporary name (DIR/topics/.tmp-<topic>-<pid>) and renamed into place.
 * Partitions are opened lazily and cached until mq_store_close.
 */
#ifndef MQ_STORE_H
#define MQ_STORE_H

#include "mq.h"
#include "partition.h"

typedef struct mq_store mq_store;

typedef struct mq_store_opts {
	mq_part_opts part;       /* passed to every partition it opens */
	bool read_only;          /* never create or modify anything */
} mq_store_opts;

#define MQ_MAX_PARTITIONS 1024

/* Open the data directory; unless read-only, creates DIR, DIR/topics and
 * DIR/groups if missing. Does not take the lock. */
int mq_store_open(const char *dir, const mq_store_opts *opts,
		  mq_store **out, mq_err *err);
/* Close every open partition (flushing unless read-only). */
int mq_store_close(mq_store *s, mq_err *err);

const char *mq_store_dir(const mq_store *s);
const char *mq_store_groups_dir(const mq_store *s);

/* Create topic (validated; internal names allowed) with n partitions
 * (1..MQ_MAX_PARTITIONS). MQ_E_EXISTS if it exists. */
int mq_store_create_topic(mq_store *s, const char *topic, int n,
			  mq_err *err);
/* Partition count of topic; MQ_E_NO_TOPIC if it does not exist. */
int mq_store_topic_partitions(mq_store *s, const char *topic, int *n,
			      mq_err *err);
/* Sorted topic names (internal ones included). Free with mq_names_free. */
int mq_store_list_topics(mq_store *s, char ***names, size_t *n,
			 mq_err *err);
/* The open partition (opened and cached on first use). The store owns it.
 * MQ_E_NO_TOPIC / MQ_E_NO_PARTITION when missing. */
int mq_store_partition(mq_store *s, const char *topic, int partition,
		       mq_partition **out, mq_err *err);
/* Call fn for every open partition (e.g. to flush them all). Stops at the
 * first non-zero return and returns it. */
int mq_store_foreach_open(mq_store *s,
			  int (*fn)(const char *topic, int partition,
				    mq_partition *p, void *arg),
			  void *arg);

#endif
