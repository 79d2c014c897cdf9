/*
 * t_recovery.c - what survives a crash, a torn write, a corrupt byte, a
 * full disk or a failing fdatasync.
 *
 * A "crash image" is a copy of a partition's files taken while a handle
 * still has it open (after appends it never flushed or recorded in the
 * state file): it is what the disk could hold if the machine died then.
 * Recovery must keep every batch before the recorded recovery point, and
 * cut the log at the first torn or corrupt batch after it.
 */
#include "harness.h"
#include "partition.h"
#include "io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

/* REQUIRE from harness.h evaluates its condition twice; this does not. */
#define REQ(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: required: %s\n", __FILE__, __LINE__, \
			#cond); \
		harness_cur_failed = 1; \
		return; \
	} } while (0)

static uint64_t rng_state = 0xD1B54A32D192ED03ull;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

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
	static char buf[2][8192];
	static int k;
	k = (k + 1) % 2;
	snprintf(buf[k], sizeof buf[k], "%.4000s/%020lld.%.10s", dir,
		 (long long)base, ext);
	return buf[k];
}

static long long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static int read_whole(const char *path, uint8_t **out, size_t *len)
{
	long long size = file_size(path);
	int fd;

	if (size < 0 || size > 64 << 20)
		return -1;
	*out = malloc(size ? (size_t)size : 1);
	fd = open(path, O_RDONLY);
	if (!*out || fd < 0 ||
	    read(fd, *out, (size_t)size) != (ssize_t)size) {
		if (fd >= 0)
			close(fd);
		free(*out);
		return -1;
	}
	close(fd);
	*len = (size_t)size;
	return 0;
}

static int write_whole(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int rc = 0;

	if (fd < 0)
		return -1;
	if (len && write(fd, buf, len) != (ssize_t)len)
		rc = -1;
	close(fd);
	return rc;
}

/* Copy every regular file of src into dst (created, or emptied first). */
static int snapshot(const char *src, const char *dst)
{
	char s[8192], d[8192];
	struct dirent *de;
	DIR *dir;
	int rc = 0;

	mkdir(dst, 0755);
	dir = opendir(dst);
	if (!dir)
		return -1;
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(d, sizeof d, "%.4000s/%.255s", dst, de->d_name);
		unlink(d);
	}
	closedir(dir);
	dir = opendir(src);
	if (!dir)
		return -1;
	while ((de = readdir(dir)) != NULL) {
		uint8_t *buf;
		size_t len;

		if (de->d_name[0] == '.')
			continue;
		snprintf(s, sizeof s, "%.4000s/%.255s", src, de->d_name);
		snprintf(d, sizeof d, "%.4000s/%.255s", dst, de->d_name);
		if (read_whole(s, &buf, &len) < 0) {
			rc = -1;
			continue;
		}
		if (write_whole(d, buf, len) < 0)
			rc = -1;
		free(buf);
	}
	closedir(dir);
	return rc;
}

static int flip(const char *path, long long pos, uint8_t mask)
{
	int fd = open(path, O_RDWR);
	uint8_t c;
	int rc = -1;

	if (fd < 0)
		return -1;
	if (pread(fd, &c, 1, pos) == 1) {
		c ^= mask;
		if (pwrite(fd, &c, 1, pos) == 1)
			rc = 0;
	}
	close(fd);
	return rc;
}

static mq_partition *popen_opts(const char *dir, const mq_part_opts *o)
{
	mq_partition *p = NULL;
	mq_err err = { 0 };

	if (mq_part_open(dir, o, &p, &err) < 0) {
		fprintf(stderr, "open %s: %s\n", dir, err.msg);
		return NULL;
	}
	return p;
}

static mq_partition *popen_(const char *dir, uint64_t seg_bytes,
			    uint32_t interval)
{
	mq_part_opts o = { .segment_bytes = seg_bytes,
			   .index_interval = interval, .create = true };

	return popen_opts(dir, &o);
}

static int pclose_(mq_partition *p)
{
	mq_err err = { 0 };
	return mq_part_close(p, &err);
}

/* Append n records whose values name their offsets; base or -1. */
static int64_t put(mq_partition *p, int n, size_t pad, mq_err *errp)
{
	char val[4200];
	mq_batch_builder b;
	mq_err err = { 0 };
	int64_t base = -1, first = mq_part_end(p);
	int i;

	if (pad > 4000)
		pad = 4000;
	if (mq_bb_init(&b, 0, &err) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		int len = snprintf(val, sizeof val, "rec-%lld|",
				   (long long)(first + i));
		memset(val + len, 'y', pad);
		if (mq_bb_add(&b, 1000 + first + i, NULL, -1, val,
			      len + (int)pad, NULL, 0, &err) < 0)
			goto out;
	}
	if (mq_bb_finish(&b, -1, -1, -1, &err) < 0 ||
	    mq_part_append(p, b.buf, b.len, &base, &err) < 0)
		base = -1;
out:
	if (errp)
		*errp = err;
	mq_bb_free(&b);
	return base;
}

