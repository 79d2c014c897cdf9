/*
 * t_ep.c - the endpoint interface (lib/ep.h) and both its implementations.
 *
 * Most tests are written once against ep.h and run twice: over a real
 * mq-brokerd ($MQ_BUILD/bin/mq-brokerd, started in the test's directory
 * and stopped after it; skipped while it is not built) and over a bare
 * data directory (lib/ep_local.c). They check that a program sees the
 * same behaviour from both: events, errors, long polls woken by another
 * process, idempotent retries, consumer groups shared by several
 * processes, commit rules. The rest concern only the directory: turns at
 * the directory lock, a broker in the way, recovery of a torn tail,
 * read-only opens.
 */
#include "harness.h"
#include "broker_ready.h"

#include "batch.h"
#include "client.h"
#include "ep.h"
#include "lock.h"
#include "proto.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

/* ---- the two endpoints ---- */

static char broker_bin[4096];
static bool have_broker;

struct fx {
	bool local;
	pid_t broker;           /* broker mode: its pid */
	char tmp[4096];
	char dir[4200];         /* the data directory (both modes) */
	char addr[4200];
	char log[4200];
};

static void dump_log(const struct fx *f)
{
	FILE *fp;
	char line[1024];

	if (f->local || !(fp = fopen(f->log, "r")))
		return;
	fprintf(stderr, "--- broker log ---\n");
	while (fgets(line, sizeof line, fp))
		fprintf(stderr, "broker: %s", line);
	fclose(fp);
}

