/*
 * load_yjs.h -- the y-protocols side of `tandem-load` (`--proto yjs`,
 * load_yjs.c): workloads A-D of tandem_load.c driven by light y-websocket
 * clients, each figure printed beside the native protocol's figure of the
 * same run (issue 12, "Speed and memory").
 *
 * The native workloads stay in tandem_load.c; it hands them over as
 * function pointers and records their figures in a load_fig, so this file
 * can print the ratio without a second copy of the native client code.
 */
#ifndef TD_LOAD_YJS_H
#define TD_LOAD_YJS_H

#include "td_rng.h"

/* Figures of one native workload run (0: not measured). */
typedef struct load_fig {
    double a_p50_ms, a_p99_ms, a_deliv_s; /* A: send-to-receive latency */
    double b_ops_s;                       /* B: ops/s delivered to every reader */
    double c_kib;                         /* C: server KiB per idle connection */
    double d_many_p50_ms, d_one_p50_ms;   /* D: reconnect-to-peer, median */
} load_fig;

typedef struct load_native {
    int (*run_a)(void);
    int (*run_b)(void);
    int (*run_c)(int conns, int deflate);
    int (*run_d)(void);
    load_fig *fig; /* the runs above fill it */
} load_native;

typedef struct load_cfg {
    const char *bin;        /* the tandem binary */
    const char *durability; /* --durability of the server */
    double seconds;         /* -1: each workload's default */
    int conns;              /* C's connections */
    const char *only;       /* NULL: A, sweep, B, C, D; else one letter of "ABCDS" */
    int baseline;           /* also run the native workload and print the ratio */
    td_rng *rng;
} load_cfg;

/* Runs the y-websocket workloads; 0 when each completed and its deliveries
 * arrived, -1 otherwise. Never asserts a timing. */
int load_yjs_main(const load_cfg *cfg, const load_native *native);

#endif /* TD_LOAD_YJS_H */
