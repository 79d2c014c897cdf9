/* t_offsets.c - committed offsets of a consumer group (offsets.h). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "batch.h"
#include "io.h"
#include "name.h"
#include "offsets.h"

static char path_buf[4096];

static const char *path(const char *fmt, const char *a)
{
	snprintf(path_buf, sizeof path_buf, fmt, harness_tmpdir(), a);
	return path_buf;
}

static int exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

static char *slurp(const char *p, size_t *len)
{
	char *buf = NULL;
	mq_err e;

	if (mq_read_file(p, 1 << 20, &buf, len, &e) < 0)
		return NULL;
	return buf;
}

static int spit(const char *p, const char *data, size_t len)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, data, len);
	close(fd);
	return n == (ssize_t)len ? 0 : -1;
}

/* Save a small known set for group g. */
static int save_sample(const char *gdir, const char *g)
{
	mq_offsets *o;
	mq_err e;

	if (mq_offsets_load(gdir, g, true, &o, &e) < 0)
		return -1;
	if (mq_offsets_set(o, "orders", 1, 42, &e) < 0 ||
	    mq_offsets_set(o, "orders", 0, 7, &e) < 0 ||
	    mq_offsets_set(o, "audit", 3, 0, &e) < 0 ||
	    mq_offsets_set(o, "%DLQ%g", 0, 5, &e) < 0 ||
	    mq_offsets_save(o, &e) < 0) {
		mq_offsets_free(o);
		return -1;
	}
	mq_offsets_free(o);
	return 0;
}

/* Load must fail with MQ_E_CORRUPT and a message naming the file (and
 * containing want, if given). */
static int load_corrupt(const char *gdir, const char *want)
{
	mq_offsets *o = (mq_offsets *)1;
	mq_err e = { 0, 0, "" };

	if (mq_offsets_load(gdir, "g", false, &o, &e) != -1 || o != NULL) {
		fprintf(stderr, "load succeeded\n");
		return 0;
	}
	if (e.code != MQ_E_CORRUPT || !strstr(e.msg, "/g/offsets")) {
		fprintf(stderr, "code %d, message \"%s\"\n", e.code, e.msg);
		return 0;
	}
	if (want && !strstr(e.msg, want)) {
		fprintf(stderr, "message \"%s\" lacks \"%s\"\n", e.msg, want);
		return 0;
	}
	return 1;
}

/* Load g and free it: 1 if it loads. */
static int loads(const char *gdir)
{
	mq_offsets *o;
	mq_err e;

	if (mq_offsets_load(gdir, "g", false, &o, &e) < 0) {
		fprintf(stderr, "load failed: %s\n", e.msg);
		return 0;
	}
	mq_offsets_free(o);
	return 1;
}

/* Write body plus a correct crc line as g's offsets file. */
static int write_with_crc(const char *gdir, const char *body)
{
	char buf[4096], p[4096];
	int n;

	n = snprintf(buf, sizeof buf, "%scrc %08x\n", body,
		     mq_crc32c(0, body, strlen(body)));
	snprintf(p, sizeof p, "%s/g/offsets", gdir);
	mkdir(path("%s/groups/%s", "g"), 0755);
	return spit(p, buf, (size_t)n);
}

TEST(missing_file_is_empty)
{
	char gdir[1024];
	mq_offsets *o;
	mq_err e;

	snprintf(gdir, sizeof gdir, "%s", path("%s/%s", "groups"));
	MUST(mkdir(gdir, 0755) == 0);
	MUST(mq_offsets_load(gdir, "g", false, &o, &e) == 0);
	CHECK_EQ_INT(mq_offsets_count(o), 0);
	CHECK_EQ_INT(mq_offsets_get(o, "orders", 0), -1);
	CHECK(mq_offsets_at(o, 0) == NULL);
	mq_offsets_free(o);
	/* Without create nothing was made... */
	CHECK(!exists(path("%s/groups/%s", "g")));
	/* ...with create the group directory appears. */
	MUST(mq_offsets_load(gdir, "g", true, &o, &e) == 0);
	CHECK(exists(path("%s/groups/%s", "g")));
	CHECK(!exists(path("%s/groups/g/%s", "offsets")));
	mq_offsets_free(o);
}

