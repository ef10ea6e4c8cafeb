/*
 * yjs_driver.c -- tandem_yjs.h behind a framed stdin/stdout protocol, so
 * that tests/yjs/yjs_diff.mjs can drive one C document per process and
 * compare it with the npm `yjs` package.
 *
 * Request: 1 byte command, uint32 little-endian payload length, payload.
 * Reply:   1 byte status (td_yjs_err), uint32 LE length, payload; on an error
 *          the payload is td_yjs_doc_error() of the document.
 *
 *   'N'  new document (the current one is freed); payload empty
 *   'A'  apply update; payload = update v1
 *   'V'  encode state vector; reply = state vector
 *   'E'  encode state as update; payload = encoded state vector (may be empty)
 *   'J'  to_json; payload = 1 byte flags; reply = JSON text
 *   'S'  stats; reply = "structs=N pending=N bytes=N" (pending counts the
 *        parked structs plus the pending delete ranges)
 *   'Q'  quit (reply OK, then exit 0)
 *
 * End of input at a request boundary exits 0; a truncated request, an
 * unknown command, a bad payload or a failed write exits 2.
 */
#include "tandem_yjs.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what)
{
    fprintf(stderr, "yjs_driver: %s\n", what);
    exit(2);
}

/* Reads exactly n bytes; returns 0 on end of input before the first byte
 * when eof_ok, dies on a short read otherwise. */
static int read_all(void *buf, size_t n, int eof_ok)
{
    size_t got = fread(buf, 1, n, stdin);
    if (got == n)
        return 1;
    if (got == 0 && eof_ok && feof(stdin))
        return 0;
    die(ferror(stdin) ? "read error" : "truncated request");
    return 0;
}

static void write_all(const void *buf, size_t n)
{
    if (n && fwrite(buf, 1, n, stdout) != n)
        die("write error");
}

static void reply(int status, const void *payload, size_t n)
{
    uint8_t hdr[5];
    if (n > UINT32_MAX)
        die("reply too large");
    hdr[0] = (uint8_t)status;
    hdr[1] = (uint8_t)(n & 0xff);
    hdr[2] = (uint8_t)((n >> 8) & 0xff);
    hdr[3] = (uint8_t)((n >> 16) & 0xff);
    hdr[4] = (uint8_t)((n >> 24) & 0xff);
    write_all(hdr, sizeof hdr);
    write_all(payload, n);
    if (fflush(stdout) != 0)
        die("write error (flush)");
}

static void reply_err(td_yjs_doc *doc, td_yjs_err e)
{
    const char *msg = doc ? td_yjs_doc_error(doc) : "";
    if (!msg || !*msg)
        msg = td_yjs_strerror(e);
    if (!msg)
        msg = "";
    reply((int)e, msg, strlen(msg));
}

static td_yjs_doc *new_doc(void)
{
    td_yjs_doc *doc = NULL;
    td_yjs_err e = td_yjs_doc_new(NULL, &doc);
    if (e != TD_YJS_OK || !doc)
        die("td_yjs_doc_new failed");
    return doc;
}

int main(void)
{
    static char inbuf[1 << 16], outbuf[1 << 16];
    uint8_t *payload = NULL;
    size_t cap = 0;
    td_yjs_doc *doc;

    if (setvbuf(stdin, inbuf, _IOFBF, sizeof inbuf) != 0 ||
        setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf) != 0)
        die("setvbuf failed");
    doc = new_doc();

    for (;;) {
        uint8_t hdr[5];
        size_t n;
        if (!read_all(hdr, sizeof hdr, 1))
            break;
        n = (size_t)hdr[1] | (size_t)hdr[2] << 8 | (size_t)hdr[3] << 16 |
            (size_t)hdr[4] << 24;
        if (n > cap) {
            uint8_t *p = realloc(payload, n);
            if (!p)
                die("out of memory");
            payload = p;
            cap = n;
        }
        if (n)
            read_all(payload, n, 0);

        switch (hdr[0]) {
        case 'N':
            if (n != 0)
                die("'N' takes no payload");
            td_yjs_doc_free(doc);
            doc = new_doc();
            reply(TD_YJS_OK, NULL, 0);
            break;
        case 'A': {
            td_yjs_err e = td_yjs_apply_update(doc, n ? payload : (const uint8_t *)"", n);
            if (e != TD_YJS_OK)
                reply_err(doc, e);
            else
                reply(TD_YJS_OK, NULL, 0);
            break;
        }
        case 'V': {
            uint8_t *out = NULL;
            size_t len = 0;
            td_yjs_err e = td_yjs_encode_state_vector(doc, &out, &len);
            if (e != TD_YJS_OK)
                reply_err(doc, e);
            else
                reply(TD_YJS_OK, out, len);
            td_yjs_buf_free(doc, out);
            break;
        }
        case 'E': {
            uint8_t *out = NULL;
            size_t len = 0;
            td_yjs_err e = td_yjs_encode_state_as_update(doc, n ? payload : NULL, n,
                                                         &out, &len);
            if (e != TD_YJS_OK)
                reply_err(doc, e);
            else
                reply(TD_YJS_OK, out, len);
            td_yjs_buf_free(doc, out);
            break;
        }
        case 'J': {
            char *out = NULL;
            size_t len = 0;
            td_yjs_err e;
            if (n != 1)
                die("'J' takes 1 byte of flags");
            e = td_yjs_to_json(doc, payload[0], &out, &len);
            if (e != TD_YJS_OK)
                reply_err(doc, e);
            else
                reply(TD_YJS_OK, out, len);
            td_yjs_buf_free(doc, out);
            break;
        }
        case 'S': {
            td_yjs_stats st;
            char txt[160];
            int k;
            if (n != 0)
                die("'S' takes no payload");
            memset(&st, 0, sizeof st);
            td_yjs_doc_stats(doc, &st);
            k = snprintf(txt, sizeof txt, "structs=%zu pending=%zu bytes=%zu",
                         st.structs, st.pending_structs + st.pending_deletes, st.bytes);
            if (k < 0 || (size_t)k >= sizeof txt)
                die("snprintf failed");
            reply(TD_YJS_OK, txt, (size_t)k);
            break;
        }
        case 'Q':
            reply(TD_YJS_OK, NULL, 0);
            td_yjs_doc_free(doc);
            free(payload);
            return 0;
        default:
            die("unknown command");
        }
    }
    td_yjs_doc_free(doc);
    free(payload);
    if (fclose(stdout) != 0)
        die("write error (close)");
    return 0;
}
