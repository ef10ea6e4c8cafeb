/*
 * test_crdt_snapv2.c -- snapshot version 2 (docs/FORMAT.md section 5):
 * the column coder round-trips every kind of column and refuses damaged
 * blocks; the encoder writes version 2; version 1 snapshots still load and
 * re-encode to the same version 2 bytes; an unknown version is refused with
 * TD_CRDT_ERR_VERSION; every truncation and many flipped bytes of a version
 * 2 snapshot are refused cleanly or give a valid document (never a crash,
 * never a broken document).
 *
 * Run: build/<dir>/tests/crdt/test_crdt_snapv2 [seed]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt_internal.h" /* td_crdt_ent_put/get, td_crdt_snapshot_encode_v1 */
#include "td_test_util.h"

static uint64_t seed = 2;

/* A document with text history (inserts, backspaces), a list and a map. */
static td_crdt_doc *text_doc(uint64_t agent, int edits)
{
    tt_rng r;
    tt_rng_seed(&r, seed);
    td_crdt_doc *d = tt_new_doc(agent);
    td_crdt_obj t = 0, l = 0, m = 0;
    CHECK_OK(d, td_crdt_root(d, TD_CRDT_TEXT, "text", 4, &t));
    CHECK_OK(d, td_crdt_root(d, TD_CRDT_LIST, "list", 4, &l));
    CHECK_OK(d, td_crdt_root(d, TD_CRDT_MAP, "map", 3, &m));
    static const char *const words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat, ", "and ",
                                        "über ", "naïve ", "日本 "};
    for (int i = 0; i < edits; i++) {
        size_t len = td_crdt_text_length(d, t);
        if (len > 0 && tt_rng_chance(&r, 1, 4)) {
            size_t pos = (size_t)tt_rng_below(&r, len);
            size_t n = 1 + (size_t)tt_rng_below(&r, len - pos < 6 ? len - pos : 6);
            CHECK_OK(d, td_crdt_text_delete(d, t, pos, n));
        } else {
            const char *w = words[tt_rng_below(&r, sizeof words / sizeof words[0])];
            size_t pos = tt_rng_chance(&r, 3, 4) ? len : (size_t)tt_rng_below(&r, len + 1);
            CHECK_OK(d, td_crdt_text_insert(d, t, pos, w, strlen(w)));
        }
    }
    td_crdt_value v = {.type = TD_CRDT_V_INT, .u.i = 42};
    CHECK_OK(d, td_crdt_list_insert(d, l, 0, &v, 1));
    CHECK_OK(d, td_crdt_map_set(d, m, "k", 1, &v));
    return d;
}

static void roundtrip(td_crdt_doc *d, const uint8_t *p, size_t n)
{
    td_buf b;
    td_crdt_wb_init(&b, d);
    td_crdt_ent_put(&b, p, n);
    CHECK(!b.oom);
    td_rd r = {b.p, b.p + b.len, 0};
    uint8_t *out;
    size_t outn;
    const char *why = "";
    CHECK_OK(d, td_crdt_ent_get(d, &r, &out, &outn, &why));
    CHECK(outn == n && r.p == r.end && (n == 0 || memcmp(out, p, n) == 0));
    td_crdt_memfree(d, out);
    /* every truncation is refused */
    for (size_t k = 0; k < b.len; k++) {
        td_rd t = {b.p, b.p + k, 0};
        if (td_crdt_ent_get(d, &t, &out, &outn, &why) == TD_CRDT_OK) {
            td_crdt_memfree(d, out);
            CHECK(!"a truncated column decoded");
        }
    }
    /* flipped bits: refused or decoded, never past the input */
    for (size_t k = 0; k < b.len && k < 300; k++)
        for (int bit = 0; bit < 8; bit += 3) {
            b.p[k] ^= (uint8_t)(1u << bit);
            td_rd t = {b.p, b.p + b.len, 0};
            if (td_crdt_ent_get(d, &t, &out, &outn, &why) == TD_CRDT_OK) {
                CHECK(outn <= 8 * b.len);
                td_crdt_memfree(d, out);
            }
            b.p[k] ^= (uint8_t)(1u << bit);
        }
    td_crdt_wb_free(&b);
}

static void test_columns(void)
{
    tt_rng r;
    tt_rng_seed(&r, seed);
    td_crdt_doc *d = tt_new_doc(1);
    static uint8_t buf[20000];
    roundtrip(d, buf, 0);
    buf[0] = 'x';
    roundtrip(d, buf, 1);
    memset(buf, 7, 5000); /* one symbol: one bit each */
    roundtrip(d, buf, 5000);
    for (size_t i = 0; i < sizeof buf; i++) /* skewed: order 0 */
        buf[i] = (uint8_t)(tt_rng_below(&r, 4) ? tt_rng_below(&r, 8) : tt_rng_below(&r, 256));
    roundtrip(d, buf, sizeof buf);
    for (size_t i = 0; i < sizeof buf; i++) /* a byte follows its predecessor: order 1 */
        buf[i] = (uint8_t)(i ? buf[i - 1] * 7 + (uint8_t)tt_rng_below(&r, 3) : 0);
    roundtrip(d, buf, sizeof buf);
    for (size_t i = 0; i < sizeof buf; i++) /* uniform: raw */
        buf[i] = (uint8_t)tt_rng_next(&r);
    roundtrip(d, buf, sizeof buf);
    for (size_t i = 0; i < sizeof buf; i++) /* long codes: counts 1, 2, 4, ... */
        buf[i] = (uint8_t)__builtin_ctz((unsigned)(i + 1) | 0x100000u);
    roundtrip(d, buf, sizeof buf);
    td_crdt_doc_free(d);
}

