/* ep.c - endpoint dispatch and the event queue (see ep.h). */
#include "ep_impl.h"

#include <stdlib.h>
#include <string.h>

int mq_ep_open(const mq_ep_opts *o, mq_ep **out, mq_err *err)
{
	mq_ep *ep;
	int rc;

	if (!!o->broker == !!o->dir)
		return mq_errf(err, MQ_E_INVAL,
			       "give either a broker address or a data directory");
	ep = calloc(1, sizeof *ep);
	if (!ep)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	rc = o->broker ? mq_ep_broker_open(o, ep, err)
		       : mq_ep_local_open(o, ep, err);
	if (rc < 0) {
		free(ep);
		return -1;
	}
	*out = ep;
	return 0;
}

static void free_current(mq_ep *ep)
{
	if (ep->current) {
		free(ep->current->data);
		free(ep->current);
		ep->current = NULL;
	}
}

void mq_ep_close(mq_ep *ep)
{
	if (!ep)
		return;
	ep->ops->close(ep);
	free_current(ep);
	while (ep->qhead) {
		struct mq_ep_qevent *q = ep->qhead;
		ep->qhead = q->next;
		free(q->data);
		free(q);
	}
	free(ep);
}

bool mq_ep_is_local(const mq_ep *ep) { return ep->local; }
const char *mq_ep_name(const mq_ep *ep) { return ep->name; }
uint32_t mq_ep_max_message(const mq_ep *ep) { return ep->max_message; }
uint32_t mq_ep_max_batch(const mq_ep *ep) { return ep->max_batch; }
size_t mq_ep_outstanding(const mq_ep *ep) { return ep->outstanding; }

int mq_ep_queue_push(mq_ep *ep, const mq_ep_event *ev, const uint8_t *data,
		     size_t len)
{
	uint8_t *copy = NULL;

	if (len) {
		copy = malloc(len);
		if (!copy)
			return -1;
		memcpy(copy, data, len);
	}
	return mq_ep_queue_push_owned(ep, ev, copy, len);
}

int mq_ep_queue_push_owned(mq_ep *ep, const mq_ep_event *ev, uint8_t *data,
			   size_t len)
{
	struct mq_ep_qevent *q = calloc(1, sizeof *q);

	if (!q) {
		free(data);
		return -1;
	}
	q->ev = *ev;
	q->data = data;
	q->ev.fetch.batches = q->data;
	q->ev.fetch.len = len;
	if (ep->qtail)
		ep->qtail->next = q;
	else
		ep->qhead = q;
	ep->qtail = q;
	return 0;
}

int mq_ep_wait(mq_ep *ep, int timeout_ms, mq_ep_event *ev, mq_err *err)
{
	free_current(ep);
	if (!ep->qhead) {
		int rc;
		if (ep->outstanding == 0)
			return 0;
		rc = ep->ops->pump(ep, timeout_ms, err);
		if (rc <= 0)
			return rc;
	}
	ep->current = ep->qhead;
	ep->qhead = ep->qhead->next;
	if (!ep->qhead)
		ep->qtail = NULL;
	*ev = ep->current->ev;
	if (ep->outstanding)
		ep->outstanding--;
	return 1;
}

#define CALL(fn, ...) do { free_current(ep); return ep->ops->fn(ep, __VA_ARGS__); } while (0)

int mq_ep_status(mq_ep *ep, mq_status_info *st, mq_err *err)
{ CALL(status, st, err); }
int mq_ep_metadata(mq_ep *ep, const char *const *topics, size_t n,
		   mq_topic_meta **out, size_t *nout, mq_err *err)
{ CALL(metadata, topics, n, out, nout, err); }
int mq_ep_create_topic(mq_ep *ep, const char *topic, int32_t n, mq_err *err)
{ CALL(create_topic, topic, n, err); }
int mq_ep_list_offset(mq_ep *ep, const char *topic, int32_t partition,
		      int64_t ts, int64_t *offset, mq_err *err)
{ CALL(list_offset, topic, partition, ts, offset, err); }
int mq_ep_delete_records(mq_ep *ep, const char *topic, int32_t partition,
			 int64_t offset, int64_t *new_start, mq_err *err)
{ CALL(delete_records, topic, partition, offset, new_start, err); }
int mq_ep_init_producer(mq_ep *ep, int64_t *pid, mq_err *err)
{ CALL(init_producer, pid, err); }
int mq_ep_drain(mq_ep *ep, mq_err *err)
{ CALL(drain, err); }
int mq_ep_join(mq_ep *ep, const char *group, const char *member_id,
	       uint32_t session_ms, const char *const *topics, size_t n,
	       mq_assignment *out, mq_err *err)
{ CALL(join, group, member_id, session_ms, topics, n, out, err); }
int mq_ep_heartbeat(mq_ep *ep, const char *group, const char *member_id,
		    int32_t generation, mq_err *err)
{ CALL(heartbeat, group, member_id, generation, err); }
int mq_ep_leave(mq_ep *ep, const char *group, const char *member_id,
		mq_err *err)
{ CALL(leave, group, member_id, err); }
int mq_ep_commit(mq_ep *ep, const char *group, const char *member_id,
		 int32_t generation, uint16_t flags, const mq_commit_entry *e,
		 size_t n, mq_err *err)
{ CALL(commit, group, member_id, generation, flags, e, n, err); }
int mq_ep_describe_groups(mq_ep *ep, const char *group, mq_group_info **out,
			  size_t *n, mq_err *err)
{ CALL(describe_groups, group, out, n, err); }

int mq_ep_produce_send(mq_ep *ep, const char *topic, int32_t partition,
		       const void *key, int32_t klen, uint8_t acks,
		       const void *batch, size_t len, uint64_t token,
		       mq_err *err)
{
	free_current(ep);
	if (ep->ops->produce_send(ep, topic, partition, key, klen, acks, batch,
				  len, token, err) < 0)
		return -1;
	if (acks)
		ep->outstanding++;
	return 0;
}

int mq_ep_fetch_send(mq_ep *ep, const char *topic, int32_t partition,
		     int64_t offset, uint32_t max_bytes, uint32_t max_wait,
		     uint64_t token, mq_err *err)
{
	free_current(ep);
	if (ep->ops->fetch_send(ep, topic, partition, offset, max_bytes,
				max_wait, token, err) < 0)
		return -1;
	ep->outstanding++;
	return 0;
}
