/*
 * test_crdt_unit.c -- unit tests of the document core's public API.
 *
 * Each test builds a few small documents by hand and checks one contract of
 * tandem_crdt.h: code-point positions and UTF-8 validation in text, scalars
 * and nested objects in lists and maps, LWW maps, batches (commit/apply,
 * idempotence, the pending set and its bound), diff by version vector,
 * snapshots, the JSON view, and that concurrent typing at one spot does not
 * interleave. Failed calls must leave the document exactly as it was, which
 * is checked by comparing snapshot bytes before and after.
 */
#include "td_test_util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- helpers -------------------------------------------------------------- */

static td_crdt_value v_null(void)
{
    td_crdt_value v;
    memset(&v, 0, sizeof v);
    v.type = TD_CRDT_V_NULL;
    return v;
}

static td_crdt_value v_bool(int b)
{
    td_crdt_value v = v_null();
    v.type = b ? TD_CRDT_V_TRUE : TD_CRDT_V_FALSE;
    return v;
}

static td_crdt_value v_int(int64_t i)
{
    td_crdt_value v = v_null();
    v.type = TD_CRDT_V_INT;
    v.u.i = i;
    return v;
}

static td_crdt_value v_float(double f)
{
    td_crdt_value v = v_null();
    v.type = TD_CRDT_V_FLOAT;
    v.u.f = f;
    return v;
}

static td_crdt_value v_str(const char *s)
{
    td_crdt_value v = v_null();
    v.type = TD_CRDT_V_STR;
    v.u.str.ptr = s;
    v.u.str.len = strlen(s);
    return v;
}

static int str_is(const td_crdt_value *v, const char *s)
{
    return v->type == TD_CRDT_V_STR && v->u.str.len == strlen(s) &&
           memcmp(v->u.str.ptr, s, v->u.str.len) == 0;
}

static td_crdt_obj root(td_crdt_doc *d, td_crdt_kind k, const char *name)
{
    td_crdt_obj o = 0;
    CHECK_OK(d, td_crdt_root(d, k, name, strlen(name), &o));
    CHECK(o != 0);
    CHECK(td_crdt_obj_kind(d, o) == k);
    return o;
}

static void ins(td_crdt_doc *d, td_crdt_obj t, size_t pos, const char *s)
{
    CHECK_OK(d, td_crdt_text_insert(d, t, pos, s, strlen(s)));
}

static void text_is(td_crdt_doc *d, td_crdt_obj t, const char *want)
{
    char *got = tt_text(d, t);
    int ok = strcmp(got, want) == 0;
    if (!ok)
        fprintf(stderr, "text is \"%s\", expected \"%s\"\n", got, want);
    free(got);
    CHECK(ok);
    CHECK(td_crdt_text_length(d, t) == tt_utf8_count(want, strlen(want)));
}

static void map_set_int(td_crdt_doc *d, td_crdt_obj m, const char *key, int64_t i)
{
    td_crdt_value v = v_int(i);
    CHECK_OK(d, td_crdt_map_set(d, m, key, strlen(key), &v));
}

/* JSON with the insignificant whitespace removed, so that the checks pin the
 * content and the key order, not a pretty-printing choice. */
static char *json_compact(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(n + 1), *w = o;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            *w++ = c;
            if (c == '\\' && i + 1 < n)
                *w++ = s[++i];
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
            *w++ = c;
        } else if (c != ' ' && c != '\n' && c != '\t' && c != '\r') {
            *w++ = c;
        }
    }
    *w = 0;
    return o;
}

/* cJSON's rendering of a JSON text: keeps key order, but folds the choices
 * JSON leaves open (escaping of non-ASCII, number spelling). */
static char *json_normal(const char *s)
{
    cJSON *j = cJSON_Parse(s);
    if (!j)
        return NULL;
    char *o = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return o;
}

/* strict: byte-exact but for whitespace; else equal after json_normal. */
static void json_check(td_crdt_doc *d, const char *want, int strict)
{
    char *raw = tt_json(d);
    char *got = json_compact(raw);
    int ok = strcmp(got, want) == 0;
    if (!ok && !strict) {
        char *a = json_normal(raw), *b = json_normal(want);
        ok = a && b && strcmp(a, b) == 0;
        free(a);
        free(b);
    }
    if (!ok)
        fprintf(stderr, "json is %s\n   expected %s\n", raw, want);
    free(raw);
    free(got);
    CHECK(ok);
}

static void json_is(td_crdt_doc *d, const char *want)
{
    json_check(d, want, 0);
}

static void json_is_exactly(td_crdt_doc *d, const char *want)
{
    json_check(d, want, 1);
}

static void same_json(td_crdt_doc *a, td_crdt_doc *b)
{
    char *ja = tt_json(a), *jb = tt_json(b);
    int ok = strcmp(ja, jb) == 0;
    if (!ok)
        fprintf(stderr, "json differs:\n  %s\n  %s\n", ja, jb);
    free(ja);
    free(jb);
    CHECK(ok);
}

static void same_snapshot(td_crdt_doc *a, td_crdt_doc *b)
{
    tt_bytes sa = tt_snap(a), sb = tt_snap(b);
    int ok = tt_bytes_eq(&sa, &sb);
    if (!ok)
        fprintf(stderr, "snapshots differ: %zu vs %zu bytes\n", sa.len, sb.len);
    tt_bytes_free(&sa);
    tt_bytes_free(&sb);
    CHECK(ok);
}

static void same_state(td_crdt_doc *a, td_crdt_doc *b)
{
    same_json(a, b);
    same_snapshot(a, b);
    CHECK(td_crdt_op_count(a) == td_crdt_op_count(b));
}

/* Snapshot of d, for "a failed call changed nothing" checks. */
static void unchanged_since(td_crdt_doc *d, const tt_bytes *before)
{
    tt_bytes now = tt_snap(d);
    int ok = tt_bytes_eq(&now, before);
    tt_bytes_free(&now);
    CHECK_MSG(ok, "document changed by a failing call");
}

static void msg_nonempty(td_crdt_doc *d)
{
    const char *m = td_crdt_doc_error(d);
    CHECK(m != NULL);
    CHECK(m[0] != '\0');
}

/* ---- errors --------------------------------------------------------------- */

static void test_strerror(void)
{
    const td_crdt_err all[] = {TD_CRDT_OK, TD_CRDT_ERR_NOMEM, TD_CRDT_ERR_ARG,
                               TD_CRDT_ERR_DECODE, TD_CRDT_ERR_VERSION,
                               TD_CRDT_ERR_INVALID_OP, TD_CRDT_ERR_LIMIT};
    size_t n = sizeof all / sizeof all[0];
    CHECK_STR(td_crdt_strerror(TD_CRDT_OK), "ok");
    CHECK_STR(td_crdt_strerror(TD_CRDT_ERR_NOMEM), "nomem");
    for (size_t i = 0; i < n; i++) {
        const char *s = td_crdt_strerror(all[i]);
        CHECK(s != NULL && s[0] != '\0');
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(s, td_crdt_strerror(all[j])) != 0);
    }
    /* An unknown code still gets a printable name. */
    const char *u = td_crdt_strerror((td_crdt_err)99);
    CHECK(u != NULL && u[0] != '\0');
}

static void test_error_messages(void)
{
    td_crdt_doc *d = tt_new_doc(7);
    td_crdt_obj t = root(d, TD_CRDT_TEXT, "t");
    CHECK(td_crdt_doc_error(d) != NULL);
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_text_insert(d, t, 5, "x", 1));
    msg_nonempty(d);
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_text_insert(d, t, 0, "\xff", 1));
    msg_nonempty(d);
    static const uint8_t junk[] = {0xde, 0xad, 0xbe, 0xef, 0x01, 0x02};
    td_crdt_err e = td_crdt_apply(d, junk, sizeof junk, NULL);
    CHECK(e == TD_CRDT_ERR_DECODE || e == TD_CRDT_ERR_VERSION);
    msg_nonempty(d);
    e = td_crdt_diff(d, junk, sizeof junk, &(uint8_t *){NULL}, &(size_t){0});
    CHECK(e == TD_CRDT_ERR_DECODE || e == TD_CRDT_ERR_VERSION);
    msg_nonempty(d);

    td_crdt_options o;
    memset(&o, 0, sizeof o);
    o.agent = 9;
    td_crdt_doc *l = (td_crdt_doc *)&o; /* must be overwritten with NULL */
    const char *msg = NULL;
    e = td_crdt_doc_load(&o, junk, sizeof junk, &l, &msg);
    CHECK(e == TD_CRDT_ERR_DECODE || e == TD_CRDT_ERR_VERSION);
    CHECK(l == NULL);
    CHECK(msg != NULL && msg[0] != '\0');
    /* errmsg may be NULL. */
    e = td_crdt_doc_load(&o, junk, 1, &l, NULL);
    CHECK(e != TD_CRDT_OK && l == NULL);
    e = td_crdt_doc_load(&o, junk, 0, &l, &msg);
    CHECK(e != TD_CRDT_OK && l == NULL);
    CHECK(msg != NULL && msg[0] != '\0');
    /* A NULL buffer with a length is the caller's error, and says so. */
    msg = NULL;
    e = td_crdt_doc_load(&o, NULL, 5, &l, &msg);
    CHECK_ERR(NULL, TD_CRDT_ERR_ARG, e);
    CHECK(l == NULL);
    CHECK_MSG(msg != NULL && msg[0] != '\0' && strcmp(msg, "ok") != 0,
              "doc_load failed with the message \"%s\"", msg ? msg : "(null)");
    td_crdt_doc_free(d);
}

/* ---- documents and roots -------------------------------------------------- */

static void test_new_doc(void)
{
    td_crdt_doc *d = tt_new_doc(0x1234567890abcdefULL);
    CHECK(td_crdt_doc_agent(d) == 0x1234567890abcdefULL);
    CHECK(td_crdt_op_count(d) == 0);
    CHECK(td_crdt_pending_ops(d) == 0);
    CHECK(td_crdt_vv_get(d, 0x1234567890abcdefULL) == 0);
    json_is(d, "{}");
    tt_bytes c = tt_commit(d);
    CHECK(c.len == 0);
    tt_bytes_free(&c);
    tt_bytes vv = tt_vv(d);
    tt_bytes df = tt_diff(d, &vv);
    CHECK(df.len == 0); /* a peer at our own vv lacks nothing */
    tt_bytes_free(&df);
    df = tt_diff(d, NULL);
    CHECK(df.len == 0); /* nothing to send to an empty peer either */
    tt_bytes_free(&df);
    tt_bytes_free(&vv);
    /* An empty document still has a snapshot, and it loads. */
    tt_bytes s = tt_snap(d);
    td_crdt_doc *l = tt_load_doc(5, &s);
    same_state(d, l);
    tt_bytes_free(&s);
    td_crdt_doc_free(l);
    td_crdt_doc_free(d);
    td_crdt_doc_free(NULL); /* like free(NULL) */
}

