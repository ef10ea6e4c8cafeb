/*
 * srv_docs.c -- the document registry: the only place that knows where a
 * document's state comes from and where accepted batches go.
 *
 * A document loads on its first SUBSCRIBE, on a loader thread (a snapshot
 * plus a log tail can take milliseconds the event loop must not lose), and
 * unloads once nobody has subscribed to it for --doc-idle; the store then
 * gets a chance to compact it. Subscribers arriving during a load wait and
 * get their SYNC when it is done, and their other messages for it wait
 * behind that SYNC (td_srv_sub_defer); a load that fails is refused to each of
 * them with ERROR doc_unavailable and the document is forgotten, so the
 * next SUBSCRIBE tries again. A failed document is never served empty and
 * nothing is ever written to it.
 *
 * UPDATE: apply to the in-memory replica (the core validates everything and
 * changes nothing on error), then append to the store. Every document keeps
 * its appends in a FIFO; a completion only marks its record, and records
 * leave the FIFO in arrival order, so ACKs keep the order of UPDATEs. A
 * durable batch is ACKed at once and put on the document's broadcast list;
 * the flush that ends the loop turn sends each subscriber one REMOTE with
 * every batch of the turn it did not send itself.
 *
 * A failed append leaves the replica holding ops the store lacks. Rather
 * than try to undo them, the document goes STALE: new UPDATEs get "busy",
 * the appends still in flight complete, and then the replica is discarded
 * and reloaded from the store. Its sender gets "store_failed" and resends.
 *
 * Keeping this behind td_srv_doc_* is what lets a later multi-node mode
 * move a document's ownership elsewhere without touching sessions.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "srv_internal.h"

static void rec_free(td_srv_rec *r);

/* ---- registry ------------------------------------------------------------------ */

static uint64_t doc_hash(td_srv_server *srv, const char *id, size_t len)
{
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t v;
    crypto_shorthash(h, (const uint8_t *)id, len, srv->hash_key);
    memcpy(&v, h, sizeof v);
    return v;
}

td_srv_doc *td_srv_doc_find(td_srv_server *srv, const char *id, size_t len)
{
    uint64_t h = doc_hash(srv, id, len);
    for (td_srv_doc *d = srv->buckets[h % srv->nbuckets]; d; d = d->hnext)
        if (d->hash == h && d->id_len == len && memcmp(d->id, id, len) == 0)
            return d;
    return NULL;
}

static void reg_grow(td_srv_server *srv)
{
    size_t n = srv->nbuckets * 2;
    td_srv_doc **b = calloc(n, sizeof *b);
    if (!b)
        return; /* keep the longer chains */
    for (size_t i = 0; i < srv->nbuckets; i++) {
        td_srv_doc *d = srv->buckets[i], *nx;
        for (; d; d = nx) {
            nx = d->hnext;
            d->hnext = b[d->hash % n];
            b[d->hash % n] = d;
        }
    }
    free(srv->buckets);
    srv->buckets = b;
    srv->nbuckets = n;
}

static td_srv_doc *reg_add(td_srv_server *srv, const char *id, size_t len)
{
    td_srv_doc *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    memcpy(d->id, id, len);
    d->id_len = len;
    d->srv = srv;
    d->hash = doc_hash(srv, id, len);
    if (srv->ndocs + 1 > srv->nbuckets)
        reg_grow(srv);
    d->hnext = srv->buckets[d->hash % srv->nbuckets];
    srv->buckets[d->hash % srv->nbuckets] = d;
    srv->ndocs++;
    return d;
}

static void dirty_remove(td_srv_server *srv, td_srv_doc *d)
{
    if (!d->dirty)
        return;
    for (td_srv_doc **p = &srv->dirty_head; *p; p = &(*p)->dirty_next)
        if (*p == d) {
            *p = d->dirty_next;
            break;
        }
    d->dirty = 0;
}

