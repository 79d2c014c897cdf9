/*
 * ep.h - an endpoint: where the programs send and read messages. Either a
 * broker (ep_broker.c, over lib/client.h) or a data directory used
 * directly with no daemon (ep_local.c, over lib/store.h). Programs call
 * only these functions, so they have no per-mode branches beyond choosing
 * the endpoint.
 *
 * Requests are asynchronous where a program needs several at once:
 * mq_ep_produce_send and mq_ep_fetch_send queue a request and return;
 * mq_ep_wait delivers their outcomes as events, in any order, each with
 * the caller's token. The call-style functions (metadata, groups, ...)
 * may be used while such requests are outstanding: events that arrive
 * meanwhile are kept for mq_ep_wait.
 *
 * Errors: -1 with err filled. err->code MQ_E_CONNECT / MQ_E_TIMEOUT mean
 * the endpoint is unusable (broker gone); other codes are the broker's (or
 * the directory's) answer to that one request.
 */
#ifndef MQ_EP_H
#define MQ_EP_H

#include "mq.h"
#include "client.h"

typedef struct mq_ep mq_ep;

typedef struct mq_ep_opts {
	const char *broker;       /* "host:port" / "unix:/path", or NULL */
	const char *dir;          /* data directory, or NULL */
	int timeout_ms;           /* connect + request timeout; 0 = 30000 */
	const char *client_name;  /* shown in group listings */
	/* Local only: open the directory read-only (no lock ever taken;
	 * a broker may be running on it). */
	bool read_only;
	/* Local only: fdatasync after each append batch before reporting
	 * it (the broker's sync flush), or leave it to the page cache. */
	bool local_sync;
	/* Local only: partitions for topics created by a produce. */
	int local_partitions;
	/* Broker only: see mq_client_opts. */
	const volatile sig_atomic_t *interrupted;
	int interrupt_at;
} mq_ep_opts;

/* Exactly one of opts->broker and opts->dir must be set. */
int mq_ep_open(const mq_ep_opts *opts, mq_ep **out, mq_err *err);
void mq_ep_close(mq_ep *ep);
bool mq_ep_is_local(const mq_ep *ep);
/* "127.0.0.1:7420" or "dir:/path", for messages. */
const char *mq_ep_name(const mq_ep *ep);
/* Largest record and request the endpoint accepts. */
uint32_t mq_ep_max_message(const mq_ep *ep);
uint32_t mq_ep_max_batch(const mq_ep *ep);

/* ---- metadata and administration (call style) ---- */
int mq_ep_status(mq_ep *ep, mq_status_info *st, mq_err *err);
int mq_ep_metadata(mq_ep *ep, const char *const *topics, size_t n,
		   mq_topic_meta **out, size_t *nout, mq_err *err);
int mq_ep_create_topic(mq_ep *ep, const char *topic, int32_t partitions,
		       mq_err *err);
/* timestamp -1 = latest (visible end), -2 = earliest. */
int mq_ep_list_offset(mq_ep *ep, const char *topic, int32_t partition,
		      int64_t timestamp, int64_t *offset, mq_err *err);
int mq_ep_delete_records(mq_ep *ep, const char *topic, int32_t partition,
			 int64_t offset, int64_t *new_start, mq_err *err);

/* ---- producing ---- */
int mq_ep_init_producer(mq_ep *ep, int64_t *producer_id, mq_err *err);
/*
 * Queue one batch for (topic, partition); partition -1 lets the endpoint
 * choose (by the hash of route_key if given, else round robin). acks 0:
 * oneway, no event will come for it. The batch is copied or written
 * before this returns, so the caller may reuse its buffer.
 */
int mq_ep_produce_send(mq_ep *ep, const char *topic, int32_t partition,
		       const void *route_key, int32_t route_key_len,
		       uint8_t acks, const void *batch, size_t len,
		       uint64_t token, mq_err *err);

/* ---- fetching ---- */
/* Queue a fetch; its event comes when data is there or max_wait_ms
 * passed (then with no batches). */
int mq_ep_fetch_send(mq_ep *ep, const char *topic, int32_t partition,
		     int64_t offset, uint32_t max_bytes, uint32_t max_wait_ms,
		     uint64_t token, mq_err *err);

/* ---- events ---- */
enum mq_ep_event_type { MQ_EV_PRODUCE = 1, MQ_EV_FETCH = 2 };
typedef struct mq_ep_event {
	int type;
	uint64_t token;
	int code;                 /* 0 or the error for this request */
	char msg[256];
	mq_produce_result produce;   /* MQ_EV_PRODUCE, code == 0 */
	mq_fetch_result fetch;       /* MQ_EV_FETCH; positions also on
					MQ_E_OFFSET_RANGE; batches valid
					until the next mq_ep_* call */
} mq_ep_event;

/* Requests sent and not yet delivered as events (oneway excluded). */
size_t mq_ep_outstanding(const mq_ep *ep);
/*
 * Wait up to timeout_ms (-1 = forever) for the next event. Returns 1 with
 * ev filled, 0 on timeout (or when nothing is outstanding), -1 if the
 * endpoint failed (every outstanding request is then lost: err says why).
 */
int mq_ep_wait(mq_ep *ep, int timeout_ms, mq_ep_event *ev, mq_err *err);
/* Make sure oneway sends left this process (written to the socket or the
 * log). */
int mq_ep_drain(mq_ep *ep, mq_err *err);

/* ---- consumer groups (call style) ---- */
int mq_ep_join(mq_ep *ep, const char *group, const char *member_id,
	       uint32_t session_timeout_ms, const char *const *topics,
	       size_t ntopics, mq_assignment *out, mq_err *err);
int mq_ep_heartbeat(mq_ep *ep, const char *group, const char *member_id,
		    int32_t generation, mq_err *err);
int mq_ep_leave(mq_ep *ep, const char *group, const char *member_id,
		mq_err *err);
int mq_ep_commit(mq_ep *ep, const char *group, const char *member_id,
		 int32_t generation, uint16_t flags,
		 const mq_commit_entry *e, size_t n, mq_err *err);
int mq_ep_describe_groups(mq_ep *ep, const char *group,
			  mq_group_info **out, size_t *n, mq_err *err);

#endif