TEST(round_trip_sorted)
{
	char gdir[1024];
	const mq_offset_entry *en;
	mq_offsets *o;
	int64_t before = mq_now_ms();
	mq_err e;

	snprintf(gdir, sizeof gdir, "%s", path("%s/%s", "groups"));
	MUST(mkdir(gdir, 0755) == 0);
	MUST(save_sample(gdir, "g") == 0);
	CHECK(exists(path("%s/groups/g/%s", "offsets")));
	CHECK(!exists(path("%s/groups/g/%s", "offsets.tmp")));

	MUST(mq_offsets_load(gdir, "g", false, &o, &e) == 0);
	MUST(mq_offsets_count(o) == 4);
	CHECK_EQ_INT(mq_offsets_get(o, "orders", 0), 7);
	CHECK_EQ_INT(mq_offsets_get(o, "orders", 1), 42);
	CHECK_EQ_INT(mq_offsets_get(o, "orders", 2), -1);
	CHECK_EQ_INT(mq_offsets_get(o, "audit", 3), 0);
	CHECK_EQ_INT(mq_offsets_get(o, "%DLQ%g", 0), 5);
	CHECK_EQ_INT(mq_offsets_get(o, "nope", 0), -1);
	/* Sorted by topic ('%' < 'a'), then partition. */
	en = mq_offsets_at(o, 0);
	CHECK(strcmp(en->topic, "%DLQ%g") == 0 && en->partition == 0);
	en = mq_offsets_at(o, 1);
	CHECK(strcmp(en->topic, "audit") == 0 && en->partition == 3);
	en = mq_offsets_at(o, 2);
	CHECK(strcmp(en->topic, "orders") == 0 && en->partition == 0 &&
	      en->offset == 7);
	CHECK(en->commit_ms >= before - 1000 &&
	      en->commit_ms <= mq_now_ms() + 1000);
	en = mq_offsets_at(o, 3);
	CHECK(strcmp(en->topic, "orders") == 0 && en->partition == 1 &&
	      en->offset == 42);
	CHECK(mq_offsets_at(o, 4) == NULL);
	mq_offsets_free(o);
}

TEST(file_format)
{
	char gdir[1024], *buf;
	size_t len;

	snprintf(gdir, sizeof gdir, "%s", path("%s/%s", "groups"));
	MUST(mkdir(gdir, 0755) == 0);
	MUST(save_sample(gdir, "g") == 0);
	buf = slurp(path("%s/groups/g/%s", "offsets"), &len);
	MUST(buf != NULL);
	CHECK(strncmp(buf, "mq-offsets 1\n%DLQ%g 0 5 ", 24) == 0);
	CHECK(strstr(buf, "\naudit 3 0 ") != NULL);
	CHECK(strstr(buf, "\norders 0 7 ") != NULL);
	CHECK(strstr(buf, "\norders 1 42 ") != NULL);
	CHECK(len > 13 && strncmp(buf + len - 13, "crc ", 4) == 0);
	CHECK((uint32_t)strtoul(buf + len - 9, NULL, 16) ==
	      mq_crc32c(0, buf, len - 13));
	free(buf);
}

TEST(overwrite_and_remove)
{
	char gdir[1024];
	mq_offsets *o;
	mq_err e;

	snprintf(gdir, sizeof gdir, "%s", path("%s/%s", "groups"));
	MUST(mkdir(gdir, 0755) == 0);
	MUST(save_sample(gdir, "g") == 0);

	MUST(mq_offsets_load(gdir, "g", false, &o, &e) == 0);
	CHECK_EQ_INT(mq_offsets_set(o, "orders", 1, 100, &e), 0);
	CHECK_EQ_INT(mq_offsets_count(o), 4);
	mq_offsets_remove(o, "audit", 3);
	mq_offsets_remove(o, "audit", 4);	/* absent: no-op */
	mq_offsets_remove(o, "never", 0);
	CHECK_EQ_INT(mq_offsets_count(o), 3);
	CHECK_EQ_INT(mq_offsets_get(o, "audit", 3), -1);
	CHECK_EQ_INT(mq_offsets_save(o, &e), 0);
	mq_offsets_free(o);

	MUST(mq_offsets_load(gdir, "g", false, &o, &e) == 0);
	CHECK_EQ_INT(mq_offsets_count(o), 3);
	CHECK_EQ_INT(mq_offsets_get(o, "orders", 1), 100);
	CHECK_EQ_INT(mq_offsets_get(o, "orders", 0), 7);
	CHECK_EQ_INT(mq_offsets_get(o, "audit", 3), -1);
	/* Remove everything: an empty set saves and loads. */
	while (mq_offsets_count(o)) {
		const mq_offset_entry *en = mq_offsets_at(o, 0);
		char t[MQ_TOPIC_MAX + 1];
		snprintf(t, sizeof t, "%s", en->topic);
		mq_offsets_remove(o, t, en->partition);
	}
	CHECK_EQ_INT(mq_offsets_save(o, &e), 0);
	mq_offsets_free(o);
	MUST(mq_offsets_load(gdir, "g", false, &o, &e) == 0);
	CHECK_EQ_INT(mq_offsets_count(o), 0);
	mq_offsets_free(o);
}

