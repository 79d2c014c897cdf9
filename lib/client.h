/*
 * client.h - talking to mq-brokerd (mq-protocol(7)). One blocking socket
 * per mq_client; requests can be pipelined with mq_client_send and replies
 * read with mq_client_recv (matched by id), or sent one at a time with the
 * call-style helpers, which send a request and wait for its reply.
 *
 * Transport failures (connection lost, timeout, garbage from the broker)
 * return -1 with err->code MQ_E_CONNECT / MQ_E_TIMEOUT / MQ_E_CORRUPT and
 * leave the client broken: close it and open another. A reply carrying an
 * error code from the broker is not a transport failure: call-style
 * helpers return -1 with err->code set to the broker's code and err->msg
 * to its message, and the client stays usable.
 */
#ifndef MQ_CLIENT_H
#define MQ_CLIENT_H

#include <signal.h>
#include "mq.h"
#include "proto.h"

typedef struct mq_client mq_client;

typedef struct mq_client_opts {
	int connect_timeout_ms;   /* 0 = 5000 */
	int request_timeout_ms;   /* call-style helpers; 0 = 30000 */
	/* If set, a wait that a signal interrupts gives up (the client
	 * breaks with MQ_E_CONNECT, "interrupted") once *interrupted has
	 * reached interrupt_at: a program's signal counter, so that a
	 * second Ctrl-C need not wait out a timeout. */
	const volatile sig_atomic_t *interrupted;
	int interrupt_at;
} mq_client_opts;

/* Connect to addr ("host:port" or "unix:/path") and ask the broker for
 * its STATUS (its limits); both within the connect timeout. An address
 * that does not parse gives MQ_E_INVAL, a broker that cannot be reached
 * MQ_E_CONNECT ("cannot reach broker at ADDR: REASON"). */
int mq_client_open(const char *addr, const mq_client_opts *opts,
		   mq_client **out, mq_err *err);
void mq_client_close(mq_client *c);
int mq_client_fd(const mq_client *c);
/* Limits the broker announced (from a STATUS done at open). */
uint32_t mq_client_max_frame(const mq_client *c);
uint32_t mq_client_max_message(const mq_client *c);

/* A fresh request id (never 0). */
uint32_t mq_client_next_id(mq_client *c);

/* Write a complete frame (or several back to back). Blocks until written
 * or the request timeout passes. */
int mq_client_send(mq_client *c, const void *frames, size_t len,
		   mq_err *err);

/* A received reply. body reads the type-specific part (after code and
 * message). Valid until the next receive on the same client. */
typedef struct mq_reply {
	uint32_t id;
	uint16_t type;           /* without MQ_REPLY */
	uint16_t code;
	char msg[256];
	mq_rbuf body;
} mq_reply;

/* Wait up to timeout_ms (-1 = forever) for the next reply frame, any id.
 * Returns 1 with r filled, 0 on timeout (client still usable), -1 on a
 * transport failure. */
int mq_client_recv(mq_client *c, int timeout_ms, mq_reply *r, mq_err *err);

/* Send the single request frame in w (built with mq_w_frame_begin using an
 * id from mq_client_next_id) and wait up to the request timeout for its
 * reply (other ids are a protocol error here). Returns 0 with r filled
 * when code == 0, -1 with err filled from r->code/msg, or from the
 * transport. A frame flagged MQ_F_NOREPLY returns 0 once sent, with r
 * empty. A frame that could not be encoded (w->oom: MQ_E_INVAL) or is
 * larger than mq_client_max_frame (MQ_E_TOO_LARGE) is refused before
 * anything is sent; the client stays usable. */
int mq_client_call(mq_client *c, const mq_wbuf *w, mq_reply *r,
		   mq_err *err);

/* While a call waits for its reply, replies to other (pipelined) requests
 * are passed to fn, which must copy what it needs; without fn they are a
 * protocol error. */
void mq_client_on_stray(mq_client *c, void (*fn)(void *arg, mq_reply *r),
			void *arg);

/* ---- request encoders (append one frame to w) ---- */
void mq_req_produce(mq_wbuf *w, uint32_t id, const char *topic,
		    int32_t partition, const void *route_key,
		    int32_t route_key_len, uint8_t acks,
		    const void *batch, size_t batch_len);
void mq_req_fetch(mq_wbuf *w, uint32_t id, const char *topic,
		  int32_t partition, int64_t offset, uint32_t max_bytes,
		  uint32_t max_wait_ms);

/* ---- call-style helpers ---- */

typedef struct mq_status_info {
	char version[32];
	uint16_t proto;
	int64_t uptime_ms;
	char flush[16];
	uint32_t connections;
	uint64_t bytes_in, bytes_out, data_bytes;
	uint32_t topics;
	uint32_t pid;
	uint32_t max_frame, max_message;
	char data_dir[1024];
} mq_status_info;
int mq_client_status(mq_client *c, mq_status_info *st, mq_err *err);

