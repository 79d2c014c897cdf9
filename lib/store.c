/*
 * store.c - a data directory: topics, their partitions, the groups dir.
 *
 * Layout and guarantees are in store.h. Two things here are worth knowing:
 *
 * - A topic appears whole or not at all. Its directory (meta file plus one
 *   empty directory per partition) is built under a temporary name, made
 *   durable, then renamed into place and the rename made durable. A crash
 *   leaves at worst a ".tmp-<topic>-<pid>" directory, which listing
 *   ignores (names starting with '.' are never valid topics) and which the
 *   next read-write open removes once its creator is gone.
 *
 * - The broker asks for a partition on every produce and fetch, so open
 *   partitions and topic partition counts are kept in hash tables keyed by
 *   (topic, partition): a lookup costs one hash of the name, never a
 *   directory read. Only positive answers are cached (another process may
 *   create a topic at any time; none are ever deleted or resized here).
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "name.h"
#include "offsets.h"

#define META_FILE "meta"
#define META_MAGIC "mq-topic"
#define META_VERSION 1
#define META_MAX_BYTES 4096
#define TMP_PREFIX ".tmp-"

/* ---- a small chained hash table keyed by (topic, partition) ---- */

struct slot {
	struct slot *next;
	uint32_t hash;
	int32_t part;		/* -1 in the topic table */
	union {
		mq_partition *p;
		int nparts;
	} v;
	char topic[];
};

struct table {
	struct slot **b;
	size_t nb, count;
};

static uint32_t key_hash(const char *topic, int32_t part)
{
	uint32_t h = 2166136261u;	/* FNV-1a */
	const unsigned char *p;

	for (p = (const unsigned char *)topic; *p; p++)
		h = (h ^ *p) * 16777619u;
	h = (h ^ (uint32_t)part) * 16777619u;
	return h ^ (h >> 15);
}

static struct slot *table_find(const struct table *t, const char *topic,
			       int32_t part, uint32_t h)
{
	struct slot *sl;

	if (!t->nb)
		return NULL;
	for (sl = t->b[h & (t->nb - 1)]; sl; sl = sl->next)
		if (sl->hash == h && sl->part == part &&
		    strcmp(sl->topic, topic) == 0)
			return sl;
	return NULL;
}

/* Add a new key (not present). Returns the slot, or NULL when out of
 * memory. */
static struct slot *table_add(struct table *t, const char *topic,
			      int32_t part, uint32_t h)
{
	size_t len = strlen(topic);
	struct slot *sl;

	if (t->count + 1 > t->nb) {
		size_t nb = t->nb ? t->nb * 2 : 64, i;
		struct slot **b = calloc(nb, sizeof *b);

		if (!b)
			return NULL;
		for (i = 0; i < t->nb; i++) {
			struct slot *s, *next;
			for (s = t->b[i]; s; s = next) {
				next = s->next;
				s->next = b[s->hash & (nb - 1)];
				b[s->hash & (nb - 1)] = s;
			}
		}
		free(t->b);
		t->b = b;
		t->nb = nb;
	}
	sl = calloc(1, sizeof *sl + len + 1);
	if (!sl)
		return NULL;
	memcpy(sl->topic, topic, len + 1);
	sl->hash = h;
	sl->part = part;
	sl->next = t->b[h & (t->nb - 1)];
	t->b[h & (t->nb - 1)] = sl;
	t->count++;
	return sl;
}

static void table_free(struct table *t)
{
	size_t i;

	for (i = 0; i < t->nb; i++) {
		struct slot *s, *next;
		for (s = t->b[i]; s; s = next) {
			next = s->next;
			free(s);
		}
	}
	free(t->b);
	t->b = NULL;
	t->nb = t->count = 0;
}

/* ---- the store ---- */

struct mq_store {
	char *dir;
	char *topics_dir;
	char *groups_dir;
	mq_store_opts opts;
	struct table topics;	/* topic -> partition count */
	struct table parts;	/* (topic, partition) -> open partition */
};

/*
 * Remove name (relative to the directory open as at) and, if it is a
 * directory, everything in it. Symbolic links are removed, never followed.
 * Best effort: returns 0 if name is gone afterwards, -1 otherwise.
 */
