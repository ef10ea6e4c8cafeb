/*
 * store_read.c -- reading documents back: metadata, snapshots, the log,
 * loads into a td_crdt_doc, listings. Nothing here writes to RocksDB or
 * touches the metadata cache: the write side (store_write.c,
 * store_compact.c) builds on these reads, never the other way round.
 *
 * Each read takes a RocksDB snapshot first so that metadata, snapshot value
 * and log tail belong to one point in time even while the store thread keeps
 * appending. Nothing read is trusted: the metadata must decode and agree
 * with itself, the snapshot must carry the sequence the metadata names and a
 * matching BLAKE2b digest, the log tail must hold exactly the entries
 * snap_seq+1 .. last_seq with valid digests and sizes adding up to what the
 * metadata says, and the core must accept every piece. Any failure is
 * TD_STORE_ERR_CORRUPT with a message naming the document and the key
 * (family/document/sequence); other documents are not affected. Owner
 * records (family owner, one per agent id) are validated the same way, and
 * a load checks them too.
 *
 * Every public entry point holds the database gate (td_store_enter) while
 * it uses the handle; the helpers the write side calls run inside the
 * gate their caller holds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

static rocksdb_readoptions_t *ro_new(const rocksdb_snapshot_t *snap)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(ro, 1);
    if (snap)
        rocksdb_readoptions_set_snapshot(ro, snap);
    return ro;
}

static td_store_err io_err(td_store_error *err, char *rerr, const char *what,
                           const char *doc, size_t doc_len)
{
    char shown[TD_STORE_FMT_ID_CAP];
    td_store_seterr(err, TD_STORE_ERR_IO, "document '%s': reading %s failed: %s",
                    td_store_fmt_id(shown, sizeof shown, doc, doc_len), what, rerr);
    rocksdb_free(rerr);
    return TD_STORE_ERR_IO;
}

/* Reads doc's value in family cf; *val is NULL if there is none, else it
 * holds *len bytes to free with rocksdb_free. */
static td_store_err get_value(td_store *st, const rocksdb_snapshot_t *snap,
                              int cf, const char *doc, size_t doc_len,
                              const char *what, char **val, size_t *len,
                              td_store_error *err)
{
    rocksdb_readoptions_t *ro = ro_new(snap);
    char *rerr = NULL;

    *len = 0;
    *val = rocksdb_get_cf(st->db, ro, st->cf[cf], doc, doc_len, len, &rerr);
    rocksdb_readoptions_destroy(ro);
    if (rerr) {
        *val = NULL;
        return io_err(err, rerr, what, doc, doc_len);
    }
    return TD_STORE_OK;
}

td_store_err td_store_meta_get(td_store *st, const rocksdb_snapshot_t *snap,
                               const char *doc, size_t doc_len,
                               td_store_meta *m, char **raw,
                               td_store_error *err)
{
    char *val;
    size_t len;
    const char *why;
    char shown[TD_STORE_FMT_ID_CAP];
    td_store_err code;

    *raw = NULL;
    code = get_value(st, snap, TD_CF_META, doc, doc_len, "metadata", &val, &len, err);
    if (code != TD_STORE_OK)
        return code;
    if (val == NULL)
        return td_store_seterr(err, TD_STORE_ERR_NOT_FOUND, "no document '%s'",
                               td_store_fmt_id(shown, sizeof shown, doc, doc_len));
    if (!td_store_meta_decode((const uint8_t *)val, len, doc, doc_len, m, &why)) {
        rocksdb_free(val);
        return td_store_seterr(err, TD_STORE_ERR_CORRUPT,
                               "document '%s': metadata (key meta/%s) is damaged: %s",
                               td_store_fmt_id(shown, sizeof shown, doc, doc_len),
                               shown, why);
    }
    *raw = val;
    return TD_STORE_OK;
}

/* An iterator over doc's keys in family cf (log, owner: the keys that
 * start with len(id) . id), positioned at the first of them at or after
 * (prefix . u64 BE from) -- or, for from 0, at the prefix itself, so that
 * malformed short keys are seen too. *ro must be destroyed after the
 * iterator; hi must live as long as it. */
static rocksdb_iterator_t *doc_iter(td_store *st, const rocksdb_snapshot_t *snap,
                                    int cf, const char *doc, size_t doc_len,
                                    uint64_t from, uint8_t *hi,
                                    rocksdb_readoptions_t **ro)
{
    uint8_t lo[TD_STORE_LOG_KEY_MAX];
    size_t lo_len = from ? td_store_log_key(lo, doc, doc_len, from)
                         : td_store_log_prefix(lo, doc, doc_len);
    size_t hi_len = td_store_prefix_end(hi, doc, doc_len);
    rocksdb_iterator_t *it;

    *ro = ro_new(snap);
    rocksdb_readoptions_set_iterate_upper_bound(*ro, (const char *)hi, hi_len);
    it = rocksdb_create_iterator_cf(st->db, *ro, st->cf[cf]);
    rocksdb_iter_seek(it, (const char *)lo, lo_len);
    return it;
}

