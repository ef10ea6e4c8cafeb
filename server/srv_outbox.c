/*
 * srv_outbox.c -- batches acknowledged during a broker outage, published
 * when it returns (srv_outbox.h).
 *
 * A plain FIFO: outages are rare and short next to the traffic, so a list
 * walked per flush and per answer is enough; in-flight entries are few
 * (one flush's worth) and found by tag from the head.
 */
#define _POSIX_C_SOURCE 200809L

#include "srv_outbox.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <libwebsockets.h>

typedef struct entry {
    TAILQ_ENTRY(entry) link;
    uint64_t tag; /* 0: not in flight */
    size_t doc_len, len;
    uint8_t *batch;
    char doc[];
} entry;

struct td_srv_outbox {
    TAILQ_HEAD(, entry) q;
    size_t n;
    uint64_t next_tag;
};

td_srv_outbox *td_srv_outbox_new(void)
{
    td_srv_outbox *o = calloc(1, sizeof *o);
    if (o)
        TAILQ_INIT(&o->q);
    return o;
}

static void entry_remove(td_srv_outbox *o, entry *e)
{
    TAILQ_REMOVE(&o->q, e, link);
    o->n--;
    free(e->batch);
    free(e);
}

void td_srv_outbox_free(td_srv_outbox *o)
{
    if (!o)
        return;
    while (!TAILQ_EMPTY(&o->q))
        entry_remove(o, TAILQ_FIRST(&o->q));
    free(o);
}

int td_srv_outbox_add(td_srv_outbox *o, const char *doc, size_t doc_len, const uint8_t *batch,
                      size_t len)
{
    entry *e = malloc(sizeof *e + doc_len);
    uint8_t *copy = malloc(len ? len : 1);
    if (!e || !copy) {
        free(e);
        free(copy);
        return -1;
    }
    memcpy(e->doc, doc, doc_len);
    if (len)
        memcpy(copy, batch, len);
    e->doc_len = doc_len;
    e->batch = copy;
    e->len = len;
    e->tag = 0;
    TAILQ_INSERT_TAIL(&o->q, e, link);
    o->n++;
    return 0;
}

void td_srv_outbox_flush(td_srv_outbox *o, td_srv_cluster *cl)
{
    entry *e, *next;
    for (e = TAILQ_FIRST(&o->q); e; e = next) {
        next = TAILQ_NEXT(e, link);
        if (e->tag)
            continue;
        uint64_t tag = TD_SRV_OUTBOX_TAG | ++o->next_tag;
        td_srv_cluster_err err =
            td_srv_cluster_publish(cl, e->doc, e->doc_len, 0, e->batch, e->len, tag);
        if (err == TD_SRV_CLUSTER_OK) {
            e->tag = tag;
        } else if (err == TD_SRV_CLUSTER_ERR_UNAVAILABLE || err == TD_SRV_CLUSTER_ERR_NOMEM) {
            return; /* the next flush goes on from here */
        } else {
            lwsl_err("cluster: an outbox batch of '%.*s' cannot be published (%s): it stays on "
                     "this node only\n",
                     (int)e->doc_len, e->doc, td_srv_cluster_strerror(err));
            entry_remove(o, e);
        }
    }
}

int td_srv_outbox_answered(td_srv_outbox *o, uint64_t tag, td_srv_cluster_err err)
{
    entry *e;
    TAILQ_FOREACH(e, &o->q, link)
        if (e->tag == tag)
            break;
    if (!e)
        return 0;
    if (err == TD_SRV_CLUSTER_OK) {
        entry_remove(o, e);
        return 1;
    }
    if (err == TD_SRV_CLUSTER_ERR_UNAVAILABLE) {
        e->tag = 0; /* again at the next flush */
        return 0;
    }
    lwsl_err("cluster: JetStream refused an outbox batch of '%.*s' (%s): it stays on this node "
             "only\n",
             (int)e->doc_len, e->doc, td_srv_cluster_strerror(err));
    entry_remove(o, e);
    return 1;
}

size_t td_srv_outbox_len(const td_srv_outbox *o)
{
    return o->n;
}
