/*
 * srv_yws.c -- the y-websocket front-end (srv_yws.h).
 *
 * One connection, one document (the room in the URL), one subscription.
 * The provider opens with sync step 1 (its state vector): that is the
 * subscription, answered with step 2 (what it lacks) and the server's own
 * step 1, to which the provider replies with step 2 (what the server
 * lacks). Every update and step 2 goes to the service as one batch; the
 * service broadcasts it only once it is durable.
 *
 * A y-websocket provider has no acknowledgements and no error messages.
 * So a refusal it could repair by resyncing (the store failed, the server
 * is busy or shutting down, the document reloads) closes the connection:
 * the provider reconnects and its step 2 carries whatever the server
 * lacks. A refusal it cannot repair (read-only token, wrong document kind,
 * malformed input) is an auth "permission denied" message -- the provider
 * logs it -- and, except for read-only writes, a close.
 *
 * Messages that arrive while the document loads wait (in order) until the
 * sync has gone out, then td_srv_yws_replay() runs them.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv_yaware.h"
#include "srv_yws.h"

/* Held back while the document loads: per connection. */
#define PEND_MAX_MSGS 1024
#define PEND_MAX_BYTES (16u << 20)
/* A provider that hears nothing for 30 s reconnects (messageReconnectTimeout
 * of y-websocket): a lone idle client must hear something. */
#define KEEPALIVE_US (10 * LWS_US_PER_SEC)
/* Client ids in the presence namespace: apart from the native front-end's. */
#define YWS_ID_BASE ((uint64_t)1 << 62)

typedef struct pend {
    struct pend *next;
    size_t len;
    uint8_t data[];
} pend;

typedef struct ysess {
    td_srv_conn conn; /* first: the conn's handler gets &conn */
    td_srv_client client;
    td_srv_yws *y;
    td_srv_token tok;
    char doc[TD_SRV_DOC_MAX + 1];
    size_t doc_len;
    td_srv_sub *sub; /* NULL until the first sync step 1 */
    uint64_t next_batch;
    td_srv_yaware aw;
    pend *held_head, *held_tail; /* while the sub waits for its sync */
    pend *ready_head, *ready_tail;
    size_t pend_n, pend_bytes;
    int in_replay;
    struct ysess *replay_next;
    int64_t last_sent_us;
} ysess;

struct td_srv_yws {
    td_srv_yws_env env;
    uint64_t next_id;
    ysess *replay_head;
};

#define YSESS(c) ((ysess *)(void *)((char *)(c) - offsetof(ysess, client)))

/* ---- sending ------------------------------------------------------------------- */

static void send_wbuf(ysess *s, td_srv_wbuf *w)
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

static void send_sync(ysess *s, td_srv_y_sync step, const uint8_t *p, size_t len)
{
    td_srv_wbuf w;
    td_srv_wbuf_init(&w, LWS_PRE);
    td_srv_y_put_sync(&w, step, p, len);
    send_wbuf(s, &w);
}

