/*
 * load_cluster.h -- `tandem-load --nodes N` (issue 15, "Speed"): workload A
 * with the clients of each document spread round-robin over N `tandem serve
 * --cluster` nodes sharing one `nats-server -js` that this program starts,
 * printed beside a single-node run of the same workload in the same run.
 */
#ifndef TD_LOAD_CLUSTER_H
#define TD_LOAD_CLUSTER_H

#include "td_rng.h"

typedef struct load_cluster_cfg {
    const char *bin;        /* the tandem binary */
    const char *bin_before; /* NULL, or another tandem binary whose cluster run
                             * comes first, in the same invocation (a change's
                             * before and after under the same load) */
    const char *nats;       /* nats-server binary, or NULL: search PATH, /usr/sbin, /usr/bin */
    const char *durability; /* --durability of every node */
    double seconds;         /* -1: A's default (20 s) */
    int nodes;              /* 1 to 8 cluster nodes */
    int baseline;           /* also run the single-node (no --cluster) workload first */
    td_rng *rng;
} load_cluster_cfg;

/* 0 when every run completed and every delivery arrived, -1 otherwise.
 * Never asserts a timing. */
int load_cluster_main(const load_cluster_cfg *cfg);

#endif /* TD_LOAD_CLUSTER_H */
