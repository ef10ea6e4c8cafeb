/*
 * test_crdt_robust.c -- the decoders against corrupted input.
 *
 * The seeds are real encodings from a small three-agent session (see
 * td_test_docs.c): commit batches, diffs, snapshots and version vectors.
 * First every seed is truncated at every length, has every byte replaced by
 * 0x00, 0x7f, 0x80 and 0xff in turn, and every single bit flipped; then
 * random variants follow (bit flips, interesting bytes, +-1 on a byte,
 * inserted and deleted bytes, copied chunks, splices of two encodings, huge
 * varints), stacked 1-3 deep, until the requested number of variants is
 * reached (500,000 by default).
 * Now and then a variant goes to a decoder of another kind.
 *
 * Each variant goes to its decoder and the outcome is checked:
 * - td_crdt_apply on a target document (empty, partial, partial with a
 *   pending batch, full): an error must leave the snapshot bytes, the op
 *   count and the pending set exactly as they were; a success must leave a
 *   valid document.
 * - td_crdt_doc_load: an error gives no document and a message; a success
 *   gives a valid document.
 * - td_crdt_diff with the variant as the peer's vv: an error leaves the
 *   document as it was; a success yields a batch that a fresh replica
 *   accepts, after which a normal diff completes it to the same state.
 * Every decoder call also runs under an allocation hook: no single request
 * may exceed 64 bytes per input byte plus 1 MiB (the "Bad input" rule:
 * never allocate in proportion to a claimed size before checking it).
 * "Valid document" means: to_json gives a JSON object, snapshot_encode
 * works, loading that snapshot gives the same JSON and snapshot bytes, and a
 * fresh replica fed diff(doc, empty vv) reaches the same snapshot too.
 *
 *   test_crdt_robust [--seed S] [--variants N]
 */
#include "td_test_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct target_state {
    td_crdt_doc *doc; /* reused while variants fail */
    tt_bytes snap;    /* its snapshot bytes when fresh */
} target_state;

typedef struct robust {
    tt_scenario sc;
    tt_rng rng;
    target_state tgt[TT_SCENARIO_MAX_TARGETS];
    td_crdt_doc *full;      /* for vv variants */
    tt_bytes full_snap;
    /* what is being fed, for the failure message */
    const char *src_name;
    char how[160];
    const uint8_t *cur;
    size_t cur_len;
    /* statistics */
    long variants, ok[3], err[3];
} robust;

static robust R;

static void show_current(void)
{
    fprintf(stderr, "variant of %s (%s), %zu bytes:", R.src_name ? R.src_name : "?", R.how,
            R.cur_len);
    for (size_t i = 0; i < R.cur_len && i < 512; i++)
        fprintf(stderr, "%s%02x", i % 32 ? " " : "\n  ", R.cur[i]);
    fprintf(stderr, "%s\n", R.cur_len > 512 ? " ..." : "");
}

