/*
 * test_yjs_robust.c -- the test yjs_robust: the C Yjs model
 * (crdt/yjs/tandem_yjs.h) against valid and mutated Yjs v1 updates.
 *
 *   test_yjs_robust CORPUS_DIR [--variants N] [--seed S]
 *
 * CORPUS_DIR is written by tests/yjs/gen_corpus.mjs (the npm yjs package;
 * its file names are explained there). First every valid update must
 * apply: each scenario's updates in order (no pending left, state vector
 * byte-equal to Yjs's), each file alone into an empty doc, all of a
 * scenario's files in a random order (the pending set must resolve to the
 * same state vector), and the final doc's own encoding must load back.
 *
 * Then N variants (default 500,000): a corpus update mutated (bit flips,
 * bytes set to 0x00/0x7f/0x80/0xff/lib0 tags, truncation, inserted and
 * deleted bytes, oversized varints, duplicated chunks, off-by-one bytes,
 * splices of two updates; 1-3 of these) and applied to a document holding
 * a prefix of a scenario's valid updates, built with default, tight (small
 * pending limits and depth) or no_gc options. Each result must be
 *   - an error (DECODE, INVALID or LIMIT; NOMEM only when injected) with
 *     the document unchanged: state vector bytes, the whole encoded update,
 *     td_yjs_to_json and the struct/pending counts as before, and a
 *     non-empty td_yjs_doc_error; or
 *   - success, after which the document must be self-consistent: its
 *     encoding applies to an empty doc with the same options, giving the
 *     same state vector;
 * and td_yjs_update_check must not accept what td_yjs_apply_update rejects
 * as malformed, nor reject what it accepts. About 1 variant in 50 instead
 * applies a valid update with the allocation hook failing after a random
 * number of allocations: the result must be OK, or NOMEM with the document
 * unchanged. All allocation goes through a counting hook: every freed doc
 * must leave zero bytes behind, and td_yjs_doc_stats().bytes must match
 * the hook's count.
 *
 * The seed is random unless given; it is printed with the command that
 * replays the run.
 */
#define _POSIX_C_SOURCE 200809L

#include "tandem_yjs.h"
#include "td_check.h"
#include "td_rng.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- counting allocation hook ---- */

typedef struct counter {
    size_t live, peak, calls;
    long fail_in; /* > 0: the fail_in-th allocation from now returns NULL */
    int failed;
} counter;

#define HDR 16

static void *hook(void *ud, void *ptr, size_t size)
{
    counter *c = ud;
    if (size == 0) {
        if (ptr) {
            uint8_t *base = (uint8_t *)ptr - HDR;
            size_t old;
            memcpy(&old, base, sizeof old);
            c->live -= old;
            free(base);
        }
        return NULL;
    }
    c->calls++;
    if (c->fail_in > 0 && --c->fail_in == 0) {
        c->failed = 1;
        return NULL;
    }
    if (size > SIZE_MAX - HDR)
        return NULL;
    size_t old = 0;
    uint8_t *base = NULL;
    if (ptr) {
        base = (uint8_t *)ptr - HDR;
        memcpy(&old, base, sizeof old);
    }
    uint8_t *nb = realloc(base, size + HDR);
    if (!nb)
        return NULL;
    memcpy(nb, &size, sizeof size);
    c->live = c->live - old + size;
    if (c->live > c->peak)
        c->peak = c->live;
    return nb + HDR;
}

/* ---- corpus ---- */

typedef struct blob {
    uint8_t *p;
    size_t n;
    char name[64];
} blob;

typedef struct blobs {
    blob *v;
    size_t n, cap;
} blobs;

typedef struct scen {
    blobs u; /* local updates in causal order */
    blobs x; /* diffs, merges, whole-doc updates */
    blob *final;
    blob sv;
} scen;

#define MAX_SCEN 64
static scen g_sc[MAX_SCEN];
static int g_nsc;
static blob **g_all; /* every update of every scenario */
static size_t g_nall;
static size_t g_maxlen;

static int read_file(const char *path, blob *b)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 4096;
    b->p = malloc(cap);
    b->n = 0;
    size_t got;
    while (b->p && (got = fread(b->p + b->n, 1, cap - b->n, f)) > 0) {
        b->n += got;
        if (b->n == cap)
            b->p = realloc(b->p, cap *= 2);
    }
    fclose(f);
    return b->p ? 0 : -1;
}

