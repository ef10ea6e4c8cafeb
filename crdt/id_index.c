/*
 * id_index.c -- per-agent map from the first seq of each run to its leaf.
 *
 * A two-level sorted array: chunks of up to TD_IDX_CHUNK entries, and an
 * array of the chunks' first keys. Lookups are two binary searches; an
 * insertion moves at most one chunk's entries (and, when a chunk splits, one
 * pointer per chunk). An agent's runs are mostly created in seq order, so
 * the usual insertion appends to the last chunk.
 *
 * Invariants: keys strictly increase across the whole index; no chunk is
 * empty; first[i] == chunks[i]->e[0].seq.
 */
#include "crdt_internal.h"

/* Index of the last chunk whose first key is <= seq, or -1. */
static int64_t chunk_floor(const td_idx *x, uint32_t seq)
{
    int64_t lo = 0, hi = (int64_t)x->n - 1, ans = -1;
    /* the usual key is in the last chunk: an agent's newest runs (typing,
     * a commit of what was just typed) */
    if (x->n && x->first[x->n - 1] <= seq)
        return (int64_t)x->n - 1;
    while (lo <= hi) {
        int64_t mid = (lo + hi) / 2;
        if (x->first[mid] <= seq) {
            ans = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return ans;
}

/* Index of the last entry of c whose key is <= seq, or -1. */
static int64_t ent_floor(const td_idx_chunk *c, uint32_t seq)
{
    int64_t lo = 0, hi = (int64_t)c->n - 1, ans = -1;
    if (c->n && c->e[c->n - 1].seq <= seq)
        return c->n - 1;
    while (lo <= hi) {
        int64_t mid = (lo + hi) / 2;
        if (c->e[mid].seq <= seq) {
            ans = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return ans;
}

td_idx_ent *td_crdt_idx_floor(td_idx *x, uint32_t seq)
{
    int64_t ci = chunk_floor(x, seq);
    if (ci < 0)
        return NULL;
    td_idx_chunk *c = x->chunks[ci];
    return &c->e[ent_floor(c, seq)];
}

/* A chunk for a split or a new first key: a spare one if an edit set it
 * aside (td_crdt_idx_reserve). */
static td_idx_chunk *chunk_new(td_crdt_doc *d)
{
    if (d->nspare_chunk)
        return d->spare_chunk[--d->nspare_chunk];
    return td_crdt_mem(d, NULL, sizeof(td_idx_chunk));
}

td_crdt_err td_crdt_idx_reserve(td_crdt_doc *d, td_idx *x, uint32_t seq, uint32_t k)
{
    int64_t ci = chunk_floor(x, seq);
    if (x->n && x->chunks[ci < 0 ? 0 : ci]->n + k <= TD_IDX_CHUNK)
        return TD_CRDT_OK; /* the chunk takes them all */
    if (x->cap < x->n + k) {
        uint32_t cap = x->cap;
        uint32_t cap2 = x->cap;
        if (!td_crdt_grow(d, (void **)&x->chunks, &cap, x->n + k, sizeof *x->chunks) ||
            !td_crdt_grow(d, (void **)&x->first, &cap2, x->n + k, sizeof *x->first))
            return TD_CRDT_ERR_NOMEM;
        x->cap = cap < cap2 ? cap : cap2;
    }
    while (d->nspare_chunk < k) {
        td_idx_chunk *c = td_crdt_mem(d, NULL, sizeof *c);
        if (!c)
            return TD_CRDT_ERR_NOMEM;
        d->spare_chunk[d->nspare_chunk++] = c;
    }
    return TD_CRDT_OK;
}

static td_crdt_err chunk_insert_at(td_crdt_doc *d, td_idx *x, uint32_t pos,
                                   td_idx_chunk *c, uint32_t first)
{
    if (x->n == x->cap) {
        uint32_t cap = x->cap ? x->cap * 2 : 4;
        td_idx_chunk **nc = td_crdt_mem(d, x->chunks, cap * sizeof *nc);
        if (!nc)
            return TD_CRDT_ERR_NOMEM;
        x->chunks = nc;
        uint32_t *nf = td_crdt_mem(d, x->first, cap * sizeof *nf);
        if (!nf)
            return TD_CRDT_ERR_NOMEM;
        x->first = nf;
        x->cap = cap;
    }
    memmove(&x->chunks[pos + 1], &x->chunks[pos], (x->n - pos) * sizeof *x->chunks);
    memmove(&x->first[pos + 1], &x->first[pos], (x->n - pos) * sizeof *x->first);
    x->chunks[pos] = c;
    x->first[pos] = first;
    x->n++;
    return TD_CRDT_OK;
}

td_crdt_err td_crdt_idx_put(td_crdt_doc *d, td_idx *x, uint32_t seq, td_leaf *leaf)
{
    int64_t ci = chunk_floor(x, seq);
    if (ci < 0) {
        if (x->n == 0 || x->chunks[0]->n == TD_IDX_CHUNK) {
            td_idx_chunk *c = chunk_new(d);
            if (!c)
                return TD_CRDT_ERR_NOMEM;
            c->n = 1;
            c->e[0].seq = seq;
            c->e[0].leaf = leaf;
            td_crdt_err e = chunk_insert_at(d, x, 0, c, seq);
            if (e)
                td_crdt_memfree(d, c);
            return e;
        }
        ci = 0;
    }
    td_idx_chunk *c = x->chunks[ci];
    int64_t ei = ent_floor(c, seq);
    if (ei >= 0 && c->e[ei].seq == seq) {
        c->e[ei].leaf = leaf;
        return TD_CRDT_OK;
    }
    uint32_t at = (uint32_t)(ei + 1);
    if (c->n == TD_IDX_CHUNK) {
        /* Split: appending at the very end starts a fresh chunk, so that
         * sequential creation fills chunks completely. */
        td_idx_chunk *nc = chunk_new(d);
        if (!nc)
            return TD_CRDT_ERR_NOMEM;
        uint32_t keep = (at == TD_IDX_CHUNK && (uint32_t)ci == x->n - 1)
                            ? TD_IDX_CHUNK : TD_IDX_CHUNK / 2;
        nc->n = c->n - keep;
        memcpy(nc->e, &c->e[keep], nc->n * sizeof *nc->e);
        c->n = keep;
        if (at >= keep) {
            at -= keep;
            c = nc;
        }
        uint32_t nfirst = nc->n ? nc->e[0].seq : seq;
        td_crdt_err e = chunk_insert_at(d, x, (uint32_t)ci + 1, nc, nfirst);
        if (e) { /* undo the split */
            memcpy(&x->chunks[ci]->e[keep], nc->e, nc->n * sizeof *nc->e);
            x->chunks[ci]->n = keep + nc->n;
            td_crdt_memfree(d, nc);
            return e;
        }
        if (c == nc)
            ci++;
    }
    memmove(&c->e[at + 1], &c->e[at], (c->n - at) * sizeof *c->e);
    c->e[at].seq = seq;
    c->e[at].leaf = leaf;
    c->n++;
    x->first[ci] = c->e[0].seq;
    return TD_CRDT_OK;
}

/* The chunk and entry indexes of the entry keyed exactly seq: 0, or -1 if
 * there is none. */
static int exact(const td_idx *x, uint32_t seq, int64_t *ci, int64_t *ei)
{
    *ci = chunk_floor(x, seq);
    if (*ci < 0)
        return -1;
    *ei = ent_floor(x->chunks[*ci], seq);
    return *ei < 0 || x->chunks[*ci]->e[*ei].seq != seq ? -1 : 0;
}

void td_crdt_idx_del(td_crdt_doc *d, td_idx *x, uint32_t seq)
{
    int64_t ci, ei;
    if (exact(x, seq, &ci, &ei) < 0)
        return;
    td_idx_chunk *c = x->chunks[ci];
    memmove(&c->e[ei], &c->e[ei + 1], (c->n - (uint32_t)ei - 1) * sizeof *c->e);
    c->n--;
    if (c->n) {
        x->first[ci] = c->e[0].seq;
        return;
    }
    td_crdt_memfree(d, c);
    memmove(&x->chunks[ci], &x->chunks[ci + 1], (x->n - (uint32_t)ci - 1) * sizeof *x->chunks);
    memmove(&x->first[ci], &x->first[ci + 1], (x->n - (uint32_t)ci - 1) * sizeof *x->first);
    x->n--;
}

void td_crdt_idx_rekey(td_idx *x, uint32_t from, uint32_t to)
{
    int64_t ci = x->hint_ci, ei = x->hint_ei;
    if (!(x->hint_ci < x->n && x->hint_ei < x->chunks[ci]->n &&
          x->chunks[ci]->e[ei].seq == from) &&
        exact(x, from, &ci, &ei) < 0)
        return;
    td_idx_chunk *c = x->chunks[ci];
    c->e[ei].seq = to;
    x->first[ci] = c->e[0].seq;
    x->hint_ci = (uint32_t)ci;
    x->hint_ei = (uint32_t)ei;
}

static int walk_at(td_idx *x, int64_t ci, uint32_t ei, int (*fn)(void *, td_idx_ent *), void *ud);

int td_crdt_idx_walk(td_idx *x, uint32_t from, int (*fn)(void *, td_idx_ent *), void *ud)
{
    int64_t ci = chunk_floor(x, from);
    uint32_t ei = 0;
    if (ci < 0) {
        ci = 0;
    } else {
        int64_t f = ent_floor(x->chunks[ci], from);
        ei = (uint32_t)f;
        if (x->chunks[ci]->e[ei].seq < from)
            ei++;
    }
    return walk_at(x, ci, ei, fn, ud);
}

int td_crdt_idx_walk_floor(td_idx *x, uint32_t seq, int (*fn)(void *, td_idx_ent *), void *ud)
{
    int64_t ci = chunk_floor(x, seq);
    if (ci < 0) /* no key <= seq: from the first entry */
        return walk_at(x, 0, 0, fn, ud);
    return walk_at(x, ci, (uint32_t)ent_floor(x->chunks[ci], seq), fn, ud);
}

static int walk_at(td_idx *x, int64_t ci, uint32_t ei, int (*fn)(void *, td_idx_ent *), void *ud)
{
    for (; (uint32_t)ci < x->n; ci++, ei = 0) {
        td_idx_chunk *c = x->chunks[ci];
        for (; ei < c->n; ei++) {
            int rc = fn(ud, &c->e[ei]);
            if (rc)
                return rc;
        }
    }
    return 0;
}

void td_crdt_idx_free(td_crdt_doc *d, td_idx *x)
{
    for (uint32_t i = 0; i < x->n; i++)
        td_crdt_memfree(d, x->chunks[i]);
    td_crdt_memfree(d, x->chunks);
    td_crdt_memfree(d, x->first);
    memset(x, 0, sizeof *x);
}

td_crdt_err td_crdt_idx_build(td_crdt_doc *d, td_idx *x, const td_idx_ent *e, uint32_t n)
{
    for (uint32_t i = 0; i < n; i += TD_IDX_CHUNK) {
        td_idx_chunk *c = td_crdt_mem(d, NULL, sizeof *c);
        if (!c)
            return TD_CRDT_ERR_NOMEM;
        c->n = n - i < TD_IDX_CHUNK ? n - i : TD_IDX_CHUNK;
        memcpy(c->e, e + i, c->n * sizeof *c->e);
        td_crdt_err err = chunk_insert_at(d, x, x->n, c, c->e[0].seq);
        if (err) {
            td_crdt_memfree(d, c);
            return err;
        }
    }
    return TD_CRDT_OK;
}
