/*
 * yjs_encode.c -- state vectors and encodeStateAsUpdate, written as Yjs
 * writes them (writeStateVector, writeClientsStructs, Item.write, GC.write,
 * writeDeleteSet), so that Yjs reads what comes out as its own.
 *
 * Pending refs are part of the answer, as in Yjs (which merges
 * store.pendingStructs and pendingDs into encodeStateAsUpdate's result): a
 * peer that syncs from this document must get everything it was given,
 * even the parts it cannot integrate yet. They follow the client's
 * integrated structs in the same block, with a Skip over each gap, which
 * is the shape Y.mergeUpdates gives.
 */
#include "yjs_internal.h"

#include <stdlib.h>

/* ---- state vectors ---------------------------------------------------------- */

typedef struct sv_entry {
    uint64_t client, clock;
} sv_entry;

static int cmp_sv(const void *a, const void *b)
{
    const sv_entry *x = a, *y = b;
    return x->client < y->client ? -1 : x->client > y->client;
}

static int cmp_client_desc(const void *a, const void *b)
{
    const yj_client *x = *(yj_client *const *)a, *y = *(yj_client *const *)b;
    return x->client > y->client ? -1 : x->client < y->client;
}

/* Reads an encoded state vector into entries sorted by client; a client
 * written twice keeps its last clock, as a JS Map would. */
static td_yjs_err sv_decode(yj_doc *d, const uint8_t *p, size_t n, sv_entry **out, size_t *count)
{
    uint64_t k;
    *out = NULL;
    *count = 0;
    if (!n) /* before p + n: p may be NULL then */
        return TD_YJS_OK;
    yj_rd r = {p, p + n, NULL};
    if (!yj_rd_uint(&r, &k))
        return yj_fail(d, TD_YJS_ERR_DECODE, "state vector: %s", r.err);
    if (k > n / 2)
        return yj_fail(d, TD_YJS_ERR_DECODE, "state vector: count past the end");
    sv_entry *e = yj_alloc(d, (size_t)(k ? k : 1) * sizeof *e);
    if (!e)
        return yj_fail(d, TD_YJS_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < k; i++)
        if (!yj_rd_uint(&r, &e[i].client) || !yj_rd_uint(&r, &e[i].clock)) {
            yj_free(d, e);
            return yj_fail(d, TD_YJS_ERR_DECODE, "state vector: %s", r.err);
        }
    if (r.p != r.end) {
        yj_free(d, e);
        return yj_fail(d, TD_YJS_ERR_DECODE, "state vector: bytes after the end");
    }
    /* Stable "last wins": mergesort is not in libc, so tag the order. */
    for (uint64_t i = 1; i < k; i++) /* insertion sort keeps equal keys in order */
        for (uint64_t j = i; j > 0 && e[j - 1].client > e[j].client; j--) {
            sv_entry t = e[j];
            e[j] = e[j - 1];
            e[j - 1] = t;
        }
    size_t w = 0;
    for (size_t i = 0; i < (size_t)k; i++) {
        if (w && e[w - 1].client == e[i].client)
            e[w - 1].clock = e[i].clock;
        else
            e[w++] = e[i];
    }
    *out = e;
    *count = w;
    return TD_YJS_OK;
}

static uint64_t sv_clock(const sv_entry *e, size_t n, uint64_t client)
{
    if (!n)
        return 0;
    sv_entry key = {client, 0};
    const sv_entry *f = bsearch(&key, e, n, sizeof *e, cmp_sv);
    return f ? f->clock : 0;
}

/* The clients sorted by id, descending, as Yjs writes them. NULL if none. */
static yj_client **clients_desc(yj_doc *d, int *nomem)
{
    *nomem = 0;
    if (!d->nclients)
        return NULL;
    yj_client **v = yj_alloc(d, d->nclients * sizeof *v);
    if (!v) {
        *nomem = 1;
        return NULL;
    }
    for (size_t i = 0; i < d->nclients; i++)
        v[i] = &d->clients[i];
    qsort(v, d->nclients, sizeof *v, cmp_client_desc);
    return v;
}