static void reg_remove(td_srv_server *srv, td_srv_doc *d)
{
    for (td_srv_doc **p = &srv->buckets[d->hash % srv->nbuckets]; *p; p = &(*p)->hnext)
        if (*p == d) {
            *p = d->hnext;
            break;
        }
    dirty_remove(srv, d);
    while (d->out_head) {
        td_srv_rec *r = d->out_head;
        d->out_head = r->next;
        rec_free(r);
    }
    srv->ndocs--;
    if (d->crdt) {
        td_crdt_doc_free(d->crdt);
        srv->m.docs_loaded--;
    }
    free(d);
}

/* ---- loader thread ---------------------------------------------------------------- */

typedef struct job {
    int compact;          /* 0: load doc; 1: compact id */
    td_srv_doc *doc;
    char id[TD_SRV_DOC_MAX + 1];
    size_t id_len;
    /* result */
    td_crdt_doc *crdt;
    td_store_err code;
    char msg[512];
    struct job *next;
} job;

typedef struct loader {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *in_head, *in_tail, *out;
    int stop, started;
} loader;

static td_crdt_options crdt_opts(void)
{
    td_crdt_options o;
    memset(&o, 0, sizeof o);
    randombytes_buf(&o.agent, sizeof o.agent);
    return o;
}

static void *loader_main(void *arg)
{
    td_srv_server *srv = arg;
    loader *L = srv->loader;
    pthread_mutex_lock(&L->mu);
    for (;;) {
        while (!L->in_head && !L->stop)
            pthread_cond_wait(&L->cv, &L->mu);
        if (L->stop)
            break;
        job *j = L->in_head;
        L->in_head = j->next;
        if (!L->in_head)
            L->in_tail = NULL;
        pthread_mutex_unlock(&L->mu);

        td_store_error e = {0};
        if (j->compact) {
            td_store_compact(srv->store, j->id, j->id_len, 0, NULL, &e);
            free(j);
            j = NULL;
        } else {
            td_crdt_options o = crdt_opts();
            j->code = td_store_load(srv->store, j->id, j->id_len, &o, &j->crdt, NULL, &e);
            if (j->code == TD_STORE_ERR_NOT_FOUND) {
                td_crdt_err ce = td_crdt_doc_new(&o, &j->crdt);
                j->code = ce == TD_CRDT_OK ? TD_STORE_OK : TD_STORE_ERR_NOMEM;
                snprintf(j->msg, sizeof j->msg, "%s", td_crdt_strerror(ce));
            } else if (j->code != TD_STORE_OK) {
                snprintf(j->msg, sizeof j->msg, "%s", e.msg);
            }
        }
        pthread_mutex_lock(&L->mu);
        if (j) {
            j->next = L->out;
            L->out = j;
            struct lws_context *ctx = atomic_load(&srv->wake_ctx);
            if (ctx)
                lws_cancel_service(ctx);
        }
    }
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

static void loader_push(td_srv_server *srv, job *j)
{
    loader *L = srv->loader;
    pthread_mutex_lock(&L->mu);
    j->next = NULL;
    if (L->in_tail)
        L->in_tail->next = j;
    else
        L->in_head = j;
    L->in_tail = j;
    pthread_cond_signal(&L->cv);
    pthread_mutex_unlock(&L->mu);
}

static int start_load(td_srv_server *srv, td_srv_doc *d)
{
    job *j = calloc(1, sizeof *j);
    if (!j)
        return -1;
    j->doc = d;
    memcpy(j->id, d->id, d->id_len);
    j->id_len = d->id_len;
    loader_push(srv, j);
    return 0;
}

static void start_compact(td_srv_server *srv, const char *id, size_t len)
{
    job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->compact = 1;
    memcpy(j->id, id, len);
    j->id_len = len;
    loader_push(srv, j);
}

int td_srv_docs_init(td_srv_server *srv)
{
    loader *L = calloc(1, sizeof *L);
    srv->nbuckets = 64;
    srv->buckets = calloc(srv->nbuckets, sizeof *srv->buckets);
    if (!L || !srv->buckets) {
        free(L);
        return -1;
    }
    randombytes_buf(srv->hash_key, sizeof srv->hash_key);
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->cv, NULL);
    srv->loader = L;
    if (pthread_create(&L->th, NULL, loader_main, srv) != 0)
        return -1;
    L->started = 1;
    return 0;
}

