/*
 * test_srv_auth.c -- token auth end to end: `keygen` and `token` verbs,
 * then a server with --public-key: missing, forged and expired tokens are
 * refused (ERROR + close 1008), the document pattern is enforced, a read
 * token cannot write (and the document is unchanged), a token expiring
 * mid-session gets ERROR token_expired and its writes are refused until a
 * HELLO with a fresh token, and GET /docs/ID needs a token.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "srv_test_glue.h"
#include "tandem_crdt.h"


static const char *g_bin;
static char g_dir[256];

/* Runs `bin token ...` and returns the printed token (malloc'd). */
static char *mint(const char *key, const char *user, const char *doc, const char *rights,
                  const char *ttl)
{
    char cmd[1024], buf[4096];
    snprintf(cmd, sizeof cmd, "%s token --key %s --user %s --doc '%s' --rights %s --ttl %s",
             g_bin, key, user, doc, rights, ttl);
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    int rc = pclose(p);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n'))
        buf[--n] = '\0';
    return rc == 0 && n ? strdup(buf) : NULL;
}

static void hello(td_cli_conn *c, const char *tok)
{
    td_srv_msg m = {0};
    m.type = TD_SRV_MSG_HELLO;
    m.version = 1;
    m.token.ptr = (const uint8_t *)tok;
    m.token.len = tok ? strlen(tok) : 0;
    m.agent = 77;
    srv_send_msg(c, &m);
}

static void doc_msg(td_cli_conn *c, td_srv_msg_type t, const char *doc, const uint8_t *b, size_t n)
{
    td_srv_msg m = {0};
    m.type = t;
    m.doc.ptr = (const uint8_t *)doc;
    m.doc.len = strlen(doc);
    if (t == TD_SRV_MSG_UPDATE) {
        m.batch_id = 1;
        m.batch.ptr = b;
        m.batch.len = n;
    }
    srv_send_msg(c, &m);
}

/* Connects, sends HELLO with tok, returns the ERROR code the server sends
 * (0 if WELCOME) and checks for the 1008 close after an error. */
static uint64_t try_hello(int port, const char *tok)
{
    td_cli_conn *c = srv_connect(port, 3000);
    uint64_t code = 999;
    if (!c)
        return code;
    hello(c, tok);
    td_cli_msg *m = td_cli_expect(c, 0, 3000);
    td_srv_msg d = srv_decode(m);
    if (d.type == TD_SRV_MSG_WELCOME)
        code = 0;
    else if (d.type == TD_SRV_MSG_ERROR) {
        int cc = 0;
        code = d.code;
        td_cli_wait(srv_ctx(0), srv_closed_pred, c, 3000);
        if (!srv_closed(c, &cc) || cc != 1008) {
            fprintf(stderr, "no 1008 close after error %llu (close %d)\n",
                    (unsigned long long)code, cc);
            td_check_failures++;
        }
    }
    td_cli_msg_free(m);
    td_cli_conn_free(c);
    return code;
}

