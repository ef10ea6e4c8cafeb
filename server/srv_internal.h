/*
 * srv_internal.h -- private: the server's shared structures.
 *
 * One process, one libwebsockets event loop thread. Everything below is
 * touched only on that thread, except the two queues that cross threads
 * (the store's completions, drained by td_store_poll(), and the loader's
 * results in srv_docs.c), both of which wake the loop with
 * lws_cancel_service() and are drained in LWS_CALLBACK_EVENT_WAIT_CANCELLED.
 *
 * Objects:
 *   td_srv_server   the process: config, lws context, store, registry, lists
 *   td_srv_session  one WebSocket connection (rx reassembly, send queue)
 *   td_srv_doc      one loaded document (CRDT replica, subscribers, appends)
 *   td_srv_sub      one session subscribed to one document (+ its presence)
 *   td_srv_rec      one UPDATE between apply and its store completion
 *   td_srv_frame    one encoded outgoing message, shared by refcount
 */
#ifndef SRV_INTERNAL_H
#define SRV_INTERNAL_H

#include <stdatomic.h>
#include <stdio.h>

#include <libwebsockets.h>

#include "tandem_crdt.h"
#include "tandem_srv.h"
#include "tandem_store.h"

#include "srv_config.h"

/* ---- codec helpers (srv_proto.c) ----------------------------------------------- */

int td_srv_read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out);
int td_srv_read_bytes(const uint8_t *p, size_t len, size_t *pos, td_srv_bytes *out);

/* ---- auth (srv_auth.c) ----------------------------------------------------------- */

int td_srv_key_read(const char *path, uint8_t *key, size_t keylen, char *err,
                    size_t errlen);

/* ---- metrics (srv_metrics.c) ----------------------------------------------------- */

#define TD_SRV_HIST_BUCKETS 14
typedef struct td_srv_hist {
    uint64_t counts[TD_SRV_HIST_BUCKETS + 1]; /* last: +Inf */
    uint64_t n;
    double sum;
} td_srv_hist;

typedef struct td_srv_metrics {
    uint64_t connections, connections_total, docs_loaded;
    uint64_t ops_applied, batches_applied, batches_duplicate;
    uint64_t bytes_in, bytes_out, frames_in, frames_out;
    uint64_t presence_updates, presence_broadcasts, presence_expired;
    uint64_t errors[TD_SRV_E_COUNT];
    uint64_t slow_consumer_closes, store_failures, doc_load_failures;
    uint64_t doc_loads, doc_unloads;
    td_srv_hist store_append, recv_to_bcast;
} td_srv_metrics;

void td_srv_hist_observe(td_srv_hist *h, double seconds);
struct td_srv_server;
void td_srv_metrics_render(struct td_srv_server *srv, td_srv_wbuf *out);

/* ---- frames and sessions (srv_session.c) ------------------------------------------- */

typedef struct td_srv_frame {
    uint32_t refs;
    size_t len;    /* message bytes, after LWS_PRE */
    uint8_t *buf;  /* LWS_PRE + len bytes */
} td_srv_frame;

/* Takes over w's buffer (which must have head == LWS_PRE). NULL on OOM. */
td_srv_frame *td_srv_frame_from(td_srv_wbuf *w);
void td_srv_frame_unref(td_srv_frame *f);

typedef struct td_srv_qitem {
    td_srv_frame *f;
    struct td_srv_qitem *next;
} td_srv_qitem;

/* One client message held back while its document loads (srv_docs.c). */
typedef struct td_srv_pend {
    struct td_srv_pend *next;
    size_t len;
    uint8_t data[]; /* the whole message, as received */
} td_srv_pend;

/* Bound on the messages held back per connection (PROTOCOL.md section 4):
 * past it, a message for a loading document gets ERROR busy. One message is
 * always accepted, whatever its size, when nothing is held back. */
#define TD_SRV_PEND_MAX_MSGS 4096
#define TD_SRV_PEND_MAX_BYTES (16u << 20)

typedef struct td_srv_doc td_srv_doc;
/* A REMOTE or PRESENCE frame of n items for d (frees items). */
td_srv_frame *td_srv_list_frame(int type, const td_srv_doc *d, uint64_t n, td_srv_wbuf *items);
typedef struct td_srv_sub td_srv_sub;
typedef struct td_srv_rec td_srv_rec;
typedef struct td_srv_server td_srv_server;

