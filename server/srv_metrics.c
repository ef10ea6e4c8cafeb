/*
 * srv_metrics.c -- counters, histograms and their clock, rendered for GET /metrics in
 * the Prometheus text format (0.0.4).
 *
 * Everything is updated on the loop thread only, so plain integers do; the
 * histograms have fixed latency buckets from 50 us to 1 s, the range that
 * separates a healthy group-commit store (~150 us) from a stalled one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <time.h>

#include "srv_metrics.h"

int64_t td_srv_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const double bounds[TD_SRV_HIST_BUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1.0};

void td_srv_hist_observe(td_srv_hist *h, double s)
{
    size_t i = 0;
    while (i < TD_SRV_HIST_BUCKETS && s > bounds[i])
        i++;
    h->counts[i]++;
    h->n++;
    h->sum += s;
}

static void put_text(td_srv_wbuf *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void put_text(td_srv_wbuf *w, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        td_srv_put_raw(w, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void metric(td_srv_wbuf *w, const char *name, const char *type, const char *help,
                   uint64_t v)
{
    put_text(w, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
             (unsigned long long)v);
}

static void hist(td_srv_wbuf *w, const char *name, const char *help, const td_srv_hist *h)
{
    uint64_t cum = 0;
    put_text(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (size_t i = 0; i < TD_SRV_HIST_BUCKETS; i++) {
        cum += h->counts[i];
        put_text(w, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[TD_SRV_HIST_BUCKETS];
    put_text(w, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9f\n%s_count %llu\n", name,
             (unsigned long long)cum, name, h->sum, name, (unsigned long long)h->n);
}

/* The counters and gauges of td_srv_metrics, in the order they are shown. */
static const struct {
    const char *name, *type;
    size_t off;
    const char *help;
} counters[] = {
    {"tandem_connections", "gauge", offsetof(td_srv_metrics, connections),
     "Open WebSocket connections."},
    {"tandem_connections_total", "counter", offsetof(td_srv_metrics, connections_total),
     "WebSocket connections accepted."},
    {"tandem_documents_loaded", "gauge", offsetof(td_srv_metrics, docs_loaded),
     "Documents held in memory."},
    {"tandem_document_loads_total", "counter", offsetof(td_srv_metrics, doc_loads),
     "Documents loaded."},
    {"tandem_document_unloads_total", "counter", offsetof(td_srv_metrics, doc_unloads),
     "Idle documents unloaded."},
    {"tandem_document_load_failures_total", "counter", offsetof(td_srv_metrics, doc_load_failures),
     "Document loads that failed (refused to subscribers)."},
    {"tandem_ops_applied_total", "counter", offsetof(td_srv_metrics, ops_applied),
     "New CRDT ops integrated from UPDATEs."},
    {"tandem_batches_applied_total", "counter", offsetof(td_srv_metrics, batches_applied),
     "UPDATE batches applied and stored."},
    {"tandem_batches_duplicate_total", "counter", offsetof(td_srv_metrics, batches_duplicate),
     "UPDATE batches holding only known ops (acknowledged, not stored)."},
    {"tandem_batches_deferred_total", "counter", offsetof(td_srv_metrics, batches_deferred),
     "UPDATE batches that waited for ops not yet received (PROTOCOL.md section 12)."},
    {"tandem_bytes_in_total", "counter", offsetof(td_srv_metrics, bytes_in),
     "WebSocket message bytes received."},
    {"tandem_bytes_out_total", "counter", offsetof(td_srv_metrics, bytes_out),
     "WebSocket message bytes sent."},
    {"tandem_messages_in_total", "counter", offsetof(td_srv_metrics, frames_in),
     "WebSocket messages received."},
    {"tandem_messages_out_total", "counter", offsetof(td_srv_metrics, frames_out),
     "WebSocket messages sent."},
    {"tandem_message_writes_total", "counter", offsetof(td_srv_metrics, writes_out),
     "Socket writes of queued WebSocket messages; several queued for one connection go out in one."},
    {"tandem_loop_busy_permille", "gauge", offsetof(td_srv_metrics, loop_busy_permille),
     "The event loop thread's share of CPU over the last 20 ms or so, in thousandths."},
    {"tandem_broadcast_hold_microseconds", "gauge", offsetof(td_srv_metrics, broadcast_hold_us),
     "How long durable batches may now wait to be broadcast together (0 unless the loop is busy)."},
    {"tandem_presence_updates_total", "counter", offsetof(td_srv_metrics, presence_updates),
     "Presence states received."},
    {"tandem_presence_broadcasts_total", "counter", offsetof(td_srv_metrics, presence_broadcasts),
     "Presence entries broadcast (after coalescing)."},
    {"tandem_presence_expired_total", "counter", offsetof(td_srv_metrics, presence_expired),
     "Presence entries expired by TTL."},
    {"tandem_deflated_messages_out_total", "counter", offsetof(td_srv_metrics, deflated_msgs_out),
     "Messages sent deflated to protocol version 2 connections."},
    {"tandem_deflate_saved_bytes_total", "counter", offsetof(td_srv_metrics, deflate_saved_bytes),
     "Bytes deflating saved on the messages sent deflated."},
    {"tandem_deflated_messages_in_total", "counter", offsetof(td_srv_metrics, deflated_msgs_in),
     "Deflated messages received and inflated."},
    {"tandem_slow_consumer_closes_total", "counter", offsetof(td_srv_metrics, slow_consumer_closes),
     "Connections closed because their send queue passed the cap."},
    {"tandem_store_failures_total", "counter", offsetof(td_srv_metrics, store_failures),
     "Store appends that failed."},
    {"tandem_refused_max_conns_total", "counter", offsetof(td_srv_metrics, refused_max_conns),
     "WebSocket upgrades refused with 503: --max-conns reached."},
    {"tandem_refused_per_ip_total", "counter", offsetof(td_srv_metrics, refused_per_addr),
     "WebSocket upgrades refused with 503: --max-conns-per-ip reached."},
    {"tandem_refused_fd_limit_total", "counter", offsetof(td_srv_metrics, refused_fd_limit),
     "TCP connections closed at accept: no file descriptor left for sockets."},
    {"tandem_hello_timeouts_total", "counter", offsetof(td_srv_metrics, hello_timeouts),
     "Connections closed with 1008: no accepted HELLO within --hello-timeout."},
    {"tandem_frame_timeouts_total", "counter", offsetof(td_srv_metrics, frame_timeouts),
     "Connections closed with 1008: a message unfinished for --frame-timeout."},
    {"tandem_preauth_limit_closes_total", "counter", offsetof(td_srv_metrics, preauth_closes),
     "Connections closed before HELLO for holding more than --preauth-bytes."},
    {"tandem_cluster_published_total", "counter", offsetof(td_srv_metrics, cluster_published),
     "Cluster mode: batches JetStream acknowledged."},
    {"tandem_cluster_publish_failures_total", "counter",
     offsetof(td_srv_metrics, cluster_publish_failures),
     "Cluster mode: publishes that failed (the client got unavailable)."},
    {"tandem_cluster_received_total", "counter", offsetof(td_srv_metrics, cluster_received),
     "Cluster mode: batches of other nodes received."},
    {"tandem_cluster_deliveries_total", "counter", offsetof(td_srv_metrics, cluster_deliveries),
     "Cluster mode: batches of other nodes that held ops this node lacked."},
    {"tandem_cluster_broker_up", "gauge", offsetof(td_srv_metrics, cluster_broker_up),
     "Cluster mode: 1 while the broker is reachable."},
    {"tandem_cluster_rollups_total", "counter", offsetof(td_srv_metrics, cluster_rollups),
     "Cluster mode: snapshots published as rollups of a document's subject."},
    {"tandem_cluster_outbox", "gauge", offsetof(td_srv_metrics, cluster_outbox),
     "Cluster mode, --cluster-outage outbox: batches acknowledged here, not yet published."},
    {"tandem_cluster_consumer_lag", "gauge", offsetof(td_srv_metrics, cluster_consumer_lag),
     "Cluster mode: stored messages of followed documents this node has not applied yet."},
    {"tandem_cluster_early_broadcasts_total", "counter", offsetof(td_srv_metrics, cluster_early),
     "Cluster mode: batches broadcast before their local write completed (other nodes' at "
     "once, this node's once JetStream acknowledged them)."},
};

