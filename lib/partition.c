/*
 * partition.c - ordered segments of one partition: open and recovery,
 * append and roll, group-commit flush, fetch ranges, a decoding reader,
 * lookup by time, retention.
 *
 * Recovery rests on one fact, kept in the state file: the recovery point,
 * a (segment, byte position, offset) triple that was fdatasync'ed (and
 * whose segment's directory entry was fsynced) before it was recorded.
 * Everything before it is trusted and never cut; everything after it is
 * verified batch by batch on open and cut at the first torn or corrupt
 * batch. A missing or damaged state file means "trust nothing".
 *
 * state file (text, replaced atomically):
 *
 *   mq-partition-state 1
 *   log-start-offset <offset>
 *   recovery-point <segment base> <byte position> <offset>
 *   crc32c <8 hex digits>       CRC-32C of the lines above
 *
 * If you change this format, bump STATE_VERSION; a state file of another
 * version is treated as damaged (everything gets verified), never misread.
 */
#include "partition.h"
#include "segment.h"
#include "io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_FILE "state"
#define STATE_VERSION 1
#define STATE_MAX 1024
#define DEFAULT_SEGMENT_BYTES (1024ull * 1024 * 1024)
#define DEFAULT_INDEX_INTERVAL 4096
#define MAX_PENDING_FLUSHES 1024

typedef struct rpoint {
	int64_t base;   /* segment */
	uint64_t pos;   /* byte position in its .log */
	int64_t off;    /* offset at that position */
} rpoint;

/* A flush begun and not yet ended: what it covers once it succeeds. */
typedef struct pending_flush {
	int64_t target;
	rpoint rp;
	uint64_t dir_gen;
	int nseg;
	int64_t seg_base[MQ_FLUSH_MAXFD];
	uint64_t seg_size[MQ_FLUSH_MAXFD];
	bool done;
	int status;
} pending_flush;

struct mq_partition {
	char *dir;
	int dirfd;
	bool ro;
	uint64_t segment_bytes;
	uint32_t index_interval;
	uint64_t prealloc;

	mq_segment **segs;       /* ascending base offset; last is active */
	int nsegs, capsegs;

	int64_t start, end, flushed;
	rpoint rp;               /* durable up to here */
	uint64_t dir_gen;        /* bumped on segment create/delete */
	uint64_t dir_synced_gen;

	pending_flush *pend;     /* in begin order */
	int npend, cappend;

	bool failed;
	mq_err fail;

	mq_recovery_info rinfo;
	uint8_t *buf;            /* batch buffer for verification */
	size_t bufcap;
	uint8_t *win;            /* read-ahead window for header walks */
	size_t wincap;
};

#define READ_WINDOW 65536

/* ---- small helpers ---- */

static mq_segment *active(const mq_partition *p)
{
	return p->nsegs ? p->segs[p->nsegs - 1] : NULL;
}

/* Record err as the reason the partition stopped; copy it out. */
static int set_failed(mq_partition *p, const mq_err *e, mq_err *err)
{
	if (!p->failed) {
		p->failed = true;
		p->fail = *e;
	}
	if (err)
		*err = *e;
	return -1;
}

static int failed_err(const mq_partition *p, mq_err *err)
{
	return mq_errf(err, MQ_E_READ_ONLY, "partition %s stopped after an "
		       "error: %s", p->dir, p->fail.msg);
}

static int writable(const mq_partition *p, mq_err *err)
{
	if (p->ro)
		return mq_errf(err, MQ_E_READ_ONLY,
			       "partition %s is open read-only", p->dir);
	if (p->failed)
		return failed_err(p, err);
	return 0;
}

