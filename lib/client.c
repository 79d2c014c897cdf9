/*
 * client.c - the blocking client side of mq-protocol(7).
 *
 * One socket, one receive buffer. Bytes are read from the socket in bulk
 * into `in`; a reply is handed out once its whole frame is there, and it
 * stays valid (the caller's mq_reply points into `in`) until the next
 * receive, which first discards it. A receive that times out keeps what
 * it has read, so a partial frame is never lost and the stream stays in
 * step; that is why mq_client_recv can time out without breaking the
 * client. Every frame length is checked against a limit before the buffer
 * grows, so a lying broker cannot make us allocate more than that.
 */
#include "client.h"
#include "batch.h"
#include "net.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEF_CONNECT_TIMEOUT 5000
#define DEF_REQUEST_TIMEOUT 30000
/* Until the broker told us its limits. */
#define DEF_MAX_FRAME (1u << 20)
/* A fetch reply carries up to a request's worth of batches plus its own
 * fields, and the first batch may start before the requested offset, so
 * replies are allowed a margin above the request limit. */
#define REPLY_FLOOR (64u * 1024 * 1024)
#define REPLY_SLACK (64u * 1024)
#define IN_INITIAL (64u * 1024)
/* A receive buffer grown beyond this is given back once it is empty. */
#define IN_KEEP (4u * 1024 * 1024)
/* A join may wait for the other members this long past their session. */
#define JOIN_GRACE_MS 5000

struct mq_client {
	int fd;
	bool broken;
	mq_err why;              /* what broke it */
	uint32_t next_id;
	int connect_timeout_ms;
	int request_timeout_ms;
	uint32_t max_frame, max_message;
	char name[400];          /* printable broker address */
	uint8_t *in;             /* received bytes: [start, len) unread */
	size_t in_start, in_len, in_cap;
	size_t consumed;         /* bytes of the reply last handed out */
	mq_wbuf out;             /* scratch for the call-style helpers */
	void (*stray)(void *arg, mq_reply *r);  /* replies to other ids */
	void *stray_arg;
	const volatile sig_atomic_t *interrupted;  /* see mq_client_opts */
	int interrupt_at;
};

/* ---- failures ---- */

/* Record a transport failure (already in err, never NULL here) and
 * break the client. */
static int broken(mq_client *c, mq_err *err)
{
	c->broken = true;
	c->why = *err;
	return -1;
}

/* A system call failed on the socket: the connection is gone. */
static int lost(mq_client *c, mq_err *err, int errnum, const char *what)
{
	mq_errsys(err, MQ_E_CONNECT, errnum, "%s broker at %s", what,
		  c->name);
	err->code = MQ_E_CONNECT;
	return broken(c, err);
}

/* A reply the broker should never have sent: the stream cannot be
 * trusted any more. */
static int corrupt(mq_client *c, mq_err *err, const char *what)
{
	mq_err e;

	mq_errf(&e, MQ_E_CORRUPT, "malformed %s from broker at %s", what,
		c->name);
	if (err)
		*err = e;
	c->broken = true;
	c->why = e;
	return -1;
}

static int check_usable(const mq_client *c, mq_err *err)
{
	if (!c->broken)
		return 0;
	if (err)
		*err = c->why;
	return -1;
}

/* Milliseconds left until deadline (-1: none), never below 0. */
static int left_ms(int64_t deadline)
{
	int64_t d;

	if (deadline < 0)
		return -1;
	d = deadline - mq_mono_ms();
	if (d <= 0)
		return 0;
	return d > INT32_MAX ? INT32_MAX : (int)d;
}

static int64_t deadline_after(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : mq_mono_ms() + timeout_ms;
}

/* Wait for events on c's socket; 1 ready, 0 timed out, -1 errno (EINTR
 * when the program's signals say to give up). */
static int wait_fd(const mq_client *c, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = c->fd, .events = events };
	int n;

	for (;;) {
		n = poll(&pfd, 1, left_ms(deadline));
		if (n >= 0)
			return n > 0;
		if (errno != EINTR)
			return -1;
		if (c->interrupted && *c->interrupted >= c->interrupt_at)
			return -1;
	}
}

/* ---- open / close ---- */

static uint32_t reply_limit(const mq_client *c)
{
	uint32_t m = c->max_frame > REPLY_FLOOR ? c->max_frame : REPLY_FLOOR;

	return m > UINT32_MAX - REPLY_SLACK ? UINT32_MAX : m + REPLY_SLACK;
}

