/*
 * bench_log.c - throughput of the log-segment library against raw disk I/O
 * on the same file system.
 *
 *   bench_log DIR
 *
 * For 100-byte records in batches of 1, 16 and 256 (each batch made with
 * mq_bb_*), measures:
 *   - append with mq_part_append, without fsync and with mq_part_flush
 *     after every append; the baseline is write(2) of the same bytes to a
 *     plain file, without and with fdatasync after every batch (the two
 *     durable runs alternate batch by batch, see sync_pairs);
 *   - sequential read: mq_part_read ranges fetched with pread, cold (the
 *     first read after opening, which checks every batch's CRC) and warm
 *     (data this process has checked already), and the decoding reader
 *     mq_part_reader_*; the baseline is pread(2) of the plain file in the
 *     same chunk size.
 * Every figure is printed as records/s, MB/s (10^6 bytes) and a ratio to
 * its raw baseline. Targets are marked PASS or MISS: appends of
 * 256-record batches without fsync, and range reads (cold and warm) of
 * 256-record batches, each at least 70% of raw. The targets are informational: the
 * exit status is 0 unless something failed.
 *
 * Reads run right after the writes, so both the log and the plain file
 * are served from the page cache: the figures compare the library's own
 * cost per byte, not the disk's.
 *
 * Environment: MQ_BENCH_SCALE (a positive number, default 1) multiplies
 * the amount of data, for quicker or steadier runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "io.h"
#include "partition.h"

#define RECORD_BYTES 100
#define READ_CHUNK (1u << 20)   /* bytes asked per read, raw and log */
#define TARGET 0.70             /* of raw throughput */
#define REPEAT 5                /* best of, for the no-fsync figures */

/* Work per batch size: records appended without fsync, and the most
 * appends for the fdatasync-per-append runs (which also stop after
 * SYNC_BUDGET seconds). */
struct plan {
	int batch;
	long nosync_records;
	long sync_appends;
};
static const struct plan plans[] = {
	{ 1, 300000, 2000 },
	{ 16, 1600000, 2000 },
	{ 256, 3200000, 2000 },
};
#define SYNC_BUDGET 2.0   /* seconds for the fdatasync runs, both sides */

static const char *data_dir;
static char raw_path[4096], part_dir[4096];

/* One measurement. */
struct fig {
	double secs;
	uint64_t records;
	uint64_t bytes;
};

