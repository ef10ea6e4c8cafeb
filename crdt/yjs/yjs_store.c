/*
 * yjs_store.c -- the struct store (Yjs's StructStore) and the operations
 * on it that integration builds on: finding the struct that holds an id,
 * splitting an item at a clock (splitItem), merging neighbours
 * (tryToMergeWithLefts / mergeWith), and the root types.
 *
 * Invariant (as in Yjs): a client's array holds structs sorted by clock
 * that cover [0, state) without gaps or overlaps; an Item's left/right
 * links and its parent's start and map reach exactly the integrated items
 * of that parent. Every step below allocates before it changes anything,
 * so a failed allocation leaves the store as it was.
 */
#include "yjs_internal.h"

/* ---- clients -------------------------------------------------------------- */

static uint32_t hash_client(uint64_t c)
{
    c *= 0x9E3779B97F4A7C15ULL;
    return (uint32_t)(c >> 32);
}

yj_client *yj_client_get(yj_doc *d, uint64_t client)
{
    if (!d->ccidx)
        return NULL;
    uint32_t mask = d->ccidx - 1;
    for (uint32_t i = hash_client(client) & mask;; i = (i + 1) & mask) {
        uint32_t v = d->cidx[i];
        if (!v)
            return NULL;
        if (d->clients[v - 1].client == client)
            return &d->clients[v - 1];
    }
}

static void cidx_put(uint32_t *idx, uint32_t cap, uint64_t client, uint32_t v)
{
    uint32_t mask = cap - 1;
    uint32_t i = hash_client(client) & mask;
    while (idx[i])
        i = (i + 1) & mask;
    idx[i] = v;
}

yj_client *yj_client_add(yj_doc *d, uint64_t client)
{
    yj_client *c = yj_client_get(d, client);
    if (c)
        return c;
    if ((d->nclients + 1) * 2 > d->ccidx) {
        uint32_t nc = d->ccidx ? d->ccidx * 2 : 16;
        uint32_t *ni = yj_alloc(d, nc * sizeof *ni);
        if (!ni)
            return NULL;
        memset(ni, 0, nc * sizeof *ni);
        for (size_t i = 0; i < d->nclients; i++)
            cidx_put(ni, nc, d->clients[i].client, (uint32_t)i + 1);
        yj_free(d, d->cidx);
        d->cidx = ni;
        d->ccidx = nc;
    }
    if (!yj_grow(d, &d->clients, &d->cclients, d->nclients + 1, sizeof *d->clients))
        return NULL;
    c = &d->clients[d->nclients++];
    memset(c, 0, sizeof *c);
    c->client = client;
    cidx_put(d->cidx, d->ccidx, client, (uint32_t)d->nclients);
    return c;
}

uint64_t yj_client_state(const yj_client *c)
{
    if (!c || !c->n)
        return 0;
    const yj_item *last = c->s[c->n - 1];
    return last->id.clock + last->len;
}

uint64_t yj_state(const yj_doc *d, uint64_t client)
{
    return yj_client_state(yj_client_get((yj_doc *)d, client));
}

/* Index of the struct holding clock (which must be below the state). */
size_t yj_find_index(const yj_client *c, uint64_t clock)
{
    size_t lo = 0, hi = c->n - 1;
    const yj_item *last = c->s[hi];
    if (clock >= last->id.clock)
        return hi;
    while (lo <= hi) {
        size_t mid = lo + (hi - lo) / 2;
        const yj_item *m = c->s[mid];
        if (clock < m->id.clock)
            hi = mid - 1;
        else if (clock >= m->id.clock + m->len)
            lo = mid + 1;
        else
            return mid;
    }
    return lo; /* not reached while the invariant holds */
}

yj_item *yj_get_item(yj_doc *d, yj_id id)
{
    yj_client *c = yj_client_get(d, id.client);
    if (!c || id.clock >= yj_client_state(c))
        return NULL;
    return c->s[yj_find_index(c, id.clock)];
}

/* ---- transactions: what cleanup will look at ----------------------------- */

