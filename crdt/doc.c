/*
 * doc.c -- a document's lifecycle, memory, errors, agents and objects, and
 * the public API for local edits.
 *
 * Every local edit is validated completely before it changes anything, takes
 * the next seqs of the local agent, and applies at once; td_crdt_commit()
 * (batch.c) later encodes everything the local agent did since the last
 * commit.
 */
#include "crdt_internal.h"

#include <stdio.h>
#include <stdlib.h>

static void *libc_alloc(void *ud, void *p, size_t n)
{
    (void)ud;
    if (n == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, n);
}

void *td_crdt_mem(td_crdt_doc *d, void *p, size_t n)
{
    if (n == 0)
        n = 1;
    return d->alloc(d->alloc_ud, p, n);
}

void td_crdt_memfree(td_crdt_doc *d, void *p)
{
    if (p)
        d->alloc(d->alloc_ud, p, 0);
}

int td_crdt_grow(td_crdt_doc *d, void **arr, uint32_t *cap, uint32_t need, size_t sz)
{
    if (need <= *cap)
        return 1;
    uint64_t nc = *cap ? *cap : 4;
    while (nc < need)
        nc *= 2;
    if (nc > UINT32_MAX || nc * sz > SIZE_MAX / 2)
        return 0;
    void *p = td_crdt_mem(d, *arr, (size_t)nc * sz);
    if (!p)
        return 0;
    *arr = p;
    *cap = (uint32_t)nc;
    return 1;
}

td_crdt_err td_crdt_fail(td_crdt_doc *d, td_crdt_err e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->err, sizeof d->err, fmt, ap);
    va_end(ap);
    return e;
}

const char *td_crdt_strerror(td_crdt_err e)
{
    static const char *const names[] = {
        [TD_CRDT_OK] = "ok",
        [TD_CRDT_ERR_NOMEM] = "nomem",
        [TD_CRDT_ERR_ARG] = "arg",
        [TD_CRDT_ERR_DECODE] = "decode",
        [TD_CRDT_ERR_VERSION] = "version",
        [TD_CRDT_ERR_INVALID_OP] = "invalid_op",
        [TD_CRDT_ERR_LIMIT] = "limit",
        [TD_CRDT_ERR_MISSING] = "missing",
        [TD_CRDT_ERR_REFUSED] = "refused",
    };
    if ((unsigned)e >= sizeof names / sizeof names[0])
        return "unknown error";
    return names[e];
}

void td_crdt_set_observer(td_crdt_doc *d, td_crdt_observer_fn fn, void *ud)
{
    d->observer = fn;
    d->observer_ud = ud;
}

void td_crdt_emit(td_crdt_doc *d, td_crdt_event_kind kind, uint32_t obj, uint32_t pos,
             uint32_t count, const char *key, size_t klen)
{
    td_crdt_event ev = {kind, obj, pos, count, key, klen, !d->integrating};
    d->observer(d->observer_ud, &ev);
}

/* ---- agents -------------------------------------------------------------- */

