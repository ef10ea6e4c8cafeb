/*
 * srv_yproto.c -- the y-protocols codec (srv_yproto.h).
 *
 * Each message kind is a row of a table: which fields follow the type, in
 * order. A decoder walks the row, so every kind is checked the same way:
 * each field within the message, and nothing left over.
 */
#include <string.h>

#include <cjson/cJSON.h>

#include "tandem_crdt.h"
#include "srv_yproto.h"

typedef struct rd {
    const uint8_t *p;
    size_t len, pos;
    const char *why;
} rd;

static int fail(rd *r, const char *why)
{
    if (!r->why)
        r->why = why;
    return -1;
}

/* A lib0 varuint, strictly: at most 2^53 - 1, minimal, within the input. */
static int rd_uint(rd *r, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0;; shift += 7) {
        if (r->pos >= r->len)
            return fail(r, "truncated varuint");
        uint8_t b = r->p[r->pos++];
        if (shift >= 53 || (shift == 49 && (b & 0x7f) > 0x0f))
            return fail(r, "varuint past 2^53 - 1");
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            if (b == 0 && shift)
                return fail(r, "non-minimal varuint");
            break;
        }
    }
    *out = v;
    return 0;
}

static int rd_bytes(rd *r, const uint8_t **p, size_t *len)
{
    uint64_t n;
    if (rd_uint(r, &n) < 0)
        return -1;
    if (n > r->len - r->pos)
        return fail(r, "length past the end of the message");
    *p = r->p + r->pos;
    *len = (size_t)n;
    r->pos += (size_t)n;
    return 0;
}

static int rd_string(rd *r, const uint8_t **p, size_t *len)
{
    if (rd_bytes(r, p, len) < 0)
        return -1;
    if (!td_crdt_utf8_valid(*p, *len))
        return fail(r, "string is not valid UTF-8");
    return 0;
}

/* ---- the message table -------------------------------------------------------------- */

typedef enum fld {
    F_END = 0,
    F_SUB,        /* sub-type varuint */
    F_DATA,       /* varUint8Array */
    F_STRING,     /* varString into data */
    F_OPT_STRING, /* a varString that may be absent (Hocuspocus's Auth carries the
                   * provider's version after the token) */
    F_FLAG        /* a varuint into flag */
} fld;

typedef struct def {
    uint8_t type;
    uint8_t hocus; /* 1: Hocuspocus only */
    fld f[4];
    /* SYNC and AUTH: the sub-types allowed (a bit each) */
    uint8_t subs;
} def;

static const def defs[] = {
    {TD_SRV_Y_SYNC, 0, {F_SUB, F_DATA}, 0x07},
    {TD_SRV_Y_AWARENESS, 0, {F_DATA}, 0},
    {TD_SRV_Y_AUTH, 0, {F_SUB, F_STRING, F_OPT_STRING}, 0x07},
    {TD_SRV_Y_QUERY_AWARENESS, 0, {F_END}, 0},
    {TD_SRV_Y_STATELESS, 1, {F_STRING}, 0},
    {TD_SRV_Y_BROADCAST_STATELESS, 1, {F_STRING}, 0},
    {TD_SRV_Y_CLOSE, 1, {F_OPT_STRING}, 0},
    {TD_SRV_Y_SYNC_STATUS, 1, {F_FLAG}, 0},
};

static td_srv_code decode_body(rd *r, int hocus, td_srv_ymsg *out, const char **why)
{
    const def *d = NULL;
    if (rd_uint(r, &out->type) < 0)
        goto bad;
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++)
        if (defs[i].type == out->type && (hocus || !defs[i].hocus))
            d = &defs[i];
    if (!d) {
        if (why)
            *why = "unknown message type";
        return TD_SRV_E_UNKNOWN_TYPE;
    }
    for (size_t i = 0; i < sizeof d->f / sizeof d->f[0] && d->f[i] != F_END; i++) {
        const uint8_t *p;
        size_t n;
        switch (d->f[i]) {
        case F_SUB:
            if (rd_uint(r, &out->sub) < 0)
                goto bad;
            if (out->sub >= 8 || !(d->subs & (1u << out->sub))) {
                fail(r, "unknown sub-type");
                goto bad;
            }
            break;
        case F_DATA:
            if (rd_bytes(r, &out->data, &out->len) < 0)
                goto bad;
            break;
        case F_STRING:
            if (rd_string(r, &out->data, &out->len) < 0)
                goto bad;
            break;
        case F_OPT_STRING:
            if (r->pos < r->len && rd_string(r, &p, &n) < 0)
                goto bad;
            break;
        case F_FLAG:
            if (rd_uint(r, &out->flag) < 0)
                goto bad;
            break;
        case F_END:
            break;
        }
    }
    if (r->pos != r->len) {
        fail(r, "bytes after the end of the message");
        goto bad;
    }
    return TD_SRV_E_OK;
