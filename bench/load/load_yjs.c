/*
 * load_yjs.c -- `tandem-load --proto yjs`: workloads A-D (and a sweep of
 * A's load) driven by LIGHT y-websocket clients at ws://HOST:PORT/yjs/ROOM
 * (docs/PROTOCOL-YJS.md), each figure beside the native protocol's figure
 * of the same run.
 *
 * Light means no Y.Doc per client, so that the client stays cheap and the
 * server is what is measured (client and server share this machine's
 * cores):
 *  - every client has its own Yjs clientID (base + index) and types into
 *    root text "t" by hand-encoded Yjs v1 updates of one ContentString
 *    item: the first character with no origin (parent: the root by name,
 *    so it lands at the start of the text), every later one with the
 *    client's own previous character as origin and no right origin. That
 *    is a valid Yjs insert a real client could send ("type after my last
 *    character"); it needs no model of the others' characters, and it only
 *    ever references an op that travelled on the same socket earlier, so
 *    the server never has to park a struct for a missing dependency.
 *  - at connect: sync step 1 with an empty state vector (the subscription)
 *    and one awareness state, like a provider; the server's step 1 is
 *    answered with an empty step 2.
 *  - receivers scan each update's struct headers for (client, clock, len)
 *    ranges (the walk of peers-server/lib/light.mjs scanUpdate, in C) and
 *    time each character against its send time; nothing is integrated.
 *
 * The connections are tests/client's (td_client.h) in its no-HELLO mode:
 * the y-protocols message types 0..3 mean nothing to its native decoder, so
 * every frame just reaches on_message, and its single lws poll loop,
 * send queue and reconnect are reused as they are.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "load_metrics.h"
#include "load_type.h"
#include "load_yjs.h"
#include "td_client.h"

/* ---- settings and small helpers ------------------------------------------------------ */

static const load_cfg *g_cfg;

static uint64_t rnd(void)
{
    return td_rng_next(g_cfg->rng);
}

/* CPU seconds of this process (the load generator), to show when it and
 * not the server is the bottleneck. */
static double self_cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static double ratio(double yjs, double native)
{
    return native > 0 ? yjs / native : 0;
}

/* ---- latency samples (as tandem_load.c's, with the percentiles returned) -------------- */

typedef struct lat {
    uint32_t *us;
    size_t n, cap;
    int oom;
} lat;

typedef struct pct {
    double p50, p90, p99, max; /* ms */
    size_t n;
} pct;

