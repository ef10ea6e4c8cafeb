/*
 * yjs_update.c -- decodes an update in Yjs's format v1 into refs (structs
 * not yet integrated) and delete ranges. All validation of an update
 * happens here, before the document changes, so that td_yjs_apply_update
 * is all-or-nothing with respect to validity.
 *
 * The format (Yjs's encoding.js / UpdateDecoderV1), all integers varuints:
 *
 *   update   = nclients { nstructs client clock struct* } deleteset
 *   struct   = info ( GC: len | Skip: len | Item )
 *   Item     = [origin id if info&0x80] [right origin id if info&0x40]
 *              [if neither: parentinfo (1 name | 0 id) [key if info&0x20]]
 *              content(info & 0x1f)
 *   content  = 1 Deleted len | 2 JSON n text* | 3 Binary bytes | 4 String
 *              | 5 Embed json | 6 Format key json | 7 Type ref [name]
 *              | 8 Any n any* | 9 Doc guid any
 *   deleteset = nclients { client nranges { clock len }* }
 *
 * Stricter than Yjs (docs/YJS.md): a client may have only one block, an
 * empty struct or string is refused, an origin or parent of the item's own
 * client must precede it, parentinfo is 0 or 1, and nothing may follow the
 * delete set.
 */
#include "yjs_internal.h"

#include <stdlib.h>

int yj_countable(const yj_item *it)
{
    return it->kind != YJ_GC && it->kind != YJ_DELETED && it->kind != YJ_FORMAT;
}

void yj_type_free(yj_doc *d, yj_type *t)
{
    if (!t)
        return;
    yj_map_free(d, &t->map);
    yj_free(d, t->name);
    yj_free(d, t);
}

void yj_content_free(yj_doc *d, yj_item *it)
{
    switch (it->kind) {
    case YJ_STRING:
        yj_free(d, it->c.u.str.s);
        break;
    case YJ_JSON:
    case YJ_ANY:
        yj_free(d, it->c.u.vals.data);
        yj_free(d, it->c.u.vals.ends);
        break;
    case YJ_BINARY:
    case YJ_EMBED:
    case YJ_FORMAT:
    case YJ_DOC:
        yj_free(d, it->c.u.buf.data);
        break;
    case YJ_TYPE:
        yj_type_free(d, it->c.u.type);
        break;
    default:
        break;
    }
    memset(&it->c, 0, sizeof it->c);
}

void yj_item_free(yj_doc *d, yj_item *it)
{
    if (!it)
        return;
    yj_content_free(d, it);
    yj_free(d, it->sub);
    if (it->pkind == YJ_P_ROOT)
        yj_free(d, it->p.name.s);
    yj_free(d, it);
}

size_t yj_item_bytes(const yj_item *it)
{
    size_t n = sizeof *it + it->sub_len;
    switch (it->kind) {
    case YJ_STRING: n += it->c.u.str.bytes; break;
    case YJ_JSON: case YJ_ANY:
        n += it->c.u.vals.ends[it->len - 1] + it->len * sizeof(uint32_t);
        break;
    case YJ_BINARY: case YJ_EMBED: case YJ_FORMAT: case YJ_DOC:
        n += it->c.u.buf.bytes; break;
    default: break;
    }
    if (it->pkind == YJ_P_ROOT)
        n += it->p.name.len;
    return n;
}

static char *dup(yj_doc *d, const void *s, size_t n)
{
    char *c = yj_alloc(d, n + 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = 0;
    }
    return c;
}

typedef struct dec {
    yj_doc *d;
    yj_rd r;
    td_yjs_err err;
    const char *why;
} dec;

static int fail(dec *x, td_yjs_err e, const char *why)
{
    if (x->err == TD_YJS_OK) {
        x->err = e;
        x->why = why;
    }
    return 0;
}

