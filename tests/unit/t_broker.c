/*
 * t_broker.c - mq-brokerd under crash and bad input.
 *
 * Every test starts a real broker ($MQ_BUILD/bin/mq-brokerd, default
 * build/) on a private unix socket in its temporary directory, with its
 * stderr in TMP/broker.log (printed when the test fails), and stops it in
 * the teardown with SIGTERM, which must end it with status 0. The tests
 * kill it (-9), restart it on the same data directory, damage its files
 * by hand, starve it of disk (RLIMIT_FSIZE) and feed it malformed frames
 * on raw sockets; after each, what was acknowledged must still be there,
 * offsets must stay dense, and the broker must keep serving other clients.
 * Without a built broker every test is reported skipped.
 */
#include "harness.h"
#include "broker_ready.h"

#include "batch.h"
#include "client.h"
#include "net.h"
#include "proto.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

/* A failed check with a message. */
#define FAIL(...) do { \
	fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); \
	fprintf(stderr, __VA_ARGS__); \
	fputc('\n', stderr); \
	harness_cur_failed = 1; \
} while (0)

static char broker_bin[4096];
static bool have_broker;

/* A small deterministic generator (xorshift64*), so a failing run can be
 * repeated from the seed it prints. */
static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static void fill_random(void *p, size_t n)
{
	uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(rng() >> 56);
}

/* ---- what a test allocates, released in its teardown even when a
 * failed MUST returns early ---- */

enum { R_FREE = 1, R_CLIENT, R_BB, R_WBUF };
static struct { int kind; void *p; } owned[64];

static void *own(int kind, void *p)
{
	if (!p)
		return NULL;
	for (size_t i = 0; i < sizeof owned / sizeof *owned; i++)
		if (!owned[i].kind) {
			owned[i].kind = kind;
			owned[i].p = p;
			return p;
		}
	fprintf(stderr, "t_broker: too many owned objects\n");
	abort();
}

static void release(size_t i)
{
	switch (owned[i].kind) {
	case R_FREE: free(owned[i].p); break;
	case R_CLIENT: mq_client_close(owned[i].p); break;
	case R_BB: mq_bb_free(owned[i].p); free(owned[i].p); break;
	case R_WBUF: mq_w_free(owned[i].p); free(owned[i].p); break;
	}
	owned[i].kind = 0;
	owned[i].p = NULL;
}

static void release_all(void)
{
	for (size_t i = 0; i < sizeof owned / sizeof *owned; i++)
		release(i);
}

/* Free an owned object now (NULL is fine). */
static void disown(void *p)
{
	for (size_t i = 0; p && i < sizeof owned / sizeof *owned; i++)
		if (owned[i].p == p) {
			release(i);
			return;
		}
}

static void *t_malloc(size_t n)
{
	void *p = malloc(n);
	if (!p) {
		fprintf(stderr, "t_broker: out of memory\n");
		abort();
	}
	return own(R_FREE, p);
}

static mq_batch_builder *t_bb(void)
{
	mq_batch_builder *bb = malloc(sizeof *bb);
	mq_err err;

	if (!bb || mq_bb_init(bb, 0, &err) < 0)
		abort();
	return own(R_BB, bb);
}

static mq_wbuf *t_wbuf(void)
{
	mq_wbuf *w = malloc(sizeof *w);
	if (!w)
		abort();
	mq_w_init(w);
	return own(R_WBUF, w);
}

/* Close an owned client and forget it. */
static void t_close(mq_client **c)
{
	disown(*c);
	*c = NULL;
}

/* ================= the broker process ================= */

#define MAX_OPTS 16

struct broker {
	pid_t pid;
	char tmp[4096];
	char dir[4200];          /* TMP/data */
	char sock[4300];         /* TMP/data/s.sock */
	char addr[4400];         /* unix:TMP/data/s.sock */
	char log[4500];          /* TMP/broker.log */
	const char *opts[MAX_OPTS];
	int nopts;
	rlim_t fsize;            /* RLIMIT_FSIZE for the broker, 0 = none */
	pid_t child;             /* a helper process to reap in teardown */
};

static void broker_init(struct broker *b)
{
	memset(b, 0, sizeof *b);
	b->pid = b->child = -1;
	snprintf(b->tmp, sizeof b->tmp, "%s", harness_tmpdir());
	snprintf(b->dir, sizeof b->dir, "%s/data", b->tmp);
	snprintf(b->sock, sizeof b->sock, "%s/s.sock", b->dir);
	snprintf(b->addr, sizeof b->addr, "unix:%s", b->sock);
	snprintf(b->log, sizeof b->log, "%s/broker.log", b->tmp);
	if (mkdir(b->dir, 0755) < 0)
		FAIL("mkdir %s: %s", b->dir, strerror(errno));
}

/* Options for every (re)start: a NULL-terminated list. */
static void broker_opts(struct broker *b, ...)
{
	va_list ap;
	const char *o;

	b->nopts = 0;
	va_start(ap, b);
	while ((o = va_arg(ap, const char *)) && b->nopts < MAX_OPTS)
		b->opts[b->nopts++] = o;
	va_end(ap);
}

