/*
 * test_faults.c -- issue 10, "What must be shown" 6: with the allocation
 * hook failing the core's allocations FROM..FROM+COUNT-1
 * (TANDEM_TEST_FAIL_ALLOC, server/README.md "Testing hooks") during a mixed
 * workload, the server never crashes, never ACKs an op it does not hold,
 * and converges once allocations succeed again.
 *
 * For each of six windows (FROM spread from about 100 to 20,000, over the
 * 15,000 or more allocations of one window's workload, randomised around
 * fixed points by the seed; COUNT from 1 to 1,000, since while a load keeps
 * failing each attempt uses up only one or a few of the window, and a longer
 * one would outlast the test; IT_FAULT_WINDOWS=FROM:COUNT,... replays given
 * windows), the server is restarted on the same data with the hook set, and
 * a mixed workload
 * runs: three writers editing three documents (two new for the window, one
 * shared by all windows, so loads of existing content happen under faults
 * too), a churner subscribing, writing to and unsubscribing fresh
 * documents, presence, and GET /docs exports. Clients follow PROTOCOL.md:
 * batches refused with a *retry* code (internal, busy, store_failed,
 * missing_ops behind one of those, not_subscribed after a subscription
 * ended) are resent by the client library; a subscription ended by
 * doc_unavailable, or a SUBSCRIBE refused with it, is resubscribed; a batch
 * refused with any other code fails the test. Then:
 *   - the server process is alive;
 *   - every client converges with the others and with GET /docs;
 *   - the server exits 0 on SIGTERM and, restarted without the hook, holds
 *     every op of every batch it ACKed (each ACKed batch applied to a fresh
 *     replica synced from the server adds nothing), and the documents equal
 *     the clients' replicas.
 * At least half the windows must have hit (the clients saw errors), so
 * the test cannot pass without injecting anything.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "it_util.h"

#define NWRITERS 3
#define NDOCS 3

typedef struct sent {
    uint64_t id;
    uint8_t *bytes;
    size_t len;
} sent;

typedef struct batches {
    sent *v;
    size_t n, cap;
} batches;

static void push(batches *b, uint64_t id, uint8_t *bytes, size_t len)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        sent *nv = realloc(b->v, cap * sizeof *nv);
        CHECK(nv != NULL);
        b->v = nv;
        b->cap = cap;
    }
    b->v[b->n++] = (sent){id, bytes, len};
}

/* One subscription of a test client, with its own record of what it sent. */
typedef struct sub {
    td_cli_doc *d;
    batches inflight; /* sent, not yet ACKed */
    batches acked;    /* ACKed: must be in the document for good */
    batches resend;   /* dropped by the library after a non-retry ERROR */
    uint64_t resub_at; /* non-zero: resubscribe at this time */
} sub;

typedef struct client {
    td_cli_conn *c;
    sub subs[NDOCS];
    int nsubs;
} client;

static uint64_t g_err[TD_CLI_NCODES];
static int g_unexpected;

static sub *find_sub(client *k, td_cli_doc *d)
{
    for (int i = 0; i < k->nsubs; i++)
        if (k->subs[i].d == d)
            return &k->subs[i];
    return NULL;
}

static void on_ack(td_cli_doc *d, uint64_t batch_id, uint64_t sent_us, void *ud)
{
    (void)sent_us;
    sub *s = find_sub(ud, d);
    if (!s)
        return;
    for (size_t i = 0; i < s->inflight.n; i++) {
        if (s->inflight.v[i].id != batch_id)
            continue;
        push(&s->acked, batch_id, s->inflight.v[i].bytes, s->inflight.v[i].len);
        s->inflight.v[i] = s->inflight.v[--s->inflight.n];
        return;
    }
}

static int retry_code(uint64_t code)
{
    return code == TD_CLI_E_INTERNAL || code == TD_CLI_E_BUSY || code == TD_CLI_E_STORE_FAILED ||
           code == TD_CLI_E_MISSING_OPS || code == TD_CLI_E_NOT_SUBSCRIBED;
}