static int rd(dec *x, int ok)
{
    if (!ok) {
        if (x->r.err == yj_err_deep)
            return fail(x, TD_YJS_ERR_LIMIT, yj_err_deep);
        return fail(x, TD_YJS_ERR_DECODE, x->r.err ? x->r.err : "malformed");
    }
    return 1;
}

static int json_ok(dec *x, const char *s, size_t n, const char *why)
{
    int v = yj_json_valid(s, n, x->d->max_depth);
    if (v < 0)
        return fail(x, TD_YJS_ERR_LIMIT, "JSON nested too deep");
    return v ? 1 : fail(x, TD_YJS_ERR_DECODE, why);
}

static int rd_id(dec *x, yj_id *id)
{
    return rd(x, yj_rd_uint(&x->r, &id->client)) && rd(x, yj_rd_uint(&x->r, &id->clock));
}

/* A list of n values (JSON texts or Any encodings) into one buffer. */
static int rd_values(dec *x, yj_item *it, int json)
{
    uint64_t n;
    if (!rd(x, yj_rd_uint(&x->r, &n)))
        return 0;
    if (n == 0)
        return fail(x, TD_YJS_ERR_DECODE, "empty content");
    if (n > (uint64_t)(x->r.end - x->r.p))
        return fail(x, TD_YJS_ERR_DECODE, "count past the end");
    const uint8_t *start = x->r.p;
    uint32_t *ends = yj_alloc(x->d, (size_t)n * sizeof *ends);
    if (!ends)
        return fail(x, TD_YJS_ERR_NOMEM, "out of memory");
    it->c.u.vals.ends = ends;
    it->len = n;
    uint8_t *data = NULL;
    size_t total = 0;
    if (json) {
        /* Texts are kept without their length prefixes. */
        for (uint64_t i = 0; i < n; i++) {
            const char *s;
            uint32_t len;
            if (!rd(x, yj_rd_string(&x->r, &s, &len)))
                return 0;
            if (!(len == 9 && memcmp(s, "undefined", 9) == 0) &&
                !json_ok(x, s, len, "invalid JSON content"))
                return 0;
            total += len;
            ends[i] = (uint32_t)total;
        }
        data = yj_alloc(x->d, total);
        if (!data)
            return fail(x, TD_YJS_ERR_NOMEM, "out of memory");
        yj_rd again = {start, x->r.end, NULL};
        size_t off = 0;
        for (uint64_t i = 0; i < n; i++) {
            const char *s;
            uint32_t len;
            yj_rd_string(&again, &s, &len);
            memcpy(data + off, s, len);
            off += len;
        }
    } else {
        for (uint64_t i = 0; i < n; i++) {
            const uint8_t *s;
            size_t len;
            if (!rd(x, yj_rd_any(&x->r, x->d->max_depth, &s, &len)))
                return 0;
            ends[i] = (uint32_t)(s + len - start);
        }
        total = (size_t)(x->r.p - start);
        data = yj_alloc(x->d, total);
        if (!data)
            return fail(x, TD_YJS_ERR_NOMEM, "out of memory");
        memcpy(data, start, total);
    }
    it->c.u.vals.data = data;
    return 1;
}

static int rd_blob(dec *x, yj_item *it, const void *p, size_t n, uint32_t key)
{
    it->c.u.buf.data = (uint8_t *)dup(x->d, p, n);
    if (!it->c.u.buf.data)
        return fail(x, TD_YJS_ERR_NOMEM, "out of memory");
    it->c.u.buf.bytes = (uint32_t)n;
    it->c.u.buf.key = key;
    return 1;
}

