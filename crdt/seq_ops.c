/*
 * seq_ops.c -- edits of a sequence: local inserts and deletes, and the
 * integration of remote ones.
 *
 * Local insert at visible position p: the left origin is the item at p-1,
 * the right origin the item right after it (deleted or not). When the left
 * origin is the last item of a run this agent is still typing -- its last
 * seq, its content at the end of the arena, the same right origin -- the run
 * just grows: no new run, no index entry, one walk up the tree for counts.
 *
 * Remote insert (YATA as modified by Yjs, i.e. FugueMax): the new item goes
 * after its left origin, skipping the items between the origins that belong
 * before it. Runs are split so that the left origin ends a run and the right
 * origin starts one; then every item of a run between them decides like the
 * run's first item (later items have their predecessor as left origin and
 * are skipped as its children), so the scan moves a run at a time. In the
 * common case -- no concurrent insert at that spot -- the run after the left
 * origin is the right origin and no index is computed at all.
 *
 * The cursor cache remembers where the last local edit happened (a run and
 * the visible index it starts at), so that typing and backspacing find their
 * place without a descent from the root.
 */
#include "crdt_internal.h"

static uint32_t run_vis(const td_run *r)
{
    return r->deleted ? 0 : r->len;
}

static int id_eq(td_id a, td_id b)
{
    return a.agent == b.agent && (a.agent == TD_NONE || a.seq == b.seq);
}

static td_seq *seq_of(td_crdt_doc *d, uint32_t obj)
{
    return &d->objs[obj - 1]->u.seq;
}

/* Appends content to the arena; *off receives its index. */
static td_crdt_err content_append(td_crdt_doc *d, td_seq *s, const uint32_t *cps,
                                  const td_val *vals, uint32_t n, uint32_t *off)
{
    if (cps && n == 1 && s->clen < s->ccap) { /* typing: one code point */
        s->text[s->clen] = *cps;
        *off = s->clen++;
        return TD_CRDT_OK;
    }
    if (s->clen > TD_MAX_SEQ - n)
        return td_crdt_fail(d, TD_CRDT_ERR_LIMIT, "sequence too long");
    if (cps) {
        if (!td_crdt_grow(d, (void **)&s->text, &s->ccap, s->clen + n, sizeof *s->text))
            return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
        memcpy(s->text + s->clen, cps, n * sizeof *cps);
    } else {
        if (!td_crdt_grow(d, (void **)&s->vals, &s->ccap, s->clen + n, sizeof *s->vals))
            return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
        memcpy(s->vals + s->clen, vals, n * sizeof *vals);
    }
    *off = s->clen;
    s->clen += n;
    return TD_CRDT_OK;
}

/* Finds the visible item vpos near the cached cursor (a few runs either way
 * within its leaf). */
static int cache_find(td_seq *s, uint32_t vpos, td_pos *out)
{
    if (!s->cur.valid || s->cur.ri >= s->cur.leaf->n)
        return 0;
    td_leaf *l = s->cur.leaf;
    uint32_t v = s->cur.vpos;
    for (uint32_t j = s->cur.ri; j < l->n && j < s->cur.ri + 4; j++) {
        uint32_t w = run_vis(&l->r[j]);
        if (vpos >= v && vpos - v < w) {
            *out = (td_pos){l, j, vpos - v};
            return 1;
        }
        v += w;
    }
    v = s->cur.vpos;
    for (uint32_t j = s->cur.ri; j > 0 && j + 4 > s->cur.ri; j--) {
        uint32_t w = run_vis(&l->r[j - 1]);
        if (w > v)
            return 0;
        v -= w;
        if (vpos >= v && vpos - v < w) {
            *out = (td_pos){l, j - 1, vpos - v};
            return 1;
        }
    }
    return 0;
}

static td_pos find_visible(td_seq *s, uint32_t vpos)
{
    td_pos p;
    if (cache_find(s, vpos, &p))
        return p;
    return td_crdt_seq_find_visible(s, vpos);
}

static void cache_set(td_seq *s, td_leaf *leaf, uint32_t ri, uint32_t vpos)
{
    s->cur.valid = 1;
    s->cur.leaf = leaf;
    s->cur.ri = ri;
    s->cur.vpos = vpos;
}

