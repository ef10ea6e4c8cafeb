/*
 * test_srv_deflate.c -- deflated messages of protocol version 2
 * (docs/PROTOCOL.md section 3.9, issue 14).
 *
 * The codec first (td_srv_msg_deflate / td_srv_msg_inflate): round trip,
 * the 1024-byte threshold, only when shorter, and every hostile input
 * refused with the right code. Then the real server (argv[1]) with a
 * version 1 and a version 2 connection on one document: a large REMOTE and
 * SYNC reach the version 2 connection deflated and the version 1 one as
 * before; small ones are never deflated; a deflated UPDATE from the client
 * is accepted; bombs get too_large, corrupt streams bad_message, the flag
 * on a version 1 connection bad_message; the server stays up and its
 * /metrics count what it did.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <zlib.h>

#include "srv_test_glue.h"
#include "tandem_crdt.h"

#define MAX_FRAME 65536
static td_cli_server g_srv;
static const char *const g_extra[] = {"--max-frame", "65536", NULL};
static const char DOC[] = "dz";

/* ---- helpers ------------------------------------------------------------------ */

/* A raw deflate stream of p (level 6), malloc'd. */
static uint8_t *zraw(const void *p, size_t len, size_t *out_len)
{
    z_stream z;
    uLong cap = compressBound((uLong)len) + 64;
    uint8_t *out = malloc(cap);
    memset(&z, 0, sizeof z);
    if (!out || deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(out);
        return NULL;
    }
    z.next_in = (Bytef *)(uintptr_t)p;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
        deflateEnd(&z);
        free(out);
        return NULL;
    }
    *out_len = z.total_out;
    deflateEnd(&z);
    return out;
}

/* A hand-made deflated message: type | 0x40, varint `declared`, then the
 * raw deflate stream of body, then `junk` extra bytes. */
static void put_deflated(td_srv_wbuf *w, uint8_t type, uint64_t declared, const void *body,
                         size_t blen, const char *junk)
{
    size_t zl = 0;
    uint8_t *z = zraw(body, blen, &zl);
    td_srv_put_u8(w, (uint8_t)(type | TD_SRV_FLAG_DEFLATE));
    td_srv_put_varint(w, declared);
    td_srv_put_raw(w, z, zl);
    if (junk)
        td_srv_put_raw(w, junk, strlen(junk));
    free(z);
}

static void send_hello(td_cli_conn *c, uint64_t version, uint64_t agent)
{
    td_srv_msg m = {0};
    m.type = TD_SRV_MSG_HELLO;
    m.version = version;
    m.agent = agent;
    srv_send_msg(c, &m);
}

static void send_subscribe(td_cli_conn *c)
{
    td_srv_msg m = {0};
    m.type = TD_SRV_MSG_SUBSCRIBE;
    m.doc.ptr = (const uint8_t *)DOC;
    m.doc.len = strlen(DOC);
    srv_send_msg(c, &m);
}

static void encode_update(td_srv_wbuf *w, const uint8_t *batch, size_t blen, uint64_t id)
{
    td_srv_msg m = {0};
    m.type = TD_SRV_MSG_UPDATE;
    m.doc.ptr = (const uint8_t *)DOC;
    m.doc.len = strlen(DOC);
    m.batch.ptr = batch;
    m.batch.len = blen;
    m.batch_id = id;
    td_srv_msg_encode(&m, w);
}

/* A received message, inflated if it is deflated: *plain is malloc'd (or
 * NULL when it was not deflated); returns the decoded message. */
static td_srv_msg take(td_cli_msg *raw, uint8_t **plain)
{
    td_srv_msg d;
    size_t len = 0;
    memset(&d, 0, sizeof d);
    *plain = NULL;
    if (!raw)
        return d;
    if (td_srv_msg_inflate(raw->data, raw->len, 1u << 30, plain, &len, NULL) != TD_SRV_E_OK)
        return d;
    if (*plain)
        td_srv_msg_decode(*plain, len, &d, NULL);
    else
        d = srv_decode(raw);
    return d;
}