static int remove_tree(int at, const char *name, int depth)
{
	struct dirent *d;
	DIR *dir;
	int fd;

	if (unlinkat(at, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -1;
	if (depth > 8) {	/* we never build anything this deep */
		errno = ELOOP;
		return -1;
	}
	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
		    O_CLOEXEC);
	if (fd < 0)
		return -1;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -1;
	}
	while ((d = readdir(dir))) {
		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		remove_tree(dirfd(dir), d->d_name, depth + 1);
	}
	closedir(dir);
	return unlinkat(at, name, AT_REMOVEDIR);
}

/* The directory that contains path (path has no trailing '/'). */
static void parent_of(char *buf, size_t size, const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		snprintf(buf, size, ".");
	else if (slash == path)
		snprintf(buf, size, "/");
	else
		snprintf(buf, size, "%.*s", (int)(slash - path), path);
}

/*
 * Remove the temporary directories of topic creations that never finished
 * (".tmp-<topic>-<pid>"), unless their creator still runs.
 */
static void clean_stale(mq_store *s)
{
	struct dirent *d;
	DIR *dir = opendir(s->topics_dir);

	if (!dir)
		return;
	while ((d = readdir(dir))) {
		const char *dash;
		char *end;
		long pid;

		if (strncmp(d->d_name, TMP_PREFIX, sizeof TMP_PREFIX - 1))
			continue;
		dash = strrchr(d->d_name, '-');
		errno = 0;
		pid = strtol(dash + 1, &end, 10);
		if (!errno && *end == '\0' && end != dash + 1 && pid > 0 &&
		    pid <= INT_MAX && pid != (long)getpid() &&
		    mq_pid_alive((pid_t)pid))
			continue;
		remove_tree(dirfd(dir), d->d_name, 0);
	}
	closedir(dir);
}

static char *dup_path(const char *a, const char *b)
{
	char *p;

	if (asprintf(&p, "%s%s", a, b) < 0)
		return NULL;
	if (strlen(p) >= PATH_MAX) {
		free(p);
		errno = ENAMETOOLONG;
		return NULL;
	}
	return p;
}

int mq_store_open(const char *dir, const mq_store_opts *opts,
		  mq_store **out, mq_err *err)
{
	char parent[PATH_MAX];
	struct stat st;
	mq_store *s;
	size_t len;

	*out = NULL;
	if (!dir || !*dir)
		return mq_errf(err, MQ_E_INVAL, "empty data directory path");
	s = calloc(1, sizeof *s);
	if (!s)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	if (opts)
		s->opts = *opts;
	s->dir = strdup(dir);
	if (!s->dir)
		goto nomem;
	/* "data/" and "data" are the same directory; keep "/" as is. */
	len = strlen(s->dir);
	while (len > 1 && s->dir[len - 1] == '/')
		s->dir[--len] = '\0';
	s->topics_dir = dup_path(s->dir, "/topics");
	s->groups_dir = dup_path(s->dir, "/groups");
	if (!s->topics_dir || !s->groups_dir) {
		if (errno == ENAMETOOLONG) {
			mq_errf(err, MQ_E_INVAL, "path too long: %.200s...",
				dir);
			goto fail;
		}
		goto nomem;
	}

	if (s->opts.read_only) {
		if (stat(s->dir, &st) < 0) {
			if (errno == ENOENT)
				mq_errf(err, MQ_E_IO,
					"data directory %s does not exist",
					s->dir);
			else
				mq_errsys(err, MQ_E_IO, errno,
					  "data directory %s", s->dir);
			goto fail;
		}
		if (!S_ISDIR(st.st_mode)) {
			mq_errf(err, MQ_E_IO,
				"data directory %s is not a directory",
				s->dir);
			goto fail;
		}
	} else {
		parent_of(parent, sizeof parent, s->dir);
		if (mq_mkdir_durable(s->dir, parent, err) < 0 ||
		    mq_mkdir_durable(s->topics_dir, s->dir, err) < 0 ||
		    mq_mkdir_durable(s->groups_dir, s->dir, err) < 0)
			goto fail;
		clean_stale(s);
	}
	*out = s;
	return 0;
nomem:
	mq_errf(err, MQ_E_NOMEM, "out of memory");
fail:
	mq_store_close(s, NULL);
	return -1;
}

