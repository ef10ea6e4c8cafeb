/*
 * srv_cluster.c -- the cluster transport over NATS JetStream (srv_cluster.h,
 * docs/CLUSTER.md).
 *
 * Names. Document ids may hold any byte, subjects may not ('.', '*', '>',
 * spaces), so a document's subjects carry its id in hex:
 *     <stream>.d.<hex id>   its batches and snapshots (the stream's subjects)
 *     <stream>.p.<hex id>   its presence (plain NATS, not stored)
 * Authorship: bucket <stream>_OWNERS, key <hex id>.<agent in hex>, value the
 * author's name.
 * Headers: Tandem-Node names the publisher (a node skips its own batches);
 * Nats-Msg-Id = <node>-<tag> lets JetStream store a retried publish once and
 * brings the tag back to the acknowledgement handler; a snapshot carries
 * Nats-Rollup: sub (the stream drops the subject's older messages) and
 * Tandem-Kind: snapshot.
 *
 * Threads. The acknowledgement handler, the followers' message handlers and
 * the connection callbacks run on libnats threads: each builds an event,
 * appends it to a list under a mutex and, if the list was empty, calls
 * cfg.wake. td_srv_cluster_poll takes the whole list at once and hands the
 * events over in order, on the caller's thread. A node's own batches come
 * back through its consumers too: they carry no payload to the caller, only
 * their sequence and tag (the `echoed` handler), which the service's early
 * broadcast needs (docs/CLUSTER.md, "Early broadcast"). They do not wake
 * the caller: their sequence matters only to another node's batch that
 * arrives after them on the same subscription (and wakes it), and the
 * publish's own acknowledgement wakes it anyway.
 */
#define _POSIX_C_SOURCE 200809L

#include "srv_cluster.h"

#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

enum ev_kind { EV_PUBLISHED, EV_DELIVERED, EV_PRESENCE, EV_BROKER };

typedef struct ev {
    struct ev *next;
    uint8_t kind;
    uint8_t snapshot, dup, up, own;
    td_srv_cluster_err err;
    uint64_t tag, seq;
    int64_t t_sent, t_cb; /* trace only: the publisher's clock, the handler's */
    char *doc;       /* decoded id, doc_len bytes */
    size_t doc_len;
    char node[64];
    char msg[128];
    size_t len;
    uint8_t data[];  /* the payload */
} ev;

/* TANDEM_CLUSTER_TRACE=FILE (docs/CLUSTER.md, "Where the time goes"): the
 * publisher stamps each batch with its monotonic clock (header Tandem-Sent,
 * meaningful only when the nodes share a machine, as in `tandem-load
 * --nodes`), and the receiver keeps two samples per batch of another node:
 * publish -> the libnats handler (the broker's store and the consumer's
 * push), and the handler -> td_srv_cluster_poll on the caller's thread (the
 * hand-off). Their percentiles are appended to FILE when the transport is
 * freed. Off by default: it costs a header per batch. */