/* A batch of doc inserting `len` bytes of compressible text at `at`. */
static uint8_t *text_batch(td_crdt_doc *doc, size_t at, size_t len, size_t *blen)
{
    static const char words[] = "the quick brown fox jumps over the lazy dog; ";
    td_crdt_obj t;
    uint8_t *batch = NULL;
    char *s = malloc(len + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < len; i++)
        s[i] = words[(i * 7 + i / 13) % (sizeof words - 1)];
    if (td_crdt_root(doc, TD_CRDT_TEXT, "body", 4, &t) != TD_CRDT_OK ||
        td_crdt_text_insert(doc, t, at, s, len) != TD_CRDT_OK ||
        td_crdt_commit(doc, &batch, blen) != TD_CRDT_OK)
        batch = NULL;
    free(s);
    return batch;
}

/* The ERROR next on c: its code, or -1. */
static int64_t next_error(td_cli_conn *c)
{
    td_cli_msg *m = td_cli_expect(c, TD_SRV_MSG_ERROR, 3000);
    td_srv_msg d = srv_decode(m);
    int64_t code = d.type == TD_SRV_MSG_ERROR ? (int64_t)d.code : -1;
    if (code >= 0)
        printf("  ERROR %s: %.*s\n", td_srv_code_name(d.code), (int)d.message.len,
               (const char *)d.message.ptr);
    td_cli_msg_free(m);
    return code;
}

static void send_wbuf(td_cli_conn *c, td_srv_wbuf *w)
{
    td_cli_send_raw(c, td_srv_wbuf_msg(w), w->len, 0);
    td_srv_wbuf_free(w);
}

/* The value of a metric line "name value" in body, or -1. */
static long long metric(const char *body, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = body ? strstr(body, key) : NULL;
    return p ? atoll(p + strlen(key)) : -1;
}

/* ---- the codec --------------------------------------------------------------------- */

