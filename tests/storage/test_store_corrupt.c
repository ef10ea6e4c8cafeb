/*
 * test_store_corrupt.c -- a damaged data directory gives errors, never a
 * crash and never a silently different document; damage stays with the
 * document it hit.
 *
 * Many copies of one document are stored (snapshot + log tail each). Then,
 * with the raw RocksDB API, a different value of a different copy is
 * damaged: bytes flipped in snapshot, log and metadata values, values
 * truncated, replaced by garbage, deleted, extra keys added, metadata made
 * inconsistent, and -- to reach past the checksums into the core's decoders
 * -- truncated or garbage payloads re-wrapped with valid checksums. After
 * reopening, every damaged copy must fail to load with TD_STORE_ERR_CORRUPT
 * and a message naming it, and every untouched copy must load and equal the
 * reference. A flipped byte in a snapshot must be reported as a checksum
 * error. Seeded; TD_TEST_SEED=... replays.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_codec.h"
#include "store_test_util.h"
#include "tandem_store.h"

#define NBATCH 12
#define NSNAP 8 /* batches folded into the snapshot; the rest is the tail */
#define NFUZZ 150
#define PREPARED 400 /* copies made; those left undamaged are controls too */

static st_rng rng;

typedef struct bytes {
    uint8_t *p;
    size_t n;
} bytes;

static bytes batches[NBATCH];
static uint64_t batch_ops[NBATCH];
static char *ref_json;

/* Expected outcome of a damaged copy. */
typedef struct victim {
    char doc[32];
    const char *what;
    const char *must_say; /* substring of the message, or NULL */
    int ok_allowed;       /* damage that may legitimately go unnoticed */
} victim;

static victim victims[1024];
static int nvictims;

static const char *new_victim(const char *what, const char *must_say)
{
    victim *v = &victims[nvictims];
    snprintf(v->doc, sizeof v->doc, "v%03d", nvictims);
    v->what = what;
    v->must_say = must_say;
    v->ok_allowed = 0;
    nvictims++;
    return v->doc;
}

/* ---- building the reference and the copies ------------------------------ */

static void make_reference(void)
{
    td_crdt_options o = {0};
    td_crdt_doc *d;
    td_crdt_obj text, list, map;
    uint64_t before = 0;
    char *j;
    size_t len;

    o.agent = 0x7a11;
    CHECK(td_crdt_doc_new(&o, &d) == TD_CRDT_OK);
    CHECK(td_crdt_root(d, TD_CRDT_TEXT, "body", 4, &text) == TD_CRDT_OK);
    CHECK(td_crdt_root(d, TD_CRDT_LIST, "items", 5, &list) == TD_CRDT_OK);
    CHECK(td_crdt_root(d, TD_CRDT_MAP, "meta", 4, &map) == TD_CRDT_OK);
    for (int i = 0; i < NBATCH; i++) {
        td_crdt_value v;
        char key[8];
        memset(&v, 0, sizeof v);
        CHECK(td_crdt_text_insert(d, text, td_crdt_text_length(d, text),
                                  "hello world, ", 13) == TD_CRDT_OK);
        CHECK(td_crdt_text_delete(d, text, td_crdt_text_length(d, text) - 2, 1) ==
              TD_CRDT_OK);
        v.type = TD_CRDT_V_INT;
        v.u.i = i;
        CHECK(td_crdt_list_insert(d, list, 0, &v, 1) == TD_CRDT_OK);
        snprintf(key, sizeof key, "k%d", i % 4);
        v.type = TD_CRDT_V_STR;
        v.u.str.ptr = "value";
        v.u.str.len = 5;
        CHECK(td_crdt_map_set(d, map, key, strlen(key), &v) == TD_CRDT_OK);
        CHECK(td_crdt_commit(d, &batches[i].p, &batches[i].n) == TD_CRDT_OK);
        batch_ops[i] = td_crdt_op_count(d) - before;
        before = td_crdt_op_count(d);
    }
    CHECK(td_crdt_to_json(d, &j, &len) == TD_CRDT_OK);
    ref_json = strdup(j);
    td_crdt_buf_free(d, j);
    /* The batches outlive the document: copy them out. */
    for (int i = 0; i < NBATCH; i++) {
        uint8_t *copy = malloc(batches[i].n);
        memcpy(copy, batches[i].p, batches[i].n);
        td_crdt_buf_free(d, batches[i].p);
        batches[i].p = copy;
    }
    td_crdt_doc_free(d);
}

