/*
 * tandem_load.c -- `tandem-load`: the server load benchmark of issue 5
 * ("Speed and memory"). It starts `tandem serve --durability group` itself
 * (a fresh server and data directory per workload, so that peak RSS and CPU
 * time belong to one workload) and drives it with the C test client
 * (tests/client) from one event loop:
 *
 *   A fan-out     10 docs x 20 clients, each typing one character every
 *                 100 ms +-50%; send-to-receive latency of every delivery
 *   B throughput  1 doc, 2 writers (batches of 10 ops, <= 16 unacked each),
 *                 8 readers; ops/s delivered to every reader
 *   C idle        N connections (default 10,000) over 100 docs, each with a
 *                 presence entry; server RSS per connection, without and
 *                 with permessage-deflate (fewer connections for the latter:
 *                 the client's own zlib state would not fit 10,000 times)
 *   D reconnect   a client makes 1,000 single-character edits offline (as
 *                 1,000 batches, and as one); time from its reconnect until
 *                 an online peer holds all of them
 *
 * For each: latency percentiles, ops/s, server CPU seconds (utime+stime
 * from /proc/PID/stat) and peak RSS (VmHWM). Client and server share this
 * machine's cores, so the client's own work is part of every figure; the
 * readers of B keep no replica (they count batches) to keep that small.
 *
 *   tandem-load [--only A|B|C|D] [--seconds S] [--conns N] [--durability M]
 *               [--bin TANDEM] [--proto native|yjs] [--no-baseline]
 *               [--nodes N] [--nats NATS_SERVER]
 *
 * `--nodes N` runs workload A over N cluster nodes (1 too: one node with
 * --cluster) and one nats-server -js that it starts (load_cluster.c),
 * beside a single plain node.
 * `--proto yjs` runs the same workloads with light y-websocket clients
 * (load_yjs.c), each beside this file's native figure of the same run.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "load_cluster.h"
#include "load_metrics.h"
#include "load_type.h"
#include "load_yjs.h"
#include "td_client.h"
#include "td_rng.h"

#ifndef TD_LOAD_TANDEM_BIN
#define TD_LOAD_TANDEM_BIN "tandem"
#endif

static const char *g_bin = TD_LOAD_TANDEM_BIN;
static double g_seconds = -1; /* -1: each workload's default */
static int g_conns = 10000;
static const char *g_durability = "group";
static td_rng g_rng; /* seeded at random in main */
/* The figures of the native runs, for --proto yjs to print beside its own. */
static load_fig g_fig;
static double g_last_p50, g_last_p99; /* of the last lat_print */

static uint64_t rnd(void)
{
    return td_rng_next(&g_rng);
}

/* ---- latency samples -------------------------------------------------------------------- */

typedef struct lat {
    uint32_t *us;
    size_t n, cap;
} lat;

