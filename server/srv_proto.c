/*
 * srv_proto.c -- the wire-protocol codec (docs/PROTOCOL.md).
 *
 * Pure functions, no I/O and no globals, so the decoder can be fuzzed on its
 * own. Decoding is a table: each message type lists its fields, and one
 * reader walks them with bounds checks. Every byte that comes off the
 * network passes through td_srv_msg_decode(), which validates the whole
 * message (including every entry of a list) before anything acts on it.
 */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "tandem_crdt.h"
#include "tandem_srv.h"

static const char *const code_names[TD_SRV_E_COUNT] = {
    "ok",           "bad_message",   "unknown_type",  "bad_version",
    "hello_required", "bad_doc_id",  "auth_required", "token_invalid",
    "token_expired", "forbidden",    "read_only",     "not_subscribed",
    "invalid_batch", "too_large",    "limit",         "doc_unavailable",
    "store_failed",  "busy",         "internal",      "shutting_down",
    "agent_taken",   "missing_ops",  "wrong_kind",    "unavailable"};

const char *td_srv_code_name(uint64_t code)
{
    return code < TD_SRV_E_COUNT ? code_names[code] : "unknown";
}

/* ---- validation helpers ---------------------------------------------------- */

int td_srv_doc_id_valid(const uint8_t *p, size_t len)
{
    if (len < 1 || len > TD_SRV_DOC_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (p[i] < 0x20 || p[i] == 0x7F)
            return 0;
    return td_crdt_utf8_valid(p, len);
}

/* ---- reader ---------------------------------------------------------------- */

typedef struct rd {
    const uint8_t *p;
    size_t len, pos;
    const char *why; /* first error, NULL while fine */
    int bad_doc;
} rd;

static int rd_fail(rd *r, const char *why)
{
    if (!r->why)
        r->why = why;
    return -1;
}

static int rd_varint(rd *r, uint64_t *out)
{
    if (td_crdt_varint_get(r->p, r->len, &r->pos, out) != TD_CRDT_OK)
        return rd_fail(r, "malformed varint (truncated, non-minimal or past 64 bits)");
    return 0;
}

static int rd_bytes(rd *r, td_srv_bytes *out)
{
    uint64_t n;
    if (rd_varint(r, &n) < 0)
        return -1;
    if (n > r->len - r->pos)
        return rd_fail(r, "length past the end of the message");
    out->ptr = r->p + r->pos;
    out->len = (size_t)n;
    r->pos += (size_t)n;
    return 0;
}

static int rd_string(rd *r, td_srv_bytes *out, size_t max)
{
    if (rd_bytes(r, out) < 0)
        return -1;
    if (out->len > max)
        return rd_fail(r, "string too long");
    if (!td_crdt_utf8_valid(out->ptr, out->len))
        return rd_fail(r, "string is not valid UTF-8");
    return 0;
}

static int rd_doc(rd *r, td_srv_bytes *out, int may_be_empty)
{
    if (rd_bytes(r, out) < 0)
        return -1;
    if (may_be_empty && out->len == 0)
        return 0;
    if (!td_srv_doc_id_valid(out->ptr, out->len)) {
        r->bad_doc = 1;
        return rd_fail(r, "invalid document id");
    }
    return 0;
}

/* ---- per-type field tables --------------------------------------------------- */

typedef enum fld {
    F_END = 0,
    F_DOC,      /* doc, 1..255 */
    F_DOC0,     /* doc, may be empty */
    F_VERSION,
    F_TOKEN,
    F_AGENT,
    F_VV,
    F_BATCH,    /* non-empty bytes */
    F_BATCH0,   /* bytes, may be empty */
    F_BATCH_ID, /* >= 1 */
    F_BATCH_ID0,
    F_STATE,
    F_SESSION,
    F_USER,
    F_RIGHTS,
    F_EXPIRES,
    F_MAX_FRAME,
    F_MAX_BATCH,
    F_MAX_PRESENCE,
    F_INTERVAL,
    F_TTL,
    F_CODE,
    F_MESSAGE,
    F_ITEMS_BATCH, /* count >= 1, then count x bytes */
    F_ITEMS_PEER   /* count >= 1, then count x (session, agent, user, state) */
} fld;

typedef struct msg_def {
    uint8_t type;
    fld f[12];
} msg_def;

static const msg_def defs[] = {
    {TD_SRV_MSG_HELLO, {F_VERSION, F_TOKEN, F_AGENT}},
    {TD_SRV_MSG_SUBSCRIBE, {F_DOC, F_VV}},
    {TD_SRV_MSG_UNSUBSCRIBE, {F_DOC}},
    {TD_SRV_MSG_UPDATE, {F_DOC, F_BATCH_ID, F_BATCH}},
    {TD_SRV_MSG_PRESENCE, {F_DOC, F_STATE}},
    {TD_SRV_MSG_WELCOME,
     {F_VERSION, F_SESSION, F_USER, F_RIGHTS, F_EXPIRES, F_MAX_FRAME, F_MAX_BATCH,
      F_MAX_PRESENCE, F_INTERVAL, F_TTL}},
    {TD_SRV_MSG_SYNC, {F_DOC, F_BATCH0, F_VV}},
    {TD_SRV_MSG_ACK, {F_DOC, F_BATCH_ID}},
    {TD_SRV_MSG_REMOTE, {F_DOC, F_ITEMS_BATCH}},
    {TD_SRV_MSG_PEERS, {F_DOC, F_ITEMS_PEER}},
    {TD_SRV_MSG_LEAVE, {F_DOC, F_SESSION}},
    {TD_SRV_MSG_ERROR, {F_CODE, F_DOC0, F_BATCH_ID0, F_MESSAGE}},
};

static const msg_def *find_def(uint8_t type)
{
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++)
        if (defs[i].type == type)
            return &defs[i];
    return NULL;
}

