/* pseq.c - an idempotent producer's sequence on one partition (pseq.h). */
#include "pseq.h"

/* Computed in 64 bits: last_seq + 1 in int32_t would overflow at the
 * wrap, and the compiler may then assume it never happens and drop the
 * wrap's test. */
int32_t mq_seq_add(int32_t seq, int64_t n)
{
	int64_t r = (int64_t)seq + n;

	return (int32_t)(r > INT32_MAX ? r - INT32_MAX - 1 : r);
}

enum mq_seq_verdict mq_pseq_check(const mq_pseq *s, const mq_batch_hdr *h,
				  int64_t end, int64_t *base, int64_t *last)
{
	if (h->producer_id < 0 || h->base_sequence < 0)
		return MQ_SEQ_NEW;
	if (!s || s->n == 0)
		return MQ_SEQ_NEW;	/* first batch we know of: any number */
	for (int i = 0; i < s->n; i++) {
		int k = (s->head - 1 - i + MQ_PSEQ_BATCHES) % MQ_PSEQ_BATCHES;
		if (s->b[k].first_seq == h->base_sequence &&
		    s->b[k].last_offset < end) {
			*base = s->b[k].base_offset;
			*last = s->b[k].last_offset;
			return MQ_SEQ_DUPLICATE;
		}
	}
	if (h->base_sequence == mq_seq_add(s->last_seq, 1))
		return MQ_SEQ_NEW;
	if (h->base_sequence <= s->last_seq)
		return MQ_SEQ_OLD;
	return MQ_SEQ_GAP;
}

void mq_pseq_record(mq_pseq *s, const mq_batch_hdr *h, int64_t base)
{
	int k = s->head;

	s->b[k].first_seq = h->base_sequence;
	s->b[k].base_offset = base;
	s->b[k].last_offset = base + h->last_offset_delta;
	s->head = (k + 1) % MQ_PSEQ_BATCHES;
	if (s->n < MQ_PSEQ_BATCHES)
		s->n++;
	s->last_seq = mq_seq_add(h->base_sequence, h->last_offset_delta);
}

int mq_pseq_refuse(enum mq_seq_verdict v, const mq_batch_hdr *h,
		   const char *topic, int32_t partition, mq_err *err)
{
	if (v == MQ_SEQ_OLD)
		return mq_errf(err, MQ_E_SEQUENCE,
			       "producer %lld: sequence %d on %s/%d was "
			       "appended long ago; its offsets are no longer "
			       "known", (long long)h->producer_id,
			       h->base_sequence, topic, partition);
	return mq_errf(err, MQ_E_SEQUENCE,
		       "producer %lld sent sequence %d on %s/%d; expected the "
		       "next after the last appended",
		       (long long)h->producer_id, h->base_sequence, topic,
		       partition);
}
