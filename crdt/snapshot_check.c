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
 *  2. Every item a delete record names is deleted (checked as the records
 *     are decoded, td_crdt_seq_range_deleted).
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
    uint32_t run_obj; /* for a run: its sequence (0 for other ops) */
    td_id left, right;
    uint32_t step; /* when `orderable` reached it */
    const td_leaf *leaf; /* for a run: where it is (the tree does not change */
    uint32_t ri;         /* while the check runs), so no search finds it */
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
    /* the order `orderable` found: agent and unit index per step */
    uint32_t *step_agent, *step_unit, nsteps;
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
    if (!td_crdt_grow(c->d, (void **)&us->u, &us->cap, us->n + 1, sizeof *us->u)) {
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
        if (o->key || !td_crdt_seq_locate(d, o->parent, o->id, &pos))
            return 0;
        const td_run *r = &pos.leaf->r[pos.ri];
        const td_val *v = &p->u.seq.vals[r->content + pos.off];
        return v->tag == tag && v->u.obj == h;
    }
    if (p->kind != TD_CRDT_MAP || !o->key)
        return 0;
    const td_mapent *e = td_crdt_map_find(&p->u.map, o->key, o->klen);
    if (!e)
        return 0;
    if (e->id.agent == o->id.agent && e->id.seq == o->id.seq)
        return e->val.tag == tag && e->val.u.obj == h && e->lamport == o->lamport;
    return lww_beats(d, e, o->lamport, o->id);
}

/* Runs in seq order: the id index has one entry per run, sorted. */
typedef struct run_walk {
    checker *c;
    uint32_t agent;
    uint32_t del; /* next delete record of the agent to push */
} run_walk;

/* Delete records of w's agent with seqs below `below`, in order: pushed
 * between the runs so that the agent's units come out sorted without a
 * merge (and its scratch copy of every unit). */
static int push_dels(run_walk *w, uint64_t below)
{
    const td_agent *ag = &w->c->d->agents[w->agent];
    for (; w->del < ag->ndels && ag->dels[w->del].seq < below; w->del++) {
        const td_delrec *r = &ag->dels[w->del];
        unit *u = push(w->c, w->agent, r->seq, r->len);
        if (!u)
            return 1;
        td_id hi = r->target;
        if (!r->desc)
            hi.seq += r->len - 1;
        add_ref(u, hi);
        add_ref(u, creator(w->c->d, r->obj));
    }
    return 0;
}

