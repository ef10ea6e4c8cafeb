/*
 * test_store_unit.c -- unit tests of the store that treat batches as opaque
 * bytes: opening and refusing data directories, document ids, asynchronous
 * appends and their sequence numbers, group commit, completions delivered
 * to another thread, failed writes, metadata, delete, checkpoints and
 * read-only opens. The tests that need the CRDT core (load, compaction,
 * diff) are in test_store_doc.c.
 */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store_test_util.h"
#include "store_testing.h"
#include "tandem_store.h"

static td_store *open_ok(const char *dir, td_store_durability d)
{
    td_store_options o = {0};
    td_store_error e = {0};
    td_store *st = NULL;
    o.durability = d;
    o.create_if_missing = 1;
    o.compaction = TD_STORE_COMPACT_MANUAL;
    CHECK_OK(td_store_open(dir, &o, &st, &e), &e);
    return st;
}

static td_store_batch mkbatch(const char *doc, const void *ops, size_t len,
                              uint64_t nops)
{
    td_store_batch b;
    memset(&b, 0, sizeof b);
    b.doc = doc;
    b.doc_len = strlen(doc);
    b.ops = ops;
    b.ops_len = len;
    b.nops = nops;
    return b;
}

static uint64_t append_ok(td_store *st, const char *doc, const char *payload,
                          uint64_t nops)
{
    td_store_error e = {0};
    uint64_t seq = 0;
    td_store_batch b = mkbatch(doc, payload, strlen(payload), nops);
    CHECK_OK(td_store_append_wait(st, &b, &seq, &e), &e);
    return seq;
}

/* Collects a document's log as "seq:payload," for comparisons. */
typedef struct logbuf {
    char s[65536];
    size_t n;
    uint64_t ops;
} logbuf;

static int collect(void *ud, uint64_t seq, const uint8_t *ops, size_t len,
                   uint64_t nops)
{
    logbuf *l = ud;
    l->n += (size_t)snprintf(l->s + l->n, sizeof l->s - l->n, "%llu:%.*s,",
                             (unsigned long long)seq, (int)len, (const char *)ops);
    l->ops += nops;
    return 0;
}

static void read_all(td_store *st, const char *doc, uint64_t after, logbuf *l)
{
    td_store_error e = {0};
    memset(l, 0, sizeof *l);
    CHECK_OK(td_store_read_log(st, doc, strlen(doc), after, collect, l, &e), &e);
}

/* ---- opening ------------------------------------------------------------ */

static void test_open_create_reopen(void)
{
    char *dir = st_tmpdir();
    char sub[300];
    td_store *st;
    td_store_options o = {0};
    td_store_error e = {0};

    snprintf(sub, sizeof sub, "%s/data", dir);
    /* Without create_if_missing a missing directory is an error naming it. */
    CHECK_CODE(TD_STORE_ERR_NOT_FOUND, td_store_open(sub, &o, &st, &e), &e);
    CHECK(st == NULL);
    CHECK(strstr(e.msg, sub) != NULL);

    st = open_ok(sub, TD_STORE_SYNC_GROUP);
    append_ok(st, "doc", "hello", 1);
    td_store_close(st);
    st = open_ok(sub, TD_STORE_SYNC_GROUP);
    {
        logbuf l;
        read_all(st, "doc", 0, &l);
        CHECK(strcmp(l.s, "1:hello,") == 0);
    }
    CHECK(append_ok(st, "doc", "again", 1) == 2);
    td_store_close(st);
    st_rmtree(dir);
    free(dir);
}

