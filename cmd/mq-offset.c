/*
 * mq-offset - offsets, lag and manual commits (mq-offset(1)).
 *
 * One program with five subcommands, all over the endpoint of lib/ep.h:
 *
 *   status   is the broker there, and what does it hold
 *   topics   start and end offsets, size and timestamps per partition
 *   groups   committed offsets and lag per group and partition
 *   commit   commit message ids read from the arguments or stdin: the
 *            end of a manual-commit pipeline
 *   reset    move a group's offsets; a dry run unless --execute
 *
 * The listings go through three small writers below: aligned columns for
 * people, JSON lines (-J) for scripts and the Prometheus text exposition
 * format (--prometheus) for node_exporter's textfile collector.
 *
 * Operator commits carry generation -1 (mq-protocol(7)): they are not
 * fenced like a member's, never move an offset backwards unless asked to
 * (MQ_COMMIT_BACKWARD), and can be made to fail while the group has live
 * members (MQ_COMMIT_IF_EMPTY). Every commit request is all or nothing,
 * so mq-offset validates a whole batch of ids before it sends one.
 */
#include "cli/cli.h"
#include "cli/msg.h"
#include "cli/table.h"
#include "cli/timefmt.h"
#include "name.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- command line ---- */

enum sub { SUB_NONE, SUB_STATUS, SUB_TOPICS, SUB_GROUPS, SUB_COMMIT,
	   SUB_RESET };
#define S(x) (1u << (x))
#define S_LIST (S(SUB_STATUS) | S(SUB_TOPICS) | S(SUB_GROUPS))

enum fmt { FMT_TABLE, FMT_JSON, FMT_PROM };

enum reset_mode { R_NONE, R_EARLIEST, R_LATEST, R_OFFSET, R_SHIFT,
		  R_DATETIME, R_DURATION };

static const char *const sub_names[] = {
	[SUB_STATUS] = "status", [SUB_TOPICS] = "topics",
	[SUB_GROUPS] = "groups", [SUB_COMMIT] = "commit",
	[SUB_RESET] = "reset",
};

static const char *const synopsis[] = {
	[SUB_STATUS] =
"       mq-offset status [-Jq] [--prometheus] [-b addr | -d dir]\n",
	[SUB_TOPICS] =
"       mq-offset topics [-Jq] [--prometheus] [-b addr | -d dir]\n"
"                        [-t topic]...\n",
	[SUB_GROUPS] =
"       mq-offset groups [-Jq] [--prometheus] [-b addr | -d dir]\n"
"                        [-g group] [-t topic]... [--max-lag n]\n",
	[SUB_COMMIT] =
"       mq-offset commit [-Jq] [-b addr | -d dir] -g group [--force]\n"
"                        [--interval duration] [id ...]\n",
	[SUB_RESET] =
"       mq-offset reset [-Jq] [-b addr | -d dir] -g group\n"
"                       -t topic[:partitions]... target [--execute] [--force]\n",
};

static const char *const sub_help[] = {
	[SUB_STATUS] =
"Is the broker reachable (exit 0) or not (exit 69); its version, uptime,\n"
"flush mode, connections, topics and data size.\n",
	[SUB_TOPICS] =
"One row per partition: TOPIC PARTITION START-OFFSET END-OFFSET MESSAGES\n"
"BYTES OLDEST-TIMESTAMP NEWEST-TIMESTAMP.\n"
"  -t, --topic TOPIC        only this topic (repeatable)\n",
	[SUB_GROUPS] =
"One row per group and partition: GROUP TOPIC PARTITION CURRENT-OFFSET\n"
"LOG-END-OFFSET LAG CONSUMER-ID, and a (total) row per group.\n"
"  -g, --group GROUP        only this group\n"
"  -t, --topic TOPIC        only this topic (repeatable)\n"
"      --max-lag N          exit 1 if any lag exceeds N (after printing)\n",
	[SUB_COMMIT] =
"Commit message ids (TOPIC/PARTITION/OFFSET, or the JSON lines of\n"
"mq-recv -J) from the arguments, else from stdin, one per line; id x\n"
"commits x+1. Prints the committed offsets.\n"
"  -g, --group GROUP        the consumer group (required)\n"
"      --force              also move offsets backwards\n"
"      --interval DUR       stdin: commit what was read at least this\n"
"                           often (default 1s; 0: at every read)\n",
	[SUB_RESET] =
"Print GROUP TOPIC PARTITION CURRENT-OFFSET NEW-OFFSET; change nothing\n"
"unless --execute. target is exactly one of:\n"
"      --to-earliest        the log start offset\n"
"      --to-latest          the log end offset\n"
"      --to-offset N        offset N\n"
"      --shift-by N         the committed offset plus N (may be negative)\n"
"      --to-datetime TIME   the first record at or after TIME (ISO 8601)\n"
"      --by-duration DUR    the first record at or after now minus DUR\n"
"  -g, --group GROUP        the consumer group (required)\n"
"  -t, --topic TOPIC[:P,..] topic, optionally some partitions (repeatable)\n"
"      --execute            really change the offsets\n"
"      --force              even while the group has live members\n",
};

static const char common_help[] =
"  -b, --broker ADDR        broker host:port or unix:/path ($MQ_BROKER)\n"
"  -d, --dir DIR            work on a data directory ($MQ_DIR)\n"
"  -J, --json               JSON lines\n"
"  -q, --quiet              print only errors; the exit status tells\n"
"  -h, --help               print this help\n"
"  -V, --version            print the version\n";
static const char prom_help[] =
"      --prometheus         Prometheus text format (status, topics, groups)\n";

enum {
	O_PROM = 256, O_MAX_LAG, O_FORCE, O_EXECUTE, O_INTERVAL, O_EARLIEST,
	O_LATEST, O_TO_OFFSET, O_SHIFT, O_DATETIME, O_DURATION,
};

