/*
 * yjs_integrate.c -- applying an update: Yjs's readUpdate, integrateStructs,
 * Item.integrate (YATA with Yjs's exact conflict rules), Item.delete,
 * readAndApplyDeleteSet, and the cleanup of a transaction (garbage
 * collection and merging of neighbours).
 *
 * Pending structs. Yjs keeps what it cannot integrate yet as an encoded
 * update and retries it whenever a missing client advances. Here each
 * client has a queue of decoded refs sorted by clock; after every update
 * the queues are drained as far as dependencies allow, following missing
 * dependencies from client to client (Yjs's stack), until a pass makes no
 * progress. The outcome is the same: everything whose dependencies are
 * present is integrated, the rest waits, and the state vector counts only
 * what is integrated.
 */
#include "yjs_internal.h"

#include <stdlib.h>

#define NO_CLIENT UINT64_MAX

/* ---- the conflict loop's two sets ------------------------------------------
 * Yjs keeps itemsBeforeOrigin and conflictingItems as two Sets. Every item
 * enters both at once and conflictingItems is only ever cleared, so it is
 * the suffix of itemsBeforeOrigin added since the last clear: one map from
 * item to the order it was seen answers both. */

static uint32_t hash_ptr(const void *p)
{
    uint64_t v = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ULL;
    return (uint32_t)(v >> 32);
}

static int seen_add(yj_doc *d, yj_item *it, uint32_t order)
{
    if ((d->seen_n + 1) * 2 > d->seen_cap) {
        uint32_t nc = d->seen_cap ? d->seen_cap * 2 : 64;
        yj_item **nk = yj_alloc(d, nc * sizeof *nk);
        uint32_t *nv = yj_alloc(d, nc * sizeof *nv);
        if (!nk || !nv) {
            yj_free(d, nk);
            yj_free(d, nv);
            return 0;
        }
        memset(nk, 0, nc * sizeof *nk);
        for (uint32_t i = 0; i < d->seen_cap; i++)
            if (d->seen_k[i]) {
                uint32_t j = hash_ptr(d->seen_k[i]) & (nc - 1);
                while (nk[j])
                    j = (j + 1) & (nc - 1);
                nk[j] = d->seen_k[i];
                nv[j] = d->seen_v[i];
            }
        yj_free(d, d->seen_k);
        yj_free(d, d->seen_v);
        d->seen_k = nk;
        d->seen_v = nv;
        d->seen_cap = nc;
    }
    if (!yj_grow(d, &d->seen_list, &d->seen_lcap, d->seen_n + 1, sizeof *d->seen_list))
        return 0;
    uint32_t mask = d->seen_cap - 1, j = hash_ptr(it) & mask;
    while (d->seen_k[j] && d->seen_k[j] != it)
        j = (j + 1) & mask;
    if (!d->seen_k[j])
        d->seen_list[d->seen_n++] = it;
    d->seen_k[j] = it;
    d->seen_v[j] = order;
    return 1;
}

/* Order the item was seen in, or -1. */
static int64_t seen_get(const yj_doc *d, const yj_item *it)
{
    if (!d->seen_cap || !it)
        return -1;
    uint32_t mask = d->seen_cap - 1;
    for (uint32_t j = hash_ptr(it) & mask; d->seen_k[j]; j = (j + 1) & mask)
        if (d->seen_k[j] == it)
            return d->seen_v[j];
    return -1;
}

static void seen_clear(yj_doc *d)
{
    /* Every entry goes, so holes left in a probe run never hide a key that
     * stays; the search below steps over them. The cost is the loop's
     * length, not the table's. */
    uint32_t mask = d->seen_cap - 1;
    for (uint32_t i = 0; i < d->seen_n; i++) {
        uint32_t j = hash_ptr(d->seen_list[i]) & mask;
        while (d->seen_k[j] != d->seen_list[i])
            j = (j + 1) & mask;
        d->seen_k[j] = NULL;
    }
    d->seen_n = 0;
}

/* ---- deletion and garbage collection ------------------------------------- */

