/*
 * td_test_shadow.c -- a shadow copy of a document kept up to date only from
 * its change events (td_crdt_set_observer), to check the observer's promise:
 * "replaying the events on a copy of the old state gives the new one".
 *
 * The shadow holds, per object handle, a text's length, a list's values and
 * a map's entries. An INSERT event reads the new list values from the
 * document at the positions the event names (the state "at that moment"); a
 * KEY event reads the key's new value; a DELETE just removes. Texts are
 * tracked by length only (reading text inside the callback would need the
 * non-const text_get). tt_shadow_check() walks the visible objects from the
 * roots and compares them with the shadow.
 *
 * A broken rule inside the callback is recorded, not jumped out of: the
 * callback runs inside the core, which must be left to finish its call.
 */
#include "td_test_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct sval {
    td_crdt_value v; /* strings point into s */
    char *s;
} sval;

typedef struct sentry {
    char *key;
    size_t key_len;
    sval val;
} sentry;

typedef struct sobj {
    int seen;
    td_crdt_kind kind;
    size_t text_len;
    sval *vals; /* list */
    size_t nvals, capvals;
    sentry *ents; /* map, unsorted */
    size_t nents, capents;
} sobj;

struct tt_shadow {
    td_crdt_doc *doc;
    td_crdt_obj roots[8];
    size_t nroots;
    sobj *objs; /* indexed by handle */
    size_t nobjs;
    long events;
    int broken;
    char why[512];
};

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static void breaks(tt_shadow *sh, const char *fmt, ...)
{
    if (sh->broken)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sh->why, sizeof sh->why, fmt, ap);
    va_end(ap);
    sh->broken = 1;
}

static sval sval_copy(const td_crdt_value *v)
{
    sval s;
    s.v = *v;
    s.s = NULL;
    if (v->type == TD_CRDT_V_STR) {
        s.s = xrealloc(NULL, v->u.str.len + 1);
        if (v->u.str.len)
            memcpy(s.s, v->u.str.ptr, v->u.str.len);
        s.v.u.str.ptr = s.s;
    }
    return s;
}

static void sval_free(sval *s)
{
    free(s->s);
    s->s = NULL;
}

static int value_same(const td_crdt_value *a, const td_crdt_value *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case TD_CRDT_V_INT:
        return a->u.i == b->u.i;
    case TD_CRDT_V_FLOAT:
        return memcmp(&a->u.f, &b->u.f, sizeof a->u.f) == 0;
    case TD_CRDT_V_STR:
        return a->u.str.len == b->u.str.len &&
               (a->u.str.len == 0 || memcmp(a->u.str.ptr, b->u.str.ptr, a->u.str.len) == 0);
    case TD_CRDT_V_OBJ:
        return a->u.obj == b->u.obj && a->obj_kind == b->obj_kind;
    default:
        return 1;
    }
}

static void sobj_clear(sobj *o)
{
    for (size_t i = 0; i < o->nvals; i++)
        sval_free(&o->vals[i]);
    for (size_t i = 0; i < o->nents; i++) {
        free(o->ents[i].key);
        sval_free(&o->ents[i].val);
    }
    free(o->vals);
    free(o->ents);
    memset(o, 0, sizeof *o);
}

/* The shadow of handle h; *fresh (if not NULL) says whether this is the
 * first time h is met. The pointer dies at the next get_obj (realloc). */
static sobj *get_obj(tt_shadow *sh, td_crdt_obj h, int *fresh)
{
    if (fresh)
        *fresh = 0;
    if (h == 0 || h > (1u << 24)) {
        breaks(sh, "event names object handle %u", h);
        return NULL;
    }
    if (h >= sh->nobjs) {
        size_t n = h * 2 + 16;
        sh->objs = xrealloc(sh->objs, n * sizeof *sh->objs);
        memset(sh->objs + sh->nobjs, 0, (n - sh->nobjs) * sizeof *sh->objs);
        sh->nobjs = n;
    }
    sobj *o = &sh->objs[h];
    if (!o->seen) {
        o->seen = 1;
        o->kind = td_crdt_obj_kind(sh->doc, h);
        if (!o->kind)
            breaks(sh, "event for invalid object handle %u", h);
        if (fresh)
            *fresh = 1;
    }
    return o;
}

