/*
 * srv_hocus.c -- the Hocuspocus front-end (srv_hocus.h).
 *
 * One socket carries several documents. Every message starts with the
 * document's address as the provider names it: the document name, or with
 * `sessionAwareness` the name, a NUL and a session id; the document id is
 * the name. Each address is a client of the document service of its own
 * (its token, its subscription, its awareness), so two providers of one
 * document on one socket stay apart, as on a Hocuspocus server.
 *
 * Per address: Auth (the token) comes first, as the stock provider sends
 * it; it is answered "Authenticated" with scope "read-write" or
 * "readonly", or "PermissionDenied" with the reason. Then sync step 1 is
 * the subscription (answered with step 2 and the server's step 1), step 2
 * and updates go to the service, and each is answered SyncStatus(1) once
 * durable -- so the provider's unsynced count reaches 0 only when its edits
 * are on disk. A read-only address gets SyncStatus(0) for every write that
 * would change the document, and nothing of it is applied. Close (type 7)
 * ends the address. Stateless messages are accepted and dropped (tandem has
 * no server hooks to hand them to).
 *
 * A refusal the provider repairs by resyncing (store failure, busy,
 * shutting down) closes the socket: the provider reconnects, and its
 * step 2 carries what the server lacks. Malformed input closes the socket
 * with 1007 (1003 for an unknown type).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv_hocus.h"
#include "srv_yaware.h"

#define PEND_MAX_MSGS 4096
#define PEND_MAX_BYTES (16u << 20)
/* The provider reconnects after 30 s without a message. */
#define KEEPALIVE_US (10 * LWS_US_PER_SEC)
#define HOCUS_ID_BASE ((uint64_t)2 << 62)
/* A document name, a NUL and a session id. */
#define KEY_MAX (TD_SRV_DOC_MAX + 1 + 64)
/* Hocuspocus's application-level ping and pong: one byte, no address. */
#define HP_PING 9
#define HP_PONG 10

typedef struct pend {
    struct pend *next;
    size_t len;
    uint8_t data[];
} pend;

struct hsess;

/* One address on the socket. */
typedef struct hdoc {
    td_srv_client client; /* first: the service's callbacks find it */
    struct hsess *s;
    struct hdoc *next;
    char key[KEY_MAX + 1];
    size_t key_len, doc_len;
    td_srv_token tok;
    td_srv_sub *sub;
    uint64_t next_batch;
    td_srv_yaware aw;
    pend *held_head, *held_tail, *ready_head, *ready_tail;
    int in_replay;
    struct hdoc *replay_next;
    /* Refused as a document of the other kind: the kind is durable, so
     * further messages are dropped rather than each subscribing (loading
     * the document) to be refused again. A new Auth tries again. */
    int wrong_kind;
} hdoc;

typedef struct hsess {
    td_srv_conn conn; /* first: the conn's handler gets &conn */
    td_srv_hocus *h;
    hdoc *docs;
    size_t ndocs;
    size_t pend_n, pend_bytes;
    int64_t last_sent_us;
} hsess;

struct td_srv_hocus {
    td_srv_hocus_env env;
    uint64_t next_id;
    hdoc *replay_head;
};

#define HDOC(c) ((hdoc *)(void *)(c))

/* ---- sending ------------------------------------------------------------------------ */

static void send_wbuf(hsess *s, td_srv_wbuf *w)
{
    td_srv_frame *f = td_srv_frame_from(w);
    if (!f) {
        td_srv_conn_close_with(&s->conn, 1011);
        return;
    }
    td_srv_conn_send(&s->conn, f);
    td_srv_frame_unref(f);
    s->last_sent_us = td_srv_now_us();
}

/* A buffer that starts with d's address. */
static void start(td_srv_wbuf *w, const hdoc *d)
{
    td_srv_wbuf_init(w, LWS_PRE);
    td_srv_y_put_string(w, d->key, d->key_len);
}

static void send_sync(hdoc *d, td_srv_y_sync step, const uint8_t *p, size_t len)
{
    td_srv_wbuf w;
    start(&w, d);
    td_srv_y_put_sync(&w, step, p, len);
    send_wbuf(d->s, &w);
}