/* Item.delete (and ContentType.delete: a deleted type deletes its content). */
void yj_delete(yj_doc *d, yj_item *it)
{
    if (it->flags & YJ_F_DELETED)
        return;
    if (yj_countable(it) && !it->sub && it->parent)
        it->parent->length -= it->len;
    it->flags |= YJ_F_DELETED;
    yj_txn_deleted(d, it->id.client, it->id.clock, it->len);
    if (it->kind == YJ_TYPE) {
        yj_type *t = it->c.u.type;
        for (yj_item *x = t->start; x; x = x->right)
            yj_delete(d, x);
        for (uint32_t i = 0; i < t->map.cap; i++)
            if (t->map.slots[i].val)
                yj_delete(d, t->map.slots[i].val);
    }
}

/* Item.gc: the content goes; the item stays as ContentDeleted, or becomes a
 * GC struct when its parent went too (parent_gcd). */
static void gc_item(yj_doc *d, yj_item *it, int parent_gcd)
{
    if (it->kind == YJ_TYPE) {
        yj_type *t = it->c.u.type;
        for (yj_item *x = t->start, *next; x; x = next) {
            next = x->right;
            gc_item(d, x, 1);
        }
        t->start = NULL;
        for (uint32_t i = 0; i < t->map.cap; i++)
            for (yj_item *x = t->map.slots[i].val, *prev; x; x = prev) {
                prev = x->left;
                gc_item(d, x, 1);
            }
    }
    yj_content_free(d, it);
    if (parent_gcd) {
        it->kind = YJ_GC;
        it->flags = YJ_F_DELETED;
        yj_free(d, it->sub);
        it->sub = NULL;
        it->sub_len = 0;
        it->parent = NULL;
        it->left = it->right = NULL;
    } else {
        it->kind = YJ_DELETED;
    }
}

/* ---- integration ----------------------------------------------------------- */

static int same_id(int fa, yj_id a, int fb, yj_id b)
{
    if (!fa || !fb)
        return !fa && !fb;
    return a.client == b.client && a.clock == b.clock;
}

/* The first client whose state lacks a dependency of ref (getMissing).
 * state() is the store's, or the simulation's of would_fit(). */
typedef uint64_t (*state_fn)(void *ctx, uint64_t client);

static uint64_t missing_in(const yj_item *r, state_fn state, void *ctx)
{
    if (r->kind == YJ_GC)
        return NO_CLIENT;
    if ((r->flags & YJ_F_ORIGIN) && r->origin.client != r->id.client &&
        r->origin.clock >= state(ctx, r->origin.client))
        return r->origin.client;
    if ((r->flags & YJ_F_RORIGIN) && r->rorigin.client != r->id.client &&
        r->rorigin.clock >= state(ctx, r->rorigin.client))
        return r->rorigin.client;
    if (r->pkind == YJ_P_ID && r->p.id.client != r->id.client &&
        r->p.id.clock >= state(ctx, r->p.id.client))
        return r->p.id.client;
    return NO_CLIENT;
}

static uint64_t store_state(void *ctx, uint64_t client)
{
    return yj_state(ctx, client);
}

static uint64_t missing(yj_doc *d, const yj_item *r)
{
    return missing_in(r, store_state, d);
}

static int same_sub(const yj_item *a, const yj_item *b)
{
    if (!a->sub || !b->sub)
        return !a->sub && !b->sub;
    return a->sub_len == b->sub_len && memcmp(a->sub, b->sub, a->sub_len) == 0;
}

static char *dup_sub(yj_doc *d, const yj_item *from, uint32_t *len)
{
    *len = 0;
    if (!from->sub)
        return NULL;
    char *s = yj_alloc(d, from->sub_len + 1);
    if (s) {
        memcpy(s, from->sub, from->sub_len + 1);
        *len = from->sub_len;
    }
    return s;
}

/* The rest of getMissing: with every dependency present, find left, right
 * and parent. Returns 0 if memory ran out. */
