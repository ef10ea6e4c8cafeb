/*
 * batch.c -- op batches: their encoding, their integration, the pending set,
 * commit and diff.
 *
 * Batch encoding, version 1 (all integers LEB128 varints unless noted; byte
 * by byte, with every rule the decoder enforces, in docs/FORMAT.md section 3):
 *
 *   'T' 'B' 0x01
 *   nagents, then nagents agent ids as u64 little-endian, strictly ascending
 *   nobjs, then per object: tag 0/1/2 = root text/list/map + name length +
 *           name bytes, or tag 3 = nested object + agent index + seq
 *   nops, then per op a head byte:
 *     bits 0-1 type: 0 INS, 1 DEL, 2 SET, 3 NOP
 *     bit 2    the op continues the previous one (same agent, next seq);
 *              otherwise agent index and seq follow the head byte
 *     INS: bit 3 deleted, bit 4 no left origin, bit 5 no right origin,
 *          bit 6 left origin is the previous op's last item, bit 7 content
 *          is text (UTF-8) rather than list values
 *     DEL: bit 3 targets run downwards; other bits above 3 must be clear
 *     SET, NOP: bits 3-7 clear
 *   then: INS: len, object index, [left agent index, seq], [right agent index, seq],
 *              content: text as byte length + UTF-8 holding exactly len code
 *              points (absent when deleted), or len values (always present)
 *         DEL: len, object index, target agent, target seq
 *         SET: object index, key length, key, lamport, value
 *         NOP: len
 *
 * An agent's ops appear in increasing, non-overlapping seq order. The whole
 * batch is decoded and validated before anything is applied; then a plan
 * orders its ops so that each one's references (object, origins, delete
 * targets) exist when it integrates -- in the document, or made by an op
 * planned before it. Ops already known are skipped (a partly known op is
 * trimmed). If every op can be planned the batch integrates; if some wait on
 * ops that have not arrived, the whole batch is parked in the pending set
 * under the op it waits for, and retried once the document has that op (with
 * TD_CRDT_APPLY_NO_PARK it is refused instead: TD_CRDT_ERR_MISSING). A
 * reference that can never be valid rejects the batch with nothing applied.
 *
 * Size-limited batches (td_crdt_commit_max, td_crdt_diff_max) are a causal
 * prefix of what would be sent, found by binary search on its length in
 * items; see enc_limited.
 */
#include "crdt_internal.h"

#include <stdlib.h>

enum { OP_INS = 0, OP_DEL = 1, OP_SET = 2, OP_NOP = 3 };
enum { F_CONT = 4, F_DELETED = 8, F_NOLEFT = 16, F_NORIGHT = 32, F_LEFTPREV = 64, F_TEXT = 128 };
enum { OBJ_NESTED = 3 };

typedef struct bobj {
    uint8_t root_kind; /* 0 for nested */
    const char *name;
    uint32_t name_len;
    uint32_t agent, seq; /* nested: batch agent index, seq */
} bobj;

/* A decoded op. Kept small (48 bytes) because a batch may hold an op per
 * 3-4 bytes: bytes are offsets into the batch, and the fields of the three
 * kinds share storage. */
typedef struct bop {
    uint8_t type, deleted, desc, text;
    uint8_t vtag; /* SET: value tag */
    uint32_t agent, seq, len, obj;
    uint32_t off, clen; /* INS content, SET value: offset in the batch, bytes */
    union {
        struct {
            td_id left, right; /* INS; batch agent indexes */
        };
        td_id target; /* DEL */
        struct {
            uint32_t key_off, klen, lamport_lo, lamport_hi; /* SET */
        };
    };
} bop;

/* Decoded ops live in chunks of BOP_CHUNK: the array grows as ops are
 * decoded (not by the count a batch claims), and never by copying. */
enum { BOP_SHIFT = 12, BOP_CHUNK = 1 << BOP_SHIFT };

typedef struct batch {
    uint32_t nagents, nobjs, nops;
    const uint8_t *base;   /* the encoded batch */
    const uint8_t *agents; /* u64le each */
    bobj *objs;
    bop **chunks;
    uint32_t nchunks, capchunks;
    uint32_t *doc_agent; /* batch agent -> doc agent index or TD_NONE */
    /* ops of agent a, in seq order: by_agent[first[a] .. first[a+1]) */
    uint32_t *by_agent, *first;
} batch;

static uint64_t batch_agent_id(const batch *b, uint32_t i)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++)
        v |= (uint64_t)b->agents[8 * i + k] << (8 * k);
    return v;
}

static bop *OP(const batch *b, uint32_t i)
{
    return &b->chunks[i >> BOP_SHIFT][i & (BOP_CHUNK - 1)];
}

static const uint8_t *bop_bytes(const batch *b, const bop *o)
{
    return b->base + o->off;
}

static uint64_t bop_lamport(const bop *o)
{
    return (uint64_t)o->lamport_hi << 32 | o->lamport_lo;
}

static void batch_free(td_crdt_doc *d, batch *b)
{
    for (uint32_t i = 0; i < b->nchunks; i++)
        td_crdt_memfree(d, b->chunks[i]);
    td_crdt_memfree(d, b->chunks);
    td_crdt_memfree(d, b->by_agent);
    td_crdt_memfree(d, b->first);
    td_crdt_memfree(d, b->objs);
    td_crdt_memfree(d, b->doc_agent);
    memset(b, 0, sizeof *b);
}

/* ---- decoding ------------------------------------------------------------- */

/* Validates one value and skips it; reports its tag. */
static int val_skip(td_rd *r, uint8_t *tag)
{
    *tag = td_crdt_rd_u8(r);
    if (r->bad || *tag >= TD_VT_COUNT)
        return 0;
    switch (*tag) {
    case TD_VT_INT: td_crdt_rd_varint(r); break;
    case TD_VT_FLOAT: {
        uint64_t bits = td_crdt_rd_u64le(r);
        double f;
        memcpy(&f, &bits, 8);
        if (f != f)
            return 0;
        break;
    }
    case TD_VT_STR: {
        uint32_t n = td_crdt_rd_u32(r, 0x7fffffff);
        const uint8_t *p = td_crdt_rd_bytes(r, n);
        if (!p || td_crdt_utf8_count((const char *)p, n) == SIZE_MAX)
            return 0;
        break;
    }
    default: break;
    }
    return !r->bad;
}

static td_id rd_id(td_rd *r, uint32_t nagents)
{
    td_id id;
    id.agent = td_crdt_rd_u32(r, nagents ? nagents - 1 : 0);
    id.seq = td_crdt_rd_u32(r, TD_MAX_SEQ);
    if (!nagents)
        r->bad = 1;
    return id;
}

static td_crdt_err decode_objs(td_crdt_doc *d, td_rd *r, batch *b)
{
    /* an object reference takes at least 3 bytes: a count beyond that cannot
     * be true, and must not size an allocation */
    b->nobjs = td_crdt_rd_u32(r, (uint32_t)(td_crdt_rd_left(r) / 3));
    if (r->bad)
        return TD_CRDT_ERR_DECODE;
    if (b->nobjs && !(b->objs = td_crdt_mem(d, NULL, b->nobjs * sizeof *b->objs)))
        return TD_CRDT_ERR_NOMEM;
    for (uint32_t i = 0; i < b->nobjs; i++) {
        bobj *o = &b->objs[i];
        memset(o, 0, sizeof *o);
        uint8_t tag = td_crdt_rd_u8(r);
        if (tag < OBJ_NESTED) {
            o->root_kind = (uint8_t)(tag + 1);
            o->name_len = td_crdt_rd_u32(r, TD_MAX_NAME);
            o->name = (const char *)td_crdt_rd_bytes(r, o->name_len);
            if (o->name_len == 0 || !o->name || td_crdt_utf8_count(o->name, o->name_len) == SIZE_MAX)
                return TD_CRDT_ERR_DECODE;
        } else if (tag == OBJ_NESTED) {
            td_id id = rd_id(r, b->nagents);
            o->agent = id.agent;
            o->seq = id.seq;
        } else {
            return TD_CRDT_ERR_DECODE;
        }
    }
    return r->bad ? TD_CRDT_ERR_DECODE : TD_CRDT_OK;
}

static int decode_content(td_rd *r, const batch *b, bop *o)
{
    const uint8_t *start = r->p;
    if (o->text) {
        if (o->deleted)
            return 1;
        uint32_t n = td_crdt_rd_u32(r, 0x7fffffff);
        const uint8_t *p = td_crdt_rd_bytes(r, n);
        if (!p || td_crdt_utf8_count((const char *)p, n) != o->len)
            return 0;
        o->off = (uint32_t)(p - b->base);
        o->clen = n;
        return 1;
    }
    for (uint32_t i = 0; i < o->len; i++) {
        uint8_t tag;
        if (!val_skip(r, &tag) || tag == TD_VT_DELETED)
            return 0;
    }
    o->off = (uint32_t)(start - b->base);
    o->clen = (uint32_t)(r->p - start);
    return 1;
}

static td_crdt_err decode_op(td_rd *r, batch *b, bop *o, const bop *prev)
{
    uint8_t head = td_crdt_rd_u8(r);
    memset(o, 0, sizeof *o);
    o->type = head & 3;
    if (head & F_CONT) {
        if (!prev)
            return TD_CRDT_ERR_DECODE;
        o->agent = prev->agent;
        o->seq = prev->seq + prev->len;
    } else {
        td_id id = rd_id(r, b->nagents);
        o->agent = id.agent;
        o->seq = id.seq;
    }
    o->len = o->type == OP_SET ? 1 : td_crdt_rd_u32(r, TD_MAX_SEQ);
    if (o->type != OP_NOP)
        o->obj = td_crdt_rd_u32(r, b->nobjs ? b->nobjs - 1 : 0);
    if (r->bad || o->len == 0 || (uint64_t)o->seq + o->len > TD_MAX_SEQ ||
        (o->type != OP_NOP && !b->nobjs))
        return TD_CRDT_ERR_DECODE;
    switch (o->type) {
    case OP_INS:
        o->left.agent = o->right.agent = TD_NONE;
        o->deleted = (head & F_DELETED) != 0;
        o->text = (head & F_TEXT) != 0;
        if ((head & F_NOLEFT) && (head & F_LEFTPREV))
            return TD_CRDT_ERR_DECODE;
        if (head & F_LEFTPREV) {
            if (!prev || prev->type != OP_INS || !(head & F_CONT))
                return TD_CRDT_ERR_DECODE;
            o->left.agent = o->agent;
            o->left.seq = o->seq - 1;
        } else if (!(head & F_NOLEFT)) {
            o->left = rd_id(r, b->nagents);
        }
        if (!(head & F_NORIGHT))
            o->right = rd_id(r, b->nagents);
        if (!decode_content(r, b, o))
            return TD_CRDT_ERR_DECODE;
        break;
    case OP_DEL:
        if (head & ~(uint8_t)(3 | F_CONT | F_DELETED))
            return TD_CRDT_ERR_DECODE;
        o->desc = (head & F_DELETED) != 0;
        o->target = rd_id(r, b->nagents);
        if (o->desc ? o->target.seq < o->len - 1
                    : (uint64_t)o->target.seq + o->len > TD_MAX_SEQ)
            return TD_CRDT_ERR_DECODE;
        break;
    case OP_SET:
        if (head & ~(uint8_t)(3 | F_CONT))
            return TD_CRDT_ERR_DECODE;
    {
        o->klen = td_crdt_rd_u32(r, TD_MAX_KEY);
        const char *key = (const char *)td_crdt_rd_bytes(r, o->klen);
        if (!key || o->klen == 0 || td_crdt_utf8_count(key, o->klen) == SIZE_MAX)
            return TD_CRDT_ERR_DECODE;
        o->key_off = (uint32_t)((const uint8_t *)key - b->base);
        uint64_t lamport = td_crdt_rd_varint(r);
        if (lamport == 0 || lamport > ((uint64_t)1 << 62))
            return TD_CRDT_ERR_DECODE;
        o->lamport_lo = (uint32_t)lamport;
        o->lamport_hi = (uint32_t)(lamport >> 32);
        const uint8_t *v = r->p;
        if (!val_skip(r, &o->vtag))
            return TD_CRDT_ERR_DECODE;
        o->off = (uint32_t)(v - b->base);
        o->clen = (uint32_t)(r->p - v);
        break;
    }
    default:
        if (head & ~(uint8_t)(3 | F_CONT))
            return TD_CRDT_ERR_DECODE;
        break;
    }
    return r->bad ? TD_CRDT_ERR_DECODE : TD_CRDT_OK;
}

