/*
 * offsets.c - committed offsets of one consumer group.
 *
 * The set lives in memory as an array sorted by (topic, partition) and is
 * written whole, atomically, on save (mq_write_file_atomic). The file is
 * small text (format in offsets.h) ending in a CRC-32C line, so that a
 * damaged file is refused instead of silently rewinding or skipping a
 * group's progress: a wrong committed offset means lost or repeated
 * messages, and the operator must hear about it.
 */
#include "offsets.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "batch.h"
#include "io.h"
#include "name.h"

#define OFFSETS_FILE "offsets"
#define OFFSETS_MAGIC "mq-offsets"
#define OFFSETS_VERSION 1
/* Far above any real group (a line is < 300 bytes), small enough to read
 * into memory without a second thought. */
#define OFFSETS_MAX_BYTES (16u * 1024 * 1024)

struct mq_offsets {
	char *groups_dir;
	char *group;
	mq_offset_entry *e;	/* sorted by (topic, partition), unique */
	size_t n, cap;
};

static int cmp_key(const char *t1, int32_t p1, const char *t2, int32_t p2)
{
	int c = strcmp(t1, t2);

	if (c)
		return c;
	return p1 < p2 ? -1 : p1 > p2;
}

/* Index of (topic, partition) if present (*found = true), else the index
 * where it would be inserted. */
