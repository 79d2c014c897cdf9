/*
 * partition.h - one partition of a topic: an ordered set of segments in
 * one directory, each a .log of record batches plus a sparse .index,
 * named by the base offset (20 digits, zero padded), as Kafka does:
 *
 *   <dir>/00000000000000000000.log
 *   <dir>/00000000000000000000.index
 *   <dir>/state        log start offset and recovery point (atomic file)
 *
 * Threading: a partition belongs to one thread. The only part meant for
 * another thread is mq_flush_run(), which touches nothing but the file
 * descriptors handed to it (so a flusher thread can fdatasync while the
 * owning thread keeps appending: group commit).
 *
 * Durability: appends go to the page cache. mq_part_flush() (or the
 * begin/run/end trio) makes them durable and advances the flushed offset.
 * The recovery point (the last position known flushed) is written to the
 * state file on roll and on close; on open, every batch after it is
 * verified (length, magic, CRC, record structure) and the log is cut at
 * the first torn or corrupt batch. Batches before the recovery point are
 * never cut.
 */
#ifndef MQ_PARTITION_H
#define MQ_PARTITION_H

#include <sys/types.h>
#include "mq.h"
#include "batch.h"

typedef struct mq_partition mq_partition;

typedef struct mq_part_opts {
	uint64_t segment_bytes;   /* roll when a segment would exceed this
				     (0 = 1 GiB); a batch larger than it
				     still goes in a segment of its own */
	uint32_t index_interval;  /* bytes between index entries (0 = 4096) */
	uint64_t prealloc_bytes;  /* grow the active segment's file in
				     zero-filled steps of this size (0 = by
				     each append); see mq_part_append */
	bool read_only;           /* no recovery cut, no writes, no state
				     file; copes with a tail being written */
	bool create;              /* create the directory if missing */
} mq_part_opts;

/*
 * Open (recovering if needed) the partition stored in dir. Read-only opens
 * never modify anything: a torn tail is simply not visible. Returns 0 with
 * *out set, or -1 + err.
 */
int mq_part_open(const char *dir, const mq_part_opts *opts,
		 mq_partition **out, mq_err *err);

/* Flush (unless read-only), write the state file, close everything.
 * Returns 0 or -1 + err (the partition is freed either way). */
int mq_part_close(mq_partition *p, mq_err *err);

/* What recovery did at open (for logs and tests). */
typedef struct mq_recovery_info {
	uint64_t batches_checked;
	uint64_t bytes_truncated;   /* cut from the tail */
	uint64_t bytes_zeros;       /* zeros cut from the tail: preallocated
				       space, no data (not in the above) */
	int segments_removed;       /* whole segments after a cut */
	int indexes_rebuilt;
	char reason[128];           /* why it cut, empty if it did not */
} mq_recovery_info;
const mq_recovery_info *mq_part_recovery(const mq_partition *p);

int64_t mq_part_start(const mq_partition *p);   /* log start offset */
int64_t mq_part_end(const mq_partition *p);     /* log end offset (LEO) */
int64_t mq_part_flushed(const mq_partition *p); /* all below is on disk */
uint64_t mq_part_bytes(const mq_partition *p);  /* total size of .log files */
int mq_part_segment_count(const mq_partition *p);
/* Timestamps of the first and last retained records (-1 if empty). */
int mq_part_time_range(mq_partition *p, int64_t *oldest, int64_t *newest,
		       mq_err *err);

/* A partition that hit a write or flush error refuses further appends
 * (MQ_E_READ_ONLY): after a failed fsync the page cache cannot be trusted.
 * Returns the error that stopped it, or NULL if it is writable. */
const mq_err *mq_part_failed(const mq_partition *p);

/*
 * Append one batch (len bytes at batch, which must pass mq_batch_validate:
 * this function checks). Assigns offsets by rewriting the batch's
 * baseOffset in place to the log end offset, writes it, adds an
 * index entry when due, rolls first if the active segment would exceed
 * segment_bytes. On a write error the segment is truncated back, the
 * partition is marked failed and -1 + err is returned. On success
 * *base_offset is the offset of the first record.
 */
int mq_part_append(mq_partition *p, uint8_t *batch, size_t len,
		   int64_t *base_offset, mq_err *err);

/* The same for a batch the caller has just checked with mq_batch_validate,
 * h being the header it filled: the batch is not checked again. */
int mq_part_append_checked(mq_partition *p, uint8_t *batch, size_t len,
			   const mq_batch_hdr *h, int64_t *base_offset,
			   mq_err *err);