static int cmp_blob(const void *a, const void *b)
{
    return strcmp(((const blob *)a)->name, ((const blob *)b)->name);
}

static void push(blobs *bs, blob b)
{
    if (bs->n == bs->cap) {
        bs->cap = bs->cap ? bs->cap * 2 : 64;
        bs->v = realloc(bs->v, bs->cap * sizeof *bs->v);
        if (!bs->v) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
    }
    bs->v[bs->n++] = b;
}

static int load_corpus(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int s, idx;
        char kind;
        char path[4096];
        if (strlen(de->d_name) >= sizeof(((blob *)0)->name))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        blob b;
        memset(&b, 0, sizeof b);
        memcpy(b.name, de->d_name, strlen(de->d_name) + 1); /* length checked above */
        if (sscanf(de->d_name, "s%d-sv.bi%c", &s, &kind) == 2 && s >= 0 && s < MAX_SCEN) {
            if (read_file(path, &b) != 0)
                return -1;
            g_sc[s].sv = b;
        } else if (sscanf(de->d_name, "s%d-%c-%d.bin", &s, &kind, &idx) == 3 && s >= 0 &&
                   s < MAX_SCEN && strchr("udmf", kind)) {
            if (read_file(path, &b) != 0)
                return -1;
            push(kind == 'u' ? &g_sc[s].u : &g_sc[s].x, b);
        } else {
            continue;
        }
        if (s + 1 > g_nsc)
            g_nsc = s + 1;
    }
    closedir(d);
    size_t total = 0;
    for (int s = 0; s < g_nsc; s++) {
        scen *sc = &g_sc[s];
        if (sc->u.n)
            qsort(sc->u.v, sc->u.n, sizeof *sc->u.v, cmp_blob);
        if (sc->x.n)
            qsort(sc->x.v, sc->x.n, sizeof *sc->x.v, cmp_blob);
        for (size_t i = 0; i < sc->x.n; i++)
            if (strstr(sc->x.v[i].name, "-f-99999.bin"))
                sc->final = &sc->x.v[i];
        if (!sc->u.n || !sc->final || !sc->sv.p) {
            fprintf(stderr, "%s: scenario %d is incomplete (u files, f-99999, sv)\n", dir, s);
            return -1;
        }
        total += sc->u.n + sc->x.n;
    }
    if (!g_nsc) {
        fprintf(stderr, "%s: no corpus files (run gen_corpus.mjs)\n", dir);
        return -1;
    }
    g_all = malloc(total * sizeof *g_all);
    for (int s = 0; s < g_nsc; s++) {
        for (size_t i = 0; i < g_sc[s].u.n; i++)
            g_all[g_nall++] = &g_sc[s].u.v[i];
        for (size_t i = 0; i < g_sc[s].x.n; i++)
            g_all[g_nall++] = &g_sc[s].x.v[i];
    }
    for (size_t i = 0; i < g_nall; i++)
        if (g_all[i]->n > g_maxlen)
            g_maxlen = g_all[i]->n;
    return 0;
}

/* ---- documents and their observable state ---- */

typedef struct snap {
    uint8_t *sv, *enc;
    size_t svn, encn;
    char *json;
    size_t jsonn;
    td_yjs_stats st;
} snap;

static void snap_free(snap *s)
{
    free(s->sv);
    free(s->enc);
    free(s->json);
    memset(s, 0, sizeof *s);
}

static void *dup_out(td_yjs_doc *doc, void *p, size_t n)
{
    void *c = malloc(n + 1);
    if (!c) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memcpy(c, p, n);
    ((char *)c)[n] = 0;
    td_yjs_buf_free(doc, p);
    return c;
}

/* 0 on success; the outputs are copied to plain malloc memory. */
static int take_snap(td_yjs_doc *doc, snap *s)
{
    uint8_t *p;
    char *j;
    size_t n;
    memset(s, 0, sizeof *s);
    if (td_yjs_encode_state_vector(doc, &p, &n) != TD_YJS_OK)
        return -1;
    s->sv = dup_out(doc, p, n);
    s->svn = n;
    if (td_yjs_encode_state_as_update(doc, NULL, 0, &p, &n) != TD_YJS_OK)
        return -1;
    s->enc = dup_out(doc, p, n);
    s->encn = n;
    if (td_yjs_to_json(doc, 0, &j, &n) != TD_YJS_OK)
        return -1;
    s->json = dup_out(doc, j, n);
    s->jsonn = n;
    td_yjs_doc_stats(doc, &s->st);
    return 0;
}

