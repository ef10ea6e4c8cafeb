/*
 * test_crdt_events.c -- the change observer reports every visible change.
 *
 * Each replica keeps a mirror of its text, list and map that is updated ONLY
 * from observer events (reading the inserted items from the document at the
 * moment of the event). Two replicas edit concurrently and exchange batches
 * out of order; after every exchange each mirror must equal its document.
 * If an event had a wrong position, count or key, or an event were missing
 * or spurious, a mirror would diverge. The `local` flag must say whether the
 * event came from a local edit or from td_crdt_apply.
 */
#include "tandem_crdt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(x)                                                                \
    do {                                                                        \
        if (!(x)) {                                                             \
            fprintf(stderr, "%s:%d: check failed: %s (seed %llu)\n", __FILE__,  \
                    __LINE__, #x, (unsigned long long)seed);                    \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

static uint64_t seed, rs;

static uint32_t rnd(uint32_t n)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (uint32_t)(rs % n);
}

#define MAXN 20000

typedef struct replica {
    td_crdt_doc *doc;
    td_crdt_obj text, list, map;
    char text_m[MAXN];   /* ASCII only, so code points are bytes */
    size_t text_n;
    int64_t list_m[MAXN];
    size_t list_n;
    int changed_keys[8]; /* map keys k0..k7 reported changed */
    int expect_local;    /* what every event's `local` must say */
} replica;

static void on_event(void *ud, const td_crdt_event *ev)
{
    replica *r = ud;
    CHECK(ev->local == r->expect_local);
    if (ev->obj == r->text) {
        if (ev->kind == TD_CRDT_EV_INSERT) {
            char *s;
            size_t n;
            CHECK(td_crdt_text_get(r->doc, r->text, &s, &n) == TD_CRDT_OK);
            CHECK(ev->pos + ev->count <= n && r->text_n + ev->count <= MAXN);
            memmove(r->text_m + ev->pos + ev->count, r->text_m + ev->pos, r->text_n - ev->pos);
            memcpy(r->text_m + ev->pos, s + ev->pos, ev->count);
            r->text_n += ev->count;
            td_crdt_buf_free(r->doc, s);
        } else {
            CHECK(ev->kind == TD_CRDT_EV_DELETE && ev->pos + ev->count <= r->text_n);
            memmove(r->text_m + ev->pos, r->text_m + ev->pos + ev->count,
                    r->text_n - ev->pos - ev->count);
            r->text_n -= ev->count;
        }
    } else if (ev->obj == r->list) {
        if (ev->kind == TD_CRDT_EV_INSERT) {
            CHECK(r->list_n + ev->count <= MAXN);
            memmove(r->list_m + ev->pos + ev->count, r->list_m + ev->pos,
                    (r->list_n - ev->pos) * sizeof r->list_m[0]);
            for (size_t i = 0; i < ev->count; i++) {
                td_crdt_value v;
                CHECK(td_crdt_list_get(r->doc, r->list, ev->pos + i, &v) == TD_CRDT_OK);
                r->list_m[ev->pos + i] = v.u.i;
            }
            r->list_n += ev->count;
        } else {
            CHECK(ev->kind == TD_CRDT_EV_DELETE && ev->pos + ev->count <= r->list_n);
            memmove(r->list_m + ev->pos, r->list_m + ev->pos + ev->count,
                    (r->list_n - ev->pos - ev->count) * sizeof r->list_m[0]);
            r->list_n -= ev->count;
        }
    } else {
        CHECK(ev->obj == r->map && ev->kind == TD_CRDT_EV_KEY && ev->key_len == 2);
        r->changed_keys[ev->key[1] - '0'] = 1;
    }
}

static void check_mirror(replica *r)
{
    char *s;
    size_t n;
    CHECK(td_crdt_text_get(r->doc, r->text, &s, &n) == TD_CRDT_OK);
    CHECK(n == r->text_n && memcmp(s, r->text_m, n) == 0);
    td_crdt_buf_free(r->doc, s);
    CHECK(td_crdt_list_length(r->doc, r->list) == r->list_n);
    for (size_t i = 0; i < r->list_n; i++) {
        td_crdt_value v;
        CHECK(td_crdt_list_get(r->doc, r->list, i, &v) == TD_CRDT_OK && v.u.i == r->list_m[i]);
    }
}

static void edit(replica *r, int64_t tag)
{
    r->expect_local = 1;
    for (int k = 0; k < 8; k++) {
        size_t tl = td_crdt_text_length(r->doc, r->text), ll = td_crdt_list_length(r->doc, r->list);
        char key[2] = {'k', (char)('0' + rnd(8))};
        td_crdt_value v = {.type = TD_CRDT_V_INT, .u.i = tag * 100 + k};
        switch (rnd(6)) {
        case 0:
            if (tl) {
                size_t p = rnd((uint32_t)tl), n = 1 + rnd(4);
                CHECK(td_crdt_text_delete(r->doc, r->text, p, n > tl - p ? tl - p : n) == 0);
                break;
            }
            /* fall through */
        case 1: case 2:
            CHECK(td_crdt_text_insert(r->doc, r->text, rnd((uint32_t)tl + 1), "abcdef",
                                      1 + rnd(6)) == 0);
            break;
        case 3:
            CHECK(td_crdt_list_insert(r->doc, r->list, rnd((uint32_t)ll + 1), &v, 1) == 0);
            break;
        case 4:
            if (ll)
                CHECK(td_crdt_list_delete(r->doc, r->list, rnd((uint32_t)ll), 1) == 0);
            break;
        default:
            memset(r->changed_keys, 0, sizeof r->changed_keys);
            CHECK(td_crdt_map_set(r->doc, r->map, key, 2, &v) == 0);
            CHECK(r->changed_keys[key[1] - '0']);
            break;
        }
        check_mirror(r);
    }
}

static void deliver(replica *to, uint8_t *batch, size_t len)
{
    to->expect_local = 0;
    memset(to->changed_keys, 0, sizeof to->changed_keys);
    CHECK(td_crdt_apply(to->doc, batch, len, NULL) == TD_CRDT_OK);
    check_mirror(to);
}

static void setup(replica *r, uint64_t agent)
{
    memset(r, 0, sizeof *r);
    td_crdt_options o = {.agent = agent};
    CHECK(td_crdt_doc_new(&o, &r->doc) == TD_CRDT_OK);
    CHECK(td_crdt_root(r->doc, TD_CRDT_TEXT, "t", 1, &r->text) == 0);
    CHECK(td_crdt_root(r->doc, TD_CRDT_LIST, "l", 1, &r->list) == 0);
    CHECK(td_crdt_root(r->doc, TD_CRDT_MAP, "m", 1, &r->map) == 0);
    td_crdt_set_observer(r->doc, on_event, r);
}

int main(int argc, char **argv)
{
    seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 42;
    for (uint64_t s = seed; s < seed + 5; s++) {
        static replica a, b;
        rs = s * 2654435761u + 1;
        setup(&a, 1000 + s);
        setup(&b, 2000 + s);
        uint8_t *held = NULL; /* one batch from a, delivered late */
        size_t held_len = 0;
        for (int round = 0; round < 150; round++) {
            edit(&a, round);
            edit(&b, -round);
            uint8_t *x, *y;
            size_t xl, yl;
            CHECK(td_crdt_commit(a.doc, &x, &xl) == 0 && td_crdt_commit(b.doc, &y, &yl) == 0);
            if (y)
                deliver(&a, y, yl);
            if (held) { /* the held batch unblocks x if x was parked */
                deliver(&b, held, held_len);
                td_crdt_buf_free(a.doc, held);
                held = NULL;
            }
            if (x && rnd(4) == 0) {
                held = x;
                held_len = xl;
            } else if (x) {
                deliver(&b, x, xl);
                td_crdt_buf_free(a.doc, x);
            }
            td_crdt_buf_free(b.doc, y);
        }
        if (held) {
            deliver(&b, held, held_len);
            td_crdt_buf_free(a.doc, held);
        }
        char *ja, *jb;
        CHECK(td_crdt_to_json(a.doc, &ja, NULL) == 0 && td_crdt_to_json(b.doc, &jb, NULL) == 0);
        CHECK(strcmp(ja, jb) == 0);
        td_crdt_buf_free(a.doc, ja);
        td_crdt_buf_free(b.doc, jb);
        td_crdt_doc_free(a.doc);
        td_crdt_doc_free(b.doc);
    }
    printf("crdt_events: 5 seeds from %llu, every mirror matched\n", (unsigned long long)seed);
    return 0;
}