/* The tail of a log file on stderr, each line prefixed. */
static void dump_file(const char *what, const char *path)
{
	static char buf[65536];
	int fd = open(path, O_RDONLY);
	off_t size;
	ssize_t n;

	if (fd < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	lseek(fd, size > (off_t)sizeof buf - 1 ? size - (off_t)sizeof buf + 1 : 0,
	      SEEK_SET);
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	fprintf(stderr, "---- %s (%s) ----\n", what, path);
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
		fprintf(stderr, "| %s\n", line);
	fprintf(stderr, "---- end of %s ----\n", what);
}

/* Fork and exec mq-brokerd -d DIR -l ADDR [opts], its stdout and stderr
 * appended to logpath, with RLIMIT_FSIZE = fsize if not 0. */
static pid_t spawn_broker(const char *dir, const char *addr,
			  const char *const *opts, int nopts, rlim_t fsize,
			  const char *logpath)
{
	const char *argv[MAX_OPTS + 8];
	int argc = 0;
	pid_t pid;

	argv[argc++] = "mq-brokerd";
	argv[argc++] = "-d";
	argv[argc++] = dir;
	argv[argc++] = "-l";
	argv[argc++] = addr;
	for (int i = 0; i < nopts; i++)
		argv[argc++] = opts[i];
	argv[argc] = NULL;
	fflush(NULL);
	pid = fork();
	if (pid != 0)
		return pid;
	int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	if (fsize) {
		struct rlimit rl = { fsize, fsize };
		if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
			_exit(126);
	}
	execv(broker_bin, (char *const *)argv);
	_exit(127);
}

/* Start the broker with b's options and wait (up to 15 s: sanitized
 * builds start slowly) until a client can open a connection. */
static int broker_start(struct broker *b)
{
	mq_err err;
	int st, rc;

	b->pid = spawn_broker(b->dir, b->addr, b->opts, b->nopts, b->fsize,
			      b->log);
	if (b->pid < 0) {
		FAIL("fork: %s", strerror(errno));
		return -1;
	}
	rc = broker_wait_ready(b->pid, b->addr, 15000, &st, &err);
	if (rc == 0)
		return 0;
	if (rc == -1) {
		FAIL("broker exited at start (status 0x%x)", st);
		b->pid = -1;
		return -1;
	}
	FAIL("broker did not answer at %s within 15 s: %s", b->addr, err.msg);
	return -1;
}

static void broker_kill9(struct broker *b)
{
	if (b->pid <= 0)
		return;
	kill(b->pid, SIGKILL);
	waitpid(b->pid, NULL, 0);
	b->pid = -1;
}

/* SIGTERM; wait up to ms; returns the wait status (SIGKILL and -1 if it
 * did not stop in time). */
static int broker_term(struct broker *b, int ms)
{
	int st;

	if (b->pid <= 0)
		return 0;
	st = broker_sigterm(b->pid, ms);
	b->pid = -1;
	return st;
}

/* Stop it cleanly (SIGTERM must end it with 0 within 10 s). */
static void broker_stop_clean(struct broker *b, const char *when)
{
	int st = broker_term(b, 10000);

	if (st == -1)
		FAIL("%s: broker ignored SIGTERM for 10 s (killed)", when);
	else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		FAIL("%s: broker did not exit 0 on SIGTERM (%s %d)", when,
		     WIFEXITED(st) ? "exit status" : "signal",
		     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

static void broker_teardown(struct broker *b)
{
	if (b->child > 0) {
		kill(b->child, SIGKILL);
		waitpid(b->child, NULL, 0);
		b->child = -1;
	}
	release_all();
	if (b->pid > 0)
		broker_stop_clean(b, "teardown");
	if (harness_cur_failed)
		dump_file("broker log", b->log);
}

/* A test body run between broker_init and broker_teardown. */
#define BROKER_TEST(name) \
	static void name##_body(struct broker *b); \
	TEST(name) \
	{ \
		struct broker b; \
		broker_init(&b); \
		if (!harness_cur_failed) \
			name##_body(&b); \
		broker_teardown(&b); \
	} \
	static void name##_body(struct broker *b)

#define RUN_B(name) do { \
	if (have_broker) { \
		RUN(name); \
	} else { \
		printf("ok %d - %s # skip %s not built\n", ++harness_n, \
		       #name, broker_bin); \
		fflush(stdout); \
	} } while (0)

static mq_client *open_client(const struct broker *b)
{
	mq_client_opts o = { .connect_timeout_ms = 5000,
				   .request_timeout_ms = 15000 };
	mq_client *c = NULL;
	mq_err err;

	if (mq_client_open(b->addr, &o, &c, &err) < 0) {
		FAIL("open %s: %s", b->addr, err.msg);
		return NULL;
	}
	return own(R_CLIENT, c);
}

/* Resident memory of pid in KiB, or -1. */
static long vm_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* Is the broker still running? If it died, say how (and forget it). */
static bool broker_alive(struct broker *b)
{
	int st;

	if (b->pid <= 0)
		return false;
	if (waitpid(b->pid, &st, WNOHANG) != b->pid)
		return true;
	FAIL("the broker (pid %ld) died: %s %d", (long)b->pid,
	     WIFEXITED(st) ? "exit status" : "signal",
	     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	b->pid = -1;
	return false;
}

/* ================= batches and records ================= */

/* Record seq of the crash test: key "k<seq>", a value whose length and
 * bytes follow from seq, so any record read back can be checked alone. */
static int value_for(int64_t seq, char *buf, size_t size)
{
	int n = snprintf(buf, size, "v%lld-", (long long)seq);
	size_t len = 16 + (size_t)(((uint64_t)seq * 2654435761u) % 300);

	if (len >= size)
		len = size - 1;
	for (size_t i = (size_t)n; i < len; i++)
		buf[i] = (char)('a' + (int)(((uint64_t)seq + i) % 26));
	buf[len] = '\0';
	return (int)len;
}

/* A batch of n records "k<first+i>" -> value_for(first+i). */
static int batch_seq(mq_batch_builder *bb, int64_t first, int n)
{
	mq_err err;

	mq_bb_reset(bb);
	for (int i = 0; i < n; i++) {
		char key[32], val[400];
		int kl = snprintf(key, sizeof key, "k%lld",
				  (long long)(first + i));
		int vl = value_for(first + i, val, sizeof val);
		if (mq_bb_add(bb, mq_now_ms(), key, kl, val, vl, NULL, 0,
			      &err) < 0)
			return -1;
	}
	return mq_bb_finish(bb, -1, -1, -1, &err);
}

/* A batch of the given NUL-terminated values (null keys). */
static int batch_vals(mq_batch_builder *bb, const char *const *vals, int n)
{
	mq_err err;

	mq_bb_reset(bb);
	for (int i = 0; i < n; i++)
		if (mq_bb_add(bb, mq_now_ms(), NULL, -1, vals[i],
			      (int32_t)strlen(vals[i]), NULL, 0, &err) < 0)
			return -1;
	return mq_bb_finish(bb, -1, -1, -1, &err);
}

/* One record with a value of len bytes of c. */
static int batch_sized(mq_batch_builder *bb, size_t len, char c)
{
	char *v = malloc(len + 1);
	mq_err err;
	int rc;

	if (!v)
		return -1;
	memset(v, c, len);
	mq_bb_reset(bb);
	rc = mq_bb_add(bb, mq_now_ms(), NULL, -1, v, (int32_t)len, NULL, 0,
		       &err);
	free(v);
	if (rc < 0)
		return -1;
	return mq_bb_finish(bb, -1, -1, -1, &err);
}

/* Produce one batch of values; base offset or -1 (error printed). */
static int64_t produce_vals(mq_client *c, const char *topic, int32_t part,
			    const char *const *vals, int n)
{
	mq_batch_builder bb;
	mq_produce_result res;
	mq_err err;
	int64_t base = -1;

	if (mq_bb_init(&bb, 0, &err) < 0)
		return -1;
	if (batch_vals(&bb, vals, n) < 0)
		FAIL("cannot build a batch");
	else if (mq_client_produce(c, topic, part, NULL, -1, bb.buf, bb.len,
				   &res, &err) < 0)
		FAIL("produce to %s/%d: %s (%s)", topic, part,
		     mq_code_name(err.code), err.msg);
	else
		base = res.base_offset;
	mq_bb_free(&bb);
	return base;
}

/* Records read back from a partition. */
struct rec {
	int64_t offset;
	char *key;               /* NUL-terminated copies; NULL if null */
	int32_t klen;
	char *val;
	int32_t vlen;
};

struct recs {
	struct rec *r;
	size_t n, cap;
	int64_t start, end, visible;
};

static void recs_free(struct recs *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		free(rs->r[i].key);
		free(rs->r[i].val);
	}
	free(rs->r);
	memset(rs, 0, sizeof *rs);
}

static char *dup_bytes(const uint8_t *p, int32_t n)
{
	char *s;

	if (n < 0)
		return NULL;
	s = malloc((size_t)n + 1);
	if (s) {
		memcpy(s, p, (size_t)n);
		s[n] = '\0';
	}
	return s;
}

/*
 * Read topic/part from its log start to what the broker serves, checking
 * every batch in full (length, CRC, records) and that offsets run on
 * from the start without a hole. Returns 0, or -1 with the reason printed.
 */
static int fetch_all_(mq_client *c, const char *topic, int32_t part,
		      struct recs *out)
{
	int64_t offset = 0;
	bool first = true;

	memset(out, 0, sizeof *out);
	for (;;) {
		mq_fetch_result res;
		mq_err err;
		size_t pos = 0;
		int64_t before = offset;

		if (mq_client_fetch(c, topic, part, offset, 1 << 20, 0, &res,
				    &err) < 0) {
			FAIL("fetch %s/%d at %lld: %s (%s)", topic, part,
			     (long long)offset, mq_code_name(err.code), err.msg);
			return -1;
		}
		if (first) {
			out->start = offset = before = res.start;
			first = false;
			if (res.start != 0) {
				/* Nothing here deletes records. */
				FAIL("%s/%d: log start is %lld, not 0", topic,
				     part, (long long)res.start);
				return -1;
			}
		}
		out->end = res.end;
		out->visible = res.visible;
		while (pos < res.len) {
			mq_batch_hdr h;
			mq_batch_iter it;
			mq_record r;
			int rc;

			if (mq_batch_parse_header(res.batches + pos,
						  res.len - pos, &h, &err) < 0 ||
			    mq_batch_size(&h) > res.len - pos) {
				FAIL("%s/%d: fetch at %lld: bad or partial batch "
				     "at byte %zu of %zu: %s", topic, part,
				     (long long)before, pos, res.len, err.msg);
				return -1;
			}
			if (mq_batch_validate(res.batches + pos,
					      mq_batch_size(&h), NULL, &err) < 0 ||
			    mq_batch_iter_init(&it, res.batches + pos,
					       mq_batch_size(&h), &err) < 0) {
				FAIL("%s/%d: the broker served an invalid batch "
				     "(base offset %lld, %d records): %s", topic,
				     part, (long long)h.base_offset,
				     h.record_count, err.msg);
				return -1;
			}
			while ((rc = mq_batch_iter_next(&it, &r, &err)) == 1) {
				struct rec *x;

				if (r.offset < offset)
					continue;
				if (r.offset != offset) {
					FAIL("%s/%d: offset %lld follows %lld "
					     "(a hole)", topic, part,
					     (long long)r.offset,
					     (long long)offset - 1);
					return -1;
				}
				if (out->n == out->cap) {
					size_t cap = out->cap ? out->cap * 2 : 256;
					x = realloc(out->r, cap * sizeof *x);
					if (!x)
						return -1;
					out->r = x;
					out->cap = cap;
				}
				x = &out->r[out->n++];
				x->offset = r.offset;
				x->klen = r.key_len;
				x->key = dup_bytes(r.key, r.key_len);
				x->vlen = r.value_len;
				x->val = dup_bytes(r.value, r.value_len);
				offset++;
			}
			if (rc < 0) {
				FAIL("%s/%d: record iteration: %s", topic, part,
				     err.msg);
				return -1;
			}
			pos += mq_batch_size(&h);
		}
		if (offset >= res.visible)
			break;
		if (offset == before) {
			FAIL("%s/%d: fetch at %lld returned nothing below the "
			     "visible end %lld", topic, part, (long long)offset,
			     (long long)res.visible);
			return -1;
		}
	}
	if (offset != out->visible) {
		FAIL("%s/%d: read up to %lld, but the visible end is %lld",
		     topic, part, (long long)offset, (long long)out->visible);
		return -1;
	}
	return 0;
}

static int fetch_all(mq_client *c, const char *topic, int32_t part,
		     struct recs *out)
{
	int rc = fetch_all_(c, topic, part, out);

	if (rc < 0)
		recs_free(out);
	return rc;
}

/* The value at offset i is exactly want. */
static bool rec_is(const struct recs *rs, int64_t i, const char *want)
{
	if (i < 0 || (size_t)i >= rs->n)
		return false;
	return rs->r[i].val && strcmp(rs->r[i].val, want) == 0;
}

/* The end offset of topic/part from METADATA (on a fresh connection, so
 * it works after a restart too), or -1. */
static int64_t part_end(const struct broker *b, const char *topic,
			int32_t part)
{
	const char *names[1] = { topic };
	mq_topic_meta *m = NULL;
	mq_client *c = open_client(b);
	size_t n = 0;
	int64_t end = -1;
	mq_err err;

	if (!c)
		return -1;
	if (mq_client_metadata(c, names, 1, &m, &n, &err) < 0) {
		FAIL("metadata %s: %s", topic, err.msg);
	} else {
		if (n == 1 && m[0].code == 0 && part < m[0].nparts)
			end = m[0].parts[part].end;
		mq_topic_meta_free(m, n);
	}
	t_close(&c);
	return end;
}

/* A fresh client can produce to topic "alive" and read the record back. */
/* If the broker died, it is started again so that the rest of the test
 * still runs (the test has failed already). */
static void check_alive(struct broker *b, const char *when)
{
	mq_client *c;
	mq_fetch_result res;
	mq_err err;
	char val[64];
	const char *vals[1] = { val };
	int64_t base;

	if (!broker_alive(b)) {
		FAIL("%s: the broker is gone; starting it again", when);
		broker_start(b);
		return;
	}
	if (!(c = open_client(b))) {
		int st = wait_exit(b->pid, 3000);
		if (st == -1) {
			FAIL("%s: the broker runs but cannot be reached", when);
			return;
		}
		FAIL("%s: the broker died (%s %d); starting it again", when,
		     WIFEXITED(st) ? "exit status" : "signal",
		     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		b->pid = -1;
		broker_start(b);
		return;
	}
	snprintf(val, sizeof val, "alive-%lld", (long long)mq_mono_ms());
	base = produce_vals(c, "alive", 0, vals, 1);
	if (base < 0) {
		FAIL("%s: a fresh client cannot produce", when);
	} else if (mq_client_fetch(c, "alive", 0, base, 65536, 0, &res,
				   &err) < 0) {
		FAIL("%s: a fresh client cannot fetch: %s", when, err.msg);
	} else {
		mq_batch_iter it;
		mq_record r;
		bool found = false;
		size_t pos = 0;
		while (pos < res.len) {
			mq_batch_hdr h;
			if (mq_batch_parse_header(res.batches + pos,
						  res.len - pos, &h, &err) < 0 ||
			    mq_batch_size(&h) > res.len - pos ||
			    mq_batch_iter_init(&it, res.batches + pos,
					       mq_batch_size(&h), &err) < 0)
				break;
			while (mq_batch_iter_next(&it, &r, &err) == 1)
				if (r.offset == base &&
				    r.value_len == (int32_t)strlen(val) &&
				    !memcmp(r.value, val, strlen(val)))
					found = true;
			pos += mq_batch_size(&h);
		}
		if (!found)
			FAIL("%s: the record produced at %lld is not fetched back",
			     when, (long long)base);
	}
	t_close(&c);
}

/* ================= raw sockets ================= */

static int raw_connect(const struct broker *b)
{
	mq_addr a;
	mq_err err;
	int fd;

	if (mq_addr_parse(b->addr, &a, &err) < 0 ||
	    (fd = mq_connect(&a, 5000, &err)) < 0) {
		FAIL("raw connect to %s: %s", b->addr, err.msg);
		return -1;
	}
	return fd;
}

static int raw_send(int fd, const void *p, size_t n)
{
	const uint8_t *q = p;

	while (n) {
		ssize_t w = send(fd, q, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		q += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read exactly n bytes before deadline (mono ms). 1 = done, 0 = the peer
 * closed (or reset), -1 = timeout or error. */
static int raw_read_full(int fd, void *p, size_t n, int64_t deadline)
{
	uint8_t *q = p;

	while (n) {
		struct pollfd pf = { fd, POLLIN, 0 };
		int64_t left = deadline - mq_mono_ms();
		ssize_t r;

		if (left <= 0)
			return -1;
		if (poll(&pf, 1, (int)left) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (!pf.revents)
			continue;
		r = recv(fd, q, n, 0);
		if (r == 0 || (r < 0 && (errno == ECONNRESET || errno == EPIPE)))
			return 0;
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -1;
		}
		q += r;
		n -= (size_t)r;
	}
	return 1;
}

struct raw_reply {
	uint32_t id;
	uint16_t type;
	uint16_t code;
	char msg[256];
	uint8_t *frame;          /* whole frame after the length (malloc) */
	size_t len;
	mq_rbuf body;            /* after code and message */
};

/* Read one reply frame within ms: 1, 0 (closed), -1 (timeout/garbage). */
static int raw_reply(int fd, int ms, struct raw_reply *rr)
{
	int64_t deadline = mq_mono_ms() + ms;
	uint8_t lenb[4];
	const char *s;
	size_t n;
	mq_rbuf r;
	int rc;

	memset(rr, 0, sizeof *rr);
	if ((rc = raw_read_full(fd, lenb, 4, deadline)) != 1)
		return rc;
	rr->len = mq_get32(lenb);
	if (rr->len < MQ_FRAME_MIN || rr->len > (64u << 20))
		return -1;
	if (!(rr->frame = malloc(rr->len)))
		return -1;
	if ((rc = raw_read_full(fd, rr->frame, rr->len, deadline)) != 1) {
		free(rr->frame);
		rr->frame = NULL;
		return rc;
	}
	mq_r_init(&r, rr->frame, rr->len);
	rr->id = mq_r_u32(&r);
	rr->type = mq_r_u16(&r);
	mq_r_u16(&r);
	rr->code = mq_r_u16(&r);
	mq_r_str(&r, &s, &n);
	if (r.bad)
		return -1;
	snprintf(rr->msg, sizeof rr->msg, "%.*s", (int)(n < 255 ? n : 255), s);
	mq_r_init(&rr->body, r.p + r.pos, mq_r_left(&r));
	return 1;
}

/* Drain fd until the peer closes it: true if it did within ms. */
static bool raw_closed_within(int fd, int ms)
{
	int64_t deadline = mq_mono_ms() + ms;
	uint8_t buf[65536];

	for (;;) {
		int rc = raw_read_full(fd, buf, 1, deadline);
		if (rc == 0)
			return true;
		if (rc < 0)
			return false;
		/* Discard what else is there. */
		while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0)
			;
	}
}

/* A frame header: length covers everything after the length field. */
static void put_header(uint8_t *p, uint32_t length, uint32_t id,
		       uint16_t type, uint16_t flags)
{
	mq_put32(p, length);
	mq_put32(p + 4, id);
	mq_put16(p + 8, type);
	mq_put16(p + 10, flags);
}

/* ================= 1. kill -9 while producing ================= */

struct ack {
	int32_t part;
	int64_t base;
	int count;
	int64_t seq;             /* first record's seq */
};

#define CRASH_TOPIC "crash"
#define CRASH_PARTS 2
#define CRASH_WINDOW 8

/* The child: produce batches of 1-5 records round robin over the
 * partitions, CRASH_WINDOW in flight, and write "A part base count seq"
 * to wfd for every acknowledgement, "E ..." for a refusal. Ends when the
 * connection does. */
static void crash_producer(const char *addr, int wfd, int64_t seq)
{
	struct { uint32_t id; int32_t part; int64_t seq; int n; } fl[CRASH_WINDOW];
	mq_client_opts o = { .connect_timeout_ms = 5000,
				   .request_timeout_ms = 10000 };
	mq_batch_builder bb;
	mq_client *c;
	mq_wbuf w;
	mq_err err;
	char line[512];
	int nfl = 0, len;
	uint64_t batches = 0;

	if (mq_client_open(addr, &o, &c, &err) < 0) {
		len = snprintf(line, sizeof line, "E open: %s\n", err.msg);
		(void)!write(wfd, line, (size_t)len);
		_exit(0);
	}
	if (mq_bb_init(&bb, 0, &err) < 0)
		_exit(1);
	mq_w_init(&w);
	for (;;) {
		mq_reply r;
		int rc;

		while (nfl < CRASH_WINDOW) {
			int n = 1 + (int)(rng() % 5);
			int32_t part = (int32_t)(batches++ % CRASH_PARTS);
			uint32_t id = mq_client_next_id(c);

			if (batch_seq(&bb, seq, n) < 0)
				_exit(1);
			mq_w_reset(&w);
			mq_req_produce(&w, id, CRASH_TOPIC, part, NULL, -1, 1,
				       bb.buf, bb.len);
			if (mq_client_send(c, w.p, w.len, &err) < 0)
				_exit(0);
			fl[nfl].id = id;
			fl[nfl].part = part;
			fl[nfl].seq = seq;
			fl[nfl].n = n;
			nfl++;
			seq += n;
		}
		rc = mq_client_recv(c, 10000, &r, &err);
		if (rc < 0)
			_exit(0);	/* the broker is gone */
		if (rc == 0) {
			len = snprintf(line, sizeof line,
				       "E no reply within 10 s\n");
			(void)!write(wfd, line, (size_t)len);
			_exit(0);
		}
		int i;
		for (i = 0; i < nfl && fl[i].id != r.id; i++)
			;
		if (i == nfl) {
			len = snprintf(line, sizeof line,
				       "E reply to unknown id %u\n", r.id);
			(void)!write(wfd, line, (size_t)len);
			_exit(0);
		}
		mq_produce_result res;
		if (mq_produce_result_decode(&r, &res, &err) < 0) {
			len = snprintf(line, sizeof line, "E produce %s: %s\n",
				       mq_code_name(err.code), err.msg);
			(void)!write(wfd, line, (size_t)len);
			_exit(0);
		}
		len = snprintf(line, sizeof line, "A %d %lld %d %lld\n",
			       res.partition, (long long)res.base_offset,
			       fl[i].n, (long long)fl[i].seq);
		if (res.partition != fl[i].part)
			len = snprintf(line, sizeof line,
				       "E ack for partition %d, sent to %d\n",
				       res.partition, fl[i].part);
		if (write(wfd, line, (size_t)len) != len)
			_exit(0);
		fl[i] = fl[--nfl];
	}
}

/* Every record read back is one the producer made, none twice, and
 * every acknowledged one is where its ack said. */
static void crash_verify(struct broker *b, const struct ack *acks,
			 size_t nacks, int round)
{
	struct recs rs[CRASH_PARTS];
	int64_t *seqs = NULL;
	size_t nseqs = 0, total = 0;
	mq_client *c = open_client(b);
	bool ok = true;

	MUST(c);
	for (int p = 0; p < CRASH_PARTS; p++) {
		if (fetch_all(c, CRASH_TOPIC, p, &rs[p]) < 0) {
			FAIL("round %d: partition %d could not be read back "
			     "in full", round, p);
			for (int q = 0; q < p; q++)
				recs_free(&rs[q]);
			t_close(&c);
			return;
		}
		if (rs[p].visible != rs[p].end)
			FAIL("round %d: %s/%d after restart: visible %lld but "
			     "end %lld", round, CRASH_TOPIC, p,
			     (long long)rs[p].visible, (long long)rs[p].end);
		total += rs[p].n;
	}
	seqs = t_malloc((total + 1) * sizeof *seqs);
	for (int p = 0; p < CRASH_PARTS && ok; p++)
		for (size_t i = 0; i < rs[p].n; i++) {
			const struct rec *x = &rs[p].r[i];
			char want[400];
			long long seq;
			char tail;

			if (!x->key || sscanf(x->key, "k%lld%c", &seq, &tail) != 1 ||
			    !x->val) {
				FAIL("round %d: %s/%d offset %lld: a record the "
				     "producer never made (key %s)", round,
				     CRASH_TOPIC, p, (long long)x->offset,
				     x->key ? x->key : "null");
				ok = false;
				break;
			}
			value_for(seq, want, sizeof want);
			if (strcmp(x->val, want) != 0) {
				FAIL("round %d: %s/%d offset %lld: value of "
				     "k%lld damaged", round, CRASH_TOPIC, p,
				     (long long)x->offset, seq);
				ok = false;
				break;
			}
			seqs[nseqs++] = seq;
		}
	/* No record twice (sort; adjacent equal = duplicate). */
	for (size_t i = 1; i < nseqs && ok; i++) {
		int64_t v = seqs[i];
		size_t j = i;
		while (j > 0 && seqs[j - 1] > v) {
			seqs[j] = seqs[j - 1];
			j--;
		}
		seqs[j] = v;
	}
	for (size_t i = 1; i < nseqs && ok; i++)
		if (seqs[i] == seqs[i - 1]) {
			FAIL("round %d: record k%lld is in the log twice", round,
			     (long long)seqs[i]);
			ok = false;
		}
	size_t missing = 0;
	for (size_t a = 0; a < nacks; a++) {
		const struct ack *k = &acks[a];
		const struct recs *r = &rs[k->part];
		for (int i = 0; i < k->count; i++) {
			int64_t off = k->base + i;
			char key[32];
			snprintf(key, sizeof key, "k%lld", (long long)(k->seq + i));
			if (off >= (int64_t)r->n || !r->r[off].key ||
			    strcmp(r->r[off].key, key) != 0) {
				if (missing++ < 5)
					FAIL("round %d: acknowledged record %s "
					     "(%s/%d offset %lld) is %s", round,
					     key, CRASH_TOPIC, k->part,
					     (long long)off,
					     off >= (int64_t)r->n ? "gone"
					     : "something else");
			}
		}
	}
	if (missing)
		FAIL("round %d: %zu acknowledged record(s) lost", round, missing);
	fprintf(stderr, "# crash round %d: %zu acks so far, %lld + %lld records "
		"in the log\n", round, nacks, (long long)rs[0].n,
		(long long)rs[1].n);
	disown(seqs);
	for (int p = 0; p < CRASH_PARTS; p++)
		recs_free(&rs[p]);
	t_close(&c);
}

/* Rounds of: produce, kill -9 at a random ack, restart, check. */
static int active_log(const struct broker *b, const char *topic, int part,
		      char *path, size_t size);

/* 1 if the file at path ends with a batch header's worth of zeros. */
static int zero_tail(const char *path)
{
	uint8_t raw[MQ_BATCH_HEADER_SIZE];
	struct stat st;
	int fd = open(path, O_RDONLY), z = 0;

	if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size >= (off_t)sizeof raw &&
	    pread(fd, raw, sizeof raw, st.st_size - (off_t)sizeof raw) ==
	    (ssize_t)sizeof raw) {
		z = 1;
		for (size_t i = 0; i < sizeof raw; i++)
			z &= raw[i] == 0;
	}
	if (fd >= 0)
		close(fd);
	return z;
}

static void kill9_rounds(struct broker *b, const char *flush, int rounds)
{
	enum { MAX_ACKS = 16384 };
	int zero_tails = 0;
	char log[4500];
	struct ack *acks = t_malloc(MAX_ACKS * sizeof *acks);
	size_t nacks = 0;
	mq_client *c;
	mq_err err;

	broker_opts(b, "--flush", flush, "--segment-bytes", "64K", NULL);
	MUST(broker_start(b) == 0);
	MUST((c = open_client(b)));
	if (mq_client_create_topic(c, CRASH_TOPIC, CRASH_PARTS, &err) < 0)
		FAIL("create %s: %s", CRASH_TOPIC, err.msg);
	t_close(&c);

	for (int round = 0; round < rounds && !harness_cur_failed; round++) {
		int pfd[2];
		size_t target = 300 + (size_t)(rng() % 701), round_acks = 0;
		char buf[8192];
		size_t have = 0;
		bool killed = false, eof = false;
		int64_t deadline = mq_mono_ms() + 30000;

		MUST(pipe(pfd) == 0);
		fflush(NULL);
		b->child = fork();
		MUST(b->child >= 0);
		if (b->child == 0) {
			close(pfd[0]);
			rng_state ^= (uint64_t)round * 7919;
			crash_producer(b->addr, pfd[1],
				       (int64_t)(round + 1) * 1000000);
			_exit(0);
		}
		close(pfd[1]);
		while (!eof) {
			struct pollfd pf = { pfd[0], POLLIN, 0 };
			int64_t left = deadline - mq_mono_ms();
			ssize_t n;

			if (left <= 0) {
				FAIL("round %d: producer still running after 30 s "
				     "(%zu acks)", round, round_acks);
				break;
			}
			if (poll(&pf, 1, (int)left) <= 0)
				continue;
			n = read(pfd[0], buf + have, sizeof buf - 1 - have);
			if (n <= 0) {
				eof = true;
				n = 0;
			}
			have += (size_t)n;
			buf[have] = '\0';
			char *line = buf, *nl;
			while ((nl = strchr(line, '\n'))) {
				struct ack k;
				*nl = '\0';
				if (line[0] == 'A' &&
				    sscanf(line, "A %d %lld %d %lld", &k.part,
					   (long long *)&k.base, &k.count,
					   (long long *)&k.seq) == 4) {
					if (nacks < MAX_ACKS)
						acks[nacks++] = k;
					round_acks++;
				} else if (!killed) {
					FAIL("round %d: producer: %s", round, line);
					broker_kill9(b);
					killed = true;
				}
				line = nl + 1;
			}
			have = strlen(line);
			memmove(buf, line, have);
			if (!killed && round_acks >= target) {
				/* Somewhere in the middle of the next group
				 * commit, not right at an ack. */
				sleep_ms((int)(rng() % 3));
				broker_kill9(b);
				killed = true;
			}
		}
		close(pfd[0]);
		if (wait_exit(b->child, 15000) == -1) {
			FAIL("round %d: producer did not exit after the broker "
			     "died", round);
			kill(b->child, SIGKILL);
			waitpid(b->child, NULL, 0);
		}
		b->child = -1;
		if (!killed) {
			FAIL("round %d: producer stopped after %zu acks, before "
			     "the kill", round, round_acks);
			broker_kill9(b);
		}
		/* Sync flush preallocates: the kill leaves zeros after the
		 * last batch, which recovery must take for the end. */
		if (active_log(b, CRASH_TOPIC, 0, log, sizeof log) == 0 &&
		    zero_tail(log))
			zero_tails++;
		if (broker_start(b) < 0)
			break;
		crash_verify(b, acks, nacks, round);
	}
	if (!strcmp(flush, "sync"))
		CHECK(zero_tails > 0);
	disown(acks);
}

/* Sync flush: an ack means on disk; kill -9 loses none of them. */
BROKER_TEST(kill9_mid_stream)
{
	kill9_rounds(b, "sync", 3);
}

/* Async flush: an ack means in the page cache, which survives the death
 * of the process, so kill -9 loses none of them either. */
BROKER_TEST(kill9_mid_stream_async)
{
	kill9_rounds(b, "async", 2);
}

/* ================= 2. damaged tail on disk ================= */

/* Path of the last .log of topic/part (the active segment). */
static int active_log(const struct broker *b, const char *topic, int part,
		      char *path, size_t size)
{
	char dir[4400], best[64] = "";
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof dir, "%s/topics/%s/%d", b->dir, topic, part);
	if (!(d = opendir(dir)))
		return -1;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		if (n == 24 && !strcmp(de->d_name + 20, ".log") &&
		    strcmp(de->d_name, best) > 0)
			snprintf(best, sizeof best, "%s", de->d_name);
	}
	closedir(d);
	if (!best[0])
		return -1;
	snprintf(path, size, "%s/%s", dir, best);
	return 0;
}

static int append_file(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_APPEND);
	ssize_t w;

	if (fd < 0)
		return -1;
	w = write(fd, p, n);
	fsync(fd);
	close(fd);
	return w == (ssize_t)n ? 0 : -1;
}

/* Flip one byte inside the last record of the last batch of the .log at
 * path; returns the base offset of that batch, or -1. */
static int64_t flip_in_last_batch(const char *path)
{
	int fd = open(path, O_RDWR);
	struct stat st;
	uint8_t *buf;
	size_t pos = 0, last = SIZE_MAX;
	mq_batch_hdr h, lh;
	mq_err err;
	int64_t base = -1;

	if (fd < 0 || fstat(fd, &st) < 0 || !(buf = malloc((size_t)st.st_size + 1))) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (pread(fd, buf, (size_t)st.st_size, 0) == st.st_size) {
		while (pos < (size_t)st.st_size &&
		       mq_batch_parse_header(buf + pos, (size_t)st.st_size - pos,
					     &h, &err) == 0 &&
		       mq_batch_size(&h) <= (size_t)st.st_size - pos) {
			last = pos;
			lh = h;
			pos += mq_batch_size(&h);
		}
	}
	if (last != SIZE_MAX) {
		/* Three bytes from the end: inside the last value (the
		 * record ends with the header count). */
		size_t at = last + mq_batch_size(&lh) - 3;
		uint8_t v = buf[at] ^ 0x20;
		if (pwrite(fd, &v, 1, (off_t)at) == 1 && fsync(fd) == 0)
			base = lh.base_offset;
	}
	free(buf);
	close(fd);
	return base;
}

/* 20 batches of 3 records "d<i>" into topic t: 60 records. */
static void produce_60(struct broker *b)
{
	mq_client *c = open_client(b);

	MUST(c);
	for (int i = 0; i < 20; i++) {
		char v[3][32];
		const char *vals[3] = { v[0], v[1], v[2] };
		for (int j = 0; j < 3; j++)
			snprintf(v[j], sizeof v[j], "d%d", i * 3 + j);
		if (produce_vals(c, "t", 0, vals, 3) != i * 3) {
			FAIL("batch %d not at offset %d", i, i * 3);
			break;
		}
	}
	t_close(&c);
}

/* The partition holds exactly d0..d<n-1> (what produce_60 wrote), then
 * "new<i>" values; a new batch of 2 goes at n + extra. */
static void expect_records(struct broker *b, int n_d, int n_new,
			   const char *when)
{
	struct recs rs;
	mq_client *c = open_client(b);
	int64_t base;

	MUST(c);
	if (fetch_all(c, "t", 0, &rs) == 0) {
		if ((int64_t)rs.n != n_d + n_new)
			FAIL("%s: %zu records served, want %d", when, rs.n,
			     n_d + n_new);
		for (int i = 0; i < n_d + n_new && i < (int)rs.n; i++) {
			char want[32];
			if (i < n_d)
				snprintf(want, sizeof want, "d%d", i);
			else
				snprintf(want, sizeof want, "new%d", i - n_d);
			if (!rec_is(&rs, i, want)) {
				FAIL("%s: offset %d holds %s, want %s", when, i,
				     rs.r[i].val ? rs.r[i].val : "null", want);
				break;
			}
		}
		recs_free(&rs);
	} else {
		FAIL("%s: cannot read the partition back", when);
	}
	{
		char v0[32], v1[32];
		const char *vals[2] = { v0, v1 };
		snprintf(v0, sizeof v0, "new%d", n_new);
		snprintf(v1, sizeof v1, "new%d", n_new + 1);
		base = produce_vals(c, "t", 0, vals, 2);
		if (base != n_d + n_new)
			FAIL("%s: new batch went to offset %lld, want %d", when,
			     (long long)base, n_d + n_new);
	}
	t_close(&c);
}

BROKER_TEST(torn_tail_garbage)
{
	char log[4500];
	mq_batch_builder *bb = t_bb();
	uint8_t junk[37];

	broker_opts(b, "--flush", "sync", NULL);
	MUST(broker_start(b) == 0);
	produce_60(b);
	broker_stop_clean(b, "first stop");
	MUST(!harness_cur_failed);

	/* Half of a real batch: a header that promises more than is there. */
	MUST(active_log(b, "t", 0, log, sizeof log) == 0);
	MUST(batch_seq(bb, 7, 4) == 0);
	mq_batch_set_base_offset(bb->buf, 60);
	MUST(append_file(log, bb->buf, bb->len / 2) == 0);
	MUST(broker_start(b) == 0);
	expect_records(b, 60, 0, "after half a batch");
	broker_stop_clean(b, "second stop");
	MUST(!harness_cur_failed);

	/* Random garbage after the last batch. */
	MUST(active_log(b, "t", 0, log, sizeof log) == 0);
	fill_random(junk, sizeof junk);
	MUST(append_file(log, junk, sizeof junk) == 0);
	MUST(broker_start(b) == 0);
	expect_records(b, 60, 2, "after random garbage");
}

/*
 * A byte flipped in the last batch, which the broker wrote and
 * acknowledged but whose recovery point was not recorded (the broker was
 * killed): recovery verifies it, finds the CRC wrong and cuts it.
 */
BROKER_TEST(flipped_byte_after_crash)
{
	char log[4500];
	int64_t base;

	broker_opts(b, "--flush", "sync", NULL);
	MUST(broker_start(b) == 0);
	produce_60(b);
	broker_kill9(b);
	MUST(!harness_cur_failed);
	MUST(active_log(b, "t", 0, log, sizeof log) == 0);
	base = flip_in_last_batch(log);
	CHECK_EQ_INT(base, 57);
	MUST(broker_start(b) == 0);
	expect_records(b, 57, 0, "after a flipped byte (crash)");
}

/*
 * The same after a clean stop: now the recovery point lies after the
 * damaged batch, and recovery need not look at it. Whatever the broker
 * does, it must not hand out a batch whose CRC is wrong: it may serve the
 * 57 records before it (having cut it; new records then go at 57), or
 * refuse the damaged batch with MQ_E_CORRUPT (new records then go at 60).
 */
BROKER_TEST(flipped_byte_after_clean_stop)
{
	char log[4500];
	int64_t base, off = 0, want_base = 57;
	mq_client *c;
	bool bad = false;

	broker_opts(b, "--flush", "sync", NULL);
	MUST(broker_start(b) == 0);
	produce_60(b);
	broker_stop_clean(b, "first stop");
	MUST(!harness_cur_failed);
	MUST(active_log(b, "t", 0, log, sizeof log) == 0);
	base = flip_in_last_batch(log);
	CHECK_EQ_INT(base, 57);
	MUST(broker_start(b) == 0);
	MUST((c = open_client(b)));
	while (!bad) {
		mq_fetch_result res;
		mq_err err;
		size_t pos = 0;
		int64_t before = off;

		if (mq_client_fetch(c, "t", 0, off, 1 << 20, 0, &res, &err) < 0) {
			if (err.code == MQ_E_CORRUPT && off == 57) {
				fprintf(stderr, "# damaged batch refused: %s\n",
					err.msg);
				want_base = 60;
			} else {
				FAIL("fetch at %lld: %s (%s)", (long long)off,
				     mq_code_name(err.code), err.msg);
				bad = true;
			}
			break;
		}
		while (pos < res.len && !bad) {
			mq_batch_hdr h;
			mq_batch_iter it;
			mq_record r;

			if (mq_batch_parse_header(res.batches + pos, res.len - pos,
						  &h, &err) < 0 ||
			    mq_batch_size(&h) > res.len - pos ||
			    mq_batch_validate(res.batches + pos, mq_batch_size(&h),
					      NULL, &err) < 0 ||
			    mq_batch_iter_init(&it, res.batches + pos,
					       mq_batch_size(&h), &err) < 0) {
				FAIL("the broker served the batch at offset %lld, "
				     "damaged on disk while it was stopped, as if "
				     "it were good: %s", (long long)h.base_offset,
				     err.msg);
				bad = true;
				break;
			}
			while (mq_batch_iter_next(&it, &r, &err) == 1) {
				char want[32];
				if (r.offset < off)
					continue;
				snprintf(want, sizeof want, "d%lld",
					 (long long)r.offset);
				if (r.offset != off || r.value_len != (int32_t)strlen(want) ||
				    memcmp(r.value, want, strlen(want))) {
					FAIL("offset %lld: not d%lld",
					     (long long)r.offset, (long long)off);
					bad = true;
					break;
				}
				off++;
			}
			pos += mq_batch_size(&h);
		}
		if (off >= res.visible || off == before)
			break;
	}
	if (!bad && off != 57)
		FAIL("%lld records served, want the 57 before the damaged batch",
		     (long long)off);
	if (!bad) {
		const char *v[1] = { "after-damage" };
		CHECK_EQ_INT(produce_vals(c, "t", 0, v, 1), want_base);
	}
	t_close(&c);
}

/* ================= 3. malformed frames ================= */

/* Send a complete request frame (header + payload) on fd. */
static int raw_request(int fd, uint32_t id, uint16_t type, const void *payload,
		       size_t n)
{
	uint8_t *f = malloc(MQ_FRAME_HEADER + n);
	int rc;

	if (!f)
		return -1;
	put_header(f, (uint32_t)(MQ_FRAME_MIN + n), id, type, 0);
	if (n)
		memcpy(f + MQ_FRAME_HEADER, payload, n);
	rc = raw_send(fd, f, MQ_FRAME_HEADER + n);
	free(f);
	return rc;
}

/* Expect a reply to id with code, within 5 s. */
static bool expect_reply(int fd, uint32_t id, uint16_t type, int code,
			 const char *what)
{
	struct raw_reply rr;
	int rc = raw_reply(fd, 5000, &rr);
	bool ok = false;

	if (rc != 1)
		FAIL("%s: no reply (%s)", what, rc == 0 ? "connection closed"
		     : "timeout or garbage");
	else if (rr.id != id || rr.type != (type | MQ_REPLY))
		FAIL("%s: reply id %u type 0x%x, want id %u type 0x%x", what,
		     rr.id, rr.type, id, type | MQ_REPLY);
	else if (rr.code != code)
		FAIL("%s: code %s (%s), want %s", what, mq_code_name(rr.code),
		     rr.msg, mq_code_name(code));
	else
		ok = true;
	free(rr.frame);
	return ok;
}

static void expect_usable(int fd, const char *what)
{
	if (raw_request(fd, 77, MQ_T_STATUS, NULL, 0) < 0)
		FAIL("%s: cannot send on the connection", what);
	else
		expect_reply(fd, 77, MQ_T_STATUS, 0, what);
}

/* Produce payload for topic t partition 0 around batch (n bytes). */
static void produce_payload(mq_wbuf *w, const char *topic, const void *batch,
			    int32_t n)
{
	mq_w_reset(w);
	mq_w_str(w, topic);
	mq_w_u32(w, 0);
	mq_w_bytes(w, NULL, -1);
	mq_w_u8(w, 1);
	mq_w_bytes(w, batch, n);
}

BROKER_TEST(malformed_frames)
{
	mq_batch_builder *bb = t_bb();
	mq_client *c;
	mq_wbuf *w = t_wbuf();
	uint8_t hdr[MQ_FRAME_HEADER];
	uint32_t max_frame;
	int fd;

	MUST(broker_start(b) == 0);
	MUST((c = open_client(b)));
	max_frame = mq_client_max_frame(c);
	{
		const char *v[1] = { "first" };
		MUST(produce_vals(c, "t", 0, v, 1) == 0);
	}

	/* Length 3: below the minimum of 8. */
	MUST((fd = raw_connect(b)) >= 0);
	put_header(hdr, 3, 11, MQ_T_STATUS, 0);
	CHECK(raw_send(fd, hdr, sizeof hdr) == 0);
	expect_reply(fd, 11, MQ_T_STATUS, MQ_E_INVAL, "length 3");
	if (!raw_closed_within(fd, 3000))
		FAIL("length 3: connection not closed after the error");
	close(fd);
	check_alive(b, "after length 3");
	/* The same frame as the length says it: 4 + 3 bytes, no more. The
	 * broker cannot answer with an id it never got, but it must not
	 * sit on a frame that can never become valid. */
	MUST((fd = raw_connect(b)) >= 0);
	CHECK(raw_send(fd, "\0\0\0\3abc", 7) == 0);
	{
		struct raw_reply rr;
		int rc = raw_reply(fd, 3000, &rr);
		if (rc < 0)
			FAIL("a 7-byte frame of length 3: neither an answer nor "
			     "a close within 3 s");
		else if (rc == 1 && rr.code != MQ_E_INVAL)
			FAIL("a 7-byte frame of length 3: answered %s",
			     mq_code_name(rr.code));
		else if (rc == 1 && !raw_closed_within(fd, 3000))
			FAIL("a 7-byte frame of length 3: not closed after the "
			     "error");
		free(rr.frame);
	}
	close(fd);
	check_alive(b, "after a 7-byte frame");

	/* Above the frame limit (the broker must not wait for the body). */
	MUST((fd = raw_connect(b)) >= 0);
	put_header(hdr, max_frame + 1, 12, MQ_T_PRODUCE, 0);
	CHECK(raw_send(fd, hdr, sizeof hdr) == 0);
	expect_reply(fd, 12, MQ_T_PRODUCE, MQ_E_TOO_LARGE, "length max+1");
	if (!raw_closed_within(fd, 3000))
		FAIL("length max+1: connection not closed after the error");
	close(fd);
	check_alive(b, "after an oversized frame");

	/* Unknown request type: an error, and the connection goes on. */
	MUST((fd = raw_connect(b)) >= 0);
	CHECK(raw_request(fd, 13, 999, "abc", 3) == 0);
	expect_reply(fd, 13, 999, MQ_E_UNSUPPORTED, "type 999");
	CHECK(raw_request(fd, 14, 0x7fff, NULL, 0) == 0);
	expect_reply(fd, 14, 0x7fff, MQ_E_UNSUPPORTED, "type 0x7fff");
	CHECK(raw_request(fd, 15, MQ_T_STATUS | MQ_REPLY, NULL, 0) == 0);
	expect_reply(fd, 15, MQ_T_STATUS | MQ_REPLY, MQ_E_UNSUPPORTED,
		     "a reply type as a request");
	expect_usable(fd, "after unknown types");

	/* A produce whose batch fails its CRC: refused, nothing appended. */
	{
		const char *v[2] = { "crc-a", "crc-b" };
		int64_t end0 = part_end(b, "t", 0);
		MUST(batch_vals(bb, v, 2) == 0);
		bb->buf[bb->len - 4] ^= 0x01;	/* inside "crc-b" */
		produce_payload(w, "t", bb->buf, (int32_t)bb->len);
		CHECK(raw_request(fd, 16, MQ_T_PRODUCE, w->p, w->len) == 0);
		expect_reply(fd, 16, MQ_T_PRODUCE, MQ_E_CORRUPT, "bad CRC");
		CHECK_EQ_INT(part_end(b, "t", 0), end0);
		/* A batch whose length field lies (CRC intact). */
		MUST(batch_vals(bb, v, 2) == 0);
		mq_put32(bb->buf + 8, (uint32_t)(bb->len - 12 + 100));
		produce_payload(w, "t", bb->buf, (int32_t)bb->len);
		CHECK(raw_request(fd, 17, MQ_T_PRODUCE, w->p, w->len) == 0);
		expect_reply(fd, 17, MQ_T_PRODUCE, MQ_E_CORRUPT,
			     "batch length field too large");
		CHECK_EQ_INT(part_end(b, "t", 0), end0);
		/* A record count that lies (resealed, so the CRC is right). */
		MUST(batch_vals(bb, v, 2) == 0);
		mq_put32(bb->buf + 57, 3);
		mq_batch_seal(bb->buf, bb->len);
		produce_payload(w, "t", bb->buf, (int32_t)bb->len);
		CHECK(raw_request(fd, 18, MQ_T_PRODUCE, w->p, w->len) == 0);
		expect_reply(fd, 18, MQ_T_PRODUCE, MQ_E_CORRUPT,
			     "record count 3 for 2 records");
		CHECK_EQ_INT(part_end(b, "t", 0), end0);
		expect_usable(fd, "after corrupt batches");
	}

	/* Truncated produce payloads. */
	{
		const char *v[1] = { "x" };
		MUST(batch_vals(bb, v, 1) == 0);
		mq_w_reset(w);
		mq_w_str(w, "t");
		mq_w_u32(w, 0);	/* then nothing: key, acks, batch missing */
		CHECK(raw_request(fd, 19, MQ_T_PRODUCE, w->p, w->len) == 0);
		expect_reply(fd, 19, MQ_T_PRODUCE, MQ_E_INVAL,
			     "produce without key/acks/batch");
		CHECK(raw_request(fd, 20, MQ_T_PRODUCE, NULL, 0) == 0);
		expect_reply(fd, 20, MQ_T_PRODUCE, MQ_E_INVAL,
			     "produce with an empty payload");
		/* The batch's bytes field promises more than follows. */
		produce_payload(w, "t", bb->buf, (int32_t)bb->len);
		mq_put32(w->p + w->len - bb->len - 4, (uint32_t)bb->len + 50);
		CHECK(raw_request(fd, 21, MQ_T_PRODUCE, w->p, w->len) == 0);
		expect_reply(fd, 21, MQ_T_PRODUCE, MQ_E_INVAL,
			     "produce whose batch is cut short");
		/* A string length running past the end. */
		uint8_t p[4] = { 0xff, 0xff, 't', 0 };
		CHECK(raw_request(fd, 22, MQ_T_FETCH, p, sizeof p) == 0);
		expect_reply(fd, 22, MQ_T_FETCH, MQ_E_INVAL,
			     "fetch with a string past the end");
		CHECK(raw_request(fd, 23, MQ_T_METADATA, "\xff\xff\xff\xff", 4) == 0);
		expect_reply(fd, 23, MQ_T_METADATA, MQ_E_INVAL,
			     "metadata with 4G topics");
		CHECK_EQ_INT(part_end(b, "t", 0), 1);
		expect_usable(fd, "after truncated payloads");
	}
	close(fd);
	check_alive(b, "after bad requests");

	/* 64 KiB of random bytes (a nonsense length first, so the broker
	 * cannot wait for a frame that never ends). */
	{
		uint8_t *junk = t_malloc(65536);
		fill_random(junk, 65536);
		junk[0] |= 0x80;
		MUST((fd = raw_connect(b)) >= 0);
		(void)raw_send(fd, junk, 65536);	/* may fail: closed */
		if (!raw_closed_within(fd, 5000))
			FAIL("64 KiB of random bytes: connection not closed");
		close(fd);
		disown(junk);
		check_alive(b, "after random bytes");
	}

	/* A frame that stops half way, then the client goes away. */
	{
		const char *v[1] = { "half" };
		MUST(batch_vals(bb, v, 1) == 0);
		produce_payload(w, "t", bb->buf, (int32_t)bb->len);
		uint8_t *f = t_malloc(MQ_FRAME_HEADER + w->len);
		put_header(f, (uint32_t)(MQ_FRAME_MIN + w->len), 24, MQ_T_PRODUCE, 0);
		memcpy(f + MQ_FRAME_HEADER, w->p, w->len);
		MUST((fd = raw_connect(b)) >= 0);
		CHECK(raw_send(fd, f, (MQ_FRAME_HEADER + w->len) / 2) == 0);
		sleep_ms(50);
		close(fd);
		/* And one that stops inside the header. */
		MUST((fd = raw_connect(b)) >= 0);
		CHECK(raw_send(fd, f, 7) == 0);
		sleep_ms(50);
		close(fd);
		disown(f);
		sleep_ms(50);
		check_alive(b, "after half frames");
		CHECK_EQ_INT(part_end(b, "t", 0), 1);
	}

	/* Many requests in one write, and the client hangs up before any
	 * reply: the broker's replies fail (EPIPE) while frames it has
	 * read are still waiting to be handled. */
	{
		enum { MANY = 2000 };
		uint8_t *many = t_malloc(MANY * MQ_FRAME_HEADER);
		for (int i = 0; i < MANY; i++)
			put_header(many + i * MQ_FRAME_HEADER, MQ_FRAME_MIN,
				   (uint32_t)(5000 + i), MQ_T_STATUS, 0);
		for (int round = 0; round < 5; round++) {
			MUST((fd = raw_connect(b)) >= 0);
			CHECK(raw_send(fd, many, MANY * MQ_FRAME_HEADER) == 0);
			close(fd);
		}
		disown(many);
		sleep_ms(100);
		check_alive(b, "after clients that hung up on their replies");
	}

	/* Frames of valid length, valid type and random payloads (each
	 * starting with a plausible topic or group name, so decoding goes
	 * past the first field). */
	{
		static const uint16_t types[] = {
			MQ_T_STATUS, MQ_T_METADATA, MQ_T_CREATE_TOPIC,
			MQ_T_PRODUCE, MQ_T_FETCH, MQ_T_INIT_PRODUCER,
			MQ_T_LIST_OFFSET, MQ_T_DELETE_RECORDS,
			MQ_T_JOIN_GROUP, MQ_T_HEARTBEAT, MQ_T_LEAVE_GROUP,
			MQ_T_COMMIT, MQ_T_DESCRIBE_GROUPS,
		};
		uint8_t buf[65536];
		MUST((fd = raw_connect(b)) >= 0);
		for (int i = 0; i < 3000; i++) {
			uint16_t type = types[rng() % (sizeof types / sizeof *types)];
			size_t n = rng() % 96;
			mq_w_reset(w);
			if (rng() % 4) {
				const char *names[] = { "t", "fz", "g", "" };
				mq_w_str(w, names[rng() % 4]);
			}
			uint8_t *r = mq_w_reserve(w, n);
			MUST(r);
			fill_random(r, n);
			/* Keep long polls and rebalances short. */
			if (type == MQ_T_FETCH || type == MQ_T_JOIN_GROUP)
				type = (uint16_t)(rng() % 2 ? type : MQ_T_STATUS);
			if (raw_request(fd, (uint32_t)(1000 + i), type, w->p,
					w->len) < 0) {
				FAIL("fuzz: connection lost at frame %d", i);
				break;
			}
			while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0)
				;
		}
		close(fd);
		check_alive(b, "after random payloads");
	}
	t_close(&c);
}

/*
 * Clients that stop reading (shutdown SHUT_RD: the broker's replies fail
 * with EPIPE) while several replies are owed to them: sync produces
 * waiting for the same flush, long polls parked on the same partition.
 * Answering the first fails and closes the connection, which drops the
 * others: the broker must not touch them afterwards.
 */
BROKER_TEST(peer_stops_reading)
{
	mq_batch_builder *bb = t_bb();
	mq_wbuf *w = t_wbuf();
	mq_client *c;
	int fd;

	broker_opts(b, "--flush", "sync", NULL);
	MUST(broker_start(b) == 0);
	MUST((c = open_client(b)));
	{
		const char *v[1] = { "x" };
		MUST(produce_vals(c, "t", 0, v, 1) == 0);
		MUST(produce_vals(c, "lp", 0, v, 1) == 0);
	}

	/* Producers that die (close without reading) with sync produces
	 * still waiting for their flush. */
	for (int round = 0; round < 30; round++) {
		const char *v[1] = { "orphan" };
		MUST(batch_vals(bb, v, 1) == 0);
		mq_w_reset(w);
		for (int i = 0; i < 20; i++)
			mq_req_produce(w, (uint32_t)(100 + i), "t", 0, NULL, -1,
				       1, bb->buf, bb->len);
		if ((fd = raw_connect(b)) < 0)
			break;
		CHECK(raw_send(fd, w->p, w->len) == 0);
		sleep_ms(round % 3);
		close(fd);
		if (!broker_alive(b))
			break;
	}
	sleep_ms(100);
	check_alive(b, "after producers died with produces in flight");
	t_close(&c);
	MUST((c = open_client(b)));

	/* Produces owed to a reader that is gone. */
	for (int round = 0; round < 5; round++) {
		const char *v[1] = { "unread" };
		MUST(batch_vals(bb, v, 1) == 0);
		mq_w_reset(w);
		for (int i = 0; i < 4; i++)
			mq_req_produce(w, (uint32_t)(100 + i), "t", 0, NULL, -1,
				       1, bb->buf, bb->len);
		if ((fd = raw_connect(b)) < 0)
			break;
		shutdown(fd, SHUT_RD);
		CHECK(raw_send(fd, w->p, w->len) == 0);
		sleep_ms(100);
		close(fd);
		if (!broker_alive(b))
			break;
	}
	check_alive(b, "after produces to a client that stopped reading");
	t_close(&c);
	MUST((c = open_client(b)));

	/* Long polls owed to a reader that is gone. */
	for (int round = 0; round < 3; round++) {
		int64_t end = part_end(b, "lp", 0);
		const char *v[1] = { "wake" };
		mq_w_reset(w);
		for (int i = 0; i < 4; i++)
			mq_req_fetch(w, (uint32_t)(200 + i), "lp", 0, end, 65536,
				     5000);
		if ((fd = raw_connect(b)) < 0)
			break;
		CHECK(raw_send(fd, w->p, w->len) == 0);
		sleep_ms(100);
		shutdown(fd, SHUT_RD);
		if (produce_vals(c, "lp", 0, v, 1) != end) {
			FAIL("round %d: the produce that wakes the polls failed",
			     round);
			close(fd);
			check_alive(b, "after the failed produce");
			t_close(&c);
			MUST((c = open_client(b)));
			continue;
		}
		sleep_ms(100);
		close(fd);
		if (!broker_alive(b))
			break;
	}
	check_alive(b, "after long polls of a client that stopped reading");
	t_close(&c);

	/* A group rebalance whose answers go to two members, one of which
	 * stopped reading: member a joins, member b joins (a rebalance
	 * begins, b's join waits for a), a stops reading and joins again,
	 * which completes the rebalance and answers both. */
	{
		char mid[160] = "";
		int a = -1, bfd = -1;
		struct raw_reply rr;
		const char *s;
		size_t n;

		for (int k = 0; k < 3; k++) {
			mq_w_reset(w);
			mq_w_str(w, "grp");
			mq_w_str(w, k == 2 ? mid : "");
			mq_w_str(w, k == 1 ? "b" : "a");
			mq_w_u32(w, 6000);
			mq_w_u32(w, 1);
			mq_w_str(w, "t");
			if (k == 0) {
				if ((a = raw_connect(b)) < 0)
					break;
				CHECK(raw_request(a, 1, MQ_T_JOIN_GROUP, w->p,
						  w->len) == 0);
				if (raw_reply(a, 5000, &rr) != 1 || rr.code) {
					FAIL("first join: no ok answer");
					free(rr.frame);
					break;
				}
				mq_r_str(&rr.body, &s, &n);
				snprintf(mid, sizeof mid, "%.*s",
					 (int)(n < sizeof mid ? n : sizeof mid - 1), s);
				free(rr.frame);
			} else if (k == 1) {
				if ((bfd = raw_connect(b)) < 0)
					break;
				CHECK(raw_request(bfd, 2, MQ_T_JOIN_GROUP, w->p,
						  w->len) == 0);
				sleep_ms(100);
			} else {
				shutdown(a, SHUT_RD);
				CHECK(raw_request(a, 3, MQ_T_JOIN_GROUP, w->p,
						  w->len) == 0);
			}
		}
		if (bfd >= 0) {
			int rc = raw_reply(bfd, 8000, &rr);
			if (rc != 1)
				FAIL("member b's join: %s", rc ? "no answer within "
				     "8 s" : "connection closed");
			else if (rr.code != 0)
				FAIL("member b's join: %s (%s)",
				     mq_code_name(rr.code), rr.msg);
			if (rc == 1)
				free(rr.frame);
			close(bfd);
		}
		if (a >= 0)
			close(a);
		check_alive(b, "after a rebalance answered to a member that "
			    "stopped reading");
	}
}

/* ================= 4. names ================= */

/* Fail for every entry of dir not in allowed; returns how many. */
static int count_entries(const char *dir, const char *const *allowed,
			 size_t nallowed, const char *what)
{
	struct dirent *de;
	int unexpected = 0;
	DIR *d = opendir(dir);

	if (!d) {
		FAIL("%s: cannot list %s: %s", what, dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d))) {
		bool ok = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
		for (size_t i = 0; i < nallowed && !ok; i++)
			ok = !strcmp(de->d_name, allowed[i]);
		if (!ok) {
			FAIL("%s: unexpected entry \"%s\" in %s", what,
			     de->d_name, dir);
			unexpected++;
		}
	}
	closedir(d);
	return unexpected;
}

