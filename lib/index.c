/*
 * index.c - the sparse offset index of one segment (layout in segment.h).
 *
 * The active segment keeps its entries in memory and mirrors them to the
 * file; a sealed segment's entries are read from the file with pread when
 * a lookup needs them, so a partition of many segments costs no memory per
 * segment beyond its descriptors.
 */
#include "segment.h"
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void put_entry(uint8_t *p, const mq_index_entry *e)
{
	mq_put32(p, e->rel);
	mq_put32(p + 4, e->pos);
	mq_put64(p + 8, (uint64_t)e->max_ts);
}

static void get_entry(const uint8_t *p, mq_index_entry *e)
{
	e->rel = mq_get32(p);
	e->pos = mq_get32(p + 4);
	e->max_ts = (int64_t)mq_get64(p + 8);
}

static off_t entry_pos(uint32_t i)
{
	return (off_t)MQ_INDEX_HEADER_SIZE + (off_t)i * MQ_INDEX_ENTRY_SIZE;
}

int mq_index_open(mq_index *ix, int dirfd, const char *name, bool rw,
		  mq_err *err)
{
	memset(ix, 0, sizeof *ix);
	ix->rw = rw;
	ix->fd = openat(dirfd, name,
			rw ? O_RDWR | O_CREAT | O_CLOEXEC : O_RDONLY | O_CLOEXEC,
			0644);
	if (ix->fd < 0) {
		if (!rw && errno == ENOENT)
			return 0;
		return mq_errsys(err, MQ_E_IO, errno, "open %s", name);
	}
	return 0;
}

void mq_index_close(mq_index *ix)
{
	if (ix->fd >= 0)
		close(ix->fd);
	ix->fd = -1;
	free(ix->mem);
	ix->mem = NULL;
	ix->n = ix->file_n = ix->cap = 0;
}

static int reserve(mq_index *ix, uint32_t need, mq_err *err)
{
	mq_index_entry *m;
	uint32_t cap;

	if (need <= ix->cap && ix->mem)
		return 0;
	cap = ix->cap ? ix->cap : 64;
	while (cap < need)
		cap = cap > UINT32_MAX / 2 ? need : cap * 2;
	m = realloc(ix->mem, (size_t)cap * sizeof *m);
	if (!m)
		return mq_errf(err, MQ_E_NOMEM, "out of memory (index)");
	ix->mem = m;
	ix->cap = cap;
	return 0;
}

