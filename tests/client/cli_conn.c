/*
 * cli_conn.c -- connections, subscriptions and the event loop of the test
 * client (see td_client.h).
 *
 * Every connection is a td_cli_conn that outlives its WebSocket: the wsi
 * comes and goes (connect, close, reconnect) while the documents, their
 * replicas and the unacknowledged batches stay. A wsi finds its connection
 * through lws' opaque user data; a wsi that was abandoned (reconnect while
 * the old one was still closing, or the connection freed) has that pointer
 * cleared and is closed on its next callback.
 *
 * Sending is queue based: messages are appended to the connection's queue
 * and written from LWS_CALLBACK_CLIENT_WRITEABLE, as many per callback as
 * the socket takes. When the WebSocket opens, the queue is rebuilt from
 * state: HELLO, one SUBSCRIBE per document with its vv, then every
 * unacknowledged batch -- the server processes a connection's messages in
 * order, so nothing needs to wait for WELCOME or SYNC.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>

#include <libwebsockets.h>

#include "td_client.h"

/* ---- internal types ------------------------------------------------------ */

typedef struct outmsg {
    struct outmsg *next;
    size_t len;
    int text;
    uint8_t data[]; /* LWS_PRE headroom, then the message */
} outmsg;

typedef struct pend_batch {
    uint64_t id;
    uint8_t *bytes;
    size_t len;
    uint64_t sent_us;
    uint64_t retry_at_us; /* non-zero: resend at this time */
} pend_batch;

typedef struct peer {
    uint64_t session, agent;
    char *user;
    size_t user_len;
    uint8_t *state;
    size_t state_len;
} peer;

struct td_cli_doc {
    td_cli_conn *conn;
    char id[256];
    size_t id_len;
    td_cli_doc_opts opts;
    td_crdt_doc *crdt;
    int synced;
    uint64_t syncs;
    pend_batch *un;
    size_t nun, capun;
    uint64_t next_id;
    peer *peers;
    size_t npeers, cappeers;
    td_cli_doc_stats st;
};

struct td_cli_conn {
    td_cli_ctx *ctx;
    struct lws *wsi;
    char host[256], path[512];
    int port;
    char *token;
    char subprotocol[64];
    int has_subprotocol;
    int no_hello;
    int raw;
    td_cli_msg *in_head, *in_tail; /* raw connections only */
    size_t in_count;
    uint64_t agent;
    td_cli_callbacks cb;
    td_cli_state state;
    int close_code;
    int closing;  /* close requested: return -1 from the next callback */
    int opening;  /* inside lws_client_connect_via_info */
    int reading;
    uint64_t session;
    outmsg *qhead, *qtail;
    size_t queued;
    td_cli_buf rx;
    int rx_text;
    td_cli_doc **docs;
    size_t ndocs, capdocs;
    td_cli_stats st;
    td_cli_error last_err;
    uint64_t nerrors;
    size_t slot; /* index in ctx->conns */
};

struct td_cli_ctx {
    struct lws_context *lws;
    td_cli_conn **conns;
    size_t nconns, capconns;
    lws_sorted_usec_list_t wake;
    int destroying;
    size_t retries; /* batches waiting for a timed resend */
};

/* ---- small helpers ------------------------------------------------------- */

uint64_t td_cli_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t td_cli_random64(void)
{
    uint64_t v = 0;
    while (v == 0) {
        if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
            /* no entropy source: mix the clock, good enough for tests */
            v = td_cli_now_us() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&v;
        }
    }
    return v;
}

/* A bounds-checked reader over one received message. */
typedef struct rd {
    const uint8_t *p;
    size_t len, pos;
    int bad;
} rd;

static uint64_t rd_varint(rd *r)
{
    uint64_t v = 0;
    if (!r->bad && td_cli_get_varint(r->p, r->len, &r->pos, &v) < 0)
        r->bad = 1;
    return r->bad ? 0 : v;
}

static const uint8_t *rd_bytes(rd *r, size_t *n)
{
    uint64_t len = rd_varint(r);
    if (r->bad || len > r->len - r->pos) {
        r->bad = 1;
        *n = 0;
        return NULL;
    }
    const uint8_t *p = r->p + r->pos;
    r->pos += (size_t)len;
    *n = (size_t)len;
    return p;
}

static int debug_on(void)
{
    static int on = -1;
    if (on < 0)
        on = getenv("TD_CLI_DEBUG") != NULL;
    return on;
}

/* ---- the send queue ------------------------------------------------------ */

static int queue_msg(td_cli_conn *c, const uint8_t *msg, size_t len, int text)
{
    if (!c->wsi || c->state < TD_CLI_OPEN)
        return -1;
    outmsg *m = malloc(sizeof *m + LWS_PRE + len);
    if (!m)
        return -1;
    m->next = NULL;
    m->len = len;
    m->text = text;
    if (len)
        memcpy(m->data + LWS_PRE, msg, len);
    if (c->qtail)
        c->qtail->next = m;
    else
        c->qhead = m;
    c->qtail = m;
    c->queued += len;
    lws_callback_on_writable(c->wsi);
    return 0;
}

static void queue_clear(td_cli_conn *c)
{
    while (c->qhead) {
        outmsg *m = c->qhead;
        c->qhead = m->next;
        free(m);
    }
    c->qtail = NULL;
    c->queued = 0;
}

