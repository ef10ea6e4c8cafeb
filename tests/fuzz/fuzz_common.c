/*
 * fuzz_common.c -- the scenario the fuzz targets start from, and the abort
 * that reports a broken contract (see fuzz_common.h).
 */
#include "fuzz_common.h"

#include <stdio.h>
#include <stdlib.h>

int tt_fuzz_keep_going;
long tt_fuzz_failures;

const tt_scenario *tt_fuzz_scenario(void)
{
    static tt_scenario sc;
    static int built;
    if (!built) {
        tt_scenario_build(&sc);
        tt_alloc_watch = 1; /* see tt_feed_*: allocations sized by the input */
        built = 1;
    }
    return &sc;
}

void tt_fuzz_fail(const char *target, const char *why, const uint8_t *data, size_t size)
{
    fprintf(stderr, "%s: contract broken: %s\ninput (%zu bytes):", target, why, size);
    for (size_t i = 0; i < size && i < 1024; i++)
        fprintf(stderr, "%s%02x", i % 32 ? " " : "\n  ", data[i]);
    fprintf(stderr, "%s\n", size > 1024 ? " ..." : "");
    fflush(stderr);
    tt_fuzz_failures++;
    if (!tt_fuzz_keep_going)
        abort();
}
