/*
 * mq-brokerd - the mq broker daemon (mq-brokerd(8)).
 *
 * Owns one data directory (locked for its lifetime) and serves producers
 * and consumers over TCP and/or Unix sockets from one libev loop. The
 * engine lives in cmd/brokerd/ (see broker.h for a map).
 */
#include "brokerd/broker.h"
#include "cli/cli.h"
#include "io.h"
#include "lock.h"
#include "net.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONTAINER(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

#define SHUTDOWN_GRACE_MS 10000
#define FLUSH_SPIN_DEFAULT_US 500
#define STR_(x) #x
#define STR(x) STR_(x)

static const char usage_text[] =
"usage: mq-brokerd [-qv] [-d dir] [-l addr]... [--pidfile file]\n"
"                  [--flush sync|async] [--flush-interval ms]\n"
"                  [--flush-timeout ms] [--flush-spin us] [--partitions n]\n"
"                  [--no-auto-create] [--segment-bytes size]\n"
"                  [--preallocate size]\n"
"                  [--retention-bytes size] [--retention-time duration]\n"
"                  [--retention-check duration]\n"
"                  [--max-message-bytes size] [--max-frame-bytes size]\n"
"                  [--max-connections n] [--idle-timeout duration]\n"
"                  [--max-wait duration]\n"
"       mq-brokerd -h | --help | -V | --version\n"
"\n"
"  -d, --dir DIR            data directory (default ./mq-data)\n"
"  -l, --listen ADDR        host:port or unix:/path; repeatable\n"
"                           (default 127.0.0.1:7420)\n"
"      --pidfile FILE       write the pid to FILE while running\n"
"      --flush MODE         sync: acknowledge after fdatasync (default);\n"
"                           async: acknowledge after write, flush later\n"
"      --flush-interval MS  async flush period (default 1000)\n"
"      --flush-timeout MS   sync: answer flush-timeout after (default 5000)\n"
"      --flush-spin US      sync: poll up to US before sleeping\n"
"                           (default " STR(FLUSH_SPIN_DEFAULT_US) ")\n"
"      --partitions N       partitions of auto-created topics (default 1)\n"
"      --no-auto-create     refuse produces to unknown topics\n"
"      --segment-bytes SIZE roll segments at SIZE (default 1G)\n"
"      --preallocate SIZE   sync: grow segment files by SIZE of zeros\n"
"                           at a time, 0 = off (default 1M)\n"
"      --retention-bytes SIZE   keep at most SIZE per partition (default: no limit)\n"
"      --retention-time DUR     delete segments older than DUR (default: never)\n"
"      --retention-check DUR    how often retention runs (default 60s)\n"
"      --max-message-bytes SIZE largest record (default 1M)\n"
"      --max-frame-bytes SIZE   largest request frame (default 16M)\n"
"      --max-connections N  (default 1000)\n"
"      --idle-timeout DUR   close silent connections (default 10m)\n"
"      --max-wait DUR       cap on a fetch's long-poll wait (default 30s)\n"
"  -q, --quiet              log warnings and errors only\n"
"  -v, --verbose            log debug messages too\n"
"  -h, --help               print this help\n"
"  -V, --version            print the version\n";

enum {
	O_PIDFILE = 256, O_FLUSH, O_FLUSH_INTERVAL, O_FLUSH_TIMEOUT, O_FLUSH_SPIN,
	O_PARTITIONS, O_NO_AUTO_CREATE, O_SEGMENT, O_PREALLOC, O_RET_BYTES, O_RET_TIME,
	O_RET_CHECK, O_MAX_MESSAGE, O_MAX_FRAME, O_MAX_CONNS, O_IDLE,
	O_MAX_WAIT,
};

