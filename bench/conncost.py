#!/usr/bin/env python3
"""Where a new connection's (or a request's) CPU goes, in fragproxy and the other proxies, one run.
Needs perf (Debian's linux-perf).

Usage: bench/conncost.py --fragproxy build/app/fragproxy [--peers fragproxy,haproxy,nginx]
                         [--scenario connrate|rps] [--rounds 3] [--seconds 5] --out NAME

The connrate scenario of bench/compare.py (wrk, 2 threads, 32 connections, `Connection: close`,
through the peer to the local nginx origin), or with --scenario rps its first half (1,000
keep-alive connections, per request), with `perf record -g` on the peer's processes for the
same seconds. Each sample goes to the first operation on its stack, root first: the kernel's
work for one TCP connection, which every proxy does (connect, close, shutdown, send, receive,
accept, socket, socket options; each with the loopback's delivery to the other end, which runs
in the sender's context), or else to what the proxy adds around it (io-wq threads, context
switches, io_uring's submission and completion, epoll, userspace). Shares times the peer's CPU
per connection or request (from /proc, over the same seconds) give microseconds for each; peers
alternate within each round (its own shuffled order) and the medians are reported. Writes NAME.md
and NAME.json."""
import argparse
import datetime
import errno
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers as P  # noqa: E402
import report  # noqa: E402
from compare import upstreams  # noqa: E402
from flamegraph import folded  # noqa: E402
from scenarios import Durations, connrate, keepalive  # noqa: E402

# The kernel's operations on a TCP connection, by the frames that start them (io_uring's,
# syscalls').
OPERATIONS = {
    "connect": ("io_connect", "__sys_connect"),
    "close": ("io_close", "__x64_sys_close", "__fput"),
    "shutdown": ("io_shutdown", "__sys_shutdown"),
    "send": ("tcp_sendmsg", "tcp_sendmsg_locked"),
    "receive": ("tcp_recvmsg", "tcp_read_sock"),
    "accept": ("do_accept", "io_accept", "__sys_accept4"),
    "socket": ("io_socket", "__sys_socket"),
    "socket options": ("io_uring_cmd", "__sys_setsockopt", "do_sock_setsockopt"),
}
FRAME_OP = {f + "_[k]": op for op, frames in OPERATIONS.items() for f in frames}
# What the proxy adds around them, in this order of precedence.
OVERHEAD = ("userspace", "io-wq threads (besides the operation)", "context switches",
            "epoll", "io_uring (submission, completion, task work)", "other kernel")


def classify(comm, frames):
    for f in frames:  # root first: the outermost operation owns the sample
        if f in FRAME_OP:
            return FRAME_OP[f]
    if not any(f.endswith("_[k]") for f in frames):
        return OVERHEAD[0]
    if comm.startswith("iou-wrk"):
        return OVERHEAD[1]
    names = set(frames)
    if "__schedule_[k]" in names:
        return OVERHEAD[2]
    if names & {"do_epoll_wait_[k]", "do_epoll_ctl_[k]", "ep_poll_[k]"}:
        return OVERHEAD[3]
    if any(f.startswith("io_") or "io_uring" in f for f in frames):
        return OVERHEAD[4]
    return OVERHEAD[5]


def breakdown(stacks):
    shares, total = {}, sum(stacks.values())
    for stack, count in stacks.items():
        comm, *frames = stack.split(";")
        what = classify(comm, frames)
        shares[what] = shares.get(what, 0) + count / total
    return shares


# What each scenario counts, and how it is run.
UNITS = {"connrate": ("connection", "connections/s", connrate),
         "rps": ("request", "requests/s", lambda peer, d: keepalive(peer, d, 1000))}


def enable(perf, ctl, ack, timeout=30):
    """Turns perf's events on through its control FIFO and waits for its ack ("ack\n\0")."""
    deadline = time.monotonic() + timeout
    got, c = b"", None
    a = os.open(ack, os.O_RDONLY | os.O_NONBLOCK)  # (opens with or without perf at the other end)
    try:
        while b"ack" not in got:
            if perf.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"perf record did not acknowledge 'enable' ({got!r}, "
                                   f"exit {perf.poll()})")
            if c is None:
                try:  # opens once perf holds the FIFO for reading
                    c = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK)
                    os.write(c, b"enable\n")
                except OSError as e:
                    if e.errno != errno.ENXIO:
                        raise
            try:
                got += os.read(a, 64)
            except BlockingIOError:
                pass
            time.sleep(0.01)
    finally:
        os.close(a)
        if c is not None:
            os.close(c)


