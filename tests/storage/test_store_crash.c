/*
 * test_store_crash.c -- nothing acknowledged is lost when the process dies.
 *
 *   test_store_crash always|group|off [rounds] [--raw]
 *
 * Each round starts a child (this program, re-executed) that appends random
 * batches to several documents through the asynchronous API, with many
 * appends outstanding, and prints a batch's id on stdout (one write(2) per
 * line, no buffering) only after its completion callback reported success.
 * The parent kills the child with SIGKILL at a random moment -- usually
 * while it is appending, sometimes while it is still opening and loading --
 * then opens the data directory itself and checks:
 *   - every document loads (snapshot + log validate, the core accepts them);
 *   - every printed batch is present exactly once;
 *   - no batch is partly present: each batch inserts K(id) copies of its id
 *     into one list, and each id found occurs exactly K(id) times, in the
 *     document it was written to;
 *   - every batch claims its own agent id (= its id) for the owner "u<id>":
 *     an owner record is present exactly when its batch is (the two are
 *     written atomically), and names the right owner.
 * The documents are real CRDT documents built with the core, and the child
 * compacts automatically with a low threshold, so kills also land in the
 * middle of compactions. With --raw (or if the core is not usable) batches
 * are opaque bytes instead: id, then K(id) derived 8-byte words, checked
 * byte for byte through td_store_read_log().
 * The seed is printed; TD_TEST_SEED=... replays a run.
 */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store_test_util.h"
#include "tandem_store.h"

#define NDOCS 4
#define WINDOW 48
#define MAX_PER_ROUND 5000

static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* What a batch id determines. */
static unsigned batch_k(uint64_t id) { return 1 + (unsigned)(mix(id) % 6); }
static unsigned batch_doc(uint64_t id) { return (unsigned)((mix(id) >> 16) % NDOCS); }

static void doc_name(char *out, unsigned k) { snprintf(out, 16, "doc-%u", k); }

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the child ---------------------------------------------------------- */

static void on_durable(void *ud, const td_store_ack *ack)
{
    uint64_t id = (uint64_t)(uintptr_t)ud;
    char line[32];
    int n;
    if (ack->code != TD_STORE_OK) {
        fprintf(stderr, "child: append of %" PRIu64 " failed: %s\n", id, ack->msg);
        _exit(4);
    }
    n = snprintf(line, sizeof line, "%" PRIu64 "\n", id);
    if (write(1, line, (size_t)n) != n)
        _exit(5);
}

static size_t raw_batch(uint64_t id, uint8_t *out)
{
    unsigned k = batch_k(id);
    memcpy(out, &id, 8);
    for (unsigned i = 0; i < k; i++) {
        uint64_t w = mix(id ^ ((uint64_t)i << 56));
        memcpy(out + 8 + 8 * i, &w, 8);
    }
    return 8 + 8 * (size_t)k;
}

