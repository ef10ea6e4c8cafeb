/*
 * tandem_crdt.h -- the public API of tandem's document core.
 *
 * A document (td_crdt_doc) holds named root objects of three kinds -- text,
 * list and map -- and the objects nested inside them. Every change is an op
 * with an id (agent, seq): `agent` is the 64-bit id of the replica that made
 * it, `seq` counts that agent's ops from 0. A version vector (agent -> number
 * of that agent's ops seen) names a state.
 *
 * Local edits (td_crdt_text_insert, td_crdt_map_set, ...) apply at once and
 * are collected until td_crdt_commit() encodes them as one batch: the unit a
 * client sends, a server stores and rebroadcasts. td_crdt_apply() integrates a
 * batch from anywhere: it is idempotent (ops already seen are skipped),
 * order-free (a batch whose dependencies are missing waits in a bounded
 * pending set and is retried as they arrive) and all-or-nothing (a batch that
 * fails validation changes nothing).
 *
 * td_crdt_diff() encodes exactly the ops a peer at a given version vector
 * lacks, as a batch. td_crdt_snapshot_encode() encodes the whole state,
 * history included, canonically: two replicas that have seen the same ops
 * produce the same bytes. td_crdt_doc_load() builds a replica from it.
 *
 * Positions in text count Unicode code points; text is passed as UTF-8.
 * Every decoder validates its whole input; on error the document is exactly
 * as it was and td_crdt_doc_error() says why.
 *
 * The core does no I/O, keeps no global state and allocates only through the
 * hook in td_crdt_options, so it builds for wasm32-wasi as it does natively.
 * A td_crdt_doc is not thread-safe; distinct documents are independent.
 */
#ifndef TANDEM_CRDT_H
#define TANDEM_CRDT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum td_crdt_err {
    TD_CRDT_OK = 0,
    TD_CRDT_ERR_NOMEM,      /* the allocation hook returned NULL */
    TD_CRDT_ERR_ARG,        /* the caller passed an invalid argument */
    TD_CRDT_ERR_DECODE,     /* malformed, truncated or non-canonical encoding */
    TD_CRDT_ERR_VERSION,    /* encoding of an unknown format version */
    TD_CRDT_ERR_INVALID_OP, /* well-formed op that contradicts the document */
    TD_CRDT_ERR_LIMIT,      /* a bound was exceeded (pending set, nesting, sizes) */
    TD_CRDT_ERR_MISSING,    /* the batch depends on ops the document lacks (with
                               TD_CRDT_APPLY_NO_PARK; td_crdt_doc_error names one) */
    TD_CRDT_ERR_REFUSED     /* td_crdt_apply_opts.agent_check refused the batch */
} td_crdt_err;

/* Static name of an error code ("ok", "nomem", ...). */
const char *td_crdt_strerror(td_crdt_err err);

typedef enum td_crdt_kind {
    TD_CRDT_TEXT = 1,
    TD_CRDT_LIST = 2,
    TD_CRDT_MAP = 3
} td_crdt_kind;

/* realloc semantics: ptr NULL allocates, size 0 frees (and returns NULL). */
typedef void *(*td_crdt_alloc_fn)(void *ud, void *ptr, size_t size);

typedef struct td_crdt_options {
    td_crdt_alloc_fn alloc;   /* NULL: libc realloc/free */
    void *alloc_ud;
    uint64_t agent;           /* this replica's id; choose it at random */
    size_t max_pending_ops;   /* ops parked waiting for dependencies; 0: 1,000,000 */
    size_t max_pending_bytes; /* encoded bytes parked; 0: 64 MiB */
    size_t max_depth;         /* nesting depth of objects; 0: 64 */
    /* td_crdt_doc_load only. 0 (the default): a snapshot is untrusted input;
     * besides every piece, the loader checks that the whole describes a
     * history that could have happened (crdt/snapshot_check.c), the larger
     * part of a load's cost. 1: the caller knows the bytes are this
     * library's own encoding and intact (the store verifies its digest), so
     * that check is skipped (each piece is still validated on its own).
     * Never set it for bytes from the network or a file a user hands in.
     * A trusted load is also lazy (crdt/README.md): it decodes what reading
     * needs, and the first call that needs the history (an edit, apply,
     * commit, diff, snapshot_encode) decodes the rest; if that fails (out of
     * memory, bytes damaged after all) that call returns the error and the
     * document stays as it was. */
    int trusted_snapshot;
} td_crdt_options;

typedef struct td_crdt_doc td_crdt_doc;

/* Handle of an object inside one document; 0 is never a valid handle. */
typedef uint32_t td_crdt_obj;