static void test_open_locked(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_ok(dir, TD_STORE_SYNC_GROUP), *st2 = NULL;
    td_store_options o = {0};
    td_store_error e = {0};
    char cmd[600];
    int status;
    pid_t pid;

    /* Within the process ... */
    CHECK_CODE(TD_STORE_ERR_LOCKED, td_store_open(dir, &o, &st2, &e), &e);
    CHECK(strstr(e.msg, dir) != NULL);
    /* ... and from another process (this program, re-executed). */
    snprintf(cmd, sizeof cmd, "%s", dir);
    pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "test_store_unit", "--try-open", cmd, (char *)NULL);
        _exit(99);
    }
    CHECK(pid > 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == TD_STORE_ERR_LOCKED,
              "child exit status %d", WEXITSTATUS(status));
    /* A read-only open ignores the lock and sees what was written. */
    append_ok(st, "d", "x", 1);
    o.read_only = 1;
    CHECK_OK(td_store_open(dir, &o, &st2, &e), &e);
    {
        td_store_doc_info info;
        td_store_batch b = mkbatch("d", "y", 1, 1);
        CHECK_OK(td_store_doc_stat(st2, "d", 1, &info, &e), &e);
        CHECK(info.last_seq == 1);
        CHECK_CODE(TD_STORE_ERR_ARG, td_store_append(st2, &b, NULL, NULL, &e), &e);
    }
    td_store_close(st2);
    td_store_close(st);
    st_rmtree(dir);
    free(dir);
}

static void test_open_refuses_foreign(void)
{
    char *dir = st_tmpdir();
    char path[300];
    td_store *st = NULL;
    td_store_options o = {0};
    td_store_error e = {0};
    st_raw raw;
    FILE *f;

    o.create_if_missing = 1;
    /* A non-empty directory that is no database. */
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("hi\n", f);
    fclose(f);
    CHECK_CODE(TD_STORE_ERR_CORRUPT, td_store_open(dir, &o, &st, &e), &e);
    CHECK(strstr(e.msg, "not a tandem data directory") != NULL);
    remove(path);

    /* Another format version. */
    st = open_ok(dir, TD_STORE_SYNC_GROUP);
    td_store_close(st);
    CHECK(st_raw_open(&raw, dir) == 0);
    st_raw_put(&raw, ST_CF_DEFAULT, "tandem-format", 13, "2", 1);
    st_raw_close(&raw);
    CHECK_CODE(TD_STORE_ERR_VERSION, td_store_open(dir, &o, &st, &e), &e);
    CHECK(strstr(e.msg, dir) != NULL && strstr(e.msg, "'2'") != NULL);
    st_rmtree(dir);

    /* An empty RocksDB database with the default family only is what a
     * crash during the very first open leaves: it opens. Likewise a
     * directory holding nothing but RocksDB's own files. */
    mkdir(dir, 0700);
    {
        static const char *const files[] = {"LOCK", "LOG", "IDENTITY", "MANIFEST-000001"};
        for (int i = 0; i < 4; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, files[i]);
            f = fopen(path, "w");
            CHECK(f != NULL);
            fclose(f);
        }
    }
    CHECK_OK(td_store_open(dir, &o, &st, &e), &e);
    td_store_close(st);
    st_rmtree(dir);
    mkdir(dir, 0700);
    {
        rocksdb_options_t *ro = rocksdb_options_create();
        char *err = NULL;
        rocksdb_t *db;
        rocksdb_options_set_create_if_missing(ro, 1);
        db = rocksdb_open(ro, dir, &err);
        CHECK(err == NULL);
        rocksdb_close(db);
        rocksdb_options_destroy(ro);
    }
    CHECK_OK(td_store_open(dir, &o, &st, &e), &e);
    td_store_close(st);
    st_rmtree(dir);

    /* A RocksDB database that is not ours. */
    mkdir(dir, 0700);
    {
        rocksdb_options_t *ro = rocksdb_options_create();
        rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
        char *err = NULL;
        rocksdb_t *db;
        rocksdb_options_set_create_if_missing(ro, 1);
        db = rocksdb_open(ro, dir, &err);
        CHECK(err == NULL);
        rocksdb_put(db, wo, "k", 1, "v", 1, &err);
        rocksdb_close(db);
        rocksdb_writeoptions_destroy(wo);
        rocksdb_options_destroy(ro);
    }
    CHECK_CODE(TD_STORE_ERR_CORRUPT, td_store_open(dir, &o, &st, &e), &e);
    CHECK_MSG(strstr(e.msg, "not a tandem data directory") != NULL, "%s", e.msg);
    /* ... and was left as it was. */
    {
        rocksdb_options_t *ro = rocksdb_options_create();
        size_t n = 0;
        char *err = NULL, **names = rocksdb_list_column_families(ro, dir, &n, &err);
        CHECK(err == NULL && n == 1);
        rocksdb_list_column_families_destroy(names, n);
        rocksdb_options_destroy(ro);
    }
    /* Our families but someone else's data and no marker. */
    CHECK(st_raw_open(&raw, dir) == 0);
    st_raw_close(&raw);
    CHECK_CODE(TD_STORE_ERR_CORRUPT, td_store_open(dir, &o, &st, &e), &e);
    CHECK_MSG(strstr(e.msg, "no format marker") != NULL, "%s", e.msg);
    st_rmtree(dir);
    free(dir);
}

