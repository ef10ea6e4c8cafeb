/*
 * test_crdt_lazy.c -- lazy trusted loads (issue 14). A trusted load
 * (td_crdt_options.trusted_snapshot) decodes only what reading needs and
 * leaves the history (runs, id indexes, delete records) to the first call
 * that needs it (crdt/README.md, "Lazy documents"). The property: a lazily
 * loaded replica behaves exactly like a fully loaded (untrusted) one, for
 * every kind of public call made first and for random calls after it.
 *
 *   lazy_equivalence  random documents of three replicas (texts with
 *                     multi-byte UTF-8, maps with nested texts, sometimes a
 *                     list, concurrent edits, deletes), encoded; for every op
 *                     kind as the first call on a fresh lazy and a fresh full
 *                     replica, then random ops: same results (codes, batches,
 *                     diffs, apply info), same texts, JSON, version vectors,
 *                     events, and snapshots byte-identical to the original
 *   lazy_oom          a tt_failing allocation swept over the first
 *                     history-using call (the deferred decode and the call's
 *                     own work): NOMEM leaving the replica as it was, or
 *                     success; a retry makes the replica equal the full one
 *   lazy_corrupt      a "trusted" snapshot whose run column is damaged loads
 *                     lazily, reads, then every history-using call returns
 *                     DECODE (the replica stays readable); random damage after
 *                     the text column never crashes
 *
 * `test_crdt_lazy [seed]`; a failure prints the command that replays it.
 */
#define _POSIX_C_SOURCE 200809L
#include "td_test_util.h"
#include "crdt_internal.h" /* td_crdt_doc.lazy, td_crdt_ent_get / _put */

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t seed;

enum { NREP = 3, MAXPOOL = 64 };

/* ---- random documents ------------------------------------------------------ */

typedef struct world {
    tt_rng r;
    int with_list;
    td_crdt_doc *rep[NREP];
    tt_bytes batches[MAXPOOL]; /* every batch committed, also after the snapshot */
    size_t nb;
    tt_bytes vvs[MAXPOOL]; /* version vectors seen along the way */
    size_t nv;
    tt_bytes snap;         /* of rep[0], in the middle of it all */
    uint64_t agent0;
} world;

static void pool_add(tt_bytes *pool, size_t *n, tt_bytes b)
{
    if (b.len == 0 || *n == MAXPOOL) {
        tt_bytes_free(&b);
        return;
    }
    pool[(*n)++] = b;
}

static void rand_edit(tt_rng *r, td_crdt_doc *d, int with_list)
{
    char buf[4 * 64 + 8];
    td_crdt_obj t = tt_pick_text(d, tt_rng_next(r)), m;
    CHECK_OK(d, td_crdt_root(d, TD_CRDT_MAP, "m", 1, &m));
    size_t tl = t ? td_crdt_text_length(d, t) : 0;
    switch (tt_rng_below(r, 10)) {
    case 0: case 1: case 2: case 3:
        if (t) {
            size_t len = tt_rand_utf8(r, 1 + tt_rng_below(r, tt_rng_chance(r, 1, 5) ? 60 : 4), buf);
            CHECK_OK(d, td_crdt_text_insert(d, t, tt_rng_below(r, tl + 1), buf, len));
        }
        break;
    case 4: case 5:
        if (tl) {
            size_t pos = tt_rng_below(r, tl);
            CHECK_OK(d, td_crdt_text_delete(d, t, pos, 1 + tt_rng_below(r, tl - pos < 6 ? tl - pos : 6)));
        }
        break;
    case 6: {
        char key[2] = {(char)('0' + tt_rng_below(r, 6)), 0};
        td_crdt_value v = tt_rand_scalar(r, buf);
        CHECK_OK(d, td_crdt_map_set(d, m, key, 1, &v));
        break;
    }
    case 7: {
        char key[2] = {(char)('0' + tt_rng_below(r, 6)), 0};
        CHECK_OK(d, td_crdt_map_delete(d, m, key, 1));
        break;
    }
    case 8: {
        char key[2] = {(char)('0' + tt_rng_below(r, 4)), 0};
        td_crdt_obj o;
        CHECK_OK(d, td_crdt_map_set_obj(d, m, key, 1, TD_CRDT_TEXT, &o));
        size_t len = tt_rand_utf8(r, 1 + tt_rng_below(r, 6), buf);
        CHECK_OK(d, td_crdt_text_insert(d, o, 0, buf, len));
        break;
    }
    default:
        if (with_list) {
            td_crdt_obj l;
            CHECK_OK(d, td_crdt_root(d, TD_CRDT_LIST, "l", 1, &l));
            td_crdt_value v = tt_rand_scalar(r, buf);
            CHECK_OK(d, td_crdt_list_insert(d, l, tt_rng_below(r, td_crdt_list_length(d, l) + 1), &v, 1));
        }
        break;
    }
}

