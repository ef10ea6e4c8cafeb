/*
 * json.c -- the document's content as JSON, for export, HTTP and tests.
 *
 * Deterministic: roots in byte order of their names (a name shared by roots
 * of different kinds gets the suffix "@text", "@list" or "@map" on each),
 * map keys in byte order, numbers in the shortest form that reads back as
 * the same double. Roots no op has touched are left out, as in snapshots.
 */
#include "crdt_internal.h"

#include <stdio.h>
#include <stdlib.h>

static void put_str(td_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    td_crdt_wb_u8(b, '"');
    if (n == 0) { /* s may be NULL (an empty text has no buffer) */
        td_crdt_wb_u8(b, '"');
        return;
    }
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        td_crdt_wb_bytes(b, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
            td_crdt_wb_bytes(b, esc, 2);
        } else if (c == '\n') {
            td_crdt_wb_bytes(b, "\\n", 2);
        } else if (c == '\t') {
            td_crdt_wb_bytes(b, "\\t", 2);
        } else if (c == '\r') {
            td_crdt_wb_bytes(b, "\\r", 2);
        } else {
            td_crdt_wb_bytes(b, esc, 6);
        }
    }
    td_crdt_wb_bytes(b, s + run, n - run);
    td_crdt_wb_u8(b, '"');
}

static void put_double(td_buf *b, double f)
{
    char tmp[40];
    if (f != f || f - f != 0) { /* NaN or infinite: no JSON form */
        td_crdt_wb_bytes(b, "null", 4);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, f);
        if (strtod(tmp, NULL) == f)
            break;
    }
    td_crdt_wb_bytes(b, tmp, strlen(tmp));
}

static void put_obj(td_crdt_doc *d, td_buf *b, uint32_t h);

static void put_val(td_crdt_doc *d, td_buf *b, const td_val *v)
{
    char tmp[32];
    switch (v->tag) {
    case TD_VT_NULL: case TD_VT_DELETED: td_crdt_wb_bytes(b, "null", 4); break;
    case TD_VT_FALSE: td_crdt_wb_bytes(b, "false", 5); break;
    case TD_VT_TRUE: td_crdt_wb_bytes(b, "true", 4); break;
    case TD_VT_INT:
        snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i);
        td_crdt_wb_bytes(b, tmp, strlen(tmp));
        break;
    case TD_VT_FLOAT: put_double(b, v->u.f); break;
    case TD_VT_STR: put_str(b, v->u.s, v->len); break;
    default: put_obj(d, b, v->u.obj); break;
    }
}

static void put_text(td_crdt_doc *d, td_buf *b, const td_seq *q)
{
    if (q->lazy) { /* lazily loaded: the snapshot's UTF-8 */
        put_str(b, q->lazy_bytes ? (const char *)d->lazy.text + q->lazy_off : NULL,
                q->lazy_bytes);
        return;
    }
    td_buf t;
    td_crdt_wb_init(&t, d);
    for (td_leaf *l = q->first; l; l = l->next)
        for (uint32_t i = 0; i < l->n; i++)
            if (!l->r[i].deleted)
                td_crdt_wb_utf8(&t, q->text + l->r[i].content, l->r[i].len);
    if (t.oom)
        b->oom = 1;
    put_str(b, (const char *)t.p, t.len);
    td_crdt_wb_free(&t);
}

static void put_obj(td_crdt_doc *d, td_buf *b, uint32_t h)
{
    const td_obj *o = d->objs[h - 1];
    if (o->kind == TD_CRDT_TEXT) {
        put_text(d, b, &o->u.seq);
        return;
    }
    if (o->kind == TD_CRDT_LIST) {
        const td_seq *q = &o->u.seq;
        int first = 1;
        td_crdt_wb_u8(b, '[');
        for (td_leaf *l = q->first; l; l = l->next)
            for (uint32_t i = 0; i < l->n; i++)
                for (uint32_t k = 0; !l->r[i].deleted && k < l->r[i].len; k++) {
                    if (!first)
                        td_crdt_wb_u8(b, ',');
                    first = 0;
                    put_val(d, b, &q->vals[l->r[i].content + k]);
                }
        td_crdt_wb_u8(b, ']');
        return;
    }
    const td_map *m = &o->u.map;
    int first = 1;
    td_crdt_wb_u8(b, '{');
    for (uint32_t i = 0; i < m->n; i++) {
        if (m->e[i].val.tag == TD_VT_DELETED)
            continue;
        if (!first)
            td_crdt_wb_u8(b, ',');
        first = 0;
        put_str(b, m->e[i].key, m->e[i].klen);
        td_crdt_wb_u8(b, ':');
        put_val(d, b, &m->e[i].val);
    }
    td_crdt_wb_u8(b, '}');
}

