/*
 * groups.c - consumer groups: membership, rebalancing, assignment and
 * fenced commits.
 *
 * A member joins with the topics it wants and is bound to its connection:
 * when the connection drops (the consumer died) the member leaves at once;
 * a member that stops heartbeating for its session timeout is removed.
 * Any change of membership starts a rebalance: the group is "rebalancing"
 * until every member has joined again (heartbeats answer
 * rebalance-in-progress to tell them) or the slowest one's session timeout
 * passes; then the generation goes up, the broker assigns the partitions
 * round robin over the sorted members, and every waiting join is answered
 * at once.
 *
 * Fencing: a member's commit carries its generation and is accepted only
 * if that is the group's current generation and each partition is assigned
 * to that member, so a consumer that lost a partition cannot overwrite the
 * progress of the member that took it over. While a rebalance is under way
 * the generation has not moved yet, so members can still commit what they
 * finished before they join again.
 */
#include "broker.h"
#include "name.h"
#include "offsets.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONTAINER(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))


struct assigned {
	struct btopic *t;
	int32_t partition;
};

struct gmember {
	struct gmember *next;
	char id[160];
	char client[128];
	struct conn *c;
	char **topics;
	size_t ntopics;
	uint32_t session_ms;
	int64_t last_seen;
	bool join_pending;
	uint32_t join_id;
	struct assigned *assign;
	size_t nassign;
};

struct group {
	struct group *next;
	struct broker *b;
	char name[MQ_NAME_MAX + 1];
	int32_t generation;
	bool preparing;
	ev_timer rebalance_timer;
	struct gmember *members;
	int nmembers;
	uint64_t member_serial;
	mq_offsets *offsets;
};

static struct group *group_find(struct broker *b, const char *name)
{
	for (struct group *g = b->groups; g; g = g->next)
		if (strcmp(g->name, name) == 0)
			return g;
	return NULL;
}

static void on_rebalance_timeout(struct ev_loop *loop, ev_timer *w, int revents);

static struct group *group_get(struct broker *b, const char *name)
{
	struct group *g = group_find(b, name);

	if (g)
		return g;
	g = calloc(1, sizeof *g);
	if (!g)
		return NULL;
	g->b = b;
	snprintf(g->name, sizeof g->name, "%s", name);
	ev_init(&g->rebalance_timer, on_rebalance_timeout);
	g->next = b->groups;
	b->groups = g;
	return g;
}

/* Committed offsets of g, loaded on first use. */
static mq_offsets *group_offsets(struct group *g, bool create, mq_err *err)
{
	if (!g->offsets &&
	    mq_offsets_load(mq_store_groups_dir(g->b->store), g->name, create,
			    &g->offsets, err) < 0)
		return NULL;
	return g->offsets;
}

static struct gmember *member_find(struct group *g, const char *id)
{
	for (struct gmember *m = g->members; m; m = m->next)
		if (strcmp(m->id, id) == 0)
			return m;
	return NULL;
}

static void member_free_topics(struct gmember *m)
{
	for (size_t i = 0; i < m->ntopics; i++)
		free(m->topics[i]);
	free(m->topics);
	m->topics = NULL;
	m->ntopics = 0;
}

static void join_reply(struct group *g, struct gmember *m, const mq_err *err)
{
	struct conn *c = m->c;

	if (!m->join_pending)
		return;
	m->join_pending = false;
	if (!c->dead) {
		if (err) {
			reply_error(c, m->join_id, MQ_T_JOIN_GROUP, err);
		} else {
			size_t fs;
			mq_wbuf *w = reply_begin(c, m->join_id, MQ_T_JOIN_GROUP,
						 0, NULL, &fs);
			mq_w_str(w, m->id);
			mq_w_u32(w, (uint32_t)g->generation);
			mq_w_u32(w, (uint32_t)m->nassign);
			for (size_t i = 0; i < m->nassign; i++) {
				mq_w_str(w, m->assign[i].t->name);
				mq_w_u32(w, (uint32_t)m->assign[i].partition);
			}
			reply_end(c, fs);
		}
	}
	conn_deferred_done(c);
}

