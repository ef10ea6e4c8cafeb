/*
 * srv_session.c -- one WebSocket connection: its send queue, its HELLO and
 * token state, and the dispatch of every message it sends.
 *
 * Outgoing messages are encoded once into refcounted frames, so a broadcast
 * to a hundred subscribers is one buffer queued a hundred times. The queue
 * has a byte cap: a connection that does not read (a slow consumer) has its
 * queue dropped at once, which keeps memory bounded, and is closed with
 * 1008; its client resyncs on reconnect since the state is in the document.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv_internal.h"

/* ---- frames ---------------------------------------------------------------------- */

td_srv_frame *td_srv_frame_from(td_srv_wbuf *w)
{
    td_srv_frame *f;
    if (w->oom || !w->data) {
        td_srv_wbuf_free(w);
        return NULL;
    }
    f = malloc(sizeof *f);
    if (!f) {
        td_srv_wbuf_free(w);
        return NULL;
    }
    f->refs = 1;
    f->len = w->len;
    f->buf = w->data;
    w->data = NULL;
    w->len = w->cap = 0;
    return f;
}

/* A REMOTE or PRESENCE frame for document d: n items already written to
 * `items` (which this frees). NULL when there is nothing to send. */
td_srv_frame *td_srv_list_frame(int type, const td_srv_doc *d, uint64_t n, td_srv_wbuf *items)
{
    td_srv_frame *f = NULL;
    if (n && !items->oom) {
        td_srv_msg m;
        td_srv_wbuf w;
        memset(&m, 0, sizeof m);
        m.type = type;
        m.doc.ptr = (const uint8_t *)d->id;
        m.doc.len = d->id_len;
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

void td_srv_frame_unref(td_srv_frame *f)
{
    if (f && --f->refs == 0) {
        free(f->buf);
        free(f);
    }
}

/* ---- send queue ---------------------------------------------------------------------- */

static void queue_drop(td_srv_session *s)
{
    td_srv_qitem *q = s->q_head, *n;
    for (; q; q = n) {
        n = q->next;
        td_srv_frame_unref(q->f);
        free(q);
    }
    s->q_head = s->q_tail = NULL;
    s->q_bytes = 0;
    s->q_n = 0;
}

void td_srv_session_close_with(td_srv_session *s, int code)
{
    if (!s->close_code)
        s->close_code = code;
    if (s->wsi) {
        lws_callback_on_writable(s->wsi);
        /* A peer that never reads never makes us writeable: kill it after
         * a grace period if the close frame cannot be written. */
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, 2);
    }
}

void td_srv_send(td_srv_session *s, td_srv_frame *f)
{
    td_srv_qitem *q;
    if (!f || s->close_code == 1008 || s->close_sent || !s->wsi)
        return;
    if (s->q_n > 0 && s->q_bytes + f->len > s->srv->cfg.send_queue) {
        /* Slow consumer: free its backlog now, close it. */
        queue_drop(s);
        s->srv->m.slow_consumer_closes++;
        s->close_code = 0;
        td_srv_session_close_with(s, 1008);
        return;
    }
    q = malloc(sizeof *q);
    if (!q)
        return;
    f->refs++;
    q->f = f;
    q->next = NULL;
    if (s->q_tail)
        s->q_tail->next = q;
    else
        s->q_head = q;
    s->q_tail = q;
    s->q_bytes += f->len;
    s->q_n++;
    lws_callback_on_writable(s->wsi);
}

void td_srv_send_msg(td_srv_session *s, const td_srv_msg *m)
{
    td_srv_wbuf w;
    td_srv_frame *f;
    td_srv_wbuf_init(&w, LWS_PRE);
    td_srv_msg_encode(m, &w);
    f = td_srv_frame_from(&w);
    if (f) {
        td_srv_send(s, f);
        td_srv_frame_unref(f);
    }
}

void td_srv_send_error(td_srv_session *s, td_srv_code code, const char *doc,
                       size_t doc_len, uint64_t batch_id, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    td_srv_msg m;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_ERROR;
    m.code = code;
    m.doc.ptr = (const uint8_t *)doc;
    m.doc.len = doc ? doc_len : 0;
    m.batch_id = batch_id;
    m.message.ptr = (const uint8_t *)text;
    m.message.len = strlen(text);
    if (code < TD_SRV_E_COUNT)
        s->srv->m.errors[code]++;
    td_srv_send_msg(s, &m);
}

/* The close handshake (RFC 6455 section 5.5.1) is ours, not lws's: once the
 * queue is written we send the close frame, keep reading (and dropping)
 * whatever the peer still sends, and close the socket only when its close
 * frame arrives (LWS_CALLBACK_WS_PEER_INITIATED_CLOSE) or after
 * CLOSE_WAIT_S. Closing a socket with unread input makes the kernel send an
 * RST, and a peer that gets an RST drops what it had not read yet, our
 * ERROR and close frame included: a client that pipelined SUBSCRIBE and
 * UPDATE behind a refused HELLO would see only a dropped connection. */
#define CLOSE_WAIT_S 3

static int send_close(td_srv_session *s)
{
    static const struct {
        int code;
        const char *why;
    } reasons[] = {{1001, "going away"},    {1002, "protocol error"}, {1003, "unsupported data"},
                   {1008, "policy"},        {1009, "too big"},        {1011, "internal error"}};
    uint8_t buf[LWS_PRE + 2 + 125], *p = buf + LWS_PRE;
    const char *why = "closing";
    size_t n;
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].code == s->close_code)
            why = reasons[i].why;
    n = strlen(why);
    /* lws keeps LWS_WRITE_CLOSE to itself (lws_close_reason() sends the
     * frame only as lws closes the socket), so the frame goes out raw: a
     * server frame is unmasked, FIN + opcode 8, payload code + reason. */
    p[0] = 0x88;
    p[1] = (uint8_t)(2 + n);
    p[2] = (uint8_t)(s->close_code >> 8);
    p[3] = (uint8_t)(s->close_code & 0xff);
    memcpy(p + 4, why, n);
    if (lws_write(s->wsi, p, 4 + n, LWS_WRITE_RAW) < 0)
        return -1;
    s->close_sent = 1;
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_ACK, CLOSE_WAIT_S);
    return 0;
}

