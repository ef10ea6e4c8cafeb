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

/* Open connections per client address (srv_conn.c's small hash table). */
typedef struct td_srv_peer_addr td_srv_peer_addr;
#define TD_SRV_ADDR_BUCKETS 1024

/* Every open connection, and what they share. The two queues are in
 * deadline order (every connection gets the same timeout, appended when
 * its clock starts), so td_srv_conns_maintain looks only at what is due. */
typedef struct td_srv_conns {
    LIST_HEAD(, td_srv_conn) list;
    TAILQ_HEAD(, td_srv_conn) unauth;  /* no accepted HELLO yet, oldest first */
    TAILQ_HEAD(, td_srv_conn) partial; /* a message half received, oldest first */
    TAILQ_HEAD(, td_srv_conn) unflushed; /* frames queued since td_srv_conns_flush */
    td_srv_metrics *m;
    uint64_t max_frame, send_queue;
    uint64_t max_conns, max_per_addr; /* WebSocket connections */
    uint64_t preauth_bytes; /* largest message and send queue before HELLO */
    int64_t hello_timeout_us, frame_timeout_us;
    uint8_t *gbuf; /* where gathered frames are framed (srv_conn.c), made on first use */
    uint64_t n; /* open connections */
    td_srv_peer_addr *addrs[TD_SRV_ADDR_BUCKETS];
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
    /* No permessage-deflate on this connection: queued frames are framed
     * here and written together (td_srv_conn_writeable). */
    int gather;
    int in_unflushed; /* on all->unflushed */
    TAILQ_ENTRY(td_srv_conn) unflushed_link;
    uint8_t *rx;     /* reassembly of messages bigger than one read */
    size_t rx_len, rx_cap;
    int in_rx;       /* a message is half received (on all->partial) */
    int in_unauth;   /* on all->unauth */
    int64_t opened_us, rx_started_us;
    td_srv_peer_addr *addr; /* NULL: the peer's address was unknown */
    TAILQ_ENTRY(td_srv_conn) deadline_unauth, deadline_partial;
    STAILQ_HEAD(, td_srv_qitem) q;
    size_t q_bytes, q_n;
    td_srv_frame *draining; /* written, maybe still read by permessage-deflate */
    LIST_ENTRY(td_srv_conn) link;
};

/* Empty lists; the limits are the caller's to fill in. */
void td_srv_conns_init(td_srv_conns *all, td_srv_metrics *m);
/* Frees the address table (every connection is closed by then). */
void td_srv_conns_free(td_srv_conns *all);
/* LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: whether the WebSocket may open under
 * --max-conns and --max-conns-per-ip. Returns what lws wants back: 0 (go
 * on), 1 (refused: we answered 503 with Retry-After), -1 (hang up). */
int td_srv_conns_confirm_upgrade(td_srv_conns *all, struct lws *wsi);
/* Writes what was queued since the last call on the authenticated
 * connections that gather (c->gather), straight from the loop rather than in a writeable
 * callback of the next turn: that round trip cost a poll() over every
 * socket per turn that broadcast anything (issue 14). A connection with
 * output lws still holds, or more queued than one write takes, waits for
 * its writeable callback as before. Call at the end of each loop turn. */
void td_srv_conns_flush(td_srv_conns *all);
/* Closes, with 1008, every connection past its HELLO deadline or with a
 * message unfinished for longer than the frame timeout. Called about once
 * a second. */
void td_srv_conns_maintain(td_srv_conns *all, int64_t now_us);

/* Counts c in (and, past a cap that the upgrade check missed, closes it
 * with 1013 "try again later"). */
void td_srv_conn_open(td_srv_conns *all, td_srv_conn *c, struct lws *wsi,
                      const td_srv_conn_handler *h);
/* lws events, from the loop's callback. Each returns 0, or -1 to close the
 * socket now. */
int td_srv_conn_receive(td_srv_conn *c, const void *in, size_t len);
int td_srv_conn_writeable(td_srv_conn *c);
/* LWS_CALLBACK_CLOSED: unlinks c and hands it to its handler. */
void td_srv_conn_closed(td_srv_conn *c);

/* Queues a frame (takes a reference). Past the cap (--send-queue, or
 * --preauth-bytes before the HELLO) the connection is marked for closing
 * with 1008 and its queue is dropped. */
void td_srv_conn_send(td_srv_conn *c, td_srv_frame *f);
/* The front-end accepted the client's credentials (a HELLO): the limits
 * that hold before authentication no longer apply. */
void td_srv_conn_authenticated(td_srv_conn *c);
/* Closes with `code` once the queue is written (the close handshake). */
void td_srv_conn_close_with(td_srv_conn *c, int code);

#endif /* SRV_CONN_H */
