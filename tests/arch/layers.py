#!/usr/bin/env python3
"""layers.py -- proves that the files of a layer call each other one way.

    python3 tests/arch/layers.py BUILD FOLDER [FOLDER ...]

For every C source file of each FOLDER (storage, server, ...) this finds
the object file CMake compiled from it in the build directory BUILD
(BUILD/**/CMakeFiles/**/<name>.c.o), reads its symbols with nm -- the ones
it defines (T, D, B, R, ...) and the ones it needs (U) -- and links file A
to file B when A needs a symbol B defines. That is the file->file call
graph of the folder, taken from what the compiler produced rather than from
the text, so macros, inline helpers and data references count as they are.

It prints the graph as layers, bottom up: layer 0 calls no other file of the
folder, layer n calls only files of layers below n. If files call each other
in a circle it prints every circle, with the symbols on each step, and
exits 1.

It exits 2 -- never 0 -- when it cannot see the whole folder: no source
files, a source file without an object (not built yet, or built elsewhere),
an object older than its source (stale: rebuild first), or nm failing. A
check that passes because it found nothing to check would prove nothing.

Python 3 standard library only.
"""

import argparse
import os
import subprocess
import sys

MAX_CYCLES = 200  # printed per folder; the count is always complete


class InputError(Exception):
    """The build directory does not show the whole folder."""


