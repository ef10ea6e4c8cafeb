/*
 * test_cluster_converge.c -- bars 1 and 5 of issue 15: three `tandem serve
 * --cluster` nodes on one JetStream broker, the clients of two documents
 * spread over all of them, random concurrent text, list and map edits with
 * the C client. Afterwards every client and every node's GET /docs/{id}
 * agree, and a fourth node started with an empty data directory serves the
 * same content, read from JetStream alone. That node then unloads the
 * documents (no subscriber for --doc-idle) while the others keep editing,
 * and loads them again: it reads on from where it stopped, and agrees
 * again. Last, a batch sent to one node on top of an op another node has
 * not yet passed on waits for it and is ACKed (PROTOCOL.md section 12).
 *
 * Concurrency comes from editing several rounds without servicing the event
 * loop in between (as integration_convergence does), so clients commit on
 * top of states that miss each other's latest batches -- here also those of
 * the other nodes.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "cl_util.h"

#define NNODES 3
#define NCLIENTS 6 /* client c on node c % NNODES */
#define NDOCS 2

static const char *const doc_ids[NDOCS] = {"cl-conv-a", "team/cl conv b \xc3\xbc"};

/* Every node's copy of every document equals the first client's replica. */
static void check_nodes(td_cli_server **nodes, int n, td_cli_doc **docs, const char *when)
{
    for (int d = 0; d < NDOCS; d++) {
        char *client = td_cli_doc_json(docs[d * NCLIENTS]);
        CHECK(client != NULL);
        for (int k = 0; k < n; k++) {
            char *json = NULL;
            /* A node's copy may trail its last broadcast by a loop turn. */
            for (int tries = 0; tries < 50; tries++) {
                free(json);
                json = cl_doc_json(nodes[k], doc_ids[d]);
                if (it_json_equal(json, client))
                    break;
                td_cli_wait(it_ctx(), NULL, NULL, 100);
            }
            CHECK_MSG(it_json_equal(json, client),
                      "%s: node %d's copy of %s differs:\nnode   %.400s\nclient %.400s", when, k,
                      doc_ids[d], json ? json : "(no answer)", client);
            free(json);
        }
        printf("%s: %s identical on %d nodes and the clients (%zu bytes of JSON)\n", when,
               doc_ids[d], n, strlen(client));
        free(client);
    }
}

