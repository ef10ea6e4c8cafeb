/*
 * cli_codec.c -- the encoding primitives of docs/PROTOCOL.md section 2, for
 * the test client: a growable buffer, LEB128 varints in minimal form, and
 * length-prefixed bytes. Written from the protocol text, independently of
 * the server's codec, so that a disagreement between the two shows up in the
 * integration tests instead of cancelling out.
 */
#include <stdlib.h>
#include <string.h>

#include "td_client.h"

static int buf_reserve(td_cli_buf *b, size_t extra)
{
    if (b->oom)
        return -1;
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void td_cli_buf_free(td_cli_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void td_cli_put_raw(td_cli_buf *b, const void *p, size_t len)
{
    if (len == 0 || buf_reserve(b, len) < 0)
        return;
    memcpy(b->data + b->len, p, len);
    b->len += len;
}

void td_cli_put_u8(td_cli_buf *b, uint8_t v)
{
    td_cli_put_raw(b, &v, 1);
}

void td_cli_put_varint(td_cli_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        tmp[n++] = byte | (v ? 0x80 : 0);
    } while (v);
    td_cli_put_raw(b, tmp, n);
}

void td_cli_put_bytes(td_cli_buf *b, const void *p, size_t len)
{
    td_cli_put_varint(b, len);
    td_cli_put_raw(b, p, len);
}

int td_cli_get_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = *pos;
    for (unsigned shift = 0, n = 0; n < 10; n++, shift += 7) {
        if (i >= len)
            return -1;
        uint8_t byte = p[i++];
        if (n == 9 && byte > 1)
            return -1; /* past 2^64 */
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            if (byte == 0 && n > 0)
                return -1; /* not minimal */
            *pos = i;
            *out = v;
            return 0;
        }
    }
    return -1;
}
