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
 * touched. One write, one sync (unless the mode is `off`, or every append
 * of the group is durable elsewhere -- a cluster peer's batch), then every
 * request of the group is moved to the completion queue and the `wake` hook
 * tells the owner of the event loop to call td_store_poll().
 *
 * Sequence numbers and sizes are computed against a cached copy of each
 * document's metadata. They are staged in `pend` and become `cur` only
 * after the write returned; a failed write discards the staging, so the
 * next append to the document gets the sequence the failed one would have
 * had and nothing in memory claims more than what is on disk.
 *
 * Owner records (claims) ride in the same WriteBatch as the log entry of
 * the append that carries them. The store thread checks each against the
 * owner already on disk and against the claims staged earlier in the same
 * group: a different owner fails that append (TD_STORE_ERR_ARG) before
 * anything of it is staged.
 *
 * A write that RocksDB fails (disk full, I/O error) leaves RocksDB refusing
 * every later write until the database is reopened. The store thread then
 * marks the store broken: td_store_append fails at once, groups already
 * queued fail without a write, and every second the thread checks whether
 * the file system has room for the reopen (the write-ahead log RocksDB
 * replays, plus a margin) and, if so, closes and reopens the database
 * under the exclusive gate and drops the metadata cache (the disk is the
 * truth: a failed write may have reached the log after all).
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
#include <sys/statvfs.h>
#include <time.h>

#include "store_internal.h"
#include "store_testing.h"

/* Bytes of log values one write may carry; the rest waits for the next. */
#define GROUP_MAX_BYTES ((size_t)32 << 20)
/* A broken store tries to reopen this often ... */
#define RETRY_MS 1000
/* ... once the file system has this much room beyond the write-ahead log. */
#define REOPEN_MARGIN ((uint64_t)1 << 20)

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

/* The owner of a claim's agent, from the claims staged by this group
 * (newest first) or from the disk. *raw: free with rocksdb_free. */
static td_store_err owner_now(td_store *st, const td_store_req_claim *staged,
                              const td_store_req *r, uint64_t agent, char **raw,
                              const char **owner, size_t *len, td_store_error *err)
{
    *raw = NULL;
    for (const td_store_req_claim *c = staged; c; c = c->staged_next) {
        if (c->agent == agent && c->req->doc_len == r->doc_len &&
            memcmp(TD_REQ_DOC(c->req), TD_REQ_DOC(r), r->doc_len) == 0) {
            *owner = (const char *)c->val + 1;
            *len = c->val_len - 1 - TD_STORE_OWNER_DIGEST;
            return TD_STORE_OK;
        }
    }
    return td_store_owner_get(st, TD_REQ_DOC(r), r->doc_len, agent, raw, owner, len,
                              err);
}

/* Checks r's claims: each agent is unowned or owned by the claimed owner
 * already (then marked skip). Returns 0, or -1 after failing r. */
static int check_claims(td_store *st, td_store_req *r,
                        const td_store_req_claim *staged)
{
    for (size_t i = 0; i < r->nclaims; i++) {
        td_store_req_claim *c = &r->claims[i];
        td_store_error e = {0};
        const char *owner;
        size_t len, want = c->val_len - 1 - TD_STORE_OWNER_DIGEST;
        char *raw;
        td_store_err code = owner_now(st, staged, r, c->agent, &raw, &owner, &len, &e);

        c->skip = 0;
        if (code == TD_STORE_OK) {
            int same = len == want && memcmp(owner, c->val + 1, len) == 0;
            rocksdb_free(raw);
            if (!same) {
                char shown[TD_STORE_FMT_ID_CAP], msg[TD_STORE_FMT_ID_CAP + 80];
                snprintf(msg, sizeof msg,
                         "document '%s': agent %llu already has another owner",
                         td_store_fmt_id(shown, sizeof shown, TD_REQ_DOC(r),
                                         r->doc_len),
                         (unsigned long long)c->agent);
                req_fail(r, TD_STORE_ERR_ARG, msg);
                return -1;
            }
            c->skip = 1;
        } else if (code != TD_STORE_ERR_NOT_FOUND) {
            req_fail(r, code, e.msg);
            return -1;
        }
    }
    return 0;
}

/* Stages one request into the group: checks its claims, assigns its
 * sequence and adds its log entry and new owner records to wb. */
static void stage(td_store *st, rocksdb_writebatch_t *wb, td_store_req *r,
                  td_store_ent **touched, td_store_req_claim **staged)
{
    td_store_error e = {0};
    td_store_ent *ent;
    uint8_t key[TD_STORE_LOG_KEY_MAX];
    size_t klen;

    if (ent_get(st, TD_REQ_DOC(r), r->doc_len, &ent, &e) != TD_STORE_OK) {
        req_fail(r, e.code, e.msg);
        return;
    }
    if (check_claims(st, r, *staged) != 0)
        return;
    if (ent->pend_gen != st->gen) {
        ent->pend = ent->cur;
        ent->pend_gen = st->gen;
        ent->pend_next = *touched;
        *touched = ent;
    }
    if (ent->pend.last_seq == 0 && ent->pend.snap_seq == 0) {
        ent->pend.kind = r->kind; /* the first append names the kind */
    } else if (ent->pend.kind != r->kind) {
        char shown[TD_STORE_FMT_ID_CAP], msg[TD_STORE_FMT_ID_CAP + 80];
        snprintf(msg, sizeof msg, "document '%s' is a %s document, not %s",
                 td_store_fmt_id(shown, sizeof shown, TD_REQ_DOC(r), r->doc_len),
                 td_store_kind_name(ent->pend.kind), td_store_kind_name(r->kind));
        req_fail(r, TD_STORE_ERR_KIND, msg);
        return;
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
    if (r->stream_seq > ent->pend.stream_seq &&
        (!ent->stream_gap || r->stream_seq == ent->stream_gap))
        ent->pend.stream_seq = r->stream_seq;
    klen = td_store_log_key(key, TD_REQ_DOC(r), r->doc_len, r->seq);
    rocksdb_writebatch_put_cf(wb, st->cf[TD_CF_LOG], (const char *)key, klen,
                              (const char *)TD_REQ_VAL(r), r->val_len);
    for (size_t i = 0; i < r->nclaims; i++) {
        td_store_req_claim *c = &r->claims[i];
        if (c->skip)
            continue;
        klen = td_store_log_key(key, TD_REQ_DOC(r), r->doc_len, c->agent);
        rocksdb_writebatch_put_cf(wb, st->cf[TD_CF_OWNER], (const char *)key, klen,
                                  (const char *)c->val, c->val_len);
        c->req = r;
        c->staged_next = *staged;
        *staged = c;
    }
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
        if (e->stream_gap && e->cur.stream_seq >= e->stream_gap)
            e->stream_gap = 0; /* the failed append is written now */
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

/* ---- a store that cannot write ------------------------------------------ */

static void set_why(td_store *st, const char *fmt, const char *detail)
{
    pthread_mutex_lock(&st->state_mu);
    snprintf(st->why_broken, sizeof st->why_broken, fmt, detail);
    pthread_mutex_unlock(&st->state_mu);
}

int td_store_writable(td_store *st, char *why, size_t whylen)
{
    if (st->o.read_only) {
        if (why && whylen)
            snprintf(why, whylen, "store %s is open read-only", st->dir);
        return 0;
    }
    if (!atomic_load(&st->broken))
        return 1;
    if (why && whylen) {
        pthread_mutex_lock(&st->state_mu);
        snprintf(why, whylen, "%s", st->why_broken);
        pthread_mutex_unlock(&st->state_mu);
    }
    return 0;
}

static td_store_err err_broken(td_store *st, td_store_error *err)
{
    char why[sizeof st->why_broken];
    td_store_writable(st, why, sizeof why);
    return td_store_seterr(err, TD_STORE_ERR_IO,
                           "store %s cannot write (disk full or I/O error; "
                           "retrying): %s",
                           st->dir, why);
}

/* 1 if the file system holding the store has room for a reopen: the
 * write-ahead log RocksDB replays and flushes, plus REOPEN_MARGIN. */
static int room_to_reopen(td_store *st)
{
    struct statvfs sv;
    uint64_t need = td_store_dir_bytes(st->dir, ".log") + REOPEN_MARGIN;
    char msg[128];

    if (statvfs(st->dir, &sv) != 0)
        return 1; /* let the open itself tell */
    if ((uint64_t)sv.f_bavail * sv.f_frsize >= need)
        return 1;
    snprintf(msg, sizeof msg, "%llu bytes free, %llu needed to reopen",
             (unsigned long long)((uint64_t)sv.f_bavail * sv.f_frsize),
             (unsigned long long)need);
    set_why(st, "disk full: %s", msg);
    return 0;
}

/* Closes and reopens the database (store thread, broken store). */
static void recover(td_store *st)
{
    char *rerr;

    if (!room_to_reopen(st))
        return;
    pthread_rwlock_wrlock(&st->db_gate);
    pthread_mutex_lock(&st->write_mu);
    td_store_handle_close(st);
    rerr = td_store_handle_open(st);
    if (rerr == NULL) {
        /* What the disk holds is the truth: re-read metadata from it. */
        td_store_cache_free(&st->cache);
        atomic_store(&st->broken, 0);
    }
    pthread_mutex_unlock(&st->write_mu);
    pthread_rwlock_unlock(&st->db_gate);
    if (rerr) {
        set_why(st, "reopening after a failed write failed: %s", rerr);
        rocksdb_free(rerr);
    }
}

/* ---- the store thread, continued ---------------------------------------- */

static void write_group(td_store *st, td_store_req *group)
{
    rocksdb_writebatch_t *wb;
    td_store_ent *touched = NULL;
    td_store_req_claim *staged = NULL;
    char *rerr = NULL;
    const char *fail = NULL;
    td_store_err fail_code = TD_STORE_OK;
    td_store_error e = {0};
    size_t nput = 0, local = 0; /* appends to write; of those, not durable elsewhere */

    if (atomic_load(&st->broken) || td_store_enter(st, &e) != TD_STORE_OK) {
        err_broken(st, &e);
        for (td_store_req *r = group; r; r = req_next(r)) {
            req_fail(r, TD_STORE_ERR_IO, e.msg);
            atomic_fetch_add(&st->n_appends_failed, 1);
        }
        return;
    }
    wb = rocksdb_writebatch_create();
    pthread_mutex_lock(&st->write_mu);
    st->gen++;
    for (td_store_req *r = group; r; r = req_next(r))
        stage(st, wb, r, &touched, &staged);
    for (td_store_req *r = group; r; r = req_next(r))
        if (r->code == TD_STORE_OK) {
            nput++;
            local += !r->durable_elsewhere;
        }
    if (nput > 0) {
        if (stage_meta(st, wb, touched) != 0) {
            fail_code = TD_STORE_ERR_NOMEM;
            fail = "out of memory";
        } else if (st->fail_writes > 0) {
            st->fail_writes--;
            fail_code = TD_STORE_ERR_IO;
            fail = "injected write failure";
        } else {
            int sync = local > 0 && st->o.durability != TD_STORE_SYNC_OFF;
            rocksdb_write(st->db, sync ? st->wo_append : st->wo_unsynced, wb, &rerr);
            atomic_fetch_add(&st->n_writes, 1);
            if (sync)
                atomic_fetch_add(&st->n_synced_writes, 1);
            if (rerr) {
                fail_code = TD_STORE_ERR_IO;
                fail = rerr;
                /* RocksDB now refuses every write until reopened. */
                set_why(st, "%s", rerr);
                atomic_store(&st->broken, 1);
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
            if (r->code == TD_STORE_OK) {
                if (r->stream_seq &&
                    (!r->ent->stream_gap || r->stream_seq < r->ent->stream_gap))
                    r->ent->stream_gap = r->stream_seq;
                req_fail(r, fail_code, msg);
            }
    }
    pthread_mutex_unlock(&st->write_mu);
    td_store_leave(st);
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

/* *t = now + RETRY_MS on the monotonic clock. */
static void retry_at(struct timespec *t)
{
    clock_gettime(CLOCK_MONOTONIC, t);
    t->tv_sec += RETRY_MS / 1000;
    t->tv_nsec += (long)(RETRY_MS % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

static int reached(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > t->tv_sec ||
           (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

static void *writer_main(void *arg)
{
    td_store *st = arg;
    /* `always` promises one synced write per append: no grouping. */
    size_t max = st->o.durability == TD_STORE_SYNC_ALWAYS ? 0 : GROUP_MAX_BYTES;
    struct timespec retry = {0, 0};
    int ended = 0;

    while (!ended) {
        td_store_link *group;
        int broken = atomic_load(&st->broken);

        if (broken && reached(&retry)) {
            recover(st);
            retry_at(&retry);
            continue;
        }
        /* A broken store wakes up for its next attempt. */
        group = td_store_queue_take_until(&st->wq, max, broken ? &retry : NULL,
                                          &ended);
        if (group == NULL)
            continue;
        write_group(st, (td_store_req *)group);
        deliver(st, (td_store_req *)group);
        if (!broken && atomic_load(&st->broken))
            retry_at(&retry); /* just broke: the first attempt in a while */
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

/* Copies and encodes b's claims into r (one allocation). */
static td_store_err copy_claims(td_store_req *r, const td_store_batch *b,
                                td_store_error *err)
{
    size_t bytes = b->nclaims * sizeof(td_store_req_claim), off;

    if (b->nclaims == 0)
        return TD_STORE_OK;
    if (b->claims == NULL || b->nclaims > TD_STORE_CLAIMS_MAX)
        return td_store_seterr(err, TD_STORE_ERR_ARG,
                               "claims must be 1..%d entries (or none)",
                               TD_STORE_CLAIMS_MAX);
    for (size_t i = 0; i < b->nclaims; i++) {
        const td_store_claim *c = &b->claims[i];
        if (!td_store_owner_valid(c->owner, c->owner_len))
            return td_store_seterr(err, TD_STORE_ERR_ARG,
                                   "claim %zu: the owner must be 1..%d bytes of "
                                   "UTF-8",
                                   i, TD_STORE_OWNER_MAX);
        for (size_t k = 0; k < i; k++)
            if (b->claims[k].agent == c->agent &&
                (b->claims[k].owner_len != c->owner_len ||
                 memcmp(b->claims[k].owner, c->owner, c->owner_len) != 0))
                return td_store_seterr(err, TD_STORE_ERR_ARG,
                                       "claims %zu and %zu give agent %llu two "
                                       "owners",
                                       k, i, (unsigned long long)c->agent);
        bytes += td_store_owner_value_size(c->owner_len);
    }
    r->claims = malloc(bytes);
    if (r->claims == NULL)
        return td_store_err_nomem(err);
    off = b->nclaims * sizeof(td_store_req_claim);
    for (size_t i = 0; i < b->nclaims; i++) {
        const td_store_claim *c = &b->claims[i];
        td_store_req_claim *rc = &r->claims[i];
        memset(rc, 0, sizeof *rc);
        rc->agent = c->agent;
        rc->val = (uint8_t *)r->claims + off;
        rc->val_len = td_store_owner_value_size(c->owner_len);
        td_store_owner_value_encode(rc->val, b->doc, b->doc_len, c->agent, c->owner,
                                    c->owner_len);
        off += rc->val_len;
    }
    r->nclaims = b->nclaims;
    r->link.size += off - b->nclaims * sizeof(td_store_req_claim);
    return TD_STORE_OK;
}

static void req_free(td_store_req *r)
{
    free(r->claims);
    free(r->msg);
    free(r);
}

td_store_err td_store_append(td_store *st, const td_store_batch *b,
                             td_store_append_cb cb, void *ud,
                             td_store_error *err)
{
    td_store_req *r;
    size_t vlen;
    td_store_err code;

    if (b == NULL || !td_store_doc_id_valid(b->doc, b->doc_len))
        return td_store_err_bad_id(err);
    if (b->ops == NULL || b->ops_len == 0 || b->ops_len > TD_STORE_MAX_BATCH)
        return td_store_seterr(err, TD_STORE_ERR_ARG,
                               "batch must be 1..%zu bytes", TD_STORE_MAX_BATCH);
    if (b->vv_len && b->vv == NULL)
        return td_store_seterr(err, TD_STORE_ERR_ARG, "vv_len without vv");
    if ((unsigned)b->kind >= TD_STORE_KIND_COUNT)
        return td_store_seterr(err, TD_STORE_ERR_ARG, "unknown document kind");
    if (st->o.read_only)
        return td_store_err_read_only(st, err);
    if (atomic_load(&st->broken))
        return err_broken(st, err);
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
    r->kind = b->kind;
    r->stream_seq = b->stream_seq;
    r->durable_elsewhere = b->durable_elsewhere != 0;
    memcpy(r->data, b->doc, b->doc_len);
    td_store_log_value_encode(r->data + b->doc_len, vlen, b->doc, b->doc_len,
                              b->ops, b->ops_len, b->nops);
    if (b->vv_len)
        memcpy(TD_REQ_VV(r), b->vv, b->vv_len);
    code = copy_claims(r, b, err);
    if (code != TD_STORE_OK) {
        req_free(r);
        return code;
    }

    if (td_store_queue_put(&st->wq, &r->link, &st->outstanding) != 0) {
        req_free(r);
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
        req_free(r);
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

    code = td_store_enter_doc(st, doc, doc_len, 1, err);
    if (code != TD_STORE_OK)
        return code;
    pthread_mutex_lock(&st->write_mu);
    /* Damaged metadata must not keep a document from being deleted. */
    code = td_store_meta_get_checked(st, NULL, doc, doc_len, &m, &raw, err);
    rocksdb_free(raw);
    if (code == TD_STORE_ERR_NOT_FOUND || code == TD_STORE_ERR_IO) {
        pthread_mutex_unlock(&st->write_mu);
        td_store_leave(st);
        return code;
    }
    /* Every key of the document's log and owner records lies in
     * [(length, id), prefix end). */
    lo_len = td_store_log_prefix(lo, doc, doc_len);
    hi_len = td_store_prefix_end(hi, doc, doc_len);
    wb = rocksdb_writebatch_create();
    rocksdb_writebatch_delete_cf(wb, st->cf[TD_CF_META], doc, doc_len);
    rocksdb_writebatch_delete_cf(wb, st->cf[TD_CF_SNAP], doc, doc_len);
    rocksdb_writebatch_delete_range_cf(wb, st->cf[TD_CF_LOG], (const char *)lo,
                                       lo_len, (const char *)hi, hi_len);
    rocksdb_writebatch_delete_range_cf(wb, st->cf[TD_CF_OWNER], (const char *)lo,
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
    td_store_leave(st);
    return code;
}

/* ---- test hook (store_testing.h) ---------------------------------------- */

void td_store_test_fail_writes(td_store *st, int n)
{
    pthread_mutex_lock(&st->write_mu);
    st->fail_writes = n;
    pthread_mutex_unlock(&st->write_mu);
}