typedef enum td_crdt_vtype {
    TD_CRDT_V_NONE = 0, /* absent (map_get of a missing key) */
    TD_CRDT_V_NULL,
    TD_CRDT_V_FALSE,
    TD_CRDT_V_TRUE,
    TD_CRDT_V_INT,
    TD_CRDT_V_FLOAT,
    TD_CRDT_V_STR,
    TD_CRDT_V_OBJ       /* a nested object: u.obj, of kind obj_kind */
} td_crdt_vtype;

typedef struct td_crdt_value {
    td_crdt_vtype type;
    td_crdt_kind obj_kind; /* for TD_CRDT_V_OBJ */
    union {
        int64_t i;
        double f;
        struct {
            const char *ptr; /* UTF-8, not NUL-terminated; valid until the next change */
            size_t len;
        } str;
        td_crdt_obj obj;
    } u;
} td_crdt_value;

/* Result of td_crdt_apply. */
typedef struct td_crdt_apply_info {
    size_t ops_applied;   /* new ops integrated (this batch and pending ones it released) */
    size_t ops_duplicate; /* ops of this batch that were already known */
    int parked;           /* 1 if this batch waits in the pending set */
    /* Parked, or refused with TD_CRDT_ERR_MISSING: the op it waits for. The
     * batch may integrate once td_crdt_vv_get(doc, wait_agent) > wait_seq
     * (it may then wait for another). */
    uint64_t wait_agent, wait_seq;
} td_crdt_apply_info;

/* ---- byte codec -------------------------------------------------------- */
/* The varints and UTF-8 rules of every tandem encoding, shared with storage/,
 * server/ and the clients so that each is written once (docs/FORMAT.md). */

#define TD_CRDT_VARINT_MAX 10
/* LEB128, least significant group first, always minimal. Returns the number
 * of bytes written (1..10). */
size_t td_crdt_varint_put(uint8_t out[TD_CRDT_VARINT_MAX], uint64_t v);
/* Reads the varint at p[*pos] (p has len bytes) and advances *pos. Returns
 * TD_CRDT_ERR_DECODE, leaving *pos and *out alone, if it is truncated, longer
 * than 64 bits or not minimal (a trailing zero group): one value, one encoding. */
td_crdt_err td_crdt_varint_get(const uint8_t *p, size_t len, size_t *pos, uint64_t *out);
/* 1 if [p, p+len) is valid UTF-8 (RFC 3629: no overlongs, no surrogates,
 * nothing past U+10FFFF). */
int td_crdt_utf8_valid(const uint8_t *p, size_t len);

/* ---- documents ---------------------------------------------------------- */

td_crdt_err td_crdt_doc_new(const td_crdt_options *opts, td_crdt_doc **out);
/* Builds a replica from a snapshot (td_crdt_snapshot_encode). opts->agent is
 * the new replica's own agent; its seq continues after what the snapshot
 * holds of it. On error *out is NULL and *errmsg (if errmsg is not NULL)
 * points to a static description. */
td_crdt_err td_crdt_doc_load(const td_crdt_options *opts, const uint8_t *snap,
                             size_t len, td_crdt_doc **out, const char **errmsg);
void td_crdt_doc_free(td_crdt_doc *doc);

/* Message of the last failing call on this document (never NULL). */
const char *td_crdt_doc_error(const td_crdt_doc *doc);
uint64_t td_crdt_doc_agent(const td_crdt_doc *doc);
/* Frees a buffer returned by this API for this document. */
void td_crdt_buf_free(td_crdt_doc *doc, void *buf);

/* ---- objects ------------------------------------------------------------ */

/* Gets the root object (kind, name), creating it locally if needed. Roots
 * need no op: the same (kind, name) is the same object on every replica.
 * name is 1..255 bytes of UTF-8. */
td_crdt_err td_crdt_root(td_crdt_doc *doc, td_crdt_kind kind, const char *name,
                         size_t name_len, td_crdt_obj *out);
/* Kind of an object, or 0 if the handle is invalid. */
td_crdt_kind td_crdt_obj_kind(const td_crdt_doc *doc, td_crdt_obj obj);

/* ---- text --------------------------------------------------------------- */

td_crdt_err td_crdt_text_insert(td_crdt_doc *doc, td_crdt_obj text, size_t pos,
                                const char *utf8, size_t len);
td_crdt_err td_crdt_text_delete(td_crdt_doc *doc, td_crdt_obj text, size_t pos,
                                size_t count);
/* Length in code points (0 for an invalid handle). */
size_t td_crdt_text_length(const td_crdt_doc *doc, td_crdt_obj text);
/* The text as UTF-8, NUL-terminated, allocated for the caller (free with
 * td_crdt_buf_free); *len excludes the NUL. */
