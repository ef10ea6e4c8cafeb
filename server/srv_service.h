/*
 * srv_service.h -- private: the document service, the one place that knows
 * where a document's state comes from and where accepted batches go.
 *
 * It owns the registry of loaded documents, their loading and unloading
 * (on a loader thread), subscriptions, and the pipeline of every batch:
 * apply (through the document model) -> persist (the store thread, group
 * commit) -> acknowledge -> broadcast. It talks to documents only through a
 * td_srv_model and to clients only through the subscriber interface
 * (srv_subscriber.h); it knows no wire format. Front-ends decide what a
 * client may do (tokens, rights) before they call it.
 *
 * Everything here runs on the loop thread, except the loader thread's own
 * work; its results come back through td_srv_service_poll().
 */
#ifndef SRV_SERVICE_H
#define SRV_SERVICE_H

#include "srv_config.h"
#include "srv_metrics.h"
#include "srv_model.h"
#include "srv_presence.h"
#include "srv_subscriber.h"

struct lws_context;
typedef struct td_srv_service td_srv_service;
typedef struct td_srv_doc td_srv_doc;

/* One client subscribed to one document. */
struct td_srv_sub {
    td_srv_client *client;
    td_srv_doc *doc;
    LIST_ENTRY(td_srv_sub) doc_link, client_link;
    int waiting;   /* its sync is owed once the document is ready */
    uint8_t *vv;   /* the state to answer, while waiting */
    size_t vv_len;
    td_srv_pres_member pres;
    td_srv_held held; /* the front-end's */
    size_t ndeferred;    /* its batches waiting for their dependencies */
    uint64_t defer_pass; /* scratch of defer_retry */
};

/* models: one table per document kind, indexed by td_store_kind. */
int td_srv_service_new(td_srv_service **out, const td_srv_config *cfg, td_store *store,
                       const td_srv_model *const models[TD_STORE_KIND_COUNT],
                       td_srv_presence *pres, td_srv_metrics *m);
/* From now on the loader wakes ctx when it has results (NULL: stop). */
void td_srv_service_attach(td_srv_service *svc, struct lws_context *ctx);
/* Joins the loader thread; what it had not done is dropped. */
void td_srv_service_stop(td_srv_service *svc);
/* Frees every document (their subscriptions must be gone). */
void td_srv_service_free(td_srv_service *svc);
/* While not accepting (shutting down), subscriptions and batches are
 * refused with shutting_down. */
void td_srv_service_accepting(td_srv_service *svc, int yes);
/* Batches applied whose store write has not completed. */
size_t td_srv_service_inflight(const td_srv_service *svc);
/* The loader's results (on wake-up). */
void td_srv_service_poll(td_srv_service *svc);

/* Cluster mode (docs/CLUSTER.md): from now on every accepted batch is also
 * published through cl and acknowledged only once both the store and
 * JetStream took it, and every loaded document follows its subject, so
 * what other nodes accepted is applied, stored and broadcast here. Call
 * before any subscription; cl outlives the service's documents. */
struct td_srv_cluster;
void td_srv_service_cluster(td_srv_service *svc, struct td_srv_cluster *cl);
/* What the cluster transport queued (on wake-up). */
void td_srv_service_cluster_poll(td_srv_service *svc);
/* 1 while the broker is reachable, 0 while not (writes refused), 2 while
 * not in outbox mode (writes go to the outbox), -1 without a cluster. */
int td_srv_service_broker(const td_srv_service *svc);
/* Unloads idle documents (1 Hz). */
void td_srv_service_maintain(td_srv_service *svc);
/* Broadcasts what became durable. While a hold is set (td_srv_service_hold)
 * a document's batches wait up to that long after the first flush that
 * found them, so that several go out together; returns when the earliest
 * held document is due (td_srv_now_us() time), or 0 when none is held. */
int64_t td_srv_service_flush(td_srv_service *svc);
/* How long a busy loop lets broadcasts wait (0: not at all). */
void td_srv_service_hold(td_srv_service *svc, int64_t hold_us);

/* ---- clients ---------------------------------------------------------------------- */

void td_srv_client_init(td_srv_client *c, const td_srv_client_ops *ops);
/* The client disconnected: its subscriptions end (presence LEAVEs go out)
 * and its batches in flight are still stored, but acknowledged to nobody. */
void td_srv_client_close(td_srv_service *svc, td_srv_client *c);

td_srv_sub *td_srv_sub_find(const td_srv_client *c, const uint8_t *doc, size_t len);
const char *td_srv_sub_doc(const td_srv_sub *u, size_t *len);
/* Subscribes c to doc, or resyncs an existing subscription; the answer is
 * a sync (now, or once the document has loaded) or an error. */
void td_srv_subscribe(td_srv_service *svc, td_srv_client *c, const uint8_t *doc,
                      size_t len, const uint8_t *vv, size_t vv_len);
void td_srv_unsubscribe(td_srv_service *svc, td_srv_sub *u);
/* A batch from u's client: apply, store, then ack and broadcast (or an
 * error). */
void td_srv_update(td_srv_service *svc, td_srv_sub *u, uint64_t batch_id,
                   const uint8_t *batch, size_t len);
/* u's presence state (len 0: heartbeat). */
void td_srv_presence_update(td_srv_service *svc, td_srv_sub *u, const uint8_t *state,
                            size_t len);

/* u's client asks for every current presence entry again (y-protocols'
 * query-awareness): they come as one peers call, if u is a member. */
void td_srv_presence_query(td_srv_service *svc, td_srv_sub *u);

/* Walks a broadcast: *pos starts at NULL. Returns 1 with the next batch
 * (leaving out b->skip's), 0 at the end. */
int td_srv_bcast_next(const td_srv_bcast *b, const void **pos, const uint8_t **batch,
                      size_t *len);

/* ---- reads --------------------------------------------------------------------------- */

typedef enum {
    TD_SRV_READ_OK,
    TD_SRV_READ_NOT_FOUND,
    TD_SRV_READ_LOADING,     /* being loaded: retry */
    TD_SRV_READ_UNAVAILABLE, /* cannot be read (msg says why) */
    TD_SRV_READ_FAILED       /* out of memory */
} td_srv_read;

/* A read of a document as JSON. */
typedef struct td_srv_read_req td_srv_read_req;
/* rc and, for TD_SRV_READ_OK, the JSON (valid during the call); msg says
 * why for TD_SRV_READ_UNAVAILABLE. */
typedef void (*td_srv_json_cb)(void *ud, td_srv_read rc, const char *json, size_t len,
                               const char *msg);

/* Reads the document as JSON: from memory if it is loaded (cb runs before
 * this returns, and NULL is returned), else on the loader thread, since a
 * document can take long to read (cb runs later on the loop; the returned
 * request may be cancelled until then). NULL with cb called: done. */
td_srv_read_req *td_srv_service_json(td_srv_service *svc, const char *id, size_t len,
                                     td_srv_json_cb cb, void *ud);
/* The reader went away: cb will not run. */
void td_srv_service_json_cancel(td_srv_read_req *req);

#endif /* SRV_SERVICE_H */
