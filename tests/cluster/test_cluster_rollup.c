/*
 * test_cluster_rollup.c -- issue 15: "Compaction publishes a snapshot as a
 * rollup, so a node that loads a document it has never seen reads the
 * snapshot and the tail from JetStream".
 *
 * Nodes unload idle documents after 400 ms. 1) A client on node 1 writes
 * 30 batches and leaves: node 1 publishes one rollup; node 2, started
 * afterwards with an empty data directory, loads the document from one
 * message (tandem_cluster_received_total == 1) and serves the same
 * content. 2) A client on node 2 adds a tail and leaves: node 3, fresh,
 * again reads one snapshot. 3) The fence: a writer on node 1 keeps editing
 * while a client on node 3 edits and leaves (node 3 rolls up while batches
 * keep arriving); node 4, fresh, ends up with every batch of both. Without
 * the fence a rollup would drop batches it does not hold.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "cl_util.h"

#define DOC "cl-rollup"

static td_cli_server *idle_node(const char *name)
{
    static const char *argv[6][12];
    static int n;
    CHECK(n < 6);
    const char *const *base = cl_node_args(name);
    int i = 0;
    while (base[i] && i < 8) {
        argv[n][i] = base[i];
        i++;
    }
    argv[n][i++] = "--doc-idle";
    argv[n][i++] = "400ms";
    argv[n][i] = NULL;
    return it_server(argv[n++]);
}

static int all_acked(void *p)
{
    return td_cli_unacked((td_cli_doc *)p) == 0;
}

static void write_batches(td_cli_doc *d, int n)
{
    for (int i = 0; i < n; i++) {
        it_random_edits(td_cli_doc_crdt(d), 3);
        CHECK(td_cli_commit(d, NULL) == 0);
        CHECK_MSG(td_cli_wait(it_ctx(), all_acked, d, 15000), "batch %d not ACKed", i);
    }
}

static char *replica_json(td_cli_doc *d)
{
    char *js = NULL, *copy;
    size_t len = 0;
    CHECK(td_crdt_to_json(td_cli_doc_crdt(d), &js, &len) == TD_CRDT_OK);
    copy = strdup(js);
    td_crdt_buf_free(td_cli_doc_crdt(d), js);
    CHECK(copy != NULL);
    return copy;
}

/* A fresh node loads the document: its content is `want` and it read
 * `messages` messages of the subject to get there. */
static td_cli_server *fresh_load(const char *name, const char *want, double messages)
{
    td_cli_server *s = idle_node(name);
    td_cli_doc *d = it_open_doc(s, NULL, 0, DOC);
    /* The node answers the subscription from its (empty) store and sends
     * what the subject brings as it comes. */
    char *got = NULL;
    uint64_t end = td_cli_now_us() + 10000000u;
    do {
        free(got);
        td_cli_wait(it_ctx(), NULL, NULL, 20);
        got = replica_json(d);
    } while (!it_json_equal(got, want) && td_cli_now_us() < end);
    CHECK_MSG(it_json_equal(got, want), "%s: fresh load differs:\n%s\nwant\n%s", name, got,
              want);
    CHECK(it_doc_matches(s, DOC, NULL, d));
    double rx = it_metric(s, "tandem_cluster_received_total");
    printf("%s (empty data directory) read %.0f message(s) of the subject\n", name, rx);
    CHECK_MSG(rx == messages, "%s read %.0f messages, want %.0f", name, rx, messages);
    free(got);
    td_cli_conn_free(td_cli_doc_conn(d));
    return s;
}

/* Rollups published by the nodes so far: any node holding the document
 * when it goes idle may be the one (each is fenced). */
static double rollups(td_cli_server *const *nodes, int n)
{
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += it_metric(nodes[i], "tandem_cluster_rollups_total");
    return sum;
}

static int wait_rollups(td_cli_server *const *nodes, int n, double want, int timeout_ms)
{
    uint64_t end = td_cli_now_us() + (uint64_t)timeout_ms * 1000u;
    while (td_cli_now_us() < end) {
        if (rollups(nodes, n) >= want)
            return 1;
        td_cli_wait(it_ctx(), NULL, NULL, 50);
    }
    return 0;
}

int main(int argc, char **argv)
{
    cl_init(argc, argv, "cluster_rollup");
    td_cli_server *n1 = idle_node("n1");

    /* 1) 30 batches on node 1, then nobody: one rollup */
    td_cli_server *nodes[6] = {n1};
    td_cli_doc *a = it_open_doc(n1, NULL, 0, DOC);
    write_batches(a, 30);
    char *want = replica_json(a);
    td_cli_conn_free(td_cli_doc_conn(a));
    CHECK_MSG(wait_rollups(nodes, 1, 1, 10000),
              "node 1 published no rollup after the document went idle");
    nodes[1] = fresh_load("n2", want, 1);
    free(want);

    /* 2) a tail from another node; once every holder is idle, one of them
     * rolls the snapshot and the tail up */
    nodes[2] = idle_node("n2b");
    td_cli_doc *b = it_open_doc(nodes[2], NULL, 0, DOC);
    write_batches(b, 5);
    want = replica_json(b);
    td_cli_conn_free(td_cli_doc_conn(b));
    CHECK_MSG(wait_rollups(nodes, 3, 2, 10000), "no rollup of snapshot + tail (%.0f in all)",
              rollups(nodes, 3));
    td_cli_wait(it_ctx(), NULL, NULL, 1000); /* every holder idle: no rollup pending */
    nodes[3] = fresh_load("n3", want, 1);
    free(want);

    /* 3) the fence: node 1 keeps writing while node 3 rolls up */
    a = it_open_doc(n1, NULL, 0, DOC);
    td_cli_server *n3 = idle_node("n3b");
    td_cli_doc *c = it_open_doc(n3, NULL, 0, DOC);
    write_batches(c, 3);
    td_cli_conn_free(td_cli_doc_conn(c));
    uint64_t end = td_cli_now_us() + 2500000u; /* past node 3's unload */
    int n = 0;
    while (td_cli_now_us() < end) {
        write_batches(a, 1);
        td_cli_wait(it_ctx(), NULL, NULL, 20);
        n++;
    }
    printf("node 1 wrote %d batches while node 3 unloaded (node 3's rollups: %.0f)\n", n,
           it_metric(n3, "tandem_cluster_rollups_total"));
    want = replica_json(a);
    td_cli_server *n4 = idle_node("n4");
    td_cli_doc *d = it_open_doc(n4, NULL, 0, DOC);
    td_cli_doc *pair[2] = {a, d};
    CHECK_MSG(it_wait_converged(pair, 2, 15000), "a fresh node lacks batches after rollups");
    char *got = replica_json(d);
    CHECK_MSG(it_json_equal(got, want), "node 4 differs from the writer");
    free(got);
    free(want);
    printf("cluster_rollup: ok\n");
    return 0;
}
