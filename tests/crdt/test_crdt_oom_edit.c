/*
 * test_crdt_oom_edit.c -- a local edit that runs out of memory changes
 * nothing (crdt/README.md, "All-or-nothing").
 *
 * Random documents of three replicas (texts with multi-byte UTF-8, a list,
 * a map with nested objects, concurrent edits merged, deletes across runs
 * and across other agents' items); replica 0 allocates through a hook that
 * can fail its k-th allocation. Then a script of local edits of every kind
 * (text insert, keystroke, delete, backspace, insert after an item chosen
 * among the tombstones, list insert, insert of an object, list delete, map
 * set, set of an object, delete, new root). For each edit of the script and
 * each k = 1, 2, ... until the edit makes fewer than k allocations, a fresh
 * replica 0 replays the script up to that edit and fails allocation k in
 * it: the call must return NOMEM, emit no event, and leave the document
 * exactly as before (snapshot bytes, JSON, version vector, op count); the
 * same edit with memory back must then return what it returns on a replica
 * that never failed, with the same JSON, snapshot and next commit's bytes.
 *
 * `test_crdt_oom_edit [seed]`; a failure prints the command that replays it.
 */
#define _POSIX_C_SOURCE 200809L
#include "td_test_util.h"
#include "crdt_internal.h" /* td_crdt_seq_place_after, the runs of a text */

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t seed;

enum { NREP = 3, NWORLDS = 40, NSCRIPT = 26 };

enum {
    E_TEXT_INS,
    E_TEXT_KEY,
    E_TEXT_DEL,
    E_TEXT_BACK,
    E_TEXT_PLACE,
    E_LIST_INS,
    E_LIST_OBJ,
    E_LIST_DEL,
    E_MAP_SET,
    E_MAP_OBJ,
    E_MAP_DEL,
    E_ROOT,
    NKINDS
};
static const char *const kind_name[NKINDS] = {
    "text_insert", "keystroke", "text_delete", "backspace", "insert_after_item",
    "list_insert", "list_insert_obj", "list_delete", "map_set", "map_set_obj",
    "map_delete", "new_root"};

/* The id of item i (tombstones counted) of sequence h. */
static td_id item_id(td_crdt_doc *d, td_crdt_obj h, uint32_t i)
{
    td_seq *s = &d->objs[h - 1]->u.seq;
    for (td_leaf *l = s->first; l; l = l->next)
        for (uint32_t j = 0; j < l->n; j++) {
            if (i < l->r[j].len) {
                td_id id = l->r[j].id;
                id.seq += i;
                return id;
            }
            i -= l->r[j].len;
        }
    CHECK(0);
    return (td_id){TD_NONE, 0};
}

/* One edit of the given kind with parameters from r. Setup (roots, place)
 * happens before *armed is set: only the call under test may fail. */
static td_crdt_err edit(td_crdt_doc *d, int kind, tt_rng *r, tt_failing *c, unsigned long fail_at)
{
    char buf[4 * 64 + 8];
    td_crdt_obj t = tt_pick_text(d, tt_rng_next(r)), m, l;
    CHECK_OK(d, td_crdt_root(d, TD_CRDT_MAP, "m", 1, &m));
    CHECK_OK(d, td_crdt_root(d, TD_CRDT_LIST, "l", 1, &l));
    size_t tl = t ? td_crdt_text_length(d, t) : 0, ll = td_crdt_list_length(d, l);
    uint64_t a = tt_rng_next(r), b = tt_rng_next(r);
    td_crdt_value v = tt_rand_scalar(r, buf + 128);
    char key[2] = {(char)('0' + a % 6), 0};
    size_t len = tt_rand_utf8(r, 1 + b % (a % 3 ? 6 : 30), buf);
    int placed = 0;
    if (kind == E_TEXT_PLACE && t && d->objs[t - 1]->u.seq.total) {
        td_seq *s = &d->objs[t - 1]->u.seq;
        CHECK_OK(d, td_crdt_seq_place_after(d, t, 0, item_id(d, t, (uint32_t)(a % s->total))));
        placed = 1;
    }
    if (c) {
        c->n = 0;
        c->failed = 0;
        c->fail_at = fail_at;
    }
    td_crdt_err e = TD_CRDT_OK;
    td_crdt_obj out = 0;
    switch (kind) {
    case E_TEXT_INS:
    case E_TEXT_PLACE:
        if (t)
            e = td_crdt_text_insert(d, t, a % (tl + 1), buf, len);
        break;
    case E_TEXT_KEY:
        if (t)
            e = td_crdt_text_insert(d, t, a % (tl + 1), "k", 1);
        break;
    case E_TEXT_DEL:
        if (tl) {
            size_t pos = a % tl, n = 1 + b % (tl - pos < 24 ? tl - pos : 24);
            e = td_crdt_text_delete(d, t, pos, n);
        }
        break;
    case E_TEXT_BACK:
        if (tl)
            e = td_crdt_text_delete(d, t, a % tl, 1);
        break;
    case E_LIST_INS: {
        td_crdt_value vs[3] = {v, v, v};
        e = td_crdt_list_insert(d, l, a % (ll + 1), vs, 1 + b % 3);
        break;
    }
    case E_LIST_OBJ:
        e = td_crdt_list_insert_obj(d, l, a % (ll + 1), (td_crdt_kind)(1 + b % 3), &out);
        break;
    case E_LIST_DEL:
        if (ll) {
            size_t pos = a % ll;
            e = td_crdt_list_delete(d, l, pos, 1 + b % (ll - pos < 5 ? ll - pos : 5));
        }
        break;
    case E_MAP_SET:
        e = td_crdt_map_set(d, m, key, 1, &v);
        break;
    case E_MAP_OBJ:
        e = td_crdt_map_set_obj(d, m, key, 1, (td_crdt_kind)(1 + b % 3), &out);
        break;
    case E_MAP_DEL:
        e = td_crdt_map_delete(d, m, key, 1);
        break;
    case E_ROOT: {
        char name[8];
        snprintf(name, sizeof name, "r%u", (unsigned)(a % 1000));
        e = td_crdt_root(d, (td_crdt_kind)(1 + b % 3), name, strlen(name), &out);
        break;
    }
    }
    if (c)
        c->fail_at = 0;
    if (placed)
        CHECK_OK(d, td_crdt_seq_place_after(d, 0, 0, (td_id){TD_NONE, 0}));
    return e;
}

