/*
 * test_tokens.c -- issue 10, item 8 (bar 5): narrowing and expiry end
 * access as PROTOCOL.md section 8 says.
 *
 *   1. narrowing: a session subscribed to team/a and team/b on a token for
 *      team/(anything) re-HELLOs with a token for team/a only: ERROR forbidden naming
 *      team/b; another client's edit and presence in team/b no longer reach
 *      it (no REMOTE, no PEERS); its UPDATE and PRESENCE for team/b and a new
 *      SUBSCRIBE are refused and change nothing; team/a still works both ways;
 *   2. a read-only re-HELLO (same user): WELCOME with rights 5, UPDATE gets
 *      read_only and nothing is applied; reading goes on;
 *   3. expiry (--token-grace 1s, a token with ttl 2s): ERROR token_expired
 *      (doc empty), then UPDATE and SUBSCRIBE get token_expired while REMOTE
 *      still arrives, and the connection is closed with 1008 between 0.8 s
 *      and 2.5 s (3.5 s under sanitizers) after the ERROR;
 *   4. a fresh HELLO within the grace keeps the connection: past the grace it
 *      is still open, the write refused meanwhile is ACKed, and it converges.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "it_util.h"

#define DA "team/a"
#define DB "team/b"

#define MAXREC 256
typedef struct errlog {
    int n;
    uint64_t code[MAXREC], batch[MAXREC], t_us[MAXREC];
    char doc[MAXREC][64];
} errlog;

static void on_error(td_cli_conn *c, td_cli_doc *d, uint64_t code, uint64_t batch_id,
                     const char *msg, size_t msg_len, void *ud)
{
    (void)c, (void)msg, (void)msg_len;
    errlog *l = ud;
    if (l->n >= MAXREC)
        return;
    l->code[l->n] = code;
    l->batch[l->n] = batch_id;
    l->t_us[l->n] = td_cli_now_us();
    snprintf(l->doc[l->n], sizeof l->doc[0], "%s", d ? td_cli_doc_id(d) : "");
    l->n++;
}

/* Index of the first entry from `from` with this code (any code when 0; and
 * doc, and batch when not NULL / 0), or -1. */
static int find_err(const errlog *l, int from, uint64_t code, const char *doc, uint64_t batch)
{
    for (int i = from; i < l->n; i++)
        if ((!code || l->code[i] == code) && (!doc || strcmp(l->doc[i], doc) == 0) &&
            (!batch || l->batch[i] == batch))
            return i;
    return -1;
}

typedef struct errwait {
    const errlog *l;
    int from;
    uint64_t code;
    const char *doc;
    uint64_t batch;
} errwait;

static int err_seen(void *p)
{
    errwait *w = p;
    return find_err(w->l, w->from, w->code, w->doc, w->batch) >= 0;
}

/* Waits for an ERROR (code, doc, batch) logged from index `from`; returns its
 * index. */
static int wait_err(errlog *l, int from, uint64_t code, const char *doc, uint64_t batch,
                    int timeout_ms, const char *what)
{
    errwait w = {l, from, code, doc, batch};
    int ok = td_cli_wait(it_ctx(), err_seen, &w, timeout_ms);
    if (!ok) {
        for (int i = from; i < l->n; i++)
            fprintf(stderr, "  logged ERROR %llu doc \"%s\" batch %llu\n",
                    (unsigned long long)l->code[i], l->doc[i], (unsigned long long)l->batch[i]);
    }
    CHECK_MSG(ok, "%s: no ERROR %llu", what, (unsigned long long)code);
    return find_err(l, from, code, doc, batch);
}

typedef struct client {
    td_cli_conn *c;
    td_cli_doc *a, *b;
    errlog log;
} client;