int mq_store_close(mq_store *s, mq_err *err)
{
	mq_err first = { 0, 0, "" }, e;
	size_t i;

	if (!s)
		return 0;
	for (i = 0; i < s->parts.nb; i++) {
		struct slot *sl;
		for (sl = s->parts.b[i]; sl; sl = sl->next) {
			if (mq_part_close(sl->v.p, &e) < 0 && !first.code)
				first = e;
			sl->v.p = NULL;
		}
	}
	table_free(&s->parts);
	table_free(&s->topics);
	free(s->dir);
	free(s->topics_dir);
	free(s->groups_dir);
	free(s);
	if (first.code) {
		if (err)
			*err = first;
		return -1;
	}
	return 0;
}

const char *mq_store_dir(const mq_store *s)
{
	return s->dir;
}

const char *mq_store_groups_dir(const mq_store *s)
{
	return s->groups_dir;
}

/* Parse a meta file strictly: exactly "mq-topic 1\npartitions N\n". */
static int parse_meta(const char *path, const char *buf, size_t len, int *n,
		      mq_err *err)
{
	const char *p = buf, *end = buf + len;
	long v = 0;
	int digits = 0;

	if (len < sizeof META_MAGIC ||
	    memcmp(p, META_MAGIC " ", sizeof META_MAGIC) != 0)
		return mq_errf(err, MQ_E_CORRUPT, "%s: not a topic meta file",
			       path);
	p += sizeof META_MAGIC;
	if (end - p < 2 || p[0] != '0' + META_VERSION || p[1] != '\n')
		return mq_errf(err, MQ_E_CORRUPT,
			       "%s: unsupported version (expected \"%s %d\")",
			       path, META_MAGIC, META_VERSION);
	p += 2;
	if ((size_t)(end - p) < sizeof "partitions " - 1 ||
	    memcmp(p, "partitions ", sizeof "partitions " - 1) != 0)
		return mq_errf(err, MQ_E_CORRUPT,
			       "%s: line 2: expected \"partitions N\"", path);
	p += sizeof "partitions " - 1;
	while (p < end && *p >= '0' && *p <= '9' && digits < 6) {
		if (digits == 0 && *p == '0')
			break;
		v = v * 10 + (*p - '0');
		p++;
		digits++;
	}
	if (digits == 0 || p + 1 != end || *p != '\n' || v < 1 ||
	    v > MQ_MAX_PARTITIONS)
		return mq_errf(err, MQ_E_CORRUPT,
			       "%s: line 2: expected \"partitions N\" with N "
			       "in 1..%d, then the end of the file", path,
			       MQ_MAX_PARTITIONS);
	*n = (int)v;
	return 0;
}

/* Read the partition count of a (validated) topic from disk. */
static int read_meta(mq_store *s, const char *topic, int *n, mq_err *err)
{
	char path[PATH_MAX], tdir[PATH_MAX], *buf;
	struct stat st;
	size_t len;
	mq_err e;
	int rc;

	if (mq_pathf(tdir, sizeof tdir, err, "%s/%s", s->topics_dir, topic) < 0 ||
	    mq_pathf(path, sizeof path, err, "%s/%s", tdir, META_FILE) < 0)
		return -1;
	if (mq_read_file(path, META_MAX_BYTES, &buf, &len, &e) < 0) {
		if (e.code == MQ_E_IO &&
		    (e.sys_errno == ENOENT || e.sys_errno == ENOTDIR)) {
			if (stat(tdir, &st) < 0 && (errno == ENOENT ||
						    errno == ENOTDIR))
				return mq_errf(err, MQ_E_NO_TOPIC,
					       "unknown topic %s", topic);
			return mq_errf(err, MQ_E_CORRUPT,
				       "%s: missing (topic directory without "
				       "its meta file)", path);
		}
		if (err)
			*err = e;
		return -1;
	}
	rc = parse_meta(path, buf, len, n, err);
	free(buf);
	return rc;
}

int mq_store_topic_partitions(mq_store *s, const char *topic, int *n,
			      mq_err *err)
{
	struct slot *sl;
	uint32_t h;
	int cnt;

	if (mq_topic_check(topic, true, err) < 0)
		return -1;
	h = key_hash(topic, -1);
	sl = table_find(&s->topics, topic, -1, h);
	if (sl) {
		*n = sl->v.nparts;
		return 0;
	}
	if (read_meta(s, topic, &cnt, err) < 0)
		return -1;
	sl = table_add(&s->topics, topic, -1, h);
	if (!sl)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	sl->v.nparts = cnt;
	*n = cnt;
	return 0;
}

