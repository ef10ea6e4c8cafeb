/*
 * crdt_internal.h -- data structures shared by the files of crdt/.
 *
 * Identity. Ops are named (agent, seq). Inside a document an agent is a small
 * index into doc->agents (td_id.agent); the 64-bit agent id travels on the
 * wire and decides every tie, because indexes differ between replicas.
 *
 * Sequences (text and list) are YATA/FugueMax lists of items. Items made by
 * one agent with consecutive seqs, typed one after the other, form a run
 * (td_run): the first item names its left origin, every later item's left
 * origin is implicitly its predecessor in the run, and all share one right
 * origin. A run is entirely visible or entirely deleted.
 *
 * Runs live in the leaves of a B+tree (td_leaf, td_inner) whose inner nodes
 * count, per child, all items (tot) and visible items (vis): a visible
 * position is found by one descent, and the document index of an item by one
 * walk up. Leaves never become empty: runs are only inserted or merged with a
 * neighbour in the same leaf.
 *
 * The id index (td_idx, one per agent) maps the first seq of every run of that
 * agent to the leaf holding it, so a remote op finds its origins without a
 * scan. Invariant: for every run R there is exactly one entry with key
 * R.id.seq, and it points at R's leaf.
 *
 * Maps are sorted arrays of entries with a last-writer-wins register per key,
 * ordered by (lamport, agent id, seq). A deleted key keeps its entry (the
 * delete is a write) so that an older concurrent write cannot resurrect it.
 *
 * History. A version vector counts each agent's ops; every seq below it is an
 * item, a delete (td_delrec), the winning write of a map key, or an op whose
 * effect is gone (an overwritten map write), which diff() sends as a NOP.
 */
#ifndef TD_CRDT_INTERNAL_H
#define TD_CRDT_INTERNAL_H

#include "tandem_crdt.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#define TD_NONE UINT32_MAX       /* no agent: origin is the start / end */
#define TD_NO_CONTENT UINT32_MAX /* deleted run whose content was dropped */
#define TD_MAX_SEQ 0x7fffffffu   /* seqs and item counts stay below this */
#define TD_LEAF_MAX 32
#define TD_INNER_MAX 16
#define TD_IDX_CHUNK 128
#define TD_TREE_MAX_HEIGHT 11 /* inner levels of a sequence tree */
#define TD_MAX_NAME 255
#define TD_MAX_KEY 65535

typedef struct td_id {
    uint32_t agent; /* index into doc->agents, or TD_NONE */
    uint32_t seq;
} td_id;

/* Value tags, shared by memory and the wire. */
enum {
    TD_VT_NULL = 0,
    TD_VT_FALSE,
    TD_VT_TRUE,
    TD_VT_INT,
    TD_VT_FLOAT,
    TD_VT_STR,
    TD_VT_TEXT, /* nested objects: u.obj is the handle */
    TD_VT_LIST,
    TD_VT_MAP,
    TD_VT_DELETED, /* map tombstone */
    TD_VT_COUNT
};

typedef struct td_val {
    uint8_t tag;
    uint32_t len; /* TD_VT_STR */
    union {
        int64_t i;
        double f;
        char *s;
        uint32_t obj;
    } u;
} td_val;

typedef struct td_run {
    td_id id;
    uint32_t len;
    uint32_t content; /* index into the sequence's content arena */
    td_id left;       /* origin of the first item */
    td_id right;      /* origin of every item */
    uint8_t deleted;
} td_run;

typedef struct td_inner td_inner;
typedef struct td_leaf {
    td_inner *parent;
    struct td_leaf *prev, *next;
    uint32_t obj;
    uint16_t n;
    uint8_t slot; /* index in parent->c */
    td_run r[TD_LEAF_MAX];
} td_leaf;

struct td_inner {
    td_inner *parent;
    uint16_t n;
    uint8_t leaf_children;
    uint8_t slot; /* index in parent->c */
    void *c[TD_INNER_MAX];
    uint32_t tot[TD_INNER_MAX];
    uint32_t vis[TD_INNER_MAX];
};

/* A place in a sequence: run ri of leaf, item off within it. */
typedef struct td_pos {
    td_leaf *leaf;
    uint32_t ri;
    uint32_t off;
} td_pos;

