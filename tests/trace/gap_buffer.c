/*
 * gap_buffer.c -- a gap buffer of uint32_t code points (see gap_buffer.h).
 *
 * Moving the cursor moves the text between the old and new cursor across
 * the gap with one memmove; typing at the cursor is then a store. The buffer
 * doubles when the gap runs out, so a replay costs amortised O(1) per
 * character plus the distance the cursor jumps.
 */
#include "gap_buffer.h"

#include <stdlib.h>
#include <string.h>

int tt_gap_init(tt_gap *g, size_t cap)
{
    if (cap < 64)
        cap = 64;
    g->buf = malloc(cap * sizeof *g->buf);
    g->cap = g->buf ? cap : 0;
    g->gap_start = 0;
    g->gap_end = g->cap;
    return g->buf ? 0 : -1;
}

void tt_gap_free(tt_gap *g)
{
    free(g->buf);
    memset(g, 0, sizeof *g);
}

size_t tt_gap_length(const tt_gap *g)
{
    return g->cap - (g->gap_end - g->gap_start);
}

static void move_gap(tt_gap *g, size_t pos)
{
    if (pos < g->gap_start) {
        size_t n = g->gap_start - pos;
        memmove(g->buf + g->gap_end - n, g->buf + pos, n * sizeof *g->buf);
        g->gap_start -= n;
        g->gap_end -= n;
    } else if (pos > g->gap_start) {
        size_t n = pos - g->gap_start;
        memmove(g->buf + g->gap_start, g->buf + g->gap_end, n * sizeof *g->buf);
        g->gap_start += n;
        g->gap_end += n;
    }
}

static int reserve(tt_gap *g, size_t n)
{
    if (g->gap_end - g->gap_start >= n)
        return 0;
    size_t len = tt_gap_length(g), ncap = g->cap * 2;
    while (ncap - len < n)
        ncap *= 2;
    uint32_t *nb = realloc(g->buf, ncap * sizeof *nb);
    if (!nb)
        return -1;
    size_t tail = g->cap - g->gap_end;
    memmove(nb + ncap - tail, nb + g->gap_end, tail * sizeof *nb);
    g->buf = nb;
    g->gap_end = ncap - tail;
    g->cap = ncap;
    return 0;
}

int tt_gap_insert(tt_gap *g, size_t pos, const char *utf8, size_t len,
                  size_t ncp)
{
    size_t doclen = tt_gap_length(g);
    if (pos > doclen)
        pos = doclen;
    if (reserve(g, ncp) != 0)
        return -1;
    move_gap(g, pos);
    const unsigned char *p = (const unsigned char *)utf8, *e = p + len;
    uint32_t *out = g->buf + g->gap_start;
    /* The input was validated when the trace was loaded. */
    while (p < e) {
        uint32_t c = *p++;
        if (c >= 0x80) {
            int k = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
            c &= 0x3F >> k;
            while (k-- > 0 && p < e)
                c = (c << 6) | (*p++ & 0x3F);
        }
        *out++ = c;
    }
    g->gap_start = (size_t)(out - g->buf);
    return 0;
}

void tt_gap_delete(tt_gap *g, size_t pos, size_t n)
{
    size_t doclen = tt_gap_length(g);
    if (pos > doclen)
        pos = doclen;
    if (n > doclen - pos)
        n = doclen - pos;
    move_gap(g, pos);
    g->gap_end += n;
}

static size_t put_utf8(char *o, uint32_t c)
{
    unsigned char *u = (unsigned char *)o;
    if (c < 0x80) {
        u[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        u[0] = (unsigned char)(0xC0 | (c >> 6));
        u[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        u[0] = (unsigned char)(0xE0 | (c >> 12));
        u[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        u[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    u[0] = (unsigned char)(0xF0 | (c >> 18));
    u[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    u[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    u[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

char *tt_gap_to_utf8(const tt_gap *g, size_t *len)
{
    size_t n = tt_gap_length(g);
    char *s = malloc(n * 4 + 1), *o = s;
    if (!s)
        return NULL;
    for (size_t i = 0; i < g->cap; i++) {
        if (i == g->gap_start)
            i = g->gap_end;
        if (i >= g->cap)
            break;
        o += put_utf8(o, g->buf[i]);
    }
    *o = '\0';
    *len = (size_t)(o - s);
    return s;
}