/* Can op o be stored as more items of prev, the last op stored? Then the
 * batch means the same with one op fewer: a NOP continuing a NOP, or deleted
 * text continuing deleted text in the same object as the same run (left
 * origin the previous item, the same right origin). Runs of tiny ops are
 * what a hostile batch is made of; this keeps them from costing an op each. */
static int bop_extends(const bop *prev, const bop *o)
{
    if (!prev || prev->agent != o->agent || prev->seq + prev->len != o->seq || prev->type != o->type)
        return 0;
    if (o->type == OP_NOP)
        return 1;
    return o->type == OP_INS && o->text && o->deleted && prev->text && prev->deleted &&
           prev->obj == o->obj && o->left.agent == o->agent && o->left.seq + 1 == o->seq &&
           prev->right.agent == o->right.agent && prev->right.seq == o->right.seq;
}

/* Stores op o after the others, in a new chunk when the last is full (the
 * first is only as large as the count the batch claims, if that is less). */
static bop *bop_push(td_crdt_doc *d, batch *b, uint32_t claimed)
{
    uint32_t i = b->nops;
    if ((i & (BOP_CHUNK - 1)) == 0) {
        uint32_t n = claimed < BOP_CHUNK ? claimed : BOP_CHUNK;
        if (!td_crdt_grow(d, (void **)&b->chunks, &b->capchunks, b->nchunks + 1, sizeof *b->chunks))
            return NULL;
        if (!(b->chunks[b->nchunks] = td_crdt_mem(d, NULL, (size_t)n * sizeof(bop))))
            return NULL;
        b->nchunks++;
    }
    b->nops++;
    return OP(b, i);
}

static td_crdt_err batch_decode(td_crdt_doc *d, const uint8_t *p, size_t len, batch *b)
{
    memset(b, 0, sizeof *b);
    if (len > UINT32_MAX) /* offsets into the batch are 32-bit */
        return td_crdt_fail(d, TD_CRDT_ERR_LIMIT, "batch larger than 4 GiB");
    b->base = p;
    td_rd r = {p, p + len, 0};
    const uint8_t *magic = td_crdt_rd_bytes(&r, 3);
    if (!magic || magic[0] != 'T' || magic[1] != 'B')
        return td_crdt_fail(d, TD_CRDT_ERR_DECODE, "not a batch");
    if (magic[2] != 1)
        return td_crdt_fail(d, TD_CRDT_ERR_VERSION, "batch version %u not supported", magic[2]);
    b->nagents = td_crdt_rd_u32(&r, (uint32_t)(td_crdt_rd_left(&r) / 8));
    b->agents = td_crdt_rd_bytes(&r, (size_t)b->nagents * 8);
    if (r.bad)
        return td_crdt_fail(d, TD_CRDT_ERR_DECODE, "batch: bad agent table");
    for (uint32_t i = 1; i < b->nagents; i++)
        if (batch_agent_id(b, i - 1) >= batch_agent_id(b, i))
            return td_crdt_fail(d, TD_CRDT_ERR_DECODE, "batch: agents not in order");
    td_crdt_err e = decode_objs(d, &r, b);
    if (e)
        return td_crdt_fail(d, e, "batch: bad object table");
    /* the claimed count only bounds the loop: storage grows with the ops
     * actually decoded */
    uint32_t claimed = td_crdt_rd_u32(&r, (uint32_t)(td_crdt_rd_left(&r) / 2));
    if (r.bad)
        return td_crdt_fail(d, TD_CRDT_ERR_DECODE, "batch: bad op count");
    if (!(b->doc_agent = td_crdt_mem(d, NULL, (b->nagents + 1) * sizeof *b->doc_agent)))
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    /* last seq end per batch agent, to check order */
    for (uint32_t i = 0; i < b->nagents; i++)
        b->doc_agent[i] = 0;
    bop cur, *last = NULL;
    for (uint32_t i = 0; i < claimed; i++) {
        if ((e = decode_op(&r, b, &cur, last)))
            return td_crdt_fail(d, e, "batch: op %u malformed", i);
        if (cur.seq < b->doc_agent[cur.agent])
            return td_crdt_fail(d, TD_CRDT_ERR_DECODE, "batch: op %u out of order", i);
        b->doc_agent[cur.agent] = cur.seq + cur.len;
        if (bop_extends(last, &cur)) {
            last->len += cur.len;
            continue;
        }
        if (!(last = bop_push(d, b, claimed)))
            return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
        *last = cur;
    }
    if (td_crdt_rd_left(&r) != 0 || r.bad)
        return td_crdt_fail(d, TD_CRDT_ERR_DECODE, "batch: trailing bytes");
    /* group op indexes by agent (a counting sort keeps each agent's order) */
    b->by_agent = td_crdt_mem(d, NULL, ((size_t)b->nops + 1) * sizeof *b->by_agent);
    b->first = td_crdt_mem(d, NULL, ((size_t)b->nagents + 2) * sizeof *b->first);
    if (!b->by_agent || !b->first)
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    memset(b->first, 0, ((size_t)b->nagents + 2) * sizeof *b->first);
    for (uint32_t i = 0; i < b->nops; i++)
        b->first[OP(b, i)->agent + 2]++;
    for (uint32_t a = 0; a < b->nagents; a++)
        b->first[a + 2] += b->first[a + 1];
    for (uint32_t i = 0; i < b->nops; i++)
        b->by_agent[b->first[OP(b, i)->agent + 1]++] = i;
    for (uint32_t i = 0; i < b->nagents; i++) {
        uint32_t a;
        b->doc_agent[i] = td_crdt_agent_find(d, batch_agent_id(b, i), &a) ? a : TD_NONE;
    }
    return TD_CRDT_OK;
}

/* ---- planning --------------------------------------------------------------- */

typedef struct plan {
    batch *b;
    uint32_t *sim;     /* per batch agent: ops known once the plan so far runs */
    uint32_t *docvv;   /* per batch agent: ops the document has */
    uint32_t *order;   /* planned op indexes */
    uint32_t *trim;    /* per planned op: items already known */
    uint16_t *depth;   /* per op: depth of the objects it creates */
    uint32_t norder;
    size_t dups, news;
    /* When an op must wait: the (batch agent, seq) it needs that neither the
     * document nor the planned part of the batch has. */
    uint32_t wait_agent, wait_seq;
} plan;

enum { READY, WAIT, INVALID, TOO_DEEP };

/* The batch op holding (agent, seq), by binary search among that agent's ops. */
static const bop *batch_op_at(const batch *b, uint32_t agent, uint32_t seq, uint32_t *idx)
{
    uint32_t lo = b->first[agent], hi = b->first[agent + 1];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const bop *o = OP(b, b->by_agent[mid]);
        if (o->seq + o->len <= seq) {
            lo = mid + 1;
        } else if (o->seq > seq) {
            hi = mid;
        } else {
            if (idx)
                *idx = b->by_agent[mid];
            return o;
        }
    }
    return NULL;
}

/* Kind and depth of batch object oi, once it exists. */
static int obj_status(plan *pl, td_crdt_doc *d, uint32_t oi, uint8_t *kind,
                      uint16_t *depth)
{
    const bobj *bo = &pl->b->objs[oi];
    if (bo->root_kind) {
        *kind = bo->root_kind;
        *depth = 0;
        return READY;
    }
    if (bo->seq >= pl->sim[bo->agent]) {
        pl->wait_agent = bo->agent;
        pl->wait_seq = bo->seq;
        return WAIT;
    }
    if (bo->seq < pl->docvv[bo->agent]) {
        uint32_t h = td_crdt_obj_find_nested(d, batch_agent_id(pl->b, bo->agent), bo->seq);
        if (!h)
            return INVALID;
        *kind = d->objs[h - 1]->kind;
        *depth = d->objs[h - 1]->depth;
        return READY;
    }
    uint32_t idx;
    const bop *o = batch_op_at(pl->b, bo->agent, bo->seq, &idx);
    if (!o)
        return INVALID;
    uint8_t tag = 0;
    if (o->type == OP_SET) {
        tag = o->vtag;
    } else if (o->type == OP_INS && !o->text) {
        td_rd r = {bop_bytes(pl->b, o), bop_bytes(pl->b, o) + o->clen, 0};
        for (uint32_t i = 0; i <= bo->seq - o->seq; i++)
            val_skip(&r, &tag);
    }
    if (tag < TD_VT_TEXT || tag > TD_VT_MAP)
        return INVALID;
    *kind = (uint8_t)(tag - TD_VT_TEXT + 1);
    *depth = pl->depth[idx];
    return READY;
}

static int same_obj(const batch *b, uint32_t x, uint32_t y)
{
    const bobj *p = &b->objs[x], *q = &b->objs[y];
    if (p->root_kind || q->root_kind)
        return p->root_kind == q->root_kind && p->name_len == q->name_len &&
               memcmp(p->name, q->name, p->name_len) == 0;
    return p->agent == q->agent && p->seq == q->seq;
}

/* Doc handle of batch object oi if it exists in the document, else 0. */
static uint32_t doc_obj(td_crdt_doc *d, const batch *b, uint32_t oi)
{
    const bobj *bo = &b->objs[oi];
    if (bo->root_kind)
        return td_crdt_obj_find_root(d, bo->root_kind, bo->name, bo->name_len);
    return td_crdt_obj_find_nested(d, batch_agent_id(b, bo->agent), bo->seq);
}

/* Are items (agent, lo..hi) items of batch object oi once the plan so far
 * has run? */
static int items_status(plan *pl, td_crdt_doc *d, uint32_t oi, uint32_t agent,
                        uint32_t lo, uint32_t hi)
{
    if (hi >= pl->sim[agent]) {
        pl->wait_agent = agent;
        pl->wait_seq = lo > pl->sim[agent] ? lo : pl->sim[agent];
        return WAIT;
    }
    uint32_t dv = pl->docvv[agent];
    if (lo < dv) {
        uint32_t h = doc_obj(d, pl->b, oi);
        uint32_t top = hi < dv ? hi : dv - 1;
        if (!h || !td_crdt_seq_has_range(d, h, pl->b->doc_agent[agent], lo, top))
            return INVALID;
    }
    for (uint64_t s = lo > dv ? lo : dv; s <= hi;) {
        const bop *o = batch_op_at(pl->b, agent, (uint32_t)s, NULL);
        if (!o || o->type != OP_INS || !same_obj(pl->b, o->obj, oi))
            return INVALID;
        s = (uint64_t)o->seq + o->len;
    }
    return READY;
}