/* Frames written per writeable callback, at most: a connection with a
 * backlog writes it in a few loop turns (not one turn per message, each
 * costing a poll() over every connection) without starving the others. */
#define WRITE_BUDGET_FRAMES 64
#define DEFLATE_STEP 512 /* frames above this may be drained over several turns */
#define WRITE_BUDGET_BYTES (256u << 10)

int td_srv_session_writeable(td_srv_session *s)
{
    size_t frames = 0, bytes = 0;
    /* permessage-deflate compresses a big frame in ~1 KiB steps, reading
     * our buffer after lws_write() returned, and lws calls us writeable
     * again only once it is done: the frame lives until then. */
    td_srv_frame_unref(s->draining);
    s->draining = NULL;
    if (s->close_sent)
        return 0;
    while (s->q_head) {
        td_srv_qitem *q = s->q_head;
        /* Past the first frame, stop where the kernel would not take more
         * (lws would then buffer the frame itself) or the budget ends. */
        if (frames && (frames >= WRITE_BUDGET_FRAMES || bytes >= WRITE_BUDGET_BYTES ||
                       lws_send_pipe_choked(s->wsi))) {
            lws_callback_on_writable(s->wsi);
            return 0;
        }
        int n = lws_write(s->wsi, q->f->buf + LWS_PRE, q->f->len, LWS_WRITE_BINARY);
        if (n < 0)
            return -1;
        s->srv->m.bytes_out += q->f->len;
        s->srv->m.frames_out++;
        frames++;
        bytes += q->f->len;
        s->q_head = q->next;
        if (!s->q_head)
            s->q_tail = NULL;
        s->q_bytes -= q->f->len;
        s->q_n--;
        if (q->f->len > DEFLATE_STEP) {
            s->draining = q->f; /* keeps the reference */
            free(q);
            if (s->q_head || s->close_code)
                lws_callback_on_writable(s->wsi);
            return 0;
        }
        td_srv_frame_unref(q->f);
        free(q);
    }
    if (s->close_code) {
        /* The close frame goes in a turn of its own, after the last frame
         * has left lws's buffer. */
        if (frames || lws_send_pipe_choked(s->wsi)) {
            lws_callback_on_writable(s->wsi);
            return 0;
        }
        return send_close(s);
    }
    return 0;
}

/* ---- life cycle ------------------------------------------------------------------------ */

void td_srv_session_open(td_srv_server *srv, td_srv_session *s, struct lws *wsi)
{
    memset(s, 0, sizeof *s);
    s->srv = srv;
    s->wsi = wsi;
    s->id = ++srv->next_session_id;
    s->next = srv->sessions;
    if (srv->sessions)
        srv->sessions->prev = s;
    srv->sessions = s;
    srv->m.connections++;
    srv->m.connections_total++;
}

