/*
 * tandem_srv.h -- the public API of tandem's server layer.
 *
 * Three things live behind this header:
 *   - the verbs `tandem serve`, `tandem keygen` and `tandem token`, as run
 *     functions taking (argc, argv) with argv[0] the verb name;
 *   - the wire-protocol codec of docs/PROTOCOL.md: pure functions that turn
 *     a WebSocket message into a td_srv_msg (validating every byte) and back,
 *     used by the server, its tests, the fuzz target and C clients;
 *   - token minting and verification (Ed25519 via libsodium), for the CLI
 *     and for tests.
 * Everything the event loop keeps (sessions, documents, presence) is private
 * to server/srv_*.c.
 */
#ifndef TANDEM_SRV_H
#define TANDEM_SRV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- verbs ---------------------------------------------------------------- */

/* Exit status: 0 success, 1 failure, 2 usage error. */
int td_srv_cmd_serve(int argc, char **argv);
int td_srv_cmd_keygen(int argc, char **argv);
int td_srv_cmd_token(int argc, char **argv);

/* ---- wire protocol (docs/PROTOCOL.md) ------------------------------------- */

/* The newest version the codec speaks, and the oldest the server still
 * accepts. Version 2 adds deflated messages (PROTOCOL.md section 3.9);
 * a version 1 connection is unchanged, byte for byte. */
#define TD_SRV_PROTOCOL_VERSION 2
#define TD_SRV_PROTOCOL_MIN 1
#define TD_SRV_DOC_MAX 255
#define TD_SRV_TOKEN_MAX 2048
#define TD_SRV_ERRMSG_MAX 1024

typedef enum td_srv_msg_type {
    /* client -> server */
    TD_SRV_MSG_HELLO = 0x01,
    TD_SRV_MSG_SUBSCRIBE = 0x02,
    TD_SRV_MSG_UNSUBSCRIBE = 0x03,
    TD_SRV_MSG_UPDATE = 0x04,
    TD_SRV_MSG_PRESENCE = 0x05,
    /* server -> client */
    TD_SRV_MSG_WELCOME = 0x81,
    TD_SRV_MSG_SYNC = 0x82,
    TD_SRV_MSG_ACK = 0x83,
    TD_SRV_MSG_REMOTE = 0x84,
    TD_SRV_MSG_PEERS = 0x85, /* PRESENCE, server -> client */
    TD_SRV_MSG_LEAVE = 0x86,
    TD_SRV_MSG_ERROR = 0x87
} td_srv_msg_type;

/* Error codes carried by ERROR (table 6 of PROTOCOL.md). */
typedef enum td_srv_code {
    TD_SRV_E_OK = 0,
    TD_SRV_E_BAD_MESSAGE = 1,
    TD_SRV_E_UNKNOWN_TYPE = 2,
    TD_SRV_E_BAD_VERSION = 3,
    TD_SRV_E_HELLO_REQUIRED = 4,
    TD_SRV_E_BAD_DOC_ID = 5,
    TD_SRV_E_AUTH_REQUIRED = 6,
    TD_SRV_E_TOKEN_INVALID = 7,
    TD_SRV_E_TOKEN_EXPIRED = 8,
    TD_SRV_E_FORBIDDEN = 9,
    TD_SRV_E_READ_ONLY = 10,
    TD_SRV_E_NOT_SUBSCRIBED = 11,
    TD_SRV_E_INVALID_BATCH = 12,
    TD_SRV_E_TOO_LARGE = 13,
    TD_SRV_E_LIMIT = 14,
    TD_SRV_E_DOC_UNAVAILABLE = 15,
    TD_SRV_E_STORE_FAILED = 16,
    TD_SRV_E_BUSY = 17,
    TD_SRV_E_INTERNAL = 18,
    TD_SRV_E_SHUTTING_DOWN = 19,
    TD_SRV_E_AGENT_TAKEN = 20,
    TD_SRV_E_MISSING_OPS = 21,
    TD_SRV_E_WRONG_KIND = 22, /* the document is of another model than the protocol's */
    TD_SRV_E_UNAVAILABLE = 23 /* cluster mode: the broker did not take the batch; retry */
} td_srv_code;
#define TD_SRV_E_COUNT 24

/* Static name of a code ("bad_message", ...); "unknown" past the table. */
const char *td_srv_code_name(uint64_t code);