bad:
    if (why)
        *why = r->why;
    return TD_SRV_E_BAD_MESSAGE;
}

td_srv_code td_srv_ymsg_decode(const uint8_t *buf, size_t len, td_srv_ymsg *out,
                               const char **why)
{
    rd r = {buf, len, 0, NULL};
    memset(out, 0, sizeof *out);
    return decode_body(&r, 0, out, why);
}

td_srv_code td_srv_hpmsg_decode(const uint8_t *buf, size_t len, td_srv_ymsg *out,
                                const char **why)
{
    rd r = {buf, len, 0, NULL};
    memset(out, 0, sizeof *out);
    if (rd_string(&r, &out->doc, &out->doc_len) < 0) {
        if (why)
            *why = r.why;
        return TD_SRV_E_BAD_MESSAGE;
    }
    return decode_body(&r, 1, out, why);
}

/* ---- awareness updates ------------------------------------------------------------------ */

/* Yjs client ids are uint32 (random 32-bit); clocks count from 0 and a
 * provider renews every 15 s, so 2^32 is beyond any honest one. */
#define YAW_MAX 0xffffffffu

static int rd_entry(rd *r, td_srv_yaw *e)
{
    const uint8_t *p;
    if (rd_uint(r, &e->client) < 0 || rd_uint(r, &e->clock) < 0 ||
        rd_string(r, &p, &e->json_len) < 0)
        return -1;
    e->json = (const char *)p;
    e->is_null = e->json_len == 4 && memcmp(p, "null", 4) == 0;
    return 0;
}

td_srv_code td_srv_yaw_check(const uint8_t *p, size_t len, size_t max_entries,
                             size_t max_state, size_t *count, const char **why)
{
    rd r = {p, len, 0, NULL};
    uint64_t n;
    *count = 0;
    if (rd_uint(&r, &n) < 0)
        goto bad;
    if (n > max_entries) {
        if (why)
            *why = "too many awareness entries";
        return TD_SRV_E_LIMIT;
    }
    for (uint64_t i = 0; i < n; i++) {
        td_srv_yaw e;
        if (rd_entry(&r, &e) < 0)
            goto bad;
        if (e.client > YAW_MAX || e.clock > YAW_MAX) {
            fail(&r, "awareness client id or clock past 32 bits");
            goto bad;
        }
        if (e.json_len > max_state) {
            if (why)
                *why = "awareness state too large";
            return TD_SRV_E_TOO_LARGE;
        }
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithLengthOpts(e.json, e.json_len, &end, 0);
        int whole = j && end == e.json + e.json_len;
        cJSON_Delete(j);
        if (!whole) {
            fail(&r, "awareness state is not one JSON value");
            goto bad;
        }
    }
    if (r.pos != len) {
        fail(&r, "bytes after the awareness entries");
        goto bad;
    }
    *count = (size_t)n;
    return TD_SRV_E_OK;
bad:
    if (why)
        *why = r.why;
    return TD_SRV_E_BAD_MESSAGE;
}

int td_srv_yaw_next(const uint8_t *p, size_t len, size_t *pos, td_srv_yaw *out)
{
    rd r = {p, len, *pos, NULL};
    uint64_t n;
    if (*pos == 0 && rd_uint(&r, &n) < 0)
        return 0;
    if (r.pos >= len || rd_entry(&r, out) < 0)
        return 0;
    *pos = r.pos;
    return 1;
}

/* ---- encoding ------------------------------------------------------------------------------ */

void td_srv_y_put_string(td_srv_wbuf *w, const char *s, size_t len)
{
    td_srv_put_bytes(w, s, len);
}

void td_srv_y_put_sync(td_srv_wbuf *w, td_srv_y_sync step, const uint8_t *p, size_t len)
{
    td_srv_put_varint(w, TD_SRV_Y_SYNC);
    td_srv_put_varint(w, step);
    td_srv_put_bytes(w, p, len);
}

void td_srv_y_put_awareness(td_srv_wbuf *w, uint64_t count, const uint8_t *entries,
                            size_t len)
{
    uint8_t head[10];
    size_t n = td_crdt_varint_put(head, count);
    td_srv_put_varint(w, TD_SRV_Y_AWARENESS);
    td_srv_put_varint(w, n + len);
    td_srv_put_raw(w, head, n);
    td_srv_put_raw(w, entries, len);
}

void td_srv_yaw_put(td_srv_wbuf *w, uint64_t client, uint64_t clock, const char *json,
                    size_t json_len)
{
    td_srv_put_varint(w, client);
    td_srv_put_varint(w, clock);
    td_srv_put_bytes(w, json, json_len);
}

void td_srv_y_put_auth(td_srv_wbuf *w, uint64_t sub, const char *s, size_t len)
{
    td_srv_put_varint(w, TD_SRV_Y_AUTH);
    td_srv_put_varint(w, sub);
    td_srv_put_bytes(w, s, len);
}
