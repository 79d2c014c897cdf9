/*
 * server.c - listeners and connections.
 *
 * Every socket is non-blocking and owned by the loop. A connection reads
 * frames into one growable buffer (never beyond max_frame + header),
 * handles every complete frame, and queues replies as chunks: memory, or
 * a range of a segment file sent with sendfile(2). Back-pressure: while a
 * connection has more than out_limit bytes queued, or too many replies
 * owed, it is not read from, so a client that never reads cannot make the
 * broker's memory grow.
 */
#include "broker.h"
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_DEFERRED 4096      /* replies owed before reading pauses */
#define READ_CHUNK 65536

static void conn_close(struct conn *c, const char *why);
static void conn_fail(struct conn *c, const char *why);
static void conn_update_reading(struct conn *c);

#define CONTAINER(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

/* ---- output queue ---- */

static struct chunk *chunk_new(int fd)
{
	struct chunk *k = calloc(1, sizeof *k);
	if (!k)
		return NULL;
	k->fd = fd;
	mq_w_init(&k->w);
	return k;
}

static void chunk_free(struct chunk *k)
{
	if (k->fd >= 0)
		close(k->fd);
	mq_w_free(&k->w);
	free(k);
}

static void chunk_push(struct conn *c, struct chunk *k)
{
	if (c->out_tail)
		c->out_tail->next = k;
	else
		c->out_head = k;
	c->out_tail = k;
}

/* The memory chunk new replies go into. */
static mq_wbuf *out_mem(struct conn *c)
{
	if (!c->out_tail || c->out_tail->fd >= 0) {
		struct chunk *k = chunk_new(-1);
		if (!k)
			return NULL;
		chunk_push(c, k);
	}
	return &c->out_tail->w;
}

static mq_wbuf dead_sink;   /* replies to dead connections go nowhere */

mq_wbuf *reply_begin(struct conn *c, uint32_t id, uint16_t type, int code,
		     const char *msg, size_t *frame_start)
{
	mq_wbuf *w = c->dead || c->failing ? NULL : out_mem(c);

	if (!w) {
		mq_w_reset(&dead_sink);
		w = &dead_sink;
	}
	*frame_start = mq_w_frame_begin(w, id, (uint16_t)(type | MQ_REPLY), 0);
	mq_w_u16(w, (uint16_t)code);
	mq_w_str(w, code ? msg : "");
	return w;
}

static void account(struct conn *c, size_t start, size_t extra)
{
	mq_wbuf *w = &c->out_tail->w;

	c->out_bytes += w->len - start + extra;
	c->b->bytes_out += w->len - start + extra;
}

void reply_end(struct conn *c, size_t frame_start)
{
	if (c->dead || c->failing || !c->out_tail || c->out_tail->fd >= 0) {
		mq_w_reset(&dead_sink);
		return;
	}
	if (c->out_tail->w.oom) {
		log_error("out of memory building a reply to %s", c->peer);
		conn_fail(c, "out of memory");
		return;
	}
	mq_w_frame_end(&c->out_tail->w, frame_start);
	account(c, frame_start, 0);
	conn_flush_output(c);
}

void reply_end_file(struct conn *c, size_t frame_start, int fd, off_t pos,
		    size_t file_len)
{
	struct chunk *k;
	mq_wbuf *w;
	int dfd;

	if (c->dead || c->failing || !c->out_tail || c->out_tail->fd >= 0) {
		mq_w_reset(&dead_sink);
		return;
	}
	w = &c->out_tail->w;
	if (w->oom) {
		conn_fail(c, "out of memory");
		return;
	}
	mq_put32(w->p + frame_start,
		 (uint32_t)(w->len - frame_start - 4 + file_len));
	account(c, frame_start, file_len);
	if (file_len) {
		/* The segment may be deleted by retention before the send
		 * completes: keep our own descriptor to it. */
		dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		k = dfd >= 0 ? chunk_new(dfd) : NULL;
		if (!k) {
			if (dfd >= 0)
				close(dfd);
			log_error("cannot queue %zu bytes for %s: %s", file_len,
				  c->peer, strerror(errno));
			conn_fail(c, "cannot queue file range");
			return;
		}
		k->pos = pos;
		k->left = file_len;
		chunk_push(c, k);
	}
	conn_flush_output(c);
}

