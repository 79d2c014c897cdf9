/*
 * name.h - names of topics and groups. They become directory names, so
 * they are checked before any path is built from them: 1 to MQ_NAME_MAX
 * bytes of [A-Za-z0-9._-], not starting with '.', hence never "." or "..",
 * never containing '/'.
 *
 * Internal topics are a prefix followed by a valid group name: "%DLQ%"
 * for a group's dead-letter queue, "%RPL%" for its replay log (what
 * mq-replay(1) has sent back). '%' is outside the user character set, so
 * no user topic can take such a name.
 */
#ifndef MQ_NAME_H
#define MQ_NAME_H

#include "mq.h"

#define MQ_NAME_MAX 200
#define MQ_DLQ_PREFIX "%DLQ%"
#define MQ_RPL_PREFIX "%RPL%"   /* same length as MQ_DLQ_PREFIX */
#define MQ_TOPIC_MAX (MQ_NAME_MAX + 5)

/* 0 if name is a valid user topic or group name, else -1 + err
 * (MQ_E_NAME, message quoting a printable form of the name). */
int mq_name_check(const char *name, mq_err *err);
/* Same for a byte string that may contain NULs (from the network). */
int mq_name_check_n(const char *name, size_t len, mq_err *err);

/* A topic name: a user name, or (if internal_ok) an internal name. */
int mq_topic_check(const char *name, bool internal_ok, mq_err *err);
int mq_topic_check_n(const char *name, size_t len, bool internal_ok,
		     mq_err *err);
bool mq_topic_is_internal(const char *name);

/* Write the DLQ topic name of group into buf (MQ_TOPIC_MAX + 1 bytes). */
int mq_dlq_topic(const char *group, char *buf, size_t size, mq_err *err);
/* The same for the replay-log topic of group. */
int mq_rpl_topic(const char *group, char *buf, size_t size, mq_err *err);

#endif
