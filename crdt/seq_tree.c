/*
 * seq_tree.c -- the counted B+tree that holds a sequence's runs in document
 * order.
 *
 * Leaves hold up to TD_LEAF_MAX runs and are linked in order; inner nodes
 * hold up to TD_INNER_MAX children with, per child, the number of items
 * (tot) and of visible items (vis) below it. The sequence itself keeps the
 * totals for the root.
 *
 * Runs are never removed except by merging two neighbours of one leaf, so
 * nodes only split and never underflow. A split that happens at the very end
 * of the sequence keeps the old node full and starts a new one, so a
 * document typed front to back (or loaded from a snapshot) fills its leaves.
 *
 * Every insertion first reserves the nodes a cascade of splits could need
 * (td_reserve) and the id-index entry of the new run, so once the tree
 * starts changing nothing can fail: an error leaves the tree as it was.
 * An edit that makes two insertions (split a run, then insert next to it)
 * reserves for both first (td_crdt_seq_reserve): the first must not stay
 * when the second fails.
 */
#include "crdt_internal.h"

void td_crdt_seq_init(td_seq *s, uint32_t obj)
{
    memset(s, 0, sizeof *s);
    s->obj = obj;
    s->root_is_leaf = 1;
}

static void free_node(td_crdt_doc *d, void *n, int is_leaf)
{
    if (!n)
        return;
    if (!is_leaf) {
        td_inner *in = n;
        for (uint32_t i = 0; i < in->n; i++)
            free_node(d, in->c[i], in->leaf_children);
    }
    td_crdt_memfree(d, n);
}

void td_crdt_seq_free(td_crdt_doc *d, td_seq *s)
{
    free_node(d, s->root, s->root_is_leaf);
    if (s->vals)
        for (uint32_t i = 0; i < s->clen; i++)
            td_crdt_val_free(d, &s->vals[i]);
    td_crdt_memfree(d, s->vals);
    td_crdt_memfree(d, s->text);
    memset(s, 0, sizeof *s);
}

void td_crdt_spares_free(td_crdt_doc *d)
{
    while (d->nspare_inner)
        td_crdt_memfree(d, d->spare_inner[--d->nspare_inner]);
    while (d->nspare_leaf)
        td_crdt_memfree(d, d->spare_leaf[--d->nspare_leaf]);
    while (d->nspare_chunk)
        td_crdt_memfree(d, d->spare_chunk[--d->nspare_chunk]);
}

static uint32_t tree_height(const td_seq *s)
{
    uint32_t h = 0;
    const void *n = s->root;
    int leaf = s->root_is_leaf;
    while (n && !leaf) {
        const td_inner *in = n;
        leaf = in->leaf_children;
        n = in->c[0];
        h++;
    }
    return h;
}

/* Sets aside, for k cascades of splits, one leaf and one inner node per
 * level plus a new root each (the tree may grow a level in each). */
static td_crdt_err td_reserve(td_crdt_doc *d, const td_seq *s, uint32_t k)
{
    uint32_t h = tree_height(s);
    if (h > TD_TREE_MAX_HEIGHT)
        return td_crdt_fail(d, TD_CRDT_ERR_LIMIT, "sequence tree too deep");
    uint32_t need = k * (h + 1) + k * (k - 1) / 2;
    while (d->nspare_inner < need) {
        td_inner *in = td_crdt_mem(d, NULL, sizeof *in);
        if (!in)
            return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
        d->spare_inner[d->nspare_inner++] = in;
    }
    while (d->nspare_leaf < k) {
        td_leaf *l = td_crdt_mem(d, NULL, sizeof *l);
        if (!l)
            return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
        d->spare_leaf[d->nspare_leaf++] = l;
    }
    return TD_CRDT_OK;
}

td_crdt_err td_crdt_seq_reserve(td_crdt_doc *d, const td_seq *s,
                                const td_leaf *const *leaves, const td_id *keys, uint32_t k)
{
    int full = 0;
    for (uint32_t i = 0; i < k; i++)
        full |= leaves[i]->n + k > TD_LEAF_MAX;
    /* leaves with room for all k take them without a node */
    td_crdt_err e = full ? td_reserve(d, s, k) : TD_CRDT_OK;
    for (uint32_t i = 0; i < k && !e; i++)
        if (td_crdt_idx_reserve(d, &d->agents[keys[i].agent].idx, keys[i].seq, k))
            e = td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    return e;
}

