/*
 * td_test_util.h -- shared helpers of the CRDT core's tests.
 *
 * The tests are plain C programs whose checks are td_check.h's: a failed
 * CHECK() ends the current test case (tt_test_run), and main returns 1 if
 * any case failed. Here are the checks particular to the core (CHECK_OK,
 * CHECK_ERR, CHECK_STR).
 *
 * Beside that: a seeded PRNG (xoshiro256**, so every run can be replayed
 * from its seed), UTF-8 generation and validation, and small wrappers that
 * return the encodings of a document as owned byte buffers.
 */
#ifndef TT_TEST_UTIL_H
#define TT_TEST_UTIL_H

#include <setjmp.h>
#include <string.h>
#include <stddef.h>
#include <stdint.h>

#include "tandem_crdt.h"
#include "td_check.h"
#include "td_rng.h"

/* ---- checks (td_check.h), under the names these tests use -------------- */

#define tt_test_jmp td_check_jmp
#define tt_test_context td_check_context
#define tt_test_fail td_check_fail
#define tt_test_guarded td_check_guarded
#define tt_test_run td_check_run

/* A call that must return TD_CRDT_OK; doc (may be NULL) names the error. */
#define CHECK_OK(doc, call)                                              \
    do {                                                                 \
        td_crdt_err td_e_ = (call);                                      \
        if (td_e_ != TD_CRDT_OK)                                         \
            tt_test_fail(__FILE__, __LINE__, "%s returned %s (%s)",      \
                         #call, td_crdt_strerror(td_e_),                 \
                         tt_test_docmsg(doc));                           \
    } while (0)

/* A call that must fail with exactly `code`. */
#define CHECK_ERR(doc, code, call)                                       \
    do {                                                                 \
        td_crdt_err td_e_ = (call);                                      \
        if (td_e_ != (code))                                             \
            tt_test_fail(__FILE__, __LINE__,                             \
                         "%s returned %s, expected %s", #call,           \
                         td_crdt_strerror(td_e_),                        \
                         td_crdt_strerror(code));                        \
    } while (0)

#define CHECK_STR(got, want)                                             \
    do {                                                                 \
        const char *td_g_ = (got), *td_w_ = (want);                      \
        if (strcmp(td_g_, td_w_) != 0)                                   \
            tt_test_fail(__FILE__, __LINE__,                             \
                         "%s is \"%s\", expected \"%s\"", #got, td_g_,   \
                         td_w_);                                         \
    } while (0)

const char *tt_test_docmsg(const td_crdt_doc *doc);

/* Under ASan/UBSan, a sanitizer report ends the process without passing
 * through CHECK: this makes it print tt_test_context (the replay command)
 * and call fn (may be NULL) first. A no-op without sanitizers. */
void tt_on_sanitizer_death(void (*fn)(void));


/* ---- PRNG --------------------------------------------------------------- */

/* The PRNG of td_rng.h. */
typedef td_rng tt_rng;
#define tt_rng_seed td_rng_seed
#define tt_rng_next td_rng_next
/* Uniform in [0, n); n > 0. */
uint64_t tt_rng_below(tt_rng *r, uint64_t n);
/* 1 with probability num/den. */
int tt_rng_chance(tt_rng *r, unsigned num, unsigned den);

/* ---- UTF-8 -------------------------------------------------------------- */

/* Encodes code point cp into out (4 bytes room); returns the byte count. */
size_t tt_utf8_put(uint32_t cp, char *out);
/* A random scalar value: mostly ASCII, some 2-, 3- and 4-byte ones. */
uint32_t tt_rand_cp(tt_rng *r);
/* n random code points into out (room for 4*n bytes); returns bytes. */
size_t tt_rand_utf8(tt_rng *r, size_t n, char *out);
/* Number of code points if s is valid UTF-8 (no surrogates, no overlong
 * forms, at most U+10FFFF), else (size_t)-1. */