static const struct option longopts[] = {
	{ "broker", required_argument, NULL, 'b' },
	{ "dir", required_argument, NULL, 'd' },
	{ "json", no_argument, NULL, 'J' },
	{ "prometheus", no_argument, NULL, O_PROM },
	{ "quiet", no_argument, NULL, 'q' },
	{ "group", required_argument, NULL, 'g' },
	{ "topic", required_argument, NULL, 't' },
	{ "max-lag", required_argument, NULL, O_MAX_LAG },
	{ "force", no_argument, NULL, O_FORCE },
	{ "execute", no_argument, NULL, O_EXECUTE },
	{ "interval", required_argument, NULL, O_INTERVAL },
	{ "to-earliest", no_argument, NULL, O_EARLIEST },
	{ "to-latest", no_argument, NULL, O_LATEST },
	{ "to-offset", required_argument, NULL, O_TO_OFFSET },
	{ "shift-by", required_argument, NULL, O_SHIFT },
	{ "to-datetime", required_argument, NULL, O_DATETIME },
	{ "by-duration", required_argument, NULL, O_DURATION },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* Which subcommands take which option (checked once the subcommand is
 * known, since options may come before it). */
static const struct { int ch; const char *name; unsigned subs; } optrule[] = {
	{ O_PROM, "--prometheus", S_LIST },
	{ 'g', "-g", S(SUB_GROUPS) | S(SUB_COMMIT) | S(SUB_RESET) },
	{ 't', "-t", S(SUB_TOPICS) | S(SUB_GROUPS) | S(SUB_RESET) },
	{ O_MAX_LAG, "--max-lag", S(SUB_GROUPS) },
	{ O_FORCE, "--force", S(SUB_COMMIT) | S(SUB_RESET) },
	{ O_EXECUTE, "--execute", S(SUB_RESET) },
	{ O_INTERVAL, "--interval", S(SUB_COMMIT) },
	{ O_EARLIEST, "--to-earliest", S(SUB_RESET) },
	{ O_LATEST, "--to-latest", S(SUB_RESET) },
	{ O_TO_OFFSET, "--to-offset", S(SUB_RESET) },
	{ O_SHIFT, "--shift-by", S(SUB_RESET) },
	{ O_DATETIME, "--to-datetime", S(SUB_RESET) },
	{ O_DURATION, "--by-duration", S(SUB_RESET) },
};
#define NRULES (sizeof optrule / sizeof optrule[0])

/* A -t argument: a topic and, for reset, maybe some partitions. */
struct topic_arg {
	char *name;
	int32_t *parts;          /* NULL: every partition */
	size_t nparts;
};

static struct {
	enum sub sub;
	const char *broker, *dir;
	enum fmt fmt;
	bool quiet;
	const char *group;
	struct topic_arg *topics;
	size_t ntopics;
	int64_t max_lag;         /* -1: no check */
	bool force, execute;
	enum reset_mode mode;
	const char *mode_opt;    /* the option that chose it, for messages */
	int64_t mode_n;          /* --to-offset, --shift-by; ms for times */
	int64_t interval_ms;
	char **args;
	int nargs;
} o = { .max_lag = -1, .interval_ms = 1000 };

static void print_usage(FILE *f, enum sub sub)
{
	bool first = true;

	for (int s = SUB_STATUS; s <= SUB_RESET; s++) {
		if (sub != SUB_NONE && s != (int)sub)
			continue;
		/* The first line says "usage:", the others line up. */
		fputs(first ? "usage:" : "      ", f);
		fputs(synopsis[s] + 6, f);
		first = false;
	}
	if (sub == SUB_NONE)
		fputs("       mq-offset -h | --help | -V | --version\n", f);
}

static void help(enum sub sub)
{
	print_usage(stdout, sub);
	if (sub == SUB_NONE) {
		fputs("\nSubcommands:\n"
		      "  status    is the broker reachable; what it holds\n"
		      "  topics    offsets, size and timestamps per partition\n"
		      "  groups    committed offsets and lag per group\n"
		      "  commit    commit message ids (manual-commit pipelines)\n"
		      "  reset     move a group's offsets (dry run by default)\n"
		      "\n'mq-offset SUBCOMMAND --help' describes one.\n"
		      "\nCommon options:\n", stdout);
	} else {
		fputc('\n', stdout);
		fputs(sub_help[sub], stdout);
		fputs("\nCommon options:\n", stdout);
	}
	fputs(common_help, stdout);
	if (sub == SUB_NONE || (S(sub) & S_LIST))
		fputs(prom_help, stdout);
	exit(0);
}

/* ---- time ---- */

/* ---- the three writers ---- */

/* One JSON object per line. */
struct json {
	mq_wbuf w;
	bool first;
};

static void j_begin(struct json *j)
{
	mq_w_reset(&j->w);
	mq_w_u8(&j->w, '{');
	j->first = true;
}

static void j_key(struct json *j, const char *k)
{
	if (!j->first)
		mq_w_u8(&j->w, ',');
	j->first = false;
	cli_json_str(&j->w, k, strlen(k));
	mq_w_u8(&j->w, ':');
}

static void j_str(struct json *j, const char *k, const char *v)
{
	j_key(j, k);
	if (v)
		cli_json_str(&j->w, v, strlen(v));
	else
		mq_w_raw(&j->w, "null", 4);
}

static void j_int(struct json *j, const char *k, int64_t v)
{
	char buf[32];
	int n = snprintf(buf, sizeof buf, "%" PRId64, v);

	j_key(j, k);
	mq_w_raw(&j->w, buf, (size_t)n);
}

/* A number, or null when it is unknown (negative). */
static void j_num(struct json *j, const char *k, int64_t v)
{
	if (v < 0)
		j_str(j, k, NULL);
	else
		j_int(j, k, v);
}

static void j_bool(struct json *j, const char *k, bool v)
{
	j_key(j, k);
	mq_w_raw(&j->w, v ? "true" : "false", v ? 4 : 5);
}

static void j_end(struct json *j)
{
	mq_w_raw(&j->w, "}\n", 2);
	if (j->w.oom)
		cli_die(EX_SOFTWARE_, "out of memory");
	fwrite(j->w.p, 1, j->w.len, stdout);
}

/* Prometheus text format: samples gathered per metric, since all the
 * samples of a metric must follow its # HELP and # TYPE lines. */
struct prom {
	const char *name, *type, *help;
	mq_wbuf w;
};
#define METRIC(n, t, h) { .name = (n), .type = (t), .help = (h) }

static void w_text(mq_wbuf *w, const char *s)
{
	mq_w_raw(w, s, strlen(s));
}

/* Append label="value", escaping \, " and newline as the format asks. */
static void prom_label(mq_wbuf *w, const char *name, const char *value)
{
	if (w->len && w->p[w->len - 1] != '{')
		mq_w_u8(w, ',');
	w_text(w, name);
	w_text(w, "=\"");
	for (const char *p = value; *p; p++) {
		if (*p == '\\')
			w_text(w, "\\\\");
		else if (*p == '"')
			w_text(w, "\\\"");
		else if (*p == '\n')
			w_text(w, "\\n");
		else
			mq_w_u8(w, (uint8_t)*p);
	}
	mq_w_u8(w, '"');
}

/*
 * Labels for a sample: pairs of name and value, NULL-terminated; a value
 * given as NULL takes the next argument as an int32 (a partition).
 */
static const char *prom_labels(mq_wbuf *w, ...)
{
	va_list ap;
	const char *name;

	mq_w_reset(w);
	mq_w_u8(w, '{');
	va_start(ap, w);
	while ((name = va_arg(ap, const char *))) {
		const char *v = va_arg(ap, const char *);
		char num[16];
		if (!v) {
			snprintf(num, sizeof num, "%d", va_arg(ap, int));
			v = num;
		}
		prom_label(w, name, v);
	}
	va_end(ap);
	w_text(w, "}");
	mq_w_u8(w, 0);
	if (w->oom)
		cli_die(EX_SOFTWARE_, "out of memory");
	return (const char *)w->p;
}

static void prom_sample(struct prom *m, const char *labels, const char *fmt,
			...) __attribute__((format(printf, 3, 4)));
static void prom_sample(struct prom *m, const char *labels, const char *fmt,
			...)
{
	char v[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v, sizeof v, fmt, ap);
	va_end(ap);
	w_text(&m->w, m->name);
	if (labels && strcmp(labels, "{}") != 0)
		w_text(&m->w, labels);
	mq_w_u8(&m->w, ' ');
	w_text(&m->w, v);
	mq_w_u8(&m->w, '\n');
}

/* Print the metrics that have samples (if print), and free them. */
static void prom_flush(struct prom *m, size_t n, bool print)
{
	for (size_t i = 0; i < n; i++) {
		if (m[i].w.oom)
			cli_die(EX_SOFTWARE_, "out of memory");
		if (print && m[i].w.len) {
			printf("# HELP %s %s\n# TYPE %s %s\n", m[i].name,
			       m[i].help, m[i].name, m[i].type);
			fwrite(m[i].w.p, 1, m[i].w.len, stdout);
		}
		mq_w_free(&m[i].w);
	}
}

/* ---- endpoint ---- */

static mq_ep *open_ep(bool read_only)
{
	mq_ep_opts eo = { .read_only = read_only };
	return cli_open_endpoint(o.broker, o.dir, &eo);
}

static void __attribute__((noreturn)) die_err(const mq_err *err)
{
	cli_die(cli_exit_code(err), "%s", err->msg);
}

static bool transport_failed(const mq_err *err)
{
	return err->code == MQ_E_CONNECT || err->code == MQ_E_TIMEOUT;
}

/* Metadata of the -t topics (all topics if none); an unknown topic is
 * an error (65). */
static void get_metadata(mq_ep *ep, mq_topic_meta **m, size_t *n)
{
	const char **names = cli_xcalloc(o.ntopics, sizeof *names);
	mq_err err;

	for (size_t i = 0; i < o.ntopics; i++)
		names[i] = o.topics[i].name;
	if (mq_ep_metadata(ep, names, o.ntopics, m, n, &err) < 0)
		die_err(&err);
	if (o.ntopics && *n != o.ntopics)
		cli_die(EX_SOFTWARE_, "metadata: asked for %zu topics, got %zu",
			o.ntopics, *n);
	for (size_t i = 0; i < *n && i < o.ntopics; i++)
		if ((*m)[i].code == MQ_E_NO_TOPIC)
			cli_die(EX_DATAERR_, "unknown topic %s", names[i]);
		else if ((*m)[i].code)
			cli_die(EX_DATAERR_, "topic %s: %s", names[i],
				mq_code_name((*m)[i].code));
	free(names);
}

/* ---- status ---- */

static void uptime_text(int64_t ms, char *buf, size_t size)
{
	int64_t s = ms / 1000;

	if (s >= 86400)
		snprintf(buf, size, "%" PRId64 "d %" PRId64 "h %" PRId64 "m",
			 s / 86400, s % 86400 / 3600, s % 3600 / 60);
	else if (s >= 3600)
		snprintf(buf, size, "%" PRId64 "h %" PRId64 "m %" PRId64 "s",
			 s / 3600, s % 3600 / 60, s % 60);
	else if (s >= 60)
		snprintf(buf, size, "%" PRId64 "m %" PRId64 "s", s / 60,
			 s % 60);
	else
		snprintf(buf, size, "%" PRId64 ".%03ds", s, (int)(ms % 1000));
}

static int cmd_status(void)
{
	mq_ep_opts eo = { .read_only = true };
	mq_status_info st = { 0 };
	mq_err err;
	mq_ep *ep = cli_try_open_endpoint(o.broker, o.dir, &eo, &err);
	char up[64];

	if (ep && mq_ep_status(ep, &st, &err) < 0) {
		mq_ep_close(ep);
		ep = NULL;
	}
	if (!ep) {
		/* A scrape should say "down" rather than go stale. */
		if (o.fmt == FMT_PROM && !o.quiet)
			printf("# HELP mq_up Whether the broker answered.\n"
			       "# TYPE mq_up gauge\nmq_up 0\n");
		die_err(&err);
	}
	if (o.quiet) {
		mq_ep_close(ep);
		return 0;
	}
	if (o.fmt == FMT_JSON) {
		struct json j = { 0 };
		j_begin(&j);
		j_str(&j, "endpoint", mq_ep_name(ep));
		j_str(&j, "version", st.version);
		j_int(&j, "protocol", st.proto);
		j_int(&j, "uptime_ms", st.uptime_ms);
		j_str(&j, "flush", st.flush);
		j_int(&j, "connections", st.connections);
		j_int(&j, "topics", st.topics);
		j_int(&j, "data_bytes", (int64_t)st.data_bytes);
		j_int(&j, "bytes_in", (int64_t)st.bytes_in);
		j_int(&j, "bytes_out", (int64_t)st.bytes_out);
		j_int(&j, "pid", st.pid);
		j_str(&j, "data_dir", st.data_dir);
		j_int(&j, "max_frame_bytes", st.max_frame);
		j_int(&j, "max_message_bytes", st.max_message);
		j_end(&j);
		mq_w_free(&j.w);
	} else if (o.fmt == FMT_PROM) {
		mq_wbuf lw;
		struct prom m[] = {
			METRIC("mq_up", "gauge", "Whether the broker answered."),
			METRIC("mq_info", "gauge", "Version and flush mode of the broker (always 1)."),
			METRIC("mq_uptime_seconds", "gauge", "Seconds since the broker started."),
			METRIC("mq_connections", "gauge", "Open client connections."),
			METRIC("mq_topics", "gauge", "Number of topics."),
			METRIC("mq_data_bytes", "gauge", "Bytes of log data on disk."),
			METRIC("mq_received_bytes_total", "counter", "Bytes received from clients since the start."),
			METRIC("mq_sent_bytes_total", "counter", "Bytes sent to clients since the start."),
		};
		mq_w_init(&lw);
		prom_sample(&m[0], NULL, "1");
		prom_sample(&m[1], prom_labels(&lw, "version", st.version,
					       "flush", st.flush, NULL), "1");
		prom_sample(&m[2], NULL, "%.3f", st.uptime_ms / 1000.0);
		prom_sample(&m[3], NULL, "%" PRIu32, st.connections);
		prom_sample(&m[4], NULL, "%" PRIu32, st.topics);
		prom_sample(&m[5], NULL, "%" PRIu64, st.data_bytes);
		prom_sample(&m[6], NULL, "%" PRIu64, st.bytes_in);
		prom_sample(&m[7], NULL, "%" PRIu64, st.bytes_out);
		prom_flush(m, sizeof m / sizeof m[0], true);
		mq_w_free(&lw);
	} else {
		uptime_text(st.uptime_ms, up, sizeof up);
		printf("endpoint: %s\n", mq_ep_name(ep));
		printf("version: %s\n", st.version);
		printf("protocol: %u\n", st.proto);
		printf("uptime: %s\n", up);
		printf("flush: %s\n", st.flush);
		printf("connections: %" PRIu32 "\n", st.connections);
		printf("topics: %" PRIu32 "\n", st.topics);
		printf("data-bytes: %" PRIu64 "\n", st.data_bytes);
		printf("bytes-in: %" PRIu64 "\n", st.bytes_in);
		printf("bytes-out: %" PRIu64 "\n", st.bytes_out);
		printf("pid: %" PRIu32 "\n", st.pid);
		printf("data-dir: %s\n", st.data_dir);
		printf("max-frame-bytes: %" PRIu32 "\n", st.max_frame);
		printf("max-message-bytes: %" PRIu32 "\n", st.max_message);
	}
	mq_ep_close(ep);
	return 0;
}

/* ---- topics ---- */

static int cmd_topics(void)
{
	mq_ep *ep = open_ep(true);
	mq_topic_meta *m;
	size_t n;
	char t1[40], t2[40];

	get_metadata(ep, &m, &n);
	if (o.quiet)
		goto out;
	if (o.fmt == FMT_TABLE) {
		cli_table t;
		cli_table_init(&t, "TOPIC", "PARTITION", "START-OFFSET",
			       "END-OFFSET", "MESSAGES", "BYTES",
			       "OLDEST-TIMESTAMP", "NEWEST-TIMESTAMP", NULL);
		for (size_t i = 0; i < n; i++)
			for (int32_t k = 0; k < m[i].nparts; k++) {
				const mq_part_meta *p = &m[i].parts[k];
				cli_table_add(&t, "%s", m[i].name);
				cli_table_add(&t, "%d", p->id);
				cli_table_num(&t, p->start);
				cli_table_num(&t, p->end);
				cli_table_num(&t, p->end - p->start);
				cli_table_add(&t, "%" PRIu64, p->bytes);
				cli_table_add(&t, "%s", cli_format_time(
						p->oldest_ts, t1, sizeof t1));
				cli_table_add(&t, "%s", cli_format_time(
						p->newest_ts, t2, sizeof t2));
			}
		if (cli_table_rows(&t))
			cli_table_flush(&t, true);
		else
			cli_table_free(&t);
	} else if (o.fmt == FMT_JSON) {
		struct json j = { 0 };
		for (size_t i = 0; i < n; i++)
			for (int32_t k = 0; k < m[i].nparts; k++) {
				const mq_part_meta *p = &m[i].parts[k];
				j_begin(&j);
				j_str(&j, "topic", m[i].name);
				j_int(&j, "partition", p->id);
				j_int(&j, "start_offset", p->start);
				j_int(&j, "end_offset", p->end);
				j_int(&j, "visible_offset", p->visible);
				j_int(&j, "messages", p->end - p->start);
				j_int(&j, "bytes", (int64_t)p->bytes);
				j_num(&j, "oldest_timestamp", p->oldest_ts);
				j_num(&j, "newest_timestamp", p->newest_ts);
				j_end(&j);
			}
		mq_w_free(&j.w);
	} else {
		mq_wbuf lw;
		struct prom pm[] = {
			METRIC("mq_partition_start_offset", "gauge", "Oldest offset still retained in the partition."),
			METRIC("mq_partition_end_offset", "gauge", "Offset the next record written to the partition will get."),
			METRIC("mq_partition_messages", "gauge", "Records retained in the partition (end minus start offset)."),
			METRIC("mq_partition_bytes", "gauge", "Bytes of log files of the partition."),
			METRIC("mq_partition_oldest_timestamp_seconds", "gauge", "Timestamp of the oldest record retained."),
			METRIC("mq_partition_newest_timestamp_seconds", "gauge", "Timestamp of the newest record."),
		};
		mq_w_init(&lw);
		for (size_t i = 0; i < n; i++)
			for (int32_t k = 0; k < m[i].nparts; k++) {
				const mq_part_meta *p = &m[i].parts[k];
				const char *l = prom_labels(&lw, "topic",
							    m[i].name,
							    "partition", NULL,
							    p->id, NULL);
				prom_sample(&pm[0], l, "%" PRId64, p->start);
				prom_sample(&pm[1], l, "%" PRId64, p->end);
				prom_sample(&pm[2], l, "%" PRId64,
					    p->end - p->start);
				prom_sample(&pm[3], l, "%" PRIu64, p->bytes);
				if (p->oldest_ts >= 0)
					prom_sample(&pm[4], l, "%.3f",
						    p->oldest_ts / 1000.0);
				if (p->newest_ts >= 0)
					prom_sample(&pm[5], l, "%.3f",
						    p->newest_ts / 1000.0);
			}
		prom_flush(pm, sizeof pm / sizeof pm[0], true);
		mq_w_free(&lw);
	}
out:
	mq_topic_meta_free(m, n);
	mq_ep_close(ep);
	return 0;
}

/* ---- groups ---- */

struct tp {
	const char *topic;
	int32_t partition;
};

static int cmp_tp(const void *a, const void *b)
{
	const struct tp *x = a, *y = b;
	int c = strcmp(x->topic, y->topic);

	if (c)
		return c;
	return (x->partition > y->partition) - (x->partition < y->partition);
}

static bool topic_wanted(const char *topic)
{
	if (o.ntopics == 0)
		return true;
	for (size_t i = 0; i < o.ntopics; i++)
		if (strcmp(o.topics[i].name, topic) == 0)
			return true;
	return false;
}

static void tp_push(struct tp **v, size_t *n, size_t *cap, const char *topic,
		    int32_t p)
{
	if (!topic_wanted(topic))
		return;
	if (*n == *cap) {
		*cap = *cap ? 2 * *cap : 32;
		*v = cli_xrealloc(*v, *cap, sizeof **v);
	}
	(*v)[*n].topic = topic;
	(*v)[*n].partition = p;
	(*n)++;
}

/*
 * The partitions to show for group g, sorted: those it has a committed
 * offset on or a member is assigned, and every other partition of those
 * topics, since a group that consumes a topic consumes all of it.
 */
static struct tp *group_partitions(const mq_group_info *g,
				   const mq_topic_meta *m, size_t nm,
				   size_t *np)
{
	struct tp *v = NULL;
	size_t n = 0, cap = 0, direct;

	for (size_t i = 0; i < g->noffsets; i++)
		tp_push(&v, &n, &cap, g->offsets[i].topic,
			g->offsets[i].partition);
	for (size_t i = 0; i < g->nmembers; i++)
		for (size_t k = 0; k < g->members[i].n; k++)
			tp_push(&v, &n, &cap, g->members[i].parts[k].topic,
				g->members[i].parts[k].partition);
	direct = n;
	for (size_t i = 0; i < direct; i++) {
		const mq_topic_meta *t = mq_topic_meta_find(m, nm, v[i].topic);
		bool seen = false;
		for (size_t k = 0; k < i && !seen; k++)
			seen = strcmp(v[k].topic, v[i].topic) == 0;
		for (int32_t p = 0; t && !seen && p < t->nparts; p++)
			tp_push(&v, &n, &cap, t->name, t->parts[p].id);
	}
	if (n)
		qsort(v, n, sizeof *v, cmp_tp);
	/* Drop duplicates. */
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (k == 0 || cmp_tp(&v[k - 1], &v[i]) != 0)
			v[k++] = v[i];
	*np = k;
	return v;
}

static const mq_group_member *owner(const mq_group_info *g,
				    const char *topic, int32_t p)
{
	for (size_t i = 0; i < g->nmembers; i++)
		for (size_t k = 0; k < g->members[i].n; k++)
			if (g->members[i].parts[k].partition == p &&
			    strcmp(g->members[i].parts[k].topic, topic) == 0)
				return &g->members[i];
	return NULL;
}

/* One row of the groups listing; -1 / NULL where a value is missing. */
struct grow {
	const char *topic;
	int32_t partition;
	int64_t current, commit_ms, start, end, lag;
	const mq_group_member *member;
};

static void grow_fill(struct grow *r, const mq_group_info *g,
		      const mq_topic_meta *m, size_t nm, const struct tp *tp)
{
	const mq_group_offset *c = mq_group_committed(g, tp->topic,
						      tp->partition);
	const mq_part_meta *p =
		mq_part_meta_find(mq_topic_meta_find(m, nm, tp->topic),
				  tp->partition);

	r->topic = tp->topic;
	r->partition = tp->partition;
	r->current = c ? c->offset : -1;
	r->commit_ms = c ? c->commit_ms : -1;
	r->start = p ? p->start : -1;
	r->end = p ? p->end : -1;
	/* Lag counts from the log end offset (records retention deleted
	 * unread still count); a committed offset past the end (a log cut
	 * by recovery) has lag 0. */
	r->lag = c && p ? (p->end > c->offset ? p->end - c->offset : 0) : -1;
	r->member = owner(g, tp->topic, tp->partition);
}

static int cmd_groups(void)
{
	mq_ep *ep = open_ep(true);
	mq_topic_meta *m;
	mq_group_info *g;
	size_t nm, ng;
	mq_err err;
	cli_table t;
	struct json j = { 0 };
	mq_wbuf lw;
	struct prom pm[] = {
		METRIC("mq_group_offset", "gauge", "Committed offset of the group: the next offset it will process."),
		METRIC("mq_group_lag", "gauge", "Log end offset minus the committed offset."),
		METRIC("mq_group_lag_total", "gauge", "Sum of the group's lag over its partitions with a committed offset."),
		METRIC("mq_group_members", "gauge", "Live members of the group."),
	};
	bool exceeded = false;
	mq_wbuf notes;          /* --max-lag notes, printed after the table */

	mq_w_init(&notes);
	get_metadata(ep, &m, &nm);
	if (mq_ep_describe_groups(ep, o.group, &g, &ng, &err) < 0)
		die_err(&err);
	if (o.group && (ng == 0 || (g[0].noffsets == 0 && g[0].nmembers == 0)))
		cli_die(EX_DATAERR_, "unknown group %s: it has no committed "
			"offsets and no members", o.group);
	cli_table_init(&t, "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET",
		 "LOG-END-OFFSET", "LAG", "CONSUMER-ID", NULL);
	mq_w_init(&lw);
	for (size_t gi = 0; gi < ng; gi++) {
		size_t np;
		struct tp *tps = group_partitions(&g[gi], m, nm, &np);
		int64_t total = 0;

		for (size_t i = 0; i < np; i++) {
			struct grow r;
			grow_fill(&r, &g[gi], m, nm, &tps[i]);
			if (r.lag >= 0)
				total += r.lag;
			if (o.max_lag >= 0 && r.lag > o.max_lag) {
				char line[512];
				int len = snprintf(line, sizeof line, "%s: group "
					"%s: lag %" PRId64 " on %s/%d exceeds %"
					PRId64 "\n", cli_progname(), g[gi].name,
					r.lag, r.topic, r.partition, o.max_lag);
				exceeded = true;
				mq_w_raw(&notes, line, len < (int)sizeof line
					 ? (size_t)len : sizeof line - 1);
			}
			if (o.fmt == FMT_TABLE) {
				cli_table_add(&t, "%s", g[gi].name);
				cli_table_add(&t, "%s", r.topic);
				cli_table_add(&t, "%d", r.partition);
				cli_table_num(&t, r.current);
				cli_table_num(&t, r.end);
				cli_table_num(&t, r.lag);
				cli_table_add(&t, "%s", r.member ?
					      r.member->member_id : "-");
			} else if (o.fmt == FMT_JSON && !o.quiet) {
				j_begin(&j);
				j_str(&j, "group", g[gi].name);
				j_str(&j, "topic", r.topic);
				j_int(&j, "partition", r.partition);
				j_num(&j, "current_offset", r.current);
				j_num(&j, "log_start_offset", r.start);
				j_num(&j, "log_end_offset", r.end);
				j_num(&j, "lag", r.lag);
				j_str(&j, "consumer_id", r.member ?
				      r.member->member_id : NULL);
				j_str(&j, "client", r.member ?
				      r.member->client : NULL);
				j_num(&j, "commit_timestamp", r.commit_ms);
				j_end(&j);
			} else {
				const char *l = prom_labels(&lw, "group",
					g[gi].name, "topic", r.topic,
					"partition", NULL, r.partition, NULL);
				if (r.current >= 0)
					prom_sample(&pm[0], l, "%" PRId64,
						    r.current);
				if (r.lag >= 0)
					prom_sample(&pm[1], l, "%" PRId64,
						    r.lag);
			}
		}
		free(tps);
		if (np == 0)
			continue;
		if (o.fmt == FMT_TABLE) {
			cli_table_add(&t, "%s", g[gi].name);
			cli_table_add(&t, "(total)");
			cli_table_add(&t, "-");
			cli_table_add(&t, "-");
			cli_table_add(&t, "-");
			cli_table_add(&t, "%" PRId64, total);
			cli_table_add(&t, "-");
		} else if (o.fmt == FMT_JSON && !o.quiet) {
			j_begin(&j);
			j_str(&j, "group", g[gi].name);
			j_str(&j, "state", g[gi].state);
			j_int(&j, "generation", g[gi].generation);
			j_int(&j, "members", (int64_t)g[gi].nmembers);
			j_int(&j, "partitions", (int64_t)np);
			j_int(&j, "total_lag", total);
			j_end(&j);
		} else {
			const char *l = prom_labels(&lw, "group", g[gi].name,
						    NULL);
			prom_sample(&pm[2], l, "%" PRId64, total);
			prom_sample(&pm[3], l, "%zu", g[gi].nmembers);
		}
	}
	if (o.fmt == FMT_TABLE && !o.quiet && cli_table_rows(&t))
		cli_table_flush(&t, true);
	else
		cli_table_free(&t);
	prom_flush(pm, sizeof pm / sizeof pm[0],
		   o.fmt == FMT_PROM && !o.quiet);
	fflush(stdout);
	if (!o.quiet && notes.len)
		fwrite(notes.p, 1, notes.len, stderr);
	mq_w_free(&notes);
	mq_w_free(&j.w);
	mq_w_free(&lw);
	mq_group_info_free(g, ng);
	mq_topic_meta_free(m, nm);
	mq_ep_close(ep);
	return exceeded ? EX_FAIL : 0;
}

/* ---- commit ---- */

/* A message id to commit, and where it came from (for messages). */
struct cid {
	char *topic;
	int32_t partition;
	int64_t offset;
	char where[32];
};

struct ids {
	struct cid *v;
	size_t n, cap;
};

static void ids_clear(struct ids *ids)
{
	for (size_t i = 0; i < ids->n; i++)
		free(ids->v[i].topic);
	ids->n = 0;
}

/* Digits only, at most max; -1 otherwise. */
static int parse_uint(const char *s, size_t len, int64_t max, int64_t *out)
{
	int64_t v = 0;

	if (len == 0 || len > 19)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (max - (s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* TOPIC/PARTITION/OFFSET into c (topic allocated); -1 with why. */
static int parse_id(const char *s, size_t len, struct cid *c, char *why,
		    size_t whysz)
{
	const char *s2 = memrchr(s, '/', len), *s1;
	int64_t part, off;
	mq_err err;
	char *topic;

	s1 = s2 ? memrchr(s, '/', (size_t)(s2 - s)) : NULL;
	if (!s1) {
		snprintf(why, whysz, "'%.*s' is not a message id "
			 "(TOPIC/PARTITION/OFFSET)", (int)(len > 80 ? 80 : len),
			 s);
		return -1;
	}
	if (parse_uint(s1 + 1, (size_t)(s2 - s1 - 1), INT32_MAX, &part) < 0) {
		snprintf(why, whysz, "'%.*s': the partition is not a whole "
			 "number from 0 to 2147483647",
			 (int)(len > 80 ? 80 : len), s);
		return -1;
	}
	if (parse_uint(s2 + 1, (size_t)(s + len - s2 - 1), INT64_MAX - 1,
		       &off) < 0) {
		snprintf(why, whysz, "'%.*s': the offset is not a whole "
			 "number from 0 to 2^63-2",
			 (int)(len > 80 ? 80 : len), s);
		return -1;
	}
	topic = strndup(s, (size_t)(s1 - s));
	if (!topic)
		cli_die(EX_SOFTWARE_, "out of memory");
	if (mq_topic_check(topic, true, &err) < 0) {
		snprintf(why, whysz, "%s", err.msg);
		free(topic);
		return -1;
	}
	c->topic = topic;
	c->partition = (int32_t)part;
	c->offset = off;
	return 0;
}

/* An integral JSON number in [0, max]. */
static int json_uint(const cJSON *v, int64_t max, int64_t *out)
{
	double d;

	if (!cJSON_IsNumber(v))
		return -1;
	d = v->valuedouble;
	if (d < 0 || d > (double)max || d > 9007199254740992.0 ||
	    d != floor(d))
		return -1;
	*out = (int64_t)d;
	return 0;
}

/* A JSON line: its "id", else its "topic", "partition" and "offset". */
static int parse_json_id(const char *s, size_t len, struct cid *c, char *why,
			 size_t whysz)
{
	cJSON *root = cli_json_line(s, len), *id, *t;
	int64_t part, off;
	mq_err err;
	int rc = -1;

	if (!cJSON_IsObject(root)) {
		snprintf(why, whysz, "not a JSON object");
		goto out;
	}
	id = cJSON_GetObjectItemCaseSensitive(root, "id");
	if (id) {
		if (!cJSON_IsString(id)) {
			snprintf(why, whysz, "\"id\" is not a string");
			goto out;
		}
		rc = parse_id(id->valuestring, strlen(id->valuestring), c, why,
			      whysz);
		goto out;
	}
	t = cJSON_GetObjectItemCaseSensitive(root, "topic");
	if (!cJSON_IsString(t) ||
	    !cJSON_GetObjectItemCaseSensitive(root, "partition") ||
	    !cJSON_GetObjectItemCaseSensitive(root, "offset")) {
		snprintf(why, whysz, "the JSON object has no \"id\" (nor "
			 "\"topic\", \"partition\" and \"offset\")");
		goto out;
	}
	if (json_uint(cJSON_GetObjectItemCaseSensitive(root, "partition"),
		      INT32_MAX, &part) < 0 ||
	    json_uint(cJSON_GetObjectItemCaseSensitive(root, "offset"),
		      INT64_MAX - 1, &off) < 0) {
		snprintf(why, whysz, "\"partition\" and \"offset\" must be "
			 "whole numbers, not negative");
		goto out;
	}
	if (mq_topic_check(t->valuestring, true, &err) < 0) {
		snprintf(why, whysz, "%s", err.msg);
		goto out;
	}
	c->topic = cli_xstrdup(t->valuestring);
	c->partition = (int32_t)part;
	c->offset = off;
	rc = 0;
out:
	cJSON_Delete(root);
	return rc;
}

/*
 * Add the id on one input line (or argument) to ids. Blank lines are
 * skipped; a malformed one ends the program (65), so nothing of the batch
 * it belongs to is committed.
 */
static void add_line(struct ids *ids, const char *s, size_t len,
		     const char *where)
{
	char why[512];
	struct cid c = { 0 };
	int rc;

	while (len && (*s == ' ' || *s == '\t'))
		s++, len--;
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' ||
		       s[len - 1] == '\r'))
		len--;
	if (len == 0)
		return;
	if (*s == '{')
		rc = parse_json_id(s, len, &c, why, sizeof why);
	else
		rc = parse_id(s, len, &c, why, sizeof why);
	if (rc < 0)
		cli_die(EX_DATAERR_, "%s: %s; nothing of this batch was "
			"committed", where, why);
	snprintf(c.where, sizeof c.where, "%s", where);
	if (ids->n == ids->cap) {
		ids->cap = ids->cap ? 2 * ids->cap : 64;
		ids->v = cli_xrealloc(ids->v, ids->cap, sizeof *ids->v);
	}
	ids->v[ids->n++] = c;
}

static int cmp_cid(const void *a, const void *b)
{
	const struct cid *x = a, *y = b;
	int c = strcmp(x->topic, y->topic);

	if (c)
		return c;
	if (x->partition != y->partition)
		return x->partition < y->partition ? -1 : 1;
	return (x->offset > y->offset) - (x->offset < y->offset);
}

static bool printed_heading;

/*
 * Validate every id of the batch against the topics' metadata, then
 * commit the highest id + 1 of each partition in one request and print
 * the committed offsets as the broker now has them. Returns 0, or -1
 * with err when the endpoint failed (the caller may reconnect and call
 * again: a commit is idempotent). Bad ids end the program with 65.
 */
static int commit_batch(mq_ep *ep, struct ids *ids, mq_err *err)
{
	const char **names = cli_xcalloc(ids->n, sizeof *names);
	mq_commit_entry *e = cli_xcalloc(ids->n, sizeof *e);
	mq_topic_meta *m = NULL;
	mq_group_info *g = NULL;
	size_t nn = 0, nm = 0, ne = 0, ng = 0;
	int rc = -1;

	for (size_t i = 0; i < ids->n; i++) {
		bool seen = false;
		for (size_t k = 0; k < nn && !seen; k++)
			seen = strcmp(names[k], ids->v[i].topic) == 0;
		if (!seen)
			names[nn++] = ids->v[i].topic;
	}
	if (mq_ep_metadata(ep, names, nn, &m, &nm, err) < 0) {
		if (transport_failed(err))
			goto out;
		die_err(err);
	}
	for (size_t i = 0; i < ids->n; i++) {
		const struct cid *c = &ids->v[i];
		const mq_topic_meta *t = NULL;
		const mq_part_meta *p;

		for (size_t k = 0; k < nm && k < nn && !t; k++)
			if (strcmp(names[k], c->topic) == 0)
				t = &m[k];
		if (!t || t->code == MQ_E_NO_TOPIC)
			cli_die(EX_DATAERR_, "%s: unknown topic %s; nothing of "
				"this batch was committed", c->where, c->topic);
		if (t->code)
			cli_die(EX_DATAERR_, "%s: topic %s: %s; nothing of this "
				"batch was committed", c->where, c->topic,
				mq_code_name(t->code));
		if (!(p = mq_part_meta_find(t, c->partition)))
			cli_die(EX_DATAERR_, "%s: topic %s has no partition %d "
				"(it has %d); nothing of this batch was "
				"committed", c->where, c->topic, c->partition,
				t->nparts);
		if (c->offset >= p->end)
			cli_die(EX_DATAERR_, "%s: %s/%d/%" PRId64 " is beyond the "
				"end of the partition (its next offset is %" PRId64
				"); nothing of this batch was committed",
				c->where, c->topic, c->partition, c->offset,
				p->end);
	}
	/* Highest id of each partition: sort, keep the last of each run. */
	qsort(ids->v, ids->n, sizeof *ids->v, cmp_cid);
	for (size_t i = 0; i < ids->n; i++) {
		const struct cid *c = &ids->v[i];
		if (i + 1 < ids->n && strcmp(ids->v[i + 1].topic, c->topic) == 0 &&
		    ids->v[i + 1].partition == c->partition)
			continue;
		e[ne].topic = c->topic;
		e[ne].partition = c->partition;
		e[ne].offset = c->offset + 1;
		ne++;
	}
	if (mq_ep_commit(ep, o.group, "", -1, o.force ? MQ_COMMIT_BACKWARD : 0,
			 e, ne, err) < 0) {
		if (transport_failed(err))
			goto out;
		cli_die(cli_exit_code(err), "commit refused: %s; nothing of this "
			"batch was committed", err->msg);
	}
	/* What the broker has now (it keeps a higher offset without
	 * --force). */
	if (mq_ep_describe_groups(ep, o.group, &g, &ng, err) < 0) {
		if (transport_failed(err))
			goto out;
		die_err(err);
	}
	rc = 0;
	cli_table t;
	struct json j = { 0 };
	cli_table_init(&t, "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET",
		       NULL);
	for (size_t i = 0; i < ne; i++) {
		const mq_group_offset *c =
			ng ? mq_group_committed(&g[0], e[i].topic,
						e[i].partition) : NULL;
		int64_t now = c ? c->offset : -1;

		if (!o.quiet && now > e[i].offset)
			cli_warn("%s/%d: the committed offset stays %" PRId64
				 ", ahead of %" PRId64 " (--force moves it "
				 "back)", e[i].topic, e[i].partition, now,
				 e[i].offset);
		if (o.quiet)
			continue;
		if (o.fmt == FMT_JSON) {
			j_begin(&j);
			j_str(&j, "group", o.group);
			j_str(&j, "topic", e[i].topic);
			j_int(&j, "partition", e[i].partition);
			j_num(&j, "current_offset", now);
			j_int(&j, "requested_offset", e[i].offset);
			j_end(&j);
		} else {
			cli_table_add(&t, "%s", o.group);
			cli_table_add(&t, "%s", e[i].topic);
			cli_table_add(&t, "%d", e[i].partition);
			cli_table_num(&t, now);
		}
	}
	if (o.fmt == FMT_TABLE && cli_table_rows(&t)) {
		cli_table_flush(&t, !printed_heading);
		printed_heading = true;
	} else {
		cli_table_free(&t);
	}
	mq_w_free(&j.w);
	fflush(stdout);
out:
	mq_group_info_free(g, ng);
	mq_topic_meta_free(m, nm);
	free(e);
	free(names);
	return rc;
}

/* Commit a batch, reconnecting once if the endpoint went away (the broker
 * may have closed an idle connection, or restarted). */
static void commit_ids(mq_ep **ep, struct ids *ids)
{
	mq_err err;

	if (ids->n == 0)
		return;
	if (commit_batch(*ep, ids, &err) < 0) {
		mq_ep_opts eo = { .read_only = false };
		mq_ep_close(*ep);
		*ep = cli_try_open_endpoint(o.broker, o.dir, &eo, &err);
		if (!*ep || commit_batch(*ep, ids, &err) < 0)
			cli_die(cli_exit_code(&err), "%s; %zu id(s) read were "
				"not committed", err.msg, ids->n);
	}
	ids_clear(ids);
}

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
	stop_signal = sig;
}

/* Input lines not yet complete. */
struct inbuf {
	char *p;
	size_t len, cap;
	size_t lineno;
};

/* Read once from fd into in; 1 if data came, 0 at EOF, -1 if
 * interrupted. */
static int in_read(struct inbuf *in, int fd)
{
	ssize_t n;

	if (in->cap - in->len < 65536) {
		in->cap = in->cap ? 2 * in->cap : 131072;
		in->p = cli_xrealloc(in->p, in->cap, 1);
	}
	n = read(fd, in->p + in->len, in->cap - in->len);
	if (n < 0) {
		if (errno == EINTR)
			return -1;
		cli_die(EX_IOERR_, "reading standard input: %s", strerror(errno));
	}
	in->len += (size_t)n;
	return n > 0;
}

/* Take every complete line of in into ids (and, at EOF, the rest). */
static void in_lines(struct inbuf *in, struct ids *ids, bool eof)
{
	size_t pos = 0;
	char where[32];

	for (;;) {
		char *nl = memchr(in->p + pos, '\n', in->len - pos);
		size_t len;
		if (!nl && !(eof && pos < in->len))
			break;
		len = nl ? (size_t)(nl - (in->p + pos)) : in->len - pos;
		snprintf(where, sizeof where, "line %zu", ++in->lineno);
		add_line(ids, in->p + pos, len, where);
		pos += len + (nl != NULL);
	}
	memmove(in->p, in->p + pos, in->len - pos);
	in->len -= pos;
}

/*
 * Ids from stdin, committed in batches: what has been read when
 * --interval has passed since the oldest id not yet committed, and at the
 * end of the input. A regular file is read whole as one batch. On SIGINT
 * or SIGTERM, what can still be read at once is read and committed, so a
 * pipeline stopped half way commits what it finished.
 */
static void commit_stdin(mq_ep **ep, struct ids *ids)
{
	struct inbuf in = { 0 };
	struct sigaction sa = { .sa_handler = on_stop };
	struct stat st;
	bool whole = fstat(0, &st) == 0 && S_ISREG(st.st_mode);
	int64_t deadline = 0;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	for (;;) {
		struct pollfd pfd = { .fd = 0, .events = POLLIN };
		int timeout = -1, r;
		size_t before;

		if (stop_signal) {
			/* Take what is already there, then stop. A line
			 * still being written is not an id yet: it is left
			 * out, unless the input has ended there. */
			bool eof = false;

			while (poll(&pfd, 1, 0) == 1) {
				int got = in_read(&in, 0);
				if (got == 0)
					eof = true;
				if (got != 1)
					break;
			}
			in_lines(&in, ids, eof);
			if (in.len)
				cli_warn("stopping: the unfinished last line "
					 "(%zu bytes) was left out", in.len);
			break;
		}
		if (ids->n && !whole) {
			int64_t left = deadline - mq_mono_ms();
			timeout = left < 0 ? 0 : left > INT32_MAX ? INT32_MAX
								: (int)left;
		}
		r = poll(&pfd, 1, timeout);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			cli_die(EX_IOERR_, "reading standard input: %s",
				strerror(errno));
		}
		if (r == 0) {
			commit_ids(ep, ids);
			continue;
		}
		r = in_read(&in, 0);
		if (r < 0)
			continue;
		before = ids->n;
		in_lines(&in, ids, r == 0);
		if (r == 0)
			break;
		if (before == 0 && ids->n)
			deadline = mq_mono_ms() + o.interval_ms;
		if (ids->n && !whole && mq_mono_ms() >= deadline)
			commit_ids(ep, ids);
	}
	commit_ids(ep, ids);
	free(in.p);
}

