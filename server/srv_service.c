/*
 * srv_service.c -- the document service (srv_service.h).
 *
 * A document loads on its first subscription, on the loader thread (a
 * snapshot plus a log tail can take milliseconds the event loop must not
 * lose), and unloads once nobody has subscribed to it for --doc-idle; the
 * store then gets a chance to compact it. Subscribers arriving during a load
 * wait and get their sync when it is done; a load that fails is refused to
 * each of them (doc_unavailable) and the document is forgotten, so the next
 * subscription tries again. A failed document is never served empty and
 * nothing is ever written to it.
 *
 * A batch is applied to the in-memory replica (the model validates
 * everything and changes nothing on error), then appended to the store.
 * Every document keeps its appends in a FIFO; a completion only marks its
 * record, and records leave the FIFO in arrival order, so acknowledgements
 * keep the order of the batches. A durable batch is acknowledged at once and
 * put on the document's broadcast list; the flush that ends the loop turn
 * gives each subscriber every batch of the turn it did not send itself.
 *
 * Cluster mode (docs/CLUSTER.md). A batch is also published to its
 * document's JetStream subject as soon as it is applied, and its record
 * leaves the FIFO only once both the append and the publish completed: the
 * ACK then means "on this node's disk and on a quorum of brokers". A
 * failed publish gets the retryable `unavailable` instead of the ACK (the
 * batch is durable here, so it is still broadcast to this node's clients).
 * A batch holding nothing new is published too (unless it holds no ops at
 * all): its ops may be in this node's replica only because an earlier
 * publish of them failed. Every loaded document follows its subject; a
 * batch of another node goes through the same FIFO as a client's (apply,
 * append) with no sender to acknowledge. A batch JetStream holds (another
 * node's, or a client's once its publish was acknowledged) is broadcast
 * without waiting for its append, in an order that never shows a client a
 * batch before one it may depend on (doc_release). Following starts at
 * the stream sequence after the last one this document's replica stored.
 * That position is kept in memory (across unloads, in a table of cursors)
 * and in the store's metadata of the document, written with each batch of
 * another node in the same WriteBatch, so a restarted node resumes there
 * instead of reading the subject from its start or last snapshot.
 *
 * A failed append leaves the replica holding ops the store lacks. Rather
 * than try to undo them, the document goes STALE: new batches get "busy",
 * the appends still in flight complete, and then the replica is discarded
 * and reloaded from the store. Its sender gets "store_failed" and resends.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>
#include <sodium.h>

#include "srv_cluster.h"
#include "srv_outbox.h"
#include "srv_loader.h"
#include "srv_owners.h"
#include "srv_service.h"

typedef enum {
    DOC_LOADING,   /* first load in progress; subscribers wait */
    DOC_READY,
    DOC_STALE,     /* a store append failed: waiting for the appends in flight */
    DOC_RELOADING  /* reload in progress; subscribers stay subscribed */
} doc_state;

/* One batch between apply and its broadcast. */
struct td_srv_rec {
    td_srv_doc *doc;
    td_srv_client *client; /* NULL once the sender is gone */
    uint64_t batch_id;
    uint8_t *batch;
    size_t len;
    int dup;  /* duplicate-only: acknowledged, not stored */
    int done;
    td_store_err result;
    char errmsg[128];
    int64_t t_recv_us, t_store_us;
    STAILQ_ENTRY(td_srv_rec) link; /* the document's FIFO, then its broadcast list */
    LIST_ENTRY(td_srv_rec) client_link;
    /* cluster mode */
    int pub_wait;              /* 1: published, the broker's answer not back yet;
                                * 2: the publish failed, to retry (svc->repubs) */
    td_srv_cluster_err pub_err; /* the publish failed: no ACK */
    uint64_t tag;              /* of its publish */
    int64_t t_pub_us;
    TAILQ_ENTRY(td_srv_rec) pub_link; /* the service's publishes in flight */
    int remote;                /* another node's batch */
    uint64_t cl_seq;           /* its stream sequence */
    int sent;                  /* remote: broadcast already, ahead of its append */
    /* local, for the early broadcast (doc_release): the stream sequence its
     * publish got (0: not known yet), or seq_lost if a publish of it may be
     * stored at a sequence this node never learns (a publish that timed out,
     * the outbox's copy) */
    uint64_t pub_seq;
    int seq_lost;
    int acked; /* local: JetStream acknowledged its publish */
};

struct td_srv_doc {
    td_srv_service *svc;
    char id[TD_SRV_DOC_MAX + 1];
    size_t id_len;
    uint64_t hash;
    td_srv_doc *hnext;
    doc_state state;
    /* Its model: the kind it was loaded as (the stored one, or the first
     * subscriber's for a new document). */
    const td_srv_model *model;
    td_store_kind kind;
    td_srv_mdoc *mdoc;
    LIST_HEAD(, td_srv_sub) subs;
    size_t nsubs;
    STAILQ_HEAD(, td_srv_rec) fifo; /* applied, in arrival order */
    size_t inflight;
    STAILQ_HEAD(, td_srv_rec) out;  /* durable, to broadcast at the flush */
    int dirty;                       /* in the flush list */
    int64_t out_since_us;            /* first flush that found `out` waiting; 0: none */
    LIST_ENTRY(td_srv_doc) dirty_link;
    td_srv_pres_room room;
    td_srv_owners owners; /* who may write which agent */
    int64_t idle_since_us;
    /* cluster mode: following the subject; the last stream sequence stored
     * here (kept across reloads) and the last one applied */
    int following;
    uint64_t cl_stored, cl_applied;
    /* batches of the subject applied since its last snapshot; a remote
     * batch was parked at some point (its ops may be in no snapshot yet) */
    uint64_t cl_since_snap;
    int cl_parked;
    /* client batches waiting for their dependencies, in arrival order */
    TAILQ_HEAD(, deferred) deferred;
    size_t ndeferred, deferred_bytes;
    LIST_ENTRY(td_srv_doc) defer_link; /* in svc->deferring while any wait */
    int retrying;
};

struct td_srv_service {
    const td_srv_config *cfg;
    td_store *store;
    const td_srv_model *models[TD_STORE_KIND_COUNT];
    td_srv_presence *pres;
    td_srv_metrics *m;
    td_srv_loader *loader;
    _Atomic(struct lws_context *) wake_ctx;
    int accepting;
    size_t inflight;
    /* registry: a hash table keyed by a secret, so ids cannot be chosen to
     * collide */
    td_srv_doc **buckets;
    size_t nbuckets, ndocs;
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    /* broadcasts */
    LIST_HEAD(, td_srv_doc) dirty;
    uint64_t epoch;
    int64_t hold_us; /* td_srv_service_hold */
    /* cluster mode: the transport, publishes awaiting their answer (in tag
     * order, which is nearly the order answers come back in) */
    td_srv_cluster *cl;
    td_srv_outbox *outbox; /* --cluster-outage outbox; NULL: refuse */
    TAILQ_HEAD(, td_srv_rec) pubs, repubs;
    size_t npubs; /* in either list */
    uint64_t next_tag;
    int broker_up;
    /* the last stream sequence stored, of documents not registered now */
    struct cursor **cursors;
    size_t ncursors;
    LIST_HEAD(, td_srv_doc) deferring; /* documents with deferred batches */
    size_t deferred_bytes;             /* theirs, in all */
    uint64_t defer_pass;
};

#define CURSOR_BUCKETS 4096
/* Publish tags of rollups: apart from the records' tags (1, 2, ...). */
#define ROLLUP_TAG (UINT64_C(1) << 63)
#define CURSORS_MAX 1000000 /* past it, a document reloads from sequence 0 */

typedef struct cursor {
    struct cursor *next;
    uint64_t hash, seq;
    size_t len;
    char id[];
} cursor;

static void rec_free(td_srv_rec *r);
static void wrong_kind(td_srv_service *svc, td_srv_client *c, const td_srv_doc *d);
static void sub_remove(td_srv_service *svc, td_srv_sub *u);
static void repub_all(td_srv_service *svc);
static void outbox_flush(td_srv_service *svc);
static void outbox_catch_up(td_srv_service *svc, td_srv_doc *d);
static void defer_drop_sub(td_srv_sub *u);
static void defer_settle_sub(td_srv_service *svc, td_srv_sub *u);
static void defer_retry(td_srv_service *svc, td_srv_doc *d);
static int64_t defer_expire(td_srv_service *svc, int64_t now);

