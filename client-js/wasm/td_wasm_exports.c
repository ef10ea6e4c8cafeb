/*
 * td_wasm_exports.c -- the WebAssembly face of the document core.
 *
 * crdt/ is compiled for wasm32-wasi together with this file into
 * build/wasm/tandem_crdt.wasm (see client-js/CMakeLists.txt). JavaScript can
 * only pass numbers across the boundary, so every function here is a thin
 * wrapper over crdt/tandem_crdt.h that takes and returns plain integers and
 * pointers into the module's linear memory. The module imports nothing
 * (see the WASI stubs below); it exports `memory` and the functions below.
 * The idiomatic JS API (issue 6) is built on top of these; nothing here is
 * meant to be pleasant to call by hand.
 *
 * Conventions (wasm32: pointers and size_t are 32-bit):
 * - A function that can fail returns the td_crdt_err code as i32 (0 = ok);
 *   on failure doc_error(doc) (a NUL-terminated C string) says why, and
 *   strerror(code) names the code. Results go through out slots the caller
 *   allocates with alloc().
 * - A buffer result is written to an 8-byte out slot: pointer at +0, length
 *   in bytes at +4. Free the pointer with buf_free(doc, ptr). commit() and
 *   diff() leave {0, 0} when there is nothing to send.
 * - Strings and byte buffers passed in are (pointer, length) pairs in linear
 *   memory; text is UTF-8, positions and counts are Unicode code points.
 * - 64-bit values (agents, op counts) are i64, i.e. BigInt in JS; results
 *   come back signed, so read them with BigInt.asUintN(64, x).
 * - u32 results (lengths, handles) may come back negative in JS; use x >>> 0.
 * - A value (list element, map value) is a td_crdt_value, 16 bytes:
 *     +0 u32 type (td_crdt_vtype)   +4 u32 obj_kind (for TYPE OBJ)
 *     +8 i64 int | f64 float | u32 str_ptr, +12 u32 str_len | u32 obj handle
 *   A string read back points into the document and is valid until its next
 *   change.
 * - apply() fills an optional 12-byte info slot: +0 u32 ops_applied,
 *   +4 u32 ops_duplicate, +8 i32 parked.
 * - Change events (ABI 2): observe(doc, 1) registers an observer that appends
 *   every td_crdt_event of that document to one module-wide buffer;
 *   events_take(out) hands JS that buffer as {ptr, len} (valid until the next
 *   call into the module) and empties it. JS drains it after every call that
 *   can change a document, so the buffer only ever holds one call's events.
 *   A record is 24 bytes, then the key padded to 4 bytes:
 *     +0 u32 kind  +4 u32 obj  +8 u32 pos  +12 u32 count  +16 u32 local
 *     +20 u32 key_len  +24 key bytes (KEY events; the core's pointer is only
 *     valid during the callback, so the key is copied)
 *   events_take() returns 1 if events were lost for lack of memory since the
 *   last take (JS then re-reads the whole document), else 0.
 * The layout is checked below at compile time and its version is
 * abi_version(); bump it when any signature or layout here changes.
 *
 * Memory: alloc()/free() are the module's malloc/free, and the core allocates
 * through the same heap (default hook). Growing the heap replaces
 * memory.buffer, so JS must re-create its typed-array views after any call.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "tandem_crdt.h"
/* The exports for anchors and undo (see "item ids" below) read the core's
 * sequence tree directly: they are queries the public API has no use for
 * outside the client, and this file is compiled with the core's sources. */
#include "crdt_internal.h"

#define TD_WASM_ABI_VERSION 2

/* Natively (e.g. to check this file under a sanitizer) exports are plain
 * external functions. */
#if defined(__wasm__)
#define TD_EXPORT(name) __attribute__((export_name(name)))
#else
#define TD_EXPORT(name)
#endif