typedef struct td_srv_bytes {
    const uint8_t *ptr; /* points into the decoded message */
    size_t len;
} td_srv_bytes;

/* A decoded message. Which fields are set depends on the type (see
 * PROTOCOL.md section 3); the others are zero. For REMOTE and PRESENCE
 * (server -> client), `count` entries follow in `items`; walk them with
 * td_srv_items_next(). */
typedef struct td_srv_msg {
    td_srv_msg_type type;
    td_srv_bytes doc;
    uint64_t version;  /* HELLO, WELCOME */
    uint64_t agent;    /* HELLO */
    td_srv_bytes token;   /* HELLO */
    td_srv_bytes vv;      /* SUBSCRIBE, SYNC */
    td_srv_bytes batch;   /* UPDATE, SYNC */
    uint64_t batch_id;    /* UPDATE, ACK, ERROR */
    td_srv_bytes state;   /* PRESENCE (client) */
    uint64_t session;     /* WELCOME, LEAVE */
    td_srv_bytes user;    /* WELCOME */
    uint64_t rights, expires, max_frame, max_batch, max_presence,
        presence_interval_ms, presence_ttl_ms; /* WELCOME */
    uint64_t code;        /* ERROR */
    td_srv_bytes message; /* ERROR */
    uint64_t count;       /* REMOTE, PRESENCE (server) */
    td_srv_bytes items;   /* the encoded entries */
} td_srv_msg;

/* Decodes one whole message. Returns TD_SRV_E_OK, or TD_SRV_E_BAD_MESSAGE,
 * TD_SRV_E_UNKNOWN_TYPE or TD_SRV_E_BAD_DOC_ID with *why (if not NULL) a
 * static explanation. Never reads outside [buf, buf+len). */
td_srv_code td_srv_msg_decode(const uint8_t *buf, size_t len, td_srv_msg *out,
                              const char **why);

/* One entry of REMOTE (batch only) or PRESENCE (all four fields). */
typedef struct td_srv_item {
    td_srv_bytes batch; /* REMOTE */
    uint64_t session, agent; /* PRESENCE */
    td_srv_bytes user, state;
} td_srv_item;
/* Walks msg->items of a decoded message: *pos starts at 0. Returns 1 with
 * the next entry, 0 at the end. */
int td_srv_items_next(const td_srv_msg *msg, size_t *pos, td_srv_item *out);

/* A growable output buffer. `head` bytes are reserved in front of the
 * message (libwebsockets needs LWS_PRE). On allocation failure `oom` is set
 * and later writes do nothing. */
typedef struct td_srv_wbuf {
    uint8_t *data;
    size_t head, len, cap; /* len counts bytes after head */
    int oom;
} td_srv_wbuf;

void td_srv_wbuf_init(td_srv_wbuf *w, size_t head);
void td_srv_wbuf_free(td_srv_wbuf *w);
void td_srv_put_u8(td_srv_wbuf *w, uint8_t v);
void td_srv_put_varint(td_srv_wbuf *w, uint64_t v);
void td_srv_put_bytes(td_srv_wbuf *w, const void *p, size_t len);
void td_srv_put_raw(td_srv_wbuf *w, const void *p, size_t len);
/* The message bytes (after head). */
static inline uint8_t *td_srv_wbuf_msg(const td_srv_wbuf *w) { return w->data + w->head; }

/* Readers matching td_srv_put_varint and td_srv_put_bytes: each returns 0
 * and advances *pos, or -1 (truncated, malformed) leaving it alone. */
int td_srv_read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out);
int td_srv_read_bytes(const uint8_t *p, size_t len, size_t *pos, td_srv_bytes *out);

/* Appends the encoding of msg (any type; for REMOTE and PRESENCE `count`
 * and the already encoded `items`). Returns 0, or -1 on allocation failure. */
int td_srv_msg_encode(const td_srv_msg *msg, td_srv_wbuf *w);
/* Encodes one REMOTE / PRESENCE entry into an items buffer. */
void td_srv_item_put_batch(td_srv_wbuf *items, const uint8_t *batch, size_t len);
void td_srv_item_put_peer(td_srv_wbuf *items, uint64_t session, uint64_t agent,
                          const char *user, size_t user_len, const uint8_t *state,
                          size_t state_len);

/* ---- deflated messages (protocol version 2, PROTOCOL.md section 3.9) ---- */

