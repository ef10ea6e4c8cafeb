/*
 * srv_native.c -- the native protocol's front-end (srv_native.h): sessions,
 * HELLO and tokens, the dispatch of every client message, and the encoding
 * of everything the service sends back.
 *
 * Messages held back: a subscription waiting for its SYNC (its document is
 * loading) holds back the session's UPDATE, PRESENCE, UNSUBSCRIBE (and,
 * behind those, SUBSCRIBE) for that document; when the SYNC goes out they
 * move, in order, to the session's ready list, which td_srv_native_replay()
 * runs once the loader's results are in. Messages on one connection thus
 * keep their order per document. A resync SUBSCRIBE with nothing held back
 * only replaces the state the SYNC will answer.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv_native.h"

/* One client message held back while its document loads. */
typedef struct pend {
    struct pend *next;
    size_t len;
    uint8_t data[]; /* the whole message, as received */
} pend;

/* Bound on the messages held back per connection (PROTOCOL.md section 4):
 * past it, a message for a loading document gets ERROR busy. One message is
 * always accepted, whatever its size, when nothing is held back. */
#define PEND_MAX_MSGS 4096
#define PEND_MAX_BYTES (16u << 20)

typedef struct session {
    td_srv_conn conn;     /* first: the conn's handler gets &conn */
    td_srv_client client;
    td_srv_native *n;
    int hello;   /* a HELLO was accepted */
    uint64_t version; /* the protocol version of the accepted HELLO */
    int expired; /* the token expired; writes refused */
    td_srv_token tok;
    size_t pend_n, pend_bytes; /* over every held-back message */
    pend *ready_head, *ready_tail; /* released, to replay in order */
    int in_replay_list;
    struct session *replay_next;
} session;

struct td_srv_native {
    td_srv_native_env env;
    uint64_t next_id;
    session *replay_head;
};

#define SESSION_OF_CLIENT(c) ((session *)(void *)((char *)(c) - offsetof(session, client)))

/* ---- sending ------------------------------------------------------------------------ */

/* Version 2 (PROTOCOL.md section 3.9): a large message goes out deflated
 * when that makes it shorter. Returns a new frame holding f deflated, or
 * NULL when that does not pay (or memory ran out): f then goes plain.
 * Nothing changes for version 1 connections. */
static td_srv_frame *deflated_frame(const td_srv_frame *f)
{
    td_srv_wbuf w;
    int rc;
    td_srv_wbuf_init(&w, LWS_PRE);
    rc = td_srv_msg_deflate(f->buf + LWS_PRE, f->len, &w);
    if (rc <= 0) {
        td_srv_wbuf_free(&w);
        return NULL;
    }
    return td_srv_frame_from(&w);
}

static void count_deflated(session *s, const td_srv_frame *plain, const td_srv_frame *d)
{
    s->n->env.m->deflated_msgs_out++;
    s->n->env.m->deflate_saved_bytes += plain->len - d->len;
}

/* Sends f (the caller keeps its reference) on s, deflated if s speaks
 * version 2 and it pays. For a broadcast, *deflated caches the deflated
 * copy for its other version 2 subscribers and *tried says it was tried
 * (so an incompressible message is tried once); both NULL: just this one. */
static void send_frame(session *s, td_srv_frame *f, td_srv_frame **deflated, int *tried)
{
    td_srv_frame *own = NULL, *d;
    if (s->version < 2 || f->len < TD_SRV_DEFLATE_MIN) {
        td_srv_conn_send(&s->conn, f);
        return;
    }
    if (!deflated) {
        deflated = &own;
        tried = NULL;
    }
    if (!*deflated && !(tried && *tried)) {
        *deflated = deflated_frame(f);
        if (tried)
            *tried = 1;
    }
    d = *deflated;
    if (d) {
        count_deflated(s, f, d);
        td_srv_conn_send(&s->conn, d);
    } else {
        td_srv_conn_send(&s->conn, f);
    }
    td_srv_frame_unref(own);
}

static void send_msg(session *s, const td_srv_msg *m)
{
    td_srv_wbuf w;
    td_srv_frame *f;
    td_srv_wbuf_init(&w, LWS_PRE);
    td_srv_msg_encode(m, &w);
    f = td_srv_frame_from(&w);
    if (!f) {
        /* Out of memory: rather than a silent gap in what the client was
         * told (an ACK, a SYNC), the connection ends (1011) and it resyncs. */
        td_srv_conn_close_with(&s->conn, 1011);
        return;
    }
    send_frame(s, f, NULL, NULL);
    td_srv_frame_unref(f);
}

