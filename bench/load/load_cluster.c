/*
 * load_cluster.c -- `tandem-load --nodes N` (load_cluster.h; issue 15,
 * "Speed"). Workload A of tandem_load.c (10 docs x 20 clients, each typing
 * one character every 100 ms +-50%), run twice in one invocation:
 *
 *   1. on one plain `tandem serve` (no --cluster): the baseline;
 *   2. on N `tandem serve --cluster nats://... --cluster-node nI` nodes and
 *      one `nats-server -js` (its store in a fresh temporary directory, on a
 *      free loopback port; replicas 1, the only choice with one broker),
 *      client k of every document on node k % N.
 *
 * Every node runs with the same --durability (default group: an ACK waits
 * for the node's group fsync and for JetStream's publish acknowledgement,
 * which nats-server gives once the message is in its file store).
 *
 * A delivery is one op of a writer seen by one other client of its
 * document; it is "cross-node" when the two clients are on different nodes.
 * Figures: p50/p99 of both kinds, deliveries/s, CPU seconds of each process
 * (utime+stime from /proc), their sum per delivery beside the single
 * node's, and peak RSS (VmHWM) of each process. Client, nodes and broker
 * share this machine's cores.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "load_cluster.h"
#include "load_type.h"
#include "td_client.h"

#define MAX_NODES 8
#define A_DOCS 10
#define A_PER 20
#define A_N (A_DOCS * A_PER)

static const load_cluster_cfg *g_cfg;
static const char *g_bin; /* the binary of the run under way */

static uint64_t rnd(void)
{
    return td_rng_next(g_cfg->rng);
}

/* ---- latency samples ---------------------------------------------------------------- */

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

/* Sorts and prints; returns p99 in ms (0 without samples). */
static double lat_print(const char *what, lat *l)
{
    if (!l->n) {
        printf("    %-26s no samples\n", what);
        return 0;
    }
    qsort(l->us, l->n, sizeof l->us[0], cmp_u32);
#define PCT(p) (l->us[(size_t)((double)(l->n - 1) * (p))] / 1000.0)
    printf("    %-26s p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  (%zu samples)\n", what,
           PCT(0.5), PCT(0.9), PCT(0.99), l->us[l->n - 1] / 1000.0, l->n);
    double p99 = PCT(0.99);
#undef PCT
    return p99;
}

static void lat_free(lat *l)
{
    free(l->us);
    memset(l, 0, sizeof *l);
}

/* ---- the broker ------------------------------------------------------------------------ */

static char g_nats_bin[512];
static char g_nats_dir[300];
static char g_nats_url[64];
static pid_t g_nats_pid = -1;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static int find_nats(void)
{
    if (g_cfg->nats) {
        snprintf(g_nats_bin, sizeof g_nats_bin, "%s", g_cfg->nats);
        return access(g_nats_bin, X_OK) == 0 ? 0 : -1;
    }
    const char *path = getenv("PATH");
    char buf[4096];
    snprintf(buf, sizeof buf, "%s:/usr/sbin:/usr/bin:/usr/local/bin", path ? path : "");
    for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(g_nats_bin, sizeof g_nats_bin, "%s/nats-server", *d ? d : ".");
        if (access(g_nats_bin, X_OK) == 0)
            return 0;
    }
    snprintf(g_nats_bin, sizeof g_nats_bin, "nats-server");
    return -1;
}

static void broker_stop(void)
{
    if (g_nats_pid > 0) {
        kill(g_nats_pid, SIGTERM);
        for (int i = 0; i < 200; i++) {
            if (waitpid(g_nats_pid, NULL, WNOHANG) == g_nats_pid) {
                g_nats_pid = -1;
                break;
            }
            sleep_ms(25);
        }
        if (g_nats_pid > 0) {
            kill(g_nats_pid, SIGKILL);
            waitpid(g_nats_pid, NULL, 0);
            g_nats_pid = -1;
        }
    }
    if (g_nats_dir[0]) {
        td_cli_rm_rf(g_nats_dir);
        g_nats_dir[0] = 0;
    }
}