static void test_roots(void)
{
    td_crdt_doc *d = tt_new_doc(1);
    td_crdt_obj a = root(d, TD_CRDT_TEXT, "body");
    td_crdt_obj b = root(d, TD_CRDT_TEXT, "body");
    td_crdt_obj c = root(d, TD_CRDT_MAP, "body");
    td_crdt_obj e = root(d, TD_CRDT_LIST, "cards");
    CHECK(a == b);
    CHECK(a != c && a != e && c != e);
    CHECK(td_crdt_obj_kind(d, 0) == 0);
    CHECK(td_crdt_obj_kind(d, 0x7fffffff) == 0);
    CHECK(td_crdt_text_length(d, 0) == 0);
    CHECK(td_crdt_list_length(d, 0) == 0);
    CHECK(td_crdt_map_size(d, 0) == 0);

    tt_bytes before = tt_snap(d);
    td_crdt_obj o = 0;
    char name[257];
    memset(name, 'n', sizeof name);
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_root(d, TD_CRDT_TEXT, name, 0, &o));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_root(d, TD_CRDT_TEXT, name, 256, &o));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_root(d, TD_CRDT_TEXT, "\xc0\x80", 2, &o));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_root(d, (td_crdt_kind)0, "x", 1, &o));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_root(d, (td_crdt_kind)4, "x", 1, &o));
    unchanged_since(d, &before);
    CHECK_OK(d, td_crdt_root(d, TD_CRDT_TEXT, name, 255, &o));
    CHECK(o != 0);

    /* Using a handle with the wrong kind is an argument error. */
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_text_insert(d, c, 0, "x", 1));
    td_crdt_value v = v_int(1);
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_map_set(d, a, "k", 1, &v));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_list_insert(d, c, 0, &v, 1));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_text_insert(d, 0, 0, "x", 1));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_text_insert(d, 0x7fffffff, 0, "x", 1));
    tt_bytes_free(&before);
    td_crdt_doc_free(d);
}

/* ---- text ----------------------------------------------------------------- */

static void test_text_ascii(void)
{
    td_crdt_doc *d = tt_new_doc(1);
    td_crdt_obj t = root(d, TD_CRDT_TEXT, "body");
    text_is(d, t, "");
    ins(d, t, 0, "hello");
    ins(d, t, 5, " world");
    ins(d, t, 5, ",");
    ins(d, t, 0, ">");
    text_is(d, t, ">hello, world");
    CHECK_OK(d, td_crdt_text_delete(d, t, 6, 1));
    text_is(d, t, ">hello world");
    CHECK_OK(d, td_crdt_text_delete(d, t, 0, 7));
    text_is(d, t, "world");
    CHECK_OK(d, td_crdt_text_delete(d, t, 4, 1));
    text_is(d, t, "worl");
    /* Typing then backspacing over it. */
    for (int i = 0; i < 100; i++)
        ins(d, t, 4 + (size_t)i, "x");
    for (int i = 0; i < 60; i++)
        CHECK_OK(d, td_crdt_text_delete(d, t, td_crdt_text_length(d, t) - 1, 1));
    CHECK(td_crdt_text_length(d, t) == 44);
    CHECK_OK(d, td_crdt_text_delete(d, t, 0, 44));
    text_is(d, t, "");
    CHECK(td_crdt_vv_get(d, 1) > 0);
    td_crdt_doc_free(d);
}

static void test_text_multibyte(void)
{
    td_crdt_doc *d = tt_new_doc(1);
    td_crdt_obj t = root(d, TD_CRDT_TEXT, "body");
    /* a, e-acute (2 bytes), euro (3 bytes), grinning face (4 bytes), b */
    ins(d, t, 0, "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" "b");
    CHECK(td_crdt_text_length(d, t) == 5);
    ins(d, t, 2, "\xc3\x9f"); /* sharp s after e-acute */
    text_is(d, t, "a\xc3\xa9\xc3\x9f\xe2\x82\xac\xf0\x9f\x98\x80" "b");
    ins(d, t, 6, "\xf0\x90\x8d\x88"); /* gothic hwair at the end */
    ins(d, t, 0, "\xf4\x8f\xbf\xbf"); /* U+10FFFF at the start */
    text_is(d, t, "\xf4\x8f\xbf\xbf" "a\xc3\xa9\xc3\x9f\xe2\x82\xac\xf0\x9f\x98\x80"
                  "b\xf0\x90\x8d\x88");
    CHECK(td_crdt_text_length(d, t) == 8);
    /* Delete euro and the emoji: code points 4 and 5. */
    CHECK_OK(d, td_crdt_text_delete(d, t, 4, 2));
    text_is(d, t, "\xf4\x8f\xbf\xbf" "a\xc3\xa9\xc3\x9f" "b\xf0\x90\x8d\x88");
    CHECK_OK(d, td_crdt_text_delete(d, t, 0, 1));
    CHECK_OK(d, td_crdt_text_delete(d, t, 4, 1));
    text_is(d, t, "a\xc3\xa9\xc3\x9f" "b");
    /* Insert inside a multi-byte run: between the two 2-byte chars. */
    ins(d, t, 2, "\xe2\x82\xac" "z");
    text_is(d, t, "a\xc3\xa9\xe2\x82\xac" "z\xc3\x9f" "b");
    /* Lowest and highest of each length. */
    ins(d, t, 0, "\x01\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80");
    CHECK(td_crdt_text_length(d, t) == 6 + 7);

    /* The replica that receives it sees the same code points. */
    td_crdt_doc *r = tt_new_doc(2);
    tt_sync_one_way(d, r);
    td_crdt_obj rt = root(r, TD_CRDT_TEXT, "body");
    char *a = tt_text(d, t), *b = tt_text(r, rt);
    CHECK_STR(a, b);
    free(a);
    free(b);
    CHECK(td_crdt_text_length(r, rt) == 13);
    same_state(d, r);
    td_crdt_doc_free(d);
    td_crdt_doc_free(r);
}

static void test_text_invalid_utf8(void)
{
    static const struct {
        const char *s;
        size_t len;
    } bad[] = {
        {"\x80", 1},                 /* stray continuation */
        {"a\xbf", 2},                /* stray continuation after ASCII */
        {"\xc3", 1},                 /* truncated 2-byte */
        {"\xe2\x82", 2},             /* truncated 3-byte */
        {"\xf0\x9f\x98", 3},         /* truncated 4-byte */
        {"\xc0\x80", 2},             /* overlong NUL */
        {"\xc1\xbf", 2},             /* overlong */
        {"\xe0\x80\xaf", 3},         /* overlong slash */
        {"\xf0\x80\x80\xaf", 4},     /* overlong 4-byte */
        {"\xed\xa0\x80", 3},         /* UTF-16 surrogate D800 */
        {"\xed\xbf\xbf", 3},         /* surrogate DFFF */
        {"\xf4\x90\x80\x80", 4},     /* above U+10FFFF */
        {"\xf5\x80\x80\x80", 4},     /* invalid lead */
        {"\xf8\x88\x80\x80\x80", 5}, /* 5-byte form */
        {"\xfe", 1},
        {"\xff", 1},
        {"ok\xc3(", 4},              /* bad continuation byte */
        {"ab\xe2\x28\xa1", 5},
    };
    td_crdt_doc *d = tt_new_doc(1);
    td_crdt_obj t = root(d, TD_CRDT_TEXT, "body");
    ins(d, t, 0, "ok");
    tt_bytes before = tt_snap(d);
    uint64_t ops = td_crdt_op_count(d);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_text_insert(d, t, 1, bad[i].s, bad[i].len));
        msg_nonempty(d);
        CHECK(td_crdt_op_count(d) == ops);
        unchanged_since(d, &before);
    }
    text_is(d, t, "ok");
    /* The failed inserts left nothing in the next batch either. */
    td_crdt_doc *r = tt_new_doc(2);
    tt_sync_one_way(d, r);
    same_state(d, r);
    text_is(r, root(r, TD_CRDT_TEXT, "body"), "ok");

    /* Invalid UTF-8 in keys and string values is refused too. */
    td_crdt_obj m = root(d, TD_CRDT_MAP, "m");
    td_crdt_obj l = root(d, TD_CRDT_LIST, "l");
    tt_bytes_free(&before);
    before = tt_snap(d);
    td_crdt_value v = v_int(1);
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_map_set(d, m, "\xff", 1, &v));
    v.type = TD_CRDT_V_STR;
    v.u.str.ptr = "\xed\xa0\x80";
    v.u.str.len = 3;
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_map_set(d, m, "k", 1, &v));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_list_insert(d, l, 0, &v, 1));
    unchanged_since(d, &before);
    tt_bytes_free(&before);
    td_crdt_doc_free(d);
    td_crdt_doc_free(r);
}

static void test_text_bounds(void)
{
    td_crdt_doc *d = tt_new_doc(1);
    td_crdt_obj t = root(d, TD_CRDT_TEXT, "body");
    ins(d, t, 0, "ab\xc3\xa9"); /* 3 code points, 4 bytes */
    tt_bytes before = tt_snap(d);
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_text_insert(d, t, 4, "x", 1));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_text_insert(d, t, (size_t)-1, "x", 1));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_text_delete(d, t, 3, 1));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_text_delete(d, t, 2, 2));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_text_delete(d, t, 0, 4));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_text_delete(d, t, 1, (size_t)-1));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_text_delete(d, t, (size_t)-1, 2));
    unchanged_since(d, &before);
    msg_nonempty(d);
    /* The end is a valid insert position; counting code points, not bytes. */
    ins(d, t, 3, "!");
    text_is(d, t, "ab\xc3\xa9!");
    CHECK_OK(d, td_crdt_text_delete(d, t, 2, 2));
    text_is(d, t, "ab");
    tt_bytes_free(&before);
    td_crdt_doc_free(d);
}

/* ---- lists ---------------------------------------------------------------- */