void td_srv_docs_stop(td_srv_server *srv)
{
    loader *L = srv->loader;
    if (!L)
        return;
    pthread_mutex_lock(&L->mu);
    L->stop = 1;
    pthread_cond_signal(&L->cv);
    pthread_mutex_unlock(&L->mu);
    if (L->started)
        pthread_join(L->th, NULL);
    L->started = 0;
    for (job *j = L->in_head, *n; j; j = n) {
        n = j->next;
        free(j);
    }
    for (job *j = L->out, *n; j; j = n) {
        n = j->next;
        if (j->crdt)
            td_crdt_doc_free(j->crdt);
        free(j);
    }
    L->in_head = L->in_tail = L->out = NULL;
}

void td_srv_docs_free(td_srv_server *srv)
{
    loader *L = srv->loader;
    for (size_t i = 0; srv->buckets && i < srv->nbuckets; i++)
        while (srv->buckets[i]) {
            td_srv_doc *d = srv->buckets[i];
            while (d->subs)
                td_srv_sub_remove(d->subs);
            for (td_srv_rec *r = d->fifo_head, *n; r; r = n) {
                n = r->next;
                rec_free(r);
            }
            d->fifo_head = d->fifo_tail = NULL;
            reg_remove(srv, d);
        }
    free(srv->buckets);
    srv->buckets = NULL;
    if (L) {
        pthread_mutex_destroy(&L->mu);
        pthread_cond_destroy(&L->cv);
        free(L);
        srv->loader = NULL;
    }
}

/* ---- subscriptions ------------------------------------------------------------------- */

td_srv_sub *td_srv_sub_find(td_srv_session *s, const uint8_t *doc, size_t len)
{
    for (td_srv_sub *u = s->subs; u; u = u->sess_next)
        if (u->doc->id_len == len && memcmp(u->doc->id, doc, len) == 0)
            return u;
    return NULL;
}

static void send_sync(td_srv_sub *u, const uint8_t *vv, size_t vv_len)
{
    td_srv_doc *d = u->doc;
    td_srv_session *s = u->sess;
    uint8_t *diff = NULL, *svv = NULL;
    size_t dlen = 0, svlen = 0;
    td_crdt_err e = td_crdt_diff(d->crdt, vv, vv_len, &diff, &dlen);
    if (e == TD_CRDT_OK)
        e = td_crdt_vv_encode(d->crdt, &svv, &svlen);
    if (e != TD_CRDT_OK) {
        td_srv_code code = e == TD_CRDT_ERR_NOMEM ? TD_SRV_E_INTERNAL : TD_SRV_E_BAD_MESSAGE;
        td_srv_send_error(s, code, d->id, d->id_len, 0, "cannot answer SUBSCRIBE: %s: %s",
                          td_crdt_strerror(e), td_crdt_doc_error(d->crdt));
        td_crdt_buf_free(d->crdt, diff);
        td_srv_sub_remove(u);
        return;
    }
    td_srv_msg m;
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_SYNC;
    m.doc.ptr = (const uint8_t *)d->id;
    m.doc.len = d->id_len;
    m.batch.ptr = diff;
    m.batch.len = dlen;
    m.vv.ptr = svv;
    m.vv.len = svlen;
    td_srv_send_msg(s, &m);
    td_crdt_buf_free(d->crdt, diff);
    td_crdt_buf_free(d->crdt, svv);
    td_srv_presence_snapshot(u);
}

/* ---- messages held back while a document loads ------------------------------------- */

/* A subscription waiting for its SYNC holds back the session's UPDATE,
 * PRESENCE, UNSUBSCRIBE (and, behind those, SUBSCRIBE) for that document;
 * when the SYNC goes out they move, in order, to the session's ready list,
 * which td_srv_replay() runs at the end of the loader poll. Messages on one
 * connection thus keep their order per document. A resync SUBSCRIBE with
 * nothing held back only replaces the vv the SYNC will answer. */