/* An insert inside the run at lp splits it, then inserts the new run next
 * to the second half: both insertions are reserved first, or a failing
 * second would leave the first. */
static td_crdt_err reserve_split_insert(td_crdt_doc *d, td_seq *s, td_pos lp, uint32_t seq0)
{
    const td_run *r = &lp.leaf->r[lp.ri];
    const td_leaf *lv[2] = {lp.leaf, lp.leaf};
    td_id keys[2] = {{r->id.agent, r->id.seq + lp.off + 1}, {d->self, seq0}};
    return td_crdt_seq_reserve(d, s, lv, keys, 2);
}

/* The hottest path of all: the cursor cache names the run this agent is
 * typing and pos is right after its last item. The run grows in place if
 * nothing was inserted after it meanwhile (its right origin is still next). */
static int typing_on(td_crdt_doc *d, td_seq *s, uint32_t pos, const uint32_t *cps,
                     const td_val *vals, uint32_t n)
{
    if (!s->cur.valid || s->cur.ri >= s->cur.leaf->n)
        return 0;
    td_leaf *l = s->cur.leaf;
    td_run *r = &l->r[s->cur.ri];
    td_agent *me = &d->agents[d->self];
    if (r->deleted || s->cur.vpos + r->len != pos || r->id.agent != d->self ||
        r->id.seq + r->len != me->vv || r->content == TD_NO_CONTENT ||
        r->content + r->len != s->clen)
        return 0;
    td_id right = {TD_NONE, 0};
    if (s->cur.ri + 1 < l->n)
        right = l->r[s->cur.ri + 1].id;
    else if (l->next)
        right = l->next->r[0].id;
    if (!id_eq(r->right, right))
        return 0;
    uint32_t off;
    if (content_append(d, s, cps, vals, n, &off))
        return 0; /* the general path reports the error */
    r->len += n;
    td_crdt_seq_adjust(s, l, n, n);
    me->vv += n;
    d->nops += n;
    if (d->observer)
        td_crdt_emit(d, TD_CRDT_EV_INSERT, s->obj, pos, n, NULL, 0);
    return 1;
}

static td_crdt_err insert_after_deleted(td_crdt_doc *d, td_seq *s, uint32_t obj, td_pos lp,
                                        const uint32_t *cps, const td_val *vals, uint32_t n);
static td_crdt_err local_insert_at(td_crdt_doc *d, uint32_t obj, uint32_t pos,
                                   const uint32_t *cps, const td_val *vals, uint32_t n);

td_crdt_err td_crdt_seq_place_after(td_crdt_doc *d, uint32_t obj, int start, td_id id)
{
    td_crdt_err e = td_crdt_full(d);
    if (e)
        return e;
    td_pos p;
    if (obj && !start && !td_crdt_seq_locate(d, obj, id, &p))
        return td_crdt_fail(d, TD_CRDT_ERR_ARG, "no such item in this sequence");
    d->place.obj = obj;
    d->place.start = start;
    d->place.id = id;
    return TD_CRDT_OK;
}

td_crdt_err td_crdt_seq_local_insert(td_crdt_doc *d, uint32_t obj, uint32_t pos,
                                const uint32_t *cps, const td_val *vals, uint32_t n)
{
    if (d->place.obj != obj)
        return local_insert_at(d, obj, pos, cps, vals, n);
    /* Placed: pos only says where the caller thinks it is. */
    td_pos lp;
    if (d->place.start)
        return local_insert_at(d, obj, 0, cps, vals, n);
    if (!td_crdt_seq_locate(d, obj, d->place.id, &lp))
        return td_crdt_fail(d, TD_CRDT_ERR_ARG, "no such item in this sequence");
    if (!lp.leaf->r[lp.ri].deleted)
        return local_insert_at(d, obj, td_crdt_seq_vis_index(&lp) + 1, cps, vals, n);
    return insert_after_deleted(d, seq_of(d, obj), obj, lp, cps, vals, n);
}

/* A local insert right after the deleted item at lp: the general path of
 * local_insert_at with lp given instead of found, and no cursor cache (its
 * positions are visible ones). */