static int cmp_member(const void *a, const void *b)
{
	const struct gmember *x = *(struct gmember *const *)a;
	const struct gmember *y = *(struct gmember *const *)b;
	return strcmp(x->id, y->id);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool subscribed(const struct gmember *m, const char *topic)
{
	for (size_t i = 0; i < m->ntopics; i++)
		if (strcmp(m->topics[i], topic) == 0)
			return true;
	return false;
}

static int add_assignment(struct gmember *m, struct btopic *t, int32_t p)
{
	struct assigned *a = realloc(m->assign, (m->nassign + 1) * sizeof *a);

	if (!a)
		return -1;
	m->assign = a;
	m->assign[m->nassign].t = t;
	m->assign[m->nassign].partition = p;
	m->nassign++;
	return 0;
}

/* Round robin over the members (sorted by id) subscribed to each topic
 * (sorted by name), continuing the rotation from topic to topic. */
static void assign_partitions(struct group *g)
{
	/* Members sorted by id, then room for one topic's subscribers. */
	struct gmember **ms = calloc(2 * ((size_t)g->nmembers + 1), sizeof *ms);
	char **topics = NULL;
	size_t nt = 0, cap = 0, rot = 0;
	int n = 0;

	if (!ms)
		return;
	for (struct gmember *m = g->members; m; m = m->next) {
		free(m->assign);
		m->assign = NULL;
		m->nassign = 0;
		ms[n++] = m;
		for (size_t i = 0; i < m->ntopics; i++) {
			if (nt == cap) {
				cap = cap ? cap * 2 : 16;
				char **t = realloc(topics, cap * sizeof *t);
				if (!t)
					goto out;
				topics = t;
			}
			topics[nt++] = m->topics[i];
		}
	}
	qsort(ms, (size_t)n, sizeof *ms, cmp_member);
	if (nt)
		qsort(topics, nt, sizeof *topics, cmp_str);
	for (size_t i = 0; i < nt; i++) {
		struct btopic *t;
		struct gmember **subs = ms + n + 1;	/* second half */
		size_t ns = 0;

		if (i && strcmp(topics[i], topics[i - 1]) == 0)
			continue;
		if (!(t = topic_find(g->b, topics[i])))
			continue;
		for (int k = 0; k < n; k++)
			if (subscribed(ms[k], t->name))
				subs[ns++] = ms[k];
		if (!ns)
			continue;
		for (int32_t p = 0; p < t->nparts; p++)
			if (add_assignment(subs[(rot + (size_t)p) % ns], t, p) < 0)
				log_error("out of memory assigning %s/%d",
					  t->name, p);
		rot += (size_t)t->nparts;
	}
out:
	free(topics);
	free(ms);
}

static void rebalance_complete(struct group *g)
{
	ev_timer_stop(g->b->loop, &g->rebalance_timer);
	g->preparing = false;
	g->generation++;
	assign_partitions(g);
	log_info("group %s: generation %d with %d member(s)", g->name,
		 g->generation, g->nmembers);
	for (struct gmember *m = g->members; m; m = m->next) {
		log_debug("group %s: member %s has %zu partition(s)", g->name,
			  m->id, m->nassign);
		join_reply(g, m, NULL);
	}
}

static void maybe_complete(struct group *g)
{
	if (!g->preparing)
		return;
	for (struct gmember *m = g->members; m; m = m->next)
		if (!m->join_pending)
			return;
	rebalance_complete(g);
}

static void rebalance_start(struct group *g, const char *why)
{
	uint32_t wait = 0;

	if (!g->preparing)
		log_info("group %s: rebalancing (%s)", g->name, why);
	g->preparing = true;
	for (struct gmember *m = g->members; m; m = m->next)
		if (m->session_ms > wait)
			wait = m->session_ms;
	ev_timer_stop(g->b->loop, &g->rebalance_timer);
	ev_timer_set(&g->rebalance_timer, wait / 1000.0, 0.);
	ev_timer_start(g->b->loop, &g->rebalance_timer);
}

/* Take m out of g and free it (answering its join, if one waits). */
static void member_unlink(struct group *g, struct gmember *m, const char *why)
{
	struct gmember **pp = &g->members;
	mq_err err;

	while (*pp && *pp != m)
		pp = &(*pp)->next;
	if (!*pp)
		return;
	*pp = m->next;
	g->nmembers--;
	log_info("group %s: member %s left (%s)", g->name, m->id, why);
	mq_errf(&err, MQ_E_UNKNOWN_MEMBER, "member %s was removed: %s",
		m->id, why);
	join_reply(g, m, &err);
	member_free_topics(m);
	free(m->assign);
	free(m);
}

/* The group after a member went: rebalance the rest, or fence the
 * stragglers of the old generation if nobody is left. */
static void after_departure(struct group *g, const char *why)
{
	if (g->nmembers > 0) {
		rebalance_start(g, why);
		maybe_complete(g);
	} else {
		ev_timer_stop(g->b->loop, &g->rebalance_timer);
		g->preparing = false;
		g->generation++;
	}
}

static void member_remove(struct group *g, struct gmember *m, const char *why)
{
	member_unlink(g, m, why);
	after_departure(g, why);
}

static void on_rebalance_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct group *g = CONTAINER(w, struct group, rebalance_timer);
	struct gmember *m, *next;
	(void)loop;
	(void)revents;

	/* Whoever did not join again in time is out. */
	for (m = g->members; m; m = next) {
		next = m->next;
		if (!m->join_pending)
			member_unlink(g, m, "did not rejoin in time");
	}
	if (g->nmembers > 0) {
		rebalance_complete(g);
	} else {
		g->preparing = false;
		g->generation++;
	}
}

