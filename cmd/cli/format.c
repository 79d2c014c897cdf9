/* format.c - compiling and applying output formats (see format.h). */
#include "format.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum tok_kind {
	T_LITERAL, T_TOPIC, T_PARTITION, T_OFFSET, T_ID, T_TIMESTAMP,
	T_KEY, T_KEY_LEN, T_VALUE, T_VALUE_LEN, T_HEADERS, T_HEADER,
};

struct tok {
	enum tok_kind kind;
	size_t off, len;         /* T_LITERAL / T_HEADER: bytes in f->text */
};

struct cli_format {
	struct tok *toks;
	size_t n;
	char *text;              /* literal bytes and header names */
	size_t text_len;
};

void cli_format_free(cli_format *f)
{
	if (!f)
		return;
	free(f->toks);
	free(f->text);
	free(f);
}

static void add_tok(cli_format *f, enum tok_kind kind, size_t off,
		    size_t len)
{
	/* Adjacent literal bytes make one token. */
	if (kind == T_LITERAL && f->n && f->toks[f->n - 1].kind == T_LITERAL &&
	    f->toks[f->n - 1].off + f->toks[f->n - 1].len == off) {
		f->toks[f->n - 1].len += len;
		return;
	}
	/* At most one token per byte of the spec: room was made for that. */
	f->toks[f->n++] = (struct tok){ kind, off, len };
}

static void add_text(cli_format *f, const char *p, size_t n)
{
	memcpy(f->text + f->text_len, p, n);
	f->text_len += n;
}

static int bad(mq_err *err, const char *spec, size_t at, size_t n,
	       const char *why)
{
	return mq_errf(err, MQ_E_INVAL,
		       "format \"%s\": %s '%.*s' at position %zu", spec, why,
		       (int)n, spec + at, at + 1);
}

int cli_format_compile(const char *spec, cli_format **out, mq_err *err)
{
	size_t len = strlen(spec), i = 0;
	cli_format *f = calloc(1, sizeof *f);

	if (!f || !(f->toks = calloc(len + 1, sizeof *f->toks)) ||
	    !(f->text = malloc(len + 1))) {
		cli_format_free(f);
		return mq_errf(err, MQ_E_NOMEM, "out of memory");
	}
	while (i < len) {
		char c = spec[i];
		size_t at = i;

		if (c == '\\') {
			static const char from[] = "ntr0\\", to[] = "\n\t\r\0\\";
			const char *k;

			if (i + 1 == len) {
				bad(err, spec, at, 1, "lone");
				goto fail;
			}
			k = strchr(from, spec[i + 1]);
			if (!k) {
				bad(err, spec, at, 2, "unknown escape");
				goto fail;
			}
			add_tok(f, T_LITERAL, f->text_len, 1);
			add_text(f, &to[k - from], 1);
			i += 2;
			continue;
		}
		if (c != '%') {
			add_tok(f, T_LITERAL, f->text_len, 1);
			add_text(f, &c, 1);
			i++;
			continue;
		}
		if (i + 1 == len) {
			bad(err, spec, at, 1, "lone");
			goto fail;
		}
		i += 2;
		switch (spec[at + 1]) {
		case '%':
			add_tok(f, T_LITERAL, f->text_len, 1);
			add_text(f, "%", 1);
			break;
		case 't': add_tok(f, T_TOPIC, 0, 0); break;
		case 'p': add_tok(f, T_PARTITION, 0, 0); break;
		case 'o': add_tok(f, T_OFFSET, 0, 0); break;
		case 'i': add_tok(f, T_ID, 0, 0); break;
		case 'T': add_tok(f, T_TIMESTAMP, 0, 0); break;
		case 'k': add_tok(f, T_KEY, 0, 0); break;
		case 'K': add_tok(f, T_KEY_LEN, 0, 0); break;
		case 'v': add_tok(f, T_VALUE, 0, 0); break;
		case 'V': add_tok(f, T_VALUE_LEN, 0, 0); break;
		case 'h':
			if (spec[i] == '{') {
				const char *close = strchr(spec + i + 1, '}');
				size_t n;

				if (!close) {
					bad(err, spec, at, len - at,
					    "unterminated");
					goto fail;
				}
				n = (size_t)(close - (spec + i + 1));
				if (n == 0) {
					bad(err, spec, at, 4, "empty header name in");
					goto fail;
				}
				add_tok(f, T_HEADER, f->text_len, n);
				add_text(f, spec + i + 1, n);
				i += n + 2;
			} else {
				add_tok(f, T_HEADERS, 0, 0);
			}
			break;
		default:
			bad(err, spec, at, 2, "unknown token");
			goto fail;
		}
	}
	*out = f;
	return 0;
fail:
	cli_format_free(f);
	return -1;
}

static void put_num(mq_wbuf *w, int64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof num, "%" PRId64, v);
	mq_w_raw(w, num, (size_t)n);
}

static void put_bytes(mq_wbuf *w, const uint8_t *p, int32_t len)
{
	if (len > 0)
		mq_w_raw(w, p, (size_t)len);
}

static void put_headers(mq_wbuf *w, const mq_record *r, const char *name,
			size_t name_len)
{
	size_t pos = 0;
	mq_header h;
	bool first = true;

	while (mq_header_next(r, &pos, &h) == 1) {
		if (name) {
			if ((size_t)h.key_len == name_len &&
			    memcmp(h.key, name, name_len) == 0) {
				put_bytes(w, h.value, h.value_len);
				return;
			}
			continue;
		}
		if (!first)
			mq_w_u8(w, ',');
		first = false;
		put_bytes(w, h.key, h.key_len);
		mq_w_u8(w, '=');
		put_bytes(w, h.value, h.value_len);
	}
}

void cli_format_record(const cli_format *f, mq_wbuf *w, const char *topic,
		       int32_t partition, const mq_record *r)
{
	for (size_t i = 0; i < f->n; i++) {
		const struct tok *t = &f->toks[i];

		switch (t->kind) {
		case T_LITERAL:
			mq_w_raw(w, f->text + t->off, t->len);
			break;
		case T_TOPIC:
			mq_w_raw(w, topic, strlen(topic));
			break;
		case T_PARTITION:
			put_num(w, partition);
			break;
		case T_OFFSET:
			put_num(w, r->offset);
			break;
		case T_ID:
			mq_w_raw(w, topic, strlen(topic));
			mq_w_u8(w, '/');
			put_num(w, partition);
			mq_w_u8(w, '/');
			put_num(w, r->offset);
			break;
		case T_TIMESTAMP:
			put_num(w, r->timestamp);
			break;
		case T_KEY:
			put_bytes(w, r->key, r->key_len);
			break;
		case T_KEY_LEN:
			put_num(w, r->key_len);
			break;
		case T_VALUE:
			put_bytes(w, r->value, r->value_len);
			break;
		case T_VALUE_LEN:
			put_num(w, r->value_len);
			break;
		case T_HEADERS:
			put_headers(w, r, NULL, 0);
			break;
		case T_HEADER:
			put_headers(w, r, f->text + t->off, t->len);
			break;
		}
	}
}