static int rd_peer(rd *r, td_srv_item *it)
{
    if (rd_varint(r, &it->session) < 0 || rd_varint(r, &it->agent) < 0 ||
        rd_string(r, &it->user, TD_SRV_DOC_MAX) < 0 || rd_bytes(r, &it->state) < 0)
        return -1;
    if (it->session == 0)
        return rd_fail(r, "session id 0");
    if (it->state.len == 0)
        return rd_fail(r, "empty presence state");
    return 0;
}

static int rd_items(rd *r, td_srv_msg *m, int peers)
{
    size_t start;
    if (rd_varint(r, &m->count) < 0)
        return -1;
    if (m->count == 0)
        return rd_fail(r, "empty list");
    start = r->pos;
    for (uint64_t i = 0; i < m->count; i++) {
        td_srv_item it;
        if (peers ? rd_peer(r, &it) < 0 : rd_bytes(r, &it.batch) < 0)
            return -1;
        if (!peers && it.batch.len == 0)
            return rd_fail(r, "empty batch");
    }
    m->items.ptr = r->p + start;
    m->items.len = r->pos - start;
    return 0;
}

static int rd_field(rd *r, fld f, td_srv_msg *m)
{
    switch (f) {
    case F_DOC: return rd_doc(r, &m->doc, 0);
    case F_DOC0: return rd_doc(r, &m->doc, 1);
    case F_VERSION: return rd_varint(r, &m->version);
    case F_TOKEN: return rd_string(r, &m->token, TD_SRV_TOKEN_MAX);
    case F_AGENT: return rd_varint(r, &m->agent);
    case F_VV: return rd_bytes(r, &m->vv);
    case F_BATCH:
        if (rd_bytes(r, &m->batch) < 0)
            return -1;
        return m->batch.len ? 0 : rd_fail(r, "empty batch");
    case F_BATCH0: return rd_bytes(r, &m->batch);
    case F_BATCH_ID:
        if (rd_varint(r, &m->batch_id) < 0)
            return -1;
        return m->batch_id ? 0 : rd_fail(r, "batch id 0");
    case F_BATCH_ID0: return rd_varint(r, &m->batch_id);
    case F_STATE: return rd_bytes(r, &m->state);
    case F_SESSION:
        if (rd_varint(r, &m->session) < 0)
            return -1;
        return m->session ? 0 : rd_fail(r, "session id 0");
    case F_USER: return rd_string(r, &m->user, TD_SRV_DOC_MAX);
    case F_RIGHTS: return rd_varint(r, &m->rights);
    case F_EXPIRES: return rd_varint(r, &m->expires);
    case F_MAX_FRAME: return rd_varint(r, &m->max_frame);
    case F_MAX_BATCH: return rd_varint(r, &m->max_batch);
    case F_MAX_PRESENCE: return rd_varint(r, &m->max_presence);
    case F_INTERVAL: return rd_varint(r, &m->presence_interval_ms);
    case F_TTL: return rd_varint(r, &m->presence_ttl_ms);
    case F_CODE: return rd_varint(r, &m->code);
    case F_MESSAGE: return rd_string(r, &m->message, TD_SRV_ERRMSG_MAX);
    case F_ITEMS_BATCH: return rd_items(r, m, 0);
    case F_ITEMS_PEER: return rd_items(r, m, 1);
    case F_END: break;
    }
    return 0;
}

