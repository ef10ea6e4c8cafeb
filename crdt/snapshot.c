/*
 * snapshot.c -- the whole document, history included, in one canonical
 * encoding, and the loader that rebuilds a replica from it.
 *
 * Canonical means: replicas that integrated the same ops produce the same
 * bytes, whatever the order of delivery and however their runs happen to be
 * split in memory. So agents are listed by id, roots by (kind, name), nested
 * objects by creating id, runs in document order and maximally merged, map
 * entries by key, delete records by (agent, seq); deleted text is dropped.
 * Roots that no op ever touched are left out (they exist only locally).
 *
 * Layout, version 1 -- byte by byte, with every rule the loader enforces, in
 * docs/FORMAT.md section 4 (varints unless noted):
 *   'T' 'S' 0x01
 *   nagents; per agent: id (u64 little-endian), ops seen (>= 1), ids ascending
 *   max lamport
 *   nobjs; per object: tag 0-2 root text/list/map + name length + name; or
 *          tag 3-5 nested text/list/map + creating id (agent index, seq) +
 *          parent index + has_key byte [+ key length, key, lamport]
 *   per object, in that order:
 *     sequence: nruns; per run a flag byte (R_* below: bit 0 deleted, bit 1
 *       continues the previous run, bit 2 same agent as the previous run,
 *       bits 3-4 left origin mode, bits 5-6 right origin mode, bit 7 len 1)
 *       then [id: agent index + seq, or with bit 2 zigzag(seq - previous
 *       run's end)] [len] [left: explicit origin, or k-2 for O_NEAR]
 *       [right: likewise]. Explicit origins are relative to the run's id
 *       (put_rel). A list then holds one value per item, deleted items
 *       included; a text its visible content: byte length + UTF-8.
 *     map: nentries; per entry key length, key, lamport, id, value
 *   per agent (same order): ndeletes; per record a flag byte (D_* below),
 *     seq as the gap after the previous record, [len], [object index],
 *     target: distance back from seq (D_OWNTARGET) or agent index + highest
 *     target seq
 * Version 2 (written; docs/FORMAT.md section 5) has the same fields in the
 * same order, each sent to one of ten columns (C_* below), and each column
 * stored by entropy.c. The loader reads both versions.
 * Loading validates everything and builds the tree by appending runs in
 * order, so it costs no integration at all; the id indexes are built once
 * every run is in (build_indexes: one radix sort, which also finds ids that
 * repeat), not run by run.
 */
#include "crdt_internal.h"

/* Run flags. Origins are coded by mode: explicit, none (start/end),
 * implied by the neighbouring run (left: the previous run's last item;
 * right: the next run's first item), or near: the same for the run k places
 * back or ahead, k following as a varint. Editing is local, so most origins
 * are near. */
enum { R_DELETED = 1, R_CONT = 2, R_SAMEAGENT = 4, R_LEFT_SHIFT = 3, R_RIGHT_SHIFT = 5, R_LEN1 = 128 };
enum { O_EXPLICIT = 0, O_NONE = 1, O_NEIGHBOUR = 2, O_NEAR = 3 };
#define NEAR_RUNS 64 /* how far O_NEAR may look: k runs back (left) or ahead (right) */
/* Delete record flags. */
enum { D_DESC = 1, D_SAMEOBJ = 2, D_OWNTARGET = 4, D_LEN1 = 8 };
/* Version 2 columns, in the order they are stored: fields of one kind
 * together, so that each column's entropy code fits it (docs/FORMAT.md 5).
 * The fields are those of version 1, written in the same order; version 1
 * sends every column to one buffer, which gives its layout exactly. */
enum { C_MAIN, C_TEXT, C_RFLAG, C_RID, C_RLEN, C_RORIG, C_DFLAG, C_DGAP, C_DLEN, C_DTGT, NCOL };

static int id_eq(td_id a, td_id b)
{
    return a.agent == b.agent && (a.agent == TD_NONE || a.seq == b.seq);
}

static int obj_touched(const td_obj *o)
{
    return o->kind == TD_CRDT_MAP ? o->u.map.n > 0 : o->u.seq.total > 0;
}

static int root_cmp(const td_obj *a, const td_obj *b)
{
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    uint32_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = memcmp(a->name, b->name, n);
    if (c)
        return c;
    return a->name_len < b->name_len ? -1 : a->name_len > b->name_len;
}

typedef struct snapenc {
    td_crdt_doc *d;
    td_buf col[NCOL]; /* v2: one buffer per column */
    td_buf *o[NCOL];  /* where each column goes: v1 all to col[0] */
    uint32_t *agent_ix; /* doc agent -> snapshot index */
    uint32_t *obj_ix;   /* doc handle -> snapshot index + 1 */
    uint32_t *order;    /* snapshot index -> doc handle */
    uint32_t nobj;
} snapenc;

static void put_id(snapenc *s, td_id id)
{
    td_crdt_wb_varint(s->o[C_MAIN], s->agent_ix[id.agent]);
    td_crdt_wb_varint(s->o[C_MAIN], id.seq);
}

/* An origin relative to the run it belongs to: agent, then (same agent) the
 * distance back from the run's first seq, zigzagged, or the plain seq. */
static void put_rel(snapenc *s, td_id id, td_id base)
{
    td_crdt_wb_varint(s->o[C_RORIG], s->agent_ix[id.agent]);
    if (id.agent == base.agent)
        td_crdt_wb_varint(s->o[C_RORIG], td_crdt_zigzag((int64_t)base.seq - (int64_t)id.seq));
    else
        td_crdt_wb_varint(s->o[C_RORIG], id.seq);
}

static void put_run(snapenc *s, const td_run *m, uint32_t i, uint32_t n)
{
    const td_run *r = &m[i], *prev = i ? &m[i - 1] : NULL;
    uint8_t f = r->deleted ? R_DELETED : 0;
    int cont = prev && td_crdt_run_continues(prev, r);
    int same = 0, lm = O_EXPLICIT, rm = O_EXPLICIT;
    uint32_t lk = 0, rk = 0;
    if (cont) {
        f |= R_CONT;
    } else {
        same = prev && prev->id.agent == r->id.agent;
        if (r->left.agent == TD_NONE)
            lm = O_NONE;
        for (uint32_t k = 1; lm == O_EXPLICIT && k <= NEAR_RUNS && k <= i; k++)
            if (id_eq(r->left, td_crdt_run_last(&m[i - k]))) {
                lm = k == 1 ? O_NEIGHBOUR : O_NEAR;
                lk = k;
            }
        if (r->right.agent == TD_NONE)
            rm = O_NONE;
        for (uint32_t k = 1; rm == O_EXPLICIT && k <= NEAR_RUNS && i + k < n; k++)
            if (id_eq(r->right, m[i + k].id)) {
                rm = k == 1 ? O_NEIGHBOUR : O_NEAR;
                rk = k;
            }
        f |= (uint8_t)((same ? R_SAMEAGENT : 0) | lm << R_LEFT_SHIFT | rm << R_RIGHT_SHIFT);
    }
    if (r->len == 1)
        f |= R_LEN1;
    td_crdt_wb_u8(s->o[C_RFLAG], f);
    if (!cont) {
        if (same)
            td_crdt_wb_varint(s->o[C_RID], td_crdt_zigzag((int64_t)r->id.seq - (int64_t)(prev->id.seq + prev->len)));
        else {
            td_crdt_wb_varint(s->o[C_RID], s->agent_ix[r->id.agent]);
            td_crdt_wb_varint(s->o[C_RID], r->id.seq);
        }
    }
    if (r->len != 1)
        td_crdt_wb_varint(s->o[C_RLEN], r->len);
    if (lm == O_EXPLICIT && !cont)
        put_rel(s, r->left, r->id);
    if (lm == O_NEAR)
        td_crdt_wb_varint(s->o[C_RORIG], lk - 2);
    if (rm == O_EXPLICIT && !cont)
        put_rel(s, r->right, r->id);
    if (rm == O_NEAR)
        td_crdt_wb_varint(s->o[C_RORIG], rk - 2);
}

