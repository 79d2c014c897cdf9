/*
 * crc32c.c - CRC-32C (Castagnoli), the checksum of Kafka v2 record batches.
 *
 * Two implementations with one contract: the crc passed in and returned is
 * the finished (inverted) value, so mq_crc32c(mq_crc32c(0, a), b) equals
 * the CRC of a followed by b, and mq_crc32c(0, "123456789", 9) is
 * 0xE3069283.
 *
 *   mq_crc32c_sw  portable slicing-by-8: eight 256-entry tables let the
 *                 loop fold eight input bytes per step instead of one.
 *   mq_crc32c_hw  the SSE4.2 crc32 instruction (x86-64 only), three
 *                 chains at a time, compiled for that target alone so
 *                 the rest of the library still runs on CPUs without it.
 *
 * mq_crc32c picks one the first time it runs and remembers the choice.
 */
#include "batch.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

/* The reflected form of the Castagnoli polynomial 0x1EDC6F41. */
#define CRC32C_POLY 0x82F63B78u

static uint32_t crc_table[8][256];
static pthread_once_t crc_table_once = PTHREAD_ONCE_INIT;

/*
 * crc_table[0] is the classic byte-at-a-time table. crc_table[k][b] is the
 * CRC contribution of byte b followed by k zero bytes, which is what lets
 * the slicing loop look up the eight bytes of a word independently.
 */
static void crc_table_init(void)
{
	for (uint32_t b = 0; b < 256; b++) {
		uint32_t c = b;
		for (int i = 0; i < 8; i++)
			c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1)));
		crc_table[0][b] = c;
	}
	for (uint32_t b = 0; b < 256; b++) {
		uint32_t c = crc_table[0][b];
		for (int k = 1; k < 8; k++) {
			c = (c >> 8) ^ crc_table[0][c & 0xff];
			crc_table[k][b] = c;
		}
	}
}

/* Eight bytes as a little-endian integer, whatever the host order. */
static inline uint64_t load_le64(const uint8_t *p)
{
	uint64_t w;

	memcpy(&w, p, sizeof w);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	w = __builtin_bswap64(w);
#endif
	return w;
}

uint32_t mq_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~crc;

	pthread_once(&crc_table_once, crc_table_init);
	while (len >= 8) {
		uint64_t w = load_le64(p) ^ c;
		c = crc_table[7][w & 0xff] ^
		    crc_table[6][(w >> 8) & 0xff] ^
		    crc_table[5][(w >> 16) & 0xff] ^
		    crc_table[4][(w >> 24) & 0xff] ^
		    crc_table[3][(w >> 32) & 0xff] ^
		    crc_table[2][(w >> 40) & 0xff] ^
		    crc_table[1][(w >> 48) & 0xff] ^
		    crc_table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
	return ~c;
}

#if defined(__x86_64__)

/*
 * The crc32 instruction takes three cycles to produce its result but can
 * start a new one every cycle, so one dependent chain runs at a third of
 * the possible speed. The hardware path therefore cuts long input into
 * three equal blocks, runs one chain over each at once, and joins them.
 *
 * Joining works because the CRC register is linear: the state after a
 * block B, started from state s, is Z(s) ^ R(B), where R(B) is the state
 * after B started from zero and Z(s) is the state after |B| zero bytes
 * started from s. Z is a linear map of 32 bits for a fixed |B|, so it is
 * tabulated once per block size as four 256-entry tables (one per byte of
 * s), built from Z of the 32 single-bit states.
 */
#define HW_LONG 4096	/* bytes per chain, big blocks */
#define HW_SHORT 256	/* bytes per chain, the rest */

static uint32_t zeros_long[4][256], zeros_short[4][256];
static pthread_once_t zeros_once = PTHREAD_ONCE_INIT;

