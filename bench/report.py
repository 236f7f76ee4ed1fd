"""Summaries and the three outputs of a comparison: Markdown table, JSON (raw figures per round
and the summary) and a PNG of the ratios, one panel per scenario. Run on its own, it renders the
table and the plot again from a JSON file: bench/report.py bench/results/DATE-HOST.json"""
import json
import os
import platform
import statistics
import sys

# Figures each panel of the plot shows as ratios; the table shows every figure.
HEADLINE = {
    "tcp": ["1 stream Gbit/s", "8 streams Gbit/s"],
    "cpu": ["CPU s per GB"],
    "latency": ["p50 added us", "p99 added us", "p99.9 added us"],
    "connrate": ["connections/s"],
    "rps": ["requests/s", "CPU us per request", "6,000: requests/s", "6,000: CPU us per request"],
    "memory": ["idle bytes/conn", "after 100 B, bytes/conn"],
    "udp": ["64 B datagrams/s", "1400 B datagrams/s"],
}
COLORS = {"fragproxy": "tab:blue", "fragproxy-base": "tab:cyan", "fragproxy-fragments": "tab:olive",
          "fragproxy-observed": "tab:pink", "fragproxy-policy": "tab:gray",
          "fragproxy-4rr": "darkblue", "fragproxy-4lc": "steelblue", "fragproxy-epoll": "olive",
          "fragproxy-pp2": "dimgray", "fragproxy-sni": "silver", "haproxy": "tab:orange",
          "haproxy-splice": "tab:green", "nginx": "tab:red", "socat": "tab:purple",
          "direct": "tab:brown", "fragproxy-coop": "khaki", "fragproxy-plain": "gold",
          "fragproxy-nogso": "salmon", "fragproxy-fds": "tan",
          "fragproxy-nobundles": "peru", "fragproxy-zc": "olive", "fragproxy-nobatch": "orchid"}
NO_RATIO = {"socket errors", "6,000: socket errors", "64 B loss %", "1400 B loss %", "p50 RTT us", "p99 RTT us",
            "p99.9 RTT us", "base MiB", "idle MiB", "after 100 B MiB",
            "CQEs per GB", "enters per GB"}  # (fragproxy's own: no reference has them)


def machine():
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_gib = int(f.readline().split()[1]) / 2**20
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
            "memory GiB": round(mem_gib, 1), "kernel": platform.release()}


def add_latency_over_direct(rounds):
    """RTT added over the direct path, from the same round."""
    direct = rounds.get("direct")
    if not direct:
        return
    for peer, runs in rounds.items():
        if peer == "direct":
            continue
        for i, r in enumerate(runs):
            if i < len(direct):
                for q in ("p50", "p99", "p99.9"):
                    r[f"{q} added us"] = r[f"{q} RTT us"] - direct[i][f"{q} RTT us"]


def summarize(rounds, reference):
    """{peer: {metric: {median, min, max, ratio}}}; ratio: median over rounds of peer/reference,
    each taken in the same round; none where a figure is not positive (an added latency within
    the noise of the direct path)."""
    out = {}
    ref = rounds.get(reference, [])
    for peer, runs in rounds.items():
        out[peer] = {}
        for metric in runs[0] if runs else []:
            vals = [r[metric] for r in runs if metric in r]
            s = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
            ratios = [r[metric] / ref[i][metric] for i, r in enumerate(runs)
                      if i < len(ref) and metric in ref[i] and ref[i][metric] > 0
                      and r[metric] > 0]
            if ratios and metric not in NO_RATIO:
                s["ratio"] = statistics.median(ratios)
            out[peer][metric] = s
    return out