void yj_txn_merge(yj_doc *d, yj_id id)
{
    yj_txn *t = d->txn;
    if (t && yj_grow(d, &t->merge, &t->cmerge, t->nmerge + 1, sizeof *t->merge))
        t->merge[t->nmerge++] = id;
}

void yj_txn_changed(yj_doc *d, uint64_t client, uint64_t before)
{
    yj_txn *t = d->txn;
    if (t && yj_grow(d, &t->chg, &t->cchg, t->nchg + 1, sizeof *t->chg))
        t->chg[t->nchg++] = (yj_changed){client, before};
}

void yj_txn_deleted(yj_doc *d, uint64_t client, uint64_t clock, uint64_t len)
{
    yj_txn *t = d->txn;
    if (!t)
        return;
    if (t->nds && t->ds[t->nds - 1].client == client &&
        t->ds[t->nds - 1].clock + t->ds[t->nds - 1].len == clock) {
        t->ds[t->nds - 1].len += len;
        return;
    }
    if (yj_grow(d, &t->ds, &t->cds, t->nds + 1, sizeof *t->ds))
        t->ds[t->nds++] = (yj_range){client, clock, len};
}

/* ---- content ------------------------------------------------------------- */

/* ContentString.splice: the left keeps `off` UTF-16 units. A surrogate
 * pair cut in two becomes U+FFFD on each side, as Yjs does (yjs#248). */
static int splice_string(yj_doc *d, yj_item *it, uint64_t off, yj_content *r)
{
    static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    int mid;
    const char *s = it->c.u.str.s;
    uint32_t n = it->c.u.str.bytes;
    size_t b = yj_utf16_offset(s, n, off, &mid);
    size_t rb = mid ? n - b - 4 + 3 : n - b;
    char *rs = yj_alloc(d, rb);
    if (!rs)
        return 0;
    if (mid) {
        memcpy(rs, fffd, 3);
        memcpy(rs + 3, s + b + 4, n - b - 4);
        memcpy(it->c.u.str.s + b, fffd, 3);
        it->c.u.str.bytes = (uint32_t)b + 3;
    } else {
        memcpy(rs, s + b, rb);
        it->c.u.str.bytes = (uint32_t)b;
    }
    r->u.str.s = rs;
    r->u.str.bytes = (uint32_t)rb;
    return 1;
}

static int splice_values(yj_doc *d, yj_item *it, uint64_t off, yj_content *r)
{
    uint32_t *ends = it->c.u.vals.ends;
    uint32_t base = ends[off - 1], total = ends[it->len - 1];
    size_t rn = (size_t)(it->len - off);
    uint32_t *re = yj_alloc(d, rn * sizeof *re);
    uint8_t *rd = yj_alloc(d, total - base);
    if (!re || !rd) {
        yj_free(d, re);
        yj_free(d, rd);
        return 0;
    }
    for (size_t i = 0; i < rn; i++)
        re[i] = ends[off + i] - base;
    memcpy(rd, it->c.u.vals.data + base, total - base);
    r->u.vals.ends = re;
    r->u.vals.data = rd;
    return 1;
}

int yj_content_splice(yj_doc *d, yj_item *it, uint64_t off, yj_content *right)
{
    memset(right, 0, sizeof *right);
    switch (it->kind) {
    case YJ_STRING:
        return splice_string(d, it, off, right);
    case YJ_JSON:
    case YJ_ANY:
        return splice_values(d, it, off, right);
    default: /* Deleted and GC carry only a length; the rest have length 1 */
        return 1;
    }
}

