/*
 * srv_config.h -- private: what `tandem serve` is told, and the one call
 * that runs the server with it.
 *
 * The command line (and its environment variables) fills a td_srv_config;
 * the running server only reads it. This header is the seam between the CLI
 * and everything else in server/: the CLI includes nothing of the server but
 * this, and the server knows nothing of argv.
 */
#ifndef SRV_CONFIG_H
#define SRV_CONFIG_H

#include <stdint.h>

#include "tandem_store.h"


typedef struct td_srv_config {
    const char *addr;
    int port;
    const char *data;
    td_store_durability durability;
    uint64_t presence_interval_ms, presence_ttl_ms;
    uint64_t max_frame, max_batch, max_presence, max_subs, send_queue;
    uint64_t doc_idle_ms;
    uint64_t max_docs, max_loads; /* documents loaded in all; loads per connection */
    uint64_t token_grace_ms;      /* reads after a token expired */
    uint64_t compact_ops, compact_bytes;
    /* Connections (srv_conn.h): WebSocket connections in all and per
     * client address; what a connection may hold and how long it may take
     * before its HELLO is accepted; an unfinished message's deadline; the
     * keepalive PING and how long its PONG may take. */
    uint64_t max_conns, max_conns_per_ip;
    uint64_t hello_timeout_ms, preauth_bytes, frame_timeout_ms;
    uint64_t ping_interval_ms, ping_timeout_ms;
    const char *public_key;
    const char *static_dir;
    int metrics; /* who may GET /metrics: a td_srv_metrics_access */
    int log_level; /* lws LLL_ mask */
    int deflate;
    int loop; /* a td_srv_loop_kind: what waits for the sockets */
    /* Cluster mode (docs/CLUSTER.md): the NATS URLs ("nats://h:p[,...]"),
     * NULL for a single node; this node's name (NULL: "node"). */
    const char *cluster, *cluster_node;
    uint64_t cluster_replicas; /* of the stream, when this node creates it */
    int cluster_outage;        /* a td_srv_cluster_outage: writes while the broker is away */
} td_srv_config;

/* --loop: EPOLL runs lws on a libev loop with the epoll backend, whose
 * wait costs what is ready; POLL is lws's own poll() loop, whose every
 * turn walks every socket (issue 14: 12-15% of the server's CPU at A's
 * load with 200 connections). */
typedef enum td_srv_loop_kind {
    TD_SRV_LOOP_EPOLL = 0,
    TD_SRV_LOOP_POLL
} td_srv_loop_kind;

/* --cluster-outage (docs/CLUSTER.md, "When JetStream is unreachable").
 * REFUSE: a write needs the broker (retryable error 23). OUTBOX: a write is
 * acknowledged once on this node's disk and published when the broker
 * returns; the guarantee is then one node's disk. */
typedef enum td_srv_cluster_outage {
    TD_SRV_OUTAGE_REFUSE = 0,
    TD_SRV_OUTAGE_OUTBOX
} td_srv_cluster_outage;

/* --metrics: AUTO becomes TOKEN when a public key is configured, else
 * OPEN (cli_serve.c resolves it; the server treats a left-over AUTO the
 * same way). TOKEN: any valid token, as for /docs, whatever its rights. */
typedef enum td_srv_metrics_access {
    TD_SRV_METRICS_AUTO = 0,
    TD_SRV_METRICS_OPEN,
    TD_SRV_METRICS_TOKEN
} td_srv_metrics_access;

/* Runs the server until SIGTERM/SIGINT; returns the process exit status. */
int td_srv_run(const td_srv_config *cfg);

#endif /* SRV_CONFIG_H */