int mq_index_load(mq_index *ix, uint64_t log_size, char *why, size_t whylen,
		  mq_err *err)
{
	struct stat st;
	uint8_t *raw = NULL, *p;
	uint64_t size, max_n;
	uint32_t n, i;
	ssize_t got;

	free(ix->mem);
	ix->mem = NULL;
	ix->n = ix->file_n = ix->cap = 0;
	if (ix->fd < 0) {
		snprintf(why, whylen, "missing");
		return 0;
	}
	if (fstat(ix->fd, &st) < 0)
		return mq_errsys(err, MQ_E_IO, errno, "stat index");
	size = (uint64_t)st.st_size;
	if (size < MQ_INDEX_HEADER_SIZE) {
		snprintf(why, whylen, "no header");
		return 0;
	}
	if ((size - MQ_INDEX_HEADER_SIZE) % MQ_INDEX_ENTRY_SIZE) {
		snprintf(why, whylen, "size %llu not header + n * %d",
			 (unsigned long long)size, MQ_INDEX_ENTRY_SIZE);
		return 0;
	}
	/* Every entry names a distinct batch, and a batch is at least a
	 * header long: this bounds the read before any allocation. */
	max_n = log_size / MQ_BATCH_HEADER_SIZE + (log_size ? 1 : 0);
	if ((size - MQ_INDEX_HEADER_SIZE) / MQ_INDEX_ENTRY_SIZE > max_n) {
		snprintf(why, whylen, "%llu bytes of entries for a %llu byte log",
			 (unsigned long long)(size - MQ_INDEX_HEADER_SIZE),
			 (unsigned long long)log_size);
		return 0;
	}
	n = (uint32_t)((size - MQ_INDEX_HEADER_SIZE) / MQ_INDEX_ENTRY_SIZE);
	if (n == 0 && log_size > 0) {
		/* The first batch of a segment always gets an entry. */
		snprintf(why, whylen, "no entries");
		return 0;
	}
	raw = malloc((size_t)size);
	if (!raw)
		return mq_errf(err, MQ_E_NOMEM, "out of memory (index)");
	got = mq_pread_full(ix->fd, raw, (size_t)size, 0);
	if (got < 0) {
		int e = errno;
		free(raw);
		return mq_errsys(err, MQ_E_IO, e, "read index");
	}
	if ((uint64_t)got != size) {
		free(raw);
		snprintf(why, whylen, "shrank while reading");
		return 0;
	}
	if (memcmp(raw, MQ_INDEX_MAGIC, 4) != 0 ||
	    mq_get32(raw + 4) != MQ_INDEX_VERSION) {
		free(raw);
		snprintf(why, whylen, "bad magic or version");
		return 0;
	}
	if (n && reserve(ix, n, err) < 0) {
		free(raw);
		return -1;
	}
	p = raw + MQ_INDEX_HEADER_SIZE;
	for (i = 0; i < n; i++, p += MQ_INDEX_ENTRY_SIZE) {
		mq_index_entry *e = &ix->mem[i], *prev = i ? e - 1 : NULL;

		get_entry(p, e);
		if (!prev && (e->rel != 0 || e->pos != 0)) {
			snprintf(why, whylen, "first entry is not (0, 0)");
			goto bad;
		}
		if (prev && (e->rel <= prev->rel || e->pos <= prev->pos ||
			     e->max_ts < prev->max_ts)) {
			snprintf(why, whylen, "entry %u out of order", i);
			goto bad;
		}
		if ((uint64_t)e->pos >= log_size) {
			snprintf(why, whylen, "entry %u points past the log", i);
			goto bad;
		}
	}
	free(raw);
	ix->n = ix->file_n = n;
	return 1;
bad:
	free(raw);
	free(ix->mem);
	ix->mem = NULL;
	ix->cap = 0;
	return 0;
}

int mq_index_reset(mq_index *ix, mq_err *err)
{
	uint8_t hdr[MQ_INDEX_HEADER_SIZE];

	ix->n = ix->file_n = 0;
	if (!ix->mem && reserve(ix, 1, err) < 0)
		return -1;
	if (!ix->rw || ix->fd < 0)
		return 0;
	memcpy(hdr, MQ_INDEX_MAGIC, 4);
	mq_put32(hdr + 4, MQ_INDEX_VERSION);
	if (ftruncate(ix->fd, 0) < 0)
		return mq_errsys(err, MQ_E_IO, errno, "truncate index");
	if (mq_pwrite_full(ix->fd, hdr, sizeof hdr, 0) < 0)
		return mq_errsys(err, MQ_E_IO, errno, "write index header");
	return 0;
}

int mq_index_truncate(mq_index *ix, uint32_t n, mq_err *err)
{
	if (n >= ix->n)
		return 0;
	ix->n = n;
	if (ix->file_n > n) {
		ix->file_n = n;
		if (ix->rw && ix->fd >= 0 && ftruncate(ix->fd, entry_pos(n)) < 0)
			return mq_errsys(err, MQ_E_IO, errno, "truncate index");
	}
	return 0;
}

/* Bring the entries that live only in the file into memory. */
static int load_mem(mq_index *ix, mq_err *err)
{
	uint32_t i;

	if (ix->mem)
		return 0;
	if (reserve(ix, ix->n + 1, err) < 0)
		return -1;
	for (i = 0; i < ix->n; i++) {
		uint8_t raw[MQ_INDEX_ENTRY_SIZE];
		ssize_t got = mq_pread_full(ix->fd, raw, sizeof raw,
					    entry_pos(i));
		if (got != (ssize_t)sizeof raw) {
			int e = got < 0 ? errno : EIO;
			free(ix->mem);
			ix->mem = NULL;
			ix->cap = 0;
			return mq_errsys(err, MQ_E_IO, e, "read index entry");
		}
		get_entry(raw, &ix->mem[i]);
	}
	return 0;
}