/* Start mq-brokerd on f->dir (extra: one more option, or NULL). */
static int broker_start(struct fx *f, const char *extra)
{
	fflush(NULL);
	f->broker = fork();
	if (f->broker < 0)
		return -1;
	if (f->broker == 0) {
		int fd = open(f->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(broker_bin, "mq-brokerd", "-d", f->dir, "-l", f->addr,
		      "--flush", "sync", extra, (char *)NULL);
		_exit(127);
	}
	{
		mq_err err;
		int st;

		switch (broker_wait_ready(f->broker, f->addr, 5000, &st, &err)) {
		case 0:
			return 0;
		case -1:
			f->broker = -1;
			dump_log(f);
			return -1;
		}
	}
	return -1;
}

static void broker_stop(struct fx *f)
{
	int st;

	if (f->broker <= 0)
		return;
	st = broker_sigterm(f->broker, 10000);
	if (st == -1) {
		fprintf(stderr, "broker ignored SIGTERM for 10 s; killed it\n");
		dump_log(f);
		harness_cur_failed = 1;
	}
	f->broker = -1;
}

static int fx_start(struct fx *f, bool local, const char *extra)
{
	memset(f, 0, sizeof *f);
	f->local = local;
	f->broker = -1;
	snprintf(f->tmp, sizeof f->tmp, "%s", harness_tmpdir());
	snprintf(f->dir, sizeof f->dir, "%s/data", f->tmp);
	snprintf(f->addr, sizeof f->addr, "unix:%s/sock", f->tmp);
	snprintf(f->log, sizeof f->log, "%s/broker.log", f->tmp);
	if (mkdir(f->dir, 0755) < 0)
		return -1;
	return local ? 0 : broker_start(f, extra);
}

/* Open an endpoint of the fixture's kind. partitions: for topics a
 * produce creates (the broker gets it from --partitions). */
static mq_ep *fx_open(const struct fx *f, bool sync, int partitions)
{
	mq_ep_opts o = { .timeout_ms = 10000, .client_name = "t_ep",
			 .local_sync = sync, .local_partitions = partitions };
	mq_ep *ep;
	mq_err err;

	if (f->local)
		o.dir = f->dir;
	else
		o.broker = f->addr;
	if (mq_ep_open(&o, &ep, &err) < 0) {
		fprintf(stderr, "open %s: %s\n", f->local ? f->dir : f->addr,
			err.msg);
		return NULL;
	}
	return ep;
}

/* A test body run once per endpoint. */
#define BOTH(name, extra) \
	static void name##_body(struct fx *f); \
	static void name##_run(bool local) \
	{ \
		struct fx f; \
		if (fx_start(&f, local, extra) < 0) { \
			fprintf(stderr, "fixture did not start\n"); \
			harness_cur_failed = 1; \
		} else { \
			name##_body(&f); \
		} \
		broker_stop(&f); \
		if (harness_cur_failed) \
			dump_log(&f); \
	} \
	TEST(name##_broker) { name##_run(false); } \
	TEST(name##_dir) { name##_run(true); } \
	static void name##_body(struct fx *f)

#define RUN_BOTH(name) do { \
	if (have_broker) { \
		RUN(name##_broker); \
	} else { \
		printf("ok %d - %s_broker # skip broker not built\n", \
		       ++harness_n, #name); \
		fflush(stdout); \
	} \
	RUN(name##_dir); \
	} while (0)

#define OK(call) expect_ok(#call, (call), &err, __LINE__)
#define EXPECT_CODE(call, code) expect_code(#call, (call), &err, code, __LINE__)

static bool expect_ok(const char *what, int rc, const mq_err *err, int line)
{
	if (rc == 0)
		return true;
	fprintf(stderr, "t_ep.c:%d: %s failed: %s (%s)\n", line, what,
		mq_code_name(err->code), err->msg);
	harness_cur_failed = 1;
	return false;
}

static void expect_code(const char *what, int rc, const mq_err *err,
			int code, int line)
{
	if (rc == 0) {
		fprintf(stderr, "t_ep.c:%d: %s succeeded; expected %s\n", line,
			what, mq_code_name(code));
		harness_cur_failed = 1;
	} else if (err->code != code) {
		fprintf(stderr, "t_ep.c:%d: %s: %s (%s); expected %s\n", line,
			what, mq_code_name(err->code), err->msg,
			mq_code_name(code));
		harness_cur_failed = 1;
	}
}

/* ---- batches and events ---- */

/* A batch of n records "<prefix>-<first+i>". */
static int make_batch(mq_batch_builder *bb, const char *prefix, int first,
		      int n, int64_t pid, int32_t seq)
{
	mq_err err;

	mq_bb_reset(bb);
	for (int i = 0; i < n; i++) {
		char val[64];
		int vl = snprintf(val, sizeof val, "%s-%d", prefix, first + i);
		if (mq_bb_add(bb, mq_now_ms(), NULL, -1, val, vl, NULL, 0,
			      &err) < 0)
			return -1;
	}
	return mq_bb_finish(bb, pid, pid >= 0 ? 0 : -1, seq, &err);
}

/* Wait for the next event (up to ms). 1 with ev, 0 on timeout, -1. */
static int next_event(mq_ep *ep, int ms, mq_ep_event *ev)
{
	mq_err err;
	int rc = mq_ep_wait(ep, ms, ev, &err);

	if (rc < 0)
		fprintf(stderr, "mq_ep_wait: %s\n", err.msg);
	return rc;
}

/* Send one batch with acks and wait for its event. */
static int produce1(mq_ep *ep, const char *topic, int32_t partition,
		    const mq_batch_builder *bb, mq_ep_event *ev)
{
	mq_err err;

	if (mq_ep_produce_send(ep, topic, partition, NULL, 0, 1, bb->buf,
			       bb->len, 7, &err) < 0) {
		fprintf(stderr, "produce_send: %s\n", err.msg);
		return -1;
	}
	if (next_event(ep, 10000, ev) != 1 || ev->type != MQ_EV_PRODUCE ||
	    ev->token != 7)
		return -1;
	return 0;
}

/* Fetch once and wait for the answer. */
static int fetch1(mq_ep *ep, const char *topic, int32_t partition,
		  int64_t offset, uint32_t max_wait, mq_ep_event *ev)
{
	mq_err err;

	if (mq_ep_fetch_send(ep, topic, partition, offset, 1 << 20, max_wait,
			     9, &err) < 0) {
		fprintf(stderr, "fetch_send: %s\n", err.msg);
		return -1;
	}
	if (next_event(ep, (int)max_wait + 10000, ev) != 1 ||
	    ev->type != MQ_EV_FETCH || ev->token != 9)
		return -1;
	return 0;
}

/* Values of the records at offset >= from in fetched batches; checks
 * offsets run without gaps. Returns the count, or -1. */
static int collect(const uint8_t *p, size_t len, int64_t from,
		   char vals[][64], int max, int64_t *next)
{
	size_t pos = 0;
	int n = 0;
	mq_err err;

	while (pos < len) {
		mq_batch_hdr h;
		mq_batch_iter it;
		mq_record r;
		int rc;

		if (mq_batch_parse_header(p + pos, len - pos, &h, &err) < 0 ||
		    mq_batch_size(&h) > len - pos ||
		    mq_batch_validate(p + pos, mq_batch_size(&h), NULL,
				      &err) < 0 ||
		    mq_batch_iter_init(&it, p + pos, mq_batch_size(&h),
				       &err) < 0)
			return -1;
		while ((rc = mq_batch_iter_next(&it, &r, &err)) == 1) {
			if (r.offset < from)
				continue;
			if (*next >= 0 && r.offset != *next) {
				fprintf(stderr, "offset %lld after %lld\n",
					(long long)r.offset,
					(long long)*next - 1);
				return -1;
			}
			*next = r.offset + 1;
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

/* Read a whole partition from offset 0: values into vals, count. */
static int read_all(mq_ep *ep, const char *topic, int32_t partition,
		    char vals[][64], int max)
{
	int64_t next = 0;
	int n = 0;

	for (;;) {
		mq_ep_event ev;
		int64_t at = next;
		int got;

		if (fetch1(ep, topic, partition, at, 0, &ev) < 0 || ev.code) {
			fprintf(stderr, "fetch at %lld: %s\n", (long long)at,
				ev.msg);
			return -1;
		}
		if (ev.fetch.len == 0)
			return n;
		got = collect(ev.fetch.batches, ev.fetch.len, at, vals + n,
			      max - n, &next);
		if (got <= 0)
			return -1;
		n += got;
	}
}

/* ================= both endpoints ================= */

BOTH(round_trip, "--partitions=3")
{
	mq_batch_builder bb;
	mq_ep_event ev;
	mq_status_info st;
	mq_topic_meta *m = NULL;
	size_t nm = 0;
	char vals[16][64];
	int64_t off;
	mq_err err;
	mq_ep *ep = fx_open(f, true, 3);

	MUST(ep);
	CHECK(mq_ep_is_local(ep) == f->local);
	CHECK(mq_ep_max_message(ep) >= 1000);
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	/* Created on first use with the default partition count. */
	for (int i = 0; i < 3; i++) {
		MUST(make_batch(&bb, "v", i * 2, 2, -1, -1) == 0);
		MUST(produce1(ep, "t", 1, &bb, &ev) == 0);
		CHECK_EQ_INT(ev.code, 0);
		CHECK_EQ_INT(ev.produce.partition, 1);
		CHECK_EQ_INT(ev.produce.base_offset, i * 2);
		CHECK(!ev.produce.duplicate);
	}
	CHECK_EQ_INT(mq_ep_outstanding(ep), 0);
	CHECK_EQ_INT(read_all(ep, "t", 1, vals, 16), 6);
	CHECK(strcmp(vals[0], "v-0") == 0 && strcmp(vals[5], "v-5") == 0);
	/* A fetch in the middle of a batch returns the whole batch. */
	MUST(fetch1(ep, "t", 1, 3, 0, &ev) == 0);
	CHECK_EQ_INT(ev.code, 0);
	CHECK(ev.fetch.len > 0);
	{
		mq_batch_hdr h;
		MUST(mq_batch_parse_header(ev.fetch.batches, ev.fetch.len, &h,
					   &err) == 0);
		CHECK_EQ_INT(h.base_offset, 2);
	}
	CHECK_EQ_INT(ev.fetch.start, 0);
	CHECK_EQ_INT(ev.fetch.end, 6);
	CHECK_EQ_INT(ev.fetch.visible, 6);
	if (OK(mq_ep_metadata(ep, NULL, 0, &m, &nm, &err))) {
		CHECK_EQ_INT(nm, 1);
		if (nm == 1) {
			CHECK(strcmp(m[0].name, "t") == 0);
			CHECK_EQ_INT(m[0].nparts, 3);
			CHECK_EQ_INT(m[0].parts[1].end, 6);
			CHECK_EQ_INT(m[0].parts[1].visible, 6);
			CHECK(m[0].parts[1].oldest_ts > 0);
			CHECK_EQ_INT(m[0].parts[0].end, 0);
		}
		mq_topic_meta_free(m, nm);
	}
	if (OK(mq_ep_list_offset(ep, "t", 1, -1, &off, &err)))
		CHECK_EQ_INT(off, 6);
	if (OK(mq_ep_list_offset(ep, "t", 1, -2, &off, &err)))
		CHECK_EQ_INT(off, 0);
	if (OK(mq_ep_list_offset(ep, "t", 1, 0, &off, &err)))
		CHECK_EQ_INT(off, 0);
	if (OK(mq_ep_list_offset(ep, "t", 1, mq_now_ms() + 60000, &off, &err)))
		CHECK_EQ_INT(off, 6);
	if (OK(mq_ep_status(ep, &st, &err))) {
		CHECK_EQ_INT(st.topics, 1);
		CHECK(st.data_bytes > 0);
		CHECK(strcmp(st.version, MQ_VERSION) == 0);
		CHECK(strstr(st.data_dir, "data") != NULL);
	}
	if (OK(mq_ep_delete_records(ep, "t", 1, 4, &off, &err)))
		CHECK_EQ_INT(off, 4);
	MUST(fetch1(ep, "t", 1, 4, 0, &ev) == 0);
	CHECK_EQ_INT(ev.fetch.start, 4);
	EXPECT_CODE(mq_ep_delete_records(ep, "t", 1, 7, &off, &err),
		    MQ_E_OFFSET_RANGE);
	mq_bb_free(&bb);
	mq_ep_close(ep);
}

BOTH(errors_are_the_same, NULL)
{
	mq_batch_builder bb;
	mq_ep_event ev;
	mq_topic_meta *m = NULL;
	size_t nm = 0;
	const char *q[2] = { "nosuch", "../bad" };
	mq_err err;
	mq_ep *ep = fx_open(f, true, 1);

	MUST(ep);
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	MUST(make_batch(&bb, "x", 0, 1, -1, -1) == 0);
	/* Per-request failures come back as events. */
	MUST(produce1(ep, "../bad", 0, &bb, &ev) == 0);
	CHECK_EQ_INT(ev.code, MQ_E_NAME);
	MUST(produce1(ep, "t", 0, &bb, &ev) == 0);
	CHECK_EQ_INT(ev.code, 0);
	MUST(produce1(ep, "t", 5, &bb, &ev) == 0);
	CHECK_EQ_INT(ev.code, MQ_E_NO_PARTITION);
	MUST(fetch1(ep, "nosuch", 0, 0, 0, &ev) == 0);
	CHECK_EQ_INT(ev.code, MQ_E_NO_TOPIC);
	MUST(fetch1(ep, "t", 3, 0, 0, &ev) == 0);
	CHECK_EQ_INT(ev.code, MQ_E_NO_PARTITION);
	MUST(fetch1(ep, "t", 0, 5, 0, &ev) == 0);
	CHECK_EQ_INT(ev.code, MQ_E_OFFSET_RANGE);
	CHECK_EQ_INT(ev.fetch.start, 0);
	CHECK_EQ_INT(ev.fetch.end, 1);
	/* At the end with no wait: an empty answer at once. */
	MUST(fetch1(ep, "t", 0, 1, 0, &ev) == 0);
	CHECK_EQ_INT(ev.code, 0);
	CHECK_EQ_INT(ev.fetch.len, 0);
	CHECK_EQ_INT(ev.fetch.end, 1);
	/* A record over the limit. */
	{
		size_t big = mq_ep_max_message(ep) + 10;
		char *v = calloc(1, big);
		MUST(v);
		mq_bb_reset(&bb);
		MUST(mq_bb_add(&bb, mq_now_ms(), NULL, -1, v, (int32_t)big,
			       NULL, 0, &err) == 0);
		MUST(mq_bb_finish(&bb, -1, -1, -1, &err) == 0);
		MUST(produce1(ep, "t", 0, &bb, &ev) == 0);
		CHECK_EQ_INT(ev.code, MQ_E_TOO_LARGE);
		free(v);
	}
	/* A damaged batch. */
	MUST(make_batch(&bb, "x", 0, 1, -1, -1) == 0);
	bb.buf[bb.len - 1] ^= 0x55;
	MUST(produce1(ep, "t", 0, &bb, &ev) == 0);
	CHECK_EQ_INT(ev.code, MQ_E_CORRUPT);
	/* Call-style requests fail with the same codes. */
	EXPECT_CODE(mq_ep_create_topic(ep, "t", 2, &err), MQ_E_EXISTS);
	EXPECT_CODE(mq_ep_create_topic(ep, "u", 0, &err), MQ_E_INVAL);
	EXPECT_CODE(mq_ep_create_topic(ep, "%DLQ%g", 1, &err), MQ_E_NAME);
	EXPECT_CODE(mq_ep_create_topic(ep, "a/b", 1, &err), MQ_E_NAME);
	CHECK(OK(mq_ep_create_topic(ep, "u", 2, &err)));
	{
		int64_t off;
		EXPECT_CODE(mq_ep_list_offset(ep, "nosuch", 0, -1, &off, &err),
			    MQ_E_NO_TOPIC);
		EXPECT_CODE(mq_ep_list_offset(ep, "u", 9, -1, &off, &err),
			    MQ_E_NO_PARTITION);
	}
	if (OK(mq_ep_metadata(ep, q, 2, &m, &nm, &err))) {
		CHECK_EQ_INT(nm, 2);
		if (nm == 2) {
			CHECK_EQ_INT(m[0].code, MQ_E_NO_TOPIC);
			CHECK(strcmp(m[0].name, "nosuch") == 0);
			CHECK_EQ_INT(m[1].code, MQ_E_NAME);
		}
		mq_topic_meta_free(m, nm);
	}
	/* A group's dead-letter topic is made with one partition. */
	MUST(make_batch(&bb, "d", 0, 1, -1, -1) == 0);
	MUST(produce1(ep, "%DLQ%g", -1, &bb, &ev) == 0);
	CHECK_EQ_INT(ev.code, 0);
	CHECK_EQ_INT(ev.produce.partition, 0);
	{
		const char *d[1] = { "%DLQ%g" };
		if (OK(mq_ep_metadata(ep, d, 1, &m, &nm, &err))) {
			CHECK_EQ_INT(m[0].nparts, 1);
			mq_topic_meta_free(m, nm);
		}
	}
	mq_bb_free(&bb);
	mq_ep_close(ep);
}

BOTH(pipelined_and_oneway, NULL)
{
	mq_batch_builder bb;
	mq_ep_event ev;
	char vals[64][64];
	bool seen[40] = { false };
	mq_err err;
	mq_ep *ep = fx_open(f, true, 1);
	int n = 0;

	MUST(ep);
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	/* Forty sends in flight, then their events (in any order). */
	for (int i = 0; i < 40; i++) {
		MUST(make_batch(&bb, "p", i, 1, -1, -1) == 0);
		MUST(OK(mq_ep_produce_send(ep, "t", 0, NULL, 0, 1, bb.buf,
					   bb.len, (uint64_t)i, &err)));
	}
	CHECK_EQ_INT(mq_ep_outstanding(ep), 40);
	while (next_event(ep, 5000, &ev) == 1) {
		CHECK_EQ_INT(ev.type, MQ_EV_PRODUCE);
		CHECK_EQ_INT(ev.code, 0);
		if (ev.token < 40) {
			CHECK(!seen[ev.token]);
			seen[ev.token] = true;
			CHECK_EQ_INT(ev.produce.base_offset, (int64_t)ev.token);
		}
		n++;
	}
	CHECK_EQ_INT(n, 40);
	/* Oneway: nothing to wait for, but in the log after a drain. */
	for (int i = 40; i < 50; i++) {
		MUST(make_batch(&bb, "p", i, 1, -1, -1) == 0);
		MUST(OK(mq_ep_produce_send(ep, "t", 0, NULL, 0, 0, bb.buf,
					   bb.len, 0, &err)));
	}
	CHECK_EQ_INT(mq_ep_outstanding(ep), 0);
	CHECK(OK(mq_ep_drain(ep, &err)));
	CHECK_EQ_INT(mq_ep_wait(ep, 100, &ev, &err), 0);
	for (int i = 0; i < 100 && read_all(ep, "t", 0, vals, 64) < 50; i++)
		sleep_ms(10);
	CHECK_EQ_INT(read_all(ep, "t", 0, vals, 64), 50);
	CHECK(strcmp(vals[49], "p-49") == 0);
	mq_bb_free(&bb);
	mq_ep_close(ep);
}

BOTH(idempotent_retries, NULL)
{
	mq_batch_builder bb;
	mq_ep_event ev;
	int64_t pid = -1, pid2 = -1;
	char vals[8][64];
	mq_err err;
	mq_ep *ep = fx_open(f, true, 1);

	MUST(ep);
	MUST(OK(mq_ep_init_producer(ep, &pid, &err)));
	MUST(OK(mq_ep_init_producer(ep, &pid2, &err)));
	CHECK(pid > 0 && pid2 > 0 && pid != pid2);
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	MUST(make_batch(&bb, "i", 0, 2, pid, 0) == 0);
	MUST(produce1(ep, "t", 0, &bb, &ev) == 0);
	CHECK_EQ_INT(ev.code, 0);
	CHECK_EQ_INT(ev.produce.base_offset, 0);
	/* The same batch again: the original offsets, not a copy. */
	MUST(produce1(ep, "t", 0, &bb, &ev) == 0);
	CHECK_EQ_INT(ev.code, 0);
	CHECK_EQ_INT(ev.produce.base_offset, 0);
	CHECK(ev.produce.duplicate);
	MUST(make_batch(&bb, "i", 2, 1, pid, 2) == 0);
	MUST(produce1(ep, "t", 0, &bb, &ev) == 0);
	CHECK_EQ_INT(ev.code, 0);
	CHECK_EQ_INT(ev.produce.base_offset, 2);
	/* A gap is refused. */
	MUST(make_batch(&bb, "i", 9, 1, pid, 9) == 0);
	MUST(produce1(ep, "t", 0, &bb, &ev) == 0);
	CHECK_EQ_INT(ev.code, MQ_E_SEQUENCE);
	CHECK_EQ_INT(read_all(ep, "t", 0, vals, 8), 3);
	mq_bb_free(&bb);
	mq_ep_close(ep);
}

/* A child process that opens its own endpoint, waits ms, then sends n
 * one-record batches "<prefix>-i" to (topic, partition). */
static pid_t spawn_producer(const struct fx *f, const char *topic,
			    int32_t partition, const char *prefix, int n,
			    int ms)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid != 0)
		return pid;
	{
		mq_batch_builder bb;
		mq_ep_event ev;
		mq_err err;
		mq_ep *ep = fx_open(f, true, 1);
		int bad = 0;

		if (!ep || mq_bb_init(&bb, 0, &err) < 0)
			_exit(2);
		sleep_ms(ms);
		for (int i = 0; i < n; i++) {
			if (make_batch(&bb, prefix, i, 1, -1, -1) < 0 ||
			    produce1(ep, topic, partition, &bb, &ev) < 0 ||
			    ev.code != 0) {
				fprintf(stderr, "child produce %d: %s\n", i,
					ev.msg);
				bad = 1;
				break;
			}
		}
		mq_bb_free(&bb);
		mq_ep_close(ep);
		_exit(bad);
	}
}

static bool child_ok(pid_t pid)
{
	int st;

	return waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
	       WEXITSTATUS(st) == 0;
}

BOTH(long_poll_woken_by_another_process, NULL)
{
	mq_ep_event ev;
	mq_err err;
	mq_ep *ep = fx_open(f, true, 1);
	int64_t t0, waited;
	pid_t child;

	MUST(ep);
	MUST(OK(mq_ep_create_topic(ep, "t", 1, &err)));
	/* Nothing there: the fetch waits, and an append by another
	 * process answers it at once (not at the end of the wait, and not
	 * by polling: the wait is 20 s). */
	MUST(OK(mq_ep_fetch_send(ep, "t", 0, 0, 1 << 20, 20000, 1, &err)));
	child = spawn_producer(f, "t", 0, "w", 1, 200);
	MUST(child > 0);
	t0 = mq_mono_ms();
	MUST(next_event(ep, 5000, &ev) == 1);
	waited = mq_mono_ms() - t0;
	CHECK(child_ok(child));
	CHECK_EQ_INT(ev.type, MQ_EV_FETCH);
	CHECK_EQ_INT(ev.code, 0);
	CHECK(ev.fetch.len > 0);
	CHECK_EQ_INT(ev.fetch.end, 1);
	CHECK(waited >= 150);
	if (waited > 1500) {
		fprintf(stderr, "the long poll took %lld ms\n",
			(long long)waited);
		harness_cur_failed = 1;
	}
	/* With nothing coming, it answers empty when the wait is over. */
	t0 = mq_mono_ms();
	MUST(fetch1(ep, "t", 0, 1, 300, &ev) == 0);
	waited = mq_mono_ms() - t0;
	CHECK_EQ_INT(ev.code, 0);
	CHECK_EQ_INT(ev.fetch.len, 0);
	CHECK(waited >= 250 && waited < 3000);
	mq_ep_close(ep);
}

BOTH(concurrent_writers_one_partition, NULL)
{
	enum { N = 150 };
	static char vals[2 * N + 8][64];
	mq_err err;
	mq_ep *ep = fx_open(f, true, 1);
	pid_t a, b;
	int n, na = 0, nb = 0, last_a = -1, last_b = -1;
	bool order = true;

	MUST(ep);
	MUST(OK(mq_ep_create_topic(ep, "t", 1, &err)));
	a = spawn_producer(f, "t", 0, "a", N, 0);
	b = spawn_producer(f, "t", 0, "b", N, 0);
	CHECK(child_ok(a));
	CHECK(child_ok(b));
	/* Every message once, offsets dense (read_all checks), each
	 * writer's messages in its order. */
	n = read_all(ep, "t", 0, vals, 2 * N + 8);
	CHECK_EQ_INT(n, 2 * N);
	for (int i = 0; i < n && i < 2 * N + 8; i++) {
		int k = atoi(vals[i] + 2);
		if (vals[i][0] == 'a') {
			order = order && k == last_a + 1;
			last_a = k;
			na++;
		} else {
			order = order && k == last_b + 1;
			last_b = k;
			nb++;
		}
	}
	CHECK_EQ_INT(na, N);
	CHECK_EQ_INT(nb, N);
	CHECK(order);
	mq_ep_close(ep);
}

/* ---- groups shared by processes ---- */

/*
 * A group member in a child process: joins group g on topic t with a 1 s
 * session, heartbeats every 100 ms, joins again when told, and writes a
 * line "<n> <partition>...\n" to fd after every join. Runs until killed
 * (or for life_ms, then leaves and exits).
 */
static pid_t spawn_member(const struct fx *f, int fd, int life_ms)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid != 0)
		return pid;
	{
		const char *topics[1] = { "t" };
		mq_ep *ep = fx_open(f, true, 1);
		mq_assignment a;
		char id[128] = "";
		int32_t gen = 0;
		mq_err err;
		int64_t end = mq_mono_ms() + life_ms;
		bool join = true;

		if (!ep)
			_exit(2);
		while (mq_mono_ms() < end) {
			if (join) {
				char line[512];
				int len;
				if (mq_ep_join(ep, "g", id, 1000, topics, 1, &a,
					       &err) < 0) {
					fprintf(stderr, "child join: %s\n",
						err.msg);
					_exit(3);
				}
				snprintf(id, sizeof id, "%s", a.member_id);
				gen = a.generation;
				len = snprintf(line, sizeof line, "%zu", a.n);
				for (size_t i = 0; i < a.n; i++)
					len += snprintf(line + len,
							sizeof line - (size_t)len,
							" %d", a.parts[i].partition);
				len += snprintf(line + len, sizeof line - (size_t)len,
						"\n");
				if (write(fd, line, (size_t)len) < 0)
					_exit(4);
				mq_assignment_free(&a);
				join = false;
			}
			sleep_ms(100);
			if (mq_ep_heartbeat(ep, "g", id, gen, &err) < 0) {
				if (err.code != MQ_E_REBALANCE &&
				    err.code != MQ_E_GENERATION) {
					fprintf(stderr, "child heartbeat: %s\n",
						err.msg);
					_exit(5);
				}
				join = true;
			}
		}
		mq_ep_leave(ep, "g", id, &err);
		mq_ep_close(ep);
		_exit(0);
	}
}

/* The latest line a member wrote: its partitions as a bit mask (-1 if
 * none yet). Reads what is there without blocking. */
struct watcher {
	int fd;
	char buf[4096];
	size_t len;
	int mask;
};

static void watcher_poll(struct watcher *w)
{
	ssize_t n;

	while ((n = read(w->fd, w->buf + w->len, sizeof w->buf - 1 - w->len)) > 0)
		w->len += (size_t)n;
	for (;;) {
		char *nl = memchr(w->buf, '\n', w->len);
		char *p, *end;
		int mask = 0;
		long cnt;

		if (!nl)
			break;
		*nl = '\0';
		cnt = strtol(w->buf, &p, 10);
		for (long i = 0; i < cnt; i++) {
			long v = strtol(p, &end, 10);
			if (end == p)
				break;
			mask |= 1 << v;
			p = end;
		}
		w->mask = mask;
		w->len -= (size_t)(nl + 1 - w->buf);
		memmove(w->buf, nl + 1, w->len);
	}
}

static int popcount(int m)
{
	return __builtin_popcount((unsigned)m);
}

/* Wait up to ms for cond over the watchers. */
#define WAIT_UNTIL(ms, cond) ({ \
	int64_t end_ = mq_mono_ms() + (ms); \
	bool ok_ = false; \
	while (mq_mono_ms() < end_) { \
		watcher_poll(&wa); \
		watcher_poll(&wb); \
		if ((cond)) { ok_ = true; break; } \
		sleep_ms(20); \
	} \
	ok_; })

BOTH(group_shared_by_processes, NULL)
{
	struct watcher wa = { .mask = -1 }, wb = { .mask = -1 };
	int pa[2], pb[2];
	mq_err err;
	mq_ep *ep = fx_open(f, true, 1);
	pid_t a, b;

	MUST(ep);
	MUST(OK(mq_ep_create_topic(ep, "t", 4, &err)));
	mq_ep_close(ep);
	MUST(pipe2(pa, O_NONBLOCK | O_CLOEXEC) == 0);
	MUST(pipe2(pb, O_NONBLOCK | O_CLOEXEC) == 0);
	wa.fd = pa[0];
	wb.fd = pb[0];
	a = spawn_member(f, pa[1], 60000);
	if (!WAIT_UNTIL(5000, wa.mask == 0xf)) {
		fprintf(stderr, "the first member did not get all four "
			"partitions (mask %d)\n", wa.mask);
		harness_cur_failed = 1;
	}
	b = spawn_member(f, pb[1], 60000);
	/* They share: two each, none twice. */
	if (!WAIT_UNTIL(8000, wa.mask >= 0 && wb.mask >= 0 &&
			(wa.mask | wb.mask) == 0xf && !(wa.mask & wb.mask) &&
			popcount(wa.mask) == 2)) {
		fprintf(stderr, "no even split: a %d, b %d\n", wa.mask,
			wb.mask);
		harness_cur_failed = 1;
	}
	/* One dies: the other takes over everything. */
	kill(a, SIGKILL);
	waitpid(a, NULL, 0);
	if (!WAIT_UNTIL(8000, wb.mask == 0xf)) {
		fprintf(stderr, "no takeover: b %d\n", wb.mask);
		harness_cur_failed = 1;
	}
	kill(b, SIGTERM);
	kill(b, SIGKILL);
	waitpid(b, NULL, 0);
	close(pa[0]);
	close(pa[1]);
	close(pb[0]);
	close(pb[1]);
}

BOTH(commit_rules, NULL)
{
	const char *topics[1] = { "t" };
	mq_batch_builder bb;
	mq_assignment a;
	mq_group_info *g = NULL;
	size_t ng = 0;
	mq_ep_event ev;
	mq_err err;
	mq_ep *ep = fx_open(f, true, 1), *op = fx_open(f, true, 1);

	MUST(ep && op);
	MUST(OK(mq_ep_create_topic(ep, "t", 2, &err)));
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	MUST(make_batch(&bb, "c", 0, 5, -1, -1) == 0);
	MUST(produce1(ep, "t", 0, &bb, &ev) == 0 && ev.code == 0);
	MUST(OK(mq_ep_join(ep, "g", "", 5000, topics, 1, &a, &err)));
	CHECK_EQ_INT(a.n, 2);
	CHECK(a.generation > 0);
	{
		mq_commit_entry e[2] = { { "t", 0, 3 }, { "t", 1, 0 } };
		mq_commit_entry bad[2] = { { "t", 0, 4 }, { "t", 1, 9 } };
		mq_commit_entry none[1] = { { "t", 7, 0 } };
		mq_commit_entry nt[1] = { { "nosuch", 0, 0 } };

		CHECK(OK(mq_ep_commit(ep, "g", a.member_id, a.generation, 0,
				      e, 2, &err)));
		/* All or nothing: one bad entry, nothing changes. */
		EXPECT_CODE(mq_ep_commit(ep, "g", a.member_id, a.generation, 0,
					 bad, 2, &err), MQ_E_OFFSET_RANGE);
		EXPECT_CODE(mq_ep_commit(ep, "g", a.member_id, a.generation, 0,
					 none, 1, &err), MQ_E_NO_PARTITION);
		EXPECT_CODE(mq_ep_commit(ep, "g", a.member_id, a.generation, 0,
					 nt, 1, &err), MQ_E_NO_TOPIC);
		EXPECT_CODE(mq_ep_commit(ep, "g", a.member_id,
					 a.generation + 1, 0, e, 2, &err),
			    MQ_E_GENERATION);
		EXPECT_CODE(mq_ep_commit(ep, "g", "nobody", a.generation, 0, e,
					 2, &err), MQ_E_UNKNOWN_MEMBER);
		EXPECT_CODE(mq_ep_heartbeat(ep, "g", "nobody", a.generation,
					    &err), MQ_E_UNKNOWN_MEMBER);
		CHECK(OK(mq_ep_heartbeat(ep, "g", a.member_id, a.generation,
					 &err)));
		/* An operator's commit while a member lives. */
		EXPECT_CODE(mq_ep_commit(op, "g", "", -1, MQ_COMMIT_IF_EMPTY,
					 e, 1, &err), MQ_E_BUSY);
	}
	if (OK(mq_ep_describe_groups(op, "g", &g, &ng, &err))) {
		CHECK_EQ_INT(ng, 1);
		if (ng == 1) {
			CHECK(strcmp(g[0].name, "g") == 0);
			CHECK(strcmp(g[0].state, "stable") == 0);
			CHECK_EQ_INT(g[0].nmembers, 1);
			if (g[0].nmembers == 1) {
				CHECK(strcmp(g[0].members[0].member_id,
					     a.member_id) == 0);
				CHECK_EQ_INT(g[0].members[0].n, 2);
			}
			CHECK_EQ_INT(g[0].noffsets, 2);
			if (g[0].noffsets == 2) {
				CHECK_EQ_INT(g[0].offsets[0].offset, 3);
				CHECK_EQ_INT(g[0].offsets[1].offset, 0);
			}
		}
		mq_group_info_free(g, ng);
	}
	CHECK(OK(mq_ep_leave(ep, "g", a.member_id, &err)));
	EXPECT_CODE(mq_ep_leave(ep, "g", a.member_id, &err),
		    MQ_E_UNKNOWN_MEMBER);
	mq_assignment_free(&a);
	{
		mq_commit_entry back[1] = { { "t", 0, 1 } };
		mq_commit_entry past[1] = { { "t", 0, 6 } };

		/* Empty now. Backwards only when asked. */
		CHECK(OK(mq_ep_commit(op, "g", "", -1, MQ_COMMIT_IF_EMPTY, back,
				      1, &err)));
		EXPECT_CODE(mq_ep_commit(op, "g", "", -1, 0, past, 1, &err),
			    MQ_E_OFFSET_RANGE);
		if (OK(mq_ep_describe_groups(op, "g", &g, &ng, &err))) {
			CHECK(ng == 1 && g[0].noffsets == 2 &&
			      g[0].offsets[0].offset == 3);
			CHECK(ng == 1 && strcmp(g[0].state, "empty") == 0);
			mq_group_info_free(g, ng);
		}
		CHECK(OK(mq_ep_commit(op, "g", "", -1, MQ_COMMIT_BACKWARD, back,
				      1, &err)));
	}
	if (OK(mq_ep_describe_groups(op, NULL, &g, &ng, &err))) {
		CHECK_EQ_INT(ng, 1);
		CHECK(ng == 1 && g[0].noffsets == 2 &&
		      g[0].offsets[0].offset == 1);
		mq_group_info_free(g, ng);
	}
	mq_bb_free(&bb);
	mq_ep_close(ep);
	mq_ep_close(op);
}

/* A member in another process takes one of our two partitions: our
 * commit for it is then fenced. */
BOTH(commit_fenced_after_takeover, NULL)
{
	const char *topics[1] = { "t" };
	struct watcher wa = { .mask = -1 }, wb = { .mask = -1 };
	mq_assignment a;
	int pb[2];
	mq_err err;
	mq_ep *ep = fx_open(f, true, 1);
	pid_t b;
	int mine = 0, rc = -1;

	MUST(ep);
	MUST(OK(mq_ep_create_topic(ep, "t", 2, &err)));
	MUST(OK(mq_ep_join(ep, "g", "", 1000, topics, 1, &a, &err)));
	CHECK_EQ_INT(a.n, 2);
	MUST(pipe2(pb, O_NONBLOCK | O_CLOEXEC) == 0);
	wa.fd = -1;
	wb.fd = pb[0];
	b = spawn_member(f, pb[1], 60000);
	/* Heartbeat until told to rejoin; rejoin until we hold one. */
	for (int64_t end = mq_mono_ms() + 8000; mq_mono_ms() < end;) {
		rc = mq_ep_heartbeat(ep, "g", a.member_id, a.generation, &err);
		if (rc < 0) {
			char id[128];
			CHECK(err.code == MQ_E_REBALANCE ||
			      err.code == MQ_E_GENERATION);
			snprintf(id, sizeof id, "%s", a.member_id);
			mq_assignment_free(&a);
			MUST(OK(mq_ep_join(ep, "g", id, 1000, topics, 1, &a,
					   &err)));
		}
		if (a.n == 1)
			break;
		sleep_ms(100);
	}
	MUST(a.n == 1);
	mine = a.parts[0].partition;
	CHECK(WAIT_UNTIL(5000, wb.mask == (1 << (1 - mine))));
	{
		mq_commit_entry ok1[1] = { { "t", mine, 0 } };
		mq_commit_entry lost[1] = { { "t", 1 - mine, 0 } };
		CHECK(OK(mq_ep_commit(ep, "g", a.member_id, a.generation, 0,
				      ok1, 1, &err)));
		EXPECT_CODE(mq_ep_commit(ep, "g", a.member_id, a.generation, 0,
					 lost, 1, &err), MQ_E_GENERATION);
	}
	mq_assignment_free(&a);
	kill(b, SIGKILL);
	waitpid(b, NULL, 0);
	close(pb[0]);
	close(pb[1]);
	mq_ep_close(ep);
}

/* ================= the directory only ================= */

static mq_ep *open_dir(const char *dir, bool ro, mq_err *err)
{
	mq_ep_opts o = { .dir = dir, .read_only = ro, .local_sync = true,
			 .timeout_ms = 5000 };
	mq_ep *ep = NULL;

	if (mq_ep_open(&o, &ep, err) < 0)
		return NULL;
	return ep;
}

static pid_t lock_holder(const char *dir)
{
	pid_t pid = 0;
	char what[32];
	mq_err err;

	if (mq_dirlock_probe(dir, &pid, what, sizeof what, &err) < 0)
		return -2;
	return pid;
}

/* How many threads other than the main one there are, or -1 if one of
 * them does not block sig. */
static int other_threads_block(int sig)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		char path[300], line[256];
		FILE *fp;
		if (e->d_name[0] == '.' || atol(e->d_name) == (long)getpid())
			continue;
		snprintf(path, sizeof path, "/proc/self/task/%s/status",
			 e->d_name);
		if (!(fp = fopen(path, "r")))
			continue;
		while (fgets(line, sizeof line, fp)) {
			unsigned long long mask;
			if (sscanf(line, "SigBlk: %llx", &mask) != 1)
				continue;
			if (mask & (1ull << (sig - 1)))
				n++;
			else
				n = -1000;
		}
		fclose(fp);
	}
	closedir(d);
	return n < 0 ? -1 : n;
}

