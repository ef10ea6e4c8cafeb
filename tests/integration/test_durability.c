/*
 * test_durability.c -- bar 3 of issue 5: the server is killed with SIGKILL
 * during a write load and restarted on the same data directory; every batch
 * that had been acknowledged is present; clients that then resend their
 * unacknowledged batches converge with no duplicates.
 *
 * Each batch carries one unique token, as one element "w<c>:<n>" inserted
 * into the list root "items" and as the text "[w<c>:<n>]" inserted at the
 * start of the text root "log". The test records which tokens the server
 * acknowledged before the kill. After the restart, the server's copy (GET
 * /docs) must list every acknowledged token; after the clients resent the
 * rest, every token ever committed must appear exactly once in the list and
 * in the text, on every replica and on the server.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "it_util.h"

#define DOC "durable"
#define NW 3
#define MAX_TOKENS 20000

typedef struct writer {
    td_cli_conn *conn;
    td_cli_doc *doc;
    uint64_t batch_of[MAX_TOKENS / NW]; /* token n -> batch id */
    int ntok;
    int acked[MAX_TOKENS / NW];
} writer;

static writer W[NW];
static int g_acked_total;

static void on_ack(td_cli_doc *d, uint64_t batch_id, uint64_t sent_us, void *ud)
{
    (void)d;
    (void)sent_us;
    writer *w = ud;
    for (int n = w->ntok - 1; n >= 0; n--) {
        if (w->batch_of[n] == batch_id && !w->acked[n]) {
            w->acked[n] = 1;
            g_acked_total++;
            return;
        }
    }
}

static void write_token(writer *w, int wi)
{
    td_crdt_doc *doc = td_cli_doc_crdt(w->doc);
    td_crdt_obj items, log;
    CHECK(td_crdt_root(doc, TD_CRDT_LIST, "items", 5, &items) == TD_CRDT_OK);
    CHECK(td_crdt_root(doc, TD_CRDT_TEXT, "log", 3, &log) == TD_CRDT_OK);
    char tok[32], text[40];
    snprintf(tok, sizeof tok, "w%d:%d", wi, w->ntok);
    snprintf(text, sizeof text, "[%s]", tok);
    td_crdt_value v = {.type = TD_CRDT_V_STR};
    v.u.str.ptr = tok;
    v.u.str.len = strlen(tok);
    size_t len = td_crdt_list_length(doc, items);
    CHECK(td_crdt_list_insert(doc, items, it_below((uint32_t)len + 1), &v, 1) == TD_CRDT_OK);
    CHECK(td_crdt_text_insert(doc, log, 0, text, strlen(text)) == TD_CRDT_OK);
    uint64_t id;
    CHECK(td_cli_commit(w->doc, &id) == 0 && id != 0);
    w->batch_of[w->ntok++] = id;
}

/* Counts of each token in a JSON document: list "items" and text "log". */
static void count_tokens(const char *json, int which, int counts[NW][MAX_TOKENS / NW])
{
    memset(counts, 0, sizeof(int) * NW * (MAX_TOKENS / NW));
    cJSON *root = cJSON_Parse(json);
    CHECK_MSG(root != NULL, "unparsable JSON: %.200s", json);
    int a, n;
    if (which == 0) {
        cJSON *items = cJSON_GetObjectItemCaseSensitive(root, "items");
        cJSON *e;
        cJSON_ArrayForEach(e, items) {
            CHECK(cJSON_IsString(e) && sscanf(e->valuestring, "w%d:%d", &a, &n) == 2);
            CHECK(a >= 0 && a < NW && n >= 0 && n < MAX_TOKENS / NW);
            counts[a][n]++;
        }
    } else {
        cJSON *log = cJSON_GetObjectItemCaseSensitive(root, "log");
        const char *p = cJSON_IsString(log) ? log->valuestring : "";
        while (*p) {
            int used = 0;
            CHECK_MSG(sscanf(p, "[w%d:%d]%n", &a, &n, &used) == 2 && used > 0,
                   "text is not a sequence of whole tokens near \"%.40s\"", p);
            CHECK(a >= 0 && a < NW && n >= 0 && n < MAX_TOKENS / NW);
            counts[a][n]++;
            p += used;
        }
    }
    cJSON_Delete(root);
}

