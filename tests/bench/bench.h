/*
 * bench.h - what the benchmarks share: a clock, the broker built next to
 * them started on a unix socket in their data directory and stopped
 * again, and a client connection. Header-only, like tests/unit/harness.h:
 * each benchmark is one .c file.
 *
 * A benchmark's main begins with bench_start, which also sets bench_name
 * (for messages). Each
 * fails by printing why and exiting 1; a benchmark with children of its
 * own stops them from an atexit handler.
 */
#ifndef MQ_BENCH_H
#define MQ_BENCH_H

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "proto.h"

static const char *bench_name = "bench";

/*
 * What a benchmark that runs the programs does first: check for its one
 * argument, the data directory (else print the usage and exit 64); name
 * the messages; find the programs built next to it (bin_dir gets
 * BUILD/bin); ignore SIGPIPE. Returns MQ_BENCH_SCALE, 1 if unset or not
 * positive.
 */
__attribute__((unused))
static double bench_start(int argc, char **argv, const char *name,
			  char *bin_dir, size_t size)
{
	char self[PATH_MAX];
	const char *s = getenv("MQ_BENCH_SCALE");
	double scale = s ? atof(s) : 1;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", name);
		exit(64);
	}
	bench_name = name;
	snprintf(self, sizeof self, "%s", argv[0]);
	snprintf(bin_dir, size, "%s/../bin", dirname(self));
	signal(SIGPIPE, SIG_IGN);
	return scale > 0 ? scale : 1;
}

/* Seconds on the monotonic clock. */
__attribute__((unused)) static double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Print "NAME: what: why" (why NULL: errno's text) and exit 1. */
__attribute__((noreturn, unused))
static void bench_fail(const char *what, const char *why)
{
	fprintf(stderr, "%s: %s: %s\n", bench_name, what,
		why ? why : strerror(errno));
	exit(1);
}

/*
 * Start broker_bin with --flush flush on DATA/broker-FLUSH, listening on
 * DATA/s.sock (its address written to addr), its log in
 * DATA/broker-FLUSH.log, and wait until it answers. Returns its pid.
 */
__attribute__((unused))
static pid_t bench_broker_start(const char *broker_bin, const char *data,
				const char *flush, char *addr, size_t size)
{
	char dir[PATH_MAX + 64], log[PATH_MAX + 64];
	pid_t pid;

	snprintf(dir, sizeof dir, "%s/broker-%s", data, flush);
	snprintf(log, sizeof log, "%s/broker-%s.log", data, flush);
	snprintf(addr, size, "unix:%s/s.sock", data);
	pid = fork();
	if (pid < 0)
		bench_fail("fork", NULL);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0)
			dup2(fd, 2);
		execl(broker_bin, broker_bin, "-d", dir, "-l", addr, "--flush",
		      flush, "-q", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {
		mq_client *c;
		mq_err err;

		if (mq_client_open(addr, NULL, &c, &err) == 0) {
			mq_client_close(c);
			return pid;
		}
		usleep(25000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	bench_fail("the broker did not start; see", log);
}

/* SIGTERM, and wait for it (a broker flushes everything as it stops). */
__attribute__((unused)) static void bench_broker_stop(pid_t pid)
{
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

__attribute__((unused)) static mq_client *bench_connect(const char *addr)
{
	mq_client *c;
	mq_err err;

	if (mq_client_open(addr, NULL, &c, &err) < 0)
		bench_fail("connect", err.msg);
	return c;
}

/* Create topic with one partition, unless it exists. */
__attribute__((unused))
static void bench_create_topic(const char *addr, const char *topic)
{
	mq_client *c = bench_connect(addr);
	mq_err err;

	if (mq_client_create_topic(c, topic, 1, &err) < 0 &&
	    err.code != MQ_E_EXISTS)
		bench_fail("create topic", err.msg);
	mq_client_close(c);
}

/* Produce the batch (len bytes) `batches` times to partition 0 of topic
 * over c, with up to `window` requests in flight; every reply must be
 * ok. */
__attribute__((unused))
static void bench_produce_pipelined(mq_client *c, const char *topic,
				    const uint8_t *batch, size_t len,
				    long batches, long window)
{
	long sent = 0, acked = 0;
	mq_wbuf w;
	mq_err err;

	mq_w_init(&w);
	while (acked < batches) {
		mq_reply r;

		mq_w_reset(&w);
		while (sent < batches && sent - acked < window) {
			mq_req_produce(&w, mq_client_next_id(c), topic, 0, NULL,
				       -1, 1, batch, len);
			sent++;
		}
		if (w.len && mq_client_send(c, w.p, w.len, &err) < 0)
			bench_fail("send", err.msg);
		if (mq_client_recv(c, -1, &r, &err) != 1)
			bench_fail("receive", err.msg);
		if (r.code)
			bench_fail("produce failed", r.msg);
		acked++;
	}
	mq_w_free(&w);
}

#endif
