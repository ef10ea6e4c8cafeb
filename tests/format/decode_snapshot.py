#!/usr/bin/env python3
"""decode_snapshot.py -- a tandem snapshot decoder written from docs/FORMAT.md alone.

It shares no code with crdt/: it exists to prove that the format document is
complete and exact. It reads a whole snapshot, validates what it reads (the
rules of FORMAT.md sections 4 and 5 (snapshot versions 1 and 2), including the history checks of 4.6 except the
final YATA replay of the stored order), and prints

    decode_snapshot.py SNAP --text NAME   the visible content of root text NAME
    decode_snapshot.py SNAP --json        the document as JSON (td_crdt_to_json's shape)
    decode_snapshot.py SNAP --stats       counts of what it decoded

Exit status: 0 ok, 1 malformed snapshot (the reason on stderr), 2 usage.
Python 3 standard library only.
"""
import argparse
import bisect
import json
import math
import struct
import sys

MAX_SEQ = 0x7FFFFFFF
MAX_STR = 0x7FFFFFFF
MAX_NAME = 255
MAX_KEY = 65535
MAX_LAMPORT = 1 << 62

TEXT, LIST, MAP = 0, 1, 2           # kinds, as root tags
KIND_NAME = {TEXT: "text", LIST: "list", MAP: "map"}
V_NULL, V_FALSE, V_TRUE, V_INT, V_FLOAT, V_STR, V_TEXT, V_LIST, V_MAP, V_DELETED = range(10)


# Version 2 columns, in stored order (FORMAT.md 5); version 1 reads every
# column from the one byte string.
COLUMNS = ("main", "text", "rflag", "rid", "rlen", "rorig", "dflag", "dgap", "dlen", "dtgt")
HUF_MAX = 11


class Malformed(Exception):
    pass


class UnknownVersion(Malformed):
    pass


def need(cond, why):
    if not cond:
        raise Malformed(why)


class Reader:
    def __init__(self, data):
        self.b = data
        self.p = 0

    def left(self):
        return len(self.b) - self.p

    def u8(self):
        need(self.p < len(self.b), "truncated")
        v = self.b[self.p]
        self.p += 1
        return v

    def raw(self, n):
        need(n <= self.left(), "truncated")
        v = self.b[self.p:self.p + n]
        self.p += n
        return v

    def u64le(self):
        return struct.unpack("<Q", self.raw(8))[0]

    def varint(self):
        v = 0
        for i in range(10):
            c = self.u8()
            if i == 9:
                need(c <= 1, "varint past 64 bits")
            v |= (c & 0x7F) << (7 * i)
            if not c & 0x80:
                need(c != 0 or i == 0, "varint not minimal")
                return v
        raise Malformed("varint longer than 10 bytes")

    def u32(self, mx):
        v = self.varint()
        need(v <= mx, "value %d above its bound %d" % (v, mx))
        return v

    def zigzag(self):
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def utf8(self, n):
        b = self.raw(n)
        try:
            return b.decode("utf-8", "strict")  # rejects overlongs, surrogates, > U+10FFFF
        except UnicodeDecodeError as e:
            raise Malformed("invalid UTF-8: %s" % e)

    def string(self, lo, hi):
        n = self.varint()
        need(lo <= n <= hi, "string length %d outside %d..%d" % (n, lo, hi))
        return self.utf8(n)


def read_code_table(r):
    """A code table (FORMAT.md 5.1) as a lookup list: 11 bits -> (byte, length)."""
    nsym = r.u32(256)
    need(nsym >= 1, "empty code table")
    lens, sym, kraft = {}, 0, 0
    for _ in range(nsym):
        v = r.varint()
        gap, ln = v >> 4, v & 15
        need(1 <= ln <= HUF_MAX and sym + gap <= 255, "code table entry")
        sym += gap
        lens[sym] = ln
        sym += 1
        kraft += 1 << (HUF_MAX - ln)
        need(kraft <= 1 << HUF_MAX, "code table over-subscribed")
    tab = [None] * (1 << HUF_MAX)
    code = 0
    for ln in range(1, HUF_MAX + 1):
        for b in sorted(k for k in lens if lens[k] == ln):
            base = code << (HUF_MAX - ln)
            for k in range(1 << (HUF_MAX - ln)):
                tab[base + k] = (b, ln)
            code += 1
        code <<= 1
    return tab


