/*
 * lgroup.c - consumer groups without a broker (see lgroup.h).
 *
 * Every descriptor here is opened O_CLOEXEC: a consumer that runs a
 * command per message must not let the command inherit its locks, or a
 * dead consumer's partitions would stay taken while the command lives.
 */
#include "lgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "name.h"

#define MEMBERS "members"
#define OWNERS "owners"
#define GENERATION "generation"
#define LOCK_EXT ".lock"
#define TMP_PREFIX ".tmp-"
#define MEMBER_MAX 8192

struct held {
	char *topic;
	int32_t partition;
	int fd;
};

/* A partition seen free while the member was at its share: taken anyway
 * once it has been free for a session timeout. */
struct orphan {
	char *topic;
	int32_t partition;
	int64_t since;
};

struct mq_lgroup {
	char gdir[PATH_MAX];        /* GROUPS_DIR/<group> */
	char group[MQ_NAME_MAX + 1];
	char id[128];               /* fits mq_assignment.member_id */
	char client[128];
	char file[PATH_MAX];        /* our member file */
	int fd;                     /* its lock, held for life */
	char **topics;
	size_t ntopics;
	uint32_t session_ms;
	int32_t generation;
	bool assigned;              /* an assignment was handed out */
	bool dirty;                 /* partitions changed since then */
	struct held *held;          /* sorted by topic, partition */
	size_t nheld, capheld;
	struct orphan *orph;
	size_t norph;
};

/* A live member as its file describes it. */
struct live {
	char *id;
	char *client;
	char **topics;              /* NULL with all_topics: unreadable */
	size_t ntopics;
	bool all_topics;
	bool self;
	bool skip;                  /* shares none of our topics */
	size_t count;               /* partitions of ours it holds */
};

static unsigned serial;

/* Printable, no blanks: ids and client names go on one line. */
static void clean_word(char *dst, size_t size, const char *src)
{
	size_t o = 0;

	for (; src && *src && o + 1 < size; src++)
		dst[o++] = (*src <= ' ' || *src > '~') ? '_' : *src;
	dst[o] = '\0';
}

static int cmp_tp(const char *t1, int32_t p1, const char *t2, int32_t p2)
{
	int c = strcmp(t1, t2);
	return c ? c : (p1 > p2) - (p1 < p2);
}


static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void free_live(struct live *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(l[i].id);
		free(l[i].client);
		free_strv(l[i].topics, l[i].ntopics);
	}
	free(l);
}

/* ---- member files ---- */

static int member_text(const mq_lgroup *g, char **out, size_t *len)
{
	size_t cap = 256 + strlen(g->id) + strlen(g->client), n;
	char *s;

	for (size_t i = 0; i < g->ntopics; i++)
		cap += strlen(g->topics[i]) + 1;
	s = malloc(cap);
	if (!s)
		return -1;
	n = (size_t)snprintf(s, cap, "mq-member 1\nid %s\nclient %s\ntopics",
			     g->id, g->client);
	for (size_t i = 0; i < g->ntopics; i++)
		n += (size_t)snprintf(s + n, cap - n, " %s", g->topics[i]);
	n += (size_t)snprintf(s + n, cap - n, "\n");
	*out = s;
	*len = n;
	return 0;
}

/* Rewrite our member file in place (we hold its lock). */
static int member_rewrite(mq_lgroup *g, mq_err *err)
{
	char *text;
	size_t len;

	if (member_text(g, &text, &len) < 0)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	if (ftruncate(g->fd, 0) < 0 ||
	    mq_pwrite_full(g->fd, text, len, 0) < 0) {
		int e = errno;
		free(text);
		return mq_errsys(err, MQ_E_IO, e, "write %s", g->file);
	}
	free(text);
	return 0;
}

/* Parse a member file; returns 0 with l filled (id at least), -1 if it
 * is not one (yet). */