static void client_open(client *k, td_cli_server *s, const char *token, int with_b)
{
    td_cli_conn_opts o = {0};
    o.token = token;
    o.cb.on_error = on_error;
    o.cb.ud = &k->log;
    k->c = td_cli_connect(it_ctx(), s->url, &o);
    CHECK(k->c != NULL);
    k->a = td_cli_subscribe(k->c, DA, NULL);
    k->b = with_b ? td_cli_subscribe(k->c, DB, NULL) : NULL;
    CHECK(it_wait_ready(k->c, 10000));
    td_cli_doc *ds[2] = {k->a, k->b};
    CHECK(it_wait_docs_synced(ds, with_b ? 2 : 1, 10000));
}

static int all_acked(void *p)
{
    return td_cli_unacked((td_cli_doc *)p) == 0;
}

static void edit_acked(td_cli_doc *d, const char *what)
{
    uint64_t id = 0;
    while (id == 0) {
        it_random_edits(td_cli_doc_crdt(d), 2);
        CHECK(td_cli_commit(d, &id) == 0);
    }
    CHECK_MSG(td_cli_wait(it_ctx(), all_acked, d, 10000), "%s: edit not ACKed", what);
}

/* Sends an UPDATE of the replica's new local ops as a raw frame (not
 * tracked, so the library does not resend it). */
static void raw_update(td_cli_doc *d, uint64_t batch_id)
{
    it_random_edits(td_cli_doc_crdt(d), 3);
    size_t len;
    uint8_t *b = it_commit(td_cli_doc_crdt(d), &len);
    td_cli_buf m = {0};
    td_cli_put_u8(&m, TD_CLI_UPDATE);
    td_cli_put_bytes(&m, td_cli_doc_id(d), strlen(td_cli_doc_id(d)));
    td_cli_put_varint(&m, batch_id);
    td_cli_put_bytes(&m, b, len);
    CHECK(!m.oom && td_cli_send_raw(td_cli_doc_conn(d), m.data, m.len, 0) == 0);
    td_cli_buf_free(&m);
    free(b);
}

static void raw_msg_doc(td_cli_conn *c, int type, const char *doc, const void *tail,
                        size_t tail_len)
{
    td_cli_buf m = {0};
    td_cli_put_u8(&m, (uint8_t)type);
    td_cli_put_bytes(&m, doc, strlen(doc));
    td_cli_put_raw(&m, tail, tail_len);
    CHECK(!m.oom && td_cli_send_raw(c, m.data, m.len, 0) == 0);
    td_cli_buf_free(&m);
}

/* A write to a document the token no longer grants: forbidden (the
 * pattern), read_only (no write right there) or not_subscribed (the
 * subscription ended) each refuse it; PROTOCOL.md names none exactly. */
static int refused_code(uint64_t got)
{
    return got == TD_CLI_E_FORBIDDEN || got == TD_CLI_E_READ_ONLY ||
           got == TD_CLI_E_NOT_SUBSCRIBED;
}

typedef struct welcomes {
    td_cli_conn *c;
    uint64_t n;
} welcomes;

static int welcomed(void *p)
{
    welcomes *w = p;
    return td_cli_conn_stats(w->c)->by_type[TD_CLI_WELCOME] >= w->n;
}

typedef struct conv1 {
    td_cli_doc *x, *y;
} conv1;

static int same_json(void *p)
{
    conv1 *c = p;
    char *a = td_cli_doc_json(c->x), *b = td_cli_doc_json(c->y);
    int eq = a && b && strcmp(a, b) == 0;
    free(a);
    free(b);
    return eq;
}

