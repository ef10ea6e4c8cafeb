/*
 * trace_replay.c -- sequential and concurrent replays (see trace_replay.h).
 *
 * Concurrent replay. Before agent a makes txn i, its replica must hold
 * exactly the causal history of i (the parents, transitively). A replica's
 * set of txns is always downward closed -- it only ever gains whole
 * histories -- so the txns it lacks are found by a walk from i's parents
 * that stops at every txn it already has; they are applied in index order,
 * which is a causal order because parents precede their children. The walk
 * also proves the trace is well formed: it must reach the agent's previous
 * txn, or the replica would hold something outside i's history.
 *
 * Every walk visits only txns that are new to the replica plus their
 * boundary, so the whole replay costs O(txns x agents) bookkeeping on top of
 * the CRDT work; `mark` is stamped with i + 1 instead of being cleared.
 */
#include "trace_replay.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keeps the requested size in front of each block; the union keeps the
 * block aligned as malloc would. */
typedef union alloc_hdr {
    max_align_t align;
    size_t size;
} alloc_hdr;

void *tt_counting_alloc(void *ud, void *ptr, size_t size)
{
    tt_alloc_stats *s = ud;
    alloc_hdr *h = ptr ? (alloc_hdr *)ptr - 1 : NULL;
    size_t old = h ? h->size : 0;
    if (size == 0) {
        free(h);
        s->cur -= old;
        return NULL;
    }
    if (size > SIZE_MAX - sizeof(alloc_hdr))
        return NULL;
    alloc_hdr *nh = realloc(h, sizeof(alloc_hdr) + size);
    if (!nh)
        return NULL;
    nh->size = size;
    s->cur = s->cur - old + size;
    if (s->cur > s->peak)
        s->peak = s->cur;
    return nh + 1;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int op_fail(td_crdt_doc *doc, td_crdt_err e, const char *what,
                   size_t idx, const tt_patch *p, char *err, size_t errlen)
{
    return fail(err, errlen,
                "patch %zu [pos %u, del %u, %u code points inserted]: %s "
                "failed: %s (%s)", idx, p->pos, p->del, p->ins_cp, what,
                td_crdt_strerror(e), td_crdt_doc_error(doc));
}

static int apply_patch(td_crdt_doc *doc, td_crdt_obj text, const tt_trace *t,
                       size_t i, char *err, size_t errlen)
{
    const tt_patch *p = &t->patches[i];
    td_crdt_err e;
    if (p->del && (e = td_crdt_text_delete(doc, text, p->pos, p->del)) != TD_CRDT_OK)
        return op_fail(doc, e, "td_crdt_text_delete", i, p, err, errlen);
    if (p->ins_len &&
        (e = td_crdt_text_insert(doc, text, p->pos, t->text + p->ins_off,
                                 p->ins_len)) != TD_CRDT_OK)
        return op_fail(doc, e, "td_crdt_text_insert", i, p, err, errlen);
    return 0;
}

static int insert_start(const tt_trace *t, tt_replay *r, char *err, size_t errlen)
{
    if (t->start_len == 0)
        return 0;
    td_crdt_err e = td_crdt_text_insert(r->docs[0], r->texts[0], 0, t->start,
                                        t->start_len);
    if (e != TD_CRDT_OK)
        return fail(err, errlen, "inserting startContent failed: %s (%s)",
                    td_crdt_strerror(e), td_crdt_doc_error(r->docs[0]));
    return 0;
}

static int commit_into(td_crdt_doc *doc, uint8_t **out, size_t *len,
                       const char *what, size_t idx, char *err, size_t errlen)
{
    td_crdt_err e = td_crdt_commit(doc, out, len);
    if (e != TD_CRDT_OK)
        return fail(err, errlen, "td_crdt_commit after %s %zu failed: %s (%s)",
                    what, idx, td_crdt_strerror(e), td_crdt_doc_error(doc));
    return 0;
}

static int seq_replay(const tt_trace *t, tt_replay *r, int commit_each_txn,
                      char *err, size_t errlen)
{
    td_crdt_doc *doc = r->docs[0];
    td_crdt_obj text = r->texts[0];
    if (insert_start(t, r, err, errlen) != 0)
        return -1;
    if (!commit_each_txn) {
        for (size_t i = 0; i < t->npatches; i++)
            if (apply_patch(doc, text, t, i, err, errlen) != 0)
                return -1;
        return 0;
    }
    for (size_t ti = 0; ti < t->ntxns; ti++) {
        const tt_txn *tx = &t->txns[ti];
        for (size_t i = tx->first; i < (size_t)tx->first + tx->count; i++)
            if (apply_patch(doc, text, t, i, err, errlen) != 0)
                return -1;
        uint8_t *b = NULL;
        size_t blen = 0;
        if (commit_into(doc, &b, &blen, "txn", ti, err, errlen) != 0)
            return -1;
        td_crdt_buf_free(doc, b);
    }
    return 0;
}

/* ---- concurrent --------------------------------------------------------- */

#define HAVE_BIT(r, a, k) ((size_t)(a) * (r)->ntxns + (k))

static int have(const tt_replay *r, uint32_t a, size_t k)
{
    size_t b = HAVE_BIT(r, a, k);
    return (r->have[b >> 3] >> (b & 7)) & 1;
}

static void set_have(tt_replay *r, uint32_t a, size_t k)
{
    size_t b = HAVE_BIT(r, a, k);
    r->have[b >> 3] |= (uint8_t)(1u << (b & 7));
}

static int conc_alloc(const tt_trace *t, tt_replay *r, char *err, size_t errlen)
{
    size_t n = t->ntxns;
    r->ntxns = n;
    if (n != 0 && r->ndocs > ((size_t)8 << 30) / n)
        return fail(err, errlen, "too many agents x txns (%u x %zu) to track",
                    r->ndocs, n);
    r->batches = calloc(n ? n : 1, sizeof *r->batches);
    r->batch_len = calloc(n ? n : 1, sizeof *r->batch_len);
    r->batch_owner = calloc(n ? n : 1, sizeof *r->batch_owner);
    r->have = calloc(((size_t)r->ndocs * n + 7) / 8 + 1, 1);
    r->mark = calloc(n ? n : 1, sizeof *r->mark);
    r->stack = malloc((n ? n : 1) * sizeof *r->stack);
    r->missing = malloc((n ? n : 1) * sizeof *r->missing);
    r->last = malloc(r->ndocs * sizeof *r->last);
    if (!r->batches || !r->batch_len || !r->batch_owner || !r->have ||
        !r->mark || !r->stack || !r->missing || !r->last)
        return fail(err, errlen, "out of memory");
    for (uint32_t a = 0; a < r->ndocs; a++)
        r->last[a] = -1;
    return 0;
}

static int apply_batch(tt_replay *r, uint32_t a, const uint8_t *b, size_t len,
                       const char *what, size_t idx, char *err, size_t errlen)
{
    td_crdt_apply_info info;
    td_crdt_err e = td_crdt_apply(r->docs[a], b, len, &info);
    if (e != TD_CRDT_OK)
        return fail(err, errlen, "replica %u: td_crdt_apply of %s %zu's batch "
                    "(%zu bytes) failed: %s (%s)", a, what, idx, len,
                    td_crdt_strerror(e), td_crdt_doc_error(r->docs[a]));
    if (info.parked)
        return fail(err, errlen, "replica %u: %s %zu's batch was parked as if "
                    "dependencies were missing, though its whole causal "
                    "history had been applied", a, what, idx);
    return 0;
}

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

/* Brings replica a to exactly the causal history of txn i. */
static int merge_history(const tt_trace *t, tt_replay *r, uint32_t a, size_t i,
                         char *err, size_t errlen)
{
    uint32_t stamp = (uint32_t)i + 1;
    size_t sp = 0, nm = 0;
    int hit = r->last[a] < 0;
    const tt_txn *tx = &t->txns[i];
    for (uint32_t j = 0; j < tx->nparents; j++) {
        uint32_t p = t->parents[tx->parents + j];
        if (r->mark[p] != stamp) {
            r->mark[p] = stamp;
            r->stack[sp++] = p;
        }
    }
    while (sp > 0) {
        uint32_t k = r->stack[--sp];
        if (have(r, a, k)) {
            hit |= (int64_t)k == r->last[a];
            continue;
        }
        r->missing[nm++] = k;
        const tt_txn *kx = &t->txns[k];
        for (uint32_t j = 0; j < kx->nparents; j++) {
            uint32_t p = t->parents[kx->parents + j];
            if (r->mark[p] != stamp) {
                r->mark[p] = stamp;
                r->stack[sp++] = p;
            }
        }
    }
    if (!hit)
        return fail(err, errlen, "txns[%zu] (agent %u) does not descend from "
                    "that agent's previous txn %lld: the trace is malformed",
                    i, a, (long long)r->last[a]);
    qsort(r->missing, nm, sizeof *r->missing, cmp_u32);
    for (size_t m = 0; m < nm; m++) {
        uint32_t k = r->missing[m];
        if (r->batches[k] &&
            apply_batch(r, a, r->batches[k], r->batch_len[k], "txn", k, err,
                        errlen) != 0)
            return -1;
        set_have(r, a, k);
    }
    return 0;
}

/* The txn's own patches, checked against the replica's current length. */
static int local_txn(const tt_trace *t, tt_replay *r, uint32_t a, size_t i,
                     char *err, size_t errlen)
{
    const tt_txn *tx = &t->txns[i];
    td_crdt_doc *doc = r->docs[a];
    td_crdt_obj text = r->texts[a];
    for (uint32_t j = 0; j < tx->count; j++) {
        const tt_patch *p = &t->patches[tx->first + j];
        size_t len = td_crdt_text_length(doc, text);
        if (p->pos > len || p->del > len - p->pos)
            return fail(err, errlen, "txns[%zu].patches[%u]: [pos %u, del %u] "
                        "out of range: agent %u's replica has %zu code points "
                        "at this txn's parents", i, j, p->pos, p->del, a, len);
        if (apply_patch(doc, text, t, tx->first + j, err, errlen) != 0)
            return -1;
    }
    r->batch_owner[i] = a;
    if (commit_into(doc, &r->batches[i], &r->batch_len[i], "txn", i, err,
                    errlen) != 0)
        return -1;
    set_have(r, a, i);
    r->last[a] = (int64_t)i;
    return 0;
}

static int conc_replay(const tt_trace *t, tt_replay *r, char *err, size_t errlen)
{
    if (conc_alloc(t, r, err, errlen) != 0)
        return -1;
    /* startContent is a common base every replica receives first. */
    if (insert_start(t, r, err, errlen) != 0 ||
        commit_into(r->docs[0], &r->start_batch, &r->start_len, "startContent",
                    0, err, errlen) != 0)
        return -1;
    for (uint32_t a = 1; a < r->ndocs && r->start_batch; a++)
        if (apply_batch(r, a, r->start_batch, r->start_len, "startContent", 0,
                        err, errlen) != 0)
            return -1;
    for (size_t i = 0; i < t->ntxns; i++) {
        uint32_t a = t->txns[i].agent;
        if (merge_history(t, r, a, i, err, errlen) != 0 ||
            local_txn(t, r, a, i, err, errlen) != 0)
            return -1;
    }
    /* Finally everything everywhere. */
    for (uint32_t a = 0; a < r->ndocs; a++)
        for (size_t k = 0; k < t->ntxns; k++) {
            if (have(r, a, k))
                continue;
            if (r->batches[k] &&
                apply_batch(r, a, r->batches[k], r->batch_len[k], "txn", k, err,
                            errlen) != 0)
                return -1;
            set_have(r, a, k);
        }
    return 0;
}

int tt_replay_run(const tt_trace *t, const td_crdt_options *opts,
                  int commit_each_txn, tt_replay *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->ndocs = t->concurrent ? t->num_agents : 1;
    r->docs = calloc(r->ndocs, sizeof *r->docs);
    r->texts = calloc(r->ndocs, sizeof *r->texts);
    if (!r->docs || !r->texts)
        return fail(err, errlen, "out of memory");
    for (uint32_t a = 0; a < r->ndocs; a++) {
        td_crdt_options o = *opts;
        o.agent = opts->agent + a;
        td_crdt_err e = td_crdt_doc_new(&o, &r->docs[a]);
        if (e != TD_CRDT_OK)
            return fail(err, errlen, "td_crdt_doc_new failed: %s",
                        td_crdt_strerror(e));
        e = td_crdt_root(r->docs[a], TD_CRDT_TEXT, "text", 4, &r->texts[a]);
        if (e != TD_CRDT_OK)
            return fail(err, errlen, "td_crdt_root(text, \"text\") failed: %s (%s)",
                        td_crdt_strerror(e), td_crdt_doc_error(r->docs[a]));
    }
    return t->concurrent ? conc_replay(t, r, err, errlen)
                         : seq_replay(t, r, commit_each_txn, err, errlen);
}

void tt_replay_free(tt_replay *r)
{
    if (r->batches)
        for (size_t k = 0; k < r->ntxns; k++)
            if (r->batches[k])
                td_crdt_buf_free(r->docs[r->batch_owner[k]], r->batches[k]);
    if (r->start_batch)
        td_crdt_buf_free(r->docs[0], r->start_batch);
    if (r->docs)
        for (uint32_t a = 0; a < r->ndocs; a++)
            if (r->docs[a])
                td_crdt_doc_free(r->docs[a]);
    free(r->docs);
    free(r->texts);
    free(r->batches);
    free(r->batch_len);
    free(r->batch_owner);
    free(r->have);
    free(r->mark);
    free(r->stack);
    free(r->missing);
    free(r->last);
    memset(r, 0, sizeof *r);
}