/* Ends a doc_iter walk that got as far as `code`: the iterator's own error
 * counts if nothing failed before. Destroys it and ro. */
static td_store_err iter_end(rocksdb_iterator_t *it, rocksdb_readoptions_t *ro,
                             td_store_err code, td_store_error *err,
                             const char *what, const char *doc, size_t doc_len)
{
    char *rerr = NULL;
    if (code == TD_STORE_OK) {
        rocksdb_iter_get_error(it, &rerr);
        if (rerr)
            code = io_err(err, rerr, what, doc, doc_len);
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return code;
}

/* 1 if doc has any key in family cf (log, owner), 0 if none, -1 on error. */
static int doc_keys_exist(td_store *st, const rocksdb_snapshot_t *snap, int cf,
                          const char *doc, size_t doc_len, td_store_error *err)
{
    uint8_t hi[TD_STORE_LOG_KEY_MAX];
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
    int found;

    if (st->cf[cf] == NULL)
        return 0; /* a read-only open of a directory without the family */
    it = doc_iter(st, snap, cf, doc, doc_len, 0, hi, &ro);
    found = rocksdb_iter_valid(it);
    if (iter_end(it, ro, TD_STORE_OK, err,
                 cf == TD_CF_LOG ? "the log" : "the owner records", doc,
                 doc_len) != TD_STORE_OK)
        return -1;
    return found;
}

int td_store_log_exists(td_store *st, const rocksdb_snapshot_t *snap,
                        const char *doc, size_t doc_len, td_store_error *err)
{
    return doc_keys_exist(st, snap, TD_CF_LOG, doc, doc_len, err);
}

/* 1 if a snapshot value exists, 0 if not, -1 on error. */
static int snap_exists(td_store *st, const rocksdb_snapshot_t *snap,
                       const char *doc, size_t doc_len, td_store_error *err)
{
    char *val;
    size_t len;
    if (get_value(st, snap, TD_CF_SNAP, doc, doc_len, "the snapshot", &val, &len,
                  err) != TD_STORE_OK)
        return -1;
    rocksdb_free(val);
    return val != NULL;
}

td_store_err td_store_meta_get_checked(td_store *st,
                                       const rocksdb_snapshot_t *snap,
                                       const char *doc, size_t doc_len,
                                       td_store_meta *m, char **raw,
                                       td_store_error *err)
{
    td_store_err code = td_store_meta_get(st, snap, doc, doc_len, m, raw, err);
    char shown[TD_STORE_FMT_ID_CAP];
    int lx, sx, ox;

    if (code != TD_STORE_ERR_NOT_FOUND)
        return code;
    lx = td_store_log_exists(st, snap, doc, doc_len, err);
    if (lx < 0)
        return TD_STORE_ERR_IO;
    sx = snap_exists(st, snap, doc, doc_len, err);
    if (sx < 0)
        return TD_STORE_ERR_IO;
    ox = doc_keys_exist(st, snap, TD_CF_OWNER, doc, doc_len, err);
    if (ox < 0)
        return TD_STORE_ERR_IO;
    if (lx || sx || ox)
        return td_store_seterr(err, TD_STORE_ERR_CORRUPT,
                               "document '%s': metadata (key meta/%s) is missing "
                               "but its %s present",
                               td_store_fmt_id(shown, sizeof shown, doc, doc_len),
                               shown,
                               lx   ? "log is"
                               : sx ? "snapshot is"
                                    : "owner records are");
    return td_store_seterr(err, TD_STORE_ERR_NOT_FOUND, "no document '%s'",
                           td_store_fmt_id(shown, sizeof shown, doc, doc_len));
}

static void info_fill(td_store_doc_info *info, const char *doc, size_t doc_len,
                      const td_store_meta *m)
{
    memset(info, 0, sizeof *info);
    info->doc = doc;
    info->doc_len = doc_len;
    info->msg = "";
    if (m == NULL)
        return;
    info->last_seq = m->last_seq;
    info->snap_seq = m->snap_seq;
    info->log_entries = m->last_seq - m->snap_seq;
    info->log_ops = m->log_ops;
    info->log_bytes = m->log_bytes;
    info->snap_ops = m->snap_ops;
    info->snap_bytes = m->snap_bytes;
    info->vv_len = m->vv_len;
    info->kind = m->kind;
    info->stream_seq = m->stream_seq;
}

/* ---- snapshot values ---------------------------------------------------- */

/* Reads and validates the snapshot value m says exists. *raw must be freed
 * with rocksdb_free; *bytes points into it. */
static td_store_err snap_get(td_store *st, const rocksdb_snapshot_t *snap,
                             const char *doc, size_t doc_len,
                             const td_store_meta *m, char **raw,
                             const uint8_t **bytes, size_t *len,
                             td_store_error *err)
{
    char *val;
    size_t vlen;
    uint64_t seq;
    const char *why;
    char shown[TD_STORE_FMT_ID_CAP];
    td_store_err code;

    *raw = NULL;
    code = get_value(st, snap, TD_CF_SNAP, doc, doc_len, "the snapshot", &val,
                     &vlen, err);
    if (code != TD_STORE_OK)
        return code;
    td_store_fmt_id(shown, sizeof shown, doc, doc_len);
    if (val == NULL)
        return td_store_seterr(err, TD_STORE_ERR_CORRUPT,
                               "document '%s': snapshot (key snap/%s) is missing; "
                               "the metadata says it covers sequence %llu",
                               shown, shown, (unsigned long long)m->snap_seq);
    if (!td_store_snap_decode((const uint8_t *)val, vlen, doc, doc_len, bytes, len,
                              &seq, &why)) {
        rocksdb_free(val);
        return td_store_seterr(err, TD_STORE_ERR_CORRUPT,
                               "document '%s': snapshot (key snap/%s) is damaged: %s",
                               shown, shown, why);
    }
    if (seq != m->snap_seq || vlen != m->snap_bytes) {
        rocksdb_free(val);
        return td_store_seterr(err, TD_STORE_ERR_CORRUPT,
                               "document '%s': snapshot (key snap/%s) covers "
                               "sequence %llu (%zu bytes), the metadata says %llu "
                               "(%llu bytes)",
                               shown, shown, (unsigned long long)seq, vlen,
                               (unsigned long long)m->snap_seq,
                               (unsigned long long)m->snap_bytes);
    }
    *raw = val;
    return TD_STORE_OK;
}

/* ---- the log ------------------------------------------------------------ */

/* Called per entry; returns TD_STORE_OK to go on, TD_STORE_ERR_BUSY to stop
 * quietly, anything else (with err set) to fail. */
typedef td_store_err (*entry_fn)(void *ud, uint64_t seq, const uint8_t *ops,
                                 size_t len, uint64_t nops, td_store_error *err);

static td_store_err log_corrupt(td_store_error *err, const char *doc,
                                size_t doc_len, uint64_t seq, const char *why)
{
    char shown[TD_STORE_FMT_ID_CAP];
    td_store_fmt_id(shown, sizeof shown, doc, doc_len);
    return td_store_seterr(err, TD_STORE_ERR_CORRUPT,
                           "document '%s': log entry %llu (key log/%s/%llu) %s",
                           shown, (unsigned long long)seq, shown,
                           (unsigned long long)seq, why);
}

/* Walks entries after max(after, snap_seq) up to m->last_seq, checking
 * that each expected one is there exactly once and validates. */
static td_store_err scan_log(td_store *st, const rocksdb_snapshot_t *snap,
                             const char *doc, size_t doc_len,
                             const td_store_meta *m, uint64_t after,
                             entry_fn fn, void *ud, td_store_scan_totals *tot,
                             td_store_error *err)
{
    uint8_t hi[TD_STORE_LOG_KEY_MAX];
    uint64_t expect = (after > m->snap_seq ? after : m->snap_seq) + 1;
    int whole = after <= m->snap_seq, stopped = 0;
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
    td_store_scan_totals t = {0, 0, 0};
    td_store_err code = TD_STORE_OK;

    if (tot)
        *tot = t;
    if (expect > m->last_seq)
        return TD_STORE_OK;
    it = doc_iter(st, snap, TD_CF_LOG, doc, doc_len, expect, hi, &ro);
    for (; code == TD_STORE_OK && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen, ops_len, kdoc_len;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(it, &klen);
        const uint8_t *val = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        const uint8_t *ops;
        const char *kdoc, *why;
        uint64_t seq, nops;

        if (!td_store_log_key_parse(key, klen, &kdoc, &kdoc_len, &seq) ||
            kdoc_len != doc_len || memcmp(kdoc, doc, doc_len) != 0) {
            code = log_corrupt(err, doc, doc_len, expect,
                               "is missing; a malformed key is in its place");
            break;
        }
        if (seq > m->last_seq) {
            code = log_corrupt(err, doc, doc_len, seq,
                               "is beyond the last sequence in the metadata");
            break;
        }
        if (seq != expect) {
            code = log_corrupt(err, doc, doc_len, expect, "is missing");
            break;
        }
        if (!td_store_log_value_decode(val, vlen, doc, doc_len, &ops, &ops_len,
                                       &nops, &why)) {
            char what[128];
            snprintf(what, sizeof what, "is damaged: %s", why);
            code = log_corrupt(err, doc, doc_len, seq, what);
            break;
        }
        t.entries++;
        t.bytes += vlen;
        t.ops += nops;
        expect++;
        code = fn(ud, seq, ops, ops_len, nops, err);
        if (code == TD_STORE_ERR_BUSY) {
            code = TD_STORE_OK;
            stopped = 1;
            break;
        }
    }
    code = iter_end(it, ro, code, err, "the log", doc, doc_len);
    if (code != TD_STORE_OK || stopped)
        return code;
    if (expect <= m->last_seq)
        return log_corrupt(err, doc, doc_len, expect, "is missing");
    if (whole && (t.bytes != m->log_bytes || t.ops != m->log_ops)) {
        char shown[TD_STORE_FMT_ID_CAP];
        return td_store_seterr(
            err, TD_STORE_ERR_CORRUPT,
            "document '%s': the log holds %llu ops in %llu bytes, the metadata "
            "(key meta/%s) says %llu ops in %llu bytes",
            td_store_fmt_id(shown, sizeof shown, doc, doc_len),
            (unsigned long long)t.ops, (unsigned long long)t.bytes, shown,
            (unsigned long long)m->log_ops, (unsigned long long)m->log_bytes);
    }
    if (tot)
        *tot = t;
    return TD_STORE_OK;
}

/* ---- owner records ------------------------------------------------------ */

static td_store_err owner_corrupt(td_store_error *err, const char *doc,
                                  size_t doc_len, uint64_t agent, const char *why)
{
    char shown[TD_STORE_FMT_ID_CAP];
    td_store_fmt_id(shown, sizeof shown, doc, doc_len);
    return td_store_seterr(err, TD_STORE_ERR_CORRUPT,
                           "document '%s': owner record of agent %llu (key "
                           "owner/%s/%llu) is damaged: %s",
                           shown, (unsigned long long)agent, shown,
                           (unsigned long long)agent, why);
}

td_store_err td_store_owner_get(td_store *st, const char *doc, size_t doc_len,
                                uint64_t agent, char **raw, const char **owner,
                                size_t *owner_len, td_store_error *err)
{
    uint8_t key[TD_STORE_LOG_KEY_MAX];
    size_t klen = td_store_log_key(key, doc, doc_len, agent), vlen = 0;
    rocksdb_readoptions_t *ro = ro_new(NULL);
    char *rerr = NULL, *val;
    const char *why;

    *raw = NULL;
    val = rocksdb_get_cf(st->db, ro, st->cf[TD_CF_OWNER], (const char *)key, klen,
                         &vlen, &rerr);
    rocksdb_readoptions_destroy(ro);
    if (rerr)
        return io_err(err, rerr, "an owner record", doc, doc_len);
    if (val == NULL)
        return TD_STORE_ERR_NOT_FOUND;
    if (!td_store_owner_value_decode((const uint8_t *)val, vlen, doc, doc_len, agent,
                                     owner, owner_len, &why)) {
        rocksdb_free(val);
        return owner_corrupt(err, doc, doc_len, agent, why);
    }
    *raw = val;
    return TD_STORE_OK;
}

typedef int (*owner_fn)(void *ud, uint64_t agent, const char *owner, size_t len);

/* Validates every owner record of doc and passes each to fn (if not NULL):
 * see td_store_owners for what fn returns. */
static td_store_err scan_owners(td_store *st, const rocksdb_snapshot_t *snap,
                                const char *doc, size_t doc_len, owner_fn fn,
                                void *ud, td_store_error *err)
{
    uint8_t hi[TD_STORE_LOG_KEY_MAX];
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
    td_store_err code = TD_STORE_OK;

    if (st->cf[TD_CF_OWNER] == NULL)
        return TD_STORE_OK; /* read-only open of a directory from before */
    it = doc_iter(st, snap, TD_CF_OWNER, doc, doc_len, 0, hi, &ro);
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen, kdoc_len, owner_len;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(it, &klen);
        const uint8_t *val = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        const char *kdoc, *owner, *why;
        uint64_t agent;
        int rc;

        /* Every key in the range starts with (length, id); a well-formed
         * one is exactly 8 bytes longer. */
        if (!td_store_log_key_parse(key, klen, &kdoc, &kdoc_len, &agent) ||
            kdoc_len != doc_len || memcmp(kdoc, doc, doc_len) != 0) {
            char shown[TD_STORE_FMT_ID_CAP];
            code = td_store_seterr(err, TD_STORE_ERR_CORRUPT,
                                   "document '%s': a malformed key (%zu bytes) is "
                                   "among its owner records (owner/%s/...)",
                                   td_store_fmt_id(shown, sizeof shown, doc, doc_len),
                                   klen, shown);
            break;
        }
        if (!td_store_owner_value_decode(val, vlen, doc, doc_len, agent, &owner,
                                         &owner_len, &why)) {
            code = owner_corrupt(err, doc, doc_len, agent, why);
            break;
        }
        rc = fn ? fn(ud, agent, owner, owner_len) : 0;
        if (rc < 0) {
            code = td_store_seterr(err, TD_STORE_ERR_NOMEM,
                                   "out of memory taking the owner records");
            break;
        }
        if (rc > 0)
            break;
    }
    return iter_end(it, ro, code, err, "the owner records", doc, doc_len);
}

