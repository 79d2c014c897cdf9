/*
 * mq-send - send messages to a topic from standard input or the command
 * line (mq-send(1)).
 *
 * How a message travels through this file:
 *
 *   input       lines, NUL-delimited records, JSON lines or arguments
 *               (struct input; a line longer than any message the broker
 *               accepts is skipped, so memory stays bounded)
 *   place       its partition: -p, the JSON "partition", the hash of its
 *               key, or round robin; then that partition's open batch
 *   close       a batch gets its producer id and sequence number and
 *               joins its partition's queue
 *   pump        queued batches go out in sequence order, within
 *               --inflight in all and WINDOW per partition
 *   on_reply    ok; retry later (backoff); or a final failure
 *   ring        one entry per input line, in input order; the head is
 *               printed (its id, or why it failed) once its batch is
 *               decided, so ids come out in input order in every mode.
 *
 * --sync is the same machine with one record per batch and no reading
 * while a message is unanswered; --oneway sends without asking for
 * replies, so a batch is done as soon as it is written to the socket.
 *
 * Retries never duplicate. Each batch carries a producer id and the
 * sequence number of its first record in its partition (DESIGN.md, the
 * idempotent producer); a resent batch keeps both, and the broker answers
 * one it already appended with the offsets it got the first time. The
 * broker remembers only the last WINDOW batches of a producer on a
 * partition, so no more than WINDOW batches of a partition are sent ahead
 * of its oldest unanswered one: whatever is resent is still recognised.
 * When a batch fails for good without being written, its sequence numbers
 * leave a hole the broker would refuse every later batch for; the
 * partition then waits until nothing of it is in flight, takes a new
 * producer id and renumbers what is left from 0 (the first batch of a
 * producer the broker has not seen is accepted whatever its number).
 * Numbers are never reused under the same id, so a renumbered batch can
 * never be mistaken for another one.
 */
#include "cli/cli.h"
#include "cli/msg.h"
#include "batch.h"
#include "pseq.h"
#include "ep.h"
#include "name.h"
#include "proto.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Batches of one partition sent ahead of its oldest unanswered one: the
 * number of recent batches the broker remembers per producer and
 * partition (mq-brokerd(8), IDEMPOTENT PRODUCERS). */
#define WINDOW 5
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
/* Lines waiting to be printed, at most (24 bytes each). */
#define RING_MAX (1u << 20)
#define IN_CHUNK (1u << 20)
/* Bytes a record adds to a batch beyond its key, value and headers, at
 * most (length, attributes, timestamp, offset, two lengths, count). */
#define RECORD_OVERHEAD 40
/* A JSON line may spell a value out at up to 6 bytes per byte (\u0001),
 * so it may be that much longer than the largest message. */
#define JSON_INFLATION 6

static const char usage_text[] =
"usage: mq-send [-0Jqv] [-b addr | -d dir] -t topic [-K delim | -k key]\n"
"               [-H name=value]... [-p partition] [--sync | --async | --oneway]\n"
"               [--retries n] [--linger ms] [--batch-bytes size]\n"
"               [--inflight n] [--timeout duration] [--stop-on-error]\n"
"               [message ...]\n"
"       mq-send -h | --help | -V | --version\n"
"\n"
"  -b, --broker ADDR        host:port or unix:/path (default $MQ_BROKER,\n"
"                           then 127.0.0.1:7420)\n"
"  -d, --dir DIR            write to a data directory, no broker ($MQ_DIR)\n"
"  -t, --topic TOPIC        topic to send to (required)\n"
"  -0, --null               messages end with NUL bytes, not newlines\n"
"  -K, --key-delimiter DELIM  key and value are split at the first DELIM\n"
"  -k, --key KEY            key of every message\n"
"  -H, --header NAME=VALUE  header of every message; repeatable\n"
"  -p, --partition N        send every message to partition N\n"
"  -J, --json               read JSON lines (as mq-recv -J prints them),\n"
"                           print one JSON object per message\n"
"      --sync               one message at a time, each awaiting its reply\n"
"                           (default)\n"
"      --async              batches, many awaiting their replies at once\n"
"      --oneway             batches, no reply asked for\n"
"      --retries N          resend a failed batch up to N times (default 2)\n"
"      --linger MS          wait up to MS to fill a batch (default 5)\n"
"      --batch-bytes SIZE   batch size (default 256K)\n"
"      --inflight N         batches awaiting replies (default 64)\n"
"      --timeout DURATION   limit on connecting, sending and each reply\n"
"                           (default 30s)\n"
"      --stop-on-error      stop reading at the first bad or failed message\n"
"  -q, --quiet              do not print the ids of the messages sent\n"
"  -v, --verbose            report retries, reconnections and a summary\n"
"  -h, --help               print this help\n"
"  -V, --version            print the version\n";

enum mode { M_SYNC, M_ASYNC, M_ONEWAY };

enum {
	OPT_SYNC = 256, OPT_ASYNC, OPT_ONEWAY, OPT_RETRIES, OPT_LINGER, OPT_BATCH_BYTES,
	OPT_INFLIGHT, OPT_TIMEOUT, OPT_STOP_ON_ERROR,
};

static const struct option longopts[] = {
	{ "broker", required_argument, NULL, 'b' },
	{ "dir", required_argument, NULL, 'd' },
	{ "topic", required_argument, NULL, 't' },
	{ "null", no_argument, NULL, '0' },
	{ "key-delimiter", required_argument, NULL, 'K' },
	{ "key", required_argument, NULL, 'k' },
	{ "header", required_argument, NULL, 'H' },
	{ "partition", required_argument, NULL, 'p' },
	{ "json", no_argument, NULL, 'J' },
	{ "sync", no_argument, NULL, OPT_SYNC },
	{ "async", no_argument, NULL, OPT_ASYNC },
	{ "oneway", no_argument, NULL, OPT_ONEWAY },
	{ "retries", required_argument, NULL, OPT_RETRIES },
	{ "linger", required_argument, NULL, OPT_LINGER },
	{ "batch-bytes", required_argument, NULL, OPT_BATCH_BYTES },
	{ "inflight", required_argument, NULL, OPT_INFLIGHT },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "stop-on-error", no_argument, NULL, OPT_STOP_ON_ERROR },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static struct {
	const char *broker, *dir, *topic;
	size_t topic_len;
	int mode;
	const char *mode_opt;       /* as given, for messages */
	bool nul, json, quiet, verbose, stop_on_error;
	const char *kdelim;
	size_t kdelim_len;
	const char *key;
	int32_t key_len;            /* -1: no -k */
	mq_header *headers;
	int32_t nheaders;
	size_t header_bytes;        /* what -H adds to a message's size */
	int32_t partition;          /* -1: no -p */
	int retries;
	int64_t linger_ms;
	uint64_t batch_bytes;
	int inflight;
	int64_t timeout_ms;
	char **args;                /* MESSAGE arguments, or NULL */
	int nargs;
} O = { .key_len = -1, .partition = -1, .retries = 2, .linger_ms = 5,
	.batch_bytes = 256 * 1024, .inflight = 64, .timeout_ms = 30000 };

/* ---- state ---- */

enum bstate { B_OPEN = 1, B_READY, B_SENT, B_DONE };

struct part;

struct batch {
	struct batch *next;         /* in its partition's queue, or free */
	struct part *part;
	size_t index;               /* in pool[]; the token of its sends */
	mq_batch_builder bb;
	int state;
	bool queued;                /* in part's queue */
	bool ever_sent;             /* counts in part's window */
	bool lost;                  /* a send was lost with the connection:
				       it may have been written */
	int attempts;               /* failed sends counted against
				       --retries */
	int64_t not_before;         /* READY: backoff, monotonic ms */
	int64_t deadline;           /* OPEN: end of --linger */
	int32_t seq;
	uint8_t *rkey;              /* probe: key the broker routes by */
	int32_t rkey_len;
	uint32_t refs;              /* ring entries pointing here */
	/* the outcome, once DONE */
	int code;
	int32_t partition;
	int64_t base_offset;
	char reason[300];
};

