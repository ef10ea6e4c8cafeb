/*
 * srv_http.h -- private: the HTTP routes of `tandem serve` on the WebSocket
 * port: /healthz, /metrics (Prometheus), /docs/{id} (a document as JSON).
 * Static files are lws mounts set up by the loop.
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
} td_srv_http_env;

/* The reply being written on one HTTP connection (lws per-session data). */
typedef struct td_srv_http_reply {
    uint8_t *body;
    size_t body_len, body_sent;
} td_srv_http_reply;

/* LWS_CALLBACK_HTTP, _HTTP_WRITEABLE and _CLOSED_HTTP. The first two return
 * 0, or -1 to close the connection. */
int td_srv_http_request(const td_srv_http_env *env, struct lws *wsi, td_srv_http_reply *r);
int td_srv_http_writeable(struct lws *wsi, td_srv_http_reply *r);
void td_srv_http_closed(td_srv_http_reply *r);

#endif /* SRV_HTTP_H */
