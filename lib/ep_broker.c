/*
 * ep_broker.c - the endpoint over a broker connection (ep.h). Produce and
 * fetch requests are pipelined on one connection; their replies become
 * events, matched to the caller's tokens by request id. Call-style
 * requests share the connection: replies to pipelined requests that
 * arrive while a call waits are queued as events (mq_client_on_stray).
 */
#include "ep_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pend {
	uint32_t id;       /* 0 = empty slot */
	uint16_t type;
	uint64_t token;
};

struct bimpl {
	mq_client *c;
	mq_wbuf w;
	char client_name[128];
	struct pend *tab;  /* open addressing on id, size a power of two */
	size_t cap, n;
};

/* ---- id -> token table ---- */

static int tab_put(struct bimpl *b, uint32_t id, uint16_t type,
		   uint64_t token);

static int tab_grow(struct bimpl *b)
{
	size_t cap = b->cap ? b->cap * 2 : 64, oldcap = b->cap;
	struct pend *old = b->tab;

	b->tab = calloc(cap, sizeof *b->tab);
	if (!b->tab) {
		b->tab = old;
		return -1;
	}
	b->cap = cap;
	b->n = 0;
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].id)
			tab_put(b, old[i].id, old[i].type, old[i].token);
	free(old);
	return 0;
}

static int tab_put(struct bimpl *b, uint32_t id, uint16_t type,
		   uint64_t token)
{
	size_t i;

	if ((b->n + 1) * 2 > b->cap && tab_grow(b) < 0)
		return -1;
	for (i = id & (b->cap - 1); b->tab[i].id; i = (i + 1) & (b->cap - 1))
		;
	b->tab[i] = (struct pend){ id, type, token };
	b->n++;
	return 0;
}

/* Remove id; returns 1 with *p filled if it was there. */
static int tab_take(struct bimpl *b, uint32_t id, struct pend *p)
{
	size_t i, j;

	if (!b->cap)
		return 0;
	for (i = id & (b->cap - 1); b->tab[i].id != id; i = (i + 1) & (b->cap - 1))
		if (!b->tab[i].id)
			return 0;
	*p = b->tab[i];
	b->tab[i].id = 0;
	b->n--;
	/* Shift later members of the probe run back over the hole. */
	for (j = (i + 1) & (b->cap - 1); b->tab[j].id; j = (j + 1) & (b->cap - 1)) {
		size_t home = b->tab[j].id & (b->cap - 1);
		bool between = i <= j ? (home > i && home <= j)
				      : (home > i || home <= j);
		if (!between) {
			b->tab[i] = b->tab[j];
			b->tab[j].id = 0;
			i = j;
		}
	}
	return 1;
}

/* ---- replies to pipelined requests become events ---- */

static int queue_reply(mq_ep *ep, mq_reply *r)
{
	struct bimpl *b = ep->impl;
	struct pend p;
	mq_ep_event ev;
	mq_err derr;

	if (!tab_take(b, r->id, &p))
		return 0;	/* not ours (a timed-out call's late reply) */
	memset(&ev, 0, sizeof ev);
	ev.token = p.token;
	ev.code = r->code;
	snprintf(ev.msg, sizeof ev.msg, "%s", r->msg);
	if (p.type == MQ_T_PRODUCE) {
		ev.type = MQ_EV_PRODUCE;
		if (r->code == 0 && mq_produce_result_decode(r, &ev.produce, &derr) < 0) {
			ev.code = derr.code;
			snprintf(ev.msg, sizeof ev.msg, "%s", derr.msg);
		}
		return mq_ep_queue_push(ep, &ev, NULL, 0);
	}
	ev.type = MQ_EV_FETCH;
	if (mq_fetch_result_decode(r, &ev.fetch, &derr) < 0 && ev.code == 0) {
		ev.code = derr.code;
		snprintf(ev.msg, sizeof ev.msg, "%s", derr.msg);
	}
	return mq_ep_queue_push(ep, &ev, ev.code ? NULL : ev.fetch.batches,
				ev.code ? 0 : ev.fetch.len);
}

static void on_stray(void *arg, mq_reply *r)
{
	queue_reply(arg, r);
}

static int b_pump(mq_ep *ep, int timeout_ms, mq_err *err)
{
	struct bimpl *b = ep->impl;
	mq_reply r;

	for (;;) {
		int rc = mq_client_recv(b->c, timeout_ms, &r, err);
		if (rc <= 0)
			return rc;
		if (queue_reply(ep, &r) < 0)
			return mq_errf(err, MQ_E_NOMEM, "out of memory");
		if (ep->qhead)
			return 1;
	}
}

/* ---- requests ---- */

static int send_frame(mq_ep *ep, uint32_t id, uint16_t type, uint64_t token,
		      bool want_reply, mq_err *err)
{
	struct bimpl *b = ep->impl;

	if (b->w.oom)
		return mq_errf(err, MQ_E_INVAL, "request could not be encoded");
	if (b->w.len - 4 > mq_client_max_frame(b->c))
		return mq_errf(err, MQ_E_TOO_LARGE,
			       "request of %zu bytes exceeds the broker's limit of %u",
			       b->w.len - 4, mq_client_max_frame(b->c));
	if (want_reply && tab_put(b, id, type, token) < 0)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	if (mq_client_send(b->c, b->w.p, b->w.len, err) < 0) {
		struct pend p;
		if (want_reply)
			tab_take(b, id, &p);
		return -1;
	}
	return 0;
}

