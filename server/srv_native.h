/*
 * srv_native.h -- private: the front-end of tandem's own wire protocol
 * (docs/PROTOCOL.md) on the WebSocket connections of `tandem serve`.
 *
 * It turns each message into a call of the document service or presence,
 * after checking what the connection's token allows, and turns what the
 * service tells a client (srv_subscriber.h) into messages. It holds no
 * document logic.
 */
#ifndef SRV_NATIVE_H
#define SRV_NATIVE_H

#include "srv_conn.h"
#include "srv_service.h"

typedef struct td_srv_native td_srv_native;

/* What the front-end works with; every pointer outlives it. */
typedef struct td_srv_native_env {
    const td_srv_config *cfg;
    td_srv_service *svc;
    td_srv_conns *conns;
    td_srv_metrics *m;
    const uint8_t *pk; /* the token key (32 bytes); NULL: the server is open */
} td_srv_native_env;

int td_srv_native_new(td_srv_native **out, const td_srv_native_env *env);
void td_srv_native_free(td_srv_native *n);
/* A new WebSocket connection speaks the protocol: its transport, or NULL
 * when out of memory. */
td_srv_conn *td_srv_native_open(td_srv_native *n, struct lws *wsi);
/* Runs the messages held back for documents that have become ready. */
void td_srv_native_replay(td_srv_native *n);

#endif /* SRV_NATIVE_H */
