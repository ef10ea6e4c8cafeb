/*
 * it_util.h -- shared helpers of the integration tests.
 *
 * Each test is a program run by ctest as `test_x TANDEM_BINARY`: it starts
 * the real server as a child process on a free loopback port with a fresh
 * temporary data directory (removed at exit, whatever happens: the checks
 * below go through it_fail(), and the child dies with the test through
 * PR_SET_PDEATHSIG), drives it with td_client connections and checks what
 * the documents say. A test exits 0 on success and 1 on a failed check
 * (td_check.h; it_fail prints the server logs' tail first) -- including a
 * server that does not start or answer.
 *
 * Builds with sanitizers (IT_SANITIZE) run the server under ASan too, so
 * it_scale() shrinks loads there.
 */
#ifndef IT_UTIL_H
#define IT_UTIL_H

#include <stdint.h>
#include <stdio.h>

#include "td_check.h"
#include "td_client.h"

/* Parses argv (argv[1] = the tandem binary), seeds the PRNG (env IT_SEED or
 * random; printed), fails if `tandem serve --help` does not work. */
void it_init(int argc, char **argv, const char *name);
const char *it_bin(void);
/* 1.0 normally, smaller under sanitizers. */
double it_scale(void);
int it_sanitized(void);
/* Scaled count, at least lo. */
int it_n(int n, int lo);

/* Exits 1 after printing the server logs' tail and cleaning up. */
void it_fail(void) __attribute__((noreturn));
/* Cleans up and exits 0. */
void it_pass(void) __attribute__((noreturn));

/* PRNG (xorshift64*), seeded by it_init. */
uint64_t it_rand(void);
uint32_t it_below(uint32_t n); /* 0..n-1 (0 if n == 0) */

/* Starts a server (registered for cleanup). extra is NULL-terminated. */
td_cli_server *it_server(const char *const *extra);
/* The client context of the test (created on first use). */
td_cli_ctx *it_ctx(void);

/* GET /docs/{id} (percent-encoded); returns the HTTP status, body in *json. */
int it_get_doc(td_cli_server *s, const char *doc, const char *token, char **json);
/* 1 if two JSON texts are structurally equal (cJSON_Compare). */
int it_json_equal(const char *a, const char *b);
/* GET /metrics and read one sample (whole line prefix, e.g.
 * "tandem_connections" or "tandem_errors_total{code=\"1\"}"); -1 if absent. */
double it_metric(td_cli_server *s, const char *name);

/* Waits until every doc has no unacknowledged batch and all replicas' JSON
 * are equal; returns 1, or 0 on timeout (after printing the replicas). */
int it_wait_converged(td_cli_doc **docs, size_t n, int timeout_ms);
/* Waits until a connection reached READY and every doc of it is synced. */
int it_wait_ready(td_cli_conn *c, int timeout_ms);
int it_wait_docs_synced(td_cli_doc **docs, size_t n, int timeout_ms);

/* Random edits on a replica: text, list and map roots, sometimes nested
 * objects; n ops. */
void it_random_edits(td_crdt_doc *doc, int n);

/* ---- tokens, raw exchanges, checks (issue 10: authorship, tokens, flood,
 * faults) ---------------------------------------------------------------- */

/* `tandem keygen` into a temporary directory removed at exit; returns the
 * secret key file (the public key is that path + ".pub"). */
const char *it_keygen(void);
/* `tandem token --key KEY --user U --doc PATTERN --rights r|rw --ttl S`:
 * the token, malloc'd. */
char *it_token(const char *key, const char *user, const char *pattern, const char *rights,
               const char *ttl);

/* A raw connection (td_cli_conn_opts.raw: every message lands in its inbox)
 * that has sent HELLO with token and agent and received WELCOME; fails the
 * test otherwise. */
td_cli_conn *it_raw_connect(td_cli_server *s, const char *token, uint64_t agent);
/* On a raw connection: SUBSCRIBE doc with the vv of replica (NULL or empty:
 * an empty vv), waits for its SYNC (fails the test without one) and applies
 * the SYNC's batch to replica (if not NULL). */
void it_raw_subscribe(td_cli_conn *c, const char *doc, td_crdt_doc *replica);
/* On a raw connection: sends UPDATE doc batch_id batch and waits for the
 * answer to it: 0 for its ACK, the code of its ERROR, -1 when nothing came
 * within timeout_ms. Other messages are discarded. */
int it_raw_update(td_cli_conn *c, const char *doc, uint64_t batch_id, const uint8_t *batch,
                  size_t len, int timeout_ms);
/* Its two halves: sends the UPDATE without waiting; waits for the next ACK
 * or ERROR about doc (0 or the code, -1 when nothing came) and its batch id.
 * Other messages are discarded. */
void it_raw_send_update(td_cli_conn *c, const char *doc, uint64_t batch_id,
                        const uint8_t *batch, size_t len);
int it_raw_answer(td_cli_conn *c, const char *doc, uint64_t *batch_id, int timeout_ms);
/* A connection with token (may be NULL) and agent (0: random) subscribed to
 * doc, READY and synced; fails the test otherwise. */
td_cli_doc *it_open_doc(td_cli_server *s, const char *token, uint64_t agent, const char *doc);
/* A fresh replica with that agent; fails the test otherwise. */
td_crdt_doc *it_replica(uint64_t agent);
/* Appends text to the replica's text root "body". */
void it_text_append(td_crdt_doc *r, const char *text);
/* Commits a replica's local ops; the batch, malloc'd (fails the test if
 * there is none). */
uint8_t *it_commit(td_crdt_doc *replica, size_t *len);
/* 1 if GET /docs/{doc} (with token, may be NULL) answers 200 with the JSON of
 * the replica d; else prints both and returns 0. */
int it_doc_matches(td_cli_server *s, const char *doc, const char *token, td_cli_doc *d);
/* 1 if the server process is still running (not exited, not a zombie). */
int it_server_alive(const td_cli_server *s);
/* p-th percentile (0..100) of n values (sorts them in place). */
double it_percentile(double *v, size_t n, double p);

#endif