void reply_error(struct conn *c, uint32_t id, uint16_t type,
		 const mq_err *err)
{
	size_t start;

	reply_begin(c, id, type, err->code ? err->code : MQ_E_IO, err->msg,
		    &start);
	reply_end(c, start);
}

void reply_ok(struct conn *c, uint32_t id, uint16_t type)
{
	size_t start;

	reply_begin(c, id, type, 0, NULL, &start);
	reply_end(c, start);
}

/* Send what can be sent now. Returns -1 if the connection was closed. */
static int write_some(struct conn *c)
{
	while (c->out_head) {
		struct chunk *k = c->out_head;
		ssize_t n;

		if (k->fd < 0) {
			size_t left = k->w.len - k->sent;
			if (left == 0)
				goto done;
			n = send(c->fd, k->w.p + k->sent, left, MSG_NOSIGNAL);
			if (n > 0) {
				k->sent += (size_t)n;
				c->out_bytes -= (size_t)n;
				if (k->sent < k->w.len)
					continue;
			}
		} else {
			if (k->left == 0)
				goto done;
			n = sendfile(c->fd, k->fd, &k->pos, k->left);
			if (n > 0) {
				k->left -= (size_t)n;
				c->out_bytes -= (size_t)n;
				if (k->left)
					continue;
			} else if (n == 0) {
				/* The file is shorter than promised: the
				 * stream can no longer be framed. */
				conn_fail(c, "segment shrank during send");
				return -1;
			}
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			conn_fail(c, strerror(errno));
			return -1;
		}
		if (n > 0)
			continue;
done:
		c->out_head = k->next;
		if (!c->out_head)
			c->out_tail = NULL;
		chunk_free(k);
	}
	return 0;
}

void conn_flush_output(struct conn *c)
{
	if (c->dead || c->failing)
		return;
	if (write_some(c) < 0)
		return;
	if (c->out_head)
		ev_io_start(c->b->loop, &c->wr);
	else
		ev_io_stop(c->b->loop, &c->wr);
	if (!c->out_head && c->close_after_write && c->deferred == 0) {
		conn_fail(c, "protocol error");
		return;
	}
	conn_update_reading(c);
}

/* ---- connection lifetime ---- */

void conn_ref(struct conn *c)
{
	c->refs++;
}

static void conn_free(struct conn *c)
{
	while (c->out_head) {
		struct chunk *k = c->out_head;
		c->out_head = k->next;
		chunk_free(k);
	}
	free(c->in);
	free(c);
}

void conn_unref(struct conn *c)
{
	if (--c->refs == 0 && c->dead)
		conn_free(c);
}

void conn_deferred_done(struct conn *c)
{
	c->deferred--;
	if (!c->dead)
		conn_update_reading(c);
	conn_unref(c);
}

static void conn_close(struct conn *c, const char *why)
{
	struct broker *b = c->b;

	if (c->dead)
		return;
	log_debug("connection %llu from %s closed: %s",
		  (unsigned long long)c->serial, c->peer, why);
	c->dead = true;
	ev_io_stop(b->loop, &c->rd);
	ev_io_stop(b->loop, &c->wr);
	ev_timer_stop(b->loop, &c->idle);
	if (c->failing && ev_is_active(&c->closer)) {
		ev_timer_stop(b->loop, &c->closer);
		conn_unref(c);	/* the closer's reference; ours remains */
	}
	close(c->fd);
	c->fd = -1;
	if (c->prev)
		c->prev->next = c->next;
	else
		b->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	b->nconns--;
	/* Whatever still owes this connection a reply lets go of it. */
	waiter_drop_conn(b, c);
	pending_drop_conn(b, c);
	groups_conn_closed(b, c);
	if (b->listeners_paused && !b->stopping) {
		for (int i = 0; i < b->nlisteners; i++)
			ev_io_start(b->loop, &b->listeners[i]);
		b->listeners_paused = false;
	}
	conn_unref(c);
}

static void on_closer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = CONTAINER(w, struct conn, closer);
	(void)loop;
	(void)revents;
	conn_close(c, c->fail_why);
	conn_unref(c);
}

/*
 * Close c, but not now. Replies are written from inside loops over the
 * broker's lists (parked fetches, pending produces, group members), and
 * closing a connection removes its entries from those very lists; so a
 * failure found while replying only stops the connection's I/O here and
 * leaves the close to a callback of its own.
 */
