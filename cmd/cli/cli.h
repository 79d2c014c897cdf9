/*
 * cli.h - what the mq programs share: exit codes, diagnostics, and number
 * parsing with range checks (so every program reports a bad value the
 * same way).
 */
#ifndef MQ_CLI_H
#define MQ_CLI_H

#include <stdint.h>
#include <stdbool.h>
#include "mq.h"
#include "ep.h"

/* Exit codes (sysexits(3) where they fit); the EXIT STATUS section of
 * every man page lists them. */
enum {
	EX_OK_ = 0,
	EX_FAIL = 1,          /* a check failed (e.g. --max-lag) */
	EX_USAGE_ = 64,       /* bad command line */
	EX_DATAERR_ = 65,     /* malformed input */
	EX_UNAVAILABLE_ = 69, /* broker unreachable */
	EX_SOFTWARE_ = 70,    /* internal error */
	EX_IOERR_ = 74,       /* local I/O error */
	EX_TEMPFAIL_ = 75,    /* some messages failed; try again */
};

/* Set once from argv[0]; prefixes every diagnostic. */
void cli_init(const char *argv0);
const char *cli_progname(void);

/* "prog: message" on stderr. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same, then exit(code). */
void cli_die(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

/* calloc, realloc (of n elements of size bytes, overflow checked), strdup
 * and a strndup of n bytes that may hold NULs: or die of "out of memory"
 * (EX_SOFTWARE_). A zero size asks for one byte, so NULL means failure. */
void *cli_xcalloc(size_t n, size_t size);
void *cli_xrealloc(void *p, size_t n, size_t size);
char *cli_xstrdup(const char *s);
char *cli_xstrndup(const void *s, size_t n);
/* A usage error: message, "Try 'prog --help'.", exit 64. */
void cli_usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

/* Parse an integer in [min, max]; on error, a usage error naming opt. */
int64_t cli_int(const char *opt, const char *s, int64_t min, int64_t max);
/* A size: digits with an optional K, M, G suffix (powers of 1024). */
uint64_t cli_size(const char *opt, const char *s, uint64_t min, uint64_t max);
/* A duration in ms: digits with ms, s, m, h or d (bare = ms). */
int64_t cli_duration_ms(const char *opt, const char *s, int64_t min,
			int64_t max);
/* Non-dying variants: 0 or -1 with a message in err. */
int cli_parse_size(const char *s, uint64_t *out, mq_err *err);
int cli_parse_duration_ms(const char *s, int64_t *out, mq_err *err);

/*
 * The exit code for a failure described by err: 69 when the broker
 * cannot be reached (or stopped answering), 74 for local I/O errors, 65
 * for bad data (names, malformed input), 75 for anything the broker
 * refused that may succeed later.
 */
int cli_exit_code(const mq_err *err);

/*
 * Open the endpoint the user chose: -b ADDR (broker) or -d DIR (data
 * directory), else $MQ_BROKER, else $MQ_DIR, else the default broker
 * 127.0.0.1:7420. Both -b and -d is a usage error (64). On failure prints
 * the reason and exits with cli_exit_code. o may carry the other options
 * (timeout, read_only, local_sync...); its broker/dir are ignored.
 */
mq_ep *cli_open_endpoint(const char *broker_opt, const char *dir_opt,
			 const mq_ep_opts *o);
/* The same, but a failure to open returns NULL with err filled instead
 * of exiting (a malformed address or -b with -d still exit 64). */
mq_ep *cli_try_open_endpoint(const char *broker_opt, const char *dir_opt,
			     const mq_ep_opts *o, mq_err *err);

#endif
