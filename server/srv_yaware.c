/*
 * srv_yaware.c -- Yjs awareness over tandem presence (srv_yaware.h).
 *
 * The tables are small arrays searched linearly: one connection has one or
 * two Yjs client ids per document, and a room's peers are tens, not
 * thousands, in the workloads this serves.
 */
#include <stdlib.h>
#include <string.h>

#include "srv_yaware.h"

/* A client id the members were shown, and the clock they last saw for it
 * (its state's or its removal's): a Yjs peer keeps that clock after the
 * removal and ignores the id until a newer one comes. */
typedef struct seen {
    uint64_t peer; /* the member's connection (td_srv_peer.id) */
    uint64_t clock;
    uint64_t gone_epoch; /* the room's epoch when its member left */
    uint32_t client;
    int gone; /* its member left: kept only for the clock, nobody holds it */
} seen;

/* Client ids kept after their member left, per room. Past it the oldest
 * go: such an id, back with an old clock, is ignored by the peers that saw
 * it removed until its next change, as on a stock server. */
#define GONE_MAX 256

struct td_srv_yaw_room {
    td_srv_yaw_room *next;
    size_t refs;
    seen *seen;
    size_t nseen, seen_cap;
    /* A member that left: its entries are kept until every other member
     * has been sent their removal (presence calls leave for each of them
     * in one go), marked gone at the room's next other use. */
    uint64_t gone;
    int has_gone;
    uint64_t epoch; /* counts the members that left */
    /* Added to every clock the members are shown, one more for each
     * snapshot (a newcomer's, or an answer to query-awareness): a provider
     * that reconnects kept the clocks it saw, removed the states, and
     * would ignore them shown again at those clocks. Each peer still sees
     * every id's clock grow, which is all Yjs asks. */
    uint64_t gen;
    size_t id_len;
    char id[];
};

static td_srv_yaw_room **room_slot(td_srv_yaw_rooms *rs, const char *id, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)id[i]) * 1099511628211ull;
    td_srv_yaw_room **r = &rs->b[h % TD_SRV_YAW_BUCKETS];
    while (*r && ((*r)->id_len != len || memcmp((*r)->id, id, len) != 0))
        r = &(*r)->next;
    return r;
}

int td_srv_yaware_attach(td_srv_yaware *a, td_srv_yaw_rooms *rooms, const char *doc,
                         size_t len, uint64_t self)
{
    td_srv_yaw_room **slot = room_slot(rooms, doc, len);
    a->self = self;
    a->rooms = rooms;
    if (!*slot) {
        td_srv_yaw_room *r = calloc(1, sizeof *r + len);
        if (!r)
            return -1;
        memcpy(r->id, doc, len);
        r->id_len = len;
        *slot = r;
    }
    a->room = *slot;
    a->room->refs++;
    return 0;
}

void td_srv_yaware_free(td_srv_yaware *a)
{
    td_srv_yaw_room *r = a->room;
    for (size_t i = 0; i < a->nown; i++)
        free(a->own[i].json);
    if (r && --r->refs == 0) {
        td_srv_yaw_room **slot = room_slot(a->rooms, r->id, r->id_len);
        *slot = r->next;
        free(r->seen);
        free(r);
    }
    memset(a, 0, sizeof *a);
}

/* Marks the entries of the member that left last gone, once its removals
 * are out, and keeps at most GONE_MAX gone ones (the first noted go first). */
static void room_settle(td_srv_yaw_room *r)
{
    size_t j = 0, ngone = 0, drop;
    if (!r->has_gone)
        return;
    for (size_t i = 0; i < r->nseen; i++) {
        if (!r->seen[i].gone && r->seen[i].peer == r->gone) {
            r->seen[i].gone = 1;
            r->seen[i].gone_epoch = r->epoch;
        }
        ngone += r->seen[i].gone;
    }
    drop = ngone > GONE_MAX ? ngone - GONE_MAX : 0;
    for (size_t i = 0; i < r->nseen; i++) {
        if (r->seen[i].gone && drop) {
            drop--;
            continue;
        }
        r->seen[j++] = r->seen[i];
    }
    r->nseen = j;
    r->has_gone = 0;
}

static seen *seen_find(td_srv_yaw_room *r, uint32_t client)
{
    for (size_t i = 0; i < r->nseen; i++)
        if (r->seen[i].client == client)
            return &r->seen[i];
    return NULL;
}

static td_srv_yaw_own *own_find(td_srv_yaware *a, uint32_t client)
{
    for (size_t i = 0; i < a->nown; i++)
        if (a->own[i].client == client)
            return &a->own[i];
    return NULL;
}

/* Whether the connection may set this entry now: a client id another
 * member holds is theirs; an older clock is stale (Yjs's own rule: newer
 * clock, or the same clock to remove).
 *
 * A y-websocket provider sends back every awareness change it applies,
 * the others' included. Those echoes must not make the id its
 * connection's: one of a member that left -- its state, or its removal --
 * would keep a ghost cursor, or hide the id when its provider comes back.
 * So a connection introduces an id only with a state, and not one that
 * left while the connection was being shown the others (an echo); a
 * provider that reconnected is a new connection, shown nothing before. */
