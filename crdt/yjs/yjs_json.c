/*
 * yjs_json.c -- the document as JSON, as Yjs's toJSON() / toString() /
 * toDelta() would show it, for GET /docs/{id} and `tandem export`.
 *
 * Yjs writes no kind for a root type, so the kind of each root is inferred
 * from its visible content: text content (strings, embeds, formats) makes
 * it a Y.Text; otherwise XML nodes alone make it a Y.XmlFragment; any other
 * sequence content makes it a Y.Array; map entries alone make it a Y.Map;
 * a root with nothing visible is left out. Roots appear sorted by name.
 * docs/YJS.md has the rule and where the rendering differs from
 * JSON.stringify (binary values, BigInt, map key order).
 *
 * Numbers are written as JavaScript writes them (Number.prototype.toString,
 * which JSON.stringify uses): the shortest digits that read back to the
 * same double, with JS's choice between fixed and exponent notation.
 */
#include "yjs_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct jctx {
    yj_wr w;
    int delta;
} jctx;

static void put(yj_wr *w, const char *s)
{
    yj_wr_raw(w, s, strlen(s));
}

/* ---- scalars ------------------------------------------------------------- */

static void put_json_string(yj_wr *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    yj_wr_u8(w, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        yj_wr_raw(w, s + run, i - run);
        run = i + 1;
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t en = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            en = 6;
        }
        yj_wr_raw(w, esc, en);
    }
    if (n > run) /* an empty string may come as (NULL, 0): no NULL + 0 */
        yj_wr_raw(w, s + run, n - run);
    yj_wr_u8(w, '"');
}

/* Number.prototype.toString (ECMA-262 Number::toString, radix 10). */
static void put_number(yj_wr *w, double v)
{
    char buf[40], digits[24];
    if (isnan(v) || isinf(v)) {
        put(w, "null"); /* as JSON.stringify writes them */
        return;
    }
    if (v == 0) {
        put(w, "0");
        return;
    }
    if (v < 0) {
        yj_wr_u8(w, '-');
        v = -v;
    }
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    /* buf is d[.ddd]e±x: collect the digits k and the exponent n. */
    int k = 0, e;
    char *p = buf;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[k++] = *p;
    while (k > 1 && digits[k - 1] == '0')
        k--;
    e = atoi(p + 1);
    int n = e + 1;
    if (k <= n && n <= 21) {
        yj_wr_raw(w, digits, (size_t)k);
        for (int i = k; i < n; i++)
            yj_wr_u8(w, '0');
    } else if (0 < n && n <= 21) {
        yj_wr_raw(w, digits, (size_t)n);
        yj_wr_u8(w, '.');
        yj_wr_raw(w, digits + n, (size_t)(k - n));
    } else if (-6 < n && n <= 0) {
        put(w, "0.");
        for (int i = 0; i < -n; i++)
            yj_wr_u8(w, '0');
        yj_wr_raw(w, digits, (size_t)k);
    } else {
        yj_wr_u8(w, (uint8_t)digits[0]);
        if (k > 1) {
            yj_wr_u8(w, '.');
            yj_wr_raw(w, digits + 1, (size_t)(k - 1));
        }
        snprintf(buf, sizeof buf, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
        put(w, buf);
    }
}

static void put_u64(yj_wr *w, uint64_t v, int neg)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%s%llu", neg ? "-" : "", (unsigned long long)v);
    put(w, buf);
}

/* ---- lib0 Any values (validated on the way in) --------------------------- */

static uint64_t any_uint(const uint8_t **p)
{
    uint64_t v = 0;
    unsigned shift = 0;
    uint8_t b;
    do {
        b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
    } while (b & 0x80);
    return v;
}

