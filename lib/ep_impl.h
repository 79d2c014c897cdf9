/*
 * ep_impl.h - what an endpoint implementation provides (ep.h). ep.c holds
 * the dispatch and the event queue both implementations share; ep_broker.c
 * and ep_local.c each fill a struct mq_ep_ops.
 */
#ifndef MQ_EP_IMPL_H
#define MQ_EP_IMPL_H

#include "ep.h"

struct mq_ep_ops {
	void (*close)(mq_ep *ep);
	int (*status)(mq_ep *ep, mq_status_info *st, mq_err *err);
	int (*metadata)(mq_ep *ep, const char *const *topics, size_t n,
			mq_topic_meta **out, size_t *nout, mq_err *err);
	int (*create_topic)(mq_ep *ep, const char *topic, int32_t n,
			    mq_err *err);
	int (*list_offset)(mq_ep *ep, const char *topic, int32_t partition,
			   int64_t ts, int64_t *offset, mq_err *err);
	int (*delete_records)(mq_ep *ep, const char *topic, int32_t partition,
			      int64_t offset, int64_t *new_start, mq_err *err);
	int (*init_producer)(mq_ep *ep, int64_t *pid, mq_err *err);
	int (*produce_send)(mq_ep *ep, const char *topic, int32_t partition,
			    const void *key, int32_t klen, uint8_t acks,
			    const void *batch, size_t len, uint64_t token,
			    mq_err *err);
	int (*fetch_send)(mq_ep *ep, const char *topic, int32_t partition,
			  int64_t offset, uint32_t max_bytes, uint32_t max_wait,
			  uint64_t token, mq_err *err);
	/* Produce the next event into the shared queue (mq_ep_queue_*):
	 * 1 if one was queued, 0 on timeout, -1 on failure. */
	int (*pump)(mq_ep *ep, int timeout_ms, mq_err *err);
	int (*drain)(mq_ep *ep, mq_err *err);
	int (*join)(mq_ep *ep, const char *group, const char *member_id,
		    uint32_t session_ms, const char *const *topics, size_t n,
		    mq_assignment *out, mq_err *err);
	int (*heartbeat)(mq_ep *ep, const char *group, const char *member_id,
			 int32_t generation, mq_err *err);
	int (*leave)(mq_ep *ep, const char *group, const char *member_id,
		     mq_err *err);
	int (*commit)(mq_ep *ep, const char *group, const char *member_id,
		      int32_t generation, uint16_t flags,
		      const mq_commit_entry *e, size_t n, mq_err *err);
	int (*describe_groups)(mq_ep *ep, const char *group,
			       mq_group_info **out, size_t *n, mq_err *err);
};

/* A queued event owns a copy of its fetched batches. */
struct mq_ep_qevent {
	struct mq_ep_qevent *next;
	mq_ep_event ev;
	uint8_t *data;
};

struct mq_ep {
	const struct mq_ep_ops *ops;
	void *impl;
	char name[1100];
	bool local;
	uint32_t max_message, max_batch;
	size_t outstanding;               /* requests awaiting an event */
	struct mq_ep_qevent *qhead, *qtail;
	struct mq_ep_qevent *current;     /* delivered, kept until next call */
};

/* Queue an event (copies fetch data of len bytes). 0 or -1 (no memory). */
int mq_ep_queue_push(mq_ep *ep, const mq_ep_event *ev, const uint8_t *data,
		     size_t len);
/* The same, taking over data (malloc'd, or NULL): freed with the event,
 * or at once on failure. */
int mq_ep_queue_push_owned(mq_ep *ep, const mq_ep_event *ev, uint8_t *data,
			   size_t len);

int mq_ep_broker_open(const mq_ep_opts *o, mq_ep *ep, mq_err *err);
int mq_ep_local_open(const mq_ep_opts *o, mq_ep *ep, mq_err *err);

#endif
