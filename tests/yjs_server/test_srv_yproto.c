/*
 * test_srv_yproto.c -- the y-protocols codec (server/srv_yproto.c) and the
 * awareness bookkeeping (server/srv_yaware.c) without a network.
 *
 * Round trips of each message kind; a corpus of hostile frames (truncated,
 * oversized lengths, bad and overlong varints, unknown types and sub-types,
 * trailing bytes, bad UTF-8, bad JSON states), each refused with its code;
 * every truncation of every valid message refused. Inputs are copied into
 * exactly sized allocations so that the ASan build catches any read past
 * the end.
 */
#include <stdlib.h>
#include <string.h>

#include "srv_presence.h"
#include "srv_service.h"
#include "srv_yaware.h"
#include "srv_yproto.h"
#include "td_check.h"

static td_srv_code dec(const uint8_t *p, size_t len, int hocus, td_srv_ymsg *m)
{
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, p, len);
    td_srv_code rc = hocus ? td_srv_hpmsg_decode(copy, len, m, NULL)
                           : td_srv_ymsg_decode(copy, len, m, NULL);
    free(copy);
    return rc;
}

static void test_roundtrips(void)
{
    static const uint8_t sv[] = {1, 5, 3};
    td_srv_wbuf w;
    td_srv_ymsg m;
    for (int step = 0; step < 3; step++) {
        td_srv_wbuf_init(&w, 0);
        td_srv_y_put_sync(&w, (td_srv_y_sync)step, sv, sizeof sv);
        uint8_t *copy = malloc(w.len);
        memcpy(copy, td_srv_wbuf_msg(&w), w.len);
        CHECK(td_srv_ymsg_decode(copy, w.len, &m, NULL) == TD_SRV_E_OK);
        CHECK(m.type == TD_SRV_Y_SYNC && m.sub == (uint64_t)step && m.len == sizeof sv &&
              memcmp(m.data, sv, sizeof sv) == 0);
        /* Every truncation is refused. */
        for (size_t n = 0; n < w.len; n++)
            CHECK_MSG(dec(td_srv_wbuf_msg(&w), n, 0, &m) == TD_SRV_E_BAD_MESSAGE,
                      "truncation to %zu accepted", n);
        free(copy);
        td_srv_wbuf_free(&w);
    }
    /* Awareness with two entries. */
    td_srv_wbuf e;
    td_srv_wbuf_init(&e, 0);
    td_srv_yaw_put(&e, 7, 1, "{\"a\":1}", 7);
    td_srv_yaw_put(&e, 300000, 9, "null", 4);
    td_srv_wbuf_init(&w, 0);
    td_srv_y_put_awareness(&w, 2, td_srv_wbuf_msg(&e), e.len);
    REQUIRE(td_srv_ymsg_decode(td_srv_wbuf_msg(&w), w.len, &m, NULL) == TD_SRV_E_OK);
    CHECK(m.type == TD_SRV_Y_AWARENESS);
    size_t count = 0, pos = 0;
    CHECK(td_srv_yaw_check(m.data, m.len, 8, 100, &count, NULL) == TD_SRV_E_OK && count == 2);
    td_srv_yaw y;
    CHECK(td_srv_yaw_next(m.data, m.len, &pos, &y) && y.client == 7 && y.clock == 1 &&
          !y.is_null);
    CHECK(td_srv_yaw_next(m.data, m.len, &pos, &y) && y.client == 300000 && y.is_null);
    CHECK(!td_srv_yaw_next(m.data, m.len, &pos, &y));
    CHECK(td_srv_yaw_check(m.data, m.len, 1, 100, &count, NULL) == TD_SRV_E_LIMIT);
    CHECK(td_srv_yaw_check(m.data, m.len, 8, 5, &count, NULL) == TD_SRV_E_TOO_LARGE);
    for (size_t n = 0; n < w.len; n++)
        CHECK(dec(td_srv_wbuf_msg(&w), n, 0, &m) == TD_SRV_E_BAD_MESSAGE);
    td_srv_wbuf_free(&w);
    td_srv_wbuf_free(&e);

    /* Hocuspocus: name first; Auth with the provider's version after it. */
    static const uint8_t auth[] = {3, 'd', 'o', 'c', 2, 0, 3, 't', 'o', 'k', 5, '4', '.', '8', '.', '0'};
    CHECK(td_srv_hpmsg_decode(auth, sizeof auth, &m, NULL) == TD_SRV_E_OK);
    CHECK(m.type == TD_SRV_Y_AUTH && m.doc_len == 3 && m.len == 3 && memcmp(m.data, "tok", 3) == 0);
    CHECK(dec(auth, sizeof auth - 6, 1, &m) == TD_SRV_E_OK); /* without the version */
    for (size_t n = 0; n < sizeof auth - 6; n++)
        CHECK(dec(auth, n, 1, &m) == TD_SRV_E_BAD_MESSAGE);
    return;
out:
    td_srv_wbuf_free(&w);
    td_srv_wbuf_free(&e);
}

