/*
 * handlers.c - one function per request type (mq-protocol(7)). Each
 * decodes its payload with the bounded reader, checks every name and
 * number, and answers (or defers the answer) through server.c.
 */
#include "broker.h"
#include "name.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Copy a name from the request into buf after checking it. */
static int take_topic(mq_rbuf *r, char *buf, size_t size, bool internal_ok,
		      mq_err *err)
{
	const char *s;
	size_t n;

	mq_r_str(r, &s, &n);
	if (r->bad)
		return mq_errf(err, MQ_E_INVAL, "malformed request");
	if (mq_topic_check_n(s, n, internal_ok, err) < 0)
		return -1;
	if (n >= size)
		return mq_errf(err, MQ_E_NAME, "topic name too long");
	memcpy(buf, s, n);
	buf[n] = '\0';
	return 0;
}

static void bad_request(struct conn *c, const mq_frame *f, const char *what)
{
	mq_err err;

	mq_errf(&err, MQ_E_INVAL, "malformed %s request", what);
	if (!(f->flags & MQ_F_NOREPLY))
		reply_error(c, f->id, f->type, &err);
}

static struct bpart *find_part(struct broker *b, const char *topic,
			       int32_t partition, mq_err *err)
{
	struct btopic *t = topic_find(b, topic);

	if (!t) {
		mq_errf(err, MQ_E_NO_TOPIC, "unknown topic %s", topic);
		return NULL;
	}
	if (partition < 0 || partition >= t->nparts) {
		mq_errf(err, MQ_E_NO_PARTITION,
			"topic %s has no partition %d (it has %d)", topic,
			partition, t->nparts);
		return NULL;
	}
	return &t->parts[partition];
}

static void h_status(struct conn *c, const mq_frame *f)
{
	struct broker *b = c->b;
	size_t fs;
	mq_wbuf *w = reply_begin(c, f->id, f->type, 0, NULL, &fs);

	mq_w_str(w, MQ_VERSION);
	mq_w_u16(w, MQ_PROTO_VERSION);
	mq_w_u64(w, (uint64_t)(mq_mono_ms() - b->start_mono));
	mq_w_str(w, b->o.flush_sync ? "sync" : "async");
	mq_w_u32(w, (uint32_t)b->nconns);
	mq_w_u64(w, b->bytes_in);
	mq_w_u64(w, b->bytes_out);
	mq_w_u64(w, topics_data_bytes(b));
	mq_w_u32(w, (uint32_t)b->ntopics);
	mq_w_u32(w, (uint32_t)getpid());
	mq_w_u32(w, b->o.max_frame);
	mq_w_u32(w, b->o.max_message);
	mq_w_str(w, b->o.dir);
	reply_end(c, fs);
}

static void meta_topic(struct broker *b, mq_wbuf *w, struct btopic *t)
{
	mq_w_str(w, t->name);
	mq_w_u16(w, 0);
	mq_w_u32(w, (uint32_t)t->nparts);
	for (int i = 0; i < t->nparts; i++) {
		struct bpart *bp = &t->parts[i];
		int64_t oldest = -1, newest = -1;
		mq_err err;

		if (mq_part_time_range(bp->p, &oldest, &newest, &err) < 0)
			oldest = newest = -1;
		mq_w_u32(w, (uint32_t)i);
		mq_w_u64(w, (uint64_t)mq_part_start(bp->p));
		mq_w_u64(w, (uint64_t)mq_part_end(bp->p));
		mq_w_u64(w, (uint64_t)bpart_visible(b, bp));
		mq_w_u64(w, mq_part_bytes(bp->p));
		mq_w_u64(w, (uint64_t)oldest);
		mq_w_u64(w, (uint64_t)newest);
	}
}

static int cmp_topic(const void *a, const void *b)
{
	const struct btopic *x = *(struct btopic *const *)a;
	const struct btopic *y = *(struct btopic *const *)b;
	return strcmp(x->name, y->name);
}

