/*
 * cli_serve.c -- `tandem serve`: its options, their environment variables
 * and defaults, turned into a td_srv_config for td_srv_run().
 *
 * Every option has an environment variable (TANDEM_ + the option's name in
 * upper case with '-' as '_'); the command line wins over it.
 */
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <libwebsockets.h> /* the LLL_ bits of td_srv_config.log_level */

#include "srv_config.h"
#include "tandem_srv.h"
#include "td_srv_cli.h"

#ifndef TD_SRV_SOURCE_DIR
#define TD_SRV_SOURCE_DIR "."
#endif

/* Enum options are stored as int. */
_Static_assert(sizeof(td_store_durability) == sizeof(int), "durability is an int");

static const td_srv_choice durabilities[] = {{"always", TD_STORE_SYNC_ALWAYS},
                                             {"group", TD_STORE_SYNC_GROUP},
                                             {"off", TD_STORE_SYNC_OFF},
                                             {NULL, 0}};

/* --metrics: who may read /metrics (srv_config.h). */
static const td_srv_choice metrics_modes[] = {{"auto", TD_SRV_METRICS_AUTO},
                                              {"open", TD_SRV_METRICS_OPEN},
                                              {"token", TD_SRV_METRICS_TOKEN},
                                              {NULL, 0}};

/* --loop: what waits for the sockets (srv_config.h). */
static const td_srv_choice loops[] = {{"epoll", TD_SRV_LOOP_EPOLL},
                                      {"poll", TD_SRV_LOOP_POLL},
                                      {NULL, 0}};

/* --cluster-outage: what a write does while the broker is unreachable. */
static const td_srv_choice outages[] = {{"refuse", TD_SRV_OUTAGE_REFUSE},
                                        {"outbox", TD_SRV_OUTAGE_OUTBOX},
                                        {NULL, 0}};

/* Each level also logs everything more severe. */
static const td_srv_choice log_levels[] = {
    {"error", LLL_ERR},
    {"warn", LLL_ERR | LLL_WARN},
    {"notice", LLL_ERR | LLL_WARN | LLL_NOTICE},
    {"info", LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_INFO},
    {"debug", LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_INFO | LLL_DEBUG},
    {NULL, 0}};

/* The start of a row: the option's name, its environment variable, the
 * kind and field of its value, the argument's name in help. The rest, when
 * not 0: .def (parsed like a value), .min, .choices (enums). */
#define OPT(n, e, k, field, a)                                                          \
    .name = n, .env = e, .kind = TD_SRV_OPT_##k, .off = offsetof(td_srv_config, field),  \
    .arg = a