static void conn_fail(struct conn *c, const char *why)
{
	if (c->dead || c->failing)
		return;
	c->failing = true;
	snprintf(c->fail_why, sizeof c->fail_why, "%s", why);
	ev_io_stop(c->b->loop, &c->rd);
	ev_io_stop(c->b->loop, &c->wr);
	conn_ref(c);
	ev_timer_init(&c->closer, on_closer, 0., 0.);
	ev_timer_start(c->b->loop, &c->closer);
}

static void conn_update_reading(struct conn *c)
{
	struct broker *b = c->b;
	bool want = !c->dead && !c->failing && !c->close_after_write &&
		    !b->stopping &&
		    c->out_bytes < b->o.out_limit &&
		    c->deferred < MAX_DEFERRED;

	if (want && c->paused) {
		c->paused = false;
		ev_io_start(b->loop, &c->rd);
		/* Frames may already be waiting in the input buffer. */
		ev_feed_event(b->loop, &c->rd, EV_CUSTOM);
	} else if (!want && !c->paused) {
		c->paused = true;
		ev_io_stop(b->loop, &c->rd);
	}
}

/* Handle every complete frame in the input buffer. */
static void process_input(struct conn *c)
{
	struct broker *b = c->b;
	size_t pos = 0;

	while (!c->dead && !c->failing && !c->paused &&
	       !c->close_after_write && c->in_len - pos >= 4) {
		const uint8_t *p = c->in + pos;
		size_t have = c->in_len - pos;
		uint32_t len = mq_get32(p);
		mq_frame f;
		mq_err err = { 0 };

		/* Judge the length as soon as it is in: a frame too short to
		 * hold a header may never grow to 12 bytes. */
		if (len < MQ_FRAME_MIN || len > b->o.max_frame) {
			uint32_t id = have >= 8 ? mq_get32(p + 4) : 0;
			uint16_t type = have >= 10 ? mq_get16(p + 8) : 0;
			uint8_t hdr[MQ_FRAME_HEADER] = { 0 };
			mq_put32(hdr, len);
			mq_frame_parse(hdr, b->o.max_frame, &f, &err);
			/* Nothing after a bad length can be trusted: answer
			 * with the id we read, then close. */
			log_warn("%s: %s; closing", c->peer, err.msg);
			reply_error(c, id, type, &err);
			c->close_after_write = true;
			pos = c->in_len;
			break;
		}
		if (have < 4 + (size_t)len)
			break;
		mq_frame_parse(p, b->o.max_frame, &f, &err);
		b->bytes_in += 4 + (size_t)f.length;
		handle_frame(c, &f);
		pos += 4 + (size_t)f.length;
		if (!c->dead)
			conn_update_reading(c);
	}
	if (c->dead)
		return;
	if (pos) {
		memmove(c->in, c->in + pos, c->in_len - pos);
		c->in_len -= pos;
	}
	if (c->close_after_write)
		conn_flush_output(c);
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = CONTAINER(w, struct conn, rd);
	struct broker *b = c->b;
	(void)loop;

	/* Handling a frame may close the connection; keep it allocated
	 * until this callback is done with it. */
	conn_ref(c);
	if (!(revents & EV_READ)) {	/* fed after un-pausing */
		process_input(c);
		conn_unref(c);
		return;
	}
	for (int rounds = 0; rounds < 16 && !c->dead && !c->failing &&
			     !c->paused; rounds++) {
		size_t want = READ_CHUNK;
		ssize_t n;

		/* Grow toward the frame being read, never past the limit. */
		if (c->in_len >= MQ_FRAME_HEADER) {
			size_t flen = 4 + (size_t)mq_get32(c->in);
			if (flen <= (size_t)b->o.max_frame + 4 &&
			    flen > c->in_len && flen - c->in_len > want)
				want = flen - c->in_len;
		}
		if (c->in_cap - c->in_len < want) {
			size_t cap = c->in_len + want;
			uint8_t *p = realloc(c->in, cap);
			if (!p) {
				conn_close(c, "out of memory");
				break;
			}
			c->in = p;
			c->in_cap = cap;
		}
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
		if (n == 0) {
			conn_close(c, "closed by peer");
			break;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_close(c, strerror(errno));
			break;
		}
		c->in_len += (size_t)n;
		ev_timer_again(b->loop, &c->idle);
		process_input(c);
		if ((size_t)n < want)
			break;
	}
	conn_unref(c);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = CONTAINER(w, struct conn, wr);
	(void)loop;
	(void)revents;
	ev_timer_again(c->b->loop, &c->idle);
	conn_ref(c);
	conn_flush_output(c);
	conn_unref(c);
}