int mq_client_open(const char *addr, const mq_client_opts *opts,
		   mq_client **out, mq_err *err)
{
	mq_status_info st;
	mq_addr a;
	mq_client *c;
	int fd, saved;

	*out = NULL;
	if (mq_addr_parse(addr, &a, err) < 0)
		return -1;
	c = calloc(1, sizeof *c);
	if (!c)
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	c->fd = -1;
	c->connect_timeout_ms = opts && opts->connect_timeout_ms > 0 ?
		opts->connect_timeout_ms : DEF_CONNECT_TIMEOUT;
	c->request_timeout_ms = opts && opts->request_timeout_ms > 0 ?
		opts->request_timeout_ms : DEF_REQUEST_TIMEOUT;
	if (opts) {
		c->interrupted = opts->interrupted;
		c->interrupt_at = opts->interrupt_at;
	}
	c->max_frame = DEF_MAX_FRAME;
	c->max_message = DEF_MAX_FRAME;
	mq_addr_format(&a, c->name, sizeof c->name);
	mq_w_init(&c->out);

	fd = mq_connect(&a, c->connect_timeout_ms, err);
	if (fd < 0) {
		mq_client_close(c);
		return -1;
	}
	c->fd = fd;

	/* The handshake is part of connecting: a broker that accepts but
	 * does not answer within the connect timeout is not reachable. */
	saved = c->request_timeout_ms;
	c->request_timeout_ms = c->connect_timeout_ms;
	if (mq_client_status(c, &st, err) < 0) {
		mq_client_close(c);
		return -1;
	}
	c->request_timeout_ms = saved;
	if (st.max_frame >= MQ_FRAME_MIN)
		c->max_frame = st.max_frame;
	if (st.max_message > 0)
		c->max_message = st.max_message;
	*out = c;
	return 0;
}

void mq_client_close(mq_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	mq_w_free(&c->out);
	free(c);
}

int mq_client_fd(const mq_client *c)
{
	return c->fd;
}

uint32_t mq_client_max_frame(const mq_client *c)
{
	return c->max_frame;
}

uint32_t mq_client_max_message(const mq_client *c)
{
	return c->max_message;
}

uint32_t mq_client_next_id(mq_client *c)
{
	if (++c->next_id == 0)
		c->next_id = 1;
	return c->next_id;
}

/* ---- send ---- */

/* Send len bytes before deadline; 0 or -1 + err (client broken). Like
 * every static function below, it takes a non-NULL err. */
static int send_all(mq_client *c, const uint8_t *p, size_t len,
		    int64_t deadline, mq_err *err)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(c->fd, p + off, len - off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return lost(c, err, errno, "lost connection to");
		int rc = wait_fd(c, POLLOUT, deadline);
		if (rc < 0)
			return lost(c, err, errno, "poll on connection to");
		if (rc == 0) {
			/* Part of a frame may be out: the stream is lost. */
			mq_errf(err, MQ_E_TIMEOUT,
				"broker at %s did not take the request within %d ms",
				c->name, c->request_timeout_ms);
			return broken(c, err);
		}
	}
	return 0;
}

int mq_client_send(mq_client *c, const void *frames, size_t len,
		   mq_err *err)
{
	mq_err local;

	if (!err)
		err = &local;
	if (check_usable(c, err) < 0)
		return -1;
	return send_all(c, frames, len, deadline_after(c->request_timeout_ms),
			err);
}

/* ---- receive ---- */

/* Make room for `need` unread bytes in total, from in_start on. */
static int in_reserve(mq_client *c, size_t need, mq_err *err)
{
	size_t unread = c->in_len - c->in_start;

	if (c->in_start > 0 && c->in_start + need > c->in_cap) {
		memmove(c->in, c->in + c->in_start, unread);
		c->in_len = unread;
		c->in_start = 0;
	}
	if (need > c->in_cap) {
		size_t cap = c->in_cap ? c->in_cap : IN_INITIAL;
		uint8_t *p;

		while (cap < need)
			cap *= 2;
		p = realloc(c->in, cap);
		if (!p) {
			mq_errf(err, MQ_E_NOMEM,
				"out of memory for a %zu-byte reply", need);
			return broken(c, err);
		}
		c->in = p;
		c->in_cap = cap;
	}
	return 0;
}