static double any_double(const uint8_t **p, int width)
{
    uint64_t bits = 0;
    for (int i = 0; i < width; i++)
        bits = bits << 8 | *(*p)++;
    if (width == 4) {
        uint32_t b32 = (uint32_t)bits;
        float f;
        memcpy(&f, &b32, 4);
        return f;
    }
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

/* lib0 readVarInt: sign in bit 6 of the first byte. */
static void any_varint(const uint8_t **p, uint64_t *mag, int *neg)
{
    uint8_t b = *(*p)++;
    uint64_t v = b & 0x3f;
    unsigned shift = 6;
    *neg = (b & 0x40) != 0;
    while (b & 0x80) {
        b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
    }
    *mag = v;
}

enum { AS_JSON, AS_JS_STRING };

typedef struct key_ref {
    const char *k;
    uint32_t n;
    const uint8_t *val;
} key_ref;

static int cmp_key(const void *a, const void *b)
{
    const key_ref *x = a, *y = b;
    uint32_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->k, y->k, n);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

static void any_skip(const uint8_t **p);

/* One Any value at *p, as JSON (undefined written as `undef`, which the
 * caller chooses) or as JavaScript's String(value) (for XML attributes). */
static void any_out(jctx *j, const uint8_t **p, int mode)
{
    yj_wr *w = &j->w;
    uint8_t tag = *(*p)++;
    uint64_t n, mag;
    int neg;
    switch (tag) {
    case 127: put(w, mode == AS_JSON ? "null" : "undefined"); return;
    case 126: put(w, "null"); return;
    case 121: put(w, "false"); return;
    case 120: put(w, "true"); return;
    case 125:
        any_varint(p, &mag, &neg);
        put_u64(w, mag, neg && mag);
        return;
    case 124: put_number(w, any_double(p, 4)); return;
    case 123: put_number(w, any_double(p, 8)); return;
    case 122: { /* BigInt64, big-endian: written as its decimal digits */
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++)
            bits = bits << 8 | *(*p)++;
        int64_t s;
        memcpy(&s, &bits, 8);
        put_u64(w, s < 0 ? (uint64_t)0 - bits : bits, s < 0);
        return;
    }
    case 119:
        n = any_uint(p);
        if (mode == AS_JSON)
            put_json_string(w, (const char *)*p, (size_t)n);
        else
            yj_wr_raw(w, *p, (size_t)n);
        *p += n;
        return;
    case 118: {
        n = any_uint(p);
        if (mode == AS_JS_STRING) {
            put(w, "[object Object]");
            for (uint64_t i = 0; i < n; i++) {
                uint64_t kn = any_uint(p);
                *p += kn;
                any_skip(p);
            }
            return;
        }
        /* Keys sorted, later duplicates win, undefined members left out,
         * as JSON.stringify of the object lib0 builds would. */
        key_ref *keys = n ? yj_alloc(w->d, (size_t)n * sizeof *keys) : NULL;
        if (n && !keys) {
            w->nomem = 1;
            for (uint64_t i = 0; i < n; i++) {
                *p += any_uint(p);
                any_skip(p);
            }
            return;
        }
        for (uint64_t i = 0; i < n; i++) {
            uint64_t kn = any_uint(p);
            keys[i] = (key_ref){(const char *)*p, (uint32_t)kn, *p + kn};
            *p += kn;
            any_skip(p);
        }
        size_t m = (size_t)n;
        for (size_t i = 0; i < m; i++) /* stable order for equal keys */
            for (size_t k = i; k > 0 && cmp_key(&keys[k - 1], &keys[k]) > 0; k--) {
                key_ref t = keys[k];
                keys[k] = keys[k - 1];
                keys[k - 1] = t;
            }
        yj_wr_u8(w, '{');
        int first = 1;
        for (size_t i = 0; i < m; i++) {
            if (i + 1 < m && cmp_key(&keys[i], &keys[i + 1]) == 0)
                continue;
            if (*keys[i].val == 127)
                continue;
            if (!first)
                yj_wr_u8(w, ',');
            first = 0;
            put_json_string(w, keys[i].k, keys[i].n);
            yj_wr_u8(w, ':');
            const uint8_t *v = keys[i].val;
            any_out(j, &v, AS_JSON);
        }
        yj_wr_u8(w, '}');
        yj_free(w->d, keys);
        return;
    }
    case 117:
        n = any_uint(p);
        if (mode == AS_JSON)
            yj_wr_u8(w, '[');
        for (uint64_t i = 0; i < n; i++) {
            if (i)
                yj_wr_u8(w, ',');
            if (mode == AS_JS_STRING && (**p == 127 || **p == 126)) {
                (*p)++; /* join() writes null and undefined as "" */
                continue;
            }
            any_out(j, p, mode);
        }
        if (mode == AS_JSON)
            yj_wr_u8(w, ']');
        return;
    case 116: /* Uint8Array: an array of its bytes */
        n = any_uint(p);
        if (mode == AS_JSON)
            yj_wr_u8(w, '[');
        for (uint64_t i = 0; i < n; i++) {
            if (i)
                yj_wr_u8(w, ',');
            put_u64(w, (*p)[i], 0);
        }
        if (mode == AS_JSON)
            yj_wr_u8(w, ']');
        *p += n;
        return;
    default:
        return;
    }
}

static void any_skip(const uint8_t **p)
{
    uint8_t tag = *(*p)++;
    uint64_t n, mag;
    int neg;
    switch (tag) {
    case 125: any_varint(p, &mag, &neg); return;
    case 124: *p += 4; return;
    case 123: case 122: *p += 8; return;
    case 119: case 116: n = any_uint(p); *p += n; return;
    case 118:
        n = any_uint(p);
        for (uint64_t i = 0; i < n; i++) {
            *p += any_uint(p);
            any_skip(p);
        }
        return;
    case 117:
        n = any_uint(p);
        for (uint64_t i = 0; i < n; i++)
            any_skip(p);
        return;
    default:
        return;
    }
}

/* ---- JSON texts (ContentJSON, embeds, format values) -------------------- */