static const td_srv_opt opts[] = {
    {OPT("addr", "TANDEM_ADDR", STR, addr, "ADDR"), .def = "127.0.0.1",
     .help = "address to listen on"},
    {OPT("port", "TANDEM_PORT", PORT, port, "PORT"), .def = "8080",
     .help = "port for WebSocket and HTTP"},
    {OPT("data", "TANDEM_DATA", STR, data, "DIR"), .def = "./data",
     .help = "data directory, created if missing"},
    {OPT("durability", "TANDEM_DURABILITY", ENUM, durability, NULL),
     .choices = durabilities, .def = "group",
     .help = "always: fsync per write; group: shared fsync; off"},
    {OPT("presence-interval", "TANDEM_PRESENCE_INTERVAL", DURATION, presence_interval_ms,
         "MS"),
     .def = "100ms", .min = 1,
     .help = "at most one presence broadcast per client per interval"},
    {OPT("presence-ttl", "TANDEM_PRESENCE_TTL", DURATION, presence_ttl_ms, "MS"),
     .def = "30s", .min = 1, .help = "presence entries expire after this silence"},
    {OPT("max-frame", "TANDEM_MAX_FRAME", SIZE, max_frame, "BYTES"), .def = "8M",
     .min = 64, .help = "largest WebSocket message accepted; bigger closes with 1009"},
    {OPT("max-batch", "TANDEM_MAX_BATCH", SIZE, max_batch, "BYTES"), .def = "4M", .min = 1,
     .help = "largest batch in an UPDATE"},
    {OPT("max-presence", "TANDEM_MAX_PRESENCE", SIZE, max_presence, "BYTES"),
     .def = "4096", .help = "largest presence state"},
    {OPT("max-subs", "TANDEM_MAX_SUBS", COUNT, max_subs, "N"), .def = "1024", .min = 1,
     .help = "subscriptions per connection"},
    {OPT("send-queue", "TANDEM_SEND_QUEUE", SIZE, send_queue, "BYTES"), .def = "16M",
     .min = 1024,
     .help = "unsent bytes per connection before it is closed as a slow consumer"},
    {OPT("doc-idle", "TANDEM_DOC_IDLE", DURATION, doc_idle_ms, "MS"), .def = "30s",
     .help = "unload a document this long after its last subscriber left"},
    {OPT("max-docs", "TANDEM_MAX_DOCS", COUNT, max_docs, "N"), .def = "100000", .min = 1,
     .help = "documents loaded (or loading) at once; more subscriptions get busy"},
    {OPT("max-loads", "TANDEM_MAX_LOADS", COUNT, max_loads, "N"), .def = "16", .min = 1,
     .help = "document loads one connection may have in progress at once"},
    {OPT("token-grace", "TANDEM_TOKEN_GRACE", DURATION, token_grace_ms, "MS"), .def = "30s",
     .help = "after a token expires, how long reads go on before the connection\n"
             "is closed (a HELLO with a fresh token in time keeps it)"},
    {OPT("compact-ops", "TANDEM_COMPACT_OPS", COUNT, compact_ops, "N"), .def = "10000",
     .help = "fold a document's log into a snapshot after N ops (or an eighth\n"
             "of the document's ops, if that is more)"},
    {OPT("compact-bytes", "TANDEM_COMPACT_BYTES", SIZE, compact_bytes, "BYTES"),
     .def = "4M", .help = "... or after this many log bytes"},
    {OPT("max-conns", "TANDEM_MAX_CONNS", COUNT, max_conns, "N"), .def = "10000", .min = 1,
     .help = "WebSocket connections at once (also bounded by the file-descriptor\n"
             "limit); more are refused with HTTP 503 and Retry-After"},
    {OPT("max-conns-per-ip", "TANDEM_MAX_CONNS_PER_IP", COUNT, max_conns_per_ip, "N"),
     .def = "256", .min = 1, .help = "WebSocket connections at once from one client address"},
    {OPT("hello-timeout", "TANDEM_HELLO_TIMEOUT", DURATION, hello_timeout_ms, "MS"),
     .def = "10s", .min = 100, .help = "a connection without an accepted HELLO by then is closed with 1008"},
    {OPT("preauth-bytes", "TANDEM_PREAUTH_BYTES", SIZE, preauth_bytes, "BYTES"),
     .def = "64K", .min = 4096,
     .help = "before its HELLO is accepted: largest message (bigger closes with\n"
             "1009) and unsent bytes (more closes with 1008) of a connection"},
    {OPT("frame-timeout", "TANDEM_FRAME_TIMEOUT", DURATION, frame_timeout_ms, "MS"),
     .def = "30s", .min = 100,
     .help = "a message still incomplete this long after its first bytes closes\n"
             "the connection with 1008"},
    {OPT("ping-interval", "TANDEM_PING_INTERVAL", DURATION, ping_interval_ms, "MS"),
     .def = "30s", .min = 1000, .max = 3600000,
     .help = "send a WebSocket PING this long after the last PONG (whole seconds)"},
    {OPT("ping-timeout", "TANDEM_PING_TIMEOUT", DURATION, ping_timeout_ms, "MS"),
     .def = "10s", .min = 1000, .max = 3600000,
     .help = "a PING unanswered this long closes the connection (half-open peers)"},
    {OPT("public-key", "TANDEM_PUBLIC_KEY", STR, public_key, "FILE"),
     .help = "require tokens signed by this key (from `tandem keygen`);\n"
             "without it the server is open"},
    {OPT("static", "TANDEM_STATIC", STR, static_dir, "DIR"),
     .help = "serve static files (the demo page) from DIR\n"
             "(default: client-js/demo of the source tree)"},
    {OPT("metrics", "TANDEM_METRICS", ENUM, metrics, NULL), .choices = metrics_modes,
     .def = "auto",
     .help = "who may GET /metrics: open; token (any valid token, as\n"
             "Authorization: Bearer or ?token=; needs --public-key); auto: token\n"
             "when --public-key is given, else open"},
    {OPT("log-level", "TANDEM_LOG_LEVEL", ENUM, log_level, NULL), .choices = log_levels,
     .def = "warn", .help = "libwebsockets' messages to show"},
    /* Off by default: the permessage-deflate inflater of libwebsockets 4.1.6
     * (Debian 12) hits an assertion and aborts the process on some large
     * compressed messages, legitimate ones included (tests/server/
     * test_srv_bigmsg.c shows it with TD_TEST_DEFLATE=1). */
    {OPT("loop", "TANDEM_LOOP", ENUM, loop, NULL), .choices = loops, .def = "epoll",
     .help = "epoll: libev's epoll loop (a wait costs what is ready); poll:\n"
             "libwebsockets' own poll() loop (a wait walks every socket)"},
    {OPT("deflate", "TANDEM_DEFLATE", BOOL, deflate, "0|1"), .def = "0",
     .help = "offer permessage-deflate (libwebsockets 4.1.6 as Debian ships it\n"
             "can abort on large compressed messages)"},
    {OPT("cluster", "TANDEM_CLUSTER", STR, cluster, "nats://HOST:PORT[,...]"),
     .help = "cluster mode: share documents with the other nodes through these\n"
             "NATS JetStream servers (docs/CLUSTER.md); without it, one node"},
    {OPT("cluster-node", "TANDEM_CLUSTER_NODE", STR, cluster_node, "NAME"),
     .help = "this node's name in the cluster, for logs and metrics (a random\n"
             "suffix per start keeps it unique)"},
    {OPT("cluster-replicas", "TANDEM_CLUSTER_REPLICAS", COUNT, cluster_replicas, "N"),
     .def = "1", .min = 1, .max = 5,
     .help = "replicas of the JetStream stream if this node creates it (3 with\n"
             "three brokers: an acknowledged batch is then on two of them)"},
    {OPT("cluster-outage", "TANDEM_CLUSTER_OUTAGE", ENUM, cluster_outage, NULL),
     .choices = outages, .def = "refuse",
     .help = "writes while the broker is unreachable: refuse (retryable error;\n"
             "an ACK always means a quorum of brokers has the batch) or outbox\n"
             "(ACK after this node's disk alone, published when the broker is back)"},
};
#undef OPT

