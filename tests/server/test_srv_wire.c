/*
 * test_srv_wire.c -- the server as a raw TCP peer sees it: exact byte
 * sequences and timing that a WebSocket library would hide.
 *
 * A tiny blocking WebSocket client (handshake, masked frames out, frames in
 * with a deadline) drives the real server binary (argv[1]) through:
 *
 *   close  with --public-key, a refused HELLO with SUBSCRIBE and UPDATE
 *          pipelined behind it, and one more UPDATE sent after the server
 *          has answered: the ERROR (6 or 7) and a close frame 1008 must
 *          arrive, and after our close frame the server must end the TCP
 *          connection cleanly (FIN), never with an RST that would make a
 *          client drop the ERROR and the close code (PROTOCOL.md table 6);
 *   types  server-to-client types (81 01 61, 83 01 61, 87 01 61, ...) sent
 *          to the server are ERROR 2 unknown_type, not 1 bad_message;
 *   load   UPDATEs, PRESENCE, UNSUBSCRIBE and a second SUBSCRIBE pipelined
 *          behind the SUBSCRIBE that loads a document wait for the load and
 *          are answered in order (SYNC, ACK, ACK, SYNC, ACK), with no
 *          ERROR 17 (which PROTOCOL.md reserves for reloads).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "srv_test_glue.h"
#include "tandem_crdt.h"


/* ---- a raw WebSocket client --------------------------------------------------- */

typedef struct raw {
    int fd;
    uint8_t in[1 << 16];
    size_t in_len;
    int eof;       /* the server sent FIN */
    int reset;     /* ECONNRESET */
} raw;

typedef struct frame {
    int opcode;
    uint8_t data[1 << 15];
    size_t len;
} frame;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads what is there within ms; sets eof / reset. */
static void raw_fill(raw *r, int ms)
{
    struct pollfd p = {r->fd, POLLIN, 0};
    if (r->eof || poll(&p, 1, ms) <= 0)
        return;
    ssize_t n = recv(r->fd, r->in + r->in_len, sizeof r->in - r->in_len, 0);
    if (n > 0)
        r->in_len += (size_t)n;
    else if (n == 0)
        r->eof = 1;
    else if (errno == ECONNRESET)
        r->reset = r->eof = 1;
    else
        r->eof = 1;
}

static int raw_connect(raw *r, int port)
{
    struct sockaddr_in a;
    char req[512];
    memset(r, 0, sizeof *r);
    r->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (r->fd < 0)
        return -1;
    int one = 1;
    setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(r->fd, (struct sockaddr *)&a, sizeof a) < 0)
        return -1;
    int n = snprintf(req, sizeof req,
                     "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: tandem\r\n\r\n",
                     port);
    if (send(r->fd, req, (size_t)n, 0) != n)
        return -1;
    int64_t end = now_ms() + 3000;
    while (now_ms() < end && !r->eof) {
        raw_fill(r, 100);
        uint8_t *h = memmem(r->in, r->in_len, "\r\n\r\n", 4);
        if (h) {
            if (r->in_len < 12 || memcmp(r->in, "HTTP/1.1 101", 12) != 0)
                return -1;
            size_t used = (size_t)(h + 4 - r->in);
            memmove(r->in, h + 4, r->in_len - used);
            r->in_len -= used;
            return 0;
        }
    }
    return -1;
}

/* Appends one masked client frame (FIN set) to out. */
static size_t put_frame(uint8_t *out, int opcode, const uint8_t *p, size_t len)
{
    static const uint8_t mask[4] = {0x11, 0x22, 0x33, 0x44};
    size_t n = 0;
    out[n++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        out[n++] = (uint8_t)(0x80 | len);
    } else {
        out[n++] = 0x80 | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    }
    memcpy(out + n, mask, 4);
    n += 4;
    for (size_t i = 0; i < len; i++)
        out[n + i] = p[i] ^ mask[i & 3];
    return n + len;
}

/* Appends the encoding of m as one binary frame. */
static size_t put_msg(uint8_t *out, const td_srv_msg *m)
{
    td_srv_wbuf w;
    td_srv_wbuf_init(&w, 0);
    td_srv_msg_encode(m, &w);
    size_t n = put_frame(out, 2, td_srv_wbuf_msg(&w), w.len);
    td_srv_wbuf_free(&w);
    return n;
}

/* A failed send is how an RST usually shows first (and it consumes the
 * socket's pending error, so a later recv would not report it). */
static int send_all(raw *r, const uint8_t *p, size_t len)
{
    ssize_t n = send(r->fd, p, len, MSG_NOSIGNAL);
    if (n == (ssize_t)len)
        return 0;
    if (n < 0 && (errno == ECONNRESET || errno == EPIPE))
        r->reset = 1;
    return -1;
}

