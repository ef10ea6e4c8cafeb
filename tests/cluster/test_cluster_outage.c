/*
 * test_cluster_outage.c -- issue 15, bar 3 with one broker: what a node does
 * while JetStream is unreachable, and that everything converges once it is
 * back.
 *
 * Two `tandem serve --cluster` nodes on one broker. A batch is acknowledged
 * while the broker is up. Then the broker is SIGKILLed: both nodes say so on
 * /healthz (503), a batch is refused with the retryable `unavailable`
 * (ERROR 23) and nothing of it is applied, and reads (GET /docs/{id}) go on.
 * The broker restarts on its store: /healthz is 200 again, the same batch
 * resent is acknowledged, and the other node serves everything.
 *
 * Then the broker is SIGKILLed again while batches are in flight, a few
 * times: a batch whose publish dies with the link is published again by the
 * node once the broker is back (and acknowledged then), the others are
 * refused and resent by the client, and both nodes end up with everything.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include "cl_util.h"

#define DOC "cl-outage"
#define E_UNAVAILABLE 23

static int healthz(td_cli_server *s)
{
    return td_cli_http_get("127.0.0.1", s->port, "/healthz", NULL, NULL, NULL);
}

static int wait_health(td_cli_server *s, int want, int ms)
{
    for (int t = 0; t < ms; t += 50) {
        if (healthz(s) == want)
            return 1;
        td_cli_wait(it_ctx(), NULL, NULL, 50);
    }
    return healthz(s) == want;
}

static uint8_t *edit(td_crdt_doc *replica, const char *word, size_t *len)
{
    td_crdt_obj t;
    CHECK(td_crdt_root(replica, TD_CRDT_TEXT, "body", 4, &t) == TD_CRDT_OK);
    CHECK(td_crdt_text_insert(replica, t, td_crdt_text_length(replica, t), word,
                              strlen(word)) == TD_CRDT_OK);
    return it_commit(replica, len);
}

/* GET /docs/DOC of s equals the replica's JSON (within 10 s). */
static int serves(td_cli_server *s, td_crdt_doc *replica)
{
    char *want = NULL;
    size_t wlen = 0;
    CHECK(td_crdt_to_json(replica, &want, &wlen) == TD_CRDT_OK);
    char *w = strndup(want, wlen);
    td_crdt_buf_free(replica, want);
    int ok = 0;
    for (int i = 0; i < 100 && !ok; i++) {
        char *json = cl_doc_json(s, DOC);
        ok = it_json_equal(json, w);
        free(json);
        if (!ok)
            td_cli_wait(it_ctx(), NULL, NULL, 100);
    }
    free(w);
    return ok;
}

static void *killer(void *arg)
{
    struct timespec ts = {0, (long)(intptr_t)arg * 1000000L};
    nanosleep(&ts, NULL);
    cl_broker_kill();
    return NULL;
}

