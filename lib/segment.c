/*
 * segment.c - one segment: a .log of record batches back to back and its
 * sparse .index. This file knows how to walk the batches of one .log
 * (reading 61-byte headers and following their length fields), how to
 * verify them, and how to find the batch that holds an offset. Which
 * segments exist, appends, flushing and recovery policy live in
 * partition.c.
 *
 * Every length read from a .log is bounded before use: by the batch
 * header parser (MQ_BATCH_MAX_BYTES) and by the limit of the walk, which
 * is never beyond the file's size.
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

void mq_seg_name(char *buf, size_t len, int64_t base, const char *ext)
{
	snprintf(buf, len, "%020lld.%s", (long long)base, ext);
}

int mq_buf_reserve(uint8_t **buf, size_t *cap, size_t need, mq_err *err)
{
	size_t c;
	uint8_t *b;

	if (*buf && *cap >= need)
		return 0;
	c = *cap ? *cap : 4096;
	while (c < need)
		c *= 2;
	b = realloc(*buf, c);
	if (!b)
		return mq_errf(err, MQ_E_NOMEM, "out of memory (%zu bytes)", c);
	*buf = b;
	*cap = c;
	return 0;
}

int mq_seg_open(mq_segment *s, int dirfd, int64_t base, bool rw, bool create,
		mq_err *err)
{
	char name[64];
	int flags = rw ? O_RDWR : O_RDONLY;

	memset(s, 0, sizeof *s);
	s->base = base;
	s->end = base;
	s->max_ts = -1;
	s->max_ts_known = true;
	s->ix.fd = -1;
	if (create)
		flags |= O_CREAT | O_TRUNC;
	mq_seg_name(name, sizeof name, base, "log");
	s->fd = openat(dirfd, name, flags | O_CLOEXEC, 0644);
	if (s->fd < 0)
		return mq_errsys(err, MQ_E_IO, errno, "open %s", name);
	mq_seg_name(name, sizeof name, base, "index");
	if (mq_index_open(&s->ix, dirfd, name, rw, err) < 0 ||
	    (create && mq_index_reset(&s->ix, err) < 0)) {
		mq_seg_close(s);
		return -1;
	}
	return 0;
}

void mq_seg_close(mq_segment *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	mq_index_close(&s->ix);
}

int mq_seg_file_size(const mq_segment *s, uint64_t *size, mq_err *err)
{
	struct stat st;

	if (fstat(s->fd, &st) < 0)
		return mq_errsys(err, MQ_E_IO, errno, "stat segment %lld",
				 (long long)s->base);
	*size = (uint64_t)st.st_size;
	return 0;
}

/* Read a header's worth of bytes at pos into raw: 1, or 0 if fewer lie
 * before limit or in the file, or -1 + err. */
static int read_raw_header(const mq_segment *s, uint64_t pos, uint64_t limit,
			   uint8_t raw[MQ_BATCH_HEADER_SIZE], mq_err *err)
{
	ssize_t got;

	if (pos >= limit || limit - pos < MQ_BATCH_HEADER_SIZE)
		return 0;
	got = mq_pread_full(s->fd, raw, MQ_BATCH_HEADER_SIZE, (off_t)pos);
	if (got < 0)
		return mq_errsys(err, MQ_E_IO, errno, "read segment %lld",
				 (long long)s->base);
	return got == MQ_BATCH_HEADER_SIZE;
}

/* mq_seg_read_header on the raw header bytes already read. */
static int parse_raw_header(const uint8_t raw[MQ_BATCH_HEADER_SIZE],
			    uint64_t pos, uint64_t limit, mq_batch_hdr *h,
			    char *why, size_t whylen)
{
	mq_err perr;

	if (mq_batch_parse_header(raw, MQ_BATCH_HEADER_SIZE, h, &perr) < 0) {
		snprintf(why, whylen, "bad batch header at %llu: %.96s",
			 (unsigned long long)pos, perr.msg);
		return -2;
	}
	if (mq_batch_size(h) > limit - pos)
		return 0;
	if (pos + mq_batch_size(h) > MQ_SEGMENT_MAX_BYTES) {
		snprintf(why, whylen, "batch at %llu ends past 4 GiB",
			 (unsigned long long)pos);
		return -2;
	}
	return 1;
}

