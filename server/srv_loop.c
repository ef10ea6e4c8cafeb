/*
 * srv_loop.c -- the event loop: the libwebsockets context, its one protocol
 * (WebSocket and HTTP on the same port), the HTTP endpoints, signals and
 * the orderly shutdown.
 *
 * Threads: lws runs everything on this thread. The store thread and the
 * loader thread only ever call lws_cancel_service(); the loop then drains
 * their queues in LWS_CALLBACK_EVENT_WAIT_CANCELLED. The signal handler does
 * the same after setting a flag.
 *
 * Shutdown (SIGTERM/SIGINT): RUNNING -> DRAINING (new connections refused,
 * UPDATE answered "shutting_down", wait until every append in flight is
 * durable and acknowledged) -> CLOSING (every connection writes what it has
 * queued and is closed with 1001) -> STOPPED; then the store is closed
 * (which flushes it) and the process exits 0.
 */
#include <errno.h>
#include <strings.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include "srv_internal.h"

#define DRAIN_MAX_US (10 * LWS_US_PER_SEC)
#define CLOSE_MAX_US (3 * LWS_US_PER_SEC)

static volatile sig_atomic_t g_stop;
static struct lws_context *volatile g_ctx;

int64_t td_srv_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    if (g_ctx)
        lws_cancel_service(g_ctx);
}

static void store_wake(void *ud)
{
    td_srv_server *srv = ud;
    struct lws_context *ctx = atomic_load(&srv->wake_ctx);
    if (ctx)
        lws_cancel_service(ctx);
}

/* ---- per-connection data ------------------------------------------------------ */

typedef struct pss {
    td_srv_session *s;
    /* HTTP response body */
    uint8_t *body;
    size_t body_len, body_sent;
} pss;

/* ---- HTTP --------------------------------------------------------------------- */

