"""The peers of the comparison and the processes behind them. Every process is started in its
own process group, so stop() reaches the children socat forks too; not in its own session: with
the scheduler's autogroups (kernel.sched_autogroup_enabled) a new session would be a scheduling
group of its own, sharing the CPU per group instead of per thread, which skews every figure.
Configs are the templates in bench/peers/, filled with this run's loopback ports."""
import json
import os
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "peers")
TICK = os.sysconf("SC_CLK_TCK")
SERVICES = ("iperf", "sockperf", "http", "hold")  # what every peer forwards, each its own port
ORIGIN_PORTS = ("http2", "http3", "http4", "http_pp")  # the origin's other ports (policy peers)
# Peers measured only in some scenarios (the others: every scenario that applies).
POLICY_SCENARIOS = {"fragproxy-policy": {"tcp", "cpu", "latency", "connrate"},
                    "fragproxy-4rr": {"connrate"}, "fragproxy-4lc": {"connrate"},
                    "fragproxy-pp2": {"connrate"}, "fragproxy-sni": {"connrate"}}


def free_port():
    """A port free for TCP and UDP on 127.0.0.1 (iperf3 -u uses both on one port)."""
    while True:
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                    return port
                except OSError:
                    continue


def fill(template, out_path, values):
    with open(os.path.join(TEMPLATES, template)) as f:
        text = string.Template(f.read()).substitute(values)
    if out_path:
        with open(out_path, "w") as f:
            f.write(text)
    return text


def wait_tcp(port, proc, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited at start ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


class Processes:
    """Every process the harness started, for one cleanup that also runs on interruption."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.all = []

    def spawn(self, name, cmd):
        log = open(os.path.join(self.logdir, name + ".log"), "ab")
        group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             **group)
        log.close()
        self.all.append(p)
        return p

    def stop(self, procs=None):
        procs = self.all if procs is None else procs
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 5
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            try:  # forked children outlive their parent's exit: sweep the group
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.all = [p for p in self.all if p not in procs]


def tree(pid):
    """pid and its live descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pid):
    """User+system CPU of the process tree, including children already reaped (socat's)."""
    total = 0.0
    for i, p in enumerate(tree(pid)):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        if i == 0:
            total += int(fields[13]) + int(fields[14])
    return total / TICK


