/*
 * flusher.c - group commit.
 *
 * With --flush sync a produce is acknowledged only once its batch is on
 * disk. Paying one fdatasync per produce would cap the broker at the
 * disk's sync rate, so syncs are shared: a flusher thread runs one round
 * of fdatasync over every dirty partition while the loop keeps accepting
 * and writing new produces; when the round returns (ev_async), every
 * produce written before the round began is acknowledged at once, and the
 * next round starts with everything written meanwhile. The thread touches
 * only the duplicated descriptors in its round (mq_flush_req); all
 * partition state stays with the loop.
 *
 * A failed fdatasync is final for that partition: after it, the page cache
 * may hold data that never reached the disk and will not be retried, so
 * the partition stops accepting writes (mq_part_failed) and nothing that
 * waited on the round is acknowledged.
 *
 * Shaping rounds: when a round's acknowledgements go out, the producers
 * that were waiting on it send again at about the same time, but not at
 * exactly the same time. Starting the next round on the first arrival
 * would leave the others for the round after. Worse, starting it as soon
 * as the produces written during the last round are as many as it
 * answered splits a crowd into two halves that take turns, each round
 * carrying half of it, for good. So the next round waits for the whole
 * crowd: the produces the last round answered plus those that waited
 * through it. It starts once that many wait, or after at most the last
 * round's sync time (never more than GATHER_MAX_US): a round that waits
 * that long for the stragglers still costs less than leaving them a
 * whole round behind. A lone producer is the whole crowd as soon as it
 * sends again, so it waits for nobody; a crowd shares one fdatasync.
 *
 * Spinning (--flush-spin): with sync producers, a round's cycle is a
 * chain of hand-offs, each of which would put a thread to sleep and wake
 * it again: the loop hands the round to the flusher, the flusher hands it
 * back, the producers answer. Waking a sleeping thread costs tens of
 * microseconds on a virtual machine (the idle CPU has to be woken too),
 * which is a large part of a round when fdatasync itself takes 100 us.
 * So for at most --flush-spin microseconds each side polls instead of
 * sleeping: the loop keeps polling its sockets without blocking while a
 * round is in flight and after it (for the producers' next sends), and
 * the flusher, after a round, yields the CPU in a loop while it waits
 * for the next one. Both then sleep as before.
 *
 * With --flush async a produce is acknowledged once written, and a round
 * runs every --flush-interval ms.
 */
#include "broker.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>

#define CONTAINER(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

#define GATHER_MAX_US 1000

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *flusher_main(void *arg)
{
	struct broker *b = arg;
	struct flusher *f = &b->fl;

	pthread_mutex_lock(&f->mu);
	for (;;) {
		if (f->spin_us > 0 && !f->work && !f->stop) {
			/* See "Spinning" above. */
			int64_t until = mono_us() + f->spin_us;
			pthread_mutex_unlock(&f->mu);
			while (!__atomic_load_n(&f->work, __ATOMIC_ACQUIRE) &&
			       !__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE) &&
			       mono_us() < until)
				sched_yield();
			pthread_mutex_lock(&f->mu);
		}
		while (!f->work && !f->stop)
			pthread_cond_wait(&f->cv, &f->mu);
		if (!f->work)
			break;
		pthread_mutex_unlock(&f->mu);
		/* The round's array belongs to this thread until finished. */
		int64_t t0 = mono_us();
		for (int i = 0; i < f->n; i++)
			mq_flush_run(&f->reqs[i]);
		pthread_mutex_lock(&f->mu);
		f->sync_us = mono_us() - t0;
		__atomic_store_n(&f->work, false, __ATOMIC_RELEASE);
		f->finished = true;
		ev_async_send(b->loop, &f->done);
	}
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

static void pending_unlink(struct broker *b, struct pending *p)
{
	struct bpart *bp = p->bp;

	if (p->pprev)
		p->pprev->pnext = p->pnext;
	else
		bp->pend_head = p->pnext;
	if (p->pnext)
		p->pnext->pprev = p->pprev;
	else
		bp->pend_tail = p->pprev;
	if (p->gprev)
		p->gprev->gnext = p->gnext;
	else
		b->pend_head = p->gnext;
	if (p->gnext)
		p->gnext->gprev = p->gprev;
	else
		b->pend_tail = p->gprev;
	b->npending--;
}

/* Answer a pending produce (ok when err is NULL) and free it. */
static void pending_finish(struct broker *b, struct pending *p,
			   const mq_err *err)
{
	pending_unlink(b, p);
	if (!p->c->dead) {
		if (err) {
			reply_error(p->c, p->id, MQ_T_PRODUCE, err);
		} else {
			size_t fs;
			mq_wbuf *w = reply_begin(p->c, p->id, MQ_T_PRODUCE, 0,
						 NULL, &fs);
			mq_w_u32(w, (uint32_t)p->bp->id);
			mq_w_u64(w, (uint64_t)p->base_offset);
			mq_w_u8(w, p->duplicate);
			reply_end(p->c, fs);
		}
	}
	conn_deferred_done(p->c);
	free(p);
}

