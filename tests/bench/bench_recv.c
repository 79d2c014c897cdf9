/*
 * bench_recv.c - how fast mq-recv consumes, and how long a message takes
 * from its send to mq-recv's output.
 *
 *   bench_recv DIR
 *
 * Starts the broker built next to this program (../bin/mq-brokerd, with
 * --flush async) on a unix socket in DIR, fills a one-partition topic
 * with 1,000,000 records of 100 bytes, and measures:
 *   - mq-recv -e reading all of it to /dev/null (the target is 1,000,000
 *     messages/s), then the same as a group member committing at the end
 *     (-g, --commit after), and with -J;
 *   - end-to-end latency p50/p99 under long polling: mq-recv follows the
 *     topic with its output on a pipe; one message at a time is sent
 *     (through the client library, as mq-send does, and through a running
 *     ../bin/mq-send --sync when that program exists) and timed until its
 *     line comes out of mq-recv. Done with --flush async and --flush sync.
 * Environment: MQ_BENCH_SCALE multiplies the number of records.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "client.h"
#include "bench.h"

#define RECORD_BYTES 100
#define BATCH 256
#define WINDOW 64
#define LAT_SAMPLES 2000
#define LAT_SAMPLES_SYNC 500
#define TARGET 1000000.0

static char bin_dir[PATH_MAX], addr[PATH_MAX + 8], data_dir[1024];
static double scale = 1.0;
static pid_t broker_pid, follower_pid;   /* stopped on the way out */

static void stop_children(void)
{
	if (follower_pid > 0)
		kill(follower_pid, SIGKILL);
	if (broker_pid > 0)
		kill(broker_pid, SIGTERM);
}

static void die(const char *what, const mq_err *err)
{
	bench_fail(what, err ? err->msg : NULL);
}
static pid_t broker_start(const char *flush)
{
	char bin[PATH_MAX + 16];

	snprintf(bin, sizeof bin, "%s/mq-brokerd", bin_dir);
	broker_pid = bench_broker_start(bin, data_dir, flush, addr,
					sizeof addr);
	return broker_pid;
}
static void stop_child(pid_t pid, int sig)
{
	int st;
	kill(pid, sig);
	waitpid(pid, &st, 0);
	if (pid == broker_pid)
		broker_pid = 0;
	if (pid == follower_pid)
		follower_pid = 0;
}

static void fill(const char *topic, long records)
{
	mq_client *c = bench_connect(addr);
	mq_batch_builder b;
	uint8_t value[RECORD_BYTES];
	mq_err err;

	bench_create_topic(addr, topic);
	memset(value, 'x', sizeof value);
	if (mq_bb_init(&b, 0, &err) < 0)
		die("batch", &err);
	for (int i = 0; i < BATCH; i++)
		if (mq_bb_add(&b, mq_now_ms(), NULL, -1, value, RECORD_BYTES,
			      NULL, 0, &err) < 0)
			die("batch", &err);
	if (mq_bb_finish(&b, -1, -1, -1, &err) < 0)
		die("batch", &err);
	bench_produce_pipelined(c, topic, b.buf, b.len, records / BATCH,
				WINDOW);
	mq_bb_free(&b);
	mq_client_close(c);
}

/* Run mq-recv with args (NULL-terminated, after the program name), its
 * stdout on /dev/null; returns the seconds it took, or exits. */
static double run_recv(const char *const *args)
{
	char bin[PATH_MAX + 16];
	const char *argv[32];
	int n = 0, st;
	double t0;
	pid_t pid;

	snprintf(bin, sizeof bin, "%s/mq-recv", bin_dir);
	argv[n++] = bin;
	while (*args && n < 31)
		argv[n++] = *args++;
	argv[n] = NULL;
	t0 = bench_now();
	pid = fork();
	if (pid < 0)
		die("fork", NULL);
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		if (fd < 0 || dup2(fd, 1) < 0)
			_exit(126);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) < 0)
		die("waitpid", NULL);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "bench_recv: mq-recv failed (status %d)\n", st);
		exit(1);
	}
	return bench_now() - t0;
}

static void line(const char *what, long records, double secs)
{
	double r = (double)records / secs;
	printf("%-46s %10.0f msg/s %8.1f MB/s\n", what, r,
	       r * RECORD_BYTES / 1e6);
}

/* A follower: mq-recv -o end on the topic, its output on a pipe. */
struct follower {
	pid_t pid;
	FILE *out;
};