static int worst(int a, int b)
{
    return a > b ? a : b;
}

/* Can op o (its first `trim` items known) integrate now? */
static int op_status(plan *pl, td_crdt_doc *d, uint32_t oi, uint32_t trim)
{
    bop *o = OP(pl->b, oi);
    if (o->type == OP_NOP)
        return READY;
    uint8_t kind;
    uint16_t depth;
    int st = obj_status(pl, d, o->obj, &kind, &depth);
    if (st != READY)
        return st;
    static const uint8_t need[3][2] = {{TD_CRDT_LIST, TD_CRDT_TEXT}, {0, 0}, {TD_CRDT_MAP, TD_CRDT_MAP}};
    if (o->type == OP_DEL ? kind == TD_CRDT_MAP : kind != need[o->type][o->text])
        return INVALID;
    pl->depth[oi] = (uint16_t)(depth + 1);
    if (depth + 1u > d->max_depth && (o->type == OP_SET ? o->vtag >= TD_VT_TEXT && o->vtag <= TD_VT_MAP
                                                        : o->type == OP_INS && !o->text))
        return TOO_DEEP;
    if (o->type == OP_INS) {
        td_id left = o->left;
        if (trim) {
            left.agent = o->agent;
            left.seq = o->seq + trim - 1;
        }
        int s = READY;
        if (left.agent != TD_NONE) {
            if (left.agent == o->agent && left.seq >= o->seq + trim)
                return INVALID;
            s = items_status(pl, d, o->obj, left.agent, left.seq, left.seq);
        }
        if (o->right.agent != TD_NONE) {
            if (o->right.agent == o->agent && o->right.seq >= o->seq)
                return INVALID;
            s = worst(s, items_status(pl, d, o->obj, o->right.agent, o->right.seq, o->right.seq));
        }
        return s;
    }
    if (o->type == OP_DEL) {
        uint32_t lo = o->desc ? o->target.seq - (o->len - 1) : o->target.seq;
        uint32_t hi = lo + o->len - 1;
        if (o->target.agent == o->agent && hi >= o->seq)
            return INVALID;
        return items_status(pl, d, o->obj, o->target.agent, lo, hi);
    }
    return READY;
}

/* Orders the batch's ops; *waits says some must wait for ops not yet here. */
static td_crdt_err plan_batch(td_crdt_doc *d, batch *b, plan *pl, int *waits)
{
    *waits = 0;
    memset(pl, 0, sizeof *pl);
    pl->b = b;
    size_t na = b->nagents + 1, no = b->nops + 1;
    pl->sim = td_crdt_mem(d, NULL, na * sizeof *pl->sim);
    pl->docvv = td_crdt_mem(d, NULL, na * sizeof *pl->docvv);
    pl->order = td_crdt_mem(d, NULL, no * sizeof *pl->order);
    pl->trim = td_crdt_mem(d, NULL, no * sizeof *pl->trim);
    pl->depth = td_crdt_mem(d, NULL, no * sizeof *pl->depth);
    uint32_t *next = td_crdt_mem(d, NULL, na * sizeof *next); /* per agent: next op index to try */
    if (!pl->sim || !pl->docvv || !pl->order || !pl->trim || !pl->depth || !next) {
        td_crdt_memfree(d, next);
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    }
    for (uint32_t a = 0; a < b->nagents; a++) {
        uint32_t da = b->doc_agent[a];
        pl->sim[a] = pl->docvv[a] = da == TD_NONE ? 0 : d->agents[da].vv;
        next[a] = 0;
    }
    for (uint32_t a = 0; a < b->nagents; a++)
        next[a] = b->first[a];
    for (int progress = 1; progress;) {
        progress = 0;
        for (uint32_t a = 0; a < b->nagents; a++) {
            for (; next[a] < b->first[a + 1]; next[a]++) {
                uint32_t i = b->by_agent[next[a]];
                bop *o = OP(b, i);
                if (o->seq + o->len <= pl->sim[a]) {
                    pl->dups += o->len;
                    continue;
                }
                if (o->seq > pl->sim[a])
                    break;
                uint32_t trim = pl->sim[a] - o->seq;
                int st = op_status(pl, d, i, trim);
                if (st == INVALID || st == TOO_DEEP) {
                    td_crdt_memfree(d, next);
                    if (st == TOO_DEEP)
                        return td_crdt_fail(d, TD_CRDT_ERR_LIMIT, "batch: op %u nests objects deeper than %zu", i, d->max_depth);
                    return td_crdt_fail(d, TD_CRDT_ERR_INVALID_OP, "batch: op %u names an object or item that cannot exist", i);
                }
                if (st == WAIT)
                    break;
                pl->dups += trim;
                pl->news += o->len - trim;
                pl->order[pl->norder] = i;
                pl->trim[pl->norder++] = trim;
                pl->sim[a] = o->seq + o->len;
                progress = 1;
            }
        }
    }
    /* Name what the first blocked agent waits for: a gap in its own seqs, or
     * a reference (asked again: what an op waited for in an earlier round may
     * have been planned since). */
    for (uint32_t a = 0; a < b->nagents && !*waits; a++) {
        if (next[a] == b->first[a + 1])
            continue;
        *waits = 1;
        uint32_t i = b->by_agent[next[a]];
        pl->wait_agent = a;
        pl->wait_seq = pl->sim[a];
        if (OP(b, i)->seq <= pl->sim[a])
            op_status(pl, d, i, pl->sim[a] - OP(b, i)->seq);
    }
    td_crdt_memfree(d, next);
    return TD_CRDT_OK;
}

static void plan_free(td_crdt_doc *d, plan *pl)
{
    td_crdt_memfree(d, pl->sim);
    td_crdt_memfree(d, pl->docvv);
    td_crdt_memfree(d, pl->order);
    td_crdt_memfree(d, pl->trim);
    td_crdt_memfree(d, pl->depth);
}

/* ---- integration ------------------------------------------------------------ */

static td_id doc_id(const batch *b, td_id id)
{
    if (id.agent != TD_NONE)
        id.agent = b->doc_agent[id.agent];
    return id;
}

static td_crdt_err resolve_obj(td_crdt_doc *d, const batch *b, uint32_t oi, uint32_t *h)
{
    const bobj *bo = &b->objs[oi];
    *h = doc_obj(d, b, oi);
    if (*h)
        return TD_CRDT_OK;
    if (!bo->root_kind)
        return td_crdt_fail(d, TD_CRDT_ERR_INVALID_OP, "object missing");
    return td_crdt_obj_new_root(d, bo->root_kind, bo->name, bo->name_len, h);
}

static td_crdt_err integrate_ins(td_crdt_doc *d, const batch *b, const bop *o,
                                 uint32_t trim, uint32_t h)
{
    uint32_t agent = b->doc_agent[o->agent];
    td_id id = {agent, o->seq + trim};
    uint32_t n = o->len - trim;
    td_id left = trim ? (td_id){agent, o->seq + trim - 1} : doc_id(b, o->left);
    td_id right = doc_id(b, o->right);
    td_crdt_err e = TD_CRDT_OK;
    if (o->text) {
        if (o->deleted)
            return td_crdt_seq_integrate(d, h, id, n, left, right, 1, NULL, NULL);
        uint32_t *cps = td_crdt_mem(d, NULL, (size_t)o->len * sizeof *cps);
        if (!cps)
            return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
        td_crdt_utf8_decode((const char *)bop_bytes(b, o), o->clen, cps);
        e = td_crdt_seq_integrate(d, h, id, n, left, right, 0, cps + trim, NULL);
        td_crdt_memfree(d, cps);
        return e;
    }
    td_val *vals = td_crdt_mem(d, NULL, (size_t)n * sizeof *vals);
    if (!vals)
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    td_rd r = {bop_bytes(b, o), bop_bytes(b, o) + o->clen, 0};
    uint8_t tag;
    for (uint32_t i = 0; i < trim; i++)
        val_skip(&r, &tag);
    uint32_t got = 0, made = 0;
    for (; got < n && !e; got++) {
        e = td_crdt_val_decode(d, &r, &vals[got]);
        uint8_t t = vals[got].tag;
        if (!e && t >= TD_VT_TEXT && t <= TD_VT_MAP &&
            !(e = td_crdt_obj_new_nested(d, (uint8_t)(t - TD_VT_TEXT + 1),
                                         (td_id){agent, id.seq + got}, h, &vals[got].u.obj)))
            made++;
    }
    if (!e)
        e = td_crdt_seq_integrate(d, h, id, n, left, right, o->deleted, NULL, vals);
    if (e) { /* the op did not happen: neither did the objects its items made */
        for (uint32_t i = 0; i < got; i++)
            td_crdt_val_free(d, &vals[i]);
        while (made--)
            td_crdt_obj_drop_last_nested(d);
    }
    td_crdt_memfree(d, vals);
    return e;
}

static td_crdt_err integrate_set(td_crdt_doc *d, const batch *b, const bop *o, uint32_t h)
{
    td_rd r = {bop_bytes(b, o), bop_bytes(b, o) + o->clen, 0};
    const char *key = (const char *)b->base + o->key_off;
    uint64_t lamport = bop_lamport(o);
    td_val v;
    td_crdt_err e = td_crdt_val_decode(d, &r, &v);
    if (e)
        return td_crdt_fail(d, e, "bad value");
    td_id id = {b->doc_agent[o->agent], o->seq};
    if (v.tag >= TD_VT_TEXT && v.tag <= TD_VT_MAP) {
        if ((e = td_crdt_obj_new_nested(d, (uint8_t)(v.tag - TD_VT_TEXT + 1), id, h, &v.u.obj)))
            return e;
        td_obj *co = d->objs[v.u.obj - 1];
        if (!(co->key = td_crdt_mem(d, NULL, o->klen))) {
            td_crdt_obj_drop_last_nested(d);
            return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
        }
        memcpy(co->key, key, o->klen);
        co->klen = o->klen;
        co->lamport = lamport;
    }
    if ((e = td_crdt_map_write(d, &d->objs[h - 1]->u.map, key, o->klen, &v, lamport, id))) {
        if (v.tag >= TD_VT_TEXT && v.tag <= TD_VT_MAP) /* the write did not happen */
            td_crdt_obj_drop_last_nested(d);
        td_crdt_val_free(d, &v);
    }
    if (!e && lamport > d->max_lamport) /* a write that failed was not seen */
        d->max_lamport = lamport;
    return e;
}

