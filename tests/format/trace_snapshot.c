/*
 * trace_snapshot.c -- snapshots made by the core, for the decoder written
 * from docs/FORMAT.md alone (decode_snapshot.py) to read.
 *
 *   trace_snapshot TRACE OUT.snap
 *       replays an editing trace (sequential or concurrent) into the core
 *       and writes td_crdt_snapshot_encode of the result (the root text is
 *       "text"), and beside it OUT.snap.v1, the same document in snapshot
 *       version 1 (which must load and encode back to OUT.snap).
 *   trace_snapshot --doc SEED OUT.snap OUT.json
 *       builds a document with every value type, nested objects, map
 *       tombstones, overwritten object writes, backspaces and concurrent
 *       edits of three replicas (then SEED rounds of random edits, delivered
 *       out of order), and writes its snapshot (and OUT.snap.v1) and
 *       td_crdt_to_json.
 *
 * Either way it checks what the core promises about snapshots before
 * writing: every replica encodes the same bytes (canonical), and loading the
 * snapshot and encoding again gives them back. Exit 0 on success, 1 on a
 * failed check, 2 on bad arguments or an unreadable trace.
 */
#include "crdt_internal.h" /* td_crdt_snapshot_encode_v1 */
#include "tandem_crdt.h"
#include "trace_load.h"
#include "trace_replay.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("trace_snapshot: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

#define CHECK(doc, call)                                                              \
    do {                                                                              \
        td_crdt_err e_ = (call);                                                      \
        if (e_ != TD_CRDT_OK)                                                         \
            die(1, "%s:%d: %s: %s (%s)", __FILE__, __LINE__, #call, td_crdt_strerror(e_), \
                td_crdt_doc_error(doc));                                              \
    } while (0)

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0)
        die(2, "cannot write %s", path);
}

/* Snapshot of doc; every other replica must encode the same bytes, and the
 * bytes must survive a load and a second encode. */
static uint8_t *canonical_snapshot(td_crdt_doc **docs, uint32_t n, size_t *len)
{
    uint8_t *snap;
    CHECK(docs[0], td_crdt_snapshot_encode(docs[0], &snap, len));
    for (uint32_t i = 1; i < n; i++) {
        uint8_t *other;
        size_t olen;
        CHECK(docs[i], td_crdt_snapshot_encode(docs[i], &other, &olen));
        if (olen != *len || memcmp(other, snap, olen) != 0)
            die(1, "replica %u encodes a different snapshot (%zu bytes, replica 0: %zu)", i, olen,
                *len);
        td_crdt_buf_free(docs[i], other);
    }
    td_crdt_options o = {.agent = 0x5eed};
    td_crdt_doc *back;
    const char *why;
    td_crdt_err e = td_crdt_doc_load(&o, snap, *len, &back, &why);
    if (e != TD_CRDT_OK)
        die(1, "the core cannot load its own snapshot: %s (%s)", td_crdt_strerror(e), why);
    uint8_t *again;
    size_t alen;
    CHECK(back, td_crdt_snapshot_encode(back, &again, &alen));
    if (alen != *len || memcmp(again, snap, alen) != 0)
        die(1, "load + encode changes the snapshot (%zu -> %zu bytes)", *len, alen);
    td_crdt_buf_free(back, again);
    td_crdt_doc_free(back);
    return snap;
}

/* The version 1 encoding of the same document, written to path: it must
 * load (the loader reads both versions) and encode back to snap, byte for
 * byte. */
static void v1_snapshot(td_crdt_doc *doc, const uint8_t *snap, size_t len, const char *path)
{
    uint8_t *v1, *again;
    size_t v1len, alen;
    CHECK(doc, td_crdt_snapshot_encode_v1(doc, &v1, &v1len));
    td_crdt_options o = {.agent = 0x5eed};
    td_crdt_doc *back;
    const char *why;
    td_crdt_err e = td_crdt_doc_load(&o, v1, v1len, &back, &why);
    if (e != TD_CRDT_OK)
        die(1, "the core cannot load its version 1 snapshot: %s (%s)", td_crdt_strerror(e), why);
    CHECK(back, td_crdt_snapshot_encode(back, &again, &alen));
    if (alen != len || memcmp(again, snap, alen) != 0)
        die(1, "version 1 load + encode differs from the version 2 snapshot");
    char p[4096];
    snprintf(p, sizeof p, "%s.v1", path);
    write_file(p, v1, v1len);
    td_crdt_buf_free(back, again);
    td_crdt_doc_free(back);
    td_crdt_buf_free(doc, v1);
}