/* How every call that scans a document for a callback starts: a callback,
 * a valid id, an open store (td_store_leave ends it). */
static td_store_err enter_scan(td_store *st, int have_cb, const char *doc, size_t doc_len,
                               td_store_error *err)
{
    if (!have_cb)
        return td_store_seterr(err, TD_STORE_ERR_ARG, "no callback");
    return td_store_enter_doc(st, doc, doc_len, 0, err);
}

td_store_err td_store_owners(td_store *st, const char *doc, size_t doc_len,
                             owner_fn fn, void *ud, td_store_error *err)
{
    td_store_err code;

    code = enter_scan(st, fn != NULL, doc, doc_len, err);
    if (code != TD_STORE_OK)
        return code;
    code = scan_owners(st, NULL, doc, doc_len, fn, ud, err);
    td_store_leave(st);
    return code;
}

/* ---- loading into the core ---------------------------------------------- */

static td_store_err crdt_err(td_store_error *err, td_crdt_err ce,
                             const char *doc, size_t doc_len, const char *what,
                             const char *why)
{
    char shown[TD_STORE_FMT_ID_CAP];
    td_store_fmt_id(shown, sizeof shown, doc, doc_len);
    if (ce == TD_CRDT_ERR_NOMEM)
        return td_store_seterr(err, TD_STORE_ERR_NOMEM,
                               "document '%s': out of memory loading %s", shown,
                               what);
    return td_store_seterr(err, TD_STORE_ERR_CORRUPT,
                           "document '%s': %s was rejected by the core (%s: %s)",
                           shown, what, td_crdt_strerror(ce), why ? why : "");
}