static void timeout_arm(struct broker *b)
{
	if (!b->pend_head) {
		ev_timer_stop(b->loop, &b->timeout_timer);
		return;
	}
	double after = (double)(b->pend_head->deadline - mq_mono_ms()) / 1000.0;
	ev_timer_stop(b->loop, &b->timeout_timer);
	ev_timer_set(&b->timeout_timer, after > 0 ? after : 0., 0.);
	ev_timer_start(b->loop, &b->timeout_timer);
}

static void on_flush_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct broker *b = CONTAINER(w, struct broker, timeout_timer);
	int64_t now = mq_mono_ms();
	(void)loop;
	(void)revents;

	while (b->pend_head && b->pend_head->deadline <= now) {
		struct pending *p = b->pend_head;
		mq_err err;
		mq_errf(&err, MQ_E_FLUSH_TIMEOUT,
			"written to %s/%d at offset %lld but not on disk within "
			"%d ms (--flush-timeout); retry to learn its fate",
			p->bp->t->name, p->bp->id, (long long)p->base_offset,
			b->o.flush_timeout_ms);
		log_warn("%s", err.msg);
		pending_finish(b, p, &err);
	}
	timeout_arm(b);
}

void pending_add(struct broker *b, struct conn *c, uint32_t id,
		 struct bpart *bp, int64_t base, int64_t last, bool dup,
		 bool noreply)
{
	struct pending *p;

	if (noreply)
		return;	/* oneway: the flush happens, nobody hears of it */
	p = calloc(1, sizeof *p);
	if (!p) {
		mq_err err;
		mq_errf(&err, MQ_E_NOMEM, "out of memory");
		reply_error(c, id, MQ_T_PRODUCE, &err);
		return;
	}
	p->c = c;
	p->bp = bp;
	p->id = id;
	p->base_offset = base;
	p->last_offset = last;
	p->duplicate = dup;
	p->deadline = mq_mono_ms() + b->o.flush_timeout_ms;
	p->pprev = bp->pend_tail;
	if (bp->pend_tail)
		bp->pend_tail->pnext = p;
	else
		bp->pend_head = p;
	bp->pend_tail = p;
	p->gprev = b->pend_tail;
	if (b->pend_tail)
		b->pend_tail->gnext = p;
	else
		b->pend_head = p;
	b->pend_tail = p;
	b->npending++;
	c->deferred++;
	conn_ref(c);
	if (!ev_is_active(&b->timeout_timer))
		timeout_arm(b);
}

void pending_drop_conn(struct broker *b, struct conn *c)
{
	struct pending *p = b->pend_head, *next;

	for (; p; p = next) {
		next = p->gnext;
		if (p->c == c)
			pending_finish(b, p, NULL);
	}
	timeout_arm(b);
}

void flusher_mark_dirty(struct broker *b, struct bpart *bp)
{
	bp->dirty = true;
	if (!bp->in_dirty_list) {
		bp->in_dirty_list = true;
		bp->dirty_next = b->dirty;
		b->dirty = bp;
	}
}

/* Keep the loop polling for up to --flush-spin us from now. */
static void loop_spin(struct broker *b, int64_t now)
{
	struct flusher *f = &b->fl;

	if (f->spin_us > 0) {
		f->spin_until_us = now + f->spin_us;
		ev_idle_start(b->loop, &f->spin);
	}
}

void flusher_kick(struct broker *b)
{
	struct flusher *f = &b->fl;
	int n = 0;

	if (f->busy || !b->dirty)
		return;
	for (struct bpart *bp = b->dirty; bp; bp = bp->dirty_next)
		n++;
	if (n > f->cap) {
		int cap = n * 2;
		mq_flush_req *r = realloc(f->reqs, (size_t)cap * sizeof *r);
		struct bpart **pp;
		if (!r)
			return;
		f->reqs = r;
		pp = realloc(f->parts, (size_t)cap * sizeof *pp);
		if (!pp)
			return;
		f->parts = pp;
		f->cap = cap;
	}
	f->n = 0;
	while (b->dirty) {
		struct bpart *bp = b->dirty;
		mq_err err = { 0 };

		b->dirty = bp->dirty_next;
		bp->in_dirty_list = false;
		bp->dirty = false;
		memset(&f->reqs[f->n], 0, sizeof f->reqs[f->n]);
		if (mq_part_flush_begin(bp->p, &f->reqs[f->n], &err) < 0) {
			log_error("flush of %s/%d: %s", bp->t->name, bp->id,
				  err.msg);
			struct pending *p = bp->pend_head, *next;
			for (; p; p = next) {
				next = p->pnext;
				pending_finish(b, p, &err);
			}
			continue;
		}
		if (f->reqs[f->n].nfds == 0) {
			/* Nothing to sync, but the round's target may
			 * already cover waiting produces. */
			mq_part_flush_end(bp->p, &f->reqs[f->n], &err);
			continue;
		}
		f->parts[f->n++] = bp;
	}
	timeout_arm(b);
	if (f->n == 0)
		return;
	f->busy = true;
	pthread_mutex_lock(&f->mu);
	__atomic_store_n(&f->work, true, __ATOMIC_RELEASE);
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
	loop_spin(b, mono_us());
}

