/*
 * srv_loop.c -- the event loop of `tandem serve`: it builds the server's
 * parts, runs the libwebsockets context, and only dispatches: each lws
 * event goes to the connection's front-end, to HTTP, or to the document
 * service; signals start the orderly shutdown.
 *
 * Threads: lws runs everything on this thread. The store thread and the
 * loader thread only ever call lws_cancel_service(); the loop then drains
 * their queues in LWS_CALLBACK_EVENT_WAIT_CANCELLED. The signal handler does
 * the same after setting a flag.
 *
 * Shutdown (SIGTERM/SIGINT): RUNNING -> DRAINING (new connections refused,
 * batches answered "shutting_down", wait until every append in flight is
 * durable and acknowledged) -> CLOSING (every connection writes what it has
 * queued and is closed with 1001) -> STOPPED; then the store is closed
 * (which flushes it) and the process exits 0.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <ev.h>
#include <sodium.h>

#include "srv_cluster.h"
#include "srv_http.h"
#include "srv_native.h"
#include "srv_hocus.h"
#include "srv_yaware.h"
#include "srv_yws.h"

#define DRAIN_MAX_US (10 * LWS_US_PER_SEC)
#define CLOSE_MAX_US (3 * LWS_US_PER_SEC)

typedef enum { PHASE_RUNNING, PHASE_DRAINING, PHASE_CLOSING, PHASE_STOPPED } phase;

/* The process: its parts, built bottom-up by td_srv_run. */
typedef struct server {
    const td_srv_config *cfg;
    struct lws_context *ctx;
    td_store *store;
    int have_key;
    uint8_t pk[32];
    td_srv_metrics m;
    td_srv_conns conns;
    td_srv_presence *pres;
    td_srv_service *svc;
    td_srv_native *native;
    td_srv_yws *yws;
    td_srv_hocus *hocus;
    td_srv_yaw_rooms yrooms; /* awareness of both Yjs front-ends */
    td_srv_cluster *cl; /* --cluster */
    td_srv_http_env http;
    phase phase;
    int64_t phase_deadline_us;
    lws_sorted_usec_list_t sul_maint;
    lws_sorted_usec_list_t sul_flush; /* held broadcasts due */
    int64_t flush_due_us;             /* 0: sul_flush not scheduled */
    int64_t meter_wall_us, meter_cpu_us; /* start of the busy window */
    double busy;                      /* the loop thread's busy share */
    struct ev_loop *evloop;           /* --loop epoll: libev's loop, lws on it */
    ev_prepare ev_turn;
    ev_timer ev_flush;                /* --loop epoll: sul_flush's stand-in */
    lws_retry_bo_t idle; /* the keepalive PING; lws keeps a pointer to it */
    int fd_budget;       /* sockets numbered from here on are refused */
} server;

static volatile sig_atomic_t g_stop;
static struct lws_context *volatile g_ctx;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    if (g_ctx)
        lws_cancel_service(g_ctx);
}

/* Called on the store thread: only wakes the loop. */
static void store_wake(void *ud)
{
    struct lws_context *ctx = g_ctx;
    (void)ud;
    if (ctx)
        lws_cancel_service(ctx);
}

/* ---- pacing: broadcasts wait a little while the loop is busy ------------------ */

/* A delivery costs a send() (about 7 us here, both sides' TCP work on
 * loopback), and a document's batches become durable a few at a time,
 * one store group every millisecond or so. A saturated loop thus spends
 * itself sending one frame per batch per subscriber while the input waits
 * in the kernel. So the loop measures its own thread's share of CPU; past
 * HOLD_FROM it lets a document's durable batches wait up to a hold that
 * grows to HOLD_MAX_US at HOLD_FULL, and each subscriber gets them in one
 * frame (native REMOTE) or one write (srv_conn's gathering). Below
 * HOLD_FROM nothing waits: light load keeps its latency (issue 14,
 * "coalescing that adapts to load"). The acknowledgement is never held.
 * HOLD_FROM was 0.70 first: the hold then cost a moderately loaded loop
 * (76,000 deliveries/s) 3 ms of median latency for nothing; at 0.85 that
 * load keeps its 1.3 ms and the saturated end carries more. */
