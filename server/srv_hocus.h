/*
 * srv_hocus.h -- private: the Hocuspocus front-end (docs/PROTOCOL-YJS.md):
 * the stock `@hocuspocus/provider` at ws://HOST:PORT/hocuspocus, the
 * document name in every message, several documents per socket, a token
 * in each document's Auth message, SyncStatus as the durable
 * acknowledgement.
 *
 * Like srv_native and srv_yws, it turns messages into calls of the
 * document service and the subscriber callbacks into messages; it holds no
 * document logic.
 */
#ifndef SRV_HOCUS_H
#define SRV_HOCUS_H

#include "srv_conn.h"
#include "srv_service.h"

typedef struct td_srv_hocus td_srv_hocus;

typedef struct td_srv_hocus_env {
    const td_srv_config *cfg;
    td_srv_service *svc;
    td_srv_conns *conns;
    td_srv_metrics *m;
    const uint8_t *pk; /* the token key (32 bytes); NULL: the server is open */
    /* The awareness rooms, shared with the other Yjs front-end (a
     * y-websocket and a Hocuspocus client of one document are peers);
     * they must outlive both front-ends' connections. */
    struct td_srv_yaw_rooms *rooms;
} td_srv_hocus_env;

/* The path of the provider's url. */
#define TD_SRV_HOCUS_PATH "/hocuspocus"

int td_srv_hocus_new(td_srv_hocus **out, const td_srv_hocus_env *env);
void td_srv_hocus_free(td_srv_hocus *h);
/* A new WebSocket connection to /hocuspocus: its transport, or NULL when
 * out of memory. */
td_srv_conn *td_srv_hocus_open(td_srv_hocus *h, struct lws *wsi);
/* Runs the messages held back while documents loaded. */
void td_srv_hocus_replay(td_srv_hocus *h);

#endif /* SRV_HOCUS_H */