#define TRACE_MAX 1000000
typedef struct trace {
    char path[256];
    size_t n_pub, n_hand; /* n_pub under the cluster's mu */
    uint32_t pub[TRACE_MAX], hand[TRACE_MAX];
} trace;

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void trace_add(uint32_t *v, size_t *n, int64_t us)
{
    if (*n < TRACE_MAX)
        v[(*n)++] = us < 0 ? 0 : us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void trace_line(FILE *f, const char *node, const char *what, uint32_t *v, size_t n)
{
    if (!n)
        return;
    qsort(v, n, sizeof *v, cmp_u32);
#define PCT(p) (v[(size_t)((double)(n - 1) * (p))] / 1000.0)
    fprintf(f, "%s %-28s p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  (%zu)\n", node,
            what, PCT(0.5), PCT(0.9), PCT(0.99), v[n - 1] / 1000.0, n);
#undef PCT
}

typedef struct follower {
    struct follower *next;
    struct td_srv_cluster *c;
    natsSubscription *batches, *presence;
    /* The stream's messages of this subject after the last one delivered
     * (its NumPending), written on the library's thread. */
    _Atomic uint64_t pending;
    size_t doc_len;
    char doc[]; /* the id, as given */
} follower;

struct td_srv_cluster {
    natsConnection *nc;
    jsCtx *js;
    jsCtx *kvjs;           /* the owners bucket's, with a short wait */
    kvStore *owners;       /* agent -> author (td_srv_cluster_claim) */
    char stream[64];
    char node[64];
    uint64_t stream_last;  /* the stream's last sequence at connect */
    int64_t publish_timeout_ms;
    void (*wake)(void *ud);
    void *wake_ud;
    pthread_mutex_t mu;
    pthread_cond_t closed_cv;
    int closed;            /* under mu: the connection's last callback ran */
    ev *head, *tail;       /* under mu */
    size_t queued;         /* under mu: other nodes' batches in that list */
    int woken;             /* under mu: the caller was woken for the list */
    volatile int up;       /* written on libnats threads, read anywhere */
    follower *followers;   /* the caller's thread only */
    trace *tr;             /* TANDEM_CLUSTER_TRACE; NULL: off */
};

const char *td_srv_cluster_strerror(td_srv_cluster_err e)
{
    static const char *const names[] = {
        [TD_SRV_CLUSTER_OK] = "ok",
        [TD_SRV_CLUSTER_ERR_ARG] = "invalid argument",
        [TD_SRV_CLUSTER_ERR_NOMEM] = "out of memory",
        [TD_SRV_CLUSTER_ERR_CONNECT] = "no broker reachable",
        [TD_SRV_CLUSTER_ERR_STREAM] = "the stream cannot be used",
        [TD_SRV_CLUSTER_ERR_UNAVAILABLE] = "the broker is unavailable",
        [TD_SRV_CLUSTER_ERR_REFUSED] = "the broker refused the message",
        [TD_SRV_CLUSTER_ERR_TOO_LARGE] = "the message is larger than the broker allows",
    };
    if ((unsigned)e < sizeof names / sizeof names[0] && names[e])
        return names[e];
    return "unknown";
}

/* ---- names -------------------------------------------------------------------- */

static char *subject(const struct td_srv_cluster *c, char kind, const char *doc, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t sl = strlen(c->stream);
    char *s = malloc(sl + 3 + 2 * len + 1);
    if (!s)
        return NULL;
    memcpy(s, c->stream, sl);
    s[sl] = '.';
    s[sl + 1] = kind;
    s[sl + 2] = '.';
    char *p = s + sl + 3;
    for (size_t i = 0; i < len; i++) {
        *p++ = hex[(unsigned char)doc[i] >> 4];
        *p++ = hex[(unsigned char)doc[i] & 15];
    }
    *p = 0;
    return s;
}

/* The id back from a subject's last token; NULL if it is not ours. */
static char *subject_doc(const char *subj, size_t *len)
{
    const char *t = strrchr(subj, '.');
    if (!t)
        return NULL;
    t++;
    size_t n = strlen(t);
    if (n % 2)
        return NULL;
    char *doc = malloc(n / 2 + 1);
    if (!doc)
        return NULL;
    for (size_t i = 0; i < n / 2; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char ch = t[2 * i + (size_t)k];
            int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
            if (d < 0) {
                free(doc);
                return NULL;
            }
            v = v << 4 | d;
        }
        doc[i] = (char)v;
    }
    doc[n / 2] = 0;
    *len = n / 2;
    return doc;
}

/* ---- events --------------------------------------------------------------------- */

static ev *ev_new(enum ev_kind kind, size_t len)
{
    ev *e = calloc(1, sizeof *e + len);
    if (e) {
        e->kind = (uint8_t)kind;
        e->len = len;
    }
    return e;
}

/* Wakes the caller once per poll: td_srv_cluster_poll takes the whole
 * list, so a list that had its wake needs no other (lws_cancel_service is
 * a pipe write and a loop turn each). An event pushed with wake 0 (this
 * node's own batch coming back) waits in the list for the next one that
 * wakes. */
