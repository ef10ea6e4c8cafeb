/*
 * store_internal.h -- private: the td_store object shared by the store's
 * source files.
 *
 * Locks, in the order they may nest:
 *   write_mu  serialises every RocksDB write that touches metadata (append
 *             groups, compactions, deletes) and guards the in-memory meta
 *             table, so a document's sequence numbers and sizes only move
 *             together with what is on disk;
 *   q_mu      the queue of appends waiting for the store thread;
 *   done_mu   the completions waiting for td_store_poll();
 *   cq_mu     the queue of documents waiting for the compaction thread.
 * No callback into user code runs under any of them.
 */
#ifndef TD_STORE_INTERNAL_H
#define TD_STORE_INTERNAL_H

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdarg.h>
#include <stdatomic.h>

#include "store_codec.h"
#include "tandem_store.h"

enum { TD_CF_DEFAULT, TD_CF_LOG, TD_CF_SNAP, TD_CF_META, TD_CF_COUNT };

/* A cached metadata record. `pend` is the state being built by the append
 * group in progress (valid while pend_gen == the group's generation); it
 * replaces `cur` only after the write succeeded. */
typedef struct td_store_ent {
    struct td_store_ent *next;      /* hash chain */
    struct td_store_ent *pend_next; /* documents touched by the group */
    uint64_t hash;
    td_store_meta cur;              /* cur.vv is owned (malloc) */
    td_store_meta pend;             /* pend.vv borrowed from a request */
    uint8_t *pend_vv_copy;          /* pend.vv copied ahead of the write */
    uint64_t pend_gen;
    int compact_queued;
    uint64_t compact_hold; /* no background compaction before this last_seq */
    size_t id_len;
    char id[];
} td_store_ent;

/* One queued append: header, then doc id, log value and vv bytes. */
typedef struct td_store_req {
    struct td_store_req *next;
    td_store_append_cb cb;
    void *ud;
    td_store_ent *ent;
    uint64_t seq;
    uint64_t nops;
    td_store_err code;
    int compact_due;
    char *msg;         /* malloc'ed error message or NULL */
    size_t doc_len;
    size_t val_len;
    size_t vv_len;
    uint8_t data[];
} td_store_req;

#define TD_REQ_DOC(r) ((const char *)(r)->data)
#define TD_REQ_VAL(r) ((r)->data + (r)->doc_len)
#define TD_REQ_VV(r) ((r)->data + (r)->doc_len + (r)->val_len)

typedef struct td_store_cjob {
    struct td_store_cjob *next;
    size_t id_len;
    char id[];
} td_store_cjob;

struct td_store {
    char *dir;
    td_store_options o;
    td_crdt_options crdt;
    int have_crdt;

    rocksdb_t *db;
    rocksdb_options_t *dbopts;
    rocksdb_column_family_handle_t *cf[TD_CF_COUNT];
    rocksdb_writeoptions_t *wo_append; /* per the durability mode */
    rocksdb_writeoptions_t *wo_admin;  /* compactions, deletes: synced unless off */
    rocksdb_readoptions_t *ro;

    /* write_mu: meta table and every metadata-changing write */
    pthread_mutex_t write_mu;
    td_store_ent **tab;
    size_t tab_size; /* power of two */
    size_t tab_count;
    uint64_t gen;
    uint8_t hash_key[16];
    int fail_writes;  /* test hook: fail the next N append writes */

    /* q_mu: appends waiting for the store thread */
    pthread_mutex_t q_mu;
    pthread_cond_t q_cond;
    td_store_req *q_head, **q_tail;
    int q_sleeping;
    int stopping;
    pthread_t writer;
    int writer_started;

    /* done_mu: completions waiting for td_store_poll */
    pthread_mutex_t done_mu;
    pthread_cond_t done_cond;
    td_store_req *done_head, **done_tail;
    atomic_size_t outstanding;

    /* cq_mu: documents waiting for the compaction thread */
    pthread_mutex_t cq_mu;
    pthread_cond_t cq_cond;
    td_store_cjob *cq_head, **cq_tail;
    int cq_stopping;
    pthread_t compactor;
    int compactor_started;

    atomic_uint_fast64_t n_appends_ok, n_appends_failed, n_writes;
    atomic_uint_fast64_t n_compactions, n_compaction_errors;
};

/* Fills *err (if not NULL) and returns code. */
td_store_err td_store_seterr(td_store_error *err, td_store_err code,
                             const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* store_append.c */
int td_store_writer_start(td_store *st);
void td_store_writer_stop(td_store *st);
void td_store_table_free(td_store *st);
/* Looks up a cached entry (write_mu held); NULL if not cached. */
td_store_ent *td_store_table_find(td_store *st, const char *doc, size_t len);
void td_store_table_remove(td_store *st, const char *doc, size_t len);

/* store_read.c. `snap` is a RocksDB snapshot to read from, or NULL for the
 * latest state. */

/* Reads the metadata of doc. TD_STORE_ERR_NOT_FOUND if absent. On success
 * *raw holds the value (free with rocksdb_free) and m points into it. */
td_store_err td_store_meta_get(td_store *st, const rocksdb_snapshot_t *snap,
                               const char *doc, size_t doc_len,
                               td_store_meta *m, char **raw,
                               td_store_error *err);
/* 1 if any log entry of doc exists, 0 if none, -1 on error (err set). */
int td_store_log_exists(td_store *st, const rocksdb_snapshot_t *snap,
                        const char *doc, size_t doc_len, td_store_error *err);

/* What a load read from the log. */
typedef struct td_store_scan_totals {
    uint64_t entries;
    uint64_t bytes;
    uint64_t ops;
} td_store_scan_totals;

/* Builds the document described by m (read through the same snapshot) from
 * its snapshot value and log tail. totals may be NULL. */
td_store_err td_store_load_at(td_store *st, const rocksdb_snapshot_t *snap,
                              const char *doc, size_t doc_len,
                              const td_crdt_options *opts,
                              const td_store_meta *m, td_crdt_doc **out,
                              td_store_scan_totals *totals,
                              td_store_error *err);

/* store_compact.c */
int td_store_compactor_start(td_store *st);
void td_store_compactor_stop(td_store *st);
/* Queues doc for background compaction (write_mu held). */
void td_store_compactor_enqueue(td_store *st, td_store_ent *ent);

/* Due means a threshold is crossed. */
int td_store_compact_due(const td_store *st, const td_store_meta *m);

#endif /* TD_STORE_INTERNAL_H */