/* One hostile frame and the code it must get. */
typedef struct bad {
    const char *what;
    int hocus;
    td_srv_code want;
    size_t len;
    uint8_t b[24];
} bad;

static const bad corpus[] = {
    {"empty", 0, TD_SRV_E_BAD_MESSAGE, 0, {0}},
    {"unknown type 4 (y-websocket)", 0, TD_SRV_E_UNKNOWN_TYPE, 1, {4}},
    {"unknown type 99", 0, TD_SRV_E_UNKNOWN_TYPE, 1, {99}},
    {"hocuspocus type on y-websocket", 0, TD_SRV_E_UNKNOWN_TYPE, 2, {8, 1}},
    {"sync without sub-type", 0, TD_SRV_E_BAD_MESSAGE, 1, {0}},
    {"sync sub-type 3", 0, TD_SRV_E_BAD_MESSAGE, 3, {0, 3, 0}},
    {"sync sub-type huge", 0, TD_SRV_E_BAD_MESSAGE, 4, {0, 0x80, 0x01, 0}},
    {"sync without payload", 0, TD_SRV_E_BAD_MESSAGE, 2, {0, 2}},
    {"length past the end", 0, TD_SRV_E_BAD_MESSAGE, 4, {0, 2, 5, 1}},
    {"length 2^53-1", 0, TD_SRV_E_BAD_MESSAGE, 10,
     {0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f}},
    {"length past 2^53", 0, TD_SRV_E_BAD_MESSAGE, 10,
     {0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f}},
    {"varint of 11 bytes", 0, TD_SRV_E_BAD_MESSAGE, 13,
     {0, 2, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}},
    {"unterminated varint", 0, TD_SRV_E_BAD_MESSAGE, 3, {0, 2, 0x80}},
    {"non-minimal type", 0, TD_SRV_E_BAD_MESSAGE, 5, {0x80, 0x00, 2, 1, 0}},
    {"non-minimal length", 0, TD_SRV_E_BAD_MESSAGE, 5, {0, 2, 0x81, 0x00, 0}},
    {"trailing byte", 0, TD_SRV_E_BAD_MESSAGE, 5, {0, 2, 1, 0, 7}},
    {"query awareness with a body", 0, TD_SRV_E_BAD_MESSAGE, 2, {3, 0}},
    {"awareness without payload", 0, TD_SRV_E_BAD_MESSAGE, 1, {1}},
    {"auth reason not UTF-8", 0, TD_SRV_E_BAD_MESSAGE, 5, {2, 0, 2, 0xc3, 0x28}},
    {"hocus: empty", 1, TD_SRV_E_BAD_MESSAGE, 0, {0}},
    {"hocus: name past the end", 1, TD_SRV_E_BAD_MESSAGE, 3, {5, 'a', 'b'}},
    {"hocus: name not UTF-8", 1, TD_SRV_E_BAD_MESSAGE, 4, {2, 0xff, 0xfe, 0}},
    {"hocus: no type", 1, TD_SRV_E_BAD_MESSAGE, 2, {1, 'd'}},
    {"hocus: unknown type 11", 1, TD_SRV_E_UNKNOWN_TYPE, 3, {1, 'd', 11}},
    {"hocus: sync status without flag", 1, TD_SRV_E_BAD_MESSAGE, 3, {1, 'd', 8}},
    {"hocus: stateless past the end", 1, TD_SRV_E_BAD_MESSAGE, 5, {1, 'd', 5, 9, 'x'}},
    {"hocus: auth sub-type 9", 1, TD_SRV_E_BAD_MESSAGE, 6, {1, 'd', 2, 9, 1, 'x'}},
    {"hocus: auth with two trailing strings", 1, TD_SRV_E_BAD_MESSAGE, 10,
     {1, 'd', 2, 0, 1, 't', 1, 'v', 1, 'w'}},
};

static void test_corpus(void)
{
    td_srv_ymsg m;
    for (size_t i = 0; i < sizeof corpus / sizeof corpus[0]; i++) {
        const bad *c = &corpus[i];
        td_srv_code rc = dec(c->b, c->len, c->hocus, &m);
        CHECK_MSG(rc == c->want, "%s: got %d, want %d", c->what, rc, c->want);
    }
}

