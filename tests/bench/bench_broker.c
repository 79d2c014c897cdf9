/*
 * bench_broker.c - throughput and latency of mq-brokerd against raw disk
 * I/O on the same file system, measured in the same run.
 *
 *   bench_broker DIR
 *
 * Starts the broker built next to this program (../bin/mq-brokerd) on a
 * unix socket in DIR, once with --flush async and once with --flush sync,
 * and measures:
 *   - produce throughput of 100-byte records in batches of 256, pipelined
 *     (64 requests in flight) from one client;
 *   - sync sends (one record per request, each waiting for its reply) from
 *     1 and 16 concurrent clients; with --flush sync the 16-client figure
 *     is compared with one fdatasync per record on a plain file (the
 *     group-commit target is 8x);
 *   - fetch throughput: reading everything back, decoding every record;
 *   - produce-to-fetch latency p50/p99 of single records under long
 *     polling.
 * Environment: MQ_BENCH_SCALE multiplies the amount of data (default 1).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
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
#define SYNC_SECONDS 3.0
#define LAT_SAMPLES 1000

static char broker_bin[PATH_MAX + 16], addr[PATH_MAX + 8], data_dir[1024];
static double scale = 1.0;

static void die(const char *what, const mq_err *err)
{
	bench_fail(what, err ? err->msg : NULL);
}

static void make_batch(mq_batch_builder *b, int n, int64_t pid, int32_t seq)
{
	uint8_t value[RECORD_BYTES];
	mq_err err;

	memset(value, 'x', sizeof value);
	if (mq_bb_init(b, 0, &err) < 0)
		die("batch", &err);
	for (int i = 0; i < n; i++)
		if (mq_bb_add(b, 0, NULL, -1, value, RECORD_BYTES, NULL, 0,
			      &err) < 0)
			die("batch", &err);
	if (mq_bb_finish(b, pid, 0, seq, &err) < 0)
		die("batch", &err);
}

/* Pipelined produce of `records` records; returns records per second. */
static double produce_pipelined(const char *topic, long records)
{
	mq_client *c = bench_connect(addr);
	mq_batch_builder b;
	long batches = records / BATCH;
	double t0, secs;

	make_batch(&b, BATCH, -1, -1);
	t0 = bench_now();
	bench_produce_pipelined(c, topic, b.buf, b.len, batches, WINDOW);
	secs = bench_now() - t0;
	mq_bb_free(&b);
	mq_client_close(c);
	return (double)(batches * BATCH) / secs;
}

struct sync_arg {
	const char *topic;
	double until;
	long count;
};

static void *sync_sender(void *p)
{
	struct sync_arg *a = p;
	mq_client *c = bench_connect(addr);
	mq_batch_builder b;
	mq_produce_result res;
	mq_err err;

	make_batch(&b, 1, -1, -1);
	while (bench_now() < a->until) {
		if (mq_client_produce(c, a->topic, 0, NULL, -1, b.buf, b.len,
				      &res, &err) < 0)
			die("produce", &err);
		a->count++;
	}
	mq_bb_free(&b);
	mq_client_close(c);
	return NULL;
}

/* n clients, each sending one record per request and waiting for it. */
static double produce_sync(const char *topic, int n)
{
	pthread_t th[16];
	struct sync_arg args[16];
	double t0 = bench_now(), secs;
	long total = 0;

	for (int i = 0; i < n; i++) {
		args[i] = (struct sync_arg){ topic, t0 + SYNC_SECONDS * scale, 0 };
		pthread_create(&th[i], NULL, sync_sender, &args[i]);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		total += args[i].count;
	}
	secs = bench_now() - t0;
	return (double)total / secs;
}

/* Read the whole topic back; returns records per second. */
static double fetch_all(const char *topic, long *nrec)
{
	mq_client *c = bench_connect(addr);
	mq_fetch_result f;
	mq_err err;
	int64_t off = 0;
	long n = 0;
	double t0 = bench_now();

	for (;;) {
		mq_batch_iter it;
		mq_record rec;
		if (mq_client_fetch(c, topic, 0, off, 1 << 20, 0, &f, &err) < 0)
			die("fetch", &err);
		if (f.len == 0)
			break;
		size_t pos = 0;
		while (pos < f.len) {
			mq_batch_hdr h;
			if (mq_batch_parse_header(f.batches + pos, f.len - pos, &h,
						  &err) < 0 ||
			    mq_batch_iter_init(&it, f.batches + pos,
					       mq_batch_size(&h), &err) < 0)
				die("decode", &err);
			while (mq_batch_iter_next(&it, &rec, &err) == 1)
				if (rec.offset >= off) {
					n++;
					off = rec.offset + 1;
				}
			pos += mq_batch_size(&h);
		}
	}
	double secs = bench_now() - t0;
	mq_client_close(c);
	*nrec = n;
	return (double)n / secs;
}

struct lat_arg {
	const char *topic;
	int64_t start;
	double *samples;
	int n;
};