static void client_error(td_srv_service *svc, td_srv_client *c, td_srv_code code,
                         const td_srv_doc *d, uint64_t batch_id, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void client_error(td_srv_service *svc, td_srv_client *c, td_srv_code code,
                         const td_srv_doc *d, uint64_t batch_id, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    (void)svc;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    c->ops->error(c, code, d ? d->id : NULL, d ? d->id_len : 0, batch_id, text);
}

/* ---- registry ------------------------------------------------------------------ */

static uint64_t doc_hash(const td_srv_service *svc, const char *id, size_t len)
{
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t v;
    crypto_shorthash(h, (const uint8_t *)id, len, svc->hash_key);
    memcpy(&v, h, sizeof v);
    return v;
}

static td_srv_doc *doc_find(const td_srv_service *svc, const char *id, size_t len)
{
    uint64_t h = doc_hash(svc, id, len);
    for (td_srv_doc *d = svc->buckets[h % svc->nbuckets]; d; d = d->hnext)
        if (d->hash == h && d->id_len == len && memcmp(d->id, id, len) == 0)
            return d;
    return NULL;
}

static void reg_grow(td_srv_service *svc)
{
    size_t n = svc->nbuckets * 2;
    td_srv_doc **b = calloc(n, sizeof *b);
    if (!b)
        return; /* keep the longer chains */
    for (size_t i = 0; i < svc->nbuckets; i++) {
        td_srv_doc *d = svc->buckets[i], *nx;
        for (; d; d = nx) {
            nx = d->hnext;
            d->hnext = b[d->hash % n];
            b[d->hash % n] = d;
        }
    }
    free(svc->buckets);
    svc->buckets = b;
    svc->nbuckets = n;
}

/* The cursor kept for d's id, taken out of the table (0: none). */
static uint64_t cursor_take(td_srv_service *svc, const td_srv_doc *d)
{
    if (!svc->cursors)
        return 0;
    for (cursor **p = &svc->cursors[d->hash % CURSOR_BUCKETS]; *p; p = &(*p)->next) {
        cursor *k = *p;
        if (k->hash == d->hash && k->len == d->id_len && memcmp(k->id, d->id, d->id_len) == 0) {
            uint64_t seq = k->seq;
            *p = k->next;
            free(k);
            svc->ncursors--;
            return seq;
        }
    }
    return 0;
}

/* Keeps d's cursor for its next load. Without memory (or room), the next
 * load reads the subject from its start: slower, not wrong. */
static void cursor_keep(td_srv_service *svc, const td_srv_doc *d)
{
    if (!svc->cl || !d->cl_stored || svc->ncursors >= CURSORS_MAX)
        return;
    if (!svc->cursors && !(svc->cursors = calloc(CURSOR_BUCKETS, sizeof *svc->cursors)))
        return;
    cursor *k = malloc(sizeof *k + d->id_len);
    if (!k)
        return;
    k->hash = d->hash;
    k->seq = d->cl_stored;
    k->len = d->id_len;
    memcpy(k->id, d->id, d->id_len);
    k->next = svc->cursors[d->hash % CURSOR_BUCKETS];
    svc->cursors[d->hash % CURSOR_BUCKETS] = k;
    svc->ncursors++;
}

static td_srv_doc *reg_add(td_srv_service *svc, const char *id, size_t len)
{
    td_srv_doc *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    memcpy(d->id, id, len);
    d->id_len = len;
    d->svc = svc;
    STAILQ_INIT(&d->fifo);
    STAILQ_INIT(&d->out);
    TAILQ_INIT(&d->deferred);
    d->hash = doc_hash(svc, id, len);
    d->cl_stored = cursor_take(svc, d);
    if (svc->ndocs + 1 > svc->nbuckets)
        reg_grow(svc);
    d->hnext = svc->buckets[d->hash % svc->nbuckets];
    svc->buckets[d->hash % svc->nbuckets] = d;
    svc->ndocs++;
    return d;
}

static void dirty_remove(td_srv_service *svc, td_srv_doc *d)
{
    (void)svc;
    if (d->dirty)
        LIST_REMOVE(d, dirty_link);
    d->dirty = 0;
}

static void doc_unfollow(td_srv_doc *d)
{
    if (d->following)
        td_srv_cluster_unfollow(d->svc->cl, d->id, d->id_len);
    d->following = 0;
}

/* Starts following d's subject after what its replica stored. A failure
 * (the broker is away) is retried by the maintenance tick and when the
 * broker returns. */
static void doc_follow(td_srv_doc *d)
{
    td_srv_service *svc = d->svc;
    if (!svc->cl || d->following || d->state != DOC_READY)
        return;
    td_srv_cluster_err e = td_srv_cluster_follow(svc->cl, d->id, d->id_len,
                                                 d->cl_stored ? d->cl_stored + 1 : 0);
    if (e != TD_SRV_CLUSTER_OK) {
        lwsl_warn("cluster: cannot follow '%.*s' yet: %s\n", (int)d->id_len, d->id,
                  td_srv_cluster_strerror(e));
        return;
    }
    d->following = 1;
    d->cl_applied = d->cl_stored;
}

static void mdoc_drop(td_srv_doc *d)
{
    doc_unfollow(d);
    if (d->mdoc) {
        d->model->free(d->mdoc);
        d->mdoc = NULL;
        d->svc->m->docs_loaded--;
    }
}

static void reg_remove(td_srv_service *svc, td_srv_doc *d)
{
    for (td_srv_doc **p = &svc->buckets[d->hash % svc->nbuckets]; *p; p = &(*p)->hnext)
        if (*p == d) {
            *p = d->hnext;
            break;
        }
    dirty_remove(svc, d);
    td_srv_pres_room_close(svc->pres, &d->room);
    td_srv_rec *r;
    while ((r = STAILQ_FIRST(&d->out))) {
        STAILQ_REMOVE_HEAD(&d->out, link);
        rec_free(r);
    }
    svc->ndocs--;
    mdoc_drop(d);
    cursor_keep(svc, d);
    td_srv_owners_clear(&d->owners);
    free(d);
}

/* ---- loads and compactions (on the loader thread) ------------------------------------ */

typedef struct job {
    td_srv_job base; /* first: the loader hands back &base */
    td_srv_service *svc;
    td_srv_doc *doc; /* load: the document waiting for it */
    char id[TD_SRV_DOC_MAX + 1];
    size_t id_len;
    td_store_kind kind; /* asked for; after the load, the document's */
    td_srv_mdoc *mdoc;
    td_store_err code;
    char msg[512];
    td_srv_owners owners; /* load: the document's stored bindings */
    uint64_t stream_seq;  /* load, cluster mode: the stored stream position */
} job;

static int owner_read(void *ud, uint64_t agent, const char *owner, size_t len)
{
    return td_srv_owners_add(ud, agent, owner, len);
}

/* Loads j's document with the model of its kind, or, when the store holds
 * it as another kind, with that one's: the subscribers learn the kind at
 * load_done. A document the store lacks is created of the kind asked for. */
static td_store_err load_any(job *j, int create)
{
    td_srv_service *svc = j->svc;
    td_store_err code = TD_STORE_ERR_KIND;
    td_store_kind want = j->kind;
    for (unsigned i = 0; i < TD_STORE_KIND_COUNT && code == TD_STORE_ERR_KIND; i++) {
        td_store_kind k = i == 0 ? want : (td_store_kind)(i <= (unsigned)want ? i - 1 : i);
        if (!svc->models[k])
            continue;
        code = svc->models[k]->load(svc->store, j->id, j->id_len, create, &j->mdoc, j->msg,
                                    sizeof j->msg);
        if (code == TD_STORE_OK)
            j->kind = k;
    }
    return code;
}

static void load_run(td_srv_job *base)
{
    job *j = (job *)base;
    td_store_error e = {0};
    td_store_doc_info info;
    /* Read before the document: nothing writes it while it loads, and a
     * position older than the content only means reading a few batches
     * again (no-ops), never skipping one. */
    if (j->svc->cl && td_store_doc_stat(j->svc->store, j->id, j->id_len, &info, &e) ==
                          TD_STORE_OK)
        j->stream_seq = info.stream_seq;
    j->code = load_any(j, 1);
    if (j->code != TD_STORE_OK)
        return;
    j->code = td_store_owners(j->svc->store, j->id, j->id_len, owner_read, &j->owners, &e);
    if (j->code != TD_STORE_OK)
        snprintf(j->msg, sizeof j->msg, "%s", e.msg[0] ? e.msg : td_store_strerror(j->code));
}

static void compact_run(td_srv_job *base)
{
    job *j = (job *)base;
    td_store_error e = {0};
    td_store_compact(j->svc->store, j->id, j->id_len, 0, NULL, &e);
}

static void job_free(td_srv_job *base)
{
    job *j = (job *)base;
    if (j->mdoc)
        j->svc->models[j->kind]->free(j->mdoc);
    td_srv_owners_clear(&j->owners);
    free(j);
}

static void load_done(td_srv_job *base);

static job *job_new(td_srv_service *svc, const char *id, size_t len)
{
    job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->svc = svc;
    memcpy(j->id, id, len);
    j->id_len = len;
    j->base.free = job_free;
    return j;
}

static int start_load(td_srv_service *svc, td_srv_doc *d)
{
    job *j = job_new(svc, d->id, d->id_len);
    if (!j)
        return -1;
    j->doc = d;
    j->kind = d->kind;
    j->base.run = load_run;
    j->base.done = load_done;
    td_srv_loader_push(svc->loader, &j->base);
    return 0;
}

static void start_compact(td_srv_service *svc, const char *id, size_t len)
{
    job *j = job_new(svc, id, len);
    if (!j)
        return; /* compaction is an optimisation: it happens at a later unload */
    j->base.run = compact_run;
    td_srv_loader_push(svc->loader, &j->base);
}

/* Publishes d's whole state as a rollup of its subject as it unloads, so
 * that the subject holds one snapshot and the batches after it, and a node
 * that loads the document fresh reads that instead of every batch ever
 * written (docs/CLUSTER.md). Only what the replica is known to cover may be
 * dropped: the rollup is fenced on the last stream sequence applied here,
 * and every message up to it is in the replica (followed in order, own
 * ones applied before they were published). JetStream refuses it if
 * anything came after; a parked batch (ops the model holds back) or a
 * state past the broker's payload limit skips it. Nothing waits for the
 * answer: a refused rollup only means the next unload tries again. */
static void doc_rollup(td_srv_service *svc, td_srv_doc *d)
{
    if (!svc->cl || !svc->broker_up || !d->following || !d->cl_applied || !d->cl_since_snap ||
        d->cl_parked)
        return;
    uint8_t *ops = NULL, *state = NULL;
    size_t ops_len = 0, state_len = 0;
    char msg[160];
    if (d->model->diff(d->mdoc, NULL, 0, &ops, &ops_len, &state, &state_len, msg, sizeof msg) !=
        TD_SRV_E_OK)
        return;
    if (ops_len && ops_len <= td_srv_cluster_max_payload(svc->cl) &&
        td_srv_cluster_publish(svc->cl, d->id, d->id_len, d->cl_applied, ops, ops_len,
                               ROLLUP_TAG | ++svc->next_tag) != TD_SRV_CLUSTER_OK)
        lwsl_info("cluster: no rollup of '%.*s' this time\n", (int)d->id_len, d->id);
    d->model->buf_free(d->mdoc, ops);
    d->model->buf_free(d->mdoc, state);
}

/* ---- life cycle ------------------------------------------------------------------------- */

static void wake(void *ud)
{
    td_srv_service *svc = ud;
    struct lws_context *ctx = atomic_load(&svc->wake_ctx);
    if (ctx)
        lws_cancel_service(ctx);
}

int td_srv_service_new(td_srv_service **out, const td_srv_config *cfg, td_store *store,
                       const td_srv_model *const models[TD_STORE_KIND_COUNT],
                       td_srv_presence *pres, td_srv_metrics *m)
{
    td_srv_service *svc = calloc(1, sizeof *svc);
    if (!svc)
        return -1;
    svc->cfg = cfg;
    svc->store = store;
    for (unsigned k = 0; k < TD_STORE_KIND_COUNT; k++)
        svc->models[k] = models[k];
    svc->pres = pres;
    svc->m = m;
    svc->accepting = 1;
    TAILQ_INIT(&svc->pubs);
    LIST_INIT(&svc->deferring);
    TAILQ_INIT(&svc->repubs);
    svc->nbuckets = 64;
    svc->buckets = calloc(svc->nbuckets, sizeof *svc->buckets);
    randombytes_buf(svc->hash_key, sizeof svc->hash_key);
    if (!svc->buckets || td_srv_loader_new(&svc->loader, wake, svc) < 0) {
        free(svc->buckets);
        free(svc);
        return -1;
    }
    *out = svc;
    return 0;
}

void td_srv_service_attach(td_srv_service *svc, struct lws_context *ctx)
{
    atomic_store(&svc->wake_ctx, ctx);
    /* A wake-up asked for before there was a context to wake (the cluster
     * transport connects first, and wakes only when its queue turns
     * non-empty) is made up for now. */
    if (ctx)
        lws_cancel_service(ctx);
}

void td_srv_service_stop(td_srv_service *svc)
{
    td_srv_loader_stop(svc->loader);
}

void td_srv_service_free(td_srv_service *svc)
{
    for (size_t i = 0; svc->buckets && i < svc->nbuckets; i++)
        while (svc->buckets[i]) {
            td_srv_doc *d = svc->buckets[i];
            td_srv_rec *r;
            while (!LIST_EMPTY(&d->subs))
                sub_remove(svc, LIST_FIRST(&d->subs));
            while ((r = STAILQ_FIRST(&d->fifo))) {
                STAILQ_REMOVE_HEAD(&d->fifo, link);
                rec_free(r);
            }
            reg_remove(svc, d);
        }
    free(svc->buckets);
    for (size_t i = 0; svc->cursors && i < CURSOR_BUCKETS; i++)
        for (cursor *k = svc->cursors[i], *nx; k; k = nx) {
            nx = k->next;
            free(k);
        }
    free(svc->cursors);
    td_srv_loader_free(svc->loader);
    td_srv_outbox_free(svc->outbox);
    free(svc);
}

void td_srv_service_accepting(td_srv_service *svc, int yes)
{
    svc->accepting = yes;
}

size_t td_srv_service_inflight(const td_srv_service *svc)
{
    return svc->inflight + svc->npubs;
}

/* ---- subscriptions ------------------------------------------------------------------- */

void td_srv_client_init(td_srv_client *c, const td_srv_client_ops *ops)
{
    memset(c, 0, sizeof *c);
    c->ops = ops;
    LIST_INIT(&c->subs);
    LIST_INIT(&c->recs);
    LIST_INIT(&c->bindings);
}

td_srv_sub *td_srv_sub_find(const td_srv_client *c, const uint8_t *doc, size_t len)
{
    td_srv_sub *u;
    LIST_FOREACH(u, &c->subs, client_link)
        if (u->doc->id_len == len && memcmp(u->doc->id, doc, len) == 0)
            return u;
    return NULL;
}

const char *td_srv_sub_doc(const td_srv_sub *u, size_t *len)
{
    *len = u->doc->id_len;
    return u->doc->id;
}

/* The service drops u on its own: the front-end lets go of it first. */
static void sub_drop(td_srv_service *svc, td_srv_sub *u)
{
    u->client->ops->dropped(u);
    sub_remove(svc, u);
}

static void send_sync(td_srv_service *svc, td_srv_sub *u, const uint8_t *vv, size_t vv_len)
{
    td_srv_doc *d = u->doc;
    uint8_t *diff = NULL, *state = NULL;
    size_t dlen = 0, slen = 0;
    char msg[200];
    td_srv_code code = d->model->diff(d->mdoc, vv, vv_len, &diff, &dlen, &state, &slen,
                                      msg, sizeof msg);
    if (code != TD_SRV_E_OK) {
        client_error(svc, u->client, code, d, 0, "cannot answer SUBSCRIBE: %s", msg);
        sub_drop(svc, u);
        return;
    }
    u->client->ops->sync(u, diff, dlen, state, slen);
    d->model->buf_free(d->mdoc, diff);
    d->model->buf_free(d->mdoc, state);
    td_srv_pres_join(svc->pres, &d->room, &u->pres, u, u->client);
}

/* u stops waiting for its document's load. */
static void sub_loaded(td_srv_sub *u)
{
    if (u->waiting)
        u->client->loading--;
    u->waiting = 0;
}

static void sub_answer(td_srv_service *svc, td_srv_sub *u)
{
    uint8_t *vv = u->vv;
    size_t vv_len = u->vv_len;
    u->vv = NULL;
    u->vv_len = 0;
    sub_loaded(u);
    send_sync(svc, u, vv, vv_len); /* may remove u */
    free(vv);
}

static void sub_remove(td_srv_service *svc, td_srv_sub *u)
{
    td_srv_client *c = u->client;
    td_srv_doc *d = u->doc;
    td_srv_pres_leave(svc->pres, &u->pres);
    sub_loaded(u);
    defer_drop_sub(u);
    LIST_REMOVE(u, client_link);
    c->nsubs--;
    LIST_REMOVE(u, doc_link);
    d->nsubs--;
    if (!d->nsubs)
        d->idle_since_us = td_srv_now_us();
    free(u->vv);
    free(u);
}

void td_srv_unsubscribe(td_srv_service *svc, td_srv_sub *u)
{
    sub_remove(svc, u);
}

/* Keeps vv as the state a waiting subscription will be answered for. */
static int sub_keep_vv(td_srv_sub *u, const uint8_t *vv, size_t vv_len)
{
    uint8_t *copy = vv_len ? malloc(vv_len) : NULL;
    if (vv_len && !copy)
        return -1;
    if (copy)
        memcpy(copy, vv, vv_len);
    free(u->vv);
    u->vv = copy;
    u->vv_len = vv_len;
    return 0;
}

void td_srv_subscribe(td_srv_service *svc, td_srv_client *c, const uint8_t *doc,
                      size_t len, const uint8_t *vv, size_t vv_len)
{
    const char *id = (const char *)doc;
    td_srv_sub *u;
    td_srv_doc *d;

    if (!svc->accepting) {
        c->ops->error(c, TD_SRV_E_SHUTTING_DOWN, id, len, 0, "server shutting down");
        return;
    }
    u = td_srv_sub_find(c, doc, len);
    if (u) {
        /* Resync: the client sends what the server lacks next, so its
         * batches waiting here are answered first, not behind it. */
        defer_settle_sub(svc, u);
        /* While waiting, the newer vv replaces the older. */
        if (u->waiting || u->doc->state != DOC_READY) {
            if (sub_keep_vv(u, vv, vv_len) == 0 && !u->waiting) {
                u->waiting = 1;
                c->loading++;
            }
        } else {
            send_sync(svc, u, vv, vv_len);
        }
        return;
    }
    if (c->nsubs >= svc->cfg->max_subs) {
        char msg[96];
        snprintf(msg, sizeof msg, "too many subscriptions on this connection (max %llu)",
                 (unsigned long long)svc->cfg->max_subs);
        c->ops->error(c, TD_SRV_E_LIMIT, id, len, 0, msg);
        return;
    }
    d = doc_find(svc, id, len);
    /* Loads are bounded in all and per connection, so that subscribing and
     * unsubscribing in a loop cannot fill the memory with documents. */
    const char *busy = !d && svc->ndocs >= svc->cfg->max_docs ? "too many documents loaded"
                       : (!d || d->state != DOC_READY) && c->loading >= svc->cfg->max_loads
                           ? "too many documents loading for this connection"
                           : NULL;
    if (busy) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s; retry later", busy);
        c->ops->error(c, TD_SRV_E_BUSY, id, len, 0, msg);
        return;
    }
    if (d && d->state == DOC_READY && d->kind != c->kind) {
        wrong_kind(svc, c, d);
        return;
    }
    if (!d) {
        d = reg_add(svc, id, len);
        if (d)
            d->kind = c->kind;
        if (!d || start_load(svc, d) < 0) {
            if (d)
                reg_remove(svc, d);
            c->ops->error(c, TD_SRV_E_INTERNAL, id, len, 0, "out of memory");
            return;
        }
        d->state = DOC_LOADING;
    }
    u = calloc(1, sizeof *u);
    if (!u) {
        c->ops->error(c, TD_SRV_E_INTERNAL, id, len, 0, "out of memory");
        return;
    }
    u->client = c;
    u->doc = d;
    LIST_INSERT_HEAD(&c->subs, u, client_link);
    c->nsubs++;
    LIST_INSERT_HEAD(&d->subs, u, doc_link);
    d->nsubs++;
    if (d->state == DOC_READY) {
        send_sync(svc, u, vv, vv_len);
        return;
    }
    u->waiting = 1;
    c->loading++;
    if (sub_keep_vv(u, vv, vv_len) < 0) {
        c->ops->error(c, TD_SRV_E_INTERNAL, id, len, 0, "out of memory");
        sub_remove(svc, u);
    }
}