static void send_status(hdoc *d, int applied)
{
    td_srv_wbuf w;
    start(&w, d);
    td_srv_put_varint(&w, TD_SRV_Y_SYNC_STATUS);
    td_srv_put_varint(&w, applied ? 1 : 0);
    send_wbuf(d->s, &w);
}

static void send_auth(hsess *s, const char *key, size_t key_len, uint64_t sub, const char *text)
{
    td_srv_wbuf w;
    td_srv_wbuf_init(&w, LWS_PRE);
    td_srv_y_put_string(&w, key, key_len);
    td_srv_y_put_auth(&w, sub, text, strlen(text));
    send_wbuf(s, &w);
}

static void denied(hsess *s, const char *key, size_t key_len, td_srv_code code,
                   const char *why)
{
    char text[300];
    if (code < TD_SRV_E_COUNT)
        s->h->env.m->errors[code]++;
    snprintf(text, sizeof text, "%s: %s", td_srv_code_name(code), why);
    send_auth(s, key, key_len, TD_SRV_HP_AUTH_DENIED, text);
}

static void send_awareness(hdoc *d, td_srv_wbuf *entries, uint64_t n)
{
    td_srv_wbuf w;
    if (entries->oom) {
        td_srv_wbuf_free(entries);
        td_srv_conn_close_with(&d->s->conn, 1011);
        return;
    }
    if (n) {
        start(&w, d);
        td_srv_y_put_awareness(&w, n, td_srv_wbuf_msg(entries), entries->len);
        send_wbuf(d->s, &w);
    }
    td_srv_wbuf_free(entries);
}

static void close_with(hsess *s, td_srv_code code, int close)
{
    if (code < TD_SRV_E_COUNT)
        s->h->env.m->errors[code]++;
    td_srv_conn_close_with(&s->conn, close);
}

/* ---- the subscriber interface ------------------------------------------------------ */

static void held_release(hdoc *d);

static void on_sync(td_srv_sub *u, const uint8_t *diff, size_t dlen, const uint8_t *vv,
                    size_t vv_len)
{
    hdoc *d = HDOC(u->client);
    send_sync(d, TD_SRV_Y_STEP2, diff, dlen);
    send_sync(d, TD_SRV_Y_STEP1, vv, vv_len);
    held_release(d);
}

static void on_ack(td_srv_client *c, const char *doc, size_t doc_len, uint64_t batch_id)
{
    (void)doc, (void)doc_len, (void)batch_id;
    send_status(HDOC(c), 1);
}

/* Refusals that the provider repairs by reconnecting: the socket closes
 * with this code. Any other refusal is told to the address
 * (PermissionDenied) and ends its subscription. */
static const struct {
    td_srv_code code;
    int close;
} closes[] = {
    {TD_SRV_E_STORE_FAILED, 1011}, {TD_SRV_E_BUSY, 1013},  {TD_SRV_E_SHUTTING_DOWN, 1012},
    {TD_SRV_E_UNAVAILABLE, 1013},
    {TD_SRV_E_INTERNAL, 1011},     {TD_SRV_E_INVALID_BATCH, 1007},
    {TD_SRV_E_TOO_LARGE, 1009},    {TD_SRV_E_LIMIT, 1008}, {TD_SRV_E_BAD_MESSAGE, 1007},
};

static void on_error(td_srv_client *c, td_srv_code code, const char *doc, size_t doc_len,
                     uint64_t batch_id, const char *msg)
{
    hdoc *d = HDOC(c);
    (void)doc, (void)doc_len;
    for (size_t i = 0; i < sizeof closes / sizeof closes[0]; i++)
        if (closes[i].code == code) {
            if (batch_id)
                send_status(d, 0);
            close_with(d->s, code, closes[i].close);
            return;
        }
    if (code == TD_SRV_E_WRONG_KIND)
        d->wrong_kind = 1;
    denied(d->s, d->key, d->key_len, code, msg);
}

