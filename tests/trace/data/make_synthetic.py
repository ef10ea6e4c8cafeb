#!/usr/bin/env python3
"""Generates the synthetic traces tandem-trace is tested on (committed, so the
tests need no Python; rerun this only to change them).

synthetic-seq.json.gz -- sequential format, ~400 patches: typing runs,
    backspaces, cursor jumps, pastes, range deletes and replacements, with
    2-, 3- and 4-byte UTF-8 (the JSON escapes them, astral ones as surrogate
    pairs, so the reader's \\u handling is exercised). endContent comes from a
    plain list of code points.

synthetic-concurrent.json -- concurrent format (plain JSON, raw UTF-8), three
    agents. Agent 0 writes three lines "A: ..", "B: ..", "C: ..". Agent k then
    inserts only inside line k (after its marker, before its newline), so no
    two agents ever insert at the same spot, as the format requires; any agent
    may delete content characters of any line (markers and newlines are never
    deleted), so concurrent deletes of the same character and inserts next to
    concurrently deleted characters both happen. Parents fork and merge at
    random. endContent comes from a minimal reference CRDT below: each
    inserted character sits immediately after its left neighbour at insert
    time. That is exact here because no two concurrent inserts share a left
    neighbour (they are in different lines), and every replica applies
    history in causal order.

With arguments OUT AGENTS STEPS SEED it writes only a larger concurrent trace
of the same kind to OUT (gzipped), for stress runs outside the test suite.

Also writes truncated.json.gz (the first half of the sequential file's gzip
stream) for the reader's error path.
"""
import gzip
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
WORDS = ["the", "quick", "brown", "fox", "jumps", "über", "naïve", "café",
         "日本語", "テキスト", "😀", "🎉", "ß", "Ω", "→", "a\u0301", "x", "\t"]


def write_gz(name, obj):
    data = json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode()
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(gzip.compress(data, mtime=0))
    return gzip.compress(data, mtime=0)


def sequential(rng):
    doc = []
    txns = []
    cursor = 0
    while sum(len(t["patches"]) for t in txns) < 400:
        patches = []
        kind = rng.random()
        if kind < 0.45:  # type a word, char by char, one patch per txn
            for ch in rng.choice(WORDS) + " ":
                doc.insert(cursor, ch)
                txns.append({"patches": [[cursor, 0, ch]]})
                cursor += 1
            continue
        if kind < 0.6 and cursor > 0:  # backspaces
            for _ in range(rng.randint(1, min(4, cursor))):
                cursor -= 1
                del doc[cursor]
                txns.append({"patches": [[cursor, 1, ""]]})
            continue
        if kind < 0.7:  # jump
            cursor = rng.randint(0, len(doc))
            continue
        if kind < 0.8:  # paste
            s = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
            doc[cursor:cursor] = list(s)
            patches.append([cursor, 0, s])
            cursor += len(s)
        elif kind < 0.9 and doc:  # delete a range somewhere
            p = rng.randint(0, len(doc) - 1)
            n = rng.randint(1, min(12, len(doc) - p))
            del doc[p:p + n]
            patches.append([p, n, ""])
            cursor = p
        elif doc:  # multi-cursor replace: several patches in one txn
            for _ in range(rng.randint(2, 3)):
                p = rng.randint(0, len(doc) - 1)
                n = rng.randint(0, min(3, len(doc) - p))
                s = rng.choice(WORDS)
                doc[p:p + n] = list(s)
                patches.append([p, n, s])
            cursor = min(cursor, len(doc))
        if patches:
            txns.append({"patches": patches})
    return {"startContent": "", "endContent": "".join(doc), "txns": txns}


class Replica:
    """Items in document order: [id, char, deleted]; ids are (txn, n)."""

    def __init__(self):
        self.items = []
        self.ids = []
        self.have = set()

    def visible(self):
        return [i for i, it in enumerate(self.items) if not it[2]]

    def text(self):
        return "".join(it[1] for it in self.items if not it[2])

    def index_of(self, ident):
        return self.ids.index(ident)

    def apply(self, ops):
        for op in ops:
            if op[0] == "ins":
                _, ident, after, ch = op
                at = 0 if after is None else self.index_of(after) + 1
                self.items.insert(at, [ident, ch, False])
                self.ids.insert(at, ident)
            else:
                self.items[self.index_of(op[1])][2] = True

    def local(self, txn_index, patches_spec):
        """Applies (pos, del, ins) patches, returns the ops they make."""
        ops = []
        n = 0
        for pos, dl, ins in patches_spec:
            vis = self.visible()
            for k in range(dl):
                ident = self.items[vis[pos + k]][0]
                ops.append(("del", ident))
            self.apply(ops[len(ops) - dl:] if dl else [])
            vis = self.visible()
            after = None if pos == 0 else self.items[vis[pos - 1]][0]
            for ch in ins:
                ident = (txn_index, n)
                n += 1
                op = ("ins", ident, after, ch)
                self.apply([op])
                ops.append(op)
                after = ident
        return ops