/* Forget the reply handed out last time. */
static void in_consume(mq_client *c)
{
	c->in_start += c->consumed;
	c->consumed = 0;
	if (c->in_start == c->in_len) {
		c->in_start = c->in_len = 0;
		if (c->in_cap > IN_KEEP) {
			free(c->in);
			c->in = NULL;
			c->in_cap = 0;
		}
	}
}

/* Fill r from the whole frame f; -1 + err (broken) if it is no reply. */
static int decode_reply(mq_client *c, const mq_frame *f, mq_reply *r,
			mq_err *err)
{
	mq_rbuf rb;
	const char *msg;
	size_t n;

	if (!(f->type & MQ_REPLY))
		return corrupt(c, err, "frame (not a reply)");
	mq_r_init(&rb, f->payload, f->payload_len);
	r->id = f->id;
	r->type = f->type & ~MQ_REPLY;
	r->code = mq_r_u16(&rb);
	mq_r_str(&rb, &msg, &n);
	if (rb.bad)
		return corrupt(c, err, "reply header");
	/* A long message is cut, not refused: it is only for people. */
	if (n >= sizeof r->msg)
		n = sizeof r->msg - 1;
	memcpy(r->msg, msg, n);
	r->msg[n] = '\0';
	if (r->code != 0 && n == 0)
		snprintf(r->msg, sizeof r->msg, "%s", mq_code_name(r->code));
	mq_r_init(&r->body, rb.p + rb.pos, mq_r_left(&rb));
	return 0;
}

int mq_client_recv(mq_client *c, int timeout_ms, mq_reply *r, mq_err *err)
{
	int64_t deadline = deadline_after(timeout_ms);
	mq_err local;

	if (!err)
		err = &local;
	if (check_usable(c, err) < 0)
		return -1;
	in_consume(c);
	for (;;) {
		size_t have = c->in_len - c->in_start, need = MQ_FRAME_HEADER;
		mq_frame f;
		mq_err e;
		ssize_t n;
		int rc;

		if (have >= MQ_FRAME_HEADER) {
			if (mq_frame_parse(c->in + c->in_start, reply_limit(c),
					   &f, &e) < 0) {
				mq_errf(err, MQ_E_CORRUPT,
					"bad frame from broker at %s: %s",
					c->name, e.msg);
				return broken(c, err);
			}
			need = (size_t)f.length + 4;
			if (have >= need) {
				c->consumed = need;
				return decode_reply(c, &f, r, err) < 0 ? -1 : 1;
			}
		}
		if (in_reserve(c, need, err) < 0)
			return -1;
		rc = wait_fd(c, POLLIN, deadline);
		if (rc == 0)
			return 0;
		if (rc < 0)
			return lost(c, err, errno, "poll on connection to");
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len,
			 MSG_DONTWAIT);
		if (n > 0) {
			c->in_len += (size_t)n;
			continue;
		}
		if (n == 0) {
			mq_errf(err, MQ_E_CONNECT,
				"broker at %s closed the connection", c->name);
			return broken(c, err);
		}
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			continue;
		return lost(c, err, errno, "lost connection to");
	}
}

/* ---- call ---- */

static int call_within(mq_client *c, const mq_wbuf *w, int timeout_ms,
		       mq_reply *r, mq_err *err)
{
	uint32_t id;
	uint16_t type, flags;
	mq_err local;
	int rc;

	if (!err)
		err = &local;
	if (check_usable(c, err) < 0)
		return -1;
	if (w->oom || w->len < MQ_FRAME_HEADER)
		return mq_errf(err, MQ_E_INVAL,
			       "request could not be encoded (out of memory or a field too long)");
	if (w->len - 4 > c->max_frame)
		return mq_errf(err, MQ_E_TOO_LARGE,
			       "request of %zu bytes exceeds the broker's frame limit of %u",
			       w->len - 4, c->max_frame);
	id = mq_get32(w->p + 4);
	type = mq_get16(w->p + 8);
	flags = mq_get16(w->p + 10);
	if (send_all(c, w->p, w->len, deadline_after(c->request_timeout_ms),
		     err) < 0)
		return -1;
	if (flags & MQ_F_NOREPLY) {
		memset(r, 0, sizeof *r);
		r->id = id;
		r->type = type;
		mq_r_init(&r->body, NULL, 0);
		return 0;
	}
	int64_t until = timeout_ms < 0 ? -1 : mq_mono_ms() + timeout_ms;
	for (;;) {
		int left = -1;
		if (until >= 0) {
			int64_t l = until - mq_mono_ms();
			left = l > 0 ? (int)l : 0;
		}
		rc = mq_client_recv(c, left, r, err);
		if (rc < 0)
			return -1;
		if (rc == 0) {
			/* A late reply would be taken for the next request's. */
			mq_errf(err, MQ_E_TIMEOUT,
				"no reply from broker at %s to %s within %d ms",
				c->name, mq_req_name(type), timeout_ms);
			return broken(c, err);
		}
		if (r->id == id)
			break;
		/* The reply to an earlier pipelined request: hand it over
		 * if someone wants it, else the stream is not ours. */
		if (!c->stray)
			return corrupt(c, err, "reply (id does not match the request)");
		c->stray(c->stray_arg, r);
	}
	if (r->type != type)
		return corrupt(c, err, "reply (type does not match the request)");
	if (r->code != 0)
		return mq_errf(err, r->code, "%s", r->msg);
	return 0;
}