TEST(dir_turn_ends_when_idle)
{
	struct fx f;
	mq_batch_builder bb;
	mq_ep_event ev;
	mq_err err;
	mq_ep *ep;
	sigset_t before, after;
	bool freed = false;

	MUST(fx_start(&f, true, NULL) == 0);
	MUST((ep = fx_open(&f, true, 1)));
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	MUST(make_batch(&bb, "x", 0, 1, -1, -1) == 0);
	MUST(pthread_sigmask(SIG_SETMASK, NULL, &before) == 0);
	MUST(produce1(ep, "t", 0, &bb, &ev) == 0 && ev.code == 0);
	CHECK_EQ_INT(lock_holder(f.dir), getpid());
	/* The thread that ends turns takes none of the program's signals
	 * (they must interrupt the program's own system calls)... */
	CHECK(other_threads_block(SIGTERM) > 0);
	CHECK(other_threads_block(SIGINT) > 0);
	/* ... and starting it leaves the caller's own mask as it was, or a
	 * child the program starts later (mq-brokerd) inherits blocked
	 * signals and ignores SIGTERM. */
	MUST(pthread_sigmask(SIG_SETMASK, NULL, &after) == 0);
	for (int sig = 1; sig < SIGRTMIN; sig++)
		CHECK_EQ_INT(sigismember(&after, sig), sigismember(&before, sig));
	/* Without another call, the lock goes back within moments. */
	for (int i = 0; i < 100 && !freed; i++) {
		sleep_ms(10);
		freed = lock_holder(f.dir) == 0;
	}
	CHECK(freed);
	/* ... and comes back with the next write. */
	MUST(produce1(ep, "t", 0, &bb, &ev) == 0);
	CHECK_EQ_INT(ev.code, 0);
	CHECK_EQ_INT(ev.produce.base_offset, 1);
	mq_bb_free(&bb);
	mq_ep_close(ep);
	CHECK_EQ_INT(lock_holder(f.dir), 0);
}

