/*
 * store_codec.h -- private: how the store lays out keys and values.
 *
 * Keys
 *   log  : u8 id length | id | u64 big-endian server sequence
 *   snap : id
 *   meta : id
 *   owner: u8 id length | id | u64 big-endian agent id (the log keys'
 *          layout: td_store_log_key / _log_key_parse / _log_prefix serve
 *          both families)
 *   default: "tandem-format" -> ASCII decimal format version
 * The length byte in front of log keys makes one document's log exactly the
 * keys starting with (length, id): no id can be a prefix of another's range.
 *
 * Values (all start with a format byte and end with a BLAKE2b digest that
 * also covers the document id, so a value copied under another document's
 * key does not validate either)
 *   log  : 0x01 | varint nops | batch bytes | BLAKE2b-128
 *   meta : 0x01 | varint last_seq, snap_seq, log_ops, log_bytes, snap_ops,
 *          snap_bytes, vv_len | vv bytes | BLAKE2b-128   (a tandem document)
 *          0x02 | u8 kind | the same fields and digest     (any other kind;
 *          tandem documents keep 0x01, so older stores read unchanged)
 *          0x03 | u8 kind | varint stream_seq | the same fields and digest
 *          (either kind, once a cluster node recorded how far it stored
 *          the document's JetStream subject; only such stores use it)
 *   snap : 0x01 | u64 BE covered seq | BLAKE2b-256 | snapshot bytes
 *          (the digest covers id, format byte, seq and the snapshot bytes)
 *   owner: 0x01 | owner name (1..255 bytes of UTF-8) | BLAKE2b-128
 *          (the digest covers id, the agent as u64 BE, format byte and name,
 *          so a record copied under another agent does not validate)
 */
#ifndef TD_STORE_CODEC_H
#define TD_STORE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "tandem_store.h"

#define TD_STORE_FORMAT_VERSION 1
#define TD_STORE_FORMAT_KEY "tandem-format"

#define TD_STORE_VALUE_V1 0x01
#define TD_STORE_META_KIND 0x02 /* meta value with a kind byte */
#define TD_STORE_META_STREAM 0x03 /* ... and a stream sequence */
#define TD_STORE_LOG_DIGEST 16
#define TD_STORE_META_DIGEST 16
#define TD_STORE_SNAP_DIGEST 32
#define TD_STORE_SNAP_HEADER (1 + 8 + TD_STORE_SNAP_DIGEST)
#define TD_STORE_OWNER_DIGEST 16
#define TD_STORE_OWNER_VALUE_MAX (1 + TD_STORE_OWNER_MAX + TD_STORE_OWNER_DIGEST)
#define TD_STORE_MAX_BATCH ((size_t)64 << 20)
#define TD_STORE_LOG_KEY_MAX (1 + TD_STORE_DOC_ID_MAX + 8)
/* Highest sequence ever assigned; keeps an exclusive upper bound possible. */
#define TD_STORE_SEQ_MAX (UINT64_MAX - 1)

/* The per-document metadata record. vv is owned by whoever filled it. */
typedef struct td_store_meta {
    uint64_t last_seq;
    uint64_t snap_seq;
    uint64_t log_ops;
    uint64_t log_bytes;
    uint64_t snap_ops;
    uint64_t snap_bytes;
    const uint8_t *vv;
    size_t vv_len;
    td_store_kind kind;
    uint64_t stream_seq; /* td_store_batch.stream_seq; 0: none */
} td_store_meta;

/* Log keys. out must hold TD_STORE_LOG_KEY_MAX bytes; returns the length. */
size_t td_store_log_key(uint8_t *out, const char *doc, size_t doc_len,
                        uint64_t seq);
size_t td_store_log_prefix(uint8_t *out, const char *doc, size_t doc_len);
/* Splits a log key; returns 0 if it is not well formed. */
int td_store_log_key_parse(const uint8_t *key, size_t len, const char **doc,
                           size_t *doc_len, uint64_t *seq);

/* The first key after every key that starts with (length, id): the prefix
 * with its last byte raised by one (an id's bytes are UTF-8, never 0xff).
 * out must hold 1 + TD_STORE_DOC_ID_MAX bytes; returns the length. */
size_t td_store_prefix_end(uint8_t *out, const char *doc, size_t doc_len);

/* Log values. Encoded size for a payload of ops_len bytes and nops ops. */
size_t td_store_log_value_size(size_t ops_len, uint64_t nops);
void td_store_log_value_encode(uint8_t *out, size_t out_len, const char *doc,
                               size_t doc_len, const uint8_t *ops,
                               size_t ops_len, uint64_t nops);
/* Validates a log value read back; on success *ops points into val. On
 * failure returns 0 and *why says what was wrong. */
int td_store_log_value_decode(const uint8_t *val, size_t len, const char *doc,
                              size_t doc_len, const uint8_t **ops,
                              size_t *ops_len, uint64_t *nops,
                              const char **why);

/* Meta values: encode into a malloc'ed buffer (NULL on OOM). */
uint8_t *td_store_meta_encode(const td_store_meta *m, const char *doc,
                              size_t doc_len, size_t *len);
/* m->vv points into val. */
int td_store_meta_decode(const uint8_t *val, size_t len, const char *doc,
                         size_t doc_len, td_store_meta *m, const char **why);

/* Snapshot values: encode into a malloc'ed buffer (NULL on OOM). */
uint8_t *td_store_snap_encode(const uint8_t *snap, size_t snap_len,
                              uint64_t seq, const char *doc, size_t doc_len,
                              size_t *len);
int td_store_snap_decode(const uint8_t *val, size_t len, const char *doc,
                         size_t doc_len, const uint8_t **snap,
                         size_t *snap_len, uint64_t *seq, const char **why);

/* Owner names: 1..255 bytes of valid UTF-8. Returns 1 if valid. */
int td_store_owner_valid(const char *owner, size_t len);
/* Owner values: encoded size for a name of owner_len bytes; encode into out
 * (that many bytes); decode validates and points *owner into val. */
size_t td_store_owner_value_size(size_t owner_len);
void td_store_owner_value_encode(uint8_t *out, const char *doc, size_t doc_len,
                                 uint64_t agent, const char *owner,
                                 size_t owner_len);
int td_store_owner_value_decode(const uint8_t *val, size_t len, const char *doc,
                                size_t doc_len, uint64_t agent,
                                const char **owner, size_t *owner_len,
                                const char **why);

/* Writes the id printably into buf (non-printable bytes as \xNN, quotes and
 * backslashes escaped, long ids shortened); returns buf. */
const char *td_store_fmt_id(char *buf, size_t cap, const char *id, size_t len);
#define TD_STORE_FMT_ID_CAP 300

#endif /* TD_STORE_CODEC_H */