static td_yjs_err finish(yj_doc *d, yj_wr *w, uint8_t **out, size_t *len)
{
    if (w->nomem) {
        yj_free(d, w->buf);
        return yj_fail(d, TD_YJS_ERR_NOMEM, "out of memory");
    }
    if (!w->buf) {
        w->buf = yj_alloc(d, 1);
        if (!w->buf)
            return yj_fail(d, TD_YJS_ERR_NOMEM, "out of memory");
    }
    *out = w->buf;
    *len = w->len;
    return TD_YJS_OK;
}

td_yjs_err td_yjs_encode_state_vector(td_yjs_doc *d, uint8_t **out, size_t *len)
{
    if (!d || !out || !len)
        return TD_YJS_ERR_ARG;
    d->err[0] = 0;
    int nomem;
    yj_client **v = clients_desc(d, &nomem);
    if (nomem)
        return yj_fail(d, TD_YJS_ERR_NOMEM, "out of memory");
    yj_wr w = {d, NULL, 0, 0, 0};
    size_t k = 0;
    for (size_t i = 0; i < d->nclients; i++)
        k += v[i]->n > 0;
    yj_wr_uint(&w, k);
    for (size_t i = 0; i < d->nclients; i++)
        if (v[i]->n) {
            yj_wr_uint(&w, v[i]->client);
            yj_wr_uint(&w, yj_client_state(v[i]));
        }
    yj_free(d, v);
    return finish(d, &w, out, len);
}

/* ---- structs ------------------------------------------------------------- */

static void wr_id(yj_wr *w, yj_id id)
{
    yj_wr_uint(w, id.client);
    yj_wr_uint(w, id.clock);
}

static void wr_values(yj_wr *w, const yj_item *it, uint64_t off, int json)
{
    const uint32_t *ends = it->c.u.vals.ends;
    yj_wr_uint(w, it->len - off);
    for (uint64_t i = off; i < it->len; i++) {
        uint32_t a = i ? ends[i - 1] : 0;
        if (json)
            yj_wr_bytes(w, it->c.u.vals.data + a, ends[i] - a);
        else
            yj_wr_raw(w, it->c.u.vals.data + a, ends[i] - a);
    }
}

/* ContentString.write with an offset: JS slices UTF-16 units and encodes
 * a lone surrogate as U+FFFD. */
static void wr_string(yj_wr *w, const yj_item *it, uint64_t off)
{
    const char *s = it->c.u.str.s;
    uint32_t n = it->c.u.str.bytes;
    if (!off) {
        yj_wr_bytes(w, s, n);
        return;
    }
    int mid;
    size_t b = yj_utf16_offset(s, n, off, &mid);
    if (!mid) {
        yj_wr_bytes(w, s + b, n - b);
        return;
    }
    yj_wr_uint(w, n - b - 4 + 3);
    yj_wr_raw(w, "\xEF\xBF\xBD", 3);
    yj_wr_raw(w, s + b + 4, n - b - 4);
}

static void wr_content(yj_wr *w, const yj_item *it, uint64_t off)
{
    const yj_content *c = &it->c;
    switch (it->kind) {
    case YJ_DELETED:
        yj_wr_uint(w, it->len - off);
        break;
    case YJ_JSON:
        wr_values(w, it, off, 1);
        break;
    case YJ_ANY:
        wr_values(w, it, off, 0);
        break;
    case YJ_BINARY:
    case YJ_EMBED:
        yj_wr_bytes(w, c->u.buf.data, c->u.buf.bytes);
        break;
    case YJ_STRING:
        wr_string(w, it, off);
        break;
    case YJ_FORMAT:
        yj_wr_bytes(w, c->u.buf.data, c->u.buf.key);
        yj_wr_bytes(w, c->u.buf.data + c->u.buf.key, c->u.buf.bytes - c->u.buf.key);
        break;
    case YJ_TYPE:
        yj_wr_uint(w, c->u.type->ref);
        if (c->u.type->ref == YJ_XML_ELEMENT || c->u.type->ref == YJ_XML_HOOK)
            yj_wr_bytes(w, c->u.type->name, c->u.type->name_len);
        break;
    case YJ_DOC: /* kept as read: guid string, then the options Any */
        yj_wr_raw(w, c->u.buf.data, c->u.buf.bytes);
        break;
    default:
        break;
    }
}

