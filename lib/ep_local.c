/*
 * ep_local.c - the endpoint over a data directory, with no broker (ep.h):
 * opening, closing and reading. Writing is in ep_local_write.c, groups in
 * ep_local_group.c; what they share is in ep_local.h.
 *
 * A program that works on a directory does what the broker would do for
 * it, with the same checks and answers, so that from the program's point
 * of view the two endpoints differ only in their name. What differs
 * inside, and why:
 *
 * Writing takes turns. The directory has one writer at a time (DESIGN.md
 * section 6): a broker holds its lock for life; we hold it for a turn
 * (wlock.h). A write (produce, create a topic, commit, delete records,
 * reserve a producer id) starts a turn if none is open: it takes the lock
 * -- failing at once, naming the pid, if a broker has it; waiting if
 * another direct writer has it -- and opens the store read-write. Opening
 * runs recovery, which also cuts the torn tail a killed writer may have
 * left. The store's in-memory view of a partition is only valid while
 * the lock is held (another writer may append between our turns), so
 * every turn opens it afresh and closes it at the end, which flushes
 * everything and records the recovery point.
 *
 * A turn lasts across a burst of writes and ends when the program stops
 * writing: after IDLE_MS without a write, after TICK_MS when another
 * process waits for the lock, or mid-burst after TURN_MS when another
 * process waits (then we pause YIELD_MS so that it gets in). The
 * program may be blocked anywhere (reading stdin, running a command)
 * when a turn should end, so a small thread ends it: everything in here
 * runs under one mutex, which the thread takes only between the
 * program's calls.
 *
 * Flushing mirrors the broker. local_sync: a produce is reported only
 * after fdatasync; pipelined produces share one fdatasync (group commit:
 * their events wait in `pending` until the program waits for events, the
 * turn ends, or PENDING_MAX of them are waiting). Otherwise the event is
 * queued at once and the data is flushed when the turn ends (the broker
 * flushes async data periodically). Oneway (acks 0) appends and reports
 * nothing; its errors are dropped, as the broker drops them.
 *
 * Idempotence: producer ids come from DIR/producer-ids like the broker's
 * (producer_ids.h), so no two producers share one. Each id is used by one
 * process, so this endpoint keeps the sequence state of the ids it has
 * seen in memory and answers retries and gaps as the broker does. A retry
 * of a batch appended by a process that then died is not recognised.
 *
 * Reading needs no lock: a read-only store, refreshed before each look,
 * sees every complete, CRC-valid batch of whichever process writes
 * (mq_part_refresh), including a running broker's. The visible end is the
 * end of what is there (a broker with sync flush would serve only what is
 * flushed). A fetch at the end with max_wait waits on inotify watches of
 * the partition directories (watch.h), woken by the append itself.
 *
 * Groups have no broker to coordinate them: membership is by locks
 * (lgroup.h). A member owns the partitions whose lock files it holds;
 * the kernel releases them when it dies, and the others take them over at
 * their next heartbeat, which returns MQ_E_REBALANCE when this member's
 * partitions changed or should change, so that the program commits and
 * joins again. A join does not wait for the others, as the broker's does:
 * a new member starts with what is free and gets its share as the others
 * give it back. A commit is fenced by the locks: a member may commit only
 * partitions it holds. The generation counts changes of the member's own
 * partitions (DIR/groups/G/generation, shared by the group). Operator
 * commits (generation -1) follow the broker's rules, MQ_COMMIT_IF_EMPTY
 * counting live member files.
 *
 * Not here: retention (a broker setting), the broker's limits other than
 * its defaults (1 MiB records, 16 MiB requests), a join that creates
 * topics in a read-only directory.
 *
 * The directory: a read-write open creates it when missing (as the broker
 * does; its parent must exist); a read-only open requires it and never
 * modifies anything, so it also works on a directory a broker is using
 * or on a copy.
 */
#include "ep_local.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "name.h"
#include "offsets.h"

int lo_reserve(struct limpl *l, size_t need, mq_err *err)
{
	uint8_t *p;

	if (need <= l->cap)
		return 0;
	p = realloc(l->buf, need);
	if (!p)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	l->buf = p;
	l->cap = need;
	return 0;
}

/* Copy err into an event. */
void lo_ev_fail(mq_ep_event *ev, const mq_err *e)
{
	ev->code = e->code ? e->code : MQ_E_IO;
	snprintf(ev->msg, sizeof ev->msg, "%s", e->msg);
}

int lo_push(mq_ep *ep, const mq_ep_event *ev, const uint8_t *data,
		size_t len, mq_err *err)
{
	if (mq_ep_queue_push(ep, ev, data, len) < 0)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	return 0;
}