int td_srv_sub_defer(td_srv_sub *u, const td_srv_msg *m, const uint8_t *raw, size_t len)
{
    td_srv_session *s = u->sess;
    td_srv_pend *p;
    if (!u->pend_head && !(u->waiting && m->type != TD_SRV_MSG_SUBSCRIBE))
        return 0;
    if (s->pend_n && (s->pend_n >= TD_SRV_PEND_MAX_MSGS ||
                      s->pend_bytes + len > TD_SRV_PEND_MAX_BYTES)) {
        td_srv_send_error(s, TD_SRV_E_BUSY, (const char *)m->doc.ptr, m->doc.len, m->batch_id,
                          "%zu messages wait for documents to load; resend later", s->pend_n);
        return 1;
    }
    p = malloc(sizeof *p + len);
    if (!p) {
        td_srv_send_error(s, TD_SRV_E_INTERNAL, (const char *)m->doc.ptr, m->doc.len,
                          m->batch_id, "out of memory");
        return 1;
    }
    p->next = NULL;
    p->len = len;
    memcpy(p->data, raw, len);
    if (u->pend_tail)
        u->pend_tail->next = p;
    else
        u->pend_head = p;
    u->pend_tail = p;
    s->pend_n++;
    s->pend_bytes += len;
    return 1;
}

/* u's held-back messages are due: hand them to its session's replay. */
static void pend_release(td_srv_sub *u)
{
    td_srv_session *s = u->sess;
    td_srv_server *srv = s->srv;
    if (!u->pend_head)
        return;
    if (s->ready_tail)
        s->ready_tail->next = u->pend_head;
    else
        s->ready_head = u->pend_head;
    s->ready_tail = u->pend_tail;
    u->pend_head = u->pend_tail = NULL;
    if (!s->in_replay_list) {
        s->in_replay_list = 1;
        s->replay_next = srv->replay_head;
        srv->replay_head = s;
    }
}

static void sub_answer(td_srv_sub *u)
{
    uint8_t *vv = u->vv;
    size_t vv_len = u->vv_len;
    u->vv = NULL;
    u->vv_len = 0;
    u->waiting = 0;
    pend_release(u);
    send_sync(u, vv, vv_len); /* may remove u */
    free(vv);
}

void td_srv_sub_remove(td_srv_sub *u)
{
    td_srv_session *s = u->sess;
    td_srv_doc *d = u->doc;
    if (u->pr)
        td_srv_presence_drop(u, 1);
    while (u->pend_head) {
        td_srv_pend *q = u->pend_head;
        u->pend_head = q->next;
        s->pend_n--;
        s->pend_bytes -= q->len;
        free(q);
    }
    for (td_srv_sub **p = &s->subs; *p; p = &(*p)->sess_next)
        if (*p == u) {
            *p = u->sess_next;
            break;
        }
    s->nsubs--;
    if (u->doc_prev)
        u->doc_prev->doc_next = u->doc_next;
    else
        d->subs = u->doc_next;
    if (u->doc_next)
        u->doc_next->doc_prev = u->doc_prev;
    d->nsubs--;
    if (!d->nsubs)
        d->idle_since_us = td_srv_now_us();
    free(u->vv);
    free(u);
}