/* Appends src's content to dst's (ContentString/JSON/Any/Deleted merge). */
static int content_merge(yj_doc *d, yj_item *dst, const yj_item *src)
{
    switch (dst->kind) {
    case YJ_DELETED:
    case YJ_GC:
        return 1;
    case YJ_STRING: {
        size_t a = dst->c.u.str.bytes, b = src->c.u.str.bytes;
        if (a + b > UINT32_MAX)
            return 0;
        if (a + b > yj_block_size(dst->c.u.str.s)) {
            /* Typing appends one character at a time: grow geometrically. */
            size_t want = a + b > 2 * a ? a + b : 2 * a;
            char *ns = yj_realloc(d, dst->c.u.str.s, want);
            if (!ns)
                return 0;
            dst->c.u.str.s = ns;
        }
        memcpy(dst->c.u.str.s + a, src->c.u.str.s, b);
        dst->c.u.str.bytes = (uint32_t)(a + b);
        return 1;
    }
    case YJ_JSON:
    case YJ_ANY: {
        uint32_t a = dst->c.u.vals.ends[dst->len - 1], b = src->c.u.vals.ends[src->len - 1];
        size_t n = (size_t)(dst->len + src->len);
        if ((uint64_t)a + b > UINT32_MAX)
            return 0;
        uint32_t *ne = yj_realloc(d, dst->c.u.vals.ends, n * sizeof *ne);
        if (!ne)
            return 0;
        dst->c.u.vals.ends = ne;
        uint8_t *nd = yj_realloc(d, dst->c.u.vals.data, (size_t)a + b);
        if (!nd)
            return 0;
        dst->c.u.vals.data = nd;
        memcpy(nd + a, src->c.u.vals.data, b);
        for (size_t i = 0; i < src->len; i++)
            ne[dst->len + i] = a + src->c.u.vals.ends[i];
        return 1;
    }
    default:
        return 0;
    }
}

/* ---- split and merge ----------------------------------------------------- */

/* splitItem: c->s[index] keeps `diff` clocks, a new item takes the rest and
 * is inserted after it. NULL if memory ran out (nothing changed then). */
yj_item *yj_split(yj_doc *d, yj_client *c, size_t index, uint64_t diff)
{
    yj_item *l = c->s[index];
    if (!yj_grow(d, &c->s, &c->cap, c->n + 1, sizeof *c->s))
        return NULL;
    yj_item *r = yj_alloc(d, sizeof *r);
    char *sub = l->sub ? yj_alloc(d, l->sub_len + 1) : NULL;
    if (!r || (l->sub && !sub)) {
        yj_free(d, r);
        yj_free(d, sub);
        return NULL;
    }
    memset(r, 0, sizeof *r);
    if (!yj_content_splice(d, l, diff, &r->c)) {
        yj_free(d, r);
        yj_free(d, sub);
        return NULL;
    }
    if (sub)
        memcpy(sub, l->sub, l->sub_len + 1);
    r->id = (yj_id){l->id.client, l->id.clock + diff};
    r->len = l->len - diff;
    r->origin = (yj_id){l->id.client, l->id.clock + diff - 1};
    r->rorigin = l->rorigin;
    r->flags = (uint8_t)(YJ_F_ORIGIN | (l->flags & (YJ_F_RORIGIN | YJ_F_DELETED | YJ_F_KEEP)));
    r->kind = l->kind;
    r->left = l;
    r->right = l->right;
    r->parent = l->parent;
    r->sub = sub;
    r->sub_len = l->sub_len;
    l->right = r;
    if (r->right)
        r->right->left = r;
    l->len = diff;
    if (r->sub && !r->right)
        yj_map_set(d, &r->parent->map, r->sub, r->sub_len, r); /* key exists: no allocation */
    memmove(&c->s[index + 2], &c->s[index + 1], (c->n - index - 1) * sizeof *c->s);
    c->s[index + 1] = r;
    c->n++;
    d->structs++;
    yj_txn_merge(d, r->id);
    return r;
}

/* getItemCleanStart: the struct that starts at id (splitting if needed). */
yj_item *yj_clean_start(yj_doc *d, yj_id id)
{
    yj_client *c = yj_client_get(d, id.client);
    size_t i = yj_find_index(c, id.clock);
    yj_item *it = c->s[i];
    if (it->id.clock < id.clock && it->kind != YJ_GC)
        return yj_split(d, c, i, id.clock - it->id.clock);
    return it;
}

