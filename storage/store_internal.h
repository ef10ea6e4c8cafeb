/*
 * store_internal.h -- private: the td_store object and what the store's
 * source files export to each other.
 *
 * Calls between the files go one way, from the top of this list down
 * (tests/arch/layers.py checks it on the object files):
 *
 *   store_db.c       open/close: starts and stops the two threads
 *   store_write.c    appends (the store thread, group commit), deletes
 *   store_compact.c  compaction and its thread
 *   store_read.c     loads, raw reads, listings: never writes
 *   store_handle.c   the RocksDB handle: opening its families, the gate
 *   store_cache.c    the in-memory metadata cache
 *   store_queue.c    a queue served by one thread
 *   store_error.c    error codes and messages
 *   store_codec.c    keys and values, byte by byte (store_codec.h)
 *
 * The writer may queue documents for compaction; compaction never calls
 * back into the writer.
 *
 * Locks, in the order they may nest:
 *   db_gate   (rwlock) every use of db and cf[] holds it shared; the store
 *             thread holds it exclusively to close and reopen the database
 *             after a failed write (disk full);
 *   write_mu  serialises every RocksDB write that touches metadata (append
 *             groups, compactions, deletes) and guards the metadata cache,
 *             so a document's sequence numbers and sizes only move
 *             together with what is on disk;
 *   wq.mu     the appends waiting for the store thread;
 *   done_mu   the completions waiting for td_store_poll();
 *   cq.mu     the documents waiting for the compaction thread;
 *   state_mu  the reason the store cannot write (why_broken).
 * No callback into user code runs under any of them.
 */
#ifndef TD_STORE_INTERNAL_H
#define TD_STORE_INTERNAL_H

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <time.h>

#include "store_codec.h"
#include "tandem_store.h"
#include "tandem_yjs.h"

enum { TD_CF_DEFAULT, TD_CF_LOG, TD_CF_SNAP, TD_CF_META, TD_CF_OWNER, TD_CF_COUNT };

/* ---- store_queue.c: singly linked FIFOs --------------------------------- */

/* The first member of every queued item, so that a pointer to the item and
 * to its link convert into each other (C11 6.7.2.1p15). `size` is what the
 * item weighs against td_store_queue_take's limit. */
typedef struct td_store_link {
    struct td_store_link *next;
    size_t size;
} td_store_link;

typedef struct td_store_fifo {
    td_store_link *head;
    td_store_link **tail; /* &head when empty, else &last->next */
} td_store_fifo;

void td_store_fifo_init(td_store_fifo *q);
/* Appends the chain first..last (last->next is NULL). */
void td_store_fifo_put(td_store_fifo *q, td_store_link *first,
                       td_store_link *last);
/* Empties q; returns what it held as a NULL-terminated chain. */
td_store_link *td_store_fifo_take_all(td_store_fifo *q);

/* A FIFO served by one thread: producers put, the thread takes. */
typedef struct td_store_queue {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    td_store_fifo items;
    int drain;    /* on stop: 1 hands out what is queued first, 0 abandons it */
    int sleeping; /* the thread waits on cond: a put must signal */
    int stopping;
    int started;
    pthread_t thread;
} td_store_queue;

void td_store_queue_init(td_store_queue *q, int drain);
void td_store_queue_destroy(td_store_queue *q);
int td_store_queue_start(td_store_queue *q, void *(*fn)(void *), void *arg);
/* Queues one item and, if counter is not NULL, counts it there under the
 * queue's lock (so the thread never finishes an item not yet counted).
 * Returns -1, queueing nothing, once the queue is stopping. */
int td_store_queue_put(td_store_queue *q, td_store_link *item,
                       atomic_size_t *counter);
/* For the thread: waits for items and takes the first, and after it as
 * many as fit in max_size together (0: only the first). Returns NULL when
 * the thread is to end. */
td_store_link *td_store_queue_take(td_store_queue *q, size_t max_size);
/* The same, but gives up at deadline (CLOCK_MONOTONIC; NULL: never) and
 * returns NULL then. *ended is 1 when NULL means the thread is to end. */
td_store_link *td_store_queue_take_until(td_store_queue *q, size_t max_size,
                                         const struct timespec *deadline,
                                         int *ended);
