/*
 * test_srv_proto.c -- the wire codec (server/srv_proto.c) and tokens
 * (server/srv_auth.c) without a network.
 *
 * Round trips of every message type through encode and decode; a corpus of
 * malformed messages, each of which must be rejected with the right code
 * (and never read outside its buffer: the ASan build checks that, since each
 * input is copied into an exactly sized allocation); every truncation of
 * every valid message is rejected; tokens mint, verify, expire, and reject
 * forgeries and bit flips; glob patterns match as documented.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "tandem_srv.h"
#include "td_check.h"

static td_srv_code decode_copy(const uint8_t *p, size_t len, td_srv_msg *m, uint8_t **keep)
{
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, p, len);
    td_srv_code rc = td_srv_msg_decode(copy, len, m, NULL);
    *keep = copy;
    return rc;
}

static td_srv_bytes B(const char *s)
{
    td_srv_bytes b = {(const uint8_t *)s, strlen(s)};
    return b;
}

static int bytes_eq(td_srv_bytes a, td_srv_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Encodes m, decodes it back, compares, and checks every strict prefix is
 * rejected. */
static void roundtrip(const td_srv_msg *m)
{
    td_srv_wbuf w;
    td_srv_msg d;
    uint8_t *keep;
    td_srv_wbuf_init(&w, 16);
    CHECK(td_srv_msg_encode(m, &w) == 0);
    CHECK(decode_copy(td_srv_wbuf_msg(&w), w.len, &d, &keep) == TD_SRV_E_OK);
    CHECK(d.type == m->type);
    CHECK(bytes_eq(d.doc, m->doc));
    CHECK(d.version == m->version && d.agent == m->agent && d.batch_id == m->batch_id);
    CHECK(bytes_eq(d.token, m->token) && bytes_eq(d.vv, m->vv) && bytes_eq(d.batch, m->batch));
    CHECK(bytes_eq(d.state, m->state) && bytes_eq(d.user, m->user));
    CHECK(bytes_eq(d.message, m->message) && d.code == m->code && d.session == m->session);
    CHECK(d.rights == m->rights && d.expires == m->expires && d.max_frame == m->max_frame &&
          d.max_batch == m->max_batch && d.max_presence == m->max_presence &&
          d.presence_interval_ms == m->presence_interval_ms &&
          d.presence_ttl_ms == m->presence_ttl_ms);
    CHECK(d.count == m->count && bytes_eq(d.items, m->items));
    free(keep);
    for (size_t n = 0; n < w.len; n++) {
        CHECK(decode_copy(td_srv_wbuf_msg(&w), n, &d, &keep) != TD_SRV_E_OK);
        free(keep);
    }
    /* One trailing byte is an error too. */
    td_srv_put_u8(&w, 0);
    CHECK(decode_copy(td_srv_wbuf_msg(&w), w.len, &d, &keep) == TD_SRV_E_BAD_MESSAGE);
    free(keep);
    td_srv_wbuf_free(&w);
}

