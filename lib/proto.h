/*
 * proto.h - the mq wire protocol (specified for users in mq-protocol(7)).
 *
 * Every message is a frame; all integers are big-endian:
 *
 *   u32 length     bytes after this field, 8 <= length <= max frame size
 *   u32 id         request id chosen by the client, echoed in the reply
 *   u16 type       request type; a reply carries type | MQ_REPLY
 *   u16 flags      MQ_F_NOREPLY: the client wants no reply (oneway)
 *   ...            payload
 *
 * Every reply payload starts with
 *
 *   u16 code       enum mq_code (mq.h); 0 = ok
 *   str message    human-readable, empty when code == 0
 *
 * followed, when code == 0 (and for the codes noted below), by the
 * type-specific body. Types: "str" is u16 length + bytes (no NUL), "bytes"
 * is i32 length + bytes (-1 = null), "[T]" is u32 count + count x T.
 *
 * Replies may come out of order (a produce waiting for its flush does not
 * hold back a fetch on the same connection); match them by id.
 *
 * If you change a layout, bump MQ_PROTO_VERSION and keep old type numbers.
 */
#ifndef MQ_PROTO_H
#define MQ_PROTO_H

#include "mq.h"

#define MQ_PROTO_VERSION 1
#define MQ_FRAME_HEADER 12          /* length + id + type + flags */
#define MQ_FRAME_MIN 8              /* length covers id + type + flags */
#define MQ_REPLY 0x8000
#define MQ_F_NOREPLY 0x0001

/* Limits the broker and a direct (daemonless) writer share: the broker's
 * defaults (mq-brokerd(8) options change them there), the bounds on a
 * group session, the most topics one member may subscribe to. */
#define MQ_DEFAULT_MAX_MESSAGE (1u << 20)
#define MQ_DEFAULT_MAX_FRAME (16u << 20)
#define MQ_DEFAULT_MAX_WAIT_MS 30000
#define MQ_SESSION_MIN_MS 1000
#define MQ_SESSION_MAX_MS 300000
#define MQ_MAX_SUBSCRIBE 256

enum mq_req_type {
	/* -> version str, proto u16, uptime_ms i64, flush str ("sync" |
	 *    "async"), connections u32, bytes_in u64, bytes_out u64,
	 *    data_bytes u64, topics u32, pid u32, max_frame u32,
	 *    max_message u32, data_dir str */
	MQ_T_STATUS = 1,
	/* topics [str] (empty = all) ->
	 *   [topic str, code u16, partitions [id i32, start i64, end i64,
	 *    visible i64 (what fetch serves), bytes u64, oldest_ts i64,
	 *    newest_ts i64]] */
	MQ_T_METADATA = 2,
	/* topic str, partitions i32 -> (empty) */
	MQ_T_CREATE_TOPIC = 3,
	/* topic str, partition i32 (-1: the broker picks: by the hash of
	 * routing key if not null, else round robin), routing key bytes,
	 * acks u8 (0 = none: must be sent with MQ_F_NOREPLY; 1 = leader),
	 * batch bytes (exactly one Kafka v2 record batch)
	 * -> partition i32, base_offset i64, duplicate u8 */
	MQ_T_PRODUCE = 4,
	/* topic str, partition i32, offset i64, max_bytes u32,
	 * max_wait_ms u32
	 * -> partition i32, start i64, end i64, visible i64, batches bytes
	 *    (whole record batches; the first may begin before offset).
	 * On an error (MQ_E_OFFSET_RANGE in particular) the body still
	 * carries partition, start, end and visible (no batches) so the
	 * client can reposition. */
	MQ_T_FETCH = 5,
	/* (empty) -> producer_id i64, epoch i16 */
	MQ_T_INIT_PRODUCER = 6,
	/* topic str, partition i32, timestamp i64 (-1 latest, -2 earliest)
	 * -> offset i64 */
	MQ_T_LIST_OFFSET = 7,
	/* topic str, partition i32, offset i64 -> start i64 (new start) */
	MQ_T_DELETE_RECORDS = 8,

	/* group str, member_id str (empty = new member), client str,
	 * session_timeout_ms u32, topics [str]
	 * -> member_id str, generation i32, assignment [topic str,
	 *    partition i32]. The reply may be delayed while the other
	 *    members rejoin (a rebalance). */
	MQ_T_JOIN_GROUP = 16,
	/* group str, member_id str, generation i32 -> (empty);
	 * MQ_E_REBALANCE when the member must join again. */
	MQ_T_HEARTBEAT = 17,
	/* group str, member_id str -> (empty) */
	MQ_T_LEAVE_GROUP = 18,
	/* group str, member_id str, generation i32 (-1: an operator
	 * commit, not from a member), flags u16, entries [topic str,
	 * partition i32, offset i64] -> (empty). All or nothing. */
	MQ_T_COMMIT = 19,
	/* group str (empty = all groups) ->
	 *   [group str, state str, generation i32,
	 *    members [member_id str, client str, assignment [topic str,
	 *             partition i32]],
	 *    offsets [topic str, partition i32, offset i64, commit_ms i64]] */
	MQ_T_DESCRIBE_GROUPS = 20,
};