static int rd_content(dec *x, yj_item *it)
{
    const char *s, *v;
    const uint8_t *b;
    uint32_t n, vn;
    uint64_t u;
    it->len = 1;
    switch (it->kind) {
    case YJ_DELETED:
        if (!rd(x, yj_rd_uint(&x->r, &it->len)))
            return 0;
        if (it->len == 0)
            return fail(x, TD_YJS_ERR_DECODE, "empty content");
        return 1;
    case YJ_JSON:
        return rd_values(x, it, 1);
    case YJ_ANY:
        return rd_values(x, it, 0);
    case YJ_BINARY:
        return rd(x, yj_rd_bytes(&x->r, &b, &n)) && rd_blob(x, it, b, n, 0);
    case YJ_STRING:
        if (!rd(x, yj_rd_string(&x->r, &s, &n)))
            return 0;
        if (n == 0)
            return fail(x, TD_YJS_ERR_DECODE, "empty string");
        it->len = yj_utf16_len(s, n);
        it->c.u.str.s = dup(x->d, s, n);
        it->c.u.str.bytes = n;
        return it->c.u.str.s ? 1 : fail(x, TD_YJS_ERR_NOMEM, "out of memory");
    case YJ_EMBED:
        if (!rd(x, yj_rd_string(&x->r, &s, &n)))
            return 0;
        if (!json_ok(x, s, n, "invalid JSON embed"))
            return 0;
        return rd_blob(x, it, s, n, 0);
    case YJ_FORMAT: {
        if (!rd(x, yj_rd_string(&x->r, &s, &n)) || !rd(x, yj_rd_string(&x->r, &v, &vn)))
            return 0;
        if (!json_ok(x, v, vn, "invalid JSON format value"))
            return 0;
        char *buf = yj_alloc(x->d, (size_t)n + vn);
        if (!buf)
            return fail(x, TD_YJS_ERR_NOMEM, "out of memory");
        memcpy(buf, s, n);
        memcpy(buf + n, v, vn);
        it->c.u.buf.data = (uint8_t *)buf;
        it->c.u.buf.bytes = n + vn;
        it->c.u.buf.key = n;
        return 1;
    }
    case YJ_TYPE: {
        if (!rd(x, yj_rd_uint(&x->r, &u)))
            return 0;
        if (u > YJ_XML_TEXT)
            return fail(x, TD_YJS_ERR_DECODE, "unknown type ref");
        s = NULL;
        n = 0;
        if ((u == YJ_XML_ELEMENT || u == YJ_XML_HOOK) && !rd(x, yj_rd_string(&x->r, &s, &n)))
            return 0;
        yj_type *t = yj_alloc(x->d, sizeof *t);
        if (!t)
            return fail(x, TD_YJS_ERR_NOMEM, "out of memory");
        memset(t, 0, sizeof *t);
        t->ref = (uint8_t)u;
        it->c.u.type = t;
        if (s) {
            t->name = dup(x->d, s, n);
            t->name_len = n;
            if (!t->name)
                return fail(x, TD_YJS_ERR_NOMEM, "out of memory");
        }
        return 1;
    }
    case YJ_DOC: {
        const uint8_t *start = x->r.p, *a;
        size_t an;
        if (!rd(x, yj_rd_string(&x->r, &s, &n)) ||
            !rd(x, yj_rd_any(&x->r, x->d->max_depth, &a, &an)))
            return 0;
        return rd_blob(x, it, start, (size_t)(x->r.p - start), 0);
    }
    default:
        return fail(x, TD_YJS_ERR_DECODE, "unknown content");
    }
}

/* One struct of a client block at *clock. Returns the item (NULL for a
 * Skip, which only advances the clock) through *out. */