typedef struct td_srv_session {
    td_srv_server *srv;
    struct lws *wsi;
    uint64_t id, agent;
    int hello;       /* a HELLO was accepted */
    int expired;     /* the token expired; writes refused */
    int close_code;  /* non-zero: close with it once the queue is written */
    int close_sent;  /* our close frame is out: wait for the peer's, drop input */
    td_srv_token tok;
    /* rx reassembly */
    uint8_t *rx;
    size_t rx_len, rx_cap;
    /* tx queue */
    td_srv_qitem *q_head, *q_tail;
    size_t q_bytes, q_n;
    td_srv_frame *draining; /* written, maybe still read by permessage-deflate */
    /* subscriptions and appends in flight */
    td_srv_sub *subs;
    size_t nsubs;
    td_srv_rec *recs; /* sess_next list */
    /* messages held back for loading documents: counts over all of them,
     * and those whose document became ready, to replay in order */
    size_t pend_n, pend_bytes;
    td_srv_pend *ready_head, *ready_tail;
    int in_replay_list;
    struct td_srv_session *replay_next;
    uint64_t mark;    /* flush epoch scratch */
    struct td_srv_session *next, *prev;
} td_srv_session;

void td_srv_session_open(td_srv_server *srv, td_srv_session *s, struct lws *wsi);
void td_srv_session_close(td_srv_session *s);
/* A complete message arrived. Returns 0, or -1 to close the connection now
 * (after lws_close_reason). */
int td_srv_session_message(td_srv_session *s, const uint8_t *msg, size_t len);
/* Queues a frame (takes a reference). Past the cap the connection is marked
 * for closing with 1008 and its queue is dropped. */
