/*
 * store_bench.c -- tandem-store-bench: what the document store costs.
 *
 *   tandem-store-bench [--trace automerge-paper.json.gz] [--seconds S]
 *                      [--dir DIR] [--modes always,group,off] [--window N]
 *                      [--latency-rate R]
 *
 * 1. Appends: batches per second for batches of 1, 16 and 256 ops in each
 *    durability mode. Batches are real CRDT batches (typing at random
 *    spots), generated before the clock starts, spread over 64 documents and
 *    submitted asynchronously with a window of outstanding appends, the way
 *    an event loop with many clients submits them -- which is what gives
 *    group commit something to group. Baseline, measured in the same run: a
 *    plain RocksDB put of the same bytes per batch with the same sync
 *    setting, one after the other (what a server writing synchronously from
 *    its event loop would get).
 * 2. Disk: bytes per op after compaction (log folded into snapshots,
 *    RocksDB files rewritten), for the synthetic documents and the trace.
 * 3. Load: milliseconds to load the automerge-paper document (every txn of
 *    the trace one batch) from the log alone, before compaction, and from
 *    its snapshot after; the loaded text is checked against endContent.
 * 4. Latency of one append at a time (--latency-rate R, default 1000 a
 *    second, paced; 0 skips it): the percentiles of append-to-completion in
 *    the `group` and `off` modes, beside a plain synced RocksDB put of the
 *    same bytes at the same pace. A durable broadcast waits for its append,
 *    so the synced put's tail is the floor under any durable fan-out p99 on
 *    this disk, whatever the server does.
 */
#define _XOPEN_SOURCE 700 /* nftw */

#include <cjson/cJSON.h>
#include <ftw.h>
#include <inttypes.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "tandem_store.h"
#include "td_rng.h"

#define NDOCS 64
#define NBATCHES 4096

static double g_seconds = 1.5;
static size_t g_window = 4096; /* appends outstanding at once (--window) */
static double g_rate = 1000;    /* appends a second in section 4 (--latency-rate) */
static const char *g_base = "/tmp";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "tandem-store-bench: %s: %s\n", what, msg);
    exit(1);
}

/* ---- data directories --------------------------------------------------- */

static char *mkdir_tmp(void)
{
    char *t = malloc(strlen(g_base) + 32);
    sprintf(t, "%s/tandem-bench-XXXXXX", g_base);
    if (mkdtemp(t) == NULL)
        die("mkdtemp", g_base);
    return t;
}

/* Directory walks with nftw: removing a tree, and adding up its files. */
static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb, (void)flag, (void)f;
    remove(path);
    return 0;
}

static void rmtree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static uint64_t g_all, g_sst; /* dir_bytes' sums (nftw passes no user data) */

static int count_one(const char *path, const struct stat *sb, int flag, struct FTW *f)
{
    size_t n = strlen(path);
    (void)f;
    if (flag == FTW_F && S_ISREG(sb->st_mode)) {
        g_all += (uint64_t)sb->st_size;
        if (n > 4 && strcmp(path + n - 4, ".sst") == 0)
            g_sst += (uint64_t)sb->st_size;
    }
    return 0;
}

/* Bytes of all files, and of the SST files alone. */
static void dir_bytes(const char *dir, uint64_t *all, uint64_t *sst)
{
    g_all = g_sst = 0;
    nftw(dir, count_one, 16, FTW_PHYS);
    *all = g_all;
    *sst = g_sst;
}

static td_store *open_store(const char *dir, td_store_durability mode)
{
    td_store_options o = {0};
    td_store_error e = {0};
    td_store *st;
    o.durability = mode;
    o.create_if_missing = 1;
    o.compaction = TD_STORE_COMPACT_MANUAL;
    if (td_store_open(dir, &o, &st, &e) != TD_STORE_OK)
        die("open", e.msg);
    return st;
}

/* ---- batches ------------------------------------------------------------ */

typedef struct batch {
    uint8_t *p;
    size_t n;
    uint64_t ops;
} batch;

static td_rng g_rng; /* seeded in main: every run edits alike */
static uint64_t rnd(void)
{
    return td_rng_next(&g_rng);
}