void td_srv_client_close(td_srv_service *svc, td_srv_client *c)
{
    td_srv_rec *r;
    while (!LIST_EMPTY(&c->subs))
        sub_remove(svc, LIST_FIRST(&c->subs));
    /* Its records stay in their documents' lists, acknowledged to nobody. */
    LIST_FOREACH(r, &c->recs, client_link)
        r->client = NULL;
    LIST_INIT(&c->recs);
    td_srv_owners_client_gone(c);
}

/* ---- loads ---------------------------------------------------------------------------- */

static void wrong_kind(td_srv_service *svc, td_srv_client *c, const td_srv_doc *d)
{
    client_error(svc, c, TD_SRV_E_WRONG_KIND, d, 0,
                 "document is a %s document; open it with a %s client",
                 td_store_kind_name(d->kind), td_store_kind_name(d->kind));
}

/* The document cannot be served: every subscriber is told and dropped. */
static void doc_fail(td_srv_service *svc, td_srv_doc *d, const char *why)
{
    svc->m->doc_load_failures++;
    lwsl_err("document '%.*s' unavailable: %s\n", (int)d->id_len, d->id, why);
    while (!LIST_EMPTY(&d->subs)) {
        td_srv_sub *u = LIST_FIRST(&d->subs);
        client_error(svc, u->client, TD_SRV_E_DOC_UNAVAILABLE, d, 0,
                     "document cannot be loaded: %s", why);
        sub_drop(svc, u);
    }
    reg_remove(svc, d);
}

