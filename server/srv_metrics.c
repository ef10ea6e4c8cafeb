/*
 * srv_metrics.c -- counters and histograms, rendered for GET /metrics in
 * the Prometheus text format (0.0.4).
 *
 * Everything is updated on the loop thread only, so plain integers do; the
 * histograms have fixed latency buckets from 50 us to 1 s, the range that
 * separates a healthy group-commit store (~150 us) from a stalled one.
 */
#include <stdarg.h>
#include <string.h>

#include "srv_internal.h"

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

void td_srv_metrics_render(td_srv_server *srv, td_srv_wbuf *w)
{
    const td_srv_metrics *m = &srv->m;
    td_store_stats st;
    memset(&st, 0, sizeof st);
    if (srv->store)
        td_store_get_stats(srv->store, &st);
    metric(w, "tandem_connections", "gauge", "Open WebSocket connections.", m->connections);
    metric(w, "tandem_connections_total", "counter", "WebSocket connections accepted.",
           m->connections_total);
    metric(w, "tandem_documents_loaded", "gauge", "Documents held in memory.", m->docs_loaded);
    metric(w, "tandem_document_loads_total", "counter", "Documents loaded.", m->doc_loads);
    metric(w, "tandem_document_unloads_total", "counter", "Idle documents unloaded.",
           m->doc_unloads);
    metric(w, "tandem_document_load_failures_total", "counter",
           "Document loads that failed (refused to subscribers).", m->doc_load_failures);
    metric(w, "tandem_ops_applied_total", "counter", "New CRDT ops integrated from UPDATEs.",
           m->ops_applied);
    metric(w, "tandem_batches_applied_total", "counter", "UPDATE batches applied and stored.",
           m->batches_applied);
    metric(w, "tandem_batches_duplicate_total", "counter",
           "UPDATE batches holding only known ops (acknowledged, not stored).",
           m->batches_duplicate);
    metric(w, "tandem_bytes_in_total", "counter", "WebSocket message bytes received.",
           m->bytes_in);
    metric(w, "tandem_bytes_out_total", "counter", "WebSocket message bytes sent.",
           m->bytes_out);
    metric(w, "tandem_messages_in_total", "counter", "WebSocket messages received.",
           m->frames_in);
    metric(w, "tandem_messages_out_total", "counter", "WebSocket messages sent.",
           m->frames_out);
    metric(w, "tandem_presence_updates_total", "counter", "Presence states received.",
           m->presence_updates);
    metric(w, "tandem_presence_broadcasts_total", "counter",
           "Presence entries broadcast (after coalescing).", m->presence_broadcasts);
    metric(w, "tandem_presence_expired_total", "counter", "Presence entries expired by TTL.",
           m->presence_expired);
    metric(w, "tandem_slow_consumer_closes_total", "counter",
           "Connections closed because their send queue passed the cap.",
           m->slow_consumer_closes);
    metric(w, "tandem_store_failures_total", "counter", "Store appends that failed.",
           m->store_failures);
    metric(w, "tandem_store_writes_total", "counter", "RocksDB writes (groups) for appends.",
           st.writes);
    metric(w, "tandem_store_compactions_total", "counter", "Log compactions.", st.compactions);
    metric(w, "tandem_store_disk_bytes", "gauge", "Bytes of the data directory.",
           st.disk_bytes);
    put_text(w, "# HELP tandem_errors_total ERROR messages sent, by code.\n"
                "# TYPE tandem_errors_total counter\n");
    for (unsigned c = 1; c < TD_SRV_E_COUNT; c++)
        put_text(w, "tandem_errors_total{code=\"%s\"} %llu\n", td_srv_code_name(c),
                 (unsigned long long)m->errors[c]);
    hist(w, "tandem_store_append_seconds", "From store append to its completion.",
         &m->store_append);
    hist(w, "tandem_receive_to_broadcast_seconds",
         "From receiving an UPDATE to queueing its broadcast.", &m->recv_to_bcast);
}