/* Tells the thread to end, joins it, and returns what it left queued. Safe
 * on a queue whose thread never started. */
td_store_link *td_store_queue_stop(td_store_queue *q);

/* ---- store_cache.c: the metadata cache ---------------------------------- */

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
    /* The lowest stream position of an append that failed (0: none). The
     * stored position stays below it until that append is written again:
     * a later batch's position would claim the failed one is on disk. */
    uint64_t stream_gap;
    size_t id_len;
    char id[];
} td_store_ent;

/* Hash table of entries keyed by document id; every call with write_mu
 * held. */
typedef struct td_store_cache {
    td_store_ent **tab;
    size_t size; /* power of two, or 0 before the first insert */
    size_t count;
    uint8_t key[16]; /* SipHash key, random per open */
} td_store_cache;

void td_store_cache_init(td_store_cache *c);
void td_store_cache_free(td_store_cache *c);
/* The cached entry for doc; NULL if not cached. */
td_store_ent *td_store_cache_find(td_store_cache *c, const char *doc,
                                  size_t len);
/* Caches a copy of m (vv included) for doc, which must not be cached;
 * NULL if out of memory. */
td_store_ent *td_store_cache_add(td_store_cache *c, const char *doc,
                                 size_t len, const td_store_meta *m);
void td_store_cache_remove(td_store_cache *c, const char *doc, size_t len);

/* ---- the store ---------------------------------------------------------- */

/* One claim of a queued append: the owner value is encoded on the caller's
 * thread. The store thread links the claims of a group it stages. */
typedef struct td_store_req_claim {
    uint64_t agent;
    uint8_t *val; /* td_store_owner_value_encode bytes */
    size_t val_len;
    int skip;     /* the same owner is on disk already: nothing to write */
    const struct td_store_req *req;
    struct td_store_req_claim *staged_next;
} td_store_req_claim;

/* One queued append: header, then doc id, log value and vv bytes. */
typedef struct td_store_req {
    td_store_link link; /* first; link.size is val_len */
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
    size_t nclaims;
    td_store_kind kind;
    uint64_t stream_seq;
    int durable_elsewhere;
    td_store_req_claim *claims; /* one allocation with their values; or NULL */
    uint8_t data[];
} td_store_req;

#define TD_REQ_DOC(r) ((const char *)(r)->data)
#define TD_REQ_VAL(r) ((r)->data + (r)->doc_len)
#define TD_REQ_VV(r) ((r)->data + (r)->doc_len + (r)->val_len)

struct td_store {
    char *dir;
    td_store_options o;
    td_crdt_options crdt;
    int have_crdt;

    rocksdb_t *db;
    rocksdb_options_t *dbopts;
    rocksdb_column_family_handle_t *cf[TD_CF_COUNT];
    rocksdb_writeoptions_t *wo_append; /* per the durability mode */
    rocksdb_writeoptions_t *wo_unsynced; /* groups all durable elsewhere */
    rocksdb_writeoptions_t *wo_admin;  /* compactions, deletes: synced unless off */
    rocksdb_readoptions_t *ro;
    int nfamilies; /* TD_CF_COUNT, or TD_CF_OWNER: a read-only open of a
                      directory from before owner records (cf[OWNER] NULL) */

    /* db_gate: shared for every use of db, exclusive to reopen it */
    pthread_rwlock_t db_gate;
    /* A write failed with a RocksDB error (disk full, I/O error): appends
     * fail at once until the store thread has reopened the database. */
    atomic_int broken;
    pthread_mutex_t state_mu;
    char why_broken[384]; /* state_mu */

    /* write_mu: the metadata cache and every metadata-changing write */
    pthread_mutex_t write_mu;
    td_store_cache cache;
    uint64_t gen;     /* number of the append group being staged */
    int fail_writes;  /* test hook: fail the next N append writes */

    td_store_queue wq; /* appends waiting for the store thread (drains) */

    /* done_mu: completions waiting for td_store_poll */
    pthread_mutex_t done_mu;
    pthread_cond_t done_cond;
    td_store_fifo done;
    atomic_size_t outstanding;

    td_store_queue cq; /* documents waiting for the compaction thread */

    atomic_uint_fast64_t n_appends_ok, n_appends_failed, n_writes,
        n_synced_writes;
    atomic_uint_fast64_t n_compactions, n_compaction_errors;
};