/* State after n zero bytes (n a multiple of 8) from state c. */
__attribute__((target("sse4.2")))
static uint32_t hw_zeros(uint32_t c, size_t n)
{
	uint64_t s = c;

	for (size_t i = 0; i < n; i += 8)
		s = _mm_crc32_u64(s, 0);
	return (uint32_t)s;
}

static void zeros_table(uint32_t t[4][256], size_t n)
{
	uint32_t bit[32];

	for (int i = 0; i < 32; i++)
		bit[i] = hw_zeros(1u << i, n);
	for (int k = 0; k < 4; k++) {
		for (uint32_t b = 0; b < 256; b++) {
			uint32_t z = 0;
			for (int j = 0; j < 8; j++)
				if (b & (1u << j))
					z ^= bit[8 * k + j];
			t[k][b] = z;
		}
	}
}

static void zeros_init(void)
{
	zeros_table(zeros_long, HW_LONG);
	zeros_table(zeros_short, HW_SHORT);
}

static inline uint32_t shift(const uint32_t t[4][256], uint32_t c)
{
	return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^
	       t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
}

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t w;

	memcpy(&w, p, sizeof w);
	return w;
}

/* Three chains of block bytes each over p[0, 3 * block), joined. */
__attribute__((target("sse4.2")))
static inline uint32_t hw_three(uint32_t c, const uint8_t *p, size_t block,
				const uint32_t t[4][256])
{
	uint64_t c0 = c, c1 = 0, c2 = 0;

	for (size_t i = 0; i < block; i += 8) {
		c0 = _mm_crc32_u64(c0, load64(p + i));
		c1 = _mm_crc32_u64(c1, load64(p + block + i));
		c2 = _mm_crc32_u64(c2, load64(p + 2 * block + i));
	}
	c = shift(t, (uint32_t)c0) ^ (uint32_t)c1;
	return shift(t, c) ^ (uint32_t)c2;
}

__attribute__((target("sse4.2")))
uint32_t mq_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~crc;

	/* Bytes up to an 8-byte boundary, then blocks of three chains,
	 * then whole words, then the tail. */
	while (len > 0 && ((uintptr_t)p & 7) != 0) {
		c = _mm_crc32_u8(c, *p++);
		len--;
	}
	if (len >= 3 * HW_SHORT) {
		pthread_once(&zeros_once, zeros_init);
		while (len >= 3 * HW_LONG) {
			c = hw_three(c, p, HW_LONG, zeros_long);
			p += 3 * HW_LONG;
			len -= 3 * HW_LONG;
		}
		while (len >= 3 * HW_SHORT) {
			c = hw_three(c, p, HW_SHORT, zeros_short);
			p += 3 * HW_SHORT;
			len -= 3 * HW_SHORT;
		}
	}
	while (len >= 8) {
		c = (uint32_t)_mm_crc32_u64(c, load64(p));
		p += 8;
		len -= 8;
	}
	while (len--)
		c = _mm_crc32_u8(c, *p++);
	return ~c;
}

bool mq_crc32c_hw_available(void)
{
	/* 0 = not checked yet, 1 = no, 2 = yes. Racing first calls all
	 * store the same answer. */
	static int state;
	int s = __atomic_load_n(&state, __ATOMIC_RELAXED);

	if (s == 0) {
		__builtin_cpu_init();
		s = __builtin_cpu_supports("sse4.2") ? 2 : 1;
		__atomic_store_n(&state, s, __ATOMIC_RELAXED);
	}
	return s == 2;
}

#else

/* No hardware path on this architecture: the portable one stands in, so
 * a caller that ignores mq_crc32c_hw_available() still gets the right
 * answer. */
uint32_t mq_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	return mq_crc32c_sw(crc, buf, len);
}

bool mq_crc32c_hw_available(void)
{
	return false;
}

#endif

uint32_t mq_crc32c(uint32_t crc, const void *buf, size_t len)
{
	if (mq_crc32c_hw_available())
		return mq_crc32c_hw(crc, buf, len);
	return mq_crc32c_sw(crc, buf, len);
}
