/*
 * srv_yproto.h -- private: the y-protocols messages (sync, awareness, auth,
 * query-awareness) as the y-websocket and Hocuspocus providers send them,
 * decoded with every byte checked, and encoded (docs/PROTOCOL-YJS.md).
 *
 * The integers are lib0 varuints: 7 bits a byte, least significant first,
 * a set top bit meaning "more". lib0 reads numbers up to 2^53 - 1 (a
 * JavaScript number); so do we, and we also refuse non-minimal encodings
 * (a trailing 0x80 0x00), which lib0 never writes. Byte arrays and strings
 * are a varuint length and the bytes; strings must be valid UTF-8.
 *
 * This file is the bottom of the Yjs front-ends: it calls nothing else of
 * the server but the output buffer of srv_proto.c.
 */
#ifndef SRV_YPROTO_H
#define SRV_YPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "tandem_srv.h"

/* Message types of y-protocols (the first varuint of a y-websocket message,
 * the second of a Hocuspocus one, after the document name). */
typedef enum {
    TD_SRV_Y_SYNC = 0,
    TD_SRV_Y_AWARENESS = 1,
    TD_SRV_Y_AUTH = 2,
    TD_SRV_Y_QUERY_AWARENESS = 3,
    /* Hocuspocus only */
    TD_SRV_Y_SYNC_REPLY = 4,
    TD_SRV_Y_STATELESS = 5,
    TD_SRV_Y_BROADCAST_STATELESS = 6,
    TD_SRV_Y_CLOSE = 7,
    TD_SRV_Y_SYNC_STATUS = 8
} td_srv_y_type;

/* Sync sub-types (y-protocols/sync.js). */
typedef enum { TD_SRV_Y_STEP1 = 0, TD_SRV_Y_STEP2 = 1, TD_SRV_Y_UPDATE = 2 } td_srv_y_sync;

/* Auth sub-types: y-protocols knows only "permission denied" (0); the
 * Hocuspocus provider sends Token (0) and reads PermissionDenied (1) and
 * Authenticated (2). */
enum { TD_SRV_Y_AUTH_DENIED = 0 };
enum { TD_SRV_HP_AUTH_TOKEN = 0, TD_SRV_HP_AUTH_DENIED = 1, TD_SRV_HP_AUTH_OK = 2 };

/* Largest number lib0 decodes: 2^53 - 1. */
#define TD_SRV_Y_UINT_MAX ((uint64_t)9007199254740991ULL)

/* A decoded message. Pointers point into the input. */
typedef struct td_srv_ymsg {
    const uint8_t *doc; /* Hocuspocus: the document name; y-websocket: NULL */
    size_t doc_len;
    uint64_t type;      /* td_srv_y_type */
    uint64_t sub;       /* SYNC: td_srv_y_sync; AUTH: its sub-type */
    const uint8_t *data; /* SYNC: state vector or update; AWARENESS: the awareness
                          * update; AUTH: token or reason; STATELESS: payload;
                          * SYNC_STATUS: nothing */
    size_t len;
    uint64_t flag;      /* SYNC_STATUS: 1 applied; CLOSE: nothing */
} td_srv_ymsg;

/* A y-websocket message: type, then its body, and nothing after it.
 * Returns TD_SRV_E_OK, TD_SRV_E_BAD_MESSAGE (truncated, bad varint, bad
 * length, trailing bytes) or TD_SRV_E_UNKNOWN_TYPE, with *why. */
td_srv_code td_srv_ymsg_decode(const uint8_t *buf, size_t len, td_srv_ymsg *out,
                               const char **why);
/* A Hocuspocus message: the document name (a string), then as above, with
 * Hocuspocus's extra types. */
td_srv_code td_srv_hpmsg_decode(const uint8_t *buf, size_t len, td_srv_ymsg *out,
                                const char **why);

/* One entry of an awareness update: a client id, its clock and its state
 * (JSON text; "null" removes the client). */
typedef struct td_srv_yaw {
    uint64_t client, clock;
    const char *json;
    size_t json_len;
    int is_null; /* the state is JSON null */
} td_srv_yaw;

/* Checks an awareness update: the count, then that many entries whose
 * client ids and clocks are lib0 varuints below 2^32 (Yjs client ids are
 * 32-bit) and whose states are single, complete JSON values of at most
 * max_state bytes; no bytes after them; at most max_entries entries.
 * Returns TD_SRV_E_OK with *count, TD_SRV_E_BAD_MESSAGE or TD_SRV_E_LIMIT
 * with *why. */
td_srv_code td_srv_yaw_check(const uint8_t *p, size_t len, size_t max_entries,
                             size_t max_state, size_t *count, const char **why);
/* Walks a checked awareness update: *pos starts at 0. Returns 1 with the
 * next entry, 0 at the end. */
int td_srv_yaw_next(const uint8_t *p, size_t len, size_t *pos, td_srv_yaw *out);

/* ---- encoding (into a td_srv_wbuf; Hocuspocus puts the name first with
 * td_srv_y_put_string) ----------------------------------------------------- */

void td_srv_y_put_string(td_srv_wbuf *w, const char *s, size_t len);
/* A sync message (type and sub-type, then the bytes). */
void td_srv_y_put_sync(td_srv_wbuf *w, td_srv_y_sync step, const uint8_t *p, size_t len);
/* An awareness message whose update holds `count` entries already encoded
 * (td_srv_yaw_put) in `entries`. */
void td_srv_y_put_awareness(td_srv_wbuf *w, uint64_t count, const uint8_t *entries,
                            size_t len);
/* One awareness entry, into an entries buffer. */
void td_srv_yaw_put(td_srv_wbuf *w, uint64_t client, uint64_t clock, const char *json,
                    size_t json_len);
/* An auth message with sub-type `sub` and a string. */
void td_srv_y_put_auth(td_srv_wbuf *w, uint64_t sub, const char *s, size_t len);

#endif /* SRV_YPROTO_H */
