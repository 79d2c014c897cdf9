/*
 * batch.c - Kafka v2 RecordBatch: header parsing, full validation, the
 * record and header iterators, and the builder.
 *
 * Everything here reads bytes that may come from a torn file or a hostile
 * peer, so every length taken from the buffer is checked against what is
 * left before it is used, and positions are size_t compared against the
 * remaining count rather than added and compared (which could wrap).
 */
#include "batch.h"

#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Field offsets in the fixed header (see batch.h). */
enum {
	OFF_BASE_OFFSET = 0,
	OFF_LENGTH = 8,
	OFF_EPOCH = 12,
	OFF_MAGIC = 16,
	OFF_CRC = 17,
	OFF_ATTRIBUTES = 21,
	OFF_LAST_DELTA = 23,
	OFF_BASE_TS = 27,
	OFF_MAX_TS = 35,
	OFF_PRODUCER_ID = 43,
	OFF_PRODUCER_EPOCH = 51,
	OFF_BASE_SEQ = 53,
	OFF_COUNT = 57,
};

/* Attribute bits. Bit 3 (timestamp type) is accepted either way; the
 * others this code does not implement. */
#define ATTR_COMPRESSION 0x0007
#define ATTR_TRANSACTIONAL 0x0010
#define ATTR_CONTROL 0x0020
#define ATTR_KNOWN 0x003f

/* The smallest record: seven one-byte fields (length, attributes,
 * timestampDelta, offsetDelta, keyLength, valueLength, headerCount). */
#define MIN_RECORD_SIZE 7
/* The smallest header: a key length and a value length. */
#define MIN_HEADER_SIZE 2

/* Largest batchLength accepted. */
#define MAX_BATCH_LENGTH (MQ_BATCH_MAX_BYTES - MQ_BATCH_LOG_OVERHEAD)

/* Adds that wrap in two's complement instead of overflowing (offsets and
 * timestamps in a corrupt batch can be anything). */
static inline int64_t add_wrap(int64_t a, int64_t b)
{
	return (int64_t)((uint64_t)a + (uint64_t)b);
}

/* ---- header ---- */

int mq_batch_parse_header(const uint8_t *p, size_t avail, mq_batch_hdr *h,
			  mq_err *err)
{
	if (avail < MQ_BATCH_HEADER_SIZE)
		return mq_errf(err, MQ_E_INVAL,
			       "batch header needs %d bytes, have %zu",
			       MQ_BATCH_HEADER_SIZE, avail);
	h->base_offset = (int64_t)mq_get64(p + OFF_BASE_OFFSET);
	h->length = (int32_t)mq_get32(p + OFF_LENGTH);
	h->leader_epoch = (int32_t)mq_get32(p + OFF_EPOCH);
	h->magic = (int8_t)p[OFF_MAGIC];
	h->crc = mq_get32(p + OFF_CRC);
	h->attributes = (int16_t)mq_get16(p + OFF_ATTRIBUTES);
	h->last_offset_delta = (int32_t)mq_get32(p + OFF_LAST_DELTA);
	h->base_timestamp = (int64_t)mq_get64(p + OFF_BASE_TS);
	h->max_timestamp = (int64_t)mq_get64(p + OFF_MAX_TS);
	h->producer_id = (int64_t)mq_get64(p + OFF_PRODUCER_ID);
	h->producer_epoch = (int16_t)mq_get16(p + OFF_PRODUCER_EPOCH);
	h->base_sequence = (int32_t)mq_get32(p + OFF_BASE_SEQ);
	h->record_count = (int32_t)mq_get32(p + OFF_COUNT);

	if (h->magic != MQ_BATCH_MAGIC)
		return mq_errf(err, MQ_E_CORRUPT, "batch magic %d, expected %d",
			       h->magic, MQ_BATCH_MAGIC);
	if (h->length < MQ_BATCH_HEADER_SIZE - MQ_BATCH_LOG_OVERHEAD ||
	    (uint32_t)h->length > MAX_BATCH_LENGTH)
		return mq_errf(err, MQ_E_CORRUPT, "batch length %" PRId32
			       " out of range", h->length);
	if (h->record_count < 0)
		return mq_errf(err, MQ_E_CORRUPT, "negative record count %"
			       PRId32, h->record_count);
	if (h->last_offset_delta < 0)
		return mq_errf(err, MQ_E_CORRUPT,
			       "negative last offset delta %" PRId32,
			       h->last_offset_delta);
	return 0;
}