static td_store_err kind_err(td_store_error *err, const char *doc, size_t doc_len,
                             td_store_kind is, td_store_kind want)
{
    char shown[TD_STORE_FMT_ID_CAP];
    return td_store_seterr(err, TD_STORE_ERR_KIND, "document '%s' is a %s document, not %s",
                           td_store_fmt_id(shown, sizeof shown, doc, doc_len),
                           td_store_kind_name(is), td_store_kind_name(want));
}

typedef struct apply_ctx {
    td_crdt_doc *d;
    const char *doc;
    size_t doc_len;
} apply_ctx;

static td_store_err apply_entry(void *ud, uint64_t seq, const uint8_t *ops,
                                size_t len, uint64_t nops, td_store_error *err)
{
    apply_ctx *c = ud;
    td_crdt_err ce = td_crdt_apply(c->d, ops, len, NULL);
    (void)nops;
    if (ce != TD_CRDT_OK) {
        char what[TD_STORE_FMT_ID_CAP + 64], shown[TD_STORE_FMT_ID_CAP];
        snprintf(what, sizeof what, "log entry %llu (key log/%s/%llu)",
                 (unsigned long long)seq,
                 td_store_fmt_id(shown, sizeof shown, c->doc, c->doc_len),
                 (unsigned long long)seq);
        return crdt_err(err, ce, c->doc, c->doc_len, what, td_crdt_doc_error(c->d));
    }
    return TD_STORE_OK;
}

