"""Test support: runs the real fragproxy binary on loopback with a generated config, and upstream
peers on port 0. Everything binds 127.0.0.1 or ::1 only."""
import asyncio
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

SKIP = 77  # CTest's SKIP_RETURN_CODE for these tests

# Every process a test starts; killed when the test ends however it ends, so a failed case
# cannot leave a child holding CTest's output pipe (which would turn a failure into a timeout).
CHILDREN = []


@atexit.register
def _kill_children():
    for p in CHILDREN:
        if p.poll() is None:
            p.kill()


def skip(reason):
    """The machine lacks what the test needs: exit 77 (CTest reports it skipped) saying why."""
    print(f"SKIP: {reason}", flush=True)
    sys.exit(SKIP)


def require(*binaries):
    """Skips unless every peer binary is installed (scripts/deps.sh installs them)."""
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        skip(f"{', '.join(missing)} not installed (scripts/deps.sh installs it)")


def wait_for(cond, timeout, what):
    """Polls cond() until it is true; raises naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def bound(port, proto="tcp"):
    """True when a socket of this network namespace listens on (TCP) or is bound to (UDP) port,
    from /proc/net (IPv4 and IPv6)."""
    for name in (proto, proto + "6"):
        try:
            with open(f"/proc/net/{name}") as f:
                rows = [line.split() for line in list(f)[1:]]
        except FileNotFoundError:
            continue
        for r in rows:
            if int(r[1].rsplit(":", 1)[1], 16) == port and (proto == "udp" or r[3] == "0A"):
                return True
    return False


def wait_bound(port, proto="tcp", proc=None, timeout=10):
    """Waits until something listens on port (a peer started in the background)."""
    def ready():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited ({proc.returncode}) before binding {port}")
        return bound(port, proto)
    wait_for(ready, timeout, f"{proto} port {port} to be bound")


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host="127.0.0.1"):
    """A port free for TCP and UDP on host, below the kernel's ephemeral range: a port of that
    range (what bind(0) gives) may become the local port of any outgoing connection, of this
    test or another running beside it, before the proxy binds it."""
    import random
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    low = _ephemeral_low()
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(10000, max(low, 10001))
        try:
            with socket.socket(fam, socket.SOCK_STREAM) as t, \
                    socket.socket(fam, socket.SOCK_DGRAM) as u:
                t.bind((host, port))
                u.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port below the ephemeral range")


def fmt(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def config_text(listeners, workers=2, memory="{arena: 16MiB, page_order: 4}", drain="0s",
                extra=(), io_uring=None):
    """The YAML of a proxy with these listeners (dicts: listen (host, port), upstreams
    [(host, port)], optional weights, protocol, name and extra YAML lines), extra top-level
    lines and io_uring settings (a dict)."""
    # drain_timeout 0s: a test's stop is immediate unless it tests the drain.
    lines = [f"workers: {workers}", f"memory: {memory}", f"drain_timeout: {drain}", *extra]
    # FP_RECEIVE=incremental|fragments runs a whole suite on one receive path (CTest names
    # them integration_tcp[fragments] etc.); unset: auto, the best this kernel has.
    # FP_DIRECT=false: on plain fds, not direct descriptors (integration_tcp[plain-fds]).
    ring = {}
    if os.environ.get("FP_RECEIVE"):
        ring["receive"] = os.environ["FP_RECEIVE"]
    if os.environ.get("FP_DIRECT"):
        ring["direct_descriptors"] = os.environ["FP_DIRECT"]
    ring.update(io_uring or {})
    if ring:
        lines.append("io_uring: {" + ", ".join(f"{k}: {v}" for k, v in ring.items()) + "}")
    # FP_BACKEND=epoll runs it on the epoll backend (integration_tcp[epoll] etc.).
    if os.environ.get("FP_BACKEND"):
        lines.append(f"backend: {os.environ['FP_BACKEND']}")
    lines.append("listeners:")
    for i, l in enumerate(listeners):
        weights = l.get("weights", [1] * len(l["upstreams"]))
        ups = ", ".join(f'"{fmt(*u)}"' if w == 1 else f'{{address: "{fmt(*u)}", weight: {w}}}'
                        for u, w in zip(l["upstreams"], weights))
        lines += [f"  - name: {l.get('name', f'l{i}')}", f"    protocol: {l.get('protocol', 'tcp')}",
                  f'    listen: "{fmt(*l["listen"])}"']
        if l["upstreams"]:  # (none: routes in its extra lines)
            lines.append(f"    upstreams: [{ups}]")
        lines += ["    " + x for x in l.get("extra", [])]
    return "\n".join(lines) + "\n"


def write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class Proxy:
    """fragproxy with one or more TCP listeners. listeners: list of dicts with keys
    listen (host, port), upstreams [(host, port)], and optional extra YAML lines."""

    def __init__(self, binary, listeners, workers=2, memory="{arena: 16MiB, page_order: 4}",
                 args=(), prefix=(), drain="0s", extra=(), env=None, io_uring=None):
        self.binary = binary
        self.prefix = list(prefix)  # e.g. ["prlimit", "--nofile=64:64"]
        self.stats_path = tempfile.mktemp(suffix=".json")
        self.ready_path = tempfile.mktemp(suffix=".ready.json")
        self.args = ["--stats-json", self.stats_path, "--ready-file", self.ready_path, *args]
        fd, self.config = tempfile.mkstemp(suffix=".yaml")
        os.close(fd)
        self.io_uring = io_uring
        self.write_config(listeners, workers, memory, drain, extra)
        self.env = env  # None: this process's environment
        self.proc = None
        self.log = tempfile.NamedTemporaryFile(mode="w", suffix=".log")

    def write_config(self, listeners, workers=2, memory="{arena: 16MiB, page_order: 4}",
                     drain="0s", extra=()):
        """(Re)writes the config file (a reload test rewrites it while the proxy runs; the file
        is replaced whole, so a reload never reads half of it)."""
        write_atomically(self.config,
                         config_text(listeners, workers, memory, drain, extra, self.io_uring))

    def start(self, listen_probe=None):
        """Runs the proxy; returns once every worker is set up (the ready record, --ready-file,
        written once every listener is bound and armed) and, given listen_probe (host, port),
        a TCP connection to it succeeds."""
        if os.path.exists(self.ready_path):  # (an earlier run's)
            os.unlink(self.ready_path)
        self.proc = subprocess.Popen([*self.prefix, self.binary, "-c", self.config, *self.args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        CHILDREN.append(self.proc)

        def ready():
            if self.proc.poll() is not None:
                out = self.output()
                if "io_uring" in out and any(k in out for k in ("refuse", "disabled", "needs Linux")):
                    skip("io_uring or a feature of it is missing here: "
                         + out.strip().splitlines()[-1])
                raise RuntimeError("fragproxy exited at start:\n" + out)
            if not os.path.exists(self.ready_path):
                return False
            if listen_probe is None:
                return True
            try:
                with socket.create_connection(listen_probe, timeout=0.2):
                    return True
            except OSError:
                return False
        wait_for(ready, 10, "fragproxy to start")
        return self

    def ready(self):
        """The ready record: {"pid", "listeners": [{"name", "protocol", "address"}], "admin"}
        (rewritten after each reload)."""
        with open(self.ready_path) as f:
            return json.load(f)

    def address(self, name):
        """(host, port) a listener is bound to, by name, from the ready record."""
        for l in self.ready()["listeners"]:
            if l["name"] == name:
                host, _, port = l["address"].rpartition(":")
                return host.strip("[]"), int(port)
        raise KeyError(name)

    def stats(self):
        """Every counter, from --stats-json: written on SIGUSR1 while running, and at exit."""
        if self.proc.poll() is None:
            if os.path.exists(self.stats_path):
                os.unlink(self.stats_path)
            self.proc.send_signal(signal.SIGUSR1)
            wait_for(lambda: os.path.exists(self.stats_path), 10, "stats file")
        with open(self.stats_path) as f:
            return json.load(f)

    def wait_stats(self, cond, timeout, what):
        """Polls the stats until cond(stats) holds; returns them."""
        last = {}

        def check():
            nonlocal last
            last = self.stats()
            return cond(last)
        try:
            wait_for(check, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e} (last stats: {last})") from None
        return last

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        """SIGINT, wait; returns (exit code, output). Exit 0 means no page and no fd leaked."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.unlink(self.config)
        return self.proc.returncode, self.output()

    def finish(self):
        """Stops the proxy; asserts it exited 0 holding no page and no fd (from --stats-json);
        returns the stats at exit."""
        code, out = self.stop()
        assert code == 0, f"fragproxy exit {code} (2 = leaked pages or fds):\n{out}"
        s = self.stats()
        assert s["at_exit"] == {"pages_in_use": 0, "fds_open": 0}, s
        return s

    def output(self):
        with open(self.log.name) as f:  # its own offset: the child's appends are untouched
            return f.read()