/* Runs of a sequence, merged where the merge is invisible (a continuation
 * with the same deleted flag), then written with their neighbours known. */
static void enc_seq(snapenc *s, const td_obj *o)
{
    const td_seq *q = &o->u.seq;
    uint32_t nruns = 0;
    for (td_leaf *l = q->first; l; l = l->next)
        nruns += l->n;
    td_run *m = td_crdt_mem(s->d, NULL, ((size_t)nruns + 1) * sizeof *m);
    if (!m) {
        s->o[C_MAIN]->oom = 1;
        return;
    }
    uint32_t n = 0;
    for (td_leaf *l = q->first; l; l = l->next)
        for (uint32_t i = 0; i < l->n; i++) {
            const td_run *r = &l->r[i];
            if (n && m[n - 1].deleted == r->deleted && td_crdt_run_continues(&m[n - 1], r))
                m[n - 1].len += r->len;
            else
                m[n++] = *r;
        }
    td_crdt_wb_varint(s->o[C_MAIN], n);
    for (uint32_t i = 0; i < n; i++)
        put_run(s, m, i, n);
    td_crdt_memfree(s->d, m);
    if (o->kind == TD_CRDT_LIST) {
        for (td_leaf *l = q->first; l; l = l->next)
            for (uint32_t i = 0; i < l->n; i++)
                for (uint32_t k = 0; k < l->r[i].len; k++)
                    td_crdt_val_encode(s->o[C_MAIN], &q->vals[l->r[i].content + k]);
        return;
    }
    td_buf t;
    td_crdt_wb_init(&t, s->d);
    for (td_leaf *l = q->first; l; l = l->next)
        for (uint32_t i = 0; i < l->n; i++)
            if (!l->r[i].deleted)
                td_crdt_wb_utf8(&t, q->text + l->r[i].content, l->r[i].len);
    if (t.oom)
        s->o[C_MAIN]->oom = 1;
    td_crdt_wb_varint(s->o[C_MAIN], t.len);
    td_crdt_wb_bytes(s->o[C_TEXT], t.p, t.len);
    td_crdt_wb_free(&t);
}

static void enc_map(snapenc *s, const td_obj *o)
{
    const td_map *m = &o->u.map;
    td_crdt_wb_varint(s->o[C_MAIN], m->n);
    for (uint32_t i = 0; i < m->n; i++) {
        const td_mapent *e = &m->e[i];
        td_crdt_wb_varint(s->o[C_MAIN], e->klen);
        td_crdt_wb_bytes(s->o[C_MAIN], e->key, e->klen);
        td_crdt_wb_varint(s->o[C_MAIN], e->lamport);
        put_id(s, e->id);
        td_crdt_val_encode(s->o[C_MAIN], &e->val);
    }
}

/* A delete record: seq as the gap after the previous record, the target as
 * the distance back from the record's own seq when the agent deleted its own
 * items (the usual case: targets always precede the delete). */
static void put_delrec(snapenc *s, uint32_t agent, const td_delrec *r, uint32_t *end,
                       uint32_t *obj)
{
    int desc = r->desc && r->len > 1;
    int own = r->target.agent == agent;
    uint8_t f = (uint8_t)((desc ? D_DESC : 0) | (r->obj == *obj ? D_SAMEOBJ : 0) |
                          (own ? D_OWNTARGET : 0) | (r->len == 1 ? D_LEN1 : 0));
    td_crdt_wb_u8(s->o[C_DFLAG], f);
    td_crdt_wb_varint(s->o[C_DGAP], r->seq - *end);
    if (r->len != 1)
        td_crdt_wb_varint(s->o[C_DLEN], r->len);
    if (r->obj != *obj)
        td_crdt_wb_varint(s->o[C_DTGT], s->obj_ix[r->obj - 1] - 1);
    uint32_t hi = desc ? r->target.seq : r->target.seq + r->len - 1;
    if (own) {
        td_crdt_wb_varint(s->o[C_DTGT], r->seq - hi - 1);
    } else {
        td_crdt_wb_varint(s->o[C_DTGT], s->agent_ix[r->target.agent]);
        td_crdt_wb_varint(s->o[C_DTGT], hi);
    }
    *end = r->seq + r->len;
    *obj = r->obj;
}

/* Snapshot order of objects: touched roots by (kind, name), then nested
 * objects by creating id. */
static td_crdt_err order_objects(snapenc *s)
{
    td_crdt_doc *d = s->d;
    for (uint32_t i = 0; i < d->nroots; i++) {
        const td_obj *o = d->objs[d->roots[i] - 1];
        if (!obj_touched(o))
            continue;
        uint32_t j = s->nobj++;
        while (j > 0 && root_cmp(d->objs[s->order[j - 1] - 1], o) > 0) {
            s->order[j] = s->order[j - 1];
            j--;
        }
        s->order[j] = d->roots[i];
    }
    for (uint32_t i = 0; i < d->nokeys; i++)
        s->order[s->nobj++] = d->okeys[i].obj;
    for (uint32_t i = 0; i < s->nobj; i++)
        s->obj_ix[s->order[i] - 1] = i + 1;
    return TD_CRDT_OK;
}

