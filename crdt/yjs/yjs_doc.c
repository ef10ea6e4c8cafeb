/*
 * yjs_doc.c -- the public lifecycle of a td_yjs_doc: options, creation,
 * release, errors, statistics, and checking an update without a document.
 */
#include "yjs_internal.h"

#include <stdlib.h>

static void *libc_alloc(void *ud, void *ptr, size_t size)
{
    (void)ud;
    if (size == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, size);
}

td_yjs_err td_yjs_doc_new(const td_yjs_options *opts, td_yjs_doc **out)
{
    if (!out)
        return TD_YJS_ERR_ARG;
    *out = NULL;
    td_yjs_options o;
    memset(&o, 0, sizeof o);
    if (opts)
        o = *opts;
    if (!o.alloc)
        o.alloc = libc_alloc;
    /* The depth of a type is a uint16_t; past that no bound is a bound. */
    if (o.max_depth > 10000)
        return TD_YJS_ERR_ARG;
    yj_doc *d = o.alloc(o.alloc_ud, NULL, sizeof *d);
    if (!d)
        return TD_YJS_ERR_NOMEM;
    memset(d, 0, sizeof *d);
    d->alloc = o.alloc;
    d->alloc_ud = o.alloc_ud;
    d->max_pending_structs = o.max_pending_structs ? o.max_pending_structs : 1000000;
    d->max_pending_bytes = o.max_pending_bytes ? o.max_pending_bytes : (size_t)64 << 20;
    d->max_depth = o.max_depth ? o.max_depth : 64;
    d->gc = !o.no_gc;
    *out = d;
    return TD_YJS_OK;
}

void td_yjs_doc_free(td_yjs_doc *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nclients; i++) {
        yj_client *c = &d->clients[i];
        for (size_t k = 0; k < c->n; k++)
            yj_item_free(d, c->s[k]);
        for (size_t k = c->qhead; k < c->qn; k++)
            yj_item_free(d, c->q[k]);
        yj_free(d, c->s);
        yj_free(d, c->q);
    }
    for (size_t i = 0; i < d->nroots; i++)
        yj_type_free(d, d->root_order[i]);
    yj_map_free(d, &d->roots);
    yj_free(d, d->root_order);
    yj_free(d, d->clients);
    yj_free(d, d->cidx);
    yj_free(d, d->pds);
    yj_free(d, d->seen_k);
    yj_free(d, d->seen_v);
    yj_free(d, d->seen_list);
    yj_scratch_trim(d, 0);
    d->alloc(d->alloc_ud, d, 0);
}

const char *td_yjs_doc_error(const td_yjs_doc *d)
{
    return d ? d->err : "no document";
}

void td_yjs_buf_free(td_yjs_doc *d, void *buf)
{
    if (d && buf)
        yj_free(d, buf);
}

void td_yjs_doc_stats(const td_yjs_doc *d, td_yjs_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!d)
        return;
    for (size_t i = 0; i < d->nclients; i++)
        out->clients += d->clients[i].n > 0;
    out->structs = d->structs;
    out->pending_structs = d->pending_structs;
    out->pending_deletes = d->npds;
    out->pending_bytes = d->pending_bytes + d->npds * sizeof(yj_range);
    out->bytes = d->bytes + sizeof *d;
}

td_yjs_err td_yjs_update_check(const uint8_t *update, size_t len, const char **errmsg)
{
    if (errmsg)
        *errmsg = "";
    if (!update && len)
        return TD_YJS_ERR_ARG;
    td_yjs_doc *d;
    td_yjs_err e = td_yjs_doc_new(NULL, &d);
    if (e != TD_YJS_OK)
        return e;
    yj_update u;
    const char *why = NULL;
    e = yj_update_decode(d, update, len, &u, &why);
    if (e == TD_YJS_OK)
        yj_update_release(d, &u);
    else if (errmsg)
        *errmsg = why ? why : td_yjs_strerror(e);
    td_yjs_doc_free(d);
    return e;
}
