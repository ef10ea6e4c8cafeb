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
    uint64_t compact_ops, compact_bytes;
    const char *public_key;
    const char *static_dir;
    int log_level; /* lws LLL_ mask */
    int deflate;
} td_srv_config;

/* Runs the server until SIGTERM/SIGINT; returns the process exit status. */
int td_srv_run(const td_srv_config *cfg);

#endif /* SRV_CONFIG_H */
