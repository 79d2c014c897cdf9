/*
 * t_batch.c - Kafka v2 record batches: builder, validator, iterators.
 * Corrupt inputs are always copied into a buffer of exactly their length,
 * so under ASan any read past the end is caught.
 */
#include "harness.h"
#include "batch.h"

#include <limits.h>

/* REQUIRE from harness.h evaluates its condition twice; calls with side
 * effects (adding a record, advancing an iterator) go through this. */
#define REQUIRE_EQ(expr, want) do { \
	long long got_ = (long long)(expr); \
	if (got_ != (long long)(want)) { \
		fprintf(stderr, "%s:%d: %s == %s failed: %lld\n", \
			__FILE__, __LINE__, #expr, #want, got_); \
		harness_cur_failed = 1; \
		return; \
	} } while (0)

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* A malloc'd copy of len bytes (at least one byte allocated). */
static uint8_t *dup_bytes(const uint8_t *p, size_t len)
{
	uint8_t *q = malloc(len ? len : 1);

	if (q && len)
		memcpy(q, p, len);
	return q;
}

/* Validate a copy of exactly len bytes; returns the error code (0 = ok). */
static int validate_copy(const uint8_t *p, size_t len)
{
	uint8_t *q = dup_bytes(p, len);
	mq_err err = { 0 };
	int rc;

	if (!q)
		return -1;
	rc = mq_batch_validate(q, len, NULL, &err) == 0 ? 0 : err.code;
	free(q);
	return rc;
}

/* Walk every record and header; 0 if the walk ended cleanly, -1 if the
 * iterator reported an error. Exercises the bounds checks of both. */
static int walk(const uint8_t *p, size_t len, int32_t *count)
{
	mq_batch_iter it;
	mq_record r;
	mq_err err;
	int rc;

	*count = 0;
	if (mq_batch_iter_init(&it, p, len, &err) < 0)
		return -1;
	while ((rc = mq_batch_iter_next(&it, &r, &err)) == 1) {
		size_t pos = 0;
		mq_header h;
		int hr, nh = 0;
		while ((hr = mq_header_next(&r, &pos, &h)) == 1)
			nh++;
		if (hr < 0 || nh != r.header_count)
			return -1;
		(*count)++;
	}
	return rc;
}

/* A small sealed batch of n records with keys, values and a header. */
static void build_small(mq_batch_builder *b, int n)
{
	mq_err err;
	mq_header h = { (const uint8_t *)"h", 1, (const uint8_t *)"hv", 2 };

	if (mq_bb_init(b, 0, &err) < 0)
		abort();
	for (int i = 0; i < n; i++) {
		char k[16], v[32];
		int kl = snprintf(k, sizeof k, "key%d", i);
		int vl = snprintf(v, sizeof v, "value number %d", i);
		if (mq_bb_add(b, 1000 + i, k, kl, v, vl, &h, i % 2, &err) < 0)
			abort();
	}
	if (mq_bb_finish(b, -1, -1, -1, &err) < 0)
		abort();
}

/* The exact bytes of a one-record batch, checked against the layout in
 * batch.h rather than against the parser. */
TEST(exact_layout)
{
	mq_batch_builder b;
	mq_err err;
	static const uint8_t rec[] = {
		0x10,		/* length 8 */
		0x00,		/* attributes */
		0x00,		/* timestampDelta 0 */
		0x00,		/* offsetDelta 0 */
		0x02, 'k',	/* keyLength 1, key */
		0x02, 'v',	/* valueLength 1, value */
		0x00,		/* headerCount 0 */
	};

	REQUIRE_EQ(mq_bb_init(&b, 0, &err), 0);
	REQUIRE_EQ(mq_bb_add(&b, 1700000000123LL, "k", 1, "v", 1, NULL, 0,
			  &err), 0);
	REQUIRE_EQ(mq_bb_finish(&b, 77, 3, 5, &err), 0);
	CHECK_EQ_INT(b.len, 61 + sizeof rec);
	CHECK_EQ_INT(mq_get64(b.buf), 0);
	CHECK_EQ_INT(mq_get32(b.buf + 8), 61 + sizeof rec - 12);
	CHECK_EQ_INT((int32_t)mq_get32(b.buf + 12), -1);
	CHECK_EQ_INT(b.buf[16], 2);
	CHECK_EQ_INT(mq_get32(b.buf + 17),
		     mq_crc32c_sw(0, b.buf + 21, b.len - 21));
	CHECK_EQ_INT(mq_get16(b.buf + 21), 0);
	CHECK_EQ_INT(mq_get32(b.buf + 23), 0);
	CHECK_EQ_INT(mq_get64(b.buf + 27), 1700000000123LL);
	CHECK_EQ_INT(mq_get64(b.buf + 35), 1700000000123LL);
	CHECK_EQ_INT(mq_get64(b.buf + 43), 77);
	CHECK_EQ_INT(mq_get16(b.buf + 51), 3);
	CHECK_EQ_INT(mq_get32(b.buf + 53), 5);
	CHECK_EQ_INT(mq_get32(b.buf + 57), 1);
	CHECK(memcmp(b.buf + 61, rec, sizeof rec) == 0);
	CHECK_EQ_INT(validate_copy(b.buf, b.len), 0);
	mq_bb_free(&b);
}