static void lat_add(lat *l, uint64_t us)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 65536;
        uint32_t *p = realloc(l->us, cap * sizeof *p);
        if (!p)
            return;
        l->us = p;
        l->cap = cap;
    }
    l->us[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void lat_print(const char *what, lat *l)
{
    g_last_p50 = g_last_p99 = 0;
    if (!l->n) {
        printf("  %-28s no samples\n", what);
        return;
    }
    qsort(l->us, l->n, sizeof l->us[0], cmp_u32);
#define PCT(p) (l->us[(size_t)((double)(l->n - 1) * (p))] / 1000.0)
    g_last_p50 = PCT(0.5);
    g_last_p99 = PCT(0.99);
    printf("  %-28s p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  (%zu samples)\n", what,
           PCT(0.5), PCT(0.9), PCT(0.99), l->us[l->n - 1] / 1000.0, l->n);
#undef PCT
}

static void lat_free(lat *l)
{
    free(l->us);
    memset(l, 0, sizeof *l);
}

/* ---- server ------------------------------------------------------------------------------- */

static int start_server(td_cli_server *s, const char *const *more)
{
    const char *args[16];
    int n = 0;
    args[n++] = "--durability";
    args[n++] = g_durability;
    args[n++] = "--log-level";
    args[n++] = "warn";
    args[n++] = "--deflate"; /* offered, so workload C can measure it too */
    args[n++] = "1";
    for (int i = 0; more && more[i] && n < 15; i++)
        args[n++] = more[i];
    args[n] = NULL;
    if (td_cli_server_start(s, g_bin, NULL, args, 30000) < 0) {
        fprintf(stderr, "tandem-load: cannot start `%s serve` (log: %s)\n", g_bin, s->log_path);
        td_cli_server_cleanup(s);
        return -1;
    }
    return 0;
}

static void server_figures(td_cli_server *s, double cpu0, double secs)
{
    double cpu = td_cli_proc_cpu_s(s->pid) - cpu0;
    printf("  server: %.2f CPU s over %.1f s (%.0f%% of a core), peak RSS %ld KiB\n", cpu, secs,
           secs > 0 ? 100.0 * cpu / secs : 0.0, td_cli_proc_hwm_kb(s->pid));
}

static void stop_server(td_cli_server *s)
{
    td_cli_server_stop(s, SIGTERM, 20000);
    td_cli_server_cleanup(s);
}

typedef struct conns_ready {
    td_cli_conn **c;
    td_cli_doc **d;
    size_t n;
} conns_ready;

static int all_ready(void *p)
{
    conns_ready *r = p;
    for (size_t i = 0; i < r->n; i++)
        if (td_cli_conn_state(r->c[i]) != TD_CLI_READY || (r->d && !td_cli_doc_synced(r->d[i])))
            return 0;
    return 1;
}

/* ---- A: fan-out ---------------------------------------------------------------------------- */

#define A_DOCS 10
#define A_PER 20
#define A_N (A_DOCS * A_PER)

typedef struct a_client {
    td_cli_conn *conn;
    td_cli_doc *doc;
    td_crdt_obj text;
    uint64_t agent;
    uint64_t next_us;
    load_typed sent;
    uint64_t seen[A_PER]; /* ops seen of each peer in the same doc */
    int idx;
} a_client;

static a_client *A;
static lat a_lat;
static uint64_t a_deliveries;

static void a_on_remote(td_cli_doc *d, const uint8_t *b, size_t len, void *ud)
{
    (void)b;
    (void)len;
    a_client *me = ud;
    uint64_t now = td_cli_now_us();
    int base = me->idx / A_PER * A_PER;
    td_crdt_doc *doc = td_cli_doc_crdt(d);
    for (int k = 0; k < A_PER; k++) {
        a_client *w = &A[base + k];
        if (w == me)
            continue;
        uint64_t have = td_crdt_vv_get(doc, w->agent);
        for (uint64_t s = me->seen[k]; s < have && s < w->sent.n; s++) {
            lat_add(&a_lat, now - w->sent.us[s]);
            a_deliveries++;
        }
        me->seen[k] = have;
    }
}

/* Batches per REMOTE message over the subscriptions ds[0..n): the server
 * puts every batch a connection has waiting into one REMOTE (one send), so
 * under load one send carries several (issue 14: "ops per send"). */
static void print_per_send(td_cli_doc **ds, int n)
{
    uint64_t msgs = 0, batches = 0;
    for (int i = 0; i < n; i++) {
        msgs += td_cli_doc_stats_get(ds[i])->remote_msgs;
        batches += td_cli_doc_stats_get(ds[i])->remote_batches;
    }
    if (msgs)
        printf("  REMOTE messages: %llu carrying %llu batches (%.2f batches per send)\n",
               (unsigned long long)msgs, (unsigned long long)batches,
               (double)batches / (double)msgs);
}

static int run_a(void)
{
    double secs = g_seconds > 0 ? g_seconds : 20;
    printf("A fan-out: %d docs x %d clients, 1 char every 100 ms +-50%%, %.0f s\n", A_DOCS, A_PER,
           secs);
    td_cli_server s;
    if (start_server(&s, NULL) < 0)
        return -1;
    td_cli_ctx *ctx = td_cli_ctx_new(NULL);
    A = calloc(A_N, sizeof *A);
    td_cli_conn *cs[A_N];
    td_cli_doc *ds[A_N];
    for (int i = 0; i < A_N; i++) {
        char id[32];
        snprintf(id, sizeof id, "fanout-%d", i / A_PER);
        td_cli_conn_opts o = {0};
        o.cb.on_remote = a_on_remote;
        o.cb.ud = &A[i];
        A[i].idx = i;
        A[i].conn = cs[i] = td_cli_connect(ctx, s.url, &o);
        A[i].doc = ds[i] = td_cli_subscribe(A[i].conn, id, NULL);
        A[i].agent = td_cli_agent(A[i].conn);
        td_crdt_root(td_cli_doc_crdt(A[i].doc), TD_CRDT_TEXT, "body", 4, &A[i].text);
    }
    conns_ready r = {cs, ds, A_N};
    if (!td_cli_wait(ctx, all_ready, &r, 30000)) {
        fprintf(stderr, "A: clients not ready\n");
        return -1;
    }
    uint64_t t0 = td_cli_now_us(), end = t0 + (uint64_t)(secs * 1e6);
    double cpu0 = td_cli_proc_cpu_s(s.pid);
    load_writes w0 = load_writes_of(&s);
    for (int i = 0; i < A_N; i++)
        A[i].next_us = t0 + 50000 + rnd() % 100000;
    uint64_t typed = 0;
    while (td_cli_now_us() < end) {
        uint64_t now = td_cli_now_us(), soonest = end;
        for (int i = 0; i < A_N; i++) {
            a_client *c = &A[i];
            if (c->next_us <= now) {
                typed += load_type_char(c->doc, c->text, &c->sent, &g_rng) == 0;
                c->next_us = now + 50000 + rnd() % 100001;
            }
            if (c->next_us < soonest)
                soonest = c->next_us;
        }
        now = td_cli_now_us();
        td_cli_service(ctx, load_wait_ms(soonest, now));
    }
    double elapsed = (double)(td_cli_now_us() - t0) / 1e6;
    /* drain: every op must reach the 19 others */
    uint64_t expect = typed * (A_PER - 1);
    for (uint64_t dl = td_cli_now_us() + 10000000; a_deliveries < expect && td_cli_now_us() < dl;)
        td_cli_service(ctx, 10);
    printf("  typed %llu ops (%.0f ops/s), deliveries %llu of %llu (%.0f/s)%s\n",
           (unsigned long long)typed, typed / elapsed, (unsigned long long)a_deliveries,
           (unsigned long long)expect, a_deliveries / elapsed,
           a_deliveries == expect ? "" : "  MISSING DELIVERIES");
    lat_print("send-to-receive latency", &a_lat);
    print_per_send(ds, A_N);
    load_print_writes(&s, w0);
    g_fig.a_p50_ms = g_last_p50;
    g_fig.a_p99_ms = g_last_p99;
    g_fig.a_deliv_s = a_deliveries / elapsed;
    server_figures(&s, cpu0, elapsed);
    td_cli_ctx_free(ctx);
    for (int i = 0; i < A_N; i++)
        load_typed_free(&A[i].sent);
    free(A);
    lat_free(&a_lat);
    stop_server(&s);
    return 0;
}

/* ---- S: the sweep of A's load ------------------------------------------------------------ */

/* A's 10 documents x 20 clients, the same offered load as A typing k times
 * faster, k growing until the p99 passes 50 ms (issue 14: single-character
 * deliveries per second). A client here keeps a whole replica, which
 * costs the load generator -- on the server's two cores -- more than the
 * server's work: so per document S_TYPERS clients keep one, type the
 * document's whole load between them and give the latency samples (each
 * sees the other's characters), and the other 18 are light readers (no
 * replica, reading about every S_LAZY_US, counting batches). The server's
 * work per delivered character is the same as in A. */
#define S_TYPERS 2
#define S_LAZY_US 50000
#define S_TICK_US 5000

typedef struct s_typer {
    td_cli_conn *conn;
    td_cli_doc *doc;
    td_crdt_obj text;
    uint64_t agent, next_us, seen;
    load_typed sent;
    struct s_typer *other;
} s_typer;

static lat s_lat;
static uint64_t s_seen;

static void s_on_remote(td_cli_doc *d, const uint8_t *b, size_t len, void *ud)
{
    (void)b;
    (void)len;
    s_typer *me = ud, *o = me->other;
    uint64_t now = td_cli_now_us(), have = td_crdt_vv_get(td_cli_doc_crdt(d), o->agent);
    for (uint64_t q = me->seen; q < have && q < o->sent.n; q++) {
        lat_add(&s_lat, now - o->sent.us[q]);
        s_seen++;
    }
    me->seen = have;
}

/* One step; returns the deliveries per second (0 on failure), the p99 in *p99. */
static double s_step(int k, double secs, double *p99, int *missing)
{
    td_cli_server s;
    td_cli_ctx_opts co = {0};
    co.max_fds = A_N + 100;
    s_typer ty[A_DOCS * S_TYPERS];
    td_cli_conn *cs[A_N];
    td_cli_doc *ds[A_N];
    double rate = 0;
    memset(ty, 0, sizeof ty);
    memset(&s_lat, 0, sizeof s_lat);
    s_seen = 0;
    *p99 = 0;
    *missing = 1;
    if (start_server(&s, NULL) < 0)
        return 0;
    td_cli_ctx *ctx = td_cli_ctx_new(&co);
    for (int i = 0; i < A_N; i++) {
        char id[32];
        int t = i % A_PER < S_TYPERS ? i / A_PER * S_TYPERS + i % A_PER : -1;
        snprintf(id, sizeof id, "fanout-%d", i / A_PER);
        td_cli_conn_opts o = {0};
        td_cli_doc_opts dopt = {0};
        if (t >= 0) {
            o.cb.on_remote = s_on_remote;
            o.cb.ud = &ty[t];
        } else {
            dopt.no_replica = 1;
        }
        cs[i] = td_cli_connect(ctx, s.url, &o);
        ds[i] = td_cli_subscribe(cs[i], id, &dopt);
        if (t >= 0) {
            ty[t].conn = cs[i];
            ty[t].doc = ds[i];
            ty[t].agent = td_cli_agent(cs[i]);
            ty[t].other = &ty[t ^ 1];
            td_crdt_root(td_cli_doc_crdt(ds[i]), TD_CRDT_TEXT, "body", 4, &ty[t].text);
        }
    }
    conns_ready r = {cs, ds, A_N};
    if (!td_cli_wait(ctx, all_ready, &r, 30000)) {
        fprintf(stderr, "S: clients not ready\n");
        goto out;
    }
    for (int i = 0; i < A_N; i++)
        if (i % A_PER >= S_TYPERS)
            td_cli_set_reading(cs[i], 0);
    /* the document's A load (A_PER chars every 100 ms) x k, over S_TYPERS */
    uint64_t interval = (uint64_t)100000 * S_TYPERS / A_PER / (uint64_t)k, half = interval / 2;
    uint64_t t0 = td_cli_now_us(), end = t0 + (uint64_t)(secs * 1e6), tick = t0, typed = 0;
    int slice = (A_N * S_TICK_US + S_LAZY_US - 1) / S_LAZY_US, cursor = 0;
    double cpu0 = td_cli_proc_cpu_s(s.pid);
    load_writes w0 = load_writes_of(&s);
    for (int t = 0; t < A_DOCS * S_TYPERS; t++)
        ty[t].next_us = t0 + half + rnd() % (interval + 1);
    while (td_cli_now_us() < end) {
        uint64_t now = td_cli_now_us(), soonest = end;
        int from = -1, to = -1;
        if (now >= tick) { /* the next slice of light readers reads once */
            from = cursor;
            to = cursor + slice < A_N ? cursor + slice : A_N;
            cursor = to < A_N ? to : 0;
            for (int i = from; i < to; i++)
                if (i % A_PER >= S_TYPERS)
                    td_cli_set_reading(cs[i], 1);
            tick = now + S_TICK_US;
        }
        for (int t = 0; t < A_DOCS * S_TYPERS; t++) {
            s_typer *c = &ty[t];
            if (c->next_us <= now) {
                typed += load_type_char(c->doc, c->text, &c->sent, &g_rng) == 0;
                c->next_us = now + half + rnd() % (interval + 1);
            }
            if (c->next_us < soonest)
                soonest = c->next_us;
        }
        if (tick < soonest)
            soonest = tick;
        now = td_cli_now_us();
        uint64_t wait = soonest > now ? soonest - now : 0;
        struct timespec ts = {0, (long)(wait < 1000 ? wait : 1000) * 1000};
        if (wait)
            nanosleep(&ts, NULL);
        td_cli_service(ctx, 0);
        for (int i = from; i >= 0 && i < to; i++)
            if (i % A_PER >= S_TYPERS)
                td_cli_set_reading(cs[i], 0);
    }
    double elapsed = (double)(td_cli_now_us() - t0) / 1e6;
    for (int i = 0; i < A_N; i++)
        td_cli_set_reading(cs[i], 1);
    uint64_t expect = typed * (A_PER - 1), got = 0;
    for (uint64_t dl = td_cli_now_us() + 10000000; td_cli_now_us() < dl;) {
        got = s_seen;
        for (int i = 0; i < A_N; i++)
            if (i % A_PER >= S_TYPERS)
                got += td_cli_doc_stats_get(ds[i])->remote_batches;
        if (got >= expect)
            break;
        td_cli_service(ctx, 10);
    }
    rate = got / elapsed;
    *missing = got < expect - expect / 100;
    printf("  typed %llu chars (%.0f/s), deliveries %llu of %llu (%.0f/s)%s\n",
           (unsigned long long)typed, typed / elapsed, (unsigned long long)got,
           (unsigned long long)expect, rate, got == expect ? "" : "  MISSING DELIVERIES");
    lat_print("send-to-receive latency", &s_lat);
    *p99 = g_last_p99;
    load_print_writes(&s, w0);
    server_figures(&s, cpu0, elapsed);
    if (got)
        printf("  server CPU per delivery %.2f us\n",
               (td_cli_proc_cpu_s(s.pid) - cpu0) / (double)got * 1e6);
out:
    td_cli_ctx_free(ctx);
    for (int t = 0; t < A_DOCS * S_TYPERS; t++)
        load_typed_free(&ty[t].sent);
    lat_free(&s_lat);
    stop_server(&s);
    return rate;
}

static int run_sweep(void)
{
    static const int ks[] = {1, 2, 3, 4, 6, 8, 12, 16, 20, 24, 28, 32, 40, 48, 64, 80, 96, 128};
    double secs = g_seconds > 0 ? g_seconds : 5, best = 0, best_p99 = 0;
    int best_k = 0;
    printf("A sweep, native: %d docs x %d clients, A's load x k (%d typers per doc with a "
           "replica, %d light readers reading every %d ms), %.0f s a step, until p99 > 50 ms\n",
           A_DOCS, A_PER, S_TYPERS, A_PER - S_TYPERS, S_LAZY_US / 1000, secs);
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        double p99;
        int missing;
        printf(" k=%d: offered %d chars/s, %d deliveries/s\n", ks[i], A_N * 10 * ks[i],
               A_N * 10 * ks[i] * (A_PER - 1));
        double rate = s_step(ks[i], secs, &p99, &missing);
        if (rate == 0 && i == 0)
            return -1;
        if (p99 > 50 || missing || rate == 0) {
            printf("  => highest load with p99 <= 50 ms: k=%d, %.0f deliveries/s (p99 %.3f ms); "
                   "k=%d: %.0f deliveries/s, p99 %.3f ms%s  [bar: >= 400,000/s]\n", best_k, best,
                   best_p99, ks[i], rate, p99, missing ? ", deliveries missing" : "");
            return 0;
        }
        best = rate;
        best_k = ks[i];
        best_p99 = p99;
    }
    printf("  => p99 never passed 50 ms up to k=%d: %.0f deliveries/s (p99 %.3f ms)  "
           "[bar: >= 400,000/s]\n", best_k, best, best_p99);
    return 0;
}

