/*
 * srv_http.c -- the HTTP routes (srv_http.h).
 *
 * A reply is built whole, then written in 16 KiB pieces as the socket takes
 * them, so a large document never blocks the loop on one write.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "srv_http.h"

/* Keeps the reply; its headers go out now (from the request's callback) or
 * at the next writeable (after a read on the loader thread). */
static int prepare(td_srv_http_reply *r, unsigned status, const char *type,
                   const void *body, size_t len)
{
    free(r->body);
    r->body = malloc(len ? len : 1);
    if (!r->body)
        return -1;
    memcpy(r->body, body, len);
    r->body_len = len;
    r->body_sent = 0;
    r->status = status;
    r->type = type;
    return 0;
}

static int send_headers(struct lws *wsi, td_srv_http_reply *r)
{
    uint8_t hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *h = start,
                                 *end = hdr + sizeof hdr - 1;
    r->headers_due = 0;
    if (lws_add_http_common_headers(wsi, r->status, r->type, (lws_filepos_t)r->body_len, &h,
                                    end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &h, end) ||
        lws_finalize_write_http_header(wsi, start, &h, end))
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
    return reply(wsi, r, status, "text/plain; charset=utf-8", t, strlen(t));
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
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static void http_closed(td_srv_http_reply *r)
{
    td_srv_service_json_cancel(r->pending);
    r->pending = NULL;
    free(r->body);
    r->body = NULL;
}

/* The request's token (Authorization: Bearer, or ?token=) grants `doc`?
 * Returns 0, or the HTTP status to answer. */
static unsigned auth(const td_srv_http_env *env, struct lws *wsi, const char *doc, size_t len)
{
    char hdr[TD_SRV_TOKEN_MAX + 64];
    const char *tok = NULL;
    td_srv_token t;
    if (!env->pk)
        return 0;
    int n = lws_hdr_copy(wsi, hdr, sizeof hdr, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n > 7 && strncasecmp(hdr, "Bearer ", 7) == 0)
        tok = hdr + 7;
    else
        tok = lws_get_urlarg_by_name(wsi, "token=", hdr, sizeof hdr);
    if (!tok)
        return 401;
    while (*tok == ' ')
        tok++;
    if (td_srv_token_verify(tok, strlen(tok), env->pk, (uint64_t)time(NULL), &t) != TD_SRV_E_OK)
        return 401;
    if (!(t.rights & TD_SRV_RIGHT_READ) || !td_srv_pattern_match(t.pattern, t.pattern_len, doc, len))
        return 403;
    return 0;
}

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
        prepare(r, 404, "text/plain; charset=utf-8", "no such document\n", 17);
        break;
    case TD_SRV_READ_LOADING:
        prepare(r, 503, "text/plain; charset=utf-8", "document loading, retry\n", 24);
        break;
    case TD_SRV_READ_UNAVAILABLE:
        snprintf(line, sizeof line, "document cannot be loaded: %s\n", msg);
        prepare(r, 503, "text/plain; charset=utf-8", line, strlen(line));
        break;
    case TD_SRV_READ_FAILED:
        prepare(r, 500, "text/plain; charset=utf-8", "cannot encode the document\n", 27);
        break;
    }
    r->headers_due = 1;
    if (async)
        lws_callback_on_writable(r->wsi);
}

static int route_doc(const td_srv_http_env *env, struct lws *wsi, td_srv_http_reply *r,
                     const char *id)
{
    size_t len = strlen(id);
    unsigned status;

    if (!td_srv_doc_id_valid((const uint8_t *)id, len))
        return text(wsi, r, 400, "invalid document id\n");
    if ((status = auth(env, wsi, id, len)))
        return text(wsi, r, status, status == 401 ? "token missing, invalid or expired\n"
                                                  : "token does not grant this document\n");
    r->wsi = wsi;
    r->pending = td_srv_service_json(env->svc, id, len, doc_read, r);
    if (r->pending)
        return 0; /* doc_read answers later */
    if (!r->body)
        return -1; /* out of memory preparing the answer */
    return send_headers(wsi, r);
}

static int route_metrics(const td_srv_http_env *env, struct lws *wsi, td_srv_http_reply *r)
{
    td_srv_wbuf w;
    int rc;
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

static int http_request(const td_srv_http_env *env, struct lws *wsi, td_srv_http_reply *r)
{
    char uri[1024];
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
        return text(wsi, r, 405, "only GET\n");
    if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) < 0)
        return text(wsi, r, 414, "URI too long\n");
    if (strcmp(uri, "/healthz") == 0)
        return text(wsi, r, 200, "ok\n");
    if (strcmp(uri, "/metrics") == 0)
        return route_metrics(env, wsi, r);
    if (strncmp(uri, "/docs/", 6) == 0)
        return route_doc(env, wsi, r, uri + 6);
    return text(wsi, r, 404, "not found\n");
}

int td_srv_http_event(const td_srv_http_env *env, struct lws *wsi, int reason,
                      td_srv_http_reply *r, void *in, size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return http_request(env, wsi, r) < 0 ? -1 : 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_writeable(wsi, r);
    case LWS_CALLBACK_CLOSED_HTTP:
        if (r)
            http_closed(r);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, (enum lws_callback_reasons)reason, r, in, len);
    }
}

struct lws_http_mount *td_srv_http_mounts(const td_srv_config *cfg,
                                          struct lws_http_mount m[TD_SRV_HTTP_MOUNTS])
{
    static const char *const routes[] = {"/healthz", "/metrics", "/docs"};
    struct lws_http_mount *head = NULL;
    memset(m, 0, TD_SRV_HTTP_MOUNTS * sizeof *m);
    for (int i = 0; i < 3; i++) {
        m[i].mountpoint = routes[i];
        m[i].mountpoint_len = (unsigned char)strlen(routes[i]);
        m[i].origin = "tandem";
        m[i].origin_protocol = LWSMPRO_CALLBACK;
        m[i].mount_next = head;
        head = &m[i];
    }
    if (cfg->static_dir) {
        m[3].mountpoint = "/";
        m[3].mountpoint_len = 1;
        m[3].origin = cfg->static_dir;
        m[3].def = "index.html";
        m[3].origin_protocol = LWSMPRO_FILE;
        m[3].mount_next = head;
        head = &m[3];
    }
    return head;
}