/* ---- document ids and keys ---------------------------------------------- */

static void test_doc_ids(void)
{
    char big[300];
    memset(big, 'a', sizeof big);
    CHECK(td_store_doc_id_valid("a", 1));
    CHECK(td_store_doc_id_valid("team/notes 2024", 15));
    CHECK(td_store_doc_id_valid("caf\xc3\xa9", 5));
    CHECK(td_store_doc_id_valid("\xf0\x9f\x98\x80", 4));
    CHECK(td_store_doc_id_valid(big, 255));
    CHECK(!td_store_doc_id_valid(big, 256));
    CHECK(!td_store_doc_id_valid("", 0));
    CHECK(!td_store_doc_id_valid("a\nb", 3));
    CHECK(!td_store_doc_id_valid("a\0b", 3));
    CHECK(!td_store_doc_id_valid("a\x7f", 2));
    CHECK(!td_store_doc_id_valid("\xc3", 1));        /* truncated */
    CHECK(!td_store_doc_id_valid("\xc0\xaf", 2));    /* overlong */
    CHECK(!td_store_doc_id_valid("\xed\xa0\x80", 3)); /* surrogate */
    CHECK(!td_store_doc_id_valid("\xff", 1));
}

/* Ids that are prefixes of each other keep separate logs. */
static void test_prefix_isolation(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_ok(dir, TD_STORE_SYNC_OFF);
    logbuf l;

    append_ok(st, "a", "A1", 1);
    append_ok(st, "ab", "AB1", 1);
    append_ok(st, "a", "A2", 1);
    append_ok(st, "b", "B1", 1);
    append_ok(st, "aa", "AA1", 1);
    read_all(st, "a", 0, &l);
    CHECK_MSG(strcmp(l.s, "1:A1,2:A2,") == 0, "log of a: %s", l.s);
    read_all(st, "ab", 0, &l);
    CHECK(strcmp(l.s, "1:AB1,") == 0);
    read_all(st, "a", 1, &l);
    CHECK(strcmp(l.s, "2:A2,") == 0);
    td_store_close(st);
    st_rmtree(dir);
    free(dir);
}

static void test_append_rejects(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_ok(dir, TD_STORE_SYNC_OFF);
    td_store_error e = {0};
    td_store_batch b = mkbatch("doc", "x", 1, 1);

    b.doc_len = 0;
    CHECK_CODE(TD_STORE_ERR_ARG, td_store_append(st, &b, NULL, NULL, &e), &e);
    b = mkbatch("bad\x01id", "x", 1, 1);
    CHECK_CODE(TD_STORE_ERR_ARG, td_store_append(st, &b, NULL, NULL, &e), &e);
    b = mkbatch("doc", "", 0, 0);
    CHECK_CODE(TD_STORE_ERR_ARG, td_store_append(st, &b, NULL, NULL, &e), &e);
    CHECK(td_store_outstanding(st) == 0);
    td_store_close(st);
    st_rmtree(dir);
    free(dir);
}

/* ---- appends ------------------------------------------------------------ */

typedef struct acks {
    uint64_t seqs[4][2000];
    size_t n[4];
    size_t failed;
    pthread_t thread;
    int wrong_thread;
} acks;

typedef struct ack_ref {
    acks *a;
    int doc;
} ack_ref;

static void on_ack(void *ud, const td_store_ack *ack)
{
    ack_ref *r = ud;
    if (!pthread_equal(pthread_self(), r->a->thread))
        r->a->wrong_thread = 1;
    if (ack->code != TD_STORE_OK) {
        r->a->failed++;
        return;
    }
    r->a->seqs[r->doc][r->a->n[r->doc]++] = ack->seq;
}

/* Many appends to several documents: each document's sequences are 1..n in
 * submission order, the log holds exactly the submitted bytes. */