static int cmd_commit(void)
{
	mq_ep *ep = open_ep(false);
	struct ids ids = { 0 };
	char where[32];

	if (o.nargs) {
		for (int i = 0; i < o.nargs; i++) {
			snprintf(where, sizeof where, "argument %d", i + 1);
			add_line(&ids, o.args[i], strlen(o.args[i]), where);
		}
		commit_ids(&ep, &ids);
	} else {
		commit_stdin(&ep, &ids);
	}
	free(ids.v);
	mq_ep_close(ep);
	return 0;
}

/* ---- reset ---- */

struct target {
	const char *topic;
	int32_t partition;
	int64_t current;         /* -1: none committed */
	int64_t want;            /* before clamping */
	int64_t to;
	int64_t start, end;
};

static int64_t sat_add(int64_t a, int64_t b)
{
	if (b > 0 && a > INT64_MAX - b)
		return INT64_MAX;
	if (b < 0 && a < INT64_MIN - b)
		return INT64_MIN;
	return a + b;
}

static int cmd_reset(void)
{
	mq_ep *ep = open_ep(!o.execute);
	mq_topic_meta *m;
	mq_group_info *g;
	size_t nm, ng, nt = 0;
	struct target *tg;
	mq_err err;
	char t1[40];

	get_metadata(ep, &m, &nm);
	if (mq_ep_describe_groups(ep, o.group, &g, &ng, &err) < 0)
		die_err(&err);
	if (ng && g[0].nmembers && !o.force)
		cli_die(EX_TEMPFAIL_, "group %s has %zu live member(s) (%s%s); "
			"stop them first, or use --force", o.group,
			g[0].nmembers, g[0].members[0].member_id,
			g[0].nmembers > 1 ? ", ..." : "");
	/* The partitions, in the order given, each once. */
	size_t cap = 0;
	for (size_t i = 0; i < o.ntopics; i++)
		cap += o.topics[i].parts ? o.topics[i].nparts
					 : (size_t)m[i].nparts;
	tg = cli_xcalloc(cap, sizeof *tg);
	for (size_t i = 0; i < o.ntopics; i++) {
		const struct topic_arg *ta = &o.topics[i];
		size_t n = ta->parts ? ta->nparts : (size_t)m[i].nparts;
		for (size_t k = 0; k < n; k++) {
			int32_t p = ta->parts ? ta->parts[k] : m[i].parts[k].id;
			const mq_part_meta *pm = mq_part_meta_find(&m[i], p);
			const mq_group_offset *c;
			bool dup = false;

			if (!pm)
				cli_die(EX_DATAERR_, "topic %s has no partition "
					"%d (it has %d)", ta->name, p,
					m[i].nparts);
			for (size_t x = 0; x < nt && !dup; x++)
				dup = tg[x].partition == p &&
				      strcmp(tg[x].topic, ta->name) == 0;
			if (dup)
				continue;
			c = ng ? mq_group_committed(&g[0], ta->name, p) : NULL;
			tg[nt++] = (struct target){
				.topic = ta->name, .partition = p,
				.current = c ? c->offset : -1,
				.start = pm->start, .end = pm->end,
			};
		}
	}
	for (size_t i = 0; i < nt; i++) {
		struct target *x = &tg[i];
		switch (o.mode) {
		case R_EARLIEST:
			x->want = x->start;
			break;
		case R_LATEST:
			x->want = x->end;
			break;
		case R_OFFSET:
			x->want = o.mode_n;
			break;
		case R_SHIFT:
			/* No committed offset: where a new member starts by
			 * default (mq-recv --from-new end). */
			if (x->current < 0 && !o.quiet)
				cli_warn("%s/%d has no committed offset; "
					 "shifting from its end offset %" PRId64,
					 x->topic, x->partition, x->end);
			x->want = sat_add(x->current < 0 ? x->end : x->current,
					  o.mode_n);
			break;
		case R_DATETIME:
		case R_DURATION:
			if (mq_ep_list_offset(ep, x->topic, x->partition,
					      o.mode_n, &x->want, &err) < 0)
				die_err(&err);
			break;
		case R_NONE:
			break;
		}
		x->to = x->want < x->start ? x->start
			: x->want > x->end ? x->end : x->want;
		if (x->to != x->want && !o.quiet)
			cli_warn("%s/%d: %" PRId64 " is %s offset %" PRId64
				 "; using %" PRId64, x->topic, x->partition,
				 x->want, x->want < x->start
				 ? "before the log start" : "past the log end",
				 x->want < x->start ? x->start : x->end, x->to);
	}
	if (o.execute && nt) {
		mq_commit_entry *e = cli_xcalloc(nt, sizeof *e);
		for (size_t i = 0; i < nt; i++)
			e[i] = (mq_commit_entry){ tg[i].topic, tg[i].partition,
						  tg[i].to };
		if (mq_ep_commit(ep, o.group, "", -1,
				 MQ_COMMIT_BACKWARD |
				 (o.force ? 0 : MQ_COMMIT_IF_EMPTY),
				 e, nt, &err) < 0)
			cli_die(cli_exit_code(&err), "reset refused: %s; no "
				"offset was changed", err.msg);
		free(e);
	}
	if (!o.quiet) {
		cli_table t;
		struct json j = { 0 };
		cli_table_init(&t, "GROUP", "TOPIC", "PARTITION",
			       "CURRENT-OFFSET", "NEW-OFFSET", NULL);
		for (size_t i = 0; i < nt; i++) {
			if (o.fmt == FMT_JSON) {
				j_begin(&j);
				j_str(&j, "group", o.group);
				j_str(&j, "topic", tg[i].topic);
				j_int(&j, "partition", tg[i].partition);
				j_num(&j, "current_offset", tg[i].current);
				j_int(&j, "new_offset", tg[i].to);
				j_bool(&j, "clamped", tg[i].to != tg[i].want);
				j_bool(&j, "executed", o.execute);
				j_end(&j);
			} else {
				cli_table_add(&t, "%s", o.group);
				cli_table_add(&t, "%s", tg[i].topic);
				cli_table_add(&t, "%d", tg[i].partition);
				cli_table_num(&t, tg[i].current);
				cli_table_num(&t, tg[i].to);
			}
		}
		if (o.fmt == FMT_TABLE && nt)
			cli_table_flush(&t, true);
		else
			cli_table_free(&t);
		mq_w_free(&j.w);
		fflush(stdout);
		if (!o.execute) {
			if (o.mode == R_DATETIME || o.mode == R_DURATION)
				cli_warn("dry run: records from %s on; nothing "
					 "was changed (add --execute)",
					 cli_format_time(o.mode_n, t1, sizeof t1));
			else
				cli_warn("dry run: nothing was changed (add "
					 "--execute)");
		}
	}
	free(tg);
	mq_group_info_free(g, ng);
	mq_topic_meta_free(m, nm);
	mq_ep_close(ep);
	return 0;
}