/* The out slot of every buffer-returning call. */
typedef struct td_wasm_buf {
    void *ptr;
    size_t len;
} td_wasm_buf;

#if defined(__wasm32__)
_Static_assert(sizeof(void *) == 4 && sizeof(size_t) == 4, "wasm32 ABI");
_Static_assert(sizeof(td_crdt_value) == 16, "td_crdt_value is 16 bytes");
_Static_assert(offsetof(td_crdt_value, type) == 0, "value.type at +0");
_Static_assert(offsetof(td_crdt_value, obj_kind) == 4, "value.obj_kind at +4");
_Static_assert(offsetof(td_crdt_value, u) == 8, "value.u at +8");
_Static_assert(offsetof(td_crdt_value, u.str.len) == 12, "value.str.len at +12");
_Static_assert(sizeof(td_wasm_buf) == 8, "buffer out slot is 8 bytes");
#endif

#if defined(__wasm__)
/*
 * The module must import nothing. The core formats numbers and error
 * messages with snprintf, and wasi-libc's printf family links the stdio exit
 * path (flushing stdout/stderr), which imports WASI's fd_write, fd_seek and
 * fd_close although formatting into a string never calls them. Defining the
 * import symbols here satisfies the linker instead of the host; they trap,
 * so should anything ever reach them, it fails loudly rather than silently.
 * The prototypes are wasi_snapshot_preview1's.
 */
int32_t __imported_wasi_snapshot_preview1_fd_write(int32_t fd, int32_t iovs,
                                                   int32_t iovs_len, int32_t nwritten);
int32_t __imported_wasi_snapshot_preview1_fd_seek(int32_t fd, int64_t offset,
                                                  int32_t whence, int32_t newoffset);
int32_t __imported_wasi_snapshot_preview1_fd_close(int32_t fd);

int32_t __imported_wasi_snapshot_preview1_fd_write(int32_t fd, int32_t iovs,
                                                   int32_t iovs_len, int32_t nwritten)
{
    (void)fd, (void)iovs, (void)iovs_len, (void)nwritten;
    __builtin_trap();
}

int32_t __imported_wasi_snapshot_preview1_fd_seek(int32_t fd, int64_t offset,
                                                  int32_t whence, int32_t newoffset)
{
    (void)fd, (void)offset, (void)whence, (void)newoffset;
    __builtin_trap();
}

int32_t __imported_wasi_snapshot_preview1_fd_close(int32_t fd)
{
    (void)fd;
    __builtin_trap();
}
#endif

/* ---- change events ------------------------------------------------------ */

typedef struct td_wasm_events {
    uint8_t *p;
    size_t len, cap;
    int lost;
} td_wasm_events;

static td_wasm_events g_events;

static void put_u32(uint8_t *at, uint32_t v)
{
    at[0] = (uint8_t)v, at[1] = (uint8_t)(v >> 8), at[2] = (uint8_t)(v >> 16),
    at[3] = (uint8_t)(v >> 24);
}

static void on_event(void *ud, const td_crdt_event *ev)
{
    size_t key_len = ev->kind == TD_CRDT_EV_KEY ? ev->key_len : 0;
    size_t need = 24 + ((key_len + 3) & ~(size_t)3);
    (void)ud;
    if (g_events.cap - g_events.len < need) {
        size_t cap = g_events.cap ? g_events.cap : 1024;
        while (cap - g_events.len < need)
            cap *= 2;
        uint8_t *p = realloc(g_events.p, cap);
        if (!p) {
            g_events.lost = 1;
            return;
        }
        g_events.p = p, g_events.cap = cap;
    }
    uint8_t *at = g_events.p + g_events.len;
    put_u32(at, (uint32_t)ev->kind);
    put_u32(at + 4, ev->obj);
    put_u32(at + 8, (uint32_t)ev->pos);
    put_u32(at + 12, (uint32_t)ev->count);
    put_u32(at + 16, ev->local ? 1u : 0u);
    put_u32(at + 20, (uint32_t)key_len);
    for (size_t i = 0; i < key_len; i++)
        at[24 + i] = (uint8_t)ev->key[i];
    for (size_t i = key_len; i < need - 24; i++)
        at[24 + i] = 0;
    g_events.len += need;
}