static int resolve(yj_doc *d, yj_item *r)
{
    if (r->kind == YJ_GC)
        return 1;
    r->left = r->right = NULL;
    if (r->flags & YJ_F_ORIGIN) {
        r->left = yj_clean_end(d, r->origin);
        if (!r->left)
            return 0;
        r->origin = (yj_id){r->left->id.client, r->left->id.clock + r->left->len - 1};
    }
    if (r->flags & YJ_F_RORIGIN) {
        r->right = yj_clean_start(d, r->rorigin);
        if (!r->right)
            return 0;
        r->rorigin = r->right->id;
    }
    yj_type *parent = NULL;
    if ((r->left && r->left->kind == YJ_GC) || (r->right && r->right->kind == YJ_GC)) {
        parent = NULL;
    } else if (r->pkind == YJ_P_COPY) {
        yj_item *from = r->left ? r->left : r->right;
        if (from) {
            parent = from->parent;
            yj_free(d, r->sub);
            r->sub = dup_sub(d, from, &r->sub_len);
            if (from->sub && !r->sub)
                return 0;
        }
    } else if (r->pkind == YJ_P_ID) {
        yj_item *p = yj_get_item(d, r->p.id);
        parent = p && p->kind == YJ_TYPE ? p->c.u.type : NULL;
    } else {
        parent = yj_root(d, r->p.name.s, r->p.name.len, 1);
        if (!parent)
            return 0;
        yj_free(d, r->p.name.s);
        r->p.name.s = NULL;
        r->pkind = YJ_P_COPY;
    }
    r->parent = parent;
    return 1;
}

static int add_struct(yj_doc *d, yj_client *c, yj_item *it)
{
    if (c->txn_seen != d->txn_no) {
        c->txn_seen = d->txn_no;
        yj_txn_changed(d, c->client, it->id.clock);
    }
    c->s[c->n++] = it;
    d->structs++;
    return 1;
}

static void make_gc(yj_doc *d, yj_item *r)
{
    yj_content_free(d, r);
    yj_free(d, r->sub);
    r->sub = NULL;
    r->sub_len = 0;
    r->kind = YJ_GC;
    r->flags = YJ_F_DELETED;
    r->parent = NULL;
    r->left = r->right = NULL;
}

/* Item.integrate(transaction, offset) for a resolved ref whose clock is at
 * most the client's state. Takes ownership of r. */