static int parse_member(char *text, struct live *l)
{
	char *save = NULL, *line;
	bool magic = false;

	memset(l, 0, sizeof *l);
	l->all_topics = true;
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strcmp(line, "mq-member 1") == 0) {
			magic = true;
		} else if (strncmp(line, "id ", 3) == 0 && !l->id) {
			l->id = strdup(line + 3);
		} else if (strncmp(line, "client ", 7) == 0 && !l->client) {
			l->client = strdup(line + 7);
		} else if (strncmp(line, "topics", 6) == 0 &&
			   (line[6] == ' ' || line[6] == '\0')) {
			char *s2 = NULL, *t;
			free_strv(l->topics, l->ntopics);
			l->topics = NULL;
			l->ntopics = 0;
			l->all_topics = false;
			for (t = strtok_r(line + 6, " ", &s2); t;
			     t = strtok_r(NULL, " ", &s2)) {
				char **v = realloc(l->topics, (l->ntopics + 1) *
						   sizeof *v);
				if (!v || !(v[l->ntopics] = strdup(t))) {
					if (v)
						l->topics = v;
					l->all_topics = true;
					break;
				}
				l->topics = v;
				l->ntopics++;
			}
		}
	}
	if (!magic || !l->id || !l->client) {
		free(l->id);
		free(l->client);
		free_strv(l->topics, l->ntopics);
		memset(l, 0, sizeof *l);
		return -1;
	}
	return 0;
}

/* Read a small file from an open descriptor into a NUL-terminated
 * buffer. */
static char *read_fd(int fd, size_t max)
{
	char *buf = malloc(max + 1);
	ssize_t n;

	if (!buf)
		return NULL;
	n = mq_pread_full(fd, buf, max, 0);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/*
 * The live members of the group in gdir. A member file whose lock can be
 * taken is a dead member's (removed with cleanup). self_name is our own
 * file's name (marked self), or NULL. Returns 0 or -1 + err.
 */
static int scan_members(const char *gdir, bool cleanup, const char *self_name,
			struct live **out, size_t *nout, mq_err *err)
{
	char path[PATH_MAX];
	struct live *v = NULL;
	size_t n = 0;
	struct dirent *d;
	DIR *dir;

	*out = NULL;
	*nout = 0;
	if (mq_pathf(path, sizeof path, err, "%s/%s", gdir, MEMBERS) < 0)
		return -1;
	dir = opendir(path);
	if (!dir) {
		if (errno == ENOENT)
			return 0;
		return mq_errsys(err, MQ_E_IO, errno, "open %s", path);
	}
	while ((d = readdir(dir))) {
		size_t len = strlen(d->d_name);
		struct live l;
		char *text;
		int fd;

		if (cleanup && strncmp(d->d_name, TMP_PREFIX,
				       sizeof TMP_PREFIX - 1) == 0) {
			/* ".tmp-<pid>-<n>-<nonce>": a join that never
			 * finished. */
			long pid = strtol(d->d_name + sizeof TMP_PREFIX - 1,
					  NULL, 10);
			if (!mq_pid_alive(pid))
				unlinkat(dirfd(dir), d->d_name, 0);
			continue;
		}
		if (d->d_name[0] == '.' || len <= sizeof LOCK_EXT - 1 ||
		    strcmp(d->d_name + len - (sizeof LOCK_EXT - 1),
			   LOCK_EXT) != 0)
			continue;
		fd = openat(dirfd(dir), d->d_name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;	/* removed meanwhile */
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			/* Nobody holds it: its member is dead. Unlink while
			 * we hold the lock, so nobody can count it alive. */
			if (cleanup)
				unlinkat(dirfd(dir), d->d_name, 0);
			close(fd);
			continue;
		}
		text = read_fd(fd, MEMBER_MAX);
		close(fd);
		if (!text)
			continue;
		if (parse_member(text, &l) < 0) {
			/* Locked but not readable: a member rewriting its
			 * file. It lives; it subscribes to anything. */
			memset(&l, 0, sizeof l);
			l.id = strdup("");
			l.client = strdup("");
			l.all_topics = true;
		}
		free(text);
		l.self = self_name && strcmp(self_name, d->d_name) == 0;
		struct live *nv = realloc(v, (n + 1) * sizeof *nv);
		if (!nv || !l.id || !l.client) {
			free(l.id);
			free(l.client);
			free_strv(l.topics, l.ntopics);
			if (nv)
				v = nv;
			closedir(dir);
			free_live(v, n);
			return mq_errf(err, MQ_E_NOMEM, "out of memory");
		}
		v = nv;
		v[n++] = l;
	}
	closedir(dir);
	*out = v;
	*nout = n;
	return 0;
}

static bool subscribes_to(const struct live *l, const char *topic)
{
	if (l->all_topics)
		return true;
	for (size_t i = 0; i < l->ntopics; i++)
		if (strcmp(l->topics[i], topic) == 0)
			return true;
	return false;
}

static int set_topics(mq_lgroup *g, const char *const *topics, size_t n,
		      mq_err *err)
{
	char **v = calloc(n ? n : 1, sizeof *v);

	if (!v)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (mq_topic_check(topics[i], true, err) < 0) {
			free_strv(v, n);
			return -1;
		}
		if (!(v[i] = strdup(topics[i]))) {
			free_strv(v, n);
			return mq_errf(err, MQ_E_NOMEM, "out of memory");
		}
	}
	free_strv(g->topics, g->ntopics);
	g->topics = v;
	g->ntopics = n;
	return 0;
}