/* ---- traces ---------------------------------------------------------------- */

static int trace_mode(const char *path, const char *out)
{
    tt_trace t;
    char err[512];
    if (tt_trace_load(path, &t, err, sizeof err) != 0)
        die(2, "%s: %s", path, err);
    td_crdt_options opts = {.agent = 0x1000};
    tt_replay r;
    if (tt_replay_run(&t, &opts, 0, &r, err, sizeof err) != 0)
        die(1, "%s: replay failed: %s", path, err);
    for (uint32_t i = 0; i < r.ndocs; i++) {
        char *text;
        size_t len;
        CHECK(r.docs[i], td_crdt_text_get(r.docs[i], r.texts[i], &text, &len));
        if (len != t.end_len || memcmp(text, t.end, len) != 0)
            die(1, "%s: replica %u does not reach endContent", path, i);
        td_crdt_buf_free(r.docs[i], text);
    }
    size_t len;
    uint8_t *snap = canonical_snapshot(r.docs, r.ndocs, &len);
    write_file(out, snap, len);
    v1_snapshot(r.docs[0], snap, len, out);
    printf("%s: %s trace, %zu patches, %u replica(s), %zu code points, snapshot %zu bytes\n",
           path, t.concurrent ? "concurrent" : "sequential", t.npatches, r.ndocs, t.end_cp, len);
    td_crdt_buf_free(r.docs[0], snap);
    tt_replay_free(&r);
    tt_trace_free(&t);
    return 0;
}

/* ---- a document with everything ------------------------------------------- */

#define NREP 3

static td_crdt_doc *rep[NREP];

/* Sends replica `from`'s pending ops to every other replica now. */
static void sync_from(uint32_t from)
{
    uint8_t *b;
    size_t len;
    CHECK(rep[from], td_crdt_commit(rep[from], &b, &len));
    for (uint32_t i = 0; b && i < NREP; i++)
        if (i != from)
            CHECK(rep[i], td_crdt_apply(rep[i], b, len, NULL));
    td_crdt_buf_free(rep[from], b);
}

static td_crdt_obj root(uint32_t i, td_crdt_kind k, const char *name)
{
    td_crdt_obj h;
    CHECK(rep[i], td_crdt_root(rep[i], k, name, strlen(name), &h));
    return h;
}

static td_crdt_obj entry_obj(uint32_t i, td_crdt_obj map, const char *key)
{
    td_crdt_value v;
    CHECK(rep[i], td_crdt_map_get(rep[i], map, key, strlen(key), &v));
    if (v.type != TD_CRDT_V_OBJ)
        die(1, "key %s holds no object", key);
    return v.u.obj;
}

static void set(uint32_t i, td_crdt_obj m, const char *key, td_crdt_value v)
{
    CHECK(rep[i], td_crdt_map_set(rep[i], m, key, strlen(key), &v));
}

static void ins(uint32_t i, td_crdt_obj t, size_t pos, const char *s)
{
    CHECK(rep[i], td_crdt_text_insert(rep[i], t, pos, s, strlen(s)));
}

static td_crdt_value vint(int64_t x) { td_crdt_value v = {.type = TD_CRDT_V_INT}; v.u.i = x; return v; }
static td_crdt_value vflt(double x) { td_crdt_value v = {.type = TD_CRDT_V_FLOAT}; v.u.f = x; return v; }
static td_crdt_value vstr(const char *s) { td_crdt_value v = {.type = TD_CRDT_V_STR}; v.u.str.ptr = s; v.u.str.len = strlen(s); return v; }
static td_crdt_value vtype(td_crdt_vtype t) { td_crdt_value v = {.type = t}; return v; }

