/*
 * tandem_store.h -- the public API of tandem's durable document store.
 *
 * A store is one data directory: a RocksDB database with four column
 * families of documents (plus RocksDB's default one for the format marker).
 * Per document it keeps
 *   - an op log ("log"): one entry per accepted batch, keyed by the document
 *     id and a big-endian server sequence (1, 2, 3, ...), so one document's
 *     log is one range scan;
 *   - a snapshot ("snap"): td_crdt_snapshot_encode() bytes, the sequence they
 *     cover and a BLAKE2b-256 checksum;
 *   - metadata ("meta"): last sequence, snapshot sequence, sizes and the
 *     version vector;
 *   - owner records ("owner"): which author owns each agent id of the
 *     document, written with the batch that introduced the agent.
 * Every value carries a format byte and a BLAKE2b checksum that also covers
 * the document id, and everything read back is validated like network input:
 * a damaged value is an error naming the document and the key, never a
 * crash and never a silently empty document.
 *
 * Appends are asynchronous. td_store_append() copies the batch into a queue
 * and returns at once; a store thread takes everything waiting, writes it as
 * one RocksDB WriteBatch (log entries plus the metadata of every document
 * touched) with the sync the durability mode asks for, and then completes
 * each request. Completions are delivered on the caller's side: the store
 * calls the `wake` hook of td_store_options from its thread (a server passes
 * a function calling lws_cancel_service()), and the event loop calls
 * td_store_poll(), which runs the append callbacks on the loop's thread. A
 * failed write completes every request in it with an error and changes
 * nothing, in RocksDB or in memory: the caller must not acknowledge them.
 *
 * Compaction folds the log into a new snapshot once a document's log holds
 * `compact_ops` ops (or an eighth of the snapshot's ops, if that is more)
 * or `compact_bytes` bytes; with TD_STORE_COMPACT_AUTO a
 * second thread does that in the background. Loads read the snapshot plus
 * the log tail after it.
 *
 * Thread safety: a td_store may be used from any thread; callbacks run on
 * whichever thread calls td_store_poll(). Loads, lists, compactions and
 * checkpoints run on the calling thread and see a consistent RocksDB
 * snapshot.
 */
#ifndef TANDEM_STORE_H
#define TANDEM_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "tandem_crdt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum td_store_err {
    TD_STORE_OK = 0,
    TD_STORE_ERR_NOMEM,     /* out of memory */
    TD_STORE_ERR_ARG,       /* invalid argument (document id, option, ...) */
    TD_STORE_ERR_IO,        /* RocksDB or the file system reported an error */
    TD_STORE_ERR_LOCKED,    /* the data directory is in use by another process */
    TD_STORE_ERR_VERSION,   /* the data directory has another format version */
    TD_STORE_ERR_NOT_FOUND, /* no such document / data directory */
    TD_STORE_ERR_CORRUPT,   /* a stored value failed validation */
    TD_STORE_ERR_EXISTS,    /* the target (checkpoint directory) already exists */
    TD_STORE_ERR_CLOSED,    /* the store is shutting down */
    TD_STORE_ERR_BUSY,      /* another compaction of the document won the race */
    TD_STORE_ERR_KIND       /* the document is of another kind (td_store_kind) */
} td_store_err;

/* What model a document's records are written in. Recorded in its
 * metadata by its first append and never changed: an append or a load of
 * the other kind fails with TD_STORE_ERR_KIND. Documents written before
 * kinds existed are tandem documents. */
typedef enum td_store_kind {
    TD_STORE_KIND_TANDEM = 0, /* crdt/tandem_crdt.h batches and snapshots */
    TD_STORE_KIND_YJS = 1     /* Yjs v1 updates; the snapshot is one whole-document update */
} td_store_kind;
#define TD_STORE_KIND_COUNT 2
/* "tandem" or "yjs". */
const char *td_store_kind_name(td_store_kind k);

/* An error code and a message that names what was wrong (document, key,
 * path). Every function taking a td_store_error * accepts NULL. */
typedef struct td_store_error {
    td_store_err code;
    char msg[512];
} td_store_error;

/* Static name of an error code ("ok", "corrupt", ...). */
const char *td_store_strerror(td_store_err err);

typedef enum td_store_durability {
    TD_STORE_SYNC_GROUP = 0, /* default: appends waiting together share one fsync */
    TD_STORE_SYNC_ALWAYS,    /* one fsync'ed write per append */
    TD_STORE_SYNC_OFF        /* no fsync: survives a process crash, not a power loss */
} td_store_durability;