static int rd_struct(dec *x, uint64_t client, uint64_t *clock, yj_item **out)
{
    uint8_t info;
    *out = NULL;
    if (!rd(x, yj_rd_u8(&x->r, &info)))
        return 0;
    unsigned kind = info & 0x1f;
    if (kind == YJ_SKIP) {
        uint64_t len;
        if (!rd(x, yj_rd_uint(&x->r, &len)))
            return 0;
        if (len == 0 || len > YJ_MAX_SAFE - *clock)
            return fail(x, TD_YJS_ERR_DECODE, "bad skip length");
        *clock += len;
        return 1;
    }
    if (kind > YJ_DOC)
        return fail(x, TD_YJS_ERR_DECODE, "unknown struct");
    yj_item *it = yj_alloc(x->d, sizeof *it);
    if (!it)
        return fail(x, TD_YJS_ERR_NOMEM, "out of memory");
    memset(it, 0, sizeof *it);
    *out = it;
    it->id.client = client;
    it->id.clock = *clock;
    it->kind = (uint8_t)kind;
    if (kind == YJ_GC) {
        it->flags = YJ_F_DELETED;
        if (!rd(x, yj_rd_uint(&x->r, &it->len)))
            return 0;
        if (it->len == 0)
            return fail(x, TD_YJS_ERR_DECODE, "empty GC");
    } else {
        if ((info & 0x80) && !rd_id(x, &it->origin))
            return 0;
        if ((info & 0x40) && !rd_id(x, &it->rorigin))
            return 0;
        it->flags = (uint8_t)(((info & 0x80) ? YJ_F_ORIGIN : 0) | ((info & 0x40) ? YJ_F_RORIGIN : 0));
        if (!(info & 0xC0)) {
            uint64_t pinfo;
            const char *s;
            uint32_t n;
            if (!rd(x, yj_rd_uint(&x->r, &pinfo)))
                return 0;
            if (pinfo == 1) {
                if (!rd(x, yj_rd_string(&x->r, &s, &n)))
                    return 0;
                it->p.name.s = dup(x->d, s, n);
                it->p.name.len = n;
                if (!it->p.name.s)
                    return fail(x, TD_YJS_ERR_NOMEM, "out of memory");
                it->pkind = YJ_P_ROOT;
            } else if (pinfo == 0) {
                if (!rd_id(x, &it->p.id))
                    return 0;
                it->pkind = YJ_P_ID;
                if (it->p.id.client == client && it->p.id.clock >= *clock)
                    return fail(x, TD_YJS_ERR_DECODE, "parent after its child");
            } else {
                return fail(x, TD_YJS_ERR_DECODE, "bad parent info");
            }
            if (info & 0x20) {
                if (!rd(x, yj_rd_string(&x->r, &s, &n)))
                    return 0;
                it->sub = dup(x->d, s, n);
                it->sub_len = n;
                if (!it->sub)
                    return fail(x, TD_YJS_ERR_NOMEM, "out of memory");
            }
        }
        if (((it->flags & YJ_F_ORIGIN) && it->origin.client == client && it->origin.clock >= *clock) ||
            ((it->flags & YJ_F_RORIGIN) && it->rorigin.client == client && it->rorigin.clock >= *clock))
            return fail(x, TD_YJS_ERR_DECODE, "origin after its item");
        if (!rd_content(x, it))
            return 0;
    }
    if (it->len > YJ_MAX_SAFE - *clock)
        return fail(x, TD_YJS_ERR_DECODE, "clock out of range");
    *clock += it->len;
    return 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void yj_update_release(yj_doc *d, yj_update *u)
{
    for (size_t i = 0; i < u->nrefs; i++)
        yj_item_free(d, u->refs[i]);
    memset(u, 0, sizeof *u);
}

void yj_update_scratch_trim(yj_doc *d, size_t keep)
{
    if (d->dec_crefs * sizeof *d->dec_refs > keep) {
        yj_free(d, d->dec_refs);
        d->dec_refs = NULL;
        d->dec_crefs = 0;
    }
    if (d->dec_cds * sizeof *d->dec_ds > keep) {
        yj_free(d, d->dec_ds);
        d->dec_ds = NULL;
        d->dec_cds = 0;
    }
    if (d->dec_cseen * sizeof *d->dec_seen > keep) {
        yj_free(d, d->dec_seen);
        d->dec_seen = NULL;
        d->dec_cseen = 0;
    }
}

td_yjs_err yj_update_decode(yj_doc *d, const uint8_t *p, size_t n, yj_update *u,
                            const char **errmsg)
{
    dec x = {d, {p, n ? p + n : p, NULL}, TD_YJS_OK, NULL}; /* NULL + 0 is undefined */
    uint64_t nclients, *seen;
    memset(u, 0, sizeof *u);
    u->refs = d->dec_refs;
    u->ds = d->dec_ds;
    if (!rd(&x, yj_rd_uint(&x.r, &nclients)))
        goto out;
    if (nclients > (uint64_t)(x.r.end - x.r.p) / 3) {
        fail(&x, TD_YJS_ERR_DECODE, "count past the end");
        goto out;
    }
    if (!yj_grow(d, &d->dec_seen, &d->dec_cseen, (size_t)(nclients ? nclients : 1),
                 sizeof *d->dec_seen)) {
        fail(&x, TD_YJS_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (uint64_t i = 0; i < nclients; i++) {
        uint64_t nstructs, client, clock;
        if (!rd(&x, yj_rd_uint(&x.r, &nstructs)) || !rd(&x, yj_rd_uint(&x.r, &client)) ||
            !rd(&x, yj_rd_uint(&x.r, &clock)))
            goto out;
        if (nstructs > (uint64_t)(x.r.end - x.r.p)) {
            fail(&x, TD_YJS_ERR_DECODE, "count past the end");
            goto out;
        }
        d->dec_seen[i] = client;
        if (!yj_grow(d, &d->dec_refs, &d->dec_crefs, u->nrefs + (size_t)nstructs,
                     sizeof *d->dec_refs)) {
            fail(&x, TD_YJS_ERR_NOMEM, "out of memory");
            goto out;
        }
        u->refs = d->dec_refs;
        for (uint64_t j = 0; j < nstructs; j++) {
            yj_item *it;
            int ok = rd_struct(&x, client, &clock, &it);
            if (it) { /* kept even when half read: release frees it */
                u->refs[u->nrefs++] = it;
                if (ok)
                    u->bytes += yj_item_bytes(it);
            }
            if (!ok)
                goto out;
        }
    }
    seen = d->dec_seen;
    qsort(seen, (size_t)nclients, sizeof *seen, cmp_u64);
    for (uint64_t i = 1; i < nclients; i++)
        if (seen[i] == seen[i - 1]) {
            fail(&x, TD_YJS_ERR_DECODE, "a client appears twice");
            goto out;
        }
    /* The delete set. */
    if (!rd(&x, yj_rd_uint(&x.r, &nclients)))
        goto out;
    if (nclients > (uint64_t)(x.r.end - x.r.p) / 2) {
        fail(&x, TD_YJS_ERR_DECODE, "count past the end");
        goto out;
    }
    for (uint64_t i = 0; i < nclients; i++) {
        uint64_t client, nr;
        if (!rd(&x, yj_rd_uint(&x.r, &client)) || !rd(&x, yj_rd_uint(&x.r, &nr)))
            goto out;
        if (nr > (uint64_t)(x.r.end - x.r.p) / 2) {
            fail(&x, TD_YJS_ERR_DECODE, "count past the end");
            goto out;
        }
        if (!yj_grow(d, &d->dec_ds, &d->dec_cds, u->nds + (size_t)nr, sizeof *d->dec_ds)) {
            fail(&x, TD_YJS_ERR_NOMEM, "out of memory");
            goto out;
        }
        u->ds = d->dec_ds;
        for (uint64_t j = 0; j < nr; j++) {
            uint64_t clock, len;
            if (!rd(&x, yj_rd_uint(&x.r, &clock)) || !rd(&x, yj_rd_uint(&x.r, &len)))
                goto out;
            if (len > YJ_MAX_SAFE - clock) {
                fail(&x, TD_YJS_ERR_DECODE, "delete range out of range");
                goto out;
            }
            if (len)
                u->ds[u->nds++] = (yj_range){client, clock, len};
        }
    }
    if (x.r.p != x.r.end)
        fail(&x, TD_YJS_ERR_DECODE, "bytes after the delete set");
out:
    if (x.err != TD_YJS_OK) {
        yj_update_release(d, u);
        if (errmsg)
            *errmsg = x.why;
    }
    return x.err;
}
