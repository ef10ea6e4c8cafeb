/*
 * store_db.c -- opening and closing a data directory, and whole-store
 * maintenance (checkpoints, file compaction, statistics).
 *
 * A data directory is a RocksDB database with the column families default,
 * log, snap, meta and owner. The default family holds one key, the format
 * version marker, written when the directory is created. Directories from
 * before owner records lack the owner family: a read-write open creates it
 * (empty), a read-only open goes without it (no document has owners). Opening refuses anything
 * else: a directory of another format version, a RocksDB database that is
 * not ours, a non-empty directory that is not a database at all. A lock held
 * by another process (RocksDB's LOCK file) is reported as such, naming the
 * directory, instead of RocksDB's raw message.
 *
 * This file is the top of storage/: it starts the store thread
 * (store_write.c) and the compaction thread (store_compact.c) once the
 * database is open and stops them before closing it, so it calls into
 * every other file and none calls into it.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store_internal.h"

static const char *const durability_names[] = {
    [TD_STORE_SYNC_GROUP] = "group",
    [TD_STORE_SYNC_ALWAYS] = "always",
    [TD_STORE_SYNC_OFF] = "off",
};

int td_store_durability_parse(const char *name, td_store_durability *out)
{
    for (size_t i = 0; i < sizeof durability_names / sizeof durability_names[0]; i++) {
        if (name && strcmp(name, durability_names[i]) == 0) {
            *out = (td_store_durability)i;
            return 0;
        }
    }
    return -1;
}

const char *td_store_durability_name(td_store_durability d)
{
    if ((size_t)d < sizeof durability_names / sizeof durability_names[0])
        return durability_names[d];
    return "?";
}

void td_store_free(void *buf)
{
    free(buf);
}

/* ---- opening ------------------------------------------------------------ */

/* What is at `dir` before RocksDB sees it. DIR_EMPTY: nothing but files of
 * an unfinished RocksDB creation. */
typedef enum { DIR_MISSING, DIR_EMPTY, DIR_DATABASE, DIR_OTHER, DIR_ERROR } dir_state;

/* Names RocksDB itself creates. A directory holding only these but no
 * CURRENT is a database whose creation was interrupted (say by a crash
 * during the first open): it is safe to create the database again. */
static int rocksdb_file(const char *name)
{
    static const char *const exact[] = {"LOCK", "LOG", "IDENTITY", "CURRENT"};
    static const char *const prefix[] = {"LOG.old.", "MANIFEST-", "OPTIONS-"};
    static const char *const suffix[] = {".log", ".sst", ".dbtmp", ".tmp", ".blob"};
    size_t n = strlen(name);

    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strcmp(name, exact[i]) == 0)
            return 1;
    for (size_t i = 0; i < sizeof prefix / sizeof prefix[0]; i++)
        if (strncmp(name, prefix[i], strlen(prefix[i])) == 0)
            return 1;
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        size_t k = strlen(suffix[i]);
        if (n > k && strcmp(name + n - k, suffix[i]) == 0)
            return 1;
    }
    return 0;
}

static dir_state probe_dir(const char *dir, int *errnum)
{
    struct stat sb;
    DIR *d;
    struct dirent *e;
    int has_current = 0, has_other = 0;

    if (stat(dir, &sb) != 0) {
        *errnum = errno;
        return errno == ENOENT ? DIR_MISSING : DIR_ERROR;
    }
    if (!S_ISDIR(sb.st_mode)) {
        *errnum = ENOTDIR;
        return DIR_ERROR;
    }
    d = opendir(dir);
    if (d == NULL) {
        *errnum = errno;
        return DIR_ERROR;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (strcmp(e->d_name, "CURRENT") == 0)
            has_current = 1;
        else if (!rocksdb_file(e->d_name))
            has_other = 1;
    }
    closedir(d);
    if (has_current)
        return DIR_DATABASE;
    return has_other ? DIR_OTHER : DIR_EMPTY;
}

