/*
 * td_test_feed.c -- feeding untrusted bytes to the core's three decoders
 * (td_crdt_apply, td_crdt_doc_load, td_crdt_diff's vv) and judging the
 * outcome against the header's contract: an error leaves the document
 * exactly as it was, a success leaves a valid document.
 *
 * Shared by the robustness test and the libFuzzer targets, so these
 * functions report through a message instead of jumping or aborting.
 */
#include "td_test_util.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int say(char *why, size_t n, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The most a decoder may ask for at once for `len` bytes of input: the
 * target documents are a few KB, so anything bigger was sized from a claim
 * in the input rather than from the input. */
static size_t alloc_bound(size_t len)
{
    return 64 * len + ((size_t)1 << 20);
}

static int say(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return 0;
}

/* Snapshot bytes of d as an owned buffer; 0 on error (with why). */
static int snap_of(td_crdt_doc *d, tt_bytes *out, char *why, size_t n)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    td_crdt_err e = td_crdt_snapshot_encode(d, &buf, &len);
    if (e != TD_CRDT_OK)
        return say(why, n, "snapshot_encode: %s (%s)", td_crdt_strerror(e),
                   td_crdt_doc_error(d));
    if (!buf || !len)
        return say(why, n, "snapshot_encode returned no bytes");
    *out = tt_bytes_copy(buf, len);
    td_crdt_buf_free(d, buf);
    return 1;
}

static int json_of(td_crdt_doc *d, char **out, char *why, size_t n)
{
    char *js = NULL;
    size_t len = 0;
    td_crdt_err e = td_crdt_to_json(d, &js, &len);
    if (e != TD_CRDT_OK)
        return say(why, n, "to_json: %s (%s)", td_crdt_strerror(e), td_crdt_doc_error(d));
    if (!js || strlen(js) != len) {
        if (js)
            td_crdt_buf_free(d, js);
        return say(why, n, "to_json: length does not match the string");
    }
    *out = (char *)tt_bytes_copy((const uint8_t *)js, len + 1).p;
    td_crdt_buf_free(d, js);
    return 1;
}

int tt_doc_valid(td_crdt_doc *d, char *why, size_t n)
{
    int ok = 0;
    char *js = NULL, *js2 = NULL;
    tt_bytes snap = {NULL, 0}, snap2 = {NULL, 0};
    td_crdt_doc *l = NULL, *f = NULL;
    uint8_t *all = NULL;
    size_t al = 0;
    td_crdt_options o;
    memset(&o, 0, sizeof o);
    o.agent = 0x9999;

    if (!json_of(d, &js, why, n))
        goto out;
    cJSON *j = cJSON_Parse(js);
    int is_obj = j && cJSON_IsObject(j);
    cJSON_Delete(j);
    if (!is_obj) {
        say(why, n, "to_json is not a JSON object: %.300s", js);
        goto out;
    }
    if (!snap_of(d, &snap, why, n))
        goto out;

    const char *msg = NULL;
    td_crdt_err e = td_crdt_doc_load(&o, snap.p, snap.len, &l, &msg);
    if (e != TD_CRDT_OK) {
        say(why, n, "loading its own snapshot: %s (%s)", td_crdt_strerror(e), msg ? msg : "");
        goto out;
    }
    if (!snap_of(l, &snap2, why, n) || !json_of(l, &js2, why, n))
        goto out;
    if (!tt_bytes_eq(&snap, &snap2)) {
        say(why, n, "snapshot -> load -> snapshot changes the bytes (%zu -> %zu)", snap.len,
            snap2.len);
        goto out;
    }
    if (strcmp(js, js2) != 0) {
        say(why, n, "JSON differs after load:\n  %.300s\n  %.300s", js, js2);
        goto out;
    }
    if (td_crdt_op_count(l) != td_crdt_op_count(d)) {
        say(why, n, "op count differs after load");
        goto out;
    }

    /* Its ops, replayed into a fresh replica, rebuild it. */
    e = td_crdt_diff(d, NULL, 0, &all, &al);
    if (e != TD_CRDT_OK) {
        say(why, n, "diff(empty vv): %s (%s)", td_crdt_strerror(e), td_crdt_doc_error(d));
        goto out;
    }
    if (td_crdt_doc_new(&o, &f) != TD_CRDT_OK) {
        say(why, n, "doc_new failed");
        goto out;
    }
    if (al) {
        td_crdt_apply_info info;
        e = td_crdt_apply(f, all, al, &info);
        if (e != TD_CRDT_OK) {
            say(why, n, "a fresh replica refuses diff(empty vv): %s (%s)", td_crdt_strerror(e),
                td_crdt_doc_error(f));
            goto out;
        }
        if (info.parked || td_crdt_pending_ops(f)) {
            say(why, n, "diff(empty vv) parks in a fresh replica");
            goto out;
        }
    }
    if (td_crdt_op_count(f) != td_crdt_op_count(d)) {
        say(why, n, "fresh replica from diff(empty vv) has %llu ops, the document %llu",
            (unsigned long long)td_crdt_op_count(f), (unsigned long long)td_crdt_op_count(d));
        goto out;
    }
    /* Same content. Not necessarily the same bytes: a snapshot carries
     * state no op implies (e.g. its clock may be ahead of every surviving
     * entry), which a loader cannot check and a diff does not carry. */
    {
        char *jf = NULL;
        if (!json_of(f, &jf, why, n))
            goto out;
        int same = strcmp(jf, js) == 0;
        free(jf);
        if (!same) {
            say(why, n, "fresh replica from diff(empty vv) shows other content");
            goto out;
        }
    }
    ok = 1;
out:
    if (all)
        td_crdt_buf_free(d, all);
    if (l)
        td_crdt_doc_free(l);
    if (f)
        td_crdt_doc_free(f);
    free(js);
    free(js2);
    tt_bytes_free(&snap);
    tt_bytes_free(&snap2);
    return ok;
}

