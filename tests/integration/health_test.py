#!/usr/bin/env python3
"""Health checks: an upstream killed under load is taken out after `fall` failed checks and no
client is lost meanwhile (a failed connect tries the next upstream); restarted, it comes back
after `rise` passed checks; with every upstream down, new clients are closed at once and the log
says so once; passive checks take an upstream out after `fall` failed client connects.
Usage: health_test.py FRAGPROXY_BINARY [CASE ...]"""
import faulthandler
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_cases  # noqa: E402
from harness import Proxy, free_port, metrics, total, wait_for  # noqa: E402

BINARY = sys.argv[1]
faulthandler.dump_traceback_later(120, exit=True)
LOCAL = "127.0.0.1"


class Upstream:
    """An echo server that can be killed and started again on the same port."""

    def __init__(self):
        self.port = free_port()
        self.accepted = 0
        self.start()

    def start(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOCAL, self.port))
        self.sock.listen(64)
        self.conns = []
        threading.Thread(target=self.serve, args=(self.sock,), daemon=True).start()

    def serve(self, sock):
        while True:
            try:
                c, _ = sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(c)
            threading.Thread(target=self.echo, args=(c,), daemon=True).start()

    @staticmethod
    def echo(c):
        try:
            while b := c.recv(4096):
                c.sendall(b)
        except OSError:
            pass
        c.close()

    def kill(self):
        """Stops listening: new connects are refused (connections in flight finish)."""
        self.sock.close()


def served(port):
    with socket.create_connection((LOCAL, port), timeout=10) as s:
        s.sendall(b"ping")
        got = b""
        while len(got) < 4:
            chunk = s.recv(4)
            if not chunk:
                return False
            got += chunk
        return got == b"ping"


def up(admin, u):
    return total(metrics(admin), "fragproxy_upstream_up", upstream=f"{LOCAL}:{u.port}")


def start(ups, check):
    port, admin = free_port(), free_port()
    p = Proxy(BINARY, [{"name": "h", "listen": (LOCAL, port),
                        "upstreams": [(LOCAL, u.port) for u in ups],
                        "extra": [f"health_check: {check}"]}],
              extra=[f'admin: {{listen: "{LOCAL}:{admin}"}}']).start()
    return p, port, admin


def case_killed_and_restarted_under_load():
    a, b = Upstream(), Upstream()
    p, port, admin = start([a, b], "{interval: 200ms, timeout: 200ms, rise: 2, fall: 2}")
    wait_for(lambda: up(admin, a) == 1 and up(admin, b) == 1, 10, "both up")
    stop, lost, count = threading.Event(), [], [0]

    def load():
        while not stop.is_set():
            if not served(port):
                lost.append(time.monotonic())
            count[0] += 1
    t = threading.Thread(target=load)
    t.start()
    b.kill()
    wait_for(lambda: up(admin, b) == 0, 10, "B taken out")
    before = b.accepted
    for _ in range(20):
        assert served(port)
    assert b.accepted == before  # none tried on B any more
    b.start()
    wait_for(lambda: up(admin, b) == 1, 10, "B back after rise checks")
    wait_for(lambda: b.accepted > before, 10, "clients on B again")
    stop.set()
    t.join()
    assert not lost, f"{len(lost)} of {count[0]} clients lost"
    out = p.output()
    # Taken out by the checks or, under this load, by failed client connects first.
    assert f"upstream {LOCAL}:{b.port} is down (2 " in out, out
    assert f"upstream {LOCAL}:{b.port} is up (2 checks passed)" in out, out
    print(f"  {count[0]} clients through a kill and a restart of one of two upstreams, none lost")

    a.kill()
    b.kill()
    wait_for(lambda: up(admin, a) == 0 and up(admin, b) == 0, 10, "both out")
    with socket.create_connection((LOCAL, port), timeout=10) as s:
        assert s.recv(1) == b""  # closed at once, no upstream tried
    assert total(metrics(admin), "fragproxy_connections_rejected_total", reason="no_upstream") >= 1
    wait_for(lambda: "every upstream is down" in p.output(), 10, "the log line")
    assert p.output().count("listener 'h': every upstream is down") == 1
    p.finish()


def case_passive_takes_out_after_fall_failed_connects():
    """Checks every 30 s (none after the first): B's two failed client connects take it out, so
    later clients go straight to A without a retry."""
    a, b = Upstream(), Upstream()
    p, port, admin = start([a, b], "{interval: 30s, timeout: 1s, rise: 2, fall: 2}")
    wait_for(lambda: up(admin, b) == 1, 10, "B up")
    b.kill()
    for _ in range(10):
        assert served(port)
    m = metrics(admin)
    assert total(m, "fragproxy_upstream_up", upstream=f"{LOCAL}:{b.port}") == 0, m
    assert total(m, "fragproxy_upstream_retries_total") == 2, m  # then no more tries on B
    for _ in range(10):
        assert served(port)
    assert total(metrics(admin), "fragproxy_upstream_retries_total") == 2
    a.kill()
    p.finish()


if __name__ == "__main__":
    run_cases(globals())