static void narrowing(td_cli_server *s, const char *key)
{
    char *all = it_token(key, "uma", "team/*", "rw", "3600");
    char *only_a = it_token(key, "uma", "team/a", "rw", "3600");
    char *ro = it_token(key, "uma", "team/*", "r", "3600");
    char *wt = it_token(key, "walt", "team/*", "rw", "3600");
    static client x, w;
    client_open(&x, s, all, 1);
    client_open(&w, s, wt, 1);
    edit_acked(w.a, "walt on team/a");
    edit_acked(w.b, "walt on team/b");
    edit_acked(x.b, "uma on team/b");
    td_cli_doc *pa[2] = {x.a, w.a}, *pb[2] = {x.b, w.b};
    CHECK(it_wait_converged(pa, 2, 10000) && it_wait_converged(pb, 2, 10000));

    /* re-HELLO with a token for team/a only */
    int from = x.log.n;
    CHECK(td_cli_set_token(x.c, only_a, 1) == 0);
    int i = wait_err(&x.log, from, TD_CLI_E_FORBIDDEN, DB, 0, 5000, "narrowing");
    welcomes wc = {x.c, 2};
    CHECK_MSG(td_cli_wait(it_ctx(), welcomed, &wc, 5000), "no second WELCOME");
    printf("1: re-HELLO for team/a only: ERROR forbidden naming \"%s\"\n", x.log.doc[i]);
    CHECK_MSG(find_err(&x.log, from, TD_CLI_E_FORBIDDEN, DA, 0) < 0,
              "team/a was ended too");

    /* walt writes and sends presence in team/b, then writes team/a: once
     * team/a's REMOTE is in, anything of team/b would have come before */
    const td_cli_doc_stats *xb = td_cli_doc_stats_get(x.b);
    uint64_t rb = xb->remote_msgs, pb0 = xb->presence_msgs;
    uint64_t peers0 = td_cli_conn_stats(x.c)->by_type[TD_CLI_PEERS];
    edit_acked(w.b, "walt on team/b after the narrowing");
    CHECK(td_cli_presence(w.b, "{\"walt\":1}", 10) == 0);
    td_cli_wait(it_ctx(), NULL, NULL, 200);
    edit_acked(w.a, "walt on team/a after the narrowing");
    conv1 ca = {x.a, w.a};
    CHECK_MSG(td_cli_wait(it_ctx(), same_json, &ca, 10000), "team/a stopped reaching uma");
    td_cli_wait(it_ctx(), NULL, NULL, 200);
    printf("1: after narrowing, team/b: %llu REMOTE, %llu PEERS (team/a still received)\n",
           (unsigned long long)(xb->remote_msgs - rb),
           (unsigned long long)(td_cli_conn_stats(x.c)->by_type[TD_CLI_PEERS] - peers0));
    CHECK_MSG(xb->remote_msgs == rb, "a REMOTE of team/b reached the narrowed session");
    CHECK_MSG(xb->presence_msgs == pb0 &&
                  td_cli_conn_stats(x.c)->by_type[TD_CLI_PEERS] == peers0,
              "PEERS of team/b reached the narrowed session");
    /* team/a: uma still writes */
    edit_acked(x.a, "uma on team/a after the narrowing");
    CHECK(it_wait_converged(pa, 2, 10000));
    CHECK(it_doc_matches(s, DA, wt, w.a));

    /* team/b: UPDATE, PRESENCE and SUBSCRIBE are refused */
    from = x.log.n;
    raw_update(x.b, 9001);
    i = wait_err(&x.log, from, 0, NULL, 9001, 5000, "UPDATE of team/b");
    printf("1: UPDATE of team/b after narrowing -> ERROR %llu\n",
           (unsigned long long)x.log.code[i]);
    CHECK_MSG(refused_code(x.log.code[i]), "UPDATE of team/b: expected a refusal");
    from = x.log.n;
    raw_msg_doc(x.c, TD_CLI_PRESENCE, DB, "\x02{}", 3);
    i = wait_err(&x.log, from, 0, DB, 0, 5000, "PRESENCE in team/b");
    printf("1: PRESENCE in team/b after narrowing -> ERROR %llu\n",
           (unsigned long long)x.log.code[i]);
    CHECK_MSG(refused_code(x.log.code[i]), "PRESENCE in team/b: expected a refusal");
    from = x.log.n;
    uint64_t syncs = td_cli_doc_syncs(x.b);
    CHECK(td_cli_resubscribe(x.b) == 0);
    wait_err(&x.log, from, TD_CLI_E_FORBIDDEN, DB, 0, 5000, "SUBSCRIBE of team/b");
    CHECK(td_cli_doc_syncs(x.b) == syncs);
    printf("1: SUBSCRIBE of team/b after narrowing -> ERROR forbidden\n");
    td_cli_wait(it_ctx(), NULL, NULL, 200);
    CHECK_MSG(it_doc_matches(s, DB, wt, w.b), "the narrowed session changed team/b");

    /* 2: a read-only re-HELLO */
    CHECK(td_cli_set_token(x.c, ro, 1) == 0);
    wc.n = 3;
    CHECK(td_cli_wait(it_ctx(), welcomed, &wc, 5000));
    CHECK_MSG(td_cli_conn_stats(x.c)->welcome_rights == 5, "read-only WELCOME rights %llu",
              (unsigned long long)td_cli_conn_stats(x.c)->welcome_rights);
    from = x.log.n;
    uint64_t id = 0;
    while (id == 0) {
        it_random_edits(td_cli_doc_crdt(x.a), 2);
        CHECK(td_cli_commit(x.a, &id) == 0);
    }
    wait_err(&x.log, from, TD_CLI_E_READ_ONLY, DA, id, 5000, "UPDATE with a read-only token");
    printf("2: UPDATE after a read-only re-HELLO -> ERROR read_only\n");
    CHECK(td_cli_doc_stats_get(x.a)->batches_dropped == 1);
    CHECK(it_doc_matches(s, DA, wt, w.a));
    uint64_t ra = td_cli_doc_stats_get(x.a)->remote_batches;
    edit_acked(w.a, "walt on team/a (uma read-only)");
    CHECK_MSG(td_cli_wait(it_ctx(), NULL, NULL, 300) &&
                  td_cli_doc_stats_get(x.a)->remote_batches > ra,
              "a read-only session stopped receiving");
    CHECK(it_doc_matches(s, DA, wt, w.a));
    td_cli_conn_free(x.c);
    td_cli_conn_free(w.c);
    free(all);
    free(only_a);
    free(ro);
    free(wt);
}

