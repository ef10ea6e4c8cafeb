/*
 * conform_main.c -- the native half of the JS/C conformance test
 * (client-js/test/conformance.test.mjs).
 *
 * The same core is compiled twice: natively (libtandem_crdt, what the server
 * runs) and to WebAssembly (what tandem-client runs). Conformance means the
 * two agree byte for byte, so this program lets the JS test cross the line
 * both ways:
 *
 *   td-conform apply SNAP BATCH...   applies batch files (from the JS
 *                                     client) to a fresh native replica,
 *                                     writes its snapshot to SNAP and prints
 *                                     its JSON
 *   td-conform edit SEED DIR          makes a seeded random history natively
 *                                     (text with multi-byte code points,
 *                                     lists, maps, nested objects), writes
 *                                     each committed batch to DIR/NNNN.bin,
 *                                     the snapshot to DIR/snap.bin and prints
 *                                     the JSON
 *
 * Exit status 0 on success, 1 on a core error (message on stderr), 2 on
 * usage or I/O errors.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tandem_crdt.h"

static int fail_core(td_crdt_doc *doc, const char *what, td_crdt_err err)
{
    fprintf(stderr, "td-conform: %s: %s: %s\n", what, td_crdt_strerror(err),
            doc ? td_crdt_doc_error(doc) : "");
    return 1;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        uint8_t *grown = realloc(buf, cap * 2);
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown, cap *= 2;
    }
    fclose(f);
    *len = n;
    return buf;
}

static int write_file(const char *path, const uint8_t *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t put = len ? fwrite(p, 1, len, f) : 0;
    return fclose(f) == 0 && put == len ? 0 : -1;
}

/* Writes the snapshot to path and prints the JSON. */
static int finish(td_crdt_doc *doc, const char *path)
{
    uint8_t *snap = NULL;
    char *json = NULL;
    size_t len = 0, jlen = 0;
    td_crdt_err err = td_crdt_snapshot_encode(doc, &snap, &len);
    if (err)
        return fail_core(doc, "snapshot", err);
    if (write_file(path, snap, len) != 0) {
        fprintf(stderr, "td-conform: cannot write %s\n", path);
        td_crdt_buf_free(doc, snap);
        return 2;
    }
    td_crdt_buf_free(doc, snap);
    err = td_crdt_to_json(doc, &json, &jlen);
    if (err)
        return fail_core(doc, "to_json", err);
    fwrite(json, 1, jlen, stdout);
    putchar('\n');
    td_crdt_buf_free(doc, json);
    return 0;
}

static int cmd_apply(int argc, char **argv)
{
    td_crdt_options opts = {0};
    td_crdt_doc *doc = NULL;
    opts.agent = 0x5eed;
    td_crdt_err err = td_crdt_doc_new(&opts, &doc);
    if (err)
        return fail_core(NULL, "doc_new", err);
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        size_t len = 0;
        uint8_t *b = read_file(argv[i], &len);
        if (!b) {
            fprintf(stderr, "td-conform: cannot read %s\n", argv[i]);
            rc = 2;
            break;
        }
        err = td_crdt_apply(doc, b, len, NULL);
        free(b);
        if (err)
            rc = fail_core(doc, argv[i], err);
    }
    if (rc == 0 && td_crdt_pending_ops(doc) != 0) {
        fprintf(stderr, "td-conform: %zu ops still pending\n", td_crdt_pending_ops(doc));
        rc = 1;
    }
    if (rc == 0)
        rc = finish(doc, argv[0]);
    td_crdt_doc_free(doc);
    return rc;
}

/* xorshift64*: the history only has to be reproducible, not shared with JS. */
static uint64_t rnd_state;
static uint32_t rnd(uint32_t n)
{
    rnd_state ^= rnd_state >> 12, rnd_state ^= rnd_state << 25, rnd_state ^= rnd_state >> 27;
    return n ? (uint32_t)((rnd_state * 2685821657736338717ull) >> 33) % n : 0;
}

static const char *const PIECES[] = {"a", "b", "c", " ", "\n", "\xc3\xa9", "\xd0\x96",
                                     "\xe6\xbc\xa2", "\xf0\x9f\x98\x80", "xyz"};