static int child(const char *dir, td_store_durability mode, uint64_t seed,
                 uint64_t round, int raw)
{
    td_store_options o = {0};
    td_store_error e = {0};
    td_crdt_options co = {0};
    td_crdt_doc *docs[NDOCS] = {0};
    td_crdt_obj lists[NDOCS];
    td_store *st;
    st_rng rng;
    uint64_t counter = 0;

    st_rng_seed(&rng, seed ^ (round * 0x51ed27ULL));
    o.durability = mode;
    o.create_if_missing = 1;
    o.compaction = raw ? TD_STORE_COMPACT_MANUAL : TD_STORE_COMPACT_AUTO;
    o.compact_ops = 200;
    if (td_store_open(dir, &o, &st, &e) != TD_STORE_OK) {
        fprintf(stderr, "child: open: %s\n", e.msg);
        return 3;
    }
    co.agent = st_rng_next(&rng) | 1; /* a fresh replica id per run */
    for (unsigned k = 0; k < NDOCS && !raw; k++) {
        char name[16];
        td_store_err code;
        doc_name(name, k);
        code = td_store_load(st, name, strlen(name), &co, &docs[k], NULL, &e);
        if (code == TD_STORE_ERR_NOT_FOUND)
            code = td_crdt_doc_new(&co, &docs[k]) == TD_CRDT_OK ? TD_STORE_OK
                                                               : TD_STORE_ERR_NOMEM;
        if (code != TD_STORE_OK ||
            td_crdt_root(docs[k], TD_CRDT_LIST, "ids", 3, &lists[k]) != TD_CRDT_OK) {
            fprintf(stderr, "child: load %s: %s\n", name, e.msg);
            return 3;
        }
    }
    for (;;) {
        uint64_t id = (round << 32) | ++counter;
        unsigned k = batch_doc(id), n = batch_k(id);
        char name[16], owner[24];
        uint8_t rawbuf[8 + 8 * 8];
        td_store_batch b;
        td_store_claim claim;
        uint8_t *ops = NULL, *vv = NULL;
        size_t ops_len = 0, vv_len = 0;

        if (counter > MAX_PER_ROUND) {
            while (td_store_outstanding(st) > 0)
                td_store_poll(st, -1);
            pause(); /* wait for the kill */
            continue;
        }
        memset(&b, 0, sizeof b);
        doc_name(name, k);
        b.doc = name;
        b.doc_len = strlen(name);
        b.nops = n;
        claim.agent = id;
        claim.owner = owner;
        claim.owner_len = (size_t)snprintf(owner, sizeof owner, "u%" PRIu64, id);
        b.claims = &claim;
        b.nclaims = 1;
        if (raw) {
            b.ops = rawbuf;
            b.ops_len = raw_batch(id, rawbuf);
        } else {
            td_crdt_value v;
            memset(&v, 0, sizeof v);
            v.type = TD_CRDT_V_INT;
            v.u.i = (int64_t)id;
            for (unsigned i = 0; i < n; i++) {
                size_t len = td_crdt_list_length(docs[k], lists[k]);
                if (td_crdt_list_insert(docs[k], lists[k],
                                        (size_t)st_rng_below(&rng, len + 1), &v,
                                        1) != TD_CRDT_OK) {
                    fprintf(stderr, "child: insert: %s\n", td_crdt_doc_error(docs[k]));
                    return 3;
                }
            }
            if (td_crdt_commit(docs[k], &ops, &ops_len) != TD_CRDT_OK ||
                td_crdt_vv_encode(docs[k], &vv, &vv_len) != TD_CRDT_OK) {
                fprintf(stderr, "child: commit: %s\n", td_crdt_doc_error(docs[k]));
                return 3;
            }
            b.ops = ops;
            b.ops_len = ops_len;
            b.vv = vv;
            b.vv_len = vv_len;
        }
        if (td_store_append(st, &b, on_durable, (void *)(uintptr_t)id, &e) !=
            TD_STORE_OK) {
            fprintf(stderr, "child: append: %s\n", e.msg);
            return 3;
        }
        if (!raw) {
            td_crdt_buf_free(docs[k], ops);
            td_crdt_buf_free(docs[k], vv);
        }
        td_store_poll(st, td_store_outstanding(st) >= WINDOW ? -1 : 0);
        /* Throttle a little so that the kill lands mid-stream. */
        if (st_rng_below(&rng, 16) == 0)
            usleep((useconds_t)st_rng_below(&rng, 2000));
    }
}

/* ---- the parent --------------------------------------------------------- */

/* id -> expected count (0 if only seen) and seen count. */
typedef struct slot {
    uint64_t id;
    unsigned printed;
    unsigned found;
    unsigned owned; /* owner records found for its agent */
} slot;

typedef struct idset {
    slot *s;
    size_t cap, n;
} idset;

static slot *idset_get(idset *set, uint64_t id)
{
    size_t i;
    if ((set->n + 1) * 2 > set->cap) {
        idset big = {calloc(set->cap ? set->cap * 2 : 4096, sizeof(slot)),
                     set->cap ? set->cap * 2 : 4096, 0};
        for (size_t j = 0; j < set->cap; j++)
            if (set->s[j].id)
                *idset_get(&big, set->s[j].id) = set->s[j];
        free(set->s);
        *set = big;
    }
    for (i = mix(id) & (set->cap - 1); set->s[i].id && set->s[i].id != id;
         i = (i + 1) & (set->cap - 1))
        ;
    if (!set->s[i].id) {
        set->s[i].id = id;
        set->n++;
    }
    return &set->s[i];
}