static int same_as(td_crdt_doc *d, const tt_bytes *want, int *eq, char *why, size_t n)
{
    tt_bytes now;
    if (!snap_of(d, &now, why, n))
        return 0;
    *eq = tt_bytes_eq(&now, want);
    tt_bytes_free(&now);
    return 1;
}

tt_feed_result tt_feed_apply(td_crdt_doc *d, const tt_bytes *before, const uint8_t *p,
                             size_t len, int *changed, char *why, size_t n)
{
    uint64_t ops = td_crdt_op_count(d);
    size_t pending = td_crdt_pending_ops(d);
    td_crdt_apply_info info;
    int eq = 0;
    memset(&info, 0, sizeof info);
    *changed = 0;
    tt_alloc_watch_reset();
    td_crdt_err e = td_crdt_apply(d, p, len, &info);
    if (tt_alloc_watch && tt_alloc_watch_max() > alloc_bound(len))
        return say(why, n, "apply of %zu bytes allocated %zu bytes at once (%s)", len,
                   tt_alloc_watch_max(), td_crdt_strerror(e)), TT_FEED_BROKEN;
    if (e != TD_CRDT_OK) {
        const char *m = td_crdt_doc_error(d);
        if (e == TD_CRDT_ERR_NOMEM)
            return say(why, n, "apply: nomem"), TT_FEED_BROKEN;
        if (!m || !m[0])
            return say(why, n, "apply failed with an empty message"), TT_FEED_BROKEN;
        if (td_crdt_op_count(d) != ops)
            return say(why, n, "apply failed (%s) but the op count changed",
                       td_crdt_strerror(e)), TT_FEED_BROKEN;
        if (td_crdt_pending_ops(d) != pending)
            return say(why, n, "apply failed (%s) but the pending set changed: %zu -> %zu",
                       td_crdt_strerror(e), pending, td_crdt_pending_ops(d)), TT_FEED_BROKEN;
        if (!same_as(d, before, &eq, why, n))
            return TT_FEED_BROKEN;
        if (!eq)
            return say(why, n, "apply failed (%s: %s) but the snapshot changed",
                       td_crdt_strerror(e), m), TT_FEED_BROKEN;
        return TT_FEED_REJECTED;
    }
    if (info.parked != 0 && info.parked != 1)
        return say(why, n, "apply_info.parked is %d", info.parked), TT_FEED_BROKEN;
    if (!same_as(d, before, &eq, why, n))
        return TT_FEED_BROKEN;
    *changed = !eq || td_crdt_pending_ops(d) != pending || td_crdt_op_count(d) != ops;
    if (!info.ops_applied && !info.parked && *changed)
        return say(why, n, "apply integrated and parked nothing, yet changed the document"),
               TT_FEED_BROKEN;
    if (!tt_doc_valid(d, why, n))
        return TT_FEED_BROKEN;
    return TT_FEED_ACCEPTED;
}

