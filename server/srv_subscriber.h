/*
 * srv_subscriber.h -- private: the subscriber interface, through which the
 * document service and presence talk to clients without knowing any wire
 * protocol.
 *
 * A protocol front-end turns each connection into a td_srv_client (embedded
 * in its own session object) and each subscription into a td_srv_sub that
 * the service hands out. Whatever the service or presence must tell a
 * client -- the state it lacks, an acknowledgement, the batches others
 * wrote, an error, presence entries, a departure -- is a call through the
 * client's ops table; the front-end encodes it in its protocol. So one
 * document service serves any number of protocols, and adding one touches
 * no document logic.
 *
 * Broadcasts come once per document per loop turn. Most subscribers receive
 * the same thing, so a broadcast (td_srv_bcast, td_srv_peers) carries one
 * `shared` slot: the front-end encodes the common message once, keeps it
 * there, and the service frees it with `shared_free` after the last
 * subscriber. `skip` is set when this subscriber's own batches (or presence
 * entry) are among those of the turn: it must then get everything but its
 * own, which is not the shared message.
 */
#ifndef SRV_SUBSCRIBER_H
#define SRV_SUBSCRIBER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "tandem_srv.h"
#include "tandem_store.h"

typedef struct td_srv_client td_srv_client;
typedef struct td_srv_sub td_srv_sub;
typedef struct td_srv_binding td_srv_binding;
typedef struct td_srv_rec td_srv_rec;
typedef struct td_srv_pres_entry td_srv_pres_entry;

/* The batches made durable in one loop turn for one document. Walk them
 * with td_srv_bcast_next() (srv_service.h). */
typedef struct td_srv_bcast {
    const td_srv_rec *head;
    const td_srv_client *skip; /* leave out this client's batches; NULL: none */
    void *shared;              /* the front-end's encoding of all of them */
    void (*shared_free)(void *shared);
} td_srv_bcast;

/* Presence entries of one document: all of them (a newcomer's snapshot) or
 * those changed since the last broadcast. Walk them with
 * td_srv_peers_next() (srv_presence.h). */
typedef struct td_srv_peers {
    const struct td_srv_pres_room *room;
    int only_changed;
    const td_srv_sub *skip;  /* leave out this member's entry; NULL: none */
    void *shared;
    void (*shared_free)(void *shared);
} td_srv_peers;

/* One presence entry as a front-end encodes it. */
typedef struct td_srv_peer {
    uint64_t id, agent;
    const char *user;
    size_t user_len;
    const uint8_t *state;
    size_t len;
} td_srv_peer;

typedef struct td_srv_client_ops {
    /* The answer to a subscription or a resync: the ops the client lacks
     * and the document's version vector. */
    void (*sync)(td_srv_sub *u, const uint8_t *diff, size_t dlen, const uint8_t *vv,
                 size_t vv_len);
    /* A batch of this client's is durable. */
    void (*ack)(td_srv_client *c, const char *doc, size_t doc_len, uint64_t batch_id);
    /* A refusal or a failure; doc may be NULL. */
    void (*error)(td_srv_client *c, td_srv_code code, const char *doc, size_t doc_len,
                  uint64_t batch_id, const char *msg);
    /* Batches of other clients, durable. */
    void (*broadcast)(td_srv_sub *u, td_srv_bcast *b);
    /* Presence entries, and a member that left. */
    void (*peers)(td_srv_sub *u, td_srv_peers *p);
    void (*leave)(td_srv_sub *u, uint64_t peer_id);
    /* The service is about to drop this subscription on its own (its
     * document cannot be served); the front-end lets go of what it keeps
     * for it. */
    void (*dropped)(td_srv_sub *u);
} td_srv_client_ops;

/* A connection as the service sees it. The front-end sets ops, the
 * identity fields (shown to presence peers) and the author; the rest is the
 * service's. */
struct td_srv_client {
    const td_srv_client_ops *ops;
    uint64_t id, agent;
    const char *user;
    size_t user_len;
    /* The author that agent ids this client introduces are bound to
     * (PROTOCOL.md section 12): a user, stored with the document, when
     * author_durable; otherwise the connection itself, for as long as it
     * lives. */
    const char *author;
    size_t author_len;
    int author_durable;
    /* The document model the client's protocol speaks: its documents are
     * created of this kind, and one of another kind is refused with
     * wrong_kind. td_srv_client_init sets tandem. */
    td_store_kind kind;
    /* service-private */
    LIST_HEAD(, td_srv_binding) bindings; /* its bindings to the connection */
    size_t loading;                      /* its subscriptions waiting for a load */
    LIST_HEAD(, td_srv_sub) subs;
    size_t nsubs;
    LIST_HEAD(, td_srv_rec) recs; /* its batches between apply and broadcast */
    size_t deferred_bytes;        /* of its batches waiting for dependencies */
    uint64_t mark;    /* broadcast epoch scratch */
};

/* Messages a front-end holds back for one subscription while its document
 * loads (opaque to the service, which only keeps the slot). */
typedef struct td_srv_held {
    void *head, *tail;
} td_srv_held;

#endif /* SRV_SUBSCRIBER_H */