def source_files(folder):
    """The .c files below folder, as paths relative to it, sorted."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".c"):
                out.append(os.path.relpath(os.path.join(root, name), folder))
    return out


def index_objects(build):
    """Every *.c.o below a CMakeFiles directory of build, by file name."""
    by_name = {}
    for root, dirs, files in os.walk(build):
        if "CMakeFiles" not in root.split(os.sep):
            continue
        for name in files:
            if name.endswith(".c.o"):
                by_name.setdefault(name, []).append(os.path.join(root, name))
    return by_name


def source_of(build, obj):
    """The source path (relative to the source root) obj was compiled from.

    CMake puts the object of source S, compiled for a target defined in
    folder D, at BUILD/D/CMakeFiles/<target>.dir/<S relative to D>.o, with
    each ".." of that relative path written "__"."""
    parts = os.path.relpath(obj, build).split(os.sep)
    if "CMakeFiles" not in parts:
        return None
    i = parts.index("CMakeFiles")
    rest = parts[i + 2:]  # after CMakeFiles/<target>.dir
    if not rest or not rest[-1].endswith(".o"):
        return None
    rest = [".." if p == "__" else p for p in rest]
    rest[-1] = rest[-1][:-2]
    return os.path.normpath(os.path.join(*(parts[:i] + rest)))


def find_object(objects, build, folder_rel, rel):
    """The object compiled from folder_rel/rel, or raises InputError. One
    source may be compiled into several targets: their objects hold the
    same symbols, so the newest will do (an older one may be left over from
    a target that no longer compiles it)."""
    want = os.path.normpath(os.path.join(folder_rel, rel))
    cands = objects.get(os.path.basename(rel) + ".o", [])
    found = sorted((c for c in cands if source_of(build, c) == want),
                   key=lambda c: (-os.path.getmtime(c), c))
    if not found:
        hint = ""
        if cands:
            hint = " (objects of the same name for other sources: %s)" % ", ".join(sorted(cands))
        raise InputError("no object file for %s in %s%s; build its target first"
                         % (want, build, hint))
    return found[0]


def read_symbols(nm, obj):
    """(defined, needed): the global symbols obj defines and needs."""
    try:
        res = subprocess.run([nm, "-P", obj], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True)
    except OSError as e:
        raise InputError("cannot run %s: %s" % (nm, e))
    if res.returncode != 0:
        raise InputError("%s %s failed: %s" % (nm, obj, res.stderr.strip()))
    defined, needed = set(), set()
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) < 2 or line.endswith(":"):
            continue
        name, kind = parts[0], parts[1]
        if kind in ("U", "w", "v"):
            needed.add(name)
        elif kind.isupper():
            # Lower case kinds are local (static) symbols: not callable
            # from another file, so they are no edge.
            defined.add(name)
    return defined, needed


def build_graph(files, symbols):
    """calls[a][b] = sorted symbols a needs that b defines."""
    owner = {}
    clashes = []
    for f in files:
        for s in symbols[f][0]:
            if s in owner and owner[s] != f:
                clashes.append("%s is defined in both %s and %s" % (s, owner[s], f))
            owner.setdefault(s, f)
    calls = {f: {} for f in files}
    for f in files:
        for s in symbols[f][1]:
            g = owner.get(s)
            if g is not None and g != f:
                calls[f].setdefault(g, []).append(s)
    for f in files:
        for g in calls[f]:
            calls[f][g].sort()
    return calls, clashes


def strongly_connected(files, calls):
    """Tarjan's algorithm, iteratively: the list of components."""
    index, low, on_stack, stack, comps = {}, {}, set(), [], []
    counter = [0]
    for root in files:
        if root in index:
            continue
        work = [(root, iter(sorted(calls[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(calls[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                comps.append(sorted(comp))
    return comps


def cycles_in(comp, calls):
    """Every elementary circle within one component, each starting at its
    smallest file (so each is listed once)."""
    members = set(comp)
    out = []
    for start in sorted(comp):
        allowed = {f for f in members if f >= start}
        path = [start]

        def walk(node):
            for nxt in sorted(calls[node]):
                if nxt not in allowed:
                    continue
                if nxt == start:
                    out.append(list(path))
                elif nxt not in path:
                    path.append(nxt)
                    walk(nxt)
                    path.pop()

        walk(start)
    return out


def layers(files, calls, comps):
    """Layer of each file: 0 if it calls no other component, else one more
    than the highest layer it calls (files of one circle share a layer)."""
    comp_of = {f: i for i, c in enumerate(comps) for f in c}
    level = {}
    # Tarjan emits a component only after every component it calls.
    for i, comp in enumerate(comps):
        below = [level[comp_of[g]] for f in comp for g in calls[f]
                 if comp_of[g] != i]
        level[i] = 1 + max(below) if below else 0
    return {f: level[comp_of[f]] for f in files}


def check_folder(build, source_root, folder, nm, objects):
    """Prints one folder's graph; returns the number of circles in it."""
    folder_abs = folder if os.path.isabs(folder) else os.path.join(source_root, folder)
    folder_abs = os.path.normpath(folder_abs)
    folder_rel = os.path.relpath(folder_abs, source_root)
    if not os.path.isdir(folder_abs):
        raise InputError("%s is not a folder" % folder_abs)
    rels = source_files(folder_abs)
    if not rels:
        raise InputError("no .c files in %s" % folder_abs)
    files, symbols = [], {}
    for rel in rels:
        obj = find_object(objects, build, folder_rel, rel)
        src = os.path.join(folder_abs, rel)
        if os.path.getmtime(obj) < os.path.getmtime(src):
            raise InputError("%s is older than %s; rebuild first" % (obj, src))
        symbols[rel] = read_symbols(nm, obj)
        files.append(rel)
    if not any(symbols[f][0] for f in files):
        raise InputError("the objects of %s define no symbols" % folder_rel)

    calls, clashes = build_graph(files, symbols)
    comps = strongly_connected(files, calls)
    level = layers(files, calls, comps)
    nedges = sum(len(calls[f]) for f in files)
    in_circle = {f for comp in comps if len(comp) > 1 for f in comp}
    print("%s/: %d files, %d file->file calls" % (folder_rel, len(files), nedges))
    width = max(len(f) for f in files)
    for f in sorted(files, key=lambda f: (-level[f], f)):
        callees = sorted(calls[f], key=lambda g: (-level[g], g))
        print("  layer %d  %-*s -> %s%s" % (level[f], width, f,
                                             ", ".join(callees) if callees else "(none)",
                                             "   [in a circle]" if f in in_circle else ""))
    for c in clashes:
        print("  warning: %s" % c)

    circles = []
    for comp in comps:
        if len(comp) > 1:
            circles.extend(cycles_in(comp, calls))
    if circles:
        print("%s/: %d call circle(s):" % (folder_rel, len(circles)))
        for cyc in circles[:MAX_CYCLES]:
            steps = []
            for i, f in enumerate(cyc):
                g = cyc[(i + 1) % len(cyc)]
                steps.append("%s -> %s (%s)" % (f, g, ", ".join(calls[f][g])))
            print("  circle: " + " -> ".join(cyc + [cyc[0]]))
            for s in steps:
                print("    " + s)
        if len(circles) > MAX_CYCLES:
            print("  ... and %d more" % (len(circles) - MAX_CYCLES))
    else:
        print("%s/: no call circles" % folder_rel)
    return len(circles)


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(
        description="Prints the file->file call graph of each folder, from the "
                    "object files in BUILD; exits 1 if files call each other in "
                    "a circle, 2 if the objects are missing or stale.")
    ap.add_argument("build", help="the CMake build directory")
    ap.add_argument("folders", nargs="+",
                    help="source folders, relative to the source root")
    ap.add_argument("--source-root",
                    default=os.path.normpath(os.path.join(here, "..", "..")),
                    help="the source tree (default: two folders above this script)")
    ap.add_argument("--nm", default="nm", help="the nm to run (default: nm)")
    args = ap.parse_args(argv)

    build = os.path.abspath(args.build)
    source_root = os.path.abspath(args.source_root)
    if not os.path.isdir(build):
        print("layers.py: build directory %s does not exist" % build, file=sys.stderr)
        return 2
    objects = index_objects(build)
    if not objects:
        print("layers.py: no object files under %s/**/CMakeFiles; build first"
              % build, file=sys.stderr)
        return 2
    total = 0
    try:
        for folder in args.folders:
            total += check_folder(build, source_root, folder, args.nm, objects)
    except InputError as e:
        print("layers.py: %s" % e, file=sys.stderr)
        return 2
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