/* Roots in byte order of their keys as printed: by name, and for one name
 * by suffix ("@list" < "@map" < "@text"). A name that is a prefix of
 * another sorts first either way, since '@' only follows a shared name. */
static int name_cmp(const td_obj *a, const td_obj *b)
{
    static const uint8_t suffix_rank[] = {0, 3, 1, 2}; /* by kind: text, list, map */
    uint32_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = memcmp(a->name, b->name, n);
    if (c)
        return c;
    if (a->name_len != b->name_len)
        return a->name_len < b->name_len ? -1 : 1;
    return suffix_rank[a->kind] < suffix_rank[b->kind] ? -1 : suffix_rank[a->kind] > suffix_rank[b->kind];
}

static int touched(const td_obj *o)
{
    if (o->kind == TD_CRDT_MAP)
        return o->u.map.n > 0;
    return o->u.seq.lazy ? o->u.seq.lazy_runs > 0 : o->u.seq.total > 0;
}

td_crdt_err td_crdt_to_json(td_crdt_doc *d, char **out, size_t *len)
{
    static const char *const suffix[] = {"", "@text", "@list", "@map"};
    if (!out)
        return td_crdt_fail(d, TD_CRDT_ERR_ARG, "to_json needs out");
    uint32_t *order = td_crdt_mem(d, NULL, (d->nroots + 1) * sizeof *order);
    if (!order)
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    uint32_t n = 0;
    for (uint32_t i = 0; i < d->nroots; i++) {
        const td_obj *o = d->objs[d->roots[i] - 1];
        if (!touched(o))
            continue;
        uint32_t j = n++;
        while (j > 0 && name_cmp(d->objs[order[j - 1] - 1], o) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = d->roots[i];
    }
    td_buf b;
    td_crdt_wb_init(&b, d);
    td_crdt_wb_u8(&b, '{');
    for (uint32_t i = 0; i < n; i++) {
        const td_obj *o = d->objs[order[i] - 1];
        const td_obj *p = i ? d->objs[order[i - 1] - 1] : NULL;
        const td_obj *q = i + 1 < n ? d->objs[order[i + 1] - 1] : NULL;
        int shared = (p && p->name_len == o->name_len && !memcmp(p->name, o->name, o->name_len)) ||
                     (q && q->name_len == o->name_len && !memcmp(q->name, o->name, o->name_len));
        if (i)
            td_crdt_wb_u8(&b, ',');
        if (shared) {
            td_buf tmp;
            td_crdt_wb_init(&tmp, d);
            td_crdt_wb_bytes(&tmp, o->name, o->name_len);
            td_crdt_wb_bytes(&tmp, suffix[o->kind], strlen(suffix[o->kind]));
            put_str(&b, (const char *)tmp.p, tmp.len);
            if (tmp.oom)
                b.oom = 1;
            td_crdt_wb_free(&tmp);
        } else {
            put_str(&b, o->name, o->name_len);
        }
        td_crdt_wb_u8(&b, ':');
        put_obj(d, &b, order[i]);
    }
    td_crdt_wb_u8(&b, '}');
    td_crdt_wb_u8(&b, 0);
    td_crdt_memfree(d, order);
    if (b.oom) {
        td_crdt_wb_free(&b);
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    }
    *out = (char *)b.p;
    if (len)
        *len = b.len - 1;
    return TD_CRDT_OK;
}
