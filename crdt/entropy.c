/*
 * entropy.c -- the byte coder of snapshot version 2: one block per column,
 * stored raw or with a static canonical Huffman code over bytes, either one
 * code (order 0) or one code per previous byte (order 1). Layout and rules
 * in docs/FORMAT.md section 5.1.
 *
 * Written here rather than borrowed (zlib) because the wasm build has libc
 * only, and because every replica must write the same bytes: code lengths
 * come from counts by a fixed algorithm with fixed tie-breaking, codes are
 * canonical, and the mode is the smallest of the three (ties: the lower
 * mode), so the output is a function of the input bytes alone.
 *
 * Codes are at most HUF_MAX bits so that decoding is one table lookup per
 * byte; every code is at least 1 bit (a block with one symbol costs a bit
 * per byte), which bounds a block's decoded size by 8 times its coded size
 * -- a loader never allocates more than the input can prove.
 */
#include "crdt_internal.h"

#define HUF_MAX 11
#define HUF_TAB (1u << HUF_MAX)
#define O1_MIN 256 /* shortest column order 1 is tried on */
enum { EC_RAW = 0, EC_O0 = 1, EC_O1 = 2 };

/* Code lengths (1..HUF_MAX, 0 for an unused symbol) for the counts cnt.
 * Huffman's algorithm with two queues over the symbols sorted by (count,
 * symbol), a leaf taken before an inner node of equal weight; when the
 * longest code exceeds HUF_MAX the counts are halved (kept nonzero) and the
 * tree is built again. Returns the number of used symbols. */
static uint32_t huf_lengths(const uint32_t *cnt, uint8_t *len)
{
    uint16_t sym[256];
    uint64_t w[511];
    uint16_t parent[511];
    uint8_t depth[511];
    uint32_t c[256];
    uint32_t n = 0;
    memset(len, 0, 256);
    for (uint32_t i = 0; i < 256; i++)
        if ((c[i] = cnt[i]) != 0)
            sym[n++] = (uint16_t)i;
    if (n == 1)
        len[sym[0]] = 1;
    if (n < 2)
        return n;
    for (;;) {
        for (uint32_t i = 0, k = 0; i < 256; i++) /* ties by symbol, every round */
            if (c[i])
                sym[k++] = (uint16_t)i;
        /* insertion sort by (count, symbol): n <= 256, stable on symbols */
        for (uint32_t i = 1; i < n; i++) {
            uint16_t t = sym[i];
            uint32_t j = i;
            while (j > 0 && c[sym[j - 1]] > c[t]) {
                sym[j] = sym[j - 1];
                j--;
            }
            sym[j] = t;
        }
        for (uint32_t i = 0; i < n; i++)
            w[i] = c[sym[i]];
        uint32_t leaf = 0, inner = n, next = n;
        while (next < 2 * n - 1) {
            uint32_t pick[2];
            for (int k = 0; k < 2; k++)
                pick[k] = (leaf < n && (inner == next || w[leaf] <= w[inner])) ? leaf++ : inner++;
            w[next] = w[pick[0]] + w[pick[1]];
            parent[pick[0]] = parent[pick[1]] = (uint16_t)next;
            next++;
        }
        uint32_t root = 2 * n - 2, longest = 0;
        depth[root] = 0;
        for (uint32_t i = root; i-- > 0;) {
            depth[i] = (uint8_t)(depth[parent[i]] + 1);
            if (i < n && depth[i] > longest)
                longest = depth[i];
        }
        if (longest <= HUF_MAX) {
            for (uint32_t i = 0; i < n; i++)
                len[sym[i]] = depth[i];
            return n;
        }
        for (uint32_t i = 0; i < n; i++)
            c[sym[i]] = (c[sym[i]] >> 1) | 1;
    }
}