struct part {
	int32_t id;                 /* -1: the probe (the broker chooses) */
	int64_t pid;                /* producer id its batches carry */
	int32_t next_seq;
	bool hole;                  /* a batch failed unwritten: renumber */
	int nsent;                  /* batches with a send outstanding */
	int window;                 /* queued batches ever sent */
	struct batch *open;
	struct batch *head, *tail;  /* closed batches, sequence order */
};

/* A failure decided before any batch: bad input, too large... */
struct note {
	int code;                   /* 0: malformed input (65), else 75 */
	char reason[];
};

struct entry {
	void *p;                    /* struct batch, or struct note if idx < 0 */
	uint64_t line;
	int32_t idx;                /* record within the batch */
};

static struct {
	struct entry *e;
	size_t cap, head, n;        /* cap is a power of two */
} ring;

static mq_ep *ep;
static char ep_addr[1100];      /* to reconnect */
static bool ep_dir;
static mq_ep_opts eo;           /* how the endpoint is opened, again */
static uint32_t max_message;
static size_t max_batch;        /* builder ceiling */
static size_t batch_target;     /* close a batch at this size */
static int64_t main_pid = -1;
static int32_t nparts;          /* 0: the topic does not exist (yet) */
static struct part parts[MQ_MAX_PARTITIONS], probe_part;
static int32_t parts_used;      /* parts[0, parts_used) ever used */
static int32_t rr;              /* next partition for keyless messages */
static int32_t pump_start;

static struct batch **pool, *free_batches;
static size_t pool_cap, live, live_max;
static int inflight;            /* sends awaiting a reply */
static int64_t wait_since;      /* since when replies are awaited */
static struct batch *probing;   /* the probe, until it is decided */
static int probe_code;

static bool reading = true;
static bool stopping;           /* after a signal */
static int64_t stop_deadline;
static volatile sig_atomic_t signals;
/* Written by on_signal, watched beside stdin: a signal that comes just
 * before poll(2) still wakes it. */
static int wake_pipe[2] = { -1, -1 };
static int64_t now_ms;          /* wall clock for record timestamps */

/* outcome */
static bool unavailable, in_error;
static int fatal_exit;          /* the endpoint refused to work at all */
static bool out_closed, out_broken;  /* stdout: gone; and failing (74) */
static uint64_t n_ok, n_failed, n_invalid, n_lines, bytes_ok;
static uint64_t n_resent, n_dup;  /* batches sent again; of those, already
				     written (answered as duplicates) */

static bool acked(void) { return O.mode != M_ONEWAY; }

/* ---- output ---- */

static struct {
	char buf[1 << 16];
	size_t len;
} out;

static void out_flush(void)
{
	size_t off = 0;

	while (off < out.len && !out_closed) {
		ssize_t n = write(1, out.buf + off, out.len - off);
		if (n > 0) {
			off += (size_t)n;
		} else if (n < 0 && errno == EPIPE) {
			/* Its reader went away: the ids are not wanted. */
			out_closed = true;
			break;
		} else if (n < 0 && errno != EINTR && errno != EAGAIN) {
			cli_warn("cannot write to standard output: %s; ids are "
				 "no longer printed", strerror(errno));
			out_broken = out_closed = true;
		}
	}
	out.len = 0;
}

static void out_raw(const void *p, size_t n)
{
	if (out_closed)
		return;
	if (out.len + n > sizeof out.buf)
		out_flush();
	if (n > sizeof out.buf) {
		memcpy(out.buf, p, sizeof out.buf);	/* never: lines are short */
		n = sizeof out.buf;
	}
	memcpy(out.buf + out.len, p, n);
	out.len += n;
}

static char *put_u64(char *p, uint64_t v)
{
	char tmp[24];
	int n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	while (n)
		*p++ = tmp[--n];
	return p;
}

/* Failure reports on stderr, consecutive lines with the same reason
 * merged into one range. */
static struct {
	uint64_t first, last;
	bool any;
	char reason[400];
} rep;

static void report_flush(void)
{
	const char *what = O.args ? "argument" : "line";

	if (!rep.any)
		return;
	if (rep.first == rep.last)
		cli_warn("%s %" PRIu64 ": %s", what, rep.first, rep.reason);
	else
		cli_warn("%ss %" PRIu64 "-%" PRIu64 ": %s", what, rep.first,
			 rep.last, rep.reason);
	rep.any = false;
}

static void report(uint64_t line, const char *reason)
{
	if (rep.any && rep.last + 1 == line && !strcmp(rep.reason, reason)) {
		rep.last = line;
		return;
	}
	report_flush();
	rep.first = rep.last = line;
	snprintf(rep.reason, sizeof rep.reason, "%s", reason);
	rep.any = true;
}

static void print_ok(uint64_t line, int32_t partition, int64_t offset)
{
	char buf[600], *p = buf;

	if (O.quiet)
		return;
	if (!O.json) {
		memcpy(p, O.topic, O.topic_len);
		p += O.topic_len;
		*p++ = '/';
		p = put_u64(p, (uint64_t)partition);
		*p++ = '/';
		p = put_u64(p, (uint64_t)offset);
		*p++ = '\n';
		out_raw(buf, (size_t)(p - buf));
		return;
	}
	p += snprintf(p, 40, "{\"line\":%" PRIu64 ",\"id\":\"", line);
	memcpy(p, O.topic, O.topic_len);
	p += O.topic_len;
	p += snprintf(p, 80, "/%" PRId32 "/%" PRId64 "\",\"topic\":\"", partition,
		      offset);
	memcpy(p, O.topic, O.topic_len);
	p += O.topic_len;
	p += snprintf(p, 100, "\",\"partition\":%" PRId32 ",\"offset\":%" PRId64
		      ",\"status\":\"ok\"}\n", partition, offset);
	out_raw(buf, (size_t)(p - buf));
}

/* A line that was not acknowledged: stderr, and stdout with -J. */
static void print_failure(uint64_t line, int code, int32_t partition,
			  const char *reason)
{
	report(line, reason);
	if (O.quiet || !O.json || !acked())
		return;
	mq_wbuf w;
	char head[200];

	mq_w_init(&w);
	snprintf(head, sizeof head, "{\"line\":%" PRIu64 ",", line);
	mq_w_raw(&w, head, strlen(head));
	if (code == 0) {
		mq_w_raw(&w, "\"status\":\"invalid\"", 18);
	} else {
		mq_w_raw(&w, "\"topic\":", 8);
		cli_json_str(&w, O.topic, strlen(O.topic));
		mq_w_raw(&w, ",", 1);
		if (partition >= 0) {
			snprintf(head, sizeof head, "\"partition\":%" PRId32 ",",
				 partition);
			mq_w_raw(&w, head, strlen(head));
		}
		snprintf(head, sizeof head,
			 "\"status\":\"failed\",\"error\":\"%s\"",
			 mq_code_name(code));
		mq_w_raw(&w, head, strlen(head));
	}
	mq_w_raw(&w, ",\"reason\":", 10);
	cli_json_str(&w, reason, strlen(reason));
	mq_w_raw(&w, "}\n", 2);
	if (!w.oom)
		out_raw(w.p, w.len);
	mq_w_free(&w);
}

/* ---- the ring of lines, in input order ---- */

static bool ring_full(void)
{
	return ring.n == RING_MAX;
}