/* RocksDB reports a held lock as an I/O error mentioning the LOCK file
 * ("While lock file: DIR/LOCK: Resource temporarily unavailable", or "lock
 * hold by current process" within one process). */
static td_store_err open_error(const char *dir, char *rerr, td_store_error *err)
{
    td_store_err code = TD_STORE_ERR_IO;
    if (strstr(rerr, "/LOCK") || strstr(rerr, "lock hold"))
        code = td_store_seterr(err, TD_STORE_ERR_LOCKED,
                               "data directory %s is in use by another process "
                               "(its LOCK file is held); stop that process or "
                               "use another directory",
                               dir);
    else
        code = td_store_seterr(err, TD_STORE_ERR_IO,
                               "cannot open data directory %s: %s", dir, rerr);
    rocksdb_free(rerr);
    return code;
}

/* 1 if any of the n families of the database at dir holds a key, 0 if
 * none does, -1 if it cannot be read. Opened read-only: nothing changes. */
static int any_data(td_store *st, char **names, size_t n)
{
    const rocksdb_options_t **cfo = calloc(n, sizeof *cfo);
    rocksdb_column_family_handle_t **h = calloc(n, sizeof *h);
    char *rerr = NULL;
    rocksdb_t *db = NULL;
    int found = -1;

    if (cfo && h) {
        for (size_t i = 0; i < n; i++)
            cfo[i] = st->dbopts;
        db = rocksdb_open_for_read_only_column_families(
            st->dbopts, st->dir, (int)n, (const char *const *)names, cfo, h, 0, &rerr);
    }
    if (db) {
        found = 0;
        for (size_t i = 0; i < n; i++) {
            rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db, st->ro, h[i]);
            rocksdb_iter_seek_to_first(it);
            found |= rocksdb_iter_valid(it);
            rocksdb_iter_destroy(it);
            rocksdb_column_family_handle_destroy(h[i]);
        }
        rocksdb_close(db);
    }
    rocksdb_free(rerr);
    free(cfo);
    free(h);
    return found;
}

/* Existing databases must have only our column families. One with some of
 * them missing is accepted only if it holds no data at all: that is a
 * creation interrupted between creating the database and its families
 * (a crash during the very first open); anything else is someone else's
 * database, which must not be changed. */
static td_store_err check_families(td_store *st, td_store_error *err)
{
    size_t n = 0;
    char *rerr = NULL;
    char **names = rocksdb_list_column_families(st->dbopts, st->dir, &n, &rerr);
    int seen[TD_CF_COUNT] = {0};
    const char *const *cf_names = td_store_cf_names;
    td_store_err code = TD_STORE_OK;

    if (rerr)
        return open_error(st->dir, rerr, err);
    for (size_t i = 0; i < n && code == TD_STORE_OK; i++) {
        size_t k = 0;
        while (k < TD_CF_COUNT && strcmp(names[i], cf_names[k]) != 0)
            k++;
        if (k == TD_CF_COUNT)
            code = td_store_seterr(err, TD_STORE_ERR_CORRUPT,
                                   "%s is not a tandem data directory "
                                   "(unexpected column family '%s')",
                                   st->dir, names[i]);
        else
            seen[k] = 1;
    }
    /* The owner family came later: its absence is an older directory. */
    if (code == TD_STORE_OK && !seen[TD_CF_OWNER] && st->o.read_only)
        st->nfamilies = TD_CF_OWNER;
    if (code == TD_STORE_OK && !(seen[0] && seen[1] && seen[2] && seen[3])) {
        int data = any_data(st, names, n);
        if (data < 0)
            code = td_store_seterr(err, TD_STORE_ERR_IO,
                                   "cannot read the RocksDB database in %s", st->dir);
        else if (data > 0)
            code = td_store_seterr(err, TD_STORE_ERR_CORRUPT,
                                   "%s is not a tandem data directory (a RocksDB "
                                   "database without the log, snap and meta "
                                   "column families)",
                                   st->dir);
        else if (st->o.read_only)
            code = td_store_seterr(err, TD_STORE_ERR_NOT_FOUND,
                                   "data directory %s was never initialised", st->dir);
    }
    rocksdb_list_column_families_destroy(names, n);
    return code;
}

