/*
 * fuzz_srv_yproto.c -- libFuzzer target for the Yjs front-ends' decoders
 * (server/srv_yproto.c): y-websocket and Hocuspocus messages and the
 * awareness updates inside them.
 *
 * Every input must decode or be rejected without reading outside the
 * buffer. An accepted sync message re-encodes to the same bytes (one
 * encoding per message: minimal varints, nothing after the end); an
 * accepted awareness update walks to exactly its count of entries.
 */
#include <stdlib.h>
#include <string.h>

#include "srv_yproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void awareness(const uint8_t *p, size_t len)
{
    size_t count, pos = 0, n = 0;
    td_srv_yaw e;
    if (td_srv_yaw_check(p, len, 64, 1 << 16, &count, NULL) != TD_SRV_E_OK)
        return;
    while (td_srv_yaw_next(p, len, &pos, &e))
        n++;
    if (n != count)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    td_srv_ymsg m;
    if (td_srv_ymsg_decode(data, size, &m, NULL) == TD_SRV_E_OK) {
        if (m.type == TD_SRV_Y_SYNC) {
            td_srv_wbuf w;
            td_srv_wbuf_init(&w, 0);
            td_srv_y_put_sync(&w, (td_srv_y_sync)m.sub, m.data, m.len);
            if (!w.oom && (w.len != size || memcmp(td_srv_wbuf_msg(&w), data, size)))
                abort();
            td_srv_wbuf_free(&w);
        }
        if (m.type == TD_SRV_Y_AWARENESS)
            awareness(m.data, m.len);
    }
    if (td_srv_hpmsg_decode(data, size, &m, NULL) == TD_SRV_E_OK &&
        m.type == TD_SRV_Y_AWARENESS)
        awareness(m.data, m.len);
    awareness(data, size);
    return 0;
}