static int serve(const td_srv_verb *v, void *args);

const td_srv_verb td_srv_verb_serve = {
    "serve", "run the collaboration server",
    "WebSocket sync (docs/PROTOCOL.md), presence, and HTTP (/healthz, /metrics,\n"
    "/docs/ID, static files) on one port.\n",
    opts, TD_SRV_LEN(opts), NULL, 0, sizeof(td_srv_config), serve};

/* --static as an absolute path to a directory; without it, the demo page of
 * the source tree if that is still there. Returns -1 or an exit status. */
static int static_dir(td_srv_config *c)
{
    static char path[PATH_MAX];
    struct stat st;

    if (!c->static_dir) {
        if (stat(TD_SRV_SOURCE_DIR "/client-js/demo", &st) == 0 && S_ISDIR(st.st_mode))
            c->static_dir = TD_SRV_SOURCE_DIR "/client-js/demo";
        else
            return -1;
    }
    if (!realpath(c->static_dir, path) || stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        td_srv_fail(&td_srv_verb_serve, "--static %s is not a directory", c->static_dir);
        return TD_SRV_EXIT_USAGE;
    }
    c->static_dir = path;
    return -1;
}

/* --metrics auto as open or token; token without a key could never be
 * satisfied. Returns -1 or an exit status. */
static int metrics_access(td_srv_config *c)
{
    if (c->metrics == TD_SRV_METRICS_AUTO)
        c->metrics = c->public_key ? TD_SRV_METRICS_TOKEN : TD_SRV_METRICS_OPEN;
    if (c->metrics == TD_SRV_METRICS_TOKEN && !c->public_key) {
        td_srv_fail(&td_srv_verb_serve, "--metrics token needs --public-key");
        return TD_SRV_EXIT_USAGE;
    }
    return -1;
}

static int serve(const td_srv_verb *v, void *args)
{
    int rc = static_dir(args);
    (void)v;
    if (rc < 0)
        rc = metrics_access(args);
    return rc < 0 ? td_srv_run(args) : rc;
}

int td_srv_cmd_serve(int argc, char **argv)
{
    return td_srv_cli_run(&td_srv_verb_serve, argc, argv);
}
