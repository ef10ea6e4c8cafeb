/*
 * trace_server.c -- see trace_server.h.
 *
 * The connections run with manual_apply: a REMOTE batch is not applied when
 * it arrives but recognised (by its bytes: this process committed every
 * batch, so a hash of the bytes names the txn) and marked as received by
 * that agent. Applying waits until the txn that needs it: the trace's
 * positions refer to the state of exactly the txn's parents, so a replica
 * must not see a concurrent branch early. A txn's missing history is found
 * by a walk over parents that stops at txns the replica already holds
 * (histories are applied whole, so what a replica holds is closed under
 * "parent of").
 *
 * A sequential trace is one connection that keeps up to 64 batches in
 * flight; nothing waits for the server between txns but that window.
 */
#define _GNU_SOURCE
#include "trace_server.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "td_client.h"

#define WINDOW 64
#define WAIT_MS 30000

typedef struct rep {
    const tt_trace *t;
    td_cli_ctx *ctx;
    td_cli_conn **conns;
    td_cli_doc **docs;
    td_crdt_obj *texts;
    uint32_t n;
    size_t ntxns;     /* trace txns + 1: the last one is startContent */
    uint8_t **batch;  /* each txn's committed bytes (NULL: empty txn) */
    size_t *blen;
    uint8_t *have;    /* agent * ntxns + k: applied to that replica */
    uint8_t *recvd;   /* agent * ntxns + k: delivered to that connection */
    uint64_t *hkey;   /* open-addressing table: hash -> txn */
    int64_t *hval;
    size_t hcap;
    uint32_t *stack, *list;
    char *err;
    size_t errlen;
} rep;

