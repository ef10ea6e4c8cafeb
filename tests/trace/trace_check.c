/*
 * trace_check.c -- judging a replay against endContent (see trace_check.h).
 *
 * Locating the first wrong patch of a sequential trace replays the core and
 * a gap buffer side by side. Comparing whole texts after every patch would
 * make that quadratic, so lengths are compared every patch and texts every
 * LOCATE_BLOCK patches; the block that first differs is then replayed again
 * comparing every patch.
 */
#include "trace_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOCKSTEP_AGENT 1u
#define LOCATE_BLOCK 512 /* patches between full-text checks */

/* ---- checking text ------------------------------------------------------ */

/* Quotes a piece of text for a message: UTF-8 stays readable, control
 * characters and bytes cut out of a sequence are escaped. */
static void escape_snippet(const char *s, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 8 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0, cp;
        if (c == '\n')
            o += (size_t)snprintf(out + o, outlen - o, "\\n");
        else if (c == '"' || c == '\\')
            o += (size_t)snprintf(out + o, outlen - o, "\\%c", c);
        else if (c >= 0x80 && k && i + k < len &&
                 tt_utf8_count(s + i, k + 1, &cp, NULL) == 0) {
            memcpy(out + o, s + i, k + 1);
            o += k + 1;
            i += k;
        } else if (c < 0x20 || c >= 0x7F)
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = '\0';
}

/* Describes where `got` first departs from `want`. */
static void describe_diff(const char *want, size_t wlen, const char *got,
                          size_t glen, char *msg, size_t msglen)
{
    size_t i = 0, cp = 0;
    while (i < wlen && i < glen && want[i] == got[i])
        i++;
    while (i > 0 && ((unsigned char)want[i] & 0xC0) == 0x80)
        i--; /* back to the start of the code point */
    for (size_t j = 0; j < i; j++)
        cp += ((unsigned char)want[j] & 0xC0) != 0x80;
    size_t from = i > 16 ? i - 16 : 0;
    while (from < i && ((unsigned char)want[from] & 0xC0) == 0x80)
        from++;
    char ws[200], gs[200];
    escape_snippet(want + from, (wlen - from < 40 ? wlen - from : 40), ws, sizeof ws);
    escape_snippet(got + from, (glen - from < 40 ? glen - from : 40), gs, sizeof gs);
    snprintf(msg, msglen, "texts differ from code point %zu (byte %zu): expected "
             "%zu bytes \"...%s...\", got %zu bytes \"...%s...\" (context starts "
             "at byte %zu)", cp, i, wlen, ws, glen, gs, from);
}

int tt_check_text(td_crdt_doc *doc, td_crdt_obj text, const char *want,
                  size_t wlen, char *msg, size_t msglen)
{
    char *got = NULL;
    size_t glen = 0;
    td_crdt_err e = td_crdt_text_get(doc, text, &got, &glen);
    if (e != TD_CRDT_OK) {
        snprintf(msg, msglen, "td_crdt_text_get failed: %s (%s)",
                 td_crdt_strerror(e), td_crdt_doc_error(doc));
        return -1;
    }
    int same = glen == wlen && memcmp(got, want, wlen) == 0;
    if (!same)
        describe_diff(want, wlen, got, glen, msg, msglen);
    td_crdt_buf_free(doc, got);
    return same ? 0 : -1;
}

int tt_check_replicas(const tt_trace *t, tt_replay *r, int *mismatch,
                      char *msg, size_t msglen)
{
    char err[1024];
    int rc = 0;
    *mismatch = 0;
    msg[0] = '\0';
    for (uint32_t a = 0; a < r->ndocs; a++) {
        if (tt_check_text(r->docs[a], r->texts[a], t->end, t->end_len, err,
                          sizeof err) != 0) {
            if (rc == 0)
                snprintf(msg, msglen, "result is not endContent: replica %u: %s",
                         a, err);
            *mismatch = 1;
            return -1;
        }
        if (td_crdt_pending_ops(r->docs[a]) != 0) {
            if (rc == 0)
                snprintf(msg, msglen, "replica %u still has %zu pending ops", a,
                         td_crdt_pending_ops(r->docs[a]));
            rc = -1;
        }
    }
    return rc;
}

/* ---- the gap buffer ----------------------------------------------------- */

int tt_gap_replay(const tt_trace *t, tt_gap *g)
{
    if (tt_gap_insert(g, 0, t->start, t->start_len, t->start_cp) != 0)
        return -1;
    for (size_t i = 0; i < t->npatches; i++) {
        const tt_patch *p = &t->patches[i];
        if (p->del)
            tt_gap_delete(g, p->pos, p->del);
        if (p->ins_len &&
            tt_gap_insert(g, p->pos, t->text + p->ins_off, p->ins_len,
                          p->ins_cp) != 0)
            return -1;
    }
    return 0;
}