static void fixed_edits(void)
{
    /* replica 0: every scalar type in a map, nested objects, tombstones */
    td_crdt_obj meta = root(0, TD_CRDT_MAP, "meta");
    set(0, meta, "null", vtype(TD_CRDT_V_NULL));
    set(0, meta, "false", vtype(TD_CRDT_V_FALSE));
    set(0, meta, "true", vtype(TD_CRDT_V_TRUE));
    set(0, meta, "int_min", vint(INT64_MIN));
    set(0, meta, "int_max", vint(INT64_MAX));
    set(0, meta, "neg", vint(-1));
    set(0, meta, "float", vflt(0.1));
    set(0, meta, "big", vflt(1e300));
    set(0, meta, "tiny", vflt(-5e-324));
    set(0, meta, "inf", vflt(INFINITY));
    set(0, meta, "empty", vstr(""));
    set(0, meta, "escapes", vstr("quote\" back\\ nl\n tab\t ctl\x01\x1f caf\xc3\xa9 \xf0\x9f\x98\x80"));
    set(0, meta, "\xe6\x97\xa5\xe6\x9c\xac", vstr("unicode key"));
    set(0, meta, "del", vint(1));
    CHECK(rep[0], td_crdt_map_delete(rep[0], meta, "del", 3));
    td_crdt_obj gone;
    CHECK(rep[0], td_crdt_map_set_obj(rep[0], meta, "gone", 4, TD_CRDT_TEXT, &gone));
    ins(0, gone, 0, "lost");
    set(0, meta, "gone", vint(5)); /* the object's write loses; the object stays */
    td_crdt_obj child, deep, leaf, inner;
    CHECK(rep[0], td_crdt_map_set_obj(rep[0], meta, "child", 5, TD_CRDT_MAP, &child));
    CHECK(rep[0], td_crdt_map_set_obj(rep[0], child, "deep", 4, TD_CRDT_LIST, &deep));
    CHECK(rep[0], td_crdt_list_insert_obj(rep[0], deep, 0, TD_CRDT_TEXT, &leaf));
    ins(0, leaf, 0, "nested \xe2\x86\x92 text");
    CHECK(rep[0], td_crdt_list_insert_obj(rep[0], deep, 1, TD_CRDT_MAP, &inner));
    set(0, inner, "k", vflt(-2.5));

    /* a list: values, objects, deleted elements */
    td_crdt_obj items = root(0, TD_CRDT_LIST, "items");
    td_crdt_value vals[] = {vint(1), vflt(2.5), vstr("three"), vtype(TD_CRDT_V_NULL),
                            vtype(TD_CRDT_V_TRUE), vtype(TD_CRDT_V_FALSE)};
    CHECK(rep[0], td_crdt_list_insert(rep[0], items, 0, vals, 6));
    td_crdt_obj lm, ll;
    CHECK(rep[0], td_crdt_list_insert_obj(rep[0], items, 2, TD_CRDT_MAP, &lm));
    set(0, lm, "in list", vtype(TD_CRDT_V_TRUE));
    CHECK(rep[0], td_crdt_list_delete(rep[0], items, 3, 2));
    CHECK(rep[0], td_crdt_list_insert_obj(rep[0], items, 5, TD_CRDT_LIST, &ll));
    CHECK(rep[0], td_crdt_list_insert(rep[0], ll, 0, vals, 2));

    /* one name, three kinds */
    ins(0, root(0, TD_CRDT_TEXT, "x"), 0, "x as text");
    set(0, root(0, TD_CRDT_MAP, "x"), "as", vstr("map"));
    CHECK(rep[0], td_crdt_list_insert(rep[0], root(0, TD_CRDT_LIST, "x"), 0, vals, 1));

    /* text: typing, backspacing, deleting forward */
    td_crdt_obj body = root(0, TD_CRDT_TEXT, "body");
    ins(0, body, 0, "hello world");
    CHECK(rep[0], td_crdt_text_delete(rep[0], body, 10, 1)); /* backspace x3 */
    CHECK(rep[0], td_crdt_text_delete(rep[0], body, 9, 1));
    CHECK(rep[0], td_crdt_text_delete(rep[0], body, 8, 1));
    CHECK(rep[0], td_crdt_text_delete(rep[0], body, 0, 1)); /* delete x2 */
    CHECK(rep[0], td_crdt_text_delete(rep[0], body, 0, 1));
    sync_from(0);

    /* concurrent: all three type at one spot, delete each other's text, and
     * write the same key */
    for (uint32_t i = 0; i < NREP; i++) {
        td_crdt_obj b = root(i, TD_CRDT_TEXT, "body");
        const char *w[] = {"[zero]", "[one \xf0\x9f\x8e\x89]", "[two]"};
        ins(i, b, 3, w[i]);
        CHECK(rep[i], td_crdt_text_delete(rep[i], b, (size_t)(i * 2), 1));
        set(i, root(i, TD_CRDT_MAP, "meta"), "true", vint((int64_t)i));
        td_crdt_obj its = root(i, TD_CRDT_LIST, "items");
        td_crdt_value v = vint(100 + (int64_t)i);
        CHECK(rep[i], td_crdt_list_insert(rep[i], its, 1, &v, 1));
    }
    for (uint32_t i = 0; i < NREP; i++)
        sync_from(i);
    /* replica 1 edits inside replica 0's nested text */
    td_crdt_obj c1 = entry_obj(1, root(1, TD_CRDT_MAP, "meta"), "child");
    td_crdt_obj d1 = entry_obj(1, c1, "deep");
    td_crdt_value lv;
    CHECK(rep[1], td_crdt_list_get(rep[1], d1, 0, &lv));
    ins(1, lv.u.obj, 7, "(by one) ");
    CHECK(rep[1], td_crdt_text_delete(rep[1], lv.u.obj, 0, 2));
    sync_from(1);
}

