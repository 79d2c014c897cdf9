/* t_store.c - the data directory (store.h) and its lock (lock.h). */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "io.h"
#include "lock.h"
#include "name.h"
#include "offsets.h"
#include "store.h"

static char pbuf[4][4096];
static int pnext;

/* A path under the test's directory (a few live at once). */
static const char *tpath(const char *rel)
{
	char *b = pbuf[pnext++ % 4];

	snprintf(b, sizeof pbuf[0], "%s/%s", harness_tmpdir(), rel);
	return b;
}

static int exists(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

/* Entries in dir, "." and ".." excluded; -1 if it cannot be read. */
static int count_entries(const char *dir)
{
	struct dirent *d;
	DIR *dh = opendir(dir);
	int n = 0;

	if (!dh)
		return -1;
	while ((d = readdir(dh)))
		if (strcmp(d->d_name, ".") && strcmp(d->d_name, ".."))
			n++;
	closedir(dh);
	return n;
}

static int spit(const char *p, const char *data)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, data, strlen(data));
	close(fd);
	return n == (ssize_t)strlen(data) ? 0 : -1;
}

static char *slurp(const char *p)
{
	char *buf = NULL;
	mq_err e;

	if (mq_read_file(p, 1 << 20, &buf, NULL, &e) < 0)
		return NULL;
	return buf;
}

static mq_store *open_rw(const char *rel)
{
	mq_store *s = NULL;
	mq_err e;

	if (mq_store_open(tpath(rel), NULL, &s, &e) < 0) {
		fprintf(stderr, "open %s: %s\n", rel, e.msg);
		return NULL;
	}
	return s;
}

static mq_store *open_ro(const char *rel)
{
	mq_store_opts o;
	mq_store *s = NULL;
	mq_err e;

	memset(&o, 0, sizeof o);
	o.read_only = true;
	if (mq_store_open(tpath(rel), &o, &s, &e) < 0) {
		fprintf(stderr, "open %s read-only: %s\n", rel, e.msg);
		return NULL;
	}
	return s;
}

/* ---- the directory lock ---- */

TEST(lock_exclusive_in_process)
{
	char what[32], *rec, want[64];
	pid_t holder = 123;
	mq_err e;
	int fd, fd2;

	fd = mq_dirlock_acquire(harness_tmpdir(), false, "broker", &holder,
				&e);
	MUST(fd >= 0);
	CHECK_EQ_INT(holder, 0);
	rec = slurp(tpath("lock"));
	snprintf(want, sizeof want, "%ld broker\n", (long)getpid());
	CHECK(rec && strcmp(rec, want) == 0);
	free(rec);

	/* flock belongs to the open file: a second open conflicts even in
	 * the same process. */
	fd2 = mq_dirlock_acquire(harness_tmpdir(), false, "writer", &holder,
				 &e);
	CHECK_EQ_INT(fd2, -1);
	CHECK_EQ_INT(e.code, MQ_E_LOCKED);
	CHECK_EQ_INT(holder, getpid());
	snprintf(want, sizeof want, "is locked by broker (pid %ld)",
		 (long)getpid());
	CHECK(strstr(e.msg, want) != NULL);
	CHECK(strstr(e.msg, harness_tmpdir()) != NULL);

	CHECK_EQ_INT(mq_dirlock_probe(harness_tmpdir(), &holder, what,
				      sizeof what, &e), 0);
	CHECK_EQ_INT(holder, getpid());
	CHECK(strcmp(what, "broker") == 0);

	/* Waiting for ourselves would hang: refused instead. */
	holder = 0;
	fd2 = mq_dirlock_acquire(harness_tmpdir(), true, "writer", &holder,
				 &e);
	CHECK_EQ_INT(fd2, -1);
	CHECK_EQ_INT(e.code, MQ_E_LOCKED);
	CHECK_EQ_INT(holder, getpid());
	CHECK(strstr(e.msg, "this process") != NULL);

	mq_dirlock_release(fd);
	CHECK_EQ_INT(mq_dirlock_probe(harness_tmpdir(), &holder, what,
				      sizeof what, &e), 0);
	CHECK_EQ_INT(holder, 0);
	CHECK(what[0] == '\0');
	fd = mq_dirlock_acquire(harness_tmpdir(), false, NULL, &holder, &e);
	CHECK(fd >= 0);
	rec = slurp(tpath("lock"));
	snprintf(want, sizeof want, "%ld writer\n", (long)getpid());
	CHECK(rec && strcmp(rec, want) == 0);
	free(rec);
	mq_dirlock_release(fd);
}

