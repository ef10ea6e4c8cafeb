/*
 * test_crdt_limits.c -- the core under the limits a server lives with
 * (issue 10): td_crdt_apply_ex (NO_PARK, agent_check), batches split to a
 * size (td_crdt_commit_max, td_crdt_diff_max), out of memory at every
 * allocation, the memory a hostile batch can make the decoder take, and the
 * cost of a large pending set.
 *
 * `test_crdt_limits [seed]`: random parts print their seed; a failure prints
 * the command that replays it. Timings are printed, never asserted.
 */
#define _POSIX_C_SOURCE 200809L
#include "td_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t g_seed;

/* ---- allocation hooks ------------------------------------------------------ */

/* Counts live bytes and their peak (a size header before each block), and
 * fails the fail_at-th allocation or growth (0: none). */
typedef struct counting {
    size_t live, peak;
    unsigned long nallocs, fail_at;
    int failed;
} counting;

static void *counting_hook(void *ud, void *ptr, size_t size)
{
    counting *c = ud;
    size_t old = 0;
    unsigned char *base = ptr ? (unsigned char *)ptr - 16 : NULL;
    if (base)
        memcpy(&old, base, sizeof old);
    if (size == 0) {
        c->live -= old;
        free(base);
        return NULL;
    }
    if (c->fail_at && ++c->nallocs == c->fail_at) {
        c->failed = 1;
        return NULL;
    }
    /* realloc may hold old and new at once: count both at the peak */
    if (c->live + size > c->peak)
        c->peak = c->live + size;
    unsigned char *p = realloc(base, size + 16);
    if (!p)
        return NULL;
    memcpy(p, &size, sizeof size);
    c->live = c->live - old + size;
    return p + 16;
}

static td_crdt_doc *counting_doc(counting *c, uint64_t agent)
{
    td_crdt_options o;
    memset(&o, 0, sizeof o);
    o.alloc = counting_hook;
    o.alloc_ud = c;
    o.agent = agent;
    td_crdt_doc *d = NULL;
    td_crdt_err e = td_crdt_doc_new(&o, &d);
    return e ? NULL : d;
}

/* ---- random documents -------------------------------------------------------- */

enum { NREP = 3 };

typedef struct world {
    tt_rng rng;
    td_crdt_doc *rep[NREP];
} world;

static td_crdt_value scalar(tt_rng *r, char *buf)
{
    td_crdt_value v;
    memset(&v, 0, sizeof v);
    switch (tt_rng_below(r, 3)) {
    case 0:
        v.type = TD_CRDT_V_INT;
        v.u.i = (int64_t)tt_rng_below(r, 1000) - 500;
        break;
    case 1:
        v.type = TD_CRDT_V_STR;
        v.u.str.len = tt_rand_utf8(r, 1 + tt_rng_below(r, 20), buf);
        v.u.str.ptr = buf;
        break;
    default:
        v.type = TD_CRDT_V_TRUE;
        break;
    }
    return v;
}

/* One random local edit: text (sometimes long runs), list values and nested
 * objects, map writes and deletes. */