static void send_denied(ysess *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_denied(ysess *s, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    td_srv_wbuf w;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    td_srv_wbuf_init(&w, LWS_PRE);
    td_srv_y_put_auth(&w, TD_SRV_Y_AUTH_DENIED, text, strlen(text));
    send_wbuf(s, &w);
}

static void send_awareness(ysess *s, td_srv_wbuf *entries, uint64_t n)
{
    td_srv_wbuf w;
    if (entries->oom) {
        td_srv_wbuf_free(entries);
        td_srv_conn_close_with(&s->conn, 1011);
        return;
    }
    if (n) {
        td_srv_wbuf_init(&w, LWS_PRE);
        td_srv_y_put_awareness(&w, n, td_srv_wbuf_msg(entries), entries->len);
        send_wbuf(s, &w);
    }
    td_srv_wbuf_free(entries);
}

/* A refusal: counted, told, and the connection closed with `close` (0:
 * stays open). */
static void refuse(ysess *s, td_srv_code code, int close, const char *why)
{
    if (code < TD_SRV_E_COUNT)
        s->y->env.m->errors[code]++;
    send_denied(s, "%s: %s", td_srv_code_name(code), why);
    if (close)
        td_srv_conn_close_with(&s->conn, close);
}

/* ---- the subscriber interface ---------------------------------------------------- */

static void held_release(ysess *s);

static void on_sync(td_srv_sub *u, const uint8_t *diff, size_t dlen, const uint8_t *vv,
                    size_t vv_len)
{
    ysess *s = YSESS(u->client);
    send_sync(s, TD_SRV_Y_STEP2, diff, dlen);
    send_sync(s, TD_SRV_Y_STEP1, vv, vv_len);
    held_release(s);
}

static void on_ack(td_srv_client *c, const char *doc, size_t doc_len, uint64_t batch_id)
{
    /* y-websocket has no acknowledgement: the durable write shows as the
     * broadcast to the others. */
    (void)c, (void)doc, (void)doc_len, (void)batch_id;
}

/* What a provider is told per refusal: the close code (0: none) -- see the
 * head of this file. */
static const struct {
    td_srv_code code;
    int close;
} closes[] = {
    {TD_SRV_E_STORE_FAILED, 1011}, {TD_SRV_E_BUSY, 1013},     {TD_SRV_E_SHUTTING_DOWN, 1012},
    {TD_SRV_E_UNAVAILABLE, 1013},
    {TD_SRV_E_INTERNAL, 1011},     {TD_SRV_E_DOC_UNAVAILABLE, 1011},
    {TD_SRV_E_WRONG_KIND, 1008},   {TD_SRV_E_INVALID_BATCH, 1007},
    {TD_SRV_E_TOO_LARGE, 1009},    {TD_SRV_E_LIMIT, 1008},    {TD_SRV_E_BAD_MESSAGE, 1007},
};

static void on_error(td_srv_client *c, td_srv_code code, const char *doc, size_t doc_len,
                     uint64_t batch_id, const char *msg)
{
    ysess *s = YSESS(c);
    int close = 1011;
    (void)doc, (void)doc_len, (void)batch_id;
    for (size_t i = 0; i < sizeof closes / sizeof closes[0]; i++)
        if (closes[i].code == code)
            close = closes[i].close;
    refuse(s, code, close, msg);
}

/* A broadcast's frames, one sync update per batch (a provider reads one
 * message per WebSocket message), encoded once for every receiver that
 * shares them. */
typedef struct yframes {
    size_t n;
    td_srv_frame *f[];
} yframes;

static void yframes_free(void *p)
{
    yframes *fs = p;
    for (size_t i = 0; i < fs->n; i++)
        td_srv_frame_unref(fs->f[i]);
    free(fs);
}

/* NULL when out of memory. */
static yframes *yframes_of(const td_srv_bcast *b)
{
    const void *pos = NULL;
    const uint8_t *batch;
    size_t len, n = 0;
    while (td_srv_bcast_next(b, &pos, &batch, &len))
        n++;
    yframes *fs = malloc(sizeof *fs + n * sizeof fs->f[0]);
    if (!fs)
        return NULL;
    fs->n = 0;
    pos = NULL;
    while (td_srv_bcast_next(b, &pos, &batch, &len)) {
        td_srv_wbuf w;
        td_srv_wbuf_init(&w, LWS_PRE);
        td_srv_y_put_sync(&w, TD_SRV_Y_UPDATE, batch, len);
        if (!(fs->f[fs->n] = td_srv_frame_from(&w))) {
            yframes_free(fs);
            return NULL;
        }
        fs->n++;
    }
    return fs;
}

static void on_broadcast(td_srv_sub *u, td_srv_bcast *b)
{
    ysess *s = YSESS(u->client);
    /* The sender's own batches are left out of its copy: that one is its
     * own (b->skip); everyone else shares b->shared. Only this front-end
     * fills the slot: a Yjs document's other subscribers are Hocuspocus
     * ones, which encode per document address and leave it alone. */
    yframes *fs = b->skip ? yframes_of(b) : b->shared;
    if (!fs && !b->skip && (fs = yframes_of(b)) != NULL) {
        b->shared = fs;
        b->shared_free = yframes_free;
    }
    if (!fs) {
        td_srv_conn_close_with(&s->conn, 1011);
        return;
    }
    for (size_t i = 0; i < fs->n; i++)
        td_srv_conn_send(&s->conn, fs->f[i]);
    if (fs->n)
        s->last_sent_us = td_srv_now_us();
    if (b->skip)
        yframes_free(fs);
}

static void on_peers(td_srv_sub *u, td_srv_peers *ps)
{
    ysess *s = YSESS(u->client);
    td_srv_wbuf entries;
    uint64_t n;
    td_srv_wbuf_init(&entries, 0);
    if (td_srv_yaware_peers(&s->aw, ps, &entries, &n) < 0)
        entries.oom = 1;
    send_awareness(s, &entries, n);
}

static void on_leave(td_srv_sub *u, uint64_t peer)
{
    ysess *s = YSESS(u->client);
    td_srv_wbuf entries;
    uint64_t n;
    td_srv_wbuf_init(&entries, 0);
    td_srv_yaware_leave(&s->aw, peer, &entries, &n);
    send_awareness(s, &entries, n);
}

static void pend_free(ysess *s, pend *p)
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
    ysess *s = YSESS(u->client);
    pend_free(s, s->held_head);
    s->held_head = s->held_tail = NULL;
    s->sub = NULL;
    if (!s->conn.close_code)
        td_srv_conn_close_with(&s->conn, 1011);
}

