/*
 * store_cache.c -- the in-memory metadata cache: one entry per document
 * appended to since the store was opened, in a chained hash table.
 *
 * The store thread assigns sequence numbers and sizes from these entries
 * rather than reading the meta family for every append; compaction and
 * deletes keep them equal to what is on disk. The caller holds write_mu
 * for every call, so the table itself has no lock.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/* Keyed SipHash: document ids come from clients, so the table must not be
 * floodable with colliding ids. */
static uint64_t id_hash(const td_store_cache *c, const char *doc, size_t len)
{
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t v = 0;
    crypto_shorthash(h, (const uint8_t *)doc, len, c->key);
    for (int i = 0; i < 8; i++)
        v = (v << 8) | h[i];
    return v;
}

/* Needs sodium_init() done (td_store_open does it first). */
void td_store_cache_init(td_store_cache *c)
{
    memset(c, 0, sizeof *c);
    randombytes_buf(c->key, sizeof c->key);
}

/* The link that points to doc's entry, or to the NULL ending its chain. */
static td_store_ent **slot(td_store_cache *c, const char *doc, size_t len)
{
    uint64_t h = id_hash(c, doc, len);
    td_store_ent **pp = &c->tab[h & (c->size - 1)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->id_len == len &&
            memcmp((*pp)->id, doc, len) == 0)
            break;
    return pp;
}

td_store_ent *td_store_cache_find(td_store_cache *c, const char *doc,
                                  size_t len)
{
    return c->size ? *slot(c, doc, len) : NULL;
}

static int grow(td_store_cache *c)
{
    size_t n = c->size ? c->size * 2 : 64;
    td_store_ent **t = calloc(n, sizeof *t);
    if (t == NULL)
        return -1;
    for (size_t i = 0; i < c->size; i++) {
        td_store_ent *e = c->tab[i], *next;
        for (; e; e = next) {
            next = e->next;
            e->next = t[e->hash & (n - 1)];
            t[e->hash & (n - 1)] = e;
        }
    }
    free(c->tab);
    c->tab = t;
    c->size = n;
    return 0;
}

td_store_ent *td_store_cache_add(td_store_cache *c, const char *doc,
                                 size_t len, const td_store_meta *m)
{
    td_store_ent *e;
    uint8_t *vv = NULL;

    /* Load factor at most 1 keeps the chains short. */
    if (c->count >= c->size && grow(c) != 0)
        return NULL;
    e = calloc(1, sizeof *e + len);
    if (e == NULL)
        return NULL;
    if (m->vv_len) {
        vv = malloc(m->vv_len);
        if (vv == NULL) {
            free(e);
            return NULL;
        }
        memcpy(vv, m->vv, m->vv_len);
    }
    e->cur = *m;
    e->cur.vv = vv;
    e->hash = id_hash(c, doc, len);
    e->id_len = len;
    memcpy(e->id, doc, len);
    e->next = c->tab[e->hash & (c->size - 1)];
    c->tab[e->hash & (c->size - 1)] = e;
    c->count++;
    return e;
}

static void ent_free(td_store_ent *e)
{
    free((void *)e->cur.vv);
    free(e->pend_vv_copy);
    free(e);
}

void td_store_cache_remove(td_store_cache *c, const char *doc, size_t len)
{
    td_store_ent **pp, *e;
    if (c->size == 0)
        return;
    pp = slot(c, doc, len);
    if ((e = *pp) != NULL) {
        *pp = e->next;
        c->count--;
        ent_free(e);
    }
}

void td_store_cache_free(td_store_cache *c)
{
    for (size_t i = 0; i < c->size; i++) {
        td_store_ent *e = c->tab[i], *next;
        for (; e; e = next) {
            next = e->next;
            ent_free(e);
        }
    }
    free(c->tab);
    c->tab = NULL;
    c->size = c->count = 0;
}
