/*
 * store_compact.c -- folding a document's log into a new snapshot.
 *
 * Compaction loads the document as of a RocksDB snapshot (old snapshot plus
 * log tail up to sequence S), encodes it with td_crdt_snapshot_encode() and
 * then, in one WriteBatch, stores the new snapshot value covering S, deletes
 * the log entries up to S with one range delete and rewrites the metadata.
 * The expensive part runs without any lock, so appends go on meanwhile; the
 * final write takes write_mu and starts from the metadata as it is then, so
 * entries appended after S simply stay in the log tail. If another
 * compaction of the same document got there first, this one gives up
 * (TD_STORE_ERR_BUSY) without writing.
 *
 * With TD_STORE_COMPACT_AUTO the store thread offers every document whose
 * log crossed compact_ops or compact_bytes, and a second thread compacts
 * them one at a time, so neither the event loop nor the appends wait for it.
 * Compaction reads through store_read.c and updates the metadata cache; it
 * never calls into the writer (store_write.c), which calls into it. Owner
 * records are not touched: a snapshot does not hold them.
 */
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/* A compaction re-encodes the whole document. With a fixed threshold a big
 * document is rewritten every compact_ops ops: one of 500,000 ops every
 * 10,000, fifty times the work of its growth. So the log may also grow to
 * an eighth of the snapshot's ops: the rewriting stays within eight times
 * what is appended, and the tail a load replays within an eighth of the
 * document. (compact_bytes still bounds the tail's bytes.) */
#define COMPACT_GROWTH 8

int td_store_compact_due(const td_store *st, const td_store_meta *m)
{
    uint64_t ops = m->snap_ops / COMPACT_GROWTH;
    if (ops < st->o.compact_ops)
        ops = st->o.compact_ops;
    return m->last_seq > m->snap_seq && (m->log_ops >= ops || m->log_bytes >= st->o.compact_bytes);
}

/* Ops parked for missing dependencies are not part of an encoded snapshot,
 * so a document holding any is left uncompacted (its log still has them). */
static int has_pending(td_crdt_doc *d)
{
    return td_crdt_pending_ops(d) > 0;
}

/* Writes the new snapshot (sequence s) and drops the folded log entries. */
static td_store_err fold(td_store *st, const char *doc, size_t doc_len,
                         const td_store_meta *old, uint64_t s,
                         const td_store_scan_totals *folded,
                         const uint8_t *snap, size_t snap_len, uint64_t snap_ops,
                         td_store_compact_info *info, td_store_error *err)
{
    uint8_t lo[TD_STORE_LOG_KEY_MAX], hi[TD_STORE_LOG_KEY_MAX];
    size_t lo_len, hi_len, sval_len, mval_len;
    uint8_t *sval, *mval;
    td_store_meta now, next;
    td_store_ent *ent;
    char *raw = NULL, *rerr = NULL, shown[TD_STORE_FMT_ID_CAP];
    rocksdb_writebatch_t *wb;
    td_store_err code;

    sval = td_store_snap_encode(snap, snap_len, s, doc, doc_len, &sval_len);
    if (sval == NULL)
        return td_store_err_nomem(err);
    td_store_fmt_id(shown, sizeof shown, doc, doc_len);

    pthread_mutex_lock(&st->write_mu);
    ent = td_store_cache_find(&st->cache, doc, doc_len);
    if (ent) {
        now = ent->cur;
        code = TD_STORE_OK;
    } else {
        code = td_store_meta_get(st, NULL, doc, doc_len, &now, &raw, err);
    }
    if (code == TD_STORE_OK && now.snap_seq != old->snap_seq)
        code = td_store_seterr(err, TD_STORE_ERR_BUSY,
                               "document '%s' was compacted concurrently", shown);
    /* Deleted and re-created meanwhile: what was loaded is not it. */
    if (code == TD_STORE_OK && (now.last_seq < s || now.log_ops < folded->ops ||
                                now.log_bytes < folded->bytes))
        code = td_store_seterr(err, TD_STORE_ERR_BUSY,
                               "document '%s' changed during compaction", shown);
    if (code == TD_STORE_ERR_NOT_FOUND)
        code = td_store_seterr(err, TD_STORE_ERR_BUSY,
                               "document '%s' was deleted during compaction", shown);
    if (code != TD_STORE_OK) {
        pthread_mutex_unlock(&st->write_mu);
        rocksdb_free(raw);
        free(sval);
        return code;
    }
    next = now;
    next.snap_seq = s;
    next.snap_ops = snap_ops;
    next.snap_bytes = sval_len;
    next.log_ops = now.log_ops - folded->ops;
    next.log_bytes = now.log_bytes - folded->bytes;
    mval = td_store_meta_encode(&next, doc, doc_len, &mval_len);
    if (mval == NULL) {
        pthread_mutex_unlock(&st->write_mu);
        rocksdb_free(raw);
        free(sval);
        return td_store_err_nomem(err);
    }
    lo_len = td_store_log_key(lo, doc, doc_len, 0);
    hi_len = td_store_log_key(hi, doc, doc_len, s + 1);
    wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put_cf(wb, st->cf[TD_CF_SNAP], doc, doc_len,
                              (const char *)sval, sval_len);
    rocksdb_writebatch_delete_range_cf(wb, st->cf[TD_CF_LOG], (const char *)lo,
                                       lo_len, (const char *)hi, hi_len);
    rocksdb_writebatch_put_cf(wb, st->cf[TD_CF_META], doc, doc_len,
                              (const char *)mval, mval_len);
    rocksdb_write(st->db, st->wo_admin, wb, &rerr);
    rocksdb_writebatch_destroy(wb);
    if (rerr) {
        code = td_store_seterr(err, TD_STORE_ERR_IO,
                               "document '%s': writing the compacted snapshot "
                               "failed: %s",
                               shown, rerr);
        rocksdb_free(rerr);
    } else if (ent) {
        /* vv is unchanged and still owned by the entry. */
        ent->cur.snap_seq = next.snap_seq;
        ent->cur.snap_ops = next.snap_ops;
        ent->cur.snap_bytes = next.snap_bytes;
        ent->cur.log_ops = next.log_ops;
        ent->cur.log_bytes = next.log_bytes;
    }
    pthread_mutex_unlock(&st->write_mu);
    rocksdb_free(raw);
    free(mval);
    if (code == TD_STORE_OK && info) {
        info->compacted = 1;
        info->snap_seq = s;
        info->folded_entries = folded->entries;
        info->folded_bytes = folded->bytes;
        info->snap_bytes = sval_len;
    }
    free(sval);
    return code;
}