/* ---- reading ---- */

/* The read-only view of a partition, refreshed. */
int lo_rd_part(struct limpl *l, const char *topic, int32_t partition,
		   mq_partition **p, mq_err *err)
{
	if (mq_store_partition(l->rd, topic, partition, p, err) < 0)
		return -1;
	return mq_part_refresh(*p, err);
}

/* Answer a fetch at offset from what the partition holds now. */
static int fetch_answer(mq_ep *ep, mq_partition *p, const char *topic,
			int32_t partition, int64_t offset, uint32_t max_bytes,
			uint64_t token, mq_err *err)
{
	mq_ep_event ev;
	mq_read_range r;
	mq_err e = { 0 };

	memset(&ev, 0, sizeof ev);
	ev.type = MQ_EV_FETCH;
	ev.token = token;
	ev.fetch.partition = partition;
	ev.fetch.start = mq_part_start(p);
	ev.fetch.end = ev.fetch.visible = mq_part_end(p);
	if (offset == ev.fetch.end)
		return lo_push(ep, &ev, NULL, 0, err);
	if (mq_part_read(p, offset, max_bytes, ev.fetch.end, &r, &e) < 0) {
		lo_ev_fail(&ev, &e);
		return lo_push(ep, &ev, NULL, 0, err);
	}
	if (r.data)	/* read already, to check it */
		return lo_push(ep, &ev, r.data, r.len, err);
	/* Read straight into the event's own buffer. */
	uint8_t *data = r.len ? malloc(r.len) : NULL;
	if (r.len && !data)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	ssize_t n = r.len ? mq_pread_full(r.fd, data, r.len, r.pos) : 0;
	if (n < 0 || (size_t)n != r.len) {
		mq_errsys(&e, MQ_E_IO, n < 0 ? errno : EIO, "read %s/%d at "
			  "byte %lld", topic, (int)partition, (long long)r.pos);
		free(data);
		lo_ev_fail(&ev, &e);
		return lo_push(ep, &ev, NULL, 0, err);
	}
	if (mq_ep_queue_push_owned(ep, &ev, data, r.len) < 0)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	return 0;
}

static int part_dir(const struct limpl *l, char *buf, size_t size,
		    const char *topic, int32_t partition, mq_err *err)
{
	if (snprintf(buf, size, "%s/%s/%d", l->topics_dir, topic,
		     (int)partition) >= (int)size)
		return mq_errf(err, MQ_E_INVAL, "path too long: %s", topic);
	return 0;
}

static int l_fetch_send(mq_ep *ep, const char *topic, int32_t partition,
			int64_t offset, uint32_t max_bytes, uint32_t max_wait,
			uint64_t token, mq_err *err)
{
	struct limpl *l = ep->impl;
	mq_ep_event ev;
	mq_partition *p;
	mq_err e = { 0 };
	int rc = -1;

	memset(&ev, 0, sizeof ev);
	ev.type = MQ_EV_FETCH;
	ev.token = token;
	pthread_mutex_lock(&l->mu);
	if (max_bytes > MQ_DEFAULT_MAX_FRAME - 1024)
		max_bytes = MQ_DEFAULT_MAX_FRAME - 1024;
	if (max_bytes == 0)
		max_bytes = 1;
	if (max_wait > MQ_DEFAULT_MAX_WAIT_MS)
		max_wait = MQ_DEFAULT_MAX_WAIT_MS;
	if (mq_topic_check(topic, true, &e) < 0 ||
	    lo_rd_part(l, topic, partition, &p, &e) < 0) {
		lo_ev_fail(&ev, &e);
		rc = lo_push(ep, &ev, NULL, 0, err);
		goto out;
	}
	if (offset == mq_part_end(p) && max_wait > 0) {
		char path[PATH_MAX];
		struct parked *pk;

		/* Watch first, then look again: an append in between is
		 * then either seen now or reported by the watch. */
		if (!l->watch && mq_watch_open(&l->watch, err) < 0)
			goto out;
		if (part_dir(l, path, sizeof path, topic, partition, err) < 0 ||
		    mq_watch_add(l->watch, path, err) < 0 ||
		    mq_part_refresh(p, err) < 0)
			goto out;
		if (offset == mq_part_end(p)) {
			pk = calloc(1, sizeof *pk);
			if (!pk) {
				mq_errf(err, MQ_E_NOMEM, "out of memory");
				goto out;
			}
			snprintf(pk->topic, sizeof pk->topic, "%s", topic);
			pk->partition = partition;
			pk->offset = offset;
			pk->max_bytes = max_bytes;
			pk->deadline = mq_mono_ms() + max_wait;
			pk->token = token;
			pk->next = l->parked;
			l->parked = pk;
			rc = 0;
			goto out;
		}
	}
	rc = fetch_answer(ep, p, topic, partition, offset, max_bytes, token,
			  err);
out:
	pthread_mutex_unlock(&l->mu);
	return rc;
}