static td_crdt_err insert_after_deleted(td_crdt_doc *d, td_seq *s, uint32_t obj, td_pos lp,
                                        const uint32_t *cps, const td_val *vals, uint32_t n)
{
    uint32_t self = d->self;
    uint32_t seq0 = d->agents[self].vv;
    const td_run *lr = &lp.leaf->r[lp.ri];
    td_id left = lr->id, right = {TD_NONE, 0};
    left.seq += lp.off;
    if (lp.off + 1 < lr->len) {
        right = left;
        right.seq++;
    } else {
        td_pos nx = lp;
        if (td_crdt_pos_next_run(&nx))
            right = nx.leaf->r[nx.ri].id;
    }
    s->cur.valid = 0;
    uint32_t off = 0, oldclen = s->clen;
    td_crdt_err e = TD_CRDT_OK;
    if (lp.off + 1 < lr->len)
        e = reserve_split_insert(d, s, lp, seq0);
    if (e || (e = content_append(d, s, cps, vals, n, &off)))
        return e;
    td_run run = {{self, seq0}, n, off, left, right, 0};
    td_pos at;
    if (lp.off + 1 < lr->len) {
        td_pos sp = lp;
        sp.off = lp.off + 1;
        e = td_crdt_seq_split(d, s, &sp);
        if (!e)
            e = td_crdt_seq_insert_run(d, s, sp.leaf, sp.ri, &run, &at);
    } else {
        e = td_crdt_seq_insert_run(d, s, lp.leaf, lp.ri + 1, &run, &at);
    }
    if (e) {
        s->clen = oldclen;
        return e;
    }
    d->agents[self].vv += n;
    d->nops += n;
    if (d->observer)
        td_crdt_emit(d, TD_CRDT_EV_INSERT, obj, td_crdt_seq_vis_index(&at), n, NULL, 0);
    return TD_CRDT_OK;
}

static td_crdt_err local_insert_at(td_crdt_doc *d, uint32_t obj, uint32_t pos,
                                   const uint32_t *cps, const td_val *vals, uint32_t n)
{
    td_seq *s = seq_of(d, obj);
    uint32_t self = d->self;
    uint32_t seq0 = d->agents[self].vv;
    if (typing_on(d, s, pos, cps, vals, n))
        return TD_CRDT_OK;
    td_id left = {TD_NONE, 0}, right = {TD_NONE, 0};
    td_pos lp = {0};
    td_run *lr = NULL;
    if (pos > 0) {
        lp = find_visible(s, pos - 1);
        lr = &lp.leaf->r[lp.ri];
        left = lr->id;
        left.seq += lp.off;
        if (lp.off + 1 < lr->len) {
            right = left;
            right.seq++;
        } else {
            td_pos nx = lp;
            if (td_crdt_pos_next_run(&nx))
                right = nx.leaf->r[nx.ri].id;
        }
        /* Typing on: the run grows in place. */
        if (lp.off + 1 == lr->len && lr->id.agent == self && lr->id.seq + lr->len == seq0 &&
            lr->content != TD_NO_CONTENT && lr->content + lr->len == s->clen &&
            id_eq(lr->right, right)) {
            uint32_t off = 0;
            td_crdt_err e = content_append(d, s, cps, vals, n, &off);
            if (e)
                return e;
            lr->len += n;
            td_crdt_seq_adjust(s, lp.leaf, n, n);
            d->agents[self].vv += n;
            d->nops += n;
            if (d->observer)
                td_crdt_emit(d, TD_CRDT_EV_INSERT, obj, pos, n, NULL, 0);
            /* the run starts at pos-1-lp.off; lp.off was its last item */
            cache_set(s, lp.leaf, lp.ri, pos - 1 - lp.off);
            return TD_CRDT_OK;
        }
    } else if (s->first && s->first->n) {
        right = s->first->r[0].id;
    }
    uint32_t off = 0, oldclen = s->clen;
    td_crdt_err e = TD_CRDT_OK;
    if (pos > 0 && lp.off + 1 < lr->len)
        e = reserve_split_insert(d, s, lp, seq0);
    if (e || (e = content_append(d, s, cps, vals, n, &off)))
        return e;
    td_run run = {{self, seq0}, n, off, left, right, 0};
    td_pos at;
    if (pos > 0 && lp.off + 1 < lr->len) {
        td_pos sp = lp;
        sp.off = lp.off + 1;
        e = td_crdt_seq_split(d, s, &sp);
        if (!e)
            e = td_crdt_seq_insert_run(d, s, sp.leaf, sp.ri, &run, &at);
    } else if (pos > 0) {
        e = td_crdt_seq_insert_run(d, s, lp.leaf, lp.ri + 1, &run, &at);
    } else {
        e = td_crdt_seq_insert_run(d, s, s->first, 0, &run, &at);
    }
    if (e) {
        s->clen = oldclen;
        return e;
    }
    d->agents[self].vv += n;
    d->nops += n;
    if (d->observer)
        td_crdt_emit(d, TD_CRDT_EV_INSERT, obj, pos, n, NULL, 0);
    cache_set(s, at.leaf, at.ri, pos);
    return TD_CRDT_OK;
}

