/*
 * test_trace_replay.c -- the test driver of tests/trace: every trace file
 * given must load, replay into the core (one replica per agent) to its
 * endContent on every replica, leave nothing pending, give the same
 * snapshot on every replica, and load back from that snapshot to
 * endContent; a sequential trace must also reach endContent when every txn
 * is committed.
 *
 *     test_trace_replay FILE...
 *
 * Problems are printed as `test_trace_replay: FILE: message`, in the words
 * of tandem-trace (both use trace_check.h), so that the reject tests can
 * match them. Exit status: 0 every trace is ok, 1 some trace did not
 * replay to endContent, 2 some file is unreadable or not a valid trace,
 * 64 no file given.
 */
#include "tandem_crdt.h"
#include "trace_check.h"
#include "trace_load.h"
#include "trace_replay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AGENT_REPLAY 1u
#define AGENT_LOADER 0x7A6E0000DEC0DE01ull
#define EXIT_NOT_OK 1
#define EXIT_BAD_TRACE 2
#define EXIT_USAGE 64

/* Replica 0's snapshot must equal every other replica's and load back to
 * endContent. Returns 0, or -1 with a message. */
static int check_snapshot(const tt_trace *t, tt_replay *r, char *msg, size_t msglen)
{
    uint8_t *s0 = NULL;
    size_t l0 = 0;
    td_crdt_err e = td_crdt_snapshot_encode(r->docs[0], &s0, &l0);
    if (e != TD_CRDT_OK) {
        snprintf(msg, msglen, "td_crdt_snapshot_encode failed: %s (%s)",
                 td_crdt_strerror(e), td_crdt_doc_error(r->docs[0]));
        return -1;
    }
    int rc = 0;
    for (uint32_t a = 1; a < r->ndocs && rc == 0; a++) {
        uint8_t *s = NULL;
        size_t l = 0;
        e = td_crdt_snapshot_encode(r->docs[a], &s, &l);
        if (e != TD_CRDT_OK || l != l0 || memcmp(s, s0, l) != 0) {
            snprintf(msg, msglen, "replicas did not converge: replica %u's snapshot "
                     "(%zu bytes) differs from replica 0's (%zu bytes)", a, l, l0);
            rc = -1;
        }
        td_crdt_buf_free(r->docs[a], s);
    }
    td_crdt_options o = {.agent = AGENT_LOADER};
    td_crdt_doc *doc = NULL;
    const char *emsg = NULL;
    if (rc == 0 && (e = td_crdt_doc_load(&o, s0, l0, &doc, &emsg)) != TD_CRDT_OK) {
        snprintf(msg, msglen, "td_crdt_doc_load of the snapshot failed: %s (%s)",
                 td_crdt_strerror(e), emsg ? emsg : "");
        rc = -1;
    }
    if (doc) {
        td_crdt_obj text = 0;
        char err[1024] = "the root text is missing";
        if (td_crdt_root(doc, TD_CRDT_TEXT, "text", 4, &text) != TD_CRDT_OK ||
            tt_check_text(doc, text, t->end, t->end_len, err, sizeof err) != 0) {
            snprintf(msg, msglen, "the loaded snapshot is not endContent: %s", err);
            rc = -1;
        }
        td_crdt_doc_free(doc);
    }
    td_crdt_buf_free(r->docs[0], s0);
    return rc;
}

/* One replay (committing every txn or not) judged against endContent.
 * Returns 0, or -1 with a message. */
static int check_replay(const tt_trace *t, int commit_each_txn, char *msg,
                        size_t msglen)
{
    td_crdt_options o = {.agent = AGENT_REPLAY};
    tt_replay r;
    char err[1024];
    int mismatch = 0, rc = -1;
    if (tt_replay_run(t, &o, commit_each_txn, &r, err, sizeof err) != 0)
        snprintf(msg, msglen, "%s failed: %s",
                 commit_each_txn ? "replay with commits" : "replay", err);
    else if (tt_check_replicas(t, &r, &mismatch, msg, msglen) != 0) {
        if (mismatch && !t->concurrent)
            tt_locate_seq(t, msg, msglen);
    } else
        rc = check_snapshot(t, &r, msg, msglen);
    tt_replay_free(&r);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs("usage: test_trace_replay FILE...\n", stderr);
        return EXIT_USAGE;
    }
    int status = 0;
    for (int i = 1; i < argc; i++) {
        tt_trace t;
        char msg[2048];
        if (tt_trace_load(argv[i], &t, msg, sizeof msg) != 0) {
            fprintf(stderr, "test_trace_replay: %s: %s\n", argv[i], msg);
            status = EXIT_BAD_TRACE;
            continue;
        }
        int rc = check_replay(&t, 0, msg, sizeof msg);
        if (rc == 0 && !t.concurrent)
            rc = check_replay(&t, 1, msg, sizeof msg);
        if (rc == 0)
            printf("%s: ok, %zu patches, %zu txns, %u agents\n", argv[i],
                   t.npatches, t.ntxns, t.num_agents);
        else {
            fprintf(stderr, "test_trace_replay: %s: %s\n", argv[i], msg);
            if (status == 0)
                status = EXIT_NOT_OK;
        }
        tt_trace_free(&t);
    }
    return status;
}