static int queue_buf(td_cli_conn *c, td_cli_buf *b)
{
    int rc = b->oom ? -1 : queue_msg(c, b->data, b->len, 0);
    td_cli_buf_free(b);
    return rc;
}

static int online(const td_cli_conn *c)
{
    return c->wsi && c->state >= TD_CLI_OPEN && !c->closing;
}

/* ---- messages we send ---------------------------------------------------- */

static int send_hello(td_cli_conn *c)
{
    td_cli_buf b = {0};
    size_t tl = c->token ? strlen(c->token) : 0;
    td_cli_put_u8(&b, TD_CLI_HELLO);
    td_cli_put_varint(&b, 1);
    td_cli_put_bytes(&b, c->token, tl);
    td_cli_put_varint(&b, c->agent);
    return queue_buf(c, &b);
}

static int send_subscribe(td_cli_doc *d)
{
    td_cli_buf b = {0};
    uint8_t *vv = NULL;
    size_t vvlen = 0;
    if (d->crdt && td_crdt_vv_encode(d->crdt, &vv, &vvlen) != TD_CRDT_OK)
        return -1;
    td_cli_put_u8(&b, TD_CLI_SUBSCRIBE);
    td_cli_put_bytes(&b, d->id, d->id_len);
    td_cli_put_bytes(&b, vv, vvlen);
    if (vv)
        td_crdt_buf_free(d->crdt, vv);
    d->synced = 0;
    return queue_buf(d->conn, &b);
}

static int send_update(td_cli_doc *d, pend_batch *pb)
{
    td_cli_buf b = {0};
    td_cli_put_u8(&b, TD_CLI_UPDATE);
    td_cli_put_bytes(&b, d->id, d->id_len);
    td_cli_put_varint(&b, pb->id);
    td_cli_put_bytes(&b, pb->bytes, pb->len);
    pb->sent_us = td_cli_now_us();
    d->st.batches_sent++;
    return queue_buf(d->conn, &b);
}

/* The WebSocket is up: say who we are, resubscribe, resend. */
static void on_open(td_cli_conn *c)
{
    c->state = TD_CLI_OPEN;
    if (c->no_hello)
        return;
    send_hello(c);
    for (size_t i = 0; i < c->ndocs; i++) {
        td_cli_doc *d = c->docs[i];
        send_subscribe(d);
        for (size_t k = 0; k < d->nun; k++) {
            if (d->un[k].retry_at_us) {
                d->un[k].retry_at_us = 0;
                c->ctx->retries--;
            }
            send_update(d, &d->un[k]);
        }
    }
}

/* ---- messages we receive ------------------------------------------------- */

static td_cli_doc *find_doc(td_cli_conn *c, const uint8_t *id, size_t len)
{
    for (size_t i = 0; i < c->ndocs; i++)
        if (c->docs[i]->id_len == len && memcmp(c->docs[i]->id, id, len) == 0)
            return c->docs[i];
    return NULL;
}

static void apply_batch(td_cli_doc *d, const uint8_t *b, size_t len)
{
    if (!d->crdt || d->opts.manual_apply || len == 0)
        return;
    if (td_crdt_apply(d->crdt, b, len, NULL) != TD_CRDT_OK)
        fprintf(stderr, "td_client: %s: apply failed: %s\n", d->id,
                td_crdt_doc_error(d->crdt));
}

static void handle_welcome(td_cli_conn *c, rd *r)
{
    size_t ulen;
    rd_varint(r); /* version */
    uint64_t session = rd_varint(r);
    rd_bytes(r, &ulen);
    c->st.welcome_rights = rd_varint(r);
    c->st.welcome_expires = rd_varint(r);
    c->st.welcome_max_frame = rd_varint(r);
    c->st.welcome_max_batch = rd_varint(r);
    rd_varint(r); /* max_presence */
    c->st.presence_interval_ms = rd_varint(r);
    c->st.presence_ttl_ms = rd_varint(r);
    if (r->bad)
        return;
    c->session = session;
    c->state = TD_CLI_READY;
}

static void handle_sync(td_cli_conn *c, rd *r)
{
    size_t idl, bl, vvl;
    const uint8_t *id = rd_bytes(r, &idl);
    const uint8_t *b = rd_bytes(r, &bl);
    rd_bytes(r, &vvl);
    td_cli_doc *d = r->bad ? NULL : find_doc(c, id, idl);
    if (!d)
        return;
    apply_batch(d, b, bl);
    d->synced = 1;
    d->syncs++;
    d->st.sync_bytes += bl;
    if (c->cb.on_sync)
        c->cb.on_sync(d, b, bl, c->cb.ud);
}

static void handle_ack(td_cli_conn *c, rd *r)
{
    size_t idl;
    const uint8_t *id = rd_bytes(r, &idl);
    uint64_t bid = rd_varint(r);
    td_cli_doc *d = r->bad ? NULL : find_doc(c, id, idl);
    if (!d)
        return;
    for (size_t k = 0; k < d->nun; k++) {
        if (d->un[k].id != bid)
            continue;
        uint64_t sent = d->un[k].sent_us;
        if (d->un[k].retry_at_us)
            c->ctx->retries--;
        free(d->un[k].bytes);
        memmove(&d->un[k], &d->un[k + 1], (d->nun - k - 1) * sizeof d->un[0]);
        d->nun--;
        d->st.batches_acked++;
        if (c->cb.on_ack)
            c->cb.on_ack(d, bid, sent, c->cb.ud);
        return;
    }
}