static void *lat_consumer(void *p)
{
	struct lat_arg *a = p;
	mq_client *c = bench_connect(addr);
	mq_fetch_result f;
	mq_err err;
	int64_t off = a->start;

	while (a->n < LAT_SAMPLES) {
		if (mq_client_fetch(c, a->topic, 0, off, 1 << 20, 5000, &f,
				    &err) < 0)
			die("fetch", &err);
		double t = bench_now();
		size_t pos = 0;
		while (pos < f.len) {
			mq_batch_hdr h;
			mq_batch_iter it;
			mq_record rec;
			if (mq_batch_parse_header(f.batches + pos, f.len - pos, &h,
						  &err) < 0 ||
			    mq_batch_iter_init(&it, f.batches + pos,
					       mq_batch_size(&h), &err) < 0)
				die("decode", &err);
			while (mq_batch_iter_next(&it, &rec, &err) == 1) {
				double sent;
				if (rec.offset < off || rec.value_len != sizeof sent)
					continue;
				memcpy(&sent, rec.value, sizeof sent);
				if (a->n < LAT_SAMPLES)
					a->samples[a->n++] = t - sent;
				off = rec.offset + 1;
			}
			pos += mq_batch_size(&h);
		}
	}
	mq_client_close(c);
	return NULL;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

static void latency(const char *topic, double *p50, double *p99)
{
	static double samples[LAT_SAMPLES];
	mq_client *c = bench_connect(addr);
	struct lat_arg a = { topic, 0, samples, 0 };
	mq_produce_result res;
	mq_err err;
	pthread_t th;

	if (mq_client_list_offset(c, topic, 0, -1, &a.start, &err) < 0)
		die("list offset", &err);
	pthread_create(&th, NULL, lat_consumer, &a);
	usleep(50000);
	while (a.n < LAT_SAMPLES) {
		mq_batch_builder b;
		double t = bench_now();
		mq_bb_init(&b, 0, &err);
		mq_bb_add(&b, 0, NULL, -1, &t, sizeof t, NULL, 0, &err);
		mq_bb_finish(&b, -1, 0, -1, &err);
		if (mq_client_produce(c, topic, 0, NULL, -1, b.buf, b.len, &res,
				      &err) < 0)
			die("produce", &err);
		mq_bb_free(&b);
		usleep(1000);
	}
	pthread_join(th, NULL);
	mq_client_close(c);
	qsort(samples, LAT_SAMPLES, sizeof *samples, cmp_double);
	*p50 = samples[LAT_SAMPLES / 2] * 1000;
	*p99 = samples[LAT_SAMPLES * 99 / 100] * 1000;
}

/* One fdatasync per 100-byte record on a plain file in the same place. */
static double raw_fsync_rate(void)
{
	char path[PATH_MAX];
	uint8_t rec[RECORD_BYTES];
	double t0, until;
	long n = 0;
	int fd;

	snprintf(path, sizeof path, "%s/raw-fsync", data_dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die(path, NULL);
	memset(rec, 'x', sizeof rec);
	t0 = bench_now();
	until = t0 + SYNC_SECONDS * scale;
	while (bench_now() < until) {
		if (write(fd, rec, sizeof rec) != sizeof rec || fdatasync(fd) < 0)
			die("raw write", NULL);
		n++;
	}
	double r = (double)n / (bench_now() - t0);
	close(fd);
	unlink(path);
	return r;
}

static void line(const char *what, double recs)
{
	printf("%-44s %12.0f rec/s %9.1f MB/s\n", what, recs,
	       recs * RECORD_BYTES / 1e6);
}

int main(int argc, char **argv)
{
	const char *modes[] = { "async", "sync" };
	char bin_dir[PATH_MAX];
	double raw;

	scale = bench_start(argc, argv, "bench_broker", bin_dir, sizeof bin_dir);
	snprintf(data_dir, sizeof data_dir, "%s", argv[1]);
	snprintf(broker_bin, sizeof broker_bin, "%s/mq-brokerd", bin_dir);

	raw = raw_fsync_rate();
	printf("baseline: write+fdatasync per 100-byte record: %.0f rec/s\n",
	       raw);
	for (int m = 0; m < 2; m++) {
		pid_t pid = bench_broker_start(broker_bin, data_dir, modes[m],
					       addr, sizeof addr);
		char what[128];
		double r, p50, p99;
		long n;

		bench_create_topic(addr, "bench");
		bench_create_topic(addr, "sync1");
		bench_create_topic(addr, "sync16");
		bench_create_topic(addr, "lat");
		printf("--- broker --flush %s ---\n", modes[m]);
		r = produce_pipelined("bench", (long)(1000000 * scale));
		snprintf(what, sizeof what, "produce batch=%d pipelined=%d", BATCH,
			 WINDOW);
		line(what, r);
		r = produce_sync("sync1", 1);
		line("produce sync, 1 record/request, 1 client", r);
		r = produce_sync("sync16", 16);
		line("produce sync, 1 record/request, 16 clients", r);
		if (m == 1)
			printf("  group commit: %.1fx one fdatasync per record "
			       "(target 8x: %s)\n", r / raw,
			       r / raw >= 8 ? "PASS" : "MISS");
		r = fetch_all("bench", &n);
		snprintf(what, sizeof what, "fetch + decode (%ld records)", n);
		line(what, r);
		latency("lat", &p50, &p99);
		printf("%-44s p50 %.2f ms  p99 %.2f ms\n",
		       "produce-to-fetch latency (long poll)", p50, p99);
		bench_broker_stop(pid);
	}
	return 0;
}