static td_inner *take_inner(td_crdt_doc *d)
{
    td_inner *in = d->spare_inner[--d->nspare_inner];
    memset(in, 0, sizeof *in);
    return in;
}

static td_leaf *take_leaf(td_crdt_doc *d, uint32_t obj)
{
    td_leaf *l = d->spare_leaf[--d->nspare_leaf];
    memset(l, 0, offsetof(td_leaf, r));
    l->obj = obj;
    return l;
}

/* Every node records its index in its parent, so walks up cost no search. */
static uint32_t slot_of(const td_inner *p, const void *child)
{
    (void)p;
    return p->leaf_children ? ((const td_leaf *)child)->slot : ((const td_inner *)child)->slot;
}

void td_crdt_seq_adjust(td_seq *s, td_leaf *leaf, int64_t dtot, int64_t dvis)
{
    s->total = (uint32_t)((int64_t)s->total + dtot);
    s->vis = (uint32_t)((int64_t)s->vis + dvis);
    void *child = leaf;
    for (td_inner *p = leaf->parent; p; child = p, p = p->parent) {
        uint32_t i = slot_of(p, child);
        p->tot[i] = (uint32_t)((int64_t)p->tot[i] + dtot);
        p->vis[i] = (uint32_t)((int64_t)p->vis[i] + dvis);
    }
}

static void set_parent(void *child, int is_leaf, td_inner *p, uint32_t slot)
{
    if (is_leaf) {
        ((td_leaf *)child)->parent = p;
        ((td_leaf *)child)->slot = (uint8_t)slot;
    } else {
        ((td_inner *)child)->parent = p;
        ((td_inner *)child)->slot = (uint8_t)slot;
    }
}

/* `right` (holding t items, v visible) was split off `left`, whose counts
 * still include them: hang it after `left` in left's parent. */
static void hang_after(td_crdt_doc *d, td_seq *s, td_inner *p, void *left,
                       void *right, uint32_t t, uint32_t v, int is_leaf)
{
    if (!p) { /* left was the root */
        td_inner *r = take_inner(d);
        r->leaf_children = (uint8_t)is_leaf;
        r->n = 2;
        r->c[0] = left;
        r->c[1] = right;
        r->tot[0] = s->total - t;
        r->vis[0] = s->vis - v;
        r->tot[1] = t;
        r->vis[1] = v;
        set_parent(left, is_leaf, r, 0);
        set_parent(right, is_leaf, r, 1);
        s->root = r;
        s->root_is_leaf = 0;
        return;
    }
    uint32_t i = slot_of(p, left);
    p->tot[i] -= t;
    p->vis[i] -= v;
    uint32_t at = i + 1;
    td_inner *dst = p;
    td_inner *q = NULL;
    if (p->n == TD_INNER_MAX) {
        q = take_inner(d);
        q->leaf_children = p->leaf_children;
        uint32_t keep = (at == p->n) ? p->n : TD_INNER_MAX / 2; /* appending: leave p full */
        q->n = (uint16_t)(p->n - keep);
        for (uint32_t j = 0; j < q->n; j++) {
            q->c[j] = p->c[keep + j];
            q->tot[j] = p->tot[keep + j];
            q->vis[j] = p->vis[keep + j];
            set_parent(q->c[j], q->leaf_children, q, j);
        }
        p->n = (uint16_t)keep;
        if (at >= keep) {
            dst = q;
            at -= keep;
        }
    }
    memmove(&dst->c[at + 1], &dst->c[at], (dst->n - at) * sizeof dst->c[0]);
    memmove(&dst->tot[at + 1], &dst->tot[at], (dst->n - at) * sizeof dst->tot[0]);
    memmove(&dst->vis[at + 1], &dst->vis[at], (dst->n - at) * sizeof dst->vis[0]);
    dst->c[at] = right;
    dst->tot[at] = t;
    dst->vis[at] = v;
    dst->n++;
    for (uint32_t j = at; j < dst->n; j++)
        set_parent(dst->c[j], is_leaf, dst, j);
    if (q) {
        uint32_t qt = 0, qv = 0;
        for (uint32_t j = 0; j < q->n; j++) {
            qt += q->tot[j];
            qv += q->vis[j];
        }
        hang_after(d, s, p->parent, p, q, qt, qv, 0);
    }
}

static uint32_t run_vis(const td_run *r)
{
    return r->deleted ? 0 : r->len;
}

/* index: keep the id index up to date (0 only for td_crdt_seq_append_unindexed,
 * whose caller builds the index afterwards). */