#define BUSY_WINDOW_US 20000
#define HOLD_FROM 0.85
#define HOLD_FULL 0.97
#define HOLD_MAX_US 8000

static int64_t thread_cpu_us(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void meter_tick(server *srv)
{
    int64_t now = td_srv_now_us(), hold = 0;
    int64_t wall = now - srv->meter_wall_us;
    if (srv->meter_wall_us && wall < BUSY_WINDOW_US)
        return;
    /* a system call (the monotonic clock is not): once a window */
    int64_t cpu = thread_cpu_us();
    if (srv->meter_wall_us && wall > 0) {
        double b = (double)(cpu - srv->meter_cpu_us) / (double)wall;
        srv->busy = 0.5 * srv->busy + 0.5 * (b > 1 ? 1 : b < 0 ? 0 : b);
    }
    srv->meter_wall_us = now;
    srv->meter_cpu_us = cpu;
    if (srv->phase == PHASE_RUNNING && srv->busy > HOLD_FROM) {
        double f = (srv->busy - HOLD_FROM) / (HOLD_FULL - HOLD_FROM);
        hold = (int64_t)(HOLD_MAX_US * (f > 1 ? 1 : f));
    }
    td_srv_service_hold(srv->svc, hold);
    srv->m.loop_busy_permille = (uint64_t)(srv->busy * 1000);
    srv->m.broadcast_hold_us = (uint64_t)hold;
}

static void begin_shutdown(server *srv);

/* After each turn of the loop: what the turn queued goes out, the meter
 * reads the clock. */
static void end_of_turn(server *srv)
{
    td_srv_conns_flush(&srv->conns);
    meter_tick(srv);
    if (g_stop && srv->phase == PHASE_RUNNING)
        begin_shutdown(srv);
}

/* The epoll loop's (libev) hook before it waits again: one turn ended. */
static void on_turn(struct ev_loop *loop, ev_prepare *w, int revents)
{
    server *srv = w->data;
    (void)revents;
    end_of_turn(srv);
    if (srv->phase == PHASE_STOPPED)
        ev_break(loop, EVBREAK_ALL);
}

static void run_due(server *srv);

/* What run_due queued goes out now: the poll loop runs its timers before
 * it waits, and would only write after the wait. */
static void flush_tick(lws_sorted_usec_list_t *sul)
{
    server *srv = lws_container_of(sul, server, sul_flush);
    srv->flush_due_us = 0;
    run_due(srv);
    td_srv_conns_flush(&srv->conns);
}

static void on_flush_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    server *srv = w->data;
    (void)loop, (void)revents;
    srv->flush_due_us = 0;
    run_due(srv);
}

/* Calls run_due in wait_us. On libev, lws arms its timer for the earliest
 * lws_sul only when it services the loop itself, so a sul scheduled from
 * a callback could fire up to the next unrelated event (the 1 s maintenance
 * tick) late: a timer of our own on the same loop fires on time. */
static void schedule_flush(server *srv, int64_t wait_us)
{
    if (!srv->evloop) {
        lws_sul_schedule(srv->ctx, 0, &srv->sul_flush, flush_tick, (lws_usec_t)wait_us);
        return;
    }
    ev_timer_stop(srv->evloop, &srv->ev_flush);
    ev_now_update(srv->evloop);
    ev_timer_set(&srv->ev_flush, (double)wait_us / 1e6, 0.);
    ev_timer_start(srv->evloop, &srv->ev_flush);
}

/* Everything due after a wake-up or a timer: store completions (which
 * acknowledge), loader results (which answer subscriptions and release
 * held-back messages), then the broadcasts that are due. */
