/*
 * test_store_enospc.c -- a full disk (issue 10, item 5).
 *
 * The data directory lives on a small tmpfs (8 MiB) that also holds a
 * filler file. Appends go on until the file system is full; then
 *   - the failed appends complete with TD_STORE_ERR_IO, each callback once;
 *   - td_store_writable() is 0 with a reason, later appends fail at once
 *     with TD_STORE_ERR_IO, and reads still work;
 *   - deleting the filler gives space back, and within a few seconds the
 *     store writes again by itself (no reopen from the outside);
 *   - after closing and reopening, every acknowledged append is there at
 *     its sequence with its bytes, and no callback ran twice or never.
 * Needs to mount a tmpfs (root, or CAP_SYS_ADMIN): where that is not
 * permitted it prints "SKIP: cannot mount tmpfs: ..." and exits 77.
 */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store_test_util.h"
#include "tandem_store.h"

#define MAX_APPENDS 4096
#define PAYLOAD 16384
#define FILLER_BYTES (5u << 20)

static char mnt[64];
static char dbdir[128];
static char filler[128];

/* One append: how often its callback ran, and what it said. */
typedef struct rec {
    int queued;     /* td_store_append returned OK */
    int calls;
    td_store_err code;
    uint64_t seq;
} rec;

static rec recs[MAX_APPENDS];
static int nrecs;

typedef struct slot {
    int id;
} slot;
static slot slots[MAX_APPENDS];

static void on_ack(void *ud, const td_store_ack *ack)
{
    slot *s = ud;
    rec *r = &recs[s->id];
    r->calls++;
    r->code = ack->code;
    r->seq = ack->seq;
}

/* The payload of append `id`: the id, then bytes derived from it. */
static void payload(int id, uint8_t *out)
{
    uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(id + 1);
    memcpy(out, &id, sizeof id);
    for (size_t i = sizeof id; i < PAYLOAD; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[i] = (uint8_t)x;
    }
}

