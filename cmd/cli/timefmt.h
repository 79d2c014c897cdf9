/* timefmt.h - times as the programs read and print them. */
#ifndef MQ_CLI_TIMEFMT_H
#define MQ_CLI_TIMEFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Parse an ISO 8601 date and time: YYYY-MM-DD, optionally followed by T
 * (or a space) and hh:mm[:ss[.fraction]], optionally followed by Z or an
 * offset +hh:mm, +hhmm or +hh (or -). Without a zone the time is local
 * (TZ); a date alone is local midnight. With relative_ok, "-DURATION"
 * (e.g. -2h, see cli_parse_duration_ms) means that long before now.
 * 0 with *ms since the epoch, or -1 with a reason in why.
 */
int cli_parse_time(const char *s, bool relative_ok, int64_t *ms, char *why,
		   size_t whysz);

/* ms since the epoch as 2026-11-21T13:00:00.123Z; "-" if negative. */
const char *cli_format_time(int64_t ms, char *buf, size_t size);

#endif