static void handle_remote(td_cli_conn *c, rd *r)
{
    size_t idl;
    const uint8_t *id = rd_bytes(r, &idl);
    uint64_t count = rd_varint(r);
    td_cli_doc *d = r->bad ? NULL : find_doc(c, id, idl);
    if (!d)
        return;
    d->st.remote_msgs++;
    for (uint64_t i = 0; i < count && !r->bad; i++) {
        size_t bl;
        const uint8_t *b = rd_bytes(r, &bl);
        if (r->bad)
            break;
        d->st.remote_batches++;
        apply_batch(d, b, bl);
        if (c->cb.on_remote)
            c->cb.on_remote(d, b, bl, c->cb.ud);
    }
}

static peer *peer_find(td_cli_doc *d, uint64_t session, size_t *idx)
{
    for (size_t i = 0; i < d->npeers; i++) {
        if (d->peers[i].session == session) {
            if (idx)
                *idx = i;
            return &d->peers[i];
        }
    }
    return NULL;
}

static void peer_set(td_cli_doc *d, const td_cli_peer *p)
{
    peer *e = peer_find(d, p->session, NULL);
    if (!e) {
        if (d->npeers == d->cappeers) {
            size_t cap = d->cappeers ? d->cappeers * 2 : 4;
            peer *np = realloc(d->peers, cap * sizeof *np);
            if (!np)
                return;
            d->peers = np;
            d->cappeers = cap;
        }
        e = &d->peers[d->npeers++];
        memset(e, 0, sizeof *e);
        e->session = p->session;
    }
    char *u = malloc(p->user_len + 1);
    uint8_t *s = malloc(p->state_len + 1);
    if (!u || !s) {
        free(u);
        free(s);
        return;
    }
    memcpy(u, p->user, p->user_len);
    u[p->user_len] = 0;
    memcpy(s, p->state, p->state_len);
    s[p->state_len] = 0;
    free(e->user);
    free(e->state);
    e->agent = p->agent;
    e->user = u;
    e->user_len = p->user_len;
    e->state = s;
    e->state_len = p->state_len;
}

static void peer_remove(td_cli_doc *d, uint64_t session)
{
    size_t i;
    peer *e = peer_find(d, session, &i);
    if (!e)
        return;
    free(e->user);
    free(e->state);
    d->peers[i] = d->peers[--d->npeers];
}

static void handle_peers(td_cli_conn *c, rd *r)
{
    size_t idl;
    const uint8_t *id = rd_bytes(r, &idl);
    uint64_t count = rd_varint(r);
    td_cli_doc *d = r->bad ? NULL : find_doc(c, id, idl);
    if (!d)
        return;
    d->st.presence_msgs++;
    for (uint64_t i = 0; i < count && !r->bad; i++) {
        td_cli_peer p;
        p.session = rd_varint(r);
        p.agent = rd_varint(r);
        p.user = (const char *)rd_bytes(r, &p.user_len);
        p.state = rd_bytes(r, &p.state_len);
        if (r->bad)
            break;
        d->st.presence_entries++;
        peer_set(d, &p);
        if (c->cb.on_presence)
            c->cb.on_presence(d, &p, c->cb.ud);
    }
}

static void handle_leave(td_cli_conn *c, rd *r)
{
    size_t idl;
    const uint8_t *id = rd_bytes(r, &idl);
    uint64_t session = rd_varint(r);
    td_cli_doc *d = r->bad ? NULL : find_doc(c, id, idl);
    if (!d)
        return;
    d->st.leaves++;
    peer_remove(d, session);
    if (c->cb.on_leave)
        c->cb.on_leave(d, session, c->cb.ud);
}

/* Codes after which the batch is resent (100 ms later). agent_taken: on an
 * open server a reconnect can reach the server before the old connection's
 * close, which still holds the agent (PROTOCOL.md section 12); missing_ops:
 * the batch came behind one that must be resent first, which is resent
 * first since retries go in order. */
static int code_is_retry(uint64_t code)
{
    return code == TD_CLI_E_TOKEN_EXPIRED || code == TD_CLI_E_NOT_SUBSCRIBED ||
           code == TD_CLI_E_STORE_FAILED || code == TD_CLI_E_BUSY ||
           code == TD_CLI_E_INTERNAL || code == TD_CLI_E_LIMIT ||
           code == TD_CLI_E_AGENT_TAKEN || code == TD_CLI_E_MISSING_OPS ||
           code == TD_CLI_E_UNAVAILABLE;
}