static void test_v1_loads(void)
{
    td_crdt_doc *d = text_doc(0x77, 3000);
    tt_bytes v2 = tt_snap(d);
    CHECK(v2.len > 3 && memcmp(v2.p, "TS\x02", 3) == 0);
    uint8_t *v1;
    size_t v1len;
    CHECK_OK(d, td_crdt_snapshot_encode_v1(d, &v1, &v1len));
    CHECK(memcmp(v1, "TS\x01", 3) == 0);
    tt_bytes b1 = tt_bytes_copy(v1, v1len);
    td_crdt_buf_free(d, v1);
    td_crdt_doc *from1 = tt_load_doc(0x99, &b1), *from2 = tt_load_doc(0x99, &v2);
    tt_bytes again1 = tt_snap(from1), again2 = tt_snap(from2);
    CHECK(tt_bytes_eq(&again1, &v2));
    CHECK(tt_bytes_eq(&again2, &v2));
    char *j0 = tt_json(d), *j1 = tt_json(from1);
    CHECK_STR(j1, j0);
    printf("  v1 %zu bytes, v2 %zu bytes\n", b1.len, v2.len);
    /* the loaded copy keeps editing and converges with the original */
    td_crdt_obj t = 0;
    CHECK_OK(from1, td_crdt_root(from1, TD_CRDT_TEXT, "text", 4, &t));
    CHECK_OK(from1, td_crdt_text_insert(from1, t, 0, "x", 1));
    tt_sync_one_way(from1, d);
    tt_bytes sa = tt_snap(d), sb = tt_snap(from1);
    CHECK(tt_bytes_eq(&sa, &sb));
    free(j0);
    free(j1);
    tt_bytes_free(&sa);
    tt_bytes_free(&sb);
    tt_bytes_free(&again1);
    tt_bytes_free(&again2);
    tt_bytes_free(&b1);
    tt_bytes_free(&v2);
    td_crdt_doc_free(from1);
    td_crdt_doc_free(from2);
    td_crdt_doc_free(d);
}

static void test_unknown_version(void)
{
    td_crdt_doc *d = text_doc(0x77, 200);
    tt_bytes s = tt_snap(d);
    static const uint8_t versions[] = {0, 3, 0xff};
    for (size_t i = 0; i < sizeof versions; i++) {
        s.p[2] = versions[i];
        td_crdt_doc *out = NULL;
        const char *why = NULL;
        CHECK_ERR(NULL, TD_CRDT_ERR_VERSION, td_crdt_doc_load(NULL, s.p, s.len, &out, &why));
        CHECK(out == NULL && why && strstr(why, "version"));
    }
    tt_bytes_free(&s);
    td_crdt_doc_free(d);
}

static void test_v2_damage(void)
{
    td_crdt_doc *d = text_doc(0x77, 600);
    tt_bytes s = tt_snap(d);
    char why[256];
    for (size_t k = 0; k < s.len; k++) {
        tt_feed_result fr = tt_feed_load(s.p, k, why, sizeof why);
        if (fr != TT_FEED_REJECTED)
            tt_test_fail(__FILE__, __LINE__, "truncated to %zu of %zu bytes: %s", k, s.len,
                         fr == TT_FEED_ACCEPTED ? "loaded" : why);
    }
    long accepted = 0;
    for (size_t k = 3; k < s.len; k++)
        for (int bit = 0; bit < 8; bit += (k < 64 ? 1 : 5)) {
            s.p[k] ^= (uint8_t)(1u << bit);
            tt_feed_result fr = tt_feed_load(s.p, s.len, why, sizeof why);
            if (fr == TT_FEED_BROKEN)
                tt_test_fail(__FILE__, __LINE__, "byte %zu bit %d flipped: %s", k, bit, why);
            accepted += fr == TT_FEED_ACCEPTED;
            s.p[k] ^= (uint8_t)(1u << bit);
        }
    printf("  %zu bytes: every truncation refused, %ld flips gave a valid document\n", s.len,
           accepted);
    tt_bytes_free(&s);
    td_crdt_doc_free(d);
}

int main(int argc, char **argv)
{
    td_check_seed(argc, argv, &seed);
    static const td_check_case tests[] = {
        {"columns", test_columns},
        {"v1_loads", test_v1_loads},
        {"unknown_version", test_unknown_version},
        {"v2_damage", test_v2_damage},
    };
    return td_check_cases(tests, sizeof tests / sizeof tests[0], argv[0], &seed);
}
