/*
 * cl_util.h -- what the cluster tests share beside it_util.h: a JetStream
 * broker (Debian's nats-server) of their own, and a TCP proxy standing in
 * for the load balancer in front of the nodes.
 *
 * Each test is run as `test_x TANDEM_BINARY NATS_SERVER_BINARY`. The broker
 * runs with JetStream on a free loopback port with its store in a fresh
 * temporary directory; it dies with the test (PR_SET_PDEATHSIG) and the
 * directory is removed at exit. A broker that does not start fails the
 * test: these tests never skip.
 */
#ifndef CL_UTIL_H
#define CL_UTIL_H

#include "it_util.h"

/* it_init, then starts the broker from argv[2]; fails the test without it. */
void cl_init(int argc, char **argv, const char *name);
/* "nats://127.0.0.1:PORT" of the broker. */
const char *cl_nats_url(void);
/* SIGKILLs the broker; starts it again on the same port and store (fails
 * the test if it does not listen again). */
void cl_broker_kill(void);
void cl_broker_restart(void);

/* A `tandem serve --cluster` node named `name` (it_server: registered for
 * cleanup, a fresh data directory, the test fails if it does not start). */
td_cli_server *cl_node(const char *name);
/* The arguments cl_node starts a node with, for td_cli_server_restart. */
const char *const *cl_node_args(const char *name);

/* A proxy on a free loopback port forwarding each connection to the
 * loopback port it targets when the connection arrives; a connection ends
 * (both sides) when either side closes. */
typedef struct cl_proxy cl_proxy;
cl_proxy *cl_proxy_new(int target_port);
int cl_proxy_port(const cl_proxy *p);
/* New connections go to `target_port` from now on; `drop` also closes the
 * connections open now (before this returns), as a load balancer does with
 * a backend it takes out. */
void cl_proxy_retarget(cl_proxy *p, int target_port, int drop);
void cl_proxy_free(cl_proxy *p);

/* GET /docs/{doc} of a node: the JSON (malloc'd) if it answered 200, else
 * NULL. */
char *cl_doc_json(td_cli_server *s, const char *doc);

#endif /* CL_UTIL_H */
