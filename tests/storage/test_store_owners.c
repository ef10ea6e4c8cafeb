/*
 * test_store_owners.c -- owner records (td_store_claim, td_store_owners):
 * written with their batch or not at all, kept across reopens, refused when
 * they would change an agent's owner, removed with the document, left by
 * compaction, carried by checkpoints, created in data directories from
 * before owner records, and every kind of damage reported as corrupt,
 * naming the document and the key.
 */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_codec.h"
#include "store_test_util.h"
#include "tandem_store.h"

static td_store *open_st(const char *dir, int read_only)
{
    td_store_options o = {0};
    td_store_error e = {0};
    td_store *st = NULL;
    o.create_if_missing = !read_only;
    o.read_only = read_only;
    o.compaction = TD_STORE_COMPACT_MANUAL;
    CHECK_OK(td_store_open(dir, &o, &st, &e), &e);
    return st;
}

/* A real batch: one text insert by `agent` (malloc'ed). */
static uint8_t *real_batch(uint64_t agent, size_t *len)
{
    td_crdt_options o = {0};
    td_crdt_doc *d = NULL;
    td_crdt_obj text;
    uint8_t *b = NULL, *copy;
    o.agent = agent;
    CHECK(td_crdt_doc_new(&o, &d) == TD_CRDT_OK);
    CHECK(td_crdt_root(d, TD_CRDT_TEXT, "body", 4, &text) == TD_CRDT_OK);
    CHECK(td_crdt_text_insert(d, text, 0, "hello", 5) == TD_CRDT_OK);
    CHECK(td_crdt_commit(d, &b, len) == TD_CRDT_OK);
    copy = malloc(*len);
    memcpy(copy, b, *len);
    td_crdt_buf_free(d, b);
    td_crdt_doc_free(d);
    return copy;
}

static td_store_batch mk_batch(const char *doc, const uint8_t *ops, size_t len,
                               const td_store_claim *c, size_t n)
{
    td_store_batch b;
    memset(&b, 0, sizeof b);
    b.doc = doc;
    b.doc_len = strlen(doc);
    b.ops = ops;
    b.ops_len = len;
    b.nops = 1;
    b.claims = c;
    b.nclaims = n;
    return b;
}

/* Appends a real batch of `agent` to doc carrying the given claims. */
static td_store_err append_claims(td_store *st, const char *doc, uint64_t agent,
                                  const td_store_claim *c, size_t n, uint64_t *seq,
                                  td_store_error *e)
{
    size_t len;
    uint8_t *ops = real_batch(agent, &len);
    td_store_batch b = mk_batch(doc, ops, len, c, n);
    td_store_err code = td_store_append_wait(st, &b, seq, e);
    free(ops);
    return code;
}

/* The owners of doc as "agent=owner;" text. */
typedef struct owners_text {
    char s[1024];
    size_t n;
    int stop_after; /* >0: return 1 after that many */
} owners_text;

static int collect(void *ud, uint64_t agent, const char *owner, size_t len)
{
    owners_text *t = ud;
    t->n += (size_t)snprintf(t->s + t->n, sizeof t->s - t->n, "%llu=%.*s;",
                             (unsigned long long)agent, (int)len, owner);
    if (t->stop_after > 0 && --t->stop_after == 0)
        return 1;
    return 0;
}

static const char *owners_of(td_store *st, const char *doc, owners_text *t)
{
    td_store_error e = {0};
    memset(t, 0, sizeof *t);
    CHECK_OK(td_store_owners(st, doc, strlen(doc), collect, t, &e), &e);
    return t->s;
}

static int fail_cb(void *ud, uint64_t agent, const char *owner, size_t len)
{
    (void)ud, (void)agent, (void)owner, (void)len;
    return -1;
}

#define CLAIM(a, s) {(a), (s), sizeof(s) - 1}

