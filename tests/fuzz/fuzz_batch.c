/*
 * fuzz_batch.c -- libFuzzer target for td_crdt_apply.
 *
 * The first input byte picks a target document of the seed scenario (empty,
 * partial replica, partial replica with a batch in its pending set, full
 * document); the rest is the batch. After an error the target must be
 * exactly as it was (snapshot bytes, op count, pending set); after a success
 * it must be a valid document whose snapshot round-trips (tt_feed_apply).
 */
#include "fuzz_common.h"

#ifndef TD_FUZZ_ENTRY
#define TD_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int TD_FUZZ_ENTRY(const uint8_t *data, size_t size);

int TD_FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    static tt_bytes before[TT_SCENARIO_MAX_TARGETS];
    const tt_scenario *sc = tt_fuzz_scenario();
    if (size < 1)
        return 0;
    size_t ti = data[0] % sc->ntargets;
    td_crdt_doc *d = tt_scenario_target(sc, ti);
    if (!before[ti].p)
        before[ti] = tt_snap(d);
    char why[1024];
    int changed = 0;
    if (tt_feed_apply(d, &before[ti], data + 1, size - 1, &changed, why, sizeof why) ==
        TT_FEED_BROKEN)
        tt_fuzz_fail("fuzz_batch", why, data, size);
    td_crdt_doc_free(d);
    return 0;
}