static int http_reply(struct lws *wsi, pss *p, unsigned status, const char *type,
                      const void *body, size_t len)
{
    uint8_t hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *h = start,
                                 *end = hdr + sizeof hdr - 1;
    free(p->body);
    p->body = malloc(len ? len : 1);
    if (!p->body)
        return -1;
    memcpy(p->body, body, len);
    p->body_len = len;
    p->body_sent = 0;
    if (lws_add_http_common_headers(wsi, status, type, (lws_filepos_t)len, &h, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &h, end) ||
        lws_finalize_write_http_header(wsi, start, &h, end))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int http_text(struct lws *wsi, pss *p, unsigned status, const char *text)
{
    return http_reply(wsi, p, status, "text/plain; charset=utf-8", text, strlen(text));
}

static int http_writeable(struct lws *wsi, pss *p)
{
    size_t chunk = 16384, left;
    uint8_t *buf;
    int final;
    if (!p->body)
        return 0;
    left = p->body_len - p->body_sent;
    if (left < chunk)
        chunk = left;
    final = p->body_sent + chunk == p->body_len;
    buf = malloc(LWS_PRE + chunk + 1);
    if (!buf)
        return -1;
    memcpy(buf + LWS_PRE, p->body + p->body_sent, chunk);
    int n = lws_write(wsi, buf + LWS_PRE, chunk, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
    free(buf);
    if (n < 0)
        return -1;
    p->body_sent += chunk;
    if (!final) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    free(p->body);
    p->body = NULL;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* The request's token (Authorization: Bearer, or ?token=) grants `doc`?
 * Returns 0, or the HTTP status to answer. */
static unsigned http_auth(td_srv_server *srv, struct lws *wsi, const char *doc, size_t len)
{
    char hdr[TD_SRV_TOKEN_MAX + 64];
    const char *tok = NULL;
    td_srv_token t;
    if (!srv->have_key)
        return 0;
    int n = lws_hdr_copy(wsi, hdr, sizeof hdr, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n > 7 && strncasecmp(hdr, "Bearer ", 7) == 0)
        tok = hdr + 7;
    else if (lws_get_urlarg_by_name(wsi, "token=", hdr, sizeof hdr))
        tok = lws_get_urlarg_by_name(wsi, "token=", hdr, sizeof hdr);
    if (!tok)
        return 401;
    while (*tok == ' ')
        tok++;
    if (td_srv_token_verify(tok, strlen(tok), srv->pk, (uint64_t)time(NULL), &t) != TD_SRV_E_OK)
        return 401;
    if (!(t.rights & TD_SRV_RIGHT_READ) || !td_srv_pattern_match(t.pattern, t.pattern_len, doc, len))
        return 403;
    return 0;
}

static int http_doc(td_srv_server *srv, struct lws *wsi, pss *p, const char *id)
{
    size_t len = strlen(id);
    td_srv_doc *d;
    td_crdt_doc *tmp = NULL;
    char *json = NULL;
    size_t jlen = 0;
    unsigned status;
    int rc;

    if (!td_srv_doc_id_valid((const uint8_t *)id, len))
        return http_text(wsi, p, 400, "invalid document id\n");
    if ((status = http_auth(srv, wsi, id, len)))
        return http_text(wsi, p, status, status == 401 ? "token missing, invalid or expired\n"
                                                       : "token does not grant this document\n");
    d = td_srv_doc_find(srv, id, len);
    if (d && d->state != TD_SRV_DOC_READY)
        return http_text(wsi, p, 503, "document loading, retry\n");
    if (!d) {
        /* Not loaded: read it from the store for this request only. */
        td_store_error e = {0};
        td_crdt_options o;
        memset(&o, 0, sizeof o);
        o.agent = 1;
        td_store_err sc = td_store_load(srv->store, id, len, &o, &tmp, NULL, &e);
        if (sc == TD_STORE_ERR_NOT_FOUND)
            return http_text(wsi, p, 404, "no such document\n");
        if (sc != TD_STORE_OK) {
            char msg[600];
            snprintf(msg, sizeof msg, "document cannot be loaded: %s\n", e.msg);
            return http_text(wsi, p, 503, msg);
        }
    }
    td_crdt_doc *cd = d ? d->crdt : tmp;
    if (td_crdt_to_json(cd, &json, &jlen) != TD_CRDT_OK) {
        rc = http_text(wsi, p, 500, "cannot encode the document\n");
    } else {
        rc = http_reply(wsi, p, 200, "application/json", json, jlen);
        td_crdt_buf_free(cd, json);
    }
    if (tmp)
        td_crdt_doc_free(tmp);
    return rc;
}

static int http_request(td_srv_server *srv, struct lws *wsi, pss *p)
{
    char uri[1024];
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
        return http_text(wsi, p, 405, "only GET\n");
    if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) < 0)
        return http_text(wsi, p, 414, "URI too long\n");
    if (strcmp(uri, "/healthz") == 0)
        return http_text(wsi, p, 200, "ok\n");
    if (strcmp(uri, "/metrics") == 0) {
        td_srv_wbuf w;
        int rc;
        td_srv_wbuf_init(&w, 0);
        td_srv_metrics_render(srv, &w);
        if (w.oom) {
            td_srv_wbuf_free(&w);
            return -1;
        }
        rc = http_reply(wsi, p, 200, "text/plain; version=0.0.4", td_srv_wbuf_msg(&w), w.len);
        td_srv_wbuf_free(&w);
        return rc;
    }
    if (strncmp(uri, "/docs/", 6) == 0)
        return http_doc(srv, wsi, p, uri + 6);
    return http_text(wsi, p, 404, "not found\n");
}

/* ---- shutdown -------------------------------------------------------------------- */

static void maint_tick(lws_sorted_usec_list_t *sul);

static void schedule_maint(td_srv_server *srv)
{
    lws_usec_t us = srv->phase == TD_SRV_RUNNING ? LWS_US_PER_SEC : 10 * 1000;
    lws_sul_schedule(srv->ctx, 0, &srv->sul_maint, maint_tick, us);
}

static void begin_shutdown(td_srv_server *srv)
{
    if (srv->phase != TD_SRV_RUNNING)
        return;
    fprintf(stderr, "tandem serve: shutting down (waiting for %zu store writes)\n",
            srv->inflight);
    srv->phase = TD_SRV_DRAINING;
    srv->phase_deadline_us = td_srv_now_us() + DRAIN_MAX_US;
    schedule_maint(srv);
}

static void maint_tick(lws_sorted_usec_list_t *sul)
{
    td_srv_server *srv = lws_container_of(sul, td_srv_server, sul_maint);
    int64_t now = td_srv_now_us();
    switch (srv->phase) {
    case TD_SRV_RUNNING:
        td_srv_docs_maintain(srv);
        break;
    case TD_SRV_DRAINING:
        td_store_poll(srv->store, 0);
        td_srv_flush(srv);
        if ((srv->inflight == 0 && td_store_outstanding(srv->store) == 0) ||
            now > srv->phase_deadline_us) {
            srv->phase = TD_SRV_CLOSING;
            srv->phase_deadline_us = now + CLOSE_MAX_US;
            for (td_srv_session *s = srv->sessions; s; s = s->next)
                td_srv_session_close_with(s, 1001);
        }
        break;
    case TD_SRV_CLOSING:
        if (!srv->sessions || now > srv->phase_deadline_us)
            srv->phase = TD_SRV_STOPPED;
        break;
    case TD_SRV_STOPPED:
        return;
    }
    if (srv->phase != TD_SRV_STOPPED)
        schedule_maint(srv);
    else
        lws_cancel_service(srv->ctx);
}

/* ---- the protocol callback ----------------------------------------------------- */

/* Closes with `code` through the session's close handshake (what is queued
 * goes first; the rest of the peer's input is read and dropped). */
static int close_soon(td_srv_session *s, int code)
{
    td_srv_session_close_with(s, code);
    s->rx_len = 0;
    return 0;
}

static int on_receive(td_srv_server *srv, struct lws *wsi, td_srv_session *s,
                      const void *in, size_t len)
{
    if (s->close_code) {
        /* Closing: read and drop until the peer's close frame (see
         * td_srv_session_writeable), so no unread input turns into an RST. */
        srv->m.bytes_in += len;
        s->rx_len = 0;
        return 0;
    }
    if (lws_is_first_fragment(wsi)) {
        s->rx_len = 0;
        if (!lws_frame_is_binary(wsi)) {
            srv->m.errors[TD_SRV_E_BAD_MESSAGE]++;
            return close_soon(s, 1003);
        }
        /* Whole in one piece (nearly every message): straight from lws's
         * buffer, no copy and no per-connection reassembly buffer. */
        if (lws_is_final_fragment(wsi) && len <= srv->cfg.max_frame) {
            srv->m.bytes_in += len;
            return td_srv_session_message(s, in, len);
        }
    }
    srv->m.bytes_in += len;
    if (len > srv->cfg.max_frame - s->rx_len) {
        srv->m.errors[TD_SRV_E_TOO_LARGE]++;
        return close_soon(s, 1009);
    }
    if (s->rx_len + len > s->rx_cap) {
        size_t cap = s->rx_cap ? s->rx_cap : 4096;
        while (cap < s->rx_len + len)
            cap *= 2;
        uint8_t *nb = realloc(s->rx, cap);
        if (!nb)
            return close_soon(s, 1011);
        s->rx = nb;
        s->rx_cap = cap;
    }
    memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    if (!lws_is_final_fragment(wsi))
        return 0;
    int rc = td_srv_session_message(s, s->rx, s->rx_len);
    /* Only messages bigger than the rx buffer get here: an idle connection
     * keeps no reassembly buffer. */
    free(s->rx);
    s->rx = NULL;
    s->rx_len = s->rx_cap = 0;
    return rc;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                    void *in, size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    td_srv_server *srv = ctx ? lws_context_user(ctx) : NULL;
    pss *p = user;

    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return srv && srv->phase != TD_SRV_RUNNING ? -1 : 0;

    case LWS_CALLBACK_ESTABLISHED:
        p->s = malloc(sizeof *p->s);
        if (!p->s)
            return -1;
        td_srv_session_open(srv, p->s, wsi);
        /* (Not server_max_window_bits: lws 4.1 sizes the inflater of the
         * peer's messages from it too, which breaks clients that compress
         * with the full 15-bit window.) */
        if (srv->cfg.deflate)
            lws_set_extension_option(wsi, "permessage-deflate", "mem_level", "1");
        return 0;

    case LWS_CALLBACK_RECEIVE:
        if (!p->s)
            return -1;
        return on_receive(srv, wsi, p->s, in, len);

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        /* The answer to our close frame: the handshake is complete, close
         * the socket now (lws would otherwise echo a second close frame). */
        return p && p->s && p->s->close_sent ? -1 : 0;

    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!p->s)
            return 0;
        return td_srv_session_writeable(p->s);

    case LWS_CALLBACK_TIMER:
        if (p && p->s)
            td_srv_token_timer(p->s);
        return 0;

    case LWS_CALLBACK_CLOSED:
        if (p && p->s) {
            td_srv_session_close(p->s);
            free(p->s);
            p->s = NULL;
            td_srv_flush_soon(srv);
        }
        return 0;

    case LWS_CALLBACK_HTTP:
        if (http_request(srv, wsi, p) < 0)
            return -1;
        return 0;

    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_writeable(wsi, p);

    case LWS_CALLBACK_CLOSED_HTTP:
        if (p) {
            free(p->body);
            p->body = NULL;
        }
        return 0;

    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (!srv || !srv->store)
            return 0;
        td_store_poll(srv->store, 0);
        td_srv_docs_poll(srv);
        td_srv_flush(srv);
        if (g_stop)
            begin_shutdown(srv);
        return 0;

    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* lws gives every connection an rx buffer of this size (plus LWS_PRE) for
 * its whole life, and reads at most this much per poll wakeup. Messages
 * bigger than it arrive in pieces and are reassembled (up to --max-frame) in
 * on_receive. Below 128 lws would turn permessage-deflate off. */
#ifndef RX_BUFFER
#define RX_BUFFER 4096
#endif

static const struct lws_protocols protocols[] = {
    {"tandem", callback, sizeof(pss), RX_BUFFER, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

static const struct lws_extension extensions[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_no_context_takeover; client_max_window_bits"},
    {NULL, NULL, NULL}};

/* ---- run ----------------------------------------------------------------------------- */

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = rl.rlim_max;
    if (want == RLIM_INFINITY || want > 1000000)
        want = 1000000;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static struct lws_http_mount *mounts_build(td_srv_server *srv, struct lws_http_mount *m)
{
    static const char *const cb_paths[] = {"/healthz", "/metrics", "/docs"};
    struct lws_http_mount *head = NULL;
    memset(m, 0, 4 * sizeof *m);
    for (int i = 0; i < 3; i++) {
        m[i].mountpoint = cb_paths[i];
        m[i].mountpoint_len = (unsigned char)strlen(cb_paths[i]);
        m[i].origin = "tandem";
        m[i].origin_protocol = LWSMPRO_CALLBACK;
        m[i].mount_next = head;
        head = &m[i];
    }
    if (srv->cfg.static_dir) {
        m[3].mountpoint = "/";
        m[3].mountpoint_len = 1;
        m[3].origin = srv->cfg.static_dir;
        m[3].def = "index.html";
        m[3].origin_protocol = LWSMPRO_FILE;
        m[3].mount_next = head;
        head = &m[3];
    }
    return head;
}

int td_srv_run(const td_srv_config *cfg)
{
    static td_srv_server server; /* the signal handler needs a fixed home */
    td_srv_server *srv = &server;
    struct lws_context_creation_info info;
    struct lws_http_mount mounts[4];
    td_store_options so;
    td_store_error se = {0};
    char err[256];
    int rc = 0;

    memset(srv, 0, sizeof *srv);
    srv->cfg = *cfg;
    if (sodium_init() < 0) {
        fprintf(stderr, "tandem serve: libsodium failed to initialise\n");
        return 1;
    }
    if (cfg->public_key) {
        if (td_srv_key_read(cfg->public_key, srv->pk, 32, err, sizeof err) < 0) {
            fprintf(stderr, "tandem serve: --public-key: %s\n", err);
            return 1;
        }
        srv->have_key = 1;
    }

    memset(&so, 0, sizeof so);
    so.durability = cfg->durability;
    so.create_if_missing = 1;
    so.compact_ops = cfg->compact_ops;
    so.compact_bytes = cfg->compact_bytes;
    so.wake = store_wake;
    so.wake_ud = srv;
    if (td_store_open(cfg->data, &so, &srv->store, &se) != TD_STORE_OK) {
        fprintf(stderr, "tandem serve: cannot open data directory %s: %s\n", cfg->data, se.msg);
        return 1;
    }
    if (td_srv_docs_init(srv) < 0) {
        fprintf(stderr, "tandem serve: out of memory\n");
        td_store_close(srv->store);
        return 1;
    }

    raise_nofile();
    lws_set_log_level(cfg->log_level, NULL);
    memset(&info, 0, sizeof info);
    info.port = cfg->port;
    info.iface = cfg->addr;
    info.protocols = protocols;
    info.mounts = mounts_build(srv, mounts);
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    if (cfg->deflate)
        info.extensions = extensions;
    info.user = srv;
    info.pt_serv_buf_size = 32768;
    srv->ctx = lws_create_context(&info);
    if (!srv->ctx) {
        fprintf(stderr, "tandem serve: cannot listen on %s:%d\n", cfg->addr, cfg->port);
        td_srv_docs_stop(srv);
        td_srv_docs_free(srv);
        td_store_close(srv->store);
        return 1;
    }
    atomic_store(&srv->wake_ctx, srv->ctx);
    g_ctx = srv->ctx;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    fprintf(stderr, "tandem serve: listening on %s:%d, data %s (durability %s)%s%s\n",
            cfg->addr, cfg->port, cfg->data, td_store_durability_name(cfg->durability),
            cfg->static_dir ? ", static files from " : "",
            cfg->static_dir ? cfg->static_dir : "");
    if (!srv->have_key)
        fprintf(stderr, "tandem serve: WARNING: no --public-key given: running open, "
                        "every client may read and write every document\n");
    schedule_maint(srv);
    if (g_stop)
        begin_shutdown(srv);

    while (srv->phase != TD_SRV_STOPPED) {
        if (lws_service(srv->ctx, 0) < 0) {
            rc = 1;
            break;
        }
        if (g_stop && srv->phase == TD_SRV_RUNNING)
            begin_shutdown(srv);
    }

    g_ctx = NULL;
    atomic_store(&srv->wake_ctx, NULL);
    lws_sul_cancel(&srv->sul_flush);
    lws_sul_cancel(&srv->sul_presence);
    lws_sul_cancel(&srv->sul_maint);
    lws_context_destroy(srv->ctx);
    srv->ctx = NULL;
    td_store_close(srv->store); /* writes what is queued, runs the callbacks */
    srv->store = NULL;
    td_srv_docs_stop(srv);
    td_srv_docs_free(srv);
    fprintf(stderr, "tandem serve: stopped\n");
    return rc;
}