static void name_call(mq_client *c, mq_wbuf *w, const char *what,
		      const char *name, size_t nlen)
{
	mq_reply r;
	mq_err err;
	int rc = mq_client_call(c, w, &r, &err);

	if (rc == 0)
		FAIL("%s with name \"%.*s\" (%zu bytes): accepted", what,
		     (int)(nlen > 40 ? 40 : nlen), name, nlen);
	else if (err.code != MQ_E_NAME && err.code != MQ_E_INVAL)
		FAIL("%s with name \"%.*s\" (%zu bytes): %s (%s), want name or "
		     "invalid", what, (int)(nlen > 40 ? 40 : nlen), name, nlen,
		     mq_code_name(err.code), err.msg);
}

BROKER_TEST(bad_names)
{
	static char big[10 * 1024 + 1];
	struct { const char *s; size_t n; } names[] = {
		{ "../x", 4 }, { "a/b", 3 }, { "", 0 }, { ".", 1 }, { "..", 2 },
		{ big, sizeof big - 1 }, { "%DLQ%../x", 9 }, { "%DLQ%", 5 },
		{ "%DLQ%a/b", 8 }, { "a\0b", 3 }, { "/x", 2 }, { "x\n", 2 },
		{ "\xc3\xa9t\xc3\xa9", 6 }, { ".hidden", 7 },
	};
	mq_batch_builder *bb = t_bb();
	mq_client *c;
	mq_err err;
	mq_wbuf *w = t_wbuf();
	const char *v[1] = { "named" };

	memset(big, 'n', sizeof big - 1);
	MUST(broker_start(b) == 0);
	MUST((c = open_client(b)));
	MUST(batch_vals(bb, v, 1) == 0);
	/* One good topic and group, so the checks below see real entries. */
	MUST(produce_vals(c, "ok", 0, v, 1) == 0);
	{
		mq_commit_entry e = { "ok", 0, 1 };
		if (mq_client_commit(c, "g-ok", "", -1, 0, &e, 1, &err) < 0)
			FAIL("commit to g-ok: %s", err.msg);
	}

	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		const char *s = names[i].s;
		size_t n = names[i].n;
		size_t f;

		/* produce */
		mq_w_reset(w);
		f = mq_w_frame_begin(w, mq_client_next_id(c), MQ_T_PRODUCE, 0);
		mq_w_strn(w, s, n);
		mq_w_u32(w, 0);
		mq_w_bytes(w, NULL, -1);
		mq_w_u8(w, 1);
		mq_w_bytes(w, bb->buf, (int32_t)bb->len);
		mq_w_frame_end(w, f);
		name_call(c, w, "produce", s, n);
		/* produce, broker's choice of partition */
		mq_w_reset(w);
		f = mq_w_frame_begin(w, mq_client_next_id(c), MQ_T_PRODUCE, 0);
		mq_w_strn(w, s, n);
		mq_w_u32(w, (uint32_t)-1);
		mq_w_bytes(w, "key", 3);
		mq_w_u8(w, 1);
		mq_w_bytes(w, bb->buf, (int32_t)bb->len);
		mq_w_frame_end(w, f);
		name_call(c, w, "produce (partition -1)", s, n);
		/* create */
		mq_w_reset(w);
		f = mq_w_frame_begin(w, mq_client_next_id(c),
				     MQ_T_CREATE_TOPIC, 0);
		mq_w_strn(w, s, n);
		mq_w_u32(w, 1);
		mq_w_frame_end(w, f);
		name_call(c, w, "create-topic", s, n);
		/* fetch */
		mq_w_reset(w);
		f = mq_w_frame_begin(w, mq_client_next_id(c), MQ_T_FETCH, 0);
		mq_w_strn(w, s, n);
		mq_w_u32(w, 0);
		mq_w_u64(w, 0);
		mq_w_u32(w, 65536);
		mq_w_u32(w, 0);
		mq_w_frame_end(w, f);
		name_call(c, w, "fetch", s, n);
		/* list-offset, delete-records */
		mq_w_reset(w);
		f = mq_w_frame_begin(w, mq_client_next_id(c),
				     MQ_T_LIST_OFFSET, 0);
		mq_w_strn(w, s, n);
		mq_w_u32(w, 0);
		mq_w_u64(w, (uint64_t)-1);
		mq_w_frame_end(w, f);
		name_call(c, w, "list-offset", s, n);
		mq_w_reset(w);
		f = mq_w_frame_begin(w, mq_client_next_id(c),
				     MQ_T_DELETE_RECORDS, 0);
		mq_w_strn(w, s, n);
		mq_w_u32(w, 0);
		mq_w_u64(w, 0);
		mq_w_frame_end(w, f);
		name_call(c, w, "delete-records", s, n);
		/* join as group s, and as group g-ok subscribing to s */
		for (int k = 0; k < 2; k++) {
			mq_w_reset(w);
			f = mq_w_frame_begin(w, mq_client_next_id(c),
					     MQ_T_JOIN_GROUP, 0);
			if (k == 0)
				mq_w_strn(w, s, n);
			else
				mq_w_str(w, "g-ok");
			mq_w_str(w, "");
			mq_w_str(w, "t_broker");
			mq_w_u32(w, 10000);
			mq_w_u32(w, 1);
			if (k == 0)
				mq_w_str(w, "ok");
			else
				mq_w_strn(w, s, n);
			mq_w_frame_end(w, f);
			name_call(c, w, k ? "join (topic)" : "join (group)",
				  s, n);
		}
		/* operator commit for group s, and for g-ok on topic s */
		for (int k = 0; k < 2; k++) {
			mq_w_reset(w);
			f = mq_w_frame_begin(w, mq_client_next_id(c),
					     MQ_T_COMMIT, 0);
			if (k == 0)
				mq_w_strn(w, s, n);
			else
				mq_w_str(w, "g-ok");
			mq_w_str(w, "");
			mq_w_u32(w, (uint32_t)-1);
			mq_w_u16(w, 0);
			mq_w_u32(w, 1);
			if (k == 0)
				mq_w_str(w, "ok");
			else
				mq_w_strn(w, s, n);
			mq_w_u32(w, 0);
			mq_w_u64(w, 0);
			mq_w_frame_end(w, f);
			name_call(c, w, k ? "commit (topic)" : "commit (group)",
				  s, n);
		}
		/* describe (the empty name means "all groups": skip it) */
		if (n) {
			mq_w_reset(w);
			f = mq_w_frame_begin(w, mq_client_next_id(c),
					     MQ_T_DESCRIBE_GROUPS, 0);
			mq_w_strn(w, s, n);
			mq_w_frame_end(w, f);
			name_call(c, w, "describe-groups", s, n);
		}
	}
	check_alive(b, "after bad names");

	/* Nothing appeared outside DIR/topics and DIR/groups, nor in them
	 * beyond the good names. */
	{
		const char *top[] = { "data", "broker.log" };
		const char *topics[] = { "ok", "alive" };
		const char *groups[] = { "g-ok" };
		char path[4400];
		struct stat st;

		const char *data[] = { "lock", "topics", "groups",
				       "producer-ids", "s.sock" };

		count_entries(b->tmp, top, 2, "test directory");
		count_entries(b->dir, data, 5, "data directory");
		snprintf(path, sizeof path, "%s/topics", b->dir);
		count_entries(path, topics, 2, "topics");
		snprintf(path, sizeof path, "%s/groups", b->dir);
		count_entries(path, groups, 1, "groups");
		snprintf(path, sizeof path, "%s/x", b->dir);
		if (stat(path, &st) == 0)
			FAIL("%s exists", path);
		snprintf(path, sizeof path, "%s/x", b->tmp);
		if (stat(path, &st) == 0)
			FAIL("%s exists", path);
		snprintf(path, sizeof path, "%s/../x", b->tmp);
		if (lstat(path, &st) == 0)
			fprintf(stderr, "# note: %s exists (another process?)\n",
				path);
	}
	t_close(&c);
}

