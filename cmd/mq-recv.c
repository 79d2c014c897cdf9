/*
 * mq-recv - consume messages: print them for a pipeline, or run a command
 * per message (mq-recv(1)); alone, or as a member of a consumer group
 * whose progress is committed with an explicit delivery guarantee.
 *
 * Map of this file:
 *   options     the command line, checked before anything is opened
 *   partitions  struct part: where each partition is read, what is done
 *   output      the stdout buffer, and what has really been written
 *   commands    --exec: jobs, retries with backoff, the dead-letter queue
 *   group       join, heartbeat, commit, rebalance
 *   loop        fetches, events, timers, stopping
 *
 * Delivery bookkeeping, per partition: `pos` is the next offset to take
 * from fetches; `done` the offset below which every message has been
 * handed on for good (written to stdout, or its command succeeded or it
 * went to the dead-letter queue); `handed` the offset below which
 * messages have been given out at all. --commit after commits `done`,
 * --commit before commits `handed` before giving a message out, and
 * --commit manual commits nothing.
 */
#include "cli/cli.h"
#include "cli/format.h"
#include "cli/msg.h"
#include "cli/timefmt.h"
#include "batch.h"
#include "ep.h"
#include "name.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_TOPICS 256
#define FETCH_BYTES (1u << 20)     /* max_bytes of a fetch */
#define FETCH_WAIT_MS 500          /* long-poll wait of a following fetch */
#define OUT_FLUSH (128u * 1024)    /* output waiting: fetch no more */
#define TICK_MS 200                /* longest wait before looking at signals */
#define CHILD_TICK_MS 5            /* the same while commands run */
#define TAIL_MAX 2048              /* stderr kept for the dead-letter queue */
#define EVENTS_PER_ROUND 16        /* then timers and commands again */
#define KILL_WAIT_MS 2000          /* SIGTERM to SIGKILL for commands */
#define DLQ_TOKEN (1ull << 63)

static const char usage_text[] =
"usage: mq-recv [-0eJqv] [-b addr | -d dir] -t topic [-t topic]... [-g group]\n"
"               [-p partition] [-o offset] [-n count] [-f format] [-K delim]\n"
"               [--from-new beginning|end] [--commit after|before|manual]\n"
"               [--commit-interval duration] [--session-timeout duration]\n"
"               [--exec command] [--retries n] [--backoff initial[:max]]\n"
"               [--concurrency n] [--grace duration]\n"
"       mq-recv -h | --help | -V | --version\n"
"\n"
"  -b, --broker ADDR        broker host:port or unix:/path ($MQ_BROKER)\n"
"  -d, --dir DIR            data directory, no broker ($MQ_DIR)\n"
"  -t, --topic TOPIC        topic to read; repeatable\n"
"  -g, --group GROUP        consume as a member of GROUP (commits offsets)\n"
"  -p, --partition N        without -g: read partition N only (default all)\n"
"  -o, --offset OFFSET      without -g: beginning (default), end, N, -N\n"
"                           (N from the end) or @TIME\n"
"  -n, --count N            stop after N messages\n"
"  -e, --exit-at-end        stop once every partition was read to its end\n"
"  -0, --null               end each value with NUL instead of newline\n"
"  -K, --key-delimiter D    print the key, D, then the value\n"
"  -f, --format FMT         print with FMT: %t %p %o %i %T %k %K %v %V %h\n"
"                           %h{NAME} %%, escapes \\n \\t \\r \\0 \\\\\n"
"  -J, --json               one JSON object per message\n"
"      --from-new WHERE     a new group starts at beginning or end (default)\n"
"      --commit MODE        after (default, at-least-once), before\n"
"                           (at-most-once) or manual (mq-offset commit)\n"
"      --commit-interval D  commit every D (default 5s; 0 = at once)\n"
"      --session-timeout D  group session timeout (default 10s)\n"
"      --exec CMD           run CMD with /bin/sh -c per message, value on stdin\n"
"      --retries N          retries of a failing command (default 3)\n"
"      --backoff I[:M]      first retry after I, doubling up to M (1s:30s)\n"
"      --concurrency N      run up to N commands at once (default 1)\n"
"      --grace D            on SIGTERM, wait D for running commands (30s)\n"
"  -q, --quiet              print errors only\n"
"  -v, --verbose            also report group changes and commits\n"
"  -h, --help               print this help\n"
"  -V, --version            print the version\n";

/* ---------------------------------------------------------------- */
/* options                                                           */
/* ---------------------------------------------------------------- */

enum start_kind { S_BEGINNING, S_END, S_ABSOLUTE, S_FROM_END, S_TIME };
enum out_mode { OUT_LINES, OUT_FORMAT, OUT_JSON };
enum commit_mode { C_AFTER, C_BEFORE, C_MANUAL };

static struct opts {
	const char *broker, *dir;
	const char *topics[MAX_TOPICS];
	size_t ntopics;
	const char *group;
	int32_t partition;          /* -1: all */
	enum start_kind start;
	int64_t start_arg;
	bool start_given;
	int64_t count;              /* -1: no limit */
	bool exit_at_end;
	enum out_mode out;
	char terminator;
	const char *key_delim;
	size_t key_delim_len;
	cli_format *fmt;
	bool from_beginning;
	bool from_new_given;
	enum commit_mode commit;
	bool commit_given;
	int64_t commit_interval_ms;
	bool commit_interval_given;
	int64_t session_ms;
	bool session_given;
	const char *exec;
	int retries;
	int64_t backoff_ms, backoff_max_ms;
	int concurrency;
	int64_t grace_ms;
	bool exec_opts_given;
	int verbosity;              /* 0 quiet, 1 normal, 2 verbose */
} o = {
	.partition = -1,
	.count = -1,
	.terminator = '\n',
	.commit_interval_ms = 5000,
	.session_ms = 10000,
	.retries = 3,
	.backoff_ms = 1000,
	.backoff_max_ms = 30000,
	.concurrency = 1,
	.grace_ms = 30000,
	.verbosity = 1,
};

enum {
	O_FROM_NEW = 256, O_COMMIT, O_COMMIT_INTERVAL, O_SESSION, O_EXEC,
	O_RETRIES, O_BACKOFF, O_CONCURRENCY, O_GRACE,
};