/* NBATCHES batches of k ops each: k characters typed at a random spot. */
static batch *make_batches(unsigned k)
{
    td_crdt_options o = {0};
    td_crdt_doc *d;
    td_crdt_obj text;
    batch *b = calloc(NBATCHES, sizeof *b);
    char chars[256];

    for (unsigned i = 0; i < sizeof chars; i++)
        chars[i] = (char)('a' + i % 26);
    o.agent = 0xbe4c4;
    if (td_crdt_doc_new(&o, &d) != TD_CRDT_OK ||
        td_crdt_root(d, TD_CRDT_TEXT, "body", 4, &text) != TD_CRDT_OK)
        die("core", "cannot create a document");
    for (int i = 0; i < NBATCHES; i++) {
        size_t len = td_crdt_text_length(d, text);
        uint8_t *p = NULL;
        if (td_crdt_text_insert(d, text, (size_t)(rnd() % (len + 1)), chars, k) !=
                TD_CRDT_OK ||
            td_crdt_commit(d, &p, &b[i].n) != TD_CRDT_OK)
            die("core", td_crdt_doc_error(d));
        b[i].p = malloc(b[i].n);
        memcpy(b[i].p, p, b[i].n);
        b[i].ops = k;
        td_crdt_buf_free(d, p);
    }
    td_crdt_doc_free(d);
    return b;
}

static void free_batches(batch *b)
{
    for (int i = 0; i < NBATCHES; i++)
        free(b[i].p);
    free(b);
}

/* ---- 1. appends --------------------------------------------------------- */

typedef struct counter {
    uint64_t ok, failed;
} counter;

static void count_ack(void *ud, const td_store_ack *ack)
{
    counter *c = ud;
    if (ack->code == TD_STORE_OK)
        c->ok++;
    else
        c->failed++;
}

static const char *doc_name(size_t i)
{
    static char names[NDOCS][16];
    if (names[i][0] == '\0')
        snprintf(names[i], sizeof names[i], "doc-%02zu", i);
    return names[i];
}

/* tb: batch x appended to document number doc. */
static void to_append(td_store_batch *tb, const batch *x, size_t doc)
{
    memset(tb, 0, sizeof *tb);
    tb->doc = doc_name(doc);
    tb->doc_len = strlen(tb->doc);
    tb->ops = x->p;
    tb->ops_len = x->n;
    tb->nops = x->ops;
}

typedef struct append_result {
    double batches_per_s, bytes_per_s;
    uint64_t batches, writes;
} append_result;

static append_result run_appends(td_store *st, const batch *b, double seconds)
{
    counter c = {0, 0};
    td_store_error e = {0};
    td_store_stats s0, s1;
    append_result r;
    uint64_t submitted = 0, bytes = 0;
    double t0, t1;

    td_store_get_stats(st, &s0);
    t0 = now_s();
    while (now_s() - t0 < seconds) {
        while (td_store_outstanding(st) < g_window) {
            td_store_batch tb;
            const batch *x = &b[(submitted / NDOCS) % NBATCHES];
            to_append(&tb, x, submitted % NDOCS);
            if (td_store_append(st, &tb, count_ack, &c, &e) != TD_STORE_OK)
                die("append", e.msg);
            submitted++;
            bytes += x->n;
        }
        td_store_poll(st, -1);
    }
    while (td_store_outstanding(st) > 0)
        td_store_poll(st, -1);
    t1 = now_s();
    if (c.failed)
        die("append", "some appends failed");
    td_store_get_stats(st, &s1);
    r.batches = c.ok;
    r.writes = s1.writes - s0.writes;
    r.batches_per_s = (double)c.ok / (t1 - t0);
    r.bytes_per_s = (double)bytes / (t1 - t0);
    return r;
}

/* The naive way: one put per batch, synced as the mode says, in a loop. */
static double run_baseline(const batch *b, td_store_durability mode, double seconds)
{
    char *dir = mkdir_tmp(), *err = NULL;
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_t *db;
    uint64_t n = 0;
    double t0, t1;

    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_writeoptions_set_sync(wo, mode != TD_STORE_SYNC_OFF);
    db = rocksdb_open(o, dir, &err);
    if (err)
        die("baseline open", err);
    t0 = now_s();
    do {
        for (int i = 0; i < 64; i++, n++) {
            char key[32];
            const batch *x = &b[(n / NDOCS) % NBATCHES];
            int kl = snprintf(key, sizeof key, "doc-%02d/%016" PRIx64, (int)(n % NDOCS), n);
            rocksdb_put(db, wo, key, (size_t)kl, (const char *)x->p, x->n, &err);
            if (err)
                die("baseline put", err);
        }
        t1 = now_s();
    } while (t1 - t0 < seconds);
    rocksdb_close(db);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_options_destroy(o);
    rmtree(dir);
    free(dir);
    return (double)n / (t1 - t0);
}