static void test_append_sequences(td_store_durability d)
{
    char *dir = st_tmpdir();
    td_store *st = open_ok(dir, d);
    static acks a;
    ack_ref refs[4];
    const int per_doc = d == TD_STORE_SYNC_ALWAYS ? 50 : 500;
    td_store_error e = {0};
    td_store_stats stats;
    char doc[8], payload[32];

    memset(&a, 0, sizeof a);
    a.thread = pthread_self();
    for (int k = 0; k < 4; k++)
        refs[k] = (ack_ref){&a, k};
    for (int i = 0; i < per_doc; i++) {
        for (int k = 0; k < 4; k++) {
            td_store_batch b;
            snprintf(doc, sizeof doc, "d%d", k);
            snprintf(payload, sizeof payload, "p%d-%d", k, i);
            b = mkbatch(doc, payload, strlen(payload), (uint64_t)i % 3 + 1);
            CHECK_OK(td_store_append(st, &b, on_ack, &refs[k], &e), &e);
        }
    }
    while (td_store_outstanding(st) > 0)
        td_store_poll(st, -1);
    CHECK(a.failed == 0);
    CHECK(!a.wrong_thread);
    for (int k = 0; k < 4; k++) {
        td_store_doc_info info;
        logbuf l;
        uint64_t want_ops = 0;
        CHECK((int)a.n[k] == per_doc);
        for (int i = 0; i < per_doc; i++) {
            CHECK_MSG(a.seqs[k][i] == (uint64_t)i + 1, "doc %d ack %d has seq %llu",
                      k, i, (unsigned long long)a.seqs[k][i]);
            want_ops += (uint64_t)i % 3 + 1;
        }
        snprintf(doc, sizeof doc, "d%d", k);
        CHECK_OK(td_store_doc_stat(st, doc, strlen(doc), &info, &e), &e);
        CHECK(info.last_seq == (uint64_t)per_doc);
        CHECK(info.log_entries == (uint64_t)per_doc);
        CHECK(info.log_ops == want_ops);
        CHECK(info.snap_seq == 0);
        read_all(st, doc, (uint64_t)per_doc - 2, &l);
        snprintf(payload, sizeof payload, "%d:p%d-%d,%d:p%d-%d,", per_doc - 1, k,
                 per_doc - 2, per_doc, k, per_doc - 1);
        CHECK_MSG(strcmp(l.s, payload) == 0, "tail %s, want %s", l.s, payload);
    }
    td_store_get_stats(st, &stats);
    CHECK(stats.appends_ok == (uint64_t)per_doc * 4);
    if (d == TD_STORE_SYNC_ALWAYS)
        CHECK_MSG(stats.writes == stats.appends_ok, "always mode grouped: %llu writes",
                  (unsigned long long)stats.writes);
    else
        CHECK_MSG(stats.writes < stats.appends_ok,
                  "%s mode did not group: %llu writes for %llu appends",
                  td_store_durability_name(d), (unsigned long long)stats.writes,
                  (unsigned long long)stats.appends_ok);
    td_store_close(st);
    st_rmtree(dir);
    free(dir);
}

static void test_append_group(void) { test_append_sequences(TD_STORE_SYNC_GROUP); }
static void test_append_always(void) { test_append_sequences(TD_STORE_SYNC_ALWAYS); }
static void test_append_off(void) { test_append_sequences(TD_STORE_SYNC_OFF); }

/* Completions reach another thread's loop through the wake hook. */
typedef struct loop {
    td_store *st;
    int pipe[2];
    atomic_int wakes;
    atomic_int stop;
    acks *a;
} loop;

static void wake_hook(void *ud)
{
    loop *lp = ud;
    char c = 1;
    atomic_fetch_add(&lp->wakes, 1);
    if (write(lp->pipe[1], &c, 1) < 0 && errno != EAGAIN) {
        /* the loop polls on a timeout anyway */
    }
}

static void *loop_main(void *arg)
{
    loop *lp = arg;
    lp->a->thread = pthread_self();
    while (!atomic_load(&lp->stop)) {
        struct pollfd p = {lp->pipe[0], POLLIN, 0};
        char buf[64];
        if (poll(&p, 1, 50) > 0)
            (void)!read(lp->pipe[0], buf, sizeof buf);
        td_store_poll(lp->st, 0);
    }
    return NULL;
}