static void handle_error(td_cli_conn *c, rd *r)
{
    size_t idl, ml;
    uint64_t code = rd_varint(r);
    const uint8_t *id = rd_bytes(r, &idl);
    uint64_t bid = rd_varint(r);
    const uint8_t *m = rd_bytes(r, &ml);
    if (r->bad)
        return;
    c->nerrors++;
    c->st.errors[code < TD_CLI_NCODES ? code : TD_CLI_NCODES - 1]++;
    memset(&c->last_err, 0, sizeof c->last_err);
    c->last_err.code = code;
    c->last_err.batch_id = bid;
    memcpy(c->last_err.doc, id, idl < 255 ? idl : 255);
    memcpy(c->last_err.msg, m, ml < 255 ? ml : 255);
    if (debug_on())
        fprintf(stderr, "td_client[%p]: ERROR %llu doc \"%.*s\" batch %llu: %.*s\n", (void *)c,
                (unsigned long long)code, (int)idl, (const char *)id, (unsigned long long)bid,
                (int)ml, (const char *)m);
    td_cli_doc *d = find_doc(c, id, idl);
    if (d && bid) {
        for (size_t k = 0; k < d->nun; k++) {
            if (d->un[k].id != bid)
                continue;
            if (code_is_retry(code)) {
                if (!d->un[k].retry_at_us)
                    c->ctx->retries++;
                d->un[k].retry_at_us = td_cli_now_us() + 100000;
            } else if (code != TD_CLI_E_SHUTTING_DOWN) {
                /* drop: the batch is rejected for good */
                if (d->un[k].retry_at_us)
                    c->ctx->retries--;
                free(d->un[k].bytes);
                memmove(&d->un[k], &d->un[k + 1], (d->nun - k - 1) * sizeof d->un[0]);
                d->nun--;
                d->st.batches_dropped++;
            }
            break;
        }
    }
    if (c->cb.on_error)
        c->cb.on_error(c, d, code, bid, (const char *)m, ml, c->cb.ud);
}

static void inbox_add(td_cli_conn *c, const uint8_t *msg, size_t len, int text)
{
    td_cli_msg *m = malloc(sizeof *m + (len ? len : 1));
    if (!m) {
        fprintf(stderr, "td_client: out of memory: a received message is lost\n");
        return;
    }
    m->next = NULL;
    m->len = len;
    m->is_text = text;
    memcpy(m->data, msg, len);
    if (c->in_tail)
        c->in_tail->next = m;
    else
        c->in_head = m;
    c->in_tail = m;
    c->in_count++;
}

static void handle_message(td_cli_conn *c, const uint8_t *msg, size_t len, int text)
{
    if (debug_on())
        fprintf(stderr, "td_client[%p]: recv %s type 0x%02x, %zu bytes\n", (void *)c,
                text ? "text" : "binary", len ? msg[0] : 0, len);
    c->st.msgs_recv++;
    c->st.bytes_recv += len;
    if (c->cb.on_message)
        c->cb.on_message(c, msg, len, text, c->cb.ud);
    if (c->raw) {
        inbox_add(c, msg, len, text);
        return;
    }
    if (text || len == 0)
        return;
    c->st.by_type[msg[0]]++;
    rd r = {msg, len, 1, 0};
    switch (msg[0]) {
    case TD_CLI_WELCOME: handle_welcome(c, &r); break;
    case TD_CLI_SYNC: handle_sync(c, &r); break;
    case TD_CLI_ACK: handle_ack(c, &r); break;
    case TD_CLI_REMOTE: handle_remote(c, &r); break;
    case TD_CLI_PEERS: handle_peers(c, &r); break;
    case TD_CLI_LEAVE: handle_leave(c, &r); break;
    case TD_CLI_ERROR: handle_error(c, &r); break;
    default: break;
    }
    if (r.bad)
        fprintf(stderr, "td_client: malformed message of type 0x%02x (%zu bytes)\n",
                msg[0], len);
}

/* ---- the lws callback ---------------------------------------------------- */

static void conn_closed(td_cli_conn *c, int code)
{
    if (debug_on())
        fprintf(stderr, "td_client[%p]: closed (%d, peer said %d)\n", (void *)c, code,
                c->close_code);
    c->wsi = NULL;
    c->state = TD_CLI_CLOSED;
    c->closing = 0;
    if (!c->close_code)
        c->close_code = code;
    queue_clear(c);
    c->rx.len = 0;
    for (size_t i = 0; i < c->ndocs; i++)
        c->docs[i]->synced = 0;
    if (c->cb.on_close && !c->ctx->destroying)
        c->cb.on_close(c, c->close_code, c->cb.ud);
}

static int write_queue(td_cli_conn *c, struct lws *wsi)
{
    while (c->qhead && !lws_send_pipe_choked(wsi)) {
        outmsg *m = c->qhead;
        int n = lws_write(wsi, m->data + LWS_PRE, m->len,
                          m->text ? LWS_WRITE_TEXT : LWS_WRITE_BINARY);
        if (n < (int)m->len)
            return -1;
        c->qhead = m->next;
        if (!c->qhead)
            c->qtail = NULL;
        c->queued -= m->len;
        c->st.msgs_sent++;
        c->st.bytes_sent += m->len;
        free(m);
    }
    if (c->qhead)
        lws_callback_on_writable(wsi);
    return 0;
}

