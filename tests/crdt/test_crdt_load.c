/*
 * test_crdt_load.c -- the fast paths of commit and snapshot loading.
 *
 * - commit_reuse: td_crdt_commit reuses its encoder arrays between calls
 *   (crdt/batch.c, d->enc); stale entries in them would name the wrong
 *   agent or object. Commits are made while agents and objects keep being
 *   added, each applied to a second replica, and both must end byte-equal.
 * - load_many_runs: the loader appends runs unindexed and builds the id
 *   indexes at once (radix sort, crdt/snapshot.c), and the history check
 *   finds origins through a hash and range minima (crdt/snapshot_check.c).
 *   A document of three agents with thousands of scattered runs must load,
 *   re-encode to the same bytes, and keep integrating remote and local
 *   edits exactly like the replica it came from; loaded with
 *   trusted_snapshot (the server's load, no whole-history check) it is the
 *   same replica.
 * - load_refuses_repeated_ids: hand-made snapshots whose runs share ids
 *   (the check moved from per-run lookups into the index build) are
 *   refused with "run ids repeat".
 *
 * Run: build/<dir>/tests/crdt/test_crdt_load [seed]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "td_test_util.h"

static uint64_t seed = 14;

static td_crdt_obj root_of(td_crdt_doc *d, td_crdt_kind kind, const char *name)
{
    td_crdt_obj o = 0;
    CHECK_OK(d, td_crdt_root(d, kind, name, strlen(name), &o));
    return o;
}

/* One random edit of text t: an insert or a delete at a random place. */
static void edit_text(tt_rng *r, td_crdt_doc *d, td_crdt_obj t)
{
    size_t len = td_crdt_text_length(d, t);
    if (len > 0 && tt_rng_chance(r, 2, 5)) {
        size_t pos = (size_t)tt_rng_below(r, len);
        size_t n = 1 + (size_t)tt_rng_below(r, len - pos < 4 ? len - pos : 4);
        CHECK_OK(d, td_crdt_text_delete(d, t, pos, n));
    } else {
        char buf[64];
        size_t n = tt_rand_utf8(r, 1 + (size_t)tt_rng_below(r, 5), buf);
        CHECK_OK(d, td_crdt_text_insert(d, t, (size_t)tt_rng_below(r, len + 1), buf, n));
    }
}

static void same_snapshot(td_crdt_doc *a, td_crdt_doc *b)
{
    tt_bytes sa = tt_snap(a), sb = tt_snap(b);
    CHECK(tt_bytes_eq(&sa, &sb));
    tt_bytes_free(&sa);
    tt_bytes_free(&sb);
}

static void test_commit_reuse(void)
{
    tt_rng r;
    tt_rng_seed(&r, seed);
    td_crdt_doc *a = tt_new_doc(1), *b = tt_new_doc(2);
    td_crdt_obj t = root_of(a, TD_CRDT_TEXT, "text");
    td_crdt_obj m = root_of(a, TD_CRDT_MAP, "m");
    for (int step = 0; step < 400; step++) {
        int what = (int)tt_rng_below(&r, 10);
        if (what < 6) {
            edit_text(&r, a, t);
        } else if (what == 6) {
            td_crdt_value v;
            memset(&v, 0, sizeof v);
            v.type = TD_CRDT_V_INT;
            v.u.i = step;
            char key[8];
            snprintf(key, sizeof key, "k%d", (int)tt_rng_below(&r, 5));
            CHECK_OK(a, td_crdt_map_set(a, m, key, strlen(key), &v));
        } else if (what == 7) { /* a new object: the object map must grow */
            char name[16];
            snprintf(name, sizeof name, "t%d", step);
            td_crdt_obj o = root_of(a, TD_CRDT_TEXT, name);
            CHECK_OK(a, td_crdt_text_insert(a, o, 0, "x", 1));
            td_crdt_obj nested = 0;
            CHECK_OK(a, td_crdt_map_set_obj(a, m, name, strlen(name), TD_CRDT_LIST, &nested));
        } else if (what == 8) { /* a new agent: the agent map must grow */
            td_crdt_doc *x = tt_new_doc(1000 + (uint64_t)step);
            tt_bytes vv = tt_vv(x), all = tt_diff(a, &vv);
            if (all.len) /* a has made nothing yet: nothing to send */
                tt_apply_ok(x, &all, NULL);
            edit_text(&r, x, root_of(x, TD_CRDT_TEXT, "text"));
            tt_bytes bx = tt_commit(x);
            tt_apply_ok(a, &bx, NULL);
            tt_apply_ok(b, &bx, NULL);
            tt_bytes_free(&vv);
            tt_bytes_free(&all);
            tt_bytes_free(&bx);
            td_crdt_doc_free(x);
        } else {
            /* nothing new: an empty commit, then edits */
            tt_bytes e = tt_commit(a);
            CHECK(e.len == 0);
            tt_bytes_free(&e);
            edit_text(&r, a, t);
            edit_text(&r, a, t);
        }
        tt_bytes c = tt_commit(a);
        if (c.len)
            tt_apply_ok(b, &c, NULL);
        tt_bytes_free(&c);
    }
    CHECK(td_crdt_pending_ops(b) == 0);
    same_snapshot(a, b);
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
}

