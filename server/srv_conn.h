/*
 * srv_conn.h -- private: one WebSocket connection as a transport, whatever
 * protocol it speaks: reassembling messages, the send queue with its cap,
 * and the close handshake.
 *
 * Outgoing messages are encoded once into refcounted frames, so a broadcast
 * to a hundred subscribers is one buffer queued a hundred times. The queue
 * has a byte cap: a connection that does not read (a slow consumer) has its
 * queue dropped at once, which keeps memory bounded, and is closed with
 * 1008; its client resyncs on reconnect since the state is in the document.
 *
 * A front-end embeds a td_srv_conn in its session and gives it a handler:
 * the conn calls it for each whole message, for the lws timer, and when the
 * connection is gone.
 */
#ifndef SRV_CONN_H
#define SRV_CONN_H

#include <sys/queue.h>

#include <libwebsockets.h>

#include "srv_metrics.h"

typedef struct td_srv_frame {
    uint32_t refs;
    size_t len;   /* message bytes, after LWS_PRE */
    uint8_t *buf; /* LWS_PRE + len bytes */
} td_srv_frame;

/* Takes over w's buffer (which must have head == LWS_PRE). NULL on OOM. */
td_srv_frame *td_srv_frame_from(td_srv_wbuf *w);
void td_srv_frame_unref(td_srv_frame *f);

typedef struct td_srv_conn td_srv_conn;

typedef struct td_srv_conn_handler {
    /* A whole binary message. */
    void (*message)(td_srv_conn *c, const uint8_t *msg, size_t len);
    void (*timer)(td_srv_conn *c);
    /* The connection is gone; the handler frees what embeds c. */
    void (*closed)(td_srv_conn *c);
} td_srv_conn_handler;

/* Every open connection, and what they share. */
typedef struct td_srv_conns {
    LIST_HEAD(, td_srv_conn) list;
    td_srv_metrics *m;
    uint64_t max_frame, send_queue;
} td_srv_conns;

typedef struct td_srv_qitem {
    td_srv_frame *f;
    STAILQ_ENTRY(td_srv_qitem) link;
} td_srv_qitem;

struct td_srv_conn {
    td_srv_conns *all;
    const td_srv_conn_handler *h;
    struct lws *wsi;
    int close_code;  /* non-zero: close with it once the queue is written */
    int close_sent;  /* our close frame is out: wait for the peer's, drop input */
    int authenticated; /* see td_srv_conn_authenticated */
    uint8_t *rx;     /* reassembly of messages bigger than one read */
    size_t rx_len, rx_cap;
    STAILQ_HEAD(, td_srv_qitem) q;
    size_t q_bytes, q_n;
    td_srv_frame *draining; /* written, maybe still read by permessage-deflate */
    LIST_ENTRY(td_srv_conn) link;
};

void td_srv_conn_open(td_srv_conns *all, td_srv_conn *c, struct lws *wsi,
                      const td_srv_conn_handler *h);
/* lws events, from the loop's callback. Each returns 0, or -1 to close the
 * socket now. */
int td_srv_conn_receive(td_srv_conn *c, const void *in, size_t len);
int td_srv_conn_writeable(td_srv_conn *c);
/* LWS_CALLBACK_CLOSED: unlinks c and hands it to its handler. */
void td_srv_conn_closed(td_srv_conn *c);

/* Queues a frame (takes a reference). Past the cap the connection is
 * marked for closing with 1008 and its queue is dropped. */
void td_srv_conn_send(td_srv_conn *c, td_srv_frame *f);
/* The front-end accepted the client's credentials (a HELLO): the limits
 * that hold before authentication no longer apply. */
void td_srv_conn_authenticated(td_srv_conn *c);
/* Closes with `code` once the queue is written (the close handshake). */
void td_srv_conn_close_with(td_srv_conn *c, int code);

#endif /* SRV_CONN_H */
