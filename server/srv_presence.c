/*
 * srv_presence.c -- who is where: the ephemeral presence channel.
 *
 * Throttling: the first change after a quiet interval is broadcast at the
 * next flush; changes inside the interval only mark the entry dirty, and the
 * presence timer broadcasts the last state when the interval ends. Because
 * the interval and the TTL are the same for every entry, two lists ordered
 * by time suffice (no heap): `bc` holds entries broadcast within the last
 * interval, oldest first; `ttl` holds every entry by last receive time,
 * oldest first. One lws_sul fires at the earliest deadline of either head.
 *
 * Rooms with changes wait in a flush list; the flush runs at the end of the
 * loop turn (a 1 us timer), so a burst of changes in one turn is one
 * broadcast.
 *
 * Cluster mode: another node's entry is held by a stand-in member (struct
 * remote) whose client's ops do nothing, so everything above treats it as
 * a member of the room that sends nothing; it goes away with its entry
 * (a departure message, or the TTL) or with the room.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <libwebsockets.h>

#include "srv_presence.h"

struct td_srv_pres_entry {
    td_srv_pres_member *m;
    uint8_t *state;
    size_t len;
    int64_t last_recv_us, last_bc_us;
    int dirty;   /* changed since the last broadcast, inside the interval */
    int changed; /* to broadcast at the next flush */
    int in_bc;   /* in the broadcast-interval list */
    TAILQ_ENTRY(td_srv_pres_entry) ttl_link, bc_link;
};

struct td_srv_presence {
    int64_t interval_us, ttl_us;
    td_srv_metrics *m;
    struct lws_context *ctx;
    TAILQ_HEAD(, td_srv_pres_entry) ttl, bc;
    LIST_HEAD(, td_srv_pres_room) dirty;
    int flush_scheduled;
    int64_t tick_at; /* when sul_tick fires; 0: not armed */
    lws_sorted_usec_list_t sul_tick, sul_flush;
    /* cluster mode */
    td_srv_pres_relay relay;   /* publish NULL: none */
    uint64_t remote_seq;       /* ids of stand-ins */
    uint64_t hb_epoch;
    lws_sorted_usec_list_t sul_hb;
};

/* Another node's member. Its id here is its own (counted from 2^40, above
 * any session of this node), the one on its node is `origin`. */
typedef struct remote {
    td_srv_client client;
    td_srv_pres_member m;
    uint64_t origin;
    char node[64];
    char *user;
} remote;

static void remote_peers(td_srv_sub *u, td_srv_peers *ps)
{
    (void)u, (void)ps;
}

static void remote_leave(td_srv_sub *u, uint64_t peer_id)
{
    (void)u, (void)peer_id;
}

static const td_srv_client_ops remote_ops = {.peers = remote_peers, .leave = remote_leave};

static int is_remote(const td_srv_pres_member *m)
{
    return m->client->ops == &remote_ops;
}

static void relay_entries(td_srv_presence *p, td_srv_pres_room *r, int all);
static void relay_leave(td_srv_presence *p, td_srv_pres_member *m);
static void remote_free(td_srv_presence *p, td_srv_pres_member *m);

/* ---- the two time-ordered lists ------------------------------------------------ */

static void bc_unlink(td_srv_presence *p, td_srv_pres_entry *e)
{
    if (e->in_bc)
        TAILQ_REMOVE(&p->bc, e, bc_link);
    e->in_bc = 0;
}

static void bc_append(td_srv_presence *p, td_srv_pres_entry *e)
{
    TAILQ_INSERT_TAIL(&p->bc, e, bc_link);
    e->in_bc = 1;
}

/* ---- timers ------------------------------------------------------------------------ */

static void arm(td_srv_presence *p);

static void flush_cb(lws_sorted_usec_list_t *sul)
{
    td_srv_presence *p = lws_container_of(sul, td_srv_presence, sul_flush);
    p->flush_scheduled = 0;
    td_srv_pres_flush(p);
}