static void follower_start(struct follower *f, const char *topic)
{
	char bin[PATH_MAX + 16];
	int p[2];

	snprintf(bin, sizeof bin, "%s/mq-recv", bin_dir);
	if (pipe(p) < 0)
		die("pipe", NULL);
	f->pid = fork();
	if (f->pid < 0)
		die("fork", NULL);
	if (f->pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execl(bin, bin, "-b", addr, "-t", topic, "-o", "end",
		      (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	follower_pid = f->pid;
	f->out = fdopen(p[0], "r");
	/* It reads from the end as it is when it starts: let it start. */
	usleep(300000);
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

static void report(const char *what, double *s, int n)
{
	qsort(s, (size_t)n, sizeof *s, cmp_double);
	printf("%-46s p50 %.2f ms  p99 %.2f ms\n", what, s[n / 2] * 1000,
	       s[n * 99 / 100] * 1000);
}

/* Wait for the line "text" from the follower. */
static void expect_line(struct follower *f, const char *text)
{
	char buf[256];

	for (;;) {
		if (!fgets(buf, sizeof buf, f->out)) {
			fprintf(stderr, "bench_recv: mq-recv ended early\n");
			exit(1);
		}
		buf[strcspn(buf, "\n")] = '\0';
		if (!strcmp(buf, text))
			return;
	}
}

/* Each sample: produce one record through the library, wait for the
 * follower to print it. */
static void latency_library(const char *topic, int n, const char *what)
{
	double *s = calloc((size_t)n, sizeof *s);
	mq_client *c = bench_connect(addr);
	struct follower f;
	mq_err err;

	bench_create_topic(addr, topic);
	follower_start(&f, topic);
	for (int i = -50; i < n; i++) {
		char text[32];
		mq_batch_builder b;
		mq_produce_result res;
		double t0 = bench_now();

		snprintf(text, sizeof text, "m%d", i);
		mq_bb_init(&b, 0, &err);
		mq_bb_add(&b, mq_now_ms(), NULL, -1, text, (int32_t)strlen(text),
			  NULL, 0, &err);
		mq_bb_finish(&b, -1, -1, -1, &err);
		if (mq_client_produce(c, topic, 0, NULL, -1, b.buf, b.len, &res,
				      &err) < 0)
			die("produce", &err);
		mq_bb_free(&b);
		expect_line(&f, text);
		if (i >= 0)     /* the first 50 warm up */
			s[i] = bench_now() - t0;
	}
	stop_child(f.pid, SIGTERM);
	fclose(f.out);
	mq_client_close(c);
	report(what, s, n);
	free(s);
}

/* The same through a running mq-send --sync fed one line at a time. */
static void latency_send(const char *topic, int n, const char *what)
{
	char bin[PATH_MAX + 16];
	double *s;
	struct follower f;
	int p[2];
	pid_t pid;
	FILE *in;

	snprintf(bin, sizeof bin, "%s/mq-send", bin_dir);
	if (access(bin, X_OK) < 0) {
		printf("%-46s (skipped: no mq-send)\n", what);
		return;
	}
	s = calloc((size_t)n, sizeof *s);
	bench_create_topic(addr, topic);
	follower_start(&f, topic);
	if (pipe(p) < 0)
		die("pipe", NULL);
	pid = fork();
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(p[0], 0);
		dup2(fd, 1);
		close(p[0]);
		close(p[1]);
		execl(bin, bin, "-b", addr, "-t", topic, "-p", "0", "--sync",
		      (char *)NULL);
		_exit(127);
	}
	close(p[0]);
	in = fdopen(p[1], "w");
	for (int i = -50; i < n; i++) {
		char text[32];
		double t0 = bench_now();

		snprintf(text, sizeof text, "s%d", i);
		fprintf(in, "%s\n", text);
		fflush(in);
		expect_line(&f, text);
		if (i >= 0)
			s[i] = bench_now() - t0;
	}
	fclose(in);
	waitpid(pid, NULL, 0);
	stop_child(f.pid, SIGTERM);
	fclose(f.out);
	report(what, s, n);
	free(s);
}

int main(int argc, char **argv)
{
	char what[128];
	long records;
	double secs;
	pid_t pid;

	scale = bench_start(argc, argv, "bench_recv", bin_dir, sizeof bin_dir);
	snprintf(data_dir, sizeof data_dir, "%s", argv[1]);
	atexit(stop_children);   /* also when a step fails */

	records = (long)(1000000 * scale) / BATCH * BATCH;
	pid = broker_start("async");
	fill("bench", records);
	printf("--- mq-recv, %ld records of %d bytes, broker --flush async ---\n",
	       records, RECORD_BYTES);

	secs = run_recv((const char *[]){ "-b", addr, "-t", "bench", "-e",
					  NULL });
	snprintf(what, sizeof what, "mq-recv -e > /dev/null");
	line(what, records, secs);
	printf("  target %.0f msg/s: %s\n", TARGET,
	       records / secs >= TARGET ? "PASS" : "MISS");
	secs = run_recv((const char *[]){ "-b", addr, "-t", "bench", "-e",
					  "-g", "bench", "--from-new",
					  "beginning", NULL });
	line("mq-recv -g (commit after) -e > /dev/null", records, secs);
	secs = run_recv((const char *[]){ "-b", addr, "-t", "bench", "-e",
					  "-f", "%i %v\\n", NULL });
	line("mq-recv -f '%i %v\\n' -e > /dev/null", records, secs);
	secs = run_recv((const char *[]){ "-b", addr, "-t", "bench", "-e",
					  "-J", NULL });
	line("mq-recv -J -e > /dev/null", records, secs);

	latency_library("lat", LAT_SAMPLES,
			"send-to-output latency, library send");
	latency_send("lat2", LAT_SAMPLES, "send-to-output latency, mq-send --sync");
	stop_child(pid, SIGTERM);

	pid = broker_start("sync");
	printf("--- end-to-end latency, broker --flush sync ---\n");
	latency_library("lat", LAT_SAMPLES_SYNC,
			"send-to-output latency, library send");
	latency_send("lat2", LAT_SAMPLES_SYNC,
		     "send-to-output latency, mq-send --sync");
	stop_child(pid, SIGTERM);
	return 0;
}