tt_feed_result tt_feed_load(const uint8_t *p, size_t len, char *why, size_t n)
{
    td_crdt_options o;
    memset(&o, 0, sizeof o);
    o.agent = 0x1111; /* an agent of the seed documents: its seq must continue */
    if (tt_alloc_watch)
        o.alloc = tt_alloc_hook;
    td_crdt_doc *d = (td_crdt_doc *)&o; /* must come back NULL on error */
    const char *msg = NULL;
    tt_alloc_watch_reset();
    td_crdt_err e = td_crdt_doc_load(&o, p, len, &d, &msg);
    if (tt_alloc_watch && tt_alloc_watch_max() > alloc_bound(len)) {
        if (e == TD_CRDT_OK)
            td_crdt_doc_free(d);
        return say(why, n, "doc_load of %zu bytes allocated %zu bytes at once (%s)", len,
                   tt_alloc_watch_max(), td_crdt_strerror(e)), TT_FEED_BROKEN;
    }
    if (e != TD_CRDT_OK) {
        if (e == TD_CRDT_ERR_NOMEM)
            return say(why, n, "doc_load: nomem"), TT_FEED_BROKEN;
        if (d != NULL)
            return say(why, n, "doc_load failed but *out is not NULL"), TT_FEED_BROKEN;
        if (!msg || !msg[0])
            return say(why, n, "doc_load failed without a message"), TT_FEED_BROKEN;
        return TT_FEED_REJECTED;
    }
    if (!d)
        return say(why, n, "doc_load succeeded with *out NULL"), TT_FEED_BROKEN;
    tt_feed_result r = TT_FEED_ACCEPTED;
    if (td_crdt_pending_ops(d) != 0) {
        say(why, n, "a loaded document has pending ops");
        r = TT_FEED_BROKEN;
    } else if (!tt_doc_valid(d, why, n)) {
        r = TT_FEED_BROKEN;
    }
    td_crdt_doc_free(d);
    return r;
}

tt_feed_result tt_feed_load_trusted(const uint8_t *p, size_t len, char *why, size_t n)
{
    td_crdt_options o;
    memset(&o, 0, sizeof o);
    o.agent = 0x1111;
    td_crdt_doc *full = NULL, *d = NULL;
    int full_ok = td_crdt_doc_load(&o, p, len, &full, NULL) == TD_CRDT_OK;
    o.trusted_snapshot = 1;
    td_crdt_err e = td_crdt_doc_load(&o, p, len, &d, NULL);
    tt_feed_result r = TT_FEED_ACCEPTED;
    char *j1 = NULL, *j2 = NULL, *j3 = NULL; /* j1, j2 of d; j3 of full */
    uint8_t *s1 = NULL, *s2 = NULL;
    size_t l1 = 0, l2 = 0;
    if (e != TD_CRDT_OK) {
        if (e == TD_CRDT_ERR_NOMEM || full_ok)
            r = (say(why, n, "trusted doc_load: %s (untrusted: %s)", td_crdt_strerror(e),
                    full_ok ? "accepted" : "refused"), TT_FEED_BROKEN);
        else
            r = TT_FEED_REJECTED;
        goto out;
    }
    /* reading works on the lazy state */
    if ((e = td_crdt_to_json(d, &j1, &l1))) {
        r = (say(why, n, "to_json of a trusted load: %s", td_crdt_strerror(e)), TT_FEED_BROKEN);
        goto out;
    }
    /* the first history-using call decodes the rest, or refuses cleanly */
    e = td_crdt_snapshot_encode(d, &s1, &l1);
    if (e != TD_CRDT_OK) {
        if (e == TD_CRDT_ERR_NOMEM || full_ok) {
            r = (say(why, n, "snapshot_encode after a trusted load: %s (%s)", td_crdt_strerror(e),
                    td_crdt_doc_error(d)), TT_FEED_BROKEN);
        } else if (td_crdt_to_json(d, &j2, &l2) != TD_CRDT_OK || strcmp(j1, j2) != 0) {
            r = (say(why, n, "a trusted load reads differently after a refused decode"),
                 TT_FEED_BROKEN);
        } else {
            r = TT_FEED_REJECTED;
        }
        goto out;
    }
    if (full_ok) { /* then it is the same document */
        if (td_crdt_snapshot_encode(full, &s2, &l2) != TD_CRDT_OK || l1 != l2 ||
            memcmp(s1, s2, l1) != 0)
            r = (say(why, n, "trusted and untrusted loads encode differently"), TT_FEED_BROKEN);
        else if (td_crdt_to_json(full, &j3, &l2) != TD_CRDT_OK || strcmp(j1, j3) != 0)
            r = (say(why, n, "trusted and untrusted loads read differently"), TT_FEED_BROKEN);
    }
out:
    if (d) {
        td_crdt_buf_free(d, j1);
        td_crdt_buf_free(d, j2);
        td_crdt_buf_free(d, s1);
    }
    if (full) {
        td_crdt_buf_free(full, s2);
        td_crdt_buf_free(full, j3);
    }
    td_crdt_doc_free(d);
    td_crdt_doc_free(full);
    return r;
}