static bool rec_ok(const mq_record *r, int64_t off)
{
	char want[64];
	int len = snprintf(want, sizeof want, "rec-%lld|", (long long)off);

	return r->offset == off && r->value && r->value_len >= len &&
	       memcmp(r->value, want, (size_t)len) == 0;
}

/* Every record from start to end, in order, once. 0 if all is well. */
static int verify_all(mq_partition *p)
{
	int64_t off, end = mq_part_end(p);
	mq_part_reader *rd;
	mq_record rec;
	mq_err err = { 0 };
	int r, bad = 0;

	if (mq_part_reader_open(p, mq_part_start(p), &rd, &err) < 0)
		return 1;
	for (off = mq_part_start(p); off < end; off++) {
		r = mq_part_reader_next(rd, &rec, &err);
		if (r != 1 || !rec_ok(&rec, off)) {
			fprintf(stderr, "record %lld: r=%d %s\n",
				(long long)off, r, r < 0 ? err.msg : "");
			bad = 1;
			break;
		}
	}
	if (!bad && mq_part_reader_next(rd, &rec, &err) != 0)
		bad = 1;
	mq_part_reader_close(rd);
	return bad;
}

/* The recovery point's offset as recorded in the state file, or -1. */
static long long state_rp_offset(const char *dir)
{
	char path[8192], text[1024];
	long long base, off;
	unsigned long long pos;
	const char *line;
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "%.4000s/state", dir);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	n = read(fd, text, sizeof text - 1);
	close(fd);
	if (n <= 0)
		return -1;
	text[n] = '\0';
	line = strstr(text, "recovery-point ");
	if (!line || sscanf(line, "recovery-point %lld %llu %lld", &base,
			    &pos, &off) != 3)
		return -1;
	return off;
}

/* Write a well-formed state file (valid checksum) with the given values. */
static int write_state(const char *dir, int version, long long start,
		       long long base, unsigned long long pos, long long off)
{
	char path[8192], text[512];
	int n;

	n = snprintf(text, sizeof text, "mq-partition-state %d\n"
		     "log-start-offset %lld\nrecovery-point %lld %llu %lld\n",
		     version, start, base, pos, off);
	n += snprintf(text + n, sizeof text - (size_t)n, "crc32c %08x\n",
		      mq_crc32c(0, text, (size_t)n));
	snprintf(path, sizeof path, "%.4000s/state", dir);
	return write_whole(path, text, (size_t)n);
}

/*
 * The usual crash image: four batches flushed and recorded (the open after
 * a clean close records them), then a fifth appended and flushed but not
 * yet recorded in the state file. Fills the end offsets and .log sizes
 * before and after the fifth batch.
 */
struct image {
	int64_t end4, end5;
	long long size4, size5;
};

static int make_image(const char *src, const char *img, uint32_t interval,
		      struct image *im)
{
	mq_partition *p = popen_(src, 0, interval);
	mq_err err = { 0 };
	int i;

	if (!p)
		return -1;
	for (i = 0; i < 4; i++)
		if (put(p, 1 + i, (size_t)i * 30, NULL) < 0)
			return -1;
	if (pclose_(p) < 0)
		return -1;
	p = popen_(src, 0, interval);
	if (!p)
		return -1;
	im->end4 = mq_part_end(p);
	im->size4 = (long long)mq_part_bytes(p);
	if (put(p, 3, 25, NULL) != im->end4 || mq_part_flush(p, &err) < 0)
		return -1;
	im->end5 = mq_part_end(p);
	im->size5 = (long long)mq_part_bytes(p);
	if (snapshot(src, img) < 0)
		return -1;
	return pclose_(p);
}

