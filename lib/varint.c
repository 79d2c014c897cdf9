/*
 * varint.c - zig-zag LEB128 varints, as Kafka records (and protobuf's
 * sint32/sint64) use them.
 *
 * Zig-zag maps signed to unsigned so small magnitudes stay short:
 * 0 -> 0, -1 -> 1, 1 -> 2, -2 -> 3, ... The result is written seven bits
 * per byte, least significant group first, the high bit of each byte
 * saying "more follows". A 64-bit value needs at most ten bytes, and the
 * tenth can only carry the single remaining bit.
 */
#include "batch.h"

static inline uint64_t zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t unzigzag(uint64_t u)
{
	return (int64_t)((u >> 1) ^ (0 - (u & 1)));
}

size_t mq_varint_put(uint8_t *p, int64_t v)
{
	uint64_t u = zigzag(v);
	size_t n = 0;

	while (u >= 0x80) {
		p[n++] = (uint8_t)(u | 0x80);
		u >>= 7;
	}
	p[n++] = (uint8_t)u;
	return n;
}

size_t mq_varint_size(int64_t v)
{
	uint64_t u = zigzag(v);
	size_t n = 1;

	while (u >= 0x80) {
		u >>= 7;
		n++;
	}
	return n;
}

size_t mq_varint_get(const uint8_t *p, size_t avail, int64_t *v)
{
	uint64_t u = 0;
	size_t max = avail < MQ_VARINT_MAX ? avail : MQ_VARINT_MAX;

	for (size_t i = 0; i < max; i++) {
		uint8_t b = p[i];
		/* The tenth byte holds bit 63 only: anything more would
		 * not fit in 64 bits. */
		if (i == MQ_VARINT_MAX - 1 && b > 1)
			return 0;
		u |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*v = unzigzag(u);
			return i + 1;
		}
	}
	return 0;	/* truncated, or a continuation bit on the tenth byte */
}

size_t mq_varint_get32(const uint8_t *p, size_t avail, int32_t *v)
{
	int64_t w;
	size_t n = mq_varint_get(p, avail, &w);

	if (n == 0 || w < INT32_MIN || w > INT32_MAX)
		return 0;
	*v = (int32_t)w;
	return n;
}
