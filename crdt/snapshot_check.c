/*
 * snapshot_check.c -- a loaded snapshot must describe a history that could
 * have happened.
 *
 * The decoder (snapshot.c) checks each piece on its own: ids below the
 * version vector, origins that are items of their sequence, sorted keys. That
 * is not enough for a document read from a damaged or hostile file: pieces
 * can contradict each other, and then diff() hands peers a history they must
 * refuse. So after loading we check the whole:
 *
 *  1. Every seq of an agent has at most one meaning: an item, a delete, a map
 *     write, or a losing write that made an object (anything else is an
 *     effect-free op that diff sends as a NOP).
 *  2. Every item a delete record names is deleted.
 *  3. Every nested object agrees with the op that made it: a list element of
 *     its kind at its id, or a map write of its key that either holds the
 *     key or lost it to a later write.
 *  4. The ops can be put in an order where each one's references (origins,
 *     delete targets, the object it edits) come first, and each agent's ops
 *     come in seq order -- the order a peer integrating diff() will need.
 *     Checked like the batch planner: per agent a cursor, advanced while the
 *     next op's references are behind the other cursors; repeated until no
 *     cursor moves. Ops of one agent that reference another agent's later
 *     ops, or references in a cycle, leave a cursor stuck.
 */
#include "crdt_internal.h"

#include <stdlib.h>

typedef struct unit {
    uint32_t seq, len;
    td_id refs[3]; /* each must be seen before this op */
    uint8_t nrefs;
} unit;

typedef struct units {
    unit *u;
    uint32_t n, cap;
} units;

typedef struct checker {
    td_crdt_doc *d;
    units *per_agent;
    int oom;
} checker;

static void add_ref(unit *u, td_id id)
{
    if (id.agent != TD_NONE)
        u->refs[u->nrefs++] = id;
}

/* The op that made object h, as a reference (none for roots). */
static td_id creator(const td_crdt_doc *d, uint32_t h)
{
    const td_obj *o = d->objs[h - 1];
    td_id none = {TD_NONE, 0};
    return o->is_root ? none : o->id;
}

static unit *push(checker *c, uint32_t agent, uint32_t seq, uint32_t len)
{
    units *us = &c->per_agent[agent];
    if (!td_grow(c->d, (void **)&us->u, &us->cap, us->n + 1, sizeof *us->u)) {
        c->oom = 1;
        return NULL;
    }
    unit *u = &us->u[us->n++];
    memset(u, 0, sizeof *u);
    u->seq = seq;
    u->len = len;
    return u;
}

