/* t_pseq.c - the idempotent producer's rule, shared by the broker and
 * direct writers: retries, new numbers, gaps, old numbers, wraparound. */
#include "harness.h"
#include "pseq.h"

#include <limits.h>

/* A batch of n records from producer 7 starting at sequence seq. */
static mq_batch_hdr batch(int32_t seq, int32_t n)
{
	mq_batch_hdr h = { 0 };

	h.producer_id = 7;
	h.base_sequence = seq;
	h.last_offset_delta = n - 1;
	h.record_count = n;
	return h;
}

TEST(first_batch_is_new_whatever_its_number)
{
	mq_pseq s = { 0 };
	mq_batch_hdr h = batch(41, 1);
	int64_t base = -1, last = -1;

	CHECK_EQ_INT(mq_pseq_check(NULL, &h, 0, &base, &last), MQ_SEQ_NEW);
	CHECK_EQ_INT(mq_pseq_check(&s, &h, 0, &base, &last), MQ_SEQ_NEW);
	/* No producer id or no sequence: never judged. */
	mq_pseq_record(&s, &h, 0);
	h.producer_id = -1;
	CHECK_EQ_INT(mq_pseq_check(&s, &h, 1, &base, &last), MQ_SEQ_NEW);
	h = batch(-1, 1);
	CHECK_EQ_INT(mq_pseq_check(&s, &h, 1, &base, &last), MQ_SEQ_NEW);
}

TEST(retry_answered_with_original_offsets)
{
	mq_pseq s = { 0 };
	mq_batch_hdr a = batch(0, 3), b = batch(3, 2), c = batch(5, 1);
	int64_t base = -1, last = -1;

	mq_pseq_record(&s, &a, 100);     /* offsets 100..102 */
	mq_pseq_record(&s, &b, 103);     /* 103..104 */
	CHECK_EQ_INT(mq_pseq_check(&s, &a, 105, &base, &last),
		     MQ_SEQ_DUPLICATE);
	CHECK_EQ_INT(base, 100);
	CHECK_EQ_INT(last, 102);
	CHECK_EQ_INT(mq_pseq_check(&s, &b, 105, &base, &last),
		     MQ_SEQ_DUPLICATE);
	CHECK_EQ_INT(base, 103);
	CHECK_EQ_INT(last, 104);
	CHECK_EQ_INT(mq_pseq_check(&s, &c, 105, &base, &last), MQ_SEQ_NEW);
	/* A batch cut from the log (a torn tail) is no longer appended:
	 * with the log ending at 103, b must be written again. */
	CHECK_EQ_INT(mq_pseq_check(&s, &b, 103, &base, &last), MQ_SEQ_OLD);
}

TEST(gaps_and_forgotten_numbers_are_refused)
{
	mq_pseq s = { 0 };
	mq_batch_hdr h;
	int64_t base, last;
	mq_err err;

	for (int i = 0; i < MQ_PSEQ_BATCHES + 2; i++) {
		h = batch(i, 1);
		mq_pseq_record(&s, &h, i);
	}
	h = batch(MQ_PSEQ_BATCHES + 3, 1);       /* one number skipped */
	CHECK_EQ_INT(mq_pseq_check(&s, &h, 100, &base, &last), MQ_SEQ_GAP);
	CHECK_EQ_INT(mq_pseq_refuse(MQ_SEQ_GAP, &h, "t", 2, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_SEQUENCE);
	CHECK(strstr(err.msg, "t/2") && strstr(err.msg, "expected the next"));
	h = batch(0, 1);                          /* older than the ring */
	CHECK_EQ_INT(mq_pseq_check(&s, &h, 100, &base, &last), MQ_SEQ_OLD);
	CHECK_EQ_INT(mq_pseq_refuse(MQ_SEQ_OLD, &h, "t", 2, &err), -1);
	CHECK(strstr(err.msg, "long ago"));
	/* The last MQ_PSEQ_BATCHES are still recognised. */
	h = batch(2, 1);
	CHECK_EQ_INT(mq_pseq_check(&s, &h, 100, &base, &last),
		     MQ_SEQ_DUPLICATE);
	CHECK_EQ_INT(base, 2);
}

TEST(sequence_wraps_after_int32_max)
{
	mq_pseq s = { 0 };
	mq_batch_hdr h = batch(INT32_MAX, 1);
	int64_t base, last;

	mq_pseq_record(&s, &h, 10);
	h = batch(0, 1);
	CHECK_EQ_INT(mq_pseq_check(&s, &h, 11, &base, &last), MQ_SEQ_NEW);
	h = batch(1, 1);
	CHECK_EQ_INT(mq_pseq_check(&s, &h, 11, &base, &last), MQ_SEQ_OLD);
	/* A batch ending at the wrap leaves 0 as the next number. */
	memset(&s, 0, sizeof s);
	h = batch(INT32_MAX - 2, 3);
	mq_pseq_record(&s, &h, 20);
	CHECK_EQ_INT(s.last_seq, INT32_MAX);
	h = batch(0, 2);
	CHECK_EQ_INT(mq_pseq_check(&s, &h, 23, &base, &last), MQ_SEQ_NEW);
	mq_pseq_record(&s, &h, 23);
	CHECK_EQ_INT(s.last_seq, 1);
	h = batch(2, 1);
	CHECK_EQ_INT(mq_pseq_check(&s, &h, 25, &base, &last), MQ_SEQ_NEW);
}

int main(void)
{
	RUN(first_batch_is_new_whatever_its_number);
	RUN(retry_answered_with_original_offsets);
	RUN(gaps_and_forgotten_numbers_are_refused);
	RUN(sequence_wraps_after_int32_max);
	return harness_done();
}