def read_column(r):
    """One column block of a version 2 snapshot (FORMAT.md 5.1): its bytes."""
    n = r.u32(0x7FFFFFFF)
    if n == 0:
        return b""
    mode = r.u8()
    need(mode <= 2, "column mode %d" % mode)
    if mode == 0:
        return r.raw(n)
    tabs = {}
    if mode == 1:
        tab0 = read_code_table(r)
    else:
        nctx = r.u32(256)
        need(nctx >= 1, "no context")
        ctx = 0
        for _ in range(nctx):
            ctx += r.u32(255)
            need(ctx <= 255, "context past 255")
            tabs[ctx] = read_code_table(r)
            ctx += 1
    nb = r.varint()
    coded = r.raw(nb)
    need(n <= 8 * nb, "column longer than its bits allow")
    bits = "".join(format(b, "08b") for b in coded) + "0" * HUF_MAX
    out = bytearray()
    pos, prev = 0, 0
    for _ in range(n):
        tab = tab0 if mode == 1 else tabs.get(prev)
        need(tab is not None, "a context without a code")
        e = tab[int(bits[pos:pos + HUF_MAX], 2)]
        need(e is not None, "no such code")
        out.append(e[0])
        pos += e[1]
        prev = e[0]
    need(pos <= 8 * nb and (pos + 7) // 8 == nb, "coded length")
    need("1" not in bits[pos:8 * nb], "padding bits")
    return bytes(out)


def read_value(r):
    tag = r.u8()
    need(tag <= V_DELETED, "value tag %d" % tag)
    if tag == V_INT:
        v = r.varint()
        return tag, (v >> 1) ^ -(v & 1)
    if tag == V_FLOAT:
        f = struct.unpack("<d", r.raw(8))[0]
        need(f == f, "NaN value")
        return tag, f
    if tag == V_STR:
        n = r.u32(MAX_STR)
        return tag, r.utf8(n)
    return tag, None


class Obj:
    def __init__(self, kind, root, name=None, cid=None, parent=None, key=None, lamport=None):
        self.kind, self.root, self.name = kind, root, name
        self.cid, self.parent, self.key, self.lamport = cid, parent, key, lamport
        self.runs = []      # sequences: [agent, seq, len, deleted, left, right]
        self.content = []   # text: code points as one str per visible run; list: (tag, payload) per item
        self.text = ""
        self.entries = []   # maps: (key, lamport, (agent, seq), (tag, payload))
        self.children = {}  # list: item id -> nested object index


class Snapshot:
    pass


def decode(data, max_depth=64):
    r = Reader(data)
    s = Snapshot()
    magic = r.raw(3) if len(data) >= 3 else b""
    need(magic[:2] == b"TS", "not a snapshot")
    if magic[2] == 1:
        cols = {k: r for k in COLUMNS}
    elif magic[2] == 2:
        cols = {k: Reader(read_column(r)) for k in COLUMNS}
        need(r.left() == 0, "trailing bytes after the columns")
    else:
        raise UnknownVersion("snapshot version %d" % magic[2])
    r = cols["main"]

    # 4.1 agents
    na = r.u32(r.left() // 9)
    s.agents, s.vv = [], []
    for i in range(na):
        aid = r.u64le()
        n = r.u32(MAX_SEQ)
        need(n >= 1, "agent with no ops")
        need(i == 0 or aid > s.agents[-1], "agents not ascending")
        s.agents.append(aid)
        s.vv.append(n)
    s.max_lamport = r.varint()
    need(s.max_lamport <= MAX_LAMPORT, "max lamport")

    def agent_index(rd=None):
        need(na > 0, "an id in a snapshot without agents")
        return (rd or r).u32(na - 1)

    def read_id():
        a = agent_index()
        q = r.u32(MAX_SEQ)
        need(q < s.vv[a], "id (%d, %d) past the version vector" % (a, q))
        return (a, q)

    # 4.2 objects
    nobj = r.u32(r.left())
    objs = s.objs = []
    by_cid = s.by_cid = {}
    seen_nested = False
    prev_root = None
    for i in range(nobj):
        tag = r.u8()
        if tag < 3:
            need(not seen_nested, "roots after nested objects")
            n = r.varint()
            need(1 <= n <= MAX_NAME, "root name length")
            name = r.raw(n)
            try:
                name.decode("utf-8", "strict")
            except UnicodeDecodeError:
                raise Malformed("root name is not UTF-8")
            need(prev_root is None or (tag, name) > prev_root, "roots not ascending")
            prev_root = (tag, name)
            objs.append(Obj(tag, True, name=name))
        elif tag < 6:
            cid = read_id()
            parent = r.u32(nobj - 1)
            has_key = r.u8()
            need(has_key <= 1, "has_key byte")
            need(not seen_nested or cid > objs[-1].cid, "nested objects not ascending")
            seen_nested = True
            key = lamport = None
            if has_key:
                key = r.raw(r.u32(MAX_KEY))
                need(len(key) >= 1, "empty key")
                try:
                    key.decode("utf-8", "strict")
                except UnicodeDecodeError:
                    raise Malformed("key is not UTF-8")
                lamport = r.varint()
                need(1 <= lamport <= s.max_lamport, "nested object lamport")
            by_cid[cid] = i
            objs.append(Obj(tag - 3, False, cid=cid, parent=parent, key=key, lamport=lamport))
        else:
            raise Malformed("object tag %d" % tag)
    for i, o in enumerate(objs):
        if o.root:
            continue
        p = objs[o.parent]
        need(p.kind != TEXT, "object inside a text")
        need((o.key is not None) == (p.kind == MAP), "has_key disagrees with the parent")
        depth, j = 0, i
        while not objs[j].root:
            depth += 1
            need(depth <= max_depth, "objects nested too deeply (or in a cycle)")
            j = objs[j].parent

    # per agent: every item run, for lookups: sorted (seq, len, obj, run index)
    items = [[] for _ in range(na)]

    # 4.3 / 4.4 contents
    for h, o in enumerate(objs):
        if o.kind == MAP:
            n = r.u32(r.left())
            prev_key = None
            for _ in range(n):
                key = r.raw(r.u32(MAX_KEY))
                need(len(key) >= 1, "empty key")
                try:
                    key.decode("utf-8", "strict")
                except UnicodeDecodeError:
                    raise Malformed("key is not UTF-8")
                lamport = r.varint()
                wid = read_id()
                need(1 <= lamport <= s.max_lamport, "map entry lamport")
                need(prev_key is None or key > prev_key, "map keys not ascending")
                prev_key = key
                val = read_value(r)
                if V_TEXT <= val[0] <= V_MAP:
                    c = by_cid.get(wid)
                    need(c is not None and objs[c].kind == val[0] - V_TEXT and objs[c].parent == h,
                         "map value names no object")
                o.entries.append((key, lamport, wid, val))
            continue
        read_runs(cols, s, o, h, items)
    for lst in items:
        lst.sort()

    # 4.5 delete records
    s.dels = [[] for _ in range(na)]
    for a in range(na):
        n = r.u32(cols["dflag"].left())
        end, obj = 0, None
        for _ in range(n):
            f = cols["dflag"].u8()
            need(f & ~15 == 0, "delete record flags")
            seq = end + cols["dgap"].varint()
            ln = 1 if f & 8 else cols["dlen"].u32(MAX_SEQ)
            desc = bool(f & 1)
            if f & 2:
                need(obj is not None, "D_SAMEOBJ on the first record")
            else:
                need(nobj > 0, "delete record object")
                obj = cols["dtgt"].u32(nobj - 1)
            need(ln >= 1 and not (desc and ln == 1) and seq + ln <= s.vv[a], "delete record")
            if f & 4:
                ta = a
                dist = cols["dtgt"].varint()
                need(dist < seq, "delete record target")
                hi = seq - dist - 1
            else:
                ta = agent_index(cols["dtgt"])
                hi = cols["dtgt"].varint()
            need(hi + 1 >= ln and hi < s.vv[ta], "delete record target")
            lo = hi - ln + 1
            need(objs[obj].kind != MAP, "delete record on a map")
            need(range_is(items, objs, ta, lo, hi, obj, deleted=True),
                 "delete record target (not deleted items of its sequence)")
            s.dels[a].append((seq, ln, obj, ta, lo, hi, desc))
            end = seq + ln
    for col in cols.values():
        need(col.left() == 0, "trailing bytes")

    check_history(s, items)
    return s


def read_runs(cols, s, o, h, items):
    r = cols["main"]
    n = r.u32(cols["rflag"].left())
    runs = o.runs
    ahead = [0] * n
    cont = [False] * n

    def origin(base):
        need(len(s.agents) > 0, "origin without agents")
        a = cols["rorig"].u32(len(s.agents) - 1)
        v = cols["rorig"].varint()
        need(v <= 2 * MAX_SEQ + 1, "origin too far")
        q = base[1] - ((v >> 1) ^ -(v & 1)) if a == base[0] else v
        need(0 <= q < s.vv[a], "origin past the version vector")
        return (a, q)

    for i in range(n):
        f = cols["rflag"].u8()
        lm, rm = (f >> 3) & 3, (f >> 5) & 3
        prev = runs[i - 1] if i else None
        if f & 2:  # R_CONT
            need(prev is not None and not f & 4 and lm == 0 and rm == 0, "run continuation")
            agent, seq = prev[0], prev[1] + prev[2]
            cont[i] = True
        elif f & 4:  # R_SAMEAGENT
            need(prev is not None, "R_SAMEAGENT on the first run")
            d = cols["rid"].varint()
            need(d <= 2 * MAX_SEQ + 1, "run seq")
            agent, seq = prev[0], prev[1] + prev[2] + ((d >> 1) ^ -(d & 1))
            need(0 <= seq <= MAX_SEQ, "run seq")
        else:
            agent, seq = read_id_any(cols["rid"], s)
        ln = 1 if f & 0x80 else cols["rlen"].u32(MAX_SEQ)
        need(ln >= 1 and seq + ln <= s.vv[agent], "run ids past the version vector")
        deleted = bool(f & 1)
        left = right = None
        if f & 2:
            left = (prev[0], prev[1] + prev[2] - 1)
        else:
            if lm == 0:
                left = origin((agent, seq))
            elif lm != 1:
                k = 1 if lm == 2 else cols["rorig"].varint() + 2
                need(k <= i, "run left origin")
                b = runs[i - k]
                left = (b[0], b[1] + b[2] - 1)
            if rm == 0:
                right = origin((agent, seq))
            elif rm != 1:
                ahead[i] = 1 if rm == 2 else cols["rorig"].u32(64) + 2
        runs.append([agent, seq, ln, deleted, left, right])
    for i in range(n):
        if ahead[i]:
            need(ahead[i] < n - i, "run right origin")
            b = runs[i + ahead[i]]
            runs[i][5] = (b[0], b[1])
        if cont[i]:
            runs[i][5] = runs[i - 1][5]
        need(runs[i][5] != (runs[i][0], runs[i][1]), "run is its own origin")
    pos = 0
    o.pos = []
    for i, run in enumerate(runs):
        items[run[0]].append((run[1], run[2], h, i))
        o.pos.append(pos)
        pos += run[2]
    o.total = pos
    if o.kind == LIST:
        o.content = [None] * pos
        for k in range(pos):
            val = read_value(r)
            need(val[0] != V_DELETED, "deleted tag as a list element")
            o.content[k] = val
        for i, run in enumerate(runs):
            for k in range(run[2]):
                tag = o.content[o.pos[i] + k][0]
                if V_TEXT <= tag <= V_MAP:
                    c = s.by_cid.get((run[0], run[1] + k))
                    need(c is not None and s.objs[c].kind == tag - V_TEXT and
                         s.objs[c].parent == h and s.objs[c].key is None,
                         "list element names no object")
                    o.children[(run[0], run[1] + k)] = c
    else:
        visible = sum(run[2] for run in runs if not run[3])
        nb = r.u32(MAX_STR)
        o.text = cols["text"].utf8(nb)
        need(len(o.text) == visible, "text content holds %d code points, runs %d"
             % (len(o.text), visible))


def read_id_any(r, s):
    need(len(s.agents) > 0, "run without agents")
    a = r.u32(len(s.agents) - 1)
    q = r.u32(MAX_SEQ)
    return a, q


def find_item(items, a, q):
    """(obj, run index, offset) of item (a, q), or None."""
    lst = items[a]
    i = bisect.bisect_right(lst, (q, MAX_SEQ + 2)) - 1
    if i < 0:
        return None
    seq, ln, h, ri = lst[i]
    if q >= seq + ln:
        return None
    return h, ri, q - seq


def range_is(items, objs, a, lo, hi, obj, deleted):
    q = lo
    while q <= hi:
        f = find_item(items, a, q)
        if f is None or f[0] != obj:
            return False
        run = objs[obj].runs[f[1]]
        if run[3] != deleted:
            return False
        q = run[1] + run[2]
    return True


def check_history(s, items):
    objs = s.objs
    na = len(s.agents)
    # every item id belongs to one run: runs of an agent must not overlap
    for a in range(na):
        lst = items[a]
        for i in range(1, len(lst)):
            need(lst[i][0] >= lst[i - 1][0] + lst[i - 1][1], "run ids repeat")
    # origins: items of the same sequence, left stored before, right after
    for h, o in enumerate(objs):
        for i, run in enumerate(o.runs):
            for side, org in ((0, run[4]), (1, run[5])):
                if org is None:
                    continue
                f = find_item(items, org[0], org[1])
                need(f is not None and f[0] == h, "origin is not an item of its sequence")
                p = o.pos[f[1]] + f[2]
                need(p < o.pos[i] if side == 0 else p > o.pos[i] + run[2] - 1,
                     "origin on the wrong side of its run")
    # nested objects agree with the op that made them
    for h, o in enumerate(objs):
        if o.root:
            continue
        p = objs[o.parent]
        if p.kind == LIST:
            f = find_item(items, o.cid[0], o.cid[1])
            need(f is not None and f[0] == o.parent, "list object made by no element")
            need(p.content[p.pos[f[1]] + f[2]][0] == V_TEXT + o.kind, "list element kind")
        else:
            e = [x for x in p.entries if x[0] == o.key]
            need(len(e) == 1, "map object whose key has no entry")
            key, lamport, wid, val = e[0]
            if wid == o.cid:
                need(val[0] == V_TEXT + o.kind and lamport == o.lamport, "map object disagrees")
            else:
                need((lamport, s.agents[wid[0]], wid[1]) > (o.lamport, s.agents[o.cid[0]], o.cid[1]),
                     "losing object write beats its key's entry")
    # units: every op with an effect, per agent, with what it references
    creator = [None if o.root else o.cid for o in objs]
    units = [[] for _ in range(na)]
    for h, o in enumerate(objs):
        for run in o.runs:
            units[run[0]].append((run[1], run[2], [x for x in (run[4], run[5], creator[h]) if x]))
        for key, lamport, wid, val in o.entries:
            units[wid[0]].append((wid[1], 1, [x for x in (creator[h],) if x]))
        if not o.root and o.key is not None:
            e = [x for x in objs[o.parent].entries if x[0] == o.key]
            if e and e[0][2] != o.cid:
                units[o.cid[0]].append((o.cid[1], 1, [x for x in (creator[o.parent],) if x]))
    for a in range(na):
        for seq, ln, obj, ta, lo, hi, desc in s.dels[a]:
            units[a].append((seq, ln, [x for x in ((ta, hi), creator[obj]) if x]))
    for a in range(na):
        units[a].sort(key=lambda u: u[0])
        for i in range(1, len(units[a])):
            need(units[a][i][0] >= units[a][i - 1][0] + units[a][i - 1][1],
                 "an op id has two meanings")
    # orderable: each agent in seq order, every reference before its user
    nxt, done = [0] * na, [0] * na
    progress = True
    while progress:
        progress = False
        for a in range(na):
            us = units[a]
            while nxt[a] < len(us):
                seq, ln, refs = us[nxt[a]]
                done[a] = max(done[a], seq)
                if not all(q < done[ra] for ra, q in refs):
                    break
                done[a] = seq + ln
                nxt[a] += 1
                progress = True
            if nxt[a] == len(us) and done[a] < s.vv[a]:
                done[a] = s.vv[a]
                progress = True
    need(all(nxt[a] == len(units[a]) for a in range(na)),
         "ops reference later ops or each other in a cycle")
    s.units = sum(len(u) for u in units)


# ---- output -----------------------------------------------------------------

def to_py(s, h):
    o = s.objs[h]
    if o.kind == TEXT:
        return o.text
    if o.kind == LIST:
        out = []
        for i, run in enumerate(o.runs):
            if run[3]:
                continue
            for k in range(run[2]):
                out.append(value_py(s, o.content[o.pos[i] + k], o.children.get((run[0], run[1] + k))))
        return out
    d = {}
    for key, lamport, wid, val in o.entries:
        if val[0] == V_DELETED:
            continue
        d[key.decode("utf-8")] = value_py(s, val, s.by_cid.get(wid))
    return d


def value_py(s, val, child):
    tag, v = val
    if tag == V_NULL:
        return None
    if tag == V_FALSE:
        return False
    if tag == V_TRUE:
        return True
    if tag == V_FLOAT:
        return None if math.isinf(v) else v
    if tag in (V_INT, V_STR):
        return v
    return to_py(s, child)


def touched(o):
    return bool(o.entries) if o.kind == MAP else bool(o.runs)


def document_py(s):
    """The whole document: roots by name bytes; a name shared by kinds gets @kind."""
    roots = [(h, o) for h, o in enumerate(s.objs) if o.root and touched(o)]
    names = {}
    for h, o in roots:
        names.setdefault(o.name, []).append(h)
    rank = {LIST: 0, MAP: 1, TEXT: 2}   # "@list" < "@map" < "@text"
    roots.sort(key=lambda x: (x[1].name, rank[x[1].kind]))
    out = {}
    for h, o in roots:
        key = o.name.decode("utf-8")
        if len(names[o.name]) > 1:
            key += "@" + KIND_NAME[o.kind]
        out[key] = to_py(s, h)
    return out


def root_text(s, name):
    for o in s.objs:
        if o.root and o.kind == TEXT and o.name == name:
            return o.text
    return ""  # a root no op touched is empty


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("snapshot")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--text", metavar="NAME", help="print root text NAME (UTF-8, no newline)")
    g.add_argument("--json", action="store_true", help="print the document as JSON")
    g.add_argument("--stats", action="store_true", help="print what was decoded")
    args = ap.parse_args(argv)
    with open(args.snapshot, "rb") as f:
        data = f.read()
    try:
        s = decode(data)
    except Malformed as e:
        sys.stderr.write("%s: malformed snapshot: %s\n" % (args.snapshot, e))
        return 1
    out = sys.stdout.buffer
    if args.text is not None:
        out.write(root_text(s, args.text.encode("utf-8")).encode("utf-8"))
    elif args.json:
        out.write(json.dumps(document_py(s), ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        out.write(b"\n")
    else:
        runs = sum(len(o.runs) for o in s.objs)
        items = sum(o.total for o in s.objs if o.kind != MAP)
        dels = sum(len(d) for d in s.dels)
        out.write(("bytes %d agents %d ops %d objects %d runs %d items %d delete-records %d\n"
                   % (len(data), len(s.agents), sum(s.vv), len(s.objs), runs, items, dels)).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