size_t tt_utf8_count(const char *s, size_t len);
/* Byte offset of code point index cp in valid UTF-8 s. */
size_t tt_utf8_offset(const char *s, size_t len, size_t cp);

/* ---- owned encodings ---------------------------------------------------- */

typedef struct tt_bytes {
    uint8_t *p;
    size_t len;
} tt_bytes;

/* Each returns an owned malloc'd copy (free with tt_bytes_free) and fails
 * the current test if the call errors. */
tt_bytes tt_snap(td_crdt_doc *doc);
tt_bytes tt_vv(td_crdt_doc *doc);
tt_bytes tt_commit(td_crdt_doc *doc);
tt_bytes tt_diff(td_crdt_doc *doc, const tt_bytes *vv);
/* td_crdt_to_json as a malloc'd NUL-terminated string. */
char *tt_json(td_crdt_doc *doc);
/* td_crdt_text_get as a malloc'd NUL-terminated string. */
char *tt_text(td_crdt_doc *doc, td_crdt_obj text);

tt_bytes tt_bytes_copy(const uint8_t *p, size_t len);
void tt_bytes_free(tt_bytes *b);
int tt_bytes_eq(const tt_bytes *a, const tt_bytes *b);

/* Allocation watch: when tt_alloc_watch is set, documents made by
 * tt_new_doc / tt_load_doc / the feed functions allocate through a hook that
 * records the largest single request since tt_alloc_watch_reset(). It shows
 * a decoder allocating in proportion to a size it was told rather than to
 * the input it was given. */
extern int tt_alloc_watch;
void *tt_alloc_hook(void *ud, void *ptr, size_t size);
void tt_alloc_watch_reset(void);
size_t tt_alloc_watch_max(void);

/* Allocation failure injection: with td_crdt_options.alloc = tt_failing_hook
 * and alloc_ud a tt_failing, the fail_at-th allocation (counted in n) fails
 * and sets `failed`; fail_at 0 fails none. For sweeps that fail each
 * allocation of a call in turn. */
typedef struct tt_failing {
    unsigned long n, fail_at;
    int failed;
} tt_failing;
void *tt_failing_hook(void *ud, void *ptr, size_t size);

/* A random scalar value (int, string of up to 8 code points written to buf,
 * which needs 4 * 8 bytes, float, null). */
td_crdt_value tt_rand_scalar(tt_rng *r, char *buf);
/* A text of d picked by k: root "a" or "b", or the nested text under a key
 * of map "m" (0 if that key holds none). */
td_crdt_obj tt_pick_text(td_crdt_doc *d, uint64_t k);

/* A new document with this agent (fails the test on error). */
td_crdt_doc *tt_new_doc(uint64_t agent);
/* Loads a snapshot with this agent (fails the test on error). */
td_crdt_doc *tt_load_doc(uint64_t agent, const tt_bytes *snap);
/* Applies a batch and fails the test on error. */
void tt_apply_ok(td_crdt_doc *doc, const tt_bytes *batch, td_crdt_apply_info *info);
/* Commits a's pending ops and applies them to b. */
void tt_sync_one_way(td_crdt_doc *from, td_crdt_doc *to);
/* Brings both documents to the union of their ops with diffs. */
void tt_sync_both(td_crdt_doc *a, td_crdt_doc *b);

/* ---- a small realistic scenario (td_test_docs.c) ----------------------- */

/* Three agents edit text, a list, a map and nested objects, with deletes and
 * concurrent edits, and exchange batches. The scenario keeps every encoding
 * it saw (seeds for mutation) and a few target documents to apply to. */
typedef enum tt_enc_kind { TT_ENC_BATCH, TT_ENC_SNAP, TT_ENC_VV } tt_enc_kind;

typedef struct tt_enc {
    tt_enc_kind kind;
    char name[40];
    tt_bytes b;
} tt_enc;