static int buf_result(td_crdt_err err, uint8_t *ptr, size_t len, td_wasm_buf *out)
{
    out->ptr = err == TD_CRDT_OK ? ptr : NULL;
    out->len = err == TD_CRDT_OK ? len : 0;
    return (int)err;
}

/* ---- module ------------------------------------------------------------- */

TD_EXPORT("abi_version") int tdw_abi_version(void) { return TD_WASM_ABI_VERSION; }

/* Never returns NULL for size 0, so JS can treat 0 as failure. */
TD_EXPORT("alloc") void *tdw_alloc(size_t size) { return malloc(size ? size : 1); }
TD_EXPORT("free") void tdw_free(void *ptr) { free(ptr); }

TD_EXPORT("strerror") const char *tdw_strerror(int err)
{
    return td_crdt_strerror((td_crdt_err)err);
}

/* ---- documents ---------------------------------------------------------- */

/* A document with default limits and the default allocator. */
TD_EXPORT("doc_new") int tdw_doc_new(uint64_t agent, td_crdt_doc **out)
{
    td_crdt_options opts = {0};
    opts.agent = agent;
    return (int)td_crdt_doc_new(&opts, out);
}

/* On error *out is NULL and *errmsg a static C string. */
TD_EXPORT("doc_load")
int tdw_doc_load(uint64_t agent, const uint8_t *snap, size_t len,
                 td_crdt_doc **out, const char **errmsg)
{
    td_crdt_options opts = {0};
    opts.agent = agent;
    return (int)td_crdt_doc_load(&opts, snap, len, out, errmsg);
}

TD_EXPORT("doc_free") void tdw_doc_free(td_crdt_doc *doc) { td_crdt_doc_free(doc); }

TD_EXPORT("doc_error") const char *tdw_doc_error(const td_crdt_doc *doc)
{
    return td_crdt_doc_error(doc);
}

TD_EXPORT("doc_agent") uint64_t tdw_doc_agent(const td_crdt_doc *doc)
{
    return td_crdt_doc_agent(doc);
}

TD_EXPORT("buf_free") void tdw_buf_free(td_crdt_doc *doc, void *buf)
{
    td_crdt_buf_free(doc, buf);
}

/* ---- objects ------------------------------------------------------------ */

TD_EXPORT("root")
int tdw_root(td_crdt_doc *doc, int kind, const char *name, size_t name_len,
             td_crdt_obj *out)
{
    return (int)td_crdt_root(doc, (td_crdt_kind)kind, name, name_len, out);
}

TD_EXPORT("obj_kind") int tdw_obj_kind(const td_crdt_doc *doc, td_crdt_obj obj)
{
    return (int)td_crdt_obj_kind(doc, obj);
}

/* ---- text --------------------------------------------------------------- */

TD_EXPORT("text_insert")
int tdw_text_insert(td_crdt_doc *doc, td_crdt_obj text, size_t pos,
                    const char *utf8, size_t len)
{
    return (int)td_crdt_text_insert(doc, text, pos, utf8, len);
}

TD_EXPORT("text_delete")
int tdw_text_delete(td_crdt_doc *doc, td_crdt_obj text, size_t pos, size_t count)
{
    return (int)td_crdt_text_delete(doc, text, pos, count);
}

TD_EXPORT("text_length") size_t tdw_text_length(const td_crdt_doc *doc, td_crdt_obj text)
{
    return td_crdt_text_length(doc, text);
}

