/*
 * mq.h - what every part of mq shares: the error value and its codes.
 *
 * Map of lib/ (one concept per file):
 *   mq.h        error value, status codes (shared by library and protocol)
 *   err.c       filling an mq_err
 *   io.h/io.c   the I/O seam (write/fsync hooks for fault injection),
 *               full writes that retry EINTR and short writes
 *   crc32c.c    CRC-32C, SSE4.2 path and portable path, chosen at run time
 *   varint.c    zig-zag LEB128 varints (Kafka record fields)
 *   batch.c     Kafka v2 RecordBatch: builder, validator, record iterator
 *   index.c     the sparse offset index of one segment
 *   segment.c   one segment: .log + .index, append, scan, recovery
 *   partition.c ordered segments: append, read, flush, retention, lookup
 *   name.c      validation of topic and group names (they become paths)
 *   lock.c      the data directory lock
 *   offsets.c   durable committed offsets of a consumer group
 *   store.c     a data directory: topics, partitions, groups
 *   producer_ids.c  durable blocks of idempotent producer ids
 *   pseq.c      an idempotent producer's sequence: retry, new, gap, old
 *   proto.c     wire protocol frames (spec: man/mq-protocol.7)
 *   net.c       addresses (host:port, unix:/path), connect and listen
 *   client.c    the broker client: requests, pipelining, replies by id
 *   ep.c        an endpoint: one interface over a broker or a directory
 *   ep_broker.c   ... over the broker client
 *   ep_local.c    ... over a data directory with no broker: reading,
 *                 long polls (ep_local_write.c: turns at the directory
 *                 lock and appends; ep_local_group.c: groups)
 *   wlock.c     a direct writer's turn at the directory lock
 *   lgroup.c    consumer groups without a broker, kept by file locks
 *   watch.c     inotify watches for readers waiting at the end of a log
 *
 * The library never prints and never exits: every function that can fail
 * returns a status and fills the caller's mq_err.
 */
#ifndef MQ_H
#define MQ_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define MQ_VERSION "0.1.0"

/*
 * Status codes. They are also the error codes of the wire protocol
 * (mq-protocol(7)), so never renumber one: only append.
 */
enum mq_code {
	MQ_OK = 0,
	MQ_E_IO = 1,            /* read/write/fsync failed */
	MQ_E_NOSPC = 2,         /* disk full */
	MQ_E_CORRUPT = 3,       /* bad CRC, bad length, bad magic */
	MQ_E_INVAL = 4,         /* malformed request or argument */
	MQ_E_NAME = 5,          /* invalid topic or group name */
	MQ_E_TOO_LARGE = 6,     /* message or batch larger than allowed */
	MQ_E_NO_TOPIC = 7,      /* unknown topic */
	MQ_E_NO_PARTITION = 8,  /* unknown partition */
	MQ_E_OFFSET_RANGE = 9,  /* offset outside [start, end] */
	MQ_E_LOCKED = 10,       /* data directory held by another process */
	MQ_E_READ_ONLY = 11,    /* partition stopped accepting writes */
	MQ_E_FLUSH_TIMEOUT = 12,/* written, but not on disk within the timeout */
	MQ_E_SEQUENCE = 13,     /* idempotent producer: gap in sequence */
	MQ_E_GENERATION = 14,   /* group: stale generation (fenced) */
	MQ_E_UNKNOWN_MEMBER = 15,/* group: member id not known */
	MQ_E_REBALANCE = 16,    /* group: rebalance in progress, join again */
	MQ_E_UNSUPPORTED = 17,  /* unknown request type or feature */
	MQ_E_EXISTS = 18,       /* topic already exists */
	MQ_E_NOMEM = 19,        /* out of memory */
	MQ_E_SHUTDOWN = 20,     /* broker is stopping */
	MQ_E_TIMEOUT = 21,      /* client side: no reply in time */
	MQ_E_CONNECT = 22,      /* client side: cannot reach the broker */
	MQ_E_PRODUCER = 23,     /* idempotent producer: unknown producer id */
	MQ_E_BUSY = 24,         /* too many connections or requests */
	MQ_E__COUNT
};

/* The error value every fallible function fills. */
typedef struct mq_err {
	int code;        /* enum mq_code */
	int sys_errno;   /* errno behind it, 0 if none */
	char msg[256];   /* one readable line, no trailing newline */
} mq_err;

/*
 * Fill err (if not NULL) with code and a printf-style message; returns -1
 * so that callers can write `return mq_errf(err, MQ_E_INVAL, "...")`.
 */
int mq_errf(mq_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Like mq_errf but appends ": strerror(errno)" and maps ENOSPC/EDQUOT/EFBIG
 * to MQ_E_NOSPC and anything else to `code`. Uses the errno value passed in.
 */
int mq_errsys(mq_err *err, int code, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Short stable name of a code, e.g. "flush-timeout"; "unknown" if none. */
const char *mq_code_name(int code);

/* Milliseconds since the epoch (CLOCK_REALTIME) and a monotonic clock. */
int64_t mq_now_ms(void);
int64_t mq_mono_ms(void);

#endif
