/*
 * srv_cluster.h -- private: the cluster transport, how the nodes of
 * `tandem serve --cluster` share documents through NATS JetStream
 * (docs/CLUSTER.md).
 *
 * Each document is one subject of one stream: a node publishes the batches
 * its clients send there and follows the subjects of the documents it holds,
 * so every node integrates what the others accepted. JetStream acknowledges
 * a publish once a quorum of its servers stored it; that acknowledgement,
 * with the node's own durable write, is what lets a node acknowledge its
 * client. A snapshot is published as a rollup, which drops the subject's
 * older batches, so a node that loads a document reads the snapshot and the
 * tail. Presence goes over plain NATS subjects: it is not worth storing.
 *
 * libnats runs its own threads and calls back on them. Nothing here is
 * handed to the caller on those threads: results are queued and the caller
 * is woken (cfg.wake, e.g. lws_cancel_service) to collect them with
 * td_srv_cluster_poll() on its own thread. Every other call is made on that
 * one thread too.
 */
#ifndef SRV_CLUSTER_H
#define SRV_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

typedef struct td_srv_cluster td_srv_cluster;

typedef enum td_srv_cluster_err {
    TD_SRV_CLUSTER_OK = 0,
    TD_SRV_CLUSTER_ERR_ARG,
    TD_SRV_CLUSTER_ERR_NOMEM,
    TD_SRV_CLUSTER_ERR_CONNECT,     /* no broker reachable */
    TD_SRV_CLUSTER_ERR_STREAM,      /* the stream cannot be created or read */
    TD_SRV_CLUSTER_ERR_UNAVAILABLE, /* the broker is unreachable now: retry */
    TD_SRV_CLUSTER_ERR_REFUSED,     /* JetStream refused the publish */
    TD_SRV_CLUSTER_ERR_TOO_LARGE    /* past the broker's payload limit */
} td_srv_cluster_err;

const char *td_srv_cluster_strerror(td_srv_cluster_err e);

typedef struct td_srv_cluster_cfg {
    const char *urls;       /* "nats://h:p[,nats://h:p...]" */
    const char *node;       /* this node's name, unique in the cluster; NULL: random */
    const char *stream;     /* NULL: "TANDEM" */
    int replicas;           /* stream replicas (1 or 3); 0: 1 */
    int64_t publish_timeout_ms; /* a publish not acknowledged by then fails; 0: 5000 */
    void (*wake)(void *ud); /* called on libnats threads when there is something to poll */
    void *wake_ud;
} td_srv_cluster_cfg;

/* What td_srv_cluster_poll() hands over. Pointers are valid during the call. */
typedef struct td_srv_cluster_handler {
    /* A publish of ours: acknowledged by a quorum (err OK, seq its stream
     * sequence; dup if JetStream had it already) or failed. */
    void (*published)(void *ud, uint64_t tag, td_srv_cluster_err err, uint64_t seq, int dup,
                      const char *msg);
    /* A message of a followed document, in stream order: a batch, or a
     * snapshot (a rollup: what came before it on the subject is gone).
     * `node` is the publisher: a node skips its own batches, which come
     * without their payload (len 0). */
    void (*delivered)(void *ud, const char *doc, size_t doc_len, uint64_t seq, int snapshot,
                      const char *node, const uint8_t *data, size_t len);
    /* A presence message of a followed document from another node. */
    void (*presence)(void *ud, const char *doc, size_t doc_len, const char *node,
                     const uint8_t *data, size_t len);
    /* The broker became reachable (up 1) or not (up 0). */
    void (*broker)(void *ud, int up);
    /* Optional: a publish of this node's (its tag) came back through a
     * followed subject, at stream sequence seq; called just before its
     * `delivered`. It can come before or after its `published`: the two
     * travel apart. Everything `delivered` after it has a larger seq. */
    void (*echoed)(void *ud, uint64_t tag, uint64_t seq);
} td_srv_cluster_handler;

/* Connects and makes sure the stream exists. On error, msg says why. */
td_srv_cluster_err td_srv_cluster_new(td_srv_cluster **out, const td_srv_cluster_cfg *cfg,
                                      char *msg, size_t msglen);
/* Stops the threads and drops what was not polled. */
void td_srv_cluster_free(td_srv_cluster *c);
const char *td_srv_cluster_node(const td_srv_cluster *c);
/* Whether the broker is reachable as far as the connection knows. */
int td_srv_cluster_up(const td_srv_cluster *c);
/* The largest message the broker takes (its max_payload). */
size_t td_srv_cluster_max_payload(const td_srv_cluster *c);
/* The stream's last sequence when this node connected. A position a
 * previous run stored beyond it belongs to a stream that was deleted and
 * made again (its sequences start over): it must not be resumed from. */
uint64_t td_srv_cluster_stream_last(const td_srv_cluster *c);

/* Publishes a batch (rollup_after 0) or a snapshot of doc as a rollup; the
 * outcome comes back through `published` with tag. A rollup drops every
 * older message of the subject, so it is fenced: JetStream takes it only if
 * the subject's last sequence is still rollup_after, the last one the
 * snapshot covers (else REFUSED: a batch came in between and would be lost).
 * Publishing the same (node, tag) again within JetStream's duplicate window
 * is stored once. */
td_srv_cluster_err td_srv_cluster_publish(td_srv_cluster *c, const char *doc, size_t doc_len,
                                          uint64_t rollup_after, const uint8_t *data,
                                          size_t len, uint64_t tag);

/* Follows doc from stream sequence `from` (0: from its last snapshot, or
 * its first batch): every message comes through `delivered`, then each new
 * one as it is stored. Following a document twice is an error (ARG). */
td_srv_cluster_err td_srv_cluster_follow(td_srv_cluster *c, const char *doc, size_t doc_len,
                                         uint64_t from);
void td_srv_cluster_unfollow(td_srv_cluster *c, const char *doc, size_t doc_len);

/* Sends this node's presence for doc to the other nodes (not stored). */
td_srv_cluster_err td_srv_cluster_presence(td_srv_cluster *c, const char *doc, size_t doc_len,
                                           const uint8_t *data, size_t len);

/* Authorship across nodes (docs/CLUSTER.md): binds `agent` of doc to
 * `owner` in the cluster's key-value bucket unless another owner has it.
 * A compare-and-set in JetStream, so every node gets the same answer;
 * *granted is 1 when owner holds the agent (now or already), 0 when another
 * owner does. Blocks the caller for one round trip to the broker (at most
 * a second): it is made only for an agent the node has not seen bound yet.
 * UNAVAILABLE when the broker does not answer. */
td_srv_cluster_err td_srv_cluster_claim(td_srv_cluster *c, const char *doc, size_t doc_len,
                                        uint64_t agent, const char *owner, size_t owner_len,
                                        int *granted);

/* Hands what the libnats threads queued to h (on the caller's thread). */
void td_srv_cluster_poll(td_srv_cluster *c, const td_srv_cluster_handler *h, void *ud);

/* Consumer lag: the messages of the followed subjects the stream holds
 * beyond the last one each consumer delivered (JetStream's NumPending of
 * that message), plus those delivered but not yet handed over by
 * td_srv_cluster_poll. 0 once this node has applied everything stored. A
 * subject that received nothing since the follow counts 0 until its first
 * message. On the caller's thread. */
uint64_t td_srv_cluster_lag(td_srv_cluster *c);

#endif /* SRV_CLUSTER_H */