static void ev_push(struct td_srv_cluster *c, ev *e, int wake)
{
    pthread_mutex_lock(&c->mu);
    wake = wake && !c->woken;
    c->woken |= wake;
    c->queued += e->kind == EV_DELIVERED && !e->own;
    if (c->tail)
        c->tail->next = e;
    else
        c->head = e;
    c->tail = e;
    if (c->tr && e->kind == EV_DELIVERED && e->t_sent)
        trace_add(c->tr->pub, &c->tr->n_pub, e->t_cb - e->t_sent);
    pthread_mutex_unlock(&c->mu);
    if (wake && c->wake)
        c->wake(c->wake_ud);
}

static void ev_free(ev *e)
{
    free(e->doc);
    free(e);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* ---- libnats callbacks (their threads) ------------------------------------------ */

static td_srv_cluster_err map_status(natsStatus s, jsErrCode code)
{
    if (s == NATS_MAX_PAYLOAD)
        return TD_SRV_CLUSTER_ERR_TOO_LARGE;
    if (code != 0)
        return TD_SRV_CLUSTER_ERR_REFUSED;
    return TD_SRV_CLUSTER_ERR_UNAVAILABLE;
}

/* A message's publish tag: Nats-Msg-Id is "<node>-<tag in hex>", the tag
 * after the last '-'. 0 if there is none. */
static uint64_t msg_tag(natsMsg *msg)
{
    const char *id = NULL;
    if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) != NATS_OK || !id)
        return 0;
    const char *dash = strrchr(id, '-');
    return dash ? strtoull(dash + 1, NULL, 16) : 0;
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    struct td_srv_cluster *c = closure;
    ev *e = ev_new(EV_PUBLISHED, 0);
    if (e) {
        e->tag = msg_tag(msg);
        if (pa) {
            e->seq = pa->Sequence;
            e->dup = pa->Duplicate;
        } else if (pae) {
            e->err = map_status(pae->Err, pae->ErrCode);
            copy_str(e->msg, sizeof e->msg, pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
        } else {
            e->err = TD_SRV_CLUSTER_ERR_UNAVAILABLE;
        }
        ev_push(c, e, 1);
    }
    natsMsg_Destroy(msg);
}

static void on_batch(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    follower *f = closure;
    const char *node = NULL, *kind = NULL;
    jsMsgMetaData *meta = NULL;
    natsMsgHeader_Get(msg, "Tandem-Node", &node);
    /* This node's own batch comes back too: only its sequence and tag
     * matter (the replica has it), so its payload is not copied. */
    int own = node && strcmp(node, f->c->node) == 0;
    int len = own ? 0 : natsMsg_GetDataLength(msg);
    ev *e = ev_new(EV_DELIVERED, len > 0 ? (size_t)len : 0);
    if (e && natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
        e->seq = meta->Sequence.Stream;
        atomic_store(&f->pending, meta->NumPending);
        jsMsgMetaData_Destroy(meta);
        natsMsgHeader_Get(msg, "Tandem-Kind", &kind);
        if (f->c->tr && !own) {
            const char *sent = NULL;
            e->t_cb = mono_us();
            if (natsMsgHeader_Get(msg, "Tandem-Sent", &sent) == NATS_OK && sent)
                e->t_sent = strtoll(sent, NULL, 10);
        }
        copy_str(e->node, sizeof e->node, node);
        e->own = (uint8_t)own;
        if (own)
            e->tag = msg_tag(msg);
        e->snapshot = kind && strcmp(kind, "snapshot") == 0;
        if (len > 0)
            memcpy(e->data, natsMsg_GetData(msg), (size_t)len);
        e->doc = subject_doc(natsMsg_GetSubject(msg), &e->doc_len);
        if (e->doc) {
            ev_push(f->c, e, !own);
            e = NULL;
        }
    }
    if (e)
        free(e);
    natsMsg_Destroy(msg);
}

static void on_presence(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    follower *f = closure;
    const char *node = NULL;
    int len = natsMsg_GetDataLength(msg);
    natsMsgHeader_Get(msg, "Tandem-Node", &node);
    /* A node hears its own presence too: drop it here, not on the loop. */
    if (node && strcmp(node, f->c->node) != 0) {
        ev *e = ev_new(EV_PRESENCE, len > 0 ? (size_t)len : 0);
        if (e) {
            copy_str(e->node, sizeof e->node, node);
            if (len > 0)
                memcpy(e->data, natsMsg_GetData(msg), (size_t)len);
            e->doc = subject_doc(natsMsg_GetSubject(msg), &e->doc_len);
            if (e->doc)
                ev_push(f->c, e, 1);
            else
                free(e);
        }
    }
    natsMsg_Destroy(msg);
}

