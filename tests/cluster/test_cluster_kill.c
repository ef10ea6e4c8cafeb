/*
 * test_cluster_kill.c -- bar 2 of issue 15: a node dies under a write load.
 *
 * Three `tandem serve --cluster` nodes on one JetStream broker; six clients
 * of one document reach them through three proxies (the load balancer), two
 * per node, and commit batches as fast as the loop turns. Every batch
 * inserts a marker unique to it into the list "log" (beside random text,
 * list and map edits), so a node's copy says which batches it holds.
 *
 * Each round SIGKILLs one node in the middle of the load; its proxy sends
 * new connections to another node, and its clients reconnect there and
 * resend what was not acknowledged (td_client does, as PROTOCOL.md section
 * 5 says). Then every batch any node acknowledged before the kill must be
 * on every surviving node. The node is restarted on its data directory and
 * gets its clients back; it resumes the subject where its store says it
 * stopped (from the second round on, it must read well under the half of
 * the stream it would read from the start). At the end: no batch
 * unacknowledged, every replica and every node's GET /docs/{id} identical,
 * and every acknowledged batch's marker in it exactly once.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cl_util.h"

#define NNODES 3
#define NCLIENTS 6 /* client c behind proxy c % NNODES */
#define DOC "cl-kill"
#define MAX_MARKS 200000

