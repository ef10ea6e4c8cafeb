/*
 * srv_conn.c -- one WebSocket connection as a transport (srv_conn.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv_conn.h"

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

void td_srv_frame_unref(td_srv_frame *f)
{
    if (f && --f->refs == 0) {
        free(f->buf);
        free(f);
    }
}

/* ---- admission: connections in all and per client address ------------------------ */

/* Connections per client address: a chained hash table of the addresses
 * that have a connection open, an entry freed with its last connection, so
 * the table holds at most one entry per open connection. */
struct td_srv_peer_addr {
    td_srv_peer_addr *next;
    uint64_t n;
    char name[64];
};

/* What a refused upgrade is told: come back later (RFC 9110, 15.6.4). */
#define RETRY_AFTER_S "5"

void td_srv_conns_init(td_srv_conns *all, td_srv_metrics *m)
{
    memset(all, 0, sizeof *all);
    LIST_INIT(&all->list);
    TAILQ_INIT(&all->unauth);
    TAILQ_INIT(&all->partial);
    TAILQ_INIT(&all->unflushed);
    all->m = m;
}

void td_srv_conns_free(td_srv_conns *all)
{
    free(all->gbuf);
    all->gbuf = NULL;
    for (size_t i = 0; i < TD_SRV_ADDR_BUCKETS; i++)
        while (all->addrs[i]) {
            td_srv_peer_addr *a = all->addrs[i];
            all->addrs[i] = a->next;
            free(a);
        }
}

static td_srv_peer_addr **addr_slot(td_srv_conns *all, const char *name)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    td_srv_peer_addr **a = &all->addrs[h % TD_SRV_ADDR_BUCKETS];
    while (*a && strcmp((*a)->name, name) != 0)
        a = &(*a)->next;
    return a;
}

/* The counter of the cap that one more connection from `name` (NULL:
 * unknown) would pass, or NULL when it may open. */
static uint64_t *over_cap(td_srv_conns *all, const char *name)
{
    td_srv_peer_addr *a = name ? *addr_slot(all, name) : NULL;
    if (all->n >= all->max_conns)
        return &all->m->refused_max_conns;
    if (a && a->n >= all->max_per_addr)
        return &all->m->refused_per_addr;
    return NULL;
}

/* A 503 with Retry-After, written like lws_return_http_status() writes its
 * answers (headers and body in one write; lws keeps what the socket does
 * not take), which cannot add a header. */
static int answer_busy(struct lws *wsi)
{
    static const char body[] = "too many connections: try again later\n";
    static const char retry[] = RETRY_AFTER_S;
    uint8_t buf[LWS_PRE + 512];
    uint8_t *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - sizeof body;
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "text/plain",
                                    sizeof body - 1, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"retry-after:",
                                    (const unsigned char *)retry, (int)sizeof retry - 1, &p,
                                    end) ||
        lws_finalize_http_header(wsi, &p, end))
        return -1;
    memcpy(p, body, sizeof body - 1);
    p += sizeof body - 1;
    int n = lws_ptr_diff(p, start);
    return lws_write(wsi, start, (size_t)n, LWS_WRITE_HTTP) == n ? 1 : -1;
}

int td_srv_conns_confirm_upgrade(td_srv_conns *all, struct lws *wsi)
{
    char name[64];
    uint64_t *refused = over_cap(all, lws_get_peer_simple(wsi, name, sizeof name));
    if (!refused)
        return 0;
    (*refused)++;
    return answer_busy(wsi);
}

/* ---- life cycle -------------------------------------------------------------------- */

static void unauth_end(td_srv_conn *c)
{
    if (c->in_unauth) {
        TAILQ_REMOVE(&c->all->unauth, c, deadline_unauth);
        c->in_unauth = 0;
    }
}

/* Frees the reassembly of a message, finished or not. */
static void rx_drop(td_srv_conn *c)
{
    if (c->in_rx) {
        TAILQ_REMOVE(&c->all->partial, c, deadline_partial);
        c->in_rx = 0;
    }
    free(c->rx);
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
}

