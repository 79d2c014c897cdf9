/*
 * ep_local_write.c - writing to a data directory without a broker: turns
 * at the directory lock (and the keeper thread that ends them), produce
 * with the broker's checks and idempotence, topic creation, record
 * deletion, producer ids. See the top of ep_local.c.
 */
#include "ep_local.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io.h"
#include "name.h"
#include "producer_ids.h"
#include "wlock.h"

/* ---- turns (see the top of ep_local.c) ---- */

static void ready_add(struct limpl *l, struct pend *p)
{
	p->next = NULL;
	*l->ready_tail = p;
	l->ready_tail = &p->next;
}

/* fdatasync what the pending produces wrote, then move them to the
 * ready list, each with its outcome. Under mu, during a turn. */
void lo_flush_pending(struct limpl *l)
{
	struct pend *p = l->pending, *next;

	for (; p; p = next) {
		mq_partition *part;
		mq_err e = { 0 };

		next = p->next;
		if (mq_store_partition(l->wr, p->topic, p->ev.produce.partition,
				       &part, &e) < 0 ||
		    mq_part_flush(part, &e) < 0)
			lo_ev_fail(&p->ev, &e);
		ready_add(l, p);
	}
	l->pending = NULL;
	l->pending_tail = &l->pending;
	l->npending = 0;
}

/* End our turn: flush, close the store, let go of the lock. Under mu. */
/* Flush one partition of the turn; a failure means data already
 * reported (async) may not be on disk: say so at the next call. A
 * partition that failed before has reported its failure already. */
static int flush_one(const char *topic, int partition, mq_partition *p,
		     void *arg)
{
	struct limpl *l = arg;
	mq_err e = { 0 };

	(void)topic;
	(void)partition;
	if (!mq_part_failed(p) && mq_part_flush(p, &e) < 0 && !l->late.code)
		l->late = e;
	return 0;
}

void lo_end_turn(struct limpl *l)
{
	if (l->lock_fd < 0)
		return;
	lo_flush_pending(l);
	mq_store_foreach_open(l->wr, flush_one, l);
	/* What closing adds (the recovery point in each state file) only
	 * saves the next opener some checking: its failure loses nothing. */
	mq_store_close(l->wr, NULL);
	l->wr = NULL;
	mq_wlock_release(l->lock_fd);
	l->lock_fd = -1;
}