void td_srv_session_close(td_srv_session *s)
{
    td_srv_server *srv = s->srv;
    while (s->subs)
        td_srv_sub_remove(s->subs);
    for (td_srv_rec *r = s->recs; r; r = r->sess_next)
        r->sess = NULL;
    s->recs = NULL;
    td_srv_session_drop_ready(s);
    td_srv_frame_unref(s->draining);
    s->draining = NULL;
    if (s->in_replay_list) {
        for (td_srv_session **p = &srv->replay_head; *p; p = &(*p)->replay_next)
            if (*p == s) {
                *p = s->replay_next;
                break;
            }
        s->in_replay_list = 0;
    }
    queue_drop(s);
    free(s->rx);
    s->rx = NULL;
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->wsi = NULL;
    srv->m.connections--;
}

/* ---- HELLO and tokens -------------------------------------------------------------------- */

static void send_welcome(td_srv_session *s)
{
    const td_srv_config *c = &s->srv->cfg;
    td_srv_msg m;
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_WELCOME;
    m.version = TD_SRV_PROTOCOL_VERSION;
    m.session = s->id;
    m.user.ptr = (const uint8_t *)s->tok.user;
    m.user.len = s->tok.user_len;
    m.rights = s->tok.rights;
    m.expires = s->tok.expires;
    m.max_frame = c->max_frame;
    m.max_batch = c->max_batch;
    m.max_presence = c->max_presence;
    m.presence_interval_ms = c->presence_interval_ms;
    m.presence_ttl_ms = c->presence_ttl_ms;
    td_srv_send_msg(s, &m);
}

static void arm_token_timer(td_srv_session *s)
{
    uint64_t now = (uint64_t)time(NULL);
    if (!s->tok.expires) {
        lws_set_timer_usecs(s->wsi, LWS_SET_TIMER_USEC_CANCEL);
        return;
    }
    uint64_t left = s->tok.expires > now ? s->tok.expires - now : 0;
    if (left > 86400ull * 365)
        left = 86400ull * 365;
    lws_set_timer_usecs(s->wsi, (lws_usec_t)left * LWS_US_PER_SEC + 1000);
}

/* The token's expiry passed (LWS_CALLBACK_TIMER). */
void td_srv_token_timer(td_srv_session *s)
{
    if (!s->tok.expires || s->expired)
        return;
    if ((uint64_t)time(NULL) < s->tok.expires) {
        arm_token_timer(s);
        return;
    }
    s->expired = 1;
    td_srv_send_error(s, TD_SRV_E_TOKEN_EXPIRED, NULL, 0, 0,
                      "token expired: send HELLO with a fresh token");
}

static void on_hello(td_srv_session *s, const td_srv_msg *m)
{
    td_srv_server *srv = s->srv;
    td_srv_token t;
    td_srv_code rc;

    if (m->version != TD_SRV_PROTOCOL_VERSION) {
        td_srv_send_error(s, TD_SRV_E_BAD_VERSION, NULL, 0, 0,
                          "protocol version %llu not supported (server speaks %d)",
                          (unsigned long long)m->version, TD_SRV_PROTOCOL_VERSION);
        td_srv_session_close_with(s, 1002);
        return;
    }
    if (!srv->have_key) {
        memset(&t, 0, sizeof t);
        t.rights = TD_SRV_RIGHT_READ | TD_SRV_RIGHT_WRITE | TD_SRV_RIGHT_PRESENCE;
        t.pattern[0] = '*';
        t.pattern_len = 1;
    } else {
        if (m->token.len == 0) {
            td_srv_send_error(s, TD_SRV_E_AUTH_REQUIRED, NULL, 0, 0,
                              "this server requires a token");
            td_srv_session_close_with(s, 1008);
            return;
        }
        rc = td_srv_token_verify((const char *)m->token.ptr, m->token.len, srv->pk,
                                 (uint64_t)time(NULL), &t);
        if (rc == TD_SRV_E_OK && s->hello &&
            (t.user_len != s->tok.user_len || memcmp(t.user, s->tok.user, t.user_len))) {
            rc = TD_SRV_E_TOKEN_INVALID;
        }
        if (rc != TD_SRV_E_OK) {
            td_srv_send_error(s, rc, NULL, 0, 0, "%s",
                              rc == TD_SRV_E_TOKEN_EXPIRED ? "token expired"
                              : s->hello ? "token invalid or for another user"
                                         : "token malformed or signature invalid");
            td_srv_session_close_with(s, 1008);
            return;
        }
    }
    s->tok = t;
    s->agent = m->agent;
    s->hello = 1;
    s->expired = 0;
    arm_token_timer(s);
    send_welcome(s);
    return;
}