static sentry *find_entry(sobj *o, const char *key, size_t kl)
{
    for (size_t i = 0; i < o->nents; i++)
        if (o->ents[i].key_len == kl && memcmp(o->ents[i].key, key, kl) == 0)
            return &o->ents[i];
    return NULL;
}

static void set_entry(sobj *o, const char *key, size_t kl, const td_crdt_value *v)
{
    sentry *e = find_entry(o, key, kl);
    if (v->type == TD_CRDT_V_NONE) {
        if (e) {
            free(e->key);
            sval_free(&e->val);
            *e = o->ents[--o->nents];
        }
        return;
    }
    if (!e) {
        if (o->nents == o->capents) {
            o->capents = o->capents * 2 + 4;
            o->ents = xrealloc(o->ents, o->capents * sizeof *o->ents);
        }
        e = &o->ents[o->nents++];
        e->key = xrealloc(NULL, kl);
        memcpy(e->key, key, kl);
        e->key_len = kl;
    } else {
        sval_free(&e->val);
    }
    e->val = sval_copy(v);
}

static void list_insert(sobj *o, size_t pos, const sval *v)
{
    if (o->nvals == o->capvals) {
        o->capvals = o->capvals * 2 + 8;
        o->vals = xrealloc(o->vals, o->capvals * sizeof *o->vals);
    }
    memmove(o->vals + pos + 1, o->vals + pos, (o->nvals - pos) * sizeof *o->vals);
    o->vals[pos] = *v;
    o->nvals++;
}

static void load_obj(tt_shadow *sh, td_crdt_obj h, int depth);

static void on_event(void *ud, const td_crdt_event *ev)
{
    tt_shadow *sh = ud;
    sh->events++;
    if (sh->broken)
        return;
    int fresh;
    sobj *o = get_obj(sh, ev->obj, &fresh);
    if (!o || sh->broken)
        return;
    if (fresh) {
        /* First news of this object: it was created since the shadow was
         * loaded, or was invisible then (the API cannot list those). Take
         * its state as it is now, this event included. */
        sh->objs[ev->obj].seen = 0;
        load_obj(sh, ev->obj, 0);
        return;
    }
    switch (ev->kind) {
    case TD_CRDT_EV_INSERT:
    case TD_CRDT_EV_DELETE: {
        if (o->kind == TD_CRDT_MAP) {
            breaks(sh, "insert/delete event on map %u", ev->obj);
            return;
        }
        size_t len = o->kind == TD_CRDT_TEXT ? o->text_len : o->nvals;
        if (ev->count == 0) {
            breaks(sh, "event with count 0 on object %u", ev->obj);
            return;
        }
        if (ev->kind == TD_CRDT_EV_INSERT) {
            if (ev->pos > len) {
                breaks(sh, "insert event at %zu past the end (%zu) of object %u", ev->pos, len,
                       ev->obj);
                return;
            }
            if (o->kind == TD_CRDT_TEXT) {
                o->text_len += ev->count;
                return;
            }
            for (size_t k = 0; k < ev->count; k++) {
                td_crdt_value v;
                td_crdt_err e = td_crdt_list_get(sh->doc, ev->obj, ev->pos + k, &v);
                if (e != TD_CRDT_OK) {
                    breaks(sh, "list_get(%zu) inside an insert event of list %u: %s",
                           ev->pos + k, ev->obj, td_crdt_strerror(e));
                    return;
                }
                sval s = sval_copy(&v);
                list_insert(o, ev->pos + k, &s);
            }
            return;
        }
        if (ev->pos > len || ev->count > len - ev->pos) {
            breaks(sh, "delete event of %zu at %zu past the end (%zu) of object %u", ev->count,
                   ev->pos, len, ev->obj);
            return;
        }
        if (o->kind == TD_CRDT_TEXT) {
            o->text_len -= ev->count;
            return;
        }
        for (size_t k = 0; k < ev->count; k++)
            sval_free(&o->vals[ev->pos + k]);
        memmove(o->vals + ev->pos, o->vals + ev->pos + ev->count,
                (o->nvals - ev->pos - ev->count) * sizeof *o->vals);
        o->nvals -= ev->count;
        return;
    }
    case TD_CRDT_EV_KEY: {
        if (o->kind != TD_CRDT_MAP) {
            breaks(sh, "key event on non-map %u", ev->obj);
            return;
        }
        if (!ev->key || ev->key_len == 0) {
            breaks(sh, "key event without a key");
            return;
        }
        td_crdt_value v;
        td_crdt_err e = td_crdt_map_get(sh->doc, ev->obj, ev->key, ev->key_len, &v);
        if (e != TD_CRDT_OK) {
            breaks(sh, "map_get inside a key event: %s", td_crdt_strerror(e));
            return;
        }
        set_entry(o, ev->key, ev->key_len, &v);
        return;
    }
    }
    breaks(sh, "event of unknown kind %d", (int)ev->kind);
}

