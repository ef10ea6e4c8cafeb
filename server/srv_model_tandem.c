/*
 * srv_model_tandem.c -- tandem's CRDT (crdt/) behind the document-model
 * interface.
 *
 * The store reads and checks these documents itself (td_store_load), so
 * `load` only chooses the replica's options: a fresh random agent id per
 * load, since the server never writes ops of its own and must not reuse an
 * id a previous load may have handed out.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "tandem_crdt.h"
#include "srv_model.h"

#define CRDT(d) ((td_crdt_doc *)(void *)(d))

/* Fault injection for tests (TANDEM_TEST_FAIL_ALLOC=FROM:COUNT, read once
 * by td_srv_model_tandem_faults): the core's allocations number FROM to
 * FROM+COUNT-1, counted over every document, return NULL. Frees and
 * shrinking reallocs never fail. Loads run on the loader thread, hence the
 * atomics. */
static atomic_ullong fault_next, fault_from, fault_to;
static int faults_on;

static void *fault_alloc(void *ud, void *ptr, size_t size)
{
    (void)ud;
    if (size == 0) {
        free(ptr);
        return NULL;
    }
    unsigned long long n = atomic_fetch_add(&fault_next, 1);
    if (n >= atomic_load(&fault_from) && n < atomic_load(&fault_to))
        return NULL;
    return realloc(ptr, size);
}

int td_srv_model_tandem_faults(const char *spec)
{
    unsigned long long from, count;
    char end;
    if (!spec || !*spec)
        return 0;
    if (sscanf(spec, "%llu:%llu%c", &from, &count, &end) != 2)
        return -1;
    atomic_store(&fault_from, from);
    atomic_store(&fault_to, from + count);
    faults_on = 1;
    return 1;
}

static td_store_err tandem_load(td_store *st, const char *id, size_t len, int create,
                                td_srv_mdoc **out, char *msg, size_t msglen)
{
    td_crdt_options o;
    td_crdt_doc *doc = NULL;
    td_store_error e = {0};
    memset(&o, 0, sizeof o);
    randombytes_buf(&o.agent, sizeof o.agent);
    /* the store verified the snapshot's BLAKE2b digest, and only this
     * server wrote it: skip the core's whole-history check (`tandem check`
     * still runs it) */
    o.trusted_snapshot = 1;
    if (faults_on)
        o.alloc = fault_alloc;
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

static int agent_check(void *ud, uint64_t agent, uint64_t from, uint64_t to)
{
    const td_srv_apply_rules *rules = ud;
    (void)from, (void)to;
    return rules->agent_check(rules->ud, agent);
}

/* How each refusal of the core reaches the client. A full pending set
 * cannot happen on the server (it parks nothing); any other bound broken
 * makes the batch itself invalid. */
static const struct {
    td_crdt_err e;
    td_srv_code code;
} refusals[] = {
    {TD_CRDT_ERR_NOMEM, TD_SRV_E_INTERNAL},
    {TD_CRDT_ERR_MISSING, TD_SRV_E_MISSING_OPS},
    {TD_CRDT_ERR_REFUSED, TD_SRV_E_AGENT_TAKEN},
};

static td_srv_code tandem_apply(td_srv_mdoc *d, const uint8_t *batch, size_t len,
                                const td_srv_apply_rules *rules, td_srv_applied *out,
                                char *msg, size_t msglen)
{
    td_crdt_apply_info info;
    td_crdt_apply_opts opts = {rules && rules->park ? 0u : (unsigned)TD_CRDT_APPLY_NO_PARK,
                               rules && rules->agent_check ? agent_check : NULL,
                               (void *)rules};
    td_crdt_err e = td_crdt_apply_ex(CRDT(d), batch, len, &opts, &info);
    memset(out, 0, sizeof *out);
    if (e != TD_CRDT_OK) {
        td_srv_code code = TD_SRV_E_INVALID_BATCH;
        for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++)
            if (refusals[i].e == e)
                code = refusals[i].code;
        snprintf(msg, msglen, "batch rejected: %s: %s", td_crdt_strerror(e),
                 td_crdt_doc_error(CRDT(d)));
        /* Out of memory midway may leave a causal prefix of the batch
         * integrated (tandem_crdt.h): the service reloads the document. */
        out->partial = e == TD_CRDT_ERR_NOMEM && td_crdt_apply_partial(CRDT(d));
        out->waits = e == TD_CRDT_ERR_MISSING;
        out->wait_agent = info.wait_agent;
        out->wait_seq = info.wait_seq;
        return code;
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

static int tandem_has(td_srv_mdoc *d, uint64_t agent, uint64_t seq)
{
    return td_crdt_vv_get(CRDT(d), agent) > seq;
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
    .name = "tandem", .kind = TD_STORE_KIND_TANDEM, .load = tandem_load, .free = tandem_free,
    .apply = tandem_apply, .diff = tandem_diff, .has = tandem_has, .state = tandem_state,
    .json = tandem_json, .buf_free = tandem_buf_free,
};