static void on_link(struct td_srv_cluster *c, int up)
{
    c->up = up;
    ev *e = ev_new(EV_BROKER, 0);
    if (e) {
        e->up = (uint8_t)up;
        ev_push(c, e, 1);
    }
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    on_link(closure, 0);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    on_link(closure, 1);
}

/* The last callback libnats makes for a connection: after it, c may go. */
static void on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    struct td_srv_cluster *c = closure;
    pthread_mutex_lock(&c->mu);
    c->closed = 1;
    pthread_cond_signal(&c->closed_cv);
    pthread_mutex_unlock(&c->mu);
}

/* ---- lifecycle ------------------------------------------------------------------- */

static td_srv_cluster_err fail(char *msg, size_t msglen, td_srv_cluster_err e, const char *what,
                               natsStatus s)
{
    if (msg && msglen)
        snprintf(msg, msglen, "%s: %s", what, natsStatus_GetText(s));
    return e;
}

static td_srv_cluster_err ensure_stream(struct td_srv_cluster *c, int replicas, char *msg,
                                        size_t msglen)
{
    jsStreamConfig sc;
    jsStreamInfo *si = NULL;
    jsErrCode code = 0;
    char subjects[80];
    const char *subj[1] = {subjects};
    snprintf(subjects, sizeof subjects, "%s.d.>", c->stream);
    jsStreamConfig_Init(&sc);
    sc.Name = c->stream;
    sc.Subjects = subj;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = replicas;
    sc.AllowRollup = true;
    /* A retried publish within this window is stored once (Nats-Msg-Id). */
    sc.Duplicates = (int64_t)120 * 1000000000;
    natsStatus s = js_AddStream(&si, c->js, &sc, NULL, &code);
    /* Otherwise another node made it first: it is there, with its own
     * settings. */
    if (s != NATS_OK)
        s = js_GetStreamInfo(&si, c->js, c->stream, NULL, &code);
    if (s == NATS_OK) {
        c->stream_last = si->State.LastSeq;
        jsStreamInfo_Destroy(si);
        return TD_SRV_CLUSTER_OK;
    }
    return fail(msg, msglen, TD_SRV_CLUSTER_ERR_STREAM, "JetStream stream", s);
}

/* The URL list, one server each: libnats 3.4's natsOptions_SetURL takes a
 * comma-separated list but then connects to none of two or more. */
/* The authorship bucket, created by the first node (one value per key: only
 * the binding matters, never its history). Its own JetStream context waits
 * one second, not five: a claim holds the event loop. */
static td_srv_cluster_err ensure_owners(struct td_srv_cluster *c, int replicas, char *msg,
                                        size_t msglen)
{
    char bucket[80];
    snprintf(bucket, sizeof bucket, "%s_OWNERS", c->stream);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 1000;
    natsStatus s = natsConnection_JetStream(&c->kvjs, c->nc, &jo);
    if (s == NATS_OK) {
        s = js_KeyValue(&c->owners, c->kvjs, bucket);
        if (s == NATS_NOT_FOUND) {
            kvConfig kc;
            kvConfig_Init(&kc);
            kc.Bucket = bucket;
            kc.History = 1;
            kc.Replicas = replicas;
            kc.StorageType = js_FileStorage;
            s = js_CreateKeyValue(&c->owners, c->kvjs, &kc);
        }
    }
    return s == NATS_OK ? TD_SRV_CLUSTER_OK
                        : fail(msg, msglen, TD_SRV_CLUSTER_ERR_STREAM, "owners bucket", s);
}

static natsStatus set_servers(natsOptions *o, const char *urls)
{
    char buf[2048];
    const char *v[32];
    int n = 0;
    if (!urls || strlen(urls) >= sizeof buf)
        return NATS_INVALID_ARG;
    memcpy(buf, urls, strlen(urls) + 1);
    for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (n == (int)(sizeof v / sizeof v[0]))
            return NATS_INVALID_ARG;
        v[n++] = t;
    }
    if (!n)
        return NATS_INVALID_ARG;
    return natsOptions_SetServers(o, v, n);
}

