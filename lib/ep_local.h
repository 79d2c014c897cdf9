/*
 * ep_local.h - inside the endpoint over a data directory: what
 * ep_local.c (open, close, reading), ep_local_write.c (turns at the
 * directory lock, producing, administration) and ep_local_group.c
 * (consumer groups) share. The design is at the top of ep_local.c.
 */
#ifndef MQ_EP_LOCAL_H
#define MQ_EP_LOCAL_H

#include <limits.h>
#include <pthread.h>

#include "ep_impl.h"
#include "lgroup.h"
#include "name.h"
#include "proto.h"
#include "pseq.h"
#include "store.h"
#include "watch.h"

#define DEFAULT_TIMEOUT_MS 30000

#define IDLE_MS 100       /* a turn ends this long after the last write */
#define TICK_MS 20        /* ... or this soon when another process waits */
#define TURN_MS 50        /* a busy turn hands over after this, if asked */
#define YIELD_MS 5        /* pause after handing over (waiters poll at 2) */
#define PENDING_MAX 256   /* sync produces waiting for one fdatasync */

/* A sync produce appended, waiting for its fdatasync to be reported. */
struct pend {
	struct pend *next;
	mq_ep_event ev;
	char topic[MQ_TOPIC_MAX + 1];
};

/* A fetch waiting at the end of a partition. */
struct parked {
	struct parked *next;
	char topic[MQ_TOPIC_MAX + 1];
	int32_t partition;
	int64_t offset;
	uint32_t max_bytes;
	int64_t deadline;       /* mono ms */
	uint64_t token;
};

/* Sequence state of one producer id on one partition (pseq.h). */
struct pseq {
	struct pseq *next;
	int64_t pid;
	int32_t partition;
	mq_pseq seq;
	char topic[];
};

struct membership {
	struct membership *next;
	mq_lgroup *g;
};

struct limpl {
	char *dir;
	char groups_dir[PATH_MAX];
	char topics_dir[PATH_MAX];
	bool ro, sync;
	int partitions;             /* for topics a produce creates */
	int timeout_ms;
	char client[128];
	uint32_t rr;

	mq_store *rd;               /* read-only view, for every read */
	mq_watch *watch;            /* created on the first long poll */
	struct parked *parked;

	pthread_mutex_t mu;         /* everything below, and the stores */
	pthread_cond_t cv;
	pthread_t keeper;
	bool keeper_on, stopping;
	int lock_fd;                /* the directory lock: our turn */
	mq_store *wr;               /* read-write, open during a turn */
	int64_t turn_start, last_write, last_ask;
	struct pend *pending, **pending_tail;
	size_t npending;
	struct pend *ready, **ready_tail;  /* flushed (or failed): to queue */
	mq_err late;                /* a failure found when a turn ended */

	struct pseq *seqs;
	struct membership *members;
	uint8_t *buf;               /* batch copy / fetch data */
	size_t cap;
};

/* ep_local.c */
/* Grow l->buf to need bytes. 0 or -1 + err. */
int lo_reserve(struct limpl *l, size_t need, mq_err *err);
/* Copy the failure e into ev. */
void lo_ev_fail(mq_ep_event *ev, const mq_err *e);
/* Queue an event (mq_ep_queue_push). 0 or -1 + err. */
int lo_push(mq_ep *ep, const mq_ep_event *ev, const uint8_t *data,
	    size_t len, mq_err *err);
/* The read-only view of a partition, refreshed. 0 or -1 + err. */
int lo_rd_part(struct limpl *l, const char *topic, int32_t partition,
	       mq_partition **p, mq_err *err);

/* ep_local_write.c: everything under l->mu. */
int lo_refuse_read_only(const struct limpl *l, mq_err *err);
/* Make sure it is our turn to write (l->wr open, the lock ours). 0, or
 * -1 + err when the endpoint cannot write (read-only, a broker holds
 * the directory, a writer does not let go). */
int lo_begin_write(struct limpl *l, mq_err *err);
/* A write is done (the turn ends IDLE_MS after the last one). */
void lo_end_write(struct limpl *l);
/* End the turn now: flush, close l->wr, release the lock. */
void lo_end_turn(struct limpl *l);
/* fdatasync for the sync produces waiting, then move them to ready. */
void lo_flush_pending(struct limpl *l);
/* Stop the keeper thread (after the last turn ended). */
void lo_keeper_stop(struct limpl *l);
int lo_produce_send(mq_ep *ep, const char *topic, int32_t partition,
		    const void *key, int32_t klen, uint8_t acks,
		    const void *batch, size_t len, uint64_t token,
		    mq_err *err);
int lo_init_producer(mq_ep *ep, int64_t *pid, mq_err *err);
int lo_create_topic(mq_ep *ep, const char *topic, int32_t n, mq_err *err);
int lo_delete_records(mq_ep *ep, const char *topic, int32_t partition,
		      int64_t offset, int64_t *new_start, mq_err *err);

/* ep_local_group.c */
int lo_join(mq_ep *ep, const char *group, const char *member_id,
	    uint32_t session_ms, const char *const *topics, size_t n,
	    mq_assignment *out, mq_err *err);
int lo_heartbeat(mq_ep *ep, const char *group, const char *member_id,
		 int32_t generation, mq_err *err);
int lo_leave(mq_ep *ep, const char *group, const char *member_id,
	     mq_err *err);
int lo_commit(mq_ep *ep, const char *group, const char *member_id,
	      int32_t generation, uint16_t flags, const mq_commit_entry *e,
	      size_t n, mq_err *err);
int lo_describe(mq_ep *ep, const char *group, mq_group_info **out,
		size_t *n, mq_err *err);
/* Leave every group this endpoint joined. */
void lo_leave_all(struct limpl *l);

#endif
