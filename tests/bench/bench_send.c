/*
 * bench_send.c - mq-send end to end: lines piped into the program, through
 * the broker, onto the disk, against a raw copy of the same file onto the
 * same disk.
 *
 *   bench_send DIR
 *
 * Writes DIR/input, 1,000,000 lines of 100 bytes (plus the newline), and
 * times `cat DIR/input > DIR/raw` (then also with an fdatasync at the
 * end). Then, with the broker built next to this program
 * (../bin/mq-brokerd) on a unix socket in DIR, once with --flush async and
 * once with --flush sync, it times:
 *   - `cat DIR/input | mq-send --async -q` (and with the ids printed to
 *     /dev/null): messages/s, MB/s of input, and the ratio to the raw
 *     copy (target: 1,000,000 messages/s with --flush async, 500,000 with
 *     --flush sync);
 *   - mq-send --sync, one message at a time, from 1 and from 16
 *     concurrent producers.
 * Every run is checked: the topic must end up holding every message, once.
 * Environment: MQ_BENCH_SCALE multiplies the number of messages (default 1).
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

#include "client.h"
#include "bench.h"

#define LINE_BYTES 100
#define PRODUCERS 16

static char bin_dir[PATH_MAX], data_dir[PATH_MAX], input[PATH_MAX + 16];
static char addr[PATH_MAX + 64];
static double scale = 1.0;
static long lines_total;

/* Run sh -c cmd; dies unless it exits 0. */
static pid_t spawn(const char *cmd)
{
	pid_t pid = fork();

	if (pid < 0)
		bench_fail("fork", NULL);
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void reap(pid_t pid, const char *cmd)
{
	int st;

	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "bench_send: failed (status %d): %s\n",
			WIFEXITED(st) ? WEXITSTATUS(st) : -1, cmd);
		exit(1);
	}
}

static double run(const char *cmd)
{
	double t0 = bench_now();
	reap(spawn(cmd), cmd);
	return bench_now() - t0;
}

static void make_input(void)
{
	char line[LINE_BYTES + 1], *buf;
	size_t per = LINE_BYTES + 1, chunk = 10000;
	FILE *f = fopen(input, "w");

	if (!f)
		bench_fail(input, NULL);
	for (int i = 0; i < LINE_BYTES; i++)
		line[i] = (char)('a' + i % 26);
	line[LINE_BYTES] = '\n';
	buf = malloc(per * chunk);
	if (!buf)
		bench_fail("malloc", NULL);
	for (size_t i = 0; i < chunk; i++)
		memcpy(buf + i * per, line, per);
	for (long done = 0; done < lines_total; done += (long)chunk) {
		size_t n = lines_total - done < (long)chunk
			   ? (size_t)(lines_total - done) : chunk;
		if (fwrite(buf, per, n, f) != n)
			bench_fail(input, NULL);
	}
	free(buf);
	if (fclose(f) != 0)
		bench_fail(input, NULL);
}

static pid_t broker_start(const char *flush)
{
	char broker[PATH_MAX + 16];

	snprintf(broker, sizeof broker, "%s/mq-brokerd", bin_dir);
	return bench_broker_start(broker, data_dir, flush, addr, sizeof addr);
}
/* The number of records topic holds (all partitions). */
static long held(const char *topic)
{
	const char *t[1] = { topic };
	mq_topic_meta *m;
	mq_client *c;
	size_t n;
	mq_err err;
	long sum = 0;

	if (mq_client_open(addr, NULL, &c, &err) < 0)
		bench_fail("connect", err.msg);
	if (mq_client_metadata(c, t, 1, &m, &n, &err) < 0)
		bench_fail("metadata", err.msg);
	for (size_t i = 0; i < n; i++)
		for (int32_t p = 0; p < m[i].nparts; p++)
			sum += (long)(m[i].parts[p].end - m[i].parts[p].start);
	mq_topic_meta_free(m, n);
	mq_client_close(c);
	return sum;
}

static void expect(const char *topic, long n)
{
	long got = held(topic);
	if (got != n) {
		fprintf(stderr, "bench_send: %s holds %ld messages, not %ld\n",
			topic, got, n);
		exit(1);
	}
}

static void row(const char *what, long msgs, double secs, double raw_mbs)
{
	double mbs = msgs * (double)(LINE_BYTES + 1) / secs / 1e6;

	printf("%-46s %9.0f msg/s %7.1f MB/s", what, msgs / secs, mbs);
	if (raw_mbs > 0)
		printf("  %4.2fx raw", mbs / raw_mbs);
	printf("\n");
}