/* Makes items [seq, seq+k) of run p one run of their own and marks them
 * deleted; merges with deleted neighbours. Returns the run's place. */
static td_crdt_err delete_piece(td_crdt_doc *d, td_seq *s, td_pos p, uint32_t k, td_pos *out)
{
    td_id id = p.leaf->r[p.ri].id;
    id.seq += p.off;
    td_crdt_err e = td_crdt_seq_split(d, s, &p);
    if (e)
        return e;
    if (k < p.leaf->r[p.ri].len) {
        td_pos q = p;
        q.off = k;
        if ((e = td_crdt_seq_split(d, s, &q)))
            return e;
        if (!td_crdt_seq_locate(d, s->obj, id, &p)) /* the split may have moved it */
            return td_crdt_fail(d, TD_CRDT_ERR_INVALID_OP, "index lost a run");
    }
    if (d->observer)
        td_crdt_emit(d, TD_CRDT_EV_DELETE, s->obj, td_crdt_seq_vis_index(&p), k, NULL, 0);
    p.leaf->r[p.ri].deleted = 1;
    td_crdt_seq_adjust(s, p.leaf, 0, -(int64_t)k);
    td_crdt_seq_try_merge(d, p.leaf, p.ri);
    if (p.ri > 0 && td_crdt_seq_try_merge(d, p.leaf, p.ri - 1))
        p.ri--;
    *out = p;
    return TD_CRDT_OK;
}

/* Deleting the item at a boundary between a visible run and its deleted
 * continuation (backspace after a backspace, delete after a delete) moves
 * one item across the boundary: no split, no new run, no merge. */
static int delete_by_shift(td_crdt_doc *d, td_seq *s, td_pos p, td_pos *at)
{
    td_leaf *l = p.leaf;
    td_run *r = &l->r[p.ri];
    int is_list = d->objs[s->obj - 1]->kind == TD_CRDT_LIST;
    if (r->len < 2)
        return 0;
    if (p.off == r->len - 1 && p.ri + 1 < l->n) { /* backspace */
        td_run *t = &l->r[p.ri + 1];
        if (!t->deleted || !td_crdt_run_continues(r, t))
            return 0;
        int contiguous = t->content != TD_NO_CONTENT && t->content == r->content + r->len;
        if (is_list && !contiguous)
            return 0;
        r->len--;
        td_crdt_idx_rekey(&d->agents[t->id.agent].idx, t->id.seq, t->id.seq - 1);
        t->id.seq--;
        t->len++;
        t->left = td_crdt_run_last(r);
        t->content = contiguous ? t->content - 1 : TD_NO_CONTENT;
        *at = (td_pos){l, p.ri + 1, 0};
    } else if (p.off == 0 && p.ri > 0) { /* delete key */
        td_run *t = &l->r[p.ri - 1];
        if (!t->deleted || !td_crdt_run_continues(t, r))
            return 0;
        int contiguous = t->content != TD_NO_CONTENT && t->content + t->len == r->content;
        if (is_list && !contiguous)
            return 0;
        t->len++;
        if (!contiguous)
            t->content = TD_NO_CONTENT;
        td_crdt_idx_rekey(&d->agents[r->id.agent].idx, r->id.seq, r->id.seq + 1);
        r->left = r->id;
        r->id.seq++;
        r->len--;
        r->content++;
        *at = (td_pos){l, p.ri - 1, 0};
    } else {
        return 0;
    }
    td_crdt_seq_adjust(s, l, 0, -1);
    return 1;
}

