#!/usr/bin/env python3
"""Start-up and operating limits of the real binary: what an operator meets first.
Usage: startup_test.py FRAGPROXY NO_IO_URING_HELPER [CASE ...]"""
import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Echo, Proxy, UdpEcho, free_port, udp_free_port  # noqa: E402
from harness import wait_for  # noqa: E402

BINARY, NO_IO_URING = sys.argv[1], sys.argv[2]


def config_file(text):
    fd, path = tempfile.mkstemp(suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def listener_yaml(port, up=1, extra=""):
    return (f"listeners:\n  - name: web\n    listen: 127.0.0.1:{port}\n"
            f"    upstreams: [127.0.0.1:{up}]\n{extra}")


def run(*args, **kw):
    return subprocess.run([*args], capture_output=True, text=True, timeout=30, **kw)


def case_port_in_use():
    """A second fragproxy on a port the first listens on is refused with a clear error (it
    would join the SO_REUSEPORT group silently); share_port: true joins on purpose."""
    port = free_port()
    first = Proxy(BINARY, [{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", 1)]}],
                  workers=1).start(("127.0.0.1", port))
    cfg = config_file(listener_yaml(port))
    r = run(BINARY, "-c", cfg, "--workers", "1")
    assert r.returncode == 1, r
    assert f"listener 'web': tcp 127.0.0.1:{port} is already in use by another process" in r.stderr
    shared = Proxy(BINARY, [{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", 1)],
                             "extra": ["share_port: true"]}], workers=1)
    shared.start(("127.0.0.1", port))  # the first one answers that probe: wait for the banner
    wait_for(lambda: "l0: tcp" in shared.output(), 10, "the second proxy to start")
    r1, r2 = shared.stop(), first.stop()
    assert r1[0] == 0 and r2[0] == 0, (r1, r2)
    os.unlink(cfg)


def case_out_of_fds_pauses_accepting():
    """RLIMIT_NOFILE 64: a warning at start; past the limit accepting pauses (counted) instead of
    accept-and-drop; waiting clients are served once descriptors come back."""
    async def main():
        async def echo(reader, writer):
            try:
                while b := await reader.read(65536):
                    writer.write(b)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            writer.close()
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        up = server.sockets[0].getsockname()[1]
        port = free_port()
        proxy = Proxy(BINARY, [{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)]}],
                      workers=1, prefix=["prlimit", "--nofile=64:64"])
        proxy.start(("127.0.0.1", port))
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(60)]
        for _, w in conns:
            w.write(b"hello")
        reads = [asyncio.create_task(r.readexactly(5)) for r, _ in conns]
        await asyncio.wait(reads, timeout=2)
        served = [i for i, t in enumerate(reads) if t.done() and not t.exception()]
        waiting = [i for i, t in enumerate(reads) if not t.done()]
        assert served and waiting, (len(served), len(waiting))
        # As answered clients leave, their descriptors let the waiting ones in: every client is
        # served in the end, none is accepted only to be dropped.
        closed, rounds = set(), 0
        while len(closed) < len(conns):
            rounds += 1
            assert rounds < 30, f"{len(conns) - len(closed)} clients never served"
            for i, t in enumerate(reads):
                if t.done() and i not in closed:
                    assert not t.exception(), t.exception()
                    conns[i][1].close()
                    closed.add(i)
            pending = [t for t in reads if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=1)
        st = proxy.stats()["tcp"]
        assert st["fd_exhausted"] >= 1 and st["accept_pauses"] >= 1, st
        print(f"  {len(served)} served at once, {len(waiting)} after waiting; "
              f"{st['accept_pauses']} pauses of accepting", flush=True)
        server.close()
        code, out = proxy.stop()
        assert code == 0, out
        assert "warning: the listeners' max_connections" in out, out
        logged = out.count("accepting paused")  # once per 10 s, not per connection or pause
        assert 1 <= logged <= 4 and logged < st["accept_pauses"], out
    asyncio.run(main())


def case_listener_socket_limit_named():
    """Out of descriptors for the listening sockets themselves: the error names the listener
    and the limit."""
    lines = ["listeners:"]
    for i in range(20):
        lines += [f"  - name: l{i}", f"    listen: 127.0.0.1:{free_port()}",
                  "    upstreams: [127.0.0.1:1]"]
    cfg = config_file("\n".join(lines) + "\n")
    r = run("prlimit", "--nofile=24:24", BINARY, "-c", cfg, "--workers", "2")
    os.unlink(cfg)
    assert r.returncode == 1, r
    assert "socket (RLIMIT_NOFILE is 24 file descriptors): Too many open files" in r.stderr, \
        r.stderr