void td_srv_conn_open(td_srv_conns *all, td_srv_conn *c, struct lws *wsi,
                      const td_srv_conn_handler *h)
{
    char name[64];
    const char *addr = lws_get_peer_simple(wsi, name, sizeof name);
    uint64_t *refused = over_cap(all, addr);

    memset(c, 0, sizeof *c);
    c->all = all;
    c->h = h;
    c->wsi = wsi;
    c->opened_us = td_srv_now_us();
    STAILQ_INIT(&c->q);
    LIST_INSERT_HEAD(&all->list, c, link);
    TAILQ_INSERT_TAIL(&all->unauth, c, deadline_unauth);
    c->in_unauth = 1;
    all->n++;
    all->m->connections++;
    all->m->connections_total++;
    if (addr) {
        td_srv_peer_addr **slot = addr_slot(all, addr);
        if (!*slot && (*slot = calloc(1, sizeof **slot)) != NULL)
            snprintf((*slot)->name, sizeof (*slot)->name, "%s", addr);
        c->addr = *slot;
        if (c->addr)
            c->addr->n++;
    }
    /* Past a cap after all (the upgrade check is the usual refusal), or no
     * memory to count the address: the client is to come back later. */
    if (refused)
        (*refused)++;
    if (refused || (addr && !c->addr))
        td_srv_conn_close_with(c, 1013);
}

static void queue_drop(td_srv_conn *c)
{
    td_srv_qitem *q;
    while ((q = STAILQ_FIRST(&c->q))) {
        STAILQ_REMOVE_HEAD(&c->q, link);
        td_srv_frame_unref(q->f);
        free(q);
    }
    c->q_bytes = 0;
    c->q_n = 0;
}

void td_srv_conn_closed(td_srv_conn *c)
{
    td_srv_conns *all = c->all;
    td_srv_frame_unref(c->draining);
    c->draining = NULL;
    queue_drop(c);
    rx_drop(c);
    unauth_end(c);
    if (c->in_unflushed)
        TAILQ_REMOVE(&all->unflushed, c, unflushed_link);
    c->in_unflushed = 0;
    if (c->addr && --c->addr->n == 0) {
        td_srv_peer_addr **slot = addr_slot(all, c->addr->name);
        *slot = c->addr->next;
        free(c->addr);
    }
    c->addr = NULL;
    LIST_REMOVE(c, link);
    c->wsi = NULL;
    all->n--;
    all->m->connections--;
    c->h->closed(c);
}

/* ---- receiving ----------------------------------------------------------------------- */

/* Closes with `code` through the close handshake (what is queued goes
 * first; the rest of the peer's input is read and dropped). */
static int close_soon(td_srv_conn *c, int code)
{
    td_srv_conn_close_with(c, code);
    rx_drop(c);
    return 0;
}

void td_srv_conns_maintain(td_srv_conns *all, int64_t now)
{
    td_srv_conn *c;
    while ((c = TAILQ_FIRST(&all->unauth)) && now - c->opened_us >= all->hello_timeout_us) {
        unauth_end(c);
        if (!c->close_code) {
            all->m->hello_timeouts++;
            td_srv_conn_close_with(c, 1008);
        }
    }
    while ((c = TAILQ_FIRST(&all->partial)) && now - c->rx_started_us >= all->frame_timeout_us) {
        if (!c->close_code)
            all->m->frame_timeouts++;
        close_soon(c, 1008);
    }
}

static void deliver(td_srv_conn *c, const uint8_t *msg, size_t len)
{
    c->all->m->frames_in++;
    if (!c->close_code) /* closing: ignore the rest */
        c->h->message(c, msg, len);
}