/* ---- loading the shadow from the document, and comparing ------------------ */

/* Loads object h and, recursively, the objects under it that the shadow
 * has not met yet. */
static void load_obj(tt_shadow *sh, td_crdt_obj h, int depth)
{
    td_crdt_doc *d = sh->doc;
    int fresh;
    sobj *o = get_obj(sh, h, &fresh);
    if (!o || !fresh || depth > 100)
        return;
    if (o->kind == TD_CRDT_TEXT) {
        o->text_len = td_crdt_text_length(d, h);
        return;
    }
    size_t n = o->kind == TD_CRDT_LIST ? td_crdt_list_length(d, h) : td_crdt_map_size(d, h);
    for (size_t i = 0; i < n; i++) {
        td_crdt_value v;
        const char *k = NULL;
        size_t kl = 0;
        td_crdt_err e = o->kind == TD_CRDT_LIST ? td_crdt_list_get(d, h, i, &v)
                                                : td_crdt_map_entry(d, h, i, &k, &kl, &v);
        if (e != TD_CRDT_OK) {
            breaks(sh, "reading object %u while loading the shadow: %s", h, td_crdt_strerror(e));
            return;
        }
        if (o->kind == TD_CRDT_LIST) {
            sval sv = sval_copy(&v);
            list_insert(o, i, &sv);
        } else {
            set_entry(o, k, kl, &v);
        }
    }
    /* Children after the parent is filled: get_obj may move the array. */
    for (size_t i = 0; i < n; i++) {
        td_crdt_value v;
        const char *k;
        size_t kl;
        if ((sh->objs[h].kind == TD_CRDT_LIST ? td_crdt_list_get(d, h, i, &v)
                                              : td_crdt_map_entry(d, h, i, &k, &kl, &v)) ==
                TD_CRDT_OK &&
            v.type == TD_CRDT_V_OBJ)
            load_obj(sh, v.u.obj, depth + 1);
    }
}

static int cmp_obj(tt_shadow *sh, td_crdt_obj h, int depth, char *why, size_t n);

static int cmp_value(tt_shadow *sh, const td_crdt_value *v, int depth, char *why, size_t n)
{
    return v->type != TD_CRDT_V_OBJ || cmp_obj(sh, v->u.obj, depth + 1, why, n);
}