static void on_broadcast(td_srv_sub *u, td_srv_bcast *b)
{
    hdoc *d = HDOC(u->client);
    const void *pos = NULL;
    const uint8_t *batch;
    size_t len;
    while (td_srv_bcast_next(b, &pos, &batch, &len))
        send_sync(d, TD_SRV_Y_UPDATE, batch, len);
}

static void on_peers(td_srv_sub *u, td_srv_peers *ps)
{
    hdoc *d = HDOC(u->client);
    td_srv_wbuf entries;
    uint64_t n;
    td_srv_wbuf_init(&entries, 0);
    if (td_srv_yaware_peers(&d->aw, ps, &entries, &n) < 0)
        entries.oom = 1;
    send_awareness(d, &entries, n);
}

static void on_leave(td_srv_sub *u, uint64_t peer)
{
    hdoc *d = HDOC(u->client);
    td_srv_wbuf entries;
    uint64_t n;
    td_srv_wbuf_init(&entries, 0);
    td_srv_yaware_leave(&d->aw, peer, &entries, &n);
    send_awareness(d, &entries, n);
}

static void pend_free(hsess *s, pend *p)
{
    while (p) {
        pend *nx = p->next;
        s->pend_n--;
        s->pend_bytes -= p->len;
        free(p);
        p = nx;
    }
}

static void on_dropped(td_srv_sub *u)
{
    hdoc *d = HDOC(u->client);
    pend_free(d->s, d->held_head);
    d->held_head = d->held_tail = NULL;
    d->sub = NULL;
}

static const td_srv_client_ops hocus_ops = {on_sync, on_ack,   on_error,  on_broadcast,
                                            on_peers, on_leave, on_dropped};

/* ---- messages held back ------------------------------------------------------------ */

static int held_defer(hdoc *d, const uint8_t *raw, size_t len)
{
    hsess *s = d->s;
    pend *p;
    if (!d->held_head && !(d->sub && d->sub->waiting))
        return 0;
    if (s->pend_n && (s->pend_n >= PEND_MAX_MSGS || s->pend_bytes + len > PEND_MAX_BYTES)) {
        close_with(s, TD_SRV_E_BUSY, 1013);
        return 1;
    }
    p = malloc(sizeof *p + len);
    if (!p) {
        close_with(s, TD_SRV_E_INTERNAL, 1011);
        return 1;
    }
    p->next = NULL;
    p->len = len;
    memcpy(p->data, raw, len);
    if (d->held_tail)
        d->held_tail->next = p;
    else
        d->held_head = p;
    d->held_tail = p;
    s->pend_n++;
    s->pend_bytes += len;
    return 1;
}

static void held_release(hdoc *d)
{
    td_srv_hocus *h = d->s->h;
    if (!d->held_head)
        return;
    if (d->ready_tail)
        d->ready_tail->next = d->held_head;
    else
        d->ready_head = d->held_head;
    d->ready_tail = d->held_tail;
    d->held_head = d->held_tail = NULL;
    if (!d->in_replay) {
        d->in_replay = 1;
        d->replay_next = h->replay_head;
        h->replay_head = d;
    }
}

/* ---- addresses -------------------------------------------------------------------------- */

static hdoc *doc_find(hsess *s, const uint8_t *key, size_t len)
{
    for (hdoc *d = s->docs; d; d = d->next)
        if (d->key_len == len && memcmp(d->key, key, len) == 0)
            return d;
    return NULL;
}

/* Ends an address: its subscription, its awareness, what it held back. */
static void doc_end(hsess *s, hdoc *d)
{
    td_srv_hocus *h = s->h;
    for (hdoc **p = &s->docs; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            break;
        }
    s->ndocs--;
    pend_free(s, d->held_head);
    pend_free(s, d->ready_head);
    td_srv_client_close(h->env.svc, &d->client);
    if (d->in_replay)
        for (hdoc **p = &h->replay_head; *p; p = &(*p)->replay_next)
            if (*p == d) {
                *p = d->replay_next;
                break;
            }
    td_srv_yaware_free(&d->aw);
    free(d);
}

