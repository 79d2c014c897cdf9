/*
 * t_client.c - the client library (lib/client.c).
 *
 * Two kinds of test. The first half talks to a scripted fake broker (a
 * thread behind a private unix socket) to check what only a misbehaving
 * peer can show: timeouts, partial frames, replies out of order, garbage,
 * lying counts, a peer that hangs up. The second half starts a real
 * mq-brokerd ($MQ_BUILD/bin/mq-brokerd) in each test's temporary
 * directory and kills it in the test's teardown; those tests are skipped
 * while the broker is not built.
 */
#include "harness.h"
#include "broker_ready.h"

#include "batch.h"
#include "client.h"
#include "net.h"
#include "proto.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

/* A TCP port on 127.0.0.1 that nothing listens on (bound, then freed). */
static int free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	if (fd < 0)
		return -1;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
		port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* ---- building and reading batches ---- */

/* A batch of n records "<prefix>-<first+i>" (keys "k<first+i>"). */
static int make_batch(mq_batch_builder *bb, const char *prefix, int first,
		      int n, int64_t pid, int16_t epoch, int32_t seq)
{
	mq_err err;

	mq_bb_reset(bb);
	for (int i = 0; i < n; i++) {
		char key[32], val[64];
		int kl = snprintf(key, sizeof key, "k%d", first + i);
		int vl = snprintf(val, sizeof val, "%s-%d", prefix, first + i);
		if (mq_bb_add(bb, mq_now_ms(), key, kl, val, vl, NULL, 0,
			      &err) < 0)
			return -1;
	}
	return mq_bb_finish(bb, pid, epoch, seq, &err);
}

/*
 * Walk the batches of a fetch result, collecting the values of records at
 * offset >= from into vals (max entries). Checks every batch fully and
 * that offsets run on without gaps. Returns the number of records, or -1.
 */
static int collect(const uint8_t *p, size_t len, int64_t from,
		   char vals[][64], int max)
{
	int64_t next = -1;
	size_t pos = 0;
	int n = 0;
	mq_err err;

	while (pos < len) {
		mq_batch_hdr h;
		mq_batch_iter it;
		mq_record r;
		int rc;

		if (mq_batch_parse_header(p + pos, len - pos, &h, &err) < 0 ||
		    mq_batch_size(&h) > len - pos) {
			fprintf(stderr, "fetched data: bad batch at %zu\n", pos);
			return -1;
		}
		if (mq_batch_validate(p + pos, mq_batch_size(&h), NULL,
				      &err) < 0 ||
		    mq_batch_iter_init(&it, p + pos, mq_batch_size(&h),
				       &err) < 0) {
			fprintf(stderr, "fetched batch: %s\n", err.msg);
			return -1;
		}
		while ((rc = mq_batch_iter_next(&it, &r, &err)) == 1) {
			if (next >= 0 && r.offset != next) {
				fprintf(stderr, "offset %" PRId64 " after %" PRId64 "\n",
					r.offset, next - 1);
				return -1;
			}
			next = r.offset + 1;
			if (r.offset < from)
				continue;
			if (n < max) {
				int vl = r.value_len < 63 ? r.value_len : 63;
				memcpy(vals[n], r.value, (size_t)(vl > 0 ? vl : 0));
				vals[n][vl > 0 ? vl : 0] = '\0';
			}
			n++;
		}
		if (rc < 0)
			return -1;
		pos += mq_batch_size(&h);
	}
	return n;
}

/* ================= a scripted fake broker ================= */

struct fake {
	int lfd;
	int nconn;                    /* connections to accept */
	char addr[4200];
	pthread_t th;
	void (*script)(int fd, int conn);
};