static void load_done(td_srv_job *base)
{
    job *j = (job *)base;
    td_srv_service *svc = j->svc;
    td_srv_doc *d = j->doc;
    if (j->code != TD_STORE_OK) {
        doc_fail(svc, d, j->msg[0] ? j->msg : td_store_strerror(j->code));
        return;
    }
    /* On a reload the bindings made since the load stay: the store's are
     * among them, or the append that made them failed, and then its author
     * resends. */
    for (size_t i = 0; i < j->owners.n; i++) {
        const td_srv_binding *b = j->owners.v[i];
        if (td_srv_owners_add(&d->owners, b->agent, b->owner, b->owner_len) < 0) {
            doc_fail(svc, d, "out of memory");
            return;
        }
    }
    d->mdoc = j->mdoc;
    j->mdoc = NULL;
    d->kind = j->kind;
    d->model = svc->models[j->kind];
    d->state = DOC_READY;
    svc->m->docs_loaded++;
    svc->m->doc_loads++;
    /* A stored position past the stream's end is one of a stream made
     * again since: its sequences started over, so it is read from the
     * start. */
    if (j->stream_seq > d->cl_stored && j->stream_seq <= td_srv_cluster_stream_last(svc->cl))
        d->cl_stored = j->stream_seq;
    doc_follow(d);
    outbox_catch_up(svc, d);
    if (!d->nsubs)
        d->idle_since_us = td_srv_now_us();
    /* Answer the waiting subscribers; sub_answer may remove one. */
    td_srv_sub *u = LIST_FIRST(&d->subs);
    while (u) {
        td_srv_sub *nx = LIST_NEXT(u, doc_link);
        if (u->waiting && u->client->kind != d->kind) {
            wrong_kind(svc, u->client, d);
            sub_drop(svc, u);
        } else if (u->waiting) {
            sub_answer(svc, u);
        }
        u = nx;
    }
}

void td_srv_service_poll(td_srv_service *svc)
{
    td_srv_loader_poll(svc->loader);
}

static void doc_reload(td_srv_service *svc, td_srv_doc *d)
{
    mdoc_drop(d);
    d->state = DOC_RELOADING;
    if (start_load(svc, d) < 0)
        doc_fail(svc, d, "out of memory");
}

/* A document that may hold ops its store lacks is reloaded once the appends
 * in flight have completed; until then its batches get busy. */
static void doc_stale(td_srv_service *svc, td_srv_doc *d)
{
    if (d->state == DOC_READY)
        d->state = DOC_STALE;
    if (d->state == DOC_STALE && STAILQ_EMPTY(&d->fifo))
        doc_reload(svc, d);
}

void td_srv_service_maintain(td_srv_service *svc)
{
    int64_t now = td_srv_now_us();
    int64_t idle = (int64_t)svc->cfg->doc_idle_ms * 1000;
    /* This node's own batches coming back through the consumer do not wake
     * the loop (srv_cluster.c): take them before the unloads below, whose
     * rollups are fenced on the last stream sequence applied. Anything
     * else polled here has its wake pending, and that turn broadcasts. */
    td_srv_service_cluster_poll(svc);
    repub_all(svc);
    outbox_flush(svc);
    for (size_t i = 0; i < svc->nbuckets; i++) {
        td_srv_doc *d = svc->buckets[i];
        while (d) {
            td_srv_doc *nx = d->hnext;
            if (svc->broker_up)
                doc_follow(d);
            if (d->state == DOC_READY && !d->nsubs && STAILQ_EMPTY(&d->fifo) &&
                STAILQ_EMPTY(&d->out) &&
                now - d->idle_since_us >= idle) {
                doc_rollup(svc, d);
                start_compact(svc, d->id, d->id_len);
                svc->m->doc_unloads++;
                reg_remove(svc, d);
            }
            d = nx;
        }
    }
}

/* ---- batches ----------------------------------------------------------------------------- */

static void rec_unlink_client(td_srv_rec *r)
{
    if (r->client)
        LIST_REMOVE(r, client_link);
    r->client = NULL;
}

static void rec_free(td_srv_rec *r)
{
    if (r->pub_wait) {
        td_srv_service *svc = r->doc->svc;
        TAILQ_REMOVE(r->pub_wait == 1 ? &svc->pubs : &svc->repubs, r, pub_link);
        svc->npubs--;
    }
    rec_unlink_client(r);
    free(r->batch);
    free(r);
}

static void doc_mark(td_srv_doc *d)
{
    td_srv_service *svc = d->svc;
    if (!d->dirty) {
        d->dirty = 1;
        LIST_INSERT_HEAD(&svc->dirty, d, dirty_link);
    }
}

/* A batch JetStream holds is on a quorum of brokers: this node's own write
 * of it serves this node's reads and restart, not the batch's durability.
 * So it is broadcast to this node's clients without waiting for that write
 * (docs/CLUSTER.md, "Early broadcast"): another node's batch as soon as it
 * is applied, a batch of this node's clients as soon as JetStream
 * acknowledged it (its sender's ACK still waits for both). Never, though,
 * so that a client gets a batch before one it may depend on; the
 * candidates are all ahead of it in the FIFO, the order the replica took
 * the batches in:
 *  - a batch of this node goes out only when everything ahead of it has
 *    (its author may have seen any of it);
 *  - other nodes' batches go out in FIFO (= stream) order. One, R at stream
 *    sequence s, can build on a batch L of this node still held back only
 *    if L reached R's node first, i.e. through the stream below s. The
 *    consumer delivers in stream order, this node's own messages included
 *    (cl_echoed), so when R arrives the sequence of every publish of this
 *    node below s is known: L holds R back iff L's sequence is known and
 *    below s, or may stay unknown (seq_lost: a publish that timed out, or
 *    the outbox's copy). A batch of this node that brought nothing new
 *    counts too (its published copy may carry a held-back batch's ops);
 *  - another node's batch that brought nothing new (its ops are here
 *    through an earlier batch, maybe a held-back one of this node) holds
 *    back every later one while anything of this node before it is held.
 * An early batch's bytes move to a record of their own on the broadcast
 * list (linked to its sender, so that the flush skips the sender and a
 * sender that leaves clears it); r stays in the FIFO for its append and
 * its ACK, and cl_stored still moves only when the append completed. */
static void doc_release(td_srv_service *svc, td_srv_doc *d)
{
    uint64_t bar = UINT64_MAX; /* no other node's batch from this sequence on */
    int held = 0;              /* a batch of this node's before here is held back */
    td_srv_rec *r;
    if (!svc->cl)
        return; /* nothing is in JetStream: everything waits for its append */
    STAILQ_FOREACH(r, &d->fifo, link) {
        if (held && !bar)
            return; /* nothing further can go */
        if (r->sent)
            continue;
        if (!r->remote) {
            int ready = !r->dup && r->acked && r->batch;
            if (r->dup && !held)
                continue; /* nothing to broadcast, nothing held before it */
            if (!ready || held) {
                held = 1;
                uint64_t s = r->seq_lost ? 0 : r->pub_seq ? r->pub_seq : UINT64_MAX;
                if (s < bar)
                    bar = s;
                continue;
            }
        } else if (r->dup) {
            if (held)
                bar = 0;
            continue;
        } else if (r->cl_seq >= bar || !r->batch) {
            return; /* and every later one: their sequences are larger */
        }
        td_srv_rec *b = calloc(1, sizeof *b);
        if (!b)
            return; /* it goes out after its append, as before */
        b->doc = d;
        b->remote = r->remote;
        b->cl_seq = r->cl_seq;
        b->t_recv_us = r->t_recv_us;
        b->batch = r->batch;
        b->len = r->len;
        if (r->client) {
            b->client = r->client;
            LIST_INSERT_HEAD(&r->client->recs, b, client_link);
        }
        r->batch = NULL;
        r->sent = 1;
        svc->m->cluster_early++;
        if (r->remote)
            td_srv_hist_observe(&svc->m->cluster_hold,
                                (double)(td_srv_now_us() - r->t_recv_us) / 1e6);
        STAILQ_INSERT_TAIL(&d->out, b, link);
        doc_mark(d);
    }
}

