/*
 * test_cluster_brokers.c -- bar 3 of issue 15: a broker dies under a write
 * load.
 *
 * Three nats-server -js processes form one JetStream cluster (routes; the
 * test waits for a meta leader with all three peers current), and three
 * `tandem serve --cluster` nodes list all three brokers with
 * `--cluster-replicas 3`, so the stream TANDEM is replicated on every broker
 * and a publish is acknowledged once two of them hold it. Six clients of one
 * document, two per node, commit batches as fast as the loop turns; every
 * batch inserts a marker unique to it into the list "log" (beside random
 * text, list and map edits), so a node's copy says which batches it holds.
 *
 * Each round SIGKILLs one broker in the middle of the load (round 1 the
 * stream's leader, then the others, so each broker dies once) and keeps the
 * load going while it is down: batches must still be acknowledged then, on
 * every node (writes continue with two brokers of three), and every batch
 * acknowledged before the kill must be on every node while the broker is
 * still down. Then the broker restarts on its store, and the round waits
 * until it is back in the cluster: every peer current in the meta group and
 * in the stream, its copy of the stream at least as long as the stream was
 * when it restarted. At the end: no batch unacknowledged, every replica and
 * every node's GET /docs/{id} identical, every acknowledged batch's marker in
 * it exactly once, and a fourth node started with an empty data directory
 * reads the same from JetStream alone (so the brokers hold every
 * acknowledged batch, not only the nodes' stores).
 *
 * Before that end, every broker is SIGKILLed at once (all_brokers_down):
 * the default --cluster-outage refuse acknowledges nothing then, reads go
 * on, and writes resume when the brokers return.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cl_util.h"

#define NBROKERS 3
#define NNODES 3
#define NCLIENTS 6 /* client c on node c % NNODES */
#define DOC "cl-brokers"
#define STREAM "TANDEM"
#define MAX_MARKS 200000

typedef struct mark {
    int client;
    uint64_t batch_id;
    int acked;
    uint64_t acked_us; /* when its ACK came */
    uint64_t committed_us;
    int must;          /* acknowledged before the last kill: every node has it */
} mark;

static mark g_marks[MAX_MARKS];
static int g_nmarks;
/* g_by[c][b]: the mark of client c's batch b (batch ids count from 1) */
static int g_by[NCLIENTS][MAX_MARKS / NCLIENTS + 1];

typedef struct client {
    int idx;
    td_cli_conn *conn;
    td_cli_doc *doc;
    int seq;
    uint64_t last_try_us;
} client;

static client g_clients[NCLIENTS];

static void on_ack(td_cli_doc *d, uint64_t batch_id, uint64_t sent_us, void *ud)
{
    (void)sent_us, (void)ud;
    for (int c = 0; c < NCLIENTS; c++)
        if (g_clients[c].doc == d && batch_id >= 1 && batch_id <= (uint64_t)g_clients[c].seq) {
            mark *m = &g_marks[g_by[c][batch_id]];
            if (!m->acked)
                m->acked_us = td_cli_now_us();
            m->acked = 1;
        }
}

static void marker(int i, char *out, size_t cap)
{
    snprintf(out, cap, "c%d-b%llu", g_marks[i].client, (unsigned long long)g_marks[i].batch_id);
}

/* One batch of client c: its marker in "log", and a few random edits. */
static void commit_one(client *c)
{
    td_crdt_doc *doc = td_cli_doc_crdt(c->doc);
    td_crdt_obj log;
    CHECK(td_crdt_root(doc, TD_CRDT_LIST, "log", 3, &log) == TD_CRDT_OK);
    CHECK(g_nmarks < MAX_MARKS);
    int i = g_nmarks;
    /* td_client numbers a document's batches 1, 2, ...: the next one is
     * known before the commit, so the marker can name it. */
    CHECK(c->seq + 1 <= MAX_MARKS / NCLIENTS);
    g_marks[i] = (mark){c->idx, (uint64_t)++c->seq, 0, 0, td_cli_now_us(), 0};
    g_by[c->idx][c->seq] = i;
    char m[48];
    marker(i, m, sizeof m);
    td_crdt_value v = {.type = TD_CRDT_V_STR};
    v.u.str.ptr = m;
    v.u.str.len = strlen(m);
    size_t len = td_crdt_list_length(doc, log);
    CHECK(td_crdt_list_insert(doc, log, it_below((uint32_t)len + 1), &v, 1) == TD_CRDT_OK);
    if (it_below(2))
        it_random_edits(doc, 1 + (int)it_below(2));
    uint64_t id = 0;
    CHECK(td_cli_commit(c->doc, &id) == 0);
    CHECK_MSG(id == g_marks[i].batch_id, "client %d: batch id %llu, expected %llu", c->idx,
              (unsigned long long)id, (unsigned long long)g_marks[i].batch_id);
    g_nmarks++;
}