static td_crdt_err insert_run(td_crdt_doc *d, td_seq *s, td_leaf *leaf, uint32_t ri,
                              const td_run *r, td_pos *at, int index)
{
    int fresh = !s->root;
    if (fresh) {
        ri = 0;
    } else if (!leaf) { /* append */
        leaf = s->last;
        ri = leaf->n;
    }
    /* only a new root or a full leaf takes nodes */
    if (fresh || leaf->n == TD_LEAF_MAX) {
        td_crdt_err e = td_reserve(d, s, 1);
        if (e)
            return e;
    }
    td_idx *x = &d->agents[r->id.agent].idx;
    if (index && td_crdt_idx_put(d, x, r->id.seq, fresh ? d->spare_leaf[d->nspare_leaf - 1] : leaf))
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    if (fresh) { /* a new leaf has room, so the spare is not needed below */
        leaf = take_leaf(d, s->obj);
        s->root = s->first = s->last = leaf;
        s->root_is_leaf = 1;
    }
    s->cur.valid = 0;
    td_crdt_seq_adjust(s, leaf, r->len, run_vis(r));
    td_leaf *dst = leaf;
    if (leaf->n == TD_LEAF_MAX) {
        td_leaf *nl = take_leaf(d, s->obj);
        uint32_t keep = (ri == leaf->n) ? leaf->n : TD_LEAF_MAX / 2;
        nl->n = (uint16_t)(leaf->n - keep);
        memcpy(nl->r, &leaf->r[keep], nl->n * sizeof nl->r[0]);
        leaf->n = (uint16_t)keep;
        nl->prev = leaf;
        nl->next = leaf->next;
        if (leaf->next)
            leaf->next->prev = nl;
        else
            s->last = nl;
        leaf->next = nl;
        if (ri >= keep) {
            dst = nl;
            ri -= keep;
        }
        memmove(&dst->r[ri + 1], &dst->r[ri], (dst->n - ri) * sizeof dst->r[0]);
        dst->r[ri] = *r;
        dst->n++;
        uint32_t t = 0, v = 0;
        for (uint32_t j = 0; j < nl->n; j++) {
            t += nl->r[j].len;
            v += run_vis(&nl->r[j]);
            /* existing keys: updates in place, cannot fail */
            if (index)
                td_crdt_idx_put(d, &d->agents[nl->r[j].id.agent].idx, nl->r[j].id.seq, nl);
        }
        hang_after(d, s, leaf->parent, leaf, nl, t, v, 1);
    } else {
        memmove(&dst->r[ri + 1], &dst->r[ri], (dst->n - ri) * sizeof dst->r[0]);
        dst->r[ri] = *r;
        dst->n++;
    }
    if (at) {
        at->leaf = dst;
        at->ri = ri;
        at->off = 0;
    }
    return TD_CRDT_OK;
}

td_crdt_err td_crdt_seq_insert_run(td_crdt_doc *d, td_seq *s, td_leaf *leaf,
                              uint32_t ri, const td_run *r, td_pos *at)
{
    return insert_run(d, s, leaf, ri, r, at, 1);
}

td_crdt_err td_crdt_seq_append_unindexed(td_crdt_doc *d, td_seq *s, const td_run *r)
{
    return insert_run(d, s, NULL, 0, r, NULL, 0);
}

td_id td_crdt_run_last(const td_run *r)
{
    td_id id = r->id;
    id.seq += r->len - 1;
    return id;
}

static int id_eq(td_id a, td_id b)
{
    return a.agent == b.agent && (a.agent == TD_NONE || a.seq == b.seq);
}

int td_crdt_run_continues(const td_run *a, const td_run *b)
{
    td_id last = td_crdt_run_last(a);
    return a->id.agent == b->id.agent && b->id.seq == a->id.seq + a->len &&
           id_eq(b->left, last) && id_eq(b->right, a->right);
}

td_crdt_err td_crdt_seq_split(td_crdt_doc *d, td_seq *s, td_pos *p)
{
    if (p->off == 0)
        return TD_CRDT_OK;
    td_run *a = &p->leaf->r[p->ri];
    td_run b = *a;
    b.id.seq += p->off;
    b.len -= p->off;
    if (b.content != TD_NO_CONTENT)
        b.content += p->off;
    b.left = a->id;
    b.left.seq += p->off - 1;
    uint32_t olen = a->len;
    a->len = p->off;
    td_crdt_seq_adjust(s, p->leaf, -(int64_t)b.len, -(int64_t)run_vis(&b));
    td_pos at;
    td_crdt_err e = td_crdt_seq_insert_run(d, s, p->leaf, p->ri + 1, &b, &at);
    if (e) {
        p->leaf->r[p->ri].len = olen;
        td_crdt_seq_adjust(s, p->leaf, b.len, run_vis(&b));
        return e;
    }
    *p = at;
    return TD_CRDT_OK;
}

