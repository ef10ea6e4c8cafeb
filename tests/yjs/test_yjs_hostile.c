/*
 * test_yjs_hostile.c -- the test yjs_hostile: hand-built Yjs v1 updates
 * meant to hurt the C Yjs model (crdt/yjs/tandem_yjs.h): counts and lengths
 * far beyond the input, overlong and unsafe varints, deep nesting of Any
 * values, JSON and types, dependencies that never arrive (the pending set
 * must stay within max_pending_structs / max_pending_bytes, then LIMIT),
 * a pending delete set grown on purpose, duplicate clients, trailing bytes,
 * invalid UTF-8, items that point at themselves or at their own future,
 * long dependency chains, huge clock ranges and many clients.
 *
 * Every case states the results it allows; on top of that, always:
 *   - an error leaves the document exactly as it was (state vector, whole
 *     encoded update, td_yjs_to_json, counts) and sets td_yjs_doc_error;
 *   - a success leaves a self-consistent document (its own encoding loads
 *     into an empty doc with the same state vector) whose JSON is valid
 *     UTF-8;
 *   - td_yjs_update_check never accepts what apply rejects as malformed;
 *   - the bytes allocated through the hook during the call stay under the
 *     case's bound (a counting hook in td_yjs_options), the call returns
 *     within the case's time bound, and td_yjs_doc_free frees everything.
 * Time bounds are for Release; Debug and sanitizer builds multiply them.
 */
#define _POSIX_C_SOURCE 200809L

#include "tandem_yjs.h"
#include "td_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__SANITIZE_ADDRESS__)
#define TD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TD_ASAN 1
#endif
#endif
#ifndef TD_ASAN
#define TD_ASAN 0
#endif
#ifdef NDEBUG
#define TIME_SCALE (TD_ASAN ? 10.0 : 1.0)
#else
#define TIME_SCALE (TD_ASAN ? 20.0 : 4.0)
#endif

#define KB ((size_t)1024)
#define MB ((size_t)1024 * 1024)
#define P53 9007199254740992ULL /* 2^53 */

enum {
    A_OK = 1 << TD_YJS_OK,
    A_NOMEM = 1 << TD_YJS_ERR_NOMEM,
    A_DECODE = 1 << TD_YJS_ERR_DECODE,
    A_INVALID = 1 << TD_YJS_ERR_INVALID,
    A_LIMIT = 1 << TD_YJS_ERR_LIMIT,
    A_ERR = A_DECODE | A_INVALID | A_LIMIT
};

/* ---- a counting allocation hook ---- */

typedef struct counter {
    size_t live, peak;
} counter;

#define HDR 16

static void *hook(void *ud, void *ptr, size_t size)
{
    counter *c = ud;
    size_t old = 0;
    uint8_t *base = NULL;
    if (ptr) {
        base = (uint8_t *)ptr - HDR;
        memcpy(&old, base, sizeof old);
    }
    if (size == 0) {
        c->live -= old;
        free(base);
        return NULL;
    }
    if (size > ((size_t)1 << 40))
        return NULL;
    uint8_t *nb = realloc(base, size + HDR);
    if (!nb)
        return NULL;
    memcpy(nb, &size, sizeof size);
    c->live = c->live - old + size;
    if (c->live > c->peak)
        c->peak = c->live;
    return nb + HDR;
}

typedef struct xdoc {
    td_yjs_doc *d;
    counter c;
    td_yjs_options o;
} xdoc;

static void xnew(xdoc *x, const td_yjs_options *o)
{
    memset(x, 0, sizeof *x);
    if (o)
        x->o = *o;
    x->o.alloc = hook;
    x->o.alloc_ud = &x->c;
    td_yjs_err e = td_yjs_doc_new(&x->o, &x->d);
    if (e != TD_YJS_OK) {
        fprintf(stderr, "td_yjs_doc_new: %s\n", td_yjs_strerror(e));
        exit(1);
    }
}

static void xfree(xdoc *x)
{
    if (!x->d)
        return;
    td_yjs_doc_free(x->d);
    x->d = NULL;
    CHECK_MSG(x->c.live == 0, "td_yjs_doc_free left %zu bytes allocated", x->c.live);
}

/* ---- a tiny lib0 writer ---- */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
} wbuf;