void td_srv_send(td_srv_session *s, td_srv_frame *f);
/* Encodes and queues one message. */
void td_srv_send_msg(td_srv_session *s, const td_srv_msg *m);
void td_srv_send_error(td_srv_session *s, td_srv_code code, const char *doc,
                       size_t doc_len, uint64_t batch_id, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* Writes the next queued frame. Returns -1 when the connection must close. */
int td_srv_session_writeable(td_srv_session *s);
/* Handles one decoded message (also for replays of held-back ones). */
void td_srv_session_dispatch(td_srv_session *s, const td_srv_msg *m, const uint8_t *raw,
                             size_t len);
/* Replays the held-back messages of every session whose documents became
 * ready (srv->replay list), each session's in arrival order. */
void td_srv_replay(td_srv_server *srv);
/* Marks the session for closing with `code` once its queue is written. */
void td_srv_session_close_with(td_srv_session *s, int code);
void td_srv_token_timer(td_srv_session *s);

/* ---- documents (srv_docs.c) ---------------------------------------------------------- */

typedef enum {
    TD_SRV_DOC_LOADING,   /* first load in progress; subs wait */
    TD_SRV_DOC_READY,
    TD_SRV_DOC_STALE,     /* a store append failed: waiting for in-flight appends */
    TD_SRV_DOC_RELOADING  /* reload in progress; subs keep subscribed */
} td_srv_doc_state;

typedef struct td_srv_presence {
    td_srv_sub *sub;
    uint8_t *state;
    size_t len;
    int64_t last_recv_us, last_bc_us;
    int dirty;   /* changed since the last broadcast, inside the interval */
    int changed; /* to broadcast at the next flush */
    int in_bc;   /* in the server's broadcast-interval list */
    struct td_srv_presence *ttl_next, *ttl_prev, *bc_next, *bc_prev;
} td_srv_presence;

struct td_srv_sub {
    td_srv_session *sess;
    td_srv_doc *doc;
    td_srv_sub *doc_next, *doc_prev;
    td_srv_sub *sess_next;
    int waiting;   /* SYNC owed once the document is ready */
    uint8_t *vv;   /* the vv to answer, while waiting */
    size_t vv_len;
    td_srv_pend *pend_head, *pend_tail; /* held back until the SYNC is sent */
    td_srv_presence *pr;
};

struct td_srv_rec {
    td_srv_doc *doc;
    td_srv_session *sess; /* NULL once the sender is gone */
    uint64_t batch_id;
    uint8_t *batch;
    size_t len;
    int dup;       /* duplicate-only: ACK only, not stored */
    int done;
    td_store_err result;
    char errmsg[128];
    int64_t t_recv_us, t_store_us;
    td_srv_rec *next; /* doc FIFO, then the doc's broadcast list */
    td_srv_rec *sess_next, *sess_prev;
};

struct td_srv_doc {
    td_srv_server *srv;
    char id[TD_SRV_DOC_MAX + 1];
    size_t id_len;
    uint64_t hash;
    td_srv_doc *hnext;
    td_srv_doc_state state;
    td_crdt_doc *crdt;
    td_srv_sub *subs;
    size_t nsubs;
    td_srv_rec *fifo_head, *fifo_tail;
    size_t inflight;
    td_srv_rec *out_head, *out_tail; /* durable, to broadcast at the flush */
    int pres_changed;
    int dirty; /* in the server's flush list */
    td_srv_doc *dirty_next;
    int64_t idle_since_us;
};

int td_srv_docs_init(td_srv_server *srv);
void td_srv_docs_stop(td_srv_server *srv);  /* joins the loader thread */
void td_srv_docs_free(td_srv_server *srv);  /* frees every document */
td_srv_doc *td_srv_doc_find(td_srv_server *srv, const char *id, size_t len);
void td_srv_docs_poll(td_srv_server *srv);  /* loader results, on the loop */
void td_srv_docs_maintain(td_srv_server *srv); /* idle unloads, 1 Hz */

void td_srv_doc_subscribe(td_srv_session *s, const td_srv_msg *m);
void td_srv_doc_unsubscribe(td_srv_session *s, const td_srv_msg *m);
void td_srv_doc_update(td_srv_session *s, const td_srv_msg *m);
td_srv_sub *td_srv_sub_find(td_srv_session *s, const uint8_t *doc, size_t len);
/* Holds m back if its subscription is still waiting for its SYNC (or holds
 * back earlier messages): returns 1 if m was taken care of (held back, or
 * refused past the bound), 0 if the caller processes it now. */
int td_srv_sub_defer(td_srv_sub *u, const td_srv_msg *m, const uint8_t *raw, size_t len);
/* Frees s's held-back messages that are ready to replay. */
void td_srv_session_drop_ready(td_srv_session *s);
void td_srv_sub_remove(td_srv_sub *sub);
/* Marks the document for the next flush. */
void td_srv_doc_mark(td_srv_doc *d);
/* Sends everything due: broadcasts and presence of dirty documents. */
void td_srv_flush(td_srv_server *srv);
void td_srv_flush_soon(td_srv_server *srv);

/* ---- presence (srv_presence.c) --------------------------------------------------- */

void td_srv_presence_recv(td_srv_session *s, const td_srv_msg *m);
/* The entry goes away at once (disconnect, unsubscribe): LEAVE to peers. */
void td_srv_presence_drop(td_srv_sub *sub, int send_leave);
/* PRESENCE snapshot of the document for a new subscriber. */
void td_srv_presence_snapshot(td_srv_sub *sub);
/* Broadcast the changed entries of d (called by the flush). */
void td_srv_presence_flush_doc(td_srv_doc *d, int64_t now_us);
void td_srv_presence_arm(td_srv_server *srv);

/* ---- the server (srv_loop.c) ------------------------------------------------------ */

typedef enum { TD_SRV_RUNNING, TD_SRV_DRAINING, TD_SRV_CLOSING, TD_SRV_STOPPED } td_srv_phase;

struct td_srv_server {
    td_srv_config cfg;
    struct lws_context *ctx;
    _Atomic(struct lws_context *) wake_ctx;
    td_store *store;
    int have_key;
    uint8_t pk[32];
    td_srv_metrics m;
    uint64_t next_session_id;
    td_srv_session *sessions;
    td_srv_phase phase;
    int64_t phase_deadline_us;
    /* document registry */
    td_srv_doc **buckets;
    size_t nbuckets, ndocs;
    uint8_t hash_key[16];
    void *loader; /* srv_docs.c */
    size_t inflight; /* appends in flight, all documents */
    /* flush */
    td_srv_doc *dirty_head;
    td_srv_session *replay_head; /* sessions with held-back messages to replay */
    uint64_t flush_epoch;
    int flush_scheduled;
    lws_sorted_usec_list_t sul_flush, sul_presence, sul_maint;
    int64_t presence_at; /* when sul_presence fires; 0: not armed */
    /* presence lists (ordered by time, since interval and TTL are fixed) */
    td_srv_presence *ttl_head, *ttl_tail, *bc_head, *bc_tail;
};

int64_t td_srv_now_us(void);

#endif /* SRV_INTERNAL_H */