/* ================= 5. oversized message ================= */

BROKER_TEST(oversized_message)
{
	mq_batch_builder *bb = t_bb();
	mq_produce_result res;
	mq_client *c;
	mq_err err;

	broker_opts(b, "--max-message-bytes", "1000", NULL);
	MUST(broker_start(b) == 0);
	MUST((c = open_client(b)));
	{
		const char *v[1] = { "before" };
		MUST(produce_vals(c, "big", 0, v, 1) == 0);
	}

	MUST(batch_sized(bb, 2000, 'x') == 0);
	if (mq_client_produce(c, "big", 0, NULL, -1, bb->buf, bb->len, &res,
			      &err) == 0)
		FAIL("a 2000-byte value was accepted with a 1000-byte limit");
	else if (err.code != MQ_E_TOO_LARGE)
		FAIL("2000-byte value: %s (%s), want too-large",
		     mq_code_name(err.code), err.msg);

	/* Small records, then one too large, in one batch: none goes in. */
	{
		mq_bb_reset(bb);
		MUST(mq_bb_add(bb, mq_now_ms(), NULL, -1, "s1", 2, NULL, 0,
			       &err) == 0);
		char *v = t_malloc(1001);
		memset(v, 'y', 1001);
		MUST(mq_bb_add(bb, mq_now_ms(), NULL, -1, v, 1001, NULL, 0,
			       &err) == 0);
		disown(v);
		MUST(mq_bb_finish(bb, -1, -1, -1, &err) == 0);
		if (mq_client_produce(c, "big", 0, NULL, -1, bb->buf, bb->len,
				      &res, &err) == 0 ||
		    err.code != MQ_E_TOO_LARGE)
			FAIL("mixed batch with a 1001-byte record: want too-large");
	}
	CHECK_EQ_INT(part_end(b, "big", 0), 1);

	/* At the limit exactly: fine. Small records after it: fine. */
	MUST(batch_sized(bb, 1000, 'z') == 0);
	if (mq_client_produce(c, "big", 0, NULL, -1, bb->buf, bb->len, &res,
			      &err) < 0)
		FAIL("a 1000-byte value (at the limit): %s", err.msg);
	else
		CHECK_EQ_INT(res.base_offset, 1);
	{
		const char *v[3] = { "a", "b", "c" };
		CHECK_EQ_INT(produce_vals(c, "big", 0, v, 3), 2);
	}
	{
		struct recs rs;
		if (fetch_all(c, "big", 0, &rs) == 0) {
			CHECK_EQ_INT(rs.n, 5);
			CHECK(rec_is(&rs, 0, "before"));
			CHECK(rs.n > 1 && rs.r[1].vlen == 1000);
			CHECK(rec_is(&rs, 4, "c"));
			recs_free(&rs);
		}
	}
	t_close(&c);
}