static void edit(tt_rng *r, td_crdt_doc *d)
{
    td_crdt_obj t, l, m;
    char buf[4 * 2000 + 8];
    CHECK_OK(d, td_crdt_root(d, TD_CRDT_TEXT, "t", 1, &t));
    CHECK_OK(d, td_crdt_root(d, TD_CRDT_LIST, "l", 1, &l));
    CHECK_OK(d, td_crdt_root(d, TD_CRDT_MAP, "m", 1, &m));
    size_t tl = td_crdt_text_length(d, t), ll = td_crdt_list_length(d, l);
    switch (tt_rng_below(r, 8)) {
    case 0: case 1: case 2: {
        size_t n = tt_rng_chance(r, 1, 6) ? 200 + tt_rng_below(r, 1800) : 1 + tt_rng_below(r, 12);
        size_t len = tt_rand_utf8(r, n, buf);
        CHECK_OK(d, td_crdt_text_insert(d, t, tt_rng_below(r, tl + 1), buf, len));
        break;
    }
    case 3:
        if (tl) {
            size_t pos = tt_rng_below(r, tl);
            CHECK_OK(d, td_crdt_text_delete(d, t, pos, 1 + tt_rng_below(r, tl - pos)));
        }
        break;
    case 4: {
        td_crdt_value v[4];
        char sb[4][4 * 20 + 8];
        size_t n = 1 + tt_rng_below(r, 4);
        for (size_t i = 0; i < n; i++)
            v[i] = scalar(r, sb[i]);
        CHECK_OK(d, td_crdt_list_insert(d, l, tt_rng_below(r, ll + 1), v, n));
        break;
    }
    case 5:
        if (ll && tt_rng_chance(r, 1, 2)) {
            size_t pos = tt_rng_below(r, ll);
            CHECK_OK(d, td_crdt_list_delete(d, l, pos, 1 + tt_rng_below(r, ll - pos)));
        } else {
            td_crdt_obj o;
            CHECK_OK(d, td_crdt_list_insert_obj(d, l, tt_rng_below(r, ll + 1), TD_CRDT_TEXT, &o));
            size_t len = tt_rand_utf8(r, 1 + tt_rng_below(r, 8), buf);
            CHECK_OK(d, td_crdt_text_insert(d, o, 0, buf, len));
        }
        break;
    default: {
        char key[2] = {(char)('a' + tt_rng_below(r, 5)), 0};
        if (tt_rng_chance(r, 1, 5)) {
            CHECK_OK(d, td_crdt_map_delete(d, m, key, 1));
        } else if (tt_rng_chance(r, 1, 4)) {
            td_crdt_obj o;
            CHECK_OK(d, td_crdt_map_set_obj(d, m, key, 1, TD_CRDT_LIST, &o));
            td_crdt_value v = scalar(r, buf);
            CHECK_OK(d, td_crdt_list_insert(d, o, 0, &v, 1));
        } else {
            td_crdt_value v = scalar(r, buf);
            CHECK_OK(d, td_crdt_map_set(d, m, key, 1, &v));
        }
        break;
    }
    }
}

/* Three replicas edit and now and then sync pairwise; every replica's
 * local ops are committed (and dropped) on the way, so diffs carry them. */
static void world_build(world *w, uint64_t seed, int edits)
{
    tt_rng_seed(&w->rng, seed);
    for (int i = 0; i < NREP; i++)
        w->rep[i] = tt_new_doc(0x100 + (uint64_t)i * 0x1111);
    for (int k = 0; k < edits; k++) {
        td_crdt_doc *d = w->rep[tt_rng_below(&w->rng, NREP)];
        edit(&w->rng, d);
        if (tt_rng_chance(&w->rng, 1, 6)) {
            tt_bytes c = tt_commit(d);
            tt_bytes_free(&c);
            int i = (int)tt_rng_below(&w->rng, NREP), j = (int)tt_rng_below(&w->rng, NREP);
            if (i != j)
                tt_sync_one_way(w->rep[i], w->rep[j]);
        }
    }
    for (int i = 0; i < NREP; i++) {
        tt_bytes c = tt_commit(w->rep[i]);
        tt_bytes_free(&c);
    }
}

static void world_free(world *w)
{
    for (int i = 0; i < NREP; i++)
        td_crdt_doc_free(w->rep[i]);
}

static const td_crdt_apply_opts no_park = {TD_CRDT_APPLY_NO_PARK, NULL, NULL};

static void check_same_snap(td_crdt_doc *a, td_crdt_doc *b)
{
    tt_bytes sa = tt_snap(a), sb = tt_snap(b);
    if (!tt_bytes_eq(&sa, &sb)) { /* say whether the content or only the history differs */
        char *ja = tt_json(a), *jb = tt_json(b);
        printf("  content %s; ops %llu vs %llu\n", strcmp(ja, jb) ? "differs" : "is the same",
               (unsigned long long)td_crdt_op_count(a), (unsigned long long)td_crdt_op_count(b));
        free(ja);
        free(jb);
    }
    CHECK_MSG(tt_bytes_eq(&sa, &sb), "snapshots differ (%zu vs %zu bytes)", sa.len, sb.len);
    tt_bytes_free(&sa);
    tt_bytes_free(&sb);
}

/* ---- apply_ex ----------------------------------------------------------------- */

typedef struct check_log {
    int calls, refuse;
    uint64_t agent, from, to;
} check_log;

static int log_check(void *ud, uint64_t agent, uint64_t from, uint64_t to)
{
    check_log *l = ud;
    l->calls++;
    l->agent = agent;
    l->from = from;
    l->to = to;
    return l->refuse;
}