/* Canonical codes: by length, then symbol (DEFLATE's construction). */
static void huf_codes(const uint8_t *len, uint16_t *code)
{
    uint32_t count[HUF_MAX + 1] = {0}, next[HUF_MAX + 1];
    for (uint32_t i = 0; i < 256; i++)
        count[len[i]]++;
    count[0] = 0;
    uint32_t c = 0;
    for (uint32_t l = 1; l <= HUF_MAX; l++) {
        c = (c + count[l - 1]) << 1;
        next[l] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        if (len[i])
            code[i] = (uint16_t)next[len[i]]++;
}

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* A code table: used symbols ascending, each as varint
 * (gap from the previous symbol) << 4 | length. */
static size_t table_size(const uint8_t *len)
{
    size_t sz = 0;
    uint32_t nsym = 0, prev = 0;
    for (uint32_t i = 0; i < 256; i++)
        if (len[i]) {
            sz += varint_size((uint64_t)(i - prev) << 4 | len[i]);
            prev = i + 1;
            nsym++;
        }
    return sz + varint_size(nsym);
}

static void table_put(td_buf *b, const uint8_t *len)
{
    uint32_t nsym = 0, prev = 0;
    for (uint32_t i = 0; i < 256; i++)
        nsym += len[i] != 0;
    td_crdt_wb_varint(b, nsym);
    for (uint32_t i = 0; i < 256; i++)
        if (len[i]) {
            td_crdt_wb_varint(b, (uint64_t)(i - prev) << 4 | len[i]);
            prev = i + 1;
        }
}

typedef struct bitw {
    td_buf *b;
    uint64_t acc;
    uint32_t nbits;
} bitw;

static void bits_put(bitw *w, uint32_t code, uint32_t n)
{
    w->acc = w->acc << n | code;
    w->nbits += n;
    while (w->nbits >= 8) {
        w->nbits -= 8;
        td_wb_u8(w->b, (uint8_t)(w->acc >> w->nbits));
    }
}

static void bits_flush(bitw *w)
{
    if (w->nbits)
        td_wb_u8(w->b, (uint8_t)(w->acc << (8 - w->nbits)));
    w->nbits = 0;
}

/* Coded bits for counts and lengths of nctx contexts. */
static uint64_t coded_bits(const uint32_t *cnt, const uint8_t *len, uint32_t nctx)
{
    uint64_t bits = 0;
    for (uint32_t i = 0; i < nctx * 256u; i++)
        bits += (uint64_t)cnt[i] * len[i];
    return bits;
}

void td_crdt_ent_put(td_buf *out, const uint8_t *p, size_t n)
{
    td_crdt_wb_varint(out, n);
    if (!n)
        return;
    /* An order-0 block takes at least 5 bytes (mode, table count, one
     * entry, size, a byte of bits): raw wins every column this short. */
    if (n <= 4) {
        td_crdt_wb_u8(out, EC_RAW);
        td_crdt_wb_bytes(out, p, n);
        return;
    }
    /* Counts and lengths in slots of 256: slot 0 order 0, slot[c] the
     * context c of order 1; only contexts that occur get a slot, so that a
     * short column costs a few slots rather than 257. */
    uint16_t slot[256] = {0};
    uint32_t nslot = 1;
    if (n >= O1_MIN)
        slot[0] = (uint16_t)nslot++; /* the first byte's context */
    for (size_t i = 0; n >= O1_MIN && i + 1 < n; i++)
        if (!slot[p[i]])
            slot[p[i]] = (uint16_t)nslot++;
    uint32_t *cnt = td_crdt_mem(out->d, NULL, (size_t)nslot * 256 * sizeof *cnt);
    uint8_t *len = td_crdt_mem(out->d, NULL, (size_t)nslot * 256);
    if (!cnt || !len) {
        out->oom = 1;
        goto done;
    }
    memset(cnt, 0, (size_t)nslot * 256 * sizeof *cnt);
    uint8_t prev = 0;
    for (size_t i = 0; i < n; i++)
        cnt[p[i]]++;
    for (size_t i = 0; n >= O1_MIN && i < n; i++) {
        cnt[256u * slot[prev] + p[i]]++;
        prev = p[i];
    }
    huf_lengths(cnt, len);
    uint64_t b0 = coded_bits(cnt, len, 1);
    size_t sz0 = 1 + table_size(len) + varint_size((b0 + 7) / 8) + (b0 + 7) / 8;
    /* Order 1 pays for a table per context only on long columns; below
     * O1_MIN bytes it is not tried (a short column's many small tables cost
     * more time than the bytes they could save). */
    uint32_t nctx = 0;
    size_t sz1 = SIZE_MAX, tabs1 = 0;
    uint64_t b1 = 0;
    if (n >= O1_MIN) {
        sz1 = 1;
        for (uint32_t c = 0, pc = 0; c < 256; c++)
            if (slot[c] && huf_lengths(cnt + 256u * slot[c], len + 256u * slot[c])) {
                tabs1 += varint_size(c - pc) + table_size(len + 256u * slot[c]);
                pc = c + 1;
                nctx++;
            }
        b1 = coded_bits(cnt + 256, len + 256, nslot - 1);
        sz1 += varint_size(nctx) + tabs1 + varint_size((b1 + 7) / 8) + (b1 + 7) / 8;
    }
    size_t szraw = 1 + n;
    int mode = szraw <= sz0 && szraw <= sz1 ? EC_RAW : sz0 <= sz1 ? EC_O0 : EC_O1;
    td_crdt_wb_u8(out, (uint8_t)mode);
    if (mode == EC_RAW) {
        td_crdt_wb_bytes(out, p, n);
        goto done;
    }
    uint16_t *code = (uint16_t *)cnt; /* the counts are no longer needed */
    if (mode == EC_O0) {
        table_put(out, len);
        huf_codes(len, code);
        td_crdt_wb_varint(out, (b0 + 7) / 8);
    } else {
        td_crdt_wb_varint(out, nctx);
        for (uint32_t c = 0, pc = 0; c < 256; c++) {
            if (!slot[c])
                continue;
            const uint8_t *l = len + 256u * slot[c];
            uint32_t used = 0;
            for (uint32_t k = 0; k < 256 && !used; k++)
                used = l[k] != 0;
            if (!used)
                continue; /* a context only the last byte makes */
            td_crdt_wb_varint(out, c - pc);
            table_put(out, l);
            huf_codes(l, code + 256u * slot[c]);
            pc = c + 1;
        }
        td_crdt_wb_varint(out, (b1 + 7) / 8);
    }
    if (!td_crdt_wb_reserve(out, (mode == EC_O0 ? b0 : b1) / 8 + 1))
        goto done;
    bitw w = {out, 0, 0};
    prev = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = mode == EC_O0 ? p[i] : 256u * slot[prev] + p[i];
        bits_put(&w, code[k], len[k]);
        prev = p[i];
    }
    bits_flush(&w);
done:
    td_crdt_memfree(out->d, cnt);
    td_crdt_memfree(out->d, len);
}

