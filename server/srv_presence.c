/*
 * srv_presence.c -- who is where: the ephemeral presence channel.
 *
 * Per document, each subscribed session may hold one entry (its latest
 * opaque state); nothing of it is ever stored. An entry belongs to the sub
 * (session x document) that created it, so only that connection can change
 * or remove it.
 *
 * Throttling: the first change after a quiet interval is broadcast at the
 * next flush; changes inside the interval only mark the entry dirty, and the
 * presence timer broadcasts the last state when the interval ends. Because
 * the interval and the TTL are the same for every entry, two server-wide
 * lists ordered by time suffice (no heap): `bc` holds entries broadcast
 * within the last interval, oldest first; `ttl` holds every entry by last
 * receive time, oldest first. One lws_sul fires at the earliest deadline of
 * either list head.
 */
#include <stdlib.h>
#include <string.h>

#include "srv_internal.h"

static void ttl_unlink(td_srv_server *srv, td_srv_presence *p)
{
    if (p->ttl_prev)
        p->ttl_prev->ttl_next = p->ttl_next;
    else if (srv->ttl_head == p)
        srv->ttl_head = p->ttl_next;
    if (p->ttl_next)
        p->ttl_next->ttl_prev = p->ttl_prev;
    else if (srv->ttl_tail == p)
        srv->ttl_tail = p->ttl_prev;
    p->ttl_next = p->ttl_prev = NULL;
}

static void ttl_append(td_srv_server *srv, td_srv_presence *p)
{
    p->ttl_prev = srv->ttl_tail;
    p->ttl_next = NULL;
    if (srv->ttl_tail)
        srv->ttl_tail->ttl_next = p;
    else
        srv->ttl_head = p;
    srv->ttl_tail = p;
}

static void bc_unlink(td_srv_server *srv, td_srv_presence *p)
{
    if (!p->in_bc)
        return;
    if (p->bc_prev)
        p->bc_prev->bc_next = p->bc_next;
    else
        srv->bc_head = p->bc_next;
    if (p->bc_next)
        p->bc_next->bc_prev = p->bc_prev;
    else
        srv->bc_tail = p->bc_prev;
    p->bc_next = p->bc_prev = NULL;
    p->in_bc = 0;
}

static void bc_append(td_srv_server *srv, td_srv_presence *p)
{
    p->bc_prev = srv->bc_tail;
    p->bc_next = NULL;
    if (srv->bc_tail)
        srv->bc_tail->bc_next = p;
    else
        srv->bc_head = p;
    srv->bc_tail = p;
    p->in_bc = 1;
}

static void mark_changed(td_srv_presence *p)
{
    td_srv_doc *d = p->sub->doc;
    p->changed = 1;
    d->pres_changed = 1;
    td_srv_doc_mark(d);
    td_srv_flush_soon(d->srv);
}

void td_srv_presence_recv(td_srv_session *s, const td_srv_msg *m)
{
    td_srv_server *srv = s->srv;
    const char *id = (const char *)m->doc.ptr;
    td_srv_sub *u;
    td_srv_presence *p;

    if (!(s->tok.rights & TD_SRV_RIGHT_PRESENCE)) {
        td_srv_send_error(s, TD_SRV_E_READ_ONLY, id, m->doc.len, 0,
                          "the token does not grant presence");
        return;
    }
    if (m->state.len > srv->cfg.max_presence) {
        td_srv_send_error(s, TD_SRV_E_TOO_LARGE, id, m->doc.len, 0,
                          "presence state of %zu bytes exceeds the limit of %llu",
                          m->state.len, (unsigned long long)srv->cfg.max_presence);
        return;
    }
    u = td_srv_sub_find(s, m->doc.ptr, m->doc.len);
    if (!u) {
        td_srv_send_error(s, TD_SRV_E_NOT_SUBSCRIBED, id, m->doc.len, 0,
                          "PRESENCE for a document not subscribed");
        return;
    }
    p = u->pr;
    if (m->state.len == 0) { /* heartbeat */
        if (p) {
            p->last_recv_us = td_srv_now_us();
            ttl_unlink(srv, p);
            ttl_append(srv, p);
        }
        return;
    }
    srv->m.presence_updates++;
    uint8_t *st = malloc(m->state.len);
    if (!st)
        return;
    memcpy(st, m->state.ptr, m->state.len);
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p) {
            free(st);
            return;
        }
        p->sub = u;
        u->pr = p;
    } else {
        ttl_unlink(srv, p);
    }
    free(p->state);
    p->state = st;
    p->len = m->state.len;
    p->last_recv_us = td_srv_now_us();
    ttl_append(srv, p);
    if (p->in_bc)
        p->dirty = 1; /* inside its interval: the timer sends the last state */
    else
        mark_changed(p);
    td_srv_presence_arm(srv);
}

static td_srv_frame *leave_frame(td_srv_doc *d, uint64_t session)
{
    td_srv_wbuf w;
    td_srv_msg m;
    memset(&m, 0, sizeof m);
    m.type = TD_SRV_MSG_LEAVE;
    m.doc.ptr = (const uint8_t *)d->id;
    m.doc.len = d->id_len;
    m.session = session;
    td_srv_wbuf_init(&w, LWS_PRE);
    td_srv_msg_encode(&m, &w);
    return td_srv_frame_from(&w);
}

