/*
 * ep_local_group.c - consumer groups on a data directory without a
 * broker, over the lock files of lgroup.h: join, heartbeat, leave,
 * fenced commits, listings. See the top of ep_local.c.
 */
#include "ep_local.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io.h"
#include "name.h"
#include "offsets.h"
#include "wlock.h"

/* ---- consumer groups ---- */

static struct membership *member_find(struct limpl *l, const char *group,
				      const char *member_id)
{
	for (struct membership *m = l->members; m; m = m->next)
		if (strcmp(mq_lg_group(m->g), group) == 0 &&
		    strcmp(mq_lg_member(m->g), member_id) == 0)
			return m;
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The partitions of the sorted, distinct topics (missing ones have
 * none), sorted. Free with free() (names point into topics). */
static int candidates(struct limpl *l, const char *const *topics, size_t n,
		      mq_tp **out, size_t *nout, mq_err *err)
{
	mq_tp *v = NULL;
	size_t k = 0, cap = 0;

	for (size_t i = 0; i < n; i++) {
		mq_err e = { 0 };
		int np;

		if (mq_store_topic_partitions(l->rd, topics[i], &np, &e) < 0) {
			if (e.code == MQ_E_NO_TOPIC)
				continue;
			free(v);
			if (err)
				*err = e;
			return -1;
		}
		if (k + (size_t)np > cap) {
			cap = (k + (size_t)np) * 2;
			mq_tp *nv = realloc(v, cap * sizeof *nv);
			if (!nv) {
				free(v);
				return mq_errf(err, MQ_E_NOMEM, "out of memory");
			}
			v = nv;
		}
		for (int p = 0; p < np; p++)
			v[k++] = (mq_tp){ (char *)topics[i], p };
	}
	*out = v;
	*nout = k;
	return 0;
}


int lo_join(mq_ep *ep, const char *group, const char *member_id,
		  uint32_t session_ms, const char *const *topics, size_t n,
		  mq_assignment *out, mq_err *err)
{
	struct limpl *l = ep->impl;
	char **sorted = NULL;
	size_t ns = 0;
	struct membership *m = NULL;
	mq_tp *cands = NULL;
	size_t nc = 0;
	bool changed, made = false;
	pid_t bpid;
	int rc = -1, r;

	memset(out, 0, sizeof *out);
	if (l->ro)
		return lo_refuse_read_only(l, err);
	if (mq_name_check(group, err) < 0)
		return -1;
	if (!topics || n == 0 || n > MQ_MAX_SUBSCRIBE)
		return mq_errf(err, MQ_E_INVAL, "a join needs 1 to %d topics",
			       MQ_MAX_SUBSCRIBE);
	sorted = calloc(n, sizeof *sorted);
	if (!sorted)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (mq_topic_check(topics[i], true, err) < 0)
			goto out_free;
		sorted[i] = (char *)topics[i];
	}
	qsort(sorted, n, sizeof *sorted, cmp_str);
	for (size_t i = 0; i < n; i++)
		if (!ns || strcmp(sorted[ns - 1], sorted[i]) != 0)
			sorted[ns++] = sorted[i];
	if (session_ms < MQ_SESSION_MIN_MS)
		session_ms = MQ_SESSION_MIN_MS;
	if (session_ms > MQ_SESSION_MAX_MS)
		session_ms = MQ_SESSION_MAX_MS;

	pthread_mutex_lock(&l->mu);
	/* A member writes (its commits): refuse now if a broker is here. */
	if ((r = mq_wlock_broker(l->dir, &bpid, err)) != 0) {
		if (r > 0)
			mq_wlock_refuse(l->dir, bpid, err);
		goto out;
	}
	if (member_id && member_id[0]) {
		m = member_find(l, group, member_id);
		if (!m) {
			mq_errf(err, MQ_E_UNKNOWN_MEMBER, "group %s has no "
				"member %s in this process; join with an empty "
				"member id", group, member_id);
			goto out;
		}
	}
	/* Topics are created on first use, as the broker does. */
	for (size_t i = 0; i < ns; i++) {
		mq_err e = { 0 };
		int np;
		if (mq_topic_is_internal(sorted[i]) ||
		    mq_store_topic_partitions(l->rd, sorted[i], &np, &e) == 0)
			continue;
		if (e.code != MQ_E_NO_TOPIC) {
			if (err)
				*err = e;
			goto out;
		}
		if (lo_begin_write(l, err) < 0)
			goto out;
		if (mq_store_create_topic(l->wr, sorted[i], l->partitions,
					  &e) < 0 && e.code != MQ_E_EXISTS) {
			if (err)
				*err = e;
			lo_end_write(l);
			goto out;
		}
		lo_end_write(l);
	}
	if (mq_mkdir_durable(l->groups_dir, l->dir, err) < 0)
		goto out;
	if (m) {
		if (mq_lg_subscribe(m->g, (const char *const *)sorted, ns,
				    session_ms, err) < 0)
			goto out;
	} else {
		m = calloc(1, sizeof *m);
		if (!m) {
			mq_errf(err, MQ_E_NOMEM, "out of memory");
			goto out;
		}
		if (mq_lg_join(l->groups_dir, group, l->client, session_ms,
			       (const char *const *)sorted, ns, &m->g,
			       err) < 0) {
			free(m);
			m = NULL;
			goto out;
		}
		made = true;
	}
	if (candidates(l, (const char *const *)sorted, ns, &cands, &nc,
		       err) < 0 ||
	    mq_lg_balance(m->g, cands, nc, true, &changed, err) < 0 ||
	    mq_lg_assignment(m->g, out, err) < 0) {
		if (made) {
			mq_lg_leave(m->g);
			free(m);
		}
		goto out;
	}
	if (made) {
		m->next = l->members;
		l->members = m;
	}
	rc = 0;
out:
	pthread_mutex_unlock(&l->mu);
out_free:
	free(cands);
	free(sorted);
	return rc;
}

