/*
 * test_store_doc.c -- the store with real CRDT documents: load (snapshot +
 * log tail), compaction (forced, automatic, concurrent with appends), the
 * ops a version vector lacks, checkpoints of compacted stores, and batches
 * the core rejects.
 *
 * A reference replica is edited in memory; every committed batch is
 * appended; whatever the store returns must render to the same JSON and
 * hold the same number of ops as the reference.
 */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_codec.h"
#include "store_test_util.h"
#include "store_testing.h"
#include "tandem_store.h"

static st_rng rng;

static td_store *open_opts(const char *dir, td_store_compact_mode cm,
                           uint64_t compact_ops)
{
    td_store_options o = {0};
    td_store_error e = {0};
    td_store *st = NULL;
    o.create_if_missing = 1;
    o.compaction = cm;
    o.compact_ops = compact_ops;
    CHECK_OK(td_store_open(dir, &o, &st, &e), &e);
    return st;
}

static td_crdt_doc *new_doc(uint64_t agent)
{
    td_crdt_options o = {0};
    td_crdt_doc *d = NULL;
    o.agent = agent;
    CHECK(td_crdt_doc_new(&o, &d) == TD_CRDT_OK);
    return d;
}

static char *json_of(td_crdt_doc *d)
{
    char *j = NULL, *copy;
    size_t len;
    CHECK(td_crdt_to_json(d, &j, &len) == TD_CRDT_OK);
    copy = strdup(j);
    td_crdt_buf_free(d, j);
    return copy;
}

/* A random local transaction on the reference: text edits, list inserts,
 * map sets. Returns the number of edit calls made. */
static void random_edits(td_crdt_doc *d)
{
    td_crdt_obj text, list, map;
    int n = 1 + (int)st_rng_below(&rng, 5);
    CHECK(td_crdt_root(d, TD_CRDT_TEXT, "body", 4, &text) == TD_CRDT_OK);
    CHECK(td_crdt_root(d, TD_CRDT_LIST, "items", 5, &list) == TD_CRDT_OK);
    CHECK(td_crdt_root(d, TD_CRDT_MAP, "meta", 4, &map) == TD_CRDT_OK);
    for (int i = 0; i < n; i++) {
        size_t tl = td_crdt_text_length(d, text), ll = td_crdt_list_length(d, list);
        td_crdt_value v;
        char key[8];
        memset(&v, 0, sizeof v);
        switch (st_rng_below(&rng, 5)) {
        case 0:
        case 1:
            CHECK(td_crdt_text_insert(d, text, (size_t)st_rng_below(&rng, tl + 1),
                                      "abcdefgh", 1 + (size_t)st_rng_below(&rng, 8)) ==
                  TD_CRDT_OK);
            break;
        case 2:
            if (tl > 0)
                CHECK(td_crdt_text_delete(d, text, (size_t)st_rng_below(&rng, tl), 1) ==
                      TD_CRDT_OK);
            break;
        case 3:
            v.type = TD_CRDT_V_INT;
            v.u.i = (int64_t)st_rng_below(&rng, 1000);
            CHECK(td_crdt_list_insert(d, list, (size_t)st_rng_below(&rng, ll + 1), &v,
                                      1) == TD_CRDT_OK);
            break;
        default:
            snprintf(key, sizeof key, "k%d", (int)st_rng_below(&rng, 10));
            v.type = TD_CRDT_V_INT;
            v.u.i = (int64_t)st_rng_below(&rng, 1000);
            CHECK(td_crdt_map_set(d, map, key, strlen(key), &v) == TD_CRDT_OK);
            break;
        }
    }
}

/* Commits the reference's pending edits and appends them. */
/* The stream position the next appends record (td_store_batch.stream_seq),
 * and whether the next append is expected to fail (an injected write
 * failure). */
static uint64_t g_stream_seq;
static int g_expect_fail;
static int g_durable_elsewhere; /* td_store_batch.durable_elsewhere of the next appends */

