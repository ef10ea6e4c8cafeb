/*
 * trace_load.c -- reading an editing trace into the compact form of
 * trace_load.h.
 *
 * Trace files come from outside the project, so nothing in them is trusted:
 * every field is checked for its JSON type, every number for being a whole
 * number in range, every string for being valid UTF-8, and in sequential
 * traces every position against the length the text has at that point (the
 * length is tracked while converting, which costs nothing). Concurrent traces
 * cannot be range-checked here, because a position refers to the state of the
 * txn's parents; the replay checks those against the replica instead.
 *
 * zlib's gzread reads plain files unchanged, so `.json` and `.json.gz` take
 * the same path.
 */
#include "trace_load.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* A trace larger than this once decompressed is refused rather than read. */
#define TT_MAX_JSON_BYTES ((size_t)1 << 30)
/* Bounds that keep the replica bookkeeping (agents x txns bits) sane. */
#define TT_MAX_AGENTS 65536u

typedef struct builder {
    tt_trace *t;
    size_t cap_patches, cap_txns, cap_parents, cap_text;
    char *err;
    size_t errlen;
} builder;

static int fail(builder *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, b->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int tt_utf8_count(const char *s, size_t len, size_t *cp, size_t *bad)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t k;
        uint32_t v, min;
        if (c < 0x80) {
            i++;
            n++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            k = 1; v = c & 0x1F; min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2; v = c & 0x0F; min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3; v = c & 0x07; min = 0x10000;
        } else {
            goto invalid;
        }
        if (len - i <= k)
            goto invalid;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                goto invalid;
            v = (v << 6) | (p[i + j] & 0x3F);
        }
        if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
            goto invalid;
        i += k + 1;
        n++;
    }
    *cp = n;
    return 0;
invalid:
    if (bad)
        *bad = i;
    return -1;
}

/* Grows *p (elements of size `elem`) so that it holds at least `need`. */
static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 64;
    while (ncap < need)
        ncap *= 2;
    if (ncap > SIZE_MAX / elem)
        return -1;
    void *np = realloc(*p, ncap * elem);
    if (!np)
        return -1;
    *p = np;
    *cap = ncap;
    return 0;
}

/* Gives back the slack of a grown array (the trace stays resident while
 * memory is measured). */
static void shrink(void **p, size_t n, size_t elem)
{
    if (n == 0) {
        free(*p);
        *p = NULL;
        return;
    }
    void *np = realloc(*p, n * elem);
    if (np)
        *p = np;
}