TEST(dir_broker_in_the_way)
{
	struct fx f;
	mq_batch_builder bb;
	mq_topic_meta *m = NULL;
	size_t nm = 0;
	mq_ep_event ev;
	mq_err err;
	mq_ep *ep, *ro;
	char want[64];
	int64_t t0;

	if (!have_broker) {
		printf("# broker not built\n");
		return;
	}
	MUST(fx_start(&f, false, NULL) == 0);
	{
		/* Something to look at, through the broker. */
		mq_ep *b = fx_open(&f, true, 1);
		MUST(b);
		MUST(mq_bb_init(&bb, 0, &err) == 0);
		MUST(make_batch(&bb, "x", 0, 1, -1, -1) == 0);
		MUST(produce1(b, "t", 0, &bb, &ev) == 0 && ev.code == 0);
		mq_ep_close(b);
	}
	ep = open_dir(f.dir, false, &err);
	MUST(ep);
	/* A write is refused at once, naming the broker. */
	t0 = mq_mono_ms();
	EXPECT_CODE(mq_ep_produce_send(ep, "t", 0, NULL, 0, 1, bb.buf, bb.len,
				       1, &err), MQ_E_LOCKED);
	CHECK(mq_mono_ms() - t0 < 1000);
	snprintf(want, sizeof want, "pid %ld", (long)f.broker);
	CHECK(strstr(err.msg, want) != NULL);
	CHECK(strstr(err.msg, "-b") != NULL);
	EXPECT_CODE(mq_ep_create_topic(ep, "u", 1, &err), MQ_E_LOCKED);
	{
		const char *topics[1] = { "t" };
		mq_assignment a;
		EXPECT_CODE(mq_ep_join(ep, "g", "", 1000, topics, 1, &a, &err),
			    MQ_E_LOCKED);
		mq_assignment_free(&a);
	}
	/* Reading works while it runs. */
	ro = open_dir(f.dir, true, &err);
	MUST(ro);
	if (OK(mq_ep_metadata(ro, NULL, 0, &m, &nm, &err))) {
		CHECK(nm == 1 && m[0].nparts == 1 && m[0].parts[0].end == 1);
		mq_topic_meta_free(m, nm);
	}
	if (OK(mq_ep_metadata(ep, NULL, 0, &m, &nm, &err))) {
		CHECK(nm == 1 && m[0].parts[0].end == 1);
		mq_topic_meta_free(m, nm);
	}
	/* Once it stops, the writer works. */
	broker_stop(&f);
	MUST(produce1(ep, "t", 0, &bb, &ev) == 0);
	CHECK_EQ_INT(ev.code, 0);
	CHECK_EQ_INT(ev.produce.base_offset, 1);
	mq_ep_close(ep);
	mq_ep_close(ro);
	mq_bb_free(&bb);
}