static void test_load_many_runs(void)
{
    tt_rng r;
    tt_rng_seed(&r, seed + 1);
    td_crdt_doc *d[3];
    td_crdt_obj t[3];
    for (int i = 0; i < 3; i++) {
        d[i] = tt_new_doc(7 + (uint64_t)i * 1000003);
        t[i] = root_of(d[i], TD_CRDT_TEXT, "text");
    }
    for (int step = 0; step < 3000; step++) {
        int i = (int)tt_rng_below(&r, 3);
        edit_text(&r, d[i], t[i]);
        if (tt_rng_chance(&r, 1, 20))
            tt_sync_both(d[i], d[(i + 1) % 3]);
    }
    tt_sync_both(d[0], d[1]);
    tt_sync_both(d[1], d[2]);
    tt_sync_both(d[0], d[1]);
    tt_bytes s = tt_snap(d[0]);
    td_crdt_doc *l = tt_load_doc(99, &s);
    tt_bytes s2 = tt_snap(l);
    CHECK(tt_bytes_eq(&s, &s2));
    /* the server's load (td_crdt_options.trusted_snapshot: no whole-history
     * check) builds the same replica */
    td_crdt_options to = {.agent = 98, .trusted_snapshot = 1};
    td_crdt_doc *tl = NULL;
    const char *msg = NULL;
    CHECK_MSG(td_crdt_doc_load(&to, s.p, s.len, &tl, &msg) == TD_CRDT_OK, "trusted load: %s",
              msg ? msg : "?");
    tt_bytes s3 = tt_snap(tl);
    CHECK(tt_bytes_eq(&s, &s3));
    tt_bytes_free(&s3);
    char *want = tt_text(d[0], t[0]);
    td_crdt_obj lt = root_of(l, TD_CRDT_TEXT, "text");
    char *got = tt_text(l, lt);
    CHECK_STR(got, want);
    free(want);
    free(got);
    /* the loaded replica's indexes serve remote ops (origins anywhere in
     * the history) and local ones, exactly as the original's do */
    for (int step = 0; step < 500; step++) {
        edit_text(&r, d[step % 3], t[step % 3]);
        edit_text(&r, l, lt);
        if (step % 50 == 49) {
            for (int i = 0; i < 3; i++)
                tt_sync_both(d[i], l);
        }
    }
    for (int i = 0; i < 3; i++)
        tt_sync_both(d[i], l);
    for (int i = 0; i < 3; i++)
        tt_sync_both(d[i], l);
    for (int i = 0; i < 3; i++)
        same_snapshot(d[i], l);
    /* the trusted replica integrates all that history like any other */
    tt_sync_both(tl, l);
    same_snapshot(tl, l);
    td_crdt_doc_free(tl);
    tt_bytes_free(&s);
    tt_bytes_free(&s2);
    td_crdt_doc_free(l);
    for (int i = 0; i < 3; i++)
        td_crdt_doc_free(d[i]);
}