static const char *jtext_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* The end of the (validated) JSON value at p. */
static const char *jtext_skip(const char *p, const char *e)
{
    p = jtext_ws(p, e);
    if (p >= e)
        return e;
    if (*p == '"') {
        for (p++; p < e && *p != '"'; p++)
            if (*p == '\\')
                p++;
        return p < e ? p + 1 : e;
    }
    if (*p == '{' || *p == '[') {
        int depth = 0;
        for (; p < e; p++) {
            if (*p == '"') {
                p = jtext_skip(p, e) - 1;
            } else if (*p == '{' || *p == '[') {
                depth++;
            } else if (*p == '}' || *p == ']') {
                if (--depth == 0)
                    return p + 1;
            }
        }
        return e;
    }
    while (p < e && *p != ',' && *p != ']' && *p != '}' && *p != ' ' && *p != '\n' &&
           *p != '\r' && *p != '\t')
        p++;
    return p;
}

static unsigned hex4(const char *p)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v = v << 4 | (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

static void put_utf8(yj_wr *w, unsigned cp)
{
    uint8_t b[4];
    size_t n;
    if (cp < 0x80) { b[0] = (uint8_t)cp; n = 1; }
    else if (cp < 0x800) { b[0] = (uint8_t)(0xC0 | cp >> 6); b[1] = (uint8_t)(0x80 | (cp & 63)); n = 2; }
    else if (cp < 0x10000) {
        b[0] = (uint8_t)(0xE0 | cp >> 12); b[1] = (uint8_t)(0x80 | (cp >> 6 & 63));
        b[2] = (uint8_t)(0x80 | (cp & 63)); n = 3;
    } else {
        b[0] = (uint8_t)(0xF0 | cp >> 18); b[1] = (uint8_t)(0x80 | (cp >> 12 & 63));
        b[2] = (uint8_t)(0x80 | (cp >> 6 & 63)); b[3] = (uint8_t)(0x80 | (cp & 63)); n = 4;
    }
    yj_wr_raw(w, b, n);
}

/* The text of the JSON string at p (which starts at its quote). */
static void jtext_unescape(yj_wr *w, const char *p, const char *e)
{
    for (p++; p < e && *p != '"'; p++) {
        if (*p != '\\') {
            yj_wr_u8(w, (uint8_t)*p);
            continue;
        }
        p++;
        switch (*p) {
        case 'n': yj_wr_u8(w, '\n'); break;
        case 'r': yj_wr_u8(w, '\r'); break;
        case 't': yj_wr_u8(w, '\t'); break;
        case 'b': yj_wr_u8(w, '\b'); break;
        case 'f': yj_wr_u8(w, '\f'); break;
        case 'u': {
            unsigned cp = hex4(p + 1);
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && e - p > 6 && p[1] == '\\' && p[2] == 'u') {
                unsigned lo = hex4(p + 3);
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
            }
            put_utf8(w, cp >= 0xD800 && cp < 0xE000 ? 0xFFFD : cp);
            break;
        }
        default: yj_wr_u8(w, (uint8_t)*p); break;
        }
    }
}

/* String(JSON.parse(text)). */
static void jtext_js_string(yj_wr *w, const char *p, const char *e)
{
    p = jtext_ws(p, e);
    if (p >= e)
        return;
    switch (*p) {
    case '"':
        jtext_unescape(w, p, e);
        return;
    case '{':
        put(w, "[object Object]");
        return;
    case '[': {
        int first = 1;
        for (p = jtext_ws(p + 1, e); p < e && *p != ']';) {
            if (!first)
                yj_wr_u8(w, ',');
            first = 0;
            const char *v = jtext_ws(p, e), *ve = jtext_skip(v, e);
            if (!(ve - v == 4 && memcmp(v, "null", 4) == 0))
                jtext_js_string(w, v, ve);
            p = jtext_ws(ve, e);
            if (p < e && *p == ',')
                p = jtext_ws(p + 1, e);
        }
        return;
    }
    case 't': case 'f': case 'n':
        yj_wr_raw(w, p, (size_t)(jtext_skip(p, e) - p));
        return;
    default:
        put_number(w, strtod(p, NULL));
        return;
    }
}

/* ---- types ---------------------------------------------------------------- */

static void type_out(jctx *j, const yj_type *t, int ref);

static int visible(const yj_item *it)
{
    return !(it->flags & YJ_F_DELETED) && yj_countable(it);
}