static const struct option longopts[] = {
	{ "broker", required_argument, NULL, 'b' },
	{ "dir", required_argument, NULL, 'd' },
	{ "topic", required_argument, NULL, 't' },
	{ "group", required_argument, NULL, 'g' },
	{ "partition", required_argument, NULL, 'p' },
	{ "offset", required_argument, NULL, 'o' },
	{ "count", required_argument, NULL, 'n' },
	{ "exit-at-end", no_argument, NULL, 'e' },
	{ "null", no_argument, NULL, '0' },
	{ "key-delimiter", required_argument, NULL, 'K' },
	{ "format", required_argument, NULL, 'f' },
	{ "json", no_argument, NULL, 'J' },
	{ "from-new", required_argument, NULL, O_FROM_NEW },
	{ "commit", required_argument, NULL, O_COMMIT },
	{ "commit-interval", required_argument, NULL, O_COMMIT_INTERVAL },
	{ "session-timeout", required_argument, NULL, O_SESSION },
	{ "exec", required_argument, NULL, O_EXEC },
	{ "retries", required_argument, NULL, O_RETRIES },
	{ "backoff", required_argument, NULL, O_BACKOFF },
	{ "concurrency", required_argument, NULL, O_CONCURRENCY },
	{ "grace", required_argument, NULL, O_GRACE },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static void parse_offset(const char *s)
{
	if (!strcmp(s, "beginning")) {
		o.start = S_BEGINNING;
	} else if (!strcmp(s, "end")) {
		o.start = S_END;
	} else if (s[0] == '@') {
		char why[160];
		o.start = S_TIME;
		if (s[1] >= '0' && s[1] <= '9' &&
		    strspn(s + 1, "0123456789") == strlen(s + 1))
			o.start_arg = cli_int("-o", s + 1, 0, INT64_MAX);
		else if (cli_parse_time(s + 1, true, &o.start_arg, why,
					sizeof why) < 0)
			cli_usage_error("-o %s: %s (use @MS since the epoch, "
					"@YYYY-MM-DDTHH:MM:SS[Z] or @-DURATION)",
					s, why);
		if (o.start_arg < 0)
			o.start_arg = 0;
	} else if (s[0] == '-') {
		o.start = S_FROM_END;
		o.start_arg = cli_int("-o", s + 1, 0, INT64_MAX);
	} else if (s[0] >= '0' && s[0] <= '9') {
		o.start = S_ABSOLUTE;
		o.start_arg = cli_int("-o", s, 0, INT64_MAX);
	} else {
		cli_usage_error("-o %s: use beginning, end, N, -N or @TIME", s);
	}
	o.start_given = true;
}

static void parse_backoff(const char *s)
{
	char first[64];
	const char *colon = strchr(s, ':');

	if (colon) {
		if ((size_t)(colon - s) >= sizeof first)
			cli_usage_error("--backoff %s: not a duration", s);
		memcpy(first, s, (size_t)(colon - s));
		first[colon - s] = '\0';
		o.backoff_ms = cli_duration_ms("--backoff", first, 0, 86400000);
		o.backoff_max_ms = cli_duration_ms("--backoff", colon + 1, 0,
						   86400000);
		if (o.backoff_max_ms < o.backoff_ms)
			cli_usage_error("--backoff %s: the maximum is below the "
					"first delay", s);
	} else {
		o.backoff_ms = cli_duration_ms("--backoff", s, 0, 86400000);
		if (o.backoff_max_ms < o.backoff_ms)
			o.backoff_max_ms = o.backoff_ms;
	}
}

static void parse_args(int argc, char **argv)
{
	bool json = false, nul = false;
	const char *format = NULL;
	mq_err err;
	int ch;

	while ((ch = getopt_long(argc, argv, "b:d:t:g:p:o:n:e0K:f:JqvhV",
				 longopts, NULL)) != -1) {
		switch (ch) {
		case 'b':
			o.broker = optarg;
			break;
		case 'd':
			o.dir = optarg;
			break;
		case 't':
			if (o.ntopics == MAX_TOPICS)
				cli_usage_error("at most %d topics", MAX_TOPICS);
			if (mq_topic_check(optarg, true, &err) < 0)
				cli_usage_error("-t: %s", err.msg);
			o.topics[o.ntopics++] = optarg;
			break;
		case 'g':
			if (mq_name_check(optarg, &err) < 0)
				cli_usage_error("-g: %s", err.msg);
			o.group = optarg;
			break;
		case 'p':
			o.partition = (int32_t)cli_int("-p", optarg, 0, INT32_MAX);
			break;
		case 'o':
			parse_offset(optarg);
			break;
		case 'n':
			o.count = cli_int("-n", optarg, 0, INT64_MAX);
			break;
		case 'e':
			o.exit_at_end = true;
			break;
		case '0':
			nul = true;
			break;
		case 'K':
			o.key_delim = optarg;
			o.key_delim_len = strlen(optarg);
			break;
		case 'f':
			format = optarg;
			break;
		case 'J':
			json = true;
			break;
		case O_FROM_NEW:
			if (!strcmp(optarg, "beginning"))
				o.from_beginning = true;
			else if (!strcmp(optarg, "end"))
				o.from_beginning = false;
			else
				cli_usage_error("--from-new %s: use beginning or end",
						optarg);
			o.from_new_given = true;
			break;
		case O_COMMIT:
			if (!strcmp(optarg, "after"))
				o.commit = C_AFTER;
			else if (!strcmp(optarg, "before"))
				o.commit = C_BEFORE;
			else if (!strcmp(optarg, "manual"))
				o.commit = C_MANUAL;
			else
				cli_usage_error("--commit %s: use after, before or "
						"manual", optarg);
			o.commit_given = true;
			break;
		case O_COMMIT_INTERVAL:
			o.commit_interval_ms = cli_duration_ms("--commit-interval",
							       optarg, 0, 86400000);
			o.commit_interval_given = true;
			break;
		case O_SESSION:
			o.session_ms = cli_duration_ms("--session-timeout", optarg,
						       1000, 300000);
			o.session_given = true;
			break;
		case O_EXEC:
			if (!*optarg)
				cli_usage_error("--exec: empty command");
			o.exec = optarg;
			break;
		case O_RETRIES:
			o.retries = (int)cli_int("--retries", optarg, 0, 1000);
			o.exec_opts_given = true;
			break;
		case O_BACKOFF:
			parse_backoff(optarg);
			o.exec_opts_given = true;
			break;
		case O_CONCURRENCY:
			o.concurrency = (int)cli_int("--concurrency", optarg, 1,
						     1024);
			o.exec_opts_given = true;
			break;
		case O_GRACE:
			o.grace_ms = cli_duration_ms("--grace", optarg, 0,
						     86400000);
			o.exec_opts_given = true;
			break;
		case 'q':
			o.verbosity = 0;
			break;
		case 'v':
			o.verbosity = 2;
			break;
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		case 'V':
			printf("mq-recv %s\n", MQ_VERSION);
			exit(0);
		default:
			fprintf(stderr, "Try 'mq-recv --help'.\n");
			exit(EX_USAGE_);
		}
	}
	if (optind < argc)
		cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (o.ntopics == 0)
		cli_usage_error("no topic: give one or more -t TOPIC");
	for (size_t i = 0; i < o.ntopics; i++)
		for (size_t k = 0; k < i; k++)
			if (!strcmp(o.topics[i], o.topics[k]))
				cli_usage_error("-t %s given twice", o.topics[i]);

	/* Contradictions, refused explicitly. */
	if (json + nul + !!format > 1)
		cli_usage_error("choose one of -0, -f and -J");
	if (o.key_delim && (json || format))
		cli_usage_error("-K cannot be used with %s (print the key "
				"with %s)", json ? "-J" : "-f",
				json ? "the JSON key field" : "%k");
	if (o.exec && (json || nul || format || o.key_delim))
		cli_usage_error("--exec cannot be used with -0, -f, -J or -K: "
				"the command gets the value on its stdin");
	if (o.exec_opts_given && !o.exec)
		cli_usage_error("--retries, --backoff, --concurrency and "
				"--grace need --exec");
	if (o.group) {
		if (o.partition >= 0)
			cli_usage_error("-p cannot be used with -g: the group "
					"assigns partitions");
		if (o.start_given)
			cli_usage_error("-o cannot be used with -g: a group "
					"resumes from its committed offsets (see "
					"--from-new and mq-offset)");
	} else {
		if (o.from_new_given || o.commit_given ||
		    o.commit_interval_given || o.session_given)
			cli_usage_error("--from-new, --commit, --commit-interval "
					"and --session-timeout need -g");
	}
	if (format && cli_format_compile(format, &o.fmt, &err) < 0)
		cli_usage_error("-f: %s", err.msg);
	o.out = json ? OUT_JSON : format ? OUT_FORMAT : OUT_LINES;
	if (nul)
		o.terminator = '\0';
}

/* ---------------------------------------------------------------- */
/* diagnostics                                                       */
/* ---------------------------------------------------------------- */

#define warn(...) do { if (o.verbosity >= 1) cli_warn(__VA_ARGS__); } while (0)
#define note(...) do { if (o.verbosity >= 2) cli_warn(__VA_ARGS__); } while (0)

/* ---------------------------------------------------------------- */
/* partitions                                                        */
/* ---------------------------------------------------------------- */

enum msg_state {
	M_QUEUED,     /* fetched, not given to a command yet */
	M_RUNNING,    /* its command runs */
	M_WAIT,       /* failed; waits for its retry (keeps its slot) */
	M_DLQ,        /* being written to the dead-letter queue */
	M_DONE,       /* succeeded or dead-lettered */
	M_LEFT,       /* given up while stopping: stays uncommitted */
};

struct part;

/* A message held for --exec: a copy of the record, and its fate. */
struct msg {
	struct msg *next;
	struct msg *dlq_next;       /* in the list of dead-letter sends */
	struct part *p;             /* NULL once its partition was revoked */
	mq_record rec;              /* pointers into the same allocation */
	enum msg_state state;
	int attempts;
	int64_t retry_at;
	int status;                 /* wait status of the last run, or -1 */
	char spawn_error[128];      /* why the command could not start */
	uint64_t token;             /* its dead-letter produce */
};

struct part {
	char *topic;
	int32_t id;
	bool active;                /* read now (assigned, for a group) */
	uint32_t epoch;             /* bumped on each assignment */
	bool fetching;              /* a fetch of this epoch is out */
	uint32_t fetch_bytes;
	int64_t pos;                /* next offset to take from fetches */
	int64_t done;               /* everything below is finished */
	int64_t handed;             /* everything below was given out */
	int64_t committed;          /* last commit (-1: none known) */
	bool at_end;                /* last fetch found nothing beyond pos */
	struct msg *head, *tail;    /* --exec: fetched, not yet finished */
	struct msg *next_queued;    /* first M_QUEUED in that list */
	size_t nqueued;             /* from next_queued to the end */
	size_t nflight;             /* before next_queued: given out */
};

static struct part **parts;
static size_t nparts;
static mq_ep *ep;

static struct part *part_find(const char *topic, int32_t id, size_t *index)
{
	for (size_t i = 0; i < nparts; i++)
		if (parts[i]->id == id && !strcmp(parts[i]->topic, topic)) {
			if (index)
				*index = i;
			return parts[i];
		}
	return NULL;
}

static struct part *part_get(const char *topic, int32_t id)
{
	struct part *p = part_find(topic, id, NULL), **np;

	if (p)
		return p;
	np = realloc(parts, (nparts + 1) * sizeof *np);
	p = calloc(1, sizeof *p);
	if (!np || !p || !(p->topic = strdup(topic)))
		cli_die(EX_SOFTWARE_, "out of memory");
	parts = np;
	p->id = id;
	p->committed = -1;
	parts[nparts++] = p;
	return p;
}

/* Start reading p at offset from a clean slate. */
static void part_start(struct part *p, int64_t offset, int64_t committed)
{
	p->active = true;
	p->epoch++;
	p->fetching = false;
	p->fetch_bytes = FETCH_BYTES;
	p->pos = p->done = p->handed = offset;
	p->committed = committed;
	p->at_end = false;
}

static void msg_free(struct msg *m)
{
	free(m);
}

/* m will not be finished by us: it stays uncommitted for whoever reads
 * its partition next (or is forgotten if the partition was revoked). */
static void abandon(struct msg *m)
{
	if (!m->p)
		msg_free(m);
	else
		m->state = M_LEFT;
}

/* Stop reading p: forget what was not given out; commands still running
 * for it finish, but their outcome is no longer ours to commit. */
static void part_revoke(struct part *p)
{
	struct msg *m, *next;

	for (m = p->head; m; m = next) {
		next = m->next;
		m->next = NULL;
		if (m->state == M_RUNNING || m->state == M_DLQ ||
		    m->state == M_WAIT)
			m->p = NULL;    /* its slot or its produce frees it */
		else
			msg_free(m);
	}
	p->head = p->tail = p->next_queued = NULL;
	p->nqueued = p->nflight = 0;
	p->active = false;
	p->epoch++;
	p->fetching = false;
}

/* Finished messages at the head of the list leave it; done follows. */
static void part_advance(struct part *p)
{
	while (p->head && p->head->state == M_DONE) {
		struct msg *m = p->head;
		p->head = m->next;
		if (!p->head)
			p->tail = NULL;
		p->nflight--;
		msg_free(m);
	}
	p->done = p->head ? p->head->rec.offset : p->pos;
}

static int64_t commit_target(const struct part *p)
{
	return o.commit == C_BEFORE ? p->handed : p->done;
}

/* ---------------------------------------------------------------- */
/* state shared by the loop                                          */
/* ---------------------------------------------------------------- */

enum run_state {
	RUNNING,      /* reading and handing on */
	DRAINING,     /* -n or -e reached: finish what was given out */
	STOPPING,     /* signal, closed stdout, error: no retries, grace */
};

static struct {
	enum run_state state;
	int exit_status;
	bool no_commit;             /* membership or broker lost */
	bool ep_lost;               /* the endpoint failed */
	int64_t handed_on;          /* messages given out (for -n) */
	int64_t grace_end, kill_at;
	bool killed_term, killed_kill;
	int signals;
	/* group */
	char member_id[128];
	int32_t generation;
	int64_t next_heartbeat, next_commit;
	bool joined;
	char dlq_topic[MQ_TOPIC_MAX + 1];
	size_t dlq_pending;
	struct msg *dlq_list;       /* messages whose produce is out */
	uint64_t dlq_serial;
} S;

static volatile sig_atomic_t got_signal, got_child;
static int wake_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
	int e = errno;
	if (sig == SIGCHLD)
		got_child = 1;
	else
		got_signal++;
	if (wake_pipe[1] >= 0 && write(wake_pipe[1], "x", 1) < 0) {
		/* full: the loop wakes up anyway */
	}
	errno = e;
}

