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

void td_srv_yaware_free(td_srv_yaware *a)
{
    for (size_t i = 0; i < a->nown; i++)
        free(a->own[i].json);
    free(a->seen);
    memset(a, 0, sizeof *a);
}

static td_srv_yaw_seen *seen_find(td_srv_yaware *a, uint32_t client)
{
    for (size_t i = 0; i < a->nseen; i++)
        if (a->seen[i].client == client)
            return &a->seen[i];
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
 * clock, or the same clock to remove). */
static int may_set(td_srv_yaware *a, const td_srv_yaw *e, td_srv_yaw_own **slot)
{
    *slot = own_find(a, (uint32_t)e->client);
    if (seen_find(a, (uint32_t)e->client))
        return 0;
    if (!*slot)
        return a->nown < TD_SRV_YAW_OWN_MAX;
    return e->clock > (*slot)->clock || (e->clock == (*slot)->clock && e->is_null);
}

int td_srv_yaware_take(td_srv_yaware *a, const uint8_t *upd, size_t len, td_srv_wbuf *state)
{
    size_t pos = 0;
    td_srv_yaw e;
    int changed = 0;
    td_srv_wbuf_init(state, 0);
    while (td_srv_yaw_next(upd, len, &pos, &e)) {
        td_srv_yaw_own *o;
        if (!may_set(a, &e, &o))
            continue;
        char *json = malloc(e.json_len ? e.json_len : 1);
        if (!json)
            return -1;
        memcpy(json, e.json, e.json_len);
        if (!o) {
            o = &a->own[a->nown++];
            o->client = (uint32_t)e.client;
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
        td_srv_yaw_put(state, a->own[i].client, a->own[i].clock, a->own[i].json,
                       a->own[i].json_len);
    return state->oom ? -1 : 0;
}

static int seen_note(td_srv_yaware *a, uint64_t peer, uint32_t client, uint32_t clock)
{
    td_srv_yaw_seen *s = seen_find(a, client);
    if (!s) {
        if (a->nseen == a->seen_cap) {
            size_t cap = a->seen_cap ? 2 * a->seen_cap : 8;
            td_srv_yaw_seen *v = realloc(a->seen, cap * sizeof *v);
            if (!v)
                return -1;
            a->seen = v;
            a->seen_cap = cap;
        }
        s = &a->seen[a->nseen++];
    }
    s->peer = peer;
    s->client = client;
    s->clock = clock;
    return 0;
}

int td_srv_yaware_peers(td_srv_yaware *a, const td_srv_peers *ps, td_srv_wbuf *entries,
                        uint64_t *n)
{
    void *it = NULL;
    td_srv_peer p;
    *n = 0;
    while (td_srv_peers_next(ps, &it, &p)) {
        size_t pos = 0;
        td_srv_yaw e;
        /* The state was written by td_srv_yaware_take: checked already. */
        while (td_srv_yaw_next(p.state, p.len, &pos, &e)) {
            if (seen_note(a, p.id, (uint32_t)e.client, (uint32_t)e.clock) < 0)
                return -1;
            td_srv_yaw_put(entries, e.client, e.clock, e.json, e.json_len);
            (*n)++;
        }
    }
    return entries->oom ? -1 : 0;
}

void td_srv_yaware_leave(td_srv_yaware *a, uint64_t peer, td_srv_wbuf *entries, uint64_t *n)
{
    size_t j = 0;
    *n = 0;
    for (size_t i = 0; i < a->nseen; i++) {
        const td_srv_yaw_seen *s = &a->seen[i];
        if (s->peer == peer) {
            td_srv_yaw_put(entries, s->client, s->clock, "null", 4);
            (*n)++;
        } else {
            a->seen[j++] = *s;
        }
    }
    a->nseen = j;
}