static int integrate(yj_doc *d, yj_client *c, yj_item *r, uint64_t offset)
{
    if (!yj_grow(d, &c->s, &c->cap, c->n + 1, sizeof *c->s))
        return 0;
    if (offset > 0) {
        yj_id prev = {r->id.client, r->id.clock + offset - 1};
        if (r->kind != YJ_GC) {
            yj_content rc;
            yj_item *left = yj_clean_end(d, prev);
            if (!left || !yj_grow(d, &c->s, &c->cap, c->n + 1, sizeof *c->s) ||
                !yj_content_splice(d, r, offset, &rc))
                return 0;
            yj_content_free(d, r);
            r->c = rc;
            r->left = left;
            r->origin = (yj_id){left->id.client, left->id.clock + left->len - 1};
            r->flags |= YJ_F_ORIGIN;
            /* Its own earlier clocks are its left now. In a valid update they
             * have the parent and key the rest was resolved to; a malformed
             * one can disagree, and an item linked into a chain of another
             * parent or key would leave that chain's owner pointing at it
             * after it is merged or collected. The item follows its left. */
            if (left->kind == YJ_GC) {
                r->parent = NULL;
            } else if (left->parent != r->parent || !same_sub(left, r)) {
                r->parent = left->parent;
                yj_free(d, r->sub);
                r->sub = dup_sub(d, left, &r->sub_len);
                if (left->sub && !r->sub)
                    return 0;
            }
        }
        r->id.clock += offset;
        r->len -= offset;
    }
    yj_type *parent = r->parent;
    if (r->kind != YJ_GC && parent && r->kind == YJ_TYPE && parent->depth >= d->max_depth) {
        d->dropped_deep++;
        parent = NULL;
    }
    if (r->kind == YJ_GC || !parent) {
        make_gc(d, r);
        return add_struct(d, c, r);
    }
    if (r->sub && !yj_map_get(&parent->map, r->sub, r->sub_len) && !yj_map_reserve(d, &parent->map))
        return 0;
    if ((!r->left && (!r->right || r->right->left)) || (r->left && r->left->right != r->right)) {
        yj_item *left = r->left, *o;
        if (left) {
            o = left->right;
        } else if (r->sub) {
            o = yj_map_get(&parent->map, r->sub, r->sub_len);
            while (o && o->left)
                o = o->left;
        } else {
            o = parent->start;
        }
        uint32_t order = 0, conflict_from = 0;
        while (o && o != r->right) {
            if (!seen_add(d, o, order)) {
                seen_clear(d);
                return 0;
            }
            if (same_id(r->flags & YJ_F_ORIGIN, r->origin, o->flags & YJ_F_ORIGIN, o->origin)) {
                /* case 1: same origin; the lower client goes first */
                if (o->id.client < r->id.client) {
                    left = o;
                    conflict_from = order + 1;
                } else if (same_id(r->flags & YJ_F_RORIGIN, r->rorigin, o->flags & YJ_F_RORIGIN, o->rorigin)) {
                    break;
                }
            } else {
                /* case 2: o's origin lies among the items passed */
                int64_t at = (o->flags & YJ_F_ORIGIN) ? seen_get(d, yj_get_item(d, o->origin)) : -1;
                if (at < 0)
                    break;
                if (at < (int64_t)conflict_from) {
                    left = o;
                    conflict_from = order + 1;
                }
            }
            order++;
            o = o->right;
        }
        seen_clear(d);
        r->left = left;
    }
    /* reconnect left/right and the parent's start or map */
    if (r->left) {
        r->right = r->left->right;
        r->left->right = r;
    } else {
        yj_item *x;
        if (r->sub) {
            x = yj_map_get(&parent->map, r->sub, r->sub_len);
            while (x && x->left)
                x = x->left;
        } else {
            x = parent->start;
            parent->start = r;
        }
        r->right = x;
    }
    if (r->right) {
        r->right->left = r;
    } else if (r->sub) {
        yj_map_set(d, &parent->map, r->sub, r->sub_len, r); /* reserved above */
        if (r->left)
            yj_delete(d, r->left); /* the value this write replaces */
    }
    if (!r->sub && yj_countable(r) && !(r->flags & YJ_F_DELETED))
        parent->length += r->len;
    add_struct(d, c, r);
    if (r->kind == YJ_TYPE) {
        r->c.u.type->item = r;
        r->c.u.type->depth = (uint16_t)(parent->depth + 1);
    }
    if ((parent->item && (parent->item->flags & YJ_F_DELETED)) || (r->sub && r->right))
        yj_delete(d, r);
    return 1;
}

/* ---- the pending queues ---------------------------------------------------- */

static void drop_ref(yj_doc *d, yj_item *r)
{
    d->pending_structs--;
    d->pending_bytes -= yj_item_bytes(r);
    yj_item_free(d, r);
}

/* Drains the queues from client index `start`, following missing
 * dependencies to other clients. *progress set if anything integrated. */
static int run(yj_doc *d, size_t start, size_t *stack, int *progress)
{
    size_t sp = 0;
    stack[sp++] = start;
    d->clients[start].on_stack = 1;
    while (sp) {
        yj_client *c = &d->clients[stack[sp - 1]];
        if (c->qhead == c->qn) {
            c->on_stack = 0;
            sp--;
            continue;
        }
        yj_item *r = c->q[c->qhead];
        uint64_t state = yj_client_state(c);
        if (r->id.clock > state) {
            c->blocked_pass = d->pass;
            c->on_stack = 0;
            sp--;
            continue;
        }
        if (r->id.clock + r->len <= state) {
            c->qhead++;
            drop_ref(d, r);
            continue;
        }
        uint64_t m = missing(d, r);
        if (m != NO_CLIENT) {
            yj_client *mc = yj_client_get(d, m);
            if (mc && mc->qhead < mc->qn && !mc->on_stack && mc->blocked_pass != d->pass) {
                mc->on_stack = 1;
                stack[sp++] = (size_t)(mc - d->clients);
                continue;
            }
            c->blocked_pass = d->pass;
            c->on_stack = 0;
            sp--;
            continue;
        }
        size_t bytes = yj_item_bytes(r);
        if (!resolve(d, r) || !integrate(d, c, r, state - r->id.clock)) {
            for (size_t i = 0; i < sp; i++)
                d->clients[stack[i]].on_stack = 0;
            return 0;
        }
        c->qhead++;
        d->pending_structs--;
        d->pending_bytes -= bytes;
        *progress = 1;
    }
    return 1;
}

