/*
 * fuzz_vv.c -- libFuzzer target for the version-vector decoder of
 * td_crdt_diff.
 *
 * Arbitrary bytes as a peer's vv, against the scenario's full document: the
 * document must not change; on success a fresh replica must take the
 * output, and a normal diff must complete it to the full document
 * (tt_feed_diff).
 */
#include "fuzz_common.h"

#ifndef TD_FUZZ_ENTRY
#define TD_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int TD_FUZZ_ENTRY(const uint8_t *data, size_t size);

int TD_FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    static td_crdt_doc *full;
    static tt_bytes snap;
    if (!full) {
        full = tt_load_doc(0x3333, &tt_fuzz_scenario()->full_snap);
        snap = tt_snap(full);
    }
    char why[1024];
    if (tt_feed_diff(full, &snap, data, size, 1, why, sizeof why) == TT_FEED_BROKEN)
        tt_fuzz_fail("fuzz_vv", why, data, size);
    return 0;
}