typedef struct td_seq {
    uint32_t obj; /* handle of the owning object */
    void *root;
    int root_is_leaf;
    td_leaf *first, *last;
    uint32_t total, vis;
    uint32_t *text;  /* text content: code points */
    td_val *vals;    /* list content */
    uint32_t clen, ccap;
    /* Cursor cache for local edits: run `ri` of `leaf` starts at visible
     * index `vpos`. Valid only while `valid`; any other change clears it. */
    struct {
        int valid;
        td_leaf *leaf;
        uint32_t ri, vpos;
    } cur;
    /* A text of a lazily loaded document (doc->lazy.snap set; snapshot.c)
     * that has no runs yet: its visible content is the UTF-8 at
     * doc->lazy.text + lazy_off, lazy_bytes long, and the snapshot holds
     * lazy_runs runs of it. Of the fields above only obj and vis (the code
     * points of that UTF-8) are valid; root, first, last, total, text, clen
     * are empty until td_crdt_materialize replaces the whole td_seq. */
    uint8_t lazy;
    uint32_t lazy_off, lazy_bytes, lazy_runs;
} td_seq;

typedef struct td_mapent {
    char *key;
    uint32_t klen;
    td_val val;
    uint64_t lamport;
    td_id id;
} td_mapent;

typedef struct td_map {
    td_mapent *e;
    uint32_t n, cap;
    uint32_t live;
} td_map;

typedef struct td_obj {
    uint8_t kind;   /* td_crdt_kind */
    uint8_t is_root;
    uint16_t depth;
    td_id id;       /* creating op, for nested objects */
    char *name;     /* roots */
    uint32_t name_len;
    uint32_t parent; /* handle of the containing object, 0 for roots */
    /* For an object made by a map write: its key and lamport, so diff can
     * resend the write even after another write won the key. */
    char *key;
    uint32_t klen;
    uint64_t lamport;
    union {
        td_seq seq;
        td_map map;
    } u;
} td_obj;

typedef struct td_idx_ent {
    uint32_t seq;
    td_leaf *leaf;
} td_idx_ent;

typedef struct td_idx_chunk {
    uint32_t n;
    td_idx_ent e[TD_IDX_CHUNK];
} td_idx_chunk;

typedef struct td_idx {
    td_idx_chunk **chunks;
    uint32_t *first; /* first key of each chunk */
    uint32_t n, cap;
    /* Where the last re-key left its entry: backspacing re-keys one run's
     * entry again and again (seq, seq-1, ...). Only a hint: used when it is
     * in bounds and its key is the one looked for (keys are unique). */
    uint32_t hint_ci, hint_ei;
} td_idx;

/* A delete op run: ops (agent, seq .. seq+len-1) delete the items
 * target, target+1, ... (or target, target-1, ... when desc) of obj. */
typedef struct td_delrec {
    uint32_t seq, len;
    uint32_t obj;
    td_id target;
    uint8_t desc;
} td_delrec;

typedef struct td_agent {
    uint64_t id;
    uint32_t vv; /* ops integrated: seqs 0 .. vv-1 */
    td_idx idx;
    td_delrec *dels;
    uint32_t ndels, capdels;
} td_agent;

typedef struct td_objkey { /* nested object lookup, sorted by (agent id, seq) */
    uint64_t agent;
    uint32_t seq;
    uint32_t obj;
} td_objkey;

/* A parked batch, waiting for the op (wait_agent, wait_seq): it cannot
 * integrate before the document has that op, so it is retried only once the
 * document's count for wait_agent passes wait_seq (then re-keyed if it still
 * waits). */
typedef struct td_pending {
    uint8_t *bytes;
    size_t len;
    size_t ops;
    uint64_t wait_agent; /* agent id */
    uint32_t wait_seq;
} td_pending;

struct td_crdt_doc {
    td_crdt_alloc_fn alloc;
    void *alloc_ud;
    size_t max_pending_ops, max_pending_bytes, max_depth;

    td_agent *agents;
    uint32_t nagents, capagents;
    uint32_t *agent_order; /* agent indexes sorted by id */
    uint32_t self;         /* index of the local agent */
    uint32_t committed;    /* local seqs below this are committed */
    uint64_t max_lamport;
    uint64_t nops;

    td_obj **objs; /* handle h is objs[h-1] */
    uint32_t nobjs, capobjs;
    td_objkey *okeys;
    uint32_t nokeys, capokeys;
    uint32_t *roots; /* handles of root objects */
    uint32_t nroots, caproots;