/* The active segment of partition 0 of topic t (the last .log). */
static int segment_path(const char *dir, char *buf, size_t size)
{
	char pdir[4400], best[256] = "";
	struct dirent *d;
	DIR *dd;

	snprintf(pdir, sizeof pdir, "%s/topics/t/0", dir);
	if (!(dd = opendir(pdir)))
		return -1;
	while ((d = readdir(dd)))
		if (strstr(d->d_name, ".log") && strcmp(d->d_name, best) > 0)
			snprintf(best, sizeof best, "%s", d->d_name);
	closedir(dd);
	if (!best[0])
		return -1;
	snprintf(buf, size, "%s/%s", pdir, best);
	return 0;
}

TEST(dir_torn_tail_recovered)
{
	struct fx f;
	mq_batch_builder bb;
	mq_ep_event ev;
	char seg[4600], vals[16][64];
	struct stat st;
	mq_err err;
	mq_ep *ep;
	int fd;

	MUST(fx_start(&f, true, NULL) == 0);
	MUST((ep = fx_open(&f, true, 1)));
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	for (int i = 0; i < 3; i++) {
		MUST(make_batch(&bb, "r", i, 1, -1, -1) == 0);
		MUST(produce1(ep, "t", 0, &bb, &ev) == 0 && ev.code == 0);
	}
	mq_ep_close(ep);
	/* A writer killed half way through a batch leaves this behind. */
	MUST(segment_path(f.dir, seg, sizeof seg) == 0);
	MUST(stat(seg, &st) == 0);
	MUST(make_batch(&bb, "torn", 0, 4, -1, -1) == 0);
	fd = open(seg, O_WRONLY | O_APPEND);
	MUST(fd >= 0);
	MUST(write(fd, bb.buf, bb.len / 2) == (ssize_t)(bb.len / 2));
	close(fd);
	/* A reader does not see it... */
	MUST((ep = open_dir(f.dir, true, &err)));
	CHECK_EQ_INT(read_all(ep, "t", 0, vals, 16), 3);
	mq_ep_close(ep);
	/* ... and the next writer cuts it and appends after the good
	 * batches. */
	MUST((ep = fx_open(&f, true, 1)));
	MUST(make_batch(&bb, "r", 3, 1, -1, -1) == 0);
	MUST(produce1(ep, "t", 0, &bb, &ev) == 0);
	CHECK_EQ_INT(ev.code, 0);
	CHECK_EQ_INT(ev.produce.base_offset, 3);
	CHECK_EQ_INT(read_all(ep, "t", 0, vals, 16), 4);
	CHECK(strcmp(vals[3], "r-3") == 0);
	mq_ep_close(ep);
	mq_bb_free(&bb);
}