static void test_wake_hook(void)
{
    char *dir = st_tmpdir();
    static acks a;
    static loop lp;
    td_store_options o = {0};
    td_store_error e = {0};
    ack_ref ref = {&a, 0};
    pthread_t t;

    memset(&a, 0, sizeof a);
    memset(&lp, 0, sizeof lp);
    lp.a = &a;
    CHECK(pipe(lp.pipe) == 0);
    o.create_if_missing = 1;
    o.wake = wake_hook;
    o.wake_ud = &lp;
    CHECK_OK(td_store_open(dir, &o, &lp.st, &e), &e);
    a.thread = pthread_self(); /* replaced by the loop thread */
    CHECK(pthread_create(&t, NULL, loop_main, &lp) == 0);
    while (pthread_equal(a.thread, pthread_self()))
        usleep(1000);
    for (int i = 0; i < 200; i++) {
        td_store_batch b = mkbatch("w", "op", 2, 1);
        CHECK_OK(td_store_append(lp.st, &b, on_ack, &ref, &e), &e);
    }
    while (td_store_outstanding(lp.st) > 0)
        usleep(1000);
    atomic_store(&lp.stop, 1);
    pthread_join(t, NULL);
    CHECK(a.n[0] == 200);
    CHECK(!a.wrong_thread);
    CHECK(atomic_load(&lp.wakes) >= 1);
    td_store_close(lp.st);
    close(lp.pipe[0]);
    close(lp.pipe[1]);
    st_rmtree(dir);
    free(dir);
}

/* A failed write completes its requests with an error and leaves the
 * metadata as it was: the next append gets the same sequence. */
static void test_failed_write(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_ok(dir, TD_STORE_SYNC_GROUP);
    static acks a;
    ack_ref ref = {&a, 0};
    td_store_error e = {0};
    td_store_doc_info info;
    td_store_batch b;
    logbuf l;
    uint64_t seq;

    memset(&a, 0, sizeof a);
    a.thread = pthread_self();
    append_ok(st, "f", "one", 1);
    td_store_test_fail_writes(st, 1);
    b = mkbatch("f", "lost", 4, 7);
    CHECK_CODE(TD_STORE_ERR_IO, td_store_append_wait(st, &b, &seq, &e), &e);
    CHECK(seq == 0);
    CHECK(strstr(e.msg, "injected") != NULL);
    CHECK_OK(td_store_doc_stat(st, "f", 1, &info, &e), &e);
    CHECK(info.last_seq == 1 && info.log_ops == 1);
    CHECK(append_ok(st, "f", "two", 1) == 2);
    read_all(st, "f", 0, &l);
    CHECK_MSG(strcmp(l.s, "1:one,2:two,") == 0, "log %s", l.s);

    /* A failure in the middle of async traffic fails whole groups only. */
    td_store_test_fail_writes(st, 1);
    for (int i = 0; i < 50; i++) {
        b = mkbatch("f", "x", 1, 1);
        CHECK_OK(td_store_append(st, &b, on_ack, &ref, &e), &e);
    }
    while (td_store_outstanding(st) > 0)
        td_store_poll(st, -1);
    CHECK(a.failed >= 1 && a.failed + a.n[0] == 50);
    for (size_t i = 0; i < a.n[0]; i++)
        CHECK(a.seqs[0][i] == 3 + i);
    CHECK_OK(td_store_doc_stat(st, "f", 1, &info, &e), &e);
    CHECK(info.last_seq == 2 + a.n[0]);
    td_store_close(st);
    /* After reopening, the log agrees with what was acknowledged. */
    st = open_ok(dir, TD_STORE_SYNC_GROUP);
    read_all(st, "f", 0, &l);
    CHECK(l.ops == 2 + a.n[0]);
    td_store_close(st);
    st_rmtree(dir);
    free(dir);
}