int main(int argc, char **argv)
{
    char key[300], key2[300], pub[300], cmd[800];
    char *tok_rw = NULL, *tok_r = NULL, *tok_forged = NULL, *tok_short = NULL, *tok_1s = NULL;
    int port = 0, pid = -1;
    td_cli_conn *c = NULL;
    td_cli_msg *m = NULL;
    td_srv_msg d;
    td_crdt_doc *doc = NULL;
    uint8_t *batch = NULL;
    size_t blen = 0;
    td_cli_server srv = {0};

    td_check_keep_going = 1;
    if (argc < 2)
        return 2;
    g_bin = argv[1];
    if (sodium_init() < 0 || !srv_ctx(0))
        return 1;
    REQUIRE(srv_scratch_dir(g_dir, sizeof g_dir, "auth") == 0);
    snprintf(key, sizeof key, "%s/key", g_dir);
    snprintf(key2, sizeof key2, "%s/other", g_dir);
    snprintf(pub, sizeof pub, "%s/key.pub", g_dir);
    snprintf(cmd, sizeof cmd, "%s keygen --out %s >/dev/null && %s keygen --out %s >/dev/null",
             g_bin, key, g_bin, key2);
    REQUIRE(system(cmd) == 0);
    /* keygen never overwrites. */
    snprintf(cmd, sizeof cmd, "%s keygen --out %s 2>/dev/null", g_bin, key);
    CHECK(system(cmd) != 0);

    tok_rw = mint(key, "alice", "team/*", "rw", "3600");
    tok_r = mint(key, "bob", "team/*", "r", "3600");
    tok_forged = mint(key2, "mallory", "*", "rw", "3600");
    tok_short = mint(key, "carol", "team/*", "rw", "2");
    tok_1s = mint(key, "dave", "*", "rw", "1");
    REQUIRE(tok_rw && tok_r && tok_forged && tok_short && tok_1s);

    char data[300];
    snprintf(data, sizeof data, "%s/data", g_dir);
    const char *extra[] = {"--public-key", pub, NULL};
    pid = srv_start(&srv, g_bin, data, extra, &port);
    REQUIRE(pid > 0);

    CHECK(try_hello(port, NULL) == TD_SRV_E_AUTH_REQUIRED);
    CHECK(try_hello(port, "not-a-token") == TD_SRV_E_TOKEN_INVALID);
    CHECK(try_hello(port, tok_forged) == TD_SRV_E_TOKEN_INVALID);
    CHECK(try_hello(port, tok_rw) == 0);

    /* Writer: pattern enforced; a write lands. */
    c = srv_connect(port, 3000);
    REQUIRE(c);
    hello(c, tok_rw);
    m = td_cli_expect(c, TD_SRV_MSG_WELCOME, 3000);
    d = srv_decode(m);
    CHECK(d.type == TD_SRV_MSG_WELCOME && d.rights == 7 && d.user.len == 5);
    td_cli_msg_free(m);
    doc_msg(c, TD_SRV_MSG_SUBSCRIBE, "other/doc", NULL, 0);
    m = td_cli_expect(c, TD_SRV_MSG_ERROR, 3000);
    CHECK(srv_decode(m).code == TD_SRV_E_FORBIDDEN);
    td_cli_msg_free(m);
    doc_msg(c, TD_SRV_MSG_SUBSCRIBE, "team/a", NULL, 0);
    m = td_cli_expect(c, TD_SRV_MSG_SYNC, 3000);
    REQUIRE(m);
    td_cli_msg_free(m);
    td_crdt_options o = {0};
    o.agent = 5;
    td_crdt_obj t;
    REQUIRE(td_crdt_doc_new(&o, &doc) == TD_CRDT_OK);
    REQUIRE(td_crdt_root(doc, TD_CRDT_TEXT, "body", 4, &t) == TD_CRDT_OK);
    REQUIRE(td_crdt_text_insert(doc, t, 0, "ok", 2) == TD_CRDT_OK);
    REQUIRE(td_crdt_commit(doc, &batch, &blen) == TD_CRDT_OK);
    doc_msg(c, TD_SRV_MSG_UPDATE, "team/a", batch, blen);
    m = td_cli_expect(c, TD_SRV_MSG_ACK, 3000);
    CHECK(m != NULL);
    td_cli_msg_free(m);
    td_crdt_buf_free(doc, batch);
    batch = NULL;
    td_cli_conn_free(c);
    c = NULL;

    /* Reader: cannot write; the document is unchanged. */
    c = srv_connect(port, 3000);
    REQUIRE(c);
    hello(c, tok_r);
    m = td_cli_expect(c, TD_SRV_MSG_WELCOME, 3000);
    td_cli_msg_free(m);
    doc_msg(c, TD_SRV_MSG_SUBSCRIBE, "team/a", NULL, 0);
    m = td_cli_expect(c, TD_SRV_MSG_SYNC, 3000);
    td_cli_msg_free(m);
    REQUIRE(td_crdt_text_insert(doc, t, 0, "XX", 2) == TD_CRDT_OK);
    REQUIRE(td_crdt_commit(doc, &batch, &blen) == TD_CRDT_OK);
    doc_msg(c, TD_SRV_MSG_UPDATE, "team/a", batch, blen);
    m = td_cli_expect(c, TD_SRV_MSG_ERROR, 3000);
    CHECK(srv_decode(m).code == TD_SRV_E_READ_ONLY);
    td_cli_msg_free(m);
    td_cli_conn_free(c);
    c = NULL;

    /* HTTP export needs a token. */
    char *body = NULL, path[3000];
    CHECK(srv_http_get(port, "/docs/team%2Fa", &body) == 401);
    free(body);
    snprintf(path, sizeof path, "/docs/team%%2Fa?token=%s", tok_r);
    CHECK(srv_http_get(port, path, &body) == 200);
    CHECK(body && strstr(body, "\"ok\"") && !strstr(body, "XX"));
    free(body);
    snprintf(path, sizeof path, "/docs/elsewhere?token=%s", tok_r);
    CHECK(srv_http_get(port, path, &body) == 403);
    free(body);

    /* Expiry mid-session: ERROR token_expired, writes refused, then a
     * fresh HELLO restores them. carol writes with an agent of her own:
     * agent 5 is alice's (PROTOCOL.md section 12). */
    td_crdt_buf_free(doc, batch);
    td_crdt_doc_free(doc);
    o.agent = 6;
    REQUIRE(td_crdt_doc_new(&o, &doc) == TD_CRDT_OK);
    REQUIRE(td_crdt_root(doc, TD_CRDT_TEXT, "body", 4, &t) == TD_CRDT_OK);
    REQUIRE(td_crdt_text_insert(doc, t, 0, "cc", 2) == TD_CRDT_OK);
    REQUIRE(td_crdt_commit(doc, &batch, &blen) == TD_CRDT_OK);
    /* Minted now, not with the others: its 2 s must not run out before the
     * HELLO on a slow (sanitizer, loaded) machine. */
    free(tok_short);
    tok_short = mint(key, "carol", "team/*", "rw", "2");
    REQUIRE(tok_short);
    c = srv_connect(port, 3000);
    REQUIRE(c);
    hello(c, tok_short);
    m = td_cli_expect(c, TD_SRV_MSG_WELCOME, 3000);
    REQUIRE(m);
    td_cli_msg_free(m);
    doc_msg(c, TD_SRV_MSG_SUBSCRIBE, "team/a", NULL, 0);
    m = td_cli_expect(c, TD_SRV_MSG_SYNC, 3000);
    td_cli_msg_free(m);
    m = td_cli_expect(c, TD_SRV_MSG_ERROR, 4000);
    d = srv_decode(m);
    CHECK(d.code == TD_SRV_E_TOKEN_EXPIRED);
    td_cli_msg_free(m);
    doc_msg(c, TD_SRV_MSG_UPDATE, "team/a", batch, blen);
    m = td_cli_expect(c, TD_SRV_MSG_ERROR, 3000);
    CHECK(srv_decode(m).code == TD_SRV_E_TOKEN_EXPIRED);
    td_cli_msg_free(m);
    char *fresh = mint(key, "carol", "team/*", "rw", "3600");
    REQUIRE(fresh);
    hello(c, fresh);
    free(fresh);
    m = td_cli_expect(c, TD_SRV_MSG_WELCOME, 3000);
    CHECK(m != NULL);
    td_cli_msg_free(m);
    doc_msg(c, TD_SRV_MSG_UPDATE, "team/a", batch, blen);
    m = td_cli_expect(c, TD_SRV_MSG_ACK, 3000);
    CHECK(m != NULL);
    td_cli_msg_free(m);
    td_cli_conn_free(c);
    c = NULL;

    /* A token already expired at HELLO. */
    CHECK(try_hello(port, tok_1s) == TD_SRV_E_TOKEN_EXPIRED);

    CHECK(srv_stop(&srv) == 0);
    pid = -1;

out:
    td_cli_conn_free(c);
    if (pid > 0)
        srv_stop(&srv);
    if (batch)
        td_crdt_buf_free(doc, batch);
    if (doc)
        td_crdt_doc_free(doc);
    free(tok_rw);
    free(tok_r);
    free(tok_forged);
    free(tok_short);
    free(tok_1s);
    srv_ctx_free();
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        td_check_failures++;
    return td_check_status("srv_auth");
}
