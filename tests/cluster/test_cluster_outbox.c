/*
 * test_cluster_outbox.c -- issue 15, bar 3, the other setting of the flag:
 * `--cluster-outage outbox`.
 *
 * Two nodes on one broker, a client on each, one document. The broker is
 * SIGKILLed: /healthz stays 200 and says the outbox takes the writes; both
 * clients' batches are acknowledged (on each node's disk) and wait in the
 * outbox (tandem_cluster_outbox). Then node 1 is SIGKILLed too, so what its
 * outbox held in memory is gone. The broker comes back: node 2's outbox
 * drains by itself; node 1, restarted on its data directory, republishes
 * the document's whole state when its client comes back and loads it.
 * Every acknowledged batch of both ends up on both nodes and every client.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cl_util.h"

#define DOC "cl-outbox"

static const char *g_args[2][12];

static td_cli_server *outbox_node(int k, const char *name)
{
    const char *const *base = cl_node_args(name);
    int i = 0;
    while (base[i] && i < 8) {
        g_args[k][i] = base[i];
        i++;
    }
    g_args[k][i++] = "--cluster-outage";
    g_args[k][i++] = "outbox";
    g_args[k][i] = NULL;
    return it_server(g_args[k]);
}

static int all_acked(void *p)
{
    return td_cli_unacked((td_cli_doc *)p) == 0;
}

static void write_acked(td_cli_doc *d, int n, const char *what)
{
    uint64_t errs = td_cli_error_count(td_cli_doc_conn(d));
    for (int i = 0; i < n; i++) {
        it_random_edits(td_cli_doc_crdt(d), 2);
        CHECK(td_cli_commit(d, NULL) == 0);
        CHECK_MSG(td_cli_wait(it_ctx(), all_acked, d, 10000), "%s: batch %d not ACKed", what, i);
    }
    td_cli_error e;
    td_cli_last_error(td_cli_doc_conn(d), &e);
    CHECK_MSG(td_cli_error_count(td_cli_doc_conn(d)) == errs, "%s: ERROR %llu (%s)", what,
              (unsigned long long)e.code, e.msg);
}

static int wait_metric(td_cli_server *s, const char *name, double lo, double hi, int ms)
{
    for (int t = 0; t < ms; t += 50) {
        double v = it_metric(s, name);
        if (v >= lo && v <= hi)
            return 1;
        td_cli_wait(it_ctx(), NULL, NULL, 50);
    }
    return 0;
}

int main(int argc, char **argv)
{
    cl_init(argc, argv, "cluster_outbox");
    td_cli_server *n1 = outbox_node(0, "n1"), *n2 = outbox_node(1, "n2");
    td_cli_doc *a = it_open_doc(n1, NULL, 0, DOC);
    td_cli_doc *b = it_open_doc(n2, NULL, 0, DOC);
    write_acked(a, 3, "a, broker up");
    write_acked(b, 3, "b, broker up");
    td_cli_doc *both[2] = {a, b};
    CHECK_MSG(it_wait_converged(both, 2, 15000), "no convergence with the broker up");

    cl_broker_kill();
    CHECK_MSG(wait_metric(n1, "tandem_cluster_broker_up", 0, 0, 10000) &&
                  wait_metric(n2, "tandem_cluster_broker_up", 0, 0, 10000),
              "the nodes did not notice the broker's death");
    char *body = NULL;
    int st = td_cli_http_get("127.0.0.1", n1->port, "/healthz", NULL, &body, NULL);
    CHECK_MSG(st == 200 && body && strstr(body, "outbox"), "/healthz in outbox mode: %d %s", st,
              body ? body : "");
    free(body);
    write_acked(a, 5, "a, broker down");
    write_acked(b, 4, "b, broker down");
    double q1 = it_metric(n1, "tandem_cluster_outbox"), q2 = it_metric(n2, "tandem_cluster_outbox");
    printf("broker down: every batch ACKed; outboxes hold %.0f and %.0f\n", q1, q2);
    CHECK_MSG(q1 >= 5 && q2 >= 4, "the outboxes hold %.0f and %.0f", q1, q2);
    CHECK(it_doc_matches(n1, DOC, NULL, a)); /* reads go on */

    /* node 1 dies with its outbox */
    td_cli_server_stop(n1, SIGKILL, 10000);
    cl_broker_restart();
    CHECK_MSG(wait_metric(n2, "tandem_cluster_outbox", 0, 0, 15000),
              "node 2's outbox did not drain");
    CHECK_MSG(td_cli_server_restart(n1, g_args[0], 30000) == 0, "node 1 did not restart");
    CHECK(td_cli_reconnect(td_cli_doc_conn(a)) == 0);
    CHECK(it_wait_ready(td_cli_doc_conn(a), 10000) && it_wait_docs_synced(&a, 1, 10000));
    CHECK_MSG(it_wait_converged(both, 2, 20000),
              "the batches node 1 ACKed from its outbox did not reach node 2");
    CHECK(it_doc_matches(n1, DOC, NULL, a));
    CHECK(it_doc_matches(n2, DOC, NULL, b));
    CHECK_MSG(wait_metric(n1, "tandem_cluster_outbox", 0, 0, 10000), "node 1's outbox stays full");
    printf("after the broker and node 1 came back: both nodes and clients agree\n");
    printf("cluster_outbox: ok\n");
    return 0;
}