    /* Nodes set aside before a tree insertion starts, so that splitting can
     * never fail halfway through: for one insertion, or for the two of an
     * edit that splits a run and inserts next to it (td_crdt_seq_reserve).
     * Index chunks likewise, for the id-index entries of those runs. */
    td_inner *spare_inner[2 * TD_TREE_MAX_HEIGHT + 3];
    uint32_t nspare_inner;
    td_leaf *spare_leaf[2];
    uint32_t nspare_leaf;
    td_idx_chunk *spare_chunk[2];
    uint32_t nspare_chunk;

    /* The pending set: pend[0 .. npend_sorted) is sorted by (wait_agent,
     * wait_seq), the rest was parked since and is merged in before a lookup. */
    td_pending *pend;
    uint32_t npend, cappend, npend_sorted;
    size_t pend_ops, pend_bytes;
    /* Agents whose count grew during the current apply: the keys under which
     * parked batches may now be released. */
    uint32_t *grown;
    uint32_t ngrown, capgrown;
    int apply_partial; /* td_crdt_apply_partial() */

    /* While place.obj is set (td_crdt_seq_place_after), local inserts into
     * that sequence go right after item place.id (deleted or not), or at the
     * very start when place.start, instead of after the visible item before
     * their position: undo puts deleted content back where it was among
     * the tombstones. 0: off. */
    struct {
        uint32_t obj;
        int start;
        td_id id;
    } place;

    td_crdt_observer_fn observer;
    void *observer_ud;
    int integrating; /* 1 while a batch is integrated: events are remote */
    /* Arrays of the last commit's encoder (batch.c), kept so that a commit
     * per keystroke does not pay four allocations: ops (an array of
     * batch.c's eop, kept only while small), agent and object maps, object
     * list. Any of them may be NULL; freed with the document. */
    struct {
        void *ops;
        uint32_t capops;
        uint32_t *agent_map, capagent;
        uint32_t *obj_map, capobj;
        uint32_t *objs, capobjs;
    } enc;

    /* Lazy load (td_crdt_options.trusted_snapshot, snapshot.c): while
     * lazy.snap is set, the document was loaded from that snapshot (a copy,
     * lazy.len bytes; its main and text columns decoded in lazy.main and
     * lazy.text, the other columns from offset lazy.rest) with only what
     * reading needs: agents and their version vector, max_lamport, nops,
     * committed, objects (roots, nested, parents, keys), maps complete, and
     * texts as UTF-8 (td_seq.lazy, into lazy.text). Not yet there: the runs
     * of texts, the id indexes and the delete records. Every entry point
     * that needs them, or changes anything but the object table, calls
     * td_crdt_full first, which decodes the rest (td_crdt_materialize) or
     * returns its error, leaving the document lazy and unchanged. Lists
     * make a load eager, so a lazy document's lists are complete. */
    struct {
        uint8_t *snap;
        size_t len;
        uint8_t *text, *main; /* the decoded text and main columns */
        size_t text_len, main_len;
        size_t rest;          /* offset in snap of the columns not decoded */
    } lazy;

    char err[160];
};

/* ---- doc.c: memory, errors, agents, objects ---------------------------- */
void *td_crdt_mem(td_crdt_doc *d, void *p, size_t n);
void td_crdt_memfree(td_crdt_doc *d, void *p);
/* Grows *arr (element size sz) to hold at least need elements. */
int td_crdt_grow(td_crdt_doc *d, void **arr, uint32_t *cap, uint32_t need, size_t sz);
td_crdt_err td_crdt_fail(td_crdt_doc *d, td_crdt_err e, const char *fmt, ...);
td_crdt_err td_crdt_agent_intern(td_crdt_doc *d, uint64_t id, uint32_t *out);
int td_crdt_agent_find(const td_crdt_doc *d, uint64_t id, uint32_t *out);
td_obj *td_crdt_obj_get(const td_crdt_doc *d, td_crdt_obj h);
uint32_t td_crdt_obj_find_nested(const td_crdt_doc *d, uint64_t agent, uint32_t seq);
uint32_t td_crdt_obj_find_root(const td_crdt_doc *d, uint8_t kind, const char *name,
                          size_t len);
td_crdt_err td_crdt_obj_new_root(td_crdt_doc *d, uint8_t kind, const char *name,
                            size_t len, uint32_t *out);
