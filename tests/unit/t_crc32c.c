/* t_crc32c.c - CRC-32C: known answers, both paths agree, continuation. */
#include "harness.h"
#include "batch.h"

static const char check_str[] = "123456789";
#define CHECK_VALUE 0xE3069283u

/* A small deterministic generator, so a failure can be reproduced. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

TEST(known_answer_sw)
{
	CHECK_EQ_INT(mq_crc32c_sw(0, check_str, 9), CHECK_VALUE);
	CHECK_EQ_INT(mq_crc32c_sw(0, "", 0), 0);
	CHECK_EQ_INT(mq_crc32c_sw(0x12345678, "", 0), 0x12345678);
}

TEST(known_answer_hw)
{
	if (!mq_crc32c_hw_available()) {
		fprintf(stderr, "no SSE4.2: hardware path not checked\n");
		return;
	}
	CHECK_EQ_INT(mq_crc32c_hw(0, check_str, 9), CHECK_VALUE);
	CHECK_EQ_INT(mq_crc32c_hw(0, "", 0), 0);
}

TEST(known_answer_dispatch)
{
	CHECK_EQ_INT(mq_crc32c(0, check_str, 9), CHECK_VALUE);
}

/* Other published values: 32 zero bytes, 32 0xff bytes, 0..31. */
TEST(known_answer_blocks)
{
	uint8_t buf[32];

	memset(buf, 0, sizeof buf);
	CHECK_EQ_INT(mq_crc32c_sw(0, buf, 32), 0x8A9136AAu);
	CHECK_EQ_INT(mq_crc32c(0, buf, 32), 0x8A9136AAu);
	memset(buf, 0xff, sizeof buf);
	CHECK_EQ_INT(mq_crc32c_sw(0, buf, 32), 0x62A8AB43u);
	CHECK_EQ_INT(mq_crc32c(0, buf, 32), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	CHECK_EQ_INT(mq_crc32c_sw(0, buf, 32), 0x46DD794Eu);
	CHECK_EQ_INT(mq_crc32c(0, buf, 32), 0x46DD794Eu);
}

/* Bit-at-a-time reference, independent of the tables. */
static uint32_t crc_bitwise(uint32_t crc, const uint8_t *p, size_t len)
{
	uint32_t c = ~crc;

	while (len--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
	}
	return ~c;
}

/* Lengths around the block sizes of the hardware path (3 x 256 and
 * 3 x 4096 bytes), at every alignment, then random ones. */
TEST(hw_equals_sw_random)
{
	enum { MAX = 65536 + 64 };
	static const size_t edges[] = {
		7, 8, 9, 767, 768, 769, 1535, 1536, 1537, 12287, 12288, 12289,
		12288 + 768, 24576 + 767, 65536,
	};
	uint8_t *buf = malloc(MAX);
	bool hw = mq_crc32c_hw_available();

	REQUIRE(buf);
	for (size_t i = 0; i < MAX; i++)
		buf[i] = (uint8_t)rng();
	for (int iter = 0; iter < 3000; iter++) {
		size_t off, len;
		uint32_t seed = iter % 3 == 0 ? 0 : (uint32_t)rng();
		uint32_t sw;

		if (iter < 100) {
			off = rng() % 64;
			len = (size_t)iter;
		} else if (iter < 100 + 8 * 15) {
			off = (size_t)(iter - 100) % 8;
			len = edges[(iter - 100) / 8];
		} else {
			off = rng() % 64;
			len = rng() % (iter % 2 ? 4096 : MAX - 64);
		}
		sw = mq_crc32c_sw(seed, buf + off, len);
		if (len <= 4096)
			CHECK_EQ_INT(sw, crc_bitwise(seed, buf + off, len));
		if (hw)
			CHECK_EQ_INT(mq_crc32c_hw(seed, buf + off, len), sw);
		CHECK_EQ_INT(mq_crc32c(seed, buf + off, len), sw);
		if (harness_cur_failed) {
			fprintf(stderr, "off %zu len %zu seed %08x\n", off,
				len, seed);
			break;
		}
	}
	free(buf);
}

TEST(continuation)
{
	enum { N = 30000 };
	static uint8_t buf[N];
	uint32_t whole, whole_sw;

	for (size_t i = 0; i < N; i++)
		buf[i] = (uint8_t)rng();
	whole = mq_crc32c(0, buf, N);
	whole_sw = mq_crc32c_sw(0, buf, N);
	CHECK_EQ_INT(whole, whole_sw);
	for (size_t cut = 0; cut <= N; cut += 997) {
		CHECK_EQ_INT(mq_crc32c(mq_crc32c(0, buf, cut), buf + cut,
				       N - cut), whole);
		CHECK_EQ_INT(mq_crc32c_sw(mq_crc32c_sw(0, buf, cut),
					  buf + cut, N - cut), whole);
		if (mq_crc32c_hw_available())
			CHECK_EQ_INT(mq_crc32c_hw(mq_crc32c_sw(0, buf, cut),
						  buf + cut, N - cut), whole);
	}
	/* The check string in pieces. */
	CHECK_EQ_INT(mq_crc32c(mq_crc32c(0, "1234", 4), "56789", 5),
		     CHECK_VALUE);
}

int main(void)
{
	RUN(known_answer_sw);
	RUN(known_answer_hw);
	RUN(known_answer_dispatch);
	RUN(known_answer_blocks);
	RUN(hw_equals_sw_random);
	RUN(continuation);
	return harness_done();
}