int td_srv_conn_receive(td_srv_conn *c, const void *in, size_t len)
{
    struct lws *wsi = c->wsi;
    td_srv_metrics *m = c->all->m;
    /* Before its HELLO a connection holds little: a HELLO is small, and
     * whoever has not shown a token must not make us buffer megabytes. */
    size_t max = c->authenticated || c->all->preauth_bytes > c->all->max_frame
                     ? c->all->max_frame
                     : c->all->preauth_bytes;
    if (c->close_code) {
        /* Closing: read and drop until the peer's close frame (see
         * td_srv_conn_writeable), so no unread input turns into an RST. */
        m->bytes_in += len;
        rx_drop(c);
        return 0;
    }
    if (lws_is_first_fragment(wsi)) {
        c->rx_len = 0;
        if (!lws_frame_is_binary(wsi)) {
            m->errors[TD_SRV_E_BAD_MESSAGE]++;
            return close_soon(c, 1003);
        }
        /* Whole in one piece (nearly every message): straight from lws's
         * buffer, no copy and no per-connection reassembly buffer. */
        if (lws_is_final_fragment(wsi) && len <= max) {
            m->bytes_in += len;
            deliver(c, in, len);
            return 0;
        }
    }
    m->bytes_in += len;
    if (len > max - c->rx_len) {
        m->errors[TD_SRV_E_TOO_LARGE]++;
        if (!c->authenticated)
            m->preauth_closes++;
        return close_soon(c, 1009);
    }
    if (!c->in_rx) {
        /* The frame timeout runs from a message's first bytes. */
        c->in_rx = 1;
        c->rx_started_us = td_srv_now_us();
        TAILQ_INSERT_TAIL(&c->all->partial, c, deadline_partial);
    }
    if (c->rx_len + len > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 4096;
        while (cap < c->rx_len + len)
            cap *= 2;
        uint8_t *nb = realloc(c->rx, cap);
        if (!nb)
            return close_soon(c, 1011);
        c->rx = nb;
        c->rx_cap = cap;
    }
    if (len) /* an empty fragment has no buffer to copy from */
        memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    if (!lws_is_final_fragment(wsi))
        return 0;
    deliver(c, c->rx, c->rx_len);
    /* Only messages bigger than the rx buffer get here: an idle connection
     * keeps no reassembly buffer. */
    rx_drop(c);
    return 0;
}

/* ---- sending ---------------------------------------------------------------------------- */

void td_srv_conn_authenticated(td_srv_conn *c)
{
    c->authenticated = 1;
    unauth_end(c);
}

void td_srv_conn_close_with(td_srv_conn *c, int code)
{
    if (!c->close_code)
        c->close_code = code;
    if (c->wsi) {
        lws_callback_on_writable(c->wsi);
        /* A peer that never reads never makes us writeable: kill it after
         * a grace period if the close frame cannot be written. */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, 2);
    }
}

void td_srv_conn_send(td_srv_conn *c, td_srv_frame *f)
{
    td_srv_qitem *q;
    td_srv_metrics *m = c->all->m;
    /* Before its HELLO, a connection that does not read its ERRORs must
     * not make us hold more than a little. */
    uint64_t cap = c->authenticated ? c->all->send_queue : c->all->preauth_bytes;
    if (!f || c->close_code == 1008 || c->close_sent || !c->wsi)
        return;
    if (c->q_n > 0 && c->q_bytes + f->len > cap) {
        /* Slow consumer: free its backlog now, close it. */
        queue_drop(c);
        (*(c->authenticated ? &m->slow_consumer_closes : &m->preauth_closes))++;
        c->close_code = 0;
        td_srv_conn_close_with(c, 1008);
        return;
    }
    q = malloc(sizeof *q);
    if (!q) {
        /* A message that cannot be queued must not vanish in the middle of
         * the stream: the connection ends (1011) and the client resyncs. */
        queue_drop(c);
        c->close_code = 0;
        td_srv_conn_close_with(c, 1011);
        return;
    }
    f->refs++;
    q->f = f;
    STAILQ_INSERT_TAIL(&c->q, q, link);
    c->q_bytes += f->len;
    c->q_n++;
    /* Before its HELLO a connection writes only in writeable callbacks,
     * 64 frames a turn: one that floods us with junk and never reads gets
     * ERRORs slower than it earns them, reaches --preauth-bytes and is
     * closed at once, not once the kernel's buffer and lws's copy are full
     * (lws then waits 5 s more to flush before closing). */
    if (!c->gather || !c->authenticated || c->close_code) {
        lws_callback_on_writable(c->wsi);
    } else if (!c->in_unflushed) {
        c->in_unflushed = 1;
        TAILQ_INSERT_TAIL(&c->all->unflushed, c, unflushed_link);
    }
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

static int send_close(td_srv_conn *c)
{
    static const struct {
        int code;
        const char *why;
    } reasons[] = {{1001, "going away"},    {1002, "protocol error"}, {1003, "unsupported data"},
                   {1008, "policy"},        {1009, "too big"},        {1011, "internal error"},
                   {1013, "try again later"}};
    uint8_t buf[LWS_PRE + 2 + 125], *p = buf + LWS_PRE;
    const char *why = "closing";
    size_t n;
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].code == c->close_code)
            why = reasons[i].why;
    n = strlen(why);
    /* lws keeps LWS_WRITE_CLOSE to itself (lws_close_reason() sends the
     * frame only as lws closes the socket), so the frame goes out raw: a
     * server frame is unmasked, FIN + opcode 8, payload code + reason. */
    p[0] = 0x88;
    p[1] = (uint8_t)(2 + n);
    p[2] = (uint8_t)(c->close_code >> 8);
    p[3] = (uint8_t)(c->close_code & 0xff);
    memcpy(p + 4, why, n);
    if (lws_write(c->wsi, p, 4 + n, LWS_WRITE_RAW) < 0)
        return -1;
    c->close_sent = 1;
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK, CLOSE_WAIT_S);
    return 0;
}