static void test_apply_ex(void)
{
    CHECK_STR(td_crdt_strerror(TD_CRDT_ERR_MISSING), "missing");
    CHECK_STR(td_crdt_strerror(TD_CRDT_ERR_REFUSED), "refused");
    td_crdt_doc *a = tt_new_doc(0xa), *b = tt_new_doc(0xb);
    td_crdt_obj t;
    CHECK_OK(a, td_crdt_root(a, TD_CRDT_TEXT, "t", 1, &t));
    CHECK_OK(a, td_crdt_text_insert(a, t, 0, "abc", 3));
    tt_bytes b1 = tt_commit(a);
    CHECK_OK(a, td_crdt_text_insert(a, t, 3, "def", 3));
    tt_bytes b2 = tt_commit(a);
    CHECK_OK(a, td_crdt_text_delete(a, t, 0, 2));
    tt_bytes b3 = tt_commit(a);
    tt_bytes before = tt_snap(b);

    /* a gap in agent 0xa's seqs: missing, nothing changed, nothing parked */
    td_crdt_apply_info info;
    CHECK_ERR(b, TD_CRDT_ERR_MISSING, td_crdt_apply_ex(b, b2.p, b2.len, &no_park, &info));
    CHECK(strstr(td_crdt_doc_error(b), "000000000000000a") != NULL);
    CHECK(td_crdt_pending_ops(b) == 0);
    tt_bytes now = tt_snap(b);
    CHECK(tt_bytes_eq(&before, &now));
    tt_bytes_free(&now);
    /* without the flag the same batch parks */
    CHECK_OK(b, td_crdt_apply_ex(b, b2.p, b2.len, NULL, &info));
    CHECK(info.parked == 1);

    /* agent_check: called once with the new range; refusal changes nothing */
    td_crdt_doc *c = tt_new_doc(0xc);
    check_log log = {0, 1, 0, 0, 0};
    td_crdt_apply_opts opts = {TD_CRDT_APPLY_NO_PARK, log_check, &log};
    tt_bytes cb = tt_snap(c);
    CHECK_ERR(c, TD_CRDT_ERR_REFUSED, td_crdt_apply_ex(c, b1.p, b1.len, &opts, &info));
    CHECK(log.calls == 1 && log.agent == 0xa && log.from == 0 && log.to == 3);
    now = tt_snap(c);
    CHECK(tt_bytes_eq(&cb, &now));
    tt_bytes_free(&now);
    log.refuse = 0;
    CHECK_OK(c, td_crdt_apply_ex(c, b1.p, b1.len, &opts, &info));
    CHECK(info.ops_applied == 3);
    /* a batch of known ops asks nothing */
    log.calls = 0;
    log.refuse = 1;
    CHECK_OK(c, td_crdt_apply_ex(c, b1.p, b1.len, &opts, &info));
    CHECK(log.calls == 0 && info.ops_duplicate == 3);
    /* next range starts at the document's count */
    log.refuse = 0;
    CHECK_OK(c, td_crdt_apply_ex(c, b2.p, b2.len, &opts, &info));
    CHECK(log.calls == 1 && log.from == 3 && log.to == 6);
    /* a delete whose targets exist integrates with NO_PARK */
    CHECK_OK(c, td_crdt_apply_ex(c, b3.p, b3.len, &opts, &info));
    check_same_snap(a, c);

    /* a reference to another agent's missing op: named in the error */
    td_crdt_doc *e = tt_new_doc(0xe);
    CHECK_OK(e, td_crdt_apply(e, b1.p, b1.len, NULL));
    td_crdt_obj et;
    CHECK_OK(e, td_crdt_root(e, TD_CRDT_TEXT, "t", 1, &et));
    CHECK_OK(e, td_crdt_text_insert(e, et, 3, "X", 1));
    tt_bytes eb = tt_commit(e);
    td_crdt_doc *f = tt_new_doc(0xf);
    CHECK_ERR(f, TD_CRDT_ERR_MISSING, td_crdt_apply_ex(f, eb.p, eb.len, &no_park, NULL));
    CHECK(strstr(td_crdt_doc_error(f), "000000000000000a, 2") != NULL);
    CHECK(td_crdt_pending_ops(f) == 0 && td_crdt_op_count(f) == 0);

    tt_bytes_free(&b1);
    tt_bytes_free(&b2);
    tt_bytes_free(&b3);
    tt_bytes_free(&eb);
    tt_bytes_free(&before);
    tt_bytes_free(&cb);
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
    td_crdt_doc_free(c);
    td_crdt_doc_free(e);
    td_crdt_doc_free(f);
}

/* ---- split batches -------------------------------------------------------------- */