/* Compression, transactions and control batches are not implemented: such
 * a batch is well formed but cannot be served or appended here. */
static int check_attributes(const mq_batch_hdr *h, mq_err *err)
{
	uint16_t a = (uint16_t)h->attributes;

	if (a & ATTR_COMPRESSION)
		return mq_errf(err, MQ_E_UNSUPPORTED,
			       "compressed batch (codec %u)", a & ATTR_COMPRESSION);
	if (a & ATTR_TRANSACTIONAL)
		return mq_errf(err, MQ_E_UNSUPPORTED, "transactional batch");
	if (a & ATTR_CONTROL)
		return mq_errf(err, MQ_E_UNSUPPORTED, "control batch");
	if (a & ~ATTR_KNOWN)
		return mq_errf(err, MQ_E_UNSUPPORTED,
			       "unknown batch attributes 0x%04x", a);
	return 0;
}

void mq_batch_set_base_offset(uint8_t *p, int64_t base_offset)
{
	mq_put64(p + OFF_BASE_OFFSET, (uint64_t)base_offset);
}

uint32_t mq_batch_crc(const uint8_t *p, size_t len)
{
	return mq_crc32c(0, p + OFF_ATTRIBUTES, len - OFF_ATTRIBUTES);
}

void mq_batch_seal(uint8_t *p, size_t len)
{
	if (len < MQ_BATCH_HEADER_SIZE)
		return;
	mq_put32(p + OFF_CRC, mq_batch_crc(p, len));
}

/* ---- records ---- */

/*
 * Varints inline for the common short forms: in a batch of small records
 * nearly every field is one or two bytes, and validation decodes six per
 * record, so the call into varint.c would dominate. Longer ones go there.
 */
static inline size_t get_varint(const uint8_t *p, size_t avail, int64_t *v)
{
	uint64_t u;

	if (avail >= 1 && p[0] < 0x80) {
		u = p[0];
	} else if (avail >= 2 && p[1] < 0x80) {
		u = (uint64_t)(p[0] & 0x7f) | (uint64_t)p[1] << 7;
	} else {
		return mq_varint_get(p, avail, v);
	}
	*v = (int64_t)((u >> 1) ^ (0 - (u & 1)));
	return p[0] < 0x80 ? 1 : 2;
}

/* Read an int32 varint at *pos, not past end. */
static inline int get_v32(const uint8_t *p, size_t end, size_t *pos,
			  int32_t *v)
{
	int64_t w;
	size_t n = get_varint(p + *pos, end - *pos, &w);

	if (n == 0 || w < INT32_MIN || w > INT32_MAX)
		return -1;
	*v = (int32_t)w;
	*pos += n;
	return 0;
}

/*
 * A length-prefixed byte string at *pos: the length (-1 allowed only when
 * nullable), then that many bytes, all before end. Sets *data (NULL for
 * null) and *len.
 */
static inline int get_bytes(const uint8_t *p, size_t end, size_t *pos,
			    bool nullable, const uint8_t **data, int32_t *len)
{
	int32_t n;

	if (get_v32(p, end, pos, &n) < 0)
		return -1;
	if (n == -1 && nullable) {
		*data = NULL;
		*len = -1;
		return 0;
	}
	if (n < 0 || (size_t)n > end - *pos)
		return -1;
	*data = p + *pos;
	*len = n;
	*pos += (size_t)n;
	return 0;
}

/* One header at *pos, not past end. */
static inline int get_header(const uint8_t *p, size_t end, size_t *pos,
			     mq_header *h)
{
	if (get_bytes(p, end, pos, false, &h->key, &h->key_len) < 0 ||
	    get_bytes(p, end, pos, true, &h->value, &h->value_len) < 0)
		return -1;
	return 0;
}

/*
 * Decode the record at *pos of a batch of len bytes whose header is h.
 * Checks that every field lies within the record's own length and that the
 * fields use exactly that length. On success fills r, sets *delta to the
 * record's offset delta and moves *pos past the record. On failure returns
 * -1 with a reason in *why.
 */