/* The token of an Auth message for the document `doc`, or the open
 * server's grant. */
static td_srv_code check_token(const td_srv_hocus *h, const char *doc, size_t doc_len,
                               const uint8_t *tok, size_t len, td_srv_token *out,
                               const char **why)
{
    td_srv_code rc;
    memset(out, 0, sizeof *out);
    if (!h->env.pk) {
        out->rights = TD_SRV_RIGHT_READ | TD_SRV_RIGHT_WRITE | TD_SRV_RIGHT_PRESENCE;
        return TD_SRV_E_OK;
    }
    if (!len) {
        *why = "this server requires a token";
        return TD_SRV_E_AUTH_REQUIRED;
    }
    rc = td_srv_token_verify((const char *)tok, len, h->env.pk, (uint64_t)time(NULL), out);
    if (rc != TD_SRV_E_OK) {
        *why = rc == TD_SRV_E_TOKEN_EXPIRED ? "token expired" : "token malformed or forged";
        return rc;
    }
    if (!(out->rights & TD_SRV_RIGHT_READ) ||
        !td_srv_pattern_match(out->pattern, out->pattern_len, doc, doc_len)) {
        *why = "the token does not grant this document";
        return TD_SRV_E_FORBIDDEN;
    }
    return TD_SRV_E_OK;
}

/* An Auth message: a new address (or a new token for one). */
static void on_auth(hsess *s, const td_srv_ymsg *m)
{
    td_srv_hocus *h = s->h;
    const uint8_t *nul = memchr(m->doc, 0, m->doc_len);
    size_t doc_len = nul ? (size_t)(nul - m->doc) : m->doc_len;
    const char *why = "";
    td_srv_token tok;
    td_srv_code rc;
    hdoc *d = doc_find(s, m->doc, m->doc_len);

    if (m->sub != TD_SRV_HP_AUTH_TOKEN) {
        close_with(s, TD_SRV_E_BAD_MESSAGE, 1007); /* only servers send the others */
        return;
    }
    if (m->doc_len > KEY_MAX || !td_srv_doc_id_valid(m->doc, doc_len)) {
        denied(s, (const char *)m->doc, m->doc_len, TD_SRV_E_BAD_DOC_ID,
               "the document name is not a valid document id");
        return;
    }
    rc = check_token(h, (const char *)m->doc, doc_len, m->data, m->len, &tok, &why);
    if (rc != TD_SRV_E_OK) {
        denied(s, (const char *)m->doc, m->doc_len, rc, why);
        if (d)
            doc_end(s, d);
        return;
    }
    if (!d) {
        if (s->ndocs >= h->env.cfg->max_subs) {
            denied(s, (const char *)m->doc, m->doc_len, TD_SRV_E_LIMIT,
                   "too many documents on this connection");
            return;
        }
        if (!(d = calloc(1, sizeof *d))) {
            close_with(s, TD_SRV_E_INTERNAL, 1011);
            return;
        }
        td_srv_client_init(&d->client, &hocus_ops);
        d->client.id = HOCUS_ID_BASE + ++h->next_id;
        d->client.kind = TD_STORE_KIND_YJS;
        d->s = s;
        memcpy(d->key, m->doc, m->doc_len);
        d->key_len = m->doc_len;
        d->doc_len = doc_len;
        d->next = s->docs;
        s->docs = d;
        s->ndocs++;
        if (td_srv_yaware_attach(&d->aw, h->env.rooms, d->key, d->doc_len, d->client.id) < 0) {
            close_with(s, TD_SRV_E_INTERNAL, 1011);
            return;
        }
    }
    d->tok = tok;
    d->wrong_kind = 0;
    d->client.user = d->tok.user;
    d->client.user_len = d->tok.user_len;
    d->client.author = d->tok.user;
    d->client.author_len = d->tok.user_len;
    d->client.author_durable = h->env.pk != NULL;
    td_srv_conn_authenticated(&s->conn);
    send_auth(s, d->key, d->key_len, TD_SRV_HP_AUTH_OK,
              (tok.rights & TD_SRV_RIGHT_WRITE) ? "read-write" : "readonly");
}

