/*
 * fuzz_yjs.c -- libFuzzer target for the Yjs document model
 * (crdt/yjs/tandem_yjs.h): arbitrary bytes as a v1 update.
 *
 * The input is applied to an empty document and to one holding content
 * (the first seeds below). Contracts: an error leaves the document as it
 * was (state vector, whole encoded update and to_json unchanged) with a
 * message; td_yjs_update_check does not reject what apply accepts; on
 * success the document's own encoding (td_yjs_encode_state_as_update)
 * applies to a fresh document, which then has the same state vector, or,
 * when structs wait in the pending set, at least that state vector (Yjs
 * 13.6 does the same: a pending item cut at the doc's clock is written with
 * its predecessor as origin, so its missing parent is no longer a
 * dependency of the encoding and a fresh document integrates it); and
 * every document frees all it allocated (a counting hook).
 *
 * The seeds are Yjs updates written by the npm yjs package (13.6): text
 * edits with formats, embeds, astral characters and deletes, every lib0 Any
 * kind, nested types, a subdocument, XML, a client id past 2^32, a whole
 * document, and a merged update with gaps (Skip structs). fuzz_corpus_gen
 * writes them to the seed corpus (yjs/), plus the model's own encoding of
 * them all.
 */
#include "fuzz_common.h"
#include "tandem_yjs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TD_FUZZ_ENTRY
#define TD_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

int TD_FUZZ_ENTRY(const uint8_t *data, size_t size);