/* Feeds `to` the diff_max pieces from `from` (at to's vv) with NO_PARK until
 * done; returns the number of pieces. */
static int feed_pieces(td_crdt_doc *from, td_crdt_doc *to, size_t max)
{
    tt_bytes vv = tt_vv(to);
    int pieces = 0, done = 0;
    while (!done) {
        uint8_t *out = NULL, *nv = NULL;
        size_t len = 0, nlen = 0;
        CHECK_OK(from, td_crdt_diff_max(from, vv.p, vv.len, max, &out, &len, &nv, &nlen, &done));
        if (out) {
            pieces++;
            td_crdt_err err = td_crdt_apply_ex(to, out, len, &no_park, NULL);
            td_crdt_buf_free(from, out);
            CHECK_OK(to, err);
        }
        tt_bytes_free(&vv);
        vv = tt_bytes_copy(nv, nlen);
        td_crdt_buf_free(from, nv);
        tt_bytes now = tt_vv(to);
        CHECK_MSG(tt_bytes_eq(&now, &vv) || done, "next_vv is not the receiver's vv");
        tt_bytes_free(&now);
        CHECK(pieces < 1000000);
    }
    tt_bytes_free(&vv);
    return pieces;
}

static void test_split_random(void)
{
    static const size_t maxes[] = {64, 100, 300, 1000, 5000, 1 << 20};
    for (int round = 0; round < 12; round++) {
        world w;
        uint64_t seed = g_seed + (uint64_t)round;
        world_build(&w, seed, 60 + round * 10);
        tt_rng r;
        tt_rng_seed(&r, seed ^ 0x5117);
        /* a full replica, and the others catching up from where they are */
        td_crdt_doc *full = tt_new_doc(0x999);
        for (int i = 0; i < NREP; i++)
            feed_pieces(w.rep[i], full, 1 << 20);
        for (int i = 0; i < NREP; i++) {
            size_t max = maxes[tt_rng_below(&r, sizeof maxes / sizeof maxes[0])];
            tt_bytes snap = tt_snap(w.rep[i]);
            td_crdt_doc *c = tt_load_doc(0x777, &snap);
            feed_pieces(full, c, max);
            check_same_snap(full, c);
            td_crdt_doc_free(c);
            tt_bytes_free(&snap);
        }
        /* a fresh replica, with a tiny limit */
        td_crdt_doc *c = tt_new_doc(0x778);
        feed_pieces(full, c, 64);
        check_same_snap(full, c);
        td_crdt_doc_free(c);
        /* commit_max: local ops in pieces, to a copy of the state before them */
        td_crdt_doc *src = w.rep[0];
        tt_bytes base = tt_snap(src);
        for (int k = 0; k < 40; k++)
            edit(&w.rng, src);
        td_crdt_doc *rx = tt_load_doc(0x779, &base);
        size_t max = maxes[tt_rng_below(&r, 4)];
        int more = 1, pieces = 0;
        while (more) {
            uint8_t *out = NULL;
            size_t len = 0;
            CHECK_OK(src, td_crdt_commit_max(src, max, &out, &len, &more));
            CHECK(out != NULL);
            CHECK_OK(rx, td_crdt_apply_ex(rx, out, len, &no_park, NULL));
            td_crdt_buf_free(src, out);
            pieces++;
        }
        check_same_snap(src, rx);
        tt_bytes none = tt_commit(src);
        CHECK(none.len == 0);
        td_crdt_doc_free(rx);
        tt_bytes_free(&base);
        td_crdt_doc_free(full);
        world_free(&w);
    }
}