/* The thread that ends a turn while the program is busy elsewhere. */
static void *keeper(void *arg)
{
	struct limpl *l = arg;

	pthread_mutex_lock(&l->mu);
	while (!l->stopping) {
		struct timespec ts;
		int64_t idle;

		if (l->lock_fd < 0) {
			pthread_cond_wait(&l->cv, &l->mu);
			continue;
		}
		idle = mq_mono_ms() - l->last_write;
		if (idle >= IDLE_MS ||
		    (idle >= TICK_MS && mq_wlock_wanted(l->dir))) {
			lo_end_turn(l);
			continue;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&l->cv, &l->mu, &ts);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

void lo_keeper_stop(struct limpl *l)
{
	pthread_mutex_lock(&l->mu);
	lo_end_turn(l);
	l->stopping = true;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
	if (l->keeper_on)
		pthread_join(l->keeper, NULL);
	l->keeper_on = false;
}

int lo_refuse_read_only(const struct limpl *l, mq_err *err)
{
	return mq_errf(err, MQ_E_READ_ONLY,
		       "data directory %s is open read-only", l->dir);
}

/* Make sure it is our turn to write. Under mu. 0 or -1 + err (the
 * endpoint cannot write: a broker has the directory, or a writer does
 * not let go). */
int lo_begin_write(struct limpl *l, mq_err *err)
{
	mq_store_opts so = { .part.create = true };
	int64_t now = mq_mono_ms();

	if (l->ro)
		return lo_refuse_read_only(l, err);
	if (l->late.code) {
		if (err)
			*err = l->late;
		memset(&l->late, 0, sizeof l->late);
		return -1;
	}
	if (l->lock_fd >= 0 && now - l->turn_start >= TURN_MS &&
	    now - l->last_ask >= TICK_MS) {
		l->last_ask = now;
		if (mq_wlock_wanted(l->dir)) {
			lo_end_turn(l);
			mq_sleep_ms(YIELD_MS);
		}
	}
	if (l->lock_fd >= 0)
		return 0;
	if (!l->keeper_on) {
		/* The keeper must never take the program's signals: a
		 * signal must interrupt the program's own blocking calls. */
		sigset_t all, old;
		int e;

		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		e = pthread_create(&l->keeper, NULL, keeper, l);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (e)
			return mq_errsys(err, MQ_E_NOMEM, e, "pthread_create");
		l->keeper_on = true;
	}
	l->lock_fd = mq_wlock_acquire(l->dir, l->timeout_ms, err);
	if (l->lock_fd < 0)
		return -1;
	if (mq_store_open(l->dir, &so, &l->wr, err) < 0) {
		mq_wlock_release(l->lock_fd);
		l->lock_fd = -1;
		return -1;
	}
	l->turn_start = l->last_write = l->last_ask = mq_mono_ms();
	pthread_cond_signal(&l->cv);
	return 0;
}

void lo_end_write(struct limpl *l)
{
	l->last_write = mq_mono_ms();
}

/* ---- producing ---- */

static struct pseq *seq_find(struct limpl *l, int64_t pid, const char *topic,
			     int32_t partition, bool add)
{
	struct pseq *s;

	for (s = l->seqs; s; s = s->next)
		if (s->pid == pid && s->partition == partition &&
		    strcmp(s->topic, topic) == 0)
			return s;
	if (!add)
		return NULL;
	s = calloc(1, sizeof *s + strlen(topic) + 1);
	if (!s)
		return NULL;
	s->pid = pid;
	s->partition = partition;
	strcpy(s->topic, topic);
	s->next = l->seqs;
	l->seqs = s;
	return s;
}

static void seq_record(struct limpl *l, const char *topic, int32_t partition,
		       const mq_batch_hdr *h, int64_t base)
{
	struct pseq *s;

	if (h->producer_id < 0 || h->base_sequence < 0)
		return;
	s = seq_find(l, h->producer_id, topic, partition, true);
	if (!s)
		return;     /* out of memory: dedup degrades, data is fine */
	mq_pseq_record(&s->seq, h, base);
}

/*
 * Append one batch, as the broker's produce handler does. Returns -1 +
 * err only when the endpoint cannot write at all; the outcome of the
 * request itself goes into ev (code 0 with the offsets, or an error).
 * Under mu.
 */
static int produce(mq_ep *ep, const char *topic, int32_t partition,
		   const void *key, int32_t klen, const void *batch,
		   size_t len, mq_ep_event *ev, bool *dup, mq_err *err)
{
	struct limpl *l = ep->impl;
	mq_partition *p;
	mq_batch_hdr h;
	mq_err e = { 0 };
	int64_t base, last;
	struct pseq *s;
	enum mq_seq_verdict v;
	int n;

	*dup = false;
	if (mq_topic_check(topic, true, &e) < 0)
		goto fail;
	if (lo_begin_write(l, err) < 0)
		return -1;
	if (mq_store_topic_partitions(l->wr, topic, &n, &e) < 0) {
		/* A group's dead-letter topic appears on first use, with one
		 * partition; others get the default. */
		int want = mq_topic_is_internal(topic) ? 1 : l->partitions;
		if (e.code != MQ_E_NO_TOPIC ||
		    mq_store_create_topic(l->wr, topic, want, &e) < 0 ||
		    mq_store_topic_partitions(l->wr, topic, &n, &e) < 0)
			goto fail;
	}
	if (partition == -1)
		partition = key ? mq_partition_for_key(key, (size_t)klen, n)
				: (int32_t)(l->rr++ % (uint32_t)n);
	if (mq_store_partition(l->wr, topic, partition, &p, &e) < 0)
		goto fail;
	if (lo_reserve(l, len, err) < 0)
		return -1;
	memcpy(l->buf, batch, len);
	if (mq_batch_validate_sized(l->buf, len, MQ_DEFAULT_MAX_MESSAGE, NULL, &h,
				    &e) < 0)
		goto fail;
	if (mq_part_failed(p)) {
		mq_errf(&e, MQ_E_READ_ONLY, "%s/%d no longer accepts writes: %s",
			topic, partition, mq_part_failed(p)->msg);
		goto fail;
	}
	s = h.producer_id >= 0 ?
	    seq_find(l, h.producer_id, topic, partition, false) : NULL;
	switch ((v = mq_pseq_check(s ? &s->seq : NULL, &h, mq_part_end(p),
				   &base, &last))) {
	case MQ_SEQ_DUPLICATE:
		*dup = true;
		goto ok;
	case MQ_SEQ_GAP:
	case MQ_SEQ_OLD:
		mq_pseq_refuse(v, &h, topic, partition, &e);
		goto fail;
	case MQ_SEQ_NEW:
		break;
	}
	if (mq_part_append_checked(p, l->buf, len, &h, &base, &e) < 0) {
		/* The partition refuses writes now; the next turn opens it
		 * again and recovers. */
		lo_end_turn(l);
		goto fail;
	}
	seq_record(l, topic, partition, &h, base);
ok:
	lo_end_write(l);
	ev->code = 0;
	ev->produce.partition = partition;
	ev->produce.base_offset = base;
	ev->produce.duplicate = *dup;
	return 0;
fail:
	if (l->lock_fd >= 0)
		lo_end_write(l);
	lo_ev_fail(ev, &e);
	return 0;
}

int lo_produce_send(mq_ep *ep, const char *topic, int32_t partition,
			  const void *key, int32_t klen, uint8_t acks,
			  const void *batch, size_t len, uint64_t token,
			  mq_err *err)
{
	struct limpl *l = ep->impl;
	mq_ep_event ev;
	bool dup;
	int rc = -1;

	if (len > ep->max_batch)
		return mq_errf(err, MQ_E_TOO_LARGE,
			       "request of %zu bytes exceeds the limit of %u",
			       len, ep->max_batch);
	memset(&ev, 0, sizeof ev);
	ev.type = MQ_EV_PRODUCE;
	ev.token = token;
	pthread_mutex_lock(&l->mu);
	if (l->ro) {
		lo_refuse_read_only(l, err);
		goto out;
	}
	if (produce(ep, topic, partition, key, key ? klen : 0, batch, len, &ev,
		    &dup, err) < 0)
		goto out;
	rc = 0;
	if (!acks)
		goto out;	/* oneway: nobody hears of it */
	if (ev.code == 0 && l->sync) {
		/* Reported once on disk (group commit, see the top). */
		struct pend *p = calloc(1, sizeof *p);
		if (!p) {
			rc = mq_errf(err, MQ_E_NOMEM, "out of memory");
			goto out;
		}
		p->ev = ev;
		snprintf(p->topic, sizeof p->topic, "%s", topic);
		*l->pending_tail = p;
		l->pending_tail = &p->next;
		if (++l->npending >= PENDING_MAX)
			lo_flush_pending(l);
		goto out;
	}
	rc = lo_push(ep, &ev, NULL, 0, err);
out:
	pthread_mutex_unlock(&l->mu);
	return rc;
}

int lo_init_producer(mq_ep *ep, int64_t *pid, mq_err *err)
{
	struct limpl *l = ep->impl;
	int rc = -1;

	pthread_mutex_lock(&l->mu);
	if (lo_begin_write(l, err) == 0) {
		rc = mq_producer_ids_reserve(l->dir, 1, pid, err);
		lo_end_write(l);
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

int lo_create_topic(mq_ep *ep, const char *topic, int32_t n,
			  mq_err *err)
{
	struct limpl *l = ep->impl;
	int rc = -1;

	if (mq_topic_check(topic, false, err) < 0)
		return -1;
	if (n < 1 || n > MQ_MAX_PARTITIONS)
		return mq_errf(err, MQ_E_INVAL, "partition count %d is outside "
			       "1..%d", n, MQ_MAX_PARTITIONS);
	pthread_mutex_lock(&l->mu);
	if (lo_begin_write(l, err) == 0) {
		rc = mq_store_create_topic(l->wr, topic, n, err);
		lo_end_write(l);
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

int lo_delete_records(mq_ep *ep, const char *topic, int32_t partition,
			    int64_t offset, int64_t *new_start, mq_err *err)
{
	struct limpl *l = ep->impl;
	mq_partition *p;
	int rc = -1;

	if (mq_topic_check(topic, true, err) < 0)
		return -1;
	pthread_mutex_lock(&l->mu);
	if (lo_begin_write(l, err) < 0)
		goto out;
	if (mq_store_partition(l->wr, topic, partition, &p, err) < 0)
		goto done;
	if (offset < 0 || offset > mq_part_end(p)) {
		mq_errf(err, MQ_E_OFFSET_RANGE, "offset %lld is outside "
			"[0, %lld]", (long long)offset,
			(long long)mq_part_end(p));
		goto done;
	}
	if (offset > mq_part_start(p) && mq_part_set_start(p, offset, err) < 0)
		goto done;
	*new_start = mq_part_start(p);
	rc = 0;
done:
	lo_end_write(l);
out:
	pthread_mutex_unlock(&l->mu);
	return rc;
}