static void ring_push(void *p, uint64_t line, int32_t idx)
{
	if (ring.n == ring.cap) {
		size_t cap = ring.cap ? ring.cap * 2 : 4096;
		struct entry *e = malloc(cap * sizeof *e);
		if (!e)
			cli_die(EX_SOFTWARE_, "out of memory");
		for (size_t i = 0; i < ring.n; i++)
			e[i] = ring.e[(ring.head + i) & (ring.cap - 1)];
		free(ring.e);
		ring.e = e;
		ring.cap = cap;
		ring.head = 0;
	}
	ring.e[(ring.head + ring.n) & (ring.cap - 1)] =
		(struct entry){ .p = p, .line = line, .idx = idx };
	ring.n++;
}

/* ---- batches ---- */

static void batch_free(struct batch *b)
{
	free(b->rkey);
	b->rkey = NULL;
	b->next = free_batches;
	free_batches = b;
	b->state = 0;
	pool[b->index] = NULL;
	live--;
}

static struct batch *batch_new(struct part *p)
{
	struct batch *b = free_batches;
	size_t i;
	mq_err err;

	if (b) {
		free_batches = b->next;
		mq_bb_reset(&b->bb);
		b->bb.max_bytes = max_batch;
	} else {
		b = calloc(1, sizeof *b);
		if (!b || mq_bb_init(&b->bb, max_batch, &err) < 0)
			cli_die(EX_SOFTWARE_, "out of memory");
	}
	for (i = 0; i < pool_cap && pool[i]; i++)
		;
	if (i == pool_cap)
		cli_die(EX_SOFTWARE_, "internal error: batch pool full");
	pool[i] = b;
	b->index = i;
	b->next = NULL;
	b->part = p;
	b->state = B_OPEN;
	b->queued = b->ever_sent = b->lost = false;
	b->attempts = 0;
	b->not_before = 0;
	b->deadline = mq_mono_ms() + O.linger_ms;
	b->refs = 0;
	b->code = 0;
	b->partition = p->id;
	b->base_offset = -1;
	b->reason[0] = '\0';
	live++;
	if (p->id >= parts_used)
		parts_used = p->id + 1;
	return b;
}

static void batch_seal(struct batch *b)
{
	mq_err err;

	if (mq_bb_finish(&b->bb, acked() ? b->part->pid : -1, acked() ? 0 : -1,
			 acked() ? b->seq : -1, &err) < 0)
		cli_die(EX_SOFTWARE_, "internal error: %s", err.msg);
}

/* An open batch is complete: number it and queue it. */
static void batch_close(struct batch *b)
{
	struct part *p = b->part;

	if (p->open == b)
		p->open = NULL;
	b->seq = p->next_seq;
	p->next_seq = mq_seq_add(p->next_seq, b->bb.count);
	batch_seal(b);
	b->state = B_READY;
	b->queued = true;
	if (p->tail)
		p->tail->next = b;
	else
		p->head = b;
	p->tail = b;
	if (p->id == rr && nparts > 0)
		rr = (rr + 1) % nparts;
}

static struct part *part_at(int32_t i)
{
	return i < 0 ? &probe_part : &parts[i];
}

static void close_all_open(void)
{
	for (int32_t i = -1; i < parts_used; i++)
		if (part_at(i)->open)
			batch_close(part_at(i)->open);
}

/* Forget the done batches at the head of p's queue. Never called while
 * a queue is being walked: it may free what the walk would visit next. */
static void trim(struct part *p)
{
	while (p->head && p->head->state == B_DONE) {
		struct batch *b = p->head;
		p->head = b->next;
		if (!p->head)
			p->tail = NULL;
		if (b->ever_sent)
			p->window--;
		b->queued = false;
		b->next = NULL;
		if (b->refs == 0)
			batch_free(b);
	}
}

static void trim_all(void)
{
	for (int32_t i = -1; i < parts_used; i++)
		trim(part_at(i));
}

static bool quiet_everywhere(void)
{
	for (int32_t i = -1; i < parts_used; i++)
		if (part_at(i)->head || part_at(i)->open)
			return false;
	return true;
}

/* ---- outcomes ---- */

static void stop_reading(void)
{
	if (!reading)
		return;
	reading = false;
	close_all_open();
}

static void done(struct batch *b)
{
	b->state = B_DONE;
	if (b == probing) {
		probing = NULL;
		probe_code = b->code;
	}
}

/* b has failed for good. */
static void fail(struct batch *b, int code, const char *msg, bool maybe)
{
	char extra[64] = "";

	if (b->attempts > 0)
		snprintf(extra, sizeof extra, " (after %d attempts)",
			 b->attempts + 1);
	snprintf(b->reason, sizeof b->reason, "not acknowledged: %s: %s%s%s",
		 mq_code_name(code), msg, extra,
		 maybe || b->lost ? "; it may have been written" : "");
	b->code = code ? code : MQ_E_IO;
	if (O.stop_on_error)
		stop_reading();
	done(b);
}

static struct note *note_new(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static struct note *note_new(int code, const char *fmt, ...)
{
	char text[400];
	struct note *n;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	n = malloc(sizeof *n + strlen(text) + 1);
	if (!n)
		cli_die(EX_SOFTWARE_, "out of memory");
	n->code = code;
	strcpy(n->reason, text);
	return n;
}

/* A line that fails before it reaches a batch. */
#define LINE_FAILS(line, code, ...) do { \
	ring_push(note_new((code), __VA_ARGS__), (line), -1); \
	if (O.stop_on_error) \
		stop_reading(); \
} while (0)

/* Print (or report) what is decided at the head of the ring. */
static void pop_ring(void)
{
	while (ring.n) {
		struct entry *e = &ring.e[ring.head];
		struct batch *b = e->p;

		if (e->idx < 0) {
			struct note *n = e->p;
			print_failure(e->line, n->code, -1, n->reason);
			if (n->code)
				n_failed++;
			else
				n_invalid++;
			free(n);
		} else {
			if (b->state != B_DONE)
				return;
			if (b->code == 0) {
				if (acked())
					print_ok(e->line, b->partition,
						 b->base_offset + e->idx);
				n_ok++;
			} else {
				print_failure(e->line, b->code, b->partition,
					      b->reason);
				n_failed++;
			}
			if (--b->refs == 0 && !b->queued)
				batch_free(b);
		}
		ring.head = (ring.head + 1) & (ring.cap - 1);
		ring.n--;
	}
}

/* ---- the endpoint ---- */

static bool transport(int code)
{
	return code == MQ_E_CONNECT || code == MQ_E_TIMEOUT ||
	       code == MQ_E_CORRUPT;
}

static void limits(void)
{
	max_message = mq_ep_max_message(ep);
	if (max_message == 0)
		max_message = MQ_BATCH_MAX_BYTES / 2;
	max_batch = mq_ep_max_batch(ep);
	if (max_batch == 0 || max_batch > MQ_BATCH_MAX_BYTES)
		max_batch = MQ_BATCH_MAX_BYTES;
	batch_target = O.mode == M_SYNC ? 1 : O.batch_bytes;
	if (batch_target > max_batch)
		batch_target = max_batch;
}

/* Connect again to the broker first opened (only ever a broker). */
static int reopen(mq_err *err)
{
	ep = cli_try_open_endpoint(ep_addr, NULL, &eo, err);
	if (!ep)
		return -1;
	limits();
	return 0;
}

static int backoff_ms(int attempt)
{
	int64_t d = BACKOFF_MIN_MS;

	while (--attempt > 0 && d < BACKOFF_MAX_MS)
		d *= 2;
	return d > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : (int)d;
}