TEST(dir_read_only_and_missing)
{
	struct fx f;
	mq_batch_builder bb;
	char path[4400];
	mq_err err;
	mq_ep *ep;

	MUST(fx_start(&f, true, NULL) == 0);
	snprintf(path, sizeof path, "%s/new", f.tmp);
	/* Read-only needs the directory; read-write makes it (not its
	 * parent). */
	CHECK(open_dir(path, true, &err) == NULL);
	CHECK(strstr(err.msg, path) != NULL);
	snprintf(path, sizeof path, "%s/no/such", f.tmp);
	CHECK(open_dir(path, false, &err) == NULL);
	CHECK_EQ_INT(err.code, MQ_E_IO);
	snprintf(path, sizeof path, "%s/new", f.tmp);
	MUST((ep = open_dir(path, false, &err)));
	mq_ep_close(ep);
	MUST((ep = open_dir(path, true, &err)));
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	MUST(make_batch(&bb, "x", 0, 1, -1, -1) == 0);
	EXPECT_CODE(mq_ep_produce_send(ep, "t", 0, NULL, 0, 1, bb.buf, bb.len,
				       1, &err), MQ_E_READ_ONLY);
	EXPECT_CODE(mq_ep_create_topic(ep, "t", 1, &err), MQ_E_READ_ONLY);
	CHECK_EQ_INT(lock_holder(path), 0);
	CHECK(strncmp(mq_ep_name(ep), "dir:", 4) == 0);
	mq_ep_close(ep);
	mq_bb_free(&bb);
}

