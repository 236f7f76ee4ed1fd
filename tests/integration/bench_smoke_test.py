#!/usr/bin/env python3
"""The comparison harness end to end: `bench/compare.py --quick --only tcp` writes a Markdown
table, JSON and a PNG holding a number for every peer. Timings are never asserted.
Usage: bench_smoke_test.py FRAGPROXY_BINARY"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PEERS = ("fragproxy", "haproxy", "haproxy-splice", "nginx", "socat", "direct")


def python_with_matplotlib():
    """Debian's python3-matplotlib is importable by /usr/bin/python3, maybe not by this one."""
    for exe in (sys.executable, "/usr/bin/python3"):
        if subprocess.run([exe, "-c", "import matplotlib"], capture_output=True).returncode == 0:
            return exe
    raise AssertionError("no python3 with matplotlib: run scripts/deps.sh")


with tempfile.TemporaryDirectory() as out:
    r = subprocess.run([python_with_matplotlib(), os.path.join(ROOT, "bench", "compare.py"),
                        "--fragproxy", sys.argv[1], "--quick", "--only", "tcp", "--out", out],
                       capture_output=True, text=True, timeout=300)
    print(r.stdout + r.stderr[-3000:])
    assert r.returncode == 0, f"compare.py exited {r.returncode}"
    written = [line.split(" ", 1)[1] for line in r.stdout.splitlines() if line.startswith("wrote ")]
    exts = sorted(os.path.splitext(p)[1] for p in written)
    assert exts == [".json", ".md", ".png"], written
    for p in written:
        assert os.path.dirname(p) == out and os.path.getsize(p) > 0, p
    base = os.path.splitext(written[0])[0]
    with open(base + ".png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", "not a PNG"
    with open(base + ".json") as f:
        tcp = json.load(f)["scenarios"]["tcp"]
    for peer in PEERS:
        for metric in ("1 stream Gbit/s", "8 streams Gbit/s"):
            v = tcp["summary"][peer][metric]["median"]
            assert isinstance(v, float) and v > 0, (peer, metric, v)
        assert tcp["summary"][peer]["1 stream Gbit/s"]["ratio"] > 0, peer
    with open(base + ".md") as f:
        md = f.read()
    for peer in PEERS:
        row = [line for line in md.splitlines() if line.startswith(f"| {peer} |")]
        assert row and any(c.isdigit() for c in row[0]), f"no figures for {peer} in the table"
    leftovers = subprocess.run(["pgrep", "-f", "fragproxy-bench-"], capture_output=True, text=True)
    assert not leftovers.stdout.strip(), "processes left behind: " + leftovers.stdout
print("ok bench smoke")
