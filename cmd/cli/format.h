/*
 * format.h - output formats such as "%i %k=%v\n" (mq-recv -f).
 *
 * A format string is compiled once into a list of tokens, so that an
 * unknown token is an error before anything runs and each record costs
 * only a walk over the list. Tokens:
 *
 *   %t topic            %p partition          %o offset
 *   %i id (TOPIC/PARTITION/OFFSET)            %T timestamp (ms since epoch)
 *   %k key              %K key length         (-1 for a null key)
 *   %v value            %V value length       (-1 for a null value)
 *   %h headers as NAME=VALUE separated by commas
 *   %h{NAME} the value of the first header called NAME (nothing if none)
 *   %% a percent sign
 *
 * and the escapes \n (newline), \t (tab), \r (carriage return), \0 (a NUL
 * byte) and \\ (a backslash). Keys, values and header values are written
 * as they are, byte for byte. Nothing is added at the end of a record:
 * a format usually ends with \n.
 */
#ifndef MQ_CLI_FORMAT_H
#define MQ_CLI_FORMAT_H

#include "mq.h"
#include "batch.h"
#include "proto.h"

typedef struct cli_format cli_format;

/*
 * Compile spec into *out. Returns 0, or -1 with err (MQ_E_INVAL) naming
 * the first bad token and its position: an unknown %x or \x, a % or \ at
 * the very end, or %h{ without its closing brace. MQ_E_NOMEM if memory
 * runs out. Free the result with cli_format_free.
 */
int cli_format_compile(const char *spec, cli_format **out, mq_err *err);
void cli_format_free(cli_format *f);

/* Append record r of topic/partition, formatted by f, to w. */
void cli_format_record(const cli_format *f, mq_wbuf *w, const char *topic,
		       int32_t partition, const mq_record *r);

#endif