int mq_index_add(mq_index *ix, const mq_index_entry *e, mq_err *err)
{
	if (ix->n == UINT32_MAX)
		return mq_errf(err, MQ_E_TOO_LARGE, "index full");
	if (load_mem(ix, err) < 0 || reserve(ix, ix->n + 1, err) < 0)
		return -1;
	ix->mem[ix->n++] = *e;
	return 0;
}

int mq_index_write_tail(mq_index *ix, mq_err *err)
{
	uint8_t *raw;
	uint32_t i, k;

	if (!ix->rw || ix->fd < 0 || ix->file_n >= ix->n)
		return 0;
	k = ix->n - ix->file_n;
	raw = malloc((size_t)k * MQ_INDEX_ENTRY_SIZE);
	if (!raw)
		return mq_errf(err, MQ_E_NOMEM, "out of memory (index)");
	for (i = 0; i < k; i++)
		put_entry(raw + (size_t)i * MQ_INDEX_ENTRY_SIZE,
			  &ix->mem[ix->file_n + i]);
	if (mq_pwrite_full(ix->fd, raw, (size_t)k * MQ_INDEX_ENTRY_SIZE,
			   entry_pos(ix->file_n)) < 0) {
		int e = errno;
		free(raw);
		return mq_errsys(err, MQ_E_IO, e, "write index");
	}
	free(raw);
	ix->file_n = ix->n;
	return 0;
}

void mq_index_unload(mq_index *ix)
{
	if (ix->fd < 0 || ix->file_n != ix->n)
		return;
	free(ix->mem);
	ix->mem = NULL;
	ix->cap = 0;
}

int mq_index_get(const mq_index *ix, uint32_t i, mq_index_entry *e,
		 mq_err *err)
{
	uint8_t raw[MQ_INDEX_ENTRY_SIZE];
	ssize_t got;

	if (i >= ix->n)
		return mq_errf(err, MQ_E_INVAL, "index entry %u of %u", i, ix->n);
	if (ix->mem) {
		*e = ix->mem[i];
		return 0;
	}
	got = mq_pread_full(ix->fd, raw, sizeof raw, entry_pos(i));
	if (got < 0)
		return mq_errsys(err, MQ_E_IO, errno, "read index entry");
	if (got != (ssize_t)sizeof raw)
		return mq_errf(err, MQ_E_CORRUPT, "index shorter than expected");
	get_entry(raw, e);
	return 0;
}

/* Binary search for the last entry i with pred(entry) true, pred being
 * monotone (true then false). */
static int find_last(const mq_index *ix, bool (*pred)(const mq_index_entry *,
						     const void *),
		     const void *arg, mq_index_entry *out, mq_err *err)
{
	uint32_t lo = 0, hi = ix->n;   /* answer in [lo, hi) as a count */
	mq_index_entry e;
	bool found = false;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (mq_index_get(ix, mid, &e, err) < 0)
			return -1;
		if (pred(&e, arg)) {
			*out = e;
			found = true;
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return found ? 1 : 0;
}

static bool rel_le(const mq_index_entry *e, const void *arg)
{
	return e->rel <= *(const uint32_t *)arg;
}

static bool pos_lt(const mq_index_entry *e, const void *arg)
{
	return (uint64_t)e->pos < *(const uint64_t *)arg;
}

static bool ts_lt(const mq_index_entry *e, const void *arg)
{
	return e->max_ts < *(const int64_t *)arg;
}

int mq_index_find_offset(const mq_index *ix, uint32_t rel, mq_index_entry *e,
			 mq_err *err)
{
	return find_last(ix, rel_le, &rel, e, err);
}

int mq_index_find_time(const mq_index *ix, int64_t ts, mq_index_entry *e,
		       mq_err *err)
{
	return find_last(ix, ts_lt, &ts, e, err);
}

int mq_index_find_pos(const mq_index *ix, uint64_t pos, mq_index_entry *e,
		      mq_err *err)
{
	return find_last(ix, pos_lt, &pos, e, err);
}
