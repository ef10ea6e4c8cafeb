/*
 * test_authorship.c -- issue 10, "What must be shown" 1: ops are bound to
 * their author (PROTOCOL.md section 12), and a batch the server cannot
 * integrate is refused (missing_ops, after a short hold), never parked.
 *
 * With a key (--public-key), the victim ann edits a document with agent A.
 * The attacker eve (another user, with the write right) sends batches under
 * agent A on her own connection:
 *   - current seqs: her replica, synced from the server, continues A's seqs
 *     -> agent_taken;
 *   - future seqs: the same after a batch she never sends (a gap)
 *     -> agent_taken or missing_ops;
 *   - past seqs with other content: A's seqs the server has, made by a
 *     fresh replica -> a duplicate (ACK) or agent_taken, nothing applied;
 *   - past seqs with other content and new seqs in one batch -> refused
 *     (agent_taken; invalid_batch or missing_ops are accepted too, the batch
 *     contradicting the document), nothing applied;
 *   - the document's whole history (a valid batch) plus new ops of A
 *     -> agent_taken, nothing applied.
 * After each: GET /docs/{id} equals the victim's replica, the observer got
 * nothing, and the victim's next edits are ACKed and converge. Then the
 * victim's next 50 edits (with a second writer editing concurrently) are all
 * ACKed and converge on every client and in GET /docs. After a restart the
 * binding still holds: eve is refused, and a new connection of ann with
 * agent A (another tab) writes fine.
 *
 * Open server (no key): a second live connection writing agent B gets
 * agent_taken and nothing is applied; once the first connection closed, a
 * new connection with agent B writes fine.
 *
 * missing_ops: a client whose batch skips its own earlier, unsent batch, or
 * depends on another replica's ops the server never got, is refused with
 * missing_ops (after the hold of about 0.5 s) and nothing is applied; sending
 * the missing batch first and then the refused one works. A batch whose ops
 * arrive on another connection during the hold is ACKed (deferred()).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "it_util.h"

#define DOC "shared/notes"

typedef struct client {
    td_cli_conn *c;
    td_cli_doc *d;
} client;

static client connect_client(td_cli_server *s, const char *token, uint64_t agent,
                             const char *doc)
{
    client k;
    k.d = it_open_doc(s, token, agent, doc);
    k.c = td_cli_doc_conn(k.d);
    return k;
}

static int all_acked(void *p)
{
    return td_cli_unacked((td_cli_doc *)p) == 0;
}

/* n batches of random edits on d, each ACKed before the next; no ERROR. */
static void edits_acked(td_cli_doc *d, int n, const char *what)
{
    td_cli_conn *c = td_cli_doc_conn(d);
    uint64_t errs = td_cli_error_count(c);
    uint64_t acked = td_cli_doc_stats_get(d)->batches_acked, sent = 0;
    for (int i = 0; i < n; i++) {
        uint64_t id = 0;
        it_random_edits(td_cli_doc_crdt(d), 1 + (int)it_below(3));
        CHECK(td_cli_commit(d, &id) == 0);
        sent += id != 0;
        CHECK_MSG(td_cli_wait(it_ctx(), all_acked, d, 10000), "%s: edit %d of %d not ACKed",
                  what, i + 1, n);
    }
    td_cli_error e;
    td_cli_last_error(c, &e);
    CHECK_MSG(td_cli_error_count(c) == errs, "%s: ERROR %llu (%s)", what,
              (unsigned long long)e.code, e.msg);
    CHECK(td_cli_doc_stats_get(d)->batches_acked == acked + sent);
}

static char *replica_json(td_crdt_doc *r)
{
    char *js = NULL, *copy;
    size_t len = 0;
    CHECK(td_crdt_to_json(r, &js, &len) == TD_CRDT_OK);
    copy = strdup(js);
    td_crdt_buf_free(r, js);
    CHECK(copy != NULL);
    return copy;
}