/* A delete splits at most twice: where it starts inside a run and where it
 * ends inside one. Reserves both splits (their leaves and new keys start[]
 * / end[]) unless the only one is at the start: that one is the delete's
 * first change, and fails alone. */
static td_crdt_err reserve_splits(td_crdt_doc *d, td_seq *s, const td_pos *start,
                                  const td_pos *end)
{
    const td_leaf *lv[2];
    td_id keys[2];
    uint32_t k = 0;
    if (start) {
        const td_run *r = &start->leaf->r[start->ri];
        lv[k] = start->leaf;
        keys[k++] = (td_id){r->id.agent, r->id.seq + start->off};
    }
    if (end) {
        const td_run *r = &end->leaf->r[end->ri];
        lv[k] = end->leaf;
        keys[k++] = (td_id){r->id.agent, r->id.seq + end->off};
    }
    return end ? td_crdt_seq_reserve(d, s, lv, keys, k) : TD_CRDT_OK;
}

/* Sets aside what a local delete of n items from p can allocate, before it
 * marks any: a failure after the first piece would leave items deleted
 * that no delete op counts. Each visible run it touches is a piece with a
 * delete record of its own (at most). */
static td_crdt_err reserve_delete(td_crdt_doc *d, td_seq *s, td_pos p, uint32_t n)
{
    uint32_t pieces = 1, avail = p.leaf->r[p.ri].len - p.off;
    td_pos q = p;
    while (n > avail) {
        n -= avail;
        do {
            if (!td_crdt_pos_next_run(&q))
                return td_crdt_fail(d, TD_CRDT_ERR_INVALID_OP, "delete past the end");
        } while (q.leaf->r[q.ri].deleted);
        pieces++;
        avail = q.leaf->r[q.ri].len;
    }
    td_crdt_err e = td_crdt_delrec_reserve(d, d->self, pieces);
    if (e)
        return e;
    q.off += n; /* the first item after the delete */
    return reserve_splits(d, s, p.off ? &p : NULL, q.off < q.leaf->r[q.ri].len ? &q : NULL);
}

td_crdt_err td_crdt_seq_local_delete(td_crdt_doc *d, uint32_t obj, uint32_t pos, uint32_t n)
{
    td_seq *s = seq_of(d, obj);
    uint32_t self = d->self;
    td_pos p = find_visible(s, pos);
    td_crdt_err re = reserve_delete(d, s, p, n);
    if (re)
        return re;
    for (;;) {
        td_run *r = &p.leaf->r[p.ri];
        uint32_t k = r->len - p.off < n ? r->len - p.off : n;
        td_delrec rec = {d->agents[self].vv, k, obj, r->id, 0};
        rec.target.seq += p.off;
        td_pos at;
        td_crdt_err e = TD_CRDT_OK;
        if (k == 1 && delete_by_shift(d, s, p, &at)) {
            if (d->observer)
                td_crdt_emit(d, TD_CRDT_EV_DELETE, obj, pos, 1, NULL, 0);
        } else {
            e = delete_piece(d, s, p, k, &at);
        }
        if (e)
            return e;
        if ((e = td_crdt_delrec_add(d, self, &rec)))
            return e;
        d->agents[self].vv += k;
        d->nops += k;
        n -= k;
        cache_set(s, at.leaf, at.ri, pos);
        if (n == 0)
            return TD_CRDT_OK;
        p = find_visible(s, pos);
    }
}