int lo_heartbeat(mq_ep *ep, const char *group, const char *member_id,
		       int32_t generation, mq_err *err)
{
	struct limpl *l = ep->impl;
	struct membership *m;
	const char *const *topics;
	mq_tp *cands = NULL;
	size_t nt, nc;
	bool changed;
	int rc = -1;

	pthread_mutex_lock(&l->mu);
	m = member_find(l, group, member_id ? member_id : "");
	if (!m) {
		mq_errf(err, MQ_E_UNKNOWN_MEMBER, "group %s has no member %s; "
			"join again", group, member_id ? member_id : "");
		goto out;
	}
	if (generation != mq_lg_generation(m->g)) {
		mq_errf(err, MQ_E_GENERATION, "generation %d is stale; member "
			"%s is at %d", generation, member_id,
			mq_lg_generation(m->g));
		goto out;
	}
	topics = mq_lg_topics(m->g, &nt);
	if (candidates(l, topics, nt, &cands, &nc, err) < 0 ||
	    mq_lg_balance(m->g, cands, nc, false, &changed, err) < 0)
		goto out;
	if (changed) {
		mq_errf(err, MQ_E_REBALANCE, "group %s is rebalancing; join "
			"again", group);
		goto out;
	}
	rc = 0;
out:
	pthread_mutex_unlock(&l->mu);
	free(cands);
	return rc;
}

int lo_leave(mq_ep *ep, const char *group, const char *member_id,
		   mq_err *err)
{
	struct limpl *l = ep->impl;
	struct membership **pp;
	int rc = -1;

	pthread_mutex_lock(&l->mu);
	for (pp = &l->members; *pp; pp = &(*pp)->next) {
		struct membership *m = *pp;
		if (strcmp(mq_lg_group(m->g), group) == 0 &&
		    strcmp(mq_lg_member(m->g), member_id ? member_id : "") == 0) {
			*pp = m->next;
			mq_lg_leave(m->g);
			free(m);
			rc = 0;
			break;
		}
	}
	if (rc < 0)
		mq_errf(err, MQ_E_UNKNOWN_MEMBER, "group %s has no member %s; "
			"join again", group, member_id ? member_id : "");
	pthread_mutex_unlock(&l->mu);
	return rc;
}

/* Check the entries of a commit against the log (all before any is
 * applied). Under mu, during a turn. */
static int commit_check(struct limpl *l, const mq_commit_entry *e, size_t n,
			mq_err *err)
{
	for (size_t i = 0; i < n; i++) {
		mq_partition *p;
		mq_err pe = { 0 };
		int np;

		if (mq_topic_check(e[i].topic, true, err) < 0)
			return -1;
		if (mq_store_topic_partitions(l->rd, e[i].topic, &np, err) < 0)
			return -1;
		if (e[i].partition < 0 || e[i].partition >= np)
			return mq_errf(err, MQ_E_NO_PARTITION,
				       "topic %s has no partition %d",
				       e[i].topic, e[i].partition);
		if (lo_rd_part(l, e[i].topic, e[i].partition, &p, &pe) < 0) {
			if (err)
				*err = pe;
			return -1;
		}
		if (e[i].offset < 0 || e[i].offset > mq_part_end(p))
			return mq_errf(err, MQ_E_OFFSET_RANGE,
				       "offset %lld for %s/%d is outside "
				       "[0, %lld]", (long long)e[i].offset,
				       e[i].topic, e[i].partition,
				       (long long)mq_part_end(p));
	}
	return 0;
}