static void run_due(server *srv)
{
    td_store_poll(srv->store, 0);
    td_srv_service_cluster_poll(srv->svc);
    td_srv_service_poll(srv->svc);
    td_srv_native_replay(srv->native);
    td_srv_yws_replay(srv->yws);
    td_srv_hocus_replay(srv->hocus);
    int64_t due = td_srv_service_flush(srv->svc);
    if (due && (!srv->flush_due_us || due < srv->flush_due_us)) {
        int64_t wait = due - td_srv_now_us();
        srv->flush_due_us = due;
        schedule_flush(srv, wait > 0 ? wait : 1);
    }
    td_srv_pres_flush(srv->pres);
}

/* ---- shutdown -------------------------------------------------------------------- */

static void maint_tick(lws_sorted_usec_list_t *sul);

static void schedule_maint(server *srv)
{
    lws_usec_t us = srv->phase == PHASE_RUNNING ? LWS_US_PER_SEC : 10 * 1000;
    lws_sul_schedule(srv->ctx, 0, &srv->sul_maint, maint_tick, us);
}

static void begin_shutdown(server *srv)
{
    if (srv->phase != PHASE_RUNNING)
        return;
    fprintf(stderr, "tandem serve: shutting down (waiting for %zu store writes)\n",
            td_srv_service_inflight(srv->svc));
    srv->phase = PHASE_DRAINING;
    td_srv_service_accepting(srv->svc, 0);
    /* Nothing waits for company any more: the drain's run_due sends every
     * broadcast before the connections close. */
    td_srv_service_hold(srv->svc, 0);
    srv->m.broadcast_hold_us = 0;
    srv->phase_deadline_us = td_srv_now_us() + DRAIN_MAX_US;
    schedule_maint(srv);
}

static void maint_tick(lws_sorted_usec_list_t *sul)
{
    server *srv = lws_container_of(sul, server, sul_maint);
    int64_t now = td_srv_now_us();
    switch (srv->phase) {
    case PHASE_RUNNING:
        td_srv_service_maintain(srv->svc);
        td_srv_conns_maintain(&srv->conns, now);
        break;
    case PHASE_DRAINING:
        run_due(srv);
        if ((td_srv_service_inflight(srv->svc) == 0 && td_store_outstanding(srv->store) == 0) ||
            now > srv->phase_deadline_us) {
            srv->phase = PHASE_CLOSING;
            srv->phase_deadline_us = now + CLOSE_MAX_US;
            td_srv_conn *c;
            LIST_FOREACH(c, &srv->conns.list, link)
                td_srv_conn_close_with(c, 1001);
        }
        break;
    case PHASE_CLOSING:
        if (LIST_EMPTY(&srv->conns.list) || now > srv->phase_deadline_us)
            srv->phase = PHASE_STOPPED;
        break;
    case PHASE_STOPPED:
        return;
    }
    if (srv->phase != PHASE_STOPPED)
        schedule_maint(srv);
    else
        lws_cancel_service(srv->ctx);
}

/* ---- the protocol callback ----------------------------------------------------- */

/* lws per-connection data: a WebSocket connection's transport, or the reply
 * of an HTTP one. */
typedef struct pss {
    td_srv_http_reply http; /* first: HTTP events get the lws user pointer */
    td_srv_conn *c;
} pss;

/* The front-end a new WebSocket speaks, by its path: /yjs/ROOM is
 * y-websocket, /hocuspocus Hocuspocus, anything else the native protocol. */
