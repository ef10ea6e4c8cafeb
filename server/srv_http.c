/*
 * srv_http.c -- the HTTP routes (srv_http.h).
 *
 * A reply is built whole, then written in 16 KiB pieces as the socket takes
 * them, so a large document never blocks the loop on one write. Only the
 * last piece ends the transaction (lws_http_transaction_completed).
 *
 * Request bodies are refused before lws reads a byte of them (issue 10,
 * item 6). Reading and throwing them away is not enough with lws 4.1.6:
 *  - its default end of a body (LWS_CALLBACK_HTTP_BODY_COMPLETION in
 *    lws_callback_http_dummy) ends the transaction under a reply still
 *    being written: on a keep-alive connection that rebinds the protocol and
 *    frees the per-connection data, so the reply was never sent and its
 *    buffer (a whole document) never freed;
 *  - not ending it there instead leaves the connection in its body state,
 *    and a request pipelined behind the body then makes lws loop forever
 *    inside one service call: the whole server stops (measured).
 * Only GET is served and a GET has no use for a body, so a request that
 * announces one (or announces it ambiguously) gets a whole 413/400 at once
 * and the connection is closed, as are other methods (405): nothing after
 * such a request is read as another one. The reply's memory is also freed
 * whenever lws drops the connection's data (HTTP_DROP_PROTOCOL as well as
 * CLOSED_HTTP).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "srv_http.h"
#include "srv_static.h"

#define TEXT "text/plain; charset=utf-8"

/* Keeps the reply (taking `body`, malloc'ed, over); its headers go out now
 * (from the request's callback) or at the next writeable (after a read on
 * the loader thread). */
static void adopt(td_srv_http_reply *r, unsigned status, const char *type, uint8_t *body,
                  size_t len)
{
    free(r->body);
    r->body = body;
    r->body_len = len;
    r->body_sent = 0;
    r->status = status;
    r->type = type;
}

static int prepare(td_srv_http_reply *r, unsigned status, const char *type,
                   const void *body, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) {
        adopt(r, status, type, NULL, 0);
        return -1;
    }
    memcpy(copy, body, len);
    adopt(r, status, type, copy, len);
    return 0;
}

static int add_header(struct lws *wsi, const char *name, const char *value, uint8_t **h,
                      uint8_t *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                       (const unsigned char *)value, (int)strlen(value), h,
                                       end);
}

/* The headers of every reply, from *h on; 0 or -1 (no room). */
static int headers(struct lws *wsi, unsigned status, const char *type, size_t len, int close,
                   uint8_t **h, uint8_t *end)
{
    return lws_add_http_common_headers(wsi, status, type, (lws_filepos_t)len, h, end) ||
                   add_header(wsi, "cache-control:", "no-store", h, end) ||
                   add_header(wsi, "x-content-type-options:", "nosniff", h, end) ||
                   (status == 405 && add_header(wsi, "allow:", "GET", h, end)) ||
                   (close && add_header(wsi, "connection:", "close", h, end)) ||
                   lws_finalize_http_header(wsi, h, end)
               ? -1
               : 0;
}