static void test_claims_kept(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_st(dir, 0);
    td_store_error e = {0};
    td_store_doc_info info;
    owners_text t;
    uint64_t seq = 0;
    const td_store_claim two[] = {CLAIM(7, "bob"), CLAIM(3, "alice")};
    const td_store_claim same[] = {CLAIM(3, "alice")};
    const td_store_claim other[] = {CLAIM(9, "carol"), CLAIM(3, "mallory")};
    const td_store_claim utf8[] = {CLAIM(UINT64_MAX, "J\xc3\xbcrgen")};

    CHECK_OK(append_claims(st, "doc", 3, two, 2, &seq, &e), &e);
    CHECK(seq == 1);
    CHECK_OK(append_claims(st, "doc", 3, NULL, 0, &seq, &e), &e);
    CHECK_MSG(strcmp(owners_of(st, "doc", &t), "3=alice;7=bob;") == 0, "%s", t.s);
    /* The same owner again: fine, nothing changes. */
    CHECK_OK(append_claims(st, "doc", 3, same, 1, &seq, &e), &e);
    CHECK(seq == 3);
    /* Another owner: the whole append is refused, its other claim too. */
    CHECK_CODE(TD_STORE_ERR_ARG, append_claims(st, "doc", 9, other, 2, &seq, &e), &e);
    CHECK_MSG(strstr(e.msg, "agent 3") && strstr(e.msg, "another owner"), "%s", e.msg);
    CHECK_OK(td_store_doc_stat(st, "doc", 3, &info, &e), &e);
    CHECK(info.last_seq == 3);
    CHECK_MSG(strcmp(owners_of(st, "doc", &t), "3=alice;7=bob;") == 0, "%s", t.s);
    CHECK_OK(append_claims(st, "doc", 5, utf8, 1, &seq, &e), &e);
    CHECK(seq == 4);
    /* Stopping early and failing callbacks. */
    memset(&t, 0, sizeof t);
    t.stop_after = 1;
    CHECK_OK(td_store_owners(st, "doc", 3, collect, &t, &e), &e);
    CHECK(strcmp(t.s, "3=alice;") == 0);
    CHECK_CODE(TD_STORE_ERR_NOMEM, td_store_owners(st, "doc", 3, fail_cb, NULL, &e), &e);
    CHECK_CODE(TD_STORE_ERR_ARG, td_store_owners(st, "doc", 3, NULL, NULL, &e), &e);
    CHECK_CODE(TD_STORE_ERR_ARG, td_store_owners(st, "", 0, collect, &t, &e), &e);
    /* No document, no owners. */
    CHECK(strcmp(owners_of(st, "nothing", &t), "") == 0);
    td_store_close(st);

    /* Reopened (and read-only): all there, the load validates them. */
    st = open_st(dir, 1);
    CHECK_MSG(strcmp(owners_of(st, "doc", &t),
                     "3=alice;7=bob;18446744073709551615=J\xc3\xbcrgen;") == 0,
              "%s", t.s);
    {
        td_crdt_doc *d = NULL;
        CHECK_OK(td_store_load(st, "doc", 3, NULL, &d, NULL, &e), &e);
        td_crdt_doc_free(d);
    }
    td_store_close(st);
    st = open_st(dir, 0);
    CHECK_CODE(TD_STORE_ERR_ARG, append_claims(st, "doc", 9, other, 2, &seq, &e), &e);
    td_store_close(st);
    free(dir);
}

static void test_claims_rejected(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_st(dir, 0);
    td_store_error e = {0};
    uint64_t seq;
    char long_name[300];
    const td_store_claim empty[] = {{1, "", 0}};
    const td_store_claim nul[] = {{1, NULL, 3}};
    const td_store_claim bad_utf8[] = {CLAIM(1, "\xff\xfe")};
    const td_store_claim twice[] = {CLAIM(1, "a"), CLAIM(1, "b")};
    const td_store_claim twice_same[] = {CLAIM(5, "a"), CLAIM(5, "a")};
    const td_store_claim one_a[] = {CLAIM(1, "a")};
    td_store_claim too_long[] = {{1, long_name, 256}};
    owners_text t;

    memset(long_name, 'x', sizeof long_name);
    CHECK_CODE(TD_STORE_ERR_ARG, append_claims(st, "d", 1, empty, 1, &seq, &e), &e);
    CHECK_CODE(TD_STORE_ERR_ARG, append_claims(st, "d", 1, nul, 1, &seq, &e), &e);
    CHECK_CODE(TD_STORE_ERR_ARG, append_claims(st, "d", 1, bad_utf8, 1, &seq, &e), &e);
    CHECK_CODE(TD_STORE_ERR_ARG, append_claims(st, "d", 1, twice, 2, &seq, &e), &e);
    CHECK_CODE(TD_STORE_ERR_ARG, append_claims(st, "d", 1, too_long, 1, &seq, &e), &e);
    CHECK_CODE(TD_STORE_ERR_ARG, append_claims(st, "d", 1, NULL, 2, &seq, &e), &e);
    too_long[0].owner_len = 255;
    CHECK_OK(append_claims(st, "d", 1, too_long, 1, &seq, &e), &e);
    CHECK_OK(append_claims(st, "d", 1, twice_same, 2, &seq, &e), &e);
    CHECK_CODE(TD_STORE_ERR_ARG, append_claims(st, "d", 1, one_a, 1, &seq, &e), &e);
    owners_of(st, "d", &t);
    CHECK_MSG(t.n == strlen("1=") + 255 + strlen(";5=a;"), "%s", t.s);
    CHECK(strcmp(t.s + t.n - 5, ";5=a;") == 0);
    td_store_close(st);
    free(dir);
}