static int cli_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                        void *in, size_t len)
{
    (void)user;
    td_cli_conn *c = lws_get_opaque_user_data(wsi);
    if (c && c->wsi != wsi) {
        if (c->opening && !c->wsi)
            c->wsi = wsi; /* a callback from inside lws_client_connect_via_info */
        else
            c = NULL; /* an abandoned wsi of an earlier generation */
    }
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (debug_on())
            fprintf(stderr, "td_client[%p]: established\n", (void *)c);
        if (!c)
            return -1;
        on_open(c);
        if (!c->reading)
            lws_rx_flow_control(wsi, 0);
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!c)
            return -1;
        if (lws_is_first_fragment(wsi)) {
            c->rx.len = 0;
            c->rx_text = !lws_frame_is_binary(wsi);
        }
        td_cli_put_raw(&c->rx, in, len);
        if (c->rx.oom)
            return -1;
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            handle_message(c, c->rx.data ? c->rx.data : (const uint8_t *)"", c->rx.len,
                           c->rx_text);
            c->rx.len = 0;
            if (c->rx.cap > (1u << 20)) { /* do not keep a huge buffer around */
                td_cli_buf_free(&c->rx);
            }
        }
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (!c)
            return -1;
        if (c->closing) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
            return -1;
        }
        return write_queue(c, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (c && len >= 2) {
            const uint8_t *p = in;
            c->close_code = (p[0] << 8) | p[1];
        }
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (debug_on())
            fprintf(stderr, "td_client[%p]: connection error: %.*s\n", (void *)c,
                    in ? (int)len : 0, in ? (const char *)in : "");
        if (c)
            conn_closed(c, -1);
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c)
            conn_closed(c, 1006);
        break;
    default:
        break;
    }
    return 0;
}

static struct lws_protocols protocols[] = {
    {"tandem-client", cli_callback, 0, 16384, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}
};

static const struct lws_extension deflate_exts[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_max_window_bits"},
    {NULL, NULL, NULL}
};

/* ---- context ------------------------------------------------------------- */

td_cli_ctx *td_cli_ctx_new(const td_cli_ctx_opts *opts)
{
    td_cli_ctx_opts o = {0};
    if (opts)
        o = *opts;
    td_cli_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    if (o.max_fds > 0) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)o.max_fds) {
            rl.rlim_cur = (rlim_t)o.max_fds;
            if (rl.rlim_max < rl.rlim_cur)
                rl.rlim_max = rl.rlim_cur; /* works as root, harmless otherwise */
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
                getrlimit(RLIMIT_NOFILE, &rl);
                rl.rlim_cur = rl.rlim_max;
                setrlimit(RLIMIT_NOFILE, &rl);
            }
        }
    }
    lws_set_log_level(LLL_ERR, NULL);
    static struct lws_protocols protos[2];
    memcpy(protos, protocols, sizeof protos);
    if (o.rx_buffer)
        protos[0].rx_buffer_size = o.rx_buffer;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protos;
    info.gid = -1;
    info.uid = -1;
    info.extensions = o.deflate ? deflate_exts : NULL;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    ctx->lws = lws_create_context(&info);
    if (!ctx->lws) {
        free(ctx);
        return NULL;
    }
    return ctx;
}

static void doc_free(td_cli_doc *d)
{
    for (size_t k = 0; k < d->nun; k++)
        free(d->un[k].bytes);
    free(d->un);
    for (size_t i = 0; i < d->npeers; i++) {
        free(d->peers[i].user);
        free(d->peers[i].state);
    }
    free(d->peers);
    if (d->crdt)
        td_crdt_doc_free(d->crdt);
    free(d);
}

static void conn_release(td_cli_conn *c)
{
    for (size_t i = 0; i < c->ndocs; i++)
        doc_free(c->docs[i]);
    free(c->docs);
    queue_clear(c);
    while (c->in_head) {
        td_cli_msg *m = c->in_head;
        c->in_head = m->next;
        free(m);
    }
    td_cli_buf_free(&c->rx);
    free(c->token);
    free(c);
}

void td_cli_ctx_free(td_cli_ctx *ctx)
{
    if (!ctx)
        return;
    ctx->destroying = 1;
    lws_sul_cancel(&ctx->wake);
    lws_context_destroy(ctx->lws);
    for (size_t i = 0; i < ctx->nconns; i++)
        conn_release(ctx->conns[i]);
    free(ctx->conns);
    free(ctx);
}

static void wake_cb(lws_sorted_usec_list_t *sul)
{
    (void)sul;
}

static void service_retries(td_cli_ctx *ctx)
{
    uint64_t now = td_cli_now_us();
    for (size_t i = 0; i < ctx->nconns && ctx->retries; i++) {
        td_cli_conn *c = ctx->conns[i];
        for (size_t j = 0; j < c->ndocs; j++) {
            td_cli_doc *d = c->docs[j];
            for (size_t k = 0; k < d->nun; k++) {
                pend_batch *pb = &d->un[k];
                if (!pb->retry_at_us || pb->retry_at_us > now || !online(c))
                    continue;
                pb->retry_at_us = 0;
                ctx->retries--;
                send_update(d, pb);
            }
        }
    }
}

int td_cli_service(td_cli_ctx *ctx, int timeout_ms)
{
    if (ctx->retries)
        service_retries(ctx);
    if (timeout_ms <= 0)
        return lws_service(ctx->lws, -1) < 0 ? -1 : 0;
    if (ctx->retries && timeout_ms > 20)
        timeout_ms = 20;
    lws_sul_schedule(ctx->lws, 0, &ctx->wake, wake_cb,
                     (lws_usec_t)timeout_ms * LWS_US_PER_MS);
    int rc = lws_service(ctx->lws, 0);
    lws_sul_cancel(&ctx->wake);
    return rc < 0 ? -1 : 0;
}