static const struct {
    const char *name;
    size_t len;
    const char *bytes;
} seeds[] = {
    {"text-insert", 30,
     "\x01\x01\x01\x00\x04\x01\x04\x74\x65\x78\x74\x11\x68\xc3\xa9\x6c\x6c\x6f\x20\xf0\x9f\x98\x80\x20"
     "\x77\x6f\x72\x6c\x64\x00"},
    {"text-format", 33,
     "\x01\x02\x01\x0e\x46\x01\x00\x04\x62\x6f\x6c\x64\x04\x74\x72\x75\x65\xc6\x01\x04\x01\x05\x04\x62"
     "\x6f\x6c\x64\x04\x6e\x75\x6c\x6c\x00"},
    {"text-embed", 58,
     "\x01\x03\x01\x10\xc6\x01\x02\x01\x03\x04\x62\x6f\x6c\x64\x04\x6e\x75\x6c\x6c\xc5\x01\x10\x01\x03"
     "\x11\x7b\x22\x69\x6d\x61\x67\x65\x22\x3a\x22\x78\x2e\x70\x6e\x67\x22\x7d\xc6\x01\x11\x01\x03\x04"
     "\x62\x6f\x6c\x64\x04\x74\x72\x75\x65\x00"},
    {"text-delete", 8,
     "\x00\x01\x01\x02\x02\x03\x10\x03"},
    {"array-any", 63,
     "\x01\x03\x01\x13\x08\x01\x05\x61\x72\x72\x61\x79\x06\x7d\x01\x7c\xc0\x20\x00\x00\x77\x01\x73\x78"
     "\x7e\x76\x01\x01\x6b\x75\x02\x7d\x01\x76\x01\x01\x7a\x7a\x00\x00\x00\x00\x00\x00\x00\x02\x83\x01"
     "\x18\x03\x01\x02\xff\x88\x01\x19\x01\x7c\x53\x80\x00\x00\x00"},
    {"array-nested", 23,
     "\x01\x02\x01\x1c\x27\x00\x01\x1b\x01\x6e\x02\x04\x00\x01\x1c\x06\x6e\x65\x73\x74\x65\x64\x00"},
    {"map-set", 21,
     "\x01\x01\x01\x24\x29\x01\x03\x6d\x61\x70\x03\x73\x75\x62\x03\x67\x2d\x31\x76\x00\x00"},
    {"map-delete", 6,
     "\x00\x01\x01\x01\x23\x01"},
    {"xml", 66,
     "\x01\x07\x01\x25\x07\x01\x03\x78\x6d\x6c\x03\x01\x70\x07\x00\x01\x25\x06\x06\x00\x01\x26\x01\x62"
     "\x04\x74\x72\x75\x65\x84\x01\x27\x02\x68\x69\x86\x01\x29\x01\x62\x04\x6e\x75\x6c\x6c\x28\x00\x01"
     "\x25\x05\x63\x6c\x61\x73\x73\x01\x77\x01\x63\x87\x01\x25\x05\x01\x68\x00"},
    {"other-client", 24,
     "\x01\x01\x85\x80\x80\x80\x10\x00\xc4\x01\x00\x01\x01\x01\x58\x01\x01\x03\x02\x03\x10\x03\x23\x01"
     ""},
    {"full", 255,
     "\x01\x17\x01\x00\x04\x01\x04\x74\x65\x78\x74\x03\x68\xc3\xa9\x81\x01\x01\x01\x81\x01\x02\x02\x84"
     "\x01\x04\x0b\x20\xf0\x9f\x98\x80\x20\x77\x6f\x72\x6c\x64\x46\x01\x00\x04\x62\x6f\x6c\x64\x04\x74"
     "\x72\x75\x65\xc6\x01\x04\x01\x05\x04\x62\x6f\x6c\x64\x04\x6e\x75\x6c\x6c\xc1\x01\x02\x01\x03\x03"
     "\x08\x01\x05\x61\x72\x72\x61\x79\x01\x7d\x01\x88\x01\x13\x05\x7c\xc0\x20\x00\x00\x77\x01\x73\x78"
     "\x7e\x76\x01\x01\x6b\x75\x02\x7d\x01\x76\x01\x01\x7a\x7a\x00\x00\x00\x00\x00\x00\x00\x02\x83\x01"
     "\x18\x03\x01\x02\xff\x88\x01\x19\x01\x7c\x53\x80\x00\x00\xc7\x01\x13\x01\x14\x01\x27\x00\x01\x1b"
     "\x01\x6e\x02\x04\x00\x01\x1c\x06\x6e\x65\x73\x74\x65\x64\x21\x01\x03\x6d\x61\x70\x03\x6b\x65\x79"
     "\x01\x29\x01\x03\x6d\x61\x70\x03\x73\x75\x62\x03\x67\x2d\x31\x76\x00\x07\x01\x03\x78\x6d\x6c\x03"
     "\x01\x70\x07\x00\x01\x25\x06\x06\x00\x01\x26\x01\x62\x04\x74\x72\x75\x65\x84\x01\x27\x02\x68\x69"
     "\x86\x01\x29\x01\x62\x04\x6e\x75\x6c\x6c\x28\x00\x01\x25\x05\x63\x6c\x61\x73\x73\x01\x77\x01\x63"
     "\x87\x01\x25\x05\x01\x68\x01\x01\x03\x02\x03\x10\x03\x23\x01"},
    {"merged-gap", 37,
     "\x01\x05\x09\x00\x04\x01\x01\x74\x03\x61\x62\x30\x0a\x03\x44\x09\x03\x03\x61\x62\x32\x0a\x03\x44"
     "\x09\x09\x03\x61\x62\x34\x01\x09\x02\x0c\x03\x10\x02"},
    {"gc-full", 55,
     "\x01\x07\x09\x00\x04\x01\x01\x74\x03\x61\x62\x30\x44\x09\x00\x03\x61\x62\x31\x44\x09\x03\x03\x61"
     "\x62\x32\x44\x09\x06\x03\x61\x62\x33\x41\x09\x09\x03\x44\x09\x0c\x01\x61\xc1\x09\x0f\x09\x0c\x02"
     "\x01\x09\x02\x0c\x03\x10\x02"},
};

const uint8_t *tt_fuzz_yjs_seed(size_t i, size_t *len, const char **name)
{
    if (i >= sizeof seeds / sizeof seeds[0])
        return NULL;
    *len = seeds[i].len;
    *name = seeds[i].name;
    return (const uint8_t *)seeds[i].bytes;
}