static int may_set(td_srv_yaware *a, const td_srv_yaw *e, td_srv_yaw_own **slot)
{
    const seen *o = seen_find(a->room, (uint32_t)e->client);
    *slot = own_find(a, (uint32_t)e->client);
    if (o && !o->gone && o->peer != a->self)
        return 0;
    if (!*slot) {
        if (e->is_null || (o && a->shown && a->shown_epoch < o->gone_epoch))
            return 0;
        return a->nown < TD_SRV_YAW_OWN_MAX;
    }
    return e->clock > (*slot)->clock || (e->clock == (*slot)->clock && e->is_null);
}

int td_srv_yaware_take(td_srv_yaware *a, const uint8_t *upd, size_t len, td_srv_wbuf *state)
{
    size_t pos = 0;
    td_srv_yaw e;
    int changed = 0;
    td_srv_wbuf_init(state, 0);
    if (!a->room)
        return -1;
    room_settle(a->room);
    while (td_srv_yaw_next(upd, len, &pos, &e)) {
        td_srv_yaw_own *o;
        if (!may_set(a, &e, &o))
            continue;
        char *json = malloc(e.json_len ? e.json_len : 1);
        if (!json)
            return -1;
        memcpy(json, e.json, e.json_len);
        if (!o) {
            /* An id back after it was removed (its provider reconnected)
             * comes with the clock the peers saw removed: they would ignore
             * it until its next change. It goes out above that clock. */
            const seen *g = seen_find(a->room, (uint32_t)e.client);
            uint64_t out = e.clock + a->room->gen;
            o = &a->own[a->nown++];
            o->client = (uint32_t)e.client;
            o->off = g && g->gone && g->clock >= out ? g->clock + 1 - out : 0;
        }
        free(o->json);
        o->json = json;
        o->json_len = e.json_len;
        o->clock = (uint32_t)e.clock;
        changed = 1;
    }
    if (!changed)
        return 0;
    td_srv_put_varint(state, a->nown);
    for (size_t i = 0; i < a->nown; i++)
        td_srv_yaw_put(state, a->own[i].client, a->own[i].clock + a->own[i].off,
                       a->own[i].json, a->own[i].json_len);
    return state->oom ? -1 : 0;
}

static int seen_note(td_srv_yaw_room *r, uint64_t peer, uint32_t client, uint64_t clock)
{
    seen *e = seen_find(r, client);
    if (!e) {
        if (r->nseen == r->seen_cap) {
            size_t cap = r->seen_cap ? 2 * r->seen_cap : 8;
            seen *v = realloc(r->seen, cap * sizeof *v);
            if (!v)
                return -1;
            r->seen = v;
            r->seen_cap = cap;
        }
        e = &r->seen[r->nseen++];
    }
    e->peer = peer;
    e->client = client;
    e->clock = clock;
    e->gone = 0;
    e->gone_epoch = 0;
    return 0;
}

int td_srv_yaware_peers(td_srv_yaware *a, const td_srv_peers *ps, td_srv_wbuf *entries,
                        uint64_t *n)
{
    void *it = NULL;
    td_srv_peer p;
    *n = 0;
    if (!a->room)
        return -1;
    room_settle(a->room);
    if (!a->shown) {
        a->shown = 1;
        a->shown_epoch = a->room->epoch;
    }
    if (!ps->only_changed)
        a->room->gen++;
    while (td_srv_peers_next(ps, &it, &p)) {
        size_t pos = 0;
        td_srv_yaw e;
        /* The state was written by td_srv_yaware_take: checked already. */
        while (td_srv_yaw_next(p.state, p.len, &pos, &e)) {
            uint64_t clock = e.clock + a->room->gen;
            if (seen_note(a->room, p.id, (uint32_t)e.client, clock) < 0)
                return -1;
            td_srv_yaw_put(entries, e.client, clock, e.json, e.json_len);
            (*n)++;
        }
    }
    return entries->oom ? -1 : 0;
}

void td_srv_yaware_leave(td_srv_yaware *a, uint64_t peer, td_srv_wbuf *entries, uint64_t *n)
{
    td_srv_yaw_room *r = a->room;
    *n = 0;
    if (!r)
        return;
    if (r->has_gone && r->gone != peer)
        room_settle(r);
    if (!r->has_gone)
        r->epoch++;
    r->gone = peer;
    r->has_gone = 1;
    for (size_t i = 0; i < r->nseen; i++)
        if (!r->seen[i].gone && r->seen[i].peer == peer) {
            td_srv_yaw_put(entries, r->seen[i].client, r->seen[i].clock, "null", 4);
            (*n)++;
        }
}