static void test_roundtrips(void)
{
    td_srv_msg m;
    static const uint8_t bin[] = {0, 1, 2, 0xff, 0x80};
    td_srv_bytes vv = {bin, sizeof bin};
    uint64_t big[] = {0, 1, 127, 128, 300, 16383, 16384, UINT64_MAX / 3, UINT64_MAX};

    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        memset(&m, 0, sizeof m);
        m.type = TD_SRV_MSG_HELLO;
        m.version = 1;
        m.token = B(i % 2 ? "" : "abc-DEF_123");
        m.agent = big[i];
        roundtrip(&m);

        memset(&m, 0, sizeof m);
        m.type = TD_SRV_MSG_UPDATE;
        m.doc = B("notes/été");
        m.batch_id = big[i] ? big[i] : 1;
        m.batch = vv;
        roundtrip(&m);

        memset(&m, 0, sizeof m);
        m.type = TD_SRV_MSG_ERROR;
        m.code = big[i];
        m.doc = B(i % 2 ? "" : "d");
        m.batch_id = big[i];
        m.message = B("something went wrong");
        roundtrip(&m);
    }
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_SUBSCRIBE;
    m.doc = B("x");
    roundtrip(&m);
    m.vv = vv;
    roundtrip(&m);
    m.type = TD_SRV_MSG_UNSUBSCRIBE;
    m.vv.len = 0;
    m.vv.ptr = NULL;
    roundtrip(&m);
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_PRESENCE;
    m.doc = B("x");
    roundtrip(&m); /* heartbeat */
    m.state = B("{\"cursor\":5}");
    roundtrip(&m);

    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_WELCOME;
    m.version = 1;
    m.session = 7;
    m.user = B("alice");
    m.rights = 7;
    m.expires = 1900000000;
    m.max_frame = 8 << 20;
    m.max_batch = 4 << 20;
    m.max_presence = 4096;
    m.presence_interval_ms = 100;
    m.presence_ttl_ms = 30000;
    roundtrip(&m);

    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_SYNC;
    m.doc = B("doc");
    m.vv = vv;
    roundtrip(&m);
    m.batch = vv;
    roundtrip(&m);
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_ACK;
    m.doc = B("doc");
    m.batch_id = 99;
    roundtrip(&m);
    m.type = TD_SRV_MSG_LEAVE;
    m.batch_id = 0;
    m.session = 3;
    roundtrip(&m);

    /* Lists, and walking them. */
    td_srv_wbuf items;
    td_srv_wbuf_init(&items, 0);
    td_srv_item_put_batch(&items, bin, 3);
    td_srv_item_put_batch(&items, bin, 5);
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_REMOTE;
    m.doc = B("doc");
    m.count = 2;
    m.items.ptr = td_srv_wbuf_msg(&items);
    m.items.len = items.len;
    roundtrip(&m);
    {
        size_t pos = 0;
        td_srv_item it;
        CHECK(td_srv_items_next(&m, &pos, &it) && it.batch.len == 3);
        CHECK(td_srv_items_next(&m, &pos, &it) && it.batch.len == 5);
        CHECK(!td_srv_items_next(&m, &pos, &it));
    }
    m.count = 3; /* more entries announced than present */
    {
        td_srv_wbuf w;
        td_srv_msg d;
        uint8_t *keep;
        td_srv_wbuf_init(&w, 0);
        td_srv_msg_encode(&m, &w);
        CHECK(decode_copy(td_srv_wbuf_msg(&w), w.len, &d, &keep) == TD_SRV_E_BAD_MESSAGE);
        free(keep);
        td_srv_wbuf_free(&w);
    }
    td_srv_wbuf_free(&items);

    td_srv_wbuf_init(&items, 0);
    td_srv_item_put_peer(&items, 4, 1234, "bob", 3, (const uint8_t *)"s1", 2);
    td_srv_item_put_peer(&items, 5, 99, "", 0, (const uint8_t *)"state-2", 7);
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_PEERS;
    m.doc = B("doc");
    m.count = 2;
    m.items.ptr = td_srv_wbuf_msg(&items);
    m.items.len = items.len;
    roundtrip(&m);
    {
        size_t pos = 0;
        td_srv_item it;
        CHECK(td_srv_items_next(&m, &pos, &it) && it.session == 4 && it.agent == 1234 &&
              it.user.len == 3 && it.state.len == 2);
        CHECK(td_srv_items_next(&m, &pos, &it) && it.session == 5 && it.state.len == 7);
        CHECK(!td_srv_items_next(&m, &pos, &it));
    }
    td_srv_wbuf_free(&items);
}

/* ---- malformed corpus ------------------------------------------------------ */

typedef struct bad {
    const char *name;
    uint8_t bytes[40];
    size_t len;
    td_srv_code want;
} bad;

