/*
 * load_type.c -- one typed character (load_type.h).
 */
#include <stdlib.h>

#include "load_type.h"

int load_type_char(td_cli_doc *d, td_crdt_obj text, load_typed *t, td_rng *rng)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4096;
        uint64_t *us = realloc(t->us, cap * sizeof *us);
        if (!us)
            return -1;
        t->us = us;
        t->cap = cap;
    }
    td_crdt_doc *doc = td_cli_doc_crdt(d);
    char ch = (char)('a' + td_rng_next(rng) % 26);
    size_t len = td_crdt_text_length(doc, text);
    td_crdt_text_insert(doc, text, len ? td_rng_next(rng) % (len + 1) : 0, &ch, 1);
    t->us[t->n++] = td_cli_now_us();
    td_cli_commit(d, NULL);
    return 0;
}

void load_typed_free(load_typed *t)
{
    free(t->us);
    t->us = NULL;
    t->n = t->cap = 0;
}

int load_wait_ms(uint64_t due, uint64_t now)
{
    return due > now ? (int)((due - now + 999) / 1000) : 0;
}