/* "always", "group" or "off"; returns 0 on success, -1 if unknown. */
int td_store_durability_parse(const char *name, td_store_durability *out);
const char *td_store_durability_name(td_store_durability d);

typedef enum td_store_compact_mode {
    TD_STORE_COMPACT_AUTO = 0, /* default: a background thread compacts due documents */
    TD_STORE_COMPACT_MANUAL    /* only td_store_compact() compacts */
} td_store_compact_mode;

/* All-zero options are the safe defaults. */
typedef struct td_store_options {
    td_store_durability durability;
    td_store_compact_mode compaction;
    int create_if_missing; /* create the data directory if it does not exist */
    int read_only;         /* open without the lock; appends, compactions fail */
    uint64_t compact_ops;   /* compact once the log holds this many ops (or an eighth
                             * of the snapshot's, if more); 0: 10,000 */
    uint64_t compact_bytes; /* ... or this many bytes; 0: 4 MiB */
    /* Called on the store thread whenever completions are ready for
     * td_store_poll(). Must be cheap and thread-safe (lws_cancel_service). */
    void (*wake)(void *ud);
    void *wake_ud;
    /* Options for documents the store builds itself (loads for compaction).
     * NULL: the core's defaults. The pointed-to struct is copied. */
    const td_crdt_options *crdt;
} td_store_options;

typedef struct td_store td_store;

/* Opens (or creates, with create_if_missing) the data directory `dir`.
 * Errors: TD_STORE_ERR_LOCKED if another process holds it, _VERSION if it
 * was written by an incompatible format, _NOT_FOUND if it does not exist,
 * _CORRUPT if it is not a tandem data directory. */
td_store_err td_store_open(const char *dir, const td_store_options *opts,
                           td_store **out, td_store_error *err);
/* Writes every queued append, runs the callbacks still waiting (on the
 * calling thread), stops the threads and closes the database. */
void td_store_close(td_store *st);

/* Document ids are 1..255 bytes of valid UTF-8 without control characters
 * (U+0000..U+001F, U+007F). Returns 1 if valid. */
int td_store_doc_id_valid(const char *id, size_t len);
#define TD_STORE_DOC_ID_MAX 255

/* ---- appends ------------------------------------------------------------ */

/* One agent id of a document bound to its author (a user name). */
typedef struct td_store_claim {
    uint64_t agent;
    const char *owner; /* 1..255 bytes of valid UTF-8 */
    size_t owner_len;
} td_store_claim;
#define TD_STORE_OWNER_MAX 255
#define TD_STORE_CLAIMS_MAX 65536 /* claims per batch */

typedef struct td_store_batch {
    const char *doc;    /* document id */
    size_t doc_len;
    const uint8_t *ops; /* the encoded batch (td_crdt_commit / td_crdt_diff bytes) */
    size_t ops_len;     /* 1 .. 64 MiB */
    uint64_t nops;      /* ops in the batch (counts towards compact_ops) */
    /* The document's version vector after this batch (td_crdt_vv_encode),
     * stored in the metadata; NULL/0 keeps the previous one. */
    const uint8_t *vv;
    size_t vv_len;
    /* New owner records, written in the same WriteBatch as the log entry:
     * the batch and its bindings are stored together or not at all. A
     * claim for an agent that already has an owner (on disk, or claimed by
     * an append written before it) must name the same owner, else the
     * append fails with TD_STORE_ERR_ARG and nothing of it is written.
     * NULL/0: none. */
    const td_store_claim *claims;
    size_t nclaims;
    /* The document's kind: set by its first append, checked by the others
     * (TD_STORE_ERR_KIND when it differs, nothing written). */
    td_store_kind kind;
    /* Cluster mode: the JetStream stream sequence up to which this node has
     * now stored the document's subject, kept in its metadata in the same
     * WriteBatch (so it never claims more than the disk holds) and through
     * compaction; td_store_doc_info.stream_seq gives it back. 0, or one
     * below the stored value, keeps the stored value. After an append
     * with a position failed, no later position is stored until that
     * append (the same position) is written. */
    uint64_t stream_seq;
    /* 1: another system already keeps this batch durably (cluster mode: a
     * batch another node published, held by JetStream), so its write need
     * not wait for a sync; if a power loss takes it, the node reads it
     * again from the stream position stored with it. A group is synced
     * when any of its appends is not durable elsewhere, and a later synced
     * write makes every earlier one durable too (the write-ahead log is
     * one file, synced in order). */
    int durable_elsewhere;
} td_store_batch;

