/*
 * srv_main.c -- `tandem serve`: its flags, their environment variables and
 * defaults.
 *
 * Every flag has an environment variable (TANDEM_ + the flag name in upper
 * case with '-' as '_'); a flag on the command line wins over the variable.
 * Sizes take K, M or G suffixes (powers of 1024), durations ms or s
 * (milliseconds when bare). The table below is the single source of the
 * flags, their parsing and --help.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "srv_internal.h"

#ifndef TD_SRV_SOURCE_DIR
#define TD_SRV_SOURCE_DIR "."
#endif

typedef enum { K_STR, K_PORT, K_SIZE, K_MS, K_COUNT, K_DURABILITY, K_LOG, K_BOOL } kind;

typedef struct opt {
    const char *name; /* without "--" */
    const char *env;
    kind k;
    size_t off;       /* into td_srv_config */
    const char *arg, *help;
} opt;

#define O(f) offsetof(td_srv_config, f)
static const opt opts[] = {
    {"addr", "TANDEM_ADDR", K_STR, O(addr), "ADDR", "address to listen on (default 127.0.0.1)"},
    {"port", "TANDEM_PORT", K_PORT, O(port), "PORT", "port for WebSocket and HTTP (default 8080)"},
    {"data", "TANDEM_DATA", K_STR, O(data), "DIR", "data directory, created if missing (default ./data)"},
    {"durability", "TANDEM_DURABILITY", K_DURABILITY, O(durability), "MODE",
     "always (fsync per write), group (shared fsync, default) or off"},
    {"presence-interval", "TANDEM_PRESENCE_INTERVAL", K_MS, O(presence_interval_ms), "MS",
     "at most one presence broadcast per client per interval (default 100ms)"},
    {"presence-ttl", "TANDEM_PRESENCE_TTL", K_MS, O(presence_ttl_ms), "MS",
     "presence entries expire after this silence (default 30s)"},
    {"max-frame", "TANDEM_MAX_FRAME", K_SIZE, O(max_frame), "BYTES",
     "largest WebSocket message accepted; bigger closes with 1009 (default 8M)"},
    {"max-batch", "TANDEM_MAX_BATCH", K_SIZE, O(max_batch), "BYTES",
     "largest batch in an UPDATE (default 4M)"},
    {"max-presence", "TANDEM_MAX_PRESENCE", K_SIZE, O(max_presence), "BYTES",
     "largest presence state (default 4096)"},
    {"max-subs", "TANDEM_MAX_SUBS", K_COUNT, O(max_subs), "N",
     "subscriptions per connection (default 1024)"},
    {"send-queue", "TANDEM_SEND_QUEUE", K_SIZE, O(send_queue), "BYTES",
     "unsent bytes per connection before it is closed as a slow consumer (default 16M)"},
    {"doc-idle", "TANDEM_DOC_IDLE", K_MS, O(doc_idle_ms), "MS",
     "unload a document this long after its last subscriber left (default 30s)"},
    {"compact-ops", "TANDEM_COMPACT_OPS", K_COUNT, O(compact_ops), "N",
     "fold a document's log into a snapshot after N ops (default 10000)"},
    {"compact-bytes", "TANDEM_COMPACT_BYTES", K_SIZE, O(compact_bytes), "BYTES",
     "... or after this many log bytes (default 4M)"},
    {"public-key", "TANDEM_PUBLIC_KEY", K_STR, O(public_key), "FILE",
     "require tokens signed by this key (from `tandem keygen`); without it the server is open"},
    {"static", "TANDEM_STATIC", K_STR, O(static_dir), "DIR",
     "serve static files (the demo page) from DIR (default: client-js/demo of the source tree)"},
    {"log-level", "TANDEM_LOG_LEVEL", K_LOG, O(log_level), "LEVEL",
     "error, warn (default), notice, info or debug"},
    {"deflate", "TANDEM_DEFLATE", K_BOOL, O(deflate), "0|1",
     "offer permessage-deflate (default 0: libwebsockets 4.1.6 as Debian ships it can abort on large compressed messages)"},
};
#define NOPTS (sizeof opts / sizeof opts[0])

static void usage(FILE *out)
{
    fprintf(out, "usage: tandem serve [options]\n\n"
                 "Runs the collaboration server: WebSocket sync (docs/PROTOCOL.md), presence,\n"
                 "and HTTP (/healthz, /metrics, /docs/ID, static files) on one port.\n"
                 "Every option can also be set by its environment variable.\n\n");
    for (size_t i = 0; i < NOPTS; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s %s", opts[i].name, opts[i].arg);
        fprintf(out, "  %-28s %s\n  %-28s [%s]\n", left, opts[i].help, "", opts[i].env);
    }
    fprintf(out, "  %-28s %s\n", "--help", "show this help");
}

static int parse_u64(const char *s, uint64_t *out, kind k)
{
    char *end;
    unsigned long long v;
    if (!*s || *s == '-')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    uint64_t mul = 1;
    if (k == K_SIZE) {
        if (*end == 'K' || *end == 'k') mul = 1024, end++;
        else if (*end == 'M' || *end == 'm') mul = 1024 * 1024, end++;
        else if (*end == 'G' || *end == 'g') mul = 1024ull * 1024 * 1024, end++;
        if (*end == 'B' || *end == 'b' || *end == 'i')
            end += (*end == 'i' && (end[1] == 'B' || end[1] == 'b')) ? 2 : 1;
    } else if (k == K_MS) {
        if (strcmp(end, "ms") == 0) end += 2;
        else if (strcmp(end, "s") == 0) mul = 1000, end++;
    }
    if (*end || (v && mul > UINT64_MAX / v))
        return -1;
    *out = v * mul;
    return 0;
}