static int fail(rep *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(rep *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static uint64_t fnv(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h | 1; /* 0 marks an empty slot */
}

static void hput(rep *r, size_t k)
{
    uint64_t h = fnv(r->batch[k], r->blen[k]);
    size_t i = h & (r->hcap - 1);
    while (r->hkey[i])
        i = (i + 1) & (r->hcap - 1);
    r->hkey[i] = h;
    r->hval[i] = (int64_t)k;
}

static int64_t hget(rep *r, const uint8_t *b, size_t len)
{
    uint64_t h = fnv(b, len);
    for (size_t i = h & (r->hcap - 1); r->hkey[i]; i = (i + 1) & (r->hcap - 1)) {
        int64_t k = r->hval[i];
        if (r->hkey[i] == h && r->blen[k] == len && memcmp(r->batch[k], b, len) == 0)
            return k;
    }
    return -1;
}

static void on_remote(td_cli_doc *d, const uint8_t *b, size_t len, void *ud)
{
    rep *r = ud;
    int64_t k = hget(r, b, len);
    if (k < 0)
        return;
    for (uint32_t a = 0; a < r->n; a++)
        if (r->docs[a] == d)
            r->recvd[(size_t)a * r->ntxns + (size_t)k] = 1;
}

typedef struct recv_wait {
    rep *r;
    uint32_t a;
    size_t k;
} recv_wait;

static int got(void *p)
{
    recv_wait *w = p;
    return w->r->recvd[(size_t)w->a * w->r->ntxns + w->k];
}

/* Applies txn k (delivered by the server) to replica a. */
static int deliver(rep *r, uint32_t a, size_t k)
{
    size_t slot = (size_t)a * r->ntxns + k;
    if (r->have[slot])
        return 0;
    if (r->batch[k]) {
        recv_wait w = {r, a, k};
        if (!td_cli_wait(r->ctx, got, &w, WAIT_MS))
            return fail(r, "agent %u never received txn %zu from the server", a, k);
        td_crdt_apply_info info;
        td_crdt_doc *doc = td_cli_doc_crdt(r->docs[a]);
        if (td_crdt_apply(doc, r->batch[k], r->blen[k], &info) != TD_CRDT_OK)
            return fail(r, "agent %u: applying txn %zu: %s", a, k, td_crdt_doc_error(doc));
        if (info.parked)
            return fail(r, "agent %u: txn %zu parked (history incomplete)", a, k);
    }
    r->have[slot] = 1;
    return 0;
}

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

/* Gives replica a the whole history of txn i that it lacks, in index order. */
static int merge_history(rep *r, uint32_t a, size_t i)
{
    const tt_trace *t = r->t;
    size_t start = r->ntxns - 1, nl = 0, sp = 0;
    if (deliver(r, a, start) < 0)
        return -1;
    const tt_txn *tx = &t->txns[i];
    for (uint32_t p = 0; p < tx->nparents; p++)
        r->stack[sp++] = t->parents[tx->parents + p];
    while (sp) {
        uint32_t k = r->stack[--sp];
        size_t slot = (size_t)a * r->ntxns + k;
        if (r->have[slot])
            continue;
        r->have[slot] = 2; /* visited in this walk */
        r->list[nl++] = k;
        const tt_txn *kx = &t->txns[k];
        for (uint32_t p = 0; p < kx->nparents; p++)
            r->stack[sp++] = t->parents[kx->parents + p];
    }
    qsort(r->list, nl, sizeof r->list[0], cmp_u32);
    for (size_t j = 0; j < nl; j++) {
        r->have[(size_t)a * r->ntxns + r->list[j]] = 0;
        if (deliver(r, a, r->list[j]) < 0)
            return -1;
    }
    return 0;
}

static int apply_patches(rep *r, uint32_t a, size_t i)
{
    const tt_trace *t = r->t;
    td_crdt_doc *doc = td_cli_doc_crdt(r->docs[a]);
    const tt_txn *tx = &t->txns[i];
    for (uint32_t j = 0; j < tx->count; j++) {
        const tt_patch *p = &t->patches[tx->first + j];
        size_t len = td_crdt_text_length(doc, r->texts[a]);
        if ((size_t)p->pos + p->del > len)
            return fail(r, "txn %zu patch %u: pos %u del %u past length %zu", i, j, p->pos,
                        p->del, len);
        if (p->del && td_crdt_text_delete(doc, r->texts[a], p->pos, p->del) != TD_CRDT_OK)
            return fail(r, "txn %zu: delete: %s", i, td_crdt_doc_error(doc));
        if (p->ins_len && td_crdt_text_insert(doc, r->texts[a], p->pos, t->text + p->ins_off,
                                              p->ins_len) != TD_CRDT_OK)
            return fail(r, "txn %zu: insert: %s", i, td_crdt_doc_error(doc));
    }
    return 0;
}

/* Commits replica a's ops as txn k: remembers the bytes, sends them. */
static int commit_txn(rep *r, uint32_t a, size_t k)
{
    td_crdt_doc *doc = td_cli_doc_crdt(r->docs[a]);
    uint8_t *out = NULL;
    size_t len = 0;
    if (td_crdt_commit(doc, &out, &len) != TD_CRDT_OK)
        return fail(r, "commit: %s", td_crdt_doc_error(doc));
    r->have[(size_t)a * r->ntxns + k] = 1;
    if (!out)
        return 0;
    r->batch[k] = malloc(len);
    if (!r->batch[k])
        return fail(r, "out of memory");
    memcpy(r->batch[k], out, len);
    r->blen[k] = len;
    td_crdt_buf_free(doc, out);
    hput(r, k);
    return td_cli_send_batch(r->docs[a], r->batch[k], len, NULL) < 0 ? fail(r, "send failed") : 0;
}

static int window_free(void *p)
{
    return td_cli_unacked((td_cli_doc *)p) < WINDOW;
}

static int none_unacked(void *p)
{
    rep *r = p;
    for (uint32_t a = 0; a < r->n; a++)
        if (td_cli_unacked(r->docs[a]))
            return 0;
    return 1;
}

static int all_ready(void *p)
{
    rep *r = p;
    for (uint32_t a = 0; a < r->n; a++)
        if (td_cli_conn_state(r->conns[a]) != TD_CLI_READY || !td_cli_doc_synced(r->docs[a]))
            return 0;
    return 1;
}

static int check_text(rep *r, const char *who, const char *text, size_t len)
{
    if (len == r->t->end_len && memcmp(text, r->t->end, len) == 0)
        return 0;
    size_t i = 0;
    while (i < len && i < r->t->end_len && text[i] == r->t->end[i])
        i++;
    return fail(r, "%s: text differs from endContent at byte %zu (%zu vs %zu bytes)", who, i, len,
                r->t->end_len);
}

static int replay(rep *r, const char *url, const char *doc_id, const char *token)
{
    const tt_trace *t = r->t;
    td_cli_conn_opts o = {0};
    o.token = token;
    o.cb.on_remote = on_remote;
    o.cb.ud = r;
    td_cli_doc_opts dopt = {0};
    dopt.manual_apply = 1;
    for (uint32_t a = 0; a < r->n; a++) {
        o.agent = 1 + a + (td_cli_random64() << 16); /* distinct per run */
        if (!(r->conns[a] = td_cli_connect(r->ctx, url, &o)))
            return fail(r, "bad url %s", url);
        if (!(r->docs[a] = td_cli_subscribe(r->conns[a], doc_id, &dopt)))
            return fail(r, "subscribe failed");
        td_crdt_root(td_cli_doc_crdt(r->docs[a]), TD_CRDT_TEXT, "text", 4, &r->texts[a]);
    }
    if (!td_cli_wait(r->ctx, all_ready, r, WAIT_MS))
        return fail(r, "connections not ready (close code %d)", td_cli_close_code(r->conns[0]));
    for (uint32_t a = 0; a < r->n; a++)
        if (td_crdt_op_count(td_cli_doc_crdt(r->docs[a])) != 0)
            return fail(r, "document %s is not empty", doc_id);

    /* startContent, by replica 0 */
    size_t start = r->ntxns - 1;
    td_crdt_doc *d0 = td_cli_doc_crdt(r->docs[0]);
    if (t->start_len &&
        td_crdt_text_insert(d0, r->texts[0], 0, t->start, t->start_len) != TD_CRDT_OK)
        return fail(r, "startContent: %s", td_crdt_doc_error(d0));
    if (commit_txn(r, 0, start) < 0)
        return -1;

    for (size_t i = 0; i < t->ntxns; i++) {
        uint32_t a = t->concurrent ? t->txns[i].agent : 0;
        if (t->concurrent && merge_history(r, a, i) < 0)
            return -1;
        if (apply_patches(r, a, i) < 0 || commit_txn(r, a, i) < 0)
            return -1;
        if (!td_cli_wait(r->ctx, window_free, r->docs[a], WAIT_MS))
            return fail(r, "no ACKs from the server");
        if (i % 64 == 0)
            td_cli_service(r->ctx, 0);
    }
    if (!td_cli_wait(r->ctx, none_unacked, r, WAIT_MS))
        return fail(r, "batches left unacknowledged");
    /* everyone gets everything, then every text must be endContent */
    for (uint32_t a = 0; a < r->n; a++)
        for (size_t k = 0; k < r->ntxns; k++)
            if (deliver(r, a, k) < 0)
                return -1;
    for (uint32_t a = 0; a < r->n; a++) {
        char *text = NULL, who[32];
        size_t len = 0;
        td_crdt_doc *doc = td_cli_doc_crdt(r->docs[a]);
        if (td_crdt_text_get(doc, r->texts[a], &text, &len) != TD_CRDT_OK)
            return fail(r, "text_get: %s", td_crdt_doc_error(doc));
        snprintf(who, sizeof who, "client %u", a);
        int rc = check_text(r, who, text, len);
        td_crdt_buf_free(doc, text);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int check_http(rep *r, const char *url, const char *doc_id, const char *token)
{
    char host[256];
    int port = 0;
    if (sscanf(url, "ws://%255[^:/]:%d", host, &port) != 2)
        return fail(r, "cannot parse %s", url);
    char esc[800], path[900], hdr[2200];
    td_cli_url_escape(doc_id, strlen(doc_id), esc);
    snprintf(path, sizeof path, "/docs/%s", esc);
    if (token)
        snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", token);
    char *body = NULL;
    int st = td_cli_http_get(host, port, path, token ? hdr : NULL, &body, NULL);
    if (st != 200) {
        free(body);
        return fail(r, "GET %s: status %d", path, st);
    }
    cJSON *js = cJSON_Parse(body);
    free(body);
    cJSON *text = cJSON_GetObjectItemCaseSensitive(js, "text");
    int rc = cJSON_IsString(text)
                 ? check_text(r, "server (GET /docs)", text->valuestring, strlen(text->valuestring))
                 : fail(r, "GET %s: no \"text\" string", path);
    cJSON_Delete(js);
    return rc;
}

int td_trace_replay_server(const char *ws_url, const tt_trace *t, const char *doc_id,
                           const char *token, td_trace_server_result *out)
{
    memset(out, 0, sizeof *out);
    rep r;
    memset(&r, 0, sizeof r);
    r.t = t;
    r.err = out->error;
    r.errlen = sizeof out->error;
    r.n = t->concurrent ? t->num_agents : 1;
    r.ntxns = t->ntxns + 1;
    r.hcap = 16;
    while (r.hcap < 2 * r.ntxns)
        r.hcap *= 2;
    if (doc_id)
        snprintf(out->doc, sizeof out->doc, "%s", doc_id);
    else
        snprintf(out->doc, sizeof out->doc, "trace-%016llx",
                 (unsigned long long)td_cli_random64());
    out->connections = r.n;
    r.conns = calloc(r.n, sizeof *r.conns);
    r.docs = calloc(r.n, sizeof *r.docs);
    r.texts = calloc(r.n, sizeof *r.texts);
    r.batch = calloc(r.ntxns, sizeof *r.batch);
    r.blen = calloc(r.ntxns, sizeof *r.blen);
    r.have = calloc((size_t)r.n * r.ntxns, 1);
    r.recvd = calloc((size_t)r.n * r.ntxns, 1);
    r.hkey = calloc(r.hcap, sizeof *r.hkey);
    r.hval = calloc(r.hcap, sizeof *r.hval);
    r.stack = malloc((t->nparents + 1) * sizeof *r.stack);
    r.list = malloc(r.ntxns * sizeof *r.list);
    r.ctx = td_cli_ctx_new(NULL);
    int rc = -1;
    uint64_t t0 = td_cli_now_us();
    if (!r.conns || !r.docs || !r.texts || !r.batch || !r.blen || !r.have || !r.recvd ||
        !r.hkey || !r.hval || !r.stack || !r.list || !r.ctx)
        fail(&r, "out of memory");
    else if (replay(&r, ws_url, out->doc, token) == 0 &&
             check_http(&r, ws_url, out->doc, token) == 0)
        rc = 0;
    out->wall_ms = (double)(td_cli_now_us() - t0) / 1000.0;
    for (uint32_t a = 0; r.conns && a < r.n; a++) {
        if (!r.conns[a])
            continue;
        const td_cli_stats *st = td_cli_conn_stats(r.conns[a]);
        out->bytes_sent += st->bytes_sent;
        out->bytes_recv += st->bytes_recv;
        out->batches += td_cli_doc_stats_get(r.docs[a])->batches_sent;
    }
    out->ok = rc == 0;
    if (r.ctx)
        td_cli_ctx_free(r.ctx);
    for (size_t k = 0; r.batch && k < r.ntxns; k++)
        free(r.batch[k]);
    free(r.conns);
    free(r.docs);
    free(r.texts);
    free(r.batch);
    free(r.blen);
    free(r.have);
    free(r.recvd);
    free(r.hkey);
    free(r.hval);
    free(r.stack);
    free(r.list);
    return rc;
}
