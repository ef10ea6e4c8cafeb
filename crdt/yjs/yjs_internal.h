/*
 * yjs_internal.h -- the private structures of crdt/yjs/ (README.md there
 * explains them; docs/YJS.md says what is covered).
 *
 * The model mirrors Yjs's own, so that every rule of Item.integrate,
 * splitItem, tryToMergeWithLefts and the garbage collector can be kept as
 * Yjs keeps it:
 *
 *   - a struct (yj_item) is an Item or a GC run; Skip exists only in the
 *     wire format. Each covers `len` consecutive clocks of one client.
 *   - the struct store keeps, per client, the integrated structs sorted by
 *     clock without gaps from clock 0 (so a client's state is the end of its
 *     last struct, and an id is found by binary search);
 *   - a type (yj_type) is a root (named) or the content of a Type item; its
 *     sequence is a doubly linked list of items from `start`, its map holds
 *     per key the item that is the current value (the rightmost write).
 *   - refs are structs decoded from an update but not yet integrated: they
 *     wait in their client's queue (the pending set) until their dependencies
 *     are present.
 *
 * Files, in the order data flows (no file calls one listed after it):
 *   yjs_mem.c       allocation hook, byte accounting, errors, string maps
 *   yjs_lib0.c      lib0 primitives: varints, strings, Any, JSON checking
 *   yjs_update.c    update v1 -> refs and delete ranges (all validation)
 *   yjs_store.c     the struct store: find, split, merge, roots, maps
 *   yjs_integrate.c YATA integration, deletion, GC, pending, transactions
 *   yjs_encode.c    state vectors and encodeStateAsUpdate
 *   yjs_json.c      the document as JSON
 *   yjs_doc.c       the public lifecycle (new, free, stats)
 */
#ifndef YJS_INTERNAL_H
#define YJS_INTERNAL_H

#include "tandem_yjs.h"

#include <stdint.h>
#include <string.h>

/* lib0 refuses integers past 2^53 - 1 (Number.MAX_SAFE_INTEGER). */
#define YJ_MAX_SAFE 9007199254740991ULL

typedef struct yj_id {
    uint64_t client, clock;
} yj_id;

/* Struct kinds: 0..9 are Yjs's content refs (0 standing for GC), 10 Skip. */
enum yj_kind {
    YJ_GC = 0, YJ_DELETED = 1, YJ_JSON = 2, YJ_BINARY = 3, YJ_STRING = 4,
    YJ_EMBED = 5, YJ_FORMAT = 6, YJ_TYPE = 7, YJ_ANY = 8, YJ_DOC = 9, YJ_SKIP = 10
};

/* Type refs as Yjs writes them; YJ_ROOT is a root whose kind is unknown. */
enum yj_ref {
    YJ_ARRAY = 0, YJ_MAP = 1, YJ_TEXT = 2, YJ_XML_ELEMENT = 3,
    YJ_XML_FRAGMENT = 4, YJ_XML_HOOK = 5, YJ_XML_TEXT = 6, YJ_ROOT = 7
};

enum yj_flag {
    YJ_F_DELETED = 1, YJ_F_ORIGIN = 2, YJ_F_RORIGIN = 4, YJ_F_KEEP = 8
};

/* Where a ref's parent comes from, before integration resolves it. */
enum yj_pkind {
    YJ_P_COPY = 0, /* from the left or right neighbour (an origin is set) */
    YJ_P_ROOT = 1, /* a root type, by name */
    YJ_P_ID = 2    /* the type that is the content of the item at pid */
};

typedef struct yj_type yj_type;
typedef struct yj_item yj_item;

/* String-keyed hash map without removal (Yjs never removes map keys; a
 * garbage-collected type drops its whole map). The key points into memory
 * the value owns. */
typedef struct yj_slot {
    const char *key;
    uint32_t klen;
    void *val;
} yj_slot;
typedef struct yj_strmap {
    yj_slot *slots;
    uint32_t cap, n;
} yj_strmap;

typedef struct yj_content {
    union {
        struct { char *s; uint32_t bytes; } str;     /* STRING; len = UTF-16 units */
        struct { uint8_t *data; uint32_t *ends; } vals; /* JSON (texts) / ANY (lib0) */
        struct { uint8_t *data; uint32_t bytes; uint32_t key; } buf;
        /* BINARY bytes, EMBED JSON text, DOC raw guid+opts, FORMAT key
         * (first `key` bytes) then JSON value */
        yj_type *type;
    } u;
} yj_content;