static const td_srv_client_ops yws_ops = {on_sync, on_ack,   on_error,  on_broadcast,
                                          on_peers, on_leave, on_dropped};

/* ---- messages held back ------------------------------------------------------------ */

static int held_defer(ysess *s, const uint8_t *raw, size_t len)
{
    pend *p;
    if (!s->held_head && !(s->sub && s->sub->waiting))
        return 0;
    if (s->pend_n && (s->pend_n >= PEND_MAX_MSGS || s->pend_bytes + len > PEND_MAX_BYTES)) {
        refuse(s, TD_SRV_E_BUSY, 1013, "too many messages wait for the document to load");
        return 1;
    }
    p = malloc(sizeof *p + len);
    if (!p) {
        refuse(s, TD_SRV_E_INTERNAL, 1011, "out of memory");
        return 1;
    }
    p->next = NULL;
    p->len = len;
    memcpy(p->data, raw, len);
    if (s->held_tail)
        s->held_tail->next = p;
    else
        s->held_head = p;
    s->held_tail = p;
    s->pend_n++;
    s->pend_bytes += len;
    return 1;
}

static void held_release(ysess *s)
{
    td_srv_yws *y = s->y;
    if (!s->held_head)
        return;
    if (s->ready_tail)
        s->ready_tail->next = s->held_head;
    else
        s->ready_head = s->held_head;
    s->ready_tail = s->held_tail;
    s->held_head = s->held_tail = NULL;
    if (!s->in_replay) {
        s->in_replay = 1;
        s->replay_next = y->replay_head;
        y->replay_head = s;
    }
}

/* ---- tokens -------------------------------------------------------------------------- */

static int token_expired(ysess *s)
{
    return s->tok.expires && (uint64_t)time(NULL) >= s->tok.expires;
}

static int may(const ysess *s, uint64_t right)
{
    return (s->tok.rights & right) == right;
}

/* ---- the messages ----------------------------------------------------------------- */

static void subscribe(ysess *s, const uint8_t *sv, size_t len)
{
    td_srv_subscribe(s->y->env.svc, &s->client, (const uint8_t *)s->doc, s->doc_len, sv, len);
    s->sub = td_srv_sub_find(&s->client, (const uint8_t *)s->doc, s->doc_len);
}

static void on_update(ysess *s, const td_srv_ymsg *m)
{
    if (!may(s, TD_SRV_RIGHT_WRITE)) {
        /* The provider keeps its edit and logs the refusal; nothing of it
         * reaches the document or the others. */
        refuse(s, TD_SRV_E_READ_ONLY, 0, "the token does not grant writing");
        return;
    }
    if (m->len > s->y->env.cfg->max_batch) {
        refuse(s, TD_SRV_E_TOO_LARGE, 1009, "update too large");
        return;
    }
    s->y->env.m->proto_updates[TD_SRV_PROTO_YWS]++;
    td_srv_update(s->y->env.svc, s->sub, ++s->next_batch, m->data, m->len);
}