def fmt(v):
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def markdown(results, meta):
    m = meta["machine"]
    lines = [f"# fragproxy comparison, {meta['date']}", "",
             f"Machine: {m['host']}, {m['cpu']}, {m['cores']} cores, {m['memory GiB']} GiB, "
             f"Linux {m['kernel']}. Everything on loopback: clients, peers and upstreams share "
             "the cores.", "",
             f"Command: `{meta['command']}`; {meta['rounds']} round(s), peers in alternation (each "
             "round in its own order). "
             "Each cell: median (min-max over rounds) and the ratio to the reference peer from "
             "the same round.", ""]
    for name, sc in results.items():
        metrics = []  # every peer's, in order of first appearance
        for ms in sc["summary"].values():
            metrics += [m for m in ms if m not in metrics]
        lines += [f"## {name} (ratios: x {sc['reference']}, {sc['better']} is better)", "",
                  "| peer | " + " | ".join(metrics) + " |",
                  "|---|" + "---|" * len(metrics)]
        for peer, ms in sc["summary"].items():
            cells = []
            for metric in metrics:
                s = ms.get(metric)
                if not s:
                    cells.append("")
                    continue
                cell = f"{fmt(s['median'])} ({fmt(s['min'])}-{fmt(s['max'])})"
                if "ratio" in s:
                    cell += f" **x{s['ratio']:.2f}**"
                cells.append(cell)
            lines.append(f"| {peer} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n" + ablation(results)


# The ablation table's columns: (scenario, figure, heading); latency as RTT (an added latency
# within the direct path's noise has no meaningful ratio).
ABLATION_COLUMNS = [
    ("tcp", "1 stream Gbit/s", "1 stream"), ("tcp", "8 streams Gbit/s", "8 streams"),
    ("cpu", "CPU s per GB", "CPU per GB"), ("cpu", "CQEs per GB", "CQEs per GB"),
    ("latency", "p50 RTT us", "p50 RTT"), ("latency", "p99 RTT us", "p99 RTT"),
    ("udp", "64 B datagrams/s", "UDP 64 B/s"), ("udp", "1400 B datagrams/s", "UDP 1400 B/s"),
    ("connrate", "connections/s", "conn/s"),
    ("connrate", "CPU us per connection", "CPU per conn"),
    ("rps", "requests/s", "1,000: req/s"), ("rps", "CPU us per request", "1,000: CPU per req"),
]


def ablation(results):
    """What each optimisation is worth: each ablation peer (fragproxy with one optimisation
    turned off, or on, by its config) and each variant (the epoll backend, fragproxy observed)
    against fragproxy, per round, medians (ranges) of the ratios. Empty when the run has none."""
    from peers import ABLATIONS, VARIANTS
    ABLATIONS = {**ABLATIONS, **VARIANTS}
    rows = {}
    for name, sc in results.items():
        rounds = sc.get("rounds", {})
        base = rounds.get("fragproxy")
        if not base:
            continue
        for peer in ABLATIONS:
            for i, r in enumerate(rounds.get(peer, [])):
                for scen, fig, head in ABLATION_COLUMNS:
                    if scen == name and fig in r and i < len(base) and base[i].get(fig, 0) > 0:
                        rows.setdefault(peer, {}).setdefault(head, []).append(
                            r[fig] / base[i][fig])
    if not rows:
        return ""
    heads = [h for _, _, h in ABLATION_COLUMNS if any(h in r for r in rows.values())]
    lines = ["## ablation (ratios: x fragproxy in the same round, median (min-max))", "",
             "| peer (config) | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for peer in ABLATIONS:
        if peer not in rows:
            continue
        cells = []
        for h in heads:
            v = rows[peer].get(h)
            cells.append("" if not v else f"{statistics.median(v):.2f}" +
                         (f" ({min(v):.2f}-{max(v):.2f})" if len(v) > 1 else ""))
        lines.append(f"| {peer} (`{ABLATIONS[peer]}`) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results, meta, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        sc = results[name]
        metrics = HEADLINE[name]
        peers = [p for p in sc["summary"] if any("ratio" in sc["summary"][p].get(m, {})
                                                 for m in metrics)]
        width = 0.8 / max(1, len(peers))
        for i, peer in enumerate(peers):
            vals = [sc["summary"][peer].get(m, {}).get("ratio", 0) for m in metrics]
            xs = [j + (i - (len(peers) - 1) / 2) * width for j in range(len(metrics))]
            bars = ax.bar(xs, vals, width, label=peer, color=COLORS.get(peer))
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for the legend above the bars
        ax.set_xticks(range(len(metrics)), metrics, fontsize=8)
        ax.set_title(f"{name}: x {sc['reference']} ({sc['better']} is better)", fontsize=10)
        ax.legend(fontsize=7, ncol=3, loc="upper center")
    m = meta["machine"]
    fig.suptitle(f"fragproxy vs peers, {meta['date']}, {m['cpu']}, {m['cores']} cores, "
                 f"{meta['rounds']} round(s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render(json_path):
    with open(json_path) as f:
        data = json.load(f)
    results = data["scenarios"]
    for sc in results.values():
        sc["summary"] = summarize(sc["rounds"], sc["reference"])
    return write(results, data["meta"], os.path.splitext(json_path)[0])


def write(results, meta, base):
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "scenarios": results}, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(markdown(results, meta))
    plot(results, meta, base + ".png")
    return [base + ext for ext in (".md", ".json", ".png")]


if __name__ == "__main__":
    for path in render(sys.argv[1]):
        print(f"wrote {path}")
