/*
 * test_srv_e2e.c -- end-to-end smoke test of `tandem serve`.
 *
 * Starts the real server binary (argv[1], run as `BIN serve ...`) on a
 * random free port with a fresh data directory, and checks with two
 * WebSocket clients: HELLO/WELCOME, SUBSCRIBE/SYNC, an UPDATE made with
 * td_crdt_commit is ACKed to its sender and arrives as REMOTE at the other,
 * presence with LEAVE on disconnect, errors for malformed input and invalid
 * batches (the server stays up), GET /healthz, /metrics, /docs/ID; then
 * SIGTERM exits 0 and a restart on the same data directory serves the
 * document from disk.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "srv_test_glue.h"
#include "tandem_crdt.h"


static const char *g_bin;
static char g_data[256];

/* The server of this test, with a short presence interval (PEERS comes
 * quickly) and a small --max-frame (1009 is cheap to provoke). */
static td_cli_server g_srv;
static const char *const g_extra[] = {"--presence-interval", "50", "--max-frame", "65536",
                                      NULL};

static void send_hello(td_cli_conn *c, uint64_t agent)
{
    td_srv_msg m = {0};
    m.type = TD_SRV_MSG_HELLO;
    m.version = 1;
    m.agent = agent;
    srv_send_msg(c, &m);
}

static void send_doc_msg(td_cli_conn *c, td_srv_msg_type t, const char *doc, const uint8_t *b,
                         size_t blen, uint64_t batch_id)
{
    td_srv_msg m = {0};
    m.type = t;
    m.doc.ptr = (const uint8_t *)doc;
    m.doc.len = strlen(doc);
    if (t == TD_SRV_MSG_SUBSCRIBE) {
        m.vv.ptr = b;
        m.vv.len = blen;
    } else if (t == TD_SRV_MSG_UPDATE) {
        m.batch.ptr = b;
        m.batch.len = blen;
        m.batch_id = batch_id;
    } else if (t == TD_SRV_MSG_PRESENCE) {
        m.state.ptr = b;
        m.state.len = blen;
    }
    srv_send_msg(c, &m);
}

