/*
 * srv_test_client.h -- a minimal WebSocket client for the server tests: one
 * lws client context, any number of connections, each with an inbox of
 * whole binary messages. Single-threaded: tc_wait() services the loop until
 * a condition holds or the time runs out.
 */
#ifndef SRV_TEST_CLIENT_H
#define SRV_TEST_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tandem_srv.h"

typedef struct tc_msg {
    uint8_t *data;
    size_t len;
    struct tc_msg *next;
} tc_msg;

typedef struct tc_conn tc_conn;

int tc_init(void);
/* Like tc_init(); with deflate != 0 every connection offers
 * permessage-deflate. */
int tc_init_deflate(int deflate);
void tc_done(void);
/* Connects to 127.0.0.1:port and waits for the handshake; NULL on failure. */
tc_conn *tc_connect(int port, int timeout_ms);
void tc_close(tc_conn *c);  /* closes and frees */
int tc_send(tc_conn *c, const uint8_t *p, size_t len, int binary);
int tc_send_msg(tc_conn *c, const td_srv_msg *m);
/* Services the loop for up to ms milliseconds or until fn(ud) is non-zero. */
int tc_wait(int ms, int (*fn)(void *), void *ud);
/* Next message of the given type (0: any) in c's inbox, removed from it;
 * waits up to ms. Caller frees ->data and the node with tc_msg_free. */
tc_msg *tc_expect(tc_conn *c, int type, int ms);
void tc_msg_free(tc_msg *m);
int tc_closed(tc_conn *c, int *code); /* 1 once the server closed us */
size_t tc_inbox_count(tc_conn *c);

/* HTTP GET on 127.0.0.1:port; returns the status, body malloc'd. */
int tc_http_get(int port, const char *path, char **body);

/* Starts `bin serve --port P --data DIR extra...` (extra NULL-terminated,
 * up to 16) on a random free port in 20000-40000, waits for /healthz.
 * Returns the pid (and *port) or -1. */
int tc_server_start(const char *bin, const char *data, const char *const *extra, int *port);
/* SIGTERM, then the exit status (128+sig if killed, -1 on timeout). */
int tc_server_stop(int pid);

/* Assertions shared by the server tests: CHECK counts a failure and goes
 * on, REQUIRE counts it and jumps to the test's `out:` label. */
extern int tc_failures;
#define CHECK(c)                                                                     \
    do {                                                                             \
        if (!(c)) {                                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);    \
            tc_failures++;                                                           \
        }                                                                            \
    } while (0)
#define REQUIRE(c)                                                                   \
    do {                                                                             \
        if (!(c)) {                                                                  \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #c);  \
            tc_failures++;                                                           \
            goto out;                                                                \
        }                                                                            \
    } while (0)

#endif