static void on_session_check(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct broker *b = CONTAINER(w, struct broker, session_timer);
	int64_t now = mq_mono_ms();
	(void)loop;
	(void)revents;

	for (struct group *g = b->groups; g; g = g->next) {
		struct gmember *m, *next;
		for (m = g->members; m; m = next) {
			next = m->next;
			if (!m->join_pending &&
			    now - m->last_seen > (int64_t)m->session_ms)
				member_remove(g, m, "session timed out");
		}
	}
}

void groups_init(struct broker *b)
{
	ev_timer_init(&b->session_timer, on_session_check, 0.5, 0.5);
	ev_timer_start(b->loop, &b->session_timer);
}

void groups_conn_closed(struct broker *b, struct conn *c)
{
	for (struct group *g = b->groups; g; g = g->next) {
		struct gmember *m, *next;
		for (m = g->members; m; m = next) {
			next = m->next;
			if (m->c == c)
				member_remove(g, m, "connection closed");
		}
	}
}

void groups_shutdown(struct broker *b)
{
	mq_err err;

	mq_errf(&err, MQ_E_SHUTDOWN, "broker is shutting down");
	for (struct group *g = b->groups; g; g = g->next) {
		ev_timer_stop(b->loop, &g->rebalance_timer);
		for (struct gmember *m = g->members; m; m = m->next)
			join_reply(g, m, &err);
	}
}

void groups_free(struct broker *b)
{
	ev_timer_stop(b->loop, &b->session_timer);
	while (b->groups) {
		struct group *g = b->groups;
		b->groups = g->next;
		ev_timer_stop(b->loop, &g->rebalance_timer);
		while (g->members) {
			struct gmember *m = g->members;
			g->members = m->next;
			member_free_topics(m);
			free(m->assign);
			free(m);
		}
		mq_offsets_free(g->offsets);
		free(g);
	}
}

/* ---- requests ---- */

static int take_group(mq_rbuf *r, char *buf, size_t size, mq_err *err)
{
	const char *s;
	size_t n;

	mq_r_str(r, &s, &n);
	if (r->bad)
		return mq_errf(err, MQ_E_INVAL, "malformed request");
	if (mq_name_check_n(s, n, err) < 0 || n >= size)
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return 0;
}