void td_srv_doc_subscribe(td_srv_session *s, const td_srv_msg *m)
{
    td_srv_server *srv = s->srv;
    const char *id = (const char *)m->doc.ptr;
    size_t len = m->doc.len;
    td_srv_sub *u;
    td_srv_doc *d;

    if (srv->phase != TD_SRV_RUNNING) {
        td_srv_send_error(s, TD_SRV_E_SHUTTING_DOWN, id, len, 0, "server shutting down");
        return;
    }
    if (!(s->tok.rights & TD_SRV_RIGHT_READ) ||
        !td_srv_pattern_match(s->tok.pattern, s->tok.pattern_len, id, len)) {
        td_srv_send_error(s, TD_SRV_E_FORBIDDEN, id, len, 0,
                          "the token does not grant this document");
        return;
    }
    u = td_srv_sub_find(s, m->doc.ptr, len);
    if (u) {
        /* Resync. While waiting, the newer vv replaces the older. */
        if (u->waiting || u->doc->state != TD_SRV_DOC_READY) {
            uint8_t *vv = m->vv.len ? malloc(m->vv.len) : NULL;
            if (m->vv.len && !vv)
                return;
            if (vv)
                memcpy(vv, m->vv.ptr, m->vv.len);
            free(u->vv);
            u->vv = vv;
            u->vv_len = m->vv.len;
            u->waiting = 1;
        } else {
            send_sync(u, m->vv.ptr, m->vv.len);
        }
        return;
    }
    if (s->nsubs >= srv->cfg.max_subs) {
        td_srv_send_error(s, TD_SRV_E_LIMIT, id, len, 0,
                          "too many subscriptions on this connection (max %llu)",
                          (unsigned long long)srv->cfg.max_subs);
        return;
    }
    d = td_srv_doc_find(srv, id, len);
    if (!d) {
        d = reg_add(srv, id, len);
        if (!d || start_load(srv, d) < 0) {
            if (d)
                reg_remove(srv, d);
            td_srv_send_error(s, TD_SRV_E_INTERNAL, id, len, 0, "out of memory");
            return;
        }
        d->state = TD_SRV_DOC_LOADING;
    }
    u = calloc(1, sizeof *u);
    if (!u) {
        td_srv_send_error(s, TD_SRV_E_INTERNAL, id, len, 0, "out of memory");
        return;
    }
    u->sess = s;
    u->doc = d;
    u->sess_next = s->subs;
    s->subs = u;
    s->nsubs++;
    u->doc_next = d->subs;
    if (d->subs)
        d->subs->doc_prev = u;
    d->subs = u;
    d->nsubs++;
    if (d->state == TD_SRV_DOC_READY) {
        send_sync(u, m->vv.ptr, m->vv.len);
    } else {
        u->waiting = 1;
        if (m->vv.len) {
            u->vv = malloc(m->vv.len);
            if (!u->vv) {
                td_srv_send_error(s, TD_SRV_E_INTERNAL, id, len, 0, "out of memory");
                td_srv_sub_remove(u);
                return;
            }
            memcpy(u->vv, m->vv.ptr, m->vv.len);
            u->vv_len = m->vv.len;
        }
    }
}

void td_srv_doc_unsubscribe(td_srv_session *s, const td_srv_msg *m)
{
    td_srv_sub *u = td_srv_sub_find(s, m->doc.ptr, m->doc.len);
    if (!u) {
        td_srv_send_error(s, TD_SRV_E_NOT_SUBSCRIBED, (const char *)m->doc.ptr,
                          m->doc.len, 0, "not subscribed");
        return;
    }
    td_srv_sub_remove(u);
}

/* ---- loads ------------------------------------------------------------------------------ */

/* The document cannot be served: every subscriber is told and dropped. */
static void doc_fail(td_srv_server *srv, td_srv_doc *d, const char *why)
{
    srv->m.doc_load_failures++;
    lwsl_err("document '%.*s' unavailable: %s\n", (int)d->id_len, d->id, why);
    while (d->subs) {
        td_srv_sub *u = d->subs;
        td_srv_send_error(u->sess, TD_SRV_E_DOC_UNAVAILABLE, d->id, d->id_len, 0,
                          "document cannot be loaded: %s", why);
        pend_release(u); /* processed after this: not subscribed any more */
        td_srv_sub_remove(u);
    }
    reg_remove(srv, d);
}

static void load_done(td_srv_server *srv, job *j)
{
    td_srv_doc *d = j->doc;
    if (j->code != TD_STORE_OK) {
        doc_fail(srv, d, j->msg[0] ? j->msg : td_store_strerror(j->code));
        return;
    }
    d->crdt = j->crdt;
    j->crdt = NULL;
    d->state = TD_SRV_DOC_READY;
    srv->m.docs_loaded++;
    srv->m.doc_loads++;
    if (!d->nsubs)
        d->idle_since_us = td_srv_now_us();
    /* Answer the waiting subscribers; sub_answer may remove one. */
    td_srv_sub *u = d->subs;
    while (u) {
        td_srv_sub *nx = u->doc_next;
        if (u->waiting)
            sub_answer(u);
        u = nx;
    }
}

