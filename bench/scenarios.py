"""The six scenarios. Each measures one peer once and returns {metric: value}; the harness calls
it for every peer in alternation, round after round (each round in its own order). Loopback only."""
import asyncio
import json
import re
import resource
import subprocess
import time


class Durations:
    def __init__(self, quick):
        self.secs = 2 if quick else 5  # iperf3 TCP, sockperf, wrk
        self.bytes = "1G" if quick else "4G"  # CPU per GB
        self.idle = 500 if quick else 4000  # idle connections
        self.udp_secs = 1 if quick else 3


def iperf(port, *args):
    for attempt in range(3):  # the server may still be closing the previous test
        r = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-J", *args],
                           capture_output=True, text=True, timeout=900)
        try:
            j = json.loads(r.stdout)
        except json.JSONDecodeError:
            j = {"error": r.stderr.strip() or "no output"}
        if "error" not in j:
            return j["end"]
        time.sleep(1 + attempt)
    raise RuntimeError(f"iperf3 {' '.join(args)}: {j['error']}")


def tcp(peer, d):
    port = peer.ports["iperf"]
    one = iperf(port, "-t", str(d.secs))["sum_received"]["bits_per_second"] / 1e9
    eight = iperf(port, "-t", str(d.secs), "-P", "8")["sum_received"]["bits_per_second"] / 1e9
    return {"1 stream Gbit/s": one, "8 streams Gbit/s": eight}


def cpu(peer, d):
    """CPU per GB; for fragproxy also its CQEs and io_uring_enter calls per GB (the wakeups and
    passes a GB costs), read from its counters before and after, outside the CPU measurement."""
    ring = peer.ring_counts()
    before = peer.cpu_seconds()
    got = iperf(peer.ports["iperf"], "-n", d.bytes)["sum_received"]["bytes"]
    out = {"CPU s per GB": (peer.cpu_seconds() - before) / (got / 1e9)}
    if ring is not None:
        after = peer.ring_counts()
        out["CQEs per GB"] = (after["cqes"] - ring["cqes"]) / (got / 1e9)
        out["enters per GB"] = (after["enters"] - ring["enters"]) / (got / 1e9)
    return out


def latency(peer, d):
    r = subprocess.run(["sockperf", "ping-pong", "--tcp", "-i", "127.0.0.1", "-p",
                        str(peer.ports["sockperf"]), "-m", "64", "-t", str(d.secs), "--full-rtt"],
                       capture_output=True, text=True, timeout=120)
    pct = dict(re.findall(r"percentile (\d+\.\d+) =\s+([\d.]+)", r.stdout + r.stderr))
    if "50.000" not in pct:
        raise RuntimeError("sockperf: no percentiles in its output:\n" + r.stdout[-2000:])
    return {"p50 RTT us": float(pct["50.000"]), "p99 RTT us": float(pct["99.000"]),
            "p99.9 RTT us": float(pct["99.900"])}