int main(int argc, char **argv)
{
    cl_init(argc, argv, "cluster_outage");
    td_cli_server *n1 = cl_node("o1"), *n2 = cl_node("o2");
    td_crdt_options o;
    memset(&o, 0, sizeof o);
    o.agent = td_cli_random64();
    td_crdt_doc *replica = NULL;
    CHECK(td_crdt_doc_new(&o, &replica) == TD_CRDT_OK);
    td_cli_conn *c = it_raw_connect(n1, NULL, o.agent);
    it_raw_subscribe(c, DOC, replica);
    /* node 2 holds the document too (a subscriber keeps it loaded) */
    td_cli_conn *c2 = td_cli_connect(it_ctx(), n2->url, NULL);
    CHECK(c2 != NULL);
    td_cli_doc *d2 = td_cli_subscribe(c2, DOC, NULL);
    CHECK(d2 != NULL && it_wait_docs_synced(&d2, 1, 10000));

    size_t len;
    uint8_t *b = edit(replica, "before ", &len);
    CHECK_MSG(it_raw_update(c, DOC, 1, b, len, 10000) == 0, "no ACK with the broker up");
    free(b);
    CHECK(serves(n2, replica));
    printf("broker up: acknowledged, and on the other node\n");

    cl_broker_kill();
    CHECK_MSG(wait_health(n1, 503, 10000) && wait_health(n2, 503, 10000),
              "/healthz does not report the broker's absence");
    char *before = cl_doc_json(n1, DOC);
    CHECK_MSG(before != NULL, "reads stop while the broker is away");
    b = edit(replica, "during ", &len);
    int rc = it_raw_update(c, DOC, 2, b, len, 10000);
    CHECK_MSG(rc == E_UNAVAILABLE, "a batch while the broker is away got %d, expected %d", rc,
              E_UNAVAILABLE);
    char *after = cl_doc_json(n1, DOC);
    CHECK_MSG(it_json_equal(before, after), "a refused batch changed the document:\n%s\n%s",
              before, after ? after : "(none)");
    free(before);
    free(after);
    printf("broker down: /healthz 503, the batch refused with unavailable, reads go on\n");

    cl_broker_restart();
    CHECK_MSG(wait_health(n1, 200, 20000) && wait_health(n2, 200, 20000),
              "/healthz did not recover with the broker");
    /* The client resends what was not acknowledged (PROTOCOL.md section 5). */
    rc = -1;
    for (int i = 0; i < 50 && rc != 0; i++) {
        rc = it_raw_update(c, DOC, 3, b, len, 10000);
        if (rc != 0)
            td_cli_wait(it_ctx(), NULL, NULL, 200);
    }
    CHECK_MSG(rc == 0, "the resent batch was not acknowledged after the broker returned (%d)", rc);
    free(b);
    b = edit(replica, "after", &len);
    CHECK(it_raw_update(c, DOC, 4, b, len, 10000) == 0);
    free(b);
    CHECK_MSG(serves(n1, replica) && serves(n2, replica),
              "the nodes do not converge after the broker returned");
    printf("broker back: /healthz 200, the resent batch acknowledged, both nodes agree\n");

    uint64_t id = 10;
    for (int round = 0; round < 3; round++) {
        pthread_t th;
        int acked = 0, refused = 0, late = 0;
        CHECK(pthread_create(&th, NULL, killer, (void *)(intptr_t)(50 + it_below(200))) == 0);
        /* One batch after the other, each resent until it is acknowledged:
         * what a client does. The broker dies somewhere in here. */
        uint64_t end = td_cli_now_us() + 1500000;
        int restarted = 0;
        while (td_cli_now_us() < end || !restarted) {
            if (!restarted && td_cli_now_us() >= end) {
                pthread_join(th, NULL);
                cl_broker_restart();
                restarted = 1;
            }
            char w[32];
            snprintf(w, sizeof w, "r%d.%llu ", round, (unsigned long long)id);
            b = edit(replica, w, &len);
            for (;;) {
                rc = it_raw_update(c, DOC, ++id, b, len, 1000);
                if (rc == 0)
                    break;
                CHECK_MSG(rc == E_UNAVAILABLE || rc == -1, "a batch got ERROR %d", rc);
                refused += rc == E_UNAVAILABLE;
                late += rc == -1;
                if (rc == E_UNAVAILABLE)
                    td_cli_wait(it_ctx(), NULL, NULL, 20); /* resend after a moment */
                if (!restarted) {
                    pthread_join(th, NULL);
                    cl_broker_restart();
                    restarted = 1;
                }
            }
            acked++;
            free(b);
        }
        printf("round %d: %d batches acknowledged; %d answers unavailable, %d late\n", round + 1,
               acked, refused, late);
        CHECK_MSG(wait_health(n1, 200, 20000) && wait_health(n2, 200, 20000),
                  "/healthz did not recover with the broker");
    }
    CHECK_MSG(serves(n1, replica) && serves(n2, replica),
              "the nodes do not converge after the broker's deaths under load");
    printf("both nodes hold every batch after the broker died under load\n");
    td_crdt_doc_free(replica);
    it_pass();
}