/* ---- a counting allocation hook ---- */

typedef struct yf_count {
    size_t live;
} yf_count;

#define YF_HDR 16

static void *yf_alloc(void *ud, void *ptr, size_t size)
{
    yf_count *c = ud;
    size_t old = 0;
    unsigned char *base = NULL;
    if (ptr) {
        base = (unsigned char *)ptr - YF_HDR;
        memcpy(&old, base, sizeof old);
    }
    if (size == 0) {
        c->live -= old;
        free(base);
        return NULL;
    }
    if (size > ((size_t)1 << 32)) /* no test input deserves 4 GiB */
        return NULL;
    unsigned char *nb = realloc(base, size + YF_HDR);
    if (!nb)
        return NULL;
    memcpy(nb, &size, sizeof size);
    c->live = c->live - old + size;
    return nb + YF_HDR;
}

typedef struct yf_state {
    unsigned char *sv, *enc;
    char *json;
    size_t svn, encn, jsonn;
} yf_state;

static void yf_state_free(td_yjs_doc *d, yf_state *s)
{
    if (s->sv)
        td_yjs_buf_free(d, s->sv);
    if (s->enc)
        td_yjs_buf_free(d, s->enc);
    if (s->json)
        td_yjs_buf_free(d, s->json);
    memset(s, 0, sizeof *s);
}

static int yf_state_get(td_yjs_doc *d, yf_state *s)
{
    memset(s, 0, sizeof *s);
    return td_yjs_encode_state_vector(d, &s->sv, &s->svn) == TD_YJS_OK &&
                   td_yjs_encode_state_as_update(d, NULL, 0, &s->enc, &s->encn) == TD_YJS_OK &&
                   td_yjs_to_json(d, 0, &s->json, &s->jsonn) == TD_YJS_OK
               ? 0
               : -1;
}

