/* timefmt.c - ISO 8601 times in and out (see timefmt.h). */
#include "timefmt.h"
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Exactly n digits at *p into *v. */
static bool take_digits(const char **p, int n, int *v)
{
	int x = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return false;
		x = x * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*v = x;
	return true;
}

static int days_in_month(int y, int m)
{
	static const int d[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : d[m - 1];
}

#define FAIL(...) do { snprintf(why, whysz, __VA_ARGS__); return -1; } while (0)

int cli_parse_time(const char *s, bool relative_ok, int64_t *ms, char *why,
		   size_t whysz)
{
	const char *p = s;
	int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, zh = 0, zm = 0;
	int zsign = 0;	/* 0: no zone given */
	struct tm tm = { 0 };
	time_t t;

	if (relative_ok && *s == '-') {
		mq_err err;
		int64_t dur;

		if (cli_parse_duration_ms(s + 1, &dur, &err) < 0)
			FAIL("%s", err.msg);
		*ms = mq_now_ms() - dur;
		return 0;
	}
	if (!take_digits(&p, 4, &y) || *p++ != '-' ||
	    !take_digits(&p, 2, &mo) || *p++ != '-' || !take_digits(&p, 2, &d))
		FAIL("not a date and time like 2026-11-21T13:00:00Z or "
		     "2026-11-21%s", relative_ok ? " or -2h" : "");
	if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
		FAIL("no such date");
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (!take_digits(&p, 2, &h) || *p++ != ':' ||
		    !take_digits(&p, 2, &mi))
			FAIL("the time must be hh:mm or hh:mm:ss");
		if (*p == ':') {
			p++;
			if (!take_digits(&p, 2, &sec))
				FAIL("the seconds must be two digits");
			if (*p == '.' || *p == ',') {
				int n = 0;
				for (p++; *p >= '0' && *p <= '9'; p++, n++)
					if (n < 3)
						frac = frac * 10 + (*p - '0');
				if (n == 0)
					FAIL("nothing after the decimal point");
				for (; n < 3; n++)
					frac *= 10;
			}
		}
		if (h > 23 || mi > 59 || sec > 60)
			FAIL("no such time of day");
		if (*p == 'Z' || *p == 'z') {
			zsign = 1;
			p++;
		} else if (*p == '+' || *p == '-') {
			bool ok;
			zsign = *p++ == '-' ? -1 : 1;
			ok = take_digits(&p, 2, &zh);
			if (ok && *p) {
				if (*p == ':')
					p++;
				ok = take_digits(&p, 2, &zm);
			}
			if (!ok)
				FAIL("the zone offset must be Z, +hh:mm, +hhmm or +hh");
			if (zh > 23 || zm > 59)
				FAIL("no such zone offset");
		}
	}
	if (*p)
		FAIL("unexpected '%s'", p);
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	if (zsign) {
		t = timegm(&tm) - (time_t)zsign * (zh * 3600 + zm * 60);
	} else {
		tm.tm_isdst = -1;
		t = mktime(&tm);
	}
	*ms = (int64_t)t * 1000 + frac;
	return 0;
}

const char *cli_format_time(int64_t ms, char *buf, size_t size)
{
	struct tm tm;
	time_t t;
	size_t n;

	if (ms < 0)
		return "-";
	t = (time_t)(ms / 1000);
	if (!gmtime_r(&t, &tm) ||
	    (n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm)) == 0)
		return "-";
	snprintf(buf + n, size - n, ".%03dZ", (int)(ms % 1000));
	return buf;
}