int td_cli_wait(td_cli_ctx *ctx, int (*pred)(void *arg), void *arg, int timeout_ms)
{
    uint64_t deadline = td_cli_now_us() + (uint64_t)timeout_ms * 1000u;
    for (;;) {
        if (pred && pred(arg))
            return 1;
        uint64_t now = td_cli_now_us();
        if (now >= deadline)
            return pred ? pred(arg) != 0 : 1;
        uint64_t left_ms = (deadline - now + 999) / 1000;
        if (td_cli_service(ctx, (int)(left_ms < 50 ? left_ms : 50)) < 0)
            return pred ? pred(arg) != 0 : 0;
    }
}

/* ---- connections --------------------------------------------------------- */

static int parse_url(td_cli_conn *c, const char *url)
{
    const char *p = url;
    if (strncmp(p, "ws://", 5) == 0)
        p += 5;
    else
        return -1;
    const char *colon = strchr(p, ':');
    const char *slash = strchr(p, '/');
    if (!slash)
        slash = p + strlen(p);
    if (!colon || colon > slash || (size_t)(colon - p) >= sizeof c->host)
        return -1;
    memcpy(c->host, p, (size_t)(colon - p));
    c->host[colon - p] = 0;
    c->port = atoi(colon + 1);
    if (c->port <= 0 || c->port > 65535)
        return -1;
    snprintf(c->path, sizeof c->path, "%s", *slash ? slash : "/");
    return 0;
}

static int open_wsi(td_cli_conn *c)
{
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = c->ctx->lws;
    ci.address = c->host;
    ci.port = c->port;
    ci.path = c->path;
    ci.host = c->host;
    ci.origin = c->host;
    ci.protocol = c->has_subprotocol ? c->subprotocol : NULL;
    ci.local_protocol_name = "tandem-client";
    ci.ietf_version_or_minus_one = -1;
    ci.opaque_user_data = c;
    /* no pwsi: lws would clear it when this wsi dies, which may be long
     * after a reconnect gave c a new one */
    c->state = TD_CLI_CONNECTING;
    c->close_code = 0;
    c->closing = 0;
    c->session = 0;
    c->wsi = NULL;
    c->opening = 1;
    struct lws *w = lws_client_connect_via_info(&ci);
    c->opening = 0;
    if (!w) {
        c->wsi = NULL;
        c->state = TD_CLI_CLOSED;
        if (!c->close_code)
            c->close_code = -1;
        return -1;
    }
    if (c->state == TD_CLI_CLOSED) /* failed inside the call */
        return -1;
    c->wsi = w;
    return 0;
}

td_cli_conn *td_cli_connect(td_cli_ctx *ctx, const char *url,
                            const td_cli_conn_opts *opts)
{
    td_cli_conn_opts o = {0};
    if (opts)
        o = *opts;
    td_cli_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->ctx = ctx;
    c->reading = 1;
    c->agent = o.agent ? o.agent : td_cli_random64();
    c->cb = o.cb;
    c->no_hello = o.no_hello || o.raw;
    c->raw = o.raw;
    if (o.token && *o.token && !(c->token = strdup(o.token)))
        goto fail;
    if (o.subprotocol) {
        snprintf(c->subprotocol, sizeof c->subprotocol, "%s", o.subprotocol);
        c->has_subprotocol = 1;
    }
    if (parse_url(c, url) < 0)
        goto fail;
    if (ctx->nconns == ctx->capconns) {
        size_t cap = ctx->capconns ? ctx->capconns * 2 : 16;
        td_cli_conn **p = realloc(ctx->conns, cap * sizeof *p);
        if (!p)
            goto fail;
        ctx->conns = p;
        ctx->capconns = cap;
    }
    c->slot = ctx->nconns;
    ctx->conns[ctx->nconns++] = c;
    open_wsi(c);
    return c;
fail:
    free(c->token);
    free(c);
    return NULL;
}

/* Abandons the current wsi: its callbacks no longer find c; it closes. */
static void detach_wsi(td_cli_conn *c)
{
    if (!c->wsi)
        return;
    struct lws *w = c->wsi;
    lws_set_opaque_user_data(w, NULL);
    c->wsi = NULL;
    lws_callback_on_writable(w);
    conn_closed(c, 1000);
}

int td_cli_reconnect(td_cli_conn *c)
{
    detach_wsi(c);
    queue_clear(c);
    return open_wsi(c);
}

void td_cli_close(td_cli_conn *c)
{
    if (!c->wsi)
        return;
    c->closing = 1;
    lws_callback_on_writable(c->wsi);
}

void td_cli_conn_free(td_cli_conn *c)
{
    if (!c)
        return;
    td_cli_ctx *ctx = c->ctx;
    c->cb.on_close = NULL;
    detach_wsi(c);
    for (size_t i = 0; i < c->ndocs; i++)
        for (size_t k = 0; k < c->docs[i]->nun; k++)
            if (c->docs[i]->un[k].retry_at_us)
                ctx->retries--;
    ctx->conns[c->slot] = ctx->conns[--ctx->nconns];
    ctx->conns[c->slot]->slot = c->slot;
    conn_release(c);
}