def case_io_uring_refused_runs_on_epoll():
    """io_uring really refused (a seccomp filter makes io_uring_setup fail with EPERM, as
    container runtimes' profiles do): backend auto says so in one line and serves checksummed TCP
    and UDP on the epoll backend, holding no page and no fd at exit; backend: io_uring exits 1
    naming the cause; --features says what auto picks; --self-check reports the refusal."""
    probe = run(NO_IO_URING, "/bin/true")
    if probe.returncode == 77:
        print("SKIP: cannot install a seccomp filter here")
        sys.exit(77)
    tcp_up, udp_up = Echo(), UdpEcho()
    port, uport = free_port(), udp_free_port()
    p = Proxy(BINARY, [{"name": "t", "listen": ("127.0.0.1", port),
                        "upstreams": [("127.0.0.1", tcp_up.port)]},
                       {"name": "u", "protocol": "udp", "listen": ("127.0.0.1", uport),
                        "upstreams": [("127.0.0.1", udp_up.port)]}],
              prefix=[NO_IO_URING], env={k: v for k, v in os.environ.items()
                                         if k not in ("FP_BACKEND", "FP_RECEIVE")}).start()
    line = next(ln for ln in p.output().splitlines() if "running on epoll" in ln)
    assert line.startswith("fragproxy: io_uring_setup: EPERM (a seccomp filter refuses the "
                           "io_uring syscalls"), line
    print("  " + line)
    for size in (1, 3 << 20):  # checksummed through the echo upstream
        data = os.urandom(size)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            sender = threading.Thread(target=lambda: (c.sendall(data), c.shutdown(socket.SHUT_WR)))
            sender.start()
            got = b"".join(iter(lambda: c.recv(1 << 16), b""))
            sender.join()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), (len(got), size)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.settimeout(5)
        for n in (0, 1, 1472, 9000):
            d = os.urandom(n)
            c.sendto(d, ("127.0.0.1", uport))
            assert c.recvfrom(70000)[0] == d
    st = p.finish()
    assert st["tcp"]["bytes_client_to_upstream"] == 1 + (3 << 20), st
    tcp_up.stop()
    udp_up.stop()

    cfg = config_file("backend: io_uring\n" + listener_yaml(free_port()))
    r = run(NO_IO_URING, BINARY, "-c", cfg, "--workers", "1")
    assert r.returncode == 1, r
    assert ("backend: io_uring cannot run here: io_uring_setup: EPERM (a seccomp filter refuses "
            "the io_uring syscalls") in r.stderr, r.stderr
    os.unlink(cfg)
    r = run(NO_IO_URING, BINARY, "--self-check")
    assert r.returncode == 1 and "fragproxy: self-check: io_uring_queue_init" in r.stderr, r
    r = run(NO_IO_URING, BINARY, "--features")  # the report still works, and says why
    assert r.returncode == 0, r
    assert r.stdout.startswith("io_uring: refused: io_uring_setup: EPERM (a seccomp filter"), r
    assert "backend: auto picks epoll (Asio), receive: fragments" in r.stdout, r.stdout


def case_features_report():
    """--features lists what this kernel's io_uring offers and the receive path auto picks; the
    start-up line names the path that runs and why; a path the kernel lacks is refused."""
    r = run(BINARY, "--features")
    assert r.returncode == 0, r
    report = dict(line.split(": ", 1) for line in r.stdout.splitlines())
    for key in ("io_uring", "provided-buffer rings (5.19)", "multishot recv (6.0)",
                "incremental buffer consumption (6.12)", "send/recv bundles (6.10)",
                "direct descriptors (6.8)", "zero-copy send and sendmsg (6.1)"):
        assert key in report, (key, r.stdout)
    picks = report["receive"]
    inc = report["incremental buffer consumption (6.12)"] == "yes"
    assert picks == ("auto picks incremental" if inc else "auto picks fragments"), r.stdout
    port = free_port()
    for want, expect in (("auto", "incremental (auto)" if inc else "fragments (auto: "),
                         ("fragments", "fragments (configured)")):
        cfg = config_file(f"io_uring: {{receive: {want}}}\n" + listener_yaml(port))
        p = subprocess.Popen([BINARY, "-c", cfg, "--workers", "1"], stderr=subprocess.PIPE,
                             text=True)
        line = ""
        while "receive path:" not in line:
            line = p.stderr.readline()
            assert line, "no receive path line"
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=20)
        os.unlink(cfg)
        assert line.startswith("fragproxy: backend: io_uring; receive path: " + expect), line
        assert p.returncode == 0, p.returncode


def case_descriptors_are_lazy():
    """A 4 GiB arena: its page descriptors (24 MiB) are not touched at start."""
    port = free_port()
    proxy = Proxy(BINARY, [{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", 1)]}],
                  workers=1, memory="{arena: 4GiB}").start(("127.0.0.1", port))
    rss = proxy.rss_kib()
    assert rss < 20 * 1024, rss  # eager tables alone would be 24 MiB
    assert proxy.stop()[0] == 0


def case_memory_beyond_the_machine_refused():
    """256 workers x 64 GiB passes no check: refused before anything starts, with the cause."""
    port = free_port()
    cfg = config_file("workers: 256\nmemory: {arena: 64GiB}\n" + listener_yaml(port))
    for args in (["--check"], []):
        r = run(BINARY, "-c", cfg, *args)
        assert r.returncode == 1, r
        assert f"{cfg}:2:17: memory: 256 workers x 65536 MiB arena" in r.stderr, r.stderr
    os.unlink(cfg)


def case_config_file_limits():
    """A config file that is no file, too big, or unreadable gets its own message."""
    r = run(BINARY, "-c", "/dev/zero", "--check")
    assert r.returncode == 1 and "/dev/zero:1:1: the configuration file is larger than 1 MiB" \
        in r.stderr, r
    d = tempfile.mkdtemp()
    r = run(BINARY, "-c", d, "--check")
    assert r.returncode == 1 and "it is a directory" in r.stderr, r
    r = run(BINARY, "-c", os.path.join(d, "missing.yaml"), "--check")
    assert r.returncode == 1 and "No such file or directory" in r.stderr, r
    os.rmdir(d)
    big = config_file("# padding\n" * 200000)
    t0 = time.monotonic()
    r = run(BINARY, "-c", big, "--check")
    assert r.returncode == 1 and "larger than 1 MiB" in r.stderr and time.monotonic() - t0 < 5, r
    os.unlink(big)


CASES = {n[5:]: f for n, f in globals().items() if n.startswith("case_")}

if __name__ == "__main__":
    for n in sys.argv[3:] or list(CASES):
        t0 = time.monotonic()
        CASES[n]()
        print(f"ok {n} ({time.monotonic() - t0:.1f} s)", flush=True)