td_srv_cluster_err td_srv_cluster_new(td_srv_cluster **out, const td_srv_cluster_cfg *cfg,
                                      char *msg, size_t msglen)
{
    if (!out || !cfg || !cfg->urls || !*cfg->urls)
        return TD_SRV_CLUSTER_ERR_ARG;
    *out = NULL;
    const char *stream = cfg->stream ? cfg->stream : "TANDEM";
    if (strlen(stream) >= 64 || strpbrk(stream, ". *>") || (cfg->node && strlen(cfg->node) >= 48))
        return TD_SRV_CLUSTER_ERR_ARG;
    struct td_srv_cluster *c = calloc(1, sizeof *c);
    if (!c)
        return TD_SRV_CLUSTER_ERR_NOMEM;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->closed_cv, NULL);
    copy_str(c->stream, sizeof c->stream, stream);
    if (cfg->node) {
        copy_str(c->node, sizeof c->node, cfg->node);
    } else {
        uint8_t r[8] = {0};
        if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
            memset(r, 0x5a, sizeof r);
        snprintf(c->node, sizeof c->node, "n%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
                 r[3], r[4], r[5], r[6], r[7]);
    }
    c->publish_timeout_ms = cfg->publish_timeout_ms > 0 ? cfg->publish_timeout_ms : 5000;
    const char *tp = getenv("TANDEM_CLUSTER_TRACE");
    if (tp && *tp && strlen(tp) < sizeof c->tr->path && (c->tr = calloc(1, sizeof *c->tr)))
        copy_str(c->tr->path, sizeof c->tr->path, tp); /* no memory: no trace */
    c->wake = cfg->wake;
    c->wake_ud = cfg->wake_ud;

    natsOptions *o = NULL;
    td_srv_cluster_err err = TD_SRV_CLUSTER_ERR_NOMEM;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = set_servers(o, cfg->urls);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1); /* keep trying: the broker comes back */
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, 250);
    /* No buffering while reconnecting: a publish then fails at once, so
     * "failed" means "not stored" except for the few in flight when the link
     * dropped (those time out, and may or may not be stored: the client is
     * not acknowledged and resends, which a CRDT takes as a no-op). */
    if (s == NATS_OK)
        s = natsOptions_SetReconnectBufSize(o, 1);
    /* libnats otherwise leaves a publish in its buffer for its flusher
     * thread, which waits a further millisecond for more before it writes:
     * up to 1 ms (plus a thread wake-up, much more on a busy machine) on
     * every batch's way to the other nodes and to its ACK. A batch is one
     * write now; the small cost is a syscall per publish. */
    if (s == NATS_OK)
        s = natsOptions_SetSendAsap(o, true);
    /* libnats otherwise gives every subscription (two per followed
     * document) a delivery thread of its own: the batches of several
     * documents that arrive in one read then wake one thread each, and each
     * wakes the event loop. One shared delivery thread hands them over in
     * one go; our handlers only queue an event, so none waits behind a slow
     * one. */
    if (s == NATS_OK)
        s = natsOptions_UseGlobalMessageDelivery(o, true);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(o, on_disconnected, c);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(o, on_reconnected, c);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(o, on_closed, c);
    if (s != NATS_OK) {
        err = fail(msg, msglen, TD_SRV_CLUSTER_ERR_ARG, "NATS options", s);
        goto bad;
    }
    s = natsConnection_Connect(&c->nc, o);
    if (s != NATS_OK) {
        err = fail(msg, msglen, TD_SRV_CLUSTER_ERR_CONNECT, cfg->urls, s);
        goto bad;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = c;
    jo.PublishAsync.MaxPending = 65536;
    s = natsConnection_JetStream(&c->js, c->nc, &jo);
    if (s != NATS_OK) {
        err = fail(msg, msglen, TD_SRV_CLUSTER_ERR_STREAM, "JetStream", s);
        goto bad;
    }
    err = ensure_stream(c, cfg->replicas > 0 ? cfg->replicas : 1, msg, msglen);
    if (err != TD_SRV_CLUSTER_OK)
        goto bad;
    err = ensure_owners(c, cfg->replicas > 0 ? cfg->replicas : 1, msg, msglen);
    if (err != TD_SRV_CLUSTER_OK)
        goto bad;
    natsOptions_Destroy(o);
    c->up = 1;
    *out = c;
    return TD_SRV_CLUSTER_OK;
bad:
    natsOptions_Destroy(o);
    td_srv_cluster_free(c);
    return err;
}