static void test_split_paste(void)
{
    enum { MB = 1 << 20 };
    size_t n = 10 * (size_t)MB;
    char *text = malloc(n);
    CHECK(text != NULL);
    for (size_t i = 0; i < n; i++)
        text[i] = (char)('a' + i % 26);
    td_crdt_doc *a = tt_new_doc(0xa), *b = tt_new_doc(0xb);
    td_crdt_obj t;
    CHECK_OK(a, td_crdt_root(a, TD_CRDT_TEXT, "t", 1, &t));
    CHECK_OK(a, td_crdt_text_insert(a, t, 0, text, n));
    int more = 1, pieces = 0;
    while (more) {
        uint8_t *out = NULL;
        size_t len = 0;
        CHECK_OK(a, td_crdt_commit_max(a, 4 * (size_t)MB, &out, &len, &more));
        CHECK(len <= 4 * (size_t)MB);
        CHECK_OK(b, td_crdt_apply_ex(b, out, len, &no_park, NULL));
        td_crdt_buf_free(a, out);
        pieces++;
    }
    printf("  10 MB paste: %d pieces of at most 4 MiB\n", pieces);
    CHECK(pieces >= 3);
    check_same_snap(a, b);
    /* a single run still: the snapshot holds one run per replica's text */
    tt_bytes sa = tt_snap(a);
    CHECK(sa.len < n + 64);
    tt_bytes_free(&sa);
    /* and 100,000 one-character transactions become batches under 64 KiB */
    td_crdt_doc *c = tt_new_doc(0xc), *e = tt_new_doc(0xe);
    CHECK_OK(c, td_crdt_root(c, TD_CRDT_TEXT, "t", 1, &t));
    for (int i = 0; i < 100000; i++)
        CHECK_OK(c, td_crdt_text_insert(c, t, (size_t)(i * 7919) % (size_t)(i + 1), "x", 1));
    more = 1;
    pieces = 0;
    while (more) {
        uint8_t *out = NULL;
        size_t len = 0;
        CHECK_OK(c, td_crdt_commit_max(c, 64 * 1024, &out, &len, &more));
        CHECK(len <= 64 * 1024);
        CHECK_OK(e, td_crdt_apply_ex(e, out, len, &no_park, NULL));
        td_crdt_buf_free(c, out);
        pieces++;
    }
    printf("  100,000 scattered inserts: %d pieces of at most 64 KiB\n", pieces);
    check_same_snap(c, e);
    free(text);
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
    td_crdt_doc_free(c);
    td_crdt_doc_free(e);
}

/* ---- out of memory ----------------------------------------------------------- */

/* Remote batches (some out of order, so that they park) and the replica that
 * took them all without failing. */
typedef struct oom_setup {
    tt_bytes batch[64];
    int n;
    tt_bytes ref_snap;
} oom_setup;

static void oom_setup_build(oom_setup *s, uint64_t seed)
{
    world w;
    world_build(&w, seed, 40);
    memset(s, 0, sizeof *s);
    for (int i = 0; i < NREP; i++) {
        for (int k = 0; k < 6 && s->n < 60; k++) {
            edit(&w.rng, w.rep[i]);
            s->batch[s->n++] = tt_commit(w.rep[i]);
            if (s->batch[s->n - 1].len == 0)
                tt_bytes_free(&s->batch[--s->n]);
        }
        tt_bytes d = tt_diff(w.rep[i], &(tt_bytes){NULL, 0});
        s->batch[s->n++] = d;
    }
    /* swap neighbours so that some batches arrive before what they need */
    for (int i = 0; i + 1 < s->n; i += 3) {
        tt_bytes x = s->batch[i];
        s->batch[i] = s->batch[i + 1];
        s->batch[i + 1] = x;
    }
    td_crdt_doc *ref = tt_new_doc(0x4242);
    for (int i = 0; i < s->n; i++)
        CHECK_OK(ref, td_crdt_apply(ref, s->batch[i].p, s->batch[i].len, NULL));
    s->ref_snap = tt_snap(ref);
    td_crdt_doc_free(ref);
    world_free(&w);
}

static void oom_setup_free(oom_setup *s)
{
    for (int i = 0; i < s->n; i++)
        tt_bytes_free(&s->batch[i]);
    tt_bytes_free(&s->ref_snap);
}

/* Runs the scenario with the fail_at-th allocation failing; returns the
 * allocations made. Every NOMEM must leave a usable document; an apply
 * that failed must have changed nothing unless td_crdt_apply_partial says
 * so. In the end, with memory back, re-applying everything converges. */