/* ================= 6. a reader that never reads ================= */

BROKER_TEST(slow_reader)
{
	enum { RECORD = 10 * 1024, PER_BATCH = 10, BATCHES = 200,
	       FETCHES = 200 };
	mq_batch_builder *bb = t_bb();
	mq_client *c;
	mq_err err;
	mq_wbuf *w = t_wbuf();
	long rss0, rss1;
	int fd;
	int64_t nrec = (int64_t)PER_BATCH * BATCHES;

	broker_opts(b, "--flush", "async", NULL);
	MUST(broker_start(b) == 0);
	MUST((c = open_client(b)));

	/* 20 MB, pipelined 16 deep. */
	{
		int sent = 0, got = 0;
		char *v = t_malloc(RECORD);
		while (got < BATCHES) {
			mq_reply r;
			while (sent < BATCHES && sent - got < 16) {
				mq_bb_reset(bb);
				for (int i = 0; i < PER_BATCH; i++) {
					memset(v, 'a' + (sent + i) % 26, RECORD);
					if (mq_bb_add(bb, mq_now_ms(), NULL, -1, v,
						      RECORD, NULL, 0, &err) < 0)
						break;
				}
				if (mq_bb_finish(bb, -1, -1, -1, &err) < 0)
					break;
				mq_w_reset(w);
				mq_req_produce(w, mq_client_next_id(c), "big", 0,
					       NULL, -1, 1, bb->buf, bb->len);
				if (mq_client_send(c, w->p, w->len, &err) < 0)
					break;
				sent++;
			}
			if (mq_client_recv(c, 15000, &r, &err) != 1 || r.code) {
				FAIL("producing 20 MB: %s", r.code ? r.msg : err.msg);
				break;
			}
			got++;
		}
		disown(v);
		if (got < BATCHES) {
			t_close(&c);
			return;
		}
	}
	CHECK_EQ_INT(part_end(b, "big", 0), nrec);
	rss0 = vm_rss_kb(b->pid);

	/* 200 fetches of 1 MB each, never read. */
	MUST((fd = raw_connect(b)) >= 0);
	mq_w_reset(w);
	for (int i = 0; i < FETCHES; i++)
		mq_req_fetch(w, (uint32_t)(i + 1), "big", 0,
			     (int64_t)(i * 37) % nrec, 1 << 20, 0);
	CHECK(raw_send(fd, w->p, w->len) == 0);

	/* Meanwhile, others are served in normal time. */
	int64_t worst = 0;
	for (int i = 0; i < 40; i++) {
		char val[32];
		const char *vals[1] = { val };
		mq_fetch_result res;
		int64_t t0 = mq_mono_ms(), base;

		snprintf(val, sizeof val, "other-%d", i);
		base = produce_vals(c, "other", 0, vals, 1);
		if (base != i) {
			FAIL("produce %d beside the slow reader went to %lld",
			     i, (long long)base);
			break;
		}
		if (mq_client_fetch(c, "big", 0, (i * 53) % nrec, 1 << 20, 0,
				    &res, &err) < 0 || res.len == 0) {
			FAIL("fetch beside the slow reader: %s", err.msg);
			break;
		}
		if (mq_mono_ms() - t0 > worst)
			worst = mq_mono_ms() - t0;
		sleep_ms(10);
	}
	if (worst > 1000)
		FAIL("a produce + fetch took %lld ms beside the slow reader",
		     (long long)worst);
	rss1 = vm_rss_kb(b->pid);
	fprintf(stderr, "# slow reader: VmRSS %ld kB -> %ld kB, worst round "
		"trip %lld ms\n", rss0, rss1, (long long)worst);
	CHECK(rss0 > 0 && rss1 > 0);
	if (rss1 - rss0 > 64 * 1024)
		FAIL("the broker grew by %ld kB while a reader did not read",
		     rss1 - rss0);

	/* Now read it all: 200 whole replies, in order, each with data. */
	{
		int ok = 0;
		for (int i = 0; i < FETCHES; i++) {
			struct raw_reply rr;
			int rc = raw_reply(fd, 15000, &rr);
			if (rc != 1) {
				FAIL("slow reader: reply %d: %s", i + 1,
				     rc ? "timeout or garbage" : "closed");
				break;
			}
			/* Each holds whole, valid batches, the first one
			 * holding the offset asked for. */
			int64_t want = (int64_t)(i * 37) % nrec;
			const uint8_t *data = NULL;
			int32_t dlen = 0;
			mq_r_i32(&rr.body);
			mq_r_i64(&rr.body);
			mq_r_i64(&rr.body);
			mq_r_i64(&rr.body);
			mq_r_bytes(&rr.body, &data, &dlen);
			if (rr.id != (uint32_t)(i + 1) || rr.code != 0 ||
			    rr.body.bad || mq_r_left(&rr.body) != 0 ||
			    dlen < RECORD * PER_BATCH) {
				FAIL("slow reader: reply %d: id %u code %s, %zu "
				     "bytes, %d of batches", i + 1, rr.id,
				     mq_code_name(rr.code), rr.len, dlen);
			} else {
				size_t pos = 0;
				bool good = true;
				while (pos < (size_t)dlen && good) {
					mq_batch_hdr h;
					mq_err err;
					if (mq_batch_parse_header(data + pos,
								  (size_t)dlen - pos,
								  &h, &err) < 0 ||
					    mq_batch_size(&h) > (size_t)dlen - pos ||
					    mq_batch_validate(data + pos,
							      mq_batch_size(&h),
							      NULL, &err) < 0 ||
					    (pos == 0 && (h.base_offset > want ||
							  mq_batch_last_offset(&h) < want))) {
						FAIL("slow reader: reply %d (offset "
						     "%lld): bad batch at byte %zu",
						     i + 1, (long long)want, pos);
						good = false;
					}
					pos += mq_batch_size(&h);
				}
				ok += good;
			}
			free(rr.frame);
		}
		CHECK_EQ_INT(ok, FETCHES);
	}
	close(fd);
	check_alive(b, "after the slow reader");
	t_close(&c);
}

