/*
 * test_srv_bigmsg.c -- messages much bigger than the server's per-connection
 * rx buffer (4 KiB, srv_loop.c) still go through whole, with and without
 * permessage-deflate: the server reassembles them up to --max-frame, and
 * with deflate it compresses with a smaller window than negotiated (a
 * memory saving), which the peer's inflater must accept.
 *
 * For each mode: writer A sends a ~1 MiB UPDATE (half random, half
 * repetitive text, so deflate has work to do); A gets its ACK, reader B gets
 * a REMOTE with exactly those bytes, a new subscriber C gets a SYNC that
 * holds them, and (without deflate) a message over --max-frame still
 * closes with 1009.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "srv_test_glue.h"
#include "tandem_crdt.h"


#define BIG (1u << 20)
#define MAX_FRAME (2u << 20)

static void hello(td_cli_conn *c)
{
    td_srv_msg m;
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_HELLO;
    m.version = 1;
    m.agent = 5;
    srv_send_msg(c, &m);
}

static void subscribe(td_cli_conn *c, const char *doc)
{
    td_srv_msg m;
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_SUBSCRIBE;
    m.doc.ptr = (const uint8_t *)doc;
    m.doc.len = strlen(doc);
    srv_send_msg(c, &m);
}

static int expect_type(td_cli_conn *c, int type, td_srv_msg *out, td_cli_msg **keep)
{
    td_cli_msg *m = td_cli_expect(c, type, 10000);
    if (!m || td_srv_msg_decode(m->data, m->len, out, NULL) != TD_SRV_E_OK) {
        td_cli_msg_free(m);
        return 0;
    }
    *keep = m;
    return 1;
}

static void run(int port, int deflate, const uint8_t *batch, size_t blen)
{
    char doc[64];
    td_srv_msg m, r;
    td_cli_msg *keep = NULL;
    snprintf(doc, sizeof doc, "big-%d", deflate);
    td_cli_conn *a = srv_connect(port, 5000), *b = srv_connect(port, 5000), *c = NULL;
    if (!a || !b) {
        CHECK(!"connect");
        return;
    }
    hello(a);
    hello(b);
    subscribe(a, doc);
    subscribe(b, doc);
    CHECK(expect_type(a, TD_SRV_MSG_SYNC, &r, &keep));
    td_cli_msg_free(keep);
    CHECK(expect_type(b, TD_SRV_MSG_SYNC, &r, &keep));
    td_cli_msg_free(keep);

    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_UPDATE;
    m.doc.ptr = (const uint8_t *)doc;
    m.doc.len = strlen(doc);
    m.batch_id = 1;
    m.batch.ptr = batch;
    m.batch.len = blen;
    srv_send_msg(a, &m);
    int acked = expect_type(a, TD_SRV_MSG_ACK, &r, &keep) && r.batch_id == 1;
    td_cli_msg_free(keep);
    int same = 0;
    if (expect_type(b, TD_SRV_MSG_REMOTE, &r, &keep)) {
        size_t pos = 0;
        td_srv_item it;
        same = r.count == 1 && td_srv_items_next(&r, &pos, &it) && it.batch.len == blen &&
               memcmp(it.batch.ptr, batch, blen) == 0;
        td_cli_msg_free(keep);
    }
    c = srv_connect(port, 5000);
    size_t synced = 0;
    if (c) {
        hello(c);
        subscribe(c, doc);
        if (expect_type(c, TD_SRV_MSG_SYNC, &r, &keep))
            synced = r.batch.len;
        td_cli_msg_free(keep);
    }
    printf("deflate %d: UPDATE of %zu bytes: ACK %s, REMOTE %s, new subscriber's SYNC %zu bytes\n",
           deflate, blen, acked ? "yes" : "NO", same ? "identical" : "WRONG", synced);
    CHECK(acked);
    CHECK(same);
    CHECK(synced >= blen / 2);

    /* over --max-frame: 1009 (in pieces, through the close handshake).
     * Not under deflate: libwebsockets 4.1.6 aborts (an assertion in its
     * permessage-deflate inflater, client or server side) on some large,
     * highly compressible messages, e.g. 2 MiB of zeros. */
    uint8_t *huge = c && !deflate ? calloc(1, MAX_FRAME + 10) : NULL;
    if (huge) {
        huge[0] = TD_SRV_MSG_PRESENCE;
        td_cli_send_raw(c, huge, MAX_FRAME + 10, 0);
        int cc = 0;
        td_cli_wait(srv_ctx(0), srv_closed_pred, c, 10000);
        CHECK(srv_closed(c, &cc) && cc == 1009);
        printf("deflate %d: message of %u bytes -> close %d\n", deflate, MAX_FRAME + 10, cc);
        free(huge);
    }
    td_cli_conn_free(a);
    td_cli_conn_free(b);
    if (c)
        td_cli_conn_free(c);
}

int main(int argc, char **argv)
{
    char dir[256], cmd[600], data[300];
    int port = 0, pid;
    td_crdt_options o;
    td_crdt_doc *d = NULL;
    td_crdt_obj t;
    uint8_t *batch = NULL;
    size_t blen = 0;
    char *text;
    td_cli_server srv = {0};

    td_check_keep_going = 1;
    if (argc < 2)
        return 2;
    if (sodium_init() < 0)
        return 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(dir, sizeof dir, "/tmp/td-srv-big-%d", (int)getpid());
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    if (system(cmd) != 0)
        return 1;
    /* the batch: 1 MiB of text, first half random letters, then a phrase */
    text = malloc(BIG);
    if (!text)
        return 1;
    for (size_t i = 0; i < BIG; i++)
        text[i] = i < BIG / 2 ? (char)('a' + randombytes_uniform(26))
                              : "the quick brown fox jumps over the lazy dog "[i % 44];
    memset(&o, 0, sizeof o);
    o.agent = 42;
    if (td_crdt_doc_new(&o, &d) != TD_CRDT_OK ||
        td_crdt_root(d, TD_CRDT_TEXT, "body", 4, &t) != TD_CRDT_OK ||
        td_crdt_text_insert(d, t, 0, text, BIG) != TD_CRDT_OK ||
        td_crdt_commit(d, &batch, &blen) != TD_CRDT_OK) {
        fprintf(stderr, "cannot build the batch\n");
        return 1;
    }
    /* The deflate round is opt-in: libwebsockets 4.1.6 aborts on some large
     * compressed messages (see server/cli_serve.c), so the server offers deflate
     * only with --deflate 1 and CI does not exercise it. */
    const char *te = getenv("TD_TEST_DEFLATE");
    int rounds = te && strcmp(te, "1") == 0 ? 2 : 1;
    for (int deflate = 0; deflate < rounds; deflate++) {
        const char *extra[] = {"--max-frame", "2M", "--max-batch", "2M",
                               "--deflate", deflate ? "1" : "0", NULL};
        if (!srv_ctx(deflate))
            return 1;
        pid = srv_start(&srv, argv[1], data, extra, &port);
        CHECK(pid > 0);
        if (pid > 0) {
            run(port, deflate, batch, blen);
            CHECK(srv_stop(&srv) == 0);
        }
        srv_ctx_free();
    }
    td_crdt_buf_free(d, batch);
    td_crdt_doc_free(d);
    free(text);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return td_check_status("srv_bigmsg");
}
