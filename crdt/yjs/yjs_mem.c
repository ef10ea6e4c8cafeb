/*
 * yjs_mem.c -- every allocation of crdt/yjs/ goes through the hook of
 * td_yjs_options, behind an 8-byte header that remembers its size: the
 * hook has realloc semantics and cannot be asked a block's size, and the
 * document reports the bytes it holds (td_yjs_stats.bytes, the "memory at
 * rest" of the benchmark).
 */
#include "yjs_internal.h"

#include <stdarg.h>
#include <stdio.h>

#define HDR 8u

void *yj_realloc(yj_doc *d, void *p, size_t n)
{
    size_t old = 0;
    unsigned char *base = NULL;
    if (p) {
        base = (unsigned char *)p - HDR;
        memcpy(&old, base, sizeof old);
    }
    if (n == 0) {
        if (base) {
            d->alloc(d->alloc_ud, base, 0);
            d->bytes -= old + HDR;
        }
        return NULL;
    }
    if (n > SIZE_MAX - HDR)
        return NULL;
    unsigned char *nb = d->alloc(d->alloc_ud, base, n + HDR);
    if (!nb)
        return NULL;
    memcpy(nb, &n, sizeof n);
    d->bytes = d->bytes - (base ? old + HDR : 0) + n + HDR;
    return nb + HDR;
}

void *yj_alloc(yj_doc *d, size_t n)
{
    return yj_realloc(d, NULL, n ? n : 1);
}

void yj_free(yj_doc *d, void *p)
{
    if (p)
        yj_realloc(d, p, 0);
}

int yj_grow(yj_doc *d, void *arr, size_t *cap, size_t need, size_t sz)
{
    void **a = arr;
    if (need <= *cap)
        return 1;
    size_t nc = *cap ? *cap : 4;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / sz)
            return 0;
        nc *= 2;
    }
    void *na = yj_realloc(d, *a, nc * sz);
    if (!na)
        return 0;
    *a = na;
    *cap = nc;
    return 1;
}

td_yjs_err yj_fail(yj_doc *d, td_yjs_err e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->err, sizeof d->err, fmt, ap);
    va_end(ap);
    return e;
}

const char *td_yjs_strerror(td_yjs_err err)
{
    static const char *const names[] = {
        [TD_YJS_OK] = "ok",           [TD_YJS_ERR_NOMEM] = "nomem",
        [TD_YJS_ERR_ARG] = "arg",     [TD_YJS_ERR_DECODE] = "decode",
        [TD_YJS_ERR_INVALID] = "invalid", [TD_YJS_ERR_LIMIT] = "limit",
    };
    if ((unsigned)err < sizeof names / sizeof names[0] && names[err])
        return names[err];
    return "unknown";
}

size_t yj_block_size(const void *p)
{
    size_t n;
    memcpy(&n, (const unsigned char *)p - HDR, sizeof n);
    return n;
}

/* ---- string-keyed maps (yj_strmap): open addressing, never shrinking ---- */

static uint32_t hash_key(const char *k, uint32_t n)
{
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 16777619u;
    return h;
}

static yj_slot *map_find(const yj_strmap *m, const char *key, uint32_t klen)
{
    uint32_t mask = m->cap - 1;
    for (uint32_t i = hash_key(key, klen) & mask;; i = (i + 1) & mask) {
        yj_slot *s = &m->slots[i];
        if (!s->val || (s->klen == klen && memcmp(s->key, key, klen) == 0))
            return s;
    }
}

void *yj_map_get(const yj_strmap *m, const char *key, uint32_t klen)
{
    if (!m->cap)
        return NULL;
    return map_find(m, key, klen)->val;
}

int yj_map_reserve(yj_doc *d, yj_strmap *m)
{
    if ((m->n + 1) * 2 > m->cap) {
        uint32_t nc = m->cap ? m->cap * 2 : 8;
        yj_strmap nm = {yj_alloc(d, nc * sizeof(yj_slot)), nc, 0};
        if (!nm.slots || nc < m->cap) {
            yj_free(d, nm.slots);
            return 0;
        }
        memset(nm.slots, 0, nc * sizeof(yj_slot));
        for (uint32_t i = 0; i < m->cap; i++)
            if (m->slots[i].val) {
                *map_find(&nm, m->slots[i].key, m->slots[i].klen) = m->slots[i];
                nm.n++;
            }
        yj_free(d, m->slots);
        *m = nm;
    }
    return 1;
}

int yj_map_set(yj_doc *d, yj_strmap *m, const char *key, uint32_t klen, void *val)
{
    yj_slot *s = m->cap ? map_find(m, key, klen) : NULL;
    if (!s || !s->val) { /* a new key: replacing one never allocates */
        if (!yj_map_reserve(d, m))
            return 0;
        s = map_find(m, key, klen);
    }
    if (!s->val)
        m->n++;
    *s = (yj_slot){key, klen, val};
    return 1;
}

void yj_map_free(yj_doc *d, yj_strmap *m)
{
    yj_free(d, m->slots);
    memset(m, 0, sizeof *m);
}