int tt_gap_equals(const tt_gap *g, const char *want, size_t wlen)
{
    size_t len;
    char *s = tt_gap_to_utf8(g, &len);
    if (!s)
        return -1;
    int same = len == wlen && memcmp(s, want, len) == 0;
    free(s);
    return same;
}

/* ---- locating the first wrong patch (sequential traces) ----------------- */

static size_t txn_of_patch(const tt_trace *t, size_t i)
{
    size_t lo = 0, hi = t->ntxns;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (t->txns[mid].first <= i)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Replays doc and gap buffer in lockstep and compares them; `check_from`
 * is the first patch after which the whole texts are compared every time
 * (before it, only lengths every patch and texts every LOCATE_BLOCK).
 * Returns the first patch after which they differ, or npatches if none;
 * SIZE_MAX if the setup failed. */
static size_t lockstep(const tt_trace *t, size_t check_from, char *msg,
                       size_t msglen)
{
    td_crdt_options o = {.agent = LOCKSTEP_AGENT};
    td_crdt_doc *doc = NULL;
    td_crdt_obj text = 0;
    tt_gap g;
    size_t bad = SIZE_MAX;
    if (tt_gap_init(&g, 1024) != 0)
        return SIZE_MAX;
    if (td_crdt_doc_new(&o, &doc) != TD_CRDT_OK ||
        td_crdt_root(doc, TD_CRDT_TEXT, "text", 4, &text) != TD_CRDT_OK ||
        tt_gap_insert(&g, 0, t->start, t->start_len, t->start_cp) != 0 ||
        (t->start_len &&
         td_crdt_text_insert(doc, text, 0, t->start, t->start_len) != TD_CRDT_OK))
        goto done;
    for (size_t i = 0; i < t->npatches; i++) {
        const tt_patch *p = &t->patches[i];
        char opmsg[512];
        tt_gap_delete(&g, p->pos, p->del);
        if (p->ins_len &&
            tt_gap_insert(&g, p->pos, t->text + p->ins_off, p->ins_len, p->ins_cp) != 0)
            goto done;
        td_crdt_err e = p->del ? td_crdt_text_delete(doc, text, p->pos, p->del)
                               : TD_CRDT_OK;
        if (e == TD_CRDT_OK && p->ins_len)
            e = td_crdt_text_insert(doc, text, p->pos, t->text + p->ins_off,
                                    p->ins_len);
        if (e != TD_CRDT_OK) {
            snprintf(opmsg, sizeof opmsg, "the core refused it: %s (%s)",
                     td_crdt_strerror(e), td_crdt_doc_error(doc));
            snprintf(msg, msglen, "%s", opmsg);
            bad = i;
            goto done;
        }
        int full = i >= check_from || (i + 1) % LOCATE_BLOCK == 0 ||
                   i + 1 == t->npatches;
        size_t glen;
        char *gs;
        if (td_crdt_text_length(doc, text) != tt_gap_length(&g))
            full = 1;
        if (!full)
            continue;
        if (!(gs = tt_gap_to_utf8(&g, &glen)))
            goto done;
        int differs = tt_check_text(doc, text, gs, glen, msg, msglen) != 0;
        free(gs);
        if (differs) {
            bad = i;
            goto done;
        }
    }
    bad = t->npatches;
done:
    tt_gap_free(&g);
    if (doc)
        td_crdt_doc_free(doc);
    return bad;
}

void tt_locate_seq(const tt_trace *t, char *out, size_t outlen)
{
    char msg[1024];
    size_t n = strlen(out);
    size_t bad = lockstep(t, SIZE_MAX, msg, sizeof msg);
    if (bad == SIZE_MAX || bad == t->npatches) {
        tt_gap g;
        int base_ok = tt_gap_init(&g, 1024) == 0 && tt_gap_replay(t, &g) == 0 &&
                      tt_gap_equals(&g, t->end, t->end_len) == 1;
        tt_gap_free(&g);
        snprintf(out + n, outlen - n, "%s",
                 bad == SIZE_MAX ? "; locating the first wrong patch failed"
                 : !base_ok ? "; the gap buffer does not reach endContent "
                              "either: the trace's patches do not produce its "
                              "endContent"
                            : "; a lockstep replay against the gap buffer "
                              "did not reproduce the difference");
        return;
    }
    /* The block check found it late; redo the block comparing every patch. */
    size_t from = bad >= LOCATE_BLOCK ? bad - LOCATE_BLOCK + 1 : 0;
    size_t exact = lockstep(t, from, msg, sizeof msg);
    if (exact < t->npatches)
        bad = exact;
    const tt_patch *p = &t->patches[bad];
    char ins[160];
    escape_snippet(t->text + p->ins_off, p->ins_len < 60 ? p->ins_len : 60, ins,
                   sizeof ins);
    snprintf(out + n, outlen - n,
             "; first wrong after patch %zu (txn %zu) [%u, %u, \"%s\"]: %s", bad,
             txn_of_patch(t, bad), p->pos, p->del, ins, msg);
}