static void test_list_scalars(void)
{
    td_crdt_doc *d = tt_new_doc(1);
    td_crdt_obj l = root(d, TD_CRDT_LIST, "items");
    td_crdt_value vals[] = {v_null(), v_bool(0), v_bool(1), v_int(-5),
                            v_int(INT64_MIN), v_int(INT64_MAX), v_float(2.5),
                            v_str("x\xc3\xa9y"), v_str("")};
    size_t n = sizeof vals / sizeof vals[0];
    CHECK_OK(d, td_crdt_list_insert(d, l, 0, vals, n));
    CHECK(td_crdt_list_length(d, l) == n);
    td_crdt_value g;
    CHECK_OK(d, td_crdt_list_get(d, l, 0, &g));
    CHECK(g.type == TD_CRDT_V_NULL);
    CHECK_OK(d, td_crdt_list_get(d, l, 1, &g));
    CHECK(g.type == TD_CRDT_V_FALSE);
    CHECK_OK(d, td_crdt_list_get(d, l, 2, &g));
    CHECK(g.type == TD_CRDT_V_TRUE);
    CHECK_OK(d, td_crdt_list_get(d, l, 3, &g));
    CHECK(g.type == TD_CRDT_V_INT && g.u.i == -5);
    CHECK_OK(d, td_crdt_list_get(d, l, 4, &g));
    CHECK(g.type == TD_CRDT_V_INT && g.u.i == INT64_MIN);
    CHECK_OK(d, td_crdt_list_get(d, l, 5, &g));
    CHECK(g.type == TD_CRDT_V_INT && g.u.i == INT64_MAX);
    CHECK_OK(d, td_crdt_list_get(d, l, 6, &g));
    CHECK(g.type == TD_CRDT_V_FLOAT && g.u.f == 2.5);
    CHECK_OK(d, td_crdt_list_get(d, l, 7, &g));
    CHECK(str_is(&g, "x\xc3\xa9y"));
    CHECK_OK(d, td_crdt_list_get(d, l, 8, &g));
    CHECK(g.type == TD_CRDT_V_STR && g.u.str.len == 0);

    /* Insert in the middle, delete a range. */
    td_crdt_value mid[] = {v_int(100), v_int(101)};
    CHECK_OK(d, td_crdt_list_insert(d, l, 3, mid, 2));
    CHECK_OK(d, td_crdt_list_get(d, l, 3, &g));
    CHECK(g.type == TD_CRDT_V_INT && g.u.i == 100);
    CHECK_OK(d, td_crdt_list_get(d, l, 5, &g));
    CHECK(g.type == TD_CRDT_V_INT && g.u.i == -5);
    CHECK_OK(d, td_crdt_list_delete(d, l, 1, 3)); /* false, true, 100 */
    CHECK(td_crdt_list_length(d, l) == n - 1);
    CHECK_OK(d, td_crdt_list_get(d, l, 1, &g));
    CHECK(g.type == TD_CRDT_V_INT && g.u.i == 101);

    /* Bounds and kinds. */
    tt_bytes before = tt_snap(d);
    size_t len = td_crdt_list_length(d, l);
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_list_get(d, l, len, &g));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_list_insert(d, l, len + 1, mid, 1));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_list_delete(d, l, len, 1));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_list_delete(d, l, 1, len));
    td_crdt_value objv = v_null();
    objv.type = TD_CRDT_V_OBJ;
    objv.obj_kind = TD_CRDT_MAP;
    objv.u.obj = l;
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_list_insert(d, l, 0, &objv, 1));
    /* All or nothing within one call: a bad value at the end refuses all. */
    td_crdt_value mixed[] = {v_int(1), v_int(2), objv};
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_list_insert(d, l, 0, mixed, 3));
    unchanged_since(d, &before);
    CHECK(td_crdt_list_length(d, l) == len);

    td_crdt_doc *r = tt_new_doc(2);
    tt_sync_one_way(d, r);
    same_state(d, r);
    json_is(r, "{\"items\":[null,101,-5,-9223372036854775808,9223372036854775807,"
               "2.5,\"x\xc3\xa9y\",\"\"]}");
    tt_bytes_free(&before);
    td_crdt_doc_free(d);
    td_crdt_doc_free(r);
}

static void test_list_nested(void)
{
    td_crdt_doc *d = tt_new_doc(1);
    td_crdt_obj l = root(d, TD_CRDT_LIST, "cards");
    td_crdt_obj m = 0, t = 0, sub = 0;
    CHECK_OK(d, td_crdt_list_insert_obj(d, l, 0, TD_CRDT_MAP, &m));
    CHECK_OK(d, td_crdt_list_insert_obj(d, l, 1, TD_CRDT_TEXT, &t));
    CHECK_OK(d, td_crdt_list_insert_obj(d, l, 0, TD_CRDT_LIST, &sub));
    CHECK(m && t && sub && m != t && t != sub);
    CHECK(td_crdt_obj_kind(d, m) == TD_CRDT_MAP);
    CHECK(td_crdt_obj_kind(d, t) == TD_CRDT_TEXT);
    CHECK(td_crdt_obj_kind(d, sub) == TD_CRDT_LIST);
    td_crdt_value g;
    CHECK_OK(d, td_crdt_list_get(d, l, 0, &g));
    CHECK(g.type == TD_CRDT_V_OBJ && g.obj_kind == TD_CRDT_LIST && g.u.obj == sub);
    CHECK_OK(d, td_crdt_list_get(d, l, 1, &g));
    CHECK(g.type == TD_CRDT_V_OBJ && g.obj_kind == TD_CRDT_MAP && g.u.obj == m);
    CHECK_OK(d, td_crdt_list_get(d, l, 2, &g));
    CHECK(g.type == TD_CRDT_V_OBJ && g.obj_kind == TD_CRDT_TEXT && g.u.obj == t);
    map_set_int(d, m, "n", 3);
    ins(d, t, 0, "card");
    td_crdt_value one = v_int(1);
    CHECK_OK(d, td_crdt_list_insert(d, sub, 0, &one, 1));
    td_crdt_obj bad = 0;
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_list_insert_obj(d, l, 9, TD_CRDT_MAP, &bad));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_list_insert_obj(d, l, 0, (td_crdt_kind)9, &bad));
    json_is(d, "{\"cards\":[[1],{\"n\":3},\"card\"]}");

    td_crdt_doc *r = tt_new_doc(2);
    tt_sync_one_way(d, r);
    same_state(d, r);
    /* The receiver finds the nested objects through the list and edits them. */
    td_crdt_obj rl = root(r, TD_CRDT_LIST, "cards");
    CHECK_OK(r, td_crdt_list_get(r, rl, 2, &g));
    CHECK(g.type == TD_CRDT_V_OBJ && g.obj_kind == TD_CRDT_TEXT);
    ins(r, g.u.obj, 4, "s");
    CHECK_OK(r, td_crdt_list_delete(r, rl, 0, 1));
    tt_sync_one_way(r, d);
    json_is(d, "{\"cards\":[{\"n\":3},\"cards\"]}");
    same_state(d, r);
    td_crdt_doc_free(d);
    td_crdt_doc_free(r);
}

/* ---- maps ----------------------------------------------------------------- */

static void test_map_basic(void)
{
    td_crdt_doc *d = tt_new_doc(1);
    td_crdt_obj m = root(d, TD_CRDT_MAP, "meta");
    /* Inserted out of order; must come back in bytewise order. */
    const char *keys[] = {"b", "\xc3\xa9", "ab", "B", "a", "\x7f", "a b"};
    for (size_t i = 0; i < 7; i++)
        map_set_int(d, m, keys[i], (int64_t)i);
    const char *sorted[] = {"B", "a", "a b", "ab", "b", "\x7f", "\xc3\xa9"};
    const int64_t sorted_val[] = {3, 4, 6, 2, 0, 5, 1};
    CHECK(td_crdt_map_size(d, m) == 7);
    for (size_t i = 0; i < 7; i++) {
        const char *k = NULL;
        size_t kl = 0;
        td_crdt_value v;
        CHECK_OK(d, td_crdt_map_entry(d, m, i, &k, &kl, &v));
        CHECK(kl == strlen(sorted[i]) && memcmp(k, sorted[i], kl) == 0);
        CHECK(v.type == TD_CRDT_V_INT && v.u.i == sorted_val[i]);
    }
    td_crdt_value v;
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_map_entry(d, m, 7, &(const char *){NULL},
                                                    &(size_t){0}, &v));
    CHECK_OK(d, td_crdt_map_get(d, m, "ab", 2, &v));
    CHECK(v.type == TD_CRDT_V_INT && v.u.i == 2);
    CHECK_OK(d, td_crdt_map_get(d, m, "zz", 2, &v));
    CHECK(v.type == TD_CRDT_V_NONE);

    /* Overwrite with another type, delete. */
    td_crdt_value s = v_str("hello");
    CHECK_OK(d, td_crdt_map_set(d, m, "ab", 2, &s));
    CHECK_OK(d, td_crdt_map_get(d, m, "ab", 2, &v));
    CHECK(str_is(&v, "hello"));
    CHECK_OK(d, td_crdt_map_delete(d, m, "b", 1));
    CHECK_OK(d, td_crdt_map_get(d, m, "b", 1, &v));
    CHECK(v.type == TD_CRDT_V_NONE);
    CHECK(td_crdt_map_size(d, m) == 6);
    /* Set again after delete. */
    td_crdt_value f = v_float(-0.25);
    CHECK_OK(d, td_crdt_map_set(d, m, "b", 1, &f));
    CHECK_OK(d, td_crdt_map_get(d, m, "b", 1, &v));
    CHECK(v.type == TD_CRDT_V_FLOAT && v.u.f == -0.25);
    CHECK(td_crdt_map_size(d, m) == 7);

    /* Key length bounds and object values. */
    tt_bytes before = tt_snap(d);
    char *big = malloc(65536);
    memset(big, 'k', 65536);
    td_crdt_value one = v_int(1);
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_map_set(d, m, "", 0, &one));
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_map_set(d, m, big, 65536, &one));
    td_crdt_value objv = v_null();
    objv.type = TD_CRDT_V_OBJ;
    objv.obj_kind = TD_CRDT_TEXT;
    objv.u.obj = m;
    CHECK_ERR(d, TD_CRDT_ERR_ARG, td_crdt_map_set(d, m, "o", 1, &objv));
    unchanged_since(d, &before);
    CHECK_OK(d, td_crdt_map_set(d, m, big, 65535, &one));
    CHECK_OK(d, td_crdt_map_get(d, m, big, 65535, &v));
    CHECK(v.type == TD_CRDT_V_INT && v.u.i == 1);
    free(big);

    td_crdt_obj sub = 0;
    CHECK_OK(d, td_crdt_map_set_obj(d, m, "sub", 3, TD_CRDT_LIST, &sub));
    CHECK_OK(d, td_crdt_map_get(d, m, "sub", 3, &v));
    CHECK(v.type == TD_CRDT_V_OBJ && v.obj_kind == TD_CRDT_LIST && v.u.obj == sub);

    td_crdt_doc *r = tt_new_doc(2);
    tt_sync_one_way(d, r);
    same_state(d, r);
    tt_bytes_free(&before);
    td_crdt_doc_free(d);
    td_crdt_doc_free(r);
}

