/*
 * test_offline.c -- bar 2 of issue 5: a client disconnects, makes 1,000
 * edits while another keeps editing, reconnects; both converge, and the
 * bytes each side sent on reconnect are of the order of the missing ops, not
 * of the whole document.
 *
 * The document is made large first (about 60,000 characters of text), so
 * that "the whole document" and "the missing ops" differ by more than an
 * order of magnitude. What each side should send is computed from the
 * replicas themselves: the offline client's unacknowledged batches, and the
 * core's diff of the online peer against the offline client's version
 * vector. The check allows framing overhead around those (a few bytes per
 * message) and requires both to stay under a third of the whole document
 * (its text or its snapshot, whichever is larger).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "it_util.h"

#define DOC "offline-doc"

static void type_text(td_cli_doc *d, size_t nchars, int commit_every)
{
    td_crdt_doc *doc = td_cli_doc_crdt(d);
    td_crdt_obj t;
    CHECK(td_crdt_root(doc, TD_CRDT_TEXT, "body", 4, &t) == TD_CRDT_OK);
    for (size_t i = 0; i < nchars; i++) {
        size_t len = td_crdt_text_length(doc, t);
        char ch = (char)('a' + it_below(26));
        /* mostly typing forward from a random spot, like a person */
        size_t pos = (i % 40 == 0) ? it_below((uint32_t)len + 1) : len;
        CHECK(td_crdt_text_insert(doc, t, pos, &ch, 1) == TD_CRDT_OK);
        if ((int)(i % (size_t)commit_every) == commit_every - 1)
            CHECK(td_cli_commit(d, NULL) == 0);
    }
    CHECK(td_cli_commit(d, NULL) == 0);
}

/* 1,000 single edits at random places: inserts, some deletes. */
static void scattered_edits(td_cli_doc *d, int n, int commit_every)
{
    td_crdt_doc *doc = td_cli_doc_crdt(d);
    td_crdt_obj t;
    CHECK(td_crdt_root(doc, TD_CRDT_TEXT, "body", 4, &t) == TD_CRDT_OK);
    for (int i = 0; i < n; i++) {
        size_t len = td_crdt_text_length(doc, t);
        if (len && it_below(4) == 0) {
            CHECK(td_crdt_text_delete(doc, t, it_below((uint32_t)len), 1) == TD_CRDT_OK);
        } else {
            char ch = (char)('A' + it_below(26));
            CHECK(td_crdt_text_insert(doc, t, it_below((uint32_t)len + 1), &ch, 1) ==
                  TD_CRDT_OK);
        }
        if (i % commit_every == commit_every - 1)
            CHECK(td_cli_commit(d, NULL) == 0);
    }
    CHECK(td_cli_commit(d, NULL) == 0);
}

static int is_closed(void *p)
{
    return td_cli_conn_state((td_cli_conn *)p) == TD_CLI_CLOSED;
}