static size_t search(const mq_offsets *o, const char *topic,
		     int32_t partition, bool *found)
{
	size_t lo = 0, hi = o->n;

	*found = false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp_key(o->e[mid].topic, o->e[mid].partition, topic,
				partition);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Insert a new entry at index i, taking ownership of topic. */
static int insert_at(mq_offsets *o, size_t i, char *topic, int32_t partition,
		     int64_t offset, int64_t commit_ms, mq_err *err)
{
	if (o->n == o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 16;
		mq_offset_entry *e = realloc(o->e, cap * sizeof *e);
		if (!e) {
			free(topic);
			return mq_errf(err, MQ_E_NOMEM, "out of memory");
		}
		o->e = e;
		o->cap = cap;
	}
	memmove(o->e + i + 1, o->e + i, (o->n - i) * sizeof *o->e);
	o->e[i].topic = topic;
	o->e[i].partition = partition;
	o->e[i].offset = offset;
	o->e[i].commit_ms = commit_ms;
	o->n++;
	return 0;
}

static int group_path(char *buf, size_t size, const mq_offsets *o,
		      const char *file, mq_err *err)
{
	int n = file ? snprintf(buf, size, "%s/%s/%s", o->groups_dir,
				o->group, file)
		     : snprintf(buf, size, "%s/%s", o->groups_dir, o->group);

	if (n < 0 || (size_t)n >= size)
		return mq_errf(err, MQ_E_INVAL, "path too long: %s/%s",
			       o->groups_dir, o->group);
	return 0;
}

/*
 * Make GROUPS_DIR/<group> exist. A new directory entry is only durable
 * once its parent is fsynced, so that is done when we created it.
 */
static int ensure_group_dir(const mq_offsets *o, mq_err *err)
{
	char path[PATH_MAX];

	if (group_path(path, sizeof path, o, NULL, err) < 0)
		return -1;
	return mq_mkdir_durable(path, o->groups_dir, err);
}

/* ---- parsing ---- */

/*
 * Parse a decimal integer occupying exactly s[0..len): optional '-', then
 * digits without leading zeros. Returns 0, or -1 if malformed or out of
 * the int64 range.
 */
static int parse_i64(const char *s, size_t len, int64_t *out)
{
	bool neg = false;
	uint64_t v = 0, limit;
	size_t i = 0;

	if (len > 0 && s[0] == '-') {
		neg = true;
		i = 1;
	}
	if (i == len)
		return -1;
	if (s[i] == '0' && (len - i > 1 || neg))
		return -1;	/* no leading zeros, no "-0" */
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (limit - (uint64_t)(s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

/* Split line[0..len) at single spaces into exactly n fields. */
static int split(const char *line, size_t len, const char **f, size_t *flen,
		 int n)
{
	int k = 0;
	size_t start = 0, i;

	for (i = 0; i <= len; i++) {
		if (i < len && line[i] != ' ')
			continue;
		if (k == n || i == start)
			return -1;	/* too many fields, or an empty one */
		f[k] = line + start;
		flen[k] = i - start;
		k++;
		start = i + 1;
	}
	return k == n ? 0 : -1;
}

static int corrupt(mq_err *err, const char *path, int line, const char *what)
{
	if (line > 0)
		return mq_errf(err, MQ_E_CORRUPT, "%s:%d: %s", path, line, what);
	return mq_errf(err, MQ_E_CORRUPT, "%s: %s", path, what);
}

static int parse_entry(mq_offsets *o, const char *path, int lineno,
		       const char *line, size_t len, mq_err *err)
{
	const char *f[4];
	size_t fl[4], at;
	int64_t part, off, ms;
	mq_err nerr;
	char *topic;
	bool found;

	if (split(line, len, f, fl, 4) < 0)
		return corrupt(err, path, lineno,
			       "expected \"<topic> <partition> <offset> "
			       "<commit-time-ms>\"");
	if (mq_topic_check_n(f[0], fl[0], true, &nerr) < 0)
		return corrupt(err, path, lineno, nerr.msg);
	if (parse_i64(f[1], fl[1], &part) < 0 || part < 0 || part > INT32_MAX)
		return corrupt(err, path, lineno, "bad partition");
	if (parse_i64(f[2], fl[2], &off) < 0)
		return corrupt(err, path, lineno, "bad offset");
	if (off < 0)
		return corrupt(err, path, lineno, "negative offset");
	if (parse_i64(f[3], fl[3], &ms) < 0)
		return corrupt(err, path, lineno, "bad commit time");

	topic = strndup(f[0], fl[0]);
	if (!topic)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	/* Files we write are sorted, so this is normally an append. */
	if (o->n == 0 || cmp_key(o->e[o->n - 1].topic,
				 o->e[o->n - 1].partition, topic,
				 (int32_t)part) < 0) {
		at = o->n;
		found = false;
	} else {
		at = search(o, topic, (int32_t)part, &found);
	}
	if (found) {
		free(topic);
		return corrupt(err, path, lineno, "duplicate entry");
	}
	return insert_at(o, at, topic, (int32_t)part, off, ms, err);
}

/*
 * Parse a whole file. The CRC is checked before anything else, so damage
 * anywhere is reported as damage, not as whatever odd line it produced.
 */
static int parse(mq_offsets *o, const char *path, const char *buf,
		 size_t len, mq_err *err)
{
	const char *crc_line, *p, *end;
	size_t body;
	int64_t stored;
	int lineno;
	char want[32];

	if (len == 0)
		return corrupt(err, path, 0, "empty file");
	if (buf[len - 1] != '\n')
		return corrupt(err, path, 0, "truncated (no final newline)");
	if (memchr(buf, '\0', len))
		return corrupt(err, path, 0, "NUL byte in file");

	/* The last line must be the CRC of everything before it. */
	crc_line = buf + len - 1;
	while (crc_line > buf && crc_line[-1] != '\n')
		crc_line--;
	body = (size_t)(crc_line - buf);
	if (len - body != 13 || memcmp(crc_line, "crc ", 4) != 0)
		return corrupt(err, path, 0, "truncated (no crc line at end)");
	for (p = crc_line + 4; p < crc_line + 12; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return corrupt(err, path, 0, "malformed crc line");
	stored = strtoll(crc_line + 4, NULL, 16);
	if ((uint32_t)stored != mq_crc32c(0, buf, body)) {
		snprintf(want, sizeof want, "%08x", mq_crc32c(0, buf, body));
		return mq_errf(err, MQ_E_CORRUPT,
			       "%s: crc mismatch (file says %.8s, contents "
			       "give %s): file is damaged", path,
			       crc_line + 4, want);
	}

	/* Header line. */
	p = buf;
	end = memchr(p, '\n', body);
	if (!end)
		return corrupt(err, path, 1, "missing header line");
	if ((size_t)(end - p) <= sizeof OFFSETS_MAGIC ||
	    memcmp(p, OFFSETS_MAGIC " ", sizeof OFFSETS_MAGIC) != 0)
		return corrupt(err, path, 1, "not an offsets file");
	{
		int64_t v;
		const char *vs = p + sizeof OFFSETS_MAGIC;
		if (parse_i64(vs, (size_t)(end - vs), &v) < 0)
			return corrupt(err, path, 1, "malformed version");
		if (v != OFFSETS_VERSION) {
			char msg[64];
			snprintf(msg, sizeof msg,
				 "unsupported version %lld (expected %d)",
				 (long long)v, OFFSETS_VERSION);
			return corrupt(err, path, 1, msg);
		}
	}

	lineno = 1;
	for (p = end + 1; p < crc_line; p = end + 1) {
		end = memchr(p, '\n', (size_t)(crc_line - p));
		lineno++;
		if (parse_entry(o, path, lineno, p, (size_t)(end - p), err) < 0)
			return -1;
	}
	return 0;
}

/* ---- the API ---- */

int mq_offsets_load(const char *groups_dir, const char *group, bool create,
		    mq_offsets **out, mq_err *err)
{
	char path[PATH_MAX], *buf = NULL;
	size_t len = 0;
	mq_offsets *o;
	mq_err rerr;

	*out = NULL;
	if (mq_name_check(group, err) < 0)
		return -1;
	o = calloc(1, sizeof *o);
	if (!o || !(o->groups_dir = strdup(groups_dir)) ||
	    !(o->group = strdup(group))) {
		mq_offsets_free(o);
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	}
	if (group_path(path, sizeof path, o, OFFSETS_FILE, err) < 0 ||
	    (create && ensure_group_dir(o, err) < 0))
		goto fail;
	if (mq_read_file(path, OFFSETS_MAX_BYTES, &buf, &len, &rerr) < 0) {
		if (rerr.code == MQ_E_IO && rerr.sys_errno == ENOENT) {
			/* Nothing committed yet. */
			*out = o;
			return 0;
		}
		if (err)
			*err = rerr;
		goto fail;
	}
	if (parse(o, path, buf, len, err) < 0)
		goto fail;
	free(buf);
	*out = o;
	return 0;
fail:
	free(buf);
	mq_offsets_free(o);
	return -1;
}

void mq_offsets_free(mq_offsets *o)
{
	size_t i;

	if (!o)
		return;
	for (i = 0; i < o->n; i++)
		free(o->e[i].topic);
	free(o->e);
	free(o->groups_dir);
	free(o->group);
	free(o);
}

int64_t mq_offsets_get(const mq_offsets *o, const char *topic,
		       int32_t partition)
{
	bool found;
	size_t i;

	if (!topic)
		return -1;
	i = search(o, topic, partition, &found);
	return found ? o->e[i].offset : -1;
}

int mq_offsets_set(mq_offsets *o, const char *topic, int32_t partition,
		   int64_t offset, mq_err *err)
{
	bool found;
	size_t i;
	char *t;

	if (mq_topic_check(topic, true, err) < 0)
		return -1;
	if (partition < 0)
		return mq_errf(err, MQ_E_INVAL, "partition %ld: negative",
			       (long)partition);
	if (offset < 0)
		return mq_errf(err, MQ_E_INVAL, "offset %lld: negative",
			       (long long)offset);
	i = search(o, topic, partition, &found);
	if (found) {
		o->e[i].offset = offset;
		o->e[i].commit_ms = mq_now_ms();
		return 0;
	}
	t = strdup(topic);
	if (!t)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	return insert_at(o, i, t, partition, offset, mq_now_ms(), err);
}

int mq_offsets_commit(mq_offsets *o, const char *topic, int32_t partition,
		      int64_t offset, bool forward_only, mq_err *err)
{
	if (forward_only && mq_offsets_get(o, topic, partition) > offset)
		offset = mq_offsets_get(o, topic, partition);
	return mq_offsets_set(o, topic, partition, offset, err);
}

void mq_offsets_remove(mq_offsets *o, const char *topic, int32_t partition)
{
	bool found;
	size_t i;

	if (!topic)
		return;
	i = search(o, topic, partition, &found);
	if (!found)
		return;
	free(o->e[i].topic);
	memmove(o->e + i, o->e + i + 1, (o->n - i - 1) * sizeof *o->e);
	o->n--;
}

/* A growing text buffer for save. */
struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sbuf_printf(struct sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		{
			size_t cap = (b->cap + (size_t)n + 1) * 2;
			char *p = realloc(b->p, cap);
			if (!p) {
				b->oom = true;
				return;
			}
			b->p = p;
			b->cap = cap;
		}
	}
}

int mq_offsets_save(mq_offsets *o, mq_err *err)
{
	struct sbuf b = { NULL, 0, 0, false };
	char path[PATH_MAX];
	size_t i;
	int rc;

	if (group_path(path, sizeof path, o, OFFSETS_FILE, err) < 0 ||
	    ensure_group_dir(o, err) < 0)
		return -1;
	b.cap = 64 + o->n * 64;
	b.p = malloc(b.cap);
	if (!b.p)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	sbuf_printf(&b, "%s %d\n", OFFSETS_MAGIC, OFFSETS_VERSION);
	for (i = 0; i < o->n; i++)
		sbuf_printf(&b, "%s %ld %lld %lld\n", o->e[i].topic,
			    (long)o->e[i].partition,
			    (long long)o->e[i].offset,
			    (long long)o->e[i].commit_ms);
	if (!b.oom)
		sbuf_printf(&b, "crc %08x\n", mq_crc32c(0, b.p, b.len));
	if (b.oom) {
		free(b.p);
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	}
	rc = mq_write_file_atomic(path, b.p, b.len, err);
	free(b.p);
	return rc;
}

size_t mq_offsets_count(const mq_offsets *o)
{
	return o->n;
}

const mq_offset_entry *mq_offsets_at(const mq_offsets *o, size_t i)
{
	return i < o->n ? &o->e[i] : NULL;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int mq_offsets_list_groups(const char *groups_dir, char ***names, size_t *n,
			   mq_err *err)
{
	char **v = NULL;
	size_t cnt = 0, cap = 0;
	struct dirent *d;
	DIR *dir;

	*names = NULL;
	*n = 0;
	dir = opendir(groups_dir);
	if (!dir) {
		if (errno == ENOENT)
			return 0;
		return mq_errsys(err, MQ_E_IO, errno, "open %s", groups_dir);
	}
	while ((errno = 0, d = readdir(dir))) {
		struct stat st;

		if (mq_name_check(d->d_name, NULL) < 0)
			continue;	/* ".", "..", temp files, strays */
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
		return mq_errsys(err, MQ_E_IO, e, "read %s", groups_dir);
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

void mq_names_free(char **names, size_t n)
{
	size_t i;

	if (!names)
		return;
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}