/* Two appends queued together claiming one agent for different owners: the
 * first wins, the second fails and writes nothing. */
typedef struct acks {
    int n;
    td_store_err code[2];
    uint64_t seq[2];
} acks;

static void on_ack(void *ud, const td_store_ack *ack)
{
    acks *a = ud;
    CHECK(a->n < 2);
    a->code[a->n] = ack->code;
    a->seq[a->n] = ack->seq;
    a->n++;
}

static void test_claims_in_one_group(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_st(dir, 0);
    td_store_error e = {0};
    const td_store_claim c1[] = {CLAIM(4, "first")}, c2[] = {CLAIM(4, "second")};
    size_t len;
    uint8_t *ops = real_batch(4, &len);
    td_store_batch b;
    acks a = {0, {0, 0}, {0, 0}};
    owners_text t;

    for (int round = 0; round < 20; round++) {
        char doc[16];
        snprintf(doc, sizeof doc, "g%d", round);
        b = mk_batch(doc, ops, len, c1, 1);
        a.n = 0;
        CHECK_OK(td_store_append(st, &b, on_ack, &a, &e), &e);
        b.claims = c2;
        CHECK_OK(td_store_append(st, &b, on_ack, &a, &e), &e);
        while (a.n < 2)
            td_store_poll(st, -1);
        CHECK(a.code[0] == TD_STORE_OK && a.seq[0] == 1);
        CHECK(a.code[1] == TD_STORE_ERR_ARG && a.seq[1] == 0);
        CHECK(strcmp(owners_of(st, doc, &t), "4=first;") == 0);
    }
    free(ops);
    td_store_close(st);
    free(dir);
}

static void test_delete_compact_checkpoint(void)
{
    char *dir = st_tmpdir(), *cp = st_tmpdir();
    td_store *st = open_st(dir, 0);
    td_store_error e = {0};
    td_store_compact_info ci;
    owners_text t;
    uint64_t seq;
    const td_store_claim ca[] = {CLAIM(1, "ann")}, cab[] = {CLAIM(1, "ben")};

    CHECK_OK(append_claims(st, "a", 1, ca, 1, &seq, &e), &e);
    CHECK_OK(append_claims(st, "ab", 1, cab, 1, &seq, &e), &e);
    CHECK_OK(append_claims(st, "b", 1, ca, 1, &seq, &e), &e);
    /* Compaction folds the log, owners stay. */
    CHECK_OK(td_store_compact(st, "a", 1, 1, &ci, &e), &e);
    CHECK(ci.compacted);
    CHECK(strcmp(owners_of(st, "a", &t), "1=ann;") == 0);
    /* A checkpoint has them. */
    st_rmtree(cp);
    CHECK_OK(td_store_checkpoint(st, cp, &e), &e);
    /* Delete takes a's, leaves ab's and b's. */
    CHECK_OK(td_store_delete(st, "a", 1, &e), &e);
    CHECK(strcmp(owners_of(st, "a", &t), "") == 0);
    CHECK(strcmp(owners_of(st, "ab", &t), "1=ben;") == 0);
    CHECK(strcmp(owners_of(st, "b", &t), "1=ann;") == 0);
    /* A new document of that name starts without owners. */
    CHECK_OK(append_claims(st, "a", 1, cab, 1, &seq, &e), &e);
    CHECK(seq == 1);
    CHECK(strcmp(owners_of(st, "a", &t), "1=ben;") == 0);
    td_store_close(st);

    st = open_st(cp, 0);
    CHECK(strcmp(owners_of(st, "a", &t), "1=ann;") == 0);
    CHECK(strcmp(owners_of(st, "ab", &t), "1=ben;") == 0);
    td_store_close(st);
    free(cp);
    free(dir);
}