td_srv_code td_srv_msg_decode(const uint8_t *buf, size_t len, td_srv_msg *out,
                              const char **why)
{
    rd r = {buf, len, 1, NULL, 0};
    const msg_def *d;

    memset(out, 0, sizeof *out);
    if (why)
        *why = "";
    if (len == 0) {
        if (why)
            *why = "empty message";
        return TD_SRV_E_BAD_MESSAGE;
    }
    d = find_def(buf[0]);
    if (!d) {
        if (why)
            *why = "unknown message type";
        return TD_SRV_E_UNKNOWN_TYPE;
    }
    out->type = (td_srv_msg_type)buf[0];
    for (size_t i = 0; i < sizeof d->f / sizeof d->f[0] && d->f[i] != F_END; i++)
        if (rd_field(&r, d->f[i], out) < 0)
            break;
    if (!r.why && r.pos != r.len)
        r.why = "trailing bytes after the message";
    if (r.why) {
        if (why)
            *why = r.why;
        td_srv_msg_type t = out->type;
        memset(out, 0, sizeof *out);
        out->type = t;
        return r.bad_doc ? TD_SRV_E_BAD_DOC_ID : TD_SRV_E_BAD_MESSAGE;
    }
    return TD_SRV_E_OK;
}

int td_srv_items_next(const td_srv_msg *msg, size_t *pos, td_srv_item *out)
{
    rd r = {msg->items.ptr, msg->items.len, *pos, NULL, 0};
    memset(out, 0, sizeof *out);
    if (r.pos >= r.len)
        return 0;
    if (msg->type == TD_SRV_MSG_PEERS ? rd_peer(&r, out) < 0 : rd_bytes(&r, &out->batch) < 0)
        return 0;
    *pos = r.pos;
    return 1;
}

/* ---- writer ------------------------------------------------------------------ */

void td_srv_wbuf_init(td_srv_wbuf *w, size_t head)
{
    memset(w, 0, sizeof *w);
    w->head = head;
}

void td_srv_wbuf_free(td_srv_wbuf *w)
{
    free(w->data);
    memset(w, 0, sizeof *w);
}

static int wb_reserve(td_srv_wbuf *w, size_t more)
{
    size_t need;
    if (w->oom)
        return -1;
    need = w->head + w->len + more;
    if (need < more) {
        w->oom = 1;
        return -1;
    }
    if (need > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64 + w->head;
        while (cap < need)
            cap *= 2;
        uint8_t *p = realloc(w->data, cap);
        if (!p) {
            w->oom = 1;
            return -1;
        }
        w->data = p;
        w->cap = cap;
    }
    return 0;
}

void td_srv_put_raw(td_srv_wbuf *w, const void *p, size_t len)
{
    if (!len || wb_reserve(w, len) < 0)
        return;
    memcpy(w->data + w->head + w->len, p, len);
    w->len += len;
}

void td_srv_put_u8(td_srv_wbuf *w, uint8_t v)
{
    td_srv_put_raw(w, &v, 1);
}