static int drain(yj_doc *d)
{
    if (!d->pending_structs)
        return 1;
    if (!yj_grow(d, &d->stack, &d->cstack, d->nclients, sizeof *d->stack))
        return 0;
    size_t *stack = d->stack;
    int progress;
    do {
        progress = 0;
        d->pass++;
        for (size_t i = 0; i < d->nclients; i++) {
            yj_client *c = &d->clients[i];
            if (c->qhead < c->qn && c->blocked_pass != d->pass && !run(d, i, stack, &progress))
                return 0;
        }
    } while (progress);
    /* Empty queues are kept for the next update unless they grew large. */
    for (size_t i = 0; i < d->nclients; i++) {
        yj_client *c = &d->clients[i];
        if (c->qhead == c->qn && c->q) {
            c->qn = c->qhead = 0;
            if (c->qcap > 64) {
                yj_free(d, c->q);
                c->q = NULL;
                c->qcap = 0;
            }
        }
    }
    return 1;
}

/* Moves the update's refs into the queues: room first, so that this either
 * happens whole or not at all. */
static int enqueue(yj_doc *d, yj_update *u)
{
    for (size_t i = 0; i < u->nrefs;) {
        size_t j = i;
        while (j < u->nrefs && u->refs[j]->id.client == u->refs[i]->id.client)
            j++;
        yj_client *c = yj_client_add(d, u->refs[i]->id.client);
        if (!c)
            return 0;
        if (c->qhead) {
            memmove(c->q, c->q + c->qhead, (c->qn - c->qhead) * sizeof *c->q);
            c->qn -= c->qhead;
            c->qhead = 0;
        }
        if (!yj_grow(d, &c->q, &c->qcap, c->qn + (j - i), sizeof *c->q))
            return 0;
        i = j;
    }
    for (size_t i = 0; i < u->nrefs;) {
        size_t j = i;
        while (j < u->nrefs && u->refs[j]->id.client == u->refs[i]->id.client)
            j++;
        yj_client *c = yj_client_get(d, u->refs[i]->id.client);
        /* Insertion sort by clock: the queue is sorted and the block too,
         * and they rarely interleave. */
        for (size_t k = i; k < j; k++) {
            yj_item *r = u->refs[k];
            size_t at = c->qn;
            while (at > 0 && c->q[at - 1]->id.clock > r->id.clock)
                at--;
            memmove(&c->q[at + 1], &c->q[at], (c->qn - at) * sizeof *c->q);
            c->q[at] = r;
            c->qn++;
            d->pending_structs++;
            d->pending_bytes += yj_item_bytes(r);
        }
        i = j;
    }
    u->nrefs = 0;
    return 1;
}

/* ---- the delete set ------------------------------------------------------ */

/* Applies one range; what lies past the client's state is parked. */
static int apply_range(yj_doc *d, yj_range g)
{
    yj_client *c = yj_client_get(d, g.client);
    uint64_t state = yj_client_state(c), end = g.clock + g.len;
    if (g.clock >= state) {
        d->pds[d->npds++] = g;
        return 1;
    }
    if (state < end)
        d->pds[d->npds++] = (yj_range){g.client, state, end - state};
    size_t i = yj_find_index(c, g.clock);
    yj_item *it = c->s[i];
    if (!(it->flags & YJ_F_DELETED) && it->id.clock < g.clock) {
        if (!yj_split(d, c, i, g.clock - it->id.clock))
            return 0;
        i++;
    }
    while (i < c->n) {
        it = c->s[i++];
        if (it->id.clock >= end)
            break;
        if (!(it->flags & YJ_F_DELETED)) {
            if (end < it->id.clock + it->len && !yj_split(d, c, i - 1, end - it->id.clock))
                return 0;
            yj_delete(d, it);
        }
    }
    return 1;
}