static int broker_start(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(g_nats_dir, sizeof g_nats_dir, "%s/tandem-load-nats-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_nats_dir)) {
        perror("tandem-load: mkdtemp");
        g_nats_dir[0] = 0;
        return -1;
    }
    int port = td_cli_free_port();
    char ports[16], log[400];
    snprintf(ports, sizeof ports, "%d", port);
    snprintf(log, sizeof log, "%s/nats.log", g_nats_dir);
    pid_t parent = getpid();
    g_nats_pid = fork();
    if (g_nats_pid < 0)
        return -1;
    if (g_nats_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(125);
        if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr))
            _exit(126);
        execl(g_nats_bin, g_nats_bin, "-js", "-a", "127.0.0.1", "-p", ports, "-sd", g_nats_dir,
              (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 400 && !port_open(port); i++) {
        int st;
        if (waitpid(g_nats_pid, &st, WNOHANG) == g_nats_pid) {
            g_nats_pid = -1;
            fprintf(stderr, "tandem-load: %s exited at start (log %s)\n", g_nats_bin, log);
            return -1;
        }
        sleep_ms(25);
    }
    if (!port_open(port)) {
        fprintf(stderr, "tandem-load: %s did not listen on %d within 10 s\n", g_nats_bin, port);
        return -1;
    }
    snprintf(g_nats_url, sizeof g_nats_url, "nats://127.0.0.1:%d", port);
    return 0;
}

/* ---- the nodes -------------------------------------------------------------------------- */

static int node_start(td_cli_server *s, int cluster, int i)
{
    char name[32];
    snprintf(name, sizeof name, "load%d", i + 1);
    const char *args[16];
    int n = 0;
    args[n++] = "--durability";
    args[n++] = g_cfg->durability;
    args[n++] = "--log-level";
    args[n++] = "warn";
    args[n++] = "--deflate";
    args[n++] = "1";
    if (cluster) {
        args[n++] = "--cluster";
        args[n++] = g_nats_url;
        args[n++] = "--cluster-node";
        args[n++] = name;
    }
    args[n] = NULL;
    if (td_cli_server_start(s, g_bin, NULL, args, 30000) < 0) {
        fprintf(stderr, "tandem-load: cannot start `%s serve`%s (log: %s)\n", g_bin,
                cluster ? " --cluster" : "", s->log_path);
        td_cli_server_cleanup(s);
        return -1;
    }
    return 0;
}

static void node_stop(td_cli_server *s)
{
    td_cli_server_stop(s, SIGTERM, 20000);
    td_cli_server_cleanup(s);
}

/* ---- workload A over N nodes ------------------------------------------------------------ */

typedef struct a_client {
    td_cli_conn *conn;
    td_cli_doc *doc;
    td_crdt_obj text;
    uint64_t agent;
    uint64_t next_us;
    load_typed sent;
    uint64_t seen[A_PER];
    int idx, node;
} a_client;

static a_client *A;
static lat a_same, a_cross;
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
        lat *l = w->node == me->node ? &a_same : &a_cross;
        for (uint64_t s = me->seen[k]; s < have && s < w->sent.n; s++) {
            lat_add(l, now - w->sent.us[s]);
            a_deliveries++;
        }
        me->seen[k] = have;
    }
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
        if (td_cli_conn_state(r->c[i]) != TD_CLI_READY || !td_cli_doc_synced(r->d[i]))
            return 0;
    return 1;
}

typedef struct a_result {
    int ok;
    double deliv_s, cpu_total, cpu_per_deliv_us;
    double p99_same, p99_cross, p50_cross;
} a_result;

/* One histogram of a node's /metrics: its count, mean, and the bucket
 * bounds its p50 and p99 lie under (-1: not in the body, e.g. an older
 * binary). */
typedef struct hist_sum {
    double count, sum, p50, p99, under1ms;
} hist_sum;

