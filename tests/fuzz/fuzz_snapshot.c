/*
 * fuzz_snapshot.c -- libFuzzer target for td_crdt_doc_load.
 *
 * Arbitrary bytes as a snapshot: an error must give no document and a
 * message; a success must give a valid document whose snapshot encodes,
 * re-loads to the same bytes and JSON, and is rebuilt by its own diff
 * (tt_feed_load). Then the same bytes as a trusted snapshot, which loads
 * lazily: reads work, the deferred decode (forced by snapshot_encode)
 * succeeds or refuses cleanly, and agrees with the untrusted load where that
 * accepts (tt_feed_load_trusted).
 */
#include "fuzz_common.h"

#ifndef TD_FUZZ_ENTRY
#define TD_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int TD_FUZZ_ENTRY(const uint8_t *data, size_t size);

int TD_FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    char why[1024];
    if (tt_feed_load(data, size, why, sizeof why) == TT_FEED_BROKEN)
        tt_fuzz_fail("fuzz_snapshot", why, data, size);
    if (tt_feed_load_trusted(data, size, why, sizeof why) == TT_FEED_BROKEN)
        tt_fuzz_fail("fuzz_snapshot", why, data, size);
    return 0;
}