static void mark_changed(td_srv_presence *p, td_srv_pres_entry *e)
{
    td_srv_pres_room *r = e->m->room;
    e->changed = 1;
    r->changed = 1;
    if (!r->dirty) {
        r->dirty = 1;
        LIST_INSERT_HEAD(&p->dirty, r, dirty_link);
    }
    if (!p->flush_scheduled && p->ctx) {
        p->flush_scheduled = 1;
        lws_sul_schedule(p->ctx, 0, &p->sul_flush, flush_cb, 1);
    }
}

static void entry_drop(td_srv_presence *p, td_srv_pres_member *m);

static void tick(lws_sorted_usec_list_t *sul)
{
    td_srv_presence *p = lws_container_of(sul, td_srv_presence, sul_tick);
    int64_t now = td_srv_now_us();
    p->tick_at = 0;
    td_srv_pres_entry *e;
    while ((e = TAILQ_FIRST(&p->bc)) && e->last_bc_us + p->interval_us <= now) {
        bc_unlink(p, e);
        if (e->dirty) {
            e->dirty = 0;
            mark_changed(p, e);
        }
    }
    while ((e = TAILQ_FIRST(&p->ttl)) && e->last_recv_us + p->ttl_us <= now) {
        td_srv_pres_member *m = e->m;
        p->m->presence_expired++;
        entry_drop(p, m);
        if (is_remote(m))
            remote_free(p, m);
    }
    td_srv_pres_flush(p); /* re-arms */
}

static void arm(td_srv_presence *p)
{
    const td_srv_pres_entry *bc = TAILQ_FIRST(&p->bc), *ttl = TAILQ_FIRST(&p->ttl);
    int64_t at = 0;
    if (bc)
        at = bc->last_bc_us + p->interval_us;
    if (ttl && (!at || ttl->last_recv_us + p->ttl_us < at))
        at = ttl->last_recv_us + p->ttl_us;
    if (!at || !p->ctx) {
        if (p->tick_at) {
            lws_sul_cancel(&p->sul_tick);
            p->tick_at = 0;
        }
        return;
    }
    if (p->tick_at && p->tick_at <= at)
        return;
    int64_t now = td_srv_now_us();
    p->tick_at = at;
    lws_sul_schedule(p->ctx, 0, &p->sul_tick, tick, at > now ? at - now : 1);
}

/* ---- life cycle ---------------------------------------------------------------------- */

int td_srv_presence_new(td_srv_presence **out, uint64_t interval_ms, uint64_t ttl_ms,
                        td_srv_metrics *m)
{
    td_srv_presence *p = calloc(1, sizeof *p);
    if (!p)
        return -1;
    p->interval_us = (int64_t)interval_ms * 1000;
    p->ttl_us = (int64_t)ttl_ms * 1000;
    p->m = m;
    TAILQ_INIT(&p->ttl);
    TAILQ_INIT(&p->bc);
    *out = p;
    return 0;
}

static void hb_tick(lws_sorted_usec_list_t *sul);

static void hb_schedule(td_srv_presence *p)
{
    if (p->ctx && p->relay.publish)
        lws_sul_schedule(p->ctx, 0, &p->sul_hb, hb_tick, p->ttl_us / 3 > 0 ? p->ttl_us / 3 : 1);
}

/* Every room with entries of this node sends all of them again, so the
 * other nodes keep them alive (and a node that just started following
 * learns them). */
static void hb_tick(lws_sorted_usec_list_t *sul)
{
    td_srv_presence *p = lws_container_of(sul, td_srv_presence, sul_hb);
    td_srv_pres_entry *e;
    p->hb_epoch++;
    TAILQ_FOREACH(e, &p->ttl, ttl_link) {
        td_srv_pres_room *r = e->m->room;
        if (is_remote(e->m) || r->hb_epoch == p->hb_epoch)
            continue;
        r->hb_epoch = p->hb_epoch;
        relay_entries(p, r, 1);
    }
    hb_schedule(p);
}