static void store_copy(td_store *st, const char *doc)
{
    td_store_error e = {0};
    for (int i = 0; i < NBATCH; i++) {
        td_store_batch b;
        memset(&b, 0, sizeof b);
        b.doc = doc;
        b.doc_len = strlen(doc);
        b.ops = batches[i].p;
        b.ops_len = batches[i].n;
        b.nops = batch_ops[i];
        CHECK_OK(td_store_append_wait(st, &b, NULL, &e), &e);
        if (i + 1 == NSNAP) {
            td_store_compact_info ci;
            CHECK_OK(td_store_compact(st, doc, strlen(doc), 1, &ci, &e), &e);
            CHECK(ci.compacted);
        }
    }
}

/* ---- damage ------------------------------------------------------------- */

enum { VAL_SNAP, VAL_META, VAL_LOG };
static const int val_cf[] = {ST_CF_SNAP, ST_CF_META, ST_CF_LOG};
static const char *const val_name[] = {"snapshot", "metadata", "log entry"};

/* The key of a value kind of doc (log: the first tail entry). */
static size_t value_key(int kind, const char *doc, uint8_t *key)
{
    if (kind == VAL_LOG)
        return st_log_key(key, doc, NSNAP + 1);
    memcpy(key, doc, strlen(doc));
    return strlen(doc);
}

static char *get_value(st_raw *raw, int kind, const char *doc, size_t *len)
{
    uint8_t key[300];
    size_t klen = value_key(kind, doc, key);
    char *v = st_raw_get(raw, val_cf[kind], key, klen, len);
    CHECK_MSG(v != NULL, "%s of %s not found", val_name[kind], doc);
    return v;
}

static void put_value(st_raw *raw, int kind, const char *doc, const void *v, size_t len)
{
    uint8_t key[300];
    size_t klen = value_key(kind, doc, key);
    st_raw_put(raw, val_cf[kind], key, klen, v, len);
}

static void flip(st_raw *raw, int kind, size_t pos_or_neg, int from_end,
                 const char *must_say)
{
    char what[96];
    size_t len, pos;
    char *v;
    const char *doc;

    snprintf(what, sizeof what, "%s: byte %s%zu flipped", val_name[kind],
             from_end ? "end-" : "", pos_or_neg);
    doc = new_victim(strdup(what), must_say);
    v = get_value(raw, kind, doc, &len);
    pos = from_end ? len - pos_or_neg : pos_or_neg;
    CHECK(pos < len);
    v[pos] ^= (char)(1 << st_rng_below(&rng, 8));
    put_value(raw, kind, doc, v, len);
    free(v);
}

static void truncate_to(st_raw *raw, int kind, size_t keep, int from_end)
{
    char what[96];
    size_t len;
    char *v;
    const char *doc;
    snprintf(what, sizeof what, "%s: truncated to %s%zu bytes", val_name[kind],
             from_end ? "len-" : "", keep);
    doc = new_victim(strdup(what), NULL);
    v = get_value(raw, kind, doc, &len);
    put_value(raw, kind, doc, v, from_end ? len - keep : keep);
    free(v);
}

static void garbage(st_raw *raw, int kind, size_t n)
{
    char what[96];
    uint8_t buf[4096];
    const char *doc;
    snprintf(what, sizeof what, "%s: replaced by %zu random bytes", val_name[kind], n);
    doc = new_victim(strdup(what), NULL);
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)st_rng_next(&rng);
    put_value(raw, kind, doc, buf, n);
}

static void delete_value(st_raw *raw, int kind)
{
    char what[96];
    uint8_t key[300];
    const char *doc;
    snprintf(what, sizeof what, "%s: deleted", val_name[kind]);
    doc = new_victim(strdup(what), kind == VAL_LOG ? "missing" : "missing");
    st_raw_del(raw, val_cf[kind], key, value_key(kind, doc, key));
}

