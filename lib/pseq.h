/*
 * pseq.h - an idempotent producer's sequence on one partition.
 *
 * Every batch of a producer carries its producer id and the sequence
 * number of its first record, counted per partition. Whoever appends for
 * that producer (the broker, or a program writing to a data directory)
 * keeps this state per (producer, partition) and judges each batch
 * before appending it, with one rule: a batch it appended recently is a
 * retry and is answered with its original offsets; the next number is
 * new; a number further ahead is a gap; one further back, no longer
 * remembered, is refused rather than written twice.
 */
#ifndef MQ_PSEQ_H
#define MQ_PSEQ_H

#include "mq.h"
#include "batch.h"

/* How many recent batches a producer's retries are recognised among. */
#define MQ_PSEQ_BATCHES 5

typedef struct mq_pseq {
	int32_t last_seq;        /* last sequence number appended */
	int n, head;             /* ring of the most recent batches */
	struct {
		int32_t first_seq;
		int64_t base_offset, last_offset;
	} b[MQ_PSEQ_BATCHES];
} mq_pseq;

enum mq_seq_verdict { MQ_SEQ_NEW, MQ_SEQ_DUPLICATE, MQ_SEQ_GAP, MQ_SEQ_OLD };

/* seq + n as a sequence number (0 <= n): numbers wrap from INT32_MAX to
 * 0, as Kafka's do. */
int32_t mq_seq_add(int32_t seq, int64_t n);

/*
 * Judge batch h of the producer whose state is s (NULL or empty: the
 * first batch seen from it, which may carry any number). A remembered
 * batch counts as appended only while it lies below end, the log end
 * offset (a torn tail cut by recovery is no longer there). For
 * MQ_SEQ_DUPLICATE, *base and *last get its original offsets. A batch
 * with no producer id or sequence is always new.
 */
enum mq_seq_verdict mq_pseq_check(const mq_pseq *s, const mq_batch_hdr *h,
				  int64_t end, int64_t *base, int64_t *last);

/* Remember that batch h was appended at base. */
void mq_pseq_record(mq_pseq *s, const mq_batch_hdr *h, int64_t base);

/* Fill err with MQ_E_SEQUENCE and the reason for refusing batch h to
 * topic/partition with verdict v (MQ_SEQ_GAP or MQ_SEQ_OLD); returns -1. */
int mq_pseq_refuse(enum mq_seq_verdict v, const mq_batch_hdr *h,
		   const char *topic, int32_t partition, mq_err *err);

#endif