void td_srv_presence_attach(td_srv_presence *p, struct lws_context *ctx)
{
    if (!ctx && p->ctx) {
        lws_sul_cancel(&p->sul_tick);
        lws_sul_cancel(&p->sul_flush);
        lws_sul_cancel(&p->sul_hb);
        p->tick_at = 0;
        p->flush_scheduled = 0;
    }
    p->ctx = ctx;
    hb_schedule(p);
}

void td_srv_presence_relay(td_srv_presence *p, const td_srv_pres_relay *r)
{
    memset(&p->relay, 0, sizeof p->relay);
    if (r)
        p->relay = *r;
    hb_schedule(p);
}

void td_srv_presence_free(td_srv_presence *p)
{
    /* Every member has left by now (their subscriptions are gone). */
    free(p);
}

/* ---- members and entries ------------------------------------------------------------ */

/* Removes m's entry; the other members get a LEAVE. */
static void entry_drop(td_srv_presence *p, td_srv_pres_member *m)
{
    td_srv_pres_entry *e = m->entry;
    if (!e)
        return;
    TAILQ_REMOVE(&p->ttl, e, ttl_link);
    bc_unlink(p, e);
    m->entry = NULL;
    free(e->state);
    free(e);
    relay_leave(p, m);
    td_srv_pres_member *o;
    LIST_FOREACH(o, &m->room->members, link)
        if (o != m)
            o->client->ops->leave(o->sub, m->client->id);
}

static void send_peers(td_srv_pres_member *to, td_srv_peers *ps)
{
    to->client->ops->peers(to->sub, ps);
}

static void peers_done(td_srv_peers *ps)
{
    if (ps->shared && ps->shared_free)
        ps->shared_free(ps->shared);
    ps->shared = NULL;
}

void td_srv_pres_join(td_srv_presence *p, td_srv_pres_room *room, td_srv_pres_member *m,
                      td_srv_sub *sub, td_srv_client *client)
{
    (void)p;
    if (!m->room) {
        m->room = room;
        m->sub = sub;
        m->client = client;
        LIST_INSERT_HEAD(&room->members, m, link);
    }
    /* A snapshot of the others, for the newcomer (or a resync). */
    td_srv_peers ps = {room, 0, sub, NULL, NULL};
    td_srv_pres_member *o;
    LIST_FOREACH(o, &room->members, link)
        if (o != m && o->entry) {
            send_peers(m, &ps);
            break;
        }
    peers_done(&ps);
}

void td_srv_pres_leave(td_srv_presence *p, td_srv_pres_member *m)
{
    td_srv_pres_room *r = m->room;
    if (!r)
        return;
    entry_drop(p, m);
    LIST_REMOVE(m, link);
    m->room = NULL;
    arm(p);
}

void td_srv_pres_room_close(td_srv_presence *p, td_srv_pres_room *room)
{
    td_srv_pres_member *m = LIST_FIRST(&room->members), *nx;
    for (; m; m = nx) {
        nx = LIST_NEXT(m, link);
        if (is_remote(m))
            remote_free(p, m);
    }
    if (room->dirty)
        LIST_REMOVE(room, dirty_link);
    room->dirty = 0;
}

int td_srv_pres_set(td_srv_presence *p, td_srv_pres_member *m, const uint8_t *state,
                    size_t len)
{
    td_srv_pres_entry *e = m->entry;
    if (len == 0) { /* heartbeat */
        if (e) {
            e->last_recv_us = td_srv_now_us();
            TAILQ_REMOVE(&p->ttl, e, ttl_link);
            TAILQ_INSERT_TAIL(&p->ttl, e, ttl_link);
        }
        return 0;
    }
    p->m->presence_updates++;
    uint8_t *st = malloc(len);
    if (!st)
        return -1;
    memcpy(st, state, len);
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e) {
            free(st);
            return -1;
        }
        e->m = m;
        m->entry = e;
    } else {
        TAILQ_REMOVE(&p->ttl, e, ttl_link);
    }
    free(e->state);
    e->state = st;
    e->len = len;
    e->last_recv_us = td_srv_now_us();
    TAILQ_INSERT_TAIL(&p->ttl, e, ttl_link);
    if (e->in_bc)
        e->dirty = 1; /* inside its interval: the timer sends the last state */
    else
        mark_changed(p, e);
    arm(p);
    return 0;
}