def connrate(peer, d):
    before = peer.cpu_seconds()
    r = subprocess.run(["wrk", "-t", "2", "-c", "32", "-d", f"{d.secs}s", "-H",
                        "Connection: close", f"http://127.0.0.1:{peer.ports['http']}/small.txt"],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    if not m:
        raise RuntimeError("wrk: no rate in its output:\n" + r.stdout + r.stderr)
    errors = re.search(r"Socket errors: (.*)", r.stdout)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    if non2xx:
        raise RuntimeError(f"wrk: {non2xx.group(1)} failed responses through {peer.name}")
    out = {"connections/s": float(m.group(1)),
           "socket errors": sum(int(x) for x in re.findall(r"\d+", errors.group(1)))
           if errors else 0}
    done = re.search(r"(\d+) requests in", r.stdout)
    if peer.procs and done and int(done.group(1)):  # the proxy's own cost, which the rate hides
        out["CPU us per connection"] = (peer.cpu_seconds() - before) * 1e6 / int(done.group(1))
    return out


def wrk_latency_us(text, pct):
    """A percentile of wrk's --latency distribution, in microseconds."""
    m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        raise RuntimeError(f"wrk: no {pct}% latency in its output:\n" + text)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


# rps's second measurement: as many keep-alive connections as every peer can hold under the
# 20,000 open files a process may have here: a proxy holds two per connection, HAProxy's
# configuration caps it at 7,000 (bench/peers/haproxy.cfg), so 10,000 does not fit.
RPS_MANY = 6000


def rps(peer, d):
    """Concurrent keep-alive connections exchanging small requests and responses through the
    peer to the nginx origin (wrk -c 1000, then -c RPS_MANY): requests/s, the proxy's CPU per
    request, and latency percentiles from wrk's own distribution."""
    out = {}
    for conns in (1000, RPS_MANY):
        label = "" if conns == 1000 else f"{conns:,}: "
        got = keepalive(peer, d, conns)
        if conns == 1000:
            got.pop("socket errors")
        out.update({label + k: v for k, v in got.items()})
    return out


def keepalive(peer, d, conns):
    """One wrk run of rps: `conns` keep-alive connections for d.secs."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    before = peer.cpu_seconds()
    r = subprocess.run(["wrk", "-t", "2", "-c", str(conns), "-d", f"{d.secs}s", "--latency",
                        f"http://127.0.0.1:{peer.ports['http']}/small.txt"],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    done = re.search(r"(\d+) requests in", r.stdout)
    if not m or not done:
        raise RuntimeError("wrk: no rate in its output:\n" + r.stdout + r.stderr)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    if non2xx:
        raise RuntimeError(f"wrk: {non2xx.group(1)} failed responses through {peer.name}")
    errors = re.search(r"Socket errors: (.*)", r.stdout)
    out = {"requests/s": float(m.group(1)), "p50 us": wrk_latency_us(r.stdout, 50),
           "p99 us": wrk_latency_us(r.stdout, 99),
           "socket errors": (sum(int(x) for x in re.findall(r"\d+", errors.group(1)))
                             if errors else 0)}
    if peer.procs and int(done.group(1)):
        out["CPU us per request"] = (peer.cpu_seconds() - before) * 1e6 / int(done.group(1))
    return out


def memory(peer, d):
    """PSS of a freshly started proxy, with d.idle idle connections, then after each sent 100
    bytes."""
    peer.restart()
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)

    async def run():
        held, got = [], [0]

        async def hold(r, w):
            held.append(w)
            while True:
                b = await r.read(1024)
                if not b:
                    return
                got[0] += len(b)

        srv = await asyncio.start_server(hold, "127.0.0.1", peer.upstream["hold"], backlog=8192)
        await asyncio.sleep(0.5)
        base = peer.pss_kib()
        conns = []
        for _ in range(d.idle):
            conns.append(await asyncio.open_connection("127.0.0.1", peer.ports["hold"]))
        while len(held) < d.idle:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        idle = peer.pss_kib()
        for _, w in conns:
            w.write(b"x" * 100)
        while got[0] < 100 * d.idle:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        after = peer.pss_kib()
        for _, w in conns:
            w.close()
        for w in held:
            w.close()
        srv.close()
        await srv.wait_closed()
        await asyncio.sleep(1.0)
        return base, idle, after

    base, idle, after = asyncio.run(run())
    return {"base MiB": base / 1024, "idle MiB": idle / 1024, "after 100 B MiB": after / 1024,
            "idle bytes/conn": (idle - base) * 1024 / d.idle,
            "after 100 B, bytes/conn": (after - base) * 1024 / d.idle}


def udp(peer, d):
    out = {}
    for size in (64, 1400):
        s = iperf(peer.ports["iperf"], "-u", "-b", "0", "-l", str(size), "-t",
                  str(d.udp_secs))["sum"]
        out[f"{size} B datagrams/s"] = s["packets"] * (1 - s["lost_percent"] / 100) / s["seconds"]
        out[f"{size} B loss %"] = s["lost_percent"]
    return out


# name: (function, peers it applies to, reference peer for ratios, what is better)
SCENARIOS = {
    "tcp": (tcp, lambda p: True, "haproxy", "higher"),
    "cpu": (cpu, lambda p: p.proxy, "haproxy", "lower"),
    "latency": (latency, lambda p: True, "haproxy", "lower"),
    "connrate": (connrate, lambda p: True, "haproxy", "higher"),
    # (socat forks a process per connection: not at 1,000 at once)
    "rps": (rps, lambda p: p.name != "socat", "haproxy", "higher"),
    "memory": (memory, lambda p: p.proxy, "haproxy", "lower"),
    "udp": (udp, lambda p: p.udp, "nginx", "higher"),
}
