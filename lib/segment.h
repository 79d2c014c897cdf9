/*
 * segment.h - internal to the partition code: the sparse index of one
 * segment (index.c) and one segment, its .log and .index (segment.c).
 * Nothing outside partition.c, segment.c and index.c includes this.
 *
 * .index file layout (all integers big-endian). If you change this layout,
 * bump MQ_INDEX_VERSION; an index with another version is rebuilt.
 *
 *   off size field
 *     0    4 "MQIX"
 *     4    4 version = 1
 *     8      entries, 16 bytes each:
 *            uint32 relative offset  batch base offset - segment base offset
 *            uint32 position         byte position of the batch in the .log
 *            int64  max timestamp    running max of the segment up to and
 *                                    including that batch
 *
 * An entry is due for a batch when the segment has no entry yet, or when
 * the batch starts at least index_interval bytes after the last entry's
 * batch. The index is written with plain writes and never fsynced on its
 * own: it can always be rebuilt from the log, and it is checked on open.
 */
#ifndef MQ_SEGMENT_H
#define MQ_SEGMENT_H

#include <sys/types.h>
#include "mq.h"
#include "batch.h"

#define MQ_INDEX_MAGIC "MQIX"
#define MQ_INDEX_VERSION 1
#define MQ_INDEX_HEADER_SIZE 8
#define MQ_INDEX_ENTRY_SIZE 16

/* Positions in an index are uint32: no segment may grow past this. */
#define MQ_SEGMENT_MAX_BYTES ((uint64_t)UINT32_MAX)

typedef struct mq_index_entry {
	uint32_t rel;
	uint32_t pos;
	int64_t max_ts;
} mq_index_entry;

typedef struct mq_index {
	int fd;                 /* the .index file, -1 if none (read-only) */
	bool rw;                /* may write the file */
	uint32_t n;             /* entries */
	uint32_t file_n;        /* leading entries known to be in the file */
	mq_index_entry *mem;    /* all n entries, or NULL: read them from fd */
	uint32_t cap;
} mq_index;

/* ---- index.c ---- */

/* Open <dir>/<name> (creating it when rw). Read-only and missing: fd -1,
 * not an error. Leaves the index empty; load or reset it next. */
int mq_index_open(mq_index *ix, int dirfd, const char *name, bool rw,
		  mq_err *err);
void mq_index_close(mq_index *ix);

/*
 * Read the index file into memory and check what can be checked without
 * the log: header, size a multiple of the entry size, at most one entry per
 * 61 bytes of log_size, first entry (0, 0), relative offsets and positions
 * strictly increasing, timestamps not decreasing, positions < log_size.
 * Returns 1 if it passed, 0 if not (why filled; the index is left empty),
 * -1 + err on a read error or out of memory.
 */
int mq_index_load(mq_index *ix, uint64_t log_size, char *why, size_t whylen,
		  mq_err *err);

/* Empty the index; when rw, rewrite the file as a bare header. */
int mq_index_reset(mq_index *ix, mq_err *err);

/* Keep the first n entries (file too when rw). */
int mq_index_truncate(mq_index *ix, uint32_t n, mq_err *err);

/* Add an entry in memory (loading the entries first if they live only in
 * the file). Does not write the file: see mq_index_write_tail. */
int mq_index_add(mq_index *ix, const mq_index_entry *e, mq_err *err);

/* When rw, write the entries not yet in the file. */
int mq_index_write_tail(mq_index *ix, mq_err *err);

/* Drop the in-memory copy if every entry is in the file. */
void mq_index_unload(mq_index *ix);

/* Entry i (< n), from memory or the file. 0 or -1 + err. */
int mq_index_get(const mq_index *ix, uint32_t i, mq_index_entry *e,
		 mq_err *err);

/* The last entry with rel <= rel: 1 with *e filled, 0 if none, -1 + err. */
int mq_index_find_offset(const mq_index *ix, uint32_t rel, mq_index_entry *e,
			 mq_err *err);

/* The last entry with max_ts < ts: 1 with *e filled, 0 if none, -1 + err. */
int mq_index_find_time(const mq_index *ix, int64_t ts, mq_index_entry *e,
		       mq_err *err);

/* The last entry with pos < pos: 1 with *e filled, 0 if none, -1 + err. */
int mq_index_find_pos(const mq_index *ix, uint64_t pos, mq_index_entry *e,
		      mq_err *err);

/* ---- segment.c ---- */

