/*
 * test_restarts.c -- issue 10, bar 4: rounds of SIGTERM and of SIGKILL
 * during a write load with loads, unloads and compactions running. SIGTERM
 * must always exit 0 (under the ASan build that also means no
 * use-after-free, no leak: the store is closed only after the loader thread
 * is joined), and after every restart each ACKed batch is present exactly
 * once.
 *
 * The load: W writers move from document to document (D of them): each
 * subscribes to a random one, appends a few batches -- each batch one
 * unique token at the end of the list root "log" -- and unsubscribes once
 * they are acknowledged. With --doc-idle 50ms the documents unload and load
 * again all the time, --compact-ops 20 compacts them, and every loop a
 * GET /docs/{id} reads a random one (an unloaded document is read on the
 * loader thread). Every ACKed token is recorded; after each restart GET
 * /docs/{id} of every document must show each recorded token exactly once
 * (tokens whose ACK never came may be there once or not at all).
 * A GET answered 503 ("loading, retry") is retried.
 *
 * Rounds alternate SIGTERM and SIGKILL, the signal sent at a random moment
 * of a 0.6-1.4 s load (0.6-1.1 s under ASan); each writer sends at most
 * one batch per 10 ms. 20 + 20 rounds in every build: about 45 s in Release,
 * 40 s under ASan.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "it_util.h"

#define W 4
#define D 24
#define BATCHES_PER_VISIT 3
#define MAX_TOKENS 200000

typedef struct token {
    int doc;
    char text[24];
} token;

static token g_acked[MAX_TOKENS];
static int g_nacked;

typedef struct pending {
    uint64_t batch_id;
    char text[24];
} pending;

typedef struct writer {
    int id;
    td_cli_conn *c;
    td_cli_doc *d; /* the document it is in, or NULL */
    int doc;
    pending p[BATCHES_PER_VISIT];
    int np;
    int seq;
    uint64_t next_us; /* pacing: one batch per PACE_US at most */
} writer;

#define PACE_US 10000

static writer g_w[W];
static int g_round;

static void on_ack(td_cli_doc *d, uint64_t batch_id, uint64_t sent_us, void *ud)
{
    writer *w = ud;
    (void)sent_us;
    if (d != w->d)
        return;
    for (int i = 0; i < w->np; i++)
        if (w->p[i].batch_id == batch_id) {
            CHECK(g_nacked < MAX_TOKENS);
            g_acked[g_nacked].doc = w->doc;
            memcpy(g_acked[g_nacked].text, w->p[i].text, sizeof w->p[i].text);
            g_nacked++;
            w->p[i] = w->p[--w->np];
            return;
        }
}

static void doc_name(int doc, char *out, size_t len)
{
    snprintf(out, len, "restart-%02d", doc);
}

static void writer_start(writer *w, td_cli_server *s)
{
    td_cli_conn_opts o = {0};
    o.cb.on_ack = on_ack;
    o.cb.ud = w;
    w->c = td_cli_connect(it_ctx(), s->url, &o);
    CHECK(w->c != NULL);
    w->d = NULL;
    w->np = 0;
}