/* Stop handing on; exit with status once what runs has finished. */
static void stop(int status, bool no_commit)
{
	if (S.state != STOPPING) {
		S.state = STOPPING;
		S.grace_end = mq_mono_ms() + o.grace_ms;
	}
	if (status && !S.exit_status)
		S.exit_status = status;
	if (no_commit)
		S.no_commit = true;
}

/* A failed request: the endpoint is gone (69), membership lost (75),
 * or anything else by its code. */
static void fail(const mq_err *err, const char *what)
{
	int code = cli_exit_code(err);
	bool lost = err->code == MQ_E_CONNECT || err->code == MQ_E_TIMEOUT ||
		    err->code == MQ_E_SHUTDOWN;

	if (err->code == MQ_E_UNKNOWN_MEMBER || err->code == MQ_E_GENERATION) {
		cli_warn("%s: %s (group membership lost)", what, err->msg);
		code = EX_TEMPFAIL_;
		lost = true;
	} else {
		cli_warn("%s: %s", what, err->msg);
	}
	if (err->code == MQ_E_CONNECT || err->code == MQ_E_TIMEOUT)
		S.ep_lost = true;
	stop(code, lost);
}

/* A commit that failed. Unless the endpoint is gone (69), it was
 * refused: that is final, 75, and nothing more is committed, not even at
 * exit (mq-recv(1), EXIT STATUS). */
static void fail_commit(const mq_err *err)
{
	if (err->code == MQ_E_CONNECT || err->code == MQ_E_TIMEOUT ||
	    err->code == MQ_E_UNKNOWN_MEMBER || err->code == MQ_E_GENERATION) {
		fail(err, "commit");
		return;
	}
	cli_warn("commit refused: %s", err->msg);
	stop(EX_TEMPFAIL_, true);
}

/* ---------------------------------------------------------------- */
/* output                                                            */
/* ---------------------------------------------------------------- */

/*
 * Formatted messages wait in a buffer until stdout takes them. A message
 * is done (committable) only once its last byte has been written, which
 * the marks record: one per message, the buffer position where it ends.
 *
 * A reader at the other end of a pipe may be slow, for far longer than a
 * group's session timeout. So when stdout is a pipe, a socket or a
 * terminal it is written only as far as it takes without blocking (after
 * poll(2) says it is writable, at most PIPE_BUF bytes, which a pipe then
 * takes whole), and the loop keeps heartbeating while the reader catches
 * up. Files and /dev/null are written straight away.
 */
struct mark {
	size_t end;                 /* buffer position after the message */
	uint32_t part, epoch;       /* whose, and of which assignment */
	int64_t next;               /* its offset + 1 */
};

static struct {
	mq_wbuf buf;                /* [off, buf.len) still to be written */
	size_t off;
	struct mark *marks;         /* [mhead, mn) not yet written */
	size_t mhead, mn, mcap;
	bool careful;               /* stdout may block */
	bool broken;                /* closed or failing: nothing more */
} out;

static void out_init(void)
{
	struct stat st;

	mq_w_init(&out.buf);
	out.careful = fstat(STDOUT_FILENO, &st) < 0 || S_ISFIFO(st.st_mode) ||
		      S_ISSOCK(st.st_mode) || isatty(STDOUT_FILENO);
}

static size_t out_pending(void)
{
	return out.broken ? 0 : out.buf.len - out.off;
}

/* Messages whose bytes have all been written are done. */
static void out_written(void)
{
	while (out.mhead < out.mn && out.marks[out.mhead].end <= out.off) {
		const struct mark *k = &out.marks[out.mhead++];
		struct part *p = parts[k->part];
		if (p->active && p->epoch == k->epoch && k->next > p->done)
			p->done = k->next;
	}
	if (out.off == out.buf.len) {
		mq_w_reset(&out.buf);
		out.off = 0;
		out.mhead = out.mn = 0;
	}
}

static void out_break(int status, const char *why)
{
	/* What stdout took before it broke is done: credit it first. */
	out_written();
	out.broken = true;
	mq_w_reset(&out.buf);
	out.off = 0;
	out.mhead = out.mn = 0;
	if (status)
		cli_warn("%s", why);
	else
		note("%s", why);
	stop(status, false);
}

