/*
 * test_cluster_authorship.c -- issue 15, "Authorship holds across nodes":
 * no node accepts ops that another node would refuse.
 *
 * Two keyed `tandem serve --cluster` nodes. ann writes agent A on node 1;
 * node 2 has only seen A's ops through the stream. eve, on node 2, sends a
 * batch under A: agent_taken, nothing applied on either node. ann herself,
 * on node 2 (another tab), writes under A: accepted. bob takes a new agent
 * B on node 2; eve then claims B on node 1: agent_taken. Both nodes and
 * every client agree at the end, and the refusals left no trace.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "cl_util.h"

#define DOC "shared/cl-authors"

static char g_pub[800];

static td_cli_server *keyed_node(const char *name)
{
    static const char *argv[2][12];
    static int n;
    CHECK(n < 2);
    const char *const *base = cl_node_args(name);
    int i = 0;
    while (base[i] && i < 8) {
        argv[n][i] = base[i];
        i++;
    }
    argv[n][i++] = "--public-key";
    argv[n][i++] = g_pub;
    argv[n][i] = NULL;
    return it_server(argv[n++]);
}

static int all_acked(void *p)
{
    return td_cli_unacked((td_cli_doc *)p) == 0;
}

static void edits_acked(td_cli_doc *d, int n, const char *what)
{
    uint64_t errs = td_cli_error_count(td_cli_doc_conn(d));
    for (int i = 0; i < n; i++) {
        it_random_edits(td_cli_doc_crdt(d), 2);
        CHECK(td_cli_commit(d, NULL) == 0);
        CHECK_MSG(td_cli_wait(it_ctx(), all_acked, d, 15000), "%s: edit %d not ACKed", what, i);
    }
    CHECK_MSG(td_cli_error_count(td_cli_doc_conn(d)) == errs, "%s: an ERROR came", what);
}

/* A batch under `agent` with new ops, from a replica synced on `node`
 * through a raw connection of `token`: the answer (0 ACK, else a code). */
static int claim(td_cli_server *node, const char *token, uint64_t agent, const char *text)
{
    td_cli_conn *c = it_raw_connect(node, token, agent);
    td_crdt_doc *r = it_replica(agent);
    it_raw_subscribe(c, DOC, r);
    it_text_append(r, text);
    size_t len;
    uint8_t *b = it_commit(r, &len);
    int rc = it_raw_update(c, DOC, 1, b, len, 10000);
    free(b);
    td_crdt_doc_free(r);
    td_cli_conn_free(c);
    return rc;
}

static void both_nodes_match(td_cli_server *n1, td_cli_server *n2, const char *tok,
                             td_cli_doc *d, const char *what)
{
    CHECK_MSG(it_doc_matches(n1, DOC, tok, d), "%s: node 1 differs", what);
    CHECK_MSG(it_doc_matches(n2, DOC, tok, d), "%s: node 2 differs", what);
}

int main(int argc, char **argv)
{
    cl_init(argc, argv, "cluster_authorship");
    const char *key = it_keygen();
    snprintf(g_pub, sizeof g_pub, "%s.pub", key);
    td_cli_server *n1 = keyed_node("n1");
    td_cli_server *n2 = keyed_node("n2");
    char *ann = it_token(key, "ann", "shared/*", "rw", "3600");
    char *eve = it_token(key, "eve", "shared/*", "rw", "3600");
    char *bob = it_token(key, "bob", "shared/*", "rw", "3600");
    uint64_t A = td_cli_random64(), B = td_cli_random64();

    td_cli_doc *ann1 = it_open_doc(n1, ann, A, DOC);
    td_cli_doc *obs2 = it_open_doc(n2, bob, 0, DOC);
    edits_acked(ann1, 10, "ann on node 1");
    td_cli_doc *pair[2] = {ann1, obs2};
    CHECK_MSG(it_wait_converged(pair, 2, 15000), "node 2 did not get ann's edits");

    /* eve on node 2 under A: node 2 never bound A itself */
    uint64_t remote0 = td_cli_doc_stats_get(ann1)->remote_batches;
    int rc = claim(n2, eve, A, "EVIL");
    printf("eve under ann's agent on the other node: %d\n", rc);
    CHECK_MSG(rc == TD_CLI_E_AGENT_TAKEN, "expected agent_taken, got %d", rc);
    td_cli_wait(it_ctx(), NULL, NULL, 300);
    CHECK_MSG(td_cli_doc_stats_get(ann1)->remote_batches == remote0,
              "ann received the refused batch");
    both_nodes_match(n1, n2, ann, ann1, "after eve's claim on A");

    /* ann herself on node 2 under A (another tab): hers */
    td_cli_doc *ann2 = it_open_doc(n2, ann, A, DOC);
    edits_acked(ann2, 5, "ann's tab on node 2");
    td_cli_doc *three[3] = {ann1, obs2, ann2};
    CHECK_MSG(it_wait_converged(three, 3, 15000), "ann's tabs diverge");
    printf("ann's second tab on node 2 writes agent A: ACKed\n");

    /* bob takes a new agent on node 2, eve claims it on node 1 */
    rc = claim(n2, bob, B, "bob's");
    CHECK_MSG(rc == 0, "bob's new agent on node 2: %d", rc);
    rc = claim(n1, eve, B, "EVIL2");
    printf("eve under bob's new agent on the other node: %d\n", rc);
    CHECK_MSG(rc == TD_CLI_E_AGENT_TAKEN, "expected agent_taken, got %d", rc);
    /* and bob again on node 1: his */
    rc = claim(n1, bob, B, " more");
    CHECK_MSG(rc == 0, "bob under his own agent on node 1: %d", rc);

    CHECK_MSG(it_wait_converged(three, 3, 15000), "clients diverge at the end");
    both_nodes_match(n1, n2, ann, ann1, "at the end");
    char *js = NULL;
    CHECK(it_get_doc(n1, DOC, ann, &js) == 200 && js);
    CHECK_MSG(!strstr(js, "EVIL"), "a refused batch left a trace: %s", js);
    CHECK_MSG(strstr(js, "bob's") != NULL, "bob's accepted batch is missing: %s", js);
    free(js);
    free(ann);
    free(eve);
    free(bob);
    printf("cluster_authorship: ok\n");
    return 0;
}