static void send_error(session *s, td_srv_code code, const char *doc, size_t doc_len,
                       uint64_t batch_id, const char *text)
{
    td_srv_msg m;
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_ERROR;
    m.code = code;
    m.doc.ptr = (const uint8_t *)doc;
    m.doc.len = doc ? doc_len : 0;
    m.batch_id = batch_id;
    m.message.ptr = (const uint8_t *)text;
    m.message.len = strlen(text);
    if (code < TD_SRV_E_COUNT)
        s->n->env.m->errors[code]++;
    send_msg(s, &m);
}

static void send_errorf(session *s, td_srv_code code, const td_srv_msg *about,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void send_errorf(session *s, td_srv_code code, const td_srv_msg *about,
                        const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    send_error(s, code, about ? (const char *)about->doc.ptr : NULL,
               about ? about->doc.len : 0, about ? about->batch_id : 0, text);
}

/* A message of `type` about u's document. */
static void doc_msg(td_srv_msg *m, td_srv_msg_type type, const td_srv_sub *u)
{
    size_t len;
    memset(m, 0, sizeof *m);
    m->type = type;
    m->doc.ptr = (const uint8_t *)td_srv_sub_doc(u, &len);
    m->doc.len = len;
}

/* A REMOTE or PRESENCE frame: n items already written to `items` (which
 * this frees). NULL when there is nothing to send. */
static td_srv_frame *list_frame(td_srv_msg_type type, const td_srv_sub *u, uint64_t n,
                                td_srv_wbuf *items)
{
    td_srv_frame *f = NULL;
    if (n && !items->oom) {
        td_srv_msg m;
        td_srv_wbuf w;
        doc_msg(&m, type, u);
        m.count = n;
        m.items.ptr = td_srv_wbuf_msg(items);
        m.items.len = items->len;
        td_srv_wbuf_init(&w, LWS_PRE);
        td_srv_msg_encode(&m, &w);
        f = td_srv_frame_from(&w);
    }
    td_srv_wbuf_free(items);
    return f;
}

/* What a broadcast's subscribers share: the message as encoded and, made
 * for the first version 2 subscriber, its deflated copy. */
typedef struct shared_frames {
    td_srv_frame *plain, *deflated;
    int tried;
} shared_frames;

static void shared_frames_free(void *p)
{
    shared_frames *sf = p;
    td_srv_frame_unref(sf->plain);
    td_srv_frame_unref(sf->deflated);
    free(sf);
}

/* Sends the frame `make` builds: once per broadcast for every subscriber
 * that shares it (kept in *shared), or just for this one. */
static void send_shared(session *s, td_srv_frame *(*make)(const td_srv_sub *, void *),
                        const td_srv_sub *u, void *what, int own, void **shared,
                        void (**shared_free)(void *))
{
    td_srv_frame *f;
    shared_frames *sf;
    if (own) {
        f = make(u, what);
        if (f)
            send_frame(s, f, NULL, NULL);
        else
            td_srv_conn_send(&s->conn, f);
        td_srv_frame_unref(f);
        return;
    }
    if (!*shared) {
        sf = calloc(1, sizeof *sf);
        f = make(u, what);
        if (!sf) {
            td_srv_conn_send(&s->conn, f);
            td_srv_frame_unref(f);
            return;
        }
        sf->plain = f;
        *shared = sf;
        *shared_free = shared_frames_free;
    }
    sf = *shared;
    if (sf->plain)
        send_frame(s, sf->plain, &sf->deflated, &sf->tried);
    else
        td_srv_conn_send(&s->conn, NULL);
}

/* ---- the subscriber interface ------------------------------------------------------- */

static void held_release(td_srv_sub *u);

static void on_sync(td_srv_sub *u, const uint8_t *diff, size_t dlen, const uint8_t *vv,
                    size_t vv_len)
{
    session *s = SESSION_OF_CLIENT(u->client);
    td_srv_msg m;
    held_release(u);
    doc_msg(&m, TD_SRV_MSG_SYNC, u);
    m.batch.ptr = diff;
    m.batch.len = dlen;
    m.vv.ptr = vv;
    m.vv.len = vv_len;
    send_msg(s, &m);
}

static void on_ack(td_srv_client *c, const char *doc, size_t doc_len, uint64_t batch_id)
{
    td_srv_msg m;
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_ACK;
    m.doc.ptr = (const uint8_t *)doc;
    m.doc.len = doc_len;
    m.batch_id = batch_id;
    send_msg(SESSION_OF_CLIENT(c), &m);
}

static void on_error(td_srv_client *c, td_srv_code code, const char *doc, size_t doc_len,
                     uint64_t batch_id, const char *msg)
{
    send_error(SESSION_OF_CLIENT(c), code, doc, doc_len, batch_id, msg);
}

static td_srv_frame *remote_frame(const td_srv_sub *u, void *what)
{
    const td_srv_bcast *b = what;
    td_srv_wbuf items;
    const void *pos = NULL;
    const uint8_t *batch;
    size_t len;
    uint64_t n = 0;
    td_srv_wbuf_init(&items, 0);
    while (td_srv_bcast_next(b, &pos, &batch, &len)) {
        td_srv_item_put_batch(&items, batch, len);
        n++;
    }
    return list_frame(TD_SRV_MSG_REMOTE, u, n, &items);
}

static void on_broadcast(td_srv_sub *u, td_srv_bcast *b)
{
    send_shared(SESSION_OF_CLIENT(u->client), remote_frame, u, b, b->skip != NULL,
                &b->shared, &b->shared_free);
}

static td_srv_frame *peers_frame(const td_srv_sub *u, void *what)
{
    const td_srv_peers *ps = what;
    td_srv_wbuf items;
    void *pos = NULL;
    td_srv_peer p;
    uint64_t n = 0;
    td_srv_wbuf_init(&items, 0);
    while (td_srv_peers_next(ps, &pos, &p)) {
        td_srv_item_put_peer(&items, p.id, p.agent, p.user, p.user_len, p.state, p.len);
        n++;
    }
    return list_frame(TD_SRV_MSG_PEERS, u, n, &items);
}

static void on_peers(td_srv_sub *u, td_srv_peers *ps)
{
    send_shared(SESSION_OF_CLIENT(u->client), peers_frame, u, ps, ps->skip != NULL,
                &ps->shared, &ps->shared_free);
}

static void on_leave(td_srv_sub *u, uint64_t peer)
{
    td_srv_msg m;
    doc_msg(&m, TD_SRV_MSG_LEAVE, u);
    m.session = peer;
    send_msg(SESSION_OF_CLIENT(u->client), &m);
}

static void on_dropped(td_srv_sub *u)
{
    held_release(u); /* processed after this: not subscribed any more */
}

static const td_srv_client_ops native_ops = {on_sync, on_ack,   on_error,  on_broadcast,
                                             on_peers, on_leave, on_dropped};

/* ---- messages held back ------------------------------------------------------------- */

/* Holds m back if its subscription is still waiting for its SYNC (or holds
 * back earlier messages): returns 1 if m was taken care of (held back, or
 * refused past the bound), 0 if the caller processes it now. */
static int held_defer(session *s, td_srv_sub *u, const td_srv_msg *m, const uint8_t *raw,
                      size_t len)
{
    pend *p;
    if (!u->held.head && !(u->waiting && m->type != TD_SRV_MSG_SUBSCRIBE))
        return 0;
    if (s->pend_n && (s->pend_n >= PEND_MAX_MSGS || s->pend_bytes + len > PEND_MAX_BYTES)) {
        send_errorf(s, TD_SRV_E_BUSY, m, "%zu messages wait for documents to load; resend later",
                    s->pend_n);
        return 1;
    }
    p = malloc(sizeof *p + len);
    if (!p) {
        send_errorf(s, TD_SRV_E_INTERNAL, m, "out of memory");
        return 1;
    }
    p->next = NULL;
    p->len = len;
    memcpy(p->data, raw, len);
    if (u->held.tail)
        ((pend *)u->held.tail)->next = p;
    else
        u->held.head = p;
    u->held.tail = p;
    s->pend_n++;
    s->pend_bytes += len;
    return 1;
}

/* u's held-back messages are due: hand them to its session's replay. */
static void held_release(td_srv_sub *u)
{
    session *s = SESSION_OF_CLIENT(u->client);
    td_srv_native *n = s->n;
    if (!u->held.head)
        return;
    if (s->ready_tail)
        s->ready_tail->next = u->held.head;
    else
        s->ready_head = u->held.head;
    s->ready_tail = u->held.tail;
    u->held.head = u->held.tail = NULL;
    if (!s->in_replay_list) {
        s->in_replay_list = 1;
        s->replay_next = n->replay_head;
        n->replay_head = s;
    }
}

static void pend_free_list(session *s, pend *p)
{
    while (p) {
        pend *nx = p->next;
        s->pend_n--;
        s->pend_bytes -= p->len;
        free(p);
        p = nx;
    }
}

/* ---- HELLO and tokens ------------------------------------------------------------------ */

static void send_welcome(session *s)
{
    const td_srv_config *c = s->n->env.cfg;
    td_srv_msg m;
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_WELCOME;
    m.version = s->version; /* what the client asked for: 1 or 2 */
    m.session = s->client.id;
    m.user.ptr = (const uint8_t *)s->tok.user;
    m.user.len = s->tok.user_len;
    m.rights = s->tok.rights;
    m.expires = s->tok.expires;
    m.max_frame = c->max_frame;
    m.max_batch = c->max_batch;
    m.max_presence = c->max_presence;
    m.presence_interval_ms = c->presence_interval_ms;
    m.presence_ttl_ms = c->presence_ttl_ms;
    send_msg(s, &m);
}

static void arm_token_timer(session *s)
{
    uint64_t now = (uint64_t)time(NULL);
    if (!s->tok.expires) {
        lws_set_timer_usecs(s->conn.wsi, LWS_SET_TIMER_USEC_CANCEL);
        return;
    }
    uint64_t left = s->tok.expires > now ? s->tok.expires - now : 0;
    if (left > 86400ull * 365)
        left = 86400ull * 365;
    lws_set_timer_usecs(s->conn.wsi, (lws_usec_t)left * LWS_US_PER_SEC + 1000);
}

/* The token's timer fired (LWS_CALLBACK_TIMER). At expiry the client is
 * told, and writes stop; reads go on for --token-grace so that a client can
 * send a HELLO with a fresh token without losing its subscriptions. At the
 * end of the grace, a connection still on the expired token is closed: an
 * expired token must not go on receiving documents (PROTOCOL.md section 8). */
static void token_timer(session *s)
{
    uint64_t now = (uint64_t)time(NULL);
    if (!s->tok.expires)
        return;
    if (!s->expired) {
        if (now < s->tok.expires) {
            arm_token_timer(s);
            return;
        }
        s->expired = 1;
        send_errorf(s, TD_SRV_E_TOKEN_EXPIRED, NULL,
                    "token expired: send HELLO with a fresh token");
        lws_set_timer_usecs(s->conn.wsi,
                            (lws_usec_t)s->n->env.cfg->token_grace_ms * 1000 + 1000);
        return;
    }
    td_srv_conn_close_with(&s->conn, 1008);
}

/* The token may still do what it grants to doc: read, and `right` (0 for
 * reading alone). */
static int token_grants(const session *s, const uint8_t *doc, size_t len, uint64_t right)
{
    return (s->tok.rights & TD_SRV_RIGHT_READ) && (s->tok.rights & right) == right &&
           td_srv_pattern_match(s->tok.pattern, s->tok.pattern_len, (const char *)doc, len);
}

/* After a HELLO with another token: every subscription the new token does
 * not grant ends, with an ERROR forbidden naming it. */
static void recheck_subscriptions(session *s)
{
    td_srv_sub *u = LIST_FIRST(&s->client.subs), *nx;
    for (; u; u = nx) {
        size_t len;
        const char *doc = td_srv_sub_doc(u, &len);
        nx = LIST_NEXT(u, client_link);
        if (token_grants(s, (const uint8_t *)doc, len, 0))
            continue;
        send_error(s, TD_SRV_E_FORBIDDEN, doc, len, 0,
                   "the new token does not grant this document: unsubscribed");
        pend_free_list(s, u->held.head);
        u->held.head = u->held.tail = NULL;
        td_srv_unsubscribe(s->n->env.svc, u);
    }
}

static void on_hello(session *s, const td_srv_msg *m)
{
    const uint8_t *pk = s->n->env.pk;
    td_srv_token t;
    td_srv_code rc;

    if (m->version < TD_SRV_PROTOCOL_MIN || m->version > TD_SRV_PROTOCOL_VERSION) {
        send_errorf(s, TD_SRV_E_BAD_VERSION, NULL,
                    "protocol version %llu not supported (server speaks %d to %d)",
                    (unsigned long long)m->version, TD_SRV_PROTOCOL_MIN,
                    TD_SRV_PROTOCOL_VERSION);
        td_srv_conn_close_with(&s->conn, 1002);
        return;
    }
    if (!pk) {
        memset(&t, 0, sizeof t);
        t.rights = TD_SRV_RIGHT_READ | TD_SRV_RIGHT_WRITE | TD_SRV_RIGHT_PRESENCE;
        t.pattern[0] = '*';
        t.pattern_len = 1;
    } else {
        if (m->token.len == 0) {
            send_errorf(s, TD_SRV_E_AUTH_REQUIRED, NULL, "this server requires a token");
            td_srv_conn_close_with(&s->conn, 1008);
            return;
        }
        rc = td_srv_token_verify((const char *)m->token.ptr, m->token.len, pk,
                                 (uint64_t)time(NULL), &t);
        if (rc == TD_SRV_E_OK && s->hello &&
            (t.user_len != s->tok.user_len || memcmp(t.user, s->tok.user, t.user_len)))
            rc = TD_SRV_E_TOKEN_INVALID;
        if (rc != TD_SRV_E_OK) {
            send_errorf(s, rc, NULL, "%s",
                        rc == TD_SRV_E_TOKEN_EXPIRED ? "token expired"
                        : s->hello                   ? "token invalid or for another user"
                                                     : "token malformed or signature invalid");
            td_srv_conn_close_with(&s->conn, 1008);
            return;
        }
    }
    int again = s->hello;
    s->version = m->version;
    s->tok = t;
    s->client.agent = m->agent;
    s->client.user = s->tok.user;
    s->client.user_len = s->tok.user_len;
    /* With tokens, agents belong to the token's user; on an open server,
     * to this connection (srv_owners.h). */
    s->client.author = s->tok.user;
    s->client.author_len = s->tok.user_len;
    s->client.author_durable = pk != NULL;
    s->hello = 1;
    s->expired = 0;
    td_srv_conn_authenticated(&s->conn);
    arm_token_timer(s);
    send_welcome(s);
    if (again)
        recheck_subscriptions(s);
}

/* Writes (UPDATE, PRESENCE, SUBSCRIBE) need a live token. */
static int token_live(session *s, const td_srv_msg *m)
{
    if (!s->expired && s->tok.expires && (uint64_t)time(NULL) >= s->tok.expires)
        token_timer(s);
    if (s->expired) {
        send_errorf(s, TD_SRV_E_TOKEN_EXPIRED, m, "token expired");
        return 0;
    }
    return 1;
}

/* ---- the messages ---------------------------------------------------------------------------- */

/* Refuses m (an ERROR) unless the token grants its document (forbidden)
 * and `right` (read_only). Returns 1 if refused. */
static int refused(session *s, const td_srv_msg *m, uint64_t right, const char *what)
{
    if (!token_grants(s, m->doc.ptr, m->doc.len, 0)) {
        send_errorf(s, TD_SRV_E_FORBIDDEN, m, "the token does not grant this document");
        return 1;
    }
    if (!token_grants(s, m->doc.ptr, m->doc.len, right)) {
        send_errorf(s, TD_SRV_E_READ_ONLY, m, "the token does not grant %s", what);
        return 1;
    }
    return 0;
}

static void on_subscribe(session *s, const td_srv_msg *m)
{
    if (!token_grants(s, m->doc.ptr, m->doc.len, 0)) {
        send_errorf(s, TD_SRV_E_FORBIDDEN, m, "the token does not grant this document");
        return;
    }
    td_srv_subscribe(s->n->env.svc, &s->client, m->doc.ptr, m->doc.len, m->vv.ptr,
                     m->vv.len);
}

/* The subscription a message names, or NULL after an ERROR. */
static td_srv_sub *sub_of(session *s, const td_srv_msg *m, const char *what)
{
    td_srv_sub *u = td_srv_sub_find(&s->client, m->doc.ptr, m->doc.len);
    if (!u)
        send_errorf(s, TD_SRV_E_NOT_SUBSCRIBED, m, "%s", what);
    return u;
}

static void on_unsubscribe(session *s, const td_srv_msg *m)
{
    td_srv_sub *u = sub_of(s, m, "not subscribed");
    if (!u)
        return;
    pend_free_list(s, u->held.head);
    u->held.head = u->held.tail = NULL;
    td_srv_unsubscribe(s->n->env.svc, u);
}

static void on_update(session *s, const td_srv_msg *m)
{
    td_srv_sub *u;
    if (refused(s, m, TD_SRV_RIGHT_WRITE, "writing"))
        return;
    if (!(u = sub_of(s, m, "UPDATE for a document not subscribed")))
        return;
    s->n->env.m->proto_updates[TD_SRV_PROTO_NATIVE]++;
    td_srv_update(s->n->env.svc, u, m->batch_id, m->batch.ptr, m->batch.len);
}

static void on_presence(session *s, const td_srv_msg *m)
{
    uint64_t max = s->n->env.cfg->max_presence;
    td_srv_sub *u;
    td_srv_msg about = *m;
    about.batch_id = 0; /* PRESENCE has none */
    if (refused(s, &about, TD_SRV_RIGHT_PRESENCE, "presence"))
        return;
    if (m->state.len > max) {
        send_errorf(s, TD_SRV_E_TOO_LARGE, &about,
                    "presence state of %zu bytes exceeds the limit of %llu", m->state.len,
                    (unsigned long long)max);
        return;
    }
    if (!(u = sub_of(s, &about, "PRESENCE for a document not subscribed")))
        return;
    td_srv_presence_update(s->n->env.svc, u, m->state.ptr, m->state.len);
}

/* What each message type does once HELLO is done: the handler, and whether
 * it needs a live token. */
static const struct {
    td_srv_msg_type type;
    void (*run)(session *s, const td_srv_msg *m);
    int needs_token;
} handlers[] = {
    {TD_SRV_MSG_SUBSCRIBE, on_subscribe, 1},
    {TD_SRV_MSG_UNSUBSCRIBE, on_unsubscribe, 0},
    {TD_SRV_MSG_UPDATE, on_update, 1},
    {TD_SRV_MSG_PRESENCE, on_presence, 1},
};

/* Handles one decoded message (also for replays of held-back ones). */
static void dispatch(session *s, const td_srv_msg *m, const uint8_t *raw, size_t len)
{
    if (s->conn.close_code)
        return;
    if (m->type == TD_SRV_MSG_HELLO) {
        on_hello(s, m);
        return;
    }
    if (!s->hello) {
        send_errorf(s, TD_SRV_E_HELLO_REQUIRED, m, "send HELLO first");
        return;
    }
    /* Messages for a document still loading wait for its SYNC, in order. */
    if (m->doc.len) {
        td_srv_sub *u = td_srv_sub_find(&s->client, m->doc.ptr, m->doc.len);
        if (u && held_defer(s, u, m, raw, len))
            return;
    }
    for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++)
        if (handlers[i].type == m->type) {
            if (!handlers[i].needs_token || token_live(s, m))
                handlers[i].run(s, m);
            return;
        }
}