td_crdt_err td_crdt_text_get(td_crdt_doc *doc, td_crdt_obj text, char **out,
                             size_t *len);

/* ---- list --------------------------------------------------------------- */

/* Inserts n scalar values (not TD_CRDT_V_OBJ) before position pos. */
td_crdt_err td_crdt_list_insert(td_crdt_doc *doc, td_crdt_obj list, size_t pos,
                                const td_crdt_value *vals, size_t n);
/* Inserts a new empty nested object before position pos. */
td_crdt_err td_crdt_list_insert_obj(td_crdt_doc *doc, td_crdt_obj list,
                                    size_t pos, td_crdt_kind kind,
                                    td_crdt_obj *out);
td_crdt_err td_crdt_list_delete(td_crdt_doc *doc, td_crdt_obj list, size_t pos,
                                size_t count);
size_t td_crdt_list_length(const td_crdt_doc *doc, td_crdt_obj list);
td_crdt_err td_crdt_list_get(const td_crdt_doc *doc, td_crdt_obj list,
                             size_t pos, td_crdt_value *out);

/* ---- map ---------------------------------------------------------------- */

/* Keys are 1..65535 bytes. A scalar value (not TD_CRDT_V_OBJ). */
td_crdt_err td_crdt_map_set(td_crdt_doc *doc, td_crdt_obj map, const char *key,
                            size_t key_len, const td_crdt_value *val);
td_crdt_err td_crdt_map_set_obj(td_crdt_doc *doc, td_crdt_obj map,
                                const char *key, size_t key_len,
                                td_crdt_kind kind, td_crdt_obj *out);
td_crdt_err td_crdt_map_delete(td_crdt_doc *doc, td_crdt_obj map,
                               const char *key, size_t key_len);
/* out->type is TD_CRDT_V_NONE when the key is absent. */
td_crdt_err td_crdt_map_get(const td_crdt_doc *doc, td_crdt_obj map,
                            const char *key, size_t key_len, td_crdt_value *out);
/* Live keys, in bytewise key order: entries 0 .. size-1. */
size_t td_crdt_map_size(const td_crdt_doc *doc, td_crdt_obj map);
td_crdt_err td_crdt_map_entry(const td_crdt_doc *doc, td_crdt_obj map,
                              size_t index, const char **key, size_t *key_len,
                              td_crdt_value *out);

/* ---- change events -------------------------------------------------------- */

typedef enum td_crdt_event_kind {
    TD_CRDT_EV_INSERT = 1, /* count items became visible at pos */
    TD_CRDT_EV_DELETE = 2, /* count visible items at pos were deleted */
    TD_CRDT_EV_KEY = 3     /* key of a map got a new value (or was deleted) */
} td_crdt_event_kind;

typedef struct td_crdt_event {
    td_crdt_event_kind kind;
    td_crdt_obj obj;
    size_t pos, count;  /* INSERT, DELETE: visible positions at that moment */
    const char *key;    /* KEY */
    size_t key_len;
    int local;          /* 1 for a local edit, 0 when integrating a batch */
} td_crdt_event;

/* Called synchronously for every visible change, in order: replaying the
 * events on a copy of the old state gives the new one. The observer must
 * not change the document. fn NULL removes it. */
typedef void (*td_crdt_observer_fn)(void *ud, const td_crdt_event *ev);
void td_crdt_set_observer(td_crdt_doc *doc, td_crdt_observer_fn fn, void *ud);

/* ---- batches, version vectors, snapshots -------------------------------- */

/* Encodes the local ops made since the last commit as one batch. *out is
 * NULL and *len 0 when there are none. */
td_crdt_err td_crdt_commit(td_crdt_doc *doc, uint8_t **out, size_t *len);
/* Integrates a batch (from td_crdt_commit or td_crdt_diff). info may be NULL.
 * A batch that fails validation (DECODE, VERSION, INVALID_OP, LIMIT) changes
 * nothing. If memory runs out while a valid batch is being integrated
 * (NOMEM), the ops integrated so far stay: they form a causally complete
 * prefix of the batch, the version vector says exactly which, the document
 * is consistent, and applying the same batch again completes it
 * (td_crdt_apply_partial says whether anything stayed). A parked batch is
 * retried only once the document has the op it waits for. */
td_crdt_err td_crdt_apply(td_crdt_doc *doc, const uint8_t *batch, size_t len,
                          td_crdt_apply_info *info);
