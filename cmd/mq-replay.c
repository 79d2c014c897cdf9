/*
 * mq-replay - inspect and replay the dead letters of a consumer group
 * (mq-replay(1)).
 *
 * mq-recv puts a message whose --exec command keeps failing into its
 * group's dead-letter queue, the topic "%DLQ%GROUP" (one partition), with
 * the original key, value and headers plus the DLQ_H_* headers of
 * cli/msg.h: where it came from, how often it ran, how it failed. This
 * program lists those dead letters, shows one in full, sends them back
 * (to their original topic or to another) and purges old ones. It needs
 * only the broker (or the data directory): no consumer has to be online.
 *
 * Ids. A dead letter is named like any message, "%DLQ%GROUP/0/OFFSET";
 * on the command line a bare OFFSET means the same.
 *
 * The replay log. What has been sent back is remembered by the broker in
 * a second internal topic per group, "%RPL%GROUP" (one partition, created
 * by the first produce to it, like the DLQ). Replaying dead letter X
 * appends, each step acknowledged (a sync send) before the next starts:
 *
 *   1. an intent record with the headers mq.replay.dlq-offset = X,
 *      mq.replay.target = TOPIC/PARTITION and mq.replay.target-end = the
 *      end offset of that partition, read just before;
 *   2. the resend itself, to TOPIC/PARTITION: X's key and value, its
 *      headers without the mq.dlq.* ones, plus REPLAY_H_FROM = X's id.
 *      The partition is explicit: the original one when going back to
 *      the original topic (if it still has that partition), else the
 *      key's hash over the target's partitions, or 0 for a null key.
 *      Sends use an idempotent producer, so a send retried after a flush
 *      timeout is not written twice;
 *   3. a done record with the headers mq.replay.dlq-offset = X and
 *      mq.replay.new-id = TOPIC/PARTITION/OFFSET.
 *
 * Read back, the log gives the replayed set (every X with a done record)
 * and the pending intents (an intent with no done record after it: a run
 * stopped between steps 1 and 3). Each run first settles the pending
 * intents: it looks in the target partition, from the recorded end, for a
 * record whose REPLAY_H_FROM is X's id. If there is one, X was replayed
 * and the missing done record is written; if not, X was never sent and is
 * replayed like any other. So a run killed at any point and run again
 * sends every dead letter exactly once. Settling reads up to the log end,
 * waiting for records that are written but not yet visible (a broker
 * with --flush sync serves only what is on disk), so that a resend the
 * broker appended just as its sender was killed is not missed. Two runs
 * for the same group at the same time are not coordinated (see CAVEATS in
 * the man page).
 *
 * A target topic that does not exist yet is recorded as TOPIC/-1 and its
 * resend lets the endpoint choose the partition (creating the topic, as
 * any produce does); settling such an intent looks in every partition.
 *
 * Selection: ids (arguments, or stdin with "-"), --from/--until (DLQ
 * offsets, inclusive), --since/--before (the dead letter's timestamp),
 * --key; they combine with AND. A replay takes the selected dead letters
 * not replayed yet, or all selected with --again. --dry-run prints what
 * would be sent and writes nothing, not even intents.
 *
 * Purge moves the DLQ's log start offset (DELETE_RECORDS) to the first
 * offset whose timestamp is at or after --before TIME (LIST_OFFSET), or to
 * --until OFFSET + 1, whichever is lower. It lists what would go and
 * changes nothing unless --execute is given.
 *
 * Times are ISO 8601 (2026-11-21T13:00:00Z, +02:00 offsets, a date alone;
 * local time without a zone, as in mq-offset) or -DURATION before now
 * (-2h, -30m, -7d).
 */
#include "cli/cli.h"
#include "cli/msg.h"
#include "cli/table.h"
#include "cli/timefmt.h"
#include "batch.h"
#include "name.h"
#include "proto.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Headers of the replay log's records. */
#define RPL_H_DLQ_OFFSET "mq.replay.dlq-offset"
#define RPL_H_TARGET     "mq.replay.target"
#define RPL_H_TARGET_END "mq.replay.target-end"
#define RPL_H_NEW_ID     "mq.replay.new-id"
/* The headers of a dead letter that the original message did not have. */
#define DLQ_H_PREFIX     "mq.dlq."

#define FETCH_BYTES (1u << 20)
#define SEND_TRIES 3                  /* tries of a send that timed out
					 waiting for the flush */
#define ID_MAX (MQ_TOPIC_MAX + 48)    /* TOPIC/PARTITION/OFFSET + NUL */

enum mode { M_REPLAY, M_LIST, M_SHOW, M_PURGE };

static struct {
	const char *broker, *dir, *group, *to, *show, *key;
	enum mode mode;
	bool json, dry_run, again, execute, quiet, verbose, stdin_ids;
	int64_t from, until;          /* DLQ offsets; -1: not given */
	bool has_since, has_before;
	int64_t since, before;        /* ms since the epoch */
	int64_t *ids;                 /* DLQ offsets named, sorted, unique */
	bool *id_seen;
	size_t nids;
} o = { .from = -1, .until = -1 };

static char dlq[MQ_TOPIC_MAX + 1], rpl[MQ_TOPIC_MAX + 1];

/* ---- small helpers ---- */

static char *xasprintf(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		cli_die(EX_SOFTWARE_, "out of memory");
	va_end(ap);
	return s;
}

/* Write a reason into why[0, whysz), cut short if need be. */
static void say(char *why, size_t whysz, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void say(char *why, size_t whysz, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whysz, fmt, ap);
	va_end(ap);
}

/* Put "context: " in front of err's message, keeping its code. */
static int err_context(mq_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int err_context(mq_err *err, const char *fmt, ...)
{
	char ctx[256], msg[sizeof err->msg];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ctx, sizeof ctx, fmt, ap);
	va_end(ap);
	memcpy(msg, err->msg, sizeof msg);
	msg[sizeof msg - 1] = '\0';
	say(err->msg, sizeof err->msg, "%s: %s", ctx, msg);
	return -1;
}

/* A failure after which the endpoint (or this machine) is of no more use:
 * the run stops instead of going on with the next dead letter. */
static bool fatal(const mq_err *err)
{
	int code = cli_exit_code(err);

	return code == EX_UNAVAILABLE_ || code == EX_IOERR_ ||
	       code == EX_SOFTWARE_;
}

/* A whole number in [0, INT64_MAX] that is all of s. */
static bool parse_offset(const char *s, int64_t *v)
{
	char *end;
	long long n;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	*v = n;
	return true;
}

/* ---- headers ---- */

/* The last header of r called name (mq-recv appends its headers after
 * the message's own): 1 with *out filled, or 0. */
static int hdr_find(const mq_record *r, const char *name, mq_header *out)
{
	size_t pos = 0, n = strlen(name);
	mq_header h;
	int found = 0;

	while (mq_header_next(r, &pos, &h) == 1)
		if ((size_t)h.key_len == n && memcmp(h.key, name, n) == 0) {
			*out = h;
			found = 1;
		}
	return found;
}

/* That header's value as a string (malloc'd, cut at a NUL byte), or
 * NULL if there is no such header or its value is null. */
static char *hdr_str(const mq_record *r, const char *name)
{
	mq_header h;

	if (!hdr_find(r, name, &h) || h.value_len < 0)
		return NULL;
	return cli_xstrndup(h.value, strnlen((const char *)h.value,
					 (size_t)h.value_len));
}

static bool hdr_int(const mq_record *r, const char *name, int64_t *v)
{
	char *s = hdr_str(r, name);
	bool ok = s && parse_offset(s, v);

	free(s);
	return ok;
}

static mq_header text_hdr(const char *name, const char *value)
{
	return (mq_header){ (const uint8_t *)name, (int32_t)strlen(name),
			    (const uint8_t *)value, (int32_t)strlen(value) };
}