static hist_sum hist_of(const char *body, const char *name)
{
    hist_sum h = {-1, -1, -1, -1, -1};
    double le[32], cum[32];
    int nb = 0;
    size_t nl = strlen(name);
    for (const char *line = body; line && *line;) {
        const char *next = strchr(line, '\n');
        if (strncmp(line, name, nl) == 0) {
            const char *rest = line + nl, *sp = strchr(rest, ' ');
            if (sp && strncmp(rest, "_bucket{le=\"", 12) == 0 && nb < 32) {
                le[nb] = strncmp(rest + 12, "+Inf", 4) == 0 ? 1e9 : strtod(rest + 12, NULL);
                cum[nb++] = strtod(sp + 1, NULL);
            } else if (sp && strncmp(rest, "_count ", 7) == 0) {
                h.count = strtod(sp + 1, NULL);
            } else if (sp && strncmp(rest, "_sum ", 5) == 0) {
                h.sum = strtod(sp + 1, NULL);
            }
        }
        line = next ? next + 1 : NULL;
    }
    if (h.count <= 0 || !nb)
        return h;
    for (int i = nb - 1; i >= 0; i--) {
        if (cum[i] >= 0.5 * h.count)
            h.p50 = le[i];
        if (cum[i] >= 0.99 * h.count)
            h.p99 = le[i];
        if (le[i] == 0.001)
            h.under1ms = cum[i];
    }
    return h;
}

/* Where node k's time went, from its histograms: store append, JetStream
 * publish to its acknowledgement, receive to broadcast (a batch of its own
 * clients: the wait for that acknowledgement), and how long it held other
 * nodes' batches between applying and broadcasting them (a batch waits only
 * for a pending local batch it may build on). Silent for what a node lacks
 * (an older binary). */
static void print_hists(const td_cli_server *s, int k)
{
    static const struct {
        const char *name, *what;
    } hs[] = {
        {"tandem_store_append_seconds", "store append"},
        {"tandem_cluster_publish_seconds", "publish -> JetStream ack"},
        {"tandem_receive_to_broadcast_seconds", "receive -> broadcast"},
    };
    char *body = NULL;
    if (td_cli_http_get("127.0.0.1", s->port, "/metrics", NULL, &body, NULL) != 200 || !body) {
        free(body);
        return;
    }
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) {
        hist_sum h = hist_of(body, hs[i].name);
        if (h.count > 0)
            printf("    node %d: %-26s mean %.3f ms, p50 <= %g ms, p99 <= %g ms (%.0f)\n", k + 1,
                   hs[i].what, 1000.0 * h.sum / h.count, 1000.0 * h.p50, 1000.0 * h.p99,
                   h.count);
    }
    hist_sum h = hist_of(body, "tandem_cluster_remote_hold_seconds");
    if (h.count > 0 && h.under1ms >= 0)
        printf("    node %d: %.0f other nodes' batches broadcast ahead of their local write, "
               "%.1f%% within 1 ms of their apply, mean hold %.3f ms\n", k + 1, h.count,
               100.0 * h.under1ms / h.count, 1000.0 * h.sum / h.count);
    free(body);
}

/* nodes == 0: one plain node (no --cluster, no broker); else `nodes`
 * cluster nodes and the broker. */