static void w_need(wbuf *b, size_t k)
{
    if (b->n + k <= b->cap)
        return;
    while (b->n + k > b->cap)
        b->cap = b->cap ? b->cap * 2 : 256;
    b->p = realloc(b->p, b->cap);
    if (!b->p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
}
static void w_u8(wbuf *b, uint8_t v)
{
    w_need(b, 1);
    b->p[b->n++] = v;
}
static void w_raw(wbuf *b, const void *p, size_t k)
{
    w_need(b, k);
    memcpy(b->p + b->n, p, k);
    b->n += k;
}
static void w_var(wbuf *b, uint64_t v)
{
    while (v >= 0x80) {
        w_u8(b, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    w_u8(b, (uint8_t)v);
}
static void w_str(wbuf *b, const char *s) /* varString */
{
    size_t k = strlen(s);
    w_var(b, k);
    w_raw(b, s, k);
}
static void w_free(wbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}
static void w_hdr(wbuf *b, uint64_t nstructs, uint64_t client, uint64_t clock)
{
    w_var(b, nstructs);
    w_var(b, client);
    w_var(b, clock);
}
/* A string item under root `root` (no origins). */
static void w_str_root(wbuf *b, const char *root, const char *s)
{
    w_u8(b, 4);
    w_var(b, 1);
    w_str(b, root);
    w_str(b, s);
}
/* A string item after origin (oc, ok). */
static void w_str_after(wbuf *b, uint64_t oc, uint64_t ok, const char *s)
{
    w_u8(b, 0x84);
    w_var(b, oc);
    w_var(b, ok);
    w_str(b, s);
}
/* ---- the state of a doc ---- */

typedef struct snap {
    uint8_t *sv, *enc;
    size_t svn, encn;
    char *json;
    size_t jsonn;
    td_yjs_stats st;
} snap;

static void snap_free(td_yjs_doc *d, snap *s)
{
    if (s->sv)
        td_yjs_buf_free(d, s->sv);
    if (s->enc)
        td_yjs_buf_free(d, s->enc);
    if (s->json)
        td_yjs_buf_free(d, s->json);
    memset(s, 0, sizeof *s);
}

static int take_snap(td_yjs_doc *d, snap *s)
{
    memset(s, 0, sizeof *s);
    td_yjs_doc_stats(d, &s->st);
    if (td_yjs_encode_state_vector(d, &s->sv, &s->svn) != TD_YJS_OK)
        return -1;
    if (td_yjs_encode_state_as_update(d, NULL, 0, &s->enc, &s->encn) != TD_YJS_OK)
        return -1;
    if (td_yjs_to_json(d, 0, &s->json, &s->jsonn) != TD_YJS_OK)
        return -1;
    return 0;
}

static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (k >= n - i)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void hexdump(const uint8_t *p, size_t n)
{
    fprintf(stderr, "  input (%zu bytes):", n);
    for (size_t i = 0; i < n && i < 256; i++)
        fprintf(stderr, "%s%02x", i % 32 ? "" : "\n    ", p[i]);
    fprintf(stderr, "%s\n", n > 256 ? " ..." : "");
}

static int g_verbose = 1;

/* Applies p to x and checks the invariants of the file comment. extra_peak:
 * the bytes the call may allocate on top of what the doc held; ms: its time
 * bound (Release). Returns the result. */
static td_yjs_err apply_case(const char *name, xdoc *x, const uint8_t *p, size_t n,
                             unsigned allowed, size_t extra_peak, double ms)
{
    snap before, after;
    CHECK_MSG(take_snap(x->d, &before) == 0, "%s: cannot snapshot the doc", name);
    const char *cmsg = NULL;
    td_yjs_err ce = td_yjs_update_check(p, n, &cmsg);
    size_t live0 = x->c.live;
    x->c.peak = live0;
    double t0 = now_ms();
    td_yjs_err e = td_yjs_apply_update(x->d, p, n);
    double took = now_ms() - t0;
    size_t peak = x->c.peak - live0;
    if (g_verbose)
        printf("  %-44s %-8s %8.2f ms %8zu KB peak%s%s\n", name, td_yjs_strerror(e), took,
               peak / KB, e != TD_YJS_OK ? "  " : "", e != TD_YJS_OK ? td_yjs_doc_error(x->d) : "");
    int bad = 0;
    if (!(allowed & (1u << e))) {
        CHECK_MSG(0, "%s: result %s (%s) is not one of those allowed (mask 0x%x)", name,
                  td_yjs_strerror(e), td_yjs_doc_error(x->d), allowed);
        bad = 1;
    }
    if (took > ms * TIME_SCALE) {
        CHECK_MSG(0, "%s: took %.1f ms, bound %.1f ms", name, took, ms * TIME_SCALE);
        bad = 1;
    }
    if (peak > extra_peak) {
        CHECK_MSG(0, "%s: allocated %zu bytes at peak, bound %zu", name, peak, extra_peak);
        bad = 1;
    }
    if (ce != TD_YJS_OK && e == TD_YJS_OK) {
        CHECK_MSG(0, "%s: td_yjs_update_check rejects it (%s) but apply accepts it", name,
                  cmsg ? cmsg : "");
        bad = 1;
    }
    if (e == TD_YJS_OK) {
        CHECK_MSG(td_yjs_doc_error(x->d)[0] == 0, "%s: td_yjs_doc_error after success", name);
        if (take_snap(x->d, &after) != 0) {
            CHECK_MSG(0, "%s: cannot encode the doc after success", name);
            bad = 1;
        } else {
            if (!utf8_valid((const unsigned char *)after.json, after.jsonn)) {
                CHECK_MSG(0, "%s: td_yjs_to_json is not valid UTF-8", name);
                bad = 1;
            }
            xdoc f;
            xnew(&f, &x->o);
            td_yjs_err e2 = td_yjs_apply_update(f.d, after.enc, after.encn);
            if (e2 != TD_YJS_OK) {
                CHECK_MSG(0, "%s: the doc's own encoding does not apply: %s: %s", name,
                          td_yjs_strerror(e2), td_yjs_doc_error(f.d));
                bad = 1;
            } else {
                uint8_t *sv;
                size_t svn;
                if (td_yjs_encode_state_vector(f.d, &sv, &svn) == TD_YJS_OK) {
                    if (svn != after.svn || memcmp(sv, after.sv, svn)) {
                        CHECK_MSG(0, "%s: its own encoding loads to another state vector", name);
                        bad = 1;
                    }
                    td_yjs_buf_free(f.d, sv);
                }
            }
            xfree(&f);
            snap_free(x->d, &after);
        }
    } else {
        CHECK_MSG(td_yjs_doc_error(x->d)[0] != 0, "%s: error without td_yjs_doc_error", name);
        if (ce == TD_YJS_OK && e == TD_YJS_ERR_DECODE) {
            CHECK_MSG(0, "%s: td_yjs_update_check accepts it but apply says DECODE (%s)", name,
                      td_yjs_doc_error(x->d));
            bad = 1;
        }
        if (take_snap(x->d, &after) != 0) {
            CHECK_MSG(0, "%s: cannot encode the doc after an error", name);
            bad = 1;
        } else {
            const char *what = NULL;
            if (after.svn != before.svn || memcmp(after.sv, before.sv, after.svn))
                what = "state vector";
            else if (after.encn != before.encn || memcmp(after.enc, before.enc, after.encn))
                what = "encoded update";
            else if (after.jsonn != before.jsonn || memcmp(after.json, before.json, after.jsonn))
                what = "to_json";
            else if (after.st.structs != before.st.structs ||
                     after.st.pending_structs != before.st.pending_structs ||
                     after.st.pending_deletes != before.st.pending_deletes ||
                     after.st.clients != before.st.clients)
                what = "stats";
            if (what) {
                CHECK_MSG(0, "%s: the error %s changed the doc (%s)", name, td_yjs_strerror(e),
                          what);
                bad = 1;
            }
            snap_free(x->d, &after);
        }
    }
    if (bad)
        hexdump(p, n);
    snap_free(x->d, &before);
    return e;
}

/* The content doc: text "t" = "hello" (client 1), map "m" {k: 1} and array
 * "a" [{x: [1, 2]}] (client 2), as Yjs encodes it. */
static const char *CONTENT_HEX = "020202002801016d016b017d0108010161017601017875027d017d020101000401"
                                 "0174056865"
                                 "6c6c6f00";

static size_t unhex(const char *h, uint8_t *out)
{
    size_t n = 0;
    for (; h[0] && h[1]; h += 2) {
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (uint8_t)v;
    }
    return n;
}

static void content_doc(xdoc *x, const td_yjs_options *o)
{
    uint8_t buf[128];
    size_t n = unhex(CONTENT_HEX, buf);
    xnew(x, o);
    td_yjs_err e = td_yjs_apply_update(x->d, buf, n);
    CHECK_MSG(e == TD_YJS_OK, "the content doc: %s: %s", td_yjs_strerror(e), td_yjs_doc_error(x->d));
}

/* Runs the case on an empty doc and on the content doc. */
static void both(const char *name, const wbuf *b, unsigned allowed, size_t extra_peak, double ms)
{
    char nm[128];
    xdoc x;
    xnew(&x, NULL);
    snprintf(nm, sizeof nm, "%s [empty]", name);
    apply_case(nm, &x, b->p, b->n, allowed, extra_peak, ms);
    xfree(&x);
    content_doc(&x, NULL);
    snprintf(nm, sizeof nm, "%s [content]", name);
    apply_case(nm, &x, b->p, b->n, allowed, extra_peak, ms);
    xfree(&x);
}

/* ---- the cases ---- */

static void t_huge_counts(void)
{
    wbuf b = {0};
    /* 2^32 clients, then nothing. */
    w_var(&b, 1ULL << 32);
    both("2^32 clients, no data", &b, A_DECODE, 64 * KB, 50);
    w_free(&b);

    /* 2^32 structs claimed, one present. */
    w_var(&b, 1);
    w_hdr(&b, 1ULL << 32, 7, 0);
    w_str_root(&b, "t", "x");
    w_var(&b, 0);
    both("2^32 structs, one present", &b, A_DECODE, 64 * KB, 50);
    w_free(&b);

    /* 2^53 structs: past Number.MAX_SAFE_INTEGER. */
    w_var(&b, 1);
    w_hdr(&b, P53, 7, 0);
    w_str_root(&b, "t", "x");
    w_var(&b, 0);
    both("2^53 structs", &b, A_DECODE, 64 * KB, 50);
    w_free(&b);

    /* A string content of length 2^40. */
    w_var(&b, 1);
    w_hdr(&b, 1, 7, 0);
    w_u8(&b, 4);
    w_var(&b, 1);
    w_str(&b, "t");
    w_var(&b, 1ULL << 40);
    w_raw(&b, "abc", 3);
    w_var(&b, 0);
    both("string of length 2^40", &b, A_DECODE, 64 * KB, 50);
    w_free(&b);

    /* A root name of length 2^40. */
    w_var(&b, 1);
    w_hdr(&b, 1, 7, 0);
    w_u8(&b, 4);
    w_var(&b, 1);
    w_var(&b, 1ULL << 40);
    w_raw(&b, "t", 1);
    w_var(&b, 0);
    both("root name of length 2^40", &b, A_DECODE, 64 * KB, 50);
    w_free(&b);

    /* Binary content of 2^40 bytes. */
    w_var(&b, 1);
    w_hdr(&b, 1, 7, 0);
    w_u8(&b, 3);
    w_var(&b, 1);
    w_str(&b, "a");
    w_var(&b, 1ULL << 40);
    w_raw(&b, "\x01\x02", 2);
    w_var(&b, 0);
    both("binary of length 2^40", &b, A_DECODE, 64 * KB, 50);
    w_free(&b);

    /* Any content with 2^32 values; JSON content with 2^32 strings; Deleted 2^53. */
    static const struct {
        const char *name;
        uint8_t info;
        uint64_t count;
    } cnt[] = {{"Any count 2^32", 8, 1ULL << 32},
               {"JSON count 2^32", 2, 1ULL << 32},
               {"Deleted length 2^53", 1, P53}};
    for (size_t i = 0; i < sizeof cnt / sizeof cnt[0]; i++) {
        w_var(&b, 1);
        w_hdr(&b, 1, 7, 0);
        w_u8(&b, cnt[i].info);
        w_var(&b, 1);
        w_str(&b, "a");
        w_var(&b, cnt[i].count);
        if (cnt[i].info == 8)
            w_u8(&b, 126);
        else if (cnt[i].info == 2)
            w_str(&b, "null");
        w_var(&b, 0);
        both(cnt[i].name, &b, A_DECODE, 64 * KB, 50);
        w_free(&b);
    }

    /* Any values whose own counts lie: array 2^32, object 2^40, Uint8Array
     * 2^40, string 2^40. */
    static const struct {
        const char *name;
        uint8_t tag;
    } any[] = {{"Any array of 2^32", 117}, {"Any object of 2^40", 118},
               {"Any Uint8Array of 2^40", 116}, {"Any string of 2^40", 119}};
    for (size_t i = 0; i < sizeof any / sizeof any[0]; i++) {
        w_var(&b, 1);
        w_hdr(&b, 1, 7, 0);
        w_u8(&b, 8);
        w_var(&b, 1);
        w_str(&b, "a");
        w_var(&b, 1);
        w_u8(&b, any[i].tag);
        w_var(&b, any[i].tag == 117 ? 1ULL << 32 : 1ULL << 40);
        w_raw(&b, "\x7e\x7e\x7e", 3);
        w_var(&b, 0);
        both(any[i].name, &b, A_DECODE, 64 * KB, 50);
        w_free(&b);
    }

    /* Delete set: 2^32 clients; 2^32 ranges. */
    w_var(&b, 0);
    w_var(&b, 1ULL << 32);
    both("delete set of 2^32 clients", &b, A_DECODE, 64 * KB, 50);
    w_free(&b);
    w_var(&b, 0);
    w_var(&b, 1);
    w_var(&b, 1);
    w_var(&b, 1ULL << 32);
    w_var(&b, 0);
    w_var(&b, 1);
    both("delete set of 2^32 ranges", &b, A_DECODE, 64 * KB, 50);
    w_free(&b);

    /* Skip struct of length 2^53. */
    w_var(&b, 1);
    w_hdr(&b, 1, 7, 0);
    w_u8(&b, 10);
    w_var(&b, P53);
    w_var(&b, 0);
    both("Skip of length 2^53", &b, A_DECODE, 64 * KB, 50);
    w_free(&b);
}

static void t_varints(void)
{
    wbuf b = {0};
    /* 70 bits of ones. */
    for (int i = 0; i < 9; i++)
        w_u8(&b, 0xff);
    w_u8(&b, 0x7f);
    w_var(&b, 0);
    both("varint of 70 bits", &b, A_DECODE, 64 * KB, 50);
    w_free(&b);

    /* 100 continuation bytes, then 1. */
    for (int i = 0; i < 100; i++)
        w_u8(&b, 0x80);
    w_u8(&b, 0x01);
    w_var(&b, 0);
    both("varint of 101 bytes", &b, A_DECODE, 64 * KB, 50);
    w_free(&b);

    /* A varint cut off at the end. */
    w_u8(&b, 0x80);
    both("unterminated varint", &b, A_DECODE, 64 * KB, 50);
    w_free(&b);
    both("empty input", &b, A_DECODE, 64 * KB, 50);

    /* 0 written in two bytes (lib0 reads it as 0): accepted or refused. */
    w_u8(&b, 0x80);
    w_u8(&b, 0x00);
    w_u8(&b, 0x00);
    both("overlong zero (2 bytes)", &b, A_OK | A_DECODE, 64 * KB, 50);
    w_free(&b);

    /* Client id 2^53 (unsafe) and 2^53 - 1 (the largest lib0 reads). */
    w_var(&b, 1);
    w_hdr(&b, 1, P53, 0);
    w_str_root(&b, "t", "x");
    w_var(&b, 0);
    both("client 2^53", &b, A_DECODE, 64 * KB, 50);
    w_free(&b);
    w_var(&b, 1);
    w_hdr(&b, 1, P53 - 1, 0);
    w_str_root(&b, "t", "x");
    w_var(&b, 0);
    both("client 2^53-1", &b, A_OK, 64 * KB, 50);
    w_free(&b);

    /* A struct that would end past 2^53: refused, or parked (its clock is
     * not the client's state). */
    w_var(&b, 1);
    w_hdr(&b, 1, 9, P53 - 2);
    w_str_root(&b, "t", "abcd");
    w_var(&b, 0);
    both("clock 2^53-2 + 4", &b, A_OK | A_ERR, 64 * KB, 50);
    w_free(&b);

    /* Origin clock 2^53 (unsafe). */
    w_var(&b, 1);
    w_hdr(&b, 1, 9, 0);
    w_str_after(&b, 1, P53, "x");
    w_var(&b, 0);
    both("origin clock 2^53", &b, A_DECODE, 64 * KB, 50);
    w_free(&b);

    /* Delete range clock + len past 2^53. */
    w_var(&b, 0);
    w_var(&b, 1);
    w_var(&b, 1);
    w_var(&b, 1);
    w_var(&b, P53 - 1);
    w_var(&b, P53 - 1);
    both("delete range past 2^53", &b, A_OK | A_DECODE | A_INVALID, 64 * KB, 50);
    w_free(&b);
}

/* Content of one Any value nested `depth` deep (arrays or objects). */
static void w_deep_any(wbuf *b, size_t depth, int objects)
{
    for (size_t i = 0; i < depth; i++) {
        w_u8(b, objects ? 118 : 117);
        w_var(b, 1);
        if (objects)
            w_str(b, "k");
    }
    w_u8(b, 126);
}

static void t_deep_any(void)
{
    wbuf b = {0};
    for (int objects = 0; objects < 2; objects++) {
        char nm[96];
        /* 100,000 levels. */
        w_var(&b, 1);
        w_hdr(&b, 1, 7, 0);
        w_u8(&b, 8);
        w_var(&b, 1);
        w_str(&b, "a");
        w_var(&b, 1);
        w_deep_any(&b, 100000, objects);
        w_var(&b, 0);
        snprintf(nm, sizeof nm, "Any %s 100,000 deep", objects ? "objects" : "arrays");
        both(nm, &b, A_LIMIT, 1 * MB, 200);
        w_free(&b);

        /* 16 levels: well within the default 64. */
        w_var(&b, 1);
        w_hdr(&b, 1, 7, 0);
        w_u8(&b, 8);
        w_var(&b, 1);
        w_str(&b, "a");
        w_var(&b, 1);
        w_deep_any(&b, 16, objects);
        w_var(&b, 0);
        snprintf(nm, sizeof nm, "Any %s 16 deep", objects ? "objects" : "arrays");
        both(nm, &b, A_OK, 256 * KB, 50);
        w_free(&b);

        /* 100,000 levels, cut off: the depth is met first, or the end. */
        w_var(&b, 1);
        w_hdr(&b, 1, 7, 0);
        w_u8(&b, 8);
        w_var(&b, 1);
        w_str(&b, "a");
        w_var(&b, 1);
        for (size_t i = 0; i < 100000; i++) {
            w_u8(&b, objects ? 118 : 117);
            w_var(&b, 3);
            if (objects)
                w_str(&b, "k");
        }
        snprintf(nm, sizeof nm, "Any %s 100,000 deep, truncated", objects ? "objects" : "arrays");
        both(nm, &b, A_LIMIT | A_DECODE, 1 * MB, 200);
        w_free(&b);
    }

    /* A tight max_depth of 8: 12 levels is too deep. */
    {
        td_yjs_options o;
        memset(&o, 0, sizeof o);
        o.max_depth = 8;
        w_var(&b, 1);
        w_hdr(&b, 1, 7, 0);
        w_u8(&b, 8);
        w_var(&b, 1);
        w_str(&b, "a");
        w_var(&b, 1);
        w_deep_any(&b, 12, 0);
        w_var(&b, 0);
        xdoc x;
        xnew(&x, &o);
        apply_case("Any 12 deep, max_depth 8", &x, b.p, b.n, A_LIMIT, 64 * KB, 50);
        xfree(&x);
        w_free(&b);
    }

    /* JSON text nested 100,000 deep: Embed, Format value, JSON content,
     * and a Doc's options (Any). */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    for (size_t i = 0; i < depth; i++) {
        deep[i] = '[';
        deep[depth + i] = ']';
    }
    deep[2 * depth] = 0;
    static const struct {
        const char *name;
        uint8_t info;
    } js[] = {{"Embed JSON 100,000 deep", 5}, {"Format value 100,000 deep", 6},
              {"JSON content 100,000 deep", 2}, {"Doc options 100,000 deep", 9}};
    for (size_t i = 0; i < sizeof js / sizeof js[0]; i++) {
        w_var(&b, 1);
        w_hdr(&b, 1, 7, 0);
        w_u8(&b, js[i].info);
        w_var(&b, 1);
        w_str(&b, js[i].info == 9 ? "m" : "t");
        switch (js[i].info) {
        case 5:
            w_str(&b, deep);
            break;
        case 6:
            w_str(&b, "bold");
            w_str(&b, deep);
            break;
        case 2:
            w_var(&b, 1);
            w_str(&b, deep);
            break;
        default:
            w_str(&b, "guid-1");
            w_deep_any(&b, depth, 1);
            break;
        }
        w_var(&b, 0);
        both(js[i].name, &b, A_LIMIT | A_DECODE, 2 * MB, 200);
        w_free(&b);
    }
    free(deep);
}

/* n nested types in one update: struct 0 a root Array "r", struct i an
 * Array (or Map entry "k") inside struct i-1. */
static void w_type_chain(wbuf *b, size_t n, int maps)
{
    w_var(b, 1);
    w_hdr(b, n, 11, 0);
    for (size_t i = 0; i < n; i++) {
        if (i == 0) {
            w_u8(b, 7);
            w_var(b, 1);
            w_str(b, "r");
            w_var(b, maps ? 1 : 0);
        } else {
            w_u8(b, maps ? 0x27 : 7);
            w_var(b, 0);
            w_var(b, 11);
            w_var(b, i - 1);
            if (maps)
                w_str(b, "k");
            w_var(b, maps ? 1 : 0);
        }
    }
    w_var(b, 0);
}

static void t_deep_types(void)
{
    wbuf b = {0};
    /* 100,000 nested types: refused, or integrated with the part past
     * max_depth collected. Either way no recursion as deep as the input. */
    w_type_chain(&b, 100000, 0);
    both("Array in Array 100,000 deep", &b, A_OK | A_LIMIT, 64 * MB, 2000);
    w_free(&b);
    w_type_chain(&b, 100000, 1);
    both("Map in Map 100,000 deep", &b, A_OK | A_LIMIT, 64 * MB, 2000);
    w_free(&b);

    /* The same chain one update per level (2,000 levels). */
    xdoc x;
    xnew(&x, NULL);
    double t0 = now_ms();
    int limit = 0, fails = 0;
    for (size_t i = 0; i < 2000; i++) {
        w_var(&b, 1);
        w_hdr(&b, 1, 11, i);
        if (i == 0) {
            w_u8(&b, 7);
            w_var(&b, 1);
            w_str(&b, "r");
            w_var(&b, 0);
        } else {
            w_u8(&b, 7);
            w_var(&b, 0);
            w_var(&b, 11);
            w_var(&b, i - 1);
            w_var(&b, 0);
        }
        w_var(&b, 0);
        td_yjs_err e = td_yjs_apply_update(x.d, b.p, b.n);
        if (e == TD_YJS_ERR_LIMIT)
            limit++;
        else if (e != TD_YJS_OK)
            fails++;
        w_free(&b);
    }
    double took = now_ms() - t0;
    char *json;
    size_t jn;
    td_yjs_err e = td_yjs_to_json(x.d, 0, &json, &jn);
    CHECK_MSG(e == TD_YJS_OK, "to_json of the deep doc: %s", td_yjs_strerror(e));
    if (e == TD_YJS_OK)
        td_yjs_buf_free(x.d, json);
    printf("  %-44s %d ok, %d limit, %d other; %.1f ms\n", "Array in Array 2,000 deep, 1 per update",
           2000 - limit - fails, limit, fails, took);
    CHECK_MSG(fails == 0, "nesting one level per update: %d unexpected errors", fails);
    CHECK_MSG(took < 2000 * TIME_SCALE, "nesting one level per update took %.0f ms", took);
    xfree(&x);
}

/* An update of one struct: client c, clock 0, a string after (oc, ok). */
static void w_blocked(wbuf *b, uint64_t c, uint64_t oc, uint64_t ok, const char *s)
{
    w_var(b, 1);
    w_hdr(b, 1, c, 0);
    w_str_after(b, oc, ok, s);
    w_var(b, 0);
}

static void t_pending(void)
{
    td_yjs_options o;
    memset(&o, 0, sizeof o);
    o.max_pending_structs = 1000;
    o.max_pending_bytes = 256 * KB;
    wbuf b = {0};

    /* One update of 100,000 structs that all wait for (2, 0). */
    w_var(&b, 1);
    w_hdr(&b, 100000, 1, 0);
    w_str_after(&b, 2, 0, "x");
    for (size_t i = 1; i < 100000; i++)
        w_str_after(&b, 1, i - 1, "y");
    w_var(&b, 0);
    {
        xdoc x;
        xnew(&x, &o);
        apply_case("100,000 structs waiting, limit 1,000", &x, b.p, b.n, A_LIMIT, 32 * MB, 500);
        xfree(&x);
    }
    w_free(&b);

    /* 2,000 updates of one waiting struct each, from distinct clients. */
    {
        xdoc x;
        xnew(&x, &o);
        size_t okc = 0, limc = 0, other = 0, maxpend = 0;
        int after_limit_ok = 0;
        double t0 = now_ms();
        for (uint64_t c = 100; c < 2100; c++) {
            w_blocked(&b, c, 99, 0, "z");
            td_yjs_err e = td_yjs_apply_update(x.d, b.p, b.n);
            w_free(&b);
            td_yjs_stats st;
            td_yjs_doc_stats(x.d, &st);
            if (st.pending_structs > maxpend)
                maxpend = st.pending_structs;
            if (e == TD_YJS_OK) {
                okc++;
                if (limc)
                    after_limit_ok++;
            } else if (e == TD_YJS_ERR_LIMIT) {
                limc++;
            } else {
                other++;
            }
        }
        double took = now_ms() - t0;
        printf("  %-44s %zu ok, %zu limit, %zu other, max pending %zu, %.1f ms, %zu KB\n",
               "2,000 waiting structs, limit 1,000", okc, limc, other, maxpend, took,
               x.c.live / KB);
        CHECK_MSG(limc > 0 && other == 0, "pending structs past the limit: %zu limit, %zu other",
                  limc, other);
        CHECK_MSG(maxpend <= 1000, "pending_structs reached %zu (max 1,000)", maxpend);
        CHECK_MSG(okc >= 900, "only %zu of 2,000 waiting structs were parked", okc);
        CHECK_MSG(after_limit_ok == 0, "%d parked after the limit was reached", after_limit_ok);
        CHECK_MSG(x.c.live < 8 * MB, "a doc with 1,000 parked structs holds %zu bytes", x.c.live);
        CHECK_MSG(took < 1000 * TIME_SCALE, "parking 2,000 structs took %.0f ms", took);
        /* (99, 0) arrives: everything parked integrates. */
        w_var(&b, 1);
        w_hdr(&b, 1, 99, 0);
        w_str_root(&b, "t", "R");
        w_var(&b, 0);
        apply_case("the missing origin arrives", &x, b.p, b.n, A_OK, 8 * MB, 500);
        w_free(&b);
        td_yjs_stats st;
        td_yjs_doc_stats(x.d, &st);
        CHECK_MSG(st.pending_structs == 0, "%zu structs still pending after their origin came",
                  st.pending_structs);
        xfree(&x);
    }

    /* Bytes: waiting structs of 50,000 bytes each, max 256 KB. */
    {
        xdoc x;
        xnew(&x, &o);
        char *big = malloc(50001);
        memset(big, 'q', 50000);
        big[50000] = 0;
        size_t okc = 0, limc = 0, other = 0, maxbytes = 0;
        for (uint64_t c = 100; c < 140; c++) {
            w_blocked(&b, c, 99, 0, big);
            td_yjs_err e = td_yjs_apply_update(x.d, b.p, b.n);
            w_free(&b);
            td_yjs_stats st;
            td_yjs_doc_stats(x.d, &st);
            if (st.pending_bytes > maxbytes)
                maxbytes = st.pending_bytes;
            if (e == TD_YJS_OK)
                okc++;
            else if (e == TD_YJS_ERR_LIMIT)
                limc++;
            else
                other++;
        }
        free(big);
        printf("  %-44s %zu ok, %zu limit, %zu other, max pending %zu bytes, %zu KB held\n",
               "40 waiting 50 KB strings, limit 256 KB", okc, limc, other, maxbytes,
               x.c.live / KB);
        CHECK_MSG(limc > 0 && other == 0, "pending bytes past the limit: %zu limit, %zu other",
                  limc, other);
        CHECK_MSG(maxbytes <= 256 * KB, "pending_bytes reached %zu (max 256 KB)", maxbytes);
        CHECK_MSG(x.c.live < 2 * MB, "the doc holds %zu bytes with 256 KB pending", x.c.live);
        xfree(&x);
    }

    /* The default limits: 1,100,000 waiting structs in one update. */
    {
        size_t n = 1100000;
        w_var(&b, 1);
        w_hdr(&b, n, 1, 0);
        w_str_after(&b, 2, 0, "x");
        for (size_t i = 1; i < n; i++)
            w_str_after(&b, 1, i - 1, "y");
        w_var(&b, 0);
        xdoc x;
        xnew(&x, NULL);
        apply_case("1,100,000 structs waiting, default limit", &x, b.p, b.n, A_LIMIT, 512 * MB,
                   3000);
        xfree(&x);
        w_free(&b);
    }
}

static void t_pending_deletes(void)
{
    td_yjs_options o;
    memset(&o, 0, sizeof o);
    o.max_pending_structs = 10000;
    o.max_pending_bytes = 256 * KB;
    wbuf b = {0};
    xdoc x;
    xnew(&x, &o);
    size_t okc = 0, limc = 0, other = 0, maxdel = 0, maxlive = 0;
    double t0 = now_ms();
    /* 200 updates of 1,000 disjoint ranges each, for a client never seen. */
    for (int u = 0; u < 200; u++) {
        w_var(&b, 0);
        w_var(&b, 1);
        w_var(&b, 55);
        w_var(&b, 1000);
        for (int r = 0; r < 1000; r++) {
            w_var(&b, (uint64_t)(u * 1000 + r) * 3);
            w_var(&b, 1);
        }
        td_yjs_err e = td_yjs_apply_update(x.d, b.p, b.n);
        w_free(&b);
        td_yjs_stats st;
        td_yjs_doc_stats(x.d, &st);
        if (st.pending_deletes > maxdel)
            maxdel = st.pending_deletes;
        if (x.c.live > maxlive)
            maxlive = x.c.live;
        if (e == TD_YJS_OK)
            okc++;
        else if (e == TD_YJS_ERR_LIMIT)
            limc++;
        else
            other++;
    }
    double took = now_ms() - t0;
    printf("  %-44s %zu ok, %zu limit, %zu other, max %zu ranges, %zu KB max held, %.1f ms\n",
           "200 x 1,000 pending delete ranges", okc, limc, other, maxdel, maxlive / KB, took);
    CHECK_MSG(limc > 0 && other == 0, "pending deletes past the limits: %zu limit, %zu other",
              limc, other);
    CHECK_MSG(maxlive < 4 * MB, "a pending delete set held %zu bytes (limit 256 KB)", maxlive);
    CHECK_MSG(took < 2000 * TIME_SCALE, "pending deletes took %.0f ms", took);
    xfree(&x);

    /* One update with 300,000 ranges: over the limits at once. */
    xnew(&x, &o);
    w_var(&b, 0);
    w_var(&b, 1);
    w_var(&b, 55);
    w_var(&b, 300000);
    for (int r = 0; r < 300000; r++) {
        w_var(&b, (uint64_t)r * 3);
        w_var(&b, 1);
    }
    apply_case("300,000 pending delete ranges at once", &x, b.p, b.n, A_LIMIT, 32 * MB, 500);
    w_free(&b);
    xfree(&x);
}

static void t_duplicates(void)
{
    wbuf b = {0};
    /* The same client twice with the same struct. */
    w_var(&b, 2);
    w_hdr(&b, 1, 5, 0);
    w_str_root(&b, "t", "ab");
    w_hdr(&b, 1, 5, 0);
    w_str_root(&b, "t", "ab");
    w_var(&b, 0);
    both("client listed twice, same struct", &b, A_OK | A_DECODE | A_INVALID, 64 * KB, 50);
    w_free(&b);
    /* The same client twice with different structs at the same clock. */
    w_var(&b, 2);
    w_hdr(&b, 1, 5, 0);
    w_str_root(&b, "t", "ab");
    w_hdr(&b, 1, 5, 0);
    w_str_root(&b, "u", "xyz");
    w_var(&b, 0);
    both("client listed twice, conflicting", &b, A_OK | A_DECODE | A_INVALID, 64 * KB, 50);
    w_free(&b);
    /* 10,000 entries of one client. */
    w_var(&b, 10000);
    for (int i = 0; i < 10000; i++) {
        w_hdr(&b, 1, 5, (uint64_t)i);
        w_str_root(&b, "t", "a");
    }
    w_var(&b, 0);
    both("client listed 10,000 times", &b, A_OK | A_DECODE | A_INVALID, 16 * MB, 500);
    w_free(&b);
    /* A delete set naming client 1 twice (the content doc's text). */
    w_var(&b, 0);
    w_var(&b, 2);
    w_var(&b, 1);
    w_var(&b, 1);
    w_var(&b, 0);
    w_var(&b, 2);
    w_var(&b, 1);
    w_var(&b, 1);
    w_var(&b, 1);
    w_var(&b, 2);
    both("delete set naming a client twice", &b, A_OK, 64 * KB, 50);
    w_free(&b);
}

static void t_trailing(void)
{
    wbuf b = {0};
    w_var(&b, 1);
    w_hdr(&b, 1, 5, 0);
    w_str_root(&b, "t", "ab");
    w_var(&b, 0);
    both("valid update", &b, A_OK, 64 * KB, 50);
    w_raw(&b, "\x00\x01\xff", 3);
    /* lib0 ignores what follows the delete set; a stricter reader refuses. */
    both("valid update + 3 trailing bytes", &b, A_OK | A_DECODE, 64 * KB, 50);
    w_free(&b);
}

static void t_utf8(void)
{
    static const struct {
        const char *name;
        const char *bytes;
    } bad[] = {{"0xff", "a\xff"},
               {"overlong NUL", "a\xc0\x80"},
               {"CESU surrogate", "\xed\xa0\x80"},
               {"truncated sequence", "ab\xe6\x97"},
               {"past U+10FFFF", "\xf4\x90\x80\x80"}};
    wbuf b = {0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char nm[96];
        /* In string content. */
        w_var(&b, 1);
        w_hdr(&b, 1, 5, 0);
        w_str_root(&b, "t", bad[i].bytes);
        w_var(&b, 0);
        snprintf(nm, sizeof nm, "string content: %s", bad[i].name);
        both(nm, &b, A_OK | A_DECODE, 64 * KB, 50);
        w_free(&b);
        /* In a root name. */
        w_var(&b, 1);
        w_hdr(&b, 1, 5, 0);
        w_str_root(&b, bad[i].bytes, "x");
        w_var(&b, 0);
        snprintf(nm, sizeof nm, "root name: %s", bad[i].name);
        both(nm, &b, A_OK | A_DECODE, 64 * KB, 50);
        w_free(&b);
        /* In a map key (parentSub). */
        w_var(&b, 1);
        w_hdr(&b, 1, 5, 0);
        w_u8(&b, 0x28);
        w_var(&b, 1);
        w_str(&b, "m");
        w_str(&b, bad[i].bytes);
        w_var(&b, 1);
        w_u8(&b, 120);
        w_var(&b, 0);
        snprintf(nm, sizeof nm, "map key: %s", bad[i].name);
        both(nm, &b, A_OK | A_DECODE, 64 * KB, 50);
        w_free(&b);
        /* In an Any string and an Any object key. */
        w_var(&b, 1);
        w_hdr(&b, 1, 5, 0);
        w_u8(&b, 8);
        w_var(&b, 1);
        w_str(&b, "a");
        w_var(&b, 2);
        w_u8(&b, 119);
        w_str(&b, bad[i].bytes);
        w_u8(&b, 118);
        w_var(&b, 1);
        w_str(&b, bad[i].bytes);
        w_u8(&b, 126);
        w_var(&b, 0);
        snprintf(nm, sizeof nm, "Any string and key: %s", bad[i].name);
        both(nm, &b, A_OK | A_DECODE, 64 * KB, 50);
        w_free(&b);
        /* An XML element name. */
        w_var(&b, 1);
        w_hdr(&b, 1, 5, 0);
        w_u8(&b, 7);
        w_var(&b, 1);
        w_str(&b, "x");
        w_var(&b, 3);
        w_str(&b, bad[i].bytes);
        w_var(&b, 0);
        snprintf(nm, sizeof nm, "XML element name: %s", bad[i].name);
        both(nm, &b, A_OK | A_DECODE, 64 * KB, 50);
        w_free(&b);
    }
}

static void t_self_refs(void)
{
    wbuf b = {0};
    /* Origin is the item itself. */
    w_var(&b, 1);
    w_hdr(&b, 1, 5, 0);
    w_str_after(&b, 5, 0, "x");
    w_var(&b, 0);
    both("origin = own id", &b, A_OK | A_DECODE | A_INVALID, 64 * KB, 50);
    w_free(&b);
    /* Origin is the client's own future. */
    w_var(&b, 1);
    w_hdr(&b, 1, 5, 0);
    w_str_after(&b, 5, 7, "x");
    w_var(&b, 0);
    both("origin = own future clock", &b, A_OK | A_DECODE | A_INVALID, 64 * KB, 50);
    w_free(&b);
    /* Right origin is the item itself (the 3rd char of its own run). */
    w_var(&b, 1);
    w_hdr(&b, 1, 5, 0);
    w_u8(&b, 0x44);
    w_var(&b, 5);
    w_var(&b, 2);
    w_str(&b, "abcd");
    w_var(&b, 0);
    both("right origin inside own run", &b, A_OK | A_DECODE | A_INVALID, 64 * KB, 50);
    w_free(&b);
    /* Parent is the item itself, then its own future. */
    for (int fut = 0; fut < 2; fut++) {
        w_var(&b, 1);
        w_hdr(&b, 1, 5, 0);
        w_u8(&b, 7);
        w_var(&b, 0);
        w_var(&b, 5);
        w_var(&b, fut ? 9 : 0);
        w_var(&b, 0);
        w_var(&b, 0);
        both(fut ? "parent = own future clock" : "parent = own id", &b, A_OK | A_DECODE | A_INVALID, 64 * KB,
             50);
        w_free(&b);
    }
    /* Two clients waiting for each other. */
    w_var(&b, 2);
    w_hdr(&b, 1, 5, 0);
    w_str_after(&b, 6, 0, "a");
    w_hdr(&b, 1, 6, 0);
    w_str_after(&b, 5, 0, "b");
    w_var(&b, 0);
    both("two clients waiting for each other", &b, A_OK | A_DECODE | A_INVALID, 64 * KB, 50);
    w_free(&b);
    /* Parent is a string item (not a type). */
    w_var(&b, 1);
    w_hdr(&b, 2, 5, 0);
    w_str_root(&b, "t", "s");
    w_u8(&b, 4);
    w_var(&b, 0);
    w_var(&b, 5);
    w_var(&b, 0);
    w_str(&b, "child");
    w_var(&b, 0);
    both("parent is a string item", &b, A_OK | A_DECODE | A_INVALID, 64 * KB, 50);
    w_free(&b);
    /* Origin in another root than the parent named... an origin'd item
     * whose origin is a map entry (parentSub items have no sequence). */
    w_var(&b, 1);
    w_hdr(&b, 2, 5, 0);
    w_u8(&b, 0x28);
    w_var(&b, 1);
    w_str(&b, "m");
    w_str(&b, "k");
    w_var(&b, 1);
    w_u8(&b, 120);
    w_str_after(&b, 5, 0, "seq after a map entry");
    w_var(&b, 0);
    both("sequence item after a map entry", &b, A_OK | A_DECODE | A_INVALID, 64 * KB, 50);
    w_free(&b);

    /* The doc stays usable after all that. */
    xdoc x;
    content_doc(&x, NULL);
    w_var(&b, 1);
    w_hdr(&b, 1, 5, 0);
    w_str_after(&b, 5, 0, "x");
    w_var(&b, 0);
    apply_case("origin = own id, on content", &x, b.p, b.n, A_OK | A_DECODE | A_INVALID, 64 * KB, 50);
    w_free(&b);
    w_var(&b, 1);
    w_hdr(&b, 1, 1, 5);
    w_str_after(&b, 1, 4, " world");
    w_var(&b, 0);
    apply_case("then a valid append", &x, b.p, b.n, A_OK, 64 * KB, 50);
    w_free(&b);
    char *json;
    size_t jn;
    if (td_yjs_to_json(x.d, 0, &json, &jn) == TD_YJS_OK) {
        CHECK_MSG(strstr(json, "hello world") != NULL, "the append is missing: %s", json);
        td_yjs_buf_free(x.d, json);
    }
    xfree(&x);
}

static void t_chains(void)
{
    wbuf b = {0};
    /* 100,000 clients in one update, client i after client i-1's item:
     * each waits for the next lower client. */
    size_t n = 100000;
    w_var(&b, n);
    for (size_t i = 1; i <= n; i++) {
        w_hdr(&b, 1, i, 0);
        if (i == 1)
            w_str_root(&b, "t", "a");
        else
            w_str_after(&b, i - 1, 0, "a");
    }
    w_var(&b, 0);
    {
        xdoc x;
        xnew(&x, NULL);
        td_yjs_err e = apply_case("origin chain over 100,000 clients", &x, b.p, b.n, A_OK,
                                  128 * MB, 2000);
        if (e == TD_YJS_OK) {
            td_yjs_stats st;
            td_yjs_doc_stats(x.d, &st);
            CHECK_MSG(st.pending_structs == 0 && st.clients == n,
                      "chain: %zu clients, %zu pending", st.clients, st.pending_structs);
        }
        xfree(&x);
    }
    w_free(&b);

    /* The same over rightOrigins, reversed. */
    w_var(&b, n);
    for (size_t i = 1; i <= n; i++) {
        w_hdr(&b, 1, i, 0);
        if (i == 1) {
            w_str_root(&b, "t", "a");
        } else {
            w_u8(&b, 0x44);
            w_var(&b, i - 1);
            w_var(&b, 0);
            w_str(&b, "b");
        }
    }
    w_var(&b, 0);
    {
        xdoc x;
        xnew(&x, NULL);
        apply_case("rightOrigin chain over 100,000 clients", &x, b.p, b.n, A_OK, 128 * MB, 2000);
        xfree(&x);
    }
    w_free(&b);

    /* 5,000 updates arriving in reverse order: every one waits until the
     * last (the root) comes. */
    {
        size_t m = 5000;
        xdoc x;
        xnew(&x, NULL);
        double t0 = now_ms();
        int bad = 0;
        for (size_t i = m; i >= 1; i--) {
            if (i == 1) {
                w_var(&b, 1);
                w_hdr(&b, 1, 1, 0);
                w_str_root(&b, "t", "a");
                w_var(&b, 0);
            } else {
                w_blocked(&b, i, i - 1, 0, "a");
            }
            if (td_yjs_apply_update(x.d, b.p, b.n) != TD_YJS_OK)
                bad++;
            w_free(&b);
        }
        double took = now_ms() - t0;
        td_yjs_stats st;
        td_yjs_doc_stats(x.d, &st);
        printf("  %-44s %d errors, %zu pending after, %.1f ms\n", "5,000 updates in reverse order",
               bad, st.pending_structs, took);
        CHECK_MSG(bad == 0 && st.pending_structs == 0,
                  "reverse order: %d errors, %zu pending", bad, st.pending_structs);
        CHECK_MSG(took < 3000 * TIME_SCALE, "reverse order took %.0f ms", took);
        xfree(&x);
    }
}

static void t_huge_ranges(void)
{
    wbuf b = {0};
    xdoc x;
    content_doc(&x, NULL);
    /* A GC run of 2^52 clocks for a new client: Yjs takes it. */
    w_var(&b, 1);
    w_hdr(&b, 1, 77, 0);
    w_u8(&b, 0);
    w_var(&b, 1ULL << 52);
    w_var(&b, 0);
    apply_case("GC of 2^52 clocks", &x, b.p, b.n, A_OK, 64 * KB, 50);
    w_free(&b);
    /* Then an item at clock 2^52. */
    w_var(&b, 1);
    w_hdr(&b, 1, 77, 1ULL << 52);
    w_str_root(&b, "t", "!");
    w_var(&b, 0);
    apply_case("an item after it", &x, b.p, b.n, A_OK, 64 * KB, 50);
    w_free(&b);
    /* Delete [0, 2^53 - 1) of clients 1, 2 and 77. */
    w_var(&b, 0);
    w_var(&b, 3);
    uint64_t cl[3] = {1, 2, 77};
    for (int i = 0; i < 3; i++) {
        w_var(&b, cl[i]);
        w_var(&b, 1);
        w_var(&b, 0);
        w_var(&b, P53 - 1);
    }
    apply_case("delete [0, 2^53-1) of three clients", &x, b.p, b.n, A_OK, 1 * MB, 50);
    w_free(&b);
    xfree(&x);

    /* A Skip of 2^50, then an item: the item waits for the gap. */
    w_var(&b, 1);
    w_hdr(&b, 2, 78, 0);
    w_u8(&b, 10);
    w_var(&b, 1ULL << 50);
    w_str_root(&b, "t", "late");
    w_var(&b, 0);
    both("Skip of 2^50, then an item", &b, A_OK, 64 * KB, 50);
    w_free(&b);

    /* A Deleted content of 2^52 clocks. */
    w_var(&b, 1);
    w_hdr(&b, 1, 79, 0);
    w_u8(&b, 1);
    w_var(&b, 1);
    w_str(&b, "t");
    w_var(&b, 1ULL << 52);
    w_var(&b, 0);
    both("Deleted content of 2^52", &b, A_OK | A_LIMIT | A_INVALID, 64 * KB, 50);
    w_free(&b);
}

static void t_bad_refs(void)
{
    wbuf b = {0};
    /* Content refs 11..31 do not exist. */
    for (uint8_t ref = 11; ref < 32; ref += 5) {
        char nm[64];
        w_var(&b, 1);
        w_hdr(&b, 1, 5, 0);
        w_u8(&b, ref);
        w_var(&b, 1);
        w_str(&b, "t");
        w_str(&b, "x");
        w_var(&b, 0);
        snprintf(nm, sizeof nm, "content ref %u", ref);
        both(nm, &b, A_DECODE, 64 * KB, 50);
        w_free(&b);
    }
    /* Type ref 7 does not exist. */
    w_var(&b, 1);
    w_hdr(&b, 1, 5, 0);
    w_u8(&b, 7);
    w_var(&b, 1);
    w_str(&b, "t");
    w_var(&b, 7);
    w_var(&b, 0);
    both("type ref 7", &b, A_DECODE, 64 * KB, 50);
    w_free(&b);
    /* Embed and Format values that are not JSON. */
    w_var(&b, 1);
    w_hdr(&b, 1, 5, 0);
    w_u8(&b, 5);
    w_var(&b, 1);
    w_str(&b, "t");
    w_str(&b, "{\"a\":");
    w_var(&b, 0);
    both("Embed of invalid JSON", &b, A_DECODE, 64 * KB, 50);
    w_free(&b);
    w_var(&b, 1);
    w_hdr(&b, 1, 5, 0);
    w_u8(&b, 6);
    w_var(&b, 1);
    w_str(&b, "t");
    w_str(&b, "bold");
    w_str(&b, "tru");
    w_var(&b, 0);
    both("Format of invalid JSON", &b, A_DECODE, 64 * KB, 50);
    w_free(&b);
    /* Any tags that do not exist (lib0: 116..127 only). */
    uint8_t tags[] = {0, 1, 100, 115, 128, 255};
    for (size_t i = 0; i < sizeof tags; i++) {
        char nm[64];
        w_var(&b, 1);
        w_hdr(&b, 1, 5, 0);
        w_u8(&b, 8);
        w_var(&b, 1);
        w_str(&b, "a");
        w_var(&b, 1);
        w_u8(&b, tags[i]);
        w_var(&b, 0);
        snprintf(nm, sizeof nm, "Any tag %u", tags[i]);
        both(nm, &b, A_DECODE, 64 * KB, 50);
        w_free(&b);
    }
    /* Legacy JSON content (ref 2): Yjs still reads it. */
    w_var(&b, 1);
    w_hdr(&b, 1, 5, 0);
    w_u8(&b, 2);
    w_var(&b, 1);
    w_str(&b, "a");
    w_var(&b, 3);
    w_str(&b, "{\"a\":1}");
    w_str(&b, "[1,2]");
    w_str(&b, "undefined");
    w_var(&b, 0);
    both("legacy JSON content", &b, A_OK, 64 * KB, 50);
    w_free(&b);
    /* A length-0 string item (Yjs never writes one). */
    w_var(&b, 1);
    w_hdr(&b, 1, 5, 0);
    w_str_root(&b, "t", "");
    w_var(&b, 0);
    both("empty string item", &b, A_OK | A_DECODE | A_INVALID, 64 * KB, 50);
    w_free(&b);
    /* A zero-length GC and a zero-length delete range. */
    w_var(&b, 1);
    w_hdr(&b, 1, 5, 0);
    w_u8(&b, 0);
    w_var(&b, 0);
    w_var(&b, 0);
    both("GC of length 0", &b, A_OK | A_DECODE | A_INVALID, 64 * KB, 50);
    w_free(&b);
    w_var(&b, 0);
    w_var(&b, 1);
    w_var(&b, 1);
    w_var(&b, 1);
    w_var(&b, 0);
    w_var(&b, 0);
    both("delete range of length 0", &b, A_OK | A_DECODE | A_INVALID, 64 * KB, 50);
    w_free(&b);
}

/* A struct that overlaps what is integrated continues after its own earlier
 * clocks (Item.integrate with an offset). Here its origin says "after the
 * map value m.k" but its first clock is a text item inside arr[0]: linked
 * into the text while the map kept pointing at it, it was freed when arr[0]
 * was deleted and collected (its GC merged into the one before), and the map
 * read freed memory. The item must follow its left (the text). */
static void t_overlap_other_parent(void)
{
    /* Yjs: arr = [Y.Text], m.k = "x" by client 1; client 2 types "a" */
    static const char *BASE = "02010200040001000161020100070103617272022801016d016b0177017800";
    static const char *DEL = "00020201000101010001"; /* then arr.delete(0) */
    uint8_t base[64], del[16];
    size_t bn = unhex(BASE, base), dn = unhex(DEL, del);
    xdoc x;
    xnew(&x, NULL);
    CHECK(td_yjs_apply_update(x.d, base, bn) == TD_YJS_OK);
    wbuf b = {0};
    w_var(&b, 1);
    w_hdr(&b, 1, 2, 0);
    w_str_after(&b, 1, 1, "ab"); /* clock 0 is known: only "b" is new */
    w_var(&b, 0);
    apply_case("overlap resolved under another parent", &x, b.p, b.n, A_OK | A_DECODE | A_INVALID,
               64 * KB, 50);
    apply_case("its left's parent deleted and collected", &x, del, dn, A_OK, 64 * KB, 50);
    char *j = NULL;
    size_t jn = 0;
    CHECK(td_yjs_to_json(x.d, 0, &j, &jn) == TD_YJS_OK);
    CHECK_MSG(j && strcmp(j, "{\"m\":{\"k\":\"x\"}}") == 0, "to_json: %.*s", (int)jn, j ? j : "");
    td_yjs_buf_free(x.d, j);
    xfree(&x);
    w_free(&b);
}

static void t_many_clients(void)
{
    wbuf b = {0};
    size_t n = 200000;
    w_var(&b, n);
    for (size_t i = 0; i < n; i++) {
        w_hdr(&b, 1, 1000 + i * 7919, 0);
        w_u8(&b, 0);
        w_var(&b, 1);
    }
    w_var(&b, 0);
    xdoc x;
    xnew(&x, NULL);
    apply_case("200,000 clients of one GC each", &x, b.p, b.n, A_OK, 128 * MB, 2000);
    td_yjs_stats st;
    td_yjs_doc_stats(x.d, &st);
    printf("  %-44s %zu bytes held, %.0f a client\n", "", x.c.live,
           (double)x.c.live / (double)n);
    CHECK_MSG(st.clients == n, "%zu clients, expected %zu", st.clients, n);
    CHECK_MSG(x.c.live < n * 512, "%zu bytes for %zu clients", x.c.live, n);
    xfree(&x);
    w_free(&b);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    td_check_run("huge counts and lengths", t_huge_counts);
    td_check_run("varints", t_varints);
    td_check_run("deep Any and JSON", t_deep_any);
    td_check_run("deep types", t_deep_types);
    td_check_run("pending set bounds", t_pending);
    td_check_run("pending delete set", t_pending_deletes);
    td_check_run("duplicate clients", t_duplicates);
    td_check_run("trailing bytes", t_trailing);
    td_check_run("invalid UTF-8", t_utf8);
    td_check_run("self references", t_self_refs);
    td_check_run("dependency chains", t_chains);
    td_check_run("huge clock ranges", t_huge_ranges);
    td_check_run("bad refs and tags", t_bad_refs);
    td_check_run("many clients", t_many_clients);
    td_check_run("overlap under another parent", t_overlap_other_parent);
    return td_check_status("test_yjs_hostile");
}