static void h_metadata(struct conn *c, const mq_frame *f, mq_rbuf *r)
{
	struct broker *b = c->b;
	uint32_t n = mq_r_count(r, 2);
	size_t fs;
	mq_wbuf *w;

	if (r->bad)
		return bad_request(c, f, "metadata");
	if (n == 0) {
		struct btopic **all = calloc(b->ntopics + 1, sizeof *all);
		size_t k = 0;
		if (!all) {
			mq_err err;
			mq_errf(&err, MQ_E_NOMEM, "out of memory");
			return reply_error(c, f->id, f->type, &err);
		}
		for (size_t i = 0; i < b->ntbuckets; i++)
			for (struct btopic *t = b->tbuckets[i]; t; t = t->hnext)
				all[k++] = t;
		qsort(all, k, sizeof *all, cmp_topic);
		w = reply_begin(c, f->id, f->type, 0, NULL, &fs);
		mq_w_u32(w, (uint32_t)k);
		for (size_t i = 0; i < k; i++)
			meta_topic(b, w, all[i]);
		free(all);
		return reply_end(c, fs);
	}
	/* Check the whole request before writing any of the reply. */
	size_t mark = r->pos;
	for (uint32_t i = 0; i < n; i++) {
		const char *s;
		size_t len;
		mq_r_str(r, &s, &len);
	}
	if (r->bad || mq_r_left(r) != 0)
		return bad_request(c, f, "metadata");
	r->pos = mark;
	w = reply_begin(c, f->id, f->type, 0, NULL, &fs);
	mq_w_u32(w, n);
	for (uint32_t i = 0; i < n; i++) {
		char name[MQ_TOPIC_MAX + 1] = "";
		mq_err err = { 0 };
		struct btopic *t = NULL;

		if (take_topic(r, name, sizeof name, true, &err) == 0)
			t = topic_find(b, name);
		if (t) {
			meta_topic(b, w, t);
			continue;
		}
		if (err.code == 0)
			mq_errf(&err, MQ_E_NO_TOPIC, "unknown topic");
		mq_w_str(w, err.code == MQ_E_NO_TOPIC ? name : "");
		mq_w_u16(w, (uint16_t)err.code);
		mq_w_u32(w, 0);
	}
	reply_end(c, fs);
}

static void h_create_topic(struct conn *c, const mq_frame *f, mq_rbuf *r)
{
	char name[MQ_TOPIC_MAX + 1];
	mq_err err = { 0 };
	int32_t n;

	if (take_topic(r, name, sizeof name, false, &err) < 0)
		return reply_error(c, f->id, f->type, &err);
	n = mq_r_i32(r);
	if (r->bad)
		return bad_request(c, f, "create-topic");
	if (n < 1 || n > MQ_MAX_PARTITIONS) {
		mq_errf(&err, MQ_E_INVAL, "partition count %d is outside 1..%d",
			n, MQ_MAX_PARTITIONS);
		return reply_error(c, f->id, f->type, &err);
	}
	if (topic_find(c->b, name)) {
		mq_errf(&err, MQ_E_EXISTS, "topic %s already exists", name);
		return reply_error(c, f->id, f->type, &err);
	}
	if (!topic_create(c->b, name, n, &err))
		return reply_error(c, f->id, f->type, &err);
	reply_ok(c, f->id, f->type);
}