/* A data directory from before owner records: four families. */
static void test_old_directory(void)
{
    char *dir = st_tmpdir();
    static const char *names[4] = {"default", "log", "snap", "meta"};
    const rocksdb_options_t *cfo[4];
    rocksdb_column_family_handle_t *h[4];
    rocksdb_options_t *ro = rocksdb_options_create();
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    char *err = NULL;
    rocksdb_t *db;
    td_store *st;
    td_store_error e = {0};
    td_store_doc_info info;
    owners_text t;
    uint64_t seq;
    size_t n = 0;
    char **fams;
    const td_store_claim c[] = {CLAIM(2, "old")};

    rocksdb_options_set_create_if_missing(ro, 1);
    rocksdb_options_set_create_missing_column_families(ro, 1);
    for (int i = 0; i < 4; i++)
        cfo[i] = ro;
    db = rocksdb_open_column_families(ro, dir, 4, names, cfo, h, &err);
    CHECK_MSG(err == NULL, "%s", err);
    rocksdb_put_cf(db, wo, h[0], "tandem-format", 13, "1", 1, &err);
    CHECK(err == NULL);
    for (int i = 0; i < 4; i++)
        rocksdb_column_family_handle_destroy(h[i]);
    rocksdb_close(db);

    /* Read-only: opens, no owners anywhere. */
    st = open_st(dir, 1);
    CHECK(strcmp(owners_of(st, "x", &t), "") == 0);
    CHECK_CODE(TD_STORE_ERR_NOT_FOUND, td_store_doc_stat(st, "x", 1, &info, &e), &e);
    td_store_close(st);
    /* Read-write: the family is created. */
    st = open_st(dir, 0);
    CHECK_OK(append_claims(st, "x", 2, c, 1, &seq, &e), &e);
    td_store_close(st);
    fams = rocksdb_list_column_families(ro, dir, &n, &err);
    CHECK(err == NULL && n == 5);
    rocksdb_list_column_families_destroy(fams, n);
    st = open_st(dir, 1);
    CHECK(strcmp(owners_of(st, "x", &t), "2=old;") == 0);
    td_store_close(st);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_options_destroy(ro);
    free(dir);
}

/* ---- damage ------------------------------------------------------------- */

static size_t owner_key(uint8_t *out, const char *doc, uint64_t agent)
{
    return st_log_key(out, doc, agent); /* the same layout */
}

/* Builds a store with doc "d" (owners 1 and 2) and "e" (owner 1), damages
 * it with fn, and checks that d's owners and load are corrupt, naming the
 * key `want`, and e is fine. */
static void damaged(void (*fn)(st_raw *r), const char *want)
{
    char *dir = st_tmpdir();
    td_store *st = open_st(dir, 0);
    td_store_error e = {0};
    owners_text t;
    uint64_t seq;
    td_crdt_doc *d = NULL;
    st_raw raw;
    const td_store_claim cd[] = {CLAIM(1, "dora"), CLAIM(2, "dan")};
    const td_store_claim ce[] = {CLAIM(1, "eve")};

    CHECK_OK(append_claims(st, "d", 1, cd, 2, &seq, &e), &e);
    CHECK_OK(append_claims(st, "e", 1, ce, 1, &seq, &e), &e);
    td_store_close(st);
    CHECK(st_raw_open(&raw, dir) == 0);
    fn(&raw);
    st_raw_close(&raw);

    st = open_st(dir, 0);
    memset(&t, 0, sizeof t);
    CHECK_CODE(TD_STORE_ERR_CORRUPT, td_store_owners(st, "d", 1, collect, &t, &e), &e);
    CHECK_MSG(strstr(e.msg, "document 'd'") && strstr(e.msg, want), "%s", e.msg);
    CHECK_CODE(TD_STORE_ERR_CORRUPT, td_store_load(st, "d", 1, NULL, &d, NULL, &e), &e);
    CHECK_MSG(strstr(e.msg, want) != NULL, "%s", e.msg);
    CHECK(strcmp(owners_of(st, "e", &t), "1=eve;") == 0);
    CHECK_OK(td_store_load(st, "e", 1, NULL, &d, NULL, &e), &e);
    td_crdt_doc_free(d);
    /* Delete still works, and takes the damage with it. */
    CHECK_OK(td_store_delete(st, "d", 1, &e), &e);
    CHECK(strcmp(owners_of(st, "d", &t), "") == 0);
    td_store_close(st);
    free(dir);
}

static char *get_owner(st_raw *r, const char *doc, uint64_t agent, size_t *len)
{
    uint8_t k[300];
    char *v = st_raw_get(r, ST_CF_OWNER, k, owner_key(k, doc, agent), len);
    CHECK(v != NULL);
    return v;
}

static void put_owner(st_raw *r, const char *doc, uint64_t agent, const char *v,
                      size_t len)
{
    uint8_t k[300];
    st_raw_put(r, ST_CF_OWNER, k, owner_key(k, doc, agent), v, len);
}