/* Queues append number nrecs; returns its code. */
static td_store_err append_one(td_store *st, td_store_error *e)
{
    static uint8_t buf[PAYLOAD];
    int id = nrecs;
    td_store_batch b;
    td_store_err code;

    CHECK(id < MAX_APPENDS);
    payload(id, buf);
    memset(&b, 0, sizeof b);
    b.doc = id % 2 ? "odd" : "even";
    b.doc_len = strlen(b.doc);
    b.ops = buf;
    b.ops_len = PAYLOAD;
    b.nops = 1;
    slots[id].id = id;
    code = td_store_append(st, &b, on_ack, &slots[id], e);
    recs[id].queued = code == TD_STORE_OK;
    nrecs++;
    return code;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void write_filler(void)
{
    static char block[65536];
    FILE *f = fopen(filler, "w");
    CHECK(f != NULL);
    for (unsigned i = 0; i < FILLER_BYTES / sizeof block; i++)
        CHECK(fwrite(block, 1, sizeof block, f) == sizeof block);
    CHECK(fclose(f) == 0);
}

/* Every acknowledged append is in the log at its sequence, intact. */
typedef struct verify {
    int found[MAX_APPENDS];
    const char *doc;
} verify;

static int check_entry(void *ud, uint64_t seq, const uint8_t *ops, size_t len,
                       uint64_t nops)
{
    verify *v = ud;
    static uint8_t want[PAYLOAD];
    int id;
    (void)nops;
    CHECK(len == PAYLOAD);
    memcpy(&id, ops, sizeof id);
    CHECK(id >= 0 && id < nrecs);
    payload(id, want);
    CHECK_MSG(memcmp(ops, want, PAYLOAD) == 0, "entry %llu of %s damaged",
              (unsigned long long)seq, v->doc);
    /* A failed append may have reached the disk after all; an
     * acknowledged one is exactly where its acknowledgement said. */
    if (recs[id].code == TD_STORE_OK && recs[id].queued)
        CHECK_MSG(recs[id].seq == seq, "append %d acked as %llu, stored as %llu", id,
                  (unsigned long long)recs[id].seq, (unsigned long long)seq);
    v->found[id]++;
    return 0;
}

static void test_disk_full(void)
{
    td_store_options o = {0};
    td_store_error e = {0};
    td_store *st = NULL;
    td_store_doc_info info;
    char why[512];
    int failed_cb = 0, acked_before = 0, acked_after = 0;
    double t0;
    static verify v;

    write_filler();
    o.create_if_missing = 1;
    o.compaction = TD_STORE_COMPACT_MANUAL;
    CHECK_OK(td_store_open(dbdir, &o, &st, &e), &e);
    CHECK(td_store_writable(st, why, sizeof why) == 1);

    /* Fill the file system: bursts of 4 appends until one fails. */
    while (!failed_cb) {
        for (int k = 0; k < 4 && !failed_cb; k++) {
            /* Refused at the call once an earlier group found the disk
             * full. */
            td_store_err code = append_one(st, &e);
            CHECK_MSG(code == TD_STORE_OK || code == TD_STORE_ERR_IO, "%s", e.msg);
            failed_cb = code != TD_STORE_OK;
        }
        while (td_store_outstanding(st) > 0)
            td_store_poll(st, -1);
        for (int i = 0; i < nrecs; i++)
            if (recs[i].calls && recs[i].code != TD_STORE_OK) {
                CHECK_MSG(recs[i].code == TD_STORE_ERR_IO, "%s",
                          td_store_strerror(recs[i].code));
                failed_cb = 1;
            }
    }
    for (int i = 0; i < nrecs; i++)
        acked_before += recs[i].code == TD_STORE_OK;
    fprintf(stderr, "disk full after %d appends (%d acknowledged)\n", nrecs,
            acked_before);
    CHECK(acked_before > 0);

    /* Not writable, and says why; appends fail at once; reads work. */
    CHECK(td_store_writable(st, why, sizeof why) == 0);
    fprintf(stderr, "writable: 0 (%s)\n", why);
    CHECK(why[0] != '\0');
    CHECK_CODE(TD_STORE_ERR_IO, append_one(st, &e), &e);
    CHECK_MSG(strstr(e.msg, "disk full or I/O error; retrying") != NULL, "%s", e.msg);
    CHECK_OK(td_store_doc_stat(st, "even", 4, &info, &e), &e);
    /* Still full a while later: still failing, without a reopen. */
    sleep(2);
    CHECK(td_store_writable(st, why, sizeof why) == 0);
    fprintf(stderr, "after 2 s: (%s)\n", why);
    CHECK_CODE(TD_STORE_ERR_IO, append_one(st, &e), &e);
    CHECK_OK(td_store_doc_stat(st, "odd", 3, &info, &e), &e);

    /* Space returns: the store recovers by itself. */
    CHECK(unlink(filler) == 0);
    t0 = now_s();
    while (!td_store_writable(st, why, sizeof why)) {
        CHECK_MSG(now_s() - t0 < 10, "not writable 10 s after space returned: %s", why);
        usleep(50000);
    }
    fprintf(stderr, "writable again after %.2f s\n", now_s() - t0);
    for (int k = 0; k < 8; k++)
        CHECK_OK(append_one(st, &e), &e);
    while (td_store_outstanding(st) > 0)
        td_store_poll(st, -1);
    for (int i = nrecs - 8; i < nrecs; i++) {
        CHECK_MSG(recs[i].code == TD_STORE_OK, "append %d after recovery: %s", i,
                  td_store_strerror(recs[i].code));
        acked_after++;
    }
    td_store_close(st);

    /* Every callback ran exactly once for a queued append, never for one
     * refused at the call. */
    for (int i = 0; i < nrecs; i++)
        CHECK_MSG(recs[i].calls == (recs[i].queued ? 1 : 0),
                  "append %d: queued %d, %d callbacks", i, recs[i].queued,
                  recs[i].calls);

    /* Reopened: every acknowledged append is there, once. */
    o.create_if_missing = 0;
    CHECK_OK(td_store_open(dbdir, &o, &st, &e), &e);
    memset(&v, 0, sizeof v);
    v.doc = "even";
    CHECK_OK(td_store_read_log(st, "even", 4, 0, check_entry, &v, &e), &e);
    v.doc = "odd";
    CHECK_OK(td_store_read_log(st, "odd", 3, 0, check_entry, &v, &e), &e);
    for (int i = 0; i < nrecs; i++) {
        if (recs[i].queued && recs[i].code == TD_STORE_OK)
            CHECK_MSG(v.found[i] == 1, "acknowledged append %d found %d times", i,
                      v.found[i]);
        else
            CHECK_MSG(v.found[i] <= 1, "failed append %d found %d times", i,
                      v.found[i]);
    }
    fprintf(stderr, "%d acknowledged before, %d after: all present\n", acked_before,
            acked_after);
    td_store_close(st);
}

int main(int argc, char **argv)
{
    int failed;
    char tmpl[] = "/tmp/tandem-enospc-XXXXXX";
    (void)argc;
    (void)argv;

    if (mkdtemp(tmpl) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(mnt, sizeof mnt, "%s", tmpl);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=8m") != 0) {
        printf("SKIP: cannot mount tmpfs: %s\n", strerror(errno));
        rmdir(mnt);
        return 77;
    }
    snprintf(dbdir, sizeof dbdir, "%s/db", mnt);
    snprintf(filler, sizeof filler, "%s/filler", mnt);
    failed = st_test_run("disk_full", test_disk_full);
    if (umount2(mnt, MNT_DETACH) != 0)
        perror("umount");
    rmdir(mnt);
    return failed ? 1 : 0;
}