void mq_client_on_stray(mq_client *c, void (*fn)(void *arg, mq_reply *r),
			void *arg)
{
	c->stray = fn;
	c->stray_arg = arg;
}

int mq_client_call(mq_client *c, const mq_wbuf *w, mq_reply *r,
		   mq_err *err)
{
	return call_within(c, w, c->request_timeout_ms, r, err);
}

/* The body of a successful reply was read to the end without underflow;
 * trailing bytes are allowed (a newer broker may add fields). */
static int body_done(mq_client *c, mq_reply *r, mq_err *err)
{
	if (r->body.bad)
		return corrupt(c, err, "reply body");
	return 0;
}

/* ---- request encoders ---- */

void mq_req_produce(mq_wbuf *w, uint32_t id, const char *topic,
		    int32_t partition, const void *route_key,
		    int32_t route_key_len, uint8_t acks,
		    const void *batch, size_t batch_len)
{
	size_t f = mq_w_frame_begin(w, id, MQ_T_PRODUCE,
				    acks == 0 ? MQ_F_NOREPLY : 0);

	mq_w_str(w, topic);
	mq_w_u32(w, (uint32_t)partition);
	mq_w_bytes(w, route_key, route_key ? route_key_len : -1);
	mq_w_u8(w, acks);
	if (batch_len > INT32_MAX)
		w->oom = true;
	else
		mq_w_bytes(w, batch, (int32_t)batch_len);
	mq_w_frame_end(w, f);
}

void mq_req_fetch(mq_wbuf *w, uint32_t id, const char *topic,
		  int32_t partition, int64_t offset, uint32_t max_bytes,
		  uint32_t max_wait_ms)
{
	size_t f = mq_w_frame_begin(w, id, MQ_T_FETCH, 0);

	mq_w_str(w, topic);
	mq_w_u32(w, (uint32_t)partition);
	mq_w_u64(w, (uint64_t)offset);
	mq_w_u32(w, max_bytes);
	mq_w_u32(w, max_wait_ms);
	mq_w_frame_end(w, f);
}

/* Start a request in the client's scratch buffer. */
static size_t begin(mq_client *c, uint16_t type)
{
	mq_w_reset(&c->out);
	return mq_w_frame_begin(&c->out, mq_client_next_id(c), type, 0);
}

/* End it and call. */
static int end_call(mq_client *c, size_t f, mq_reply *r, mq_err *err)
{
	mq_w_frame_end(&c->out, f);
	return call_within(c, &c->out, c->request_timeout_ms, r, err);
}

/* ---- call-style helpers ---- */

int mq_client_status(mq_client *c, mq_status_info *st, mq_err *err)
{
	mq_reply r;
	mq_rbuf *b = &r.body;

	memset(st, 0, sizeof *st);
	if (end_call(c, begin(c, MQ_T_STATUS), &r, err) < 0)
		return -1;
	mq_r_strbuf(b, st->version, sizeof st->version);
	st->proto = mq_r_u16(b);
	st->uptime_ms = mq_r_i64(b);
	mq_r_strbuf(b, st->flush, sizeof st->flush);
	st->connections = mq_r_u32(b);
	st->bytes_in = mq_r_u64(b);
	st->bytes_out = mq_r_u64(b);
	st->data_bytes = mq_r_u64(b);
	st->topics = mq_r_u32(b);
	st->pid = mq_r_u32(b);
	st->max_frame = mq_r_u32(b);
	st->max_message = mq_r_u32(b);
	mq_r_strbuf(b, st->data_dir, sizeof st->data_dir);
	return body_done(c, &r, err);
}

