/*
 * test_badinput.c -- bar 6 of issue 5: a corpus of malformed frames (more
 * than 60) is sent; each gets the ERROR code or close code PROTOCOL.md
 * gives it; the server stays up; another client sees no change and the
 * documents are unchanged.
 *
 * Frames that leave the connection open are sent one after another on one
 * connection. After each, a resync (SUBSCRIBE of an already subscribed
 * document) acts as a fence: the server processes a connection's messages
 * in order, so every ERROR the bad frame caused arrives before that SYNC.
 * Each case then states the exact set of ERROR codes it must produce (one
 * ERROR, with the batch id for UPDATEs). Frames that close the connection
 * (text frame 1003, oversize 1009, bad version 1002) each get their own
 * connection. Frames sent before HELLO use a connection that never says
 * HELLO.
 *
 * The server runs with --max-frame 262144 and --max-batch 65536 so that the
 * size limits are cheap to reach.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "it_util.h"

#define DOC "bad"
#define OTHER "bad-other"
#define MAX_FRAME 262144
#define MAX_BATCH 65536

typedef struct bcase {
    const char *name;
    td_cli_buf msg;
    int text;
    uint64_t code;      /* expected ERROR code (0: none) */
    uint64_t alt_code;  /* also acceptable (0: none) */
    uint64_t batch_id;  /* expected batch id in the ERROR (0: not checked) */
    int close_code;     /* expected close (0: stays open) */
    int pre_hello;      /* send before HELLO */
} bcase;

#define MAXCASES 128
static bcase cases[MAXCASES];
static int ncases;

static bcase *add(const char *name, uint64_t code, uint64_t alt)
{
    CHECK(ncases < MAXCASES);
    bcase *c = &cases[ncases++];
    memset(c, 0, sizeof *c);
    c->name = name;
    c->code = code;
    c->alt_code = alt;
    return c;
}

static void put_doc(td_cli_buf *b, const char *doc)
{
    td_cli_put_bytes(b, doc, strlen(doc));
}

/* A valid batch made by a throwaway replica (agent given). */
static td_cli_buf make_batch(uint64_t agent, int kind)
{
    td_crdt_options o = {0};
    o.agent = agent;
    o.max_depth = 1000;
    td_crdt_doc *d = NULL;
    CHECK(td_crdt_doc_new(&o, &d) == TD_CRDT_OK);
    td_crdt_obj root, obj;
    if (kind == 0) { /* text */
        CHECK(td_crdt_root(d, TD_CRDT_TEXT, "body", 4, &root) == TD_CRDT_OK);
        CHECK(td_crdt_text_insert(d, root, 0, "abc", 3) == TD_CRDT_OK);
    } else if (kind == 1) { /* list object, then 3 map sets, then insert into it */
        CHECK(td_crdt_root(d, TD_CRDT_MAP, "m", 1, &root) == TD_CRDT_OK);
        CHECK(td_crdt_map_set_obj(d, root, "l", 1, TD_CRDT_LIST, &obj) == TD_CRDT_OK);
        td_crdt_value v = {.type = TD_CRDT_V_INT};
        for (int i = 0; i < 3; i++) {
            char k[2] = {(char)('a' + i), 0};
            v.u.i = i;
            CHECK(td_crdt_map_set(d, root, k, 1, &v) == TD_CRDT_OK);
        }
        CHECK(td_crdt_list_insert(d, obj, 0, &v, 1) == TD_CRDT_OK);
    } else if (kind == 2) { /* text object at seq 0, text insert into it at seq 4 */
        CHECK(td_crdt_root(d, TD_CRDT_MAP, "m", 1, &root) == TD_CRDT_OK);
        CHECK(td_crdt_map_set_obj(d, root, "t", 1, TD_CRDT_TEXT, &obj) == TD_CRDT_OK);
        td_crdt_value v = {.type = TD_CRDT_V_NULL};
        for (int i = 0; i < 3; i++) {
            char k[2] = {(char)('a' + i), 0};
            CHECK(td_crdt_map_set(d, root, k, 1, &v) == TD_CRDT_OK);
        }
        CHECK(td_crdt_text_insert(d, obj, 0, "x", 1) == TD_CRDT_OK);
    } else if (kind == 3) { /* 100 nested maps */
        CHECK(td_crdt_root(d, TD_CRDT_MAP, "deep", 4, &root) == TD_CRDT_OK);
        obj = root;
        for (int i = 0; i < 100; i++)
            CHECK(td_crdt_map_set_obj(d, obj, "n", 1, TD_CRDT_MAP, &obj) == TD_CRDT_OK);
    } else if (kind == 4) { /* 100 nested lists */
        CHECK(td_crdt_root(d, TD_CRDT_LIST, "deepl", 5, &root) == TD_CRDT_OK);
        obj = root;
        for (int i = 0; i < 100; i++)
            CHECK(td_crdt_list_insert_obj(d, obj, 0, TD_CRDT_LIST, &obj) == TD_CRDT_OK);
    } else { /* big text: kind = bytes */
        CHECK(td_crdt_root(d, TD_CRDT_TEXT, "big", 3, &root) == TD_CRDT_OK);
        char *s = malloc((size_t)kind);
        CHECK(s != NULL);
        memset(s, 'z', (size_t)kind);
        CHECK(td_crdt_text_insert(d, root, 0, s, (size_t)kind) == TD_CRDT_OK);
        free(s);
    }
    uint8_t *out = NULL;
    size_t len = 0;
    CHECK(td_crdt_commit(d, &out, &len) == TD_CRDT_OK && out);
    td_cli_buf b = {0};
    td_cli_put_raw(&b, out, len);
    td_crdt_buf_free(d, out);
    td_crdt_doc_free(d);
    return b;
}