/* Runs one child and kills it; adds every id it printed to `set`. */
static void run_round(const char *self, const char *dir, const char *mode,
                      uint64_t seed, uint64_t round, int raw, st_rng *rng,
                      idset *set, size_t *printed)
{
    int fds[2];
    pid_t pid;
    char seedbuf[32], roundbuf[32], buf[4096], line[64];
    size_t linelen = 0;
    int status, got_line = 0, early = st_rng_below(rng, 5) == 0;
    int64_t start = now_ms(), deadline;

    CHECK(pipe(fds) == 0);
    snprintf(seedbuf, sizeof seedbuf, "%" PRIu64, seed);
    snprintf(roundbuf, sizeof roundbuf, "%" PRIu64, round);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl(self, self, "--child", dir, mode, seedbuf, roundbuf,
              raw ? "raw" : "crdt", (char *)NULL);
        _exit(98);
    }
    close(fds[1]);
    /* Kill early (while opening/loading) in one round of five, else a
     * random moment after the first acknowledgement. */
    deadline = early ? start + (int64_t)st_rng_below(rng, 40) : start + 60000;
    for (;;) {
        struct pollfd p = {fds[0], POLLIN, 0};
        int64_t left = deadline - now_ms();
        ssize_t n;
        if (left <= 0)
            break;
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        n = read(fds[0], buf, sizeof buf);
        if (n <= 0)
            break; /* the child exited on its own: an error */
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (linelen < sizeof line - 1)
                    line[linelen++] = buf[i];
                continue;
            }
            line[linelen] = '\0';
            linelen = 0;
            idset_get(set, strtoull(line, NULL, 10))->printed++;
            (*printed)++;
            if (!got_line && !early) {
                got_line = 1;
                deadline = now_ms() + (int64_t)st_rng_below(rng, 150);
            }
        }
    }
    kill(pid, SIGKILL);
    /* Lines already in the pipe were printed before the kill. */
    for (;;) {
        ssize_t n = read(fds[0], buf, sizeof buf);
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (linelen < sizeof line - 1)
                    line[linelen++] = buf[i];
                continue;
            }
            line[linelen] = '\0';
            linelen = 0;
            idset_get(set, strtoull(line, NULL, 10))->printed++;
            (*printed)++;
        }
    }
    close(fds[0]);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "round %" PRIu64 ": the child did not die by our SIGKILL (status %d)",
              round, status);
    CHECK_MSG(early || got_line, "round %" PRIu64 ": the child acknowledged nothing",
              round);
}

typedef struct scan_ctx {
    idset *set;
    unsigned doc;
    int bad;
} scan_ctx;

static int check_raw_entry(void *ud, uint64_t seq, const uint8_t *ops, size_t len,
                           uint64_t nops)
{
    scan_ctx *c = ud;
    uint8_t want[8 + 8 * 8];
    uint64_t id;
    (void)seq;
    if (len < 8) {
        c->bad = 1;
        return 1;
    }
    memcpy(&id, ops, 8);
    if (raw_batch(id, want) != len || memcmp(want, ops, len) != 0 ||
        nops != batch_k(id) || batch_doc(id) != c->doc) {
        c->bad = 1;
        return 1;
    }
    idset_get(c->set, id)->found += batch_k(id);
    return 0;
}

typedef struct owner_ctx {
    idset *set;
    unsigned doc;
    int bad;
} owner_ctx;

static int check_owner(void *ud, uint64_t agent, const char *owner, size_t len)
{
    owner_ctx *c = ud;
    char want[24];
    size_t n = (size_t)snprintf(want, sizeof want, "u%" PRIu64, agent);
    if (len != n || memcmp(owner, want, n) != 0 || batch_doc(agent) != c->doc) {
        c->bad = 1;
        return 1;
    }
    idset_get(c->set, agent)->owned++;
    return 0;
}

/* Opens the directory and checks every document against `set`. */
static void verify(const char *dir, int raw, idset *set, uint64_t *total_ops)
{
    td_store_options o = {0};
    td_store_error e = {0};
    td_store *st;

    o.compaction = TD_STORE_COMPACT_MANUAL;
    CHECK_OK(td_store_open(dir, &o, &st, &e), &e);
    for (size_t i = 0; i < set->cap; i++)
        set->s[i].found = set->s[i].owned = 0;
    for (unsigned k = 0; k < NDOCS; k++) {
        char name[16];
        td_store_err code;
        doc_name(name, k);
        {
            owner_ctx oc = {set, k, 0};
            code = td_store_owners(st, name, strlen(name), check_owner, &oc, &e);
            CHECK_OK(code, &e);
            CHECK_MSG(!oc.bad, "%s holds an owner record that is not one of ours", name);
        }
        if (raw) {
            scan_ctx c = {set, k, 0};
            code = td_store_read_log(st, name, strlen(name), 0, check_raw_entry, &c,
                                     &e);
            if (code == TD_STORE_ERR_NOT_FOUND)
                continue;
            CHECK_OK(code, &e);
            CHECK_MSG(!c.bad, "%s holds a batch that is not one of ours", name);
        } else {
            td_crdt_doc *d;
            td_crdt_obj list;
            size_t len;
            code = td_store_load(st, name, strlen(name), NULL, &d, NULL, &e);
            if (code == TD_STORE_ERR_NOT_FOUND)
                continue;
            CHECK_OK(code, &e);
            CHECK(td_crdt_pending_ops(d) == 0);
            CHECK(td_crdt_root(d, TD_CRDT_LIST, "ids", 3, &list) == TD_CRDT_OK);
            len = td_crdt_list_length(d, list);
            *total_ops += td_crdt_op_count(d);
            for (size_t i = 0; i < len; i++) {
                td_crdt_value v;
                CHECK(td_crdt_list_get(d, list, i, &v) == TD_CRDT_OK);
                CHECK(v.type == TD_CRDT_V_INT && v.u.i > 0);
                CHECK_MSG(batch_doc((uint64_t)v.u.i) == k,
                          "id %" PRId64 " found in the wrong document", v.u.i);
                idset_get(set, (uint64_t)v.u.i)->found++;
            }
            td_crdt_doc_free(d);
        }
    }
    td_store_close(st);
    for (size_t i = 0; i < set->cap; i++) {
        slot *s = &set->s[i];
        if (!s->id)
            continue;
        CHECK_MSG(s->found == 0 || s->found == batch_k(s->id),
                  "batch %" PRIu64 " is partly present (%u of %u ops)", s->id, s->found,
                  batch_k(s->id));
        CHECK_MSG(s->printed <= 1, "batch %" PRIu64 " acknowledged twice", s->id);
        CHECK_MSG(s->owned == (s->found ? 1u : 0u),
                  "batch %" PRIu64 ": %u of %u ops present, %u owner records", s->id,
                  s->found, batch_k(s->id), s->owned);
        CHECK_MSG(!s->printed || s->found == batch_k(s->id),
                  "acknowledged batch %" PRIu64 " is missing (found %u of %u ops)",
                  s->id, s->found, batch_k(s->id));
    }
}

