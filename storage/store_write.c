/*
 * store_write.c -- appends (asynchronous, group commit) and deletes: the
 * writes that create documents, grow their logs and remove them.
 *
 * td_store_append() builds the log value (format byte, op count, batch,
 * checksum) on the caller's thread, queues the request and returns. The
 * store thread takes everything waiting -- one request at a time in the
 * `always` mode, where every append gets its own synced write -- and turns
 * it into one RocksDB WriteBatch: a log entry per request, keyed by the
 * document's next server sequence, plus one metadata record per document
 * touched. One write, one sync (unless the mode is `off`), then every
 * request of the group is moved to the completion queue and the `wake` hook
 * tells the owner of the event loop to call td_store_poll().
 *
 * Sequence numbers and sizes are computed against a cached copy of each
 * document's metadata. They are staged in `pend` and become `cur` only
 * after the write returned; a failed write discards the staging, so the
 * next append to the document gets the sequence the failed one would have
 * had and nothing in memory claims more than what is on disk.
 *
 * This file is the top of the write side: it reads through store_read.c,
 * keeps the metadata cache (store_cache.c) and offers documents to the
 * compaction thread (store_compact.c); none of those calls back into it.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_internal.h"
#include "store_testing.h"

/* Bytes of log values one write may carry; the rest waits for the next. */
#define GROUP_MAX_BYTES ((size_t)32 << 20)

/* ---- filling the metadata cache ------------------------------------------ */

/* The cached entry for doc, loading it from the meta family on a miss. A
 * document without metadata starts empty -- unless log entries exist for
 * it, which means its metadata was lost: appending would overwrite them. */
static td_store_err ent_get(td_store *st, const char *doc, size_t len,
                            td_store_ent **out, td_store_error *err)
{
    td_store_meta m;
    char *raw = NULL;
    td_store_err code;

    *out = td_store_cache_find(&st->cache, doc, len);
    if (*out)
        return TD_STORE_OK;
    code = td_store_meta_get(st, NULL, doc, len, &m, &raw, err);
    if (code == TD_STORE_ERR_NOT_FOUND) {
        int has_log = td_store_log_exists(st, NULL, doc, len, err);
        char shown[TD_STORE_FMT_ID_CAP];
        if (has_log < 0)
            return err ? err->code : TD_STORE_ERR_IO;
        if (has_log)
            return td_store_seterr(err, TD_STORE_ERR_CORRUPT,
                                   "document '%s' has log entries but no "
                                   "metadata; refusing to append",
                                   td_store_fmt_id(shown, sizeof shown, doc, len));
        memset(&m, 0, sizeof m);
    } else if (code != TD_STORE_OK) {
        return code;
    }
    *out = td_store_cache_add(&st->cache, doc, len, &m);
    rocksdb_free(raw);
    if (*out == NULL)
        return td_store_err_nomem(err);
    return TD_STORE_OK;
}

/* ---- the store thread --------------------------------------------------- */

static void req_fail(td_store_req *r, td_store_err code, const char *msg)
{
    r->code = code;
    r->seq = 0;
    r->ent = NULL;
    free(r->msg);
    r->msg = strdup(msg);
}

static td_store_req *req_next(const td_store_req *r)
{
    return (td_store_req *)r->link.next;
}

/* Stages one request into the group: assigns its sequence and adds its log
 * entry to wb. */
static void stage(td_store *st, rocksdb_writebatch_t *wb, td_store_req *r,
                  td_store_ent **touched)
{
    td_store_error e = {0};
    td_store_ent *ent;
    uint8_t key[TD_STORE_LOG_KEY_MAX];
    size_t klen;

    if (ent_get(st, TD_REQ_DOC(r), r->doc_len, &ent, &e) != TD_STORE_OK) {
        req_fail(r, e.code, e.msg);
        return;
    }
    if (ent->pend_gen != st->gen) {
        ent->pend = ent->cur;
        ent->pend_gen = st->gen;
        ent->pend_next = *touched;
        *touched = ent;
    }
    if (ent->pend.last_seq >= TD_STORE_SEQ_MAX) {
        req_fail(r, TD_STORE_ERR_ARG, "document sequence space exhausted");
        return;
    }
    r->seq = ++ent->pend.last_seq;
    r->ent = ent;
    ent->pend.log_ops += r->nops;
    ent->pend.log_bytes += r->val_len;
    if (r->vv_len) {
        ent->pend.vv = TD_REQ_VV(r);
        ent->pend.vv_len = r->vv_len;
    }
    klen = td_store_log_key(key, TD_REQ_DOC(r), r->doc_len, r->seq);
    rocksdb_writebatch_put_cf(wb, st->cf[TD_CF_LOG], (const char *)key, klen,
                              (const char *)TD_REQ_VAL(r), r->val_len);
}