static const struct option longopts[] = {
	{ "dir", required_argument, NULL, 'd' },
	{ "listen", required_argument, NULL, 'l' },
	{ "pidfile", required_argument, NULL, O_PIDFILE },
	{ "flush", required_argument, NULL, O_FLUSH },
	{ "flush-interval", required_argument, NULL, O_FLUSH_INTERVAL },
	{ "flush-timeout", required_argument, NULL, O_FLUSH_TIMEOUT },
	{ "flush-spin", required_argument, NULL, O_FLUSH_SPIN },
	{ "partitions", required_argument, NULL, O_PARTITIONS },
	{ "no-auto-create", no_argument, NULL, O_NO_AUTO_CREATE },
	{ "segment-bytes", required_argument, NULL, O_SEGMENT },
	{ "preallocate", required_argument, NULL, O_PREALLOC },
	{ "retention-bytes", required_argument, NULL, O_RET_BYTES },
	{ "retention-time", required_argument, NULL, O_RET_TIME },
	{ "retention-check", required_argument, NULL, O_RET_CHECK },
	{ "max-message-bytes", required_argument, NULL, O_MAX_MESSAGE },
	{ "max-frame-bytes", required_argument, NULL, O_MAX_FRAME },
	{ "max-connections", required_argument, NULL, O_MAX_CONNS },
	{ "idle-timeout", required_argument, NULL, O_IDLE },
	{ "max-wait", required_argument, NULL, O_MAX_WAIT },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static void parse_args(int argc, char **argv, struct broker_opts *o)
{
	int ch;

	*o = (struct broker_opts){
		.dir = "./mq-data",
		.flush_sync = true,
		.flush_interval_ms = 1000,
		.flush_timeout_ms = 5000,
		.flush_spin_us = FLUSH_SPIN_DEFAULT_US,
		.default_partitions = 1,
		.auto_create = true,
		.segment_bytes = 1ull << 30,
		.prealloc_bytes = 1 << 20,
		.retention_check_ms = 60000,
		.max_message = MQ_DEFAULT_MAX_MESSAGE,
		.max_frame = MQ_DEFAULT_MAX_FRAME,
		.max_conns = 1000,
		.idle_timeout_ms = 600000,
		.max_wait_ms = MQ_DEFAULT_MAX_WAIT_MS,
		.out_limit = 4 << 20,
		.log_level = LOG_INFO,
	};
	while ((ch = getopt_long(argc, argv, "d:l:qvhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			o->dir = optarg;
			break;
		case 'l':
			if (o->nlisten == MAX_LISTEN)
				cli_usage_error("at most %d -l addresses", MAX_LISTEN);
			o->listen[o->nlisten++] = optarg;
			break;
		case O_PIDFILE:
			o->pidfile = optarg;
			break;
		case O_FLUSH:
			if (!strcmp(optarg, "sync"))
				o->flush_sync = true;
			else if (!strcmp(optarg, "async"))
				o->flush_sync = false;
			else
				cli_usage_error("--flush %s: use sync or async",
						optarg);
			break;
		case O_FLUSH_INTERVAL:
			o->flush_interval_ms = (int)cli_duration_ms(
				"--flush-interval", optarg, 1, 3600000);
			break;
		case O_FLUSH_TIMEOUT:
			o->flush_timeout_ms = (int)cli_duration_ms(
				"--flush-timeout", optarg, 1, 3600000);
			break;
		case O_FLUSH_SPIN:
			o->flush_spin_us = (int)cli_int("--flush-spin", optarg,
							0, 100000);
			break;
		case O_PARTITIONS:
			o->default_partitions = (int)cli_int("--partitions",
				optarg, 1, MQ_MAX_PARTITIONS);
			break;
		case O_NO_AUTO_CREATE:
			o->auto_create = false;
			break;
		case O_SEGMENT:
			o->segment_bytes = cli_size("--segment-bytes", optarg,
						    4096, UINT32_MAX);
			break;
		case O_PREALLOC:
			o->prealloc_bytes = cli_size("--preallocate", optarg,
						     0, 1ull << 30);
			break;
		case O_RET_BYTES:
			o->retention_bytes = cli_size("--retention-bytes",
						      optarg, 1, UINT64_MAX);
			break;
		case O_RET_TIME:
			o->retention_ms = cli_duration_ms("--retention-time",
							  optarg, 1, INT64_MAX / 2);
			break;
		case O_RET_CHECK:
			o->retention_check_ms = (int)cli_duration_ms(
				"--retention-check", optarg, 10, 86400000);
			break;
		case O_MAX_MESSAGE:
			o->max_message = (uint32_t)cli_size("--max-message-bytes",
				optarg, 1, MQ_BATCH_MAX_BYTES / 2);
			break;
		case O_MAX_FRAME:
			o->max_frame = (uint32_t)cli_size("--max-frame-bytes",
				optarg, 65536, MQ_BATCH_MAX_BYTES);
			break;
		case O_MAX_CONNS:
			o->max_conns = (int)cli_int("--max-connections", optarg,
						    1, 1000000);
			break;
		case O_IDLE:
			o->idle_timeout_ms = (int)cli_duration_ms("--idle-timeout",
				optarg, 1000, 86400000);
			break;
		case O_MAX_WAIT:
			o->max_wait_ms = (int)cli_duration_ms("--max-wait",
				optarg, 0, 600000);
			break;
		case 'q':
			o->log_level = LOG_WARN;
			break;
		case 'v':
			o->log_level = LOG_DEBUG;
			break;
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		case 'V':
			printf("mq-brokerd %s\n", MQ_VERSION);
			exit(0);
		default:
			fprintf(stderr, "Try 'mq-brokerd --help'.\n");
			exit(EX_USAGE_);
		}
	}
	if (optind < argc)
		cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (o->nlisten == 0)
		o->listen[o->nlisten++] = MQ_DEFAULT_ADDR;
	for (int i = 0; i < o->nlisten; i++) {
		mq_addr a;
		mq_err err;
		if (mq_addr_parse(o->listen[i], &a, &err) < 0)
			cli_usage_error("-l %s", err.msg);
	}
	if ((uint64_t)o->max_message + 4096 > o->max_frame)
		cli_usage_error("--max-frame-bytes (%u) must exceed "
				"--max-message-bytes (%u) by at least 4096",
				o->max_frame, o->max_message);
	if (o->segment_bytes < (uint64_t)o->max_frame)
		log_msg(LOG_INFO, "note: segments (%llu bytes) are smaller than "
			"the largest frame; large batches get a segment each",
			(unsigned long long)o->segment_bytes);
}

static bool quiescent(struct broker *b)
{
	if (!flusher_idle(b))
		return false;
	for (struct conn *c = b->conns; c; c = c->next)
		if (c->out_head || c->deferred)
			return false;
	return true;
}

static void on_shutdown_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct broker *b = CONTAINER(w, struct broker, shutdown_timer);
	(void)revents;

	if (b->dirty)
		flusher_kick(b);
	if (quiescent(b)) {
		ev_break(loop, EVBREAK_ALL);
	} else if (mq_mono_ms() > b->stop_deadline) {
		log_warn("stopping with replies still owed to clients");
		ev_break(loop, EVBREAK_ALL);
	}
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct broker *b = w->data;
	(void)revents;

	if (b->stopping) {
		log_warn("second signal: stopping now");
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	log_info("signal %d: stopping (finishing in-flight requests)",
		 w->signum);
	b->stopping = true;
	b->stop_deadline = mq_mono_ms() + SHUTDOWN_GRACE_MS;
	server_begin_shutdown(b);
	waiter_cancel_all(b);
	groups_shutdown(b);
	flusher_kick(b);
	ev_timer_init(&b->shutdown_timer, on_shutdown_tick, 0., 0.01);
	ev_timer_start(loop, &b->shutdown_timer);
}

static void on_retention(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct broker *b = CONTAINER(w, struct broker, retention_timer);
	(void)loop;
	(void)revents;
	retention_run(b);
}

static int write_pidfile(const char *path, mq_err *err)
{
	char buf[32];
	int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
	return mq_write_file_atomic(path, buf, (size_t)n, err);
}

int main(int argc, char **argv)
{
	static struct broker br;
	struct broker *b = &br;
	mq_store_opts so = { 0 };
	mq_err err = { 0 };
	pid_t holder = 0;
	int rc = 0;

	cli_init(argv[0]);
	parse_args(argc, argv, &b->o);
	log_init(b->o.log_level);
	signal(SIGPIPE, SIG_IGN);
	/* A file size limit must show up as a write error (EFBIG), which
	 * the log handles like a full disk, not kill the broker. */
	signal(SIGXFSZ, SIG_IGN);

	if (mkdir(b->o.dir, 0755) < 0 && errno != EEXIST) {
		log_error("cannot create data directory %s: %s", b->o.dir,
			  strerror(errno));
		return EX_IOERR_;
	}
	b->lock_fd = mq_dirlock_acquire(b->o.dir, false, "broker", &holder, &err);
	if (b->lock_fd < 0) {
		log_error("%s", err.msg);
		return err.code == MQ_E_LOCKED ? EX_TEMPFAIL_ : EX_IOERR_;
	}
	if (b->o.pidfile && write_pidfile(b->o.pidfile, &err) < 0) {
		log_error("pidfile: %s", err.msg);
		return EX_IOERR_;
	}
	b->loop = ev_default_loop(EVFLAG_AUTO);
	b->start_mono = mq_mono_ms();
	mq_w_init(&b->scratch);
	so.part.segment_bytes = b->o.segment_bytes;
	so.part.prealloc_bytes = b->o.flush_sync ? b->o.prealloc_bytes : 0;
	so.part.create = true;
	if (mq_store_open(b->o.dir, &so, &b->store, &err) < 0 ||
	    producers_init(b, &err) < 0 || topics_load(b, &err) < 0 ||
	    flusher_start(b, &err) < 0) {
		log_error("%s", err.msg);
		if (b->o.pidfile)
			unlink(b->o.pidfile);
		return EX_IOERR_;
	}
	groups_init(b);
	if (server_listen(b, &err) < 0) {
		log_error("%s", err.msg);
		if (b->o.pidfile)
			unlink(b->o.pidfile);
		return EX_IOERR_;
	}
	ev_signal_init(&b->sigterm, on_signal, SIGTERM);
	ev_signal_init(&b->sigint, on_signal, SIGINT);
	b->sigterm.data = b->sigint.data = b;
	ev_signal_start(b->loop, &b->sigterm);
	ev_signal_start(b->loop, &b->sigint);
	ev_timer_init(&b->retention_timer, on_retention,
		      b->o.retention_check_ms / 1000.0,
		      b->o.retention_check_ms / 1000.0);
	ev_timer_start(b->loop, &b->retention_timer);
	log_info("mq-brokerd %s ready: data in %s, flush %s, pid %ld",
		 MQ_VERSION, b->o.dir, b->o.flush_sync ? "sync" : "async",
		 (long)getpid());

	ev_run(b->loop, 0);

	ev_timer_stop(b->loop, &b->shutdown_timer);
	ev_timer_stop(b->loop, &b->retention_timer);
	server_close_all(b);
	flusher_stop(b);
	groups_free(b);
	if (mq_store_close(b->store, &err) < 0) {
		log_error("closing the data directory: %s", err.msg);
		rc = EX_IOERR_;
	}
	topics_free(b);
	mq_w_free(&b->scratch);
	if (b->o.pidfile)
		unlink(b->o.pidfile);
	for (int i = 0; i < b->o.nlisten; i++) {
		mq_addr a;
		if (mq_addr_parse(b->o.listen[i], &a, NULL) == 0 && a.is_unix)
			unlink(a.path);
	}
	mq_dirlock_release(b->lock_fd);
	ev_loop_destroy(b->loop);
	log_info("stopped");
	return rc;
}