/* Reconnects the clients whose connection ended (at most every 100 ms):
 * the nodes do not die here, but a client must not be the weak link. */
static void revive(void)
{
    uint64_t now = td_cli_now_us();
    for (int c = 0; c < NCLIENTS; c++) {
        client *k = &g_clients[c];
        if (td_cli_conn_state(k->conn) != TD_CLI_CLOSED || now - k->last_try_us < 100000)
            continue;
        k->last_try_us = now;
        td_cli_reconnect(k->conn);
    }
}

/* ms of load: each client commits a batch about every 20 ms. */
static void load(int ms)
{
    uint64_t end = td_cli_now_us() + (uint64_t)ms * 1000u;
    while (td_cli_now_us() < end) {
        for (int c = 0; c < NCLIENTS; c++)
            commit_one(&g_clients[c]);
        revive();
        td_cli_wait(it_ctx(), NULL, NULL, 20);
    }
}

/* The number of times each marker occurs in a node's "log", by mark. */
static int count_marks(const char *json, int *counts)
{
    memset(counts, 0, sizeof(int) * (size_t)(g_nmarks ? g_nmarks : 1));
    cJSON *root = cJSON_Parse(json);
    if (!root)
        return -1;
    cJSON *log = cJSON_GetObjectItemCaseSensitive(root, "log"), *e;
    cJSON_ArrayForEach(e, log)
    {
        int c;
        unsigned long long b;
        if (cJSON_IsString(e) && sscanf(e->valuestring, "c%d-b%llu", &c, &b) == 2 && c >= 0 &&
            c < NCLIENTS && b >= 1 && b <= (unsigned long long)g_clients[c].seq)
            counts[g_by[c][b]]++;
    }
    cJSON_Delete(root);
    return 0;
}

/* 1 if node s holds every mark with `must` (with want_all: every acked
 * mark exactly once), none twice; *missing gets one that is not so. */
static int node_has(td_cli_server *s, int want_all, int *counts, int *missing)
{
    char *json = cl_doc_json(s, DOC);
    int ok = json && count_marks(json, counts) == 0;
    free(json);
    *missing = -1;
    for (int i = 0; ok && i < g_nmarks; i++) {
        int need = want_all ? g_marks[i].acked : g_marks[i].must;
        if ((need && counts[i] != 1) || counts[i] > 1) {
            *missing = i;
            ok = 0;
        }
    }
    return ok;
}

/* Every node in nodes[0..n) holds what node_has asks, within 15 s. */
static void check_nodes(td_cli_server **nodes, int n, int want_all, const char *when)
{
    int *counts = malloc(sizeof(int) * MAX_MARKS);
    CHECK(counts != NULL);
    for (int k = 0; k < n; k++) {
        int missing = -1, ok = 0;
        for (int tries = 0; tries < 150 && !ok; tries++) {
            ok = node_has(nodes[k], want_all, counts, &missing);
            if (!ok)
                td_cli_wait(it_ctx(), NULL, NULL, 100);
        }
        char m[48] = "";
        if (!ok)
            printf("node %d: received %.0f, deliveries %.0f, published %.0f, publish failures "
                   "%.0f, broker up %.0f\n",
                   k, it_metric(nodes[k], "tandem_cluster_received_total"),
                   it_metric(nodes[k], "tandem_cluster_deliveries_total"),
                   it_metric(nodes[k], "tandem_cluster_published_total"),
                   it_metric(nodes[k], "tandem_cluster_publish_failures_total"),
                   it_metric(nodes[k], "tandem_cluster_broker_up"));
        if (missing >= 0)
            marker(missing, m, sizeof m);
        CHECK_MSG(ok, "%s: node %d lacks acknowledged batch %s (or holds it %d times)", when, k,
                  m, missing >= 0 ? counts[missing] : -1);
    }
    free(counts);
}

static int all_ready(void *arg)
{
    (void)arg;
    revive();
    for (int c = 0; c < NCLIENTS; c++)
        if (!td_cli_doc_synced(g_clients[c].doc) ||
            td_cli_conn_state(g_clients[c].conn) != TD_CLI_READY)
            return 0;
    return 1;
}

