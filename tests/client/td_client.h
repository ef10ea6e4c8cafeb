/*
 * td_client.h -- a small C client of tandem's wire protocol, for tests and
 * load generation.
 *
 * One td_cli_ctx owns one libwebsockets client context: a single poll loop
 * that drives any number of connections (td_cli_conn). Nothing runs behind
 * the caller's back: work happens inside td_cli_service() and the
 * td_cli_wait*() helpers, so a test is a plain sequence of "do something,
 * then wait until a predicate holds or a deadline passes".
 *
 * A connection subscribes to documents (td_cli_doc). Each subscription holds
 * a replica (td_crdt_doc) of the document: local edits go through the core's
 * API on td_cli_doc_crdt(), td_cli_commit() turns them into one batch that is
 * sent as UPDATE and kept until its ACK arrives. SYNC and REMOTE batches are
 * applied to the replica (unless the subscription was opened with
 * `manual_apply`, for callers that must control when ops become visible,
 * such as a trace replay). After td_cli_reconnect() the connection sends
 * HELLO, re-SUBSCRIBEs every document with its replica's version vector and
 * resends the unacknowledged batches, as docs/PROTOCOL.md section 5 says.
 * Edits made while disconnected are committed into the same queue.
 *
 * The wire codec here is written from docs/PROTOCOL.md alone and does not
 * share code with the server, so the integration tests check the server
 * against the document, not against itself.
 *
 * For tests there are also: counters of bytes and messages per connection,
 * a log of received ERRORs, raw-frame sending (malformed input), raw
 * connections that keep what they receive in an inbox, stopping
 * reads (a slow consumer), presence with per-peer bookkeeping, a blocking
 * HTTP GET, and starting/stopping a `tandem serve` child process.
 */
#ifndef TD_CLIENT_H
#define TD_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tandem_crdt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct td_cli_ctx td_cli_ctx;
typedef struct td_cli_conn td_cli_conn;
typedef struct td_cli_doc td_cli_doc;

/* ---- message types and error codes (PROTOCOL.md sections 3 and 6) ------- */

enum {
    TD_CLI_HELLO = 0x01, TD_CLI_SUBSCRIBE = 0x02, TD_CLI_UNSUBSCRIBE = 0x03,
    TD_CLI_UPDATE = 0x04, TD_CLI_PRESENCE = 0x05,
    TD_CLI_WELCOME = 0x81, TD_CLI_SYNC = 0x82, TD_CLI_ACK = 0x83,
    TD_CLI_REMOTE = 0x84, TD_CLI_PEERS = 0x85, TD_CLI_LEAVE = 0x86,
    TD_CLI_ERROR = 0x87
};

enum {
    TD_CLI_E_BAD_MESSAGE = 1, TD_CLI_E_UNKNOWN_TYPE = 2, TD_CLI_E_BAD_VERSION = 3,
    TD_CLI_E_HELLO_REQUIRED = 4, TD_CLI_E_BAD_DOC_ID = 5, TD_CLI_E_AUTH_REQUIRED = 6,
    TD_CLI_E_TOKEN_INVALID = 7, TD_CLI_E_TOKEN_EXPIRED = 8, TD_CLI_E_FORBIDDEN = 9,
    TD_CLI_E_READ_ONLY = 10, TD_CLI_E_NOT_SUBSCRIBED = 11, TD_CLI_E_INVALID_BATCH = 12,
    TD_CLI_E_TOO_LARGE = 13, TD_CLI_E_LIMIT = 14, TD_CLI_E_DOC_UNAVAILABLE = 15,
    TD_CLI_E_STORE_FAILED = 16, TD_CLI_E_BUSY = 17, TD_CLI_E_INTERNAL = 18,
    TD_CLI_E_SHUTTING_DOWN = 19, TD_CLI_E_AGENT_TAKEN = 20, TD_CLI_E_MISSING_OPS = 21,
    TD_CLI_E_WRONG_KIND = 22, TD_CLI_E_UNAVAILABLE = 23
};
#define TD_CLI_NCODES 32

/* ---- encoding helpers (for building raw and malformed frames) ----------- */

typedef struct td_cli_buf {
    uint8_t *data;
    size_t len, cap;
    int oom;
} td_cli_buf;