int main(int argc, char **argv)
{
    cl_init(argc, argv, "cluster_converge");
    td_cli_server *nodes[NNODES + 1];
    static const char *const names[NNODES + 1] = {"n1", "n2", "n3", "n4"};
    for (int k = 0; k < NNODES; k++)
        nodes[k] = cl_node(names[k]);
    td_cli_ctx *ctx = it_ctx();

    td_cli_conn *conns[NCLIENTS];
    td_cli_doc *docs[NDOCS * NCLIENTS]; /* docs[d * NCLIENTS + c] */
    for (int c = 0; c < NCLIENTS; c++) {
        conns[c] = td_cli_connect(ctx, nodes[c % NNODES]->url, NULL);
        CHECK(conns[c] != NULL);
        for (int d = 0; d < NDOCS; d++)
            CHECK((docs[d * NCLIENTS + c] = td_cli_subscribe(conns[c], doc_ids[d], NULL)));
    }
    for (int c = 0; c < NCLIENTS; c++)
        CHECK_MSG(it_wait_ready(conns[c], 10000), "client %d not ready (state %d, close %d)", c,
                  td_cli_conn_state(conns[c]), td_cli_close_code(conns[c]));
    CHECK(it_wait_docs_synced(docs, NDOCS * NCLIENTS, 10000));

    int rounds = it_n(300, 40);
    uint64_t batches = 0;
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < NDOCS * NCLIENTS; i++) {
            if (it_below(3) == 0)
                continue;
            it_random_edits(td_cli_doc_crdt(docs[i]), 1 + (int)it_below(4));
            uint64_t id;
            CHECK(td_cli_commit(docs[i], &id) == 0);
            batches += id != 0;
        }
        if (it_below(4) == 0)
            td_cli_service(ctx, 0);
        if (r % 50 == 49)
            td_cli_wait(ctx, NULL, NULL, 5);
    }
    printf("%d rounds, %llu batches committed over %d nodes\n", rounds,
           (unsigned long long)batches, NNODES);

    for (int d = 0; d < NDOCS; d++)
        CHECK_MSG(it_wait_converged(&docs[d * NCLIENTS], NCLIENTS, 30000),
                  "replicas of %s did not converge across the nodes", doc_ids[d]);
    for (int c = 0; c < NCLIENTS; c++) {
        const td_cli_stats *st = td_cli_conn_stats(conns[c]);
        uint64_t errs = 0;
        for (int k = 0; k < TD_CLI_NCODES; k++)
            errs += st->errors[k];
        CHECK_MSG(errs == 0, "client %d got %llu ERRORs", c, (unsigned long long)errs);
    }
    check_nodes(nodes, NNODES, docs, "three nodes");
    /* Batches were broadcast before their local write (the early broadcast,
     * docs/CLUSTER.md: other nodes' at once, a node's own once JetStream
     * acknowledged them), so the agreement above covers that path; a batch
     * goes ahead of its write at most once. */
    double early_all = 0;
    for (int k = 0; k < NNODES; k++) {
        double dl = it_metric(nodes[k], "tandem_cluster_deliveries_total");
        double pub = it_metric(nodes[k], "tandem_cluster_published_total");
        double early = it_metric(nodes[k], "tandem_cluster_early_broadcasts_total");
        printf("node %d: %.0f batches published, %.0f deliveries from other nodes (%.0f "
               "batches broadcast ahead of their local write)\n", k, pub, dl, early);
        CHECK_MSG(dl > 0 && pub > 0, "node %d: no cross-node traffic in its metrics", k);
        CHECK_MSG(early >= 0 && early <= dl + pub,
                  "node %d: %.0f early broadcasts of %.0f + %.0f batches", k, early, dl, pub);
        early_all += early;
        double lag = it_metric(nodes[k], "tandem_cluster_consumer_lag");
        CHECK_MSG(lag == 0, "node %d: consumer lag %.0f after convergence", k, lag);
    }
    CHECK_MSG(early_all > 0, "no batch of another node was broadcast ahead of its append");

    /* Bar 5: a node that never saw the documents, with an empty data
     * directory, reads them from JetStream when a client subscribes. */
    const char *extra[10];
    const char *const *a = cl_node_args(names[NNODES]);
    int na = 0;
    while (a[na]) {
        extra[na] = a[na];
        na++;
    }
    extra[na++] = "--doc-idle";
    extra[na++] = "1s";
    extra[na] = NULL;
    nodes[NNODES] = it_server(extra);
    td_cli_conn *fresh = td_cli_connect(ctx, nodes[NNODES]->url, NULL);
    CHECK(fresh != NULL);
    for (int d = 0; d < NDOCS; d++) {
        td_cli_doc *fd = td_cli_subscribe(fresh, doc_ids[d], NULL);
        CHECK(fd != NULL);
        td_cli_doc *pair[2] = {docs[d * NCLIENTS], fd};
        CHECK_MSG(it_wait_converged(pair, 2, 30000),
                  "a client of the fresh node does not see %s as the others do", doc_ids[d]);
    }
    check_nodes(nodes, NNODES + 1, docs, "with a fresh fourth node");

    /* Node 4 unloads them; edits go on elsewhere; it loads them again. */
    double unloads = it_metric(nodes[NNODES], "tandem_document_unloads_total");
    double got0 = it_metric(nodes[NNODES], "tandem_cluster_received_total");
    td_cli_conn_free(fresh);
    for (int i = 0; i < 40 && it_metric(nodes[NNODES], "tandem_document_unloads_total") <
                                  unloads + NDOCS;
         i++) {
        for (int k = 0; k < NDOCS * NCLIENTS; k += 2) {
            it_random_edits(td_cli_doc_crdt(docs[k]), 2);
            CHECK(td_cli_commit(docs[k], NULL) == 0);
        }
        td_cli_wait(ctx, NULL, NULL, 100);
    }
    CHECK_MSG(it_metric(nodes[NNODES], "tandem_document_unloads_total") >= unloads + NDOCS,
              "node 4 did not unload the documents");
    for (int d = 0; d < NDOCS; d++)
        CHECK(it_wait_converged(&docs[d * NCLIENTS], NCLIENTS, 30000));
    fresh = td_cli_connect(ctx, nodes[NNODES]->url, NULL);
    CHECK(fresh != NULL);
    for (int d = 0; d < NDOCS; d++) {
        td_cli_doc *fd = td_cli_subscribe(fresh, doc_ids[d], NULL);
        CHECK(fd != NULL);
        td_cli_doc *pair[2] = {docs[d * NCLIENTS], fd};
        CHECK_MSG(it_wait_converged(pair, 2, 30000),
                  "after a reload, node 4 does not serve %s as the others do", doc_ids[d]);
    }
    check_nodes(nodes, NNODES + 1, docs, "after node 4 unloaded and reloaded");
    /* It read on from where it stopped, not the whole subjects again. */
    double got1 = it_metric(nodes[NNODES], "tandem_cluster_received_total");
    printf("node 4 received %.0f batches at its first load, %.0f after reloading\n", got0,
           got1 - got0);
    CHECK_MSG(got1 - got0 < got0, "node 4 read the subjects from the start again");

    /* A batch sent to node 2 on top of an op that node 1 has but node 2 has
     * not got from the stream yet waits for it there (PROTOCOL.md section
     * 12), and is ACKed once the op arrives from JetStream. */
    static const char DEF[] = "cl-deferred";
    td_cli_conn *g1 = it_raw_connect(nodes[0], NULL, 0), *g2 = it_raw_connect(nodes[1], NULL, 0);
    td_crdt_doc *p = it_replica(td_cli_random64()), *q = it_replica(td_cli_random64());
    it_raw_subscribe(g1, DEF, p);
    it_raw_subscribe(g2, DEF, q);
    it_text_append(p, "from node 1");
    size_t lp, lq;
    uint8_t *bp = it_commit(p, &lp);
    CHECK(td_crdt_apply(q, bp, lp, NULL) == TD_CRDT_OK);
    it_text_append(q, ", then node 2");
    uint8_t *bq = it_commit(q, &lq);
    double deferred0 = it_metric(nodes[1], "tandem_batches_deferred_total");
    it_raw_send_update(g1, DEF, 1, bp, lp);
    it_raw_send_update(g2, DEF, 1, bq, lq);
    uint64_t bid = 0;
    int rc1 = it_raw_answer(g1, DEF, &bid, 10000);
    int rc2 = it_raw_answer(g2, DEF, &bid, 10000);
    double deferred = it_metric(nodes[1], "tandem_batches_deferred_total") - deferred0;
    printf("a batch on top of another node's op: answers %d and %d, %.0f deferred on node 2\n",
           rc1, rc2, deferred);
    CHECK_MSG(rc1 == 0 && rc2 == 0, "answers %d and %d, not two ACKs", rc1, rc2);
    char *want = NULL;
    size_t wl = 0;
    CHECK(td_crdt_to_json(q, &want, &wl) == TD_CRDT_OK);
    for (int k = 0; k < 2; k++) { /* the two nodes that hold it */
        char *json = NULL;
        for (int tries = 0; tries < 50; tries++) {
            free(json);
            json = cl_doc_json(nodes[k], DEF);
            if (json && it_json_equal(json, want))
                break;
            td_cli_wait(ctx, NULL, NULL, 20);
        }
        CHECK_MSG(json && it_json_equal(json, want), "node %d has %s, not %s", k + 1,
                  json ? json : "nothing", want);
        free(json);
    }
    td_crdt_buf_free(q, want);
    free(bp);
    free(bq);
    td_crdt_doc_free(p);
    td_crdt_doc_free(q);
    td_cli_conn_free(g1);
    td_cli_conn_free(g2);
    it_pass();
}
