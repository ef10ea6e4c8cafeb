/*
 * td_test_docs.c -- a small, realistic editing session used as the seed of
 * the robustness test and of the fuzz targets' corpora.
 *
 * Three agents work on one document: text with typing and deletes, a list
 * of scalars, a map with conflicting sets and deletes, and nested objects
 * (a map holding a list holding a text and a map). They edit concurrently,
 * exchange batches in different orders and converge. Every encoding met on
 * the way is kept -- commit batches, diffs, snapshots, version vectors --
 * together with a few documents to apply batches to: an empty one, a partial
 * replica, the same partial replica with a batch waiting in its pending set,
 * and the converged document. Everything is deterministic (fixed agents, no
 * randomness), so the encodings are the same on every run of one core.
 */
#include "td_test_util.h"

#include <stdio.h>
#include <stdlib.h>

static void keep(tt_scenario *sc, tt_enc_kind kind, const char *name, const tt_bytes *b)
{
    if (b->len == 0 || sc->n == TT_SCENARIO_MAX_ENC)
        return;
    tt_enc *e = &sc->enc[sc->n++];
    e->kind = kind;
    snprintf(e->name, sizeof e->name, "%s", name);
    e->b = tt_bytes_copy(b->p, b->len);
}

static void keep_snap(tt_scenario *sc, const char *name, td_crdt_doc *d)
{
    tt_bytes s = tt_snap(d);
    keep(sc, TT_ENC_SNAP, name, &s);
    tt_bytes_free(&s);
}

static void keep_vv(tt_scenario *sc, const char *name, td_crdt_doc *d)
{
    tt_bytes v = tt_vv(d);
    keep(sc, TT_ENC_VV, name, &v);
    tt_bytes_free(&v);
}

static tt_bytes commit_kept(tt_scenario *sc, const char *name, td_crdt_doc *d)
{
    tt_bytes b = tt_commit(d);
    keep(sc, TT_ENC_BATCH, name, &b);
    return b;
}

static td_crdt_obj root_of(td_crdt_doc *d, td_crdt_kind k, const char *name)
{
    td_crdt_obj o = 0;
    CHECK_OK(d, td_crdt_root(d, k, name, strlen(name), &o));
    return o;
}

static void text_ins(td_crdt_doc *d, td_crdt_obj t, size_t pos, const char *s)
{
    CHECK_OK(d, td_crdt_text_insert(d, t, pos, s, strlen(s)));
}

static td_crdt_value val_int(int64_t i)
{
    td_crdt_value v;
    memset(&v, 0, sizeof v);
    v.type = TD_CRDT_V_INT;
    v.u.i = i;
    return v;
}

static td_crdt_value val_str(const char *s)
{
    td_crdt_value v;
    memset(&v, 0, sizeof v);
    v.type = TD_CRDT_V_STR;
    v.u.str.ptr = s;
    v.u.str.len = strlen(s);
    return v;
}

static td_crdt_value val_type(td_crdt_vtype t)
{
    td_crdt_value v;
    memset(&v, 0, sizeof v);
    v.type = t;
    return v;
}

static void set_target(tt_scenario *sc, td_crdt_doc *d, const tt_bytes *park)
{
    size_t i = sc->ntargets++;
    sc->target_snap[i] = tt_snap(d);
    sc->target_park[i] = park ? tt_bytes_copy(park->p, park->len) : tt_bytes_copy(NULL, 0);
}