int td_srv_peers_next(const td_srv_peers *ps, void **pos, td_srv_peer *out)
{
    const td_srv_pres_member *m = *pos ? LIST_NEXT((const td_srv_pres_member *)*pos, link)
                                       : LIST_FIRST(&ps->room->members);
    for (; m; m = LIST_NEXT(m, link)) {
        const td_srv_pres_entry *e = m->entry;
        if ((ps->skip && m->sub == ps->skip) || !e || (ps->only_changed && !e->changed))
            continue;
        out->id = m->client->id;
        out->agent = m->client->agent;
        out->user = m->client->user;
        out->user_len = m->client->user_len;
        out->state = e->state;
        out->len = e->len;
        *pos = (void *)m;
        return 1;
    }
    return 0;
}

/* ---- broadcasts --------------------------------------------------------------------- */

/* One PRESENCE per member with the changed entries: those whose own entry
 * did not change share one message; one whose entry changed gets the
 * others' (nothing, if it was the only change). */
static void flush_room(td_srv_presence *p, td_srv_pres_room *r, int64_t now)
{
    size_t nchanged = 0;
    r->changed = 0;
    td_srv_pres_member *m, *o;
    LIST_FOREACH(m, &r->members, link)
        if (m->entry && m->entry->changed)
            nchanged++;
    if (!nchanged)
        return;
    td_srv_peers all = {r, 1, NULL, NULL, NULL};
    LIST_FOREACH(o, &r->members, link) {
        if (o->entry && o->entry->changed) {
            if (nchanged > 1) {
                td_srv_peers own = {r, 1, o->sub, NULL, NULL};
                send_peers(o, &own);
                peers_done(&own);
            }
        } else {
            send_peers(o, &all);
        }
    }
    peers_done(&all);
    relay_entries(p, r, 0);
    LIST_FOREACH(m, &r->members, link) {
        td_srv_pres_entry *e = m->entry;
        if (!e || !e->changed)
            continue;
        e->changed = 0;
        e->dirty = 0;
        e->last_bc_us = now;
        p->m->presence_broadcasts++;
        bc_unlink(p, e);
        bc_append(p, e);
    }
}

void td_srv_pres_flush(td_srv_presence *p)
{
    int64_t now = td_srv_now_us();
    td_srv_pres_room *r;
    while ((r = LIST_FIRST(&p->dirty))) {
        LIST_REMOVE(r, dirty_link);
        r->dirty = 0;
        if (r->changed)
            flush_room(p, r, now);
    }
    arm(p);
}

/* ---- cluster mode --------------------------------------------------------------------- */

static void put_entry(td_srv_wbuf *w, const td_srv_pres_member *m, const uint8_t *state,
                      size_t len)
{
    td_srv_put_varint(w, m->client->id);
    td_srv_put_varint(w, m->client->agent);
    td_srv_put_bytes(w, m->client->user, m->client->user_len);
    td_srv_put_bytes(w, state, len);
}

static void relay_send(td_srv_presence *p, td_srv_pres_room *r, td_srv_wbuf *w, size_t n)
{
    /* The count goes in front: the entries are written after a 10-byte
     * head, the varint right before them. */
    uint8_t cnt[10];
    size_t k = 0;
    for (uint64_t v = n; k == 0 || v; v >>= 7)
        cnt[k++] = (uint8_t)((v & 0x7f) | (v >> 7 ? 0x80 : 0));
    if (n && !w->oom) {
        uint8_t *start = td_srv_wbuf_msg(w) - k;
        memcpy(start, cnt, k);
        p->relay.publish(p->relay.ud, r, start, w->len + k);
    }
    td_srv_wbuf_free(w);
}