/* One step of a writer's visit; never blocks. */
static void writer_step(writer *w)
{
    if (td_cli_conn_state(w->c) != TD_CLI_READY)
        return;
    if (!w->d) {
        char name[32];
        w->doc = (int)it_below(D);
        doc_name(w->doc, name, sizeof name);
        w->d = td_cli_subscribe(w->c, name, NULL);
        CHECK(w->d != NULL);
        w->np = 0;
        w->seq = 0;
        return;
    }
    if (!td_cli_doc_synced(w->d))
        return;
    if (w->seq < BATCHES_PER_VISIT) {
        uint64_t now = td_cli_now_us();
        if (now < w->next_us)
            return;
        w->next_us = now + PACE_US;
        td_crdt_doc *doc = td_cli_doc_crdt(w->d);
        td_crdt_obj log;
        td_crdt_value v;
        pending *p = &w->p[w->np];
        static int serial;
        snprintf(p->text, sizeof p->text, "r%d-w%d-%d", g_round, w->id, ++serial);
        memset(&v, 0, sizeof v);
        v.type = TD_CRDT_V_STR;
        v.u.str.ptr = p->text;
        v.u.str.len = strlen(p->text);
        CHECK(td_crdt_root(doc, TD_CRDT_LIST, "log", 3, &log) == TD_CRDT_OK);
        CHECK(td_crdt_list_insert(doc, log, td_crdt_list_length(doc, log), &v, 1) ==
              TD_CRDT_OK);
        CHECK(td_cli_commit(w->d, &p->batch_id) == 0 && p->batch_id != 0);
        w->np++;
        w->seq++;
        return;
    }
    if (td_cli_unacked(w->d) == 0) {
        td_cli_unsubscribe(w->d);
        w->d = NULL;
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* GET /docs/{id}, waiting out "loading, retry" (503). */
static int get_doc(td_cli_server *s, const char *name, char **json)
{
    uint64_t t0 = td_cli_now_us();
    for (;;) {
        int st = it_get_doc(s, name, NULL, json);
        if (st != 503 || td_cli_now_us() - t0 > 10000000)
            return st;
        free(*json);
        *json = NULL;
        td_cli_wait(it_ctx(), NULL, NULL, 20);
    }
}

/* Every ACKed token present exactly once in its document. */
static void check_store(td_cli_server *s, const char *when)
{
    int *count = calloc((size_t)g_nacked + 1, sizeof *count);
    CHECK(count != NULL);
    for (int doc = 0; doc < D; doc++) {
        char name[32], *json = NULL;
        doc_name(doc, name, sizeof name);
        int st = get_doc(s, name, &json);
        CHECK_MSG(st == 200 || st == 404, "GET /docs/%s %s: %d", name, when, st);
        cJSON *root = st == 200 ? cJSON_Parse(json) : NULL;
        cJSON *log = root ? cJSON_GetObjectItemCaseSensitive(root, "log") : NULL;
        int n = cJSON_GetArraySize(log), k = 0;
        const char **sorted = calloc((size_t)n + 1, sizeof *sorted);
        CHECK(sorted != NULL);
        const cJSON *e;
        cJSON_ArrayForEach(e, log)
            if (cJSON_IsString(e))
                sorted[k++] = e->valuestring;
        qsort(sorted, (size_t)k, sizeof *sorted, cmp_str);
        for (int i = 0; i < g_nacked; i++) {
            if (g_acked[i].doc != doc)
                continue;
            const char *key = g_acked[i].text;
            const char **hit = bsearch(&key, sorted, (size_t)k, sizeof *sorted, cmp_str);
            if (!hit)
                continue;
            const char **lo = hit, **hi = hit;
            while (lo > sorted && strcmp(lo[-1], key) == 0)
                lo--;
            while (hi + 1 < sorted + k && strcmp(hi[1], key) == 0)
                hi++;
            count[i] = (int)(hi - lo) + 1;
        }
        free(sorted);
        cJSON_Delete(root);
        free(json);
    }
    int missing = 0, doubled = 0;
    for (int i = 0; i < g_nacked; i++) {
        if (count[i] == 0 && missing++ < 5)
            fprintf(stderr, "ACKed token %s missing from doc %d %s\n", g_acked[i].text,
                    g_acked[i].doc, when);
        if (count[i] > 1 && doubled++ < 5)
            fprintf(stderr, "ACKed token %s present %d times in doc %d %s\n", g_acked[i].text,
                    count[i], g_acked[i].doc, when);
    }
    free(count);
    CHECK_MSG(!missing && !doubled, "%s: %d ACKed batches missing, %d present more than once",
              when, missing, doubled);
}

static pid_t g_pid;

static int exited(void *p)
{
    int *st = p;
    pid_t r = waitpid(g_pid, st, WNOHANG);
    return r == g_pid || (r < 0 && errno != EINTR);
}

int main(int argc, char **argv)
{
    it_init(argc, argv, "integration_restarts");
    const char *extra[] = {"--doc-idle", "50ms", "--compact-ops", "20", NULL};
    td_cli_server *s = it_server(extra);
    int rounds = 40; /* half SIGTERM, half SIGKILL */
    int load_lo = 600, load_span = it_sanitized() ? 500 : 800;
    double compactions = 0, unloads = 0, loads = 0;
    uint64_t t_start = td_cli_now_us();

    for (g_round = 0; g_round < rounds; g_round++) {
        int sig = g_round % 2 ? SIGKILL : SIGTERM;
        for (int i = 0; i < W; i++) {
            g_w[i].id = i;
            writer_start(&g_w[i], s);
        }
        uint64_t t0 = td_cli_now_us(), until = t0 + (uint64_t)(load_lo + (int)it_below((uint32_t)load_span)) * 1000;
        int gets = 0;
        while (td_cli_now_us() < until) {
            for (int i = 0; i < W; i++)
                writer_step(&g_w[i]);
            td_cli_service(it_ctx(), 5);
            if (it_below(8) == 0) {
                char name[32], *json = NULL;
                doc_name((int)it_below(D), name, sizeof name);
                int st = it_get_doc(s, name, NULL, &json);
                free(json);
                /* 503: the document is loading (retry) */
                CHECK_MSG(st == 200 || st == 404 || st == 503, "GET during the load: %d", st);
                gets++;
            }
        }
        if (g_round == rounds - 1 || g_round % 8 == 0) {
            loads = it_metric(s, "tandem_document_loads_total");
            unloads = it_metric(s, "tandem_document_unloads_total");
            compactions = it_metric(s, "tandem_store_compactions_total");
        }
        int st = 0;
        if (sig == SIGTERM) {
            /* the clients go on being served while the server drains and
             * closes them, so it need not wait out their close frames */
            g_pid = s->pid;
            CHECK(kill(s->pid, SIGTERM) == 0);
            int done = td_cli_wait(it_ctx(), exited, &st, 30000);
            s->pid = 0;
            CHECK_MSG(done, "round %d: the server did not exit within 30 s of SIGTERM", g_round);
            CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                      "round %d: SIGTERM ended the server with %s %d", g_round,
                      WIFEXITED(st) ? "exit status" : "signal",
                      WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        } else {
            st = td_cli_server_stop(s, SIGKILL, 0);
            CHECK(WIFSIGNALED(st));
        }
        /* ACKs that came in while it drained count as well */
        for (int i = 0; i < W; i++) {
            td_cli_conn_free(g_w[i].c);
            g_w[i].c = NULL;
            g_w[i].d = NULL;
        }
        CHECK_MSG(td_cli_server_restart(s, extra, 30000) == 0, "round %d: no restart", g_round);
        char when[64];
        snprintf(when, sizeof when, "after round %d (%s)", g_round,
                 sig == SIGTERM ? "SIGTERM" : "SIGKILL");
        check_store(s, when);
        if (g_round % 8 == 0 || g_round == rounds - 1)
            printf("round %d (%s): %d ACKed batches so far all present once; this round: %d "
                   "GETs, %.0f loads, %.0f unloads, %.0f compactions before the signal\n",
                   g_round, sig == SIGTERM ? "SIGTERM" : "SIGKILL", g_nacked, gets, loads,
                   unloads, compactions);
    }
    printf("%d rounds (%d SIGTERM, all exit 0; %d SIGKILL) in %.1f s: %d ACKed batches, each "
           "present exactly once after every restart\n",
           rounds, (rounds + 1) / 2, rounds / 2, (double)(td_cli_now_us() - t_start) / 1e6,
           g_nacked);
    it_pass();
}