static void on_awareness(ysess *s, const td_srv_ymsg *m)
{
    const td_srv_config *cfg = s->y->env.cfg;
    size_t count;
    const char *why = "";
    td_srv_code rc;
    td_srv_wbuf state;
    if (!may(s, TD_SRV_RIGHT_PRESENCE))
        return; /* read-only tokens may see awareness; without presence, not show it */
    rc = td_srv_yaw_check(m->data, m->len, TD_SRV_YAW_OWN_MAX, cfg->max_presence, &count, &why);
    if (rc != TD_SRV_E_OK) {
        refuse(s, rc, rc == TD_SRV_E_BAD_MESSAGE ? 1007 : 1009, why);
        return;
    }
    if (td_srv_yaware_take(&s->aw, m->data, m->len, &state) < 0) {
        td_srv_wbuf_free(&state);
        refuse(s, TD_SRV_E_INTERNAL, 1011, "out of memory");
        return;
    }
    /* Nothing it may change: still a sign of life. */
    td_srv_presence_update(s->y->env.svc, s->sub, state.len ? td_srv_wbuf_msg(&state) : NULL,
                           state.len);
    td_srv_wbuf_free(&state);
}

static void dispatch(ysess *s, const uint8_t *raw, size_t len)
{
    td_srv_ymsg m;
    const char *why = "";
    td_srv_code rc;
    if (s->conn.close_code)
        return;
    rc = td_srv_ymsg_decode(raw, len, &m, &why);
    if (rc != TD_SRV_E_OK) {
        refuse(s, rc, rc == TD_SRV_E_UNKNOWN_TYPE ? 1003 : 1007, why);
        return;
    }
    if (token_expired(s)) {
        refuse(s, TD_SRV_E_TOKEN_EXPIRED, 1008, "token expired");
        return;
    }
    if (held_defer(s, raw, len))
        return;
    if (m.type == TD_SRV_Y_SYNC && m.sub == TD_SRV_Y_STEP1) {
        subscribe(s, m.data, m.len);
        return;
    }
    if (m.type == TD_SRV_Y_AUTH)
        return; /* only servers send it */
    /* Anything else before step 1: subscribe from nothing first (the
     * answer is the whole document), then hold it back like the rest. */
    if (!s->sub) {
        subscribe(s, NULL, 0);
        if (!s->sub || held_defer(s, raw, len))
            return;
    }
    switch (m.type) {
    case TD_SRV_Y_SYNC:
        on_update(s, &m);
        break;
    case TD_SRV_Y_AWARENESS:
        on_awareness(s, &m);
        break;
    case TD_SRV_Y_QUERY_AWARENESS:
        td_srv_presence_query(s->y->env.svc, s->sub);
        break;
    }
}

static void on_message(td_srv_conn *c, const uint8_t *buf, size_t len)
{
    ysess *s = (ysess *)(void *)c;
    if (s->y->replay_head)
        td_srv_yws_replay(s->y); /* released messages go first */
    s->y->env.m->proto_msgs_in[TD_SRV_PROTO_YWS]++;
    dispatch(s, buf, len);
}

void td_srv_yws_replay(td_srv_yws *y)
{
    while (y->replay_head) {
        ysess *s = y->replay_head;
        y->replay_head = s->replay_next;
        s->replay_next = NULL;
        s->in_replay = 0;
        while (s->ready_head) {
            pend *p = s->ready_head;
            s->ready_head = p->next;
            if (!s->ready_head)
                s->ready_tail = NULL;
            s->pend_n--;
            s->pend_bytes -= p->len;
            dispatch(s, p->data, p->len);
            free(p);
        }
    }
}

/* ---- life cycle ----------------------------------------------------------------------- */

static void on_timer(td_srv_conn *c)
{
    ysess *s = (ysess *)(void *)c;
    if (token_expired(s)) {
        refuse(s, TD_SRV_E_TOKEN_EXPIRED, 1008, "token expired");
        return;
    }
    /* An awareness update with no entries: a no-op for the provider that
     * proves the connection alive. */
    if (td_srv_now_us() - s->last_sent_us >= KEEPALIVE_US - LWS_US_PER_SEC) {
        static const uint8_t none[] = {TD_SRV_Y_AWARENESS, 1, 0};
        td_srv_wbuf w;
        td_srv_wbuf_init(&w, LWS_PRE);
        td_srv_put_raw(&w, none, sizeof none);
        send_wbuf(s, &w);
    }
    lws_set_timer_usecs(c->wsi, KEEPALIVE_US);
}