typedef struct mq_part_meta {
	int32_t id;
	int64_t start, end, visible;
	uint64_t bytes;
	int64_t oldest_ts, newest_ts;
} mq_part_meta;
typedef struct mq_topic_meta {
	char *name;
	uint16_t code;           /* e.g. MQ_E_NO_TOPIC */
	int32_t nparts;
	mq_part_meta *parts;
} mq_topic_meta;
/* topics == NULL / n == 0: all topics. Free with mq_topic_meta_free. */
int mq_client_metadata(mq_client *c, const char *const *topics, size_t n,
		       mq_topic_meta **out, size_t *nout, mq_err *err);
void mq_topic_meta_free(mq_topic_meta *m, size_t n);
/* The topic called name among m[0..n) (one without an error), or NULL. */
const mq_topic_meta *mq_topic_meta_find(const mq_topic_meta *m, size_t n,
					const char *name);
/* Partition id of t (NULL: none), or NULL. */
const mq_part_meta *mq_part_meta_find(const mq_topic_meta *t, int32_t id);

int mq_client_create_topic(mq_client *c, const char *topic,
			   int32_t partitions, mq_err *err);
int mq_client_init_producer(mq_client *c, int64_t *producer_id,
			    int16_t *epoch, mq_err *err);

typedef struct mq_produce_result {
	int32_t partition;
	int64_t base_offset;
	bool duplicate;
} mq_produce_result;
/* Decode a produce reply body (for pipelined sends). */
int mq_produce_result_decode(mq_reply *r, mq_produce_result *res,
			     mq_err *err);
/* Send one batch with acks=1 and wait for the reply. */
int mq_client_produce(mq_client *c, const char *topic, int32_t partition,
		      const void *route_key, int32_t route_key_len,
		      const void *batch, size_t len, mq_produce_result *res,
		      mq_err *err);

typedef struct mq_fetch_result {
	int32_t partition;
	int64_t start, end, visible;
	const uint8_t *batches;  /* whole batches; valid until next recv */
	size_t len;
} mq_fetch_result;
/* Decode a fetch reply (also fills partition/start/end/visible for an
 * MQ_E_OFFSET_RANGE reply, returning -1 with that code). */
int mq_fetch_result_decode(mq_reply *r, mq_fetch_result *res, mq_err *err);
/* Waits up to the request timeout plus max_wait_ms for the reply. */
int mq_client_fetch(mq_client *c, const char *topic, int32_t partition,
		    int64_t offset, uint32_t max_bytes, uint32_t max_wait_ms,
		    mq_fetch_result *res, mq_err *err);

int mq_client_list_offset(mq_client *c, const char *topic,
			  int32_t partition, int64_t timestamp,
			  int64_t *offset, mq_err *err);
int mq_client_delete_records(mq_client *c, const char *topic,
			     int32_t partition, int64_t offset,
			     int64_t *new_start, mq_err *err);

/* ---- consumer groups ---- */

typedef struct mq_tp {
	char *topic;
	int32_t partition;
} mq_tp;

typedef struct mq_assignment {
	char member_id[128];
	int32_t generation;
	mq_tp *parts;
	size_t n;
} mq_assignment;
void mq_assignment_free(mq_assignment *a);

/* member_id: "" to join as a new member. The call may wait while other
 * members rejoin: up to the longer of the request timeout and
 * session_timeout_ms + 5 s. Free out with mq_assignment_free (also safe
 * after a failure). */
int mq_client_join(mq_client *c, const char *group, const char *member_id,
		   const char *client_name, uint32_t session_timeout_ms,
		   const char *const *topics, size_t ntopics,
		   mq_assignment *out, mq_err *err);
/* -1 with MQ_E_REBALANCE when the member must join again. */
int mq_client_heartbeat(mq_client *c, const char *group,
			const char *member_id, int32_t generation,
			mq_err *err);
int mq_client_leave(mq_client *c, const char *group, const char *member_id,
		    mq_err *err);

typedef struct mq_commit_entry {
	const char *topic;
	int32_t partition;
	int64_t offset;
} mq_commit_entry;
int mq_client_commit(mq_client *c, const char *group, const char *member_id,
		     int32_t generation, uint16_t flags,
		     const mq_commit_entry *e, size_t n, mq_err *err);

typedef struct mq_group_member {
	char *member_id;
	char *client;
	mq_tp *parts;
	size_t n;
} mq_group_member;
typedef struct mq_group_offset {
	char *topic;
	int32_t partition;
	int64_t offset;
	int64_t commit_ms;
} mq_group_offset;
typedef struct mq_group_info {
	char *name;
	char *state;
	int32_t generation;
	mq_group_member *members;
	size_t nmembers;
	mq_group_offset *offsets;
	size_t noffsets;
} mq_group_info;
/* group NULL or "": all groups. Free with mq_group_info_free. */
int mq_client_describe_groups(mq_client *c, const char *group,
			      mq_group_info **out, size_t *n, mq_err *err);
void mq_group_info_free(mq_group_info *g, size_t n);
/* The offset g has committed for topic/partition, or NULL. */
const mq_group_offset *mq_group_committed(const mq_group_info *g,
					  const char *topic, int32_t partition);

#endif