/* Batches of node k's clients acknowledged within [from, to). */
static int acked_between(int k, uint64_t from, uint64_t to)
{
    int n = 0;
    for (int i = 0; i < g_nmarks; i++)
        if (g_marks[i].acked && g_marks[i].client % NNODES == k && g_marks[i].acked_us >= from &&
            g_marks[i].acked_us < to)
            n++;
    return n;
}

/* The first ACK of node k's clients at or after `from`, in ms after it (-1 if
 * none). */
static double first_ack_ms(int k, uint64_t from)
{
    uint64_t best = 0;
    for (int i = 0; i < g_nmarks; i++)
        if (g_marks[i].acked && g_marks[i].client % NNODES == k && g_marks[i].acked_us >= from &&
            (!best || g_marks[i].acked_us < best))
            best = g_marks[i].acked_us;
    return best ? (double)(best - from) / 1e3 : -1;
}

static uint64_t g_t0;
static double secs(void)
{
    return (double)(td_cli_now_us() - g_t0) / 1e6;
}

static long long stream_last_seq(void)
{
    long long best = -1;
    for (int b = 0; b < NBROKERS; b++) {
        long long s = cl_broker_stream_last_seq(b, STREAM);
        if (s > best)
            best = s;
    }
    return best;
}

static int healthz(td_cli_server *s)
{
    return td_cli_http_get("127.0.0.1", s->port, "/healthz", NULL, NULL, NULL);
}

/* Under load for up to timeout_ms: 1 once every node's /healthz answers
 * `want`. */
static int healthz_all(td_cli_server **nodes, int want, int timeout_ms)
{
    uint64_t end = td_cli_now_us() + (uint64_t)timeout_ms * 1000u;
    for (;;) {
        int ok = 1;
        for (int k = 0; k < NNODES; k++)
            ok &= healthz(nodes[k]) == want;
        if (ok || td_cli_now_us() >= end)
            return ok;
        load(100);
    }
}

/* Every broker down at once, under the load, with the default
 * --cluster-outage refuse: every node says so on /healthz (503), no batch
 * committed after the kill is acknowledged (nothing can reach a quorum), and
 * reads go on: each node still serves what was acknowledged. Then the
 * brokers restart on their stores, the cluster forms again, and every node
 * acknowledges new batches; the refused ones are retried by their clients
 * (the end of main checks that every batch was acknowledged, once). */
static void all_brokers_down(td_cli_server **nodes)
{
    int acked = 0;
    for (int i = 0; i < g_nmarks; i++)
        acked += g_marks[i].must = g_marks[i].acked;
    uint64_t t_kill = td_cli_now_us();
    for (int b = 0; b < NBROKERS; b++)
        cl_broker_kill_at(b);
    printf("%5.1f s  all %d brokers SIGKILLed with %d of %d batches acknowledged\n", secs(),
           NBROKERS, acked, g_nmarks);
    CHECK_MSG(healthz_all(nodes, 503, 15000),
              "15 s after every broker died, a node's /healthz still is not 503");
    printf("%5.1f s  every node's /healthz is 503\n", secs());
    load(1500);
    int committed = 0, wrongly = 0;
    for (int i = 0; i < g_nmarks; i++)
        if (g_marks[i].committed_us >= t_kill) {
            committed++;
            wrongly += g_marks[i].acked;
        }
    CHECK_MSG(committed > 0, "no batch was committed while every broker was down");
    CHECK_MSG(wrongly == 0,
              "%d of the %d batches committed with every broker down were acknowledged "
              "(refuse mode: nothing is acknowledged without a quorum)",
              wrongly, committed);
    check_nodes(nodes, NNODES, 0, "every broker down");
    printf("%5.1f s  with every broker down: %d batches committed, none acknowledged; every "
           "node still serves the %d acknowledged before\n",
           secs(), committed, acked);

    uint64_t t_restart = td_cli_now_us();
    for (int b = 0; b < NBROKERS; b++)
        cl_broker_restart_at(b);
    int back = 0;
    while (!back && td_cli_now_us() - t_restart < 40000000u) {
        load(100);
        back = cl_brokers_ready(STREAM, NBROKERS, 0);
    }
    CHECK_MSG(back, "the brokers did not form a cluster with the stream again within 40 s");
    CHECK_MSG(healthz_all(nodes, 200, 20000),
              "20 s after the brokers returned, a node's /healthz still is not 200");
    /* every node acknowledges batches committed from now on */
    uint64_t t_back = td_cli_now_us();
    int after[NNODES] = {0}, ok = 0;
    while (!ok && td_cli_now_us() - t_back < 20000000u) {
        load(100);
        memset(after, 0, sizeof after);
        for (int i = 0; i < g_nmarks; i++)
            if (g_marks[i].committed_us >= t_back)
                after[g_marks[i].client % NNODES] += g_marks[i].acked;
        ok = 1;
        for (int k = 0; k < NNODES; k++)
            ok &= after[k] >= 20;
    }
    CHECK_MSG(ok, "after the brokers returned, nodes acknowledge too little (%d, %d, %d batches)",
              after[0], after[1], after[2]);
    printf("%5.1f s  the brokers are back (%.1f s after the restart): /healthz 200 on every node, "
           "and each acknowledges new batches again\n",
           secs(), (double)(t_back - t_restart) / 1e6);
}