static void on_message(td_srv_conn *c, const uint8_t *buf, size_t len)
{
    session *s = (session *)(void *)c;
    td_srv_msg m;
    const char *why;
    td_srv_code rc;

    if (s->n->replay_head)
        td_srv_native_replay(s->n); /* released held-back messages go first */
    s->n->env.m->proto_msgs_in[TD_SRV_PROTO_NATIVE]++;
    /* The type byte first: a server-to-client type is unknown here, however
     * its fields look (the full decoder would call it malformed). */
    if (len && (buf[0] & 0x80)) {
        send_errorf(s, TD_SRV_E_UNKNOWN_TYPE, NULL,
                    "server-to-client message type 0x%02x (%zu bytes)", buf[0], len);
        return;
    }
    /* Version 2: a deflated message is inflated (bounded by the frame
     * limit, whatever size it declares) and then handled as if it had
     * come so. On a version 1 connection, or before HELLO, the flag is
     * an error like any malformed type byte. */
    if (len && (buf[0] & TD_SRV_FLAG_DEFLATE)) {
        uint8_t *plain;
        size_t plain_len;
        uint64_t max = s->n->env.cfg->max_frame;
        if (s->version < 2) {
            if (s->hello)
                send_errorf(s, TD_SRV_E_BAD_MESSAGE, NULL,
                            "deflated message (type 0x%02x) on a version %llu connection",
                            buf[0], (unsigned long long)s->version);
            else
                send_errorf(s, TD_SRV_E_BAD_MESSAGE, NULL,
                            "deflated message (type 0x%02x) before HELLO", buf[0]);
            return;
        }
        rc = td_srv_msg_inflate(buf, len, max ? max - 1 : 0, &plain, &plain_len, &why);
        if (rc != TD_SRV_E_OK) {
            send_errorf(s, rc, NULL, "%s (type 0x%02x, %zu bytes)", why, buf[0], len);
            return;
        }
        s->n->env.m->deflated_msgs_in++;
        rc = td_srv_msg_decode(plain, plain_len, &m, &why);
        if (rc != TD_SRV_E_OK)
            send_errorf(s, rc, NULL, "%s (type 0x%02x, %zu bytes inflated)", why, plain[0],
                        plain_len);
        else
            dispatch(s, &m, plain, plain_len);
        free(plain);
        return;
    }
    rc = td_srv_msg_decode(buf, len, &m, &why);
    if (rc != TD_SRV_E_OK) {
        send_errorf(s, rc, NULL, "%s (type 0x%02x, %zu bytes)", why, len ? buf[0] : 0, len);
        return;
    }
    dispatch(s, &m, buf, len);
}