/* ---- store_error.c ------------------------------------------------------ */

/* Fills *err (if not NULL) and returns code. */
td_store_err td_store_seterr(td_store_error *err, td_store_err code,
                             const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The messages several entry points share. */
td_store_err td_store_err_bad_id(td_store_error *err);
td_store_err td_store_err_read_only(const td_store *st, td_store_error *err);
td_store_err td_store_err_nomem(td_store_error *err);

/* ---- store_handle.c ----------------------------------------------------- */

/* The column family names, by TD_CF_*. */
extern const char *const td_store_cf_names[TD_CF_COUNT];
/* Opens st->db with the first st->nfamilies families (read-only if the
 * store is). Returns NULL, or RocksDB's error (rocksdb_free it); then db
 * and cf[] are NULL. */
char *td_store_handle_open(td_store *st);
/* Closes db and its family handles; safe when they are NULL. */
void td_store_handle_close(td_store *st);
/* Takes db_gate shared for a use of the database. Fails (TD_STORE_ERR_IO,
 * err set, gate not held) while the database is closed because reopening
 * it after a failed write did not work yet. */
td_store_err td_store_enter(td_store *st, td_store_error *err);
/* The start of an entry point about one document: a valid id, a store
 * open for writing if `write`, then td_store_enter. */
td_store_err td_store_enter_doc(td_store *st, const char *doc, size_t doc_len,
                                int write, td_store_error *err);
void td_store_leave(td_store *st);
/* Bytes of the regular files in dir whose names end in suffix (NULL: all). */
uint64_t td_store_dir_bytes(const char *dir, const char *suffix);

/* ---- store_read.c ------------------------------------------------------- */
/* `snap` is a RocksDB snapshot to read from, or NULL for the latest state. */

/* Reads the metadata of doc. TD_STORE_ERR_NOT_FOUND if absent. On success
 * *raw holds the value (free with rocksdb_free) and m points into it. */
td_store_err td_store_meta_get(td_store *st, const rocksdb_snapshot_t *snap,
                               const char *doc, size_t doc_len,
                               td_store_meta *m, char **raw,
                               td_store_error *err);
/* The same for a document that must exist: one whose metadata is gone but
 * whose log or snapshot is still there is corrupt, not absent. */
td_store_err td_store_meta_get_checked(td_store *st,
                                       const rocksdb_snapshot_t *snap,
                                       const char *doc, size_t doc_len,
                                       td_store_meta *m, char **raw,
                                       td_store_error *err);
/* 1 if any log entry of doc exists, 0 if none, -1 on error (err set). */
int td_store_log_exists(td_store *st, const rocksdb_snapshot_t *snap,
                        const char *doc, size_t doc_len, td_store_error *err);

/* Doc's owner record for agent: TD_STORE_OK with *owner pointing into
 * *raw (free with rocksdb_free), TD_STORE_ERR_NOT_FOUND, or an error. */
td_store_err td_store_owner_get(td_store *st, const char *doc, size_t doc_len,
                                uint64_t agent, char **raw, const char **owner,
                                size_t *owner_len, td_store_error *err);

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

/* The same for a Yjs document (TD_STORE_KIND_YJS). */
td_store_err td_store_load_yjs_at(td_store *st, const rocksdb_snapshot_t *snap,
                                  const char *doc, size_t doc_len,
                                  const td_yjs_options *opts, const td_store_meta *m,
                                  td_yjs_doc **out, td_store_scan_totals *totals,
                                  td_store_error *err);

/* ---- store_compact.c ---------------------------------------------------- */

int td_store_compactor_start(td_store *st);
void td_store_compactor_stop(td_store *st);
/* Due means a threshold is crossed. */
int td_store_compact_due(const td_store *st, const td_store_meta *m);
/* Queues ent for the compaction thread if it is due and neither queued nor
 * held back (write_mu held). */
void td_store_compactor_offer(td_store *st, td_store_ent *ent);

/* ---- store_write.c ------------------------------------------------------ */

int td_store_writer_start(td_store *st);
/* Lets the thread write everything still queued, then joins it. */
void td_store_writer_stop(td_store *st);

#endif /* TD_STORE_INTERNAL_H */