/* Next server frame within ms: 1, or 0 (timeout, EOF or reset). */
static int raw_frame(raw *r, frame *f, int ms)
{
    int64_t end = now_ms() + ms;
    for (;;) {
        if (r->in_len >= 2) {
            size_t len = r->in[1] & 0x7f, hdr = 2;
            if (len == 126 && r->in_len >= 4) {
                len = (size_t)r->in[2] << 8 | r->in[3];
                hdr = 4;
            }
            if (len != 126 && len < sizeof f->data && r->in_len >= hdr + len) {
                f->opcode = r->in[0] & 0x0f;
                memcpy(f->data, r->in + hdr, len);
                f->len = len;
                memmove(r->in, r->in + hdr + len, r->in_len - hdr - len);
                r->in_len -= hdr + len;
                return 1;
            }
        }
        if (r->eof || now_ms() >= end)
            return 0;
        raw_fill(r, (int)(end - now_ms()));
    }
}

/* Next binary frame decoded as a message; 0 if none. */
static int raw_msg(raw *r, frame *f, td_srv_msg *m, int ms)
{
    while (raw_frame(r, f, ms)) {
        if (f->opcode == 2)
            return td_srv_msg_decode(f->data, f->len, m, NULL) == TD_SRV_E_OK;
        if (f->opcode == 8)
            return 0;
    }
    return 0;
}

/* ---- messages -------------------------------------------------------------------- */

static td_srv_msg hello_msg(const char *tok)
{
    td_srv_msg m;
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_HELLO;
    m.version = 1;
    m.token.ptr = (const uint8_t *)tok;
    m.token.len = tok ? strlen(tok) : 0;
    m.agent = 99;
    return m;
}

static td_srv_msg doc_msg(td_srv_msg_type t, const char *doc)
{
    td_srv_msg m;
    memset(&m, 0, sizeof m);
    m.type = t;
    m.doc.ptr = (const uint8_t *)doc;
    m.doc.len = strlen(doc);
    return m;
}

static td_srv_msg update_msg(const char *doc, uint64_t id, const uint8_t *b, size_t n)
{
    td_srv_msg m = doc_msg(TD_SRV_MSG_UPDATE, doc);
    m.batch_id = id;
    m.batch.ptr = b;
    m.batch.len = n;
    return m;
}

/* A batch inserting `text` (made by a fresh replica with agent `agent`). */
static uint8_t *make_batch(uint64_t agent, const char *text, size_t *len)
{
    td_crdt_options o;
    td_crdt_doc *d = NULL;
    td_crdt_obj t;
    uint8_t *b = NULL, *copy = NULL;
    memset(&o, 0, sizeof o);
    o.agent = agent;
    if (td_crdt_doc_new(&o, &d) == TD_CRDT_OK &&
        td_crdt_root(d, TD_CRDT_TEXT, "body", 4, &t) == TD_CRDT_OK &&
        td_crdt_text_insert(d, t, 0, text, strlen(text)) == TD_CRDT_OK &&
        td_crdt_commit(d, &b, len) == TD_CRDT_OK && (copy = malloc(*len)))
        memcpy(copy, b, *len);
    if (d) {
        td_crdt_buf_free(d, b);
        td_crdt_doc_free(d);
    }
    return copy;
}

/* ---- cases ---------------------------------------------------------------------------- */

/* A refused HELLO with frames pipelined behind it, and one more frame after
 * the server answered: ERROR `want`, close 1008, then a clean FIN. */
static void case_close(int port, const char *tok, uint64_t want, const uint8_t *batch,
                       size_t blen, int gap_us)
{
    static uint8_t out[1 << 15];
    raw r;
    frame f;
    td_srv_msg m;
    size_t n;
    uint64_t code = 0;
    int close_code = 0;

    if (raw_connect(&r, port) < 0) {
        CHECK(!"connect");
        return;
    }
    /* HELLO, SUBSCRIBE, UPDATE, UPDATE as a client library sends them: one
     * write each, `gap_us` apart (0: all in one write), so that they reach
     * the server before, while and after it answers the HELLO. */
    for (int i = 0; i < 4; i++) {
        m = i == 0 ? hello_msg(tok)
            : i == 1 ? doc_msg(TD_SRV_MSG_SUBSCRIBE, "team/x")
                     : update_msg("team/x", (uint64_t)i, batch, blen);
        n = put_msg(out, &m);
        if (send_all(&r, out, n) < 0)
            break; /* the server reset us already */
        if (gap_us)
            usleep((useconds_t)gap_us);
    }

    while (raw_frame(&r, &f, 3000)) {
        if (f.opcode == 2 && td_srv_msg_decode(f.data, f.len, &m, NULL) == TD_SRV_E_OK &&
            m.type == TD_SRV_MSG_ERROR && !code)
            code = m.code;
        if (f.opcode == 8) {
            close_code = f.len >= 2 ? f.data[0] << 8 | f.data[1] : 1005;
            break;
        }
    }
    if (close_code) {
        uint8_t cl[2] = {(uint8_t)(close_code >> 8), (uint8_t)close_code};
        n = put_frame(out, 8, cl, 2);
        send_all(&r, out, n);
        int64_t end = now_ms() + 5000;
        while (!r.eof && now_ms() < end) {
            r.in_len = 0;
            raw_fill(&r, 200);
        }
    }
    printf("close: token %-6s gap %5d us -> ERROR %llu, close %d, then %s\n",
           tok ? "forged" : "none", gap_us, (unsigned long long)code, close_code,
           r.reset ? "RST" : r.eof ? "FIN" : "nothing");
    CHECK(code == want);
    CHECK(close_code == 1008);
    CHECK(r.eof && !r.reset);
    close(r.fd);
}