/* This node's entries of room r: the changed ones, or all. */
static void relay_entries(td_srv_presence *p, td_srv_pres_room *r, int all)
{
    if (!p->relay.publish)
        return;
    td_srv_wbuf w;
    size_t n = 0;
    td_srv_pres_member *m;
    td_srv_wbuf_init(&w, 10);
    LIST_FOREACH(m, &r->members, link) {
        const td_srv_pres_entry *e = m->entry;
        if (is_remote(m) || !e || (!all && !e->changed))
            continue;
        put_entry(&w, m, e->state, e->len);
        n++;
    }
    relay_send(p, r, &w, n);
}

/* m, of this node, left (or expired): the others drop it now. */
static void relay_leave(td_srv_presence *p, td_srv_pres_member *m)
{
    if (!p->relay.publish || is_remote(m))
        return;
    td_srv_wbuf w;
    td_srv_wbuf_init(&w, 10);
    put_entry(&w, m, NULL, 0);
    relay_send(p, m->room, &w, 1);
}

static void remote_free(td_srv_presence *p, td_srv_pres_member *m)
{
    remote *x = lws_container_of(m, remote, m);
    td_srv_pres_leave(p, m);
    free(x->user);
    free(x);
}

static td_srv_pres_member *remote_find(td_srv_pres_room *room, const char *node,
                                       uint64_t origin)
{
    td_srv_pres_member *m;
    LIST_FOREACH(m, &room->members, link) {
        if (!is_remote(m))
            continue;
        remote *x = lws_container_of(m, remote, m);
        if (x->origin == origin && strcmp(x->node, node) == 0)
            return m;
    }
    return NULL;
}

static td_srv_pres_member *remote_new(td_srv_presence *p, td_srv_pres_room *room,
                                      const char *node, uint64_t origin, uint64_t agent,
                                      const td_srv_bytes *user)
{
    remote *x = calloc(1, sizeof *x);
    char *u = malloc(user->len ? user->len : 1);
    if (!x || !u) {
        free(x);
        free(u);
        return NULL;
    }
    memcpy(u, user->ptr, user->len);
    x->client.ops = &remote_ops;
    x->client.id = ((uint64_t)1 << 40) + ++p->remote_seq;
    x->client.agent = agent;
    x->client.user = u;
    x->client.user_len = user->len;
    x->user = u;
    x->origin = origin;
    snprintf(x->node, sizeof x->node, "%s", node);
    x->m.room = room;
    x->m.client = &x->client;
    LIST_INSERT_HEAD(&room->members, &x->m, link);
    return &x->m;
}

int td_srv_pres_remote(td_srv_presence *p, td_srv_pres_room *room, const char *node,
                       const uint8_t *msg, size_t len)
{
    size_t pos = 0;
    uint64_t n;
    if (td_srv_read_varint(msg, len, &pos, &n) < 0)
        return -1;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t origin, agent;
        td_srv_bytes user, state;
        if (td_srv_read_varint(msg, len, &pos, &origin) < 0 ||
            td_srv_read_varint(msg, len, &pos, &agent) < 0 ||
            td_srv_read_bytes(msg, len, &pos, &user) < 0 ||
            td_srv_read_bytes(msg, len, &pos, &state) < 0)
            return -1;
        td_srv_pres_member *m = remote_find(room, node, origin);
        if (!state.len) {
            if (m)
                remote_free(p, m);
            continue;
        }
        if (!m && !(m = remote_new(p, room, node, origin, agent, &user)))
            return -1;
        const td_srv_pres_entry *e = m->entry;
        /* A heartbeat repeats the state: it only keeps the entry alive. */
        int same = e && e->len == state.len && memcmp(e->state, state.ptr, state.len) == 0;
        if (td_srv_pres_set(p, m, same ? NULL : state.ptr, same ? 0 : state.len) < 0)
            return -1;
    }
    return 0;
}