/* Valid checksums around payloads the core must reject. */
static void wrapped_snapshot(st_raw *raw, size_t keep, int random_bytes)
{
    char what[96];
    size_t len, slen, wlen;
    const uint8_t *snap;
    uint64_t seq;
    const char *why, *doc;
    uint8_t *w, *payload;
    char *v;

    snprintf(what, sizeof what, "snapshot payload %s %zu bytes, valid checksum",
             random_bytes ? "replaced by" : "truncated to", keep);
    doc = new_victim(strdup(what), "rejected by the core");
    v = get_value(raw, VAL_SNAP, doc, &len);
    CHECK(td_store_snap_decode((uint8_t *)v, len, doc, strlen(doc), &snap, &slen, &seq,
                               &why));
    payload = malloc(keep + 1);
    for (size_t i = 0; i < keep; i++)
        payload[i] = random_bytes ? (uint8_t)st_rng_next(&rng) : snap[i];
    w = td_store_snap_encode(payload, keep, seq, doc, strlen(doc), &wlen);
    put_value(raw, VAL_SNAP, doc, w, wlen);
    /* The metadata records the snapshot's size: keep it in step so that
     * the core, not the size check, has to catch this. */
    {
        size_t mlen, nlen;
        char *m = get_value(raw, VAL_META, doc, &mlen);
        td_store_meta meta;
        uint8_t *nm;
        CHECK(td_store_meta_decode((uint8_t *)m, mlen, doc, strlen(doc), &meta, &why));
        meta.snap_bytes = wlen;
        nm = td_store_meta_encode(&meta, doc, strlen(doc), &nlen);
        put_value(raw, VAL_META, doc, nm, nlen);
        free(nm);
        free(m);
    }
    free(w);
    free(payload);
    free(v);
}

static void wrapped_log(st_raw *raw, size_t keep, int random_bytes)
{
    char what[96];
    size_t len, olen, wlen;
    const uint8_t *ops;
    uint64_t nops;
    const char *why, *doc;
    uint8_t *w;
    char *v;

    snprintf(what, sizeof what, "log payload %s %zu bytes, valid checksum",
             random_bytes ? "replaced by" : "truncated to", keep);
    doc = new_victim(strdup(what), "rejected by the core");
    v = get_value(raw, VAL_LOG, doc, &len);
    CHECK(td_store_log_value_decode((uint8_t *)v, len, doc, strlen(doc), &ops, &olen,
                                    &nops, &why));
    CHECK(keep >= 1 && keep <= olen);
    {
        uint8_t *payload = malloc(keep);
        for (size_t i = 0; i < keep; i++)
            payload[i] = random_bytes ? (uint8_t)st_rng_next(&rng) : ops[i];
        wlen = td_store_log_value_size(keep, nops);
        w = malloc(wlen);
        td_store_log_value_encode(w, wlen, doc, strlen(doc), payload, keep, nops);
        free(payload);
    }
    put_value(raw, VAL_LOG, doc, w, wlen);
    /* Keep the metadata's byte count in step (see wrapped_snapshot). */
    {
        size_t mlen, nlen;
        char *m = get_value(raw, VAL_META, doc, &mlen);
        td_store_meta meta;
        uint8_t *nm;
        CHECK(td_store_meta_decode((uint8_t *)m, mlen, doc, strlen(doc), &meta, &why));
        meta.log_bytes = meta.log_bytes - len + wlen;
        nm = td_store_meta_encode(&meta, doc, strlen(doc), &nlen);
        put_value(raw, VAL_META, doc, nm, nlen);
        free(nm);
        free(m);
    }
    free(w);
    free(v);
}

/* Metadata with a valid checksum that disagrees with the rest. */
static void bad_meta_field(st_raw *raw, int field, int64_t delta, const char *must_say)
{
    static const char *const names[] = {"last_seq", "snap_seq", "log_ops",
                                        "log_bytes", "snap_bytes"};
    char what[96];
    size_t mlen, nlen;
    const char *why, *doc;
    td_store_meta meta;
    uint64_t *f[5];
    uint8_t *nm;
    char *m;

    snprintf(what, sizeof what, "metadata %s %+" PRId64 ", valid checksum", names[field],
             delta);
    doc = new_victim(strdup(what), must_say);
    m = get_value(raw, VAL_META, doc, &mlen);
    CHECK(td_store_meta_decode((uint8_t *)m, mlen, doc, strlen(doc), &meta, &why));
    f[0] = &meta.last_seq;
    f[1] = &meta.snap_seq;
    f[2] = &meta.log_ops;
    f[3] = &meta.log_bytes;
    f[4] = &meta.snap_bytes;
    *f[field] = (uint64_t)((int64_t)*f[field] + delta);
    nm = td_store_meta_encode(&meta, doc, strlen(doc), &nlen);
    put_value(raw, VAL_META, doc, nm, nlen);
    free(nm);
    free(m);
}