/* Frames written per writeable callback, at most: a connection with a
 * backlog writes it in a few loop turns (not one turn per message, each
 * costing a poll() over every connection) without starving the others. */
#define WRITE_BUDGET_FRAMES 64
#define DEFLATE_STEP 512 /* frames above this may be drained over several turns */
#define WRITE_BUDGET_BYTES (256u << 10)

/* Adaptive coalescing (issue 14). On loopback one send() costs the
 * sender both sides' TCP work, about 7 us here, and was half the loop's
 * CPU under load: a connection gets one frame per delivered batch. When
 * several frames wait for one connection (a group commit just completed,
 * a burst of broadcasts in one loop turn), they are framed here and go out
 * in one lws_write(RAW), one send(); under light load the queue holds one
 * frame and nothing waits for anything. lws sends a RAW write as it is
 * (lws_issue_raw: the unsent tail of a partial write is kept in order with
 * whatever follows) but cannot apply permessage-deflate to it, so this is
 * only done on connections without that extension (c->gather). GATHER_BYTES stays
 * under the protocol's tx_packet_size (srv_loop.c): lws would split a
 * longer write into several sends. */
#define GATHER_BYTES (32u << 10)
#define WS_HEADER_MAX 4

/* RFC 6455 section 5.2, a server's frame: FIN and binary, unmasked, the
 * length in 7 or 7+16 bits (a longer frame is never gathered). */
_Static_assert(GATHER_BYTES <= 0xffff, "gathered frames need at most a 16-bit length");
static size_t ws_header(uint8_t *h, size_t len)
{
    h[0] = 0x82;
    if (len < 126) {
        h[1] = (uint8_t)len;
        return 2;
    }
    h[1] = 126;
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
    return 4;
}

/* Takes the written head frame off the queue and counts it; the caller
 * owns the reference. */
static td_srv_frame *dequeue_written(td_srv_conn *c)
{
    td_srv_qitem *q = STAILQ_FIRST(&c->q);
    td_srv_frame *f = q->f;
    td_srv_metrics *m = c->all->m;
    m->bytes_out += f->len;
    m->frames_out++;
    STAILQ_REMOVE_HEAD(&c->q, link);
    c->q_bytes -= f->len;
    c->q_n--;
    free(q);
    return f;
}

/* Writes the head of the queue as one send: every frame that fits in
 * GATHER_BYTES, or the first frame alone when it is bigger. Returns the
 * frames written, or -1 when the socket failed. */