static int write_full(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_full(int fd, void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		ssize_t r = read(fd, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Read one request frame (into buf, cap bytes); 0, or -1 at EOF. */
static int fake_read(int fd, uint8_t *buf, size_t cap, mq_frame *f)
{
	mq_err err;

	if (read_full(fd, buf, MQ_FRAME_HEADER) < 0 ||
	    mq_frame_parse(buf, (uint32_t)(cap - 4), f, &err) < 0 ||
	    read_full(fd, buf + MQ_FRAME_HEADER, f->payload_len) < 0)
		return -1;
	return 0;
}

/* Append a reply frame to w. */
static void fake_reply(mq_wbuf *w, uint32_t id, uint16_t type,
		       uint16_t code, const char *msg, const mq_wbuf *body)
{
	size_t f = mq_w_frame_begin(w, id, type | MQ_REPLY, 0);
	mq_w_u16(w, code);
	mq_w_str(w, msg);
	if (body)
		mq_w_raw(w, body->p, body->len);
	mq_w_frame_end(w, f);
}

static void status_body(mq_wbuf *w)
{
	mq_w_str(w, "9.9.9");
	mq_w_u16(w, MQ_PROTO_VERSION);
	mq_w_u64(w, 1234);
	mq_w_str(w, "sync");
	mq_w_u32(w, 1);
	mq_w_u64(w, 10);
	mq_w_u64(w, 20);
	mq_w_u64(w, 30);
	mq_w_u32(w, 0);
	mq_w_u32(w, 4242);
	mq_w_u32(w, 1u << 20);
	mq_w_u32(w, 1u << 16);
	mq_w_str(w, "/fake/dir");
}

/* Read a request and answer it as a STATUS; -1 at EOF. */
static int fake_answer_status(int fd)
{
	uint8_t buf[4096];
	mq_frame f;
	mq_wbuf body, w;
	int rc;

	if (fake_read(fd, buf, sizeof buf, &f) < 0)
		return -1;
	mq_w_init(&body);
	mq_w_init(&w);
	status_body(&body);
	fake_reply(&w, f.id, f.type, 0, "", &body);
	rc = write_full(fd, w.p, w.len);
	mq_w_free(&body);
	mq_w_free(&w);
	return rc;
}

/* Read until the client hangs up. */
static void fake_drain(int fd)
{
	uint8_t buf[4096];
	while (read(fd, buf, sizeof buf) > 0)
		;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;

	for (int i = 0; i < f->nconn; i++) {
		struct pollfd p = { .fd = f->lfd, .events = POLLIN };
		int fd;

		if (poll(&p, 1, 10000) <= 0)
			break;
		fd = accept(f->lfd, NULL, NULL);
		if (fd < 0)
			break;
		f->script(fd, i);
		close(fd);
	}
	return NULL;
}

static int fake_start(struct fake *f, void (*script)(int, int), int nconn)
{
	mq_addr a;
	mq_err err;

	memset(f, 0, sizeof *f);
	f->script = script;
	f->nconn = nconn;
	snprintf(f->addr, sizeof f->addr, "unix:%s/fake.sock",
		 harness_tmpdir());
	if (mq_addr_parse(f->addr, &a, &err) < 0 ||
	    (f->lfd = mq_listen(&a, 4, NULL, &err)) < 0) {
		fprintf(stderr, "fake broker: %s\n", err.msg);
		return -1;
	}
	if (pthread_create(&f->th, NULL, fake_main, f) != 0) {
		close(f->lfd);
		return -1;
	}
	return 0;
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->th, NULL);
	close(f->lfd);
}

static const mq_client_opts quick = { .connect_timeout_ms = 1000,
				   .request_timeout_ms = 300 };

/* ---- tests without a broker ---- */

TEST(open_refused_tcp)
{
	char addr[64];
	mq_client *c = NULL;
	mq_err err;
	int port = free_port();

	MUST(port > 0);
	snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
	CHECK_EQ_INT(mq_client_open(addr, NULL, &c, &err), -1);
	CHECK(c == NULL);
	CHECK_EQ_INT(err.code, MQ_E_CONNECT);
	char want[128];
	snprintf(want, sizeof want,
		 "cannot reach broker at 127.0.0.1:%d: Connection refused", port);
	CHECK(strcmp(err.msg, want) == 0);
	if (strcmp(err.msg, want) != 0)
		fprintf(stderr, "got: %s\n", err.msg);
}

TEST(open_refused_unix_and_bad_address)
{
	char addr[4200];
	mq_client *c = NULL;
	mq_err err;

	snprintf(addr, sizeof addr, "unix:%s/nothing", harness_tmpdir());
	CHECK_EQ_INT(mq_client_open(addr, NULL, &c, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_CONNECT);
	CHECK(strstr(err.msg, "cannot reach broker at unix:") == err.msg);
	CHECK_EQ_INT(mq_client_open("127.0.0.1:99999", NULL, &c, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_INVAL);
	CHECK_EQ_INT(mq_client_open("", NULL, &c, &err), -1);
	CHECK_EQ_INT(err.code, MQ_E_INVAL);
}

TEST(encoders_follow_the_protocol)
{
	mq_wbuf w;
	mq_rbuf r;
	mq_frame f;
	mq_err err;
	const char *s;
	const uint8_t *p;
	size_t n;
	int32_t bn;

	mq_w_init(&w);
	mq_req_produce(&w, 7, "orders", 2, "key", 3, 0, "BATCH", 5);
	MUST(!w.oom);
	MUST(mq_frame_parse(w.p, 1u << 20, &f, &err) == 0);
	CHECK_EQ_INT(f.length + 4, w.len);
	CHECK_EQ_INT(f.id, 7);
	CHECK_EQ_INT(f.type, MQ_T_PRODUCE);
	CHECK_EQ_INT(f.flags, MQ_F_NOREPLY);     /* acks 0: oneway */
	mq_r_init(&r, f.payload, f.payload_len);
	mq_r_str(&r, &s, &n);
	CHECK(n == 6 && memcmp(s, "orders", 6) == 0);
	CHECK_EQ_INT(mq_r_i32(&r), 2);
	mq_r_bytes(&r, &p, &bn);
	CHECK(bn == 3 && memcmp(p, "key", 3) == 0);
	CHECK_EQ_INT(mq_r_u8(&r), 0);
	mq_r_bytes(&r, &p, &bn);
	CHECK(bn == 5 && memcmp(p, "BATCH", 5) == 0);
	CHECK(!r.bad && mq_r_left(&r) == 0);

	/* acks 1 wants a reply; a NULL key is a null "bytes". */
	mq_w_reset(&w);
	mq_req_produce(&w, 8, "t", -1, NULL, 0, 1, "B", 1);
	MUST(mq_frame_parse(w.p, 1u << 20, &f, &err) == 0);
	CHECK_EQ_INT(f.flags, 0);
	mq_r_init(&r, f.payload, f.payload_len);
	mq_r_str(&r, &s, &n);
	CHECK_EQ_INT(mq_r_i32(&r), -1);
	mq_r_bytes(&r, &p, &bn);
	CHECK(bn == -1 && p == NULL);
	CHECK_EQ_INT(mq_r_u8(&r), 1);

	/* Two frames back to back in one buffer. */
	mq_w_reset(&w);
	mq_req_fetch(&w, 9, "t", 1, 42, 1000, 250);
	size_t first = w.len;
	mq_req_fetch(&w, 10, "t", 0, 0, 1, 0);
	MUST(mq_frame_parse(w.p, 1u << 20, &f, &err) == 0);
	CHECK_EQ_INT(f.length + 4, first);
	CHECK_EQ_INT(f.type, MQ_T_FETCH);
	mq_r_init(&r, f.payload, f.payload_len);
	mq_r_str(&r, &s, &n);
	CHECK(n == 1 && s[0] == 't');
	CHECK_EQ_INT(mq_r_i32(&r), 1);
	CHECK_EQ_INT(mq_r_i64(&r), 42);
	CHECK_EQ_INT(mq_r_u32(&r), 1000);
	CHECK_EQ_INT(mq_r_u32(&r), 250);
	CHECK(!r.bad && mq_r_left(&r) == 0);
	MUST(mq_frame_parse(w.p + first, 1u << 20, &f, &err) == 0);
	CHECK_EQ_INT(f.id, 10);
	mq_w_free(&w);
}

static void script_status_then_silence(int fd, int conn)
{
	(void)conn;
	if (fake_answer_status(fd) == 0)
		fake_drain(fd);
}

TEST(fake_open_reads_status_then_times_out)
{
	struct fake fk;
	mq_client *c = NULL;
	mq_status_info st;
	mq_err err;

	MUST(fake_start(&fk, script_status_then_silence, 1) == 0);
	CHECK_EQ_INT(mq_client_open(fk.addr, &quick, &c, &err), 0);
	if (c) {
		CHECK_EQ_INT(mq_client_max_frame(c), 1u << 20);
		CHECK_EQ_INT(mq_client_max_message(c), 1u << 16);
		CHECK(mq_client_fd(c) >= 0);
		int64_t t0 = mq_mono_ms();
		CHECK_EQ_INT(mq_client_status(c, &st, &err), -1);
		int64_t dt = mq_mono_ms() - t0;
		CHECK_EQ_INT(err.code, MQ_E_TIMEOUT);
		CHECK(dt >= 250 && dt < 2000);
		/* Broken now: fails at once with the same reason. */
		t0 = mq_mono_ms();
		CHECK_EQ_INT(mq_client_status(c, &st, &err), -1);
		CHECK_EQ_INT(err.code, MQ_E_TIMEOUT);
		CHECK(mq_mono_ms() - t0 < 100);
		mq_client_close(c);
	}
	fake_stop(&fk);
}

static void script_garbage(int fd, int conn)
{
	uint8_t buf[4096];
	mq_frame f;

	(void)conn;
	if (fake_read(fd, buf, sizeof buf, &f) < 0)
		return;
	if (conn == 0) {
		/* A length below the minimum. */
		uint8_t bad[12] = { 0, 0, 0, 3 };
		write_full(fd, bad, sizeof bad);
	} else if (conn == 1) {
		/* A length far above any limit (e.g. an HTTP server). */
		write_full(fd, "HTTP/1.1 400 Bad Request\r\n\r\n", 28);
	} else {
		/* A reply whose message runs past the frame. */
		mq_wbuf w;
		mq_w_init(&w);
		size_t s = mq_w_frame_begin(&w, f.id, f.type | MQ_REPLY, 0);
		mq_w_u16(&w, 0);
		mq_w_u16(&w, 500);
		mq_w_raw(&w, "short", 5);
		mq_w_frame_end(&w, s);
		write_full(fd, w.p, w.len);
		mq_w_free(&w);
	}
	fake_drain(fd);
}

TEST(fake_garbage_is_corrupt)
{
	struct fake fk;
	mq_client *c = NULL;
	mq_err err;

	MUST(fake_start(&fk, script_garbage, 3) == 0);
	for (int i = 0; i < 3; i++) {
		CHECK_EQ_INT(mq_client_open(fk.addr, &quick, &c, &err), -1);
		CHECK_EQ_INT(err.code, MQ_E_CORRUPT);
		CHECK(c == NULL);
	}
	fake_stop(&fk);
}

/* Answer STATUS one byte at a time, then send a reply in two halves with
 * a pause between them. */
static void script_slow(int fd, int conn)
{
	uint8_t buf[4096];
	mq_frame f;
	mq_wbuf body, w;

	(void)conn;
	mq_w_init(&body);
	mq_w_init(&w);
	if (fake_read(fd, buf, sizeof buf, &f) < 0)
		goto out;
	status_body(&body);
	fake_reply(&w, f.id, f.type, 0, "", &body);
	for (size_t i = 0; i < w.len; i++) {
		if (write_full(fd, w.p + i, 1) < 0)
			goto out;
		if (i % 16 == 0)
			sleep_ms(1);
	}
	if (fake_read(fd, buf, sizeof buf, &f) < 0)
		goto out;
	mq_w_reset(&w);
	fake_reply(&w, f.id, f.type, 0, "", &body);
	write_full(fd, w.p, 7);
	sleep_ms(300);
	write_full(fd, w.p + 7, w.len - 7);
	fake_drain(fd);
out:
	mq_w_free(&body);
	mq_w_free(&w);
}

TEST(fake_partial_frames_survive_a_recv_timeout)
{
	struct fake fk;
	mq_client *c = NULL;
	mq_reply r;
	mq_wbuf w;
	mq_err err;
	uint32_t id;

	MUST(fake_start(&fk, script_slow, 1) == 0);
	CHECK_EQ_INT(mq_client_open(fk.addr, &quick, &c, &err), 0);
	if (c) {
		mq_w_init(&w);
		id = mq_client_next_id(c);
		CHECK(id != 0);
		mq_w_frame_end(&w, mq_w_frame_begin(&w, id, MQ_T_STATUS, 0));
		CHECK_EQ_INT(mq_client_send(c, w.p, w.len, &err), 0);
		/* Only 7 bytes arrive in time: a timeout, not a failure. */
		CHECK_EQ_INT(mq_client_recv(c, 100, &r, &err), 0);
		CHECK_EQ_INT(mq_client_recv(c, 2000, &r, &err), 1);
		CHECK_EQ_INT(r.id, id);
		CHECK_EQ_INT(r.type, MQ_T_STATUS);
		CHECK_EQ_INT(r.code, 0);
		char v[32];
		mq_r_strbuf(&r.body, v, sizeof v);
		CHECK(strcmp(v, "9.9.9") == 0);
		mq_w_free(&w);
		mq_client_close(c);
	}
	fake_stop(&fk);
}

/* Read three requests, answer them in reverse order in one write. Each
 * body is the request id times ten. */
static void script_reverse(int fd, int conn)
{
	uint8_t buf[4096];
	uint32_t ids[3];
	mq_frame f;
	mq_wbuf w, body;

	(void)conn;
	if (fake_answer_status(fd) < 0)
		return;
	for (int i = 0; i < 3; i++) {
		if (fake_read(fd, buf, sizeof buf, &f) < 0)
			return;
		ids[i] = f.id;
	}
	mq_w_init(&w);
	mq_w_init(&body);
	for (int i = 2; i >= 0; i--) {
		mq_w_reset(&body);
		mq_w_u32(&body, ids[i] * 10);
		fake_reply(&w, ids[i], MQ_T_STATUS, 0, "", &body);
	}
	write_full(fd, w.p, w.len);
	mq_w_free(&w);
	mq_w_free(&body);
	fake_drain(fd);
}

TEST(fake_replies_out_of_order_match_by_id)
{
	struct fake fk;
	mq_client *c = NULL;
	mq_reply r;
	mq_wbuf w;
	mq_err err;
	uint32_t ids[3];

	MUST(fake_start(&fk, script_reverse, 1) == 0);
	CHECK_EQ_INT(mq_client_open(fk.addr, &quick, &c, &err), 0);
	if (c) {
		mq_w_init(&w);
		for (int i = 0; i < 3; i++) {
			ids[i] = mq_client_next_id(c);
			mq_w_frame_end(&w, mq_w_frame_begin(&w, ids[i],
							    MQ_T_STATUS, 0));
		}
		CHECK_EQ_INT(mq_client_send(c, w.p, w.len, &err), 0);
		for (int i = 2; i >= 0; i--) {
			CHECK_EQ_INT(mq_client_recv(c, 2000, &r, &err), 1);
			CHECK_EQ_INT(r.id, ids[i]);
			CHECK_EQ_INT(mq_r_u32(&r.body), ids[i] * 10);
		}
		mq_w_free(&w);
		mq_client_close(c);
	}
	fake_stop(&fk);
}

/* Answer each request with a broker error; the last one with STATUS. */
static void script_errors(int fd, int conn)
{
	uint8_t buf[4096];
	char longmsg[400];
	mq_frame f;
	mq_wbuf w;

	(void)conn;
	if (fake_answer_status(fd) < 0)
		return;
	memset(longmsg, 'x', sizeof longmsg - 1);
	longmsg[sizeof longmsg - 1] = '\0';
	mq_w_init(&w);
	if (fake_read(fd, buf, sizeof buf, &f) == 0) {
		fake_reply(&w, f.id, f.type, MQ_E_NO_TOPIC,
			   "unknown topic nope", NULL);
		write_full(fd, w.p, w.len);
	}
	if (fake_read(fd, buf, sizeof buf, &f) == 0) {
		mq_w_reset(&w);
		fake_reply(&w, f.id, f.type, MQ_E_EXISTS, longmsg, NULL);
		write_full(fd, w.p, w.len);
	}
	if (fake_read(fd, buf, sizeof buf, &f) == 0) {
		mq_w_reset(&w);
		fake_reply(&w, f.id, f.type, MQ_E_BUSY, "", NULL);
		write_full(fd, w.p, w.len);
	}
	mq_w_free(&w);
	if (fake_answer_status(fd) == 0)
		fake_drain(fd);
}

TEST(fake_broker_errors_keep_the_client)
{
	struct fake fk;
	mq_client *c = NULL;
	mq_status_info st;
	mq_err err;

	MUST(fake_start(&fk, script_errors, 1) == 0);
	CHECK_EQ_INT(mq_client_open(fk.addr, &quick, &c, &err), 0);
	if (c) {
		CHECK_EQ_INT(mq_client_create_topic(c, "nope", 1, &err), -1);
		CHECK_EQ_INT(err.code, MQ_E_NO_TOPIC);
		CHECK(strcmp(err.msg, "unknown topic nope") == 0);
		CHECK_EQ_INT(mq_client_create_topic(c, "t", 1, &err), -1);
		CHECK_EQ_INT(err.code, MQ_E_EXISTS);
		CHECK_EQ_INT(strlen(err.msg), 255);     /* cut, not refused */
		/* An empty message is replaced by the code's name. */
		CHECK_EQ_INT(mq_client_create_topic(c, "t", 1, &err), -1);
		CHECK_EQ_INT(err.code, MQ_E_BUSY);
		CHECK(strcmp(err.msg, "busy") == 0);
		CHECK_EQ_INT(mq_client_status(c, &st, &err), 0);
		CHECK(strcmp(st.version, "9.9.9") == 0);
		CHECK_EQ_INT(st.proto, MQ_PROTO_VERSION);
		CHECK_EQ_INT(st.uptime_ms, 1234);
		CHECK(strcmp(st.flush, "sync") == 0);
		CHECK_EQ_INT(st.bytes_out, 20);
		CHECK_EQ_INT(st.pid, 4242);
		CHECK(strcmp(st.data_dir, "/fake/dir") == 0);
		mq_client_close(c);
	}
	fake_stop(&fk);
}

static void script_hang_up(int fd, int conn)
{
	(void)conn;
	fake_answer_status(fd);
}

TEST(fake_hang_up_is_a_connect_error)
{
	struct fake fk;
	mq_client *c = NULL;
	mq_status_info st;
	mq_err err;
	static uint8_t big[256 * 1024];

	MUST(fake_start(&fk, script_hang_up, 1) == 0);
	CHECK_EQ_INT(mq_client_open(fk.addr, &quick, &c, &err), 0);
	fake_stop(&fk);     /* the fake has closed its end */
	if (c) {
		/* Without MSG_NOSIGNAL this would kill the test (SIGPIPE). */
		CHECK_EQ_INT(mq_client_send(c, big, sizeof big, &err), -1);
		CHECK_EQ_INT(err.code, MQ_E_CONNECT);
		CHECK_EQ_INT(mq_client_status(c, &st, &err), -1);
		CHECK_EQ_INT(err.code, MQ_E_CONNECT);
		mq_client_close(c);
	}
}

/* Metadata with lying counts, then join and describe replies with
 * checks of what the client sent. */
static char fake_seen[8][256];

static void script_decode(int fd, int conn)
{
	uint8_t buf[4096];
	mq_frame f;
	mq_wbuf w, b;
	mq_rbuf r;

	if (fake_answer_status(fd) < 0 || fake_read(fd, buf, sizeof buf, &f) < 0)
		return;
	mq_w_init(&w);
	mq_w_init(&b);
	if (conn == 0) {
		/* metadata: 4 billion topics in a few bytes */
		mq_w_u32(&b, 0xffffffffu);
		mq_w_u32(&b, 0);
	} else if (conn == 1) {
		/* one topic claiming 2^31-1 partitions */
		mq_w_u32(&b, 1);
		mq_w_str(&b, "t");
		mq_w_u16(&b, 0);
		mq_w_u32(&b, 0x7fffffffu);
	} else {
		/* join: record what was sent, answer an assignment */
		mq_r_init(&r, f.payload, f.payload_len);
		mq_r_strbuf(&r, fake_seen[0], 256);
		mq_r_strbuf(&r, fake_seen[1], 256);
		mq_r_strbuf(&r, fake_seen[2], 256);
		snprintf(fake_seen[3], 256, "%u", mq_r_u32(&r));
		uint32_t n = mq_r_u32(&r);
		snprintf(fake_seen[4], 256, "%u", n);
		if (n == 2) {
			mq_r_strbuf(&r, fake_seen[5], 256);
			mq_r_strbuf(&r, fake_seen[6], 256);
		}
		snprintf(fake_seen[7], 256, "%s", r.bad || mq_r_left(&r) ?
			 "bad" : "ok");
		mq_w_str(&b, "member-1");
		mq_w_u32(&b, 3);
		mq_w_u32(&b, 2);
		mq_w_str(&b, "a");
		mq_w_u32(&b, 0);
		mq_w_str(&b, "b");
		mq_w_u32(&b, 5);
		fake_reply(&w, f.id, f.type, 0, "", &b);
		write_full(fd, w.p, w.len);
		if (fake_read(fd, buf, sizeof buf, &f) < 0)
			goto out;
		/* describe: one group, one member, one offset */
		mq_w_reset(&w);
		mq_w_reset(&b);
		mq_w_u32(&b, 1);
		mq_w_str(&b, "g");
		mq_w_str(&b, "stable");
		mq_w_u32(&b, 3);
		mq_w_u32(&b, 1);
		mq_w_str(&b, "member-1");
		mq_w_str(&b, "cli");
		mq_w_u32(&b, 1);
		mq_w_str(&b, "a");
		mq_w_u32(&b, 0);
		mq_w_u32(&b, 1);
		mq_w_str(&b, "a");
		mq_w_u32(&b, 0);
		mq_w_u64(&b, 17);
		mq_w_u64(&b, 99);
		fake_reply(&w, f.id, f.type, 0, "", &b);
		write_full(fd, w.p, w.len);
		if (fake_read(fd, buf, sizeof buf, &f) < 0)
			goto out;
		/* describe again: a member count that cannot fit */
		mq_w_reset(&w);
		mq_w_reset(&b);
		mq_w_u32(&b, 1);
		mq_w_str(&b, "g");
		mq_w_str(&b, "stable");
		mq_w_u32(&b, 3);
		mq_w_u32(&b, 100000);
		mq_w_str(&b, "m");
	}
	fake_reply(&w, f.id, f.type, 0, "", &b);
	write_full(fd, w.p, w.len);
	fake_drain(fd);
out:
	mq_w_free(&w);
	mq_w_free(&b);
}

TEST(fake_decoding_is_bounded)
{
	struct fake fk;
	mq_client *c = NULL;
	mq_topic_meta *m = NULL;
	mq_group_info *g = NULL;
	mq_assignment a;
	size_t n = 0;
	mq_err err;
	const char *topics[] = { "a", "b" };

	MUST(fake_start(&fk, script_decode, 3) == 0);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ_INT(mq_client_open(fk.addr, &quick, &c, &err), 0);
		if (!c)
			continue;
		CHECK_EQ_INT(mq_client_metadata(c, NULL, 0, &m, &n, &err), -1);
		CHECK_EQ_INT(err.code, MQ_E_CORRUPT);
		CHECK(m == NULL && n == 0);
		mq_client_close(c);
		c = NULL;
	}
	CHECK_EQ_INT(mq_client_open(fk.addr, &quick, &c, &err), 0);
	if (c) {
		CHECK_EQ_INT(mq_client_join(c, "grp", "", "me", 6000, topics, 2,
					    &a, &err), 0);
		CHECK(strcmp(a.member_id, "member-1") == 0);
		CHECK_EQ_INT(a.generation, 3);
		CHECK_EQ_INT(a.n, 2);
		if (a.n == 2) {
			CHECK(strcmp(a.parts[0].topic, "a") == 0);
			CHECK_EQ_INT(a.parts[0].partition, 0);
			CHECK(strcmp(a.parts[1].topic, "b") == 0);
			CHECK_EQ_INT(a.parts[1].partition, 5);
		}
		mq_assignment_free(&a);
		CHECK_EQ_INT(mq_client_describe_groups(c, "g", &g, &n, &err), 0);
		CHECK_EQ_INT(n, 1);
		if (n == 1) {
			CHECK(strcmp(g[0].name, "g") == 0);
			CHECK(strcmp(g[0].state, "stable") == 0);
			CHECK_EQ_INT(g[0].generation, 3);
			CHECK_EQ_INT(g[0].nmembers, 1);
			CHECK(strcmp(g[0].members[0].member_id, "member-1") == 0);
			CHECK(strcmp(g[0].members[0].client, "cli") == 0);
			CHECK_EQ_INT(g[0].members[0].n, 1);
			CHECK_EQ_INT(g[0].noffsets, 1);
			CHECK(strcmp(g[0].offsets[0].topic, "a") == 0);
			CHECK_EQ_INT(g[0].offsets[0].offset, 17);
			CHECK_EQ_INT(g[0].offsets[0].commit_ms, 99);
		}
		mq_group_info_free(g, n);
		CHECK_EQ_INT(mq_client_describe_groups(c, NULL, &g, &n, &err), -1);
		CHECK_EQ_INT(err.code, MQ_E_CORRUPT);
		CHECK(g == NULL && n == 0);
		mq_client_close(c);
	}
	fake_stop(&fk);
	CHECK(strcmp(fake_seen[0], "grp") == 0);
	CHECK(strcmp(fake_seen[1], "") == 0);
	CHECK(strcmp(fake_seen[2], "me") == 0);
	CHECK(strcmp(fake_seen[3], "6000") == 0);
	CHECK(strcmp(fake_seen[4], "2") == 0);
	CHECK(strcmp(fake_seen[5], "a") == 0);
	CHECK(strcmp(fake_seen[6], "b") == 0);
	CHECK(strcmp(fake_seen[7], "ok") == 0);
}

/* A oneway produce is sent and not waited for. */
static uint16_t fake_flags_seen;

static void script_oneway(int fd, int conn)
{
	uint8_t buf[4096];
	mq_frame f;

	(void)conn;
	if (fake_answer_status(fd) < 0 || fake_read(fd, buf, sizeof buf, &f) < 0)
		return;
	fake_flags_seen = f.flags;
	if (fake_answer_status(fd) == 0)
		fake_drain(fd);
}

TEST(fake_oneway_call_returns_at_once)
{
	struct fake fk;
	mq_client *c = NULL;
	mq_status_info st;
	mq_reply r;
	mq_wbuf w;
	mq_err err;

	MUST(fake_start(&fk, script_oneway, 1) == 0);
	CHECK_EQ_INT(mq_client_open(fk.addr, &quick, &c, &err), 0);
	if (c) {
		mq_w_init(&w);
		mq_req_produce(&w, mq_client_next_id(c), "t", 0, NULL, -1, 0,
			       "x", 1);
		CHECK_EQ_INT(mq_client_call(c, &w, &r, &err), 0);
		CHECK_EQ_INT(r.code, 0);
		CHECK_EQ_INT(mq_client_status(c, &st, &err), 0);
		/* Too large for the announced 1 MiB frame: refused locally. */
		static uint8_t big[2u << 20];
		mq_w_reset(&w);
		mq_req_produce(&w, mq_client_next_id(c), "t", 0, NULL, -1, 1,
			       big, sizeof big);
		CHECK_EQ_INT(mq_client_call(c, &w, &r, &err), -1);
		CHECK_EQ_INT(err.code, MQ_E_TOO_LARGE);
		mq_w_free(&w);
		mq_client_close(c);
	}
	fake_stop(&fk);
	CHECK_EQ_INT(fake_flags_seen, MQ_F_NOREPLY);
}

/* ================= against a real broker ================= */

static char broker_bin[4096];

struct broker {
	pid_t pid;
	char tmp[4096];
	char dir[4200];
	char listen[4200];
	char addr[4200];
	char log[4200];
};

static void broker_dump_log(const struct broker *b)
{
	FILE *f = fopen(b->log, "r");
	char line[1024];

	if (!f)
		return;
	fprintf(stderr, "--- broker log (%s) ---\n", b->log);
	while (fgets(line, sizeof line, f))
		fprintf(stderr, "broker: %s", line);
	fclose(f);
}

/* Start mq-brokerd listening on a unix socket in the test's directory
 * (or on a free TCP port), with one extra option if not NULL, and wait
 * until it answers. */
static int broker_start(struct broker *b, const char *flush, bool tcp,
			const char *extra)
{
	mq_err err;

	memset(b, 0, sizeof *b);
	b->pid = -1;
	snprintf(b->tmp, sizeof b->tmp, "%s", harness_tmpdir());
	snprintf(b->dir, sizeof b->dir, "%s/data", b->tmp);
	snprintf(b->log, sizeof b->log, "%s/broker.log", b->tmp);
	if (tcp) {
		int port = free_port();
		if (port <= 0)
			return -1;
		snprintf(b->listen, sizeof b->listen, "127.0.0.1:%d", port);
	} else {
		snprintf(b->listen, sizeof b->listen, "unix:%s/sock", b->tmp);
	}
	snprintf(b->addr, sizeof b->addr, "%s", b->listen);
	if (mkdir(b->dir, 0755) < 0)
		return -1;
	fflush(NULL);
	b->pid = fork();
	if (b->pid < 0)
		return -1;
	if (b->pid == 0) {
		int fd = open(b->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(broker_bin, "mq-brokerd", "-d", b->dir, "-l", b->listen,
		      "--flush", flush, extra, (char *)NULL);
		_exit(127);
	}
	{
		int st;

		switch (broker_wait_ready(b->pid, b->addr, 5000, &st, &err)) {
		case 0:
			return 0;
		case -1:
			fprintf(stderr, "broker exited at start (status %d)\n",
				st);
			b->pid = -1;
			broker_dump_log(b);
			return -1;
		}
	}
	fprintf(stderr, "broker did not answer at %s within 5 s: %s\n",
		b->addr, err.msg);
	return -1;
}

/* SIGTERM, wait up to 5 s, then SIGKILL. A clean stop exits 0. */
static void broker_stop(struct broker *b)
{
	int st;

	if (b->pid <= 0)
		return;
	st = broker_sigterm(b->pid, 5000);
	if (st == -1) {
		fprintf(stderr, "broker ignored SIGTERM for 5 s; killed it\n");
		harness_cur_failed = 1;
	} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "broker did not exit 0 on SIGTERM (status 0x%x)\n",
			st);
		harness_cur_failed = 1;
	}
	b->pid = -1;
}

static mq_client *open_client(const struct broker *b)
{
	mq_client_opts o = { .connect_timeout_ms = 2000,
				   .request_timeout_ms = 10000 };
	mq_client *c = NULL;
	mq_err err;

	if (mq_client_open(b->addr, &o, &c, &err) < 0) {
		fprintf(stderr, "open %s: %s\n", b->addr, err.msg);
		return NULL;
	}
	return c;
}

/* A test body run between broker_start and broker_stop. */
#define BROKER_TEST(name, flush, tcp, extra) \
	static void name##_body(struct broker *b); \
	TEST(name) \
	{ \
		struct broker b; \
		if (broker_start(&b, flush, tcp, extra) < 0) { \
			harness_cur_failed = 1; \
		} else { \
			name##_body(&b); \
		} \
		broker_stop(&b); \
		if (harness_cur_failed) \
			broker_dump_log(&b); \
	} \
	static void name##_body(struct broker *b)

static bool have_broker;

/* Run a broker test, or report it skipped while there is no broker. */
#define RUN_B(name) do { \
	if (have_broker) { \
		RUN(name); \
	} else { \
		printf("ok %d - %s # skip broker not built\n", ++harness_n, \
		       #name); \
		fflush(stdout); \
	} } while (0)

/* Check that a call fails with code; print what it did instead. */
static void expect_code(const char *what, int rc, const mq_err *err,
			int code, int line)
{
	if (rc == -1 && err->code == code)
		return;
	fprintf(stderr, "t_client.c:%d: %s: want %s, got rc %d code %s (%s)\n",
		line, what, mq_code_name(code), rc,
		rc < 0 ? mq_code_name(err->code) : "-", rc < 0 ? err->msg : "");
	harness_cur_failed = 1;
}
#define EXPECT_CODE(call, code) expect_code(#call, (call), &err, code, __LINE__)

/* Check that a call succeeds; print the error otherwise. */
static bool expect_ok(const char *what, int rc, const mq_err *err, int line)
{
	if (rc == 0)
		return true;
	fprintf(stderr, "t_client.c:%d: %s failed: %s (%s)\n", line, what,
		mq_code_name(err->code), err->msg);
	harness_cur_failed = 1;
	return false;
}
#define OK(call) expect_ok(#call, (call), &err, __LINE__)

BROKER_TEST(status_fields, "sync", false, NULL)
{
	mq_client *c = open_client(b);
	mq_status_info st;
	mq_err err;
	char real_dir[4096], real_seen[4096];

	MUST(c);
	if (OK(mq_client_status(c, &st, &err))) {
		CHECK(st.version[0] != '\0');
		CHECK_EQ_INT(st.proto, MQ_PROTO_VERSION);
		CHECK(st.uptime_ms >= 0 && st.uptime_ms < 60000);
		CHECK(strcmp(st.flush, "sync") == 0);
		CHECK(st.connections >= 1);
		CHECK_EQ_INT(st.topics, 0);
		CHECK_EQ_INT(st.pid, b->pid);
		CHECK(st.max_frame >= 1024);
		CHECK(st.max_message > 0 && st.max_message <= st.max_frame);
		CHECK_EQ_INT(mq_client_max_frame(c), st.max_frame);
		CHECK_EQ_INT(mq_client_max_message(c), st.max_message);
		CHECK(realpath(b->dir, real_dir) != NULL);
		CHECK(realpath(st.data_dir, real_seen) != NULL &&
		      strcmp(real_dir, real_seen) == 0);
	}
	mq_client_close(c);
}

BROKER_TEST(create_topic_and_metadata, "async", false, NULL)
{
	mq_client *c = open_client(b);
	mq_topic_meta *m = NULL;
	mq_status_info st;
	size_t n = 0;
	mq_err err;
	const char *one[] = { "orders" }, *two[] = { "orders", "nope" };

	MUST(c);
	OK(mq_client_create_topic(c, "orders", 3, &err));
	EXPECT_CODE(mq_client_create_topic(c, "orders", 3, &err), MQ_E_EXISTS);
	EXPECT_CODE(mq_client_create_topic(c, "zero", 0, &err), MQ_E_INVAL);
	if (OK(mq_client_metadata(c, one, 1, &m, &n, &err))) {
		CHECK_EQ_INT(n, 1);
		if (n == 1) {
			CHECK(strcmp(m[0].name, "orders") == 0);
			CHECK_EQ_INT(m[0].code, 0);
			CHECK_EQ_INT(m[0].nparts, 3);
			for (int i = 0; i < m[0].nparts; i++) {
				CHECK_EQ_INT(m[0].parts[i].id, i);
				CHECK_EQ_INT(m[0].parts[i].start, 0);
				CHECK_EQ_INT(m[0].parts[i].end, 0);
				CHECK_EQ_INT(m[0].parts[i].visible, 0);
			}
		}
		mq_topic_meta_free(m, n);
	}
	if (OK(mq_client_metadata(c, two, 2, &m, &n, &err))) {
		CHECK_EQ_INT(n, 2);
		if (n == 2) {
			CHECK(strcmp(m[1].name, "nope") == 0);
			CHECK_EQ_INT(m[1].code, MQ_E_NO_TOPIC);
			CHECK_EQ_INT(m[1].nparts, 0);
		}
		mq_topic_meta_free(m, n);
	}
	/* All topics. */
	OK(mq_client_create_topic(c, "other", 1, &err));
	if (OK(mq_client_metadata(c, NULL, 0, &m, &n, &err))) {
		CHECK_EQ_INT(n, 2);
		int seen = 0;
		for (size_t i = 0; i < n; i++)
			seen |= (strcmp(m[i].name, "orders") == 0 ? 1 : 0) |
				(strcmp(m[i].name, "other") == 0 ? 2 : 0);
		CHECK_EQ_INT(seen, 3);
		mq_topic_meta_free(m, n);
	}
	if (OK(mq_client_status(c, &st, &err)))
		CHECK_EQ_INT(st.topics, 2);
	mq_client_close(c);
}

/* Produce to several partitions, fetch everything back. */
static void round_trip(const struct broker *b)
{
	mq_client *c = open_client(b);
	mq_batch_builder bb;
	mq_produce_result pr;
	mq_fetch_result fr;
	char vals[32][64];
	mq_err err;
	int64_t off;

	MUST(c);
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	OK(mq_client_create_topic(c, "rt", 3, &err));
	for (int p = 0; p < 3; p++) {
		char prefix[16];
		snprintf(prefix, sizeof prefix, "p%d", p);
		for (int k = 0; k < 2; k++) {
			MUST(make_batch(&bb, prefix, k * 5, 5, -1, -1, -1) == 0);
			if (OK(mq_client_produce(c, "rt", p, NULL, -1, bb.buf,
						 bb.len, &pr, &err))) {
				CHECK_EQ_INT(pr.partition, p);
				CHECK_EQ_INT(pr.base_offset, k * 5);
				CHECK(!pr.duplicate);
			}
		}
	}
	for (int p = 0; p < 3; p++) {
		if (!OK(mq_client_fetch(c, "rt", p, 0, 1 << 20, 0, &fr, &err)))
			continue;
		CHECK_EQ_INT(fr.partition, p);
		CHECK_EQ_INT(fr.start, 0);
		CHECK_EQ_INT(fr.end, 10);
		CHECK_EQ_INT(fr.visible, 10);
		CHECK_EQ_INT(collect(fr.batches, fr.len, 0, vals, 32), 10);
		for (int i = 0; i < 10; i++) {
			char want[64];
			snprintf(want, sizeof want, "p%d-%d", p, i);
			CHECK(strcmp(vals[i], want) == 0);
		}
		/* From the middle of a batch: it comes whole, we skip. */
		if (OK(mq_client_fetch(c, "rt", p, 7, 1 << 20, 0, &fr, &err))) {
			CHECK_EQ_INT(collect(fr.batches, fr.len, 7, vals, 32), 3);
			char want[64];
			snprintf(want, sizeof want, "p%d-7", p);
			CHECK(strcmp(vals[0], want) == 0);
		}
	}
	/* A routing key picks the partition by its hash. */
	MUST(make_batch(&bb, "keyed", 0, 1, -1, -1, -1) == 0);
	if (OK(mq_client_produce(c, "rt", -1, "user-42", 7, bb.buf, bb.len,
				 &pr, &err)))
		CHECK_EQ_INT(pr.partition, mq_partition_for_key("user-42", 7, 3));
	/* Latest and earliest offsets. */
	if (OK(mq_client_list_offset(c, "rt", 1, -1, &off, &err)))
		CHECK(off == 10 || off == 11);
	if (OK(mq_client_list_offset(c, "rt", 1, -2, &off, &err)))
		CHECK_EQ_INT(off, 0);
	mq_bb_free(&bb);
	mq_client_close(c);
}

BROKER_TEST(produce_fetch_unix, "sync", false, NULL)
{
	round_trip(b);
}

BROKER_TEST(produce_fetch_tcp, "async", true, NULL)
{
	round_trip(b);
}

/* Replies of several MiB: the receive buffer grows, then shrinks back. */
BROKER_TEST(large_fetch, "async", false, NULL)
{
	enum { N = 8, SIZE = 900 * 1024 };
	mq_client *c = open_client(b);
	mq_batch_builder bb;
	mq_produce_result pr;
	mq_fetch_result fr;
	mq_err err;
	uint8_t *val = malloc(SIZE);

	MUST(c && val);
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	CHECK(mq_client_max_message(c) >= SIZE);
	OK(mq_client_create_topic(c, "big", 1, &err));
	for (int i = 0; i < N; i++) {
		for (size_t k = 0; k < SIZE; k++)
			val[k] = (uint8_t)(k * 7 + (size_t)i);
		mq_bb_reset(&bb);
		MUST(mq_bb_add(&bb, mq_now_ms(), NULL, -1, val, SIZE, NULL, 0,
			       &err) == 0);
		MUST(mq_bb_finish(&bb, -1, -1, -1, &err) == 0);
		if (OK(mq_client_produce(c, "big", 0, NULL, -1, bb.buf, bb.len,
					 &pr, &err)))
			CHECK_EQ_INT(pr.base_offset, i);
	}
	if (OK(mq_client_fetch(c, "big", 0, 0, 12u << 20, 0, &fr, &err))) {
		size_t pos = 0;
		int seen = 0;
		CHECK(fr.len > 4u * SIZE);
		while (pos < fr.len) {
			mq_batch_iter it;
			mq_record r;
			mq_batch_hdr h;
			if (mq_batch_parse_header(fr.batches + pos, fr.len - pos, &h,
						  &err) < 0 ||
			    mq_batch_size(&h) > fr.len - pos ||
			    mq_batch_iter_init(&it, fr.batches + pos,
					       mq_batch_size(&h), &err) < 0 ||
			    mq_batch_iter_next(&it, &r, &err) != 1) {
				CHECK(!"a whole, valid batch");
				break;
			}
			CHECK_EQ_INT(r.offset, seen);
			CHECK_EQ_INT(r.value_len, SIZE);
			bool same = r.value_len == SIZE;
			for (size_t k = 0; same && k < SIZE; k++)
				same = r.value[k] == (uint8_t)(k * 7 + (size_t)seen);
			CHECK(same);
			seen++;
			pos += mq_batch_size(&h);
		}
		CHECK(seen >= 4 && seen <= N);
	}
	/* And small replies after the big one. */
	int64_t off;
	if (OK(mq_client_list_offset(c, "big", 0, -1, &off, &err)))
		CHECK_EQ_INT(off, N);
	free(val);
	mq_bb_free(&bb);
	mq_client_close(c);
}

BROKER_TEST(fetch_out_of_range, "sync", false, NULL)
{
	mq_client *c = open_client(b);
	mq_batch_builder bb;
	mq_produce_result pr;
	mq_fetch_result fr;
	mq_err err;

	MUST(c);
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	OK(mq_client_create_topic(c, "oor", 1, &err));
	EXPECT_CODE(mq_client_fetch(c, "oor", 0, 5, 1 << 20, 0, &fr, &err),
		    MQ_E_OFFSET_RANGE);
	CHECK_EQ_INT(fr.partition, 0);
	CHECK_EQ_INT(fr.start, 0);
	CHECK_EQ_INT(fr.end, 0);
	MUST(make_batch(&bb, "v", 0, 3, -1, -1, -1) == 0);
	OK(mq_client_produce(c, "oor", 0, NULL, -1, bb.buf, bb.len, &pr, &err));
	EXPECT_CODE(mq_client_fetch(c, "oor", 0, 10, 1 << 20, 0, &fr, &err),
		    MQ_E_OFFSET_RANGE);
	CHECK_EQ_INT(fr.start, 0);
	CHECK_EQ_INT(fr.end, 3);
	EXPECT_CODE(mq_client_fetch(c, "oor", 0, -1, 1 << 20, 0, &fr, &err),
		    MQ_E_OFFSET_RANGE);
	/* Exactly at the end is not out of range: just nothing yet. */
	if (OK(mq_client_fetch(c, "oor", 0, 3, 1 << 20, 0, &fr, &err))) {
		CHECK_EQ_INT(fr.len, 0);
		CHECK_EQ_INT(fr.end, 3);
	}
	/* The client is still usable after all those errors. */
	if (OK(mq_client_fetch(c, "oor", 0, 0, 1 << 20, 0, &fr, &err)))
		CHECK(fr.len > 0);
	/* Records deleted below an offset are out of range afterwards. */
	int64_t start = -1;
	if (OK(mq_client_delete_records(c, "oor", 0, 2, &start, &err))) {
		CHECK_EQ_INT(start, 2);
		EXPECT_CODE(mq_client_fetch(c, "oor", 0, 0, 1 << 20, 0, &fr,
					    &err), MQ_E_OFFSET_RANGE);
		CHECK_EQ_INT(fr.start, 2);
	}
	mq_bb_free(&bb);
	mq_client_close(c);
}

BROKER_TEST(pipelining, "sync", false, NULL)
{
	enum { N = 100 };
	mq_client *c = open_client(b);
	mq_batch_builder bb;
	mq_wbuf w;
	mq_reply r;
	mq_err err;
	uint32_t ids[N];
	int64_t base[N];
	int got = 0;

	MUST(c);
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	OK(mq_client_create_topic(c, "pipe", 1, &err));
	mq_w_init(&w);
	for (int i = 0; i < N; i++) {
		MUST(make_batch(&bb, "m", i, 1, -1, -1, -1) == 0);
		ids[i] = mq_client_next_id(c);
		base[i] = -1;
		mq_req_produce(&w, ids[i], "pipe", 0, NULL, -1, 1, bb.buf, bb.len);
	}
	MUST(!w.oom);
	OK(mq_client_send(c, w.p, w.len, &err));
	for (int k = 0; k < N; k++) {
		mq_produce_result pr;
		int rc = mq_client_recv(c, 10000, &r, &err);
		if (rc != 1) {
			fprintf(stderr, "reply %d: rc %d %s\n", k, rc,
				rc < 0 ? err.msg : "timeout");
			harness_cur_failed = 1;
			break;
		}
		CHECK_EQ_INT(r.type, MQ_T_PRODUCE);
		int i = 0;
		while (i < N && ids[i] != r.id)
			i++;
		CHECK(i < N);
		if (i == N)
			continue;
		CHECK_EQ_INT(base[i], -1);       /* one reply per request */
		if (OK(mq_produce_result_decode(&r, &pr, &err))) {
			base[i] = pr.base_offset;
			got++;
		}
	}
	CHECK_EQ_INT(got, N);
	/* Order within the partition is the order of sending. */
	for (int i = 0; i < N; i++)
		CHECK_EQ_INT(base[i], i);
	mq_fetch_result fr;
	char vals[N][64];
	if (OK(mq_client_fetch(c, "pipe", 0, 0, 1 << 20, 0, &fr, &err))) {
		CHECK_EQ_INT(fr.end, N);
		CHECK_EQ_INT(collect(fr.batches, fr.len, 0, vals, N), N);
		CHECK(strcmp(vals[N - 1], "m-99") == 0);
	}
	mq_w_free(&w);
	mq_bb_free(&bb);
	mq_client_close(c);
}

BROKER_TEST(long_poll, "sync", false, NULL)
{
	mq_client *a = open_client(b), *p = open_client(b);
	mq_batch_builder bb;
	mq_produce_result pr;
	mq_fetch_result fr;
	mq_reply r;
	mq_wbuf w;
	mq_err err;
	char vals[4][64];
	int64_t t0, t1;

	MUST(a && p);
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	OK(mq_client_create_topic(p, "lp", 1, &err));

	/* Nothing arrives: the fetch waits about max_wait, then is empty. */
	t0 = mq_mono_ms();
	if (OK(mq_client_fetch(a, "lp", 0, 0, 1 << 20, 300, &fr, &err))) {
		t1 = mq_mono_ms() - t0;
		CHECK_EQ_INT(fr.len, 0);
		CHECK(t1 >= 250 && t1 < 3000);
		if (t1 < 250 || t1 >= 3000)
			fprintf(stderr, "empty long poll took %" PRId64 " ms\n", t1);
	}

	mq_w_init(&w);
	uint32_t id = mq_client_next_id(a);
	mq_req_fetch(&w, id, "lp", 0, 0, 1 << 20, 5000);
	OK(mq_client_send(a, w.p, w.len, &err));
	sleep_ms(200);
	CHECK_EQ_INT(mq_client_recv(a, 0, &r, &err), 0);   /* still parked */
	MUST(make_batch(&bb, "late", 0, 1, -1, -1, -1) == 0);
	t0 = mq_mono_ms();
	OK(mq_client_produce(p, "lp", 0, NULL, -1, bb.buf, bb.len, &pr, &err));
	int rc = mq_client_recv(a, 6000, &r, &err);
	t1 = mq_mono_ms() - t0;
	CHECK_EQ_INT(rc, 1);
	if (rc == 1) {
		CHECK_EQ_INT(r.id, id);
		CHECK(t1 < 1000);
		fprintf(stderr, "long poll answered %" PRId64 " ms after the produce\n",
			t1);
		if (OK(mq_fetch_result_decode(&r, &fr, &err))) {
			CHECK_EQ_INT(collect(fr.batches, fr.len, 0, vals, 4), 1);
			CHECK(strcmp(vals[0], "late-0") == 0);
		}
	}
	mq_w_free(&w);
	mq_bb_free(&bb);
	mq_client_close(a);
	mq_client_close(p);
}

BROKER_TEST(unknown_topic, "async", false, "--no-auto-create")
{
	mq_client *c = open_client(b);
	mq_batch_builder bb;
	mq_produce_result pr;
	mq_fetch_result fr;
	mq_status_info st;
	mq_err err;
	int64_t off;

	MUST(c);
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	MUST(make_batch(&bb, "v", 0, 1, -1, -1, -1) == 0);
	EXPECT_CODE(mq_client_produce(c, "nope", 0, NULL, -1, bb.buf, bb.len,
				      &pr, &err), MQ_E_NO_TOPIC);
	EXPECT_CODE(mq_client_fetch(c, "nope", 0, 0, 1000, 0, &fr, &err),
		    MQ_E_NO_TOPIC);
	EXPECT_CODE(mq_client_list_offset(c, "nope", 0, -1, &off, &err),
		    MQ_E_NO_TOPIC);
	OK(mq_client_create_topic(c, "yes", 2, &err));
	EXPECT_CODE(mq_client_fetch(c, "yes", 2, 0, 1000, 0, &fr, &err),
		    MQ_E_NO_PARTITION);
	EXPECT_CODE(mq_client_produce(c, "yes", 7, NULL, -1, bb.buf, bb.len,
				      &pr, &err), MQ_E_NO_PARTITION);
	OK(mq_client_status(c, &st, &err));
	mq_bb_free(&bb);
	mq_client_close(c);
}

/* Names of the entries of dir other than those listed; "" if none. */
static void extra_entries(const char *dir, const char *const *known,
			  char *out, size_t size)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	out[0] = '\0';
	if (!d)
		return;
	while ((e = readdir(d))) {
		bool ok = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
		for (int i = 0; known[i] && !ok; i++)
			ok = strcmp(e->d_name, known[i]) == 0;
		if (!ok) {
			size_t n = strlen(out);
			snprintf(out + n, size - n, " %s", e->d_name);
		}
	}
	closedir(d);
}

BROKER_TEST(invalid_topic_name, "sync", false, NULL)
{
	mq_client *c = open_client(b);
	mq_batch_builder bb;
	mq_produce_result pr;
	mq_fetch_result fr;
	mq_err err;
	char path[4400], extra[1024];
	const char *bad[] = { "../x", "a/b", ".hidden", "", "..", NULL };
	const char *tmp_known[] = { "data", "sock", "broker.log", NULL };
	struct stat sb;

	MUST(c);
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	MUST(make_batch(&bb, "v", 0, 1, -1, -1, -1) == 0);
	for (int i = 0; bad[i]; i++) {
		EXPECT_CODE(mq_client_create_topic(c, bad[i], 1, &err),
			    MQ_E_NAME);
		EXPECT_CODE(mq_client_produce(c, bad[i], 0, NULL, -1, bb.buf,
					      bb.len, &pr, &err), MQ_E_NAME);
	}
	EXPECT_CODE(mq_client_fetch(c, "../x", 0, 0, 1000, 0, &fr, &err),
		    MQ_E_NAME);
	/* Nothing was created beside the data directory or in it. */
	snprintf(path, sizeof path, "%s/x", b->tmp);
	CHECK(stat(path, &sb) < 0 && errno == ENOENT);
	snprintf(path, sizeof path, "%s/x", b->dir);
	CHECK(stat(path, &sb) < 0 && errno == ENOENT);
	extra_entries(b->tmp, tmp_known, extra, sizeof extra);
	CHECK(extra[0] == '\0');
	if (extra[0])
		fprintf(stderr, "unexpected beside the data dir:%s\n", extra);
	mq_bb_free(&bb);
	mq_client_close(c);
}

BROKER_TEST(idempotent_produce, "sync", false, NULL)
{
	mq_client *c = open_client(b);
	mq_batch_builder bb;
	mq_produce_result pr;
	mq_fetch_result fr;
	char vals[16][64];
	int64_t pid = -1;
	int16_t epoch = -1;
	mq_err err;

	MUST(c);
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	OK(mq_client_create_topic(c, "idem", 1, &err));
	MUST(OK(mq_client_init_producer(c, &pid, &epoch, &err)));
	CHECK(pid >= 0);
	CHECK(epoch >= 0);

	MUST(make_batch(&bb, "a", 0, 3, pid, epoch, 0) == 0);
	if (OK(mq_client_produce(c, "idem", 0, NULL, -1, bb.buf, bb.len, &pr,
				 &err))) {
		CHECK_EQ_INT(pr.base_offset, 0);
		CHECK(!pr.duplicate);
	}
	/* The same batch again (a retry): the original offsets. */
	if (OK(mq_client_produce(c, "idem", 0, NULL, -1, bb.buf, bb.len, &pr,
				 &err))) {
		CHECK_EQ_INT(pr.base_offset, 0);
		CHECK(pr.duplicate);
	}
	MUST(make_batch(&bb, "a", 3, 2, pid, epoch, 3) == 0);
	if (OK(mq_client_produce(c, "idem", 0, NULL, -1, bb.buf, bb.len, &pr,
				 &err))) {
		CHECK_EQ_INT(pr.base_offset, 3);
		CHECK(!pr.duplicate);
	}
	/* A gap in the sequence. */
	MUST(make_batch(&bb, "a", 10, 1, pid, epoch, 10) == 0);
	EXPECT_CODE(mq_client_produce(c, "idem", 0, NULL, -1, bb.buf, bb.len,
				      &pr, &err), MQ_E_SEQUENCE);
	/* Only one copy of each record is in the log. */
	if (OK(mq_client_fetch(c, "idem", 0, 0, 1 << 20, 0, &fr, &err))) {
		CHECK_EQ_INT(fr.end, 5);
		CHECK_EQ_INT(collect(fr.batches, fr.len, 0, vals, 16), 5);
		CHECK(strcmp(vals[2], "a-2") == 0);
		CHECK(strcmp(vals[3], "a-3") == 0);
	}
	mq_bb_free(&bb);
	mq_client_close(c);
}

/* A join that runs in its own thread (the broker holds it while the
 * other members rejoin). */
struct join_job {
	pthread_t th;
	mq_client *c;
	const char *group, *member;
	mq_assignment a;
	mq_err err;
	int rc;
};

static const char *group_topics[] = { "g4" };

static void *join_main(void *arg)
{
	struct join_job *j = arg;
	j->rc = mq_client_join(j->c, j->group, j->member, "t_client", 3000,
			       group_topics, 1, &j->a, &j->err);
	return NULL;
}

/* Heartbeat until the broker asks for a rejoin (up to ms). */
static int heartbeat_until_rebalance(mq_client *c, const char *member,
				     int32_t gen, int ms)
{
	mq_err err;
	for (int64_t end = mq_mono_ms() + ms; mq_mono_ms() < end;) {
		if (mq_client_heartbeat(c, "grp", member, gen, &err) < 0) {
			if (err.code != MQ_E_REBALANCE)
				fprintf(stderr, "heartbeat: %s (%s)\n",
					mq_code_name(err.code), err.msg);
			return err.code;
		}
		sleep_ms(50);
	}
	return 0;
}

static bool all_four(const mq_assignment *x, const mq_assignment *y)
{
	int seen = 0;
	for (size_t i = 0; x && i < x->n; i++)
		seen |= 1 << x->parts[i].partition;
	for (size_t i = 0; y && i < y->n; i++) {
		if (seen & (1 << y->parts[i].partition))
			return false;
		seen |= 1 << y->parts[i].partition;
	}
	return seen == 0xf;
}

BROKER_TEST(consumer_group, "sync", false, NULL)
{
	mq_client *ca = open_client(b), *cb = open_client(b), *adm;
	mq_assignment a1, a2;
	struct join_job jb;
	mq_group_info *g = NULL;
	size_t ng = 0;
	mq_err err;
	int code;

	adm = open_client(b);
	MUST(ca && cb && adm);
	OK(mq_client_create_topic(adm, "g4", 4, &err));

	/* A alone: everything. */
	MUST(OK(mq_client_join(ca, "grp", "", "t_client", 3000,
				  group_topics, 1, &a1, &err)));
	CHECK(a1.member_id[0] != '\0');
	CHECK_EQ_INT(a1.n, 4);
	CHECK(all_four(&a1, NULL));

	/* B joins; A learns of the rebalance and rejoins. */
	memset(&jb, 0, sizeof jb);
	jb.c = cb;
	jb.group = "grp";
	jb.member = "";
	MUST(pthread_create(&jb.th, NULL, join_main, &jb) == 0);
	code = heartbeat_until_rebalance(ca, a1.member_id, a1.generation, 8000);
	CHECK_EQ_INT(code, MQ_E_REBALANCE);
	if (!OK(mq_client_join(ca, "grp", a1.member_id, "t_client", 3000,
			       group_topics, 1, &a2, &err)))
		memset(&a2, 0, sizeof a2);
	pthread_join(jb.th, NULL);
	if (jb.rc < 0)
		fprintf(stderr, "B's join: %s (%s)\n",
			mq_code_name(jb.err.code), jb.err.msg);
	CHECK_EQ_INT(jb.rc, 0);
	CHECK(strcmp(a2.member_id, a1.member_id) == 0);
	CHECK(strcmp(jb.a.member_id, a1.member_id) != 0);
	CHECK(a2.generation > a1.generation);
	CHECK_EQ_INT(a2.generation, jb.a.generation);
	CHECK_EQ_INT(a2.n, 2);
	CHECK_EQ_INT(jb.a.n, 2);
	CHECK(all_four(&a2, &jb.a));
	OK(mq_client_heartbeat(ca, "grp", a2.member_id, a2.generation, &err));
	OK(mq_client_heartbeat(cb, "grp", jb.a.member_id, jb.a.generation, &err));

	/* Fencing: a commit from the old generation is refused. */
	mq_commit_entry ce = { "g4", a2.n ? a2.parts[0].partition : 0, 0 };
	EXPECT_CODE(mq_client_commit(ca, "grp", a1.member_id, a1.generation, 0,
				     &ce, 1, &err), MQ_E_GENERATION);
	if (a2.n) {
		OK(mq_client_commit(ca, "grp", a2.member_id, a2.generation, 0,
				    &ce, 1, &err));
	}

	if (OK(mq_client_describe_groups(adm, "grp", &g, &ng, &err))) {
		CHECK_EQ_INT(ng, 1);
		if (ng == 1) {
			CHECK(strcmp(g[0].name, "grp") == 0);
			CHECK_EQ_INT(g[0].generation, a2.generation);
			CHECK_EQ_INT(g[0].nmembers, 2);
			size_t parts = 0;
			for (size_t i = 0; i < g[0].nmembers; i++) {
				CHECK(strcmp(g[0].members[i].client, "t_client") == 0);
				parts += g[0].members[i].n;
			}
			CHECK_EQ_INT(parts, 4);
			CHECK_EQ_INT(g[0].noffsets, 1);
			if (g[0].noffsets == 1) {
				CHECK(strcmp(g[0].offsets[0].topic, "g4") == 0);
				CHECK_EQ_INT(g[0].offsets[0].partition,
					     ce.partition);
				CHECK_EQ_INT(g[0].offsets[0].offset, 0);
				CHECK(g[0].offsets[0].commit_ms > 0);
			}
		}
		mq_group_info_free(g, ng);
	}

	/* A goes away; B takes everything over. */
	mq_assignment_free(&a1);
	mq_client_close(ca);
	code = heartbeat_until_rebalance(cb, jb.a.member_id, jb.a.generation,
					 8000);
	CHECK_EQ_INT(code, MQ_E_REBALANCE);
	if (OK(mq_client_join(cb, "grp", jb.a.member_id, "t_client", 3000,
			      group_topics, 1, &a1, &err))) {
		CHECK(strcmp(a1.member_id, jb.a.member_id) == 0);
		CHECK(a1.generation > a2.generation);
		CHECK_EQ_INT(a1.n, 4);
		CHECK(all_four(&a1, NULL));
		mq_assignment_free(&a1);
	}
	mq_assignment_free(&a2);
	mq_assignment_free(&jb.a);
	mq_client_close(cb);
	mq_client_close(adm);
}

BROKER_TEST(oneway_produce, "async", false, NULL)
{
	mq_client *c = open_client(b);
	mq_batch_builder bb;
	mq_fetch_result fr;
	mq_reply r;
	mq_wbuf w;
	mq_err err;
	char vals[4][64];

	MUST(c);
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	OK(mq_client_create_topic(c, "ow", 1, &err));
	MUST(make_batch(&bb, "fire", 0, 2, -1, -1, -1) == 0);
	mq_w_init(&w);
	mq_req_produce(&w, mq_client_next_id(c), "ow", 0, NULL, -1, 0, bb.buf,
		       bb.len);
	OK(mq_client_call(c, &w, &r, &err));
	/* No reply comes for it; the data shows up. */
	if (OK(mq_client_fetch(c, "ow", 0, 0, 1 << 20, 2000, &fr, &err))) {
		CHECK_EQ_INT(collect(fr.batches, fr.len, 0, vals, 4), 2);
		CHECK(strcmp(vals[1], "fire-1") == 0);
	}
	mq_w_free(&w);
	mq_bb_free(&bb);
	mq_client_close(c);
}

BROKER_TEST(broker_killed, "sync", false, NULL)
{
	mq_client *c = open_client(b);
	mq_status_info st;
	mq_err err;
	int status;

	MUST(c);
	OK(mq_client_status(c, &st, &err));
	kill(b->pid, SIGKILL);
	waitpid(b->pid, &status, 0);
	b->pid = -1;
	EXPECT_CODE(mq_client_status(c, &st, &err), MQ_E_CONNECT);
	EXPECT_CODE(mq_client_status(c, &st, &err), MQ_E_CONNECT);
	mq_client_close(c);
	/* Nobody there any more. */
	EXPECT_CODE(mq_client_open(b->addr, NULL, &c, &err), MQ_E_CONNECT);
}

int main(void)
{
	const char *build = getenv("MQ_BUILD");

	snprintf(broker_bin, sizeof broker_bin, "%s/bin/mq-brokerd",
		 build && *build ? build : "build");
	have_broker = access(broker_bin, X_OK) == 0;

	RUN(open_refused_tcp);
	RUN(open_refused_unix_and_bad_address);
	RUN(encoders_follow_the_protocol);
	RUN(fake_open_reads_status_then_times_out);
	RUN(fake_garbage_is_corrupt);
	RUN(fake_partial_frames_survive_a_recv_timeout);
	RUN(fake_replies_out_of_order_match_by_id);
	RUN(fake_broker_errors_keep_the_client);
	RUN(fake_hang_up_is_a_connect_error);
	RUN(fake_decoding_is_bounded);
	RUN(fake_oneway_call_returns_at_once);

	RUN_B(status_fields);
	RUN_B(create_topic_and_metadata);
	RUN_B(produce_fetch_unix);
	RUN_B(produce_fetch_tcp);
	RUN_B(large_fetch);
	RUN_B(fetch_out_of_range);
	RUN_B(pipelining);
	RUN_B(long_poll);
	RUN_B(unknown_topic);
	RUN_B(invalid_topic_name);
	RUN_B(idempotent_produce);
	RUN_B(consumer_group);
	RUN_B(oneway_produce);
	RUN_B(broker_killed);
	return harness_done();
}