td_cli_state td_cli_conn_state(const td_cli_conn *c) { return c->state; }
int td_cli_close_code(const td_cli_conn *c) { return c->close_code; }
uint64_t td_cli_session(const td_cli_conn *c) { return c->session; }
uint64_t td_cli_agent(const td_cli_conn *c) { return c->agent; }
size_t td_cli_queued(const td_cli_conn *c) { return c->queued; }
const td_cli_stats *td_cli_conn_stats(const td_cli_conn *c) { return &c->st; }
uint64_t td_cli_error_count(const td_cli_conn *c) { return c->nerrors; }

void td_cli_stats_reset(td_cli_conn *c)
{
    td_cli_stats keep = c->st;
    memset(&c->st, 0, sizeof c->st);
    c->st.welcome_max_frame = keep.welcome_max_frame;
    c->st.welcome_max_batch = keep.welcome_max_batch;
    c->st.welcome_rights = keep.welcome_rights;
    c->st.welcome_expires = keep.welcome_expires;
    c->st.presence_interval_ms = keep.presence_interval_ms;
    c->st.presence_ttl_ms = keep.presence_ttl_ms;
}

void td_cli_last_error(const td_cli_conn *c, td_cli_error *out)
{
    *out = c->last_err;
}

int td_cli_set_token(td_cli_conn *c, const char *token, int send)
{
    char *t = NULL;
    if (token && *token && !(t = strdup(token)))
        return -1;
    free(c->token);
    c->token = t;
    return send && online(c) ? send_hello(c) : 0;
}

void td_cli_set_reading(td_cli_conn *c, int on)
{
    c->reading = on;
    if (c->wsi && c->state >= TD_CLI_OPEN)
        lws_rx_flow_control(c->wsi, on);
}

int td_cli_send_raw(td_cli_conn *c, const void *msg, size_t len, int is_text)
{
    return online(c) ? queue_msg(c, msg, len, is_text) : -1;
}

/* ---- documents ----------------------------------------------------------- */

td_cli_doc *td_cli_subscribe(td_cli_conn *c, const char *doc_id,
                             const td_cli_doc_opts *opts)
{
    size_t idl = strlen(doc_id);
    if (idl > 255)
        return NULL;
    td_cli_doc *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    if (opts)
        d->opts = *opts;
    d->conn = c;
    memcpy(d->id, doc_id, idl);
    d->id_len = idl;
    d->next_id = 1;
    if (!d->opts.no_replica) {
        td_crdt_options co = {0};
        if (d->opts.crdt)
            co = *d->opts.crdt;
        if (!co.agent)
            co.agent = c->agent;
        d->opts.crdt = NULL;
        if (td_crdt_doc_new(&co, &d->crdt) != TD_CRDT_OK) {
            free(d);
            return NULL;
        }
    }
    if (c->ndocs == c->capdocs) {
        size_t cap = c->capdocs ? c->capdocs * 2 : 4;
        td_cli_doc **p = realloc(c->docs, cap * sizeof *p);
        if (!p) {
            doc_free(d);
            return NULL;
        }
        c->docs = p;
        c->capdocs = cap;
    }
    c->docs[c->ndocs++] = d;
    if (online(c) && !c->no_hello)
        send_subscribe(d);
    return d;
}

void td_cli_unsubscribe(td_cli_doc *d)
{
    td_cli_conn *c = d->conn;
    if (online(c)) {
        td_cli_buf b = {0};
        td_cli_put_u8(&b, TD_CLI_UNSUBSCRIBE);
        td_cli_put_bytes(&b, d->id, d->id_len);
        queue_buf(c, &b);
    }
    for (size_t i = 0; i < c->ndocs; i++) {
        if (c->docs[i] == d) {
            c->docs[i] = c->docs[--c->ndocs];
            break;
        }
    }
    for (size_t k = 0; k < d->nun; k++)
        if (d->un[k].retry_at_us)
            c->ctx->retries--;
    doc_free(d);
}

int td_cli_resubscribe(td_cli_doc *d)
{
    return online(d->conn) ? send_subscribe(d) : 0;
}

td_crdt_doc *td_cli_doc_crdt(td_cli_doc *d) { return d->crdt; }
td_cli_conn *td_cli_doc_conn(td_cli_doc *d) { return d->conn; }
const char *td_cli_doc_id(const td_cli_doc *d) { return d->id; }
uint64_t td_cli_doc_syncs(const td_cli_doc *d) { return d->syncs; }
int td_cli_doc_synced(const td_cli_doc *d) { return d->synced; }
size_t td_cli_unacked(const td_cli_doc *d) { return d->nun; }
const td_cli_doc_stats *td_cli_doc_stats_get(const td_cli_doc *d) { return &d->st; }