/* What differs, or NULL. */
static const char *snap_diff(const snap *a, const snap *b)
{
    if (a->svn != b->svn || memcmp(a->sv, b->sv, a->svn))
        return "state vector";
    if (a->encn != b->encn || memcmp(a->enc, b->enc, a->encn))
        return "encoded update";
    if (a->jsonn != b->jsonn || memcmp(a->json, b->json, a->jsonn))
        return "to_json";
    if (a->st.clients != b->st.clients || a->st.structs != b->st.structs ||
        a->st.pending_structs != b->st.pending_structs ||
        a->st.pending_deletes != b->st.pending_deletes ||
        a->st.pending_bytes != b->st.pending_bytes)
        return "stats";
    return NULL;
}

typedef struct xdoc {
    td_yjs_doc *d;
    counter c;
    td_yjs_options o;
} xdoc;

static int xdoc_new(xdoc *x, const td_yjs_options *o)
{
    memset(&x->c, 0, sizeof x->c);
    x->o = *o;
    x->o.alloc = hook;
    x->o.alloc_ud = &x->c;
    x->d = NULL;
    return td_yjs_doc_new(&x->o, &x->d) == TD_YJS_OK ? 0 : -1;
}

static void xdoc_free(xdoc *x, const char *what)
{
    if (!x->d)
        return;
    td_yjs_doc_free(x->d);
    x->d = NULL;
    CHECK_MSG(x->c.live == 0, "%s: td_yjs_doc_free left %zu bytes allocated through the hook",
              what, x->c.live);
}

/* Reads the next varuint of an encoded state vector (trusted: the model's). */
static uint64_t sv_uint(const uint8_t **p, const uint8_t *end)
{
    uint64_t v = 0;
    unsigned shift = 0;
    while (*p < end) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80))
            break;
    }
    return v;
}

/* Every client of state vector b has at least its clock in a. */
static int sv_at_least(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    const uint8_t *pb = b, *eb = b + bn;
    uint64_t nb = sv_uint(&pb, eb);
    for (uint64_t i = 0; i < nb; i++) {
        uint64_t client = sv_uint(&pb, eb), clock = sv_uint(&pb, eb), have = 0;
        const uint8_t *pa = a, *ea = a + an;
        uint64_t na = sv_uint(&pa, ea);
        for (uint64_t k = 0; k < na; k++) {
            uint64_t c = sv_uint(&pa, ea), v = sv_uint(&pa, ea);
            if (c == client)
                have = v;
        }
        if (have < clock)
            return 0;
    }
    return 1;
}

static void hexdump(const char *label, const uint8_t *p, size_t n)
{
    fprintf(stderr, "%s (%zu bytes):", label, n);
    for (size_t i = 0; i < n && i < 4096; i++)
        fprintf(stderr, "%s%02x", i % 32 ? "" : "\n  ", p[i]);
    fprintf(stderr, "%s\n", n > 4096 ? " ..." : "");
}

/* ---- phase 1: the valid corpus ---- */

static int sv_equal(td_yjs_doc *d, const blob *sv)
{
    uint8_t *p;
    size_t n;
    if (td_yjs_encode_state_vector(d, &p, &n) != TD_YJS_OK)
        return 0;
    int eq = n == sv->n && memcmp(p, sv->p, n) == 0;
    td_yjs_buf_free(d, p);
    return eq;
}