void td_srv_docs_poll(td_srv_server *srv)
{
    loader *L = srv->loader;
    job *list, *rev = NULL;
    pthread_mutex_lock(&L->mu);
    list = L->out;
    L->out = NULL;
    pthread_mutex_unlock(&L->mu);
    while (list) { /* oldest first */
        job *n = list->next;
        list->next = rev;
        rev = list;
        list = n;
    }
    while (rev) {
        job *n = rev->next;
        load_done(srv, rev);
        if (rev->crdt)
            td_crdt_doc_free(rev->crdt);
        free(rev);
        rev = n;
    }
    td_srv_replay(srv);
}

static void doc_reload(td_srv_server *srv, td_srv_doc *d)
{
    if (d->crdt) {
        td_crdt_doc_free(d->crdt);
        d->crdt = NULL;
        srv->m.docs_loaded--;
    }
    d->state = TD_SRV_DOC_RELOADING;
    if (start_load(srv, d) < 0)
        doc_fail(srv, d, "out of memory");
}

void td_srv_docs_maintain(td_srv_server *srv)
{
    int64_t now = td_srv_now_us();
    int64_t idle = (int64_t)srv->cfg.doc_idle_ms * 1000;
    for (size_t i = 0; i < srv->nbuckets; i++) {
        td_srv_doc *d = srv->buckets[i];
        while (d) {
            td_srv_doc *nx = d->hnext;
            if (d->state == TD_SRV_DOC_READY && !d->nsubs && !d->fifo_head &&
                !d->out_head && now - d->idle_since_us >= idle) {
                start_compact(srv, d->id, d->id_len);
                srv->m.doc_unloads++;
                reg_remove(srv, d);
            }
            d = nx;
        }
    }
}

/* ---- updates ------------------------------------------------------------------------------ */

static void rec_unlink_sess(td_srv_rec *r)
{
    if (!r->sess)
        return;
    if (r->sess_prev)
        r->sess_prev->sess_next = r->sess_next;
    else
        r->sess->recs = r->sess_next;
    if (r->sess_next)
        r->sess_next->sess_prev = r->sess_prev;
    r->sess_prev = r->sess_next = NULL;
}

static void rec_free(td_srv_rec *r)
{
    rec_unlink_sess(r);
    free(r->batch);
    free(r);
}

static void send_ack(td_srv_session *s, td_srv_doc *d, uint64_t batch_id)
{
    td_srv_msg m;
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_ACK;
    m.doc.ptr = (const uint8_t *)d->id;
    m.doc.len = d->id_len;
    m.batch_id = batch_id;
    td_srv_send_msg(s, &m);
}

/* Takes the completed records off the head of the FIFO, in order. */
static void doc_drain(td_srv_server *srv, td_srv_doc *d)
{
    int failed = d->state == TD_SRV_DOC_STALE;
    while (d->fifo_head && d->fifo_head->done) {
        td_srv_rec *r = d->fifo_head;
        d->fifo_head = r->next;
        if (!d->fifo_head)
            d->fifo_tail = NULL;
        r->next = NULL;
        if (!r->dup) {
            d->inflight--;
            srv->inflight--;
        }
        if (r->result != TD_STORE_OK) {
            failed = 1;
            srv->m.store_failures++;
            lwsl_err("store append for '%.*s' failed: %s\n", (int)d->id_len, d->id,
                     r->errmsg);
            if (r->sess)
                td_srv_send_error(r->sess, TD_SRV_E_STORE_FAILED, d->id, d->id_len,
                                  r->batch_id, "store write failed: %s", r->errmsg);
            rec_free(r);
            continue;
        }
        if (r->dup && failed) {
            /* Its ops may be those of a failed append before it. */
            if (r->sess)
                td_srv_send_error(r->sess, TD_SRV_E_STORE_FAILED, d->id, d->id_len,
                                  r->batch_id, "an earlier store write failed; resend");
            rec_free(r);
            continue;
        }
        if (r->sess)
            send_ack(r->sess, d, r->batch_id);
        if (r->dup) {
            rec_free(r);
            continue;
        }
        /* r stays on its sender's list until the flush, so a sender that
         * disconnects meanwhile clears r->sess. */
        if (d->out_tail)
            d->out_tail->next = r;
        else
            d->out_head = r;
        d->out_tail = r;
        td_srv_doc_mark(d);
    }
    if (failed && d->state == TD_SRV_DOC_READY)
        d->state = TD_SRV_DOC_STALE;
    if (d->state == TD_SRV_DOC_STALE && !d->fifo_head)
        doc_reload(srv, d);
}