def concurrent(rng, nagents=3, steps=110):
    markers = ["%c: " % (ord("A") + a) for a in range(nagents)]
    txns = []      # the trace's txns
    ops = []       # ops per txn, for the reference merge
    ancestors = []  # set of txn indexes in each txn's history (inclusive)
    reps = [Replica() for _ in range(nagents)]
    last = [None] * nagents

    def merge(rep, parents):
        need = set()
        for p in parents:
            need |= ancestors[p]
        for k in sorted(need - rep.have):
            rep.apply(ops[k])
            rep.have.add(k)
        return need

    def record(agent, parents, spec):
        i = len(txns)
        rep = reps[agent]
        hist = merge(rep, parents)
        assert last[agent] is None or last[agent] in hist
        o = rep.local(i, spec)
        rep.have.add(i)
        ops.append(o)
        ancestors.append(hist | {i})
        last[agent] = i
        txns.append({"parents": sorted(set(parents)), "agent": agent,
                     "numChildren": 0, "patches": [list(p) for p in spec]})

    first = "".join(m + w + "\n" for m, w in
                    zip(markers, ["hello", "wörld", "日本"] * nagents))
    record(0, [], [(0, 0, first)])

    def line_span(text, agent):
        start = text.index(markers[agent]) + len(markers[agent])
        return start, text.index("\n", start)

    for _ in range(steps):
        agent = rng.randrange(nagents)
        parents = [last[agent]] if last[agent] is not None else [0]
        for other in range(nagents):
            if other != agent and last[other] is not None and rng.random() < 0.3:
                mine = [k for k, t in enumerate(txns) if t["agent"] == other]
                parents.append(rng.choice(mine))
        rep = reps[agent]
        merge(rep, parents)  # to compute positions on the parents' state
        spec = []
        text = rep.text()
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.7:
                s, e = line_span(text, agent)
                pos = rng.randint(s, e)
                word = rng.choice(WORDS + ["ü", "😀", "é"])
                spec.append((pos, 0, word))
            else:
                line = rng.randrange(nagents)
                s, e = line_span(text, line)
                if e == s:
                    continue
                pos = rng.randint(s, e - 1)
                n = rng.randint(1, min(3, e - pos))
                spec.append((pos, n, ""))
            # positions of later patches refer to the text after this one
            p, d, w = spec[-1]
            text = text[:p] + w + text[p + d:]
        if spec:
            record(agent, parents, spec)

    final_parents = [last[a] for a in range(nagents) if last[a] is not None]
    rep = reps[0]
    merge(rep, final_parents)
    s, e = line_span(rep.text(), 0)
    record(0, final_parents, [(e, 0, "!")])
    for t in txns:
        t["numChildren"] = 0
    for t in txns:
        for p in t["parents"]:
            txns[p]["numChildren"] += 1
    end = None
    for rep in reps:  # everything everywhere: all must agree
        merge(rep, list(range(len(txns))))
        end = end if end is not None else rep.text()
        assert rep.text() == end
    assert end == reps[0].text()
    return {"kind": "concurrent", "endContent": end, "numAgents": nagents,
            "txns": txns}


def main():
    if len(sys.argv) == 5:  # make_synthetic.py OUT AGENTS STEPS SEED: a bigger one
        out, agents, steps, seed = sys.argv[1], *map(int, sys.argv[2:])
        conc = concurrent(random.Random(seed), agents, steps)
        with open(out, "wb") as f:
            f.write(gzip.compress(json.dumps(conc).encode(), mtime=0))
        print("%s: %d txns, %d code points at the end" %
              (out, len(conc["txns"]), len(conc["endContent"])))
        return
    seq = sequential(random.Random(20251124))
    gz = write_gz("synthetic-seq.json.gz", seq)
    with open(os.path.join(HERE, "truncated.json.gz"), "wb") as f:
        f.write(gz[: len(gz) // 2])
    conc = concurrent(random.Random(7))
    with open(os.path.join(HERE, "synthetic-concurrent.json"), "w",
              encoding="utf-8") as f:
        json.dump(conc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print("sequential: %d patches, %d code points at the end" %
          (sum(len(t["patches"]) for t in seq["txns"]), len(seq["endContent"])))
    print("concurrent: %d txns, %d patches, end %r" %
          (len(conc["txns"]), sum(len(t["patches"]) for t in conc["txns"]),
           conc["endContent"]))


if __name__ == "__main__":
    main()
