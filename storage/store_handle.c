/*
 * store_handle.c -- the RocksDB handle: opening and closing the database
 * with its column families, and the gate every use of it passes.
 *
 * The handle can change while the store is open: after a write failed with
 * a RocksDB error (disk full, I/O error) RocksDB refuses every later write
 * until the database is reopened (7.8's C API has no resume), so the store
 * thread closes and reopens it (store_write.c). Every other use of db and
 * cf[] -- reads, compactions, deletes, checkpoints -- holds db_gate shared
 * through td_store_enter / td_store_leave; the reopen holds it exclusively.
 * If a reopen fails, db stays NULL and td_store_enter says so until the
 * next attempt works.
 *
 * Below everything that touches the database; calls only store_error.c and
 * store_codec.c (document ids).
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store_internal.h"

const char *const td_store_cf_names[TD_CF_COUNT] = {"default", "log", "snap",
                                                    "meta", "owner"};

char *td_store_handle_open(td_store *st)
{
    const rocksdb_options_t *cfopts[TD_CF_COUNT];
    char *rerr = NULL;

    for (int i = 0; i < TD_CF_COUNT; i++) {
        cfopts[i] = st->dbopts;
        st->cf[i] = NULL;
    }
    if (st->o.read_only)
        st->db = rocksdb_open_for_read_only_column_families(
            st->dbopts, st->dir, st->nfamilies, td_store_cf_names, cfopts, st->cf,
            0, &rerr);
    else
        st->db = rocksdb_open_column_families(st->dbopts, st->dir, st->nfamilies,
                                              td_store_cf_names, cfopts, st->cf,
                                              &rerr);
    if (rerr) {
        st->db = NULL;
        for (int i = 0; i < TD_CF_COUNT; i++)
            st->cf[i] = NULL;
    }
    return rerr;
}

void td_store_handle_close(td_store *st)
{
    for (int i = 0; i < TD_CF_COUNT; i++) {
        if (st->cf[i])
            rocksdb_column_family_handle_destroy(st->cf[i]);
        st->cf[i] = NULL;
    }
    if (st->db)
        rocksdb_close(st->db);
    st->db = NULL;
}

td_store_err td_store_enter(td_store *st, td_store_error *err)
{
    char why[sizeof st->why_broken];

    pthread_rwlock_rdlock(&st->db_gate);
    if (st->db != NULL)
        return TD_STORE_OK;
    pthread_rwlock_unlock(&st->db_gate);
    pthread_mutex_lock(&st->state_mu);
    memcpy(why, st->why_broken, sizeof why);
    pthread_mutex_unlock(&st->state_mu);
    return td_store_seterr(err, TD_STORE_ERR_IO,
                           "data directory %s is closed after a failed write and "
                           "could not be reopened yet (retrying): %s",
                           st->dir, why);
}

td_store_err td_store_enter_doc(td_store *st, const char *doc, size_t doc_len,
                                int write, td_store_error *err)
{
    if (!td_store_doc_id_valid(doc, doc_len))
        return td_store_err_bad_id(err);
    if (write && st->o.read_only)
        return td_store_err_read_only(st, err);
    return td_store_enter(st, err);
}

void td_store_leave(td_store *st)
{
    pthread_rwlock_unlock(&st->db_gate);
}

uint64_t td_store_dir_bytes(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    uint64_t total = 0;
    size_t sl = suffix ? strlen(suffix) : 0;
    char path[4096];

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        struct stat sb;
        size_t n = strlen(e->d_name);
        if (suffix && (n < sl || strcmp(e->d_name + n - sl, suffix) != 0))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
            total += (uint64_t)sb.st_size;
    }
    closedir(d);
    return total;
}