/* Close the endpoint: nothing is in flight on it any more. */
static void drop_connection(void)
{
	if (ep) {
		mq_ep_close(ep);
		ep = NULL;
	}
	inflight = 0;
	for (int32_t i = -1; i < parts_used; i++)
		part_at(i)->nsent = 0;
}

/* Every batch not yet decided fails with reason (after a fatal error). */
static void fail_everything(int code, const char *reason)
{
	stop_reading();
	drop_connection();
	for (int32_t i = -1; i < parts_used; i++) {
		struct part *p = part_at(i);
		for (struct batch *b = p->head, *next; b; b = next) {
			next = b->next;
			if (b->state != B_DONE)
				fail(b, code, reason, b->ever_sent);
		}
	}
	trim_all();
}

static void sleep_ms(int ms)
{
	int64_t until = mq_mono_ms() + ms;

	while (signals < 2) {
		int64_t left = until - mq_mono_ms();
		if (left <= 0)
			break;
		poll(NULL, 0, left > 100 ? 100 : (int)left);
	}
}

/*
 * The connection broke (or stopped answering): every batch in flight may
 * or may not have been written. Reconnect with backoff and let pump()
 * resend them, in order, with the same producer id and sequence numbers:
 * the broker answers those it has with their original offsets.
 */
static void connection_lost(const mq_err *why)
{
	int64_t now = mq_mono_ms();
	mq_err err = *why;

	drop_connection();
	for (int32_t i = -1; i < parts_used; i++) {
		struct part *p = part_at(i);
		for (struct batch *b = p->head, *next; b; b = next) {
			next = b->next;
			if (b->state != B_SENT)
				continue;
			b->state = B_READY;
			b->lost = true;
			if (++b->attempts > O.retries) {
				b->attempts--;
				fail(b, why->code, why->msg, true);
				p->hole = true;
			} else {
				b->not_before = now + backoff_ms(b->attempts);
			}
		}
	}
	trim_all();
	if (O.mode != M_ONEWAY && !ep_dir) {
		for (int i = 1; i <= O.retries && signals < 2 &&
			(!stopping || mq_mono_ms() + backoff_ms(i) < stop_deadline);
		     i++) {
			if (O.verbose)
				cli_warn("%s; reconnecting in %d ms (attempt %d "
					 "of %d)", err.msg, backoff_ms(i), i,
					 O.retries);
			out_flush();
			report_flush();
			sleep_ms(backoff_ms(i));
			if (signals >= 2)
				break;
			if (reopen(&err) == 0) {
				if (O.verbose)
					cli_warn("reconnected to %s", ep_addr);
				return;
			}
		}
	}
	cli_warn("%s; giving up", err.msg);
	if (reading)
		cli_warn("stopped reading after %s %" PRIu64 ": what follows "
			 "was not sent", O.args ? "argument" : "line", n_lines);
	unavailable = true;
	fail_everything(err.code, err.msg);
}

/* What the broker (or directory) said about one send of b. */
static void on_reply(struct batch *b, int code, const char *msg,
		     int32_t partition, int64_t base_offset, bool dup)
{
	struct part *p = b->part;

	p->nsent--;
	if (inflight > 0)
		inflight--;
	wait_since = mq_mono_ms();
	b->state = B_READY;
	if (code == 0) {
		b->partition = partition;
		b->base_offset = base_offset;
		b->code = 0;
		bytes_ok += b->bb.len;
		if (dup)
			n_dup++;
		if (p == &probe_part && partition >= 0 &&
		    partition < MQ_MAX_PARTITIONS) {
			/* Its partition continues after the probe. */
			struct part *q = &parts[partition];
			if (!q->head && !q->open) {
				q->pid = p->pid;
				q->next_seq = mq_seq_add(b->seq, b->bb.count);
				q->hole = false;
			} else {
				q->hole = true;
			}
			if (partition >= parts_used)
				parts_used = partition + 1;
			p->pid = main_pid;
			p->next_seq = 0;
		}
		done(b);
		return;
	}
	switch (code) {
	case MQ_E_SEQUENCE:
		/* Out of sequence: this batch is not in the log, and as the
		 * broker takes no gap, neither is any later one of p. */
		for (struct batch *a = b; a; a = a->next)
			a->lost = false;
		/* An earlier batch was not written (it failed, or will be
		 * resent): this one goes again after it. */
		for (struct batch *a = p->head; a && a != b; a = a->next)
			if (a->state != B_DONE || p->hole) {
				b->not_before = 0;
				return;
			}
		if (p->hole) {
			b->not_before = 0;
			return;
		}
		fail(b, code, msg, true);
		p->hole = true;
		return;
	case MQ_E_BUSY:
	case MQ_E_SHUTDOWN:
	case MQ_E_FLUSH_TIMEOUT:
	case MQ_E_TIMEOUT:
		if (b->attempts < O.retries) {
			b->attempts++;
			b->not_before = mq_mono_ms() + backoff_ms(b->attempts);
			if (O.verbose)
				cli_warn("partition %d: %s: %s; retrying in %d ms "
					 "(attempt %d of %d)", b->partition,
					 mq_code_name(code), msg,
					 backoff_ms(b->attempts),
					 b->attempts + 1, O.retries + 1);
			return;
		}
		/* A flush timeout means written, not yet on disk: the
		 * numbering goes on. */
		fail(b, code, msg, code == MQ_E_FLUSH_TIMEOUT);
		if (code != MQ_E_FLUSH_TIMEOUT && acked())
			p->hole = true;
		return;
	default:
		fail(b, code, msg, false);
		if (acked())
			p->hole = true;
	}
}

static void on_event(const mq_ep_event *ev)
{
	struct batch *b;

	if (ev->type != MQ_EV_PRODUCE || ev->token >= pool_cap)
		return;
	b = pool[ev->token];
	if (!b || b->state != B_SENT)
		return;
	on_reply(b, ev->code, ev->msg, ev->produce.partition,
		 ev->produce.base_offset, ev->produce.duplicate);
	trim(b->part);
}

/* Handle the events already there, without waiting. */
static void poll_events(void)
{
	mq_ep_event ev;
	mq_err err;
	int rc;

	while (ep && mq_ep_outstanding(ep) > 0) {
		rc = mq_ep_wait(ep, 0, &ev, &err);
		if (rc == 0)
			break;
		if (rc < 0) {
			connection_lost(&err);
			break;
		}
		on_event(&ev);
	}
}

/* A partition with a hole: new producer id, renumber from 0. */
static int fix_hole(struct part *p)
{
	int32_t seq = 0;
	mq_err err;

	if (mq_ep_init_producer(ep, &p->pid, &err) < 0) {
		if (transport(err.code))
			connection_lost(&err);
		else
			fail_everything(err.code, err.msg);
		return -1;
	}
	if (O.verbose)
		cli_warn("partition %d: continuing as producer %" PRId64,
			 p->id, p->pid);
	for (struct batch *b = p->head; b; b = b->next) {
		if (b->state == B_DONE)
			continue;
		b->seq = seq;
		seq = mq_seq_add(seq, b->bb.count);
		batch_seal(b);
	}
	p->next_seq = seq;
	p->hole = false;
	return 0;
}