static unsigned long oom_run(const oom_setup *s, unsigned long fail_at, uint64_t seed)
{
    counting c = {0, 0, 0, fail_at, 0};
    td_crdt_doc *d = counting_doc(&c, 0x77);
    if (!d) {
        CHECK(c.failed);
        return c.nallocs;
    }
    tt_rng r;
    tt_rng_seed(&r, seed);
    td_crdt_obj t;
    for (int i = 0; i < s->n; i++) {
        unsigned long saved = c.fail_at;
        c.fail_at = 0;
        tt_bytes before = tt_snap(d);
        c.fail_at = saved;
        td_crdt_err e = td_crdt_apply(d, s->batch[i].p, s->batch[i].len, NULL);
        CHECK_MSG(e == TD_CRDT_OK || e == TD_CRDT_ERR_NOMEM, "apply: %s", td_crdt_strerror(e));
        c.fail_at = 0;
        if (e && !td_crdt_apply_partial(d)) {
            tt_bytes now = tt_snap(d);
            CHECK_MSG(tt_bytes_eq(&before, &now), "NOMEM without partial changed the document");
            tt_bytes_free(&now);
        }
        tt_bytes_free(&before);
        c.fail_at = saved;
        /* the other calls: each may fail, none may crash or leak */
        uint8_t *out = NULL;
        size_t len = 0;
        switch (i % 4) {
        case 0:
            if (td_crdt_root(d, TD_CRDT_TEXT, "t", 1, &t) == TD_CRDT_OK)
                (void)td_crdt_text_insert(d, t, 0, "local", 5);
            if (td_crdt_commit(d, &out, &len) == TD_CRDT_OK)
                td_crdt_buf_free(d, out);
            break;
        case 1: {
            uint8_t *nv = NULL;
            size_t nl = 0;
            int done;
            if (td_crdt_diff_max(d, NULL, 0, 200, &out, &len, &nv, &nl, &done) == TD_CRDT_OK) {
                td_crdt_buf_free(d, out);
                td_crdt_buf_free(d, nv);
            }
            break;
        }
        case 2:
            if (td_crdt_snapshot_encode(d, &out, &len) == TD_CRDT_OK) {
                td_crdt_options o;
                memset(&o, 0, sizeof o);
                o.alloc = counting_hook;
                o.alloc_ud = &c;
                o.agent = 0x78;
                td_crdt_doc *l = NULL;
                if (td_crdt_doc_load(&o, out, len, &l, NULL) == TD_CRDT_OK)
                    td_crdt_doc_free(l);
                td_crdt_buf_free(d, out);
            }
            break;
        default: {
            int more = 0;
            if (td_crdt_root(d, TD_CRDT_TEXT, "t", 1, &t) == TD_CRDT_OK)
                (void)td_crdt_text_insert(d, t, 0, "more", 4);
            if (td_crdt_commit_max(d, 64, &out, &len, &more) == TD_CRDT_OK)
                td_crdt_buf_free(d, out);
            break;
        }
        }
    }
    /* memory is back: re-apply, then sync with the reference */
    c.fail_at = 0;
    for (int i = 0; i < s->n; i++)
        CHECK_OK(d, td_crdt_apply(d, s->batch[i].p, s->batch[i].len, NULL));
    CHECK(td_crdt_pending_ops(d) == 0);
    td_crdt_doc *ref = tt_load_doc(0x4243, &s->ref_snap);
    /* d holds exactly ref's ops plus its own */
    tt_bytes rv = tt_vv(ref);
    tt_bytes mine = tt_diff(d, &rv);
    if (mine.len)
        CHECK_OK(ref, td_crdt_apply(ref, mine.p, mine.len, NULL));
    tt_bytes_free(&mine);
    tt_bytes_free(&rv);
    check_same_snap(d, ref);
    char why[200];
    CHECK_MSG(tt_doc_valid(d, why, sizeof why), "%s", why);
    td_crdt_doc_free(ref);
    unsigned long made = c.nallocs;
    td_crdt_doc_free(d);
    CHECK(c.live == 0);
    return made;
}

static void test_oom(void)
{
    oom_setup s;
    oom_setup_build(&s, g_seed);
    /* count the allocations of a run that never fails (fail_at past the end) */
    unsigned long total = oom_run(&s, (unsigned long)-1, g_seed);
    unsigned long step = total / 1500 + 1;
    printf("  out of memory: %lu allocations, failing each %lu-th of them\n", total, step);
    for (unsigned long n = 1; n <= total; n += step) {
        char ctx[64];
        snprintf(ctx, sizeof ctx, "oom fail_at=%lu", n);
        tt_test_context = ctx;
        oom_run(&s, n, g_seed);
    }
    tt_test_context = NULL;
    oom_setup_free(&s);
}

/* ---- allocation amplification ----------------------------------------------- */

static size_t put_varint(uint8_t *p, uint64_t v)
{
    uint8_t tmp[TD_CRDT_VARINT_MAX];
    size_t n = td_crdt_varint_put(tmp, v);
    memcpy(p, tmp, n);
    return n;
}

static size_t put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return 8;
}

/* Applies p to a new document through a counting hook; returns the peak of
 * live bytes minus what the empty document held. */