/* Takes the completed records off the head of the FIFO, in order. */
static void doc_drain(td_srv_service *svc, td_srv_doc *d)
{
    int failed = d->state == DOC_STALE;
    td_srv_rec *r;
    while ((r = STAILQ_FIRST(&d->fifo)) && r->done && !r->pub_wait) {
        STAILQ_REMOVE_HEAD(&d->fifo, link);
        if (!r->dup) {
            d->inflight--;
            svc->inflight--;
        }
        if (r->result != TD_STORE_OK) {
            failed = 1;
            svc->m->store_failures++;
            lwsl_err("store append for '%.*s' failed: %s\n", (int)d->id_len, d->id,
                     r->errmsg);
            if (r->client)
                client_error(svc, r->client, TD_SRV_E_STORE_FAILED, d, r->batch_id,
                             "store write failed: %s", r->errmsg);
            rec_free(r);
            continue;
        }
        if (r->dup && failed) {
            /* Its ops may be those of a failed append before it. */
            if (r->client)
                client_error(svc, r->client, TD_SRV_E_STORE_FAILED, d, r->batch_id,
                             "an earlier store write failed; resend");
            rec_free(r);
            continue;
        }
        /* Not past a remote batch whose append failed: the reload reads
         * the subject again from before it. */
        if (r->remote && !failed && r->cl_seq > d->cl_stored)
            d->cl_stored = r->cl_seq;
        if (r->client && r->pub_err != TD_SRV_CLUSTER_OK)
            client_error(svc, r->client, TD_SRV_E_UNAVAILABLE, d, r->batch_id,
                         "the cluster's broker did not take the batch (%s); resend",
                         td_srv_cluster_strerror(r->pub_err));
        else if (r->client)
            r->client->ops->ack(r->client, d->id, d->id_len, r->batch_id);
        if (r->dup || r->sent) {
            rec_free(r);
            continue;
        }
        /* r stays on its sender's list until the flush, so a sender that
         * disconnects meanwhile clears r->client. */
        STAILQ_INSERT_TAIL(&d->out, r, link);
        doc_mark(d);
    }
    /* Before doc_stale: a failed reload frees d. */
    doc_release(svc, d);
    if (failed)
        doc_stale(svc, d);
}

/* The store would not take r (counted in flight already): it completes now,
 * with the store's error, in its place in the document's FIFO. */
static void rec_refused(td_srv_service *svc, td_srv_doc *d, td_srv_rec *r, td_store_err sc,
                        const td_store_error *se)
{
    r->done = 1;
    r->result = sc;
    snprintf(r->errmsg, sizeof r->errmsg, "%.120s", se->msg[0] ? se->msg : td_store_strerror(sc));
    doc_drain(svc, d);
}

static void append_done(void *ud, const td_store_ack *ack)
{
    td_srv_rec *r = ud;
    td_srv_doc *d = r->doc;
    r->done = 1;
    r->result = ack->code;
    td_srv_hist_observe(&d->svc->m->store_append,
                        (double)(td_srv_now_us() - r->t_store_us) / 1e6);
    if (ack->code != TD_STORE_OK)
        snprintf(r->errmsg, sizeof r->errmsg, "%s", ack->msg ? ack->msg : "");
    doc_drain(d->svc, d);
}

/* Outbox mode: r's batch waits in the outbox instead of r waiting for the
 * broker, so r is acknowledged once it is on disk here. Returns 1 if so. */
static int rec_to_outbox(td_srv_service *svc, td_srv_rec *r)
{
    if (!svc->outbox || td_srv_outbox_add(svc->outbox, r->doc->id, r->doc->id_len, r->batch,
                                          r->len) < 0)
        return 0;
    r->pub_err = TD_SRV_CLUSTER_OK;
    r->pub_wait = 0;
    r->seq_lost = 1; /* the outbox's copy goes out under a tag of its own */
    svc->m->cluster_outbox = td_srv_outbox_len(svc->outbox);
    return 1;
}

/* Publishes r's batch (again); its record waits for the answer. A publish
 * the broker could not take (unreachable, or no answer in time) is retried
 * by the node itself while the record keeps its place in the FIFO: the
 * batch is applied and stored here already, so giving up would leave ops
 * on this node that no other node gets unless the client resends them. */
static void pub_send(td_srv_service *svc, td_srv_rec *r)
{
    r->tag = ++svc->next_tag;
    r->pub_err = td_srv_cluster_publish(svc->cl, r->doc->id, r->doc->id_len, 0, r->batch,
                                        r->len, r->tag);
    if (r->pub_err != TD_SRV_CLUSTER_OK) {
        svc->m->cluster_publish_failures++;
        if (r->pub_err != TD_SRV_CLUSTER_ERR_UNAVAILABLE || rec_to_outbox(svc, r))
            return;
    }
    r->pub_wait = r->pub_err == TD_SRV_CLUSTER_OK ? 1 : 2;
    TAILQ_INSERT_TAIL(r->pub_wait == 1 ? &svc->pubs : &svc->repubs, r, pub_link);
    svc->npubs++;
}

static void rec_publish(td_srv_service *svc, td_srv_rec *r, const uint8_t *batch, size_t len)
{
    if (!svc->cl)
        return;
    if (!(r->batch = malloc(len))) {
        r->pub_err = TD_SRV_CLUSTER_ERR_NOMEM;
        return;
    }
    memcpy(r->batch, batch, len);
    r->len = len;
    r->t_pub_us = td_srv_now_us();
    pub_send(svc, r);
}

/* The outbox goes out while the broker is up (its metric kept here too). */
static void outbox_flush(td_srv_service *svc)
{
    if (!svc->outbox)
        return;
    if (svc->broker_up)
        td_srv_outbox_flush(svc->outbox, svc->cl);
    svc->m->cluster_outbox = td_srv_outbox_len(svc->outbox);
}

/* Outbox mode, a document loaded: what this node stored may hold batches it
 * acknowledged from its outbox before it died, which no other node got.
 * Its whole state joins the outbox (a no-op for nodes that have it all);
 * past the broker's payload limit it cannot, which is logged. */
static void outbox_catch_up(td_srv_service *svc, td_srv_doc *d)
{
    uint8_t *ops = NULL, *state = NULL;
    size_t ops_len = 0, state_len = 0;
    char msg[160];
    if (!svc->outbox || d->model->diff(d->mdoc, NULL, 0, &ops, &ops_len, &state, &state_len,
                                       msg, sizeof msg) != TD_SRV_E_OK)
        return;
    if (ops_len > td_srv_cluster_max_payload(svc->cl) ||
        td_srv_outbox_add(svc->outbox, d->id, d->id_len, ops, ops_len) < 0)
        lwsl_warn("cluster: '%.*s' (%zu bytes) is not republished from the outbox\n",
                  (int)d->id_len, d->id, ops_len);
    d->model->buf_free(d->mdoc, ops);
    d->model->buf_free(d->mdoc, state);
    outbox_flush(svc);
}

/* The publishes to retry go out again (while the broker is up). */
static void repub_all(td_srv_service *svc)
{
    td_srv_rec *r;
    if (!svc->cl || !svc->broker_up || TAILQ_EMPTY(&svc->repubs))
        return;
    TAILQ_HEAD(, td_srv_rec) todo = TAILQ_HEAD_INITIALIZER(todo);
    TAILQ_CONCAT(&todo, &svc->repubs, pub_link);
    while ((r = TAILQ_FIRST(&todo))) {
        TAILQ_REMOVE(&todo, r, pub_link);
        svc->npubs--;
        r->pub_wait = 0;
        pub_send(svc, r);
        if (!r->pub_wait)
            doc_drain(svc, r->doc); /* refused for good: the client is told */
    }
}

static void cl_published(void *ud, uint64_t tag, td_srv_cluster_err err, uint64_t seq,
                         int dup, const char *msg)
{
    td_srv_service *svc = ud;
    td_srv_rec *r;
    (void)dup;
    if (tag & ROLLUP_TAG) { /* no record waits for a rollup (doc_rollup) */
        svc->m->cluster_rollups += err == TD_SRV_CLUSTER_OK;
        return;
    }
    if (tag & TD_SRV_OUTBOX_TAG) {
        svc->m->cluster_published += td_srv_outbox_answered(svc->outbox, tag, err);
        svc->m->cluster_outbox = td_srv_outbox_len(svc->outbox);
        return;
    }
    TAILQ_FOREACH(r, &svc->pubs, pub_link)
        if (r->tag == tag)
            break;
    if (!r)
        return; /* its record is gone (the document was dropped) */
    TAILQ_REMOVE(&svc->pubs, r, pub_link);
    if (err == TD_SRV_CLUSTER_ERR_UNAVAILABLE && rec_to_outbox(svc, r)) {
        svc->npubs--;
        svc->m->cluster_publish_failures++;
        doc_drain(svc, r->doc);
        return;
    }
    if (err == TD_SRV_CLUSTER_ERR_UNAVAILABLE) {
        svc->m->cluster_publish_failures++;
        lwsl_warn("cluster: publish to '%.*s' failed (%s); retrying\n", (int)r->doc->id_len,
                  r->doc->id, msg ? msg : "");
        /* It may be stored all the same, at a sequence never reported. */
        r->seq_lost = 1;
        r->pub_wait = 2;
        TAILQ_INSERT_TAIL(&svc->repubs, r, pub_link);
        return;
    }
    svc->npubs--;
    r->pub_wait = 0;
    r->pub_err = err;
    if (err == TD_SRV_CLUSTER_OK) {
        if (!r->pub_seq)
            r->pub_seq = seq;
        r->acked = 1;
        svc->m->cluster_published++;
        td_srv_hist_observe(&svc->m->cluster_publish,
                            (double)(td_srv_now_us() - r->t_pub_us) / 1e6);
    } else {
        svc->m->cluster_publish_failures++;
        lwsl_warn("cluster: publish to '%.*s' refused: %s: %s\n", (int)r->doc->id_len,
                  r->doc->id, td_srv_cluster_strerror(err), msg ? msg : "");
    }
    doc_drain(svc, r->doc);
}

/* A publish of this node's came back through its subject: the sequence
 * doc_release needs, known now even if the broker's ACK is still on its
 * way. (A record no longer waiting for its ACK knows it already.) */
static void cl_echoed(void *ud, uint64_t tag, uint64_t seq)
{
    td_srv_service *svc = ud;
    td_srv_rec *r;
    TAILQ_FOREACH(r, &svc->pubs, pub_link)
        if (r->tag == tag) {
            r->pub_seq = seq;
            return;
        }
}

/* A batch (or snapshot) of d from another node: applied like a client's,
 * stored, then broadcast to every local subscriber. Ops whose dependencies
 * have not arrived yet are parked by the model. */