static void on_idle(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = CONTAINER(w, struct conn, idle);
	(void)loop;
	(void)revents;
	/* A connection waiting on the broker is not idle. */
	if (c->deferred > 0 || c->out_head) {
		ev_timer_again(c->b->loop, &c->idle);
		return;
	}
	log_info("closing idle connection from %s", c->peer);
	conn_close(c, "idle timeout");
}

static void peer_name(int fd, char *buf, size_t size)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char host[INET6_ADDRSTRLEN];

	snprintf(buf, size, "unix");
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
		snprintf(buf, size, "%s:%u", host, ntohs(s->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof host);
		snprintf(buf, size, "[%s]:%u", host, ntohs(s->sin6_port));
	}
}

static void pause_listeners(struct broker *b)
{
	for (int i = 0; i < b->nlisteners; i++)
		ev_io_stop(b->loop, &b->listeners[i]);
	b->listeners_paused = true;
}

static void on_accept_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct broker *b = CONTAINER(w, struct broker, accept_retry);
	(void)loop;
	(void)revents;
	if (b->stopping || !b->listeners_paused)
		return;
	for (int i = 0; i < b->nlisteners; i++)
		ev_io_start(b->loop, &b->listeners[i]);
	b->listeners_paused = false;
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct broker *b = w->data;
	(void)revents;

	for (int i = 0; i < 64; i++) {
		int fd = accept4(w->fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;
		int one = 1;

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				/* Out of descriptors: stop accepting for a
				 * moment instead of spinning on a listener
				 * that stays readable. */
				log_warn("accept: %s; pausing new connections",
					 strerror(errno));
				pause_listeners(b);
				ev_timer_set(&b->accept_retry, 0.1, 0.);
				ev_timer_start(loop, &b->accept_retry);
			}
			return;
		}
		if (b->nconns >= b->o.max_conns) {
			log_warn("refusing a connection: %d connections open "
				 "(--max-connections)", b->nconns);
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			continue;
		}
		c->b = b;
		c->fd = fd;
		c->refs = 1;
		c->serial = ++b->conn_serial;
		peer_name(fd, c->peer, sizeof c->peer);
		ev_io_init(&c->rd, on_read, fd, EV_READ);
		ev_io_init(&c->wr, on_write, fd, EV_WRITE);
		ev_init(&c->idle, on_idle);
		c->idle.repeat = b->o.idle_timeout_ms / 1000.0;
		ev_timer_again(loop, &c->idle);
		ev_io_start(loop, &c->rd);
		c->next = b->conns;
		if (b->conns)
			b->conns->prev = c;
		b->conns = c;
		b->nconns++;
		log_debug("connection %llu from %s",
			  (unsigned long long)c->serial, c->peer);
	}
}

int server_listen(struct broker *b, mq_err *err)
{
	for (int i = 0; i < b->o.nlisten; i++) {
		mq_addr a;
		char name[400];
		int port = 0, fd;

		if (mq_addr_parse(b->o.listen[i], &a, err) < 0)
			return -1;
		fd = mq_listen(&a, 511, &port, err);
		if (fd < 0)
			return -1;
		if (!a.is_unix && port)
			snprintf(a.port, sizeof a.port, "%d", port);
		mq_addr_format(&a, name, sizeof name);
		log_info("listening on %s", name);
		ev_io_init(&b->listeners[i], on_accept, fd, EV_READ);
		b->listeners[i].data = b;
		ev_io_start(b->loop, &b->listeners[i]);
		b->nlisteners++;
	}
	ev_init(&b->accept_retry, on_accept_retry);
	return 0;
}

/* Stop accepting and reading; what is in flight finishes (see
 * mq-brokerd.c for the rest of the shutdown). */
void server_begin_shutdown(struct broker *b)
{
	for (int i = 0; i < b->nlisteners; i++) {
		ev_io_stop(b->loop, &b->listeners[i]);
		close(b->listeners[i].fd);
	}
	b->nlisteners = 0;
	ev_timer_stop(b->loop, &b->accept_retry);
	for (struct conn *c = b->conns; c; c = c->next)
		conn_update_reading(c);
}

void server_close_all(struct broker *b)
{
	while (b->conns)
		conn_close(b->conns, "broker stopping");
	mq_w_free(&dead_sink);
}