/* ---- main ---- */

/* -t TOPIC, or for reset TOPIC:P,P-Q,... */
static void add_topic(const char *arg)
{
	struct topic_arg ta = { 0 };
	const char *colon = strchr(arg, ':');
	mq_err err;

	ta.name = colon ? strndup(arg, (size_t)(colon - arg)) : cli_xstrdup(arg);
	if (!ta.name)
		cli_die(EX_SOFTWARE_, "out of memory");
	if (mq_topic_check(ta.name, true, &err) < 0)
		cli_usage_error("-t %s: %s", arg, err.msg);
	if (colon) {
		const char *p = colon + 1;
		size_t cap = 0;
		if (!*p)
			cli_usage_error("-t %s: no partitions after ':'", arg);
		while (*p) {
			const char *comma = strchr(p, ',');
			size_t len = comma ? (size_t)(comma - p) : strlen(p);
			const char *dash = memchr(p, '-', len);
			int64_t a, b;
			if (dash) {
				if (parse_uint(p, (size_t)(dash - p), INT32_MAX, &a) < 0 ||
				    parse_uint(dash + 1, len - (size_t)(dash - p) - 1,
					       INT32_MAX, &b) < 0 || b < a)
					cli_usage_error("-t %s: bad partition range "
							"'%.*s'", arg, (int)len, p);
			} else if (parse_uint(p, len, INT32_MAX, &a) < 0) {
				cli_usage_error("-t %s: bad partition '%.*s'", arg,
						(int)len, p);
			} else {
				b = a;
			}
			if (b - a > 65535)
				cli_usage_error("-t %s: too many partitions", arg);
			for (int64_t x = a; x <= b; x++) {
				if (ta.nparts == cap) {
					cap = cap ? 2 * cap : 8;
					ta.parts = cli_xrealloc(ta.parts, cap,
							    sizeof *ta.parts);
				}
				ta.parts[ta.nparts++] = (int32_t)x;
			}
			p += len;
			if (*p == ',' && !*++p)
				cli_usage_error("-t %s: no partition after ','",
						arg);
		}
	}
	for (size_t i = 0; i < o.ntopics; i++)
		if (strcmp(o.topics[i].name, ta.name) == 0) {
			/* The same topic twice: merge its partitions. */
			struct topic_arg *old = &o.topics[i];
			if (!old->parts || !ta.parts) {
				free(old->parts);
				old->parts = NULL;
				old->nparts = 0;
			} else {
				old->parts = cli_xrealloc(old->parts,
						      old->nparts + ta.nparts,
						      sizeof *old->parts);
				memcpy(old->parts + old->nparts, ta.parts,
				       ta.nparts * sizeof *ta.parts);
				old->nparts += ta.nparts;
			}
			free(ta.parts);
			free(ta.name);
			return;
		}
	o.topics = cli_xrealloc(o.topics, o.ntopics + 1, sizeof *o.topics);
	o.topics[o.ntopics++] = ta;
}