static int send_headers(struct lws *wsi, td_srv_http_reply *r)
{
    uint8_t hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *h = start,
                                 *end = hdr + sizeof hdr - 1;
    r->headers_due = 0;
    if (headers(wsi, r->status, r->type, r->body_len, 0, &h, end) < 0 ||
        lws_write(wsi, start, (size_t)(h - start), LWS_WRITE_HTTP_HEADERS) < 0)
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int reply(struct lws *wsi, td_srv_http_reply *r, unsigned status, const char *type,
                 const void *body, size_t len)
{
    if (prepare(r, status, type, body, len) < 0)
        return -1;
    return send_headers(wsi, r);
}

static int text(struct lws *wsi, td_srv_http_reply *r, unsigned status, const char *t)
{
    return reply(wsi, r, status, TEXT, t, strlen(t));
}

/* A refusal after which the connection is not reused: what follows the
 * request on it cannot be trusted to be the next request. The whole reply
 * is written now, still in LWS_CALLBACK_HTTP, and -1 makes lws close the
 * connection (after sending whatever the socket did not take yet), before
 * it reads any request body. Always returns -1. */
static int refuse(struct lws *wsi, unsigned status, const char *t)
{
    uint8_t buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *h = start, *end = buf + sizeof buf - 1;
    size_t len = strlen(t);
    if (headers(wsi, status, TEXT, len, 1, &h, end) == 0 && (size_t)(end - h) >= len) {
        memcpy(h, t, len);
        h += len;
        /* A failed write changes nothing: the connection closes anyway. */
        if (lws_write(wsi, start, (size_t)(h - start), LWS_WRITE_HTTP_HEADERS) < 0)
            return -1;
    }
    return -1;
}

static int http_writeable(struct lws *wsi, td_srv_http_reply *r)
{
    size_t chunk = 16384, left;
    uint8_t *buf;
    int final;
    if (r->headers_due) /* a body, unless preparing it ran out of memory */
        return r->body ? send_headers(wsi, r) : -1;
    if (!r->body)
        return 0;
    left = r->body_len - r->body_sent;
    if (left < chunk)
        chunk = left;
    final = r->body_sent + chunk == r->body_len;
    buf = malloc(LWS_PRE + chunk + 1);
    if (!buf)
        return -1;
    memcpy(buf + LWS_PRE, r->body + r->body_sent, chunk);
    int n = lws_write(wsi, buf + LWS_PRE, chunk, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
    free(buf);
    if (n < 0)
        return -1;
    r->body_sent += chunk;
    if (!final) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    free(r->body);
    r->body = NULL;
    /* This may free r (a keep-alive connection gets fresh per-connection
     * data for its next request): r is not touched after it. */
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* The connection closed, or lws is about to free its data: nothing of the
 * reply may outlive it (the loader's read of a document included). */
static void http_closed(td_srv_http_reply *r)
{
    td_srv_service_json_cancel(r->pending);
    r->pending = NULL;
    free(r->body);
    r->body = NULL;
}

/* ---- framing ------------------------------------------------------------ */

/* An HTTP status and text for a request that announces a body, or whose
 * framing could be read two ways (request smuggling behind a proxy that
 * reads it the other way); 0 for none. lws 4.1 reads Content-Length with
 * atoll() over all its occurrences joined by commas ("0,44" is 0) and
 * knows no chunked request bodies, so anything but one plain decimal
 * Content-Length is ambiguous. */
static unsigned framing(struct lws *wsi, const char **why)
{
    char v[32];
    int n;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
        *why = "Transfer-Encoding is not accepted\n";
        return 400;
    }
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
        return 0;
    n = lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_HTTP_CONTENT_LENGTH);
    *why = "Content-Length must be given once, as a decimal number\n";
    if (n <= 0 || n > 18 || strspn(v, "0123456789") != (size_t)n)
        return 400; /* duplicated (joined with ','), signed, empty, huge */
    *why = "a GET takes no request body\n";
    return strtoull(v, NULL, 10) > 0 ? 413 : 0;
}

/* ---- tokens ------------------------------------------------------------- */

/* The request's token (Authorization: Bearer, or ?token=), verified into
 * *t. Returns 0, or 401. */
static unsigned bearer(const td_srv_http_env *env, struct lws *wsi, td_srv_token *t)
{
    char hdr[TD_SRV_TOKEN_MAX + 64];
    const char *tok = NULL;
    int n = lws_hdr_copy(wsi, hdr, sizeof hdr, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n > 7 && strncasecmp(hdr, "Bearer ", 7) == 0)
        tok = hdr + 7;
    else
        tok = lws_get_urlarg_by_name(wsi, "token=", hdr, sizeof hdr);
    if (!tok)
        return 401;
    while (*tok == ' ')
        tok++;
    if (td_srv_token_verify(tok, strlen(tok), env->pk, (uint64_t)time(NULL), t) != TD_SRV_E_OK)
        return 401;
    return 0;
}

/* The request's token grants reading `doc`? Returns 0, or the HTTP status
 * to answer. */
static unsigned auth_doc(const td_srv_http_env *env, struct lws *wsi, const char *doc,
                         size_t len)
{
    td_srv_token t;
    unsigned status;
    if (!env->pk)
        return 0;
    if ((status = bearer(env, wsi, &t)))
        return status;
    if (!(t.rights & TD_SRV_RIGHT_READ) || !td_srv_pattern_match(t.pattern, t.pattern_len, doc, len))
        return 403;
    return 0;
}

static const char *auth_text(unsigned status)
{
    return status == 401 ? "token missing, invalid or expired\n"
                         : "token does not grant this document\n";
}

/* ---- routes --------------------------------------------------------------- */

/* The answer to GET /docs/{id}: status and body by how the read went. */
static void doc_read(void *ud, td_srv_read rc, const char *json, size_t len, const char *msg)
{
    td_srv_http_reply *r = ud;
    char line[600];
    int async = r->pending != NULL;
    r->pending = NULL;
    switch (rc) {
    case TD_SRV_READ_OK:
        prepare(r, 200, "application/json", json, len);
        break;
    case TD_SRV_READ_NOT_FOUND:
        prepare(r, 404, TEXT, "no such document\n", 17);
        break;
    case TD_SRV_READ_LOADING:
        prepare(r, 503, TEXT, "document loading, retry\n", 24);
        break;
    case TD_SRV_READ_UNAVAILABLE:
        snprintf(line, sizeof line, "document cannot be loaded: %s\n", msg);
        prepare(r, 503, TEXT, line, strlen(line));
        break;
    case TD_SRV_READ_FAILED:
        prepare(r, 500, TEXT, "cannot encode the document\n", 27);
        break;
    }
    r->headers_due = 1;
    if (async)
        lws_callback_on_writable(r->wsi);
}

static int route_doc(const td_srv_http_env *env, struct lws *wsi, td_srv_http_reply *r,
                     const char *uri)
{
    const char *id = uri + 6; /* after "/docs/" */
    size_t len = strlen(id);
    unsigned status;

    if (!td_srv_doc_id_valid((const uint8_t *)id, len))
        return text(wsi, r, 400, "invalid document id\n");
    if ((status = auth_doc(env, wsi, id, len)))
        return text(wsi, r, status, auth_text(status));
    r->wsi = wsi;
    r->pending = td_srv_service_json(env->svc, id, len, doc_read, r);
    if (r->pending)
        return 0; /* doc_read answers later */
    if (!r->body)
        return -1; /* out of memory preparing the answer */
    return send_headers(wsi, r);
}

/* --metrics token (or auto with a key): any valid token. */
static int metrics_need_token(const td_srv_http_env *env)
{
    int mode = env->cfg ? env->cfg->metrics : TD_SRV_METRICS_AUTO;
    return mode == TD_SRV_METRICS_TOKEN || (mode == TD_SRV_METRICS_AUTO && env->pk);
}

static int route_metrics(const td_srv_http_env *env, struct lws *wsi, td_srv_http_reply *r,
                         const char *uri)
{
    td_srv_wbuf w;
    td_srv_token t;
    int rc;
    (void)uri;
    if (metrics_need_token(env)) {
        /* A key is required with TOKEN (cli_serve.c); without one, no
         * token can be valid. */
        if (!env->pk || bearer(env, wsi, &t))
            return text(wsi, r, 401, auth_text(401));
    }
    td_srv_wbuf_init(&w, 0);
    td_srv_metrics_render(env->m, env->store, &w);
    if (w.oom) {
        td_srv_wbuf_free(&w);
        return -1;
    }
    rc = reply(wsi, r, 200, "text/plain; version=0.0.4", td_srv_wbuf_msg(&w), w.len);
    td_srv_wbuf_free(&w);
    return rc;
}

/* 200 "ok", or 503 with the reason while the store cannot write (disk
 * full, an I/O error: it retries on its own thread), so a load balancer
 * stops sending writers here until it recovers. */
static int route_healthz(const td_srv_http_env *env, struct lws *wsi, td_srv_http_reply *r,
                         const char *uri)
{
    char why[256], line[300];
    (void)uri;
    /* Cluster mode: without the broker this node refuses every write, so a
     * load balancer should send its clients elsewhere. */
    static const char *const ok[] = {"ok\n", "ok\nbroker: up\n",
                                     "ok\nbroker: unreachable, writes go to the outbox\n"};
    int broker = env->svc ? td_srv_service_broker(env->svc) : -1;
    if (broker == 0)
        return text(wsi, r, 503, "cluster broker unreachable: writes are refused\n");
    if (!env->store || td_store_writable(env->store, why, sizeof why))
        return text(wsi, r, 200, ok[broker > 0 ? broker : 0]);
    snprintf(line, sizeof line, "store cannot write: %s\n", why);
    return text(wsi, r, 503, line);
}

/* Statuses of a static file that was not served. */
static const struct {
    unsigned status;
    const char *text;
} static_refusals[] = {
    [TD_SRV_STATIC_NOT_FOUND] = {404, "not found\n"},
    [TD_SRV_STATIC_REFUSED] = {403, "not a regular file inside the static root\n"},
    [TD_SRV_STATIC_TOO_LARGE] = {403, "file too large to serve\n"},
    [TD_SRV_STATIC_BAD_PATH] = {400, "bad path\n"},
    [TD_SRV_STATIC_FAILED] = {500, "cannot read the file\n"},
};

static int route_static(const td_srv_http_env *env, struct lws *wsi, td_srv_http_reply *r,
                        const char *uri)
{
    td_srv_static_file f;
    td_srv_static_rc rc;
    if (!env->cfg || !env->cfg->static_dir)
        return text(wsi, r, 404, "not found\n");
    rc = td_srv_static_read(env->cfg->static_dir, uri, &f);
    if (rc != TD_SRV_STATIC_OK)
        return text(wsi, r, static_refusals[rc].status, static_refusals[rc].text);
    adopt(r, 200, f.type, f.data, f.len);
    return send_headers(wsi, r);
}

typedef int route_fn(const td_srv_http_env *, struct lws *, td_srv_http_reply *, const char *);

/* Exact paths, then prefixes; every other path is a static file. */
static const struct {
    const char *path;
    int prefix;
    route_fn *fn;
} routes[] = {
    {"/healthz", 0, route_healthz},
    {"/metrics", 0, route_metrics},
    {"/docs/", 1, route_doc},
};

static int http_request(const td_srv_http_env *env, struct lws *wsi, td_srv_http_reply *r)
{
    char uri[1024];
    const char *why = NULL;
    unsigned status;
    status = framing(wsi, &why);
    if (status)
        return refuse(wsi, status, why);
    /* Other methods may come with bodies lws would read on its own terms
     * (a POST without Content-Length: up to 100 MB). */
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
        return refuse(wsi, 405, "only GET\n");
    if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) < 0)
        return text(wsi, r, 414, "URI too long\n");
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (routes[i].prefix ? strncmp(uri, routes[i].path, strlen(routes[i].path)) == 0
                             : strcmp(uri, routes[i].path) == 0)
            return routes[i].fn(env, wsi, r, uri);
    return route_static(env, wsi, r, uri);
}