static size_t peak_of_apply(const uint8_t *p, size_t len, td_crdt_err *err)
{
    counting c = {0, 0, 0, 0, 0};
    td_crdt_doc *d = counting_doc(&c, 0x5);
    CHECK(d != NULL);
    size_t base = c.live;
    c.peak = c.live;
    *err = td_crdt_apply(d, p, len, NULL);
    size_t peak = c.peak - base;
    td_crdt_doc_free(d);
    CHECK(c.live == 0);
    return peak;
}

static void test_amplification(void)
{
    enum { SZ = 4 << 20 };
    uint8_t *b = malloc(SZ + 64);
    CHECK(b != NULL);
    /* Decoding and planning take at most 62 bytes per op kept (48 the op, 14
     * the plan), and tiny ops of one kind coalesce; a valid batch also grows
     * the document (a list item: 16 bytes of value plus its share of a run).
     * The worst found, one null list element per 4-byte op, is ~21.5x. */
    const size_t bound_mul = 24, bound_add = 1 << 20;
    struct {
        const char *name;
        int valid;
    } kinds[] = {
        {"2M CONT NOPs (valid)", 1},
        {"NOPs alternating 2 agents (valid)", 1},
        {"deleted text runs, CONT LEFTPREV (valid)", 1},
        {"list items one per op (valid)", 1},
        {"2M NOPs, the last malformed", 0},
        {"claims 2M ops, holds 10", 0},
        {"claims 4,000,000 objects", 0},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        size_t n = 0;
        memcpy(b, "TB\x01", 3);
        n = 3;
        int two = k == 1;
        n += put_varint(b + n, two ? 2 : 1);
        n += put_u64(b + n, 0x10);
        if (two)
            n += put_u64(b + n, 0x11);
        if (k == 6) {
            n += put_varint(b + n, 4000000);
            while (n < SZ)
                b[n++] = 3; /* nested object tags, then nothing valid */
        } else {
            n += put_varint(b + n, 1);
            b[n++] = (uint8_t)(k == 3 ? 1 : 0); /* root text / list "t" */
            n += put_varint(b + n, 1);
            b[n++] = 't';
            size_t nops_at = n;
            n += 4; /* room for the op count, filled below */
            uint32_t ops = 0, seq[2] = {0, 0};
            while (n + 32 < SZ && !(k == 5 && ops == 10)) {
                if (k == 0 || k == 4 || k == 5) { /* NOP len 1 */
                    if (ops == 0) {
                        b[n++] = 3;
                        n += put_varint(b + n, 0);
                        n += put_varint(b + n, 0);
                    } else {
                        b[n++] = 3 | 4;
                    }
                    b[n++] = 1;
                } else if (k == 1) {
                    uint32_t a = ops & 1;
                    b[n++] = 3;
                    n += put_varint(b + n, a);
                    n += put_varint(b + n, seq[a]++);
                    b[n++] = 1;
                } else if (k == 2) { /* INS deleted text, len 1 */
                    if (ops == 0) {
                        b[n++] = 0 | 8 | 16 | 32 | 128;
                        n += put_varint(b + n, 0);
                        n += put_varint(b + n, 0);
                    } else {
                        b[n++] = 0 | 4 | 8 | 32 | 64 | 128;
                    }
                    b[n++] = 1;
                    b[n++] = 0;
                } else { /* list: one null per op */
                    if (ops == 0) {
                        b[n++] = 0 | 16 | 32;
                        n += put_varint(b + n, 0);
                        n += put_varint(b + n, 0);
                    } else {
                        b[n++] = 0 | 4 | 32 | 64;
                    }
                    b[n++] = 1;
                    b[n++] = 0;
                    b[n++] = 0; /* value: null */
                }
                ops++;
            }
            uint32_t claim = k == 5 ? 2u << 20 : ops;
            if (k == 4)
                b[n - 2] = 3 | 4 | 8; /* a NOP with a flag it may not have */
            /* the count as a 4-byte varint (non-minimal is invalid): shift */
            uint8_t cnt[TD_CRDT_VARINT_MAX];
            size_t cl = td_crdt_varint_put(cnt, claim);
            memmove(b + nops_at + cl, b + nops_at + 4, n - nops_at - 4);
            memcpy(b + nops_at, cnt, cl);
            n -= 4 - cl;
        }
        td_crdt_err e;
        size_t peak = peak_of_apply(b, n, &e);
        printf("  %-42s %7zu bytes in: peak %9zu bytes allocated (%.2fx), %s\n", kinds[k].name, n,
               peak, (double)peak / (double)n, td_crdt_strerror(e));
        CHECK_MSG(kinds[k].valid ? e == TD_CRDT_OK : e != TD_CRDT_OK, "%s: %s", kinds[k].name,
                  td_crdt_strerror(e));
        CHECK_MSG(peak <= bound_mul * n + bound_add, "%s: peak %zu > %zux input + 1 MiB",
                  kinds[k].name, peak, bound_mul);
    }
    free(b);
}