static int commit_append(td_store *st, const char *doc, td_crdt_doc *d,
                         uint64_t *ops_before)
{
    uint8_t *b = NULL, *vv = NULL;
    size_t blen = 0, vlen = 0;
    td_store_batch batch;
    td_store_error e = {0};
    uint64_t now;

    CHECK(td_crdt_commit(d, &b, &blen) == TD_CRDT_OK);
    if (blen == 0)
        return 0;
    CHECK(td_crdt_vv_encode(d, &vv, &vlen) == TD_CRDT_OK);
    now = td_crdt_op_count(d);
    memset(&batch, 0, sizeof batch);
    batch.doc = doc;
    batch.doc_len = strlen(doc);
    batch.ops = b;
    batch.ops_len = blen;
    batch.nops = now - *ops_before;
    batch.vv = vv;
    batch.vv_len = vlen;
    batch.stream_seq = g_stream_seq;
    batch.durable_elsewhere = g_durable_elsewhere;
    *ops_before = now;
    if (g_expect_fail)
        CHECK(td_store_append_wait(st, &batch, NULL, &e) != TD_STORE_OK);
    else
        CHECK_OK(td_store_append_wait(st, &batch, NULL, &e), &e);
    td_crdt_buf_free(d, b);
    td_crdt_buf_free(d, vv);
    return 1;
}

/* One random transaction, appended (retried until it produced ops). */
static void edit_append(td_store *st, const char *doc, td_crdt_doc *d,
                        uint64_t *ops_before)
{
    do
        random_edits(d);
    while (!commit_append(st, doc, d, ops_before));
}

static void check_same(td_store *st, const char *doc, td_crdt_doc *ref)
{
    td_store_error e = {0};
    td_crdt_doc *got = NULL;
    char *a, *b;
    CHECK_OK(td_store_load(st, doc, strlen(doc), NULL, &got, NULL, &e), &e);
    a = json_of(ref);
    b = json_of(got);
    CHECK_MSG(strcmp(a, b) == 0, "loaded %s\n  differs from reference %s", b, a);
    CHECK(td_crdt_op_count(got) == td_crdt_op_count(ref));
    free(a);
    free(b);
    td_crdt_doc_free(got);
}

/* ---- tests -------------------------------------------------------------- */

static void test_load_and_compact(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_opts(dir, TD_STORE_COMPACT_MANUAL, 0);
    td_crdt_doc *ref = new_doc(11);
    td_store_error e = {0};
    td_store_compact_info ci;
    td_store_doc_info info;
    uint64_t ops = 0;

    for (int i = 0; i < 60; i++) {
        edit_append(st, "doc", ref, &ops);
    }
    check_same(st, "doc", ref);
    /* Not due under the default thresholds: nothing happens. */
    CHECK_OK(td_store_compact(st, "doc", 3, 0, &ci, &e), &e);
    CHECK(!ci.compacted);
    CHECK_OK(td_store_compact(st, "doc", 3, 1, &ci, &e), &e);
    CHECK(ci.compacted && ci.snap_seq == 60 && ci.folded_entries == 60);
    CHECK_OK(td_store_doc_stat(st, "doc", 3, &info, &e), &e);
    CHECK(info.snap_seq == 60 && info.log_entries == 0 && info.log_bytes == 0 &&
          info.log_ops == 0 && info.snap_ops == td_crdt_op_count(ref));
    check_same(st, "doc", ref);
    /* Snapshot plus a tail. */
    for (int i = 0; i < 25; i++) {
        edit_append(st, "doc", ref, &ops);
    }
    check_same(st, "doc", ref);
    CHECK_OK(td_store_compact(st, "doc", 3, 1, &ci, &e), &e);
    CHECK(ci.compacted && ci.snap_seq == 85 && ci.folded_entries == 25);
    /* Nothing left to fold. */
    CHECK_OK(td_store_compact(st, "doc", 3, 1, &ci, &e), &e);
    CHECK(!ci.compacted);
    td_store_close(st);

    /* After reopening; the folded log entries are gone from RocksDB. */
    st = open_opts(dir, TD_STORE_COMPACT_MANUAL, 0);
    check_same(st, "doc", ref);
    {
        uint8_t *snap;
        size_t len;
        uint64_t seq;
        td_crdt_doc *d2 = NULL;
        CHECK_OK(td_store_read_snapshot(st, "doc", 3, &snap, &len, &seq, &e), &e);
        CHECK(seq == 85);
        CHECK(td_crdt_doc_load(NULL, snap, len, &d2, NULL) == TD_CRDT_OK);
        td_crdt_doc_free(d2);
        td_store_free(snap);
    }
    td_store_close(st);
    {
        st_raw raw;
        uint8_t key[64];
        size_t klen, vlen;
        CHECK(st_raw_open(&raw, dir) == 0);
        for (uint64_t s = 1; s <= 85; s += 7) {
            char *v;
            klen = st_log_key(key, "doc", s);
            v = st_raw_get(&raw, ST_CF_LOG, key, klen, &vlen);
            CHECK_MSG(v == NULL, "log entry %llu survived compaction",
                      (unsigned long long)s);
        }
        st_raw_close(&raw);
    }
    td_crdt_doc_free(ref);
    st_rmtree(dir);
    free(dir);
}