enum { TT_SCENARIO_MAX_ENC = 64, TT_SCENARIO_MAX_TARGETS = 4 };

typedef struct tt_scenario {
    tt_enc enc[TT_SCENARIO_MAX_ENC];
    size_t n;
    /* Target i is loaded from target_snap[i], then target_park[i] (if not
     * empty) is applied, which parks: a target with a pending set. */
    tt_bytes target_snap[TT_SCENARIO_MAX_TARGETS];
    tt_bytes target_park[TT_SCENARIO_MAX_TARGETS];
    size_t ntargets;
    /* The converged document, for diffs against mutated vvs. */
    tt_bytes full_snap;
} tt_scenario;

void tt_scenario_build(tt_scenario *sc);
void tt_scenario_free(tt_scenario *sc);
/* A fresh copy of target i. */
td_crdt_doc *tt_scenario_target(const tt_scenario *sc, size_t i);

/* ---- feeding untrusted bytes to the decoders (td_test_feed.c) ----------- */

/* These never jump: they report, so that the robustness test and the fuzz
 * targets can share them. */
typedef enum tt_feed_result {
    TT_FEED_REJECTED, /* the decoder returned an error, and that was clean */
    TT_FEED_ACCEPTED, /* accepted, and the result is a valid document */
    TT_FEED_BROKEN    /* a contract was violated: see why */
} tt_feed_result;

/* Valid: to_json gives a JSON object, snapshot_encode works, loading that
 * snapshot gives the same bytes and JSON, and a fresh replica fed
 * diff(d, empty vv) takes it without parking and shows the same content. */
int tt_doc_valid(td_crdt_doc *d, char *why, size_t whylen);

/* td_crdt_apply on d, whose snapshot is `before`. On error d must be exactly
 * as before (bytes, op count, pending set); on success it must be valid,
 * and unchanged if the batch neither added nor parked anything. *changed
 * says whether d now differs from `before` (then the caller rebuilds it). */
tt_feed_result tt_feed_apply(td_crdt_doc *d, const tt_bytes *before, const uint8_t *p,
                             size_t len, int *changed, char *why, size_t whylen);
/* td_crdt_doc_load of p; on success the document must be valid. */
tt_feed_result tt_feed_load(const uint8_t *p, size_t len, char *why, size_t whylen);
/* td_crdt_doc_load of p with trusted_snapshot (a lazy load): reading must
 * work, and the first history-using call (snapshot_encode) must decode the
 * rest or refuse with DECODE/LIMIT, the document staying readable as it
 * was; where the untrusted load accepts p, both must give the same
 * document. Never crashes on any input. */
tt_feed_result tt_feed_load_trusted(const uint8_t *p, size_t len, char *why, size_t whylen);
/* td_crdt_diff(full, vv = p); on error full must be unchanged (checked when
 * check_unchanged); on success a fresh replica must take the output, and a
 * normal diff must complete it to full_snap. */
tt_feed_result tt_feed_diff(td_crdt_doc *full, const tt_bytes *full_snap, const uint8_t *p,
                            size_t len, int check_unchanged, char *why, size_t whylen);

/* ---- a shadow kept from change events (td_test_shadow.c) ---------------- */

/* Resets sh (or makes one, sh NULL), loads it from d's visible objects under
 * roots and installs itself as d's observer. It must not outlive d's use:
 * free it after d, or remove the observer first. */
typedef struct tt_shadow tt_shadow;
tt_shadow *tt_shadow_attach(tt_shadow *sh, td_crdt_doc *d, const td_crdt_obj *roots,
                            size_t nroots);
/* 1 if the events so far, replayed on the shadow, give d's visible state;
 * else 0 and why. */
int tt_shadow_check(tt_shadow *sh, char *why, size_t whylen);
long tt_shadow_events(const tt_shadow *sh);
void tt_shadow_free(tt_shadow *sh);

#endif /* TT_TEST_UTIL_H */