static void subscribe(hdoc *d, const uint8_t *sv, size_t len)
{
    td_srv_service *svc = d->s->h->env.svc;
    td_srv_subscribe(svc, &d->client, (const uint8_t *)d->key, d->doc_len, sv, len);
    d->sub = td_srv_sub_find(&d->client, (const uint8_t *)d->key, d->doc_len);
}

static void on_write(hdoc *d, const td_srv_ymsg *m)
{
    hsess *s = d->s;
    if (!(d->tok.rights & TD_SRV_RIGHT_WRITE)) {
        /* Nothing of it is applied. An empty step 2 (the provider has
         * nothing the server lacks) changes nothing: that one is "saved". */
        s->h->env.m->errors[TD_SRV_E_READ_ONLY]++;
        send_status(d, m->sub == TD_SRV_Y_STEP2 && m->len == 2 && m->data[0] == 0 &&
                           m->data[1] == 0);
        return;
    }
    if (m->len > s->h->env.cfg->max_batch) {
        send_status(d, 0);
        close_with(s, TD_SRV_E_TOO_LARGE, 1009);
        return;
    }
    s->h->env.m->proto_updates[TD_SRV_PROTO_HOCUS]++;
    td_srv_update(s->h->env.svc, d->sub, ++d->next_batch, m->data, m->len);
}

static void on_awareness(hdoc *d, const td_srv_ymsg *m)
{
    hsess *s = d->s;
    size_t count;
    const char *why = "";
    td_srv_wbuf state;
    td_srv_code rc;
    if (!(d->tok.rights & TD_SRV_RIGHT_PRESENCE))
        return;
    rc = td_srv_yaw_check(m->data, m->len, TD_SRV_YAW_OWN_MAX, s->h->env.cfg->max_presence,
                          &count, &why);
    if (rc != TD_SRV_E_OK) {
        close_with(s, rc, rc == TD_SRV_E_BAD_MESSAGE ? 1007 : 1009);
        return;
    }
    if (td_srv_yaware_take(&d->aw, m->data, m->len, &state) < 0) {
        td_srv_wbuf_free(&state);
        close_with(s, TD_SRV_E_INTERNAL, 1011);
        return;
    }
    td_srv_presence_update(s->h->env.svc, d->sub, state.len ? td_srv_wbuf_msg(&state) : NULL,
                           state.len);
    td_srv_wbuf_free(&state);
}

/* A message for an authenticated address (also a replay). */
static void doc_dispatch(hdoc *d, const td_srv_ymsg *m, const uint8_t *raw, size_t len)
{
    hsess *s = d->s;
    if (d->tok.expires && (uint64_t)time(NULL) >= d->tok.expires) {
        /* (The socket, not just the address: a replay may be walking d.) */
        denied(s, d->key, d->key_len, TD_SRV_E_TOKEN_EXPIRED, "token expired");
        td_srv_conn_close_with(&s->conn, 1008);
        return;
    }
    if (d->wrong_kind)
        return;
    if (held_defer(d, raw, len))
        return;
    if (m->type == TD_SRV_Y_SYNC && m->sub == TD_SRV_Y_STEP1) {
        subscribe(d, m->data, m->len);
        return;
    }
    if (!d->sub) {
        subscribe(d, NULL, 0);
        if (!d->sub || held_defer(d, raw, len))
            return;
    }
    switch (m->type) {
    case TD_SRV_Y_SYNC:
        on_write(d, m);
        break;
    case TD_SRV_Y_AWARENESS:
        on_awareness(d, m);
        break;
    case TD_SRV_Y_QUERY_AWARENESS:
        td_srv_presence_query(s->h->env.svc, d->sub);
        break;
    default:
        break; /* Stateless: no server hooks to give it to */
    }
}