td_crdt_err td_crdt_seq_delete_ids(td_crdt_doc *d, uint32_t obj, uint32_t ta, uint32_t lo,
                              uint32_t hi)
{
    td_seq *s = seq_of(d, obj);
    s->cur.valid = 0;
    /* the splits at both ends first: a failing second must not leave the
     * items between them deleted */
    td_pos ps, pe;
    if (!td_crdt_seq_locate(d, obj, (td_id){ta, lo}, &ps) ||
        !td_crdt_seq_locate(d, obj, (td_id){ta, hi}, &pe))
        return td_crdt_fail(d, TD_CRDT_ERR_INVALID_OP, "delete of an unknown item");
    pe.off++;
    int split_start = ps.off && !ps.leaf->r[ps.ri].deleted;
    int split_end = pe.off < pe.leaf->r[pe.ri].len && !pe.leaf->r[pe.ri].deleted;
    td_crdt_err re = reserve_splits(d, s, split_start ? &ps : NULL, split_end ? &pe : NULL);
    if (re)
        return re;
    uint64_t seq = lo;
    while (seq <= hi) {
        td_pos p;
        if (!td_crdt_seq_locate(d, obj, (td_id){ta, (uint32_t)seq}, &p))
            return td_crdt_fail(d, TD_CRDT_ERR_INVALID_OP, "delete of an unknown item");
        td_run *r = &p.leaf->r[p.ri];
        uint32_t k = r->len - p.off;
        if (k > hi - seq + 1)
            k = (uint32_t)(hi - seq + 1);
        if (!r->deleted) {
            td_pos at;
            td_crdt_err e = delete_piece(d, s, p, k, &at);
            if (e)
                return e;
        }
        seq += k;
    }
    s->cur.valid = 0;
    return TD_CRDT_OK;
}

int td_crdt_seq_has_range(td_crdt_doc *d, uint32_t obj, uint32_t agent, uint32_t lo, uint32_t hi)
{
    uint64_t seq = lo;
    while (seq <= hi) {
        td_pos p;
        if (!td_crdt_seq_locate(d, obj, (td_id){agent, (uint32_t)seq}, &p))
            return 0;
        seq += p.leaf->r[p.ri].len - p.off;
    }
    return 1;
}

int td_crdt_seq_range_deleted(td_crdt_doc *d, uint32_t obj, uint32_t agent, uint32_t lo,
                         uint32_t hi)
{
    uint64_t seq = lo;
    while (seq <= hi) {
        td_pos p;
        if (!td_crdt_seq_locate(d, obj, (td_id){agent, (uint32_t)seq}, &p) ||
            !p.leaf->r[p.ri].deleted)
            return 0;
        seq += p.leaf->r[p.ri].len - p.off;
    }
    return 1;
}

/* Document index of an origin; -1 for the start, total for the end. */
static int origin_index(td_crdt_doc *d, td_seq *s, td_id id, int is_right, int64_t *out)
{
    if (id.agent == TD_NONE) {
        *out = is_right ? (int64_t)s->total : -1;
        return 1;
    }
    td_pos p;
    if (!td_crdt_seq_locate(d, s->obj, id, &p))
        return 0;
    *out = td_crdt_seq_index(&p);
    return 1;
}

static int same_run(const td_pos *a, const td_pos *b)
{
    return a->leaf == b->leaf && a->ri == b->ri;
}

/* Where the new run goes: before run *dest, or at the end when *at_end.
 * A right origin that is not after the left one (only a malformed op names
 * such a pair) is read as "the end": the relative order of two items is the
 * same on every replica, so every replica rewrites the op alike, and the
 * stored run then keeps the invariant left < run < right. */