int lo_commit(mq_ep *ep, const char *group, const char *member_id,
		    int32_t generation, uint16_t flags,
		    const mq_commit_entry *e, size_t n, mq_err *err)
{
	struct limpl *l = ep->impl;
	mq_offsets *o = NULL;
	int rc = -1;

	if (l->ro)
		return lo_refuse_read_only(l, err);
	if (mq_name_check(group, err) < 0)
		return -1;
	pthread_mutex_lock(&l->mu);
	if (lo_begin_write(l, err) < 0)
		goto out;
	if (commit_check(l, e, n, err) < 0)
		goto done;
	if (generation < 0) {
		/* An operator's commit (mq-offset). */
		size_t live;
		if (flags & MQ_COMMIT_IF_EMPTY) {
			if (mq_lg_count_live(l->groups_dir, group, true, &live,
					     err) < 0)
				goto done;
			if (live > 0) {
				mq_errf(err, MQ_E_BUSY, "group %s has %zu live "
					"member(s); stop them first or force "
					"it", group, live);
				goto done;
			}
		}
	} else {
		struct membership *m = member_find(l, group,
						   member_id ? member_id : "");
		if (!m) {
			mq_errf(err, MQ_E_UNKNOWN_MEMBER, "group %s has no "
				"member %s in this process; join again", group,
				member_id ? member_id : "");
			goto done;
		}
		if (generation != mq_lg_generation(m->g)) {
			mq_errf(err, MQ_E_GENERATION, "commit from generation "
				"%d rejected: member %s is at generation %d",
				generation, member_id, mq_lg_generation(m->g));
			goto done;
		}
		for (size_t i = 0; i < n; i++)
			if (!mq_lg_owns(m->g, e[i].topic, e[i].partition)) {
				mq_errf(err, MQ_E_GENERATION, "%s/%d is not "
					"assigned to member %s", e[i].topic,
					e[i].partition, member_id);
				goto done;
			}
	}
	/* groups/ exists: the turn's mq_store_open made sure. The offsets
	 * are read again each time, as another process may have committed
	 * since. */
	if (mq_offsets_load(l->groups_dir, group, true, &o, err) < 0)
		goto done;
	for (size_t i = 0; i < n; i++)
		if (mq_offsets_commit(o, e[i].topic, e[i].partition,
				      e[i].offset, generation < 0 &&
				      !(flags & MQ_COMMIT_BACKWARD), err) < 0)
			goto done;
	if (mq_offsets_save(o, err) < 0)
		goto done;
	rc = 0;
done:
	mq_offsets_free(o);
	lo_end_write(l);
out:
	pthread_mutex_unlock(&l->mu);
	return rc;
}

/* One group: its members from the lock files, its offsets from disk. */
static int describe_one(struct limpl *l, const char *name, mq_group_info *g,
			mq_err *err)
{
	mq_offsets *o = NULL;
	mq_err e;
	size_t n;

	if (!(g->name = strdup(name)))
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	if (mq_lg_describe(l->groups_dir, name, g, err) < 0)
		return -1;
	if (mq_offsets_load(l->groups_dir, name, false, &o, &e) < 0)
		return 0;	/* as the broker: no offsets to show */
	n = mq_offsets_count(o);
	g->offsets = calloc(n ? n : 1, sizeof *g->offsets);
	if (!g->offsets) {
		mq_offsets_free(o);
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		const mq_offset_entry *oe = mq_offsets_at(o, i);
		mq_group_offset *go = &g->offsets[i];
		if (!(go->topic = strdup(oe->topic))) {
			mq_offsets_free(o);
			return mq_errf(err, MQ_E_NOMEM, "out of memory");
		}
		go->partition = oe->partition;
		go->offset = oe->offset;
		go->commit_ms = oe->commit_ms;
		g->noffsets++;
	}
	mq_offsets_free(o);
	return 0;
}

int lo_describe(mq_ep *ep, const char *group, mq_group_info **out,
		      size_t *nout, mq_err *err)
{
	struct limpl *l = ep->impl;
	char **names = NULL, *one[1] = { NULL };
	size_t n = 0, i;
	mq_group_info *g;
	int rc = -1;

	*out = NULL;
	*nout = 0;
	if (group && group[0]) {
		if (mq_name_check(group, err) < 0)
			return -1;
		one[0] = (char *)group;
		n = 1;
	} else if (mq_offsets_list_groups(l->groups_dir, &names, &n,
					  err) < 0) {
		return -1;
	}
	g = calloc(n ? n : 1, sizeof *g);
	if (!g) {
		mq_errf(err, MQ_E_NOMEM, "out of memory");
		goto out;
	}
	pthread_mutex_lock(&l->mu);
	for (i = 0; i < n; i++)
		if (describe_one(l, names ? names[i] : one[i], &g[i], err) < 0)
			break;
	pthread_mutex_unlock(&l->mu);
	if (i < n) {
		mq_group_info_free(g, n);
		goto out;
	}
	*out = g;
	*nout = n;
	rc = 0;
out:
	if (names)
		mq_names_free(names, n);
	return rc;
}

void lo_leave_all(struct limpl *l)
{
	pthread_mutex_lock(&l->mu);
	while (l->members) {
		struct membership *m = l->members;
		l->members = m->next;
		mq_lg_leave(m->g);
		free(m);
	}
	pthread_mutex_unlock(&l->mu);
}
