/*
 * test_jwt.c -- issue 13, bar 2: standard tokens (JWT, EdDSA/Ed25519).
 *
 * jwt_mint.mjs mints tokens with the stock `jose` library in Node from a
 * fresh key pair whose public half it writes as PEM and as JWK. Then:
 *   1. `serve --public-key pub.pem`: the README's token is accepted (WELCOME
 *      naming the user with the right rights, GET /docs with Bearer 200), so
 *      are a read-only one and one with typ/kid/iat; every bad one -- forged
 *      signature, tampered payload, wrong key, expired, alg none (unsigned
 *      and signed), alg other than EdDSA, HS256 keyed with the public key,
 *      crit or jwk in the header, missing claims, bad rights letters, bad
 *      dates, duplicate claims, non-strict base64url, oversized -- gets
 *      ERROR token_invalid (token_expired for the expired one) and 1008 on
 *      HELLO, and 401 over HTTP;
 *   2. the same key as a JWK: accepted; another key's token refused;
 *   3. tandem's own key file: `tandem token --jwt` is accepted, and so is a
 *      classic tandem token on the same server; jose's (other key) refused.
 *
 * jwt_mint.mjs sits next to this file; jose is client-js's dependency, both
 * found from __FILE__ (CMake compiles with absolute source paths).
 */
#define _GNU_SOURCE
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "it_util.h"

#define DOC "team/plan"
#define MAXT 64

static char g_name[MAXT][32];
static char *g_tok[MAXT];
static int g_ntok;

static const char *tok(const char *name)
{
    for (int i = 0; i < g_ntok; i++)
        if (strcmp(g_name[i], name) == 0)
            return g_tok[i];
    CHECK_MSG(0, "jwt_mint.mjs printed no token '%s'", name);
    return NULL;
}

/* Runs cmd, returns its whole stdout (malloc'd); fails the test on a
 * non-zero exit. */
static char *run(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    CHECK_MSG(p != NULL, "cannot run %s", cmd);
    char *buf = NULL;
    size_t cap = 0, len = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            buf = realloc(buf, cap);
            CHECK(buf != NULL);
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    int rc = pclose(p);
    CHECK_MSG(rc == 0, "'%s' exited with %d", cmd, rc);
    CHECK(buf != NULL);
    buf[len] = '\0';
    return buf;
}

static void load_tokens(const char *dir)
{
    char src[1024], cmd[4096];
    snprintf(src, sizeof src, "%s", __FILE__);
    const char *here = dirname(src);
    snprintf(cmd, sizeof cmd,
             "node '%s/jwt_mint.mjs' '%s/../../client-js/node_modules/jose/dist/webapi/index.js'"
             " '%s'",
             here, here, dir);
    char *out = run(cmd), *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *sp = strchr(line, ' ');
        CHECK(sp != NULL && g_ntok < MAXT && (size_t)(sp - line) < sizeof g_name[0]);
        memcpy(g_name[g_ntok], line, (size_t)(sp - line));
        g_name[g_ntok][sp - line] = '\0';
        g_tok[g_ntok] = strdup(sp + 1);
        CHECK(g_tok[g_ntok] != NULL);
        g_ntok++;
    }
    free(out);
    printf("jose minted %d tokens\n", g_ntok);
}

/* `tandem token --jwt ...`, trimmed. */
static char *cli_jwt(const char *key, const char *user, const char *rights)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "'%s' token --jwt --key '%s' --user %s --doc 'team/*' --rights %s --ttl 3600",
             it_bin(), key, user, rights);
    char *t = run(cmd);
    t[strcspn(t, "\r\n")] = '\0';
    return t;
}

static int got_error_or_closed(void *p)
{
    td_cli_conn *c = p;
    return td_cli_error_count(c) > 0 || td_cli_conn_state(c) == TD_CLI_CLOSED;
}

static int is_closed(void *p)
{
    return td_cli_conn_state((td_cli_conn *)p) == TD_CLI_CLOSED;
}

/* HELLO with token: WELCOME with these rights naming user (raw, to read the
 * WELCOME itself), a client that syncs DOC (and writes if it may), and
 * GET /docs/DOC with Bearer 200. */