/* Write what stdout takes now (all of it unless careful). */
static void out_pump(void)
{
	char why[160];

	if (out.buf.oom) {
		out.buf.oom = false;
		out_break(EX_SOFTWARE_, "out of memory for the output");
		return;
	}
	while (!out.broken && out.off < out.buf.len) {
		size_t n = out.buf.len - out.off;
		ssize_t w;

		if (out.careful) {
			struct pollfd pf = { .fd = STDOUT_FILENO, .events = POLLOUT };
			int rc = poll(&pf, 1, 0);
			if (rc < 0 && errno == EINTR)
				continue;
			if (rc == 0)
				break;          /* the reader is behind */
			if (n > PIPE_BUF)
				n = PIPE_BUF;
		}
		w = write(STDOUT_FILENO, out.buf.p + out.off, n);
		if (w > 0) {
			out.off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (w < 0 && errno == EPIPE) {
			out_break(0, "standard output closed; stopping");
		} else {
			snprintf(why, sizeof why, "write to standard output: %s",
				 w < 0 ? strerror(errno) : "nothing written");
			out_break(EX_IOERR_, why);
		}
		return;
	}
	out_written();
}

/* Stopping for good: write only the rest of the message under way, or
 * with all, nothing more at all. */
static void out_cut(bool all)
{
	size_t end = out.off;

	for (size_t i = out.mhead; !all && i < out.mn; i++)
		if (out.marks[i].end > out.off) {
			end = out.marks[i].end;
			break;
		}
	out.buf.len = end;
	out_written();
}

/* p (parts[index]) is done up to next once what is buffered now has
 * been written. */
static void out_mark(size_t index, const struct part *p, int64_t next)
{
	if (out.mn == out.mcap) {
		size_t cap = out.mcap ? out.mcap * 2 : 1024;
		struct mark *m = realloc(out.marks, cap * sizeof *m);
		if (!m) {
			out.buf.oom = true;
			return;
		}
		out.marks = m;
		out.mcap = cap;
	}
	out.marks[out.mn++] = (struct mark){ out.buf.len, (uint32_t)index,
					     p->epoch, next };
}

static void out_record(size_t index, const struct part *p,
		       const mq_record *r)
{
	mq_wbuf *w = &out.buf;

	switch (o.out) {
	case OUT_JSON:
		cli_json_record(w, p->topic, p->id, r);
		break;
	case OUT_FORMAT:
		cli_format_record(o.fmt, w, p->topic, p->id, r);
		break;
	case OUT_LINES:
		if (o.key_delim) {
			if (r->key_len > 0)
				mq_w_raw(w, r->key, (size_t)r->key_len);
			mq_w_raw(w, o.key_delim, o.key_delim_len);
		}
		if (r->value_len > 0)
			mq_w_raw(w, r->value, (size_t)r->value_len);
		mq_w_u8(w, (uint8_t)o.terminator);
		break;
	}
	out_mark(index, p, r->offset + 1);
}

/* ---------------------------------------------------------------- */
/* group                                                             */
/* ---------------------------------------------------------------- */

/* Commit every active partition whose target moved. 0, or -1 after
 * stop() was called. */
static int commit_now(const char *why)
{
	mq_commit_entry e[64];
	size_t n = 0;
	mq_err err;

	if (!o.group || o.commit == C_MANUAL || S.no_commit || !S.joined)
		return 0;
	for (size_t i = 0; i <= nparts; i++) {
		struct part *p = i < nparts ? parts[i] : NULL;
		if (p && p->active && commit_target(p) != p->committed &&
		    commit_target(p) >= 0) {
			e[n++] = (mq_commit_entry){ p->topic, p->id,
						    commit_target(p) };
		}
		if (n == 0 || (n < 64 && p))
			continue;
		if (mq_ep_commit(ep, o.group, S.member_id, S.generation, 0, e,
				 n, &err) < 0) {
			fail_commit(&err);
			return -1;
		}
		for (size_t k = 0; k < n; k++) {
			struct part *q = part_find(e[k].topic, e[k].partition,
						   NULL);
			q->committed = e[k].offset;
			note("committed %s/%d at %" PRId64 " (%s)", q->topic,
			     q->id, q->committed, why);
		}
		n = 0;
	}
	return 0;
}

static int64_t group_offset(const mq_group_info *g, size_t ng,
			    const char *topic, int32_t id)
{
	for (size_t i = 0; i < ng; i++) {
		const mq_group_offset *c = mq_group_committed(&g[i], topic, id);
		if (c)
			return c->offset;
	}
	return -1;
}

/* Take the assignment a: revoke what is gone, start what is new at its
 * committed offset (or where --from-new says). */
static int apply_assignment(const mq_assignment *a)
{
	mq_group_info *g = NULL;
	mq_topic_meta *m = NULL;
	size_t ng = 0, nm = 0;
	bool fresh = false, pin = false;
	mq_err err;

	for (size_t i = 0; i < nparts; i++) {
		bool keep = false;
		for (size_t k = 0; k < a->n && !keep; k++)
			keep = a->parts[k].partition == parts[i]->id &&
			       !strcmp(a->parts[k].topic, parts[i]->topic);
		if (parts[i]->active && !keep) {
			note("partition %s/%d revoked", parts[i]->topic,
			     parts[i]->id);
			part_revoke(parts[i]);
		}
	}
	for (size_t k = 0; k < a->n && !fresh; k++) {
		struct part *p = part_find(a->parts[k].topic,
					   a->parts[k].partition, NULL);
		fresh = !p || !p->active;
	}
	if (!fresh)
		return 0;
	if (mq_ep_describe_groups(ep, o.group, &g, &ng, &err) < 0 ||
	    mq_ep_metadata(ep, o.topics, o.ntopics, &m, &nm, &err) < 0) {
		mq_group_info_free(g, ng);
		fail(&err, "cannot read the group's offsets");
		return -1;
	}
	for (size_t k = 0; k < a->n; k++) {
		const mq_tp *tp = &a->parts[k];
		struct part *p = part_get(tp->topic, tp->partition);
		const mq_part_meta *pm;
		int64_t committed, start;

		if (p->active)
			continue;
		committed = group_offset(g, ng, tp->topic, tp->partition);
		pm = mq_part_meta_find(mq_topic_meta_find(m, nm, tp->topic),
				       tp->partition);
		if (committed >= 0)
			start = committed;
		else if (!pm)
			start = 0;  /* the fetch corrects it */
		else
			start = o.from_beginning ? pm->start : pm->visible;
		if (committed < 0 && pm)
			pin = true;
		part_start(p, start, committed);
		note("partition %s/%d assigned, starting at %" PRId64 "%s",
		     p->topic, p->id, start,
		     committed >= 0 ? " (committed)" : " (new to the group)");
	}
	mq_group_info_free(g, ng);
	mq_topic_meta_free(m, nm);
	/* A partition new to the group starts where --from-new says, and
	 * that position is committed at once: a member killed before its
	 * first commit must not come back to a newer end and skip what was
	 * sent in between. */
	if (pin && o.commit != C_MANUAL &&
	    commit_now("the starting position, new to the group") < 0)
		return -1;
	return 0;
}

/* Join (again, with our member id if we have one). */
static int join(void)
{
	mq_assignment a;
	mq_err err;
	int rc;

	rc = mq_ep_join(ep, o.group, S.member_id, (uint32_t)o.session_ms,
			o.topics, o.ntopics, &a, &err);
	if (rc < 0) {
		mq_assignment_free(&a);
		fail(&err, S.joined ? "cannot rejoin the group"
				    : "cannot join the group");
		return -1;
	}
	snprintf(S.member_id, sizeof S.member_id, "%s", a.member_id);
	S.generation = a.generation;
	S.joined = true;
	S.next_heartbeat = mq_mono_ms() + o.session_ms / 3;
	note("member %s of group %s, generation %d, %zu partition(s)",
	     S.member_id, o.group, S.generation, a.n);
	rc = apply_assignment(&a);
	mq_assignment_free(&a);
	return rc;
}

/* The group is rebalancing: hand in what is finished, join again. */
static void rebalance(void)
{
	note("group %s is rebalancing", o.group);
	out_pump();
	if (commit_now("before rejoining") < 0)
		return;
	join();
}

static void heartbeat(void)
{
	mq_err err;

	S.next_heartbeat = mq_mono_ms() + o.session_ms / 3;
	if (mq_ep_heartbeat(ep, o.group, S.member_id, S.generation, &err) == 0)
		return;
	if (err.code == MQ_E_REBALANCE || err.code == MQ_E_GENERATION) {
		if (S.state == STOPPING) {
			/* Rejoining only to leave would hold up the group:
			 * hand in what is finished and leave now; what still
			 * runs will be done again by the next owner. */
			out_pump();
			if (commit_now("stopping during a rebalance") == 0 &&
			    mq_ep_leave(ep, o.group, S.member_id, &err) < 0)
				note("leaving the group: %s", err.msg);
			S.no_commit = true;
			return;
		}
		rebalance();
		return;
	}
	fail(&err, "heartbeat");
}

/* ---------------------------------------------------------------- */
/* plain reading (no group)                                          */
/* ---------------------------------------------------------------- */

/* The metadata of the topics asked for, every one of which must exist
 * (75 if not). */
static void topics_meta(mq_topic_meta **m, size_t *nm)
{
	mq_err err;

	if (mq_ep_metadata(ep, o.topics, o.ntopics, m, nm, &err) < 0)
		cli_die(cli_exit_code(&err), "%s", err.msg);
	for (size_t i = 0; i < *nm; i++)
		if ((*m)[i].code)
			cli_die(EX_TEMPFAIL_, "topic %s: %s", (*m)[i].name,
				(*m)[i].code == MQ_E_NO_TOPIC
					? "no such topic"
					: mq_code_name((*m)[i].code));
}

/* Before joining a group: its topics must exist. */
static void group_start(void)
{
	mq_topic_meta *m;
	size_t nm;

	topics_meta(&m, &nm);
	mq_topic_meta_free(m, nm);
	join();
}

static void plain_start(void)
{
	mq_topic_meta *m;
	size_t nm;
	mq_err err;

	topics_meta(&m, &nm);
	for (size_t i = 0; i < nm; i++) {
		if (o.partition >= m[i].nparts)
			cli_usage_error("-p %d: topic %s has %d partition(s)",
					o.partition, m[i].name, m[i].nparts);
		for (int32_t k = 0; k < m[i].nparts; k++) {
			const mq_part_meta *pm = &m[i].parts[k];
			int64_t start = pm->start;

			if (o.partition >= 0 && pm->id != o.partition)
				continue;
			switch (o.start) {
			case S_BEGINNING:
				start = pm->start;
				break;
			case S_END:
				start = pm->visible;
				break;
			case S_ABSOLUTE:
				start = o.start_arg;
				break;
			case S_FROM_END:
				start = pm->visible - o.start_arg;
				break;
			case S_TIME:
				if (mq_ep_list_offset(ep, m[i].name, pm->id,
						      o.start_arg, &start,
						      &err) < 0)
					cli_die(cli_exit_code(&err), "%s/%d: %s",
						m[i].name, pm->id, err.msg);
				break;
			}
			if (start < pm->start)
				start = pm->start;
			if (start > pm->visible)
				start = pm->visible;
			part_start(part_get(m[i].name, pm->id), start, -1);
		}
	}
	mq_topic_meta_free(m, nm);
}

/* ---------------------------------------------------------------- */
/* commands (--exec)                                                 */
/* ---------------------------------------------------------------- */

struct job {
	struct msg *m;              /* NULL: free slot */
	pid_t pid;                  /* > 0 while its command runs */
	int errfd;                  /* its stderr, -1 once closed */
	char tail[TAIL_MAX];        /* end of the last run's stderr */
	size_t tail_len;
};

static struct job *jobs;
static char **base_env;             /* our environment minus MQ_ per-message */

static int jobs_busy(void)
{
	int n = 0;
	for (int i = 0; i < o.concurrency; i++)
		n += jobs[i].m != NULL;
	return n;
}

static int jobs_running(void)
{
	int n = 0;
	for (int i = 0; i < o.concurrency; i++)
		n += jobs[i].pid > 0;
	return n;
}

static void tail_add(struct job *j, const char *p, size_t n)
{
	if (n >= TAIL_MAX) {
		memcpy(j->tail, p + n - TAIL_MAX, TAIL_MAX);
		j->tail_len = TAIL_MAX;
		return;
	}
	if (j->tail_len + n > TAIL_MAX) {
		size_t drop = j->tail_len + n - TAIL_MAX;
		memmove(j->tail, j->tail + drop, j->tail_len - drop);
		j->tail_len -= drop;
	}
	memcpy(j->tail + j->tail_len, p, n);
	j->tail_len += n;
}

/* Read what the command wrote to stderr: keep its tail, pass it on. */
static void job_read_stderr(struct job *j)
{
	char buf[4096];

	while (j->errfd >= 0) {
		ssize_t n = read(j->errfd, buf, sizeof buf);
		if (n > 0) {
			tail_add(j, buf, (size_t)n);
			if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
				/* nowhere to report it */
			}
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		close(j->errfd);
		j->errfd = -1;
	}
}

static void env_name(char *buf, size_t size, const char *prefix,
		     const uint8_t *name, size_t len, const char *suffix)
{
	size_t n = (size_t)snprintf(buf, size, "%s", prefix);

	for (size_t i = 0; i < len && n + 1 < size; i++) {
		uint8_t c = name[i];
		if (c >= 'a' && c <= 'z')
			c = (uint8_t)(c - 'a' + 'A');
		else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
			c = '_';
		buf[n++] = (char)c;
	}
	buf[n] = '\0';
	snprintf(buf + n, size - n, "%s", suffix);
}

/* Set NAME to the bytes p (or NAME_B64 to their base64 if they hold a
 * NUL, which an environment cannot carry). Child side. */
static void env_bytes(const char *name, const uint8_t *p, int32_t len)
{
	char key[512];

	if (len < 0)
		return;
	if (!memchr(p, '\0', (size_t)len)) {
		char *v = strndup((const char *)p, (size_t)len);
		if (v)
			setenv(name, v, 1);
		free(v);
		return;
	}
	mq_wbuf w;
	mq_w_init(&w);
	cli_b64_encode(&w, p, (size_t)len);
	mq_w_u8(&w, 0);
	snprintf(key, sizeof key, "%s_B64", name);
	if (!w.oom)
		setenv(key, (char *)w.p, 1);
	mq_w_free(&w);
}

static void msg_id(const struct msg *m, const struct part *p, char *buf,
		   size_t size)
{
	snprintf(buf, size, "%s/%" PRId32 "/%" PRId64, p->topic, p->id,
		 m->rec.offset);
}

/* In the child: the environment of one message, then the shell. */
static void __attribute__((noreturn))
child_exec(const struct msg *m, const struct part *p, int in_fd, int err_fd)
{
	char num[64], id[MQ_TOPIC_MAX + 64], name[512];
	size_t pos = 0;
	mq_header h;
	sigset_t none;

	/* A process group of its own: a Ctrl-C at the terminal reaches only
	 * mq-recv, which decides what to do (mq-recv(1)), and the command
	 * and whatever it started can be stopped together. */
	setpgid(0, 0);
	if (dup2(in_fd, STDIN_FILENO) < 0 || dup2(err_fd, STDERR_FILENO) < 0)
		_exit(126);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	environ = base_env;
	setenv("MQ_TOPIC", p->topic, 1);
	snprintf(num, sizeof num, "%" PRId32, p->id);
	setenv("MQ_PARTITION", num, 1);
	snprintf(num, sizeof num, "%" PRId64, m->rec.offset);
	setenv("MQ_OFFSET", num, 1);
	msg_id(m, p, id, sizeof id);
	setenv("MQ_ID", id, 1);
	snprintf(num, sizeof num, "%" PRId64, m->rec.timestamp);
	setenv("MQ_TIMESTAMP", num, 1);
	snprintf(num, sizeof num, "%d", m->attempts);
	setenv("MQ_ATTEMPT", num, 1);
	if (o.group)
		setenv("MQ_GROUP", o.group, 1);
	env_bytes("MQ_KEY", m->rec.key, m->rec.key_len);
	while (mq_header_next(&m->rec, &pos, &h) == 1) {
		env_name(name, sizeof name, "MQ_HEADER_", h.key,
			 (size_t)h.key_len, "");
		if (h.value_len < 0)
			setenv(name, "", 1);
		else
			env_bytes(name, h.value, h.value_len);
	}
	execl("/bin/sh", "sh", "-c", o.exec, (char *)NULL);
	dprintf(STDERR_FILENO, "mq-recv: /bin/sh: %s\n", strerror(errno));
	_exit(127);
}

/* Our environment without the per-message variables a parent mq-recv
 * may have set, so that a command never sees stale ones. */
static void make_base_env(void)
{
	extern char **environ;
	size_t n = 0, k = 0;

	while (environ[n])
		n++;
	base_env = calloc(n + 1, sizeof *base_env);
	if (!base_env)
		cli_die(EX_SOFTWARE_, "out of memory");
	for (size_t i = 0; i < n; i++) {
		static const char *const drop[] = {
			"MQ_TOPIC=", "MQ_PARTITION=", "MQ_OFFSET=", "MQ_ID=",
			"MQ_TIMESTAMP=", "MQ_ATTEMPT=", "MQ_KEY=", "MQ_KEY_B64=",
			"MQ_GROUP=", "MQ_HEADER_",
		};
		bool skip = false;
		for (size_t d = 0; d < sizeof drop / sizeof *drop && !skip; d++)
			skip = !strncmp(environ[i], drop[d], strlen(drop[d]));
		if (!skip)
			base_env[k++] = environ[i];
	}
}

/* Run m's command in slot j. A command that cannot even be started
 * counts as a failed attempt. */
static void job_start(struct job *j, struct msg *m)
{
	int in_fd = -1, errp[2] = { -1, -1 };
	pid_t pid;

	j->m = m;
	j->tail_len = 0;
	m->state = M_RUNNING;
	m->attempts++;
	m->spawn_error[0] = '\0';
	m->status = -1;
	if (m->rec.value_len > 0) {
		/* The value waits in a memory file: the command reads it at
		 * its own pace and the loop never blocks on a pipe. */
		in_fd = memfd_create("mq-recv-value", MFD_CLOEXEC);
		if (in_fd >= 0) {
			const uint8_t *v = m->rec.value;
			size_t left = (size_t)m->rec.value_len;
			while (left) {
				ssize_t n = write(in_fd, v, left);
				if (n < 0 && errno == EINTR)
					continue;
				if (n <= 0)
					break;
				v += n;
				left -= (size_t)n;
			}
			if (left || lseek(in_fd, 0, SEEK_SET) < 0) {
				close(in_fd);
				in_fd = -1;
			}
		}
	} else {
		in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	if (in_fd < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		snprintf(m->spawn_error, sizeof m->spawn_error,
			 "cannot prepare the command: %s", strerror(errno));
		goto failed;
	}
	pid = fork();
	if (pid < 0) {
		snprintf(m->spawn_error, sizeof m->spawn_error,
			 "cannot start the command: %s", strerror(errno));
		goto failed;
	}
	if (pid == 0)
		child_exec(m, m->p, in_fd, errp[1]);
	setpgid(pid, pid);      /* also here: whichever runs first */
	close(in_fd);
	close(errp[1]);
	fcntl(errp[0], F_SETFL, O_NONBLOCK);
	j->pid = pid;
	j->errfd = errp[0];
	return;
failed:
	if (in_fd >= 0)
		close(in_fd);
	if (errp[0] >= 0) {
		close(errp[0]);
		close(errp[1]);
	}
	j->pid = 0;
	j->errfd = -1;
	/* Handled as a failure by the caller's next reap. */
	m->status = -1;
}

static void describe_status(const struct msg *m, char *buf, size_t size)
{
	if (m->spawn_error[0])
		snprintf(buf, size, "%s", m->spawn_error);
	else if (WIFEXITED(m->status))
		snprintf(buf, size, "%d", WEXITSTATUS(m->status));
	else if (WIFSIGNALED(m->status))
		snprintf(buf, size, "signal %d", WTERMSIG(m->status));
	else
		snprintf(buf, size, "status %d", m->status);
}

/* Send m, with what we know of its failure, to the group's dead-letter
 * topic. It counts as done once the broker has acknowledged it. */
static void dlq_send(struct msg *m, const char *tail, size_t tail_len)
{
	struct part *p = m->p;
	char id[MQ_TOPIC_MAX + 64], part_s[16], off_s[24], att_s[16],
	     exit_s[160], at_s[24];
	static const char *const ours[] = {
		DLQ_H_TOPIC, DLQ_H_PARTITION, DLQ_H_OFFSET, DLQ_H_ID,
		DLQ_H_GROUP, DLQ_H_ATTEMPTS, DLQ_H_EXIT, DLQ_H_STDERR,
		DLQ_H_FAILED_AT,
	};
	const char *vals[9];
	mq_header *hs;
	mq_batch_builder bb;
	size_t pos = 0, nh = 0;
	int64_t now = mq_now_ms();
	mq_header h;
	mq_err err;

	msg_id(m, p, id, sizeof id);
	snprintf(part_s, sizeof part_s, "%" PRId32, p->id);
	snprintf(off_s, sizeof off_s, "%" PRId64, m->rec.offset);
	snprintf(att_s, sizeof att_s, "%d", m->attempts);
	describe_status(m, exit_s, sizeof exit_s);
	snprintf(at_s, sizeof at_s, "%" PRId64, now);
	vals[0] = p->topic; vals[1] = part_s; vals[2] = off_s; vals[3] = id;
	vals[4] = o.group; vals[5] = att_s; vals[6] = exit_s; vals[7] = NULL;
	vals[8] = at_s;

	hs = calloc((size_t)m->rec.header_count + 9, sizeof *hs);
	if (!hs)
		cli_die(EX_SOFTWARE_, "out of memory");
	/* The original headers, minus earlier dead-letter ones (a message
	 * replayed from a dead-letter queue that fails again). */
	while (mq_header_next(&m->rec, &pos, &h) == 1) {
		bool dup = false;
		for (size_t i = 0; i < 9 && !dup; i++)
			dup = (size_t)h.key_len == strlen(ours[i]) &&
			      !memcmp(h.key, ours[i], strlen(ours[i]));
		if (!dup)
			hs[nh++] = h;
	}
	for (size_t i = 0; i < 9; i++) {
		hs[nh].key = (const uint8_t *)ours[i];
		hs[nh].key_len = (int32_t)strlen(ours[i]);
		if (i == 7) {
			hs[nh].value = (const uint8_t *)tail;
			hs[nh].value_len = (int32_t)tail_len;
		} else {
			hs[nh].value = (const uint8_t *)vals[i];
			hs[nh].value_len = (int32_t)strlen(vals[i]);
		}
		nh++;
	}
	m->state = M_DLQ;
	m->token = DLQ_TOKEN | ++S.dlq_serial;
	if (mq_bb_init(&bb, 0, &err) < 0 ||
	    mq_bb_add(&bb, now, m->rec.key, m->rec.key_len, m->rec.value,
		      m->rec.value_len, hs, (int32_t)nh, &err) < 0 ||
	    mq_bb_finish(&bb, -1, -1, -1, &err) < 0 ||
	    mq_ep_produce_send(ep, S.dlq_topic, 0, m->rec.key,
			       m->rec.key_len, 1, bb.buf, bb.len, m->token,
			       &err) < 0) {
		mq_bb_free(&bb);
		free(hs);
		abandon(m);
		fail(&err, "cannot write to the dead-letter queue");
		return;
	}
	mq_bb_free(&bb);
	free(hs);
	m->dlq_next = S.dlq_list;
	S.dlq_list = m;
	S.dlq_pending++;
}

static void dlq_acked(const mq_ep_event *ev)
{
	struct msg **pp = &S.dlq_list, *m;
	char id[MQ_TOPIC_MAX + 64];

	while (*pp && (*pp)->token != ev->token)
		pp = &(*pp)->dlq_next;
	if (!(m = *pp))
		return;
	*pp = m->dlq_next;
	S.dlq_pending--;
	if (ev->code) {
		cli_warn("cannot write to the dead-letter queue %s: %s",
			 S.dlq_topic, ev->msg);
		abandon(m);
		stop(EX_TEMPFAIL_, false);
		return;
	}
	if (!m->p) {
		msg_free(m);    /* its partition was revoked meanwhile */
		return;
	}
	msg_id(m, m->p, id, sizeof id);
	warn("%s: sent to the dead-letter queue as %s/%d/%" PRId64, id,
	     S.dlq_topic, ev->produce.partition, ev->produce.base_offset);
	m->state = M_DONE;
	part_advance(m->p);
}

static int64_t backoff_for(int failures)
{
	int64_t d = o.backoff_ms;

	for (int i = 1; i < failures && d < o.backoff_max_ms; i++)
		d *= 2;
	return d < o.backoff_max_ms ? d : o.backoff_max_ms;
}

/* The command of slot j ended (or never started). */
static void job_finished(struct job *j)
{
	struct msg *m = j->m;
	struct part *p = m->p;
	char id[MQ_TOPIC_MAX + 64], st[160];
	bool ok = !m->spawn_error[0] && WIFEXITED(m->status) &&
		  WEXITSTATUS(m->status) == 0;

	j->m = NULL;
	j->pid = 0;
	if (j->errfd >= 0) {
		close(j->errfd);
		j->errfd = -1;
	}
	if (!p) {
		msg_free(m);    /* revoked meanwhile: not ours to finish */
		return;
	}
	if (ok) {
		m->state = M_DONE;
		part_advance(p);
		return;
	}
	msg_id(m, p, id, sizeof id);
	describe_status(m, st, sizeof st);
	if (S.state == STOPPING) {
		note("%s: command ended with %s while stopping; not committed",
		     id, st);
		abandon(m);
		return;
	}
	if (m->attempts <= o.retries) {
		int64_t d = backoff_for(m->attempts);
		warn("%s: command %s%s (attempt %d of %d); retrying in "
		     "%" PRId64 " ms", id, m->spawn_error[0] ? "failed: " :
		     "exited with status ", st, m->attempts, o.retries + 1, d);
		m->state = M_WAIT;
		m->retry_at = mq_mono_ms() + d;
		j->m = m;       /* keeps its slot while it waits */
		return;
	}
	if (!o.group) {
		cli_warn("%s: command %s%s after %d attempt(s); giving up (no "
			 "dead-letter queue without -g)", id,
			 m->spawn_error[0] ? "failed: " : "exited with status ",
			 st, m->attempts);
		abandon(m);
		stop(EX_TEMPFAIL_, false);
		return;
	}
	warn("%s: command %s%s after %d attempt(s)", id,
	     m->spawn_error[0] ? "failed: " : "exited with status ", st,
	     m->attempts);
	dlq_send(m, j->tail, j->tail_len);
}

/* Collect the commands that ended. */
static void jobs_reap(void)
{
	int status;
	pid_t pid;

	got_child = 0;
	for (int i = 0; i < o.concurrency; i++)
		if (jobs[i].m && jobs[i].m->state == M_RUNNING &&
		    jobs[i].pid == 0)
			job_finished(&jobs[i]);     /* never started */
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int i = 0; i < o.concurrency; i++) {
			struct job *j = &jobs[i];
			if (j->pid != pid)
				continue;
			job_read_stderr(j);
			j->m->status = status;
			job_finished(j);
			break;
		}
	}
}