static void rand_edit(tt_rng *r, td_crdt_doc *d)
{
    tt_rng er;
    tt_rng_seed(&er, tt_rng_next(r));
    int kind = (int)tt_rng_below(r, 16);
    if (kind >= NKINDS)
        kind = E_TEXT_INS;
    if (kind == E_TEXT_PLACE || kind == E_ROOT)
        kind = E_TEXT_DEL;
    CHECK_OK(d, edit(d, kind, &er, NULL, 0));
}

/* The world of seed s, then the first nedits edits of its script on
 * replica 0 (whose allocations go through c), which is returned. */
static td_crdt_doc *build(uint64_t s, int nedits, tt_failing *c)
{
    tt_rng r;
    tt_rng_seed(&r, s);
    td_crdt_doc *rep[NREP];
    td_crdt_options o;
    memset(&o, 0, sizeof o);
    o.agent = 1 + tt_rng_below(&r, 1000) * 1000003ull;
    o.alloc = tt_failing_hook;
    o.alloc_ud = c;
    CHECK_OK(NULL, td_crdt_doc_new(&o, &rep[0]));
    for (int i = 1; i < NREP; i++)
        rep[i] = tt_new_doc(1 + (tt_rng_below(&r, 1000) * NREP + (uint64_t)i) * 1000003ull);
    size_t rounds = 6 + tt_rng_below(&r, 40);
    for (size_t k = 0; k < rounds; k++) {
        int i = (int)tt_rng_below(&r, NREP);
        size_t n = 1 + tt_rng_below(&r, 10);
        for (size_t e = 0; e < n; e++)
            rand_edit(&r, rep[i]);
        tt_bytes b = tt_commit(rep[i]);
        for (int j = 0; j < NREP; j++)
            if (j != i && b.len && tt_rng_chance(&r, 1, 2)) {
                td_crdt_apply_info info;
                CHECK_OK(rep[j], td_crdt_apply(rep[j], b.p, b.len, &info));
            }
        tt_bytes_free(&b);
        if (tt_rng_chance(&r, 1, 6))
            tt_sync_both(rep[0], rep[1 + tt_rng_below(&r, NREP - 1)]);
    }
    /* some uncommitted local work: the next commit carries it */
    for (size_t e = tt_rng_below(&r, 5); e > 0; e--)
        rand_edit(&r, rep[0]);
    for (int i = 1; i < NREP; i++)
        td_crdt_doc_free(rep[i]);
    for (int j = 0; j < nedits; j++) {
        tt_rng er;
        tt_rng_seed(&er, s * 1000 + (uint64_t)j);
        CHECK_OK(rep[0], edit(rep[0], (int)((s + (uint64_t)j) % NKINDS), &er, NULL, 0));
    }
    return rep[0];
}

static void on_event(void *ud, const td_crdt_event *ev)
{
    (void)ev;
    ++*(unsigned long *)ud;
}

static int same_bytes(tt_bytes a, tt_bytes b)
{
    int same = tt_bytes_eq(&a, &b);
    tt_bytes_free(&a);
    tt_bytes_free(&b);
    return same;
}