/* ---- decoding ------------------------------------------------------------ */

/* Reads a code table and fills the decode table tab (HUF_TAB entries:
 * symbol | length << 8, 0 where no code starts). NULL or why not. */
static const char *table_get(td_rd *r, uint16_t *tab)
{
    uint8_t len[256];
    memset(len, 0, sizeof len);
    uint32_t nsym = td_crdt_rd_u32(r, 256), sym = 0;
    if (r->bad || nsym == 0)
        return "code table size";
    uint32_t kraft = 0;
    for (uint32_t i = 0; i < nsym; i++) {
        uint64_t v = td_crdt_rd_varint(r);
        uint32_t l = (uint32_t)(v & 15);
        if (r->bad || v >> 4 > 255 || sym + (v >> 4) > 255 || l == 0 || l > HUF_MAX)
            return "code table entry";
        sym += (uint32_t)(v >> 4);
        len[sym++] = (uint8_t)l;
        kraft += HUF_TAB >> l;
        if (kraft > HUF_TAB)
            return "code table over-subscribed";
    }
    uint16_t code[256];
    huf_codes(len, code);
    memset(tab, 0, HUF_TAB * sizeof *tab);
    for (uint32_t i = 0; i < 256; i++)
        if (len[i]) {
            uint32_t first = (uint32_t)code[i] << (HUF_MAX - len[i]);
            uint16_t e = (uint16_t)(i | (uint32_t)len[i] << 8);
            for (uint32_t k = 0; k < (HUF_TAB >> len[i]); k++)
                tab[first + k] = e;
        }
    return NULL;
}

static uint64_t load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Decodes n bytes of nb coded bytes with the tables of each context
 * (ctx[prev] for order 1, ctx[0] always for order 0). The bit buffer is
 * refilled 8 bytes at a time where the input allows (OR-ing again bytes
 * already in it changes nothing), then holds at least 56 bits: four codes. */