static td_crdt_err snapshot_encode(td_crdt_doc *d, int version, uint8_t **out, size_t *len)
{
    if (!out || !len)
        return td_crdt_fail(d, TD_CRDT_ERR_ARG, "snapshot needs out and len");
    snapenc s = {.d = d};
    for (int c = 0; c < NCOL; c++) {
        td_crdt_wb_init(&s.col[c], d);
        s.o[c] = &s.col[version == 1 ? 0 : c];
    }
    s.agent_ix = td_crdt_mem(d, NULL, (d->nagents + 1) * sizeof *s.agent_ix);
    s.obj_ix = td_crdt_mem(d, NULL, (d->nobjs + 1) * sizeof *s.obj_ix);
    s.order = td_crdt_mem(d, NULL, (d->nobjs + 1) * sizeof *s.order);
    td_crdt_err e = TD_CRDT_OK;
    if (!s.agent_ix || !s.obj_ix || !s.order) {
        e = td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
        goto done;
    }
    memset(s.obj_ix, 0, (d->nobjs + 1) * sizeof *s.obj_ix);
    if (version == 1)
        td_crdt_wb_bytes(s.o[C_MAIN], "TS\x01", 3);
    uint32_t na = 0;
    for (uint32_t i = 0; i < d->nagents; i++)
        na += d->agents[i].vv > 0;
    td_crdt_wb_varint(s.o[C_MAIN], na);
    na = 0;
    for (uint32_t i = 0; i < d->nagents; i++) {
        const td_agent *a = &d->agents[d->agent_order[i]];
        if (!a->vv)
            continue;
        s.agent_ix[d->agent_order[i]] = na++;
        td_crdt_wb_u64le(s.o[C_MAIN], a->id);
        td_crdt_wb_varint(s.o[C_MAIN], a->vv);
    }
    td_crdt_wb_varint(s.o[C_MAIN], d->max_lamport);
    order_objects(&s);
    td_crdt_wb_varint(s.o[C_MAIN], s.nobj);
    for (uint32_t i = 0; i < s.nobj; i++) {
        const td_obj *o = d->objs[s.order[i] - 1];
        if (o->is_root) {
            td_crdt_wb_u8(s.o[C_MAIN], (uint8_t)(o->kind - 1));
            td_crdt_wb_varint(s.o[C_MAIN], o->name_len);
            td_crdt_wb_bytes(s.o[C_MAIN], o->name, o->name_len);
            continue;
        }
        td_crdt_wb_u8(s.o[C_MAIN], (uint8_t)(o->kind + 2));
        put_id(&s, o->id);
        td_crdt_wb_varint(s.o[C_MAIN], s.obj_ix[o->parent - 1] - 1);
        td_crdt_wb_u8(s.o[C_MAIN], o->key != NULL);
        if (o->key) {
            td_crdt_wb_varint(s.o[C_MAIN], o->klen);
            td_crdt_wb_bytes(s.o[C_MAIN], o->key, o->klen);
            td_crdt_wb_varint(s.o[C_MAIN], o->lamport);
        }
    }
    for (uint32_t i = 0; i < s.nobj; i++) {
        const td_obj *o = d->objs[s.order[i] - 1];
        if (o->kind == TD_CRDT_MAP)
            enc_map(&s, o);
        else
            enc_seq(&s, o);
    }
    for (uint32_t i = 0; i < d->nagents; i++) {
        uint32_t ai = d->agent_order[i];
        const td_agent *a = &d->agents[ai];
        if (!a->vv)
            continue;
        td_crdt_wb_varint(s.o[C_MAIN], a->ndels);
        uint32_t end = 0, obj = 0;
        for (uint32_t k = 0; k < a->ndels; k++)
            put_delrec(&s, ai, &a->dels[k], &end, &obj);
    }
    td_buf whole;
    td_crdt_wb_init(&whole, d);
    if (version == 1) {
        whole = s.col[0];
        td_crdt_wb_init(&s.col[0], d);
    } else {
        size_t sz = 3;
        for (int c = 0; c < NCOL; c++)
            sz += s.col[c].len + 8;
        td_crdt_wb_reserve(&whole, sz); /* the columns only shrink, as a rule */
        td_crdt_wb_bytes(&whole, "TS\x02", 3);
        for (int c = 0; c < NCOL; c++)
            td_crdt_ent_put(&whole, s.col[c].p, s.col[c].len);
    }
    int oom = whole.oom;
    for (int c = 0; c < NCOL; c++)
        oom |= s.col[c].oom;
    if (oom) {
        td_crdt_wb_free(&whole);
        e = td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    } else {
        *out = whole.p;
        *len = whole.len;
    }
done:
    td_crdt_memfree(d, s.agent_ix);
    td_crdt_memfree(d, s.obj_ix);
    td_crdt_memfree(d, s.order);
    for (int c = 0; c < NCOL; c++)
        td_crdt_wb_free(&s.col[c]);
    return e;
}

td_crdt_err td_crdt_snapshot_encode(td_crdt_doc *d, uint8_t **out, size_t *len)
{
    td_crdt_err e = td_crdt_full(d);
    if (e)
        return e;
    return snapshot_encode(d, 2, out, len);
}

td_crdt_err td_crdt_snapshot_encode_v1(td_crdt_doc *d, uint8_t **out, size_t *len)
{
    td_crdt_err e = td_crdt_full(d);
    if (e)
        return e;
    return snapshot_encode(d, 1, out, len);
}

/* ---- loading -------------------------------------------------------------- */

typedef struct snapdec {
    td_crdt_doc *d;
    td_rd r;          /* the whole snapshot */
    td_rd col[NCOL];  /* v2: the decoded columns */
    td_rd *in[NCOL];  /* where each column is read: v1 all from r */
    uint8_t *colmem[NCOL];
    uint32_t na;
    uint32_t *agent; /* snapshot agent index -> doc agent index */
    uint32_t nobj;
    uint32_t *obj;   /* snapshot object index -> doc handle */
    const char *why;
    const td_leaf *last_leaf; /* where the previous delete target was found */
    int trusted;              /* td_crdt_options.trusted_snapshot */
    int lazy;                 /* decode only what reading needs (dec_lazy) */
    int given;                /* v2: columns [0, given) are set already, and
                                 the others start at rest */
    const uint8_t *rest;
    size_t coln[NCOL];        /* decoded size of each column */
} snapdec;

#define BAD(s, msg) ((s)->why = (msg), TD_CRDT_ERR_DECODE)

/* Whether any column read went wrong (one check after reading several). */
static int col_bad(const snapdec *s)
{
    int bad = s->r.bad;
    for (int c = 0; c < NCOL; c++)
        bad |= s->in[c]->bad;
    return bad;
}

static td_id get_id(snapdec *s)
{
    td_rd *M = s->in[C_MAIN];
    td_id id;
    uint32_t a = td_crdt_rd_u32(M, s->na ? s->na - 1 : 0);
    id.seq = td_crdt_rd_u32(M, TD_MAX_SEQ);
    if (!s->na)
        M->bad = 1;
    id.agent = M->bad ? 0 : s->agent[a];
    if (!M->bad && id.seq >= s->d->agents[id.agent].vv)
        M->bad = 1; /* names an op the vector says was never seen */
    return id;
}

/* The id indexes of a loaded document, built at once when every sequence
 * holds its runs: the runs sorted by (agent, seq) with a radix sort, checked
 * for ids that repeat (two runs overlapping), then laid into full chunks.
 * Putting each run into the index as it is appended cost a search and a
 * move inside a chunk per run (document order is not seq order), and a
 * search more to find repeats. */
typedef struct lrun {
    uint32_t agent, seq, len;
    td_leaf *leaf;
} lrun;

static uint32_t lrun_digit(const lrun *r, uint32_t pass)
{
    uint32_t v = pass < 3 ? r->seq : r->agent;
    return (v >> (pass % 3 * 11)) & 2047;
}