void td_cli_buf_free(td_cli_buf *b);
void td_cli_put_u8(td_cli_buf *b, uint8_t v);
void td_cli_put_varint(td_cli_buf *b, uint64_t v);
void td_cli_put_bytes(td_cli_buf *b, const void *p, size_t len); /* varint len + bytes */
void td_cli_put_raw(td_cli_buf *b, const void *p, size_t len);
/* Reads a minimal-form varint at *pos; returns 0 or -1 (truncated/bad). */
int td_cli_get_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out);

/* ---- context ------------------------------------------------------------ */

typedef struct td_cli_ctx_opts {
    int deflate;        /* offer permessage-deflate on every connection */
    int max_fds;        /* raise RLIMIT_NOFILE to at least this (0: leave it) */
    unsigned rx_buffer; /* lws rx buffer per connection (0: 16 KiB) */
} td_cli_ctx_opts;

td_cli_ctx *td_cli_ctx_new(const td_cli_ctx_opts *opts);
/* Closes every connection at once and frees everything. */
void td_cli_ctx_free(td_cli_ctx *ctx);
/* Runs the event loop once, waiting at most timeout_ms. Returns 0 or -1. */
int td_cli_service(td_cli_ctx *ctx, int timeout_ms);
/* Services the loop until pred(arg) returns non-zero (1 returned) or
 * timeout_ms passed (0 returned). pred may be NULL: just service. */
int td_cli_wait(td_cli_ctx *ctx, int (*pred)(void *arg), void *arg, int timeout_ms);
/* Monotonic clock. */
uint64_t td_cli_now_us(void);
/* A random 64-bit value (getrandom); never 0. */
uint64_t td_cli_random64(void);

/* ---- connections --------------------------------------------------------- */

typedef enum td_cli_state {
    TD_CLI_CLOSED = 0,   /* never opened, or closed (see close_code) */
    TD_CLI_CONNECTING,   /* TCP/WebSocket handshake under way */
    TD_CLI_OPEN,         /* WebSocket up, HELLO sent, WELCOME not yet seen */
    TD_CLI_READY         /* WELCOME received */
} td_cli_state;

typedef struct td_cli_peer {
    uint64_t session, agent;
    const char *user;  /* not NUL-terminated */
    size_t user_len;
    const uint8_t *state;
    size_t state_len;
} td_cli_peer;

/* Callbacks; every one is optional. They run inside td_cli_service(). */
typedef struct td_cli_callbacks {
    /* Every whole message received, before it is processed. */
    void (*on_message)(td_cli_conn *c, const uint8_t *msg, size_t len, int is_text,
                       void *ud);
    /* A SYNC batch (possibly empty) / one REMOTE batch, after it was applied
     * (or, with manual_apply, instead of applying it). */
    void (*on_sync)(td_cli_doc *d, const uint8_t *batch, size_t len, void *ud);
    void (*on_remote)(td_cli_doc *d, const uint8_t *batch, size_t len, void *ud);
    /* An ACK of a batch we sent; sent_us is when it was (last) sent. */
    void (*on_ack)(td_cli_doc *d, uint64_t batch_id, uint64_t sent_us, void *ud);
    void (*on_presence)(td_cli_doc *d, const td_cli_peer *p, void *ud);
    void (*on_leave)(td_cli_doc *d, uint64_t session, void *ud);
    /* d is NULL when the ERROR names no subscribed document. */
    void (*on_error)(td_cli_conn *c, td_cli_doc *d, uint64_t code, uint64_t batch_id,
                     const char *msg, size_t msg_len, void *ud);
    void (*on_close)(td_cli_conn *c, int close_code, void *ud);
    void *ud;
} td_cli_callbacks;

typedef struct td_cli_conn_opts {
    const char *token;        /* NULL or "": empty token */
    uint64_t agent;           /* 0: random */
    const char *subprotocol;  /* NULL: none; "tandem" */
    int no_hello;             /* do not send HELLO on open (bad-input tests) */
    /* Byte-level tests: no HELLO, and every received message is kept,
     * uninterpreted, in the connection's inbox (td_cli_expect). */
    int raw;
    td_cli_callbacks cb;
} td_cli_conn_opts;

/* Starts connecting to ws://HOST:PORT/PATH. Returns NULL on a bad url or no
 * memory; connection failures show as state CLOSED later. */
td_cli_conn *td_cli_connect(td_cli_ctx *ctx, const char *url,
                            const td_cli_conn_opts *opts);
