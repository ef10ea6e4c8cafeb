/*
 * test_cluster_presence.c -- bar 4 of issue 15: presence across nodes.
 *
 * Two `tandem serve --cluster` nodes with a presence TTL of 3 s; client A
 * on node 1, client B on node 2, one document. Each sees the other's cursor
 * (its presence state) and its changes; B's entry stays alive on node 1 for
 * two TTLs while B only heartbeats (node 2 repeats its entries to the other
 * nodes within the TTL); and once node 2 is SIGKILLed, A gets B's LEAVE
 * within TTL + 1 s.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cl_util.h"

#define DOC "cl-presence"
#define TTL_MS 3000

typedef struct seen {
    char state[64];
    uint64_t session;
    int present, leaves;
} seen;

static seen g_seen[2]; /* what A (0) and B (1) saw of the other */
static td_cli_doc *g_docs[2];

static int who(td_cli_doc *d)
{
    return d == g_docs[0] ? 0 : 1;
}

static void on_presence(td_cli_doc *d, const td_cli_peer *p, void *ud)
{
    (void)ud;
    seen *s = &g_seen[who(d)];
    size_t n = p->state_len < sizeof s->state - 1 ? p->state_len : sizeof s->state - 1;
    memcpy(s->state, p->state, n);
    s->state[n] = 0;
    s->session = p->session;
    s->present = 1;
}

static void on_leave(td_cli_doc *d, uint64_t session, void *ud)
{
    (void)ud;
    seen *s = &g_seen[who(d)];
    if (s->present && session == s->session) {
        s->present = 0;
        s->leaves++;
    }
}

typedef struct want {
    int i;
    const char *state;
} want;

static int sees(void *arg)
{
    const want *w = arg;
    return g_seen[w->i].present && strcmp(g_seen[w->i].state, w->state) == 0;
}

static int gone(void *arg)
{
    return !g_seen[*(int *)arg].present;
}

/* Services the loop for ms while B heartbeats every second. */
static void heartbeat_for(int ms)
{
    uint64_t end = td_cli_now_us() + (uint64_t)ms * 1000u;
    while (td_cli_now_us() < end) {
        CHECK(td_cli_presence(g_docs[1], NULL, 0) == 0);
        td_cli_wait(it_ctx(), NULL, NULL, 1000);
    }
}

int main(int argc, char **argv)
{
    cl_init(argc, argv, "cluster_presence");
    /* cl_node's arguments plus the short TTL */
    const char *extra[2][10];
    static const char *const names[2] = {"p1", "p2"};
    td_cli_server *nodes[2];
    for (int k = 0; k < 2; k++) {
        const char *const *a = cl_node_args(names[k]);
        int n = 0;
        while (a[n]) {
            extra[k][n] = a[n];
            n++;
        }
        extra[k][n++] = "--presence-ttl";
        extra[k][n++] = "3s";
        extra[k][n] = NULL;
        nodes[k] = it_server(extra[k]);
    }
    td_cli_ctx *ctx = it_ctx();
    td_cli_conn_opts o = {0};
    o.cb.on_presence = on_presence;
    o.cb.on_leave = on_leave;
    td_cli_conn *conns[2];
    for (int k = 0; k < 2; k++) {
        CHECK((conns[k] = td_cli_connect(ctx, nodes[k]->url, &o)) != NULL);
        CHECK((g_docs[k] = td_cli_subscribe(conns[k], DOC, NULL)) != NULL);
    }
    CHECK(it_wait_docs_synced(g_docs, 2, 10000));

    CHECK(td_cli_presence(g_docs[1], "B at 7", 6) == 0);
    want w = {0, "B at 7"};
    CHECK_MSG(td_cli_wait(ctx, sees, &w, 5000), "A (node 1) never saw B's cursor (node 2)");
    CHECK(td_cli_presence(g_docs[0], "A at 3", 6) == 0);
    want wb = {1, "A at 3"};
    CHECK_MSG(td_cli_wait(ctx, sees, &wb, 5000), "B (node 2) never saw A's cursor (node 1)");
    CHECK(td_cli_presence(g_docs[1], "B at 12", 7) == 0);
    want w2 = {0, "B at 12"};
    CHECK_MSG(td_cli_wait(ctx, sees, &w2, 5000), "A did not see B's cursor move");
    printf("A and B see each other's cursors across the nodes\n");

    /* Alive for two TTLs on heartbeats alone. */
    heartbeat_for(2 * TTL_MS);
    CHECK_MSG(g_seen[0].present && g_seen[0].leaves == 0,
              "B's entry expired on node 1 although B heartbeats");
    printf("B's entry lives on node 1 for %d ms of heartbeats\n", 2 * TTL_MS);

    /* Node 2 dies: B disappears for A within TTL + 1 s. */
    uint64_t t0 = td_cli_now_us();
    CHECK(td_cli_server_stop(nodes[1], SIGKILL, 0) != -1);
    int a = 0;
    CHECK_MSG(td_cli_wait(ctx, gone, &a, TTL_MS + 1000),
              "B's entry still on node 1 %d ms after node 2 died", TTL_MS + 1000);
    printf("B left A's view %.0f ms after node 2 was killed (TTL %d ms)\n",
           (double)(td_cli_now_us() - t0) / 1000.0, TTL_MS);
    it_pass();
}