/* Keys that should not be there. */
static void extra_log_key(st_raw *raw, int malformed)
{
    uint8_t key[300];
    size_t klen, vlen;
    const char *doc = new_victim(malformed ? "log: a malformed key inside the range"
                                           : "log: an entry beyond the last sequence",
                                 malformed ? "malformed" : "beyond");
    char *v = get_value(raw, VAL_LOG, doc, &vlen);
    klen = st_log_key(key, doc, malformed ? NSNAP + 1 : NBATCH + 1);
    if (malformed) {
        /* entry NSNAP+1's key plus a stray byte: sorts before NSNAP+2 */
        key[klen++] = 0x00;
    }
    st_raw_put(raw, ST_CF_LOG, key, klen, v, vlen);
    free(v);
}

static void damage_all(st_raw *raw)
{
    size_t slen, mlen, llen, olen;
    char *s = get_value(raw, VAL_SNAP, "c0", &slen);
    char *m = get_value(raw, VAL_META, "c0", &mlen);
    char *l = get_value(raw, VAL_LOG, "c0", &llen);
    const uint8_t *ops;
    uint64_t nops;
    const char *why;

    CHECK(td_store_log_value_decode((uint8_t *)l, llen, "c0", 2, &ops, &olen, &nops,
                                    &why));
    /* bar 3: a flipped byte in a snapshot is a checksum error */
    flip(raw, VAL_SNAP, TD_STORE_SNAP_HEADER, 0, "checksum");
    flip(raw, VAL_SNAP, slen / 2, 0, "checksum");
    flip(raw, VAL_SNAP, 1, 1, "checksum");
    flip(raw, VAL_SNAP, 4, 0, "checksum");  /* the covered sequence */
    flip(raw, VAL_SNAP, 12, 0, "checksum"); /* the digest itself */
    flip(raw, VAL_SNAP, 0, 0, "snap/");     /* the format byte */
    for (int kind = VAL_SNAP; kind <= VAL_LOG; kind++) {
        size_t len = kind == VAL_SNAP ? slen : kind == VAL_META ? mlen : llen;
        if (kind != VAL_SNAP) {
            flip(raw, kind, 0, 0, NULL);
            flip(raw, kind, 1, 0, NULL);
            flip(raw, kind, len / 2, 0, NULL);
            flip(raw, kind, 1, 1, NULL);
        }
        truncate_to(raw, kind, 0, 0);
        truncate_to(raw, kind, 1, 0);
        truncate_to(raw, kind, len / 2, 0);
        truncate_to(raw, kind, 1, 1);
        garbage(raw, kind, len);
        garbage(raw, kind, 1 + (size_t)st_rng_below(&rng, 64));
        delete_value(raw, kind);
    }
    extra_log_key(raw, 0);
    extra_log_key(raw, 1);
    bad_meta_field(raw, 0, +1, "missing");
    bad_meta_field(raw, 0, -1, "beyond");
    bad_meta_field(raw, 1, -1, "snap/");
    bad_meta_field(raw, 2, +1, "metadata");
    bad_meta_field(raw, 3, +5, "metadata");
    bad_meta_field(raw, 4, +1, "snap/");
    /* Past the checksums, into the core's decoders. */
    for (size_t keep = 1; keep < slen - TD_STORE_SNAP_HEADER;
         keep += 1 + (slen - TD_STORE_SNAP_HEADER) / 40)
        wrapped_snapshot(raw, keep, 0);
    for (int i = 0; i < 20; i++)
        wrapped_snapshot(raw, 1 + (size_t)st_rng_below(&rng, slen), 1);
    for (size_t keep = 1; keep < olen; keep += 1 + olen / 30)
        wrapped_log(raw, keep, 0);
    for (int i = 0; i < 20; i++)
        wrapped_log(raw, 1 + (size_t)st_rng_below(&rng, olen), 1);
    /* Random damage: a few bytes of one value flipped, or it cut short. */
    for (int i = 0; i < NFUZZ; i++) {
        int kind = (int)st_rng_below(&rng, 3);
        const char *doc = new_victim("random damage", NULL);
        size_t len;
        char *v = get_value(raw, kind, doc, &len);
        if (st_rng_below(&rng, 3) == 0) {
            len = (size_t)st_rng_below(&rng, len);
        } else {
            int n = 1 + (int)st_rng_below(&rng, 4);
            for (int k = 0; k < n; k++)
                v[st_rng_below(&rng, len)] ^= (char)(1 + st_rng_below(&rng, 255));
        }
        put_value(raw, kind, doc, v, len);
        free(v);
    }
    free(s);
    free(m);
    free(l);
}

/* ---- the test ----------------------------------------------------------- */