td_store_err td_store_load_at(td_store *st, const rocksdb_snapshot_t *snap,
                              const char *doc, size_t doc_len,
                              const td_crdt_options *opts,
                              const td_store_meta *m, td_crdt_doc **out,
                              td_store_scan_totals *totals,
                              td_store_error *err)
{
    td_crdt_options defaults;
    apply_ctx c = {NULL, doc, doc_len};
    td_store_err code;
    td_crdt_err ce;

    *out = NULL;
    if (m->kind != TD_STORE_KIND_TANDEM)
        return kind_err(err, doc, doc_len, m->kind, TD_STORE_KIND_TANDEM);
    if (opts == NULL) {
        memset(&defaults, 0, sizeof defaults);
        opts = &defaults;
    }
    if (m->snap_seq > 0) {
        char *raw;
        const uint8_t *bytes;
        size_t len;
        const char *why = NULL;
        char what[TD_STORE_FMT_ID_CAP + 32], shown[TD_STORE_FMT_ID_CAP];

        code = snap_get(st, snap, doc, doc_len, m, &raw, &bytes, &len, err);
        if (code != TD_STORE_OK)
            return code;
        ce = td_crdt_doc_load(opts, bytes, len, &c.d, &why);
        rocksdb_free(raw);
        snprintf(what, sizeof what, "the snapshot (key snap/%s)",
                 td_store_fmt_id(shown, sizeof shown, doc, doc_len));
        if (ce != TD_CRDT_OK)
            return crdt_err(err, ce, doc, doc_len, what, why);
    } else {
        ce = td_crdt_doc_new(opts, &c.d);
        if (ce != TD_CRDT_OK)
            return crdt_err(err, ce, doc, doc_len, "a new document", "");
    }
    code = scan_log(st, snap, doc, doc_len, m, 0, apply_entry, &c, totals, err);
    if (code != TD_STORE_OK) {
        td_crdt_doc_free(c.d);
        return code;
    }
    *out = c.d;
    return TD_STORE_OK;
}