/* Index of the segment holding offset: the last with base <= offset. */
static int find_seg(const mq_partition *p, int64_t offset)
{
	int lo = 0, hi = p->nsegs - 1, ans = -1;

	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		if (p->segs[mid]->base <= offset) {
			ans = mid;
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	return ans;
}

static mq_segment *seg_by_base(const mq_partition *p, int64_t base)
{
	int i = find_seg(p, base);
	return i >= 0 && p->segs[i]->base == base ? p->segs[i] : NULL;
}

static int push_seg(mq_partition *p, mq_segment *s, mq_err *err)
{
	if (p->nsegs == p->capsegs) {
		int cap = p->capsegs ? p->capsegs * 2 : 8;
		mq_segment **n = realloc(p->segs, (size_t)cap * sizeof *n);
		if (!n)
			return mq_errf(err, MQ_E_NOMEM, "out of memory");
		p->segs = n;
		p->capsegs = cap;
	}
	p->segs[p->nsegs++] = s;
	return 0;
}

static void free_seg(mq_segment *s)
{
	if (s) {
		mq_seg_close(s);
		free(s);
	}
}

/* Drop segment i from the list (closing it) without touching files. */
static void drop_seg(mq_partition *p, int i)
{
	free_seg(p->segs[i]);
	memmove(&p->segs[i], &p->segs[i + 1],
		(size_t)(p->nsegs - i - 1) * sizeof *p->segs);
	p->nsegs--;
}

/* Unlink the files of segment i, then drop it. The caller fsyncs the
 * directory afterwards. */
static int delete_seg(mq_partition *p, int i, mq_err *err)
{
	char name[64];
	int64_t base = p->segs[i]->base;

	mq_seg_name(name, sizeof name, base, "log");
	if (unlinkat(p->dirfd, name, 0) < 0 && errno != ENOENT)
		return mq_errsys(err, MQ_E_IO, errno, "unlink %s/%s", p->dir,
				 name);
	p->dir_gen++;
	mq_seg_name(name, sizeof name, base, "index");
	if (unlinkat(p->dirfd, name, 0) < 0 && errno != ENOENT) {
		int e = errno;
		drop_seg(p, i);
		return mq_errsys(err, MQ_E_IO, e, "unlink %s/%s", p->dir, name);
	}
	drop_seg(p, i);
	return 0;
}

static int sync_dir(mq_partition *p, mq_err *err)
{
	uint64_t gen = p->dir_gen;

	if (mq_io.fsync(p->dirfd) < 0)
		return mq_errsys(err, MQ_E_IO, errno, "fsync %s", p->dir);
	p->dir_synced_gen = gen;
	return 0;
}

/* After segments were deleted from the front: the recovery point may not
 * name a segment that no longer exists. The directory was fsynced after
 * the deletion, so the start of the first remaining segment is durable. */
static void fix_rp(mq_partition *p)
{
	if (p->nsegs && p->rp.base < p->segs[0]->base) {
		p->rp.base = p->segs[0]->base;
		p->rp.pos = 0;
		p->rp.off = p->segs[0]->base;
	}
	if (p->nsegs && p->start < p->segs[0]->base)
		p->start = p->segs[0]->base;
}

/* ---- the state file ---- */

static int state_path(const mq_partition *p, char *buf, size_t len,
		      mq_err *err)
{
	if (snprintf(buf, len, "%s/%s", p->dir, STATE_FILE) >= (int)len)
		return mq_errf(err, MQ_E_INVAL, "path too long: %s", p->dir);
	return 0;
}

static int state_write(mq_partition *p, mq_err *err)
{
	char path[PATH_MAX], text[256];
	int n, m;

	if (state_path(p, path, sizeof path, err) < 0)
		return -1;
	n = snprintf(text, sizeof text,
		     "mq-partition-state %d\n"
		     "log-start-offset %lld\n"
		     "recovery-point %lld %llu %lld\n",
		     STATE_VERSION, (long long)p->start, (long long)p->rp.base,
		     (unsigned long long)p->rp.pos, (long long)p->rp.off);
	m = snprintf(text + n, sizeof text - (size_t)n, "crc32c %08x\n",
		     mq_crc32c(0, text, (size_t)n));
	return mq_write_file_atomic(path, text, (size_t)(n + m), err);
}

/* Read the state file: 1 with *start and *rp filled, 0 if missing or
 * damaged (why filled), -1 + err on a read error other than ENOENT. */
static int state_read(const mq_partition *p, int64_t *start, rpoint *rp,
		      char *why, size_t whylen, mq_err *err)
{
	char path[PATH_MAX], *text, *crcline;
	size_t len, body;
	unsigned crc;
	int version, used = -1;
	long long st, base, off;
	unsigned long long pos;
	mq_err rerr;

	if (state_path(p, path, sizeof path, err) < 0)
		return -1;
	if (mq_read_file(path, STATE_MAX, &text, &len, &rerr) < 0) {
		if (rerr.code == MQ_E_IO && rerr.sys_errno == ENOENT) {
			snprintf(why, whylen, "no state file");
			return 0;
		}
		if (rerr.code == MQ_E_IO) {
			if (err)
				*err = rerr;
			return -1;
		}
		snprintf(why, whylen, "state file: %.100s", rerr.msg);
		return 0;
	}
	crcline = strstr(text, "\ncrc32c ");
	if (!crcline || strlen(text) != len) {
		snprintf(why, whylen, "state file has no checksum");
		goto damaged;
	}
	body = (size_t)(crcline - text) + 1;
	if (sscanf(crcline + 1, "crc32c %8x\n%n", &crc, &used) != 1 ||
	    used < 0 || body + (size_t)used != len ||
	    crc != mq_crc32c(0, text, body)) {
		snprintf(why, whylen, "state file checksum mismatch");
		goto damaged;
	}
	used = -1;
	text[body] = '\0';
	if (sscanf(text, "mq-partition-state %d\nlog-start-offset %lld\n"
		   "recovery-point %lld %llu %lld\n%n", &version, &st, &base,
		   &pos, &off, &used) != 5 || used != (int)body) {
		snprintf(why, whylen, "state file unreadable");
		goto damaged;
	}
	if (version != STATE_VERSION) {
		snprintf(why, whylen, "state file version %d", version);
		goto damaged;
	}
	if (st < 0 || base < 0 || off < base || pos > MQ_SEGMENT_MAX_BYTES) {
		snprintf(why, whylen, "state file values out of range");
		goto damaged;
	}
	free(text);
	*start = st;
	rp->base = base;
	rp->pos = pos;
	rp->off = off;
	return 1;
damaged:
	free(text);
	return 0;
}

/* ---- listing segments ---- */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* A segment .log name: exactly 20 digits and ".log". */
static bool parse_seg_name(const char *name, int64_t *base)
{
	uint64_t v = 0;
	int i;

	if (strlen(name) != 24 || strcmp(name + 20, ".log") != 0)
		return false;
	for (i = 0; i < 20; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
		if (v > ((uint64_t)INT64_MAX - (uint64_t)(name[i] - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(name[i] - '0');
	}
	*base = (int64_t)v;
	return true;
}

/* Sorted base offsets of the segments in the directory, all above min. */
static int list_bases(const mq_partition *p, int64_t min, int64_t **out,
		      int *nout, mq_err *err)
{
	DIR *d;
	struct dirent *de;
	int64_t *v = NULL, base;
	int n = 0, cap = 0;

	d = opendir(p->dir);
	if (!d)
		return mq_errsys(err, MQ_E_IO, errno, "opendir %s", p->dir);
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		if (!parse_seg_name(de->d_name, &base) || base <= min)
			continue;
		if (n == cap) {
			int64_t *nv;
			cap = cap ? cap * 2 : 16;
			nv = realloc(v, (size_t)cap * sizeof *v);
			if (!nv) {
				free(v);
				closedir(d);
				return mq_errf(err, MQ_E_NOMEM, "out of memory");
			}
			v = nv;
		}
		v[n++] = base;
		errno = 0;
	}
	if (errno) {
		int e = errno;
		free(v);
		closedir(d);
		return mq_errsys(err, MQ_E_IO, e, "readdir %s", p->dir);
	}
	closedir(d);
	if (n)
		qsort(v, (size_t)n, sizeof *v, cmp_i64);
	*out = v;
	*nout = n;
	return 0;
}

/* Open the segment at base and add it to the list (read-only: a segment
 * deleted meanwhile by a writer is skipped, *added = false). */
static int add_seg(mq_partition *p, int64_t base, bool create, bool *added,
		   mq_err *err)
{
	mq_segment *s = calloc(1, sizeof *s);
	mq_err oerr;

	*added = false;
	if (!s)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	if (mq_seg_open(s, p->dirfd, base, !p->ro, create, &oerr) < 0) {
		free(s);
		if (p->ro && oerr.sys_errno == ENOENT)
			return 0;
		if (err)
			*err = oerr;
		return -1;
	}
	if (push_seg(p, s, err) < 0) {
		free_seg(s);
		return -1;
	}
	*added = true;
	return 0;
}

/* ---- recovery ---- */

/*
 * Load and check the index of s against a log of log_size bytes, keeping
 * only entries before keep_below; the last kept entry must point at a
 * batch header with the right base offset. 1 = usable, 0 = not (emptied),
 * -1 = error.
 */
static int check_index(mq_segment *s, uint64_t log_size, uint64_t keep_below,
		       mq_err *err)
{
	mq_index_entry e;
	mq_batch_hdr h;
	char why[128];
	uint32_t n;
	int r;

	r = mq_index_load(&s->ix, log_size, why, sizeof why, err);
	if (r <= 0)
		return r;
	for (n = s->ix.n; n > 0 && s->ix.mem[n - 1].pos >= keep_below; n--)
		;
	if (mq_index_truncate(&s->ix, n, err) < 0)
		return -1;
	if (n == 0)
		return keep_below == 0 ? 1 : 0;
	e = s->ix.mem[n - 1];
	r = mq_seg_read_header(s, e.pos, keep_below, &h, why, sizeof why, err);
	if (r == -1)
		return -1;
	if (r != 1 || h.base_offset != s->base + (int64_t)e.rel) {
		s->ix.n = s->ix.file_n = 0;
		return 0;
	}
	return 1;
}

/* Rebuild the index of s from its batches in [0, limit), headers only. */
static int rebuild_index(mq_partition *p, mq_segment *s, uint64_t limit,
			 mq_scan *sc, mq_err *err)
{
	if (mq_index_reset(&s->ix, err) < 0)
		return -1;
	s->size = 0;
	s->end = s->base;
	s->max_ts = -1;
	s->max_ts_known = true;
	memset(sc, 0, sizeof *sc);
	sc->verify = false;
	sc->index_interval = p->index_interval;
	sc->limit = limit;
	if (mq_seg_scan(s, sc, &p->buf, &p->bufcap, err) < 0)
		return -1;
	p->rinfo.indexes_rebuilt++;
	return 0;
}

/* Set up a segment that lies wholly before the recovery point. */
static int load_trusted(mq_partition *p, int i, uint64_t fsz, mq_err *err)
{
	mq_segment *s = p->segs[i];
	int64_t next = p->segs[i + 1]->base;
	mq_scan sc;
	int r;

	r = check_index(s, fsz, fsz, err);
	if (r < 0)
		return -1;
	if (r == 1) {
		s->size = fsz;
		s->end = next;
		s->max_ts_known = false;
	} else {
		if (rebuild_index(p, s, fsz, &sc, err) < 0)
			return -1;
		if (sc.stop != MQ_SCAN_END || s->end != next)
			return mq_errf(err, MQ_E_CORRUPT,
				       "%s: segment %lld, before the recovery "
				       "point, is damaged: %s", p->dir,
				       (long long)s->base,
				       sc.why[0] ? sc.why : "offsets do not "
				       "reach the next segment");
		if (mq_index_write_tail(&s->ix, err) < 0)
			return -1;
	}
	s->synced = fsz;
	return 0;
}

/*
 * Set up the trusted prefix [0, rp->pos) of the recovery point's segment.
 * Returns 0, 1 if the recovery point does not match the log (the caller
 * then verifies everything), -1 on error.
 */
static int load_rp_prefix(mq_partition *p, mq_segment *s, uint64_t fsz,
			  const rpoint *rp, mq_err *err)
{
	int64_t max_ts, next_off;
	mq_err terr;
	mq_scan sc;
	int r;

	r = check_index(s, fsz, rp->pos, err);
	if (r < 0)
		return -1;
	if (r == 0) {
		if (rebuild_index(p, s, rp->pos, &sc, err) < 0)
			return -1;
		if (sc.stop != MQ_SCAN_END || s->end != rp->off)
			return 1;
		return 0;
	}
	if (mq_seg_max_ts_upto(s, rp->pos, &max_ts, &next_off, &terr) < 0) {
		if (terr.code != MQ_E_CORRUPT) {
			if (err)
				*err = terr;
			return -1;
		}
		return 1;
	}
	if (next_off != rp->off)
		return 1;
	s->size = rp->pos;
	s->end = rp->off;
	s->max_ts = max_ts;
	s->max_ts_known = true;
	return 0;
}

static void note_cut(mq_partition *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void note_cut(mq_partition *p, const char *fmt, ...)
{
	va_list ap;

	if (p->rinfo.reason[0])
		return;
	va_start(ap, fmt);
	vsnprintf(p->rinfo.reason, sizeof p->rinfo.reason, fmt, ap);
	va_end(ap);
}

/*
 * Cut the zero-filled tail [s->size, fsz) of a segment (read-write only),
 * durably: a sealed segment must end where its batches end, because
 * recovery trusts the size of the files before the recovery point.
 */
static int trim_tail(mq_partition *p, mq_segment *s, uint64_t fsz,
		     mq_err *err)
{
	mq_err e;

	if (p->ro || fsz <= s->size)
		return 0;
	if (ftruncate(s->fd, (off_t)s->size) < 0 || mq_io.fsync(s->fd) < 0) {
		mq_errsys(&e, MQ_E_IO, errno, "cut the preallocated end of %s "
			  "segment %lld", p->dir, (long long)s->base);
		return set_failed(p, &e, err);
	}
	s->alloc = s->synced = s->size;
	return 0;
}

/*
 * Walk every segment: trust what lies before rp, verify what follows and
 * stop at the first torn or corrupt batch (*cut_seg = index of the segment
 * cut, or -1). Returns 0, 1 if rp turned out not to match the log, -1.
 */
static int load_segments(mq_partition *p, const rpoint *rp, int *cut_seg,
			 mq_err *err)
{
	int i, k = 0;
	int r;

	*cut_seg = -1;
	while (p->segs[k]->base != rp->base)
		k++;
	for (i = 0; i < p->nsegs; i++) {
		mq_segment *s = p->segs[i];
		uint64_t fsz;
		mq_scan sc;

		if (mq_seg_file_size(s, &fsz, err) < 0)
			return -1;
		if (i < k) {
			if (load_trusted(p, i, fsz, err) < 0)
				return -1;
			mq_index_unload(&s->ix);
			continue;
		}
		if (i == k) {
			if (fsz < rp->pos)
				return 1;
			r = load_rp_prefix(p, s, fsz, rp, err);
			if (r != 0)
				return r;
			s->synced = rp->pos;
		} else {
			int64_t prev_end = p->segs[i - 1]->end;

			if (s->base != prev_end) {
				note_cut(p, "segment %lld does not follow "
					 "offset %lld", (long long)s->base,
					 (long long)prev_end);
				*cut_seg = i - 1;
				return 0;
			}
			if (mq_index_reset(&s->ix, err) < 0)
				return -1;
			s->size = 0;
			s->end = s->base;
			s->max_ts = -1;
			s->max_ts_known = true;
			s->synced = 0;
		}
		memset(&sc, 0, sizeof sc);
		sc.verify = true;
		sc.index_interval = p->index_interval;
		sc.limit = fsz;
		if (mq_seg_scan(s, &sc, &p->buf, &p->bufcap, err) < 0)
			return -1;
		p->rinfo.batches_checked += sc.batches;
		if (mq_index_write_tail(&s->ix, err) < 0)
			return -1;
		if (sc.stop == MQ_SCAN_ZEROS) {
			/* The preallocated rest of the file: cut, but it
			 * held no data. */
			p->rinfo.bytes_zeros += fsz - s->size;
			if (trim_tail(p, s, fsz, err) < 0)
				return -1;
			sc.stop = MQ_SCAN_END;
		}
		if (sc.stop != MQ_SCAN_END) {
			note_cut(p, "segment %lld: %s", (long long)s->base,
				 sc.why);
			p->rinfo.bytes_truncated += fsz - s->size;
			*cut_seg = i;
			return 0;
		}
		if (i + 1 < p->nsegs)
			mq_index_unload(&s->ix);
	}
	return 0;
}

/* Remove (read-write) or hide (read-only) every segment after index i. */
static int remove_after(mq_partition *p, int i, mq_err *err)
{
	while (p->nsegs > i + 1) {
		int last = p->nsegs - 1;
		uint64_t fsz;

		/* Segments after a cut were never loaded: all of each goes. */
		if (mq_seg_file_size(p->segs[last], &fsz, err) < 0)
			return -1;
		p->rinfo.bytes_truncated += fsz;
		if (p->ro)
			drop_seg(p, last);
		else if (delete_seg(p, last, err) < 0)
			return -1;
		p->rinfo.segments_removed++;
	}
	return 0;
}

static int recover(mq_partition *p, mq_err *err)
{
	int64_t *bases = NULL, st_start = 0;
	int nbases = 0, i, cut, r;
	char why[128];
	bool added, have_state;
	rpoint rp;

	r = state_read(p, &st_start, &rp, why, sizeof why, err);
	if (r < 0)
		return -1;
	have_state = r == 1;
	if (list_bases(p, -1, &bases, &nbases, err) < 0)
		return -1;
	for (i = 0; i < nbases; i++) {
		if (add_seg(p, bases[i], false, &added, err) < 0) {
			free(bases);
			return -1;
		}
	}
	free(bases);

	if (p->nsegs == 0) {
		int64_t base = have_state ? st_start : 0;

		p->start = p->end = p->flushed = base;
		if (p->ro)
			return 0;
		if (add_seg(p, base, true, &added, err) < 0)
			return -1;
		p->dir_gen++;
		if (sync_dir(p, err) < 0)
			return -1;
		p->rp = (rpoint){ base, 0, base };
		return state_write(p, err);
	}

	/* Which recovery point to trust. */
	if (have_state && rp.base < p->segs[0]->base)
		rp = (rpoint){ p->segs[0]->base, 0, p->segs[0]->base };
	if (!have_state || !seg_by_base(p, rp.base))
		rp = (rpoint){ p->segs[0]->base, 0, p->segs[0]->base };
	r = load_segments(p, &rp, &cut, err);
	if (r == 1) {
		/* The state does not describe this log: verify it all. */
		memset(&p->rinfo, 0, sizeof p->rinfo);
		rp = (rpoint){ p->segs[0]->base, 0, p->segs[0]->base };
		r = load_segments(p, &rp, &cut, err);
	}
	if (r < 0)
		return -1;
	if (cut >= 0) {
		mq_segment *s = p->segs[cut];
		if (!p->ro && ftruncate(s->fd, (off_t)s->size) < 0)
			return mq_errsys(err, MQ_E_IO, errno, "truncate "
					 "segment %lld", (long long)s->base);
		if (remove_after(p, cut, err) < 0)
			return -1;
	}

	p->end = active(p)->end;
	p->start = p->segs[0]->base;
	if (have_state && st_start > p->start)
		p->start = st_start < p->end ? st_start : p->end;
	p->flushed = p->end;
	if (p->ro)
		return 0;

	/* What was verified may be only in the page cache: make it durable
	 * before the recovery point moves past it. */
	for (i = 0; i < p->nsegs; i++) {
		mq_segment *s = p->segs[i];
		if (s->synced < s->size || s->base >= rp.base) {
			if (mq_io.fdatasync(s->fd) < 0)
				return mq_errsys(err, MQ_E_IO, errno,
						 "fdatasync segment %lld",
						 (long long)s->base);
			s->synced = s->size;
		}
	}
	if (p->dir_gen != p->dir_synced_gen || cut >= 0) {
		if (sync_dir(p, err) < 0)
			return -1;
	}
	p->rp = (rpoint){ active(p)->base, active(p)->size, p->end };
	active(p)->alloc = active(p)->size;
	return state_write(p, err);
}

static int open_dir(mq_partition *p, bool create, mq_err *err)
{
	char parent[PATH_MAX], *slash;

	p->dirfd = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p->dirfd >= 0)
		return 0;
	if (errno != ENOENT)
		return mq_errsys(err, MQ_E_IO, errno, "open %s", p->dir);
	if (!create || p->ro)
		return mq_errsys(err, MQ_E_NO_PARTITION, ENOENT, "%s", p->dir);
	if (mkdir(p->dir, 0755) < 0 && errno != EEXIST)
		return mq_errsys(err, MQ_E_IO, errno, "mkdir %s", p->dir);
	snprintf(parent, sizeof parent, "%s", p->dir);
	slash = strrchr(parent, '/');
	while (slash && slash > parent && slash[1] == '\0') {
		*slash = '\0';
		slash = strrchr(parent, '/');
	}
	if (!slash)
		strcpy(parent, ".");
	else if (slash == parent)
		parent[1] = '\0';
	else
		*slash = '\0';
	if (mq_fsync_dir(parent, err) < 0)
		return -1;
	p->dirfd = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p->dirfd < 0)
		return mq_errsys(err, MQ_E_IO, errno, "open %s", p->dir);
	return 0;
}

static void part_free(mq_partition *p)
{
	int i;

	for (i = 0; i < p->nsegs; i++)
		free_seg(p->segs[i]);
	free(p->segs);
	if (p->dirfd >= 0)
		close(p->dirfd);
	free(p->pend);
	free(p->buf);
	free(p->win);
	free(p->dir);
	free(p);
}

int mq_part_open(const char *dir, const mq_part_opts *opts,
		 mq_partition **out, mq_err *err)
{
	static const mq_part_opts defaults;
	mq_partition *p;

	if (!opts)
		opts = &defaults;
	p = calloc(1, sizeof *p);
	if (!p)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	p->dirfd = -1;
	p->dir = strdup(dir);
	if (!p->dir) {
		free(p);
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	}
	p->ro = opts->read_only;
	p->segment_bytes = opts->segment_bytes ? opts->segment_bytes
					       : DEFAULT_SEGMENT_BYTES;
	if (p->segment_bytes > MQ_SEGMENT_MAX_BYTES)
		p->segment_bytes = MQ_SEGMENT_MAX_BYTES;
	p->index_interval = opts->index_interval ? opts->index_interval
						 : DEFAULT_INDEX_INTERVAL;
	p->prealloc = p->ro ? 0 : opts->prealloc_bytes;
	if (open_dir(p, opts->create, err) < 0 || recover(p, err) < 0) {
		part_free(p);
		return -1;
	}
	*out = p;
	return 0;
}

int mq_part_close(mq_partition *p, mq_err *err)
{
	int rc = 0;

	if (!p)
		return 0;
	if (!p->ro) {
		if (p->failed) {
			if (err)
				*err = p->fail;
			rc = -1;
		} else if (trim_tail(p, active(p), active(p)->alloc, err) < 0 ||
			   mq_part_flush(p, err) < 0 ||
			   state_write(p, err) < 0) {
			rc = -1;
		}
	}
	part_free(p);
	return rc;
}

/* ---- accessors ---- */

const mq_recovery_info *mq_part_recovery(const mq_partition *p)
{
	return &p->rinfo;
}

int64_t mq_part_start(const mq_partition *p) { return p->start; }
int64_t mq_part_end(const mq_partition *p) { return p->end; }
int64_t mq_part_flushed(const mq_partition *p) { return p->flushed; }
int mq_part_segment_count(const mq_partition *p) { return p->nsegs; }

uint64_t mq_part_bytes(const mq_partition *p)
{
	uint64_t n = 0;
	int i;

	for (i = 0; i < p->nsegs; i++)
		n += p->segs[i]->size;
	return n;
}

const mq_err *mq_part_failed(const mq_partition *p)
{
	return p->failed ? &p->fail : NULL;
}

/* ---- append and roll ---- */

/*
 * Before a new segment is created, make sure at most two sealed segments
 * still wait for a flush, so that one flush request (MQ_FLUSH_MAXFD
 * descriptors: those two, the active segment and the directory) covers
 * everything. Two rolls between flushes are rare (huge batches, tiny
 * segments); the oldest waiting segment is then synced here.
 */
static int limit_dirty_sealed(mq_partition *p, mq_err *err)
{
	int i, dirty = 0;

	for (i = 0; i < p->nsegs; i++)
		if (p->segs[i]->synced < p->segs[i]->size)
			dirty++;
	for (i = 0; i < p->nsegs && dirty > MQ_FLUSH_MAXFD - 2; i++) {
		mq_segment *s = p->segs[i];
		if (s->synced >= s->size)
			continue;
		if (mq_io.fdatasync(s->fd) < 0) {
			mq_err e;
			mq_errsys(&e, MQ_E_IO, errno, "fdatasync %s segment "
				  "%lld", p->dir, (long long)s->base);
			return set_failed(p, &e, err);
		}
		s->synced = s->size;
		dirty--;
	}
	return 0;
}

static int roll(mq_partition *p, mq_err *err)
{
	mq_segment *old = active(p);
	bool added;
	char name[64];
	mq_err serr;

	if (old->size == 0)
		return 0;
	if (trim_tail(p, old, old->alloc, err) < 0 ||
	    limit_dirty_sealed(p, err) < 0)
		return -1;
	if (add_seg(p, p->end, true, &added, err) < 0) {
		/* Nothing was appended: leave the partition writable, and
		 * leave no half-made segment behind. */
		mq_seg_name(name, sizeof name, p->end, "log");
		unlinkat(p->dirfd, name, 0);
		mq_seg_name(name, sizeof name, p->end, "index");
		unlinkat(p->dirfd, name, 0);
		return -1;
	}
	p->dir_gen++;
	mq_index_unload(&old->ix);
	/*
	 * Record the recovery point and log start. A failure here loses
	 * nothing: the state file on disk still holds an older recovery
	 * point (which is only more conservative) and the current log start
	 * (set_start and retention write it synchronously and report their
	 * errors). So it does not fail the roll.
	 */
	state_write(p, &serr);
	return 0;
}

int mq_part_roll(mq_partition *p, mq_err *err)
{
	if (writable(p, err) < 0)
		return -1;
	return roll(p, err);
}

/*
 * Grow the active segment's file with zeros, to at least need bytes and
 * by up to p->prealloc at a time (never past the segment size). Appends
 * then overwrite zeros instead of extending the file, so the fdatasync
 * that follows them has only the data to write, not the file size too:
 * on ext4 that is one device write instead of two. Recovery and readers
 * take zeros where a batch header should be for the end of the log
 * (MQ_SCAN_ZEROS), and the tail is cut when the segment is sealed or
 * the partition closed. If writing the zeros fails (a full disk), the
 * file is put back and the append goes ahead on its own, failing or not
 * as it would have without this.
 */
static void preallocate(mq_partition *p, mq_segment *s, uint64_t need)
{
	static const uint8_t zeros[65536];
	uint64_t at = s->alloc > s->size ? s->alloc : s->size;
	uint64_t to = at + p->prealloc;

	if (to > p->segment_bytes)
		to = p->segment_bytes;
	if (to <= need)
		return;
	while (at < to) {
		size_t n = to - at < sizeof zeros ? (size_t)(to - at)
						  : sizeof zeros;
		if (mq_pwrite_full(s->fd, zeros, n, (off_t)at) < 0) {
			if (ftruncate(s->fd, (off_t)(s->alloc > s->size ?
						     s->alloc : s->size)) < 0) {
				/* Zeros past the end of the log are harmless. */
			}
			return;
		}
		at += n;
	}
	s->alloc = to;
}

int mq_part_append(mq_partition *p, uint8_t *batch, size_t len,
		   int64_t *base_offset, mq_err *err)
{
	mq_batch_hdr h;

	if (mq_batch_validate(batch, len, &h, err) < 0)
		return -1;
	return mq_part_append_checked(p, batch, len, &h, base_offset, err);
}

int mq_part_append_checked(mq_partition *p, uint8_t *batch, size_t len,
			   const mq_batch_hdr *hp, int64_t *base_offset,
			   mq_err *err)
{
	mq_batch_hdr h = *hp;
	mq_segment *s;
	uint64_t pos;
	uint32_t nidx;
	int64_t base, last;
	bool due = false;
	mq_err e;

	if (writable(p, err) < 0)
		return -1;
	base = p->end;
	if (base > INT64_MAX - 1 - h.last_offset_delta)
		return mq_errf(err, MQ_E_INVAL, "offsets exhausted");
	last = base + h.last_offset_delta;
	s = active(p);
	if (s->size > 0 && (s->size + len > p->segment_bytes ||
			    last - s->base > (int64_t)UINT32_MAX)) {
		if (roll(p, err) < 0)
			return -1;
		s = active(p);
	}
	pos = s->size;
	nidx = s->ix.n;
	mq_batch_set_base_offset(batch, base);
	if (p->prealloc && pos + len > s->alloc)
		preallocate(p, s, pos + len);
	if (mq_pwrite_full(s->fd, batch, len, (off_t)pos) < 0) {
		mq_errsys(&e, MQ_E_IO, errno, "append to %s segment %lld",
			  p->dir, (long long)s->base);
		goto undo;
	}
	if (s->ix.n == 0) {
		due = true;
	} else {
		mq_index_entry le;
		if (mq_index_get(&s->ix, s->ix.n - 1, &le, &e) < 0)
			goto undo;
		due = pos - le.pos >= p->index_interval;
	}
	if (due) {
		mq_index_entry ne = {
			.rel = (uint32_t)(base - s->base),
			.pos = (uint32_t)pos,
			.max_ts = h.max_timestamp > s->max_ts ? h.max_timestamp
							      : s->max_ts,
		};
		if (mq_index_add(&s->ix, &ne, &e) < 0 ||
		    mq_index_write_tail(&s->ix, &e) < 0)
			goto undo;
	}
	s->size = pos + len;
	if (s->alloc < s->size)
		s->alloc = s->size;
	s->end = last + 1;
	mq_seg_note_valid(s, pos, pos + len);	/* validated above */
	if (h.max_timestamp > s->max_ts)
		s->max_ts = h.max_timestamp;
	p->end = last + 1;
	if (base_offset)
		*base_offset = base;
	return 0;
undo:
	/*
	 * Put the files back as they were so that what follows on disk is
	 * exactly the batches acknowledged so far, then stop accepting
	 * writes: after an I/O error nothing more can be promised.
	 */
	if (ftruncate(s->fd, (off_t)pos) < 0) {
		/* Recovery at the next open cuts the partial batch. */
	}
	s->alloc = pos;
	if (s->vhi > pos)
		s->vhi = s->vlo < pos ? pos : s->vlo;
	mq_index_truncate(&s->ix, nidx, NULL);
	return set_failed(p, &e, err);
}

/* ---- flush ---- */

int mq_part_flush_begin(mq_partition *p, mq_flush_req *req, mq_err *err)
{
	pending_flush pf;
	int i, fd;

	memset(req, 0, sizeof *req);
	req->target = p->end;
	if (p->ro)
		return 0;
	if (p->failed) {
		if (err)
			*err = p->fail;
		return -1;
	}
	memset(&pf, 0, sizeof pf);
	pf.target = p->end;
	pf.rp = (rpoint){ active(p)->base, active(p)->size, p->end };
	pf.dir_gen = p->dir_gen;
	for (i = 0; i < p->nsegs; i++) {
		mq_segment *s = p->segs[i];
		if (s->synced >= s->size)
			continue;
		if (req->nfds == MQ_FLUSH_MAXFD - 1) {
			/* Not reachable while limit_dirty_sealed holds. */
			mq_errf(err, MQ_E_IO, "too many segments to flush");
			goto fail;
		}
		fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0) {
			mq_errsys(err, MQ_E_IO, errno, "dup");
			goto fail;
		}
		req->fds[req->nfds] = fd;
		req->is_dir[req->nfds++] = false;
		pf.seg_base[pf.nseg] = s->base;
		pf.seg_size[pf.nseg++] = s->size;
	}
	if (p->dir_gen != p->dir_synced_gen) {
		fd = fcntl(p->dirfd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0) {
			mq_errsys(err, MQ_E_IO, errno, "dup");
			goto fail;
		}
		req->fds[req->nfds] = fd;
		req->is_dir[req->nfds++] = true;
	}
	if (req->nfds == 0) {
		/* Everything is on disk already (e.g. synced on roll) — but
		 * only if no earlier flush is still out: it may yet fail. */
		if (p->npend == 0) {
			p->flushed = p->end;
			p->rp = pf.rp;
		}
		return 0;
	}
	if (p->npend == p->cappend) {
		int cap = p->cappend ? p->cappend * 2 : 4;
		pending_flush *n;
		if (cap > MAX_PENDING_FLUSHES) {
			mq_errf(err, MQ_E_BUSY, "too many flushes in flight");
			goto fail;
		}
		n = realloc(p->pend, (size_t)cap * sizeof *n);
		if (!n) {
			mq_errf(err, MQ_E_NOMEM, "out of memory");
			goto fail;
		}
		p->pend = n;
		p->cappend = cap;
	}
	p->pend[p->npend++] = pf;
	return 0;
fail:
	for (i = 0; i < req->nfds; i++)
		close(req->fds[i]);
	req->nfds = 0;
	return -1;
}

void mq_flush_run(mq_flush_req *req)
{
	int i;

	req->status = 0;
	for (i = 0; i < req->nfds; i++) {
		int r = req->is_dir[i] ? mq_io.fsync(req->fds[i])
				       : mq_io.fdatasync(req->fds[i]);
		if (r < 0 && req->status == 0)
			req->status = errno ? errno : EIO;
		close(req->fds[i]);
		req->fds[i] = -1;
	}
}

/* Apply a successful flush: what it covered is on disk. */
static void apply_flush(mq_partition *p, const pending_flush *pf)
{
	int i;

	for (i = 0; i < pf->nseg; i++) {
		mq_segment *s = seg_by_base(p, pf->seg_base[i]);
		uint64_t sz;
		if (!s)
			continue;
		sz = pf->seg_size[i] < s->size ? pf->seg_size[i] : s->size;
		if (sz > s->synced)
			s->synced = sz;
	}
	if (pf->dir_gen > p->dir_synced_gen)
		p->dir_synced_gen = pf->dir_gen;
	if (pf->target > p->flushed) {
		p->flushed = pf->target;
		if (pf->rp.off > p->rp.off)
			p->rp = pf->rp;
		fix_rp(p);
	}
}

/*
 * Flushes complete in the order they were begun. A later flush that
 * succeeded proves nothing while an earlier one is still out: after a
 * write-back error, Linux reports it to one fsync caller only, so the
 * earlier one may be the one that hears of it.
 */
int mq_part_flush_end(mq_partition *p, mq_flush_req *req, mq_err *err)
{
	int i;

	if (p->ro)
		return 0;
	if (req->nfds > 0) {
		for (i = 0; i < p->npend; i++)
			if (!p->pend[i].done && p->pend[i].target == req->target)
				break;
		if (i == p->npend)
			return mq_errf(err, MQ_E_INVAL,
				       "flush request not begun on %s", p->dir);
		p->pend[i].done = true;
		p->pend[i].status = req->status;
		while (p->npend > 0 && p->pend[0].done) {
			pending_flush pf = p->pend[0];
			memmove(&p->pend[0], &p->pend[1],
				(size_t)(p->npend - 1) * sizeof *p->pend);
			p->npend--;
			if (pf.status != 0) {
				mq_err e;
				mq_errsys(&e, MQ_E_IO, pf.status,
					  "fdatasync %s", p->dir);
				set_failed(p, &e, NULL);
			} else if (!p->failed) {
				apply_flush(p, &pf);
			}
		}
	}
	if (p->failed) {
		if (err)
			*err = p->fail;
		return -1;
	}
	return 0;
}

int mq_part_flush(mq_partition *p, mq_err *err)
{
	mq_flush_req req;

	if (mq_part_flush_begin(p, &req, err) < 0)
		return -1;
	mq_flush_run(&req);
	return mq_part_flush_end(p, &req, err);
}

/* ---- reading ---- */

/*
 * Serve a range from bytes this process has not checked yet (data that lay
 * before the recovery point when the partition was opened: trusted
 * because it was flushed, so never cut, but never read either). The
 * candidate bytes are read once; their batch headers are walked and each
 * batch's CRC checked in memory, so a batch damaged on disk is never
 * handed to a reader: the range stops before it, and MQ_E_CORRUPT is
 * returned if it comes first. The CRC covers every byte after it, and the
 * writer checked the record structure before appending, so a matching CRC
 * means the bytes are those it checked.
 */
static int read_unchecked(mq_partition *p, mq_segment *s, uint64_t pos,
			  size_t max_bytes, int64_t limit_offset,
			  mq_read_range *r, mq_err *err)
{
	uint64_t left = s->size - pos;
	size_t want = max_bytes, at = 0, len;
	mq_batch_hdr h;
	ssize_t got;

	if (want < MQ_BATCH_HEADER_SIZE)
		want = MQ_BATCH_HEADER_SIZE;
	if (want > left)
		want = (size_t)left;
	for (;;) {
		if (mq_buf_reserve(&p->buf, &p->bufcap, want, err) < 0)
			return -1;
		got = mq_pread_full(s->fd, p->buf, want, (off_t)pos);
		if (got < 0)
			return mq_errsys(err, MQ_E_IO, errno, "read %s segment "
					 "%lld", p->dir, (long long)s->base);
		len = (size_t)got;
		/* A first batch larger than max_bytes is served whole. */
		if (len >= MQ_BATCH_HEADER_SIZE &&
		    mq_batch_parse_header(p->buf, len, &h, NULL) == 0 &&
		    mq_batch_size(&h) > len && mq_batch_size(&h) <= left &&
		    want < mq_batch_size(&h)) {
			want = mq_batch_size(&h);
			continue;
		}
		break;
	}
	while (at < len) {
		mq_err verr = { 0 };
		const uint8_t *b = p->buf + at;
		int64_t expect = at ? r->next_offset : r->first_offset;

		if (len - at < MQ_BATCH_HEADER_SIZE) {
			if (at > 0)
				break;	/* the next header did not fit */
			mq_errf(&verr, MQ_E_CORRUPT, "truncated batch header");
		} else if (mq_batch_parse_header(b, len - at, &h, &verr) < 0) {
			/* verr says why */
		} else if (mq_batch_size(&h) > len - at) {
			if (at > 0)
				break;	/* the next batch did not fit */
			mq_errf(&verr, MQ_E_CORRUPT,
				"batch runs past the end of the segment");
		} else if (h.base_offset != expect) {
			mq_errf(&verr, MQ_E_CORRUPT, "batch has base offset "
				"%lld, expected %lld", (long long)h.base_offset,
				(long long)expect);
		} else if (mq_batch_last_offset(&h) >= limit_offset) {
			break;
		} else if (mq_batch_crc(b, mq_batch_size(&h)) != h.crc) {
			mq_errf(&verr, MQ_E_CORRUPT, "CRC mismatch");
		}
		if (verr.code) {
			if (at > 0)
				break;	/* serve what comes before it */
			return mq_errf(err, MQ_E_CORRUPT,
				       "%s segment %lld: the batch at byte %llu "
				       "(offset %lld) is damaged: %.80s", p->dir,
				       (long long)s->base,
				       (unsigned long long)(pos + at),
				       (long long)r->first_offset, verr.msg);
		}
		if (at > 0 && at + mq_batch_size(&h) > max_bytes)
			break;
		at += mq_batch_size(&h);
		r->next_offset = mq_batch_last_offset(&h) + 1;
	}
	r->len = at;
	r->data = at ? p->buf : NULL;
	mq_seg_note_valid(s, pos, pos + at);
	return 0;
}

int mq_part_read(mq_partition *p, int64_t offset, size_t max_bytes,
		 int64_t limit_offset, mq_read_range *r, mq_err *err)
{
	mq_segment *s;
	mq_batch_hdr h;
	uint64_t pos;
	int64_t next = offset;
	size_t total = 0;
	mq_err perr = { 0 };
	int i, rc;

	memset(r, 0, sizeof *r);
	r->fd = p->nsegs ? active(p)->fd : -1;
	r->pos = p->nsegs ? (off_t)active(p)->size : 0;
	r->first_offset = r->next_offset = offset;
	if (offset < p->start || offset > p->end)
		return mq_errf(err, MQ_E_OFFSET_RANGE, "offset %lld outside "
			       "[%lld, %lld] in %s", (long long)offset,
			       (long long)p->start, (long long)p->end, p->dir);
	if (limit_offset > p->end)
		limit_offset = p->end;
	if (offset >= limit_offset)
		return 0;
	i = find_seg(p, offset);
	if (i < 0)
		return mq_errf(err, MQ_E_OFFSET_RANGE, "offset %lld below the "
			       "first segment of %s", (long long)offset, p->dir);
	s = p->segs[i];
	if (mq_seg_locate(s, offset, &pos, &h, err) < 0)
		return -1;
	r->fd = s->fd;
	r->pos = (off_t)pos;
	r->first_offset = h.base_offset;
	if (pos < s->vlo || pos >= s->vhi) {
		r->next_offset = h.base_offset;
		if (mq_batch_last_offset(&h) >= limit_offset)
			return 0;
		return read_unchecked(p, s, pos, max_bytes, limit_offset, r,
				      err);
	}
	/* Checked bytes: walk the batch headers through a window of the
	 * file, so that a range of many small batches costs a few reads, not
	 * one each, and leave the data to sendfile(2). After a large batch,
	 * read just the next header: a window would copy the data only to
	 * skip it. Stop where the checked interval ends. */
	uint64_t wpos = pos;
	size_t wlen = 0;
	for (;;) {
		size_t size = mq_batch_size(&h);

		if (mq_batch_last_offset(&h) >= limit_offset)
			break;
		if (total > 0 && total + size > max_bytes)
			break;
		total += size;
		next = mq_batch_last_offset(&h) + 1;
		if (pos + size >= s->size || pos + size >= s->vhi)
			break;
		pos += size;
		if (pos + MQ_BATCH_HEADER_SIZE > wpos + wlen) {
			ssize_t got;
			size_t want = size >= READ_WINDOW / 16 ?
				      MQ_BATCH_HEADER_SIZE : READ_WINDOW;
			if (want > s->size - pos)
				want = (size_t)(s->size - pos);
			if (mq_buf_reserve(&p->win, &p->wincap, READ_WINDOW,
					   err) < 0)
				return -1;
			got = mq_pread_full(s->fd, p->win, want, (off_t)pos);
			if (got < 0)
				return mq_errsys(err, MQ_E_IO, errno,
						 "read %s segment %lld", p->dir,
						 (long long)s->base);
			wpos = pos;
			wlen = (size_t)got;
		}
		rc = mq_batch_parse_header(p->win + (pos - wpos),
					   wlen - (size_t)(pos - wpos), &h, &perr);
		if (rc < 0 || h.base_offset != next ||
		    mq_batch_size(&h) > s->size - pos)
			return mq_errf(err, MQ_E_CORRUPT, "%s segment %lld at "
				       "%llu: %s", p->dir, (long long)s->base,
				       (unsigned long long)pos,
				       rc < 0 ? perr.msg : "batches out of order");
	}
	r->len = total;
	r->next_offset = total ? next : offset;
	return 0;
}

struct mq_part_reader {
	mq_partition *p;
	int64_t next;          /* offset of the next record to yield */
	uint8_t *buf;
	size_t cap;
	mq_batch_iter it;
	bool in_batch;
	bool have_pos;         /* seg_base/pos is where `next` starts */
	int64_t seg_base;
	uint64_t pos;
};

int mq_part_reader_open(mq_partition *p, int64_t offset,
			mq_part_reader **out, mq_err *err)
{
	mq_part_reader *rd;

	if (offset < p->start || offset > p->end)
		return mq_errf(err, MQ_E_OFFSET_RANGE, "offset %lld outside "
			       "[%lld, %lld] in %s", (long long)offset,
			       (long long)p->start, (long long)p->end, p->dir);
	rd = calloc(1, sizeof *rd);
	if (!rd)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	rd->p = p;
	rd->next = offset;
	*out = rd;
	return 0;
}

/* Load the batch holding rd->next into the reader. 1, 0 at end, -1. */
static int reader_load(mq_part_reader *rd, mq_err *err)
{
	mq_partition *p = rd->p;
	mq_segment *s = NULL;
	mq_batch_hdr h;
	char why[128] = "";
	int i, r;

	if (rd->next >= p->end)
		return 0;
	if (rd->next < p->start)
		return mq_errf(err, MQ_E_OFFSET_RANGE, "offset %lld was "
			       "deleted from %s (start %lld)",
			       (long long)rd->next, p->dir,
			       (long long)p->start);
	if (rd->have_pos) {
		s = seg_by_base(p, rd->seg_base);
		if (s && rd->pos >= s->size) {
			i = find_seg(p, s->base);
			s = i + 1 < p->nsegs ? p->segs[i + 1] : NULL;
			rd->pos = 0;
			if (s && s->base != rd->next)
				s = NULL;
		}
	}
	if (s) {
		r = mq_seg_read_header(s, rd->pos, s->size, &h, why,
				       sizeof why, err);
		if (r == -1)
			return -1;
		if (r != 1 || h.base_offset > rd->next ||
		    mq_batch_last_offset(&h) < rd->next)
			s = NULL;   /* stale position: look it up */
	}
	if (!s) {
		i = find_seg(p, rd->next);
		if (i < 0)
			return mq_errf(err, MQ_E_OFFSET_RANGE, "offset %lld "
				       "not in %s", (long long)rd->next, p->dir);
		s = p->segs[i];
		if (mq_seg_locate(s, rd->next, &rd->pos, &h, err) < 0)
			return -1;
	}
	if (mq_seg_read_batch(s, rd->pos, &h, &rd->buf, &rd->cap, err) < 0)
		return -1;
	if (mq_batch_validate(rd->buf, mq_batch_size(&h), NULL, err) < 0 ||
	    mq_batch_iter_init(&rd->it, rd->buf, mq_batch_size(&h), err) < 0)
		return -1;
	rd->in_batch = true;
	rd->have_pos = true;
	rd->seg_base = s->base;
	rd->pos += mq_batch_size(&h);
	return 1;
}

int mq_part_reader_next(mq_part_reader *rd, mq_record *rec, mq_err *err)
{
	for (;;) {
		int r;

		if (!rd->in_batch) {
			r = reader_load(rd, err);
			if (r <= 0)
				return r;
		}
		r = mq_batch_iter_next(&rd->it, rec, err);
		if (r < 0)
			return -1;
		if (r == 0) {
			int64_t after = mq_batch_last_offset(&rd->it.hdr) + 1;
			rd->in_batch = false;
			if (after > rd->next)
				rd->next = after;
			continue;
		}
		if (rec->offset < rd->next)
			continue;
		if (rec->offset >= rd->p->end) {
			/* Not visible yet (read-only view of a tail). */
			rd->in_batch = false;
			return 0;
		}
		rd->next = rec->offset + 1;
		return 1;
	}
}

void mq_part_reader_close(mq_part_reader *rd)
{
	if (rd) {
		free(rd->buf);
		free(rd);
	}
}

/* ---- read-only refresh ---- */

/* Verify batches of s from its current size to the file's end. */
static int scan_tail(mq_partition *p, mq_segment *s, bool *clean,
		     mq_err *err)
{
	mq_scan sc;
	uint64_t fsz;

	if (mq_seg_file_size(s, &fsz, err) < 0)
		return -1;
	memset(&sc, 0, sizeof sc);
	sc.verify = true;
	sc.index_interval = p->index_interval;
	sc.limit = fsz;
	if (fsz > s->size &&
	    mq_seg_scan(s, &sc, &p->buf, &p->bufcap, err) < 0)
		return -1;
	*clean = sc.stop == MQ_SCAN_END;
	return 0;
}

int mq_part_refresh(mq_partition *p, mq_err *err)
{
	int64_t *bases = NULL, st_start;
	int nbases = 0, i, r;
	bool clean = true, added;
	char why[128];
	rpoint rp;
	mq_segment *s = active(p);

	if (!p->ro)
		return 0;
	if (s) {
		if (scan_tail(p, s, &clean, err) < 0)
			return -1;
		p->end = s->end;
	}
	if (clean) {
		if (list_bases(p, s ? s->base : -1, &bases, &nbases, err) < 0)
			return -1;
		for (i = 0; i < nbases; i++) {
			if (p->nsegs && bases[i] != p->end)
				break;   /* not (yet) a continuation */
			if (add_seg(p, bases[i], false, &added, err) < 0) {
				free(bases);
				return -1;
			}
			if (!added)
				break;
			if (p->nsegs == 1)
				p->start = p->end = bases[i];
			s = active(p);
			if (mq_index_reset(&s->ix, err) < 0 ||
			    scan_tail(p, s, &clean, err) < 0) {
				free(bases);
				return -1;
			}
			p->end = s->end;
			if (!clean)
				break;
		}
		free(bases);
	}
	/* A writer may have moved the log start (retention, set_start). */
	r = state_read(p, &st_start, &rp, why, sizeof why, err);
	if (r < 0)
		return -1;
	if (r == 1 && st_start > p->start)
		p->start = st_start < p->end ? st_start : p->end;
	while (p->nsegs > 1 && p->segs[1]->base <= p->start)
		drop_seg(p, 0);
	p->flushed = p->end;
	return 0;
}

/* ---- lookup by time ---- */

int mq_part_offset_for_time(mq_partition *p, int64_t ts, int64_t *offset,
			    mq_err *err)
{
	int i;

	for (i = 0; i < p->nsegs; i++) {
		mq_segment *s = p->segs[i];
		mq_index_entry e;
		uint64_t pos = 0;
		int64_t mts;
		int r;

		if (s->size == 0 || s->end <= p->start)
			continue;
		if (mq_seg_max_ts(s, &mts, err) < 0)
			return -1;
		if (mts < ts)
			continue;
		r = mq_index_find_time(&s->ix, ts, &e, err);
		if (r < 0)
			return -1;
		if (r == 1)
			pos = e.pos;
		while (pos < s->size) {
			mq_batch_hdr h;
			mq_batch_iter it;
			mq_record rec;
			char why[128] = "";

			r = mq_seg_read_header(s, pos, s->size, &h, why,
					       sizeof why, err);
			if (r == -1)
				return -1;
			if (r != 1)
				return mq_errf(err, MQ_E_CORRUPT, "%s segment "
					       "%lld at %llu: %s", p->dir,
					       (long long)s->base,
					       (unsigned long long)pos, why);
			if (h.max_timestamp >= ts &&
			    mq_batch_last_offset(&h) >= p->start) {
				if (mq_seg_read_batch(s, pos, &h, &p->buf,
						      &p->bufcap, err) < 0 ||
				    mq_batch_validate(p->buf, mq_batch_size(&h),
						      NULL, err) < 0 ||
				    mq_batch_iter_init(&it, p->buf,
						       mq_batch_size(&h),
						       err) < 0)
					return -1;
				while ((r = mq_batch_iter_next(&it, &rec,
							       err)) == 1) {
					if (rec.offset >= p->start &&
					    rec.timestamp >= ts) {
						*offset = rec.offset;
						return 0;
					}
				}
				if (r < 0)
					return -1;
			}
			pos += mq_batch_size(&h);
		}
	}
	*offset = p->end;
	return 0;
}

int mq_part_time_range(mq_partition *p, int64_t *oldest, int64_t *newest,
		       mq_err *err)
{
	mq_part_reader *rd;
	mq_record rec;
	int i, r;

	*oldest = *newest = -1;
	if (p->start >= p->end)
		return 0;
	if (mq_part_reader_open(p, p->start, &rd, err) < 0)
		return -1;
	r = mq_part_reader_next(rd, &rec, err);
	if (r == 1)
		*oldest = rec.timestamp;
	mq_part_reader_close(rd);
	if (r < 0)
		return -1;
	for (i = p->nsegs - 1; i >= 0; i--) {
		if (p->segs[i]->size > 0)
			return mq_seg_max_ts(p->segs[i], newest, err);
	}
	return 0;
}

/* ---- retention ---- */

/* After deleting segments from the front: make it durable. */
static int after_delete(mq_partition *p, mq_err *err)
{
	mq_err e;

	if (sync_dir(p, &e) < 0)
		return set_failed(p, &e, err);
	fix_rp(p);
	return state_write(p, err);
}

int mq_part_retain(mq_partition *p, uint64_t max_bytes, int64_t max_age_ms,
		   int64_t now_ms, int *deleted, mq_err *err)
{
	uint64_t total = mq_part_bytes(p);
	int n = 0;

	if (deleted)
		*deleted = 0;
	if (writable(p, err) < 0)
		return -1;
	while (p->nsegs > 1) {
		mq_segment *s = p->segs[0];
		bool del = max_bytes && total > max_bytes;

		if (!del && max_age_ms > 0) {
			int64_t mts;
			if (mq_seg_max_ts(s, &mts, err) < 0)
				goto out;
			del = mts < now_ms - max_age_ms;
		}
		if (!del)
			break;
		total -= s->size;
		if (delete_seg(p, 0, err) < 0)
			goto out;
		n++;
	}
	if (deleted)
		*deleted = n;
	return n ? after_delete(p, err) : 0;
out:
	if (deleted)
		*deleted = n;
	if (n) {
		mq_err e2;
		after_delete(p, &e2);
	}
	return -1;
}

int mq_part_set_start(mq_partition *p, int64_t offset, mq_err *err)
{
	int n = 0;

	if (writable(p, err) < 0)
		return -1;
	if (offset > p->end)
		return mq_errf(err, MQ_E_OFFSET_RANGE, "start %lld beyond the "
			       "end %lld of %s", (long long)offset,
			       (long long)p->end, p->dir);
	if (offset <= p->start)
		return 0;
	/* The start must never pass data that a crash could still cut. */
	if (offset > p->flushed && mq_part_flush(p, err) < 0)
		return -1;
	while (p->nsegs > 1 && p->segs[1]->base <= offset) {
		if (delete_seg(p, 0, err) < 0) {
			mq_err e2;
			after_delete(p, &e2);
			return -1;
		}
		n++;
	}
	p->start = offset;
	if (n)
		return after_delete(p, err);
	return state_write(p, err);
}