/* Adds each touched document's metadata to wb and copies new version
 * vectors ahead of the write, so that committing cannot fail. */
static int stage_meta(td_store *st, rocksdb_writebatch_t *wb,
                      td_store_ent *touched)
{
    for (td_store_ent *e = touched; e; e = e->pend_next) {
        size_t len;
        uint8_t *val = td_store_meta_encode(&e->pend, e->id, e->id_len, &len);
        if (val == NULL)
            return -1;
        rocksdb_writebatch_put_cf(wb, st->cf[TD_CF_META], e->id, e->id_len,
                                  (const char *)val, len);
        free(val);
        if (e->pend.vv != e->cur.vv) {
            e->pend_vv_copy = malloc(e->pend.vv_len);
            if (e->pend_vv_copy == NULL)
                return -1;
            memcpy(e->pend_vv_copy, e->pend.vv, e->pend.vv_len);
        }
    }
    return 0;
}

static void commit_meta(td_store *st, td_store_ent *touched)
{
    for (td_store_ent *e = touched; e; e = e->pend_next) {
        const uint8_t *old = e->cur.vv;
        if (e->pend_vv_copy) {
            e->pend.vv = e->pend_vv_copy;
            e->pend_vv_copy = NULL;
            free((void *)old);
        }
        e->cur = e->pend;
        td_store_compactor_offer(st, e);
    }
}

static void discard_meta(td_store_ent *touched)
{
    for (td_store_ent *e = touched; e; e = e->pend_next) {
        free(e->pend_vv_copy);
        e->pend_vv_copy = NULL;
    }
}

static void write_group(td_store *st, td_store_req *group)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    td_store_ent *touched = NULL;
    char *rerr = NULL;
    const char *fail = NULL;
    td_store_err fail_code = TD_STORE_OK;
    size_t nput = 0;

    pthread_mutex_lock(&st->write_mu);
    st->gen++;
    for (td_store_req *r = group; r; r = req_next(r))
        stage(st, wb, r, &touched);
    for (td_store_req *r = group; r; r = req_next(r))
        nput += r->code == TD_STORE_OK;
    if (nput > 0) {
        if (stage_meta(st, wb, touched) != 0) {
            fail_code = TD_STORE_ERR_NOMEM;
            fail = "out of memory";
        } else if (st->fail_writes > 0) {
            st->fail_writes--;
            fail_code = TD_STORE_ERR_IO;
            fail = "injected write failure";
        } else {
            rocksdb_write(st->db, st->wo_append, wb, &rerr);
            atomic_fetch_add(&st->n_writes, 1);
            if (rerr) {
                fail_code = TD_STORE_ERR_IO;
                fail = rerr;
            }
        }
    }
    if (fail == NULL) {
        commit_meta(st, touched);
        for (td_store_req *r = group; r; r = req_next(r))
            if (r->code == TD_STORE_OK)
                r->compact_due = td_store_compact_due(st, &r->ent->cur);
    } else {
        char msg[600];
        snprintf(msg, sizeof msg, "writing the batch failed: %s", fail);
        discard_meta(touched);
        for (td_store_req *r = group; r; r = req_next(r))
            if (r->code == TD_STORE_OK)
                req_fail(r, fail_code, msg);
    }
    pthread_mutex_unlock(&st->write_mu);
    for (td_store_req *r = group; r; r = req_next(r)) {
        r->ent = NULL;
        atomic_fetch_add(r->code == TD_STORE_OK ? &st->n_appends_ok
                                                : &st->n_appends_failed,
                         1);
    }
    rocksdb_free(rerr);
    rocksdb_writebatch_destroy(wb);
}