/* ---- random edits ----------------------------------------------------------- */

static uint64_t rng;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return n ? (uint32_t)(rng % n) : 0;
}

/* Live objects of replica i reachable from its roots. */
static uint32_t collect(uint32_t i, td_crdt_obj h, td_crdt_obj *out, uint32_t n, uint32_t cap)
{
    if (n >= cap)
        return n;
    out[n++] = h;
    td_crdt_kind k = td_crdt_obj_kind(rep[i], h);
    td_crdt_value v;
    if (k == TD_CRDT_LIST) {
        for (size_t p = 0; p < td_crdt_list_length(rep[i], h); p++)
            if (td_crdt_list_get(rep[i], h, p, &v) == TD_CRDT_OK && v.type == TD_CRDT_V_OBJ)
                n = collect(i, v.u.obj, out, n, cap);
    } else if (k == TD_CRDT_MAP) {
        for (size_t p = 0; p < td_crdt_map_size(rep[i], h); p++)
            if (td_crdt_map_entry(rep[i], h, p, NULL, NULL, &v) == TD_CRDT_OK &&
                v.type == TD_CRDT_V_OBJ)
                n = collect(i, v.u.obj, out, n, cap);
    }
    return n;
}

static void random_edit(uint32_t i)
{
    static const char *const words[] = {"a", "bc", "d\xc3\xa9", "\xf0\x9f\x98\x80", " ", "xyz\n"};
    static const char *const keys[] = {"k1", "k2", "k3", "\xce\xa9"};
    td_crdt_obj objs[256];
    uint32_t n = 0;
    n = collect(i, root(i, TD_CRDT_TEXT, "body"), objs, n, 256);
    n = collect(i, root(i, TD_CRDT_LIST, "items"), objs, n, 256);
    n = collect(i, root(i, TD_CRDT_MAP, "meta"), objs, n, 256);
    td_crdt_obj h = objs[rnd(n)];
    td_crdt_doc *d = rep[i];
    switch (td_crdt_obj_kind(d, h)) {
    case TD_CRDT_TEXT: {
        size_t len = td_crdt_text_length(d, h);
        if (len && rnd(3) == 0) {
            size_t pos = rnd((uint32_t)len), cnt = 1 + rnd((uint32_t)(len - pos < 4 ? len - pos : 4));
            CHECK(d, td_crdt_text_delete(d, h, pos, cnt));
        } else {
            ins(i, h, rnd((uint32_t)len + 1), words[rnd(6)]);
        }
        break;
    }
    case TD_CRDT_LIST: {
        size_t len = td_crdt_list_length(d, h);
        uint32_t c = rnd(6);
        if (len && c == 0) {
            CHECK(d, td_crdt_list_delete(d, h, rnd((uint32_t)len), 1));
        } else if (c == 1 && n < 200) {
            CHECK(d, td_crdt_list_insert_obj(d, h, rnd((uint32_t)len + 1),
                                             (td_crdt_kind)(1 + rnd(3)), NULL));
        } else {
            td_crdt_value v[3] = {vint((int64_t)rnd(1000) - 500), vflt(rnd(100) / 8.0), vstr(words[rnd(6)])};
            CHECK(d, td_crdt_list_insert(d, h, rnd((uint32_t)len + 1), v, 1 + rnd(3)));
        }
        break;
    }
    default: {
        const char *k = keys[rnd(4)];
        uint32_t c = rnd(6);
        if (c == 0)
            CHECK(d, td_crdt_map_delete(d, h, k, strlen(k)));
        else if (c == 1 && n < 200)
            CHECK(d, td_crdt_map_set_obj(d, h, k, strlen(k), (td_crdt_kind)(1 + rnd(3)), NULL));
        else
            set(i, h, k, c == 2 ? vstr(words[rnd(6)]) : vint((int64_t)rnd(50)));
        break;
    }
    }
}