/* One element of an item's content (getContent()[i]) as JSON. */
static void value_out(jctx *j, const yj_item *it, uint64_t i, int in_array)
{
    yj_wr *w = &j->w;
    switch (it->kind) {
    case YJ_ANY: {
        const uint8_t *p = it->c.u.vals.data + (i ? it->c.u.vals.ends[i - 1] : 0);
        any_out(j, &p, AS_JSON);
        return;
    }
    case YJ_JSON: {
        uint32_t a = i ? it->c.u.vals.ends[i - 1] : 0, b = it->c.u.vals.ends[i];
        if (b - a == 9 && memcmp(it->c.u.vals.data + a, "undefined", 9) == 0)
            put(w, "null");
        else
            yj_wr_raw(w, it->c.u.vals.data + a, b - a);
        return;
    }
    case YJ_BINARY:
        yj_wr_u8(w, '[');
        for (uint32_t k = 0; k < it->c.u.buf.bytes; k++) {
            if (k)
                yj_wr_u8(w, ',');
            put_u64(w, it->c.u.buf.data[k], 0);
        }
        yj_wr_u8(w, ']');
        return;
    case YJ_EMBED:
        yj_wr_raw(w, it->c.u.buf.data, it->c.u.buf.bytes);
        return;
    case YJ_TYPE:
        type_out(j, it->c.u.type, it->c.u.type->ref);
        return;
    case YJ_DOC: /* a subdocument that is not loaded: Doc.toJSON() is {} */
        put(w, "{}");
        return;
    case YJ_STRING: { /* in an array, getContent() gives one-unit strings */
        int mid;
        const char *s = it->c.u.str.s;
        size_t a = yj_utf16_offset(s, it->c.u.str.bytes, i, &mid);
        size_t b = yj_utf16_offset(s, it->c.u.str.bytes, i + 1, &mid);
        if (mid || b == a)
            put(w, "\"\\ufffd\"");
        else
            put_json_string(w, s + a, b - a);
        return;
    }
    default:
        (void)in_array;
        put(w, "null");
        return;
    }
}

static int undefined_value(const yj_item *it, uint64_t i)
{
    if (it->kind == YJ_ANY)
        return it->c.u.vals.data[i ? it->c.u.vals.ends[i - 1] : 0] == 127;
    if (it->kind == YJ_JSON) {
        uint32_t a = i ? it->c.u.vals.ends[i - 1] : 0, b = it->c.u.vals.ends[i];
        return b - a == 9 && memcmp(it->c.u.vals.data + a, "undefined", 9) == 0;
    }
    return 0;
}

static void array_out(jctx *j, const yj_type *t)
{
    int first = 1;
    yj_wr_u8(&j->w, '[');
    for (const yj_item *it = t->start; it; it = it->right) {
        if (!visible(it))
            continue;
        for (uint64_t i = 0; i < it->len; i++) {
            if (!first)
                yj_wr_u8(&j->w, ',');
            first = 0;
            value_out(j, it, i, 1);
        }
    }
    yj_wr_u8(&j->w, ']');
}

/* The current entries of a map, sorted by key. NULL if none (or nomem). */
static const yj_item **map_entries(jctx *j, const yj_type *t, size_t *n)
{
    *n = 0;
    for (uint32_t i = 0; i < t->map.cap; i++) {
        const yj_item *it = t->map.slots[i].val;
        *n += it && !(it->flags & YJ_F_DELETED);
    }
    if (!*n)
        return NULL;
    const yj_item **v = yj_alloc(j->w.d, *n * sizeof *v);
    if (!v) {
        j->w.nomem = 1;
        *n = 0;
        return NULL;
    }
    size_t k = 0;
    for (uint32_t i = 0; i < t->map.cap; i++) {
        const yj_item *it = t->map.slots[i].val;
        if (it && !(it->flags & YJ_F_DELETED))
            v[k++] = it;
    }
    for (size_t a = 1; a < k; a++) /* maps are small; keys distinct */
        for (size_t b = a; b > 0; b--) {
            key_ref x = {v[b - 1]->sub, v[b - 1]->sub_len, NULL}, y = {v[b]->sub, v[b]->sub_len, NULL};
            if (cmp_key(&x, &y) <= 0)
                break;
            const yj_item *tmp = v[b];
            v[b] = v[b - 1];
            v[b - 1] = tmp;
        }
    return v;
}

static void map_out(jctx *j, const yj_type *t)
{
    size_t n;
    const yj_item **v = map_entries(j, t, &n);
    int first = 1;
    yj_wr_u8(&j->w, '{');
    for (size_t i = 0; i < n; i++) {
        const yj_item *it = v[i];
        if (undefined_value(it, it->len - 1))
            continue;
        if (!first)
            yj_wr_u8(&j->w, ',');
        first = 0;
        put_json_string(&j->w, it->sub, it->sub_len);
        yj_wr_u8(&j->w, ':');
        value_out(j, it, it->len - 1, 0);
    }
    yj_wr_u8(&j->w, '}');
    yj_free(j->w.d, v);
}

/* YText.toString(): the strings, without embeds and formats. */
static void text_plain(yj_wr *w, const yj_type *t)
{
    for (const yj_item *it = t->start; it; it = it->right)
        if (it->kind == YJ_STRING && !(it->flags & YJ_F_DELETED))
            yj_wr_raw(w, it->c.u.str.s, it->c.u.str.bytes);
}