void td_srv_presence_drop(td_srv_sub *u, int send_leave)
{
    td_srv_presence *p = u->pr;
    td_srv_doc *d = u->doc;
    td_srv_server *srv = d->srv;
    if (!p)
        return;
    ttl_unlink(srv, p);
    bc_unlink(srv, p);
    u->pr = NULL;
    free(p->state);
    free(p);
    if (!send_leave)
        return;
    td_srv_frame *f = NULL;
    for (td_srv_sub *o = d->subs; o; o = o->doc_next) {
        if (o == u || o->waiting)
            continue;
        if (!f && !(f = leave_frame(d, u->sess->id)))
            return;
        td_srv_send(o->sess, f);
    }
    td_srv_frame_unref(f);
}

static void put_entry(td_srv_wbuf *items, td_srv_presence *p)
{
    td_srv_session *s = p->sub->sess;
    td_srv_item_put_peer(items, s->id, s->agent, s->tok.user, s->tok.user_len, p->state,
                         p->len);
}

/* A PRESENCE frame of d's entries that are `changed` (or all, for a
 * snapshot), leaving out `skip`'s own. NULL if there is none. */
static td_srv_frame *peers_frame(td_srv_doc *d, td_srv_sub *skip, int only_changed)
{
    td_srv_wbuf items;
    uint64_t n = 0;
    td_srv_wbuf_init(&items, 0);
    for (td_srv_sub *u = d->subs; u; u = u->doc_next) {
        if (u == skip || !u->pr || (only_changed && !u->pr->changed))
            continue;
        put_entry(&items, u->pr);
        n++;
    }
    return td_srv_list_frame(TD_SRV_MSG_PEERS, d, n, &items);
}

void td_srv_presence_snapshot(td_srv_sub *u)
{
    td_srv_frame *f = peers_frame(u->doc, u, 0);
    if (f) {
        td_srv_send(u->sess, f);
        td_srv_frame_unref(f);
    }
}

void td_srv_presence_flush_doc(td_srv_doc *d, int64_t now)
{
    td_srv_server *srv = d->srv;
    td_srv_frame *all = NULL;
    size_t nchanged = 0;
    d->pres_changed = 0;
    for (td_srv_sub *u = d->subs; u; u = u->doc_next)
        if (u->pr && u->pr->changed)
            nchanged++;
    if (!nchanged)
        return;
    for (td_srv_sub *o = d->subs; o; o = o->doc_next) {
        if (o->waiting)
            continue;
        if (o->pr && o->pr->changed) {
            if (nchanged > 1) {
                td_srv_frame *f = peers_frame(d, o, 1);
                td_srv_send(o->sess, f);
                td_srv_frame_unref(f);
            }
        } else {
            if (!all)
                all = peers_frame(d, NULL, 1);
            td_srv_send(o->sess, all);
        }
    }
    td_srv_frame_unref(all);
    for (td_srv_sub *u = d->subs; u; u = u->doc_next) {
        td_srv_presence *p = u->pr;
        if (!p || !p->changed)
            continue;
        p->changed = 0;
        p->dirty = 0;
        p->last_bc_us = now;
        srv->m.presence_broadcasts++;
        bc_unlink(srv, p);
        bc_append(srv, p);
    }
}

static void presence_tick(lws_sorted_usec_list_t *sul)
{
    td_srv_server *srv = lws_container_of(sul, td_srv_server, sul_presence);
    int64_t now = td_srv_now_us();
    int64_t iv = (int64_t)srv->cfg.presence_interval_ms * 1000;
    int64_t ttl = (int64_t)srv->cfg.presence_ttl_ms * 1000;

    srv->presence_at = 0;
    while (srv->bc_head && srv->bc_head->last_bc_us + iv <= now) {
        td_srv_presence *p = srv->bc_head;
        bc_unlink(srv, p);
        if (p->dirty) {
            p->dirty = 0;
            mark_changed(p);
        }
    }
    while (srv->ttl_head && srv->ttl_head->last_recv_us + ttl <= now) {
        td_srv_presence *p = srv->ttl_head;
        srv->m.presence_expired++;
        td_srv_presence_drop(p->sub, 1);
    }
    td_srv_flush(srv); /* re-arms */
}

void td_srv_presence_arm(td_srv_server *srv)
{
    int64_t at = 0;
    int64_t iv = (int64_t)srv->cfg.presence_interval_ms * 1000;
    int64_t ttl = (int64_t)srv->cfg.presence_ttl_ms * 1000;
    if (srv->bc_head)
        at = srv->bc_head->last_bc_us + iv;
    if (srv->ttl_head && (!at || srv->ttl_head->last_recv_us + ttl < at))
        at = srv->ttl_head->last_recv_us + ttl;
    if (!at || !srv->ctx) {
        if (srv->presence_at) {
            lws_sul_cancel(&srv->sul_presence);
            srv->presence_at = 0;
        }
        return;
    }
    if (srv->presence_at && srv->presence_at <= at)
        return;
    int64_t now = td_srv_now_us();
    srv->presence_at = at;
    lws_sul_schedule(srv->ctx, 0, &srv->sul_presence, presence_tick,
                     at > now ? at - now : 1);
}
