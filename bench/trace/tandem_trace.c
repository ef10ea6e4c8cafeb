/*
 * tandem_trace.c -- tandem-trace: replays editing traces into the CRDT,
 * checks the result against the trace's endContent, and measures.
 *
 *     tandem-trace [--json] [--runs N] [--server ws://HOST:PORT [--token T]] FILE...
 *
 * Per trace, in this order (see README.md for every output field):
 *   1. load: gunzip + cJSON, validated and converted to compact arrays; the
 *      JSON tree is freed and malloc_trim(0) gives its pages back, so that
 *      the memory figures below are about the replay and not the parser;
 *   2. one replay under a counting allocation hook, with the kernel's RSS
 *      high-water mark reset just before it (peak RSS and peak heap), whose
 *      result is checked against endContent and then snapshot-encoded;
 *   3. N timed replays into fresh documents, each followed by the same
 *      patches replayed into a gap buffer (the no-CRDT baseline of the same
 *      run), plus, for sequential traces, N replays committing every txn;
 *   4. N timed loads of the snapshot into a fresh replica.
 * Timings are medians. A sequential trace that does not reach endContent is
 * replayed once more in lockstep with the gap buffer to name the first
 * patch after which the two texts differ.
 *
 * Exit status: 0 if every trace is ok, 1 if some trace did not replay to
 * endContent (or the core failed), 2 if some file could not be read or is
 * not a valid trace, 64 on a usage error.
 */
#define _GNU_SOURCE /* malloc_trim */
#include "crdt_internal.h" /* td_crdt_snapshot_encode_v1: the v1 baseline */
#include "tandem_crdt.h"
#include "trace_check.h"
#include "trace_load.h"
#include "trace_replay.h"
#include "trace_server.h"

#include <cjson/cJSON.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define AGENT_REPLAY 1u                     /* replica a gets 1 + a */
#define AGENT_LOADER 0x7A6E0000DEC0DE01ull  /* the replica the snapshot loads into */
#define EXIT_NOT_OK 1
#define EXIT_BAD_TRACE 2
#define EXIT_USAGE 64

typedef struct result {
    const char *file;
    char name[256];
    int loaded, ok;
    int replayed;   /* the counted replay ran to its end */
    int mismatch;   /* ... but some replica's text is not endContent */
    char error[2048];
    /* what the trace holds */
    int concurrent;
    size_t edits, txns, agents, end_chars, end_bytes;
    uint64_t ins_chars, del_chars;
    /* figures; NAN / -1 when not measured */
    double replay_ms, baseline_ms, ratio, decode_ms, commit_ms, decode_ms_v1;
    double decode_trusted_ms; /* td_crdt_options.trusted_snapshot, as the server loads */
    double load_read_ms;      /* trusted (lazy) load, then the text read */
    double first_hist_ms;     /* then the first use of the history: an edit and a commit */
    uint8_t *snap_v1; /* snapshot version 1 of the same document (baseline) */
    size_t snap_v1_len;
    long long encoded_bytes, encoded_bytes_v1, peak_rss_kb, base_rss_kb, peak_heap_kb;
    const char *rss_method;
    int baseline_ok, snapshots_equal, decoded_ok; /* -1: not applicable */
} result;

/* ---- small helpers ------------------------------------------------------ */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void set_error(result *res, const char *fmt, const char *msg)
{
    if (res->error[0] == '\0')
        snprintf(res->error, sizeof res->error, fmt, msg);
}

static void trace_name(const char *path, char *out, size_t outlen)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(out, outlen, "%s", base);
    size_t n = strlen(out);
    if (n > 3 && strcmp(out + n - 3, ".gz") == 0)
        out[n -= 3] = '\0';
    if (n > 5 && strcmp(out + n - 5, ".json") == 0)
        out[n - 5] = '\0';
}

/* ---- memory ------------------------------------------------------------- */