/* ---- B: throughput -------------------------------------------------------------------------- */

#define B_WRITERS 2
#define B_READERS 8
#define B_OPS 10
#define B_WINDOW 16

static lat b_ack;

static void b_on_ack(td_cli_doc *d, uint64_t id, uint64_t sent_us, void *ud)
{
    (void)d;
    (void)id;
    (void)ud;
    lat_add(&b_ack, td_cli_now_us() - sent_us);
}

static int run_b(void)
{
    double secs = g_seconds > 0 ? g_seconds : 10;
    printf("B throughput: 1 doc, %d writers (batches of %d ops, <= %d unacked), %d readers, "
           "%.0f s\n", B_WRITERS, B_OPS, B_WINDOW, B_READERS, secs);
    td_cli_server s;
    if (start_server(&s, NULL) < 0)
        return -1;
    td_cli_ctx *ctx = td_cli_ctx_new(NULL);
    td_cli_conn *cs[B_WRITERS + B_READERS];
    td_cli_doc *ds[B_WRITERS + B_READERS];
    td_crdt_obj text[B_WRITERS];
    for (int i = 0; i < B_WRITERS + B_READERS; i++) {
        td_cli_conn_opts o = {0};
        td_cli_doc_opts dopt = {0};
        if (i < B_WRITERS)
            o.cb.on_ack = b_on_ack;
        else
            dopt.no_replica = 1;
        cs[i] = td_cli_connect(ctx, s.url, &o);
        ds[i] = td_cli_subscribe(cs[i], "throughput", &dopt);
        if (i < B_WRITERS)
            td_crdt_root(td_cli_doc_crdt(ds[i]), TD_CRDT_TEXT, "body", 4, &text[i]);
    }
    conns_ready r = {cs, ds, B_WRITERS + B_READERS};
    if (!td_cli_wait(ctx, all_ready, &r, 30000)) {
        fprintf(stderr, "B: clients not ready\n");
        return -1;
    }
    uint64_t t0 = td_cli_now_us(), end = t0 + (uint64_t)(secs * 1e6);
    double cpu0 = td_cli_proc_cpu_s(s.pid);
    load_writes w0 = load_writes_of(&s);
    uint64_t sent = 0;
    while (td_cli_now_us() < end) {
        for (int w = 0; w < B_WRITERS; w++) {
            while (td_cli_unacked(ds[w]) < B_WINDOW) {
                td_crdt_doc *doc = td_cli_doc_crdt(ds[w]);
                size_t len = td_crdt_text_length(doc, text[w]);
                td_crdt_text_insert(doc, text[w], len, "0123456789", B_OPS);
                td_cli_commit(ds[w], NULL);
                sent++;
            }
        }
        td_cli_service(ctx, 1);
    }
    double elapsed = (double)(td_cli_now_us() - t0) / 1e6;
    uint64_t minb = UINT64_MAX, maxb = 0;
    for (int i = B_WRITERS; i < B_WRITERS + B_READERS; i++) {
        uint64_t b = td_cli_doc_stats_get(ds[i])->remote_batches;
        minb = b < minb ? b : minb;
        maxb = b > maxb ? b : maxb;
    }
    printf("  writers sent %llu batches (%.0f ops/s); each reader got %llu..%llu batches: "
           "%.0f..%.0f ops/s delivered to every reader (%.0f ops/s in total)\n",
           (unsigned long long)sent, sent * B_OPS / elapsed, (unsigned long long)minb,
           (unsigned long long)maxb, minb * B_OPS / elapsed, maxb * B_OPS / elapsed,
           (double)minb * B_OPS * B_READERS / elapsed);
    lat_print("UPDATE-to-ACK latency", &b_ack);
    print_per_send(ds + B_WRITERS, B_READERS);
    load_print_writes(&s, w0);
    g_fig.b_ops_s = minb * B_OPS / elapsed;
    server_figures(&s, cpu0, elapsed);
    td_cli_ctx_free(ctx);
    lat_free(&b_ack);
    stop_server(&s);
    return 0;
}

