/*
 * test_crdt_commit.c -- td_crdt_commit's fast path for one-op commits must
 * send exactly the bytes of the general path.
 *
 * td_crdt_commit (crdt/batch.c) writes a commit that is one op -- part of
 * one run of ours (typing) or of our last delete record (backspace) --
 * directly, and everything else through enc_agent. td_crdt_commit_general
 * (crdt_internal.h) is the general path alone. Two replicas of one agent
 * (twins) get the same random edits; after each burst one commits with
 * td_crdt_commit and the other with td_crdt_commit_general, and the batches
 * must be byte-identical. The edits are made to hit the fast path and its
 * edges: typing and backspacing bursts committed after each key or after a
 * few, commits that start inside a run or a delete record (a run typed on
 * after a commit, a record extended by the next backspace), runs split by
 * a peer's insert or delete, deletes that reverse direction, list values,
 * nested objects (whose id names an agent), map writes and replacements
 * (general), agents whose ids sort before and after ours, reloads from a
 * snapshot, and size-limited commits in between.
 *
 * - differential: the above for several seeds' worth of steps.
 * - single_ops: hand-made cases, each checked against the general path and
 *   against a replica that applies the batch; td_crdt_commit_max's one-op
 *   fast path (a key, a backspace, a paste over the limit) likewise against
 *   td_crdt_commit_max_general.
 *
 * Run: build/<dir>/tests/crdt/test_crdt_commit [seed]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt_internal.h"
#include "td_test_util.h"

static uint64_t seed = 14;

/* Our agent: peers get ids on both sides of it, so the agent table of a
 * batch is sorted for real. */
#define SELF_ID 0x5000000000000000ull

typedef struct twin {
    td_crdt_doc *d[2]; /* d[0] commits fast, d[1] general */
    td_crdt_obj t[2], u[2], l[2], m[2], n[2]; /* texts t, u; list; map; nested text */
    size_t commits, bytes;
} twin;

static td_crdt_obj root_of(td_crdt_doc *d, td_crdt_kind kind, const char *name)
{
    td_crdt_obj o = 0;
    CHECK_OK(d, td_crdt_root(d, kind, name, strlen(name), &o));
    return o;
}

/* The nested text under key "n" of map m, or 0. */
static td_crdt_obj nested_of(td_crdt_doc *d, td_crdt_obj m)
{
    td_crdt_value v;
    CHECK_OK(d, td_crdt_map_get(d, m, "n", 1, &v));
    return v.type == TD_CRDT_V_OBJ && v.obj_kind == TD_CRDT_TEXT ? v.u.obj : 0;
}

static void twin_handles(twin *w)
{
    for (int i = 0; i < 2; i++) {
        w->t[i] = root_of(w->d[i], TD_CRDT_TEXT, "t");
        w->u[i] = root_of(w->d[i], TD_CRDT_TEXT, "u");
        w->l[i] = root_of(w->d[i], TD_CRDT_LIST, "l");
        w->m[i] = root_of(w->d[i], TD_CRDT_MAP, "m");
        w->n[i] = nested_of(w->d[i], w->m[i]);
    }
}

/* Commits both twins, checks the batches are equal, and applies the batch
 * to each peer. */
