/*
 * yjs_lib0.c -- the primitives of lib0's binary encoding as Yjs uses them,
 * each reader strict: every length and count is checked against the bytes
 * left before anything is allocated, integers stop at 2^53 - 1 as lib0's
 * do, a varint must be minimal (lib0 writes nothing else), strings must be
 * valid UTF-8 (lib0 would decode invalid bytes to U+FFFD; docs/YJS.md).
 *
 * Readers return 1 on success and 0 on failure with r->err set; the caller
 * turns that into TD_YJS_ERR_DECODE.
 */
#include "yjs_internal.h"

#include "tandem_crdt.h"

const char yj_err_deep[] = "values nested too deep";

static int bad(yj_rd *r, const char *why)
{
    if (!r->err)
        r->err = why;
    return 0;
}

int yj_rd_u8(yj_rd *r, uint8_t *out)
{
    if (r->p >= r->end)
        return bad(r, "truncated");
    *out = *r->p++;
    return 1;
}

int yj_rd_uint(yj_rd *r, uint64_t *out)
{
    if (r->p < r->end && *r->p < 0x80) { /* most are one byte: clocks of typing */
        *out = *r->p++;
        return 1;
    }
    size_t pos = 0;
    uint64_t v;
    if (td_crdt_varint_get(r->p, (size_t)(r->end - r->p), &pos, &v) != TD_CRDT_OK)
        return bad(r, r->p >= r->end ? "truncated" : "bad varint");
    if (v > YJ_MAX_SAFE)
        return bad(r, "integer out of range");
    r->p += pos;
    *out = v;
    return 1;
}

int yj_rd_bytes(yj_rd *r, const uint8_t **p, uint32_t *n)
{
    uint64_t len;
    if (!yj_rd_uint(r, &len))
        return 0;
    if (len > (uint64_t)(r->end - r->p) || len > UINT32_MAX)
        return bad(r, "length past the end");
    *p = r->p;
    *n = (uint32_t)len;
    r->p += len;
    return 1;
}

int yj_rd_string(yj_rd *r, const char **s, uint32_t *n)
{
    const uint8_t *p;
    if (!yj_rd_bytes(r, &p, n))
        return 0;
    if (!td_crdt_utf8_valid(p, *n))
        return bad(r, "invalid UTF-8");
    *s = (const char *)p;
    return 1;
}

/* lib0 writeVarInt: sign in bit 6 of the first byte, 6 value bits there,
 * 7 in each later byte. */
static int rd_varint(yj_rd *r)
{
    uint8_t b;
    unsigned bits = 6;
    if (!yj_rd_u8(r, &b))
        return 0;
    while (b & 0x80) {
        if (!yj_rd_u8(r, &b))
            return 0;
        bits += 7;
        if (bits > 60)
            return bad(r, "integer out of range");
    }
    return 1;
}

static int rd_any(yj_rd *r, size_t depth)
{
    uint8_t tag;
    uint64_t n;
    const uint8_t *p;
    const char *s;
    uint32_t len;
    if (depth == 0)
        return bad(r, yj_err_deep);
    if (!yj_rd_u8(r, &tag))
        return 0;
    switch (tag) {
    case 127: case 126: case 121: case 120:
        return 1;
    case 125:
        return rd_varint(r);
    case 124:
    case 123:
    case 122: {
        size_t w = tag == 124 ? 4 : 8;
        if ((size_t)(r->end - r->p) < w)
            return bad(r, "truncated");
        r->p += w;
        return 1;
    }
    case 119:
        return yj_rd_string(r, &s, &len);
    case 118:
        if (!yj_rd_uint(r, &n))
            return 0;
        if (n > (uint64_t)(r->end - r->p) / 2)
            return bad(r, "count past the end");
        for (uint64_t i = 0; i < n; i++)
            if (!yj_rd_string(r, &s, &len) || !rd_any(r, depth - 1))
                return 0;
        return 1;
    case 117:
        if (!yj_rd_uint(r, &n))
            return 0;
        if (n > (uint64_t)(r->end - r->p))
            return bad(r, "count past the end");
        for (uint64_t i = 0; i < n; i++)
            if (!rd_any(r, depth - 1))
                return 0;
        return 1;
    case 116:
        return yj_rd_bytes(r, &p, &len);
    default:
        return bad(r, "unknown Any tag");
    }
}

int yj_rd_any(yj_rd *r, size_t max_depth, const uint8_t **start, size_t *n)
{
    const uint8_t *s = r->p;
    if (!rd_any(r, max_depth))
        return 0;
    *start = s;
    *n = (size_t)(r->p - s);
    return 1;
}