static int decode_record(const uint8_t *p, size_t len, size_t *pos,
			 const mq_batch_hdr *h, mq_record *r, int32_t *delta,
			 const char **why)
{
	size_t at = *pos, end;
	int32_t rlen;
	int64_t ts_delta;
	size_t n;

	if (get_v32(p, len, &at, &rlen) < 0) {
		*why = "bad record length";
		return -1;
	}
	if (rlen < MIN_RECORD_SIZE - 1 || (size_t)rlen > len - at) {
		*why = "record length out of bounds";
		return -1;
	}
	end = at + (size_t)rlen;

	at++;	/* attributes: unused */
	n = get_varint(p + at, end - at, &ts_delta);
	if (n == 0) {
		*why = "bad timestamp delta";
		return -1;
	}
	at += n;
	if (get_v32(p, end, &at, delta) < 0) {
		*why = "bad offset delta";
		return -1;
	}
	if (get_bytes(p, end, &at, true, &r->key, &r->key_len) < 0) {
		*why = "bad key length";
		return -1;
	}
	if (get_bytes(p, end, &at, true, &r->value, &r->value_len) < 0) {
		*why = "bad value length";
		return -1;
	}
	if (get_v32(p, end, &at, &r->header_count) < 0 ||
	    r->header_count < 0 ||
	    (size_t)r->header_count > (end - at) / MIN_HEADER_SIZE) {
		*why = "bad header count";
		return -1;
	}
	r->headers = p + at;
	for (int32_t i = 0; i < r->header_count; i++) {
		mq_header hd;
		if (get_header(p, end, &at, &hd) < 0) {
			*why = "bad header";
			return -1;
		}
	}
	if (at != end) {
		*why = "record length does not match its fields";
		return -1;
	}
	r->headers_len = end - (size_t)(r->headers - p);
	r->offset = add_wrap(h->base_offset, *delta);
	r->timestamp = add_wrap(h->base_timestamp, ts_delta);
	*pos = end;
	return 0;
}

int mq_header_next(const mq_record *r, size_t *pos, mq_header *h)
{
	if (*pos >= r->headers_len)
		return *pos == r->headers_len ? 0 : -1;
	if (get_header(r->headers, r->headers_len, pos, h) < 0)
		return -1;
	return 1;
}

/* ---- validation ---- */

/* What the iterator and the validator check first: a header that parses
 * and a batchLength that matches the bytes given. */
static int check_frame(const uint8_t *p, size_t len, mq_batch_hdr *h,
		       mq_err *err)
{
	if (len < MQ_BATCH_HEADER_SIZE)
		return mq_errf(err, MQ_E_CORRUPT,
			       "batch of %zu bytes is shorter than its header",
			       len);
	if (mq_batch_parse_header(p, len, h, err) < 0)
		return -1;
	if (mq_batch_size(h) != len)
		return mq_errf(err, MQ_E_CORRUPT,
			       "batch length %" PRId32 " does not match the "
			       "%zu bytes given", h->length, len);
	return 0;
}

static int check_counts(const mq_batch_hdr *h, size_t len, mq_err *err)
{
	if (h->record_count == 0)
		return mq_errf(err, MQ_E_CORRUPT, "batch with no records");
	if ((size_t)h->record_count >
	    (len - MQ_BATCH_HEADER_SIZE) / MIN_RECORD_SIZE)
		return mq_errf(err, MQ_E_CORRUPT, "record count %" PRId32
			       " cannot fit in %zu bytes", h->record_count,
			       len);
	if (h->last_offset_delta != h->record_count - 1)
		return mq_errf(err, MQ_E_CORRUPT, "last offset delta %" PRId32
			       " with %" PRId32 " records",
			       h->last_offset_delta, h->record_count);
	return 0;
}

