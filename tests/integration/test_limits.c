/*
 * test_limits.c -- issue 10, item 7 ("memory exhaustion without a token")
 * and the framing half of item 10: no client without a token can hold the
 * server's memory, its file descriptors or its CPU, and a normal client is
 * served throughout.
 *
 * Each attack is a set of raw TCP connections that speak just enough
 * WebSocket (RFC 6455: the upgrade, masked client frames with a zero key),
 * so that a frame can be left unfinished or a PING left unanswered:
 *
 *   1. 80 connections that never send HELLO end with 1008 within
 *      --hello-timeout (2 s here) plus the one-second sweep and slack;
 *   2. 80 more send a stream of junk before any HELLO and never read the
 *      ERRORs: the queue of each is capped at --preauth-bytes (64 KiB);
 *   3. 40 start an 8 MiB message before HELLO: closed with 1009 once past
 *      64 KiB, nothing buffered;
 *   4. 40 authenticated ones leave an 8 MiB message unfinished: closed with
 *      1008 after --frame-timeout (3 s here), their buffers freed;
 *   5. an empty non-final frame before HELLO (once a UBSan abort);
 *   6. the caps: --max-conns 6 --max-conns-per-ip 4 answer the upgrade with
 *      503 and Retry-After (per address: 127.0.0.2 still gets in);
 *   7. ping/pong: a client that stops reading is closed by --ping-interval
 *      1 s + --ping-timeout 1 s, and its presence peer sees the LEAVE;
 *   8. the fd limit: a server under `ulimit -n 256` with 400 connections
 *      pending uses next to no CPU (it used to spin at 100%) and serves
 *      again once they go.
 *
 * Memory bounds (server VmRSS after setup + this): attacks 1-3 together
 * 32 MiB (64 MiB under ASan); after attack 4's timeout, 48 MiB (96 MiB).
 * Under sanitizers attack 4 uses 10 connections instead of 40.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "it_util.h"

/* ---- a raw WebSocket client ------------------------------------------------------- */

/* Connects from `src` (NULL: any) and sends the upgrade; returns the socket
 * and the HTTP status, with the response head in head (NUL-terminated). */
static int raw_upgrade(int port, const char *src, int *status, char *head, size_t head_len)
{
    struct sockaddr_in sa = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    if (src) {
        struct sockaddr_in from = {0};
        from.sin_family = AF_INET;
        CHECK(inet_pton(AF_INET, src, &from.sin_addr) == 1);
        CHECK(bind(fd, (struct sockaddr *)&from, sizeof from) == 0);
    }
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_MSG(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect: %s", strerror(errno));
    static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n\r\n";
    CHECK(write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1));
    size_t n = 0;
    head[0] = 0;
    /* byte by byte up to the blank line: whatever follows stays unread */
    while (n + 1 < head_len && !strstr(head, "\r\n\r\n")) {
        struct pollfd p = {fd, POLLIN, 0};
        CHECK_MSG(poll(&p, 1, 10000) == 1, "no answer to the upgrade");
        ssize_t r = read(fd, head + n, 1);
        CHECK_MSG(r == 1, "upgrade: connection closed after %zu bytes", n);
        head[++n] = 0;
    }
    *status = atoi(head + 9); /* "HTTP/1.x NNN" */
    return fd;
}

static int raw_open(int port, const char *src)
{
    char head[1024];
    int status;
    int fd = raw_upgrade(port, src, &status, head, sizeof head);
    CHECK_MSG(status == 101, "upgrade answered: %s", head);
    return fd;
}

/* A masked client frame header (zero mask key) for `len` payload bytes. */
static size_t frame_head(uint8_t *h, int fin, int opcode, uint64_t len)
{
    size_t n = 2;
    h[0] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        h[1] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        n = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    memset(h + n, 0, 4);
    return n + 4;
}

