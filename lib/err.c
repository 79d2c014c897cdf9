/* err.c - filling an mq_err, and the names of the status codes. */
#include "mq.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const code_names[MQ_E__COUNT] = {
	[MQ_OK] = "ok",
	[MQ_E_IO] = "io-error",
	[MQ_E_NOSPC] = "no-space",
	[MQ_E_CORRUPT] = "corrupt",
	[MQ_E_INVAL] = "invalid",
	[MQ_E_NAME] = "invalid-name",
	[MQ_E_TOO_LARGE] = "too-large",
	[MQ_E_NO_TOPIC] = "unknown-topic",
	[MQ_E_NO_PARTITION] = "unknown-partition",
	[MQ_E_OFFSET_RANGE] = "offset-out-of-range",
	[MQ_E_LOCKED] = "locked",
	[MQ_E_READ_ONLY] = "read-only",
	[MQ_E_FLUSH_TIMEOUT] = "flush-timeout",
	[MQ_E_SEQUENCE] = "out-of-sequence",
	[MQ_E_GENERATION] = "stale-generation",
	[MQ_E_UNKNOWN_MEMBER] = "unknown-member",
	[MQ_E_REBALANCE] = "rebalance-in-progress",
	[MQ_E_UNSUPPORTED] = "unsupported",
	[MQ_E_EXISTS] = "exists",
	[MQ_E_NOMEM] = "out-of-memory",
	[MQ_E_SHUTDOWN] = "shutting-down",
	[MQ_E_TIMEOUT] = "timeout",
	[MQ_E_CONNECT] = "unreachable",
	[MQ_E_PRODUCER] = "unknown-producer",
	[MQ_E_BUSY] = "busy",
};

const char *mq_code_name(int code)
{
	if (code < 0 || code >= MQ_E__COUNT || !code_names[code])
		return "unknown";
	return code_names[code];
}

int mq_errf(mq_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return -1;
	err->code = code;
	err->sys_errno = 0;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
	return -1;
}

int mq_errsys(mq_err *err, int code, int errnum, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	if (!err)
		return -1;
	if (errnum == ENOSPC || errnum == EDQUOT || errnum == EFBIG)
		code = MQ_E_NOSPC;
	else if (errnum == ENOMEM)
		code = MQ_E_NOMEM;
	err->code = code;
	err->sys_errno = errnum;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
	n = strlen(err->msg);
	if (n < sizeof err->msg)
		snprintf(err->msg + n, sizeof err->msg - n, ": %s",
			 strerror(errnum));
	return -1;
}

int64_t mq_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mq_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
