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

static int reply(struct lws *wsi, td_srv_http_reply *r, unsigned status, const char *type,
                 const void *body, size_t len)
{
    uint8_t hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *h = start,
                                 *end = hdr + sizeof hdr - 1;
    free(r->body);
    r->body = malloc(len ? len : 1);
    if (!r->body)
        return -1;
    memcpy(r->body, body, len);
    r->body_len = len;
    r->body_sent = 0;
    if (lws_add_http_common_headers(wsi, status, type, (lws_filepos_t)len, &h, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &h, end) ||
        lws_finalize_write_http_header(wsi, start, &h, end))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int text(struct lws *wsi, td_srv_http_reply *r, unsigned status, const char *t)
{
    return reply(wsi, r, status, "text/plain; charset=utf-8", t, strlen(t));
}

int td_srv_http_writeable(struct lws *wsi, td_srv_http_reply *r)
{
    size_t chunk = 16384, left;
    uint8_t *buf;
    int final;
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

void td_srv_http_closed(td_srv_http_reply *r)
{
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

static int route_doc(const td_srv_http_env *env, struct lws *wsi, td_srv_http_reply *r,
                     const char *id)
{
    size_t len = strlen(id), jlen = 0;
    char *json = NULL, msg[512], line[600];
    unsigned status;
    int rc;

    if (!td_srv_doc_id_valid((const uint8_t *)id, len))
        return text(wsi, r, 400, "invalid document id\n");
    if ((status = auth(env, wsi, id, len)))
        return text(wsi, r, status, status == 401 ? "token missing, invalid or expired\n"
                                                  : "token does not grant this document\n");
    msg[0] = '\0';
    switch (td_srv_service_json(env->svc, id, len, &json, &jlen, msg, sizeof msg)) {
    case TD_SRV_READ_OK:
        rc = reply(wsi, r, 200, "application/json", json, jlen);
        free(json);
        return rc;
    case TD_SRV_READ_NOT_FOUND:
        return text(wsi, r, 404, "no such document\n");
    case TD_SRV_READ_LOADING:
        return text(wsi, r, 503, "document loading, retry\n");
    case TD_SRV_READ_UNAVAILABLE:
        snprintf(line, sizeof line, "document cannot be loaded: %s\n", msg);
        return text(wsi, r, 503, line);
    case TD_SRV_READ_FAILED:
        break;
    }
    return text(wsi, r, 500, "cannot encode the document\n");
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

int td_srv_http_request(const td_srv_http_env *env, struct lws *wsi, td_srv_http_reply *r)
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