/* A malloc'd NUL-terminated copy of a str field; NULL on failure (sets
 * bad on underflow; *oom on allocation failure). */
static char *read_strdup(mq_rbuf *b, bool *oom)
{
	const char *s;
	size_t n;
	char *p;

	mq_r_str(b, &s, &n);
	if (b->bad)
		return NULL;
	p = malloc(n + 1);
	if (!p) {
		*oom = true;
		return NULL;
	}
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* Decode failure of a structure: out of memory or malformed. */
static int decode_failed(mq_client *c, const mq_rbuf *b, bool oom,
			 const char *what, mq_err *err)
{
	if (oom && !b->bad)
		return mq_errf(err, MQ_E_NOMEM, "out of memory decoding %s",
			       what);
	return corrupt(c, err, what);
}

void mq_topic_meta_free(mq_topic_meta *m, size_t n)
{
	if (!m)
		return;
	for (size_t i = 0; i < n; i++) {
		free(m[i].name);
		free(m[i].parts);
	}
	free(m);
}

/* Minimum encoded sizes, for mq_r_count. */
#define MIN_TOPIC_META (2 + 2 + 4)
#define MIN_PART_META (4 + 8 + 8 + 8 + 8 + 8 + 8)
#define MIN_TP (2 + 4)
#define MIN_GROUP (2 + 2 + 4 + 4 + 4)
#define MIN_MEMBER (2 + 2 + 4)
#define MIN_OFFSET (2 + 4 + 8 + 8)

int mq_client_metadata(mq_client *c, const char *const *topics, size_t n,
		       mq_topic_meta **out, size_t *nout, mq_err *err)
{
	mq_topic_meta *m = NULL;
	mq_reply r;
	mq_rbuf *b = &r.body;
	uint32_t count, i;
	bool oom = false;
	size_t f;

	*out = NULL;
	*nout = 0;
	if (!topics)
		n = 0;
	if (n > UINT32_MAX)
		return mq_errf(err, MQ_E_INVAL, "too many topics");
	f = begin(c, MQ_T_METADATA);
	mq_w_u32(&c->out, (uint32_t)n);
	for (size_t k = 0; k < n; k++)
		mq_w_str(&c->out, topics[k]);
	if (end_call(c, f, &r, err) < 0)
		return -1;

	count = mq_r_count(b, MIN_TOPIC_META);
	if (count && !(m = calloc(count, sizeof *m)))
		oom = true;
	for (i = 0; m && i < count && !b->bad && !oom; i++) {
		uint32_t np;

		m[i].name = read_strdup(b, &oom);
		m[i].code = mq_r_u16(b);
		np = mq_r_count(b, MIN_PART_META);
		if (b->bad || oom)
			break;
		if (np > INT32_MAX) {
			b->bad = true;
			break;
		}
		if (np && !(m[i].parts = calloc(np, sizeof *m[i].parts))) {
			oom = true;
			break;
		}
		m[i].nparts = (int32_t)np;
		for (uint32_t k = 0; k < np; k++) {
			mq_part_meta *p = &m[i].parts[k];
			p->id = mq_r_i32(b);
			p->start = mq_r_i64(b);
			p->end = mq_r_i64(b);
			p->visible = mq_r_i64(b);
			p->bytes = mq_r_u64(b);
			p->oldest_ts = mq_r_i64(b);
			p->newest_ts = mq_r_i64(b);
		}
	}
	if (b->bad || oom) {
		mq_topic_meta_free(m, count);
		return decode_failed(c, b, oom, "metadata reply", err);
	}
	*out = m;
	*nout = count;
	return 0;
}

int mq_client_create_topic(mq_client *c, const char *topic,
			   int32_t partitions, mq_err *err)
{
	mq_reply r;
	size_t f = begin(c, MQ_T_CREATE_TOPIC);

	mq_w_str(&c->out, topic);
	mq_w_u32(&c->out, (uint32_t)partitions);
	return end_call(c, f, &r, err);
}

int mq_client_init_producer(mq_client *c, int64_t *producer_id,
			    int16_t *epoch, mq_err *err)
{
	mq_reply r;

	if (end_call(c, begin(c, MQ_T_INIT_PRODUCER), &r, err) < 0)
		return -1;
	*producer_id = mq_r_i64(&r.body);
	*epoch = (int16_t)mq_r_u16(&r.body);
	return body_done(c, &r, err);
}

int mq_produce_result_decode(mq_reply *r, mq_produce_result *res,
			     mq_err *err)
{
	memset(res, 0, sizeof *res);
	if (r->code != 0)
		return mq_errf(err, r->code, "%s", r->msg);
	res->partition = mq_r_i32(&r->body);
	res->base_offset = mq_r_i64(&r->body);
	res->duplicate = mq_r_u8(&r->body) != 0;
	if (r->body.bad)
		return mq_errf(err, MQ_E_CORRUPT, "malformed produce reply");
	return 0;
}

int mq_client_produce(mq_client *c, const char *topic, int32_t partition,
		      const void *route_key, int32_t route_key_len,
		      const void *batch, size_t len, mq_produce_result *res,
		      mq_err *err)
{
	mq_reply r;

	memset(res, 0, sizeof *res);
	mq_w_reset(&c->out);
	mq_req_produce(&c->out, mq_client_next_id(c), topic, partition,
		       route_key, route_key_len, 1, batch, len);
	if (call_within(c, &c->out, c->request_timeout_ms, &r, err) < 0)
		return -1;
	if (mq_produce_result_decode(&r, res, err) < 0)
		return corrupt(c, err, "produce reply");
	return 0;
}

int mq_fetch_result_decode(mq_reply *r, mq_fetch_result *res, mq_err *err)
{
	const uint8_t *p;
	int32_t n;

	memset(res, 0, sizeof *res);
	res->partition = -1;
	if (r->code != 0 && r->code != MQ_E_OFFSET_RANGE)
		return mq_errf(err, r->code, "%s", r->msg);
	res->partition = mq_r_i32(&r->body);
	res->start = mq_r_i64(&r->body);
	res->end = mq_r_i64(&r->body);
	res->visible = mq_r_i64(&r->body);
	if (r->code == MQ_E_OFFSET_RANGE) {
		if (r->body.bad) {
			/* An older broker may send no body: positions
			 * unknown, but the error stands. */
			res->partition = -1;
			res->start = res->end = res->visible = -1;
		}
		return mq_errf(err, r->code, "%s", r->msg);
	}
	mq_r_bytes(&r->body, &p, &n);
	if (r->body.bad)
		return mq_errf(err, MQ_E_CORRUPT, "malformed fetch reply");
	res->batches = p;
	res->len = n > 0 ? (size_t)n : 0;
	return 0;
}

int mq_client_fetch(mq_client *c, const char *topic, int32_t partition,
		    int64_t offset, uint32_t max_bytes, uint32_t max_wait_ms,
		    mq_fetch_result *res, mq_err *err)
{
	mq_reply r;
	mq_err e;
	int64_t timeout = (int64_t)c->request_timeout_ms + max_wait_ms;
	int rc;

	memset(res, 0, sizeof *res);
	mq_w_reset(&c->out);
	mq_req_fetch(&c->out, mq_client_next_id(c), topic, partition, offset,
		     max_bytes, max_wait_ms);
	/* The broker may hold the fetch for max_wait_ms before answering. */
	rc = call_within(c, &c->out, timeout > INT32_MAX ? INT32_MAX :
			 (int)timeout, &r, &e);
	if (rc < 0 && (c->broken || e.code != MQ_E_OFFSET_RANGE))
		goto fail;
	if (mq_fetch_result_decode(&r, res, &e) < 0) {
		if (e.code == MQ_E_CORRUPT)
			return corrupt(c, err, "fetch reply");
		goto fail;
	}
	return 0;
fail:
	if (err)
		*err = e;
	return -1;
}

int mq_client_list_offset(mq_client *c, const char *topic,
			  int32_t partition, int64_t timestamp,
			  int64_t *offset, mq_err *err)
{
	mq_reply r;
	size_t f = begin(c, MQ_T_LIST_OFFSET);

	mq_w_str(&c->out, topic);
	mq_w_u32(&c->out, (uint32_t)partition);
	mq_w_u64(&c->out, (uint64_t)timestamp);
	if (end_call(c, f, &r, err) < 0)
		return -1;
	*offset = mq_r_i64(&r.body);
	return body_done(c, &r, err);
}

int mq_client_delete_records(mq_client *c, const char *topic,
			     int32_t partition, int64_t offset,
			     int64_t *new_start, mq_err *err)
{
	mq_reply r;
	size_t f = begin(c, MQ_T_DELETE_RECORDS);

	mq_w_str(&c->out, topic);
	mq_w_u32(&c->out, (uint32_t)partition);
	mq_w_u64(&c->out, (uint64_t)offset);
	if (end_call(c, f, &r, err) < 0)
		return -1;
	*new_start = mq_r_i64(&r.body);
	return body_done(c, &r, err);
}

/* ---- consumer groups ---- */

static void tp_free(mq_tp *tp, size_t n)
{
	if (!tp)
		return;
	for (size_t i = 0; i < n; i++)
		free(tp[i].topic);
	free(tp);
}

/* Decode a [topic str, partition i32] list into a malloc'd array. */
static mq_tp *read_tps(mq_rbuf *b, size_t *n, bool *oom)
{
	uint32_t count = mq_r_count(b, MIN_TP);
	mq_tp *tp;

	*n = 0;
	if (b->bad || count == 0)
		return NULL;
	tp = calloc(count, sizeof *tp);
	if (!tp) {
		*oom = true;
		return NULL;
	}
	for (uint32_t i = 0; i < count; i++) {
		tp[i].topic = read_strdup(b, oom);
		tp[i].partition = mq_r_i32(b);
		if (b->bad || *oom) {
			tp_free(tp, count);
			return NULL;
		}
	}
	*n = count;
	return tp;
}

void mq_assignment_free(mq_assignment *a)
{
	if (!a)
		return;
	tp_free(a->parts, a->n);
	a->parts = NULL;
	a->n = 0;
}

int mq_client_join(mq_client *c, const char *group, const char *member_id,
		   const char *client_name, uint32_t session_timeout_ms,
		   const char *const *topics, size_t ntopics,
		   mq_assignment *out, mq_err *err)
{
	int64_t timeout = (int64_t)session_timeout_ms + JOIN_GRACE_MS;
	mq_reply r;
	bool oom = false;
	size_t f;

	memset(out, 0, sizeof *out);
	if (!topics)
		ntopics = 0;
	if (ntopics > UINT32_MAX)
		return mq_errf(err, MQ_E_INVAL, "too many topics");
	f = begin(c, MQ_T_JOIN_GROUP);
	mq_w_str(&c->out, group);
	mq_w_str(&c->out, member_id);
	mq_w_str(&c->out, client_name);
	mq_w_u32(&c->out, session_timeout_ms);
	mq_w_u32(&c->out, (uint32_t)ntopics);
	for (size_t i = 0; i < ntopics; i++)
		mq_w_str(&c->out, topics[i]);
	mq_w_frame_end(&c->out, f);
	/* The broker holds the reply until every member has rejoined or its
	 * session ran out. */
	if (timeout < c->request_timeout_ms)
		timeout = c->request_timeout_ms;
	if (timeout > INT32_MAX)
		timeout = INT32_MAX;
	if (call_within(c, &c->out, (int)timeout, &r, err) < 0)
		return -1;
	mq_r_strbuf(&r.body, out->member_id, sizeof out->member_id);
	out->generation = mq_r_i32(&r.body);
	out->parts = read_tps(&r.body, &out->n, &oom);
	if (r.body.bad || oom) {
		mq_assignment_free(out);
		return decode_failed(c, &r.body, oom, "join reply", err);
	}
	return 0;
}

int mq_client_heartbeat(mq_client *c, const char *group,
			const char *member_id, int32_t generation,
			mq_err *err)
{
	mq_reply r;
	size_t f = begin(c, MQ_T_HEARTBEAT);

	mq_w_str(&c->out, group);
	mq_w_str(&c->out, member_id);
	mq_w_u32(&c->out, (uint32_t)generation);
	return end_call(c, f, &r, err);
}

int mq_client_leave(mq_client *c, const char *group, const char *member_id,
		    mq_err *err)
{
	mq_reply r;
	size_t f = begin(c, MQ_T_LEAVE_GROUP);

	mq_w_str(&c->out, group);
	mq_w_str(&c->out, member_id);
	return end_call(c, f, &r, err);
}

int mq_client_commit(mq_client *c, const char *group, const char *member_id,
		     int32_t generation, uint16_t flags,
		     const mq_commit_entry *e, size_t n, mq_err *err)
{
	mq_reply r;
	size_t f;

	if (n > UINT32_MAX)
		return mq_errf(err, MQ_E_INVAL, "too many commit entries");
	f = begin(c, MQ_T_COMMIT);
	mq_w_str(&c->out, group);
	mq_w_str(&c->out, member_id);
	mq_w_u32(&c->out, (uint32_t)generation);
	mq_w_u16(&c->out, flags);
	mq_w_u32(&c->out, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		mq_w_str(&c->out, e[i].topic);
		mq_w_u32(&c->out, (uint32_t)e[i].partition);
		mq_w_u64(&c->out, (uint64_t)e[i].offset);
	}
	return end_call(c, f, &r, err);
}

void mq_group_info_free(mq_group_info *g, size_t n)
{
	if (!g)
		return;
	for (size_t i = 0; i < n; i++) {
		free(g[i].name);
		free(g[i].state);
		for (size_t k = 0; k < g[i].nmembers; k++) {
			free(g[i].members[k].member_id);
			free(g[i].members[k].client);
			tp_free(g[i].members[k].parts, g[i].members[k].n);
		}
		free(g[i].members);
		for (size_t k = 0; k < g[i].noffsets; k++)
			free(g[i].offsets[k].topic);
		free(g[i].offsets);
	}
	free(g);
}

/* Decode one group of a describe reply into g (zeroed by the caller). */
static void read_group(mq_rbuf *b, mq_group_info *g, bool *oom)
{
	uint32_t n;

	g->name = read_strdup(b, oom);
	g->state = read_strdup(b, oom);
	g->generation = mq_r_i32(b);
	n = mq_r_count(b, MIN_MEMBER);
	if (b->bad || *oom)
		return;
	if (n && !(g->members = calloc(n, sizeof *g->members))) {
		*oom = true;
		return;
	}
	for (uint32_t k = 0; k < n && !b->bad && !*oom; k++) {
		mq_group_member *m = &g->members[k];
		/* Counted first, so that free sees every allocation. */
		g->nmembers = k + 1;
		m->member_id = read_strdup(b, oom);
		m->client = read_strdup(b, oom);
		m->parts = read_tps(b, &m->n, oom);
	}
	n = mq_r_count(b, MIN_OFFSET);
	if (b->bad || *oom)
		return;
	if (n && !(g->offsets = calloc(n, sizeof *g->offsets))) {
		*oom = true;
		return;
	}
	for (uint32_t k = 0; k < n && !b->bad && !*oom; k++) {
		mq_group_offset *o = &g->offsets[k];
		g->noffsets = k + 1;
		o->topic = read_strdup(b, oom);
		o->partition = mq_r_i32(b);
		o->offset = mq_r_i64(b);
		o->commit_ms = mq_r_i64(b);
	}
}

int mq_client_describe_groups(mq_client *c, const char *group,
			      mq_group_info **out, size_t *nout, mq_err *err)
{
	mq_group_info *g = NULL;
	mq_reply r;
	uint32_t count, i;
	bool oom = false;
	size_t f;

	*out = NULL;
	*nout = 0;
	f = begin(c, MQ_T_DESCRIBE_GROUPS);
	mq_w_str(&c->out, group ? group : "");
	if (end_call(c, f, &r, err) < 0)
		return -1;
	count = mq_r_count(&r.body, MIN_GROUP);
	if (count && !(g = calloc(count, sizeof *g)))
		oom = true;
	for (i = 0; g && i < count && !r.body.bad && !oom; i++)
		read_group(&r.body, &g[i], &oom);
	if (r.body.bad || oom) {
		mq_group_info_free(g, count);
		return decode_failed(c, &r.body, oom, "describe-groups reply",
				     err);
	}
	*out = g;
	*nout = count;
	return 0;
}

const mq_topic_meta *mq_topic_meta_find(const mq_topic_meta *m, size_t n,
					const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (m[i].code == 0 && strcmp(m[i].name, name) == 0)
			return &m[i];
	return NULL;
}

const mq_part_meta *mq_part_meta_find(const mq_topic_meta *t, int32_t id)
{
	for (int32_t i = 0; t && i < t->nparts; i++)
		if (t->parts[i].id == id)
			return &t->parts[i];
	return NULL;
}

const mq_group_offset *mq_group_committed(const mq_group_info *g,
					  const char *topic, int32_t partition)
{
	for (size_t i = 0; i < g->noffsets; i++)
		if (g->offsets[i].partition == partition &&
		    strcmp(g->offsets[i].topic, topic) == 0)
			return &g->offsets[i];
	return NULL;
}