int mq_batch_validate_sized(const uint8_t *p, size_t len,
			    uint32_t max_message, const char *hint,
			    mq_batch_hdr *h, mq_err *err)
{
	int32_t big = -1;	/* the first record over max_message */
	uint64_t big_size = 0;
	mq_batch_hdr hdr;
	uint32_t crc;
	size_t pos = MQ_BATCH_HEADER_SIZE;

	if (check_frame(p, len, &hdr, err) < 0)
		return -1;
	crc = mq_batch_crc(p, len);
	if (crc != hdr.crc)
		return mq_errf(err, MQ_E_CORRUPT,
			       "batch CRC 0x%08x, computed 0x%08x", hdr.crc,
			       crc);
	/* Only now are the attributes known to be what the writer meant. */
	if (check_attributes(&hdr, err) < 0 || check_counts(&hdr, len, err) < 0)
		return -1;

	for (int32_t i = 0; i < hdr.record_count; i++) {
		mq_record r;
		int32_t delta;
		const char *why;

		if (decode_record(p, len, &pos, &hdr, &r, &delta, &why) < 0)
			return mq_errf(err, MQ_E_CORRUPT, "record %" PRId32
				       ": %s", i, why);
		if (delta != i)
			return mq_errf(err, MQ_E_CORRUPT, "record %" PRId32
				       " has offset delta %" PRId32, i, delta);
		if (max_message && big < 0) {
			uint64_t size = (uint64_t)(r.key_len > 0 ? r.key_len : 0) +
					(uint64_t)(r.value_len > 0 ? r.value_len : 0) +
					r.headers_len;
			if (size > max_message) {
				big = i;
				big_size = size;
			}
		}
	}
	if (pos != len)
		return mq_errf(err, MQ_E_CORRUPT,
			       "%zu bytes after the last record", len - pos);
	/* A corrupt batch is reported as such, even with a large record. */
	if (big >= 0)
		return mq_errf(err, MQ_E_TOO_LARGE,
			       "record %d of the batch is %llu bytes; the "
			       "limit is %u%s%s%s", (int)big,
			       (unsigned long long)big_size, max_message,
			       hint ? " (" : "", hint ? hint : "",
			       hint ? ")" : "");
	if (h)
		*h = hdr;
	return 0;
}

int mq_batch_validate(const uint8_t *p, size_t len, mq_batch_hdr *h,
		      mq_err *err)
{
	return mq_batch_validate_sized(p, len, 0, NULL, h, err);
}

/* ---- iterator ---- */

int mq_batch_iter_init(mq_batch_iter *it, const uint8_t *p, size_t len,
		       mq_err *err)
{
	memset(it, 0, sizeof *it);
	if (check_frame(p, len, &it->hdr, err) < 0 ||
	    check_attributes(&it->hdr, err) < 0 ||
	    check_counts(&it->hdr, len, err) < 0)
		return -1;
	it->p = p;
	it->len = len;
	it->pos = MQ_BATCH_HEADER_SIZE;
	it->left = it->hdr.record_count;
	return 0;
}

int mq_batch_iter_next(mq_batch_iter *it, mq_record *r, mq_err *err)
{
	int32_t index, delta;
	const char *why;

	if (it->left == 0) {
		if (it->pos != it->len)
			return mq_errf(err, MQ_E_CORRUPT,
				       "%zu bytes after the last record",
				       it->len - it->pos);
		return 0;
	}
	index = it->hdr.record_count - it->left;
	if (decode_record(it->p, it->len, &it->pos, &it->hdr, r, &delta,
			  &why) < 0)
		return mq_errf(err, MQ_E_CORRUPT, "record %" PRId32 ": %s",
			       index, why);
	if (delta != index)
		return mq_errf(err, MQ_E_CORRUPT, "record %" PRId32
			       " has offset delta %" PRId32, index, delta);
	it->left--;
	return 1;
}

/* ---- builder ---- */

/* Initial buffer: enough for a handful of small records. */
#define BB_INITIAL_CAP 4096

int mq_bb_init(mq_batch_builder *b, size_t max_bytes, mq_err *err)
{
	memset(b, 0, sizeof *b);
	if (max_bytes == 0 || max_bytes > MQ_BATCH_MAX_BYTES)
		max_bytes = MQ_BATCH_MAX_BYTES;
	if (max_bytes < MQ_BATCH_HEADER_SIZE + MIN_RECORD_SIZE)
		return mq_errf(err, MQ_E_INVAL,
			       "batch limit of %zu bytes cannot hold a record",
			       max_bytes);
	b->cap = max_bytes < BB_INITIAL_CAP ? max_bytes : BB_INITIAL_CAP;
	b->buf = malloc(b->cap);
	if (!b->buf) {
		b->cap = 0;
		return mq_errf(err, MQ_E_NOMEM, "out of memory for a batch");
	}
	b->max_bytes = max_bytes;
	mq_bb_reset(b);
	return 0;
}

