/*
 * name.c - validation of topic and group names.
 *
 * Names become directory names under the data directory, so a name is
 * checked here before any path is built from it. The rules (name.h) are
 * deliberately narrow: 1 to MQ_NAME_MAX bytes of [A-Za-z0-9._-], not
 * starting with '.'. That excludes "", ".", "..", anything with '/', NUL,
 * spaces (the offsets file separates fields with spaces) and non-ASCII
 * bytes (whose meaning depends on the reader's locale).
 *
 * Error messages quote the offending name in a form that is safe to print
 * on a terminal: non-printable bytes as \xNN, long names cut short.
 */
#include "name.h"

#include <stdio.h>
#include <string.h>

/* How many bytes of a bad name an error message shows, and the room its
 * quoted form may take (escapes included) so the reason still fits. */
#define QUOTE_MAX 48
#define QUOTE_ROOM 100

static bool name_char_ok(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/*
 * Write a printable, quoted form of name[0..len) into out: bytes outside
 * printable ASCII as \xNN, '"' and '\\' escaped, at most QUOTE_MAX source
 * bytes followed by "..." when the name is longer.
 */
static void quote(char *out, size_t size, const char *name, size_t len)
{
	size_t o = 0, i, shown = len > QUOTE_MAX ? QUOTE_MAX : len;

	if (size < 3) {
		if (size)
			out[0] = '\0';
		return;
	}
	out[o++] = '"';
	for (i = 0; i < shown; i++) {
		unsigned char c = (unsigned char)name[i];
		char tmp[8];
		size_t n;

		if (c == '"' || c == '\\')
			n = (size_t)snprintf(tmp, sizeof tmp, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			n = (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", c);
		else
			n = (size_t)snprintf(tmp, sizeof tmp, "%c", c);
		if (o + n + 5 > size)	/* keep room for ...", NUL */
			break;
		memcpy(out + o, tmp, n);
		o += n;
	}
	if (i < len && o + 4 <= size - 1) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o++] = '"';
	out[o] = '\0';
}

/*
 * Check a user name (topic or group) at name[0..len). kind ("name", "topic
 * name", ...) starts the message. When the name checked is only a part of
 * the name given (the group inside a dead-letter topic), whole is what the
 * message quotes and part ("group part ") says which piece is wrong;
 * otherwise part is "".
 */
static int check(const char *kind, const char *part, const char *name,
		 size_t len, const char *whole, size_t whole_len, mq_err *err)
{
	char q[QUOTE_ROOM];
	size_t i;

	if (whole_len == 0)
		return mq_errf(err, MQ_E_NAME, "empty %s", kind);
	quote(q, sizeof q, whole, whole_len);
	if (len == 0)
		return mq_errf(err, MQ_E_NAME, "invalid %s %s: %sis empty", kind,
			       q, part);
	if (len > MQ_NAME_MAX)
		return mq_errf(err, MQ_E_NAME,
			       "%s %s %sof %zu bytes: longer than %d", kind, q,
			       part, len, MQ_NAME_MAX);
	if (name[0] == '.')
		return mq_errf(err, MQ_E_NAME,
			       "invalid %s %s: %smust not start with '.'", kind,
			       q, part);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (name_char_ok(c))
			continue;
		if (c == '\0')
			return mq_errf(err, MQ_E_NAME,
				       "invalid %s %s: NUL byte not allowed",
				       kind, q);
		if (c == ' ')
			return mq_errf(err, MQ_E_NAME,
				       "invalid %s %s: space not allowed "
				       "(use A-Z a-z 0-9 . _ -)", kind, q);
		if (c > ' ' && c < 0x7f)
			return mq_errf(err, MQ_E_NAME,
				       "invalid %s %s: '%c' not allowed "
				       "(use A-Z a-z 0-9 . _ -)", kind, q, c);
		return mq_errf(err, MQ_E_NAME,
			       "invalid %s %s: byte 0x%02x not allowed "
			       "(use A-Z a-z 0-9 . _ -)", kind, q, c);
	}
	return 0;
}

int mq_name_check_n(const char *name, size_t len, mq_err *err)
{
	if (!name)
		len = 0;
	return check("name", "", name, len, name, len, err);
}

int mq_name_check(const char *name, mq_err *err)
{
	return mq_name_check_n(name, name ? strlen(name) : 0, err);
}

/* Internal topic names: a prefix, then a group name. */
static const struct internal {
	const char *prefix;
	const char *kind;     /* "dead-letter topic" */
	const char *owners;   /* who the prefix is reserved for */
} internals[] = {
	{ MQ_DLQ_PREFIX, "dead-letter topic", "dead-letter queues" },
	{ MQ_RPL_PREFIX, "replay-log topic", "replay logs" },
};

_Static_assert(sizeof MQ_RPL_PREFIX == sizeof MQ_DLQ_PREFIX,
	       "MQ_TOPIC_MAX assumes internal prefixes of one length");

/* The kind of internal name name[0..len) is, or NULL for other names. */
static const struct internal *internal_kind(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof internals / sizeof *internals; i++) {
		size_t plen = strlen(internals[i].prefix);

		if (name && len >= plen &&
		    memcmp(name, internals[i].prefix, plen) == 0)
			return &internals[i];
	}
	return NULL;
}

int mq_topic_check_n(const char *name, size_t len, bool internal_ok,
		     mq_err *err)
{
	const struct internal *in;
	char q[QUOTE_ROOM];

	if (!name)
		len = 0;
	if ((in = internal_kind(name, len))) {
		size_t plen = strlen(in->prefix);

		if (!internal_ok) {
			quote(q, sizeof q, name, len);
			return mq_errf(err, MQ_E_NAME,
				       "invalid topic name %s: names starting "
				       "with \"%s\" are reserved for %s", q,
				       in->prefix, in->owners);
		}
		return check(in->kind, "group part ", name + plen, len - plen,
			     name, len, err);
	}
	return check("topic name", "", name, len, name, len, err);
}

int mq_topic_check(const char *name, bool internal_ok, mq_err *err)
{
	return mq_topic_check_n(name, name ? strlen(name) : 0, internal_ok,
				err);
}

bool mq_topic_is_internal(const char *name)
{
	return name && internal_kind(name, strlen(name));
}

/* prefix followed by group, into buf; kind names it in messages. */
static int internal_topic(const char *prefix, const char *kind,
			  const char *group, char *buf, size_t size,
			  mq_err *err)
{
	size_t len = group ? strlen(group) : 0;
	int n;

	if (check("group name", "", group, len, group, len, err) < 0)
		return -1;
	n = snprintf(buf, size, "%s%s", prefix, group);
	if (n < 0 || (size_t)n >= size)
		return mq_errf(err, MQ_E_INVAL,
			       "buffer of %zu bytes too small for a "
			       "%s topic name", size, kind);
	return 0;
}

int mq_dlq_topic(const char *group, char *buf, size_t size, mq_err *err)
{
	return internal_topic(MQ_DLQ_PREFIX, "dead-letter", group, buf, size,
			      err);
}

int mq_rpl_topic(const char *group, char *buf, size_t size, mq_err *err)
{
	return internal_topic(MQ_RPL_PREFIX, "replay-log", group, buf, size,
			      err);
}
