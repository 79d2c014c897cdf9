/* t_name.c - topic and group name validation (name.h). */
#include "harness.h"

#include "name.h"

static int ok(const char *name)
{
	mq_err e = { 0, 0, "" };
	int rc = mq_name_check(name, &e);

	if (rc == 0 && e.code != 0)
		return -2;
	return rc;
}

/* Check that name is refused with MQ_E_NAME and a message containing
 * want (if not NULL). */
static int refused(const char *name, const char *want)
{
	mq_err e = { 0, 0, "" };

	if (mq_name_check(name, &e) != -1 || e.code != MQ_E_NAME)
		return 0;
	if (want && !strstr(e.msg, want)) {
		fprintf(stderr, "message \"%s\" lacks \"%s\"\n", e.msg, want);
		return 0;
	}
	return 1;
}

TEST(valid_names)
{
	CHECK_EQ_INT(ok("orders"), 0);
	CHECK_EQ_INT(ok("a"), 0);
	CHECK_EQ_INT(ok("A-Z_a-z.0-9"), 0);
	CHECK_EQ_INT(ok("x.."), 0);
	CHECK_EQ_INT(ok("-dash-first"), 0);
	CHECK_EQ_INT(ok("_"), 0);
	CHECK_EQ_INT(mq_topic_check("orders.eu-west_1", false, NULL), 0);
	CHECK_EQ_INT(mq_topic_check("orders", true, NULL), 0);
}

TEST(invalid_names)
{
	CHECK(refused("", "empty name"));
	CHECK(refused(NULL, "empty name"));
	CHECK(refused(".", "must not start with '.'"));
	CHECK(refused("..", "must not start with '.'"));
	CHECK(refused("../etc", "\"../etc\": must not start with '.'"));
	CHECK(refused(".hidden", "must not start with '.'"));
	CHECK(refused("a/b", "\"a/b\": '/' not allowed (use A-Z a-z 0-9 . _ -)"));
	CHECK(refused("/abs", "'/' not allowed"));
	CHECK(refused("a b", "space not allowed"));
	CHECK(refused("a%b", "'%' not allowed"));
	CHECK(refused("a\nb", "\"a\\x0ab\""));
	CHECK(refused("tab\there", "\\x09"));
	CHECK(refused("quote\"x", "\"quote\\\"x\""));
	CHECK(refused("back\\slash", "\"back\\\\slash\""));
	/* Non-ASCII: UTF-8 "é" and a stray high byte, shown escaped. */
	CHECK(refused("caf\xc3\xa9", "\"caf\\xc3\\xa9\": byte 0xc3"));
	CHECK(refused("\xff", "\\xff"));
	CHECK(refused("\x7f", "byte 0x7f"));
}

TEST(length_limit)
{
	char buf[10001];
	mq_err e;

	memset(buf, 'a', 200);
	buf[200] = '\0';
	CHECK_EQ_INT(ok(buf), 0);
	buf[200] = 'a';
	buf[201] = '\0';
	CHECK(refused(buf, "of 201 bytes: longer than 200"));

	memset(buf, 'x', 10000);
	buf[10000] = '\0';
	CHECK(refused(buf, "of 10000 bytes: longer than 200"));
	CHECK(refused(buf, "xxx...\""));
	CHECK_EQ_INT(mq_name_check(buf, &e), -1);
	/* The message is shortened, not 10 KB long. */
	CHECK(strlen(e.msg) < 120);
	CHECK(strstr(e.msg, "name") == e.msg);
}