void mq_bb_reset(mq_batch_builder *b)
{
	b->len = MQ_BATCH_HEADER_SIZE;
	b->count = 0;
	b->base_timestamp = 0;
	b->max_timestamp = 0;
}

void mq_bb_free(mq_batch_builder *b)
{
	free(b->buf);
	memset(b, 0, sizeof *b);
}

/* a + b, or SIZE_MAX if it would pass the batch ceiling (every size this
 * code plans is bounded by that, so saturating there cannot overflow). */
static inline size_t size_add(size_t a, size_t b)
{
	if (a > MQ_BATCH_MAX_BYTES || b > MQ_BATCH_MAX_BYTES - a)
		return SIZE_MAX;
	return a + b;
}

/* Bytes of a length-prefixed field: the varint plus the data (none for
 * null or negative lengths). */
static inline size_t field_size(int32_t n)
{
	return size_add(mq_varint_size(n), n > 0 ? (size_t)n : 0);
}

/* Bytes of a record after its length prefix, or SIZE_MAX if too big. */
static size_t record_body_size(int64_t ts_delta, int32_t offset_delta,
			       int32_t key_len, int32_t value_len,
			       const mq_header *headers, int32_t header_count)
{
	size_t body = 1;	/* attributes */

	body = size_add(body, mq_varint_size(ts_delta));
	body = size_add(body, mq_varint_size(offset_delta));
	body = size_add(body, field_size(key_len));
	body = size_add(body, field_size(value_len));
	body = size_add(body, mq_varint_size(header_count));
	for (int32_t i = 0; i < header_count && body != SIZE_MAX; i++) {
		body = size_add(body, field_size(headers[i].key_len));
		body = size_add(body, field_size(headers[i].value_len));
	}
	return body;
}

size_t mq_bb_record_size(int64_t ts_delta, int32_t offset_delta,
			 int32_t key_len, int32_t value_len,
			 const mq_header *headers, int32_t header_count)
{
	size_t body = record_body_size(ts_delta, offset_delta, key_len,
				       value_len, headers, header_count);

	if (body == SIZE_MAX)
		return SIZE_MAX;
	return size_add(mq_varint_size((int64_t)body), body);
}

/* Argument checks for one byte string: NULL data only for null or empty. */
static bool bytes_ok(const void *data, int32_t len, bool nullable)
{
	if (len < (nullable ? -1 : 0))
		return false;
	return data != NULL || len <= 0;
}

static uint8_t *put_bytes(uint8_t *w, const void *data, int32_t len)
{
	w += mq_varint_put(w, len);
	if (len > 0) {
		memcpy(w, data, (size_t)len);
		w += len;
	}
	return w;
}

/* Make room for need more bytes, growing geometrically up to max_bytes.
 * The caller has checked that len + need <= max_bytes. */
static int bb_reserve(mq_batch_builder *b, size_t need, mq_err *err)
{
	size_t want = b->len + need, cap = b->cap;
	uint8_t *nbuf;

	if (want <= cap)
		return 0;
	while (cap < want)
		cap = cap > b->max_bytes / 2 ? b->max_bytes : cap * 2;
	nbuf = realloc(b->buf, cap);
	if (!nbuf)
		return mq_errf(err, MQ_E_NOMEM,
			       "out of memory growing a batch to %zu bytes",
			       cap);
	b->buf = nbuf;
	b->cap = cap;
	return 0;
}