static void test_map_lww(void)
{
    /* Concurrent sets of one key: both replicas pick the same winner, the
     * greater (Lamport, agent): equal clocks here, so agent 2. */
    td_crdt_doc *a = tt_new_doc(1), *b = tt_new_doc(2);
    td_crdt_obj ma = root(a, TD_CRDT_MAP, "m"), mb = root(b, TD_CRDT_MAP, "m");
    td_crdt_value va = v_str("from a"), vb = v_str("from b"), g;
    CHECK_OK(a, td_crdt_map_set(a, ma, "k", 1, &va));
    CHECK_OK(b, td_crdt_map_set(b, mb, "k", 1, &vb));
    tt_bytes ba = tt_commit(a), bb = tt_commit(b);
    tt_apply_ok(a, &bb, NULL);
    tt_apply_ok(b, &ba, NULL);
    CHECK_OK(a, td_crdt_map_get(a, ma, "k", 1, &g));
    CHECK(str_is(&g, "from b"));
    CHECK_OK(b, td_crdt_map_get(b, mb, "k", 1, &g));
    CHECK(str_is(&g, "from b"));
    same_state(a, b);
    tt_bytes_free(&ba);
    tt_bytes_free(&bb);

    /* A set made after seeing another wins, whatever the agents. */
    CHECK_OK(a, td_crdt_map_set(a, ma, "k", 1, &va));
    tt_sync_one_way(a, b);
    CHECK_OK(b, td_crdt_map_get(b, mb, "k", 1, &g));
    CHECK(str_is(&g, "from a"));

    /* Concurrent delete and set: any winner, but the same one everywhere. */
    CHECK_OK(a, td_crdt_map_delete(a, ma, "k", 1));
    td_crdt_value n = v_int(42);
    CHECK_OK(b, td_crdt_map_set(b, mb, "k", 1, &n));
    ba = tt_commit(a);
    bb = tt_commit(b);
    tt_apply_ok(b, &ba, NULL);
    tt_apply_ok(a, &bb, NULL);
    same_state(a, b);
    tt_bytes_free(&ba);
    tt_bytes_free(&bb);

    /* A replica with a higher clock wins over a higher agent id. */
    td_crdt_doc *c = tt_new_doc(1), *e = tt_new_doc(0xffffffffffffffffULL);
    td_crdt_obj mc = root(c, TD_CRDT_MAP, "m"), me = root(e, TD_CRDT_MAP, "m");
    for (int i = 0; i < 5; i++)
        map_set_int(c, mc, "other", i);
    map_set_int(c, mc, "k", 1);
    map_set_int(e, me, "k", 2);
    tt_sync_both(c, e);
    CHECK_OK(c, td_crdt_map_get(c, mc, "k", 1, &g));
    CHECK(g.type == TD_CRDT_V_INT && g.u.i == 1);
    same_state(c, e);

    /* Concurrent set_obj of one key from both sides; edits inside the loser
     * are kept in history but invisible; both sides agree. */
    td_crdt_obj oa = 0, ob = 0;
    CHECK_OK(a, td_crdt_map_set_obj(a, ma, "o", 1, TD_CRDT_TEXT, &oa));
    CHECK_OK(b, td_crdt_map_set_obj(b, mb, "o", 1, TD_CRDT_LIST, &ob));
    ins(a, oa, 0, "text of a");
    td_crdt_value one = v_int(1);
    CHECK_OK(b, td_crdt_list_insert(b, ob, 0, &one, 1));
    ba = tt_commit(a);
    bb = tt_commit(b);
    tt_apply_ok(b, &ba, NULL);
    tt_apply_ok(a, &bb, NULL);
    same_state(a, b);
    CHECK_OK(a, td_crdt_map_get(a, ma, "o", 1, &g));
    CHECK(g.type == TD_CRDT_V_OBJ && g.obj_kind == TD_CRDT_LIST);
    /* The losing object is still a valid handle to edit: its ops merge. */
    ins(a, oa, 0, "more ");
    tt_sync_one_way(a, b);
    same_state(a, b);
    tt_bytes_free(&ba);
    tt_bytes_free(&bb);
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
    td_crdt_doc_free(c);
    td_crdt_doc_free(e);
}

/* ---- nesting -------------------------------------------------------------- */

static void test_nested(void)
{
    td_crdt_doc *a = tt_new_doc(1), *b = tt_new_doc(2);
    td_crdt_obj m = root(a, TD_CRDT_MAP, "root");
    td_crdt_obj l = 0, t = 0, inner = 0, deep = 0;
    CHECK_OK(a, td_crdt_map_set_obj(a, m, "l", 1, TD_CRDT_LIST, &l));
    CHECK_OK(a, td_crdt_list_insert_obj(a, l, 0, TD_CRDT_TEXT, &t));
    ins(a, t, 0, "hi");
    CHECK_OK(a, td_crdt_list_insert_obj(a, l, 1, TD_CRDT_MAP, &inner));
    map_set_int(a, inner, "x", 1);
    CHECK_OK(a, td_crdt_map_set_obj(a, inner, "deep", 4, TD_CRDT_LIST, &deep));
    td_crdt_value s = v_str("bottom");
    CHECK_OK(a, td_crdt_list_insert(a, deep, 0, &s, 1));
    json_is(a, "{\"root\":{\"l\":[\"hi\",{\"deep\":[\"bottom\"],\"x\":1}]}}");
    tt_sync_one_way(a, b);
    same_state(a, b);

    /* B walks down the tree and edits the nested text and map. */
    td_crdt_value g;
    td_crdt_obj bm = root(b, TD_CRDT_MAP, "root");
    CHECK_OK(b, td_crdt_map_get(b, bm, "l", 1, &g));
    CHECK(g.type == TD_CRDT_V_OBJ && g.obj_kind == TD_CRDT_LIST);
    td_crdt_obj bl = g.u.obj;
    CHECK(td_crdt_list_length(b, bl) == 2);
    CHECK_OK(b, td_crdt_list_get(b, bl, 0, &g));
    CHECK(g.type == TD_CRDT_V_OBJ && g.obj_kind == TD_CRDT_TEXT);
    ins(b, g.u.obj, 2, " there");
    CHECK_OK(b, td_crdt_list_get(b, bl, 1, &g));
    CHECK(g.type == TD_CRDT_V_OBJ && g.obj_kind == TD_CRDT_MAP);
    map_set_int(b, g.u.obj, "y", 2);
    /* Concurrently A edits the same nested text at the start. */
    ins(a, t, 0, "oh, ");
    tt_sync_both(a, b);
    same_state(a, b);
    json_is(a, "{\"root\":{\"l\":[\"oh, hi there\",{\"deep\":[\"bottom\"],\"x\":1,\"y\":2}]}}");

    /* An object deleted on one side while edited on the other: no error,
     * and both agree (the edits live on, the object stays deleted). */
    CHECK_OK(a, td_crdt_list_delete(a, l, 1, 1));
    map_set_int(b, g.u.obj, "z", 3);
    tt_sync_both(a, b);
    same_state(a, b);
    json_is(b, "{\"root\":{\"l\":[\"oh, hi there\"]}}");
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
}

/* Every kind nested in every kind, edited inside in the same batch that
 * creates it; the receiver must see the same. */
static void test_nested_same_batch(void)
{
    static const td_crdt_kind kinds[] = {TD_CRDT_TEXT, TD_CRDT_LIST, TD_CRDT_MAP};
    for (int p = 0; p < 2; p++) {
        for (int k = 0; k < 3; k++) {
            td_crdt_doc *a = tt_new_doc(1), *b = tt_new_doc(2);
            td_crdt_obj parent, child = 0;
            if (p == 0) {
                parent = root(a, TD_CRDT_MAP, "m");
                CHECK_OK(a, td_crdt_map_set_obj(a, parent, "d", 1, kinds[k], &child));
            } else {
                parent = root(a, TD_CRDT_LIST, "l");
                CHECK_OK(a, td_crdt_list_insert_obj(a, parent, 0, kinds[k], &child));
            }
            if (kinds[k] == TD_CRDT_TEXT) {
                ins(a, child, 0, "hi");
            } else if (kinds[k] == TD_CRDT_LIST) {
                td_crdt_value five = v_int(5);
                CHECK_OK(a, td_crdt_list_insert(a, child, 0, &five, 1));
            } else {
                map_set_int(a, child, "k", 5);
            }
            tt_sync_one_way(a, b);
            static const char *want[2][3] = {
                {"{\"m\":{\"d\":\"hi\"}}", "{\"m\":{\"d\":[5]}}", "{\"m\":{\"d\":{\"k\":5}}}"},
                {"{\"l\":[\"hi\"]}", "{\"l\":[[5]]}", "{\"l\":[{\"k\":5}]}"}};
            json_is(a, want[p][k]);
            json_is(b, want[p][k]);
            same_state(a, b);
            td_crdt_doc_free(a);
            td_crdt_doc_free(b);
        }
    }
}

static void test_max_depth(void)
{
    td_crdt_options o;
    memset(&o, 0, sizeof o);
    o.agent = 1;
    o.max_depth = 4;
    td_crdt_doc *d = NULL;
    CHECK_OK(NULL, td_crdt_doc_new(&o, &d));
    td_crdt_obj cur = root(d, TD_CRDT_MAP, "m");
    int fail_at = -1;
    for (int level = 1; level <= 10; level++) {
        tt_bytes before = tt_snap(d);
        td_crdt_obj next = 0;
        td_crdt_err e = td_crdt_map_set_obj(d, cur, "c", 1, TD_CRDT_MAP, &next);
        if (e != TD_CRDT_OK) {
            CHECK_ERR(d, TD_CRDT_ERR_LIMIT, e);
            unchanged_since(d, &before);
            tt_bytes_free(&before);
            fail_at = level;
            break;
        }
        tt_bytes_free(&before);
        cur = next;
    }
    /* The root counts as depth 1 or 0; either way the limit bites near 4. */
    CHECK_MSG(fail_at >= 3 && fail_at <= 5, "nesting failed at level %d", fail_at);
    td_crdt_doc_free(d);

    /* The default allows deep trees, and a replica receives them. */
    td_crdt_doc *a = tt_new_doc(1), *b = tt_new_doc(2);
    cur = root(a, TD_CRDT_LIST, "l");
    for (int level = 0; level < 40; level++) {
        td_crdt_obj next = 0;
        CHECK_OK(a, td_crdt_list_insert_obj(a, cur, 0, TD_CRDT_LIST, &next));
        cur = next;
    }
    tt_sync_one_way(a, b);
    same_state(a, b);
    /* A receiver with a lower bound refuses the batch as a whole. */
    o.agent = 3;
    o.max_depth = 8;
    td_crdt_doc *c = NULL;
    CHECK_OK(NULL, td_crdt_doc_new(&o, &c));
    tt_bytes all = tt_diff(a, NULL);
    tt_bytes before = tt_snap(c);
    CHECK_ERR(c, TD_CRDT_ERR_LIMIT, td_crdt_apply(c, all.p, all.len, NULL));
    unchanged_since(c, &before);
    CHECK(td_crdt_op_count(c) == 0 && td_crdt_pending_ops(c) == 0);
    tt_bytes_free(&all);
    tt_bytes_free(&before);
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
    td_crdt_doc_free(c);
}