/* ---- a large pending set ---------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_pending_large(void)
{
    enum { NPARK = 100000, NAPPLY = 1000 };
    td_crdt_doc *d = tt_new_doc(0x1);
    uint8_t b[64];
    double t0 = now_s();
    /* agent 0x1000+i inserts "x" after item (0x5, i), which is missing */
    for (uint32_t i = 0; i < NPARK; i++) {
        size_t n = 0;
        memcpy(b, "TB\x01\x02", 4);
        n = 4;
        n += put_u64(b + n, 0x5);
        n += put_u64(b + n, 0x1000 + (uint64_t)i);
        b[n++] = 1, b[n++] = 0, b[n++] = 1, b[n++] = 't'; /* root text "t" */
        b[n++] = 1;                                       /* one op */
        b[n++] = 0x80 | 0x20;                             /* INS text, no right */
        b[n++] = 1, b[n++] = 0;                           /* agent 1, seq 0 */
        b[n++] = 1, b[n++] = 0;                           /* len 1, object 0 */
        b[n++] = 0;                                       /* left: agent 0 */
        n += put_varint(b + n, i);                        /*       seq i */
        b[n++] = 1, b[n++] = 'x';
        td_crdt_apply_info info;
        CHECK_OK(d, td_crdt_apply(d, b, n, &info));
        CHECK(info.parked == 1);
    }
    double t1 = now_s();
    /* 1,000 unrelated batches: agent 0x7 types at the start */
    for (uint32_t i = 0; i < NAPPLY; i++) {
        size_t n = 0;
        memcpy(b, "TB\x01\x01", 4);
        n = 4;
        n += put_u64(b + n, 0x7);
        b[n++] = 1, b[n++] = 0, b[n++] = 1, b[n++] = 't';
        b[n++] = 1;
        b[n++] = 0x80 | 0x10 | 0x20;
        b[n++] = 0;
        n += put_varint(b + n, i);
        b[n++] = 1, b[n++] = 0;
        b[n++] = 1, b[n++] = 'y';
        td_crdt_apply_info info;
        CHECK_OK(d, td_crdt_apply(d, b, n, &info));
        CHECK(info.ops_applied == 1);
    }
    double t2 = now_s();
    CHECK(td_crdt_pending_ops(d) == NPARK);
    /* now agent 0x5's run arrives and releases every parked batch */
    td_crdt_doc *five = tt_new_doc(0x5);
    td_crdt_obj t;
    CHECK_OK(five, td_crdt_root(five, TD_CRDT_TEXT, "t", 1, &t));
    char *run = malloc(NPARK);
    CHECK(run != NULL);
    memset(run, 'a', NPARK);
    CHECK_OK(five, td_crdt_text_insert(five, t, 0, run, NPARK));
    free(run);
    tt_bytes fb = tt_commit(five);
    td_crdt_apply_info info;
    CHECK_OK(d, td_crdt_apply(d, fb.p, fb.len, &info));
    double t3 = now_s();
    CHECK(td_crdt_pending_ops(d) == 0);
    CHECK(info.ops_applied == NPARK + NPARK);
    printf("  (timing, not asserted) %d parked 1-op batches: parking %.3f s; %d unrelated "
           "applies %.3f s (%.1f us each); releasing all %.3f s\n",
           NPARK, t1 - t0, NAPPLY, t2 - t1, (t2 - t1) * 1e6 / NAPPLY, t3 - t2);
    tt_bytes_free(&fb);
    td_crdt_doc_free(five);
    td_crdt_doc_free(d);
}

int main(int argc, char **argv)
{
    g_seed = (uint64_t)time(NULL);
    td_check_seed(argc, argv, &g_seed);
    static const td_check_case tests[] = {
        {"apply_ex", test_apply_ex},
        {"split_random", test_split_random},
        {"split_paste", test_split_paste},
        {"amplification", test_amplification},
        {"pending_large", test_pending_large},
        {"oom", test_oom},
    };
    return td_check_cases(tests, sizeof tests / sizeof tests[0], argv[0], &g_seed);
}