/* PROTOCOL.md's answers to a failed allocation: a batch refused with a
 * retry code is resent by the library; doc_unavailable (a load or reload
 * failed, the subscription ended) and a SUBSCRIBE refused with busy or
 * internal are resubscribed; a batch refused with doc_unavailable (dropped
 * by the library) is resent after that. Anything else is a failure. */
static void on_error(td_cli_conn *c, td_cli_doc *d, uint64_t code, uint64_t batch_id,
                     const char *msg, size_t msg_len, void *ud)
{
    (void)c;
    g_err[code < TD_CLI_NCODES ? code : TD_CLI_NCODES - 1]++;
    sub *s = d ? find_sub(ud, d) : NULL;
    int resub = code == TD_CLI_E_DOC_UNAVAILABLE ||
                (!batch_id && (code == TD_CLI_E_BUSY || code == TD_CLI_E_INTERNAL ||
                               code == TD_CLI_E_STORE_FAILED));
    int ok = resub || code == TD_CLI_E_NOT_SUBSCRIBED || (batch_id && retry_code(code));
    if (!ok) {
        g_unexpected++;
        fprintf(stderr, "faults: unexpected ERROR %llu (doc %s, batch %llu): %.*s\n",
                (unsigned long long)code, d ? td_cli_doc_id(d) : "-",
                (unsigned long long)batch_id, (int)msg_len, msg);
    }
    if (!s)
        return;
    if (resub && !s->resub_at)
        s->resub_at = td_cli_now_us() + 100000;
    if (!batch_id || retry_code(code))
        return;
    /* the library dropped this batch: keep it for after the resubscribe */
    for (size_t i = 0; i < s->inflight.n; i++) {
        if (s->inflight.v[i].id != batch_id)
            continue;
        push(&s->resend, 0, s->inflight.v[i].bytes, s->inflight.v[i].len);
        s->inflight.v[i] = s->inflight.v[--s->inflight.n];
        return;
    }
}

static void send_tracked(sub *s, uint8_t *bytes, size_t len)
{
    uint64_t id = 0;
    CHECK(td_cli_send_batch(s->d, bytes, len, &id) == 0 && id);
    push(&s->inflight, id, bytes, len);
}

static void commit_tracked(sub *s)
{
    td_crdt_doc *r = td_cli_doc_crdt(s->d);
    uint8_t *out = NULL;
    size_t len = 0;
    CHECK(td_crdt_commit(r, &out, &len) == TD_CRDT_OK);
    if (!out)
        return;
    uint8_t *copy = malloc(len);
    CHECK(copy != NULL);
    memcpy(copy, out, len);
    td_crdt_buf_free(r, out);
    send_tracked(s, copy, len);
}

/* Resubscribes what doc_unavailable ended, then resends what was dropped. */
static void maintain(client *ks, int nk)
{
    uint64_t now = td_cli_now_us();
    for (int i = 0; i < nk; i++) {
        for (int j = 0; j < ks[i].nsubs; j++) {
            sub *s = &ks[i].subs[j];
            if (s->resub_at && s->resub_at <= now) {
                s->resub_at = 0;
                CHECK(td_cli_resubscribe(s->d) == 0);
            }
            if (s->resend.n && td_cli_doc_synced(s->d) && !s->resub_at) {
                for (size_t k = 0; k < s->resend.n; k++)
                    send_tracked(s, s->resend.v[k].bytes, s->resend.v[k].len);
                s->resend.n = 0;
            }
        }
    }
}

static void client_open(client *k, td_cli_server *srv, const char *const *docs, int ndocs)
{
    td_cli_conn_opts o = {0};
    o.cb.on_ack = on_ack;
    o.cb.on_error = on_error;
    o.cb.ud = k;
    k->c = td_cli_connect(it_ctx(), srv->url, &o);
    CHECK(k->c != NULL);
    k->nsubs = ndocs;
    for (int i = 0; i < ndocs; i++) {
        k->subs[i].d = td_cli_subscribe(k->c, docs[i], NULL);
        CHECK(k->subs[i].d != NULL);
    }
    CHECK_MSG(it_wait_ready(k->c, 10000), "no WELCOME");
}