/* A cluster node's stream position rides with its appends, only ever moves
 * forward, survives compaction and a reopen, and is absent otherwise. */
static void test_stream_seq(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_opts(dir, TD_STORE_COMPACT_MANUAL, 0);
    td_crdt_doc *ref = new_doc(13);
    td_store_error e = {0};
    td_store_compact_info ci;
    td_store_doc_info info;
    uint64_t ops = 0;
    static const uint64_t seqs[] = {0, 0, 10, 12, 0, 11};
    static const uint64_t after[] = {0, 0, 10, 12, 12, 12};

    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        g_stream_seq = seqs[i];
        edit_append(st, "doc", ref, &ops);
        CHECK_OK(td_store_doc_stat(st, "doc", 3, &info, &e), &e);
        CHECK_MSG(info.stream_seq == after[i], "append %zu: stream_seq %llu, want %llu", i,
                  (unsigned long long)info.stream_seq, (unsigned long long)after[i]);
    }
    g_stream_seq = 0;
    CHECK_OK(td_store_compact(st, "doc", 3, 1, &ci, &e), &e);
    CHECK(ci.compacted);
    CHECK_OK(td_store_doc_stat(st, "doc", 3, &info, &e), &e);
    CHECK(info.stream_seq == 12 && info.log_entries == 0);
    td_store_close(st);
    st = open_opts(dir, TD_STORE_COMPACT_MANUAL, 0);
    CHECK_OK(td_store_doc_stat(st, "doc", 3, &info, &e), &e);
    CHECK(info.stream_seq == 12);
    check_same(st, "doc", ref);
    edit_append(st, "other", ref, &ops);
    CHECK_OK(td_store_doc_stat(st, "other", 5, &info, &e), &e);
    CHECK(info.stream_seq == 0);
    /* An append that failed holds later positions back until it is
     * written again (its batch is not on disk). */
    {
        td_crdt_doc *d = new_doc(14);
        uint64_t dops = 0;
        static const uint64_t seqs2[] = {20, 22, 25, 22, 27};
        static const uint64_t after2[] = {20, 20, 20, 22, 27};
        for (size_t i = 0; i < sizeof seqs2 / sizeof seqs2[0]; i++) {
            g_stream_seq = seqs2[i];
            g_expect_fail = i == 1;
            if (g_expect_fail)
                td_store_test_fail_writes(st, 1);
            edit_append(st, "gap", d, &dops);
            g_expect_fail = 0;
            CHECK_OK(td_store_doc_stat(st, "gap", 3, &info, &e), &e);
            CHECK_MSG(info.stream_seq == after2[i], "gap append %zu: stream_seq %llu, want %llu",
                      i, (unsigned long long)info.stream_seq, (unsigned long long)after2[i]);
        }
        g_stream_seq = 0;
        td_crdt_doc_free(d);
    }
    td_store_close(st);
    td_crdt_doc_free(ref);
    st_rmtree(dir);
    free(dir);
}

/* A batch durable elsewhere (a cluster peer's) is written without waiting
 * for a sync; every other append still gets one. Both are read back, also
 * after a reopen. */