static int code_in(int code, const int *ok, int n)
{
    for (int i = 0; i < n; i++)
        if (code == ok[i])
            return 1;
    return 0;
}

/* After a refused (or duplicate) batch: the document is the victim's, the
 * observers saw nothing of it, and the victim still writes. */
static void after_attack(td_cli_server *s, const char *token, client *victim, client *obs,
                         uint64_t obs_remote_before, const char *what)
{
    td_cli_wait(it_ctx(), NULL, NULL, 150); /* a REMOTE would be out by now */
    CHECK_MSG(td_cli_doc_stats_get(obs->d)->remote_batches == obs_remote_before,
              "%s: the observer received a REMOTE", what);
    CHECK_MSG(it_doc_matches(s, DOC, token, victim->d), "%s: the document changed", what);
    edits_acked(victim->d, 5, what);
    td_cli_doc *both[2] = {victim->d, obs->d};
    CHECK_MSG(it_wait_converged(both, 2, 10000), "%s: victim and observer diverge", what);
    CHECK_MSG(it_doc_matches(s, DOC, token, victim->d), "%s: server and victim diverge", what);
}

/* Eve's attacks on agent A (keyed server). Returns nothing: checks. */
static void attacks(td_cli_server *s, const char *eve_tok, const char *ann_tok, uint64_t A,
                    client *victim, client *obs, int after_restart)
{
    td_cli_conn *eve = it_raw_connect(s, eve_tok, A);
    uint64_t bid = 1;
    size_t len;
    uint8_t *b;
    int rc;

    /* current seqs: continue A where the server is */
    {
        td_crdt_doc *r = it_replica(A);
        it_raw_subscribe(eve, DOC, r);
        uint64_t have = td_crdt_vv_get(r, A);
        CHECK_MSG(have > 0, "the server has no ops of the victim's agent");
        uint64_t remote0 = td_cli_doc_stats_get(obs->d)->remote_batches;
        it_text_append(r, "EVIL-NOW");
        CHECK(td_crdt_vv_get(r, A) > have); /* the batch carries A's next seqs */
        b = it_commit(r, &len);
        rc = it_raw_update(eve, DOC, bid++, b, len, 5000);
        printf("%seve sends A's current seqs %llu..: %d\n", after_restart ? "[restarted] " : "",
               (unsigned long long)have, rc);
        CHECK_MSG(rc == TD_CLI_E_AGENT_TAKEN, "current seqs: expected agent_taken, got %d", rc);
        free(b);
        td_crdt_doc_free(r);
        after_attack(s, ann_tok, victim, obs, remote0, "current seqs");
    }
    if (after_restart) {
        td_cli_conn_free(eve);
        return;
    }
    /* future seqs: a gap (one batch never sent) */
    {
        td_crdt_doc *r = it_replica(A);
        it_raw_subscribe(eve, DOC, r);
        uint64_t remote0 = td_cli_doc_stats_get(obs->d)->remote_batches;
        it_text_append(r, "EVIL-SKIPPED");
        free(it_commit(r, &len));
        it_text_append(r, "EVIL-LATER");
        b = it_commit(r, &len);
        rc = it_raw_update(eve, DOC, bid++, b, len, 5000);
        printf("eve sends A's future seqs (a gap): %d\n", rc);
        static const int ok[] = {TD_CLI_E_AGENT_TAKEN, TD_CLI_E_MISSING_OPS};
        CHECK_MSG(code_in(rc, ok, 2), "future seqs: expected agent_taken or missing_ops, got %d",
                  rc);
        free(b);
        td_crdt_doc_free(r);
        after_attack(s, ann_tok, victim, obs, remote0, "future seqs");
    }
    /* past seqs, other content: a fresh replica with agent A */
    {
        td_crdt_doc *r = it_replica(A);
        uint64_t remote0 = td_cli_doc_stats_get(obs->d)->remote_batches;
        it_text_append(r, "EV");
        b = it_commit(r, &len);
        CHECK(td_crdt_vv_get(td_cli_doc_crdt(victim->d), A) > td_crdt_vv_get(r, A));
        rc = it_raw_update(eve, DOC, bid++, b, len, 5000);
        printf("eve sends A's past seqs with other content: %d\n", rc);
        static const int ok[] = {0, TD_CLI_E_AGENT_TAKEN};
        CHECK_MSG(code_in(rc, ok, 2), "past seqs: expected an ACK (duplicate) or agent_taken, got %d",
                  rc);
        free(b);
        td_crdt_doc_free(r);
        after_attack(s, ann_tok, victim, obs, remote0, "past seqs");
    }
    /* past and new seqs in one batch */
    {
        td_crdt_doc *r = it_replica(A);
        uint64_t remote0 = td_cli_doc_stats_get(obs->d)->remote_batches;
        uint64_t need = td_crdt_vv_get(td_cli_doc_crdt(victim->d), A) + 20;
        while (td_crdt_vv_get(r, A) < need)
            it_text_append(r, "EVIL-MIXED");
        b = it_commit(r, &len);
        rc = it_raw_update(eve, DOC, bid++, b, len, 5000);
        printf("eve sends A's past and new seqs in one batch: %d\n", rc);
        static const int ok[] = {TD_CLI_E_AGENT_TAKEN, TD_CLI_E_INVALID_BATCH,
                                 TD_CLI_E_MISSING_OPS};
        CHECK_MSG(code_in(rc, ok, 3), "past+new seqs: expected a refusal, got %d", rc);
        free(b);
        td_crdt_doc_free(r);
        after_attack(s, ann_tok, victim, obs, remote0, "past and new seqs");
    }
    /* the whole history of a synced replica plus new ops of A: every known op
     * is the document's own, the batch is valid, and still refused */
    {
        td_crdt_doc *r = it_replica(A);
        it_raw_subscribe(eve, DOC, r);
        uint64_t remote0 = td_cli_doc_stats_get(obs->d)->remote_batches;
        it_text_append(r, "EVIL-TAIL");
        free(it_commit(r, &len));
        uint8_t *all = NULL;
        CHECK(td_crdt_diff(r, NULL, 0, &all, &len) == TD_CRDT_OK && all);
        rc = it_raw_update(eve, DOC, bid++, all, len, 5000);
        printf("eve sends the document's ops plus new ones of A: %d\n", rc);
        CHECK_MSG(rc == TD_CLI_E_AGENT_TAKEN, "known + new seqs: expected agent_taken, got %d", rc);
        td_crdt_buf_free(r, all);
        td_crdt_doc_free(r);
        after_attack(s, ann_tok, victim, obs, remote0, "known and new seqs");
    }
    CHECK_MSG(td_cli_conn_state(eve) != TD_CLI_CLOSED, "eve's connection was closed (%d)",
              td_cli_close_code(eve));
    td_cli_conn_free(eve);
}