/* currentAttributes of toDelta: a Map, so insertion-ordered. */
typedef struct attrs {
    const yj_item **fmt; /* format items, values non-null */
    size_t n, cap;
} attrs;

static int fmt_key_eq(const yj_item *a, const yj_item *b)
{
    return a->c.u.buf.key == b->c.u.buf.key &&
           memcmp(a->c.u.buf.data, b->c.u.buf.data, a->c.u.buf.key) == 0;
}

static void attrs_update(yj_wr *w, attrs *a, const yj_item *f)
{
    size_t k = 0;
    while (k < a->n && !fmt_key_eq(a->fmt[k], f))
        k++;
    const char *v = (const char *)f->c.u.buf.data + f->c.u.buf.key;
    const char *ve = (const char *)f->c.u.buf.data + f->c.u.buf.bytes;
    v = jtext_ws(v, ve);
    int is_null = ve - v >= 4 && memcmp(v, "null", 4) == 0;
    if (k < a->n) {
        if (is_null) {
            memmove(&a->fmt[k], &a->fmt[k + 1], (a->n - k - 1) * sizeof *a->fmt);
            a->n--;
        } else {
            a->fmt[k] = f; /* Map.set on an existing key keeps its place */
        }
        return;
    }
    if (is_null)
        return;
    if (!yj_grow(w->d, &a->fmt, &a->cap, a->n + 1, sizeof *a->fmt)) {
        w->nomem = 1;
        return;
    }
    a->fmt[a->n++] = f;
}

static void attrs_out(yj_wr *w, const attrs *a)
{
    if (!a->n)
        return;
    put(w, ",\"attributes\":{");
    for (size_t k = 0; k < a->n; k++) {
        const yj_item *f = a->fmt[k];
        if (k)
            yj_wr_u8(w, ',');
        put_json_string(w, (const char *)f->c.u.buf.data, f->c.u.buf.key);
        yj_wr_u8(w, ':');
        yj_wr_raw(w, f->c.u.buf.data + f->c.u.buf.key, f->c.u.buf.bytes - f->c.u.buf.key);
    }
    yj_wr_u8(w, '}');
}

/* One op of a delta: the run of strings in [from, to) with attributes a,
 * or (from->kind != STRING) one embed. */
static void delta_op(jctx *j, int *first, const yj_item *from, const yj_item *to, const attrs *a)
{
    yj_wr *w = &j->w;
    if (!*first)
        yj_wr_u8(w, ',');
    *first = 0;
    put(w, "{\"insert\":");
    if (from->kind == YJ_STRING) {
        /* a run may span several items: escape each piece into one string */
        yj_wr tmp = {w->d, NULL, 0, 0, 0};
        for (const yj_item *it = from; it != to; it = it->right)
            if (it->kind == YJ_STRING && !(it->flags & YJ_F_DELETED))
                yj_wr_raw(&tmp, it->c.u.str.s, it->c.u.str.bytes);
        if (tmp.nomem)
            w->nomem = 1;
        put_json_string(w, (const char *)tmp.buf, tmp.len);
        yj_free(w->d, tmp.buf);
    } else {
        value_out(j, from, 0, 0);
    }
    attrs_out(w, a);
    yj_wr_u8(w, '}');
}

/* YText.toDelta(): strings packed between visible formats, each embed its
 * own op, as Yjs does (two neighbouring runs with equal attributes stay two
 * ops when a format item lies between them). */
static void text_delta(jctx *j, const yj_type *t)
{
    attrs a = {NULL, 0, 0};
    int first = 1;
    const yj_item *run = NULL;
    yj_wr_u8(&j->w, '[');
    for (const yj_item *it = t->start; it; it = it->right) {
        if (it->flags & YJ_F_DELETED)
            continue;
        if (it->kind == YJ_STRING) {
            if (!run)
                run = it;
            continue;
        }
        if (it->kind != YJ_FORMAT && it->kind != YJ_EMBED && it->kind != YJ_TYPE)
            continue;
        if (run)
            delta_op(j, &first, run, it, &a);
        run = NULL;
        if (it->kind == YJ_FORMAT)
            attrs_update(&j->w, &a, it);
        else
            delta_op(j, &first, it, NULL, &a);
    }
    if (run)
        delta_op(j, &first, run, NULL, &a);
    yj_wr_u8(&j->w, ']');
    yj_free(j->w.d, a.fmt);
}

/* ---- XML toString() -------------------------------------------------------- */

static void xml_string(jctx *j, const yj_type *t);