static int apply_deletes(yj_doc *d, const yj_update *u)
{
    yj_range *old = d->pds;
    size_t nold = d->npds;
    size_t need = nold + u->nds;
    d->pds = NULL;
    d->npds = d->cpds = 0;
    if (need && !yj_grow(d, &d->pds, &d->cpds, need, sizeof *d->pds)) {
        d->pds = old;
        d->npds = d->cpds = nold;
        return 0;
    }
    int ok = 1;
    for (size_t i = 0; ok && i < u->nds; i++)
        ok = apply_range(d, u->ds[i]);
    for (size_t i = 0; ok && i < nold; i++)
        ok = apply_range(d, old[i]);
    yj_free(d, old);
    return ok;
}

/* ---- cleanup (cleanupTransactions) ----------------------------------------- */

static int cmp_range(const void *a, const void *b)
{
    const yj_range *x = a, *y = b;
    if (x->client != y->client)
        return x->client < y->client ? -1 : 1;
    return x->clock < y->clock ? -1 : x->clock > y->clock;
}

static void merge_client_tail(yj_doc *d, yj_client *c, size_t first)
{
    if (first < 1)
        first = 1;
    for (size_t i = c->n; i-- > first;) {
        size_t m = yj_merge_lefts(d, c, i);
        i -= m < i ? m : i;
        if (!i)
            break;
    }
}

static void cleanup(yj_doc *d, yj_txn *t)
{
    /* sortAndMergeDeleteSet */
    if (t->nds) {
        qsort(t->ds, t->nds, sizeof *t->ds, cmp_range);
        size_t w = 0;
        for (size_t i = 1; i < t->nds; i++) {
            yj_range *a = &t->ds[w], *b = &t->ds[i];
            if (a->client == b->client && b->clock <= a->clock + a->len) {
                if (b->clock + b->len > a->clock + a->len)
                    a->len = b->clock + b->len - a->clock;
            } else {
                t->ds[++w] = *b;
            }
        }
        t->nds = w + 1;
    }
    /* tryGcDeleteSet */
    if (d->gc)
        for (size_t k = t->nds; k-- > 0;) {
            yj_range g = t->ds[k];
            yj_client *c = yj_client_get(d, g.client);
            for (size_t i = yj_find_index(c, g.clock); i < c->n && c->s[i]->id.clock < g.clock + g.len; i++) {
                yj_item *it = c->s[i];
                if (it->kind != YJ_GC && (it->flags & YJ_F_DELETED) && !(it->flags & YJ_F_KEEP))
                    gc_item(d, it, 0);
            }
        }
    /* tryMergeDeleteSet */
    for (size_t k = t->nds; k-- > 0;) {
        yj_range g = t->ds[k];
        yj_client *c = yj_client_get(d, g.client);
        size_t si = yj_find_index(c, g.clock + g.len - 1) + 1;
        if (si > c->n - 1)
            si = c->n - 1;
        while (si > 0 && c->s[si]->id.clock >= g.clock) {
            size_t m = yj_merge_lefts(d, c, si);
            if (1 + m > si)
                break;
            si -= 1 + m;
        }
    }
    /* the structs this update added */
    for (size_t k = 0; k < t->nchg; k++) {
        yj_client *c = yj_client_get(d, t->chg[k].client);
        merge_client_tail(d, c, yj_find_index(c, t->chg[k].before));
    }
    /* the right halves of splits */
    for (size_t k = t->nmerge; k-- > 0;) {
        yj_client *c = yj_client_get(d, t->merge[k].client);
        size_t pos = yj_find_index(c, t->merge[k].clock);
        if (pos + 1 < c->n && yj_merge_lefts(d, c, pos + 1) > 1)
            continue;
        if (pos > 0)
            yj_merge_lefts(d, c, pos);
    }
}

/* ---- the bound of the pending set --------------------------------------------
 * An update is refused whole when applying it would leave the pending set
 * past its bounds. Whether a ref integrates depends only on clocks (its own
 * client's state and its dependencies'), so integration can be simulated on
 * states alone, without touching the store: the same queues, the same
 * following of missing clients, only numbers change. It runs only when the
 * cheap bound (all of the update parked) does not hold. */

typedef struct sim_client {
    uint64_t client, state;
    yj_item **q;           /* its queue and the update's refs, by clock */
    size_t n, head;
    uint32_t blocked_pass;
    uint8_t on_stack;
} sim_client;

typedef struct sim {
    sim_client *c;
    size_t n;
    yj_doc *d;
} sim;