/* Random rounds of edits and partial syncs among the replicas; snapshots
 * rep[0] part of the way, and keeps going so that later batches are new to
 * the snapshot (some of them parked there: their dependencies are missing). */
static void world_build(world *w, uint64_t s)
{
    memset(w, 0, sizeof *w);
    tt_rng_seed(&w->r, s);
    w->with_list = tt_rng_chance(&w->r, 1, 5);
    for (int i = 0; i < NREP; i++)
        w->rep[i] = tt_new_doc(1 + (tt_rng_below(&w->r, 1000) * NREP + (uint64_t)i) * 1000003ull);
    w->agent0 = td_crdt_doc_agent(w->rep[0]);
    size_t rounds = 4 + tt_rng_below(&w->r, 40);
    size_t snap_at = rounds / 2 + tt_rng_below(&w->r, rounds / 2);
    for (size_t k = 0; k < rounds; k++) {
        if (k == snap_at)
            w->snap = tt_snap(w->rep[0]);
        int i = (int)tt_rng_below(&w->r, NREP);
        if (k > snap_at && i == 0)
            i = 1;
        size_t n = 1 + tt_rng_below(&w->r, 8);
        for (size_t e = 0; e < n; e++)
            rand_edit(&w->r, w->rep[i], w->with_list);
        tt_bytes b = tt_commit(w->rep[i]);
        for (int j = 0; j < NREP; j++)
            if (j != i && b.len && (j || k < snap_at) && tt_rng_chance(&w->r, 1, 2)) {
                td_crdt_apply_info info;
                CHECK_OK(w->rep[j], td_crdt_apply(w->rep[j], b.p, b.len, &info));
            }
        pool_add(w->batches, &w->nb, b);
        if (tt_rng_chance(&w->r, 1, 4))
            pool_add(w->vvs, &w->nv, tt_vv(w->rep[tt_rng_below(&w->r, NREP)]));
        if (k < snap_at && tt_rng_chance(&w->r, 1, 8))
            tt_sync_both(w->rep[0], w->rep[1 + tt_rng_below(&w->r, NREP - 1)]);
    }
    if (!w->snap.p)
        w->snap = tt_snap(w->rep[0]);
    pool_add(w->vvs, &w->nv, tt_vv(w->rep[1]));
}

static void world_free(world *w)
{
    for (int i = 0; i < NREP; i++)
        td_crdt_doc_free(w->rep[i]);
    for (size_t i = 0; i < w->nb; i++)
        tt_bytes_free(&w->batches[i]);
    for (size_t i = 0; i < w->nv; i++)
        tt_bytes_free(&w->vvs[i]);
    tt_bytes_free(&w->snap);
}

/* ---- loading -------------------------------------------------------------------- */

static td_crdt_doc *load(const tt_bytes *snap, uint64_t agent, int trusted, tt_failing *c)
{
    td_crdt_options o;
    memset(&o, 0, sizeof o);
    o.agent = agent;
    o.trusted_snapshot = trusted;
    o.alloc = tt_failing_hook;
    o.alloc_ud = c;
    td_crdt_doc *d = NULL;
    const char *msg = NULL;
    td_crdt_err e = td_crdt_doc_load(&o, snap->p, snap->len, &d, &msg);
    CHECK_MSG(e == TD_CRDT_OK, "load (trusted %d): %s (%s)", trusted, td_crdt_strerror(e),
              msg ? msg : "");
    return d;
}

static int is_lazy(const td_crdt_doc *d)
{
    return d->lazy.snap != NULL;
}

/* ---- ops ------------------------------------------------------------------------ */