static void cl_delivered(void *ud, const char *id, size_t id_len, uint64_t seq, int snapshot,
                         const char *node, const uint8_t *data, size_t len)
{
    td_srv_service *svc = ud;
    td_srv_doc *d = doc_find(svc, id, id_len);
    td_srv_applied info;
    char msg[200];
    /* (A snapshot is the whole document as one batch: applied alike.) */
    /* Not following any more (unloaded, reloading): the next follow starts
     * after what was stored, so nothing is lost by dropping it. */
    if (!d || !d->following || d->state != DOC_READY || seq <= d->cl_applied)
        return;
    d->cl_applied = seq;
    d->cl_since_snap = snapshot ? 0 : d->cl_since_snap + 1;
    /* This process's own batches are in the replica already. */
    if (strcmp(node, td_srv_cluster_node(svc->cl)) == 0 || len == 0)
        return;
    svc->m->cluster_received++;
    td_srv_rec *r = calloc(1, sizeof *r);
    uint8_t *copy = malloc(len);
    if (!r || !copy) {
        free(r);
        free(copy);
        lwsl_err("cluster: out of memory for a batch of '%.*s': reloading it\n",
                 (int)id_len, id);
        doc_stale(svc, d);
        return;
    }
    td_srv_apply_rules rules = {NULL, NULL, 1};
    td_srv_code code = d->model->apply(d->mdoc, data, len, &rules, &info, msg, sizeof msg);
    if (code != TD_SRV_E_OK) {
        free(r);
        free(copy);
        lwsl_err("cluster: batch %llu of '%.*s' from %s refused: %s\n",
                 (unsigned long long)seq, (int)id_len, id, node, msg);
        /* Out of memory is no verdict on the batch: reload and read it
         * again. */
        if (info.partial || code == TD_SRV_E_INTERNAL)
            doc_stale(svc, d);
        return;
    }
    r->doc = d;
    r->remote = 1;
    r->cl_seq = seq;
    r->t_recv_us = td_srv_now_us();
    STAILQ_INSERT_TAIL(&d->fifo, r, link);
    d->cl_parked |= info.parked;
    if (info.ops_new == 0 && !info.parked) {
        free(copy);
        r->dup = 1;
        r->done = 1;
        r->result = TD_STORE_OK;
        doc_drain(svc, d);
        return;
    }
    svc->m->cluster_deliveries++;
    memcpy(copy, data, len);
    r->batch = copy;
    r->len = len;
    uint8_t *vv = NULL;
    size_t vv_len = 0;
    td_store_error se = {0};
    td_store_err sc = TD_STORE_ERR_NOMEM;
    if (d->model->state(d->mdoc, &vv, &vv_len) == 0) {
        size_t nops = info.ops_new + info.ops_duplicate;
        td_store_batch b = {.doc = d->id, .doc_len = d->id_len, .ops = data, .ops_len = len,
                            .nops = nops ? nops : 1, .vv = vv, .vv_len = vv_len,
                            .kind = d->kind, .stream_seq = seq,
                            .durable_elsewhere = 1};
        r->t_store_us = td_srv_now_us();
        sc = td_store_append(svc->store, &b, append_done, r, &se);
    }
    d->model->buf_free(d->mdoc, vv);
    d->inflight++;
    svc->inflight++;
    if (sc != TD_STORE_OK)
        rec_refused(svc, d, r, sc, &se); /* releases what it can */
    else
        doc_release(svc, d);
    /* Client batches may wait for these ops: behind them in the FIFO, so
     * that they are broadcast after what they build on. */
    defer_retry(svc, d);
}

static void cl_broker(void *ud, int up)
{
    td_srv_service *svc = ud;
    svc->broker_up = up;
    svc->m->cluster_broker_up = (uint64_t)up;
    lwsl_warn("cluster: broker %s\n", up ? "reachable again" : "unreachable");
    if (!up)
        return;
    for (size_t i = 0; i < svc->nbuckets; i++)
        for (td_srv_doc *d = svc->buckets[i]; d; d = d->hnext)
            doc_follow(d);
    repub_all(svc);
    outbox_flush(svc);
}

/* Presence of this node's members of d, for the other nodes. */
static void pres_publish(void *ud, td_srv_pres_room *room, const uint8_t *msg, size_t len)
{
    td_srv_service *svc = ud;
    td_srv_doc *d = lws_container_of(room, td_srv_doc, room);
    /* Presence is best effort: a lost message is repaired by the next
     * heartbeat. */
    if (d->following)
        (void)td_srv_cluster_presence(svc->cl, d->id, d->id_len, msg, len);
}

/* Presence of another node's members of a document held here. */
static void cl_presence(void *ud, const char *id, size_t id_len, const char *node,
                        const uint8_t *data, size_t len)
{
    td_srv_service *svc = ud;
    td_srv_doc *d = doc_find(svc, id, id_len);
    if (!d || !d->following)
        return;
    if (td_srv_pres_remote(svc->pres, &d->room, node, data, len) < 0)
        lwsl_warn("cluster: presence of '%.*s' from %s dropped (malformed or out of memory)\n",
                  (int)id_len, id, node);
}

void td_srv_service_cluster(td_srv_service *svc, td_srv_cluster *cl)
{
    td_srv_pres_relay relay = {pres_publish, svc};
    td_srv_presence_relay(svc->pres, cl ? &relay : NULL);
    svc->cl = cl;
    if (cl && svc->cfg->cluster_outage == TD_SRV_OUTAGE_OUTBOX && !svc->outbox &&
        !(svc->outbox = td_srv_outbox_new()))
        lwsl_err("cluster: no memory for the outbox: writes are refused while the broker is "
                 "away\n");
    svc->broker_up = cl ? td_srv_cluster_up(cl) : 0;
    svc->m->cluster_broker_up = (uint64_t)svc->broker_up;
}

void td_srv_service_cluster_poll(td_srv_service *svc)
{
    static const td_srv_cluster_handler h = {cl_published, cl_delivered, cl_presence,
                                             cl_broker, cl_echoed};
    if (svc->cl) {
        td_srv_cluster_poll(svc->cl, &h, svc);
        svc->m->cluster_consumer_lag = td_srv_cluster_lag(svc->cl);
    }
}

int td_srv_service_broker(const td_srv_service *svc)
{
    return !svc->cl ? -1 : svc->broker_up ? 1 : svc->outbox ? 2 : 0;
}

/* The agents a batch introduces to the document, collected while the model
 * checks each agent with new ops (authorship, srv_owners.h). */
typedef struct claims {
    td_srv_service *svc;
    const td_srv_doc *d;
    const td_srv_client *c;
    uint64_t *agents;
    size_t n, cap;
    int oom, unavailable;
} claims;

/* In a cluster a durable author's claim on a new agent is decided by the
 * broker's compare-and-set, so that no other node binds the agent to
 * someone else (docs/CLUSTER.md, "Authorship across nodes"). Bindings to a
 * connection (an open server) stay local to the node. */
static int cluster_refuses(claims *k, uint64_t agent)
{
    int granted = 0;
    if (!k->svc->cl || !k->c->author_durable)
        return 0;
    td_srv_cluster_err e = td_srv_cluster_claim(k->svc->cl, k->d->id, k->d->id_len, agent,
                                                k->c->author, k->c->author_len, &granted);
    if (e == TD_SRV_CLUSTER_OK)
        return !granted;
    k->unavailable = 1;
    return 1;
}

static int agent_check(void *ud, uint64_t agent)
{
    claims *k = ud;
    int unowned;
    if (!td_srv_owners_allow(&k->d->owners, k->c, agent, &unowned))
        return 1;
    if (!unowned)
        return 0;
    if (cluster_refuses(k, agent))
        return 1;
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 4;
        uint64_t *v = realloc(k->agents, cap * sizeof *v);
        if (!v) {
            k->oom = 1;
            return 1;
        }
        k->agents = v;
        k->cap = cap;
    }
    k->agents[k->n++] = agent;
    return 0;
}

/* Binds the agents the batch introduced to its author; the durable
 * bindings go to the store with the batch. Returns 0, or -1 when out of
 * memory. */
static int bind_claims(td_srv_doc *d, td_srv_client *c, const claims *k,
                       td_store_claim **out)
{
    *out = NULL;
    if (!k->n)
        return 0;
    if (c->author_durable && !(*out = calloc(k->n, sizeof **out)))
        return -1;
    for (size_t i = 0; i < k->n; i++) {
        if (td_srv_owners_bind(&d->owners, c, k->agents[i]) < 0)
            return -1;
        if (*out)
            (*out)[i] = (td_store_claim){k->agents[i], c->author, c->author_len};
    }
    return 0;
}

/* What update_apply did with a batch. */
typedef enum {
    APPLIED,  /* applied (or a duplicate), its answer to come */
    ANSWERED, /* refused: the client has its error */
    MISSING   /* its dependencies are missing: nothing applied, nothing said */
} applied_as;

/* The op a MISSING batch waits for, and the refusal to send if it never
 * comes. */
typedef struct need {
    int known;
    uint64_t agent, seq;
    char msg[200];
} need;

/* Applies one batch of u's and hands it to the store, or refuses it. With
 * `nd`, a batch whose dependencies are missing is left unanswered
 * (MISSING) for the caller to defer. */