td_crdt_err td_crdt_obj_new_nested(td_crdt_doc *d, uint8_t kind, td_id id,
                              uint32_t parent, uint32_t *out);
void td_crdt_obj_drop_last_nested(td_crdt_doc *d);
td_crdt_err td_crdt_delrec_add(td_crdt_doc *d, uint32_t agent, const td_delrec *r);
/* Room for n more delete records of agent: td_crdt_delrec_add cannot fail
 * for the next n. */
td_crdt_err td_crdt_delrec_reserve(td_crdt_doc *d, uint32_t agent, uint32_t n);
void td_crdt_val_free(td_crdt_doc *d, td_val *v);
void td_crdt_val_export(const td_crdt_doc *d, const td_val *v, td_crdt_value *out);

void td_crdt_emit(td_crdt_doc *d, td_crdt_event_kind kind, uint32_t obj, uint32_t pos,
             uint32_t count, const char *key, size_t klen);

/* ---- id_index.c -------------------------------------------------------- */
td_idx_ent *td_crdt_idx_floor(td_idx *x, uint32_t seq);
td_crdt_err td_crdt_idx_put(td_crdt_doc *d, td_idx *x, uint32_t seq, td_leaf *leaf);
void td_crdt_idx_del(td_crdt_doc *d, td_idx *x, uint32_t seq);
/* Changes key `from` to `to`; the caller guarantees the order is kept. */
void td_crdt_idx_rekey(td_idx *x, uint32_t from, uint32_t to);
/* Calls fn for each entry with key >= from, in key order, until fn returns
 * non-zero. */
int td_crdt_idx_walk(td_idx *x, uint32_t from, int (*fn)(void *, td_idx_ent *), void *ud);
/* The same, from the entry with the greatest key <= seq (the run that may
 * hold seq), or from the first entry if there is none: one search. */
int td_crdt_idx_walk_floor(td_idx *x, uint32_t seq, int (*fn)(void *, td_idx_ent *), void *ud);
void td_crdt_idx_free(td_crdt_doc *d, td_idx *x);
/* Room for k new keys near seq: td_crdt_idx_put of k new keys, each near
 * seq (in its chunk), cannot fail. Uses the document's spare chunks. */
td_crdt_err td_crdt_idx_reserve(td_crdt_doc *d, td_idx *x, uint32_t seq, uint32_t k);
/* Fills the empty index x with the n entries e, whose keys strictly
 * increase, in full chunks. */
td_crdt_err td_crdt_idx_build(td_crdt_doc *d, td_idx *x, const td_idx_ent *e, uint32_t n);

/* ---- seq_tree.c -------------------------------------------------------- */
void td_crdt_seq_init(td_seq *s, uint32_t obj);
void td_crdt_seq_free(td_crdt_doc *d, td_seq *s);
/* Item at visible index vpos (< s->vis). */
td_pos td_crdt_seq_find_visible(td_seq *s, uint32_t vpos);
/* Item with this id, if it is an item of object obj. */
int td_crdt_seq_locate(td_crdt_doc *d, uint32_t obj, td_id id, td_pos *out);
/* Index of an item counting tombstones. */
uint32_t td_crdt_seq_index(const td_pos *p);
/* Number of visible items before the item at p. */
uint32_t td_crdt_seq_vis_index(const td_pos *p);
/* Splits the run at p so that p starts a run (no-op if p->off == 0); p is
 * updated to the run that now starts at the item. */
td_crdt_err td_crdt_seq_split(td_crdt_doc *d, td_seq *s, td_pos *p);
/* Inserts run r before the run at (leaf, ri) -- ri may equal leaf->n --
 * counting its items. On return *at names the new run. */
td_crdt_err td_crdt_seq_insert_run(td_crdt_doc *d, td_seq *s, td_leaf *leaf,
                              uint32_t ri, const td_run *r, td_pos *at);
/* Appends r at the end of s without touching the id index: a loader that
 * appends every run first and then builds the indexes with
 * td_crdt_idx_build (snapshot.c). */
td_crdt_err td_crdt_seq_append_unindexed(td_crdt_doc *d, td_seq *s, const td_run *r);
void td_crdt_spares_free(td_crdt_doc *d);
/* Sets aside what k <= 2 run insertions may need -- the i-th into
 * leaves[i] (or a leaf split from it), with the new id-index key keys[i] --
 * so that an edit making all of them cannot fail between them. */