static void take_member_id(mq_rbuf *r, char *buf, size_t size)
{
	mq_r_strbuf(r, buf, size);
}

void handle_join(struct conn *c, uint32_t id, mq_rbuf *r)
{
	struct broker *b = c->b;
	char gname[MQ_NAME_MAX + 1], mid[160], client[128];
	char **topics = NULL;
	uint32_t session, nt;
	mq_err err = { 0 };
	struct group *g;
	struct gmember *m;
	bool changed = false;

	if (take_group(r, gname, sizeof gname, &err) < 0)
		return reply_error(c, id, MQ_T_JOIN_GROUP, &err);
	take_member_id(r, mid, sizeof mid);
	mq_r_strbuf(r, client, sizeof client);
	session = mq_r_u32(r);
	nt = mq_r_count(r, 2);
	if (r->bad || nt == 0 || nt > MQ_MAX_SUBSCRIBE) {
		mq_errf(&err, MQ_E_INVAL, "malformed join request (1 to %d "
			"topics expected)", MQ_MAX_SUBSCRIBE);
		return reply_error(c, id, MQ_T_JOIN_GROUP, &err);
	}
	topics = calloc(nt, sizeof *topics);
	if (!topics) {
		mq_errf(&err, MQ_E_NOMEM, "out of memory");
		return reply_error(c, id, MQ_T_JOIN_GROUP, &err);
	}
	for (uint32_t i = 0; i < nt; i++) {
		const char *s;
		size_t n;
		mq_r_str(r, &s, &n);
		if (r->bad) {
			mq_errf(&err, MQ_E_INVAL, "malformed join request");
			goto fail;
		}
		if (mq_topic_check_n(s, n, true, &err) < 0)
			goto fail;
		topics[i] = strndup(s, n);
		if (!topics[i]) {
			mq_errf(&err, MQ_E_NOMEM, "out of memory");
			goto fail;
		}
		if (!topic_find(b, topics[i]) && b->o.auto_create &&
		    !mq_topic_is_internal(topics[i]) &&
		    !topic_create(b, topics[i], b->o.default_partitions, &err))
			goto fail;
	}
	qsort(topics, nt, sizeof *topics, cmp_str);
	if (session < MQ_SESSION_MIN_MS)
		session = MQ_SESSION_MIN_MS;
	if (session > MQ_SESSION_MAX_MS)
		session = MQ_SESSION_MAX_MS;
	if (!(g = group_get(b, gname))) {
		mq_errf(&err, MQ_E_NOMEM, "out of memory");
		goto fail;
	}
	if (mid[0]) {
		m = member_find(g, mid);
		if (!m || m->c != c) {
			mq_errf(&err, MQ_E_UNKNOWN_MEMBER,
				"group %s has no member %s on this connection; "
				"join with an empty member id", gname, mid);
			goto fail;
		}
		if (m->ntopics != nt)
			changed = true;
		for (uint32_t i = 0; !changed && i < nt; i++)
			changed = strcmp(m->topics[i], topics[i]) != 0;
		member_free_topics(m);
	} else {
		m = calloc(1, sizeof *m);
		if (!m) {
			mq_errf(&err, MQ_E_NOMEM, "out of memory");
			goto fail;
		}
		/* The id says who it is and stays unique in the group. */
		snprintf(m->id, sizeof m->id, "%.100s-%llu",
			 client[0] ? client : "member",
			 (unsigned long long)++g->member_serial);
		for (char *p = m->id; *p; p++)
			if (*p <= ' ' || *p > '~')
				*p = '_';
		snprintf(m->client, sizeof m->client, "%s", client);
		m->c = c;
		m->next = g->members;
		g->members = m;
		g->nmembers++;
		changed = true;
		log_info("group %s: member %s joined from %s", gname, m->id,
			 c->peer);
	}
	m->topics = topics;
	m->ntopics = nt;
	m->session_ms = session;
	m->last_seen = mq_mono_ms();
	if (m->join_pending) {
		mq_err e2;
		mq_errf(&e2, MQ_E_REBALANCE, "superseded by a newer join");
		join_reply(g, m, &e2);
	}
	m->join_pending = true;
	m->join_id = id;
	c->deferred++;
	conn_ref(c);
	if (!g->preparing) {
		if (changed || g->generation == 0)
			rebalance_start(g, changed ? "membership changed"
						   : "first join");
		else {
			/* Nothing changed: the current assignment stands. */
			join_reply(g, m, NULL);
			return;
		}
	}
	maybe_complete(g);
	return;
fail:
	for (uint32_t i = 0; i < nt; i++)
		free(topics[i]);
	free(topics);
	reply_error(c, id, MQ_T_JOIN_GROUP, &err);
}