/* Write a small file and fsync it (inside a directory that is not yet
 * visible, so no temp file is needed). */
static int write_new_file(const char *path, const char *data, size_t len,
			  mq_err *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	int e;

	if (fd < 0)
		return mq_errsys(err, MQ_E_IO, errno, "create %s", path);
	if (mq_pwrite_full(fd, data, len, 0) < 0 || mq_io.fsync(fd) < 0) {
		e = errno;
		close(fd);
		return mq_errsys(err, MQ_E_IO, e, "write %s", path);
	}
	if (close(fd) < 0)
		return mq_errsys(err, MQ_E_IO, errno, "close %s", path);
	return 0;
}

/* Build the topic in tmp: meta, partition directories, all durable. */
static int build_topic(const char *tmp, int n, mq_err *err)
{
	char path[PATH_MAX], meta[64];
	int i, len;

	if (mkdir(tmp, 0755) < 0)
		return mq_errsys(err, MQ_E_IO, errno, "mkdir %s", tmp);
	len = snprintf(meta, sizeof meta, "%s %d\npartitions %d\n",
		       META_MAGIC, META_VERSION, n);
	if (mq_pathf(path, sizeof path, err, "%s/%s", tmp, META_FILE) < 0 ||
	    write_new_file(path, meta, (size_t)len, err) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (mq_pathf(path, sizeof path, err, "%s/%d", tmp, i) < 0)
			return -1;
		if (mkdir(path, 0755) < 0)
			return mq_errsys(err, MQ_E_IO, errno, "mkdir %s", path);
	}
	/*
	 * The partition directories are empty, but fsync each anyway: on
	 * file systems where a new directory's own inode is not covered by
	 * its parent's fsync this is what makes it durable. Where it is
	 * covered (ext4, xfs), all but the first of these find nothing to
	 * write and cost almost nothing.
	 */
	for (i = 0; i < n; i++) {
		if (mq_pathf(path, sizeof path, err, "%s/%d", tmp, i) < 0 ||
		    mq_fsync_dir(path, err) < 0)
			return -1;
	}
	return mq_fsync_dir(tmp, err);
}

int mq_store_create_topic(mq_store *s, const char *topic, int n,
			  mq_err *err)
{
	char final[PATH_MAX], tmp[PATH_MAX];
	struct slot *sl;
	struct stat st;
	uint32_t h;
	int rc;

	if (s->opts.read_only)
		return mq_errf(err, MQ_E_READ_ONLY,
			       "data directory %s is open read-only", s->dir);
	if (mq_topic_check(topic, true, err) < 0)
		return -1;
	if (n < 1 || n > MQ_MAX_PARTITIONS)
		return mq_errf(err, MQ_E_INVAL,
			       "topic %s: %d partitions (must be 1..%d)",
			       topic, n, MQ_MAX_PARTITIONS);
	if (mq_pathf(final, sizeof final, err, "%s/%s", s->topics_dir,
		  topic) < 0 ||
	    mq_pathf(tmp, sizeof tmp, err, "%s/%s%s-%ld", s->topics_dir,
		  TMP_PREFIX, topic, (long)getpid()) < 0)
		return -1;
	if (lstat(final, &st) == 0)
		return mq_errf(err, MQ_E_EXISTS, "topic %s already exists",
			       topic);
	if (errno != ENOENT)
		return mq_errsys(err, MQ_E_IO, errno, "stat %s", final);

	/* A leftover of an earlier attempt by a process with our pid. */
	remove_tree(AT_FDCWD, tmp, 0);
	if (build_topic(tmp, n, err) < 0)
		goto fail;
	/* Never replace what another creator may have put there since the
	 * check above; fall back to rename(2) where the file system cannot
	 * promise that. */
	rc = renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE);
	if (rc < 0 && (errno == EINVAL || errno == ENOSYS))
		rc = rename(tmp, final);
	if (rc < 0) {
		if (errno == EEXIST || errno == ENOTEMPTY)
			mq_errf(err, MQ_E_EXISTS, "topic %s already exists",
				topic);
		else
			mq_errsys(err, MQ_E_IO, errno, "rename %s to %s", tmp,
				  final);
		goto fail;
	}
	if (mq_fsync_dir(s->topics_dir, err) < 0)
		return -1;

	h = key_hash(topic, -1);
	if (!table_find(&s->topics, topic, -1, h)) {
		sl = table_add(&s->topics, topic, -1, h);
		if (sl)		/* else it is read from disk next time */
			sl->v.nparts = n;
	}
	return 0;