/* Opens the connection again (after it closed, or closing it first), with
 * the same documents: HELLO, SUBSCRIBE with each replica's vv, resend. */
int td_cli_reconnect(td_cli_conn *c);
/* Closes the WebSocket (close code 1000); documents and queues stay. */
void td_cli_close(td_cli_conn *c);
/* Frees the connection and its documents (closing it if open). */
void td_cli_conn_free(td_cli_conn *c);

td_cli_state td_cli_conn_state(const td_cli_conn *c);
/* Close code the server sent (0 if none/unknown; 1006 for a dropped TCP). */
int td_cli_close_code(const td_cli_conn *c);
uint64_t td_cli_session(const td_cli_conn *c);
uint64_t td_cli_agent(const td_cli_conn *c);
/* Replaces the token used by the next HELLO; with send, sends HELLO now. */
int td_cli_set_token(td_cli_conn *c, const char *token, int send);
/* Stop (0) or resume (1) reading from the socket. */
void td_cli_set_reading(td_cli_conn *c, int on);
/* Queues a raw WebSocket message (binary, or text with is_text). */
int td_cli_send_raw(td_cli_conn *c, const void *msg, size_t len, int is_text);
/* Bytes queued but not yet handed to the socket. */
size_t td_cli_queued(const td_cli_conn *c);
/* Services the loop until the connection is open (1) or closed or the
 * time is up (0). */
int td_cli_wait_open(td_cli_conn *c, int timeout_ms);
/* Services the loop until the connection is closed (1) or the time is up
 * (0); td_cli_close_code() then says how. */
int td_cli_wait_closed(td_cli_conn *c, int timeout_ms);

/* ---- the inbox of a raw connection ---------------------------------------- */

typedef struct td_cli_msg {
    struct td_cli_msg *next;
    size_t len;
    int is_text;
    uint8_t data[];
} td_cli_msg;

/* The first message of a raw connection's inbox whose type byte is `type`
 * (0: any message), taken out of the inbox; waits up to timeout_ms for it.
 * NULL when the time is up or the connection closed without one. */
td_cli_msg *td_cli_expect(td_cli_conn *c, int type, int timeout_ms);
void td_cli_msg_free(td_cli_msg *m);
size_t td_cli_inbox_count(const td_cli_conn *c);

typedef struct td_cli_stats {
    uint64_t bytes_sent, bytes_recv; /* message payload bytes */
    uint64_t msgs_sent, msgs_recv;
    uint64_t by_type[256];           /* received messages per type byte */
    uint64_t errors[TD_CLI_NCODES];  /* received ERRORs per code (31: >= 31) */
    uint64_t welcome_max_frame, welcome_max_batch, welcome_rights, welcome_expires;
    uint64_t presence_interval_ms, presence_ttl_ms;
} td_cli_stats;
const td_cli_stats *td_cli_conn_stats(const td_cli_conn *c);
void td_cli_stats_reset(td_cli_conn *c);

/* The last ERROR received (code 0 if none). */
typedef struct td_cli_error {
    uint64_t code, batch_id;
    char doc[256];
    char msg[256];
} td_cli_error;
void td_cli_last_error(const td_cli_conn *c, td_cli_error *out);
/* Total ERRORs received. */
uint64_t td_cli_error_count(const td_cli_conn *c);

/* ---- documents ---------------------------------------------------------- */

typedef struct td_cli_doc_opts {
    int manual_apply;  /* do not apply SYNC/REMOTE batches; callbacks only */
    int no_replica;    /* keep no replica at all (load generator readers) */
    const td_crdt_options *crdt; /* NULL: defaults with the connection's agent */
} td_cli_doc_opts;

/* Subscribes (now if the connection is up, else on the next open). */
td_cli_doc *td_cli_subscribe(td_cli_conn *c, const char *doc_id,
                             const td_cli_doc_opts *opts);
/* Sends UNSUBSCRIBE and forgets the document. */
void td_cli_unsubscribe(td_cli_doc *d);
/* Sends SUBSCRIBE again with the replica's vv (a resync). */
int td_cli_resubscribe(td_cli_doc *d);

td_crdt_doc *td_cli_doc_crdt(td_cli_doc *d);
td_cli_conn *td_cli_doc_conn(td_cli_doc *d);
const char *td_cli_doc_id(const td_cli_doc *d);
/* Number of SYNCs received for this subscription (on this connection). */
uint64_t td_cli_doc_syncs(const td_cli_doc *d);
/* Set when the subscription's SYNC of the current connection arrived. */
int td_cli_doc_synced(const td_cli_doc *d);