typedef struct mark {
    int client;
    uint64_t batch_id;
    int acked;
    int must; /* acknowledged before the last kill: every survivor has it */
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
        if (g_clients[c].doc == d && batch_id >= 1 && batch_id <= (uint64_t)g_clients[c].seq)
            g_marks[g_by[c][batch_id]].acked = 1;
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
    g_marks[i] = (mark){c->idx, (uint64_t)++c->seq, 0, 0};
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

/* Reconnects the clients whose connection ended (at most every 100 ms). */
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

/* ms of load: each client commits a batch about every 10 ms. */
static void load(int ms)
{
    uint64_t end = td_cli_now_us() + (uint64_t)ms * 1000u;
    while (td_cli_now_us() < end) {
        for (int c = 0; c < NCLIENTS; c++)
            commit_one(&g_clients[c]);
        revive();
        td_cli_wait(it_ctx(), NULL, NULL, 10);
    }
}

/* The number of times each marker occurs in a node's "log", by mark. */
static int count_marks(const char *json, int *counts)
{
    memset(counts, 0, sizeof(int) * (size_t)g_nmarks);
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
 * mark exactly once); *missing gets one that is not. */
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

static void check_survivors(td_cli_server **nodes, int dead, int want_all, const char *when)
{
    int *counts = malloc(sizeof(int) * (size_t)(g_nmarks ? g_nmarks : 1));
    CHECK(counts != NULL);
    for (int k = 0; k < NNODES; k++) {
        if (k == dead)
            continue;
        int missing = -1, ok = 0;
        for (int tries = 0; tries < 100 && !ok; tries++) {
            ok = node_has(nodes[k], want_all, counts, &missing);
            if (!ok)
                td_cli_wait(it_ctx(), NULL, NULL, 100);
        }
        char m[48] = "";
        if (!ok)
            printf("node %d: received %.0f, deliveries %.0f, published %.0f, loads %.0f\n", k,
                   it_metric(nodes[k], "tandem_cluster_received_total"),
                   it_metric(nodes[k], "tandem_cluster_deliveries_total"),
                   it_metric(nodes[k], "tandem_cluster_published_total"),
                   it_metric(nodes[k], "tandem_document_loads_total"));
        if (missing >= 0)
            marker(missing, m, sizeof m);
        CHECK_MSG(ok, "%s: node %d lacks acknowledged batch %s (or holds it %d times)", when, k,
                  m, missing >= 0 ? counts[missing] : -1);
    }
    free(counts);
}

static uint64_t welcomes(int c)
{
    return td_cli_conn_stats(g_clients[c].conn)->by_type[TD_CLI_WELCOME];
}

/* Every client synced on a live connection; with arg, one that came after
 * the WELCOMEs counted there (the clients whose connection a proxy
 * dropped, with 0 for the others). */
static int all_ready(void *arg)
{
    const uint64_t *old = arg;
    revive();
    for (int c = 0; c < NCLIENTS; c++)
        if (!td_cli_doc_synced(g_clients[c].doc) ||
            td_cli_conn_state(g_clients[c].conn) != TD_CLI_READY ||
            (old && old[c] && welcomes(c) < old[c]))
            return 0;
    return 1;
}

int main(int argc, char **argv)
{
    cl_init(argc, argv, "cluster_kill");
    static const char *const names[NNODES] = {"k1", "k2", "k3"};
    td_cli_server *nodes[NNODES];
    cl_proxy *proxies[NNODES];
    for (int k = 0; k < NNODES; k++) {
        nodes[k] = cl_node(names[k]);
        proxies[k] = cl_proxy_new(nodes[k]->port);
    }
    td_cli_ctx *ctx = it_ctx();
    td_cli_conn_opts o = {0};
    o.cb.on_ack = on_ack;
    for (int c = 0; c < NCLIENTS; c++) {
        char url[64];
        snprintf(url, sizeof url, "ws://127.0.0.1:%d/", cl_proxy_port(proxies[c % NNODES]));
        g_clients[c].idx = c;
        CHECK((g_clients[c].conn = td_cli_connect(ctx, url, &o)) != NULL);
        CHECK((g_clients[c].doc = td_cli_subscribe(g_clients[c].conn, DOC, NULL)) != NULL);
    }
    CHECK_MSG(td_cli_wait(ctx, all_ready, NULL, 15000), "the clients did not all sync");

    int rounds = it_n(10, 4);
    for (int r = 0; r < rounds; r++) {
        int v = r % NNODES, to = (v + 1) % NNODES;
        load(it_n(800, 300));
        /* What is acknowledged now must survive the kill. */
        int acked = 0;
        for (int i = 0; i < g_nmarks; i++)
            acked += g_marks[i].must = g_marks[i].acked;
        CHECK(td_cli_server_stop(nodes[v], SIGKILL, 0) != -1);
        cl_proxy_retarget(proxies[v], nodes[to]->port, 1);
        printf("round %d: node %d SIGKILLed with %d of %d batches acknowledged; its clients go "
               "to node %d\n",
               r + 1, v, acked, g_nmarks, to);
        load(it_n(800, 300));
        check_survivors(nodes, v, 0, "after the kill");
        printf("round %d: both survivors hold all %d batches acknowledged before the kill\n",
               r + 1, acked);
        CHECK_MSG(td_cli_server_restart(nodes[v], cl_node_args(names[v]), 30000) == 0,
                  "node %d did not restart", v);
        uint64_t old[NCLIENTS] = {0};
        for (int c = v; c < NCLIENTS; c += NNODES)
            old[c] = welcomes(c) + 1;
        cl_proxy_retarget(proxies[v], nodes[v]->port, 1);
        CHECK_MSG(td_cli_wait(ctx, all_ready, old, 15000),
                  "the clients of node %d did not come back to it", v);
        /* Its store's stream position: it reads what it missed, not the
         * subject from its start (every batch so far, under the node's new
         * name all of them another node's). */
        td_cli_wait(ctx, NULL, NULL, 1000);
        double rx = it_metric(nodes[v], "tandem_cluster_received_total");
        printf("round %d: node %d restarted and read %.0f batches of the %d in the stream\n",
               r + 1, v, rx, g_nmarks);
        CHECK_MSG(r == 0 || rx < 0.5 * g_nmarks,
                  "node %d read %.0f of %d batches after its restart: it did not resume from "
                  "its stored stream position", v, rx, g_nmarks);
    }

    /* Quiet: everything is acknowledged, everyone agrees. */
    CHECK_MSG(td_cli_wait(ctx, all_ready, NULL, 15000), "the clients did not all reconnect");
    td_cli_doc *docs[NCLIENTS];
    for (int c = 0; c < NCLIENTS; c++)
        docs[c] = g_clients[c].doc;
    CHECK_MSG(it_wait_converged(docs, NCLIENTS, 30000), "the replicas did not converge");
    int acked = 0;
    for (int i = 0; i < g_nmarks; i++)
        acked += g_marks[i].acked;
    CHECK_MSG(acked == g_nmarks, "%d of %d batches acknowledged", acked, g_nmarks);
    check_survivors(nodes, -1, 1, "at the end");
    char *client = td_cli_doc_json(docs[0]);
    for (int k = 0; k < NNODES; k++) {
        char *json = cl_doc_json(nodes[k], DOC);
        CHECK_MSG(it_json_equal(json, client), "node %d differs from the clients:\n%.300s\n%.300s",
                  k, json ? json : "(none)", client ? client : "(none)");
        free(json);
    }
    printf("%d rounds: all %d batches acknowledged, each exactly once on all %d nodes and the "
           "%d clients\n",
           rounds, g_nmarks, NNODES, NCLIENTS);
    free(client);
    for (int k = 0; k < NNODES; k++)
        cl_proxy_free(proxies[k]);
    it_pass();
}
