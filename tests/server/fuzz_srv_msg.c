/*
 * fuzz_srv_msg.c -- libFuzzer target for the wire decoder
 * (td_srv_msg_decode in server/srv_proto.c).
 *
 * Every input must decode or be rejected without reading outside the
 * buffer; a message that decodes must re-encode to exactly the same bytes
 * (the format has one encoding per message: minimal varints, no trailing
 * bytes), and list entries must walk to the announced count.
 */
#include <stdlib.h>
#include <string.h>

#include "tandem_srv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    td_srv_msg m;
    const char *why;
    if (td_srv_msg_decode(data, size, &m, &why) != TD_SRV_E_OK)
        return 0;
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