/* ================= 7. the directory lock ================= */

BROKER_TEST(second_broker_refused)
{
	char log2[4400], buf[8192], pidstr[32];
	const char *none[1] = { NULL };
	int64_t t0;
	pid_t p2;
	int st, fd;
	ssize_t n;

	MUST(broker_start(b) == 0);
	snprintf(log2, sizeof log2, "%s/broker2.log", b->tmp);
	t0 = mq_mono_ms();
	/* The same address too: it must not take over the first's socket. */
	p2 = spawn_broker(b->dir, b->addr, none, 0, 0, log2);
	MUST(p2 > 0);
	st = wait_exit(p2, 5000);
	if (st == -1) {
		FAIL("a second broker on the same directory is still running "
		     "after 5 s");
		kill(p2, SIGKILL);
		waitpid(p2, NULL, 0);
	} else {
		if (mq_mono_ms() - t0 > 3000)
			FAIL("the second broker took %lld ms to give up",
			     (long long)(mq_mono_ms() - t0));
		if (!WIFEXITED(st) || WEXITSTATUS(st) == 0)
			FAIL("the second broker ended with status 0x%x, want a "
			     "non-zero exit", st);
	}
	fd = open(log2, O_RDONLY);
	n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	snprintf(pidstr, sizeof pidstr, "%ld", (long)b->pid);
	{
		bool found = false;
		for (char *p = buf; (p = strstr(p, pidstr)); p++)
			if ((p == buf || p[-1] < '0' || p[-1] > '9') &&
			    (p[strlen(pidstr)] < '0' || p[strlen(pidstr)] > '9'))
				found = true;
		if (!found) {
			FAIL("the second broker's stderr does not name pid %s",
			     pidstr);
			dump_file("second broker", log2);
		}
	}
	check_alive(b, "after a second broker was refused");
}