int mq_bb_add(mq_batch_builder *b, int64_t timestamp,
	      const void *key, int32_t key_len,
	      const void *value, int32_t value_len,
	      const mq_header *headers, int32_t header_count, mq_err *err)
{
	int64_t ts_delta = 0;
	size_t size, body;
	uint8_t *w;

	if (!bytes_ok(key, key_len, true) || !bytes_ok(value, value_len, true))
		return mq_errf(err, MQ_E_INVAL, "bad key or value length");
	if (header_count < 0 || (header_count > 0 && !headers))
		return mq_errf(err, MQ_E_INVAL, "bad header count %" PRId32,
			       header_count);
	for (int32_t i = 0; i < header_count; i++)
		if (!bytes_ok(headers[i].key, headers[i].key_len, false) ||
		    !bytes_ok(headers[i].value, headers[i].value_len, true))
			return mq_errf(err, MQ_E_INVAL,
				       "bad length in header %" PRId32, i);
	if (b->count == INT32_MAX)
		return mq_errf(err, MQ_E_TOO_LARGE, "batch record count full");
	if (b->count > 0 &&
	    __builtin_sub_overflow(timestamp, b->base_timestamp, &ts_delta))
		return mq_errf(err, MQ_E_INVAL, "timestamp %" PRId64
			       " too far from the batch's first", timestamp);

	body = record_body_size(ts_delta, b->count, key_len, value_len,
				headers, header_count);
	size = body == SIZE_MAX ? SIZE_MAX
				: size_add(mq_varint_size((int64_t)body), body);
	if (size == SIZE_MAX)
		return mq_errf(err, MQ_E_TOO_LARGE,
			       "record larger than the %u-byte batch ceiling",
			       MQ_BATCH_MAX_BYTES);
	if (size > b->max_bytes - b->len)
		return mq_errf(err, MQ_E_TOO_LARGE,
			       "record of %zu bytes does not fit in the batch "
			       "(%zu of %zu bytes used)", size, b->len,
			       b->max_bytes);
	if (bb_reserve(b, size, err) < 0)
		return -1;

	/* The record's length prefix covers everything after itself. */
	w = b->buf + b->len;
	w += mq_varint_put(w, (int64_t)body);
	*w++ = 0;	/* attributes */
	w += mq_varint_put(w, ts_delta);
	w += mq_varint_put(w, b->count);
	w = put_bytes(w, key, key_len);
	w = put_bytes(w, value, value_len);
	w += mq_varint_put(w, header_count);
	for (int32_t i = 0; i < header_count; i++) {
		w = put_bytes(w, headers[i].key, headers[i].key_len);
		w = put_bytes(w, headers[i].value, headers[i].value_len);
	}
	b->len += size;

	if (b->count == 0) {
		b->base_timestamp = timestamp;
		b->max_timestamp = timestamp;
	} else if (timestamp > b->max_timestamp) {
		b->max_timestamp = timestamp;
	}
	b->count++;
	return 0;
}

int mq_bb_finish(mq_batch_builder *b, int64_t producer_id,
		 int16_t producer_epoch, int32_t base_sequence, mq_err *err)
{
	uint8_t *p = b->buf;

	if (b->count == 0)
		return mq_errf(err, MQ_E_INVAL, "empty batch");
	mq_put64(p + OFF_BASE_OFFSET, 0);
	mq_put32(p + OFF_LENGTH, (uint32_t)(b->len - MQ_BATCH_LOG_OVERHEAD));
	/* -1: no leader epoch, as a Kafka producer writes it. */
	mq_put32(p + OFF_EPOCH, (uint32_t)-1);
	p[OFF_MAGIC] = MQ_BATCH_MAGIC;
	mq_put16(p + OFF_ATTRIBUTES, 0);	/* no compression, CreateTime */
	mq_put32(p + OFF_LAST_DELTA, (uint32_t)(b->count - 1));
	mq_put64(p + OFF_BASE_TS, (uint64_t)b->base_timestamp);
	mq_put64(p + OFF_MAX_TS, (uint64_t)b->max_timestamp);
	mq_put64(p + OFF_PRODUCER_ID, (uint64_t)producer_id);
	mq_put16(p + OFF_PRODUCER_EPOCH, (uint16_t)producer_epoch);
	mq_put32(p + OFF_BASE_SEQ, (uint32_t)base_sequence);
	mq_put32(p + OFF_COUNT, (uint32_t)b->count);
	mq_batch_seal(p, b->len);
	return 0;
}

int mq_batch_check_sizes(const uint8_t *batch, size_t len,
			 uint32_t max_message, const char *hint, mq_err *err)
{
	return mq_batch_validate_sized(batch, len, max_message, hint, NULL,
				       err);
}