/* out: {ptr, len} of the UTF-8 text (NUL-terminated, len excludes it). */
TD_EXPORT("text_get") int tdw_text_get(td_crdt_doc *doc, td_crdt_obj text, td_wasm_buf *out)
{
    char *ptr = NULL;
    size_t len = 0;
    td_crdt_err err = td_crdt_text_get(doc, text, &ptr, &len);
    return buf_result(err, (uint8_t *)ptr, len, out);
}

/* ---- list --------------------------------------------------------------- */

/* vals: n consecutive 16-byte values. */
TD_EXPORT("list_insert")
int tdw_list_insert(td_crdt_doc *doc, td_crdt_obj list, size_t pos,
                    const td_crdt_value *vals, size_t n)
{
    return (int)td_crdt_list_insert(doc, list, pos, vals, n);
}

TD_EXPORT("list_insert_obj")
int tdw_list_insert_obj(td_crdt_doc *doc, td_crdt_obj list, size_t pos, int kind,
                        td_crdt_obj *out)
{
    return (int)td_crdt_list_insert_obj(doc, list, pos, (td_crdt_kind)kind, out);
}

TD_EXPORT("list_delete")
int tdw_list_delete(td_crdt_doc *doc, td_crdt_obj list, size_t pos, size_t count)
{
    return (int)td_crdt_list_delete(doc, list, pos, count);
}

TD_EXPORT("list_length") size_t tdw_list_length(const td_crdt_doc *doc, td_crdt_obj list)
{
    return td_crdt_list_length(doc, list);
}

TD_EXPORT("list_get")
int tdw_list_get(const td_crdt_doc *doc, td_crdt_obj list, size_t pos, td_crdt_value *out)
{
    return (int)td_crdt_list_get(doc, list, pos, out);
}

/* ---- map ---------------------------------------------------------------- */

TD_EXPORT("map_set")
int tdw_map_set(td_crdt_doc *doc, td_crdt_obj map, const char *key, size_t key_len,
                const td_crdt_value *val)
{
    return (int)td_crdt_map_set(doc, map, key, key_len, val);
}

TD_EXPORT("map_set_obj")
int tdw_map_set_obj(td_crdt_doc *doc, td_crdt_obj map, const char *key,
                    size_t key_len, int kind, td_crdt_obj *out)
{
    return (int)td_crdt_map_set_obj(doc, map, key, key_len, (td_crdt_kind)kind, out);
}

TD_EXPORT("map_delete")
int tdw_map_delete(td_crdt_doc *doc, td_crdt_obj map, const char *key, size_t key_len)
{
    return (int)td_crdt_map_delete(doc, map, key, key_len);
}

TD_EXPORT("map_get")
int tdw_map_get(const td_crdt_doc *doc, td_crdt_obj map, const char *key,
                size_t key_len, td_crdt_value *out)
{
    return (int)td_crdt_map_get(doc, map, key, key_len, out);
}

TD_EXPORT("map_size") size_t tdw_map_size(const td_crdt_doc *doc, td_crdt_obj map)
{
    return td_crdt_map_size(doc, map);
}

/* key_out: {ptr, len} of the key, pointing into the document (do not free). */
TD_EXPORT("map_entry")
int tdw_map_entry(const td_crdt_doc *doc, td_crdt_obj map, size_t index,
                  td_wasm_buf *key_out, td_crdt_value *val_out)
{
    const char *key = NULL;
    size_t key_len = 0;
    td_crdt_err err = td_crdt_map_entry(doc, map, index, &key, &key_len, val_out);
    key_out->ptr = err == TD_CRDT_OK ? (void *)(uintptr_t)key : NULL;
    key_out->len = err == TD_CRDT_OK ? key_len : 0;
    return (int)err;
}

/* ---- change events ------------------------------------------------------ */

TD_EXPORT("observe") void tdw_observe(td_crdt_doc *doc, int on)
{
    td_crdt_set_observer(doc, on ? on_event : NULL, NULL);
}