void td_srv_metrics_render(const td_srv_metrics *m, td_store *store, td_srv_wbuf *w)
{
    td_store_stats st;
    memset(&st, 0, sizeof st);
    if (store)
        td_store_get_stats(store, &st);
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        metric(w, counters[i].name, counters[i].type, counters[i].help,
               *(const uint64_t *)(const void *)((const char *)m + counters[i].off));
    metric(w, "tandem_store_writes_total", "counter", "RocksDB writes (groups) for appends.",
           st.writes);
    metric(w, "tandem_store_synced_writes_total", "counter",
           "Of those, writes that waited for a sync (not those holding only other nodes' "
           "batches).",
           st.synced_writes);
    metric(w, "tandem_store_compactions_total", "counter", "Log compactions.", st.compactions);
    metric(w, "tandem_store_disk_bytes", "gauge", "Bytes of the data directory.", st.disk_bytes);
    put_text(w, "# HELP tandem_errors_total ERROR messages sent, by code.\n"
                "# TYPE tandem_errors_total counter\n");
    for (unsigned c = 1; c < TD_SRV_E_COUNT; c++)
        put_text(w, "tandem_errors_total{code=\"%s\"} %llu\n", td_srv_code_name(c),
                 (unsigned long long)m->errors[c]);
    static const char *const proto_names[TD_SRV_PROTO_COUNT] = {"native", "y-websocket",
                                                                "hocuspocus"};
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } per_proto[] = {
        {"tandem_protocol_connections", "gauge", "Open WebSocket connections, by protocol.",
         offsetof(td_srv_metrics, proto_conns)},
        {"tandem_protocol_connections_total", "counter", "WebSocket connections opened, by protocol.",
         offsetof(td_srv_metrics, proto_conns_total)},
        {"tandem_protocol_messages_total", "counter", "Messages received, by protocol.",
         offsetof(td_srv_metrics, proto_msgs_in)},
        {"tandem_protocol_updates_total", "counter",
         "Updates (batches) handed to the document service, by protocol.",
         offsetof(td_srv_metrics, proto_updates)},
    };
    for (size_t i = 0; i < sizeof per_proto / sizeof per_proto[0]; i++) {
        const uint64_t *v = (const uint64_t *)(const void *)((const char *)m + per_proto[i].off);
        put_text(w, "# HELP %s %s\n# TYPE %s %s\n", per_proto[i].name, per_proto[i].help,
                 per_proto[i].name, per_proto[i].type);
        for (unsigned k = 0; k < TD_SRV_PROTO_COUNT; k++)
            put_text(w, "%s{protocol=\"%s\"} %llu\n", per_proto[i].name, proto_names[k],
                     (unsigned long long)v[k]);
    }
    hist(w, "tandem_store_append_seconds", "From store append to its completion.",
         &m->store_append);
    hist(w, "tandem_receive_to_broadcast_seconds",
         "From receiving an UPDATE to queueing its broadcast.", &m->recv_to_bcast);
    hist(w, "tandem_cluster_publish_seconds",
         "Cluster mode: from publishing a batch to JetStream's acknowledgement.",
         &m->cluster_publish);
    hist(w, "tandem_cluster_remote_hold_seconds",
         "Cluster mode: from applying another node's batch to queueing its broadcast (it waits "
         "only for a pending local batch it may build on).",
         &m->cluster_hold);
}