/*
 * A few random bits for a member's id and file name. The pid alone is
 * not enough: a container's consumer is pid 1 every time it restarts, so
 * a new member would take the id a dead one left in its owner files (and
 * count those partitions as its own without holding their locks), or the
 * name of the dead one's member file while someone is removing it.
 */
static uint32_t member_nonce(void)
{
	uint32_t v;
	struct timespec ts;

	if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v)
		return v;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec ^
	       ((uint32_t)getpid() << 16);
}

int mq_lg_join(const char *groups_dir, const char *group, const char *client,
	       uint32_t session_ms, const char *const *topics, size_t ntopics,
	       mq_lgroup **out, mq_err *err)
{
	char path[PATH_MAX], tmp[PATH_MAX], *text = NULL;
	unsigned n = ++serial;
	uint32_t nonce = member_nonce();
	size_t len;
	mq_lgroup *g;

	*out = NULL;
	if (mq_name_check(group, err) < 0)
		return -1;
	g = calloc(1, sizeof *g);
	if (!g)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	g->fd = -1;
	g->session_ms = session_ms;
	snprintf(g->group, sizeof g->group, "%s", group);
	clean_word(g->client, sizeof g->client, client && *client ? client
						 : "member");
	snprintf(g->id, sizeof g->id, "%.90s-%ld.%u-%08x", g->client,
		 (long)getpid(), n, nonce);
	if (set_topics(g, topics, ntopics, err) < 0 ||
	    mq_pathf(g->gdir, sizeof g->gdir, err, "%s/%s", groups_dir,
		  group) < 0 ||
	    mq_mkdir_durable(g->gdir, groups_dir, err) < 0 ||
	    mq_pathf(path, sizeof path, err, "%s/%s", g->gdir, MEMBERS) < 0 ||
	    mq_mkdir_durable(path, g->gdir, err) < 0 ||
	    mq_pathf(tmp, sizeof tmp, err, "%s/%s", g->gdir, OWNERS) < 0 ||
	    mq_mkdir_durable(tmp, g->gdir, err) < 0 ||
	    mq_pathf(g->file, sizeof g->file, err, "%s/%ld-%u-%08x%s", path,
		  (long)getpid(), n, nonce, LOCK_EXT) < 0 ||
	    mq_pathf(tmp, sizeof tmp, err, "%s/%s%ld-%u-%08x", path,
		  TMP_PREFIX, (long)getpid(), n, nonce) < 0)
		goto fail;
	/* Locked before it gets the name others look for (lgroup.h). */
	g->fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (g->fd < 0) {
		mq_errsys(err, MQ_E_IO, errno, "create %s", tmp);
		goto fail;
	}
	if (flock(g->fd, LOCK_EX | LOCK_NB) < 0) {
		mq_errsys(err, MQ_E_IO, errno, "lock %s", tmp);
		goto fail_tmp;
	}
	if (member_text(g, &text, &len) < 0) {
		mq_errf(err, MQ_E_NOMEM, "out of memory");
		goto fail_tmp;
	}
	if (mq_pwrite_full(g->fd, text, len, 0) < 0 || rename(tmp, g->file) < 0) {
		mq_errsys(err, MQ_E_IO, errno, "create %s", g->file);
		goto fail_tmp;
	}
	free(text);
	*out = g;
	return 0;
fail_tmp:
	free(text);
	unlink(tmp);
fail:
	if (g->fd >= 0)
		close(g->fd);
	free_strv(g->topics, g->ntopics);
	free(g);
	return -1;
}