/* out: {ptr, len} of the records since the last take; the buffer stays the
 * module's. Returns 1 if some were lost (out of memory). */
TD_EXPORT("events_take") int tdw_events_take(td_wasm_buf *out)
{
    int lost = g_events.lost;
    out->ptr = g_events.p;
    out->len = g_events.len;
    g_events.len = 0;
    g_events.lost = 0;
    return lost;
}

/* ---- batches, version vectors, snapshots -------------------------------- */

TD_EXPORT("commit") int tdw_commit(td_crdt_doc *doc, td_wasm_buf *out)
{
    uint8_t *ptr = NULL;
    size_t len = 0;
    td_crdt_err err = td_crdt_commit(doc, &ptr, &len);
    return buf_result(err, ptr, len, out);
}

/* info: NULL or a 12-byte slot (see the top of this file): the first three
 * fields of td_crdt_apply_info, which JS reads by offset. */
TD_EXPORT("apply")
int tdw_apply(td_crdt_doc *doc, const uint8_t *batch, size_t len, uint32_t *info)
{
    td_crdt_apply_info in;
    int rc = (int)td_crdt_apply(doc, batch, len, &in);
    if (info) {
        info[0] = (uint32_t)in.ops_applied;
        info[1] = (uint32_t)in.ops_duplicate;
        info[2] = (uint32_t)in.parked;
    }
    return rc;
}

TD_EXPORT("pending_ops") size_t tdw_pending_ops(const td_crdt_doc *doc)
{
    return td_crdt_pending_ops(doc);
}

TD_EXPORT("vv_encode") int tdw_vv_encode(const td_crdt_doc *doc, td_wasm_buf *out)
{
    uint8_t *ptr = NULL;
    size_t len = 0;
    td_crdt_err err = td_crdt_vv_encode(doc, &ptr, &len);
    return buf_result(err, ptr, len, out);
}

TD_EXPORT("vv_get") uint64_t tdw_vv_get(const td_crdt_doc *doc, uint64_t agent)
{
    return td_crdt_vv_get(doc, agent);
}

TD_EXPORT("op_count") uint64_t tdw_op_count(const td_crdt_doc *doc)
{
    return td_crdt_op_count(doc);
}

/* vv: an encoded version vector (vv_encode), or len 0 for the empty one. */
TD_EXPORT("diff")
int tdw_diff(td_crdt_doc *doc, const uint8_t *vv, size_t vv_len, td_wasm_buf *out)
{
    uint8_t *ptr = NULL;
    size_t len = 0;
    td_crdt_err err = td_crdt_diff(doc, vv, vv_len, &ptr, &len);
    return buf_result(err, ptr, len, out);
}

/* Size-limited batches (issue 10). out: {ptr, len} of one batch of at most
 * max_bytes (see td_crdt_commit_max); *more (an i32 slot) is 1 while local
 * ops remain uncommitted: call again. */
TD_EXPORT("commit_max")
int tdw_commit_max(td_crdt_doc *doc, size_t max_bytes, td_wasm_buf *out, int *more)
{
    uint8_t *ptr = NULL;
    size_t len = 0;
    td_crdt_err err = td_crdt_commit_max(doc, max_bytes, &ptr, &len, more);
    return buf_result(err, ptr, len, out);
}

/* out: {ptr, len} of the next batch of at most max_bytes of what a peer at vv
 * lacks; next_vv: {ptr, len} of vv plus that batch (free it with buf_free
 * too; pass it back to get the rest); *done (an i32 slot) is 1 when nothing
 * is left after this batch. */
TD_EXPORT("diff_max")
int tdw_diff_max(td_crdt_doc *doc, const uint8_t *vv, size_t vv_len, size_t max_bytes,
                 td_wasm_buf *out, td_wasm_buf *next_vv, int *done)
{
    uint8_t *ptr = NULL, *nptr = NULL;
    size_t len = 0, nlen = 0;
    td_crdt_err err = td_crdt_diff_max(doc, vv, vv_len, max_bytes, &ptr, &len, &nptr, &nlen, done);
    buf_result(err, nptr, nlen, next_vv);
    return buf_result(err, ptr, len, out);
}

