/* msg.c - messages as JSON lines, base64 and UTF-8 checks (see msg.h). */
#include "msg.h"
#include "name.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

bool cli_is_text(const uint8_t *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = p[i];
		size_t n;
		uint32_t cp;

		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			n = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (len - i - 1 < n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		/* No overlong forms, surrogates or values past U+10FFFF. */
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) ||
		    (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void cli_b64_encode(mq_wbuf *w, const uint8_t *p, size_t len)
{
	uint8_t *o = mq_w_reserve(w, (len + 2) / 3 * 4);
	size_t i;

	if (!o)
		return;
	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*o++ = (uint8_t)b64chars[v >> 18];
		*o++ = (uint8_t)b64chars[(v >> 12) & 63];
		*o++ = (uint8_t)b64chars[(v >> 6) & 63];
		*o++ = (uint8_t)b64chars[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		*o++ = (uint8_t)b64chars[v >> 18];
		*o++ = (uint8_t)b64chars[(v >> 12) & 63];
		*o++ = i + 1 < len ? (uint8_t)b64chars[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
}

static int b64val(char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

int cli_b64_decode(mq_wbuf *w, const char *s, size_t len)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t i, pad = 0;

	for (i = 0; i < len; i++) {
		int v;
		if (s[i] == '=') {
			pad++;
			continue;
		}
		if (pad || (v = b64val(s[i])) < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			mq_w_u8(w, (uint8_t)(acc >> bits));
		}
	}
	if (pad > 2 || (len % 4 != 0 && pad))
		return -1;
	return w->oom ? -1 : 0;
}

void cli_json_str(mq_wbuf *w, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	mq_w_u8(w, '"');
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '"': mq_w_raw(w, "\\\"", 2); break;
		case '\\': mq_w_raw(w, "\\\\", 2); break;
		case '\n': mq_w_raw(w, "\\n", 2); break;
		case '\r': mq_w_raw(w, "\\r", 2); break;
		case '\t': mq_w_raw(w, "\\t", 2); break;
		case '\b': mq_w_raw(w, "\\b", 2); break;
		case '\f': mq_w_raw(w, "\\f", 2); break;
		default:
			if (c < 0x20) {
				char e[6] = { '\\', 'u', '0', '0', hex[c >> 4],
					      hex[c & 15] };
				mq_w_raw(w, e, 6);
			} else {
				mq_w_u8(w, c);
			}
		}
	}
	mq_w_u8(w, '"');
}

static void w_text(mq_wbuf *w, const char *s)
{
	mq_w_raw(w, s, strlen(s));
}

/* "name":"text" or "name_b64":"...", or "name":null. */
static void w_bytes_field(mq_wbuf *w, const char *name, const uint8_t *p,
			  int32_t len)
{
	if (len < 0 || !p) {
		mq_w_u8(w, '"');
		w_text(w, name);
		w_text(w, "\":null");
		return;
	}
	if (cli_is_text(p, (size_t)len)) {
		mq_w_u8(w, '"');
		w_text(w, name);
		w_text(w, "\":");
		cli_json_str(w, (const char *)p, (size_t)len);
	} else {
		mq_w_u8(w, '"');
		w_text(w, name);
		w_text(w, "_b64\":\"");
		cli_b64_encode(w, p, (size_t)len);
		mq_w_u8(w, '"');
	}
}

/* The headers of r whose values are (text_values) or are not text.
 * Returns whether it skipped any. */
static bool w_headers(mq_wbuf *w, const mq_record *r, bool text_values)
{
	size_t pos = 0;
	mq_header h;
	bool first = true, skipped = false;

	mq_w_u8(w, '{');
	while (mq_header_next(r, &pos, &h) == 1) {
		bool text = h.value_len < 0 ||
			    cli_is_text(h.value, (size_t)h.value_len);
		if (text != text_values) {
			skipped = true;
			continue;
		}
		if (!first)
			mq_w_u8(w, ',');
		first = false;
		/* A name that is not text is shown as base64 text. */
		if (cli_is_text(h.key, (size_t)h.key_len)) {
			cli_json_str(w, (const char *)h.key, (size_t)h.key_len);
		} else {
			mq_w_u8(w, '"');
			cli_b64_encode(w, h.key, (size_t)h.key_len);
			mq_w_u8(w, '"');
		}
		mq_w_u8(w, ':');
		if (h.value_len < 0) {
			w_text(w, "null");
		} else if (text) {
			cli_json_str(w, (const char *)h.value,
				     (size_t)h.value_len);
		} else {
			mq_w_u8(w, '"');
			cli_b64_encode(w, h.value, (size_t)h.value_len);
			mq_w_u8(w, '"');
		}
	}
	mq_w_u8(w, '}');
	return skipped;
}

void cli_json_record_open(mq_wbuf *w, const char *topic, int32_t partition,
			  const mq_record *r)
{
	/* Room for the longest topic (internal names included) and the id
	 * built from it: TOPIC/PARTITION/OFFSET. */
	char num[MQ_TOPIC_MAX + 64];

	w_text(w, "{\"topic\":");
	cli_json_str(w, topic, strlen(topic));
	snprintf(num, sizeof num,
		 ",\"partition\":%" PRId32 ",\"offset\":%" PRId64 ",\"id\":",
		 partition, r->offset);
	w_text(w, num);
	snprintf(num, sizeof num, "%s/%" PRId32 "/%" PRId64, topic, partition,
		 r->offset);
	cli_json_str(w, num, strlen(num));
	snprintf(num, sizeof num, ",\"timestamp\":%" PRId64 ",", r->timestamp);
	w_text(w, num);
	w_bytes_field(w, "key", r->key, r->key_len);
	mq_w_u8(w, ',');
	w_bytes_field(w, "value", r->value, r->value_len);
	w_text(w, ",\"headers\":");
	if (w_headers(w, r, true)) {	/* some values are not text */
		w_text(w, ",\"headers_b64\":");
		w_headers(w, r, false);
	}
}

void cli_json_record(mq_wbuf *w, const char *topic, int32_t partition,
		     const mq_record *r)
{
	cli_json_record_open(w, topic, partition, r);
	w_text(w, "}\n");
}

void cli_msgbuf_free(cli_msgbuf *b)
{
	mq_w_free(&b->bytes);
	free(b->headers);
	memset(b, 0, sizeof *b);
}

/* Where a decoded piece lies in b->bytes (pointers are fixed up last,
 * since the buffer may move while it grows). */
struct span {
	size_t off;
	int32_t len;   /* -1 = null */
};

/* Position off of the decoded bytes (an empty buffer has no memory). */
static const uint8_t *at(const cli_msgbuf *b, size_t off)
{
	return b->bytes.p ? b->bytes.p + off : (const uint8_t *)"";
}

static int take_bytes(cli_msgbuf *b, cJSON *text, cJSON *b64,
		      const char *name, struct span *sp, mq_err *err)
{
	sp->off = b->bytes.len;
	sp->len = -1;
	if (text && b64)
		return mq_errf(err, MQ_E_INVAL, "both \"%s\" and \"%s_b64\" given",
			       name, name);
	if (text && cJSON_IsString(text)) {
		size_t n = strlen(text->valuestring);
		if (n > INT32_MAX)
			return mq_errf(err, MQ_E_TOO_LARGE, "\"%s\" too long", name);
		mq_w_raw(&b->bytes, text->valuestring, n);
		sp->len = (int32_t)n;
	} else if (b64 && cJSON_IsString(b64)) {
		if (cli_b64_decode(&b->bytes, b64->valuestring,
				   strlen(b64->valuestring)) < 0)
			return mq_errf(err, MQ_E_INVAL,
				       "\"%s_b64\" is not valid base64", name);
		if (b->bytes.len - sp->off > INT32_MAX)
			return mq_errf(err, MQ_E_TOO_LARGE, "\"%s\" too long", name);
		sp->len = (int32_t)(b->bytes.len - sp->off);
	} else if ((text && !cJSON_IsNull(text)) || (b64 && !cJSON_IsNull(b64))) {
		return mq_errf(err, MQ_E_INVAL, "\"%s\" must be a string or null",
			       name);
	}
	return b->bytes.oom ? mq_errf(err, MQ_E_NOMEM, "out of memory") : 0;
}

static int get_int(cJSON *o, const char *name, int64_t max, int64_t *out,
		   mq_err *err)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	*out = -1;
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsNumber(v) || v->valuedouble < 0 ||
	    v->valuedouble > (double)max ||
	    v->valuedouble != (double)(int64_t)v->valuedouble)
		return mq_errf(err, MQ_E_INVAL,
			       "\"%s\" must be a whole number from 0 to %" PRId64,
			       name, max);
	*out = (int64_t)v->valuedouble;
	return 0;
}

