/*
 * trace_load.h -- editing traces in a compact, validated, in-memory form.
 *
 * A trace file is gzipped (or plain) JSON in one of two formats (see
 * ../shared/traces/README.md): sequential, a list of txns whose patches apply
 * one after another to a single text, and concurrent, where each txn names
 * the agent that made it and the earlier txns (parents) whose state it
 * edited. Both become the same arrays here: txns pointing into one patch
 * array, patches pointing into one byte arena holding all inserted UTF-8.
 *
 * The JSON tree is built, checked and thrown away inside tt_trace_load(), so
 * that what stays resident while a replay is measured is only the patches
 * (20 bytes each) and the inserted text.
 */
#ifndef TANDEM_TRACE_LOAD_H
#define TANDEM_TRACE_LOAD_H

#include <stddef.h>
#include <stdint.h>

typedef struct tt_patch {
    uint32_t pos;     /* code points */
    uint32_t del;     /* code points deleted at pos, before the insert */
    uint32_t ins_off; /* offset of the inserted UTF-8 in tt_trace.text */
    uint32_t ins_len; /* bytes inserted */
    uint32_t ins_cp;  /* code points inserted */
} tt_patch;

typedef struct tt_txn {
    uint32_t first;    /* index of its first patch */
    uint32_t count;    /* number of patches */
    uint32_t agent;    /* concurrent traces only; 0 otherwise */
    uint32_t parents;  /* offset of its parent indexes in tt_trace.parents */
    uint32_t nparents;
} tt_txn;

typedef struct tt_trace {
    int concurrent;
    uint32_t num_agents; /* 1 for sequential traces */
    tt_patch *patches;
    size_t npatches;
    tt_txn *txns;
    size_t ntxns;
    uint32_t *parents; /* concurrent only: every txn's parents, concatenated */
    size_t nparents;
    char *text;        /* all inserted bytes */
    size_t text_len;
    char *start;       /* startContent, UTF-8, NUL-terminated */
    size_t start_len;
    size_t start_cp;
    char *end;         /* endContent, UTF-8, NUL-terminated */
    size_t end_len;
    size_t end_cp;
    uint64_t ins_cp_total; /* code points inserted over all patches */
    uint64_t del_cp_total; /* code points deleted over all patches */
} tt_trace;

/* Reads and validates `path`. Returns 0, or -1 with a message in err (the
 * message does not repeat the path). On error *out is left empty. */
int tt_trace_load(const char *path, tt_trace *out, char *err, size_t errlen);
void tt_trace_free(tt_trace *t);

/* Validates UTF-8 (no overlongs, surrogates or values past U+10FFFF) and
 * counts its code points. Returns 0, or -1 with *bad the offending offset. */
int tt_utf8_count(const char *s, size_t len, size_t *cp, size_t *bad);

#endif