td_crdt_err td_crdt_seq_reserve(td_crdt_doc *d, const td_seq *s,
                                const td_leaf *const *leaves, const td_id *keys, uint32_t k);
void td_crdt_seq_adjust(td_seq *s, td_leaf *leaf, int64_t dtot, int64_t dvis);
/* Tries to merge run ri with run ri+1 of the same leaf. */
int td_crdt_seq_try_merge(td_crdt_doc *d, td_leaf *leaf, uint32_t ri);
int td_crdt_run_continues(const td_run *a, const td_run *b);
int td_crdt_pos_next_run(td_pos *p);
td_id td_crdt_run_last(const td_run *r);

/* ---- seq_ops.c --------------------------------------------------------- */
td_crdt_err td_crdt_seq_local_insert(td_crdt_doc *d, uint32_t obj, uint32_t pos,
                                const uint32_t *cps, const td_val *vals,
                                uint32_t n);
td_crdt_err td_crdt_seq_local_delete(td_crdt_doc *d, uint32_t obj, uint32_t pos,
                                uint32_t n);
/* Integrates items (agent,seq..seq+n-1) with the given origins; content is
 * cps (text) or vals (list) or neither when deleted. Origins were checked. */
td_crdt_err td_crdt_seq_integrate(td_crdt_doc *d, uint32_t obj, td_id id, uint32_t n,
                             td_id left, td_id right, int deleted,
                             const uint32_t *cps, const td_val *vals);
/* Sets (obj != 0) or clears (obj == 0) doc->place: after item (agent index
 * id.agent, id.seq) of obj, or at its start when start is 1. ARG if the item
 * is not in obj. */
td_crdt_err td_crdt_seq_place_after(td_crdt_doc *d, uint32_t obj, int start, td_id id);
/* Marks items [lo, hi] of agent ta in obj deleted (all checked to exist). */
td_crdt_err td_crdt_seq_delete_ids(td_crdt_doc *d, uint32_t obj, uint32_t ta,
                              uint32_t lo, uint32_t hi);
/* 1 if every id (agent, lo..hi) is a deleted item of obj. */
int td_crdt_seq_range_deleted(td_crdt_doc *d, uint32_t obj, uint32_t agent, uint32_t lo,
                         uint32_t hi);
/* 1 if every id (agent, lo..hi) is an item of obj. */
int td_crdt_seq_has_range(td_crdt_doc *d, uint32_t obj, uint32_t agent, uint32_t lo,
                     uint32_t hi);

/* ---- map.c ------------------------------------------------------------- */
td_mapent *td_crdt_map_find(const td_map *m, const char *key, size_t klen);
/* Applies an LWW write; takes ownership of v's string. */
td_crdt_err td_crdt_map_write(td_crdt_doc *d, td_map *m, const char *key, size_t klen,
                         td_val *v, uint64_t lamport, td_id id);
void td_crdt_map_free(td_crdt_doc *d, td_map *m);

/* ---- codec.c ----------------------------------------------------------- */
typedef struct td_buf {
    td_crdt_doc *d;
    uint8_t *p;
    size_t len, cap;
    int oom;
} td_buf;
void td_crdt_wb_init(td_buf *b, td_crdt_doc *d);
/* Room for n more bytes (grows the buffer); 0 after an allocation failure
 * (oom is set). */
int td_crdt_wb_reserve(td_buf *b, size_t n);
void td_crdt_wb_bytes(td_buf *b, const void *p, size_t n);
void td_crdt_wb_u8(td_buf *b, uint8_t v);
void td_crdt_wb_varint(td_buf *b, uint64_t v);
void td_crdt_wb_u64le(td_buf *b, uint64_t v);
/* Raw writing for encoders that reserved room first (td_crdt_wb_reserve):
 * a cursor in a local variable costs no reload of b->len per byte. */