/* A Yjs document's snapshot is the whole document as one update
 * (Y.encodeStateAsUpdate), which also carries the structs and deletions
 * still waiting for dependencies, so unlike the core's a document with a
 * pending set compacts too. */
static td_store_err compact_yjs(td_store *st, const rocksdb_snapshot_t *rs,
                                const char *doc, size_t doc_len, const td_store_meta *m,
                                td_store_compact_info *info, td_store_error *err)
{
    td_store_scan_totals folded;
    td_yjs_doc *d = NULL;
    uint8_t *snap = NULL;
    size_t snap_len = 0;
    td_yjs_stats ys;
    td_store_err code = td_store_load_yjs_at(st, rs, doc, doc_len, NULL, m, &d, &folded, err);
    if (code != TD_STORE_OK)
        return code;
    td_yjs_err ye = td_yjs_encode_state_as_update(d, NULL, 0, &snap, &snap_len);
    if (ye != TD_YJS_OK) {
        char shown[TD_STORE_FMT_ID_CAP];
        code = td_store_seterr(err, ye == TD_YJS_ERR_NOMEM ? TD_STORE_ERR_NOMEM
                                                          : TD_STORE_ERR_CORRUPT,
                               "document '%s': encoding the snapshot failed (%s: %s)",
                               td_store_fmt_id(shown, sizeof shown, doc, doc_len),
                               td_yjs_strerror(ye), td_yjs_doc_error(d));
    } else {
        td_yjs_doc_stats(d, &ys);
        code = fold(st, doc, doc_len, m, m->last_seq, &folded, snap, snap_len,
                    ys.structs ? ys.structs : 1, info, err);
    }
    if (snap)
        td_yjs_buf_free(d, snap);
    td_yjs_doc_free(d);
    return code;
}