/* Answer the parked fetches that have data, or whose wait is over.
 * Returns how many were answered, or -1 + err. Under mu. */
static int answer_parked(mq_ep *ep, mq_err *err)
{
	struct limpl *l = ep->impl;
	struct parked **pp = &l->parked;
	int64_t now = mq_mono_ms();
	int n = 0;

	while (*pp) {
		struct parked *pk = *pp;
		mq_partition *p;
		mq_err e = { 0 };

		if (lo_rd_part(l, pk->topic, pk->partition, &p, &e) < 0) {
			mq_ep_event ev;
			memset(&ev, 0, sizeof ev);
			ev.type = MQ_EV_FETCH;
			ev.token = pk->token;
			lo_ev_fail(&ev, &e);
			if (lo_push(ep, &ev, NULL, 0, err) < 0)
				return -1;
		} else if (mq_part_end(p) != pk->offset || now >= pk->deadline) {
			if (fetch_answer(ep, p, pk->topic, pk->partition,
					 pk->offset, pk->max_bytes, pk->token,
					 err) < 0)
				return -1;
		} else {
			pp = &pk->next;
			continue;
		}
		*pp = pk->next;
		free(pk);
		n++;
	}
	return n;
}

/* Queue the produce events that are ready. 1 if any, 0 if none. */
static int queue_ready(mq_ep *ep, mq_err *err)
{
	struct limpl *l = ep->impl;
	int any = 0;

	if (l->pending && l->lock_fd >= 0)
		lo_flush_pending(l);
	while (l->ready) {
		struct pend *p = l->ready;
		if (lo_push(ep, &p->ev, NULL, 0, err) < 0)
			return -1;
		l->ready = p->next;
		if (!l->ready)
			l->ready_tail = &l->ready;
		free(p);
		any = 1;
	}
	return any;
}