static int run_a_nodes(int nodes, a_result *res)
{
    int cluster = nodes > 0;
    if (!cluster)
        nodes = 1;
    double secs = g_cfg->seconds > 0 ? g_cfg->seconds : 20;
    memset(res, 0, sizeof *res);
    if (cluster)
        printf("  %d cluster node%s + nats-server -js (replicas 1), client k of each doc on node "
               "k %% %d, --durability %s, %.0f s%s%s\n", nodes, nodes > 1 ? "s" : "", nodes,
               g_cfg->durability, secs, g_cfg->bin_before ? ", " : "",
               g_cfg->bin_before ? g_bin : "");
    else
        printf("  single node, no --cluster (baseline), --durability %s, %.0f s\n",
               g_cfg->durability, secs);
    if (cluster && broker_start() < 0) {
        broker_stop();
        return -1;
    }
    td_cli_server s[MAX_NODES];
    int up = 0;
    for (; up < nodes; up++)
        if (node_start(&s[up], cluster, up) < 0)
            break;
    int rc = -1;
    td_cli_ctx *ctx = NULL;
    if (up < nodes)
        goto out;
    ctx = td_cli_ctx_new(NULL);
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
        A[i].node = (i % A_PER) % nodes;
        A[i].conn = cs[i] = td_cli_connect(ctx, s[A[i].node].url, &o);
        A[i].doc = ds[i] = td_cli_subscribe(A[i].conn, id, NULL);
        A[i].agent = td_cli_agent(A[i].conn);
        td_crdt_root(td_cli_doc_crdt(A[i].doc), TD_CRDT_TEXT, "body", 4, &A[i].text);
    }
    conns_ready r = {cs, ds, A_N};
    if (!td_cli_wait(ctx, all_ready, &r, 30000)) {
        fprintf(stderr, "tandem-load: A: clients not ready\n");
        goto out;
    }
    /* let every node's consumers of the ten subjects settle */
    td_cli_wait(ctx, NULL, NULL, cluster ? 1000 : 200);
    double cpu0[MAX_NODES], ncpu0 = cluster ? td_cli_proc_cpu_s(g_nats_pid) : 0;
    for (int k = 0; k < nodes; k++)
        cpu0[k] = td_cli_proc_cpu_s(s[k].pid);
    uint64_t t0 = td_cli_now_us(), end = t0 + (uint64_t)(secs * 1e6);
    for (int i = 0; i < A_N; i++)
        A[i].next_us = t0 + 50000 + rnd() % 100000;
    uint64_t typed = 0;
    while (td_cli_now_us() < end) {
        uint64_t now = td_cli_now_us(), soonest = end;
        for (int i = 0; i < A_N; i++) {
            a_client *c = &A[i];
            if (c->next_us <= now) {
                typed += load_type_char(c->doc, c->text, &c->sent, g_cfg->rng) == 0;
                c->next_us = now + 50000 + rnd() % 100001;
            }
            if (c->next_us < soonest)
                soonest = c->next_us;
        }
        now = td_cli_now_us();
        td_cli_service(ctx, load_wait_ms(soonest, now));
    }
    double elapsed = (double)(td_cli_now_us() - t0) / 1e6;
    uint64_t expect = typed * (A_PER - 1);
    for (uint64_t dl = td_cli_now_us() + 10000000; a_deliveries < expect && td_cli_now_us() < dl;)
        td_cli_service(ctx, 10);
    /* CPU up to the end of the drain: the work of every delivery counted */
    double cpu[MAX_NODES], ncpu = cluster ? td_cli_proc_cpu_s(g_nats_pid) - ncpu0 : 0, sum = ncpu;
    for (int k = 0; k < nodes; k++)
        sum += cpu[k] = td_cli_proc_cpu_s(s[k].pid) - cpu0[k];
    printf("    typed %llu ops (%.0f ops/s), deliveries %llu of %llu (%.0f/s)%s\n",
           (unsigned long long)typed, typed / elapsed, (unsigned long long)a_deliveries,
           (unsigned long long)expect, a_deliveries / elapsed,
           a_deliveries == expect ? "" : "  MISSING DELIVERIES");
    if (cluster) {
        res->p99_same = lat_print("same-node latency", &a_same);
        res->p99_cross = lat_print("cross-node latency", &a_cross);
        if (a_cross.n)
            res->p50_cross = a_cross.us[(a_cross.n - 1) / 2] / 1000.0; /* sorted by lat_print */
    } else {
        res->p99_same = res->p99_cross = lat_print("send-to-receive latency", &a_same);
    }
    for (int k = 0; k < nodes; k++)
        printf("    node %d: %.2f CPU s (%.0f%% of a core), peak RSS %ld KiB\n", k + 1, cpu[k],
               100.0 * cpu[k] / elapsed, td_cli_proc_hwm_kb(s[k].pid));
    if (cluster)
        printf("    nats-server: %.2f CPU s (%.0f%% of a core), peak RSS %ld KiB\n", ncpu,
               100.0 * ncpu / elapsed, td_cli_proc_hwm_kb(g_nats_pid));
    if (cluster)
        for (int k = 0; k < nodes; k++)
            print_hists(&s[k], k);
    res->deliv_s = a_deliveries / elapsed;
    res->cpu_total = sum;
    res->cpu_per_deliv_us = a_deliveries ? sum * 1e6 / (double)a_deliveries : 0;
    printf("    server CPU in all: %.2f s = %.2f us per delivery\n", sum, res->cpu_per_deliv_us);
    res->ok = a_deliveries == expect;
    rc = res->ok ? 0 : -1;