static int cmp_sim(const void *a, const void *b)
{
    const sim_client *x = a, *y = b;
    return x->client < y->client ? -1 : x->client > y->client;
}

static sim_client *sim_get(sim *s, uint64_t client)
{
    sim_client key = {.client = client};
    return s->n ? bsearch(&key, s->c, s->n, sizeof *s->c, cmp_sim) : NULL;
}

static uint64_t sim_state(void *ctx, uint64_t client)
{
    sim *s = ctx;
    sim_client *c = sim_get(s, client);
    return c ? c->state : yj_state(s->d, client);
}

static void sim_run(sim *s, size_t start, size_t *stack, uint32_t pass, int *progress)
{
    size_t sp = 0;
    stack[sp++] = start;
    s->c[start].on_stack = 1;
    while (sp) {
        sim_client *c = &s->c[stack[sp - 1]];
        yj_item *r = c->head < c->n ? c->q[c->head] : NULL;
        if (!r || r->id.clock > c->state) {
            if (r)
                c->blocked_pass = pass;
            c->on_stack = 0;
            sp--;
            continue;
        }
        if (r->id.clock + r->len > c->state) {
            uint64_t m = missing_in(r, sim_state, s);
            if (m != NO_CLIENT) {
                sim_client *mc = sim_get(s, m);
                if (mc && mc->head < mc->n && !mc->on_stack && mc->blocked_pass != pass) {
                    mc->on_stack = 1;
                    stack[sp++] = (size_t)(mc - s->c);
                    continue;
                }
                c->blocked_pass = pass;
                c->on_stack = 0;
                sp--;
                continue;
            }
            c->state = r->id.clock + r->len;
            *progress = 1;
        }
        c->head++;
    }
}

/* 1: the update fits, 0: it does not, -1: out of memory. */
static int would_fit(yj_doc *d, const yj_update *u)
{
    size_t nrefs = u->nrefs, n = 0, cap = 0;
    sim s = {NULL, 0, d};
    size_t *stack = NULL;
    int fit = -1;
    /* the clients with refs: the doc's queues, then the update's blocks */
    for (size_t i = 0; i < d->nclients; i++)
        if (d->clients[i].qhead < d->clients[i].qn) {
            if (!yj_grow(d, &s.c, &cap, n + 1, sizeof *s.c))
                goto out;
            s.c[n++] = (sim_client){.client = d->clients[i].client};
        }
    for (size_t i = 0; i < nrefs;) {
        size_t j = i;
        while (j < nrefs && u->refs[j]->id.client == u->refs[i]->id.client)
            j++;
        if (!yj_grow(d, &s.c, &cap, n + 1, sizeof *s.c))
            goto out;
        s.c[n++] = (sim_client){.client = u->refs[i]->id.client};
        i = j;
    }
    if (n)
        qsort(s.c, n, sizeof *s.c, cmp_sim);
    s.n = 0;
    for (size_t i = 0; i < n; i++) /* a client in both lists once */
        if (!s.n || s.c[s.n - 1].client != s.c[i].client)
            s.c[s.n++] = s.c[i];
    /* each queue: the doc's, then the update's blocks merged in by clock */
    for (size_t i = 0; i < s.n; i++) {
        yj_client *dc = yj_client_get(d, s.c[i].client);
        s.c[i].state = yj_client_state(dc);
        s.c[i].n = dc ? dc->qn - dc->qhead : 0;
    }
    for (size_t i = 0, j; i < nrefs; i = j) {
        for (j = i; j < nrefs && u->refs[j]->id.client == u->refs[i]->id.client; j++)
            ;
        sim_get(&s, u->refs[i]->id.client)->n += j - i;
    }
    for (size_t i = 0; i < s.n; i++) {
        sim_client *c = &s.c[i];
        yj_client *dc = yj_client_get(d, c->client);
        c->q = yj_alloc(d, (c->n ? c->n : 1) * sizeof *c->q);
        if (!c->q)
            goto out;
        c->n = 0;
        if (dc)
            for (size_t r = dc->qhead; r < dc->qn; r++)
                c->q[c->n++] = dc->q[r];
    }
    for (size_t r = 0; r < nrefs; r++) {
        sim_client *c = sim_get(&s, u->refs[r]->id.client);
        size_t at = c->n;
        while (at > 0 && c->q[at - 1]->id.clock > u->refs[r]->id.clock)
            at--;
        memmove(&c->q[at + 1], &c->q[at], (c->n - at) * sizeof *c->q);
        c->q[at] = u->refs[r];
        c->n++;
    }
    stack = yj_alloc(d, (s.n ? s.n : 1) * sizeof *stack);
    if (!stack)
        goto out;
    uint32_t pass = 0;
    int progress;
    do {
        progress = 0;
        pass++;
        for (size_t i = 0; i < s.n; i++)
            if (s.c[i].head < s.c[i].n && s.c[i].blocked_pass != pass)
                sim_run(&s, i, stack, pass, &progress);
    } while (progress);
    size_t structs = 0, bytes = 0, ranges = 0;
    for (size_t i = 0; i < s.n; i++)
        for (size_t k = s.c[i].head; k < s.c[i].n; k++) {
            structs++;
            bytes += yj_item_bytes(s.c[i].q[k]);
        }
    for (size_t i = 0; i < d->npds + u->nds; i++) {
        const yj_range *g = i < d->npds ? &d->pds[i] : &u->ds[i - d->npds];
        ranges += g->clock + g->len > sim_state(&s, g->client);
    }
    fit = structs + ranges <= d->max_pending_structs &&
          bytes + ranges * sizeof(yj_range) <= d->max_pending_bytes;
out:
    for (size_t i = 0; i < s.n; i++)
        yj_free(d, s.c[i].q);
    yj_free(d, s.c);
    yj_free(d, stack);
    return fit;
}