static bcase *update_case(const char *name, const char *doc, uint64_t id, const uint8_t *batch,
                          size_t len, uint64_t code, uint64_t alt)
{
    bcase *c = add(name, code, alt);
    td_cli_put_u8(&c->msg, TD_CLI_UPDATE);
    put_doc(&c->msg, doc);
    td_cli_put_varint(&c->msg, id);
    td_cli_put_bytes(&c->msg, batch, len);
    c->batch_id = code == TD_CLI_E_BAD_MESSAGE ? 0 : id;
    return c;
}

static void raw_case(const char *name, uint64_t code, const void *bytes, size_t len)
{
    bcase *c = add(name, code, 0);
    td_cli_put_raw(&c->msg, bytes, len);
    if (len == 0)
        c->msg.oom = 0;
}

static void build_corpus(void)
{
    static const uint8_t u8_bad[][4] = {
        {0xc3, 0x28}, {0xc0, 0xaf}, {0xed, 0xa0, 0x80}, {0xf4, 0x90, 0x80, 0x80}, {0xff}};
    static const size_t u8_len[] = {2, 2, 3, 4, 1};
    bcase *c;

    /* before HELLO */
    c = add("SUBSCRIBE before HELLO", TD_CLI_E_HELLO_REQUIRED, 0);
    c->pre_hello = 1;
    td_cli_put_u8(&c->msg, TD_CLI_SUBSCRIBE), put_doc(&c->msg, DOC), td_cli_put_varint(&c->msg, 0);
    c = add("UPDATE before HELLO", TD_CLI_E_HELLO_REQUIRED, 0);
    c->pre_hello = 1;
    {
        td_cli_buf b = make_batch(77, 0);
        td_cli_put_u8(&c->msg, TD_CLI_UPDATE), put_doc(&c->msg, DOC);
        td_cli_put_varint(&c->msg, 1), td_cli_put_bytes(&c->msg, b.data, b.len);
        td_cli_buf_free(&b);
    }
    c = add("PRESENCE before HELLO", TD_CLI_E_HELLO_REQUIRED, 0);
    c->pre_hello = 1;
    td_cli_put_u8(&c->msg, TD_CLI_PRESENCE), put_doc(&c->msg, DOC), td_cli_put_bytes(&c->msg, "x", 1);

    /* closing frames */
    c = add("text frame", 0, 0);
    c->text = 1, c->close_code = 1003;
    td_cli_put_raw(&c->msg, "{\"hello\":1}", 11);
    c = add("oversize frame (max_frame + 1)", 0, 0);
    c->close_code = 1009;
    {
        uint8_t *big = calloc(1, MAX_FRAME + 1);
        CHECK(big != NULL);
        big[0] = TD_CLI_UPDATE;
        td_cli_put_raw(&c->msg, big, MAX_FRAME + 1);
        free(big);
    }
    /* Version 2 is known (deflated messages); 3 is the first unknown one. */
    c = add("HELLO version 3", TD_CLI_E_BAD_VERSION, 0);
    c->close_code = 1002, c->pre_hello = 1;
    td_cli_put_u8(&c->msg, TD_CLI_HELLO), td_cli_put_varint(&c->msg, 3);
    td_cli_put_bytes(&c->msg, "", 0), td_cli_put_varint(&c->msg, 5);
    c = add("HELLO version 0", TD_CLI_E_BAD_VERSION, 0);
    c->close_code = 1002, c->pre_hello = 1;
    td_cli_put_u8(&c->msg, TD_CLI_HELLO), td_cli_put_varint(&c->msg, 0);
    td_cli_put_bytes(&c->msg, "", 0), td_cli_put_varint(&c->msg, 5);

    /* on an established connection: framing */
    raw_case("empty message", TD_CLI_E_BAD_MESSAGE, "", 0);
    static const uint8_t unknown[] = {0x00, 0x06, 0x07, 0x10, 0x3f, 0x80, 0x81, 0x83, 0x87, 0xff};
    static char unknown_names[sizeof unknown][32];
    for (size_t i = 0; i < sizeof unknown; i++) {
        snprintf(unknown_names[i], sizeof unknown_names[i], "unknown type 0x%02x", unknown[i]);
        uint8_t m[3] = {unknown[i], 0x01, 0x61};
        raw_case(unknown_names[i], TD_CLI_E_UNKNOWN_TYPE, m, 3);
    }

    /* The deflate flag (0x40) of protocol version 2 on this version 1
     * connection: malformed, whatever follows. */
    raw_case("deflate flag on a v1 connection (0x44)", TD_CLI_E_BAD_MESSAGE, "\x44\x03\x01\x02", 4);
    raw_case("deflate flag on a v1 connection (0x7f)", TD_CLI_E_BAD_MESSAGE, "\x7f\x01\x61", 3);

    /* HELLO (re-HELLO on an open server) */
    raw_case("HELLO truncated after type", TD_CLI_E_BAD_MESSAGE, "\x01", 1);
    raw_case("HELLO missing token", TD_CLI_E_BAD_MESSAGE, "\x01\x01", 2);
    raw_case("HELLO missing agent", TD_CLI_E_BAD_MESSAGE, "\x01\x01\x00", 3);
    raw_case("HELLO truncated varint version", TD_CLI_E_BAD_MESSAGE, "\x01\x81", 2);
    raw_case("HELLO non-minimal varint", TD_CLI_E_BAD_MESSAGE, "\x01\x81\x00\x00\x05", 5);
    raw_case("HELLO trailing byte", TD_CLI_E_BAD_MESSAGE, "\x01\x01\x00\x05\x00", 5);
    raw_case("HELLO token length past end", TD_CLI_E_BAD_MESSAGE, "\x01\x01\x09\x61\x05", 5);
    raw_case("HELLO token bad UTF-8", TD_CLI_E_BAD_MESSAGE, "\x01\x01\x02\xc3\x28\x05", 6);
    raw_case("HELLO agent 11-byte varint", TD_CLI_E_BAD_MESSAGE,
             "\x01\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 14);
    raw_case("HELLO agent over 2^64", TD_CLI_E_BAD_MESSAGE,
             "\x01\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 13);

    /* SUBSCRIBE */
    raw_case("SUBSCRIBE empty", TD_CLI_E_BAD_MESSAGE, "\x02", 1);
    raw_case("SUBSCRIBE doc length past end", TD_CLI_E_BAD_MESSAGE, "\x02\x05\x61\x62", 4);
    raw_case("SUBSCRIBE missing vv", TD_CLI_E_BAD_MESSAGE, "\x02\x01\x61", 3);
    raw_case("SUBSCRIBE vv length past end", TD_CLI_E_BAD_MESSAGE, "\x02\x01\x61\x05\x00", 5);
    raw_case("SUBSCRIBE trailing bytes", TD_CLI_E_BAD_MESSAGE, "\x02\x01\x61\x00\x00\x00", 6);
    raw_case("SUBSCRIBE doc length truncated varint", TD_CLI_E_BAD_MESSAGE, "\x02\x80", 2);
    raw_case("SUBSCRIBE empty doc id", TD_CLI_E_BAD_DOC_ID, "\x02\x00\x00", 3);
    raw_case("SUBSCRIBE doc id with NUL", TD_CLI_E_BAD_DOC_ID, "\x02\x03\x61\x00\x62\x00", 6);
    raw_case("SUBSCRIBE doc id with newline", TD_CLI_E_BAD_DOC_ID, "\x02\x02\x61\x0a\x00", 5);
    raw_case("SUBSCRIBE doc id with DEL", TD_CLI_E_BAD_DOC_ID, "\x02\x02\x61\x7f\x00", 5);
    static char u8names[5][48];
    for (int i = 0; i < 5; i++) {
        snprintf(u8names[i], sizeof u8names[i], "SUBSCRIBE doc id bad UTF-8 #%d", i + 1);
        c = add(u8names[i], TD_CLI_E_BAD_DOC_ID, 0);
        td_cli_put_u8(&c->msg, TD_CLI_SUBSCRIBE);
        td_cli_put_bytes(&c->msg, u8_bad[i], u8_len[i]);
        td_cli_put_varint(&c->msg, 0);
    }
    {
        char id[257];
        memset(id, 'x', 256);
        id[256] = 0;
        c = add("SUBSCRIBE doc id of 256 bytes", TD_CLI_E_BAD_DOC_ID, 0);
        td_cli_put_u8(&c->msg, TD_CLI_SUBSCRIBE), put_doc(&c->msg, id), td_cli_put_varint(&c->msg, 0);
    }
    c = add("SUBSCRIBE garbage vv", TD_CLI_E_BAD_MESSAGE, TD_CLI_E_INVALID_BATCH);
    td_cli_put_u8(&c->msg, TD_CLI_SUBSCRIBE), put_doc(&c->msg, OTHER);
    td_cli_put_bytes(&c->msg, "\xff\xff\xff", 3);

    /* UNSUBSCRIBE */
    raw_case("UNSUBSCRIBE empty", TD_CLI_E_BAD_MESSAGE, "\x03", 1);
    raw_case("UNSUBSCRIBE trailing byte", TD_CLI_E_BAD_MESSAGE, "\x03\x01\x7a\x00", 4);
    raw_case("UNSUBSCRIBE not subscribed", TD_CLI_E_NOT_SUBSCRIBED, "\x03\x01\x7a", 3);
    raw_case("UNSUBSCRIBE bad doc id", TD_CLI_E_BAD_DOC_ID, "\x03\x01\xff", 3);

    /* UPDATE framing */
    td_cli_buf good = make_batch(0x1234, 0);
    raw_case("UPDATE empty", TD_CLI_E_BAD_MESSAGE, "\x04", 1);
    raw_case("UPDATE doc only", TD_CLI_E_BAD_MESSAGE, "\x04\x03\x62\x61\x64", 5);
    raw_case("UPDATE truncated batch id", TD_CLI_E_BAD_MESSAGE, "\x04\x03\x62\x61\x64\x80", 6);
    raw_case("UPDATE missing batch", TD_CLI_E_BAD_MESSAGE, "\x04\x03\x62\x61\x64\x07", 6);
    update_case("UPDATE batch id 0", DOC, 0, good.data, good.len, TD_CLI_E_BAD_MESSAGE, 0);
    update_case("UPDATE empty batch", DOC, 9, good.data, 0, TD_CLI_E_BAD_MESSAGE, 0);
    c = add("UPDATE batch length past end", TD_CLI_E_BAD_MESSAGE, 0);
    td_cli_put_u8(&c->msg, TD_CLI_UPDATE), put_doc(&c->msg, DOC), td_cli_put_varint(&c->msg, 10);
    td_cli_put_varint(&c->msg, good.len + 1), td_cli_put_raw(&c->msg, good.data, good.len);
    c = add("UPDATE trailing byte", TD_CLI_E_BAD_MESSAGE, 0);
    td_cli_put_u8(&c->msg, TD_CLI_UPDATE), put_doc(&c->msg, DOC), td_cli_put_varint(&c->msg, 11);
    td_cli_put_bytes(&c->msg, good.data, good.len), td_cli_put_u8(&c->msg, 0);
    c = add("UPDATE batch id over 2^64", TD_CLI_E_BAD_MESSAGE, 0);
    td_cli_put_u8(&c->msg, TD_CLI_UPDATE), put_doc(&c->msg, DOC);
    td_cli_put_raw(&c->msg, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10);
    td_cli_put_bytes(&c->msg, good.data, good.len);
    update_case("UPDATE not subscribed", "nobody-here", 12, good.data, good.len,
                TD_CLI_E_NOT_SUBSCRIBED, 0);
    update_case("UPDATE bad doc id", "a\x01", 13, good.data, good.len, TD_CLI_E_BAD_DOC_ID, 0)
        ->batch_id = 0;

    /* UPDATE: batches the core must reject */
    update_case("UPDATE garbage batch", DOC, 20, (const uint8_t *)"\xde\xad\xbe\xef", 4,
                TD_CLI_E_INVALID_BATCH, 0);
    update_case("UPDATE one zero byte", DOC, 21, (const uint8_t *)"\x00", 1,
                TD_CLI_E_INVALID_BATCH, 0);
    static char trunc_names[6][40];
    size_t cuts[6] = {1, 2, 3, good.len / 2, good.len - 2, good.len - 1};
    for (int i = 0; i < 6; i++) {
        snprintf(trunc_names[i], sizeof trunc_names[i], "UPDATE batch cut to %zu/%zu", cuts[i],
                 good.len);
        update_case(trunc_names[i], DOC, 22 + (uint64_t)i, good.data, cuts[i],
                    TD_CLI_E_INVALID_BATCH, 0);
    }
    {
        td_cli_buf v = {0};
        td_cli_put_raw(&v, good.data, good.len);
        v.data[0] ^= 0x7f; /* the format version byte */
        update_case("UPDATE batch unknown version", DOC, 30, v.data, v.len,
                    TD_CLI_E_INVALID_BATCH, 0);
        td_cli_put_raw(&v, "\x00\x00", 2);
        v.data[0] ^= 0x7f;
        update_case("UPDATE batch with trailing bytes", DOC, 31, v.data, v.len,
                    TD_CLI_E_INVALID_BATCH, 0);
        td_cli_buf_free(&v);
    }
    /* invalid op references: the server already holds agent 0xabc's ops
     * 0..2 as text characters (sent in setup); these batches of the same
     * agent name op 0 as a list / text object */
    td_cli_buf ref1 = make_batch(0xabc, 1), ref2 = make_batch(0xabc, 2);
    update_case("UPDATE op into a character (list)", DOC, 32, ref1.data, ref1.len,
                TD_CLI_E_INVALID_BATCH, 0);
    update_case("UPDATE op into a character (text)", DOC, 33, ref2.data, ref2.len,
                TD_CLI_E_INVALID_BATCH, 0);
    td_cli_buf_free(&ref1);
    td_cli_buf_free(&ref2);
    td_cli_buf deep = make_batch(0x5151, 3), deepl = make_batch(0x5152, 4);
    update_case("UPDATE 100 nested maps", DOC, 34, deep.data, deep.len, TD_CLI_E_INVALID_BATCH,
                0);
    update_case("UPDATE 100 nested lists", DOC, 35, deepl.data, deepl.len,
                TD_CLI_E_INVALID_BATCH, 0);
    td_cli_buf_free(&deep);
    td_cli_buf_free(&deepl);
    td_cli_buf big = make_batch(0x6161, MAX_BATCH + 100);
    CHECK(big.len > MAX_BATCH);
    update_case("UPDATE batch over max_batch", DOC, 36, big.data, big.len, TD_CLI_E_TOO_LARGE, 0);
    td_cli_buf_free(&big);
    /* random garbage of a few sizes */
    static char garbage_names[6][40];
    for (int i = 0; i < 6; i++) {
        size_t n = (size_t)(8 << (2 * i));
        uint8_t *g = malloc(n);
        CHECK(g != NULL);
        for (size_t k = 0; k < n; k++)
            g[k] = (uint8_t)it_rand();
        snprintf(garbage_names[i], sizeof garbage_names[i], "UPDATE %zu random bytes", n);
        update_case(garbage_names[i], DOC, 40 + (uint64_t)i, g, n, TD_CLI_E_INVALID_BATCH, 0);
        free(g);
    }

    /* PRESENCE */
    raw_case("PRESENCE empty", TD_CLI_E_BAD_MESSAGE, "\x05", 1);
    raw_case("PRESENCE state past end", TD_CLI_E_BAD_MESSAGE, "\x05\x03\x62\x61\x64\x05\x78", 7);
    raw_case("PRESENCE missing state", TD_CLI_E_BAD_MESSAGE, "\x05\x03\x62\x61\x64", 5);
    raw_case("PRESENCE not subscribed", TD_CLI_E_NOT_SUBSCRIBED, "\x05\x01\x7a\x01\x78", 5);
    raw_case("PRESENCE bad doc id", TD_CLI_E_BAD_DOC_ID, "\x05\x00\x01\x78", 4);
    {
        char *st = malloc(5000);
        CHECK(st != NULL);
        memset(st, 'p', 5000);
        c = add("PRESENCE state over max_presence", TD_CLI_E_TOO_LARGE, 0);
        td_cli_put_u8(&c->msg, TD_CLI_PRESENCE), put_doc(&c->msg, DOC);
        td_cli_put_bytes(&c->msg, st, 5000);
        free(st);
    }
    td_cli_buf_free(&good);
}

/* ---- running it ---------------------------------------------------------- */

typedef struct fence {
    td_cli_doc *doc;
    uint64_t syncs;
} fence;

static int fence_passed(void *p)
{
    fence *f = p;
    return td_cli_doc_syncs(f->doc) > f->syncs ||
           td_cli_conn_state(td_cli_doc_conn(f->doc)) == TD_CLI_CLOSED;
}

static int is_closed(void *p)
{
    return td_cli_conn_state((td_cli_conn *)p) == TD_CLI_CLOSED;
}

static int is_open(void *p)
{
    return td_cli_conn_state((td_cli_conn *)p) >= TD_CLI_OPEN;
}

static int got_error(void *p)
{
    return td_cli_error_count((td_cli_conn *)p) > 0;
}

static int code_ok(const bcase *c, uint64_t code)
{
    return code == c->code || (c->alt_code && code == c->alt_code);
}

static int failures;

static void report(const bcase *c, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report(const bcase *c, int ok, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("%-4s %-42s %s\n", ok ? "ok" : "FAIL", c->name, buf);
    failures += !ok;
}

static void run_open_case(td_cli_conn *conn, td_cli_doc *fence_doc, const bcase *c)
{
    uint64_t errs0 = td_cli_error_count(conn);
    uint64_t counts0[TD_CLI_NCODES];
    memcpy(counts0, td_cli_conn_stats(conn)->errors, sizeof counts0);
    CHECK(td_cli_send_raw(conn, c->msg.data ? c->msg.data : (const uint8_t *)"", c->msg.len,
                          c->text) == 0);
    fence f = {fence_doc, td_cli_doc_syncs(fence_doc)};
    CHECK(td_cli_resubscribe(fence_doc) == 0);
    int passed = td_cli_wait(it_ctx(), fence_passed, &f, 10000);
    if (td_cli_conn_state(conn) == TD_CLI_CLOSED) {
        report(c, 0, "connection closed (%d)", td_cli_close_code(conn));
        return;
    }
    uint64_t n = td_cli_error_count(conn) - errs0;
    td_cli_error e;
    td_cli_last_error(conn, &e);
    if (!passed) {
        report(c, 0, "no SYNC after it (server stuck?)");
        return;
    }
    int ok = n == 1 && code_ok(c, e.code) && (!c->batch_id || e.batch_id == c->batch_id);
    report(c, ok, "-> %llu ERROR(s), last %llu %s (batch %llu)", (unsigned long long)n,
           (unsigned long long)e.code, e.msg, (unsigned long long)e.batch_id);
}

static void run_own_conn_case(td_cli_server *s, const bcase *c)
{
    td_cli_conn_opts o = {0};
    o.no_hello = c->pre_hello;
    td_cli_conn *conn = td_cli_connect(it_ctx(), s->url, &o);
    CHECK(conn != NULL);
    if (c->pre_hello)
        CHECK(td_cli_wait(it_ctx(), is_open, conn, 10000));
    else
        CHECK(it_wait_ready(conn, 10000));
    CHECK(td_cli_send_raw(conn, c->msg.data, c->msg.len, c->text) == 0);
    if (c->close_code) {
        int closed = td_cli_wait(it_ctx(), is_closed, conn, 10000);
        td_cli_error e;
        td_cli_last_error(conn, &e);
        int ok = closed && td_cli_close_code(conn) == c->close_code &&
                 (!c->code || code_ok(c, e.code));
        report(c, ok, "-> close %d, ERROR %llu", closed ? td_cli_close_code(conn) : 0,
               (unsigned long long)e.code);
    } else {
        int got = td_cli_wait(it_ctx(), got_error, conn, 5000);
        td_cli_wait(it_ctx(), NULL, NULL, 50);
        td_cli_error e;
        td_cli_last_error(conn, &e);
        int ok = got && td_cli_error_count(conn) == 1 && code_ok(c, e.code) &&
                 td_cli_conn_state(conn) != TD_CLI_CLOSED;
        report(c, ok, "-> %llu ERROR(s), last %llu %s", (unsigned long long)td_cli_error_count(conn),
               (unsigned long long)e.code, e.msg);
    }
    td_cli_conn_free(conn);
}

int main(int argc, char **argv)
{
    it_init(argc, argv, "integration_badinput");
    char mf[32], mb[32];
    snprintf(mf, sizeof mf, "%d", MAX_FRAME);
    snprintf(mb, sizeof mb, "%d", MAX_BATCH);
    const char *extra[] = {"--max-frame", mf, "--max-batch", mb, NULL};
    td_cli_server *s = it_server(extra);
    td_cli_ctx *ctx = it_ctx();

    /* setup: content in both documents, agent 0xabc's ops 0..2 as text */
    td_cli_conn *setup = td_cli_connect(ctx, s->url, NULL);
    td_cli_doc *sd = td_cli_subscribe(setup, DOC, NULL);
    td_cli_doc *so = td_cli_subscribe(setup, OTHER, NULL);
    CHECK(it_wait_ready(setup, 10000));
    it_random_edits(td_cli_doc_crdt(sd), 30);
    it_random_edits(td_cli_doc_crdt(so), 30);
    CHECK(td_cli_commit(sd, NULL) == 0 && td_cli_commit(so, NULL) == 0);
    td_cli_buf chars = make_batch(0xabc, 0);
    CHECK(td_crdt_apply(td_cli_doc_crdt(sd), chars.data, chars.len, NULL) == TD_CRDT_OK);
    CHECK(td_cli_send_batch(sd, chars.data, chars.len, NULL) == 0);
    td_cli_buf_free(&chars);
    CHECK(it_wait_converged(&sd, 1, 10000) && it_wait_converged(&so, 1, 10000));
    char *before_doc = NULL, *before_other = NULL;
    CHECK(it_get_doc(s, DOC, NULL, &before_doc) == 200);
    CHECK(it_get_doc(s, OTHER, NULL, &before_other) == 200);

    /* an observer subscribed to both documents */
    td_cli_conn *obs = td_cli_connect(ctx, s->url, NULL);
    td_cli_doc *od[2] = {td_cli_subscribe(obs, DOC, NULL), td_cli_subscribe(obs, OTHER, NULL)};
    CHECK(it_wait_ready(obs, 10000) && it_wait_docs_synced(od, 2, 10000));
    uint64_t obs_msgs = td_cli_conn_stats(obs)->msgs_recv;

    build_corpus();
    printf("%d malformed frames\n", ncases);
    CHECK(ncases >= 60);

    td_cli_conn *bad = td_cli_connect(ctx, s->url, NULL);
    td_cli_doc *bd = td_cli_subscribe(bad, DOC, NULL);
    CHECK(it_wait_ready(bad, 10000) && it_wait_docs_synced(&bd, 1, 10000));
    for (int i = 0; i < ncases; i++) {
        const bcase *c = &cases[i];
        if (c->pre_hello || c->close_code) {
            run_own_conn_case(s, c);
            continue;
        }
        if (td_cli_conn_state(bad) == TD_CLI_CLOSED) {
            /* an earlier case closed it (already reported): go on */
            CHECK(td_cli_reconnect(bad) == 0 && it_wait_ready(bad, 10000));
            CHECK(it_wait_docs_synced(&bd, 1, 10000));
        }
        run_open_case(bad, bd, c);
    }

    /* the server is up, nothing changed, the observer saw nothing */
    char *body = NULL;
    CHECK(td_cli_http_get("127.0.0.1", s->port, "/healthz", NULL, &body, NULL) == 200);
    free(body);
    char *after_doc = NULL, *after_other = NULL;
    CHECK(it_get_doc(s, DOC, NULL, &after_doc) == 200);
    CHECK(it_get_doc(s, OTHER, NULL, &after_other) == 200);
    CHECK_MSG(it_json_equal(before_doc, after_doc), "document %s changed:\n%s\n%s", DOC, before_doc,
           after_doc);
    CHECK(it_json_equal(before_other, after_other));
    td_cli_wait(ctx, NULL, NULL, 100);
    CHECK_MSG(td_cli_conn_stats(obs)->msgs_recv == obs_msgs,
           "the observer received %llu messages", (unsigned long long)(td_cli_conn_stats(obs)->msgs_recv - obs_msgs));
    CHECK(td_cli_conn_state(obs) == TD_CLI_READY);
    /* and it still works */
    it_random_edits(td_cli_doc_crdt(sd), 5);
    CHECK(td_cli_commit(sd, NULL) == 0);
    td_cli_doc *pair[2] = {sd, od[0]};
    CHECK(it_wait_converged(pair, 2, 10000));
    printf("server up, documents unchanged, observer saw nothing; %d of %d cases failed\n",
           failures, ncases);
    free(before_doc);
    free(before_other);
    free(after_doc);
    free(after_other);
    for (int i = 0; i < ncases; i++)
        td_cli_buf_free(&cases[i].msg);
    CHECK(failures == 0);
    it_pass();
}