td_store_err td_store_load(td_store *st, const char *doc, size_t doc_len,
                           const td_crdt_options *opts, td_crdt_doc **out,
                           td_store_doc_info *info, td_store_error *err)
{
    const rocksdb_snapshot_t *snap;
    td_store_meta m;
    char *raw = NULL;
    td_store_err code;

    *out = NULL;
    code = td_store_enter_doc(st, doc, doc_len, 0, err);
    if (code != TD_STORE_OK)
        return code;
    snap = rocksdb_create_snapshot(st->db);
    code = td_store_meta_get_checked(st, snap, doc, doc_len, &m, &raw, err);
    if (code == TD_STORE_OK)
        code = scan_owners(st, snap, doc, doc_len, NULL, NULL, err);
    if (code == TD_STORE_OK) {
        if (info)
            info_fill(info, doc, doc_len, &m);
        code = td_store_load_at(st, snap, doc, doc_len, opts, &m, out, NULL, err);
    }
    rocksdb_free(raw);
    rocksdb_release_snapshot(st->db, snap);
    td_store_leave(st);
    return code;
}

/* Hands the caller a malloc'ed copy (td_store_free) of n bytes at p. */
static td_store_err copy_out(const void *p, size_t n, uint8_t **out,
                             size_t *len, td_store_error *err)
{
    *out = malloc(n);
    if (*out == NULL)
        return td_store_err_nomem(err);
    memcpy(*out, p, n);
    *len = n;
    return TD_STORE_OK;
}

td_store_err td_store_read_missing(td_store *st, const char *doc,
                                   size_t doc_len, const uint8_t *vv,
                                   size_t vv_len, const td_crdt_options *opts,
                                   uint8_t **out, size_t *len,
                                   td_store_error *err)
{
    td_crdt_doc *d;
    uint8_t *diff = NULL;
    size_t dlen = 0;
    td_crdt_err ce;
    td_store_err code;

    *out = NULL;
    *len = 0;
    code = td_store_load(st, doc, doc_len, opts, &d, NULL, err);
    if (code != TD_STORE_OK)
        return code;
    ce = td_crdt_diff(d, vv, vv_len, &diff, &dlen);
    if (ce != TD_CRDT_OK) {
        code = td_store_seterr(err, ce == TD_CRDT_ERR_NOMEM ? TD_STORE_ERR_NOMEM
                                                           : TD_STORE_ERR_ARG,
                               "diff against the given version vector failed "
                               "(%s: %s)",
                               td_crdt_strerror(ce), td_crdt_doc_error(d));
    } else if (dlen > 0) {
        code = copy_out(diff, dlen, out, len, err);
    }
    if (diff)
        td_crdt_buf_free(d, diff);
    td_crdt_doc_free(d);
    return code;
}

/* ---- raw pieces --------------------------------------------------------- */

/* The current metadata of the document a caller names. */
static td_store_err meta_now(td_store *st, const char *doc, size_t doc_len,
                             td_store_meta *m, char **raw, td_store_error *err)
{
    td_store_err code;

    *raw = NULL;
    code = td_store_enter_doc(st, doc, doc_len, 0, err);
    if (code != TD_STORE_OK)
        return code;
    code = td_store_meta_get_checked(st, NULL, doc, doc_len, m, raw, err);
    td_store_leave(st);
    return code;
}

