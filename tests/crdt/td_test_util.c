/*
 * td_test_util.c -- checks, PRNG, UTF-8 and encoding helpers shared by the
 * CRDT core's tests (see td_test_util.h).
 */
#include "td_test_util.h"

#include <stdio.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define TT_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define TT_SANITIZER 1
#endif
#endif
#ifdef TT_SANITIZER
#include <sanitizer/common_interface_defs.h>
#endif

static void (*death_fn)(void);

#ifdef TT_SANITIZER
static void on_death(void)
{
    if (death_fn)
        death_fn();
    if (tt_test_context)
        fprintf(stderr, "%s\n", tt_test_context);
    fflush(stderr);
}
#endif

void tt_on_sanitizer_death(void (*fn)(void))
{
    death_fn = fn;
#ifdef TT_SANITIZER
    __sanitizer_set_death_callback(on_death);
#endif
}

const char *tt_test_docmsg(const td_crdt_doc *doc)
{
    return doc ? td_crdt_doc_error(doc) : "no document";
}

/* ---- PRNG: xoshiro256** seeded through splitmix64 ------------------------ */

uint64_t tt_rng_below(tt_rng *r, uint64_t n)
{
    /* Rejection keeps it unbiased; n is small in practice. */
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = tt_rng_next(r);
    while (x >= lim);
    return x % n;
}

int tt_rng_chance(tt_rng *r, unsigned num, unsigned den)
{
    return tt_rng_below(r, den) < num;
}

/* ---- UTF-8 ---------------------------------------------------------------- */

size_t tt_utf8_put(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

uint32_t tt_rand_cp(tt_rng *r)
{
    switch (tt_rng_below(r, 10)) {
    case 0:
        return (uint32_t)(0x80 + tt_rng_below(r, 0x800 - 0x80));
    case 1: {
        uint32_t cp;
        do
            cp = (uint32_t)(0x800 + tt_rng_below(r, 0x10000 - 0x800));
        while (cp >= 0xd800 && cp <= 0xdfff);
        return cp;
    }
    case 2:
        return (uint32_t)(0x10000 + tt_rng_below(r, 0x110000 - 0x10000));
    default:
        return (uint32_t)(0x20 + tt_rng_below(r, 0x7f - 0x20));
    }
}

size_t tt_rand_utf8(tt_rng *r, size_t n, char *out)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += tt_utf8_put(tt_rand_cp(r), out + len);
    return len;
}

size_t tt_utf8_count(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t need;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            n++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            need = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            need = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return (size_t)-1;
        }
        if (len - i <= need)
            return (size_t)-1;
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return (size_t)-1;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return (size_t)-1;
        i += need + 1;
        n++;
    }
    return n;
}

size_t tt_utf8_offset(const char *s, size_t len, size_t cp)
{
    size_t i = 0;
    while (cp > 0 && i < len) {
        i++;
        while (i < len && (((unsigned char)s[i]) & 0xc0) == 0x80)
            i++;
        cp--;
    }
    return i;
}

/* ---- owned encodings ------------------------------------------------------ */

tt_bytes tt_bytes_copy(const uint8_t *p, size_t len)
{
    tt_bytes b;
    b.len = len;
    b.p = NULL; /* empty needs no freeing */
    if (!len)
        return b;
    b.p = malloc(len);
    if (!b.p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memcpy(b.p, p, len);
    return b;
}

void tt_bytes_free(tt_bytes *b)
{
    free(b->p);
    b->p = NULL;
    b->len = 0;
}

int tt_bytes_eq(const tt_bytes *a, const tt_bytes *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/* Takes ownership of an API buffer and returns a malloc'd copy. */
static tt_bytes adopt(td_crdt_doc *doc, uint8_t *buf, size_t len)
{
    tt_bytes b = tt_bytes_copy(buf, len);
    if (buf)
        td_crdt_buf_free(doc, buf);
    return b;
}

tt_bytes tt_snap(td_crdt_doc *doc)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_OK(doc, td_crdt_snapshot_encode(doc, &buf, &len));
    CHECK(buf != NULL && len > 0);
    return adopt(doc, buf, len);
}

tt_bytes tt_vv(td_crdt_doc *doc)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_OK(doc, td_crdt_vv_encode(doc, &buf, &len));
    return adopt(doc, buf, len);
}

tt_bytes tt_commit(td_crdt_doc *doc)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_OK(doc, td_crdt_commit(doc, &buf, &len));
    CHECK((buf == NULL) == (len == 0));
    return adopt(doc, buf, len);
}

tt_bytes tt_diff(td_crdt_doc *doc, const tt_bytes *vv)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_OK(doc, td_crdt_diff(doc, vv ? vv->p : NULL, vv ? vv->len : 0, &buf, &len));
    CHECK((buf == NULL) == (len == 0));
    return adopt(doc, buf, len);
}

char *tt_json(td_crdt_doc *doc)
{
    char *buf = NULL;
    size_t len = 0;
    CHECK_OK(doc, td_crdt_to_json(doc, &buf, &len));
    CHECK(buf != NULL);
    CHECK(strlen(buf) == len);
    char *s = (char *)tt_bytes_copy((const uint8_t *)buf, len + 1).p;
    td_crdt_buf_free(doc, buf);
    return s;
}

