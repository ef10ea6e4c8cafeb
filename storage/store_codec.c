/*
 * store_codec.c -- keys, value formats and their validation.
 *
 * Everything here is pure: no RocksDB, no threads. Values read back from the
 * disk are treated like network input: lengths are checked before they are
 * used, varints must be minimal and in range, and a digest over the document
 * id plus the value catches truncation, bit flips and values that were
 * copied from another document. The layouts are described in store_codec.h.
 */
#include "store_codec.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- document ids ------------------------------------------------------- */

/* Ids are names people type and read (CLI, URLs, token patterns), so they
 * are valid UTF-8 without control characters; the store itself would cope
 * with any bytes. In valid UTF-8 a byte below 0x80 is always an ASCII
 * character, so looking at single bytes finds every control character. */
int td_store_doc_id_valid(const char *id, size_t len)
{
    const uint8_t *p = (const uint8_t *)id;

    if (id == NULL || len == 0 || len > TD_STORE_DOC_ID_MAX ||
        !td_crdt_utf8_valid(p, len))
        return 0;
    for (size_t i = 0; i < len; i++)
        if (p[i] < 0x20 || p[i] == 0x7f)
            return 0;
    return 1;
}

const char *td_store_fmt_id(char *buf, size_t cap, const char *id, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (cap < 8) {
        if (cap)
            buf[0] = '\0';
        return buf;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (o + 8 >= cap) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c == '\'' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o] = '\0';
    return buf;
}

/* ---- integers ----------------------------------------------------------
 * Varints are the core's (td_crdt_varint_*): minimal LEB128, one value one
 * encoding. Sequences in keys are big-endian so that byte order is numeric
 * order and one document's log is one ordered range. */

static size_t varint_size(uint64_t v)
{
    uint8_t scratch[TD_CRDT_VARINT_MAX];
    return td_crdt_varint_put(scratch, v);
}