/* Send b (READY). -1 if the connection was lost meanwhile. */
static int send_batch(struct batch *b)
{
	struct part *p = b->part;
	int32_t partition = p->id;
	mq_err err;

	b->state = B_SENT;
	p->nsent++;
	if (!b->ever_sent) {
		b->ever_sent = true;
		p->window++;
	} else {
		n_resent++;
	}
	if (acked() && inflight++ == 0)
		wait_since = mq_mono_ms();
	if (mq_ep_produce_send(ep, O.topic, partition, b->rkey, b->rkey_len,
			       acked() ? 1 : 0, b->bb.buf, b->bb.len, b->index,
			       &err) < 0) {
		if (transport(err.code)) {
			connection_lost(&err);
			return -1;
		}
		if (err.code == MQ_E_NOMEM)
			cli_die(EX_SOFTWARE_, "%s", err.msg);
		if (err.code == MQ_E_LOCKED) {
			/* A broker holds the directory: nothing will work. */
			cli_warn("%s", err.msg);
			fatal_exit = cli_exit_code(&err);
			p->nsent--;
			if (acked())
				inflight--;
			fail(b, err.code, err.msg, false);
			fail_everything(err.code, err.msg);
			return -1;
		}
		if (!acked())
			inflight++;	/* on_reply takes it back */
		on_reply(b, err.code, err.msg, -1, -1, false);
		return 0;
	}
	if (!acked()) {
		p->nsent--;
		b->code = 0;
		bytes_ok += b->bb.len;
		done(b);
	}
	return 0;
}

/* Send what may be sent: per partition in queue order, stopping at the
 * first batch that must wait. */
/* Whether a batch of p not yet decided may be in the log already: it was
 * sent on a connection that broke before its reply came. */
static bool in_doubt(const struct part *p)
{
	for (const struct batch *b = p->head; b; b = b->next)
		if (b->state != B_DONE && b->lost)
			return true;
	return false;
}

/* Whether pump may send the ready batch b of p now (its backoff aside):
 * not while the replies awaited fill --inflight, a partition's window is
 * full, or a hole in its numbering waits for what is out to come back. */
static bool may_send(const struct part *p, const struct batch *b)
{
	if (!acked())
		return true;
	if (inflight >= O.inflight)
		return false;
	if (p->hole && p->nsent > 0)
		return false;
	return b->ever_sent || p->window < WINDOW;
}

static void pump(void)
{
	int64_t now = mq_mono_ms();
	int32_t n = parts_used + 1;

	if (!ep)
		return;
	for (int32_t k = 0; k < n && ep; k++) {
		int32_t i = (pump_start + k) % n - 1;
		struct part *p = part_at(i);

		if (!p->head)
			continue;
		/*
		 * A hole: a batch failed for good, so the numbers after it
		 * will never fit. Those that may be in the log go again first,
		 * as they were: the broker answers a copy it has with its
		 * offsets, or one it never wrote with out-of-sequence. Only
		 * then are the rest (never written, surely) renumbered under
		 * a new producer id; renumbering one the broker has would
		 * store it twice.
		 */
		if (acked() && p->hole) {
			if (p->nsent > 0)
				continue;
			if (!in_doubt(p) && fix_hole(p) < 0)
				return;
		}
		for (struct batch *b = p->head, *next; b; b = next) {
			next = b->next;
			if (b->state != B_READY)
				continue;
			if (acked() && p->hole && !b->lost)
				continue;	/* renumbered once none is in doubt */
			if (b->not_before > now)
				break;
			if (acked() && inflight >= O.inflight)
				return;
			if (!may_send(p, b))
				break;
			if (send_batch(b) < 0)
				return;
			if (p->hole)
				break;
		}
	}
	pump_start = (pump_start + 1) % n;
	trim_all();
}

static void close_expired(void)
{
	int64_t now = mq_mono_ms();

	for (int32_t i = -1; i < parts_used; i++) {
		struct batch *b = part_at(i)->open;
		if (b && b->deadline <= now)
			batch_close(b);
	}
}

/* t, or the time from now until `when` if that is sooner (-1: none). */
static int64_t sooner(int64_t t, int64_t now, int64_t when)
{
	int64_t w = when - now;

	if (w < 0)
		w = 0;
	return t < 0 || w < t ? w : t;
}

/* Milliseconds until the next timer (linger, backoff, reply timeout,
 * stop deadline), or -1 if none. */
static int64_t next_timer(void)
{
	int64_t now = mq_mono_ms(), t = -1;

	for (int32_t i = -1; i < parts_used; i++) {
		struct part *p = part_at(i);
		if (p->open)
			t = sooner(t, now, p->open->deadline);
		/* A batch that may not go yet waits for a reply, not a
		 * time: counting it would spin the loop. */
		for (struct batch *b = p->head; b; b = b->next)
			if (b->state == B_READY) {
				if (may_send(p, b))
					t = sooner(t, now, b->not_before);
				break;
			}
	}
	if (inflight > 0)
		t = sooner(t, now, wait_since + O.timeout_ms);
	if (stopping)
		t = sooner(t, now, stop_deadline);
	return t;
}

static void check_reply_timeout(void)
{
	/* After a signal, the stop deadline rules instead. */
	if (ep && inflight > 0 && !stopping &&
	    mq_mono_ms() - wait_since >= O.timeout_ms) {
		mq_err err;
		mq_errf(&err, MQ_E_TIMEOUT,
			"no reply from %s within %" PRId64 " ms", ep_addr,
			O.timeout_ms);
		connection_lost(&err);
	}
}

/* Wait until something may be done: an event, input (if want_input is
 * set and reading is allowed), or the next timer. */
static void wait_some(bool want_input)
{
	int64_t t = next_timer();
	bool want_events = ep && mq_ep_outstanding(ep) > 0;
	mq_ep_event ev;
	mq_err err;
	int rc;

	out_flush();
	report_flush();
	if (signals && !stopping)
		return;
	if (want_input && want_events) {
		/* No descriptor to wait on both: take turns. */
		rc = mq_ep_wait(ep, t >= 0 && t < 1 ? (int)t : 1, &ev, &err);
		if (rc < 0)
			connection_lost(&err);
		else if (rc > 0)
			on_event(&ev);
	} else if (want_input) {
		struct pollfd pfd[2] = { { .fd = 0, .events = POLLIN },
					 { .fd = wake_pipe[0], .events = POLLIN } };
		char drain[64];

		if (poll(pfd, 2, t > INT32_MAX ? INT32_MAX : (int)t) > 0 &&
		    (pfd[1].revents & POLLIN))
			while (read(wake_pipe[0], drain, sizeof drain) > 0)
				;
	} else if (want_events) {
		rc = mq_ep_wait(ep, t < 0 || t > 100 ? 100 : (int)t, &ev, &err);
		if (rc < 0)
			connection_lost(&err);
		else if (rc > 0)
			on_event(&ev);
	} else if (t != 0) {
		poll(NULL, 0, t < 0 || t > 100 ? 100 : (int)t);
	}
}

static void abandon_input(void);

static void on_signal(int sig)
{
	int e = errno;

	(void)sig;
	signals++;
	if (wake_pipe[1] >= 0 && write(wake_pipe[1], "", 1) < 0) {
		/* full: poll wakes anyway */
	}
	errno = e;
}

/* A signal: stop reading, finish what is in flight within --timeout; a
 * second one (or the deadline) abandons it. */
static void check_signals(void)
{
	if (signals && !stopping) {
		/* The lines already read are sent (take_input goes on with
		 * what the buffer holds, reading no more, and says where it
		 * stopped). */
		stopping = true;
		stop_deadline = mq_mono_ms() + O.timeout_ms;
	}
	if (stopping && (signals >= 2 || mq_mono_ms() >= stop_deadline)) {
		if (reading)
			abandon_input();
		if (!quiet_everywhere())
			fail_everything(MQ_E_TIMEOUT, signals >= 2
					? "interrupted before the broker answered"
					: "interrupted, and no reply within "
					  "--timeout");
	}
}

/* One turn of the machine, reading no input. */
static void turn(void)
{
	poll_events();
	check_reply_timeout();
	check_signals();
	close_expired();
	trim_all();
	pump();
	pop_ring();
}

/* ---- the topic's partitions ---- */