static int b_produce_send(mq_ep *ep, const char *topic, int32_t partition,
			  const void *key, int32_t klen, uint8_t acks,
			  const void *batch, size_t len, uint64_t token,
			  mq_err *err)
{
	struct bimpl *b = ep->impl;
	uint32_t id = mq_client_next_id(b->c);

	mq_w_reset(&b->w);
	mq_req_produce(&b->w, id, topic, partition, key, key ? klen : -1, acks,
		       batch, len);
	return send_frame(ep, id, MQ_T_PRODUCE, token, acks != 0, err);
}

static int b_fetch_send(mq_ep *ep, const char *topic, int32_t partition,
			int64_t offset, uint32_t max_bytes, uint32_t max_wait,
			uint64_t token, mq_err *err)
{
	struct bimpl *b = ep->impl;
	uint32_t id = mq_client_next_id(b->c);

	mq_w_reset(&b->w);
	mq_req_fetch(&b->w, id, topic, partition, offset, max_bytes, max_wait);
	return send_frame(ep, id, MQ_T_FETCH, token, true, err);
}

static int b_drain(mq_ep *ep, mq_err *err)
{
	(void)ep;
	(void)err;
	return 0;	/* sends are complete when they return */
}

static int b_status(mq_ep *ep, mq_status_info *st, mq_err *err)
{
	return mq_client_status(((struct bimpl *)ep->impl)->c, st, err);
}

static int b_metadata(mq_ep *ep, const char *const *topics, size_t n,
		      mq_topic_meta **out, size_t *nout, mq_err *err)
{
	return mq_client_metadata(((struct bimpl *)ep->impl)->c, topics, n, out,
				  nout, err);
}

static int b_create_topic(mq_ep *ep, const char *topic, int32_t n,
			  mq_err *err)
{
	return mq_client_create_topic(((struct bimpl *)ep->impl)->c, topic, n,
				      err);
}

static int b_list_offset(mq_ep *ep, const char *topic, int32_t partition,
			 int64_t ts, int64_t *offset, mq_err *err)
{
	return mq_client_list_offset(((struct bimpl *)ep->impl)->c, topic,
				     partition, ts, offset, err);
}

static int b_delete_records(mq_ep *ep, const char *topic, int32_t partition,
			    int64_t offset, int64_t *new_start, mq_err *err)
{
	return mq_client_delete_records(((struct bimpl *)ep->impl)->c, topic,
					partition, offset, new_start, err);
}

static int b_init_producer(mq_ep *ep, int64_t *pid, mq_err *err)
{
	int16_t epoch;
	return mq_client_init_producer(((struct bimpl *)ep->impl)->c, pid,
				       &epoch, err);
}

static int b_join(mq_ep *ep, const char *group, const char *member_id,
		  uint32_t session_ms, const char *const *topics, size_t n,
		  mq_assignment *out, mq_err *err)
{
	struct bimpl *b = ep->impl;
	return mq_client_join(b->c, group, member_id, b->client_name,
			      session_ms, topics, n, out, err);
}

static int b_heartbeat(mq_ep *ep, const char *group, const char *member_id,
		       int32_t generation, mq_err *err)
{
	return mq_client_heartbeat(((struct bimpl *)ep->impl)->c, group,
				   member_id, generation, err);
}

static int b_leave(mq_ep *ep, const char *group, const char *member_id,
		   mq_err *err)
{
	return mq_client_leave(((struct bimpl *)ep->impl)->c, group, member_id,
			       err);
}

static int b_commit(mq_ep *ep, const char *group, const char *member_id,
		    int32_t generation, uint16_t flags,
		    const mq_commit_entry *e, size_t n, mq_err *err)
{
	return mq_client_commit(((struct bimpl *)ep->impl)->c, group, member_id,
				generation, flags, e, n, err);
}

static int b_describe(mq_ep *ep, const char *group, mq_group_info **out,
		      size_t *n, mq_err *err)
{
	return mq_client_describe_groups(((struct bimpl *)ep->impl)->c, group,
					 out, n, err);
}

static void b_close(mq_ep *ep)
{
	struct bimpl *b = ep->impl;

	mq_client_close(b->c);
	mq_w_free(&b->w);
	free(b->tab);
	free(b);
}

static const struct mq_ep_ops broker_ops = {
	.close = b_close,
	.status = b_status,
	.metadata = b_metadata,
	.create_topic = b_create_topic,
	.list_offset = b_list_offset,
	.delete_records = b_delete_records,
	.init_producer = b_init_producer,
	.produce_send = b_produce_send,
	.fetch_send = b_fetch_send,
	.pump = b_pump,
	.drain = b_drain,
	.join = b_join,
	.heartbeat = b_heartbeat,
	.leave = b_leave,
	.commit = b_commit,
	.describe_groups = b_describe,
};

int mq_ep_broker_open(const mq_ep_opts *o, mq_ep *ep, mq_err *err)
{
	mq_client_opts co = { .connect_timeout_ms = o->timeout_ms,
			      .request_timeout_ms = o->timeout_ms,
			      .interrupted = o->interrupted,
			      .interrupt_at = o->interrupt_at };
	struct bimpl *b = calloc(1, sizeof *b);

	if (!b)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	if (mq_client_open(o->broker, &co, &b->c, err) < 0) {
		free(b);
		return -1;
	}
	mq_w_init(&b->w);
	snprintf(b->client_name, sizeof b->client_name, "%s",
		 o->client_name ? o->client_name : "mq");
	mq_client_on_stray(b->c, on_stray, ep);
	ep->ops = &broker_ops;
	ep->impl = b;
	ep->local = false;
	snprintf(ep->name, sizeof ep->name, "%s", o->broker);
	ep->max_message = mq_client_max_message(b->c);
	ep->max_batch = mq_client_max_frame(b->c) > 4096
			? mq_client_max_frame(b->c) - 4096 : 1024;
	return 0;
}