static void write_all(int fd, const void *p, size_t len)
{
    const uint8_t *b = p;
    while (len) {
        ssize_t w = write(fd, b, len);
        CHECK_MSG(w > 0, "write: %s", strerror(errno));
        b += w;
        len -= (size_t)w;
    }
}

static void raw_send(int fd, int fin, int opcode, const void *p, size_t len)
{
    uint8_t h[14];
    write_all(fd, h, frame_head(h, fin, opcode, len));
    if (len)
        write_all(fd, p, len);
}

static void raw_hello(int fd)
{
    static const uint8_t hello[] = {0x01, 0x01, 0x00, 0x07}; /* v1, no token, agent 7 */
    raw_send(fd, 1, 2, hello, sizeof hello);
}

/* Reads server frames until a close frame (its code returned), EOF or a
 * reset (0), or the deadline (-1). */
static int raw_close_code(int fd, int timeout_ms)
{
    uint8_t buf[65536];
    size_t have = 0;
    uint64_t deadline = td_cli_now_us() + (uint64_t)timeout_ms * 1000;
    for (;;) {
        /* whole frames first */
        while (have >= 2) {
            size_t hl = 2;
            uint64_t len = buf[1] & 0x7f;
            if (len == 126) {
                if (have < 4)
                    break;
                len = (uint64_t)buf[2] << 8 | buf[3];
                hl = 4;
            } else if (len == 127) {
                if (have < 10)
                    break;
                len = 0;
                for (int i = 0; i < 8; i++)
                    len = len << 8 | buf[2 + i];
                hl = 10;
            }
            if ((buf[0] & 0x0f) == 8)
                return len >= 2 && have >= hl + 2 ? buf[hl] << 8 | buf[hl + 1] : 0;
            if (hl + len > have) {
                if (hl + len > sizeof buf) /* a big frame: skip what we have */
                    have = 0;
                break;
            }
            memmove(buf, buf + hl + len, have - hl - len);
            have -= hl + len;
        }
        int64_t left = (int64_t)(deadline - td_cli_now_us());
        if (left <= 0)
            return -1;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)(left / 1000) + 1) <= 0)
            continue;
        ssize_t r = read(fd, buf + have, sizeof buf - have);
        if (r <= 0)
            return 0;
        have += (size_t)r;
    }
}

typedef struct closes {
    int n, by_code[2]; /* [0]: the expected code; [1]: a dropped connection */
    int other;
} closes;

/* Waits for every fd to close; tallies codes. Returns the seconds the last
 * one took from t0. */
static double await_closes(const int *fds, int n, int want, uint64_t t0, int timeout_ms,
                           closes *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < n; i++) {
        uint64_t now = td_cli_now_us();
        int left = timeout_ms - (int)((now - t0) / 1000);
        int code = raw_close_code(fds[i], left > 0 ? left : 1);
        CHECK_MSG(code >= 0, "connection %d of %d still open after %d ms", i, n, timeout_ms);
        out->n++;
        if (code == want)
            out->by_code[0]++;
        else if (code == 0)
            out->by_code[1]++;
        else
            out->other++;
    }
    return (double)(td_cli_now_us() - t0) / 1e6;
}