static void append_done(void *ud, const td_store_ack *ack)
{
    td_srv_rec *r = ud;
    td_srv_doc *d = r->doc;
    r->done = 1;
    r->result = ack->code;
    td_srv_hist_observe(&d->srv->m.store_append,
                        (double)(td_srv_now_us() - r->t_store_us) / 1e6);
    if (ack->code != TD_STORE_OK)
        snprintf(r->errmsg, sizeof r->errmsg, "%s", ack->msg ? ack->msg : "");
    doc_drain(d->srv, d);
}

void td_srv_doc_update(td_srv_session *s, const td_srv_msg *m)
{
    td_srv_server *srv = s->srv;
    const char *id = (const char *)m->doc.ptr;
    size_t len = m->doc.len;
    td_srv_sub *u;
    td_srv_doc *d;
    td_crdt_apply_info info;
    td_crdt_err e;
    td_srv_rec *r;

    if (srv->phase != TD_SRV_RUNNING) {
        td_srv_send_error(s, TD_SRV_E_SHUTTING_DOWN, id, len, m->batch_id,
                          "server shutting down; resend after reconnecting");
        return;
    }
    if (!(s->tok.rights & TD_SRV_RIGHT_WRITE)) {
        td_srv_send_error(s, TD_SRV_E_READ_ONLY, id, len, m->batch_id,
                          "the token does not grant writing");
        return;
    }
    u = td_srv_sub_find(s, m->doc.ptr, len);
    if (!u) {
        td_srv_send_error(s, TD_SRV_E_NOT_SUBSCRIBED, id, len, m->batch_id,
                          "UPDATE for a document not subscribed");
        return;
    }
    d = u->doc;
    if (m->batch.len > srv->cfg.max_batch) {
        td_srv_send_error(s, TD_SRV_E_TOO_LARGE, id, len, m->batch_id,
                          "batch of %zu bytes exceeds the limit of %llu", m->batch.len,
                          (unsigned long long)srv->cfg.max_batch);
        return;
    }
    if (d->state != TD_SRV_DOC_READY || u->waiting) {
        /* (A waiting subscription holds its UPDATEs back: td_srv_sub_defer.) */
        td_srv_send_error(s, TD_SRV_E_BUSY, id, len, m->batch_id,
                          "document reloading after a store failure; resend later");
        return;
    }
    r = calloc(1, sizeof *r);
    if (!r) {
        td_srv_send_error(s, TD_SRV_E_INTERNAL, id, len, m->batch_id, "out of memory");
        return;
    }
    r->t_recv_us = td_srv_now_us();
    e = td_crdt_apply(d->crdt, m->batch.ptr, m->batch.len, &info);
    if (e != TD_CRDT_OK) {
        td_srv_code code = e == TD_CRDT_ERR_NOMEM ? TD_SRV_E_INTERNAL
                           : e == TD_CRDT_ERR_LIMIT && td_crdt_pending_ops(d->crdt)
                               ? TD_SRV_E_LIMIT
                               : TD_SRV_E_INVALID_BATCH;
        td_srv_send_error(s, code, id, len, m->batch_id, "batch rejected: %s: %s",
                          td_crdt_strerror(e), td_crdt_doc_error(d->crdt));
        free(r);
        return;
    }
    r->doc = d;
    r->sess = s;
    r->batch_id = m->batch_id;
    r->sess_next = s->recs;
    if (s->recs)
        s->recs->sess_prev = r;
    s->recs = r;
    if (d->fifo_tail)
        d->fifo_tail->next = r;
    else
        d->fifo_head = r;
    d->fifo_tail = r;

    if (info.ops_applied == 0 && !info.parked) {
        /* Nothing new: ACK once everything before it is durable. */
        r->dup = 1;
        r->done = 1;
        r->result = TD_STORE_OK;
        srv->m.batches_duplicate++;
        doc_drain(srv, d);
        return;
    }
    srv->m.ops_applied += info.ops_applied;
    srv->m.batches_applied++;
    r->batch = malloc(m->batch.len);
    uint8_t *vv = NULL;
    size_t vv_len = 0;
    td_store_error se = {0};
    td_store_err sc = TD_STORE_ERR_NOMEM;
    if (r->batch && td_crdt_vv_encode(d->crdt, &vv, &vv_len) == TD_CRDT_OK) {
        memcpy(r->batch, m->batch.ptr, m->batch.len);
        r->len = m->batch.len;
        td_store_batch b = {id, len, m->batch.ptr, m->batch.len,
                            info.ops_applied + info.ops_duplicate ? info.ops_applied + info.ops_duplicate : 1,
                            vv, vv_len};
        r->t_store_us = td_srv_now_us();
        sc = td_store_append(srv->store, &b, append_done, r, &se);
    }
    td_crdt_buf_free(d->crdt, vv);
    d->inflight++;
    srv->inflight++;
    if (sc != TD_STORE_OK) {
        r->done = 1;
        r->result = sc;
        snprintf(r->errmsg, sizeof r->errmsg, "%.120s", se.msg[0] ? se.msg : td_store_strerror(sc));
        doc_drain(srv, d);
    }
}