static int read_all(const char *path, char **out, size_t *outlen, char *err,
                    size_t errlen)
{
    gzFile f = gzopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open: %s",
                 errno ? strerror(errno) : "out of memory");
        return -1;
    }
    gzbuffer(f, 1 << 17);
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        gzclose(f);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (;;) {
        if (cap - len < (1 << 16)) {
            if (cap >= TT_MAX_JSON_BYTES) {
                snprintf(err, errlen, "larger than %zu bytes once decompressed",
                         TT_MAX_JSON_BYTES);
                goto fail;
            }
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            buf = nb;
            cap *= 2;
        }
        int n = gzread(f, buf + len, (unsigned)(cap - len));
        if (n < 0) {
            int code;
            const char *msg = gzerror(f, &code);
            snprintf(err, errlen, "read error: %s",
                     code == Z_ERRNO ? strerror(errno) : msg);
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    int code;
    const char *msg = gzerror(f, &code);
    if (code != Z_OK) {
        /* A truncated gzip stream ends with Z_BUF_ERROR rather than n < 0. */
        snprintf(err, errlen, "read error: %s", msg);
        goto fail;
    }
    gzclose(f);
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return 0;
fail:
    gzclose(f);
    free(buf);
    return -1;
}

/* A JSON number that is a whole number in 0..UINT32_MAX. */
static int get_u32(const cJSON *j, uint32_t *out)
{
    if (!cJSON_IsNumber(j))
        return -1;
    double v = j->valuedouble;
    if (!(v >= 0.0 && v <= 4294967295.0))
        return -1;
    uint32_t u = (uint32_t)v;
    if ((double)u != v)
        return -1;
    *out = u;
    return 0;
}

/* Copies a JSON string that must be valid UTF-8. */
static int get_utf8(builder *b, const cJSON *j, const char *what, char **out,
                    size_t *len, size_t *cp)
{
    if (!cJSON_IsString(j) || !j->valuestring)
        return fail(b, "%s is not a string", what);
    size_t n = strlen(j->valuestring), bad = 0;
    if (tt_utf8_count(j->valuestring, n, cp, &bad) != 0)
        return fail(b, "%s is not valid UTF-8 (byte %zu)", what, bad);
    *out = malloc(n + 1);
    if (!*out)
        return fail(b, "out of memory");
    memcpy(*out, j->valuestring, n + 1);
    *len = n;
    return 0;
}

/* One [pos, del, "ins"] patch; `doclen` is the sequential text length before
 * it (NULL for concurrent traces, whose positions the replay checks). */
static int add_patch(builder *b, const cJSON *jp, size_t ti, size_t pi,
                     uint64_t *doclen)
{
    tt_trace *t = b->t;
    int n = cJSON_IsArray(jp) ? cJSON_GetArraySize(jp) : -1;
    if (n != 2 && n != 3)
        return fail(b, "txns[%zu].patches[%zu] is not an array [pos, del, \"ins\"]",
                    ti, pi);
    tt_patch p = {0};
    if (get_u32(cJSON_GetArrayItem(jp, 0), &p.pos) != 0)
        return fail(b, "txns[%zu].patches[%zu]: position is not a whole number "
                    "in 0..4294967295", ti, pi);
    if (get_u32(cJSON_GetArrayItem(jp, 1), &p.del) != 0)
        return fail(b, "txns[%zu].patches[%zu]: delete count is not a whole "
                    "number in 0..4294967295", ti, pi);
    const char *ins = "";
    size_t ins_len = 0;
    if (n == 3) {
        const cJSON *js = cJSON_GetArrayItem(jp, 2);
        if (!cJSON_IsString(js) || !js->valuestring)
            return fail(b, "txns[%zu].patches[%zu]: inserted content is not a "
                        "string", ti, pi);
        ins = js->valuestring;
        ins_len = strlen(ins);
    }
    size_t cp = 0, bad = 0;
    if (tt_utf8_count(ins, ins_len, &cp, &bad) != 0)
        return fail(b, "txns[%zu].patches[%zu]: inserted content is not valid "
                    "UTF-8 (byte %zu)", ti, pi, bad);
    if (ins_len > UINT32_MAX || t->text_len + ins_len > UINT32_MAX)
        return fail(b, "txns[%zu].patches[%zu]: more than 4 GiB of inserted text",
                    ti, pi);
    if (doclen) {
        if (p.pos > *doclen)
            return fail(b, "txns[%zu].patches[%zu]: position %u out of range "
                        "(the text has %llu code points)", ti, pi, p.pos,
                        (unsigned long long)*doclen);
        if (p.del > *doclen - p.pos)
            return fail(b, "txns[%zu].patches[%zu]: deleting %u code points at "
                        "%u runs past the end (the text has %llu code points)",
                        ti, pi, p.del, p.pos, (unsigned long long)*doclen);
        *doclen = *doclen - p.del + cp;
        if (*doclen > UINT32_MAX)
            return fail(b, "txns[%zu].patches[%zu]: text longer than 2^32 code "
                        "points", ti, pi);
    }
    if (grow((void **)&t->text, &b->cap_text, t->text_len + ins_len + 1, 1) != 0 ||
        grow((void **)&t->patches, &b->cap_patches, t->npatches + 1,
             sizeof(tt_patch)) != 0)
        return fail(b, "out of memory");
    p.ins_off = (uint32_t)t->text_len;
    p.ins_len = (uint32_t)ins_len;
    p.ins_cp = (uint32_t)cp;
    memcpy(t->text + t->text_len, ins, ins_len);
    t->text_len += ins_len;
    t->patches[t->npatches++] = p;
    t->ins_cp_total += cp;
    t->del_cp_total += p.del;
    return 0;
}

/* The concurrent-only fields of txn `ti`: agent and parents. */
static int add_txn_causality(builder *b, const cJSON *jt, size_t ti, tt_txn *tx)
{
    tt_trace *t = b->t;
    if (get_u32(cJSON_GetObjectItemCaseSensitive(jt, "agent"), &tx->agent) != 0)
        return fail(b, "txns[%zu].agent is not a whole number", ti);
    if (tx->agent >= t->num_agents)
        return fail(b, "txns[%zu].agent %u is not below numAgents (%u)", ti,
                    tx->agent, t->num_agents);
    const cJSON *jpar = cJSON_GetObjectItemCaseSensitive(jt, "parents");
    if (!cJSON_IsArray(jpar))
        return fail(b, "txns[%zu].parents is not an array", ti);
    tx->parents = (uint32_t)t->nparents;
    const cJSON *jv;
    cJSON_ArrayForEach(jv, jpar) {
        uint32_t par;
        if (get_u32(jv, &par) != 0)
            return fail(b, "txns[%zu].parents[%u] is not a whole number", ti,
                        tx->nparents);
        if (par >= ti)
            return fail(b, "txns[%zu].parents[%u] = %u does not name an earlier "
                        "txn", ti, tx->nparents, par);
        if (grow((void **)&t->parents, &b->cap_parents, t->nparents + 1,
                 sizeof(uint32_t)) != 0 || t->nparents >= UINT32_MAX)
            return fail(b, "out of memory");
        t->parents[t->nparents++] = par;
        tx->nparents++;
    }
    return 0;
}

static int add_txns(builder *b, const cJSON *jtxns)
{
    tt_trace *t = b->t;
    uint64_t doclen = t->start_cp;
    size_t ti = 0;
    const cJSON *jt;
    cJSON_ArrayForEach(jt, jtxns) {
        if (!cJSON_IsObject(jt))
            return fail(b, "txns[%zu] is not an object", ti);
        if (ti >= UINT32_MAX || t->npatches >= UINT32_MAX)
            return fail(b, "too many txns or patches");
        tt_txn tx = {0};
        tx.first = (uint32_t)t->npatches;
        if (t->concurrent && add_txn_causality(b, jt, ti, &tx) != 0)
            return -1;
        const cJSON *jps = cJSON_GetObjectItemCaseSensitive(jt, "patches");
        if (!cJSON_IsArray(jps))
            return fail(b, "txns[%zu].patches is not an array", ti);
        size_t pi = 0;
        const cJSON *jp;
        cJSON_ArrayForEach(jp, jps) {
            if (add_patch(b, jp, ti, pi++, t->concurrent ? NULL : &doclen) != 0)
                return -1;
        }
        tx.count = (uint32_t)(t->npatches - tx.first);
        if (grow((void **)&t->txns, &b->cap_txns, t->ntxns + 1, sizeof(tt_txn)) != 0)
            return fail(b, "out of memory");
        t->txns[t->ntxns++] = tx;
        ti++;
    }
    return 0;
}

/* Format, agents, startContent and endContent. */
static int read_header(builder *b, const cJSON *root)
{
    tt_trace *t = b->t;
    const cJSON *jkind = cJSON_GetObjectItemCaseSensitive(root, "kind");
    if (jkind) {
        if (!cJSON_IsString(jkind))
            return fail(b, "\"kind\" is not a string");
        if (strcmp(jkind->valuestring, "concurrent") == 0)
            t->concurrent = 1;
        else if (strcmp(jkind->valuestring, "sequential") != 0)
            return fail(b, "unknown kind \"%.40s\" (expected \"concurrent\")",
                        jkind->valuestring);
    }
    t->num_agents = 1;
    if (t->concurrent) {
        const cJSON *jn = cJSON_GetObjectItemCaseSensitive(root, "numAgents");
        if (get_u32(jn, &t->num_agents) != 0 || t->num_agents == 0 ||
            t->num_agents > TT_MAX_AGENTS)
            return fail(b, "numAgents is not a whole number in 1..%u",
                        TT_MAX_AGENTS);
    }
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(root, "startContent");
    if (js) {
        if (get_utf8(b, js, "startContent", &t->start, &t->start_len,
                     &t->start_cp) != 0)
            return -1;
    } else {
        t->start = calloc(1, 1);
        if (!t->start)
            return fail(b, "out of memory");
    }
    if (t->start_cp > UINT32_MAX)
        return fail(b, "startContent is too long");
    const cJSON *je = cJSON_GetObjectItemCaseSensitive(root, "endContent");
    if (!je)
        return fail(b, "no endContent");
    return get_utf8(b, je, "endContent", &t->end, &t->end_len, &t->end_cp);
}

void tt_trace_free(tt_trace *t)
{
    free(t->patches);
    free(t->txns);
    free(t->parents);
    free(t->text);
    free(t->start);
    free(t->end);
    memset(t, 0, sizeof *t);
}

int tt_trace_load(const char *path, tt_trace *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char *json = NULL;
    size_t json_len = 0;
    if (read_all(path, &json, &json_len, err, errlen) != 0)
        return -1;
    cJSON *root = cJSON_ParseWithLength(json, json_len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = (at && at >= json && at <= json + json_len)
                         ? (size_t)(at - json) : 0;
        snprintf(err, errlen, "not valid JSON (near byte %zu of %zu)", off,
                 json_len);
        free(json);
        return -1;
    }
    free(json);

    builder b = {.t = out, .err = err, .errlen = errlen};
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        fail(&b, "the top level is not a JSON object");
        goto done;
    }
    if (read_header(&b, root) != 0)
        goto done;
    const cJSON *jtxns = cJSON_GetObjectItemCaseSensitive(root, "txns");
    if (!cJSON_IsArray(jtxns)) {
        fail(&b, "txns is not an array");
        goto done;
    }
    if (add_txns(&b, jtxns) != 0)
        goto done;
    shrink((void **)&out->patches, out->npatches, sizeof(tt_patch));
    shrink((void **)&out->txns, out->ntxns, sizeof(tt_txn));
    shrink((void **)&out->parents, out->nparents, sizeof(uint32_t));
    shrink((void **)&out->text, out->text_len + 1, 1);
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc != 0)
        tt_trace_free(out);
    return rc;
}