static void h_produce(struct conn *c, const mq_frame *f, mq_rbuf *r)
{
	struct broker *b = c->b;
	char name[MQ_TOPIC_MAX + 1];
	const uint8_t *key, *batch;
	int32_t klen, blen, part;
	bool noreply = f->flags & MQ_F_NOREPLY;
	mq_err err = { 0 };
	struct btopic *t;
	struct bpart *bp;
	mq_batch_hdr h;
	int64_t base, last;
	enum mq_seq_verdict v;
	bool dup = false;
	uint8_t acks;
	size_t fs;

	if (take_topic(r, name, sizeof name, true, &err) < 0)
		goto fail;
	part = mq_r_i32(r);
	mq_r_bytes(r, &key, &klen);
	acks = mq_r_u8(r);
	mq_r_bytes(r, &batch, &blen);
	if (r->bad || mq_r_left(r) != 0 || !batch) {
		mq_errf(&err, MQ_E_INVAL, "malformed produce request");
		goto fail;
	}
	if (acks == 0)
		noreply = true;
	t = topic_find(b, name);
	if (!t) {
		/* A group's dead-letter topic appears on first use. */
		if (mq_topic_is_internal(name))
			t = topic_create(b, name, 1, &err);
		else if (b->o.auto_create)
			t = topic_create(b, name, b->o.default_partitions, &err);
		else
			mq_errf(&err, MQ_E_NO_TOPIC,
				"unknown topic %s (auto-creation is off)", name);
		if (!t)
			goto fail;
	}
	if (part == -1)
		part = key ? mq_partition_for_key(key, (size_t)klen, t->nparts)
			   : (int32_t)(b->rr++ % (uint32_t)t->nparts);
	if (!(bp = find_part(b, name, part, &err)))
		goto fail;
	if (mq_batch_validate_sized(batch, (size_t)blen, b->o.max_message,
				    "--max-message-bytes", &h, &err) < 0)
		goto fail;
	if (h.producer_id == 0 || h.producer_id >= b->pid_limit ||
	    h.producer_id < -1) {
		/* Deduplication is only sound for ids handed out here. */
		mq_errf(&err, MQ_E_PRODUCER, "producer id %lld was never handed "
			"out by this data directory; ask for one first",
			(long long)h.producer_id);
		goto fail;
	}
	if (mq_part_failed(bp->p)) {
		mq_errf(&err, MQ_E_READ_ONLY, "%s/%d no longer accepts writes: %s",
			name, part, mq_part_failed(bp->p)->msg);
		goto fail;
	}
	switch ((v = producer_check(bp, &h, &base, &last))) {
	case MQ_SEQ_DUPLICATE:
		/* Already appended: answer with the original offsets, once
		 * they are as durable as a fresh append would be. */
		log_debug("duplicate batch from producer %lld on %s/%d",
			  (long long)h.producer_id, name, part);
		if (b->o.flush_sync && last >= mq_part_flushed(bp->p)) {
			pending_add(b, c, f->id, bp, base, last, true, noreply);
			return;
		}
		if (noreply)
			return;
		dup = true;
		goto ok;
	case MQ_SEQ_GAP:
	case MQ_SEQ_OLD:
		mq_pseq_refuse(v, &h, name, part, &err);
		goto fail;
	case MQ_SEQ_NEW:
		break;
	}
	if (mq_part_append_checked(bp->p, (uint8_t *)batch, (size_t)blen, &h,
				   &base, &err) < 0) {
		log_error("append to %s/%d failed: %s; the partition no longer "
			  "accepts writes", name, part, err.msg);
		goto fail;
	}
	last = base + h.last_offset_delta;
	producer_record(bp, &h, base);
	flusher_mark_dirty(b, bp);
	if (b->o.flush_sync) {
		pending_add(b, c, f->id, bp, base, last, false, noreply);
		return;
	}
	bpart_wake(b, bp);
	if (noreply)
		return;
ok:
	{
		mq_wbuf *w = reply_begin(c, f->id, f->type, 0, NULL, &fs);
		mq_w_u32(w, (uint32_t)bp->id);
		mq_w_u64(w, (uint64_t)base);
		mq_w_u8(w, dup);
		reply_end(c, fs);
	}
	return;
fail:
	if (noreply)
		log_debug("oneway produce from %s dropped: %s", c->peer, err.msg);
	else
		reply_error(c, f->id, f->type, &err);
}

static void h_fetch(struct conn *c, const mq_frame *f, mq_rbuf *r)
{
	struct broker *b = c->b;
	char name[MQ_TOPIC_MAX + 1];
	mq_err err = { 0 };
	struct bpart *bp;
	int32_t part;
	int64_t offset, visible;
	uint32_t max_bytes, max_wait;

	if (take_topic(r, name, sizeof name, true, &err) < 0)
		return reply_error(c, f->id, f->type, &err);
	part = mq_r_i32(r);
	offset = mq_r_i64(r);
	max_bytes = mq_r_u32(r);
	max_wait = mq_r_u32(r);
	if (r->bad)
		return bad_request(c, f, "fetch");
	if (!(bp = find_part(b, name, part, &err)))
		return reply_error(c, f->id, f->type, &err);
	if (max_bytes > b->o.max_frame - 1024)
		max_bytes = b->o.max_frame - 1024;
	if (max_bytes == 0)
		max_bytes = 1;
	visible = bpart_visible(b, bp);
	if (offset >= visible && offset <= mq_part_end(bp->p) && max_wait &&
	    !b->stopping)
		return fetch_park(b, c, f->id, bp, offset, max_bytes, max_wait);
	fetch_answer(b, c, f->id, bp, offset, max_bytes);
}

static void h_init_producer(struct conn *c, const mq_frame *f)
{
	mq_err err = { 0 };
	int64_t pid;
	size_t fs;
	mq_wbuf *w;

	if (producer_new_id(c->b, &pid, &err) < 0) {
		log_error("cannot reserve producer ids: %s", err.msg);
		return reply_error(c, f->id, f->type, &err);
	}
	w = reply_begin(c, f->id, f->type, 0, NULL, &fs);
	mq_w_u64(w, (uint64_t)pid);
	mq_w_u16(w, 0);
	reply_end(c, fs);
}