/* Commits the replica's local ops as a batch and sends it (or keeps it for
 * the next connection). *batch_id (may be NULL) gets its id; returns 0 with
 * id 0 when there was nothing to commit, -1 on error. */
int td_cli_commit(td_cli_doc *d, uint64_t *batch_id);
/* Sends a given batch as UPDATE and tracks it like a committed one. */
int td_cli_send_batch(td_cli_doc *d, const uint8_t *batch, size_t len,
                      uint64_t *batch_id);
/* Batches sent (or queued) and not acknowledged yet. */
size_t td_cli_unacked(const td_cli_doc *d);

typedef struct td_cli_doc_stats {
    uint64_t batches_sent, batches_acked, batches_dropped;
    uint64_t remote_msgs, remote_batches, sync_bytes;
    uint64_t presence_msgs, presence_entries, leaves;
} td_cli_doc_stats;
const td_cli_doc_stats *td_cli_doc_stats_get(const td_cli_doc *d);

/* The replica's content as JSON (td_crdt_to_json), malloc'd; NULL on error. */
char *td_cli_doc_json(td_cli_doc *d);
/* Text of root text `name`, malloc'd NUL-terminated; NULL on error. */
char *td_cli_doc_text(td_cli_doc *d, const char *name);

/* ---- presence ----------------------------------------------------------- */

/* Sends PRESENCE (len 0 = heartbeat). */
int td_cli_presence(td_cli_doc *d, const void *state, size_t len);
/* Peers' presence as currently known (after PRESENCE/LEAVE). */
size_t td_cli_peer_count(const td_cli_doc *d);
/* Finds a peer by session; returns 1 and fills *out (pointers valid until
 * the next service call), or 0. */
int td_cli_peer_get(const td_cli_doc *d, uint64_t session, td_cli_peer *out);

/* ---- HTTP and the server process ---------------------------------------- */

/* Blocking HTTP/1.1 GET of http://host:port`path` with an optional extra
 * header line (e.g. "Authorization: Bearer X"). Returns the status code
 * (and the malloc'd NUL-terminated body in *body, may be NULL), or -1. */
int td_cli_http_get(const char *host, int port, const char *path,
                    const char *header, char **body, size_t *body_len);
/* Percent-encodes a document id for a URL path. out must hold 3*len+1. */
void td_cli_url_escape(const char *in, size_t len, char *out);

typedef struct td_cli_server {
    pid_t pid;
    int port;
    char data_dir[512];
    char url[128];
    char bin[512];
    int own_dir;       /* the data dir was created by start and is removed */
    char log_path[600];
} td_cli_server;

/* Picks a free loopback port. */
int td_cli_free_port(void);
/* Starts `BIN serve --port P --data DIR extra...` (a new temporary DIR when
 * data_dir is NULL), waits until GET /healthz answers 200 (timeout_ms).
 * stderr of the server goes to DIR.log. Returns 0 or -1. The child dies
 * with the caller (PR_SET_PDEATHSIG). */
int td_cli_server_start(td_cli_server *s, const char *bin, const char *data_dir,
                        const char *const *extra, int timeout_ms);
/* Sends sig (SIGTERM, SIGKILL) and reaps the child; returns its wait status
 * (or -1). After SIGTERM, waits up to timeout_ms then SIGKILLs. */
int td_cli_server_stop(td_cli_server *s, int sig, int timeout_ms);
/* Restarts on the same data dir and port (after stop). */
int td_cli_server_restart(td_cli_server *s, const char *const *extra, int timeout_ms);
/* Removes the data dir if start created it. */
void td_cli_server_cleanup(td_cli_server *s);
/* VmRSS / VmHWM (KiB) and utime+stime (seconds) of a process; -1 on error. */
long td_cli_proc_rss_kb(pid_t pid);
long td_cli_proc_hwm_kb(pid_t pid);
double td_cli_proc_cpu_s(pid_t pid);
/* Runs a command (argv, NULL-terminated), capturing stdout (malloc'd) and
 * returning its exit status, or -1. */
int td_cli_run(const char *const *argv, char **out, size_t *out_len);
/* Removes a directory tree. */
int td_cli_rm_rf(const char *path);

#ifdef __cplusplus
}
#endif

#endif /* TD_CLIENT_H */