static void test_durable_elsewhere(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_opts(dir, TD_STORE_COMPACT_MANUAL, 0);
    td_crdt_doc *ref = new_doc(15);
    td_store_stats s0, s1;
    uint64_t ops = 0;
    static const int elsewhere[] = {1, 1, 0, 1, 0};

    for (size_t i = 0; i < sizeof elsewhere / sizeof elsewhere[0]; i++) {
        td_store_get_stats(st, &s0);
        g_durable_elsewhere = elsewhere[i];
        edit_append(st, "peer", ref, &ops);
        g_durable_elsewhere = 0;
        td_store_get_stats(st, &s1);
        CHECK_MSG(s1.writes == s0.writes + 1, "append %zu: %llu writes", i,
                  (unsigned long long)(s1.writes - s0.writes));
        CHECK_MSG(s1.synced_writes == s0.synced_writes + (elsewhere[i] ? 0 : 1),
                  "append %zu (durable elsewhere: %d): %llu synced writes", i, elsewhere[i],
                  (unsigned long long)(s1.synced_writes - s0.synced_writes));
    }
    check_same(st, "peer", ref);
    td_store_close(st);
    st = open_opts(dir, TD_STORE_COMPACT_MANUAL, 0);
    check_same(st, "peer", ref);
    td_store_close(st);
    td_crdt_doc_free(ref);
    st_rmtree(dir);
    free(dir);
}

/* Appends keep coming while the document is compacted again and again. */
typedef struct appender {
    td_store *st;
    td_crdt_doc *ref;
    int rounds;
} appender;

static void *append_main(void *arg)
{
    appender *a = arg;
    uint64_t ops = 0;
    for (int i = 0; i < a->rounds; i++) {
        edit_append(a->st, "busy", a->ref, &ops);
    }
    return NULL;
}

static void test_compact_during_appends(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_opts(dir, TD_STORE_COMPACT_MANUAL, 0);
    td_store_error e = {0};
    appender a = {st, new_doc(12), 400};
    pthread_t t;
    int folds = 0;

    /* The appender thread uses append_wait, which polls: this thread only
     * compacts, so the callbacks run there. */
    CHECK(pthread_create(&t, NULL, append_main, &a) == 0);
    for (int i = 0; i < 40; i++) {
        td_store_compact_info ci;
        td_store_err code = td_store_compact(st, "busy", 4, 1, &ci, &e);
        CHECK_MSG(code == TD_STORE_OK || code == TD_STORE_ERR_NOT_FOUND, "%s", e.msg);
        folds += ci.compacted;
        usleep(2000);
    }
    pthread_join(t, NULL);
    CHECK(folds > 0);
    check_same(st, "busy", a.ref);
    td_store_close(st);
    st = open_opts(dir, TD_STORE_COMPACT_MANUAL, 0);
    check_same(st, "busy", a.ref);
    td_store_close(st);
    td_crdt_doc_free(a.ref);
    st_rmtree(dir);
    free(dir);
}

static void test_auto_compaction(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_opts(dir, TD_STORE_COMPACT_AUTO, 40);
    td_crdt_doc *ref = new_doc(13);
    td_store_error e = {0};
    td_store_doc_info info;
    td_store_stats stats;
    uint64_t ops = 0;

    for (int i = 0; i < 300; i++) {
        edit_append(st, "auto", ref, &ops);
    }
    /* The compaction thread runs on its own; give it up to 60 s. */
    for (int i = 0; i < 6000; i++) {
        td_store_get_stats(st, &stats);
        CHECK_OK(td_store_doc_stat(st, "auto", 4, &info, &e), &e);
        /* Appends made while it ran may stay in the tail until the next
         * append crosses the threshold again: only wait for the first. */
        if (stats.compactions > 0 || stats.compaction_errors)
            break;
        usleep(10000);
    }
    CHECK_MSG(stats.compactions > 0, "no background compaction happened");
    CHECK(stats.compaction_errors == 0);
    CHECK(info.snap_seq > 0);
    check_same(st, "auto", ref);
    td_store_close(st);
    td_crdt_doc_free(ref);
    st_rmtree(dir);
    free(dir);
}

