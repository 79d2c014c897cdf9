/* proto.c - bounded readers and writers for mq-protocol(7) frames. */
#include "proto.h"
#include "batch.h"

#include <stdlib.h>
#include <string.h>

void mq_w_init(mq_wbuf *w)
{
	memset(w, 0, sizeof *w);
}

void mq_w_free(mq_wbuf *w)
{
	free(w->p);
	memset(w, 0, sizeof *w);
}

void mq_w_reset(mq_wbuf *w)
{
	w->len = 0;
	w->oom = false;
}

uint8_t *mq_w_reserve(mq_wbuf *w, size_t n)
{
	uint8_t *p;

	if (w->oom)
		return NULL;
	if (n > SIZE_MAX / 2 - w->len) {
		w->oom = true;
		return NULL;
	}
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		while (cap < w->len + n)
			cap *= 2;
		p = realloc(w->p, cap);
		if (!p) {
			w->oom = true;
			return NULL;
		}
		w->p = p;
		w->cap = cap;
	}
	p = w->p + w->len;
	w->len += n;
	return p;
}

void mq_w_u8(mq_wbuf *w, uint8_t v)
{
	uint8_t *p = mq_w_reserve(w, 1);
	if (p)
		*p = v;
}

void mq_w_u16(mq_wbuf *w, uint16_t v)
{
	uint8_t *p = mq_w_reserve(w, 2);
	if (p)
		mq_put16(p, v);
}

void mq_w_u32(mq_wbuf *w, uint32_t v)
{
	uint8_t *p = mq_w_reserve(w, 4);
	if (p)
		mq_put32(p, v);
}

void mq_w_u64(mq_wbuf *w, uint64_t v)
{
	uint8_t *p = mq_w_reserve(w, 8);
	if (p)
		mq_put64(p, v);
}

void mq_w_raw(mq_wbuf *w, const void *src, size_t n)
{
	uint8_t *p = mq_w_reserve(w, n);
	if (p && n)
		memcpy(p, src, n);
}

void mq_w_strn(mq_wbuf *w, const char *s, size_t n)
{
	if (n > 0xffff) {
		w->oom = true;
		return;
	}
	mq_w_u16(w, (uint16_t)n);
	mq_w_raw(w, s, n);
}

void mq_w_str(mq_wbuf *w, const char *s)
{
	mq_w_strn(w, s ? s : "", s ? strlen(s) : 0);
}

void mq_w_bytes(mq_wbuf *w, const void *p, int32_t n)
{
	if (!p || n < 0) {
		mq_w_u32(w, (uint32_t)-1);
		return;
	}
	mq_w_u32(w, (uint32_t)n);
	mq_w_raw(w, p, (size_t)n);
}

size_t mq_w_frame_begin(mq_wbuf *w, uint32_t id, uint16_t type,
			uint16_t flags)
{
	size_t start = w->len;

	mq_w_u32(w, 0);
	mq_w_u32(w, id);
	mq_w_u16(w, type);
	mq_w_u16(w, flags);
	return start;
}

void mq_w_frame_end(mq_wbuf *w, size_t start)
{
	if (w->oom || w->len < start + MQ_FRAME_HEADER)
		return;
	if (w->len - start - 4 > UINT32_MAX) {
		w->oom = true;
		return;
	}
	mq_put32(w->p + start, (uint32_t)(w->len - start - 4));
}

void mq_r_init(mq_rbuf *r, const void *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->pos = 0;
	r->bad = false;
}

/* Claim n bytes, or mark the reader bad. */
static const uint8_t *take(mq_rbuf *r, size_t n)
{
	const uint8_t *p;

	if (r->bad || n > r->len - r->pos) {
		r->bad = true;
		return NULL;
	}
	p = r->p + r->pos;
	r->pos += n;
	return p;
}

uint8_t mq_r_u8(mq_rbuf *r)
{
	const uint8_t *p = take(r, 1);
	return p ? *p : 0;
}

uint16_t mq_r_u16(mq_rbuf *r)
{
	const uint8_t *p = take(r, 2);
	return p ? mq_get16(p) : 0;
}

uint32_t mq_r_u32(mq_rbuf *r)
{
	const uint8_t *p = take(r, 4);
	return p ? mq_get32(p) : 0;
}

uint64_t mq_r_u64(mq_rbuf *r)
{
	const uint8_t *p = take(r, 8);
	return p ? mq_get64(p) : 0;
}

void mq_r_str(mq_rbuf *r, const char **s, size_t *n)
{
	size_t len = mq_r_u16(r);
	const uint8_t *p = take(r, len);

	*s = p ? (const char *)p : "";
	*n = p ? len : 0;
}

void mq_r_strbuf(mq_rbuf *r, char *buf, size_t size)
{
	const char *s;
	size_t n;

	mq_r_str(r, &s, &n);
	if (r->bad || n >= size) {
		r->bad = true;
		if (size)
			buf[0] = '\0';
		return;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
}

void mq_r_bytes(mq_rbuf *r, const uint8_t **p, int32_t *n)
{
	int32_t len = mq_r_i32(r);

	*p = NULL;
	*n = -1;
	if (r->bad || len == -1)
		return;
	if (len < 0) {
		r->bad = true;
		return;
	}
	*p = take(r, (size_t)len);
	*n = *p ? len : -1;
}

uint32_t mq_r_count(mq_rbuf *r, size_t min_elem)
{
	uint32_t n = mq_r_u32(r);

	if (r->bad)
		return 0;
	if (min_elem && n > mq_r_left(r) / min_elem) {
		r->bad = true;
		return 0;
	}
	return n;
}

int mq_frame_parse(const uint8_t *p, uint32_t max_frame, mq_frame *f,
		   mq_err *err)
{
	f->length = mq_get32(p);
	if (f->length < MQ_FRAME_MIN)
		return mq_errf(err, MQ_E_INVAL, "frame length %u is below %d",
			       f->length, MQ_FRAME_MIN);
	if (f->length > max_frame)
		return mq_errf(err, MQ_E_TOO_LARGE,
			       "frame length %u exceeds the limit of %u",
			       f->length, max_frame);
	f->id = mq_get32(p + 4);
	f->type = mq_get16(p + 8);
	f->flags = mq_get16(p + 10);
	f->payload = p + MQ_FRAME_HEADER;
	f->payload_len = f->length - MQ_FRAME_MIN;
	return 0;
}

int32_t mq_partition_for_key(const void *key, size_t len, int32_t n)
{
	const uint8_t *k = key;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++) {
		h ^= k[i];
		h *= 16777619u;
	}
	return n > 0 ? (int32_t)(h % (uint32_t)n) : 0;
}

const char *mq_req_name(uint16_t type)
{
	switch (type & ~MQ_REPLY) {
	case MQ_T_STATUS: return "status";
	case MQ_T_METADATA: return "metadata";
	case MQ_T_CREATE_TOPIC: return "create-topic";
	case MQ_T_PRODUCE: return "produce";
	case MQ_T_FETCH: return "fetch";
	case MQ_T_INIT_PRODUCER: return "init-producer";
	case MQ_T_LIST_OFFSET: return "list-offset";
	case MQ_T_DELETE_RECORDS: return "delete-records";
	case MQ_T_JOIN_GROUP: return "join-group";
	case MQ_T_HEARTBEAT: return "heartbeat";
	case MQ_T_LEAVE_GROUP: return "leave-group";
	case MQ_T_COMMIT: return "commit";
	case MQ_T_DESCRIBE_GROUPS: return "describe-groups";
	}
	return "unknown";
}