int mq_lg_subscribe(mq_lgroup *g, const char *const *topics, size_t ntopics,
		    uint32_t session_ms, mq_err *err)
{
	bool same = ntopics == g->ntopics;

	for (size_t i = 0; same && i < ntopics; i++)
		same = strcmp(topics[i], g->topics[i]) == 0;
	g->session_ms = session_ms;
	if (same)
		return 0;
	if (set_topics(g, topics, ntopics, err) < 0)
		return -1;
	return member_rewrite(g, err);
}

/* ---- owner files ---- */

static int owner_path(const mq_lgroup *g, char *buf, size_t size,
		      const char *topic, int32_t p, mq_err *err)
{
	return mq_pathf(buf, size, err, "%s/%s/%s.%d%s", g->gdir, OWNERS, topic,
		     (int)p, LOCK_EXT);
}

/* The member id written in an owner file ("" if none). */
static void owner_of(const mq_lgroup *g, const char *topic, int32_t p,
		     char *id, size_t size)
{
	char path[PATH_MAX];
	ssize_t n;
	int fd;

	id[0] = '\0';
	if (owner_path(g, path, sizeof path, topic, p, NULL) < 0)
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = mq_pread_full(fd, id, size - 1, 0);
	close(fd);
	if (n <= 0) {
		id[0] = '\0';
		return;
	}
	id[n] = '\0';
	id[strcspn(id, "\n")] = '\0';
}

static ssize_t held_find(const mq_lgroup *g, const char *topic, int32_t p)
{
	for (size_t i = 0; i < g->nheld; i++)
		if (g->held[i].partition == p &&
		    strcmp(g->held[i].topic, topic) == 0)
			return (ssize_t)i;
	return -1;
}