static td_crdt_err one_edit(td_crdt_doc *doc, td_crdt_obj text, td_crdt_obj list,
                            td_crdt_obj map)
{
    uint32_t r = rnd(100);
    size_t tlen = td_crdt_text_length(doc, text), llen = td_crdt_list_length(doc, list);
    if (r < 50 || tlen == 0) {
        const char *p = PIECES[rnd(sizeof PIECES / sizeof PIECES[0])];
        return td_crdt_text_insert(doc, text, rnd((uint32_t)tlen + 1), p, strlen(p));
    }
    if (r < 70) {
        size_t pos = rnd((uint32_t)tlen), n = 1 + rnd(3);
        return td_crdt_text_delete(doc, text, pos, pos + n > tlen ? tlen - pos : n);
    }
    if (r < 80 && llen > 0)
        return td_crdt_list_delete(doc, list, rnd((uint32_t)llen), 1);
    if (r < 85) {
        td_crdt_obj nested;
        char key[8];
        snprintf(key, sizeof key, "o%u", (unsigned)rnd(4));
        td_crdt_err err = td_crdt_map_set_obj(doc, map, key, strlen(key), TD_CRDT_MAP, &nested);
        if (err)
            return err;
        td_crdt_value v = {0};
        v.type = TD_CRDT_V_STR, v.u.str.ptr = "deep", v.u.str.len = 4;
        return td_crdt_map_set(doc, nested, "k", 1, &v);
    }
    td_crdt_value v = {0};
    switch (rnd(5)) {
    case 0: v.type = TD_CRDT_V_NULL; break;
    case 1: v.type = TD_CRDT_V_TRUE; break;
    case 2: v.type = TD_CRDT_V_INT, v.u.i = (int64_t)rnd(1000000) - 500000; break;
    case 3: v.type = TD_CRDT_V_FLOAT, v.u.f = rnd(1000) / 8.0; break;
    default: v.type = TD_CRDT_V_STR, v.u.str.ptr = "str\xc3\xa9", v.u.str.len = 5; break;
    }
    if (r < 92)
        return td_crdt_list_insert(doc, list, rnd((uint32_t)llen + 1), &v, 1);
    char key[8];
    snprintf(key, sizeof key, "k%u", (unsigned)rnd(8));
    return td_crdt_map_set(doc, map, key, strlen(key), &v);
}

static int cmd_edit(const char *seed, const char *dir)
{
    td_crdt_options opts = {0};
    td_crdt_doc *doc = NULL;
    rnd_state = strtoull(seed, NULL, 10) * 0x9e3779b97f4a7c15ull + 1;
    opts.agent = 0xc0de0000ull + rnd_state % 1000;
    td_crdt_err err = td_crdt_doc_new(&opts, &doc);
    if (err)
        return fail_core(NULL, "doc_new", err);
    td_crdt_obj text, list, map;
    if ((err = td_crdt_root(doc, TD_CRDT_TEXT, "body", 4, &text)) ||
        (err = td_crdt_root(doc, TD_CRDT_LIST, "items", 5, &list)) ||
        (err = td_crdt_root(doc, TD_CRDT_MAP, "meta", 4, &map))) {
        int rc = fail_core(doc, "root", err);
        td_crdt_doc_free(doc);
        return rc;
    }
    int rc = 0;
    char path[4096];
    for (int batch = 0; batch < 60 && rc == 0; batch++) {
        for (uint32_t k = 1 + rnd(10); k > 0 && rc == 0; k--)
            if ((err = one_edit(doc, text, list, map)))
                rc = fail_core(doc, "edit", err);
        uint8_t *b = NULL;
        size_t len = 0;
        if (rc == 0 && (err = td_crdt_commit(doc, &b, &len)))
            rc = fail_core(doc, "commit", err);
        if (rc == 0 && b) {
            snprintf(path, sizeof path, "%s/%04d.bin", dir, batch);
            if (write_file(path, b, len) != 0) {
                fprintf(stderr, "td-conform: cannot write %s\n", path);
                rc = 2;
            }
        }
        if (b)
            td_crdt_buf_free(doc, b);
    }
    snprintf(path, sizeof path, "%s/snap.bin", dir);
    if (rc == 0)
        rc = finish(doc, path);
    td_crdt_doc_free(doc);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "apply") == 0)
        return cmd_apply(argc - 2, argv + 2);
    if (argc == 4 && strcmp(argv[1], "edit") == 0)
        return cmd_edit(argv[2], argv[3]);
    fprintf(stderr, "usage: td-conform apply SNAP BATCH... | td-conform edit SEED DIR\n");
    return 2;
}