/* Failing checks print the variant first, then jump out as usual. */
#define RCHECK(e)                                                        \
    do {                                                                 \
        if (!(e)) {                                                      \
            show_current();                                              \
            tt_test_fail(__FILE__, __LINE__, "CHECK(%s) failed", #e);    \
        }                                                                \
    } while (0)

#define RCHECK_MSG(e, ...)                                               \
    do {                                                                 \
        if (!(e)) {                                                      \
            show_current();                                              \
            tt_test_fail(__FILE__, __LINE__, __VA_ARGS__);               \
        }                                                                \
    } while (0)

/* ---- the three decoders ----------------------------------------------------- */

static void target_reset(size_t i)
{
    target_state *t = &R.tgt[i];
    if (t->doc)
        td_crdt_doc_free(t->doc);
    t->doc = tt_scenario_target(&R.sc, i);
    if (!t->snap.p)
        t->snap = tt_snap(t->doc);
}

/* A broken contract is recorded by kind (its message without numbers) and
 * the run goes on: one bug should not hide the others. The first variant
 * of each kind is printed; the test fails at the end if any were found. */
typedef struct failure_kind {
    char key[96];
    long count;
} failure_kind;

static failure_kind failures[64];
static size_t nfailures;

static void record_failure(const char *why)
{
    char key[96];
    size_t k = 0;
    for (const char *p = why; *p && k + 1 < sizeof key; p++)
        if (!(*p >= '0' && *p <= '9'))
            key[k++] = *p;
    key[k] = 0;
    for (size_t i = 0; i < nfailures; i++) {
        if (!strcmp(failures[i].key, key)) {
            failures[i].count++;
            return;
        }
    }
    show_current();
    fprintf(stderr, "  -> %s\n  (%s; replay: %s)\n", why, R.how, tt_test_context);
    if (nfailures < sizeof failures / sizeof failures[0]) {
        snprintf(failures[nfailures].key, sizeof failures[nfailures].key, "%s", key);
        failures[nfailures++].count = 1;
    }
}

/* Returns 1 if the result broke a contract. */
static int judge(tt_enc_kind kind, tt_feed_result r, const char *why)
{
    if (r == TT_FEED_BROKEN) {
        record_failure(why);
        return 1;
    }
    if (r == TT_FEED_ACCEPTED)
        R.ok[kind]++;
    else
        R.err[kind]++;
    return 0;
}

static void feed_batch(const uint8_t *p, size_t len, size_t ti)
{
    char why[1024];
    int changed = 0;
    target_state *t = &R.tgt[ti];
    int broken = judge(TT_ENC_BATCH,
                       tt_feed_apply(t->doc, &t->snap, p, len, &changed, why, sizeof why), why);
    if (changed || broken) /* start the next variant from the pristine target */
        target_reset(ti);
}

static void feed_snap(const uint8_t *p, size_t len)
{
    char why[1024];
    judge(TT_ENC_SNAP, tt_feed_load(p, len, why, sizeof why), why);
}

static void feed_vv(const uint8_t *p, size_t len)
{
    char why[1024];
    /* diff must never change the document; checking bytes every time
     * would dominate the run, so every 16th variant. */
    judge(TT_ENC_VV, tt_feed_diff(R.full, &R.full_snap, p, len, R.variants % 16 == 0, why,
                                  sizeof why),
          why);
}

static void feed(tt_enc_kind kind, const uint8_t *p, size_t len)
{
    R.cur = p;
    R.cur_len = len;
    R.variants++;
    switch (kind) {
    case TT_ENC_BATCH:
        feed_batch(p, len, (size_t)tt_rng_below(&R.rng, R.sc.ntargets));
        break;
    case TT_ENC_SNAP:
        feed_snap(p, len);
        break;
    case TT_ENC_VV:
        feed_vv(p, len);
        break;
    }
}

/* ---- mutations -------------------------------------------------------------- */

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;

static void buf_reserve(buf *b, size_t n)
{
    if (n <= b->cap)
        return;
    b->cap = n * 2 + 64;
    b->p = realloc(b->p, b->cap);
    if (!b->p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
}

static void buf_set(buf *b, const uint8_t *p, size_t len)
{
    buf_reserve(b, len);
    if (len)
        memcpy(b->p, p, len);
    b->len = len;
}

static void buf_insert(buf *b, size_t at, const uint8_t *p, size_t n)
{
    buf_reserve(b, b->len + n);
    memmove(b->p + at + n, b->p + at, b->len - at);
    memcpy(b->p + at, p, n);
    b->len += n;
}

static void buf_erase(buf *b, size_t at, size_t n)
{
    memmove(b->p + at, b->p + at + n, b->len - at - n);
    b->len -= n;
}

static const uint8_t interesting[] = {0x00, 0x01, 0x02, 0x7e, 0x7f, 0x80,
                                      0x81, 0xfe, 0xff, 0x40, 0x3f, 0x10};

/* Varints a hostile peer would send: 2^32-1, 2^32, 2^63-1, 2^64-1, an
 * overlong zero, an 11-byte overflow, a run of continuation bytes. */
static const struct {
    uint8_t b[12];
    size_t n;
} huge[] = {
    {{0xff, 0xff, 0xff, 0xff, 0x0f}, 5},
    {{0x80, 0x80, 0x80, 0x80, 0x10}, 5},
    {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, 9},
    {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 10},
    {{0x80, 0x80, 0x00}, 3},
    {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, 11},
    {{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}, 12},
    {{0xff, 0xff, 0x03}, 3},
};

static const tt_enc *rand_enc(void)
{
    return &R.sc.enc[tt_rng_below(&R.rng, R.sc.n)];
}

static void mutate_once(buf *b, char *how, size_t hl)
{
    tt_rng *r = &R.rng;
    size_t len = b->len;
    size_t at = len ? (size_t)tt_rng_below(r, len) : 0;
    size_t used = strlen(how);
    char *w = how + used;
    size_t room = hl - used;
    switch (tt_rng_below(r, 11)) {
    case 0: /* bit flips */
        if (!len)
            break;
        for (uint64_t k = 1 + tt_rng_below(r, 3); k > 0; k--) {
            size_t i = (size_t)tt_rng_below(r, len);
            b->p[i] ^= (uint8_t)(1u << tt_rng_below(r, 8));
        }
        snprintf(w, room, " flip");
        break;
    case 1: /* an interesting byte */
        if (!len)
            break;
        b->p[at] = interesting[tt_rng_below(r, sizeof interesting)];
        snprintf(w, room, " set@%zu=%02x", at, b->p[at]);
        break;
    case 2: /* +-1 on a byte: off-by-one counts and lengths */
        if (!len)
            break;
        b->p[at] = (uint8_t)(b->p[at] + (tt_rng_below(r, 2) ? 1 : 0xff));
        snprintf(w, room, " inc@%zu=%02x", at, b->p[at]);
        break;
    case 3: /* truncation */
        b->len = len ? (size_t)tt_rng_below(r, len) : 0;
        snprintf(w, room, " trunc=%zu", b->len);
        break;
    case 4: { /* inserted bytes */
        uint8_t ins[8];
        size_t n = 1 + (size_t)tt_rng_below(r, 8);
        for (size_t i = 0; i < n; i++)
            ins[i] = tt_rng_below(r, 2) ? (uint8_t)tt_rng_next(r)
                                        : interesting[tt_rng_below(r, sizeof interesting)];
        at = (size_t)tt_rng_below(r, len + 1);
        buf_insert(b, at, ins, n);
        snprintf(w, room, " ins@%zu+%zu", at, n);
        break;
    }
    case 5: { /* deleted bytes */
        if (!len)
            break;
        size_t n = 1 + (size_t)tt_rng_below(r, len - at < 8 ? len - at : 8);
        buf_erase(b, at, n);
        snprintf(w, room, " del@%zu-%zu", at, n);
        break;
    }
    case 6: { /* splice: our prefix, another encoding's suffix */
        const tt_enc *o = rand_enc();
        size_t cut = (size_t)tt_rng_below(r, len + 1);
        size_t from = (size_t)tt_rng_below(r, o->b.len + 1);
        b->len = cut;
        buf_reserve(b, cut + o->b.len - from);
        memcpy(b->p + cut, o->b.p + from, o->b.len - from);
        b->len = cut + o->b.len - from;
        snprintf(w, room, " splice@%zu+%s@%zu", cut, o->name, from);
        break;
    }
    case 7: { /* a huge varint, inserted or overwriting */
        size_t h = (size_t)tt_rng_below(r, sizeof huge / sizeof huge[0]);
        at = (size_t)tt_rng_below(r, len + 1);
        if (tt_rng_below(r, 2) && at + huge[h].n <= len) {
            memcpy(b->p + at, huge[h].b, huge[h].n);
            snprintf(w, room, " varint%zu=@%zu", h, at);
        } else {
            buf_insert(b, at, huge[h].b, huge[h].n);
            snprintf(w, room, " varint%zu+@%zu", h, at);
        }
        break;
    }
    case 8: { /* a chunk copied elsewhere */
        if (!len)
            break;
        size_t n = 1 + (size_t)tt_rng_below(r, len - at < 16 ? len - at : 16);
        uint8_t tmp[16];
        memcpy(tmp, b->p + at, n);
        size_t to = (size_t)tt_rng_below(r, len + 1);
        buf_insert(b, to, tmp, n);
        snprintf(w, room, " dup@%zu-%zu>%zu", at, n, to);
        break;
    }
    case 9: { /* random bytes overwrite */
        if (!len)
            break;
        size_t n = 1 + (size_t)tt_rng_below(r, len - at < 4 ? len - at : 4);
        for (size_t i = 0; i < n; i++)
            b->p[at + i] = (uint8_t)tt_rng_next(r);
        snprintf(w, room, " rnd@%zu-%zu", at, n);
        break;
    }
    default: { /* two bytes swapped */
        if (len < 2)
            break;
        size_t j = (size_t)tt_rng_below(r, len);
        uint8_t x = b->p[at];
        b->p[at] = b->p[j];
        b->p[j] = x;
        snprintf(w, room, " swap@%zu,%zu", at, j);
        break;
    }
    }
}

/* ---- the run ---------------------------------------------------------------- */

static void systematic(buf *b)
{
    static const uint8_t vals[] = {0x00, 0x7f, 0x80, 0xff};
    for (size_t e = 0; e < R.sc.n; e++) {
        const tt_enc *src = &R.sc.enc[e];
        R.src_name = src->name;
        for (size_t cut = 0; cut < src->b.len; cut++) {
            snprintf(R.how, sizeof R.how, "truncated to %zu", cut);
            buf_set(b, src->b.p, cut);
            feed(src->kind, b->p, b->len);
        }
        for (size_t i = 0; i < src->b.len; i++) {
            for (size_t v = 0; v < sizeof vals; v++) {
                if (src->b.p[i] == vals[v])
                    continue;
                buf_set(b, src->b.p, src->b.len);
                b->p[i] = vals[v];
                snprintf(R.how, sizeof R.how, "byte %zu set to %02x", i, vals[v]);
                feed(src->kind, b->p, b->len);
            }
        }
        for (size_t i = 0; i < src->b.len; i++) {
            for (int bit = 0; bit < 8; bit++) {
                buf_set(b, src->b.p, src->b.len);
                b->p[i] ^= (uint8_t)(1u << bit);
                snprintf(R.how, sizeof R.how, "bit %d of byte %zu flipped", bit, i);
                feed(src->kind, b->p, b->len);
            }
        }
        /* The unmodified seed goes through too (it must be accepted). */
        snprintf(R.how, sizeof R.how, "unmodified");
        buf_set(b, src->b.p, src->b.len);
        feed(src->kind, b->p, b->len);
    }
}

static void run(uint64_t seed, long variants)
{
    buf b = {NULL, 0, 0};
    tt_scenario_build(&R.sc);
    tt_rng_seed(&R.rng, seed);
    tt_alloc_watch = 1; /* decoders must size allocations by their input */
    for (size_t i = 0; i < R.sc.ntargets; i++)
        target_reset(i);
    R.full = tt_load_doc(0x3333, &R.sc.full_snap);
    R.full_snap = tt_snap(R.full);
    RCHECK(tt_bytes_eq(&R.full_snap, &R.sc.full_snap));

    systematic(&b);
    long sys = R.variants;
    while (R.variants < variants) {
        const tt_enc *src = rand_enc();
        R.src_name = src->name;
        buf_set(&b, src->b.p, src->b.len);
        R.how[0] = 0;
        for (uint64_t k = 1 + tt_rng_below(&R.rng, 3); k > 0; k--)
            mutate_once(&b, R.how, sizeof R.how);
        tt_enc_kind kind = src->kind;
        if (tt_rng_chance(&R.rng, 1, 20)) /* type confusion */
            kind = (tt_enc_kind)tt_rng_below(&R.rng, 3);
        feed(kind, b.p, b.len);
    }
    printf("%ld variants (%ld systematic): batch %ld ok / %ld err, snapshot %ld / %ld,"
           " vv %ld / %ld\n",
           R.variants, sys, R.ok[TT_ENC_BATCH], R.err[TT_ENC_BATCH], R.ok[TT_ENC_SNAP],
           R.err[TT_ENC_SNAP], R.ok[TT_ENC_VV], R.err[TT_ENC_VV]);
    for (size_t i = 0; i < nfailures; i++)
        fprintf(stderr, "contract broken %ld times: %s\n", failures[i].count, failures[i].key);
    CHECK_MSG(nfailures == 0, "%zu kinds of broken contract (see above)", nfailures);
    /* The test must have exercised both outcomes of every decoder. */
    for (int k = 0; k < 3; k++)
        CHECK_MSG(R.ok[k] > 0 && R.err[k] > 0, "decoder %d: %ld ok, %ld errors", k, R.ok[k],
                  R.err[k]);
    free(b.p);
}

static uint64_t g_seed;
static long g_variants;

static void run_main(void)
{
    run(g_seed, g_variants);
}

static void cleanup(void)
{
    for (size_t i = 0; i < TT_SCENARIO_MAX_TARGETS; i++) {
        if (R.tgt[i].doc)
            td_crdt_doc_free(R.tgt[i].doc);
        tt_bytes_free(&R.tgt[i].snap);
    }
    if (R.full)
        td_crdt_doc_free(R.full);
    tt_bytes_free(&R.full_snap);
    tt_scenario_free(&R.sc);
}

int main(int argc, char **argv)
{
    uint64_t seed = 0;
    int have_seed = 0;
    long variants = 500000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
            have_seed = 1;
        } else if (!strcmp(argv[i], "--variants") && i + 1 < argc) {
            variants = strtol(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: %s [--seed S] [--variants N]\n", argv[0]);
            return 2;
        }
    }
    if (!have_seed)
        seed = ((uint64_t)time(NULL) ^ ((uint64_t)clock() << 20)) % 1000000000u;
    static char replay[256];
    snprintf(replay, sizeof replay, "seed %" PRIu64 "; replay with: %s --seed %" PRIu64
             " --variants %ld", seed, argv[0], seed, variants);
    printf("%s\n", replay);
    tt_test_context = replay;
    tt_on_sanitizer_death(show_current);
    clock_t t0 = clock();
    g_seed = seed;
    g_variants = variants;
    int failed = tt_test_run("robust", run_main);
    cleanup();
    printf("%.1f s\n", (double)(clock() - t0) / CLOCKS_PER_SEC);
    if (failed)
        printf("FAIL %s\n", replay);
    return failed;
}
