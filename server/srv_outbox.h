/*
 * srv_outbox.h -- private: batches a node acknowledged while the cluster's
 * broker was away (--cluster-outage outbox, docs/CLUSTER.md), waiting to be
 * published.
 *
 * An entry holds its own copy of the document id and the batch: the
 * document may unload before the broker returns. Entries go out in the
 * order they were added; an entry leaves the outbox only when JetStream
 * acknowledged it (or refused it for good: a message too large, which is
 * logged). An unanswered or failed publish stays for the next flush.
 * Publishing the same batch twice is harmless (ops are idempotent), which
 * is what makes the retries simple.
 *
 * The outbox lives in memory: what a node held in it when it died is on its
 * disk only. That is why the service also puts every document's whole state
 * in the outbox when it loads the document in outbox mode (srv_service.c).
 */
#ifndef SRV_OUTBOX_H
#define SRV_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "srv_cluster.h"

/* Tags of outbox publishes (td_srv_cluster_publish): apart from the
 * service's own record tags. */
#define TD_SRV_OUTBOX_TAG (UINT64_C(1) << 62)

typedef struct td_srv_outbox td_srv_outbox;

/* NULL when out of memory. */
td_srv_outbox *td_srv_outbox_new(void);
void td_srv_outbox_free(td_srv_outbox *o);
/* Queues a copy of the batch. Returns 0, or -1 when out of memory. */
int td_srv_outbox_add(td_srv_outbox *o, const char *doc, size_t doc_len, const uint8_t *batch,
                      size_t len);
/* Publishes every entry not in flight (call while the broker is up). */
void td_srv_outbox_flush(td_srv_outbox *o, td_srv_cluster *cl);
/* The broker's answer to an outbox publish (tag has TD_SRV_OUTBOX_TAG).
 * Returns 1 if the entry left the outbox. */
int td_srv_outbox_answered(td_srv_outbox *o, uint64_t tag, td_srv_cluster_err err);
/* Entries waiting (in flight or not). */
size_t td_srv_outbox_len(const td_srv_outbox *o);

#endif /* SRV_OUTBOX_H */