/* Find the member a request names, or answer with the error. */
static struct gmember *request_member(struct conn *c, uint32_t id,
				      uint16_t type, struct group **gp,
				      mq_rbuf *r, char *gname)
{
	char mid[160];
	mq_err err = { 0 };
	struct group *g;
	struct gmember *m;

	if (take_group(r, gname, MQ_NAME_MAX + 1, &err) < 0) {
		reply_error(c, id, type, &err);
		return NULL;
	}
	take_member_id(r, mid, sizeof mid);
	if (r->bad) {
		mq_errf(&err, MQ_E_INVAL, "malformed request");
		reply_error(c, id, type, &err);
		return NULL;
	}
	g = group_find(c->b, gname);
	m = g ? member_find(g, mid) : NULL;
	if (!m || m->c != c) {
		mq_errf(&err, MQ_E_UNKNOWN_MEMBER,
			"group %s has no member %s; join again", gname, mid);
		reply_error(c, id, type, &err);
		return NULL;
	}
	*gp = g;
	return m;
}

void handle_heartbeat(struct conn *c, uint32_t id, mq_rbuf *r)
{
	char gname[MQ_NAME_MAX + 1];
	struct group *g;
	struct gmember *m = request_member(c, id, MQ_T_HEARTBEAT, &g, r, gname);
	int32_t gen = mq_r_i32(r);
	mq_err err;

	if (!m)
		return;
	m->last_seen = mq_mono_ms();
	if (g->preparing) {
		mq_errf(&err, MQ_E_REBALANCE, "group %s is rebalancing; join "
			"again", g->name);
		return reply_error(c, id, MQ_T_HEARTBEAT, &err);
	}
	if (gen != g->generation) {
		mq_errf(&err, MQ_E_GENERATION, "generation %d is stale; group "
			"%s is at %d", gen, g->name, g->generation);
		return reply_error(c, id, MQ_T_HEARTBEAT, &err);
	}
	reply_ok(c, id, MQ_T_HEARTBEAT);
}

void handle_leave(struct conn *c, uint32_t id, mq_rbuf *r)
{
	char gname[MQ_NAME_MAX + 1];
	struct group *g;
	struct gmember *m = request_member(c, id, MQ_T_LEAVE_GROUP, &g, r,
					   gname);

	if (!m)
		return;
	member_remove(g, m, "left the group");
	reply_ok(c, id, MQ_T_LEAVE_GROUP);
}

static bool owns(const struct gmember *m, const char *topic, int32_t p)
{
	for (size_t i = 0; i < m->nassign; i++)
		if (m->assign[i].partition == p &&
		    strcmp(m->assign[i].t->name, topic) == 0)
			return true;
	return false;
}

struct centry {
	char topic[MQ_TOPIC_MAX + 1];
	int32_t partition;
	int64_t offset;
};

