/*
 * codec.c -- the byte-level pieces every encoding is built from.
 *
 * Writers (td_buf) never fail midway: an allocation failure sets `oom` and
 * later writes are dropped, so an encoder checks once at the end. Readers
 * (td_rd) never read past `end`: a short or malformed read sets `bad` and
 * returns zero, so a decoder may read a whole structure and check once.
 * Varints are LEB128, at most 10 bytes, and must be minimal (a redundant
 * trailing zero byte is rejected) so that every value has one encoding.
 * These primitives and the value tags are specified in docs/FORMAT.md
 * (section 1).
 */
#include "crdt_internal.h"

void td_crdt_wb_init(td_buf *b, td_crdt_doc *d)
{
    memset(b, 0, sizeof *b);
    b->d = d;
}

static int buf_reserve(td_buf *b, size_t n)
{
    if (b->oom)
        return 0;
    if (b->len + n <= b->cap)
        return 1;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n)
        cap *= 2;
    uint8_t *p = td_crdt_mem(b->d, b->p, cap);
    if (!p) {
        b->oom = 1;
        return 0;
    }
    b->p = p;
    b->cap = cap;
    return 1;
}

int td_crdt_wb_reserve(td_buf *b, size_t n)
{
    return buf_reserve(b, n);
}

void td_crdt_wb_bytes(td_buf *b, const void *p, size_t n)
{
    if (n && buf_reserve(b, n)) {
        memcpy(b->p + b->len, p, n);
        b->len += n;
    }
}

void td_crdt_wb_u8(td_buf *b, uint8_t v)
{
    if (buf_reserve(b, 1))
        b->p[b->len++] = v;
}

size_t td_crdt_varint_put(uint8_t out[TD_CRDT_VARINT_MAX], uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

void td_crdt_wb_varint(td_buf *b, uint64_t v)
{
    if (buf_reserve(b, TD_CRDT_VARINT_MAX))
        b->len += td_crdt_varint_put(b->p + b->len, v);
}

void td_crdt_wb_u64le(td_buf *b, uint64_t v)
{
    if (!buf_reserve(b, 8))
        return;
    for (int i = 0; i < 8; i++)
        b->p[b->len++] = (uint8_t)(v >> (8 * i));
}

void td_crdt_wb_free(td_buf *b)
{
    td_crdt_memfree(b->d, b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

uint8_t td_crdt_rd_u8(td_rd *r)
{
    if (r->bad || r->p >= r->end) {
        r->bad = 1;
        return 0;
    }
    return *r->p++;
}

td_crdt_err td_crdt_varint_get(const uint8_t *p, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = *pos;
    for (int shift = 0; shift < 64; shift += 7) {
        if (i >= len)
            return TD_CRDT_ERR_DECODE; /* truncated */
        uint8_t c = p[i++];
        if (shift == 63 && c > 1)
            return TD_CRDT_ERR_DECODE; /* past 64 bits */
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            if (c == 0 && shift > 0)
                return TD_CRDT_ERR_DECODE; /* non-minimal */
            *pos = i;
            *out = v;
            return TD_CRDT_OK;
        }
    }
    return TD_CRDT_ERR_DECODE; /* longer than 10 bytes */
}

uint64_t td_crdt_rd_varint(td_rd *r)
{
    uint64_t v;
    size_t pos = 0;
    if (r->bad || td_crdt_varint_get(r->p, (size_t)(r->end - r->p), &pos, &v) != TD_CRDT_OK) {
        r->bad = 1;
        return 0;
    }
    r->p += pos;
    return v;
}

uint32_t td_crdt_rd_u32(td_rd *r, uint32_t max)
{
    uint64_t v = td_crdt_rd_varint(r);
    if (v > max) {
        r->bad = 1;
        return 0;
    }
    return (uint32_t)v;
}

uint64_t td_crdt_rd_u64le(td_rd *r)
{
    const uint8_t *p = td_crdt_rd_bytes(r, 8);
    uint64_t v = 0;
    if (!p)
        return 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

const uint8_t *td_crdt_rd_bytes(td_rd *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}

size_t td_crdt_rd_left(const td_rd *r)
{
    return r->bad ? 0 : (size_t)(r->end - r->p);
}

uint64_t td_crdt_zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

int64_t td_crdt_unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* ---- UTF-8 -------------------------------------------------------------- */

/* Length of the sequence starting with byte c, 0 if c cannot start one. */
static int utf8_seqlen(uint8_t c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef)
        return 3;
    if (c >= 0xf0 && c <= 0xf4)
        return 4;
    return 0;
}

int td_crdt_utf8_valid(const uint8_t *p, size_t len)
{
    return td_crdt_utf8_count((const char *)p, len) != SIZE_MAX;
}

/* Rejects overlongs, surrogates and code points past U+10FFFF. */
size_t td_crdt_utf8_count(const char *str, size_t len)
{
    const uint8_t *s = (const uint8_t *)str;
    size_t i = 0, n = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) { /* the common case: ASCII */
            i++;
            n++;
            continue;
        }
        int k = utf8_seqlen(c);
        if (!k || i + (size_t)k > len)
            return SIZE_MAX;
        for (int j = 1; j < k; j++)
            if ((s[i + j] & 0xc0) != 0x80)
                return SIZE_MAX;
        if ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] > 0x9f) ||
            (c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] > 0x8f))
            return SIZE_MAX;
        i += (size_t)k;
        n++;
    }
    return n;
}