static void h_list_offset(struct conn *c, const mq_frame *f, mq_rbuf *r)
{
	char name[MQ_TOPIC_MAX + 1];
	mq_err err = { 0 };
	struct bpart *bp;
	int32_t part;
	int64_t ts, off, visible;
	size_t fs;
	mq_wbuf *w;

	if (take_topic(r, name, sizeof name, true, &err) < 0)
		return reply_error(c, f->id, f->type, &err);
	part = mq_r_i32(r);
	ts = mq_r_i64(r);
	if (r->bad)
		return bad_request(c, f, "list-offset");
	if (!(bp = find_part(c->b, name, part, &err)))
		return reply_error(c, f->id, f->type, &err);
	visible = bpart_visible(c->b, bp);
	if (ts == -1)
		off = visible;
	else if (ts == -2)
		off = mq_part_start(bp->p);
	else if (ts < 0) {
		mq_errf(&err, MQ_E_INVAL, "bad timestamp %lld", (long long)ts);
		return reply_error(c, f->id, f->type, &err);
	} else if (mq_part_offset_for_time(bp->p, ts, &off, &err) < 0)
		return reply_error(c, f->id, f->type, &err);
	if (off > visible)
		off = visible;
	w = reply_begin(c, f->id, f->type, 0, NULL, &fs);
	mq_w_u64(w, (uint64_t)off);
	reply_end(c, fs);
}

static void h_delete_records(struct conn *c, const mq_frame *f, mq_rbuf *r)
{
	char name[MQ_TOPIC_MAX + 1];
	mq_err err = { 0 };
	struct bpart *bp;
	int32_t part;
	int64_t off;
	size_t fs;
	mq_wbuf *w;

	if (take_topic(r, name, sizeof name, true, &err) < 0)
		return reply_error(c, f->id, f->type, &err);
	part = mq_r_i32(r);
	off = mq_r_i64(r);
	if (r->bad)
		return bad_request(c, f, "delete-records");
	if (!(bp = find_part(c->b, name, part, &err)))
		return reply_error(c, f->id, f->type, &err);
	if (off > bpart_visible(c->b, bp) || off < 0) {
		mq_errf(&err, MQ_E_OFFSET_RANGE,
			"offset %lld is outside [0, %lld]", (long long)off,
			(long long)bpart_visible(c->b, bp));
		return reply_error(c, f->id, f->type, &err);
	}
	if (off > mq_part_start(bp->p) &&
	    mq_part_set_start(bp->p, off, &err) < 0)
		return reply_error(c, f->id, f->type, &err);
	log_info("log start of %s/%d moved to %lld", name, part,
		 (long long)mq_part_start(bp->p));
	w = reply_begin(c, f->id, f->type, 0, NULL, &fs);
	mq_w_u64(w, (uint64_t)mq_part_start(bp->p));
	reply_end(c, fs);
}

void handle_frame(struct conn *c, const mq_frame *f)
{
	mq_rbuf r;

	mq_r_init(&r, f->payload, f->payload_len);
	log_debug("%s: %s request %u (%zu bytes)", c->peer,
		  mq_req_name(f->type), f->id, f->payload_len);
	if (c->b->stopping) {
		mq_err err;
		mq_errf(&err, MQ_E_SHUTDOWN, "broker is shutting down");
		if (!(f->flags & MQ_F_NOREPLY))
			reply_error(c, f->id, f->type, &err);
		return;
	}
	switch (f->type) {
	case MQ_T_STATUS: return h_status(c, f);
	case MQ_T_METADATA: return h_metadata(c, f, &r);
	case MQ_T_CREATE_TOPIC: return h_create_topic(c, f, &r);
	case MQ_T_PRODUCE: return h_produce(c, f, &r);
	case MQ_T_FETCH: return h_fetch(c, f, &r);
	case MQ_T_INIT_PRODUCER: return h_init_producer(c, f);
	case MQ_T_LIST_OFFSET: return h_list_offset(c, f, &r);
	case MQ_T_DELETE_RECORDS: return h_delete_records(c, f, &r);
	case MQ_T_JOIN_GROUP: return handle_join(c, f->id, &r);
	case MQ_T_HEARTBEAT: return handle_heartbeat(c, f->id, &r);
	case MQ_T_LEAVE_GROUP: return handle_leave(c, f->id, &r);
	case MQ_T_COMMIT: return handle_commit(c, f->id, &r);
	case MQ_T_DESCRIBE_GROUPS: return handle_describe_groups(c, f->id, &r);
	}
	mq_err err;
	mq_errf(&err, MQ_E_UNSUPPORTED, "unknown request type %u", f->type);
	if (!(f->flags & MQ_F_NOREPLY))
		reply_error(c, f->id, f->type, &err);
}