/* ---- batches -------------------------------------------------------------- */

static void edit_some(td_crdt_doc *d)
{
    td_crdt_obj t = root(d, TD_CRDT_TEXT, "body");
    td_crdt_obj l = root(d, TD_CRDT_LIST, "items");
    td_crdt_obj m = root(d, TD_CRDT_MAP, "meta");
    ins(d, t, 0, "hello world");
    CHECK_OK(d, td_crdt_text_delete(d, t, 0, 6));
    td_crdt_value vals[] = {v_int(1), v_str("two"), v_bool(1)};
    CHECK_OK(d, td_crdt_list_insert(d, l, 0, vals, 3));
    map_set_int(d, m, "k", 7);
}

static void test_commit_apply(void)
{
    td_crdt_doc *a = tt_new_doc(1), *b = tt_new_doc(2);
    edit_some(a);
    uint64_t n = td_crdt_vv_get(a, 1);
    CHECK(n > 0);
    CHECK(td_crdt_op_count(a) == n);
    tt_bytes batch = tt_commit(a);
    CHECK(batch.len > 0);
    tt_bytes again = tt_commit(a);
    CHECK(again.len == 0); /* nothing new since */
    td_crdt_apply_info info;
    memset(&info, 0xff, sizeof info);
    tt_apply_ok(b, &batch, &info);
    CHECK(info.ops_applied == n);
    CHECK(info.ops_duplicate == 0);
    CHECK(info.parked == 0);
    CHECK(td_crdt_vv_get(b, 1) == n);
    CHECK(td_crdt_vv_get(b, 2) == 0);
    same_state(a, b);
    json_is(b, "{\"body\":\"world\",\"items\":[1,\"two\",true],\"meta\":{\"k\":7}}");
    /* Applying changes nothing to b's own outgoing batch. */
    tt_bytes none = tt_commit(b);
    CHECK(none.len == 0);
    /* Edits both ways. */
    ins(b, root(b, TD_CRDT_TEXT, "body"), 5, "!");
    tt_sync_one_way(b, a);
    json_is(a, "{\"body\":\"world!\",\"items\":[1,\"two\",true],\"meta\":{\"k\":7}}");
    CHECK(td_crdt_vv_get(a, 2) == 1);
    same_state(a, b);
    /* A NULL info is allowed. */
    tt_apply_ok(a, &batch, NULL);
    tt_bytes_free(&batch);
    tt_bytes_free(&again);
    tt_bytes_free(&none);
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
}

static void test_apply_idempotent(void)
{
    td_crdt_doc *a = tt_new_doc(1), *b = tt_new_doc(2);
    edit_some(a);
    uint64_t n = td_crdt_vv_get(a, 1);
    tt_bytes batch = tt_commit(a);
    td_crdt_apply_info info;
    tt_apply_ok(b, &batch, &info);
    CHECK(info.ops_applied == n && info.ops_duplicate == 0);
    tt_bytes s1 = tt_snap(b);
    tt_apply_ok(b, &batch, &info);
    CHECK(info.ops_applied == 0);
    CHECK(info.ops_duplicate == n);
    CHECK(info.parked == 0);
    unchanged_since(b, &s1);
    /* The sender applying its own batch: all duplicates. */
    tt_apply_ok(a, &batch, &info);
    CHECK(info.ops_applied == 0 && info.ops_duplicate == n);
    same_state(a, b);

    /* A diff overlapping what b has: the known part counts as duplicate. */
    ins(a, root(a, TD_CRDT_TEXT, "body"), 0, "abc");
    tt_bytes whole = tt_diff(a, NULL);
    tt_apply_ok(b, &whole, &info);
    CHECK(info.ops_applied == 3);
    CHECK(info.ops_duplicate == n);
    same_state(a, b);
    tt_bytes_free(&whole);
    tt_bytes_free(&batch);
    tt_bytes_free(&s1);
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
}

static void test_out_of_order(void)
{
    td_crdt_doc *a = tt_new_doc(1), *b = tt_new_doc(2);
    td_crdt_obj t = root(a, TD_CRDT_TEXT, "body");
    ins(a, t, 0, "abc");
    tt_bytes b1 = tt_commit(a);
    ins(a, t, 3, "de");
    map_set_int(a, root(a, TD_CRDT_MAP, "m"), "k", 1);
    tt_bytes b2 = tt_commit(a);
    CHECK_OK(a, td_crdt_text_delete(a, t, 1, 3)); /* "ae" */
    tt_bytes b3 = tt_commit(a);
    uint64_t n1 = 3, n3 = td_crdt_vv_get(a, 1);
    uint64_t n2plus3 = n3 - n1;

    td_crdt_apply_info info;
    tt_bytes empty = tt_snap(b);
    tt_apply_ok(b, &b3, &info);
    CHECK(info.parked == 1);
    CHECK(info.ops_applied == 0);
    CHECK(td_crdt_pending_ops(b) > 0);
    size_t p3 = td_crdt_pending_ops(b);
    CHECK(td_crdt_op_count(b) == 0);
    json_is(b, "{}");
    unchanged_since(b, &empty); /* parked ops are not part of the state */
    tt_apply_ok(b, &b2, &info);
    CHECK(info.parked == 1);
    CHECK(info.ops_applied == 0);
    CHECK(td_crdt_pending_ops(b) == n2plus3);
    CHECK(p3 < n2plus3);
    tt_apply_ok(b, &b1, &info);
    CHECK(info.parked == 0);
    CHECK(info.ops_applied == n3); /* b1 and both released batches */
    CHECK(td_crdt_pending_ops(b) == 0);
    text_is(b, root(b, TD_CRDT_TEXT, "body"), "ae");
    same_state(a, b);

    /* Parked ops later made redundant by a diff leave the pending set. */
    td_crdt_doc *c = tt_new_doc(3);
    tt_apply_ok(c, &b3, &info);
    CHECK(info.parked == 1 && td_crdt_pending_ops(c) > 0);
    tt_bytes all = tt_diff(a, NULL);
    tt_apply_ok(c, &all, &info);
    CHECK(td_crdt_pending_ops(c) == 0);
    same_state(a, c);
    tt_bytes_free(&all);

    /* Dependencies across agents: b's edit on top of a's text reaches a
     * third replica before a's text does. */
    td_crdt_doc *e = tt_new_doc(4);
    ins(b, root(b, TD_CRDT_TEXT, "body"), 1, "XY");
    tt_bytes bb = tt_commit(b);
    tt_apply_ok(e, &bb, &info);
    CHECK(info.parked == 1);
    CHECK(td_crdt_pending_ops(e) == 2);
    all = tt_diff(a, NULL);
    tt_apply_ok(e, &all, &info);
    CHECK(info.parked == 0);
    CHECK(td_crdt_pending_ops(e) == 0);
    CHECK(info.ops_applied == n3 + 2);
    same_state(b, e);
    text_is(e, root(e, TD_CRDT_TEXT, "body"), "aXYe");

    tt_bytes_free(&all);
    tt_bytes_free(&bb);
    tt_bytes_free(&empty);
    tt_bytes_free(&b1);
    tt_bytes_free(&b2);
    tt_bytes_free(&b3);
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
    td_crdt_doc_free(c);
    td_crdt_doc_free(e);
}

static void test_pending_bound(void)
{
    td_crdt_doc *a = tt_new_doc(1);
    td_crdt_obj t = root(a, TD_CRDT_TEXT, "body");
    ins(a, t, 0, "x");
    tt_bytes first = tt_commit(a);
    ins(a, t, 1, "0123456789");
    tt_bytes ten = tt_commit(a);

    td_crdt_options o;
    memset(&o, 0, sizeof o);
    o.agent = 2;
    o.max_pending_ops = 5;
    td_crdt_doc *b = NULL;
    CHECK_OK(NULL, td_crdt_doc_new(&o, &b));
    tt_bytes before = tt_snap(b);
    CHECK_ERR(b, TD_CRDT_ERR_LIMIT, td_crdt_apply(b, ten.p, ten.len, NULL));
    msg_nonempty(b);
    CHECK(td_crdt_pending_ops(b) == 0);
    unchanged_since(b, &before);
    /* In order, the same batch is fine: it does not need to wait. */
    tt_apply_ok(b, &first, NULL);
    tt_apply_ok(b, &ten, NULL);
    same_state(a, b);
    td_crdt_doc_free(b);

    /* The byte bound as well. */
    o.max_pending_ops = 0;
    o.max_pending_bytes = 4;
    CHECK_OK(NULL, td_crdt_doc_new(&o, &b));
    CHECK(ten.len > 4);
    CHECK_ERR(b, TD_CRDT_ERR_LIMIT, td_crdt_apply(b, ten.p, ten.len, NULL));
    CHECK(td_crdt_pending_ops(b) == 0);
    tt_apply_ok(b, &first, NULL);
    tt_apply_ok(b, &ten, NULL);
    same_state(a, b);
    td_crdt_doc_free(b);

    /* Many small parked batches: the bound counts them together. */
    o.max_pending_bytes = 0;
    o.max_pending_ops = 12;
    CHECK_OK(NULL, td_crdt_doc_new(&o, &b));
    tt_bytes gap[6];
    for (int i = 0; i < 6; i++) {
        ins(a, t, 0, "ab"); /* 2 ops per batch */
        gap[i] = tt_commit(a);
    }
    tt_apply_ok(b, &first, NULL); /* b lacks `ten`, so all of gap[] waits */
    size_t accepted = 0;
    int limited = 0;
    for (int i = 0; i < 6; i++) {
        td_crdt_apply_info info;
        td_crdt_err e = td_crdt_apply(b, gap[i].p, gap[i].len, &info);
        if (e == TD_CRDT_OK) {
            CHECK(info.parked == 1);
            accepted++;
        } else {
            CHECK_ERR(b, TD_CRDT_ERR_LIMIT, e);
            limited = 1;
        }
        CHECK(td_crdt_pending_ops(b) <= 12);
    }
    CHECK(accepted == 6 || limited);
    CHECK(td_crdt_pending_ops(b) == accepted * 2);
    tt_apply_ok(b, &ten, NULL);
    for (int i = 0; i < 6; i++)
        tt_apply_ok(b, &gap[i], NULL);
    CHECK(td_crdt_pending_ops(b) == 0);
    same_state(a, b);
    for (int i = 0; i < 6; i++)
        tt_bytes_free(&gap[i]);
    td_crdt_doc_free(b);
    tt_bytes_free(&before);
    tt_bytes_free(&first);
    tt_bytes_free(&ten);
    td_crdt_doc_free(a);
}