/* Appends still queued at close are written and their callbacks run. */
static void test_close_flushes(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_ok(dir, TD_STORE_SYNC_GROUP);
    static acks a;
    ack_ref ref = {&a, 0};
    td_store_error e = {0};
    td_store_doc_info info;

    memset(&a, 0, sizeof a);
    a.thread = pthread_self();
    for (int i = 0; i < 100; i++) {
        td_store_batch b = mkbatch("c", "x", 1, 1);
        CHECK_OK(td_store_append(st, &b, on_ack, &ref, &e), &e);
    }
    td_store_close(st);
    CHECK(a.n[0] == 100);
    st = open_ok(dir, TD_STORE_SYNC_GROUP);
    CHECK_OK(td_store_doc_stat(st, "c", 1, &info, &e), &e);
    CHECK(info.last_seq == 100);
    td_store_close(st);
    st_rmtree(dir);
    free(dir);
}

/* ---- metadata, listing, delete, checkpoint ------------------------------ */

static void test_vv_kept(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_ok(dir, TD_STORE_SYNC_OFF);
    td_store_error e = {0};
    td_store_batch b = mkbatch("v", "x", 1, 1);
    uint8_t *vv;
    size_t len;

    CHECK_OK(td_store_append_wait(st, &b, NULL, &e), &e);
    CHECK_OK(td_store_read_vv(st, "v", 1, &vv, &len, &e), &e);
    CHECK(vv == NULL && len == 0);
    b.vv = (const uint8_t *)"VV1";
    b.vv_len = 3;
    CHECK_OK(td_store_append_wait(st, &b, NULL, &e), &e);
    b.vv = NULL;
    b.vv_len = 0;
    CHECK_OK(td_store_append_wait(st, &b, NULL, &e), &e);
    td_store_close(st);
    st = open_ok(dir, TD_STORE_SYNC_OFF);
    CHECK_OK(td_store_read_vv(st, "v", 1, &vv, &len, &e), &e);
    CHECK(len == 3 && memcmp(vv, "VV1", 3) == 0);
    td_store_free(vv);
    CHECK_CODE(TD_STORE_ERR_NOT_FOUND, td_store_read_vv(st, "nope", 4, &vv, &len, &e),
               &e);
    td_store_close(st);
    st_rmtree(dir);
    free(dir);
}

typedef struct listing {
    char names[16][16];
    uint64_t last[16];
    td_store_err status[16];
    int n;
} listing;

static int on_doc(void *ud, const td_store_doc_info *info)
{
    listing *l = ud;
    if (l->n < 16) {
        snprintf(l->names[l->n], sizeof l->names[0], "%.*s", (int)info->doc_len,
                 info->doc);
        l->last[l->n] = info->last_seq;
        l->status[l->n] = info->status;
        l->n++;
    }
    return 0;
}

static void test_list_delete_checkpoint(void)
{
    char *dir = st_tmpdir(), *bdir = st_tmpdir();
    char backup[300];
    td_store *st = open_ok(dir, TD_STORE_SYNC_GROUP), *bst;
    td_store_error e = {0};
    listing l;
    logbuf a, b;

    append_ok(st, "zeta", "z", 1);
    append_ok(st, "alpha", "a1", 1);
    append_ok(st, "alpha", "a2", 1);
    append_ok(st, "mid", "m", 1);
    memset(&l, 0, sizeof l);
    CHECK_OK(td_store_list(st, on_doc, &l, &e), &e);
    CHECK(l.n == 3);
    CHECK(strcmp(l.names[0], "alpha") == 0 && l.last[0] == 2);
    CHECK(strcmp(l.names[1], "mid") == 0 && strcmp(l.names[2], "zeta") == 0);

    /* Checkpoint: refuses an existing directory, then opens as a data dir. */
    CHECK_CODE(TD_STORE_ERR_EXISTS, td_store_checkpoint(st, bdir, &e), &e);
    snprintf(backup, sizeof backup, "%s/backup", bdir);
    CHECK_OK(td_store_checkpoint(st, backup, &e), &e);
    append_ok(st, "alpha", "after-backup", 1);

    CHECK_OK(td_store_delete(st, "mid", 3, &e), &e);
    CHECK_CODE(TD_STORE_ERR_NOT_FOUND, td_store_delete(st, "mid", 3, &e), &e);
    memset(&l, 0, sizeof l);
    CHECK_OK(td_store_list(st, on_doc, &l, &e), &e);
    CHECK(l.n == 2);
    {
        logbuf x;
        memset(&x, 0, sizeof x);
        CHECK_CODE(TD_STORE_ERR_NOT_FOUND,
                   td_store_read_log(st, "mid", 3, 0, collect, &x, &e), &e);
    }
    /* A re-created document starts again at sequence 1. */
    CHECK(append_ok(st, "mid", "m2", 1) == 1);

    bst = open_ok(backup, TD_STORE_SYNC_GROUP);
    read_all(bst, "alpha", 0, &a);
    CHECK_MSG(strcmp(a.s, "1:a1,2:a2,") == 0, "backup alpha: %s", a.s);
    read_all(bst, "mid", 0, &b);
    CHECK(strcmp(b.s, "1:m,") == 0);
    td_store_close(bst);
    td_store_close(st);
    st_rmtree(dir);
    st_rmtree(bdir);
    free(dir);
    free(bdir);
}