static int unit_cmp(const void *x, const void *y)
{
    const unit *a = x, *b = y;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int lww_beats(const td_crdt_doc *d, const td_mapent *e, uint64_t lamport, td_id id)
{
    if (e->lamport != lamport)
        return e->lamport > lamport;
    uint64_t g1 = d->agents[e->id.agent].id, g2 = d->agents[id.agent].id;
    if (g1 != g2)
        return g1 > g2;
    return e->id.seq > id.seq;
}

/* 3: object h agrees with the op that made it. */
static int object_consistent(td_crdt_doc *d, uint32_t h)
{
    const td_obj *o = d->objs[h - 1];
    if (o->is_root)
        return 1;
    const td_obj *p = d->objs[o->parent - 1];
    uint8_t tag = (uint8_t)(TD_VT_TEXT + o->kind - 1);
    if (p->kind == TD_CRDT_LIST) {
        td_pos pos;
        if (o->key || !td_seq_locate(d, o->parent, o->id, &pos))
            return 0;
        const td_run *r = &pos.leaf->r[pos.ri];
        const td_val *v = &p->u.seq.vals[r->content + pos.off];
        return v->tag == tag && v->u.obj == h;
    }
    if (p->kind != TD_CRDT_MAP || !o->key)
        return 0;
    const td_mapent *e = td_map_find(&p->u.map, o->key, o->klen);
    if (!e)
        return 0;
    if (e->id.agent == o->id.agent && e->id.seq == o->id.seq)
        return e->val.tag == tag && e->val.u.obj == h && e->lamport == o->lamport;
    return lww_beats(d, e, o->lamport, o->id);
}

/* 2: every item of the record is deleted. */
static int record_applied(td_crdt_doc *d, const td_delrec *r)
{
    uint32_t lo = r->desc ? r->target.seq - (r->len - 1) : r->target.seq;
    uint64_t seq = lo, hi = (uint64_t)lo + r->len - 1;
    while (seq <= hi) {
        td_pos p;
        if (!td_seq_locate(d, r->obj, (td_id){r->target.agent, (uint32_t)seq}, &p) ||
            !p.leaf->r[p.ri].deleted)
            return 0;
        seq += p.leaf->r[p.ri].len - p.off;
    }
    return 1;
}

static void collect_seq(checker *c, uint32_t h)
{
    const td_seq *q = &c->d->objs[h - 1]->u.seq;
    td_id cr = creator(c->d, h);
    for (const td_leaf *l = q->first; l; l = l->next)
        for (uint32_t i = 0; i < l->n; i++) {
            const td_run *r = &l->r[i];
            unit *u = push(c, r->id.agent, r->id.seq, r->len);
            if (!u)
                return;
            add_ref(u, r->left);
            add_ref(u, r->right);
            add_ref(u, cr);
        }
}

static void collect_map(checker *c, uint32_t h)
{
    const td_map *m = &c->d->objs[h - 1]->u.map;
    td_id cr = creator(c->d, h);
    for (uint32_t i = 0; i < m->n; i++) {
        unit *u = push(c, m->e[i].id.agent, m->e[i].id.seq, 1);
        if (!u)
            return;
        add_ref(u, cr);
    }
}

/* 1 and 4: sorted per agent without overlaps, then orderable. */
static int orderable(checker *c)
{
    td_crdt_doc *d = c->d;
    uint32_t *next = td_mem(d, NULL, ((size_t)d->nagents + 1) * sizeof *next);
    uint32_t *done = td_mem(d, NULL, ((size_t)d->nagents + 1) * sizeof *done);
    int ok = next && done;
    for (uint32_t a = 0; ok && a < d->nagents; a++) {
        units *us = &c->per_agent[a];
        if (us->n > 1)
            qsort(us->u, us->n, sizeof *us->u, unit_cmp);
        for (uint32_t i = 1; ok && i < us->n; i++)
            ok = us->u[i].seq >= us->u[i - 1].seq + us->u[i - 1].len;
        next[a] = 0;
        done[a] = 0;
    }
    for (int progress = 1; ok && progress;) {
        progress = 0;
        for (uint32_t a = 0; a < d->nagents; a++) {
            units *us = &c->per_agent[a];
            for (; next[a] < us->n; next[a]++) {
                const unit *u = &us->u[next[a]];
                if (done[a] < u->seq)
                    done[a] = u->seq; /* effect-free ops in between */
                int ready = 1;
                for (uint32_t k = 0; k < u->nrefs && ready; k++)
                    ready = u->refs[k].seq < done[u->refs[k].agent];
                if (!ready)
                    break;
                done[a] = u->seq + u->len;
                progress = 1;
            }
            if (next[a] == us->n && done[a] < d->agents[a].vv) {
                done[a] = d->agents[a].vv;
                progress = 1;
            }
        }
    }
    for (uint32_t a = 0; ok && a < d->nagents; a++)
        ok = next[a] == c->per_agent[a].n;
    td_memfree(d, next);
    td_memfree(d, done);
    return ok;
}

/* 0 if the loaded document is consistent; otherwise a reason. */
const char *td_snapshot_check(td_crdt_doc *d, int *oom)
{
    checker c = {d, NULL, 0};
    const char *why = NULL;
    *oom = 0;
    for (uint32_t h = 1; h <= d->nobjs && !why; h++)
        if (!object_consistent(d, h))
            why = "a nested object disagrees with the op that made it";
    for (uint32_t a = 0; a < d->nagents && !why; a++)
        for (uint32_t i = 0; i < d->agents[a].ndels && !why; i++)
            if (!record_applied(d, &d->agents[a].dels[i]))
                why = "a delete record names an item that is not deleted";
    if (why)
        return why;
    c.per_agent = td_mem(d, NULL, ((size_t)d->nagents + 1) * sizeof *c.per_agent);
    if (!c.per_agent) {
        *oom = 1;
        return "out of memory";
    }
    memset(c.per_agent, 0, ((size_t)d->nagents + 1) * sizeof *c.per_agent);
    for (uint32_t h = 1; h <= d->nobjs && !c.oom; h++) {
        td_obj *o = d->objs[h - 1];
        if (o->kind == TD_CRDT_MAP)
            collect_map(&c, h);
        else
            collect_seq(&c, h);
        /* a losing write that made an object is an op of its own */
        if (o->key && !o->is_root) {
            const td_mapent *e = td_map_find(&d->objs[o->parent - 1]->u.map, o->key, o->klen);
            if (e && !(e->id.agent == o->id.agent && e->id.seq == o->id.seq)) {
                unit *u = push(&c, o->id.agent, o->id.seq, 1);
                if (u)
                    add_ref(u, creator(d, o->parent));
            }
        }
    }
    for (uint32_t a = 0; a < d->nagents && !c.oom; a++)
        for (uint32_t i = 0; i < d->agents[a].ndels && !c.oom; i++) {
            const td_delrec *r = &d->agents[a].dels[i];
            unit *u = push(&c, a, r->seq, r->len);
            if (u) {
                td_id hi = r->target;
                if (!r->desc)
                    hi.seq += r->len - 1;
                add_ref(u, hi);
                add_ref(u, creator(d, r->obj));
            }
        }
    if (c.oom) {
        *oom = 1;
        why = "out of memory";
    } else if (!orderable(&c)) {
        why = "ops overlap, or reference later ops or each other in a cycle";
    }
    for (uint32_t a = 0; a < d->nagents; a++)
        td_memfree(d, c.per_agent[a].u);
    td_memfree(d, c.per_agent);
    return why;
}