static void set_mode(enum reset_mode mode, const char *opt)
{
	if (o.mode != R_NONE)
		cli_usage_error("%s and %s: choose one target", o.mode_opt, opt);
	o.mode = mode;
	o.mode_opt = opt;
}

static void parse_args(int argc, char **argv)
{
	unsigned given[NRULES] = { 0 };
	bool want_help = false;
	char why[128];
	int ch;

	while ((ch = getopt_long(argc, argv, "b:d:Jqg:t:hV", longopts,
				 NULL)) != -1) {
		for (size_t i = 0; i < NRULES; i++)
			if (optrule[i].ch == ch)
				given[i] = 1;
		switch (ch) {
		case 'b':
			o.broker = optarg;
			break;
		case 'd':
			o.dir = optarg;
			break;
		case 'J':
			if (o.fmt == FMT_PROM)
				cli_usage_error("-J and --prometheus: choose one");
			o.fmt = FMT_JSON;
			break;
		case O_PROM:
			if (o.fmt == FMT_JSON)
				cli_usage_error("-J and --prometheus: choose one");
			o.fmt = FMT_PROM;
			break;
		case 'q':
			o.quiet = true;
			break;
		case 'g': {
			mq_err err;
			if (mq_name_check(optarg, &err) < 0)
				cli_usage_error("-g %s: %s", optarg, err.msg);
			o.group = optarg;
			break;
		}
		case 't':
			add_topic(optarg);
			break;
		case O_MAX_LAG:
			o.max_lag = cli_int("--max-lag", optarg, 0, INT64_MAX);
			break;
		case O_FORCE:
			o.force = true;
			break;
		case O_EXECUTE:
			o.execute = true;
			break;
		case O_INTERVAL:
			o.interval_ms = cli_duration_ms("--interval", optarg, 0,
							86400000);
			break;
		case O_EARLIEST:
			set_mode(R_EARLIEST, "--to-earliest");
			break;
		case O_LATEST:
			set_mode(R_LATEST, "--to-latest");
			break;
		case O_TO_OFFSET:
			set_mode(R_OFFSET, "--to-offset");
			o.mode_n = cli_int("--to-offset", optarg, 0, INT64_MAX);
			break;
		case O_SHIFT:
			set_mode(R_SHIFT, "--shift-by");
			o.mode_n = cli_int("--shift-by", optarg, -INT64_MAX,
					   INT64_MAX);
			break;
		case O_DATETIME:
			set_mode(R_DATETIME, "--to-datetime");
			if (cli_parse_time(optarg, false, &o.mode_n, why, sizeof why) < 0)
				cli_usage_error("--to-datetime %s: %s", optarg,
						why);
			break;
		case O_DURATION:
			set_mode(R_DURATION, "--by-duration");
			o.mode_n = mq_now_ms() - cli_duration_ms("--by-duration",
				optarg, 0, INT64_MAX / 2);
			break;
		case 'h':
			want_help = true;
			break;
		case 'V':
			printf("mq-offset %s\n", MQ_VERSION);
			exit(0);
		default:
			fprintf(stderr, "Try 'mq-offset --help'.\n");
			exit(EX_USAGE_);
		}
	}
	if (optind < argc) {
		for (int s = SUB_STATUS; s <= SUB_RESET; s++)
			if (strcmp(argv[optind], sub_names[s]) == 0)
				o.sub = (enum sub)s;
		if (o.sub == SUB_NONE && !want_help)
			cli_usage_error("unknown subcommand '%s' (status, topics, "
					"groups, commit or reset)", argv[optind]);
		optind++;
	}
	if (want_help)
		help(o.sub);
	if (o.sub == SUB_NONE) {
		print_usage(stderr, SUB_NONE);
		exit(EX_USAGE_);
	}
	for (size_t i = 0; i < NRULES; i++)
		if (given[i] && !(optrule[i].subs & S(o.sub)))
			cli_usage_error("%s does not apply to %s", optrule[i].name,
					sub_names[o.sub]);
	o.args = argv + optind;
	o.nargs = argc - optind;
	if (o.nargs && o.sub != SUB_COMMIT)
		cli_usage_error("unexpected argument '%s'", argv[optind]);
	if ((o.sub == SUB_COMMIT || o.sub == SUB_RESET) && !o.group)
		cli_usage_error("%s needs -g GROUP", sub_names[o.sub]);
	if (o.sub == SUB_RESET) {
		if (!o.ntopics)
			cli_usage_error("reset needs -t TOPIC");
		if (o.mode == R_NONE)
			cli_usage_error("reset needs a target: --to-earliest, "
					"--to-latest, --to-offset, --shift-by, "
					"--to-datetime or --by-duration");
		if (o.mode_n < 0 && (o.mode == R_DATETIME ||
				     o.mode == R_DURATION))
			o.mode_n = 0;   /* before 1970: from the first record */
	} else {
		for (size_t i = 0; i < o.ntopics; i++)
			if (o.topics[i].parts)
				cli_usage_error("-t %s:...: partitions can only "
						"be chosen with reset",
						o.topics[i].name);
	}
}

int main(int argc, char **argv)
{
	int rc = 0;

	cli_init(argv[0]);
	parse_args(argc, argv);
	switch (o.sub) {
	case SUB_STATUS: rc = cmd_status(); break;
	case SUB_TOPICS: rc = cmd_topics(); break;
	case SUB_GROUPS: rc = cmd_groups(); break;
	case SUB_COMMIT: rc = cmd_commit(); break;
	case SUB_RESET: rc = cmd_reset(); break;
	case SUB_NONE: break;
	}
	if (fflush(stdout) != 0 || ferror(stdout))
		cli_die(EX_IOERR_, "writing standard output: %s",
			strerror(errno));
	for (size_t i = 0; i < o.ntopics; i++) {
		free(o.topics[i].name);
		free(o.topics[i].parts);
	}
	free(o.topics);
	return rc;
}