/* MQ_T_COMMIT flags */
#define MQ_COMMIT_BACKWARD 0x0001  /* may move an offset backwards */
#define MQ_COMMIT_IF_EMPTY 0x0002  /* refuse if the group has members */

/* ---- bounded buffer writer ---- */

typedef struct mq_wbuf {
	uint8_t *p;
	size_t len, cap;
	bool oom;       /* an allocation failed; contents are unusable */
} mq_wbuf;

void mq_w_init(mq_wbuf *w);
void mq_w_free(mq_wbuf *w);
void mq_w_reset(mq_wbuf *w);
/* Make room for n more bytes; returns a pointer to them (len advanced)
 * or NULL (and w->oom) on failure. */
uint8_t *mq_w_reserve(mq_wbuf *w, size_t n);
void mq_w_u8(mq_wbuf *w, uint8_t v);
void mq_w_u16(mq_wbuf *w, uint16_t v);
void mq_w_u32(mq_wbuf *w, uint32_t v);
void mq_w_u64(mq_wbuf *w, uint64_t v);
void mq_w_raw(mq_wbuf *w, const void *p, size_t n);
/* str: u16 length + bytes (n must be <= 65535, else w->oom is set) */
void mq_w_str(mq_wbuf *w, const char *s);
void mq_w_strn(mq_wbuf *w, const char *s, size_t n);
/* bytes: i32 length (-1 for NULL) + bytes */
void mq_w_bytes(mq_wbuf *w, const void *p, int32_t n);

/* Begin a frame (reserving its header), end it (filling the length).
 * Returns the offset of the frame within w for mq_w_frame_end. */
size_t mq_w_frame_begin(mq_wbuf *w, uint32_t id, uint16_t type,
			uint16_t flags);
void mq_w_frame_end(mq_wbuf *w, size_t frame_start);

/* ---- bounded buffer reader: every read checks what is left; the first
 * underflow sets bad and every later read returns zeros. ---- */

typedef struct mq_rbuf {
	const uint8_t *p;
	size_t len, pos;
	bool bad;
} mq_rbuf;

void mq_r_init(mq_rbuf *r, const void *p, size_t len);
uint8_t mq_r_u8(mq_rbuf *r);
uint16_t mq_r_u16(mq_rbuf *r);
uint32_t mq_r_u32(mq_rbuf *r);
uint64_t mq_r_u64(mq_rbuf *r);
static inline int32_t mq_r_i32(mq_rbuf *r) { return (int32_t)mq_r_u32(r); }
static inline int64_t mq_r_i64(mq_rbuf *r) { return (int64_t)mq_r_u64(r); }
/* A str: *s points into the buffer (not NUL-terminated), *n its length. */
void mq_r_str(mq_rbuf *r, const char **s, size_t *n);
/* A str copied into buf (size bytes incl. NUL); too long sets bad. */
void mq_r_strbuf(mq_rbuf *r, char *buf, size_t size);
/* bytes: *p = NULL and *n = -1 for null. */
void mq_r_bytes(mq_rbuf *r, const uint8_t **p, int32_t *n);
/* A [T] count, checked against what is left assuming each element needs
 * at least min_elem bytes; an impossible count sets bad and returns 0. */
uint32_t mq_r_count(mq_rbuf *r, size_t min_elem);
static inline size_t mq_r_left(const mq_rbuf *r) { return r->len - r->pos; }

/* A decoded frame header. */
typedef struct mq_frame {
	uint32_t length;
	uint32_t id;
	uint16_t type;
	uint16_t flags;
	const uint8_t *payload;   /* length - 8 bytes */
	size_t payload_len;
} mq_frame;

/* Parse the 12-byte header at p; 0, or -1 + err if length is below
 * MQ_FRAME_MIN or above max_frame. */
int mq_frame_parse(const uint8_t *p, uint32_t max_frame, mq_frame *f,
		   mq_err *err);

/* Stable partition for a key: FNV-1a 32-bit of the key bytes, modulo n. */
int32_t mq_partition_for_key(const void *key, size_t len, int32_t n);

/* Name of a request type ("produce"...) for logs; "unknown" if none. */
const char *mq_req_name(uint16_t type);

#endif
