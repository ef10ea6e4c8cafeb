/*
 * srv_owners.h -- private: who may write each agent id of a document
 * (PROTOCOL.md section 12, "Authorship").
 *
 * An agent id belongs to the author that introduced it in the document: the
 * first accepted batch with ops of an agent binds the agent to the sender's
 * author, and from then on only that author may add ops of it. Without this
 * a writer could send ops under another replica's id and next seqs; the
 * document would skip that replica's own later ops as already known, while
 * acknowledging them, and the two would never converge again.
 *
 * With tokens the author is the token's user: the binding is stored with
 * the document (storage's owner records) and outlives connections. On an
 * open server the author is the connection: the binding lives as long as it
 * does, so a second live connection cannot claim an agent in use.
 */
#ifndef SRV_OWNERS_H
#define SRV_OWNERS_H

#include "srv_subscriber.h"

/* A document's bindings, sorted by agent (found by binary search; a new
 * agent is rare next to the ops it then writes). */
typedef struct td_srv_owners {
    td_srv_binding **v;
    size_t n, cap;
} td_srv_owners;

struct td_srv_binding {
    uint64_t agent;
    td_srv_owners *table;
    td_srv_client *client; /* bound to a live connection; NULL: to owner */
    LIST_ENTRY(td_srv_binding) client_link;
    size_t owner_len;
    char owner[]; /* the author's name (durable bindings) */
};

/* 1 if c may add ops of agent: *unowned says whether nobody owns it yet
 * (the batch will bind it). */
int td_srv_owners_allow(const td_srv_owners *t, const td_srv_client *c, uint64_t agent,
                        int *unowned);
/* Binds agent to c's author. Returns 0, or -1 when out of memory. */
int td_srv_owners_bind(td_srv_owners *t, td_srv_client *c, uint64_t agent);
/* A durable binding read from the store (kept if the agent is bound
 * already). Returns 0, or -1 when out of memory. */
int td_srv_owners_add(td_srv_owners *t, uint64_t agent, const char *owner, size_t len);
/* Frees every binding; bindings to connections leave their clients. */
void td_srv_owners_clear(td_srv_owners *t);
/* c disconnected: the agents bound to it are free again. */
void td_srv_owners_client_gone(td_srv_client *c);

#endif /* SRV_OWNERS_H */