TEST(forward_only_commits)
{
	char gdir[1024];
	mq_offsets *o;
	mq_err e;

	snprintf(gdir, sizeof gdir, "%s", path("%s/%s", "groups"));
	MUST(mkdir(gdir, 0755) == 0);
	MUST(mq_offsets_load(gdir, "g", true, &o, &e) == 0);
	/* A first commit sets; forward-only keeps a higher offset ... */
	CHECK_EQ_INT(mq_offsets_commit(o, "t", 0, 10, true, &e), 0);
	CHECK_EQ_INT(mq_offsets_commit(o, "t", 0, 4, true, &e), 0);
	CHECK_EQ_INT(mq_offsets_get(o, "t", 0), 10);
	CHECK_EQ_INT(mq_offsets_commit(o, "t", 0, 12, true, &e), 0);
	CHECK_EQ_INT(mq_offsets_get(o, "t", 0), 12);
	/* ... and without it a commit may move back. */
	CHECK_EQ_INT(mq_offsets_commit(o, "t", 0, 3, false, &e), 0);
	CHECK_EQ_INT(mq_offsets_get(o, "t", 0), 3);
	CHECK_EQ_INT(mq_offsets_commit(o, "t", -1, 3, true, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_INVAL);
	mq_offsets_free(o);
}

TEST(many_entries)
{
	char gdir[1024], t[32];
	mq_offsets *o;
	mq_err e;
	int i, bad = 0;

	snprintf(gdir, sizeof gdir, "%s", path("%s/%s", "groups"));
	MUST(mkdir(gdir, 0755) == 0);
	MUST(mq_offsets_load(gdir, "g", true, &o, &e) == 0);
	/* Inserted in reverse so that every insert lands at the front. */
	for (i = 999; i >= 0; i--) {
		snprintf(t, sizeof t, "t%03d", i / 10);
		if (mq_offsets_set(o, t, i % 10, (int64_t)i * 1000000000000LL,
				   &e) < 0)
			bad++;
	}
	CHECK_EQ_INT(bad, 0);
	CHECK_EQ_INT(mq_offsets_save(o, &e), 0);
	mq_offsets_free(o);
	MUST(mq_offsets_load(gdir, "g", false, &o, &e) == 0);
	MUST(mq_offsets_count(o) == 1000);
	for (i = 0; i < 1000; i++) {
		const mq_offset_entry *en = mq_offsets_at(o, (size_t)i);
		snprintf(t, sizeof t, "t%03d", i / 10);
		if (strcmp(en->topic, t) || en->partition != i % 10 ||
		    en->offset != (int64_t)i * 1000000000000LL)
			bad++;
	}
	CHECK_EQ_INT(bad, 0);
	mq_offsets_free(o);
}

TEST(bad_arguments)
{
	char gdir[1024];
	mq_offsets *o = (mq_offsets *)1;
	mq_err e;

	snprintf(gdir, sizeof gdir, "%s", path("%s/%s", "groups"));
	MUST(mkdir(gdir, 0755) == 0);
	CHECK_EQ_INT(mq_offsets_load(gdir, "../x", true, &o, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_NAME);
	CHECK(o == NULL);
	CHECK(!exists(path("%s/%s", "x")));
	CHECK_EQ_INT(mq_offsets_load(gdir, "", true, &o, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_NAME);
	CHECK_EQ_INT(mq_offsets_load(gdir, "a/b", true, &o, &e), -1);
	CHECK(!exists(path("%s/groups/%s", "a")));
	CHECK_EQ_INT(mq_offsets_load(gdir, "%DLQ%g", true, &o, &e), -1);

	MUST(mq_offsets_load(gdir, "g", true, &o, &e) == 0);
	CHECK_EQ_INT(mq_offsets_set(o, "../t", 0, 1, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_NAME);
	CHECK_EQ_INT(mq_offsets_set(o, "a b", 0, 1, &e), -1);
	CHECK_EQ_INT(mq_offsets_set(o, "t", -1, 1, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_INVAL);
	CHECK_EQ_INT(mq_offsets_set(o, "t", 0, -1, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_INVAL);
	CHECK_EQ_INT(mq_offsets_count(o), 0);
	mq_offsets_free(o);
}

TEST(crc_damage_detected)
{
	char gdir[1024], *buf, p[4096];
	size_t len, i;
	int undetected = 0;

	snprintf(gdir, sizeof gdir, "%s", path("%s/%s", "groups"));
	MUST(mkdir(gdir, 0755) == 0);
	MUST(save_sample(gdir, "g") == 0);
	snprintf(p, sizeof p, "%s/g/offsets", gdir);
	buf = slurp(p, &len);
	MUST(buf != NULL);

	/* A digit changed inside an offset: the CRC must catch it. */
	{
		char *d = strstr(buf, "orders 1 42 ");
		MUST(d != NULL);
		d[9] = '3';
		MUST(spit(p, buf, len) == 0);
		CHECK(load_corrupt(gdir, "crc mismatch"));
		d[9] = '4';
	}
	/* Flip one bit of every byte in turn: never accepted. */
	for (i = 0; i < len; i++) {
		mq_offsets *o = NULL;
		mq_err e = { 0, 0, "" };

		buf[i] ^= 0x04;
		if (spit(p, buf, len) < 0 ||
		    mq_offsets_load(gdir, "g", false, &o, &e) == 0 ||
		    e.code != MQ_E_CORRUPT) {
			fprintf(stderr, "byte %zu: code %d %s\n", i, e.code,
				e.msg);
			undetected++;
		}
		mq_offsets_free(o);
		buf[i] ^= 0x04;
	}
	CHECK_EQ_INT(undetected, 0);
	/* Restored, it loads again. */
	MUST(spit(p, buf, len) == 0);
	{
		mq_offsets *o;
		mq_err e;
		CHECK_EQ_INT(mq_offsets_load(gdir, "g", false, &o, &e), 0);
		if (o)
			mq_offsets_free(o);
	}
	free(buf);
}

TEST(truncation_detected)
{
	char gdir[1024], *buf, p[4096];
	size_t len, cut;
	int undetected = 0;

	snprintf(gdir, sizeof gdir, "%s", path("%s/%s", "groups"));
	MUST(mkdir(gdir, 0755) == 0);
	MUST(save_sample(gdir, "g") == 0);
	snprintf(p, sizeof p, "%s/g/offsets", gdir);
	buf = slurp(p, &len);
	MUST(buf != NULL);
	for (cut = 0; cut < len; cut++) {
		MUST(spit(p, buf, cut) == 0);
		if (!load_corrupt(gdir, NULL)) {
			fprintf(stderr, "cut at %zu not detected\n", cut);
			undetected++;
		}
	}
	CHECK_EQ_INT(undetected, 0);
	MUST(spit(p, buf, cut) == 0);
	CHECK(loads(gdir));	/* whole again */
	/* Trailing garbage after the crc line. */
	{
		char *more = malloc(len + 2);
		MUST(more != NULL);
		memcpy(more, buf, len);
		memcpy(more + len, "x\n", 2);
		MUST(spit(p, more, len + 2) == 0);
		CHECK(load_corrupt(gdir, NULL));
		free(more);
	}
	free(buf);
}

TEST(strict_parsing)
{
	char gdir[1024];

	snprintf(gdir, sizeof gdir, "%s", path("%s/%s", "groups"));
	MUST(mkdir(gdir, 0755) == 0);

	/* A well-formed file by hand, to show the next ones fail only for
	 * the reason given. */
	MUST(write_with_crc(gdir, "mq-offsets 1\nt 0 5 1700000000000\n") == 0);
	CHECK(loads(gdir));

	MUST(write_with_crc(gdir, "mq-offsets 2\nt 0 5 1\n") == 0);
	CHECK(load_corrupt(gdir, ":1: unsupported version 2"));
	MUST(write_with_crc(gdir, "mq-offset 1\nt 0 5 1\n") == 0);
	CHECK(load_corrupt(gdir, ":1: not an offsets file"));
	MUST(write_with_crc(gdir, "mq-offsets 1\nt 0 -5 1\n") == 0);
	CHECK(load_corrupt(gdir, ":2: negative offset"));
	MUST(write_with_crc(gdir, "mq-offsets 1\nt 0 5 1\nu 1 2 3\nt 0 6 1\n") == 0);
	CHECK(load_corrupt(gdir, ":4: duplicate entry"));
	MUST(write_with_crc(gdir, "mq-offsets 1\nt 0 5\n") == 0);
	CHECK(load_corrupt(gdir, ":2: expected"));
	MUST(write_with_crc(gdir, "mq-offsets 1\nt 0 5 1 9\n") == 0);
	CHECK(load_corrupt(gdir, ":2: expected"));
	MUST(write_with_crc(gdir, "mq-offsets 1\nt  0 5 1\n") == 0);
	CHECK(load_corrupt(gdir, ":2: expected"));
	MUST(write_with_crc(gdir, "mq-offsets 1\nt 0 5 1 \n") == 0);
	CHECK(load_corrupt(gdir, ":2: expected"));
	MUST(write_with_crc(gdir, "mq-offsets 1\n\n") == 0);
	CHECK(load_corrupt(gdir, ":2: expected"));
	MUST(write_with_crc(gdir, "mq-offsets 1\nt -1 5 1\n") == 0);
	CHECK(load_corrupt(gdir, ":2: bad partition"));
	MUST(write_with_crc(gdir, "mq-offsets 1\nt 2147483648 5 1\n") == 0);
	CHECK(load_corrupt(gdir, ":2: bad partition"));
	MUST(write_with_crc(gdir, "mq-offsets 1\nt 0 5x 1\n") == 0);
	CHECK(load_corrupt(gdir, ":2: bad offset"));
	MUST(write_with_crc(gdir, "mq-offsets 1\nt 0 9223372036854775808 1\n") == 0);
	CHECK(load_corrupt(gdir, ":2: bad offset"));
	MUST(write_with_crc(gdir, "mq-offsets 1\nt 0 9223372036854775807 1\n") == 0);
	CHECK(loads(gdir));
	MUST(write_with_crc(gdir, "mq-offsets 1\nt 0 05 1\n") == 0);
	CHECK(load_corrupt(gdir, ":2: bad offset"));
	MUST(write_with_crc(gdir, "mq-offsets 1\nt 0 +5 1\n") == 0);
	CHECK(load_corrupt(gdir, ":2: bad offset"));
	MUST(write_with_crc(gdir, "mq-offsets 1\nt 0 5 x\n") == 0);
	CHECK(load_corrupt(gdir, ":2: bad commit time"));
	MUST(write_with_crc(gdir, "mq-offsets 1\n../t 0 5 1\n") == 0);
	CHECK(load_corrupt(gdir, ":2: invalid topic name"));
	MUST(write_with_crc(gdir, "mq-offsets 1\nt 0 5 1\r\n") == 0);
	CHECK(load_corrupt(gdir, ":2: bad commit time"));
	/* A crc line that is not last, or in capitals. */
	MUST(write_with_crc(gdir, "mq-offsets 1\ncrc 00000000\nt 0 5 1\n") == 0);
	CHECK(load_corrupt(gdir, ":2:"));
	{
		char p[4096];
		const char *body = "mq-offsets 1\n";
		char buf[128];
		int n = snprintf(buf, sizeof buf, "%sCRC %08x\n", body,
				 mq_crc32c(0, body, strlen(body)));
		snprintf(p, sizeof p, "%s/g/offsets", gdir);
		MUST(spit(p, buf, (size_t)n) == 0);
		CHECK(load_corrupt(gdir, "no crc line"));
		MUST(spit(p, "", 0) == 0);
		CHECK(load_corrupt(gdir, "empty"));
		MUST(spit(p, "mq-offsets 1\0crc 0\n", 19) == 0);
		CHECK(load_corrupt(gdir, "NUL"));
	}
}

TEST(oversized_file_refused)
{
	char gdir[1024], p[4096];
	int fd;

	snprintf(gdir, sizeof gdir, "%s", path("%s/%s", "groups"));
	MUST(mkdir(gdir, 0755) == 0);
	MUST(mkdir(path("%s/groups/%s", "g"), 0755) == 0);
	snprintf(p, sizeof p, "%s/g/offsets", gdir);
	fd = open(p, O_WRONLY | O_CREAT, 0644);
	MUST(fd >= 0);
	/* Sparse: 100 MiB without using the disk. */
	CHECK_EQ_INT(ftruncate(fd, 100 << 20), 0);
	close(fd);
	CHECK(load_corrupt(gdir, "over limit"));
}

TEST(leftover_tmp_ignored)
{
	char gdir[1024], p[4096];
	mq_offsets *o;
	mq_err e;

	snprintf(gdir, sizeof gdir, "%s", path("%s/%s", "groups"));
	MUST(mkdir(gdir, 0755) == 0);
	MUST(save_sample(gdir, "g") == 0);
	/* A crash during save leaves offsets.tmp behind. */
	snprintf(p, sizeof p, "%s/g/offsets.tmp", gdir);
	MUST(spit(p, "mq-offsets 1\norders 0 999", 25) == 0);
	MUST(mq_offsets_load(gdir, "g", false, &o, &e) == 0);
	CHECK_EQ_INT(mq_offsets_get(o, "orders", 0), 7);
	/* The next save goes through despite it. */
	CHECK_EQ_INT(mq_offsets_set(o, "orders", 0, 8, &e), 0);
	CHECK_EQ_INT(mq_offsets_save(o, &e), 0);
	mq_offsets_free(o);
	CHECK(!exists(p));
	MUST(mq_offsets_load(gdir, "g", false, &o, &e) == 0);
	CHECK_EQ_INT(mq_offsets_get(o, "orders", 0), 8);
	mq_offsets_free(o);
}

static int fail_fsync(int fd)
{
	(void)fd;
	errno = EIO;
	return -1;
}

TEST(failed_save_keeps_old_file)
{
	char gdir[1024];
	mq_offsets *o;
	mq_err e;

	snprintf(gdir, sizeof gdir, "%s", path("%s/%s", "groups"));
	MUST(mkdir(gdir, 0755) == 0);
	MUST(save_sample(gdir, "g") == 0);
	MUST(mq_offsets_load(gdir, "g", false, &o, &e) == 0);
	CHECK_EQ_INT(mq_offsets_set(o, "orders", 0, 1000, &e), 0);
	mq_io.fsync = fail_fsync;
	CHECK_EQ_INT(mq_offsets_save(o, &e), -1);
	mq_io_reset();
	CHECK_EQ_INT(e.code, MQ_E_IO);
	mq_offsets_free(o);
	MUST(mq_offsets_load(gdir, "g", false, &o, &e) == 0);
	CHECK_EQ_INT(mq_offsets_get(o, "orders", 0), 7);
	mq_offsets_free(o);
}

TEST(list_groups)
{
	char gdir[1024], **names;
	size_t n;
	mq_err e;

	snprintf(gdir, sizeof gdir, "%s", path("%s/%s", "groups"));
	/* No groups directory at all: no groups. */
	CHECK_EQ_INT(mq_offsets_list_groups(gdir, &names, &n, &e), 0);
	CHECK_EQ_INT(n, 0);
	mq_names_free(names, n);

	MUST(mkdir(gdir, 0755) == 0);
	MUST(save_sample(gdir, "zeta") == 0);
	MUST(save_sample(gdir, "alpha") == 0);
	MUST(mkdir(path("%s/groups/%s", "mid"), 0755) == 0);
	MUST(mkdir(path("%s/groups/%s", ".hidden"), 0755) == 0);
	MUST(mkdir(path("%s/groups/%s", "bad name"), 0755) == 0);
	MUST(spit(path("%s/groups/%s", "file"), "x", 1) == 0);
	MUST(mq_offsets_list_groups(gdir, &names, &n, &e) == 0);
	MUST(n == 3);
	CHECK(strcmp(names[0], "alpha") == 0);
	CHECK(strcmp(names[1], "mid") == 0);
	CHECK(strcmp(names[2], "zeta") == 0);
	mq_names_free(names, n);
}

int main(void)
{
	RUN(missing_file_is_empty);
	RUN(round_trip_sorted);
	RUN(file_format);
	RUN(overwrite_and_remove);
	RUN(forward_only_commits);
	RUN(many_entries);
	RUN(bad_arguments);
	RUN(crc_damage_detected);
	RUN(truncation_detected);
	RUN(strict_parsing);
	RUN(oversized_file_refused);
	RUN(leftover_tmp_ignored);
	RUN(failed_save_keeps_old_file);
	RUN(list_groups);
	return harness_done();
}