enum {
    OP_READ,       /* texts, lengths, map entries, vv_get, op_count, pending */
    OP_JSON,
    OP_VV,         /* td_crdt_vv_encode */
    OP_NEW_ROOT,   /* a root that did not exist, then reads */
    OP_ENCODE,
    OP_APPLY,
    OP_APPLY_NOPARK,
    OP_TEXT_INS,
    OP_TEXT_DEL,
    OP_MAP_SET,
    OP_MAP_DEL,
    OP_MAP_SET_OBJ,
    OP_LIST,       /* into root list "l" (made if missing) */
    OP_COMMIT,
    OP_COMMIT_MAX,
    OP_DIFF,
    OP_DIFF_MAX,
    OP_ENCODE_V1,
    NOPS
};
static const char *const op_name[NOPS] = {
    "read", "json", "vv_encode", "new_root", "encode", "apply", "apply_nopark",
    "text_insert", "text_delete", "map_set", "map_delete", "map_set_obj", "list_insert",
    "commit", "commit_max", "diff", "diff_max", "encode_v1"};
/* whether the op needs (or changes) the history: 0 no (the lazy state
 * stays), 2 always (it ends if the call works), 1 if it has something to do
 * (an insert into a text that is not there does nothing) */
static const int op_hist[NOPS] = {0, 0, 0, 0, 2, 2, 2, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2};

typedef struct opspec {
    int kind;
    uint64_t a, b, c;
    char str[4 * 16 + 8];
    size_t slen;
} opspec;

static opspec rand_op(tt_rng *r, int kind)
{
    opspec op;
    memset(&op, 0, sizeof op);
    op.kind = kind < 0 ? (int)tt_rng_below(r, NOPS) : kind;
    op.a = tt_rng_next(r);
    op.b = tt_rng_next(r);
    op.c = tt_rng_next(r);
    op.slen = tt_rand_utf8(r, 1 + tt_rng_below(r, 16), op.str);
    return op;
}

/* What an op returned, and a digest of what it read. */
typedef struct outcome {
    td_crdt_err e;
    tt_bytes out, out2;
    uint64_t n[6];
} outcome;

static void outcome_free(outcome *o)
{
    tt_bytes_free(&o->out);
    tt_bytes_free(&o->out2);
}