/* While active, the loop polls without blocking (see "Spinning"). */
static void on_spin(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct flusher *f = CONTAINER(w, struct flusher, spin);
	(void)revents;

	if (mono_us() >= f->spin_until_us)
		ev_idle_stop(loop, w);
}

static void on_flush_done(struct ev_loop *loop, ev_async *w, int revents)
{
	struct broker *b = CONTAINER(w, struct broker, fl.done);
	struct flusher *f = &b->fl;
	bool finished;
	(void)loop;
	(void)revents;

	pthread_mutex_lock(&f->mu);
	finished = f->finished;
	f->finished = false;
	pthread_mutex_unlock(&f->mu);
	if (!finished)
		return;
	int before = b->npending;
	for (int i = 0; i < f->n; i++) {
		struct bpart *bp = f->parts[i];
		mq_err err = { 0 };
		int rc = mq_part_flush_end(bp->p, &f->reqs[i], &err);
		int64_t flushed = mq_part_flushed(bp->p);
		struct pending *p = bp->pend_head, *next;

		if (rc < 0) {
			log_error("%s/%d no longer accepts writes: %s",
				  bp->t->name, bp->id, err.msg);
		}
		for (; p; p = next) {
			next = p->pnext;
			if (rc < 0)
				pending_finish(b, p, &err);
			else if (p->last_offset < flushed)
				pending_finish(b, p, NULL);
		}
		if (rc == 0 && b->o.flush_sync)
			bpart_wake(b, bp);
	}
	f->busy = false;
	f->crowd = before;
	f->round_end_us = mono_us();
	loop_spin(b, f->round_end_us);	/* for the producers' next sends */
	timeout_arm(b);
	if (b->o.flush_sync)
		flusher_maybe_kick(b);
}

/* Sync mode: start the next round now, or soon if it is still filling
 * up (see "Shaping rounds" above). */
void flusher_maybe_kick(struct broker *b)
{
	struct flusher *f = &b->fl;
	int64_t window, waited;

	if (f->busy || !b->dirty)
		return;
	window = f->sync_us;
	if (window > GATHER_MAX_US)
		window = GATHER_MAX_US;
	waited = mono_us() - f->round_end_us;
	if (b->npending >= f->crowd || waited >= window || b->stopping) {
		ev_timer_stop(b->loop, &f->gather);
		flusher_kick(b);
		return;
	}
	if (!ev_is_active(&f->gather)) {
		ev_timer_set(&f->gather, (double)(window - waited) / 1e6, 0.);
		ev_timer_start(b->loop, &f->gather);
	}
}

static void on_gather(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct broker *b = CONTAINER(w, struct broker, fl.gather);
	(void)loop;
	(void)revents;
	flusher_kick(b);
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct broker *b = CONTAINER(w, struct broker, prepare);
	(void)loop;
	(void)revents;
	/* Everything read in this loop iteration joins one round. */
	if (b->o.flush_sync)
		flusher_maybe_kick(b);
}

static void on_interval(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct broker *b = CONTAINER(w, struct broker, flush_timer);
	(void)loop;
	(void)revents;
	flusher_kick(b);
}

bool flusher_idle(struct broker *b)
{
	return !b->fl.busy && !b->dirty && !b->pend_head;
}

int flusher_start(struct broker *b, mq_err *err)
{
	struct flusher *f = &b->fl;
	int rc;

	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	ev_async_init(&f->done, on_flush_done);
	ev_async_start(b->loop, &f->done);
	ev_prepare_init(&b->prepare, on_prepare);
	ev_prepare_start(b->loop, &b->prepare);
	ev_init(&b->timeout_timer, on_flush_timeout);
	ev_init(&f->gather, on_gather);
	ev_idle_init(&f->spin, on_spin);
	f->spin_us = b->o.flush_sync ? b->o.flush_spin_us : 0;
	if (!b->o.flush_sync) {
		double iv = b->o.flush_interval_ms / 1000.0;
		ev_timer_init(&b->flush_timer, on_interval, iv, iv);
		ev_timer_start(b->loop, &b->flush_timer);
	}
	rc = pthread_create(&f->thread, NULL, flusher_main, b);
	if (rc)
		return mq_errsys(err, MQ_E_IO, rc, "cannot start the flusher thread");
	f->started = true;
	return 0;
}

void flusher_stop(struct broker *b)
{
	struct flusher *f = &b->fl;

	if (!f->started)
		return;
	pthread_mutex_lock(&f->mu);
	__atomic_store_n(&f->stop, true, __ATOMIC_RELEASE);
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
	pthread_join(f->thread, NULL);
	f->started = false;
	ev_timer_stop(b->loop, &b->flush_timer);
	ev_timer_stop(b->loop, &b->timeout_timer);
	ev_timer_stop(b->loop, &f->gather);
	ev_idle_stop(b->loop, &f->spin);
	ev_prepare_stop(b->loop, &b->prepare);
	ev_async_stop(b->loop, &f->done);
	free(f->reqs);
	free(f->parts);
	f->reqs = NULL;
	f->parts = NULL;
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv);
}