static void keyed(void)
{
    const char *key = it_keygen();
    char pub[800];
    snprintf(pub, sizeof pub, "%s.pub", key);
    const char *extra[] = {"--public-key", pub, NULL};
    td_cli_server *s = it_server(extra);
    char *ann = it_token(key, "ann", "shared/*", "rw", "3600");
    char *eve = it_token(key, "eve", "shared/*", "rw", "3600");
    char *bob = it_token(key, "bob", "shared/*", "rw", "3600");
    uint64_t A = td_cli_random64();

    client victim = connect_client(s, ann, A, DOC);
    client obs = connect_client(s, bob, 0, DOC);
    edits_acked(victim.d, 20, "victim's first edits");
    edits_acked(obs.d, 3, "bob's first edits");
    td_cli_doc *both[2] = {victim.d, obs.d};
    CHECK(it_wait_converged(both, 2, 10000));
    CHECK(it_doc_matches(s, DOC, ann, victim.d));

    attacks(s, eve, ann, A, &victim, &obs, 0);

    /* the victim's next 50 edits, bob editing meanwhile */
    uint64_t errs = td_cli_error_count(victim.c);
    for (int i = 0; i < 50; i++) {
        it_random_edits(td_cli_doc_crdt(victim.d), 1 + (int)it_below(3));
        CHECK(td_cli_commit(victim.d, NULL) == 0);
        if (i % 5 == 0) {
            it_random_edits(td_cli_doc_crdt(obs.d), 2);
            CHECK(td_cli_commit(obs.d, NULL) == 0);
        }
        td_cli_wait(it_ctx(), NULL, NULL, 2);
    }
    CHECK_MSG(it_wait_converged(both, 2, 20000), "the victim's 50 edits did not converge");
    CHECK(td_cli_error_count(victim.c) == errs);
    CHECK_MSG(td_cli_doc_stats_get(victim.d)->batches_dropped == 0, "a victim batch was dropped");
    CHECK(it_doc_matches(s, DOC, ann, victim.d));
    printf("the victim's 50 edits: ACKed (%llu batches ACKed in all) and converged\n",
           (unsigned long long)td_cli_doc_stats_get(victim.d)->batches_acked);

    /* restart: the binding is durable */
    int st = td_cli_server_stop(s, SIGTERM, 15000);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGTERM: exit status %d", st);
    CHECK_MSG(td_cli_server_restart(s, extra, 30000) == 0, "the server did not restart");
    td_cli_conn_free(victim.c);
    CHECK(td_cli_reconnect(obs.c) == 0);
    CHECK(it_wait_ready(obs.c, 10000) && it_wait_docs_synced(&obs.d, 1, 10000));
    /* ann on a new connection (another tab) with agent A */
    client tab = connect_client(s, ann, A, DOC);
    CHECK(it_doc_matches(s, DOC, ann, tab.d));
    attacks(s, eve, ann, A, &tab, &obs, 1);
    edits_acked(tab.d, 20, "ann's new connection with agent A after a restart");
    td_cli_doc *both2[2] = {tab.d, obs.d};
    CHECK(it_wait_converged(both2, 2, 10000));
    CHECK(it_doc_matches(s, DOC, ann, tab.d));
    printf("after a restart: eve still refused, ann's new connection with agent A writes\n");
    td_cli_conn_free(tab.c);
    td_cli_conn_free(obs.c);
    free(ann);
    free(eve);
    free(bob);
}