/* Retries whose time has come; during a stop they are abandoned. */
static void jobs_retry(void)
{
	int64_t now = mq_mono_ms();

	for (int i = 0; i < o.concurrency; i++) {
		struct job *j = &jobs[i];
		if (!j->m || j->m->state != M_WAIT)
			continue;
		if (S.state == STOPPING || !j->m->p) {
			abandon(j->m);
			j->m = NULL;
			continue;
		}
		if (now >= j->m->retry_at)
			job_start(j, j->m);
	}
}

/* Hand queued messages to free slots, in order per partition, taking
 * partitions in turn. A partition never has more than --concurrency
 * messages given out past its oldest unfinished one, so a crash repeats
 * at most that many (a slow message holds the others back rather than
 * letting finished work pile up uncommitted behind it). With --commit
 * before, their offsets are committed first. */
static void jobs_dispatch(void)
{
	static size_t rr;
	struct job *free_slots[1024];
	struct msg *picked[1024];
	int nfree = 0, n = 0;

	if (S.state != RUNNING)
		return;
	for (int i = 0; i < o.concurrency; i++)
		if (!jobs[i].m)
			free_slots[nfree++] = &jobs[i];
	for (bool any = true; n < nfree && any;) {
		any = false;
		for (size_t k = 0; k < nparts && n < nfree; k++) {
			struct part *p = parts[(rr + k) % (nparts ? nparts : 1)];
			struct msg *m = p->next_queued;
			if (!p->active || !m ||
			    p->nflight >= (size_t)o.concurrency)
				continue;
			if (o.count >= 0 && S.handed_on >= o.count)
				break;
			p->next_queued = m->next;
			p->nqueued--;
			p->nflight++;
			p->handed = m->rec.offset + 1;
			picked[n++] = m;
			S.handed_on++;
			any = true;
		}
		rr++;
	}
	if (n == 0)
		return;
	if (o.commit == C_BEFORE && commit_now("before handing on") < 0) {
		/* Nothing may run uncommitted: put them back. */
		for (int i = n - 1; i >= 0; i--) {
			struct part *p = picked[i]->p;
			p->next_queued = picked[i];
			p->nqueued++;
			p->nflight--;
			p->handed = picked[i]->rec.offset;
			S.handed_on--;
		}
		return;
	}
	for (int i = 0; i < n; i++)
		job_start(free_slots[i], picked[i]);
}

