#!/usr/bin/env python3
"""run_format_test.py -- the core's snapshots, read by the decoder written from docs/FORMAT.md.

For every trace (the fixtures always, ../shared/traces when present):
trace_snapshot replays it into the core and writes the snapshot;
decode_snapshot.py, in its own process, decodes it; its root text "text" must
equal the trace's endContent. For documents with every value type, nested
objects and concurrent edits (trace_snapshot --doc SEED), the decoder's JSON
must equal the core's td_crdt_to_json, and damaged copies of the snapshot
must be rejected. Fails if no trace was decoded.
"""
import argparse
import glob
import gzip
import json
import os
import subprocess
import sys
import time


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def load_trace(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return json.loads(data.decode("utf-8"))


def ordered(text):
    return json.loads(text, object_pairs_hook=lambda pairs: ("obj", pairs))


class Run:
    def __init__(self, args):
        self.a = args
        self.failures = 0
        self.traces = 0
        self.docs = 0
        self.snap_bytes = 0
        self.text_bytes = 0

    def fail(self, msg):
        print("FAIL: " + msg)
        self.failures += 1

    def decode(self, snap, *what):
        return run([sys.executable, self.a.decoder, snap] + list(what))

    def trace(self, path):
        name = os.path.basename(path)
        snap = os.path.join(self.a.work, name + ".snap")
        rc, out, err = run([self.a.exe, path, snap])
        if rc != 0:
            return self.fail("%s: trace_snapshot exited %d: %s" % (name, rc, err.strip()))
        size = os.path.getsize(snap)
        t0 = time.time()
        rc, text, err = self.decode(snap, "--text", "text")
        dt = time.time() - t0
        if rc != 0:
            return self.fail("%s: decoder exited %d: %s" % (name, rc, err.strip()))
        want = load_trace(path)["endContent"].encode("utf-8")
        rc, text1, err = self.decode(snap + ".v1", "--text", "text")
        if rc != 0 or text1 != want:
            return self.fail("%s: version 1 snapshot: decoder exited %d, text %s: %s"
                             % (name, rc, "equal" if text1 == want else "differs", err.strip()))
        if text != want:
            n = next((i for i in range(min(len(text), len(want))) if text[i] != want[i]),
                     min(len(text), len(want)))
            return self.fail("%s: decoded text (%d bytes) differs from endContent (%d bytes) "
                             "at byte %d" % (name, len(text), len(want), n))
        self.traces += 1
        self.snap_bytes += size
        self.text_bytes += len(want)
        print("OK %s: snapshot %d bytes, text %d bytes, decoded in %.2f s"
              % (name, size, len(want), dt))

    def doc(self, seed):
        snap = os.path.join(self.a.work, "doc-%d.snap" % seed)
        jpath = os.path.join(self.a.work, "doc-%d.json" % seed)
        rc, out, err = run([self.a.exe, "--doc", str(seed), snap, jpath])
        if rc != 0:
            return self.fail("doc %d: trace_snapshot exited %d: %s" % (seed, rc, err.strip()))
        rc, got, err = self.decode(snap, "--json")
        if rc != 0:
            return self.fail("doc %d: decoder exited %d: %s" % (seed, rc, err.strip()))
        with open(jpath, "rb") as f:
            core = f.read().decode("utf-8")
        rc, got1, err = self.decode(snap + ".v1", "--json")
        if rc != 0 or ordered(got1.decode("utf-8")) != ordered(core):
            return self.fail("doc %d: version 1 snapshot: decoder exited %d: %s" % (seed, rc, err.strip()))
        if ordered(got.decode("utf-8")) != ordered(core):
            return self.fail("doc %d: decoder JSON differs from td_crdt_to_json:\n  core:    %s\n"
                             "  decoder: %s" % (seed, core, got.decode("utf-8").strip()))
        # damaged copies must be rejected
        with open(snap, "rb") as f:
            data = f.read()
        bad = os.path.join(self.a.work, "doc-%d.bad" % seed)
        damaged = [("truncated by %d" % k, data[:-k]) for k in (1, 2, len(data) // 2)]
        damaged += [("trailing byte", data + b"\x00"), ("version 3", data[:2] + b"\x03" + data[3:]),
                    ("version 0", data[:2] + b"\x00" + data[3:]),
                    ("not a snapshot", b"TB" + data[2:]), ("empty", b"")]
        for what, d in damaged:
            with open(bad, "wb") as f:
                f.write(d)
            rc, _, err = self.decode(bad, "--json")
            if rc != 1:
                return self.fail("doc %d: %s snapshot not rejected (exit %d)" % (seed, what, rc))
        self.docs += 1
        self.snap_bytes += len(data)
        print("OK doc seed %d: snapshot %d bytes, JSON %d bytes equal to td_crdt_to_json, "
              "%d damaged copies rejected" % (seed, len(data), len(core), len(damaged)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", required=True)
    ap.add_argument("--decoder", required=True)
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    r = Run(a)
    for name in ("synthetic-seq.json.gz", "synthetic-concurrent.json"):
        r.trace(os.path.join(a.fixtures, name))
    if os.path.isdir(a.shared):
        shared = sorted(glob.glob(os.path.join(a.shared, "*.json.gz")))
        if not shared:
            r.fail("%s holds no *.json.gz trace" % a.shared)
        for path in shared:
            r.trace(path)
    else:
        print("SKIP: ../shared/traces absent")
    for seed in (0, 1, 2, 3):
        r.doc(seed)
    print("%d traces and %d documents decoded, %d snapshot bytes in all, %d bytes of text "
          "checked against endContent" % (r.traces, r.docs, r.snap_bytes, r.text_bytes))
    if r.traces == 0:
        r.fail("no trace was decoded")
    return 1 if r.failures else 0


if __name__ == "__main__":
    sys.exit(main())
