/*
 * srv_metrics.h -- private: the server's counters and latency histograms,
 * and the clock they are measured with.
 *
 * Every part of the server counts into one td_srv_metrics, on the loop
 * thread only, so plain integers do. This file is the bottom of server/:
 * it calls nothing else of the server.
 */
#ifndef SRV_METRICS_H
#define SRV_METRICS_H

#include <stdint.h>

#include "tandem_srv.h"
#include "tandem_store.h"

#define TD_SRV_HIST_BUCKETS 14
typedef struct td_srv_hist {
    uint64_t counts[TD_SRV_HIST_BUCKETS + 1]; /* last: +Inf */
    uint64_t n;
    double sum;
} td_srv_hist;

/* The wire protocols, for the per-protocol counters. */
typedef enum {
    TD_SRV_PROTO_NATIVE,
    TD_SRV_PROTO_YWS,   /* y-websocket */
    TD_SRV_PROTO_HOCUS, /* Hocuspocus */
    TD_SRV_PROTO_COUNT
} td_srv_proto;

typedef struct td_srv_metrics {
    uint64_t connections, connections_total, docs_loaded;
    uint64_t ops_applied, batches_applied, batches_duplicate, batches_deferred;
    uint64_t bytes_in, bytes_out, frames_in, frames_out;
    uint64_t writes_out; /* socket writes of queued messages: frames_out / writes_out per send */
    uint64_t loop_busy_permille, broadcast_hold_us; /* srv_loop's pacing */
    uint64_t presence_updates, presence_broadcasts, presence_expired;
    uint64_t errors[TD_SRV_E_COUNT];
    uint64_t slow_consumer_closes, store_failures, doc_load_failures;
    uint64_t doc_loads, doc_unloads;
    /* Connections refused or ended by the limits of srv_conn (issue 10). */
    uint64_t refused_max_conns, refused_per_addr, refused_fd_limit;
    uint64_t hello_timeouts, frame_timeouts, preauth_closes;
    td_srv_hist store_append, recv_to_bcast;
    /* Cluster mode (docs/CLUSTER.md): batches published and acknowledged
     * by JetStream, publishes that failed, batches of other nodes received
     * and those of them that held ops this node lacked, whether the broker
     * is reachable (gauge), and publish-to-acknowledgement latency. */
    uint64_t cluster_published, cluster_publish_failures;
    uint64_t cluster_received, cluster_deliveries, cluster_broker_up, cluster_rollups;
    uint64_t cluster_outbox; /* batches waiting in the outbox (a gauge) */
    uint64_t cluster_consumer_lag; /* gauge: td_srv_cluster_lag */
    /* batches broadcast before their local write completed (srv_service.c) */
    uint64_t cluster_early;
    td_srv_hist cluster_publish;
    td_srv_hist cluster_hold; /* another node's batch: applied -> broadcast queued */
    /* Per protocol: open connections, connections opened, messages
     * received, updates handed to the service. */
    uint64_t proto_conns[TD_SRV_PROTO_COUNT], proto_conns_total[TD_SRV_PROTO_COUNT];
    uint64_t proto_msgs_in[TD_SRV_PROTO_COUNT], proto_updates[TD_SRV_PROTO_COUNT];
    /* Native protocol version 2 (PROTOCOL.md section 3.9): messages sent
     * deflated, the bytes that saved, deflated messages received. */
    uint64_t deflated_msgs_out, deflate_saved_bytes, deflated_msgs_in;
} td_srv_metrics;

/* Monotonic microseconds. */
int64_t td_srv_now_us(void);
void td_srv_hist_observe(td_srv_hist *h, double seconds);
/* Appends the Prometheus text (0.0.4) of m and of the store's stats. */
void td_srv_metrics_render(const td_srv_metrics *m, td_store *store, td_srv_wbuf *out);

#endif /* SRV_METRICS_H */