/* Awareness updates: the count and every entry checked. */
typedef struct bad_aw {
    const char *what;
    td_srv_code want;
    size_t len;
    uint8_t b[24];
} bad_aw;

static const bad_aw aw_corpus[] = {
    {"empty", TD_SRV_E_BAD_MESSAGE, 0, {0}},
    {"count beyond the entries", TD_SRV_E_BAD_MESSAGE, 1, {1}},
    {"count too big", TD_SRV_E_LIMIT, 1, {100}},
    {"client id past 32 bits", TD_SRV_E_BAD_MESSAGE, 10, {1, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 2, '{', '}'}},
    {"state not JSON", TD_SRV_E_BAD_MESSAGE, 6, {1, 1, 1, 2, '{', '{'}},
    {"state two values", TD_SRV_E_BAD_MESSAGE, 7, {1, 1, 1, 3, '1', ' ', '2'}},
    {"state empty", TD_SRV_E_BAD_MESSAGE, 4, {1, 1, 1, 0}},
    {"state truncated", TD_SRV_E_BAD_MESSAGE, 5, {1, 1, 1, 4, 'n'}},
    {"trailing bytes", TD_SRV_E_BAD_MESSAGE, 8, {1, 1, 1, 4, 'n', 'u', 'l', 'l'} /* +1 below */},
};

static void test_awareness_corpus(void)
{
    for (size_t i = 0; i < sizeof aw_corpus / sizeof aw_corpus[0]; i++) {
        const bad_aw *c = &aw_corpus[i];
        size_t len = c->len + (i == sizeof aw_corpus / sizeof aw_corpus[0] - 1);
        uint8_t *copy = calloc(1, len ? len : 1);
        memcpy(copy, c->b, c->len);
        size_t n;
        td_srv_code rc = td_srv_yaw_check(copy, len, 8, 4096, &n, NULL);
        CHECK_MSG(rc == c->want, "awareness %s: got %d, want %d", c->what, rc, c->want);
        free(copy);
    }
}

/* Two connections on one document, as the y-websocket front-end wires
 * them: presence carries each one's awareness state to the other, and each
 * room of srv_yaware remembers what its members were shown. */
typedef struct yp_conn {
    td_srv_client client;
    td_srv_sub sub;
    td_srv_yaware aw;
    uint64_t shown, removed; /* entries the presence callbacks produced */
    uint64_t clock;          /* the clock of the last entry shown or removed */
} yp_conn;

/* The clock of the last entry of an entries buffer. */
static uint64_t yp_last_clock(const td_srv_wbuf *w, uint64_t n)
{
    td_srv_wbuf all;
    td_srv_yaw e;
    size_t pos = 0;
    uint64_t clock = 0;
    td_srv_wbuf_init(&all, 0);
    td_srv_put_varint(&all, n);
    td_srv_put_raw(&all, td_srv_wbuf_msg(w), w->len);
    while (td_srv_yaw_next(td_srv_wbuf_msg(&all), all.len, &pos, &e))
        clock = e.clock;
    td_srv_wbuf_free(&all);
    return clock;
}

static yp_conn *yp_of(td_srv_sub *u)
{
    return (yp_conn *)(void *)((char *)u - offsetof(yp_conn, sub));
}

static void yp_peers(td_srv_sub *u, td_srv_peers *ps)
{
    yp_conn *c = yp_of(u);
    td_srv_wbuf w;
    uint64_t n = 0;
    td_srv_wbuf_init(&w, 0);
    CHECK(td_srv_yaware_peers(&c->aw, ps, &w, &n) == 0);
    c->shown += n;
    if (n)
        c->clock = yp_last_clock(&w, n);
    td_srv_wbuf_free(&w);
}

static void yp_leave(td_srv_sub *u, uint64_t peer)
{
    yp_conn *c = yp_of(u);
    td_srv_wbuf w;
    uint64_t n = 0;
    td_srv_wbuf_init(&w, 0);
    td_srv_yaware_leave(&c->aw, peer, &w, &n);
    c->removed += n;
    if (n)
        c->clock = yp_last_clock(&w, n);
    td_srv_wbuf_free(&w);
}

static const td_srv_client_ops yp_ops = {.peers = yp_peers, .leave = yp_leave};

/* Takes an awareness update of one entry and publishes the connection's
 * state to presence if it changed. Returns whether it changed. */
