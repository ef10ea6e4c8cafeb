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

/* ---- several brokers as one JetStream cluster (bar 3 of issue 15) -------------- */

/* Instead of cl_init: it_init, then starts n (2..5) nats-server -js
 * processes named b1..bn, clustered by routes, each on free loopback ports
 * (client, route, monitoring) with its store in its own temporary directory
 * (removed at exit, the processes die with the test), and waits until
 * JetStream formed (cl_brokers_ready). Fails the test, never skips, if
 * nats-server is missing or the cluster does not form within 30 s. */
void cl_init_brokers(int argc, char **argv, const char *name, int n);
int cl_brokers(void);
/* "nats://127.0.0.1:P1,nats://127.0.0.1:P2,..." of every broker. */
const char *cl_brokers_url(void);
/* "b1".."bn": broker i's server_name (what /jsz calls it). */
const char *cl_broker_name(int i);
/* The broker named `name`, -1 if none is. */
int cl_broker_index(const char *name);
/* SIGKILLs broker i; starts it again on the same ports and store (fails the
 * test if it does not listen again within 10 s). */
void cl_broker_kill_at(int i);
void cl_broker_restart_at(int i);
int cl_broker_alive(int i);
/* 1 once every live broker names the same JetStream meta leader, that
 * leader sees every other live broker as a current peer, and the cluster
 * has all n peers; with `stream` (may be NULL) also: the stream has a
 * leader and every replica the leader lists is current, with
 * `stream_replicas` of them in all. 0 on timeout. */
int cl_brokers_ready(const char *stream, int stream_replicas, int timeout_ms);
/* The broker leading `stream` according to any live broker, -1 if none. */
int cl_stream_leader(const char *stream);
/* The last sequence of `stream` in broker i's own copy (its /jsz), -1 if
 * it does not answer or holds no copy. */
long long cl_broker_stream_last_seq(int i, const char *stream);
/* The number of client connections broker i has (its /connz), -1 if it
 * does not answer. */
int cl_broker_conns(int i);
/* The arguments of a node on every broker: --cluster LIST --cluster-node
 * NAME --cluster-replicas R (for it_server / td_cli_server_restart). */
const char *const *cl_brokers_node_args(const char *name, int replicas);
td_cli_server *cl_brokers_node(const char *name, int replicas);

#endif /* CL_UTIL_H */