/* Item.write / GC.write. Works for integrated items and for refs. */
static void wr_struct(yj_wr *w, const yj_item *it, uint64_t off)
{
    if (it->kind == YJ_GC) {
        yj_wr_u8(w, 0);
        yj_wr_uint(w, it->len - off);
        return;
    }
    int has_o = off > 0 || (it->flags & YJ_F_ORIGIN), has_r = (it->flags & YJ_F_RORIGIN) != 0;
    yj_id origin = off > 0 ? (yj_id){it->id.client, it->id.clock + off - 1} : it->origin;
    yj_wr_u8(w, (uint8_t)(it->kind | (has_o ? 0x80 : 0) | (has_r ? 0x40 : 0) | (it->sub ? 0x20 : 0)));
    if (has_o)
        wr_id(w, origin);
    if (has_r)
        wr_id(w, it->rorigin);
    if (!has_o && !has_r) {
        const yj_type *p = it->parent;
        if (p && !p->item) {
            yj_wr_uint(w, 1);
            yj_wr_bytes(w, p->name, p->name_len);
        } else if (p) {
            yj_wr_uint(w, 0);
            wr_id(w, p->item->id);
        } else if (it->pkind == YJ_P_ROOT) {
            yj_wr_uint(w, 1);
            yj_wr_bytes(w, it->p.name.s, it->p.name.len);
        } else {
            yj_wr_uint(w, 0);
            wr_id(w, it->p.id);
        }
        if (it->sub)
            yj_wr_bytes(w, it->sub, it->sub_len);
    }
    wr_content(w, it, off);
}

/* Walks one client's block from clock `from`: integrated structs, then the
 * pending refs with Skips over gaps. Counts when w is NULL. */
static size_t wr_block(yj_wr *w, const yj_client *c, uint64_t from)
{
    size_t count = 0;
    uint64_t at = from;
    if (c->n && yj_client_state(c) > from) {
        size_t i = yj_find_index(c, from);
        for (; i < c->n; i++, count++) {
            const yj_item *it = c->s[i];
            if (w)
                wr_struct(w, it, at > it->id.clock ? at - it->id.clock : 0);
            at = it->id.clock + it->len;
        }
    }
    int started = count > 0;
    for (size_t k = c->qhead; k < c->qn; k++) {
        const yj_item *r = c->q[k];
        if (r->id.clock + r->len <= at)
            continue;
        if (started && r->id.clock > at) {
            if (w) {
                yj_wr_u8(w, YJ_SKIP);
                yj_wr_uint(w, r->id.clock - at);
            }
            count++;
        }
        if (r->id.clock > at)
            at = r->id.clock;
        if (w)
            wr_struct(w, r, at - r->id.clock);
        at = r->id.clock + r->len;
        started = 1;
        count++;
    }
    return count;
}

/* The clock the block starts at (the first struct written). */
static uint64_t block_start(const yj_client *c, uint64_t from)
{
    if (c->n && yj_client_state(c) > from)
        return from > c->s[0]->id.clock ? from : c->s[0]->id.clock;
    for (size_t k = c->qhead; k < c->qn; k++) {
        const yj_item *r = c->q[k];
        if (r->id.clock + r->len > from)
            return r->id.clock > from ? r->id.clock : from;
    }
    return from;
}

/* ---- the delete set ------------------------------------------------------ */

static int cmp_range_clock(const void *a, const void *b)
{
    const yj_range *x = a, *y = b;
    return x->clock < y->clock ? -1 : x->clock > y->clock;
}

/* Deleted runs of the store (createDeleteSetFromStructStore) and the
 * pending delete ranges of one client, sorted and merged, into *out. */