/* Stopping: after the grace period, TERM then KILL what still runs. */
static void jobs_enforce_grace(void)
{
	int64_t now = mq_mono_ms();
	int sig = 0;

	if (S.state != STOPPING || !jobs_running())
		return;
	if (!S.killed_term && now >= S.grace_end) {
		S.killed_term = true;
		S.kill_at = now + KILL_WAIT_MS;
		sig = SIGTERM;
		warn("stopping: %d command(s) still running after the grace "
		     "period; terminating them", jobs_running());
	} else if (S.killed_term && !S.killed_kill && now >= S.kill_at) {
		S.killed_kill = true;
		sig = SIGKILL;
	}
	if (sig)
		for (int i = 0; i < o.concurrency; i++)
			if (jobs[i].pid > 0 && kill(-jobs[i].pid, sig) < 0)
				kill(jobs[i].pid, sig);
}

/* Take the records of one fetch as messages to run. */
static int queue_records(struct part *p, const mq_record *r)
{
	size_t hl = r->headers_len;
	size_t kl = r->key_len > 0 ? (size_t)r->key_len : 0;
	size_t vl = r->value_len > 0 ? (size_t)r->value_len : 0;
	struct msg *m = malloc(sizeof *m + kl + vl + hl);
	uint8_t *d;

	if (!m)
		return -1;
	memset(m, 0, sizeof *m);
	d = (uint8_t *)(m + 1);
	m->rec = *r;
	m->rec.key = r->key ? memcpy(d, r->key, kl) : NULL;
	d += kl;
	m->rec.value = r->value ? memcpy(d, r->value, vl) : NULL;
	d += vl;
	m->rec.headers = hl ? memcpy(d, r->headers, hl) : d;
	m->p = p;
	m->state = M_QUEUED;
	if (p->tail)
		p->tail->next = m;
	else
		p->head = m;
	p->tail = m;
	if (!p->next_queued)
		p->next_queued = m;
	p->nqueued++;
	return 0;
}