static void expiry(td_cli_server *s, const char *key)
{
    char *wt = it_token(key, "walt", "team/*", "rw", "3600");
    char *fresh = it_token(key, "uma", "team/*", "rw", "3600");
    char *two = it_token(key, "uma", "team/*", "rw", "2");
    static client y, z, w;
    /* y lets the grace run out; z sends a fresh HELLO within it */
    client_open(&y, s, two, 0);
    client_open(&z, s, two, 0);
    client_open(&w, s, wt, 0);
    edit_acked(w.a, "walt before the expiry");
    int iy = wait_err(&y.log, 0, TD_CLI_E_TOKEN_EXPIRED, "", 0, 4000, "expiry (y)");
    uint64_t t_exp = y.log.t_us[iy];
    printf("3: token_expired after the ttl (doc empty)\n");

    /* z: a write refused, then a fresh HELLO in the grace */
    wait_err(&z.log, 0, TD_CLI_E_TOKEN_EXPIRED, "", 0, 2000, "expiry (z)");
    uint64_t zid = 0;
    while (zid == 0) {
        it_random_edits(td_cli_doc_crdt(z.a), 2);
        CHECK(td_cli_commit(z.a, &zid) == 0);
    }
    int zfrom = z.log.n;
    wait_err(&z.log, zfrom, TD_CLI_E_TOKEN_EXPIRED, DA, zid, 2000, "z's UPDATE after expiry");
    CHECK(td_cli_set_token(z.c, fresh, 1) == 0);

    /* y: reads go on in the grace, writes and subscriptions do not */
    int yfrom = y.log.n;
    raw_update(y.a, 7001);
    raw_msg_doc(y.c, TD_CLI_SUBSCRIBE, DB, "\x00", 1);
    uint64_t ra = td_cli_doc_stats_get(y.a)->remote_batches;
    edit_acked(w.a, "walt in the grace");
    int got = 0;
    for (uint64_t t = td_cli_now_us(); td_cli_now_us() - t < 700000 && !got;) {
        td_cli_wait(it_ctx(), NULL, NULL, 10);
        got = td_cli_doc_stats_get(y.a)->remote_batches > ra;
    }
    double in_grace = (double)(td_cli_now_us() - t_exp) / 1e6;
    printf("3: REMOTE received %.2f s after the expiry (in the grace): %s\n", in_grace,
           got ? "yes" : "NO");
    CHECK_MSG(got, "no REMOTE during the grace");
    wait_err(&y.log, yfrom, TD_CLI_E_TOKEN_EXPIRED, DA, 7001, 2000, "UPDATE in the grace");
    /* the ERROR for the SUBSCRIBE names team/b, which the library does not
     * know (it logs it with an empty doc): a second token_expired with
     * batch 0 after the UPDATE's */
    int k = find_err(&y.log, yfrom, TD_CLI_E_TOKEN_EXPIRED, DA, 7001);
    wait_err(&y.log, k + 1, TD_CLI_E_TOKEN_EXPIRED, "", 0, 2000, "SUBSCRIBE in the grace");
    printf("3: UPDATE and SUBSCRIBE in the grace -> token_expired\n");
    CHECK_MSG(td_cli_wait_closed(y.c, 5000), "not closed after the grace");
    double closed = (double)(td_cli_now_us() - t_exp) / 1e6;
    double hi = it_sanitized() ? 3.5 : 2.5;
    printf("3: closed with %d %.2f s after token_expired (grace 1 s; window 0.8..%.1f s)\n",
           td_cli_close_code(y.c), closed, hi);
    CHECK(td_cli_close_code(y.c) == 1008);
    CHECK_MSG(closed >= 0.8 && closed <= hi, "closed %.2f s after the expiry", closed);
    CHECK(it_doc_matches(s, DA, wt, w.a)); /* y's write is not in */

    /* z: still open past the grace, its refused write now ACKed */
    CHECK_MSG(td_cli_wait(it_ctx(), all_acked, z.a, 5000),
              "z's write was not ACKed after the fresh HELLO");
    /* well past the end of the grace (1 s) */
    while (td_cli_now_us() - t_exp < 2200000u)
        td_cli_wait(it_ctx(), NULL, NULL, 50);
    double zt = (double)(td_cli_now_us() - t_exp) / 1e6;
    CHECK_MSG(td_cli_conn_state(z.c) == TD_CLI_READY,
              "a fresh HELLO in the grace did not keep the connection (closed %d)",
              td_cli_close_code(z.c));
    edit_acked(w.a, "walt after the grace");
    edit_acked(z.a, "z after the grace");
    td_cli_doc *zz[2] = {z.a, w.a};
    CHECK(it_wait_converged(zz, 2, 10000));
    CHECK(it_doc_matches(s, DA, wt, w.a));
    printf("4: a fresh HELLO in the grace: still open %.2f s after the expiry, write ACKed, "
           "converged\n", zt);
    td_cli_conn_free(y.c);
    td_cli_conn_free(z.c);
    td_cli_conn_free(w.c);
    free(wt);
    free(fresh);
    free(two);
}

int main(int argc, char **argv)
{
    it_init(argc, argv, "integration_tokens");
    const char *key = it_keygen();
    char pub[800];
    snprintf(pub, sizeof pub, "%s.pub", key);
    const char *extra[] = {"--public-key", pub, "--token-grace", "1s", NULL};
    td_cli_server *s = it_server(extra);
    narrowing(s, key);
    expiry(s, key);
    it_pass();
}
