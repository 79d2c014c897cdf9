/* t_varint.c - zig-zag LEB128 varints: edge values, encodings, rejects. */
#include "harness.h"
#include "batch.h"

#include <limits.h>

/* Encode, check the size, decode, compare. */
static void round_trip(int64_t v)
{
	uint8_t buf[MQ_VARINT_MAX + 4];
	int64_t got = ~v;
	size_t n = mq_varint_put(buf, v);

	CHECK(n >= 1 && n <= MQ_VARINT_MAX);
	CHECK_EQ_INT(n, mq_varint_size(v));
	CHECK_EQ_INT(mq_varint_get(buf, n, &got), n);
	CHECK(got == v);
	/* Extra bytes after it are not consumed. */
	buf[n] = 0x7f;
	CHECK_EQ_INT(mq_varint_get(buf, n + 1, &got), n);
	/* Every shorter prefix is truncated. */
	for (size_t k = 0; k < n; k++)
		CHECK_EQ_INT(mq_varint_get(buf, k, &got), 0);
	if (harness_cur_failed)
		fprintf(stderr, "value %" PRId64 "\n", v);
}

TEST(edge_values)
{
	const int64_t vals[] = {
		0, 1, -1, 2, -2, 63, 64, -64, -65, 127, 128, -128,
		8191, 8192, -8192, -8193,
		INT32_MAX, INT32_MIN, (int64_t)INT32_MAX + 1,
		(int64_t)INT32_MIN - 1, INT64_MAX, INT64_MIN,
		INT64_MAX - 1, INT64_MIN + 1,
	};
	for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
		round_trip(vals[i]);
	for (int s = 0; s < 63; s++) {
		round_trip((int64_t)1 << s);
		round_trip(-((int64_t)1 << s));
		round_trip(((int64_t)1 << s) - 1);
		round_trip(-((int64_t)1 << s) - 1);
	}
}

/* The exact bytes, as Kafka and protobuf sint64 write them. */
TEST(encodings)
{
	uint8_t buf[MQ_VARINT_MAX];

	CHECK_EQ_INT(mq_varint_put(buf, 0), 1);
	CHECK_EQ_INT(buf[0], 0x00);
	CHECK_EQ_INT(mq_varint_put(buf, -1), 1);
	CHECK_EQ_INT(buf[0], 0x01);
	CHECK_EQ_INT(mq_varint_put(buf, 1), 1);
	CHECK_EQ_INT(buf[0], 0x02);
	CHECK_EQ_INT(mq_varint_put(buf, 63), 1);
	CHECK_EQ_INT(buf[0], 0x7e);
	CHECK_EQ_INT(mq_varint_put(buf, -64), 1);
	CHECK_EQ_INT(buf[0], 0x7f);
	CHECK_EQ_INT(mq_varint_put(buf, 64), 2);
	CHECK_EQ_INT(buf[0], 0x80);
	CHECK_EQ_INT(buf[1], 0x01);
	CHECK_EQ_INT(mq_varint_put(buf, -65), 2);
	CHECK_EQ_INT(buf[0], 0x81);
	CHECK_EQ_INT(buf[1], 0x01);
	CHECK_EQ_INT(mq_varint_put(buf, 150), 2);
	CHECK_EQ_INT(buf[0], 0xac);
	CHECK_EQ_INT(buf[1], 0x02);
	CHECK_EQ_INT(mq_varint_size(INT32_MAX), 5);
	CHECK_EQ_INT(mq_varint_size(INT32_MIN), 5);
	CHECK_EQ_INT(mq_varint_size(INT64_MAX), 10);
	CHECK_EQ_INT(mq_varint_size(INT64_MIN), 10);
	CHECK_EQ_INT(mq_varint_put(buf, INT64_MIN), 10);
	for (int i = 0; i < 9; i++)
		CHECK_EQ_INT(buf[i], 0xff);
	CHECK_EQ_INT(buf[9], 0x01);
}

TEST(rejects_malformed)
{
	uint8_t buf[16];
	int64_t v;
	int32_t v32;

	/* Truncated: continuation bit on the last available byte. */
	buf[0] = 0x80;
	CHECK_EQ_INT(mq_varint_get(buf, 1, &v), 0);
	CHECK_EQ_INT(mq_varint_get(buf, 0, &v), 0);
	CHECK_EQ_INT(mq_varint_get32(buf, 1, &v32), 0);
	/* Eleven bytes: ten with continuation bits, then a terminator. */
	memset(buf, 0x80, 10);
	buf[10] = 0x00;
	CHECK_EQ_INT(mq_varint_get(buf, 11, &v), 0);
	/* Ten bytes whose last carries more than bit 63. */
	memset(buf, 0xff, 9);
	buf[9] = 0x02;
	CHECK_EQ_INT(mq_varint_get(buf, 10, &v), 0);
	buf[9] = 0x01;
	CHECK_EQ_INT(mq_varint_get(buf, 10, &v), 10);
	CHECK(v == INT64_MIN);
	/* A padded (non-minimal) encoding of a small value still decodes. */
	buf[0] = 0x82;
	buf[1] = 0x80;
	buf[2] = 0x00;
	CHECK_EQ_INT(mq_varint_get(buf, 3, &v), 3);
	CHECK_EQ_INT(v, 1);
}

TEST(get32_range)
{
	uint8_t buf[MQ_VARINT_MAX];
	int32_t v = 0;
	size_t n;

	n = mq_varint_put(buf, INT32_MAX);
	CHECK_EQ_INT(mq_varint_get32(buf, n, &v), n);
	CHECK_EQ_INT(v, INT32_MAX);
	n = mq_varint_put(buf, INT32_MIN);
	CHECK_EQ_INT(mq_varint_get32(buf, n, &v), n);
	CHECK_EQ_INT(v, INT32_MIN);
	n = mq_varint_put(buf, -1);
	CHECK_EQ_INT(mq_varint_get32(buf, n, &v), n);
	CHECK_EQ_INT(v, -1);
	v = 7;
	n = mq_varint_put(buf, (int64_t)INT32_MAX + 1);
	CHECK_EQ_INT(mq_varint_get32(buf, n, &v), 0);
	n = mq_varint_put(buf, (int64_t)INT32_MIN - 1);
	CHECK_EQ_INT(mq_varint_get32(buf, n, &v), 0);
	n = mq_varint_put(buf, INT64_MAX);
	CHECK_EQ_INT(mq_varint_get32(buf, n, &v), 0);
	CHECK_EQ_INT(v, 7);	/* untouched on failure */
}

int main(void)
{
	RUN(edge_values);
	RUN(encodings);
	RUN(rejects_malformed);
	RUN(get32_range);
	return harness_done();
}
