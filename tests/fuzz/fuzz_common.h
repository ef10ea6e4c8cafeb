/*
 * fuzz_common.h -- shared state of the libFuzzer targets for the CRDT
 * decoders: the seed scenario (td_test_docs.c), built once per process,
 * and how a broken contract is reported (abort, so that libFuzzer and the
 * replay driver both see a crash).
 */
#ifndef TT_FUZZ_COMMON_H
#define TT_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "td_test_util.h"

/* The entry points; the replay driver compiles each target under its own
 * name (TD_FUZZ_ENTRY), libFuzzer builds use LLVMFuzzerTestOneInput. */
int tt_fuzz_batch_one(const uint8_t *data, size_t size);
int tt_fuzz_snapshot_one(const uint8_t *data, size_t size);
int tt_fuzz_vv_one(const uint8_t *data, size_t size);
int tt_fuzz_yjs_one(const uint8_t *data, size_t size);

/* fuzz_yjs.c's seeds (Yjs updates made by the npm yjs package): the i-th,
 * or NULL past the last. */
const uint8_t *tt_fuzz_yjs_seed(size_t i, size_t *len, const char **name);

/* The scenario, built on first use and kept for the process's life. */
const tt_scenario *tt_fuzz_scenario(void);

/* Prints what broke and the input, then aborts -- unless the replay driver
 * set tt_fuzz_keep_going, which makes it count the failure and return so
 * that one run reports every broken input. */
void tt_fuzz_fail(const char *target, const char *why, const uint8_t *data, size_t size);
extern int tt_fuzz_keep_going;
extern long tt_fuzz_failures;

#endif /* TT_FUZZ_COMMON_H */
