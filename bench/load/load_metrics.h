/*
 * load_metrics.h -- what `tandem-load` reads from a server's /metrics
 * (load_metrics.c): counters, so a run can print what the server did
 * besides what the clients saw.
 */
#ifndef TD_LOAD_METRICS_H
#define TD_LOAD_METRICS_H

#include "td_client.h"

/* A counter's value in a Prometheus text body; -1 when it is not there
 * (an older binary). */
double load_metric(const char *body, const char *name);

/* The server's messages and socket writes so far (-1 each when /metrics
 * could not be read), for load_print_writes' deltas. */
typedef struct load_writes {
    double msgs, writes;
} load_writes;

load_writes load_writes_of(const td_cli_server *s);

/* "N messages in M socket writes (K per write)" since `before`: how much
 * the server's adaptive coalescing merged (issue 14). Silent when the
 * server has no such counters. */
void load_print_writes(const td_cli_server *s, load_writes before);

#endif /* TD_LOAD_METRICS_H */