cJSON *cli_json_line(const char *line, size_t len)
{
	const char *end = NULL;
	cJSON *j = cJSON_ParseWithLengthOpts(line, len, &end, 0);

	if (!j)
		return NULL;
	/* cJSON stops after the first value: what follows must be blank,
	 * or a second object on the line would go unseen. */
	for (; end && end < line + len; end++)
		if (*end != ' ' && *end != '\t' && *end != '\r' &&
		    *end != '\n' && *end != '\0') {
			cJSON_Delete(j);
			return NULL;
		}
	return j;
}

int cli_json_parse(const char *line, size_t len, cli_msgbuf *b, cli_msg *m,
		   mq_err *err)
{
	cJSON *o = cli_json_line(line, len), *h, *hb, *it;
	struct span key, value;
	struct span *hs = NULL;
	size_t nh = 0, i;
	int64_t v;
	int rc = -1;

	memset(m, 0, sizeof *m);
	mq_w_reset(&b->bytes);
	if (!o)
		return mq_errf(err, MQ_E_INVAL, "not valid JSON");
	if (!cJSON_IsObject(o)) {
		mq_errf(err, MQ_E_INVAL, "not a JSON object");
		goto out;
	}
	it = cJSON_GetObjectItemCaseSensitive(o, "value");
	h = cJSON_GetObjectItemCaseSensitive(o, "value_b64");
	if (!it && !h) {
		mq_errf(err, MQ_E_INVAL, "no \"value\"");
		goto out;
	}
	if (take_bytes(b, it, h, "value", &value, err) < 0 ||
	    take_bytes(b, cJSON_GetObjectItemCaseSensitive(o, "key"),
		       cJSON_GetObjectItemCaseSensitive(o, "key_b64"), "key",
		       &key, err) < 0)
		goto out;
	if (get_int(o, "partition", INT32_MAX, &v, err) < 0)
		goto out;
	m->partition = (int32_t)v;
	if (get_int(o, "timestamp", INT64_MAX / 2, &m->timestamp, err) < 0)
		goto out;
	h = cJSON_GetObjectItemCaseSensitive(o, "headers");
	hb = cJSON_GetObjectItemCaseSensitive(o, "headers_b64");
	for (int pass = 0; pass < 2; pass++) {
		cJSON *obj = pass ? hb : h;
		if (!obj || cJSON_IsNull(obj))
			continue;
		if (!cJSON_IsObject(obj)) {
			mq_errf(err, MQ_E_INVAL, "\"%s\" must be an object",
				pass ? "headers_b64" : "headers");
			goto out;
		}
		cJSON_ArrayForEach(it, obj) {
			struct span *n = realloc(hs, (nh + 1) * 2 * sizeof *hs);
			if (!n) {
				mq_errf(err, MQ_E_NOMEM, "out of memory");
				goto out;
			}
			hs = n;
			hs[2 * nh].off = b->bytes.len;
			hs[2 * nh].len = (int32_t)strlen(it->string);
			mq_w_raw(&b->bytes, it->string, strlen(it->string));
			if (take_bytes(b, pass ? NULL : it, pass ? it : NULL,
				       "header value", &hs[2 * nh + 1], err) < 0)
				goto out;
			nh++;
		}
	}
	if (nh > b->hcap) {
		mq_header *n = realloc(b->headers, nh * sizeof *n);
		if (!n) {
			mq_errf(err, MQ_E_NOMEM, "out of memory");
			goto out;
		}
		b->headers = n;
		b->hcap = nh;
	}
	/* The bytes are all in: now point into them. */
	m->value = value.len >= 0 ? at(b, value.off) : NULL;
	m->value_len = value.len;
	m->key = key.len >= 0 ? at(b, key.off) : NULL;
	m->key_len = key.len;
	for (i = 0; i < nh; i++) {
		b->headers[i].key = at(b, hs[2 * i].off);
		b->headers[i].key_len = hs[2 * i].len;
		b->headers[i].value = hs[2 * i + 1].len >= 0
				      ? at(b, hs[2 * i + 1].off) : NULL;
		b->headers[i].value_len = hs[2 * i + 1].len;
	}
	m->headers = b->headers;
	m->nheaders = (int32_t)nh;
	rc = 0;
out:
	free(hs);
	cJSON_Delete(o);
	return rc;
}