def pss_kib(pid):
    """Proportional set size of the process tree: shared pages counted once across processes."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


class Peer:
    """A way from client to upstream services: ports[service] is where a client connects."""

    def __init__(self, name, udp=True, proxy=True, binary=""):
        self.name, self.udp, self.proxy, self.binary = name, udp, proxy, binary
        self.ports, self.procs, self.stats_path = {}, [], None

    def takes(self, scenario):
        return scenario in POLICY_SCENARIOS.get(self.name, {scenario})

    def start(self, procs, upstream, workdir, fragproxy):
        self.upstream, self.args = upstream, (procs, workdir, fragproxy)
        if not self.proxy:
            self.ports = dict(upstream)
            return self
        self.ports = {s: free_port() for s in SERVICES}
        return self.launch()

    def restart(self):
        """A fresh process on the same ports (memory figures must not inherit earlier peaks)."""
        if self.proxy:
            self.args[0].stop(self.procs)
            self.launch()

    def launch(self):
        procs, workdir, fragproxy = self.args
        upstream = self.upstream
        values = dict(self.ports, dir=workdir, splice="")
        values.update({"up_" + s: p for s, p in upstream.items()})
        conf = os.path.join(workdir, self.name)
        self.stats_path = conf + ".stats.json" if self.name.startswith("fragproxy") else None
        stats = ["--stats-json", self.stats_path] if self.stats_path else []
        if self.name in ("fragproxy-4rr", "fragproxy-4lc"):
            values["balance"] = "round_robin" if self.name == "fragproxy-4rr" else "least_conn"
            fill("fragproxy-4.yaml", conf + ".yaml", values)
            self.procs = [procs.spawn(self.name, [fragproxy, "-c", conf + ".yaml", *stats])]
        elif self.name in ("fragproxy-pp2", "fragproxy-sni"):  # one policy each, HTTP only
            text = fill("fragproxy.yaml", None, values)
            http, http_pp = upstream["http"], upstream["http_pp"]
            plain = f'upstreams: ["127.0.0.1:{http}"]'
            assert text.count(plain) == 1, text
            if self.name == "fragproxy-pp2":  # PROXY v2 to the origin's proxy_protocol port
                policy = f'upstreams: ["127.0.0.1:{http_pp}"], send_proxy: v2'
            else:  # the first bytes read for a ClientHello (not TLS: the default route)
                policy = (f"routes: [{{sni: [bench.example], {plain}}}, "
                          f"{{default: true, {plain}}}]")
            with open(conf + ".yaml", "w") as f:
                f.write(text.replace(plain, policy))
            self.procs = [procs.spawn(self.name, [fragproxy, "-c", conf + ".yaml", *stats])]
        elif self.name == "fragproxy-policy":
            fill("fragproxy-policy.yaml", conf + ".yaml", values)
            self.procs = [procs.spawn(self.name, [fragproxy, "-c", conf + ".yaml", *stats])]
        elif self.name.startswith("fragproxy"):
            fill("fragproxy.yaml", conf + ".yaml", values)
            if self.name in ABLATIONS:  # fragproxy with one optimisation off
                with open(conf + ".yaml", "a") as f:
                    f.write(ABLATIONS[self.name] + "\n")
            if self.name == "fragproxy-epoll":  # the backend where io_uring is refused
                with open(conf + ".yaml", "a") as f:
                    f.write("backend: epoll\n")
            if self.name == "fragproxy-observed":  # as operated: admin endpoint, access log
                admin = free_port()
                with open(conf + ".yaml", "a") as f:
                    f.write(f'admin: {{listen: "127.0.0.1:{admin}"}}\n'
                            f"access_log: {{path: {conf}.access.log, format: json}}\n")
            self.procs = [procs.spawn(self.name, [self.binary or fragproxy, "-c", conf + ".yaml",
                                                  *stats])]
            if self.name == "fragproxy-observed":
                Scraper(admin, self.procs[0]).start()
        elif self.name.startswith("haproxy"):
            values["splice"] = "option splice-auto" if self.name == "haproxy-splice" else ""
            fill("haproxy.cfg", conf + ".cfg", values)
            self.procs = [procs.spawn(self.name, ["haproxy", "-db", "-f", conf + ".cfg"])]
        elif self.name == "nginx":
            fill("nginx-stream.conf", conf + ".conf", values)
            self.procs = [procs.spawn(self.name, ["nginx", "-c", conf + ".conf", "-p", workdir,
                                                  "-e", conf + ".err"])]
        elif self.name == "socat":
            lines = [ln for ln in fill("socat.txt", None, values).splitlines()
                     if ln and not ln.startswith("#")]
            self.procs = [procs.spawn(f"socat{i}", ["socat", *ln.split()])
                          for i, ln in enumerate(lines)]
        for s in SERVICES:
            wait_tcp(self.ports[s], self.procs[0])
        return self

    def cpu_seconds(self):
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def ring_counts(self):
        """fragproxy's io_uring counters now ({sqes, cqes, enters} summed over its workers, from
        the --stats-json file SIGUSR1 rewrites), or None for other peers."""
        if not self.stats_path:
            return None
        def inode():
            try:
                return os.stat(self.stats_path).st_ino
            except FileNotFoundError:
                return None
        old = inode()
        self.procs[0].send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while inode() in (old, None):  # a new file is renamed into place once written
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: SIGUSR1 did not rewrite {self.stats_path}")
            time.sleep(0.01)
        with open(self.stats_path) as f:
            return json.load(f)["ring"]

    def pss_kib(self):
        return sum(pss_kib(p.pid) for p in self.procs)


class Scraper(threading.Thread):
    """Scrapes /metrics every second while the process runs, as Prometheus would."""

    def __init__(self, port, proc):
        super().__init__(daemon=True)
        self.port, self.proc = port, proc

    def run(self):
        while self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                    r.read()
            except OSError:
                pass  # not up yet, or stopping
            time.sleep(1)


# fragproxy with one optimisation turned off by its config (the ablation table): the receive path
# of kernels before 6.12 (page-sized fragments, no incremental consumption), io_uring's task work
# run cooperatively or by interruption instead of deferred to the worker's wait, UDP without GSO,
# TCP connections on plain fds instead of the ring's direct descriptors, TCP receives one buffer
# per completion instead of in bundles, a worker busy with UDP waiting for one CQE instead of a
# batch; and zero-copy sends turned on (off by default).
ABLATIONS = {
    "fragproxy-fragments": "io_uring: {receive: fragments}",
    "fragproxy-coop": "io_uring: {taskrun: coop}",
    "fragproxy-plain": "io_uring: {taskrun: none}",
    "fragproxy-nogso": "udp_gso: false",
    "fragproxy-fds": "io_uring: {direct_descriptors: false}",
    "fragproxy-nobundles": "io_uring: {bundles: false}",
    "fragproxy-zc": "io_uring: {send_zc: true}",  # (turned on: off by default)
    "fragproxy-nobatch": "io_uring: {batch_wait_us: 0}",
}
# Other fragproxy peers the same table compares with fragproxy round by round: the backend where
# io_uring is refused, and fragproxy as operated (its cost: metrics scraped, access log written).
VARIANTS = {
    "fragproxy-epoll": "backend: epoll",
    "fragproxy-observed": "admin endpoint scraped every second, JSON access log",
}
# Peers only run when named (--peers): each measures one optimisation.
ON_REQUEST = {"fragproxy-coop", "fragproxy-plain", "fragproxy-nogso", "fragproxy-fds",
              "fragproxy-nobundles", "fragproxy-zc", "fragproxy-nobatch"}


def all_peers(baseline=""):
    base = [Peer("fragproxy-base", binary=baseline)] if baseline else []
    return [Peer("fragproxy"), *base, Peer("fragproxy-fragments"), Peer("fragproxy-epoll"),
            Peer("fragproxy-observed"),
            Peer("fragproxy-policy"), Peer("fragproxy-4rr", udp=False),
            Peer("fragproxy-4lc", udp=False), Peer("fragproxy-pp2", udp=False),
            Peer("fragproxy-sni", udp=False),
            Peer("haproxy", udp=False), Peer("haproxy-splice", udp=False),
            Peer("nginx"), Peer("socat"), Peer("direct", proxy=False),
            *(Peer(name) for name in sorted(ON_REQUEST))]