/* ---- diff and version vectors --------------------------------------------- */

static void build_concurrent(td_crdt_doc *a, td_crdt_doc *b)
{
    edit_some(a);
    tt_sync_one_way(a, b);
    td_crdt_obj ta = root(a, TD_CRDT_TEXT, "body"), tb = root(b, TD_CRDT_TEXT, "body");
    ins(a, ta, 5, " from a");
    ins(b, tb, 0, "b says ");
    CHECK_OK(b, td_crdt_text_delete(b, tb, 7, 2));
    td_crdt_obj lb = root(b, TD_CRDT_LIST, "items");
    CHECK_OK(b, td_crdt_list_delete(b, lb, 1, 1));
    map_set_int(b, root(b, TD_CRDT_MAP, "meta"), "k", 8);
    map_set_int(a, root(a, TD_CRDT_MAP, "meta"), "j", 9);
    tt_sync_both(a, b);
}

static void test_vv(void)
{
    td_crdt_doc *a = tt_new_doc(5), *b = tt_new_doc(3);
    build_concurrent(a, b);
    CHECK(td_crdt_vv_get(a, 5) > 0 && td_crdt_vv_get(a, 3) > 0);
    CHECK(td_crdt_vv_get(a, 4) == 0);
    CHECK(td_crdt_op_count(a) == td_crdt_vv_get(a, 5) + td_crdt_vv_get(a, 3));
    tt_bytes va = tt_vv(a), vb = tt_vv(b);
    CHECK(tt_bytes_eq(&va, &vb)); /* same state, same encoding */
    tt_bytes_free(&va);
    tt_bytes_free(&vb);
    td_crdt_doc *e = tt_new_doc(9);
    tt_bytes ve = tt_vv(e);
    CHECK(ve.len > 0 && ve.len <= 9); /* just "a count" of zero */
    tt_bytes_free(&ve);
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
    td_crdt_doc_free(e);
}

static void test_diff_empty_vv(void)
{
    td_crdt_doc *a = tt_new_doc(1), *b = tt_new_doc(2);
    build_concurrent(a, b);
    same_state(a, b);
    tt_bytes whole = tt_diff(a, NULL);
    CHECK(whole.len > 0);
    td_crdt_doc *c = tt_new_doc(3);
    td_crdt_apply_info info;
    tt_apply_ok(c, &whole, &info);
    CHECK(info.ops_applied == td_crdt_op_count(a));
    CHECK(info.parked == 0);
    same_state(a, c);
    /* An encoded empty vv means the same as len 0. */
    td_crdt_doc *fresh = tt_new_doc(4);
    tt_bytes vv0 = tt_vv(fresh);
    tt_bytes whole2 = tt_diff(a, &vv0);
    tt_apply_ok(fresh, &whole2, NULL);
    same_state(a, fresh);
    /* A peer at our vv lacks nothing. */
    tt_bytes vva = tt_vv(a);
    tt_bytes none = tt_diff(a, &vva);
    CHECK(none.len == 0);
    /* diff does not change the document. */
    tt_bytes s = tt_snap(a);
    tt_bytes again = tt_diff(a, NULL);
    CHECK(tt_bytes_eq(&again, &whole));
    unchanged_since(a, &s);
    tt_bytes_free(&s);
    tt_bytes_free(&again);
    tt_bytes_free(&vva);
    tt_bytes_free(&none);
    tt_bytes_free(&vv0);
    tt_bytes_free(&whole2);
    tt_bytes_free(&whole);
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
    td_crdt_doc_free(c);
    td_crdt_doc_free(fresh);
}

static void test_diff_from_peer(void)
{
    td_crdt_doc *a = tt_new_doc(1), *b = tt_new_doc(2);
    td_crdt_obj t = root(a, TD_CRDT_TEXT, "body");
    tt_rng r;
    tt_rng_seed(&r, 1);
    char buf[4 * 64];
    for (int i = 0; i < 50; i++) {
        size_t n = tt_rand_utf8(&r, 64, buf);
        CHECK_OK(a, td_crdt_text_insert(a, t, tt_rng_below(&r, td_crdt_text_length(a, t) + 1),
                                        buf, n));
    }
    tt_sync_both(a, b);
    uint64_t had = td_crdt_op_count(a);
    ins(a, t, 10, "new");
    map_set_int(a, root(a, TD_CRDT_MAP, "m"), "k", 1);
    uint64_t added = td_crdt_op_count(a) - had;
    CHECK(added >= 4); /* one per character, at least one for the set */
    tt_bytes vvb = tt_vv(b);
    tt_bytes d = tt_diff(a, &vvb), whole = tt_diff(a, NULL);
    CHECK(d.len > 0);
    CHECK_MSG(d.len < whole.len / 10, "diff %zu bytes vs whole %zu", d.len, whole.len);
    td_crdt_apply_info info;
    tt_apply_ok(b, &d, &info);
    CHECK(info.ops_applied == added && info.ops_duplicate == 0 && info.parked == 0);
    same_state(a, b);
    /* A vv with an agent the document never saw, and one ahead of it: the
     * diff still holds what the peer lacks (the known part of a). */
    td_crdt_doc *c = tt_new_doc(77);
    ins(c, root(c, TD_CRDT_TEXT, "other"), 0, "zzz");
    tt_bytes vvc = tt_vv(c);
    tt_bytes dc = tt_diff(a, &vvc);
    tt_apply_ok(c, &dc, &info);
    CHECK(info.ops_applied == td_crdt_op_count(a));
    CHECK(td_crdt_op_count(c) == td_crdt_op_count(a) + 3);
    /* A peer ahead of us, even on our own agent (a clone of a, loaded
     * with a's agent, that typed more): it lacks nothing. */
    tt_bytes sa = tt_snap(a);
    td_crdt_doc *clone = tt_load_doc(1, &sa);
    ins(clone, root(clone, TD_CRDT_TEXT, "body"), 0, "ahead");
    tt_bytes vvk = tt_vv(clone);
    tt_bytes none = tt_diff(a, &vvk);
    CHECK(none.len == 0);
    tt_bytes_free(&none);
    tt_bytes_free(&vvk);
    tt_bytes_free(&sa);
    td_crdt_doc_free(clone);
    tt_bytes_free(&vvc);
    tt_bytes_free(&dc);
    tt_bytes_free(&vvb);
    tt_bytes_free(&d);
    tt_bytes_free(&whole);
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
    td_crdt_doc_free(c);
}

/* ---- snapshots ------------------------------------------------------------ */

static void test_snapshot_roundtrip(void)
{
    td_crdt_doc *a = tt_new_doc(1), *b = tt_new_doc(2);
    build_concurrent(a, b);
    td_crdt_obj m = root(a, TD_CRDT_MAP, "meta"), sub = 0;
    CHECK_OK(a, td_crdt_map_set_obj(a, m, "nested", 6, TD_CRDT_TEXT, &sub));
    ins(a, sub, 0, "\xe2\x82\xac deep");
    tt_bytes s = tt_snap(a);
    td_crdt_doc *l = tt_load_doc(1, &s);
    same_state(a, l);
    tt_bytes vva = tt_vv(a), vvl = tt_vv(l);
    CHECK(tt_bytes_eq(&vva, &vvl));
    CHECK(td_crdt_vv_get(l, 1) == td_crdt_vv_get(a, 1));
    CHECK(td_crdt_doc_agent(l) == 1);
    /* Uncommitted ops of a are in the snapshot but not a batch to send. */
    tt_bytes nothing = tt_commit(l);
    CHECK(nothing.len == 0);

    /* The loaded replica with a's agent continues a's seq: b, which has all
     * of a's ops so far, accepts its new edits as new, not duplicates. */
    tt_sync_one_way(a, b); /* a's uncommitted ops to b first */
    td_crdt_obj lt = root(l, TD_CRDT_TEXT, "body");
    uint64_t before = td_crdt_vv_get(l, 1);
    ins(l, lt, 0, "L");
    CHECK(td_crdt_vv_get(l, 1) == before + 1);
    tt_bytes lb = tt_commit(l);
    td_crdt_apply_info info;
    tt_apply_ok(b, &lb, &info);
    CHECK(info.ops_applied == 1 && info.ops_duplicate == 0 && info.parked == 0);
    same_state(l, b);

    /* A loaded replica under another agent keeps working and syncing. */
    td_crdt_doc *k = tt_load_doc(42, &s);
    CHECK(td_crdt_doc_agent(k) == 42);
    ins(k, root(k, TD_CRDT_TEXT, "body"), 0, "K");
    tt_sync_both(k, b);
    same_state(k, b);
    tt_bytes sk = tt_snap(k);
    td_crdt_doc *k2 = tt_load_doc(43, &sk);
    same_state(k, k2);
    tt_bytes sk2 = tt_snap(k2);
    CHECK(tt_bytes_eq(&sk, &sk2));

    tt_bytes_free(&sk);
    tt_bytes_free(&sk2);
    tt_bytes_free(&lb);
    tt_bytes_free(&nothing);
    tt_bytes_free(&vva);
    tt_bytes_free(&vvl);
    tt_bytes_free(&s);
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
    td_crdt_doc_free(l);
    td_crdt_doc_free(k);
    td_crdt_doc_free(k2);
}

static void test_snapshot_canonical(void)
{
    /* The same ops reached by different routes give the same bytes. */
    td_crdt_doc *a = tt_new_doc(10), *b = tt_new_doc(20), *c = tt_new_doc(30);
    td_crdt_obj ta = root(a, TD_CRDT_TEXT, "t"), tb = root(b, TD_CRDT_TEXT, "t");
    ins(a, ta, 0, "aaa");
    tt_bytes ba = tt_commit(a);
    ins(b, tb, 0, "bbb");
    map_set_int(b, root(b, TD_CRDT_MAP, "m"), "x", 1);
    tt_bytes bb = tt_commit(b);
    tt_apply_ok(c, &bb, NULL);
    tt_apply_ok(c, &ba, NULL);
    tt_apply_ok(a, &bb, NULL);
    tt_apply_ok(b, &ba, NULL);
    same_state(a, b);
    same_state(a, c);
    tt_bytes_free(&ba);
    tt_bytes_free(&bb);
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
    td_crdt_doc_free(c);
}

/* ---- JSON view ------------------------------------------------------------ */