static td_srv_conn *open_ws(server *srv, struct lws *wsi)
{
    char uri[TD_SRV_DOC_MAX * 3 + 64], tok[TD_SRV_TOKEN_MAX + 16];
    const size_t plen = strlen(TD_SRV_YWS_PREFIX);
    int n = lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
    if (n >= (int)plen && strncmp(uri, TD_SRV_YWS_PREFIX, plen) == 0) {
        const char *t = lws_get_urlarg_by_name(wsi, "token=", tok, sizeof tok);
        return td_srv_yws_open(srv->yws, wsi, uri + plen, (size_t)n - plen, t,
                               t ? strlen(t) : 0);
    }
    if (n >= 0 && strcmp(uri, TD_SRV_HOCUS_PATH) == 0)
        return td_srv_hocus_open(srv->hocus, wsi);
    return td_srv_native_open(srv->native, wsi);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                    void *in, size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    server *srv = ctx ? lws_context_user(ctx) : NULL;
    pss *p = user;

    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        /* A socket numbered past lws's table (see fd_plan) would be closed
         * by lws anyway; here it is counted. */
        if (srv && (lws_intptr_t)in >= srv->fd_budget) {
            srv->m.refused_fd_limit++;
            return -1;
        }
        return srv && srv->phase != PHASE_RUNNING ? -1 : 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return srv && srv->phase != PHASE_RUNNING ? -1 : 0;

    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        /* The connection caps: refused here, a client gets an HTTP answer
         * (503, Retry-After) instead of a WebSocket that closes at once. */
        return srv && srv->phase == PHASE_RUNNING ? td_srv_conns_confirm_upgrade(&srv->conns, wsi)
                                                  : 0;

    case LWS_CALLBACK_ESTABLISHED:
        p->c = open_ws(srv, wsi);
        if (!p->c)
            return -1;
        /* (Not server_max_window_bits: lws 4.1 sizes the inflater of the
         * peer's messages from it too, which breaks clients that compress
         * with the full 15-bit window.) */
        /* -1: the client did not take the extension, so srv_conn may
         * frame and gather this connection's messages itself. */
        p->c->gather = !srv->cfg->deflate ||
                       lws_set_extension_option(wsi, "permessage-deflate", "mem_level", "1") < 0;
        return 0;

    case LWS_CALLBACK_RECEIVE:
        return p->c ? td_srv_conn_receive(p->c, in, len) : -1;

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        /* The answer to our close frame: the handshake is complete, close
         * the socket now (lws would otherwise echo a second close frame). */
        return p && p->c && p->c->close_sent ? -1 : 0;

    case LWS_CALLBACK_SERVER_WRITEABLE:
        return p->c ? td_srv_conn_writeable(p->c) : 0;

    case LWS_CALLBACK_TIMER:
        if (p && p->c)
            p->c->h->timer(p->c);
        return 0;

    case LWS_CALLBACK_CLOSED:
        if (p && p->c) {
            td_srv_conn_closed(p->c);
            p->c = NULL;
            td_srv_pres_flush(srv->pres);
        }
        return 0;

    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (!srv || !srv->svc)
            return 0;
        run_due(srv);
        if (g_stop)
            begin_shutdown(srv);
        return 0;

    default:
        break;
    }
    /* Everything else is HTTP (or lws housekeeping it passes on). */
    return td_srv_http_event(&srv->http, wsi, reason, p ? &p->http : NULL, in, len);
}

/* lws gives every connection an rx buffer of this size (plus LWS_PRE) for
 * its whole life, and reads at most this much per poll wakeup. Messages
 * bigger than it arrive in pieces and are reassembled (up to --max-frame) in
 * on_receive. Below 128 lws would turn permessage-deflate off. */
#ifndef RX_BUFFER
#define RX_BUFFER 4096
#endif
#define TX_PACKET (64u << 10)