static double rate(uint64_t n, double secs)
{
	return secs > 0 ? (double)n / secs : 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die_err(const char *what, const mq_err *err)
{
	fprintf(stderr, "bench_log: %s: %s (%s)\n", what, err->msg,
		mq_code_name(err->code));
	exit(1);
}

static void die_sys(const char *what)
{
	fprintf(stderr, "bench_log: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int rm_cb(const char *path, const struct stat *sb, int flag,
		 struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	if (remove(path) < 0 && errno != ENOENT)
		die_sys(path);
	return 0;
}

/* Remove the partition directory and the plain file, if present. */
static void clean(void)
{
	struct stat st;

	if (stat(part_dir, &st) == 0)
		nftw(part_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	if (unlink(raw_path) < 0 && errno != ENOENT)
		die_sys(raw_path);
}

/* One batch of n records of RECORD_BYTES each, null keys. */
static void build_batch(mq_batch_builder *b, int n)
{
	uint8_t value[RECORD_BYTES];
	int64_t ts = mq_now_ms();
	mq_err err;

	for (size_t i = 0; i < sizeof value; i++)
		value[i] = (uint8_t)('a' + i % 26);
	if (mq_bb_init(b, 0, &err) < 0)
		die_err("mq_bb_init", &err);
	for (int i = 0; i < n; i++) {
		value[0] = (uint8_t)i;
		if (mq_bb_add(b, ts, NULL, -1, value, RECORD_BYTES, NULL, 0,
			      &err) < 0)
			die_err("mq_bb_add", &err);
	}
	if (mq_bb_finish(b, -1, -1, -1, &err) < 0)
		die_err("mq_bb_finish", &err);
}

/*
 * The read buffer is page aligned. With malloc's 16-byte offset, copying
 * page-aligned file data into it makes every load land 16 bytes from a
 * recent store modulo 4096, which the CPU mistakes for a dependency: the
 * raw reads, whose positions are page aligned, would suffer and the log's
 * would not, and the ratio would flatter the log.
 */
static uint8_t *read_buffer(size_t len)
{
	void *p;
	int rc = posix_memalign(&p, 4096, len);

	if (rc != 0) {
		errno = rc;
		die_sys("posix_memalign");
	}
	return p;
}

/* ---- raw baseline ---- */

/* write(2) all of len bytes at batch to fd, or die. */
static void write_all(int fd, const uint8_t *batch, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, batch + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die_sys("write");
		done += (size_t)n;
	}
}

static int raw_create(void)
{
	int fd;

	if (unlink(raw_path) < 0 && errno != ENOENT)
		die_sys(raw_path);
	fd = open(raw_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die_sys(raw_path);
	return fd;
}

/* write(2) the batch bytes `count` times to a fresh plain file. */
static struct fig raw_write(const uint8_t *batch, size_t len, int nrec,
			    long count)
{
	struct fig f = { 0, 0, 0 };
	int fd = raw_create();
	double t0 = now();

	for (long i = 0; i < count; i++)
		write_all(fd, batch, len);
	f.secs = now() - t0;
	/* Untimed, as closing the partition flushes it untimed: both files
	 * are clean before the reads, and the writeback of one run does not
	 * slow the next. */
	if (fdatasync(fd) < 0)
		die_sys("fdatasync");
	if (close(fd) < 0)
		die_sys("close");
	f.records = (uint64_t)count * (uint64_t)nrec;
	f.bytes = (uint64_t)count * len;
	return f;
}

/* pread(2) the plain file from start to end in READ_CHUNK pieces. */
static struct fig raw_read(uint8_t *buf, uint64_t records)
{
	struct fig f = { 0, records, 0 };
	off_t pos = 0;
	double t0;
	int fd = open(raw_path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die_sys(raw_path);
	t0 = now();
	for (;;) {
		ssize_t n = pread(fd, buf, READ_CHUNK, pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die_sys("pread");
		if (n == 0)
			break;
		pos += n;
	}
	f.secs = now() - t0;
	f.bytes = (uint64_t)pos;
	close(fd);
	return f;
}

/* ---- the library ---- */

static mq_partition *part_open(void)
{
	mq_part_opts opts = { 0 };
	mq_partition *p;
	mq_err err;

	opts.create = true;
	if (mq_part_open(part_dir, &opts, &p, &err) < 0)
		die_err("mq_part_open", &err);
	return p;
}

static void part_remove(void)
{
	if (access(part_dir, F_OK) == 0)
		nftw(part_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void part_close(mq_partition *p)
{
	mq_err err;

	if (mq_part_close(p, &err) < 0)
		die_err("mq_part_close", &err);
}

/* Append the batch `count` times to a fresh partition. Opening and
 * closing (which flushes) are not timed. */
static struct fig part_append(uint8_t *batch, size_t len, int nrec,
			      long count)
{
	struct fig f = { 0, 0, 0 };
	mq_partition *p;
	mq_err err;
	int64_t base;
	double t0;

	part_remove();
	p = part_open();
	t0 = now();
	for (long i = 0; i < count; i++) {
		if (mq_part_append(p, batch, len, &base, &err) < 0)
			die_err("mq_part_append", &err);
	}
	f.secs = now() - t0;
	if (mq_part_end(p) != (int64_t)count * nrec) {
		fprintf(stderr, "bench_log: log end offset %lld, expected "
			"%lld\n", (long long)mq_part_end(p),
			(long long)count * nrec);
		exit(1);
	}
	part_close(p);
	f.records = (uint64_t)count * (uint64_t)nrec;
	f.bytes = (uint64_t)count * len;
	return f;
}

/* Read the whole partition as a fetch would: mq_part_read ranges, each
 * fetched with pread into buf (which has room for READ_CHUNK bytes).
 * Cold: the first read after opening, which checks every batch's CRC
 * (flushed data that this process has not read yet). Warm: one untimed
 * read first, then the timed one over data already checked, as a broker
 * serves a partition after its first reader. */
static struct fig part_read_pass(mq_partition *p, uint8_t **buf, size_t *cap)
{
	struct fig f = { 0, 0, 0 };
	int64_t off = mq_part_start(p), end = mq_part_end(p);
	mq_read_range r;
	mq_err err;
	double t0 = now();

	while (off < end) {
		if (mq_part_read(p, off, READ_CHUNK, end, &r, &err) < 0)
			die_err("mq_part_read", &err);
		if (r.len == 0 || r.next_offset <= off) {
			fprintf(stderr, "bench_log: mq_part_read made no "
				"progress at offset %lld\n", (long long)off);
			exit(1);
		}
		if (r.len > *cap) {	/* a batch bigger than a chunk */
			free(*buf);
			*buf = read_buffer(r.len);
			*cap = r.len;
		}
		/* Bytes the library had to read to check them come back
		 * with the range; others are read here. */
		if (!r.data &&
		    mq_pread_full(r.fd, *buf, r.len, r.pos) != (ssize_t)r.len)
			die_sys("pread of a read range");
		f.bytes += r.len;
		f.records += (uint64_t)(r.next_offset - off);
		off = r.next_offset;
	}
	f.secs = now() - t0;
	return f;
}

static struct fig part_read_ranges(uint8_t **buf, size_t *cap, bool warm)
{
	mq_partition *p = part_open();
	struct fig f;

	if (warm)
		part_read_pass(p, buf, cap);
	f = part_read_pass(p, buf, cap);
	part_close(p);
	return f;
}

/* Read the whole partition record by record with the decoding reader. */
static struct fig part_read_reader(uint64_t bytes)
{
	struct fig f = { 0, 0, bytes };
	mq_partition *p = part_open();
	mq_part_reader *rd;
	mq_record rec;
	mq_err err;
	uint64_t sum = 0;
	double t0 = now();
	int rc;

	if (mq_part_reader_open(p, mq_part_start(p), &rd, &err) < 0)
		die_err("mq_part_reader_open", &err);
	while ((rc = mq_part_reader_next(rd, &rec, &err)) == 1) {
		f.records++;
		sum += (uint64_t)rec.value_len;
	}
	if (rc < 0)
		die_err("mq_part_reader_next", &err);
	f.secs = now() - t0;
	mq_part_reader_close(rd);
	if (f.records != (uint64_t)mq_part_end(p) ||
	    sum != f.records * RECORD_BYTES) {
		fprintf(stderr, "bench_log: reader saw %llu records, log has "
			"%lld\n", (unsigned long long)f.records,
			(long long)mq_part_end(p));
		exit(1);
	}
	part_close(p);
	return f;
}

/*
 * Durable appends, one fdatasync per batch. Disk latency on a shared
 * machine drifts by a factor of several within seconds, so the two runs
 * are not done one after the other: each step writes and syncs one batch
 * to the plain file and appends and flushes one to the log (in turns as
 * to which goes first), and each side sums its own times. Runs for
 * `budget` seconds or `max` steps.
 */
static void sync_pairs(uint8_t *batch, size_t len, int nrec, long max,
		       double budget, struct fig *raw, struct fig *log)
{
	int fd = raw_create();
	mq_partition *p;
	mq_err err;
	int64_t base;
	double start, t0;
	long i;

	part_remove();
	p = part_open();
	memset(raw, 0, sizeof *raw);
	memset(log, 0, sizeof *log);
	start = now();
	for (i = 0; i < max && (i < 8 || now() - start < budget); i++) {
		/* Who goes first alternates too. */
		for (int k = 0; k < 2; k++) {
			t0 = now();
			if ((i + k) % 2 == 0) {
				write_all(fd, batch, len);
				if (fdatasync(fd) < 0)
					die_sys("fdatasync");
				raw->secs += now() - t0;
				continue;
			}
			if (mq_part_append(p, batch, len, &base, &err) < 0)
				die_err("mq_part_append", &err);
			if (mq_part_flush(p, &err) < 0)
				die_err("mq_part_flush", &err);
			log->secs += now() - t0;
		}
	}
	part_close(p);
	if (close(fd) < 0)
		die_sys("close");
	raw->records = log->records = (uint64_t)i * (uint64_t)nrec;
	raw->bytes = log->bytes = (uint64_t)i * len;
}

/* ---- output ---- */

static const char *human(double v, char *buf, size_t len)
{
	if (v >= 1e6)
		snprintf(buf, len, "%.2fM", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, len, "%.1fk", v / 1e3);
	else
		snprintf(buf, len, "%.0f", v);
	return buf;
}

/*
 * One line: what, batch size, mode, records/s, MB/s, and when base is
 * given, the ratio to it and (if target) PASS/MISS against TARGET.
 */
static void report(const char *what, int batch, const char *mode,
		   struct fig f, const struct fig *base, const char *base_name,
		   bool target)
{
	char rb[32];
	double recs = rate(f.records, f.secs);
	double mbs = rate(f.bytes, f.secs) / 1e6;

	printf("%-7s batch=%-3d  %-8s %8s rec/s %8.1f MB/s", what, batch,
	       mode, human(recs, rb, sizeof rb), mbs);
	if (base) {
		double ratio = rate(f.bytes, f.secs) /
			       rate(base->bytes, base->secs);
		printf("  %5.2fx %s", ratio, base_name);
		if (target)
			printf("  %s (target %.2fx)",
			       ratio >= TARGET ? "PASS" : "MISS", TARGET);
	}
	putchar('\n');
	fflush(stdout);
}

/* Keep the faster of two measurements of the same work. */
static void best(struct fig *keep, struct fig f)
{
	if (keep->secs == 0 || f.secs < keep->secs)
		*keep = f;
}

static void run_plan(const struct plan *pl, double scale, uint8_t **buf,
		     size_t *cap)
{
	mq_batch_builder b;
	struct fig rw = { 0 }, pa = { 0 }, rr = { 0 }, pr = { 0 }, prw = { 0 },
		   prd = { 0 }, rws, pas;
	long count;

	build_batch(&b, pl->batch);
	count = (long)((double)pl->nosync_records * scale) / pl->batch;
	if (count < 1)
		count = 1;

	/* Without fsync. Raw and log alternate so that background
	 * writeback of one run weighs on both alike. */
	for (int i = 0; i < REPEAT; i++) {
		best(&rw, raw_write(b.buf, b.len, pl->batch, count));
		best(&pa, part_append(b.buf, b.len, pl->batch, count));
	}
	report("raw", pl->batch, "write", rw, NULL, NULL, false);
	report("append", pl->batch, "nosync", pa, &rw, "raw write",
	       pl->batch == 256);

	/* Sequential reads of what was just written. */
	for (int i = 0; i < REPEAT; i++) {
		best(&rr, raw_read(*buf, rw.records));
		best(&pr, part_read_ranges(buf, cap, false));
		best(&prw, part_read_ranges(buf, cap, true));
		best(&prd, part_read_reader(pa.bytes));
	}
	report("raw", pl->batch, "pread", rr, NULL, NULL, false);
	report("read", pl->batch, "ranges", pr, &rr, "raw pread",
	       pl->batch == 256);
	report("read", pl->batch, "warm", prw, &rr, "raw pread",
	       pl->batch == 256);
	report("read", pl->batch, "records", prd, &rr, "raw pread", false);
	clean();

	/* fdatasync after every append. */
	count = (long)((double)pl->sync_appends * scale);
	sync_pairs(b.buf, b.len, pl->batch, count < 8 ? 8 : count,
		   SYNC_BUDGET * scale, &rws, &pas);
	report("raw", pl->batch, "wr+sync", rws, NULL, NULL, false);
	report("append", pl->batch, "sync", pas, &rws, "raw write+fdatasync",
	       false);
	clean();
	mq_bb_free(&b);
}

int main(int argc, char **argv)
{
	const char *s = getenv("MQ_BENCH_SCALE");
	double scale = s && *s ? strtod(s, NULL) : 1.0;
	size_t cap = READ_CHUNK;
	uint8_t *buf;
	double t0 = now();

	if (argc != 2) {
		fprintf(stderr, "usage: bench_log DIR\n");
		return 64;
	}
	if (!(scale > 0) || scale > 1000) {
		fprintf(stderr, "bench_log: MQ_BENCH_SCALE %s: not a number "
			"in (0, 1000]\n", s);
		return 64;
	}
	data_dir = argv[1];
	if (mkdir(data_dir, 0755) < 0 && errno != EEXIST)
		die_sys(data_dir);
	snprintf(raw_path, sizeof raw_path, "%s/raw.dat", data_dir);
	snprintf(part_dir, sizeof part_dir, "%s/partition", data_dir);
	clean();
	buf = read_buffer(cap);

	printf("# bench_log: %d-byte records, crc32c %s, data in %s\n",
	       RECORD_BYTES, mq_crc32c_hw_available() ? "sse4.2" : "portable",
	       data_dir);
	printf("# no-fsync and read figures: best of %d; reads from the page "
	       "cache\n", REPEAT);
	for (size_t i = 0; i < sizeof plans / sizeof plans[0]; i++)
		run_plan(&plans[i], scale, &buf, &cap);
	printf("# bench_log: %.1f s\n", now() - t0);
	free(buf);
	return 0;
}