/* A value as `${value}` would show it inside XML. */
static void value_js_string(jctx *j, const yj_item *it, uint64_t i)
{
    yj_wr *w = &j->w;
    switch (it->kind) {
    case YJ_ANY: {
        const uint8_t *p = it->c.u.vals.data + (i ? it->c.u.vals.ends[i - 1] : 0);
        any_out(j, &p, AS_JS_STRING);
        return;
    }
    case YJ_JSON: {
        uint32_t a = i ? it->c.u.vals.ends[i - 1] : 0, b = it->c.u.vals.ends[i];
        const char *s = (const char *)it->c.u.vals.data;
        if (b - a == 9 && memcmp(s + a, "undefined", 9) == 0)
            put(w, "undefined");
        else
            jtext_js_string(w, s + a, s + b);
        return;
    }
    case YJ_STRING:
        yj_wr_raw(w, it->c.u.str.s, it->c.u.str.bytes);
        return;
    case YJ_TYPE:
        xml_string(j, it->c.u.type);
        return;
    case YJ_BINARY:
        for (uint32_t k = 0; k < it->c.u.buf.bytes; k++) {
            if (k)
                yj_wr_u8(w, ',');
            put_u64(w, it->c.u.buf.data[k], 0);
        }
        return;
    default:
        put(w, "[object Object]");
        return;
    }
}

typedef struct xattr {
    const char *k;
    uint32_t n;
    const char *v, *ve; /* JSON text of the value; NULL: v is a string piece */
} xattr;

static int cmp_xattr(const void *a, const void *b)
{
    const xattr *x = a, *y = b;
    key_ref kx = {x->k, x->n, NULL}, ky = {y->k, y->n, NULL};
    return cmp_key(&kx, &ky);
}

/* `<name k="v" ...>` for one format of an XmlText delta: the keys a for-in
 * loop finds in the value (an object's members, a string's indexes). */
static void xml_text_open(jctx *j, const yj_item *f)
{
    yj_wr *w = &j->w;
    const char *v = (const char *)f->c.u.buf.data + f->c.u.buf.key;
    const char *e = (const char *)f->c.u.buf.data + f->c.u.buf.bytes;
    yj_wr_u8(w, '<');
    yj_wr_raw(w, f->c.u.buf.data, f->c.u.buf.key);
    v = jtext_ws(v, e);
    if (v < e && *v == '{') {
        xattr *list = NULL;
        size_t n = 0, cap = 0;
        yj_wr keys = {w->d, NULL, 0, 0, 0};
        size_t *offs = NULL, ocap = 0;
        for (const char *p = jtext_ws(v + 1, e); p < e && *p == '"';) {
            const char *ke = jtext_skip(p, e);
            size_t at = keys.len;
            jtext_unescape(&keys, p, ke);
            const char *val = jtext_ws(ke, e);
            val = jtext_ws(val + 1, e); /* past ':' */
            const char *vend = jtext_skip(val, e);
            if (!yj_grow(w->d, &list, &cap, n + 1, sizeof *list) ||
                !yj_grow(w->d, &offs, &ocap, n + 1, sizeof *offs)) {
                w->nomem = 1;
                break;
            }
            offs[n] = at;
            list[n++] = (xattr){NULL, (uint32_t)(keys.len - at), val, vend};
            p = jtext_ws(vend, e);
            if (p < e && *p == ',')
                p = jtext_ws(p + 1, e);
        }
        if (keys.nomem)
            w->nomem = 1;
        for (size_t i = 0; i < n && !keys.nomem; i++)
            list[i].k = (const char *)keys.buf + offs[i];
        if (!keys.nomem && n) {
            qsort(list, n, sizeof *list, cmp_xattr);
            for (size_t i = 0; i < n; i++) {
                yj_wr_u8(w, ' ');
                yj_wr_raw(w, list[i].k, list[i].n);
                put(w, "=\"");
                jtext_js_string(w, list[i].v, list[i].ve);
                yj_wr_u8(w, '"');
            }
        }
        yj_free(w->d, list);
        yj_free(w->d, offs);
        yj_free(w->d, keys.buf);
    } else if (v < e && *v == '"') {
        yj_wr s = {w->d, NULL, 0, 0, 0};
        jtext_unescape(&s, v, e);
        if (s.nomem)
            w->nomem = 1;
        /* indexes 0..n-1 compare as strings: 0, 1, 10, 11, ..., 2, ... */
        size_t n = 0;
        for (size_t i = 0; i < s.len; i++)
            n += (s.buf[i] & 0xC0) != 0x80;
        size_t *starts = n ? yj_alloc(w->d, (n + 1) * sizeof *starts) : NULL;
        if (n && !starts) {
            w->nomem = 1;
        } else if (n) {
            size_t k = 0;
            for (size_t i = 0; i < s.len; i++)
                if ((s.buf[i] & 0xC0) != 0x80)
                    starts[k++] = i;
            starts[n] = s.len;
            char (*names)[24] = yj_alloc(w->d, n * sizeof *names);
            size_t *order = yj_alloc(w->d, n * sizeof *order);
            if (!names || !order) {
                w->nomem = 1;
            } else {
                for (size_t i = 0; i < n; i++) {
                    snprintf(names[i], sizeof names[i], "%zu", i);
                    order[i] = i;
                }
                for (size_t a2 = 1; a2 < n; a2++)
                    for (size_t b2 = a2; b2 > 0 && strcmp(names[order[b2 - 1]], names[order[b2]]) > 0; b2--) {
                        size_t tmp = order[b2];
                        order[b2] = order[b2 - 1];
                        order[b2 - 1] = tmp;
                    }
                for (size_t i = 0; i < n; i++) {
                    size_t c = order[i];
                    yj_wr_u8(w, ' ');
                    put(w, names[c]);
                    put(w, "=\"");
                    yj_wr_raw(w, s.buf + starts[c], starts[c + 1] - starts[c]);
                    yj_wr_u8(w, '"');
                }
            }
            yj_free(w->d, names);
            yj_free(w->d, order);
        }
        yj_free(w->d, starts);
        yj_free(w->d, s.buf);
    }
    yj_wr_u8(w, '>');
}