/* A lib0 varuint; returns 0 past the end or on more than 64 bits. */
static int yf_varuint(const unsigned char **p, const unsigned char *end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; *p < end && shift < 64; shift += 7) {
        unsigned char b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

/* The clock of client in an encoded state vector, 0 when absent or unreadable. */
static uint64_t yf_sv_clock(const unsigned char *sv, size_t n, uint64_t client)
{
    const unsigned char *p = sv, *end = sv + n;
    uint64_t count, c, k;
    if (!yf_varuint(&p, end, &count))
        return 0;
    while (count-- && yf_varuint(&p, end, &c) && yf_varuint(&p, end, &k))
        if (c == client)
            return k;
    return 0;
}

/* Whether state vector a holds at least every clock of b. */
static int yf_sv_covers(const unsigned char *a, size_t an, const unsigned char *b, size_t bn)
{
    const unsigned char *p = b, *end = b + bn;
    uint64_t count, c, k;
    if (!yf_varuint(&p, end, &count))
        return 0;
    while (count--) {
        if (!yf_varuint(&p, end, &c) || !yf_varuint(&p, end, &k))
            return 0;
        if (yf_sv_clock(a, an, c) < k)
            return 0;
    }
    return 1;
}

/* One document: prefix (may be NULL) then data. Returns a failure, or NULL. */
static const char *yf_run(const uint8_t *prefix, size_t plen, const uint8_t *data, size_t size,
                          char *why, size_t whylen)
{
    yf_count cnt = {0}, cnt2 = {0};
    td_yjs_options o;
    memset(&o, 0, sizeof o);
    o.alloc = yf_alloc;
    o.alloc_ud = &cnt;
    td_yjs_doc *d = NULL, *f = NULL;
    yf_state before = {0}, after = {0};
    const char *bad = NULL;
    if (td_yjs_doc_new(&o, &d) != TD_YJS_OK)
        return "td_yjs_doc_new failed";
    if (prefix && td_yjs_apply_update(d, prefix, plen) != TD_YJS_OK) {
        bad = "a seed does not apply";
        goto out;
    }
    if (yf_state_get(d, &before) != 0) {
        bad = "cannot read the doc before";
        goto out;
    }
    const char *cmsg = NULL;
    td_yjs_err ce = td_yjs_update_check(data, size, &cmsg);
    td_yjs_err e = td_yjs_apply_update(d, data, size);
    if (e != TD_YJS_OK) {
        if (e != TD_YJS_ERR_DECODE && e != TD_YJS_ERR_INVALID && e != TD_YJS_ERR_LIMIT) {
            snprintf(why, whylen, "unexpected error %s: %s", td_yjs_strerror(e),
                     td_yjs_doc_error(d));
            bad = why;
            goto out;
        }
        if (!td_yjs_doc_error(d)[0]) {
            bad = "an error without td_yjs_doc_error";
            goto out;
        }
        if (yf_state_get(d, &after) != 0) {
            bad = "cannot read the doc after an error";
            goto out;
        }
        if (after.svn != before.svn || memcmp(after.sv, before.sv, after.svn) ||
            after.encn != before.encn || memcmp(after.enc, before.enc, after.encn) ||
            after.jsonn != before.jsonn || memcmp(after.json, before.json, after.jsonn)) {
            snprintf(why, whylen, "the error %s (%s) changed the document", td_yjs_strerror(e),
                     td_yjs_doc_error(d));
            bad = why;
        }
        goto out;
    }
    if (ce != TD_YJS_OK) {
        snprintf(why, whylen, "td_yjs_update_check rejects (%s) what apply accepts",
                 cmsg ? cmsg : "");
        bad = why;
        goto out;
    }
    if (yf_state_get(d, &after) != 0) {
        bad = "cannot read the doc after success";
        goto out;
    }
    o.alloc_ud = &cnt2;
    if (td_yjs_doc_new(&o, &f) != TD_YJS_OK) {
        bad = "td_yjs_doc_new failed";
        goto out;
    }
    e = td_yjs_apply_update(f, after.enc, after.encn);
    if (e != TD_YJS_OK) {
        snprintf(why, whylen, "the doc's own encoding does not apply: %s: %s", td_yjs_strerror(e),
                 td_yjs_doc_error(f));
        bad = why;
        goto out;
    }
    unsigned char *sv2;
    size_t sv2n;
    if (td_yjs_encode_state_vector(f, &sv2, &sv2n) != TD_YJS_OK) {
        bad = "cannot encode the state vector of the re-applied doc";
        goto out;
    }
    td_yjs_stats st;
    td_yjs_doc_stats(d, &st);
    if (st.pending_structs == 0) {
        if (sv2n != after.svn || memcmp(sv2, after.sv, sv2n))
            bad = "the re-applied encoding has another state vector";
    } else if (!yf_sv_covers(sv2, sv2n, after.sv, after.svn)) {
        bad = "the re-applied encoding lacks part of the state vector";
    }
    td_yjs_buf_free(f, sv2);
out:
    yf_state_free(d, &before);
    yf_state_free(d, &after);
    td_yjs_doc_free(d);
    if (f)
        td_yjs_doc_free(f);
    if (!bad && (cnt.live || cnt2.live)) {
        snprintf(why, whylen, "td_yjs_doc_free left %zu bytes allocated", cnt.live + cnt2.live);
        bad = why;
    }
    return bad;
}

int TD_FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    char why[512];
    const char *bad = yf_run(NULL, 0, data, size, why, sizeof why);
    if (bad) {
        tt_fuzz_fail("fuzz_yjs (empty doc)", bad, data, size);
        return 0;
    }
    /* The content doc: the whole document of the first seeds. */
    size_t plen = 0;
    const char *pname;
    const uint8_t *prefix = NULL;
    for (size_t i = 0; tt_fuzz_yjs_seed(i, &plen, &pname); i++) {
        if (!strcmp(pname, "full")) {
            prefix = tt_fuzz_yjs_seed(i, &plen, &pname);
            break;
        }
    }
    bad = yf_run(prefix, plen, data, size, why, sizeof why);
    if (bad)
        tt_fuzz_fail("fuzz_yjs (content doc)", bad, data, size);
    return 0;
}