void td_srv_native_replay(td_srv_native *n)
{
    while (n->replay_head) {
        session *s = n->replay_head;
        n->replay_head = s->replay_next;
        s->replay_next = NULL;
        s->in_replay_list = 0;
        while (s->ready_head) {
            pend *p = s->ready_head;
            td_srv_msg m;
            s->ready_head = p->next;
            if (!s->ready_head)
                s->ready_tail = NULL;
            s->pend_n--;
            s->pend_bytes -= p->len;
            /* It decoded when it arrived; it may be held back again (its
             * document reloading), which copies it. */
            if (td_srv_msg_decode(p->data, p->len, &m, NULL) == TD_SRV_E_OK)
                dispatch(s, &m, p->data, p->len);
            free(p);
        }
    }
}

/* ---- life cycle ------------------------------------------------------------------------------ */

static void on_timer(td_srv_conn *c)
{
    token_timer((session *)(void *)c);
}

static void on_closed(td_srv_conn *c)
{
    session *s = (session *)(void *)c;
    td_srv_native *n = s->n;
    td_srv_sub *u;
    LIST_FOREACH(u, &s->client.subs, client_link) {
        pend_free_list(s, u->held.head);
        u->held.head = u->held.tail = NULL;
    }
    td_srv_client_close(n->env.svc, &s->client);
    n->env.m->proto_conns[TD_SRV_PROTO_NATIVE]--;
    pend_free_list(s, s->ready_head);
    s->ready_head = s->ready_tail = NULL;
    if (s->in_replay_list)
        for (session **p = &n->replay_head; *p; p = &(*p)->replay_next)
            if (*p == s) {
                *p = s->replay_next;
                break;
            }
    free(s);
}

static const td_srv_conn_handler native_handler = {on_message, on_timer, on_closed};

td_srv_conn *td_srv_native_open(td_srv_native *n, struct lws *wsi)
{
    session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->n = n;
    td_srv_conn_open(n->env.conns, &s->conn, wsi, &native_handler);
    td_srv_client_init(&s->client, &native_ops);
    s->client.id = ++n->next_id;
    n->env.m->proto_conns[TD_SRV_PROTO_NATIVE]++;
    n->env.m->proto_conns_total[TD_SRV_PROTO_NATIVE]++;
    return &s->conn;
}

int td_srv_native_new(td_srv_native **out, const td_srv_native_env *env)
{
    td_srv_native *n = calloc(1, sizeof *n);
    if (!n)
        return -1;
    n->env = *env;
    *out = n;
    return 0;
}

void td_srv_native_free(td_srv_native *n)
{
    free(n);
}