void td_srv_cluster_free(td_srv_cluster *c)
{
    if (!c)
        return;
    while (c->followers) {
        follower *f = c->followers;
        td_srv_cluster_unfollow(c, f->doc, f->doc_len);
    }
    if (c->owners)
        kvStore_Destroy(c->owners);
    if (c->kvjs)
        jsCtx_Destroy(c->kvjs);
    if (c->js) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 1000;
        js_PublishAsyncComplete(c->js, &po); /* let acknowledgements in flight land */
        jsCtx_Destroy(c->js);
    }
    if (c->nc) {
        natsConnection_Close(c->nc);
        /* Callbacks already queued (disconnected, closed) still run on the
         * library's thread and use c: wait for the last one. */
        pthread_mutex_lock(&c->mu);
        while (!c->closed)
            pthread_cond_wait(&c->closed_cv, &c->mu);
        pthread_mutex_unlock(&c->mu);
        natsConnection_Destroy(c->nc);
    }
    for (ev *e = c->head, *n; e; e = n) {
        n = e->next;
        ev_free(e);
    }
    if (c->tr) {
        FILE *f = fopen(c->tr->path, "a");
        if (f) {
            trace_line(f, c->node, "publish -> consumer handler", c->tr->pub, c->tr->n_pub);
            trace_line(f, c->node, "handler -> loop (hand-off)", c->tr->hand, c->tr->n_hand);
            fclose(f);
        }
        free(c->tr);
    }
    pthread_cond_destroy(&c->closed_cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

const char *td_srv_cluster_node(const td_srv_cluster *c)
{
    return c->node;
}

int td_srv_cluster_up(const td_srv_cluster *c)
{
    return c->up;
}

size_t td_srv_cluster_max_payload(const td_srv_cluster *c)
{
    int64_t n = natsConnection_GetMaxPayload(c->nc);
    return n > 0 ? (size_t)n : 0;
}

uint64_t td_srv_cluster_stream_last(const td_srv_cluster *c)
{
    return c->stream_last;
}

/* ---- publishing -------------------------------------------------------------------- */

td_srv_cluster_err td_srv_cluster_publish(td_srv_cluster *c, const char *doc, size_t doc_len,
                                          uint64_t rollup_after, const uint8_t *data,
                                          size_t len, uint64_t tag)
{
    int snapshot = rollup_after != 0;
    if (!c || !doc || !doc_len || (!data && len) || len > INT32_MAX)
        return TD_SRV_CLUSTER_ERR_ARG;
    if (!c->up)
        return TD_SRV_CLUSTER_ERR_UNAVAILABLE;
    if ((int64_t)len > natsConnection_GetMaxPayload(c->nc))
        return TD_SRV_CLUSTER_ERR_TOO_LARGE;
    char *subj = subject(c, 'd', doc, doc_len);
    if (!subj)
        return TD_SRV_CLUSTER_ERR_NOMEM;
    char id[96];
    snprintf(id, sizeof id, "%s-%" PRIx64, c->node, tag);
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subj, NULL, (const char *)data, (int)len);
    free(subj);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Tandem-Node", c->node);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
    if (s == NATS_OK && snapshot)
        s = natsMsgHeader_Set(m, "Nats-Rollup", "sub");
    if (s == NATS_OK && snapshot)
        s = natsMsgHeader_Set(m, "Tandem-Kind", "snapshot");
    if (s == NATS_OK && c->tr) {
        char t[24];
        snprintf(t, sizeof t, "%" PRId64, mono_us());
        s = natsMsgHeader_Set(m, "Tandem-Sent", t);
    }
    if (s == NATS_OK) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = c->publish_timeout_ms;
        po.ExpectLastSubjectSeq = rollup_after;
        /* On success the library owns m (and sets it to NULL). */
        s = js_PublishMsgAsync(c->js, &m, &po);
    }
    natsMsg_Destroy(m);
    if (s == NATS_OK)
        return TD_SRV_CLUSTER_OK;
    return s == NATS_NO_MEMORY ? TD_SRV_CLUSTER_ERR_NOMEM : TD_SRV_CLUSTER_ERR_UNAVAILABLE;
}