/* Nulls, empties and headers survive the trip. */
TEST(round_trip)
{
	mq_batch_builder b;
	mq_batch_hdr h;
	mq_batch_iter it;
	mq_record r;
	mq_header hd;
	mq_err err;
	size_t pos;
	mq_header hdrs[3] = {
		{ (const uint8_t *)"trace", 5, (const uint8_t *)"abc", 3 },
		{ (const uint8_t *)"nullv", 5, NULL, -1 },
		{ (const uint8_t *)"", 0, (const uint8_t *)"", 0 },
	};

	REQUIRE_EQ(mq_bb_init(&b, 0, &err), 0);
	/* 0: null key, value "hello" */
	CHECK(mq_bb_add(&b, 5000, NULL, -1, "hello", 5, NULL, 0, &err) == 0);
	/* 1: key "k1", null value, three headers */
	CHECK(mq_bb_add(&b, 4990, "k1", 2, NULL, -1, hdrs, 3, &err) == 0);
	/* 2: empty key, empty value */
	CHECK(mq_bb_add(&b, 6000, "", 0, "", 0, NULL, 0, &err) == 0);
	/* 3: NULL pointers with length 0 are empty, not null */
	CHECK(mq_bb_add(&b, 5500, NULL, 0, NULL, 0, hdrs, 1, &err) == 0);
	REQUIRE_EQ(mq_bb_finish(&b, 42, 7, 100, &err), 0);

	REQUIRE_EQ(mq_batch_validate(b.buf, b.len, &h, &err), 0);
	CHECK_EQ_INT(h.base_offset, 0);
	CHECK_EQ_INT(h.length, b.len - 12);
	CHECK_EQ_INT(h.leader_epoch, -1);
	CHECK_EQ_INT(h.magic, 2);
	CHECK_EQ_INT(h.attributes, 0);
	CHECK_EQ_INT(h.last_offset_delta, 3);
	CHECK_EQ_INT(h.record_count, 4);
	CHECK_EQ_INT(h.base_timestamp, 5000);
	CHECK_EQ_INT(h.max_timestamp, 6000);
	CHECK_EQ_INT(h.producer_id, 42);
	CHECK_EQ_INT(h.producer_epoch, 7);
	CHECK_EQ_INT(h.base_sequence, 100);
	CHECK_EQ_INT(mq_batch_size(&h), b.len);
	CHECK_EQ_INT(mq_batch_last_offset(&h), 3);

	mq_batch_set_base_offset(b.buf, 1000);
	REQUIRE_EQ(mq_batch_iter_init(&it, b.buf, b.len, &err), 0);

	REQUIRE_EQ(mq_batch_iter_next(&it, &r, &err), 1);
	CHECK_EQ_INT(r.offset, 1000);
	CHECK_EQ_INT(r.timestamp, 5000);
	CHECK(r.key == NULL);
	CHECK_EQ_INT(r.key_len, -1);
	CHECK_EQ_INT(r.value_len, 5);
	CHECK(memcmp(r.value, "hello", 5) == 0);
	CHECK_EQ_INT(r.header_count, 0);
	pos = 0;
	CHECK_EQ_INT(mq_header_next(&r, &pos, &hd), 0);

	REQUIRE_EQ(mq_batch_iter_next(&it, &r, &err), 1);
	CHECK_EQ_INT(r.offset, 1001);
	CHECK_EQ_INT(r.timestamp, 4990);
	CHECK_EQ_INT(r.key_len, 2);
	CHECK(memcmp(r.key, "k1", 2) == 0);
	CHECK(r.value == NULL);
	CHECK_EQ_INT(r.value_len, -1);
	CHECK_EQ_INT(r.header_count, 3);
	pos = 0;
	REQUIRE_EQ(mq_header_next(&r, &pos, &hd), 1);
	CHECK_EQ_INT(hd.key_len, 5);
	CHECK(memcmp(hd.key, "trace", 5) == 0);
	CHECK_EQ_INT(hd.value_len, 3);
	CHECK(memcmp(hd.value, "abc", 3) == 0);
	REQUIRE_EQ(mq_header_next(&r, &pos, &hd), 1);
	CHECK(memcmp(hd.key, "nullv", 5) == 0);
	CHECK(hd.value == NULL);
	CHECK_EQ_INT(hd.value_len, -1);
	REQUIRE_EQ(mq_header_next(&r, &pos, &hd), 1);
	CHECK_EQ_INT(hd.key_len, 0);
	CHECK_EQ_INT(hd.value_len, 0);
	CHECK(hd.value != NULL);
	CHECK_EQ_INT(mq_header_next(&r, &pos, &hd), 0);

	REQUIRE_EQ(mq_batch_iter_next(&it, &r, &err), 1);
	CHECK_EQ_INT(r.offset, 1002);
	CHECK_EQ_INT(r.timestamp, 6000);
	CHECK_EQ_INT(r.key_len, 0);
	CHECK(r.key != NULL);
	CHECK_EQ_INT(r.value_len, 0);
	CHECK(r.value != NULL);

	REQUIRE_EQ(mq_batch_iter_next(&it, &r, &err), 1);
	CHECK_EQ_INT(r.offset, 1003);
	CHECK_EQ_INT(r.timestamp, 5500);
	CHECK_EQ_INT(r.key_len, 0);
	CHECK_EQ_INT(r.value_len, 0);
	CHECK_EQ_INT(r.header_count, 1);

	CHECK_EQ_INT(mq_batch_iter_next(&it, &r, &err), 0);
	CHECK_EQ_INT(mq_batch_iter_next(&it, &r, &err), 0);
	mq_bb_free(&b);
}