/* ================= 8. SIGTERM with produces in flight ================= */

BROKER_TEST(sigterm_in_flight)
{
	enum { N = 1000 };
	mq_batch_builder *bb = t_bb();
	uint32_t ids[N];
	int64_t acked[N];
	mq_client *c;
	mq_err err;
	mq_wbuf *w = t_wbuf();
	int nok = 0, nshut = 0, st;

	broker_opts(b, "--flush", "sync", NULL);
	MUST(broker_start(b) == 0);
	MUST((c = open_client(b)));
	{
		const char *v[1] = { "m-first" };
		MUST(produce_vals(c, "t", 0, v, 1) == 0);
	}
	for (int i = 0; i < N; i++) {
		char val[32];
		const char *vals[1] = { val };
		snprintf(val, sizeof val, "m%d", i);
		MUST(batch_vals(bb, vals, 1) == 0);
		ids[i] = mq_client_next_id(c);
		acked[i] = -1;
		mq_req_produce(w, ids[i], "t", 0, NULL, -1, 1, bb->buf, bb->len);
	}
	if (mq_client_send(c, w->p, w->len, &err) < 0)
		FAIL("sending %d produces: %s", N, err.msg);
	kill(b->pid, SIGTERM);
	for (;;) {
		mq_reply r;
		int rc = mq_client_recv(c, 15000, &r, &err), i;
		if (rc == 0) {
			FAIL("no reply and no close 15 s after SIGTERM");
			break;
		}
		if (rc < 0)
			break;	/* the broker closed the connection */
		for (i = 0; i < N && ids[i] != r.id; i++)
			;
		if (i == N) {
			FAIL("reply to unknown id %u", r.id);
			continue;
		}
		if (r.code == MQ_E_SHUTDOWN) {
			nshut++;
		} else {
			mq_produce_result res;
			if (mq_produce_result_decode(&r, &res, &err) < 0)
				FAIL("produce m%d during shutdown: %s (%s)", i,
				     mq_code_name(err.code), err.msg);
			else {
				acked[i] = res.base_offset;
				nok++;
			}
		}
	}
	t_close(&c);
	st = wait_exit(b->pid, 15000);
	if (st == -1) {
		FAIL("the broker is still running 15 s after SIGTERM");
		broker_kill9(b);
	} else {
		b->pid = -1;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			FAIL("the broker ended with status 0x%x after SIGTERM", st);
	}
	fprintf(stderr, "# SIGTERM with %d produces in flight: %d ok, %d "
		"shutting-down, %d unanswered\n", N, nok, nshut, N - nok - nshut);
	MUST(broker_start(b) == 0);
	MUST((c = open_client(b)));
	{
		struct recs rs;
		if (fetch_all(c, "t", 0, &rs) == 0) {
			int lost = 0;
			for (int i = 0; i < N; i++) {
				char want[32];
				snprintf(want, sizeof want, "m%d", i);
				if (acked[i] >= 0 && !rec_is(&rs, acked[i], want) &&
				    lost++ < 5)
					FAIL("m%d was acknowledged at %lld but is "
					     "not there", i, (long long)acked[i]);
			}
			if (lost)
				FAIL("%d acknowledged produces lost", lost);
			recs_free(&rs);
		}
	}
	t_close(&c);
}

/* The sender side of sigterm_while_sending. */
struct sender {
	int fd;
	const uint8_t *p;
	size_t len;
	size_t sent;
};