/* Ask how many partitions the topic has: nparts stays 0 if it does not
 * exist. -1 if the endpoint failed for good. */
static int refresh_nparts(void)
{
	const char *topics[1] = { O.topic };
	mq_topic_meta *m;
	size_t n;
	mq_err err;

	while (ep) {
		if (mq_ep_metadata(ep, topics, 1, &m, &n, &err) < 0) {
			if (transport(err.code)) {
				connection_lost(&err);
				continue;
			}
			cli_warn("%s: %s", O.topic, err.msg);
			return -1;
		}
		if (n == 1 && m[0].code == 0 && m[0].nparts > 0)
			nparts = m[0].nparts > MQ_MAX_PARTITIONS
				 ? MQ_MAX_PARTITIONS : m[0].nparts;
		else if (n == 1 && m[0].code != 0 && m[0].code != MQ_E_NO_TOPIC)
			cli_warn("%s: %s", O.topic, mq_code_name(m[0].code));
		mq_topic_meta_free(m, n);
		return 0;
	}
	return -1;
}

static void run_until_quiet(void)
{
	close_all_open();
	while (!quiet_everywhere()) {
		turn();
		if (quiet_everywhere())
			break;
		wait_some(false);
	}
	pop_ring();
}

static void add_record(struct part *p, const cli_msg *m, size_t size,
		       uint64_t line);

/*
 * The topic did not exist when last asked, and m needs its partition
 * count. Once everything sent so far is answered, ask again (those sends
 * may have created it); if it still does not exist, send m alone, letting
 * the broker create the topic and choose m's partition (by its key, the
 * same way as this program), then ask again. 1 if m was sent (or failed)
 * here, 0 if the count is now known.
 */
static int learn_partitions(const cli_msg *m, size_t size, uint64_t line)
{
	struct part *p = m->key ? &probe_part : &parts[0];

	run_until_quiet();
	if (!ep) {
		LINE_FAILS(line, MQ_E_CONNECT, "not sent: no connection");
		return 1;
	}
	if (refresh_nparts() < 0) {
		LINE_FAILS(line, MQ_E_CONNECT, "not sent: no connection");
		return 1;
	}
	if (nparts > 0)
		return 0;
	add_record(p, m, size, line);
	if (!ring.n || ring.e[(ring.head + ring.n - 1) & (ring.cap - 1)].idx < 0)
		return 1;	/* it failed at once */
	probing = ring.e[(ring.head + ring.n - 1) & (ring.cap - 1)].p;
	if (m->key) {
		probing->rkey = malloc(m->key_len ? (size_t)m->key_len : 1);
		if (!probing->rkey)
			cli_die(EX_SOFTWARE_, "out of memory");
		memcpy(probing->rkey, m->key, (size_t)m->key_len);
		probing->rkey_len = m->key_len;
	}
	if (probing->state == B_OPEN)
		batch_close(probing);
	probe_code = MQ_E_IO;	/* until it is decided */
	run_until_quiet();
	probing = NULL;
	if (probe_code == 0 && ep)
		refresh_nparts();
	if (nparts > 0)
		rr = (p == &parts[0] ? 1 : 0) % nparts;
	if (ep && nparts == 0 && (probe_code == MQ_E_NO_TOPIC || !acked())) {
		cli_warn("topic %s does not exist and was not created%s; "
			 "stopped reading", O.topic, acked() ? ""
			 : " (is auto-creation off?)");
		if (!fatal_exit)
			fatal_exit = EX_TEMPFAIL_;
		stop_reading();
	}
	return 1;
}

/* ---- placing messages ---- */

static size_t headers_size(const mq_header *h, int32_t n)
{
	size_t s = 0;

	for (int32_t i = 0; i < n; i++)
		s += mq_varint_size(h[i].key_len) + (size_t)h[i].key_len +
		     mq_varint_size(h[i].value_len) +
		     (h[i].value_len > 0 ? (size_t)h[i].value_len : 0);
	return s;
}

/* Append m to p's open batch (opening one, or closing a full one). */
static void add_record(struct part *p, const cli_msg *m, size_t size,
		       uint64_t line)
{
	struct batch *b = p->open;
	int64_t ts = m->timestamp >= 0 ? m->timestamp : now_ms;
	mq_err err;

	if (b && (b->bb.len + size + RECORD_OVERHEAD > batch_target ||
		  (int64_t)p->next_seq + b->bb.count > INT32_MAX)) {
		batch_close(b);
		b = NULL;
	}
	if (!b) {
		b = batch_new(p);
		p->open = b;
	}
	if (mq_bb_add(&b->bb, ts, m->key, m->key ? m->key_len : -1, m->value,
		      m->value ? m->value_len : -1, m->headers, m->nheaders,
		      &err) < 0) {
		if (b->bb.count > 0) {
			batch_close(b);
			add_record(p, m, size, line);
			return;
		}
		p->open = NULL;
		batch_free(b);
		LINE_FAILS(line, err.code, "not sent: %s", err.msg);
		return;
	}
	ring_push(b, line, b->bb.count - 1);
	b->refs++;
	if (O.mode == M_SYNC || b->bb.len >= batch_target)
		batch_close(b);
}

static void place(const cli_msg *m, uint64_t line)
{
	size_t size = (m->key_len > 0 ? (size_t)m->key_len : 0) +
		      (m->value_len > 0 ? (size_t)m->value_len : 0) +
		      (m->nheaders == O.nheaders && m->headers == O.headers
		       ? O.header_bytes : headers_size(m->headers, m->nheaders));
	int32_t pn = O.partition >= 0 ? O.partition : m->partition;
	struct part *p;

	if (size > max_message) {
		LINE_FAILS(line, MQ_E_TOO_LARGE, "not sent: message of %zu "
			   "bytes exceeds the broker's limit of %" PRIu32
			   " bytes", size, max_message);
		return;
	}
	if (pn >= 0) {
		if (pn >= MQ_MAX_PARTITIONS || (nparts > 0 && pn >= nparts)) {
			LINE_FAILS(line, MQ_E_NO_PARTITION, "not sent: topic %s "
				   "has no partition %" PRId32 "%s", O.topic, pn,
				   nparts > 0 ? "" : " (it does not exist)");
			return;
		}
		p = &parts[pn];
		p->id = pn;
	} else {
		if (nparts == 0 && learn_partitions(m, size, line))
			return;
		if (m->key)
			p = &parts[mq_partition_for_key(m->key,
					(size_t)m->key_len, nparts)];
		else
			p = &parts[rr % nparts];
	}
	add_record(p, m, size, line);
}

static cli_msgbuf jbuf;
static mq_header *hscratch;
static size_t hscratch_cap;

static bool blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return false;
	return true;
}

static void take_line(const char *s, size_t n, uint64_t line)
{
	cli_msg m = { .key = NULL, .key_len = -1, .partition = -1,
		      .timestamp = -1 };
	mq_err err;

	n_lines = line;
	if (!O.json) {
		const char *d = O.kdelim ? memmem(s, n, O.kdelim, O.kdelim_len)
					 : NULL;
		if (d) {
			m.key = (const uint8_t *)s;
			m.key_len = (int32_t)(d - s);
			s = d + O.kdelim_len;
			n -= (size_t)m.key_len + O.kdelim_len;
		} else if (O.key_len >= 0) {
			m.key = (const uint8_t *)O.key;
			m.key_len = O.key_len;
		}
		m.value = (const uint8_t *)s;
		m.value_len = (int32_t)n;
		m.headers = O.headers;
		m.nheaders = O.nheaders;
		place(&m, line);
		return;
	}
	if (blank(s, n))
		return;
	if (cli_json_parse(s, n, &jbuf, &m, &err) < 0) {
		LINE_FAILS(line, 0, "malformed input: %s", err.msg);
		return;
	}
	if (!m.key && O.key_len >= 0) {
		m.key = (const uint8_t *)O.key;
		m.key_len = O.key_len;
	}
	if (O.nheaders) {
		size_t need = (size_t)m.nheaders + (size_t)O.nheaders;
		if (need > hscratch_cap) {
			hscratch = realloc(hscratch, need * sizeof *hscratch);
			if (!hscratch)
				cli_die(EX_SOFTWARE_, "out of memory");
			hscratch_cap = need;
		}
		if (m.nheaders)
			memcpy(hscratch, m.headers,
			       (size_t)m.nheaders * sizeof *hscratch);
		memcpy(hscratch + m.nheaders, O.headers,
		       (size_t)O.nheaders * sizeof *hscratch);
		m.headers = hscratch;
		m.nheaders = (int32_t)need;
	}
	place(&m, line);
}

