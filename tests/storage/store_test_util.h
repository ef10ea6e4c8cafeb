/*
 * store_test_util.h -- helpers shared by the store's tests.
 *
 * Plain C test programs with td_check.h's checks: a failed CHECK() ends the
 * current test case (st_test_run); main returns non-zero if anything
 * failed. Here: the store's own CHECK_CODE / CHECK_OK, temporary
 * data directories under /tmp (removed again), a seeded PRNG so a failing
 * run can be replayed, and a raw RocksDB handle on a closed data directory
 * for tests that damage stored values on purpose.
 */
#ifndef TD_STORE_TEST_UTIL_H
#define TD_STORE_TEST_UTIL_H

#include <rocksdb/c.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tandem_store.h"
#include "td_check.h"
#include "td_rng.h"

/* The checks are td_check.h's, under the names these tests use. */
#define st_test_jmp td_check_jmp
#define st_test_fail td_check_fail

/* A store call that must return `want`; prints the store's message if not. */
#define CHECK_CODE(want, call, errp)                                    \
    do {                                                                \
        td_store_err st_c_ = (call);                                    \
        if (st_c_ != (want))                                            \
            st_test_fail(__FILE__, __LINE__, "%s returned %s (%s), expected %s", \
                         #call, td_store_strerror(st_c_),               \
                         st_errmsg(errp), td_store_strerror(want));     \
    } while (0)

static inline const char *st_errmsg(const td_store_error *e)
{
    return e ? e->msg : "";
}

#define CHECK_OK(call, errp) CHECK_CODE(TD_STORE_OK, call, errp)

/* Runs fn as a test case (td_check_run) and removes the directories it
 * made; returns 1 if it failed. */
int st_test_run(const char *name, void (*fn)(void));

/* A fresh directory /tmp/tandem-store-XXXXXX (the caller owns the string);
 * removed when the test ends, even if it failed (TD_TEST_KEEP=1 keeps it). */
char *st_tmpdir(void);
/* rm -rf */
void st_rmtree(const char *path);

/* The PRNG of td_rng.h. */
typedef td_rng st_rng;
#define st_rng_seed td_rng_seed
#define st_rng_next td_rng_next
/* Uniform in [0, n). */
uint64_t st_rng_below(st_rng *r, uint64_t n);
/* Seed from $TD_TEST_SEED or the clock; printed so failures can be replayed. */
uint64_t st_test_seed(const char *prog);

/* Raw access to a data directory (which must not be open elsewhere). */
typedef struct st_raw {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_column_family_handle_t *cf[5]; /* default, log, snap, meta, owner */
} st_raw;
enum { ST_CF_DEFAULT, ST_CF_LOG, ST_CF_SNAP, ST_CF_META, ST_CF_OWNER, ST_CF_COUNT };
int st_raw_open(st_raw *r, const char *dir);
void st_raw_close(st_raw *r);
/* Reads a value (malloc'ed) or NULL. */
char *st_raw_get(st_raw *r, int cf, const void *key, size_t klen, size_t *vlen);
void st_raw_put(st_raw *r, int cf, const void *key, size_t klen, const void *val,
                size_t vlen);
void st_raw_del(st_raw *r, int cf, const void *key, size_t klen);
/* Log key of (doc, seq) as the store lays it out. */
size_t st_log_key(uint8_t *out, const char *doc, uint64_t seq);

#endif