int main(int argc, char **argv)
{
    int port = 0;
    pid_t pid = -1;
    td_cli_conn *a = NULL, *b = NULL, *c = NULL;
    td_crdt_doc *da = NULL, *db = NULL, *dc = NULL;
    td_cli_msg *m = NULL;
    td_srv_msg d;
    uint64_t sess_a = 0;

    td_check_keep_going = 1;
    if (argc < 2) {
        fprintf(stderr, "usage: %s SERVER_BINARY\n", argv[0]);
        return 2;
    }
    g_bin = argv[1];
    if (sodium_init() < 0 || !srv_ctx(0))
        return 1;
    char dir[200], cmd[500];
    snprintf(dir, sizeof dir, "/tmp/td-srv-e2e-%d", (int)getpid());
    snprintf(g_data, sizeof g_data, "%s/data", dir);
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    if (system(cmd) != 0)
        return 1;

    pid = srv_start(&g_srv, g_bin, g_data, g_extra, &port);
    REQUIRE(pid > 0);
    printf("server pid %d on port %d\n", (int)pid, port);

    a = srv_connect(port, 3000);
    b = srv_connect(port, 3000);
    REQUIRE(a && b);

    /* Before HELLO: hello_required. */
    send_doc_msg(a, TD_SRV_MSG_SUBSCRIBE, "e2e", NULL, 0, 0);
    m = td_cli_expect(a, TD_SRV_MSG_ERROR, 3000);
    d = srv_decode(m);
    CHECK(d.type == TD_SRV_MSG_ERROR && d.code == TD_SRV_E_HELLO_REQUIRED);
    td_cli_msg_free(m);

    send_hello(a, 1001);
    send_hello(b, 1002);
    m = td_cli_expect(a, TD_SRV_MSG_WELCOME, 3000);
    d = srv_decode(m);
    REQUIRE(d.type == TD_SRV_MSG_WELCOME && d.version == 1 && d.session != 0);
    CHECK(d.presence_interval_ms == 50 && d.rights == 7);
    sess_a = d.session;
    td_cli_msg_free(m);
    m = td_cli_expect(b, TD_SRV_MSG_WELCOME, 3000);
    REQUIRE(m);
    td_cli_msg_free(m);

    td_crdt_options oa = {0}, ob = {0};
    oa.agent = 1001;
    ob.agent = 1002;
    REQUIRE(td_crdt_doc_new(&oa, &da) == TD_CRDT_OK && td_crdt_doc_new(&ob, &db) == TD_CRDT_OK);

    send_doc_msg(a, TD_SRV_MSG_SUBSCRIBE, "e2e", NULL, 0, 0);
    send_doc_msg(b, TD_SRV_MSG_SUBSCRIBE, "e2e", NULL, 0, 0);
    m = td_cli_expect(a, TD_SRV_MSG_SYNC, 3000);
    REQUIRE(m);
    CHECK(srv_apply_raw(da, m) == 0);
    td_cli_msg_free(m);
    m = td_cli_expect(b, TD_SRV_MSG_SYNC, 3000);
    REQUIRE(m);
    td_cli_msg_free(m);

    /* A types; the batch is ACKed to A and broadcast to B. */
    td_crdt_obj ta;
    uint8_t *batch = NULL;
    size_t blen = 0;
    REQUIRE(td_crdt_root(da, TD_CRDT_TEXT, "body", 4, &ta) == TD_CRDT_OK);
    REQUIRE(td_crdt_text_insert(da, ta, 0, "hello", 5) == TD_CRDT_OK);
    REQUIRE(td_crdt_commit(da, &batch, &blen) == TD_CRDT_OK && batch);
    send_doc_msg(a, TD_SRV_MSG_UPDATE, "e2e", batch, blen, 1);
    m = td_cli_expect(a, TD_SRV_MSG_ACK, 5000);
    d = srv_decode(m);
    CHECK(d.type == TD_SRV_MSG_ACK && d.batch_id == 1 && d.doc.len == 3);
    td_cli_msg_free(m);
    m = td_cli_expect(b, TD_SRV_MSG_REMOTE, 5000);
    REQUIRE(m);
    CHECK(srv_apply_raw(db, m) == 0);
    td_cli_msg_free(m);
    char *tb = srv_text_of(db);
    CHECK(strcmp(tb, "hello") == 0);
    free(tb);

    /* A duplicate resend is ACKed again, not rebroadcast. */
    send_doc_msg(a, TD_SRV_MSG_UPDATE, "e2e", batch, blen, 2);
    m = td_cli_expect(a, TD_SRV_MSG_ACK, 5000);
    d = srv_decode(m);
    CHECK(d.type == TD_SRV_MSG_ACK && d.batch_id == 2);
    td_cli_msg_free(m);
    td_crdt_buf_free(da, batch);

    /* Bad input: malformed, unknown type, invalid batch, text frame on c. */
    static const uint8_t trunc[] = {0x04, 0x03, 'e', '2', 'e', 0x80};
    td_cli_send_raw(a, trunc, sizeof trunc, 0);
    m = td_cli_expect(a, TD_SRV_MSG_ERROR, 3000);
    d = srv_decode(m);
    CHECK(d.code == TD_SRV_E_BAD_MESSAGE);
    td_cli_msg_free(m);
    static const uint8_t unk[] = {0x06, 0x00};
    td_cli_send_raw(a, unk, sizeof unk, 0);
    m = td_cli_expect(a, TD_SRV_MSG_ERROR, 3000);
    d = srv_decode(m);
    CHECK(d.code == TD_SRV_E_UNKNOWN_TYPE);
    td_cli_msg_free(m);
    static const uint8_t junk[] = {0xff, 0xfe, 0x01, 0x02, 0x03};
    send_doc_msg(a, TD_SRV_MSG_UPDATE, "e2e", junk, sizeof junk, 3);
    m = td_cli_expect(a, TD_SRV_MSG_ERROR, 3000);
    d = srv_decode(m);
    CHECK(d.code == TD_SRV_E_INVALID_BATCH && d.batch_id == 3);
    td_cli_msg_free(m);

    c = srv_connect(port, 3000);
    REQUIRE(c);
    td_cli_send_raw(c, (const uint8_t *)"hi", 2, 1);
    td_cli_wait(srv_ctx(0), srv_closed_pred, c, 3000);
    int code = 0;
    CHECK(srv_closed(c, &code) && code == 1003);
    td_cli_conn_free(c);
    c = NULL;

    /* A message over --max-frame closes with 1009. */
    c = srv_connect(port, 3000);
    REQUIRE(c);
    {
        uint8_t *big = calloc(1, 70000);
        big[0] = TD_SRV_MSG_HELLO;
        td_cli_send_raw(c, big, 70000, 0);
        free(big);
    }
    td_cli_wait(srv_ctx(0), srv_closed_pred, c, 3000);
    CHECK(srv_closed(c, &code) && code == 1009);
    td_cli_conn_free(c);
    c = NULL;

    /* Presence: A's state reaches B; A's disconnect sends LEAVE at once. */
    send_doc_msg(a, TD_SRV_MSG_PRESENCE, "e2e", (const uint8_t *)"{\"c\":1}", 7, 0);
    m = td_cli_expect(b, TD_SRV_MSG_PEERS, 3000);
    d = srv_decode(m);
    REQUIRE(d.type == TD_SRV_MSG_PEERS && d.count == 1);
    {
        size_t pos = 0;
        td_srv_item it;
        CHECK(td_srv_items_next(&d, &pos, &it) && it.session == sess_a && it.agent == 1001 &&
              it.state.len == 7);
    }
    td_cli_msg_free(m);

    /* HTTP while the document is loaded. */
    char *body = NULL;
    CHECK(srv_http_get(port, "/docs/e2e", &body) == 200);
    CHECK(body && strstr(body, "\"hello\""));
    free(body);
    CHECK(srv_http_get(port, "/docs/nope", &body) == 404);
    free(body);
    CHECK(srv_http_get(port, "/metrics", &body) == 200);
    CHECK(body && strstr(body, "tandem_batches_applied_total 1\n"));
    CHECK(body && strstr(body, "tandem_connections 2\n"));
    free(body);

    td_cli_conn_free(a);
    a = NULL;
    m = td_cli_expect(b, TD_SRV_MSG_LEAVE, 3000);
    d = srv_decode(m);
    CHECK(d.type == TD_SRV_MSG_LEAVE && d.session == sess_a);
    td_cli_msg_free(m);

    /* SIGTERM: B is closed with 1001, the server exits 0. */
    CHECK(srv_stop(&g_srv) == 0);
    pid = -1;
    td_cli_wait(srv_ctx(0), srv_closed_pred, b, 3000);
    CHECK(srv_closed(b, &code) && code == 1001);
    td_cli_conn_free(b);
    b = NULL;

    /* Restart on the same data: the document comes back from disk. */
    pid = srv_start(&g_srv, g_bin, g_data, g_extra, &port);
    REQUIRE(pid > 0);
    c = srv_connect(port, 3000);
    REQUIRE(c);
    send_hello(c, 1003);
    m = td_cli_expect(c, TD_SRV_MSG_WELCOME, 3000);
    REQUIRE(m);
    td_cli_msg_free(m);
    td_crdt_options oc = {0};
    oc.agent = 1003;
    REQUIRE(td_crdt_doc_new(&oc, &dc) == TD_CRDT_OK);
    send_doc_msg(c, TD_SRV_MSG_SUBSCRIBE, "e2e", NULL, 0, 0);
    m = td_cli_expect(c, TD_SRV_MSG_SYNC, 5000);
    REQUIRE(m);
    CHECK(srv_apply_raw(dc, m) == 0);
    td_cli_msg_free(m);
    char *tc_ = srv_text_of(dc);
    CHECK(strcmp(tc_, "hello") == 0);
    free(tc_);
    CHECK(srv_stop(&g_srv) == 0);
    pid = -1;

out:
    td_cli_conn_free(a);
    td_cli_conn_free(b);
    td_cli_conn_free(c);
    if (pid > 0)
        td_cli_server_stop(&g_srv, SIGKILL, 0);
    if (da) td_crdt_doc_free(da);
    if (db) td_crdt_doc_free(db);
    if (dc) td_crdt_doc_free(dc);
    srv_ctx_free();
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        td_check_failures++;
    return td_check_status("srv_e2e");
}