char *tt_text(td_crdt_doc *doc, td_crdt_obj text)
{
    char *buf = NULL;
    size_t len = 0;
    CHECK_OK(doc, td_crdt_text_get(doc, text, &buf, &len));
    CHECK(buf != NULL);
    CHECK(buf[len] == '\0');
    char *s = (char *)tt_bytes_copy((const uint8_t *)buf, len + 1).p;
    td_crdt_buf_free(doc, buf);
    return s;
}

void *tt_failing_hook(void *ud, void *ptr, size_t size)
{
    tt_failing *c = ud;
    if (size == 0) {
        free(ptr);
        return NULL;
    }
    if (c && ++c->n == c->fail_at) {
        c->failed = 1;
        return NULL;
    }
    return realloc(ptr, size);
}

td_crdt_value tt_rand_scalar(tt_rng *r, char *buf)
{
    td_crdt_value v;
    memset(&v, 0, sizeof v);
    switch (tt_rng_below(r, 4)) {
    case 0: v.type = TD_CRDT_V_INT; v.u.i = (int64_t)tt_rng_below(r, 1000) - 500; break;
    case 1:
        v.type = TD_CRDT_V_STR;
        v.u.str.len = tt_rand_utf8(r, 1 + tt_rng_below(r, 8), buf);
        v.u.str.ptr = buf;
        break;
    case 2: v.type = TD_CRDT_V_FLOAT; v.u.f = (double)tt_rng_below(r, 1000) / 7; break;
    default: v.type = TD_CRDT_V_NULL; break;
    }
    return v;
}

td_crdt_obj tt_pick_text(td_crdt_doc *d, uint64_t k)
{
    td_crdt_obj t = 0;
    if (k % 4 < 2) {
        CHECK_OK(d, td_crdt_root(d, TD_CRDT_TEXT, k % 4 ? "b" : "a", 1, &t));
        return t;
    }
    td_crdt_obj m;
    td_crdt_value v;
    char key[2] = {(char)('0' + (char)(k / 4 % 4)), 0};
    CHECK_OK(d, td_crdt_root(d, TD_CRDT_MAP, "m", 1, &m));
    CHECK_OK(d, td_crdt_map_get(d, m, key, 1, &v));
    return v.type == TD_CRDT_V_OBJ && v.obj_kind == TD_CRDT_TEXT ? v.u.obj : 0;
}

int tt_alloc_watch;
static size_t watch_max;

void *tt_alloc_hook(void *ud, void *ptr, size_t size)
{
    (void)ud;
    if (size == 0) {
        free(ptr);
        return NULL;
    }
    if (size > watch_max)
        watch_max = size;
    return realloc(ptr, size);
}

void tt_alloc_watch_reset(void)
{
    watch_max = 0;
}

size_t tt_alloc_watch_max(void)
{
    return watch_max;
}

td_crdt_doc *tt_new_doc(uint64_t agent)
{
    td_crdt_options o;
    td_crdt_doc *d = NULL;
    memset(&o, 0, sizeof o);
    o.agent = agent;
    if (tt_alloc_watch)
        o.alloc = tt_alloc_hook;
    CHECK_OK(NULL, td_crdt_doc_new(&o, &d));
    CHECK(d != NULL);
    CHECK(td_crdt_doc_agent(d) == agent);
    return d;
}

td_crdt_doc *tt_load_doc(uint64_t agent, const tt_bytes *snap)
{
    td_crdt_options o;
    td_crdt_doc *d = NULL;
    const char *msg = NULL;
    memset(&o, 0, sizeof o);
    o.agent = agent;
    if (tt_alloc_watch)
        o.alloc = tt_alloc_hook;
    td_crdt_err e = td_crdt_doc_load(&o, snap->p, snap->len, &d, &msg);
    CHECK_MSG(e == TD_CRDT_OK, "td_crdt_doc_load: %s (%s)", td_crdt_strerror(e),
              msg ? msg : "(no message)");
    CHECK(d != NULL);
    return d;
}

void tt_apply_ok(td_crdt_doc *doc, const tt_bytes *batch, td_crdt_apply_info *info)
{
    CHECK_OK(doc, td_crdt_apply(doc, batch->p, batch->len, info));
}

void tt_sync_one_way(td_crdt_doc *from, td_crdt_doc *to)
{
    tt_bytes b = tt_commit(from);
    if (b.len)
        tt_apply_ok(to, &b, NULL);
    tt_bytes_free(&b);
}

void tt_sync_both(td_crdt_doc *a, td_crdt_doc *b)
{
    tt_bytes vva = tt_vv(a), vvb = tt_vv(b);
    tt_bytes da = tt_diff(b, &vva), db = tt_diff(a, &vvb);
    if (da.len)
        tt_apply_ok(a, &da, NULL);
    if (db.len)
        tt_apply_ok(b, &db, NULL);
    tt_bytes_free(&vva);
    tt_bytes_free(&vvb);
    tt_bytes_free(&da);
    tt_bytes_free(&db);
}
