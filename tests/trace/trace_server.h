/*
 * trace_server.h -- replaying an editing trace through a running server, for
 * `tandem-trace --server ws://HOST:PORT FILE...` (issue 5, "Replaying a real
 * trace through the server").
 *
 * It reuses the loaded form of a trace (trace_load.h,
 * tt_trace). Every agent of a concurrent trace (one for a sequential trace)
 * is its own WebSocket connection (tests/client) with its own replica; edits
 * travel only as batches through the server. Before an agent makes a txn,
 * its replica gets exactly that txn's causal history, and only from batches
 * the server delivered to that agent's connection (REMOTE), as in the
 * in-memory replay of trace_replay.c. At the end every replica receives
 * everything, and the text of every client and of GET /docs/{id} must equal
 * endContent.
 */
#ifndef TD_TRACE_SERVER_H
#define TD_TRACE_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "trace_load.h"

typedef struct td_trace_server_result {
    int ok;                   /* every client and the server hold endContent */
    double wall_ms;           /* connect to verified end */
    uint64_t bytes_sent;      /* WebSocket message bytes, client -> server */
    uint64_t bytes_recv;      /* server -> clients */
    uint64_t batches;         /* UPDATEs sent */
    uint32_t connections;
    char doc[64];             /* the document used */
    char error[256];          /* set when ok is 0 */
} td_trace_server_result;

/* Replays `t` through the server at ws_url (ws://HOST:PORT/) into a fresh
 * document (doc_id, or a random "trace-..." name when NULL). With a token
 * server, token is sent in HELLO and used for GET /docs. Returns 0 when the
 * replay reached endContent everywhere, -1 otherwise (see out->error). */
int td_trace_replay_server(const char *ws_url, const tt_trace *t, const char *doc_id,
                           const char *token, td_trace_server_result *out);

#endif