/* ---------------------------------------------------------------- */
/* loop                                                              */
/* ---------------------------------------------------------------- */

static bool limit_reached(void)
{
	return o.count >= 0 && S.handed_on >= o.count;
}

static size_t queue_limit(void)
{
	return (size_t)o.concurrency * 2 + 64;
}

static void send_fetches(void)
{
	mq_err err;

	if (S.state != RUNNING || limit_reached() ||
	    (!o.exec && out_pending() > OUT_FLUSH))
		return;
	for (size_t i = 0; i < nparts; i++) {
		struct part *p = parts[i];
		if (!p->active || p->fetching || (o.exit_at_end && p->at_end))
			continue;
		if (o.exec && p->nqueued >= queue_limit())
			continue;
		if (mq_ep_fetch_send(ep, p->topic, p->id, p->pos,
				     p->fetch_bytes,
				     o.exit_at_end ? 0 : FETCH_WAIT_MS,
				     (uint64_t)i << 32 | p->epoch, &err) < 0) {
			fail(&err, "fetch");
			return;
		}
		p->fetching = true;
	}
}

/* Where the records of a fetch that will be handed on end: the offset
 * after the last of them (pos if none). */
static int64_t fetch_plan_end(const struct part *p, const mq_fetch_result *f)
{
	int64_t end = p->pos, left = o.count >= 0 ? o.count - S.handed_on
						   : INT64_MAX;
	size_t off = 0;

	while (off + MQ_BATCH_HEADER_SIZE <= f->len && left > 0) {
		mq_batch_hdr h;
		mq_err err;
		if (mq_batch_parse_header(f->batches + off, f->len - off, &h,
					  &err) < 0 || mq_batch_size(&h) > f->len - off)
			break;
		off += mq_batch_size(&h);
		int64_t first = h.base_offset > end ? h.base_offset : end;
		int64_t last = mq_batch_last_offset(&h);
		if (last < first)
			continue;
		if (last - first + 1 > left)
			last = first + left - 1;
		left -= last - first + 1;
		end = last + 1;
	}
	return end;
}

static void handle_fetch(const mq_ep_event *ev)
{
	size_t idx = (size_t)(ev->token >> 32);
	struct part *p = idx < nparts ? parts[idx] : NULL;
	const mq_fetch_result *f = &ev->fetch;
	mq_fetch_result copy;
	uint8_t *owned = NULL;
	int64_t before;
	size_t off = 0;
	mq_err err;

	if (!p || p->epoch != (uint32_t)ev->token)
		return;         /* revoked or restarted since */
	p->fetching = false;
	if (!p->active)
		return;
	if (ev->code == MQ_E_OFFSET_RANGE) {
		int64_t to = p->pos < f->start ? f->start : f->end;
		warn("%s/%d: offset %" PRId64 " is not in the log (it holds "
		     "%" PRId64 " to %" PRId64 "); continuing at %" PRId64,
		     p->topic, p->id, p->pos, f->start, f->end, to);
		p->pos = to;
		if (p->handed < to)
			p->handed = to;
		if (o.exec)
			part_advance(p);
		else
			out_mark(idx, p, to);
		return;
	}
	if (ev->code) {
		mq_errf(&err, ev->code, "%s", ev->msg);
		char what[MQ_TOPIC_MAX + 32];
		snprintf(what, sizeof what, "fetch from %s/%d", p->topic, p->id);
		fail(&err, what);
		return;
	}
	if (S.state != RUNNING)
		return;
	if (!o.exec && o.commit == C_BEFORE && o.group) {
		int64_t end = fetch_plan_end(p, f);
		if (end > p->handed) {
			/* The batches live only until the next request: keep
			 * them across the commit. */
			if (f->len && !(owned = malloc(f->len))) {
				cli_warn("out of memory");
				stop(EX_SOFTWARE_, false);
				return;
			}
			if (f->len)
				memcpy(owned, f->batches, f->len);
			copy = *f;
			copy.batches = owned;
			f = &copy;
			p->handed = end;
			if (commit_now("before printing") < 0) {
				free(owned);
				return;
			}
		}
	}
	before = p->pos;
	while (off < f->len && !limit_reached()) {
		mq_batch_iter it;
		mq_batch_hdr h;
		mq_record r;
		size_t size;
		int rc;

		if (mq_batch_parse_header(f->batches + off, f->len - off, &h,
					  &err) < 0)
			goto corrupt;
		size = mq_batch_size(&h);
		if (size > f->len - off)
			break;          /* cut short: fetch it again */
		if (mq_batch_last_offset(&h) < p->pos) {
			off += size;
			continue;
		}
		if (mq_batch_crc(f->batches + off, size) != h.crc) {
			mq_errf(&err, MQ_E_CORRUPT, "batch at offset %" PRId64
				" has a bad CRC", h.base_offset);
			goto corrupt;
		}
		if (mq_batch_iter_init(&it, f->batches + off, size, &err) < 0)
			goto corrupt;
		while ((rc = mq_batch_iter_next(&it, &r, &err)) == 1) {
			if (r.offset < p->pos)
				continue;
			if (o.exec) {
				if (queue_records(p, &r) < 0) {
					cli_warn("out of memory");
					stop(EX_SOFTWARE_, false);
					goto out;
				}
			} else {
				out_record(idx, p, &r);
				S.handed_on++;
				if (o.commit != C_BEFORE)
					p->handed = r.offset + 1;
			}
			p->pos = r.offset + 1;
			if (!o.exec && limit_reached())
				break;
		}
		if (rc < 0)
			goto corrupt;
		off += size;
	}
	if (!o.exec)
		out_pump();
	if (p->pos == before && f->len > 0 && p->pos < f->visible &&
	    !limit_reached()) {
		/* Only records we had already: ask for more next time. */
		if (p->fetch_bytes < (64u << 20))
			p->fetch_bytes *= 2;
	} else {
		p->fetch_bytes = FETCH_BYTES;
	}
	p->at_end = p->pos >= f->visible;
	goto out;
corrupt:
	cli_warn("%s/%d: %s", p->topic, p->id, err.msg);
	stop(EX_DATAERR_, false);
out:
	free(owned);
}