static void on_closed(td_srv_conn *c)
{
    ysess *s = (ysess *)(void *)c;
    td_srv_yws *y = s->y;
    pend_free(s, s->held_head);
    pend_free(s, s->ready_head);
    td_srv_client_close(y->env.svc, &s->client);
    if (s->in_replay)
        for (ysess **p = &y->replay_head; *p; p = &(*p)->replay_next)
            if (*p == s) {
                *p = s->replay_next;
                break;
            }
    y->env.m->proto_conns[TD_SRV_PROTO_YWS]--;
    td_srv_yaware_free(&s->aw);
    free(s);
}

static const td_srv_conn_handler yws_handler = {on_message, on_timer, on_closed};

/* The token of the URL, or the open server's grant. */
static td_srv_code check_token(ysess *s, const char *tok, size_t len, const char **why)
{
    const uint8_t *pk = s->y->env.pk;
    td_srv_code rc;
    if (!pk) {
        s->tok.rights = TD_SRV_RIGHT_READ | TD_SRV_RIGHT_WRITE | TD_SRV_RIGHT_PRESENCE;
        return TD_SRV_E_OK;
    }
    if (!tok || !len) {
        *why = "this server requires a token (?token=)";
        return TD_SRV_E_AUTH_REQUIRED;
    }
    rc = td_srv_token_verify(tok, len, pk, (uint64_t)time(NULL), &s->tok);
    if (rc != TD_SRV_E_OK) {
        *why = rc == TD_SRV_E_TOKEN_EXPIRED ? "token expired" : "token malformed or forged";
        return rc;
    }
    if (!(s->tok.rights & TD_SRV_RIGHT_READ) ||
        !td_srv_pattern_match(s->tok.pattern, s->tok.pattern_len, s->doc, s->doc_len)) {
        *why = "the token does not grant this document";
        return TD_SRV_E_FORBIDDEN;
    }
    return TD_SRV_E_OK;
}

td_srv_conn *td_srv_yws_open(td_srv_yws *y, struct lws *wsi, const char *room,
                             size_t room_len, const char *token, size_t token_len)
{
    ysess *s = calloc(1, sizeof *s);
    const char *why = "";
    td_srv_code rc = TD_SRV_E_OK;
    if (!s)
        return NULL;
    s->y = y;
    td_srv_conn_open(y->env.conns, &s->conn, wsi, &yws_handler);
    td_srv_client_init(&s->client, &yws_ops);
    s->client.id = YWS_ID_BASE + ++y->next_id;
    s->client.kind = TD_STORE_KIND_YJS;
    s->last_sent_us = td_srv_now_us();
    y->env.m->proto_conns[TD_SRV_PROTO_YWS]++;
    y->env.m->proto_conns_total[TD_SRV_PROTO_YWS]++;
    if (!td_srv_doc_id_valid((const uint8_t *)room, room_len)) {
        rc = TD_SRV_E_BAD_DOC_ID;
        why = "the room (the path after /yjs/) is not a valid document id";
    } else {
        memcpy(s->doc, room, room_len);
        s->doc_len = room_len;
        rc = check_token(s, token, token_len, &why);
    }
    if (rc != TD_SRV_E_OK) {
        refuse(s, rc, 1008, why);
        return &s->conn;
    }
    if (td_srv_yaware_attach(&s->aw, y->env.rooms, s->doc, s->doc_len, s->client.id) < 0) {
        refuse(s, TD_SRV_E_INTERNAL, 1011, "out of memory");
        return &s->conn;
    }
    s->client.user = s->tok.user;
    s->client.user_len = s->tok.user_len;
    s->client.author = s->tok.user;
    s->client.author_len = s->tok.user_len;
    s->client.author_durable = y->env.pk != NULL;
    td_srv_conn_authenticated(&s->conn);
    lws_set_timer_usecs(wsi, KEEPALIVE_US);
    return &s->conn;
}

int td_srv_yws_new(td_srv_yws **out, const td_srv_yws_env *env)
{
    td_srv_yws *y = calloc(1, sizeof *y);
    if (!y)
        return -1;
    y->env = *env;
    *out = y;
    return 0;
}

void td_srv_yws_free(td_srv_yws *y)
{
    free(y);
}