static const struct lws_protocols protocols[] = {
    /* tx_packet_size: the most lws sends in one write; srv_conn gathers
     * queued frames up to 32 KiB into one write. */
    {"tandem", callback, sizeof(pss), RX_BUFFER, 0, NULL, TX_PACKET},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

static const struct lws_extension extensions[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_no_context_takeover; client_max_window_bits"},
    {NULL, NULL, NULL}};

/* ---- run ----------------------------------------------------------------------------- */

/* lws sizes its fd table from RLIMIT_NOFILE when the context is created,
 * and stops accepting (takes the listen socket out of poll()) only when that
 * table is full. Past the process's own limit, accept() fails with EMFILE,
 * which lws 4.1 only logs: the listen socket stays readable and the loop
 * spins at 100% CPU. So the context is created under a soft limit a reserve
 * below the process's: sockets stop at the table's size (lws stops
 * accepting; a socket numbered past it is closed at once), and the store's
 * files and the wake-up pipes have the reserve. fd_plan lowers the soft
 * limit and says what to restore once the context exists; -1 on error. */
#define FD_RESERVE_MIN 64
#define FD_RESERVE_MAX 4096

static int fd_plan(server *srv, struct rlimit *full)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, full) != 0) {
        perror("tandem serve: getrlimit");
        return -1;
    }
    rlim_t want = full->rlim_max;
    if (want == RLIM_INFINITY || want > 1000000)
        want = 1000000;
    rl = *full;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
        full->rlim_cur = want;
    rlim_t reserve = full->rlim_cur / 4;
    reserve = reserve < FD_RESERVE_MIN ? FD_RESERVE_MIN
              : reserve > FD_RESERVE_MAX ? FD_RESERVE_MAX
                                         : reserve;
    if (full->rlim_cur < 2 * reserve) {
        fprintf(stderr, "tandem serve: the file-descriptor limit (%llu) is too low\n",
                (unsigned long long)full->rlim_cur);
        return -1;
    }
    rl = *full;
    rl.rlim_cur -= reserve;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        perror("tandem serve: setrlimit");
        return -1;
    }
    srv->fd_budget = (int)rl.rlim_cur;
    /* Room beside the WebSockets: HTTP requests, the listen socket, lws's
     * pipe. */
    uint64_t most = (uint64_t)rl.rlim_cur - rl.rlim_cur / 8;
    if (srv->conns.max_conns > most) {
        fprintf(stderr, "tandem serve: --max-conns lowered to %llu by the file-descriptor limit\n",
                (unsigned long long)most);
        srv->conns.max_conns = most;
    }
    return 0;
}

/* Builds the parts below the loop, bottom-up. Returns 0, or -1 after
 * printing why. */