typedef struct list_acc {
    td_store *st;
    uint64_t ops, snap_bytes;
} list_acc;

static int compact_one(void *ud, const td_store_doc_info *i)
{
    list_acc *a = ud;
    td_store_error e = {0};
    td_store_compact_info ci;
    char id[TD_STORE_DOC_ID_MAX + 1];
    memcpy(id, i->doc, i->doc_len);
    id[i->doc_len] = '\0';
    a->ops += i->snap_ops + i->log_ops;
    /* Compaction re-reads the document: keep the callback's data aside. */
    if (td_store_compact(a->st, id, strlen(id), 1, &ci, &e) != TD_STORE_OK)
        die("compact", e.msg);
    a->snap_bytes += ci.compacted ? ci.snap_bytes : i->snap_bytes;
    return 0;
}

static void bench_appends(int modes_mask)
{
    static const unsigned sizes[] = {1, 16, 256};
    static const td_store_durability modes[] = {TD_STORE_SYNC_ALWAYS,
                                                TD_STORE_SYNC_GROUP, TD_STORE_SYNC_OFF};
    batch *bs[3];

    printf("== appends: %d documents, up to %zu appends outstanding, %.1f s per run\n",
           NDOCS, g_window, g_seconds);
    printf("%-7s %9s %12s %12s %9s %10s %14s %8s\n", "mode", "ops/batch", "batches/s",
           "ops/s", "MB/s", "batch/wr", "naive put/s", "ratio");
    for (int i = 0; i < 3; i++)
        bs[i] = make_batches(sizes[i]);
    for (int m = 0; m < 3; m++) {
        if (!(modes_mask & (1 << modes[m])))
            continue;
        for (int i = 0; i < 3; i++) {
            char *dir = mkdir_tmp();
            td_store *st = open_store(dir, modes[m]);
            double secs = modes[m] == TD_STORE_SYNC_ALWAYS ? g_seconds / 2 : g_seconds;
            append_result r = run_appends(st, bs[i], secs);
            double base = run_baseline(bs[i], modes[m], secs / 2);
            printf("%-7s %9u %12.0f %12.0f %9.1f %10.1f %14.0f %7.1fx\n",
                   td_store_durability_name(modes[m]), sizes[i], r.batches_per_s,
                   r.batches_per_s * sizes[i], r.bytes_per_s / 1e6,
                   r.writes ? (double)r.batches / (double)r.writes : 0.0, base,
                   r.batches_per_s / base);
            fflush(stdout);
            if (modes[m] == TD_STORE_SYNC_GROUP && sizes[i] == 1) {
                /* Disk per op once the logs are folded away. */
                list_acc a = {st, 0, 0};
                td_store_error e = {0};
                uint64_t before, after, sst;
                dir_bytes(dir, &before, &sst);
                if (td_store_list(st, compact_one, &a, &e) != TD_STORE_OK ||
                    td_store_compact_files(st, &e) != TD_STORE_OK)
                    die("compact", e.msg);
                dir_bytes(dir, &after, &sst);
                printf("        disk after compaction: %" PRIu64 " ops in %d documents: "
                       "%" PRIu64 " bytes before, %" PRIu64 " after (%" PRIu64
                       " in SST files), %.2f bytes/op; snapshots %" PRIu64 " bytes\n",
                       a.ops, NDOCS, before, after, sst,
                       a.ops ? (double)after / (double)a.ops : 0.0, a.snap_bytes);
            }
            td_store_close(st);
            rmtree(dir);
            free(dir);
        }
    }
    for (int i = 0; i < 3; i++)
        free_batches(bs[i]);
}

/* ---- 3. the trace ------------------------------------------------------- */