/* Batches in flight: each replica's commits, delivered late and out of order. */
typedef struct flight {
    uint8_t *b;
    size_t len;
    uint32_t from, to;
} flight;

static void random_rounds(uint32_t rounds)
{
    flight *q = NULL;
    size_t nq = 0, cap = 0;
    for (uint32_t round = 0; round < rounds; round++) {
        uint32_t i = rnd(NREP);
        for (uint32_t k = 1 + rnd(4); k > 0; k--)
            random_edit(i);
        uint8_t *b;
        size_t len;
        CHECK(rep[i], td_crdt_commit(rep[i], &b, &len));
        for (uint32_t j = 0; b && j < NREP; j++) {
            if (j == i)
                continue;
            if (nq == cap && !(q = realloc(q, (cap = cap ? 2 * cap : 64) * sizeof *q)))
                die(2, "out of memory");
            q[nq].b = malloc(len);
            memcpy(q[nq].b, b, len);
            q[nq].len = len;
            q[nq].from = i;
            q[nq++].to = j;
        }
        td_crdt_buf_free(rep[i], b);
        /* deliver a few, in random order */
        for (uint32_t k = rnd(4); k > 0 && nq; k--) {
            size_t x = rnd((uint32_t)nq);
            CHECK(rep[q[x].to], td_crdt_apply(rep[q[x].to], q[x].b, q[x].len, NULL));
            free(q[x].b);
            q[x] = q[--nq];
        }
    }
    while (nq) {
        size_t x = rnd((uint32_t)nq);
        CHECK(rep[q[x].to], td_crdt_apply(rep[q[x].to], q[x].b, q[x].len, NULL));
        free(q[x].b);
        q[x] = q[--nq];
    }
    free(q);
    for (uint32_t i = 0; i < NREP; i++)
        if (td_crdt_pending_ops(rep[i]))
            die(1, "replica %u still has pending ops", i);
}

static int doc_mode(uint32_t seed, const char *snap_path, const char *json_path)
{
    static const uint64_t agents[NREP] = {0xfedcba9876543210ull, 0x0000000000000007ull,
                                          0x8000000000000000ull};
    for (uint32_t i = 0; i < NREP; i++) {
        td_crdt_options o = {.agent = agents[i]};
        CHECK(rep[i], td_crdt_doc_new(&o, &rep[i]));
    }
    rng = 0x9e3779b97f4a7c15ull ^ seed;
    fixed_edits();
    random_rounds(seed ? 300 : 0);
    char *json[NREP];
    size_t jlen[NREP];
    for (uint32_t i = 0; i < NREP; i++) {
        CHECK(rep[i], td_crdt_to_json(rep[i], &json[i], &jlen[i]));
        if (jlen[i] != jlen[0] || memcmp(json[i], json[0], jlen[0]) != 0)
            die(1, "replicas 0 and %u do not converge:\n%s\n%s", i, json[0], json[i]);
    }
    size_t len;
    uint8_t *snap = canonical_snapshot(rep, NREP, &len);
    write_file(snap_path, snap, len);
    v1_snapshot(rep[0], snap, len, snap_path);
    write_file(json_path, json[0], jlen[0]);
    printf("doc seed %u: %llu ops, snapshot %zu bytes, JSON %zu bytes\n", seed,
           (unsigned long long)td_crdt_op_count(rep[0]), len, jlen[0]);
    td_crdt_buf_free(rep[0], snap);
    for (uint32_t i = 0; i < NREP; i++) {
        td_crdt_buf_free(rep[i], json[i]);
        td_crdt_doc_free(rep[i]);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--doc") == 0)
        return doc_mode((uint32_t)strtoul(argv[2], NULL, 10), argv[3], argv[4]);
    if (argc == 3 && argv[1][0] != '-')
        return trace_mode(argv[1], argv[2]);
    fprintf(stderr, "usage: trace_snapshot TRACE OUT.snap\n"
                    "       trace_snapshot --doc SEED OUT.snap OUT.json\n");
    return 2;
}