static int cmp_obj(tt_shadow *sh, td_crdt_obj h, int depth, char *why, size_t n)
{
    td_crdt_doc *d = sh->doc;
    td_crdt_kind kind = td_crdt_obj_kind(d, h);
    static const sobj empty;
    const sobj *o = h < sh->nobjs && sh->objs[h].seen ? &sh->objs[h] : &empty;
    if (depth > 100)
        return 1;
    if (o->seen && o->kind != kind) {
        snprintf(why, n, "object %u: kind %d, shadow says %d", h, (int)kind, (int)o->kind);
        return 0;
    }
    if (kind == TD_CRDT_TEXT) {
        size_t len = td_crdt_text_length(d, h);
        if (len != o->text_len) {
            snprintf(why, n, "text %u: length %zu, events say %zu", h, len, o->text_len);
            return 0;
        }
        return 1;
    }
    if (kind == TD_CRDT_LIST) {
        size_t len = td_crdt_list_length(d, h);
        if (len != o->nvals) {
            snprintf(why, n, "list %u: length %zu, events say %zu", h, len, o->nvals);
            return 0;
        }
        for (size_t i = 0; i < len; i++) {
            td_crdt_value v;
            if (td_crdt_list_get(d, h, i, &v) != TD_CRDT_OK) {
                snprintf(why, n, "list_get failed");
                return 0;
            }
            if (!value_same(&v, &o->vals[i].v)) {
                snprintf(why, n, "list %u: element %zu differs from what the events say", h, i);
                return 0;
            }
            if (!cmp_value(sh, &v, depth, why, n))
                return 0;
        }
        return 1;
    }
    size_t size = td_crdt_map_size(d, h);
    if (size != o->nents) {
        snprintf(why, n, "map %u: %zu keys, events say %zu", h, size, o->nents);
        return 0;
    }
    for (size_t i = 0; i < size; i++) {
        const char *k;
        size_t kl;
        td_crdt_value v;
        if (td_crdt_map_entry(d, h, i, &k, &kl, &v) != TD_CRDT_OK) {
            snprintf(why, n, "map_entry failed");
            return 0;
        }
        const sentry *e = find_entry((sobj *)o, k, kl);
        if (!e || !value_same(&v, &e->val.v)) {
            snprintf(why, n, "map %u: key %.*s differs from what the events say", h, (int)kl, k);
            return 0;
        }
        if (!cmp_value(sh, &v, depth, why, n))
            return 0;
    }
    return 1;
}

/* ---- API ------------------------------------------------------------------ */

static void shadow_reset(tt_shadow *sh)
{
    for (size_t i = 0; i < sh->nobjs; i++)
        sobj_clear(&sh->objs[i]);
    free(sh->objs);
    sh->objs = NULL;
    sh->nobjs = 0;
}

tt_shadow *tt_shadow_attach(tt_shadow *sh, td_crdt_doc *d, const td_crdt_obj *roots,
                            size_t nroots)
{
    if (!sh) {
        sh = xrealloc(NULL, sizeof *sh);
        memset(sh, 0, sizeof *sh);
    }
    shadow_reset(sh);
    sh->doc = d;
    sh->nroots = nroots < 8 ? nroots : 8;
    memcpy(sh->roots, roots, sh->nroots * sizeof *roots);
    for (size_t i = 0; i < sh->nroots; i++)
        load_obj(sh, roots[i], 0);
    td_crdt_set_observer(d, on_event, sh);
    return sh;
}

int tt_shadow_check(tt_shadow *sh, char *why, size_t n)
{
    if (sh->broken) {
        snprintf(why, n, "%s", sh->why);
        return 0;
    }
    for (size_t i = 0; i < sh->nroots; i++)
        if (!cmp_obj(sh, sh->roots[i], 0, why, n))
            return 0;
    return 1;
}

long tt_shadow_events(const tt_shadow *sh)
{
    return sh->events;
}

void tt_shadow_free(tt_shadow *sh)
{
    if (!sh)
        return;
    shadow_reset(sh);
    free(sh);
}
