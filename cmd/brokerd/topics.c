/*
 * topics.c - the broker's view of topics and partitions: a hash table of
 * topics, each with its partitions' broker-side state (long-poll waiters,
 * pending sync produces, producer sequences), fetch answers and retention.
 */
#include "broker.h"
#include "name.h"
#include "offsets.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONTAINER(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

static size_t hash_name(const char *s)
{
	size_t h = 5381;
	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h;
}

static int table_grow(struct broker *b)
{
	size_t n = b->ntbuckets ? b->ntbuckets * 2 : 64;
	struct btopic **nb = calloc(n, sizeof *nb);

	if (!nb)
		return -1;
	for (size_t i = 0; i < b->ntbuckets; i++) {
		struct btopic *t = b->tbuckets[i], *next;
		for (; t; t = next) {
			next = t->hnext;
			size_t h = hash_name(t->name) % n;
			t->hnext = nb[h];
			nb[h] = t;
		}
	}
	free(b->tbuckets);
	b->tbuckets = nb;
	b->ntbuckets = n;
	return 0;
}

struct btopic *topic_find(struct broker *b, const char *name)
{
	if (!b->ntbuckets)
		return NULL;
	for (struct btopic *t = b->tbuckets[hash_name(name) % b->ntbuckets];
	     t; t = t->hnext)
		if (strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

/* Open every partition of an existing topic and add it to the table. */
static struct btopic *topic_attach(struct broker *b, const char *name,
				   mq_err *err)
{
	struct btopic *t;
	int n;

	if (mq_store_topic_partitions(b->store, name, &n, err) < 0)
		return NULL;
	if ((b->ntopics + 1) * 2 > b->ntbuckets && table_grow(b) < 0) {
		mq_errf(err, MQ_E_NOMEM, "out of memory");
		return NULL;
	}
	t = calloc(1, sizeof *t);
	if (t) {
		t->name = strdup(name);
		t->parts = calloc((size_t)n, sizeof *t->parts);
	}
	if (!t || !t->name || !t->parts) {
		if (t) {
			free(t->name);
			free(t->parts);
			free(t);
		}
		mq_errf(err, MQ_E_NOMEM, "out of memory");
		return NULL;
	}
	t->nparts = n;
	for (int i = 0; i < n; i++) {
		struct bpart *bp = &t->parts[i];
		const mq_recovery_info *ri;

		bp->t = t;
		bp->id = i;
		if (mq_store_partition(b->store, name, i, &bp->p, err) < 0) {
			free(t->name);
			free(t->parts);
			free(t);
			return NULL;
		}
		ri = mq_part_recovery(bp->p);
		if (ri->bytes_truncated || ri->segments_removed)
			log_warn("recovered %s/%d: cut %llu bytes and %d "
				 "segments after %llu verified batches: %s",
				 name, i, (unsigned long long)ri->bytes_truncated,
				 ri->segments_removed,
				 (unsigned long long)ri->batches_checked,
				 ri->reason);
		if (ri->bytes_zeros)
			log_info("recovered %s/%d: cut %llu preallocated bytes "
				 "(zeros) after the last batch", name, i,
				 (unsigned long long)ri->bytes_zeros);
		if (ri->indexes_rebuilt)
			log_info("rebuilt %d index file(s) of %s/%d",
				 ri->indexes_rebuilt, name, i);
		producers_rebuild(b, bp);
	}
	size_t h = hash_name(name) % b->ntbuckets;
	t->hnext = b->tbuckets[h];
	b->tbuckets[h] = t;
	b->ntopics++;
	return t;
}

int topics_load(struct broker *b, mq_err *err)
{
	char **names;
	size_t n;

	if (mq_store_list_topics(b->store, &names, &n, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!topic_attach(b, names[i], err)) {
			mq_names_free(names, n);
			return -1;
		}
	}
	mq_names_free(names, n);
	log_info("opened %zu topic(s)", n);
	return 0;
}

struct btopic *topic_create(struct broker *b, const char *name, int n,
			    mq_err *err)
{
	if (mq_store_create_topic(b->store, name, n, err) < 0)
		return NULL;
	log_info("created topic %s with %d partition(s)", name, n);
	return topic_attach(b, name, err);
}

void topics_free(struct broker *b)
{
	for (size_t i = 0; i < b->ntbuckets; i++) {
		struct btopic *t = b->tbuckets[i], *next;
		for (; t; t = next) {
			next = t->hnext;
			for (int j = 0; j < t->nparts; j++)
				producers_free(&t->parts[j]);
			free(t->parts);
			free(t->name);
			free(t);
		}
	}
	free(b->tbuckets);
	b->tbuckets = NULL;
	b->ntbuckets = b->ntopics = 0;
}

uint64_t topics_data_bytes(struct broker *b)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < b->ntbuckets; i++)
		for (struct btopic *t = b->tbuckets[i]; t; t = t->hnext)
			for (int j = 0; j < t->nparts; j++)
				sum += mq_part_bytes(t->parts[j].p);
	return sum;
}

int64_t bpart_visible(struct broker *b, struct bpart *bp)
{
	return b->o.flush_sync ? mq_part_flushed(bp->p) : mq_part_end(bp->p);
}

/* ---- fetch and long polling ---- */