static int hello_open(raw *r, int port)
{
    static uint8_t out[1024];
    frame f;
    td_srv_msg m = hello_msg(NULL);
    if (raw_connect(r, port) < 0 || send_all(r, out, put_msg(out, &m)) < 0)
        return -1;
    return raw_msg(r, &f, &m, 3000) && m.type == TD_SRV_MSG_WELCOME ? 0 : -1;
}

static void case_types(int port)
{
    static const uint8_t types[] = {0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x80, 0xff};
    uint8_t out[64];
    raw r;
    frame f;
    td_srv_msg m;
    if (hello_open(&r, port) < 0) {
        CHECK(!"hello");
        return;
    }
    for (size_t i = 0; i < sizeof types; i++) {
        uint8_t msg[3] = {types[i], 0x01, 0x61};
        CHECK(send_all(&r, out, put_frame(out, 2, msg, 3)) == 0);
        int ok = raw_msg(&r, &f, &m, 3000);
        printf("types: %02x 01 61 -> ERROR %llu\n", types[i],
               ok ? (unsigned long long)m.code : 0ull);
        CHECK(ok && m.type == TD_SRV_MSG_ERROR && m.code == TD_SRV_E_UNKNOWN_TYPE);
    }
    /* a well-formed WELCOME sent back is unknown too */
    {
        td_srv_msg w;
        memset(&w, 0, sizeof w);
        w.type = TD_SRV_MSG_WELCOME;
        w.version = 1;
        w.session = 1;
        CHECK(send_all(&r, out, put_msg(out, &w)) == 0);
        CHECK(raw_msg(&r, &f, &m, 3000) && m.type == TD_SRV_MSG_ERROR &&
              m.code == TD_SRV_E_UNKNOWN_TYPE);
    }
    close(r.fd);
}

static void case_load(int port, int round)
{
    static uint8_t out[1 << 15];
    char doc[64];
    raw r;
    frame f;
    td_srv_msg m;
    size_t n = 0, b1, b2, b3;
    uint8_t *x1 = make_batch(1000 + (uint64_t)round * 3, "one", &b1);
    uint8_t *x2 = make_batch(1001 + (uint64_t)round * 3, "two", &b2);
    uint8_t *x3 = make_batch(1002 + (uint64_t)round * 3, "three", &b3);
    /* Answers: 'S' SYNC, 'nA' ACK of batch n. Processing is in order, but an
     * ACK waits for the store and a SYNC does not, so the second SYNC may
     * overtake ACKs 1 and 2: compare SYNCs and ACKs apart. */
    static const char want[] = "1A2A3A";
    int syncs = 0, first_sync = 0, errors = 0;
    char got[64] = "";

    snprintf(doc, sizeof doc, "fresh-%d-%u", round, randombytes_random());
    if (!x1 || !x2 || !x3 || hello_open(&r, port) < 0) {
        CHECK(!"setup");
        goto out;
    }
    /* All in one write: the server reads them in one go, so every message
     * after the first SUBSCRIBE arrives while the document is loading. */
    m = doc_msg(TD_SRV_MSG_SUBSCRIBE, doc);
    n += put_msg(out + n, &m);
    m = update_msg(doc, 1, x1, b1);
    n += put_msg(out + n, &m);
    m = update_msg(doc, 2, x2, b2);
    n += put_msg(out + n, &m);
    m = doc_msg(TD_SRV_MSG_PRESENCE, doc);
    m.state.ptr = (const uint8_t *)"{}";
    m.state.len = 2;
    n += put_msg(out + n, &m);
    m = doc_msg(TD_SRV_MSG_UNSUBSCRIBE, doc);
    n += put_msg(out + n, &m);
    m = doc_msg(TD_SRV_MSG_SUBSCRIBE, doc);
    n += put_msg(out + n, &m);
    m = update_msg(doc, 3, x3, b3);
    n += put_msg(out + n, &m);
    CHECK(send_all(&r, out, n) == 0);
    while ((strlen(got) < sizeof want - 1 || syncs < 2) && raw_msg(&r, &f, &m, 3000)) {
        char one[32] = "";
        if (m.type == TD_SRV_MSG_SYNC) {
            first_sync |= !syncs && !got[0];
            syncs++;
        } else if (m.type == TD_SRV_MSG_ACK) {
            snprintf(one, sizeof one, "%lluA", (unsigned long long)m.batch_id);
        } else if (m.type == TD_SRV_MSG_ERROR) {
            errors++;
            printf("load: round %d: ERROR %llu batch %llu: %.*s\n", round,
                   (unsigned long long)m.code, (unsigned long long)m.batch_id,
                   (int)m.message.len, (const char *)m.message.ptr);
        }
        strncat(got, one, sizeof got - strlen(got) - 1);
    }
    if (round == 0 || strcmp(got, want) != 0 || syncs != 2 || errors)
        printf("load: round %d: %d SYNC (first answer: %s), ACKs %s (want 2 SYNC, %s)\n",
               round, syncs, first_sync ? "SYNC" : "not SYNC", got, want);
    CHECK(strcmp(got, want) == 0);
    CHECK(syncs == 2 && first_sync && errors == 0);
    /* and nothing else (no ERROR) */
    CHECK(!raw_msg(&r, &f, &m, 200));
    {
        /* all three batches went in */
        char path[128], *body = NULL;
        snprintf(path, sizeof path, "/docs/%s", doc);
        int st = srv_http_get(port, path, &body);
        CHECK(st == 200 && body && strstr(body, "one") && strstr(body, "two") &&
              strstr(body, "three"));
        if (round == 0)
            printf("load: GET %s -> %d %s\n", path, st, body ? body : "");
        free(body);
    }
    close(r.fd);
out:
    free(x1);
    free(x2);
    free(x3);
}