/* Damaged metadata of one document: listing reports it, appends to it
 * fail, other documents carry on. */
static void test_damaged_meta_isolated(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_ok(dir, TD_STORE_SYNC_GROUP);
    td_store_error e = {0};
    td_store_batch b;
    st_raw raw;
    listing l;
    size_t vlen;
    char *v;

    append_ok(st, "good", "g", 1);
    append_ok(st, "bad", "b", 1);
    td_store_close(st);
    CHECK(st_raw_open(&raw, dir) == 0);
    v = st_raw_get(&raw, ST_CF_META, "bad", 3, &vlen);
    CHECK(v != NULL && vlen > 4);
    v[2] ^= 0x40;
    st_raw_put(&raw, ST_CF_META, "bad", 3, v, vlen);
    free(v);
    st_raw_close(&raw);

    st = open_ok(dir, TD_STORE_SYNC_GROUP);
    memset(&l, 0, sizeof l);
    CHECK_OK(td_store_list(st, on_doc, &l, &e), &e);
    CHECK(l.n == 2);
    CHECK(strcmp(l.names[0], "bad") == 0 && l.status[0] == TD_STORE_ERR_CORRUPT);
    CHECK(strcmp(l.names[1], "good") == 0 && l.status[1] == TD_STORE_OK);
    b = mkbatch("bad", "b2", 2, 1);
    CHECK_CODE(TD_STORE_ERR_CORRUPT, td_store_append_wait(st, &b, NULL, &e), &e);
    CHECK(strstr(e.msg, "'bad'") != NULL && strstr(e.msg, "meta/bad") != NULL);
    CHECK(append_ok(st, "good", "g2", 1) == 2);
    /* Deleting the damaged document works and frees its name. */
    CHECK_OK(td_store_delete(st, "bad", 3, &e), &e);
    CHECK(append_ok(st, "bad", "fresh", 1) == 1);
    td_store_close(st);
    st_rmtree(dir);
    free(dir);
}

/* Lost metadata with the log still there: refuse to append (it would
 * overwrite entry 1) and report it on reads. */
static void test_missing_meta(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_ok(dir, TD_STORE_SYNC_GROUP);
    td_store_error e = {0};
    td_store_batch b = mkbatch("orphan", "x", 1, 1);
    td_store_doc_info info;
    st_raw raw;

    append_ok(st, "orphan", "x", 1);
    td_store_close(st);
    CHECK(st_raw_open(&raw, dir) == 0);
    st_raw_del(&raw, ST_CF_META, "orphan", 6);
    st_raw_close(&raw);
    st = open_ok(dir, TD_STORE_SYNC_GROUP);
    CHECK_CODE(TD_STORE_ERR_CORRUPT, td_store_append_wait(st, &b, NULL, &e), &e);
    CHECK_CODE(TD_STORE_ERR_CORRUPT, td_store_doc_stat(st, "orphan", 6, &info, &e), &e);
    CHECK(strstr(e.msg, "orphan") != NULL);
    td_store_close(st);
    st_rmtree(dir);
    free(dir);
}