async def read_all(reader, slow=False):
    chunks = []
    while True:
        b = await reader.read(65536 if not slow else 8192)
        if not b:
            return b"".join(chunks)
        chunks.append(b)
        if slow:
            await asyncio.sleep(0.002)


async def echo_transfer(port, size, slow=False, host="127.0.0.1", data=None):
    """`size` random bytes (or `data`) through an echo upstream (first byte b"E" asks for echo),
    sent in 256 KiB writes then half-closed, read back (slowly if asked) and compared by
    checksum. The bytes exist before the connection does: generating them blocks the event loop,
    and a connection opened first could sit idle past a short idle timeout meanwhile. Returns the
    seconds it took."""
    import hashlib
    data = os.urandom(size) if data is None else data
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)

    async def send():
        writer.write(b"E")
        for i in range(0, len(data), 256 * 1024):
            writer.write(data[i:i + 256 * 1024])
            await writer.drain()
        writer.write_eof()

    sender = asyncio.create_task(send())
    got = await read_all(reader, slow)
    await sender
    writer.close()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), \
        f"echo: {len(got)} bytes back of {len(data)}"
    return time.monotonic() - t0


def get(port, path, method="GET"):
    """(status, headers, body) of one request to 127.0.0.1:port (the admin endpoint)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def metrics(port):
    """/metrics as {(sample name, frozenset((label, '"value"'), ...)): value}, parsed whole by
    prometheus_client's own text parser: a malformed line fails the test."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        skip("python3-prometheus-client is missing (scripts/deps.sh installs it)")
    status, headers, body = get(port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4"), \
        (status, headers)
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            key = (s.name, frozenset((k, f'"{v}"') for k, v in s.labels.items()))
            assert key not in out, f"sample {key} twice"
            assert s.value == int(s.value) >= 0, s
            out[key] = int(s.value)
    return out


def total(samples, name, **labels):
    """A metric summed over the workers (and any label not given)."""
    want = {(k, f'"{v}"') for k, v in labels.items()}
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


class Echo:
    """A TCP echo upstream on its own thread's event loop; counts the connections it accepted."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.accepted = 0
        ready = threading.Event()

        async def echo(reader, writer):
            self.accepted += 1
            try:
                while b := await reader.read(65536):
                    writer.write(b)
                    await writer.drain()
            except ConnectionError:
                pass
            writer.close()

        async def serve():
            self.server = await asyncio.start_server(echo, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(serve()),
                                                       self.loop.run_forever()), daemon=True)
        self.thread.start()
        ready.wait(10)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


def udp_free_port(host="127.0.0.1"):
    return free_port(host)


class UdpEcho:
    """A UDP echo upstream in a child process (so its socket buffer drains while we block)."""

    def __init__(self, host="127.0.0.1"):
        self.port = udp_free_port(host)
        code = ("import socket,sys\n"
                f"s=socket.socket(socket.AF_INET6 if ':' in '{host}' else socket.AF_INET,"
                " socket.SOCK_DGRAM)\n"
                "s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8<<20)\n"
                f"s.bind(('{host}', {self.port}))\n"
                "while True:\n d,a=s.recvfrom(70000)\n s.sendto(d,a)\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code])
        CHILDREN.append(self.proc)
        wait_bound(self.port, "udp", self.proc)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Server:
    """A TCP upstream on 127.0.0.1 whose accept loop runs on its own thread and hands each
    connection to handle(conn) (on that thread: a handler that blocks holds the next accept).
    address: where it listens (default 127.0.0.1, a port of its own)."""

    def __init__(self, handle, address=("127.0.0.1", 0)):
        self.handle = handle
        self.sock = socket.create_server(address)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.handle(c)

    def stop(self):
        self.sock.close()


# What iperf3 3.12 reports when its own control connection ends early: its server closing the
# test while the client still writes to it (a reset that any relay passes on; HAProxy's and
# nginx's too), or a client arriving while the server still cleans up the previous test.
IPERF3_RACES = ("control socket has closed unexpectedly", "unable to receive control message")


def io_uring_has(binary, feature):
    """Whether this run's proxy has an io_uring feature: the kernel has it (a line of fragproxy
    --features) and the io_uring backend runs (not FP_BACKEND=epoll)."""
    if os.environ.get("FP_BACKEND") == "epoll":
        return False
    out = subprocess.run([binary, "--features"], capture_output=True, text=True).stdout
    return f"{feature}: yes" in out


def iperf3_through(proxy, port, server_port, *args):
    """iperf3 -c through `proxy` on `port` to a one-off iperf3 server (-s -1, started here on
    `server_port` once the proxy has accepted and closed its start probe: a probe still on its
    way to the upstream would be taken for the one test, and the server would exit before the
    client came). Returns the client's JSON. A run that ends in one of iperf3's own
    control-connection races is run once more, and says so."""
    proxy.wait_stats(lambda s: 0 < s["tcp"]["accepted"] <= s["tcp"]["closed"], 10,
                     "the proxy's start probe to be accepted and closed")
    for attempt in (1, 2):
        srv = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(server_port), "-B", "127.0.0.1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_bound(server_port, "tcp", srv)
            r = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-J", *args],
                               capture_output=True, text=True, timeout=60)
            j = json.loads(r.stdout)
            err = j.get("error", "")
            if attempt == 1 and any(e in err for e in IPERF3_RACES):
                print(f"  iperf3 {' '.join(args)}: '{err}' (iperf3's own race): once more",
                      flush=True)
                continue
            assert not err, err
            srv.wait(30)
            return j
        finally:
            srv.kill()
            srv.wait()



def run_cases(scope):
    """Runs the case_* functions of a test script's globals (or those named on its command line
    after the binary), printing each one's time: the scripts' common main."""
    cases = {n[5:]: f for n, f in scope.items() if n.startswith("case_")}
    for n in sys.argv[2:] or list(cases):
        t0 = time.monotonic()
        cases[n]()
        print(f"ok {n} ({time.monotonic() - t0:.1f} s)", flush=True)