TEST(truncate_last_batch_at_every_byte)
{
	const char *src = tpath("src"), *img = tpath("img");
	const char *w = tpath("w");
	struct image im;
	long long len;
	int pass;

	REQ(make_image(src, img, 1, &im) == 0);
	REQ(im.size5 > im.size4 + 61);
	REQ(state_rp_offset(img) == im.end4);
	/* pass 0: the state file points just before the last batch;
	 * pass 1: no state file, everything gets verified. */
	for (pass = 0; pass < 2; pass++) {
		for (len = im.size4; len < im.size5; len++) {
			const mq_recovery_info *ri;
			mq_partition *p;
			char st[8192];
			int bad = 0;

			REQ(snapshot(img, w) == 0);
			REQ(truncate(seg_file(w, 0, "log"), len) == 0);
			snprintf(st, sizeof st, "%.4000s/state", w);
			if (pass == 1)
				unlink(st);
			p = popen_(w, 0, 1);
			REQ(p);
			ri = mq_part_recovery(p);
			bad |= mq_part_end(p) != im.end4;
			bad |= (long long)ri->bytes_truncated !=
			       len - im.size4;
			bad |= (ri->reason[0] != 0) != (len > im.size4);
			bad |= (long long)ri->batches_checked !=
			       (pass == 0 ? 0 : 4);
			bad |= file_size(seg_file(w, 0, "log")) != im.size4;
			bad |= put(p, 2, 7, NULL) != im.end4;
			bad |= verify_all(p) != 0;
			bad |= pclose_(p) != 0;
			p = popen_(w, 0, 1);
			REQ(p);
			bad |= mq_part_end(p) != im.end4 + 2;
			bad |= mq_part_recovery(p)->bytes_truncated != 0;
			bad |= verify_all(p) != 0;
			bad |= pclose_(p) != 0;
			if (bad) {
				fprintf(stderr, "pass %d, log cut to %lld "
					"(last batch %lld..%lld) went wrong\n",
					pass, len, im.size4, im.size5);
				CHECK(!bad);
				return;
			}
		}
	}
}

TEST(corrupt_last_batch_is_cut)
{
	const char *src = tpath("src"), *img = tpath("img");
	const char *w = tpath("w");
	struct image im;
	long long at[7];
	int i;

	REQ(make_image(src, img, 0, &im) == 0);
	/* the middle of the records, the CRC, magic, length, base offset,
	 * record count, and the very last byte */
	at[0] = im.size4 + (im.size5 - im.size4) / 2;
	at[1] = im.size4 + 17;
	at[2] = im.size4 + 16;
	at[3] = im.size4 + 10;
	at[4] = im.size4 + 7;
	at[5] = im.size4 + 60;
	at[6] = im.size5 - 1;
	for (i = 0; i < 7; i++) {
		const mq_recovery_info *ri;
		mq_partition *p;

		REQ(snapshot(img, w) == 0);
		REQ(flip(seg_file(w, 0, "log"), at[i], 0x10) == 0);
		p = popen_(w, 0, 0);
		REQ(p);
		ri = mq_part_recovery(p);
		CHECK_EQ_INT(mq_part_end(p), im.end4);
		CHECK_EQ_INT(ri->bytes_truncated, im.size5 - im.size4);
		CHECK(ri->reason[0] != 0);
		CHECK_EQ_INT(file_size(seg_file(w, 0, "log")), im.size4);
		CHECK_EQ_INT(verify_all(p), 0);
		CHECK_EQ_INT(put(p, 1, 0, NULL), im.end4);
		CHECK_EQ_INT(pclose_(p), 0);
	}
	/* Untouched, the image keeps all five batches. */
	{
		mq_partition *p;
		REQ(snapshot(img, w) == 0);
		p = popen_(w, 0, 0);
		REQ(p);
		CHECK_EQ_INT(mq_part_end(p), im.end5);
		CHECK_EQ_INT(mq_part_recovery(p)->batches_checked, 1);
		CHECK_EQ_INT(verify_all(p), 0);
		CHECK_EQ_INT(pclose_(p), 0);
	}
}

