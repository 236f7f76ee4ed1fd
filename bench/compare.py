#!/usr/bin/env python3
"""fragproxy vs HAProxy (also with splice-auto), nginx stream, socat and the direct path, on
loopback, peers in alternation, each round in its own shuffled order (A C B, B A C ...). Writes
<out>/<date>-<host>.md, .json and .png and prints where.

  bench/compare.py --fragproxy build-release/app/fragproxy [--quick] [--only tcp,udp]

Scenarios: tcp (iperf3 1 and 8 streams), cpu (proxy CPU s per GB over iperf3 -n), latency
(sockperf TCP ping-pong 64 B), connrate (wrk, Connection: close, to a local nginx), rps (wrk,
1,000 then 6,000 keep-alive connections, the same nginx: requests/s, CPU per request, p50/p99), memory (PSS
with idle connections, then after each sent 100 B), udp (iperf3 -u -b 0, 64 and 1400 B).
Traffic policy's cost: fragproxy-policy (routes by server name on every TCP listener, PROXY v2 to
the origin) in tcp, cpu, latency and connrate; fragproxy-4rr and fragproxy-4lc (the origin's four
ports, round robin and least_conn) in connrate."""
import argparse
import datetime
import os
import random
import shlex
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers as P  # noqa: E402
import report  # noqa: E402
from scenarios import SCENARIOS, Durations  # noqa: E402

TOOLS = ("iperf3", "sockperf", "wrk", "haproxy", "nginx", "socat")


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fragproxy", default="build-release/app/fragproxy")
    p.add_argument("--baseline", default="",
                   help="another fragproxy binary, measured as peer 'fragproxy-base' in the same "
                        "rounds (a change's cost, before and after in one run)")
    p.add_argument("--quick", action="store_true", help="one round, short runs")
    p.add_argument("--only", default="", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    p.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --quick)")
    p.add_argument("--peers", default="",
                   help="comma-separated peers to run (default: every peer a scenario takes, "
                        "but the ablation ones, fragproxy-coop, -plain, -nogso, -fds, "
                        "-nobundles, -zc, -nobatch; an ablation table compares them with fragproxy)")
    p.add_argument("--out", default=os.path.join(P.HERE, "results"))
    a = p.parse_args()
    a.only = [s for s in a.only.split(",") if s] or list(SCENARIOS)
    bad = [s for s in a.only if s not in SCENARIOS]
    if bad:
        p.error(f"unknown scenario {', '.join(bad)} (known: {', '.join(SCENARIOS)})")
    a.rounds = a.rounds or (1 if a.quick else 3)
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        p.error(f"missing {', '.join(missing)}: run scripts/deps.sh")
    if not os.access(a.fragproxy, os.X_OK):
        p.error(f"{a.fragproxy}: not an executable (build it first: scripts/bench.sh does)")
    return a


class Progress:
    def __init__(self):
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()

    def __call__(self, scenario, peer, rnd, rounds):
        e = int(time.monotonic() - self.t0)
        line = f"[{e // 60:3d}m{e % 60:02d}s] {scenario:8} round {rnd}/{rounds}  {peer:14}"
        sys.stderr.write(("\r" + line) if self.tty else line + "\n")
        sys.stderr.flush()


def upstreams(procs, workdir):
    os.makedirs(os.path.join(workdir, "www"))
    with open(os.path.join(workdir, "www", "small.txt"), "w") as f:
        f.write("x" * 1024)
    up = {s: P.free_port() for s in (*P.SERVICES, *P.ORIGIN_PORTS)}
    procs.spawn("iperf3-server", ["iperf3", "-s", "-p", str(up["iperf"]), "-B", "127.0.0.1"])
    srv = procs.spawn("sockperf-server", ["sockperf", "server", "--tcp", "-i", "127.0.0.1", "-p",
                                          str(up["sockperf"])])
    P.fill("nginx-origin.conf", os.path.join(workdir, "origin.conf"),
           {"dir": workdir, **{"up_" + k: up[k] for k in ("http", *P.ORIGIN_PORTS)}})
    origin = procs.spawn("nginx-origin", ["nginx", "-c", os.path.join(workdir, "origin.conf"),
                                          "-p", workdir, "-e", os.path.join(workdir, "origin.err")])
    P.wait_tcp(up["http"], origin)
    time.sleep(0.5)  # iperf3 -s and sockperf: no probe (iperf3 counts a bare connect as a test)
    if srv.poll() is not None:
        raise RuntimeError("sockperf server exited at start")
    return up


def main():
    a = parse()
    # SIGINT even when started in the background (where it comes in ignored), SIGTERM and SIGHUP:
    # all end in the cleanup below.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    workdir = tempfile.mkdtemp(prefix="fragproxy-bench-")
    os.chmod(workdir, 0o755)  # nginx's workers (not root) read the origin's file
    procs = P.Processes(workdir)
    durations = Durations(a.quick)
    progress = Progress()
    results = {}
    try:
        up = upstreams(procs, workdir)
        everyone = [peer for peer in P.all_peers(os.path.abspath(a.baseline) if a.baseline else "")
                    if any(SCENARIOS[s][1](peer) and peer.takes(s) for s in a.only)
                    and (peer.name in a.peers.split(",") if a.peers
                         else peer.name not in P.ON_REQUEST)]
        for peer in everyone:
            peer.start(procs, up, workdir, os.path.abspath(a.fragproxy))
        for name in a.only:
            fn, applies, reference, better = SCENARIOS[name]
            group = [peer for peer in everyone if applies(peer) and peer.takes(name)]
            rounds = {peer.name: [] for peer in group}
            for rnd in range(1, a.rounds + 1):
                # Each round in its own order, shuffled with the round's number as the seed (the
                # same in every run): no peer always runs first, nor right after the same peer.
                # A peer's figures depend on what ran just before it (connrate leaves TIME_WAIT
                # sockets behind, the machine warms up; in rps, peers run right after a fragproxy
                # peer were 10-20% slower than after HAProxy or nginx), and rotating one order
                # would keep every peer's predecessor the same in every round.
                order = list(group)
                random.Random(rnd).shuffle(order)
                for peer in order:
                    progress(name, peer.name, rnd, a.rounds)
                    rounds[peer.name].append(fn(peer, durations))
            if name == "latency":
                report.add_latency_over_direct(rounds)
            results[name] = {"reference": reference, "better": better, "rounds": rounds,
                             "summary": report.summarize(rounds, reference)}
    except KeyboardInterrupt:
        print(f"\ninterrupted: stopping every process started (logs in {workdir})", file=sys.stderr)
        return 130
    except Exception:
        print(f"\nfailed: logs of every process in {workdir}", file=sys.stderr)
        raise
    finally:
        procs.stop()
        if sys.stderr.isatty():
            sys.stderr.write("\n")
    now = datetime.datetime.now()
    meta = {"date": now.strftime("%Y-%m-%d %H:%M"), "machine": report.machine(),
            "rounds": a.rounds, "quick": a.quick,
            "command": " ".join(shlex.quote(x) for x in sys.argv)}
    os.makedirs(a.out, exist_ok=True)
    # A partial run (--only, --baseline) gets its own name: it must not replace a full run's.
    tag = "" if set(a.only) == set(SCENARIOS) and not a.baseline else "-" + "-".join(a.only)
    tag += "-vs-baseline" if a.baseline else ""
    base = os.path.join(a.out, f"{now:%Y-%m-%d}-{meta['machine']['host']}{tag}")
    for path in report.write(results, meta, base):
        print(f"wrote {path}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