void handle_commit(struct conn *c, uint32_t id, mq_rbuf *r)
{
	struct broker *b = c->b;
	char gname[MQ_NAME_MAX + 1], mid[160];
	struct centry *e = NULL;
	mq_err err = { 0 };
	struct group *g;
	struct gmember *m = NULL;
	mq_offsets *o;
	int32_t gen;
	uint16_t flags;
	uint32_t n;

	if (take_group(r, gname, sizeof gname, &err) < 0)
		return reply_error(c, id, MQ_T_COMMIT, &err);
	take_member_id(r, mid, sizeof mid);
	gen = mq_r_i32(r);
	flags = mq_r_u16(r);
	n = mq_r_count(r, 14);
	if (r->bad) {
		mq_errf(&err, MQ_E_INVAL, "malformed commit request");
		return reply_error(c, id, MQ_T_COMMIT, &err);
	}
	e = calloc(n ? n : 1, sizeof *e);
	if (!e) {
		mq_errf(&err, MQ_E_NOMEM, "out of memory");
		return reply_error(c, id, MQ_T_COMMIT, &err);
	}
	/* Check everything before changing anything: all or nothing. */
	for (uint32_t i = 0; i < n; i++) {
		const char *s;
		size_t len;
		struct btopic *t;

		mq_r_str(r, &s, &len);
		e[i].partition = mq_r_i32(r);
		e[i].offset = mq_r_i64(r);
		if (r->bad) {
			mq_errf(&err, MQ_E_INVAL, "malformed commit request");
			goto fail;
		}
		if (mq_topic_check_n(s, len, true, &err) < 0)
			goto fail;
		memcpy(e[i].topic, s, len);
		e[i].topic[len] = '\0';
		if (!(t = topic_find(b, e[i].topic))) {
			mq_errf(&err, MQ_E_NO_TOPIC, "unknown topic %s",
				e[i].topic);
			goto fail;
		}
		if (e[i].partition < 0 || e[i].partition >= t->nparts) {
			mq_errf(&err, MQ_E_NO_PARTITION,
				"topic %s has no partition %d", e[i].topic,
				e[i].partition);
			goto fail;
		}
		int64_t end = mq_part_end(t->parts[e[i].partition].p);
		if (e[i].offset < 0 || e[i].offset > end) {
			mq_errf(&err, MQ_E_OFFSET_RANGE,
				"offset %lld for %s/%d is outside [0, %lld]",
				(long long)e[i].offset, e[i].topic,
				e[i].partition, (long long)end);
			goto fail;
		}
	}
	g = group_find(b, gname);
	if (gen < 0) {
		/* An operator's commit (mq-offset). */
		if ((flags & MQ_COMMIT_IF_EMPTY) && g && g->nmembers > 0) {
			mq_errf(&err, MQ_E_BUSY,
				"group %s has %d live member(s); stop them first "
				"or force it", gname, g->nmembers);
			goto fail;
		}
	} else {
		m = g ? member_find(g, mid) : NULL;
		if (!m || m->c != c) {
			mq_errf(&err, MQ_E_UNKNOWN_MEMBER,
				"group %s has no member %s on this connection; "
				"join again", gname, mid);
			goto fail;
		}
		m->last_seen = mq_mono_ms();
		if (gen != g->generation) {
			mq_errf(&err, MQ_E_GENERATION,
				"commit from generation %d rejected: group %s is "
				"at generation %d", gen, gname, g->generation);
			goto fail;
		}
		for (uint32_t i = 0; i < n; i++)
			if (!owns(m, e[i].topic, e[i].partition)) {
				mq_errf(&err, MQ_E_GENERATION,
					"%s/%d is not assigned to member %s",
					e[i].topic, e[i].partition, mid);
				goto fail;
			}
	}
	if (!g && !(g = group_get(b, gname))) {
		mq_errf(&err, MQ_E_NOMEM, "out of memory");
		goto fail;
	}
	if (!(o = group_offsets(g, true, &err)))
		goto fail;
	for (uint32_t i = 0; i < n; i++)
		if (mq_offsets_commit(o, e[i].topic, e[i].partition,
				      e[i].offset, gen < 0 &&
				      !(flags & MQ_COMMIT_BACKWARD), &err) < 0)
			goto undo;
	if (mq_offsets_save(o, &err) < 0) {
		log_error("group %s: cannot store offsets: %s", gname, err.msg);
		goto undo;
	}
	free(e);
	return reply_ok(c, id, MQ_T_COMMIT);
undo:
	/* Forget the half-applied change; the file still has the last
	 * good state. */
	mq_offsets_free(g->offsets);
	g->offsets = NULL;
fail:
	free(e);
	reply_error(c, id, MQ_T_COMMIT, &err);
}