static void *sender_main(void *arg)
{
	struct sender *s = arg;

	while (s->sent < s->len) {
		size_t n = s->len - s->sent > 16384 ? 16384 : s->len - s->sent;
		ssize_t w = send(s->fd, s->p + s->sent, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;	/* the broker went away */
		s->sent += (size_t)w;
	}
	return NULL;
}

/*
 * SIGTERM while a client is still sending 2 MB of produces: the broker
 * stops reading, answers what it read (ok or shutting-down), exits 0, and
 * every acknowledged record is there after a restart.
 */
BROKER_TEST(sigterm_while_sending)
{
	enum { N = 1000, VLEN = 2000 };
	mq_batch_builder *bb = t_bb();
	struct sender snd = { .fd = -1 };
	pthread_t th;
	int64_t acked[N];
	mq_wbuf *w = t_wbuf();
	char *val;
	int nok = 0, nshut = 0, st, fd;
	bool term_sent = false;

	broker_opts(b, "--flush", "sync", NULL);
	MUST(broker_start(b) == 0);
	val = t_malloc(VLEN + 1);
	for (int i = 0; i < N; i++) {
		int n = snprintf(val, VLEN + 1, "w%d-", i);
		const char *vals[1] = { val };
		memset(val + n, 'p', (size_t)(VLEN - n));
		val[VLEN] = '\0';
		MUST(batch_vals(bb, vals, 1) == 0);
		acked[i] = -1;
		mq_req_produce(w, (uint32_t)(i + 1), "t", 0, NULL, -1, 1,
			       bb->buf, bb->len);
	}
	MUST((fd = raw_connect(b)) >= 0);
	snd.fd = fd;
	snd.p = w->p;
	snd.len = w->len;
	MUST(pthread_create(&th, NULL, sender_main, &snd) == 0);
	for (;;) {
		struct raw_reply rr;
		int rc = raw_reply(fd, 15000, &rr);
		if (rc == 0)
			break;	/* closed by the broker on its way out */
		if (rc < 0) {
			FAIL("no reply and no close within 15 s (%s)",
			     term_sent ? "after SIGTERM" : "before SIGTERM");
			break;
		}
		if (rr.id < 1 || rr.id > N || rr.type != (MQ_T_PRODUCE | MQ_REPLY)) {
			FAIL("reply id %u type 0x%x", rr.id, rr.type);
		} else if (rr.code == MQ_E_SHUTDOWN) {
			nshut++;
		} else if (rr.code != 0) {
			FAIL("produce w%u during shutdown: %s (%s)", rr.id - 1,
			     mq_code_name(rr.code), rr.msg);
		} else {
			mq_r_i32(&rr.body);
			acked[rr.id - 1] = mq_r_i64(&rr.body);
			nok++;
		}
		free(rr.frame);
		if (!term_sent && nok + nshut >= 100) {
			kill(b->pid, SIGTERM);
			term_sent = true;
		}
	}
	if (!term_sent) {
		FAIL("fewer than 100 replies before the connection ended");
		kill(b->pid, SIGTERM);
	}
	st = wait_exit(b->pid, 15000);
	if (st == -1) {
		FAIL("the broker is still running 15 s after SIGTERM");
		broker_kill9(b);
	} else {
		b->pid = -1;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			FAIL("the broker ended with status 0x%x after SIGTERM", st);
	}
	shutdown(fd, SHUT_RDWR);
	pthread_join(th, NULL);
	close(fd);
	fprintf(stderr, "# SIGTERM while sending: %zu of %zu bytes sent, %d ok, "
		"%d shutting-down, %d unanswered\n", snd.sent, snd.len, nok,
		nshut, N - nok - nshut);
	MUST(broker_start(b) == 0);
	{
		mq_client *c = open_client(b);
		struct recs rs;
		MUST(c);
		if (fetch_all(c, "t", 0, &rs) == 0) {
			int lost = 0;
			for (int i = 0; i < N; i++) {
				if (acked[i] < 0)
					continue;
				if ((size_t)acked[i] >= rs.n || !rs.r[acked[i]].val ||
				    strncmp(rs.r[acked[i]].val, "w", 1) ||
				    atoi(rs.r[acked[i]].val + 1) != i) {
					if (lost++ < 5)
						FAIL("w%d acknowledged at %lld is "
						     "not there", i,
						     (long long)acked[i]);
				}
			}
			if (lost)
				FAIL("%d acknowledged produces lost", lost);
			recs_free(&rs);
		}
		t_close(&c);
	}
	disown(val);
}

/* ================= 9. long polling ================= */

BROKER_TEST(long_poll)
{
	mq_client *a, *c;
	mq_err err;
	mq_wbuf *w = t_wbuf();
	mq_reply r;
	int64_t t0, t1;

	broker_opts(b, "--flush", "sync", NULL);
	MUST(broker_start(b) == 0);
	MUST((a = open_client(b)));
	MUST((c = open_client(b)));
	{
		const char *v[1] = { "lp-0" };
		MUST(produce_vals(c, "lp", 0, v, 1) == 0);
	}
	mq_req_fetch(w, 4242, "lp", 0, 1, 65536, 10000);
	MUST(mq_client_send(a, w->p, w->len, &err) == 0);
	sleep_ms(300);
	if (mq_client_recv(a, 0, &r, &err) != 0)
		FAIL("the fetch at the end was answered before any data came");
	t0 = mq_mono_ms();
	{
		const char *v[1] = { "lp-1" };
		CHECK_EQ_INT(produce_vals(c, "lp", 0, v, 1), 1);
	}
	if (mq_client_recv(a, 5000, &r, &err) != 1) {
		FAIL("no answer to the long poll: %s", err.msg);
	} else {
		mq_fetch_result res;
		t1 = mq_mono_ms();
		fprintf(stderr, "# long poll answered %lld ms after the produce "
			"began\n", (long long)(t1 - t0));
		if (t1 - t0 >= 1000)
			FAIL("long poll answered %lld ms after the produce",
			     (long long)(t1 - t0));
		CHECK_EQ_INT(r.id, 4242);
		if (mq_fetch_result_decode(&r, &res, &err) < 0) {
			FAIL("long poll reply: %s", err.msg);
		} else {
			mq_batch_iter it;
			mq_record rec;
			bool found = false;
			if (res.len && mq_batch_iter_init(&it, res.batches,
							  res.len, &err) == 0)
				while (mq_batch_iter_next(&it, &rec, &err) == 1)
					if (rec.offset == 1 && rec.value_len == 4 &&
					    !memcmp(rec.value, "lp-1", 4))
						found = true;
			if (!found)
				FAIL("the long poll's answer lacks lp-1 (%zu bytes)",
				     res.len);
		}
	}
	t_close(&a);
	t_close(&c);
	broker_stop_clean(b, "before the --max-wait restart");

	/* The broker's cap wins over the client's wish. */
	broker_opts(b, "--flush", "sync", "--max-wait", "200", NULL);
	MUST(broker_start(b) == 0);
	MUST((c = open_client(b)));
	{
		mq_fetch_result res;
		t0 = mq_mono_ms();
		if (mq_client_fetch(c, "lp", 0, 2, 65536, 10000, &res, &err) < 0) {
			FAIL("fetch at the end with --max-wait 200: %s", err.msg);
		} else {
			t1 = mq_mono_ms();
			fprintf(stderr, "# --max-wait 200: empty answer after "
				"%lld ms\n", (long long)(t1 - t0));
			CHECK_EQ_INT(res.len, 0);
			if (t1 - t0 >= 2000)
				FAIL("--max-wait 200: answered after %lld ms",
				     (long long)(t1 - t0));
			if (t1 - t0 < 150)
				FAIL("--max-wait 200: answered after only %lld ms "
				     "(no wait at all?)", (long long)(t1 - t0));
		}
	}
	t_close(&c);
}

/* ================= 11. a full disk ================= */

BROKER_TEST(disk_full)
{
	enum { MAXB = 400 };
	mq_batch_builder *bb = t_bb();
	mq_client *c;
	mq_err err;
	int64_t acked[MAXB];
	int nacked = 0, code = 0;
	char vals[5][400];
	const char *vp[5] = { vals[0], vals[1], vals[2], vals[3], vals[4] };

	b->fsize = 200 * 1024;
	broker_opts(b, "--flush", "sync", NULL);
	MUST(broker_start(b) == 0);
	MUST((c = open_client(b)));
	for (int i = 0; i < MAXB; i++) {
		mq_produce_result res;
		for (int j = 0; j < 5; j++)
			snprintf(vals[j], sizeof vals[j], "f%d-%d-%0350d", i, j, 0);
		MUST(batch_vals(bb, vp, 5) == 0);
		if (mq_client_produce(c, "full", 0, NULL, -1, bb->buf, bb->len,
				      &res, &err) < 0) {
			code = err.code;
			fprintf(stderr, "# produce %d failed: %s (%s)\n", i,
				mq_code_name(err.code), err.msg);
			break;
		}
		if (res.base_offset != (int64_t)i * 5) {
			FAIL("batch %d at offset %lld", i, (long long)res.base_offset);
			break;
		}
		acked[nacked++] = res.base_offset;
	}
	if (code != MQ_E_NOSPC)
		FAIL("after %d batches: first failure %s, want no-space", nacked,
		     code ? mq_code_name(code) : "none");
	MUST(code != 0);
	/* The partition stays refused. */
	for (int k = 0; k < 3; k++) {
		mq_produce_result res;
		const char *small[1] = { "s" };
		MUST(batch_vals(bb, small, 1) == 0);
		if (mq_client_produce(c, "full", 0, NULL, -1, bb->buf, bb->len,
				      &res, &err) == 0)
			FAIL("a produce after no-space was accepted (offset %lld)",
			     (long long)res.base_offset);
		else if (err.code != MQ_E_READ_ONLY && err.code != MQ_E_NOSPC)
			FAIL("a produce after no-space: %s (%s), want read-only",
			     mq_code_name(err.code), err.msg);
	}
	/* Fetches still work and hold every acknowledged record. */
	{
		struct recs rs;
		if (fetch_all(c, "full", 0, &rs) == 0) {
			CHECK_EQ_INT(rs.n, (size_t)nacked * 5);
			for (int i = 0; i < nacked; i++) {
				char want[400];
				snprintf(want, sizeof want, "f%d-4-%0350d", i, 0);
				if (!rec_is(&rs, acked[i] + 4, want)) {
					FAIL("acknowledged batch %d unreadable", i);
					break;
				}
			}
			recs_free(&rs);
		} else {
			FAIL("fetching the full partition failed");
		}
	}
	/* Other partitions (small files) still take writes. */
	{
		const char *v[1] = { "elsewhere" };
		CHECK_EQ_INT(produce_vals(c, "other", 0, v, 1), 0);
	}
	t_close(&c);
	{
		int st = broker_term(b, 10000);
		fprintf(stderr, "# broker with a full partition stopped: %s %d\n",
			st == -1 ? "killed after" : WIFEXITED(st) ? "exit" : "signal",
			st == -1 ? 10000 : WIFEXITED(st) ? WEXITSTATUS(st)
							  : WTERMSIG(st));
		if (st == -1)
			FAIL("the broker ignored SIGTERM with a full partition");
	}

	/* Room again: all is there, new records follow densely. */
	b->fsize = 0;
	MUST(broker_start(b) == 0);
	MUST((c = open_client(b)));
	{
		struct recs rs;
		if (fetch_all(c, "full", 0, &rs) == 0) {
			CHECK_EQ_INT(rs.n, (size_t)nacked * 5);
			for (int i = 0; i < nacked; i++) {
				char want[400];
				snprintf(want, sizeof want, "f%d-0-%0350d", i, 0);
				if (!rec_is(&rs, acked[i], want)) {
					FAIL("after restart: acknowledged batch %d "
					     "lost", i);
					break;
				}
			}
			recs_free(&rs);
		} else {
			FAIL("after restart: cannot read the partition");
		}
		const char *v[1] = { "after" };
		CHECK_EQ_INT(produce_vals(c, "full", 0, v, 1), (int64_t)nacked * 5);
	}
	t_close(&c);
}

/*
 * --flush-timeout: a sync produce whose fdatasync has not returned in
 * time is answered flush-timeout, never ok. Once the disk catches up, a
 * retry of the same batch (same producer id and sequence) is answered
 * with its original offset and the record is there once. The disk is
 * stalled for real: the broker runs with tests/unit/slow_fdatasync.c
 * preloaded, and fdatasync waits while a gate file exists.
 */
BROKER_TEST(flush_timeout)
{
	char shim[4200], gate[4200], asan[1024];
	const char *build = getenv("MQ_BUILD");
	const char *old_asan = getenv("ASAN_OPTIONS");
	mq_batch_builder *bb = t_bb();
	const char *v0[1] = { "fast" }, *v1[1] = { "slow" };
	mq_produce_result res;
	mq_client *c;
	mq_err err;
	int64_t pid, t0, took;
	int16_t epoch;
	int rc, fd;

	snprintf(shim, sizeof shim, "%s/tests/slow_fdatasync.so",
		 build && *build ? build : "build");
	REQUIRE(access(shim, R_OK) == 0);
	snprintf(gate, sizeof gate, "%s/gate", b->tmp);
	setenv("LD_PRELOAD", shim, 1);
	setenv("MQ_SLOW_FDATASYNC_GATE", gate, 1);
	/* A sanitized broker accepts a library loaded before its runtime. */
	snprintf(asan, sizeof asan, "%s%sverify_asan_link_order=0",
		 old_asan ? old_asan : "", old_asan ? ":" : "");
	setenv("ASAN_OPTIONS", asan, 1);
	broker_opts(b, "--flush", "sync", "--flush-timeout", "300", NULL);
	rc = broker_start(b);
	unsetenv("LD_PRELOAD");
	unsetenv("MQ_SLOW_FDATASYNC_GATE");
	if (old_asan)
		setenv("ASAN_OPTIONS", old_asan, 1);
	else
		unsetenv("ASAN_OPTIONS");
	MUST(rc == 0);
	MUST((c = open_client(b)));
	MUST(mq_client_init_producer(c, &pid, &epoch, &err) == 0);

	/* The disk keeps up: ok. */
	mq_bb_reset(bb);
	MUST(mq_bb_add(bb, mq_now_ms(), NULL, -1, v0[0], 4, NULL, 0,
		       &err) == 0);
	MUST(mq_bb_finish(bb, pid, epoch, 0, &err) == 0);
	MUST(mq_client_produce(c, "t", 0, NULL, -1, bb->buf, bb->len, &res,
			       &err) == 0);
	CHECK_EQ_INT(res.base_offset, 0);

	/* The disk stalls: written, not durable in time, and said so. */
	MUST((fd = open(gate, O_WRONLY | O_CREAT, 0644)) >= 0);
	close(fd);
	mq_bb_reset(bb);
	MUST(mq_bb_add(bb, mq_now_ms(), NULL, -1, v1[0], 4, NULL, 0,
		       &err) == 0);
	MUST(mq_bb_finish(bb, pid, epoch, 1, &err) == 0);
	t0 = mq_mono_ms();
	rc = mq_client_produce(c, "t", 0, NULL, -1, bb->buf, bb->len, &res,
			       &err);
	took = mq_mono_ms() - t0;
	CHECK_EQ_INT(rc, -1);
	CHECK_EQ_INT(err.code, MQ_E_FLUSH_TIMEOUT);
	CHECK(strstr(err.msg, "at offset 1") != NULL);
	fprintf(stderr, "# stalled produce answered after %lld ms: %s\n",
		(long long)took, err.msg);
	CHECK(took >= 250);
	CHECK(took < 10000);

	/* The disk catches up; the retry is the same record, once. */
	unlink(gate);
	rc = mq_client_produce(c, "t", 0, NULL, -1, bb->buf, bb->len, &res,
			       &err);
	CHECK_EQ_INT(rc, 0);
	CHECK(res.duplicate);
	CHECK_EQ_INT(res.base_offset, 1);
	{
		struct recs rs;
		if (fetch_all(c, "t", 0, &rs) == 0) {
			CHECK_EQ_INT(rs.n, 2);
			CHECK(rec_is(&rs, 0, "fast"));
			CHECK(rec_is(&rs, 1, "slow"));
			recs_free(&rs);
		} else {
			FAIL("cannot read the partition back");
		}
	}
	t_close(&c);
	rc = broker_term(b, 10000);
	CHECK(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
}

int main(void)
{
	const char *build = getenv("MQ_BUILD");
	const char *seed = getenv("MQ_TEST_SEED");

	snprintf(broker_bin, sizeof broker_bin, "%s/bin/mq-brokerd",
		 build && *build ? build : "build");
	have_broker = access(broker_bin, X_OK) == 0;
	rng_state = seed ? strtoull(seed, NULL, 0)
			 : (uint64_t)mq_now_ms() ^ ((uint64_t)getpid() << 32);
	if (!rng_state)
		rng_state = 1;
	fprintf(stderr, "# MQ_TEST_SEED=%llu\n", (unsigned long long)rng_state);
	signal(SIGPIPE, SIG_IGN);

	RUN_B(kill9_mid_stream);
	RUN_B(kill9_mid_stream_async);
	RUN_B(torn_tail_garbage);
	RUN_B(flipped_byte_after_crash);
	RUN_B(flipped_byte_after_clean_stop);
	RUN_B(malformed_frames);
	RUN_B(peer_stops_reading);
	RUN_B(bad_names);
	RUN_B(oversized_message);
	RUN_B(slow_reader);
	RUN_B(second_broker_refused);
	RUN_B(sigterm_in_flight);
	RUN_B(sigterm_while_sending);
	RUN_B(long_poll);
	RUN_B(flush_timeout);
	RUN_B(disk_full);
	return harness_done();
}
