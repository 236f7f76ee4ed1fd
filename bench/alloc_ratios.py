#!/usr/bin/env python3
"""Runs bench/alloc_bench once (interleaved repetitions, JSON) and prints, per fragment size,
the median time of each allocator and FragCache's speed-up over malloc and the naive allocator,
all from the same run: on one thread, then freed on another (the bm_cross_* benchmarks, wall
time: both threads work). Usage: bench/alloc_ratios.py BUILD_DIR [--reps N] [--min-time S]"""
import argparse
import json
import statistics
import subprocess
import sys

p = argparse.ArgumentParser()
p.add_argument("build_dir")
p.add_argument("--reps", type=int, default=5)
p.add_argument("--min-time", default="0.1")
a = p.parse_args()

out = subprocess.run(
    [f"{a.build_dir}/bench/alloc_bench", "--benchmark_format=json",
     f"--benchmark_repetitions={a.reps}", "--benchmark_enable_random_interleaving=true",
     f"--benchmark_min_time={a.min_time}"],
    check=True, capture_output=True, text=True).stdout
runs = {}
for b in json.loads(out)["benchmarks"]:
    if b.get("run_type") != "iteration":
        continue
    run = b["run_name"]
    if run.endswith("/real_time"):  # the cross-thread ones: wall time of the owner's loop
        name, size = run.removesuffix("/real_time").rsplit("/", 1)
        runs.setdefault((name, int(size)), []).append(b["real_time"])
        continue
    name, size = run.rsplit("/", 1)
    runs.setdefault((name, int(size)), []).append(b["cpu_time"])
med = {k: statistics.median(v) for k, v in runs.items()}
sizes = sorted({s for _, s in med})
print(f"{'size':>6} {'frag_cache':>11} {'atomic_free':>11} {'naive':>9} {'malloc':>10}"
      f" {'x malloc':>9} {'x naive':>8}   (ns per batch of 32, median of {a.reps})")
ok = True
for s in sizes:
    fc, af = med[("bm_frag_cache", s)], med[("bm_frag_cache_atomic_free", s)]
    nv, ml = med[("bm_naive_atomic", s)], med[("bm_malloc", s)]
    rm, rn = ml / fc, nv / fc
    ok &= rm >= 4 and rn >= 1.5
    print(f"{s:>6} {fc:>11.1f} {af:>11.1f} {nv:>9.1f} {ml:>10.1f} {rm:>8.2f}x {rn:>7.2f}x")
print("targets (>= 4x malloc, >= 1.5x naive at every size):", "met" if ok else "NOT met")
print(f"\nfreed on another thread (ns per batch of 32 handed over, wall time, median of {a.reps})")
print(f"{'size':>6} {'frag_cache':>11} {'naive':>9} {'malloc':>10} {'x malloc':>9} {'x naive':>8}")
for s in sizes:
    fc, nv = med[("bm_cross_frag_cache", s)], med[("bm_cross_naive_atomic", s)]
    ml = med[("bm_cross_malloc", s)]
    print(f"{s:>6} {fc:>11.1f} {nv:>9.1f} {ml:>10.1f} {ml / fc:>8.2f}x {nv / fc:>7.2f}x")
sys.exit(0)
