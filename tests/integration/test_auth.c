/*
 * test_auth.c -- bar 5 of issue 5: with `tandem keygen`, `tandem token` and
 * `serve --public-key`, a missing, malformed, forged (tampered, or signed by
 * another key) or expired token, a token for another document and a
 * read-only token that writes each get their ERROR (and close code) from
 * PROTOCOL.md table 6, and none of them changes the document. Also: a token
 * that expires during a session (ERROR 8, writes refused, accepted again
 * after a HELLO with a fresh token), a re-HELLO naming another user, and the
 * HTTP export's 401/403/200.
 *
 * The expired token is minted here with libsodium from the secret key file,
 * following PROTOCOL.md section 8 (the CLI refuses a TTL in the past), which
 * also checks that the documented token format is what the server verifies.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "it_util.h"

#define DOC "team/plan"

static char keyfile[700], keyfile2[700];


static void put_varint(uint8_t *p, size_t *n, uint64_t v)
{
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        p[(*n)++] = b | (v ? 0x80 : 0);
    } while (v);
}

/* PROTOCOL.md section 8, from the 64-byte secret key in `key` (base64). */
static char *mint(const char *key, uint64_t rights, uint64_t expires, const char *user,
                  const char *pattern)
{
    FILE *f = fopen(key, "r");
    CHECK(f != NULL);
    char line[256] = {0};
    CHECK(fgets(line, sizeof line, f) != NULL);
    fclose(f);
    line[strcspn(line, "\r\n")] = 0;
    uint8_t sk[64];
    size_t sklen = 0;
    CHECK(sodium_base642bin(sk, sizeof sk, line, strlen(line), NULL, &sklen, NULL,
                            sodium_base64_VARIANT_ORIGINAL) == 0 && sklen == 64);
    uint8_t msg[15 + 600];
    size_t n = 15;
    memcpy(msg, "tandem-token-v1", 15);
    msg[n++] = 1;
    put_varint(msg, &n, rights);
    put_varint(msg, &n, expires);
    put_varint(msg, &n, strlen(user));
    memcpy(msg + n, user, strlen(user));
    n += strlen(user);
    put_varint(msg, &n, strlen(pattern));
    memcpy(msg + n, pattern, strlen(pattern));
    n += strlen(pattern);
    uint8_t tok[600 + 64];
    size_t plen = n - 15;
    memcpy(tok, msg + 15, plen);
    crypto_sign_detached(tok + plen, NULL, msg, n, sk);
    size_t b64len = sodium_base64_encoded_len(plen + 64, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = malloc(b64len);
    CHECK(out != NULL);
    sodium_bin2base64(out, b64len, tok, plen + 64, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return out;
}

typedef struct outcome {
    uint64_t code;   /* ERROR code expected */
    int close_code;  /* 0: the connection stays */
} outcome;

static int got_error_or_closed(void *p)
{
    td_cli_conn *c = p;
    return td_cli_error_count(c) > 0 || td_cli_conn_state(c) == TD_CLI_CLOSED;
}

static int is_closed(void *p)
{
    return td_cli_conn_state((td_cli_conn *)p) == TD_CLI_CLOSED;
}

/* Connects with token, optionally subscribes and writes; checks the ERROR
 * and close code. */
static void expect_refused(td_cli_server *s, const char *what, const char *token,
                           const char *doc, int write, outcome want)
{
    td_cli_conn_opts o = {0};
    o.token = token;
    td_cli_conn *c = td_cli_connect(it_ctx(), s->url, &o);
    CHECK(c != NULL);
    td_cli_doc *d = doc ? td_cli_subscribe(c, doc, NULL) : NULL;
    if (d && write) {
        td_crdt_obj t;
        CHECK(td_crdt_root(td_cli_doc_crdt(d), TD_CRDT_TEXT, "body", 4, &t) == TD_CRDT_OK);
        CHECK(td_crdt_text_insert(td_cli_doc_crdt(d), t, 0, "EVIL", 4) == TD_CRDT_OK);
        CHECK(td_cli_commit(d, NULL) == 0);
    }
    CHECK_MSG(td_cli_wait(it_ctx(), got_error_or_closed, c, 10000), "%s: no answer", what);
    if (want.close_code)
        CHECK_MSG(td_cli_wait(it_ctx(), is_closed, c, 5000), "%s: connection not closed", what);
    else
        td_cli_wait(it_ctx(), NULL, NULL, 100);
    td_cli_error e;
    td_cli_last_error(c, &e);
    int cc = td_cli_close_code(c);
    printf("%-34s -> ERROR %llu (%s), %s %d\n", what, (unsigned long long)e.code, e.msg,
           td_cli_conn_state(c) == TD_CLI_CLOSED ? "closed" : "open", cc);
    CHECK_MSG(e.code == want.code, "%s: ERROR %llu, expected %llu", what,
           (unsigned long long)e.code, (unsigned long long)want.code);
    if (want.close_code)
        CHECK_MSG(cc == want.close_code, "%s: close code %d, expected %d", what, cc,
               want.close_code);
    else
        CHECK_MSG(td_cli_conn_state(c) != TD_CLI_CLOSED, "%s: closed (%d), should stay", what, cc);
    if (d && write)
        CHECK(td_cli_doc_stats_get(d)->batches_acked == 0);
    td_cli_conn_free(c);
}

static int all_acked(void *p)
{
    return td_cli_unacked((td_cli_doc *)p) == 0;
}

int main(int argc, char **argv)
{
    it_init(argc, argv, "integration_auth");
    if (sodium_init() < 0)
        it_fail();
    /* two key pairs (removed at exit) */
    snprintf(keyfile, sizeof keyfile, "%s", it_keygen());
    snprintf(keyfile2, sizeof keyfile2, "%s", it_keygen());
    char pub[720];
    snprintf(pub, sizeof pub, "%s.pub", keyfile);
    const char *extra[] = {"--public-key", pub, NULL};
    td_cli_server *s = it_server(extra);

    char *rw = it_token(keyfile, "alice", "team/*", "rw", "3600");
    char *ro = it_token(keyfile, "bob", "team/*", "r", "3600");
    char *other_doc = it_token(keyfile, "carol", "elsewhere/*", "rw", "3600");
    char *foreign = it_token(keyfile2, "mallory", "*", "rw", "3600");
    char *expired = mint(keyfile, 7, (uint64_t)time(NULL) - 10, "dave", "*");
    char *forged = strdup(rw);
    size_t fl = strlen(forged);
    forged[fl - 5] = forged[fl - 5] == 'A' ? 'B' : 'A'; /* inside the signature */
    /* a token with a flipped payload byte (rights) but the old signature */
    char *tampered = mint(keyfile, 3, (uint64_t)time(NULL) + 3600, "bob", "team/*");
    {
        /* swap in the read-only token's signature: payload says rw */
        char *sig_src = ro;
        size_t tl = strlen(tampered), sl = strlen(sig_src);
        size_t sig_chars = 86; /* 64 bytes in base64url without padding */
        if (tl > sig_chars && sl > sig_chars)
            memcpy(tampered + tl - sig_chars, sig_src + sl - sig_chars, sig_chars);
    }

    /* a writer puts content in */
    td_cli_conn_opts o = {0};
    o.token = rw;
    td_cli_conn *w = td_cli_connect(it_ctx(), s->url, &o);
    td_cli_doc *wd = td_cli_subscribe(w, DOC, NULL);
    CHECK(it_wait_ready(w, 10000));
    CHECK(td_cli_conn_stats(w)->welcome_rights == 7);
    td_crdt_obj t;
    CHECK(td_crdt_root(td_cli_doc_crdt(wd), TD_CRDT_TEXT, "body", 4, &t) == TD_CRDT_OK);
    CHECK(td_crdt_text_insert(td_cli_doc_crdt(wd), t, 0, "the plan", 8) == TD_CRDT_OK);
    CHECK(td_cli_commit(wd, NULL) == 0);
    CHECK(it_wait_converged(&wd, 1, 10000));
    char *before = td_cli_doc_json(wd);

    /* refused at HELLO: the HELLO alone (see the pipelined case below) */
    expect_refused(s, "missing token", NULL, NULL, 0, (outcome){TD_CLI_E_AUTH_REQUIRED, 1008});
    expect_refused(s, "malformed token", "not a token!", NULL, 0,
                   (outcome){TD_CLI_E_TOKEN_INVALID, 1008});
    expect_refused(s, "malformed token (base64, short)", "AAAA", NULL, 0,
                   (outcome){TD_CLI_E_TOKEN_INVALID, 1008});
    expect_refused(s, "forged signature", forged, NULL, 0, (outcome){TD_CLI_E_TOKEN_INVALID, 1008});
    expect_refused(s, "tampered payload", tampered, NULL, 0,
                   (outcome){TD_CLI_E_TOKEN_INVALID, 1008});
    expect_refused(s, "signed by another key", foreign, NULL, 0,
                   (outcome){TD_CLI_E_TOKEN_INVALID, 1008});
    expect_refused(s, "expired token", expired, NULL, 0, (outcome){TD_CLI_E_TOKEN_EXPIRED, 1008});
    /* a client may pipeline SUBSCRIBE and UPDATE behind its HELLO (PROTOCOL.md
     * section 5 does on reconnect): the ERROR and the 1008 must still arrive */
    int rounds = getenv("IT_AUTH_PIPELINE_ROUNDS") ? atoi(getenv("IT_AUTH_PIPELINE_ROUNDS")) : 6;
    for (int i = 0; i < rounds; i++) {
        expect_refused(s, "missing token + SUBSCRIBE + UPDATE", NULL, DOC, 1,
                       (outcome){TD_CLI_E_AUTH_REQUIRED, 1008});
        expect_refused(s, "forged token + SUBSCRIBE + UPDATE", forged, DOC, 1,
                       (outcome){TD_CLI_E_TOKEN_INVALID, 1008});
    }
    expect_refused(s, "wrong document", other_doc, DOC, 0, (outcome){TD_CLI_E_FORBIDDEN, 0});
    expect_refused(s, "read-only token writing", ro, DOC, 1, (outcome){TD_CLI_E_READ_ONLY, 0});

    /* read-only may read and send presence */
    {
        td_cli_conn_opts ro_o = {0};
        ro_o.token = ro;
        td_cli_conn *r = td_cli_connect(it_ctx(), s->url, &ro_o);
        td_cli_doc *rd = td_cli_subscribe(r, DOC, NULL);
        CHECK(it_wait_ready(r, 10000) && it_wait_docs_synced(&rd, 1, 10000));
        CHECK(td_cli_conn_stats(r)->welcome_rights == 5);
        char *js = td_cli_doc_json(rd);
        CHECK(it_json_equal(js, before));
        free(js);
        CHECK(td_cli_presence(rd, "{}", 2) == 0);
        td_cli_wait(it_ctx(), NULL, NULL, 200);
        CHECK(td_cli_error_count(r) == 0);
        /* a re-HELLO for another user closes the connection */
        CHECK(td_cli_set_token(r, rw, 1) == 0);
        CHECK(td_cli_wait(it_ctx(), is_closed, r, 5000));
        td_cli_error e;
        td_cli_last_error(r, &e);
        printf("%-34s -> ERROR %llu, close %d\n", "re-HELLO as another user",
               (unsigned long long)e.code, td_cli_close_code(r));
        CHECK(e.code == TD_CLI_E_TOKEN_INVALID && td_cli_close_code(r) == 1008);
        td_cli_conn_free(r);
    }

    /* HTTP export */
    char *js = NULL;
    int st = it_get_doc(s, DOC, NULL, &js);
    printf("GET /docs without token -> %d\n", st);
    CHECK(st == 401);
    free(js);
    st = it_get_doc(s, DOC, other_doc, &js);
    printf("GET /docs with another document's token -> %d\n", st);
    CHECK(st == 403);
    free(js);
    st = it_get_doc(s, DOC, forged, &js);
    CHECK(st == 401);
    free(js);
    st = it_get_doc(s, DOC, ro, &js);
    CHECK(st == 200 && it_json_equal(js, before));
    free(js);

    /* a token expiring during the session */
    {
        char *short_tok = it_token(keyfile, "alice", "team/*", "rw", "2");
        td_cli_conn_opts so = {0};
        so.token = short_tok;
        td_cli_conn *c = td_cli_connect(it_ctx(), s->url, &so);
        td_cli_doc *d = td_cli_subscribe(c, DOC, NULL);
        CHECK(it_wait_ready(c, 10000) && it_wait_docs_synced(&d, 1, 10000));
        CHECK(td_cli_wait(it_ctx(), got_error_or_closed, c, 5000));
        td_cli_error e;
        td_cli_last_error(c, &e);
        printf("%-34s -> ERROR %llu (doc \"%s\")\n", "token expires in session",
               (unsigned long long)e.code, e.doc);
        CHECK(e.code == TD_CLI_E_TOKEN_EXPIRED && e.doc[0] == 0);
        CHECK(td_cli_conn_state(c) != TD_CLI_CLOSED);
        td_crdt_obj tt;
        CHECK(td_crdt_root(td_cli_doc_crdt(d), TD_CRDT_TEXT, "body", 4, &tt) == TD_CRDT_OK);
        CHECK(td_crdt_text_insert(td_cli_doc_crdt(d), tt, 0, "late ", 5) == TD_CRDT_OK);
        uint64_t errs = td_cli_error_count(c);
        CHECK(td_cli_commit(d, NULL) == 0);
        CHECK(td_cli_wait(it_ctx(), NULL, NULL, 300));
        td_cli_last_error(c, &e);
        CHECK_MSG(td_cli_error_count(c) > errs && e.code == TD_CLI_E_TOKEN_EXPIRED && e.batch_id,
               "write after expiry: ERROR %llu", (unsigned long long)e.code);
        CHECK(td_cli_doc_stats_get(d)->batches_acked == 0);
        char *now_js = NULL;
        CHECK(it_get_doc(s, DOC, ro, &now_js) == 200 && it_json_equal(now_js, before));
        free(now_js);
        /* fresh token on the same connection: the retried batch goes in */
        char *fresh = it_token(keyfile, "alice", "team/*", "rw", "3600");
        CHECK(td_cli_set_token(c, fresh, 1) == 0);
        CHECK_MSG(td_cli_wait(it_ctx(), all_acked, d, 5000),
               "batch not accepted after a fresh HELLO");
        printf("%-34s -> accepted after a fresh HELLO\n", "write after re-HELLO");
        free(fresh);
        free(short_tok);
        /* both replicas, so the writer's copy has the retried batch too
         * (alone, it counted as converged before its REMOTE arrived) */
        td_cli_doc *both[2] = {wd, d};
        CHECK(it_wait_converged(both, 2, 5000));
        td_cli_conn_free(c);
    }

    /* nothing else changed the document */
    char *after_js = NULL;
    CHECK(it_get_doc(s, DOC, rw, &after_js) == 200);
    char *expect = td_cli_doc_json(wd);
    CHECK(it_json_equal(after_js, expect));
    CHECK_MSG(strstr(after_js, "EVIL") == NULL, "a refused write got in: %s", after_js);
    printf("document after all refusals: %s\n", after_js);
    free(after_js);
    free(expect);
    free(before);
    free(rw);
    free(ro);
    free(other_doc);
    free(foreign);
    free(expired);
    free(forged);
    free(tampered);
    it_pass();
}