/* ---- C: idle connections ------------------------------------------------------------------- */

static int run_c_once(int n, int deflate)
{
    printf("C idle: %d connections over 100 docs, each with a presence entry, "
           "permessage-deflate %s\n", n, deflate ? "on" : "off");
    td_cli_server s;
    /* every connection comes from 127.0.0.1: lift the per-address cap
     * (default 256) and the total one (default 10,000, one short of N plus
     * the health check) */
    static const char *const more[] = {"--max-conns-per-ip", "1000000", "--max-conns", "1000000",
                                       NULL};
    if (start_server(&s, more) < 0)
        return -1;
    td_cli_ctx_opts co = {0};
    co.deflate = deflate;
    co.max_fds = n + 1000;
    co.rx_buffer = 4096;
    td_cli_ctx *ctx = td_cli_ctx_new(&co);
    if (!ctx)
        return -1;
    long rss0 = td_cli_proc_rss_kb(s.pid);
    double cpu0 = td_cli_proc_cpu_s(s.pid);
    uint64_t t0 = td_cli_now_us();
    td_cli_conn **cs = calloc((size_t)n, sizeof *cs);
    td_cli_doc **ds = calloc((size_t)n, sizeof *ds);
    int wave = 250, up = 0;
    td_cli_doc_opts dopt = {0};
    dopt.no_replica = 1;
    for (int i = 0; i < n; i += wave) {
        int m = i + wave <= n ? wave : n - i;
        for (int k = i; k < i + m; k++) {
            char id[32];
            snprintf(id, sizeof id, "idle-%d", k % 100);
            cs[k] = td_cli_connect(ctx, s.url, NULL);
            ds[k] = td_cli_subscribe(cs[k], id, &dopt);
        }
        conns_ready r = {cs + i, ds + i, (size_t)m};
        if (!td_cli_wait(ctx, all_ready, &r, 30000)) {
            fprintf(stderr, "C: connections %d..%d not ready\n", i, i + m);
            break;
        }
        for (int k = i; k < i + m; k++) {
            char st[48];
            int l = snprintf(st, sizeof st, "{\"cursor\":%d,\"sel\":[%d,%d]}", k, k, k + 3);
            td_cli_presence(ds[k], st, (size_t)l);
        }
        up += m;
    }
    /* let presence settle */
    td_cli_wait(ctx, NULL, NULL, 2000);
    long rss1 = td_cli_proc_rss_kb(s.pid);
    double elapsed = (double)(td_cli_now_us() - t0) / 1e6;
    printf("  %d connections up; server RSS %ld KiB before, %ld KiB after: %.2f KiB per "
           "connection\n", up, rss0, rss1, up ? (double)(rss1 - rss0) / up : 0.0);
    if (!deflate)
        g_fig.c_kib = up ? (double)(rss1 - rss0) / up : 0.0;
    server_figures(&s, cpu0, elapsed);
    td_cli_ctx_free(ctx);
    free(cs);
    free(ds);
    stop_server(&s);
    return 0;
}