static void test_to_json(void)
{
    td_crdt_doc *d = tt_new_doc(1);
    ins(d, root(d, TD_CRDT_TEXT, "body"), 0, "hello");
    td_crdt_obj l = root(d, TD_CRDT_LIST, "items");
    td_crdt_value vals[] = {v_int(1), v_int(-2), v_bool(1), v_bool(0), v_null(),
                            v_str("s"), v_float(1.5)};
    CHECK_OK(d, td_crdt_list_insert(d, l, 0, vals, 7));
    td_crdt_obj m = root(d, TD_CRDT_MAP, "meta"), b = 0, c = 0;
    td_crdt_value x = v_str("x");
    CHECK_OK(d, td_crdt_map_set(d, m, "a", 1, &x));
    CHECK_OK(d, td_crdt_map_set_obj(d, m, "b", 1, TD_CRDT_MAP, &b));
    CHECK_OK(d, td_crdt_map_set_obj(d, b, "c", 1, TD_CRDT_LIST, &c));
    json_is_exactly(d, "{\"body\":\"hello\",\"items\":[1,-2,true,false,null,\"s\",1.5],"
               "\"meta\":{\"a\":\"x\",\"b\":{\"c\":[]}}}");
    td_crdt_doc_free(d);
}

static void test_to_json_escapes(void)
{
    const char *tricky = "q\"b\\s/n\nt\tc\x01\x1f" "e\xc3\xa9" "E\xf0\x9f\x98\x80";
    td_crdt_doc *d = tt_new_doc(1);
    ins(d, root(d, TD_CRDT_TEXT, "t\"name"), 0, tricky);
    td_crdt_obj m = root(d, TD_CRDT_MAP, "m");
    td_crdt_value v = v_str(tricky);
    CHECK_OK(d, td_crdt_map_set(d, m, "k\n\"", 3, &v));
    /* A name used by two kinds gets suffixes. */
    ins(d, root(d, TD_CRDT_TEXT, "x"), 0, "t");
    map_set_int(d, root(d, TD_CRDT_MAP, "x"), "k", 1);
    char *js = tt_json(d);
    cJSON *j = cJSON_Parse(js);
    CHECK_MSG(j != NULL, "to_json is not valid JSON: %s", js);
    cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "t\"name");
    CHECK(cJSON_IsString(t) && strcmp(t->valuestring, tricky) == 0);
    cJSON *jm = cJSON_GetObjectItemCaseSensitive(j, "m");
    cJSON *jk = cJSON_GetObjectItemCaseSensitive(jm, "k\n\"");
    CHECK(cJSON_IsString(jk) && strcmp(jk->valuestring, tricky) == 0);
    cJSON *xt = cJSON_GetObjectItemCaseSensitive(j, "x@text");
    cJSON *xm = cJSON_GetObjectItemCaseSensitive(j, "x@map");
    CHECK(cJSON_IsString(xt) && strcmp(xt->valuestring, "t") == 0);
    CHECK(cJSON_IsObject(xm));
    CHECK(cJSON_GetObjectItemCaseSensitive(j, "x") == NULL);
    CHECK(cJSON_GetArraySize(j) == 4);
    cJSON_Delete(j);
    free(js);
    td_crdt_doc_free(d);
}

/* ---- concurrency ---------------------------------------------------------- */

/* Types s one code point at a time at pos, as an editor would. */
static void type_at(td_crdt_doc *d, td_crdt_obj t, size_t pos, const char *s)
{
    for (size_t i = 0; s[i]; i++)
        CHECK_OK(d, td_crdt_text_insert(d, t, pos + i, s + i, 1));
}

static void no_interleave(int commit_each, int empty_base)
{
    td_crdt_doc *a = tt_new_doc(100), *b = tt_new_doc(200);
    td_crdt_obj ta = root(a, TD_CRDT_TEXT, "t"), tb = root(b, TD_CRDT_TEXT, "t");
    const char *base = empty_base ? "" : "xy";
    size_t at = empty_base ? 0 : 1;
    if (!empty_base) {
        ins(a, ta, 0, base);
        tt_sync_one_way(a, b);
    }
    if (!commit_each) {
        type_at(a, ta, at, "aaaa");
        type_at(b, tb, at, "bbbb");
        tt_sync_both(a, b);
    } else {
        /* Every keystroke is its own batch, delivered interleaved. */
        tt_bytes ka[4], kb[4];
        for (size_t i = 0; i < 4; i++) {
            CHECK_OK(a, td_crdt_text_insert(a, ta, at + i, "a", 1));
            ka[i] = tt_commit(a);
            CHECK_OK(b, td_crdt_text_insert(b, tb, at + i, "b", 1));
            kb[i] = tt_commit(b);
        }
        for (size_t i = 0; i < 4; i++) {
            tt_apply_ok(a, &kb[i], NULL);
            tt_apply_ok(b, &ka[i], NULL);
        }
        for (size_t i = 0; i < 4; i++) {
            tt_bytes_free(&ka[i]);
            tt_bytes_free(&kb[i]);
        }
    }
    char *sa = tt_text(a, ta), *sb = tt_text(b, tb);
    char want1[16], want2[16];
    snprintf(want1, sizeof want1, "%.*saaaabbbb%s", (int)at, base, base + at);
    snprintf(want2, sizeof want2, "%.*sbbbbaaaa%s", (int)at, base, base + at);
    int ok = strcmp(sa, sb) == 0 && (strcmp(sa, want1) == 0 || strcmp(sa, want2) == 0);
    if (!ok)
        fprintf(stderr, "commit_each=%d empty=%d: a=\"%s\" b=\"%s\"\n", commit_each,
                empty_base, sa, sb);
    free(sa);
    free(sb);
    CHECK(ok);
    same_state(a, b);
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
}

static void test_concurrent_no_interleave(void)
{
    no_interleave(0, 0);
    no_interleave(1, 0);
    no_interleave(0, 1);
    no_interleave(1, 1);

    /* Three replicas typing at one spot: three whole runs. */
    td_crdt_doc *d[3] = {tt_new_doc(1), tt_new_doc(2), tt_new_doc(3)};
    td_crdt_obj t[3];
    for (int i = 0; i < 3; i++)
        t[i] = root(d[i], TD_CRDT_TEXT, "t");
    ins(d[0], t[0], 0, "[]");
    tt_bytes seed = tt_commit(d[0]);
    tt_apply_ok(d[1], &seed, NULL);
    tt_apply_ok(d[2], &seed, NULL);
    type_at(d[0], t[0], 1, "000");
    type_at(d[1], t[1], 1, "111");
    type_at(d[2], t[2], 1, "222");
    tt_bytes bt[3];
    for (int i = 0; i < 3; i++)
        bt[i] = tt_commit(d[i]);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (i != j)
                tt_apply_ok(d[i], &bt[j], NULL);
    char *s0 = tt_text(d[0], t[0]);
    CHECK(strlen(s0) == 11 && s0[0] == '[' && s0[10] == ']');
    for (int k = 0; k < 3; k++) /* each run is contiguous */
        CHECK(s0[1 + 3 * k] == s0[2 + 3 * k] && s0[2 + 3 * k] == s0[3 + 3 * k]);
    free(s0);
    same_state(d[0], d[1]);
    same_state(d[0], d[2]);
    tt_bytes_free(&seed);
    for (int i = 0; i < 3; i++) {
        tt_bytes_free(&bt[i]);
        td_crdt_doc_free(d[i]);
    }
}

static void test_concurrent_delete_insert(void)
{
    td_crdt_doc *a = tt_new_doc(1), *b = tt_new_doc(2);
    td_crdt_obj ta = root(a, TD_CRDT_TEXT, "t"), tb = root(b, TD_CRDT_TEXT, "t");
    ins(a, ta, 0, "abcdef");
    tt_sync_one_way(a, b);
    CHECK_OK(a, td_crdt_text_delete(a, ta, 1, 4)); /* "af" */
    ins(b, tb, 3, "X");                            /* "abcXdef" */
    tt_sync_both(a, b);
    text_is(a, ta, "aXf");
    text_is(b, tb, "aXf");
    /* Both delete overlapping ranges: each character goes once. */
    ins(a, ta, 3, "ghij"); /* aXfghij */
    tt_sync_both(a, b);
    CHECK_OK(a, td_crdt_text_delete(a, ta, 2, 3)); /* aXij */
    CHECK_OK(b, td_crdt_text_delete(b, tb, 3, 3)); /* aXfj */
    tt_sync_both(a, b);
    text_is(a, ta, "aXj");
    same_state(a, b);

    /* Same for a list. */
    td_crdt_obj la = root(a, TD_CRDT_LIST, "l"), lb = root(b, TD_CRDT_LIST, "l");
    td_crdt_value vals[] = {v_int(1), v_int(2), v_int(3), v_int(4)};
    CHECK_OK(a, td_crdt_list_insert(a, la, 0, vals, 4));
    tt_sync_both(a, b);
    CHECK_OK(a, td_crdt_list_delete(a, la, 1, 2));
    td_crdt_value nine = v_int(9);
    CHECK_OK(b, td_crdt_list_insert(b, lb, 2, &nine, 1));
    CHECK_OK(b, td_crdt_list_delete(b, lb, 0, 2));
    tt_sync_both(a, b);
    json_is(a, "{\"l\":[9,4],\"t\":\"aXj\"}");
    same_state(a, b);
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
}

/* ---- change events -------------------------------------------------------- */

typedef struct ev_log {
    td_crdt_event ev[64];
    char keys[64][16];
    size_t n;
} ev_log;

static void log_event(void *ud, const td_crdt_event *ev)
{
    ev_log *l = ud;
    if (l->n < 64) {
        l->ev[l->n] = *ev;
        size_t kl = ev->key_len < 15 ? ev->key_len : 15;
        if (ev->key && kl)
            memcpy(l->keys[l->n], ev->key, kl);
        l->keys[l->n][kl] = 0;
    }
    l->n++;
}

/* Sum of counts of events of `kind` on obj; all must have local == loc. */
static size_t ev_sum(const ev_log *l, td_crdt_event_kind kind, td_crdt_obj obj, int loc)
{
    size_t sum = 0;
    for (size_t i = 0; i < l->n && i < 64; i++) {
        if (l->ev[i].kind != kind || l->ev[i].obj != obj)
            continue;
        CHECK(l->ev[i].local == loc);
        sum += kind == TD_CRDT_EV_KEY ? 1 : l->ev[i].count;
    }
    return sum;
}