/* Options of td_crdt_apply_ex. */
enum {
    /* Never park: a batch is applied only if all of it integrates now (every
     * origin, delete target and parent object is in the document or earlier in
     * the batch, and each agent's new ops start exactly at the document's
     * version for that agent). Otherwise TD_CRDT_ERR_MISSING, nothing changed,
     * and td_crdt_doc_error names a missing dependency. For servers, which
     * must not acknowledge a batch they cannot integrate. */
    TD_CRDT_APPLY_NO_PARK = 1
};
typedef struct td_crdt_apply_opts {
    unsigned flags; /* TD_CRDT_APPLY_* */
    /* NULL, or called after the batch is validated and before anything
     * changes, once per agent of which the batch holds ops the document lacks:
     * seqs [from, to), from being the document's count for that agent. Nonzero
     * refuses the whole batch: td_crdt_apply_ex returns TD_CRDT_ERR_REFUSED
     * and nothing changed. A server binds agents to authors with it. Parked
     * batches retried later are not checked again (they were when they came). */
    int (*agent_check)(void *ud, uint64_t agent, uint64_t from, uint64_t to);
    void *ud;
} td_crdt_apply_opts;
/* td_crdt_apply with options (opts NULL: td_crdt_apply). The batch is decoded
 * and validated once. Errors: those of td_crdt_apply, plus MISSING (NO_PARK)
 * and REFUSED (agent_check); neither changes anything. */
td_crdt_err td_crdt_apply_ex(td_crdt_doc *doc, const uint8_t *batch, size_t len,
                             const td_crdt_apply_opts *opts, td_crdt_apply_info *info);
/* After td_crdt_apply(_ex) returned TD_CRDT_ERR_NOMEM: 1 if a causal prefix
 * of the batch stayed integrated (the document changed: a server that stores
 * batches must reload it, a client may apply the same batch again to
 * complete it), 0 if nothing changed. Reset by every apply call. */
int td_crdt_apply_partial(const td_crdt_doc *doc);
/* Ops waiting in the pending set. */
size_t td_crdt_pending_ops(const td_crdt_doc *doc);

/* Commits a prefix of the pending local ops as one batch of at most max_bytes
 * (at least one op, even if that op alone is larger: a single item -- one
 * map write, one list element -- may exceed it, a run of text or list items
 * is split). *more is 1 while local ops remain uncommitted: call again. Each
 * batch applies on its own at a replica that has the earlier ones, also with
 * TD_CRDT_APPLY_NO_PARK; a run split across batches is still one run (same
 * ids, same result). *out is NULL and *len 0 when nothing is pending. */
td_crdt_err td_crdt_commit_max(td_crdt_doc *doc, size_t max_bytes, uint8_t **out,
                               size_t *len, int *more);
/* Like td_crdt_diff, but a causal prefix of at most max_bytes (the same rule
 * as td_crdt_commit_max) of what a peer at vv lacks. *next_vv (the
 * td_crdt_vv_encode format, free with td_crdt_buf_free) is vv plus that
 * prefix: pass it to get the rest. *done is 1 when nothing is left after
 * this batch (then *out may be NULL: nothing was lacking). Each batch
 * applies, in order, at the peer with TD_CRDT_APPLY_NO_PARK. */
td_crdt_err td_crdt_diff_max(td_crdt_doc *doc, const uint8_t *vv, size_t vv_len,
                             size_t max_bytes, uint8_t **out, size_t *len,
                             uint8_t **next_vv, size_t *next_len, int *done);

/* The version vector, encoded (a count, then agent and seq count pairs in
 * agent order). */
td_crdt_err td_crdt_vv_encode(const td_crdt_doc *doc, uint8_t **out, size_t *len);
/* Number of ops of `agent` this document has integrated. */
uint64_t td_crdt_vv_get(const td_crdt_doc *doc, uint64_t agent);
/* Total ops integrated, over all agents. */
uint64_t td_crdt_op_count(const td_crdt_doc *doc);
/* A batch holding exactly the ops a peer whose version vector is `vv` (as
 * encoded by td_crdt_vv_encode; len 0 means empty) lacks. *out is NULL and
 * *len 0 when it lacks none. */
td_crdt_err td_crdt_diff(td_crdt_doc *doc, const uint8_t *vv, size_t vv_len,
                         uint8_t **out, size_t *len);

/* The whole document, history included, canonically encoded. */
td_crdt_err td_crdt_snapshot_encode(td_crdt_doc *doc, uint8_t **out, size_t *len);

/* The document's content as JSON: an object whose keys are root names (in
 * byte order; a name used by several kinds gets the suffix "@text", "@list"
 * or "@map"), text as strings, lists as arrays, maps as objects. NUL-
 * terminated; *len excludes the NUL. */
td_crdt_err td_crdt_to_json(td_crdt_doc *doc, char **out, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* TANDEM_CRDT_H */