static void valid_corpus(td_rng *rng)
{
    td_yjs_options o;
    memset(&o, 0, sizeof o);
    size_t applied = 0;
    for (int s = 0; s < g_nsc; s++) {
        scen *sc = &g_sc[s];
        xdoc a;
        if (xdoc_new(&a, &o) != 0) {
            CHECK_MSG(0, "td_yjs_doc_new failed");
            return;
        }
        /* In order. */
        for (size_t i = 0; i < sc->u.n; i++) {
            const char *msg = NULL;
            td_yjs_err ce = td_yjs_update_check(sc->u.v[i].p, sc->u.v[i].n, &msg);
            CHECK_MSG(ce == TD_YJS_OK, "%s: td_yjs_update_check: %s (%s)", sc->u.v[i].name,
                      td_yjs_strerror(ce), msg ? msg : "");
            td_yjs_err e = td_yjs_apply_update(a.d, sc->u.v[i].p, sc->u.v[i].n);
            CHECK_MSG(e == TD_YJS_OK, "%s (in order): %s: %s", sc->u.v[i].name,
                      td_yjs_strerror(e), td_yjs_doc_error(a.d));
            applied++;
        }
        td_yjs_stats st;
        td_yjs_doc_stats(a.d, &st);
        CHECK_MSG(st.pending_structs == 0 && st.pending_deletes == 0,
                  "scenario %d in order: %zu structs, %zu deletes left pending", s,
                  st.pending_structs, st.pending_deletes);
        CHECK_MSG(st.bytes == a.c.live, "scenario %d: stats.bytes %zu, the hook counts %zu", s,
                  st.bytes, a.c.live);
        CHECK_MSG(sv_equal(a.d, &sc->sv), "scenario %d in order: state vector is not Yjs's", s);

        /* Its own encoding loads back. */
        snap sa, sb;
        CHECK(take_snap(a.d, &sa) == 0);
        xdoc b;
        if (xdoc_new(&b, &o) == 0) {
            td_yjs_err e = td_yjs_apply_update(b.d, sa.enc, sa.encn);
            CHECK_MSG(e == TD_YJS_OK, "scenario %d: own encoding: %s: %s", s, td_yjs_strerror(e),
                      td_yjs_doc_error(b.d));
            CHECK(take_snap(b.d, &sb) == 0);
            CHECK_MSG(sa.svn == sb.svn && !memcmp(sa.sv, sb.sv, sa.svn),
                      "scenario %d: state vector differs after reloading the own encoding", s);
            CHECK_MSG(sa.jsonn == sb.jsonn && !memcmp(sa.json, sb.json, sa.jsonn),
                      "scenario %d: to_json differs after reloading the own encoding", s);
            snap_free(&sb);
            xdoc_free(&b, "reload");
        }
        snap_free(&sa);
        xdoc_free(&a, "in order");

        /* Each file alone; the final whole-document update. */
        for (size_t i = 0; i < sc->u.n + sc->x.n; i++) {
            blob *bl = i < sc->u.n ? &sc->u.v[i] : &sc->x.v[i - sc->u.n];
            const char *msg = NULL;
            td_yjs_err ce = td_yjs_update_check(bl->p, bl->n, &msg);
            CHECK_MSG(ce == TD_YJS_OK, "%s: td_yjs_update_check: %s (%s)", bl->name,
                      td_yjs_strerror(ce), msg ? msg : "");
            if (xdoc_new(&b, &o) != 0)
                continue;
            td_yjs_err e = td_yjs_apply_update(b.d, bl->p, bl->n);
            CHECK_MSG(e == TD_YJS_OK, "%s (alone): %s: %s", bl->name, td_yjs_strerror(e),
                      td_yjs_doc_error(b.d));
            if (bl == sc->final) {
                td_yjs_doc_stats(b.d, &st);
                CHECK_MSG(st.pending_structs == 0 && st.pending_deletes == 0,
                          "%s: pending left", bl->name);
                CHECK_MSG(sv_equal(b.d, &sc->sv), "%s: state vector is not Yjs's", bl->name);
            }
            applied++;
            xdoc_free(&b, bl->name);
        }

        /* Everything in a random order: the pending set must resolve. */
        size_t n = sc->u.n + sc->x.n;
        blob **perm = malloc(n * sizeof *perm);
        for (size_t i = 0; i < n; i++)
            perm[i] = i < sc->u.n ? &sc->u.v[i] : &sc->x.v[i - sc->u.n];
        for (int round = 0; round < 3; round++) {
            for (size_t i = n; i > 1; i--) {
                size_t j = td_rng_next(rng) % i;
                blob *t = perm[i - 1];
                perm[i - 1] = perm[j];
                perm[j] = t;
            }
            if (xdoc_new(&b, &o) != 0)
                break;
            for (size_t i = 0; i < n; i++) {
                td_yjs_err e = td_yjs_apply_update(b.d, perm[i]->p, perm[i]->n);
                CHECK_MSG(e == TD_YJS_OK, "%s (random order, round %d, #%zu): %s: %s",
                          perm[i]->name, round, i, td_yjs_strerror(e), td_yjs_doc_error(b.d));
                applied++;
            }
            td_yjs_doc_stats(b.d, &st);
            CHECK_MSG(st.pending_structs == 0 && st.pending_deletes == 0,
                      "scenario %d random order: %zu structs, %zu deletes left pending", s,
                      st.pending_structs, st.pending_deletes);
            CHECK_MSG(sv_equal(b.d, &sc->sv), "scenario %d random order: state vector is not Yjs's",
                      s);
            xdoc_free(&b, "random order");
        }
        free(perm);
    }
    printf("valid corpus: %d scenarios, %zu files, %zu applications ok\n", g_nsc, g_nall, applied);
}