static void accepted(td_cli_server *s, const char *what, const char *token, const char *user,
                     uint64_t rights)
{
    td_cli_conn_opts o = {0};
    o.raw = 1;
    td_cli_conn *r = td_cli_connect(it_ctx(), s->url, &o);
    CHECK(r != NULL);
    CHECK_MSG(td_cli_wait_open(r, 10000), "%s: raw connection did not open", what);
    td_cli_buf b = {0};
    td_cli_put_u8(&b, TD_CLI_HELLO);
    td_cli_put_varint(&b, 1);
    td_cli_put_bytes(&b, token, strlen(token));
    td_cli_put_varint(&b, 4242);
    CHECK(!b.oom && td_cli_send_raw(r, b.data, b.len, 0) == 0);
    td_cli_buf_free(&b);
    td_cli_msg *m = td_cli_expect(r, TD_CLI_WELCOME, 10000);
    CHECK_MSG(m != NULL, "%s: no WELCOME (closed %d)", what, td_cli_close_code(r));
    /* the user is a length-prefixed string of WELCOME */
    char needle[64];
    size_t ul = strlen(user);
    needle[0] = (char)ul;
    memcpy(needle + 1, user, ul);
    CHECK_MSG(memmem(m->data, m->len, needle, ul + 1) != NULL, "%s: WELCOME does not name %s",
              what, user);
    td_cli_msg_free(m);
    td_cli_conn_free(r);

    o = (td_cli_conn_opts){0};
    o.token = token;
    td_cli_conn *c = td_cli_connect(it_ctx(), s->url, &o);
    CHECK(c != NULL);
    td_cli_doc *d = td_cli_subscribe(c, DOC, NULL);
    CHECK_MSG(it_wait_ready(c, 10000), "%s: not ready", what);
    CHECK_MSG(td_cli_conn_stats(c)->welcome_rights == rights, "%s: rights %llu, want %llu", what,
              (unsigned long long)td_cli_conn_stats(c)->welcome_rights,
              (unsigned long long)rights);
    if (rights & 2) {
        td_crdt_obj t;
        CHECK(td_crdt_root(td_cli_doc_crdt(d), TD_CRDT_TEXT, "body", 4, &t) == TD_CRDT_OK);
        CHECK(td_crdt_text_insert(td_cli_doc_crdt(d), t, 0, "x", 1) == TD_CRDT_OK);
        CHECK(td_cli_commit(d, NULL) == 0);
        CHECK_MSG(it_wait_converged(&d, 1, 10000), "%s: write not acknowledged", what);
    }
    char *json = NULL;
    int st = it_get_doc(s, DOC, token, &json);
    free(json);
    CHECK_MSG(st == 200, "%s: GET /docs with Bearer -> %d", what, st);
    printf("%-22s accepted: user %s, rights %llu, HTTP 200\n", what, user,
           (unsigned long long)rights);
    td_cli_conn_free(c);
}

/* HELLO with token: ERROR want (alt: also allowed) and close 1008, no
 * WELCOME; GET /docs with it: 401. With alt, the close is not required:
 * HELLO's codec answers bad_message to a token field over TD_SRV_TOKEN_MAX
 * before any verifier sees it, and bad_message leaves the connection open
 * (PROTOCOL.md table 6). */
static void refused(td_cli_server *s, const char *name, uint64_t want, uint64_t alt)
{
    const char *token = tok(name);
    td_cli_conn_opts o = {0};
    o.token = token;
    td_cli_conn *c = td_cli_connect(it_ctx(), s->url, &o);
    CHECK(c != NULL);
    CHECK_MSG(td_cli_wait(it_ctx(), got_error_or_closed, c, 10000), "%s: no answer", name);
    if (!alt)
        CHECK_MSG(td_cli_wait(it_ctx(), is_closed, c, 5000), "%s: connection not closed", name);
    else
        td_cli_wait(it_ctx(), NULL, NULL, 200); /* a WELCOME would show here */
    td_cli_error e;
    td_cli_last_error(c, &e);
    int cc = td_cli_close_code(c);
    CHECK_MSG(e.code == want || (alt && e.code == alt), "%s: ERROR %llu (%s), want %llu", name,
              (unsigned long long)e.code, e.msg, (unsigned long long)want);
    CHECK_MSG(alt || cc == 1008, "%s: close code %d, want 1008", name, cc);
    CHECK_MSG(td_cli_conn_stats(c)->by_type[TD_CLI_WELCOME] == 0, "%s: got a WELCOME", name);
    td_cli_conn_free(c);
    char *json = NULL;
    int st = it_get_doc(s, DOC, token, &json);
    free(json);
    CHECK_MSG(st == 401, "%s: GET /docs with Bearer -> %d, want 401", name, st);
    printf("%-22s refused: ERROR %llu (%s), close %d, HTTP 401\n", name,
           (unsigned long long)e.code, e.msg, cc);
}