static int walk_entry(void *ud, td_idx_ent *e)
{
    run_walk *w = ud;
    const td_leaf *l = e->leaf;
    for (uint32_t i = 0; i < l->n; i++) {
        const td_run *r = &l->r[i];
        if (r->id.agent != w->agent || r->id.seq != e->seq)
            continue;
        if (push_dels(w, r->id.seq))
            return 1;
        unit *u = push(w->c, r->id.agent, r->id.seq, r->len);
        if (!u)
            return 1;
        u->run_obj = l->obj;
        u->leaf = l;
        u->ri = i;
        u->left = r->left;
        u->right = r->right;
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
        unit *tmp = td_crdt_mem(c->d, NULL, (size_t)us->n * sizeof *tmp);
        if (!tmp) {
            c->oom = 1;
            return;
        }
        uint32_t i = 0, j = mid, k = 0;
        while (i < mid || j < us->n)
            tmp[k++] = (j >= us->n || (i < mid && us->u[i].seq <= us->u[j].seq)) ? us->u[i++]
                                                                                : us->u[j++];
        memcpy(us->u, tmp, (size_t)us->n * sizeof *tmp);
        td_crdt_memfree(c->d, tmp);
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
        /* one allocation of the right size: a run per index entry, a unit
         * per delete record (map writes, few, grow it later) */
        const td_idx *x = &d->agents[a].idx;
        uint64_t want = (uint64_t)d->agents[a].ndels + 1;
        for (uint32_t i = 0; i < x->n; i++)
            want += x->chunks[i]->n;
        units *us = &c->per_agent[a];
        if (want > UINT32_MAX ||
            !td_crdt_grow(d, (void **)&us->u, &us->cap, (uint32_t)want, sizeof *us->u)) {
            c->oom = 1;
            return;
        }
        run_walk w = {c, a, 0};
        if (td_crdt_idx_walk(&d->agents[a].idx, 0, walk_entry, &w) || push_dels(&w, UINT64_MAX))
            return;
        /* runs and records interleaved by seq: sorted unless they overlap,
         * which orderable() refuses; the merge below keeps it exact */
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
            const td_mapent *e = td_crdt_map_find(&d->objs[o->parent - 1]->u.map, o->key, o->klen);
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
    uint32_t *next = td_crdt_mem(d, NULL, ((size_t)d->nagents + 1) * sizeof *next);
    uint32_t *done = td_crdt_mem(d, NULL, ((size_t)d->nagents + 1) * sizeof *done);
    size_t total = 1;
    for (uint32_t a = 0; a < d->nagents; a++)
        total += c->per_agent[a].n;
    c->step_agent = td_crdt_mem(d, NULL, total * sizeof *c->step_agent);
    c->step_unit = td_crdt_mem(d, NULL, total * sizeof *c->step_unit);
    int ok = next && done && c->step_agent && c->step_unit;
    if (!ok)
        c->oom = 1; /* not a verdict on the document */
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
                us->u[next[a]].step = c->nsteps;
                c->step_agent[c->nsteps] = a;
                c->step_unit[c->nsteps++] = next[a];
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
    td_crdt_memfree(d, next);
    td_crdt_memfree(d, done);
    return ok;
}

/* Items of sequence h in document order, a run at a time. */
typedef struct walker {
    const td_leaf *l;
    uint32_t ri, off;
} walker;

static int walker_next(walker *w, td_id *id, uint32_t *n)
{
    while (w->l && w->ri >= w->l->n) {
        w->l = w->l->next;
        w->ri = 0;
    }
    if (!w->l)
        return 0;
    const td_run *r = &w->l->r[w->ri];
    *id = r->id;
    id->seq += w->off;
    *n = r->len - w->off;
    return 1;
}

static void walker_skip(walker *w, uint32_t k)
{
    w->off += k;
    if (w->off == w->l->r[w->ri].len) {
        w->ri++;
        w->off = 0;
    }
}

/* 1 if sequences h of a and b hold the same items in the same order. */
static int same_order(const td_crdt_doc *a, const td_crdt_doc *b, uint32_t h)
{
    walker x = {a->objs[h - 1]->u.seq.first, 0, 0}, y = {b->objs[h - 1]->u.seq.first, 0, 0};
    td_id ix, iy;
    uint32_t nx, ny;
    for (;;) {
        int hx = walker_next(&x, &ix, &nx), hy = walker_next(&y, &iy, &ny);
        if (!hx || !hy)
            return hx == hy;
        if (ix.agent != iy.agent || ix.seq != iy.seq)
            return 0;
        uint32_t k = nx < ny ? nx : ny;
        walker_skip(&x, k);
        walker_skip(&y, k);
    }
}

static int id_same(td_id a, td_id b)
{
    return a.agent == b.agent && a.seq == b.seq;
}

#define SHORT_RANGE 16 /* ranges of stored runs this short are scanned */

/* An open-addressing table from the first and the last item id of each run
 * of a sequence to the run's ordinal (+1; 0 is empty). It stores no keys:
 * a probe compares against the run itself. Origins are found in O(1)
 * instead of an index search plus a leaf search each. */
static uint32_t id_hash(td_id id, uint32_t mask)
{
    uint64_t k = ((uint64_t)id.agent << 32 | id.seq) * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(k >> 32) & mask;
}

static void idtab_put(uint32_t *tab, uint32_t mask, td_id id, uint32_t ord)
{
    uint32_t i = id_hash(id, mask);
    while (tab[i])
        i = (i + 1) & mask;
    tab[i] = ord + 1;
}

/* Ordinal of the run whose last (want_last) or first item is id, or
 * UINT32_MAX if none is. */
static uint32_t idtab_get(const uint32_t *tab, uint32_t mask, const td_run *const *runs, td_id id,
                          int want_last)
{
    for (uint32_t i = id_hash(id, mask); tab[i]; i = (i + 1) & mask) {
        const td_run *r = runs[tab[i] - 1];
        td_id x = want_last ? td_crdt_run_last(r) : r->id;
        if (x.agent == id.agent && x.seq == id.seq)
            return tab[i] - 1;
    }
    return UINT32_MAX;
}

typedef struct leafbase {
    const td_leaf *leaf;
    uint32_t first; /* ordinal of the leaf's first run */
} leafbase;

static int leafbase_cmp(const void *x, const void *y)
{
    const td_leaf *a = ((const leafbase *)x)->leaf, *b = ((const leafbase *)y)->leaf;
    return a < b ? -1 : a > b;
}

/* Ordinal of the run holding item id in sequence h, and whether the item is
 * that run's first (*first) or last (*last). */
static int run_ordinal(td_crdt_doc *d, uint32_t h, const leafbase *lb, uint32_t nl, td_id id,
                       uint32_t *ord, int *first, int *last)
{
    td_pos p;
    if (!td_crdt_seq_locate(d, h, id, &p))
        return 0;
    leafbase key = {p.leaf, 0};
    const leafbase *b = bsearch(&key, lb, nl, sizeof *lb, leafbase_cmp);
    if (!b)
        return 0;
    *ord = b->first + p.ri;
    *first = p.off == 0;
    *last = p.off + 1 == p.leaf->r[p.ri].len;
    return 1;
}

/* 5, the common case in O(n log n): integrating the runs in the order
 * `orderable` found, if each run's origins are neighbours among the runs
 * integrated before it (no earlier run stands between them in the stored
 * order), the integration has nothing to decide and puts the run exactly
 * where it is stored. A sparse table answers "earliest step in a range of
 * stored runs". Returns 1 if that holds for every run of sequence h, 0 if
 * some run needs the full replay, -1 on OOM. */
static int neighbours_hold(checker *c, uint32_t h, const unit *const *mine, uint32_t nmine)
{
    td_crdt_doc *d = c->d;
    const td_seq *q = &d->objs[h - 1]->u.seq;
    uint32_t n = 0, nl = 0;
    for (const td_leaf *l = q->first; l; l = l->next) {
        n += l->n;
        nl++;
    }
    if (n == 0)
        return 1;
    /* st: each run's step, then prefix and suffix minima (most ranges
     * start at the first run or end at the last: an origin at the start or
     * the end); short ranges are scanned; the sparse table `tab` for the
     * rest is built only if one is asked for */
    uint32_t levels = 1;
    while ((1u << levels) <= n)
        levels++;
    uint32_t *st = td_crdt_mem(d, NULL, (size_t)3 * n * sizeof *st), *tab = NULL;
    uint32_t *pre = st + n, *suf = st + 2 * (size_t)n;
    leafbase *lb = td_crdt_mem(d, NULL, (size_t)nl * sizeof *lb);
    const td_run **runs = td_crdt_mem(d, NULL, (size_t)n * sizeof *runs);
    uint32_t mask = 15;
    while (mask / 4 < n && mask < UINT32_MAX / 2) /* at most half full: 2 ids per run */
        mask = mask * 2 + 1;
    uint32_t *idtab = td_crdt_mem(d, NULL, ((size_t)mask + 1) * sizeof *idtab);
    if (!st || !lb || !runs || !idtab) {
        td_crdt_memfree(d, st);
        td_crdt_memfree(d, lb);
        td_crdt_memfree(d, runs);
        td_crdt_memfree(d, idtab);
        return -1;
    }
    memset(idtab, 0, ((size_t)mask + 1) * sizeof *idtab);
    uint32_t k = 0, li = 0;
    for (const td_leaf *l = q->first; l; l = l->next) {
        lb[li].leaf = l;
        lb[li++].first = k;
        for (uint32_t i = 0; i < l->n; i++) {
            idtab_put(idtab, mask, l->r[i].id, k);
            if (l->r[i].len > 1)
                idtab_put(idtab, mask, td_crdt_run_last(&l->r[i]), k);
            runs[k++] = &l->r[i];
        }
    }
    qsort(lb, nl, sizeof *lb, leafbase_cmp);
    /* each run's step, from its unit (mine: the units of h's runs): the
     * unit knows its leaf and slot, and the (few, sorted) leaves give the
     * ordinal. Every run has exactly one unit; were one missing, its step 0
     * fails the test below and the full replay decides. */
    memset(st, 0, (size_t)n * sizeof *st);
    for (uint32_t j = 0; j < nmine; j++) {
        const td_leaf *key = mine[j]->leaf;
        uint32_t blo = 0, bhi = nl; /* lb is sorted by leaf address */
        while (blo < bhi) {
            uint32_t mid = blo + (bhi - blo) / 2;
            if (lb[mid].leaf < key)
                blo = mid + 1;
            else
                bhi = mid;
        }
        if (blo < nl && lb[blo].leaf == key && lb[blo].first + mine[j]->ri < n)
            st[lb[blo].first + mine[j]->ri] = mine[j]->step;
    }
    pre[0] = st[0];
    for (uint32_t i = 1; i < n; i++)
        pre[i] = pre[i - 1] < st[i] ? pre[i - 1] : st[i];
    suf[n - 1] = st[n - 1];
    for (uint32_t i = n - 1; i > 0; i--)
        suf[i - 1] = suf[i] < st[i - 1] ? suf[i] : st[i - 1];
    int ok = 1;
    for (uint32_t i = 0; i < n && ok == 1; i++) {
        uint32_t step = st[i], lo = 0, hi = n; /* stored runs (lo, hi) must be later */
        uint32_t ord;
        int first, last;
        const td_run *r = runs[i];
        /* an origin must end (left) or start (right) a run: the table
         * finds that run; ids are unique, so it is the only item with that
         * id. Only an origin in the middle of a run, which fails, takes the
         * lookup by id. */
        if (r->left.agent != TD_NONE) {
            if (i > 0 && id_same(r->left, td_crdt_run_last(runs[i - 1])))
                ord = i - 1;
            else if ((ord = idtab_get(idtab, mask, runs, r->left, 1)) != UINT32_MAX)
                ok = ord < i;
            else
                ok = run_ordinal(d, h, lb, nl, r->left, &ord, &first, &last) && last && ord < i;
            lo = ord + 1;
        }
        if (ok && r->right.agent != TD_NONE) {
            if (i + 1 < n && id_same(r->right, runs[i + 1]->id))
                ord = i + 1;
            else if ((ord = idtab_get(idtab, mask, runs, r->right, 0)) != UINT32_MAX)
                ok = ord > i;
            else
                ok = run_ordinal(d, h, lb, nl, r->right, &ord, &first, &last) && first && ord > i;
            hi = ord;
        }
        /* earliest step among stored runs [lo, i) and (i, hi) */
        for (int side = 0; side < 2 && ok; side++) {
            uint32_t a = side ? i + 1 : lo, b = side ? hi : i, m;
            if (a >= b)
                continue;
            if (a == 0) {
                m = pre[b - 1];
            } else if (b == n) {
                m = suf[a];
            } else if (b - a <= SHORT_RANGE) {
                m = st[a];
                for (uint32_t x = a + 1; x < b; x++)
                    m = m < st[x] ? m : st[x];
            } else {
                if (!tab) {
                    if (!(tab = td_crdt_mem(d, NULL, (size_t)levels * n * sizeof *tab))) {
                        ok = -1;
                        break;
                    }
                    memcpy(tab, st, (size_t)n * sizeof *tab);
                    for (uint32_t j = 1; j < levels; j++)
                        for (uint32_t x = 0; x + (1u << j) <= n; x++) {
                            uint32_t p = tab[(j - 1) * n + x], q2 = tab[(j - 1) * n + x + (1u << (j - 1))];
                            tab[j * n + x] = p < q2 ? p : q2;
                        }
                }
                uint32_t j = 0;
                while ((2u << j) <= b - a)
                    j++;
                uint32_t x = tab[j * n + a], y = tab[j * n + b - (1u << j)];
                m = x < y ? x : y;
            }
            ok = m > step;
        }
    }
    td_crdt_memfree(d, tab);
    td_crdt_memfree(d, idtab);
    td_crdt_memfree(d, st);
    td_crdt_memfree(d, lb);
    td_crdt_memfree(d, runs);
    return ok;
}

/* 5: the stored order is the one the ops produce. Runs are integrated, in
 * the order `orderable` found, into a scratch document with the same agents
 * and objects (same handles), and every sequence must come out the same.
 * This catches what no local check can: concurrent inserts stored in an
 * order their origins and agent ids do not give. */
static const char *replay_matches(checker *c)
{
    td_crdt_doc *d = c->d, *z;
    td_crdt_options o = {.alloc = d->alloc, .alloc_ud = d->alloc_ud,
                         .agent = d->agents[0].id, .max_depth = d->max_depth};
    if (td_crdt_doc_new(&o, &z)) {
        c->oom = 1;
        return "out of memory";
    }
    td_crdt_err e = TD_CRDT_OK;
    uint32_t idx;
    for (uint32_t a = 1; a < d->nagents && !e; a++)
        e = td_crdt_agent_intern(z, d->agents[a].id, &idx);
    for (uint32_t h = 1; h <= d->nobjs && !e; h++) {
        const td_obj *ob = d->objs[h - 1];
        e = ob->is_root ? td_crdt_obj_new_root(z, ob->kind, ob->name, ob->name_len, &idx)
                        : td_crdt_obj_new_nested(z, ob->kind, ob->id, ob->parent, &idx);
    }
    for (uint32_t i = 0; i < c->nsteps && !e; i++) {
        const unit *u = &c->per_agent[c->step_agent[i]].u[c->step_unit[i]];
        if (u->run_obj)
            e = td_crdt_seq_integrate(z, u->run_obj, (td_id){c->step_agent[i], u->seq}, u->len,
                                 u->left, u->right, 1, NULL, NULL);
    }
    const char *why = NULL;
    if (e == TD_CRDT_ERR_NOMEM) {
        c->oom = 1;
        why = "out of memory";
    } else if (e) {
        why = "the ops cannot be integrated";
    }
    for (uint32_t h = 1; h <= d->nobjs && !why; h++)
        if (d->objs[h - 1]->kind != TD_CRDT_MAP && !same_order(d, z, h))
            why = "a sequence is stored in an order its ops do not give";
    td_crdt_doc_free(z);
    return why;
}

/* NULL if the loaded document is consistent; otherwise why not. */
const char *td_crdt_snapshot_check(td_crdt_doc *d, int *oom)
{
    checker c = {.d = d};
    const char *why = NULL;
    *oom = 0;
    for (uint32_t h = 1; h <= d->nobjs && !why; h++)
        if (!object_consistent(d, h))
            why = "a nested object disagrees with the op that made it";
    if (why)
        return why;
    c.per_agent = td_crdt_mem(d, NULL, ((size_t)d->nagents + 1) * sizeof *c.per_agent);
    if (!c.per_agent) {
        *oom = 1;
        return "out of memory";
    }
    memset(c.per_agent, 0, ((size_t)d->nagents + 1) * sizeof *c.per_agent);
    collect(&c);
    if (!c.oom && !orderable(&c) && !c.oom)
        why = "ops overlap, or reference later ops or each other in a cycle";
    int replay = 0;
    /* the units of runs grouped by sequence (counting sort), so that each
     * sequence visits only its own */
    uint32_t *start = NULL;
    const unit **byobj = NULL;
    if (!why && !c.oom) {
        size_t nrun = 0;
        start = td_crdt_mem(d, NULL, ((size_t)d->nobjs + 2) * sizeof *start);
        for (uint32_t a = 0; a < d->nagents; a++)
            for (uint32_t j = 0; j < c.per_agent[a].n; j++)
                nrun += c.per_agent[a].u[j].run_obj != 0;
        byobj = td_crdt_mem(d, NULL, (nrun + 1) * sizeof *byobj);
        if (!start || !byobj) {
            c.oom = 1;
        } else {
            memset(start, 0, ((size_t)d->nobjs + 2) * sizeof *start);
            for (uint32_t a = 0; a < d->nagents; a++)
                for (uint32_t j = 0; j < c.per_agent[a].n; j++)
                    if (c.per_agent[a].u[j].run_obj)
                        start[c.per_agent[a].u[j].run_obj + 1]++;
            for (uint32_t h = 1; h <= d->nobjs; h++)
                start[h + 1] += start[h];
            for (uint32_t a = 0; a < d->nagents; a++)
                for (uint32_t j = 0; j < c.per_agent[a].n; j++)
                    if (c.per_agent[a].u[j].run_obj)
                        byobj[start[c.per_agent[a].u[j].run_obj]++] = &c.per_agent[a].u[j];
            /* start[h] now ends h's group: shift back to starts */
            for (uint32_t h = d->nobjs + 1; h > 1; h--)
                start[h] = start[h - 1];
            start[1] = 0;
        }
    }
    for (uint32_t h = 1; h <= d->nobjs && !why && !c.oom && !replay; h++) {
        if (d->objs[h - 1]->kind == TD_CRDT_MAP)
            continue;
        int r = neighbours_hold(&c, h, byobj + start[h], start[h + 1] - start[h]);
        if (r < 0)
            c.oom = 1;
        replay = r == 0;
    }
    td_crdt_memfree(d, start);
    td_crdt_memfree(d, byobj);
    if (!why && !c.oom && replay)
        why = replay_matches(&c);
    if (c.oom) {
        *oom = 1;
        why = "out of memory";
    }
    for (uint32_t a = 0; a < d->nagents; a++)
        td_crdt_memfree(d, c.per_agent[a].u);
    td_crdt_memfree(d, c.per_agent);
    td_crdt_memfree(d, c.step_agent);
    td_crdt_memfree(d, c.step_unit);
    return why;
}