static const bad corpus[] = {
    {"empty", {0}, 0, TD_SRV_E_BAD_MESSAGE},
    {"unknown type 0x00", {0x00}, 1, TD_SRV_E_UNKNOWN_TYPE},
    {"unknown type 0x06", {0x06, 0x00}, 2, TD_SRV_E_UNKNOWN_TYPE},
    {"unknown type 0x7f", {0x7f}, 1, TD_SRV_E_UNKNOWN_TYPE},
    {"unknown type 0x80", {0x80}, 1, TD_SRV_E_UNKNOWN_TYPE},
    {"unknown type 0xff", {0xff, 1, 2, 3}, 4, TD_SRV_E_UNKNOWN_TYPE},
    {"hello: no fields", {0x01}, 1, TD_SRV_E_BAD_MESSAGE},
    {"hello: truncated varint", {0x01, 0x80}, 2, TD_SRV_E_BAD_MESSAGE},
    {"hello: no token", {0x01, 0x01}, 2, TD_SRV_E_BAD_MESSAGE},
    {"hello: token past end", {0x01, 0x01, 0x05, 'a', 'b'}, 5, TD_SRV_E_BAD_MESSAGE},
    {"hello: no agent", {0x01, 0x01, 0x00}, 3, TD_SRV_E_BAD_MESSAGE},
    {"hello: agent truncated", {0x01, 0x01, 0x00, 0xff, 0xff}, 5, TD_SRV_E_BAD_MESSAGE},
    {"hello: non-minimal varint", {0x01, 0x81, 0x00, 0x00, 0x01}, 5, TD_SRV_E_BAD_MESSAGE},
    {"hello: 11-byte varint", {0x01, 0x01, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 14, TD_SRV_E_BAD_MESSAGE},
    {"hello: varint > 2^64", {0x01, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, 13, TD_SRV_E_BAD_MESSAGE},
    {"hello: token not utf-8", {0x01, 0x01, 0x02, 0xc3, 0x28, 0x00}, 6, TD_SRV_E_BAD_MESSAGE},
    {"hello: trailing byte", {0x01, 0x01, 0x00, 0x00, 0x00}, 5, TD_SRV_E_BAD_MESSAGE},
    {"hello: huge token length", {0x01, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f}, 7, TD_SRV_E_BAD_MESSAGE},
    {"subscribe: no doc", {0x02}, 1, TD_SRV_E_BAD_MESSAGE},
    {"subscribe: empty doc", {0x02, 0x00, 0x00}, 3, TD_SRV_E_BAD_DOC_ID},
    {"subscribe: doc with NUL", {0x02, 0x02, 'a', 0x00, 0x00}, 5, TD_SRV_E_BAD_DOC_ID},
    {"subscribe: doc with newline", {0x02, 0x02, 'a', '\n', 0x00}, 5, TD_SRV_E_BAD_DOC_ID},
    {"subscribe: doc with DEL", {0x02, 0x02, 'a', 0x7f, 0x00}, 5, TD_SRV_E_BAD_DOC_ID},
    {"subscribe: doc bad utf-8", {0x02, 0x02, 0xff, 'a', 0x00}, 5, TD_SRV_E_BAD_DOC_ID},
    {"subscribe: doc surrogate", {0x02, 0x03, 0xed, 0xa0, 0x80, 0x00}, 6, TD_SRV_E_BAD_DOC_ID},
    {"subscribe: doc overlong", {0x02, 0x02, 0xc0, 0xaf, 0x00}, 5, TD_SRV_E_BAD_DOC_ID},
    {"subscribe: doc past end", {0x02, 0x09, 'a', 'b'}, 4, TD_SRV_E_BAD_MESSAGE},
    {"subscribe: no vv", {0x02, 0x01, 'a'}, 3, TD_SRV_E_BAD_MESSAGE},
    {"subscribe: vv past end", {0x02, 0x01, 'a', 0x03, 0x01}, 5, TD_SRV_E_BAD_MESSAGE},
    {"subscribe: trailing", {0x02, 0x01, 'a', 0x00, 0x00}, 5, TD_SRV_E_BAD_MESSAGE},
    {"unsubscribe: empty", {0x03}, 1, TD_SRV_E_BAD_MESSAGE},
    {"unsubscribe: trailing", {0x03, 0x01, 'a', 0x01}, 4, TD_SRV_E_BAD_MESSAGE},
    {"update: no batch id", {0x04, 0x01, 'a'}, 3, TD_SRV_E_BAD_MESSAGE},
    {"update: batch id 0", {0x04, 0x01, 'a', 0x00, 0x01, 0x01}, 6, TD_SRV_E_BAD_MESSAGE},
    {"update: empty batch", {0x04, 0x01, 'a', 0x01, 0x00}, 5, TD_SRV_E_BAD_MESSAGE},
    {"update: batch past end", {0x04, 0x01, 'a', 0x01, 0x05, 1, 2}, 7, TD_SRV_E_BAD_MESSAGE},
    {"update: batch len truncated", {0x04, 0x01, 'a', 0x01, 0x85}, 5, TD_SRV_E_BAD_MESSAGE},
    {"update: bad doc", {0x04, 0x01, 0x01, 0x01, 0x01, 0x01}, 6, TD_SRV_E_BAD_DOC_ID},
    {"presence: no state", {0x05, 0x01, 'a'}, 3, TD_SRV_E_BAD_MESSAGE},
    {"presence: state past end", {0x05, 0x01, 'a', 0x02, 'x'}, 5, TD_SRV_E_BAD_MESSAGE},
    {"sync: no vv", {0x82, 0x01, 'a', 0x00}, 4, TD_SRV_E_BAD_MESSAGE},
    {"ack: id 0", {0x83, 0x01, 'a', 0x00}, 4, TD_SRV_E_BAD_MESSAGE},
    {"remote: count 0", {0x84, 0x01, 'a', 0x00}, 4, TD_SRV_E_BAD_MESSAGE},
    {"remote: empty batch", {0x84, 0x01, 'a', 0x01, 0x00}, 5, TD_SRV_E_BAD_MESSAGE},
    {"remote: count > entries", {0x84, 0x01, 'a', 0x02, 0x01, 0x07}, 6, TD_SRV_E_BAD_MESSAGE},
    {"peers: session 0", {0x85, 0x01, 'a', 0x01, 0x00, 0x01, 0x00, 0x01, 'x'}, 9, TD_SRV_E_BAD_MESSAGE},
    {"peers: empty state", {0x85, 0x01, 'a', 0x01, 0x01, 0x01, 0x00, 0x00}, 8, TD_SRV_E_BAD_MESSAGE},
    {"peers: user not utf-8", {0x85, 0x01, 'a', 0x01, 0x01, 0x01, 0x01, 0xfe, 0x01, 'x'}, 10, TD_SRV_E_BAD_MESSAGE},
    {"leave: session 0", {0x86, 0x01, 'a', 0x00}, 4, TD_SRV_E_BAD_MESSAGE},
    {"error: message not utf-8", {0x87, 0x01, 0x00, 0x00, 0x01, 0xc3}, 6, TD_SRV_E_BAD_MESSAGE},
    {"welcome: truncated", {0x81, 0x01, 0x01, 0x00, 0x07, 0x00}, 6, TD_SRV_E_BAD_MESSAGE},
};

static void test_corpus(void)
{
    for (size_t i = 0; i < sizeof corpus / sizeof corpus[0]; i++) {
        td_srv_msg m;
        uint8_t *keep;
        td_srv_code rc = decode_copy(corpus[i].bytes, corpus[i].len, &m, &keep);
        if (rc != corpus[i].want) {
            fprintf(stderr, "corpus '%s': got %s, want %s\n", corpus[i].name,
                    td_srv_code_name(rc), td_srv_code_name(corpus[i].want));
            td_check_failures++;
        }
        free(keep);
    }
    /* A doc id of 255 bytes is fine, 256 is not. */
    uint8_t big[300];
    big[0] = 0x03;
    big[1] = 0xff;
    big[2] = 0x01;
    memset(big + 3, 'd', 255);
    td_srv_msg m;
    uint8_t *keep;
    CHECK(decode_copy(big, 3 + 255, &m, &keep) == TD_SRV_E_OK && m.doc.len == 255);
    free(keep);
    big[1] = 0x80;
    big[2] = 0x02;
    memset(big + 3, 'd', 256);
    CHECK(decode_copy(big, 3 + 256, &m, &keep) == TD_SRV_E_BAD_DOC_ID);
    free(keep);
    /* The PROTOCOL.md example bytes decode as documented. */
    static const uint8_t hello[] = {0x01, 0x01, 0x00, 0xac, 0x02};
    CHECK(decode_copy(hello, sizeof hello, &m, &keep) == TD_SRV_E_OK && m.agent == 300);
    free(keep);
    static const uint8_t welcome[] = {0x81, 0x01, 0x07, 0x00, 0x07, 0x00, 0x80, 0x80, 0x80, 0x04,
                                      0x80, 0x80, 0x80, 0x02, 0x80, 0x20, 0x64, 0xb0, 0xea, 0x01};
    CHECK(decode_copy(welcome, sizeof welcome, &m, &keep) == TD_SRV_E_OK && m.session == 7 &&
          m.max_frame == 8388608 && m.max_batch == 4194304 && m.max_presence == 4096 &&
          m.presence_interval_ms == 100 && m.presence_ttl_ms == 30000);
    free(keep);
}

/* ---- tokens -------------------------------------------------------------- */

static void test_tokens(void)
{
    uint8_t pk[32], sk[64], pk2[32], sk2[64];
    td_srv_token t, out;
    char *tok = NULL;
    uint64_t now = (uint64_t)time(NULL);
    crypto_sign_keypair(pk, sk);
    crypto_sign_keypair(pk2, sk2);
    memset(&t, 0, sizeof t);
    t.rights = TD_SRV_RIGHT_READ | TD_SRV_RIGHT_PRESENCE;
    t.expires = now + 60;
    strcpy(t.user, "alice");
    t.user_len = 5;
    strcpy(t.pattern, "team/*");
    t.pattern_len = 6;
    CHECK(td_srv_token_mint(&t, sk, &tok) == 0 && tok);
    size_t len = strlen(tok);
    CHECK(td_srv_token_verify(tok, len, pk, now, &out) == TD_SRV_E_OK);
    CHECK(out.rights == t.rights && out.expires == t.expires && strcmp(out.user, "alice") == 0 &&
          strcmp(out.pattern, "team/*") == 0);
    CHECK(strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == len);
    /* Another key: forged. */
    CHECK(td_srv_token_verify(tok, len, pk2, now, &out) == TD_SRV_E_TOKEN_INVALID);
    /* Expired. */
    CHECK(td_srv_token_verify(tok, len, pk, now + 60, &out) == TD_SRV_E_TOKEN_EXPIRED);
    /* Every single-character change is rejected (or is a base64 alias of
     * the same bytes, which only the last character can be). */
    for (size_t i = 0; i < len; i++) {
        char saved = tok[i];
        tok[i] = saved == 'A' ? 'B' : 'A';
        td_srv_code rc = td_srv_token_verify(tok, len, pk, now, &out);
        CHECK(rc == TD_SRV_E_TOKEN_INVALID || i == len - 1);
        tok[i] = saved;
    }
    /* Truncations and garbage. */
    for (size_t n = 0; n < len; n += 7)
        CHECK(td_srv_token_verify(tok, n, pk, now, &out) == TD_SRV_E_TOKEN_INVALID);
    CHECK(td_srv_token_verify("!!!!", 4, pk, now, &out) == TD_SRV_E_TOKEN_INVALID);
    CHECK(td_srv_token_verify("", 0, pk, now, &out) == TD_SRV_E_TOKEN_INVALID);
    free(tok);
    /* Bad fields are refused at minting. */
    t.user_len = 0;
    CHECK(td_srv_token_mint(&t, sk, &tok) == -1);
}

static void test_patterns(void)
{
#define M(p, d) td_srv_pattern_match(p, strlen(p), d, strlen(d))
    CHECK(M("*", "anything/at/all"));
    CHECK(M("team/*", "team/x"));
    CHECK(M("team/*", "team/"));
    CHECK(!M("team/*", "team"));
    CHECK(!M("team/*", "other/x"));
    CHECK(M("doc", "doc"));
    CHECK(!M("doc", "doc2"));
    CHECK(!M("doc", "do"));
    CHECK(M("a*b*c", "aXXbYYc"));
    CHECK(!M("a*b*c", "aXXbYY"));
    CHECK(M("*.md", "notes/x.md"));
    CHECK(M("**", ""));
    CHECK(!M("a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
#undef M
}

int main(void)
{
    td_check_keep_going = 1;
    if (sodium_init() < 0)
        return 1;
    test_roundtrips();
    test_corpus();
    test_tokens();
    test_patterns();
    return td_check_status("srv_proto");
}
