/*
 * producers.c - idempotent producers.
 *
 * A producer asks for an id (INIT_PRODUCER) and numbers its batches per
 * partition (baseSequence, as Kafka does). For each partition the broker
 * remembers, per producer, the last sequence appended and the offsets of
 * its last MQ_PSEQ_BATCHES batches, so that a retried batch is answered
 * with its original offsets instead of being written twice, and a gap in
 * the numbering is refused.
 *
 * Ids come from DIR/producer-ids (lib/producer_ids.c, shared with direct
 * writers), which holds the first id of the next block; a block is
 * reserved durably before any id in it is handed out, so ids are never
 * reused across restarts.
 *
 * After a restart the state is rebuilt from the batches in the last
 * REBUILD_RECORDS offsets of each partition, so a retry that arrives after
 * the broker came back is still recognised.
 */
#include "broker.h"
#include "io.h"
#include "producer_ids.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PID_BLOCK 1000000
#define REBUILD_RECORDS 200000

static int reserve_block(struct broker *b, mq_err *err)
{
	int64_t first;

	if (mq_producer_ids_reserve(b->o.dir, PID_BLOCK, &first, err) < 0)
		return -1;
	b->next_pid = first;
	b->pid_limit = first + PID_BLOCK;
	return 0;
}

int producers_init(struct broker *b, mq_err *err)
{
	return reserve_block(b, err);
}

int producer_new_id(struct broker *b, int64_t *pid, mq_err *err)
{
	if (b->next_pid >= b->pid_limit && reserve_block(b, err) < 0)
		return -1;
	*pid = b->next_pid++;
	return 0;
}

/* ---- per-partition table: open addressing on the producer id ---- */

static struct pstate *ps_find(struct bpart *bp, int64_t pid, bool add)
{
	size_t i;

	if (add && (bp->nproducers + 1) * 2 > bp->cap_producers) {
		size_t cap = bp->cap_producers ? bp->cap_producers * 2 : 16;
		struct pstate *t = calloc(cap, sizeof *t);
		if (!t)
			return NULL;
		for (size_t j = 0; j < bp->cap_producers; j++) {
			struct pstate *s = &bp->producers[j];
			if (s->pid <= 0)
				continue;
			size_t k = (size_t)s->pid % cap;
			while (t[k].pid > 0)
				k = (k + 1) % cap;
			t[k] = *s;
		}
		free(bp->producers);
		bp->producers = t;
		bp->cap_producers = cap;
	}
	if (!bp->cap_producers)
		return NULL;
	for (i = (size_t)pid % bp->cap_producers;; i = (i + 1) % bp->cap_producers) {
		struct pstate *s = &bp->producers[i];
		if (s->pid == pid)
			return s;
		if (s->pid <= 0) {
			if (!add)
				return NULL;
			memset(s, 0, sizeof *s);
			s->pid = pid;
			bp->nproducers++;
			return s;
		}
	}
}

enum mq_seq_verdict producer_check(struct bpart *bp, const mq_batch_hdr *h,
				   int64_t *base, int64_t *last)
{
	struct pstate *s;

	if (h->producer_id < 0 || h->base_sequence < 0)
		return MQ_SEQ_NEW;
	s = ps_find(bp, h->producer_id, false);
	return mq_pseq_check(s ? &s->seq : NULL, h, mq_part_end(bp->p), base,
			     last);
}

void producer_record(struct bpart *bp, const mq_batch_hdr *h,
		     int64_t base_offset)
{
	struct pstate *s;

	if (h->producer_id < 0 || h->base_sequence < 0)
		return;
	s = ps_find(bp, h->producer_id, true);
	if (!s)
		return;	/* out of memory: dedup degrades, data is fine */
	mq_pseq_record(&s->seq, h, base_offset);
}

void producers_rebuild(struct broker *b, struct bpart *bp)
{
	int64_t end = mq_part_end(bp->p), off = mq_part_start(bp->p);
	uint8_t hdr[MQ_BATCH_HEADER_SIZE];
	(void)b;

	if (end - off > REBUILD_RECORDS)
		off = end - REBUILD_RECORDS;
	while (off < end) {
		mq_read_range r;
		mq_err err = { 0 };
		size_t pos = 0;

		if (mq_part_read(bp->p, off, 1 << 20, end, &r, &err) < 0 ||
		    r.len == 0)
			return;
		/* Walk the batch headers of the range. */
		while (pos + MQ_BATCH_HEADER_SIZE <= r.len) {
			mq_batch_hdr h;
			if (mq_pread_full(r.fd, hdr, sizeof hdr,
					  r.pos + (off_t)pos) != sizeof hdr ||
			    mq_batch_parse_header(hdr, sizeof hdr, &h, &err) < 0)
				return;
			producer_record(bp, &h, h.base_offset);
			pos += mq_batch_size(&h);
		}
		if (r.next_offset <= off)
			return;
		off = r.next_offset;
	}
}

void producers_free(struct bpart *bp)
{
	free(bp->producers);
	bp->producers = NULL;
	bp->nproducers = bp->cap_producers = 0;
}