static int l_pump(mq_ep *ep, int timeout_ms, mq_err *err)
{
	struct limpl *l = ep->impl;
	int64_t end = timeout_ms >= 0 ? mq_mono_ms() + timeout_ms : -1;
	int rc;

	pthread_mutex_lock(&l->mu);
	for (;;) {
		int64_t now, wait;

		rc = queue_ready(ep, err);
		if (rc != 0)
			break;
		rc = answer_parked(ep, err);
		if (rc != 0) {
			rc = rc > 0 ? 1 : -1;
			break;
		}
		if (!l->parked) {
			rc = 0;     /* nothing that could still come */
			break;
		}
		now = mq_mono_ms();
		if (end >= 0 && now >= end) {
			rc = 0;
			break;
		}
		wait = INT64_MAX;
		for (struct parked *pk = l->parked; pk; pk = pk->next)
			if (pk->deadline - now < wait)
				wait = pk->deadline - now;
		if (end >= 0 && end - now < wait)
			wait = end - now;
		if (wait < 0)
			wait = 0;
		/* Let the keeper end a turn while we wait. */
		pthread_mutex_unlock(&l->mu);
		rc = mq_watch_wait(l->watch, (int)wait, err);
		pthread_mutex_lock(&l->mu);
		if (rc < 0)
			break;
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

static int l_drain(mq_ep *ep, mq_err *err)
{
	struct limpl *l = ep->impl;
	int rc = 0;

	/* Oneway sends are in the log when they return; only report a
	 * failure found since (when a turn ended). */
	pthread_mutex_lock(&l->mu);
	if (l->late.code) {
		if (err)
			*err = l->late;
		memset(&l->late, 0, sizeof l->late);
		rc = -1;
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

/* ---- metadata and administration ---- */

static int l_status(mq_ep *ep, mq_status_info *st, mq_err *err)
{
	struct limpl *l = ep->impl;
	char **names = NULL;
	size_t n = 0;
	uint64_t bytes = 0;

	memset(st, 0, sizeof *st);
	pthread_mutex_lock(&l->mu);
	if (mq_store_list_topics(l->rd, &names, &n, err) < 0) {
		pthread_mutex_unlock(&l->mu);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		int np;
		if (mq_store_topic_partitions(l->rd, names[i], &np, NULL) < 0)
			continue;
		for (int k = 0; k < np; k++) {
			mq_partition *p;
			if (lo_rd_part(l, names[i], k, &p, NULL) == 0)
				bytes += mq_part_bytes(p);
		}
	}
	pthread_mutex_unlock(&l->mu);
	mq_names_free(names, n);
	snprintf(st->version, sizeof st->version, "%s", MQ_VERSION);
	st->proto = MQ_PROTO_VERSION;
	st->uptime_ms = 0;	/* no daemon */
	snprintf(st->flush, sizeof st->flush, "%s", l->sync ? "sync" : "async");
	st->data_bytes = bytes;
	st->topics = (uint32_t)n;
	st->pid = (uint32_t)getpid();
	st->max_frame = MQ_DEFAULT_MAX_FRAME;
	st->max_message = MQ_DEFAULT_MAX_MESSAGE;
	snprintf(st->data_dir, sizeof st->data_dir, "%s", l->dir);
	return 0;
}

/* Describe one topic into m (a code instead when it cannot). */
static int meta_topic(struct limpl *l, const char *name, mq_topic_meta *m,
		      mq_err *err)
{
	mq_err e = { 0 };
	int n;

	m->name = strdup(name);
	if (!m->name)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	if (mq_store_topic_partitions(l->rd, name, &n, &e) < 0) {
		m->code = (uint16_t)e.code;
		return 0;
	}
	m->parts = calloc((size_t)n, sizeof *m->parts);
	if (!m->parts)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	m->nparts = n;
	for (int i = 0; i < n; i++) {
		mq_part_meta *pm = &m->parts[i];
		mq_partition *p;

		pm->id = i;
		pm->oldest_ts = pm->newest_ts = -1;
		if (lo_rd_part(l, name, i, &p, &e) < 0) {
			m->code = (uint16_t)e.code;
			continue;
		}
		pm->start = mq_part_start(p);
		pm->end = pm->visible = mq_part_end(p);
		pm->bytes = mq_part_bytes(p);
		if (mq_part_time_range(p, &pm->oldest_ts, &pm->newest_ts,
				       &e) < 0)
			pm->oldest_ts = pm->newest_ts = -1;
	}
	return 0;
}

static int l_metadata(mq_ep *ep, const char *const *topics, size_t n,
		      mq_topic_meta **out, size_t *nout, mq_err *err)
{
	struct limpl *l = ep->impl;
	char **names = NULL;
	size_t count = n, i;
	mq_topic_meta *m;
	int rc = -1;

	*out = NULL;
	*nout = 0;
	pthread_mutex_lock(&l->mu);
	if (!topics || n == 0) {
		if (mq_store_list_topics(l->rd, &names, &count, err) < 0)
			goto out;
	}
	m = calloc(count ? count : 1, sizeof *m);
	if (!m) {
		mq_errf(err, MQ_E_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < count; i++) {
		const char *name = names ? names[i] : topics[i];
		mq_err e = { 0 };

		if (!names && mq_topic_check(name, true, &e) < 0) {
			m[i].name = strdup("");
			m[i].code = (uint16_t)e.code;
			if (!m[i].name)
				break;
			continue;
		}
		if (meta_topic(l, name, &m[i], err) < 0)
			break;
	}
	if (i < count) {
		mq_topic_meta_free(m, count);
		mq_errf(err, MQ_E_NOMEM, "out of memory");
		goto out;
	}
	*out = m;
	*nout = count;
	rc = 0;
out:
	pthread_mutex_unlock(&l->mu);
	mq_names_free(names, names ? count : 0);
	return rc;
}

static int l_list_offset(mq_ep *ep, const char *topic, int32_t partition,
			 int64_t ts, int64_t *offset, mq_err *err)
{
	struct limpl *l = ep->impl;
	mq_partition *p;
	int64_t off;
	int rc = -1;

	if (mq_topic_check(topic, true, err) < 0)
		return -1;
	if (ts < -2)
		return mq_errf(err, MQ_E_INVAL, "bad timestamp %lld",
			       (long long)ts);
	pthread_mutex_lock(&l->mu);
	if (lo_rd_part(l, topic, partition, &p, err) < 0)
		goto out;
	if (ts == -1)
		off = mq_part_end(p);
	else if (ts == -2)
		off = mq_part_start(p);
	else if (mq_part_offset_for_time(p, ts, &off, err) < 0)
		goto out;
	if (off > mq_part_end(p))
		off = mq_part_end(p);
	*offset = off;
	rc = 0;
out:
	pthread_mutex_unlock(&l->mu);
	return rc;
}

/* ---- open and close ---- */

static void l_close(mq_ep *ep)
{
	struct limpl *l = ep->impl;

	lo_leave_all(l);
	lo_keeper_stop(l);
	while (l->pending) {
		struct pend *p = l->pending;
		l->pending = p->next;
		free(p);
	}
	while (l->ready) {
		struct pend *p = l->ready;
		l->ready = p->next;
		free(p);
	}
	while (l->parked) {
		struct parked *pk = l->parked;
		l->parked = pk->next;
		free(pk);
	}
	while (l->seqs) {
		struct pseq *s = l->seqs;
		l->seqs = s->next;
		free(s);
	}
	mq_store_close(l->rd, NULL);
	mq_watch_close(l->watch);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	free(l->buf);
	free(l->dir);
	free(l);
}

static const struct mq_ep_ops local_ops = {
	.close = l_close,
	.status = l_status,
	.metadata = l_metadata,
	.create_topic = lo_create_topic,
	.list_offset = l_list_offset,
	.delete_records = lo_delete_records,
	.init_producer = lo_init_producer,
	.produce_send = lo_produce_send,
	.fetch_send = l_fetch_send,
	.pump = l_pump,
	.drain = l_drain,
	.join = lo_join,
	.heartbeat = lo_heartbeat,
	.leave = lo_leave,
	.commit = lo_commit,
	.describe_groups = lo_describe,
};

/* Create dir if missing, as the broker does (its parent must exist). */
static int make_data_dir(const char *dir, mq_err *err)
{
	char parent[PATH_MAX];
	const char *slash;
	struct stat st;

	if (mkdir(dir, 0755) == 0) {
		slash = strrchr(dir, '/');
		if (!slash)
			snprintf(parent, sizeof parent, ".");
		else if (slash == dir)
			snprintf(parent, sizeof parent, "/");
		else
			snprintf(parent, sizeof parent, "%.*s",
				 (int)(slash - dir), dir);
		return mq_fsync_dir(parent, err);
	}
	if (errno != EEXIST)
		return mq_errsys(err, MQ_E_IO, errno,
				 "cannot create data directory %s", dir);
	if (stat(dir, &st) < 0)
		return mq_errsys(err, MQ_E_IO, errno, "data directory %s", dir);
	if (!S_ISDIR(st.st_mode))
		return mq_errf(err, MQ_E_IO, "data directory %s is not a "
			       "directory", dir);
	return 0;
}

int mq_ep_local_open(const mq_ep_opts *o, mq_ep *ep, mq_err *err)
{
	mq_store_opts so = { .read_only = true };
	struct limpl *l;
	size_t len;

	if (!o->dir || !o->dir[0])
		return mq_errf(err, MQ_E_INVAL, "empty data directory path");
	l = calloc(1, sizeof *l);
	if (!l || !(l->dir = strdup(o->dir))) {
		free(l);
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	}
	len = strlen(l->dir);
	while (len > 1 && l->dir[len - 1] == '/')
		l->dir[--len] = '\0';
	if (snprintf(l->groups_dir, sizeof l->groups_dir, "%s/groups",
		     l->dir) >= (int)sizeof l->groups_dir ||
	    snprintf(l->topics_dir, sizeof l->topics_dir, "%s/topics",
		     l->dir) >= (int)sizeof l->topics_dir) {
		mq_errf(err, MQ_E_INVAL, "path too long: %.200s", o->dir);
		goto fail;
	}
	l->ro = o->read_only;
	l->sync = o->local_sync;
	l->partitions = o->local_partitions > 0 ? o->local_partitions : 1;
	if (l->partitions > MQ_MAX_PARTITIONS)
		l->partitions = MQ_MAX_PARTITIONS;
	l->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	snprintf(l->client, sizeof l->client, "%s",
		 o->client_name ? o->client_name : "mq");
	l->lock_fd = -1;
	l->pending_tail = &l->pending;
	l->ready_tail = &l->ready;
	if (!l->ro && make_data_dir(l->dir, err) < 0)
		goto fail;
	if (mq_store_open(l->dir, &so, &l->rd, err) < 0)
		goto fail;
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	ep->ops = &local_ops;
	ep->impl = l;
	ep->local = true;
	snprintf(ep->name, sizeof ep->name, "dir:%s", l->dir);
	ep->max_message = MQ_DEFAULT_MAX_MESSAGE;
	ep->max_batch = MQ_DEFAULT_MAX_FRAME - 4096;
	return 0;
fail:
	free(l->dir);
	free(l);
	return -1;
}