int td_srv_http_event(const td_srv_http_env *env, struct lws *wsi, int reason,
                      td_srv_http_reply *r, void *in, size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return r && http_request(env, wsi, r) == 0 ? 0 : -1;
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        /* Unreachable: a request with a body was refused and its
         * connection closed before lws read the body (see the top). */
        return -1;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return r ? http_writeable(wsi, r) : -1;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (r)
            http_closed(r);
        return lws_callback_http_dummy(wsi, (enum lws_callback_reasons)reason, r, in, len);
    default:
        return lws_callback_http_dummy(wsi, (enum lws_callback_reasons)reason, r, in, len);
    }
}

struct lws_http_mount *td_srv_http_mounts(const td_srv_config *cfg,
                                          struct lws_http_mount m[TD_SRV_HTTP_MOUNTS])
{
    (void)cfg; /* the routes read it from td_srv_http_env */
    memset(m, 0, TD_SRV_HTTP_MOUNTS * sizeof *m);
    m[0].mountpoint = "/";
    m[0].mountpoint_len = 1;
    m[0].origin = "tandem";
    /* Naming the protocol too makes lws put the connection in
     * LRS_DOING_TRANSACTION while the reply is written, so a request
     * pipelined behind it waits (without it, lws 4.1 parses the next
     * request into the middle of this reply). */
    m[0].protocol = "tandem";
    m[0].origin_protocol = LWSMPRO_CALLBACK;
    return &m[0];
}