td_store_err td_store_compact(td_store *st, const char *doc, size_t doc_len,
                              int force, td_store_compact_info *info,
                              td_store_error *err)
{
    const rocksdb_snapshot_t *rs;
    td_store_meta m;
    td_store_scan_totals folded;
    td_crdt_doc *d = NULL;
    uint8_t *snap = NULL;
    size_t snap_len = 0;
    char *raw = NULL;
    td_store_err code;
    td_crdt_err ce;

    if (info)
        memset(info, 0, sizeof *info);
    code = td_store_enter_doc(st, doc, doc_len, 1, err);
    if (code != TD_STORE_OK)
        return code;
    rs = rocksdb_create_snapshot(st->db);
    code = td_store_meta_get(st, rs, doc, doc_len, &m, &raw, err);
    if (code != TD_STORE_OK || m.last_seq == m.snap_seq ||
        (!force && !td_store_compact_due(st, &m)))
        goto out;
    if (m.kind == TD_STORE_KIND_YJS) {
        code = compact_yjs(st, rs, doc, doc_len, &m, info, err);
        if (code == TD_STORE_OK && (!info || info->compacted))
            atomic_fetch_add(&st->n_compactions, 1);
        goto out;
    }
    /* The snapshot's digest was verified on the read, and only the store
     * wrote it: the whole-history check (most of a load) is `tandem
     * check`'s, as for the server's loads (srv_model_tandem.c). */
    td_crdt_options co;
    if (st->have_crdt)
        co = st->crdt;
    else
        memset(&co, 0, sizeof co);
    co.trusted_snapshot = 1;
    code = td_store_load_at(st, rs, doc, doc_len, &co, &m, &d, &folded, err);
    if (code != TD_STORE_OK)
        goto out;
    if (has_pending(d)) {
        if (info)
            info->pending_ops = td_crdt_pending_ops(d);
        goto out;
    }
    ce = td_crdt_snapshot_encode(d, &snap, &snap_len);
    if (ce != TD_CRDT_OK) {
        char shown[TD_STORE_FMT_ID_CAP];
        code = td_store_seterr(err, ce == TD_CRDT_ERR_NOMEM ? TD_STORE_ERR_NOMEM
                                                           : TD_STORE_ERR_CORRUPT,
                               "document '%s': encoding the snapshot failed (%s: %s)",
                               td_store_fmt_id(shown, sizeof shown, doc, doc_len),
                               td_crdt_strerror(ce), td_crdt_doc_error(d));
        goto out;
    }
    code = fold(st, doc, doc_len, &m, m.last_seq, &folded, snap, snap_len,
                td_crdt_op_count(d), info, err);
    if (code == TD_STORE_OK)
        atomic_fetch_add(&st->n_compactions, 1);
out:
    if (snap)
        td_crdt_buf_free(d, snap);
    if (d)
        td_crdt_doc_free(d);
    rocksdb_free(raw);
    rocksdb_release_snapshot(st->db, rs);
    td_store_leave(st);
    return code;
}

/* ---- the background compaction thread ----------------------------------- */

/* One document waiting for the compaction thread. */
typedef struct cjob {
    td_store_link link; /* first */
    size_t id_len;
    char id[];
} cjob;

void td_store_compactor_offer(td_store *st, td_store_ent *ent)
{
    cjob *j;

    if (st->o.compaction != TD_STORE_COMPACT_AUTO || !st->cq.started ||
        ent->compact_queued || ent->cur.last_seq < ent->compact_hold ||
        !td_store_compact_due(st, &ent->cur))
        return;
    j = malloc(sizeof *j + ent->id_len);
    if (j == NULL)
        return; /* the next append offers it again */
    j->link.size = 0;
    j->id_len = ent->id_len;
    memcpy(j->id, ent->id, ent->id_len);
    if (td_store_queue_put(&st->cq, &j->link, NULL) != 0) {
        free(j);
        return;
    }
    ent->compact_queued = 1;
}

/* After a compaction attempt (write_mu held): the document may be offered
 * again. One that could not be compacted (damaged, or holding parked ops)
 * is retried only once its log has doubled, so a stuck document does not
 * cost a full load per append. */
static void compacted(td_store *st, const cjob *j, td_store_err code,
                      const td_store_compact_info *info)
{
    td_store_ent *ent = td_store_cache_find(&st->cache, j->id, j->id_len);
    if (ent == NULL)
        return;
    ent->compact_queued = 0;
    if (code != TD_STORE_ERR_BUSY && !info->compacted) {
        uint64_t tail = ent->cur.last_seq - ent->cur.snap_seq;
        ent->compact_hold = ent->cur.last_seq + (tail ? tail : 1);
    }
}

static void *compactor_main(void *arg)
{
    td_store *st = arg;
    td_store_link *l;

    while ((l = td_store_queue_take(&st->cq, 0)) != NULL) {
        cjob *j = (cjob *)l;
        td_store_compact_info info;
        td_store_error e;
        td_store_err code = td_store_compact(st, j->id, j->id_len, 0, &info, &e);

        if (code != TD_STORE_OK && code != TD_STORE_ERR_BUSY &&
            code != TD_STORE_ERR_NOT_FOUND)
            atomic_fetch_add(&st->n_compaction_errors, 1);
        pthread_mutex_lock(&st->write_mu);
        compacted(st, j, code, &info);
        pthread_mutex_unlock(&st->write_mu);
        free(j);
    }
    return NULL;
}

int td_store_compactor_start(td_store *st)
{
    return td_store_queue_start(&st->cq, compactor_main, st);
}

/* Abandons queued jobs: their documents are still due and get offered
 * again after the next open's first append. */
void td_store_compactor_stop(td_store *st)
{
    td_store_link *l = td_store_queue_stop(&st->cq), *next;
    for (; l; l = next) {
        next = l->next;
        free((cjob *)l);
    }
}
