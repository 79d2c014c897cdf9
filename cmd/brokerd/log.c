/* log.c - one line per event on stderr: UTC timestamp, level, message. */
#include "broker.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static int log_level = LOG_INFO;
static const char *const level_names[] = { "error", "warn", "info", "debug" };

void log_init(int level)
{
	log_level = level;
}

void log_msg(int level, const char *fmt, ...)
{
	struct timespec ts;
	struct tm tm;
	char stamp[40], line[1024];
	va_list ap;

	if (level > log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	/* One fprintf per line so lines from one process never interleave. */
	fprintf(stderr, "%s.%03ldZ %s %s\n", stamp, ts.tv_nsec / 1000000,
		level_names[level], line);
}
