#!/usr/bin/env python3
"""TCP comparison in one run, peers in alternation (A B C A B C ...): iperf3 1 stream and -P 8
through fragproxy, HAProxy (tcp mode) and the direct path; each proxy's CPU seconds per GB over a
fixed `iperf3 -n`; each proxy's RSS with N idle connections. Prints medians and ratios to HAProxy
from the same run. Loopback only. Usage: bench/tcp_compare.py FRAGPROXY [--rounds 3] [--secs 5]
[--bytes 10G] [--idle 4000]"""
import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from harness import free_port  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("fragproxy")
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--secs", type=int, default=5)
p.add_argument("--bytes", default="10G")
p.add_argument("--idle", type=int, default=4000)
p.add_argument("--workers", type=int, default=2)
a = p.parse_args()

TICK = os.sysconf("SC_CLK_TCK")
procs = []


def spawn(cmd, **kw):
    pr = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    procs.append(pr)
    return pr


def wait_port(port):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def iperf(port, *args):
    r = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-J", *args],
                       capture_output=True, text=True, timeout=600)
    j = json.loads(r.stdout)
    if "error" in j:
        raise RuntimeError(j["error"])
    return j["end"]["sum_received"]["bits_per_second"] / 1e9, j["end"]["sum_received"]["bytes"]


iperf_port, upstream_hold = free_port(), free_port()
spawn(["iperf3", "-s", "-p", str(iperf_port), "-B", "127.0.0.1"])
time.sleep(0.5)  # no probe: iperf3 -s takes a bare connect for a failed test

fp_port, hap_port = free_port(), free_port()
cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
cfg.write(f"""workers: {a.workers}
listeners:
  - name: iperf
    listen: 127.0.0.1:{fp_port}
    upstreams: [127.0.0.1:{iperf_port}]
    max_connections: 9000
  - name: hold
    listen: 127.0.0.1:{fp_port + 1 if False else free_port()}
    upstreams: [127.0.0.1:{upstream_hold}]
    max_connections: 9000
""")
cfg.close()
hap = tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False)
hap_hold = free_port()
hap.write(f"""global
    maxconn 9000
    nbthread {a.workers}
defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend iperf
    bind 127.0.0.1:{hap_port}
    default_backend iperf
backend iperf
    server s1 127.0.0.1:{iperf_port}
frontend hold
    bind 127.0.0.1:{hap_hold}
    default_backend hold
backend hold
    server s1 127.0.0.1:{upstream_hold}
""")
hap.close()

try:
    fp = spawn([a.fragproxy, "-c", cfg.name])
    haproxy = spawn(["haproxy", "-f", hap.name, "-db"])
    wait_port(fp_port)
    wait_port(hap_port)
    fp_hold = int(open(cfg.name).read().split("listen: 127.0.0.1:")[2].split()[0])
    peers = {"fragproxy": (fp_port, fp, fp_hold), "haproxy": (hap_port, haproxy, hap_hold),
             "direct": (iperf_port, None, None)}
    res = {k: {"1": [], "8": [], "cpu": []} for k in peers}
    for rnd in range(a.rounds):
        for name, (port, proc, _) in peers.items():
            print(f"round {rnd + 1}/{a.rounds} {name}", file=sys.stderr, flush=True)
            res[name]["1"].append(iperf(port, "-t", str(a.secs))[0])
            res[name]["8"].append(iperf(port, "-t", str(a.secs), "-P", "8")[0])
            if proc:
                c0 = cpu_seconds(proc.pid)
                _, nbytes = iperf(port, "-n", a.bytes)
                res[name]["cpu"].append((cpu_seconds(proc.pid) - c0) / (nbytes / 1e9))

    # Idle connections: an upstream that accepts and holds, N clients through each proxy.
    async def idle_rss():
        held_up = []

        async def hold(r, w):
            held_up.append(w)
            await r.read()

        srv = await asyncio.start_server(hold, "127.0.0.1", upstream_hold, backlog=8192)
        out = {}
        for name, (_, proc, port) in peers.items():
            if not proc:
                continue
            base = rss_kib(proc.pid)
            conns = []
            for _ in range(a.idle):
                conns.append(await asyncio.open_connection("127.0.0.1", port))
            await asyncio.sleep(1.0)
            after = rss_kib(proc.pid)
            out[name] = (base, after, (after - base) * 1024 / a.idle)
            for _, w in conns:
                w.close()
            await asyncio.sleep(1.0)
        srv.close()
        return out

    idle = asyncio.run(idle_rss())
finally:
    for pr in procs:
        pr.terminate()
    for pr in procs:
        pr.wait()
    os.unlink(cfg.name)
    os.unlink(hap.name)

med = {k: {m: statistics.median(v) if v else None for m, v in d.items()} for k, d in res.items()}
print(f"\nTCP, {a.rounds} rounds alternating, {a.workers} workers/threads per proxy, medians"
      f" (spread min-max):")
for m, label in (("1", "iperf3 1 stream, Gbit/s"), ("8", "iperf3 -P 8, Gbit/s"),
                 ("cpu", f"proxy CPU s per GB (iperf3 -n {a.bytes})")):
    print(f"  {label}")
    for k in peers:
        v = res[k][m]
        if not v:
            continue
        ratio = med[k][m] / med["haproxy"][m]
        print(f"    {k:10} {med[k][m]:8.3f}  ({min(v):.3f}-{max(v):.3f})  x haproxy {ratio:.2f}")
print(f"  RSS with {a.idle} idle connections")
for k, (base, after, per) in idle.items():
    print(f"    {k:10} {base} KiB -> {after} KiB: {per:.0f} bytes per connection")