static applied_as update_apply(td_srv_service *svc, td_srv_sub *u, uint64_t batch_id,
                               const uint8_t *batch, size_t len, need *nd)
{
    td_srv_client *c = u->client;
    td_srv_doc *d = u->doc;
    td_srv_applied info;
    td_srv_code code;
    td_srv_rec *r;
    char msg[200];

    if (!svc->accepting) {
        client_error(svc, c, TD_SRV_E_SHUTTING_DOWN, d, batch_id,
                     "server shutting down; resend after reconnecting");
        return ANSWERED;
    }
    if (len > svc->cfg->max_batch) {
        client_error(svc, c, TD_SRV_E_TOO_LARGE, d, batch_id,
                     "batch of %zu bytes exceeds the limit of %llu", len,
                     (unsigned long long)svc->cfg->max_batch);
        return ANSWERED;
    }
    if (d->state != DOC_READY || u->waiting) {
        /* (A waiting subscription's front-end holds its batches back.) */
        client_error(svc, c, TD_SRV_E_BUSY, d, batch_id,
                     "document reloading after a store failure; resend later");
        return ANSWERED;
    }
    /* Refused before it touches the replica: an ACK needs the broker, and
     * the broker takes nothing past its max_payload. */
    if (svc->cl && len > td_srv_cluster_max_payload(svc->cl)) {
        client_error(svc, c, TD_SRV_E_TOO_LARGE, d, batch_id,
                     "batch of %zu bytes exceeds the cluster broker's limit of %zu", len,
                     td_srv_cluster_max_payload(svc->cl));
        return ANSWERED;
    }
    if (svc->cl && !td_srv_cluster_up(svc->cl) && !svc->outbox) {
        svc->m->cluster_publish_failures++;
        client_error(svc, c, TD_SRV_E_UNAVAILABLE, d, batch_id,
                     "the cluster's broker is unreachable; resend later");
        return ANSWERED;
    }
    r = calloc(1, sizeof *r);
    if (!r) {
        client_error(svc, c, TD_SRV_E_INTERNAL, d, batch_id, "out of memory");
        return ANSWERED;
    }
    claims k = {svc, d, c, NULL, 0, 0, 0, 0};
    td_srv_apply_rules rules = {agent_check, &k, 0};
    r->t_recv_us = td_srv_now_us();
    code = d->model->apply(d->mdoc, batch, len, &rules, &info, msg, sizeof msg);
    if (code == TD_SRV_E_AGENT_TAKEN && k.oom)
        code = TD_SRV_E_INTERNAL;
    if (code == TD_SRV_E_AGENT_TAKEN && k.unavailable) {
        code = TD_SRV_E_UNAVAILABLE;
        snprintf(msg, sizeof msg, "the cluster's broker did not answer an authorship claim; "
                                  "resend later");
    }
    if (code == TD_SRV_E_MISSING_OPS && nd && info.waits) {
        nd->known = 1;
        nd->agent = info.wait_agent;
        nd->seq = info.wait_seq;
        memcpy(nd->msg, msg, sizeof nd->msg);
        free(k.agents);
        free(r);
        return MISSING;
    }
    if (code != TD_SRV_E_OK) {
        c->ops->error(c, code, d->id, d->id_len, batch_id, msg);
        free(k.agents);
        free(r);
        if (info.partial)
            doc_stale(svc, d);
        return ANSWERED;
    }
    r->doc = d;
    r->client = c;
    r->batch_id = batch_id;
    LIST_INSERT_HEAD(&c->recs, r, client_link);
    STAILQ_INSERT_TAIL(&d->fifo, r, link);
    if (!info.empty)
        rec_publish(svc, r, batch, len);

    if (info.ops_new == 0) {
        /* Nothing new: acknowledged once everything before it is durable. */
        r->dup = 1;
        r->done = 1;
        r->result = TD_STORE_OK;
        svc->m->batches_duplicate++;
        free(k.agents);
        doc_drain(svc, d);
        return APPLIED;
    }
    svc->m->ops_applied += info.ops_new;
    svc->m->batches_applied++;
    uint8_t *vv = NULL;
    size_t vv_len = 0;
    td_store_claim *sc_claims = NULL;
    td_store_error se = {0};
    td_store_err sc = TD_STORE_ERR_NOMEM;
    if (!r->batch)
        r->batch = malloc(len);
    if (r->batch && bind_claims(d, c, &k, &sc_claims) == 0 &&
        d->model->state(d->mdoc, &vv, &vv_len) == 0) {
        memcpy(r->batch, batch, len);
        r->len = len;
        size_t nops = info.ops_new + info.ops_duplicate;
        td_store_batch b = {.doc = d->id, .doc_len = d->id_len, .ops = batch,
                            .ops_len = len, .nops = nops ? nops : 1, .vv = vv,
                            .vv_len = vv_len, .claims = sc_claims,
                            .nclaims = sc_claims ? k.n : 0, .kind = d->kind};
        r->t_store_us = td_srv_now_us();
        sc = td_store_append(svc->store, &b, append_done, r, &se);
    }
    d->model->buf_free(d->mdoc, vv);
    free(sc_claims);
    free(k.agents);
    d->inflight++;
    svc->inflight++;
    if (sc != TD_STORE_OK)
        rec_refused(svc, d, r, sc, &se);
    return APPLIED;
}

/* ---- batches waiting for their dependencies ------------------------------------------ */
/*
 * A batch whose ops depend on ops the document lacks is not refused at
 * once: the ops it needs may be on their way on another connection. Clients
 * that share one model of a document (several sockets of one process, a
 * relay) write on top of each other's ops before the server has them, and
 * the kernel and the loop do not keep the order between sockets. Such a
 * batch waits up to DEFER_US for the op it names (the model's `has`), and
 * is applied, stored and acknowledged as usual once that op is in; if the
 * op never comes it is refused with missing_ops, nothing applied (PROTOCOL.md
 * section 12). A later batch of the same subscription waits behind it, so
 * its answers keep their order. The bounds keep what a client can make the
 * server hold (and retry) small: a batch past them is refused at once.
 */
#define DEFER_US 500000
#define DEFER_MAX 64                        /* batches per document */
#define DEFER_BYTES ((size_t)256 << 10)     /* their bytes per document, */
#define DEFER_CLIENT_BYTES ((size_t)256 << 10) /* per connection, */
#define DEFER_ALL_BYTES ((size_t)64 << 20)  /* and in all */

typedef struct deferred {
    TAILQ_ENTRY(deferred) link;
    td_srv_sub *u;
    uint64_t batch_id;
    need nd;      /* !nd.known: it waits behind an earlier batch of u's */
    int64_t until_us;
    size_t len;
    uint8_t batch[];
} deferred;

static void defer_unlink(td_srv_doc *d, deferred *w)
{
    TAILQ_REMOVE(&d->deferred, w, link);
    d->ndeferred--;
    d->deferred_bytes -= w->len;
    d->svc->deferred_bytes -= w->len;
    w->u->client->deferred_bytes -= w->len;
    w->u->ndeferred--;
    if (!d->ndeferred)
        LIST_REMOVE(d, defer_link);
}

static void defer_link(td_srv_service *svc, td_srv_doc *d, deferred *w, int at_head)
{
    if (!d->ndeferred)
        LIST_INSERT_HEAD(&svc->deferring, d, defer_link);
    if (at_head)
        TAILQ_INSERT_HEAD(&d->deferred, w, link);
    else
        TAILQ_INSERT_TAIL(&d->deferred, w, link);
    d->ndeferred++;
    d->deferred_bytes += w->len;
    svc->deferred_bytes += w->len;
    w->u->client->deferred_bytes += w->len;
    w->u->ndeferred++;
}

/* Defers a batch of u's (nd NULL: behind u's earlier ones). Returns 0, or
 * -1 past the bounds or out of memory. */
static int defer_add(td_srv_service *svc, td_srv_sub *u, uint64_t batch_id,
                     const uint8_t *batch, size_t len, const need *nd)
{
    td_srv_doc *d = u->doc;
    if (d->ndeferred >= DEFER_MAX || len > DEFER_BYTES - d->deferred_bytes ||
        len > DEFER_CLIENT_BYTES - u->client->deferred_bytes ||
        len > DEFER_ALL_BYTES - svc->deferred_bytes)
        return -1;
    deferred *w = malloc(sizeof *w + len);
    if (!w)
        return -1;
    w->u = u;
    w->batch_id = batch_id;
    if (nd)
        w->nd = *nd;
    else
        w->nd.known = 0;
    w->until_us = td_srv_now_us() + DEFER_US;
    w->len = len;
    memcpy(w->batch, batch, len);
    defer_link(svc, d, w, 0);
    svc->m->batches_deferred++;
    wake(svc); /* its expiry goes into the flush timer (td_srv_service_flush) */
    return 0;
}

/* u is going away: its deferred batches are dropped unanswered. */
static void defer_drop_sub(td_srv_sub *u)
{
    td_srv_doc *d = u->doc;
    deferred *w, *nx;
    for (w = TAILQ_FIRST(&d->deferred); w && u->ndeferred; w = nx) {
        nx = TAILQ_NEXT(w, link);
        if (w->u == u) {
            defer_unlink(d, w);
            free(w);
        }
    }
}

/* Takes w out and tries it again; `last`: refuse it if still missing.
 * Returns 1 if it was answered or applied, 0 if it still waits (linked
 * again at the head: it was the first of its subscription's). */
static int defer_try(td_srv_service *svc, td_srv_doc *d, deferred *w, int last)
{
    need nd = {0};
    defer_unlink(d, w);
    applied_as a = update_apply(svc, w->u, w->batch_id, w->batch, w->len, last ? NULL : &nd);
    if (a == MISSING) {
        w->nd = nd;
        defer_link(svc, d, w, 1);
        return 0;
    }
    free(w);
    return 1;
}

/* Answers u's deferred batches now, in order: each is applied if its ops
 * came, else refused (missing_ops). */
static void defer_settle_sub(td_srv_service *svc, td_srv_sub *u)
{
    td_srv_doc *d = u->doc;
    while (u->ndeferred) {
        deferred *w;
        TAILQ_FOREACH(w, &d->deferred, link)
            if (w->u == u)
                break;
        defer_try(svc, d, w, 1);
    }
}

/* Applies every deferred batch of d that can go now, and those these
 * release in turn. A batch is tried when the op it waits for is in, or,
 * waiting behind an earlier batch of its subscription, when that one is
 * gone. Each application may answer (even drop) subscriptions, so every
 * try starts the walk again from the head. */