static void handle_event(const mq_ep_event *ev)
{
	if (ev->type == MQ_EV_PRODUCE && (ev->token & DLQ_TOKEN))
		dlq_acked(ev);
	else if (ev->type == MQ_EV_FETCH)
		handle_fetch(ev);
}

static bool all_at_end(void)
{
	for (size_t i = 0; i < nparts; i++)
		if (parts[i]->active && (!parts[i]->at_end || parts[i]->nqueued))
			return false;
	return true;
}

/* Nothing given out is still unresolved. */
static bool idle(void)
{
	if (!o.exec)
		return out_pending() == 0;
	return jobs_busy() == 0 && (S.dlq_pending == 0 || S.ep_lost);
}

static bool finished(void)
{
	if (S.state == RUNNING &&
	    (limit_reached() || (o.exit_at_end && all_at_end())))
		S.state = DRAINING;
	return S.state != RUNNING && idle();
}

/* Wait for whatever comes first: an event, a command ending, a signal,
 * the deadline. The endpoint cannot be polled together with our own
 * descriptors, so while commands run and events are wanted too, it is
 * asked in short turns. */
static void wait_some(int64_t deadline)
{
	struct pollfd pfd[1025];
	int64_t now = mq_mono_ms();
	int timeout, nfd = 0, rc;
	bool running = o.exec && jobs_running() > 0;
	bool out_wait = !o.exec && out_pending() > 0;
	bool want_events = !out_wait && mq_ep_outstanding(ep) > 0 &&
		!S.ep_lost &&
		(S.dlq_pending > 0 ||
		 (S.state == RUNNING &&
		  (!o.exec || jobs_busy() < o.concurrency)));
	mq_ep_event ev;
	mq_err err;

	timeout = deadline - now > TICK_MS ? TICK_MS
		  : deadline > now ? (int)(deadline - now) : 0;
	if (got_child || got_signal != S.signals)
		timeout = 0;
	if (running || !want_events) {
		pfd[nfd++] = (struct pollfd){ .fd = wake_pipe[0],
					      .events = POLLIN };
		if (out_wait)
			pfd[nfd++] = (struct pollfd){ .fd = STDOUT_FILENO,
						      .events = POLLOUT };
		for (int i = 0; o.exec && i < o.concurrency; i++)
			if (jobs[i].errfd >= 0)
				pfd[nfd++] = (struct pollfd){
					.fd = jobs[i].errfd, .events = POLLIN };
		rc = poll(pfd, (nfds_t)nfd, want_events ? 0 : timeout);
		if (rc > 0 && (pfd[0].revents & POLLIN)) {
			char buf[64];
			while (read(wake_pipe[0], buf, sizeof buf) > 0)
				;
		}
		for (int i = 0; o.exec && i < o.concurrency; i++)
			if (jobs[i].errfd >= 0)
				job_read_stderr(&jobs[i]);
		if (want_events)
			timeout = timeout < CHILD_TICK_MS ? timeout
							  : CHILD_TICK_MS;
		else
			timeout = 0;    /* only take what already arrived */
	}
	if (mq_ep_outstanding(ep) == 0 || S.ep_lost || out_wait)
		return;
	for (int k = 0; k < EVENTS_PER_ROUND; k++) {
		rc = mq_ep_wait(ep, k ? 0 : timeout, &ev, &err);
		if (rc < 0) {
			fail(&err, "connection");
			S.ep_lost = true;
			return;
		}
		if (rc == 0)
			return;
		handle_event(&ev);
		if (S.ep_lost)
			return;
		/* The next fetch of that partition goes out at once. */
		send_fetches();
	}
}

/* The first SIGINT/SIGTERM stops gracefully; a second one stops
 * waiting (commands are terminated, output ends after the message being
 * written); a third one drops the output and kills at once. */
static void on_signals(void)
{
	int n = got_signal;

	while (S.signals < n) {
		int64_t now = mq_mono_ms();

		switch (++S.signals) {
		case 1:
			note("stopping on a signal");
			stop(0, false);
			break;
		case 2:
			note("stopping without waiting");
			S.grace_end = now;
			out_cut(false);
			break;
		default:
			if (S.killed_term)
				S.kill_at = now;
			S.grace_end = now;
			out_cut(true);
			break;
		}
	}
}

static void setup_signals(void)
{
	struct sigaction sa;

	if (pipe2(wake_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
		cli_die(EX_SOFTWARE_, "pipe: %s", strerror(errno));
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a write blocked on a full pipe returns. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
	if (o.exec)
		sigaction(SIGCHLD, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv)
{
	mq_ep_opts eo = { .timeout_ms = 0 };
	mq_err err;

	cli_init(argv[0]);	/* also holds closed descriptors 0-2 */
	parse_args(argc, argv);
	setup_signals();
	out_init();
	if (o.exec) {
		jobs = calloc((size_t)o.concurrency, sizeof *jobs);
		if (!jobs)
			cli_die(EX_SOFTWARE_, "out of memory");
		for (int i = 0; i < o.concurrency; i++)
			jobs[i].errfd = -1;
		make_base_env();
	}
	eo.read_only = !o.group;
	ep = cli_open_endpoint(o.broker, o.dir, &eo);
	if (o.group) {
		if (mq_dlq_topic(o.group, S.dlq_topic, sizeof S.dlq_topic,
				 &err) < 0)
			cli_die(EX_USAGE_, "%s", err.msg);
		group_start();
		S.next_commit = mq_mono_ms() + o.commit_interval_ms;
	} else {
		plain_start();
	}

	while (!finished()) {
		int64_t now = mq_mono_ms(), deadline = now + TICK_MS;

		if (got_signal != S.signals)
			on_signals();
		if (!o.exec)
			out_pump();
		if (o.group && S.joined && !S.no_commit) {
			if (now >= S.next_heartbeat)
				heartbeat();
			if (S.next_heartbeat < deadline)
				deadline = S.next_heartbeat;
		}
		if (o.exec) {
			jobs_reap();
			jobs_retry();
			jobs_enforce_grace();
			for (int i = 0; i < o.concurrency; i++)
				if (jobs[i].m && jobs[i].m->state == M_WAIT &&
				    jobs[i].m->retry_at < deadline)
					deadline = jobs[i].m->retry_at;
			if (S.state == STOPPING && jobs_running())
				deadline = now + CHILD_TICK_MS * 10;
		}
		if (o.group && o.commit == C_AFTER) {
			/* With an interval of 0, whatever got done since the
			 * last turn of the loop is committed now. */
			if (mq_mono_ms() >= S.next_commit) {
				commit_now("interval");
				S.next_commit = mq_mono_ms() + o.commit_interval_ms;
			}
			if (o.commit_interval_ms && S.next_commit < deadline)
				deadline = S.next_commit;
		}
		if (o.exec)
			jobs_dispatch();
		if (finished())
			break;
		send_fetches();
		wait_some(deadline);
	}

	/* The end: what was done is committed, once. */
	for (size_t i = 0; o.exec && i < nparts; i++)
		if (parts[i]->active)
			part_advance(parts[i]);
	if (o.group && S.joined && !S.no_commit) {
		if (commit_now("final") == 0 &&
		    mq_ep_leave(ep, o.group, S.member_id, &err) < 0)
			note("leaving the group: %s", err.msg);
	}
	mq_ep_close(ep);
	return S.exit_status;
}