void tt_scenario_build(tt_scenario *sc)
{
    memset(sc, 0, sizeof *sc);
    td_crdt_doc *a = tt_new_doc(0x1111), *b = tt_new_doc(0x2222), *c = tt_new_doc(0xc0ffee);
    td_crdt_doc *empty = tt_new_doc(0x4444);
    keep_snap(sc, "snap-empty", empty);
    keep_vv(sc, "vv-empty", empty);
    set_target(sc, empty, NULL);

    /* a: the first content. */
    td_crdt_obj t = root_of(a, TD_CRDT_TEXT, "body");
    td_crdt_obj l = root_of(a, TD_CRDT_LIST, "items");
    td_crdt_obj m = root_of(a, TD_CRDT_MAP, "meta");
    text_ins(a, t, 0, "Hello world");
    text_ins(a, t, 5, ",");
    td_crdt_value vals[] = {val_int(1), val_str("two"), val_type(TD_CRDT_V_TRUE),
                            val_type(TD_CRDT_V_NULL), val_int(-300)};
    vals[4].type = TD_CRDT_V_FLOAT;
    vals[4].u.f = 2.5;
    CHECK_OK(a, td_crdt_list_insert(a, l, 0, vals, 5));
    td_crdt_value title = val_str("draft");
    CHECK_OK(a, td_crdt_map_set(a, m, "title", 5, &title));
    td_crdt_value n = val_int(7);
    CHECK_OK(a, td_crdt_map_set(a, m, "n", 1, &n));
    td_crdt_obj sub = 0, st = 0, sm = 0;
    CHECK_OK(a, td_crdt_map_set_obj(a, m, "sub", 3, TD_CRDT_LIST, &sub));
    CHECK_OK(a, td_crdt_list_insert_obj(a, sub, 0, TD_CRDT_TEXT, &st));
    text_ins(a, st, 0, "n\xc3\xa9sted \xf0\x9f\x98\x80");
    CHECK_OK(a, td_crdt_list_insert_obj(a, sub, 1, TD_CRDT_MAP, &sm));
    td_crdt_value kv = val_str("v");
    CHECK_OK(a, td_crdt_map_set(a, sm, "k", 1, &kv));
    tt_bytes a1 = commit_kept(sc, "batch-a1", a);
    tt_apply_ok(b, &a1, NULL);
    tt_apply_ok(c, &a1, NULL);
    keep_snap(sc, "snap-a1", a);
    keep_vv(sc, "vv-a1", a);
    set_target(sc, b, NULL); /* partial replica: a1 only */

    /* Concurrent edits. a: deletes and typing in the text. */
    CHECK_OK(a, td_crdt_text_delete(a, t, 5, 1));
    text_ins(a, t, 11, "!");
    for (size_t i = 0; i < 4; i++)
        CHECK_OK(a, td_crdt_text_insert(a, t, 6 + i, &"wxyz"[i], 1));
    tt_bytes a2 = commit_kept(sc, "batch-a2", a);
    CHECK_OK(a, td_crdt_text_delete(a, t, 0, 2));
    tt_bytes a3 = commit_kept(sc, "batch-a3", a);

    /* b: text at the same spot, list delete, map conflict. */
    td_crdt_obj tb = root_of(b, TD_CRDT_TEXT, "body");
    td_crdt_obj lb = root_of(b, TD_CRDT_LIST, "items");
    td_crdt_obj mb = root_of(b, TD_CRDT_MAP, "meta");
    text_ins(b, tb, 6, "big ");
    CHECK_OK(b, td_crdt_list_delete(b, lb, 1, 2));
    td_crdt_value tb_title = val_str("final");
    CHECK_OK(b, td_crdt_map_set(b, mb, "title", 5, &tb_title));
    tt_bytes b1 = commit_kept(sc, "batch-b1", b);
    td_crdt_value more[] = {val_int(42), val_type(TD_CRDT_V_FALSE)};
    CHECK_OK(b, td_crdt_list_insert(b, lb, 0, more, 2));
    tt_bytes b2 = commit_kept(sc, "batch-b2", b);

    /* c: edits inside nested objects, deletes a key, sets the same title. */
    td_crdt_obj mc = root_of(c, TD_CRDT_MAP, "meta");
    td_crdt_value g;
    CHECK_OK(c, td_crdt_map_get(c, mc, "sub", 3, &g));
    CHECK(g.type == TD_CRDT_V_OBJ);
    td_crdt_obj subc = g.u.obj;
    CHECK_OK(c, td_crdt_list_get(c, subc, 0, &g));
    CHECK(g.type == TD_CRDT_V_OBJ);
    text_ins(c, g.u.obj, 0, "deeply ");
    CHECK_OK(c, td_crdt_text_delete(c, g.u.obj, 8, 3));
    CHECK_OK(c, td_crdt_map_delete(c, mc, "n", 1));
    td_crdt_value ct = val_str("other");
    CHECK_OK(c, td_crdt_map_set(c, mc, "title", 5, &ct));
    td_crdt_obj cm = 0;
    CHECK_OK(c, td_crdt_list_insert_obj(c, subc, 2, TD_CRDT_MAP, &cm));
    td_crdt_value flag = val_type(TD_CRDT_V_TRUE);
    CHECK_OK(c, td_crdt_map_set(c, cm, "done", 4, &flag));
    tt_bytes c1 = commit_kept(sc, "batch-c1", c);

    /* A partial replica with b2 waiting for b1 in its pending set. */
    td_crdt_doc *p = tt_load_doc(0x5555, &sc->target_snap[1]);
    tt_apply_ok(p, &b2, NULL);
    CHECK(td_crdt_pending_ops(p) > 0);
    td_crdt_doc_free(p);
    sc->target_snap[2] = tt_bytes_copy(sc->target_snap[1].p, sc->target_snap[1].len);
    sc->target_park[2] = tt_bytes_copy(b2.p, b2.len);
    sc->ntargets = 3;

    /* Diffs between diverged replicas, before they exchange. */
    tt_bytes vvb = tt_vv(b);
    keep(sc, TT_ENC_VV, "vv-b", &vvb);
    tt_bytes dab = tt_diff(a, &vvb);
    keep(sc, TT_ENC_BATCH, "diff-a-for-b", &dab);
    keep_snap(sc, "snap-c-diverged", c);

    /* Exchange in different orders (b2 before b1 on c: parks, releases). */
    tt_apply_ok(a, &b1, NULL);
    tt_apply_ok(a, &c1, NULL);
    tt_apply_ok(a, &b2, NULL);
    tt_apply_ok(b, &c1, NULL);
    tt_apply_ok(b, &a3, NULL); /* parks until a2 */
    tt_apply_ok(b, &a2, NULL);
    tt_apply_ok(c, &b2, NULL);
    tt_apply_ok(c, &a2, NULL);
    tt_apply_ok(c, &b1, NULL);
    tt_apply_ok(c, &a3, NULL);

    /* One more round on the converged state, including a key overwritten
     * by a nested object. */
    td_crdt_obj over = 0;
    CHECK_OK(c, td_crdt_map_set_obj(c, mc, "title", 5, TD_CRDT_TEXT, &over));
    text_ins(c, over, 0, "T");
    tt_bytes c2 = commit_kept(sc, "batch-c2", c);
    tt_apply_ok(a, &c2, NULL);
    tt_apply_ok(b, &c2, NULL);

    keep_snap(sc, "snap-full", a);
    keep_vv(sc, "vv-full", a);
    tt_bytes full = tt_diff(a, NULL);
    keep(sc, TT_ENC_BATCH, "diff-full", &full);
    set_target(sc, a, NULL); /* the converged document */
    sc->full_snap = tt_snap(a);

    /* Sanity: the three replicas converged. */
    tt_bytes sb = tt_snap(b), scs = tt_snap(c);
    CHECK(tt_bytes_eq(&sc->full_snap, &sb));
    CHECK(tt_bytes_eq(&sc->full_snap, &scs));
    tt_bytes_free(&sb);
    tt_bytes_free(&scs);

    tt_bytes *all[] = {&a1, &a2, &a3, &b1, &b2, &c1, &c2, &vvb, &dab, &full};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tt_bytes_free(all[i]);
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
    td_crdt_doc_free(c);
    td_crdt_doc_free(empty);
}

void tt_scenario_free(tt_scenario *sc)
{
    for (size_t i = 0; i < sc->n; i++)
        tt_bytes_free(&sc->enc[i].b);
    for (size_t i = 0; i < sc->ntargets; i++) {
        tt_bytes_free(&sc->target_snap[i]);
        tt_bytes_free(&sc->target_park[i]);
    }
    tt_bytes_free(&sc->full_snap);
    memset(sc, 0, sizeof *sc);
}

td_crdt_doc *tt_scenario_target(const tt_scenario *sc, size_t i)
{
    td_crdt_doc *d = tt_load_doc(0x7777, &sc->target_snap[i]);
    if (sc->target_park[i].len) {
        td_crdt_apply_info info;
        tt_apply_ok(d, &sc->target_park[i], &info);
        CHECK(info.parked == 1);
    }
    return d;
}