td_store_err td_store_doc_stat(td_store *st, const char *doc, size_t doc_len,
                               td_store_doc_info *info, td_store_error *err)
{
    td_store_meta m;
    char *raw;
    td_store_err code = meta_now(st, doc, doc_len, &m, &raw, err);

    if (code == TD_STORE_OK)
        info_fill(info, doc, doc_len, &m);
    rocksdb_free(raw);
    return code;
}

td_store_err td_store_read_vv(td_store *st, const char *doc, size_t doc_len,
                              uint8_t **out, size_t *len, td_store_error *err)
{
    td_store_meta m;
    char *raw;
    td_store_err code;

    *out = NULL;
    *len = 0;
    code = meta_now(st, doc, doc_len, &m, &raw, err);
    if (code == TD_STORE_OK && m.vv_len)
        code = copy_out(m.vv, m.vv_len, out, len, err);
    rocksdb_free(raw);
    return code;
}

td_store_err td_store_read_snapshot(td_store *st, const char *doc,
                                    size_t doc_len, uint8_t **out, size_t *len,
                                    uint64_t *seq, td_store_error *err)
{
    const rocksdb_snapshot_t *snap;
    td_store_meta m;
    char *raw = NULL, *sraw = NULL;
    const uint8_t *bytes;
    size_t blen;
    td_store_err code;

    *out = NULL;
    *len = 0;
    if (seq)
        *seq = 0;
    code = td_store_enter_doc(st, doc, doc_len, 0, err);
    if (code != TD_STORE_OK)
        return code;
    snap = rocksdb_create_snapshot(st->db);
    code = td_store_meta_get_checked(st, snap, doc, doc_len, &m, &raw, err);
    if (code == TD_STORE_OK && m.snap_seq > 0) {
        code = snap_get(st, snap, doc, doc_len, &m, &sraw, &bytes, &blen, err);
        if (code == TD_STORE_OK)
            code = copy_out(bytes, blen, out, len, err);
        if (code == TD_STORE_OK && seq)
            *seq = m.snap_seq;
    }
    rocksdb_free(sraw);
    rocksdb_free(raw);
    rocksdb_release_snapshot(st->db, snap);
    td_store_leave(st);
    return code;
}

typedef struct user_log_ctx {
    td_store_log_cb cb;
    void *ud;
} user_log_ctx;

static td_store_err user_entry(void *ud, uint64_t seq, const uint8_t *ops,
                               size_t len, uint64_t nops, td_store_error *err)
{
    user_log_ctx *c = ud;
    (void)err;
    return c->cb(c->ud, seq, ops, len, nops) ? TD_STORE_ERR_BUSY : TD_STORE_OK;
}

td_store_err td_store_read_log(td_store *st, const char *doc, size_t doc_len,
                               uint64_t after_seq, td_store_log_cb cb,
                               void *ud, td_store_error *err)
{
    const rocksdb_snapshot_t *snap;
    td_store_meta m;
    char *raw = NULL;
    user_log_ctx c = {cb, ud};
    td_store_err code;

    code = enter_scan(st, cb != NULL, doc, doc_len, err);
    if (code != TD_STORE_OK)
        return code;
    snap = rocksdb_create_snapshot(st->db);
    code = td_store_meta_get_checked(st, snap, doc, doc_len, &m, &raw, err);
    if (code == TD_STORE_OK)
        code = scan_log(st, snap, doc, doc_len, &m, after_seq, user_entry, &c,
                        NULL, err);
    rocksdb_free(raw);
    rocksdb_release_snapshot(st->db, snap);
    td_store_leave(st);
    return code;
}

/* ---- listing ------------------------------------------------------------ */

td_store_err td_store_list(td_store *st, td_store_list_cb cb, void *ud,
                           td_store_error *err)
{
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
    char *rerr = NULL;
    td_store_err code = td_store_enter(st, err);

    if (code != TD_STORE_OK)
        return code;
    ro = ro_new(NULL);
    it = rocksdb_create_iterator_cf(st->db, ro, st->cf[TD_CF_META]);

    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(it, &klen);
        const uint8_t *val = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        td_store_doc_info info;
        td_store_meta m;
        const char *why;
        char msg[1024], shown[TD_STORE_FMT_ID_CAP];

        if (!td_store_doc_id_valid(key, klen)) {
            info_fill(&info, key, klen, NULL);
            info.status = TD_STORE_ERR_CORRUPT;
            snprintf(msg, sizeof msg, "metadata key '%s' is not a valid document id",
                     td_store_fmt_id(shown, sizeof shown, key, klen));
            info.msg = msg;
        } else if (!td_store_meta_decode(val, vlen, key, klen, &m, &why)) {
            info_fill(&info, key, klen, NULL);
            info.status = TD_STORE_ERR_CORRUPT;
            td_store_fmt_id(shown, sizeof shown, key, klen);
            snprintf(msg, sizeof msg,
                     "document '%s': metadata (key meta/%s) is damaged: %s",
                     shown, shown, why);
            info.msg = msg;
        } else {
            info_fill(&info, key, klen, &m);
        }
        if (cb(ud, &info) != 0)
            break;
    }
    rocksdb_iter_get_error(it, &rerr);
    if (rerr) {
        code = td_store_seterr(err, TD_STORE_ERR_IO, "listing documents failed: %s",
                               rerr);
        rocksdb_free(rerr);
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    td_store_leave(st);
    return code;
}