/* Try to take (topic, p). 1 = ours now, 0 = someone has it, -1 + err. */
static int take(mq_lgroup *g, const char *topic, int32_t p, mq_err *err)
{
	char path[PATH_MAX], line[200];
	size_t i;
	int fd, n;

	if (owner_path(g, path, sizeof path, topic, p, err) < 0)
		return -1;
	if (g->nheld == g->capheld) {
		size_t cap = g->capheld ? g->capheld * 2 : 8;
		struct held *v = realloc(g->held, cap * sizeof *v);
		if (!v)
			return mq_errf(err, MQ_E_NOMEM, "out of memory");
		g->held = v;
		g->capheld = cap;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return mq_errsys(err, MQ_E_IO, errno, "open %s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK)
			return 0;
		return mq_errsys(err, MQ_E_IO, e, "lock %s", path);
	}
	char *t = strdup(topic);
	if (!t) {
		close(fd);
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	}
	/* Who owns it is only informative (listings), so a failed write
	 * is not an error: the lock is what counts. */
	n = snprintf(line, sizeof line, "%s\n", g->id);
	if (ftruncate(fd, 0) == 0)
		(void)mq_pwrite_full(fd, line, (size_t)n, 0);
	for (i = g->nheld; i > 0 && cmp_tp(g->held[i - 1].topic,
					   g->held[i - 1].partition, topic,
					   p) > 0; i--)
		g->held[i] = g->held[i - 1];
	g->held[i] = (struct held){ t, p, fd };
	g->nheld++;
	g->dirty = true;
	return 1;
}

static void give_back(mq_lgroup *g, size_t i)
{
	struct held *h = &g->held[i];

	if (ftruncate(h->fd, 0) < 0) {
		/* Listings may name us a little longer; harmless. */
	}
	flock(h->fd, LOCK_UN);
	close(h->fd);
	free(h->topic);
	memmove(h, h + 1, (g->nheld - i - 1) * sizeof *h);
	g->nheld--;
	g->dirty = true;
}

static struct orphan *orphan_find(mq_lgroup *g, const char *topic, int32_t p)
{
	for (size_t i = 0; i < g->norph; i++)
		if (g->orph[i].partition == p &&
		    strcmp(g->orph[i].topic, topic) == 0)
			return &g->orph[i];
	return NULL;
}

static void orphans_clear(mq_lgroup *g)
{
	for (size_t i = 0; i < g->norph; i++)
		free(g->orph[i].topic);
	free(g->orph);
	g->orph = NULL;
	g->norph = 0;
}

/* Keep the orphans in seen[] (the free partitions of this round). */
static void orphans_update(mq_lgroup *g, struct orphan *seen, size_t nseen)
{
	int64_t now = mq_mono_ms();

	for (size_t i = 0; i < nseen; i++) {
		struct orphan *o = orphan_find(g, seen[i].topic,
					       seen[i].partition);
		seen[i].since = o ? o->since : now;
		if (!(seen[i].topic = strdup(seen[i].topic))) {
			/* Out of memory: forget it; it is seen again. */
			seen[i].since = now;
			seen[i].topic = NULL;
		}
	}
	orphans_clear(g);
	size_t k = 0;
	for (size_t i = 0; i < nseen; i++)
		if (seen[i].topic)
			seen[k++] = seen[i];
	g->orph = seen;
	g->norph = k;
}

int mq_lg_balance(mq_lgroup *g, const mq_tp *cands, size_t n, bool apply,
		  bool *changed, mq_err *err)
{
	const char *self = strrchr(g->file, '/') + 1;
	struct live *live;
	struct orphan *seen = NULL;
	size_t nlive, nmembers = 1, share, excess = 0, nseen = 0, minother;
	bool others = false;
	char owner[200];
	int64_t now = mq_mono_ms();
	int rc = -1;

	*changed = false;
	if (scan_members(g->gdir, true, self, &live, &nlive, err) < 0)
		return -1;
	/* Partitions we hold that are no longer ours to consume. */
	for (size_t i = g->nheld; i > 0; i--) {
		bool want = false;
		for (size_t k = 0; k < n && !want; k++)
			want = cands[k].partition == g->held[i - 1].partition &&
			       strcmp(cands[k].topic, g->held[i - 1].topic) == 0;
		if (!want) {
			give_back(g, i - 1);
			*changed = true;
		}
	}
	/* Who else consumes any of these topics, and how much each has. */
	for (size_t i = 0; i < nlive; i++) {
		bool shares = false;
		if (live[i].self)
			continue;
		for (size_t k = 0; k < n && !shares; k++)
			shares = subscribes_to(&live[i], cands[k].topic);
		if (!shares) {
			live[i].skip = true;
			continue;
		}
		nmembers++;
		others = true;
	}
	share = n ? (n + nmembers - 1) / nmembers : 0;
	seen = calloc(n ? n : 1, sizeof *seen);
	if (!seen) {
		mq_errf(err, MQ_E_NOMEM, "out of memory");
		goto out;
	}
	for (size_t k = 0; k < n; k++) {
		bool owned = false;
		if (held_find(g, cands[k].topic, cands[k].partition) >= 0)
			continue;
		owner_of(g, cands[k].topic, cands[k].partition, owner,
			 sizeof owner);
		for (size_t i = 0; owner[0] && i < nlive; i++) {
			if (strcmp(live[i].id, owner) == 0) {
				owned = true;
				live[i].count++;
				break;
			}
		}
		if (!owned) {
			seen[nseen].topic = cands[k].topic;
			seen[nseen].partition = cands[k].partition;
			nseen++;
		}
	}
	minother = SIZE_MAX;
	for (size_t i = 0; i < nlive; i++)
		if (!live[i].self && !live[i].skip &&
		    live[i].count < minother)
			minother = live[i].count;
	if (g->nheld > share)
		excess = g->nheld - share;
	else if (others && g->nheld >= 2 && minother <= g->nheld - 2)
		excess = 1;
	if (excess) {
		*changed = true;
		if (apply)
			while (excess-- > 0)
				give_back(g, g->nheld - 1);
	} else {
		/* Take free partitions while below the share; beyond it,
		 * only those nobody took for a whole session timeout. */
		orphans_update(g, seen, nseen);
		seen = NULL;
		for (size_t k = 0; k < g->norph; k++) {
			struct orphan *o = &g->orph[k];
			int r;
			if (g->nheld >= share &&
			    now - o->since < (int64_t)g->session_ms)
				continue;
			r = take(g, o->topic, o->partition, err);
			if (r < 0)
				goto out;
			if (r == 1)
				*changed = true;
		}
	}
	if (!*changed && g->dirty && g->assigned)
		*changed = true;	/* taken at an earlier heartbeat */
	rc = 0;
out:
	free(seen);
	free_live(live, nlive);
	return rc;
}

/* Bump GDIR/generation; returns the new value (or 0 if it cannot). */
static int32_t bump_generation(const mq_lgroup *g)
{
	char path[PATH_MAX], buf[32];
	long v = 0;
	ssize_t n;
	int fd, len;

	if (mq_pathf(path, sizeof path, NULL, "%s/%s", g->gdir, GENERATION) < 0)
		return 0;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return 0;
	while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
		;
	n = mq_pread_full(fd, buf, sizeof buf - 1, 0);
	if (n > 0) {
		buf[n] = '\0';
		v = strtol(buf, NULL, 10);
	}
	if (v < 0 || v >= INT32_MAX)
		v = 0;
	v++;
	len = snprintf(buf, sizeof buf, "%ld\n", v);
	if (ftruncate(fd, 0) == 0)
		(void)mq_pwrite_full(fd, buf, (size_t)len, 0);
	close(fd);
	return (int32_t)v;
}

static int32_t read_generation(const char *gdir)
{
	char path[PATH_MAX], *text;
	long v = 0;

	if (mq_pathf(path, sizeof path, NULL, "%s/%s", gdir, GENERATION) < 0 ||
	    mq_read_file(path, 64, &text, NULL, NULL) < 0)
		return 0;
	v = strtol(text, NULL, 10);
	free(text);
	return v > 0 && v <= INT32_MAX ? (int32_t)v : 0;
}

int mq_lg_assignment(mq_lgroup *g, mq_assignment *out, mq_err *err)
{
	memset(out, 0, sizeof *out);
	if (!g->assigned || g->dirty) {
		int32_t v = bump_generation(g);
		g->generation = v > g->generation ? v : g->generation + 1;
		g->assigned = true;
		g->dirty = false;
	}
	snprintf(out->member_id, sizeof out->member_id, "%s", g->id);
	out->generation = g->generation;
	out->parts = calloc(g->nheld ? g->nheld : 1, sizeof *out->parts);
	if (!out->parts)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	for (size_t i = 0; i < g->nheld; i++) {
		out->parts[i].topic = strdup(g->held[i].topic);
		out->parts[i].partition = g->held[i].partition;
		if (!out->parts[i].topic) {
			out->n = i;
			mq_assignment_free(out);
			return mq_errf(err, MQ_E_NOMEM, "out of memory");
		}
	}
	out->n = g->nheld;
	return 0;
}

bool mq_lg_owns(const mq_lgroup *g, const char *topic, int32_t partition)
{
	return held_find(g, topic, partition) >= 0;
}

const char *mq_lg_group(const mq_lgroup *g) { return g->group; }
const char *mq_lg_member(const mq_lgroup *g) { return g->id; }
int32_t mq_lg_generation(const mq_lgroup *g) { return g->generation; }

const char *const *mq_lg_topics(const mq_lgroup *g, size_t *n)
{
	*n = g->ntopics;
	return (const char *const *)g->topics;
}

void mq_lg_leave(mq_lgroup *g)
{
	bool had;

	if (!g)
		return;
	had = g->nheld > 0;
	while (g->nheld)
		give_back(g, g->nheld - 1);
	if (had)
		bump_generation(g);
	/* Unlink while we still hold it (scan_members' rule). */
	unlink(g->file);
	close(g->fd);
	free(g->held);
	orphans_clear(g);
	free_strv(g->topics, g->ntopics);
	free(g);
}

int mq_lg_count_live(const char *groups_dir, const char *group, bool cleanup,
		     size_t *n, mq_err *err)
{
	char gdir[PATH_MAX];
	struct live *live;

	*n = 0;
	if (mq_pathf(gdir, sizeof gdir, err, "%s/%s", groups_dir, group) < 0 ||
	    scan_members(gdir, cleanup, NULL, &live, n, err) < 0)
		return -1;
	free_live(live, *n);
	return 0;
}

/* Parse an owner file name "<topic>.<partition>.lock". */
static bool parse_owner_name(const char *name, char *topic, size_t size,
			     int32_t *p)
{
	size_t len = strlen(name), ext = sizeof LOCK_EXT - 1;
	const char *dot;
	char *end;
	long v;

	if (len <= ext || strcmp(name + len - ext, LOCK_EXT) != 0)
		return false;
	dot = memrchr(name, '.', len - ext);
	if (!dot || dot == name || (size_t)(dot - name) >= size)
		return false;
	errno = 0;
	v = strtol(dot + 1, &end, 10);
	if (errno || end != name + len - ext || end == dot + 1 || v < 0 ||
	    v > INT32_MAX)
		return false;
	memcpy(topic, name, (size_t)(dot - name));
	topic[dot - name] = '\0';
	if (mq_topic_check(topic, true, NULL) < 0)
		return false;
	*p = (int32_t)v;
	return true;
}

static int add_part(mq_group_member *m, const char *topic, int32_t p)
{
	mq_tp *v = realloc(m->parts, (m->n + 1) * sizeof *v);

	if (!v)
		return -1;
	m->parts = v;
	if (!(v[m->n].topic = strdup(topic)))
		return -1;
	v[m->n].partition = p;
	m->n++;
	return 0;
}

static int cmp_mtp(const void *a, const void *b)
{
	const mq_tp *x = a, *y = b;
	return cmp_tp(x->topic, x->partition, y->topic, y->partition);
}

static int cmp_member(const void *a, const void *b)
{
	const mq_group_member *x = a, *y = b;
	return strcmp(x->member_id, y->member_id);
}

int mq_lg_describe(const char *groups_dir, const char *group,
		   mq_group_info *gi, mq_err *err)
{
	char gdir[PATH_MAX], path[PATH_MAX];
	struct live *live;
	size_t nlive;
	struct dirent *d;
	DIR *dir;

	if (mq_pathf(gdir, sizeof gdir, err, "%s/%s", groups_dir, group) < 0 ||
	    scan_members(gdir, false, NULL, &live, &nlive, err) < 0)
		return -1;
	gi->generation = read_generation(gdir);
	gi->state = strdup(nlive ? "stable" : "empty");
	gi->members = calloc(nlive ? nlive : 1, sizeof *gi->members);
	if (!gi->state || !gi->members)
		goto nomem;
	for (size_t i = 0; i < nlive; i++) {
		mq_group_member *m = &gi->members[gi->nmembers];
		if (!(m->member_id = strdup(live[i].id)) ||
		    !(m->client = strdup(live[i].client)))
			goto nomem;
		gi->nmembers++;
	}
	if (mq_pathf(path, sizeof path, err, "%s/%s", gdir, OWNERS) < 0)
		goto fail;
	dir = nlive ? opendir(path) : NULL;
	while (dir && (d = readdir(dir))) {
		char topic[MQ_TOPIC_MAX + 1], owner[200];
		ssize_t n;
		int32_t p;
		int fd;

		if (!parse_owner_name(d->d_name, topic, sizeof topic, &p))
			continue;
		fd = openat(dirfd(dir), d->d_name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = mq_pread_full(fd, owner, sizeof owner - 1, 0);
		close(fd);
		if (n <= 0)
			continue;
		owner[n] = '\0';
		owner[strcspn(owner, "\n")] = '\0';
		for (size_t i = 0; i < gi->nmembers; i++) {
			if (strcmp(gi->members[i].member_id, owner) != 0)
				continue;
			if (add_part(&gi->members[i], topic, p) < 0) {
				closedir(dir);
				goto nomem;
			}
			break;
		}
	}
	if (dir)
		closedir(dir);
	for (size_t i = 0; i < gi->nmembers; i++)
		if (gi->members[i].n > 1)
			qsort(gi->members[i].parts, gi->members[i].n,
			      sizeof *gi->members[i].parts, cmp_mtp);
	if (gi->nmembers > 1)
		qsort(gi->members, gi->nmembers, sizeof *gi->members,
		      cmp_member);
	free_live(live, nlive);
	return 0;
nomem:
	mq_errf(err, MQ_E_NOMEM, "out of memory");
fail:
	free_live(live, nlive);
	return -1;
}
