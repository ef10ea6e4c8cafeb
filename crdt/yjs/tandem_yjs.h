/*
 * tandem_yjs.h -- a Yjs document in C: integrates, diffs and encodes Yjs
 * updates (format v1, as y-websocket and Hocuspocus send them) exactly as
 * the JavaScript `yjs` package does.
 *
 * This is the second document model beside crdt/tandem_crdt.h, under the
 * same rules: pure C11, no I/O, no global state, every allocation through
 * the hook in td_yjs_options, builds natively and for wasm32-wasi. Every
 * input is validated before anything changes: td_yjs_apply_update() either
 * integrates the update (possibly parking the parts whose dependencies have
 * not arrived, in a bounded pending set) or returns an error with the
 * document exactly as it was.
 *
 * What is covered and every deliberate difference from Yjs: docs/YJS.md.
 * The internals: crdt/yjs/README.md.
 *
 * A td_yjs_doc is not thread-safe; distinct documents are independent.
 */
#ifndef TANDEM_YJS_H
#define TANDEM_YJS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum td_yjs_err {
    TD_YJS_OK = 0,
    TD_YJS_ERR_NOMEM,   /* the allocation hook returned NULL */
    TD_YJS_ERR_ARG,     /* the caller passed an invalid argument */
    TD_YJS_ERR_DECODE,  /* malformed or truncated update / state vector */
    TD_YJS_ERR_INVALID, /* well-formed, but contradicts the document */
    TD_YJS_ERR_LIMIT    /* a bound was exceeded (pending set, nesting, sizes) */
} td_yjs_err;

/* Static name of an error code ("ok", "nomem", ...). */
const char *td_yjs_strerror(td_yjs_err err);

/* realloc semantics: ptr NULL allocates, size 0 frees (and returns NULL). */
typedef void *(*td_yjs_alloc_fn)(void *ud, void *ptr, size_t size);

typedef struct td_yjs_options {
    td_yjs_alloc_fn alloc;    /* NULL: libc realloc/free */
    void *alloc_ud;
    /* The pending set: structs and delete ranges parked for missing
     * dependencies, and the bytes they hold. An update is refused (LIMIT,
     * nothing changed) when the pending set plus all of the update could
     * pass a bound, so one update carries at most this many structs and
     * delete ranges. 0: 1,000,000 and 64 MiB. */
    size_t max_pending_structs;
    size_t max_pending_bytes;
    size_t max_depth;           /* nesting of Any values and of types; 0: 64 */
    int no_gc;                  /* 1: keep deleted content (Yjs's gc: false) */
} td_yjs_options;

typedef struct td_yjs_doc td_yjs_doc;

/* opts may be NULL (defaults). */
td_yjs_err td_yjs_doc_new(const td_yjs_options *opts, td_yjs_doc **out);
void td_yjs_doc_free(td_yjs_doc *doc);

/* Why the last call on doc failed (static or doc-owned; valid until the
 * next call). "" after success. */
const char *td_yjs_doc_error(const td_yjs_doc *doc);

/* Applies one update in format v1 (Y.encodeStateAsUpdate, the updates of
 * doc.on('update'), Y.mergeUpdates). Structs and deletions whose
 * dependencies are missing wait in the pending set and are integrated as
 * soon as the dependencies arrive, as in Yjs. Duplicates are harmless.
 * On DECODE, LIMIT or ARG nothing changed. On NOMEM the document may hold
 * part of the update: it stays safe to read and free, but should be
 * discarded and loaded again. */
td_yjs_err td_yjs_apply_update(td_yjs_doc *doc, const uint8_t *update, size_t len);

/* Checks that bytes are a well-formed v1 update without applying it. */
td_yjs_err td_yjs_update_check(const uint8_t *update, size_t len, const char **errmsg);

/* Y.encodeStateVector(doc): allocated for the caller (td_yjs_buf_free). */
td_yjs_err td_yjs_encode_state_vector(td_yjs_doc *doc, uint8_t **out, size_t *len);

/* Y.encodeStateAsUpdate(doc, sv): everything doc has that the state vector
 * sv (encoded, as td_yjs_encode_state_vector writes it) lacks, plus the
 * whole delete set, plus the pending set, as one v1 update. sv NULL or
 * empty: the whole document. */
td_yjs_err td_yjs_encode_state_as_update(td_yjs_doc *doc, const uint8_t *sv,
                                         size_t sv_len, uint8_t **out, size_t *len);

enum {
    TD_YJS_JSON_DELTA = 1 /* texts as Quill deltas with attributes */
};

/* The document as JSON: an object with one member per root type that has
 * visible content, in the order of their names. Yjs does not encode a
 * root's kind; the rule that infers it from the visible content is in
 * docs/YJS.md. NUL-terminated, allocated for the caller (td_yjs_buf_free);
 * *len excludes the NUL. */
td_yjs_err td_yjs_to_json(td_yjs_doc *doc, int flags, char **out, size_t *len);

void td_yjs_buf_free(td_yjs_doc *doc, void *buf);

typedef struct td_yjs_stats {
    size_t clients;          /* clients in the state vector */
    size_t structs;          /* structs held (items and GC runs) */
    size_t pending_structs;  /* structs waiting for dependencies */
    size_t pending_deletes;  /* delete ranges waiting for their structs */
    size_t pending_bytes;
    size_t bytes;            /* bytes allocated through the hook, now */
} td_yjs_stats;

void td_yjs_doc_stats(const td_yjs_doc *doc, td_yjs_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* TANDEM_YJS_H */