static int parts_new(server *srv)
{
    const td_srv_config *cfg = srv->cfg;
    td_store_options so;
    td_store_error se = {0};
    char err[256];
    /* One table per document kind (td_store_kind). */
    static const td_srv_model *const models[TD_STORE_KIND_COUNT] = {
        [TD_STORE_KIND_TANDEM] = &td_srv_model_tandem, [TD_STORE_KIND_YJS] = &td_srv_model_yjs};

    if (cfg->public_key) {
        if (td_srv_key_read(cfg->public_key, srv->pk, 32, err, sizeof err) < 0) {
            fprintf(stderr, "tandem serve: --public-key: %s\n", err);
            return -1;
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
        return -1;
    }
    td_srv_conns_init(&srv->conns, &srv->m);
    srv->conns.max_frame = cfg->max_frame;
    srv->conns.send_queue = cfg->send_queue;
    srv->conns.max_conns = cfg->max_conns;
    srv->conns.max_per_addr = cfg->max_conns_per_ip;
    srv->conns.preauth_bytes = cfg->preauth_bytes;
    srv->conns.hello_timeout_us = (int64_t)cfg->hello_timeout_ms * 1000;
    srv->conns.frame_timeout_us = (int64_t)cfg->frame_timeout_ms * 1000;
    const uint8_t *pk = srv->have_key ? srv->pk : NULL;
    /* A testing hook, deliberately not a flag (see server/README.md). */
    if (td_srv_model_tandem_faults(getenv("TANDEM_TEST_FAIL_ALLOC")) < 0) {
        fprintf(stderr, "tandem serve: TANDEM_TEST_FAIL_ALLOC must be FROM:COUNT\n");
        return -1;
    }
    if (td_srv_presence_new(&srv->pres, cfg->presence_interval_ms, cfg->presence_ttl_ms,
                            &srv->m) < 0 ||
        td_srv_service_new(&srv->svc, cfg, srv->store, models, srv->pres, &srv->m) < 0) {
        fprintf(stderr, "tandem serve: out of memory\n");
        return -1;
    }
    if (cfg->cluster) {
        /* The random suffix makes the name unique per process: a node skips
         * the batches it published itself (its replica has them) and
         * JetStream drops a publish whose <node>-<tag> id it saw in its
         * duplicate window, so a restarted node must never reuse both. */
        char node[48], msg[256];
        uint8_t r[4];
        randombytes_buf(r, sizeof r);
        snprintf(node, sizeof node, "%.30s-%02x%02x%02x%02x",
                 cfg->cluster_node ? cfg->cluster_node : "node", r[0], r[1], r[2], r[3]);
        td_srv_cluster_cfg cc = {.urls = cfg->cluster, .node = node,
                                 .replicas = (int)cfg->cluster_replicas,
                                 .wake = store_wake, .wake_ud = srv};
        td_srv_cluster_err ce = td_srv_cluster_new(&srv->cl, &cc, msg, sizeof msg);
        if (ce != TD_SRV_CLUSTER_OK) {
            fprintf(stderr, "tandem serve: --cluster %s: %s%s%s\n", cfg->cluster,
                    td_srv_cluster_strerror(ce), msg[0] ? ": " : "", msg);
            return -1;
        }
        td_srv_service_cluster(srv->svc, srv->cl);
        fprintf(stderr, "tandem serve: cluster node %s on %s\n", td_srv_cluster_node(srv->cl),
                cfg->cluster);
    }
    td_srv_native_env ne = {cfg, srv->svc, &srv->conns, &srv->m, pk};
    td_srv_yws_env ye = {cfg, srv->svc, &srv->conns, &srv->m, pk, &srv->yrooms};
    td_srv_hocus_env he = {cfg, srv->svc, &srv->conns, &srv->m, pk, &srv->yrooms};
    if (td_srv_native_new(&srv->native, &ne) < 0 || td_srv_yws_new(&srv->yws, &ye) < 0 ||
        td_srv_hocus_new(&srv->hocus, &he) < 0) {
        fprintf(stderr, "tandem serve: out of memory\n");
        return -1;
    }
    srv->http = (td_srv_http_env){srv->svc, srv->store, &srv->m, pk, cfg};
    return 0;
}

/* Frees the parts in the reverse order: the store is closed (which writes
 * what is queued and runs its callbacks) while the service can still take
 * the completions, and the loader is joined before the documents it loads
 * into are freed. */
static void parts_free(server *srv)
{
    if (srv->svc)
        td_srv_service_stop(srv->svc);
    if (srv->store)
        td_store_close(srv->store);
    srv->store = NULL;
    if (srv->native)
        td_srv_native_free(srv->native);
    if (srv->yws)
        td_srv_yws_free(srv->yws);
    if (srv->hocus)
        td_srv_hocus_free(srv->hocus);
    if (srv->svc)
        td_srv_service_free(srv->svc);
    /* After the documents, which unfollow their subjects as they go. */
    td_srv_cluster_free(srv->cl);
    srv->cl = NULL;
    if (srv->pres)
        td_srv_presence_free(srv->pres);
    td_srv_conns_free(&srv->conns);
}

int td_srv_run(const td_srv_config *cfg)
{
    static server the_server; /* the signal handler needs a fixed home */
    server *srv = &the_server;
    struct lws_context_creation_info info;
    struct lws_http_mount mounts[TD_SRV_HTTP_MOUNTS];
    int rc = 0;

    memset(srv, 0, sizeof *srv);
    srv->cfg = cfg;
    if (sodium_init() < 0) {
        fprintf(stderr, "tandem serve: libsodium failed to initialise\n");
        return 1;
    }
    if (parts_new(srv) < 0) {
        parts_free(srv);
        return 1;
    }

    struct rlimit nofile;
    if (fd_plan(srv, &nofile) < 0) {
        parts_free(srv);
        return 1;
    }
    lws_set_log_level(cfg->log_level, NULL);
    memset(&info, 0, sizeof info);
    info.port = cfg->port;
    info.iface = cfg->addr;
    info.protocols = protocols;
    info.mounts = td_srv_http_mounts(cfg, mounts);
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    if (cfg->deflate)
        info.extensions = extensions;
    info.user = srv;
    info.pt_serv_buf_size = 32768;
    void *foreign[1] = {NULL};
    if (cfg->loop == TD_SRV_LOOP_EPOLL) {
        srv->evloop = ev_loop_new(EVBACKEND_EPOLL);
        if (!srv->evloop) {
            fprintf(stderr, "tandem serve: no epoll loop (libev): try --loop poll\n");
            parts_free(srv);
            return 1;
        }
        foreign[0] = srv->evloop;
        info.options |= LWS_SERVER_OPTION_LIBEV;
        info.foreign_loops = foreign;
    }
    /* Every WebSocket is PINGed --ping-interval after its last PONG (or
     * its opening) and closed if the PONG is not back --ping-timeout later:
     * a half-open connection ends, and its presence with a LEAVE. lws counts
     * whole seconds, and needs the hangup after the PING. */
    srv->idle.secs_since_valid_ping = (uint16_t)((cfg->ping_interval_ms + 999) / 1000);
    srv->idle.secs_since_valid_hangup =
        (uint16_t)(srv->idle.secs_since_valid_ping + (cfg->ping_timeout_ms + 999) / 1000);
    info.retry_and_idle_policy = &srv->idle;
    srv->ctx = lws_create_context(&info);
    if (setrlimit(RLIMIT_NOFILE, &nofile) != 0)
        perror("tandem serve: setrlimit (no file descriptors in reserve)");
    if (!srv->ctx) {
        fprintf(stderr, "tandem serve: cannot listen on %s:%d%s\n", cfg->addr, cfg->port,
                srv->evloop ? " (or libwebsockets' libev plugin is missing: try --loop poll)" : "");
        if (srv->evloop)
            ev_loop_destroy(srv->evloop);
        parts_free(srv);
        return 1;
    }
    g_ctx = srv->ctx;
    td_srv_service_attach(srv->svc, srv->ctx);
    td_srv_presence_attach(srv->pres, srv->ctx);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    fprintf(stderr, "tandem serve: listening on %s:%d, data %s (durability %s, %s loop)%s%s\n",
            cfg->addr, cfg->port, cfg->data, td_store_durability_name(cfg->durability),
            srv->evloop ? "epoll" : "poll",
            cfg->static_dir ? ", static files from " : "",
            cfg->static_dir ? cfg->static_dir : "");
    if (!srv->have_key)
        fprintf(stderr, "tandem serve: WARNING: no --public-key given: running open, "
                        "every client may read and write every document\n");
    schedule_maint(srv);
    if (g_stop)
        begin_shutdown(srv);

    if (srv->evloop) {
        ev_prepare_init(&srv->ev_turn, on_turn);
        srv->ev_turn.data = srv;
        ev_prepare_start(srv->evloop, &srv->ev_turn);
        ev_init(&srv->ev_flush, on_flush_timer);
        srv->ev_flush.data = srv;
        ev_run(srv->evloop, 0);
        ev_timer_stop(srv->evloop, &srv->ev_flush);
        ev_prepare_stop(srv->evloop, &srv->ev_turn);
    } else {
        while (srv->phase != PHASE_STOPPED) {
            if (lws_service(srv->ctx, 0) < 0) {
                rc = 1;
                break;
            }
            end_of_turn(srv);
        }
    }

    g_ctx = NULL;
    td_srv_service_attach(srv->svc, NULL);
    td_srv_presence_attach(srv->pres, NULL);
    lws_sul_cancel(&srv->sul_maint);
    lws_sul_cancel(&srv->sul_flush);
    lws_context_destroy(srv->ctx);
    srv->ctx = NULL;
    if (srv->evloop)
        ev_loop_destroy(srv->evloop);
    parts_free(srv);
    fprintf(stderr, "tandem serve: stopped\n");
    return rc;
}