static void take(td_crdt_doc *d, tt_bytes *dst, uint8_t *p, size_t len)
{
    *dst = tt_bytes_copy(p, len);
    td_crdt_buf_free(d, p);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* A digest of the visible state through the reading calls only (none of
 * them ends the lazy state). */
static uint64_t read_digest(td_crdt_doc *d)
{
    uint64_t h = 14695981039346656037ull;
    td_crdt_obj m;
    for (uint64_t k = 0; k < 16; k += 1) {
        td_crdt_obj t = tt_pick_text(d, k);
        if (!t)
            continue;
        char *s = NULL;
        size_t n = 0;
        CHECK_OK(d, td_crdt_text_get(d, t, &s, &n));
        CHECK(strlen(s) == n && tt_utf8_count(s, n) == td_crdt_text_length(d, t));
        h = fnv(h, s, n);
        td_crdt_buf_free(d, s);
    }
    CHECK_OK(d, td_crdt_root(d, TD_CRDT_MAP, "m", 1, &m));
    size_t ms = td_crdt_map_size(d, m);
    for (size_t i = 0; i < ms; i++) {
        const char *key;
        size_t klen;
        td_crdt_value v;
        CHECK_OK(d, td_crdt_map_entry(d, m, i, &key, &klen, &v));
        h = fnv(h, key, klen);
        h = fnv(h, &v.type, sizeof v.type);
        if (v.type == TD_CRDT_V_STR)
            h = fnv(h, v.u.str.ptr, v.u.str.len);
    }
    uint64_t x[3] = {td_crdt_op_count(d), td_crdt_vv_get(d, 1 + 7 * 1000003ull),
                     td_crdt_pending_ops(d)};
    return fnv(h, x, sizeof x);
}

static void do_op(td_crdt_doc *d, const world *w, const opspec *op, outcome *o)
{
    memset(o, 0, sizeof *o);
    td_crdt_obj t = tt_pick_text(d, op->a), m;
    CHECK_OK(d, td_crdt_root(d, TD_CRDT_MAP, "m", 1, &m));
    size_t tl = t ? td_crdt_text_length(d, t) : 0;
    uint8_t *p = NULL, *p2 = NULL;
    size_t len = 0, len2 = 0;
    int flag = 0;
    char key[2] = {(char)('0' + op->b % 6), 0};
    const tt_bytes *vv = w->nv ? &w->vvs[op->c % w->nv] : NULL;
    switch (op->kind) {
    case OP_READ:
        o->n[0] = read_digest(d);
        break;
    case OP_JSON:
        o->e = td_crdt_to_json(d, (char **)&p, &len);
        if (!o->e)
            take(d, &o->out, p, len);
        break;
    case OP_VV:
        o->e = td_crdt_vv_encode(d, &p, &len);
        if (!o->e)
            take(d, &o->out, p, len);
        break;
    case OP_NEW_ROOT: {
        char name[12];
        snprintf(name, sizeof name, "new%u", (unsigned)(op->b % 3));
        td_crdt_obj h;
        o->e = td_crdt_root(d, (td_crdt_kind)(1 + op->c % 3), name, strlen(name), &h);
        o->n[0] = h;
        o->n[1] = read_digest(d);
        break;
    }
    case OP_ENCODE:
        o->e = td_crdt_snapshot_encode(d, &p, &len);
        if (!o->e)
            take(d, &o->out, p, len);
        break;
    case OP_ENCODE_V1:
        o->e = td_crdt_snapshot_encode_v1(d, &p, &len);
        if (!o->e)
            take(d, &o->out, p, len);
        break;
    case OP_APPLY:
    case OP_APPLY_NOPARK: {
        if (!w->nb)
            break;
        const tt_bytes *b = &w->batches[op->b % w->nb];
        td_crdt_apply_info info;
        td_crdt_apply_opts ao = {.flags = TD_CRDT_APPLY_NO_PARK};
        o->e = td_crdt_apply_ex(d, b->p, b->len, op->kind == OP_APPLY ? NULL : &ao, &info);
        o->n[0] = info.ops_applied;
        o->n[1] = info.ops_duplicate;
        o->n[2] = (uint64_t)info.parked;
        o->n[3] = (uint64_t)td_crdt_apply_partial(d);
        break;
    }
    case OP_TEXT_INS:
        if (t)
            o->e = td_crdt_text_insert(d, t, op->b % (tl + 1), op->str, op->slen);
        break;
    case OP_TEXT_DEL:
        if (t)
            o->e = td_crdt_text_delete(d, t, op->b % (tl + 1), tl ? op->c % 4 : 0);
        break;
    case OP_MAP_SET: {
        char buf[4 * 8 + 8];
        tt_rng r;
        tt_rng_seed(&r, op->c);
        td_crdt_value v = tt_rand_scalar(&r, buf);
        o->e = td_crdt_map_set(d, m, key, 1, &v);
        break;
    }
    case OP_MAP_DEL:
        o->e = td_crdt_map_delete(d, m, key, 1);
        break;
    case OP_MAP_SET_OBJ: {
        td_crdt_obj c = 0;
        o->e = td_crdt_map_set_obj(d, m, key, 1, (td_crdt_kind)(1 + op->c % 3), &c);
        o->n[0] = c;
        break;
    }
    case OP_LIST: {
        td_crdt_obj l;
        CHECK_OK(d, td_crdt_root(d, TD_CRDT_LIST, "l", 1, &l));
        td_crdt_value v = {.type = TD_CRDT_V_INT, .u.i = (int64_t)(op->c % 100)};
        o->e = td_crdt_list_insert(d, l, op->b % (td_crdt_list_length(d, l) + 1), &v, 1);
        break;
    }
    case OP_COMMIT:
        o->e = td_crdt_commit(d, &p, &len);
        if (!o->e)
            take(d, &o->out, p, len);
        break;
    case OP_COMMIT_MAX:
        o->e = td_crdt_commit_max(d, 8 + op->b % 64, &p, &len, &flag);
        o->n[0] = (uint64_t)flag;
        if (!o->e)
            take(d, &o->out, p, len);
        break;
    case OP_DIFF:
        o->e = td_crdt_diff(d, vv ? vv->p : NULL, vv ? vv->len : 0, &p, &len);
        if (!o->e)
            take(d, &o->out, p, len);
        break;
    case OP_DIFF_MAX:
        o->e = td_crdt_diff_max(d, vv ? vv->p : NULL, vv ? vv->len : 0, 16 + op->b % 200, &p,
                                &len, &p2, &len2, &flag);
        o->n[0] = (uint64_t)flag;
        if (!o->e) {
            take(d, &o->out, p, len);
            take(d, &o->out2, p2, len2);
        }
        break;
    }
}

static void check_same_outcome(const outcome *a, const outcome *b, int kind)
{
    CHECK_MSG(a->e == b->e, "%s: lazy %s, full %s", op_name[kind], td_crdt_strerror(a->e),
              td_crdt_strerror(b->e));
    CHECK_MSG(tt_bytes_eq(&a->out, &b->out) && tt_bytes_eq(&a->out2, &b->out2),
              "%s: outputs differ (%zu vs %zu bytes)", op_name[kind], a->out.len, b->out.len);
    CHECK_MSG(memcmp(a->n, b->n, sizeof a->n) == 0, "%s: results differ", op_name[kind]);
}

/* Events, as a digest. */
static void on_event(void *ud, const td_crdt_event *ev)
{
    uint64_t *h = ud;
    uint64_t x[5] = {(uint64_t)ev->kind, ev->obj, ev->pos, ev->count, (uint64_t)ev->local};
    *h = fnv(*h, x, sizeof x);
    if (ev->kind == TD_CRDT_EV_KEY)
        *h = fnv(*h, ev->key, ev->key_len);
}

/* The whole state, through calls that may end the lazy state. */
static void check_same_state(td_crdt_doc *lz, td_crdt_doc *fu, const char *when)
{
    CHECK_MSG(read_digest(lz) == read_digest(fu), "%s: reads differ", when);
    char *j1 = tt_json(lz), *j2 = tt_json(fu);
    int same_json = strcmp(j1, j2) == 0;
    free(j1);
    free(j2);
    CHECK_MSG(same_json, "%s: JSON differs", when);
    tt_bytes v1 = tt_vv(lz), v2 = tt_vv(fu);
    int same_vv = tt_bytes_eq(&v1, &v2);
    tt_bytes_free(&v1);
    tt_bytes_free(&v2);
    CHECK_MSG(same_vv, "%s: version vectors differ", when);
    tt_bytes s1 = tt_snap(lz), s2 = tt_snap(fu);
    int same_snap = tt_bytes_eq(&s1, &s2);
    tt_bytes_free(&s1);
    tt_bytes_free(&s2);
    CHECK_MSG(same_snap, "%s: snapshots differ", when);
}

/* ---- lazy_equivalence ------------------------------------------------------------- */

static void test_equivalence(void)
{
    unsigned long lazy_docs = 0, eager_docs = 0, runs = 0;
    for (int it = 0; it < 40; it++) {
        char ctx[160];
        snprintf(ctx, sizeof ctx, "test_crdt_lazy %llu (document %d)", (unsigned long long)seed, it);
        tt_test_context = ctx;
        world w;
        world_build(&w, seed * 1000 + (uint64_t)it);
        uint64_t agent = tt_rng_chance(&w.r, 1, 2) ? w.agent0 : 77;
        /* the plain facts first: a lazy load reads the same and re-encodes
         * to the same bytes */
        td_crdt_doc *lz = load(&w.snap, agent, 1, NULL), *fu = load(&w.snap, agent, 0, NULL);
        if (!w.with_list)
            CHECK(is_lazy(lz));
        lazy_docs += is_lazy(lz);
        eager_docs += !is_lazy(lz);
        CHECK(!is_lazy(fu));
        CHECK(read_digest(lz) == read_digest(fu));
        tt_bytes s = tt_snap(lz);
        CHECK(tt_bytes_eq(&s, &w.snap));
        CHECK(!is_lazy(lz));
        tt_bytes_free(&s);
        td_crdt_doc_free(lz);
        td_crdt_doc_free(fu);
        for (int kind = 0; kind < NOPS; kind++) {
            tt_rng r;
            tt_rng_seed(&r, seed ^ (uint64_t)(it * 131 + kind));
            lz = load(&w.snap, agent, 1, NULL);
            fu = load(&w.snap, agent, 0, NULL);
            int was_lazy = is_lazy(lz);
            uint64_t ev1 = 1, ev2 = 1;
            td_crdt_set_observer(lz, on_event, &ev1);
            td_crdt_set_observer(fu, on_event, &ev2);
            outcome a, b;
            opspec op = rand_op(&r, kind);
            do_op(lz, &w, &op, &a);
            do_op(fu, &w, &op, &b);
            check_same_outcome(&a, &b, kind);
            /* reads keep it lazy; a history-using call that worked ends it
             * (one that did nothing -- an empty insert -- may not) */
            if (was_lazy && !op_hist[kind])
                CHECK_MSG(is_lazy(lz), "%s ended the lazy state", op_name[kind]);
            if (was_lazy && op_hist[kind] == 2 && a.e == TD_CRDT_OK)
                CHECK_MSG(!is_lazy(lz), "%s kept the lazy state", op_name[kind]);
            outcome_free(&a);
            outcome_free(&b);
            size_t more = tt_rng_below(&r, 12);
            for (size_t k = 0; k < more; k++) {
                op = rand_op(&r, -1);
                do_op(lz, &w, &op, &a);
                do_op(fu, &w, &op, &b);
                check_same_outcome(&a, &b, op.kind);
                outcome_free(&a);
                outcome_free(&b);
            }
            CHECK_MSG(ev1 == ev2, "events differ (first op %s)", op_name[kind]);
            snprintf(ctx, sizeof ctx, "test_crdt_lazy %llu (document %d, first op %s)",
                     (unsigned long long)seed, it, op_name[kind]);
            check_same_state(lz, fu, ctx);
            td_crdt_doc_free(lz);
            td_crdt_doc_free(fu);
            runs++;
        }
        world_free(&w);
    }
    printf("  %lu lazy and %lu eager (lists) documents, %lu first-op runs\n", lazy_docs,
           eager_docs, runs);
    CHECK(lazy_docs > 10);
}

/* ---- lazy_oom --------------------------------------------------------------------- */

/* Makes the roots do_op looks up, so that an allocation failure cannot hit
 * td_crdt_root (which would fail the test, not the call under test). */
static void prepare(td_crdt_doc *d)
{
    td_crdt_obj l;
    (void)read_digest(d);
    CHECK_OK(d, td_crdt_root(d, TD_CRDT_LIST, "l", 1, &l));
}

/* Every allocation of the first history-using call of each kind fails
 * once, in turn. One in the deferred decode: the call returns NOMEM, the
 * replica stays lazy and reads as before. One in the call's own work,
 * after the decode: NOMEM (or a success the call got around) and the
 * replica as before -- snapshot and reads -- except for an apply that says
 * it applied part (td_crdt_apply_partial). Either way the same call again
 * gives exactly what the fully loaded replica gave (an apply that applied
 * part: the same error and state). */
static void test_oom(void)
{
    unsigned long failures = 0, own = 0;
    for (int it = 0; it < 8; it++) {
        char ctx[160];
        world w;
        world_build(&w, seed * 7 + (uint64_t)it);
        if (w.with_list) {
            world_free(&w);
            continue;
        }
        for (int kind = 0; kind < NOPS; kind++) {
            if (op_hist[kind] != 2)
                continue;
            tt_rng r;
            tt_rng_seed(&r, seed ^ (uint64_t)(it * 17 + kind));
            opspec op = rand_op(&r, kind);
            td_crdt_doc *fu = load(&w.snap, w.agent0, 0, NULL);
            prepare(fu);
            uint64_t fu_read = read_digest(fu);
            tt_bytes before = tt_snap(fu);
            outcome want;
            do_op(fu, &w, &op, &want);
            /* how many allocations the deferred decode makes, and the call */
            tt_failing c = {0, 0, 0};
            td_crdt_doc *lz = load(&w.snap, w.agent0, 1, &c);
            prepare(lz);
            c.n = 0;
            CHECK_OK(lz, td_crdt_materialize(lz));
            unsigned long nmat = c.n;
            td_crdt_doc_free(lz);
            memset(&c, 0, sizeof c);
            lz = load(&w.snap, w.agent0, 1, &c);
            prepare(lz);
            c.n = 0;
            outcome got;
            do_op(lz, &w, &op, &got);
            unsigned long ncall = c.n;
            outcome_free(&got);
            td_crdt_doc_free(lz);
            CHECK(nmat > 0 && ncall >= nmat);
            for (unsigned long k = 1; k <= ncall; k++) {
                snprintf(ctx, sizeof ctx, "test_crdt_lazy %llu (oom: document %d, %s, allocation %lu)",
                         (unsigned long long)seed, it, op_name[kind], k);
                tt_test_context = ctx;
                memset(&c, 0, sizeof c);
                lz = load(&w.snap, w.agent0, 1, &c);
                prepare(lz);
                c.n = 0;
                c.fail_at = k;
                do_op(lz, &w, &op, &got);
                c.fail_at = 0;
                CHECK(c.failed);
                failures++;
                int partial = 0;
                if (k <= nmat) {
                    CHECK_MSG(got.e == TD_CRDT_ERR_NOMEM, "%s: %s", op_name[kind],
                              td_crdt_strerror(got.e));
                    CHECK(is_lazy(lz));
                    CHECK(read_digest(lz) == fu_read);
                } else if (got.e != TD_CRDT_OK) {
                    own++;
                    CHECK_MSG(got.e == TD_CRDT_ERR_NOMEM, "%s: %s", op_name[kind],
                              td_crdt_strerror(got.e));
                    CHECK(!is_lazy(lz));
                    partial = (kind == OP_APPLY || kind == OP_APPLY_NOPARK) &&
                              td_crdt_apply_partial(lz);
                    if (!partial) {
                        CHECK(read_digest(lz) == fu_read);
                        tt_bytes now = tt_snap(lz);
                        int same = tt_bytes_eq(&now, &before);
                        tt_bytes_free(&now);
                        CHECK_MSG(same, "a failed %s changed the document", op_name[kind]);
                    }
                }
                if (k <= nmat || got.e != TD_CRDT_OK) {
                    outcome_free(&got);
                    do_op(lz, &w, &op, &got);
                }
                if (partial)
                    CHECK(got.e == want.e);
                else
                    check_same_outcome(&got, &want, kind);
                outcome_free(&got);
                check_same_state(lz, fu, ctx);
                td_crdt_doc_free(lz);
            }
            tt_bytes_free(&before);
            outcome_free(&want);
            td_crdt_doc_free(fu);
        }
        world_free(&w);
    }
    printf("  %lu failed allocations survived, %lu of them in the call after the deferred "
           "decode\n", failures, own);
    CHECK(failures > 0 && own > 0);
}

/* ---- lazy_corrupt ------------------------------------------------------------------- */

enum { NCOLS = 10, COL_TEXT = 1, COL_RFLAG = 2 };

/* The snapshot's columns, decoded; *text_end: where the blocks after the
 * text column start. */
static void split_cols(td_crdt_doc *d, const tt_bytes *snap, uint8_t *col[NCOLS],
                       size_t n[NCOLS], size_t *text_end)
{
    td_rd r = {snap->p + 3, snap->p + snap->len, 0};
    const char *why = "";
    for (int c = 0; c < NCOLS; c++) {
        CHECK_OK(d, td_crdt_ent_get(d, &r, &col[c], &n[c], &why));
        if (c == COL_TEXT)
            *text_end = (size_t)(r.p - snap->p);
    }
}

static tt_bytes join_cols(td_crdt_doc *d, uint8_t *col[NCOLS], const size_t n[NCOLS])
{
    td_buf b;
    td_crdt_wb_init(&b, d);
    td_crdt_wb_bytes(&b, "TS\x02", 3);
    for (int c = 0; c < NCOLS; c++)
        td_crdt_ent_put(&b, col[c], n[c]);
    CHECK(!b.oom);
    tt_bytes out = tt_bytes_copy(b.p, b.len);
    td_crdt_wb_free(&b);
    return out;
}

static void test_corrupt(void)
{
    unsigned long refused = 0, random_loads = 0;
    for (int it = 0; it < 20; it++) {
        char ctx[160];
        snprintf(ctx, sizeof ctx, "test_crdt_lazy %llu (corrupt: document %d)",
                 (unsigned long long)seed, it);
        tt_test_context = ctx;
        world w;
        world_build(&w, seed * 13 + (uint64_t)it);
        td_crdt_doc *scratch = tt_new_doc(5);
        uint8_t *col[NCOLS];
        size_t n[NCOLS], text_end = 0;
        split_cols(scratch, &w.snap, col, n, &text_end);
        td_crdt_doc *fu = load(&w.snap, 9, 0, NULL);
        uint64_t want = read_digest(fu);
        if (!w.with_list && n[COL_RFLAG] > 0) {
            /* the run flags lose their last byte: main and text columns
             * intact, so the lazy load works and reads right; the runs do
             * not decode */
            n[COL_RFLAG]--;
            tt_bytes bad = join_cols(scratch, col, n);
            n[COL_RFLAG]++;
            for (int kind = 0; kind < NOPS; kind++) {
                tt_rng r;
                tt_rng_seed(&r, seed + (uint64_t)kind);
                opspec op = rand_op(&r, kind);
                td_crdt_doc *lz = load(&bad, 9, 1, NULL);
                CHECK(is_lazy(lz));
                CHECK(read_digest(lz) == want);
                outcome o;
                do_op(lz, &w, &op, &o);
                if (op_hist[kind] == 2 && (w.nb || (kind != OP_APPLY && kind != OP_APPLY_NOPARK))) {
                    CHECK_MSG(o.e == TD_CRDT_ERR_DECODE, "%s on a damaged snapshot: %s",
                              op_name[kind], td_crdt_strerror(o.e));
                    CHECK(strstr(td_crdt_doc_error(lz), "lazy") != NULL);
                    refused++;
                } else if (op_hist[kind]) {
                    /* an insert or delete of nothing may do nothing */
                    CHECK(o.e == TD_CRDT_ERR_DECODE || o.e == TD_CRDT_OK);
                }
                outcome_free(&o);
                CHECK(is_lazy(lz));
                CHECK(read_digest(lz) == want); /* still readable, unchanged */
                td_crdt_doc *un = NULL;
                CHECK(td_crdt_doc_load(NULL, bad.p, bad.len, &un, NULL) == TD_CRDT_ERR_DECODE);
                td_crdt_doc_free(lz);
            }
            tt_bytes_free(&bad);
        }
        for (int c = 0; c < NCOLS; c++)
            td_crdt_memfree(scratch, col[c]);
        /* random damage after the text column: the lazy load cannot see it;
         * reads work, the first history-using call decodes or refuses */
        tt_rng r;
        tt_rng_seed(&r, seed * 31 + (uint64_t)it);
        for (int k = 0; k < 40 && text_end < w.snap.len; k++) {
            tt_bytes bad = tt_bytes_copy(w.snap.p, w.snap.len);
            size_t span = bad.len - text_end;
            if (tt_rng_chance(&r, 1, 4)) {
                bad.len = text_end + tt_rng_below(&r, span);
            } else {
                for (int f = 0, nf = 1 + (int)tt_rng_below(&r, 3); f < nf; f++)
                    bad.p[text_end + tt_rng_below(&r, span)] ^= (uint8_t)(1 + tt_rng_below(&r, 255));
            }
            td_crdt_options o;
            memset(&o, 0, sizeof o);
            o.trusted_snapshot = 1;
            o.agent = 9;
            td_crdt_doc *lz = NULL;
            if (td_crdt_doc_load(&o, bad.p, bad.len, &lz, NULL) == TD_CRDT_OK) {
                random_loads++;
                CHECK(read_digest(lz) == want || !is_lazy(lz));
                uint8_t *p = NULL;
                size_t len = 0;
                td_crdt_err e = td_crdt_snapshot_encode(lz, &p, &len);
                if (e) {
                    CHECK(e == TD_CRDT_ERR_DECODE || e == TD_CRDT_ERR_LIMIT);
                    CHECK(is_lazy(lz));
                    CHECK(read_digest(lz) == want);
                } else {
                    td_crdt_buf_free(lz, p);
                }
                td_crdt_doc_free(lz);
            }
            tt_bytes_free(&bad);
        }
        td_crdt_doc_free(fu);
        td_crdt_doc_free(scratch);
        world_free(&w);
    }
    printf("  %lu history calls refused a damaged trusted snapshot; %lu randomly damaged "
           "ones loaded\n", refused, random_loads);
    CHECK(refused > 0);
}

int main(int argc, char **argv)
{
    seed = (uint64_t)time(NULL);
    td_check_seed(argc, argv, &seed);
    static const td_check_case tests[] = {
        {"lazy_equivalence", test_equivalence},
        {"lazy_oom", test_oom},
        {"lazy_corrupt", test_corrupt},
    };
    return td_check_cases(tests, sizeof tests / sizeof tests[0], argv[0], &seed);
}