fail:
	remove_tree(AT_FDCWD, tmp, 0);
	return -1;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int mq_store_list_topics(mq_store *s, char ***names, size_t *n, mq_err *err)
{
	char **v = NULL;
	size_t cnt = 0, cap = 0;
	struct dirent *d;
	DIR *dir;

	*names = NULL;
	*n = 0;
	dir = opendir(s->topics_dir);
	if (!dir) {
		/* Only a read-only store can lack it: no topics yet. */
		if (errno == ENOENT && s->opts.read_only)
			return 0;
		return mq_errsys(err, MQ_E_IO, errno, "open %s",
				 s->topics_dir);
	}
	while ((errno = 0, d = readdir(dir))) {
		struct stat st;

		/* Skips ".", "..", unfinished ".tmp-*" and strays. */
		if (mq_topic_check(d->d_name, true, NULL) < 0)
			continue;
		if (d->d_type != DT_DIR) {
			if (d->d_type != DT_UNKNOWN ||
			    fstatat(dirfd(dir), d->d_name, &st, 0) < 0 ||
			    !S_ISDIR(st.st_mode))
				continue;
		}
		if (cnt == cap) {
			size_t c = cap ? cap * 2 : 16;
			char **nv = realloc(v, c * sizeof *nv);
			if (!nv)
				goto nomem;
			v = nv;
			cap = c;
		}
		if (!(v[cnt] = strdup(d->d_name)))
			goto nomem;
		cnt++;
	}
	if (errno) {
		int e = errno;
		closedir(dir);
		mq_names_free(v, cnt);
		return mq_errsys(err, MQ_E_IO, e, "read %s", s->topics_dir);
	}
	closedir(dir);
	if (cnt)
		qsort(v, cnt, sizeof *v, cmp_names);
	*names = v;
	*n = cnt;
	return 0;
nomem:
	closedir(dir);
	mq_names_free(v, cnt);
	return mq_errf(err, MQ_E_NOMEM, "out of memory");
}

int mq_store_partition(mq_store *s, const char *topic, int partition,
		       mq_partition **out, mq_err *err)
{
	char path[PATH_MAX];
	mq_part_opts po;
	mq_partition *p;
	struct slot *sl;
	struct stat st;
	uint32_t h;
	int n;

	*out = NULL;
	if (mq_topic_check(topic, true, err) < 0)
		return -1;
	h = key_hash(topic, partition);
	sl = table_find(&s->parts, topic, partition, h);
	if (sl) {
		*out = sl->v.p;
		return 0;
	}
	if (mq_store_topic_partitions(s, topic, &n, err) < 0)
		return -1;
	if (partition < 0 || partition >= n)
		return mq_errf(err, MQ_E_NO_PARTITION,
			       "topic %s has no partition %d (it has %d)",
			       topic, partition, n);
	if (mq_pathf(path, sizeof path, err, "%s/%s/%d", s->topics_dir, topic,
		  partition) < 0)
		return -1;
	/* The directory is made with the topic; if it has gone, something
	 * outside mq removed data, and recreating it would hide that. */
	if (stat(path, &st) < 0) {
		if (errno == ENOENT)
			return mq_errf(err, MQ_E_CORRUPT,
				       "%s: partition directory missing",
				       path);
		return mq_errsys(err, MQ_E_IO, errno, "stat %s", path);
	}
	po = s->opts.part;
	po.read_only = po.read_only || s->opts.read_only;
	po.create = !po.read_only;
	if (mq_part_open(path, &po, &p, err) < 0)
		return -1;
	sl = table_add(&s->parts, topic, partition, h);
	if (!sl) {
		mq_part_close(p, NULL);
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	}
	sl->v.p = p;
	*out = p;
	return 0;
}

int mq_store_foreach_open(mq_store *s,
			  int (*fn)(const char *topic, int partition,
				    mq_partition *p, void *arg),
			  void *arg)
{
	size_t i;
	int rc;

	/* fn must not open partitions (a new one may resize the table). */
	for (i = 0; i < s->parts.nb; i++) {
		struct slot *sl;
		for (sl = s->parts.b[i]; sl; sl = sl->next) {
			rc = fn(sl->topic, sl->part, sl->v.p, arg);
			if (rc)
				return rc;
		}
	}
	return 0;
}