TEST(flushed_batch_is_never_cut)
{
	const char *src = tpath("src"), *img = tpath("img");
	mq_partition *p;
	mq_part_reader *rd;
	mq_record rec;
	mq_read_range rr;
	mq_err err = { 0 };
	struct image im;
	int r, n = 0;

	REQ(make_image(src, img, 0, &im) == 0);
	/* In the image the recovery point follows the fourth batch (offsets
	 * 6..9): a flipped byte in it is trusted, not cut. */
	REQ(flip(seg_file(img, 0, "log"), im.size4 - 20, 0x01) == 0);
	p = popen_(img, 0, 0);
	REQ(p);
	CHECK_EQ_INT(mq_part_end(p), im.end5);
	CHECK_EQ_INT(mq_part_recovery(p)->bytes_truncated, 0);
	CHECK_EQ_INT(mq_part_recovery(p)->reason[0], 0);
	CHECK_EQ_INT(file_size(seg_file(img, 0, "log")), im.size5);
	/* The damage shows when the batch is read, not before. */
	REQ(mq_part_reader_open(p, 0, &rd, &err) == 0);
	while ((r = mq_part_reader_next(rd, &rec, &err)) == 1) {
		CHECK(rec_ok(&rec, n));
		n++;
	}
	CHECK_EQ_INT(r, -1);
	CHECK_EQ_INT(err.code, MQ_E_CORRUPT);
	CHECK_EQ_INT(n, 1 + 2 + 3);
	mq_part_reader_close(rd);
	/* A fetch range is checked before it is served: the damaged batch
	 * is refused, and a range that reaches it stops just before it. */
	CHECK_EQ_INT(mq_part_read(p, 7, 1, im.end5, &rr, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_CORRUPT);
	CHECK_EQ_INT(mq_part_read(p, 0, 1 << 20, im.end5, &rr, &err), 0);
	CHECK_EQ_INT(rr.first_offset, 0);
	CHECK_EQ_INT(rr.next_offset, 6);
	CHECK_EQ_INT(pclose_(p), 0);

	/* After a clean close everything is flushed: even the last batch is
	 * trusted. */
	REQ(flip(seg_file(src, 0, "log"), im.size5 - 10, 0x01) == 0);
	p = popen_(src, 0, 0);
	REQ(p);
	CHECK_EQ_INT(mq_part_end(p), im.end5);
	CHECK_EQ_INT(mq_part_recovery(p)->bytes_truncated, 0);
	CHECK_EQ_INT(mq_part_recovery(p)->batches_checked, 0);
	CHECK_EQ_INT(pclose_(p), 0);
}

TEST(garbage_after_the_end_is_cut)
{
	const char *src = tpath("src"), *img = tpath("img");
	struct image im;
	uint8_t junk[5000];
	mq_partition *p;
	int kind, fd;
	size_t i;

	REQ(make_image(src, img, 0, &im) == 0);
	REQ(snapshot(img, src) == 0);
	for (kind = 0; kind < 3; kind++) {
		/* zeros (a crash that extended the file), random bytes, and
		 * a copy of a real batch with the wrong base offset */
		for (i = 0; i < sizeof junk; i++)
			junk[i] = kind == 1 ? (uint8_t)rng() : 0;
		if (kind == 2) {
			uint8_t *log;
			size_t len;
			REQ(read_whole(seg_file(img, 0, "log"), &log, &len) ==
			    0);
			memcpy(junk, log + im.size4, (size_t)(im.size5 -
							     im.size4));
			free(log);
		}
		REQ(snapshot(src, img) == 0);
		fd = open(seg_file(img, 0, "log"), O_WRONLY | O_APPEND);
		REQ(fd >= 0);
		REQ(write(fd, junk, sizeof junk) == (ssize_t)sizeof junk);
		close(fd);
		p = popen_(img, 0, 0);
		REQ(p);
		CHECK_EQ_INT(mq_part_end(p), im.end5);
		/* Zeros are preallocated space, not damage. */
		CHECK_EQ_INT(mq_part_recovery(p)->bytes_truncated,
			     (kind == 0 ? 0 : sizeof junk));
		CHECK_EQ_INT(mq_part_recovery(p)->bytes_zeros,
			     (kind == 0 ? sizeof junk : 0));
		CHECK_EQ_INT(mq_part_recovery(p)->reason[0] == '\0',
			     (kind == 0));
		CHECK_EQ_INT(file_size(seg_file(img, 0, "log")), im.size5);
		CHECK_EQ_INT(verify_all(p), 0);
		CHECK_EQ_INT(pclose_(p), 0);
	}
}

TEST(cut_removes_later_segments)
{
	const char *src = tpath("src"), *img = tpath("img");
	int64_t seg1, seg2;
	long long cut_at;
	mq_partition *p;
	mq_read_range rr;
	mq_err err = { 0 };
	int nseg, i;

	/* Two batches per segment; never flushed, so the state file still
	 * records nothing and the whole log gets verified. */
	p = popen_(src, 1000, 0);
	REQ(p);
	for (i = 0; i < 12; i++)
		REQ(put(p, 2, 200, NULL) == 2 * i);
	nseg = mq_part_segment_count(p);
	REQ(nseg >= 4);
	REQ(mq_part_read(p, 0, 1 << 20, mq_part_end(p), &rr, &err) == 0);
	seg1 = rr.next_offset;
	REQ(mq_part_read(p, seg1, 1, mq_part_end(p), &rr, &err) == 0);
	cut_at = (long long)rr.len + 30;    /* inside its second batch */
	REQ(mq_part_read(p, seg1, 1 << 20, mq_part_end(p), &rr, &err) == 0);
	seg2 = rr.next_offset;
	REQ(seg2 == seg1 + 4);
	REQ(snapshot(src, img) == 0);
	REQ(pclose_(p) == 0);
	REQ(truncate(seg_file(img, seg1, "log"), cut_at) == 0);

	p = popen_(img, 1000, 0);
	REQ(p);
	CHECK_EQ_INT(mq_part_end(p), seg1 + 2);
	CHECK_EQ_INT(mq_part_segment_count(p), 2);
	CHECK_EQ_INT(mq_part_recovery(p)->segments_removed, nseg - 2);
	CHECK(mq_part_recovery(p)->reason[0] != 0);
	CHECK(file_size(seg_file(img, seg1, "log")) > 0);
	CHECK(file_size(seg_file(img, seg2, "log")) < 0);
	CHECK(file_size(seg_file(img, seg2, "index")) < 0);
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(put(p, 1, 0, NULL), seg1 + 2);
	CHECK_EQ_INT(pclose_(p), 0);
	p = popen_(img, 1000, 0);
	REQ(p);
	CHECK_EQ_INT(mq_part_end(p), seg1 + 3);
	CHECK_EQ_INT(mq_part_recovery(p)->batches_checked, 0);
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(pclose_(p), 0);
}

/* A segment file that does not continue the log (a gap in offsets) is
 * not part of it. */
TEST(stray_segment_after_a_gap_is_removed)
{
	const char *dir = tpath("p");
	mq_partition *p = popen_(dir, 0, 0);
	uint8_t *log;
	size_t len;
	int64_t end;

	REQ(p);
	REQ(put(p, 3, 10, NULL) == 0);
	end = mq_part_end(p);
	REQ(pclose_(p) == 0);
	/* A copy of segment 0 named as if it started at end + 5. */
	REQ(read_whole(seg_file(dir, 0, "log"), &log, &len) == 0);
	REQ(write_whole(seg_file(dir, end + 5, "log"), log, len) == 0);
	free(log);
	p = popen_(dir, 0, 0);
	REQ(p);
	CHECK_EQ_INT(mq_part_end(p), end);
	CHECK_EQ_INT(mq_part_segment_count(p), 1);
	CHECK_EQ_INT(mq_part_recovery(p)->segments_removed, 1);
	CHECK(file_size(seg_file(dir, end + 5, "log")) < 0);
	CHECK_EQ_INT(put(p, 1, 0, NULL), end);
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(pclose_(p), 0);
}

TEST(damaged_state_means_verify_everything)
{
	const char *src = tpath("src"), *w = tpath("w");
	char st[8192];
	mq_partition *p;
	int64_t end;
	int how;

	p = popen_(src, 0, 0);
	REQ(p);
	for (how = 0; how < 5; how++)
		REQ(put(p, 2, 10, NULL) >= 0);
	end = mq_part_end(p);
	REQ(pclose_(p) == 0);
	for (how = 0; how < 6; how++) {
		REQ(snapshot(src, w) == 0);
		snprintf(st, sizeof st, "%.4000s/state", w);
		switch (how) {
		case 0: REQ(flip(st, 30, 0x01) == 0); break;   /* bad CRC */
		case 1: REQ(unlink(st) == 0); break;
		case 2: REQ(write_state(w, 2, 0, 0, 0, 0) == 0); break;
		case 3: /* names a segment that does not exist */
			REQ(write_state(w, 1, 0, 77, 0, 77) == 0); break;
		case 4: /* a position inside a batch */
			REQ(write_state(w, 1, 0, 0, 70, 1) == 0); break;
		case 5: /* beyond the file */
			REQ(write_state(w, 1, 0, 0, 1 << 20, end + 5) == 0);
			break;
		}
		p = popen_(w, 0, 0);
		REQ(p);
		CHECK_EQ_INT(mq_part_end(p), end);
		CHECK_EQ_INT(mq_part_recovery(p)->batches_checked, 5);
		CHECK_EQ_INT(mq_part_recovery(p)->bytes_truncated, 0);
		CHECK_EQ_INT(verify_all(p), 0);
		CHECK_EQ_INT(pclose_(p), 0);
		/* and the state file is good again */
		CHECK_EQ_INT(state_rp_offset(w), end);
	}
}

/* ---- fault injection through mq_io ---- */

static int hook_calls, hook_fail_at, hook_errno;
static bool hook_short;

/* Call hook_fail_at fails with hook_errno; with hook_short it writes
 * half instead and the call after it fails. */
static ssize_t hook_pwrite(int fd, const void *buf, size_t len, off_t pos)
{
	hook_calls++;
	if (hook_short && hook_calls == hook_fail_at && len > 1)
		return pwrite(fd, buf, len / 2, pos);
	if (hook_calls == hook_fail_at + (hook_short ? 1 : 0)) {
		errno = hook_errno;
		return -1;
	}
	return pwrite(fd, buf, len, pos);
}

static void hook(int fail_at, int e, bool short_first)
{
	hook_calls = 0;
	hook_fail_at = fail_at;
	hook_errno = e;
	hook_short = short_first;
	mq_io.pwrite = hook_pwrite;
}

static int fail_sync(int fd)
{
	(void)fd;
	errno = EIO;
	return -1;
}

static void check_failed_write(int fail_at, int e, bool short_first,
			       int want_code)
{
	const char *dir = tpath(short_first ? "short" : e == ENOSPC ?
				"nospc" : "eio");
	mq_partition *p = popen_(dir, 0, 0);
	mq_err err = { 0 };
	long long size;
	int64_t end;

	REQ(p);
	REQ(put(p, 2, 10, NULL) == 0);
	REQ(put(p, 3, 10, NULL) == 2);
	REQ(mq_part_flush(p, &err) == 0);
	end = mq_part_end(p);
	size = file_size(seg_file(dir, 0, "log"));

	hook(fail_at, e, short_first);
	CHECK_EQ_INT(put(p, 4, 300, &err), -1);
	mq_io_reset();
	CHECK(hook_calls >= fail_at);
	CHECK_EQ_INT(err.code, want_code);
	CHECK_EQ_INT(mq_part_end(p), end);
	CHECK_EQ_INT(file_size(seg_file(dir, 0, "log")), size);
	REQ(mq_part_failed(p) != NULL);
	CHECK_EQ_INT(mq_part_failed(p)->code, want_code);
	/* A failed partition takes no more writes, even with the disk
	 * back. */
	CHECK_EQ_INT(put(p, 1, 0, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_READ_ONLY);
	CHECK_EQ_INT(mq_part_flush(p, &err), -1);
	CHECK_EQ_INT(mq_part_roll(p, &err), -1);
	/* Reading still works. */
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(pclose_(p), -1);

	p = popen_(dir, 0, 0);
	REQ(p);
	CHECK_EQ_INT(mq_part_end(p), end);
	CHECK(mq_part_failed(p) == NULL);
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(put(p, 1, 0, NULL), end);
	CHECK_EQ_INT(pclose_(p), 0);
}

TEST(enospc_on_append)
{
	check_failed_write(1, ENOSPC, false, MQ_E_NOSPC);
}

TEST(short_write_then_error)
{
	check_failed_write(1, EIO, true, MQ_E_IO);
}

TEST(index_write_error_undoes_append)
{
	const char *dir = tpath("p");
	mq_partition *p = popen_(dir, 0, 0);
	mq_err err = { 0 };

	REQ(p);
	/* The first batch of a segment always gets an index entry: the
	 * second write of the append is the index's. */
	hook(2, ENOSPC, false);
	CHECK_EQ_INT(put(p, 1, 0, &err), -1);
	mq_io_reset();
	CHECK_EQ_INT(hook_calls, 2);
	CHECK_EQ_INT(err.code, MQ_E_NOSPC);
	CHECK_EQ_INT(file_size(seg_file(dir, 0, "log")), 0);
	CHECK(mq_part_failed(p) != NULL);
	CHECK_EQ_INT(pclose_(p), -1);
	p = popen_(dir, 0, 0);
	REQ(p);
	CHECK_EQ_INT(mq_part_end(p), 0);
	CHECK_EQ_INT(put(p, 1, 0, NULL), 0);
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(pclose_(p), 0);
}

TEST(fdatasync_failure_stops_partition)
{
	const char *dir = tpath("p");
	mq_partition *p = popen_(dir, 0, 0);
	mq_flush_req req;
	mq_err err = { 0 };
	int64_t a;

	REQ(p);
	REQ(put(p, 2, 0, NULL) == 0);
	REQ(mq_part_flush(p, &err) == 0);
	a = mq_part_flushed(p);
	CHECK_EQ_INT(a, 2);
	REQ(put(p, 2, 0, NULL) == 2);
	REQ(mq_part_roll(p, &err) == 0);   /* records the state file */
	REQ(put(p, 2, 0, NULL) == 4);
	CHECK(state_rp_offset(dir) <= a);

	/* Group commit: the flusher's fdatasync fails. */
	REQ(mq_part_flush_begin(p, &req, &err) == 0);
	CHECK(req.nfds >= 2);
	mq_io.fdatasync = fail_sync;
	mq_flush_run(&req);
	mq_io_reset();
	CHECK_EQ_INT(req.status, EIO);
	CHECK_EQ_INT(mq_part_flush_end(p, &req, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_IO);
	CHECK_EQ_INT(mq_part_flushed(p), a);
	REQ(mq_part_failed(p) != NULL);
	CHECK_EQ_INT(put(p, 1, 0, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_READ_ONLY);
	/* Even a later fdatasync that succeeds proves nothing now. */
	CHECK_EQ_INT(mq_part_flush(p, &err), -1);
	CHECK_EQ_INT(mq_part_flushed(p), a);
	CHECK_EQ_INT(pclose_(p), -1);
	/* Nothing beyond the flushed offset was ever recorded as durable. */
	CHECK(state_rp_offset(dir) <= a);
}

TEST(fdatasync_failure_inline_flush)
{
	const char *dir = tpath("p");
	mq_partition *p = popen_(dir, 0, 0);
	mq_err err = { 0 };

	REQ(p);
	REQ(put(p, 1, 0, NULL) == 0);
	REQ(mq_part_flush(p, &err) == 0);
	REQ(put(p, 1, 0, NULL) == 1);
	mq_io.fdatasync = fail_sync;
	CHECK_EQ_INT(mq_part_flush(p, &err), -1);
	mq_io_reset();
	CHECK_EQ_INT(err.code, MQ_E_IO);
	CHECK_EQ_INT(mq_part_flushed(p), 1);
	CHECK(mq_part_failed(p) != NULL);
	CHECK_EQ_INT(pclose_(p), -1);
	CHECK(state_rp_offset(dir) <= 1);
}

/* ---- preallocated segments ---- */

#define STEP 65536

static mq_partition *popen_prealloc(const char *dir, uint64_t seg_bytes)
{
	mq_part_opts o = { .segment_bytes = seg_bytes, .create = true,
			   .prealloc_bytes = STEP };

	return popen_opts(dir, &o);
}

/*
 * The active segment grows in zero-filled steps; a crash leaves the zeros
 * after the last batch. Readers see the batches; the next writer keeps
 * them all, cuts the zeros without calling it damage, and goes on.
 */
TEST(preallocated_tail_after_a_crash)
{
	const char *dir = tpath("pre"), *img = tpath("pre-img");
	mq_part_opts ro = { .read_only = true };
	mq_partition *p = popen_prealloc(dir, 0), *r = NULL;
	const mq_recovery_info *ri;
	mq_err err = { 0 };
	long long data;

	REQ(p);
	for (int i = 0; i < 5; i++)
		REQ(put(p, 3, 100, NULL) == i * 3);
	REQ(mq_part_flush(p, &err) == 0);
	data = (long long)mq_part_bytes(p);
	CHECK_EQ_INT(file_size(seg_file(dir, 0, "log")), STEP);
	/* What kill -9 leaves: the files as they are now. */
	REQ(snapshot(dir, img) == 0);
	CHECK_EQ_INT(pclose_(p), 0);
	CHECK_EQ_INT(file_size(seg_file(dir, 0, "log")), data);

	REQ(mq_part_open(img, &ro, &r, &err) == 0);
	CHECK_EQ_INT(mq_part_end(r), 15);
	CHECK_EQ_INT(verify_all(r), 0);
	CHECK_EQ_INT(mq_part_refresh(r, &err), 0);
	CHECK_EQ_INT(mq_part_end(r), 15);
	mq_part_close(r, NULL);
	CHECK_EQ_INT(file_size(seg_file(img, 0, "log")), STEP);

	p = popen_(img, 0, 0);
	REQ(p);
	ri = mq_part_recovery(p);
	CHECK_EQ_INT(mq_part_end(p), 15);
	CHECK_EQ_INT(ri->reason[0], '\0');
	CHECK_EQ_INT(ri->bytes_truncated, 0);
	CHECK_EQ_INT(ri->bytes_zeros, STEP - data);
	CHECK_EQ_INT(file_size(seg_file(img, 0, "log")), data);
	CHECK_EQ_INT(put(p, 2, 0, NULL), 15);
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(pclose_(p), 0);
}

/* A torn batch inside the preallocated space is cut like any other. */
TEST(torn_batch_in_preallocated_space)
{
	const char *dir = tpath("pre-torn");
	mq_partition *p = popen_prealloc(dir, 0);
	mq_err err = { 0 };
	long long data;

	REQ(p);
	REQ(put(p, 3, 100, NULL) == 0);
	REQ(mq_part_flush(p, &err) == 0);
	data = (long long)mq_part_bytes(p);
	REQ(put(p, 3, 100, NULL) == 3);
	REQ(snapshot(dir, tpath("pre-torn-img")) == 0);
	CHECK_EQ_INT(pclose_(p), 0);
	dir = tpath("pre-torn-img");
	/* The second batch half on disk: its end is still zeros. */
	REQ(flip(seg_file(dir, 0, "log"), data + 80, 0x10) == 0);
	p = popen_(dir, 0, 0);
	REQ(p);
	CHECK_EQ_INT(mq_part_end(p), 3);
	CHECK(mq_part_recovery(p)->reason[0] != '\0');
	CHECK_EQ_INT(file_size(seg_file(dir, 0, "log")), data);
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(pclose_(p), 0);
}

/* Where the batches of the .log at path end (the first byte that does
 * not begin a whole batch), or -1. */
static long long batches_end(const char *path)
{
	uint8_t *log;
	size_t len, pos = 0;
	mq_batch_hdr h;

	if (read_whole(path, &log, &len) < 0)
		return -1;
	while (len - pos >= MQ_BATCH_HEADER_SIZE &&
	       mq_batch_parse_header(log + pos, len - pos, &h, NULL) == 0 &&
	       mq_batch_size(&h) <= len - pos)
		pos += mq_batch_size(&h);
	free(log);
	return (long long)pos;
}

/* A sealed segment ends where its batches end: zeros are cut at the roll. */
TEST(roll_cuts_the_preallocated_tail)
{
	const char *dir = tpath("pre-roll");
	mq_partition *p = popen_prealloc(dir, 8192);
	int64_t bases[64];
	int n = 0;
	DIR *d;
	struct dirent *de;

	REQ(p);
	for (int i = 0; i < 40; i++)
		REQ(put(p, 2, 300, NULL) == i * 2);
	REQ((d = opendir(dir)));
	while ((de = readdir(d)) && n < 64) {
		long long base;
		char ext[8];
		if (sscanf(de->d_name, "%20lld.%7s", &base, ext) == 2 &&
		    !strcmp(ext, "log"))
			bases[n++] = base;
	}
	closedir(d);
	REQ(n > 2);
	REQ(n == mq_part_segment_count(p));
	int64_t last = 0;
	for (int i = 0; i < n; i++)
		if (bases[i] > last)
			last = bases[i];
	for (int i = 0; i < n; i++) {
		const char *log = seg_file(dir, bases[i], "log");
		long long fsz = file_size(log), used = batches_end(log);
		CHECK(used > 0);
		if (bases[i] == last) {
			CHECK_EQ_INT(fsz, 8192);	/* preallocated */
		} else if (used != fsz) {
			fprintf(stderr, "segment %lld: %lld bytes of batches "
				"in a file of %lld\n", (long long)bases[i],
				used, fsz);
			CHECK(used == fsz);
		}
	}
	CHECK_EQ_INT(pclose_(p), 0);
	p = popen_(dir, 8192, 0);
	REQ(p);
	CHECK_EQ_INT(mq_part_recovery(p)->bytes_truncated, 0);
	CHECK_EQ_INT(mq_part_end(p), 80);
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(pclose_(p), 0);
}

/* Zeros that cannot be written (a full disk) leave the append alone. */
TEST(preallocation_failure_is_not_an_append_failure)
{
	const char *dir = tpath("pre-full");
	mq_partition *p = popen_prealloc(dir, 0);
	mq_err err = { 0 };
	long long data;

	REQ(p);
	hook(1, ENOSPC, false);
	CHECK_EQ_INT(put(p, 3, 10, &err), 0);
	mq_io_reset();
	CHECK(mq_part_failed(p) == NULL);
	data = (long long)mq_part_bytes(p);
	CHECK_EQ_INT(file_size(seg_file(dir, 0, "log")), data);
	/* The next append preallocates again, after the first batch. */
	CHECK_EQ_INT(put(p, 3, 10, &err), 3);
	CHECK_EQ_INT(file_size(seg_file(dir, 0, "log")), data + STEP);
	CHECK_EQ_INT(pclose_(p), 0);
	p = popen_(dir, 0, 0);
	REQ(p);
	CHECK_EQ_INT(mq_part_end(p), 6);
	CHECK_EQ_INT(verify_all(p), 0);
	CHECK_EQ_INT(pclose_(p), 0);
}

int main(void)
{
	RUN(truncate_last_batch_at_every_byte);
	RUN(corrupt_last_batch_is_cut);
	RUN(flushed_batch_is_never_cut);
	RUN(garbage_after_the_end_is_cut);
	RUN(cut_removes_later_segments);
	RUN(stray_segment_after_a_gap_is_removed);
	RUN(damaged_state_means_verify_everything);
	RUN(enospc_on_append);
	RUN(short_write_then_error);
	RUN(index_write_error_undoes_append);
	RUN(fdatasync_failure_stops_partition);
	RUN(fdatasync_failure_inline_flush);
	RUN(preallocated_tail_after_a_crash);
	RUN(torn_batch_in_preallocated_space);
	RUN(roll_cuts_the_preallocated_tail);
	RUN(preallocation_failure_is_not_an_append_failure);
	return harness_done();
}
