/*
 * store_testing.h -- private hooks for the store's tests. Not part of the
 * public API; nothing outside tests/ may call these.
 */
#ifndef TD_STORE_TESTING_H
#define TD_STORE_TESTING_H

#include "tandem_store.h"

/* Makes the next n append writes fail as if RocksDB had returned an I/O
 * error (the write is not attempted). */
void td_store_test_fail_writes(td_store *st, int n);

#endif /* TD_STORE_TESTING_H */