typedef struct td_store_ack {
    const char *doc;  /* valid during the callback only */
    size_t doc_len;
    uint64_t seq;     /* server sequence assigned to the batch (0 on error) */
    td_store_err code;
    const char *msg;  /* "" on success */
    int compact_due;  /* the document's log crossed a compaction threshold */
} td_store_ack;

typedef void (*td_store_append_cb)(void *ud, const td_store_ack *ack);

/* Queues one batch; the store copies everything it needs. The callback runs
 * from td_store_poll() once the batch is durable (per the durability mode)
 * or has failed. An error returned here means the batch was not queued and
 * the callback will not run. */
td_store_err td_store_append(td_store *st, const td_store_batch *b,
                             td_store_append_cb cb, void *ud,
                             td_store_error *err);
/* Runs the callbacks of completed appends on the calling thread. Waits up to
 * timeout_ms for at least one (0: do not wait; -1: wait until one arrives or
 * nothing is outstanding). Returns the number of callbacks run. */
size_t td_store_poll(td_store *st, int timeout_ms);
/* Appends and waits for the result (polls, so other completions run too).
 * For tools and tests, not for an event loop. */
td_store_err td_store_append_wait(td_store *st, const td_store_batch *b,
                                  uint64_t *seq, td_store_error *err);
/* Appends queued or completed but not yet polled. */
size_t td_store_outstanding(td_store *st);

/* ---- reads -------------------------------------------------------------- */

typedef struct td_store_doc_info {
    const char *doc;       /* valid during a list callback only */
    size_t doc_len;
    uint64_t last_seq;     /* sequence of the newest log entry (0: none yet) */
    uint64_t snap_seq;     /* sequence the snapshot covers (0: no snapshot) */
    uint64_t log_entries;  /* entries after the snapshot */
    uint64_t log_ops;      /* ops in those entries */
    uint64_t log_bytes;    /* stored bytes of those entries */
    uint64_t snap_ops;     /* ops in the snapshot */
    uint64_t snap_bytes;   /* stored bytes of the snapshot */
    size_t vv_len;         /* length of the stored version vector */
    td_store_kind kind;
    uint64_t stream_seq;   /* td_store_batch.stream_seq (0: none stored) */
    /* td_store_list: TD_STORE_OK, or the error that made this document's
     * metadata unreadable (msg says why); the listing goes on. */
    td_store_err status;
    const char *msg;
} td_store_doc_info;

/* Calls cb for each document in byte order of the id. cb returns 0 to go
 * on, non-zero to stop. */
typedef int (*td_store_list_cb)(void *ud, const td_store_doc_info *info);
td_store_err td_store_list(td_store *st, td_store_list_cb cb, void *ud,
                           td_store_error *err);
/* Metadata of one document; fields as in td_store_list (doc points to the
 * caller's id). TD_STORE_ERR_NOT_FOUND if it has none. */
td_store_err td_store_doc_stat(td_store *st, const char *doc, size_t doc_len,
                               td_store_doc_info *info, td_store_error *err);

/* Builds the document from its snapshot and log tail (td_crdt_doc_load, then
 * td_crdt_apply of each entry). opts as for td_crdt_doc_new (NULL: defaults).
 * TD_STORE_ERR_NOT_FOUND if the document does not exist; _CORRUPT, naming
 * the document and the key, if any stored piece (owner records included)
 * fails validation or the core rejects it. info (may be NULL) receives the
 * metadata. */
td_store_err td_store_load(td_store *st, const char *doc, size_t doc_len,
                           const td_crdt_options *opts, td_crdt_doc **out,
                           td_store_doc_info *info, td_store_error *err);

/* The same for a Yjs document (TD_STORE_KIND_YJS): the snapshot (one
 * whole-document update) and then each log entry applied with
 * td_yjs_apply_update, through one consistent view. opts as for
 * td_yjs_doc_new (NULL: defaults). A tandem document is
 * TD_STORE_ERR_KIND, as is a Yjs document given to td_store_load. */
struct td_yjs_options;
struct td_yjs_doc;
td_store_err td_store_load_yjs(td_store *st, const char *doc, size_t doc_len,
                               const struct td_yjs_options *opts,
                               struct td_yjs_doc **out, td_store_doc_info *info,
                               td_store_error *err);

/* Calls fn for every owner record (agent, owner) of document doc, in agent
 * order, through one consistent view. fn returns 0 to go on, a positive
 * value to stop (td_store_owners then returns TD_STORE_OK), a negative one
 * when it failed (out of memory: td_store_owners returns
 * TD_STORE_ERR_NOMEM). A document without owner records (or none at all)
 * gives no calls and TD_STORE_OK. A damaged record is TD_STORE_ERR_CORRUPT
 * naming the document and the key (owner/doc/agent). `owner` is valid
 * during the call only and is not NUL-terminated. */