void td_srv_put_varint(td_srv_wbuf *w, uint64_t v)
{
    uint8_t b[TD_CRDT_VARINT_MAX];
    td_srv_put_raw(w, b, td_crdt_varint_put(b, v));
}

void td_srv_put_bytes(td_srv_wbuf *w, const void *p, size_t len)
{
    td_srv_put_varint(w, len);
    td_srv_put_raw(w, p, len);
}

static void put_b(td_srv_wbuf *w, td_srv_bytes b)
{
    td_srv_put_bytes(w, b.ptr, b.len);
}

void td_srv_item_put_batch(td_srv_wbuf *items, const uint8_t *batch, size_t len)
{
    td_srv_put_bytes(items, batch, len);
}

void td_srv_item_put_peer(td_srv_wbuf *items, uint64_t session, uint64_t agent,
                          const char *user, size_t user_len, const uint8_t *state,
                          size_t state_len)
{
    td_srv_put_varint(items, session);
    td_srv_put_varint(items, agent);
    td_srv_put_bytes(items, user, user_len);
    td_srv_put_bytes(items, state, state_len);
}

int td_srv_msg_encode(const td_srv_msg *m, td_srv_wbuf *w)
{
    const msg_def *d = find_def((uint8_t)m->type);
    if (!d)
        return -1;
    td_srv_put_u8(w, (uint8_t)m->type);
    for (size_t i = 0; i < sizeof d->f / sizeof d->f[0] && d->f[i] != F_END; i++) {
        switch (d->f[i]) {
        case F_DOC: case F_DOC0: put_b(w, m->doc); break;
        case F_VERSION: td_srv_put_varint(w, m->version); break;
        case F_TOKEN: put_b(w, m->token); break;
        case F_AGENT: td_srv_put_varint(w, m->agent); break;
        case F_VV: put_b(w, m->vv); break;
        case F_BATCH: case F_BATCH0: put_b(w, m->batch); break;
        case F_BATCH_ID: case F_BATCH_ID0: td_srv_put_varint(w, m->batch_id); break;
        case F_STATE: put_b(w, m->state); break;
        case F_SESSION: td_srv_put_varint(w, m->session); break;
        case F_USER: put_b(w, m->user); break;
        case F_RIGHTS: td_srv_put_varint(w, m->rights); break;
        case F_EXPIRES: td_srv_put_varint(w, m->expires); break;
        case F_MAX_FRAME: td_srv_put_varint(w, m->max_frame); break;
        case F_MAX_BATCH: td_srv_put_varint(w, m->max_batch); break;
        case F_MAX_PRESENCE: td_srv_put_varint(w, m->max_presence); break;
        case F_INTERVAL: td_srv_put_varint(w, m->presence_interval_ms); break;
        case F_TTL: td_srv_put_varint(w, m->presence_ttl_ms); break;
        case F_CODE: td_srv_put_varint(w, m->code); break;
        case F_MESSAGE: put_b(w, m->message); break;
        case F_ITEMS_BATCH: case F_ITEMS_PEER:
            td_srv_put_varint(w, m->count);
            td_srv_put_raw(w, m->items.ptr, m->items.len);
            break;
        case F_END: break;
        }
    }
    return w->oom ? -1 : 0;
}

/* ---- standalone readers (tandem_srv.h) ------------------------------------------- */

int td_srv_read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out)
{
    rd r = {p, len, *pos, NULL, 0};
    if (rd_varint(&r, out) < 0)
        return -1;
    *pos = r.pos;
    return 0;
}

int td_srv_read_bytes(const uint8_t *p, size_t len, size_t *pos, td_srv_bytes *out)
{
    rd r = {p, len, *pos, NULL, 0};
    if (rd_bytes(&r, out) < 0)
        return -1;
    *pos = r.pos;
    return 0;
}

/* ---- deflated messages (protocol version 2) ------------------------------------------ */