int td_crdt_seq_try_merge(td_crdt_doc *d, td_leaf *leaf, uint32_t ri)
{
    if (ri + 1 >= leaf->n)
        return 0;
    td_run *a = &leaf->r[ri], *b = &leaf->r[ri + 1];
    if (a->deleted != b->deleted || !td_crdt_run_continues(a, b))
        return 0;
    int contiguous = a->content != TD_NO_CONTENT && b->content == a->content + a->len;
    /* Deleted text may lose its content; list elements keep theirs, since
     * an element may be a nested object that later ops still name. */
    if (!contiguous && (!a->deleted || d->objs[leaf->obj - 1]->kind == TD_CRDT_LIST))
        return 0;
    if (!contiguous)
        a->content = TD_NO_CONTENT;
    a->len += b->len;
    uint32_t agent = b->id.agent, seq = b->id.seq;
    memmove(b, b + 1, (leaf->n - ri - 2) * sizeof *b);
    leaf->n--;
    td_crdt_idx_del(d, &d->agents[agent].idx, seq);
    return 1;
}

td_pos td_crdt_seq_find_visible(td_seq *s, uint32_t vpos)
{
    td_pos p = {0};
    void *n = s->root;
    int is_leaf = s->root_is_leaf;
    while (!is_leaf) {
        td_inner *in = n;
        uint32_t i = 0;
        while (i + 1 < in->n && vpos >= in->vis[i]) {
            vpos -= in->vis[i];
            i++;
        }
        is_leaf = in->leaf_children;
        n = in->c[i];
    }
    td_leaf *l = n;
    for (uint32_t i = 0; i < l->n; i++) {
        uint32_t v = run_vis(&l->r[i]);
        if (vpos < v) {
            p.leaf = l;
            p.ri = i;
            p.off = vpos;
            return p;
        }
        vpos -= v;
    }
    p.leaf = NULL; /* vpos out of range: callers check s->vis first */
    return p;
}

int td_crdt_seq_locate(td_crdt_doc *d, uint32_t obj, td_id id, td_pos *out)
{
    if (id.agent >= d->nagents)
        return 0;
    td_idx_ent *e = td_crdt_idx_floor(&d->agents[id.agent].idx, id.seq);
    if (!e || e->leaf->obj != obj)
        return 0;
    td_leaf *l = e->leaf;
    for (uint32_t i = 0; i < l->n; i++) {
        const td_run *r = &l->r[i];
        if (r->id.agent == id.agent && id.seq >= r->id.seq && id.seq - r->id.seq < r->len) {
            out->leaf = l;
            out->ri = i;
            out->off = id.seq - r->id.seq;
            return 1;
        }
    }
    return 0;
}

uint32_t td_crdt_seq_index(const td_pos *p)
{
    uint32_t idx = p->off;
    for (uint32_t i = 0; i < p->ri; i++)
        idx += p->leaf->r[i].len;
    uint32_t slot = p->leaf->slot;
    for (const td_inner *q = p->leaf->parent; q; slot = q->slot, q = q->parent)
        for (uint32_t i = 0; i < slot; i++)
            idx += q->tot[i];
    return idx;
}

uint32_t td_crdt_seq_vis_index(const td_pos *p)
{
    const td_run *r = &p->leaf->r[p->ri];
    uint32_t idx = r->deleted ? 0 : p->off;
    for (uint32_t i = 0; i < p->ri; i++)
        idx += run_vis(&p->leaf->r[i]);
    uint32_t slot = p->leaf->slot;
    for (const td_inner *q = p->leaf->parent; q; slot = q->slot, q = q->parent)
        for (uint32_t i = 0; i < slot; i++)
            idx += q->vis[i];
    return idx;
}

int td_crdt_pos_next_run(td_pos *p)
{
    p->off = 0;
    if (p->ri + 1 < p->leaf->n) {
        p->ri++;
        return 1;
    }
    if (!p->leaf->next)
        return 0;
    p->leaf = p->leaf->next;
    p->ri = 0;
    return 1;
}
