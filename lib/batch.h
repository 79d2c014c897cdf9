/*
 * batch.h - Kafka v2 RecordBatch: CRC-32C, varints, builder, validator and
 * record iterator. The layout (all integers big-endian) is:
 *
 *   off  size field
 *     0     8 baseOffset
 *     8     4 batchLength            bytes after this field
 *    12     4 partitionLeaderEpoch
 *    16     1 magic = 2
 *    17     4 crc                    CRC-32C of bytes [21, end)
 *    21     2 attributes             bits 0-2 compression (only 0 here)
 *    23     4 lastOffsetDelta
 *    27     8 baseTimestamp
 *    35     8 maxTimestamp
 *    43     8 producerId             -1 if none
 *    51     2 producerEpoch
 *    53     4 baseSequence           -1 if none
 *    57     4 recordCount
 *    61       records
 *
 * Record: length varint, attributes int8, timestampDelta varlong,
 * offsetDelta varint, keyLength varint (-1 = null), key, valueLength varint
 * (-1 = null), value, headerCount varint, headers (keyLength varint, key,
 * valueLength varint, value). Varints are zig-zag LEB128.
 *
 * The CRC does not cover baseOffset, batchLength, leader epoch or magic, so
 * the log assigns offsets by rewriting baseOffset without re-checksumming.
 * If you change this layout, it is no longer Kafka's: don't.
 */
#ifndef MQ_BATCH_H
#define MQ_BATCH_H

#include "mq.h"

#define MQ_BATCH_HEADER_SIZE 61   /* bytes up to the first record */
#define MQ_BATCH_LOG_OVERHEAD 12  /* baseOffset + batchLength */
#define MQ_BATCH_MAGIC 2
/* Hard ceiling on any batch this code will build, read or accept. */
#define MQ_BATCH_MAX_BYTES (64u * 1024 * 1024)

/* ---- CRC-32C (Castagnoli) ---- */

/* CRC-32C of buf, continuing from crc (start with 0). Uses the SSE4.2
 * instruction when the CPU has it (checked once), else the portable path. */
uint32_t mq_crc32c(uint32_t crc, const void *buf, size_t len);
/* The portable (table) path, always available. */
uint32_t mq_crc32c_sw(uint32_t crc, const void *buf, size_t len);
/* The hardware path; only call when mq_crc32c_hw_available() is true. */
uint32_t mq_crc32c_hw(uint32_t crc, const void *buf, size_t len);
bool mq_crc32c_hw_available(void);

/* ---- varints (zig-zag LEB128) ---- */

#define MQ_VARINT_MAX 10  /* bytes of the longest varlong */

/* Encode v at p (room for MQ_VARINT_MAX bytes); returns bytes written. */
size_t mq_varint_put(uint8_t *p, int64_t v);
/* Bytes mq_varint_put would write for v. */
size_t mq_varint_size(int64_t v);
/* Decode a varlong from at most avail bytes at p. Returns bytes consumed,
 * or 0 if truncated or longer than MQ_VARINT_MAX (malformed). */
size_t mq_varint_get(const uint8_t *p, size_t avail, int64_t *v);
/* Same, but fails (returns 0) if the value does not fit an int32. */
size_t mq_varint_get32(const uint8_t *p, size_t avail, int32_t *v);

/* ---- big-endian helpers ---- */
static inline void mq_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void mq_put32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }
static inline void mq_put64(uint8_t *p, uint64_t v) { mq_put32(p, (uint32_t)(v >> 32)); mq_put32(p + 4, (uint32_t)v); }
static inline uint16_t mq_get16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t mq_get32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }
static inline uint64_t mq_get64(const uint8_t *p) { return ((uint64_t)mq_get32(p) << 32) | mq_get32(p + 4); }

/* ---- batch header ---- */

typedef struct mq_batch_hdr {
	int64_t base_offset;
	int32_t length;          /* batchLength: bytes after the length field */
	int32_t leader_epoch;
	int8_t magic;
	uint32_t crc;
	int16_t attributes;
	int32_t last_offset_delta;
	int64_t base_timestamp;
	int64_t max_timestamp;
	int64_t producer_id;
	int16_t producer_epoch;
	int32_t base_sequence;
	int32_t record_count;
} mq_batch_hdr;

/* Total bytes the batch occupies in a log: length + 12. */
static inline size_t mq_batch_size(const mq_batch_hdr *h)
{
	return (size_t)h->length + MQ_BATCH_LOG_OVERHEAD;
}
static inline int64_t mq_batch_last_offset(const mq_batch_hdr *h)
{
	return h->base_offset + h->last_offset_delta;
}

/*
 * Parse the fixed 61-byte header at p (avail bytes readable). Checks only
 * what the header alone can tell: avail >= 61, magic == 2, batchLength in
 * [49, MQ_BATCH_MAX_BYTES - 12], recordCount >= 0 and lastOffsetDelta >= 0.
 * Does not check the CRC. Returns 0 or -1 + err (MQ_E_CORRUPT; MQ_E_INVAL
 * if avail < 61).
 */
int mq_batch_parse_header(const uint8_t *p, size_t avail, mq_batch_hdr *h,
			  mq_err *err);