static void lat_add(lat *l, uint64_t us)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 65536;
        uint32_t *p = realloc(l->us, cap * sizeof *p);
        if (!p) {
            l->oom = 1; /* the figures will say so rather than lie quietly */
            return;
        }
        l->us = p;
        l->cap = cap;
    }
    l->us[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static pct lat_pct(lat *l)
{
    pct p = {0};
    if (!l->n)
        return p;
    qsort(l->us, l->n, sizeof l->us[0], cmp_u32);
#define AT(q) (l->us[(size_t)((double)(l->n - 1) * (q))] / 1000.0)
    p.p50 = AT(0.5);
    p.p90 = AT(0.9);
    p.p99 = AT(0.99);
#undef AT
    p.max = l->us[l->n - 1] / 1000.0;
    p.n = l->n;
    return p;
}

static void pct_print(const char *what, const lat *l, pct p)
{
    if (!p.n) {
        printf("  %-28s no samples\n", what);
        return;
    }
    printf("  %-28s p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  (%zu samples)%s\n",
           what, p.p50, p.p90, p.p99, p.max, p.n, l->oom ? "  SAMPLES LOST (no memory)" : "");
}

static void lat_free(lat *l)
{
    free(l->us);
    memset(l, 0, sizeof *l);
}

/* ---- the server (the same flags as tandem_load.c's start_server) ---------------------- */

/* many: C's connection caps lifted, as tandem_load.c does for its C (every
 * connection comes from 127.0.0.1, and the per-address default is 256). */
static int start_server(td_cli_server *s, int many)
{
    const char *args[] = {"--durability", g_cfg->durability, "--log-level", "warn", "--deflate",
                          "1", many ? "--max-conns-per-ip" : NULL, "1000000", "--max-conns",
                          "1000000", NULL};
    if (td_cli_server_start(s, g_cfg->bin, NULL, args, 30000) < 0) {
        fprintf(stderr, "tandem-load: cannot start `%s serve` (log: %s)\n", g_cfg->bin,
                s->log_path);
        td_cli_server_cleanup(s);
        return -1;
    }
    return 0;
}

static void stop_server(td_cli_server *s)
{
    td_cli_server_stop(s, SIGTERM, 20000);
    td_cli_server_cleanup(s);
}

static double server_figures(td_cli_server *s, double cpu0, double self0, double secs)
{
    double cpu = td_cli_proc_cpu_s(s->pid) - cpu0, self = self_cpu_s() - self0;
    printf("  server: %.2f CPU s over %.1f s (%.0f%% of a core), peak RSS %ld KiB; "
           "load generator %.0f%% of a core\n",
           cpu, secs, secs > 0 ? 100.0 * cpu / secs : 0.0, td_cli_proc_hwm_kb(s->pid),
           secs > 0 ? 100.0 * self / secs : 0.0);
    return secs > 0 ? cpu / secs : 0;
}

/* ---- lib0 encoding ---------------------------------------------------------------------- */

typedef struct wb {
    uint8_t *p;
    size_t len, cap;
    int oom;
} wb;

static void wb_byte(wb *b, uint8_t v)
{
    if (b->len == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    b->p[b->len++] = v;
}

static void wb_uint(wb *b, uint64_t v)
{
    while (v >= 0x80) {
        wb_byte(b, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    wb_byte(b, (uint8_t)v);
}

static void wb_raw(wb *b, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        wb_byte(b, ((const uint8_t *)p)[i]);
}

/* A lib0 varUint8Array / varString: length, then the bytes. */
static void wb_bytes(wb *b, const void *p, size_t n)
{
    wb_uint(b, n);
    wb_raw(b, p, n);
}

/* One Yjs v1 update: `n` characters (ASCII, so one UTF-16 unit each) of
 * `client` from clock `clock`, as ONE ContentString item (what Yjs itself
 * encodes for a run typed in sequence), after the client's own character
 * clock-1 -- or, at clock 0, at the start of root text "t". */
static void y_insert_update(wb *u, uint32_t client, uint32_t clock, const char *chars, size_t n)
{
    wb_uint(u, 1); /* clients with structs */
    wb_uint(u, 1); /* structs of this client */
    wb_uint(u, client);
    wb_uint(u, clock);
    if (clock == 0) {
        wb_byte(u, 4); /* ContentString, no origins: parent info follows */
        wb_uint(u, 1); /* parent is a root type, by name */
        wb_bytes(u, "t", 1);
    } else {
        wb_byte(u, 0x80 | 4); /* origin, no right origin */
        wb_uint(u, client);
        wb_uint(u, clock - 1);
    }
    wb_bytes(u, chars, n);
    wb_uint(u, 0); /* empty delete set */
}

enum { Y_SYNC = 0, Y_AWARENESS = 1, Y_AUTH = 2, Y_QUERY_AWARENESS = 3 };
enum { Y_STEP1 = 0, Y_STEP2 = 1, Y_UPDATE = 2 };

/* A whole sync message around an update (step 2 or update). */
static void y_sync_msg(wb *m, int step, const wb *update)
{
    wb_uint(m, Y_SYNC);
    wb_uint(m, (uint64_t)step);
    wb_bytes(m, update->p, update->len);
}

/* ---- lib0 decoding: the receivers' scan ------------------------------------------------ */

typedef struct rd {
    const uint8_t *p;
    size_t len, pos;
    int bad;
} rd;

static uint64_t rd_uint(rd *r)
{
    uint64_t v = 0;
    for (int shift = 0; !r->bad; shift += 7) {
        if (r->pos >= r->len || shift > 63) {
            r->bad = 1;
            break;
        }
        uint8_t b = r->p[r->pos++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    return 0;
}

/* Skips a varUint8Array / varString; returns its bytes (NULL if bad). */
static const uint8_t *rd_skip(rd *r, size_t *n)
{
    uint64_t len = rd_uint(r);
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

/* UTF-16 length of UTF-8 bytes: Yjs counts a ContentString's clocks in
 * UTF-16 units (a 4-byte sequence is a surrogate pair). */
static uint64_t utf16_len(const uint8_t *p, size_t n)
{
    uint64_t u = 0;
    for (size_t i = 0; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            u += p[i] >= 0xf0 ? 2 : 1;
    return u;
}

struct yc;
typedef void (*range_fn)(struct yc *me, uint64_t client, uint64_t clock, uint64_t len,
                         uint64_t now);

/* Walks the struct headers of a v1 update (the delete set is not read) and
 * reports each item's (client, clock, len). Only the content types this
 * benchmark's clients write, plus GC / Skip / Deleted, are understood: an
 * Any or Doc content would need lib0's readAny, and no client here sends
 * one, so it counts as a malformed update. Returns 0 or -1. */
static int y_scan(struct yc *me, const uint8_t *p, size_t len, range_fn fn, uint64_t now)
{
    rd r = {p, len, 0, 0};
    uint64_t nclients = rd_uint(&r);
    for (uint64_t i = 0; i < nclients && !r.bad; i++) {
        uint64_t nstructs = rd_uint(&r), client = rd_uint(&r), clock = rd_uint(&r);
        for (uint64_t s = 0; s < nstructs && !r.bad; s++) {
            if (r.pos >= r.len)
                return -1;
            uint8_t info = r.p[r.pos++];
            unsigned ref = info & 31;
            size_t n;
            if (ref == 0 || ref == 10) { /* GC, Skip: clocks only */
                clock += rd_uint(&r);
                continue;
            }
            if (info & 0x80)
                rd_uint(&r), rd_uint(&r); /* origin */
            if (info & 0x40)
                rd_uint(&r), rd_uint(&r); /* right origin */
            if (!(info & 0xc0)) {
                if (rd_uint(&r) == 1)
                    rd_skip(&r, &n); /* parent: root type by name */
                else
                    rd_uint(&r), rd_uint(&r); /* parent: an item id */
                if (info & 0x20)
                    rd_skip(&r, &n); /* parentSub */
            }
            uint64_t l = 1;
            switch (ref) {
            case 4: { /* String */
                const uint8_t *s8 = rd_skip(&r, &n);
                l = s8 ? utf16_len(s8, n) : 0;
                break;
            }
            case 1: l = rd_uint(&r); break; /* Deleted */
            case 2:                           /* JSON: strings */
                l = rd_uint(&r);
                for (uint64_t k = 0; k < l && !r.bad; k++)
                    rd_skip(&r, &n);
                break;
            case 3: rd_skip(&r, &n); break; /* Binary */
            case 5: rd_skip(&r, &n); break; /* Embed */
            case 6: rd_skip(&r, &n), rd_skip(&r, &n); break; /* Format */
            case 7: {                                        /* Type */
                uint64_t t = rd_uint(&r);
                if (t == 3 || t == 5)
                    rd_skip(&r, &n);
                break;
            }
            default: return -1;
            }
            if (r.bad)
                return -1;
            fn(me, client, clock, l, now);
            clock += l;
        }
    }
    return r.bad ? -1 : 0;
}

/* ---- light clients ------------------------------------------------------------------------ */

typedef struct yrun yrun;

typedef struct yc {
    yrun *run;
    td_cli_conn *conn;
    uint32_t client; /* Yjs clientID */
    int idx, doc;    /* index in run->c; document (room) index */
    int hello;       /* step 1 and awareness sent on the current socket */
    int synced;      /* the server's step 2 arrived on the current socket */
    uint32_t clock;  /* own next clock = characters sent */
    uint64_t next_us;
    uint64_t *sent_us; /* by clock */
    size_t capsent;
    uint32_t *seen; /* per peer of the same room: clocks seen */
    uint64_t aw_clock;
    char aw_state[64];
} yc;

struct yrun {
    yc *c;
    int n, per;    /* clients, clients per room */
    int probes;    /* per room, the first `probes` clients time what they get */
    uint32_t base; /* clientID of c[0] */
    range_fn on_range;
    lat l;
    uint64_t deliveries; /* characters of others received, each once */
    uint64_t bad, denied, aw_in;
};

/* The receive side of A (and of the sweep): one latency sample per
 * character of a peer in the same room, the first time it is seen. */
static void a_range(yc *me, uint64_t client, uint64_t clock, uint64_t len, uint64_t now)
{
    yrun *r = me->run;
    if (client < r->base || client - r->base >= (uint64_t)r->n)
        return; /* not ours (cannot happen on a fresh server) */
    yc *w = &r->c[client - r->base];
    if (w == me || w->doc != me->doc)
        return;
    uint32_t *seen = &me->seen[w->idx - w->doc * r->per];
    uint64_t end = clock + len;
    int probe = me->idx - me->doc * r->per < r->probes;
    for (uint64_t k = clock > *seen ? clock : *seen; k < end && k < w->clock; k++) {
        if (probe)
            lat_add(&r->l, now - w->sent_us[k]);
        r->deliveries++;
    }
    if (end > *seen)
        *seen = (uint32_t)(end < w->clock ? end : w->clock);
}

static int yc_send(yc *c, const wb *m)
{
    if (m->oom || td_cli_send_raw(c->conn, m->p, m->len, 0) < 0) {
        c->run->bad++;
        return -1;
    }
    return 0;
}

/* What a provider sends when its socket opens: sync step 1 with its (here
 * empty) state vector, then its awareness state. */
static int yc_hello(yc *c)
{
    static const uint8_t step1[] = {Y_SYNC, Y_STEP1, 1, 0};
    wb u = {0}, m = {0};
    int rc = td_cli_send_raw(c->conn, step1, sizeof step1, 0);
    wb_uint(&u, 1); /* one entry */
    wb_uint(&u, c->client);
    wb_uint(&u, ++c->aw_clock);
    wb_bytes(&u, c->aw_state, strlen(c->aw_state));
    wb_uint(&m, Y_AWARENESS);
    wb_bytes(&m, u.p, u.len);
    if (rc == 0)
        rc = yc_send(c, &m);
    free(u.p);
    free(m.p);
    c->hello = 1;
    return rc;
}

/* Types n characters as one update message. */
static int yc_type(yc *c, const char *chars, size_t n, uint64_t now)
{
    if (c->clock + n > c->capsent) {
        size_t cap = c->capsent ? c->capsent * 2 : 1024;
        while (cap < c->clock + n)
            cap *= 2;
        uint64_t *p = realloc(c->sent_us, cap * sizeof *p);
        if (!p) {
            c->run->bad++;
            return -1;
        }
        c->sent_us = p;
        c->capsent = cap;
    }
    wb u = {0}, m = {0};
    y_insert_update(&u, c->client, c->clock, chars, n);
    y_sync_msg(&m, Y_UPDATE, &u);
    for (size_t k = 0; k < n; k++)
        c->sent_us[c->clock + k] = now;
    int rc = yc_send(c, &m);
    if (rc == 0)
        c->clock += (uint32_t)n;
    free(u.p);
    free(m.p);
    return rc;
}

static void yc_on_message(td_cli_conn *conn, const uint8_t *msg, size_t len, int is_text,
                          void *ud)
{
    (void)conn;
    yc *c = ud;
    yrun *r = c->run;
    uint64_t now = td_cli_now_us();
    rd d = {msg, len, 0, 0};
    if (is_text) {
        r->bad++;
        return;
    }
    uint64_t type = rd_uint(&d);
    if (type == Y_SYNC) {
        uint64_t step = rd_uint(&d);
        size_t n;
        const uint8_t *u = rd_skip(&d, &n);
        if (d.bad) {
            r->bad++;
        } else if (step == Y_STEP1) {
            /* the server's state vector: we hold nothing it lacks that we
             * have not sent already, so an empty update, as light.mjs */
            static const uint8_t step2[] = {Y_SYNC, Y_STEP2, 2, 0, 0};
            if (td_cli_send_raw(c->conn, step2, sizeof step2, 0) < 0)
                r->bad++;
        } else if (step == Y_STEP2 || step == Y_UPDATE) {
            if (y_scan(c, u, n, r->on_range, now) < 0)
                r->bad++;
            if (step == Y_STEP2)
                c->synced = 1;
        } else {
            r->bad++;
        }
    } else if (type == Y_AWARENESS) {
        r->aw_in++;
    } else if (type == Y_AUTH) {
        /* permission denied: nothing here should be refused */
        if (r->denied++ < 3) {
            size_t n;
            rd_uint(&d);
            const uint8_t *why = rd_skip(&d, &n);
            fprintf(stderr, "tandem-load: client %u refused: %.*s\n", c->client,
                    why ? (int)n : 0, why ? (const char *)why : "");
        }
    }
}

static int yc_connect(yrun *r, td_cli_ctx *ctx, int i, int port, const char *room)
{
    yc *c = &r->c[i];
    char url[300];
    td_cli_conn_opts o = {0};
    c->run = r;
    c->idx = i;
    c->client = r->base + (uint32_t)i;
    c->doc = i / r->per;
    snprintf(c->aw_state, sizeof c->aw_state, "{\"cursor\":%d,\"sel\":[%d,%d]}", i, i, i + 3);
    c->seen = calloc((size_t)r->per, sizeof *c->seen);
    if (!c->seen)
        return -1;
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/yjs/%s", port, room);
    o.no_hello = 1; /* the y-protocols hello is ours: yc_hello */
    o.cb.on_message = yc_on_message;
    o.cb.ud = c;
    c->conn = td_cli_connect(ctx, url, &o);
    return c->conn ? 0 : -1;
}

static int yrun_new(yrun *r, int n, int per, range_fn fn)
{
    memset(r, 0, sizeof *r);
    r->c = calloc((size_t)n, sizeof *r->c);
    if (!r->c)
        return -1;
    r->n = n;
    r->per = per;
    r->probes = per;
    /* clientIDs are uint32 in Yjs; a random base keeps runs apart */
    r->base = (uint32_t)(1 + rnd() % 0x7fff0000u);
    r->on_range = fn;
    return 0;
}

static void yrun_free(yrun *r)
{
    for (int i = 0; i < r->n; i++) {
        free(r->c[i].sent_us);
        free(r->c[i].seen);
    }
    free(r->c);
    lat_free(&r->l);
    memset(r, 0, sizeof *r);
}

/* Predicate of the connect waits: says hello on every socket that opened
 * since the last call (td_client has no open callback), true when the
 * clients [from, to) all had their sync answered. A closed socket fails
 * the wait by never becoming synced. */
typedef struct span {
    yrun *r;
    int from, to;
} span;

static int span_synced(void *p)
{
    span *s = p;
    int all = 1;
    for (int i = s->from; i < s->to; i++) {
        yc *c = &s->r->c[i];
        if (!c->hello && td_cli_conn_state(c->conn) == TD_CLI_OPEN)
            yc_hello(c);
        if (!c->synced)
            all = 0;
    }
    return all;
}

static int count_closed(yrun *r)
{
    int n = 0;
    for (int i = 0; i < r->n; i++) /* C may stop before it opened them all */
        n += r->c[i].conn && td_cli_conn_state(r->c[i].conn) == TD_CLI_CLOSED;
    return n;
}

/* Why clients [from, to) are not synced: their states, and the close code
 * of the first closed one. */
static void why_not_ready(yrun *r, int from, int to)
{
    int st[4] = {0}, code = 0, synced = 0;
    for (int i = from; i < to; i++) {
        if (!r->c[i].conn)
            continue;
        td_cli_state s = td_cli_conn_state(r->c[i].conn);
        st[s]++;
        synced += r->c[i].synced;
        if (s == TD_CLI_CLOSED && !code)
            code = td_cli_close_code(r->c[i].conn);
    }
    fprintf(stderr, "  (%d connecting, %d open of which %d synced, %d closed: first close code "
                    "%d)\n", st[TD_CLI_CONNECTING], st[TD_CLI_OPEN], synced, st[TD_CLI_CLOSED],
            code);
}

/* ---- A: fan-out (and the sweep) ------------------------------------------------------ */

typedef struct a_res {
    pct p;
    double typed_s, deliv_s, server_cores;
    uint64_t deliveries, expect;
    int closed;
} a_res;

/* Lazy reading (as peers-server/lib/rawws.mjs does for its light
 * clients): a socket that is not a probe reads only about every LAZY_US,
 * so one read takes all that arrived meanwhile. A receiver that reads each
 * message as it comes costs the load generator about what a send costs the
 * server, and client and server share two cores here: without it the
 * generator, not the server, would bound the sweep. The server's work is
 * the same either way (one frame per delivery); only the probes' receive
 * times are taken, and every delivery is still counted. */
#define LAZY_US 50000
#define LAZY_TICK_US 5000

static void set_reading(yrun *r, int from, int to, int on)
{
    for (int i = from; i < to; i++)
        if (i - r->c[i].doc * r->per >= r->probes)
            td_cli_set_reading(r->c[i].conn, on);
}

/* `docs` rooms x `per` clients, each typing one character every
 * `interval_us` +-50%, for `secs`; then up to 10 s for the stragglers.
 * probes < per: only the first `probes` clients of a room read at once
 * and give latency samples, the others read lazily. */
static int a_run(int docs, int per, int probes, uint64_t interval_us, double secs, a_res *out)
{
    /* With lazy readers the probes' samples only need to be good to a
     * millisecond (the sweep looks for p99 > 50 ms): the loop then polls
     * at most once a millisecond. lws's poll() walks every socket each
     * time, and polling on each arriving message was most of the
     * generator's own CPU -- CPU the server shares. */
    int coarse = probes < per;
    td_cli_server s;
    yrun r;
    int n = docs * per, rc = 0;
    memset(out, 0, sizeof *out);
    if (start_server(&s, 0) < 0)
        return -1;
    td_cli_ctx_opts co = {0};
    co.max_fds = n + 100;
    td_cli_ctx *ctx = td_cli_ctx_new(&co);
    if (!ctx || yrun_new(&r, n, per, a_range) < 0) {
        td_cli_ctx_free(ctx);
        stop_server(&s);
        return -1;
    }
    for (int i = 0; i < n && rc == 0; i++) {
        char room[32];
        snprintf(room, sizeof room, "fanout-%d", i / per);
        rc = yc_connect(&r, ctx, i, s.port, room);
    }
    span all = {&r, 0, n};
    if (rc < 0 || !td_cli_wait(ctx, span_synced, &all, 30000)) {
        fprintf(stderr, "A: clients not ready\n");
        why_not_ready(&r, 0, n);
        rc = -1;
        goto done;
    }
    r.probes = probes;
    set_reading(&r, 0, n, 0);
    /* each tick lets the next slice of sockets read once */
    int slice = (int)(((uint64_t)n * LAZY_TICK_US + LAZY_US - 1) / LAZY_US), cursor = 0;
    uint64_t t0 = td_cli_now_us(), end = t0 + (uint64_t)(secs * 1e6), tick = t0;
    double cpu0 = td_cli_proc_cpu_s(s.pid), self0 = self_cpu_s();
    load_writes w0 = load_writes_of(&s);
    uint64_t half = interval_us / 2;
    for (int i = 0; i < n; i++)
        r.c[i].next_us = t0 + half + rnd() % (interval_us + 1);
    uint64_t typed = 0;
    while (td_cli_now_us() < end) {
        uint64_t now = td_cli_now_us(), soonest = end;
        int from = -1, to = -1;
        if (probes < per && now >= tick) {
            from = cursor;
            to = cursor + slice < n ? cursor + slice : n;
            cursor = to < n ? to : 0;
            set_reading(&r, from, to, 1);
            tick = now + LAZY_TICK_US;
        }
        if (probes < per && tick < soonest)
            soonest = tick;
        for (int i = 0; i < n; i++) {
            yc *c = &r.c[i];
            if (c->next_us <= now) {
                char ch = (char)('a' + rnd() % 26);
                if (yc_type(c, &ch, 1, td_cli_now_us()) == 0)
                    typed++;
                c->next_us = now + half + rnd() % (interval_us + 1);
            }
            if (c->next_us < soonest)
                soonest = c->next_us;
        }
        now = td_cli_now_us();
        if (coarse) {
            uint64_t wait = soonest > now ? soonest - now : 0;
            struct timespec ts = {0, (long)(wait < 1000 ? wait : 1000) * 1000};
            if (wait)
                nanosleep(&ts, NULL);
            td_cli_service(ctx, 0);
        } else {
            td_cli_service(ctx, load_wait_ms(soonest, now));
        }
        if (from >= 0)
            set_reading(&r, from, to, 0);
    }
    double elapsed = (double)(td_cli_now_us() - t0) / 1e6;
    set_reading(&r, 0, n, 1);
    out->expect = typed * (uint64_t)(per - 1);
    for (uint64_t dl = td_cli_now_us() + 10000000; r.deliveries < out->expect &&
                                                   td_cli_now_us() < dl;)
        td_cli_service(ctx, 10);
    out->deliveries = r.deliveries;
    out->typed_s = typed / elapsed;
    out->deliv_s = r.deliveries / elapsed;
    out->closed = count_closed(&r);
    out->p = lat_pct(&r.l);
    printf("  typed %llu chars (%.0f/s), deliveries %llu of %llu (%.0f/s)%s",
           (unsigned long long)typed, out->typed_s, (unsigned long long)r.deliveries, (unsigned long long)out->expect,
           out->deliv_s, r.deliveries == out->expect ? "" : "  MISSING DELIVERIES");
    if (out->closed || r.bad || r.denied)
        printf("  [%d sockets closed, %llu bad messages, %llu refusals]", out->closed,
               (unsigned long long)r.bad, (unsigned long long)r.denied);
    printf("\n");
    pct_print("send-to-receive latency", &r.l, out->p);
    out->server_cores = server_figures(&s, cpu0, self0, elapsed);
    load_print_writes(&s, w0);
    /* The figure least disturbed by whatever else runs on the machine:
     * the server's CPU per delivery, and the rate one core would carry. */
    if (r.deliveries)
        printf("  server CPU per delivery %.2f us: one core would carry about %.0f deliveries/s\n",
               out->server_cores * elapsed / (double)r.deliveries * 1e6,
               (double)r.deliveries / (out->server_cores * elapsed));
    if (r.deliveries == 0 || r.bad || r.denied)
        rc = -1;
done:
    td_cli_ctx_free(ctx);
    yrun_free(&r);
    stop_server(&s);
    return rc;
}

#define A_DOCS 10
#define A_PER 20
#define A_PROBES 2 /* per room in the sweep; the others read lazily */

static int run_a(const load_native *nat)
{
    double secs = g_cfg->seconds > 0 ? g_cfg->seconds : 20;
    load_fig *f = nat->fig;
    a_res a;
    int rc = 0;
    if (g_cfg->baseline) {
        printf("A (native baseline)\n");
        rc |= nat->run_a();
    }
    printf("A fan-out, y-websocket: %d docs x %d light clients, 1 char every 100 ms +-50%%, "
           "%.0f s, --durability %s\n", A_DOCS, A_PER, secs, g_cfg->durability);
    rc |= a_run(A_DOCS, A_PER, A_PER, 100000, secs, &a);
    if (g_cfg->baseline && f->a_p99_ms > 0)
        printf("  => y-websocket p99 %.3f ms vs native %.3f ms (%.2fx); p50 %.3f vs %.3f ms "
               "(%.2fx)  [bar: p99 <= 2 ms]\n", a.p.p99, f->a_p99_ms, ratio(a.p.p99, f->a_p99_ms),
               a.p.p50, f->a_p50_ms, ratio(a.p.p50, f->a_p50_ms));
    else
        printf("  => y-websocket p99 %.3f ms  [bar: p99 <= 2 ms]\n", a.p.p99);
    return rc;
}

/* The sweep: A's 10 rooms x 20 clients typing k times faster, k growing,
 * until the p99 passes 50 ms (or deliveries go missing: the server or the
 * load generator can no longer keep up). */
static int run_sweep(const load_native *nat)
{
    static const int ks[] = {1, 2, 3, 4, 6, 8, 12, 16, 20, 24, 28, 32, 40, 48, 64, 80, 96, 128};
    double secs = g_cfg->seconds > 0 ? g_cfg->seconds : 5;
    double best = 0, best_p99 = 0, fail = 0, fail_p99 = 0;
    int best_k = 0, fail_k = 0;
    (void)nat; /* the native client keeps a replica per client: no light baseline here */
    printf("A sweep, y-websocket: %d docs x %d light clients typing k times faster "
           "(100/k ms +-50%%), %.0f s a step, until p99 > 50 ms; %d probe receivers per doc, "
           "the others read every %d ms\n", A_DOCS, A_PER, secs, A_PROBES, LAZY_US / 1000);
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        a_res a;
        printf(" k=%d: offered %d chars/s, %d deliveries/s\n", ks[i], A_DOCS * A_PER * 10 * ks[i],
               A_DOCS * A_PER * 10 * ks[i] * (A_PER - 1));
        if (a_run(A_DOCS, A_PER, A_PROBES, 100000 / (uint64_t)ks[i], secs, &a) < 0 &&
            a.deliveries == 0)
            return -1;
        int missing = a.deliveries < a.expect - a.expect / 100 || a.closed;
        if (a.p.p99 > 50 || missing) {
            fail = a.deliv_s;
            fail_k = ks[i];
            fail_p99 = a.p.p99;
            break;
        }
        best = a.deliv_s;
        best_k = ks[i];
        best_p99 = a.p.p99;
    }
    printf("  => highest load with p99 <= 50 ms: k=%d, %.0f deliveries/s (p99 %.3f ms)", best_k,
           best, best_p99);
    if (fail_k)
        printf("; k=%d: %.0f deliveries/s, p99 %.3f ms", fail_k, fail, fail_p99);
    else
        printf("; p99 never passed 50 ms up to the last step");
    printf("  [bar: >= 300,000/s]\n");
    return 0;
}

/* ---- B: throughput ------------------------------------------------------------------------- */

#define B_WRITERS 2
#define B_READERS 8
#define B_OPS 10
#define B_WINDOW 16

/* Readers count characters; reader 0 also times each update (its last
 * character) against its send and stands in for the ACK y-websocket does
 * not have: a writer keeps at most B_WINDOW updates not yet seen there. */
static void b_range(yc *me, uint64_t client, uint64_t clock, uint64_t len, uint64_t now)
{
    yrun *r = me->run;
    if (client < r->base || client - r->base >= B_WRITERS || me->idx < B_WRITERS)
        return;
    yc *w = &r->c[client - r->base];
    uint32_t *seen = &me->seen[w->idx];
    uint64_t end = clock + len;
    for (uint64_t k = clock > *seen ? clock : *seen; k < end && k < w->clock; k++) {
        r->deliveries++;
        if (me->idx == B_WRITERS && k % B_OPS == B_OPS - 1)
            lat_add(&r->l, now - w->sent_us[k]);
    }
    if (end > *seen)
        *seen = (uint32_t)(end < w->clock ? end : w->clock);
}

static int run_b(const load_native *nat)
{
    double secs = g_cfg->seconds > 0 ? g_cfg->seconds : 10;
    int n = B_WRITERS + B_READERS, rc = 0;
    td_cli_server s;
    yrun r;
    if (g_cfg->baseline) {
        printf("B (native baseline)\n");
        rc |= nat->run_b();
    }
    printf("B throughput, y-websocket: 1 doc, %d writers (updates of %d chars, <= %d not yet at "
           "reader 0), %d readers, %.0f s\n", B_WRITERS, B_OPS, B_WINDOW, B_READERS, secs);
    if (start_server(&s, 0) < 0)
        return -1;
    td_cli_ctx *ctx = td_cli_ctx_new(NULL);
    if (!ctx || yrun_new(&r, n, n, b_range) < 0) {
        td_cli_ctx_free(ctx);
        stop_server(&s);
        return -1;
    }
    for (int i = 0; i < n && rc >= 0; i++)
        if (yc_connect(&r, ctx, i, s.port, "throughput") < 0)
            rc = -1;
    span all = {&r, 0, n};
    if (rc < 0 || !td_cli_wait(ctx, span_synced, &all, 30000)) {
        fprintf(stderr, "B: clients not ready\n");
        rc = -1;
        goto done;
    }
    uint64_t t0 = td_cli_now_us(), end = t0 + (uint64_t)(secs * 1e6);
    double cpu0 = td_cli_proc_cpu_s(s.pid), self0 = self_cpu_s();
    uint64_t sent = 0;
    while (td_cli_now_us() < end) {
        for (int w = 0; w < B_WRITERS; w++) {
            yc *c = &r.c[w];
            while ((c->clock - r.c[B_WRITERS].seen[w]) / B_OPS < B_WINDOW) {
                if (yc_type(c, "0123456789", B_OPS, td_cli_now_us()) < 0)
                    break;
                sent++;
            }
        }
        td_cli_service(ctx, 1);
    }
    double elapsed = (double)(td_cli_now_us() - t0) / 1e6;
    uint64_t minc = UINT64_MAX, maxc = 0;
    for (int i = B_WRITERS; i < n; i++) {
        uint64_t got = 0;
        for (int w = 0; w < B_WRITERS; w++)
            got += r.c[i].seen[w];
        minc = got < minc ? got : minc;
        maxc = got > maxc ? got : maxc;
    }
    printf("  writers sent %llu updates (%.0f chars/s); each reader got %llu..%llu chars: "
           "%.0f..%.0f chars/s delivered to every reader (%.0f/s in total)\n",
           (unsigned long long)sent, sent * B_OPS / elapsed, (unsigned long long)minc,
           (unsigned long long)maxc, minc / elapsed, maxc / elapsed,
           (double)minc * B_READERS / elapsed);
    pct p = lat_pct(&r.l);
    pct_print("update-to-reader latency", &r.l, p);
    server_figures(&s, cpu0, self0, elapsed);
    if (g_cfg->baseline && nat->fig->b_ops_s > 0)
        printf("  => y-websocket %.0f chars/s to every reader vs native %.0f ops/s (%.2fx)\n",
               minc / elapsed, nat->fig->b_ops_s, ratio(minc / elapsed, nat->fig->b_ops_s));
    if (minc == 0 || r.bad || r.denied)
        rc = -1;
done:
    td_cli_ctx_free(ctx);
    yrun_free(&r);
    stop_server(&s);
    return rc;
}

/* ---- C: idle connections ---------------------------------------------------------------- */

static void no_range(yc *me, uint64_t client, uint64_t clock, uint64_t len, uint64_t now)
{
    (void)me, (void)client, (void)clock, (void)len, (void)now;
}

static int run_c(const load_native *nat)
{
    int n = g_cfg->conns, rc = 0, up = 0;
    td_cli_server s;
    yrun r;
    if (g_cfg->baseline) {
        printf("C (native baseline)\n");
        rc |= nat->run_c(n, 0);
    }
    printf("C idle, y-websocket: %d connections over 100 docs, each with an awareness state\n",
           n);
    if (start_server(&s, 1) < 0)
        return -1;
    td_cli_ctx_opts co = {0};
    co.max_fds = n + 1000;
    co.rx_buffer = 4096;
    td_cli_ctx *ctx = td_cli_ctx_new(&co);
    /* per = n: one seen[] slot is all an idle client needs, rooms come from
     * the name below */
    if (!ctx || yrun_new(&r, n, 1, no_range) < 0) {
        td_cli_ctx_free(ctx);
        stop_server(&s);
        return -1;
    }
    long rss0 = td_cli_proc_rss_kb(s.pid);
    double cpu0 = td_cli_proc_cpu_s(s.pid), self0 = self_cpu_s();
    uint64_t t0 = td_cli_now_us();
    for (int i = 0; i < n; i += 250) {
        int m = i + 250 <= n ? 250 : n - i;
        for (int k = i; k < i + m; k++) {
            char room[32];
            snprintf(room, sizeof room, "idle-%d", k % 100);
            if (yc_connect(&r, ctx, k, s.port, room) < 0) {
                rc = -1;
                break;
            }
        }
        span sp = {&r, i, i + m};
        if (rc < 0 || !td_cli_wait(ctx, span_synced, &sp, 30000)) {
            fprintf(stderr, "C: connections %d..%d not ready\n", i, i + m);
            why_not_ready(&r, i, i + m);
            rc = -1;
            break;
        }
        up += m;
    }
    /* let the awareness broadcasts settle, as tandem_load.c does */
    td_cli_wait(ctx, NULL, NULL, 2000);
    long rss1 = td_cli_proc_rss_kb(s.pid);
    double elapsed = (double)(td_cli_now_us() - t0) / 1e6;
    double per = up ? (double)(rss1 - rss0) / up : 0.0;
    printf("  %d connections up (%d closed since); server RSS %ld KiB before, %ld KiB after: "
           "%.2f KiB per connection\n", up, count_closed(&r), rss0, rss1, per);
    server_figures(&s, cpu0, self0, elapsed);
    if (g_cfg->baseline && nat->fig->c_kib > 0)
        printf("  => y-websocket %.2f KiB vs native %.2f KiB per idle connection (%.2fx)  "
               "[bar: <= 8 KiB]\n", per, nat->fig->c_kib, ratio(per, nat->fig->c_kib));
    else
        printf("  => y-websocket %.2f KiB per idle connection  [bar: <= 8 KiB]\n", per);
    if (r.bad || r.denied)
        rc = -1;
    td_cli_ctx_free(ctx);
    yrun_free(&r);
    stop_server(&s);
    return rc;
}

/* ---- D: reconnect ----------------------------------------------------------------------- */

/* The peer (index 1) records how far it has the writer's (index 0) clocks. */
static void d_range(yc *me, uint64_t client, uint64_t clock, uint64_t len, uint64_t now)
{
    (void)now;
    if (me->idx == 1 && client == me->run->base && clock <= me->seen[0] &&
        clock + len > me->seen[0])
        me->seen[0] = (uint32_t)(clock + len);
}

static int d_have(void *p)
{
    yrun *r = p;
    return r->c[1].seen[0] >= 1000;
}

static int is_closed(void *p)
{
    return td_cli_conn_state((td_cli_conn *)p) == TD_CLI_CLOSED;
}

/* The writer's socket reopened: hello, then the offline edits. */
typedef struct d_resend {
    yrun *r;
    const wb *msgs; /* the queued messages */
    size_t n;
    int sent, failed;
} d_resend;

static int d_open_then_send(void *p)
{
    d_resend *d = p;
    yc *a = &d->r->c[0];
    if (d->sent)
        return 1;
    if (td_cli_conn_state(a->conn) == TD_CLI_CLOSED && !a->hello) {
        d->failed = 1;
        return 1;
    }
    if (td_cli_conn_state(a->conn) != TD_CLI_OPEN)
        return 0;
    if (yc_hello(a) < 0)
        d->failed = 1;
    for (size_t i = 0; i < d->n && !d->failed; i++)
        if (yc_send(a, &d->msgs[i]) < 0)
            d->failed = 1;
    d->sent = 1;
    return 1;
}

/* one_update: the 1,000 characters go as one step 2 of one item (what a
 * provider sends after the server's step 1); else as 1,000 one-character
 * update messages queued while offline. */
static int d_once(td_cli_server *s, int one_update, lat *l)
{
    yrun r;
    int rc = 0;
    char room[48];
    wb *msgs = NULL;
    size_t nmsgs = one_update ? 1 : 1000;
    td_cli_ctx *ctx = td_cli_ctx_new(NULL);
    if (!ctx || yrun_new(&r, 2, 2, d_range) < 0) {
        td_cli_ctx_free(ctx);
        return -1;
    }
    snprintf(room, sizeof room, "reconnect-%llu", (unsigned long long)(rnd() % 1000000));
    for (int i = 0; i < 2 && rc == 0; i++)
        rc = yc_connect(&r, ctx, i, s->port, room);
    span all = {&r, 0, 2};
    if (rc < 0 || !td_cli_wait(ctx, span_synced, &all, 10000)) {
        rc = -1;
        goto done;
    }
    yc *a = &r.c[0];
    td_cli_close(a->conn);
    td_cli_wait(ctx, is_closed, a->conn, 5000);
    msgs = calloc(nmsgs, sizeof *msgs);
    if (!msgs) {
        rc = -1;
        goto done;
    }
    if (one_update) {
        char text[1000];
        wb u = {0};
        for (int i = 0; i < 1000; i++)
            text[i] = (char)('a' + i % 26);
        y_insert_update(&u, a->client, 0, text, 1000);
        y_sync_msg(&msgs[0], Y_STEP2, &u);
        free(u.p);
    } else {
        for (uint32_t i = 0; i < 1000; i++) {
            char ch = (char)('a' + i % 26);
            wb u = {0};
            y_insert_update(&u, a->client, i, &ch, 1);
            y_sync_msg(&msgs[i], Y_UPDATE, &u);
            free(u.p);
        }
    }
    a->hello = 0;
    a->synced = 0;
    d_resend ds = {&r, msgs, nmsgs, 0, 0};
    uint64_t t0 = td_cli_now_us();
    if (td_cli_reconnect(a->conn) < 0 || !td_cli_wait(ctx, d_open_then_send, &ds, 10000) ||
        ds.failed) {
        rc = -1;
        goto done;
    }
    int ok = td_cli_wait(ctx, d_have, &r, 30000);
    lat_add(l, td_cli_now_us() - t0);
    if (!ok || r.bad || r.denied)
        rc = -1;
done:
    for (size_t i = 0; msgs && i < nmsgs; i++)
        free(msgs[i].p);
    free(msgs);
    td_cli_ctx_free(ctx);
    yrun_free(&r);
    return rc;
}

static int run_d(const load_native *nat)
{
    int reps = g_cfg->seconds > 0 && g_cfg->seconds < 5 ? 3 : 10, rc = 0;
    td_cli_server s;
    lat many = {0}, one = {0};
    if (g_cfg->baseline) {
        printf("D (native baseline)\n");
        rc |= nat->run_d();
    }
    printf("D reconnect, y-websocket: 1,000 one-character updates offline, then reconnect; "
           "time until an online peer has all (%d runs each)\n", reps);
    if (start_server(&s, 0) < 0)
        return -1;
    double cpu0 = td_cli_proc_cpu_s(s.pid), self0 = self_cpu_s();
    uint64_t t0 = td_cli_now_us();
    for (int i = 0; i < reps; i++) {
        rc |= d_once(&s, 0, &many);
        rc |= d_once(&s, 1, &one);
    }
    pct pm = lat_pct(&many), po = lat_pct(&one);
    pct_print("1,000 update messages", &many, pm);
    pct_print("1 step 2 of 1,000 chars", &one, po);
    server_figures(&s, cpu0, self0, (double)(td_cli_now_us() - t0) / 1e6);
    if (g_cfg->baseline && nat->fig->d_many_p50_ms > 0)
        printf("  => median y-websocket %.3f ms vs native %.3f ms (%.2fx) one op at a time; "
               "%.3f vs %.3f ms (%.2fx) in one\n", pm.p50, nat->fig->d_many_p50_ms,
               ratio(pm.p50, nat->fig->d_many_p50_ms), po.p50, nat->fig->d_one_p50_ms,
               ratio(po.p50, nat->fig->d_one_p50_ms));
    lat_free(&many);
    lat_free(&one);
    stop_server(&s);
    return rc;
}

/* ---- entry ---------------------------------------------------------------------------------- */

int load_yjs_main(const load_cfg *cfg, const load_native *native)
{
    const char *only = cfg->only;
    int rc = 0;
    g_cfg = cfg;
    if (!only || *only == 'A')
        rc |= run_a(native);
    if (!only || *only == 'S')
        rc |= run_sweep(native);
    if (!only || *only == 'B')
        rc |= run_b(native);
    if (!only || *only == 'C')
        rc |= run_c(native);
    if (!only || *only == 'D')
        rc |= run_d(native);
    return rc ? -1 : 0;
}