static int counts[NW][MAX_TOKENS / NW];

int main(int argc, char **argv)
{
    it_init(argc, argv, "integration_durability");
    const char *extra[] = {"--durability", "group", NULL};
    td_cli_server *s = it_server(extra);
    td_cli_ctx *ctx = it_ctx();
    for (int i = 0; i < NW; i++) {
        td_cli_conn_opts o = {0};
        o.cb.on_ack = on_ack;
        o.cb.ud = &W[i];
        W[i].conn = td_cli_connect(ctx, s->url, &o);
        CHECK(W[i].conn != NULL);
        W[i].doc = td_cli_subscribe(W[i].conn, DOC, NULL);
        CHECK(W[i].doc != NULL);
        CHECK(it_wait_ready(W[i].conn, 10000));
    }

    /* write load: each writer keeps up to 8 batches in flight; kill mid-way */
    int per_writer = it_n(3000, 600);
    if (per_writer > MAX_TOKENS / NW)
        per_writer = MAX_TOKENS / NW;
    int kill_after = per_writer / 2;
    int killed = 0;
    uint64_t deadline = td_cli_now_us() + 60000000ull;
    while (!killed && td_cli_now_us() < deadline) {
        for (int i = 0; i < NW; i++)
            while (W[i].ntok < per_writer && td_cli_unacked(W[i].doc) < 8)
                write_token(&W[i], i);
        td_cli_service(ctx, 1);
        if (g_acked_total >= kill_after * NW) {
            CHECK(td_cli_server_stop(s, SIGKILL, 0) != 0);
            killed = 1;
        }
    }
    CHECK(killed);
    int acked_at_kill = g_acked_total, committed = 0, in_flight = 0;
    for (int i = 0; i < NW; i++) {
        committed += W[i].ntok;
        in_flight += (int)td_cli_unacked(W[i].doc);
    }
    printf("SIGKILL after %d acknowledged batches (%d committed, %d unacknowledged)\n",
           acked_at_kill, committed, in_flight);
    /* let the clients notice; anything still arriving is ignored below */
    td_cli_wait(ctx, NULL, NULL, 200);
    int acked_snapshot[NW][MAX_TOKENS / NW];
    for (int i = 0; i < NW; i++)
        memcpy(acked_snapshot[i], W[i].acked, sizeof W[i].acked);

    /* restart: every acknowledged token is there */
    CHECK(td_cli_server_restart(s, extra, 30000) == 0);
    char *json = NULL;
    CHECK(it_get_doc(s, DOC, NULL, &json) == 200);
    count_tokens(json, 0, counts);
    int present = 0;
    for (int i = 0; i < NW; i++)
        for (int n = 0; n < W[i].ntok; n++) {
            CHECK_MSG(!acked_snapshot[i][n] || counts[i][n] == 1,
                   "acknowledged token w%d:%d appears %d times after the restart", i, n,
                   counts[i][n]);
            CHECK_MSG(counts[i][n] <= 1, "token w%d:%d appears %d times", i, n, counts[i][n]);
            present += counts[i][n];
        }
    printf("after restart: %d tokens stored, all %d acknowledged ones among them\n", present,
           acked_at_kill);
    free(json);

    /* clients reconnect, resend what was not acknowledged, and converge */
    for (int i = 0; i < NW; i++)
        CHECK(td_cli_reconnect(W[i].conn) == 0);
    td_cli_doc *docs[NW];
    for (int i = 0; i < NW; i++)
        docs[i] = W[i].doc;
    CHECK_MSG(it_wait_converged(docs, NW, 60000), "no convergence after the restart");
    char *client = td_cli_doc_json(docs[0]);
    CHECK(it_get_doc(s, DOC, NULL, &json) == 200);
    CHECK_MSG(it_json_equal(json, client), "server copy differs from the clients'");
    for (int which = 0; which < 2; which++) {
        count_tokens(client, which, counts);
        for (int i = 0; i < NW; i++)
            for (int n = 0; n < W[i].ntok; n++)
                CHECK_MSG(counts[i][n] == 1, "%s: token w%d:%d appears %d times",
                       which ? "text" : "list", i, n, counts[i][n]);
    }
    printf("after resend: all %d committed tokens present exactly once (list and text)\n",
           committed);
    free(json);
    free(client);
    it_pass();
}