static void defer_retry(td_srv_service *svc, td_srv_doc *d)
{
    /* (Not while the document reloads: it may have no replica; the batches
     * wait for the next retry or their expiry.) */
    if (d->retrying || !d->ndeferred || d->state != DOC_READY)
        return;
    d->retrying = 1;
    int progress = 1;
    while (progress && d->ndeferred) {
        uint64_t pass = ++svc->defer_pass;
        progress = 0;
        for (;;) {
            deferred *w;
            TAILQ_FOREACH(w, &d->deferred, link) {
                if (w->u->defer_pass == pass)
                    continue; /* an earlier batch of its subscription waits */
                if (w->nd.known && !d->model->has(d->mdoc, w->nd.agent, w->nd.seq)) {
                    w->u->defer_pass = pass;
                    continue;
                }
                break;
            }
            if (!w)
                break;
            td_srv_sub *u = w->u;
            if (defer_try(svc, d, w, 0))
                progress = 1;
            else
                u->defer_pass = pass;
        }
    }
    d->retrying = 0;
}

/* Refuses the deferred batches whose time is up (after one last try);
 * returns when the next one is due (0: none waits). */
static int64_t defer_expire(td_srv_service *svc, int64_t now)
{
    int64_t due = 0;
    td_srv_doc *d, *dn;
    for (d = LIST_FIRST(&svc->deferring); d; d = dn) {
        dn = LIST_NEXT(d, defer_link);
        int expired = 0;
        deferred *w;
        for (;;) {
            TAILQ_FOREACH(w, &d->deferred, link)
                if (w->until_us <= now)
                    break;
            if (!w)
                break;
            defer_try(svc, d, w, 1);
            expired = 1;
        }
        if (expired)
            defer_retry(svc, d); /* what waited behind them */
    }
    LIST_FOREACH(d, &svc->deferring, defer_link) {
        deferred *w;
        TAILQ_FOREACH(w, &d->deferred, link)
            if (!due || w->until_us < due)
                due = w->until_us;
    }
    return due;
}

void td_srv_update(td_srv_service *svc, td_srv_sub *u, uint64_t batch_id,
                   const uint8_t *batch, size_t len)
{
    td_srv_doc *d = u->doc;
    need nd = {0};
    /* Behind a deferred batch of the same subscription. (Past the bounds it
     * goes now: if it depends on the waiting one, it is refused.) */
    if (u->ndeferred && defer_add(svc, u, batch_id, batch, len, NULL) == 0)
        return;
    applied_as a = update_apply(svc, u, batch_id, batch, len, d->model->has ? &nd : NULL);
    if (a == MISSING && defer_add(svc, u, batch_id, batch, len, &nd) < 0)
        client_error(svc, u->client, TD_SRV_E_MISSING_OPS, d, batch_id, "%s", nd.msg);
    if (a == APPLIED)
        defer_retry(svc, d);
}

void td_srv_presence_update(td_srv_service *svc, td_srv_sub *u, const uint8_t *state,
                            size_t len)
{
    if (td_srv_pres_set(svc->pres, &u->pres, state, len) < 0)
        client_error(svc, u->client, TD_SRV_E_INTERNAL, u->doc, 0, "out of memory");
}

void td_srv_presence_query(td_srv_service *svc, td_srv_sub *u)
{
    if (u->pres.room)
        td_srv_pres_join(svc->pres, u->pres.room, &u->pres, u, u->client);
}

/* ---- broadcasts --------------------------------------------------------------------------- */

int td_srv_bcast_next(const td_srv_bcast *b, const void **pos, const uint8_t **batch,
                      size_t *len)
{
    const td_srv_rec *r = *pos ? STAILQ_NEXT((const td_srv_rec *)*pos, link) : b->head;
    while (r && b->skip && r->client == b->skip)
        r = STAILQ_NEXT(r, link);
    if (!r)
        return 0;
    *batch = r->batch;
    *len = r->len;
    *pos = r;
    return 1;
}

/* Every subscriber gets the batches of this turn it did not send: those
 * that sent none share one encoding. */
static void flush_batches(td_srv_service *svc, td_srv_doc *d, int64_t now)
{
    uint64_t epoch = ++svc->epoch;
    td_srv_rec *r;
    td_srv_sub *u;
    td_srv_bcast all = {STAILQ_FIRST(&d->out), NULL, NULL, NULL};
    STAILQ_FOREACH(r, &d->out, link)
        if (r->client)
            r->client->mark = epoch;
    LIST_FOREACH(u, &d->subs, doc_link) {
        if (u->waiting)
            continue; /* its sync will carry everything */
        if (u->client->mark == epoch) {
            td_srv_bcast own = {STAILQ_FIRST(&d->out), u->client, NULL, NULL};
            u->client->ops->broadcast(u, &own);
            if (own.shared_free)
                own.shared_free(own.shared);
        } else {
            u->client->ops->broadcast(u, &all);
        }
    }
    if (all.shared_free)
        all.shared_free(all.shared);
    while ((r = STAILQ_FIRST(&d->out))) {
        STAILQ_REMOVE_HEAD(&d->out, link);
        td_srv_hist_observe(&svc->m->recv_to_bcast, (double)(now - r->t_recv_us) / 1e6);
        rec_free(r);
    }
}

void td_srv_service_hold(td_srv_service *svc, int64_t hold_us)
{
    svc->hold_us = hold_us > 0 ? hold_us : 0;
}

/* A document's durable batches wait in `out` for at most hold_us after the
 * first flush that saw them, so that a busy loop sends each subscriber one
 * frame (native) or one write (srv_conn's gathering) for several batches
 * instead of one per batch. With no hold (the loop is not busy) they go
 * out in the turn that made them durable, as before. */
int64_t td_srv_service_flush(td_srv_service *svc)
{
    int64_t now = td_srv_now_us(), due = 0;
    td_srv_doc *d;
    LIST_HEAD(, td_srv_doc) held = LIST_HEAD_INITIALIZER(held);
    while ((d = LIST_FIRST(&svc->dirty))) {
        LIST_REMOVE(d, dirty_link);
        if (STAILQ_EMPTY(&d->out)) {
            d->dirty = 0;
            d->out_since_us = 0;
            continue;
        }
        if (!d->out_since_us)
            d->out_since_us = now;
        if (now - d->out_since_us < svc->hold_us) {
            LIST_INSERT_HEAD(&held, d, dirty_link);
            if (!due || d->out_since_us + svc->hold_us < due)
                due = d->out_since_us + svc->hold_us;
            continue;
        }
        d->dirty = 0;
        d->out_since_us = 0;
        flush_batches(svc, d, now);
    }
    while ((d = LIST_FIRST(&held))) {
        LIST_REMOVE(d, dirty_link);
        LIST_INSERT_HEAD(&svc->dirty, d, dirty_link);
    }
    int64_t defer_due = defer_expire(svc, now);
    if (defer_due && (!due || defer_due < due))
        due = defer_due;
    return due;
}

/* ---- reads ------------------------------------------------------------------------------ */

struct td_srv_read_req {
    job j; /* first: the loader hands back &j.base */
    td_srv_json_cb cb;
    void *ud;
    int cancelled;
    td_srv_read rc;
    char *json;
    size_t jlen;
};

/* The JSON of md: TD_SRV_READ_OK with *json malloc'ed, or _FAILED. */
static td_srv_read json_of(const td_srv_model *model, td_srv_mdoc *md, char **json,
                           size_t *jlen)
{
    char *out = NULL;
    td_srv_read rc = TD_SRV_READ_OK;
    if (model->json(md, &out, jlen) < 0)
        rc = TD_SRV_READ_FAILED;
    else if (!(*json = malloc(*jlen ? *jlen : 1)))
        rc = TD_SRV_READ_FAILED;
    else
        memcpy(*json, out, *jlen);
    if (out)
        model->buf_free(md, out);
    return rc;
}

static void read_run(td_srv_job *base)
{
    td_srv_read_req *q = (td_srv_read_req *)(void *)base;
    td_srv_service *svc = q->j.svc;
    td_store_err sc = load_any(&q->j, 0);
    td_srv_mdoc *md = q->j.mdoc;
    q->j.mdoc = NULL;
    if (sc == TD_STORE_ERR_NOT_FOUND)
        q->rc = TD_SRV_READ_NOT_FOUND;
    else if (sc != TD_STORE_OK)
        q->rc = TD_SRV_READ_UNAVAILABLE;
    else
        q->rc = json_of(svc->models[q->j.kind], md, &q->json, &q->jlen);
    if (md)
        svc->models[q->j.kind]->free(md);
}

static void read_done(td_srv_job *base)
{
    td_srv_read_req *q = (td_srv_read_req *)(void *)base;
    if (!q->cancelled)
        q->cb(q->ud, q->rc, q->json, q->jlen, q->j.msg);
}

static void read_free(td_srv_job *base)
{
    td_srv_read_req *q = (td_srv_read_req *)(void *)base;
    free(q->json);
    free(q);
}

td_srv_read_req *td_srv_service_json(td_srv_service *svc, const char *id, size_t len,
                                     td_srv_json_cb cb, void *ud)
{
    td_srv_doc *d = doc_find(svc, id, len);
    char *json = NULL;
    size_t jlen = 0;
    if (d) {
        td_srv_read rc = d->state == DOC_READY ? json_of(d->model, d->mdoc, &json, &jlen)
                                               : TD_SRV_READ_LOADING;
        cb(ud, rc, json, jlen, "");
        free(json);
        return NULL;
    }
    td_srv_read_req *q = calloc(1, sizeof *q);
    if (!q) {
        cb(ud, TD_SRV_READ_FAILED, NULL, 0, "out of memory");
        return NULL;
    }
    q->j.svc = svc;
    memcpy(q->j.id, id, len);
    q->j.id_len = len;
    q->j.base.run = read_run;
    q->j.base.done = read_done;
    q->j.base.free = read_free;
    q->cb = cb;
    q->ud = ud;
    td_srv_loader_push(svc->loader, &q->j.base);
    return q;
}

void td_srv_service_json_cancel(td_srv_read_req *req)
{
    if (req)
        req->cancelled = 1;
}