int main(int argc, char **argv)
{
    it_init(argc, argv, "integration_offline");
    td_cli_server *s = it_server(NULL);
    td_cli_ctx *ctx = it_ctx();

    td_cli_conn *ca = td_cli_connect(ctx, s->url, NULL);
    td_cli_conn *cb = td_cli_connect(ctx, s->url, NULL);
    CHECK(ca && cb);
    td_cli_doc *a = td_cli_subscribe(ca, DOC, NULL);
    td_cli_doc *b = td_cli_subscribe(cb, DOC, NULL);
    td_cli_doc *both[2] = {a, b};
    CHECK(it_wait_ready(ca, 10000) && it_wait_ready(cb, 10000));
    CHECK(it_wait_docs_synced(both, 2, 10000));

    /* a large shared document */
    type_text(b, 60000, 500); /* not scaled: it sets the ratio checked below */
    CHECK(it_wait_converged(both, 2, 60000));
    uint8_t *snap = NULL;
    size_t snap_len = 0;
    CHECK(td_crdt_snapshot_encode(td_cli_doc_crdt(b), &snap, &snap_len) == TD_CRDT_OK);
    td_crdt_buf_free(td_cli_doc_crdt(b), snap);
    /* "the whole document": its visible text or its snapshot, whichever is
     * larger (snapshot v2 entropy-codes the random letters below their count) */
    td_crdt_obj body;
    CHECK(td_crdt_root(td_cli_doc_crdt(b), TD_CRDT_TEXT, "body", 4, &body) == TD_CRDT_OK);
    size_t text_len = td_crdt_text_length(td_cli_doc_crdt(b), body);
    if (text_len > snap_len)
        snap_len = text_len;

    /* A goes offline and makes 1,000 edits; B keeps editing */
    td_cli_close(ca);
    CHECK(td_cli_wait(ctx, is_closed, ca, 10000));
    uint8_t *vv_a = NULL;
    size_t vv_a_len = 0;
    scattered_edits(a, 1000, 10);
    size_t offline_batches = td_cli_unacked(a);
    scattered_edits(b, 300, 10);
    CHECK(td_cli_wait(ctx, NULL, NULL, 200) && td_cli_unacked(b) == 0);

    /* what each side should have to send: A's pending batches, B's diff */
    CHECK(td_crdt_vv_encode(td_cli_doc_crdt(a), &vv_a, &vv_a_len) == TD_CRDT_OK);
    uint8_t *missing = NULL;
    size_t missing_len = 0;
    CHECK(td_crdt_diff(td_cli_doc_crdt(b), vv_a, vv_a_len, &missing, &missing_len) ==
          TD_CRDT_OK);
    td_crdt_buf_free(td_cli_doc_crdt(a), vv_a);
    td_crdt_buf_free(td_cli_doc_crdt(b), missing);
    uint8_t *a_diff = NULL;
    size_t a_ops_len = 0;
    {
        /* the size of A's offline ops as one diff against B's vv */
        uint8_t *vv_b = NULL;
        size_t vv_b_len = 0;
        CHECK(td_crdt_vv_encode(td_cli_doc_crdt(b), &vv_b, &vv_b_len) == TD_CRDT_OK);
        CHECK(td_crdt_diff(td_cli_doc_crdt(a), vv_b, vv_b_len, &a_diff, &a_ops_len) ==
              TD_CRDT_OK);
        td_crdt_buf_free(td_cli_doc_crdt(b), vv_b);
        td_crdt_buf_free(td_cli_doc_crdt(a), a_diff);
    }

    td_cli_stats_reset(ca);
    td_cli_stats_reset(cb);
    uint64_t b_sync_before = td_cli_doc_stats_get(b)->remote_batches;
    CHECK(td_cli_reconnect(ca) == 0);
    CHECK_MSG(it_wait_converged(both, 2, 30000), "offline client did not converge");

    const td_cli_stats *sa = td_cli_conn_stats(ca), *sb = td_cli_conn_stats(cb);
    /* server -> A: WELCOME, SYNC of B's ops, ACKs; server -> B: REMOTE of A's */
    printf("document: %zu bytes (text or snapshot); A offline: %zu batches (%zu bytes as one diff), "
           "B meanwhile: %zu bytes as a diff\n",
           snap_len, offline_batches, a_ops_len, missing_len);
    printf("on reconnect: A sent %llu bytes in %llu messages, received %llu bytes "
           "(SYNC carried %llu); server sent B %llu bytes (%llu REMOTE batches)\n",
           (unsigned long long)sa->bytes_sent, (unsigned long long)sa->msgs_sent,
           (unsigned long long)sa->bytes_recv,
           (unsigned long long)td_cli_doc_stats_get(a)->sync_bytes,
           (unsigned long long)sb->bytes_recv,
           (unsigned long long)(td_cli_doc_stats_get(b)->remote_batches - b_sync_before));
    /* A sends its batches plus per-message framing (UPDATE header ~20 bytes) */
    uint64_t a_bound = 2 * a_ops_len + 64 * offline_batches + 512;
    CHECK_MSG(sa->bytes_sent <= a_bound && sa->bytes_sent < snap_len / 3,
           "A sent %llu bytes (bound %llu, snapshot %zu)", (unsigned long long)sa->bytes_sent,
           (unsigned long long)a_bound, snap_len);
    uint64_t a_recv_bound = 2 * missing_len + 32 * offline_batches + 1024;
    CHECK_MSG(sa->bytes_recv <= a_recv_bound && sa->bytes_recv < snap_len / 3,
           "A received %llu bytes (bound %llu, snapshot %zu)",
           (unsigned long long)sa->bytes_recv, (unsigned long long)a_recv_bound, snap_len);
    CHECK_MSG(sb->bytes_recv <= a_bound && sb->bytes_recv < snap_len / 3,
           "B received %llu bytes (bound %llu)", (unsigned long long)sb->bytes_recv,
           (unsigned long long)a_bound);

    /* and the server holds the same */
    char *server = NULL, *client = td_cli_doc_json(a);
    CHECK(it_get_doc(s, DOC, NULL, &server) == 200);
    CHECK(it_json_equal(server, client));
    free(server);
    free(client);
    it_pass();
}