/* ---- input ---- */

enum { IN_LINE, IN_MORE, IN_EOF, IN_LONG };

static struct {
	char *buf;
	size_t cap, r, w, scan;     /* unread [r, w); no delimiter in [r, scan) */
	size_t max_line;            /* longer lines are skipped */
	bool eof, skipping;
	uint64_t skip_len;
	char delim;
	uint64_t lineno;
	int argi;
} in;

static int in_next(const char **line, size_t *len)
{
	char *nl;
	size_t n;

	if (O.args) {
		if (in.argi == O.nargs)
			return IN_EOF;
		*line = O.args[in.argi];
		*len = strlen(*line);
		in.lineno = (uint64_t)++in.argi;
		return IN_LINE;
	}
	nl = memchr(in.buf + in.scan, in.delim, in.w - in.scan);
	if (!nl) {
		in.scan = in.w;
		if (!in.eof)
			return IN_MORE;
		if (in.r == in.w && !in.skipping)
			return IN_EOF;
		nl = in.buf + in.w;	/* the last line has no delimiter */
	}
	n = (size_t)(nl - (in.buf + in.r));
	*line = in.buf + in.r;
	in.lineno++;
	in.r = in.scan = nl < in.buf + in.w ? (size_t)(nl - in.buf) + 1 : in.w;
	if (in.skipping) {
		in.skipping = false;
		*len = in.skip_len + n;
		in.skip_len = 0;
		return IN_LONG;
	}
	*len = n;
	return IN_LINE;
}

/* Read what standard input has without blocking: 1 if something was
 * read (or EOF seen), 0 if nothing is there. */
static int in_fill(void)
{
	struct pollfd pfd = { .fd = 0, .events = POLLIN };
	ssize_t n;

	if (in.r == in.w)
		in.r = in.w = in.scan = 0;
	if (in.w == in.cap) {
		if (in.r > 0) {
			memmove(in.buf, in.buf + in.r, in.w - in.r);
			in.w -= in.r;
			in.scan -= in.r;
			in.r = 0;
		} else if (in.cap < in.max_line + 1) {
			size_t cap = in.cap * 2 < in.max_line + 1 ? in.cap * 2
								  : in.max_line + 1;
			char *p = realloc(in.buf, cap);
			if (!p)
				cli_die(EX_SOFTWARE_, "out of memory");
			in.buf = p;
			in.cap = cap;
		} else {
			/* A line longer than any message: drop what we have
			 * of it and count the rest. */
			in.skipping = true;
			in.skip_len += in.w;
			in.r = in.w = in.scan = 0;
		}
	}
	if (poll(&pfd, 1, 0) <= 0)
		return 0;
	n = read(0, in.buf + in.w, in.cap - in.w);
	if (n > 0) {
		in.w += (size_t)n;
		return 1;
	}
	if (n == 0) {
		in.eof = true;
		return 1;
	}
	if (errno == EINTR || errno == EAGAIN)
		return 0;
	cli_warn("cannot read standard input: %s", strerror(errno));
	in_error = true;
	stop_reading();
	return 1;
}

static bool can_take_input(void)
{
	if (!reading)
		return false;
	if (O.mode == M_SYNC)
		return quiet_everywhere();
	if (ring_full() || live + 1 >= live_max) {
		close_all_open();
		return false;
	}
	return true;
}

/* Take what input is there; true if any was. */
static bool take_input(void)
{
	const char *line;
	size_t len;
	bool any = false, filled = false;

	now_ms = mq_now_ms();
	while (can_take_input()) {
		switch (in_next(&line, &len)) {
		case IN_LINE:
			take_line(line, len, in.lineno);
			any = true;
			break;
		case IN_LONG:
			n_lines = in.lineno;
			LINE_FAILS(in.lineno, MQ_E_TOO_LARGE, "not sent: line of "
				   "%zu bytes exceeds the broker's limit of %"
				   PRIu32 " bytes per message", len,
				   max_message);
			any = true;
			break;
		case IN_EOF:
			stop_reading();
			return true;
		case IN_MORE:
			if (stopping) {
				/* Interrupted: what was read is taken, the
				 * rest stays unread. */
				cli_warn("interrupted: stopped reading after %s %"
					 PRIu64 "; waiting for the replies in "
					 "flight", O.args ? "argument" : "line",
					 in.lineno);
				stop_reading();
				return true;
			}
			if (filled || !in_fill())
				return any;
			filled = any = true;
			break;
		}
	}
	return any;
}

/* Interrupted again, or out of time, with whole lines read but not yet
 * taken: they are not sent, and each is reported as such. */
static void abandon_input(void)
{
	uint64_t first = in.lineno + 1, n = 0;

	if (!O.args)
		for (size_t i = in.r; i < in.w; i++)
			n += in.buf[i] == in.delim;
	else
		n = (uint64_t)(O.nargs - in.argi);
	stop_reading();
	if (n) {
		cli_warn("%s %" PRIu64 " to %" PRIu64 " %s read but not sent: "
			 "interrupted", O.args ? "arguments" : "lines", first,
			 first + n - 1, n == 1 ? "was" : "were");
		n_failed += n;
	}
}

/* ---- options ---- */

static void add_header(const char *arg)
{
	const char *eq = strchr(arg, '=');
	mq_header *h;

	if (!eq || eq == arg)
		cli_usage_error("-H %s: use NAME=VALUE with a non-empty NAME", arg);
	h = realloc(O.headers, (size_t)(O.nheaders + 1) * sizeof *h);
	if (!h)
		cli_die(EX_SOFTWARE_, "out of memory");
	O.headers = h;
	h += O.nheaders++;
	h->key = (const uint8_t *)arg;
	h->key_len = (int32_t)(eq - arg);
	h->value = (const uint8_t *)eq + 1;
	h->value_len = (int32_t)strlen(eq + 1);
}

static void set_mode(int mode, const char *name)
{
	if (O.mode_opt && O.mode != mode)
		cli_usage_error("cannot use %s with %s", name, O.mode_opt);
	O.mode = mode;
	O.mode_opt = name;
}