td_srv_code td_srv_msg_inflate(const uint8_t *msg, size_t len, uint64_t max_body,
                               uint8_t **out, size_t *out_len, const char **why)
{
    size_t pos = 1;
    uint64_t size;
    uint8_t *buf;
    z_stream z;
    int zr;
    const char *dummy;

    if (!why)
        why = &dummy;
    *why = "";
    *out = NULL;
    *out_len = 0;
    if (len == 0 || !(msg[0] & TD_SRV_FLAG_DEFLATE))
        return TD_SRV_E_OK;
    if (td_srv_read_varint(msg, len, &pos, &size) < 0) {
        *why = "deflated message: malformed inflated size";
        return TD_SRV_E_BAD_MESSAGE;
    }
    /* The declared size is checked against the limit before anything is
     * allocated: a bomb costs nothing but this comparison. */
    if (size > max_body || size > SIZE_MAX - 2) {
        *why = "deflated message: inflated size above the frame limit";
        return TD_SRV_E_TOO_LARGE;
    }
    if (pos == len) {
        *why = "deflated message: no deflate stream";
        return TD_SRV_E_BAD_MESSAGE;
    }
    /* One byte of room past the declared size, so that a stream inflating
     * to more than it says is caught without ever writing past the buffer. */
    buf = malloc((size_t)size + 2);
    if (!buf) {
        *why = "out of memory";
        return TD_SRV_E_INTERNAL;
    }
    buf[0] = (uint8_t)(msg[0] & ~TD_SRV_FLAG_DEFLATE);
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -15) != Z_OK) {
        free(buf);
        *why = "out of memory";
        return TD_SRV_E_INTERNAL;
    }
    z.next_in = (Bytef *)(uintptr_t)(msg + pos);
    z.avail_in = (uInt)((len - pos) > UINT32_MAX ? UINT32_MAX : len - pos);
    z.next_out = buf + 1;
    z.avail_out = (uInt)(size + 1);
    zr = inflate(&z, Z_FINISH);
    if (zr == Z_MEM_ERROR) {
        *why = "out of memory";
    } else if (zr != Z_STREAM_END) {
        *why = z.avail_out == 0 ? "deflated message: inflates to more than its declared size"
                                : "deflated message: corrupt or truncated deflate stream";
    } else if (z.total_out != size) {
        *why = z.total_out < size ? "deflated message: inflates to less than its declared size"
                                  : "deflated message: inflates to more than its declared size";
    } else if (z.avail_in != 0 || (len - pos) > UINT32_MAX) {
        *why = "deflated message: trailing bytes after the deflate stream";
    } else {
        inflateEnd(&z);
        *out = buf;
        *out_len = (size_t)size + 1;
        return TD_SRV_E_OK;
    }
    inflateEnd(&z);
    free(buf);
    return zr == Z_MEM_ERROR ? TD_SRV_E_INTERNAL : TD_SRV_E_BAD_MESSAGE;
}

int td_srv_msg_deflate(const uint8_t *msg, size_t len, td_srv_wbuf *w)
{
    uint8_t head[1 + TD_CRDT_VARINT_MAX];
    size_t hlen, room;
    uint8_t *tmp;
    z_stream z;
    int zr;

    if (len < TD_SRV_DEFLATE_MIN || len > UINT32_MAX || (msg[0] & TD_SRV_FLAG_DEFLATE))
        return 0;
    head[0] = (uint8_t)(msg[0] | TD_SRV_FLAG_DEFLATE);
    hlen = 1 + td_crdt_varint_put(head + 1, len - 1);
    /* Only if shorter: the stream gets the room that would make it so, and
     * a stream that does not fit is not worth sending. */
    room = len - hlen - 1;
    tmp = malloc(room);
    if (!tmp)
        return -1;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(tmp);
        return -1;
    }
    z.next_in = (Bytef *)(uintptr_t)(msg + 1);
    z.avail_in = (uInt)(len - 1);
    z.next_out = tmp;
    z.avail_out = (uInt)room;
    zr = deflate(&z, Z_FINISH);
    if (zr == Z_STREAM_END) {
        td_srv_put_raw(w, head, hlen);
        td_srv_put_raw(w, tmp, z.total_out);
    }
    deflateEnd(&z);
    free(tmp);
    if (zr == Z_STREAM_END)
        return w->oom ? -1 : 1;
    return zr == Z_MEM_ERROR || zr == Z_STREAM_ERROR ? -1 : 0;
}