int main(int argc, char **argv)
{
    char dir[256], cmd[700], key[300], key2[300], pub[300], data[300], data2[300];
    char *forged = NULL;
    int port = 0, port2 = 0, pid = -1, pid2 = -1;
    uint8_t *batch = NULL;
    size_t blen = 0;
    td_cli_server srv = {0}, srv2 = {0};

    td_check_keep_going = 1;
    if (argc < 2)
        return 2;
    if (sodium_init() < 0 || !srv_ctx(0))
        return 1;
    REQUIRE(srv_scratch_dir(dir, sizeof dir, "wire") == 0);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(data2, sizeof data2, "%s/data2", dir);
    snprintf(key, sizeof key, "%s/key", dir);
    snprintf(key2, sizeof key2, "%s/other", dir);
    snprintf(pub, sizeof pub, "%s/key.pub", dir);
    snprintf(cmd, sizeof cmd, "%s keygen --out %s >/dev/null && %s keygen --out %s >/dev/null",
             argv[1], key, argv[1], key2);
    REQUIRE(system(cmd) == 0);
    {
        /* a token signed by the other key: well-formed, forged */
        char buf[4096];
        snprintf(cmd, sizeof cmd,
                 "%s token --key %s --user m --doc '*' --rights rw --ttl 3600", argv[1], key2);
        FILE *p = popen(cmd, "r");
        REQUIRE(p);
        size_t n = fread(buf, 1, sizeof buf - 1, p);
        pclose(p);
        while (n && (buf[n - 1] == '\n'))
            n--;
        buf[n] = 0;
        REQUIRE(n > 0);
        forged = strdup(buf);
    }
    batch = make_batch(7, "EVIL", &blen);
    REQUIRE(batch);

    const char *extra[] = {"--public-key", pub, NULL};
    pid = srv_start(&srv, argv[1], data, extra, &port);
    REQUIRE(pid > 0);
    {
        static const int gaps[] = {0, 50, 100, 200, 400, 700, 1000, 2000, 5000, 20000};
        for (size_t i = 0; i < sizeof gaps / sizeof gaps[0]; i++)
            for (int k = 0; k < 2; k++) {
                case_close(port, NULL, TD_SRV_E_AUTH_REQUIRED, batch, blen, gaps[i]);
                case_close(port, forged, TD_SRV_E_TOKEN_INVALID, batch, blen, gaps[i]);
            }
    }
    CHECK(srv_stop(&srv) == 0);
    pid = -1;

    pid2 = srv_start(&srv2, argv[1], data2, NULL, &port2);
    REQUIRE(pid2 > 0);
    case_types(port2);
    for (int i = 0; i < 20; i++)
        case_load(port2, i);
    CHECK(srv_stop(&srv2) == 0);
    pid2 = -1;

out:
    if (pid > 0)
        srv_stop(&srv);
    if (pid2 > 0)
        srv_stop(&srv2);
    free(batch);
    free(forged);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    srv_ctx_free();
    return td_check_status("srv_wire");
}