static inline uint8_t *td_put_varint(uint8_t *q, uint64_t v)
{
    while (v >= 0x80) {
        *q++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *q++ = (uint8_t)v;
    return q;
}
/* Inline fast paths of td_crdt_wb_u8 / td_crdt_wb_varint for encoders that
 * write many small fields (a commit per keystroke): with room in the buffer
 * they cost no call; otherwise the functions above grow it (or note OOM). */
static inline void td_wb_u8(td_buf *b, uint8_t v)
{
    if (b->len < b->cap)
        b->p[b->len++] = v;
    else
        td_crdt_wb_u8(b, v);
}
static inline void td_wb_varint(td_buf *b, uint64_t v)
{
    if (b->cap - b->len < TD_CRDT_VARINT_MAX) {
        td_crdt_wb_varint(b, v);
        return;
    }
    /* through a local pointer: a byte store may alias b->len, which would
     * otherwise be reloaded and stored again for every byte */
    uint8_t *p = b->p + b->len;
    b->len += (size_t)(td_put_varint(p, v) - p);
}
void td_crdt_wb_free(td_buf *b);

typedef struct td_rd {
    const uint8_t *p, *end;
    int bad;
} td_rd;
uint8_t td_crdt_rd_u8(td_rd *r);
uint64_t td_crdt_rd_varint(td_rd *r);
uint32_t td_crdt_rd_u32(td_rd *r, uint32_t max); /* varint, bad if > max */
uint64_t td_crdt_rd_u64le(td_rd *r);
const uint8_t *td_crdt_rd_bytes(td_rd *r, size_t n);
size_t td_crdt_rd_left(const td_rd *r);

/* UTF-8: number of code points, or SIZE_MAX if invalid. */
size_t td_crdt_utf8_count(const char *s, size_t len);
/* Decodes valid UTF-8 into code points (n known). */
void td_crdt_utf8_decode(const char *s, size_t len, uint32_t *out);
size_t td_crdt_utf8_put(uint32_t cp, char *out);
void td_crdt_wb_utf8(td_buf *b, const uint32_t *cps, uint32_t n);

/* Values on the wire: tag byte, then payload. Decoding copies strings. */
void td_crdt_val_encode(td_buf *b, const td_val *v);
td_crdt_err td_crdt_val_decode(td_crdt_doc *d, td_rd *r, td_val *out);

/* ---- entropy.c (snapshot v2 columns, docs/FORMAT.md 5.1) ---------------- */
/* Appends n bytes as one column block (varint n, mode, code, bits). */
void td_crdt_ent_put(td_buf *out, const uint8_t *p, size_t n);
/* Reads one column block from r into *out (td_crdt_mem, NULL when empty;
 * the caller frees it). TD_CRDT_ERR_DECODE with *why, or NOMEM. */
td_crdt_err td_crdt_ent_get(td_crdt_doc *d, td_rd *r, uint8_t **out, size_t *n,
                            const char **why);

/* ---- batch.c / snapshot.c ---------------------------------------------- */
/* td_crdt_commit without its fast path for one-op commits: the reference
 * the fast path must equal byte for byte (tests/crdt/test_crdt_commit.c). */
td_crdt_err td_crdt_commit_general(td_crdt_doc *d, uint8_t **out, size_t *len);
/* td_crdt_commit_max without its one-op fast path (test_crdt_commit). */
td_crdt_err td_crdt_commit_max_general(td_crdt_doc *d, size_t max_bytes, uint8_t **out,
                                       size_t *len, int *more);
/* NULL if a freshly loaded document is consistent as a whole, else why not
 * (snapshot_check.c). */
const char *td_crdt_snapshot_check(td_crdt_doc *d, int *oom);
void td_crdt_pending_free(td_crdt_doc *d);
/* Ends the lazy state of a document (see td_crdt_doc.lazy): decodes the
 * runs, indexes and delete records from the kept snapshot and puts them in.
 * On error (NOMEM, or DECODE for a snapshot that was trusted but is not
 * intact) the document stays lazy and td_crdt_doc_error says why. */
td_crdt_err td_crdt_materialize(td_crdt_doc *d);
static inline td_crdt_err td_crdt_full(td_crdt_doc *d)
{
    return d->lazy.snap ? td_crdt_materialize(d) : TD_CRDT_OK;
}
/* Frees what a lazy document keeps (doc.c, on td_crdt_doc_free). */
void td_crdt_lazy_free(td_crdt_doc *d);
/* The v1 encoder, kept for tests and the benchmark's baseline: v2 must
 * load every v1 snapshot. */
td_crdt_err td_crdt_snapshot_encode_v1(td_crdt_doc *d, uint8_t **out, size_t *len);
uint64_t td_crdt_zigzag(int64_t v);
int64_t td_crdt_unzigzag(uint64_t v);

#endif