/* n producers, each sending `each` lines in --sync mode to topic. */
static double sync_producers(const char *topic, int n, long each)
{
	char cmd[8 * PATH_MAX];
	pid_t pids[PRODUCERS];
	double t0 = bench_now();

	snprintf(cmd, sizeof cmd, "head -n %ld '%s' | '%s/mq-send' -b '%s' "
		 "-t %s --sync -q", each, input, bin_dir, addr, topic);
	for (int i = 0; i < n; i++)
		pids[i] = spawn(cmd);
	for (int i = 0; i < n; i++)
		reap(pids[i], cmd);
	return bench_now() - t0;
}

int main(int argc, char **argv)
{
	const char *modes[] = { "async", "sync" };
	const double target[] = { 1000000, 500000 };
	char cmd[8 * PATH_MAX], raw_path[PATH_MAX + 16];
	double t, raw_mbs, raw_sync_mbs;

	scale = bench_start(argc, argv, "bench_send", bin_dir, sizeof bin_dir);
	lines_total = (long)(1000000 * scale);
	snprintf(data_dir, sizeof data_dir, "%s", argv[1]);
	snprintf(input, sizeof input, "%s/input", data_dir);
	snprintf(raw_path, sizeof raw_path, "%s/raw", data_dir);

	make_input();
	printf("input: %ld lines of %d bytes plus a newline (%.1f MB)\n",
	       lines_total, LINE_BYTES, lines_total * (LINE_BYTES + 1) / 1e6);
	/* The raw copy, best of three (the input is in the page cache). */
	raw_mbs = raw_sync_mbs = 0;
	for (int i = 0; i < 3; i++) {
		double mbs;
		snprintf(cmd, sizeof cmd, "cat '%s' > '%s'", input, raw_path);
		t = run(cmd);
		mbs = lines_total * (LINE_BYTES + 1) / t / 1e6;
		raw_mbs = mbs > raw_mbs ? mbs : raw_mbs;
		snprintf(cmd, sizeof cmd, "cat '%s' > '%s' && "
			 "dd if=/dev/null of='%s' conv=notrunc,fdatasync "
			 "status=none", input, raw_path, raw_path);
		t = run(cmd);
		mbs = lines_total * (LINE_BYTES + 1) / t / 1e6;
		raw_sync_mbs = mbs > raw_sync_mbs ? mbs : raw_sync_mbs;
	}
	unlink(raw_path);
	printf("%-46s %9.0f msg/s %7.1f MB/s\n", "raw: cat input > file",
	       raw_mbs * 1e6 / (LINE_BYTES + 1), raw_mbs);
	printf("%-46s %9.0f msg/s %7.1f MB/s\n", "raw: cat input > file; fdatasync",
	       raw_sync_mbs * 1e6 / (LINE_BYTES + 1), raw_sync_mbs);

	for (int m = 0; m < 2; m++) {
		pid_t pid = broker_start(modes[m]);
		double base = m ? raw_sync_mbs : raw_mbs;
		long n1 = (long)((m ? 5000 : 50000) * scale);
		long n16 = (long)((m ? 1000 : 10000) * scale);
		double rate;

		printf("--- broker --flush %s ---\n", modes[m]);
		snprintf(cmd, sizeof cmd, "cat '%s' | '%s/mq-send' -b '%s' "
			 "-t async-q --async -q", input, bin_dir, addr);
		t = run(cmd);
		expect("async-q", lines_total);
		row("cat | mq-send --async -q", lines_total, t, base);
		rate = lines_total / t;
		snprintf(cmd, sizeof cmd, "cat '%s' | '%s/mq-send' -b '%s' "
			 "-t async-ids --async > /dev/null", input, bin_dir, addr);
		t = run(cmd);
		expect("async-ids", lines_total);
		row("cat | mq-send --async (ids to /dev/null)", lines_total, t,
		    base);
		printf("  target %.0f msg/s: %s\n", target[m],
		       rate >= target[m] ? "MET" : "MISS");

		t = sync_producers("sync1", 1, n1);
		expect("sync1", n1);
		row("mq-send --sync, 1 producer", n1, t, 0);
		t = sync_producers("sync16", PRODUCERS, n16);
		expect("sync16", n16 * PRODUCERS);
		row("mq-send --sync, 16 producers", n16 * PRODUCERS, t, 0);
		bench_broker_stop(pid);
	}
	unlink(input);
	return 0;
}
