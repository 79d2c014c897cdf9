/*
 * t_partition.c - the log-segment storage: append and read across
 * segments, lookup by offset at every offset, rolling, retention, log
 * start, lookup by time, index damage, group-commit flush and read-only
 * views of a partition another handle is writing.
 *
 * Every record's value names the offset it was given ("rec-<offset>|"),
 * so a read that lands one record off is caught.
 */
#include "harness.h"
#include "partition.h"
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

/* REQUIRE from harness.h evaluates its condition twice; most conditions
 * here append or flush, so this one evaluates it once. */
#define REQ(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: required: %s\n", __FILE__, __LINE__, \
			#cond); \
		harness_cur_failed = 1; \
		return; \
	} } while (0)

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* A path under the test's directory (static buffer, one at a time). */
static const char *tpath(const char *name)
{
	static char buf[4][8192];
	static int k;
	k = (k + 1) % 4;
	snprintf(buf[k], sizeof buf[k], "%.4000s/%.200s", harness_tmpdir(),
		 name);
	return buf[k];
}

static const char *seg_file(const char *dir, int64_t base, const char *ext)
{
	static char buf[8192];
	snprintf(buf, sizeof buf, "%.4000s/%020lld.%.10s", dir, (long long)base,
		 ext);
	return buf;
}

static long long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static mq_partition *popen_(const char *dir, uint64_t seg_bytes,
			    uint32_t interval, bool ro)
{
	mq_part_opts o = { .segment_bytes = seg_bytes,
			   .index_interval = interval,
			   .read_only = ro, .create = !ro };
	mq_partition *p = NULL;
	mq_err err = { 0 };

	if (mq_part_open(dir, &o, &p, &err) < 0) {
		fprintf(stderr, "open %s: %s\n", dir, err.msg);
		return NULL;
	}
	return p;
}

static int pclose_(mq_partition *p)
{
	mq_err err = { 0 };
	int rc = mq_part_close(p, &err);
	if (rc < 0)
		fprintf(stderr, "close: %s\n", err.msg);
	return rc;
}

/*
 * Build a batch of n records whose values name the offsets they will get
 * once appended at `first`; timestamps from ts (or ts0 + i if ts is NULL);
 * each value padded with pad bytes. The batch is b->buf[0, b->len).
 */
static int build(mq_batch_builder *b, int64_t first, int n,
		 const int64_t *ts, int64_t ts0, size_t pad)
{
	char val[8192];
	mq_err err = { 0 };
	int i;

	if (pad > 4000)
		pad = 4000;
	mq_bb_reset(b);
	for (i = 0; i < n; i++) {
		int len = snprintf(val, sizeof val, "rec-%lld|",
				   (long long)(first + i));
		memset(val + len, 'x', pad);
		if (mq_bb_add(b, ts ? ts[i] : ts0 + i, NULL, -1, val,
			      len + (int)pad, NULL, 0, &err) < 0) {
			fprintf(stderr, "mq_bb_add: %s\n", err.msg);
			return -1;
		}
	}
	if (mq_bb_finish(b, -1, -1, -1, &err) < 0) {
		fprintf(stderr, "mq_bb_finish: %s\n", err.msg);
		return -1;
	}
	return 0;
}

/* Append n records; returns the base offset given, or -1. */
static int64_t put_ts(mq_partition *p, int n, const int64_t *ts,
		      int64_t ts0, size_t pad)
{
	mq_batch_builder b;
	mq_err err = { 0 };
	int64_t base = -1;

	if (mq_bb_init(&b, 0, &err) < 0)
		return -1;
	if (build(&b, mq_part_end(p), n, ts, ts0, pad) == 0 &&
	    mq_part_append(p, b.buf, b.len, &base, &err) < 0) {
		fprintf(stderr, "append: %s\n", err.msg);
		base = -1;
	}
	mq_bb_free(&b);
	return base;
}

static int64_t put(mq_partition *p, int n, size_t pad)
{
	return put_ts(p, n, NULL, 1000, pad);
}

static bool rec_ok(const mq_record *r, int64_t off)
{
	char want[64];
	int len = snprintf(want, sizeof want, "rec-%lld|", (long long)off);

	return r->offset == off && r->value && r->value_len >= len &&
	       memcmp(r->value, want, (size_t)len) == 0;
}

/*
 * Check everything a reader can see: the reader from the start yields every
 * offset once, in order, with the right value; at every offset both a read
 * range and a reader start at the right place. Returns the problem count.
 */
