/* cli.c - diagnostics, exit codes and number parsing for the programs. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *progname = "mq";

void cli_init(const char *argv0)
{
	const char *slash = argv0 ? strrchr(argv0, '/') : NULL;

	if (argv0)
		progname = slash ? slash + 1 : argv0;
	/* Started with stdin, stdout or stderr closed, the next file or
	 * socket opened would take its number, and data or diagnostics
	 * would go into a broker connection or a lock file: hold each
	 * closed one on /dev/null. */
	for (int fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF &&
		    open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd)
			_exit(EX_IOERR_);
}

const char *cli_progname(void)
{
	return progname;
}

static void vwarn(const char *fmt, va_list ap)
{
	char line[2048];

	vsnprintf(line, sizeof line, fmt, ap);
	fprintf(stderr, "%s: %s\n", progname, line);
}

void cli_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwarn(fmt, ap);
	va_end(ap);
}

void cli_die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwarn(fmt, ap);
	va_end(ap);
	exit(code);
}

void cli_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwarn(fmt, ap);
	va_end(ap);
	fprintf(stderr, "Try '%s --help'.\n", progname);
	exit(EX_USAGE_);
}

int64_t cli_int(const char *opt, const char *s, int64_t min, int64_t max)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (!*s || *end || errno)
		cli_usage_error("%s %s: not a whole number", opt, s);
	if (v < min || v > max)
		cli_usage_error("%s %s: must be between %" PRId64 " and %" PRId64,
				opt, s, min, max);
	return v;
}

/* Split "123abc" into 123 and "abc"; -1 if no digits or overflow. */
static int number_and_suffix(const char *s, uint64_t *n, const char **suffix)
{
	char *end;
	unsigned long long v;

	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (end == s || errno)
		return -1;
	*n = v;
	*suffix = end;
	return 0;
}

int cli_parse_size(const char *s, uint64_t *out, mq_err *err)
{
	const char *suf;
	uint64_t n, mul = 1;

	if (number_and_suffix(s, &n, &suf) < 0)
		return mq_errf(err, MQ_E_INVAL, "%s: not a size", s);
	if (!strcmp(suf, "") || !strcasecmp(suf, "b"))
		mul = 1;
	else if (!strcasecmp(suf, "k") || !strcasecmp(suf, "kb") ||
		 !strcasecmp(suf, "kib"))
		mul = 1024;
	else if (!strcasecmp(suf, "m") || !strcasecmp(suf, "mb") ||
		 !strcasecmp(suf, "mib"))
		mul = 1024 * 1024;
	else if (!strcasecmp(suf, "g") || !strcasecmp(suf, "gb") ||
		 !strcasecmp(suf, "gib"))
		mul = 1024ull * 1024 * 1024;
	else
		return mq_errf(err, MQ_E_INVAL,
			       "%s: unknown size suffix '%s' (use K, M or G)", s,
			       suf);
	if (n > UINT64_MAX / mul)
		return mq_errf(err, MQ_E_INVAL, "%s: too large", s);
	*out = n * mul;
	return 0;
}

int cli_parse_duration_ms(const char *s, int64_t *out, mq_err *err)
{
	const char *suf;
	uint64_t n, mul;

	if (number_and_suffix(s, &n, &suf) < 0)
		return mq_errf(err, MQ_E_INVAL, "%s: not a duration", s);
	if (!strcmp(suf, "") || !strcmp(suf, "ms"))
		mul = 1;
	else if (!strcmp(suf, "s"))
		mul = 1000;
	else if (!strcmp(suf, "m") || !strcmp(suf, "min"))
		mul = 60000;
	else if (!strcmp(suf, "h"))
		mul = 3600000;
	else if (!strcmp(suf, "d"))
		mul = 86400000;
	else
		return mq_errf(err, MQ_E_INVAL,
			       "%s: unknown unit '%s' (use ms, s, m, h or d)", s,
			       suf);
	if (n > (uint64_t)INT64_MAX / mul)
		return mq_errf(err, MQ_E_INVAL, "%s: too large", s);
	*out = (int64_t)(n * mul);
	return 0;
}