static td_crdt_err build_indexes(snapdec *s)
{
    td_crdt_doc *d = s->d;
    size_t n = 0;
    for (uint32_t h = 1; h <= d->nobjs; h++)
        if (d->objs[h - 1]->kind != TD_CRDT_MAP)
            for (const td_leaf *l = d->objs[h - 1]->u.seq.first; l; l = l->next)
                n += l->n;
    if (n == 0)
        return TD_CRDT_OK;
    lrun *a = td_crdt_mem(d, NULL, n * sizeof *a), *b = td_crdt_mem(d, NULL, n * sizeof *b);
    uint32_t *cnt = td_crdt_mem(d, NULL, 2048 * sizeof *cnt);
    td_idx_ent *ents = td_crdt_mem(d, NULL, n * sizeof *ents);
    td_crdt_err e = TD_CRDT_OK;
    if (!a || !b || !cnt || !ents) {
        e = td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
        goto done;
    }
    size_t k = 0;
    for (uint32_t h = 1; h <= d->nobjs; h++)
        if (d->objs[h - 1]->kind != TD_CRDT_MAP)
            for (td_leaf *l = d->objs[h - 1]->u.seq.first; l; l = l->next)
                for (uint32_t i = 0; i < l->n; i++)
                    a[k++] = (lrun){l->r[i].id.agent, l->r[i].id.seq, l->r[i].len, l};
    /* LSD radix sort, 11 bits a pass: seq (3 passes), then agent (3);
     * a pass whose digit is the same for every run is skipped */
    for (uint32_t pass = 0; pass < 6; pass++) {
        memset(cnt, 0, 2048 * sizeof *cnt);
        for (size_t i = 0; i < n; i++)
            cnt[lrun_digit(&a[i], pass)]++;
        if (cnt[lrun_digit(&a[0], pass)] == n)
            continue;
        uint32_t sum = 0;
        for (uint32_t j = 0; j < 2048; j++) {
            uint32_t c = cnt[j];
            cnt[j] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            b[cnt[lrun_digit(&a[i], pass)]++] = a[i];
        lrun *t = a;
        a = b;
        b = t;
    }
    for (size_t i = 0; i < n && !e;) {
        size_t j = i;
        for (; j < n && a[j].agent == a[i].agent; j++) {
            if (j > i && (uint64_t)a[j - 1].seq + a[j - 1].len > a[j].seq) {
                e = BAD(s, "run ids repeat");
                break;
            }
            ents[j - i] = (td_idx_ent){a[j].seq, a[j].leaf};
        }
        if (!e && td_crdt_idx_build(d, &d->agents[a[i].agent].idx, ents, (uint32_t)(j - i)))
            e = td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
        i = j;
    }
done:
    td_crdt_memfree(d, a);
    td_crdt_memfree(d, b);
    td_crdt_memfree(d, cnt);
    td_crdt_memfree(d, ents);
    return e;
}

static td_id get_rel(snapdec *s, td_id base)
{
    td_rd *O = s->in[C_RORIG];
    td_id id;
    uint32_t a = td_crdt_rd_u32(O, s->na ? s->na - 1 : 0);
    uint64_t v = td_crdt_rd_varint(O);
    if (O->bad || !s->na) {
        O->bad = 1;
        return base;
    }
    id.agent = s->agent[a];
    if (v > 2 * (uint64_t)TD_MAX_SEQ + 1) { /* no seq is that far away; keeps the sum in range */
        O->bad = 1;
        return base;
    }
    int64_t seq = id.agent == base.agent ? (int64_t)base.seq - td_crdt_unzigzag(v) : (int64_t)v;
    if (seq < 0 || seq >= (int64_t)s->d->agents[id.agent].vv) {
        O->bad = 1;
        return base;
    }
    id.seq = (uint32_t)seq;
    return id;
}

/* Run i of m; earlier runs are decoded. A right origin that names a later
 * run is left for the caller: *ahead receives k (0 if none). */
static td_crdt_err dec_run(snapdec *s, td_run *m, uint32_t i, uint32_t *ahead, uint8_t *cont)
{
    td_crdt_doc *d = s->d;
    td_run *r = &m[i];
    const td_run *prev = i ? &m[i - 1] : NULL;
    uint8_t f = td_crdt_rd_u8(s->in[C_RFLAG]);
    int lm = (f >> R_LEFT_SHIFT) & 3, rm = (f >> R_RIGHT_SHIFT) & 3;
    memset(r, 0, sizeof *r);
    *ahead = 0;
    *cont = (f & R_CONT) != 0;
    if (f & R_CONT) {
        if (!prev || (f & R_SAMEAGENT) || lm || rm)
            return BAD(s, "run continuation");
        r->id = td_crdt_run_last(prev);
        r->left = r->id;
        r->id.seq++;
    } else if (f & R_SAMEAGENT) {
        if (!prev)
            return BAD(s, "run flags");
        r->id.agent = prev->id.agent;
        uint64_t delta = td_crdt_rd_varint(s->in[C_RID]);
        if (delta > 2 * (uint64_t)TD_MAX_SEQ + 1)
            return BAD(s, "run seq");
        int64_t seq = (int64_t)prev->id.seq + prev->len + td_crdt_unzigzag(delta);
        if (seq < 0 || seq > TD_MAX_SEQ)
            return BAD(s, "run seq");
        r->id.seq = (uint32_t)seq;
    } else {
        uint32_t a = td_crdt_rd_u32(s->in[C_RID], s->na ? s->na - 1 : 0);
        r->id.seq = td_crdt_rd_u32(s->in[C_RID], TD_MAX_SEQ);
        if (s->in[C_RID]->bad || !s->na)
            return BAD(s, "run id");
        r->id.agent = s->agent[a];
    }
    r->len = (f & R_LEN1) ? 1 : td_crdt_rd_u32(s->in[C_RLEN], TD_MAX_SEQ);
    r->deleted = f & R_DELETED;
    if (col_bad(s) || r->len == 0 || (uint64_t)r->id.seq + r->len > d->agents[r->id.agent].vv)
        return BAD(s, "run ids");
    if (f & R_CONT)
        return TD_CRDT_OK;
    r->left.agent = r->right.agent = TD_NONE;
    if (lm == O_EXPLICIT) {
        *cont |= 2; /* an explicit origin: checked once the runs are in */
        r->left = get_rel(s, r->id);
    } else if (lm != O_NONE) {
        uint64_t k = lm == O_NEIGHBOUR ? 1 : td_crdt_rd_varint(s->in[C_RORIG]) + 2;
        if (k > i)
            return BAD(s, "run left origin");
        r->left = td_crdt_run_last(&m[i - k]);
    }
    if (rm == O_EXPLICIT) {
        *cont |= 2;
        r->right = get_rel(s, r->id);
    } else if (rm != O_NONE)
        *ahead = rm == O_NEIGHBOUR ? 1 : (uint32_t)td_crdt_rd_u32(s->in[C_RORIG], NEAR_RUNS) + 2;
    return col_bad(s) ? BAD(s, "run origins") : TD_CRDT_OK;
}

/* Decodes all runs, resolves origins that name later runs, then appends
 * the runs to the (empty) tree in order. */
static td_crdt_err dec_runs(snapdec *s, td_seq *q, int is_list)
{
    td_crdt_doc *d = s->d;
    uint32_t n = td_crdt_rd_u32(s->in[C_MAIN], (uint32_t)td_crdt_rd_left(s->in[C_RFLAG]));
    if (s->in[C_MAIN]->bad)
        return BAD(s, "run count");
    td_run *m = td_crdt_mem(d, NULL, ((size_t)n + 1) * sizeof *m);
    uint32_t *ahead = td_crdt_mem(d, NULL, ((size_t)n + 1) * sizeof *ahead);
    uint8_t *cont = td_crdt_mem(d, NULL, (size_t)n + 1);
    td_crdt_err e = (!m || !ahead || !cont) ? td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory")
                                            : TD_CRDT_OK;
    for (uint32_t i = 0; !e && i < n; i++)
        e = dec_run(s, m, i, &ahead[i], &cont[i]);
    for (uint32_t i = 0; !e && i < n; i++) {
        if (ahead[i]) {
            if (ahead[i] >= n - i)
                e = BAD(s, "run right origin");
            else
                m[i].right = m[i + ahead[i]].id;
        }
        if (cont[i] & 1)
            m[i].right = m[i - 1].right;
        if (!e && id_eq(m[i].right, m[i].id))
            e = BAD(s, "run is its own origin");
    }
    for (uint32_t i = 0; !e && i < n; i++) {
        td_run r = m[i];
        r.content = TD_NO_CONTENT;
        if (is_list || !r.deleted) {
            if (q->clen > TD_MAX_SEQ - r.len) {
                e = BAD(s, "sequence too long");
                break;
            }
            r.content = q->clen; /* content is read after the runs */
            q->clen += r.len;
        }
        e = td_crdt_seq_append_unindexed(d, q, &r); /* indexed by build_indexes */
    }
    /* Explicit origins are checked with the order of the whole document
     * (snapshot_check.c): an item of this sequence, on the right side. */
    td_crdt_memfree(d, m);
    td_crdt_memfree(d, ahead);
    td_crdt_memfree(d, cont);
    return e;
}

static td_crdt_err dec_seq(snapdec *s, uint32_t h)
{
    td_crdt_doc *d = s->d;
    td_obj *o = d->objs[h - 1];
    td_seq *q = &o->u.seq;
    td_crdt_err e = dec_runs(s, q, o->kind == TD_CRDT_LIST);
    if (e)
        return e;
    /* content */
    uint32_t clen = q->clen;
    q->clen = 0;
    if (clen > td_crdt_rd_left(s->in[C_MAIN]) + 0u && o->kind == TD_CRDT_LIST)
        return BAD(s, "list values");
    if (o->kind == TD_CRDT_LIST) {
        if (clen && !td_crdt_grow(d, (void **)&q->vals, &q->ccap, clen, sizeof *q->vals))
            return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
        for (; q->clen < clen; q->clen++) {
            td_val *v = &q->vals[q->clen];
            td_crdt_err e = td_crdt_val_decode(d, s->in[C_MAIN], v);
            if (e) {
                v->tag = TD_VT_NULL;
                return e == TD_CRDT_ERR_NOMEM ? e : BAD(s, "list value");
            }
            if (v->tag == TD_VT_DELETED) {
                v->tag = TD_VT_NULL;
                return BAD(s, "list value");
            }
            v->u.obj = v->tag >= TD_VT_TEXT && v->tag <= TD_VT_MAP ? 0 : v->u.obj;
        }
        return TD_CRDT_OK;
    }
    uint32_t nbytes = td_crdt_rd_u32(s->in[C_MAIN], 0x7fffffff);
    const uint8_t *p = td_crdt_rd_bytes(s->in[C_TEXT], nbytes);
    if (!p || td_crdt_utf8_count((const char *)p, nbytes) != clen)
        return BAD(s, "text content");
    if (clen && !td_crdt_grow(d, (void **)&q->text, &q->ccap, clen, sizeof *q->text))
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    td_crdt_utf8_decode((const char *)p, nbytes, q->text);
    q->clen = clen;
    return TD_CRDT_OK;
}

/* Nested-object values in lists name the object made by that element. */
static td_crdt_err link_list_objects(snapdec *s, uint32_t h)
{
    td_crdt_doc *d = s->d;
    td_seq *q = &d->objs[h - 1]->u.seq;
    for (td_leaf *l = q->first; l; l = l->next)
        for (uint32_t i = 0; i < l->n; i++)
            for (uint32_t k = 0; k < l->r[i].len; k++) {
                td_val *v = &q->vals[l->r[i].content + k];
                if (v->tag < TD_VT_TEXT || v->tag > TD_VT_MAP)
                    continue;
                uint32_t c = td_crdt_obj_find_nested(d, d->agents[l->r[i].id.agent].id,
                                                l->r[i].id.seq + k);
                if (!c || d->objs[c - 1]->kind != v->tag - TD_VT_TEXT + 1 ||
                    d->objs[c - 1]->parent != h || d->objs[c - 1]->key)
                    return BAD(s, "list element names no object");
                v->u.obj = c;
            }
    return TD_CRDT_OK;
}

static td_crdt_err dec_map(snapdec *s, uint32_t h)
{
    td_crdt_doc *d = s->d;
    td_map *m = &d->objs[h - 1]->u.map;
    uint32_t n = td_crdt_rd_u32(s->in[C_MAIN], (uint32_t)td_crdt_rd_left(s->in[C_MAIN]));
    for (uint32_t i = 0; i < n; i++) {
        uint32_t klen = td_crdt_rd_u32(s->in[C_MAIN], TD_MAX_KEY);
        const char *key = (const char *)td_crdt_rd_bytes(s->in[C_MAIN], klen);
        uint64_t lamport = td_crdt_rd_varint(s->in[C_MAIN]);
        td_id id = get_id(s);
        if (col_bad(s) || !key || klen == 0 || td_crdt_utf8_count(key, klen) == SIZE_MAX ||
            lamport == 0 || lamport > d->max_lamport)
            return BAD(s, "map entry");
        if (m->n && td_crdt_map_find(m, key, klen))
            return BAD(s, "map keys repeat");
        if (m->n) { /* keys must ascend */
            const td_mapent *last = &m->e[m->n - 1];
            uint32_t k = last->klen < klen ? last->klen : klen;
            int c = memcmp(last->key, key, k);
            if (c > 0 || (c == 0 && last->klen > klen))
                return BAD(s, "map keys out of order");
        }
        td_val v;
        td_crdt_err e = td_crdt_val_decode(d, s->in[C_MAIN], &v);
        if (e)
            return e == TD_CRDT_ERR_NOMEM ? e : BAD(s, "map value");
        if (v.tag >= TD_VT_TEXT && v.tag <= TD_VT_MAP) {
            uint32_t c = td_crdt_obj_find_nested(d, d->agents[id.agent].id, id.seq);
            if (!c || d->objs[c - 1]->kind != v.tag - TD_VT_TEXT + 1 ||
                d->objs[c - 1]->parent != h)
                return BAD(s, "map value names no object");
            v.u.obj = c;
        }
        if ((e = td_crdt_map_write(d, m, key, klen, &v, lamport, id))) {
            td_crdt_val_free(d, &v);
            return e;
        }
    }
    return TD_CRDT_OK;
}

static td_crdt_err dec_objects(snapdec *s)
{
    td_crdt_doc *d = s->d;
    s->nobj = td_crdt_rd_u32(s->in[C_MAIN], (uint32_t)td_crdt_rd_left(s->in[C_MAIN]));
    if (s->in[C_MAIN]->bad)
        return BAD(s, "object count");
    s->obj = td_crdt_mem(d, NULL, ((size_t)s->nobj + 1) * sizeof *s->obj);
    uint32_t *parent = td_crdt_mem(d, NULL, ((size_t)s->nobj + 1) * sizeof *parent);
    td_crdt_err e = TD_CRDT_OK;
    if (!s->obj || !parent) {
        td_crdt_memfree(d, parent);
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    }
    const td_obj *prev_root = NULL;
    uint64_t prev_agent = 0;
    uint32_t prev_seq = 0;
    int have_nested = 0;
    for (uint32_t i = 0; i < s->nobj && !e; i++) {
        uint8_t tag = td_crdt_rd_u8(s->in[C_MAIN]);
        parent[i] = UINT32_MAX;
        if (tag < 3) {
            if (have_nested)
                e = BAD(s, "roots after nested objects");
            uint32_t n = td_crdt_rd_u32(s->in[C_MAIN], TD_MAX_NAME);
            const char *name = (const char *)td_crdt_rd_bytes(s->in[C_MAIN], n);
            if (e || !name || n == 0 || td_crdt_utf8_count(name, n) == SIZE_MAX) {
                e = BAD(s, "root name");
                break;
            }
            if ((e = td_crdt_obj_new_root(d, (uint8_t)(tag + 1), name, n, &s->obj[i])))
                break;
            const td_obj *o = d->objs[s->obj[i] - 1];
            if (prev_root && root_cmp(prev_root, o) >= 0)
                e = BAD(s, "roots out of order");
            prev_root = o;
        } else if (tag < 6) {
            td_id id = get_id(s);
            parent[i] = td_crdt_rd_u32(s->in[C_MAIN], s->nobj - 1);
            uint8_t has_key = td_crdt_rd_u8(s->in[C_MAIN]);
            if (s->in[C_MAIN]->bad || has_key > 1) {
                e = BAD(s, "nested object");
                break;
            }
            uint64_t agent = d->agents[id.agent].id;
            if (have_nested && (agent < prev_agent || (agent == prev_agent && id.seq <= prev_seq))) {
                e = BAD(s, "nested objects out of order");
                break;
            }
            have_nested = 1;
            prev_agent = agent;
            prev_seq = id.seq;
            /* parents are linked below; create without depth checks */
            if ((e = td_crdt_obj_new_nested(d, (uint8_t)(tag - 2), id, 0, &s->obj[i])))
                break;
            if (has_key) {
                td_obj *o = d->objs[s->obj[i] - 1];
                uint32_t kl = td_crdt_rd_u32(s->in[C_MAIN], TD_MAX_KEY);
                const char *key = (const char *)td_crdt_rd_bytes(s->in[C_MAIN], kl);
                o->lamport = td_crdt_rd_varint(s->in[C_MAIN]);
                if (!key || kl == 0 || td_crdt_utf8_count(key, kl) == SIZE_MAX || o->lamport == 0 ||
                    o->lamport > d->max_lamport) {
                    e = BAD(s, "nested object key");
                    break;
                }
                if (!(o->key = td_crdt_mem(d, NULL, kl))) {
                    e = td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
                    break;
                }
                memcpy(o->key, key, kl);
                o->klen = kl;
            }
        } else {
            e = BAD(s, "object tag");
        }
    }
    /* link parents; depth by walking up, which also catches cycles */
    for (uint32_t i = 0; i < s->nobj && !e; i++) {
        if (parent[i] == UINT32_MAX)
            continue;
        td_obj *o = d->objs[s->obj[i] - 1];
        td_obj *p = d->objs[s->obj[parent[i]] - 1];
        if (p->kind == TD_CRDT_TEXT || (o->key != NULL) != (p->kind == TD_CRDT_MAP)) {
            e = BAD(s, "object parent");
            break;
        }
        o->parent = s->obj[parent[i]];
        uint32_t depth = 0;
        for (uint32_t j = i; parent[j] != UINT32_MAX; j = parent[j])
            if (++depth > d->max_depth) {
                e = td_crdt_fail(d, TD_CRDT_ERR_LIMIT, "objects nested too deeply (or in a cycle)");
                break;
            }
        o->depth = (uint16_t)depth;
    }
    td_crdt_memfree(d, parent);
    return e;
}

/* td_crdt_seq_range_deleted, looking first in the leaf where the previous
 * record's target was: records come in seq order, and one agent's deletes
 * in a row (a backspaced word, a selection) hit neighbouring items, so most
 * lookups need no index search. */
static int range_deleted(snapdec *s, uint32_t obj, uint32_t agent, uint32_t lo, uint32_t hi)
{
    const td_leaf *l = s->last_leaf;
    uint64_t seq = lo;
    while (l && l->obj == obj && seq <= hi) {
        uint32_t i = 0;
        while (i < l->n && !(l->r[i].id.agent == agent && seq >= l->r[i].id.seq &&
                             seq - l->r[i].id.seq < l->r[i].len))
            i++;
        if (i == l->n)
            break; /* not here: the index decides */
        if (!l->r[i].deleted)
            return 0;
        seq = (uint64_t)l->r[i].id.seq + l->r[i].len;
    }
    if (seq > hi)
        return 1;
    td_pos p;
    if (!td_crdt_seq_locate(s->d, obj, (td_id){agent, (uint32_t)seq}, &p))
        return 0;
    s->last_leaf = p.leaf;
    return td_crdt_seq_range_deleted(s->d, obj, agent, (uint32_t)seq, hi);
}

static td_crdt_err dec_delrec(snapdec *s, uint32_t agent, td_delrec *r, uint32_t *end,
                              uint32_t *obj)
{
    td_crdt_doc *d = s->d;
    uint8_t f = td_crdt_rd_u8(s->in[C_DFLAG]);
    if (f & ~15u)
        return BAD(s, "delete record flags");
    uint64_t seq = (uint64_t)*end + td_crdt_rd_varint(s->in[C_DGAP]);
    r->len = (f & D_LEN1) ? 1 : td_crdt_rd_u32(s->in[C_DLEN], TD_MAX_SEQ);
    r->desc = (f & D_DESC) != 0;
    if (f & D_SAMEOBJ) {
        if (!*obj)
            return BAD(s, "delete record object");
        r->obj = *obj;
    } else {
        uint32_t oi = td_crdt_rd_u32(s->in[C_DTGT], s->nobj ? s->nobj - 1 : 0);
        if (col_bad(s) || !s->nobj)
            return BAD(s, "delete record object");
        r->obj = s->obj[oi];
    }
    if (col_bad(s) || r->len == 0 || (r->desc && r->len == 1) || seq + r->len > d->agents[agent].vv)
        return BAD(s, "delete record");
    r->seq = (uint32_t)seq;
    uint64_t hi;
    if (f & D_OWNTARGET) {
        r->target.agent = agent;
        uint64_t dist = td_crdt_rd_varint(s->in[C_DTGT]);
        if (dist >= seq)
            return BAD(s, "delete record target");
        hi = seq - dist - 1;
    } else {
        uint32_t a = td_crdt_rd_u32(s->in[C_DTGT], s->na ? s->na - 1 : 0);
        hi = td_crdt_rd_varint(s->in[C_DTGT]);
        if (col_bad(s) || !s->na)
            return BAD(s, "delete record target");
        r->target.agent = s->agent[a];
    }
    if (col_bad(s) || hi + 1 < r->len || hi >= d->agents[r->target.agent].vv)
        return BAD(s, "delete record target");
    uint32_t lo = (uint32_t)(hi - (r->len - 1));
    r->target.seq = r->desc ? (uint32_t)hi : lo;
    if (d->objs[r->obj - 1]->kind == TD_CRDT_MAP ||
        !range_deleted(s, r->obj, r->target.agent, lo, (uint32_t)hi))
        return BAD(s, "delete record target (not deleted items of its sequence)");
    *end = r->seq + r->len;
    *obj = r->obj;
    return TD_CRDT_OK;
}

static td_crdt_err dec_deletes(snapdec *s)
{
    td_crdt_doc *d = s->d;
    for (uint32_t ai = 0; ai < s->na; ai++) {
        uint32_t a = s->agent[ai];
        uint32_t n = td_crdt_rd_u32(s->in[C_MAIN], (uint32_t)td_crdt_rd_left(s->in[C_DFLAG]));
        uint32_t end = 0, obj = 0;
        if (s->in[C_MAIN]->bad)
            return BAD(s, "delete count");
        if (n && !td_crdt_grow(d, (void **)&d->agents[a].dels, &d->agents[a].capdels, n,
                          sizeof(td_delrec)))
            return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
        for (uint32_t i = 0; i < n; i++) {
            td_delrec r;
            td_crdt_err e = dec_delrec(s, a, &r, &end, &obj);
            if (e)
                return e;
            d->agents[a].dels[d->agents[a].ndels++] = r;
        }
    }
    return TD_CRDT_OK;
}

/* Columns [from, to) of a v2 snapshot, read one after the other from s->r. */
static td_crdt_err dec_cols(snapdec *s, int from, int to)
{
    /* an empty column has no buffer: read it from a static empty one (no
     * arithmetic on NULL) */
    static const uint8_t none[1];
    for (int c = from; c < to; c++) {
        size_t n = 0;
        td_crdt_err e = td_crdt_ent_get(s->d, &s->r, &s->colmem[c], &n, &s->why);
        if (e)
            return e;
        const uint8_t *p = n ? s->colmem[c] : none;
        s->col[c] = (td_rd){p, p + n, 0};
        s->coln[c] = n;
    }
    s->rest = s->r.p;
    if (to == NCOL && td_crdt_rd_left(&s->r))
        return BAD(s, "trailing bytes after the columns");
    for (int c = to; c < NCOL; c++) /* not decoded (lazy): read as empty */
        s->col[c] = (td_rd){none, none, 0};
    return TD_CRDT_OK;
}

/* A text of a lazy load: its run count and its visible UTF-8, kept where the
 * text column holds it (td_seq.lazy). The runs are read by
 * td_crdt_materialize, which also checks that they hold that many code
 * points. */
static td_crdt_err dec_text_lazy(snapdec *s, uint32_t h)
{
    td_seq *q = &s->d->objs[h - 1]->u.seq;
    td_rd *M = s->in[C_MAIN];
    uint32_t nruns = td_crdt_rd_u32(M, TD_MAX_SEQ);
    uint32_t nbytes = td_crdt_rd_u32(M, 0x7fffffff);
    const uint8_t *p = td_crdt_rd_bytes(s->in[C_TEXT], nbytes);
    size_t n = p ? td_crdt_utf8_count((const char *)p, nbytes) : SIZE_MAX;
    if (M->bad || n == SIZE_MAX || n > TD_MAX_SEQ || (n && !nruns))
        return BAD(s, "text content");
    q->lazy = 1;
    q->lazy_runs = nruns;
    q->lazy_off = nbytes ? (uint32_t)(p - s->colmem[C_TEXT]) : 0;
    q->lazy_bytes = nbytes;
    q->vis = (uint32_t)n;
    return TD_CRDT_OK;
}

/* The rest of a lazy load, after the objects: maps whole, texts by
 * dec_text_lazy, the delete counts (their records are in columns not
 * decoded), and nothing left over in the two columns read. */
static td_crdt_err dec_lazy(snapdec *s)
{
    td_crdt_doc *d = s->d;
    td_crdt_err e = TD_CRDT_OK;
    for (uint32_t i = 0; !e && i < s->nobj; i++) {
        uint32_t h = s->obj[i];
        e = d->objs[h - 1]->kind == TD_CRDT_MAP ? dec_map(s, h) : dec_text_lazy(s, h);
        if (!e && col_bad(s))
            e = BAD(s, "truncated");
    }
    for (uint32_t ai = 0; !e && ai < s->na; ai++) {
        (void)td_crdt_rd_u32(s->in[C_MAIN], TD_MAX_SEQ);
        if (s->in[C_MAIN]->bad)
            e = BAD(s, "delete count");
    }
    if (!e && (td_crdt_rd_left(s->in[C_MAIN]) || td_crdt_rd_left(s->in[C_TEXT])))
        e = BAD(s, "trailing bytes");
    return e;
}

static td_crdt_err dec_all(snapdec *s)
{
    td_crdt_doc *d = s->d;
    const uint8_t *magic = td_crdt_rd_bytes(&s->r, 3);
    if (!magic || magic[0] != 'T' || magic[1] != 'S')
        return BAD(s, "not a snapshot");
    if (magic[2] != 1 && magic[2] != 2) {
        s->why = "unsupported snapshot version (this loader reads 1 and 2)";
        return TD_CRDT_ERR_VERSION;
    }
    for (int c = 0; c < NCOL; c++)
        s->in[c] = magic[2] == 1 ? &s->r : &s->col[c];
    /* A lazy load (trusted v2 only) decodes the main and text columns now,
     * the others (runs, deletes) when the document is materialized. */
    s->lazy = s->lazy && s->trusted && magic[2] == 2;
    if (magic[2] == 2) {
        if (s->given)
            s->r.p = s->rest;
        td_crdt_err e = dec_cols(s, s->given, s->lazy ? C_TEXT + 1 : NCOL);
        if (e)
            return e;
    }
    s->na = td_crdt_rd_u32(s->in[C_MAIN], (uint32_t)(td_crdt_rd_left(s->in[C_MAIN]) / 9));
    if (s->in[C_MAIN]->bad)
        return BAD(s, "agent count");
    s->agent = td_crdt_mem(d, NULL, ((size_t)s->na + 1) * sizeof *s->agent);
    if (!s->agent)
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    uint64_t prev = 0;
    for (uint32_t i = 0; i < s->na; i++) {
        uint64_t id = td_crdt_rd_u64le(s->in[C_MAIN]);
        uint32_t vv = td_crdt_rd_u32(s->in[C_MAIN], TD_MAX_SEQ);
        if (s->in[C_MAIN]->bad || vv == 0 || (i && id <= prev))
            return BAD(s, "agent table");
        prev = id;
        td_crdt_err e = td_crdt_agent_intern(d, id, &s->agent[i]);
        if (e)
            return e;
        d->agents[s->agent[i]].vv = vv;
        d->nops += vv;
    }
    d->max_lamport = td_crdt_rd_varint(s->in[C_MAIN]);
    if (s->in[C_MAIN]->bad || d->max_lamport > ((uint64_t)1 << 62))
        return BAD(s, "lamport");
    td_crdt_err e = dec_objects(s);
    if (!e && s->lazy) {
        /* a list's values sit in the main column after its runs, so a
         * document with lists is loaded whole */
        for (uint32_t i = 0; s->lazy && i < s->nobj; i++)
            s->lazy = d->objs[s->obj[i] - 1]->kind != TD_CRDT_LIST;
        if (s->lazy)
            return dec_lazy(s);
        if ((e = dec_cols(s, C_TEXT + 1, NCOL)))
            return e;
    }
    for (uint32_t i = 0; !e && i < s->nobj; i++) {
        uint32_t h = s->obj[i];
        e = d->objs[h - 1]->kind == TD_CRDT_MAP ? dec_map(s, h) : dec_seq(s, h);
        if (!e && col_bad(s))
            e = BAD(s, "truncated");
    }
    if (!e)
        e = build_indexes(s);
    for (uint32_t i = 0; !e && i < s->nobj; i++) {
        uint32_t h = s->obj[i];
        if (d->objs[h - 1]->kind == TD_CRDT_LIST)
            e = link_list_objects(s, h);
    }
    if (!e)
        e = dec_deletes(s);
    for (int c = 0; !e && c < NCOL; c++)
        if (s->in[c]->bad || td_crdt_rd_left(s->in[c]))
            e = BAD(s, "trailing bytes");
    /* Each piece above was validated as it was decoded; the whole-history
     * check is most of a load's work (about 40% on automerge-paper), and a
     * caller that knows the bytes are this library's own encoding, intact,
     * may skip it (td_crdt_options.trusted_snapshot). */
    if (!e && !s->trusted) {
        int oom;
        const char *why = td_crdt_snapshot_check(d, &oom);
        if (why)
            e = oom ? td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory") : BAD(s, why);
    }
    return e;
}

td_crdt_err td_crdt_doc_load(const td_crdt_options *opts, const uint8_t *snap,
                             size_t len, td_crdt_doc **out, const char **errmsg)
{
    static const char *const by_code[] = {
        [TD_CRDT_OK] = "ok",
        [TD_CRDT_ERR_NOMEM] = "out of memory",
        [TD_CRDT_ERR_ARG] = "invalid argument",
        [TD_CRDT_ERR_DECODE] = "malformed snapshot",
        [TD_CRDT_ERR_VERSION] = "unsupported snapshot version",
        [TD_CRDT_ERR_INVALID_OP] = "snapshot names what does not exist",
        [TD_CRDT_ERR_LIMIT] = "snapshot exceeds a limit (nesting depth, size)",
    };
    const char *dummy;
    if (!errmsg)
        errmsg = &dummy;
    *errmsg = "ok";
    if (!out || (!snap && len)) {
        *errmsg = "doc_load needs out, and snap when len > 0";
        return TD_CRDT_ERR_ARG;
    }
    *out = NULL;
    td_crdt_doc *d;
    td_crdt_err e = td_crdt_doc_new(opts, &d);
    if (e) {
        *errmsg = "out of memory";
        return e;
    }
    static const uint8_t none[1] = {0};
    if (!snap)
        snap = none; /* len is 0: no pointer arithmetic on NULL */
    snapdec s = {.d = d, .r = {snap, snap + len, 0}, .trusted = opts && opts->trusted_snapshot};
    s.lazy = s.trusted;
    e = dec_all(&s);
    if (!e && s.lazy) {
        /* keep the snapshot for td_crdt_materialize, and the text column
         * the lazy texts point into */
        if (!(d->lazy.snap = td_crdt_mem(d, NULL, len))) {
            e = TD_CRDT_ERR_NOMEM;
        } else {
            memcpy(d->lazy.snap, snap, len);
            d->lazy.len = len;
            d->lazy.rest = (size_t)(s.rest - snap);
            d->lazy.text = s.colmem[C_TEXT];
            d->lazy.text_len = s.coln[C_TEXT];
            d->lazy.main = s.colmem[C_MAIN];
            d->lazy.main_len = s.coln[C_MAIN];
            s.colmem[C_TEXT] = s.colmem[C_MAIN] = NULL;
        }
    }
    for (int c = 0; c < NCOL; c++)
        td_crdt_memfree(d, s.colmem[c]);
    td_crdt_memfree(d, s.agent);
    td_crdt_memfree(d, s.obj);
    if (e) {
        /* static strings only: the document that held a formatted
         * message is freed here, and the core keeps no global state */
        *errmsg = s.why ? s.why : by_code[e];
        td_crdt_doc_free(d);
        return e;
    }
    d->committed = d->agents[d->self].vv;
    *out = d;
    return TD_CRDT_OK;
}

/* ---- lazy documents --------------------------------------------------------- */

void td_crdt_lazy_free(td_crdt_doc *d)
{
    td_crdt_memfree(d, d->lazy.snap);
    td_crdt_memfree(d, d->lazy.text);
    td_crdt_memfree(d, d->lazy.main);
    memset(&d->lazy, 0, sizeof d->lazy);
}

/* Whether f, the kept snapshot decoded whole, is the document d was loaded
 * as: the same agents (index by index) and counts, and the same objects
 * (handle by handle, texts lazy) as far as f has them. Holds by
 * construction -- both were built by the same decoder from the same bytes,
 * and nothing that adds agents or objects of the snapshot ran since; a
 * cheap guard for the handle-by-handle exchange below. */
static int same_shape(const td_crdt_doc *d, const td_crdt_doc *f)
{
    if (d->nagents != f->nagents || d->nobjs < f->nobjs || d->self != f->self ||
        d->nops != f->nops || d->max_lamport != f->max_lamport)
        return 0;
    for (uint32_t i = 0; i < d->nagents; i++)
        if (d->agents[i].id != f->agents[i].id || d->agents[i].vv != f->agents[i].vv)
            return 0;
    for (uint32_t h = 1; h <= f->nobjs; h++) {
        const td_obj *a = d->objs[h - 1], *b = f->objs[h - 1];
        if (a->kind != b->kind || a->is_root != b->is_root || a->parent != b->parent ||
            (a->kind == TD_CRDT_TEXT) != (a->u.seq.lazy == 1) ||
            (a->kind == TD_CRDT_TEXT && a->u.seq.vis != b->u.seq.vis))
            return 0;
    }
    for (uint32_t h = f->nobjs + 1; h <= d->nobjs; h++) { /* roots made since: empty */
        const td_obj *a = d->objs[h - 1];
        if (!a->is_root || (a->kind == TD_CRDT_MAP ? a->u.map.n != 0
                                                   : a->u.seq.lazy || a->u.seq.total != 0))
            return 0;
    }
    return 1;
}

td_crdt_err td_crdt_materialize(td_crdt_doc *d)
{
    if (!d->lazy.snap)
        return TD_CRDT_OK;
    td_crdt_options o = {
        .alloc = d->alloc,
        .alloc_ud = d->alloc_ud,
        .agent = d->agents[d->self].id,
        .max_pending_ops = d->max_pending_ops,
        .max_pending_bytes = d->max_pending_bytes,
        .max_depth = d->max_depth,
    };
    td_crdt_doc *f;
    td_crdt_err e = td_crdt_doc_new(&o, &f);
    if (e)
        return td_crdt_fail(d, e, "out of memory (loading the rest of a lazy snapshot)");
    /* the main and text columns are decoded already: the decode starts at
     * the run columns */
    static const uint8_t none[1];
    const uint8_t *m = d->lazy.main_len ? d->lazy.main : none;
    const uint8_t *t = d->lazy.text_len ? d->lazy.text : none;
    snapdec s = {.d = f, .r = {d->lazy.snap, d->lazy.snap + d->lazy.len, 0}, .trusted = 1,
                 .given = C_TEXT + 1, .rest = d->lazy.snap + d->lazy.rest};
    s.col[C_MAIN] = (td_rd){m, m + d->lazy.main_len, 0};
    s.col[C_TEXT] = (td_rd){t, t + d->lazy.text_len, 0};
    e = dec_all(&s);
    for (int c = 0; c < NCOL; c++)
        td_crdt_memfree(f, s.colmem[c]);
    td_crdt_memfree(f, s.agent);
    td_crdt_memfree(f, s.obj);
    if (!e && !same_shape(d, f))
        e = BAD(&s, "the snapshot does not decode to the document it loaded as");
    if (e) {
        const char *why = s.why ? s.why : td_crdt_doc_error(f);
        e = td_crdt_fail(d, e, "loading the rest of a lazy snapshot: %s", why);
        td_crdt_doc_free(f);
        return e;
    }
    /* the texts and the agents' indexes and deletes of f go to d, handle
     * by handle and index by index; maps (and the object table) stay */
    for (uint32_t h = 1; h <= f->nobjs; h++) {
        td_obj *a = d->objs[h - 1], *b = f->objs[h - 1];
        if (a->kind != TD_CRDT_TEXT)
            continue;
        td_seq t = a->u.seq;
        a->u.seq = b->u.seq;
        b->u.seq = t;
    }
    for (uint32_t i = 0; i < d->nagents; i++) {
        td_agent *a = &d->agents[i], *b = &f->agents[i];
        td_idx ti = a->idx;
        a->idx = b->idx;
        b->idx = ti;
        td_delrec *td = a->dels;
        uint32_t tn = a->ndels, tc = a->capdels;
        a->dels = b->dels;
        a->ndels = b->ndels;
        a->capdels = b->capdels;
        b->dels = td;
        b->ndels = tn;
        b->capdels = tc;
    }
    td_crdt_doc_free(f);
    td_crdt_lazy_free(d);
    return TD_CRDT_OK;
}