TEST(many_records)
{
	enum { N = 20000 };
	mq_batch_builder b;
	mq_batch_hdr h;
	mq_batch_iter it;
	mq_record r;
	mq_err err;
	int64_t maxts = INT64_MIN;
	int32_t i = 0;
	int rc;

	REQUIRE_EQ(mq_bb_init(&b, 0, &err), 0);
	for (int n = 0; n < N; n++) {
		char v[32];
		int vl = snprintf(v, sizeof v, "%d", n);
		/* Timestamps wander both ways around the first. */
		int64_t ts = 1700000000000LL + (int64_t)(rng() % 100000) -
			     50000;
		if (n == 0)
			ts = 1700000000000LL;
		if (ts > maxts)
			maxts = ts;
		size_t before = b.len;
		size_t want = mq_bb_record_size(n ? ts - b.base_timestamp : 0,
						n, -1, vl, NULL, 0);
		REQUIRE_EQ(mq_bb_add(&b, ts, NULL, -1, v, vl, NULL, 0, &err), 0);
		CHECK_EQ_INT(b.len - before, want);
	}
	REQUIRE_EQ(mq_bb_finish(&b, -1, -1, -1, &err), 0);
	REQUIRE_EQ(mq_batch_validate(b.buf, b.len, &h, &err), 0);
	CHECK_EQ_INT(h.record_count, N);
	CHECK_EQ_INT(h.last_offset_delta, N - 1);
	CHECK_EQ_INT(h.base_timestamp, 1700000000000LL);
	CHECK_EQ_INT(h.max_timestamp, maxts);
	REQUIRE_EQ(mq_batch_iter_init(&it, b.buf, b.len, &err), 0);
	while ((rc = mq_batch_iter_next(&it, &r, &err)) == 1) {
		char v[32];
		int vl = snprintf(v, sizeof v, "%d", i);
		CHECK_EQ_INT(r.offset, i);
		CHECK_EQ_INT(r.value_len, vl);
		CHECK(memcmp(r.value, v, (size_t)vl) == 0);
		if (harness_cur_failed)
			break;
		i++;
	}
	CHECK_EQ_INT(rc, 0);
	CHECK_EQ_INT(i, N);

	/* reset keeps the buffer and starts over */
	mq_bb_reset(&b);
	CHECK_EQ_INT(b.count, 0);
	CHECK_EQ_INT(mq_bb_finish(&b, -1, -1, -1, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_INVAL);
	REQUIRE_EQ(mq_bb_add(&b, 1, "a", 1, "b", 1, NULL, 0, &err), 0);
	REQUIRE_EQ(mq_bb_finish(&b, -1, -1, -1, &err), 0);
	REQUIRE_EQ(mq_batch_validate(b.buf, b.len, &h, &err), 0);
	CHECK_EQ_INT(h.record_count, 1);
	mq_bb_free(&b);
}

TEST(large_value)
{
	enum { SZ = 1 << 20 };
	mq_batch_builder b;
	mq_batch_iter it;
	mq_record r;
	mq_err err;
	uint8_t *v = malloc(SZ);

	REQUIRE(v);
	for (size_t i = 0; i < SZ; i++)
		v[i] = (uint8_t)rng();
	REQUIRE_EQ(mq_bb_init(&b, 0, &err), 0);
	REQUIRE_EQ(mq_bb_add(&b, 1, "big", 3, v, SZ, NULL, 0, &err), 0);
	REQUIRE_EQ(mq_bb_add(&b, 2, NULL, -1, "small", 5, NULL, 0, &err), 0);
	REQUIRE_EQ(mq_bb_finish(&b, -1, -1, -1, &err), 0);
	CHECK(b.len > SZ);
	CHECK_EQ_INT(validate_copy(b.buf, b.len), 0);
	REQUIRE_EQ(mq_batch_iter_init(&it, b.buf, b.len, &err), 0);
	REQUIRE_EQ(mq_batch_iter_next(&it, &r, &err), 1);
	CHECK_EQ_INT(r.value_len, SZ);
	CHECK(memcmp(r.value, v, SZ) == 0);
	REQUIRE_EQ(mq_batch_iter_next(&it, &r, &err), 1);
	CHECK_EQ_INT(r.value_len, 5);
	CHECK_EQ_INT(mq_batch_iter_next(&it, &r, &err), 0);
	mq_bb_free(&b);
	free(v);
}

/* A record that would pass max_bytes is refused and changes nothing. */
TEST(max_bytes_refusal)
{
	mq_batch_builder b;
	mq_batch_hdr h;
	mq_err err;
	static uint8_t val[1000];
	uint8_t *snap;
	size_t len;
	int32_t count;
	int added = 0;

	memset(val, 'x', sizeof val);
	REQUIRE_EQ(mq_bb_init(&b, 1000, &err), 0);
	for (;;) {
		if (mq_bb_add(&b, 10 + added, NULL, -1, val, 100, NULL, 0,
			      &err) < 0)
			break;
		added++;
		REQUIRE(added < 100);
	}
	CHECK_EQ_INT(err.code, MQ_E_TOO_LARGE);
	CHECK(added > 0);
	CHECK(b.len <= 1000);
	CHECK(b.cap <= 1000);
	len = b.len;
	count = b.count;
	snap = dup_bytes(b.buf, b.len);
	REQUIRE(snap);
	/* refused again, even a huge one and one just one byte too big */
	CHECK_EQ_INT(mq_bb_add(&b, 99, NULL, -1, val, 100000, NULL, 0, &err),
		     -1);
	CHECK_EQ_INT(err.code, MQ_E_TOO_LARGE);
	{
		size_t room = 1000 - b.len;
		/* a value that makes the record exactly one byte too big */
		int32_t vl = 0;
		while (mq_bb_record_size(0, b.count, -1, vl + 1, NULL, 0) <=
		       room + 1)
			vl++;
		if (mq_bb_record_size(0, b.count, -1, vl, NULL, 0) ==
		    room + 1) {
			CHECK_EQ_INT(mq_bb_add(&b, 10, NULL, -1, val, vl,
					       NULL, 0, &err), -1);
			CHECK_EQ_INT(err.code, MQ_E_TOO_LARGE);
		}
	}
	CHECK_EQ_INT(b.len, len);
	CHECK_EQ_INT(b.count, count);
	CHECK(memcmp(b.buf, snap, len) == 0);
	/* and what is there still makes a good batch */
	REQUIRE_EQ(mq_bb_finish(&b, -1, -1, -1, &err), 0);
	REQUIRE_EQ(mq_batch_validate(b.buf, b.len, &h, &err), 0);
	CHECK_EQ_INT(h.record_count, added);

	/* Filling exactly to the limit is allowed. */
	{
		size_t room;
		int32_t vl = 0;
		mq_bb_reset(&b);
		REQUIRE_EQ(mq_bb_add(&b, 1, NULL, -1, val, 10, NULL, 0, &err), 0);
		room = 1000 - b.len;
		while (mq_bb_record_size(0, 1, -1, vl + 1, NULL, 0) <= room)
			vl++;
		if (mq_bb_record_size(0, 1, -1, vl, NULL, 0) == room) {
			uint8_t *big = calloc(1, (size_t)vl + 1);
			REQUIRE(big);
			CHECK(mq_bb_add(&b, 1, NULL, -1, big, vl, NULL, 0,
					&err) == 0);
			CHECK_EQ_INT(b.len, 1000);
			free(big);
		}
		REQUIRE_EQ(mq_bb_finish(&b, -1, -1, -1, &err), 0);
		CHECK_EQ_INT(validate_copy(b.buf, b.len), 0);
	}
	free(snap);
	mq_bb_free(&b);
}

TEST(builder_arguments)
{
	mq_batch_builder b;
	mq_err err;
	mq_header bad_key = { NULL, -1, NULL, -1 };
	mq_header bad_val = { (const uint8_t *)"k", 1, NULL, -2 };

	CHECK_EQ_INT(mq_bb_init(&b, 10, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_INVAL);
	mq_bb_free(&b);
	REQUIRE_EQ(mq_bb_init(&b, 0, &err), 0);
	CHECK_EQ_INT(b.max_bytes, MQ_BATCH_MAX_BYTES);
	CHECK_EQ_INT(mq_bb_add(&b, 0, "k", -2, "v", 1, NULL, 0, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_INVAL);
	CHECK_EQ_INT(mq_bb_add(&b, 0, NULL, 3, "v", 1, NULL, 0, &err), -1);
	CHECK_EQ_INT(mq_bb_add(&b, 0, "k", 1, "v", -5, NULL, 0, &err), -1);
	CHECK_EQ_INT(mq_bb_add(&b, 0, "k", 1, "v", 1, NULL, 1, &err), -1);
	CHECK_EQ_INT(mq_bb_add(&b, 0, "k", 1, "v", 1, &bad_key, 1, &err), -1);
	CHECK_EQ_INT(mq_bb_add(&b, 0, "k", 1, "v", 1, &bad_val, 1, &err), -1);
	CHECK_EQ_INT(mq_bb_add(&b, 0, "k", 1, "v", 1, &bad_val, -1, &err), -1);
	CHECK_EQ_INT(b.count, 0);
	CHECK_EQ_INT(b.len, MQ_BATCH_HEADER_SIZE);
	/* a timestamp delta that would overflow int64 */
	REQUIRE_EQ(mq_bb_add(&b, INT64_MIN, NULL, -1, NULL, -1, NULL, 0, &err), 0);
	CHECK_EQ_INT(mq_bb_add(&b, INT64_MAX, NULL, -1, NULL, -1, NULL, 0,
			       &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_INVAL);
	CHECK_EQ_INT(b.count, 1);
	mq_bb_free(&b);
}

TEST(parse_header)
{
	mq_batch_builder b;
	mq_batch_hdr h;
	mq_err err;

	build_small(&b, 3);
	CHECK_EQ_INT(mq_batch_parse_header(b.buf, 60, &h, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_INVAL);
	REQUIRE_EQ(mq_batch_parse_header(b.buf, 61, &h, &err), 0);
	CHECK_EQ_INT(h.record_count, 3);
	CHECK_EQ_INT(mq_batch_size(&h), b.len);
	mq_bb_free(&b);
}

/* baseOffset, batchLength's neighbour the leader epoch: outside the CRC. */
TEST(set_base_offset_keeps_crc)
{
	mq_batch_builder b;
	mq_batch_hdr h;
	mq_err err;
	int64_t offs[] = { 1, 1234567, INT64_MAX - 100, 0 };

	build_small(&b, 5);
	for (size_t i = 0; i < 4; i++) {
		mq_batch_set_base_offset(b.buf, offs[i]);
		REQUIRE_EQ(mq_batch_validate(b.buf, b.len, &h, &err), 0);
		CHECK_EQ_INT(h.base_offset, offs[i]);
		CHECK_EQ_INT(mq_batch_last_offset(&h), offs[i] + 4);
	}
	mq_put32(b.buf + 12, 99);	/* leader epoch: not covered either */
	CHECK_EQ_INT(validate_copy(b.buf, b.len), 0);
	mq_bb_free(&b);
}

/* Flip each bit of every byte the CRC covers: always caught. */
TEST(flipped_bytes)
{
	mq_batch_builder b;
	uint8_t *q;
	int bad = 0;

	build_small(&b, 4);
	q = dup_bytes(b.buf, b.len);
	REQUIRE(q);
	for (size_t i = 0; i < b.len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			mq_err err = { 0 };
			int rc;
			q[i] ^= (uint8_t)(1 << bit);
			rc = mq_batch_validate(q, b.len, NULL, &err);
			q[i] ^= (uint8_t)(1 << bit);
			if (i < 8 || (i >= 12 && i < 16)) {
				/* baseOffset and leader epoch */
				if (rc != 0)
					bad++;
			} else if (rc != -1 || err.code != MQ_E_CORRUPT) {
				fprintf(stderr, "byte %zu bit %d: rc %d code "
					"%d\n", i, bit, rc, err.code);
				bad++;
			}
		}
	}
	CHECK_EQ_INT(bad, 0);
	free(q);
	mq_bb_free(&b);
}

TEST(wrong_magic)
{
	mq_batch_builder b;
	mq_batch_hdr h;
	mq_err err;
	uint8_t *q;

	build_small(&b, 2);
	q = dup_bytes(b.buf, b.len);
	REQUIRE(q);
	for (int m = 0; m < 256; m++) {
		if (m == 2)
			continue;
		q[16] = (uint8_t)m;
		CHECK_EQ_INT(mq_batch_validate(q, b.len, NULL, &err), -1);
		CHECK_EQ_INT(err.code, MQ_E_CORRUPT);
		CHECK_EQ_INT(mq_batch_parse_header(q, b.len, &h, &err), -1);
	}
	free(q);
	mq_bb_free(&b);
}

TEST(batch_length)
{
	mq_batch_builder b;
	mq_batch_hdr h;
	mq_err err;
	uint8_t *q;
	uint32_t good;
	const uint32_t lies[] = {
		0, 1, 48, 0x80000000u, 0xffffffffu, MQ_BATCH_MAX_BYTES,
		MQ_BATCH_MAX_BYTES - 11,
	};

	build_small(&b, 3);
	q = dup_bytes(b.buf, b.len);
	REQUIRE(q);
	good = mq_get32(q + 8);
	/* one more or one less than the bytes given */
	mq_put32(q + 8, good + 1);
	CHECK_EQ_INT(validate_copy(q, b.len), MQ_E_CORRUPT);
	mq_put32(q + 8, good - 1);
	CHECK_EQ_INT(validate_copy(q, b.len), MQ_E_CORRUPT);
	/* and consistent with the bytes given, but wrong for the records */
	mq_put32(q + 8, good - 1);
	CHECK_EQ_INT(validate_copy(q, b.len - 1), MQ_E_CORRUPT);
	for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
		mq_put32(q + 8, lies[i]);
		CHECK_EQ_INT(validate_copy(q, b.len), MQ_E_CORRUPT);
		CHECK_EQ_INT(mq_batch_parse_header(q, b.len, &h, &err), -1);
		CHECK_EQ_INT(err.code, MQ_E_CORRUPT);
	}
	/* the smallest and largest legal values parse */
	mq_put32(q + 8, 49);
	CHECK_EQ_INT(mq_batch_parse_header(q, b.len, &h, &err), 0);
	mq_put32(q + 8, MQ_BATCH_MAX_BYTES - 12);
	CHECK_EQ_INT(mq_batch_parse_header(q, b.len, &h, &err), 0);
	free(q);
	mq_bb_free(&b);
}

/* Truncated at every length: with the original batchLength, and with
 * batchLength and CRC fixed up to match so the records must catch it. */
TEST(truncated_everywhere)
{
	mq_batch_builder b;
	uint8_t *q;
	int bad = 0;

	build_small(&b, 4);
	for (size_t cut = 0; cut < b.len; cut++) {
		int32_t n;
		if (validate_copy(b.buf, cut) != MQ_E_CORRUPT)
			bad++;
		q = dup_bytes(b.buf, cut);
		REQUIRE(q);
		if (walk(q, cut, &n) != -1)
			bad++;
		if (cut >= MQ_BATCH_HEADER_SIZE) {
			mq_put32(q + 8, (uint32_t)(cut - 12));
			mq_batch_seal(q, cut);
			if (validate_copy(q, cut) != MQ_E_CORRUPT) {
				fprintf(stderr, "cut %zu accepted\n", cut);
				bad++;
			}
			if (walk(q, cut, &n) != -1)
				bad++;
		}
		free(q);
	}
	CHECK_EQ_INT(bad, 0);
	mq_bb_free(&b);
}

/* Re-encode a varint at p with a new value of the same encoded size. */
static void patch_varint(uint8_t *p, int64_t v)
{
	int64_t old;
	size_t n = mq_varint_get(p, MQ_VARINT_MAX, &old);

	if (n != mq_varint_size(v))
		abort();
	mq_varint_put(p, v);
}

TEST(record_length_lies)
{
	mq_batch_builder b;
	uint8_t *q;
	int64_t rlen;
	size_t n;

	build_small(&b, 3);
	q = dup_bytes(b.buf, b.len);
	REQUIRE(q);
	n = mq_varint_get(q + 61, 10, &rlen);
	REQUIRE(n == 1);
	for (int64_t d = -3; d <= 3; d++) {
		if (d == 0)
			continue;
		patch_varint(q + 61, rlen + d);
		mq_batch_seal(q, b.len);
		CHECK_EQ_INT(validate_copy(q, b.len), MQ_E_CORRUPT);
	}
	patch_varint(q + 61, -1);
	mq_batch_seal(q, b.len);
	CHECK_EQ_INT(validate_copy(q, b.len), MQ_E_CORRUPT);
	patch_varint(q + 61, rlen);
	mq_batch_seal(q, b.len);
	CHECK_EQ_INT(validate_copy(q, b.len), 0);
	free(q);
	mq_bb_free(&b);
}

TEST(record_count_lies)
{
	mq_batch_builder b;
	uint8_t *q;
	const int32_t lies[] = { 0, 1, 3, 5, 6, -1, INT32_MAX, INT32_MIN };

	build_small(&b, 4);
	q = dup_bytes(b.buf, b.len);
	REQUIRE(q);
	for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
		/* count alone, then count and lastOffsetDelta together */
		mq_put32(q + 57, (uint32_t)lies[i]);
		mq_batch_seal(q, b.len);
		CHECK_EQ_INT(validate_copy(q, b.len), MQ_E_CORRUPT);
		mq_put32(q + 23, (uint32_t)lies[i] - 1);
		mq_batch_seal(q, b.len);
		CHECK_EQ_INT(validate_copy(q, b.len), MQ_E_CORRUPT);
		mq_put32(q + 23, 3);
	}
	/* lastOffsetDelta alone */
	mq_put32(q + 57, 4);
	mq_put32(q + 23, 2);
	mq_batch_seal(q, b.len);
	CHECK_EQ_INT(validate_copy(q, b.len), MQ_E_CORRUPT);
	mq_put32(q + 23, 3);
	mq_batch_seal(q, b.len);
	CHECK_EQ_INT(validate_copy(q, b.len), 0);
	free(q);
	mq_bb_free(&b);
}

/* Hand-made one-record batches with one field wrong (CRC valid). */
static int one_record(const uint8_t *rec, size_t rlen)
{
	uint8_t buf[256];
	mq_batch_builder b;
	mq_err err;
	int rc;

	if (mq_bb_init(&b, 0, &err) < 0 ||
	    mq_bb_add(&b, 1, NULL, -1, NULL, -1, NULL, 0, &err) < 0 ||
	    mq_bb_finish(&b, -1, -1, -1, &err) < 0)
		abort();
	memcpy(buf, b.buf, 61);
	memcpy(buf + 61, rec, rlen);
	mq_put32(buf + 8, (uint32_t)(61 + rlen - 12));
	mq_batch_seal(buf, 61 + rlen);
	rc = validate_copy(buf, 61 + rlen);
	mq_bb_free(&b);
	return rc;
}

TEST(record_fields)
{
	/* length, attributes, tsDelta, offsetDelta, key, value, headers */
	static const uint8_t ok[] = { 0x0c, 0, 0, 0, 0x01, 0x01, 0x00 };
	static const uint8_t ok_hdr[] = { 0x12, 0, 0, 0, 0x01, 0x01, 0x02,
					  0x02, 'a', 0x01 };
	static const uint8_t key_m2[] = { 0x0c, 0, 0, 0, 0x03, 0x01, 0x00 };
	static const uint8_t val_m2[] = { 0x0c, 0, 0, 0, 0x01, 0x03, 0x00 };
	static const uint8_t key_long[] = { 0x0c, 0, 0, 0, 0x04, 0x01, 0x00 };
	static const uint8_t hc_neg[] = { 0x0c, 0, 0, 0, 0x01, 0x01, 0x01 };
	static const uint8_t hc_big[] = { 0x0c, 0, 0, 0, 0x01, 0x01, 0x7e };
	static const uint8_t hkey_null[] = { 0x10, 0, 0, 0, 0x01, 0x01, 0x02,
					     0x01, 0x01 };
	static const uint8_t offd_1[] = { 0x0c, 0, 0, 0x02, 0x01, 0x01, 0x00 };
	static const uint8_t trail[] = { 0x0e, 0, 0, 0, 0x01, 0x01, 0x00,
					 0x00 };
	/* a timestampDelta running to the end of the record */
	static const uint8_t ts_trunc[] = { 0x0c, 0, 0x80, 0x80, 0x80, 0x80,
					    0x80 };
	/* ten-byte timestampDeltas: INT64_MIN, then one too wide */
	static const uint8_t ts10[] = { 0x1e, 0, 0xff, 0xff, 0xff, 0xff, 0xff,
					0xff, 0xff, 0xff, 0xff, 0x01,
					0, 0x01, 0x01, 0x00 };
	static const uint8_t ts_over[] = { 0x1e, 0, 0xff, 0xff, 0xff, 0xff,
					   0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
					   0, 0x01, 0x01, 0x00 };

	CHECK_EQ_INT(one_record(ok, sizeof ok), 0);
	CHECK_EQ_INT(one_record(ok_hdr, sizeof ok_hdr), 0);
	CHECK_EQ_INT(one_record(key_m2, sizeof key_m2), MQ_E_CORRUPT);
	CHECK_EQ_INT(one_record(val_m2, sizeof val_m2), MQ_E_CORRUPT);
	CHECK_EQ_INT(one_record(key_long, sizeof key_long), MQ_E_CORRUPT);
	CHECK_EQ_INT(one_record(hc_neg, sizeof hc_neg), MQ_E_CORRUPT);
	CHECK_EQ_INT(one_record(hc_big, sizeof hc_big), MQ_E_CORRUPT);
	CHECK_EQ_INT(one_record(hkey_null, sizeof hkey_null), MQ_E_CORRUPT);
	CHECK_EQ_INT(one_record(offd_1, sizeof offd_1), MQ_E_CORRUPT);
	CHECK_EQ_INT(one_record(trail, sizeof trail), MQ_E_CORRUPT);
	CHECK_EQ_INT(one_record(ts_trunc, sizeof ts_trunc), MQ_E_CORRUPT);
	CHECK_EQ_INT(one_record(ts10, sizeof ts10), 0);
	CHECK_EQ_INT(one_record(ts_over, sizeof ts_over), MQ_E_CORRUPT);
}

/* Offset deltas must run 0, 1, 2, ...: swap the second record's delta. */
TEST(offset_delta_order)
{
	mq_batch_builder b;
	mq_err err;
	uint8_t *q;
	int64_t rlen, od;
	size_t n, second;

	REQUIRE_EQ(mq_bb_init(&b, 0, &err), 0);
	for (int i = 0; i < 3; i++)
		REQUIRE_EQ(mq_bb_add(&b, 1, NULL, -1, "v", 1, NULL, 0, &err), 0);
	REQUIRE_EQ(mq_bb_finish(&b, -1, -1, -1, &err), 0);
	q = dup_bytes(b.buf, b.len);
	REQUIRE(q);
	n = mq_varint_get(q + 61, 10, &rlen);
	second = 61 + n + (size_t)rlen;
	/* length, attributes, timestampDelta (one byte each), offsetDelta */
	REQUIRE_EQ(mq_varint_get(q + second + 3, 10, &od), 1);
	CHECK_EQ_INT(od, 1);
	patch_varint(q + second + 3, 0);
	mq_batch_seal(q, b.len);
	CHECK_EQ_INT(validate_copy(q, b.len), MQ_E_CORRUPT);
	patch_varint(q + second + 3, 2);
	mq_batch_seal(q, b.len);
	CHECK_EQ_INT(validate_copy(q, b.len), MQ_E_CORRUPT);
	patch_varint(q + second + 3, 1);
	mq_batch_seal(q, b.len);
	CHECK_EQ_INT(validate_copy(q, b.len), 0);
	free(q);
	mq_bb_free(&b);
}

TEST(unsupported_attributes)
{
	mq_batch_builder b;
	mq_batch_iter it;
	mq_err err;
	uint8_t *q;
	const uint16_t attrs[] = { 1, 2, 3, 4, 0x10, 0x20, 0x40, 0x8000 };

	build_small(&b, 2);
	q = dup_bytes(b.buf, b.len);
	REQUIRE(q);
	for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
		mq_put16(q + 21, attrs[i]);
		mq_batch_seal(q, b.len);
		CHECK_EQ_INT(validate_copy(q, b.len), MQ_E_UNSUPPORTED);
		CHECK_EQ_INT(mq_batch_iter_init(&it, q, b.len, &err), -1);
		CHECK_EQ_INT(err.code, MQ_E_UNSUPPORTED);
	}
	/* LogAppendTime (bit 3) is fine */
	mq_put16(q + 21, 0x08);
	mq_batch_seal(q, b.len);
	CHECK_EQ_INT(validate_copy(q, b.len), 0);
	free(q);
	mq_bb_free(&b);
}

/*
 * Random damage with the CRC fixed up, so the structural checks are what
 * must hold: validate may accept or refuse, but never reads out of
 * bounds, and whatever it accepts the iterators walk cleanly.
 */
TEST(fuzz_resealed)
{
	mq_batch_builder b;
	mq_batch_hdr h;
	mq_err err;
	int bad = 0;

	build_small(&b, 6);
	for (int iter = 0; iter < 20000; iter++) {
		size_t len = b.len;
		uint8_t *q = dup_bytes(b.buf, len);
		int flips = 1 + (int)(rng() % 3);
		int32_t n;
		REQUIRE(q);
		for (int f = 0; f < flips; f++)
			q[MQ_BATCH_HEADER_SIZE +
			  rng() % (len - MQ_BATCH_HEADER_SIZE)] = (uint8_t)rng();
		mq_batch_seal(q, len);
		if (mq_batch_validate(q, len, &h, &err) == 0) {
			if (walk(q, len, &n) != 0 || n != h.record_count)
				bad++;
		} else {
			(void)walk(q, len, &n);
		}
		free(q);
	}
	CHECK_EQ_INT(bad, 0);
	mq_bb_free(&b);
}

TEST(record_sizes_checked)
{
	mq_batch_builder b;
	mq_header h = { (const uint8_t *)"hk", 2, (const uint8_t *)"hv", 2 };
	mq_err err;

	REQUIRE_EQ(mq_bb_init(&b, 0, &err), 0);
	/* Key 3 + value 5 + header 6 (as encoded: two lengths, key and
	 * value) = 14 bytes in record 1. */
	REQUIRE_EQ(mq_bb_add(&b, 1, NULL, -1, "a", 1, NULL, 0, &err), 0);
	REQUIRE_EQ(mq_bb_add(&b, 1, "key", 3, "value", 5, &h, 1, &err), 0);
	REQUIRE_EQ(mq_bb_finish(&b, -1, -1, -1, &err), 0);
	CHECK_EQ_INT(mq_batch_check_sizes(b.buf, b.len, 14, NULL, &err), 0);
	CHECK_EQ_INT(mq_batch_check_sizes(b.buf, b.len, 13, "--opt", &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_TOO_LARGE);
	CHECK(strstr(err.msg, "record 1 of the batch is 14 bytes") != NULL);
	CHECK(strstr(err.msg, "limit is 13 (--opt)") != NULL);
	mq_bb_free(&b);
}

int main(void)
{
	RUN(exact_layout);
	RUN(round_trip);
	RUN(many_records);
	RUN(large_value);
	RUN(max_bytes_refusal);
	RUN(builder_arguments);
	RUN(parse_header);
	RUN(set_base_offset_keeps_crc);
	RUN(flipped_bytes);
	RUN(wrong_magic);
	RUN(batch_length);
	RUN(truncated_everywhere);
	RUN(record_length_lies);
	RUN(record_count_lies);
	RUN(record_fields);
	RUN(offset_delta_order);
	RUN(unsupported_attributes);
	RUN(fuzz_resealed);
	RUN(record_sizes_checked);
	return harness_done();
}