static int verify_all(mq_partition *p)
{
	int64_t start = mq_part_start(p), end = mq_part_end(p), off;
	mq_part_reader *rd;
	mq_record rec;
	mq_err err = { 0 };
	int bad = 0, r;

	if (mq_part_reader_open(p, start, &rd, &err) < 0) {
		fprintf(stderr, "reader_open: %s\n", err.msg);
		return 1;
	}
	for (off = start; off < end; off++) {
		r = mq_part_reader_next(rd, &rec, &err);
		if (r != 1 || !rec_ok(&rec, off)) {
			fprintf(stderr, "reader at %lld: r=%d %s\n",
				(long long)off, r, r < 0 ? err.msg : "");
			bad++;
			break;
		}
	}
	if (!bad && mq_part_reader_next(rd, &rec, &err) != 0) {
		fprintf(stderr, "reader: records beyond the end %lld\n",
			(long long)end);
		bad++;
	}
	mq_part_reader_close(rd);

	for (off = start; off < end && bad < 5; off++) {
		mq_read_range rr;
		uint8_t *buf;
		mq_batch_hdr h;

		if (mq_part_read(p, off, 1, end, &rr, &err) < 0) {
			fprintf(stderr, "read %lld: %s\n", (long long)off,
				err.msg);
			bad++;
			continue;
		}
		buf = malloc(rr.len ? rr.len : 1);
		if (rr.len < MQ_BATCH_HEADER_SIZE || !buf ||
		    pread(rr.fd, buf, rr.len, rr.pos) != (ssize_t)rr.len ||
		    mq_batch_parse_header(buf, rr.len, &h, &err) < 0 ||
		    mq_batch_size(&h) != rr.len ||
		    mq_batch_validate(buf, rr.len, NULL, &err) < 0 ||
		    h.base_offset > off || mq_batch_last_offset(&h) < off ||
		    rr.first_offset != h.base_offset ||
		    rr.next_offset != mq_batch_last_offset(&h) + 1) {
			fprintf(stderr, "read %lld: bad range (pos %lld len "
				"%zu first %lld)\n", (long long)off,
				(long long)rr.pos, rr.len,
				(long long)rr.first_offset);
			bad++;
		}
		free(buf);

		if (mq_part_reader_open(p, off, &rd, &err) < 0) {
			bad++;
			continue;
		}
		r = mq_part_reader_next(rd, &rec, &err);
		if (r != 1 || !rec_ok(&rec, off)) {
			fprintf(stderr, "reader from %lld: r=%d\n",
				(long long)off, r);
			bad++;
		}
		mq_part_reader_close(rd);
	}
	return bad;
}

/* Fill a partition with batches of 1-4 records over several segments. */
static int fill(mq_partition *p, int batches)
{
	int i;

	for (i = 0; i < batches; i++) {
		int64_t end = mq_part_end(p);
		if (put(p, 1 + i % 4, (size_t)(i * 37) % 150) != end)
			return -1;
	}
	return 0;
}