void td_crdt_utf8_decode(const char *str, size_t len, uint32_t *out)
{
    const uint8_t *s = (const uint8_t *)str;
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        int k = utf8_seqlen(c);
        uint32_t cp = k == 1 ? c : (uint32_t)(c & (0x7f >> k));
        for (int j = 1; j < k; j++)
            cp = (cp << 6) | (s[i + j] & 0x3f);
        *out++ = cp;
        i += (size_t)k;
    }
}

size_t td_crdt_utf8_put(uint32_t cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

void td_crdt_wb_utf8(td_buf *b, const uint32_t *cps, uint32_t n)
{
    if (!buf_reserve(b, (size_t)n * 4))
        return;
    char *o = (char *)b->p + b->len;
    char *start = o;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t cp = cps[i];
        if (cp < 0x80)
            *o++ = (char)cp;
        else
            o += td_crdt_utf8_put(cp, o);
    }
    b->len += (size_t)(o - start);
}

/* ---- values ------------------------------------------------------------- */

void td_crdt_val_encode(td_buf *b, const td_val *v)
{
    td_crdt_wb_u8(b, v->tag);
    switch (v->tag) {
    case TD_VT_INT:
        td_crdt_wb_varint(b, td_crdt_zigzag(v->u.i));
        break;
    case TD_VT_FLOAT: {
        uint64_t bits;
        memcpy(&bits, &v->u.f, 8);
        td_crdt_wb_u64le(b, bits);
        break;
    }
    case TD_VT_STR:
        td_crdt_wb_varint(b, v->len);
        td_crdt_wb_bytes(b, v->u.s, v->len);
        break;
    default:
        break; /* tag alone; nested objects are named by the op's id */
    }
}

td_crdt_err td_crdt_val_decode(td_crdt_doc *d, td_rd *r, td_val *out)
{
    memset(out, 0, sizeof *out);
    out->tag = td_crdt_rd_u8(r);
    if (r->bad || out->tag >= TD_VT_COUNT)
        return TD_CRDT_ERR_DECODE;
    switch (out->tag) {
    case TD_VT_INT:
        out->u.i = td_crdt_unzigzag(td_crdt_rd_varint(r));
        break;
    case TD_VT_FLOAT: {
        uint64_t bits = td_crdt_rd_u64le(r);
        memcpy(&out->u.f, &bits, 8);
        if (out->u.f != out->u.f) /* NaN has no JSON form and breaks equality */
            return TD_CRDT_ERR_DECODE;
        break;
    }
    case TD_VT_STR: {
        uint32_t n = td_crdt_rd_u32(r, 0x7fffffff);
        const uint8_t *p = td_crdt_rd_bytes(r, n);
        if (!p || td_crdt_utf8_count((const char *)p, n) == SIZE_MAX)
            return TD_CRDT_ERR_DECODE;
        out->u.s = td_crdt_mem(d, NULL, n ? n : 1);
        if (!out->u.s)
            return TD_CRDT_ERR_NOMEM;
        memcpy(out->u.s, p, n);
        out->len = n;
        break;
    }
    default:
        break;
    }
    return r->bad ? TD_CRDT_ERR_DECODE : TD_CRDT_OK;
}