static int cmp_fmt_key(const void *a, const void *b)
{
    const yj_item *x = *(const yj_item *const *)a, *y = *(const yj_item *const *)b;
    key_ref kx = {(const char *)x->c.u.buf.data, x->c.u.buf.key, NULL};
    key_ref ky = {(const char *)y->c.u.buf.data, y->c.u.buf.key, NULL};
    return cmp_key(&kx, &ky);
}

/* One delta op of an XmlText, wrapped in its formats as tags. */
static void xml_text_op(jctx *j, const yj_item *from, const yj_item *to, const attrs *a)
{
    yj_wr *w = &j->w;
    const yj_item **sorted = NULL;
    if (a->n) {
        sorted = yj_alloc(w->d, a->n * sizeof *sorted);
        if (!sorted) {
            w->nomem = 1;
            return;
        }
        memcpy(sorted, a->fmt, a->n * sizeof *sorted);
        qsort(sorted, a->n, sizeof *sorted, cmp_fmt_key);
    }
    for (size_t k = 0; k < a->n; k++)
        xml_text_open(j, sorted[k]);
    if (from->kind == YJ_STRING) {
        for (const yj_item *it = from; it != to; it = it->right)
            if (it->kind == YJ_STRING && !(it->flags & YJ_F_DELETED))
                yj_wr_raw(w, it->c.u.str.s, it->c.u.str.bytes);
    } else if (from->kind == YJ_TYPE) {
        xml_string(j, from->c.u.type);
    } else {
        put(w, "[object Object]");
    }
    for (size_t k = a->n; k-- > 0;) {
        put(w, "</");
        yj_wr_raw(w, sorted[k]->c.u.buf.data, sorted[k]->c.u.buf.key);
        yj_wr_u8(w, '>');
    }
    yj_free(w->d, sorted);
}

/* YXmlText.toString(): the delta, each op inside its formats as tags. */
static void xml_text(jctx *j, const yj_type *t)
{
    attrs a = {NULL, 0, 0};
    const yj_item *run = NULL;
    for (const yj_item *it = t->start; it; it = it->right) {
        if (it->flags & YJ_F_DELETED)
            continue;
        if (it->kind == YJ_STRING) {
            if (!run)
                run = it;
            continue;
        }
        if (it->kind != YJ_FORMAT && it->kind != YJ_EMBED && it->kind != YJ_TYPE)
            continue;
        if (run)
            xml_text_op(j, run, it, &a);
        run = NULL;
        if (it->kind == YJ_FORMAT)
            attrs_update(&j->w, &a, it);
        else
            xml_text_op(j, it, NULL, &a);
    }
    if (run)
        xml_text_op(j, run, NULL, &a);
    yj_free(j->w.d, a.fmt);
}

static void xml_children(jctx *j, const yj_type *t)
{
    for (const yj_item *it = t->start; it; it = it->right)
        if (visible(it))
            for (uint64_t i = 0; i < it->len; i++)
                value_js_string(j, it, i);
}

/* XmlElement.toString(): attributes sorted by key, the node name in lower
 * case (ASCII; toLocaleLowerCase in Yjs). */
static void xml_element(jctx *j, const yj_type *t)
{
    yj_wr *w = &j->w;
    yj_wr_u8(w, '<');
    for (uint32_t i = 0; i < t->name_len; i++) {
        char c = t->name[i];
        yj_wr_u8(w, (uint8_t)(c >= 'A' && c <= 'Z' ? c + 32 : c));
    }
    size_t n;
    const yj_item **v = map_entries(j, t, &n);
    for (size_t i = 0; i < n; i++) {
        yj_wr_u8(w, ' ');
        yj_wr_raw(w, v[i]->sub, v[i]->sub_len);
        put(w, "=\"");
        value_js_string(j, v[i], v[i]->len - 1);
        yj_wr_u8(w, '"');
    }
    yj_free(w->d, v);
    yj_wr_u8(w, '>');
    xml_children(j, t);
    put(w, "</");
    for (uint32_t i = 0; i < t->name_len; i++) {
        char c = t->name[i];
        yj_wr_u8(w, (uint8_t)(c >= 'A' && c <= 'Z' ? c + 32 : c));
    }
    yj_wr_u8(w, '>');
}

