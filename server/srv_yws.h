/*
 * srv_yws.h -- private: the y-websocket front-end (docs/PROTOCOL-YJS.md):
 * the stock `y-websocket` WebsocketProvider at ws://HOST:PORT/yjs/ROOM,
 * one Yjs document per connection, a token as ?token=.
 *
 * Like srv_native, it turns messages into calls of the document service
 * and the subscriber callbacks into messages; it holds no document logic.
 */
#ifndef SRV_YWS_H
#define SRV_YWS_H

#include "srv_conn.h"
#include "srv_service.h"

typedef struct td_srv_yws td_srv_yws;

typedef struct td_srv_yws_env {
    const td_srv_config *cfg;
    td_srv_service *svc;
    td_srv_conns *conns;
    td_srv_metrics *m;
    const uint8_t *pk; /* the token key (32 bytes); NULL: the server is open */
    /* The awareness rooms, shared with the other Yjs front-end (a
     * y-websocket and a Hocuspocus client of one document are peers);
     * they must outlive both front-ends' connections. */
    struct td_srv_yaw_rooms *rooms;
} td_srv_yws_env;

/* The path prefix the provider's serverUrl ends with. */
#define TD_SRV_YWS_PREFIX "/yjs/"

int td_srv_yws_new(td_srv_yws **out, const td_srv_yws_env *env);
void td_srv_yws_free(td_srv_yws *y);
/* A new WebSocket connection to /yjs/ROOM (room: the path after the
 * prefix, token: the ?token= argument or NULL): its transport, or NULL
 * when out of memory. A refused token or room is told to the client (an
 * auth message) and the connection closes. */
td_srv_conn *td_srv_yws_open(td_srv_yws *y, struct lws *wsi, const char *room,
                             size_t room_len, const char *token, size_t token_len);
/* Runs the messages held back while documents loaded. */
void td_srv_yws_replay(td_srv_yws *y);

#endif /* SRV_YWS_H */