typedef struct conv {
    client *ks;
    int nk;
    td_cli_server *srv;
} conv;

static int settled(void *p)
{
    conv *a = p;
    maintain(a->ks, a->nk);
    for (int i = 0; i < a->nk; i++)
        for (int j = 0; j < a->ks[i].nsubs; j++) {
            sub *s = &a->ks[i].subs[j];
            if (s->inflight.n || s->resend.n || s->resub_at || td_cli_unacked(s->d) ||
                !td_cli_doc_synced(s->d))
                return 0;
        }
    /* the same document on every client, and on the server */
    for (int j = 0; j < a->ks[0].nsubs; j++) {
        char *first = td_cli_doc_json(a->ks[0].subs[j].d);
        int ok = first != NULL;
        for (int i = 1; ok && i < a->nk; i++) {
            char *js = td_cli_doc_json(a->ks[i].subs[j].d);
            ok = js && strcmp(js, first) == 0;
            free(js);
        }
        free(first);
        if (!ok)
            return 0;
    }
    return 1;
}

static void free_batches(batches *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->v[i].bytes);
    free(b->v);
    memset(b, 0, sizeof *b);
}

static int window_run(td_cli_server *srv, int w, uint64_t from, uint64_t count)
{
    char spec[64];
    snprintf(spec, sizeof spec, "%llu:%llu", (unsigned long long)from,
             (unsigned long long)count);
    int st = td_cli_server_stop(srv, SIGTERM, 15000);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGTERM before window %d: status %d", w, st);
    setenv("TANDEM_TEST_FAIL_ALLOC", spec, 1);
    CHECK_MSG(td_cli_server_restart(srv, NULL, 30000) == 0, "no restart with %s", spec);
    unsetenv("TANDEM_TEST_FAIL_ALLOC");

    char da[32], db[32];
    snprintf(da, sizeof da, "w%d/a", w);
    snprintf(db, sizeof db, "w%d/b", w);
    const char *docs[NDOCS] = {"shared", da, db};
    static client ks[NWRITERS + 1];
    memset(ks, 0, sizeof ks);
    for (int i = 0; i < NWRITERS; i++)
        client_open(&ks[i], srv, docs, NDOCS);
    /* the churner: one subscription at a time */
    client *ch = &ks[NWRITERS];
    td_cli_conn_opts co = {0};
    co.cb.on_ack = on_ack;
    co.cb.on_error = on_error;
    co.cb.ud = ch;
    ch->c = td_cli_connect(it_ctx(), srv->url, &co);
    CHECK(ch->c != NULL && it_wait_ready(ch->c, 10000));

    uint64_t err0[TD_CLI_NCODES];
    memcpy(err0, g_err, sizeof err0);
    int gets[600] = {0};
    uint64_t acks = 0;
    int churned = 0;
    td_cli_doc *cd = NULL;
    uint64_t t0 = td_cli_now_us(), dur = (uint64_t)(2000000 * it_scale()) + 500000;
    conv cv = {ks, NWRITERS, srv};
    while (td_cli_now_us() - t0 < dur) {
        client *k = &ks[it_below(NWRITERS)];
        /* the shared document gets few edits, so that its load stays cheap
         * and the later windows still meet edits, not only that load */
        sub *s = &k->subs[it_below(20) == 0 ? 0 : 1 + it_below(NDOCS - 1)];
        if (td_cli_doc_synced(s->d)) {
            it_random_edits(td_cli_doc_crdt(s->d), 1 + (int)it_below(4));
            commit_tracked(s);
        }
        if (it_below(20) == 0)
            td_cli_presence(s->d, "{\"at\":1}", 8);
        if (it_below(40) == 0) {
            char *js = NULL;
            int code = it_get_doc(srv, docs[it_below(NDOCS)], NULL, &js);
            free(js);
            gets[code >= 0 && code < 600 ? code : 0]++;
        }
        if (it_below(10) == 0) {
            /* churn: the previous one goes (its batch ACKed or not: a fresh
             * document per turn, so nothing depends on it) */
            if (cd) {
                ch->nsubs = 0;
                td_cli_unsubscribe(cd);
                cd = NULL;
            }
            char name[48];
            snprintf(name, sizeof name, "w%d/c%d", w, churned++);
            cd = td_cli_subscribe(ch->c, name, NULL);
            CHECK(cd != NULL);
            it_random_edits(td_cli_doc_crdt(cd), 2);
            CHECK(td_cli_commit(cd, NULL) == 0);
        }
        maintain(ks, NWRITERS);
        td_cli_wait(it_ctx(), NULL, NULL, 2);
    }
    if (cd)
        td_cli_unsubscribe(cd);
    CHECK_MSG(it_server_alive(srv), "the server died during window %s", spec);

    /* allocations succeed again once the window has passed: converge */
    int conv_ok = td_cli_wait(it_ctx(), settled, &cv, 30000);
    if (!conv_ok) {
        for (int i = 0; i < NWRITERS; i++)
            for (int j = 0; j < NDOCS; j++) {
                sub *s = &ks[i].subs[j];
                char *js = td_cli_doc_json(s->d);
                fprintf(stderr, "client %d %s: inflight %zu resend %zu unacked %zu synced %d: %.200s\n",
                        i, td_cli_doc_id(s->d), s->inflight.n, s->resend.n, td_cli_unacked(s->d),
                        td_cli_doc_synced(s->d), js ? js : "(null)");
                free(js);
            }
    }
    CHECK_MSG(conv_ok, "window %s: the clients did not converge", spec);
    double conv_s = (double)(td_cli_now_us() - t0 - dur) / 1e6;
    for (int j = 0; j < NDOCS; j++)
        CHECK_MSG(it_doc_matches(srv, docs[j], NULL, ks[0].subs[j].d),
                  "window %s: GET /docs/%s is not the clients' document", spec, docs[j]);
    CHECK_MSG(it_server_alive(srv), "the server died during window %s", spec);

    uint64_t hit = 0;
    char codes[256] = "";
    for (int c = 0; c < TD_CLI_NCODES; c++) {
        uint64_t n = g_err[c] - err0[c];
        hit += n;
        if (n) {
            size_t l = strlen(codes);
            snprintf(codes + l, sizeof codes - l, " %d:%llu", c, (unsigned long long)n);
        }
    }
    for (int i = 0; i < NWRITERS; i++)
        for (int j = 0; j < NDOCS; j++)
            acks += ks[i].subs[j].acked.n;
    int other = 0;
    for (int i = 0; i < 600; i++)
        if (i != 200 && i != 404 && i != 500 && i != 503)
            other += gets[i];
    printf("window %d (%s): %llu batches ACKed, %llu ERRORs (code:count%s), GET /docs: %d x 200, "
           "%d x 404 (not created yet), %d x 500, %d x 503, %d other; converged %.1f s after\n",
           w, spec, (unsigned long long)acks, (unsigned long long)hit, codes, gets[200],
           gets[404], gets[500], gets[503], other, conv_s);
    /* 500: the export ran out of memory (PROTOCOL.md section 9 names no code
     * for it; any answer but a hang or a crash will do) */
    CHECK_MSG(other == 0, "GET /docs: no answer, or not 200, 404, 500 or 503");

    /* every ACKed op is held for good: SIGTERM, restart without the hook,
     * and apply each ACKed batch to a fresh replica */
    td_cli_conn_free(ch->c);
    for (int i = 0; i < NWRITERS; i++)
        td_cli_conn_free(ks[i].c);
    td_cli_wait(it_ctx(), NULL, NULL, 100); /* the closes go out */
    st = td_cli_server_stop(srv, SIGTERM, 15000);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGTERM after window %s: status %d", spec,
              st);
    CHECK(td_cli_server_restart(srv, NULL, 30000) == 0);
    td_cli_conn *fresh = td_cli_connect(it_ctx(), srv->url, NULL);
    td_cli_doc *fd[NDOCS];
    for (int j = 0; j < NDOCS; j++)
        fd[j] = td_cli_subscribe(fresh, docs[j], NULL);
    CHECK(it_wait_ready(fresh, 10000) && it_wait_docs_synced(fd, NDOCS, 10000));
    size_t checked = 0;
    for (int i = 0; i < NWRITERS; i++)
        for (int j = 0; j < NDOCS; j++) {
            sub *s = &ks[i].subs[j];
            for (size_t b = 0; b < s->acked.n; b++) {
                td_crdt_apply_info info;
                td_crdt_err e = td_crdt_apply(td_cli_doc_crdt(fd[j]), s->acked.v[b].bytes,
                                              s->acked.v[b].len, &info);
                CHECK_MSG(e == TD_CRDT_OK && info.ops_applied == 0 && !info.parked,
                          "window %s: an ACKed batch of %s is not in the document after a "
                          "restart (%s, %zu new ops)",
                          spec, docs[j], td_crdt_strerror(e), info.ops_applied);
                checked++;
            }
        }
    for (int j = 0; j < NDOCS; j++)
        CHECK(it_doc_matches(srv, docs[j], NULL, fd[j]));
    td_cli_conn_free(fresh);
    td_cli_wait(it_ctx(), NULL, NULL, 100);
    printf("window %d: after a restart, all %zu ACKed batches are in the documents\n", w, checked);
    for (int i = 0; i < NWRITERS + 1; i++)
        for (int j = 0; j < NDOCS; j++) {
            free_batches(&ks[i].subs[j].inflight);
            free_batches(&ks[i].subs[j].acked);
            free_batches(&ks[i].subs[j].resend);
        }
    return hit > 0;
}

