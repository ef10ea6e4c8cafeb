/*
 * store_test_util.c -- see store_test_util.h.
 */
#define _XOPEN_SOURCE 700

#include "store_test_util.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>


/* Directories made by st_tmpdir during the running test: removed when it
 * ends, failed or not (a failed CHECK skips the test's own cleanup), unless
 * TD_TEST_KEEP is set. */
static char *made[64];
static int nmade;

static void remove_made(void)
{
    const char *keep = getenv("TD_TEST_KEEP");
    for (int i = 0; i < nmade; i++) {
        if (keep && *keep)
            fprintf(stderr, "kept %s\n", made[i]);
        else
            st_rmtree(made[i]);
        free(made[i]);
    }
    nmade = 0;
}

int st_test_run(const char *name, void (*fn)(void))
{
    td_check_after_case = remove_made;
    return td_check_run(name, fn);
}

char *st_tmpdir(void)
{
    char *t = strdup("/tmp/tandem-store-XXXXXX");
    if (t == NULL || mkdtemp(t) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    if (nmade < (int)(sizeof made / sizeof made[0]))
        made[nmade++] = strdup(t);
    return t;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void st_rmtree(const char *path)
{
    if (path)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

uint64_t st_rng_below(st_rng *r, uint64_t n)
{
    return n ? st_rng_next(r) % n : 0;
}

uint64_t st_test_seed(const char *prog)
{
    const char *env = getenv("TD_TEST_SEED");
    uint64_t seed;
    if (env && *env) {
        seed = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000000007ULL ^ (uint64_t)ts.tv_nsec ^
               ((uint64_t)getpid() << 32);
    }
    fprintf(stderr, "%s: seed %llu (replay with TD_TEST_SEED=%llu)\n", prog,
            (unsigned long long)seed, (unsigned long long)seed);
    return seed;
}

int st_raw_open(st_raw *r, const char *dir)
{
    static const char *names[ST_CF_COUNT] = {"default", "log", "snap", "meta",
                                             "owner"};
    const rocksdb_options_t *cfo[ST_CF_COUNT];
    char *err = NULL;
    memset(r, 0, sizeof *r);
    r->opts = rocksdb_options_create();
    rocksdb_options_set_create_missing_column_families(r->opts, 1);
    for (int i = 0; i < ST_CF_COUNT; i++)
        cfo[i] = r->opts;
    r->db = rocksdb_open_column_families(r->opts, dir, ST_CF_COUNT, names, cfo, r->cf,
                                         &err);
    if (err) {
        fprintf(stderr, "raw open %s: %s\n", dir, err);
        rocksdb_free(err);
        rocksdb_options_destroy(r->opts);
        return -1;
    }
    return 0;
}

void st_raw_close(st_raw *r)
{
    for (int i = 0; i < ST_CF_COUNT; i++)
        rocksdb_column_family_handle_destroy(r->cf[i]);
    rocksdb_close(r->db);
    rocksdb_options_destroy(r->opts);
}

char *st_raw_get(st_raw *r, int cf, const void *key, size_t klen, size_t *vlen)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *err = NULL, *v, *copy = NULL;
    v = rocksdb_get_cf(r->db, ro, r->cf[cf], key, klen, vlen, &err);
    rocksdb_readoptions_destroy(ro);
    if (err) {
        rocksdb_free(err);
        return NULL;
    }
    if (v) {
        copy = malloc(*vlen ? *vlen : 1);
        memcpy(copy, v, *vlen);
        rocksdb_free(v);
    }
    return copy;
}

void st_raw_put(st_raw *r, int cf, const void *key, size_t klen, const void *val,
                size_t vlen)
{
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    char *err = NULL;
    rocksdb_put_cf(r->db, wo, r->cf[cf], key, klen, val, vlen, &err);
    rocksdb_writeoptions_destroy(wo);
    if (err) {
        fprintf(stderr, "raw put: %s\n", err);
        rocksdb_free(err);
    }
}

void st_raw_del(st_raw *r, int cf, const void *key, size_t klen)
{
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    char *err = NULL;
    rocksdb_delete_cf(r->db, wo, r->cf[cf], key, klen, &err);
    rocksdb_writeoptions_destroy(wo);
    if (err)
        rocksdb_free(err);
}

size_t st_log_key(uint8_t *out, const char *doc, uint64_t seq)
{
    size_t n = strlen(doc);
    out[0] = (uint8_t)n;
    memcpy(out + 1, doc, n);
    for (int i = 7; i >= 0; i--) {
        out[1 + n + i] = (uint8_t)seq;
        seq >>= 8;
    }
    return 1 + n + 8;
}
