/*
 * gap_buffer.h -- the no-CRDT baseline: a text as an array of code points
 * with a movable gap at the cursor.
 *
 * This is what an editor without collaboration would use, so the ratio of a
 * CRDT replay to a gap-buffer replay of the same patches says what the CRDT
 * costs. It takes the same UTF-8 input the CRDT takes and decodes it, so
 * both sides do the same conversion work. Positions past the end are
 * clamped rather than rejected: the concurrent-trace baseline replays txns
 * in file order, where positions do not always fit (see README.md).
 */
#ifndef TANDEM_GAP_BUFFER_H
#define TANDEM_GAP_BUFFER_H

#include <stddef.h>
#include <stdint.h>

typedef struct tt_gap {
    uint32_t *buf;
    size_t cap;       /* code points allocated */
    size_t gap_start; /* == the cursor */
    size_t gap_end;
} tt_gap;

int tt_gap_init(tt_gap *g, size_t cap);
void tt_gap_free(tt_gap *g);
size_t tt_gap_length(const tt_gap *g);
/* Inserts `ncp` code points given as valid UTF-8. Returns -1 on ENOMEM. */
int tt_gap_insert(tt_gap *g, size_t pos, const char *utf8, size_t len,
                  size_t ncp);
void tt_gap_delete(tt_gap *g, size_t pos, size_t n);
/* The text as UTF-8 (malloc'ed, NUL-terminated), or NULL on ENOMEM. */
char *tt_gap_to_utf8(const tt_gap *g, size_t *len);

#endif