def measure(peer, durations, work, scenario):
    pids = [p for proc in peer.procs for p in P.tree(proc.pid)]
    data = os.path.join(work, peer.name + ".perf.data")
    ctl, ack = os.path.join(work, "perf.ctl"), os.path.join(work, "perf.ack")
    for fifo in (ctl, ack):  # fresh ones: nothing left of the previous perf's
        if os.path.exists(fifo):
            os.unlink(fifo)
        os.mkfifo(fifo)
    # Started with its events off; on once perf says so (a SIGINT while it still attaches to
    # the threads leaves an empty file).
    perf = subprocess.Popen(["perf", "record", "-q", "-g", "-F", "999", "-o", data, "-D", "-1",
                             "--control", f"fifo:{ctl},{ack}", "-p", ",".join(map(str, pids))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    unit, rate, run = UNITS[scenario]
    try:
        enable(perf, ctl, ack)
        got = run(peer, durations)
    finally:
        perf.send_signal(2)
        perf.wait(timeout=60)
    us = got[f"CPU us per {unit}"]
    return {"rate": got[rate], "CPU us": us,
            "us": {k: v * us for k, v in breakdown(folded(data)).items()}}


def table(results, names, reference, scenario):
    unit, rate_name, _ = UNITS[scenario]
    rows = [*OPERATIONS, *OVERHEAD]
    med = {n: {r: statistics.median(x["us"].get(r, 0.0) for x in results[n]) for r in rows}
           for n in names}
    total = {n: statistics.median(x["CPU us"] for x in results[n]) for n in names}
    rate = {n: statistics.median(x["rate"] for x in results[n]) for n in names}
    kernel = {n: sum(med[n][r] for r in OPERATIONS) for n in names}
    out = [f"| us per {unit} (median) | " + " | ".join(names) + " |",
           "|---" * (len(names) + 1) + "|"]
    for r in rows:
        out.append(f"| {r} | " + " | ".join(f"{med[n][r]:.1f}" for n in names) + " |")
    out.append(f"| **the {unit}'s kernel work (sum of the operations)** | "
               + " | ".join(f"**{kernel[n]:.1f}**" for n in names) + " |")
    out.append("| **what the proxy adds (the rest)** | "
               + " | ".join(f"**{total[n] - kernel[n]:.1f}**" for n in names) + " |")
    out.append(f"| **CPU per {unit}** | "
               + " | ".join(f"**{total[n]:.1f}**" for n in names) + " |")
    out.append(f"| {rate_name} | " + " | ".join(f"{rate[n]:,.0f}" for n in names) + " |")
    ratios = {}
    if reference in results:  # per-round ratios, as compare.py reports them: the noise is shared
        def ratio(n, f):
            return statistics.median(f(x) / y["CPU us"]
                                     for x, y in zip(results[n], results[reference]))
        for label, f in ((f"CPU per {unit}, x {reference}'s", lambda x: x["CPU us"]),
                         (f"the kernel work alone, x {reference}'s CPU per {unit}",
                          lambda x: sum(x["us"].get(r, 0.0) for r in OPERATIONS))):
            ratios[label] = {n: ratio(n, f) for n in names}
            out.append(f"| {label} (median of per-round ratios) | "
                       + " | ".join(f"{ratios[label][n]:.2f}" for n in names) + " |")
    return "\n".join(out), {"unit": unit, "median_us": med, "cpu_us": total, "kernel_us": kernel,
                            "rate": rate, "ratios": ratios}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fragproxy", required=True)
    ap.add_argument("--peers", default="fragproxy,haproxy,nginx")
    ap.add_argument("--scenario", default="connrate", choices=sorted(UNITS))
    ap.add_argument("--reference", default="haproxy", help="the peer ratios are taken to")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--out", required=True, help="path prefix of NAME.md and NAME.json")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="fp-conncost-")
    os.chmod(work, 0o755)  # nginx's workers (not root) read the origin's file
    procs = P.Processes(work)
    durations = Durations(False)
    durations.secs = a.seconds
    names = a.peers.split(",")
    results = {n: [] for n in names}
    try:
        up = upstreams(procs, work)
        group = [p for p in P.all_peers("") if p.name in names]
        for peer in group:
            peer.start(procs, up, work, os.path.abspath(a.fragproxy))
        for peer in group:  # io-wq threads, TIME_WAIT sockets and caches as in the measured rounds
            UNITS[a.scenario][2](peer, Durations(True))
        for rnd in range(1, a.rounds + 1):
            order = list(group)
            random.Random(rnd).shuffle(order)
            for peer in order:
                print(f"round {rnd}/{a.rounds} {peer.name}", file=sys.stderr)
                results[peer.name].append(measure(peer, durations, work, a.scenario))
    finally:
        procs.stop()
    text, summary = table(results, names, a.reference, a.scenario)
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "command": " ".join(shlex.quote(x) for x in sys.argv), "rounds": a.rounds,
            "scenario": a.scenario,
            "machine": report.machine()}
    with open(a.out + ".json", "w") as f:
        json.dump({"meta": meta, "rounds": results, "summary": summary}, f, indent=1)
    with open(a.out + ".md", "w") as f:
        m = meta["machine"]
        what = "a new connection's" if a.scenario == "connrate" else "a request's"
        f.write(f"# Where {what} CPU goes ({meta['date']}, {m['cpu']}, "
                f"{m['cores']} cores, Linux {m['kernel']})\n\nCommand: `{meta['command']}`; "
                f"{a.rounds} rounds of {a.seconds} s, medians (perf's sampling included in the CPU "
                f"figures, for every peer alike)\n\n{text}\n")
    print(text)
    shutil.rmtree(work, ignore_errors=True)  # (left behind on a failure: the logs are there)


if __name__ == "__main__":
    main()