static long long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long long v = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtoll(line + klen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* Resets VmHWM to the current RSS (Linux >= 4.0). */
static int reset_hwm(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return -1;
    int ok = fputs("5", f) >= 0;
    if (fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

/* ---- the baseline ------------------------------------------------------- */

/* Replays every patch in file order into a gap buffer; returns ms, or -1. */
static double baseline_run(const tt_trace *t, int check, int *ok)
{
    tt_gap g;
    double t0 = now_ms();
    if (tt_gap_init(&g, 1024) != 0 || tt_gap_replay(t, &g) != 0) {
        tt_gap_free(&g);
        return -1;
    }
    double ms = now_ms() - t0;
    if (check)
        *ok = tt_gap_equals(&g, t->end, t->end_len) == 1;
    tt_gap_free(&g);
    return ms;
}

/* ---- one trace ---------------------------------------------------------- */

/* Replica 0's snapshot (a malloc'ed copy, or NULL); for concurrent traces
 * every other replica's must be the same bytes. */
static uint8_t *snapshot_of(tt_replay *r, result *res, size_t *snap_len)
{
    char err[512];
    uint8_t *s0 = NULL, *snap = NULL;
    size_t l0 = 0;
    td_crdt_err e = td_crdt_snapshot_encode(r->docs[0], &s0, &l0);
    if (e != TD_CRDT_OK) {
        snprintf(err, sizeof err, "%s (%s)", td_crdt_strerror(e),
                 td_crdt_doc_error(r->docs[0]));
        set_error(res, "td_crdt_snapshot_encode failed: %s", err);
        res->ok = 0;
        return NULL;
    }
    res->encoded_bytes = (long long)l0;
    uint8_t *v1 = NULL;
    if (td_crdt_snapshot_encode_v1(r->docs[0], &v1, &res->snap_v1_len) == TD_CRDT_OK &&
        (res->snap_v1 = malloc(res->snap_v1_len)) != NULL) {
        memcpy(res->snap_v1, v1, res->snap_v1_len);
        res->encoded_bytes_v1 = (long long)res->snap_v1_len;
    }
    td_crdt_buf_free(r->docs[0], v1);
    if ((snap = malloc(l0 ? l0 : 1)) != NULL)
        memcpy(snap, s0, l0);
    *snap_len = l0;
    if (r->ndocs > 1)
        res->snapshots_equal = 1;
    for (uint32_t a = 1; a < r->ndocs && res->snapshots_equal; a++) {
        uint8_t *s = NULL;
        size_t l = 0;
        if (td_crdt_snapshot_encode(r->docs[a], &s, &l) != TD_CRDT_OK ||
            l != l0 || memcmp(s, s0, l) != 0) {
            res->snapshots_equal = 0;
            snprintf(err, sizeof err, "replica %u's snapshot (%zu bytes) "
                     "differs from replica 0's (%zu bytes)", a, l, l0);
            set_error(res, "replicas did not converge: %s", err);
            res->ok = 0;
        }
        td_crdt_buf_free(r->docs[a], s);
    }
    td_crdt_buf_free(r->docs[0], s0);
    return snap;
}

/* The counted replay: memory figures, correctness, snapshot. Returns the
 * snapshot (malloc'ed) or NULL. */
static uint8_t *measured_replay(const tt_trace *t, result *res, size_t *snap_len)
{
    tt_alloc_stats st = {0, 0};
    td_crdt_options o = {.alloc = tt_counting_alloc, .alloc_ud = &st,
                         .agent = AGENT_REPLAY};
    tt_replay r;
    char err[1024];
    uint8_t *snap = NULL;

    int hwm = reset_hwm() == 0;
    res->rss_method = hwm ? "clear_refs+VmHWM"
                          : "getrusage (clear_refs failed: process lifetime "
                            "peak, includes loading)";
    res->base_rss_kb = status_kb("VmRSS");
    int rc = tt_replay_run(t, &o, 0, &r, err, sizeof err);
    if (hwm) {
        res->peak_rss_kb = status_kb("VmHWM");
    } else {
        struct rusage ru;
        res->peak_rss_kb = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
    }
    res->peak_heap_kb = (long long)((st.peak + 1023) / 1024);
    if (rc != 0) {
        set_error(res, "replay failed: %s", err);
    } else {
        res->ok = res->replayed = 1;
        char msg[2048];
        if (tt_check_replicas(t, &r, &res->mismatch, msg, sizeof msg) != 0) {
            set_error(res, "%s", msg);
            res->ok = 0;
        }
        snap = snapshot_of(&r, res, snap_len);
    }
    tt_replay_free(&r);
    return snap;
}

/* N timed replays and baselines; returns -1 if a replay failed. */
static int timed_replays(const tt_trace *t, int runs, result *res)
{
    double *crdt = calloc((size_t)runs, sizeof *crdt);
    double *base = calloc((size_t)runs, sizeof *base);
    double *comm = calloc((size_t)runs, sizeof *comm);
    int rc = -1;
    char err[1024];
    if (!crdt || !base || !comm)
        goto out;
    td_crdt_options o = {.agent = AGENT_REPLAY};
    for (int i = 0; i < runs; i++) {
        tt_replay r;
        double t0 = now_ms();
        int fail = tt_replay_run(t, &o, 0, &r, err, sizeof err);
        crdt[i] = now_ms() - t0;
        if (!fail && i == 0 &&
            tt_check_text(r.docs[0], r.texts[0], t->end, t->end_len, err,
                       sizeof err) != 0) {
            set_error(res, "a timed replay differs from endContent: %s", err);
            res->ok = 0;
        }
        tt_replay_free(&r);
        if (fail) {
            set_error(res, "timed replay failed: %s", err);
            res->ok = 0;
            goto out;
        }
        int bok = 0;
        if ((base[i] = baseline_run(t, i == 0 && !t->concurrent, &bok)) < 0)
            goto out;
        if (i == 0 && !t->concurrent)
            res->baseline_ok = bok;
    }
    res->replay_ms = median(crdt, runs);
    res->baseline_ms = median(base, runs);
    res->ratio = res->baseline_ms > 0 ? res->replay_ms / res->baseline_ms : NAN;
    if (!t->concurrent) {
        for (int i = 0; i < runs; i++) {
            tt_replay r;
            double t0 = now_ms();
            int fail = tt_replay_run(t, &o, 1, &r, err, sizeof err);
            comm[i] = now_ms() - t0;
            tt_replay_free(&r);
            if (fail) {
                set_error(res, "replay with commits failed: %s", err);
                res->ok = 0;
                goto out;
            }
        }
        res->commit_ms = median(comm, runs);
    }
    rc = 0;
out:
    free(crdt);
    free(base);
    free(comm);
    return rc;
}

static void timed_decodes(const tt_trace *t, const uint8_t *snap, size_t len,
                          int runs, int trusted, result *res, double *out_ms)
{
    double *v = calloc((size_t)runs, sizeof *v);
    if (!v)
        return;
    td_crdt_options o = {.agent = AGENT_LOADER, .trusted_snapshot = trusted};
    for (int i = 0; i < runs; i++) {
        td_crdt_doc *doc = NULL;
        const char *emsg = NULL;
        double t0 = now_ms();
        td_crdt_err e = td_crdt_doc_load(&o, snap, len, &doc, &emsg);
        v[i] = now_ms() - t0;
        if (e != TD_CRDT_OK) {
            char m[512];
            snprintf(m, sizeof m, "%s (%s)", td_crdt_strerror(e),
                     emsg ? emsg : "");
            set_error(res, "td_crdt_doc_load of the snapshot failed: %s", m);
            res->ok = 0;
            res->decoded_ok = 0;
            free(v);
            return;
        }
        if (i == 0) {
            td_crdt_obj text = 0;
            char err[1024];
            res->decoded_ok =
                td_crdt_root(doc, TD_CRDT_TEXT, "text", 4, &text) == TD_CRDT_OK &&
                tt_check_text(doc, text, t->end, t->end_len, err, sizeof err) == 0;
            if (!res->decoded_ok) {
                set_error(res, "the loaded snapshot is not endContent: %s", err);
                res->ok = 0;
            }
        }
        td_crdt_doc_free(doc);
    }
    *out_ms = median(v, runs);
    free(v);
}

/* A trusted load is lazy (crdt/README.md): it decodes what reading needs and
 * leaves the history (runs, ids, deletes) to the first call that needs it.
 * Timed: load + td_crdt_root + td_crdt_text_get (*read_ms), and then that
 * first use -- one character inserted mid-text and committed (*hist_ms) --
 * so that the cost the load defers is shown, not hidden. The first run also
 * checks that a lazily loaded document re-encodes to the same bytes. */
static void timed_lazy_loads(const tt_trace *t, const uint8_t *snap, size_t len, int runs,
                             result *res, double *read_ms, double *hist_ms)
{
    double *v = calloc((size_t)runs * 2, sizeof *v), *w = v + runs;
    if (!v)
        return;
    td_crdt_options o = {.agent = AGENT_LOADER, .trusted_snapshot = 1};
    const char *what = NULL;
    td_crdt_err e = TD_CRDT_OK;
    for (int i = 0; i < runs && !what; i++) {
        td_crdt_doc *doc = NULL;
        td_crdt_obj text = 0;
        char *str = NULL;
        size_t n = 0;
        uint8_t *batch = NULL;
        size_t blen = 0;
        double t0 = now_ms();
        if ((e = td_crdt_doc_load(&o, snap, len, &doc, NULL))) {
            what = "td_crdt_doc_load (trusted)";
            break;
        }
        if ((e = td_crdt_root(doc, TD_CRDT_TEXT, "text", 4, &text)) ||
            (e = td_crdt_text_get(doc, text, &str, &n))) {
            what = "reading the text of a lazily loaded snapshot";
            td_crdt_doc_free(doc);
            break;
        }
        td_crdt_buf_free(doc, str);
        double t1 = now_ms();
        size_t mid = td_crdt_text_length(doc, text) / 2;
        if ((e = td_crdt_text_insert(doc, text, mid, "x", 1)) ||
            (e = td_crdt_commit(doc, &batch, &blen)))
            what = "the first edit after a lazy load";
        double t2 = now_ms();
        td_crdt_buf_free(doc, batch);
        td_crdt_doc_free(doc);
        v[i] = t1 - t0;
        w[i] = t2 - t1;
        if (i == 0 && !what) { /* untimed: the re-encoding is the snapshot */
            uint8_t *re = NULL;
            size_t relen = 0;
            if ((e = td_crdt_doc_load(&o, snap, len, &doc, NULL)) == TD_CRDT_OK) {
                e = td_crdt_snapshot_encode(doc, &re, &relen);
                if (!e && (relen != len || memcmp(re, snap, len) != 0))
                    what = "re-encoding a lazily loaded snapshot (bytes differ)";
                td_crdt_buf_free(doc, re);
                td_crdt_doc_free(doc);
            }
            if (e)
                what = "re-encoding a lazily loaded snapshot";
        }
    }
    if (what) {
        char m[256];
        snprintf(m, sizeof m, "%s failed: %s", what, td_crdt_strerror(e));
        set_error(res, "%s", m);
        res->ok = 0;
    } else {
        *read_ms = median(v, runs);
        *hist_ms = median(w, runs);
    }
    (void)t;
    free(v);
}

static void run_trace(const char *path, int runs, result *res)
{
    tt_trace t;
    char err[1024];
    memset(res, 0, sizeof *res);
    res->file = path;
    trace_name(path, res->name, sizeof res->name);
    res->replay_ms = res->baseline_ms = res->ratio = res->decode_ms =
        res->commit_ms = res->decode_ms_v1 = res->decode_trusted_ms = res->load_read_ms =
        res->first_hist_ms = NAN;
    res->encoded_bytes = res->encoded_bytes_v1 = res->peak_rss_kb = res->base_rss_kb =
        res->peak_heap_kb = -1;
    res->baseline_ok = res->snapshots_equal = res->decoded_ok = -1;
    res->rss_method = "";

    if (tt_trace_load(path, &t, err, sizeof err) != 0) {
        set_error(res, "%s", err);
        return;
    }
    res->loaded = 1;
    res->concurrent = t.concurrent;
    res->edits = t.npatches;
    res->txns = t.ntxns;
    res->agents = t.num_agents;
    res->ins_chars = t.ins_cp_total;
    res->del_chars = t.del_cp_total;
    res->end_chars = t.end_cp;
    res->end_bytes = t.end_len;
    malloc_trim(0);

    size_t snap_len = 0;
    uint8_t *snap = measured_replay(&t, res, &snap_len);
    if (res->mismatch && !t.concurrent)
        tt_locate_seq(&t, res->error, sizeof res->error);
    if (res->replayed && timed_replays(&t, runs, res) == 0 && snap) {
        timed_decodes(&t, snap, snap_len, runs, 0, res, &res->decode_ms);
        timed_decodes(&t, snap, snap_len, runs, 1, res, &res->decode_trusted_ms);
        timed_lazy_loads(&t, snap, snap_len, runs, res, &res->load_read_ms,
                         &res->first_hist_ms);
    }
    if (res->replayed && res->snap_v1)
        timed_decodes(&t, res->snap_v1, res->snap_v1_len, runs, 0, res, &res->decode_ms_v1);
    free(res->snap_v1);
    res->snap_v1 = NULL;
    free(snap);
    tt_trace_free(&t);
}

/* ---- output ------------------------------------------------------------- */

static void add_num(cJSON *o, const char *k, double v, int decimals)
{
    if (isnan(v) || v < 0) {
        cJSON_AddNullToObject(o, k);
        return;
    }
    double scale = decimals == 4 ? 1e4 : decimals == 2 ? 1e2 : 1;
    cJSON_AddNumberToObject(o, k, (double)(long long)(v * scale + 0.5) / scale);
}

static void add_tri(cJSON *o, const char *k, int v)
{
    if (v < 0)
        cJSON_AddNullToObject(o, k);
    else
        cJSON_AddBoolToObject(o, k, v);
}

static void print_json(const result *r, int runs)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    cJSON_AddStringToObject(o, "trace", r->name);
    cJSON_AddBoolToObject(o, "ok", r->ok);
    add_num(o, "edits", r->loaded ? (double)r->edits : NAN, 0);
    add_num(o, "replay_ms", r->replay_ms, 4);
    add_num(o, "baseline_ms", r->baseline_ms, 4);
    add_num(o, "ratio", r->ratio, 2);
    add_num(o, "encoded_bytes", (double)r->encoded_bytes, 0);
    add_num(o, "decode_ms", r->decode_ms, 4);
    add_num(o, "peak_rss_kb", (double)r->peak_rss_kb, 0);
    add_num(o, "peak_heap_kb", (double)r->peak_heap_kb, 0);
    add_num(o, "commit_ms", r->commit_ms, 4);
    add_num(o, "encoded_bytes_v1", (double)r->encoded_bytes_v1, 0);
    add_num(o, "decode_ms_v1", r->decode_ms_v1, 4);
    add_num(o, "decode_trusted_ms", r->decode_trusted_ms, 4);
    add_num(o, "load_read_ms", r->load_read_ms, 4);
    add_num(o, "first_hist_ms", r->first_hist_ms, 4);
    add_num(o, "base_rss_kb", (double)r->base_rss_kb, 0);
    add_num(o, "rss_delta_kb", r->peak_rss_kb >= 0 && r->base_rss_kb >= 0 &&
            strncmp(r->rss_method, "clear_refs", 10) == 0
                ? (double)(r->peak_rss_kb - r->base_rss_kb) : NAN, 0);
    cJSON_AddStringToObject(o, "rss_method", r->rss_method);
    cJSON_AddStringToObject(o, "format", !r->loaded ? "" :
                            r->concurrent ? "concurrent" : "sequential");
    add_num(o, "txns", r->loaded ? (double)r->txns : NAN, 0);
    add_num(o, "agents", r->loaded ? (double)r->agents : NAN, 0);
    add_num(o, "inserted_chars", r->loaded ? (double)r->ins_chars : NAN, 0);
    add_num(o, "deleted_chars", r->loaded ? (double)r->del_chars : NAN, 0);
    add_num(o, "end_chars", r->loaded ? (double)r->end_chars : NAN, 0);
    add_tri(o, "baseline_ok", r->baseline_ok);
    add_tri(o, "snapshots_equal", r->snapshots_equal);
    add_tri(o, "decoded_ok", r->decoded_ok);
    cJSON_AddNumberToObject(o, "runs", runs);
    cJSON_AddStringToObject(o, "file", r->file);
    if (r->error[0])
        cJSON_AddStringToObject(o, "error", r->error);
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        puts(s);
        cJSON_free(s);
    }
    cJSON_Delete(o);
}

static void fmt_ms(char *out, size_t n, double v)
{
    if (isnan(v))
        snprintf(out, n, "-");
    else
        snprintf(out, n, "%.3f", v);
}

static void fmt_ll(char *out, size_t n, long long v)
{
    if (v < 0)
        snprintf(out, n, "-");
    else
        snprintf(out, n, "%lld", v);
}

static void print_header(int runs)
{
    printf("# times: median of %d run%s; edits = patches; ratio = replay / gap "
           "buffer baseline\n", runs, runs == 1 ? "" : "s");
    printf("%-22s %-4s %8s %11s %11s %7s %10s %9s %10s %13s %9s %9s %11s %12s %11s\n",
           "trace", "ok", "edits", "replay ms", "baseline ms", "ratio", "encoded B",
           "decode ms", "trusted ms", "load+read ms", "+hist ms", "v1 ms", "peak RSS kB",
           "peak heap kB", "commit ms");
}

static void print_row(const result *r)
{
    char rep[32], base[32], ratio[32], enc[32], dec[32], dect[32], dec1[32], rss[32],
        heap[32], comm[32], edits[32], lread[32], lhist[32];
    fmt_ll(edits, sizeof edits, r->loaded ? (long long)r->edits : -1);
    fmt_ms(rep, sizeof rep, r->replay_ms);
    fmt_ms(base, sizeof base, r->baseline_ms);
    if (isnan(r->ratio))
        snprintf(ratio, sizeof ratio, "-");
    else
        snprintf(ratio, sizeof ratio, "%.2f", r->ratio);
    fmt_ll(enc, sizeof enc, r->encoded_bytes);
    fmt_ms(dec, sizeof dec, r->decode_ms);
    fmt_ms(dect, sizeof dect, r->decode_trusted_ms);
    fmt_ms(lread, sizeof lread, r->load_read_ms);
    fmt_ms(lhist, sizeof lhist, r->first_hist_ms);
    fmt_ms(dec1, sizeof dec1, r->decode_ms_v1);
    fmt_ll(rss, sizeof rss, r->peak_rss_kb);
    fmt_ll(heap, sizeof heap, r->peak_heap_kb);
    fmt_ms(comm, sizeof comm, r->commit_ms);
    printf("%-22s %-4s %8s %11s %11s %7s %10s %9s %10s %13s %9s %9s %11s %12s %11s\n",
           r->name, r->ok ? "yes" : "NO", edits, rep, base, ratio, enc, dec, dect, lread,
           lhist, dec1, rss, heap, comm);
    if (r->concurrent)
        printf("  (concurrent: %zu agents, %zu txns; baseline is a rough "
               "reference only)\n", r->agents, r->txns);
    if (r->rss_method[0] && strncmp(r->rss_method, "getrusage", 9) == 0)
        printf("  (peak RSS via %s)\n", r->rss_method);
}

static void usage(FILE *f)
{
    fputs("usage: tandem-trace [--json] [--runs N] [--server ws://HOST:PORT [--token T]] FILE...\n"
          "Replays editing traces (gzipped or plain JSON, sequential or "
          "concurrent),\nchecks each ends at endContent, and prints timings "
          "against a gap-buffer\nbaseline, snapshot size, decode time and peak "
          "memory.\n"
          "With --server, each trace is then also replayed through a running\n"
          "tandem server (one connection per agent) and the wall time and the\n"
          "bytes on the wire are printed; every client and GET /docs/{id} must\n"
          "end at endContent.\n", f);
}

/* The same trace through a running server; prints and returns 0 if ok. */
static int run_server(const char *path, const char *url, const char *token, int json)
{
    tt_trace t;
    char err[256];
    td_trace_server_result r;
    memset(&r, 0, sizeof r);
    if (tt_trace_load(path, &t, err, sizeof err) != 0) {
        fprintf(stderr, "tandem-trace: %s: %s\n", path, err);
        return EXIT_BAD_TRACE;
    }
    int rc = td_trace_replay_server(url, &t, NULL, token, &r);
    tt_trace_free(&t);
    if (json)
        printf("{\"trace\":\"%s\",\"server\":\"%s\",\"ok\":%s,\"wall_ms\":%.1f,"
               "\"bytes_sent\":%llu,\"bytes_recv\":%llu,\"batches\":%llu,"
               "\"connections\":%u,\"doc\":\"%s\"}\n",
               path, url, r.ok ? "true" : "false", r.wall_ms, (unsigned long long)r.bytes_sent,
               (unsigned long long)r.bytes_recv, (unsigned long long)r.batches, r.connections,
               r.doc);
    else
        printf("  through %s: %s, wall %.1f ms, %llu bytes sent, %llu received, %llu batches, "
               "%u connections, doc %s\n",
               url, r.ok ? "ok" : "NOT OK", r.wall_ms, (unsigned long long)r.bytes_sent,
               (unsigned long long)r.bytes_recv, (unsigned long long)r.batches, r.connections,
               r.doc);
    if (rc != 0)
        fprintf(stderr, "tandem-trace: %s through %s: %s\n", path, url, r.error);
    return rc == 0 ? 0 : EXIT_NOT_OK;
}

int main(int argc, char **argv)
{
    int json = 0, runs = 5, nfiles = 0, status = 0;
    const char *server = NULL, *token = NULL;
    const char **files = calloc((size_t)argc, sizeof *files);
    if (!files)
        return EXIT_USAGE;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000) {
                fprintf(stderr, "tandem-trace: --runs wants 1..1000\n");
                free(files);
                return EXIT_USAGE;
            }
            runs = (int)v;
        } else if (strcmp(argv[i], "--server") == 0 && i + 1 < argc) {
            server = argv[++i];
        } else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc) {
            token = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            free(files);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "tandem-trace: unknown option %s\n", argv[i]);
            usage(stderr);
            free(files);
            return EXIT_USAGE;
        } else {
            files[nfiles++] = argv[i];
        }
    }
    if (nfiles == 0) {
        usage(stderr);
        free(files);
        return EXIT_USAGE;
    }
    if (!json)
        print_header(runs);
    for (int i = 0; i < nfiles; i++) {
        result res;
        run_trace(files[i], runs, &res);
        if (json)
            print_json(&res, runs);
        else
            print_row(&res);
        fflush(stdout);
        if (res.error[0])
            fprintf(stderr, "tandem-trace: %s: %s\n", res.file, res.error);
        if (!res.loaded)
            status = EXIT_BAD_TRACE;
        else if (!res.ok && status == 0)
            status = EXIT_NOT_OK;
        if (server && res.loaded) {
            int rc = run_server(files[i], server, token, json);
            if (rc && status == 0)
                status = rc;
        }
    }
    free(files);
    return status;
}
