/*
 * msg.h - messages as the programs read and print them.
 *
 * JSON lines (mq-send -J reads them, mq-recv -J prints them, mq-replay
 * -J lists them): one object per line,
 *
 *   {"topic":"t","partition":0,"offset":7,"id":"t/0/7",
 *    "timestamp":1700000000000,"key":"k","value":"v",
 *    "headers":{"name":"value"}}
 *
 * A key, value or header value that is valid UTF-8 without NUL bytes is a
 * JSON string; anything else is base64 (RFC 4648) under the same name with
 * "_b64" appended: "key_b64", "value_b64", and header values in a
 * "headers_b64" object. A null key or value is JSON null (or absent).
 * Header names must be UTF-8 without NUL. When parsing, every field but
 * the value is optional, unknown fields are ignored (so mq-recv -J output
 * is accepted unchanged), and "partition" / "timestamp" are used if given.
 */
#ifndef MQ_CLI_MSG_H
#define MQ_CLI_MSG_H

#include <stdio.h>
#include "mq.h"
#include "batch.h"
#include "proto.h"

/* Header names the dead-letter queue adds (mq-recv) and reads
 * (mq-replay). Values are text. */
#define DLQ_H_TOPIC      "mq.dlq.topic"       /* original topic */
#define DLQ_H_PARTITION  "mq.dlq.partition"   /* original partition */
#define DLQ_H_OFFSET     "mq.dlq.offset"      /* original offset */
#define DLQ_H_ID         "mq.dlq.id"          /* original TOPIC/P/OFFSET */
#define DLQ_H_GROUP      "mq.dlq.group"
#define DLQ_H_ATTEMPTS   "mq.dlq.attempts"    /* how many times it ran */
#define DLQ_H_EXIT       "mq.dlq.exit"        /* last exit status, or
						 "signal N" */
#define DLQ_H_STDERR     "mq.dlq.stderr"      /* tail of its stderr */
#define DLQ_H_FAILED_AT  "mq.dlq.failed-at"   /* ms since the epoch */
#define REPLAY_H_FROM    "mq.replayed-from"   /* DLQ id it came from */

/* A message being sent: pointers into storage the parser owns. */
typedef struct cli_msg {
	const uint8_t *key;
	int32_t key_len;          /* -1 = null */
	const uint8_t *value;
	int32_t value_len;        /* -1 = null */
	mq_header *headers;
	int32_t nheaders;
	int32_t partition;        /* -1 = not given */
	int64_t timestamp;        /* -1 = not given */
} cli_msg;

/* Storage for parsed messages; reuse it line after line. */
typedef struct cli_msgbuf {
	mq_wbuf bytes;            /* decoded keys, values, header bytes */
	mq_header *headers;
	size_t hcap;
} cli_msgbuf;
void cli_msgbuf_free(cli_msgbuf *b);

struct cJSON;
/* Parse a JSON line of len bytes (no NUL needed) holding one value and
 * nothing after it but white space; NULL if it does not. Free the result
 * with cJSON_Delete. */
struct cJSON *cli_json_line(const char *line, size_t len);

/* Parse one JSON line (len bytes, no NUL needed) into m, with its bytes
 * in b (valid until the next parse into b). -1 + err (MQ_E_INVAL, a
 * message saying what is wrong) on malformed input. */
int cli_json_parse(const char *line, size_t len, cli_msgbuf *b, cli_msg *m,
		   mq_err *err);

/* Append one JSON line (with the newline) describing a record of
 * topic/partition to w: topic, partition, offset, id, timestamp, key,
 * value, headers. */
void cli_json_record(mq_wbuf *w, const char *topic, int32_t partition,
		     const mq_record *r);

/* The same object left open (no "}\n"), for a caller to add fields. */
void cli_json_record_open(mq_wbuf *w, const char *topic, int32_t partition,
			  const mq_record *r);

/* JSON string escaping of s (len bytes, valid UTF-8 assumed) into w,
 * quotes included. */
void cli_json_str(mq_wbuf *w, const char *s, size_t len);
/* true if p[0, len) is valid UTF-8 with no NUL byte. */
bool cli_is_text(const uint8_t *p, size_t len);
/* base64 of p into w (no quotes). */
void cli_b64_encode(mq_wbuf *w, const uint8_t *p, size_t len);
/* Decode base64 s into w; -1 if s is not valid base64. */
int cli_b64_decode(mq_wbuf *w, const char *s, size_t len);

#endif