/* A busy writer hands the directory over to a waiting one. */
TEST(dir_busy_writer_shares)
{
	struct fx f;
	mq_batch_builder bb;
	mq_ep_event ev;
	mq_err err;
	mq_ep *ep;
	pid_t child;
	int64_t t0, took;

	MUST(fx_start(&f, true, NULL) == 0);
	MUST((ep = fx_open(&f, false, 1)));
	MUST(mq_bb_init(&bb, 0, &err) == 0);
	MUST(make_batch(&bb, "x", 0, 1, -1, -1) == 0);
	MUST(produce1(ep, "t", 0, &bb, &ev) == 0 && ev.code == 0);
	child = spawn_producer(&f, "t", 0, "c", 1, 50);
	MUST(child > 0);
	/* Keep writing (async) for a second; the child still gets in. */
	t0 = mq_mono_ms();
	took = -1;
	while (mq_mono_ms() - t0 < 3000) {
		int st;
		MUST(produce1(ep, "t", 0, &bb, &ev) == 0 && ev.code == 0);
		if (waitpid(child, &st, WNOHANG) == child) {
			took = mq_mono_ms() - t0;
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
			break;
		}
	}
	if (took < 0) {
		fprintf(stderr, "the second writer starved\n");
		harness_cur_failed = 1;
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	} else if (took > 1500) {
		fprintf(stderr, "the second writer waited %lld ms\n",
			(long long)took);
		harness_cur_failed = 1;
	}
	mq_ep_close(ep);
	mq_bb_free(&bb);
}

int main(void)
{
	const char *build = getenv("MQ_BUILD");

	snprintf(broker_bin, sizeof broker_bin, "%s/bin/mq-brokerd",
		 build && *build ? build : "build");
	have_broker = access(broker_bin, X_OK) == 0;
	signal(SIGPIPE, SIG_IGN);

	RUN_BOTH(round_trip);
	RUN_BOTH(errors_are_the_same);
	RUN_BOTH(pipelined_and_oneway);
	RUN_BOTH(idempotent_retries);
	RUN_BOTH(long_poll_woken_by_another_process);
	RUN_BOTH(concurrent_writers_one_partition);
	RUN_BOTH(group_shared_by_processes);
	RUN_BOTH(commit_rules);
	RUN_BOTH(commit_fenced_after_takeover);
	RUN(dir_turn_ends_when_idle);
	RUN(dir_broker_in_the_way);
	RUN(dir_torn_tail_recovered);
	RUN(dir_read_only_and_missing);
	RUN(dir_busy_writer_shares);
	return harness_done();
}