static void deliver(td_store *st, td_store_req *group)
{
    td_store_link *last = &group->link;
    while (last->next)
        last = last->next;
    pthread_mutex_lock(&st->done_mu);
    td_store_fifo_put(&st->done, &group->link, last);
    pthread_cond_broadcast(&st->done_cond);
    pthread_mutex_unlock(&st->done_mu);
    if (st->o.wake)
        st->o.wake(st->o.wake_ud);
}

static void *writer_main(void *arg)
{
    td_store *st = arg;
    /* `always` promises one synced write per append: no grouping. */
    size_t max = st->o.durability == TD_STORE_SYNC_ALWAYS ? 0 : GROUP_MAX_BYTES;
    td_store_link *group;

    while ((group = td_store_queue_take(&st->wq, max)) != NULL) {
        write_group(st, (td_store_req *)group);
        deliver(st, (td_store_req *)group);
    }
    return NULL;
}

int td_store_writer_start(td_store *st)
{
    return td_store_queue_start(&st->wq, writer_main, st);
}

void td_store_writer_stop(td_store *st)
{
    /* The queue drains: nothing is left in it once the thread has ended. */
    (void)td_store_queue_stop(&st->wq);
}

/* ---- the caller's side -------------------------------------------------- */

td_store_err td_store_append(td_store *st, const td_store_batch *b,
                             td_store_append_cb cb, void *ud,
                             td_store_error *err)
{
    td_store_req *r;
    size_t vlen;

    if (b == NULL || !td_store_doc_id_valid(b->doc, b->doc_len))
        return td_store_err_bad_id(err);
    if (b->ops == NULL || b->ops_len == 0 || b->ops_len > TD_STORE_MAX_BATCH)
        return td_store_seterr(err, TD_STORE_ERR_ARG,
                               "batch must be 1..%zu bytes", TD_STORE_MAX_BATCH);
    if (b->vv_len && b->vv == NULL)
        return td_store_seterr(err, TD_STORE_ERR_ARG, "vv_len without vv");
    if (st->o.read_only)
        return td_store_err_read_only(st, err);
    vlen = td_store_log_value_size(b->ops_len, b->nops);
    r = malloc(sizeof *r + b->doc_len + vlen + b->vv_len);
    if (r == NULL)
        return td_store_err_nomem(err);
    memset(r, 0, sizeof *r);
    r->link.size = vlen;
    r->cb = cb;
    r->ud = ud;
    r->nops = b->nops;
    r->doc_len = b->doc_len;
    r->val_len = vlen;
    r->vv_len = b->vv_len;
    memcpy(r->data, b->doc, b->doc_len);
    td_store_log_value_encode(r->data + b->doc_len, vlen, b->doc, b->doc_len,
                              b->ops, b->ops_len, b->nops);
    if (b->vv_len)
        memcpy(TD_REQ_VV(r), b->vv, b->vv_len);

    if (td_store_queue_put(&st->wq, &r->link, &st->outstanding) != 0) {
        free(r);
        return td_store_seterr(err, TD_STORE_ERR_CLOSED, "store is closing");
    }
    return TD_STORE_OK;
}

size_t td_store_outstanding(td_store *st)
{
    return atomic_load(&st->outstanding);
}

static void wait_done(td_store *st, int timeout_ms)
{
    if (timeout_ms < 0) {
        while (st->done.head == NULL && atomic_load(&st->outstanding) > 0)
            pthread_cond_wait(&st->done_cond, &st->done_mu);
        return;
    }
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (st->done.head == NULL && atomic_load(&st->outstanding) > 0)
            if (pthread_cond_timedwait(&st->done_cond, &st->done_mu, &ts) == ETIMEDOUT)
                break;
    }
}