/*
 * Fully validate one batch occupying exactly len bytes at p: header as
 * above, len == batchLength + 12, CRC-32C matches, compression bits zero,
 * every record decodes within the batch with consistent lengths, offset
 * deltas are 0..recordCount-1 in order, recordCount matches and
 * lastOffsetDelta == recordCount - 1. Returns 0 (filling h if not NULL) or
 * -1 + err (MQ_E_CORRUPT, or MQ_E_UNSUPPORTED for compressed batches).
 */
int mq_batch_validate(const uint8_t *p, size_t len, mq_batch_hdr *h,
		      mq_err *err);

/* The same, and every record must hold at most max_message bytes of key,
 * value and headers (0: no limit): else -1 + err (MQ_E_TOO_LARGE naming
 * the first such record and the limit, with hint appended if not NULL,
 * e.g. the option that sets the limit), once the batch is otherwise
 * sound. One pass over the records. */
int mq_batch_validate_sized(const uint8_t *p, size_t len,
			    uint32_t max_message, const char *hint,
			    mq_batch_hdr *h, mq_err *err);

/* The CRC-32C over the len bytes of the batch at p (from the attributes
 * on; len >= MQ_BATCH_HEADER_SIZE). A batch is intact only if it equals
 * the header's crc. */
uint32_t mq_batch_crc(const uint8_t *p, size_t len);

/* Rewrite baseOffset in place (the CRC does not cover it). */
void mq_batch_set_base_offset(uint8_t *p, int64_t base_offset);

/* Recompute and store the CRC of the batch at p (len bytes). */
void mq_batch_seal(uint8_t *p, size_t len);

/* ---- records ---- */

typedef struct mq_header {
	const uint8_t *key;
	int32_t key_len;         /* header keys are never null */
	const uint8_t *value;
	int32_t value_len;       /* -1 = null */
} mq_header;

typedef struct mq_record {
	int64_t offset;          /* baseOffset + offsetDelta */
	int64_t timestamp;       /* baseTimestamp + timestampDelta */
	const uint8_t *key;      /* NULL when key_len == -1 */
	int32_t key_len;
	const uint8_t *value;    /* NULL when value_len == -1 */
	int32_t value_len;
	int32_t header_count;
	const uint8_t *headers;  /* raw header bytes, for mq_header_next */
	size_t headers_len;
} mq_record;

/* Iterate the headers of a record: start with *pos = 0; returns 1 with h
 * filled, 0 at the end, -1 if malformed. */
int mq_header_next(const mq_record *r, size_t *pos, mq_header *h);

/* Iterates the records of one batch (which must have passed
 * mq_batch_validate, or the iterator re-checks bounds and fails). */
typedef struct mq_batch_iter {
	const uint8_t *p;
	size_t len;
	size_t pos;
	int32_t left;
	mq_batch_hdr hdr;
} mq_batch_iter;

int mq_batch_iter_init(mq_batch_iter *it, const uint8_t *p, size_t len,
		       mq_err *err);
/* Returns 1 with r filled, 0 at the end, -1 + err if malformed. Pointers in
 * r point into the batch buffer. */
int mq_batch_iter_next(mq_batch_iter *it, mq_record *r, mq_err *err);

/* Check that every record of the batch holds at most max_message bytes
 * of key, value and headers: mq_batch_validate_sized without the header. */
int mq_batch_check_sizes(const uint8_t *batch, size_t len,
			 uint32_t max_message, const char *hint, mq_err *err);

/* ---- builder ---- */

typedef struct mq_batch_builder {
	uint8_t *buf;            /* malloc'd; the batch is buf[0, len) */
	size_t len, cap;
	int32_t count;
	int64_t base_timestamp;
	int64_t max_timestamp;
	size_t max_bytes;        /* refuse to grow beyond this */
} mq_batch_builder;

/* Start an empty batch; max_bytes caps its total size (0 = the hard
 * ceiling). Returns 0 or -1 + err (MQ_E_NOMEM). */
int mq_bb_init(mq_batch_builder *b, size_t max_bytes, mq_err *err);
/* Forget the records, keep the buffer. */
void mq_bb_reset(mq_batch_builder *b);
void mq_bb_free(mq_batch_builder *b);

/*
 * Append one record. key/value may be NULL with len -1 (null). The first
 * record's timestamp becomes baseTimestamp. Fails with MQ_E_TOO_LARGE (the
 * batch is left unchanged) if the record would push the batch past
 * max_bytes, so a caller can finish the batch and start another.
 */
int mq_bb_add(mq_batch_builder *b, int64_t timestamp,
	      const void *key, int32_t key_len,
	      const void *value, int32_t value_len,
	      const mq_header *headers, int32_t header_count, mq_err *err);

/* Bytes such a record adds to a batch, its length prefix included (for
 * planning); SIZE_MAX if it could never fit in a batch. */
size_t mq_bb_record_size(int64_t ts_delta, int32_t offset_delta,
			 int32_t key_len, int32_t value_len,
			 const mq_header *headers, int32_t header_count);

/*
 * Fill in the header (baseOffset 0, producer id/epoch/base sequence as
 * given, -1/-1/-1 for none) and the CRC. The batch is then buf[0, len).
 * A batch with no records is refused (MQ_E_INVAL).
 */
int mq_bb_finish(mq_batch_builder *b, int64_t producer_id,
		 int16_t producer_epoch, int32_t base_sequence, mq_err *err);

#endif
