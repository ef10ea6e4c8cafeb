/*
 * test_trace_server.c -- td_trace_replay_server (tests/trace/trace_server.c)
 * against a real server: the synthetic traces of tests/trace/fixtures (a
 * sequential one with multi-byte UTF-8, and a concurrent one where 3 agents
 * fork and merge) must replay through the server to their endContent on
 * every client and on GET /docs/{id}. Further trace files given on the
 * command line are replayed too. A file that cannot be read fails the test:
 * a trace that is not there has not been shown to replay.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "it_util.h"
#include "trace_server.h"

int main(int argc, char **argv)
{
    it_init(argc, argv, "integration_trace_server");
    td_cli_server *s = it_server(NULL);
    CHECK_MSG(argc > 2, "%s", "no trace files given");
    for (int i = 2; i < argc; i++) {
        tt_trace t;
        char err[256];
        CHECK_MSG(tt_trace_load(argv[i], &t, err, sizeof err) == 0, "%s: %s", argv[i], err);
        td_trace_server_result r;
        int rc = td_trace_replay_server(s->url, &t, NULL, NULL, &r);
        printf("%s: %s, %zu txns, %u connections, %llu batches, %.1f ms, %llu bytes sent, "
               "%llu received%s%s\n",
               argv[i], r.ok ? "ok" : "FAILED", t.ntxns, r.connections,
               (unsigned long long)r.batches, r.wall_ms, (unsigned long long)r.bytes_sent,
               (unsigned long long)r.bytes_recv, r.ok ? "" : ": ", r.ok ? "" : r.error);
        tt_trace_free(&t);
        CHECK(rc == 0 && r.ok);
    }
    it_pass();
}