td_srv_cluster_err td_srv_cluster_presence(td_srv_cluster *c, const char *doc, size_t doc_len,
                                           const uint8_t *data, size_t len)
{
    if (!c || !doc || !doc_len || (!data && len) || len > INT32_MAX)
        return TD_SRV_CLUSTER_ERR_ARG;
    char *subj = subject(c, 'p', doc, doc_len);
    if (!subj)
        return TD_SRV_CLUSTER_ERR_NOMEM;
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subj, NULL, (const char *)data, (int)len);
    free(subj);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Tandem-Node", c->node);
    if (s == NATS_OK)
        s = natsConnection_PublishMsg(c->nc, m);
    natsMsg_Destroy(m);
    if (s == NATS_OK)
        return TD_SRV_CLUSTER_OK;
    return s == NATS_NO_MEMORY ? TD_SRV_CLUSTER_ERR_NOMEM : TD_SRV_CLUSTER_ERR_UNAVAILABLE;
}

/* ---- following ---------------------------------------------------------------------- */

static follower **find(struct td_srv_cluster *c, const char *doc, size_t len)
{
    follower **p = &c->followers;
    while (*p && !((*p)->doc_len == len && memcmp((*p)->doc, doc, len) == 0))
        p = &(*p)->next;
    return p;
}

td_srv_cluster_err td_srv_cluster_follow(td_srv_cluster *c, const char *doc, size_t doc_len,
                                         uint64_t from)
{
    if (!c || !doc || !doc_len || *find(c, doc, doc_len))
        return TD_SRV_CLUSTER_ERR_ARG;
    follower *f = calloc(1, sizeof *f + doc_len);
    char *bs = subject(c, 'd', doc, doc_len), *ps = subject(c, 'p', doc, doc_len);
    if (!f || !bs || !ps) {
        free(f);
        free(bs);
        free(ps);
        return TD_SRV_CLUSTER_ERR_NOMEM;
    }
    f->c = c;
    f->doc_len = doc_len;
    memcpy(f->doc, doc, doc_len);
    /* An ordered consumer: in stream order, no gaps (it recreates itself
     * from the last sequence it delivered if it falls behind or the
     * connection drops), no acks, nothing left on the server after. */
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = c->stream;
    so.Ordered = true;
    /* The consumer is an R1 one on a single broker: when that broker dies
     * (while this node's own link, on another broker, stays up) libnats
     * notices only by missed idle heartbeats, checked every 2 heartbeat
     * intervals, and then recreates it after the last sequence delivered.
     * With libnats' default of 5 s this document received nothing from the
     * other nodes for 10 to 20 s (cluster_brokers); 1 s makes it 2 to 4 s,
     * for one small heartbeat per second per idle document. */
    so.Config.Heartbeat = (int64_t)1000 * 1000000;
    if (from) {
        so.Config.DeliverPolicy = js_DeliverByStartSequence;
        so.Config.OptStartSeq = from;
    } else {
        so.Config.DeliverPolicy = js_DeliverAll;
    }
    jsErrCode code = 0;
    natsStatus s = js_Subscribe(&f->batches, c->js, bs, on_batch, f, NULL, &so, &code);
    if (s == NATS_OK)
        s = natsConnection_Subscribe(&f->presence, c->nc, ps, on_presence, f);
    free(bs);
    free(ps);
    if (s != NATS_OK) {
        natsSubscription_Destroy(f->batches);
        free(f);
        return s == NATS_NO_MEMORY ? TD_SRV_CLUSTER_ERR_NOMEM : TD_SRV_CLUSTER_ERR_UNAVAILABLE;
    }
    f->next = c->followers;
    c->followers = f;
    return TD_SRV_CLUSTER_OK;
}