static void twin_commit(twin *w, td_crdt_doc **peers, size_t npeers)
{
    uint8_t *p[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    CHECK_OK(w->d[0], td_crdt_commit(w->d[0], &p[0], &len[0]));
    CHECK_OK(w->d[1], td_crdt_commit_general(w->d[1], &p[1], &len[1]));
    int same = len[0] == len[1] && (len[0] == 0 || memcmp(p[0], p[1], len[0]) == 0);
    if (!same) {
        fprintf(stderr, "commit %zu: fast %zu bytes, general %zu bytes\n", w->commits, len[0],
                len[1]);
        for (int i = 0; i < 2; i++) {
            for (size_t k = 0; k < len[i]; k++)
                fprintf(stderr, "%02x", p[i][k]);
            fprintf(stderr, "\n");
        }
    }
    if (same && len[0]) {
        tt_bytes b = tt_bytes_copy(p[0], len[0]);
        for (size_t i = 0; i < npeers; i++)
            tt_apply_ok(peers[i], &b, NULL);
        tt_bytes_free(&b);
    }
    w->commits++;
    w->bytes += len[0];
    td_crdt_buf_free(w->d[0], p[0]);
    td_crdt_buf_free(w->d[1], p[1]);
    CHECK(same);
}

/* Applies the same edit to both twins: `call` uses D (the doc) and H(x)
 * (twin handle x of that doc). */
#define BOTH(w, call)                                                   \
    do {                                                                \
        for (int i_ = 0; i_ < 2; i_++) {                                \
            td_crdt_doc *D = (w)->d[i_];                                \
            (void)D;                                                    \
            CHECK_OK(D, call);                                          \
        }                                                               \
    } while (0)
#define H(x) (w->x[i_])

static void both_insert(twin *w, td_crdt_obj *h, size_t pos, const char *s, size_t n)
{
    for (int i = 0; i < 2; i++)
        CHECK_OK(w->d[i], td_crdt_text_insert(w->d[i], h[i], pos, s, n));
}

static void both_delete(twin *w, td_crdt_obj *h, size_t pos, size_t n)
{
    for (int i = 0; i < 2; i++)
        CHECK_OK(w->d[i], td_crdt_text_delete(w->d[i], h[i], pos, n));
}

/* Commit after this key? Mostly yes (an editor commits per keystroke);
 * sometimes a few keys go into one commit. */
static void maybe_commit(tt_rng *r, twin *w, td_crdt_doc **peers, size_t npeers)
{
    if (!tt_rng_chance(r, 1, 4))
        twin_commit(w, peers, npeers);
}

/* A text of the twin, picked at random (the nested one when it exists). */
static td_crdt_obj *pick_text(tt_rng *r, twin *w)
{
    unsigned k = (unsigned)tt_rng_below(r, 8);
    if (k == 7 && w->n[0])
        return w->n;
    return k < 5 ? w->t : w->u;
}

static void burst_type(tt_rng *r, twin *w, td_crdt_doc **peers, size_t npeers)
{
    td_crdt_obj *h = pick_text(r, w);
    size_t len = td_crdt_text_length(w->d[0], h[0]);
    size_t pos = tt_rng_chance(r, 1, 2) ? len : (size_t)tt_rng_below(r, len + 1);
    size_t keys = 1 + (size_t)tt_rng_below(r, 12);
    for (size_t k = 0; k < keys; k++) {
        char buf[16];
        size_t n = tt_rand_utf8(r, tt_rng_chance(r, 1, 8) ? 2 + tt_rng_below(r, 3) : 1, buf);
        both_insert(w, h, pos, buf, n);
        pos += tt_utf8_count(buf, n);
        maybe_commit(r, w, peers, npeers);
    }
}

static void burst_delete(tt_rng *r, twin *w, td_crdt_doc **peers, size_t npeers)
{
    td_crdt_obj *h = pick_text(r, w);
    size_t len = td_crdt_text_length(w->d[0], h[0]);
    if (len == 0)
        return;
    size_t pos = (size_t)tt_rng_below(r, len + 1);
    int backspace = tt_rng_chance(r, 2, 3);
    size_t keys = 1 + (size_t)tt_rng_below(r, 10);
    for (size_t k = 0; k < keys; k++) {
        len = td_crdt_text_length(w->d[0], h[0]);
        if (backspace && pos > 0) {
            both_delete(w, h, --pos, 1);
        } else if (!backspace && pos < len) {
            size_t n = tt_rng_chance(r, 1, 6) ? 1 + (size_t)tt_rng_below(r, len - pos) : 1;
            both_delete(w, h, pos, n);
        } else {
            break;
        }
        if (tt_rng_chance(r, 1, 10))
            backspace = !backspace; /* a record that turns around */
        maybe_commit(r, w, peers, npeers);
    }
}

static void list_edit(tt_rng *r, twin *w)
{
    size_t len = td_crdt_list_length(w->d[0], w->l[0]);
    if (len > 0 && tt_rng_chance(r, 1, 3)) {
        size_t pos = (size_t)tt_rng_below(r, len);
        size_t n = 1 + (size_t)tt_rng_below(r, len - pos < 3 ? len - pos : 3);
        BOTH(w, td_crdt_list_delete(D, H(l), pos, n));
        return;
    }
    td_crdt_value v[3];
    memset(v, 0, sizeof v);
    size_t n = 1 + (size_t)tt_rng_below(r, 3);
    for (size_t i = 0; i < n; i++) {
        switch (tt_rng_below(r, 4)) {
        case 0:
            v[i].type = TD_CRDT_V_INT;
            v[i].u.i = (int64_t)tt_rng_below(r, 1000) - 500;
            break;
        case 1:
            v[i].type = TD_CRDT_V_STR;
            v[i].u.str.ptr = "str";
            v[i].u.str.len = 1 + (size_t)tt_rng_below(r, 3);
            break;
        case 2:
            v[i].type = TD_CRDT_V_FLOAT;
            v[i].u.f = 0.5 * (double)tt_rng_below(r, 100);
            break;
        default:
            v[i].type = TD_CRDT_V_NULL;
            break;
        }
    }
    size_t pos = tt_rng_chance(r, 1, 2) ? len : (size_t)tt_rng_below(r, len + 1);
    BOTH(w, td_crdt_list_insert(D, H(l), pos, v, n));
}

static void map_edit(tt_rng *r, twin *w)
{
    char key[4] = {'k', (char)('0' + tt_rng_below(r, 4)), 0, 0};
    unsigned k = (unsigned)tt_rng_below(r, 6);
    if (k == 0 && tt_rng_chance(r, 1, 3)) {
        /* (re)make the nested text: later typing into it names the object's
         * id; an older one may be left behind, made by a losing write */
        td_crdt_obj o[2];
        for (int i = 0; i < 2; i++)
            CHECK_OK(w->d[i], td_crdt_map_set_obj(w->d[i], w->m[i], "n", 1, TD_CRDT_TEXT, &o[i]));
        w->n[0] = o[0];
        w->n[1] = o[1];
    } else if (k == 1) {
        BOTH(w, td_crdt_map_delete(D, H(m), key, 2));
    } else {
        td_crdt_value v;
        memset(&v, 0, sizeof v);
        v.type = TD_CRDT_V_INT;
        v.u.i = (int64_t)tt_rng_below(r, 100);
        BOTH(w, td_crdt_map_set(D, H(m), key, 2, &v));
    }
}

/* A peer edits the texts (splitting our runs, deleting our items, typing
 * next to them) and both twins get its batch. */
static void peer_edit(tt_rng *r, twin *w, td_crdt_doc *p)
{
    td_crdt_obj pt = root_of(p, TD_CRDT_TEXT, tt_rng_chance(r, 2, 3) ? "t" : "u");
    size_t edits = 1 + (size_t)tt_rng_below(r, 3);
    for (size_t e = 0; e < edits; e++) {
        size_t len = td_crdt_text_length(p, pt);
        if (len > 0 && tt_rng_chance(r, 1, 3)) {
            size_t pos = (size_t)tt_rng_below(r, len);
            CHECK_OK(p, td_crdt_text_delete(p, pt, pos, 1 + (size_t)tt_rng_below(r, len - pos < 3 ? len - pos : 3)));
        } else {
            char buf[16];
            size_t n = tt_rand_utf8(r, 1 + tt_rng_below(r, 3), buf);
            CHECK_OK(p, td_crdt_text_insert(p, pt, (size_t)tt_rng_below(r, len + 1), buf, n));
        }
    }
    tt_bytes b = tt_commit(p);
    if (b.len)
        for (int i = 0; i < 2; i++)
            tt_apply_ok(w->d[i], &b, NULL);
    tt_bytes_free(&b);
}

/* Both twins reloaded from their snapshots (which must be equal). */
static void twin_reload(twin *w)
{
    tt_bytes s[2] = {tt_snap(w->d[0]), tt_snap(w->d[1])};
    CHECK(tt_bytes_eq(&s[0], &s[1]));
    for (int i = 0; i < 2; i++) {
        td_crdt_doc_free(w->d[i]);
        w->d[i] = tt_load_doc(SELF_ID, &s[i]);
        tt_bytes_free(&s[i]);
    }
    twin_handles(w);
}

/* A size-limited commit on both, one through td_crdt_commit_max (its one-op
 * fast path where the batch fits) and the other through the general path
 * alone: the same bytes. It leaves the next commit starting inside a run. */
static int twin_commit_max_at(size_t max, twin *w, td_crdt_doc **peers, size_t npeers)
{
    uint8_t *p[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    int more[2] = {0, 0};
    CHECK_OK(w->d[0], td_crdt_commit_max(w->d[0], max, &p[0], &len[0], &more[0]));
    CHECK_OK(w->d[1], td_crdt_commit_max_general(w->d[1], max, &p[1], &len[1], &more[1]));
    CHECK(len[0] == len[1] && more[0] == more[1]);
    CHECK(len[0] == 0 || memcmp(p[0], p[1], len[0]) == 0);
    if (len[0]) {
        tt_bytes b = tt_bytes_copy(p[0], len[0]);
        for (size_t i = 0; i < npeers; i++)
            tt_apply_ok(peers[i], &b, NULL);
        tt_bytes_free(&b);
    }
    td_crdt_buf_free(w->d[0], p[0]);
    td_crdt_buf_free(w->d[1], p[1]);
    return more[0];
}

static void twin_commit_max(tt_rng *r, twin *w, td_crdt_doc **peers, size_t npeers)
{
    twin_commit_max_at(40 + (size_t)tt_rng_below(r, 60), w, peers, npeers);
}

static void test_differential(void)
{
    for (uint64_t round = 0; round < 12; round++) {
        tt_rng r;
        tt_rng_seed(&r, seed * 1000 + round);
        twin w;
        memset(&w, 0, sizeof w);
        for (int i = 0; i < 2; i++)
            w.d[i] = tt_new_doc(SELF_ID);
        twin_handles(&w);
        /* peers below and above us in id order */
        td_crdt_doc *peers[2] = {tt_new_doc(7 + round), tt_new_doc(~0ull - round)};
        for (int step = 0; step < 600; step++) {
            unsigned k = (unsigned)tt_rng_below(&r, 100);
            if (k < 40) {
                burst_type(&r, &w, peers, 2);
            } else if (k < 60) {
                burst_delete(&r, &w, peers, 2);
            } else if (k < 66) { /* a replacement: delete and insert in one commit */
                td_crdt_obj *h = pick_text(&r, &w);
                size_t len = td_crdt_text_length(w.d[0], h[0]);
                if (len) {
                    size_t pos = (size_t)tt_rng_below(&r, len);
                    both_delete(&w, h, pos, 1);
                    both_insert(&w, h, pos, "xy", 1 + (size_t)tt_rng_below(&r, 2));
                }
            } else if (k < 74) {
                list_edit(&r, &w);
            } else if (k < 80) {
                map_edit(&r, &w);
            } else if (k < 92) {
                peer_edit(&r, &w, peers[tt_rng_below(&r, 2)]);
            } else if (k < 94) {
                twin_commit(&w, peers, 2);
                twin_reload(&w);
            } else if (k < 96) {
                twin_commit_max(&r, &w, peers, 2);
            } else {
                /* nothing new: an empty commit must be empty on both */
                twin_commit(&w, peers, 2);
            }
            twin_commit(&w, peers, 2);
        }
        tt_bytes s[2] = {tt_snap(w.d[0]), tt_snap(w.d[1])};
        CHECK(tt_bytes_eq(&s[0], &s[1]));
        /* the peers got every op through the fast path's batches too */
        for (int p = 0; p < 2; p++) {
            tt_sync_both(peers[p], w.d[0]);
            tt_bytes sp = tt_snap(peers[p]), sw = tt_snap(w.d[0]);
            CHECK(td_crdt_pending_ops(peers[p]) == 0);
            CHECK(tt_bytes_eq(&sp, &sw));
            tt_bytes_free(&sp);
            tt_bytes_free(&sw);
        }
        tt_bytes_free(&s[0]);
        tt_bytes_free(&s[1]);
        for (int i = 0; i < 2; i++) {
            td_crdt_doc_free(w.d[i]);
            td_crdt_doc_free(peers[i]);
        }
    }
}

/* One hand-made case: the commit of what `edit` does must equal the general
 * path's, and a replica applying every batch must end equal to the twins. */
static void test_single_ops(void)
{
    twin tw, *w = &tw;
    memset(w, 0, sizeof *w);
    for (int i = 0; i < 2; i++)
        w->d[i] = tt_new_doc(SELF_ID);
    twin_handles(w);
    td_crdt_doc *peer = tt_new_doc(3);
    td_crdt_doc *peers[1] = {peer};
    /* typing: the first key, keys after it, a key committed with two more */
    both_insert(w, w->t, 0, "a", 1);
    twin_commit(w, peers, 1);
    both_insert(w, w->t, 1, "b", 1);
    twin_commit(w, peers, 1);
    both_insert(w, w->t, 2, "\xc3\xa9", 2);
    both_insert(w, w->t, 3, "\xf0\x9f\x98\x80", 4);
    twin_commit(w, peers, 1);
    /* a paste: one run of many */
    both_insert(w, w->t, 4, "pasted text", 11);
    twin_commit(w, peers, 1);
    /* backspace, again (the record grows downwards), delete key */
    both_delete(w, w->t, 14, 1);
    twin_commit(w, peers, 1);
    both_delete(w, w->t, 13, 1);
    twin_commit(w, peers, 1);
    both_delete(w, w->t, 2, 1);
    twin_commit(w, peers, 1);
    both_delete(w, w->t, 2, 1);
    twin_commit(w, peers, 1);
    /* size-limited commits: a key and a backspace fit (commit_max's one-op
     * fast path), a paste larger than the limit goes out in pieces */
    both_insert(w, w->t, 4, "k", 1);
    CHECK(!twin_commit_max_at(1000, w, peers, 1));
    both_delete(w, w->t, 4, 1);
    CHECK(!twin_commit_max_at(1000, w, peers, 1));
    static const char big[] = "a paste longer than the limit of one size-limited batch, "
                              "so that it is cut into several of them";
    both_insert(w, w->t, 4, big, sizeof big - 1);
    int pieces = 1;
    while (twin_commit_max_at(40, w, peers, 1))
        pieces++;
    CHECK(pieces > 1);
    both_delete(w, w->t, 4, sizeof big - 1);
    twin_commit(w, peers, 1);
    /* typing in the middle of our own run, then at the start */
    both_insert(w, w->t, 5, "M", 1);
    twin_commit(w, peers, 1);
    both_insert(w, w->t, 0, "S", 1);
    twin_commit(w, peers, 1);
    /* a peer types into our run: our next key's right origin is theirs */
    CHECK_OK(peer, td_crdt_text_insert(peer, root_of(peer, TD_CRDT_TEXT, "t"), 3, "P", 1));
    tt_bytes pb = tt_commit(peer);
    for (int i = 0; i < 2; i++)
        tt_apply_ok(w->d[i], &pb, NULL);
    tt_bytes_free(&pb);
    both_insert(w, w->t, 3, "q", 1);
    twin_commit(w, peers, 1);
    both_delete(w, w->t, 4, 1); /* the peer's item */
    twin_commit(w, peers, 1);
    /* a list value, a nested text and a key typed into it */
    td_crdt_value v;
    memset(&v, 0, sizeof v);
    v.type = TD_CRDT_V_STR;
    v.u.str.ptr = "v";
    v.u.str.len = 1;
    BOTH(w, td_crdt_list_insert(D, H(l), 0, &v, 1));
    twin_commit(w, peers, 1);
    for (int i = 0; i < 2; i++)
        CHECK_OK(w->d[i], td_crdt_map_set_obj(w->d[i], w->m[i], "n", 1, TD_CRDT_TEXT, &w->n[i]));
    twin_commit(w, peers, 1);
    both_insert(w, w->n, 0, "n", 1);
    twin_commit(w, peers, 1);
    both_insert(w, w->n, 1, "m", 1);
    twin_commit(w, peers, 1);
    /* a reload, then typing on */
    twin_reload(w);
    both_insert(w, w->t, 2, "r", 1);
    twin_commit(w, peers, 1);
    both_insert(w, w->t, 3, "s", 1);
    twin_commit(w, peers, 1);
    twin_commit(w, peers, 1); /* empty */
    CHECK(td_crdt_pending_ops(peer) == 0);
    char *ta = tt_text(w->d[0], w->t[0]), *tp = tt_text(peer, root_of(peer, TD_CRDT_TEXT, "t"));
    CHECK_STR(tp, ta);
    free(ta);
    free(tp);
    for (int i = 0; i < 2; i++)
        td_crdt_doc_free(w->d[i]);
    td_crdt_doc_free(peer);
}

int main(int argc, char **argv)
{
    td_check_seed(argc, argv, &seed);
    static const td_check_case tests[] = {
        {"single_ops", test_single_ops},
        {"differential", test_differential},
    };
    return td_check_cases(tests, sizeof tests / sizeof tests[0], argv[0], &seed);
}
