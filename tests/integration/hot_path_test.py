#!/usr/bin/env python3
"""The hot path makes no heap allocation per packet, on every data path this kernel has.
Usage: hot_path_test.py FRAGPROXY_BINARY COUNT_ALLOCS_SO [CASE ...]

fragproxy runs under an LD_PRELOAD shim that counts every heap allocation of the process
(tests/support/count_allocs.cpp; operator new included) and writes the count at exit. Two runs
of the same configuration differ only in how much they forward: a short TCP echo against a
long one (one connection each), a few UDP datagrams against many (one session each). What the
long run allocates beyond the short one is what forwarding costs the heap: one allocation per
receive or send would be thousands; start-up, the connection itself and the once-a-second
housekeeping are the same in both. Paths: io_uring with incremental buffers, io_uring with
fragments, and the epoll backend (Asio's handlers take their memory from the worker's
HandlerPool, net/engine/handler_pool.hpp, so a wait must not reach malloc either). The plain build only (a sanitizer's allocator is not glibc's)."""
import asyncio
import os
import socket
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Proxy, Server, UdpEcho, echo_transfer, free_port, run_cases  # noqa: E402

BINARY, SHIM = sys.argv[1], sys.argv.pop(2)
MiB = 1 << 20
# What the long run may allocate beyond the short one: start-up differs by a few (thread start
# order, timers), a per-packet allocation would add thousands.
SLACK = 64

PATHS = {
    "incremental": ["io_uring: {receive: incremental}"],
    "fragments": ["io_uring: {receive: fragments}"],
    "epoll": ["backend: epoll"],
}


def allocations(listener, extra, work):
    """Runs the proxy on the shim, does work(port), stops it; returns the allocations it made."""
    count = tempfile.mktemp(suffix=".count")
    env = {**os.environ, "LD_PRELOAD": SHIM, "FP_ALLOC_COUNT_FILE": count}
    port = free_port()
    proxy = Proxy(BINARY, [{**listener, "listen": ("127.0.0.1", port)}], workers=1,
                  memory="{arena: 64MiB, page_order: 4}", extra=extra, env=env)
    probe = ("127.0.0.1", port) if listener.get("protocol", "tcp") == "tcp" else None
    proxy.start(probe)
    try:
        work(port)
    finally:
        proxy.finish()
    with open(count) as f:
        n = int(f.read())
    os.unlink(count)
    return n


def compare(what, short, long):
    print(f"  {what}: {short} allocations (short run), {long} (long run)", flush=True)
    assert long - short <= SLACK, f"{what}: {long - short} more allocations forwarding more"


def echo_after_mode(conn):
    """An echo upstream for echo_transfer(): its first byte (the mode) is not echoed."""
    def run():
        with conn:
            conn.recv(1)
            while b := conn.recv(65536):
                conn.sendall(b)
    threading.Thread(target=run, daemon=True).start()


def tcp_case(path):
    def case():
        echo = Server(echo_after_mode)
        listener = {"upstreams": [("127.0.0.1", echo.port)]}
        data = os.urandom(256 * MiB)

        def transfer(size):
            def work(port):
                asyncio.run(echo_transfer(port, size, data=data[:size]))
            return work
        try:
            short = allocations(listener, PATHS[path], transfer(2 * MiB))
            long = allocations(listener, PATHS[path], transfer(len(data)))
        finally:
            echo.stop()
        # 256 MiB each way is at least 4,096 receives and as many sends per direction.
        compare(f"tcp {path}, 2 MiB vs 256 MiB echoed", short, long)
    return case


def udp_case(path):
    def case():
        echo = UdpEcho()
        listener = {"protocol": "udp", "upstreams": [("127.0.0.1", echo.port)]}

        def datagrams(n):
            def work(port):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.settimeout(0.5)
                got = 0
                for i in range(n):  # one in flight: none lost, each one a receive and a send
                    s.sendto(i.to_bytes(4, "big") * 64, ("127.0.0.1", port))
                    try:
                        got += len(s.recv(65536)) > 0
                    except socket.timeout:
                        pass
                s.close()
                assert got >= n * 9 // 10, f"{got} of {n} datagrams came back"
            return work
        try:
            short = allocations(listener, PATHS[path], datagrams(100))
            long = allocations(listener, PATHS[path], datagrams(5000))
        finally:
            echo.stop()
        compare(f"udp {path}, 100 vs 5,000 datagrams", short, long)
    return case


def case_udp_refused_sources():
    """A spray of new sources past max_sessions costs the heap nothing: every cap is checked
    before anything is made for a source (20 against 2,000 refused sources, each its own
    address in 127.1.0.0/16, on one established session's listener)."""
    echo = UdpEcho()
    listener = {"protocol": "udp", "upstreams": [("127.0.0.1", echo.port)],
                "extra": ["max_sessions: 1"]}

    def spray(n):
        def work(port):
            held = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.settimeout(5)
            held.sendto(b"held", ("127.0.0.1", port))
            assert held.recv(16) == b"held"  # the one session
            for i in range(n):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind((f"127.1.{i >> 8}.{i & 255}", 0))
                    s.sendto(b"refused", ("127.0.0.1", port))
            # The listener's socket is read in order: its echo means the spray was handled.
            held.sendto(b"last", ("127.0.0.1", port))
            assert held.recv(16) == b"last"
            held.close()
        return work
    try:
        short = allocations(listener, [], spray(20))
        long = allocations(listener, [], spray(2000))
    finally:
        echo.stop()
    compare("udp, 20 vs 2,000 refused new sources", short, long)


for p in PATHS:
    globals()[f"case_tcp_{p}"] = tcp_case(p)
    globals()[f"case_udp_{p}"] = udp_case(p)

if __name__ == "__main__":
    if not os.path.exists(SHIM):
        print(f"SKIP: no allocation-counting shim at {SHIM}")
        sys.exit(77)
    run_cases(globals())