static const char *huf_decode(const uint8_t *in, size_t nb, const uint16_t *const *ctx,
                              int order1, uint8_t *out, size_t n)
{
    const uint8_t *p = in, *end = in + nb;
    uint64_t acc = 0;  /* bits, most significant first */
    uint32_t have = 0; /* valid bits at the top of acc */
    uint64_t used = 0; /* bits consumed */
    const uint16_t *tab = ctx[0];
    for (size_t i = 0; i < n;) {
        if (end - p >= 8) {
            acc |= load_be64(p) >> have;
            p += (63 - have) >> 3;
            have |= 56;
        } else {
            while (have <= 56) { /* past the end, zeros: caught by the count below */
                acc |= (uint64_t)(p < end ? *p++ : 0) << (56 - have);
                have += 8;
            }
        }
        for (int k = 0; k < 4 && i < n; k++, i++) {
            uint16_t e = tab[acc >> (64 - HUF_MAX)];
            uint32_t l = e >> 8;
            if (!l)
                return "no such code";
            acc <<= l;
            have -= l;
            used += l;
            out[i] = (uint8_t)e;
            if (order1)
                tab = ctx[(uint8_t)e];
        }
    }
    if (used > (uint64_t)nb * 8 || (used + 7) / 8 != nb)
        return "coded length";
    if (nb && (in[nb - 1] & ((1u << (nb * 8 - used)) - 1)))
        return "padding bits";
    return NULL;
}

td_crdt_err td_crdt_ent_get(td_crdt_doc *d, td_rd *r, uint8_t **out, size_t *outlen,
                            const char **why)
{
    static const uint16_t none[HUF_TAB]; /* a context with no code */
    *out = NULL;
    *outlen = 0;
    uint64_t n = td_crdt_rd_varint(r);
    if (r->bad || n > 0x7fffffff)
        return *why = "column length", TD_CRDT_ERR_DECODE;
    if (!n)
        return TD_CRDT_OK;
    uint8_t mode = td_crdt_rd_u8(r);
    if (r->bad || mode > EC_O1)
        return *why = "column mode", TD_CRDT_ERR_DECODE;
    if (mode == EC_RAW) {
        const uint8_t *p = td_crdt_rd_bytes(r, n);
        if (!p)
            return *why = "column truncated", TD_CRDT_ERR_DECODE;
        if (!(*out = td_crdt_mem(d, NULL, n)))
            return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
        memcpy(*out, p, n);
        *outlen = n;
        return TD_CRDT_OK;
    }
    const uint16_t *ctx[256];
    uint32_t nctx = 1;
    if (mode == EC_O1) {
        nctx = td_crdt_rd_u32(r, 256);
        if (r->bad || nctx == 0)
            return *why = "column contexts", TD_CRDT_ERR_DECODE;
    }
    /* each table takes at least 2 bytes: no allocation beyond the input */
    if (nctx > td_crdt_rd_left(r) / 2)
        return *why = "column contexts", TD_CRDT_ERR_DECODE;
    uint16_t *tabs = td_crdt_mem(d, NULL, (size_t)nctx * HUF_TAB * sizeof *tabs);
    if (!tabs)
        return td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
    const char *bad = NULL;
    for (uint32_t i = 0; i < 256; i++)
        ctx[i] = none;
    for (uint32_t k = 0, c = 0; k < nctx && !bad; k++) {
        if (mode == EC_O1) {
            uint32_t gap = td_crdt_rd_u32(r, 255);
            if (r->bad || c + gap > 255) {
                bad = "column context";
                break;
            }
            c += gap;
        }
        bad = table_get(r, tabs + (size_t)k * HUF_TAB);
        ctx[c++] = tabs + (size_t)k * HUF_TAB;
    }
    uint64_t nb = bad ? 0 : td_crdt_rd_varint(r);
    const uint8_t *bits = bad ? NULL : td_crdt_rd_bytes(r, nb);
    if (!bad && (!bits || n > nb * 8))
        bad = "column truncated";
    td_crdt_err e = TD_CRDT_OK;
    if (!bad) {
        if (!(*out = td_crdt_mem(d, NULL, n)))
            e = td_crdt_fail(d, TD_CRDT_ERR_NOMEM, "out of memory");
        else if (!(bad = huf_decode(bits, nb, ctx, mode == EC_O1, *out, n)))
            *outlen = n;
    }
    td_crdt_memfree(d, tabs);
    if (bad || e) {
        td_crdt_memfree(d, *out);
        *out = NULL;
        if (bad) {
            *why = bad;
            e = TD_CRDT_ERR_DECODE;
        }
    }
    return e;
}