/* A version-1 snapshot of one agent (id 5, vv ops) and one root text
 * "text" holding two visible runs (seq a, len la) and (seq b, len lb),
 * each with no origins, content "abcd..." -- valid only if the ids differ. */
static size_t two_runs(uint8_t *out, uint32_t vv, uint32_t a, uint32_t la, uint32_t b,
                       uint32_t lb)
{
    size_t n = 0;
    out[n++] = 'T';
    out[n++] = 'S';
    out[n++] = 1;
    out[n++] = 1; /* agents */
    out[n++] = 5;
    for (int i = 0; i < 7; i++)
        out[n++] = 0;
    out[n++] = (uint8_t)vv; /* ops seen (< 128 here) */
    out[n++] = 0;           /* max lamport */
    out[n++] = 1;           /* objects */
    out[n++] = 0;           /* root text */
    out[n++] = 4;
    memcpy(out + n, "text", 4);
    n += 4;
    out[n++] = 2; /* runs */
    uint32_t seqs[2] = {a, b}, lens[2] = {la, lb};
    for (int i = 0; i < 2; i++) {
        /* no origins on either side: modes O_NONE (1) at bits 3-4 and 5-6 */
        out[n++] = (uint8_t)(1 << 3 | 1 << 5 | (lens[i] == 1 ? 128 : 0));
        out[n++] = 0; /* agent index */
        out[n++] = (uint8_t)seqs[i];
        if (lens[i] != 1)
            out[n++] = (uint8_t)lens[i];
    }
    out[n++] = (uint8_t)(la + lb); /* content bytes */
    for (uint32_t i = 0; i < la + lb; i++)
        out[n++] = (uint8_t)('a' + i);
    out[n++] = 0; /* the agent's delete records */
    return n;
}

static void load_expect(const uint8_t *p, size_t n, int ok, const char *why)
{
    td_crdt_options o;
    memset(&o, 0, sizeof o);
    o.agent = 77;
    td_crdt_doc *d = NULL;
    const char *msg = NULL;
    td_crdt_err e = td_crdt_doc_load(&o, p, n, &d, &msg);
    if (ok) {
        CHECK_MSG(e == TD_CRDT_OK, "load: %s", msg ? msg : "?");
        td_crdt_doc_free(d);
        return;
    }
    CHECK(e == TD_CRDT_ERR_DECODE);
    CHECK(d == NULL);
    CHECK_STR(msg, why);
}

static void test_load_refuses_repeated_ids(void)
{
    uint8_t buf[64];
    /* the control: disjoint ids load (runs 0..1 and 2) */
    load_expect(buf, two_runs(buf, 3, 0, 2, 2, 1), 1, NULL);
    /* the same id twice */
    load_expect(buf, two_runs(buf, 3, 0, 1, 0, 1), 0, "run ids repeat");
    /* overlapping runs, in either order */
    load_expect(buf, two_runs(buf, 3, 0, 2, 1, 1), 0, "run ids repeat");
    load_expect(buf, two_runs(buf, 3, 1, 1, 0, 2), 0, "run ids repeat");
    /* every truncation of the valid one is refused without a crash */
    size_t n = two_runs(buf, 3, 0, 2, 2, 1);
    for (size_t k = 0; k < n; k++) {
        td_crdt_options o;
        memset(&o, 0, sizeof o);
        td_crdt_doc *d = NULL;
        const char *msg = NULL;
        CHECK(td_crdt_doc_load(&o, buf, k, &d, &msg) != TD_CRDT_OK);
        CHECK(d == NULL);
    }
}

int main(int argc, char **argv)
{
    td_check_seed(argc, argv, &seed);
    static const td_check_case tests[] = {
        {"commit_reuse", test_commit_reuse},
        {"load_many_runs", test_load_many_runs},
        {"load_refuses_repeated_ids", test_load_refuses_repeated_ids},
    };
    return td_check_cases(tests, sizeof tests / sizeof tests[0], argv[0], &seed);
}