static void test_read_missing(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_opts(dir, TD_STORE_COMPACT_MANUAL, 0);
    td_crdt_doc *ref = new_doc(14), *peer = new_doc(15), *fresh = new_doc(16);
    td_store_error e = {0};
    uint8_t *vv, *diff;
    size_t vlen, dlen;
    uint64_t ops = 0;
    char *a, *b;

    for (int i = 0; i < 20; i++) {
        edit_append(st, "sync", ref, &ops);
    }
    /* The peer catches up from the store once, half way. */
    CHECK_OK(td_store_read_missing(st, "sync", 4, NULL, 0, NULL, &diff, &dlen, &e), &e);
    CHECK(diff != NULL && dlen > 0);
    CHECK(td_crdt_apply(peer, diff, dlen, NULL) == TD_CRDT_OK);
    td_store_free(diff);
    CHECK_OK(td_store_compact(st, "sync", 4, 1, NULL, &e), &e);
    for (int i = 0; i < 20; i++) {
        edit_append(st, "sync", ref, &ops);
    }
    CHECK(td_crdt_vv_encode(peer, &vv, &vlen) == TD_CRDT_OK);
    CHECK_OK(td_store_read_missing(st, "sync", 4, vv, vlen, NULL, &diff, &dlen, &e), &e);
    td_crdt_buf_free(peer, vv);
    CHECK(td_crdt_apply(peer, diff, dlen, NULL) == TD_CRDT_OK);
    td_store_free(diff);
    a = json_of(ref);
    b = json_of(peer);
    CHECK(strcmp(a, b) == 0);
    free(b);
    /* Up to date: nothing is missing. */
    CHECK(td_crdt_vv_encode(peer, &vv, &vlen) == TD_CRDT_OK);
    CHECK_OK(td_store_read_missing(st, "sync", 4, vv, vlen, NULL, &diff, &dlen, &e), &e);
    CHECK(diff == NULL && dlen == 0);
    td_crdt_buf_free(peer, vv);
    /* The stored version vector is the reference's. */
    CHECK_OK(td_store_read_vv(st, "sync", 4, &vv, &vlen, &e), &e);
    {
        uint8_t *rv;
        size_t rlen;
        CHECK(td_crdt_vv_encode(ref, &rv, &rlen) == TD_CRDT_OK);
        CHECK(rlen == vlen && memcmp(rv, vv, vlen) == 0);
        td_crdt_buf_free(ref, rv);
    }
    td_store_free(vv);
    /* A malformed version vector is the caller's error. */
    CHECK_CODE(TD_STORE_ERR_ARG,
               td_store_read_missing(st, "sync", 4, (const uint8_t *)"\xff\xff\xff", 3,
                                     NULL, &diff, &dlen, &e),
               &e);
    free(a);
    td_store_close(st);
    td_crdt_doc_free(ref);
    td_crdt_doc_free(peer);
    td_crdt_doc_free(fresh);
    st_rmtree(dir);
    free(dir);
}

static void test_checkpoint_compacted(void)
{
    char *dir = st_tmpdir(), *bdir = st_tmpdir();
    char backup[300];
    td_store *st = open_opts(dir, TD_STORE_COMPACT_MANUAL, 0), *bst;
    td_crdt_doc *ref = new_doc(17);
    td_store_error e = {0};
    uint64_t ops = 0;

    for (int i = 0; i < 30; i++) {
        edit_append(st, "cp", ref, &ops);
        if (i == 20)
            CHECK_OK(td_store_compact(st, "cp", 2, 1, NULL, &e), &e);
    }
    snprintf(backup, sizeof backup, "%s/b", bdir);
    CHECK_OK(td_store_checkpoint(st, backup, &e), &e);
    td_store_close(st);
    st_rmtree(dir); /* the backup must not depend on the original */
    bst = open_opts(backup, TD_STORE_COMPACT_MANUAL, 0);
    check_same(bst, "cp", ref);
    td_store_close(bst);
    td_crdt_doc_free(ref);
    st_rmtree(bdir);
    free(dir);
    free(bdir);
}

/* A log entry whose checksum is fine but which the core rejects. */
static void test_rejected_batch(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_opts(dir, TD_STORE_COMPACT_MANUAL, 0);
    td_crdt_doc *ref = new_doc(18), *got = NULL;
    td_store_error e = {0};
    td_store_batch b;
    uint64_t ops = 0;

    char *ok_json;

    do
        random_edits(ref);
    while (!commit_append(st, "ok", ref, &ops));
    ok_json = json_of(ref);
    do
        random_edits(ref);
    while (!commit_append(st, "junk", ref, &ops));
    memset(&b, 0, sizeof b);
    b.doc = "junk";
    b.doc_len = 4;
    b.ops = (const uint8_t *)"\x01\x02garbage";
    b.ops_len = 9;
    b.nops = 1;
    CHECK_OK(td_store_append_wait(st, &b, NULL, &e), &e);
    CHECK_CODE(TD_STORE_ERR_CORRUPT, td_store_load(st, "junk", 4, NULL, &got, NULL, &e),
               &e);
    CHECK(got == NULL);
    CHECK_MSG(strstr(e.msg, "log/junk/2") && strstr(e.msg, "rejected by the core"),
              "message: %s", e.msg);
    /* Compaction of it fails and changes nothing. */
    CHECK_CODE(TD_STORE_ERR_CORRUPT, td_store_compact(st, "junk", 4, 1, NULL, &e), &e);
    CHECK_OK(td_store_load(st, "ok", 2, NULL, &got, NULL, &e), &e);
    {
        char *j = json_of(got);
        CHECK(strcmp(j, ok_json) == 0);
        free(j);
    }
    td_crdt_doc_free(got);
    free(ok_json);
    td_store_close(st);
    td_crdt_doc_free(ref);
    st_rmtree(dir);
    free(dir);
}