/* Scratch that one big update grew is not kept for the small ones after. */
void yj_scratch_trim(yj_doc *d, size_t keep)
{
    yj_txn *t = &d->txn_buf;
    if (t->cds * sizeof *t->ds > keep) {
        yj_free(d, t->ds);
        t->ds = NULL;
        t->cds = 0;
    }
    if (t->cmerge * sizeof *t->merge > keep) {
        yj_free(d, t->merge);
        t->merge = NULL;
        t->cmerge = 0;
    }
    if (t->cchg * sizeof *t->chg > keep) {
        yj_free(d, t->chg);
        t->chg = NULL;
        t->cchg = 0;
    }
    if (d->cstack * sizeof *d->stack > keep) {
        yj_free(d, d->stack);
        d->stack = NULL;
        d->cstack = 0;
    }
    yj_update_scratch_trim(d, keep);
}

td_yjs_err td_yjs_apply_update(td_yjs_doc *d, const uint8_t *p, size_t n)
{
    if (!d || (!p && n))
        return TD_YJS_ERR_ARG;
    d->err[0] = 0;
    yj_update u;
    const char *why = NULL;
    td_yjs_err e = yj_update_decode(d, p, n, &u, &why);
    if (e != TD_YJS_OK)
        return yj_fail(d, e, "%s", why ? why : td_yjs_strerror(e));
    /* The bound is checked before anything changes, so LIMIT is
     * all-or-nothing like every other error but NOMEM. */
    if (d->pending_structs + d->npds + u.nrefs + u.nds > d->max_pending_structs ||
        d->pending_bytes + u.bytes + (d->npds + u.nds) * sizeof(yj_range) > d->max_pending_bytes) {
        int fit = would_fit(d, &u);
        if (fit <= 0) {
            yj_update_release(d, &u);
            if (fit < 0)
                return yj_fail(d, TD_YJS_ERR_NOMEM, "out of memory");
            return yj_fail(d, TD_YJS_ERR_LIMIT, "the pending set would pass its bound: "
                                                "apply the missing updates first");
        }
    }
    yj_txn *t = &d->txn_buf;
    t->nds = t->nmerge = t->nchg = 0;
    d->txn = t;
    d->txn_no++;
    int ok = enqueue(d, &u) && drain(d) && apply_deletes(d, &u);
    if (ok)
        cleanup(d, t);
    d->txn = NULL;
    yj_update_release(d, &u);
    yj_scratch_trim(d, 64 << 10);
    if (!ok)
        return yj_fail(d, TD_YJS_ERR_NOMEM, "out of memory (discard this document)");
    return TD_YJS_OK;
}