int td_crdt_agent_find(const td_crdt_doc *d, uint64_t id, uint32_t *out)
{
    uint32_t lo = 0, hi = d->nagents;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        uint64_t m = d->agents[d->agent_order[mid]].id;
        if (m == id) {
            *out = d->agent_order[mid];
            return 1;
        }
        if (m < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *out = lo; /* insertion point in agent_order */
    return 0;
}

td_crdt_err td_crdt_agent_intern(td_crdt_doc *d, uint64_t id, uint32_t *out)
{
    uint32_t at;
    if (td_crdt_agent_find(d, id, out))
        return TD_CRDT_OK;
    at = *out;
    uint32_t cap = d->capagents, cap2 = d->capagents;
    if (!td_crdt_grow(d, (void **)&d->agents, &cap, d->nagents + 1, sizeof *d->agents) ||
        !td_crdt_grow(d, (void **)&d->agent_order, &cap2, d->nagents + 1, sizeof *d->agent_order))
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    /* both arrays grow together: keep the smaller capacity */
    d->capagents = cap < cap2 ? cap : cap2;
    uint32_t i = d->nagents++;
    memset(&d->agents[i], 0, sizeof d->agents[i]);
    d->agents[i].id = id;
    memmove(&d->agent_order[at + 1], &d->agent_order[at],
            (i - at) * sizeof *d->agent_order);
    d->agent_order[at] = i;
    *out = i;
    return TD_CRDT_OK;
}

/* Appends a delete record, extending the agent's last one when the new
 * record continues it (same object and target agent, next seqs, next targets
 * in the same direction): backspacing over a word is one record. Records are
 * appended in seq order, so an agent's records stay sorted. */
td_crdt_err td_crdt_delrec_add(td_crdt_doc *d, uint32_t agent, const td_delrec *r)
{
    td_agent *a = &d->agents[agent];
    if (a->ndels) {
        td_delrec *p = &a->dels[a->ndels - 1];
        if (p->seq + p->len == r->seq && p->obj == r->obj &&
            p->target.agent == r->target.agent) {
            int p_up = p->len == 1 || !p->desc, p_down = p->len == 1 || p->desc;
            int r_up = r->len == 1 || !r->desc, r_down = r->len == 1 || r->desc;
            if (p_up && r_up && (uint64_t)p->target.seq + p->len == r->target.seq) {
                p->desc = 0;
                p->len += r->len;
                return TD_CRDT_OK;
            }
            if (p_down && r_down && p->target.seq >= p->len &&
                p->target.seq - p->len == r->target.seq) {
                p->desc = 1;
                p->len += r->len;
                return TD_CRDT_OK;
            }
        }
    }
    if (!td_crdt_grow(d, (void **)&a->dels, &a->capdels, a->ndels + 1, sizeof *a->dels))
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    a->dels[a->ndels++] = *r;
    return TD_CRDT_OK;
}

td_crdt_err td_crdt_delrec_reserve(td_crdt_doc *d, uint32_t agent, uint32_t n)
{
    td_agent *a = &d->agents[agent];
    if (n > UINT32_MAX - a->ndels ||
        !td_crdt_grow(d, (void **)&a->dels, &a->capdels, a->ndels + n, sizeof *a->dels))
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    return TD_CRDT_OK;
}

/* ---- objects ------------------------------------------------------------- */

td_obj *td_crdt_obj_get(const td_crdt_doc *d, td_crdt_obj h)
{
    if (h == 0 || h > d->nobjs)
        return NULL;
    return d->objs[h - 1];
}

td_crdt_kind td_crdt_obj_kind(const td_crdt_doc *d, td_crdt_obj h)
{
    td_obj *o = td_crdt_obj_get(d, h);
    return o ? (td_crdt_kind)o->kind : (td_crdt_kind)0;
}

static int okey_cmp(const td_objkey *k, uint64_t agent, uint32_t seq)
{
    if (k->agent != agent)
        return k->agent < agent ? -1 : 1;
    return k->seq < seq ? -1 : k->seq > seq;
}

/* First okeys index not below (agent, seq). */
static uint32_t okey_lower(const td_crdt_doc *d, uint64_t agent, uint32_t seq)
{
    uint32_t lo = 0, hi = d->nokeys;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (okey_cmp(&d->okeys[mid], agent, seq) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

uint32_t td_crdt_obj_find_nested(const td_crdt_doc *d, uint64_t agent, uint32_t seq)
{
    uint32_t i = okey_lower(d, agent, seq);
    if (i < d->nokeys && okey_cmp(&d->okeys[i], agent, seq) == 0)
        return d->okeys[i].obj;
    return 0;
}

uint32_t td_crdt_obj_find_root(const td_crdt_doc *d, uint8_t kind, const char *name,
                          size_t len)
{
    for (uint32_t i = 0; i < d->nroots; i++) {
        const td_obj *o = d->objs[d->roots[i] - 1];
        if (o->kind == kind && o->name_len == len && memcmp(o->name, name, len) == 0)
            return d->roots[i];
    }
    return 0;
}

static td_crdt_err obj_alloc(td_crdt_doc *d, uint8_t kind, td_obj **out, uint32_t *h)
{
    if (d->nobjs >= 0x7ffffff0u)
        return td_crdt_fail(d, TD_CRDT_ERR_LIMIT, "too many objects");
    if (!td_crdt_grow(d, (void **)&d->objs, &d->capobjs, d->nobjs + 1, sizeof *d->objs))
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    td_obj *o = td_crdt_mem(d, NULL, sizeof *o);
    if (!o)
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    memset(o, 0, sizeof *o);
    o->kind = kind;
    *h = d->nobjs + 1;
    if (kind == TD_CRDT_MAP)
        memset(&o->u.map, 0, sizeof o->u.map);
    else
        td_crdt_seq_init(&o->u.seq, *h);
    *out = o;
    return TD_CRDT_OK;
}

td_crdt_err td_crdt_obj_new_root(td_crdt_doc *d, uint8_t kind, const char *name,
                            size_t len, uint32_t *out)
{
    td_obj *o;
    uint32_t h;
    if (!td_crdt_grow(d, (void **)&d->roots, &d->caproots, d->nroots + 1, sizeof *d->roots))
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    td_crdt_err e = obj_alloc(d, kind, &o, &h);
    if (e)
        return e;
    o->name = td_crdt_mem(d, NULL, len);
    if (!o->name) {
        td_crdt_memfree(d, o);
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    }
    memcpy(o->name, name, len);
    o->name_len = (uint32_t)len;
    o->is_root = 1;
    o->id.agent = TD_NONE;
    d->objs[d->nobjs++] = o;
    d->roots[d->nroots++] = h;
    *out = h;
    return TD_CRDT_OK;
}

td_crdt_err td_crdt_obj_new_nested(td_crdt_doc *d, uint8_t kind, td_id id,
                              uint32_t parent, uint32_t *out)
{
    td_obj *po = td_crdt_obj_get(d, parent);
    if (po && po->depth + 1u > d->max_depth)
        return td_crdt_fail(d, TD_CRDT_ERR_LIMIT, "objects nested deeper than %zu", d->max_depth);
    if (!td_crdt_grow(d, (void **)&d->okeys, &d->capokeys, d->nokeys + 1, sizeof *d->okeys))
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    td_obj *o;
    uint32_t h;
    td_crdt_err e = obj_alloc(d, kind, &o, &h);
    if (e)
        return e;
    o->id = id;
    o->parent = parent;
    o->depth = (uint16_t)(po ? po->depth + 1 : 1);
    d->objs[d->nobjs++] = o;
    uint64_t agent = d->agents[id.agent].id;
    uint32_t at = okey_lower(d, agent, id.seq);
    memmove(&d->okeys[at + 1], &d->okeys[at], (d->nokeys - at) * sizeof *d->okeys);
    d->okeys[at].agent = agent;
    d->okeys[at].seq = id.seq;
    d->okeys[at].obj = h;
    d->nokeys++;
    *out = h;
    return TD_CRDT_OK;
}

/* Undoes the last td_crdt_obj_new_nested (an edit or an op that failed after
 * it: an object without the op that made it must not stay). */
void td_crdt_obj_drop_last_nested(td_crdt_doc *d)
{
    td_obj *o = d->objs[--d->nobjs];
    uint32_t at = okey_lower(d, d->agents[o->id.agent].id, o->id.seq);
    memmove(&d->okeys[at], &d->okeys[at + 1], (d->nokeys - at - 1) * sizeof *d->okeys);
    d->nokeys--;
    td_crdt_memfree(d, o->key);
    td_crdt_memfree(d, o);
}

void td_crdt_val_free(td_crdt_doc *d, td_val *v)
{
    if (v->tag == TD_VT_STR)
        td_crdt_memfree(d, v->u.s);
    v->tag = TD_VT_NULL;
}

void td_crdt_val_export(const td_crdt_doc *d, const td_val *v, td_crdt_value *out)
{
    static const td_crdt_vtype types[TD_VT_COUNT] = {
        [TD_VT_NULL] = TD_CRDT_V_NULL,   [TD_VT_FALSE] = TD_CRDT_V_FALSE,
        [TD_VT_TRUE] = TD_CRDT_V_TRUE,   [TD_VT_INT] = TD_CRDT_V_INT,
        [TD_VT_FLOAT] = TD_CRDT_V_FLOAT, [TD_VT_STR] = TD_CRDT_V_STR,
        [TD_VT_TEXT] = TD_CRDT_V_OBJ,    [TD_VT_LIST] = TD_CRDT_V_OBJ,
        [TD_VT_MAP] = TD_CRDT_V_OBJ,     [TD_VT_DELETED] = TD_CRDT_V_NONE,
    };
    (void)d;
    memset(out, 0, sizeof *out);
    out->type = types[v->tag];
    switch (v->tag) {
    case TD_VT_INT: out->u.i = v->u.i; break;
    case TD_VT_FLOAT: out->u.f = v->u.f; break;
    case TD_VT_STR:
        out->u.str.ptr = v->u.s;
        out->u.str.len = v->len;
        break;
    case TD_VT_TEXT: case TD_VT_LIST: case TD_VT_MAP:
        out->obj_kind = (td_crdt_kind)(v->tag - TD_VT_TEXT + 1);
        out->u.obj = v->u.obj;
        break;
    default: break;
    }
}

/* Public scalar -> stored value (the string is copied). */
static td_crdt_err val_import(td_crdt_doc *d, const td_crdt_value *in, td_val *out)
{
    static const uint8_t tags[] = {
        [TD_CRDT_V_NULL] = TD_VT_NULL,   [TD_CRDT_V_FALSE] = TD_VT_FALSE,
        [TD_CRDT_V_TRUE] = TD_VT_TRUE,   [TD_CRDT_V_INT] = TD_VT_INT,
        [TD_CRDT_V_FLOAT] = TD_VT_FLOAT, [TD_CRDT_V_STR] = TD_VT_STR,
    };
    memset(out, 0, sizeof *out);
    if (!in || in->type < TD_CRDT_V_NULL || in->type > TD_CRDT_V_STR)
        return td_crdt_fail(d, TD_CRDT_ERR_ARG, "value must be a scalar");
    out->tag = tags[in->type];
    if (in->type == TD_CRDT_V_INT)
        out->u.i = in->u.i;
    if (in->type == TD_CRDT_V_FLOAT) {
        if (in->u.f != in->u.f)
            return td_crdt_fail(d, TD_CRDT_ERR_ARG, "NaN is not a JSON value");
        out->u.f = in->u.f;
    }
    if (in->type == TD_CRDT_V_STR) {
        if (in->u.str.len > 0x7fffffff || (in->u.str.len && !in->u.str.ptr) ||
            td_crdt_utf8_count(in->u.str.ptr, in->u.str.len) == SIZE_MAX)
            return td_crdt_fail(d, TD_CRDT_ERR_ARG, "string is not valid UTF-8");
        out->u.s = td_crdt_mem(d, NULL, in->u.str.len);
        if (!out->u.s)
            return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
        memcpy(out->u.s, in->u.str.ptr, in->u.str.len);
        out->len = (uint32_t)in->u.str.len;
    }
    return TD_CRDT_OK;
}

/* ---- lifecycle ------------------------------------------------------------ */

td_crdt_err td_crdt_doc_new(const td_crdt_options *opts, td_crdt_doc **out)
{
    td_crdt_options o = {0};
    if (opts)
        o = *opts;
    if (!out)
        return TD_CRDT_ERR_ARG;
    *out = NULL;
    td_crdt_alloc_fn fn = o.alloc ? o.alloc : libc_alloc;
    td_crdt_doc *d = fn(o.alloc_ud, NULL, sizeof *d);
    if (!d)
        return TD_CRDT_ERR_NOMEM;
    memset(d, 0, sizeof *d);
    d->alloc = fn;
    d->alloc_ud = o.alloc_ud;
    d->max_pending_ops = o.max_pending_ops ? o.max_pending_ops : 1000000;
    d->max_pending_bytes = o.max_pending_bytes ? o.max_pending_bytes : (64u << 20);
    d->max_depth = o.max_depth ? o.max_depth : 64;
    if (d->max_depth > 1000)
        d->max_depth = 1000;
    td_crdt_err e = td_crdt_agent_intern(d, o.agent, &d->self);
    if (e) {
        td_crdt_doc_free(d);
        return e;
    }
    *out = d;
    return TD_CRDT_OK;
}

void td_crdt_doc_free(td_crdt_doc *d)
{
    if (!d)
        return;
    for (uint32_t i = 0; i < d->nobjs; i++) {
        td_obj *o = d->objs[i];
        if (o->kind == TD_CRDT_MAP)
            td_crdt_map_free(d, &o->u.map);
        else
            td_crdt_seq_free(d, &o->u.seq);
        td_crdt_memfree(d, o->name);
        td_crdt_memfree(d, o->key);
        td_crdt_memfree(d, o);
    }
    for (uint32_t i = 0; i < d->nagents; i++) {
        td_crdt_idx_free(d, &d->agents[i].idx);
        td_crdt_memfree(d, d->agents[i].dels);
    }
    td_crdt_pending_free(d);
    td_crdt_spares_free(d);
    td_crdt_lazy_free(d);
    td_crdt_memfree(d, d->enc.ops);
    td_crdt_memfree(d, d->enc.agent_map);
    td_crdt_memfree(d, d->enc.obj_map);
    td_crdt_memfree(d, d->enc.objs);
    td_crdt_memfree(d, d->objs);
    td_crdt_memfree(d, d->okeys);
    td_crdt_memfree(d, d->roots);
    td_crdt_memfree(d, d->agents);
    td_crdt_memfree(d, d->agent_order);
    d->alloc(d->alloc_ud, d, 0);
}

const char *td_crdt_doc_error(const td_crdt_doc *d)
{
    return d && d->err[0] ? d->err : "no error";
}

uint64_t td_crdt_doc_agent(const td_crdt_doc *d)
{
    return d->agents[d->self].id;
}

void td_crdt_buf_free(td_crdt_doc *d, void *buf)
{
    td_crdt_memfree(d, buf);
}

uint64_t td_crdt_vv_get(const td_crdt_doc *d, uint64_t agent)
{
    uint32_t i;
    return td_crdt_agent_find(d, agent, &i) ? d->agents[i].vv : 0;
}

uint64_t td_crdt_op_count(const td_crdt_doc *d)
{
    return d->nops;
}

td_crdt_err td_crdt_root(td_crdt_doc *d, td_crdt_kind kind, const char *name,
                         size_t len, td_crdt_obj *out)
{
    if (kind < TD_CRDT_TEXT || kind > TD_CRDT_MAP || !out || !name || len == 0 ||
        len > TD_MAX_NAME || td_crdt_utf8_count(name, len) == SIZE_MAX)
        return td_crdt_fail(d, TD_CRDT_ERR_ARG, "root needs a kind and a name of 1-255 bytes of UTF-8");
    *out = td_crdt_obj_find_root(d, (uint8_t)kind, name, len);
    if (*out)
        return TD_CRDT_OK;
    return td_crdt_obj_new_root(d, (uint8_t)kind, name, len, out);
}

/* The object behind handle h if it has kind `kind`. */
static td_obj *obj_of(td_crdt_doc *d, td_crdt_obj h, uint8_t kind, const char *what)
{
    td_obj *o = td_crdt_obj_get(d, h);
    if (!o || o->kind != kind) {
        td_crdt_fail(d, TD_CRDT_ERR_ARG, "handle %u is not a %s", (unsigned)h, what);
        return NULL;
    }
    return o;
}

static td_crdt_err room_for_ops(td_crdt_doc *d, size_t n)
{
    if (n > TD_MAX_SEQ || d->agents[d->self].vv > TD_MAX_SEQ - n)
        return td_crdt_fail(d, TD_CRDT_ERR_LIMIT, "agent has used up its op ids");
    return TD_CRDT_OK;
}

/* The text or list h, if pos is a position in it (its end included); else
 * NULL, with the reason recorded. */
static td_obj *seq_at(td_crdt_doc *d, td_crdt_obj h, uint8_t kind, const char *what,
                      size_t pos)
{
    td_obj *o = obj_of(d, h, kind, what);
    if (o && pos > o->u.seq.vis) {
        td_crdt_fail(d, TD_CRDT_ERR_ARG, "position %zu past the end (%u)", pos, o->u.seq.vis);
        return NULL;
    }
    return o;
}

/* ---- text ---------------------------------------------------------------- */

td_crdt_err td_crdt_text_insert(td_crdt_doc *d, td_crdt_obj h, size_t pos,
                                const char *utf8, size_t len)
{
    td_crdt_err full_e = td_crdt_full(d); /* edits need the history */
    if (full_e)
        return full_e;
    if (!seq_at(d, h, TD_CRDT_TEXT, "text", pos))
        return TD_CRDT_ERR_ARG;
    if (len == 0)
        return TD_CRDT_OK;
    if (len == 1 && utf8 && (uint8_t)utf8[0] < 0x80) { /* a keystroke */
        uint32_t cp = (uint8_t)utf8[0];
        td_crdt_err e = room_for_ops(d, 1);
        return e ? e : td_crdt_seq_local_insert(d, h, (uint32_t)pos, &cp, NULL, 1);
    }
    size_t n = utf8 ? td_crdt_utf8_count(utf8, len) : SIZE_MAX;
    if (n == SIZE_MAX)
        return td_crdt_fail(d, TD_CRDT_ERR_ARG, "text is not valid UTF-8");
    td_crdt_err e = room_for_ops(d, n);
    if (e)
        return e;
    uint32_t one, *cps = &one;
    if (n > 1 && !(cps = td_crdt_mem(d, NULL, n * sizeof *cps)))
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    td_crdt_utf8_decode(utf8, len, cps);
    e = td_crdt_seq_local_insert(d, h, (uint32_t)pos, cps, NULL, (uint32_t)n);
    if (cps != &one)
        td_crdt_memfree(d, cps);
    return e;
}

/* A local delete of count items at pos of a text or list. */
static td_crdt_err seq_delete(td_crdt_doc *d, td_crdt_obj h, td_crdt_kind kind,
                              const char *what, size_t pos, size_t count)
{
    td_crdt_err full_e = td_crdt_full(d); /* edits need the history */
    if (full_e)
        return full_e;
    td_obj *o = obj_of(d, h, kind, what);
    if (!o)
        return TD_CRDT_ERR_ARG;
    if (pos > o->u.seq.vis || count > o->u.seq.vis - pos)
        return td_crdt_fail(d, TD_CRDT_ERR_ARG, "range %zu+%zu past the end (%u)", pos, count, o->u.seq.vis);
    if (count == 0)
        return TD_CRDT_OK;
    td_crdt_err e = room_for_ops(d, count);
    return e ? e : td_crdt_seq_local_delete(d, h, (uint32_t)pos, (uint32_t)count);
}

td_crdt_err td_crdt_text_delete(td_crdt_doc *d, td_crdt_obj h, size_t pos, size_t count)
{
    return seq_delete(d, h, TD_CRDT_TEXT, "text", pos, count);
}

size_t td_crdt_text_length(const td_crdt_doc *d, td_crdt_obj h)
{
    td_obj *o = td_crdt_obj_get(d, h);
    return o && o->kind == TD_CRDT_TEXT ? o->u.seq.vis : 0;
}

td_crdt_err td_crdt_text_get(td_crdt_doc *d, td_crdt_obj h, char **out, size_t *len)
{
    td_obj *o = obj_of(d, h, TD_CRDT_TEXT, "text");
    if (!o || !out)
        return TD_CRDT_ERR_ARG;
    td_buf b;
    td_crdt_wb_init(&b, d);
    if (o->u.seq.lazy && o->u.seq.lazy_bytes) /* lazily loaded: the snapshot's UTF-8 */
        td_crdt_wb_bytes(&b, d->lazy.text + o->u.seq.lazy_off, o->u.seq.lazy_bytes);
    for (td_leaf *l = o->u.seq.first; l; l = l->next)
        for (uint32_t i = 0; i < l->n; i++)
            if (!l->r[i].deleted)
                td_crdt_wb_utf8(&b, o->u.seq.text + l->r[i].content, l->r[i].len);
    td_crdt_wb_u8(&b, 0);
    if (b.oom) {
        td_crdt_wb_free(&b);
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    }
    *out = (char *)b.p;
    if (len)
        *len = b.len - 1;
    return TD_CRDT_OK;
}

/* ---- list ---------------------------------------------------------------- */

td_crdt_err td_crdt_list_insert(td_crdt_doc *d, td_crdt_obj h, size_t pos,
                                const td_crdt_value *vals, size_t n)
{
    td_crdt_err full_e = td_crdt_full(d); /* edits need the history */
    if (full_e)
        return full_e;
    if (!seq_at(d, h, TD_CRDT_LIST, "list", pos))
        return TD_CRDT_ERR_ARG;
    if (n == 0)
        return TD_CRDT_OK;
    td_crdt_err e = room_for_ops(d, n);
    if (e)
        return e;
    td_val *tmp = td_crdt_mem(d, NULL, n * sizeof *tmp);
    if (!tmp)
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    size_t done = 0;
    for (; done < n && !e; done++)
        e = val_import(d, &vals[done], &tmp[done]);
    if (!e)
        e = td_crdt_seq_local_insert(d, h, (uint32_t)pos, NULL, tmp, (uint32_t)n);
    if (e) /* on success the sequence owns the strings */
        for (size_t i = 0; i < done; i++)
            td_crdt_val_free(d, &tmp[i]);
    td_crdt_memfree(d, tmp);
    return e;
}

td_crdt_err td_crdt_list_insert_obj(td_crdt_doc *d, td_crdt_obj h, size_t pos,
                                    td_crdt_kind kind, td_crdt_obj *out)
{
    td_crdt_err full_e = td_crdt_full(d); /* edits need the history */
    if (full_e)
        return full_e;
    td_obj *o = obj_of(d, h, TD_CRDT_LIST, "list");
    if (!o)
        return TD_CRDT_ERR_ARG;
    if (pos > o->u.seq.vis || kind < TD_CRDT_TEXT || kind > TD_CRDT_MAP)
        return td_crdt_fail(d, TD_CRDT_ERR_ARG, "bad position or kind");
    td_crdt_err e = room_for_ops(d, 1);
    if (e)
        return e;
    td_id id = {d->self, d->agents[d->self].vv};
    uint32_t child;
    if ((e = td_crdt_obj_new_nested(d, (uint8_t)kind, id, h, &child)))
        return e;
    td_val v = {.tag = (uint8_t)(TD_VT_TEXT + kind - 1), .u.obj = child};
    if ((e = td_crdt_seq_local_insert(d, h, (uint32_t)pos, NULL, &v, 1))) {
        td_crdt_obj_drop_last_nested(d);
        return e;
    }
    if (out)
        *out = child;
    return TD_CRDT_OK;
}

td_crdt_err td_crdt_list_delete(td_crdt_doc *d, td_crdt_obj h, size_t pos, size_t count)
{
    return seq_delete(d, h, TD_CRDT_LIST, "list", pos, count);
}

size_t td_crdt_list_length(const td_crdt_doc *d, td_crdt_obj h)
{
    td_obj *o = td_crdt_obj_get(d, h);
    return o && o->kind == TD_CRDT_LIST ? o->u.seq.vis : 0;
}

td_crdt_err td_crdt_list_get(const td_crdt_doc *d, td_crdt_obj h, size_t pos,
                             td_crdt_value *out)
{
    td_obj *o = td_crdt_obj_get(d, h);
    if (!o || o->kind != TD_CRDT_LIST || pos >= o->u.seq.vis || !out)
        return TD_CRDT_ERR_ARG;
    td_pos p = td_crdt_seq_find_visible(&o->u.seq, (uint32_t)pos);
    const td_run *r = &p.leaf->r[p.ri];
    td_crdt_val_export(d, &o->u.seq.vals[r->content + p.off], out);
    return TD_CRDT_OK;
}

/* ---- map ----------------------------------------------------------------- */

static td_crdt_err map_write_local(td_crdt_doc *d, td_obj *o, const char *key,
                                   size_t klen, td_val *v)
{
    td_id id = {d->self, d->agents[d->self].vv};
    uint64_t lamport = d->max_lamport + 1;
    td_crdt_err e = td_crdt_map_write(d, &o->u.map, key, klen, v, lamport, id);
    if (e)
        return e;
    d->max_lamport = lamport;
    d->agents[d->self].vv++;
    d->nops++;
    return TD_CRDT_OK;
}

static td_crdt_err check_key(td_crdt_doc *d, const char *key, size_t klen)
{
    if (!key || klen == 0 || klen > TD_MAX_KEY || td_crdt_utf8_count(key, klen) == SIZE_MAX)
        return td_crdt_fail(d, TD_CRDT_ERR_ARG, "map key must be 1-65535 bytes of UTF-8");
    return room_for_ops(d, 1);
}

td_crdt_err td_crdt_map_set(td_crdt_doc *d, td_crdt_obj h, const char *key,
                            size_t klen, const td_crdt_value *val)
{
    td_crdt_err full_e = td_crdt_full(d); /* edits need the history */
    if (full_e)
        return full_e;
    td_obj *o = obj_of(d, h, TD_CRDT_MAP, "map");
    if (!o)
        return TD_CRDT_ERR_ARG;
    td_crdt_err e = check_key(d, key, klen);
    td_val v;
    if (e || (e = val_import(d, val, &v)))
        return e;
    if ((e = map_write_local(d, o, key, klen, &v)))
        td_crdt_val_free(d, &v);
    return e;
}

td_crdt_err td_crdt_map_set_obj(td_crdt_doc *d, td_crdt_obj h, const char *key,
                                size_t klen, td_crdt_kind kind, td_crdt_obj *out)
{
    td_crdt_err full_e = td_crdt_full(d); /* edits need the history */
    if (full_e)
        return full_e;
    td_obj *o = obj_of(d, h, TD_CRDT_MAP, "map");
    if (!o)
        return TD_CRDT_ERR_ARG;
    td_crdt_err e = check_key(d, key, klen);
    if (e)
        return e;
    if (kind < TD_CRDT_TEXT || kind > TD_CRDT_MAP)
        return td_crdt_fail(d, TD_CRDT_ERR_ARG, "bad kind");
    uint32_t child;
    td_id id = {d->self, d->agents[d->self].vv};
    if ((e = td_crdt_obj_new_nested(d, (uint8_t)kind, id, h, &child)))
        return e;
    td_obj *co = td_crdt_obj_get(d, child);
    if (!(co->key = td_crdt_mem(d, NULL, klen))) {
        td_crdt_obj_drop_last_nested(d);
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    }
    memcpy(co->key, key, klen);
    co->klen = (uint32_t)klen;
    co->lamport = d->max_lamport + 1;
    td_val v = {.tag = (uint8_t)(TD_VT_TEXT + kind - 1), .u.obj = child};
    if ((e = map_write_local(d, o, key, klen, &v))) {
        td_crdt_obj_drop_last_nested(d);
        return e;
    }
    if (out)
        *out = child;
    return TD_CRDT_OK;
}

td_crdt_err td_crdt_map_delete(td_crdt_doc *d, td_crdt_obj h, const char *key, size_t klen)
{
    td_crdt_err full_e = td_crdt_full(d); /* edits need the history */
    if (full_e)
        return full_e;
    td_obj *o = obj_of(d, h, TD_CRDT_MAP, "map");
    if (!o)
        return TD_CRDT_ERR_ARG;
    td_crdt_err e = check_key(d, key, klen);
    if (e)
        return e;
    td_mapent *m = td_crdt_map_find(&o->u.map, key, klen);
    if (!m || m->val.tag == TD_VT_DELETED)
        return TD_CRDT_OK; /* nothing to delete: no op */
    td_val v = {.tag = TD_VT_DELETED};
    return map_write_local(d, o, key, klen, &v);
}

td_crdt_err td_crdt_map_get(const td_crdt_doc *d, td_crdt_obj h, const char *key,
                            size_t klen, td_crdt_value *out)
{
    td_obj *o = td_crdt_obj_get(d, h);
    if (!o || o->kind != TD_CRDT_MAP || !out)
        return TD_CRDT_ERR_ARG;
    td_mapent *m = td_crdt_map_find(&o->u.map, key, klen);
    if (!m) {
        memset(out, 0, sizeof *out);
        return TD_CRDT_OK;
    }
    td_crdt_val_export(d, &m->val, out);
    return TD_CRDT_OK;
}

size_t td_crdt_map_size(const td_crdt_doc *d, td_crdt_obj h)
{
    td_obj *o = td_crdt_obj_get(d, h);
    return o && o->kind == TD_CRDT_MAP ? o->u.map.live : 0;
}

td_crdt_err td_crdt_map_entry(const td_crdt_doc *d, td_crdt_obj h, size_t index,
                              const char **key, size_t *klen, td_crdt_value *out)
{
    td_obj *o = td_crdt_obj_get(d, h);
    if (!o || o->kind != TD_CRDT_MAP || index >= o->u.map.live)
        return TD_CRDT_ERR_ARG;
    for (uint32_t i = 0; i < o->u.map.n; i++) {
        td_mapent *m = &o->u.map.e[i];
        if (m->val.tag == TD_VT_DELETED)
            continue;
        if (index-- == 0) {
            if (key)
                *key = m->key;
            if (klen)
                *klen = m->klen;
            if (out)
                td_crdt_val_export(d, &m->val, out);
            return TD_CRDT_OK;
        }
    }
    return TD_CRDT_ERR_ARG;
}