/* ---- phase 2: mutated updates ---- */

static const uint8_t interesting[] = {0x00, 0x01, 0x02, 0x07, 0x08, 0x0a, 0x20, 0x27, 0x40,
                                      0x44, 0x7f, 0x80, 0x81, 0x84, 0x88, 0xc4, 0xc8, 0xfe,
                                      0xff, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x7b,
                                      0x7c, 0x7d, 0x7e};

static uint64_t rnd(td_rng *r, uint64_t n)
{
    return n ? td_rng_next(r) % n : 0;
}

static size_t put_varuint(uint8_t *b, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        b[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b[n++] = (uint8_t)v;
    return n;
}

/* Inserts k bytes at pos (room for them is the caller's). */
static size_t ins_bytes(uint8_t *b, size_t n, size_t pos, const uint8_t *src, size_t k)
{
    memmove(b + pos + k, b + pos, n - pos);
    memcpy(b + pos, src, k);
    return n + k;
}

#define MUT_ROOM 64

/* One mutation of b[0..n); b has room for n + MUT_ROOM bytes. */
static size_t mutate(td_rng *r, uint8_t *b, size_t n, unsigned *kinds)
{
    uint8_t tmp[MUT_ROOM];
    size_t pos = n ? (size_t)rnd(r, n) : 0;
    unsigned op = (unsigned)rnd(r, 11);
    if (n == 0 && op != 3 && op != 5)
        op = 3;
    *kinds |= 1u << op;
    switch (op) {
    case 0: /* bit flip */
        b[pos] ^= (uint8_t)(1u << rnd(r, 8));
        break;
    case 1: /* an interesting byte */
        b[pos] = interesting[rnd(r, sizeof interesting)];
        break;
    case 2: /* truncation */
        n = pos;
        break;
    case 3: { /* insert 1..8 bytes */
        size_t k = 1 + (size_t)rnd(r, 8);
        for (size_t i = 0; i < k; i++)
            tmp[i] = rnd(r, 2) ? interesting[rnd(r, sizeof interesting)] : (uint8_t)td_rng_next(r);
        pos = n ? (size_t)rnd(r, n + 1) : 0;
        n = ins_bytes(b, n, pos, tmp, k);
        break;
    }
    case 4: { /* delete 1..8 bytes */
        size_t k = 1 + (size_t)rnd(r, 8);
        if (k > n - pos)
            k = n - pos;
        memmove(b + pos, b + pos + k, n - pos - k);
        n -= k;
        break;
    }
    case 5: { /* a large or overlong varint, inserted or written over */
        static const uint64_t big[] = {0x80, 0x3fff, 0xffffffffULL, 0x100000000ULL,
                                       1ULL << 40, (1ULL << 53) - 1, 1ULL << 53,
                                       1ULL << 63, UINT64_MAX};
        size_t k;
        if (rnd(r, 4) == 0) { /* overlong: 0x80 padding */
            k = 1 + (size_t)rnd(r, 12);
            for (size_t i = 0; i < k; i++)
                tmp[i] = 0x80;
            tmp[k++] = (uint8_t)rnd(r, 2);
        } else {
            k = put_varuint(tmp, big[rnd(r, sizeof big / sizeof big[0])]);
        }
        if (n && rnd(r, 2)) {
            if (k > n - pos)
                k = n - pos;
            memcpy(b + pos, tmp, k);
        } else {
            pos = n ? (size_t)rnd(r, n + 1) : 0;
            n = ins_bytes(b, n, pos, tmp, k);
        }
        break;
    }
    case 6: { /* duplicate a chunk */
        size_t k = 1 + (size_t)rnd(r, 32);
        if (k > n - pos)
            k = n - pos;
        memcpy(tmp, b + pos, k);
        n = ins_bytes(b, n, (size_t)rnd(r, n + 1), tmp, k);
        break;
    }
    case 7: /* a random byte */
        b[pos] = (uint8_t)td_rng_next(r);
        break;
    case 8: /* off by a little: counts, lengths, clocks */
        b[pos] = (uint8_t)(b[pos] + (rnd(r, 2) ? 1 : -1) * (int)(1 + rnd(r, 3)));
        break;
    case 9: { /* swap two bytes */
        size_t q = (size_t)rnd(r, n);
        uint8_t t = b[pos];
        b[pos] = b[q];
        b[q] = t;
        break;
    }
    default: /* the end cut off by a few bytes */
        n -= n < 4 ? n : (size_t)rnd(r, 4);
        break;
    }
    return n;
}

typedef struct stats {
    long variants, ok, err[8], nomem_tests, nomem_hit, check_mismatch, rebuilds;
    double max_ms;
    long max_ms_variant;
    size_t peak_bytes;
} stats;

static void tight_options(td_rng *r, td_yjs_options *o)
{
    memset(o, 0, sizeof *o);
    switch (rnd(r, 4)) {
    case 0:
        break;
    case 1:
        o->max_pending_structs = 1 + (size_t)rnd(r, 40);
        o->max_pending_bytes = 64 + (size_t)rnd(r, 4096);
        o->max_depth = 2 + (size_t)rnd(r, 6);
        break;
    case 2:
        o->no_gc = 1;
        break;
    default:
        o->max_pending_structs = 200;
        o->max_pending_bytes = 32768;
        break;
    }
}

/* A doc holding a prefix of scenario s's updates, maybe plus one extra. */
static int build_base(td_rng *r, xdoc *x, int *s_out, size_t *k_out)
{
    td_yjs_options o;
    tight_options(r, &o);
    int s = (int)rnd(r, (uint64_t)g_nsc);
    scen *sc = &g_sc[s];
    size_t k = (size_t)rnd(r, sc->u.n + 1);
    if (xdoc_new(x, &o) != 0)
        return -1;
    for (size_t i = 0; i < k; i++) {
        td_yjs_err e = td_yjs_apply_update(x->d, sc->u.v[i].p, sc->u.v[i].n);
        /* A tight max_depth may refuse a valid update: stop there. */
        if (e != TD_YJS_OK) {
            CHECK_MSG(e == TD_YJS_ERR_LIMIT || (o.max_depth && e == TD_YJS_ERR_INVALID),
                      "%s on a prefix doc: %s: %s", sc->u.v[i].name, td_yjs_strerror(e),
                      td_yjs_doc_error(x->d));
            k = i;
            break;
        }
    }
    if (sc->x.n && rnd(r, 3) == 0) {
        blob *bl = &sc->x.v[rnd(r, sc->x.n)];
        td_yjs_err e = td_yjs_apply_update(x->d, bl->p, bl->n);
        CHECK_MSG(e == TD_YJS_OK || e == TD_YJS_ERR_LIMIT || (o.max_depth && e == TD_YJS_ERR_INVALID),
                  "%s on a prefix doc: %s: %s", bl->name, td_yjs_strerror(e),
                  td_yjs_doc_error(x->d));
    }
    *s_out = s;
    *k_out = k;
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void mutated(td_rng *r, long variants, uint64_t seed, const char *argv0)
{
    stats S;
    memset(&S, 0, sizeof S);
    size_t cap = 2 * g_maxlen + 8 * MUT_ROOM;
    uint8_t *v = malloc(cap);
    xdoc base = {0}, fresh = {0};
    snap before = {0}, after = {0};
    int s = 0;
    size_t k = 0;
    long since_build = 0;
    int have_base = 0;
    for (long it = 0; it < variants; it++) {
        if (!have_base || since_build >= 64) {
            snap_free(&before);
            xdoc_free(&base, "base doc");
            if (build_base(r, &base, &s, &k) != 0) {
                CHECK_MSG(0, "cannot build a base doc");
                break;
            }
            CHECK(take_snap(base.d, &before) == 0);
            have_base = 1;
            since_build = 0;
            S.rebuilds++;
        }
        since_build++;
        scen *sc = &g_sc[s];

        /* The update to mutate. */
        const blob *src;
        uint64_t pick = rnd(r, 100);
        if (pick < 50 && k < sc->u.n)
            src = &sc->u.v[k + rnd(r, sc->u.n - k < 4 ? sc->u.n - k : 4)];
        else if (pick < 70 && sc->x.n)
            src = &sc->x.v[rnd(r, sc->x.n)];
        else
            src = g_all[rnd(r, g_nall)];
        size_t n = src->n;
        memcpy(v, src->p, n);
        unsigned kinds = 0;
        int nomem = rnd(r, 50) == 0;
        if (!nomem) {
            if (rnd(r, 8) == 0) { /* splice: a prefix of this, the rest of another */
                const blob *o = g_all[rnd(r, g_nall)];
                size_t a = (size_t)rnd(r, n + 1), bpos = (size_t)rnd(r, o->n + 1);
                memcpy(v + a, o->p + bpos, o->n - bpos);
                n = a + (o->n - bpos);
                kinds |= 1u << 11;
            }
            int muts = 1 + (int)rnd(r, 3);
            for (int m = 0; m < muts; m++)
                n = mutate(r, v, n, &kinds);
        }

        const char *cmsg = NULL;
        td_yjs_err ce = nomem ? TD_YJS_OK : td_yjs_update_check(v, n, &cmsg);
        if (nomem) {
            base.c.fail_in = 1 + (long)rnd(r, 40);
            base.c.failed = 0;
            S.nomem_tests++;
        }
        double t0 = now_ms();
        td_yjs_err e = td_yjs_apply_update(base.d, v, n);
        double ms = now_ms() - t0;
        int injected = base.c.failed;
        base.c.fail_in = 0;
        if (ms > S.max_ms) {
            S.max_ms = ms;
            S.max_ms_variant = it;
        }
        S.variants++;
        if (base.c.peak > S.peak_bytes)
            S.peak_bytes = base.c.peak;
        int bad = 0;
        if (e == TD_YJS_OK) {
            S.ok++;
            if (!nomem && ce != TD_YJS_OK) {
                CHECK_MSG(0, "variant %ld: td_yjs_update_check says %s (%s) but apply accepts it",
                          it, td_yjs_strerror(ce), cmsg ? cmsg : "");
                bad = 1;
            }
            CHECK_MSG(td_yjs_doc_error(base.d)[0] == 0,
                      "variant %ld: td_yjs_doc_error after success: %s", it,
                      td_yjs_doc_error(base.d));
            /* The doc changed: it becomes the new "before", once it is
             * shown to be self-consistent. */
            snap_free(&before);
            if (take_snap(base.d, &before) != 0) {
                CHECK_MSG(0, "variant %ld: cannot encode the doc after success: %s", it,
                          td_yjs_doc_error(base.d));
                bad = 1;
            } else if (xdoc_new(&fresh, &base.o) == 0) {
                td_yjs_err e2 = td_yjs_apply_update(fresh.d, before.enc, before.encn);
                if (e2 != TD_YJS_OK) {
                    CHECK_MSG(0, "variant %ld: the doc's own encoding does not apply: %s: %s", it,
                              td_yjs_strerror(e2), td_yjs_doc_error(fresh.d));
                    hexdump("its encoding", before.enc, before.encn);
                    bad = 1;
                } else if (take_snap(fresh.d, &after) == 0) {
                    /* A pending struct that overlaps what is integrated is
                     * written from the overlap on, with its own previous id
                     * as origin (as Y.mergeUpdates slices it), so it may
                     * integrate at once on reload: the reloaded state may be
                     * ahead, never behind. */
                    if (!sv_at_least(after.sv, after.svn, before.sv, before.svn)) {
                        CHECK_MSG(0, "variant %ld: its own encoding loads to a state vector "
                                     "behind the doc's", it);
                        hexdump("its encoding", before.enc, before.encn);
                        bad = 1;
                    }
                    snap_free(&after);
                }
                xdoc_free(&fresh, "fresh doc");
            }
            td_yjs_stats st;
            td_yjs_doc_stats(base.d, &st);
            CHECK_MSG(st.bytes == base.c.live, "variant %ld: stats.bytes %zu, hook counts %zu", it,
                      st.bytes, base.c.live);
            if (st.bytes > (8u << 20))
                since_build = 1 << 30; /* rebuild */
        } else {
            S.err[e < 8 ? e : 7]++;
            if (e == TD_YJS_ERR_NOMEM)
                S.nomem_hit++;
            if (e == TD_YJS_ERR_NOMEM && !injected) {
                CHECK_MSG(0, "variant %ld: NOMEM without an injected allocation failure", it);
                bad = 1;
            }
            /* A valid update may meet a tight limit, never a decode error. */
            if (nomem && e == TD_YJS_ERR_DECODE) {
                CHECK_MSG(0, "variant %ld: a valid update failed: %s: %s", it,
                          td_yjs_strerror(e), td_yjs_doc_error(base.d));
                bad = 1;
            }
            if (e != TD_YJS_ERR_DECODE && e != TD_YJS_ERR_INVALID && e != TD_YJS_ERR_LIMIT &&
                e != TD_YJS_ERR_NOMEM) {
                CHECK_MSG(0, "variant %ld: unexpected error code %d", it, (int)e);
                bad = 1;
            }
            CHECK_MSG(td_yjs_doc_error(base.d)[0] != 0, "variant %ld: error %s without a message",
                      it, td_yjs_strerror(e));
            if (!nomem && e == TD_YJS_ERR_DECODE && ce == TD_YJS_OK)
                S.check_mismatch++;
            if (take_snap(base.d, &after) != 0) {
                CHECK_MSG(0, "variant %ld: cannot encode the doc after a failed apply", it);
                bad = 1;
            } else {
                /* NOMEM may leave part of the update in (tandem_yjs.h): the
                 * document must still encode, the rebuild below reloads it. */
                const char *what = e == TD_YJS_ERR_NOMEM ? NULL : snap_diff(&before, &after);
                if (e == TD_YJS_ERR_NOMEM)
                    since_build = 1 << 30;
                if (what) {
                    CHECK_MSG(0, "variant %ld: %s (%s) changed the document: %s differs", it,
                              td_yjs_strerror(e), td_yjs_doc_error(base.d), what);
                    bad = 1;
                }
                snap_free(&after);
            }
        }
        if (bad) {
            fprintf(stderr, "  base: scenario %d, prefix of %zu updates, options pending %zu/%zu "
                            "depth %zu no_gc %d; source %s, mutations 0x%x%s\n",
                    s, k, base.o.max_pending_structs, base.o.max_pending_bytes, base.o.max_depth,
                    base.o.no_gc, src->name, kinds, nomem ? " (allocation failure injected)" : "");
            hexdump("  variant", v, n);
            fprintf(stderr, "  replay: %s CORPUS --seed %" PRIu64 "\n", argv0, seed);
            if (td_check_failures > 20)
                break;
            have_base = 0; /* a broken doc is no base */
        }
    }
    snap_free(&before);
    xdoc_free(&base, "base doc");
    free(v);
    printf("variants: %ld (%ld base docs): %ld ok, %ld decode, %ld invalid, %ld limit, "
           "%ld nomem (of %ld with allocation failures injected)\n",
           S.variants, S.rebuilds, S.ok, S.err[TD_YJS_ERR_DECODE], S.err[TD_YJS_ERR_INVALID],
           S.err[TD_YJS_ERR_LIMIT], S.nomem_hit, S.nomem_tests);
    printf("slowest apply: %.2f ms (variant %ld); peak bytes of a base doc: %zu\n", S.max_ms,
           S.max_ms_variant, S.peak_bytes);
    if (S.check_mismatch)
        printf("note: %ld variants passed td_yjs_update_check but apply said DECODE\n",
               S.check_mismatch);
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    long variants = 500000;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--variants") && i + 1 < argc)
            variants = strtol(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (!dir && argv[i][0] != '-')
            dir = argv[i];
        else
            dir = NULL, i = argc;
    }
    if (!dir || variants < 0) {
        fprintf(stderr, "usage: %s CORPUS_DIR [--variants N] [--seed S]\n", argv[0]);
        return 2;
    }
    printf("test_yjs_robust seed %" PRIu64 " (replay: %s %s --variants %ld --seed %" PRIu64 ")\n",
           seed, argv[0], dir, variants, seed);
    fflush(stdout);
    td_check_keep_going = 1;
    if (load_corpus(dir) != 0)
        return 1;
    td_rng rng;
    td_rng_seed(&rng, seed);
    double t0 = now_ms();
    valid_corpus(&rng);
    double t1 = now_ms();
    mutated(&rng, variants, seed, argv[0]);
    printf("time: valid corpus %.0f ms, variants %.0f ms\n", t1 - t0, now_ms() - t1);
    return td_check_status("test_yjs_robust");
}