/* ---- loading a Yjs document ---------------------------------------------- */

static td_store_err yjs_err(td_store_error *err, td_yjs_err ye, td_yjs_doc *d,
                            const char *doc, size_t doc_len, const char *what)
{
    char shown[TD_STORE_FMT_ID_CAP];
    td_store_fmt_id(shown, sizeof shown, doc, doc_len);
    if (ye == TD_YJS_ERR_NOMEM)
        return td_store_seterr(err, TD_STORE_ERR_NOMEM,
                               "document '%s': out of memory loading %s", shown, what);
    return td_store_seterr(err, TD_STORE_ERR_CORRUPT,
                           "document '%s': %s was rejected by the Yjs model (%s: %s)",
                           shown, what, td_yjs_strerror(ye), d ? td_yjs_doc_error(d) : "");
}

typedef struct yjs_ctx {
    td_yjs_doc *d;
    const char *doc;
    size_t doc_len;
} yjs_ctx;

static td_store_err yjs_entry(void *ud, uint64_t seq, const uint8_t *ops, size_t len,
                              uint64_t nops, td_store_error *err)
{
    yjs_ctx *c = ud;
    td_yjs_err ye = td_yjs_apply_update(c->d, ops, len);
    (void)nops;
    if (ye != TD_YJS_OK) {
        char what[64];
        snprintf(what, sizeof what, "log entry %llu", (unsigned long long)seq);
        return yjs_err(err, ye, c->d, c->doc, c->doc_len, what);
    }
    return TD_STORE_OK;
}

td_store_err td_store_load_yjs_at(td_store *st, const rocksdb_snapshot_t *snap,
                                  const char *doc, size_t doc_len,
                                  const td_yjs_options *opts, const td_store_meta *m,
                                  td_yjs_doc **out, td_store_scan_totals *totals,
                                  td_store_error *err)
{
    yjs_ctx c = {NULL, doc, doc_len};
    td_store_err code;
    td_yjs_err ye;

    *out = NULL;
    if (m->kind != TD_STORE_KIND_YJS)
        return kind_err(err, doc, doc_len, m->kind, TD_STORE_KIND_YJS);
    ye = td_yjs_doc_new(opts, &c.d);
    if (ye != TD_YJS_OK)
        return yjs_err(err, ye, NULL, doc, doc_len, "a new document");
    if (m->snap_seq > 0) {
        char *raw;
        const uint8_t *bytes;
        size_t len;
        code = snap_get(st, snap, doc, doc_len, m, &raw, &bytes, &len, err);
        if (code != TD_STORE_OK) {
            td_yjs_doc_free(c.d);
            return code;
        }
        ye = td_yjs_apply_update(c.d, bytes, len);
        rocksdb_free(raw);
        if (ye != TD_YJS_OK) {
            code = yjs_err(err, ye, c.d, doc, doc_len, "the snapshot");
            td_yjs_doc_free(c.d);
            return code;
        }
    }
    code = scan_log(st, snap, doc, doc_len, m, 0, yjs_entry, &c, totals, err);
    if (code != TD_STORE_OK) {
        td_yjs_doc_free(c.d);
        return code;
    }
    *out = c.d;
    return TD_STORE_OK;
}

td_store_err td_store_load_yjs(td_store *st, const char *doc, size_t doc_len,
                               const td_yjs_options *opts, td_yjs_doc **out,
                               td_store_doc_info *info, td_store_error *err)
{
    const rocksdb_snapshot_t *snap;
    td_store_meta m;
    char *raw = NULL;
    td_store_err code;

    *out = NULL;
    code = td_store_enter_doc(st, doc, doc_len, 0, err);
    if (code != TD_STORE_OK)
        return code;
    snap = rocksdb_create_snapshot(st->db);
    code = td_store_meta_get_checked(st, snap, doc, doc_len, &m, &raw, err);
    if (code == TD_STORE_OK) {
        if (info)
            info_fill(info, doc, doc_len, &m);
        code = td_store_load_yjs_at(st, snap, doc, doc_len, opts, &m, out, NULL, err);
    }
    rocksdb_free(raw);
    rocksdb_release_snapshot(st->db, snap);
    td_store_leave(st);
    return code;
}
