/*
 * trace_check.h -- judging a replay of a trace (trace_replay.h) against the
 * trace's endContent, and saying where it went wrong.
 *
 * Shared by tandem-trace (bench/trace) and the tests of tests/trace, so that
 * a bench run and a test report the same failure the same way.
 */
#ifndef TANDEM_TRACE_CHECK_H
#define TANDEM_TRACE_CHECK_H

#include <stddef.h>

#include "gap_buffer.h"
#include "tandem_crdt.h"
#include "trace_load.h"
#include "trace_replay.h"

/* 0 if the text equals `want`, else -1 with a description of the first
 * difference (or of the core's error) in msg. */
int tt_check_text(td_crdt_doc *doc, td_crdt_obj text, const char *want,
                  size_t wlen, char *msg, size_t msglen);

/* Every replica of `r` must hold endContent with nothing pending. Returns 0,
 * or -1 with a message; *mismatch is set when some text is not endContent
 * (rather than ops being left pending). */
int tt_check_replicas(const tt_trace *t, tt_replay *r, int *mismatch,
                      char *msg, size_t msglen);

/* Replays every patch of `t` in file order into `g` (already initialised,
 * empty), startContent first. Returns 0, or -1 on ENOMEM. */
int tt_gap_replay(const tt_trace *t, tt_gap *g);
/* 1 if the gap buffer's text is `want` byte for byte, 0 if not, -1 on ENOMEM. */
int tt_gap_equals(const tt_gap *g, const char *want, size_t wlen);

/* For a sequential trace whose replay is not endContent: replays it again
 * in lockstep with a gap buffer and appends to msg (after what it already
 * holds) the first patch after which the two texts differ, or why the gap
 * buffer cannot say. */
void tt_locate_seq(const tt_trace *t, char *msg, size_t msglen);

#endif