int main(int argc, char **argv)
{
    uint64_t t_start = g_t0 = td_cli_now_us();
    cl_init_brokers(argc, argv, "cluster_brokers", NBROKERS);
    static const char *const names[NNODES] = {"r1", "r2", "r3"};
    td_cli_server *nodes[NNODES];
    for (int k = 0; k < NNODES; k++)
        nodes[k] = cl_brokers_node(names[k], NBROKERS);
    td_cli_ctx *ctx = it_ctx();
    td_cli_conn_opts o = {0};
    o.cb.on_ack = on_ack;
    for (int c = 0; c < NCLIENTS; c++) {
        g_clients[c].idx = c;
        CHECK((g_clients[c].conn = td_cli_connect(ctx, nodes[c % NNODES]->url, &o)) != NULL);
        CHECK((g_clients[c].doc = td_cli_subscribe(g_clients[c].conn, DOC, NULL)) != NULL);
    }
    CHECK_MSG(td_cli_wait(ctx, all_ready, NULL, 15000), "the clients did not all sync");
    CHECK_MSG(cl_brokers_ready(STREAM, NBROKERS, 20000),
              "the stream %s is not on all %d brokers with a leader", STREAM, NBROKERS);

    int rounds = NBROKERS, killed[NBROKERS] = {0};
    int total_outage = 0, outage_ms_max = 0;
    for (int r = 0; r < rounds; r++) {
        load(it_n(700, 400));
        /* Round 1 kills the stream's leader (JetStream then elects another
         * one, which stops every write for its election timeout, 4 to 9
         * s); the next ones a follower, one not killed yet if possible. */
        int lead = cl_stream_leader(STREAM), v = r == 0 ? lead : -1;
        for (int pass = 0; v < 0 && pass < 2; pass++)
            for (int b = 0; v < 0 && b < NBROKERS; b++)
                if (b != lead && (pass || !killed[b]))
                    v = b;
        CHECK(v >= 0);
        killed[v] = 1;
        int conns = cl_broker_conns(v);
        /* What is acknowledged now must survive the kill. */
        int acked = 0, first_after = g_nmarks;
        for (int i = 0; i < g_nmarks; i++)
            acked += g_marks[i].must = g_marks[i].acked;
        uint64_t t_kill = td_cli_now_us();
        cl_broker_kill_at(v);
        printf("%5.1f s  round %d: broker %s SIGKILLed (%sthe stream's leader, %d client "
               "connections) with %d of %d batches acknowledged\n",
               secs(), r + 1, cl_broker_name(v), v == lead ? "" : "not ", conns, acked, g_nmarks);
        /* Writes go on with two brokers of three: keep the broker down
         * until every node has acknowledged batches committed after the
         * kill (at least 2 s, at most 20 s). */
        int after[NNODES], ok = 0;
        uint64_t elapsed = 0;
        while (!ok || elapsed < 2000000u) {
            CHECK_MSG(elapsed < 20000000u,
                      "round %d: 20 s after broker %s's death, node(s) still acknowledge "
                      "nothing new (%d, %d, %d batches): writes do not continue with 2 of 3 "
                      "brokers",
                      r + 1, cl_broker_name(v), after[0], after[1], after[2]);
            load(100);
            memset(after, 0, sizeof after);
            for (int i = first_after; i < g_nmarks; i++)
                after[g_marks[i].client % NNODES] += g_marks[i].acked;
            ok = 1;
            for (int k = 0; k < NNODES; k++)
                ok &= after[k] >= 20;
            elapsed = td_cli_now_us() - t_kill;
        }
        uint64_t t_now = td_cli_now_us();
        int during = 0;
        for (int k = 0; k < NNODES; k++) {
            int a = acked_between(k, t_kill, t_now);
            during += a;
            printf("%5.1f s  round %d: node %d acknowledged %d batches while %s was down (%d of "
                   "them committed after the kill), the first %.0f ms after the kill\n",
                   secs(), r + 1, k, a, cl_broker_name(v), after[k], first_ack_ms(k, t_kill));
        }
        total_outage += during;
        if ((int)(elapsed / 1000) > outage_ms_max)
            outage_ms_max = (int)(elapsed / 1000);
        /* Still down: every node holds what was acknowledged before the
         * kill and, through the two brokers left, what any node
         * acknowledged since. */
        int so_far = 0;
        for (int i = 0; i < g_nmarks; i++)
            so_far += g_marks[i].must = g_marks[i].acked;
        check_nodes(nodes, NNODES, 0, "broker down");
        printf("%5.1f s  round %d: with %s still down, every node holds the %d batches "
               "acknowledged before the kill and the %d acknowledged since (%.1f s after the "
               "kill)\n",
               secs(), r + 1, cl_broker_name(v), acked, so_far - acked,
               (double)(td_cli_now_us() - t_kill) / 1e6);
        long long seq = stream_last_seq();
        uint64_t t_restart = td_cli_now_us();
        cl_broker_restart_at(v);
        /* Back in the cluster: the meta group and the stream's replicas
         * current, and its copy of the stream has what was written while
         * it was away. The load goes on meanwhile. */
        int back = 0;
        while (!back && td_cli_now_us() - t_restart < 30000000u) {
            load(100);
            back = cl_brokers_ready(STREAM, NBROKERS, 0) &&
                   cl_broker_stream_last_seq(v, STREAM) >= seq;
        }
        CHECK_MSG(back, "round %d: broker %s did not rejoin the cluster within 30 s", r + 1,
                  cl_broker_name(v));
        printf("%5.1f s  round %d: broker %s restarted and rejoined in %.1f s (its stream copy at "
               "sequence >= %lld)\n",
               secs(), r + 1, cl_broker_name(v), (double)(td_cli_now_us() - t_restart) / 1e6, seq);
    }
    all_brokers_down(nodes);
    load(it_n(500, 300));
    printf("%5.1f s  end of the load\n", secs());

    /* Quiet: everything is acknowledged, everyone agrees. */
    CHECK_MSG(td_cli_wait(ctx, all_ready, NULL, 15000), "the clients did not all reconnect");
    td_cli_doc *docs[NCLIENTS];
    for (int c = 0; c < NCLIENTS; c++)
        docs[c] = g_clients[c].doc;
    printf("%5.1f s  the clients are ready\n", secs());
    CHECK_MSG(it_wait_converged(docs, NCLIENTS, 30000), "the replicas did not converge");
    printf("%5.1f s  the clients converged\n", secs());
    int acked = 0;
    for (int i = 0; i < g_nmarks; i++)
        acked += g_marks[i].acked;
    CHECK_MSG(acked == g_nmarks, "%d of %d batches acknowledged", acked, g_nmarks);
    check_nodes(nodes, NNODES, 1, "at the end");
    char *client = td_cli_doc_json(docs[0]);
    for (int k = 0; k < NNODES; k++) {
        char *json = cl_doc_json(nodes[k], DOC);
        CHECK_MSG(it_json_equal(json, client), "node %d differs from the clients:\n%.300s\n%.300s",
                  k, json ? json : "(none)", client ? client : "(none)");
        free(json);
    }

    printf("%5.1f s  every node and client agree\n", secs());
    /* A node with an empty data directory reads the document from JetStream
     * alone: the brokers hold every acknowledged batch. */
    td_cli_server *fresh = cl_brokers_node("r4", NBROKERS);
    td_cli_conn *fc = td_cli_connect(ctx, fresh->url, NULL);
    CHECK(fc != NULL);
    td_cli_doc *fd = td_cli_subscribe(fc, DOC, NULL);
    CHECK(fd != NULL && it_wait_docs_synced(&fd, 1, 15000));
    check_nodes(&fresh, 1, 1, "a fresh node");
    int same = 0;
    for (int t = 0; t < 100 && !same; t++) {
        char *json = cl_doc_json(fresh, DOC);
        same = it_json_equal(json, client);
        free(json);
        if (!same)
            td_cli_wait(ctx, NULL, NULL, 100);
    }
    CHECK_MSG(same, "a node with an empty data directory differs from the clients");
    printf("%d rounds, one broker of %d SIGKILLed in each (for up to %d ms): %d batches "
           "acknowledged while a broker was down; all %d batches acknowledged, each exactly once on all %d "
           "nodes, the %d clients and a fresh node reading JetStream (%.1f s)\n",
           rounds, NBROKERS, outage_ms_max, total_outage, g_nmarks, NNODES, NCLIENTS,
           (double)(td_cli_now_us() - t_start) / 1e6);
    free(client);
    it_pass();
}