static void xml_string(jctx *j, const yj_type *t)
{
    switch (t->ref) {
    case YJ_XML_ELEMENT: xml_element(j, t); return;
    case YJ_XML_TEXT: xml_text(j, t); return;
    case YJ_TEXT: text_plain(&j->w, t); return;
    case YJ_XML_FRAGMENT: case YJ_ROOT: xml_children(j, t); return;
    default: put(&j->w, "[object Object]"); return;
    }
}

/* The toJSON() of a type of kind ref. */
static void type_out(jctx *j, const yj_type *t, int ref)
{
    yj_wr *w = &j->w;
    switch (ref) {
    case YJ_ARRAY:
        array_out(j, t);
        return;
    case YJ_MAP:
    case YJ_XML_HOOK:
        map_out(j, t);
        return;
    case YJ_TEXT:
        if (j->delta) {
            text_delta(j, t);
        } else {
            yj_wr s = {w->d, NULL, 0, 0, 0};
            text_plain(&s, t);
            if (s.nomem)
                w->nomem = 1;
            put_json_string(w, (const char *)s.buf, s.len);
            yj_free(w->d, s.buf);
        }
        return;
    default: { /* the XML types: their toString() */
        yj_wr s = {w->d, NULL, 0, 0, 0};
        jctx sj = {s, j->delta};
        if (ref == YJ_XML_FRAGMENT)
            xml_children(&sj, t);
        else
            xml_string(&sj, t);
        if (sj.w.nomem)
            w->nomem = 1;
        put_json_string(w, (const char *)sj.w.buf, sj.w.len);
        yj_free(w->d, sj.w.buf);
        return;
    }
    }
}

/* The rule of the file comment, applied to what is visible now (so that a
 * document and its own encoding, loaded again, show the same). -1: nothing
 * visible (the root is left out). */
static int root_kind(const yj_type *t)
{
    int hint = 0;
    for (const yj_item *it = t->start; it; it = it->right) {
        if (it->flags & YJ_F_DELETED)
            continue;
        if (it->kind == YJ_STRING || it->kind == YJ_EMBED || it->kind == YJ_FORMAT)
            return YJ_TEXT;
        if (it->kind == YJ_TYPE && (it->c.u.type->ref == YJ_XML_ELEMENT ||
                                    it->c.u.type->ref == YJ_XML_TEXT))
            hint |= 2;
        else
            hint |= 4;
    }
    if (hint == 2)
        return YJ_XML_FRAGMENT;
    if (hint)
        return YJ_ARRAY;
    for (uint32_t i = 0; i < t->map.cap; i++) {
        const yj_item *it = t->map.slots[i].val;
        if (it && !(it->flags & YJ_F_DELETED))
            return YJ_MAP;
    }
    return -1;
}

static int cmp_root(const void *a, const void *b)
{
    const yj_type *x = *(const yj_type *const *)a, *y = *(const yj_type *const *)b;
    key_ref kx = {x->name, x->name_len, NULL}, ky = {y->name, y->name_len, NULL};
    return cmp_key(&kx, &ky);
}

td_yjs_err td_yjs_to_json(td_yjs_doc *d, int flags, char **out, size_t *len)
{
    if (!d || !out || !len || (flags & ~TD_YJS_JSON_DELTA))
        return TD_YJS_ERR_ARG;
    d->err[0] = 0;
    jctx j = {{d, NULL, 0, 0, 0}, (flags & TD_YJS_JSON_DELTA) != 0};
    const yj_type **roots = d->nroots ? yj_alloc(d, d->nroots * sizeof *roots) : NULL;
    if (d->nroots && !roots)
        return yj_fail(d, TD_YJS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < d->nroots; i++)
        roots[i] = d->root_order[i];
    if (d->nroots)
        qsort(roots, d->nroots, sizeof *roots, cmp_root);
    yj_wr_u8(&j.w, '{');
    for (size_t i = 0; i < d->nroots; i++) {
        const yj_type *t = roots[i];
        int kind = root_kind(t);
        if (kind < 0)
            continue;
        if (j.w.len > 1)
            yj_wr_u8(&j.w, ',');
        put_json_string(&j.w, t->name, t->name_len);
        yj_wr_u8(&j.w, ':');
        type_out(&j, t, kind);
    }
    yj_wr_u8(&j.w, '}');
    yj_wr_u8(&j.w, 0);
    yj_free(d, roots);
    if (j.w.nomem) {
        yj_free(d, j.w.buf);
        return yj_fail(d, TD_YJS_ERR_NOMEM, "out of memory");
    }
    *out = (char *)j.w.buf;
    *len = j.w.len - 1;
    return TD_YJS_OK;
}