void td_srv_cluster_unfollow(td_srv_cluster *c, const char *doc, size_t doc_len)
{
    follower **p = find(c, doc, doc_len), *f = *p;
    if (!f)
        return;
    *p = f->next;
    /* Unsubscribe waits for a handler running on this subscription: after
     * it, nothing refers to f any more. */
    natsSubscription_Unsubscribe(f->batches);
    natsSubscription_Unsubscribe(f->presence);
    natsSubscription_Destroy(f->batches);
    natsSubscription_Destroy(f->presence);
    free(f);
}

/* ---- polling ------------------------------------------------------------------------ */

void td_srv_cluster_poll(td_srv_cluster *c, const td_srv_cluster_handler *h, void *ud)
{
    pthread_mutex_lock(&c->mu);
    ev *e = c->head;
    c->head = c->tail = NULL;
    c->queued = 0;
    c->woken = 0;
    pthread_mutex_unlock(&c->mu);
    for (ev *n; e; e = n) {
        n = e->next;
        switch (e->kind) {
        case EV_PUBLISHED:
            if (h->published)
                h->published(ud, e->tag, e->err, e->seq, e->dup, e->msg);
            break;
        case EV_DELIVERED:
            if (c->tr && e->t_cb)
                trace_add(c->tr->hand, &c->tr->n_hand, mono_us() - e->t_cb);
            if (e->own && e->tag && h->echoed)
                h->echoed(ud, e->tag, e->seq);
            if (h->delivered)
                h->delivered(ud, e->doc, e->doc_len, e->seq, e->snapshot, e->node, e->data,
                             e->len);
            break;
        case EV_PRESENCE:
            if (h->presence)
                h->presence(ud, e->doc, e->doc_len, e->node, e->data, e->len);
            break;
        case EV_BROKER:
            if (h->broker)
                h->broker(ud, e->up);
            break;
        default:
            break;
        }
        ev_free(e);
    }
}

/* ---- authorship ---------------------------------------------------------------------- */

td_srv_cluster_err td_srv_cluster_claim(td_srv_cluster *c, const char *doc, size_t doc_len,
                                        uint64_t agent, const char *owner, size_t owner_len,
                                        int *granted)
{
    *granted = 0;
    if (!c->owners || owner_len > INT32_MAX)
        return TD_SRV_CLUSTER_ERR_ARG;
    if (!c->up)
        return TD_SRV_CLUSTER_ERR_UNAVAILABLE;
    /* The subject helper gives "<stream>.k.<hex id>"; the key is what
     * follows the stream's name, plus the agent. */
    char *subj = subject(c, 'k', doc, doc_len);
    if (!subj)
        return TD_SRV_CLUSTER_ERR_NOMEM;
    size_t hl = strlen(subj) - strlen(c->stream) - 3;
    char *key = malloc(hl + 18);
    if (!key) {
        free(subj);
        return TD_SRV_CLUSTER_ERR_NOMEM;
    }
    snprintf(key, hl + 18, "%s.%016" PRIx64, subj + strlen(c->stream) + 3, agent);
    free(subj);

    td_srv_cluster_err err = TD_SRV_CLUSTER_OK;
    if (kvStore_Create(NULL, c->owners, key, owner, (int)owner_len) == NATS_OK) {
        *granted = 1;
    } else {
        /* Taken already (or the create did not get through): the value
         * there decides. */
        kvEntry *e = NULL;
        natsStatus s = kvStore_Get(&e, c->owners, key);
        if (s == NATS_OK) {
            *granted = kvEntry_ValueLen(e) == (int)owner_len &&
                       memcmp(kvEntry_Value(e), owner, owner_len) == 0;
            kvEntry_Destroy(e);
        } else {
            err = TD_SRV_CLUSTER_ERR_UNAVAILABLE; /* nothing bound: retry */
        }
    }
    free(key);
    return err;
}

uint64_t td_srv_cluster_lag(td_srv_cluster *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t n = c->queued;
    pthread_mutex_unlock(&c->mu);
    for (const follower *f = c->followers; f; f = f->next)
        n += atomic_load(&f->pending);
    return n;
}
