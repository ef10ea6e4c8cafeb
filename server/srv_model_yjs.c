/*
 * srv_model_yjs.c -- the Yjs document model (crdt/yjs/) behind the
 * document-model interface.
 *
 * A batch is one Yjs v1 update, as a y-websocket or Hocuspocus provider
 * sends it; the state is the encoded Yjs state vector; a diff is
 * Y.encodeStateAsUpdate(doc, sv). The store keeps each accepted update as
 * it came and compacts the log into one whole-document update.
 *
 * Missing dependencies. The native protocol refuses a batch whose causal
 * dependencies are missing (missing_ops), because its client resends. A Yjs
 * provider has no such answer: it sends every update once, and y-websocket
 * and Hocuspocus servers keep what cannot be integrated yet in the
 * document's pending set, as Yjs itself does. So do we, with a bound per
 * document (PENDING_STRUCTS, PENDING_BYTES): an update that would pass it
 * is refused with `limit` and nothing of it is kept. Pending parts are
 * stored (the update is logged as it came) and go out in every diff, so
 * they survive restarts and compactions and reach peers that may hold the
 * missing part.
 *
 * Authorship (PROTOCOL.md section 12) is not applied to Yjs documents: the
 * C model does not report which client ids an update introduces. A Yjs
 * client id is random per Y.Doc, and the token still decides who may write
 * at all.
 */
#include <stdio.h>
#include <string.h>

#include "tandem_yjs.h"
#include "srv_model.h"

#define YDOC(d) ((td_yjs_doc *)(void *)(d))

/* Per document: a hostile client cannot park more than this. */
#define PENDING_STRUCTS 100000
#define PENDING_BYTES ((size_t)16 << 20)

static const td_yjs_options yjs_opts = {
    .max_pending_structs = PENDING_STRUCTS,
    .max_pending_bytes = PENDING_BYTES,
};

static td_store_err yjs_load(td_store *st, const char *id, size_t len, int create,
                             td_srv_mdoc **out, char *msg, size_t msglen)
{
    td_yjs_doc *doc = NULL;
    td_store_error e = {0};
    td_store_err code = td_store_load_yjs(st, id, len, &yjs_opts, &doc, NULL, &e);
    msg[0] = '\0';
    if (code == TD_STORE_ERR_NOT_FOUND && create) {
        td_yjs_err ye = td_yjs_doc_new(&yjs_opts, &doc);
        code = ye == TD_YJS_OK ? TD_STORE_OK : TD_STORE_ERR_NOMEM;
        snprintf(msg, msglen, "%s", td_yjs_strerror(ye));
    } else if (code != TD_STORE_OK) {
        snprintf(msg, msglen, "%s", e.msg);
    }
    *out = (td_srv_mdoc *)(void *)doc;
    return code;
}

static void yjs_free(td_srv_mdoc *d)
{
    td_yjs_doc_free(YDOC(d));
}

/* How each refusal of the model reaches the client. */
static const struct {
    td_yjs_err e;
    td_srv_code code;
} refusals[] = {
    {TD_YJS_ERR_NOMEM, TD_SRV_E_INTERNAL},
    {TD_YJS_ERR_LIMIT, TD_SRV_E_LIMIT},
};

/* An update with no structs and no deletions (what a provider sends as
 * sync step 2 when it has nothing the server lacks). */
static int update_empty(const uint8_t *u, size_t len)
{
    return len == 2 && u[0] == 0 && u[1] == 0;
}

static td_srv_code yjs_apply(td_srv_mdoc *d, const uint8_t *batch, size_t len,
                             const td_srv_apply_rules *rules, td_srv_applied *out,
                             char *msg, size_t msglen)
{
    (void)rules;
    memset(out, 0, sizeof *out);
    if (update_empty(batch, len)) {
        out->ops_duplicate = 1;
        out->empty = 1;
        return TD_SRV_E_OK;
    }
    td_yjs_err e = td_yjs_apply_update(YDOC(d), batch, len);
    if (e != TD_YJS_OK) {
        td_srv_code code = TD_SRV_E_INVALID_BATCH;
        for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++)
            if (refusals[i].e == e)
                code = refusals[i].code;
        snprintf(msg, msglen, "update rejected: %s: %s", td_yjs_strerror(e),
                 td_yjs_doc_error(YDOC(d)));
        /* Out of memory midway may leave part of the update integrated
         * (tandem_yjs.h): the service reloads the document. */
        out->partial = e == TD_YJS_ERR_NOMEM;
        return code;
    }
    /* A duplicate is stored like anything else: telling it apart would
     * cost a state-vector and delete-set comparison per update, and
     * integrating it again on load is a no-op. */
    out->ops_new = 1;
    return TD_SRV_E_OK;
}

static td_srv_code yjs_diff(td_srv_mdoc *d, const uint8_t *vv, size_t vv_len,
                            uint8_t **ops, size_t *ops_len, uint8_t **state,
                            size_t *state_len, char *msg, size_t msglen)
{
    td_yjs_err e = td_yjs_encode_state_as_update(YDOC(d), vv, vv_len, ops, ops_len);
    if (e == TD_YJS_OK) {
        e = td_yjs_encode_state_vector(YDOC(d), state, state_len);
        if (e != TD_YJS_OK) {
            td_yjs_buf_free(YDOC(d), *ops);
            *ops = NULL;
        }
    }
    if (e == TD_YJS_OK)
        return TD_SRV_E_OK;
    snprintf(msg, msglen, "%s: %s", td_yjs_strerror(e), td_yjs_doc_error(YDOC(d)));
    return e == TD_YJS_ERR_NOMEM ? TD_SRV_E_INTERNAL : TD_SRV_E_BAD_MESSAGE;
}

static int yjs_state(td_srv_mdoc *d, uint8_t **out, size_t *len)
{
    return td_yjs_encode_state_vector(YDOC(d), out, len) == TD_YJS_OK ? 0 : -1;
}

static int yjs_json(td_srv_mdoc *d, char **out, size_t *len)
{
    return td_yjs_to_json(YDOC(d), 0, out, len) == TD_YJS_OK ? 0 : -1;
}

static void yjs_buf_free(td_srv_mdoc *d, void *p)
{
    td_yjs_buf_free(YDOC(d), p);
}

const td_srv_model td_srv_model_yjs = {
    .name = "yjs", .kind = TD_STORE_KIND_YJS, .load = yjs_load, .free = yjs_free,
    .apply = yjs_apply, .diff = yjs_diff, .has = NULL, /* it parks, never refuses missing ops */
    .state = yjs_state, .json = yjs_json, .buf_free = yjs_buf_free,
};
