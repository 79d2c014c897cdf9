/*
 * harness.h - a tiny unit-test harness that speaks TAP, so tests/run can
 * count C tests and bats tests the same way.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_EQ_INT(a, b); }
 *   int main(void) { RUN(name); return harness_done(); }
 *
 * A failed CHECK reports file:line on stderr and marks the current test
 * failed; the test goes on. harness_tmpdir() gives the current test a fresh
 * directory, removed after the test unless MQ_KEEP_TMP is set.
 */
#ifndef MQ_HARNESS_H
#define MQ_HARNESS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int harness_n, harness_failed_total, harness_cur_failed;
static char harness_dir[4096];

#define TEST(name) static void name(void)

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
			__LINE__, #cond); \
		harness_cur_failed = 1; \
	} } while (0)

#define CHECK_EQ_INT(a, b) do { \
	long long a_ = (long long)(a), b_ = (long long)(b); \
	if (a_ != b_) { \
		fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", \
			__FILE__, __LINE__, #a, #b, a_, b_); \
		harness_cur_failed = 1; \
	} } while (0)

/* Stop the current test (after a failed CHECK that later code needs). */
#define REQUIRE(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: required check failed: %s\n", \
			__FILE__, __LINE__, #cond); \
		harness_cur_failed = 1; \
		return; \
	} } while (0)

/* The same, shorter. */
#define MUST(cond) REQUIRE(cond)

__attribute__((unused)) static int harness_rm_cb(const char *path, const struct stat *sb, int flag,
			 struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(path);
}

__attribute__((unused)) static const char *harness_tmpdir(void)
{
	if (!harness_dir[0]) {
		const char *base = getenv("TMPDIR");
		snprintf(harness_dir, sizeof harness_dir, "%s/mq-unit-XXXXXX",
			 base && *base ? base : "/tmp");
		if (!mkdtemp(harness_dir)) {
			perror("mkdtemp");
			exit(2);
		}
	}
	return harness_dir;
}

__attribute__((unused)) static void harness_run(const char *name, void (*fn)(void))
{
	harness_cur_failed = 0;
	harness_dir[0] = '\0';
	fn();
	if (harness_dir[0] && !getenv("MQ_KEEP_TMP"))
		nftw(harness_dir, harness_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	harness_dir[0] = '\0';
	harness_n++;
	if (harness_cur_failed)
		harness_failed_total++;
	printf("%s %d - %s\n", harness_cur_failed ? "not ok" : "ok",
	       harness_n, name);
	fflush(stdout);
}

__attribute__((unused)) static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Wait up to ms for child pid to exit: its wait status, 0 if it is not
 * our child (already reaped), or -1 if it is still running. A test that
 * stops a process waits with this, never without a bound, so a process
 * that ignores its signal fails the test instead of hanging the suite. */
__attribute__((unused)) static int wait_exit(pid_t pid, int ms)
{
	int st;

	for (int i = 0; i <= ms / 5; i++) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		if (r < 0)
			return 0;
		sleep_ms(5);
	}
	return -1;
}

#define RUN(name) harness_run(#name, name)

__attribute__((unused)) static int harness_done(void)
{
	printf("1..%d\n", harness_n);
	return harness_failed_total ? 1 : 0;
}

#endif