/* Appends `rounds` batches of 100 one-character inserts to "big". */
static void append_hundreds(td_store *st, td_crdt_doc *ref, td_crdt_obj t, int rounds,
                            uint64_t *ops)
{
    for (int i = 0; i < rounds; i++) {
        for (int k = 0; k < 100; k++)
            CHECK(td_crdt_text_insert(ref, t, 0, "x", 1) == TD_CRDT_OK);
        commit_append(st, "big", ref, ops);
    }
}

/* Compacts "big" if due; says whether it did. */
static int compact_if_due(td_store *st)
{
    td_store_error e = {0};
    td_store_compact_info ci;
    CHECK_OK(td_store_compact(st, "big", 3, 0, &ci, &e), &e);
    return ci.compacted;
}

/* The threshold grows with the document: with compact_ops 100, a document
 * whose snapshot holds S ops is due once its log holds max(100, S/8) ops,
 * not after every 100 (a compaction rewrites all S). */
static void test_compact_growth(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_opts(dir, TD_STORE_COMPACT_MANUAL, 100);
    td_crdt_doc *doc = new_doc(13);
    td_store_doc_info stat;
    td_store_error err = {0};
    uint64_t n = 0;
    td_crdt_obj t;

    CHECK(td_crdt_root(doc, TD_CRDT_TEXT, "t", 1, &t) == TD_CRDT_OK);
    append_hundreds(st, doc, t, 40, &n); /* 4,000 ops */
    CHECK(compact_if_due(st));
    CHECK_OK(td_store_doc_stat(st, "big", 3, &stat, &err), &err);
    uint64_t snap = stat.snap_ops, step = snap / 8;
    CHECK_MSG(snap >= 4000 && step > 100, "snapshot of %llu ops", (unsigned long long)snap);
    /* a log of 100 ops, then up to just under S/8: not due */
    for (uint64_t logged = 100; logged < step; logged += 100) {
        append_hundreds(st, doc, t, 1, &n);
        CHECK_MSG(!compact_if_due(st), "compacted after %llu ops of a %llu-op document",
                  (unsigned long long)logged, (unsigned long long)snap);
    }
    /* past S/8: due */
    append_hundreds(st, doc, t, 1, &n);
    CHECK_OK(td_store_doc_stat(st, "big", 3, &stat, &err), &err);
    CHECK(stat.log_ops >= step);
    CHECK(compact_if_due(st));
    check_same(st, "big", doc);
    td_crdt_doc_free(doc);
    td_store_close(st);
    st_rmtree(dir);
    free(dir);
}

int main(void)
{
    int failed = 0;
    st_rng_seed(&rng, st_test_seed("test_store_doc"));
    failed += st_test_run("load_and_compact", test_load_and_compact);
    failed += st_test_run("compact_growth", test_compact_growth);
    failed += st_test_run("compact_during_appends", test_compact_during_appends);
    failed += st_test_run("auto_compaction", test_auto_compaction);
    failed += st_test_run("read_missing", test_read_missing);
    failed += st_test_run("checkpoint_compacted", test_checkpoint_compacted);
    failed += st_test_run("rejected_batch", test_rejected_batch);
    failed += st_test_run("stream_seq", test_stream_seq);
    failed += st_test_run("durable_elsewhere", test_durable_elsewhere);
    fprintf(stderr, "%d test(s) failed\n", failed);
    return failed ? 1 : 0;
}