static char *read_gz(const char *path, size_t *len)
{
    gzFile f = gzopen(path, "rb");
    size_t cap = 1 << 20, n = 0;
    char *buf;
    if (f == NULL)
        return NULL;
    buf = malloc(cap);
    for (;;) {
        int got;
        if (n + 65536 + 1 > cap)
            buf = realloc(buf, cap *= 2);
        got = gzread(f, buf + n, 65536);
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    gzclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

typedef struct trace_batches {
    batch *b;
    size_t n, cap;
    uint64_t ops;
    char *end_content;
} trace_batches;

/* Replays the trace with the core, one batch per txn. */
static int replay(const char *path, trace_batches *out)
{
    size_t len;
    char *text = read_gz(path, &len);
    cJSON *root, *txns, *txn, *end;
    td_crdt_options o = {0};
    td_crdt_doc *d;
    td_crdt_obj body;
    double t0 = now_s();

    if (text == NULL) {
        fprintf(stderr, "tandem-store-bench: cannot read %s\n", path);
        return -1;
    }
    root = cJSON_Parse(text);
    free(text);
    txns = cJSON_GetObjectItemCaseSensitive(root, "txns");
    end = cJSON_GetObjectItemCaseSensitive(root, "endContent");
    if (!cJSON_IsArray(txns) || !cJSON_IsString(end)) {
        fprintf(stderr, "tandem-store-bench: %s is not an editing trace\n", path);
        cJSON_Delete(root);
        return -1;
    }
    memset(out, 0, sizeof *out);
    out->end_content = strdup(end->valuestring);
    o.agent = 0x7eace;
    if (td_crdt_doc_new(&o, &d) != TD_CRDT_OK ||
        td_crdt_root(d, TD_CRDT_TEXT, "body", 4, &body) != TD_CRDT_OK)
        die("core", "cannot create a document");
    cJSON_ArrayForEach(txn, txns) {
        cJSON *patches = cJSON_GetObjectItemCaseSensitive(txn, "patches"), *p;
        uint64_t before = td_crdt_op_count(d);
        uint8_t *bytes;
        size_t blen;
        cJSON_ArrayForEach(p, patches) {
            double pos = cJSON_GetArrayItem(p, 0)->valuedouble;
            double del = cJSON_GetArrayItem(p, 1)->valuedouble;
            const char *ins = cJSON_GetArrayItem(p, 2)->valuestring;
            if (del > 0 && td_crdt_text_delete(d, body, (size_t)pos, (size_t)del) !=
                               TD_CRDT_OK)
                die("replay delete", td_crdt_doc_error(d));
            if (ins[0] && td_crdt_text_insert(d, body, (size_t)pos, ins, strlen(ins)) !=
                              TD_CRDT_OK)
                die("replay insert", td_crdt_doc_error(d));
        }
        if (td_crdt_commit(d, &bytes, &blen) != TD_CRDT_OK)
            die("replay commit", td_crdt_doc_error(d));
        if (blen == 0)
            continue;
        if (out->n == out->cap) {
            out->cap = out->cap ? out->cap * 2 : 1024;
            out->b = realloc(out->b, out->cap * sizeof *out->b);
        }
        out->b[out->n].p = malloc(blen);
        memcpy(out->b[out->n].p, bytes, blen);
        out->b[out->n].n = blen;
        out->b[out->n].ops = td_crdt_op_count(d) - before;
        out->ops += out->b[out->n].ops;
        out->n++;
        td_crdt_buf_free(d, bytes);
    }
    printf("replayed %s: %zu batches, %" PRIu64 " ops, in %.2f s\n", path, out->n,
           out->ops, now_s() - t0);
    td_crdt_doc_free(d);
    cJSON_Delete(root);
    return 0;
}

/* Loads `doc` `runs` times; returns the fastest in ms, checks the text. */
static double time_load(td_store *st, const char *expect, int runs, double *median)
{
    double times[64];
    for (int r = 0; r < runs && r < 64; r++) {
        td_store_error e = {0};
        td_crdt_doc *d;
        td_crdt_obj body;
        char *text = NULL;
        size_t len = 0;
        double t0 = now_s();
        if (td_store_load(st, "paper", 5, NULL, &d, NULL, &e) != TD_STORE_OK)
            die("load", e.msg);
        times[r] = (now_s() - t0) * 1000.0;
        if (td_crdt_root(d, TD_CRDT_TEXT, "body", 4, &body) != TD_CRDT_OK ||
            td_crdt_text_get(d, body, &text, &len) != TD_CRDT_OK)
            die("load", "no text");
        if (strcmp(text, expect) != 0)
            die("load", "the loaded text differs from endContent");
        td_crdt_buf_free(d, text);
        td_crdt_doc_free(d);
    }
    for (int i = 1; i < runs; i++)
        for (int j = i; j > 0 && times[j] < times[j - 1]; j--) {
            double t = times[j];
            times[j] = times[j - 1];
            times[j - 1] = t;
        }
    *median = times[runs / 2];
    return times[0];
}

static void bench_trace(const char *path)
{
    trace_batches tb;
    char *dir;
    td_store *st;
    counter c = {0, 0};
    td_store_error e = {0};
    td_store_doc_info info;
    td_store_compact_info ci;
    uint64_t before, after, sst;
    double t0, best, median;

    printf("\n== the automerge-paper document\n");
    if (path == NULL) {
        printf("skipped: pass --trace .../automerge-paper.json.gz (see "
               "../shared/traces)\n");
        return;
    }
    if (replay(path, &tb) != 0)
        return;
    dir = mkdir_tmp();
    st = open_store(dir, TD_STORE_SYNC_GROUP);
    t0 = now_s();
    for (size_t i = 0; i < tb.n; i++) {
        td_store_batch b;
        memset(&b, 0, sizeof b);
        b.doc = "paper";
        b.doc_len = 5;
        b.ops = tb.b[i].p;
        b.ops_len = tb.b[i].n;
        b.nops = tb.b[i].ops;
        while (td_store_outstanding(st) >= g_window)
            td_store_poll(st, -1);
        if (td_store_append(st, &b, count_ack, &c, &e) != TD_STORE_OK)
            die("append", e.msg);
    }
    while (td_store_outstanding(st) > 0)
        td_store_poll(st, -1);
    printf("appended %zu batches (group mode) in %.2f s: %.0f batches/s\n", tb.n,
           now_s() - t0, (double)tb.n / (now_s() - t0));
    if (c.failed)
        die("append", "some appends failed");
    if (td_store_doc_stat(st, "paper", 5, &info, &e) != TD_STORE_OK)
        die("stat", e.msg);
    dir_bytes(dir, &before, &sst);
    best = time_load(st, tb.end_content, 3, &median);
    printf("load from the log alone (%" PRIu64 " entries, %" PRIu64
           " bytes): %.1f ms (median of 3: %.1f ms)\n",
           info.log_entries, info.log_bytes, best, median);

    if (td_store_compact(st, "paper", 5, 1, &ci, &e) != TD_STORE_OK ||
        td_store_compact_files(st, &e) != TD_STORE_OK)
        die("compact", e.msg);
    dir_bytes(dir, &after, &sst);
    best = time_load(st, tb.end_content, 21, &median);
    printf("load from the snapshot (%" PRIu64 " bytes): %.2f ms (median of 21: "
           "%.2f ms)   [bar: <= 10 ms]\n",
           ci.snap_bytes, best, median);
    printf("disk: %" PRIu64 " bytes before compaction, %" PRIu64
           " after (%" PRIu64 " in SST files) = %.2fx the snapshot, %.2f bytes/op   "
           "[bar: <= 2x]\n",
           before, after, sst, (double)after / (double)ci.snap_bytes,
           (double)after / (double)tb.ops);
    td_store_close(st);
    /* Reopened cold (memtables gone, data only in SST files). */
    st = open_store(dir, TD_STORE_SYNC_GROUP);
    best = time_load(st, tb.end_content, 5, &median);
    printf("load from the snapshot after reopening: %.2f ms (median of 5: %.2f ms)\n",
           best, median);
    td_store_close(st);
    rmtree(dir);
    free(dir);
    for (size_t i = 0; i < tb.n; i++)
        free(tb.b[i].p);
    free(tb.b);
    free(tb.end_content);
}

/* ---- 4. one append at a time ------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Waits until t0 + i / g_rate: a steady pace, as typing clients give. */
static void pace(double t0, uint64_t i)
{
    double due = t0 + (double)i / g_rate, left;
    while ((left = due - now_s()) > 0) {
        struct timespec ts = {0, (long)(left > 1e-3 ? 1e6 : left * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static void print_latency(const char *what, double *ms, size_t n)
{
    qsort(ms, n, sizeof *ms, cmp_double);
    printf("%-22s %8zu %9.3f %9.3f %9.3f %9.3f %9.3f\n", what, n, ms[n / 2],
           ms[n * 9 / 10], ms[n * 99 / 100], ms[n * 999 / 1000], ms[n - 1]);
}

static void bench_latency(void)
{
    static const td_store_durability modes[] = {TD_STORE_SYNC_GROUP, TD_STORE_SYNC_OFF};
    size_t n = (size_t)(g_rate * g_seconds);
    double *ms;
    batch *b;

    if (g_rate <= 0 || n < 100)
        return;
    ms = malloc(n * sizeof *ms);
    b = make_batches(1);
    printf("\n== one append at a time: %.0f a second, %.1f s (ms)\n", g_rate, g_seconds);
    printf("%-22s %8s %9s %9s %9s %9s %9s\n", "", "appends", "p50", "p90", "p99", "p99.9",
           "max");
    for (int m = 0; m < 2; m++) {
        char *dir = mkdir_tmp(), what[40];
        td_store *st = open_store(dir, modes[m]);
        td_store_error e = {0};
        double t0 = now_s();
        for (size_t i = 0; i < n; i++) {
            td_store_batch tb;
            to_append(&tb, &b[i % NBATCHES], i % NDOCS);
            pace(t0, i);
            double t = now_s();
            if (td_store_append_wait(st, &tb, NULL, &e) != TD_STORE_OK)
                die("append", e.msg);
            ms[i] = (now_s() - t) * 1e3;
        }
        snprintf(what, sizeof what, "store, %s", td_store_durability_name(modes[m]));
        print_latency(what, ms, n);
        td_store_close(st);
        rmtree(dir);
        free(dir);
    }
    for (int sync = 1; sync >= 0; sync--) {
        char *dir = mkdir_tmp(), *err = NULL;
        rocksdb_options_t *o = rocksdb_options_create();
        rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
        rocksdb_t *db;
        double t0;
        rocksdb_options_set_create_if_missing(o, 1);
        rocksdb_writeoptions_set_sync(wo, (unsigned char)sync);
        db = rocksdb_open(o, dir, &err);
        if (err)
            die("baseline open", err);
        t0 = now_s();
        for (size_t i = 0; i < n; i++) {
            char key[32];
            const batch *x = &b[i % NBATCHES];
            int kl = snprintf(key, sizeof key, "doc/%016zx", i);
            pace(t0, i);
            double t = now_s();
            rocksdb_put(db, wo, key, (size_t)kl, (const char *)x->p, x->n, &err);
            if (err)
                die("baseline put", err);
            ms[i] = (now_s() - t) * 1e3;
        }
        print_latency(sync ? "plain put, synced" : "plain put, not synced", ms, n);
        rocksdb_close(db);
        rocksdb_writeoptions_destroy(wo);
        rocksdb_options_destroy(o);
        rmtree(dir);
        free(dir);
    }
    free_batches(b);
    free(ms);
}

static void usage(void)
{
    fprintf(stderr, "usage: tandem-store-bench [--trace automerge-paper.json.gz] "
                    "[--seconds S] [--dir DIR] [--modes always,group,off] "
                    "[--window N] [--latency-rate R]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    td_rng_seed(&g_rng, 0x2545f4914f6cdd1dULL);
    const char *trace = NULL;
    int modes = 7;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--trace") == 0 && i + 1 < argc) {
            trace = argv[++i];
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            g_seconds = atof(argv[++i]);
            if (g_seconds <= 0)
                usage();
        } else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc) {
            g_window = (size_t)atol(argv[++i]);
            if (g_window < 1)
                usage();
        } else if (strcmp(argv[i], "--latency-rate") == 0 && i + 1 < argc) {
            g_rate = atof(argv[++i]);
            if (g_rate < 0)
                usage();
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            g_base = argv[++i];
        } else if (strcmp(argv[i], "--modes") == 0 && i + 1 < argc) {
            char *list = strdup(argv[++i]), *tok, *save = NULL;
            modes = 0;
            for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                td_store_durability d;
                if (td_store_durability_parse(tok, &d) != 0)
                    usage();
                modes |= 1 << d;
            }
            free(list);
        } else {
            usage();
        }
    }
    printf("tandem-store-bench: data directories under %s\n", g_base);
    bench_appends(modes);
    bench_trace(trace);
    bench_latency();
    return 0;
}
