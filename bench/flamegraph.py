#!/usr/bin/env python3
"""A flame graph of fragproxy under iperf3 (TCP streams or UDP), on loopback: where its CPU goes.

Usage: bench/flamegraph.py --fragproxy build/app/fragproxy [--seconds 5] [--streams 1 | --udp 64]
                           [--config-line 'io_uring: {bundles: false}'] --out bench/results/NAME

Starts fragproxy (bench/peers/fragproxy.yaml, its iperf listener only carrying traffic), an iperf3
server and client through it, samples the proxy's threads with `perf record -g` while the stream
runs, and writes NAME.png (the flame graph: a stack per column, its width the
share of samples; kernel frames, marked _[k], warm; the process's own blue). Also prints the
heaviest frames by the samples that include them (also in NAME.md); --folded also writes
NAME.folded (one line per call stack, root first, and its samples: the usual tools' format). Needs perf and matplotlib (python3-matplotlib)."""
import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import Processes, fill, free_port, wait_tcp  # noqa: E402


def folded(perf_data):
    """perf script's samples as {"root;...;leaf": count}."""
    out = subprocess.run(["perf", "script", "-i", perf_data, "-F", "comm,ip,sym"],
                         capture_output=True, text=True, check=True).stdout
    stacks = collections.Counter()
    frames, comm = [], None
    for line in out.splitlines() + [""]:
        if not line.strip():
            if comm is not None:
                stacks[";".join([comm, *reversed(frames)])] += 1
            frames, comm = [], None
        elif comm is None:
            comm = line.strip().split()[0]
        else:
            parts = line.split(None, 1)
            sym = parts[1].split("+0x")[0].strip() if len(parts) > 1 else "?"
            sym = sym if sym != "[unknown]" else "?"
            kernel = int(parts[0], 16) >= 0xffff800000000000  # the kernel's half
            frames.append(sym + "_[k]" if kernel else sym)  # the usual tools' mark
    return stacks


def heaviest(stacks, n=10):
    """The frames with the most samples under them (each counted once per stack)."""
    total = sum(stacks.values())
    inclusive = collections.Counter()
    for stack, count in stacks.items():
        for frame in set(stack.split(";")[1:]):
            inclusive[frame] += count
    return [(f, c / total) for f, c in inclusive.most_common(n)]


def plot(stacks, title, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    tree = {}  # frame -> [count, children]
    for stack, count in stacks.items():
        level = tree
        for frame in stack.split(";"):
            node = level.setdefault(frame, [0, {}])
            node[0] += count
            level = node[1]
    total = sum(stacks.values())
    depth = [0]
    fig, ax = plt.subplots(figsize=(16, 9))

    def draw(level, x, y):
        depth[0] = max(depth[0], y + 1)
        for frame, (count, children) in sorted(level.items()):
            w = count / total
            kernel = frame.endswith("_[k]")
            h = (sum(map(ord, frame)) % 40) / 100  # stable across runs
            color = (0.95, 0.35 + h, 0.1) if kernel else (0.3 + h / 2, 0.5 + h / 2, 0.95)
            ax.add_patch(Rectangle((x, y), w, 0.95, facecolor=color, edgecolor="white", lw=0.2))
            if w > 0.02:
                label = frame.removesuffix("_[k]")[:int(w * 180)]
                ax.text(x + 0.002, y + 0.45, label, fontsize=6, va="center",
                        clip_on=True)
            draw(children, x, y + 1)
            x += w

    draw(tree, 0.0, 0)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, depth[0])
    ax.set_yticks([])
    ax.set_xlabel("share of the proxy's samples")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fragproxy", required=True)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--streams", type=int, default=1)
    ap.add_argument("--udp", type=int, default=0, metavar="BYTES",
                    help="UDP datagrams of this size instead (iperf3 -u -b 0 -l BYTES)")
    ap.add_argument("--config-line", default="", help="a line appended to the peer's config")
    ap.add_argument("--out", required=True, help="path prefix of NAME.png and NAME.md")
    ap.add_argument("--folded", action="store_true", help="also write NAME.folded")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="fp-flame-")
    procs = Processes(work)
    try:
        ports = {s: free_port() for s in ("iperf", "sockperf", "http", "hold")}
        ups = {"up_" + s: free_port() for s in ports}
        cfg = os.path.join(work, "fragproxy.yaml")
        fill("fragproxy.yaml", cfg, {**ports, **ups})
        if a.config_line:
            with open(cfg, "a") as f:
                f.write(a.config_line + "\n")
        srv = procs.spawn("iperf3-server", ["iperf3", "-s", "-p", str(ups["up_iperf"]),
                                            "-B", "127.0.0.1"])
        proxy = procs.spawn("fragproxy", [os.path.abspath(a.fragproxy), "-c", cfg])
        wait_tcp(ports["iperf"], proxy)
        time.sleep(0.5)  # iperf3 -s: no probe (it counts a bare connect as a test)
        if srv.poll() is not None:
            raise RuntimeError("iperf3 -s exited at start")
        client = procs.spawn("iperf3-client", ["iperf3", "-c", "127.0.0.1", "-p",
                                               str(ports["iperf"]), "-t", str(a.seconds + 2),
                                               "-P", str(a.streams),
                                               *(["-u", "-b", "0", "-l", str(a.udp)] if a.udp
                                                 else [])])
        time.sleep(1)  # past the start of the stream
        data = os.path.join(work, "perf.data")
        subprocess.run(["perf", "record", "-q", "-g", "-F", "999", "-o", data, "-p",
                        str(proxy.pid), "--", "sleep", str(a.seconds)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client.wait(timeout=a.seconds + 30)
        stacks = folded(data)
    finally:
        procs.stop()
    if a.folded:
        with open(a.out + ".folded", "w") as f:
            for stack, count in sorted(stacks.items()):
                f.write(f"{stack} {count}\n")
    what = f"-u -l {a.udp}" if a.udp else f"-P {a.streams}"
    title = (f"fragproxy, iperf3 {what} through it, {a.seconds} s of perf record -g "
             f"-F 999 ({sum(stacks.values())} samples) {a.config_line}")
    plot(stacks, title, a.out + ".png")
    lines = [f"  {share * 100:5.1f}%  {frame}" for frame, share in heaviest(stacks, 30)]
    with open(a.out + ".md", "w") as f:
        f.write(f"# {title}\n\nCommand: `bench/flamegraph.py {' '.join(sys.argv[1:])}`\n\n"
                f"![flame graph]({os.path.basename(a.out)}.png)\n\nHeaviest frames (share of "
                f"the samples that include them; _[k]: the kernel's):\n\n```\n"
                + "\n".join(lines) + "\n```\n")
    print(f"wrote {a.out}.png and {a.out}.md; heaviest frames:")
    print("\n".join(lines[:16]))


if __name__ == "__main__":
    main()