/* Writes (UPDATE, PRESENCE, SUBSCRIBE) need a live token. */
static int token_live(td_srv_session *s, const td_srv_msg *m)
{
    if (!s->expired && s->tok.expires && (uint64_t)time(NULL) >= s->tok.expires)
        td_srv_token_timer(s);
    if (s->expired) {
        td_srv_send_error(s, TD_SRV_E_TOKEN_EXPIRED, (const char *)m->doc.ptr,
                          m->doc.len, m->batch_id, "token expired");
        return 0;
    }
    return 1;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

int td_srv_session_message(td_srv_session *s, const uint8_t *buf, size_t len)
{
    td_srv_msg m;
    const char *why;
    td_srv_code rc;

    s->srv->m.frames_in++;
    if (s->close_code)
        return 0; /* closing: ignore the rest */
    if (s->srv->replay_head)
        td_srv_replay(s->srv); /* released held-back messages go first */
    /* The type byte first: a server-to-client type is unknown here, however
     * its fields look (the full decoder would call it malformed). */
    if (len && (buf[0] & 0x80)) {
        td_srv_send_error(s, TD_SRV_E_UNKNOWN_TYPE, NULL, 0, 0,
                          "server-to-client message type 0x%02x (%zu bytes)", buf[0], len);
        return 0;
    }
    rc = td_srv_msg_decode(buf, len, &m, &why);
    if (rc != TD_SRV_E_OK) {
        td_srv_send_error(s, rc, NULL, 0, 0, "%s (type 0x%02x, %zu bytes)", why,
                          len ? buf[0] : 0, len);
        return 0;
    }
    td_srv_session_dispatch(s, &m, buf, len);
    return 0;
}

void td_srv_session_dispatch(td_srv_session *s, const td_srv_msg *m, const uint8_t *raw,
                             size_t len)
{
    if (s->close_code)
        return;
    if (m->type == TD_SRV_MSG_HELLO) {
        on_hello(s, m);
        return;
    }
    if (!s->hello) {
        td_srv_send_error(s, TD_SRV_E_HELLO_REQUIRED, (const char *)m->doc.ptr,
                          m->doc.len, m->batch_id, "send HELLO first");
        return;
    }
    /* Messages for a document still loading wait for its SYNC, in order. */
    if (m->doc.len) {
        td_srv_sub *u = td_srv_sub_find(s, m->doc.ptr, m->doc.len);
        if (u && td_srv_sub_defer(u, m, raw, len))
            return;
    }
    switch (m->type) {
    case TD_SRV_MSG_SUBSCRIBE:
        if (token_live(s, m))
            td_srv_doc_subscribe(s, m);
        break;
    case TD_SRV_MSG_UNSUBSCRIBE:
        td_srv_doc_unsubscribe(s, m);
        break;
    case TD_SRV_MSG_UPDATE:
        if (token_live(s, m))
            td_srv_doc_update(s, m);
        break;
    case TD_SRV_MSG_PRESENCE:
        if (token_live(s, m))
            td_srv_presence_recv(s, m);
        break;
    default:
        break;
    }
}

/* ---- held-back messages ----------------------------------------------------------------- */

void td_srv_session_drop_ready(td_srv_session *s)
{
    while (s->ready_head) {
        td_srv_pend *p = s->ready_head;
        s->ready_head = p->next;
        s->pend_n--;
        s->pend_bytes -= p->len;
        free(p);
    }
    s->ready_tail = NULL;
}

void td_srv_replay(td_srv_server *srv)
{
    while (srv->replay_head) {
        td_srv_session *s = srv->replay_head;
        srv->replay_head = s->replay_next;
        s->replay_next = NULL;
        s->in_replay_list = 0;
        while (s->ready_head) {
            td_srv_pend *p = s->ready_head;
            td_srv_msg m;
            s->ready_head = p->next;
            if (!s->ready_head)
                s->ready_tail = NULL;
            s->pend_n--;
            s->pend_bytes -= p->len;
            /* It decoded when it arrived; it may be held back again (its
             * document reloading), which copies it. */
            if (td_srv_msg_decode(p->data, p->len, &m, NULL) == TD_SRV_E_OK)
                td_srv_session_dispatch(s, &m, p->data, p->len);
            free(p);
        }
    }
}