tt_feed_result tt_feed_diff(td_crdt_doc *full, const tt_bytes *full_snap, const uint8_t *p,
                            size_t len, int check_unchanged, char *why, size_t n)
{
    uint8_t *out = NULL;
    size_t ol = 0;
    int eq = 1;
    tt_alloc_watch_reset();
    td_crdt_err e = td_crdt_diff(full, p, len, &out, &ol);
    if (tt_alloc_watch && tt_alloc_watch_max() > alloc_bound(len)) {
        if (out)
            td_crdt_buf_free(full, out);
        return say(why, n, "diff with a %zu-byte vv allocated %zu bytes at once (%s)", len,
                   tt_alloc_watch_max(), td_crdt_strerror(e)), TT_FEED_BROKEN;
    }
    if (check_unchanged) {
        if (!same_as(full, full_snap, &eq, why, n))
            return TT_FEED_BROKEN;
        if (!eq)
            return say(why, n, "diff (%s) changed the document", td_crdt_strerror(e)),
                   TT_FEED_BROKEN;
    }
    if (e != TD_CRDT_OK) {
        const char *m = td_crdt_doc_error(full);
        if (e == TD_CRDT_ERR_NOMEM)
            return say(why, n, "diff: nomem"), TT_FEED_BROKEN;
        if (!m || !m[0])
            return say(why, n, "diff failed with an empty message"), TT_FEED_BROKEN;
        return TT_FEED_REJECTED;
    }
    if ((out == NULL) != (ol == 0))
        return say(why, n, "diff: out/len disagree"), TT_FEED_BROKEN;

    /* A peer claiming that vv takes the output; a normal diff completes it. */
    tt_feed_result r = TT_FEED_BROKEN;
    td_crdt_options o;
    memset(&o, 0, sizeof o);
    o.agent = 0x8888;
    td_crdt_doc *f = NULL;
    tt_bytes vv = {NULL, 0}, got = {NULL, 0};
    uint8_t *rest = NULL, *vb = NULL;
    size_t rl = 0, vl = 0;
    if (td_crdt_doc_new(&o, &f) != TD_CRDT_OK) {
        say(why, n, "doc_new failed");
        goto out;
    }
    if (ol && (e = td_crdt_apply(f, out, ol, NULL)) != TD_CRDT_OK) {
        say(why, n, "a fresh replica refuses diff's output: %s (%s)", td_crdt_strerror(e),
            td_crdt_doc_error(f));
        goto out;
    }
    if (td_crdt_vv_encode(f, &vb, &vl) != TD_CRDT_OK) {
        say(why, n, "vv_encode failed");
        goto out;
    }
    vv = tt_bytes_copy(vb, vl);
    td_crdt_buf_free(f, vb);
    if ((e = td_crdt_diff(full, vv.p, vv.len, &rest, &rl)) != TD_CRDT_OK) {
        say(why, n, "diff for the completing peer: %s", td_crdt_strerror(e));
        goto out;
    }
    if (rl && (e = td_crdt_apply(f, rest, rl, NULL)) != TD_CRDT_OK) {
        say(why, n, "completing diff refused: %s (%s)", td_crdt_strerror(e),
            td_crdt_doc_error(f));
        goto out;
    }
    if (td_crdt_pending_ops(f) != 0) {
        say(why, n, "%zu ops still pending after a completing diff", td_crdt_pending_ops(f));
        goto out;
    }
    if (!snap_of(f, &got, why, n))
        goto out;
    if (!tt_bytes_eq(&got, full_snap)) {
        say(why, n, "diff(vv) then diff(rest) does not rebuild the document");
        goto out;
    }
    r = TT_FEED_ACCEPTED;
out:
    if (out)
        td_crdt_buf_free(full, out);
    if (rest)
        td_crdt_buf_free(full, rest);
    if (f)
        td_crdt_doc_free(f);
    tt_bytes_free(&vv);
    tt_bytes_free(&got);
    return r;
}