static int family_empty(td_store *st, int cf)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, st->ro, st->cf[cf]);
    int empty;
    rocksdb_iter_seek_to_first(it);
    empty = !rocksdb_iter_valid(it);
    rocksdb_iter_destroy(it);
    return empty;
}

/* Reads (or, for a fresh directory, writes) the format version marker. */
static td_store_err check_format(td_store *st, td_store_error *err)
{
    char *rerr = NULL, *val;
    size_t len = 0;
    char want[16];

    snprintf(want, sizeof want, "%d", TD_STORE_FORMAT_VERSION);
    val = rocksdb_get_cf(st->db, st->ro, st->cf[TD_CF_DEFAULT],
                         TD_STORE_FORMAT_KEY, strlen(TD_STORE_FORMAT_KEY), &len,
                         &rerr);
    if (rerr) {
        td_store_seterr(err, TD_STORE_ERR_IO, "reading the format marker of %s: %s",
                        st->dir, rerr);
        rocksdb_free(rerr);
        return TD_STORE_ERR_IO;
    }
    if (val) {
        td_store_err code = TD_STORE_OK;
        if (len != strlen(want) || memcmp(val, want, len) != 0) {
            char shown[32];
            size_t k;
            for (k = 0; k < len && k < sizeof shown - 1; k++)
                shown[k] = (val[k] >= 0x20 && val[k] < 0x7f) ? val[k] : '?';
            shown[k] = '\0';
            code = td_store_seterr(err, TD_STORE_ERR_VERSION,
                                   "data directory %s has format version '%s'; "
                                   "this build reads format version %s only",
                                   st->dir, shown, want);
        }
        rocksdb_free(val);
        return code;
    }
    /* No marker: a directory we created but did not finish initialising is
     * fine (all families empty); anything else is someone else's data. */
    for (int cf = 0; cf < st->nfamilies; cf++)
        if (!family_empty(st, cf))
            return td_store_seterr(err, TD_STORE_ERR_CORRUPT,
                                   "%s is not a tandem data directory (no "
                                   "format marker, but column family '%s' "
                                   "holds data)",
                                   st->dir, td_store_cf_names[cf]);
    if (st->o.read_only)
        return td_store_seterr(err, TD_STORE_ERR_NOT_FOUND,
                               "data directory %s was never initialised", st->dir);
    rocksdb_put_cf(st->db, st->wo_admin, st->cf[TD_CF_DEFAULT],
                   TD_STORE_FORMAT_KEY, strlen(TD_STORE_FORMAT_KEY), want,
                   strlen(want), &rerr);
    if (rerr) {
        td_store_seterr(err, TD_STORE_ERR_IO, "writing the format marker of %s: %s",
                        st->dir, rerr);
        rocksdb_free(rerr);
        return TD_STORE_ERR_IO;
    }
    return TD_STORE_OK;
}

static td_store_err open_db(td_store *st, td_store_error *err)
{
    int errnum = 0;
    dir_state ds = probe_dir(st->dir, &errnum);
    char *rerr;
    td_store_err code;

    switch (ds) {
    case DIR_MISSING:
        if (!st->o.create_if_missing || st->o.read_only)
            return td_store_seterr(err, TD_STORE_ERR_NOT_FOUND,
                                   "data directory %s does not exist", st->dir);
        break;
    case DIR_ERROR:
        return td_store_seterr(err, TD_STORE_ERR_IO, "data directory %s: %s",
                               st->dir, strerror(errnum));
    case DIR_OTHER:
        return td_store_seterr(err, TD_STORE_ERR_CORRUPT,
                               "%s is not a tandem data directory (not empty, "
                               "and no RocksDB database in it)",
                               st->dir);
    case DIR_EMPTY:
        if (st->o.read_only)
            return td_store_seterr(err, TD_STORE_ERR_NOT_FOUND,
                                   "data directory %s is empty", st->dir);
        break;
    case DIR_DATABASE:
        code = check_families(st, err);
        if (code != TD_STORE_OK)
            return code;
        break;
    }

    rerr = td_store_handle_open(st);
    if (rerr)
        return open_error(st->dir, rerr, err);
    return check_format(st, err);
}