struct yj_item {
    yj_id id;
    uint64_t len;
    yj_id origin, rorigin;   /* valid when YJ_F_ORIGIN / YJ_F_RORIGIN */
    yj_item *left, *right;
    yj_type *parent;         /* NULL for GC; set when integrated */
    char *sub;               /* parentSub (owned), NULL for sequence items */
    uint32_t sub_len;
    uint8_t kind, flags, pkind;
    union {                  /* refs only: where the parent comes from */
        yj_id id;
        struct { char *s; uint32_t len; } name;
    } p;
    yj_content c;
};

struct yj_type {
    yj_item *start;
    yj_item *item;           /* the Type item holding this, NULL for a root */
    yj_strmap map;
    char *name;              /* root name or XML node name (owned) */
    uint32_t name_len;
    uint8_t ref;             /* enum yj_ref */
    uint16_t depth;          /* roots 1 */
    uint64_t length;         /* countable, undeleted sequence length */
};

typedef struct yj_client {
    uint64_t client;
    yj_item **s;             /* integrated, sorted by clock, no gaps */
    size_t n, cap;
    yj_item **q;             /* refs waiting, sorted by clock, from qhead */
    size_t qn, qcap, qhead;
    uint32_t blocked_pass;   /* integration pass that found it blocked */
    uint32_t txn_seen;       /* last transaction that recorded its state */
    uint8_t on_stack;
} yj_client;

typedef struct yj_range {
    uint64_t client, clock, len;
} yj_range;

typedef struct yj_changed {
    uint64_t client, before;
} yj_changed;

/* What one td_yjs_apply_update changed, for the cleanup that merges and
 * collects garbage afterwards (Yjs's cleanupTransactions). These lists only
 * serve compaction: if one cannot grow, the document stays right, only less
 * compact. */
typedef struct yj_txn {
    yj_range *ds; size_t nds, cds;       /* deleted by this update */
    yj_id *merge; size_t nmerge, cmerge; /* right halves of splits */
    yj_changed *chg; size_t nchg, cchg;  /* clients whose state advanced */
} yj_txn;

struct td_yjs_doc {
    td_yjs_alloc_fn alloc;
    void *alloc_ud;
    size_t max_pending_structs, max_pending_bytes, max_depth;
    int gc;

    yj_client *clients;      /* dense; cidx hashes client -> index + 1 */
    size_t nclients, cclients;
    uint32_t *cidx;
    uint32_t ccidx;

    yj_strmap roots;         /* name -> yj_type */
    yj_type **root_order;    /* roots in the order first seen */
    size_t nroots, croots;

    yj_range *pds;           /* pending delete ranges */
    size_t npds, cpds;
    size_t pending_structs, pending_bytes;
    uint32_t pass, txn_no;
    size_t structs;          /* integrated structs */
    size_t bytes;            /* allocated through the hook, now */
    size_t dropped_deep;     /* types nested past max_depth, collected */
    yj_txn *txn;             /* during td_yjs_apply_update */
    /* Scratch kept between updates, so that applying a one-struct update
     * (what typing sends) allocates nothing but the struct itself. */
    yj_txn txn_buf;
    yj_item **dec_refs;      /* yj_update.refs */
    yj_range *dec_ds;        /* yj_update.ds */
    uint64_t *dec_seen;      /* clients of the update being decoded */
    size_t dec_crefs, dec_cds, dec_cseen;
    size_t *stack;           /* the pending queues' walk */
    size_t cstack;
    /* Scratch of Item.integrate's conflict loop: item -> order seen. */
    yj_item **seen_k;
    uint32_t *seen_v;
    uint32_t seen_cap, seen_n;
    yj_item **seen_list;
    size_t seen_lcap;

    char err[160];
};
typedef struct td_yjs_doc yj_doc;

/* ---- yjs_mem.c ---- */
void *yj_alloc(yj_doc *d, size_t n);
size_t yj_block_size(const void *p);
void *yj_realloc(yj_doc *d, void *p, size_t n);
void yj_free(yj_doc *d, void *p);
/* Grows *arr (elements of size sz, capacity *cap) to hold need elements. */
int yj_grow(yj_doc *d, void *arr, size_t *cap, size_t need, size_t sz);
td_yjs_err yj_fail(yj_doc *d, td_yjs_err e, const char *fmt, ...);
void *yj_map_get(const yj_strmap *m, const char *key, uint32_t klen);
int yj_map_set(yj_doc *d, yj_strmap *m, const char *key, uint32_t klen, void *val);
/* Makes room so that the next yj_map_set of a new key cannot fail. */
int yj_map_reserve(yj_doc *d, yj_strmap *m);
void yj_map_free(yj_doc *d, yj_strmap *m);