static td_crdt_err integrate_op(td_crdt_doc *d, const batch *b, const bop *o, uint32_t trim)
{
    uint32_t h = 0;
    td_crdt_err e = TD_CRDT_OK;
    if (o->type != OP_NOP && (e = resolve_obj(d, b, o->obj, &h)))
        return e;
    switch (o->type) {
    case OP_INS:
        e = integrate_ins(d, b, o, trim, h);
        break;
    case OP_DEL: {
        td_delrec rec = {o->seq + trim, o->len - trim, h, doc_id(b, o->target), o->desc};
        rec.target.seq = o->desc ? rec.target.seq - trim : rec.target.seq + trim;
        if (rec.len == 1)
            rec.desc = 0; /* one target has no direction: keep records canonical */
        uint32_t lo = o->desc ? rec.target.seq - (rec.len - 1) : rec.target.seq;
        /* the record's room first: items deleted by an op the version
         * vector does not count would stay so */
        e = td_crdt_delrec_reserve(d, b->doc_agent[o->agent], 1);
        if (!e)
            e = td_crdt_seq_delete_ids(d, h, rec.target.agent, lo, lo + rec.len - 1);
        if (!e)
            e = td_crdt_delrec_add(d, b->doc_agent[o->agent], &rec);
        break;
    }
    case OP_SET:
        e = integrate_set(d, b, o, h);
        break;
    default:
        break;
    }
    if (!e) {
        uint32_t a = b->doc_agent[o->agent];
        d->agents[a].vv = o->seq + o->len;
        d->nops += o->len - trim;
        if (a == d->self && d->committed < d->agents[a].vv)
            d->committed = d->agents[a].vv; /* our own ops, back from a peer */
    }
    return e;
}

/* Applies a decoded, planned batch. Agents are interned first: an agent
 * with no ops is invisible, so doing it early changes nothing visible. */
static td_crdt_err integrate_plan(td_crdt_doc *d, batch *b, plan *pl)
{
    for (uint32_t a = 0; a < b->nagents; a++) {
        if (b->doc_agent[a] != TD_NONE)
            continue;
        td_crdt_err e = td_crdt_agent_intern(d, batch_agent_id(b, a), &b->doc_agent[a]);
        if (e)
            return e;
    }
    d->integrating = 1;
    td_crdt_err e = TD_CRDT_OK;
    for (uint32_t i = 0; i < pl->norder && !e; i++)
        e = integrate_op(d, b, OP(b, pl->order[i]), pl->trim[i]);
    d->integrating = 0;
    return e;
}

/* ---- apply and the pending set ---------------------------------------------- */

enum { TRY_DONE, TRY_WAIT };

/* What one try of a batch did. */
typedef struct tried {
    int state;           /* TRY_DONE or TRY_WAIT */
    size_t news, dups;   /* new ops integrated (WAIT: still missing), known ops */
    uint64_t wait_agent; /* WAIT: the op it waits for, as a pending key */
    uint32_t wait_seq;
} tried;

/* Notes that agent a's count grew, so parked batches keyed on it are retried.
 * d->grown holds distinct doc agents and try_apply reserved room for every
 * agent before integrating, so this cannot fail. */
static void note_grown(td_crdt_doc *d, uint32_t a)
{
    for (uint32_t i = 0; i < d->ngrown; i++)
        if (d->grown[i] == a)
            return;
    d->grown[d->ngrown++] = a;
}

/* Asks opts->agent_check about every agent with new ops in the batch. */
static td_crdt_err check_agents(td_crdt_doc *d, const batch *b, const plan *pl,
                                const td_crdt_apply_opts *opts)
{
    for (uint32_t a = 0; a < b->nagents; a++) {
        if (b->first[a] == b->first[a + 1])
            continue;
        const bop *last = OP(b, b->by_agent[b->first[a + 1] - 1]);
        uint32_t to = last->seq + last->len;
        uint64_t id = batch_agent_id(b, a);
        if (to > pl->docvv[a] && opts->agent_check(opts->ud, id, pl->docvv[a], to))
            return td_crdt_fail(d, TD_CRDT_ERR_REFUSED,
                                "batch refused: ops %u..%u of agent %016llx", pl->docvv[a],
                                to - 1, (unsigned long long)id);
    }
    return TD_CRDT_OK;
}

/* Decodes, plans and (if complete) integrates. opts may be NULL. */
static td_crdt_err try_apply(td_crdt_doc *d, const uint8_t *p, size_t len,
                             const td_crdt_apply_opts *opts, tried *t)
{
    batch b;
    plan pl;
    memset(t, 0, sizeof *t);
    td_crdt_err e = batch_decode(d, p, len, &b);
    if (e) {
        batch_free(d, &b);
        return e;
    }
    int waits;
    e = plan_batch(d, &b, &pl, &waits);
    t->news = pl.news;
    t->dups = pl.dups;
    if (!e && opts && opts->agent_check)
        e = check_agents(d, &b, &pl, opts);
    if (!e && waits) {
        uint64_t wid = batch_agent_id(&b, pl.wait_agent);
        t->state = TRY_WAIT;
        /* keyed on the first seq of that agent the batch cannot supply: the
         * document gets the needed op only after it (an agent's ops integrate
         * in seq order) */
        t->wait_agent = wid;
        t->wait_seq = pl.sim[pl.wait_agent];
        if (opts && (opts->flags & TD_CRDT_APPLY_NO_PARK)) {
            e = td_crdt_fail(d, TD_CRDT_ERR_MISSING,
                             "batch needs op (%016llx, %u); the document has %u ops of that agent",
                             (unsigned long long)wid, pl.wait_seq, pl.docvv[pl.wait_agent]);
        }
        /* count what is still missing, for the pending bound */
        size_t total = 0;
        for (uint32_t i = 0; i < b.nops; i++)
            total += OP(&b, i)->len;
        t->news = total > pl.dups ? total - pl.dups : 0;
    } else if (!e) {
        t->state = TRY_DONE;
        /* room in d->grown for every agent the document may have after this */
        if (!td_crdt_grow(d, (void **)&d->grown, &d->capgrown, d->nagents + b.nagents + 1,
                          sizeof *d->grown)) {
            plan_free(d, &pl);
            batch_free(d, &b);
            return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
        }
        uint64_t nops = d->nops;
        uint32_t nobjs = d->nobjs, nroots = d->nroots;
        e = integrate_plan(d, &b, &pl);
        if (e)
            d->apply_partial = d->nops != nops || d->nobjs != nobjs || d->nroots != nroots;
        for (uint32_t a = 0; a < b.nagents; a++)
            if (b.doc_agent[a] != TD_NONE && d->agents[b.doc_agent[a]].vv > pl.docvv[a])
                note_grown(d, b.doc_agent[a]);
    }
    plan_free(d, &pl);
    batch_free(d, &b);
    return e;
}

void td_crdt_pending_free(td_crdt_doc *d)
{
    for (uint32_t i = 0; i < d->npend; i++)
        td_crdt_memfree(d, d->pend[i].bytes);
    td_crdt_memfree(d, d->pend);
    td_crdt_memfree(d, d->grown);
    d->pend = NULL;
    d->grown = NULL;
    d->npend = d->cappend = d->npend_sorted = 0;
    d->ngrown = d->capgrown = 0;
    d->pend_ops = d->pend_bytes = 0;
}

static int pend_less(const td_pending *x, uint64_t agent, uint32_t seq)
{
    return x->wait_agent < agent || (x->wait_agent == agent && x->wait_seq < seq);
}

static int pend_cmp(const void *x, const void *y)
{
    const td_pending *a = x, *b = y;
    return pend_less(a, b->wait_agent, b->wait_seq) ? -1 : pend_less(b, a->wait_agent, a->wait_seq);
}

/* Merges the batches parked since the last lookup into the sorted prefix:
 * sorting the few new ones and merging keeps a lookup O(n), not O(n log n). */
static void pend_sort(td_crdt_doc *d)
{
    uint32_t k = d->npend - d->npend_sorted;
    if (!k)
        return;
    td_pending *tail = d->pend + d->npend_sorted;
    qsort(tail, k, sizeof *tail, pend_cmp);
    td_pending *tmp = td_crdt_mem(d, NULL, (size_t)k * sizeof *tmp);
    if (!tmp) { /* no room to merge: sort it all in place */
        qsort(d->pend, d->npend, sizeof *d->pend, pend_cmp);
    } else {
        memcpy(tmp, tail, (size_t)k * sizeof *tmp);
        uint32_t i = d->npend_sorted, j = k, o = d->npend;
        while (j) {
            if (i && pend_cmp(&d->pend[i - 1], &tmp[j - 1]) > 0)
                d->pend[--o] = d->pend[--i];
            else
                d->pend[--o] = tmp[--j];
        }
        td_crdt_memfree(d, tmp);
    }
    d->npend_sorted = d->npend;
}