static void describe_one(struct broker *b, mq_wbuf *w, const char *name)
{
	struct group *g = group_find(b, name);
	mq_offsets *o = NULL;
	mq_err err;
	size_t n;

	if (g)
		o = group_offsets(g, false, &err);
	else if (mq_offsets_load(mq_store_groups_dir(b->store), name, false,
				 &o, &err) < 0)
		o = NULL;
	mq_w_str(w, name);
	mq_w_str(w, !g || g->nmembers == 0 ? "empty"
		    : g->preparing ? "rebalancing" : "stable");
	mq_w_u32(w, g ? (uint32_t)g->generation : 0);
	mq_w_u32(w, g ? (uint32_t)g->nmembers : 0);
	for (struct gmember *m = g ? g->members : NULL; m; m = m->next) {
		mq_w_str(w, m->id);
		mq_w_str(w, m->client);
		mq_w_u32(w, (uint32_t)m->nassign);
		for (size_t i = 0; i < m->nassign; i++) {
			mq_w_str(w, m->assign[i].t->name);
			mq_w_u32(w, (uint32_t)m->assign[i].partition);
		}
	}
	n = o ? mq_offsets_count(o) : 0;
	mq_w_u32(w, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		const mq_offset_entry *oe = mq_offsets_at(o, i);
		mq_w_str(w, oe->topic);
		mq_w_u32(w, (uint32_t)oe->partition);
		mq_w_u64(w, (uint64_t)oe->offset);
		mq_w_u64(w, (uint64_t)oe->commit_ms);
	}
	if (!g)
		mq_offsets_free(o);
}

void handle_describe_groups(struct conn *c, uint32_t id, mq_rbuf *r)
{
	struct broker *b = c->b;
	char gname[MQ_NAME_MAX + 1];
	const char *s;
	size_t len, fs, n = 0, cap = 0;
	char **names = NULL;
	mq_err err = { 0 };
	mq_wbuf *w;

	mq_r_str(r, &s, &len);
	if (r->bad) {
		mq_errf(&err, MQ_E_INVAL, "malformed describe-groups request");
		return reply_error(c, id, MQ_T_DESCRIBE_GROUPS, &err);
	}
	if (len) {
		if (mq_name_check_n(s, len, &err) < 0)
			return reply_error(c, id, MQ_T_DESCRIBE_GROUPS, &err);
		memcpy(gname, s, len);
		gname[len] = '\0';
		w = reply_begin(c, id, MQ_T_DESCRIBE_GROUPS, 0, NULL, &fs);
		mq_w_u32(w, 1);
		describe_one(b, w, gname);
		return reply_end(c, fs);
	}
	/* All groups: those on disk plus those only in memory. */
	if (mq_offsets_list_groups(mq_store_groups_dir(b->store), &names, &n,
				   &err) < 0)
		return reply_error(c, id, MQ_T_DESCRIBE_GROUPS, &err);
	cap = n;
	for (struct group *g = b->groups; g; g = g->next) {
		bool found = false;
		for (size_t i = 0; i < n && !found; i++)
			found = strcmp(names[i], g->name) == 0;
		if (found)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			char **nn = realloc(names, cap * sizeof *nn);
			if (!nn)
				break;
			names = nn;
		}
		if (!(names[n] = strdup(g->name)))
			break;
		n++;
	}
	if (n)
		qsort(names, n, sizeof *names, cmp_str);
	w = reply_begin(c, id, MQ_T_DESCRIBE_GROUPS, 0, NULL, &fs);
	mq_w_u32(w, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		describe_one(b, w, names[i]);
	reply_end(c, fs);
	mq_names_free(names, n);
}