static void be64_put(uint8_t *out, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* ---- digests ------------------------------------------------------------ */

/* BLAKE2b over (id length, id, data) so that a value only validates under
 * the document it was written for. */
static void digest(uint8_t *out, size_t outlen, const char *doc,
                   size_t doc_len, const uint8_t *a, size_t alen,
                   const uint8_t *b, size_t blen)
{
    crypto_generichash_state st;
    uint8_t l = (uint8_t)doc_len;

    crypto_generichash_init(&st, NULL, 0, outlen);
    crypto_generichash_update(&st, &l, 1);
    crypto_generichash_update(&st, (const uint8_t *)doc, doc_len);
    crypto_generichash_update(&st, a, alen);
    if (blen)
        crypto_generichash_update(&st, b, blen);
    crypto_generichash_final(&st, out, outlen);
}

static int digest_ok(const uint8_t *want, size_t outlen, const char *doc,
                     size_t doc_len, const uint8_t *a, size_t alen,
                     const uint8_t *b, size_t blen)
{
    uint8_t got[crypto_generichash_BYTES_MAX];
    digest(got, outlen, doc, doc_len, a, alen, b, blen);
    return sodium_memcmp(got, want, outlen) == 0;
}

/* ---- log keys ----------------------------------------------------------- */

size_t td_store_log_prefix(uint8_t *out, const char *doc, size_t doc_len)
{
    out[0] = (uint8_t)doc_len;
    memcpy(out + 1, doc, doc_len);
    return 1 + doc_len;
}

size_t td_store_log_key(uint8_t *out, const char *doc, size_t doc_len,
                        uint64_t seq)
{
    size_t n = td_store_log_prefix(out, doc, doc_len);
    be64_put(out + n, seq);
    return n + 8;
}

size_t td_store_prefix_end(uint8_t *out, const char *doc, size_t doc_len)
{
    size_t n = td_store_log_prefix(out, doc, doc_len);
    out[n - 1]++;
    return n;
}

int td_store_log_key_parse(const uint8_t *key, size_t len, const char **doc,
                           size_t *doc_len, uint64_t *seq)
{
    if (len < 1 + 1 + 8 || key[0] == 0 || (size_t)key[0] + 9 != len)
        return 0;
    *doc = (const char *)key + 1;
    *doc_len = key[0];
    *seq = be64_get(key + 1 + key[0]);
    return 1;
}

/* ---- log values --------------------------------------------------------- */

size_t td_store_log_value_size(size_t ops_len, uint64_t nops)
{
    return 1 + varint_size(nops) + ops_len + TD_STORE_LOG_DIGEST;
}

void td_store_log_value_encode(uint8_t *out, size_t out_len, const char *doc,
                               size_t doc_len, const uint8_t *ops,
                               size_t ops_len, uint64_t nops)
{
    size_t n = 0;
    out[n++] = TD_STORE_VALUE_V1;
    n += td_crdt_varint_put(out + n, nops);
    memcpy(out + n, ops, ops_len);
    n += ops_len;
    digest(out + n, TD_STORE_LOG_DIGEST, doc, doc_len, out, n, NULL, 0);
    (void)out_len;
}

int td_store_log_value_decode(const uint8_t *val, size_t len, const char *doc,
                              size_t doc_len, const uint8_t **ops,
                              size_t *ops_len, uint64_t *nops,
                              const char **why)
{
    size_t pos = 1;
    if (len < 1 + 1 + 1 + TD_STORE_LOG_DIGEST) {
        *why = "log value too short";
        return 0;
    }
    if (val[0] != TD_STORE_VALUE_V1) {
        *why = "unknown log value format";
        return 0;
    }
    if (!digest_ok(val + len - TD_STORE_LOG_DIGEST, TD_STORE_LOG_DIGEST, doc,
                   doc_len, val, len - TD_STORE_LOG_DIGEST, NULL, 0)) {
        *why = "log value checksum mismatch";
        return 0;
    }
    /* The batch must keep at least one byte after the op count. */
    if (td_crdt_varint_get(val, len - TD_STORE_LOG_DIGEST, &pos, nops) != TD_CRDT_OK ||
        pos >= len - TD_STORE_LOG_DIGEST) {
        *why = "log value header malformed";
        return 0;
    }
    *ops = val + pos;
    *ops_len = len - TD_STORE_LOG_DIGEST - pos;
    return 1;
}

/* ---- meta values -------------------------------------------------------- */

uint8_t *td_store_meta_encode(const td_store_meta *m, const char *doc,
                              size_t doc_len, size_t *len)
{
    uint64_t f[7] = {m->last_seq, m->snap_seq, m->log_ops, m->log_bytes,
                     m->snap_ops, m->snap_bytes, m->vv_len};
    size_t cap = 2 + 8 * TD_CRDT_VARINT_MAX + m->vv_len + TD_STORE_META_DIGEST, n = 0;
    uint8_t *out = malloc(cap);

    if (out == NULL)
        return NULL;
    /* The oldest format that holds m: stores outside a cluster stay
     * readable by older binaries. */
    if (m->stream_seq) {
        out[n++] = TD_STORE_META_STREAM;
        out[n++] = (uint8_t)m->kind;
        n += td_crdt_varint_put(out + n, m->stream_seq);
    } else if (m->kind == TD_STORE_KIND_TANDEM) {
        out[n++] = TD_STORE_VALUE_V1;
    } else {
        out[n++] = TD_STORE_META_KIND;
        out[n++] = (uint8_t)m->kind;
    }
    for (size_t i = 0; i < 7; i++)
        n += td_crdt_varint_put(out + n, f[i]);
    if (m->vv_len)
        memcpy(out + n, m->vv, m->vv_len);
    n += m->vv_len;
    digest(out + n, TD_STORE_META_DIGEST, doc, doc_len, out, n, NULL, 0);
    *len = n + TD_STORE_META_DIGEST;
    return out;
}

int td_store_meta_decode(const uint8_t *val, size_t len, const char *doc,
                         size_t doc_len, td_store_meta *m, const char **why)
{
    uint64_t f[7], stream_seq = 0;
    size_t n = 1, body;
    td_store_kind kind = TD_STORE_KIND_TANDEM;

    if (len < 1 + 7 + TD_STORE_META_DIGEST) {
        *why = "metadata value too short";
        return 0;
    }
    if (val[0] == TD_STORE_META_KIND || val[0] == TD_STORE_META_STREAM) {
        if (val[1] >= TD_STORE_KIND_COUNT ||
            (val[0] == TD_STORE_META_KIND && val[1] == TD_STORE_KIND_TANDEM)) {
            *why = "unknown document kind in metadata";
            return 0;
        }
        kind = (td_store_kind)val[1];
        n = 2;
    } else if (val[0] != TD_STORE_VALUE_V1) {
        *why = "unknown metadata format";
        return 0;
    }
    body = len - TD_STORE_META_DIGEST;
    if (!digest_ok(val + body, TD_STORE_META_DIGEST, doc, doc_len, val, body,
                   NULL, 0)) {
        *why = "metadata checksum mismatch";
        return 0;
    }
    if (val[0] == TD_STORE_META_STREAM &&
        (td_crdt_varint_get(val, body, &n, &stream_seq) != TD_CRDT_OK || !stream_seq)) {
        *why = "metadata stream sequence malformed";
        return 0;
    }
    for (size_t i = 0; i < 7; i++) {
        if (td_crdt_varint_get(val, body, &n, &f[i]) != TD_CRDT_OK) {
            *why = "metadata field malformed";
            return 0;
        }
    }
    if (f[6] != body - n) {
        *why = "metadata version vector length mismatch";
        return 0;
    }
    m->last_seq = f[0];
    m->snap_seq = f[1];
    m->log_ops = f[2];
    m->log_bytes = f[3];
    m->snap_ops = f[4];
    m->snap_bytes = f[5];
    m->vv = f[6] ? val + n : NULL;
    m->vv_len = (size_t)f[6];
    m->kind = kind;
    m->stream_seq = stream_seq;
    /* Cross-field invariants the writer always keeps. */
    if (m->snap_seq > m->last_seq || m->last_seq > TD_STORE_SEQ_MAX ||
        (m->last_seq == m->snap_seq && (m->log_ops || m->log_bytes)) ||
        (m->last_seq > m->snap_seq && m->log_bytes < m->last_seq - m->snap_seq) ||
        ((m->snap_seq == 0) != (m->snap_bytes == 0))) {
        *why = "metadata fields inconsistent";
        return 0;
    }
    return 1;
}

/* ---- owner values ------------------------------------------------------- */

int td_store_owner_valid(const char *owner, size_t len)
{
    return owner != NULL && len >= 1 && len <= TD_STORE_OWNER_MAX &&
           td_crdt_utf8_valid((const uint8_t *)owner, len);
}

size_t td_store_owner_value_size(size_t owner_len)
{
    return 1 + owner_len + TD_STORE_OWNER_DIGEST;
}

void td_store_owner_value_encode(uint8_t *out, const char *doc, size_t doc_len,
                                 uint64_t agent, const char *owner,
                                 size_t owner_len)
{
    uint8_t a[8];
    be64_put(a, agent);
    out[0] = TD_STORE_VALUE_V1;
    memcpy(out + 1, owner, owner_len);
    digest(out + 1 + owner_len, TD_STORE_OWNER_DIGEST, doc, doc_len, a, sizeof a,
           out, 1 + owner_len);
}

int td_store_owner_value_decode(const uint8_t *val, size_t len, const char *doc,
                                size_t doc_len, uint64_t agent,
                                const char **owner, size_t *owner_len,
                                const char **why)
{
    uint8_t a[8];
    size_t body;

    if (len < td_store_owner_value_size(1)) {
        *why = "owner value too short";
        return 0;
    }
    if (len > TD_STORE_OWNER_VALUE_MAX) {
        *why = "owner value too long";
        return 0;
    }
    if (val[0] != TD_STORE_VALUE_V1) {
        *why = "unknown owner value format";
        return 0;
    }
    body = len - TD_STORE_OWNER_DIGEST;
    be64_put(a, agent);
    if (!digest_ok(val + body, TD_STORE_OWNER_DIGEST, doc, doc_len, a, sizeof a,
                   val, body)) {
        *why = "owner value checksum mismatch";
        return 0;
    }
    if (!td_store_owner_valid((const char *)val + 1, body - 1)) {
        *why = "owner name is not valid UTF-8";
        return 0;
    }
    *owner = (const char *)val + 1;
    *owner_len = body - 1;
    return 1;
}

/* ---- snapshot values ---------------------------------------------------- */

uint8_t *td_store_snap_encode(const uint8_t *snap, size_t snap_len,
                              uint64_t seq, const char *doc, size_t doc_len,
                              size_t *len)
{
    uint8_t *out = malloc(TD_STORE_SNAP_HEADER + snap_len);
    if (out == NULL)
        return NULL;
    out[0] = TD_STORE_VALUE_V1;
    be64_put(out + 1, seq);
    memcpy(out + TD_STORE_SNAP_HEADER, snap, snap_len);
    digest(out + 9, TD_STORE_SNAP_DIGEST, doc, doc_len, out, 9, snap, snap_len);
    *len = TD_STORE_SNAP_HEADER + snap_len;
    return out;
}

int td_store_snap_decode(const uint8_t *val, size_t len, const char *doc,
                         size_t doc_len, const uint8_t **snap,
                         size_t *snap_len, uint64_t *seq, const char **why)
{
    if (len <= TD_STORE_SNAP_HEADER) {
        *why = "snapshot value too short";
        return 0;
    }
    if (val[0] != TD_STORE_VALUE_V1) {
        *why = "unknown snapshot format";
        return 0;
    }
    if (!digest_ok(val + 9, TD_STORE_SNAP_DIGEST, doc, doc_len, val, 9,
                   val + TD_STORE_SNAP_HEADER, len - TD_STORE_SNAP_HEADER)) {
        *why = "snapshot checksum mismatch";
        return 0;
    }
    *seq = be64_get(val + 1);
    *snap = val + TD_STORE_SNAP_HEADER;
    *snap_len = len - TD_STORE_SNAP_HEADER;
    return 1;
}