TEST(lock_errors)
{
	char what[32];
	pid_t holder = 5;
	mq_err e;

	/* Never locked: free, and probing creates nothing. */
	CHECK_EQ_INT(mq_dirlock_probe(harness_tmpdir(), &holder, what,
				      sizeof what, &e), 0);
	CHECK_EQ_INT(holder, 0);
	CHECK(!exists(tpath("lock")));
	/* The directory must exist. */
	CHECK_EQ_INT(mq_dirlock_acquire(tpath("none"), false, "broker",
					&holder, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_IO);
	CHECK_EQ_INT(e.sys_errno, ENOENT);
	CHECK(!exists(tpath("none")));
}

/* Child side of the fork tests: take the lock, say so on `ready`, then
 * wait for `go` (or sleep ms if go < 0) and die without releasing. */
static void child_hold(const char *dir, int ready, int go, int ms)
{
	mq_err e;
	char c = 'x';
	int fd = mq_dirlock_acquire(dir, false, "writer", NULL, &e);

	if (fd < 0)
		_exit(3);
	if (write(ready, &c, 1) != 1)
		_exit(4);
	if (go >= 0) {
		if (read(go, &c, 1) < 0)
			_exit(5);
	} else {
		struct timespec ts = { 0, (long)ms * 1000000L };
		nanosleep(&ts, NULL);
	}
	_exit(0);
}

TEST(lock_held_by_child_until_it_dies)
{
	int ready[2], go[2], status, fd;
	char c, what[32];
	pid_t pid, holder;
	mq_err e;

	MUST(pipe(ready) == 0 && pipe(go) == 0);
	(void)harness_tmpdir();
	pid = fork();
	MUST(pid >= 0);
	if (pid == 0)
		child_hold(harness_tmpdir(), ready[1], go[0], 0);
	close(ready[1]);
	close(go[0]);
	MUST(read(ready[0], &c, 1) == 1);

	fd = mq_dirlock_acquire(harness_tmpdir(), false, "broker", &holder,
				&e);
	CHECK_EQ_INT(fd, -1);
	CHECK_EQ_INT(e.code, MQ_E_LOCKED);
	CHECK_EQ_INT(holder, pid);
	CHECK(strstr(e.msg, "locked by writer (pid") != NULL);
	CHECK_EQ_INT(mq_dirlock_probe(harness_tmpdir(), &holder, what,
				      sizeof what, &e), 0);
	CHECK_EQ_INT(holder, pid);
	CHECK(strcmp(what, "writer") == 0);

	/* The child dies without releasing: the kernel releases for it. */
	CHECK_EQ_INT(write(go[1], "x", 1), 1);
	CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The record still names the dead child; it must not count. */
	CHECK_EQ_INT(mq_dirlock_probe(harness_tmpdir(), &holder, what,
				      sizeof what, &e), 0);
	CHECK_EQ_INT(holder, 0);
	fd = mq_dirlock_acquire(harness_tmpdir(), false, "broker", &holder,
				&e);
	CHECK(fd >= 0);
	mq_dirlock_release(fd);
	close(ready[0]);
	close(go[1]);
}

TEST(lock_wait_until_holder_dies)
{
	int ready[2], status, fd;
	int64_t t0;
	pid_t pid, holder;
	char c, what[32];
	mq_err e;

	MUST(pipe(ready) == 0);
	(void)harness_tmpdir();
	pid = fork();
	MUST(pid >= 0);
	if (pid == 0)
		child_hold(harness_tmpdir(), ready[1], -1, 300);
	close(ready[1]);
	MUST(read(ready[0], &c, 1) == 1);
	close(ready[0]);

	t0 = mq_mono_ms();
	fd = mq_dirlock_acquire(harness_tmpdir(), true, "broker", &holder,
				&e);
	CHECK(fd >= 0);
	/* It really waited for the child (which held it for 300 ms). */
	CHECK(mq_mono_ms() - t0 >= 150);
	CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_EQ_INT(mq_dirlock_probe(harness_tmpdir(), &holder, what,
				      sizeof what, &e), 0);
	CHECK_EQ_INT(holder, getpid());
	CHECK(strcmp(what, "broker") == 0);
	mq_dirlock_release(fd);
}

/* ---- topics ---- */

TEST(open_creates_layout)
{
	mq_store *s;
	mq_err e;

	s = open_rw("data");
	MUST(s != NULL);
	CHECK(strcmp(mq_store_dir(s), tpath("data")) == 0);
	CHECK(strcmp(mq_store_groups_dir(s), tpath("data/groups")) == 0);
	CHECK(exists(tpath("data/topics")));
	CHECK(exists(tpath("data/groups")));
	CHECK_EQ_INT(mq_store_close(s, &e), 0);
	CHECK_EQ_INT(mq_store_close(NULL, &e), 0);

	/* A trailing slash names the same directory. */
	s = open_rw("data/");
	MUST(s != NULL);
	CHECK(strcmp(mq_store_dir(s), tpath("data")) == 0);
	mq_store_close(s, NULL);

	/* Parents are not created. */
	CHECK_EQ_INT(mq_store_open(tpath("a/b/c"), NULL, &s, &e), -1);
	CHECK(s == NULL);
	CHECK(!exists(tpath("a")));
}

TEST(create_and_list_topics)
{
	char **names, *meta;
	size_t n;
	int parts;
	mq_store *s;
	mq_err e;

	s = open_rw("data");
	MUST(s != NULL);
	CHECK_EQ_INT(mq_store_list_topics(s, &names, &n, &e), 0);
	CHECK_EQ_INT(n, 0);
	mq_names_free(names, n);

	CHECK_EQ_INT(mq_store_create_topic(s, "orders", 3, &e), 0);
	CHECK_EQ_INT(mq_store_create_topic(s, "audit", 1, &e), 0);
	CHECK_EQ_INT(mq_store_create_topic(s, "%DLQ%workers", 1, &e), 0);

	meta = slurp(tpath("data/topics/orders/meta"));
	CHECK(meta && strcmp(meta, "mq-topic 1\npartitions 3\n") == 0);
	free(meta);
	CHECK(exists(tpath("data/topics/orders/0")));
	CHECK(exists(tpath("data/topics/orders/2")));
	CHECK(!exists(tpath("data/topics/orders/3")));
	CHECK_EQ_INT(count_entries(tpath("data/topics/orders/1")), 0);
	CHECK_EQ_INT(count_entries(tpath("data/topics")), 3);

	MUST(mq_store_list_topics(s, &names, &n, &e) == 0);
	MUST(n == 3);
	CHECK(strcmp(names[0], "%DLQ%workers") == 0);
	CHECK(strcmp(names[1], "audit") == 0);
	CHECK(strcmp(names[2], "orders") == 0);
	mq_names_free(names, n);

	parts = 0;
	CHECK_EQ_INT(mq_store_topic_partitions(s, "orders", &parts, &e), 0);
	CHECK_EQ_INT(parts, 3);
	CHECK_EQ_INT(mq_store_topic_partitions(s, "audit", &parts, &e), 0);
	CHECK_EQ_INT(parts, 1);

	/* Exists. */
	CHECK_EQ_INT(mq_store_create_topic(s, "orders", 5, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_EXISTS);
	CHECK(strstr(e.msg, "orders") != NULL);
	CHECK_EQ_INT(mq_store_topic_partitions(s, "orders", &parts, &e), 0);
	CHECK_EQ_INT(parts, 3);

	/* Partition counts out of range. */
	CHECK_EQ_INT(mq_store_create_topic(s, "t0", 0, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_INVAL);
	CHECK_EQ_INT(mq_store_create_topic(s, "t0", -1, &e), -1);
	CHECK_EQ_INT(mq_store_create_topic(s, "t0", MQ_MAX_PARTITIONS + 1,
					   &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_INVAL);
	CHECK(!exists(tpath("data/topics/t0")));
	CHECK_EQ_INT(mq_store_create_topic(s, "big", MQ_MAX_PARTITIONS, &e),
		     0);
	CHECK(exists(tpath("data/topics/big/1023")));
	CHECK_EQ_INT(mq_store_close(s, &e), 0);

	/* Reopened: everything is still there, read from disk. */
	s = open_rw("data");
	MUST(s != NULL);
	MUST(mq_store_list_topics(s, &names, &n, &e) == 0);
	CHECK_EQ_INT(n, 4);
	mq_names_free(names, n);
	CHECK_EQ_INT(mq_store_topic_partitions(s, "orders", &parts, &e), 0);
	CHECK_EQ_INT(parts, 3);
	CHECK_EQ_INT(mq_store_topic_partitions(s, "%DLQ%workers", &parts,
					       &e), 0);
	CHECK_EQ_INT(parts, 1);
	CHECK_EQ_INT(mq_store_topic_partitions(s, "big", &parts, &e), 0);
	CHECK_EQ_INT(parts, MQ_MAX_PARTITIONS);
	mq_store_close(s, NULL);
}

TEST(unknown_topics_and_partitions)
{
	mq_partition *p = (mq_partition *)1;
	mq_store *s;
	mq_err e;
	int parts;

	s = open_rw("data");
	MUST(s != NULL);
	MUST(mq_store_create_topic(s, "orders", 2, &e) == 0);

	CHECK_EQ_INT(mq_store_topic_partitions(s, "nope", &parts, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_NO_TOPIC);
	CHECK(strstr(e.msg, "nope") != NULL);
	CHECK_EQ_INT(mq_store_partition(s, "nope", 0, &p, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_NO_TOPIC);
	CHECK(p == NULL);
	CHECK_EQ_INT(mq_store_partition(s, "orders", 2, &p, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_NO_PARTITION);
	CHECK_EQ_INT(mq_store_partition(s, "orders", -1, &p, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_NO_PARTITION);
	/* Nothing was created for them. */
	CHECK(!exists(tpath("data/topics/nope")));
	CHECK(!exists(tpath("data/topics/orders/2")));

	/* A topic created behind the store's back (another process) is
	 * found: unknown answers are not cached. */
	{
		mq_store *s2 = open_rw("data");
		MUST(s2 != NULL);
		CHECK_EQ_INT(mq_store_create_topic(s2, "nope", 4, &e), 0);
		mq_store_close(s2, NULL);
	}
	CHECK_EQ_INT(mq_store_topic_partitions(s, "nope", &parts, &e), 0);
	CHECK_EQ_INT(parts, 4);
	mq_store_close(s, NULL);
}

TEST(invalid_names_create_nothing)
{
	static const char *const bad[] = {
		"../x", "..", ".", "", "a/b", ".hidden", "/abs", "x y",
		"%DLQ%../x", "%DLQ%", "caf\xc3\xa9",
	};
	mq_partition *p;
	mq_store *s;
	mq_err e;
	size_t i;
	int parts, wrong = 0;

	s = open_rw("data");
	MUST(s != NULL);
	for (i = 0; i < sizeof bad / sizeof *bad; i++) {
		if (mq_store_create_topic(s, bad[i], 1, &e) != -1 ||
		    e.code != MQ_E_NAME) {
			fprintf(stderr, "create \"%s\" not refused\n", bad[i]);
			wrong++;
		}
		if (mq_store_topic_partitions(s, bad[i], &parts, &e) != -1 ||
		    e.code != MQ_E_NAME)
			wrong++;
		if (mq_store_partition(s, bad[i], 0, &p, &e) != -1 ||
		    e.code != MQ_E_NAME)
			wrong++;
	}
	CHECK_EQ_INT(wrong, 0);
	CHECK_EQ_INT(mq_store_create_topic(s, NULL, 1, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_NAME);
	/* Nothing outside DIR, nothing new inside. */
	CHECK(!exists(tpath("x")));
	CHECK(!exists(tpath("data/x")));
	CHECK_EQ_INT(count_entries(harness_tmpdir()), 1);
	CHECK_EQ_INT(count_entries(tpath("data")), 2);
	CHECK_EQ_INT(count_entries(tpath("data/topics")), 0);
	mq_store_close(s, NULL);
}

TEST(stale_tmp_ignored_and_cleaned)
{
	char live[64], mine[64], **names;
	size_t n;
	mq_store *s;
	mq_err e;

	s = open_rw("data");
	MUST(s != NULL);
	MUST(mq_store_create_topic(s, "orders", 1, &e) == 0);
	mq_store_close(s, NULL);

	/* What a crash in the middle of creating "lost" would leave: a
	 * creator that is gone (no pid is that large), one that still runs
	 * (pid 1), and an earlier process with our own pid. */
	MUST(mkdir(tpath("data/topics/.tmp-lost-999999999"), 0755) == 0);
	MUST(spit(tpath("data/topics/.tmp-lost-999999999/meta"),
		  "mq-topic 1\npartitions 2\n") == 0);
	MUST(mkdir(tpath("data/topics/.tmp-lost-999999999/0"), 0755) == 0);
	MUST(spit(tpath("data/topics/.tmp-lost-999999999/0/junk"), "x") == 0);
	snprintf(live, sizeof live, "data/topics/.tmp-busy-%d", 1);
	MUST(mkdir(tpath(live), 0755) == 0);
	snprintf(mine, sizeof mine, "data/topics/.tmp-me-%ld",
		 (long)getpid());
	MUST(mkdir(tpath(mine), 0755) == 0);

	/* Read-only: ignored, not touched. */
	s = open_ro("data");
	MUST(s != NULL);
	MUST(mq_store_list_topics(s, &names, &n, &e) == 0);
	CHECK_EQ_INT(n, 1);
	CHECK(n == 1 && strcmp(names[0], "orders") == 0);
	mq_names_free(names, n);
	mq_store_close(s, NULL);
	CHECK(exists(tpath("data/topics/.tmp-lost-999999999/0/junk")));

	/* Read-write: the dead creators' leftovers go. */
	s = open_rw("data");
	MUST(s != NULL);
	CHECK(!exists(tpath("data/topics/.tmp-lost-999999999")));
	CHECK(!exists(tpath(mine)));
	CHECK(exists(tpath(live)));
	MUST(mq_store_list_topics(s, &names, &n, &e) == 0);
	CHECK_EQ_INT(n, 1);
	mq_names_free(names, n);
	/* And the name is free to use. */
	CHECK_EQ_INT(mq_store_create_topic(s, "lost", 2, &e), 0);
	mq_store_close(s, NULL);
}

TEST(read_only)
{
	mq_store_opts o;
	mq_store *s = (mq_store *)1;
	char **names;
	size_t n;
	mq_err e;
	int parts;

	memset(&o, 0, sizeof o);
	o.read_only = true;
	CHECK_EQ_INT(mq_store_open(tpath("missing"), &o, &s, &e), -1);
	CHECK(s == NULL);
	CHECK_EQ_INT(e.code, MQ_E_IO);
	CHECK(strstr(e.msg, tpath("missing")) != NULL);
	CHECK(strstr(e.msg, "does not exist") != NULL);
	CHECK(!exists(tpath("missing")));

	/* A file is not a data directory. */
	MUST(spit(tpath("file"), "x") == 0);
	CHECK_EQ_INT(mq_store_open(tpath("file"), &o, &s, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_IO);

	/* An empty directory: no topics, and nothing created. */
	MUST(mkdir(tpath("empty"), 0755) == 0);
	s = open_ro("empty");
	MUST(s != NULL);
	CHECK_EQ_INT(mq_store_list_topics(s, &names, &n, &e), 0);
	CHECK_EQ_INT(n, 0);
	mq_names_free(names, n);
	CHECK_EQ_INT(mq_store_topic_partitions(s, "t", &parts, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_NO_TOPIC);
	CHECK_EQ_INT(mq_store_create_topic(s, "t", 1, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_READ_ONLY);
	mq_store_close(s, NULL);
	CHECK_EQ_INT(count_entries(tpath("empty")), 0);

	/* A real one: readable, not writable. */
	s = open_rw("data");
	MUST(s != NULL);
	MUST(mq_store_create_topic(s, "orders", 2, &e) == 0);
	mq_store_close(s, NULL);
	s = open_ro("data");
	MUST(s != NULL);
	CHECK_EQ_INT(mq_store_topic_partitions(s, "orders", &parts, &e), 0);
	CHECK_EQ_INT(parts, 2);
	CHECK_EQ_INT(mq_store_create_topic(s, "other", 1, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_READ_ONLY);
	CHECK(!exists(tpath("data/topics/other")));
	mq_store_close(s, NULL);
}

TEST(bad_meta_detected)
{
	static const char *const bad[] = {
		"", "mq-topic 1\n", "mq-topic 2\npartitions 1\n",
		"mq-topic 1\npartitions 0\n", "mq-topic 1\npartitions 01\n",
		"mq-topic 1\npartitions 1025\n",
		"mq-topic 1\npartitions 99999999999\n",
		"mq-topic 1\npartitions -1\n", "mq-topic 1\npartitions 1",
		"mq-topic 1\npartitions 1\nextra\n",
		"mq-topic 1\npartitions 1 \n", "mq-topic 1\r\npartitions 1\n",
		"mq-topic\npartitions 1\n", "partitions 1\n",
	};
	mq_store *s;
	mq_err e;
	size_t i;
	int parts, wrong = 0;

	s = open_rw("data");
	MUST(s != NULL);
	MUST(mq_store_create_topic(s, "t", 1, &e) == 0);
	mq_store_close(s, NULL);
	for (i = 0; i < sizeof bad / sizeof *bad; i++) {
		MUST(spit(tpath("data/topics/t/meta"), bad[i]) == 0);
		s = open_rw("data");	/* fresh: nothing cached */
		MUST(s != NULL);
		if (mq_store_topic_partitions(s, "t", &parts, &e) != -1 ||
		    e.code != MQ_E_CORRUPT || !strstr(e.msg, "/t/meta")) {
			fprintf(stderr, "meta #%zu accepted\n", i);
			wrong++;
		}
		mq_store_close(s, NULL);
	}
	CHECK_EQ_INT(wrong, 0);

	/* Sanity: the same file, well formed, loads. */
	MUST(spit(tpath("data/topics/t/meta"),
		  "mq-topic 1\npartitions 1024\n") == 0);
	s = open_rw("data");
	MUST(s != NULL);
	CHECK_EQ_INT(mq_store_topic_partitions(s, "t", &parts, &e), 0);
	CHECK_EQ_INT(parts, 1024);
	mq_store_close(s, NULL);

	/* A topic directory without its meta file. */
	MUST(mkdir(tpath("data/topics/nometa"), 0755) == 0);
	s = open_rw("data");
	MUST(s != NULL);
	CHECK_EQ_INT(mq_store_topic_partitions(s, "nometa", &parts, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_CORRUPT);
	mq_store_close(s, NULL);
}

static int fail_fsync(int fd)
{
	(void)fd;
	errno = EIO;
	return -1;
}

TEST(failed_create_leaves_nothing)
{
	mq_store *s;
	mq_err e;
	int parts;

	s = open_rw("data");
	MUST(s != NULL);
	mq_io.fsync = fail_fsync;
	CHECK_EQ_INT(mq_store_create_topic(s, "orders", 3, &e), -1);
	mq_io_reset();
	CHECK_EQ_INT(e.code, MQ_E_IO);
	CHECK_EQ_INT(count_entries(tpath("data/topics")), 0);
	CHECK_EQ_INT(mq_store_topic_partitions(s, "orders", &parts, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_NO_TOPIC);
	CHECK_EQ_INT(mq_store_create_topic(s, "orders", 3, &e), 0);
	mq_store_close(s, NULL);
}

TEST(long_paths_refused)
{
	char dir[5000];
	mq_store *s = NULL;
	mq_err e;

	memset(dir, 'd', sizeof dir - 1);
	dir[0] = '/';
	dir[sizeof dir - 1] = '\0';
	CHECK_EQ_INT(mq_store_open(dir, NULL, &s, &e), -1);
	CHECK(s == NULL);
	CHECK_EQ_INT(e.code, MQ_E_INVAL);
	CHECK_EQ_INT(mq_dirlock_acquire(dir, false, "x", NULL, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_INVAL);
}

/* ---- partitions (needs partition.c) ---- */

static int count_cb(const char *topic, int partition, mq_partition *p,
		    void *arg)
{
	(void)topic;
	(void)partition;
	(void)p;
	return ++*(int *)arg >= 1000 ? 7 : 0;
}

static int stop_cb(const char *topic, int partition, mq_partition *p,
		   void *arg)
{
	(void)topic;
	(void)partition;
	(void)p;
	++*(int *)arg;
	return 42;
}

TEST(partitions_cached)
{
	mq_partition *p0, *p0b, *p1, *ps[100];
	mq_store *s;
	mq_err e;
	int i, n = 0, wrong = 0;

	s = open_rw("data");
	MUST(s != NULL);
	MUST(mq_store_create_topic(s, "orders", 2, &e) == 0);
	MUST(mq_store_create_topic(s, "many", 100, &e) == 0);
	CHECK_EQ_INT(mq_store_foreach_open(s, count_cb, &n), 0);
	CHECK_EQ_INT(n, 0);

	MUST(mq_store_partition(s, "orders", 0, &p0, &e) == 0);
	MUST(p0 != NULL);
	CHECK_EQ_INT(mq_part_end(p0), 0);
	MUST(mq_store_partition(s, "orders", 0, &p0b, &e) == 0);
	CHECK(p0 == p0b);
	MUST(mq_store_partition(s, "orders", 1, &p1, &e) == 0);
	CHECK(p1 != p0);

	/* Enough to make the table grow; every lookup still finds its own. */
	for (i = 0; i < 100; i++)
		if (mq_store_partition(s, "many", i, &ps[i], &e) < 0) {
			fprintf(stderr, "many/%d: %s\n", i, e.msg);
			ps[i] = NULL;
			wrong++;
		}
	for (i = 0; i < 100; i++) {
		mq_partition *q = NULL;
		if (mq_store_partition(s, "many", i, &q, &e) < 0 ||
		    q != ps[i] || q == p0 || q == p1 ||
		    (i > 0 && q == ps[i - 1]))
			wrong++;
	}
	CHECK_EQ_INT(wrong, 0);
	MUST(mq_store_partition(s, "orders", 0, &p0b, &e) == 0);
	CHECK(p0 == p0b);

	n = 0;
	CHECK_EQ_INT(mq_store_foreach_open(s, count_cb, &n), 0);
	CHECK_EQ_INT(n, 102);
	n = 0;
	CHECK_EQ_INT(mq_store_foreach_open(s, stop_cb, &n), 42);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(mq_store_close(s, &e), 0);
}

TEST(partition_read_only_and_missing_dir)
{
	mq_partition *p = NULL;
	mq_store *s;
	mq_err e;

	s = open_rw("data");
	MUST(s != NULL);
	MUST(mq_store_create_topic(s, "orders", 2, &e) == 0);
	mq_store_close(s, NULL);

	/* Read-only: a partition never written opens, empty, and the open
	 * writes nothing into its directory. */
	s = open_ro("data");
	MUST(s != NULL);
	CHECK_EQ_INT(mq_store_partition(s, "orders", 1, &p, &e), 0);
	if (p)
		CHECK_EQ_INT(mq_part_end(p), 0);
	CHECK_EQ_INT(mq_store_close(s, &e), 0);
	CHECK_EQ_INT(count_entries(tpath("data/topics/orders/1")), 0);

	/* A partition directory removed behind mq's back is reported, not
	 * silently recreated empty. */
	MUST(rmdir(tpath("data/topics/orders/0")) == 0);
	s = open_rw("data");
	MUST(s != NULL);
	CHECK_EQ_INT(mq_store_partition(s, "orders", 0, &p, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_CORRUPT);
	CHECK(!exists(tpath("data/topics/orders/0")));
	mq_store_close(s, NULL);
}

int main(void)
{
	RUN(lock_exclusive_in_process);
	RUN(lock_errors);
	RUN(lock_held_by_child_until_it_dies);
	RUN(lock_wait_until_holder_dies);
	RUN(open_creates_layout);
	RUN(create_and_list_topics);
	RUN(unknown_topics_and_partitions);
	RUN(invalid_names_create_nothing);
	RUN(stale_tmp_ignored_and_cleaned);
	RUN(read_only);
	RUN(bad_meta_detected);
	RUN(failed_create_leaves_nothing);
	RUN(long_paths_refused);
	RUN(partitions_cached);
	RUN(partition_read_only_and_missing_dir);
	return harness_done();
}
