/*
 * tandem_wire_size.c -- tandem-wire-size: bytes on the wire to load a
 * document, native protocol version 1 against version 2 (deflated
 * messages, docs/PROTOCOL.md section 3.9).
 *
 *     tandem-wire-size FILE...
 *
 * Each FILE is an editing trace (../shared/traces/README.md). It is
 * replayed into a document (tests/trace's td_trace); then the messages of
 * loading it are built with the server's codec, exactly as `tandem serve`
 * builds them:
 *   SYNC    what a new subscriber receives: the whole document (the diff
 *           against an empty version vector) and the version vector;
 *   UPDATE  the same ops sent up by a client as one batch.
 * Version 1 sends them as they are; version 2 deflates them (level 1, only
 * when shorter: td_srv_msg_deflate). Both columns add the WebSocket frame
 * header (server to client unmasked, client to server masked), so the
 * figures are the bytes of the WebSocket stream, TCP/TLS aside.
 *
 * Exit status: 0, 1 if a trace failed to load or replay, 64 on usage.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tandem_crdt.h"
#include "tandem_srv.h"
#include "trace_load.h"
#include "trace_replay.h"

/* RFC 6455 frame header of a payload of len bytes. */
static size_t ws_header(size_t len, int masked)
{
    size_t h = len < 126 ? 2 : len < 65536 ? 4 : 10;
    return h + (masked ? 4 : 0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One message both ways: prints a row and returns 0, or -1. */
static int row(const char *trace, const char *what, const td_srv_msg *m, int masked)
{
    td_srv_wbuf plain, z;
    double t0, t1;
    int rc;
    size_t v1, v2;
    td_srv_wbuf_init(&plain, 0);
    td_srv_wbuf_init(&z, 0);
    if (td_srv_msg_encode(m, &plain) < 0)
        return -1;
    t0 = now_s();
    rc = td_srv_msg_deflate(td_srv_wbuf_msg(&plain), plain.len, &z);
    t1 = now_s();
    if (rc < 0) {
        td_srv_wbuf_free(&plain);
        return -1;
    }
    v1 = plain.len + ws_header(plain.len, masked);
    v2 = rc ? z.len + ws_header(z.len, masked) : v1;
    printf("%-24s %-7s %12zu %12zu %7.3f %9.2f\n", trace, what, v1, v2, (double)v2 / (double)v1,
           (t1 - t0) * 1e3);
    td_srv_wbuf_free(&plain);
    td_srv_wbuf_free(&z);
    return 0;
}

static int one(const char *path)
{
    tt_trace t;
    tt_replay r;
    char err[512];
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    uint8_t *diff = NULL, *vv = NULL;
    size_t dlen = 0, vlen = 0;
    td_crdt_options o;
    int rc = -1;

    if (tt_trace_load(path, &t, err, sizeof err) < 0) {
        fprintf(stderr, "%s: %s\n", path, err);
        return -1;
    }
    memset(&o, 0, sizeof o);
    o.agent = 1;
    memset(&r, 0, sizeof r);
    if (tt_replay_run(&t, &o, 0, &r, err, sizeof err) < 0) {
        fprintf(stderr, "%s: replay: %s\n", path, err);
        goto out;
    }
    td_crdt_doc *d = r.docs[0];
    uint8_t *pending = NULL;
    size_t plen = 0;
    if (td_crdt_commit(d, &pending, &plen) != TD_CRDT_OK) {
        fprintf(stderr, "%s: cannot commit the replay\n", path);
        goto out;
    }
    if (pending)
        td_crdt_buf_free(d, pending);
    if (td_crdt_diff(d, NULL, 0, &diff, &dlen) != TD_CRDT_OK ||
        td_crdt_vv_encode(d, &vv, &vlen) != TD_CRDT_OK) {
        fprintf(stderr, "%s: cannot encode the document\n", path);
        goto out;
    }
    char trace[64];
    snprintf(trace, sizeof trace, "%.40s", name);
    char *dot = strstr(trace, ".json");
    if (dot)
        *dot = 0;
    td_srv_msg m;
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_SYNC;
    m.doc.ptr = (const uint8_t *)"paper";
    m.doc.len = 5;
    m.batch.ptr = diff;
    m.batch.len = dlen;
    m.vv.ptr = vv;
    m.vv.len = vlen;
    if (row(trace, "SYNC", &m, 0) < 0)
        goto out;
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_UPDATE;
    m.doc.ptr = (const uint8_t *)"paper";
    m.doc.len = 5;
    m.batch_id = 1;
    m.batch.ptr = diff;
    m.batch.len = dlen;
    if (row(trace, "UPDATE", &m, 1) < 0)
        goto out;
    rc = 0;
out:
    if (diff)
        td_crdt_buf_free(r.docs[0], diff);
    if (vv)
        td_crdt_buf_free(r.docs[0], vv);
    tt_replay_free(&r);
    tt_trace_free(&t);
    return rc;
}

int main(int argc, char **argv)
{
    int bad = 0;
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(stderr, "usage: %s TRACE...\n", argv[0]);
        return argc < 2 ? 64 : 0;
    }
    printf("%-24s %-7s %12s %12s %7s %9s\n", "trace", "message", "v1 bytes", "v2 bytes",
           "v2/v1", "deflate ms");
    for (int i = 1; i < argc; i++)
        if (one(argv[i]) < 0)
            bad = 1;
    return bad;
}
