/*
 * srv_test_glue.h -- what the server-layer tests add to the C test client
 * (tests/client/td_client.h): raw connections to a local server whose
 * messages are built and read with the server's own codec (tandem_srv.h),
 * since these tests check that codec's framing end to end. The integration
 * tests instead use td_client's codec, written from docs/PROTOCOL.md.
 */
#ifndef SRV_TEST_GLUE_H
#define SRV_TEST_GLUE_H

#include <stddef.h>
#include <stdint.h>

#include "tandem_srv.h"
#include "td_check.h"
#include "td_client.h"

/* Makes a fresh, empty /tmp/td-srv-NAME-PID into out. Returns 0 or -1. */
int srv_scratch_dir(char *out, size_t outlen, const char *name);
/* The one client context of the test, created on first use (NULL if it
 * cannot be); with deflate, its connections offer permessage-deflate.
 * srv_ctx_free() ends it, so that the next srv_ctx() makes a new one. */
td_cli_ctx *srv_ctx(int deflate);
void srv_ctx_free(void);
/* A raw connection to ws://127.0.0.1:port/, open, or NULL. */
td_cli_conn *srv_connect(int port, int timeout_ms);
/* Encodes m with the server's codec and queues it. Returns 0 or -1. */
int srv_send_msg(td_cli_conn *c, const td_srv_msg *m);
/* Decodes a received message; all zero (type 0) if m is NULL or invalid.
 * The result points into m. */
td_srv_msg srv_decode(const td_cli_msg *m);
/* Applies a SYNC's or a REMOTE's batches to doc: 0, or -1 if the core
 * refuses one or the message is of another type. srv_apply_raw decodes a
 * received message first. */
int srv_apply_msg(td_crdt_doc *doc, const td_srv_msg *m);
int srv_apply_raw(td_crdt_doc *doc, const td_cli_msg *raw);
/* The root text "body" of doc, malloc'd ("<error>" if it cannot be read). */
char *srv_text_of(td_crdt_doc *doc);
/* 1 once the connection is closed; *code (may be NULL) gets its close code. */
int srv_closed(td_cli_conn *c, int *code);
/* td_cli_wait predicate: the connection (arg) is closed. */
int srv_closed_pred(void *arg);
/* GET http://127.0.0.1:port`path`; the status, body malloc'd in *body. */
int srv_http_get(int port, const char *path, char **body);
/* Starts `bin serve --port P --data data extra...` on a free port; returns
 * the pid (and *port), or -1. */
int srv_start(td_cli_server *s, const char *bin, const char *data,
              const char *const *extra, int *port);
/* Stops with SIGTERM and returns its exit status, 128 + signal if a signal
 * ended it, -1 if it had to be killed. */
int srv_stop(td_cli_server *s);

#endif