static void test_observer(void)
{
    ev_log la, lb;
    memset(&la, 0, sizeof la);
    memset(&lb, 0, sizeof lb);
    td_crdt_doc *a = tt_new_doc(1), *b = tt_new_doc(2);
    td_crdt_set_observer(a, log_event, &la);
    td_crdt_set_observer(b, log_event, &lb);
    td_crdt_obj t = root(a, TD_CRDT_TEXT, "t"), l = root(a, TD_CRDT_LIST, "l");
    td_crdt_obj m = root(a, TD_CRDT_MAP, "m");
    CHECK(la.n == 0); /* roots need no op and change nothing visible */

    ins(a, t, 0, "hello");
    CHECK(ev_sum(&la, TD_CRDT_EV_INSERT, t, 1) == 5);
    CHECK(la.n >= 1 && la.ev[0].pos == 0);
    la.n = 0;
    CHECK_OK(a, td_crdt_text_delete(a, t, 1, 3)); /* "ho" */
    CHECK(ev_sum(&la, TD_CRDT_EV_DELETE, t, 1) == 3);
    CHECK(la.n >= 1 && la.ev[0].pos == 1);
    la.n = 0;
    td_crdt_value vals[] = {v_int(1), v_int(2)};
    CHECK_OK(a, td_crdt_list_insert(a, l, 0, vals, 2));
    CHECK(ev_sum(&la, TD_CRDT_EV_INSERT, l, 1) == 2);
    la.n = 0;
    map_set_int(a, m, "k", 3);
    CHECK(la.n == 1 && la.ev[0].kind == TD_CRDT_EV_KEY && la.ev[0].obj == m &&
          la.ev[0].local == 1 && strcmp(la.keys[0], "k") == 0);
    la.n = 0;
    /* A failed call says nothing. */
    CHECK_ERR(a, TD_CRDT_ERR_ARG, td_crdt_text_insert(a, t, 99, "x", 1));
    CHECK(la.n == 0);

    /* Remote: the same changes, local == 0, and nothing for duplicates. */
    tt_bytes b1 = tt_commit(a);
    tt_apply_ok(b, &b1, NULL);
    td_crdt_obj bt = root(b, TD_CRDT_TEXT, "t"), bl = root(b, TD_CRDT_LIST, "l");
    td_crdt_obj bm = root(b, TD_CRDT_MAP, "m");
    size_t ins_t = ev_sum(&lb, TD_CRDT_EV_INSERT, bt, 0);
    size_t del_t = ev_sum(&lb, TD_CRDT_EV_DELETE, bt, 0);
    CHECK(ins_t - del_t == 2); /* "ho"; deleted text may never show up */
    CHECK(ev_sum(&lb, TD_CRDT_EV_INSERT, bl, 0) == 2);
    CHECK(ev_sum(&lb, TD_CRDT_EV_KEY, bm, 0) == 1);
    lb.n = 0;
    tt_apply_ok(b, &b1, NULL);
    CHECK(lb.n == 0);

    /* A remote insert in the middle names its visible position. */
    ins(a, t, 1, "XY"); /* "hXYo" */
    tt_bytes b2 = tt_commit(a);
    CHECK_OK(a, td_crdt_text_delete(a, t, 0, 1)); /* "XYo" */
    tt_bytes b3 = tt_commit(a);
    /* b3 first: parked, no events; then b2 releases both. */
    tt_apply_ok(b, &b3, NULL);
    CHECK(lb.n == 0);
    tt_apply_ok(b, &b2, NULL);
    CHECK(ev_sum(&lb, TD_CRDT_EV_INSERT, bt, 0) == 2);
    CHECK(ev_sum(&lb, TD_CRDT_EV_DELETE, bt, 0) == 1);
    CHECK(lb.n >= 2 && lb.ev[0].kind == TD_CRDT_EV_INSERT && lb.ev[0].pos == 1);
    CHECK(lb.ev[lb.n - 1].kind == TD_CRDT_EV_DELETE && lb.ev[lb.n - 1].pos == 0);
    text_is(b, bt, "XYo");

    /* Removing the observer. */
    td_crdt_set_observer(b, NULL, NULL);
    lb.n = 0;
    ins(b, bt, 0, "z");
    CHECK(lb.n == 0);
    tt_bytes_free(&b1);
    tt_bytes_free(&b2);
    tt_bytes_free(&b3);
    td_crdt_doc_free(a);
    td_crdt_doc_free(b);
}

/* ---- allocation hook ------------------------------------------------------ */

typedef struct counting_alloc {
    long live;      /* blocks currently allocated */
    long calls;     /* successful allocations so far */
    long fail_from; /* allocations from this index on fail; -1: never */
} counting_alloc;

/* Each block carries its size in a header so that frees can be counted. */
static void *counting_fn(void *ud, void *ptr, size_t size)
{
    counting_alloc *ca = ud;
    if (size == 0) {
        if (ptr) {
            ca->live--;
            free((char *)ptr - 16);
        }
        return NULL;
    }
    if (ca->fail_from >= 0 && ca->calls >= ca->fail_from)
        return NULL;
    char *base = ptr ? (char *)ptr - 16 : NULL;
    char *n = realloc(base, size + 16);
    if (!n)
        return NULL;
    ca->calls++;
    if (!ptr)
        ca->live++;
    return n + 16;
}

static void test_alloc_hook(void)
{
    /* A fixed script of edits and syncs, under a hook that fails at the
     * k-th allocation: every call returns OK or NOMEM, and nothing leaks. */
    td_crdt_doc *src = tt_new_doc(9), *peer = tt_new_doc(8);
    build_concurrent(src, peer);
    td_crdt_doc_free(peer);
    tt_bytes whole = tt_diff(src, NULL);
    tt_bytes snap = tt_snap(src);
    for (long k = 0; k < 400; k++) {
        counting_alloc ca = {0, 0, k};
        td_crdt_options o;
        memset(&o, 0, sizeof o);
        o.alloc = counting_fn;
        o.alloc_ud = &ca;
        o.agent = 5;
        td_crdt_doc *d = NULL;
        td_crdt_err e = td_crdt_doc_new(&o, &d);
        if (e != TD_CRDT_OK) {
            CHECK_ERR(NULL, TD_CRDT_ERR_NOMEM, e);
            CHECK(d == NULL);
            CHECK(ca.live == 0);
            continue;
        }
        td_crdt_obj t = 0;
        e = td_crdt_root(d, TD_CRDT_TEXT, "body", 4, &t);
        CHECK(e == TD_CRDT_OK || e == TD_CRDT_ERR_NOMEM);
        if (e == TD_CRDT_OK) {
            e = td_crdt_text_insert(d, t, 0, "abc", 3);
            CHECK(e == TD_CRDT_OK || e == TD_CRDT_ERR_NOMEM);
        }
        /* Apply under failure must be all or nothing. */
        long saved = ca.fail_from;
        ca.fail_from = -1;
        tt_bytes before = tt_snap(d);
        ca.fail_from = saved;
        e = td_crdt_apply(d, whole.p, whole.len, NULL);
        CHECK(e == TD_CRDT_OK || e == TD_CRDT_ERR_NOMEM);
        ca.fail_from = -1;
        if (e != TD_CRDT_OK) {
            /* Out of memory mid-batch: what was integrated is a consistent,
             * causally complete prefix, and applying the batch again (with
             * memory) completes it to what a clean apply gives. */
            char why[512];
            CHECK_MSG(tt_doc_valid(d, why, sizeof why),
                      "k=%ld: apply failed with nomem and left an invalid document: %s", k,
                      why);
            CHECK(td_crdt_pending_ops(d) == 0);
            td_crdt_doc *ref = tt_load_doc(6, &before);
            tt_apply_ok(ref, &whole, NULL);
            tt_bytes want = tt_snap(ref);
            td_crdt_doc_free(ref);
            td_crdt_apply_info info;
            CHECK_MSG(td_crdt_apply(d, whole.p, whole.len, &info) == TD_CRDT_OK,
                      "k=%ld: applying the batch again after nomem failed: %s", k,
                      td_crdt_doc_error(d));
            CHECK(info.parked == 0 && td_crdt_pending_ops(d) == 0);
            tt_bytes got = tt_snap(d);
            int same = tt_bytes_eq(&got, &want);
            tt_bytes_free(&got);
            tt_bytes_free(&want);
            CHECK_MSG(same, "k=%ld: nomem, then the same batch again, does not give what one"
                      " clean apply gives", k);
        }
        ca.fail_from = saved;
        tt_bytes_free(&before);
        uint8_t *out = NULL;
        size_t len = 0;
        e = td_crdt_snapshot_encode(d, &out, &len);
        CHECK(e == TD_CRDT_OK || e == TD_CRDT_ERR_NOMEM);
        if (e == TD_CRDT_OK)
            td_crdt_buf_free(d, out);
        char *js = NULL;
        e = td_crdt_to_json(d, &js, &len);
        CHECK(e == TD_CRDT_OK || e == TD_CRDT_ERR_NOMEM);
        if (e == TD_CRDT_OK)
            td_crdt_buf_free(d, js);
        td_crdt_doc_free(d);
        CHECK_MSG(ca.live == 0, "k=%ld: %ld blocks leaked", k, ca.live);

        /* Loading under failure. */
        ca.calls = 0;
        ca.live = 0;
        const char *msg = NULL;
        d = NULL;
        e = td_crdt_doc_load(&o, snap.p, snap.len, &d, &msg);
        CHECK_MSG(e == TD_CRDT_OK || e == TD_CRDT_ERR_NOMEM,
                  "k=%ld: doc_load with allocation %ld failing returned %s (%s)", k, k,
                  td_crdt_strerror(e), msg ? msg : "");
        if (e != TD_CRDT_OK) {
            CHECK(d == NULL && msg != NULL);
        } else {
            td_crdt_doc_free(d);
        }
        CHECK_MSG(ca.live == 0, "load k=%ld: %ld blocks leaked", k, ca.live);
    }
    tt_bytes_free(&whole);
    tt_bytes_free(&snap);
    td_crdt_doc_free(src);
}

int main(int argc, char **argv)
{
    (void)argc;
    static const td_check_case tests[] = {
        {"strerror", test_strerror},
        {"error_messages", test_error_messages},
        {"new_doc", test_new_doc},
        {"roots", test_roots},
        {"text_ascii", test_text_ascii},
        {"text_multibyte", test_text_multibyte},
        {"text_invalid_utf8", test_text_invalid_utf8},
        {"text_bounds", test_text_bounds},
        {"list_scalars", test_list_scalars},
        {"list_nested", test_list_nested},
        {"map_basic", test_map_basic},
        {"map_lww", test_map_lww},
        {"nested", test_nested},
        {"nested_same_batch", test_nested_same_batch},
        {"max_depth", test_max_depth},
        {"commit_apply", test_commit_apply},
        {"apply_idempotent", test_apply_idempotent},
        {"out_of_order", test_out_of_order},
        {"pending_bound", test_pending_bound},
        {"vv", test_vv},
        {"diff_empty_vv", test_diff_empty_vv},
        {"diff_from_peer", test_diff_from_peer},
        {"snapshot_roundtrip", test_snapshot_roundtrip},
        {"snapshot_canonical", test_snapshot_canonical},
        {"to_json", test_to_json},
        {"to_json_escapes", test_to_json_escapes},
        {"concurrent_no_interleave", test_concurrent_no_interleave},
        {"concurrent_delete_insert", test_concurrent_delete_insert},
        {"observer", test_observer},
        {"alloc_hook", test_alloc_hook},
    };
    return td_check_cases(tests, sizeof tests / sizeof tests[0], argv[0], NULL);
}