static void close_all(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* ---- the normal client ----------------------------------------------------------- */

typedef struct normal {
    td_cli_conn *c;
    td_cli_doc *d;
    int edits;
} normal;

static int acked(void *p)
{
    return td_cli_unacked(((normal *)p)->d) == 0;
}

/* The normal client is still connected and gets an edit acknowledged. */
static void normal_edit(normal *nc, const char *when)
{
    td_crdt_obj t;
    CHECK_MSG(td_cli_conn_state(nc->c) == TD_CLI_READY, "the normal client was disconnected %s (%d)",
              when, td_cli_close_code(nc->c));
    CHECK(td_crdt_root(td_cli_doc_crdt(nc->d), TD_CRDT_TEXT, "t", 1, &t) == TD_CRDT_OK);
    CHECK(td_crdt_text_insert(td_cli_doc_crdt(nc->d), t, 0, "x", 1) == TD_CRDT_OK);
    CHECK(td_cli_commit(nc->d, NULL) == 0);
    CHECK_MSG(td_cli_wait(it_ctx(), acked, nc, 10000), "no ACK for the normal client %s", when);
    nc->edits++;
}

static long rss_kb(td_cli_server *s)
{
    long v = td_cli_proc_rss_kb(s->pid);
    CHECK(v > 0);
    return v;
}

/* Keeps the normal client's connection serviced while time passes. */
static void pass_ms(int ms)
{
    td_cli_wait(it_ctx(), NULL, NULL, ms);
}

/* ---- the attacks --------------------------------------------------------------------- */

#define N_SILENT 80
#define N_JUNK 80
#define N_BIG 40
#define EIGHT_MIB (8u << 20)

static void memory_attacks(void)
{
    const char *extra[] = {"--hello-timeout", "2s", "--frame-timeout", "3s",
                           "--ping-interval", "30s", NULL};
    td_cli_server *s = it_server(extra);
    normal nc = {0};
    nc.c = td_cli_connect(it_ctx(), s->url, NULL);
    nc.d = td_cli_subscribe(nc.c, "live", NULL);
    CHECK(it_wait_ready(nc.c, 10000) && it_wait_docs_synced(&nc.d, 1, 10000));
    normal_edit(&nc, "at the start");
    long rss0 = rss_kb(s), bound = rss0 + (it_sanitized() ? 64 : 32) * 1024, peak = rss0;
    printf("server RSS after setup: %ld KiB; bound for attacks 1-3: %ld KiB\n", rss0, bound);

    /* 1: silent */
    int silent[N_SILENT];
    uint64_t t0 = td_cli_now_us();
    for (int i = 0; i < N_SILENT; i++)
        silent[i] = raw_open(s->port, NULL);
    /* 2: junk before HELLO, never reading; small receive buffers so that
     * the server's answers pile up on its side, not in the kernel */
    int junk[N_JUNK];
    /* 7-byte frames, each a truncated SUBSCRIBE (0x02) that earns an ERROR */
    static uint8_t stream[(64 << 10) / 7 * 7];
    for (size_t off = 0; off < sizeof stream; off += 7) {
        size_t hl = frame_head(stream + off, 1, 2, 1);
        stream[off + hl] = 0x02;
    }
    for (int i = 0; i < N_JUNK; i++) {
        junk[i] = raw_open(s->port, NULL);
        int small = 4096;
        CHECK(setsockopt(junk[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
        CHECK(fcntl(junk[i], F_SETFL, O_NONBLOCK) == 0);
    }
    for (int round = 0; round < 4; round++)
        for (int i = 0; i < N_JUNK; i++) {
            ssize_t w = write(junk[i], stream, sizeof stream);
            (void)w; /* a full socket buffer (or a closed one) is the point */
        }
    /* 3: an 8 MiB message begun before HELLO */
    int big[N_BIG];
    static uint8_t mib[1 << 20];
    for (int i = 0; i < N_BIG; i++) {
        uint8_t h[14];
        big[i] = raw_open(s->port, NULL);
        CHECK(fcntl(big[i], F_SETFL, O_NONBLOCK) == 0);
        write_all(big[i], h, frame_head(h, 1, 2, EIGHT_MIB - 64));
        ssize_t w = write(big[i], mib, sizeof mib);
        (void)w; /* as much as the kernel takes */
    }
    pass_ms(500);
    long r = rss_kb(s);
    peak = r > peak ? r : peak;
    printf("with %d silent, %d junk and %d big-message connections open: RSS %ld KiB\n",
           N_SILENT, N_JUNK, N_BIG, r);
    normal_edit(&nc, "during attacks 1-3");

    closes cs;
    double took = await_closes(big, N_BIG, 1009, t0, 10000, &cs);
    printf("3: %d big-message connections closed (%d with 1009, %d dropped) in %.1f s\n", cs.n,
           cs.by_code[0], cs.by_code[1], took);
    CHECK_MSG(cs.by_code[0] + cs.by_code[1] == N_BIG && cs.by_code[0] > 0,
              "big messages before HELLO: expected 1009 (%d other codes)", cs.other);
    took = await_closes(silent, N_SILENT, 1008, t0, 2000 + 1000 + 2500, &cs);
    printf("1: %d silent connections closed (%d with 1008) %.1f s after opening\n", cs.n,
           cs.by_code[0], took);
    CHECK_MSG(cs.by_code[0] == N_SILENT, "silent connections: expected 1008 from each");
    took = await_closes(junk, N_JUNK, 1008, t0, 2000 + 1000 + 2500, &cs);
    printf("2: %d junk connections closed (%d with 1008, %d dropped) %.1f s after opening\n", cs.n,
           cs.by_code[0], cs.by_code[1], took);
    CHECK(cs.other == 0);
    r = rss_kb(s);
    peak = r > peak ? r : peak;
    double hello_to = it_metric(s, "tandem_hello_timeouts_total");
    double preauth = it_metric(s, "tandem_preauth_limit_closes_total");
    printf("RSS peak seen %ld KiB (bound %ld), now %ld KiB; hello timeouts %.0f, pre-HELLO "
           "limit closes %.0f\n",
           peak, bound, r, hello_to, preauth);
    CHECK_MSG(peak <= bound, "server RSS %ld KiB above the bound %ld KiB", peak, bound);
    CHECK(hello_to >= N_SILENT);
    CHECK_MSG(preauth >= N_BIG, "every big message before HELLO counts as a pre-HELLO close");
    close_all(silent, N_SILENT);
    close_all(junk, N_JUNK);
    close_all(big, N_BIG);
    normal_edit(&nc, "after attacks 1-3");

    /* 4: authenticated, an unfinished 8 MiB message each */
    int nbig = it_n(N_BIG, 10);
    long rss1 = rss_kb(s), bound4 = rss1 + (it_sanitized() ? 96 : 48) * 1024;
    t0 = td_cli_now_us();
    for (int i = 0; i < nbig; i++) {
        uint8_t h[14];
        big[i] = raw_open(s->port, NULL);
        raw_hello(big[i]);
        write_all(big[i], h, frame_head(h, 1, 2, EIGHT_MIB - 64));
        for (int k = 0; k < 7; k++)
            write_all(big[i], mib, sizeof mib);
    }
    uint64_t t_sent = td_cli_now_us();
    long held = rss_kb(s);
    printf("4: %d authenticated connections holding 7 of 8 MiB each: RSS %ld KiB (+%ld) after "
           "%.1f s\n",
           nbig, held, held - rss1, (double)(t_sent - t0) / 1e6);
    normal_edit(&nc, "during attack 4");
    took = await_closes(big, nbig, 1008, t0, 3000 + 1000 + (int)((t_sent - t0) / 1000) + 3000,
                        &cs);
    printf("4: closed (%d with 1008) %.1f s after the first began\n", cs.by_code[0], took);
    CHECK_MSG(cs.by_code[0] == nbig, "unfinished messages: expected 1008 from each");
    close_all(big, nbig);
    pass_ms(500);
    r = rss_kb(s);
    printf("4: RSS after the frame timeout %ld KiB (bound %ld); frame timeouts %.0f\n", r, bound4,
           it_metric(s, "tandem_frame_timeouts_total"));
    CHECK_MSG(r <= bound4, "the unfinished messages' memory was not returned");
    CHECK(it_metric(s, "tandem_frame_timeouts_total") >= nbig);

    /* 5: an empty non-final frame before HELLO, then its empty end */
    int e = raw_open(s->port, NULL);
    raw_send(e, 0, 2, NULL, 0);
    raw_send(e, 1, 0, NULL, 0);
    raw_hello(e);
    pass_ms(300);
    CHECK_MSG(td_cli_http_get("127.0.0.1", s->port, "/healthz", NULL, NULL, NULL) == 200,
              "the server did not survive an empty non-final frame");
    close(e);
    normal_edit(&nc, "at the end");
    td_cli_conn_free(nc.c);
}

static void caps(void)
{
    const char *extra[] = {"--max-conns", "6", "--max-conns-per-ip", "4", NULL};
    td_cli_server *s = it_server(extra);
    int fds[6];
    char head[1024];
    int status;
    for (int i = 0; i < 4; i++) {
        fds[i] = raw_open(s->port, "127.0.0.1");
        raw_hello(fds[i]);
    }
    int x = raw_upgrade(s->port, "127.0.0.1", &status, head, sizeof head);
    printf("6: a 5th connection from 127.0.0.1: %.*s\n", (int)strcspn(head, "\r"), head);
    CHECK_MSG(status == 503 && strcasestr(head, "\r\nretry-after: "), "expected 503 with Retry-After: %s",
              head);
    close(x);
    for (int i = 4; i < 6; i++)
        fds[i] = raw_open(s->port, "127.0.0.2");
    x = raw_upgrade(s->port, "127.0.0.3", &status, head, sizeof head);
    printf("6: a 7th connection (127.0.0.3): %.*s\n", (int)strcspn(head, "\r"), head);
    CHECK(status == 503 && strcasestr(head, "\r\nretry-after: "));
    close(x);
    CHECK(it_metric(s, "tandem_refused_per_ip_total") == 1);
    CHECK(it_metric(s, "tandem_refused_max_conns_total") == 1);
    /* a client of the library sees a failed connection, and gets in once
     * there is room */
    td_cli_conn *c = td_cli_connect(it_ctx(), s->url, NULL);
    td_cli_wait_closed(c, 5000);
    CHECK(td_cli_conn_state(c) == TD_CLI_CLOSED);
    close(fds[0]);
    pass_ms(300);
    CHECK(td_cli_reconnect(c) == 0);
    CHECK_MSG(it_wait_ready(c, 5000), "no room after a connection closed");
    td_cli_conn_free(c);
    close_all(fds + 1, 5);
}

typedef struct leave_seen {
    td_cli_doc *d;
    uint64_t session;
    int seen;
} leave_seen;

static leave_seen g_leave;

static void on_leave(td_cli_doc *d, uint64_t session, void *ud)
{
    (void)ud;
    if (d == g_leave.d && session == g_leave.session)
        g_leave.seen = 1;
}

static int left(void *p)
{
    return ((leave_seen *)p)->seen;
}

static int has_peer(void *p)
{
    return td_cli_peer_count(((leave_seen *)p)->d) > 0;
}

static void half_open(void)
{
    const char *extra[] = {"--ping-interval", "1s", "--ping-timeout", "1s", NULL};
    td_cli_server *s = it_server(extra);
    td_cli_conn_opts o = {0};
    o.cb.on_leave = on_leave;
    td_cli_conn *a = td_cli_connect(it_ctx(), s->url, NULL);
    td_cli_conn *b = td_cli_connect(it_ctx(), s->url, &o);
    td_cli_doc *da = td_cli_subscribe(a, "room", NULL);
    td_cli_doc *db = td_cli_subscribe(b, "room", NULL);
    CHECK(it_wait_ready(a, 10000) && it_wait_ready(b, 10000));
    CHECK(it_wait_docs_synced(&da, 1, 10000) && it_wait_docs_synced(&db, 1, 10000));
    CHECK(td_cli_presence(da, "here", 4) == 0);
    g_leave = (leave_seen){db, td_cli_session(a), 0};
    CHECK(td_cli_wait(it_ctx(), has_peer, &g_leave, 5000));
    /* a stops reading: its kernel still ACKs, but no PONG comes back */
    td_cli_set_reading(a, 0);
    uint64_t t0 = td_cli_now_us();
    CHECK_MSG(td_cli_wait(it_ctx(), left, &g_leave, 1000 + 1000 + 1000 + 3000),
              "no LEAVE for the half-open peer");
    printf("7: the half-open peer's LEAVE after %.1f s (ping 1 s + timeout 1 s)\n",
           (double)(td_cli_now_us() - t0) / 1e6);
    CHECK(td_cli_conn_state(b) == TD_CLI_READY); /* b answers PINGs */
    td_cli_conn_free(a);
    td_cli_conn_free(b);
}

/* 8: the server under `ulimit -n 256`, through a shell that execs it. */
static void fd_limit(void)
{
    char dir[] = "/tmp/tandem-fdlim-XXXXXX", script[600];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(script, sizeof script, "%s/serve", dir);
    FILE *f = fopen(script, "w");
    CHECK(f != NULL);
    fprintf(f, "#!/bin/sh\nulimit -n 256 || exit 126\nexec '%s' \"$@\"\n", it_bin());
    CHECK(fclose(f) == 0 && chmod(script, 0755) == 0);
    td_cli_server srv;
    int rc = td_cli_server_start(&srv, script, NULL, NULL, 30000);
    CHECK_MSG(rc == 0, "the server did not start under ulimit -n 256 (log %s)", srv.log_path);

    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_cur < 1024 && rl.rlim_max >= 1024) {
        rl.rlim_cur = 1024;
        CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    }
    enum { N = 400 };
    int fds[N];
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)srv.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int n = 0;
    for (; n < N; n++) {
        fds[n] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fds[n] < 0)
            break;
        int cr = connect(fds[n], (struct sockaddr *)&sa, sizeof sa);
        CHECK(cr == 0 || errno == EINPROGRESS);
    }
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
    double cpu0 = td_cli_proc_cpu_s(srv.pid);
    ts.tv_sec = 3;
    nanosleep(&ts, NULL);
    double cpu = td_cli_proc_cpu_s(srv.pid) - cpu0;
    char *body = NULL;
    int mrc = td_cli_http_get("127.0.0.1", srv.port, "/metrics", NULL, &body, NULL);
    printf("8: %d connections against a 256-fd server: %.2f s of CPU in 3 s%s\n", n, cpu,
           mrc == 200 ? "" : " (metrics not reachable meanwhile: expected)");
    free(body);
    close_all(fds, n);
    int ok = cpu < 0.5;
    /* once they are gone it serves again */
    uint64_t t0 = td_cli_now_us();
    int code = 0;
    while (td_cli_now_us() - t0 < 20000000 &&
           (code = td_cli_http_get("127.0.0.1", srv.port, "/healthz", NULL, NULL, NULL)) != 200)
        pass_ms(100);
    td_cli_conn *c = td_cli_connect(it_ctx(), srv.url, NULL);
    int ready = it_wait_ready(c, 10000);
    td_cli_conn_free(c);
    double refused = it_metric(&srv, "tandem_refused_fd_limit_total");
    int st = td_cli_server_stop(&srv, SIGTERM, 10000);
    td_cli_server_cleanup(&srv);
    unlink(script);
    rmdir(dir);
    printf("8: serving again: healthz %d, client %s; refused at accept %.0f; exit status %d\n",
           code, ready ? "ready" : "NOT ready", refused, st);
    CHECK_MSG(ok, "the server spun at the fd limit (%.2f s of CPU in 3 s)", cpu);
    CHECK(code == 200 && ready);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(int argc, char **argv)
{
    it_init(argc, argv, "integration_limits");
    struct rlimit rl;
    /* 240 raw sockets at once, and the client context's own */
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_cur < 4096 && rl.rlim_max > rl.rlim_cur) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    }
    memory_attacks();
    caps();
    half_open();
    fd_limit();
    it_pass();
}