typedef struct mq_segment {
	int64_t base;           /* base offset, from the file name */
	int fd;                 /* the .log */
	uint64_t size;          /* bytes of known-good batches (visible end) */
	int64_t end;            /* offset after the last batch (base if empty) */
	uint64_t synced;        /* bytes known to be on disk */
	uint64_t alloc;         /* writer: bytes in the file; [size, alloc)
				 * is zero-filled (preallocated) */
	mq_index ix;
	int64_t max_ts;         /* newest timestamp in [0, size); -1 if none */
	bool max_ts_known;
	/* Bytes [vlo, vhi) are batches this process has checked in full
	 * (appended, or verified by a scan or a read); the rest of the
	 * file (e.g. what lay before the recovery point at open) is
	 * trusted but unchecked until it is first read. */
	uint64_t vlo, vhi;
} mq_segment;

/* Note that bytes [from, to) of s hold fully checked batches. */
void mq_seg_note_valid(mq_segment *s, uint64_t from, uint64_t to);

/* How a scan ends. */
enum mq_scan_stop {
	MQ_SCAN_END = 0,        /* reached the limit exactly */
	MQ_SCAN_TORN,           /* a batch runs past the limit (incomplete) */
	MQ_SCAN_CORRUPT,        /* bad header, CRC, records or offsets */
	MQ_SCAN_ZEROS,          /* zeros where the next batch would begin:
				 * the preallocated rest of the file */
};

typedef struct mq_scan {
	bool verify;            /* full mq_batch_validate, else headers only */
	uint32_t index_interval;
	uint64_t limit;         /* scan [seg->size, limit) */
	uint64_t batches;       /* out: batches accepted */
	int stop;               /* out: enum mq_scan_stop */
	char why[128];          /* out: reason when stop != MQ_SCAN_END */
} mq_scan;

/* Segment file names: %020lld.log / %020lld.index. */
void mq_seg_name(char *buf, size_t len, int64_t base, const char *ext);

/*
 * Open the .log and .index of the segment at base. When create, the files
 * are created (or emptied) and the index gets its header. Fills s with an
 * empty view (size 0, end base); the caller loads or scans it.
 */
int mq_seg_open(mq_segment *s, int dirfd, int64_t base, bool rw, bool create,
		mq_err *err);
void mq_seg_close(mq_segment *s);

/* Current size of the .log file. */
int mq_seg_file_size(const mq_segment *s, uint64_t *size, mq_err *err);

/*
 * Read and parse the batch header at pos; the batch must end at or before
 * limit. Returns 1 with h filled; 0 if the batch is incomplete before limit
 * (torn); -2 if the header is malformed (why filled); -1 + err on a read
 * error.
 */
int mq_seg_read_header(const mq_segment *s, uint64_t pos, uint64_t limit,
		       mq_batch_hdr *h, char *why, size_t whylen, mq_err *err);

/*
 * Walk batches from s->size (where offset s->end must start) towards
 * sc->limit, accepting each that is complete and sound (and, when
 * sc->verify, passes mq_batch_validate), adding index entries as due and
 * keeping s->max_ts. Advances s->size and s->end over what it accepted and
 * reports in sc why it stopped. s->max_ts must be known on entry. buf is
 * a reusable buffer (*buf may be NULL). Returns 0, or -1 + err on an I/O
 * error or out of memory.
 */
int mq_seg_scan(mq_segment *s, mq_scan *sc, uint8_t **buf, size_t *cap,
		mq_err *err);

/* Read the whole batch at pos (its header h already parsed) into *buf. */
int mq_seg_read_batch(const mq_segment *s, uint64_t pos,
		      const mq_batch_hdr *h, uint8_t **buf, size_t *cap,
		      mq_err *err);

/*
 * Newest timestamp of the batches in [0, upto) (upto a batch boundary),
 * from the index's running max plus the headers after the last entry
 * before upto; -1 if none. Fills *next_off with the offset after the last
 * batch counted. Returns 0, or -1 + err (MQ_E_CORRUPT if the batches do not
 * line up with upto).
 */
int mq_seg_max_ts_upto(const mq_segment *s, uint64_t upto, int64_t *max_ts,
		       int64_t *next_off, mq_err *err);

/* Make s->max_ts known (computing it from the index and the log). */
int mq_seg_max_ts(mq_segment *s, int64_t *max_ts, mq_err *err);

/*
 * The batch containing offset (s->base <= offset < s->end): its position
 * and header. Uses the index, then walks headers. 0 or -1 + err.
 */
int mq_seg_locate(const mq_segment *s, int64_t offset, uint64_t *pos,
		  mq_batch_hdr *h, mq_err *err);

/* Grow *buf to at least need bytes. 0 or -1 + err (MQ_E_NOMEM). */
int mq_buf_reserve(uint8_t **buf, size_t *cap, size_t need, mq_err *err);

#endif
