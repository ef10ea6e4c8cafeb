/*
 * test_store_kind.c -- document kinds in the store (storage/, issue 12):
 * the first append names a document's kind and the metadata keeps it
 * across a reopen; an append or a load of the other kind is
 * TD_STORE_ERR_KIND and changes nothing; a Yjs document loads through
 * td_store_load_yjs and compacts into one whole-document update, pending
 * structs included.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tandem_store.h"
#include "tandem_yjs.h"
#include "td_check.h"

/* Hand-encoded Yjs v1 updates: client 1 inserts "hi" into the root text
 * "t"; client 1's clock 2 appends "!" after clock 1 ("i"); client 5 at
 * clock 3 names an origin (5, 2) nobody has: it waits. */
static const uint8_t U_HI[] = {1, 1, 1, 0, 4, 1, 1, 't', 2, 'h', 'i', 0};
static const uint8_t U_BANG[] = {1, 1, 1, 2, 0x84, 1, 1, 1, '!', 0};
static const uint8_t U_PENDING[] = {1, 1, 5, 3, 0x84, 5, 2, 1, '?', 0};

static td_store *open_store(const char *dir)
{
    td_store_options o = {0};
    td_store *st = NULL;
    td_store_error e = {0};
    o.create_if_missing = 1;
    o.compaction = TD_STORE_COMPACT_MANUAL;
    if (td_store_open(dir, &o, &st, &e) != TD_STORE_OK)
        fprintf(stderr, "open %s: %s\n", dir, e.msg);
    return st;
}

static td_store_err append(td_store *st, const char *doc, const uint8_t *p, size_t len,
                           td_store_kind kind)
{
    td_store_batch b;
    td_store_error e = {0};
    uint64_t seq;
    memset(&b, 0, sizeof b);
    b.doc = doc;
    b.doc_len = strlen(doc);
    b.ops = p;
    b.ops_len = len;
    b.nops = 1;
    b.kind = kind;
    return td_store_append_wait(st, &b, &seq, &e);
}

static char *text_of(td_store *st, const char *doc)
{
    td_yjs_doc *d = NULL;
    td_store_error e = {0};
    char *json = NULL, *copy = NULL;
    size_t len;
    if (td_store_load_yjs(st, doc, strlen(doc), NULL, &d, NULL, &e) != TD_STORE_OK) {
        fprintf(stderr, "load %s: %s\n", doc, e.msg);
        return NULL;
    }
    if (td_yjs_to_json(d, 0, &json, &len) == TD_YJS_OK)
        copy = strdup(json);
    td_yjs_buf_free(d, json);
    td_yjs_doc_free(d);
    return copy;
}

int main(void)
{
    char dir[] = "/tmp/tandem-kind-XXXXXX";
    td_store *st = NULL;
    td_store_error e = {0};
    td_store_doc_info info;
    td_crdt_doc *cd = NULL;
    char *json = NULL;

    td_check_keep_going = 1;
    REQUIRE(mkdtemp(dir) != NULL);
    REQUIRE((st = open_store(dir)) != NULL);

    CHECK(append(st, "y", U_HI, sizeof U_HI, TD_STORE_KIND_YJS) == TD_STORE_OK);
    CHECK(append(st, "y", U_BANG, sizeof U_BANG, TD_STORE_KIND_TANDEM) == TD_STORE_ERR_KIND);
    CHECK(append(st, "y", U_BANG, sizeof U_BANG, TD_STORE_KIND_YJS) == TD_STORE_OK);
    CHECK(append(st, "y", U_PENDING, sizeof U_PENDING, TD_STORE_KIND_YJS) == TD_STORE_OK);
    CHECK(td_store_doc_stat(st, "y", 1, &info, &e) == TD_STORE_OK && info.kind == TD_STORE_KIND_YJS &&
          info.last_seq == 3);
    CHECK(td_store_load(st, "y", 1, NULL, &cd, NULL, &e) == TD_STORE_ERR_KIND);
    json = text_of(st, "y");
    CHECK_MSG(json && strcmp(json, "{\"t\":\"hi!\"}") == 0, "loaded %s", json ? json : "(null)");
    free(json);

    /* Compaction folds the log, the pending struct included. */
    td_store_compact_info ci;
    CHECK(td_store_compact(st, "y", 1, 1, &ci, &e) == TD_STORE_OK && ci.compacted);
    CHECK(td_store_doc_stat(st, "y", 1, &info, &e) == TD_STORE_OK && info.snap_seq == 3 &&
          info.log_entries == 0 && info.kind == TD_STORE_KIND_YJS);
    td_store_close(st);

    /* After a reopen: the kind stays; the pending struct is still there. */
    REQUIRE((st = open_store(dir)) != NULL);
    CHECK(append(st, "y", U_HI, sizeof U_HI, TD_STORE_KIND_TANDEM) == TD_STORE_ERR_KIND);
    json = text_of(st, "y");
    CHECK_MSG(json && strcmp(json, "{\"t\":\"hi!\"}") == 0, "after compaction %s",
              json ? json : "(null)");
    free(json);
    {
        td_yjs_doc *d = NULL;
        td_yjs_stats ys;
        CHECK(td_store_load_yjs(st, "y", 1, NULL, &d, NULL, &e) == TD_STORE_OK);
        if (d) {
            td_yjs_doc_stats(d, &ys);
            CHECK_MSG(ys.pending_structs == 1, "%zu pending after compaction", ys.pending_structs);
            td_yjs_doc_free(d);
        }
    }
    /* A tandem document (kind 0, the old format byte) refuses Yjs. */
    CHECK(td_store_doc_stat(st, "nope", 4, &info, &e) == TD_STORE_ERR_NOT_FOUND);
    {
        td_crdt_options o = {0};
        td_crdt_doc *t = NULL;
        uint8_t *batch = NULL;
        size_t blen = 0;
        o.agent = 77;
        REQUIRE(td_crdt_doc_new(&o, &t) == TD_CRDT_OK);
        td_crdt_obj root;
        if (td_crdt_root(t, TD_CRDT_TEXT, "body", 4, &root) == TD_CRDT_OK &&
            td_crdt_text_insert(t, root, 0, "x", 1) == TD_CRDT_OK &&
            td_crdt_commit(t, &batch, &blen) == TD_CRDT_OK) {
            CHECK(append(st, "t", batch, blen, TD_STORE_KIND_TANDEM) == TD_STORE_OK);
            CHECK(append(st, "t", U_HI, sizeof U_HI, TD_STORE_KIND_YJS) == TD_STORE_ERR_KIND);
            td_yjs_doc *d = NULL;
            CHECK(td_store_load_yjs(st, "t", 1, NULL, &d, NULL, &e) == TD_STORE_ERR_KIND);
            CHECK(td_store_doc_stat(st, "t", 1, &info, &e) == TD_STORE_OK &&
                  info.kind == TD_STORE_KIND_TANDEM && info.last_seq == 1);
        } else {
            CHECK_MSG(0, "could not build a tandem batch");
        }
        if (batch)
            td_crdt_buf_free(t, batch);
        td_crdt_doc_free(t);
    }
    td_store_close(st);
    st = NULL;
out:
    if (st)
        td_store_close(st);
    {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
    return td_check_status("store_kind");
}
