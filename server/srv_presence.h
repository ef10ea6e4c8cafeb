/*
 * srv_presence.h -- private: the ephemeral presence channel (cursors, who is
 * online), the same for every document model and every protocol.
 *
 * Each document has a room; a subscriber becomes a member once it has its
 * SYNC and leaves when it unsubscribes or disconnects. A member may hold one
 * entry, an opaque state only its own connection can change; nothing of it
 * is ever stored. Changes are broadcast through the subscriber interface,
 * coalesced to one per member per interval (the last state always goes
 * out), and an entry silent for the TTL expires with a LEAVE to the others.
 */
#ifndef SRV_PRESENCE_H
#define SRV_PRESENCE_H

#include <sys/queue.h>

#include "srv_metrics.h"
#include "srv_subscriber.h"

struct lws_context;
typedef struct td_srv_presence td_srv_presence;
typedef struct td_srv_pres_member td_srv_pres_member;

typedef struct td_srv_pres_room {
    LIST_HEAD(, td_srv_pres_member) members;
    int changed;                    /* some entry changed since its broadcast */
    int dirty;                      /* in the flush list */
    LIST_ENTRY(td_srv_pres_room) dirty_link;
    uint64_t hb_epoch;              /* cluster heartbeat scratch */
} td_srv_pres_room;

struct td_srv_pres_member {
    td_srv_pres_room *room; /* NULL: not a member (yet) */
    td_srv_sub *sub;
    td_srv_client *client;
    LIST_ENTRY(td_srv_pres_member) link;
    td_srv_pres_entry *entry;
};

int td_srv_presence_new(td_srv_presence **out, uint64_t interval_ms, uint64_t ttl_ms,
                        td_srv_metrics *m);
/* Timers run on ctx from now on (NULL: stop them). */
void td_srv_presence_attach(td_srv_presence *p, struct lws_context *ctx);
void td_srv_presence_free(td_srv_presence *p);

/* Makes m a member of room (if it is not yet) and sends it every other
 * member's entry. */
void td_srv_pres_join(td_srv_presence *p, td_srv_pres_room *room, td_srv_pres_member *m,
                      td_srv_sub *sub, td_srv_client *client);
/* m leaves at once; if it held an entry the others get a LEAVE. */
void td_srv_pres_leave(td_srv_presence *p, td_srv_pres_member *m);
/* The room goes away (its document unloads); it has no members of this
 * node left (other nodes' stand-ins are freed). */
void td_srv_pres_room_close(td_srv_presence *p, td_srv_pres_room *room);
/* m's new state (len 0: a heartbeat that only keeps the entry alive).
 * Returns 0, or -1 when out of memory (nothing changed). */
int td_srv_pres_set(td_srv_presence *p, td_srv_pres_member *m, const uint8_t *state,
                    size_t len);
/* Sends the changes due now. */
void td_srv_pres_flush(td_srv_presence *p);

/* ---- cluster mode (docs/CLUSTER.md) ----------------------------------------------
 *
 * The entries of this node's members go to the other nodes through a relay:
 * the changed ones at each flush (so they are coalesced as they are for
 * local peers), a departure at once, and all of them again every third of
 * the TTL as a heartbeat. Another node's entries join the room as members
 * of their own (stand-ins with no connection), under ids of this node, and
 * expire by the same TTL: when their node dies its heartbeats stop. A
 * message is a varint count, then per entry its id on its node, agent,
 * user (bytes) and state (bytes; empty: it left). */
typedef struct td_srv_pres_relay {
    void (*publish)(void *ud, td_srv_pres_room *room, const uint8_t *msg, size_t len);
    void *ud;
} td_srv_pres_relay;
/* From now on this node's entries go out through r (copied; NULL: none). */
void td_srv_presence_relay(td_srv_presence *p, const td_srv_pres_relay *r);
/* Another node's entries for room. Returns 0, or -1 for a malformed
 * message or out of memory (what came before the fault is kept). */
int td_srv_pres_remote(td_srv_presence *p, td_srv_pres_room *room, const char *node,
                       const uint8_t *msg, size_t len);

/* Walks a broadcast's entries: *pos starts at NULL. Returns 1 with the next
 * entry, 0 at the end. */
int td_srv_peers_next(const td_srv_peers *ps, void **pos, td_srv_peer *out);

#endif /* SRV_PRESENCE_H */