static void codec_tests(void)
{
    td_srv_wbuf w, u;
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    const char *why = NULL;
    uint8_t msg[4096];

    /* Round trip of a compressible message; the type byte gets the flag. */
    td_srv_wbuf_init(&u, 0);
    memset(msg, 'a', sizeof msg);
    encode_update(&u, msg, 3000, 9);
    td_srv_wbuf_init(&w, 0);
    CHECK(td_srv_msg_deflate(td_srv_wbuf_msg(&u), u.len, &w) == 1);
    CHECK(w.len < u.len / 10 && td_srv_wbuf_msg(&w)[0] == (TD_SRV_MSG_UPDATE | 0x40));
    CHECK(td_srv_msg_inflate(td_srv_wbuf_msg(&w), w.len, u.len - 1, &plain, &plain_len, &why) ==
          TD_SRV_E_OK);
    CHECK(plain && plain_len == u.len && !memcmp(plain, td_srv_wbuf_msg(&u), u.len));
    free(plain);
    /* The limit is on the inflated body: one byte less is too large. */
    CHECK(td_srv_msg_inflate(td_srv_wbuf_msg(&w), w.len, u.len - 2, &plain, &plain_len, &why) ==
              TD_SRV_E_TOO_LARGE &&
          !plain);
    td_srv_wbuf_free(&w);
    td_srv_wbuf_free(&u);

    /* Threshold: 1023 bytes stay as they are, 1024 are deflated. */
    memset(msg, 'b', sizeof msg);
    msg[0] = TD_SRV_MSG_REMOTE;
    td_srv_wbuf_init(&w, 0);
    CHECK(td_srv_msg_deflate(msg, TD_SRV_DEFLATE_MIN - 1, &w) == 0 && w.len == 0);
    CHECK(td_srv_msg_deflate(msg, TD_SRV_DEFLATE_MIN, &w) == 1 && w.len < 100);
    td_srv_wbuf_free(&w);

    /* Only if shorter: random bytes do not deflate. */
    randombytes_buf(msg, sizeof msg);
    msg[0] = TD_SRV_MSG_SYNC;
    td_srv_wbuf_init(&w, 0);
    CHECK(td_srv_msg_deflate(msg, sizeof msg, &w) == 0 && w.len == 0);
    td_srv_wbuf_free(&w);

    /* A message without the flag passes through. */
    msg[0] = TD_SRV_MSG_UPDATE;
    CHECK(td_srv_msg_inflate(msg, 10, 100, &plain, &plain_len, &why) == TD_SRV_E_OK && !plain);

    /* Hostile input. */
    memset(msg, 0, sizeof msg);
    td_srv_wbuf_init(&w, 0); /* bomb: 4 MiB of zeros in a few KB, declared honestly */
    {
        uint8_t *zeros = calloc(1, 4u << 20);
        if (!zeros) {
            CHECK(zeros != NULL);
            return;
        }
        put_deflated(&w, TD_SRV_MSG_UPDATE, 4u << 20, zeros, 4u << 20, NULL);
        CHECK(td_srv_msg_inflate(td_srv_wbuf_msg(&w), w.len, MAX_FRAME - 1, &plain, &plain_len,
                                 &why) == TD_SRV_E_TOO_LARGE && !plain);
        td_srv_wbuf_free(&w);
        /* ... declared small: inflating stops at the declared size + 1 */
        td_srv_wbuf_init(&w, 0);
        put_deflated(&w, TD_SRV_MSG_UPDATE, 100, zeros, 4u << 20, NULL);
        CHECK(td_srv_msg_inflate(td_srv_wbuf_msg(&w), w.len, MAX_FRAME - 1, &plain, &plain_len,
                                 &why) == TD_SRV_E_BAD_MESSAGE && !plain);
        td_srv_wbuf_free(&w);
        free(zeros);
    }
    td_srv_wbuf_init(&w, 0); /* declared size past 2^64 bits: malformed varint */
    td_srv_put_raw(&w, "\x44\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x01", 12);
    CHECK(td_srv_msg_inflate(td_srv_wbuf_msg(&w), w.len, MAX_FRAME - 1, &plain, &plain_len,
                             &why) == TD_SRV_E_BAD_MESSAGE);
    td_srv_wbuf_free(&w);
    td_srv_wbuf_init(&w, 0); /* 2^63 declared */
    td_srv_put_u8(&w, 0x44);
    td_srv_put_varint(&w, 1ull << 63);
    td_srv_put_raw(&w, "\x03\x00", 2);
    CHECK(td_srv_msg_inflate(td_srv_wbuf_msg(&w), w.len, MAX_FRAME - 1, &plain, &plain_len,
                             &why) == TD_SRV_E_TOO_LARGE);
    td_srv_wbuf_free(&w);
    static const struct {
        const char *name;
        uint64_t declared_delta; /* added to the true size */
        int minus;
        const char *junk;
        int corrupt;
    } bad[] = {{"declared one too many", 1, 0, NULL, 0},
               {"declared one too few", 1, 1, NULL, 0},
               {"trailing garbage", 0, 0, "xyz", 0},
               {"corrupt stream", 0, 0, NULL, 1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        td_check_context = bad[i].name;
        td_srv_wbuf_init(&w, 0);
        memset(msg, 'c', 2000);
        uint64_t d = bad[i].minus ? 2000 - bad[i].declared_delta : 2000 + bad[i].declared_delta;
        put_deflated(&w, TD_SRV_MSG_UPDATE, d, msg, 2000, bad[i].junk);
        if (bad[i].corrupt)
            td_srv_wbuf_msg(&w)[3] ^= 0xff, td_srv_wbuf_msg(&w)[4] ^= 0x5a;
        CHECK(td_srv_msg_inflate(td_srv_wbuf_msg(&w), w.len, MAX_FRAME - 1, &plain, &plain_len,
                                 &why) == TD_SRV_E_BAD_MESSAGE && !plain);
        printf("  %s: %s\n", bad[i].name, why);
        td_srv_wbuf_free(&w);
    }
    td_check_context = NULL;
    /* Nothing after the size; the flag alone. */
    CHECK(td_srv_msg_inflate((const uint8_t *)"\x44\x05", 2, 100, &plain, &plain_len, &why) ==
          TD_SRV_E_BAD_MESSAGE);
    CHECK(td_srv_msg_inflate((const uint8_t *)"\x44", 1, 100, &plain, &plain_len, &why) ==
          TD_SRV_E_BAD_MESSAGE);
}

/* ---- the server ---------------------------------------------------------------------- */

static void server_tests(const char *bin, const char *data)
{
    int port = 0;
    td_cli_conn *v1 = NULL, *v2 = NULL, *late1 = NULL, *late2 = NULL;
    td_crdt_doc *d1 = NULL, *d2 = NULL, *d3 = NULL;
    td_cli_msg *m = NULL;
    td_srv_msg d;
    uint8_t *plain = NULL, *batch = NULL;
    size_t blen = 0;
    td_srv_wbuf w;
    char *t1 = NULL, *t2 = NULL, *body = NULL;

    REQUIRE(srv_start(&g_srv, bin, data, g_extra, &port) > 0);
    v1 = srv_connect(port, 3000);
    v2 = srv_connect(port, 3000);
    REQUIRE(v1 && v2);

    /* The flag before HELLO: no version yet, malformed. */
    td_srv_wbuf_init(&w, 0);
    put_deflated(&w, TD_SRV_MSG_HELLO, 3, "\x02\x00\x05", 3, NULL);
    send_wbuf(v2, &w);
    CHECK(next_error(v2) == TD_SRV_E_BAD_MESSAGE);

    send_hello(v1, 1, 2001);
    send_hello(v2, 2, 2002);
    m = td_cli_expect(v1, TD_SRV_MSG_WELCOME, 3000);
    d = srv_decode(m);
    REQUIRE(d.type == TD_SRV_MSG_WELCOME && d.version == 1);
    td_cli_msg_free(m);
    m = td_cli_expect(v2, TD_SRV_MSG_WELCOME, 3000);
    d = srv_decode(m);
    REQUIRE(d.type == TD_SRV_MSG_WELCOME && d.version == 2);
    td_cli_msg_free(m);

    td_crdt_options o1 = {0}, o2 = {0}, o3 = {0};
    o1.agent = 2001, o2.agent = 2002, o3.agent = 2003;
    REQUIRE(td_crdt_doc_new(&o1, &d1) == TD_CRDT_OK && td_crdt_doc_new(&o2, &d2) == TD_CRDT_OK &&
            td_crdt_doc_new(&o3, &d3) == TD_CRDT_OK);
    send_subscribe(v1);
    send_subscribe(v2);
    m = td_cli_expect(v1, TD_SRV_MSG_SYNC, 5000);
    REQUIRE(m);
    td_cli_msg_free(m);
    m = td_cli_expect(v2, TD_SRV_MSG_SYNC, 5000); /* empty document: small, plain */
    REQUIRE(m);
    td_cli_msg_free(m);

    /* A small UPDATE from v1: the REMOTE to v2 is plain (below 1024). */
    batch = text_batch(d1, 0, 10, &blen);
    REQUIRE(batch);
    td_srv_wbuf_init(&w, 0);
    encode_update(&w, batch, blen, 1);
    send_wbuf(v1, &w);
    td_crdt_buf_free(d1, batch);
    m = td_cli_expect(v1, TD_SRV_MSG_ACK, 5000);
    CHECK(m != NULL);
    td_cli_msg_free(m);
    m = td_cli_expect(v2, 0, 5000);
    REQUIRE(m);
    CHECK(m->data[0] == TD_SRV_MSG_REMOTE && m->len < TD_SRV_DEFLATE_MIN);
    d = take(m, &plain);
    CHECK(srv_apply_msg(d2, &d) == 0);
    td_cli_msg_free(m);

    /* A large UPDATE from v1 (plain, version 1): v2 gets it deflated. */
    batch = text_batch(d1, 10, 20000, &blen);
    REQUIRE(batch);
    td_srv_wbuf_init(&w, 0);
    encode_update(&w, batch, blen, 2);
    size_t plain_remote = w.len;
    send_wbuf(v1, &w);
    td_crdt_buf_free(d1, batch);
    m = td_cli_expect(v1, TD_SRV_MSG_ACK, 5000);
    CHECK(m != NULL);
    td_cli_msg_free(m);
    m = td_cli_expect(v2, 0, 5000);
    REQUIRE(m);
    printf("  REMOTE of a %zu-byte UPDATE: %zu bytes deflated (type 0x%02x)\n", plain_remote,
           m->len, m->data[0]);
    CHECK(m->data[0] == (TD_SRV_MSG_REMOTE | TD_SRV_FLAG_DEFLATE) && m->len < plain_remote / 4);
    d = take(m, &plain);
    CHECK(plain && d.type == TD_SRV_MSG_REMOTE && srv_apply_msg(d2, &d) == 0);
    free(plain);
    td_cli_msg_free(m);
    t1 = srv_text_of(d1);
    t2 = srv_text_of(d2);
    CHECK(strlen(t1) == 20010 && strcmp(t1, t2) == 0);
    free(t2);
    t2 = NULL;

    /* A large UPDATE from v2, sent deflated: accepted; v1 gets it plain. */
    batch = text_batch(d2, 0, 15000, &blen);
    REQUIRE(batch);
    td_srv_wbuf u;
    td_srv_wbuf_init(&u, 0);
    encode_update(&u, batch, blen, 3);
    td_crdt_buf_free(d2, batch);
    td_srv_wbuf_init(&w, 0);
    CHECK(td_srv_msg_deflate(td_srv_wbuf_msg(&u), u.len, &w) == 1);
    send_wbuf(v2, &w);
    m = td_cli_expect(v2, 0, 5000);
    d = take(m, &plain);
    CHECK(d.type == TD_SRV_MSG_ACK && d.batch_id == 3);
    free(plain);
    td_cli_msg_free(m);
    m = td_cli_expect(v1, 0, 5000);
    REQUIRE(m);
    CHECK(m->data[0] == TD_SRV_MSG_REMOTE && m->len >= TD_SRV_DEFLATE_MIN);
    d = take(m, &plain);
    CHECK(!plain && srv_apply_msg(d1, &d) == 0);
    td_cli_msg_free(m);
    free(t1);
    t1 = srv_text_of(d1);
    t2 = srv_text_of(d2);
    CHECK(strlen(t1) == 35010 && strcmp(t1, t2) == 0);

    /* The flag on the version 1 connection: bad_message, even for a
     * well-formed deflated message. */
    td_srv_wbuf_init(&w, 0);
    CHECK(td_srv_msg_deflate(td_srv_wbuf_msg(&u), u.len, &w) == 1);
    send_wbuf(v1, &w);
    CHECK(next_error(v1) == TD_SRV_E_BAD_MESSAGE);
    td_srv_wbuf_free(&u);

    /* Late joiners: the large SYNC is deflated for version 2 only. */
    late1 = srv_connect(port, 3000);
    late2 = srv_connect(port, 3000);
    REQUIRE(late1 && late2);
    send_hello(late1, 1, 2004);
    send_hello(late2, 2, 2003);
    td_cli_msg_free(td_cli_expect(late1, TD_SRV_MSG_WELCOME, 3000));
    td_cli_msg_free(td_cli_expect(late2, TD_SRV_MSG_WELCOME, 3000));
    send_subscribe(late1);
    send_subscribe(late2);
    m = td_cli_expect(late1, 0, 5000);
    REQUIRE(m);
    CHECK(m->data[0] == TD_SRV_MSG_SYNC && m->len > 35000);
    size_t sync_plain = m->len;
    td_cli_msg_free(m);
    m = td_cli_expect(late2, 0, 5000);
    REQUIRE(m);
    printf("  SYNC: %zu bytes plain (v1), %zu deflated (v2)\n", sync_plain, m->len);
    CHECK(m->data[0] == (TD_SRV_MSG_SYNC | TD_SRV_FLAG_DEFLATE) && m->len < sync_plain / 4);
    d = take(m, &plain);
    CHECK(plain && srv_apply_msg(d3, &d) == 0);
    free(plain);
    td_cli_msg_free(m);
    free(t2);
    t2 = srv_text_of(d3);
    CHECK(strcmp(t1, t2) == 0);

    /* Hostile deflated messages on the version 2 connection. */
    {
        uint8_t *zeros = calloc(1, 8u << 20);
        REQUIRE(zeros);
        td_srv_wbuf_init(&w, 0); /* declares more than --max-frame - 1 */
        put_deflated(&w, TD_SRV_MSG_UPDATE, MAX_FRAME, zeros, MAX_FRAME, NULL);
        send_wbuf(v2, &w);
        CHECK(next_error(v2) == TD_SRV_E_TOO_LARGE);
        td_srv_wbuf_init(&w, 0); /* 8 MiB of zeros, declared as such */
        put_deflated(&w, TD_SRV_MSG_UPDATE, 8u << 20, zeros, 8u << 20, NULL);
        send_wbuf(v2, &w);
        CHECK(next_error(v2) == TD_SRV_E_TOO_LARGE);
        td_srv_wbuf_init(&w, 0); /* 8 MiB of zeros declared as 1000 bytes */
        put_deflated(&w, TD_SRV_MSG_UPDATE, 1000, zeros, 8u << 20, NULL);
        send_wbuf(v2, &w);
        CHECK(next_error(v2) == TD_SRV_E_BAD_MESSAGE);
        td_srv_wbuf_init(&w, 0); /* the largest allowed size, inflating to it */
        put_deflated(&w, TD_SRV_MSG_UPDATE, MAX_FRAME - 1, zeros, MAX_FRAME - 1, NULL);
        send_wbuf(v2, &w);
        CHECK(next_error(v2) == TD_SRV_E_BAD_DOC_ID); /* zeros: an empty doc id */
        free(zeros);
    }
    td_srv_wbuf_init(&w, 0); /* corrupt stream */
    td_srv_put_raw(&w, "\x44\x20\xff\xff\xff\xff\x00\x01\x02", 9);
    send_wbuf(v2, &w);
    CHECK(next_error(v2) == TD_SRV_E_BAD_MESSAGE);
    td_srv_wbuf_init(&w, 0); /* trailing garbage */
    put_deflated(&w, TD_SRV_MSG_UNSUBSCRIBE, 3, "\x02" "dz", 3, "!!");
    send_wbuf(v2, &w);
    CHECK(next_error(v2) == TD_SRV_E_BAD_MESSAGE);
    td_srv_wbuf_init(&w, 0); /* size mismatch */
    put_deflated(&w, TD_SRV_MSG_UNSUBSCRIBE, 4, "\x02" "dz", 3, NULL);
    send_wbuf(v2, &w);
    CHECK(next_error(v2) == TD_SRV_E_BAD_MESSAGE);
    td_srv_wbuf_init(&w, 0); /* a server type, flagged: unknown as ever */
    put_deflated(&w, TD_SRV_MSG_ACK, 4, "\x02" "dz\x01", 4, NULL);
    send_wbuf(v2, &w);
    CHECK(next_error(v2) == TD_SRV_E_UNKNOWN_TYPE);
    td_srv_wbuf_init(&w, 0); /* inflates to a malformed message */
    put_deflated(&w, TD_SRV_MSG_UPDATE, 3, "\x02" "dz", 3, NULL);
    send_wbuf(v2, &w);
    CHECK(next_error(v2) == TD_SRV_E_BAD_MESSAGE);

    /* Still up and serving both: a small deflated UPDATE (a client may
     * deflate what it likes) is ACKed. */
    batch = text_batch(d2, 0, 5, &blen);
    REQUIRE(batch);
    td_srv_wbuf_init(&u, 0);
    encode_update(&u, batch, blen, 4);
    td_crdt_buf_free(d2, batch);
    td_srv_wbuf_init(&w, 0);
    put_deflated(&w, TD_SRV_MSG_UPDATE, u.len - 1, td_srv_wbuf_msg(&u) + 1, u.len - 1, NULL);
    td_srv_wbuf_free(&u);
    send_wbuf(v2, &w);
    m = td_cli_expect(v2, TD_SRV_MSG_ACK, 5000);
    d = srv_decode(m);
    CHECK(d.type == TD_SRV_MSG_ACK && d.batch_id == 4);
    td_cli_msg_free(m);
    m = td_cli_expect(v1, TD_SRV_MSG_REMOTE, 5000);
    CHECK(m != NULL);
    td_cli_msg_free(m);

    /* Nothing deflated ever reached the version 1 connections. */
    CHECK(td_cli_conn_stats(v1)->by_type[TD_SRV_MSG_REMOTE | TD_SRV_FLAG_DEFLATE] == 0);
    CHECK(td_cli_conn_stats(v1)->by_type[TD_SRV_MSG_SYNC | TD_SRV_FLAG_DEFLATE] == 0);
    CHECK(td_cli_conn_stats(late1)->by_type[TD_SRV_MSG_SYNC | TD_SRV_FLAG_DEFLATE] == 0);
    for (int t = 0x40; t < 0x80; t++)
        CHECK(td_cli_conn_stats(v1)->by_type[t | 0x80] == 0);

    CHECK(srv_http_get(port, "/metrics", &body) == 200);
    long long nout = metric(body, "tandem_deflated_messages_out_total");
    long long saved = metric(body, "tandem_deflate_saved_bytes_total");
    long long in = metric(body, "tandem_deflated_messages_in_total");
    printf("  metrics: out %lld, saved %lld bytes, in %lld\n", nout, saved, in);
    CHECK(nout == 2);   /* the large REMOTE and the large SYNC to version 2 */
    CHECK(saved > 40000);
    /* the two valid UPDATEs, the 65535 zeros and the malformed one */
    CHECK(in == 4);
    free(body);

    CHECK(srv_stop(&g_srv) == 0);
out:
    free(t1);
    free(t2);
    td_cli_conn_free(v1);
    td_cli_conn_free(v2);
    td_cli_conn_free(late1);
    td_cli_conn_free(late2);
    if (d1) td_crdt_doc_free(d1);
    if (d2) td_crdt_doc_free(d2);
    if (d3) td_crdt_doc_free(d3);
    if (g_srv.pid > 0)
        td_cli_server_stop(&g_srv, SIGKILL, 0);
}

int main(int argc, char **argv)
{
    char dir[256], data[300];
    td_check_keep_going = 1;
    if (argc < 2) {
        fprintf(stderr, "usage: %s SERVER_BINARY\n", argv[0]);
        return 2;
    }
    if (sodium_init() < 0 || !srv_ctx(0) || srv_scratch_dir(dir, sizeof dir, "deflate") < 0)
        return 1;
    snprintf(data, sizeof data, "%s/data", dir);
    codec_tests();
    server_tests(argv[1], data);
    srv_ctx_free();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        td_check_failures++;
    return td_check_status("srv_deflate");
}
