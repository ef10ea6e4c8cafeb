/*
 * fuzz_srv_msg.c -- libFuzzer target for the wire decoder
 * (td_srv_msg_decode in server/srv_proto.c).
 *
 * Every input must decode or be rejected without reading outside the
 * buffer; a message that decodes must re-encode to exactly the same bytes
 * (the format has one encoding per message: minimal varints, no trailing
 * bytes), and list entries must walk to the announced count.
 *
 * Deflated messages (protocol version 2, td_srv_msg_inflate): an input with
 * the deflate flag is inflated within a bound (FUZZ_MAX_BODY, whatever it
 * declares) and what comes out is checked as above. A message that
 * decodes and is deflated (td_srv_msg_deflate) must inflate back to itself.
 */
#include <stdlib.h>
#include <string.h>

#include "tandem_srv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_BODY (1u << 20)

static int check_plain(const uint8_t *data, size_t size);

/* msg decoded: deflating it, if that pays, then inflating gives it back. */
static void check_deflate_round_trip(const uint8_t *data, size_t size)
{
    td_srv_wbuf w;
    uint8_t *back;
    size_t back_len;
    td_srv_wbuf_init(&w, 0);
    int rc = td_srv_msg_deflate(data, size, &w);
    if (rc == 1) {
        if (w.len >= size || !(td_srv_wbuf_msg(&w)[0] & TD_SRV_FLAG_DEFLATE))
            abort(); /* only ever when shorter */
        if (td_srv_msg_inflate(td_srv_wbuf_msg(&w), w.len, size - 1, &back, &back_len, NULL) !=
                TD_SRV_E_OK ||
            !back || back_len != size || memcmp(back, data, size))
            abort();
        free(back);
    } else if (rc == 0 && w.len) {
        abort();
    }
    td_srv_wbuf_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size && (data[0] & TD_SRV_FLAG_DEFLATE)) {
        uint8_t *plain;
        size_t plain_len;
        const char *why;
        td_srv_code rc = td_srv_msg_inflate(data, size, FUZZ_MAX_BODY, &plain, &plain_len, &why);
        if (rc == TD_SRV_E_OK) {
            if (!plain || plain_len < 1 || plain_len > FUZZ_MAX_BODY + 1 ||
                (plain[0] & TD_SRV_FLAG_DEFLATE))
                abort();
            check_plain(plain, plain_len);
            free(plain);
        } else if (rc != TD_SRV_E_BAD_MESSAGE && rc != TD_SRV_E_TOO_LARGE) {
            abort();
        }
        return 0;
    }
    return check_plain(data, size);
}

static int check_plain(const uint8_t *data, size_t size)
{
    td_srv_msg m;
    const char *why;
    if (td_srv_msg_decode(data, size, &m, &why) != TD_SRV_E_OK)
        return 0;
    check_deflate_round_trip(data, size);
    td_srv_wbuf w;
    td_srv_wbuf_init(&w, 0);
    if (td_srv_msg_encode(&m, &w) == 0 && (w.len != size || memcmp(td_srv_wbuf_msg(&w), data, size)))
        abort();
    td_srv_wbuf_free(&w);
    if (m.type == TD_SRV_MSG_REMOTE || m.type == TD_SRV_MSG_PEERS) {
        size_t pos = 0;
        uint64_t n = 0;
        td_srv_item it;
        while (td_srv_items_next(&m, &pos, &it))
            n++;
        if (n != m.count)
            abort();
    }
    return 0;
}