/* ---- JSON texts (ContentJSON, ContentEmbed, ContentFormat values) --------
 * Yjs JSON.parse()s them, so a text that does not parse is refused here. */

typedef struct jp {
    const char *p, *end;
    int deep; /* failed on max_depth, not on syntax */
} jp;

static void jws(jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int jlit(jp *j, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return 0;
    j->p += n;
    return 1;
}

static int jdigits(jp *j)
{
    const char *s = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
        j->p++;
    return j->p > s;
}

static int jnum(jp *j)
{
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p < j->end && *j->p == '0')
        j->p++;
    else if (!jdigits(j))
        return 0;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!jdigits(j))
            return 0;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (!jdigits(j))
            return 0;
    }
    return 1;
}

static int jstr(jp *j)
{
    j->p++; /* opening quote */
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p++;
        if (c == '"')
            return 1;
        if (c < 0x20)
            return 0;
        if (c == '\\') {
            if (j->p >= j->end)
                return 0;
            c = (unsigned char)*j->p++;
            if (c == 'u') {
                for (int i = 0; i < 4; i++, j->p++) {
                    if (j->p >= j->end)
                        return 0;
                    char h = *j->p;
                    if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F')))
                        return 0;
                }
            } else if (!strchr("\"\\/bfnrt", c) || c == 0) {
                return 0;
            }
        }
    }
    return 0;
}

static int jval(jp *j, size_t depth)
{
    jws(j);
    if (j->p >= j->end)
        return 0;
    if (depth == 0) {
        j->deep = 1;
        return 0;
    }
    switch (*j->p) {
    case '{':
        j->p++;
        jws(j);
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return 1;
        }
        for (;;) {
            jws(j);
            if (j->p >= j->end || *j->p != '"' || !jstr(j))
                return 0;
            jws(j);
            if (j->p >= j->end || *j->p++ != ':' || !jval(j, depth - 1))
                return 0;
            jws(j);
            if (j->p >= j->end)
                return 0;
            if (*j->p == '}') {
                j->p++;
                return 1;
            }
            if (*j->p++ != ',')
                return 0;
        }
    case '[':
        j->p++;
        jws(j);
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return 1;
        }
        for (;;) {
            if (!jval(j, depth - 1))
                return 0;
            jws(j);
            if (j->p >= j->end)
                return 0;
            if (*j->p == ']') {
                j->p++;
                return 1;
            }
            if (*j->p++ != ',')
                return 0;
        }
    case '"':
        return jstr(j);
    case 't':
        return jlit(j, "true");
    case 'f':
        return jlit(j, "false");
    case 'n':
        return jlit(j, "null");
    default:
        return jnum(j);
    }
}

int yj_json_valid(const char *s, size_t n, size_t max_depth)
{
    jp j = {s, s + n, 0};
    if (!jval(&j, max_depth))
        return j.deep ? -1 : 0;
    jws(&j);
    return j.p == j.end;
}

/* ---- UTF-16 lengths of UTF-8 text ---------------------------------------- */

size_t yj_utf16_len(const char *s, size_t n)
{
    size_t u = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c & 0xC0) != 0x80)
            u += c >= 0xF0 ? 2 : 1;
    }
    return u;
}

size_t yj_utf16_offset(const char *s, size_t n, uint64_t units, int *mid)
{
    size_t i = 0;
    uint64_t u = 0;
    *mid = 0;
    while (i < n && u < units) {
        unsigned char c = (unsigned char)s[i];
        size_t w = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (w == 4 && u + 1 == units) {
            *mid = 1;
            return i;
        }
        u += w == 4 ? 2 : 1;
        i += w;
    }
    return i;
}

/* ---- writer ------------------------------------------------------------- */

static int wr_need(yj_wr *w, size_t n)
{
    if (w->nomem)
        return 0;
    if (w->len + n > w->cap && !yj_grow(w->d, &w->buf, &w->cap, w->len + n, 1)) {
        w->nomem = 1;
        return 0;
    }
    return 1;
}

void yj_wr_u8(yj_wr *w, uint8_t v)
{
    if (wr_need(w, 1))
        w->buf[w->len++] = v;
}

void yj_wr_uint(yj_wr *w, uint64_t v)
{
    uint8_t tmp[TD_CRDT_VARINT_MAX];
    yj_wr_raw(w, tmp, td_crdt_varint_put(tmp, v));
}

void yj_wr_raw(yj_wr *w, const void *p, size_t n)
{
    if (n && wr_need(w, n)) {
        memcpy(w->buf + w->len, p, n);
        w->len += n;
    }
}

void yj_wr_bytes(yj_wr *w, const void *p, size_t n)
{
    yj_wr_uint(w, n);
    yj_wr_raw(w, p, n);
}