/* ---- flush ---------------------------------------------------------------------------------- */

void td_srv_doc_mark(td_srv_doc *d)
{
    td_srv_server *srv = d->srv;
    if (!d->dirty) {
        d->dirty = 1;
        d->dirty_next = srv->dirty_head;
        srv->dirty_head = d;
    }
}

static void flush_cb(lws_sorted_usec_list_t *sul)
{
    td_srv_server *srv = lws_container_of(sul, td_srv_server, sul_flush);
    srv->flush_scheduled = 0;
    td_srv_flush(srv);
}

void td_srv_flush_soon(td_srv_server *srv)
{
    if (srv->flush_scheduled || !srv->ctx)
        return;
    srv->flush_scheduled = 1;
    lws_sul_schedule(srv->ctx, 0, &srv->sul_flush, flush_cb, 1);
}

static td_srv_frame *remote_frame(td_srv_doc *d, td_srv_session *skip)
{
    td_srv_wbuf items;
    uint64_t n = 0;
    td_srv_wbuf_init(&items, 0);
    for (td_srv_rec *r = d->out_head; r; r = r->next)
        if (!skip || r->sess != skip) {
            td_srv_item_put_batch(&items, r->batch, r->len);
            n++;
        }
    return td_srv_list_frame(TD_SRV_MSG_REMOTE, d, n, &items);
}

/* One REMOTE per subscriber with the batches of this turn it did not send:
 * subscribers that sent none share one frame. */
static void flush_batches(td_srv_server *srv, td_srv_doc *d, int64_t now)
{
    uint64_t epoch = ++srv->flush_epoch;
    td_srv_frame *all = NULL;
    for (td_srv_rec *r = d->out_head; r; r = r->next)
        if (r->sess)
            r->sess->mark = epoch;
    for (td_srv_sub *u = d->subs; u; u = u->doc_next) {
        if (u->waiting)
            continue; /* its SYNC will carry everything */
        if (u->sess->mark == epoch) {
            td_srv_frame *f = remote_frame(d, u->sess);
            td_srv_send(u->sess, f);
            td_srv_frame_unref(f);
        } else {
            if (!all)
                all = remote_frame(d, NULL);
            td_srv_send(u->sess, all);
        }
    }
    td_srv_frame_unref(all);
    while (d->out_head) {
        td_srv_rec *r = d->out_head;
        d->out_head = r->next;
        td_srv_hist_observe(&srv->m.recv_to_bcast, (double)(now - r->t_recv_us) / 1e6);
        rec_free(r);
    }
    d->out_tail = NULL;
}

void td_srv_flush(td_srv_server *srv)
{
    int64_t now = td_srv_now_us();
    while (srv->dirty_head) {
        td_srv_doc *d = srv->dirty_head;
        srv->dirty_head = d->dirty_next;
        d->dirty = 0;
        d->dirty_next = NULL;
        if (d->out_head)
            flush_batches(srv, d, now);
        if (d->pres_changed)
            td_srv_presence_flush_doc(d, now);
    }
    td_srv_presence_arm(srv);
}
