/*
 * test_convergence.c -- bar 1 of issue 5: three clients on each of two
 * documents make random concurrent edits (text, list, map, nested objects)
 * through the server; afterwards every replica and the server's copy
 * (GET /docs/{id}) hold identical content, and still do after the server is
 * restarted on the same data directory -- checked over HTTP, by clients that
 * resync with their version vectors, by a fresh client, and by
 * `tandem export` once the server is stopped.
 *
 * Concurrency comes from editing several rounds without servicing the event
 * loop in between, so that clients commit on top of states that miss each
 * other's latest batches. One of the connections names the `tandem`
 * subprotocol, the others none (PROTOCOL.md allows both).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "it_util.h"

#define NCLIENTS 3
#define NDOCS 2

static const char *const doc_ids[NDOCS] = {"conv-a", "team/conv b \xc3\xbc"};

static void check_server_copy(td_cli_server *s, td_cli_doc **docs, const char *when)
{
    for (int d = 0; d < NDOCS; d++) {
        char *server = NULL, *client = td_cli_doc_json(docs[d * NCLIENTS]);
        int st = it_get_doc(s, doc_ids[d], NULL, &server);
        CHECK_MSG(st == 200, "GET /docs/%s (%s) returned %d", doc_ids[d], when, st);
        CHECK_MSG(it_json_equal(server, client), "%s: server copy of %s differs:\nserver %.400s\nclient %.400s",
               when, doc_ids[d], server ? server : "", client ? client : "");
        printf("%s: %s identical on server and clients (%zu bytes of JSON)\n", when,
               doc_ids[d], strlen(client));
        free(server);
        free(client);
    }
}

int main(int argc, char **argv)
{
    it_init(argc, argv, "integration_convergence");
    td_cli_server *s = it_server(NULL);
    td_cli_ctx *ctx = it_ctx();

    td_cli_conn *conns[NCLIENTS];
    td_cli_doc *docs[NDOCS * NCLIENTS]; /* docs[d * NCLIENTS + c] */
    for (int c = 0; c < NCLIENTS; c++) {
        td_cli_conn_opts o = {0};
        o.subprotocol = c == 0 ? "tandem" : NULL;
        conns[c] = td_cli_connect(ctx, s->url, &o);
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
        /* every few rounds let traffic flow; in between, edits are concurrent */
        if (it_below(4) == 0)
            td_cli_service(ctx, 0);
        if (r % 50 == 49)
            td_cli_wait(ctx, NULL, NULL, 5);
    }
    printf("%d rounds, %llu batches committed\n", rounds, (unsigned long long)batches);

    for (int d = 0; d < NDOCS; d++)
        CHECK_MSG(it_wait_converged(&docs[d * NCLIENTS], NCLIENTS, 30000),
               "replicas of %s did not converge", doc_ids[d]);
    for (int c = 0; c < NCLIENTS; c++) {
        const td_cli_stats *st = td_cli_conn_stats(conns[c]);
        uint64_t errs = 0;
        for (int k = 0; k < TD_CLI_NCODES; k++)
            errs += st->errors[k];
        CHECK_MSG(errs == 0, "client %d got %llu ERRORs", c, (unsigned long long)errs);
    }
    check_server_copy(s, docs, "live");

    /* restart on the same data directory */
    int st = td_cli_server_stop(s, SIGTERM, 20000);
    CHECK_MSG(st == 0, "SIGTERM: server exit status %d, expected 0", st);
    CHECK(td_cli_server_restart(s, NULL, 30000) == 0);
    check_server_copy(s, docs, "after restart");

    /* clients resync with their vv: nothing changes, nothing is missing */
    for (int c = 0; c < NCLIENTS; c++)
        CHECK(td_cli_reconnect(conns[c]) == 0);
    for (int d = 0; d < NDOCS; d++)
        CHECK(it_wait_converged(&docs[d * NCLIENTS], NCLIENTS, 20000));
    td_cli_conn *fresh = td_cli_connect(ctx, s->url, NULL);
    CHECK(fresh != NULL);
    for (int d = 0; d < NDOCS; d++) {
        td_cli_doc *fd = td_cli_subscribe(fresh, doc_ids[d], NULL);
        td_cli_doc *pair[2] = {docs[d * NCLIENTS], fd};
        CHECK_MSG(it_wait_converged(pair, 2, 20000), "a fresh client of %s differs", doc_ids[d]);
    }
    check_server_copy(s, docs, "after resync");

    /* and the store itself, read by the admin verb with the server stopped */
    CHECK(td_cli_server_stop(s, SIGTERM, 20000) == 0);
    for (int d = 0; d < NDOCS; d++) {
        const char *argv_export[] = {it_bin(), "export", "--data", s->data_dir, doc_ids[d], NULL};
        char *out = NULL;
        int rc = td_cli_run(argv_export, &out, NULL);
        char *client = td_cli_doc_json(docs[d * NCLIENTS]);
        CHECK_MSG(rc == 0 && it_json_equal(out, client), "tandem export %s: exit %d, %.300s",
               doc_ids[d], rc, out ? out : "");
        printf("tandem export: %s identical\n", doc_ids[d]);
        free(out);
        free(client);
    }
    it_pass();
}