/* ---- ids and times ---- */

static const char *dlq_id(int64_t off, char *buf)
{
	snprintf(buf, ID_MAX, "%s/0/%" PRId64, dlq, off);
	return buf;
}

/*
 * A dead letter named by s[0, len): this group's id "%DLQ%GROUP/0/OFFSET",
 * or (if bare_ok) an OFFSET alone. 0 with *off, or -1 with a reason.
 */
static int parse_dlq_id(const char *s, size_t len, bool bare_ok,
			int64_t *off, char *why, size_t whysz)
{
	char buf[ID_MAX + 1];
	size_t dl = strlen(dlq);
	const char *p = buf;

	if (len >= sizeof buf || memchr(s, '\0', len)) {
		say(why, whysz, "not a dead-letter id");
		return -1;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (len > dl && memcmp(buf, dlq, dl) == 0 && buf[dl] == '/') {
		p = buf + dl + 1;
		if (strncmp(p, "0/", 2) != 0) {
			say(why, whysz, "a dead-letter queue has only "
				 "partition 0");
			return -1;
		}
		p += 2;
	} else if (!bare_ok || buf[0] == '%' || strchr(buf, '/')) {
		say(why, whysz, "not a dead letter of group %s (their ids "
			 "are %s/0/OFFSET)", o.group, dlq);
		return -1;
	}
	if (!parse_offset(p, off)) {
		say(why, whysz, "not a dead-letter id or offset");
		return -1;
	}
	return 0;
}

/* A copy of p[0, len) fit for one cell of a table: control characters
 * become '?'; NULL (null) becomes "-". */
static char *cell(const uint8_t *p, int32_t len)
{
	char *s;

	if (!p || len < 0)
		return cli_xstrndup("-", 1);
	s = cli_xstrndup(p, (size_t)len);
	for (int32_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			s[i] = '?';
	return s;
}

/* The first line of the command's captured stderr with text in it, or
 * NULL: what a listing shows as the reason. */
static char *reason_of(const mq_record *r)
{
	char *s = hdr_str(r, DLQ_H_STDERR), *line, *res = NULL;
	size_t n;

	for (line = s; line && *line; line += n + (line[n] != '\0')) {
		n = strcspn(line, "\n");
		size_t lead = strspn(line, " \t\r");
		size_t len = n;

		while (len > lead && strchr(" \t\r", line[len - 1]))
			len--;
		if (len > lead) {
			res = cell((const uint8_t *)line + lead,
				   (int32_t)(len - lead));
			break;
		}
	}
	free(s);
	return res;
}

/* ---- the replay log, in memory ---- */

struct rstate {
	int64_t dlq;            /* DLQ offset; -1: an empty slot */
	char *new_id;           /* where its last replay went, or NULL */
	bool pending;           /* an intent with no done record after it */
	bool found;             /* settle() found its resend */
	char *target;           /* the pending intent's topic */
	int32_t target_part;    /* -1: that topic did not exist */
	int64_t target_end;
};

/* Open addressing on the DLQ offset; the size is a power of two. */
static struct {
	struct rstate *s;
	size_t cap, n;
} rt;

static size_t rt_home(int64_t x, size_t cap)
{
	return (size_t)(((uint64_t)x * 0x9e3779b97f4a7c15ull) >> 17) &
	       (cap - 1);
}

static struct rstate *rt_get(int64_t x, bool add)
{
	size_t i;

	if (add && (rt.n + 1) * 2 > rt.cap) {
		size_t cap = rt.cap ? rt.cap * 2 : 256;
		struct rstate *s = cli_xrealloc(NULL, cap, sizeof *s);

		for (i = 0; i < cap; i++)
			s[i] = (struct rstate){ .dlq = -1 };
		for (size_t j = 0; j < rt.cap; j++) {
			if (rt.s[j].dlq < 0)
				continue;
			for (i = rt_home(rt.s[j].dlq, cap); s[i].dlq >= 0;
			     i = (i + 1) & (cap - 1))
				;
			s[i] = rt.s[j];
		}
		free(rt.s);
		rt.s = s;
		rt.cap = cap;
	}
	if (!rt.cap)
		return NULL;
	for (i = rt_home(x, rt.cap);; i = (i + 1) & (rt.cap - 1)) {
		if (rt.s[i].dlq == x)
			return &rt.s[i];
		if (rt.s[i].dlq < 0) {
			if (!add)
				return NULL;
			rt.s[i] = (struct rstate){ .dlq = x };
			rt.n++;
			return &rt.s[i];
		}
	}
}

static const char *replayed_as(int64_t x)
{
	struct rstate *s = rt_get(x, false);

	return s ? s->new_id : NULL;
}

/* ---- reading a partition ---- */

typedef int (*rec_fn)(void *arg, const mq_record *r, mq_err *err);

/*
 * Call fn for every record of topic/part from offset from (or the log
 * start, if later) up to the visible end, in order. fn returns 0 to go
 * on, 1 to stop, -1 to fail; it must not use the endpoint, whose last
 * answer the records point into. *start and *end (if not NULL) get the partition's log
 * start and visible end as last seen. Returns 0, 1 if there is no such
 * topic or partition, or -1 with err.
 *
 * With to_end, reading goes on up to the log end as the first answer
 * gave it, waiting (long polls) for records that are written but not yet
 * visible: a broker with --flush sync serves a record only once it is on
 * disk, and a send whose sender was killed may have been appended just
 * before. If they do not become visible within FLUSH_WAIT_MS, the read
 * fails (MQ_E_FLUSH_TIMEOUT) rather than miss them.
 */
#define FLUSH_WAIT_MS 10000
static int read_part(mq_ep *ep, const char *topic, int32_t part,
		     int64_t from, bool to_end, rec_fn fn, void *arg,
		     int64_t *start, int64_t *end, mq_err *err)
{
	int64_t off = from < 0 ? 0 : from, log_end = -1;
	bool waited = false;
	int rc = 0;

	for (;;) {
		mq_ep_event ev;
		int64_t next = off, visible;
		const uint8_t *buf;
		size_t pos = 0, len;

		if (mq_ep_fetch_send(ep, topic, part, off, FETCH_BYTES,
				     waited ? FLUSH_WAIT_MS : 0, 0, err) < 0)
			goto fail;
		rc = mq_ep_wait(ep, -1, &ev, err);
		if (rc < 0)
			goto fail;
		if (rc == 0) {
			mq_errf(err, MQ_E_TIMEOUT, "no answer to a fetch");
			goto fail;
		}
		rc = 0;
		if (ev.code == MQ_E_NO_TOPIC || ev.code == MQ_E_NO_PARTITION) {
			rc = 1;
			break;
		}
		if (ev.code && ev.code != MQ_E_OFFSET_RANGE) {
			mq_errf(err, ev.code, "%s", ev.msg);
			goto fail;
		}
		if (start)
			*start = ev.fetch.start;
		if (end)
			*end = ev.fetch.visible;
		if (ev.code == MQ_E_OFFSET_RANGE) {
			/* Below the start (retention, a purge): go on from
			 * there. Beyond the end: there is nothing. */
			if (off < ev.fetch.start) {
				off = ev.fetch.start;
				continue;
			}
			break;
		}
		len = ev.fetch.len;
		visible = ev.fetch.visible;
		if (log_end < 0)
			log_end = to_end ? ev.fetch.end : 0;
		if (len == 0) {
			if (off >= log_end)
				break;
			if (waited) {
				mq_errf(err, MQ_E_FLUSH_TIMEOUT, "%s/%" PRId32
					": records up to offset %" PRId64
					" are written but not on disk yet; "
					"try again", topic, part, log_end - 1);
				goto fail;
			}
			waited = true;	/* long-poll for them */
			continue;
		}
		waited = false;
		buf = ev.fetch.batches;
		while (pos < len) {
			mq_batch_hdr h;
			mq_batch_iter it;
			mq_record r;
			int k;

			if (mq_batch_parse_header(buf + pos, len - pos, &h,
						  err) < 0 ||
			    mq_batch_size(&h) > len - pos) {
				mq_errf(err, MQ_E_CORRUPT, "a batch cut short");
				goto corrupt;
			}
			if (mq_batch_validate(buf + pos, mq_batch_size(&h),
					      NULL, err) < 0 ||
			    mq_batch_iter_init(&it, buf + pos,
					       mq_batch_size(&h), err) < 0)
				goto corrupt;
			while ((k = mq_batch_iter_next(&it, &r, err)) == 1) {
				if (r.offset < off)
					continue;
				k = fn(arg, &r, err);
				if (k < 0)
					goto fail;
				if (k > 0)
					goto out;
			}
			if (k < 0)
				goto fail;
			next = mq_batch_last_offset(&h) + 1;
			pos += mq_batch_size(&h);
		}
		if (next <= off) {
			mq_errf(err, MQ_E_CORRUPT, "%s/%" PRId32 ": a fetch at "
				"%" PRId64 " brought nothing new", topic, part,
				off);
			goto fail;
		}
		off = next;
		if (off >= visible && off >= log_end)
			break;
	}
out:
	return rc;
corrupt:
	err_context(err, "%s/%" PRId32 " near offset %" PRId64, topic, part,
		    off);
fail:
	return -1;
}

/* How many partitions topic has: 0 if it does not exist. Remembered,
 * unless forget is true. */
static int topic_parts(mq_ep *ep, const char *topic, bool forget,
		       int32_t *n, mq_err *err)
{
	static struct known { char *topic; int32_t n; } *known;
	static size_t nknown;
	mq_topic_meta *m = NULL;
	size_t nm = 0, i;

	for (i = 0; i < nknown; i++)
		if (!strcmp(known[i].topic, topic))
			break;
	if (i < nknown && !forget) {
		*n = known[i].n;
		return 0;
	}
	*n = 0;
	if (mq_ep_metadata(ep, &topic, 1, &m, &nm, err) < 0) {
		if (err->code != MQ_E_NO_TOPIC)
			return err_context(err, "topic %s", topic);
	} else {
		if (nm >= 1 && m[0].code == MQ_OK)
			*n = m[0].nparts;
		else if (nm >= 1 && m[0].code != MQ_E_NO_TOPIC) {
			mq_errf(err, m[0].code, "topic %s: %s", topic,
				mq_code_name(m[0].code));
			mq_topic_meta_free(m, nm);
			return -1;
		}
		mq_topic_meta_free(m, nm);
	}
	if (i == nknown) {
		known = cli_xrealloc(known, nknown + 1, sizeof *known);
		known[nknown++].topic = cli_xstrndup(topic, strlen(topic));
	}
	known[i].n = *n;
	return 0;
}

/* ---- sync, idempotent sends ---- */

static struct {
	int64_t pid;          /* -1: the endpoint gives no producer ids */
	struct pseq { char *topic; int32_t part, next; } *seqs;
	size_t nseqs;
	mq_batch_builder bb;
} pr = { .pid = -1 };

static int producer_init(mq_ep *ep, mq_err *err)
{
	if (mq_bb_init(&pr.bb, mq_ep_max_batch(ep), err) < 0)
		return -1;
	if (mq_ep_init_producer(ep, &pr.pid, err) < 0) {
		if (err->code != MQ_E_UNSUPPORTED)
			return err_context(err, "cannot get a producer id");
		pr.pid = -1;
	}
	return 0;
}

/* The next sequence number for topic/part. */
static int32_t *seq_of(const char *topic, int32_t part)
{
	for (size_t i = 0; i < pr.nseqs; i++)
		if (pr.seqs[i].part == part && !strcmp(pr.seqs[i].topic, topic))
			return &pr.seqs[i].next;
	pr.seqs = cli_xrealloc(pr.seqs, pr.nseqs + 1, sizeof *pr.seqs);
	pr.seqs[pr.nseqs] = (struct pseq){ cli_xstrndup(topic, strlen(topic)),
					   part, 0 };
	return &pr.seqs[pr.nseqs++].next;
}

/*
 * Send one record to topic/part (part -1: the endpoint chooses, by the
 * key) and wait until the broker acknowledged it. A send that timed out
 * waiting for the flush is sent again with the same sequence number, so
 * the broker answers with the offset it gave the first time; a send with
 * no sequence number (part -1) is not sent again. 0 with *res,
 * or -1 with err: the broker's refusal or a transport failure.
 */
static int send_sync(mq_ep *ep, const char *topic, int32_t part,
		     const uint8_t *key, int32_t klen, const uint8_t *value,
		     int32_t vlen, const mq_header *h, int32_t nh,
		     mq_produce_result *res, mq_err *err)
{
	int32_t *seq = pr.pid >= 0 && part >= 0 ? seq_of(topic, part) : NULL;
	mq_ep_event ev;

	mq_bb_reset(&pr.bb);
	if (mq_bb_add(&pr.bb, mq_now_ms(), key, key ? klen : -1, value,
		      value ? vlen : -1, h, nh, err) < 0 ||
	    mq_bb_finish(&pr.bb, seq ? pr.pid : -1, seq ? 0 : -1,
			 seq ? *seq : -1, err) < 0)
		return -1;
	for (int tries = 1;; tries++) {
		int rc;

		if (mq_ep_produce_send(ep, topic, part, key, key ? klen : -1,
				       1, pr.bb.buf, pr.bb.len, 0, err) < 0)
			return -1;
		rc = mq_ep_wait(ep, -1, &ev, err);
		if (rc < 0)
			return -1;
		if (rc == 0)
			return mq_errf(err, MQ_E_TIMEOUT, "no answer to a send");
		if (ev.code == MQ_OK) {
			*res = ev.produce;
			if (seq)
				(*seq)++;
			return 0;
		}
		mq_errf(err, ev.code, "%s", ev.msg);
		/* Only a numbered batch may go again: the broker knows it.
		 * One without a number (to a topic that did not exist yet)
		 * would be appended twice; the replay log's intent lets the
		 * next run find where it landed. */
		if (ev.code != MQ_E_FLUSH_TIMEOUT || !seq ||
		    tries == SEND_TRIES)
			break;
	}
	/* A batch that timed out flushing is in the log: its number is
	 * spent. Any other refusal left nothing behind. */
	if (seq && err->code == MQ_E_FLUSH_TIMEOUT)
		(*seq)++;
	return -1;
}

static int write_intent(mq_ep *ep, int64_t x, const char *topic,
			int32_t part, int64_t end, mq_err *err)
{
	char xs[24], target[ID_MAX], es[24];
	mq_header h[3];
	mq_produce_result res;

	snprintf(xs, sizeof xs, "%" PRId64, x);
	snprintf(target, sizeof target, "%s/%" PRId32, topic, part);
	snprintf(es, sizeof es, "%" PRId64, end);
	h[0] = text_hdr(RPL_H_DLQ_OFFSET, xs);
	h[1] = text_hdr(RPL_H_TARGET, target);
	h[2] = text_hdr(RPL_H_TARGET_END, es);
	if (send_sync(ep, rpl, 0, NULL, -1, NULL, -1, h, 3, &res, err) < 0)
		return err_context(err, "replay log %s", rpl);
	return 0;
}

static int write_done(mq_ep *ep, int64_t x, const char *new_id,
		      mq_err *err)
{
	char xs[24];
	mq_header h[2];
	mq_produce_result res;

	snprintf(xs, sizeof xs, "%" PRId64, x);
	h[0] = text_hdr(RPL_H_DLQ_OFFSET, xs);
	h[1] = text_hdr(RPL_H_NEW_ID, new_id);
	if (send_sync(ep, rpl, 0, NULL, -1, NULL, -1, h, 2, &res, err) < 0)
		return err_context(err, "replay log %s", rpl);
	return 0;
}

/* ---- loading and settling the replay log ---- */

static int rpl_record(void *arg, const mq_record *r, mq_err *err)
{
	char *new_id, *target, *slash, *end;
	struct rstate *s;
	int64_t x, tend;
	long part;

	(void)arg;
	(void)err;
	if (!hdr_int(r, RPL_H_DLQ_OFFSET, &x))
		return 0;	/* not one of ours */
	new_id = hdr_str(r, RPL_H_NEW_ID);
	target = hdr_str(r, RPL_H_TARGET);
	if (new_id) {
		s = rt_get(x, true);
		free(s->new_id);
		s->new_id = new_id;
		s->pending = false;
		free(target);
		return 0;
	}
	if (target && (slash = strrchr(target, '/')) && slash > target &&
	    hdr_int(r, RPL_H_TARGET_END, &tend)) {
		errno = 0;
		part = strtol(slash + 1, &end, 10);
		if (!errno && !*end && end > slash + 1 && part >= -1 &&
		    part <= INT32_MAX) {
			*slash = '\0';
			s = rt_get(x, true);
			free(s->target);
			s->target = target;
			s->target_part = (int32_t)part;
			s->target_end = tend;
			s->pending = true;
			return 0;
		}
	}
	free(target);
	return 0;
}

/* The partition being searched for resends of pending intents. */
struct scan {
	const char *topic;
	int32_t part;
	size_t left;            /* intents that can only be here */
};

static int scan_record(void *arg, const mq_record *r, mq_err *err)
{
	struct scan *sc = arg;
	struct rstate *s;
	mq_header h;
	int64_t x;
	char why[160];

	(void)err;
	if (!hdr_find(r, REPLAY_H_FROM, &h) || h.value_len <= 0 ||
	    parse_dlq_id((const char *)h.value, (size_t)h.value_len, false,
			 &x, why, sizeof why) < 0)
		return 0;
	s = rt_get(x, false);
	if (!s || !s->pending || s->found || strcmp(s->target, sc->topic) ||
	    (s->target_part != -1 && s->target_part != sc->part) ||
	    r->offset < s->target_end)
		return 0;
	s->found = true;
	free(s->new_id);
	s->new_id = xasprintf("%s/%" PRId32 "/%" PRId64, sc->topic, sc->part,
			      r->offset);
	if (s->target_part != -1 && --sc->left == 0)
		return 1;
	return 0;
}

static int cmp_rstate(const void *a, const void *b)
{
	const struct rstate *x = *(struct rstate *const *)a;
	const struct rstate *y = *(struct rstate *const *)b;

	return x->dlq < y->dlq ? -1 : x->dlq > y->dlq;
}

/*
 * Settle the pending intents (see the top of this file): find each one's
 * resend in its target partition. Found, it counts as replayed (and with
 * write, its done record is written now); not found, it was never sent.
 * Returns 0 or -1 with err.
 */
static int settle(mq_ep *ep, bool write, mq_err *err)
{
	struct rstate **p = NULL;
	size_t np = 0, i, j;
	int rc = -1;

	for (i = 0; i < rt.cap; i++)
		if (rt.s[i].dlq >= 0 && rt.s[i].pending) {
			p = cli_xrealloc(p, np + 1, sizeof *p);
			p[np++] = &rt.s[i];
		}
	if (!np)
		return 0;
	qsort(p, np, sizeof *p, cmp_rstate);
	/* One scan per target partition, from the lowest end recorded. */
	for (i = 0; i < np; i++) {
		struct scan sc = { p[i]->target, p[i]->target_part, 0 };
		int64_t from = p[i]->target_end;
		int32_t n, first, last;

		for (j = 0; j < i; j++)
			if (!strcmp(p[j]->target, sc.topic) &&
			    p[j]->target_part == sc.part)
				break;
		if (j < i)
			continue;	/* scanned already */
		for (j = i; j < np; j++)
			if (!strcmp(p[j]->target, sc.topic) &&
			    p[j]->target_part == sc.part) {
				sc.left++;
				if (p[j]->target_end < from)
					from = p[j]->target_end;
			}
		first = last = sc.part;
		if (sc.part == -1) {
			if (topic_parts(ep, sc.topic, true, &n, err) < 0)
				goto out;
			first = 0;
			last = n - 1;
			from = 0;
		}
		for (int32_t k = first; k <= last; k++) {
			sc.part = k;
			if (o.verbose)
				cli_warn("looking for interrupted replays in "
					 "%s/%" PRId32 " from offset %" PRId64,
					 sc.topic, k, from);
			if (read_part(ep, sc.topic, k, from, true, scan_record,
				      &sc, NULL, NULL, err) < 0) {
				err_context(err, "settling interrupted replays");
				goto out;
			}
		}
	}
	for (i = 0; i < np; i++) {
		char id[ID_MAX];

		dlq_id(p[i]->dlq, id);
		if (p[i]->found) {
			if (write && write_done(ep, p[i]->dlq, p[i]->new_id,
						err) < 0)
				goto out;
			if (o.verbose || (o.mode == M_REPLAY && !o.quiet))
				cli_warn("%s had been replayed as %s by a run "
					 "that was interrupted; %s", id,
					 p[i]->new_id, write ? "recorded now"
					 : "not recorded (dry run)");
		} else if (o.verbose) {
			cli_warn("%s: an interrupted run did not send it",
				 id);
		}
		p[i]->pending = p[i]->found = false;
	}
	rc = 0;
out:
	free(p);
	return rc;
}

static void load_replay_log(mq_ep *ep, bool write)
{
	mq_err err;

	if (read_part(ep, rpl, 0, 0, false, rpl_record, NULL, NULL, NULL,
		      &err) < 0 ||
	    settle(ep, write, &err) < 0)
		cli_die(cli_exit_code(&err), "%s", err.msg);
}

/* ---- selection ---- */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void add_id(int64_t x)
{
	o.ids = cli_xrealloc(o.ids, o.nids + 1, sizeof *o.ids);
	o.ids[o.nids++] = x;
}

/* Sort the ids named and drop repeats. */
static void ids_done(void)
{
	size_t i, n = 0;

	if (o.nids)
		qsort(o.ids, o.nids, sizeof *o.ids, cmp_i64);
	for (i = 0; i < o.nids; i++)
		if (n == 0 || o.ids[n - 1] != o.ids[i])
			o.ids[n++] = o.ids[i];
	o.nids = n;
	o.id_seen = cli_xrealloc(NULL, n, sizeof *o.id_seen);
	memset(o.id_seen, 0, n * sizeof *o.id_seen);
}

/*
 * Ids from stdin, one per line: an id or an offset (the first word of the
 * line), or a JSON object whose "dlq_id" or else "id" is one (mq-replay
 * -J and mq-recv -J output). Empty lines and lines starting with '#' are
 * skipped. A line that names no dead letter of the group: exit 65.
 */
static void read_stdin_ids(void)
{
	char *line = NULL, why[200];
	size_t cap = 0, lineno = 0;
	ssize_t len;

	while ((len = getline(&line, &cap, stdin)) >= 0) {
		const char *s = line;
		size_t n;
		int64_t x;
		cJSON *j = NULL, *v;

		lineno++;
		s += strspn(s, " \t");
		if (!*s || *s == '\n' || *s == '\r' || *s == '#')
			continue;
		if (*s == '{') {
			j = cli_json_line(s, (size_t)(line + len - s));
			v = cJSON_GetObjectItemCaseSensitive(j, "dlq_id");
			if (!cJSON_IsString(v))
				v = cJSON_GetObjectItemCaseSensitive(j, "id");
			if (!cJSON_IsString(v)) {
				cJSON_Delete(j);
				cli_die(EX_DATAERR_, "stdin line %zu: a JSON "
					"object with no \"dlq_id\" or \"id\" "
					"string", lineno);
			}
			s = v->valuestring;
			n = strlen(s);
		} else {
			n = strcspn(s, " \t\r\n");
		}
		if (parse_dlq_id(s, n, true, &x, why, sizeof why) < 0) {
			cli_warn("stdin line %zu: %.*s: %s", lineno,
				 (int)(n > 100 ? 100 : n), s, why);
			cJSON_Delete(j);
			exit(EX_DATAERR_);
		}
		cJSON_Delete(j);
		add_id(x);
	}
	if (ferror(stdin))
		cli_die(EX_IOERR_, "reading stdin: %s", strerror(errno));
	free(line);
}

/* Whether r is selected by the ids and filters given (not by whether it
 * was replayed). */
static bool selected(const mq_record *r)
{
	if (o.nids) {
		int64_t *p = bsearch(&r->offset, o.ids, o.nids, sizeof *o.ids,
				     cmp_i64);
		if (!p)
			return false;
		o.id_seen[p - o.ids] = true;
	}
	if (o.from >= 0 && r->offset < o.from)
		return false;
	if (o.until >= 0 && r->offset > o.until)
		return false;
	if (o.has_since && r->timestamp < o.since)
		return false;
	if (o.has_before && r->timestamp >= o.before)
		return false;
	if (o.key && (!r->key || (size_t)r->key_len != strlen(o.key) ||
		      memcmp(r->key, o.key, (size_t)r->key_len) != 0))
		return false;
	return true;
}

/* Where reading the DLQ may start and must stop (inclusive; -1: at
 * the end), given the ids and offsets asked for. */
static void dlq_bounds(int64_t *from, int64_t *until)
{
	/* Ids are looked for even where other filters exclude them, so
	 * that an id naming nothing is told from one filtered out. */
	*from = o.nids ? o.ids[0] : o.from >= 0 ? o.from : 0;
	*until = o.nids ? o.ids[o.nids - 1] : o.until;
}

/* Every id named must be a dead letter in the DLQ (which held offsets
 * start to end - 1): exit 65 before anything is done otherwise. */
static void check_ids(int64_t start, int64_t end)
{
	size_t bad = 0;
	char id[ID_MAX];

	for (size_t i = 0; i < o.nids; i++) {
		if (o.id_seen[i])
			continue;
		if (start >= end)
			cli_warn("no dead letter %s: the dead-letter queue of "
				 "%s is empty", dlq_id(o.ids[i], id), o.group);
		else
			cli_warn("no dead letter %s: the dead-letter queue of "
				 "%s holds offsets %" PRId64 " to %" PRId64,
				 dlq_id(o.ids[i], id), o.group, start, end - 1);
		bad++;
	}
	if (bad)
		exit(EX_DATAERR_);
}

/* ---- dead letters kept in memory ---- */

struct dead {
	mq_record r;       /* its pointers lead into mem */
	uint8_t *mem;
};

static struct {
	struct dead *d;
	size_t n, cap;
	int64_t stop;      /* last offset wanted, or -1 */
} dl = { .stop = -1 };

static int keep_record(void *arg, const mq_record *r, mq_err *err)
{
	size_t kl = r->key_len > 0 ? (size_t)r->key_len : 0;
	size_t vl = r->value_len > 0 ? (size_t)r->value_len : 0;
	size_t hl = r->headers_len;
	struct dead *d;
	uint8_t *m;

	(void)arg;
	(void)err;
	if (dl.stop >= 0 && r->offset > dl.stop)
		return 1;
	if (!selected(r))
		return 0;
	m = cli_xrealloc(NULL, kl + vl + hl + 1, 1);
	if (dl.n == dl.cap) {
		dl.cap = dl.cap ? dl.cap * 2 : 64;
		dl.d = cli_xrealloc(dl.d, dl.cap, sizeof *dl.d);
	}
	d = &dl.d[dl.n++];
	d->r = *r;
	d->mem = m;
	if (kl)
		memcpy(m, r->key, kl);
	if (vl)
		memcpy(m + kl, r->value, vl);
	if (hl)
		memcpy(m + kl + vl, r->headers, hl);
	d->r.key = r->key ? m : NULL;
	d->r.value = r->value ? m + kl : NULL;
	d->r.headers = m + kl + vl;
	return 0;
}

/*
 * Read the selected dead letters into dl. Returns what read_part does
 * (1: there is no dead-letter queue); *start and *end get the DLQ's
 * range. Ids that name nothing end the program (65).
 */
static int read_dlq(mq_ep *ep, int64_t *start, int64_t *end)
{
	int64_t from;
	mq_err err;
	int rc;

	*start = *end = 0;
	dlq_bounds(&from, &dl.stop);
	rc = read_part(ep, dlq, 0, from, false, keep_record, NULL, start, end,
		       &err);
	if (rc < 0)
		cli_die(cli_exit_code(&err), "reading %s: %s", dlq, err.msg);
	check_ids(*start, *end);
	return rc;
}

/* ---- output ---- */

/* Aligned columns for people: cells collected, printed at the end. */
static cli_table tbl;

static void tbl_cell(char *s)
{
	if (!tbl.ncols)
		cli_table_init(&tbl, "DLQ-OFFSET", "ORIGINAL-ID", "KEY",
			       "ATTEMPTS", "LAST-EXIT", "FAILED-AT",
			       "REPLAYED", "REASON", (char *)NULL);
	cli_table_take(&tbl, s);
}

/* Print the table, unless it has no rows. */
static void tbl_print(void)
{
	if (tbl.ncols && cli_table_rows(&tbl))
		cli_table_flush(&tbl, true);
	else
		cli_table_free(&tbl);
}

/* One row of a listing: into the table, or a JSON line on stdout. */
static void list_row(const mq_record *r)
{
	const char *as = replayed_as(r->offset);
	char *reason = reason_of(r), *s;
	int64_t failed_at;
	char tbuf[40];

	if (o.json) {
		mq_wbuf w;

		mq_w_init(&w);
		cli_json_record_open(&w, dlq, 0, r);
		mq_w_raw(&w, ",\"replayed\":", 12);
		mq_w_raw(&w, as ? "true" : "false", as ? 4 : 5);
		mq_w_raw(&w, ",\"new_id\":", 10);
		if (as)
			cli_json_str(&w, as, strlen(as));
		else
			mq_w_raw(&w, "null", 4);
		mq_w_raw(&w, ",\"reason\":", 10);
		if (reason)
			cli_json_str(&w, reason, strlen(reason));
		else
			mq_w_raw(&w, "null", 4);
		mq_w_raw(&w, "}\n", 2);
		if (w.oom)
			cli_die(EX_SOFTWARE_, "out of memory");
		fwrite(w.p, 1, w.len, stdout);
		mq_w_free(&w);
		free(reason);
		return;
	}
	tbl_cell(xasprintf("%" PRId64, r->offset));
	s = hdr_str(r, DLQ_H_ID);
	tbl_cell(cell((const uint8_t *)s, s ? (int32_t)strlen(s) : -1));
	free(s);
	tbl_cell(cell(r->key, r->key_len));
	s = hdr_str(r, DLQ_H_ATTEMPTS);
	tbl_cell(cell((const uint8_t *)s, s ? (int32_t)strlen(s) : -1));
	free(s);
	s = hdr_str(r, DLQ_H_EXIT);
	tbl_cell(cell((const uint8_t *)s, s ? (int32_t)strlen(s) : -1));
	free(s);
	if (!hdr_int(r, DLQ_H_FAILED_AT, &failed_at))
		failed_at = r->timestamp;
	tbl_cell(xasprintf("%s", cli_format_time(failed_at, tbuf, sizeof tbuf)));
	tbl_cell(xasprintf("%s", as ? "yes" : "no"));
	tbl_cell(reason ? reason : xasprintf("-"));
}

/* Text for --show: a value on one line, later lines indented, bytes
 * that are not text as base64. */
static void show_value(const uint8_t *p, int32_t len)
{
	if (!p || len < 0) {
		fputs("(null)\n", stdout);
		return;
	}
	if (!cli_is_text(p, (size_t)len)) {
		mq_wbuf w;

		mq_w_init(&w);
		cli_b64_encode(&w, p, (size_t)len);
		printf("(%" PRId32 " bytes, base64) %.*s\n", len, (int)w.len,
		       w.p ? (const char *)w.p : "");
		mq_w_free(&w);
		return;
	}
	for (int32_t i = 0; i < len; i++) {
		unsigned char c = p[i];

		if (c == '\n') {
			if (i + 1 < len)
				fputs("\n    ", stdout);
		} else {
			putchar(c < 0x20 && c != '\t' ? '?' : c);
		}
	}
	putchar('\n');
}

static void show_record(const mq_record *r)
{
	const char *as = replayed_as(r->offset);
	char id[ID_MAX], tbuf[40];
	size_t pos = 0;
	mq_header h;

	if (o.json) {
		list_row(r);
		return;
	}
	printf("id: %s\n", dlq_id(r->offset, id));
	printf("timestamp: %s\n", cli_format_time(r->timestamp, tbuf, sizeof tbuf));
	fputs("key: ", stdout);
	show_value(r->key, r->key_len);
	if (as)
		printf("replayed: yes, as %s\n", as);
	else
		printf("replayed: no\n");
	printf("headers:\n");
	while (mq_header_next(r, &pos, &h) == 1) {
		char *name = cell(h.key, h.key_len);

		printf("  %s: ", name);
		free(name);
		show_value(h.value, h.value_len);
	}
	putchar('\n');
	if (r->value) {
		fwrite(r->value, 1, (size_t)r->value_len, stdout);
		putchar('\n');
	}
}

/* ---- the four things mq-replay does ---- */

static void do_list(mq_ep *ep)
{
	int64_t start, end;

	load_replay_log(ep, false);
	if (read_dlq(ep, &start, &end) == 1 && o.verbose)
		cli_warn("group %s has no dead-letter queue", o.group);
	for (size_t i = 0; i < dl.n; i++)
		if (!o.quiet)
			list_row(&dl.d[i].r);
	if (!o.quiet)
		tbl_print();
}

static void do_show(mq_ep *ep)
{
	int64_t start, end;

	load_replay_log(ep, false);
	read_dlq(ep, &start, &end);
	if (!o.quiet && dl.n == 1)
		show_record(&dl.d[0].r);
}

/*
 * Replay dead letter r (the top of this file). 0 if it was replayed (or
 * would be, with --dry-run), 1 if it failed (said on stderr); a failure
 * of the endpoint or of the replay log ends the program.
 */
static int replay_one(mq_ep *ep, const mq_record *r)
{
	char id[ID_MAX], new_id[ID_MAX];
	char *orig = hdr_str(r, DLQ_H_TOPIC);
	const char *topic = o.to ? o.to : orig;
	int64_t orig_part = -1, tend = 0;
	int32_t nparts, part, nh = 0;
	mq_header *hs = NULL, h;
	mq_produce_result res;
	size_t pos = 0;
	mq_err err;
	int rc = 1;

	dlq_id(r->offset, id);
	if (!topic) {
		cli_warn("%s: not replayed: it has no %s header to say where "
			 "it came from; use --to", id, DLQ_H_TOPIC);
		goto out;
	}
	if (mq_topic_check(topic, false, &err) < 0) {
		cli_warn("%s: not replayed: %s", id, err.msg);
		goto out;
	}
	if (topic_parts(ep, topic, false, &nparts, &err) < 0)
		goto failed;
	hdr_int(r, DLQ_H_PARTITION, &orig_part);
	if (nparts == 0)
		part = -1;
	else if (orig && !strcmp(topic, orig) && orig_part >= 0 &&
		 orig_part < nparts)
		part = (int32_t)orig_part;
	else if (r->key)
		part = mq_partition_for_key(r->key, (size_t)r->key_len, nparts);
	else
		part = 0;
	if (o.dry_run) {
		if (o.quiet) {
			/* the exit status tells */
		} else if (o.json) {
			printf("{\"dlq_id\":\"%s\",\"topic\":\"%s\","
			       "\"partition\":%" PRId32 ",\"dry_run\":true}\n",
			       id, topic, part);
		} else if (part < 0) {
			printf("%s -> %s (a new topic; dry run)\n", id, topic);
		} else {
			printf("%s -> %s/%" PRId32 " (dry run)\n", id, topic,
			       part);
		}
		rc = 0;
		goto out;
	}
	if (part >= 0 &&
	    mq_ep_list_offset(ep, topic, part, -1, &tend, &err) < 0) {
		err_context(&err, "%s/%" PRId32, topic, part);
		goto failed;
	}
	/* 1: the intent. */
	if (write_intent(ep, r->offset, topic, part, tend, &err) < 0)
		cli_die(cli_exit_code(&err), "%s: not replayed: %s", id,
			err.msg);
	/* 2: the resend, with the message's own headers and where it came
	 * from. */
	hs = cli_xrealloc(NULL, (size_t)r->header_count + 1, sizeof *hs);
	while (mq_header_next(r, &pos, &h) == 1 && nh < r->header_count) {
		size_t pl = strlen(DLQ_H_PREFIX), fl = strlen(REPLAY_H_FROM);

		if (((size_t)h.key_len >= pl &&
		     memcmp(h.key, DLQ_H_PREFIX, pl) == 0) ||
		    ((size_t)h.key_len == fl &&
		     memcmp(h.key, REPLAY_H_FROM, fl) == 0))
			continue;
		hs[nh++] = h;
	}
	hs[nh++] = text_hdr(REPLAY_H_FROM, id);
	if (send_sync(ep, topic, part, r->key, r->key_len, r->value,
		      r->value_len, hs, nh, &res, &err) < 0) {
		err_context(&err, "sending to %s", topic);
		goto failed;
	}
	snprintf(new_id, sizeof new_id, "%s/%" PRId32 "/%" PRId64, topic,
		 res.partition, res.base_offset);
	if (part < 0)
		topic_parts(ep, topic, true, &nparts, &err);
	if (!o.quiet) {
		if (o.json)
			printf("{\"dlq_id\":\"%s\",\"id\":\"%s\",\"topic\":"
			       "\"%s\",\"partition\":%" PRId32 ",\"offset\":"
			       "%" PRId64 "}\n", id, new_id, topic,
			       res.partition, res.base_offset);
		else
			printf("%s -> %s\n", id, new_id);
		fflush(stdout);
	}
	/* 3: done. */
	if (write_done(ep, r->offset, new_id, &err) < 0)
		cli_die(cli_exit_code(&err), "%s was replayed as %s but could "
			"not be recorded: %s; the next run will record it",
			id, new_id, err.msg);
	{
		struct rstate *s = rt_get(r->offset, true);

		free(s->new_id);
		s->new_id = cli_xstrndup(new_id, strlen(new_id));
	}
	rc = 0;
	goto out;
failed:
	if (fatal(&err))
		cli_die(cli_exit_code(&err), "%s: not replayed: %s", id,
			err.msg);
	cli_warn("%s: not replayed: %s", id, err.msg);
out:
	free(hs);
	free(orig);
	return rc;
}

static int do_replay(mq_ep *ep)
{
	size_t done = 0, failed = 0, skipped = 0;
	int64_t start, end;
	mq_err err;
	char id[ID_MAX];

	if (!o.dry_run && producer_init(ep, &err) < 0)
		cli_die(cli_exit_code(&err), "%s", err.msg);
	load_replay_log(ep, !o.dry_run);
	read_dlq(ep, &start, &end);
	for (size_t i = 0; i < dl.n; i++) {
		const mq_record *r = &dl.d[i].r;
		const char *as = replayed_as(r->offset);

		if (as && !o.again) {
			skipped++;
			if (o.nids && !o.quiet)
				cli_warn("%s was replayed already, as %s "
					 "(--again replays it again)",
					 dlq_id(r->offset, id), as);
			continue;
		}
		if (replay_one(ep, r) == 0)
			done++;
		else
			failed++;
	}
	fflush(stdout);
	if (!o.quiet) {
		if (dl.n == 0)
			cli_warn("no dead letters%s for group %s",
				 o.nids || o.from >= 0 || o.until >= 0 ||
				 o.has_since || o.has_before || o.key
				 ? " selected" : "", o.group);
		else if (done + failed == 0)
			cli_warn("nothing to replay: %zu dead letter%s "
				 "replayed already (--again replays %s "
				 "again)", skipped, skipped == 1 ? " was" :
				 "s were", skipped == 1 ? "it" : "them");
		else if (failed)
			cli_warn("%zu of %zu dead letters %s; %zu failed",
				 done, done + failed, o.dry_run
				 ? "would be replayed" : "replayed", failed);
		else if (o.verbose || o.dry_run)
			cli_warn("%zu dead letter%s %s", done,
				 done == 1 ? "" : "s", o.dry_run ?
				 "would be replayed (dry run: nothing was "
				 "sent)" : "replayed");
	}
	return failed ? EX_TEMPFAIL_ : EX_OK_;
}

static int do_purge(mq_ep *ep)
{
	int64_t start, end, cut, new_start;
	size_t never = 0;
	char a[ID_MAX], b[ID_MAX];
	mq_err err;

	if (mq_ep_list_offset(ep, dlq, 0, -2, &start, &err) < 0 ||
	    mq_ep_list_offset(ep, dlq, 0, -1, &end, &err) < 0) {
		if (err.code == MQ_E_NO_TOPIC) {
			if (!o.quiet)
				cli_warn("nothing to purge: group %s has no "
					 "dead letters", o.group);
			return EX_OK_;
		}
		cli_die(cli_exit_code(&err), "%s: %s", dlq, err.msg);
	}
	cut = end;
	if (o.has_before) {
		int64_t t = start;

		if (o.before > 0 &&
		    mq_ep_list_offset(ep, dlq, 0, o.before, &t, &err) < 0)
			cli_die(cli_exit_code(&err), "%s: %s", dlq, err.msg);
		if (t < cut)
			cut = t;
	}
	if (o.until >= 0 && o.until < cut - 1)
		cut = o.until + 1;
	if (cut <= start) {
		if (!o.quiet)
			cli_warn("nothing to purge: the dead-letter queue of %s "
				 "%s", o.group, start >= end ? "is empty" :
				 "has nothing that old");
		return EX_OK_;
	}
	load_replay_log(ep, false);
	o.from = start;
	o.until = cut - 1;
	o.has_before = false;
	read_dlq(ep, &start, &end);
	for (size_t i = 0; i < dl.n; i++) {
		if (!replayed_as(dl.d[i].r.offset))
			never++;
		if (!o.quiet)
			list_row(&dl.d[i].r);
	}
	if (!o.quiet)
		tbl_print();
	fflush(stdout);
	dlq_id(start, a);
	dlq_id(cut - 1, b);
	if (!o.execute) {
		if (!o.quiet)
			cli_warn("dry run: would drop %" PRId64 " dead letter%s "
				 "(%s to %s), %zu never replayed; nothing was "
				 "changed (add --execute)", cut - start,
				 cut - start == 1 ? "" : "s", a, b, never);
		return EX_OK_;
	}
	if (mq_ep_delete_records(ep, dlq, 0, cut, &new_start, &err) < 0)
		cli_die(cli_exit_code(&err), "purging %s: %s", dlq, err.msg);
	if (!o.quiet)
		cli_warn("dropped %" PRId64 " dead letter%s (%s to %s), %zu "
			 "never replayed; %s now starts at offset %" PRId64,
			 cut - start, cut - start == 1 ? "" : "s", a, b, never,
			 dlq, new_start);
	return EX_OK_;
}

/* ---- command line ---- */

static const char usage_text[] =
"usage: mq-replay [-Jnqv] [-b addr | -d dir] -g group [--to topic] [--again]\n"
"                 [selection]\n"
"       mq-replay [-Jqv] [-b addr | -d dir] -g group -l [selection]\n"
"       mq-replay [-Jqv] [-b addr | -d dir] -g group --show id\n"
"       mq-replay [-Jqv] [-b addr | -d dir] -g group --purge [--before time]\n"
"                 [--until offset] [--execute]\n"
"       mq-replay -h | --help | -V | --version\n"
"where selection is any of [--from offset] [--until offset] [--since time]\n"
"                 [--before time] [-k key] [id ... | -]\n";

static const char help_text[] =
"\n"
"Inspect and replay the dead letters of a consumer group: the messages\n"
"mq-recv put into the group's dead-letter queue (%DLQ%GROUP) because its\n"
"command kept failing. Without -l, --show or --purge: send the selected\n"
"dead letters that were not replayed yet back to their original topic\n"
"(or to --to TOPIC), each at most once, and print DLQ-ID -> NEW-ID.\n"
"\n"
"  -g, --group GROUP        the consumer group (required)\n"
"  -l, --list               one row per dead letter: DLQ-OFFSET ORIGINAL-ID\n"
"                           KEY ATTEMPTS LAST-EXIT FAILED-AT REPLAYED REASON\n"
"      --show ID            one dead letter in full: headers, then value\n"
"      --to TOPIC           replay to TOPIC instead of the original topic\n"
"  -n, --dry-run            print what would be replayed; change nothing\n"
"      --again              also replay dead letters replayed before\n"
"      --purge              drop old dead letters (with --before or\n"
"                           --until); a dry run unless --execute\n"
"      --execute            really purge\n"
"Selection (combined with AND):\n"
"  ID ... | -               ids (%DLQ%GROUP/0/OFFSET, or OFFSET); - reads\n"
"                           them from stdin, one per line\n"
"      --from OFFSET        from this DLQ offset on\n"
"      --until OFFSET       up to this DLQ offset (included)\n"
"      --since TIME         failed at or after TIME\n"
"      --before TIME        failed before TIME\n"
"  -k, --key KEY            with this key\n"
"TIME: 2026-11-21T13:00:00Z, 2026-11-21T15:00+02:00, 2026-11-21 (local\n"
"time without a zone), or -DURATION before now: -90s, -30m, -2h, -7d.\n"
"\n"
"  -b, --broker ADDR        broker host:port or unix:/path ($MQ_BROKER)\n"
"  -d, --dir DIR            work on a data directory ($MQ_DIR)\n"
"  -J, --json               JSON lines\n"
"  -q, --quiet              print only errors; the exit status tells\n"
"  -v, --verbose            say more on stderr\n"
"  -h, --help               print this help\n"
"  -V, --version            print the version\n"
"\n"
"Exit status: 0 all done, 64 usage, 65 bad ids, 69 broker unreachable,\n"
"74 I/O error, 75 some dead letters were not replayed.\n";

enum {
	O_SHOW = 256, O_TO, O_FROM, O_UNTIL, O_SINCE, O_BEFORE, O_AGAIN,
	O_PURGE, O_EXECUTE,
};

static const struct option longopts[] = {
	{ "broker", required_argument, NULL, 'b' },
	{ "dir", required_argument, NULL, 'd' },
	{ "group", required_argument, NULL, 'g' },
	{ "list", no_argument, NULL, 'l' },
	{ "show", required_argument, NULL, O_SHOW },
	{ "to", required_argument, NULL, O_TO },
	{ "dry-run", no_argument, NULL, 'n' },
	{ "again", no_argument, NULL, O_AGAIN },
	{ "purge", no_argument, NULL, O_PURGE },
	{ "execute", no_argument, NULL, O_EXECUTE },
	{ "from", required_argument, NULL, O_FROM },
	{ "until", required_argument, NULL, O_UNTIL },
	{ "since", required_argument, NULL, O_SINCE },
	{ "before", required_argument, NULL, O_BEFORE },
	{ "key", required_argument, NULL, 'k' },
	{ "json", no_argument, NULL, 'J' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static void set_mode(enum mode m, const char *opt)
{
	static const char *given;

	if (o.mode != M_REPLAY && o.mode != m)
		cli_usage_error("%s cannot be used with %s", opt, given);
	o.mode = m;
	given = opt;
}

static int64_t time_opt(const char *opt, const char *s)
{
	char why[200];
	int64_t ms;

	if (cli_parse_time(s, true, &ms, why, sizeof why) < 0)
		cli_usage_error("%s %s: %s", opt, s, why);
	return ms;
}

/* Options given that the mode chosen has no use for: usage errors. */
static void check_combination(int argc, bool had_to)
{
	const char *mode = o.mode == M_LIST ? "--list" :
			   o.mode == M_SHOW ? "--show" : "--purge";

	if (o.mode == M_REPLAY) {
		if (o.execute)
			cli_usage_error("--execute goes with --purge (a replay "
					"is done unless --dry-run)");
		return;
	}
	if (had_to)
		cli_usage_error("--to cannot be used with %s", mode);
	if (o.again)
		cli_usage_error("--again cannot be used with %s", mode);
	if (o.execute && o.mode != M_PURGE)
		cli_usage_error("--execute goes with --purge");
	if (o.dry_run && o.mode != M_PURGE)
		cli_usage_error("--dry-run cannot be used with %s", mode);
	if (o.dry_run && o.execute)
		cli_usage_error("--dry-run cannot be used with --execute");
	if (o.mode == M_LIST)
		return;
	if (argc > 0 || o.stdin_ids)
		cli_usage_error("%s takes no ids as arguments", mode);
	if (o.key || o.has_since || o.from >= 0)
		cli_usage_error("%s cannot be used with %s", mode,
				o.key ? "--key" : o.has_since ? "--since" :
				"--from");
	if (o.mode == M_SHOW && (o.until >= 0 || o.has_before))
		cli_usage_error("--show cannot be used with %s",
				o.until >= 0 ? "--until" : "--before");
	if (o.mode == M_PURGE && o.until < 0 && !o.has_before)
		cli_usage_error("--purge needs --before TIME or --until OFFSET");
}

int main(int argc, char **argv)
{
	mq_ep_opts eo = { 0 };
	mq_err err;
	mq_ep *ep;
	int c, rc = EX_OK_;
	bool had_to = false;

	cli_init(argv[0]);
	while ((c = getopt_long(argc, argv, "b:d:g:lnk:JqvhV", longopts,
				NULL)) != -1) {
		switch (c) {
		case 'b': o.broker = optarg; break;
		case 'd': o.dir = optarg; break;
		case 'g': o.group = optarg; break;
		case 'l': set_mode(M_LIST, "--list"); break;
		case O_SHOW:
			set_mode(M_SHOW, "--show");
			o.show = optarg;
			break;
		case O_PURGE: set_mode(M_PURGE, "--purge"); break;
		case O_TO:
			if (mq_topic_check(optarg, false, &err) < 0)
				cli_usage_error("--to: %s", err.msg);
			o.to = optarg;
			had_to = true;
			break;
		case 'n': o.dry_run = true; break;
		case O_AGAIN: o.again = true; break;
		case O_EXECUTE: o.execute = true; break;
		case O_FROM: o.from = cli_int("--from", optarg, 0, INT64_MAX); break;
		case O_UNTIL: o.until = cli_int("--until", optarg, 0, INT64_MAX); break;
		case O_SINCE:
			o.since = time_opt("--since", optarg);
			o.has_since = true;
			break;
		case O_BEFORE:
			o.before = time_opt("--before", optarg);
			o.has_before = true;
			break;
		case 'k': o.key = optarg; break;
		case 'J': o.json = true; break;
		case 'q': o.quiet = true; o.verbose = false; break;
		case 'v': o.verbose = true; o.quiet = false; break;
		case 'h':
			fputs(usage_text, stdout);
			fputs(help_text, stdout);
			return EX_OK_;
		case 'V':
			printf("mq-replay %s\n", MQ_VERSION);
			return EX_OK_;
		default:
			fprintf(stderr, "Try '%s --help'.\n", cli_progname());
			return EX_USAGE_;
		}
	}
	argc -= optind;
	argv += optind;
	if (!o.group)
		cli_usage_error("-g GROUP is required: whose dead letters?");
	if (mq_dlq_topic(o.group, dlq, sizeof dlq, &err) < 0 ||
	    mq_rpl_topic(o.group, rpl, sizeof rpl, &err) < 0)
		cli_usage_error("-g: %s", err.msg);
	for (int i = 0; i < argc; i++)
		if (!strcmp(argv[i], "-"))
			o.stdin_ids = true;
	if (o.mode == M_SHOW) {
		char why[200];
		int64_t x;

		if (parse_dlq_id(o.show, strlen(o.show), true, &x, why,
				 sizeof why) < 0)
			cli_usage_error("--show %s: %s", o.show, why);
		add_id(x);
	}
	check_combination(argc, had_to);
	if (o.from >= 0 && o.until >= 0 && o.from > o.until)
		cli_usage_error("--from %" PRId64 " is after --until %" PRId64,
				o.from, o.until);
	if (o.has_since && o.has_before && o.since >= o.before)
		cli_usage_error("--since is not before --before: nothing could "
				"be selected");
	for (int i = 0; i < argc; i++) {
		char why[200];
		int64_t x;

		if (!strcmp(argv[i], "-"))
			continue;
		if (parse_dlq_id(argv[i], strlen(argv[i]), true, &x, why,
				 sizeof why) < 0)
			cli_usage_error("%s: %s", argv[i], why);
		add_id(x);
	}
	if (o.stdin_ids)
		read_stdin_ids();
	if (o.stdin_ids && o.nids == 0) {
		if (!o.quiet)
			cli_warn("no ids on stdin: nothing to do");
		return EX_OK_;
	}
	ids_done();

	/* Looking changes nothing: on a data directory, no lock either. */
	eo.read_only = o.mode == M_LIST || o.mode == M_SHOW ||
		       (o.mode == M_REPLAY && o.dry_run) ||
		       (o.mode == M_PURGE && !o.execute);
	ep = cli_open_endpoint(o.broker, o.dir, &eo);
	switch (o.mode) {
	case M_LIST: do_list(ep); break;
	case M_SHOW: do_show(ep); break;
	case M_PURGE: rc = do_purge(ep); break;
	case M_REPLAY: rc = do_replay(ep); break;
	}
	if (fflush(stdout) != 0 || ferror(stdout))
		cli_die(EX_IOERR_, "writing stdout: %s", strerror(errno));
	mq_ep_close(ep);
	return rc;
}
