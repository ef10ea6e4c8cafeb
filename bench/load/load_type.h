/*
 * load_type.h -- one typed character of `tandem-load`'s fan-out clients
 * (workload A, its sweep and its cluster runs), with the time it was sent,
 * so a receiver can time each op by its sequence number.
 */
#ifndef TD_LOAD_TYPE_H
#define TD_LOAD_TYPE_H

#include "td_client.h"
#include "td_rng.h"

/* When each op of a client was sent, indexed by its sequence number. */
typedef struct load_typed {
    uint64_t *us;
    size_t n, cap;
} load_typed;

/* Inserts a random letter at a random place of `text` in d's replica,
 * records the time under the op's sequence number and commits. Returns 0,
 * or -1 (nothing typed) when the record cannot grow. */
int load_type_char(td_cli_doc *d, td_crdt_obj text, load_typed *t, td_rng *rng);
void load_typed_free(load_typed *t);

#endif /* TD_LOAD_TYPE_H */