/* ---- batches waiting for their dependencies (PROTOCOL.md section 12) ---- */

#define DDOC "open/deferred"

/* base's replica reaches want's JSON (fails the test after 10 s). */
static void converges_on(client base, td_crdt_doc *want_replica, const char *what)
{
    char *want = replica_json(want_replica), *js = NULL;
    for (int i = 0; i < 200; i++) {
        free(js);
        js = td_cli_doc_json(base.d);
        if (it_json_equal(js, want))
            break;
        td_cli_wait(it_ctx(), NULL, NULL, 50);
    }
    CHECK_MSG(it_json_equal(js, want), "%s: %s vs %s", what, js, want);
    free(js);
    free(want);
}

/* A batch written on top of ops that are still on their way on another
 * connection waits for them and is ACKed once they are in; a later batch of
 * its connection waits behind it, so the answers keep their order. A batch
 * whose ops never come is refused after the hold (about 0.5 s); past the
 * bound of 64 waiting batches a document's batches are refused at once, and
 * so are a connection's past 256 KiB. A resync (SUBSCRIBE again) answers
 * the subscription's waiting batches at once. */
static void deferred(td_cli_server *s)
{
    client base = connect_client(s, NULL, 0, DDOC);
    edits_acked(base.d, 3, "the deferred document");
    double deferred0 = it_metric(s, "tandem_batches_deferred_total");
    td_cli_conn *g1 = it_raw_connect(s, NULL, 0), *g2 = it_raw_connect(s, NULL, 0);
    td_crdt_doc *p = it_replica(td_cli_random64()), *r = it_replica(td_cli_random64());
    td_crdt_doc *q = it_replica(td_cli_random64());
    it_raw_subscribe(g1, DDOC, p);
    it_raw_subscribe(g2, DDOC, r);
    it_text_append(p, "P");
    size_t lp, lr, lq;
    uint8_t *bp = it_commit(p, &lp);
    CHECK(td_crdt_apply(r, bp, lp, NULL) == TD_CRDT_OK);
    it_text_append(r, "R"); /* after P's op: depends on it */
    uint8_t *br = it_commit(r, &lr);
    td_crdt_obj qm;
    td_crdt_value one = {.type = TD_CRDT_V_INT};
    one.u.i = 1;
    CHECK(td_crdt_root(q, TD_CRDT_MAP, "qm", 2, &qm) == TD_CRDT_OK);
    CHECK(td_crdt_map_set(q, qm, "x", 1, &one) == TD_CRDT_OK);
    uint8_t *bq = it_commit(q, &lq); /* depends on nothing */

    it_raw_send_update(g2, DDOC, 11, br, lr);
    it_raw_send_update(g2, DDOC, 12, bq, lq);
    td_cli_wait(it_ctx(), NULL, NULL, 100); /* both reach the server first */
    uint64_t bid = 0;
    int rc = it_raw_update(g1, DDOC, 21, bp, lp, 5000);
    CHECK_MSG(rc == 0, "the batch the other depends on: %d", rc);
    rc = it_raw_answer(g2, DDOC, &bid, 5000);
    printf("deferred: first answer on connection 2: %d for batch %llu\n", rc,
           (unsigned long long)bid);
    CHECK_MSG(rc == 0 && bid == 11, "the dependent batch: answer %d for batch %llu", rc,
              (unsigned long long)bid);
    rc = it_raw_answer(g2, DDOC, &bid, 5000);
    CHECK_MSG(rc == 0 && bid == 12, "the batch behind it: answer %d for batch %llu", rc,
              (unsigned long long)bid);
    CHECK(it_metric(s, "tandem_batches_deferred_total") >= deferred0 + 2);
    CHECK(td_crdt_apply(r, bq, lq, NULL) == TD_CRDT_OK);
    converges_on(base, r, "after the deferred batches");
    CHECK(it_doc_matches(s, DDOC, NULL, base.d));

    /* ops that never come: refused after the hold, nothing applied */
    td_crdt_doc *x = it_replica(td_cli_random64());
    CHECK(td_crdt_apply(x, bp, lp, NULL) == TD_CRDT_OK);
    it_text_append(x, "never sent");
    free(it_commit(x, &lp));
    enum { CHAIN = 70, BOUND = 64 };
    uint8_t *chain[CHAIN];
    size_t lens[CHAIN];
    for (int i = 0; i < CHAIN; i++) {
        it_text_append(x, "x");
        chain[i] = it_commit(x, &lens[i]);
    }
    uint64_t t0 = td_cli_now_us();
    rc = it_raw_update(g2, DDOC, 100, chain[0], lens[0], 5000);
    double ms = (double)(td_cli_now_us() - t0) / 1000;
    printf("deferred: a batch whose ops never come: %d after %.0f ms\n", rc, ms);
    CHECK_MSG(rc == TD_CLI_E_MISSING_OPS, "expected missing_ops, got %d", rc);
    CHECK_MSG(ms >= 400 && ms < 3000, "refused after %.0f ms, not after the hold", ms);
    /* the bound: the first 64 wait, the rest are answered at once */
    for (int i = 0; i < CHAIN; i++)
        it_raw_send_update(g2, DDOC, 200 + (uint64_t)i, chain[i], lens[i]);
    int order_ok = 1;
    for (int i = 0; i < CHAIN; i++) {
        rc = it_raw_answer(g2, DDOC, &bid, 5000);
        CHECK_MSG(rc == TD_CLI_E_MISSING_OPS, "chain batch %d: answer %d", i, rc);
        /* the 6 past the bound come first, then the 64 in order */
        uint64_t want = i < CHAIN - BOUND ? 200 + BOUND + (uint64_t)i
                                          : 200 + (uint64_t)(i - (CHAIN - BOUND));
        order_ok &= bid == want;
    }
    CHECK_MSG(order_ok, "answers past the bound did not come first, or the waiting ones "
                        "out of order");
    CHECK(it_server_alive(s));
    CHECK(it_doc_matches(s, DDOC, NULL, base.d));
    printf("deferred: 70 batches with missing ops: 6 refused at once, 64 after the hold\n");
    /* the bound per connection: 256 KiB in all its documents */
    it_raw_subscribe(g2, DDOC "-2", NULL);
    td_crdt_doc *y = it_replica(td_cli_random64());
    it_text_append(y, "never sent either");
    free(it_commit(y, &lp));
    char *big = malloc(100 << 10);
    CHECK(big != NULL);
    memset(big, 'b', (size_t)100 << 10);
    big[(100 << 10) - 1] = '\0';
    uint8_t *bigs[3];
    size_t bigl[3];
    for (int i = 0; i < 3; i++) {
        it_text_append(y, big);
        bigs[i] = it_commit(y, &bigl[i]);
    }
    free(big);
    it_raw_send_update(g2, DDOC, 300, bigs[0], bigl[0]);
    it_raw_send_update(g2, DDOC, 301, bigs[1], bigl[1]);
    t0 = td_cli_now_us();
    it_raw_send_update(g2, DDOC "-2", 302, bigs[2], bigl[2]);
    rc = it_raw_answer(g2, DDOC "-2", &bid, 5000);
    ms = (double)(td_cli_now_us() - t0) / 1000;
    printf("deferred: a third 100 KiB batch of one connection: %d after %.0f ms\n", rc, ms);
    CHECK_MSG(rc == TD_CLI_E_MISSING_OPS && bid == 302 && ms < 400,
              "past 256 KiB of one connection: answer %d for %llu after %.0f ms, not at once", rc,
              (unsigned long long)bid, ms);
    for (int i = 0; i < 2; i++) {
        rc = it_raw_answer(g2, DDOC, &bid, 5000);
        CHECK_MSG(rc == TD_CLI_E_MISSING_OPS && bid == 300 + (uint64_t)i,
                  "big batch %d: answer %d for %llu", i, rc, (unsigned long long)bid);
    }
    for (int i = 0; i < 3; i++)
        free(bigs[i]);
    td_crdt_doc_free(y);
    /* a resync answers the subscription's waiting batches at once */
    it_text_append(x, "q");
    size_t lz;
    uint8_t *bz = it_commit(x, &lz);
    it_raw_send_update(g2, DDOC, 400, bz, lz);
    t0 = td_cli_now_us();
    td_cli_wait(it_ctx(), NULL, NULL, 20);
    it_raw_subscribe(g2, DDOC, NULL);
    rc = it_raw_answer(g2, DDOC, &bid, 5000);
    ms = (double)(td_cli_now_us() - t0) / 1000;
    printf("deferred: a waiting batch at a resync: %d after %.0f ms\n", rc, ms);
    CHECK_MSG(rc == TD_CLI_E_MISSING_OPS && bid == 400 && ms < 400,
              "at a resync: answer %d for %llu after %.0f ms, not at once", rc,
              (unsigned long long)bid, ms);
    free(bz);
    for (int i = 0; i < CHAIN; i++)
        free(chain[i]);
    free(bp);
    free(br);
    free(bq);
    td_crdt_doc_free(p);
    td_crdt_doc_free(r);
    td_crdt_doc_free(q);
    td_crdt_doc_free(x);
    td_cli_conn_free(g1);
    td_cli_conn_free(g2);
    td_cli_conn_free(base.c);
}