static void dispatch(hsess *s, const uint8_t *raw, size_t len)
{
    td_srv_ymsg m;
    td_srv_code rc;
    hdoc *d;
    if (s->conn.close_code)
        return;
    if (len == 1 && raw[0] == HP_PONG)
        return;
    rc = td_srv_hpmsg_decode(raw, len, &m, NULL);
    if (rc != TD_SRV_E_OK) {
        close_with(s, rc, rc == TD_SRV_E_UNKNOWN_TYPE ? 1003 : 1007);
        return;
    }
    /* What only a server sends. */
    if (m.type == TD_SRV_Y_SYNC_STATUS || m.type == TD_SRV_Y_BROADCAST_STATELESS ||
        m.type == TD_SRV_Y_SYNC_REPLY) {
        close_with(s, TD_SRV_E_UNKNOWN_TYPE, 1003);
        return;
    }
    if (m.type == TD_SRV_Y_AUTH) {
        on_auth(s, &m);
        return;
    }
    d = doc_find(s, m.doc, m.doc_len);
    if (m.type == TD_SRV_Y_CLOSE) {
        if (d)
            doc_end(s, d);
        return;
    }
    if (!d) {
        denied(s, (const char *)m.doc, m.doc_len, TD_SRV_E_AUTH_REQUIRED,
               "send Auth for this document first");
        return;
    }
    doc_dispatch(d, &m, raw, len);
}

static void on_message(td_srv_conn *c, const uint8_t *buf, size_t len)
{
    hsess *s = (hsess *)(void *)c;
    if (s->h->replay_head)
        td_srv_hocus_replay(s->h);
    s->h->env.m->proto_msgs_in[TD_SRV_PROTO_HOCUS]++;
    dispatch(s, buf, len);
}

void td_srv_hocus_replay(td_srv_hocus *h)
{
    while (h->replay_head) {
        hdoc *d = h->replay_head;
        h->replay_head = d->replay_next;
        d->replay_next = NULL;
        d->in_replay = 0;
        while (d->ready_head && !d->s->conn.close_code) {
            pend *p = d->ready_head;
            td_srv_ymsg m;
            d->ready_head = p->next;
            if (!d->ready_head)
                d->ready_tail = NULL;
            d->s->pend_n--;
            d->s->pend_bytes -= p->len;
            /* It decoded when it arrived. */
            if (td_srv_hpmsg_decode(p->data, p->len, &m, NULL) == TD_SRV_E_OK)
                doc_dispatch(d, &m, p->data, p->len);
            free(p);
        }
    }
}

/* ---- life cycle ----------------------------------------------------------------------- */

static void on_timer(td_srv_conn *c)
{
    hsess *s = (hsess *)(void *)c;
    if (td_srv_now_us() - s->last_sent_us >= KEEPALIVE_US - LWS_US_PER_SEC) {
        static const uint8_t ping[] = {HP_PING};
        td_srv_wbuf w;
        td_srv_wbuf_init(&w, LWS_PRE);
        td_srv_put_raw(&w, ping, sizeof ping);
        send_wbuf(s, &w);
    }
    lws_set_timer_usecs(c->wsi, KEEPALIVE_US);
}

static void on_closed(td_srv_conn *c)
{
    hsess *s = (hsess *)(void *)c;
    while (s->docs)
        doc_end(s, s->docs);
    s->h->env.m->proto_conns[TD_SRV_PROTO_HOCUS]--;
    free(s);
}

static const td_srv_conn_handler hocus_handler = {on_message, on_timer, on_closed};

td_srv_conn *td_srv_hocus_open(td_srv_hocus *h, struct lws *wsi)
{
    hsess *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->h = h;
    td_srv_conn_open(h->env.conns, &s->conn, wsi, &hocus_handler);
    s->last_sent_us = td_srv_now_us();
    h->env.m->proto_conns[TD_SRV_PROTO_HOCUS]++;
    h->env.m->proto_conns_total[TD_SRV_PROTO_HOCUS]++;
    lws_set_timer_usecs(wsi, KEEPALIVE_US);
    return &s->conn;
}

int td_srv_hocus_new(td_srv_hocus **out, const td_srv_hocus_env *env)
{
    td_srv_hocus *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    h->env = *env;
    *out = h;
    return 0;
}

void td_srv_hocus_free(td_srv_hocus *h)
{
    free(h);
}