static int run_c(void)
{
    int rc = run_c_once(g_conns, 0);
    int nd = g_conns < 2000 ? g_conns : 2000;
    return rc | run_c_once(nd, 1);
}

/* ---- D: reconnect -------------------------------------------------------------------------- */

typedef struct d_wait {
    td_cli_doc *peer;
    uint64_t agent, want;
} d_wait;

static int d_seen(void *p)
{
    d_wait *w = p;
    return td_crdt_vv_get(td_cli_doc_crdt(w->peer), w->agent) >= w->want;
}

static int is_closed(void *p)
{
    return td_cli_conn_state((td_cli_conn *)p) == TD_CLI_CLOSED;
}

static int run_d_once(td_cli_server *s, int one_batch, lat *l)
{
    td_cli_ctx *ctx = td_cli_ctx_new(NULL);
    td_cli_conn *ca = td_cli_connect(ctx, s->url, NULL), *cb = td_cli_connect(ctx, s->url, NULL);
    char id[32];
    snprintf(id, sizeof id, "reconnect-%llu", (unsigned long long)(rnd() % 1000000));
    td_cli_doc *a = td_cli_subscribe(ca, id, NULL), *b = td_cli_subscribe(cb, id, NULL);
    td_cli_conn *cs[2] = {ca, cb};
    td_cli_doc *ds[2] = {a, b};
    conns_ready r = {cs, ds, 2};
    if (!td_cli_wait(ctx, all_ready, &r, 10000))
        return -1;
    td_crdt_obj t;
    td_crdt_root(td_cli_doc_crdt(a), TD_CRDT_TEXT, "body", 4, &t);
    td_cli_close(ca);
    td_cli_wait(ctx, is_closed, ca, 5000);
    for (int i = 0; i < 1000; i++) {
        td_crdt_doc *doc = td_cli_doc_crdt(a);
        char ch = (char)('a' + i % 26);
        size_t len = td_crdt_text_length(doc, t);
        td_crdt_text_insert(doc, t, len ? rnd() % (len + 1) : 0, &ch, 1);
        if (!one_batch)
            td_cli_commit(a, NULL);
    }
    td_cli_commit(a, NULL);
    d_wait w = {b, td_cli_agent(ca), 1000};
    uint64_t t0 = td_cli_now_us();
    td_cli_reconnect(ca);
    int ok = td_cli_wait(ctx, d_seen, &w, 30000);
    lat_add(l, td_cli_now_us() - t0);
    td_cli_ctx_free(ctx);
    return ok ? 0 : -1;
}