static int client_ds(yj_doc *d, const yj_client *c, yj_range **buf, size_t *cap, size_t *nout)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++) {
        const yj_item *it = c->s[i];
        if (!(it->flags & YJ_F_DELETED))
            continue;
        if (n && (*buf)[n - 1].clock + (*buf)[n - 1].len == it->id.clock) {
            (*buf)[n - 1].len += it->len;
            continue;
        }
        if (!yj_grow(d, buf, cap, n + 1, sizeof **buf))
            return 0;
        (*buf)[n++] = (yj_range){c->client, it->id.clock, it->len};
    }
    int extra = 0;
    for (size_t i = 0; i < d->npds; i++)
        if (d->pds[i].client == c->client) {
            if (!yj_grow(d, buf, cap, n + 1, sizeof **buf))
                return 0;
            (*buf)[n++] = d->pds[i];
            extra = 1;
        }
    if (extra && n > 1) {
        qsort(*buf, n, sizeof **buf, cmp_range_clock);
        size_t w = 0;
        for (size_t i = 1; i < n; i++) {
            yj_range *a = &(*buf)[w], *b = &(*buf)[i];
            if (b->clock <= a->clock + a->len) {
                if (b->clock + b->len > a->clock + a->len)
                    a->len = b->clock + b->len - a->clock;
            } else {
                (*buf)[++w] = *b;
            }
        }
        n = w + 1;
    }
    *nout = n;
    return 1;
}

/* Pending delete ranges may name clients the store has never seen. */
static int add_ds_clients(yj_doc *d)
{
    for (size_t i = 0; i < d->npds; i++)
        if (!yj_client_add(d, d->pds[i].client))
            return 0;
    return 1;
}

static int wr_delete_set(yj_doc *d, yj_wr *w, yj_client **v)
{
    yj_range *buf = NULL;
    size_t cap = 0, n, k = 0;
    for (size_t i = 0; i < d->nclients; i++) {
        if (!client_ds(d, v[i], &buf, &cap, &n)) {
            yj_free(d, buf);
            return 0;
        }
        k += n > 0;
    }
    yj_wr_uint(w, k);
    for (size_t i = 0; i < d->nclients; i++) {
        client_ds(d, v[i], &buf, &cap, &n); /* cannot fail: cap suffices */
        if (!n)
            continue;
        yj_wr_uint(w, v[i]->client);
        yj_wr_uint(w, n);
        for (size_t j = 0; j < n; j++) {
            yj_wr_uint(w, buf[j].clock);
            yj_wr_uint(w, buf[j].len);
        }
    }
    yj_free(d, buf);
    return 1;
}

td_yjs_err td_yjs_encode_state_as_update(td_yjs_doc *d, const uint8_t *sv, size_t sv_len,
                                         uint8_t **out, size_t *len)
{
    if (!d || !out || !len || (!sv && sv_len))
        return TD_YJS_ERR_ARG;
    d->err[0] = 0;
    sv_entry *e;
    size_t ne;
    td_yjs_err err = sv_decode(d, sv, sv_len, &e, &ne);
    if (err != TD_YJS_OK)
        return err;
    if (!add_ds_clients(d)) {
        yj_free(d, e);
        return yj_fail(d, TD_YJS_ERR_NOMEM, "out of memory");
    }
    int nomem;
    yj_client **v = clients_desc(d, &nomem);
    if (nomem) {
        yj_free(d, e);
        return yj_fail(d, TD_YJS_ERR_NOMEM, "out of memory");
    }
    yj_wr w = {d, NULL, 0, 0, 0};
    size_t blocks = 0;
    for (size_t i = 0; i < d->nclients; i++)
        blocks += wr_block(NULL, v[i], sv_clock(e, ne, v[i]->client)) > 0;
    yj_wr_uint(&w, blocks);
    for (size_t i = 0; i < d->nclients; i++) {
        uint64_t from = sv_clock(e, ne, v[i]->client);
        size_t count = wr_block(NULL, v[i], from);
        if (!count)
            continue;
        yj_wr_uint(&w, count);
        yj_wr_uint(&w, v[i]->client);
        uint64_t start = block_start(v[i], from);
        yj_wr_uint(&w, start);
        wr_block(&w, v[i], start);
    }
    if (!wr_delete_set(d, &w, v))
        w.nomem = 1;
    yj_free(d, v);
    yj_free(d, e);
    return finish(d, &w, out, len);
}