static void flip_bit(st_raw *r)
{
    size_t len;
    char *v = get_owner(r, "d", 2, &len);
    v[2] ^= 0x10;
    put_owner(r, "d", 2, v, len);
    free(v);
}

static void truncate_value(st_raw *r)
{
    size_t len;
    char *v = get_owner(r, "d", 2, &len);
    put_owner(r, "d", 2, v, 5);
    free(v);
}

static void empty_value(st_raw *r)
{
    put_owner(r, "d", 2, "", 0);
}

static void bad_format(st_raw *r)
{
    size_t len;
    char *v = get_owner(r, "d", 2, &len);
    v[0] = 2;
    put_owner(r, "d", 2, v, len);
    free(v);
}

static void other_agent(st_raw *r)
{
    size_t len;
    char *v = get_owner(r, "d", 1, &len);
    put_owner(r, "d", 2, v, len);
    free(v);
}

static void other_doc(st_raw *r)
{
    size_t len;
    char *v = get_owner(r, "e", 1, &len);
    put_owner(r, "d", 2, v, len);
    free(v);
}

static void malformed_key(st_raw *r)
{
    uint8_t k[8] = {1, 'd', 0, 0, 0};
    st_raw_put(r, ST_CF_OWNER, k, 5, "x", 1);
}

/* A value with a correct digest whose name is not UTF-8. */
static void not_utf8(st_raw *r)
{
    uint8_t v[TD_STORE_OWNER_VALUE_MAX];
    td_store_owner_value_encode(v, "d", 1, 2, "\xc3(", 2);
    put_owner(r, "d", 2, (const char *)v, td_store_owner_value_size(2));
}

static void test_damage(void)
{
    static const struct {
        const char *name;
        void (*fn)(st_raw *r);
        const char *key;
    } cases[] = {
        {"flip_bit", flip_bit, "owner/d/2"},
        {"truncate_value", truncate_value, "owner/d/2"},
        {"empty_value", empty_value, "owner/d/2"},
        {"bad_format", bad_format, "owner/d/2"},
        {"other_agent", other_agent, "owner/d/2"},
        {"other_doc", other_doc, "owner/d/2"},
        {"not_utf8", not_utf8, "owner/d/2"},
        {"malformed_key", malformed_key, "owner/d/"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fprintf(stderr, "damage: %s\n", cases[i].name);
        damaged(cases[i].fn, cases[i].key);
    }
}

/* Owner records without the document's metadata. */
static void test_orphan_owners(void)
{
    char *dir = st_tmpdir();
    td_store *st = open_st(dir, 0);
    td_store_error e = {0};
    td_store_doc_info info;
    owners_text t;
    uint64_t seq;
    st_raw raw;
    uint8_t k[300];
    const td_store_claim c[] = {CLAIM(1, "o")};

    CHECK_OK(append_claims(st, "o", 1, c, 1, &seq, &e), &e);
    td_store_close(st);
    CHECK(st_raw_open(&raw, dir) == 0);
    st_raw_del(&raw, ST_CF_META, "o", 1);
    st_raw_del(&raw, ST_CF_LOG, k, st_log_key(k, "o", 1));
    st_raw_close(&raw);
    st = open_st(dir, 0);
    CHECK_CODE(TD_STORE_ERR_CORRUPT, td_store_doc_stat(st, "o", 1, &info, &e), &e);
    CHECK_MSG(strstr(e.msg, "owner records are present") != NULL, "%s", e.msg);
    CHECK_OK(td_store_delete(st, "o", 1, &e), &e);
    CHECK_CODE(TD_STORE_ERR_NOT_FOUND, td_store_doc_stat(st, "o", 1, &info, &e), &e);
    CHECK(strcmp(owners_of(st, "o", &t), "") == 0);
    td_store_close(st);
    free(dir);
}

int main(int argc, char **argv)
{
    int failed = 0;
    (void)argc;
    (void)argv;
    failed += st_test_run("claims_kept", test_claims_kept);
    failed += st_test_run("claims_rejected", test_claims_rejected);
    failed += st_test_run("claims_in_one_group", test_claims_in_one_group);
    failed += st_test_run("delete_compact_checkpoint", test_delete_compact_checkpoint);
    failed += st_test_run("old_directory", test_old_directory);
    failed += st_test_run("damage", test_damage);
    failed += st_test_run("orphan_owners", test_orphan_owners);
    return failed ? 1 : 0;
}