/* getItemCleanEnd: the struct that ends at id (splitting if needed). */
yj_item *yj_clean_end(yj_doc *d, yj_id id)
{
    yj_client *c = yj_client_get(d, id.client);
    size_t i = yj_find_index(c, id.clock);
    yj_item *it = c->s[i];
    if (id.clock != it->id.clock + it->len - 1 && it->kind != YJ_GC)
        if (!yj_split(d, c, i, id.clock - it->id.clock + 1))
            return NULL;
    return it;
}

static int same_opt_id(const yj_item *a, int fa, yj_id ia, const yj_item *b, int fb, yj_id ib)
{
    (void)a;
    (void)b;
    if (!fa || !fb)
        return !fa && !fb;
    return ia.client == ib.client && ia.clock == ib.clock;
}

/* Item.mergeWith / GC.mergeWith: r is absorbed into l and must be freed. */
static int merge_with(yj_doc *d, yj_item *l, yj_item *r)
{
    if (l->kind != r->kind)
        return 0;
    if (l->kind == YJ_GC) {
        l->len += r->len;
        return 1;
    }
    yj_id last = {l->id.client, l->id.clock + l->len - 1};
    if (!(r->flags & YJ_F_ORIGIN) || r->origin.client != last.client || r->origin.clock != last.clock)
        return 0;
    if (l->right != r || l->id.client != r->id.client || l->id.clock + l->len != r->id.clock)
        return 0;
    if (!same_opt_id(l, l->flags & YJ_F_RORIGIN, l->rorigin, r, r->flags & YJ_F_RORIGIN, r->rorigin))
        return 0;
    if ((l->flags & YJ_F_DELETED) != (r->flags & YJ_F_DELETED))
        return 0;
    if (l->kind != YJ_DELETED && l->kind != YJ_STRING && l->kind != YJ_JSON && l->kind != YJ_ANY)
        return 0;
    if (!content_merge(d, l, r))
        return 0;
    if (r->flags & YJ_F_KEEP)
        l->flags |= YJ_F_KEEP;
    l->right = r->right;
    if (l->right)
        l->right->left = l;
    l->len += r->len;
    if (r->sub && yj_map_get(&r->parent->map, r->sub, r->sub_len) == r)
        yj_map_set(d, &r->parent->map, l->sub, l->sub_len, l);
    return 1;
}

/* tryToMergeWithLefts: merges c->s[pos] into its left neighbours as far as
 * possible; returns how many structs disappeared. */
size_t yj_merge_lefts(yj_doc *d, yj_client *c, size_t pos)
{
    size_t i = pos;
    yj_item *right = c->s[pos], *left;
    for (; i > 0; i--) {
        left = c->s[i - 1];
        if ((left->flags & YJ_F_DELETED) != (right->flags & YJ_F_DELETED) ||
            (left->kind == YJ_GC) != (right->kind == YJ_GC) || !merge_with(d, left, right))
            break;
        yj_item_free(d, right);
        c->s[i] = NULL;
        right = left;
    }
    size_t merged = pos - i;
    if (merged) {
        memmove(&c->s[pos + 1 - merged], &c->s[pos + 1], (c->n - pos - 1) * sizeof *c->s);
        c->n -= merged;
        d->structs -= merged;
    }
    return merged;
}

/* ---- roots ---------------------------------------------------------------- */

yj_type *yj_root(yj_doc *d, const char *name, uint32_t len, int create)
{
    yj_type *t = yj_map_get(&d->roots, name, len);
    if (t || !create)
        return t;
    if (!yj_grow(d, &d->root_order, &d->croots, d->nroots + 1, sizeof *d->root_order))
        return NULL;
    t = yj_alloc(d, sizeof *t);
    char *nm = yj_alloc(d, (size_t)len + 1);
    if (!t || !nm) {
        yj_free(d, t);
        yj_free(d, nm);
        return NULL;
    }
    memset(t, 0, sizeof *t);
    memcpy(nm, name, len);
    nm[len] = 0;
    t->name = nm;
    t->name_len = len;
    t->ref = YJ_ROOT;
    t->depth = 1;
    if (!yj_map_set(d, &d->roots, t->name, len, t)) {
        yj_type_free(d, t);
        return NULL;
    }
    d->root_order[d->nroots++] = t;
    return t;
}