int mq_seg_read_header(const mq_segment *s, uint64_t pos, uint64_t limit,
		       mq_batch_hdr *h, char *why, size_t whylen, mq_err *err)
{
	uint8_t raw[MQ_BATCH_HEADER_SIZE];
	int r = read_raw_header(s, pos, limit, raw, err);

	return r <= 0 ? r : parse_raw_header(raw, pos, limit, h, why, whylen);
}

int mq_seg_read_batch(const mq_segment *s, uint64_t pos,
		      const mq_batch_hdr *h, uint8_t **buf, size_t *cap,
		      mq_err *err)
{
	size_t size = mq_batch_size(h);
	ssize_t got;

	if (mq_buf_reserve(buf, cap, size, err) < 0)
		return -1;
	got = mq_pread_full(s->fd, *buf, size, (off_t)pos);
	if (got < 0)
		return mq_errsys(err, MQ_E_IO, errno, "read segment %lld",
				 (long long)s->base);
	if ((size_t)got != size)
		return mq_errf(err, MQ_E_CORRUPT,
			       "segment %lld shrank under a batch at %llu",
			       (long long)s->base, (unsigned long long)pos);
	return 0;
}

/* Is an index entry due for a batch at pos? */
static int entry_due(const mq_segment *s, uint64_t pos, uint32_t interval,
		     bool *due, mq_err *err)
{
	mq_index_entry last;

	if (s->ix.n == 0) {
		*due = true;
		return 0;
	}
	if (mq_index_get(&s->ix, s->ix.n - 1, &last, err) < 0)
		return -1;
	*due = pos - last.pos >= interval;
	return 0;
}

void mq_seg_note_valid(mq_segment *s, uint64_t from, uint64_t to)
{
	if (to <= from)
		return;
	if (s->vhi <= s->vlo) {
		s->vlo = from;
		s->vhi = to;
	} else if (from <= s->vhi && to >= s->vlo) {
		if (from < s->vlo)
			s->vlo = from;
		if (to > s->vhi)
			s->vhi = to;
	} else if (to - from > s->vhi - s->vlo) {
		/* One interval is kept: the larger. */
		s->vlo = from;
		s->vhi = to;
	}
}

/* A header's worth of zeros: the preallocated rest of the file. (A
 * shorter run may be the start of a real header: its offset's high bytes
 * are zero.) */
static bool all_zero(const uint8_t raw[MQ_BATCH_HEADER_SIZE])
{
	for (size_t i = 0; i < MQ_BATCH_HEADER_SIZE; i++)
		if (raw[i])
			return false;
	return true;
}

int mq_seg_scan(mq_segment *s, mq_scan *sc, uint8_t **buf, size_t *cap,
		mq_err *err)
{
	uint64_t pos = s->size, first = s->size;
	int64_t off = s->end;
	uint8_t raw[MQ_BATCH_HEADER_SIZE];
	mq_batch_hdr h;
	mq_err verr;
	int r;

	sc->batches = 0;
	sc->stop = MQ_SCAN_END;
	sc->why[0] = '\0';
	while (pos < sc->limit) {
		bool due;

		r = read_raw_header(s, pos, sc->limit, raw, err);
		if (r == -1)
			return -1;
		if (r == 1 && all_zero(raw)) {
			sc->stop = MQ_SCAN_ZEROS;
			snprintf(sc->why, sizeof sc->why, "zero-filled from %llu",
				 (unsigned long long)pos);
			return 0;
		}
		if (r == 1)
			r = parse_raw_header(raw, pos, sc->limit, &h, sc->why,
					     sizeof sc->why);
		if (r == -2) {
			sc->stop = MQ_SCAN_CORRUPT;
			return 0;
		}
		if (r == 0) {
			sc->stop = MQ_SCAN_TORN;
			snprintf(sc->why, sizeof sc->why,
				 "incomplete batch at %llu of %llu",
				 (unsigned long long)pos,
				 (unsigned long long)sc->limit);
			return 0;
		}
		if (h.base_offset != off) {
			sc->stop = MQ_SCAN_CORRUPT;
			snprintf(sc->why, sizeof sc->why,
				 "batch at %llu has base offset %lld, expected %lld",
				 (unsigned long long)pos,
				 (long long)h.base_offset, (long long)off);
			return 0;
		}
		if (mq_batch_last_offset(&h) - s->base > (int64_t)UINT32_MAX) {
			sc->stop = MQ_SCAN_CORRUPT;
			snprintf(sc->why, sizeof sc->why,
				 "batch at %llu: offsets too far from the "
				 "segment base", (unsigned long long)pos);
			return 0;
		}
		if (sc->verify) {
			if (mq_seg_read_batch(s, pos, &h, buf, cap, err) < 0)
				return -1;
			if (mq_batch_validate(*buf, mq_batch_size(&h), NULL,
					      &verr) < 0) {
				sc->stop = MQ_SCAN_CORRUPT;
				snprintf(sc->why, sizeof sc->why,
					 "batch at %llu: %.96s",
					 (unsigned long long)pos, verr.msg);
				return 0;
			}
		}
		if (h.max_timestamp > s->max_ts)
			s->max_ts = h.max_timestamp;
		if (entry_due(s, pos, sc->index_interval, &due, err) < 0)
			return -1;
		if (due) {
			mq_index_entry e = {
				.rel = (uint32_t)(h.base_offset - s->base),
				.pos = (uint32_t)pos,
				.max_ts = s->max_ts,
			};
			if (mq_index_add(&s->ix, &e, err) < 0)
				return -1;
		}
		pos += mq_batch_size(&h);
		off = mq_batch_last_offset(&h) + 1;
		s->size = pos;
		s->end = off;
		sc->batches++;
		if (sc->verify)
			mq_seg_note_valid(s, first, pos);
	}
	return 0;
}

