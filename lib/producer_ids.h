/*
 * producer_ids.h - idempotent producer ids, handed out from a data
 * directory so that no two producers ever share one, across broker
 * restarts and direct writers alike:
 *
 *   DIR/producer-ids     "mq-producer-ids 1\nnext <first unreserved id>\n"
 *
 * The file is replaced atomically (io.h) before any id it reserves is
 * used. If you change this layout, bump the version.
 */
#ifndef MQ_PRODUCER_IDS_H
#define MQ_PRODUCER_IDS_H

#include "mq.h"

/*
 * Reserve count (>= 1) ids from dir: *first gets the first of them, and
 * the file durably records first + count as the next free id. The
 * caller must hold the directory lock (lock.h). A missing file starts at
 * id 1; a file that does not parse is MQ_E_CORRUPT. Returns 0 or -1 + err.
 */
int mq_producer_ids_reserve(const char *dir, int64_t count, int64_t *first,
			    mq_err *err);

#endif