TEST(empty_partition)
{
	const char *dir = tpath("p");
	mq_partition *p = popen_(dir, 0, 0, false);
	mq_read_range rr;
	mq_err err = { 0 };
	int64_t a, b, off;
	mq_part_opts o = { 0 };

	REQ(p);
	CHECK_EQ_INT(mq_part_start(p), 0);
	CHECK_EQ_INT(mq_part_end(p), 0);
	CHECK_EQ_INT(mq_part_flushed(p), 0);
	CHECK_EQ_INT(mq_part_segment_count(p), 1);
	CHECK_EQ_INT(mq_part_bytes(p), 0);
	CHECK(mq_part_failed(p) == NULL);
	CHECK_EQ_INT(mq_part_read(p, 0, 100, 0, &rr, &err), 0);
	CHECK_EQ_INT(rr.len, 0);
	CHECK_EQ_INT(mq_part_read(p, 1, 100, 1, &rr, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_OFFSET_RANGE);
	CHECK_EQ_INT(mq_part_read(p, -1, 100, 1, &rr, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_OFFSET_RANGE);
	CHECK_EQ_INT(mq_part_time_range(p, &a, &b, &err), 0);
	CHECK_EQ_INT(a, -1);
	CHECK_EQ_INT(b, -1);
	CHECK_EQ_INT(mq_part_offset_for_time(p, 5, &off, &err), 0);
	CHECK_EQ_INT(off, 0);
	CHECK(file_size(seg_file(dir, 0, "log")) == 0);
	CHECK(file_size(seg_file(dir, 0, "index")) == 8);
	CHECK(file_size(tpath("p/state")) > 0);
	CHECK_EQ_INT(pclose_(p), 0);

	/* Missing directory without create: unknown partition. */
	CHECK_EQ_INT(mq_part_open(tpath("nope"), &o, &p, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_NO_PARTITION);
	o.read_only = true;
	o.create = true;
	CHECK_EQ_INT(mq_part_open(tpath("nope"), &o, &p, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_NO_PARTITION);
	CHECK(file_size(tpath("nope")) < 0);
}

TEST(round_trip_across_segments)
{
	const char *dir = tpath("p");
	mq_partition *p = popen_(dir, 2048, 200, false);
	mq_read_range rr;
	mq_err err = { 0 };
	int64_t end, seg1;
	int nseg, i;

	REQ(p);
	REQ(fill(p, 80) == 0);
	end = mq_part_end(p);
	CHECK_EQ_INT(end, 80 / 4 * (1 + 2 + 3 + 4));
	nseg = mq_part_segment_count(p);
	CHECK(nseg >= 4);
	CHECK_EQ_INT(verify_all(p), 0);

	/* Segments on disk: named by base, none above segment_bytes. */
	CHECK(file_size(seg_file(dir, 0, "log")) > 0);
	CHECK(file_size(seg_file(dir, 0, "log")) <= 2048);
	REQ(mq_part_read(p, 0, 1 << 20, end, &rr, &err) == 0);
	/* A big read stops at the end of the first segment... */
	CHECK_EQ_INT(rr.pos, 0);
	CHECK_EQ_INT(rr.first_offset, 0);
	CHECK_EQ_INT(rr.len, file_size(seg_file(dir, 0, "log")));
	seg1 = rr.next_offset;
	CHECK(file_size(seg_file(dir, seg1, "log")) > 0);
	/* ...max_bytes keeps whole batches, at least one... */
	REQ(mq_part_read(p, 0, 1, end, &rr, &err) == 0);
	CHECK_EQ_INT(rr.next_offset, 1);
	REQ(mq_part_read(p, 1, 1, end, &rr, &err) == 0);
	CHECK_EQ_INT(rr.first_offset, 1);
	CHECK_EQ_INT(rr.next_offset, 3);
	/* ...and limit_offset is never passed. */
	REQ(mq_part_read(p, 0, 1 << 20, 3, &rr, &err) == 0);
	CHECK_EQ_INT(rr.next_offset, 3);
	REQ(mq_part_read(p, 0, 1 << 20, 2, &rr, &err) == 0);
	CHECK_EQ_INT(rr.next_offset, 1);
	REQ(mq_part_read(p, 1, 1 << 20, 2, &rr, &err) == 0);
	CHECK_EQ_INT(rr.len, 0);
	REQ(mq_part_read(p, end, 1 << 20, end, &rr, &err) == 0);
	CHECK_EQ_INT(rr.len, 0);
	CHECK_EQ_INT(rr.next_offset, end);
	CHECK_EQ_INT(mq_part_read(p, end + 1, 100, end + 5, &rr, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_OFFSET_RANGE);

	CHECK_EQ_INT(mq_part_flush(p, &err), 0);
	CHECK_EQ_INT(mq_part_flushed(p), end);
	CHECK_EQ_INT(pclose_(p), 0);

	for (i = 0; i < 2; i++) {
		p = popen_(dir, 2048, 200, false);
		REQ(p);
		CHECK_EQ_INT(mq_part_end(p), end);
		CHECK_EQ_INT(mq_part_start(p), 0);
		CHECK_EQ_INT(mq_part_segment_count(p), nseg);
		CHECK_EQ_INT(mq_part_recovery(p)->bytes_truncated, 0);
		CHECK_EQ_INT(mq_part_recovery(p)->indexes_rebuilt, 0);
		CHECK_EQ_INT(mq_part_recovery(p)->reason[0], 0);
		/* A clean close leaves nothing to verify. */
		CHECK_EQ_INT(mq_part_recovery(p)->batches_checked, 0);
		CHECK_EQ_INT(verify_all(p), 0);
		CHECK_EQ_INT(put(p, 2, 10), end);
		end += 2;
		CHECK_EQ_INT(pclose_(p), 0);
	}
}

TEST(roll_at_size)
{
	const char *dir = tpath("p");
	mq_partition *p = popen_(dir, 1000, 0, false);
	mq_err err = { 0 };
	int64_t b0, b1, b2, b3;

	REQ(p);
	b0 = put(p, 1, 500);
	CHECK_EQ_INT(mq_part_segment_count(p), 1);
	b1 = put(p, 1, 500);        /* would pass 1000 bytes: rolls */
	CHECK_EQ_INT(b1, 1);
	CHECK_EQ_INT(mq_part_segment_count(p), 2);
	b2 = put(p, 2, 3000);       /* larger than a segment: on its own */
	CHECK_EQ_INT(b2, 2);
	CHECK_EQ_INT(mq_part_segment_count(p), 3);
	b3 = put(p, 1, 10);
	CHECK_EQ_INT(b3, 4);
	CHECK_EQ_INT(mq_part_segment_count(p), 4);
	CHECK_EQ_INT(b0, 0);
	CHECK(file_size(seg_file(dir, 0, "log")) <= 1000);
	CHECK(file_size(seg_file(dir, 1, "log")) <= 1000);
	CHECK(file_size(seg_file(dir, 2, "log")) > 6000);
	CHECK(file_size(seg_file(dir, 4, "log")) > 0);
	CHECK(file_size(seg_file(dir, 3, "log")) < 0);

	/* An explicit roll; rolling an empty segment does nothing. */
	CHECK_EQ_INT(mq_part_roll(p, &err), 0);
	CHECK_EQ_INT(mq_part_segment_count(p), 5);
	CHECK(file_size(seg_file(dir, 5, "log")) == 0);
	CHECK_EQ_INT(mq_part_roll(p, &err), 0);
	CHECK_EQ_INT(mq_part_segment_count(p), 5);
	CHECK_EQ_INT(put(p, 1, 10), 5);
	CHECK_EQ_INT(mq_part_segment_count(p), 5);
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(pclose_(p), 0);

	p = popen_(dir, 1000, 0, false);
	REQ(p);
	CHECK_EQ_INT(mq_part_segment_count(p), 5);
	CHECK_EQ_INT(mq_part_end(p), 6);
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(pclose_(p), 0);
}

TEST(retention_by_size)
{
	const char *dir = tpath("p");
	mq_partition *p = popen_(dir, 2048, 256, false);
	mq_read_range rr;
	mq_err err = { 0 };
	uint64_t total, limit;
	int deleted = -1, nseg;
	int64_t end, start;

	REQ(p);
	REQ(fill(p, 100) == 0);
	end = mq_part_end(p);
	total = mq_part_bytes(p);
	nseg = mq_part_segment_count(p);
	REQ(nseg >= 5);
	limit = total / 2;
	CHECK_EQ_INT(mq_part_retain(p, limit, 0, 0, &deleted, &err), 0);
	CHECK(deleted >= 1);
	CHECK_EQ_INT(mq_part_segment_count(p), nseg - deleted);
	CHECK(mq_part_bytes(p) <= limit);
	start = mq_part_start(p);
	CHECK(start > 0);
	CHECK_EQ_INT(mq_part_end(p), end);
	/* The new start is the base of the first remaining segment. */
	CHECK(file_size(seg_file(dir, start, "log")) > 0);
	CHECK(file_size(seg_file(dir, 0, "log")) < 0);
	CHECK(file_size(seg_file(dir, 0, "index")) < 0);
	CHECK_EQ_INT(mq_part_read(p, start - 1, 100, end, &rr, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_OFFSET_RANGE);
	CHECK_EQ_INT(mq_part_read(p, 0, 100, end, &rr, &err), -1);
	CHECK_EQ_INT(verify_all(p), 0);

	/* Nothing left to delete: no change. */
	CHECK_EQ_INT(mq_part_retain(p, limit, 0, 0, &deleted, &err), 0);
	CHECK_EQ_INT(deleted, 0);
	/* Even a tiny limit never deletes the active segment. */
	CHECK_EQ_INT(mq_part_retain(p, 1, 0, 0, &deleted, &err), 0);
	CHECK_EQ_INT(mq_part_segment_count(p), 1);
	CHECK_EQ_INT(mq_part_end(p), end);
	start = mq_part_start(p);
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(pclose_(p), 0);

	p = popen_(dir, 2048, 256, false);
	REQ(p);
	CHECK_EQ_INT(mq_part_start(p), start);
	CHECK_EQ_INT(mq_part_end(p), end);
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(pclose_(p), 0);
}

TEST(retention_by_age)
{
	const char *dir = tpath("p");
	mq_partition *p = popen_(dir, 0, 0, false);
	mq_err err = { 0 };
	int64_t ts[3] = { 1000, 1900, 1500 };  /* newest is not last */
	int64_t s1, s2, s3;
	int deleted = -1;

	REQ(p);
	CHECK_EQ_INT(put_ts(p, 3, ts, 0, 0), 0);
	REQ(mq_part_roll(p, &err) == 0);
	s1 = mq_part_end(p);
	CHECK_EQ_INT(put_ts(p, 2, NULL, 2000, 0), s1);
	CHECK_EQ_INT(put_ts(p, 1, NULL, 2500, 0), s1 + 2);
	REQ(mq_part_roll(p, &err) == 0);
	s2 = mq_part_end(p);
	CHECK_EQ_INT(put_ts(p, 1, NULL, 3000, 0), s2);
	REQ(mq_part_roll(p, &err) == 0);
	s3 = mq_part_end(p);
	CHECK_EQ_INT(put_ts(p, 1, NULL, 100, 0), s3);  /* old, but active */
	CHECK_EQ_INT(mq_part_segment_count(p), 4);
	/* Reopened, the sealed segments' newest timestamps come from the
	 * index (one entry each here) plus the batch headers after it. */
	CHECK_EQ_INT(pclose_(p), 0);
	p = popen_(dir, 0, 0, false);
	REQ(p);

	/* Cut-off 1899: segment 0's newest (1900) is not older. */
	CHECK_EQ_INT(mq_part_retain(p, 0, 1101, 3000, &deleted, &err), 0);
	CHECK_EQ_INT(deleted, 0);
	/* Cut-off 1901: segment 0 goes, segment 1 (newest 2500) stays. */
	CHECK_EQ_INT(mq_part_retain(p, 0, 1099, 3000, &deleted, &err), 0);
	CHECK_EQ_INT(deleted, 1);
	CHECK_EQ_INT(mq_part_start(p), s1);
	/* Cut-off 2400: segment 1's newest (2500, its last batch) is not
	 * older. */
	CHECK_EQ_INT(mq_part_retain(p, 0, 600, 3000, &deleted, &err), 0);
	CHECK_EQ_INT(deleted, 0);
	/* Cut-off 5000: all but the active segment. */
	CHECK_EQ_INT(mq_part_retain(p, 0, 1000, 6000, &deleted, &err), 0);
	CHECK_EQ_INT(deleted, 2);
	CHECK_EQ_INT(mq_part_start(p), s3);
	CHECK_EQ_INT(mq_part_segment_count(p), 1);
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(pclose_(p), 0);

	p = popen_(dir, 0, 0, false);
	REQ(p);
	CHECK_EQ_INT(mq_part_start(p), s3);
	CHECK_EQ_INT(mq_part_end(p), s3 + 1);
	CHECK_EQ_INT(pclose_(p), 0);
}

TEST(set_start)
{
	const char *dir = tpath("p");
	mq_partition *p = popen_(dir, 2048, 200, false);
	mq_read_range rr;
	mq_err err = { 0 };
	int64_t end, x, seg1;
	mq_part_reader *rd;
	mq_record rec;
	int nseg;

	REQ(p);
	REQ(fill(p, 60) == 0);
	end = mq_part_end(p);
	nseg = mq_part_segment_count(p);
	REQ(mq_part_read(p, 0, 1 << 20, end, &rr, &err) == 0);
	seg1 = rr.next_offset;      /* base of the second segment */
	x = seg1 + 2;               /* in the middle of it */
	CHECK_EQ_INT(mq_part_set_start(p, x, &err), 0);
	CHECK_EQ_INT(mq_part_start(p), x);
	CHECK_EQ_INT(mq_part_segment_count(p), nseg - 1);
	CHECK(file_size(seg_file(dir, 0, "log")) < 0);
	CHECK_EQ_INT(mq_part_read(p, x - 1, 100, end, &rr, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_OFFSET_RANGE);
	CHECK_EQ_INT(mq_part_reader_open(p, x - 1, &rd, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_OFFSET_RANGE);
	CHECK_EQ_INT(mq_part_read(p, x, 100, end, &rr, &err), 0);
	CHECK(rr.first_offset <= x && rr.next_offset > x);
	CHECK_EQ_INT(verify_all(p), 0);
	/* Backwards is a no-op; past the end is refused. */
	CHECK_EQ_INT(mq_part_set_start(p, 1, &err), 0);
	CHECK_EQ_INT(mq_part_start(p), x);
	CHECK_EQ_INT(mq_part_set_start(p, end + 1, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_OFFSET_RANGE);
	CHECK_EQ_INT(pclose_(p), 0);

	p = popen_(dir, 2048, 200, false);
	REQ(p);
	CHECK_EQ_INT(mq_part_start(p), x);
	CHECK_EQ_INT(mq_part_read(p, x - 1, 100, end, &rr, &err), -1);
	REQ(mq_part_reader_open(p, x, &rd, &err) == 0);
	CHECK_EQ_INT(mq_part_reader_next(rd, &rec, &err), 1);
	CHECK(rec_ok(&rec, x));
	mq_part_reader_close(rd);
	/* Up to the end: nothing left to serve, appends go on. The start
	 * never passes data a crash could still cut: it flushes first. */
	REQ(put(p, 2, 0) == end);
	end += 2;
	CHECK(mq_part_flushed(p) < end);
	CHECK_EQ_INT(mq_part_set_start(p, end, &err), 0);
	CHECK_EQ_INT(mq_part_flushed(p), end);
	CHECK_EQ_INT(mq_part_start(p), end);
	CHECK_EQ_INT(mq_part_segment_count(p), 1);
	CHECK_EQ_INT(mq_part_read(p, end, 100, end, &rr, &err), 0);
	CHECK_EQ_INT(rr.len, 0);
	CHECK_EQ_INT(put(p, 3, 0), end);
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(pclose_(p), 0);

	p = popen_(dir, 2048, 200, false);
	REQ(p);
	CHECK_EQ_INT(mq_part_start(p), end);
	CHECK_EQ_INT(mq_part_end(p), end + 3);
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(pclose_(p), 0);
}

/* Expected answer of offset_for_time by brute force over all records. */
static int64_t brute_time(const int64_t *ts, int64_t start, int64_t end,
			  int64_t q)
{
	int64_t o;
	for (o = start; o < end; o++)
		if (ts[o] >= q)
			return o;
	return end;
}

static int check_times(mq_partition *p, const int64_t *ts)
{
	static const int64_t extra[] = { INT64_MIN, -1, 0, 999, 1000, 1001,
					 4999, 5000, 5001, 99999, INT64_MAX };
	int64_t start = mq_part_start(p), end = mq_part_end(p), got, q;
	mq_err err = { 0 };
	int bad = 0;
	size_t i;

	for (q = 990; q <= 5010 && bad < 5; q += 7) {
		if (mq_part_offset_for_time(p, q, &got, &err) < 0 ||
		    got != brute_time(ts, start, end, q)) {
			fprintf(stderr, "time %lld: got %lld want %lld\n",
				(long long)q, (long long)got,
				(long long)brute_time(ts, start, end, q));
			bad++;
		}
	}
	for (i = 0; i < sizeof extra / sizeof *extra; i++) {
		q = extra[i];
		if (mq_part_offset_for_time(p, q, &got, &err) < 0 ||
		    got != brute_time(ts, start, end, q)) {
			fprintf(stderr, "time %lld: got %lld\n", (long long)q,
				(long long)got);
			bad++;
		}
	}
	return bad;
}

TEST(offset_for_time)
{
	const char *dir = tpath("p");
	mq_partition *p = popen_(dir, 1500, 128, false);
	static int64_t ts[2000];
	mq_err err = { 0 };
	int64_t n = 0, oldest, newest, maxlast = -1, x, got;
	int i, j;

	REQ(p);
	for (i = 0; i < 120; i++) {
		int k = 1 + (int)(rng() % 5);
		for (j = 0; j < k; j++)
			ts[n + j] = 1000 + (int64_t)(rng() % 4000);
		REQ(put_ts(p, k, ts + n, 0, (size_t)(rng() % 60)) == n);
		n += k;
	}
	REQ(mq_part_segment_count(p) >= 4);
	CHECK_EQ_INT(check_times(p, ts), 0);

	/* ts beyond the last record: the log end. */
	CHECK_EQ_INT(mq_part_offset_for_time(p, 5000, &got, &err), 0);
	CHECK_EQ_INT(got, n);

	/* Time range: first record, newest of the last segment. */
	CHECK_EQ_INT(mq_part_time_range(p, &oldest, &newest, &err), 0);
	CHECK_EQ_INT(oldest, ts[0]);
	{
		mq_read_range rr;
		int64_t base = 0, o;
		/* Find the base of the last segment by walking ranges. */
		while (base < n) {
			REQ(mq_part_read(p, base, 1 << 20, n, &rr,
					     &err) == 0);
			if (rr.next_offset >= n)
				break;
			base = rr.next_offset;
		}
		for (o = base; o < n; o++)
			if (ts[o] > maxlast)
				maxlast = ts[o];
	}
	CHECK_EQ_INT(newest, maxlast);
	CHECK_EQ_INT(pclose_(p), 0);

	/* Reopened: sealed segments' timestamps come from the index file. */
	p = popen_(dir, 1500, 128, false);
	REQ(p);
	CHECK_EQ_INT(check_times(p, ts), 0);
	/* Records below the log start do not count. */
	x = n / 3;
	REQ(mq_part_set_start(p, x, &err) == 0);
	CHECK_EQ_INT(check_times(p, ts), 0);
	CHECK_EQ_INT(mq_part_time_range(p, &oldest, &newest, &err), 0);
	CHECK_EQ_INT(oldest, ts[x]);
	CHECK_EQ_INT(newest, maxlast);
	CHECK_EQ_INT(pclose_(p), 0);
}

/* ---- index damage ---- */

static int make_data(const char *dir, int64_t *end)
{
	mq_partition *p = popen_(dir, 3000, 100, false);
	int rc;

	if (!p)
		return -1;
	rc = fill(p, 60);
	*end = mq_part_end(p);
	if (mq_part_segment_count(p) < 3)
		rc = -1;
	return pclose_(p) < 0 ? -1 : rc;
}

static int write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int rc = 0;

	if (fd < 0)
		return -1;
	if (write(fd, buf, len) != (ssize_t)len)
		rc = -1;
	close(fd);
	return rc;
}

enum damage { D_DELETE, D_EMPTY, D_ODD_SIZE, D_GARBLE, D_PAST_END,
	      D_WRONG_BATCH, D_UNSORTED, D_BAD_MAGIC, D_NO_FIRST, D__COUNT };

static int damage_index(const char *path, int how, long long log_size)
{
	long long size = file_size(path);
	uint8_t buf[8 + 16 * 3];
	uint8_t *junk;
	int rc, fd;
	long long i;

	if (size < 8 || size > 1 << 20)
		return -1;
	switch (how) {
	case D_NO_FIRST:
		/* well-formed entries, but the first batch's is gone */
		if (size < 8 + 32)
			return -1;
		junk = malloc((size_t)size);
		if (!junk)
			return -1;
		fd = open(path, O_RDONLY);
		rc = fd >= 0 && read(fd, junk, (size_t)size) == size ? 0 : -1;
		if (fd >= 0)
			close(fd);
		memmove(junk + 8, junk + 24, (size_t)size - 24);
		if (rc == 0)
			rc = write_file(path, junk, (size_t)size - 16);
		free(junk);
		return rc;
	case D_DELETE:
		return unlink(path);
	case D_EMPTY:
		return truncate(path, 0);
	case D_ODD_SIZE:
		return truncate(path, size - 5);
	case D_GARBLE:
		junk = malloc((size_t)size);
		if (!junk)
			return -1;
		for (i = 0; i < size; i++)
			junk[i] = (uint8_t)rng();
		rc = write_file(path, junk, (size_t)size);
		free(junk);
		return rc;
	case D_PAST_END:
	case D_WRONG_BATCH:
	case D_UNSORTED:
	case D_BAD_MAGIC:
		memcpy(buf, "MQIX", 4);
		mq_put32(buf + 4, how == D_BAD_MAGIC ? 9 : 1);
		mq_put32(buf + 8, 0);
		mq_put32(buf + 12, 0);
		mq_put64(buf + 16, 0);
		mq_put32(buf + 24, how == D_UNSORTED ? 0 : 1);
		mq_put32(buf + 28, how == D_PAST_END ? (uint32_t)log_size + 10
			 : how == D_UNSORTED ? 0 : 7);
		mq_put64(buf + 32, 0);
		fd = open(path, O_WRONLY | O_TRUNC);
		if (fd < 0)
			return -1;
		rc = write(fd, buf, 8 + 32) == 8 + 32 ? 0 : -1;
		close(fd);
		return rc;
	}
	return -1;
}

TEST(index_damage_rebuilt)
{
	int how, which;

	for (how = 0; how < D__COUNT; how++) {
		for (which = 0; which < 2; which++) {
			char name[32];
			const char *dir;
			int64_t end, base;
			mq_partition *p;
			mq_read_range rr;
			mq_err err = { 0 };

			snprintf(name, sizeof name, "p%d-%d", how, which);
			dir = tpath(name);
			REQ(make_data(dir, &end) == 0);
			/* which 0: the first (sealed) segment; which 1: the
			 * last (active) one. */
			base = 0;
			if (which == 1) {
				p = popen_(dir, 3000, 100, true);
				REQ(p);
				while (mq_part_read(p, base, 1 << 20, end, &rr,
						    &err) == 0 &&
				       rr.next_offset < end)
					base = rr.next_offset;
				mq_part_close(p, NULL);
			}
			REQ(damage_index(seg_file(dir, base, "index"), how,
					     file_size(seg_file(dir, base,
								"log"))) == 0);
			p = popen_(dir, 3000, 100, false);
			REQ(p);
			if (mq_part_recovery(p)->indexes_rebuilt != 1)
				fprintf(stderr, "damage %d/%d not noticed\n",
					how, which);
			CHECK_EQ_INT(mq_part_recovery(p)->indexes_rebuilt, 1);
			CHECK_EQ_INT(mq_part_recovery(p)->bytes_truncated, 0);
			CHECK_EQ_INT(mq_part_end(p), end);
			CHECK_EQ_INT(verify_all(p), 0);
			CHECK_EQ_INT(pclose_(p), 0);
			/* The rebuilt index was written back, and is good. */
			p = popen_(dir, 3000, 100, false);
			REQ(p);
			CHECK_EQ_INT(mq_part_recovery(p)->indexes_rebuilt, 0);
			CHECK_EQ_INT(verify_all(p), 0);
			CHECK_EQ_INT(pclose_(p), 0);
		}
	}
}

/* A read-only open with a bad index rebuilds in memory only. */
TEST(index_damage_read_only)
{
	const char *dir = tpath("p");
	const char *ix = seg_file(dir, 0, "index");
	mq_partition *p;
	int64_t end;

	REQ(make_data(dir, &end) == 0);
	REQ(unlink(seg_file(dir, 0, "index")) == 0);
	p = popen_(dir, 3000, 100, true);
	REQ(p);
	CHECK_EQ_INT(mq_part_end(p), end);
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(pclose_(p), 0);
	CHECK(file_size(ix) < 0);
}

/* ---- flush ---- */

static int n_fdatasync, n_fsync;
static int count_fdatasync(int fd) { n_fdatasync++; return fdatasync(fd); }
static int count_fsync(int fd) { n_fsync++; return fsync(fd); }

TEST(group_commit_flush)
{
	const char *dir = tpath("p");
	mq_partition *p = popen_(dir, 1000, 0, false);
	mq_flush_req req, req2;
	mq_err err = { 0 };
	int64_t t1;
	int i, ndir;

	REQ(p);
	/* Clean: nothing to do. */
	CHECK_EQ_INT(mq_part_flush_begin(p, &req, &err), 0);
	CHECK_EQ_INT(req.nfds, 0);
	mq_flush_run(&req);
	CHECK_EQ_INT(mq_part_flush_end(p, &req, &err), 0);

	put(p, 2, 10);
	t1 = mq_part_end(p);
	CHECK_EQ_INT(mq_part_flushed(p), 0);
	REQ(mq_part_flush_begin(p, &req, &err) == 0);
	CHECK_EQ_INT(req.nfds, 1);
	CHECK_EQ_INT(req.target, t1);
	/* Appends go on while the flush runs; they are not covered. */
	put(p, 1, 10);
	mq_io.fdatasync = count_fdatasync;
	mq_io.fsync = count_fsync;
	n_fdatasync = n_fsync = 0;
	mq_flush_run(&req);
	mq_io_reset();
	CHECK_EQ_INT(n_fdatasync, 1);
	CHECK_EQ_INT(req.status, 0);
	CHECK_EQ_INT(mq_part_flush_end(p, &req, &err), 0);
	CHECK_EQ_INT(mq_part_flushed(p), t1);
	CHECK_EQ_INT(mq_part_flush(p, &err), 0);
	CHECK_EQ_INT(mq_part_flushed(p), mq_part_end(p));

	/* After a roll: the sealed segment, the new one and the directory. */
	put(p, 1, 900);             /* rolls: the old segment is clean */
	put(p, 1, 900);             /* rolls again */
	CHECK_EQ_INT(mq_part_segment_count(p), 3);
	REQ(mq_part_flush_begin(p, &req, &err) == 0);
	CHECK_EQ_INT(req.nfds, 3);
	for (i = ndir = 0; i < req.nfds; i++)
		ndir += req.is_dir[i];
	CHECK_EQ_INT(ndir, 1);
	/* Two flushes in flight complete in begin order. */
	put(p, 1, 10);
	REQ(mq_part_flush_begin(p, &req2, &err) == 0);
	mq_flush_run(&req2);
	mq_flush_run(&req);
	CHECK_EQ_INT(mq_part_flush_end(p, &req2, &err), 0);
	CHECK(mq_part_flushed(p) < req.target);
	CHECK_EQ_INT(mq_part_flush_end(p, &req, &err), 0);
	CHECK_EQ_INT(mq_part_flushed(p), req2.target);
	CHECK_EQ_INT(mq_part_flushed(p), mq_part_end(p));

	/* Many rolls between flushes: one request still covers them all
	 * (older sealed segments are synced when rolling). */
	n_fdatasync = 0;
	mq_io.fdatasync = count_fdatasync;
	for (i = 0; i < 6; i++)
		REQ(put(p, 1, 900) >= 0);
	mq_io_reset();
	CHECK(n_fdatasync >= 3);
	REQ(mq_part_flush_begin(p, &req, &err) == 0);
	CHECK(req.nfds <= MQ_FLUSH_MAXFD);
	CHECK_EQ_INT(req.target, mq_part_end(p));
	mq_flush_run(&req);
	CHECK_EQ_INT(mq_part_flush_end(p, &req, &err), 0);
	CHECK_EQ_INT(mq_part_flushed(p), mq_part_end(p));
	CHECK_EQ_INT(pclose_(p), 0);
}

/* ---- read-only views ---- */

TEST(read_only_follows_writer)
{
	const char *dir = tpath("p");
	mq_partition *w = popen_(dir, 1500, 128, false), *r;
	mq_part_reader *rd;
	mq_record rec;
	mq_err err = { 0 };
	int64_t end, rend;
	int i, got;

	REQ(w);
	REQ(fill(w, 10) == 0);
	REQ(mq_part_flush(w, &err) == 0);
	r = popen_(dir, 0, 0, true);
	REQ(r);
	CHECK_EQ_INT(mq_part_end(r), mq_part_end(w));
	CHECK_EQ_INT(verify_all(r), 0);

	/* The reader keeps its view until it refreshes. */
	REQ(mq_part_reader_open(r, mq_part_end(r), &rd, &err) == 0);
	CHECK_EQ_INT(mq_part_reader_next(rd, &rec, &err), 0);
	REQ(fill(w, 30) == 0);          /* rolls a few times */
	end = mq_part_end(w);
	REQ(mq_part_segment_count(w) >= 3);
	rend = mq_part_end(r);
	CHECK(rend < end);
	CHECK_EQ_INT(mq_part_reader_next(rd, &rec, &err), 0);
	CHECK_EQ_INT(mq_part_refresh(r, &err), 0);
	CHECK_EQ_INT(mq_part_end(r), end);
	CHECK_EQ_INT(mq_part_segment_count(r), mq_part_segment_count(w));
	for (got = 0; (i = mq_part_reader_next(rd, &rec, &err)) == 1; got++)
		CHECK(rec_ok(&rec, rend + got));
	CHECK_EQ_INT(i, 0);
	CHECK_EQ_INT(got, end - rend);
	CHECK_EQ_INT(verify_all(r), 0);
	mq_part_reader_close(rd);

	/* A read-only handle writes nothing. */
	CHECK_EQ_INT(put(r, 1, 0), -1);
	CHECK_EQ_INT(mq_part_set_start(r, 1, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_READ_ONLY);
	CHECK_EQ_INT(mq_part_roll(r, &err), -1);
	CHECK_EQ_INT(mq_part_retain(r, 1, 0, 0, NULL, &err), -1);

	/* The writer's retention moves the reader's start on refresh. */
	REQ(mq_part_retain(w, 1, 0, 0, NULL, &err) == 0);
	CHECK_EQ_INT(mq_part_refresh(r, &err), 0);
	CHECK_EQ_INT(mq_part_start(r), mq_part_start(w));
	CHECK_EQ_INT(verify_all(r), 0);
	CHECK_EQ_INT(pclose_(w), 0);
	CHECK_EQ_INT(pclose_(r), 0);
}

TEST(read_only_torn_tail)
{
	const char *dir = tpath("p");
	mq_partition *w = popen_(dir, 0, 0, false), *r, *r2;
	mq_batch_builder b;
	mq_err err = { 0 };
	mq_part_reader *rd;
	mq_record rec;
	int64_t end;
	long long size, half;
	int fd, i;

	REQ(w);
	REQ(fill(w, 8) == 0);
	end = mq_part_end(w);
	REQ(pclose_(w) == 0);
	r = popen_(dir, 0, 0, true);
	REQ(r);
	CHECK_EQ_INT(mq_part_end(r), end);

	/* Another process writes the first half of a batch by hand. */
	REQ(mq_bb_init(&b, 0, &err) == 0);
	REQ(build(&b, end, 3, NULL, 5000, 40) == 0);
	mq_batch_set_base_offset(b.buf, end);
	size = file_size(seg_file(dir, 0, "log"));
	half = (long long)b.len / 2;
	fd = open(seg_file(dir, 0, "log"), O_WRONLY);
	REQ(fd >= 0);
	REQ(pwrite(fd, b.buf, (size_t)half, size) == half);
	CHECK_EQ_INT(mq_part_refresh(r, &err), 0);
	CHECK_EQ_INT(mq_part_end(r), end);
	CHECK_EQ_INT(verify_all(r), 0);
	/* A fresh read-only open sees the same, and cuts nothing. */
	r2 = popen_(dir, 0, 0, true);
	REQ(r2);
	CHECK_EQ_INT(mq_part_end(r2), end);
	CHECK_EQ_INT(file_size(seg_file(dir, 0, "log")), size + half);
	REQ(mq_part_reader_open(r2, end, &rd, &err) == 0);
	CHECK_EQ_INT(mq_part_reader_next(rd, &rec, &err), 0);

	/* The rest arrives: visible after a refresh. */
	REQ(pwrite(fd, b.buf + half, b.len - (size_t)half, size + half) ==
		(ssize_t)(b.len - (size_t)half));
	close(fd);
	CHECK_EQ_INT(mq_part_end(r), end);
	CHECK_EQ_INT(mq_part_refresh(r, &err), 0);
	CHECK_EQ_INT(mq_part_end(r), end + 3);
	CHECK_EQ_INT(verify_all(r), 0);
	CHECK_EQ_INT(mq_part_refresh(r2, &err), 0);
	for (i = 0; i < 3; i++) {
		CHECK_EQ_INT(mq_part_reader_next(rd, &rec, &err), 1);
		CHECK(rec_ok(&rec, end + i));
		CHECK_EQ_INT(rec.timestamp, 5000 + i);
	}
	CHECK_EQ_INT(mq_part_reader_next(rd, &rec, &err), 0);
	mq_part_reader_close(rd);
	mq_bb_free(&b);
	CHECK_EQ_INT(pclose_(r), 0);
	CHECK_EQ_INT(pclose_(r2), 0);

	/* A writer keeps the completed batch. */
	w = popen_(dir, 0, 0, false);
	REQ(w);
	CHECK_EQ_INT(mq_part_end(w), end + 3);
	CHECK_EQ_INT(mq_part_recovery(w)->bytes_truncated, 0);
	CHECK_EQ_INT(verify_all(w), 0);
	CHECK_EQ_INT(pclose_(w), 0);
}

/* A batch that fails validation is refused without harm. */
TEST(append_rejects_bad_batch)
{
	const char *dir = tpath("p");
	mq_partition *p = popen_(dir, 0, 0, false);
	mq_batch_builder b;
	mq_err err = { 0 };
	int64_t base;

	REQ(p);
	REQ(mq_bb_init(&b, 0, &err) == 0);
	REQ(build(&b, 0, 2, NULL, 1, 5) == 0);
	b.buf[b.len - 3] ^= 0x40;
	CHECK_EQ_INT(mq_part_append(p, b.buf, b.len, &base, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_CORRUPT);
	CHECK_EQ_INT(mq_part_append(p, b.buf, 30, &base, &err), -1);
	CHECK(mq_part_failed(p) == NULL);
	CHECK_EQ_INT(mq_part_end(p), 0);
	CHECK_EQ_INT(file_size(seg_file(dir, 0, "log")), 0);
	mq_bb_free(&b);
	CHECK_EQ_INT(put(p, 1, 0), 0);
	CHECK_EQ_INT(pclose_(p), 0);
}

int main(void)
{
	RUN(empty_partition);
	RUN(round_trip_across_segments);
	RUN(roll_at_size);
	RUN(retention_by_size);
	RUN(retention_by_age);
	RUN(set_start);
	RUN(offset_for_time);
	RUN(index_damage_rebuilt);
	RUN(index_damage_read_only);
	RUN(group_commit_flush);
	RUN(read_only_follows_writer);
	RUN(read_only_torn_tail);
	RUN(append_rejects_bad_batch);
	return harness_done();
}
