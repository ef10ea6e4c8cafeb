/*
 * map.c -- last-writer-wins maps.
 *
 * A map is an array of entries sorted by key bytes (shorter first on a common
 * prefix). Each entry is a register holding the write that wins under the
 * order (lamport, agent id, seq): the same winner on every replica whatever
 * the order of delivery. A delete is a write of TD_VT_DELETED; the entry stays
 * so that an older concurrent write cannot bring the key back. `live` counts
 * entries that are not deleted.
 *
 * A losing write is dropped entirely: it can never win later, so nothing of it
 * needs to be kept (diff sends its seq as a NOP).
 */
#include "crdt_internal.h"

static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* First entry index whose key is not below key. */
static uint32_t map_lower(const td_map *m, const char *key, size_t klen)
{
    uint32_t lo = 0, hi = m->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (key_cmp(m->e[mid].key, m->e[mid].klen, key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

td_mapent *td_crdt_map_find(const td_map *m, const char *key, size_t klen)
{
    uint32_t i = map_lower(m, key, klen);
    if (i < m->n && key_cmp(m->e[i].key, m->e[i].klen, key, klen) == 0)
        return &m->e[i];
    return NULL;
}

/* 1 if write (l1, a1) beats (l2, a2). */
static int lww_beats(const td_crdt_doc *d, uint64_t l1, td_id a1, uint64_t l2, td_id a2)
{
    if (l1 != l2)
        return l1 > l2;
    uint64_t g1 = d->agents[a1.agent].id, g2 = d->agents[a2.agent].id;
    if (g1 != g2)
        return g1 > g2;
    return a1.seq > a2.seq;
}

/* Handle of the object owning m (events only: a scan is fine there). */
static uint32_t map_handle(const td_crdt_doc *d, const td_map *m)
{
    for (uint32_t h = 1; h <= d->nobjs; h++)
        if (&d->objs[h - 1]->u.map == m)
            return h;
    return 0;
}

td_crdt_err td_crdt_map_write(td_crdt_doc *d, td_map *m, const char *key, size_t klen,
                         td_val *v, uint64_t lamport, td_id id)
{
    uint32_t i = map_lower(m, key, klen);
    if (i < m->n && key_cmp(m->e[i].key, m->e[i].klen, key, klen) == 0) {
        td_mapent *e = &m->e[i];
        if (!lww_beats(d, lamport, id, e->lamport, e->id)) {
            td_crdt_val_free(d, v);
            return TD_CRDT_OK;
        }
        int was_live = e->val.tag != TD_VT_DELETED;
        int is_live = v->tag != TD_VT_DELETED;
        td_crdt_val_free(d, &e->val);
        e->val = *v;
        e->lamport = lamport;
        e->id = id;
        m->live = m->live - (uint32_t)was_live + (uint32_t)is_live;
        if (d->observer && (was_live || is_live))
            td_crdt_emit(d, TD_CRDT_EV_KEY, map_handle(d, m), 0, 0, e->key, e->klen);
        return TD_CRDT_OK;
    }
    char *k = td_crdt_mem(d, NULL, klen);
    if (!k || !td_crdt_grow(d, (void **)&m->e, &m->cap, m->n + 1, sizeof *m->e)) {
        td_crdt_memfree(d, k);
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    }
    memcpy(k, key, klen);
    memmove(&m->e[i + 1], &m->e[i], (m->n - i) * sizeof *m->e);
    td_mapent *e = &m->e[i];
    e->key = k;
    e->klen = (uint32_t)klen;
    e->val = *v;
    e->lamport = lamport;
    e->id = id;
    m->n++;
    if (v->tag != TD_VT_DELETED) {
        m->live++;
        if (d->observer)
            td_crdt_emit(d, TD_CRDT_EV_KEY, map_handle(d, m), 0, 0, e->key, e->klen);
    }
    return TD_CRDT_OK;
}

void td_crdt_map_free(td_crdt_doc *d, td_map *m)
{
    for (uint32_t i = 0; i < m->n; i++) {
        td_crdt_memfree(d, m->e[i].key);
        td_crdt_val_free(d, &m->e[i].val);
    }
    td_crdt_memfree(d, m->e);
    memset(m, 0, sizeof *m);
}