static int run_d(void)
{
    int reps = g_seconds > 0 && g_seconds < 5 ? 3 : 10;
    printf("D reconnect: 1,000 single-character edits offline, then reconnect; time until an "
           "online peer has all (%d runs each)\n", reps);
    td_cli_server s;
    if (start_server(&s, NULL) < 0)
        return -1;
    double cpu0 = td_cli_proc_cpu_s(s.pid);
    uint64_t t0 = td_cli_now_us();
    lat many = {0}, one = {0};
    int rc = 0;
    for (int i = 0; i < reps; i++) {
        rc |= run_d_once(&s, 0, &many);
        rc |= run_d_once(&s, 1, &one);
    }
    lat_print("1,000 batches of 1 op", &many);
    g_fig.d_many_p50_ms = g_last_p50;
    lat_print("1 batch of 1,000 ops", &one);
    g_fig.d_one_p50_ms = g_last_p50;
    server_figures(&s, cpu0, (double)(td_cli_now_us() - t0) / 1e6);
    lat_free(&many);
    lat_free(&one);
    stop_server(&s);
    return rc;
}

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f, "usage: tandem-load [--only A|B|C|D|S] [--seconds S] [--conns N] [--durability M]\n"
               "                   [--bin TANDEM] [--proto native|yjs] [--no-baseline]\n"
               "                   [--nodes N] [--nats NATS_SERVER] [--bin-before TANDEM]\n"
               "  --only W      run one workload (default: all four; with --proto yjs\n"
               "                also S); S alone: the sweep of A's load up to p99 > 50 ms\n"
               "  --seconds S   duration of A and B (default 20 and 10; 5 a sweep step)\n"
               "  --conns N     connections of C (default 10000)\n"
               "  --durability M  the server's durability mode (default group, as the\n"
               "                issue asks; off/always to see what the fsync costs)\n"
               "  --bin PATH    the tandem binary (default %s)\n"
               "  --proto P     native (default) or yjs: light y-websocket clients at\n"
               "                /yjs/ROOM, each figure beside the native one of the run\n"
               "  --no-baseline with --proto yjs: skip the native runs; with --nodes:\n"
               "                skip the single-node run\n"
               "  --nodes N     workload A only, the clients of each document spread\n"
               "                round-robin over N `serve --cluster` nodes (N >= 1) and\n"
               "                one nats-server -js started here, beside one plain node\n"
               "                (without it: the workloads above, no cluster)\n"
               "  --bin-before PATH  with --nodes: first the cluster run with this\n"
               "                tandem binary, then with --bin's, in the same invocation\n"
               "  --nats PATH   the nats-server binary (default: found in PATH,\n"
               "                /usr/sbin, /usr/bin)\n",
            TD_LOAD_TANDEM_BIN);
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    int yjs = 0, baseline = 1, nodes = 0; /* 0: no --nodes, no cluster */
    const char *bin_before = NULL;
    const char *nats = NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--only") == 0 && v && strchr("ABCDS", v[0]) && !v[1]) {
            only = v, i++;
        } else if (strcmp(a, "--proto") == 0 && v &&
                   (strcmp(v, "native") == 0 || strcmp(v, "yjs") == 0)) {
            yjs = strcmp(v, "yjs") == 0, i++;
        } else if (strcmp(a, "--no-baseline") == 0) {
            baseline = 0;
        } else if (strcmp(a, "--seconds") == 0 && v && atof(v) > 0) {
            g_seconds = atof(v), i++;
        } else if (strcmp(a, "--conns") == 0 && v && atoi(v) > 0) {
            g_conns = atoi(v), i++;
        } else if (strcmp(a, "--durability") == 0 && v) {
            g_durability = v, i++;
        } else if (strcmp(a, "--nodes") == 0 && v && atoi(v) > 0) {
            nodes = atoi(v), i++;
        } else if (strcmp(a, "--nats") == 0 && v) {
            nats = v, i++;
        } else if (strcmp(a, "--bin") == 0 && v) {
            g_bin = v, i++;
        } else if (strcmp(a, "--bin-before") == 0 && v) {
            bin_before = v, i++;
        } else {
            usage(stderr);
            return 64;
        }
    }
    /* the server inherits our file limit: 10,000 connections need it */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    const char *help[] = {g_bin, "serve", "--help", NULL};
    char *out = NULL;
    int hrc = td_cli_run(help, &out, NULL);
    free(out);
    if (hrc != 0) {
        fprintf(stderr, "tandem-load: `%s serve --help` failed (exit %d): no server to load\n",
                g_bin, hrc);
        return 1;
    }
    td_rng_seed(&g_rng, td_cli_random64());
    if (nodes > 0) {
        if (yjs || (only && *only != 'A')) {
            fprintf(stderr, "tandem-load: --nodes runs workload A with the native protocol only\n");
            return 64;
        }
        load_cluster_cfg cc = {g_bin, bin_before, nats, g_durability, g_seconds, nodes, baseline,
                              &g_rng};
        return load_cluster_main(&cc) < 0 ? 1 : 0;
    }
    if (yjs) {
        load_cfg cfg = {g_bin, g_durability, g_seconds, g_conns, only, baseline, &g_rng};
        load_native nat = {run_a, run_b, run_c_once, run_d, &g_fig};
        return load_yjs_main(&cfg, &nat) < 0 ? 1 : 0;
    }
    int rc = 0;
    if (only && *only == 'S')
        return run_sweep() < 0 ? 1 : 0;
    if (!only || *only == 'A')
        rc |= run_a();
    if (!only || *only == 'B')
        rc |= run_b();
    if (!only || *only == 'C')
        rc |= run_c();
    if (!only || *only == 'D')
        rc |= run_d();
    return rc ? 1 : 0;
}