static int core_usable(void)
{
    td_crdt_options co = {0};
    td_crdt_doc *d = NULL, *d2 = NULL;
    td_crdt_obj l;
    td_crdt_value v = {0};
    uint8_t *b = NULL, *snap = NULL;
    size_t blen, slen;
    int ok;

    co.agent = 7;
    v.type = TD_CRDT_V_INT;
    ok = td_crdt_doc_new(&co, &d) == TD_CRDT_OK &&
         td_crdt_root(d, TD_CRDT_LIST, "ids", 3, &l) == TD_CRDT_OK &&
         td_crdt_list_insert(d, l, 0, &v, 1) == TD_CRDT_OK &&
         td_crdt_commit(d, &b, &blen) == TD_CRDT_OK &&
         td_crdt_snapshot_encode(d, &snap, &slen) == TD_CRDT_OK &&
         td_crdt_doc_load(&co, snap, slen, &d2, NULL) == TD_CRDT_OK;
    if (d) {
        td_crdt_buf_free(d, b);
        td_crdt_buf_free(d, snap);
        td_crdt_doc_free(d);
    }
    td_crdt_doc_free(d2);
    return ok;
}

static void usage(void)
{
    fprintf(stderr, "usage: test_store_crash always|group|off [rounds] [--raw]\n");
    exit(2);
}

static const char *g_self, *g_mode;
static int g_rounds = 20, g_raw;

static void crash_rounds(void)
{
    char *dir = st_tmpdir();
    uint64_t seed = st_test_seed("test_store_crash");
    idset set = {0};
    st_rng rng;
    size_t printed = 0, acked = 0;
    uint64_t ops = 0;
    int64_t t0 = now_ms();

    st_rng_seed(&rng, seed);
    for (int r = 1; r <= g_rounds; r++) {
        run_round(g_self, dir, g_mode, seed, (uint64_t)r, g_raw, &rng, &set, &printed);
        ops = 0;
        verify(dir, g_raw, &set, &ops);
    }
    for (size_t i = 0; i < set.cap; i++)
        acked += set.s[i].printed && set.s[i].found;
    fprintf(stderr,
            "%s mode, %s batches: %d rounds, %zu acknowledged batches all present "
            "(%zu ids tracked), %" PRIu64 " ops in the documents, %.1f s\n",
            g_mode, g_raw ? "raw" : "CRDT", g_rounds, acked, set.n, ops,
            (double)(now_ms() - t0) / 1000.0);
    CHECK(acked == printed);
    free(set.s);
    st_rmtree(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    td_store_durability mode;

    if (argc == 7 && strcmp(argv[1], "--child") == 0) {
        if (td_store_durability_parse(argv[3], &mode) != 0)
            return 2;
        return child(argv[2], mode, strtoull(argv[4], NULL, 10),
                     strtoull(argv[5], NULL, 10), strcmp(argv[6], "raw") == 0);
    }
    if (argc < 2 || td_store_durability_parse(argv[1], &mode) != 0)
        usage();
    g_self = "/proc/self/exe";
    g_mode = argv[1];
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--raw") == 0)
            g_raw = 1;
        else if ((g_rounds = atoi(argv[i])) < 1)
            usage();
    }
    if (!g_raw && !core_usable()) {
        fprintf(stderr, "test_store_crash: the CRDT core is not usable; "
                        "using opaque batches\n");
        g_raw = 1;
    }
    signal(SIGPIPE, SIG_IGN);
    return st_test_run("crash_rounds", crash_rounds);
}