static void test_sweep(void)
{
    unsigned long failures = 0, absorbed = 0, per_kind[NKINDS] = {0};
    for (int w = 0; w < NWORLDS; w++) {
        uint64_t ws = seed * 100 + (uint64_t)w;
        for (int j = 0; j < NSCRIPT; j++) {
            int kind = (int)((ws + (uint64_t)j) % NKINDS);
            char ctx[160];
            snprintf(ctx, sizeof ctx, "test_crdt_oom_edit %llu (world %d, edit %d: %s)",
                     (unsigned long long)seed, w, j, kind_name[kind]);
            tt_test_context = ctx;
            /* the replica that never fails */
            td_crdt_doc *ref = build(ws, j, NULL);
            tt_rng er;
            tt_rng_seed(&er, ws * 1000 + (uint64_t)j);
            td_crdt_err want = edit(ref, kind, &er, NULL, 0);
            char *ref_json = tt_json(ref);
            tt_bytes ref_snap = tt_snap(ref), ref_commit = tt_commit(ref);
            td_crdt_doc_free(ref);
            for (unsigned long k = 1;; k++) {
                snprintf(ctx, sizeof ctx,
                         "test_crdt_oom_edit %llu (world %d, edit %d: %s, allocation %lu)",
                         (unsigned long long)seed, w, j, kind_name[kind], k);
                tt_failing c = {0, 0, 0};
                td_crdt_doc *d = build(ws, j, &c);
                tt_bytes snap = tt_snap(d), vv = tt_vv(d);
                char *json = tt_json(d);
                uint64_t nops = td_crdt_op_count(d);
                unsigned long events = 0;
                td_crdt_set_observer(d, on_event, &events);
                tt_rng_seed(&er, ws * 1000 + (uint64_t)j);
                td_crdt_err e = edit(d, kind, &er, &c, k);
                td_crdt_set_observer(d, NULL, NULL);
                int failed = c.failed;
                /* a failure the call got around (a fast path that gives up
                 * and the general one that allocates again) is a success */
                if (failed && e == TD_CRDT_OK)
                    absorbed++;
                else if (failed) {
                    failures++;
                    per_kind[kind]++;
                    CHECK_MSG(e == TD_CRDT_ERR_NOMEM, "%s with allocation %lu failing: %s",
                              kind_name[kind], k, td_crdt_strerror(e));
                    CHECK_MSG(events == 0, "%lu events from a failed edit", events);
                    char *json2 = tt_json(d);
                    int js = strcmp(json, json2) == 0;
                    free(json2);
                    CHECK_MSG(js, "a failed %s changed the content", kind_name[kind]);
                    CHECK_MSG(td_crdt_op_count(d) == nops, "a failed edit changed the op count");
                    CHECK_MSG(same_bytes(tt_vv(d), tt_bytes_copy(vv.p, vv.len)),
                              "a failed edit changed the version vector");
                    CHECK_MSG(same_bytes(tt_snap(d), tt_bytes_copy(snap.p, snap.len)),
                              "a failed %s changed the snapshot", kind_name[kind]);
                    /* memory is back */
                    tt_rng_seed(&er, ws * 1000 + (uint64_t)j);
                    e = edit(d, kind, &er, NULL, 0);
                }
                free(json);
                tt_bytes_free(&snap);
                tt_bytes_free(&vv);
                CHECK_MSG(e == want, "%s: %s, the never-failed replica %s", kind_name[kind],
                          td_crdt_strerror(e), td_crdt_strerror(want));
                char *dj = tt_json(d);
                int js = strcmp(dj, ref_json) == 0;
                free(dj);
                CHECK_MSG(js, "content differs from the never-failed replica");
                CHECK_MSG(same_bytes(tt_snap(d), tt_bytes_copy(ref_snap.p, ref_snap.len)),
                          "snapshot differs from the never-failed replica");
                CHECK_MSG(same_bytes(tt_commit(d), tt_bytes_copy(ref_commit.p, ref_commit.len)),
                          "commit differs from the never-failed replica");
                td_crdt_doc_free(d);
                if (!failed)
                    break;
            }
            free(ref_json);
            tt_bytes_free(&ref_snap);
            tt_bytes_free(&ref_commit);
        }
    }
    tt_test_context = NULL;
    printf("  %lu failed allocations in local edits survived:", failures);
    for (int k = 0; k < NKINDS; k++)
        printf(" %s %lu", kind_name[k], per_kind[k]);
    printf(" (%lu got around)\n", absorbed);
    CHECK(failures > 0);
    CHECK(per_kind[E_TEXT_DEL] > 0 && per_kind[E_TEXT_INS] > 0 && per_kind[E_MAP_SET] > 0);
}

int main(int argc, char **argv)
{
    seed = (uint64_t)time(NULL);
    if (argc > 1)
        seed = strtoull(argv[1], NULL, 10);
    printf("seed %llu\n", (unsigned long long)seed);
    int failed = tt_test_run("oom_edit_sweep", test_sweep);
    if (failed)
        printf("test failed (replay: test_crdt_oom_edit %llu)\n", (unsigned long long)seed);
    return failed ? 1 : 0;
}