static int write_gathered(td_srv_conn *c)
{
    td_srv_conns *all = c->all;
    td_srv_qitem *q = STAILQ_FIRST(&c->q);
    size_t at = 0;
    int frames = 0;
    if (!all->gbuf)
        all->gbuf = malloc(GATHER_BYTES); /* NULL: frame by frame, through lws */
    if (q->f->len + WS_HEADER_MAX > GATHER_BYTES || !all->gbuf) {
        if (lws_write(c->wsi, q->f->buf + LWS_PRE, q->f->len, LWS_WRITE_BINARY) < 0)
            return -1;
        all->m->writes_out++;
        td_srv_frame_unref(dequeue_written(c));
        return 1;
    }
    while ((q = STAILQ_FIRST(&c->q)) && frames < WRITE_BUDGET_FRAMES &&
           at + WS_HEADER_MAX + q->f->len <= GATHER_BYTES) {
        at += ws_header(all->gbuf + at, q->f->len);
        memcpy(all->gbuf + at, q->f->buf + LWS_PRE, q->f->len);
        at += q->f->len;
        td_srv_frame_unref(dequeue_written(c));
        frames++;
    }
    if (lws_write(c->wsi, all->gbuf, at, LWS_WRITE_RAW) < 0)
        return -1;
    all->m->writes_out++;
    return frames;
}

/* One gathered write per writeable callback, of at most
 * WRITE_BUDGET_FRAMES frames as below: a peer that does not read fills
 * our queue (and reaches its cap) at the rate it did before gathering,
 * instead of the kernel's buffer and then lws's copy of a partial write. */
static int writeable_gathered(td_srv_conn *c)
{
    if (!STAILQ_EMPTY(&c->q)) {
        if (write_gathered(c) < 0)
            return -1;
        if (!STAILQ_EMPTY(&c->q) || c->close_code)
            lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (c->close_code) {
        if (lws_send_pipe_choked(c->wsi)) {
            lws_callback_on_writable(c->wsi);
            return 0;
        }
        return send_close(c);
    }
    return 0;
}

void td_srv_conns_flush(td_srv_conns *all)
{
    td_srv_conn *c;
    while ((c = TAILQ_FIRST(&all->unflushed))) {
        TAILQ_REMOVE(&all->unflushed, c, unflushed_link);
        c->in_unflushed = 0;
        if (STAILQ_EMPTY(&c->q) || !c->wsi)
            continue;
        /* lws's copy of a partial write comes first, and it bounds what a
         * peer that does not read makes us hold beyond our queue's cap. */
        if (c->close_code || c->close_sent || lws_partial_buffered(c->wsi)) {
            lws_callback_on_writable(c->wsi);
            continue;
        }
        if (write_gathered(c) < 0) {
            /* The socket failed: lws closes it on its next turn. */
            queue_drop(c);
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
            continue;
        }
        if (!STAILQ_EMPTY(&c->q))
            lws_callback_on_writable(c->wsi);
    }
}

int td_srv_conn_writeable(td_srv_conn *c)
{
    size_t frames = 0, bytes = 0;
    td_srv_metrics *m = c->all->m;
    /* permessage-deflate compresses a big frame in ~1 KiB steps, reading
     * our buffer after lws_write() returned, and lws calls us writeable
     * again only once it is done: the frame lives until then. */
    td_srv_frame_unref(c->draining);
    c->draining = NULL;
    if (c->close_sent)
        return 0;
    if (c->gather)
        return writeable_gathered(c);
    td_srv_qitem *q;
    while ((q = STAILQ_FIRST(&c->q))) {
        /* Past the first frame, stop where the kernel would not take more
         * (lws would then buffer the frame itself) or the budget ends. */
        if (frames && (frames >= WRITE_BUDGET_FRAMES || bytes >= WRITE_BUDGET_BYTES ||
                       lws_send_pipe_choked(c->wsi))) {
            lws_callback_on_writable(c->wsi);
            return 0;
        }
        int n = lws_write(c->wsi, q->f->buf + LWS_PRE, q->f->len, LWS_WRITE_BINARY);
        if (n < 0)
            return -1;
        m->writes_out++;
        frames++;
        bytes += q->f->len;
        td_srv_frame *f = dequeue_written(c);
        if (f->len > DEFLATE_STEP) {
            c->draining = f; /* keeps the reference */
            if (!STAILQ_EMPTY(&c->q) || c->close_code)
                lws_callback_on_writable(c->wsi);
            return 0;
        }
        td_srv_frame_unref(f);
    }
    if (c->close_code) {
        /* The close frame goes in a turn of its own, after the last frame
         * has left lws's buffer. */
        if (frames || lws_send_pipe_choked(c->wsi)) {
            lws_callback_on_writable(c->wsi);
            return 0;
        }
        return send_close(c);
    }
    return 0;
}