#define ODOC "open/doc"
#define GDOC "open/gap"

static void open_server(void)
{
    td_cli_server *s = it_server(NULL);
    uint64_t B = td_cli_random64();
    client first = connect_client(s, NULL, B, ODOC);
    client obs = connect_client(s, NULL, 0, ODOC);
    edits_acked(first.d, 10, "the first connection's edits");
    td_cli_doc *both[2] = {first.d, obs.d};
    CHECK(it_wait_converged(both, 2, 10000));

    /* a second live connection with agent B */
    td_cli_conn *x = it_raw_connect(s, NULL, B);
    td_crdt_doc *r = it_replica(B);
    it_raw_subscribe(x, ODOC, r);
    uint64_t remote0 = td_cli_doc_stats_get(obs.d)->remote_batches;
    it_text_append(r, "SECOND");
    size_t len;
    uint8_t *b = it_commit(r, &len);
    int rc = it_raw_update(x, ODOC, 1, b, len, 5000);
    printf("open server: a second live connection writes agent B: %d\n", rc);
    CHECK_MSG(rc == TD_CLI_E_AGENT_TAKEN, "expected agent_taken, got %d", rc);
    free(b);
    td_crdt_doc_free(r);
    td_cli_wait(it_ctx(), NULL, NULL, 150);
    CHECK(td_cli_doc_stats_get(obs.d)->remote_batches == remote0);
    CHECK(it_doc_matches(s, ODOC, NULL, first.d));
    edits_acked(first.d, 5, "the first connection after the refusal");
    CHECK(it_wait_converged(both, 2, 10000));
    td_cli_conn_free(x);

    /* the first connection closes: agent B is free again */
    CHECK(it_doc_matches(s, ODOC, NULL, first.d));
    td_cli_conn_free(first.c);
    client next = connect_client(s, NULL, B, ODOC);
    uint64_t t0 = td_cli_now_us();
    it_random_edits(td_cli_doc_crdt(next.d), 3);
    CHECK(td_cli_commit(next.d, NULL) == 0);
    CHECK_MSG(td_cli_wait(it_ctx(), all_acked, next.d, 5000),
              "a new connection with agent B is still refused after the first closed");
    printf("open server: after the first closed, a new connection with agent B is ACKed in "
           "%.0f ms (%llu agent_taken on the way)\n",
           (double)(td_cli_now_us() - t0) / 1000,
           (unsigned long long)td_cli_conn_stats(next.c)->errors[TD_CLI_E_AGENT_TAKEN]);
    edits_acked(next.d, 10, "the new connection with agent B");
    td_cli_doc *both2[2] = {next.d, obs.d};
    CHECK(it_wait_converged(both2, 2, 10000));
    CHECK(it_doc_matches(s, ODOC, NULL, next.d));
    td_cli_conn_free(next.c);

    /* missing_ops: a gap in the sender's own seqs */
    client base = connect_client(s, NULL, 0, GDOC);
    edits_acked(base.d, 5, "gap document");
    td_cli_conn *g = it_raw_connect(s, NULL, 0);
    r = it_replica(td_cli_random64());
    it_raw_subscribe(g, GDOC, r);
    it_text_append(r, "first");
    size_t l1, l2;
    uint8_t *b1 = it_commit(r, &l1);
    it_text_append(r, "second");
    uint8_t *b2 = it_commit(r, &l2);
    remote0 = td_cli_doc_stats_get(base.d)->remote_batches;
    rc = it_raw_update(g, GDOC, 2, b2, l2, 5000);
    printf("a batch behind an unsent one: %d\n", rc);
    CHECK_MSG(rc == TD_CLI_E_MISSING_OPS, "expected missing_ops, got %d", rc);
    td_cli_wait(it_ctx(), NULL, NULL, 150);
    CHECK(td_cli_doc_stats_get(base.d)->remote_batches == remote0);
    CHECK(it_doc_matches(s, GDOC, NULL, base.d));
    /* nothing kept: resending the later one alone is still refused */
    rc = it_raw_update(g, GDOC, 3, b2, l2, 5000);
    CHECK_MSG(rc == TD_CLI_E_MISSING_OPS, "the refused batch was kept (%d)", rc);
    CHECK(it_doc_matches(s, GDOC, NULL, base.d));
    rc = it_raw_update(g, GDOC, 1, b1, l1, 5000);
    CHECK_MSG(rc == 0, "the missing batch: %d", rc);
    rc = it_raw_update(g, GDOC, 4, b2, l2, 5000);
    CHECK_MSG(rc == 0, "the later batch after the missing one: %d", rc);
    free(b1);
    free(b2);

    /* missing_ops: ops depending on another replica's ops the server never got */
    /* P makes a nested object; R, having P's batch, writes inside it: R's
     * batch depends on P's op whatever the agents' order */
    td_crdt_doc *p = it_replica(td_cli_random64());
    td_crdt_obj side, o;
    CHECK(td_crdt_root(p, TD_CRDT_MAP, "side", 4, &side) == TD_CRDT_OK);
    CHECK(td_crdt_map_set_obj(p, side, "o", 1, TD_CRDT_MAP, &o) == TD_CRDT_OK);
    size_t lp;
    uint8_t *bp = it_commit(p, &lp);
    CHECK(td_crdt_apply(r, bp, lp, NULL) == TD_CRDT_OK);
    td_crdt_value v;
    CHECK(td_crdt_root(r, TD_CRDT_MAP, "side", 4, &side) == TD_CRDT_OK);
    CHECK(td_crdt_map_get(r, side, "o", 1, &v) == TD_CRDT_OK && v.type == TD_CRDT_V_OBJ);
    td_crdt_value one = {.type = TD_CRDT_V_INT};
    one.u.i = 1;
    CHECK(td_crdt_map_set(r, v.u.obj, "x", 1, &one) == TD_CRDT_OK);
    size_t lr;
    uint8_t *br = it_commit(r, &lr);
    rc = it_raw_update(g, GDOC, 5, br, lr, 5000);
    printf("a batch depending on another replica's unsent ops: %d\n", rc);
    CHECK_MSG(rc == TD_CLI_E_MISSING_OPS, "expected missing_ops, got %d", rc);
    rc = it_raw_update(g, GDOC, 6, bp, lp, 5000);
    CHECK_MSG(rc == 0, "the other replica's batch: %d", rc);
    rc = it_raw_update(g, GDOC, 7, br, lr, 5000);
    CHECK_MSG(rc == 0, "the dependent batch after it: %d", rc);
    free(bp);
    free(br);
    td_crdt_doc_free(p);

    /* everyone converges on the sender's replica */
    char *want = replica_json(r);
    for (int i = 0; i < 200; i++) {
        char *js = td_cli_doc_json(base.d);
        int eq = it_json_equal(js, want);
        free(js);
        if (eq)
            break;
        td_cli_wait(it_ctx(), NULL, NULL, 50);
    }
    char *js = td_cli_doc_json(base.d);
    CHECK_MSG(it_json_equal(js, want), "after filling the gaps: %s vs %s", js, want);
    free(js);
    CHECK(it_doc_matches(s, GDOC, NULL, base.d));
    printf("after filling the gaps: converged\n");
    free(want);
    td_crdt_doc_free(r);
    td_cli_conn_free(g);
    td_cli_conn_free(base.c);
    td_cli_conn_free(obs.c);
    deferred(s);
}

int main(int argc, char **argv)
{
    it_init(argc, argv, "integration_authorship");
    keyed();
    open_server();
    it_pass();
}