static int yp_take(td_srv_presence *p, yp_conn *c, uint32_t client, uint32_t clock,
                   const char *json)
{
    td_srv_wbuf e, st;
    td_srv_wbuf_init(&e, 0);
    td_srv_put_varint(&e, 1);
    td_srv_yaw_put(&e, client, clock, json, strlen(json));
    CHECK(td_srv_yaware_take(&c->aw, td_srv_wbuf_msg(&e), e.len, &st) == 0);
    int changed = st.len > 0;
    if (changed)
        CHECK(td_srv_pres_set(p, &c->sub.pres, td_srv_wbuf_msg(&st), st.len) == 0);
    td_srv_pres_flush(p);
    td_srv_wbuf_free(&st);
    td_srv_wbuf_free(&e);
    return changed;
}

/* A connection keeps only its own client ids (one another member showed is
 * theirs), older clocks are stale, and a member leaving owes each other one
 * removal per entry it showed. An id whose member left is not taken by a
 * connection that was shown it (a y-websocket provider echoes every change
 * it applies), nor with a removal; a new connection takes it, shown above
 * the clock of its removal (a reconnected provider resends its old clock). */
static void test_ownership(void)
{
    td_srv_metrics m;
    td_srv_presence *p = NULL;
    td_srv_pres_room room;
    td_srv_yaw_rooms rooms;
    yp_conn *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b), *c = calloc(1, sizeof *c);
    memset(&m, 0, sizeof m);
    memset(&room, 0, sizeof room);
    memset(&rooms, 0, sizeof rooms);
    LIST_INIT(&room.members);
    REQUIRE(a && b && c);
    REQUIRE(td_srv_presence_new(&p, 0, 60000, &m) == 0);
    yp_conn *cs[2] = {a, b};
    for (uint64_t i = 0; i < 2; i++) {
        cs[i]->client.ops = &yp_ops;
        cs[i]->client.id = 77 + i;
        cs[i]->sub.client = &cs[i]->client;
        REQUIRE(td_srv_yaware_attach(&cs[i]->aw, &rooms, "doc", 3, cs[i]->client.id) == 0);
        td_srv_pres_join(p, &room, &cs[i]->sub.pres, &cs[i]->sub, &cs[i]->client);
    }
    /* b shows client 5; a is told of it. */
    CHECK(yp_take(p, b, 5, 3, "{}"));
    CHECK_MSG(a->shown == 1, "a was shown %llu entries", (unsigned long long)a->shown);
    /* a may not take client 5, which b showed, but takes its own 6. */
    CHECK(!yp_take(p, a, 5, 9, "null"));
    CHECK(yp_take(p, a, 6, 1, "{}"));
    CHECK(a->aw.nown == 1 && a->aw.own[0].client == 6);
    CHECK(b->shown == 1);
    /* An older clock of its own is stale: nothing changes. */
    CHECK(!yp_take(p, a, 6, 0, "{\"x\":1}"));
    /* b leaves: a is owed one removal, for client 5. */
    td_srv_pres_leave(p, &b->sub.pres);
    CHECK_MSG(a->removed == 1, "a got %llu removals", (unsigned long long)a->removed);
    td_srv_yaware_free(&b->aw);
    uint64_t removed_at = a->clock;
    CHECK(removed_at >= 3);
    /* a was shown client 5: its state or removal from a is an echo. */
    CHECK(!yp_take(p, a, 5, 3, "{}"));
    CHECK(!yp_take(p, a, 5, 10, "null"));
    /* A new connection takes client 5 back, at its old clock (a
     * reconnected provider), not with a removal; a is shown it above the
     * clock it saw removed. */
    c->client.ops = &yp_ops;
    c->client.id = 79;
    c->sub.client = &c->client;
    REQUIRE(td_srv_yaware_attach(&c->aw, &rooms, "doc", 3, c->client.id) == 0);
    td_srv_pres_join(p, &room, &c->sub.pres, &c->sub, &c->client);
    CHECK(!yp_take(p, c, 5, 3, "null"));
    CHECK(yp_take(p, c, 5, 3, "{}"));
    CHECK_MSG(a->clock > removed_at, "shown at %llu after the removal at %llu",
              (unsigned long long)a->clock, (unsigned long long)removed_at);
    td_srv_pres_leave(p, &c->sub.pres);
    td_srv_yaware_free(&c->aw);
    td_srv_pres_leave(p, &a->sub.pres);
    td_srv_yaware_free(&a->aw);
out:
    td_srv_presence_free(p);
    free(a);
    free(b);
    free(c);
}

int main(void)
{
    td_check_keep_going = 1;
    test_roundtrips();
    test_corpus();
    test_awareness_corpus();
    test_ownership();
    return td_check_status("srv_yproto");
}