void fetch_answer(struct broker *b, struct conn *c, uint32_t id,
		  struct bpart *bp, int64_t offset, uint32_t max_bytes)
{
	int64_t start = mq_part_start(bp->p), end = mq_part_end(bp->p);
	int64_t visible = bpart_visible(b, bp);
	mq_read_range r = { .fd = -1 };
	mq_err err = { 0 };
	size_t fs;
	mq_wbuf *w;

	if (offset >= visible && offset <= end) {
		r.len = 0;	/* nothing to serve yet */
	} else if (mq_part_read(bp->p, offset, max_bytes, visible, &r,
				&err) < 0) {
		w = reply_begin(c, id, MQ_T_FETCH, err.code, err.msg, &fs);
		mq_w_u32(w, (uint32_t)bp->id);
		mq_w_u64(w, (uint64_t)start);
		mq_w_u64(w, (uint64_t)end);
		mq_w_u64(w, (uint64_t)visible);
		reply_end(c, fs);
		return;
	}
	w = reply_begin(c, id, MQ_T_FETCH, 0, NULL, &fs);
	mq_w_u32(w, (uint32_t)bp->id);
	mq_w_u64(w, (uint64_t)start);
	mq_w_u64(w, (uint64_t)end);
	mq_w_u64(w, (uint64_t)visible);
	mq_w_u32(w, (uint32_t)r.len);
	if (r.len)
		reply_end_file(c, fs, r.fd, r.pos, r.len);
	else
		reply_end(c, fs);
}

static void waiter_unlink(struct waiter *wt)
{
	struct bpart *bp = wt->bp;

	if (wt->prev)
		wt->prev->next = wt->next;
	else
		bp->waiters = wt->next;
	if (wt->next)
		wt->next->prev = wt->prev;
}

/* Answer a parked fetch (with data or empty) and forget it. */
static void waiter_finish(struct broker *b, struct waiter *wt)
{
	ev_timer_stop(b->loop, &wt->timer);
	waiter_unlink(wt);
	if (!wt->c->dead)
		fetch_answer(b, wt->c, wt->id, wt->bp, wt->offset,
			     wt->max_bytes);
	conn_deferred_done(wt->c);
	free(wt);
}

static void on_waiter_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct waiter *wt = CONTAINER(w, struct waiter, timer);
	(void)loop;
	(void)revents;
	waiter_finish(wt->c->b, wt);
}

/* Park a fetch at the end of bp until data arrives or max_wait passes. */
void fetch_park(struct broker *b, struct conn *c, uint32_t id,
		struct bpart *bp, int64_t offset, uint32_t max_bytes,
		uint32_t max_wait_ms)
{
	struct waiter *wt = calloc(1, sizeof *wt);

	if (!wt) {
		fetch_answer(b, c, id, bp, offset, max_bytes);
		return;
	}
	if (max_wait_ms > (uint32_t)b->o.max_wait_ms)
		max_wait_ms = (uint32_t)b->o.max_wait_ms;
	wt->c = c;
	wt->bp = bp;
	wt->id = id;
	wt->offset = offset;
	wt->max_bytes = max_bytes;
	wt->next = bp->waiters;
	if (bp->waiters)
		bp->waiters->prev = wt;
	bp->waiters = wt;
	c->deferred++;
	conn_ref(c);
	ev_timer_init(&wt->timer, on_waiter_timeout, max_wait_ms / 1000.0, 0.);
	ev_timer_start(b->loop, &wt->timer);
}

void bpart_wake(struct broker *b, struct bpart *bp)
{
	int64_t visible = bpart_visible(b, bp);
	struct waiter *wt = bp->waiters, *next;

	for (; wt; wt = next) {
		next = wt->next;
		if (wt->offset < visible || wt->offset > mq_part_end(bp->p))
			waiter_finish(b, wt);
	}
}

void waiter_drop_conn(struct broker *b, struct conn *c)
{
	for (size_t i = 0; i < b->ntbuckets; i++)
		for (struct btopic *t = b->tbuckets[i]; t; t = t->hnext)
			for (int j = 0; j < t->nparts; j++) {
				struct waiter *wt = t->parts[j].waiters, *next;
				for (; wt; wt = next) {
					next = wt->next;
					if (wt->c == c)
						waiter_finish(b, wt);
				}
			}
}

/* Shutdown: answer every parked fetch now (with what there is). */
void waiter_cancel_all(struct broker *b)
{
	for (size_t i = 0; i < b->ntbuckets; i++)
		for (struct btopic *t = b->tbuckets[i]; t; t = t->hnext)
			for (int j = 0; j < t->nparts; j++)
				while (t->parts[j].waiters)
					waiter_finish(b, t->parts[j].waiters);
}

/* ---- retention ---- */

void retention_run(struct broker *b)
{
	int64_t now = mq_now_ms();

	if (!b->o.retention_bytes && !b->o.retention_ms)
		return;
	for (size_t i = 0; i < b->ntbuckets; i++)
		for (struct btopic *t = b->tbuckets[i]; t; t = t->hnext)
			for (int j = 0; j < t->nparts; j++) {
				struct bpart *bp = &t->parts[j];
				mq_err err = { 0 };
				int deleted = 0;

				if (mq_part_retain(bp->p, b->o.retention_bytes,
						   b->o.retention_ms, now,
						   &deleted, &err) < 0)
					log_error("retention on %s/%d: %s",
						  t->name, j, err.msg);
				else if (deleted)
					log_info("retention deleted %d segment(s) "
						 "of %s/%d; log start is now %lld",
						 deleted, t->name, j,
						 (long long)mq_part_start(bp->p));
			}
}