/* The error codes added with these (the values of td_crdt_err), so that JS
 * need not hard-code them: missing = TD_CRDT_ERR_MISSING, refused =
 * TD_CRDT_ERR_REFUSED. */
TD_EXPORT("err_missing") int tdw_err_missing(void) { return TD_CRDT_ERR_MISSING; }
TD_EXPORT("err_refused") int tdw_err_refused(void) { return TD_CRDT_ERR_REFUSED; }

TD_EXPORT("snapshot_encode") int tdw_snapshot_encode(td_crdt_doc *doc, td_wasm_buf *out)
{
    uint8_t *ptr = NULL;
    size_t len = 0;
    td_crdt_err err = td_crdt_snapshot_encode(doc, &ptr, &len);
    return buf_result(err, ptr, len, out);
}

/* out: {ptr, len} of the NUL-terminated JSON text. */
TD_EXPORT("to_json") int tdw_to_json(td_crdt_doc *doc, td_wasm_buf *out)
{
    char *ptr = NULL;
    size_t len = 0;
    td_crdt_err err = td_crdt_to_json(doc, &ptr, &len);
    return buf_result(err, (uint8_t *)ptr, len, out);
}

/* ---- item ids: anchors and undo ----------------------------------------- */
/*
 * Relative positions (text.anchor) and the undo manager name items by their
 * op id (agent, seq) instead of by index, because an id keeps naming the same
 * character or element through any concurrent edit while an index does not.
 * Agents cross the boundary as u64, seqs as u32; positions are visible
 * indexes in code points / elements, like the rest of this file.
 */

static td_seq *seq_obj(const td_crdt_doc *doc, td_crdt_obj obj)
{
    td_obj *o = td_crdt_obj_get(doc, obj);
    if (!o || (o->kind != TD_CRDT_TEXT && o->kind != TD_CRDT_LIST))
        return NULL;
    return &o->u.seq;
}

static uint32_t run_visible(const td_run *r) { return r->deleted ? 0 : r->len; }

static void put_u64(uint8_t *at, uint64_t v)
{
    put_u32(at, (uint32_t)v);
    put_u32(at + 4, (uint32_t)(v >> 32));
}

/* Growable output of the queries below; freed by JS with free(). */
typedef struct td_wasm_out {
    uint8_t *p;
    size_t len, cap;
} td_wasm_out;

static uint8_t *out_room(td_wasm_out *o, size_t n)
{
    if (o->cap - o->len < n) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        while (cap - o->len < n)
            cap *= 2;
        uint8_t *p = realloc(o->p, cap);
        if (!p)
            return NULL;
        o->p = p, o->cap = cap;
    }
    uint8_t *at = o->p + o->len;
    o->len += n;
    return at;
}

static int out_result(td_wasm_out *o, int ok, td_wasm_buf *out)
{
    if (!ok) {
        free(o->p);
        out->ptr = NULL, out->len = 0;
        return (int)TD_CRDT_ERR_NOMEM;
    }
    out->ptr = o->p, out->len = o->len;
    return 0;
}

/* out (12 bytes): u64 agent, u32 seq of the visible item at pos. */
TD_EXPORT("seq_id_at")
int tdw_seq_id_at(td_crdt_doc *doc, td_crdt_obj obj, size_t pos, uint8_t *out)
{
    td_seq *s = seq_obj(doc, obj);
    if (!s || pos >= s->vis)
        return (int)TD_CRDT_ERR_ARG;
    td_pos p = td_crdt_seq_find_visible(s, (uint32_t)pos);
    const td_run *r = &p.leaf->r[p.ri];
    put_u64(out, doc->agents[r->id.agent].id);
    put_u32(out + 8, r->id.seq + p.off);
    return 0;
}

