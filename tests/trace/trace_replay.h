/*
 * trace_replay.h -- replaying a loaded trace into tandem documents.
 *
 * A sequential trace goes into one document, patch by patch, through the
 * local text API. A concurrent trace keeps one replica per agent; the only
 * thing that crosses between replicas is the encoded batch each txn
 * committed (td_crdt_commit -> td_crdt_apply), exactly as between peers.
 */
#ifndef TANDEM_TRACE_REPLAY_H
#define TANDEM_TRACE_REPLAY_H

#include "tandem_crdt.h"
#include "trace_load.h"

/* State of the counting allocation hook (td_crdt_options.alloc). */
typedef struct tt_alloc_stats {
    size_t cur;  /* bytes live now, as requested by the core */
    size_t peak; /* the most that were ever live at once */
} tt_alloc_stats;

void *tt_counting_alloc(void *ud, void *ptr, size_t size);

typedef struct tt_replay {
    td_crdt_doc **docs; /* one replica per agent (one for sequential traces) */
    td_crdt_obj *texts; /* the root text "text" of each replica */
    uint32_t ndocs;
    /* concurrent traces: each txn's batch, owned by its agent's replica */
    uint8_t **batches;
    size_t *batch_len;
    uint32_t *batch_owner; /* the replica that allocated it */
    uint8_t *start_batch; /* startContent, made by replica 0 */
    size_t start_len;
    uint8_t *have;        /* bit a * ntxns + k: replica a holds txn k */
    uint32_t *mark;       /* DFS scratch */
    uint32_t *stack;
    uint32_t *missing;
    int64_t *last;        /* each agent's latest txn, -1 before its first */
    size_t ntxns;
} tt_replay;

/* Replays `t` into fresh documents made with `opts` (replica a gets agent
 * opts->agent + a). With commit_each_txn, a sequential replay also calls
 * td_crdt_commit after every txn, as an editor sending each change would
 * (concurrent replays always commit). Returns 0, or -1 with a message; *r
 * must be released with tt_replay_free either way. */
int tt_replay_run(const tt_trace *t, const td_crdt_options *opts,
                  int commit_each_txn, tt_replay *r, char *err, size_t errlen);
void tt_replay_free(tt_replay *r);

#endif