static int log_mask(const char *s, int *out)
{
    static const char *const names[] = {"error", "warn", "notice", "info", "debug"};
    static const int bits[] = {LLL_ERR, LLL_WARN, LLL_NOTICE, LLL_INFO, LLL_DEBUG};
    int m = 0;
    for (size_t i = 0; i < 5; i++) {
        m |= bits[i];
        if (strcmp(s, names[i]) == 0) {
            *out = m;
            return 0;
        }
    }
    return -1;
}

static int set_opt(td_srv_config *c, const opt *o, const char *v)
{
    char *base = (char *)c + o->off;
    uint64_t u;
    switch (o->k) {
    case K_STR:
        if (!*v)
            return -1;
        *(const char **)base = v;
        return 0;
    case K_PORT:
        if (parse_u64(v, &u, K_COUNT) < 0 || u < 1 || u > 65535)
            return -1;
        *(int *)base = (int)u;
        return 0;
    case K_SIZE: case K_MS: case K_COUNT:
        if (parse_u64(v, &u, o->k) < 0)
            return -1;
        *(uint64_t *)base = u;
        return 0;
    case K_DURABILITY:
        return td_store_durability_parse(v, (td_store_durability *)base);
    case K_LOG:
        return log_mask(v, (int *)base);
    case K_BOOL:
        if (strcmp(v, "1") && strcmp(v, "0") && strcmp(v, "true") && strcmp(v, "false"))
            return -1;
        *(int *)base = (v[0] == '1' || v[0] == 't');
        return 0;
    }
    return -1;
}

static void defaults(td_srv_config *c)
{
    memset(c, 0, sizeof *c);
    c->addr = "127.0.0.1";
    c->port = 8080;
    c->data = "./data";
    c->durability = TD_STORE_SYNC_GROUP;
    c->presence_interval_ms = 100;
    c->presence_ttl_ms = 30000;
    c->max_frame = 8u << 20;
    c->max_batch = 4u << 20;
    c->max_presence = 4096;
    c->max_subs = 1024;
    c->send_queue = 16u << 20;
    c->doc_idle_ms = 30000;
    c->log_level = LLL_ERR | LLL_WARN;
    /* Off by default: the permessage-deflate inflater of libwebsockets 4.1.6
     * (Debian 12) hits an assertion and aborts the process on some large
     * compressed messages, legitimate ones included (tests/server/
     * test_srv_bigmsg.c shows it with TD_TEST_DEFLATE=1). Opt in with
     * --deflate 1 where every client is trusted. */
    c->deflate = 0;
}

/* Returns 0 to run, or -1 with *exit_code set. */
static int td_srv_config_parse(td_srv_config *c, int argc, char **argv, int *exit_code)
{
    static char static_buf[PATH_MAX];
    int static_given = 0;
    defaults(c);
    for (size_t i = 0; i < NOPTS; i++) {
        const char *v = getenv(opts[i].env);
        if (v && set_opt(c, &opts[i], v) < 0) {
            fprintf(stderr, "tandem serve: bad value '%s' in %s\n", v, opts[i].env);
            *exit_code = 2;
            return -1;
        }
        if (v && strcmp(opts[i].name, "static") == 0)
            static_given = 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        size_t i_opt;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            *exit_code = 0;
            return -1;
        }
        if (strncmp(a, "--", 2) != 0)
            goto bad;
        a += 2;
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        for (i_opt = 0; i_opt < NOPTS; i_opt++)
            if (strlen(opts[i_opt].name) == nlen && strncmp(opts[i_opt].name, a, nlen) == 0)
                break;
        if (i_opt == NOPTS)
            goto bad;
        if (eq)
            v = eq + 1;
        else if (i + 1 < argc)
            v = argv[++i];
        else {
            fprintf(stderr, "tandem serve: --%s needs a value\n", opts[i_opt].name);
            *exit_code = 2;
            return -1;
        }
        if (set_opt(c, &opts[i_opt], v) < 0) {
            fprintf(stderr, "tandem serve: bad value '%s' for --%s (%s)\n", v,
                    opts[i_opt].name, opts[i_opt].help);
            *exit_code = 2;
            return -1;
        }
        if (strcmp(opts[i_opt].name, "static") == 0)
            static_given = 1;
        continue;
    bad:
        fprintf(stderr, "tandem serve: unknown argument '%s' (see 'tandem serve --help')\n",
                argv[i]);
        *exit_code = 2;
        return -1;
    }
    if (c->presence_interval_ms < 1 || c->presence_ttl_ms < 1 || c->max_frame < 64 ||
        c->max_batch < 1 || c->max_subs < 1 || c->send_queue < 1024) {
        fprintf(stderr, "tandem serve: presence interval/ttl must be >= 1 ms, max-frame >= 64,"
                        " send-queue >= 1024, max-subs >= 1\n");
        *exit_code = 2;
        return -1;
    }
    if (!static_given) {
        struct stat st;
        c->static_dir = NULL;
        if (stat(TD_SRV_SOURCE_DIR "/client-js/demo", &st) == 0 && S_ISDIR(st.st_mode))
            c->static_dir = TD_SRV_SOURCE_DIR "/client-js/demo";
    }
    if (c->static_dir) {
        struct stat st;
        if (!realpath(c->static_dir, static_buf) || stat(static_buf, &st) != 0 ||
            !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "tandem serve: --static %s is not a directory\n", c->static_dir);
            *exit_code = 2;
            return -1;
        }
        c->static_dir = static_buf;
    }
    return 0;
}

int td_srv_cmd_serve(int argc, char **argv)
{
    td_srv_config c;
    int code = 0;
    if (td_srv_config_parse(&c, argc, argv, &code) < 0)
        return code;
    return td_srv_run(&c);
}