uint64_t cli_size(const char *opt, const char *s, uint64_t min, uint64_t max)
{
	mq_err err;
	uint64_t v;

	if (cli_parse_size(s, &v, &err) < 0)
		cli_usage_error("%s %s", opt, err.msg);
	if (v < min || v > max)
		cli_usage_error("%s %s: must be between %" PRIu64 " and %" PRIu64
				" bytes", opt, s, min, max);
	return v;
}

int64_t cli_duration_ms(const char *opt, const char *s, int64_t min,
			int64_t max)
{
	mq_err err;
	int64_t v;

	if (cli_parse_duration_ms(s, &v, &err) < 0)
		cli_usage_error("%s %s", opt, err.msg);
	if (v < min || v > max)
		cli_usage_error("%s %s: must be between %" PRId64 " and %" PRId64
				" ms", opt, s, min, max);
	return v;
}

int cli_exit_code(const mq_err *err)
{
	switch (err->code) {
	case MQ_E_CONNECT:
	case MQ_E_TIMEOUT:
	case MQ_E_SHUTDOWN:
		return EX_UNAVAILABLE_;
	case MQ_E_IO:
	case MQ_E_NOSPC:
	case MQ_E_LOCKED:
		return EX_IOERR_;
	case MQ_E_INVAL:
	case MQ_E_NAME:
	case MQ_E_CORRUPT:
		return EX_DATAERR_;
	case MQ_E_NOMEM:
		return EX_SOFTWARE_;
	default:
		return EX_TEMPFAIL_;
	}
}

mq_ep *cli_try_open_endpoint(const char *broker_opt, const char *dir_opt,
			     const mq_ep_opts *o, mq_err *err)
{
	mq_ep_opts opts = o ? *o : (mq_ep_opts){ 0 };
	const char *eb = getenv("MQ_BROKER"), *ed = getenv("MQ_DIR");
	char name[256];
	mq_ep *ep;

	if (broker_opt && dir_opt)
		cli_usage_error("-b and -d cannot be used together: choose a "
				"broker or a data directory");
	opts.broker = opts.dir = NULL;
	if (broker_opt)
		opts.broker = broker_opt;
	else if (dir_opt)
		opts.dir = dir_opt;
	else if (eb && *eb)
		opts.broker = eb;
	else if (ed && *ed)
		opts.dir = ed;
	else
		opts.broker = "127.0.0.1:7420";
	if (!opts.client_name) {
		char host[128] = "";
		gethostname(host, sizeof host - 1);
		snprintf(name, sizeof name, "%s@%s/%ld", progname, host,
			 (long)getpid());
		opts.client_name = name;
	}
	if (mq_ep_open(&opts, &ep, err) < 0) {
		if (err->code == MQ_E_INVAL && opts.broker)
			cli_usage_error("%s", err->msg);
		return NULL;
	}
	return ep;
}

mq_ep *cli_open_endpoint(const char *broker_opt, const char *dir_opt,
			 const mq_ep_opts *o)
{
	mq_err err;
	mq_ep *ep = cli_try_open_endpoint(broker_opt, dir_opt, o, &err);

	if (!ep)
		cli_die(cli_exit_code(&err), "%s", err.msg);
	return ep;
}

void *cli_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		cli_die(EX_SOFTWARE_, "out of memory");
	return p;
}

void *cli_xrealloc(void *p, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		cli_die(EX_SOFTWARE_, "out of memory");
	p = realloc(p, n && size ? n * size : 1);
	if (!p)
		cli_die(EX_SOFTWARE_, "out of memory");
	return p;
}

char *cli_xstrdup(const char *s)
{
	return cli_xstrndup(s, strlen(s));
}

char *cli_xstrndup(const void *s, size_t n)
{
	char *d = cli_xrealloc(NULL, n + 1, 1);

	if (n)
		memcpy(d, s, n);
	d[n] = '\0';
	return d;
}