static td_store_err init_options(td_store *st, const td_store_options *opts,
                                 td_store_error *err)
{
    if (opts)
        st->o = *opts;
    if (td_store_durability_name(st->o.durability)[0] == '?')
        return td_store_seterr(err, TD_STORE_ERR_ARG, "unknown durability mode %d",
                               (int)st->o.durability);
    if (st->o.compact_ops == 0)
        st->o.compact_ops = 10000;
    if (st->o.compact_bytes == 0)
        st->o.compact_bytes = (uint64_t)4 << 20;
    if (opts && opts->crdt) {
        st->crdt = *opts->crdt;
        st->have_crdt = 1;
    }
    st->o.crdt = NULL;

    st->dbopts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(st->dbopts, 1);
    rocksdb_options_set_create_missing_column_families(st->dbopts, 1);
    rocksdb_options_set_paranoid_checks(st->dbopts, 1);
    rocksdb_options_set_compression(st->dbopts, rocksdb_lz4_compression);
    rocksdb_options_set_info_log_level(st->dbopts, 2 /* warn */);
    rocksdb_options_set_keep_log_file_num(st->dbopts, 2);
    rocksdb_options_set_max_log_file_size(st->dbopts, 1 << 20);

    st->wo_append = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(st->wo_append,
                                  st->o.durability != TD_STORE_SYNC_OFF);
    st->wo_unsynced = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(st->wo_unsynced, 0);
    st->wo_admin = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(st->wo_admin,
                                  st->o.durability != TD_STORE_SYNC_OFF);
    st->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(st->ro, 1);
    return TD_STORE_OK;
}

static void destroy(td_store *st)
{
    td_store_handle_close(st);
    if (st->dbopts)
        rocksdb_options_destroy(st->dbopts);
    if (st->wo_append)
        rocksdb_writeoptions_destroy(st->wo_append);
    if (st->wo_unsynced)
        rocksdb_writeoptions_destroy(st->wo_unsynced);
    if (st->wo_admin)
        rocksdb_writeoptions_destroy(st->wo_admin);
    if (st->ro)
        rocksdb_readoptions_destroy(st->ro);
    td_store_cache_free(&st->cache);
    pthread_mutex_destroy(&st->write_mu);
    pthread_rwlock_destroy(&st->db_gate);
    pthread_mutex_destroy(&st->state_mu);
    td_store_queue_destroy(&st->wq);
    pthread_mutex_destroy(&st->done_mu);
    pthread_cond_destroy(&st->done_cond);
    td_store_queue_destroy(&st->cq);
    free(st->dir);
    free(st);
}