typedef struct list_ctx {
    int n, damaged;
} list_ctx;

static int count_doc(void *ud, const td_store_doc_info *info)
{
    list_ctx *c = ud;
    c->n++;
    c->damaged += info->status != TD_STORE_OK;
    return 0;
}

static void test_damage(void)
{
    char *dir = st_tmpdir();
    td_store_options o = {0};
    td_store_error e = {0};
    td_store *st;
    st_raw raw;
    int controls = 3, damaged;
    list_ctx lc = {0, 0};

    make_reference();
    o.create_if_missing = 1;
    o.compaction = TD_STORE_COMPACT_MANUAL;
    CHECK_OK(td_store_open(dir, &o, &st, &e), &e);
    for (int i = 0; i < controls; i++) {
        char doc[8];
        snprintf(doc, sizeof doc, "c%d", i);
        store_copy(st, doc);
    }
    for (int i = 0; i < PREPARED; i++) {
        char doc[32];
        snprintf(doc, sizeof doc, "v%03d", i);
        store_copy(st, doc);
    }
    td_store_close(st);

    CHECK(st_raw_open(&raw, dir) == 0);
    damage_all(&raw);
    st_raw_close(&raw);
    CHECK_MSG(nvictims <= PREPARED, "the plan has %d victims, %d copies prepared",
              nvictims, PREPARED);
    /* Copies the plan did not use are undamaged: they must load. */
    damaged = nvictims;
    while (nvictims < PREPARED) {
        new_victim("undamaged", NULL);
        victims[nvictims - 1].ok_allowed = 1;
    }

    CHECK_OK(td_store_open(dir, &o, &st, &e), &e);
    for (int i = 0; i < nvictims; i++) {
        victim *v = &victims[i];
        td_crdt_doc *d = NULL;
        td_store_err code = td_store_load(st, v->doc, strlen(v->doc), NULL, &d, NULL, &e);
        if (code == TD_STORE_OK) {
            char *j;
            size_t len;
            CHECK(td_crdt_to_json(d, &j, &len) == TD_CRDT_OK);
            /* Damage that cannot be noticed must at least change nothing. */
            CHECK_MSG(strcmp(j, ref_json) == 0,
                      "%s (%s) loaded as a different document: %s", v->doc, v->what, j);
            CHECK_MSG(v->ok_allowed, "%s (%s) loaded without an error", v->doc,
                      v->what);
            td_crdt_buf_free(d, j);
            td_crdt_doc_free(d);
            continue;
        }
        CHECK_MSG(!v->ok_allowed, "undamaged %s failed to load: %s", v->doc, e.msg);
        CHECK_MSG(code == TD_STORE_ERR_CORRUPT, "%s (%s): %s: %s", v->doc, v->what,
                  td_store_strerror(code), e.msg);
        CHECK_MSG(strstr(e.msg, v->doc) != NULL, "%s (%s): message does not name it: %s",
                  v->doc, v->what, e.msg);
        CHECK_MSG(v->must_say == NULL || strstr(e.msg, v->must_say) != NULL,
                  "%s (%s): message lacks \"%s\": %s", v->doc, v->what, v->must_say,
                  e.msg);
    }
    /* Untouched copies load, damage elsewhere notwithstanding. */
    for (int i = 0; i < controls; i++) {
        char doc[8];
        td_crdt_doc *d = NULL;
        char *j;
        size_t len;
        snprintf(doc, sizeof doc, "c%d", i);
        CHECK_OK(td_store_load(st, doc, strlen(doc), NULL, &d, NULL, &e), &e);
        CHECK(td_crdt_to_json(d, &j, &len) == TD_CRDT_OK);
        CHECK(strcmp(j, ref_json) == 0);
        td_crdt_buf_free(d, j);
        td_crdt_doc_free(d);
    }
    /* Listing goes on past damaged metadata. */
    CHECK_OK(td_store_list(st, count_doc, &lc, &e), &e);
    CHECK(lc.n >= controls + PREPARED - 2 && lc.damaged > 0);
    fprintf(stderr, "%d damaged copies all reported, %d with damaged metadata listed\n",
            damaged, lc.damaged);
    td_store_close(st);
    st_rmtree(dir);
    free(dir);
    for (int i = 0; i < NBATCH; i++)
        free(batches[i].p);
    free(ref_json);
}

int main(void)
{
    st_rng_seed(&rng, st_test_seed("test_store_corrupt"));
    return st_test_run("damage", test_damage);
}
