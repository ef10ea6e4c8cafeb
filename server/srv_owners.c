/*
 * srv_owners.c -- the agent -> author bindings of a document (srv_owners.h).
 */
#include <stdlib.h>
#include <string.h>

#include "srv_owners.h"

/* Index of the first binding with agent >= `agent`. */
static size_t lower(const td_srv_owners *t, uint64_t agent)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->v[mid]->agent < agent)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static td_srv_binding *find(const td_srv_owners *t, uint64_t agent)
{
    size_t i = lower(t, agent);
    return i < t->n && t->v[i]->agent == agent ? t->v[i] : NULL;
}

int td_srv_owners_allow(const td_srv_owners *t, const td_srv_client *c, uint64_t agent,
                        int *unowned)
{
    const td_srv_binding *b = find(t, agent);
    *unowned = !b;
    if (!b)
        return 1;
    if (b->client)
        return b->client == c;
    return c->author_durable && b->owner_len == c->author_len &&
           memcmp(b->owner, c->author, c->author_len) == 0;
}

/* Inserts a new binding in agent order. */
static td_srv_binding *insert(td_srv_owners *t, uint64_t agent, const char *owner,
                              size_t len)
{
    size_t i = lower(t, agent);
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 8;
        td_srv_binding **v = realloc(t->v, cap * sizeof *v);
        if (!v)
            return NULL;
        t->v = v;
        t->cap = cap;
    }
    td_srv_binding *b = calloc(1, sizeof *b + len);
    if (!b)
        return NULL;
    b->agent = agent;
    b->table = t;
    b->owner_len = len;
    if (len)
        memcpy(b->owner, owner, len);
    memmove(&t->v[i + 1], &t->v[i], (t->n - i) * sizeof *t->v);
    t->v[i] = b;
    t->n++;
    return b;
}

int td_srv_owners_bind(td_srv_owners *t, td_srv_client *c, uint64_t agent)
{
    td_srv_binding *b;
    if (find(t, agent))
        return 0;
    if (c->author_durable)
        return insert(t, agent, c->author, c->author_len) ? 0 : -1;
    if (!(b = insert(t, agent, NULL, 0)))
        return -1;
    b->client = c;
    LIST_INSERT_HEAD(&c->bindings, b, client_link);
    return 0;
}

int td_srv_owners_add(td_srv_owners *t, uint64_t agent, const char *owner, size_t len)
{
    if (find(t, agent))
        return 0;
    return insert(t, agent, owner, len) ? 0 : -1;
}

static void unbind(td_srv_binding *b)
{
    if (b->client)
        LIST_REMOVE(b, client_link);
    free(b);
}

void td_srv_owners_clear(td_srv_owners *t)
{
    for (size_t i = 0; i < t->n; i++)
        unbind(t->v[i]);
    free(t->v);
    memset(t, 0, sizeof *t);
}

void td_srv_owners_client_gone(td_srv_client *c)
{
    td_srv_binding *b;
    while ((b = LIST_FIRST(&c->bindings))) {
        td_srv_owners *t = b->table;
        size_t i = lower(t, b->agent);
        memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof *t->v);
        t->n--;
        unbind(b);
    }
}