td_store_err td_store_open(const char *dir, const td_store_options *opts,
                           td_store **out, td_store_error *err)
{
    td_store *st;
    td_store_err code;

    *out = NULL;
    if (dir == NULL || dir[0] == '\0')
        return td_store_seterr(err, TD_STORE_ERR_ARG, "no data directory given");
    if (sodium_init() < 0)
        return td_store_seterr(err, TD_STORE_ERR_IO, "libsodium failed to initialise");
    st = calloc(1, sizeof *st);
    if (st == NULL)
        return td_store_err_nomem(err);
    pthread_mutex_init(&st->write_mu, NULL);
    pthread_rwlock_init(&st->db_gate, NULL);
    pthread_mutex_init(&st->state_mu, NULL);
    atomic_init(&st->broken, 0);
    st->nfamilies = TD_CF_COUNT;
    td_store_cache_init(&st->cache);
    /* Appends still queued at close are written; compactions are not. */
    td_store_queue_init(&st->wq, 1);
    pthread_mutex_init(&st->done_mu, NULL);
    pthread_cond_init(&st->done_cond, NULL);
    td_store_fifo_init(&st->done);
    td_store_queue_init(&st->cq, 0);
    atomic_init(&st->outstanding, 0);
    st->dir = strdup(dir);
    if (st->dir == NULL) {
        destroy(st);
        return td_store_err_nomem(err);
    }
    code = init_options(st, opts, err);
    if (code == TD_STORE_OK)
        code = open_db(st, err);
    if (code == TD_STORE_OK && !st->o.read_only) {
        if (td_store_writer_start(st) != 0)
            code = td_store_seterr(err, TD_STORE_ERR_IO, "cannot start the store thread");
        else if (st->o.compaction == TD_STORE_COMPACT_AUTO &&
                 td_store_compactor_start(st) != 0)
            code = td_store_seterr(err, TD_STORE_ERR_IO,
                                   "cannot start the compaction thread");
    }
    if (code != TD_STORE_OK) {
        td_store_compactor_stop(st);
        td_store_writer_stop(st);
        destroy(st);
        return code;
    }
    *out = st;
    return TD_STORE_OK;
}

void td_store_close(td_store *st)
{
    if (st == NULL)
        return;
    td_store_writer_stop(st);
    td_store_compactor_stop(st);
    while (td_store_poll(st, 0) > 0)
        ;
    destroy(st);
}

/* ---- whole-store maintenance -------------------------------------------- */

td_store_err td_store_checkpoint(td_store *st, const char *dir,
                                 td_store_error *err)
{
    struct stat sb;
    char *rerr = NULL;
    rocksdb_checkpoint_t *cp;
    td_store_err code;

    if (dir == NULL || dir[0] == '\0')
        return td_store_seterr(err, TD_STORE_ERR_ARG, "no backup directory given");
    if (stat(dir, &sb) == 0)
        return td_store_seterr(err, TD_STORE_ERR_EXISTS,
                               "backup directory %s already exists; name a new one",
                               dir);
    code = td_store_enter(st, err);
    if (code != TD_STORE_OK)
        return code;
    cp = rocksdb_checkpoint_object_create(st->db, &rerr);
    if (rerr == NULL)
        /* log_size_for_flush 0: flush the memtables, so the checkpoint is
         * self-contained SST files plus an empty WAL. */
        rocksdb_checkpoint_create(cp, dir, 0, &rerr);
    if (cp)
        rocksdb_checkpoint_object_destroy(cp);
    td_store_leave(st);
    if (rerr) {
        td_store_seterr(err, TD_STORE_ERR_IO, "checkpoint into %s failed: %s", dir,
                        rerr);
        rocksdb_free(rerr);
        return TD_STORE_ERR_IO;
    }
    return TD_STORE_OK;
}

td_store_err td_store_compact_files(td_store *st, td_store_error *err)
{
    td_store_err code;

    if (st->o.read_only)
        return td_store_err_read_only(st, err);
    code = td_store_enter(st, err);
    if (code != TD_STORE_OK)
        return code;
    for (int i = 0; i < st->nfamilies; i++)
        rocksdb_compact_range_cf(st->db, st->cf[i], NULL, 0, NULL, 0);
    td_store_leave(st);
    return TD_STORE_OK;
}

void td_store_get_stats(td_store *st, td_store_stats *out)
{
    memset(out, 0, sizeof *out);
    out->appends_ok = atomic_load(&st->n_appends_ok);
    out->appends_failed = atomic_load(&st->n_appends_failed);
    out->writes = atomic_load(&st->n_writes);
    out->synced_writes = atomic_load(&st->n_synced_writes);
    out->compactions = atomic_load(&st->n_compactions);
    out->compaction_errors = atomic_load(&st->n_compaction_errors);
    out->disk_bytes = td_store_dir_bytes(st->dir, NULL);
}
