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
    uint32_t sorted; /* u[0 .. sorted) is in seq order */
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

/* Runs in seq order: the id index has one entry per run, sorted. */
typedef struct run_walk {
    checker *c;
    uint32_t agent;
} run_walk;

static int walk_entry(void *ud, td_idx_ent *e)
{
    run_walk *w = ud;
    const td_leaf *l = e->leaf;
    for (uint32_t i = 0; i < l->n; i++) {
        const td_run *r = &l->r[i];
        if (r->id.agent != w->agent || r->id.seq != e->seq)
            continue;
        unit *u = push(w->c, r->id.agent, r->id.seq, r->len);
        if (!u)
            return 1;
        add_ref(u, r->left);
        add_ref(u, r->right);
        add_ref(u, creator(w->c->d, l->obj));
        return 0;
    }
    return 0;
}

/* u[0 .. sorted) and u[sorted .. n) of agent a are each in seq order (the
 * tail once sorted, if sort_tail): merges them. */
static void merge_tail(checker *c, uint32_t a, int sort_tail)
{
    units *us = &c->per_agent[a];
    uint32_t mid = us->sorted;
    if (sort_tail && us->n - mid > 1)
        qsort(us->u + mid, us->n - mid, sizeof *us->u, unit_cmp);
    if (mid > 0 && mid < us->n && us->u[mid - 1].seq > us->u[mid].seq) {
        unit *tmp = td_mem(c->d, NULL, (size_t)us->n * sizeof *tmp);
        if (!tmp) {
            c->oom = 1;
            return;
        }
        uint32_t i = 0, j = mid, k = 0;
        while (i < mid || j < us->n)
            tmp[k++] = (j >= us->n || (i < mid && us->u[i].seq <= us->u[j].seq)) ? us->u[i++]
                                                                                : us->u[j++];
        memcpy(us->u, tmp, (size_t)us->n * sizeof *tmp);
        td_memfree(c->d, tmp);
    }
    us->sorted = us->n;
}

/* Per agent: runs (from the index) and delete records (stored in seq
 * order) merged; then map writes and losing object writes, few, sorted and
 * merged in. No general sort of everything. */
static void collect(checker *c)
{
    td_crdt_doc *d = c->d;
    for (uint32_t a = 0; a < d->nagents && !c->oom; a++) {
        run_walk w = {c, a};
        td_idx_walk(&d->agents[a].idx, 0, walk_entry, &w);
        c->per_agent[a].sorted = c->per_agent[a].n;
        for (uint32_t i = 0; i < d->agents[a].ndels && !c->oom; i++) {
            const td_delrec *r = &d->agents[a].dels[i];
            unit *u = push(c, a, r->seq, r->len);
            if (!u)
                return;
            td_id hi = r->target;
            if (!r->desc)
                hi.seq += r->len - 1;
            add_ref(u, hi);
            add_ref(u, creator(d, r->obj));
        }
        merge_tail(c, a, 0);
    }
    for (uint32_t h = 1; h <= d->nobjs && !c->oom; h++) {
        const td_obj *o = d->objs[h - 1];
        if (o->kind == TD_CRDT_MAP)
            for (uint32_t i = 0; i < o->u.map.n && !c->oom; i++) {
                unit *u = push(c, o->u.map.e[i].id.agent, o->u.map.e[i].id.seq, 1);
                if (u)
                    add_ref(u, creator(d, h));
            }
        if (o->key && !o->is_root) { /* a losing write that made an object */
            const td_mapent *e = td_map_find(&d->objs[o->parent - 1]->u.map, o->key, o->klen);
            if (e && !(e->id.agent == o->id.agent && e->id.seq == o->id.seq)) {
                unit *u = push(c, o->id.agent, o->id.seq, 1);
                if (u)
                    add_ref(u, creator(d, o->parent));
            }
        }
    }
    for (uint32_t a = 0; a < d->nagents && !c->oom; a++)
        merge_tail(c, a, 1);
}

/* 1 and 4: no overlaps per agent, then orderable. */
static int orderable(checker *c)
{
    td_crdt_doc *d = c->d;
    uint32_t *next = td_mem(d, NULL, ((size_t)d->nagents + 1) * sizeof *next);
    uint32_t *done = td_mem(d, NULL, ((size_t)d->nagents + 1) * sizeof *done);
    int ok = next && done;
    for (uint32_t a = 0; ok && a < d->nagents; a++) {
        const units *us = &c->per_agent[a];
        for (uint32_t i = 1; ok && i < us->n; i++)
            ok = us->u[i].seq >= us->u[i - 1].seq + us->u[i - 1].len;
        next[a] = 0;
        done[a] = 0;
    }
    for (int progress = 1; ok && progress;) {
        progress = 0;
        for (uint32_t a = 0; a < d->nagents; a++) {
            const units *us = &c->per_agent[a];
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

/* NULL if the loaded document is consistent; otherwise why not. */
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
    collect(&c);
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