/* Ids of the visible items [pos, pos + count), as runs of consecutive ids.
 * out: {ptr, len} of 16-byte records: u64 agent, u32 seq, u32 n. */
TD_EXPORT("seq_ids")
int tdw_seq_ids(td_crdt_doc *doc, td_crdt_obj obj, size_t pos, size_t count,
                td_wasm_buf *out)
{
    td_seq *s = seq_obj(doc, obj);
    td_wasm_out o = {0};
    if (!s || pos > s->vis || count > s->vis - pos)
        return (int)TD_CRDT_ERR_ARG;
    if (count == 0)
        return out_result(&o, 1, out);
    td_pos p = td_crdt_seq_find_visible(s, (uint32_t)pos);
    uint32_t left = (uint32_t)count;
    for (;;) {
        const td_run *r = &p.leaf->r[p.ri];
        if (!r->deleted) {
            uint32_t n = r->len - p.off < left ? r->len - p.off : left;
            uint8_t *at = out_room(&o, 16);
            if (!at)
                return out_result(&o, 0, out);
            put_u64(at, doc->agents[r->id.agent].id);
            put_u32(at + 8, r->id.seq + p.off);
            put_u32(at + 12, n);
            left -= n;
            if (left == 0)
                break;
        }
        if (!td_crdt_pos_next_run(&p))
            break;
    }
    return out_result(&o, 1, out);
}

/* Where the items (agent, seq .. seq+len-1) of obj are now: one 20-byte
 * record per piece that sits in one run: u32 offset into the range, u32 n,
 * u32 visible index (of the first item; for deleted items, the number of
 * visible items before them), u32 document index counting tombstones (orders
 * pieces), u32 flags (1: deleted, 2: not in this object or not known yet,
 * then the index fields are 0). */
TD_EXPORT("seq_spans")
int tdw_seq_spans(td_crdt_doc *doc, td_crdt_obj obj, uint64_t agent, uint32_t seq,
                  uint32_t len, td_wasm_buf *out)
{
    td_seq *s = seq_obj(doc, obj);
    td_wasm_out o = {0};
    uint32_t ai = 0;
    if (!s)
        return (int)TD_CRDT_ERR_ARG;
    int known = td_crdt_agent_find(doc, agent, &ai);
    for (uint32_t off = 0; off < len;) {
        td_pos p;
        uint8_t *at = out_room(&o, 20);
        if (!at)
            return out_result(&o, 0, out);
        td_id id = {ai, seq + off};
        if (!known || !td_crdt_seq_locate(doc, obj, id, &p)) {
            put_u32(at, off), put_u32(at + 4, 1), put_u32(at + 8, 0), put_u32(at + 12, 0);
            put_u32(at + 16, 2);
            off++;
            continue;
        }
        const td_run *r = &p.leaf->r[p.ri];
        uint32_t n = r->len - p.off < len - off ? r->len - p.off : len - off;
        put_u32(at, off), put_u32(at + 4, n);
        put_u32(at + 8, td_crdt_seq_vis_index(&p));
        put_u32(at + 12, td_crdt_seq_index(&p));
        put_u32(at + 16, r->deleted ? 1u : 0u);
        off += n;
    }
    return out_result(&o, 1, out);
}

