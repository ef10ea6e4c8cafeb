/*
 * srv_model.h -- private: the document-model interface, everything the
 * document service asks of a document without knowing what kind it is.
 *
 * A model decodes, validates and applies a client's batch, answers "what
 * does a peer at this state lack" (diff), names its state (the version
 * vector stored beside each batch) and reads as JSON. It does no I/O of its
 * own: documents are read through the store, which validates them like
 * network input. A model's calls run on the loop thread, except `load`,
 * which runs on the loader thread and touches nothing shared.
 *
 * tandem's own CRDT (crdt/) is the first model (srv_model_tandem.c), the
 * Yjs document model (crdt/yjs/) the second (srv_model_yjs.c). Each
 * document is of one kind, recorded durably by the store with its first
 * batch (td_store_kind); the service keeps one table per kind.
 */
#ifndef SRV_MODEL_H
#define SRV_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "tandem_srv.h"
#include "tandem_store.h"

typedef struct td_srv_mdoc td_srv_mdoc; /* a model's document, opaque */

/* What applying one batch did. */
typedef struct td_srv_applied {
    size_t ops_new;       /* ops integrated now */
    size_t ops_duplicate; /* ops of the batch already known */
    int partial; /* on failure: part of the batch may be in the document (out of
                  * memory midway): it must be reloaded */
    int parked;  /* (with rules.park) the batch waits for missing dependencies */
    int empty;   /* the batch holds no ops at all (a Yjs provider's empty sync step 2) */
    /* Refused with missing_ops: the op it waits for (see `has`); 0 if the
     * model cannot name one. */
    int waits;
    uint64_t wait_agent, wait_seq;
} td_srv_applied;

/* What the service requires of a batch besides validity. A server never
 * parks a batch whose dependencies are missing (it is refused with
 * missing_ops, since only the sender can fill the gap), and every agent with
 * new ops must pass agent_check (nonzero refuses the batch: agent_taken). */
typedef struct td_srv_apply_rules {
    int (*agent_check)(void *ud, uint64_t agent); /* NULL: every agent passes */
    void *ud;
    /* A batch another cluster node accepted: it was checked there, and its
     * dependencies may still be on their way, so it is parked, not refused. */
    int park;
} td_srv_apply_rules;

typedef struct td_srv_model {
    const char *name;
    td_store_kind kind; /* what the store records for its documents */
    /* Reads document `id` through the store. A document the store does not
     * have is a new empty one if `create`, else TD_STORE_ERR_NOT_FOUND; one
     * of another kind is TD_STORE_ERR_KIND. On error, msg (msglen bytes)
     * says why. */
    td_store_err (*load)(td_store *st, const char *id, size_t len, int create,
                         td_srv_mdoc **out, char *msg, size_t msglen);
    void (*free)(td_srv_mdoc *d);
    /* Validates and applies a batch, all or nothing (but see `partial`).
     * Returns TD_SRV_E_OK, or the code to refuse it with (invalid_batch,
     * missing_ops, agent_taken, limit, internal) and msg. */
    td_srv_code (*apply)(td_srv_mdoc *d, const uint8_t *batch, size_t len,
                         const td_srv_apply_rules *rules, td_srv_applied *out, char *msg,
                         size_t msglen);
    /* The ops a peer at `vv` lacks, and the document's own state. */
    td_srv_code (*diff)(td_srv_mdoc *d, const uint8_t *vv, size_t vv_len, uint8_t **ops,
                        size_t *ops_len, uint8_t **state, size_t *state_len, char *msg,
                        size_t msglen);
    /* 1 if the document holds op (agent, seq) of a td_srv_applied's wait.
     * NULL for a model that never names one. */
    int (*has)(td_srv_mdoc *d, uint64_t agent, uint64_t seq);
    /* The document's state (version vector) after the last apply. */
    int (*state)(td_srv_mdoc *d, uint8_t **out, size_t *len);
    /* The document as JSON (not NUL-terminated). */
    int (*json)(td_srv_mdoc *d, char **out, size_t *len);
    /* Frees what diff, state and json returned. */
    void (*buf_free)(td_srv_mdoc *d, void *p);
} td_srv_model;

extern const td_srv_model td_srv_model_tandem;
extern const td_srv_model td_srv_model_yjs;
/* Testing: makes the core's allocations fail by the spec "FROM:COUNT" (see
 * srv_model_tandem.c). Returns 1 if armed, 0 for an empty spec, -1 if it
 * does not parse. */
int td_srv_model_tandem_faults(const char *spec);

#endif /* SRV_MODEL_H */