int main(int argc, char **argv)
{
    it_init(argc, argv, "integration_jwt");
    const char *key = it_keygen();
    char dir[700], pem[760], jwk[760], pub[760];
    snprintf(dir, sizeof dir, "%s", key);
    snprintf(dir, sizeof dir, "%s", dirname(dir));
    snprintf(pem, sizeof pem, "%s/pub.pem", dir);
    snprintf(jwk, sizeof jwk, "%s/pub.jwk", dir);
    snprintf(pub, sizeof pub, "%s.pub", key);
    load_tokens(dir);

    /* 1. PEM */
    const char *xpem[] = {"--public-key", pem, NULL};
    td_cli_server *s = it_server(xpem);
    accepted(s, "jose (README)", tok("good"), "alice", 7);
    accepted(s, "jose read-only", tok("readonly"), "bob", 5);
    accepted(s, "jose typ+kid+iat", tok("typ_kid_iat"), "carol", 7);
    refused(s, "expired", TD_CLI_E_TOKEN_EXPIRED, 0);
    static const char *const bad[] = {
        "wrongkey", "forged", "tampered", "padded", "two_segments", "empty_sig",
        "std_base64", "none", "none_signed", "ed25519_alg", "crit", "jwk_header",
        "hs256_raw", "hs256_pem", "missing_sub", "missing_exp", "missing_doc",
        "missing_rights", "rights_x", "rights_dup", "rights_empty", "rights_array",
        "exp_string", "exp_fraction", "nbf_future", "sub_control", "sub_long",
        "dup_claim", "header_long"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        refused(s, bad[i], TD_CLI_E_TOKEN_INVALID, 0);
    /* over TD_SRV_TOKEN_MAX: HELLO's codec may refuse it before the verifier */
    refused(s, "oversized", TD_CLI_E_TOKEN_INVALID, TD_CLI_E_BAD_MESSAGE);

    /* 2. JWK */
    const char *xjwk[] = {"--public-key", jwk, NULL};
    s = it_server(xjwk);
    accepted(s, "jose, JWK key", tok("good"), "alice", 7);
    accepted(s, "jose read-only, JWK", tok("readonly"), "bob", 5);
    refused(s, "wrongkey", TD_CLI_E_TOKEN_INVALID, 0);
    refused(s, "forged", TD_CLI_E_TOKEN_INVALID, 0);
    refused(s, "hs256_raw", TD_CLI_E_TOKEN_INVALID, 0);

    /* 3. tandem's own key file */
    const char *xpub[] = {"--public-key", pub, NULL};
    s = it_server(xpub);
    char *j_rw = cli_jwt(key, "dave", "rw"), *j_r = cli_jwt(key, "erin", "r");
    CHECK(strchr(j_rw, '.') != NULL);
    accepted(s, "tandem token --jwt", j_rw, "dave", 7);
    accepted(s, "tandem token --jwt r", j_r, "erin", 5);
    char *classic = it_token(key, "frank", "team/*", "rw", "3600");
    accepted(s, "tandem token (own)", classic, "frank", 7);
    refused(s, "good", TD_CLI_E_TOKEN_INVALID, 0); /* jose's key is not this one */
    free(j_rw);
    free(j_r);
    free(classic);
    for (int i = 0; i < g_ntok; i++)
        free(g_tok[i]);
    it_pass();
}