/* Takes ownership of bytes (malloc'd). */
static int track_batch(td_cli_doc *d, uint8_t *bytes, size_t len, uint64_t *batch_id)
{
    if (d->nun == d->capun) {
        size_t cap = d->capun ? d->capun * 2 : 8;
        pend_batch *p = realloc(d->un, cap * sizeof *p);
        if (!p) {
            free(bytes);
            return -1;
        }
        d->un = p;
        d->capun = cap;
    }
    pend_batch *pb = &d->un[d->nun++];
    memset(pb, 0, sizeof *pb);
    pb->id = d->next_id++;
    pb->bytes = bytes;
    pb->len = len;
    if (batch_id)
        *batch_id = pb->id;
    if (online(d->conn) && !d->conn->no_hello)
        send_update(d, pb);
    return 0;
}

int td_cli_commit(td_cli_doc *d, uint64_t *batch_id)
{
    uint8_t *out = NULL;
    size_t len = 0;
    if (batch_id)
        *batch_id = 0;
    if (!d->crdt || td_crdt_commit(d->crdt, &out, &len) != TD_CRDT_OK)
        return -1;
    if (!out)
        return 0;
    uint8_t *copy = malloc(len);
    if (!copy) {
        td_crdt_buf_free(d->crdt, out);
        return -1;
    }
    memcpy(copy, out, len);
    td_crdt_buf_free(d->crdt, out);
    return track_batch(d, copy, len, batch_id);
}

int td_cli_send_batch(td_cli_doc *d, const uint8_t *batch, size_t len,
                      uint64_t *batch_id)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return -1;
    if (len)
        memcpy(copy, batch, len);
    return track_batch(d, copy, len, batch_id);
}

char *td_cli_doc_json(td_cli_doc *d)
{
    char *js = NULL, *copy;
    size_t len = 0;
    if (!d->crdt || td_crdt_to_json(d->crdt, &js, &len) != TD_CRDT_OK)
        return NULL;
    copy = malloc(len + 1);
    if (copy)
        memcpy(copy, js, len + 1);
    td_crdt_buf_free(d->crdt, js);
    return copy;
}

char *td_cli_doc_text(td_cli_doc *d, const char *name)
{
    td_crdt_obj t;
    char *s = NULL, *copy;
    size_t len = 0;
    if (!d->crdt || td_crdt_root(d->crdt, TD_CRDT_TEXT, name, strlen(name), &t) != TD_CRDT_OK)
        return NULL;
    if (td_crdt_text_get(d->crdt, t, &s, &len) != TD_CRDT_OK)
        return NULL;
    copy = malloc(len + 1);
    if (copy)
        memcpy(copy, s, len + 1);
    td_crdt_buf_free(d->crdt, s);
    return copy;
}

/* ---- presence ------------------------------------------------------------ */

int td_cli_presence(td_cli_doc *d, const void *state, size_t len)
{
    if (!online(d->conn))
        return -1;
    td_cli_buf b = {0};
    td_cli_put_u8(&b, TD_CLI_PRESENCE);
    td_cli_put_bytes(&b, d->id, d->id_len);
    td_cli_put_bytes(&b, state, len);
    return queue_buf(d->conn, &b);
}

size_t td_cli_peer_count(const td_cli_doc *d) { return d->npeers; }

int td_cli_peer_get(const td_cli_doc *d, uint64_t session, td_cli_peer *out)
{
    for (size_t i = 0; i < d->npeers; i++) {
        const peer *e = &d->peers[i];
        if (e->session != session)
            continue;
        out->session = e->session;
        out->agent = e->agent;
        out->user = e->user;
        out->user_len = e->user_len;
        out->state = e->state;
        out->state_len = e->state_len;
        return 1;
    }
    return 0;
}

/* ---- waiting on one connection, and the inbox ----------------------------- */

static int is_open(void *arg)
{
    const td_cli_conn *c = arg;
    return c->state == TD_CLI_OPEN || c->state == TD_CLI_READY;
}

static int is_closed(void *arg)
{
    const td_cli_conn *c = arg;
    return c->state == TD_CLI_CLOSED;
}

int td_cli_wait_open(td_cli_conn *c, int timeout_ms)
{
    td_cli_wait(c->ctx, is_open, c, timeout_ms);
    return is_open(c);
}

int td_cli_wait_closed(td_cli_conn *c, int timeout_ms)
{
    return td_cli_wait(c->ctx, is_closed, c, timeout_ms);
}

typedef struct expect_arg {
    td_cli_conn *c;
    int type;
    td_cli_msg *found;
} expect_arg;

static int take_msg(void *arg)
{
    expect_arg *e = arg;
    td_cli_conn *c = e->c;
    td_cli_msg *prev = NULL;
    for (td_cli_msg *m = c->in_head; m; prev = m, m = m->next) {
        if (e->type != 0 && (m->len == 0 || m->data[0] != e->type))
            continue;
        if (prev)
            prev->next = m->next;
        else
            c->in_head = m->next;
        if (c->in_tail == m)
            c->in_tail = prev;
        c->in_count--;
        m->next = NULL;
        e->found = m;
        return 1;
    }
    return c->state == TD_CLI_CLOSED;
}

td_cli_msg *td_cli_expect(td_cli_conn *c, int type, int timeout_ms)
{
    expect_arg e = {c, type, NULL};
    td_cli_wait(c->ctx, take_msg, &e, timeout_ms);
    return e.found;
}

void td_cli_msg_free(td_cli_msg *m)
{
    free(m);
}

size_t td_cli_inbox_count(const td_cli_conn *c)
{
    return c->in_count;
}