static uint32_t pend_lower(const td_crdt_doc *d, uint64_t agent, uint32_t seq)
{
    uint32_t lo = 0, hi = d->npend_sorted;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (pend_less(&d->pend[mid], agent, seq))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Parks a copy of a batch under its key; the caller checked the bounds. */
static td_crdt_err pending_park(td_crdt_doc *d, const uint8_t *p, size_t len, const tried *t)
{
    if (d->pend_ops + t->news > d->max_pending_ops || d->pend_bytes + len > d->max_pending_bytes)
        return td_crdt_fail(d, TD_CRDT_ERR_LIMIT, "pending set full (%zu ops, %zu bytes)",
                       d->pend_ops, d->pend_bytes);
    uint8_t *copy = td_crdt_mem(d, NULL, len);
    if (!copy || !td_crdt_grow(d, (void **)&d->pend, &d->cappend, d->npend + 1, sizeof *d->pend)) {
        td_crdt_memfree(d, copy);
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    }
    memcpy(copy, p, len);
    td_pending *x = &d->pend[d->npend++];
    x->bytes = copy;
    x->len = len;
    x->ops = t->news;
    x->wait_agent = t->wait_agent;
    x->wait_seq = t->wait_seq;
    d->pend_ops += t->news;
    d->pend_bytes += len;
    return TD_CRDT_OK;
}

/* Retries the parked batches that the grown agents may have released, and
 * those that these release in turn. Returns the ops integrated. A batch that
 * fails for lack of memory stays parked (and retrying stops); one that has
 * become invalid is dropped; one that still waits is parked under its new key
 * without allocating (its old slot is free). */
static size_t pending_retry(td_crdt_doc *d)
{
    size_t applied = 0;
    int oom = 0;
    while (d->ngrown && !oom) {
        uint32_t a = d->grown[d->ngrown - 1];
        uint64_t id = d->agents[a].id;
        pend_sort(d);
        uint32_t lo = pend_lower(d, id, 0), hi = pend_lower(d, id, d->agents[a].vv);
        uint32_t k = hi - lo;
        td_pending *take = k ? td_crdt_mem(d, NULL, (size_t)k * sizeof *take) : NULL;
        if (k && !take)
            break; /* a stays noted: the next apply retries */
        d->ngrown--;
        if (!k)
            continue;
        memcpy(take, d->pend + lo, (size_t)k * sizeof *take);
        memmove(d->pend + lo, d->pend + hi, (size_t)(d->npend - hi) * sizeof *d->pend);
        d->npend -= k;
        d->npend_sorted -= k;
        for (uint32_t i = 0; i < k; i++) {
            td_pending x = take[i];
            tried t;
            td_crdt_err e = TD_CRDT_ERR_NOMEM;
            if (!oom) {
                char saved[sizeof d->err];
                memcpy(saved, d->err, sizeof saved);
                e = try_apply(d, x.bytes, x.len, NULL, &t);
                memcpy(d->err, saved, sizeof saved);
            }
            if (e == TD_CRDT_ERR_NOMEM || (!e && t.state == TRY_WAIT)) {
                oom |= e == TD_CRDT_ERR_NOMEM;
                if (!e) {
                    x.wait_agent = t.wait_agent;
                    x.wait_seq = t.wait_seq;
                }
                d->pend[d->npend++] = x;
                continue;
            }
            if (!e)
                applied += t.news;
            d->pend_ops -= x.ops;
            d->pend_bytes -= x.len;
            td_crdt_memfree(d, x.bytes);
        }
        td_crdt_memfree(d, take);
        if (oom) /* not all of a's batches were tried: keep it noted */
            note_grown(d, a);
    }
    return applied;
}

td_crdt_err td_crdt_apply_ex(td_crdt_doc *d, const uint8_t *p, size_t len,
                             const td_crdt_apply_opts *opts, td_crdt_apply_info *info)
{
    td_crdt_apply_info dummy;
    if (!info)
        info = &dummy;
    memset(info, 0, sizeof *info);
    d->apply_partial = 0;
    if (!p && len)
        return td_crdt_fail(d, TD_CRDT_ERR_ARG, "no batch");
    td_crdt_err full_e = td_crdt_full(d); /* needs the history */
    if (full_e)
        return full_e;
    tried t;
    td_crdt_err e = try_apply(d, p, len, opts, &t);
    if (t.state == TRY_WAIT) {
        info->wait_agent = t.wait_agent;
        info->wait_seq = t.wait_seq;
    }
    if (e)
        return e; /* agents grown by a partial integration stay noted */
    info->ops_duplicate = t.dups;
    if (t.state == TRY_WAIT) {
        if ((e = pending_park(d, p, len, &t)))
            return e;
        info->parked = 1;
        return TD_CRDT_OK;
    }
    info->ops_applied = t.news;
    /* also agents noted by an earlier call that ran out of memory */
    if (d->npend)
        info->ops_applied += pending_retry(d);
    else
        d->ngrown = 0;
    return TD_CRDT_OK;
}

td_crdt_err td_crdt_apply(td_crdt_doc *d, const uint8_t *p, size_t len,
                          td_crdt_apply_info *info)
{
    return td_crdt_apply_ex(d, p, len, NULL, info);
}

int td_crdt_apply_partial(const td_crdt_doc *d)
{
    return d->apply_partial;
}

size_t td_crdt_pending_ops(const td_crdt_doc *d)
{
    return d->pend_ops;
}

/* ---- encoding: commit and diff -------------------------------------------- */

/* One op to encode, in document terms. */
typedef struct eop {
    uint8_t type, deleted, desc, text;
    uint32_t agent, seq, len, obj;
    td_id left, right, target;
    const uint32_t *cps; /* text content */
    const td_val *vals;  /* list content */
    const char *key;
    uint32_t klen;
    uint64_t lamport;
    const td_val *val;
    td_val tmpval; /* SET of a losing object creation */
} eop;

typedef struct encoder {
    td_crdt_doc *d;
    eop *ops;
    uint32_t n, cap;
    uint32_t *agent_map; /* doc agent -> batch index + 1 */
    uint32_t *obj_map;   /* doc handle -> batch index + 1 */
    uint32_t *objs;      /* batch index -> doc handle */
    uint32_t nobjs, capobjs;
    int oom;
} encoder;

static void eop_init(eop *o)
{
    memset(o, 0, sizeof *o);
    o->left.agent = o->right.agent = o->target.agent = TD_NONE;
}

static eop *enc_push(encoder *en)
{
    if (!td_crdt_grow(en->d, (void **)&en->ops, &en->cap, en->n + 1, sizeof *en->ops)) {
        en->oom = 1;
        return NULL;
    }
    eop *o = &en->ops[en->n++];
    eop_init(o);
    return o;
}

static void enc_nop(encoder *en, uint32_t agent, uint32_t seq, uint32_t len)
{
    eop *o = enc_push(en);
    if (o) {
        o->type = OP_NOP;
        o->agent = agent;
        o->seq = seq;
        o->len = len;
    }
}

/* The INS op of the items [s, e) of run r (object ob, handle h), which
 * hold them: shared by enc_run and the commit fast path, so both send the
 * same op. */
static void run_eop(eop *o, const td_obj *ob, uint32_t h, const td_run *r, uint32_t s,
                    uint32_t e)
{
    uint32_t k = s - r->id.seq;
    o->type = OP_INS;
    o->agent = r->id.agent;
    o->seq = s;
    o->len = e - s;
    o->obj = h;
    o->deleted = r->deleted;
    o->text = ob->kind == TD_CRDT_TEXT;
    o->left = k ? (td_id){r->id.agent, s - 1} : r->left;
    o->right = r->right;
    if (o->text && !o->deleted)
        o->cps = ob->u.seq.text + r->content + k;
    if (!o->text)
        o->vals = ob->u.seq.vals + r->content + k;
}

/* Items of run r (agent a) clipped to [from, to). */
static void enc_run(encoder *en, const td_obj *ob, uint32_t h, const td_run *r,
                    uint32_t from, uint32_t to)
{
    uint32_t s = r->id.seq > from ? r->id.seq : from;
    uint32_t e = r->id.seq + r->len < to ? r->id.seq + r->len : to;
    if (s >= e)
        return;
    eop *o = enc_push(en);
    if (o)
        run_eop(o, ob, h, r, s, e);
}

/* The DEL op of the ops [s, e) of delete record r of agent a, which holds
 * them (shared like run_eop). */
static void del_eop(eop *o, uint32_t a, const td_delrec *r, uint32_t s, uint32_t e)
{
    o->type = OP_DEL;
    o->agent = a;
    o->seq = s;
    o->len = e - s;
    o->obj = r->obj;
    o->desc = r->desc;
    o->target = r->target;
    o->target.seq = r->desc ? r->target.seq - (s - r->seq) : r->target.seq + (s - r->seq);
}

typedef struct run_walk {
    encoder *en;
    uint32_t agent, from, to;
} run_walk;

/* The run of leaf l (of object ob) that starts at (agent, seq), or NULL: an
 * id index entry names the leaf, not the slot. */
static const td_run *leaf_run(const td_leaf *l, const td_obj *ob, uint32_t agent, uint32_t seq)
{
    /* a commit after typing: the run is usually where the local-edit cursor
     * is, so the search of the leaf starts there (and wraps around) */
    const td_seq *q = &ob->u.seq;
    uint32_t start = q->cur.valid && q->cur.leaf == l && q->cur.ri < l->n ? q->cur.ri : 0;
    for (uint32_t k = 0; k < l->n; k++) {
        uint32_t i = start + k < l->n ? start + k : start + k - l->n;
        if (l->r[i].id.agent == agent && l->r[i].id.seq == seq)
            return &l->r[i];
    }
    return NULL;
}

static int walk_run_entry(void *ud, td_idx_ent *ent)
{
    run_walk *w = ud;
    if (ent->seq >= w->to)
        return 1;
    td_leaf *l = ent->leaf;
    td_obj *ob = w->en->d->objs[l->obj - 1];
    const td_run *r = leaf_run(l, ob, w->agent, ent->seq);
    if (r)
        enc_run(w->en, ob, l->obj, r, w->from, w->to);
    return 0;
}

static int eop_cmp_seq(const void *x, const void *y)
{
    const eop *a = x, *b = y;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Sorts ops[lo..hi) by seq: one agent's items, deletes and map writes
 * (their seqs are distinct). */
static void sort_by_seq(eop *ops, uint32_t lo, uint32_t hi)
{
    /* a commit holds a few ops, usually in order already: insertion sort
     * costs nothing then, where qsort's calls did */
    if (hi - lo <= 16) {
        for (uint32_t i = lo + 1; i < hi; i++)
            for (uint32_t j = i; j > lo && ops[j].seq < ops[j - 1].seq; j--) {
                eop t = ops[j];
                ops[j] = ops[j - 1];
                ops[j - 1] = t;
            }
        return;
    }
    qsort(ops + lo, hi - lo, sizeof *ops, eop_cmp_seq);
}

/* Everything agent a did in seqs [from, to), in seq order, gaps as NOPs. */
static void enc_agent(encoder *en, uint32_t a, uint32_t from, uint32_t to)
{
    td_crdt_doc *d = en->d;
    uint32_t start = en->n;
    /* items: the run holding `from` may start before it */
    run_walk w = {en, a, from, to};
    td_crdt_idx_walk_floor(&d->agents[a].idx, from, walk_run_entry, &w);
    /* deletes */
    td_agent *ag = &d->agents[a];
    uint32_t lo = 0, hi = ag->ndels; /* first record ending after from */
    if (hi && ag->dels[hi - 1].seq + ag->dels[hi - 1].len <= from)
        lo = hi; /* a commit: nothing deleted since, no search */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ag->dels[mid].seq + ag->dels[mid].len <= from)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (uint32_t i = lo; i < ag->ndels && ag->dels[i].seq < to; i++) {
        const td_delrec *r = &ag->dels[i];
        uint32_t s = r->seq > from ? r->seq : from;
        uint32_t e = r->seq + r->len < to ? r->seq + r->len : to;
        eop *o = enc_push(en);
        if (!o)
            return;
        del_eop(o, a, r, s, e);
    }
    /* map writes that still win, and object creations that lost */
    for (uint32_t h = 1; h <= d->nobjs; h++) {
        td_obj *ob = d->objs[h - 1];
        td_mapent *w = ob->key && ob->id.agent == a && ob->id.seq >= from && ob->id.seq < to
                           ? td_crdt_map_find(&d->objs[ob->parent - 1]->u.map, ob->key, ob->klen)
                           : NULL;
        /* an object made by a map write that has since lost: resend the write
         * (a winning one is sent with its map's entries) */
        if (w && !(w->id.agent == a && w->id.seq == ob->id.seq)) {
            eop *o = enc_push(en);
            if (!o)
                return;
            o->type = OP_SET;
            o->agent = a;
            o->seq = ob->id.seq;
            o->len = 1;
            o->obj = ob->parent;
            o->key = ob->key;
            o->klen = ob->klen;
            o->lamport = ob->lamport;
            o->tmpval.tag = (uint8_t)(TD_VT_TEXT + ob->kind - 1);
            o->val = NULL;
        }
        if (ob->kind != TD_CRDT_MAP)
            continue;
        for (uint32_t i = 0; i < ob->u.map.n; i++) {
            td_mapent *m = &ob->u.map.e[i];
            if (m->id.agent != a || m->id.seq < from || m->id.seq >= to)
                continue;
            eop *o = enc_push(en);
            if (!o)
                return;
            o->type = OP_SET;
            o->agent = a;
            o->seq = m->id.seq;
            o->len = 1;
            o->obj = h;
            o->key = m->key;
            o->klen = m->klen;
            o->lamport = m->lamport;
            o->val = &m->val;
        }
    }
    if (en->oom)
        return;
    sort_by_seq(en->ops, start, en->n);
    /* fill gaps with NOPs */
    uint32_t end = en->n, cur = from;
    for (uint32_t i = start; i < end; i++) {
        if (en->ops[i].seq > cur)
            enc_nop(en, a, cur, en->ops[i].seq - cur);
        cur = en->ops[i].seq + en->ops[i].len;
    }
    if (cur < to)
        enc_nop(en, a, cur, to - cur);
    if (!en->oom)
        sort_by_seq(en->ops, start, en->n);
}

static uint32_t enc_obj_index(encoder *en, uint32_t h)
{
    if (!en->obj_map[h - 1]) {
        if (!td_crdt_grow(en->d, (void **)&en->objs, &en->capobjs, en->nobjs + 1, sizeof *en->objs)) {
            en->oom = 1;
            return 0;
        }
        en->objs[en->nobjs++] = h;
        en->obj_map[h - 1] = en->nobjs;
    }
    return en->obj_map[h - 1] - 1;
}

static void enc_id(td_buf *b, const encoder *en, td_id id)
{
    td_wb_varint(b, en->agent_map[id.agent] - 1);
    td_wb_varint(b, id.seq);
}

static uint8_t *put_id(uint8_t *q, const encoder *en, td_id id)
{
    q = td_put_varint(q, en->agent_map[id.agent] - 1);
    return td_put_varint(q, id.seq);
}

static void enc_note_agent(encoder *en, td_id id)
{
    if (id.agent != TD_NONE)
        en->agent_map[id.agent] = 1;
}

/* The most bytes of an op before its content: head, 9 varints (agent,
 * seq, len, object, two origins) or fewer. */
#define OP_FIXED_MAX (1 + 9 * TD_CRDT_VARINT_MAX)

static void enc_write_op(td_buf *b, encoder *en, const eop *o, const eop *prev)
{
    uint8_t head = o->type;
    int cont = prev && prev->agent == o->agent && prev->seq + prev->len == o->seq;
    if (cont)
        head |= F_CONT;
    int leftprev = 0;
    if (o->type == OP_INS) {
        leftprev = cont && prev->type == OP_INS && o->left.agent == o->agent &&
                   o->left.seq + 1 == o->seq;
        head |= (o->deleted ? F_DELETED : 0) | (o->left.agent == TD_NONE ? F_NOLEFT : 0) |
                (o->right.agent == TD_NONE ? F_NORIGHT : 0) | (leftprev ? F_LEFTPREV : 0) |
                (o->text ? F_TEXT : 0);
    }
    if (o->type == OP_DEL && o->desc)
        head |= F_DELETED;
    /* the fixed fields through a local cursor in reserved room (a commit
     * per keystroke is mostly these) */
    if (!td_crdt_wb_reserve(b, OP_FIXED_MAX))
        return;
    uint8_t *q = b->p + b->len;
    *q++ = head;
    if (!cont) {
        q = td_put_varint(q, en->agent_map[o->agent] - 1);
        q = td_put_varint(q, o->seq);
    }
    if (o->type != OP_SET)
        q = td_put_varint(q, o->len);
    if (o->type != OP_NOP)
        q = td_put_varint(q, en->obj_map[o->obj - 1] - 1);
    if (o->type == OP_INS) {
        if (o->left.agent != TD_NONE && !leftprev)
            q = put_id(q, en, o->left);
        if (o->right.agent != TD_NONE)
            q = put_id(q, en, o->right);
    } else if (o->type == OP_DEL) {
        q = put_id(q, en, o->target);
    }
    b->len = (size_t)(q - b->p);
    switch (o->type) {
    case OP_INS:
        if (o->text && !o->deleted) {
            /* the byte length first, then the bytes straight into b: no
             * scratch buffer per inserted run */
            size_t nbytes = 0;
            for (uint32_t i = 0; i < o->len; i++)
                nbytes += o->cps[i] < 0x80 ? 1 : o->cps[i] < 0x800 ? 2 : o->cps[i] < 0x10000 ? 3 : 4;
            td_wb_varint(b, nbytes);
            td_crdt_wb_utf8(b, o->cps, o->len);
        } else if (!o->text) {
            for (uint32_t i = 0; i < o->len; i++)
                td_crdt_val_encode(b, &o->vals[i]);
        }
        break;
    case OP_SET:
        td_wb_varint(b, o->klen);
        td_crdt_wb_bytes(b, o->key, o->klen);
        td_wb_varint(b, o->lamport);
        td_crdt_val_encode(b, o->val ? o->val : &o->tmpval);
        break;
    default:
        break;
    }
}

/* Encodes ops[0..n) (each agent's in seq order) as one batch. The agent and
 * object tables are built afresh, so it can be called again with other ops. */
static td_crdt_err enc_encode(encoder *en, const eop *ops, uint32_t n, uint8_t **out,
                              size_t *len)
{
    td_crdt_doc *d = en->d;
    *out = NULL;
    *len = 0;
    if (en->oom)
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    memset(en->agent_map, 0, (d->nagents + 1) * sizeof *en->agent_map);
    for (uint32_t i = 0; i < en->nobjs; i++)
        en->obj_map[en->objs[i] - 1] = 0;
    en->nobjs = 0;
    if (n == 0)
        return TD_CRDT_OK;
    /* which agents and objects are named */
    for (uint32_t i = 0; i < n; i++) {
        const eop *o = &ops[i];
        en->agent_map[o->agent] = 1;
        enc_note_agent(en, o->left);
        enc_note_agent(en, o->right);
        enc_note_agent(en, o->target);
        if (o->type != OP_NOP) {
            enc_obj_index(en, o->obj);
            td_obj *ob = d->objs[o->obj - 1];
            if (!ob->is_root)
                en->agent_map[ob->id.agent] = 1;
        }
    }
    td_buf b;
    td_crdt_wb_init(&b, d);
    td_crdt_wb_bytes(&b, "TB\x01", 3);
    uint32_t na = 0;
    for (uint32_t i = 0; i < d->nagents; i++)
        na += en->agent_map[d->agent_order[i]] != 0;
    td_wb_varint(&b, na);
    na = 0;
    for (uint32_t i = 0; i < d->nagents; i++) {
        uint32_t a = d->agent_order[i];
        if (en->agent_map[a]) {
            en->agent_map[a] = ++na;
            td_crdt_wb_u64le(&b, d->agents[a].id);
        }
    }
    td_wb_varint(&b, en->nobjs);
    for (uint32_t i = 0; i < en->nobjs; i++) {
        td_obj *ob = d->objs[en->objs[i] - 1];
        if (ob->is_root) {
            td_wb_u8(&b, (uint8_t)(ob->kind - 1));
            td_wb_varint(&b, ob->name_len);
            td_crdt_wb_bytes(&b, ob->name, ob->name_len);
        } else {
            td_wb_u8(&b, OBJ_NESTED);
            enc_id(&b, en, ob->id);
        }
    }
    td_wb_varint(&b, n);
    for (uint32_t i = 0; i < n; i++)
        enc_write_op(&b, en, &ops[i], i ? &ops[i - 1] : NULL);
    if (b.oom || en->oom) {
        td_crdt_wb_free(&b);
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    }
    *out = b.p;
    *len = b.len;
    return TD_CRDT_OK;
}

static td_crdt_err enc_finish(encoder *en, uint8_t **out, size_t *len)
{
    return enc_encode(en, en->ops, en->n, out, len);
}

static td_crdt_err enc_init(encoder *en, td_crdt_doc *d)
{
    memset(en, 0, sizeof *en);
    en->d = d;
    en->agent_map = td_crdt_mem(d, NULL, (d->nagents + 1) * sizeof *en->agent_map);
    en->obj_map = td_crdt_mem(d, NULL, (d->nobjs + 1) * sizeof *en->obj_map);
    if (!en->agent_map || !en->obj_map)
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    memset(en->agent_map, 0, (d->nagents + 1) * sizeof *en->agent_map);
    memset(en->obj_map, 0, (d->nobjs + 1) * sizeof *en->obj_map);
    return TD_CRDT_OK;
}

static void enc_free(encoder *en)
{
    td_crdt_memfree(en->d, en->ops);
    td_crdt_memfree(en->d, en->agent_map);
    td_crdt_memfree(en->d, en->obj_map);
    td_crdt_memfree(en->d, en->objs);
}

/* Commits reuse the arrays of the previous commit (d->enc): an editor
 * commits once per keystroke, and four allocations and frees cost more than
 * encoding the keystroke. The encoder starts exactly as enc_init leaves it
 * (maps zeroed, no ops). The ops array is kept only while small, so one big
 * commit does not pin its memory. */
#define ENC_KEEP_OPS 64

static td_crdt_err enc_init_reuse(encoder *en, td_crdt_doc *d)
{
    memset(en, 0, sizeof *en);
    en->d = d;
    en->ops = d->enc.ops;
    en->cap = d->enc.capops;
    en->objs = d->enc.objs;
    en->capobjs = d->enc.capobjs;
    en->agent_map = d->enc.agent_map;
    en->obj_map = d->enc.obj_map;
    d->enc.ops = NULL;
    d->enc.objs = d->enc.agent_map = d->enc.obj_map = NULL;
    d->enc.capops = d->enc.capobjs = 0;
    if (!td_crdt_grow(d, (void **)&en->agent_map, &d->enc.capagent, d->nagents + 1,
                      sizeof *en->agent_map) ||
        !td_crdt_grow(d, (void **)&en->obj_map, &d->enc.capobj, d->nobjs + 1, sizeof *en->obj_map))
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    memset(en->agent_map, 0, (d->nagents + 1) * sizeof *en->agent_map);
    memset(en->obj_map, 0, (d->nobjs + 1) * sizeof *en->obj_map);
    return TD_CRDT_OK;
}

/* Hands the arrays back to the document for the next commit. */
static void enc_release(encoder *en)
{
    td_crdt_doc *d = en->d;
    /* a map that failed to grow is still valid at its recorded capacity */
    d->enc.agent_map = en->agent_map;
    d->enc.obj_map = en->obj_map;
    d->enc.objs = en->objs;
    d->enc.capobjs = en->capobjs;
    if (en->cap <= ENC_KEEP_OPS) {
        d->enc.ops = en->ops;
        d->enc.capops = en->cap;
    } else {
        td_crdt_memfree(d, en->ops);
    }
}

/* ---- the commit fast path -------------------------------------------------
 *
 * An editor commits after every keystroke, so the usual commit holds one
 * op: a character typed (part of one run of ours) or one backspace (part of
 * our last delete record). For that case the general path -- an index walk,
 * a scan of every object for map writes, a sort, maps cleared for every
 * agent and object -- costs several times the edit. The fast path proves
 * the commit is one op and writes it directly.
 *
 * Why it sends the same bytes: op ids are unique, so a run or delete record
 * that holds every seq of [from, to) is the only thing enc_agent can find
 * there (no other item, delete or map write has those seqs, and there is no
 * gap to fill with NOPs); run_eop / del_eop build the op as enc_agent does;
 * commit_one writes the agent and object tables enc_encode would write for
 * that op, and then the op with enc_write_op. tests/crdt/test_crdt_commit.c
 * compares both paths over random edits. */

/* The one op holding our seqs [from, to) (from < to), or 0 if there is not
 * one. */
static int commit_op(td_crdt_doc *d, uint32_t from, uint32_t to, eop *o)
{
    td_agent *ag = &d->agents[d->self];
    eop_init(o);
    /* a backspace extends our last delete record; any record of ours that
     * holds the range is the last one, deletes being recorded in seq order */
    if (ag->ndels) {
        const td_delrec *r = &ag->dels[ag->ndels - 1];
        if (r->seq <= from && to - r->seq <= r->len) {
            del_eop(o, d->self, r, from, to);
            return 1;
        }
    }
    td_idx_ent *ent = td_crdt_idx_floor(&ag->idx, from);
    if (!ent)
        return 0;
    const td_obj *ob = d->objs[ent->leaf->obj - 1];
    const td_run *r = leaf_run(ent->leaf, ob, d->self, ent->seq);
    /* the floor entry's run starts at or before from; it must reach to */
    if (!r || to - r->id.seq > r->len)
        return 0;
    run_eop(o, ob, ent->leaf->obj, r, from, to);
    return 1;
}

/* Writes the batch of the single op o as enc_encode writes it: agents named
 * by the op (and by its object's id) in id order, its object, the op. The
 * encoder's maps are the document's commit maps; only their entries for
 * these agents and this object are set, and only those are read. */
static td_crdt_err commit_one(td_crdt_doc *d, const eop *o, uint8_t **out, size_t *len)
{
    const td_obj *ob = d->objs[o->obj - 1];
    if ((d->enc.capagent <= d->nagents &&
         !td_crdt_grow(d, (void **)&d->enc.agent_map, &d->enc.capagent, d->nagents + 1,
                       sizeof *d->enc.agent_map)) ||
        (d->enc.capobj <= d->nobjs &&
         !td_crdt_grow(d, (void **)&d->enc.obj_map, &d->enc.capobj, d->nobjs + 1,
                       sizeof *d->enc.obj_map)))
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    /* enc_write_op and enc_id read only the encoder's maps */
    encoder en = {.d = d, .agent_map = d->enc.agent_map, .obj_map = d->enc.obj_map};
    /* the agents, distinct, sorted by id: at most five */
    uint32_t ag[5], na = 0;
    uint32_t cand[5] = {o->agent, o->left.agent, o->right.agent, o->target.agent,
                        ob->is_root ? TD_NONE : ob->id.agent};
    for (uint32_t i = 0; i < 5; i++) {
        uint32_t a = cand[i], j = 0;
        if (a == TD_NONE)
            continue;
        while (j < na && ag[j] != a)
            j++;
        if (j < na)
            continue;
        uint64_t id = d->agents[a].id;
        for (j = na; j > 0 && d->agents[ag[j - 1]].id > id; j--)
            ag[j] = ag[j - 1];
        ag[j] = a;
        na++;
    }
    for (uint32_t i = 0; i < na; i++)
        en.agent_map[ag[i]] = i + 1;
    en.obj_map[o->obj - 1] = 1;
    /* room for everything but the content, which is at most 4 bytes a code
     * point (list values grow the buffer as they are written) */
    size_t cap = 3 + 1 + 8 * (size_t)na + 1 + 1 + 2 * TD_CRDT_VARINT_MAX +
                 (ob->is_root ? ob->name_len : 0) + 1 + 1 + 10 * TD_CRDT_VARINT_MAX +
                 (o->text && !o->deleted ? 4 * (size_t)o->len : 0);
    td_buf b;
    td_crdt_wb_init(&b, d);
    b.p = td_crdt_mem(d, NULL, cap);
    if (!b.p)
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    b.cap = cap;
    /* the header fits in cap: written through a local cursor */
    uint8_t *q = b.p;
    memcpy(q, "TB\x01", 3);
    q = td_put_varint(q + 3, na);
    for (uint32_t i = 0; i < na; i++) {
        uint64_t id = d->agents[ag[i]].id;
        for (int k = 0; k < 8; k++)
            *q++ = (uint8_t)(id >> (8 * k));
    }
    q = td_put_varint(q, 1);
    if (ob->is_root) {
        *q++ = (uint8_t)(ob->kind - 1);
        q = td_put_varint(q, ob->name_len);
        memcpy(q, ob->name, ob->name_len);
        q += ob->name_len;
    } else {
        *q++ = OBJ_NESTED;
        q = put_id(q, &en, ob->id);
    }
    q = td_put_varint(q, 1);
    b.len = (size_t)(q - b.p);
    enc_write_op(&b, &en, o, NULL);
    if (b.oom) {
        td_crdt_wb_free(&b);
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    }
    *out = b.p;
    *len = b.len;
    return TD_CRDT_OK;
}

/* The general path: everything we did since the last commit, by enc_agent. */
static td_crdt_err commit_general(td_crdt_doc *d, uint8_t **out, size_t *len)
{
    encoder en;
    td_crdt_err e = enc_init_reuse(&en, d);
    uint32_t to = d->agents[d->self].vv;
    if (!e && d->committed < to)
        enc_agent(&en, d->self, d->committed, to);
    if (!e)
        e = enc_finish(&en, out, len);
    enc_release(&en);
    if (!e)
        d->committed = to;
    return e;
}

td_crdt_err td_crdt_commit_general(td_crdt_doc *d, uint8_t **out, size_t *len)
{
    if (!out || !len)
        return td_crdt_fail(d, TD_CRDT_ERR_ARG, "commit needs out and len");
    td_crdt_err full_e = td_crdt_full(d); /* needs the history */
    if (full_e)
        return full_e;
    return commit_general(d, out, len);
}

/* The one-op fast path of both commits (typing, a backspace): 1 if it
 * decided the commit (*e says how), 0 to take the general path -- also when
 * the batch is over max, for the general path to cut. */
static int commit_fast(td_crdt_doc *d, size_t max, uint8_t **out, size_t *len, td_crdt_err *e)
{
    uint32_t from = d->committed, to = d->agents[d->self].vv;
    eop o;
    if (from >= to || !commit_op(d, from, to, &o))
        return 0;
    if ((*e = commit_one(d, &o, out, len)))
        return 1;
    if (*len > max) {
        td_crdt_memfree(d, *out);
        *out = NULL;
        *len = 0;
        return 0;
    }
    d->committed = to;
    return 1;
}

td_crdt_err td_crdt_commit(td_crdt_doc *d, uint8_t **out, size_t *len)
{
    if (!out || !len)
        return td_crdt_fail(d, TD_CRDT_ERR_ARG, "commit needs out and len");
    td_crdt_err full_e = td_crdt_full(d); /* needs the history */
    if (full_e)
        return full_e;
    td_crdt_err e;
    return commit_fast(d, SIZE_MAX, out, len, &e) ? e : commit_general(d, out, len);
}

/* ---- version vectors ------------------------------------------------------- */

td_crdt_err td_crdt_vv_encode(const td_crdt_doc *cd, uint8_t **out, size_t *len)
{
    td_crdt_doc *d = (td_crdt_doc *)cd; /* only its allocator is used */
    td_buf b;
    td_crdt_wb_init(&b, d);
    uint32_t n = 0;
    for (uint32_t i = 0; i < d->nagents; i++)
        n += d->agents[i].vv > 0;
    td_wb_u8(&b, 1);
    td_wb_varint(&b, n);
    for (uint32_t i = 0; i < d->nagents; i++) {
        const td_agent *a = &d->agents[d->agent_order[i]];
        if (a->vv) {
            td_crdt_wb_u64le(&b, a->id);
            td_wb_varint(&b, a->vv);
        }
    }
    if (b.oom) {
        td_crdt_wb_free(&b);
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    }
    *out = b.p;
    *len = b.len;
    return TD_CRDT_OK;
}

/* Decodes a version vector: peer[a] (doc agent a, all zeroed first) is its
 * count of a; agents the document does not know are skipped, or, if xid is
 * not NULL, returned in (*xid, *xcnt, *nx) (freed by the caller). */
static td_crdt_err vv_decode(td_crdt_doc *d, const uint8_t *vv, size_t vv_len, uint32_t *peer,
                             uint64_t **xid, uint32_t **xcnt, uint32_t *nx)
{
    memset(peer, 0, (d->nagents + 1) * sizeof *peer);
    if (xid) {
        *xid = NULL;
        *xcnt = NULL;
        *nx = 0;
    }
    if (!vv_len)
        return TD_CRDT_OK;
    td_rd r = {vv, vv + vv_len, 0};
    if (td_crdt_rd_u8(&r) != 1)
        return td_crdt_fail(d, r.bad ? TD_CRDT_ERR_DECODE : TD_CRDT_ERR_VERSION,
                            "version vector: unknown version");
    /* n is bounded by the bytes present, so the arrays below are too */
    uint32_t n = td_crdt_rd_u32(&r, (uint32_t)(td_crdt_rd_left(&r) / 9));
    if (xid && n && (!(*xid = td_crdt_mem(d, NULL, (size_t)n * sizeof **xid)) ||
                     !(*xcnt = td_crdt_mem(d, NULL, (size_t)n * sizeof **xcnt))))
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    uint64_t prev = 0;
    for (uint32_t i = 0; i < n && !r.bad; i++) {
        uint64_t agent = td_crdt_rd_u64le(&r);
        uint64_t cnt = td_crdt_rd_varint(&r);
        if ((i && agent <= prev) || cnt > TD_MAX_SEQ)
            r.bad = 1;
        prev = agent;
        uint32_t a;
        if (r.bad)
            break;
        if (td_crdt_agent_find(d, agent, &a)) {
            peer[a] = (uint32_t)cnt;
        } else if (xid && cnt) {
            (*xid)[*nx] = agent;
            (*xcnt)[(*nx)++] = (uint32_t)cnt;
        }
    }
    if (r.bad || td_crdt_rd_left(&r))
        return td_crdt_fail(d, TD_CRDT_ERR_DECODE, "version vector malformed");
    return TD_CRDT_OK;
}

td_crdt_err td_crdt_diff(td_crdt_doc *d, const uint8_t *vv, size_t vv_len,
                         uint8_t **out, size_t *len)
{
    if (!out || !len || (vv_len && !vv))
        return td_crdt_fail(d, TD_CRDT_ERR_ARG, "diff needs out and len");
    *out = NULL;
    *len = 0;
    td_crdt_err full_e = td_crdt_full(d); /* needs the history */
    if (full_e)
        return full_e;
    uint32_t *peer = td_crdt_mem(d, NULL, (d->nagents + 1) * sizeof *peer);
    if (!peer)
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    td_crdt_err e = vv_decode(d, vv, vv_len, peer, NULL, NULL, NULL);
    encoder en;
    if (!e)
        e = enc_init(&en, d);
    else
        memset(&en, 0, sizeof en), en.d = d;
    for (uint32_t i = 0; !e && i < d->nagents; i++) {
        uint32_t a = d->agent_order[i];
        if (peer[a] < d->agents[a].vv)
            enc_agent(&en, a, peer[a], d->agents[a].vv);
    }
    if (!e)
        e = enc_finish(&en, out, len);
    enc_free(&en);
    td_crdt_memfree(d, peer);
    return e;
}

/* ---- size-limited batches: commit_max and diff_max ------------------------- */

static int id_below(td_id id, const uint32_t *cut)
{
    return id.agent == TD_NONE || id.seq < cut[id.agent];
}

/* Are all the ops op o depends on (its object's creating op, its origins, the
 * items it deletes) below cut? */
static int eop_ready(const td_crdt_doc *d, const eop *o, const uint32_t *cut)
{
    if (o->type == OP_NOP)
        return 1;
    const td_obj *ob = d->objs[o->obj - 1];
    if (!ob->is_root && !id_below(ob->id, cut))
        return 0;
    if (o->type == OP_INS)
        return id_below(o->left, cut) && id_below(o->right, cut);
    if (o->type == OP_DEL) /* the highest target: the first when they run down */
        return (o->desc ? o->target.seq : o->target.seq + o->len - 1) < cut[o->target.agent];
    return 1;
}

/* The first n items of an op: every op is a run of items, ids and (for
 * deletes) targets counting up from its first, and its first item's
 * references are the run's. */
static eop eop_clip(const eop *o, uint32_t n)
{
    eop c = *o;
    c.len = n;
    return c;
}

/* A limited encoding in progress: en->ops holds the ops [cut[a], to[a]) of
 * every agent a, each agent's in seq order at seg[a] .. seg[a] + nseg[a];
 * ord lists them in a causal order. */
typedef struct limited {
    encoder en;
    uint32_t *seg, *nseg, *ord, *take, *sim;
    eop *tmp;
    uint32_t nord;
} limited;

/* Orders the collected ops causally: an op comes after everything it
 * depends on. The document integrated them in such an order, with each
 * agent's in seq order, so one exists, and taking per agent every op that is
 * ready, round after round, finds it. */
static td_crdt_err lim_order(limited *L, const uint32_t *cut)
{
    td_crdt_doc *d = L->en.d;
    uint32_t *next = L->take;
    memcpy(L->sim, cut, d->nagents * sizeof *L->sim);
    for (uint32_t a = 0; a < d->nagents; a++)
        next[a] = 0;
    L->nord = 0;
    for (int progress = 1; progress;) {
        progress = 0;
        for (uint32_t a = 0; a < d->nagents; a++)
            for (; next[a] < L->nseg[a]; next[a]++) {
                uint32_t i = L->seg[a] + next[a];
                const eop *o = &L->en.ops[i];
                if (!eop_ready(d, o, L->sim))
                    break;
                L->sim[a] = o->seq + o->len;
                L->ord[L->nord++] = i;
                progress = 1;
            }
    }
    if (L->nord != L->en.n)
        return td_crdt_fail(d, TD_CRDT_ERR_INVALID_OP, "history has no causal order");
    return TD_CRDT_OK;
}

/* Encodes the first p items of the causal order (the op holding the p-th item
 * clipped after it); take[a] counts the ops of agent a included. */
static td_crdt_err lim_encode(limited *L, uint64_t p, uint8_t **out, size_t *len)
{
    td_crdt_doc *d = L->en.d;
    uint32_t clip_op = UINT32_MAX, clip_n = 0;
    for (uint32_t a = 0; a < d->nagents; a++)
        L->take[a] = 0;
    for (uint32_t k = 0; k < L->nord && p; k++) {
        const eop *o = &L->en.ops[L->ord[k]];
        L->take[o->agent]++;
        if (o->len > p) {
            clip_op = L->ord[k];
            clip_n = (uint32_t)p;
        }
        p -= o->len < p ? o->len : p;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < d->nagents; i++) {
        uint32_t a = d->agent_order[i];
        for (uint32_t j = 0; j < L->take[a]; j++) {
            uint32_t x = L->seg[a] + j;
            L->tmp[n++] = x == clip_op ? eop_clip(&L->en.ops[x], clip_n) : L->en.ops[x];
        }
    }
    return enc_encode(&L->en, L->tmp, n, out, len);
}

static void lim_free(limited *L)
{
    td_crdt_doc *d = L->en.d;
    td_crdt_memfree(d, L->seg);
    td_crdt_memfree(d, L->nseg);
    td_crdt_memfree(d, L->ord);
    td_crdt_memfree(d, L->take);
    td_crdt_memfree(d, L->sim);
    td_crdt_memfree(d, L->tmp);
    enc_free(&L->en);
}

/* Encodes a causal prefix of the ops [cut[a], to[a]) of every agent a (cut
 * and to indexed by doc agent): the longest whose batch has at most max
 * bytes, but at least one item. Advances cut[] past what it encoded. Sizes
 * only grow with the prefix, so a binary search over its length in items
 * finds it. */
static td_crdt_err enc_limited(td_crdt_doc *d, uint32_t *cut, const uint32_t *to, size_t max,
                               uint8_t **out, size_t *len)
{
    limited L;
    memset(&L, 0, sizeof L);
    *out = NULL;
    *len = 0;
    td_crdt_err e = enc_init(&L.en, d);
    size_t na = (size_t)d->nagents + 1;
    if (!e && (!(L.seg = td_crdt_mem(d, NULL, na * sizeof *L.seg)) ||
               !(L.nseg = td_crdt_mem(d, NULL, na * sizeof *L.nseg)) ||
               !(L.take = td_crdt_mem(d, NULL, na * sizeof *L.take)) ||
               !(L.sim = td_crdt_mem(d, NULL, na * sizeof *L.sim))))
        e = td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    for (uint32_t a = 0; !e && a < d->nagents; a++) {
        L.seg[a] = L.en.n;
        if (cut[a] < to[a])
            enc_agent(&L.en, a, cut[a], to[a]);
        L.nseg[a] = L.en.n - L.seg[a];
    }
    if (!e && L.en.oom)
        e = td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    if (!e && L.en.n == 0) {
        lim_free(&L);
        return TD_CRDT_OK;
    }
    if (!e && (!(L.ord = td_crdt_mem(d, NULL, (size_t)L.en.n * sizeof *L.ord)) ||
               !(L.tmp = td_crdt_mem(d, NULL, (size_t)L.en.n * sizeof *L.tmp))))
        e = td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    if (!e)
        e = lim_order(&L, cut);
    uint64_t total = 0;
    for (uint32_t k = 0; !e && k < L.nord; k++)
        total += L.en.ops[L.ord[k]].len;
    /* the whole rest first (the common case), then a binary search */
    uint64_t lo = 1, hi = total, best = total;
    if (!e && (e = lim_encode(&L, total, out, len)) == TD_CRDT_OK && *len > max) {
        td_crdt_memfree(d, *out);
        *out = NULL;
        hi = total - 1;
        best = 1;
        while (!e && lo <= hi) {
            uint64_t mid = lo + (hi - lo) / 2;
            if ((e = lim_encode(&L, mid, out, len)))
                break;
            td_crdt_memfree(d, *out);
            *out = NULL;
            if (*len <= max) {
                best = mid;
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
        if (!e)
            e = lim_encode(&L, best, out, len);
    }
    if (!e) {
        uint64_t p = best;
        for (uint32_t k = 0; k < L.nord && p; k++) {
            const eop *o = &L.en.ops[L.ord[k]];
            uint32_t n = o->len < p ? o->len : (uint32_t)p;
            cut[o->agent] = o->seq + n;
            p -= n;
        }
    }
    if (e) {
        td_crdt_memfree(d, *out);
        *out = NULL;
        *len = 0;
    }
    lim_free(&L);
    return e;
}

td_crdt_err td_crdt_commit_max(td_crdt_doc *d, size_t max_bytes, uint8_t **out, size_t *len,
                               int *more)
{
    if (!out || !len || !more)
        return td_crdt_fail(d, TD_CRDT_ERR_ARG, "commit_max needs out, len and more");
    *more = 0;
    td_crdt_err full_e = td_crdt_full(d); /* needs the history */
    if (full_e)
        return full_e;
    /* Typing commits one op: the general path builds, orders and frees
     * per-agent arrays for it, which costs the wasm client (one commit per
     * keystroke) several times the edit. */
    td_crdt_err e;
    if (commit_fast(d, max_bytes, out, len, &e))
        return e;
    return td_crdt_commit_max_general(d, max_bytes, out, len, more);
}

td_crdt_err td_crdt_commit_max_general(td_crdt_doc *d, size_t max_bytes, uint8_t **out,
                                       size_t *len, int *more)
{
    *more = 0;
    td_crdt_err full_e = td_crdt_full(d); /* needs the history */
    if (full_e)
        return full_e;
    size_t na = (size_t)d->nagents + 1;
    uint32_t *cut = td_crdt_mem(d, NULL, na * sizeof *cut);
    uint32_t *to = td_crdt_mem(d, NULL, na * sizeof *to);
    td_crdt_err e = TD_CRDT_OK;
    if (!cut || !to) {
        e = td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    } else {
        /* only our own ops; whatever they depend on the document has */
        for (uint32_t a = 0; a < d->nagents; a++)
            cut[a] = to[a] = d->agents[a].vv;
        cut[d->self] = d->committed;
        e = enc_limited(d, cut, to, max_bytes, out, len);
    }
    if (!e) {
        d->committed = cut[d->self];
        *more = d->committed < d->agents[d->self].vv;
    } else {
        *out = NULL;
        *len = 0;
    }
    td_crdt_memfree(d, cut);
    td_crdt_memfree(d, to);
    return e;
}

td_crdt_err td_crdt_diff_max(td_crdt_doc *d, const uint8_t *vv, size_t vv_len, size_t max_bytes,
                             uint8_t **out, size_t *len, uint8_t **next_vv, size_t *next_len,
                             int *done)
{
    if (!out || !len || !next_vv || !next_len || !done || (vv_len && !vv))
        return td_crdt_fail(d, TD_CRDT_ERR_ARG, "diff_max needs out, len, next_vv, next_len, done");
    *out = *next_vv = NULL;
    *len = *next_len = 0;
    *done = 0;
    td_crdt_err full_e = td_crdt_full(d); /* needs the history */
    if (full_e)
        return full_e;
    size_t na = (size_t)d->nagents + 1;
    uint32_t *peer = td_crdt_mem(d, NULL, na * sizeof *peer);
    uint32_t *cut = td_crdt_mem(d, NULL, na * sizeof *cut);
    uint32_t *to = td_crdt_mem(d, NULL, na * sizeof *to);
    uint64_t *xid = NULL;
    uint32_t *xcnt = NULL, nx = 0;
    td_crdt_err e = TD_CRDT_OK;
    if (!peer || !cut || !to)
        e = td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    if (!e)
        e = vv_decode(d, vv, vv_len, peer, &xid, &xcnt, &nx);
    if (!e) {
        for (uint32_t a = 0; a < d->nagents; a++) {
            to[a] = d->agents[a].vv;
            cut[a] = peer[a] < to[a] ? peer[a] : to[a];
        }
        e = enc_limited(d, cut, to, max_bytes, out, len);
    }
    if (!e) {
        /* next_vv: the peer's vv (agents unknown here kept) plus this batch,
         * both lists in id order, merged */
        td_buf b;
        td_crdt_wb_init(&b, d);
        uint32_t n = nx;
        *done = 1;
        for (uint32_t a = 0; a < d->nagents; a++) {
            *done &= cut[a] >= to[a];
            if (cut[a] > peer[a])
                peer[a] = cut[a];
            n += peer[a] > 0;
        }
        td_wb_u8(&b, 1);
        td_wb_varint(&b, n);
        for (uint32_t i = 0, x = 0; i < d->nagents || x < nx;) {
            uint32_t a = i < d->nagents ? d->agent_order[i] : 0;
            if (x < nx && (i == d->nagents || xid[x] < d->agents[a].id)) {
                td_crdt_wb_u64le(&b, xid[x]);
                td_wb_varint(&b, xcnt[x++]);
                continue;
            }
            if (peer[a]) {
                td_crdt_wb_u64le(&b, d->agents[a].id);
                td_wb_varint(&b, peer[a]);
            }
            i++;
        }
        if (b.oom) {
            td_crdt_wb_free(&b);
            td_crdt_memfree(d, *out);
            *out = NULL;
            *len = 0;
            *done = 0;
            e = td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
        } else {
            *next_vv = b.p;
            *next_len = b.len;
        }
    }
    td_crdt_memfree(d, peer);
    td_crdt_memfree(d, cut);
    td_crdt_memfree(d, to);
    td_crdt_memfree(d, xid);
    td_crdt_memfree(d, xcnt);
    return e;
}