/* Damaged or missing log entries are errors naming document and key. */
static void test_damaged_log(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_ok(dir, TD_STORE_SYNC_GROUP);
    td_store_error e = {0};
    uint8_t key[300];
    size_t klen, vlen;
    st_raw raw;
    logbuf l;
    char *v;

    for (int i = 0; i < 5; i++)
        append_ok(st, "L", "entry", 1);
    append_ok(st, "other", "fine", 1);
    td_store_close(st);

    CHECK(st_raw_open(&raw, dir) == 0);
    klen = st_log_key(key, "L", 3);
    v = st_raw_get(&raw, ST_CF_LOG, key, klen, &vlen);
    CHECK(v != NULL);
    st_raw_put(&raw, ST_CF_LOG, key, klen, v, vlen - 1); /* truncated */
    free(v);
    st_raw_close(&raw);
    st = open_ok(dir, TD_STORE_SYNC_GROUP);
    memset(&l, 0, sizeof l);
    CHECK_CODE(TD_STORE_ERR_CORRUPT, td_store_read_log(st, "L", 1, 0, collect, &l, &e),
               &e);
    CHECK_MSG(strstr(e.msg, "log/L/3") != NULL, "message: %s", e.msg);
    read_all(st, "other", 0, &l);
    CHECK(strcmp(l.s, "1:fine,") == 0);
    td_store_close(st);

    CHECK(st_raw_open(&raw, dir) == 0);
    st_raw_del(&raw, ST_CF_LOG, key, klen); /* missing */
    st_raw_close(&raw);
    st = open_ok(dir, TD_STORE_SYNC_GROUP);
    memset(&l, 0, sizeof l);
    CHECK_CODE(TD_STORE_ERR_CORRUPT, td_store_read_log(st, "L", 1, 0, collect, &l, &e),
               &e);
    CHECK_MSG(strstr(e.msg, "log entry 3") != NULL && strstr(e.msg, "missing"),
              "message: %s", e.msg);
    td_store_close(st);

    /* A value copied from another document fails its checksum. */
    CHECK(st_raw_open(&raw, dir) == 0);
    klen = st_log_key(key, "other", 1);
    v = st_raw_get(&raw, ST_CF_LOG, key, klen, &vlen);
    klen = st_log_key(key, "L", 3);
    st_raw_put(&raw, ST_CF_LOG, key, klen, v, vlen);
    free(v);
    free(st_raw_get(&raw, ST_CF_LOG, key, klen, &vlen));
    st_raw_close(&raw);
    st = open_ok(dir, TD_STORE_SYNC_GROUP);
    memset(&l, 0, sizeof l);
    CHECK_CODE(TD_STORE_ERR_CORRUPT, td_store_read_log(st, "L", 1, 0, collect, &l, &e),
               &e);
    CHECK_MSG(strstr(e.msg, "checksum") != NULL, "message: %s", e.msg);
    td_store_close(st);
    st_rmtree(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    int failed = 0;

    if (argc == 3 && strcmp(argv[1], "--try-open") == 0) {
        td_store *st = NULL;
        td_store_error e = {0};
        td_store_options o = {0};
        td_store_err code = td_store_open(argv[2], &o, &st, &e);
        if (st)
            td_store_close(st);
        return (int)code;
    }
    failed += st_test_run("open_create_reopen", test_open_create_reopen);
    failed += st_test_run("open_locked", test_open_locked);
    failed += st_test_run("open_refuses_foreign", test_open_refuses_foreign);
    failed += st_test_run("doc_ids", test_doc_ids);
    failed += st_test_run("prefix_isolation", test_prefix_isolation);
    failed += st_test_run("append_rejects", test_append_rejects);
    failed += st_test_run("append_group", test_append_group);
    failed += st_test_run("append_always", test_append_always);
    failed += st_test_run("append_off", test_append_off);
    failed += st_test_run("wake_hook", test_wake_hook);
    failed += st_test_run("failed_write", test_failed_write);
    failed += st_test_run("close_flushes", test_close_flushes);
    failed += st_test_run("vv_kept", test_vv_kept);
    failed += st_test_run("list_delete_checkpoint", test_list_delete_checkpoint);
    failed += st_test_run("damaged_meta_isolated", test_damaged_meta_isolated);
    failed += st_test_run("missing_meta", test_missing_meta);
    failed += st_test_run("damaged_log", test_damaged_log);
    fprintf(stderr, "%d test(s) failed\n", failed);
    return failed ? 1 : 0;
}