/* The visible text [pos, pos + count) as UTF-8 (without reading the rest). */
TD_EXPORT("text_slice")
int tdw_text_slice(td_crdt_doc *doc, td_crdt_obj obj, size_t pos, size_t count,
                   td_wasm_buf *out)
{
    td_obj *ob = td_crdt_obj_get(doc, obj);
    td_wasm_out o = {0};
    if (!ob || ob->kind != TD_CRDT_TEXT)
        return (int)TD_CRDT_ERR_ARG;
    td_seq *s = &ob->u.seq;
    if (pos > s->vis || count > s->vis - pos)
        return (int)TD_CRDT_ERR_ARG;
    if (count == 0)
        return out_result(&o, 1, out);
    td_pos p = td_crdt_seq_find_visible(s, (uint32_t)pos);
    uint32_t left = (uint32_t)count;
    for (;;) {
        const td_run *r = &p.leaf->r[p.ri];
        uint32_t n = run_visible(r) > p.off ? run_visible(r) - p.off : 0;
        if (n > left)
            n = left;
        for (uint32_t i = 0; i < n; i++) {
            uint8_t *at = out_room(&o, 4);
            if (!at)
                return out_result(&o, 0, out);
            o.len -= 4 - td_crdt_utf8_put(s->text[r->content + p.off + i], (char *)at);
        }
        left -= n;
        if (left == 0 || !td_crdt_pos_next_run(&p))
            break;
    }
    return out_result(&o, 1, out);
}

/* out (12 bytes): u64 agent, u32 seq of the write that holds key now (a
 * delete is a write too). TD_CRDT_ERR_ARG if the key was never written. */
TD_EXPORT("map_key_id")
int tdw_map_key_id(td_crdt_doc *doc, td_crdt_obj map, const char *key, size_t key_len,
                   uint8_t *out)
{
    td_obj *o = td_crdt_obj_get(doc, map);
    if (!o || o->kind != TD_CRDT_MAP)
        return (int)TD_CRDT_ERR_ARG;
    td_mapent *e = td_crdt_map_find(&o->u.map, key, key_len);
    if (!e)
        return (int)TD_CRDT_ERR_ARG;
    put_u64(out, doc->agents[e->id.agent].id);
    put_u32(out + 8, e->id.seq);
    return 0;
}

/* Nested objects by their creating op, the same on every replica. obj_id:
 * out (12 bytes) u64 agent, u32 seq; TD_CRDT_ERR_ARG for a root. */
TD_EXPORT("obj_id") int tdw_obj_id(td_crdt_doc *doc, td_crdt_obj obj, uint8_t *out)
{
    td_obj *o = td_crdt_obj_get(doc, obj);
    if (!o || o->is_root)
        return (int)TD_CRDT_ERR_ARG;
    put_u64(out, doc->agents[o->id.agent].id);
    put_u32(out + 8, o->id.seq);
    return 0;
}

/* Handle of the nested object created by (agent, seq), or 0. */
TD_EXPORT("obj_find") td_crdt_obj tdw_obj_find(td_crdt_doc *doc, uint64_t agent, uint32_t seq)
{
    return td_crdt_obj_find_nested(doc, agent, seq);
}

/* Handle of the object containing obj (0 for roots). */
TD_EXPORT("obj_parent") td_crdt_obj tdw_obj_parent(td_crdt_doc *doc, td_crdt_obj obj)
{
    td_obj *o = td_crdt_obj_get(doc, obj);
    return o ? o->parent : 0;
}

/* Until place_after(doc, 0, ...) is called, local inserts into obj go right
 * after item (agent, seq) -- deleted or not -- or at obj's very start when
 * has_item is 0, whatever position they name (see td_crdt_seq_place_after).
 * Undo puts deleted content back exactly where it was among tombstones. */
TD_EXPORT("place_after")
int tdw_place_after(td_crdt_doc *doc, td_crdt_obj obj, int has_item, uint64_t agent, uint32_t seq)
{
    td_id id = {TD_NONE, 0};
    if (obj && !seq_obj(doc, obj))
        return (int)TD_CRDT_ERR_ARG;
    if (obj && has_item) {
        if (!td_crdt_agent_find(doc, agent, &id.agent))
            return (int)td_crdt_fail(doc, TD_CRDT_ERR_ARG, "unknown agent");
        id.seq = seq;
    }
    return (int)td_crdt_seq_place_after(doc, obj, obj && !has_item, id);
}