int mq_seg_max_ts_upto(const mq_segment *s, uint64_t upto, int64_t *max_ts,
		       int64_t *next_off, mq_err *err)
{
	mq_index_entry e;
	mq_batch_hdr h;
	uint64_t pos = 0;
	int64_t off = s->base, max = -1;
	char why[128] = "";
	bool skip = false;   /* the entry's batch is in its running max */
	int r;

	r = mq_index_find_pos(&s->ix, upto, &e, err);
	if (r < 0)
		return -1;
	if (r == 1) {
		pos = e.pos;
		off = s->base + e.rel;
		max = e.max_ts;
		skip = true;
	}
	while (pos < upto) {
		r = mq_seg_read_header(s, pos, upto, &h, why, sizeof why, err);
		if (r == -1)
			return -1;
		if (r != 1 || h.base_offset != off)
			return mq_errf(err, MQ_E_CORRUPT,
				       "segment %lld: batches do not line up "
				       "at %llu%s%s", (long long)s->base,
				       (unsigned long long)pos,
				       why[0] ? ": " : "", why);
		if (!skip && h.max_timestamp > max)
			max = h.max_timestamp;
		skip = false;
		pos += mq_batch_size(&h);
		off = mq_batch_last_offset(&h) + 1;
	}
	*max_ts = max;
	if (next_off)
		*next_off = off;
	return 0;
}

int mq_seg_max_ts(mq_segment *s, int64_t *max_ts, mq_err *err)
{
	if (!s->max_ts_known) {
		if (mq_seg_max_ts_upto(s, s->size, &s->max_ts, NULL, err) < 0)
			return -1;
		s->max_ts_known = true;
	}
	*max_ts = s->max_ts;
	return 0;
}

int mq_seg_locate(const mq_segment *s, int64_t offset, uint64_t *pos,
		  mq_batch_hdr *h, mq_err *err)
{
	mq_index_entry e;
	uint64_t p = 0;
	char why[128] = "";
	int r;

	if (offset < s->base || offset >= s->end)
		return mq_errf(err, MQ_E_OFFSET_RANGE,
			       "offset %lld not in segment %lld",
			       (long long)offset, (long long)s->base);
	r = mq_index_find_offset(&s->ix, (uint32_t)(offset - s->base), &e,
				 err);
	if (r < 0)
		return -1;
	if (r == 1)
		p = e.pos;
	for (;;) {
		r = mq_seg_read_header(s, p, s->size, h, why, sizeof why, err);
		if (r == -1)
			return -1;
		if (r != 1 || h->base_offset > offset)
			return mq_errf(err, MQ_E_CORRUPT,
				       "segment %lld: cannot find offset %lld "
				       "(at %llu%s%s)", (long long)s->base,
				       (long long)offset, (unsigned long long)p,
				       why[0] ? ": " : "", why);
		if (mq_batch_last_offset(h) >= offset)
			break;
		p += mq_batch_size(h);
	}
	*pos = p;
	return 0;
}