size_t td_store_poll(td_store *st, int timeout_ms)
{
    td_store_req *list, *next;
    size_t n = 0;

    pthread_mutex_lock(&st->done_mu);
    if (st->done.head == NULL && timeout_ms != 0)
        wait_done(st, timeout_ms);
    list = (td_store_req *)td_store_fifo_take_all(&st->done);
    pthread_mutex_unlock(&st->done_mu);

    for (td_store_req *r = list; r; r = next) {
        td_store_ack ack;
        next = req_next(r);
        ack.doc = TD_REQ_DOC(r);
        ack.doc_len = r->doc_len;
        ack.seq = r->seq;
        ack.code = r->code;
        ack.msg = r->msg ? r->msg : "";
        ack.compact_due = r->compact_due;
        if (r->cb)
            r->cb(r->ud, &ack);
        free(r->msg);
        free(r);
        atomic_fetch_sub(&st->outstanding, 1);
        n++;
    }
    return n;
}

typedef struct wait_state {
    int done;
    uint64_t seq;
    td_store_err code;
    char msg[512];
} wait_state;

static void wait_cb(void *ud, const td_store_ack *ack)
{
    wait_state *w = ud;
    w->done = 1;
    w->seq = ack->seq;
    w->code = ack->code;
    snprintf(w->msg, sizeof w->msg, "%s", ack->msg);
}

td_store_err td_store_append_wait(td_store *st, const td_store_batch *b,
                                  uint64_t *seq, td_store_error *err)
{
    wait_state w = {0};
    td_store_err code = td_store_append(st, b, wait_cb, &w, err);
    if (code != TD_STORE_OK)
        return code;
    while (!w.done)
        td_store_poll(st, -1);
    if (seq)
        *seq = w.seq;
    if (w.code != TD_STORE_OK)
        return td_store_seterr(err, w.code, "%s", w.msg);
    return TD_STORE_OK;
}

/* ---- deleting ----------------------------------------------------------- */

td_store_err td_store_delete(td_store *st, const char *doc, size_t doc_len,
                             td_store_error *err)
{
    uint8_t lo[TD_STORE_LOG_KEY_MAX], hi[TD_STORE_LOG_KEY_MAX];
    size_t lo_len, hi_len;
    rocksdb_writebatch_t *wb;
    char *rerr = NULL, *raw = NULL;
    td_store_meta m;
    td_store_err code;

    if (!td_store_doc_id_valid(doc, doc_len))
        return td_store_err_bad_id(err);
    if (st->o.read_only)
        return td_store_err_read_only(st, err);
    pthread_mutex_lock(&st->write_mu);
    /* Damaged metadata must not keep a document from being deleted. */
    code = td_store_meta_get_checked(st, NULL, doc, doc_len, &m, &raw, err);
    rocksdb_free(raw);
    if (code == TD_STORE_ERR_NOT_FOUND || code == TD_STORE_ERR_IO) {
        pthread_mutex_unlock(&st->write_mu);
        return code;
    }
    lo_len = td_store_log_key(lo, doc, doc_len, 0);
    hi_len = td_store_log_key(hi, doc, doc_len, UINT64_MAX);
    wb = rocksdb_writebatch_create();
    rocksdb_writebatch_delete_cf(wb, st->cf[TD_CF_META], doc, doc_len);
    rocksdb_writebatch_delete_cf(wb, st->cf[TD_CF_SNAP], doc, doc_len);
    rocksdb_writebatch_delete_range_cf(wb, st->cf[TD_CF_LOG], (const char *)lo,
                                       lo_len, (const char *)hi, hi_len);
    rocksdb_write(st->db, st->wo_admin, wb, &rerr);
    rocksdb_writebatch_destroy(wb);
    if (rerr) {
        char shown[TD_STORE_FMT_ID_CAP];
        code = td_store_seterr(err, TD_STORE_ERR_IO, "deleting document '%s' failed: %s",
                               td_store_fmt_id(shown, sizeof shown, doc, doc_len),
                               rerr);
        rocksdb_free(rerr);
    } else {
        td_store_cache_remove(&st->cache, doc, doc_len);
        code = TD_STORE_OK;
    }
    pthread_mutex_unlock(&st->write_mu);
    return code;
}

/* ---- test hook (store_testing.h) ---------------------------------------- */

void td_store_test_fail_writes(td_store *st, int n)
{
    pthread_mutex_lock(&st->write_mu);
    st->fail_writes = n;
    pthread_mutex_unlock(&st->write_mu);
}
