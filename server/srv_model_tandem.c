/*
 * srv_model_tandem.c -- tandem's CRDT (crdt/) behind the document-model
 * interface.
 *
 * The store reads and checks these documents itself (td_store_load), so
 * `load` only chooses the replica's options: a fresh random agent id per
 * load, since the server never writes ops of its own and must not reuse an
 * id a previous load may have handed out.
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "tandem_crdt.h"
#include "srv_model.h"

#define CRDT(d) ((td_crdt_doc *)(void *)(d))

static td_store_err tandem_load(td_store *st, const char *id, size_t len, int create,
                                td_srv_mdoc **out, char *msg, size_t msglen)
{
    td_crdt_options o;
    td_crdt_doc *doc = NULL;
    td_store_error e = {0};
    memset(&o, 0, sizeof o);
    randombytes_buf(&o.agent, sizeof o.agent);
    td_store_err code = td_store_load(st, id, len, &o, &doc, NULL, &e);
    msg[0] = '\0';
    if (code == TD_STORE_ERR_NOT_FOUND && create) {
        td_crdt_err ce = td_crdt_doc_new(&o, &doc);
        code = ce == TD_CRDT_OK ? TD_STORE_OK : TD_STORE_ERR_NOMEM;
        snprintf(msg, msglen, "%s", td_crdt_strerror(ce));
    } else if (code != TD_STORE_OK) {
        snprintf(msg, msglen, "%s", e.msg);
    }
    *out = (td_srv_mdoc *)(void *)doc;
    return code;
}

static void tandem_free(td_srv_mdoc *d)
{
    td_crdt_doc_free(CRDT(d));
}

static td_srv_code tandem_apply(td_srv_mdoc *d, const uint8_t *batch, size_t len,
                                td_srv_applied *out, char *msg, size_t msglen)
{
    td_crdt_apply_info info;
    td_crdt_err e = td_crdt_apply(CRDT(d), batch, len, &info);
    if (e != TD_CRDT_OK) {
        snprintf(msg, msglen, "batch rejected: %s: %s", td_crdt_strerror(e),
                 td_crdt_doc_error(CRDT(d)));
        /* A full pending set is a limit of this document; any other bound
         * the batch broke makes the batch itself invalid. */
        return e == TD_CRDT_ERR_NOMEM                                   ? TD_SRV_E_INTERNAL
               : e == TD_CRDT_ERR_LIMIT && td_crdt_pending_ops(CRDT(d)) ? TD_SRV_E_LIMIT
                                                                        : TD_SRV_E_INVALID_BATCH;
    }
    out->ops_new = info.ops_applied;
    out->ops_duplicate = info.ops_duplicate;
    out->parked = info.parked;
    return TD_SRV_E_OK;
}

static td_srv_code tandem_diff(td_srv_mdoc *d, const uint8_t *vv, size_t vv_len,
                               uint8_t **ops, size_t *ops_len, uint8_t **state,
                               size_t *state_len, char *msg, size_t msglen)
{
    td_crdt_err e = td_crdt_diff(CRDT(d), vv, vv_len, ops, ops_len);
    if (e == TD_CRDT_OK) {
        e = td_crdt_vv_encode(CRDT(d), state, state_len);
        if (e != TD_CRDT_OK) {
            td_crdt_buf_free(CRDT(d), *ops);
            *ops = NULL;
        }
    }
    if (e == TD_CRDT_OK)
        return TD_SRV_E_OK;
    snprintf(msg, msglen, "%s: %s", td_crdt_strerror(e), td_crdt_doc_error(CRDT(d)));
    return e == TD_CRDT_ERR_NOMEM ? TD_SRV_E_INTERNAL : TD_SRV_E_BAD_MESSAGE;
}

static int tandem_state(td_srv_mdoc *d, uint8_t **out, size_t *len)
{
    return td_crdt_vv_encode(CRDT(d), out, len) == TD_CRDT_OK ? 0 : -1;
}

static int tandem_json(td_srv_mdoc *d, char **out, size_t *len)
{
    return td_crdt_to_json(CRDT(d), out, len) == TD_CRDT_OK ? 0 : -1;
}

static void tandem_buf_free(td_srv_mdoc *d, void *p)
{
    td_crdt_buf_free(CRDT(d), p);
}

const td_srv_model td_srv_model_tandem = {
    "tandem",     tandem_load,  tandem_free,     tandem_apply, tandem_diff,
    tandem_state, tandem_json,  tandem_buf_free,
};