/* ---- yjs_lib0.c ---- */
typedef struct yj_rd {
    const uint8_t *p, *end;
    const char *err;         /* first error, static */
} yj_rd;
typedef struct yj_wr {
    yj_doc *d;
    uint8_t *buf;
    size_t len, cap;
    int nomem;
} yj_wr;

int yj_rd_u8(yj_rd *r, uint8_t *out);
int yj_rd_uint(yj_rd *r, uint64_t *out);          /* <= 2^53 - 1, minimal */
int yj_rd_bytes(yj_rd *r, const uint8_t **p, uint32_t *n); /* varUint8Array */
int yj_rd_string(yj_rd *r, const char **s, uint32_t *n);   /* varString, UTF-8 */
/* Validates one lib0 Any value and returns its encoding's extent. */
int yj_rd_any(yj_rd *r, size_t max_depth, const uint8_t **start, size_t *n);
/* 1 valid, 0 not JSON, -1 nested deeper than max_depth. */
int yj_json_valid(const char *s, size_t n, size_t max_depth);
/* The error of a reader that met max_depth (a limit, not a malformed input). */
extern const char yj_err_deep[];
size_t yj_utf16_len(const char *s, size_t n);
/* Byte offset of UTF-16 unit `units` in s; *mid set if it falls inside a
 * surrogate pair (then the offset is that character's start). */
size_t yj_utf16_offset(const char *s, size_t n, uint64_t units, int *mid);

void yj_wr_u8(yj_wr *w, uint8_t v);
void yj_wr_uint(yj_wr *w, uint64_t v);
void yj_wr_raw(yj_wr *w, const void *p, size_t n);
void yj_wr_bytes(yj_wr *w, const void *p, size_t n); /* length-prefixed */

/* ---- yjs_update.c ---- */
/* A decoded update. Its arrays are the document's scratch (dec_*): one
 * update is decoded at a time. */
typedef struct yj_update {
    yj_item **refs;          /* by client block, clocks increasing */
    size_t nrefs;
    yj_range *ds;
    size_t nds;
    size_t bytes;            /* bytes held by the refs */
} yj_update;
td_yjs_err yj_update_decode(yj_doc *d, const uint8_t *p, size_t n, yj_update *out,
                            const char **errmsg);
void yj_update_release(yj_doc *d, yj_update *u);
/* Frees the decoder's scratch (and, past `keep` bytes each, trims it). */
void yj_update_scratch_trim(yj_doc *d, size_t keep);
void yj_item_free(yj_doc *d, yj_item *it);
void yj_content_free(yj_doc *d, yj_item *it);
void yj_type_free(yj_doc *d, yj_type *t);
size_t yj_item_bytes(const yj_item *it);
int yj_countable(const yj_item *it);

/* ---- yjs_store.c ---- */
yj_client *yj_client_get(yj_doc *d, uint64_t client);
yj_client *yj_client_add(yj_doc *d, uint64_t client);
uint64_t yj_state(const yj_doc *d, uint64_t client);
uint64_t yj_client_state(const yj_client *c);
size_t yj_find_index(const yj_client *c, uint64_t clock);
yj_item *yj_get_item(yj_doc *d, yj_id id);
yj_item *yj_clean_start(yj_doc *d, yj_id id);
yj_item *yj_clean_end(yj_doc *d, yj_id id);
yj_item *yj_split(yj_doc *d, yj_client *c, size_t index, uint64_t diff);
int yj_add_struct(yj_doc *d, yj_item *it);
size_t yj_merge_lefts(yj_doc *d, yj_client *c, size_t pos);
int yj_content_splice(yj_doc *d, yj_item *it, uint64_t off, yj_content *right);
yj_type *yj_root(yj_doc *d, const char *name, uint32_t len, int create);
void yj_txn_merge(yj_doc *d, yj_id id);
void yj_txn_changed(yj_doc *d, uint64_t client, uint64_t before);
void yj_txn_deleted(yj_doc *d, uint64_t client, uint64_t clock, uint64_t len);

/* ---- yjs_integrate.c ---- */
void yj_delete(yj_doc *d, yj_item *it);
/* Frees scratch buffers past `keep` bytes each (0: all of them). */
void yj_scratch_trim(yj_doc *d, size_t keep);

#endif /* YJS_INTERNAL_H */