/* Set in the type byte: the body (everything after it) is a varint, the
 * size of the inflated body, then a raw deflate stream (RFC 1951). */
#define TD_SRV_FLAG_DEFLATE 0x40
/* Messages shorter than this are sent as they are. */
#define TD_SRV_DEFLATE_MIN 1024

/* If msg (len bytes, len >= 1) carries TD_SRV_FLAG_DEFLATE, inflates it
 * into a malloc'd *out (the type byte without the flag, then the body;
 * *out_len bytes) and returns TD_SRV_E_OK. A message without the flag
 * gives TD_SRV_E_OK with *out NULL. Errors, with *why (if not NULL) a
 * static explanation: TD_SRV_E_TOO_LARGE when the declared inflated body
 * is above max_body (nothing is inflated), TD_SRV_E_BAD_MESSAGE for a
 * corrupt stream, a size that does not match, bytes after the stream,
 * TD_SRV_E_INTERNAL when out of memory. Never writes more than the
 * declared size, and that only if it is within max_body. */
td_srv_code td_srv_msg_inflate(const uint8_t *msg, size_t len, uint64_t max_body,
                               uint8_t **out, size_t *out_len, const char **why);
/* Appends msg (len bytes: an encoded message, type byte first) to w
 * deflated (level 1) if it is at least TD_SRV_DEFLATE_MIN bytes and
 * deflating makes it shorter: returns 1. Returns 0, having written
 * nothing, if it is not worth it, -1 when out of memory. */
int td_srv_msg_deflate(const uint8_t *msg, size_t len, td_srv_wbuf *w);

/* 1 if a document id is valid: 1..255 bytes of UTF-8, no control chars. */
int td_srv_doc_id_valid(const uint8_t *p, size_t len);

/* ---- tokens (PROTOCOL.md section 8) --------------------------------------- */

enum { TD_SRV_RIGHT_READ = 1, TD_SRV_RIGHT_WRITE = 2, TD_SRV_RIGHT_PRESENCE = 4 };

typedef struct td_srv_token {
    uint64_t rights;
    uint64_t expires; /* unix seconds */
    char user[TD_SRV_DOC_MAX + 1];
    size_t user_len;
    char pattern[TD_SRV_DOC_MAX + 1];
    size_t pattern_len;
} td_srv_token;

/* Signs a token with a 64-byte Ed25519 secret key; *out is malloc'd,
 * NUL-terminated base64url. Returns 0 or -1 (bad field, no memory). */
int td_srv_token_mint(const td_srv_token *t, const uint8_t sk[64], char **out);
/* The same fields as a standard token: a JWT signed with EdDSA (RFC 8037),
 * header {"alg":"EdDSA","typ":"JWT"}, claims sub (user), doc (pattern),
 * rights (letters r, w, p) and exp (PROTOCOL.md section 8). Rights outside
 * r/w/p or none at all are refused. *out is malloc'd, NUL-terminated.
 * Returns 0 or -1 (bad field, no memory). */
int td_srv_token_mint_jwt(const td_srv_token *t, const uint8_t sk[64], char **out);
/* Verifies a token -- tandem's own or a standard one (a JWT, told apart by
 * its dots) -- against a 32-byte public key at time `now` (unix s).
 * Returns TD_SRV_E_OK, _TOKEN_INVALID (malformed or forged) or
 * _TOKEN_EXPIRED (valid signature, expired; *out is filled anyway). */
td_srv_code td_srv_token_verify(const char *tok, size_t len, const uint8_t pk[32],
                                uint64_t now, td_srv_token *out);
/* Reads a key file written by `tandem keygen` (base64 of `keylen` bytes:
 * 32 for the public key, 64 for the secret key) into key. A public key
 * (keylen 32) may also be a PEM SubjectPublicKeyInfo or a JWK (OKP,
 * Ed25519), told apart by content. Returns 0, or -1 with err (errlen
 * bytes) saying why. */
int td_srv_key_read(const char *path, uint8_t *key, size_t keylen, char *err,
                    size_t errlen);
/* 1 if the glob `pattern` (`*` matches any run of bytes) matches `doc`. */
int td_srv_pattern_match(const char *pattern, size_t plen, const char *doc,
                         size_t dlen);

#ifdef __cplusplus
}
#endif

#endif /* TANDEM_SRV_H */
