/*
 * broker.h - the state of mq-brokerd, owned by one libev loop.
 *
 * Map of cmd/brokerd/:
 *   broker.h     this file: every struct the daemon shares
 *   log.c        timestamped, levelled logging to stderr
 *   server.c     listeners, connections, frame input, output queue
 *                (memory chunks and sendfile file ranges), back-pressure,
 *                shutdown
 *   topics.c     the broker's view of topics and partitions (bpart), long
 *                polling waiters, retention
 *   handlers.c   one function per request type
 *   flusher.c    group commit: the flusher thread, pending produces,
 *                flush timeouts, async flush timer
 *   producers.c  idempotent producers: ids and per-partition sequences
 *   groups.c     consumer groups: membership, rebalance, assignment,
 *                fenced commits
 * Only flusher.c's thread runs outside the loop, and it touches nothing
 * but the descriptors handed to it.
 */
#ifndef MQ_BROKER_H
#define MQ_BROKER_H

#include <ev.h>
#include <pthread.h>
#include <sys/types.h>

#include "mq.h"
#include "batch.h"
#include "partition.h"
#include "proto.h"
#include "pseq.h"
#include "store.h"

#define MAX_LISTEN 8

enum { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };
void log_init(int level);
void log_msg(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

struct broker_opts {
	const char *dir;
	const char *listen[MAX_LISTEN];
	int nlisten;
	const char *pidfile;
	bool flush_sync;
	int flush_interval_ms;      /* async: flush every N ms */
	int flush_timeout_ms;       /* sync: answer flush-timeout after */
	int flush_spin_us;          /* sync: spin before sleeping, 0 = never */
	int default_partitions;
	bool auto_create;
	uint64_t segment_bytes;
	uint64_t prealloc_bytes;    /* sync: zero-filled growth step */
	uint64_t retention_bytes;   /* per partition, 0 = none */
	int64_t retention_ms;       /* 0 = none */
	int retention_check_ms;
	uint32_t max_message;       /* key + value + headers of one record */
	uint32_t max_frame;
	int max_conns;
	int idle_timeout_ms;
	int max_wait_ms;            /* cap on a fetch's long-poll wait */
	size_t out_limit;           /* per-connection queued output cap */
	int log_level;
};

/* An output chunk: memory (fd < 0, bytes in w) or a file range. */
struct chunk {
	struct chunk *next;
	int fd;                 /* dup'd segment descriptor, or -1 */
	off_t pos;              /* file: next position to send */
	size_t left;            /* file: bytes still to send */
	size_t sent;            /* memory: bytes of w already sent */
	mq_wbuf w;
};

struct member;

struct conn {
	ev_io rd, wr;
	ev_timer idle;
	ev_timer closer;        /* closes it from the loop (conn_fail) */
	struct broker *b;
	struct conn *prev, *next;
	int fd;
	uint64_t serial;
	char peer[128];
	uint8_t *in;
	size_t in_len, in_cap;
	struct chunk *out_head, *out_tail;
	size_t out_bytes;       /* memory + file bytes queued */
	int deferred;           /* replies owed later (flush, poll, join) */
	int refs;               /* deferred work that still points here */
	bool dead;              /* closed; freed when refs drops to 0 */
	bool paused;            /* reading stopped by back-pressure */
	bool close_after_write; /* protocol error: flush replies, close */
	bool failing;           /* conn_fail was called: close is coming */
	char fail_why[96];
};

/* A fetch parked at the log end (long polling). */
struct waiter {
	ev_timer timer;
	struct waiter *prev, *next;    /* in bpart's list */
	struct conn *c;
	struct bpart *bp;
	uint32_t id;
	int64_t offset;
	uint32_t max_bytes;
};

/* A sync produce written but not yet known to be on disk. */
struct pending {
	struct pending *pprev, *pnext; /* in bpart's list, offset order */
	struct pending *gprev, *gnext; /* in broker's list, deadline order */
	struct conn *c;
	struct bpart *bp;
	uint32_t id;
	int64_t base_offset, last_offset;
	bool duplicate;
	bool noreply;
	int64_t deadline;              /* mono ms */
};

/* Idempotent producer state of one producer on one partition. */
struct pstate {
	int64_t pid;
	mq_pseq seq;
};

struct bpart {
	struct btopic *t;
	int32_t id;
	mq_partition *p;
	struct waiter *waiters;        /* long polls at the end */
	struct pending *pend_head, *pend_tail;
	bool dirty;                    /* has unflushed appends */
	bool in_dirty_list;
	struct bpart *dirty_next;
	struct pstate *producers;      /* open-addressing table by pid */
	size_t nproducers, cap_producers;
};

struct btopic {
	char *name;
	int32_t nparts;
	struct bpart *parts;
	struct btopic *hnext;          /* hash chain */
};

struct flusher {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	ev_async done;
	bool started;
	bool busy;                     /* loop: a round is in flight */
	bool work;                     /* thread: a round to run */
	bool finished;                 /* thread: the round is done */
	bool stop;
	mq_flush_req *reqs;
	struct bpart **parts;
	int n, cap;
	int64_t sync_us;               /* thread: duration of the last round */
	/* loop: shaping the next round (see flusher.c) */
	int crowd;                     /* sync producers in circulation: the
					* last round's answers plus those
					* that waited through it */
	int64_t round_end_us;          /* when it was answered */
	ev_timer gather;               /* waiting for a round to fill */
	int spin_us;                   /* --flush-spin in sync mode, else 0 */
	ev_idle spin;                  /* loop: polling instead of sleeping */
	int64_t spin_until_us;
};

struct broker {
	struct ev_loop *loop;
	struct broker_opts o;
	mq_store *store;
	int lock_fd;
	int64_t start_mono;
	ev_io listeners[MAX_LISTEN];
	int nlisteners;
	bool listeners_paused;
	ev_timer accept_retry;
	ev_signal sigterm, sigint;
	ev_prepare prepare;
	ev_timer flush_timer;          /* async flush interval */
	ev_timer timeout_timer;        /* sync flush timeouts */
	ev_timer retention_timer;
	ev_timer session_timer;        /* group sessions */
	ev_timer shutdown_timer;
	bool stopping;
	int64_t stop_deadline;
	struct conn *conns;
	int nconns;
	uint64_t conn_serial;
	uint64_t bytes_in, bytes_out;
	/* topics */
	struct btopic **tbuckets;
	size_t ntbuckets, ntopics;
	uint32_t rr;                   /* round-robin partition choice */
	/* group commit */
	struct flusher fl;
	struct bpart *dirty;           /* partitions with unflushed data */
	struct pending *pend_head, *pend_tail;
	int npending;
	/* producer ids */
	int64_t next_pid, pid_limit;
	/* groups */
	struct group *groups;
	mq_wbuf scratch;
};

/* log.c */
/* server.c */
int server_listen(struct broker *b, mq_err *err);
void conn_ref(struct conn *c);
void conn_unref(struct conn *c);
/* Start a reply frame in c's output; returns the buffer to append the
 * body to. Every reply begins with code and message. */
mq_wbuf *reply_begin(struct conn *c, uint32_t id, uint16_t type, int code,
		     const char *msg, size_t *frame_start);
void reply_end(struct conn *c, size_t frame_start);
/* Reply with just an error (or an empty ok). */
void reply_error(struct conn *c, uint32_t id, uint16_t type,
		 const mq_err *err);
void reply_ok(struct conn *c, uint32_t id, uint16_t type);
/* End the frame whose body ends with file_len bytes from fd at pos. */
void reply_end_file(struct conn *c, size_t frame_start, int fd, off_t pos,
		    size_t file_len);
/* A deferred reply was answered or dropped. */
void conn_deferred_done(struct conn *c);
void conn_flush_output(struct conn *c);
void server_begin_shutdown(struct broker *b);
void server_close_all(struct broker *b);

/* topics.c */
int topics_load(struct broker *b, mq_err *err);
void topics_free(struct broker *b);
struct btopic *topic_find(struct broker *b, const char *name);
/* Create (on disk and in memory). */
struct btopic *topic_create(struct broker *b, const char *name, int n,
			    mq_err *err);
/* What fetch serves: flushed offset with sync flush, end otherwise. */
int64_t bpart_visible(struct broker *b, struct bpart *bp);
/* New data became visible: answer the long polls it satisfies. */
void bpart_wake(struct broker *b, struct bpart *bp);
void waiter_cancel_all(struct broker *b);
void waiter_drop_conn(struct broker *b, struct conn *c);
/* Answer a fetch for (bp, offset) now, into c's output. */
void fetch_answer(struct broker *b, struct conn *c, uint32_t id,
		  struct bpart *bp, int64_t offset, uint32_t max_bytes);
/* Park a fetch at the log end until data arrives or max_wait passes. */
void fetch_park(struct broker *b, struct conn *c, uint32_t id,
		struct bpart *bp, int64_t offset, uint32_t max_bytes,
		uint32_t max_wait_ms);
void retention_run(struct broker *b);
uint64_t topics_data_bytes(struct broker *b);

/* handlers.c */
void handle_frame(struct conn *c, const mq_frame *f);

/* flusher.c */
int flusher_start(struct broker *b, mq_err *err);
void flusher_stop(struct broker *b);
void flusher_mark_dirty(struct broker *b, struct bpart *bp);
/* Start a flush round if one is due and none is in flight. */
void flusher_kick(struct broker *b);
/* Sync mode: kick now, or after a short wait while a round fills up. */
void flusher_maybe_kick(struct broker *b);
bool flusher_idle(struct broker *b);
/* Queue a sync produce reply until offset last is flushed. */
void pending_add(struct broker *b, struct conn *c, uint32_t id,
		 struct bpart *bp, int64_t base, int64_t last, bool dup,
		 bool noreply);
void pending_drop_conn(struct broker *b, struct conn *c);

/* producers.c */
int producers_init(struct broker *b, mq_err *err);
int producer_new_id(struct broker *b, int64_t *pid, mq_err *err);
/* Rebuild the state of bp from the tail of its log. */
void producers_rebuild(struct broker *b, struct bpart *bp);
/* Judge an incoming batch (pseq.h); for MQ_SEQ_DUPLICATE fills the
 * original base/last offsets. */
enum mq_seq_verdict producer_check(struct bpart *bp, const mq_batch_hdr *h,
				   int64_t *base, int64_t *last);
void producer_record(struct bpart *bp, const mq_batch_hdr *h,
		     int64_t base_offset);
void producers_free(struct bpart *bp);

/* groups.c */
struct group;
void groups_init(struct broker *b);
void groups_free(struct broker *b);
void groups_conn_closed(struct broker *b, struct conn *c);
void groups_shutdown(struct broker *b);
void handle_join(struct conn *c, uint32_t id, mq_rbuf *r);
void handle_heartbeat(struct conn *c, uint32_t id, mq_rbuf *r);
void handle_leave(struct conn *c, uint32_t id, mq_rbuf *r);
void handle_commit(struct conn *c, uint32_t id, mq_rbuf *r);
void handle_describe_groups(struct conn *c, uint32_t id, mq_rbuf *r);

#endif
