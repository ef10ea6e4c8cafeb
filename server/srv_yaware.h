/*
 * srv_yaware.h -- private: Yjs awareness on top of tandem presence, for
 * both Yjs front-ends (y-websocket and Hocuspocus).
 *
 * A subscription's presence entry is the awareness of its connection: the
 * Yjs client ids that connection introduced, each with its clock and JSON
 * state, encoded as one awareness update. Presence does the rest as for any
 * protocol: coalescing per interval, TTL expiry, removal when the
 * connection closes, every current entry for a newcomer.
 *
 * What this adds is the awareness rules a Yjs peer cannot enforce itself:
 *  - a connection owns the client ids it introduced; an entry naming a
 *    client id that another member of the room holds is dropped, so nobody
 *    can change or remove (state null) another connection's state;
 *  - when a member leaves (closed, unsubscribed, expired) each other
 *    member is sent a removal -- [client id, last clock, null] -- for every
 *    client id it was told of by that member, so no ghost cursor stays;
 *  - a client id that comes back after its removal (a provider that
 *    reconnected resends its state with the clock its peers saw removed,
 *    which they would ignore until its next change) is shown with a clock
 *    above the removal's, so it is visible at once.
 * For that, each document remembers which client ids (and clocks) each
 * member has shown the others, and the clocks of removed ids. The rooms
 * are shared by both Yjs front-ends: a y-websocket and a Hocuspocus client
 * of one document are peers.
 */
#ifndef SRV_YAWARE_H
#define SRV_YAWARE_H

#include <stddef.h>
#include <stdint.h>

#include "srv_presence.h"
#include "srv_yproto.h"

/* Client ids one connection may introduce per document. */
#define TD_SRV_YAW_OWN_MAX 8

typedef struct td_srv_yaw_own {
    uint32_t client, clock; /* the clock as the connection counts it */
    /* Added to the clock in what the others are shown: an id that comes
     * back after its removal goes on above the clock they saw removed. */
    uint64_t off;
    char *json; /* malloc'ed */
    size_t json_len;
} td_srv_yaw_own;

/* What the members of one document were shown: kept per document, not per
 * subscription (issue 12: 16 B per peer per subscription was ~2 KiB of
 * each idle connection at 100 peers a room). Every member is shown the
 * same entries -- a newcomer their snapshot -- so the union is what each
 * of them knows of, and a removal of an entry one member never saw is a
 * no-op for its provider. */
typedef struct td_srv_yaw_room td_srv_yaw_room;

#define TD_SRV_YAW_BUCKETS 256
/* The rooms by document id (zeroed: empty), one table for both Yjs
 * front-ends. */
typedef struct td_srv_yaw_rooms {
    td_srv_yaw_room *b[TD_SRV_YAW_BUCKETS];
} td_srv_yaw_rooms;

typedef struct td_srv_yaware {
    td_srv_yaw_own own[TD_SRV_YAW_OWN_MAX];
    size_t nown;
    uint64_t self; /* the connection's presence id (td_srv_client.id) */
    /* The room's epoch when the connection was first shown the others:
     * ids that left after it are not its to introduce (echoes). */
    uint64_t shown_epoch;
    int shown;
    td_srv_yaw_rooms *rooms;
    td_srv_yaw_room *room; /* NULL: not attached (out of memory) */
} td_srv_yaware;

/* Joins the document's room (created on first use) as presence id self.
 * Returns 0, or -1 when out of memory: take and peers then fail. */
int td_srv_yaware_attach(td_srv_yaware *a, td_srv_yaw_rooms *rooms, const char *doc,
                         size_t len, uint64_t self);
/* Leaves the room (freed with its last member) and frees the state. */
void td_srv_yaware_free(td_srv_yaware *a);

/* Takes a checked awareness update (td_srv_yaw_check) from the connection:
 * keeps the entries it may make (its own client ids, newer clocks) and
 * writes into *state the connection's whole awareness, the presence entry
 * (w is initialised here; empty when nothing changed). Returns 0, or -1 when
 * out of memory. */
int td_srv_yaware_take(td_srv_yaware *a, const uint8_t *upd, size_t len, td_srv_wbuf *state);

/* Encodes the entries of a presence broadcast as awareness entries into
 * `entries` (count in *n) and remembers who showed what. Returns 0, or -1
 * when out of memory. */
int td_srv_yaware_peers(td_srv_yaware *a, const td_srv_peers *ps, td_srv_wbuf *entries,
                        uint64_t *n);
/* The removals owed when member `peer` leaves (entries, count in *n). */
void td_srv_yaware_leave(td_srv_yaware *a, uint64_t peer, td_srv_wbuf *entries,
                         uint64_t *n);

#endif /* SRV_YAWARE_H */