static td_crdt_err yata_place(td_crdt_doc *d, td_seq *s, uint64_t agent_id,
                              td_id left, td_id *rightp, td_pos cur, int end,
                              td_pos *dest, int *at_end)
{
    td_id right = *rightp;
    td_pos rp = {0};
    int have_right = right.agent != TD_NONE;
    *dest = cur;
    *at_end = end;
    if (end) {
        if (have_right)
            rightp->agent = TD_NONE; /* nothing is after the left origin: see above */
        return TD_CRDT_OK;
    }
    if (have_right) {
        /* The caller split the runs so that right starts one: when the run
         * after the left origin starts with it, nothing is concurrent
         * between the origins (the usual case), and right needs no lookup. */
        const td_run *next = &cur.leaf->r[cur.ri];
        if (next->id.agent == right.agent && next->id.seq == right.seq)
            return TD_CRDT_OK;
        if (!td_crdt_seq_locate(d, s->obj, right, &rp))
            return td_crdt_fail(d, TD_CRDT_ERR_INVALID_OP, "right origin not found");
        if (same_run(&cur, &rp))
            return TD_CRDT_OK;
    }
    int64_t lidx, ridx;
    if (!origin_index(d, s, left, 0, &lidx) || !origin_index(d, s, right, 1, &ridx))
        return td_crdt_fail(d, TD_CRDT_ERR_INVALID_OP, "origin not found");
    if (ridx <= lidx) {
        right.agent = TD_NONE;
        *rightp = right;
        have_right = 0;
        ridx = s->total;
    }
    int scanning = 0;
    for (;;) {
        if (!scanning) {
            *dest = cur;
            *at_end = end;
        }
        if (end || (have_right && same_run(&cur, &rp)))
            break;
        const td_run *o = &cur.leaf->r[cur.ri];
        int64_t oleft, oright;
        if (!origin_index(d, s, o->left, 0, &oleft) || !origin_index(d, s, o->right, 1, &oright))
            return td_crdt_fail(d, TD_CRDT_ERR_INVALID_OP, "origin not found");
        if (oleft < lidx)
            break;
        if (oleft == lidx) {
            if (oright == ridx && agent_id < d->agents[o->id.agent].id)
                break;
            scanning = oright < ridx;
        }
        end = !td_crdt_pos_next_run(&cur);
    }
    return TD_CRDT_OK;
}

td_crdt_err td_crdt_seq_integrate(td_crdt_doc *d, uint32_t obj, td_id id, uint32_t n,
                             td_id left, td_id right, int deleted,
                             const uint32_t *cps, const td_val *vals)
{
    td_seq *s = seq_of(d, obj);
    s->cur.valid = 0;
    td_crdt_err e;
    td_pos p;
    /* Split so that right starts a run and left ends one. */
    if (right.agent != TD_NONE) {
        if (!td_crdt_seq_locate(d, obj, right, &p))
            return td_crdt_fail(d, TD_CRDT_ERR_INVALID_OP, "right origin not found");
        if ((e = td_crdt_seq_split(d, s, &p)))
            return e;
    }
    /* cur: the run right after the left origin (the first run without
     * one), where the scan for concurrent runs starts; end: there is none. */
    td_pos cur;
    int end;
    if (left.agent != TD_NONE) {
        if (!td_crdt_seq_locate(d, obj, left, &p))
            return td_crdt_fail(d, TD_CRDT_ERR_INVALID_OP, "left origin not found");
        if (p.off + 1 < p.leaf->r[p.ri].len) {
            p.off++;
            if ((e = td_crdt_seq_split(d, s, &p)))
                return e;
            cur = p; /* the split-off rest of left's run */
            end = 0;
        } else {
            cur = p;
            end = !td_crdt_pos_next_run(&cur);
        }
    } else {
        cur = (td_pos){s->first, 0, 0};
        end = !(s->first && s->first->n);
    }
    td_pos dest = {0};
    int at_end = 1;
    if ((e = yata_place(d, s, d->agents[id.agent].id, left, &right, cur, end, &dest, &at_end)))
        return e;
    uint32_t off = TD_NO_CONTENT, oldclen = s->clen;
    /* deleted text arrives without content; list values always come */
    if ((!deleted || vals) && (e = content_append(d, s, cps, vals, n, &off)))
        return e;
    td_run run = {id, n, off, left, right, (uint8_t)(deleted != 0)};
    td_pos at;
    e = at_end ? td_crdt_seq_insert_run(d, s, NULL, 0, &run, &at)
               : td_crdt_seq_insert_run(d, s, dest.leaf, dest.ri, &run, &at);
    if (e) {
        s->clen = oldclen;
        return e;
    }
    if (d->observer && !deleted)
        td_crdt_emit(d, TD_CRDT_EV_INSERT, obj, td_crdt_seq_vis_index(&at), n, NULL, 0);
    if (at.ri > 0)
        td_crdt_seq_try_merge(d, at.leaf, at.ri - 1);
    s->cur.valid = 0;
    return TD_CRDT_OK;
}
