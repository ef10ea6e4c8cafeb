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

/* How long a typing loop waits for the network before its next character,
 * due at `due` (both td_cli_now_us()): whole milliseconds, rounded up. A
 * wait of 0 is a service that does not block, and with 200 clients typing
 * the next character is nearly always less than a millisecond away: the
 * loop spun, and took most of a core from the server it measures. Rounded
 * up, a character goes out up to a millisecond late; its latency counts
 * from when it went out. */
int load_wait_ms(uint64_t due, uint64_t now);

#endif /* TD_LOAD_TYPE_H */