td_store_err td_store_owners(td_store *st, const char *doc, size_t doc_len,
                             int (*fn)(void *ud, uint64_t agent,
                                       const char *owner, size_t len),
                             void *ud, td_store_error *err);

/* The stored version vector (copy; free with td_store_free). */
td_store_err td_store_read_vv(td_store *st, const char *doc, size_t doc_len,
                              uint8_t **out, size_t *len, td_store_error *err);

/* The ops a peer at version vector `vv` (td_crdt_vv_encode bytes; len 0:
 * empty) lacks, as one batch (td_crdt_diff of the loaded document). *out is
 * NULL and *len 0 if it lacks none. Free with td_store_free. */
td_store_err td_store_read_missing(td_store *st, const char *doc,
                                   size_t doc_len, const uint8_t *vv,
                                   size_t vv_len, const td_crdt_options *opts,
                                   uint8_t **out, size_t *len,
                                   td_store_error *err);

/* The raw pieces, validated but not decoded by the core: the snapshot (NULL
 * and 0 if none; *seq receives the sequence it covers) ... */
td_store_err td_store_read_snapshot(td_store *st, const char *doc,
                                    size_t doc_len, uint8_t **out, size_t *len,
                                    uint64_t *seq, td_store_error *err);
/* ... and the log entries with seq > after_seq, in order. cb returns 0 to go
 * on, non-zero to stop. */
typedef int (*td_store_log_cb)(void *ud, uint64_t seq, const uint8_t *ops,
                               size_t len, uint64_t nops);
td_store_err td_store_read_log(td_store *st, const char *doc, size_t doc_len,
                               uint64_t after_seq, td_store_log_cb cb,
                               void *ud, td_store_error *err);

/* Frees a buffer returned by this API. */
void td_store_free(void *buf);

/* ---- maintenance -------------------------------------------------------- */

typedef struct td_store_compact_info {
    int compacted;          /* 0 if nothing was due (or the log was empty) */
    uint64_t snap_seq;      /* sequence the new snapshot covers */
    uint64_t folded_entries;
    uint64_t folded_bytes;
    uint64_t snap_bytes;    /* size of the new snapshot value */
    /* Not compacted because this many ops wait in the pending set for
     * missing dependencies (a snapshot does not hold them). */
    uint64_t pending_ops;
} td_store_compact_info;

/* Folds the document's log into a new snapshot and deletes the folded
 * entries, in one WriteBatch. Only when a threshold is crossed unless force.
 * Appends may continue meanwhile: entries after the folded range stay. */
td_store_err td_store_compact(td_store *st, const char *doc, size_t doc_len,
                              int force, td_store_compact_info *info,
                              td_store_error *err);
/* Asks RocksDB to rewrite its files so that deleted and folded data leaves
 * the disk (a full manual compaction; slow on big stores). */
td_store_err td_store_compact_files(td_store *st, td_store_error *err);

/* Deletes the document (log, snapshot, metadata, owner records) in one
 * WriteBatch. Appends
 * for it still queued re-create it: delete documents nobody has open. */
td_store_err td_store_delete(td_store *st, const char *doc, size_t doc_len,
                             td_store_error *err);

/* A RocksDB checkpoint of the whole store into `dir` (must not exist),
 * usable as a data directory as it is. */
td_store_err td_store_checkpoint(td_store *st, const char *dir,
                                 td_store_error *err);

typedef struct td_store_stats {
    uint64_t appends_ok;
    uint64_t appends_failed;
    uint64_t writes;         /* RocksDB writes for appends (groups) */
    uint64_t synced_writes;  /* of those, the ones that waited for a sync */
    uint64_t compactions;
    uint64_t compaction_errors;
    uint64_t disk_bytes;     /* bytes of all files in the data directory */
} td_store_stats;

void td_store_get_stats(td_store *st, td_store_stats *out);

/* 1 if the store can write. 0 if it cannot -- open read-only, or a write
 * failed (disk full, I/O error) and the store is waiting to recover -- and
 * then `why` (if not NULL) receives a one-line reason. While it cannot
 * write, td_store_append fails at once with TD_STORE_ERR_IO; the store
 * thread retries every second (it reopens the database once the file
 * system has room again) and appends work again when that succeeds.
 * Cheap and thread-safe: meant for a health check. */
int td_store_writable(td_store *st, char *why, size_t whylen);

#ifdef __cplusplus
}
#endif

#endif /* TANDEM_STORE_H */