out:
    if (ctx)
        td_cli_ctx_free(ctx);
    if (A)
        for (int i = 0; i < A_N; i++)
            load_typed_free(&A[i].sent);
    free(A);
    A = NULL;
    a_deliveries = 0;
    lat_free(&a_same);
    lat_free(&a_cross);
    for (int k = 0; k < up; k++)
        node_stop(&s[k]);
    if (cluster)
        broker_stop();
    return rc;
}

int load_cluster_main(const load_cluster_cfg *cfg)
{
    g_cfg = cfg;
    if (cfg->nodes < 1 || cfg->nodes > MAX_NODES) {
        fprintf(stderr, "tandem-load: --nodes must be 1..%d\n", MAX_NODES);
        return -1;
    }
    if (find_nats() < 0) {
        fprintf(stderr,
                "tandem-load: --nodes %d needs nats-server (JetStream), and `%s` is not an "
                "executable: install Debian's nats-server or pass --nats PATH\n",
                cfg->nodes, g_nats_bin);
        return -1;
    }
    printf("A fan-out over %d nodes: %d docs x %d clients, 1 char every 100 ms +-50%%; broker %s\n",
           cfg->nodes, A_DOCS, A_PER, g_nats_bin);
    a_result one = {0}, before = {0}, many = {0};
    int rc = 0;
    g_bin = cfg->bin;
    if (cfg->baseline)
        rc |= run_a_nodes(0, &one);
    if (cfg->bin_before) {
        g_bin = cfg->bin_before;
        rc |= run_a_nodes(cfg->nodes, &before);
        g_bin = cfg->bin;
    }
    rc |= run_a_nodes(cfg->nodes, &many);
    printf("  summary (%d nodes vs 1):\n", cfg->nodes);
    if (cfg->baseline)
        printf("    single node:  p99 %.3f ms, %.0f deliveries/s, %.2f us server CPU per delivery\n",
               one.p99_same, one.deliv_s, one.cpu_per_deliv_us);
    for (int k = cfg->bin_before ? 0 : 1; k < 2; k++) {
        const a_result *r = k ? &many : &before;
        printf("    %d node%s%s: p99 same-node %.3f ms, ", cfg->nodes, cfg->nodes > 1 ? "s" : "",
               !cfg->bin_before ? "" : k ? " (after) " : " (before)", r->p99_same);
        if (cfg->nodes > 1)
            printf("cross-node p50 %.3f ms p99 %.3f ms (bar 5 ms: %s), ", r->p50_cross,
                   r->p99_cross, r->p99_cross <= 5.0 ? "met" : "NOT met");
        else
            printf("no cross-node deliveries, ");
        printf("%.0f deliveries/s, %.2f us CPU per delivery (nodes + nats-server)", r->deliv_s,
               r->cpu_per_deliv_us);
        if (cfg->baseline && one.cpu_per_deliv_us > 0)
            printf(", %+.2f us (x%.2f) vs single node",
                   r->cpu_per_deliv_us - one.cpu_per_deliv_us,
                   r->cpu_per_deliv_us / one.cpu_per_deliv_us);
        printf("\n");
    }
    return rc;
}