TEST(embedded_nul)
{
	mq_err e = { 0, 0, "" };

	CHECK_EQ_INT(mq_name_check_n("abc", 3, NULL), 0);
	CHECK_EQ_INT(mq_name_check_n("abcdef", 3, NULL), 0); /* not NUL-ended */
	CHECK_EQ_INT(mq_name_check_n("ab\0cd", 5, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_NAME);
	CHECK(strstr(e.msg, "NUL") != NULL);
	CHECK(strstr(e.msg, "\"ab\\x00cd\"") != NULL);
	CHECK_EQ_INT(mq_name_check_n("abc\0", 4, NULL), -1);
	CHECK_EQ_INT(mq_name_check_n("\0", 1, NULL), -1);
	CHECK_EQ_INT(mq_name_check_n("", 0, NULL), -1);
	CHECK_EQ_INT(mq_topic_check_n("t\0x", 3, false, NULL), -1);
	CHECK_EQ_INT(mq_topic_check_n("t\0x", 3, true, NULL), -1);
	CHECK_EQ_INT(mq_topic_check_n("%DLQ%g\0", 7, true, NULL), -1);
	CHECK_EQ_INT(mq_topic_check_n("%DLQ%g", 6, true, NULL), 0);
	CHECK_EQ_INT(mq_topic_check_n("topic", 5, false, NULL), 0);
}

TEST(dlq_topics)
{
	char buf[MQ_TOPIC_MAX + 1], big[MQ_NAME_MAX + 2];
	mq_err e = { 0, 0, "" };

	CHECK_EQ_INT(mq_topic_check("%DLQ%g", true, NULL), 0);
	CHECK_EQ_INT(mq_topic_check("%DLQ%g", false, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_NAME);
	CHECK(strstr(e.msg, "reserved") != NULL);
	/* Never valid as a user name or a group name. */
	CHECK_EQ_INT(mq_name_check("%DLQ%g", NULL), -1);
	CHECK_EQ_INT(mq_topic_check("%DLQ%", true, NULL), -1);
	CHECK_EQ_INT(mq_topic_check("%DLQ%../x", true, &e), -1);
	CHECK(strstr(e.msg, "must not start with '.'") != NULL);
	CHECK_EQ_INT(mq_topic_check("%DLQ%a/b", true, NULL), -1);
	CHECK_EQ_INT(mq_topic_check("%DLQ%%DLQ%g", true, NULL), -1);
	CHECK_EQ_INT(mq_topic_check("%dlq%g", true, NULL), -1);
	CHECK_EQ_INT(mq_topic_check("x%DLQ%g", true, NULL), -1);

	CHECK(mq_topic_is_internal("%DLQ%g"));
	CHECK(!mq_topic_is_internal("g"));
	/* The replay log of a group follows the same rules. */
	CHECK_EQ_INT(mq_topic_check("%RPL%g", true, NULL), 0);
	CHECK_EQ_INT(mq_topic_check("%RPL%g", false, NULL), -1);
	CHECK_EQ_INT(mq_topic_check("%RPL%../x", true, NULL), -1);
	CHECK_EQ_INT(mq_topic_check("%RPL%", true, NULL), -1);
	CHECK_EQ_INT(mq_name_check("%RPL%g", NULL), -1);
	CHECK(mq_topic_is_internal("%RPL%g"));
	CHECK_EQ_INT(mq_rpl_topic("workers", buf, sizeof buf, NULL), 0);
	CHECK(strcmp(buf, "%RPL%workers") == 0);
	CHECK_EQ_INT(mq_rpl_topic("a/b", buf, sizeof buf, NULL), -1);
	CHECK(!mq_topic_is_internal("%DLQ"));
	CHECK(!mq_topic_is_internal(NULL));

	CHECK_EQ_INT(mq_dlq_topic("workers", buf, sizeof buf, NULL), 0);
	CHECK(strcmp(buf, "%DLQ%workers") == 0);
	CHECK_EQ_INT(mq_topic_check(buf, true, NULL), 0);
	CHECK_EQ_INT(mq_dlq_topic("../x", buf, sizeof buf, &e), -1);
	CHECK_EQ_INT(e.code, MQ_E_NAME);
	CHECK_EQ_INT(mq_dlq_topic("", buf, sizeof buf, NULL), -1);
	CHECK_EQ_INT(mq_dlq_topic("workers", buf, 8, &e), -1);

	/* The longest group gives the longest topic, MQ_TOPIC_MAX bytes. */
	memset(big, 'g', MQ_NAME_MAX);
	big[MQ_NAME_MAX] = '\0';
	CHECK_EQ_INT(mq_dlq_topic(big, buf, sizeof buf, NULL), 0);
	CHECK_EQ_INT(strlen(buf), MQ_TOPIC_MAX);
	CHECK_EQ_INT(mq_topic_check(buf, true, NULL), 0);
	big[MQ_NAME_MAX] = 'g';
	big[MQ_NAME_MAX + 1] = '\0';
	CHECK_EQ_INT(mq_dlq_topic(big, buf, sizeof buf, NULL), -1);
}

int main(void)
{
	RUN(valid_names);
	RUN(invalid_names);
	RUN(length_limit);
	RUN(embedded_nul);
	RUN(dlq_topics);
	return harness_done();
}