static void parse_args(int argc, char **argv)
{
	const char *batching = NULL, *inflight = NULL, *retries = NULL;
	mq_err err;
	int ch;

	while ((ch = getopt_long(argc, argv, "b:d:t:0K:k:H:p:JqvhV", longopts,
				 NULL)) != -1) {
		switch (ch) {
		case 'b':
			O.broker = optarg;
			break;
		case 'd':
			O.dir = optarg;
			break;
		case 't':
			O.topic = optarg;
			O.topic_len = strlen(optarg);
			break;
		case '0':
			O.nul = true;
			break;
		case 'K':
			if (!*optarg)
				cli_usage_error("-K: the delimiter cannot be empty");
			O.kdelim = optarg;
			O.kdelim_len = strlen(optarg);
			break;
		case 'k':
			O.key = optarg;
			O.key_len = (int32_t)strlen(optarg);
			break;
		case 'H':
			add_header(optarg);
			break;
		case 'p':
			O.partition = (int32_t)cli_int("-p", optarg, 0,
						       MQ_MAX_PARTITIONS - 1);
			break;
		case 'J':
			O.json = true;
			break;
		case OPT_SYNC:
			set_mode(M_SYNC, "--sync");
			break;
		case OPT_ASYNC:
			set_mode(M_ASYNC, "--async");
			break;
		case OPT_ONEWAY:
			set_mode(M_ONEWAY, "--oneway");
			break;
		case OPT_RETRIES:
			O.retries = (int)cli_int("--retries", optarg, 0, 1000);
			retries = "--retries";
			break;
		case OPT_LINGER:
			O.linger_ms = cli_duration_ms("--linger", optarg, 0,
						      60000);
			batching = "--linger";
			break;
		case OPT_BATCH_BYTES:
			O.batch_bytes = cli_size("--batch-bytes", optarg, 1,
						 MQ_BATCH_MAX_BYTES);
			batching = "--batch-bytes";
			break;
		case OPT_INFLIGHT:
			O.inflight = (int)cli_int("--inflight", optarg, 1, 1024);
			inflight = "--inflight";
			break;
		case OPT_TIMEOUT:
			O.timeout_ms = cli_duration_ms("--timeout", optarg, 1,
						       86400000);
			break;
		case OPT_STOP_ON_ERROR:
			O.stop_on_error = true;
			break;
		case 'q':
			O.quiet = true;
			break;
		case 'v':
			O.verbose = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		case 'V':
			printf("mq-send %s\n", MQ_VERSION);
			exit(0);
		default:
			fprintf(stderr, "Try 'mq-send --help'.\n");
			exit(EX_USAGE_);
		}
	}
	if (!O.topic)
		cli_usage_error("no topic: give one with -t");
	if (mq_topic_check(O.topic, false, &err) < 0)
		cli_usage_error("-t %s", err.msg);
	if (O.kdelim && O.key)
		cli_usage_error("cannot use -k with -K: -k gives every message "
				"the same key, -K takes keys from the input");
	if (O.kdelim && O.json)
		cli_usage_error("cannot use -K with -J: JSON input has its own "
				"\"key\"");
	if (O.mode == M_SYNC && O.mode_opt && batching)
		cli_usage_error("cannot use %s with --sync", batching);
	if (O.mode == M_SYNC && O.mode_opt && inflight)
		cli_usage_error("cannot use --inflight with --sync");
	if (O.mode == M_ONEWAY && inflight)
		cli_usage_error("cannot use --inflight with --oneway: it awaits "
				"no replies");
	if (O.mode == M_ONEWAY && retries)
		cli_usage_error("cannot use --retries with --oneway: it awaits "
				"no replies to retry");
	if (!O.mode_opt && (batching || inflight))
		cli_usage_error("%s needs --async or --oneway (the default is "
				"--sync)", batching ? batching : inflight);
	O.header_bytes = headers_size(O.headers, O.nheaders);
	if (optind < argc) {
		O.args = argv + optind;
		O.nargs = argc - optind;
	}
}

/* ---- main ---- */

static int exit_status(void)
{
	if (unavailable)
		return EX_UNAVAILABLE_;
	if (fatal_exit)
		return fatal_exit;
	if (n_failed)
		return EX_TEMPFAIL_;
	if (out_broken || in_error)
		return EX_IOERR_;
	if (n_invalid)
		return EX_DATAERR_;
	return 0;
}

static void setup_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;	/* no SA_RESTART: a blocked poll returns */
	if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		cli_die(EX_SOFTWARE_, "pipe: %s", strerror(errno));
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static void setup_input(void)
{
	struct stat st;

	in.delim = O.nul ? '\0' : '\n';
	in.max_line = (size_t)max_message * (O.json ? JSON_INFLATION : 1) +
		      O.kdelim_len + 65536;
	if (O.args)
		return;
	in.cap = IN_CHUNK;
	in.buf = malloc(in.cap);
	if (!in.buf)
		cli_die(EX_SOFTWARE_, "out of memory");
	/* A bigger pipe means fewer, larger reads. */
	if (fstat(0, &st) == 0 && S_ISFIFO(st.st_mode))
		fcntl(0, F_SETPIPE_SZ, IN_CHUNK);
}

int main(int argc, char **argv)
{
	int64_t t0;
	mq_err err;

	cli_init(argv[0]);
	parse_args(argc, argv);
	setup_signals();
	eo.timeout_ms = (int)O.timeout_ms;
	eo.local_sync = O.mode != M_ONEWAY;
	eo.interrupted = &signals;
	eo.interrupt_at = 2;
	ep = cli_open_endpoint(O.broker, O.dir, &eo);
	snprintf(ep_addr, sizeof ep_addr, "%s", mq_ep_name(ep));
	ep_dir = mq_ep_is_local(ep);
	limits();
	t0 = mq_mono_ms();

	live_max = O.mode == M_SYNC ? 8 : (size_t)O.inflight * 2 + 16;
	pool_cap = live_max + 1;
	pool = calloc(pool_cap, sizeof *pool);
	if (!pool)
		cli_die(EX_SOFTWARE_, "out of memory");
	if (acked() && mq_ep_init_producer(ep, &main_pid, &err) < 0)
		cli_die(cli_exit_code(&err), "%s", err.msg);
	for (int32_t i = 0; i < MQ_MAX_PARTITIONS; i++) {
		parts[i].id = i;
		parts[i].pid = main_pid;
	}
	probe_part.id = -1;
	probe_part.pid = main_pid;
	if (refresh_nparts() < 0 && !ep)
		return exit_status();
	if (O.partition >= 0 && nparts > 0 && O.partition >= nparts)
		cli_usage_error("-p %" PRId32 ": topic %s has %" PRId32
				" partition%s (0 to %" PRId32 ")", O.partition,
				O.topic, nparts, nparts == 1 ? "" : "s",
				nparts - 1);
	setup_input();

	for (;;) {
		turn();
		if (reading && take_input())
			continue;
		if (!reading && quiet_everywhere() && !ring.n)
			break;
		wait_some(can_take_input());
	}
	if (ep && !acked() && mq_ep_drain(ep, &err) < 0) {
		cli_warn("%s", err.msg);
		unavailable = transport(err.code);
		if (!unavailable)
			n_failed++;
	}
	if (ep)
		mq_ep_close(ep);
	out_flush();
	report_flush();
	if (n_failed || n_invalid || O.verbose) {
		int64_t ms = mq_mono_ms() - t0;
		if (n_failed || n_invalid)
			cli_warn("%" PRIu64 " message%s %s, %" PRIu64 " failed, %"
				 PRIu64 " malformed", n_ok, n_ok == 1 ? "" : "s",
				 acked() ? "acknowledged" : "sent", n_failed,
				 n_invalid);
		if (O.verbose && n_resent)
			cli_warn("resent %" PRIu64 " batch%s; the broker already "
				 "had %" PRIu64 " (answered with their first "
				 "offsets)", n_resent, n_resent == 1 ? "" : "es",
				 n_dup);
		if (O.verbose)
			cli_warn("%" PRIu64 " messages in %.3f s: %.0f msg/s, "
				 "%.1f MB/s", n_ok, ms / 1000.0,
				 ms ? n_ok * 1000.0 / ms : 0.0,
				 ms ? bytes_ok / 1000.0 / ms : 0.0);
	}
	cli_msgbuf_free(&jbuf);
	return exit_status();
}
