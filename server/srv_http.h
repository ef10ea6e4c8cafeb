/*
 * srv_http.h -- private: the HTTP routes of `tandem serve` on the WebSocket
 * port: /healthz, /metrics (Prometheus), /docs/{id} (a document as JSON),
 * and static files from --static DIR (srv_static.h) for every other GET.
 *
 * Every request comes to one lws callback mount at "/"; lws's own file
 * serving is not used (it follows symlinks and opens FIFOs). Only GET
 * without a body is served; a request with a body, with ambiguous framing
 * or with another method gets a whole 413/400/405 and its connection is
 * closed.
 */
#ifndef SRV_HTTP_H
#define SRV_HTTP_H

#include <libwebsockets.h>

#include "srv_service.h"

typedef struct td_srv_http_env {
    td_srv_service *svc;
    td_store *store;
    const td_srv_metrics *m;
    const uint8_t *pk; /* the token key (32 bytes); NULL: the server is open */
    const td_srv_config *cfg; /* --static, --metrics; NULL: neither */
} td_srv_http_env;

/* The reply being written on one HTTP connection (lws per-session data). */
typedef struct td_srv_http_reply {
    struct lws *wsi;
    const td_srv_http_env *env;
    td_srv_read_req *pending; /* a document read on the loader thread */
    unsigned status;
    const char *type;
    int headers_due; /* the headers go out at the next writeable */
    uint8_t *body;
    size_t body_len, body_sent;
} td_srv_http_reply;

/* Every lws event that is not the WebSocket's: HTTP requests, bodies,
 * writes, closes (r is the connection's reply; NULL for events without a
 * connection). Returns what the lws callback returns. */
int td_srv_http_event(const td_srv_http_env *env, struct lws *wsi, int reason,
                      td_srv_http_reply *r, void *in, size_t len);

/* The lws mounts: one callback mount at "/" that brings every request to
 * td_srv_http_event. */
#define TD_SRV_HTTP_MOUNTS 1
struct lws_http_mount *td_srv_http_mounts(const td_srv_config *cfg,
                                          struct lws_http_mount m[TD_SRV_HTTP_MOUNTS]);

#endif /* SRV_HTTP_H */