/* fdatasync everything appended so far; advances mq_part_flushed(). */
int mq_part_flush(mq_partition *p, mq_err *err);

/*
 * Group commit in three steps. begin (owning thread) captures the end
 * offset and dup()s the descriptors that need syncing into req; run (any
 * thread) fdatasyncs and closes them; end (owning thread) advances the
 * flushed offset to req->target if req->status == 0, or marks the
 * partition failed. begin returns 0 with req->nfds == 0 when nothing is
 * dirty. With several requests in flight, the flushed offset advances in
 * the order they were begun: a request that ends before an earlier one
 * is held until that one ends too (after a write-back error only one
 * fsync caller hears of it), so read mq_part_flushed() after end.
 */
#define MQ_FLUSH_MAXFD 4
typedef struct mq_flush_req {
	int fds[MQ_FLUSH_MAXFD];
	bool is_dir[MQ_FLUSH_MAXFD];
	int nfds;
	int64_t target;      /* flushed offset once done */
	int status;          /* 0 or errno, set by mq_flush_run */
} mq_flush_req;
int mq_part_flush_begin(mq_partition *p, mq_flush_req *req, mq_err *err);
void mq_flush_run(mq_flush_req *req);
int mq_part_flush_end(mq_partition *p, mq_flush_req *req, mq_err *err);

/*
 * Locate whole batches to serve a fetch at offset: the range starts at the
 * batch that contains offset and holds as many whole batches as fit in
 * max_bytes (always at least one, however large) without passing
 * limit_offset (pass mq_part_end() to see everything, mq_part_flushed() to
 * see only durable data). Fills r with the segment's descriptor (valid
 * until the next call that may roll or delete segments), the file position
 * and length. len == 0 when offset == limit (nothing yet).
 * Bytes this process has not checked before (data that was already on
 * disk at open) are read and their CRCs checked first: the range stops
 * before the first damaged batch, and MQ_E_CORRUPT is returned if that is
 * the first one.
 * MQ_E_OFFSET_RANGE if offset < start or offset > end.
 */
typedef struct mq_read_range {
	int fd;
	off_t pos;
	size_t len;
	int64_t first_offset;  /* base offset of the first batch */
	int64_t next_offset;   /* offset after the last record in range */
	const uint8_t *data;   /* the range's bytes when they had to be read
				  (to check them), else NULL; valid until
				  the next call on the partition */
} mq_read_range;
int mq_part_read(mq_partition *p, int64_t offset, size_t max_bytes,
		 int64_t limit_offset, mq_read_range *r, mq_err *err);

/*
 * Decoding reader over a partition, for programs that work on a data
 * directory: yields records from offset onward, verifying each batch's CRC.
 * A batch that is torn or not yet complete at the tail ends the iteration
 * (returns 0) without error; a corrupt batch before the end is an error.
 */
typedef struct mq_part_reader mq_part_reader;
int mq_part_reader_open(mq_partition *p, int64_t offset,
			mq_part_reader **out, mq_err *err);
/* 1 = record, 0 = no more now, -1 = error. The record points into the
 * reader's buffer until the next call. */
int mq_part_reader_next(mq_part_reader *rd, mq_record *rec, mq_err *err);
void mq_part_reader_close(mq_part_reader *rd);

/* For read-only opens: look for batches appended by another process since
 * open (or the last refresh), including new segments. */
int mq_part_refresh(mq_partition *p, mq_err *err);

/*
 * First offset whose record timestamp is >= ts (Kafka ListOffsets
 * semantics). *offset = log end offset when no record qualifies.
 */
int mq_part_offset_for_time(mq_partition *p, int64_t ts, int64_t *offset,
			    mq_err *err);

/*
 * Retention: delete whole segments, oldest first, never the active one,
 * while the total .log bytes exceed max_bytes (0 = no limit) or the
 * segment's newest record is older than now_ms - max_age_ms (0 = no
 * limit). Advances the log start offset. *deleted gets the count.
 */
int mq_part_retain(mq_partition *p, uint64_t max_bytes, int64_t max_age_ms,
		   int64_t now_ms, int *deleted, mq_err *err);

/* Move the log start offset forward to offset (<= end): records below it
 * are no longer served; whole segments below it are deleted. Durable. */
int mq_part_set_start(mq_partition *p, int64_t offset, mq_err *err);

/* Roll a new active segment now (tests, and operators via the broker). */
int mq_part_roll(mq_partition *p, mq_err *err);

#endif