int main(int argc, char **argv)
{
    it_init(argc, argv, "integration_faults");
    td_cli_server *srv = it_server(NULL);
    /* a window's workload makes some 15,000 to 22,000 core allocations (in
     * Release; fewer under sanitizers): the windows start from its first
     * loads to its last edits */
    static const uint64_t base_from[] = {100, 1500, 4000, 7000, 10000, 14000};
    static const uint64_t base_count[] = {1000, 1, 100, 10, 500, 300};
    int n = (int)(sizeof base_from / sizeof base_from[0]), hits = 0;
    /* IT_FAULT_WINDOWS="FROM:COUNT,FROM:COUNT,..." replays given windows */
    const char *given = getenv("IT_FAULT_WINDOWS");
    if (given) {
        n = 0;
        for (const char *p = given; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
            unsigned long long f = 0, c = 0;
            CHECK_MSG(sscanf(p, "%llu:%llu", &f, &c) == 2, "IT_FAULT_WINDOWS: %s", p);
            hits += window_run(srv, n++, f, c);
        }
    }
    /* FROM within [0.5, 1.5) of its base, scaled with the workload; drawn
     * first, so that the seed replays the windows */
    uint64_t from[sizeof base_from / sizeof base_from[0]];
    for (int w = 0; w < n; w++)
        from[w] = (uint64_t)((double)base_from[w] * it_scale() *
                             (0.5 + (double)it_below(1000) / 1000.0)) + 1;
    for (int w = 0; !given && w < n; w++)
        hits += window_run(srv, w, from[w], base_count[w]);
    printf("%d of %d windows hit the workload; unexpected ERRORs: %d\n", hits, n, g_unexpected);
    CHECK_MSG(g_unexpected == 0, "ERRORs outside PROTOCOL.md's answers to a failed allocation");
    CHECK_MSG(hits * 2 >= n, "too few windows hit the workload (%d of %d)", hits, n);
    CHECK(it_server_alive(srv));
    it_pass();
}
