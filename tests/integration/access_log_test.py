#!/usr/bin/env python3
"""The access log: one line per TCP connection and UDP session when it ends, with the right
client, upstream, bytes each way and how it ended; json and text; reopened on SIGUSR1 (logrotate).
Usage: access_log_test.py FRAGPROXY_BINARY [CASE ...]"""
import faulthandler
import json
import os
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_cases  # noqa: E402
from harness import Echo, Proxy, Server, UdpEcho, free_port, udp_free_port, wait_for  # noqa: E402

BINARY = sys.argv[1]
faulthandler.dump_traceback_later(120, exit=True)
LOCAL = "127.0.0.1"


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().splitlines()


def records(path, n):
    """Waits until the log holds n lines; returns them parsed."""
    wait_for(lambda: len(lines(path)) >= n, 10, f"{n} access-log lines in {path}")
    got = [json.loads(line) for line in lines(path)]
    assert len(got) == n, got
    return got


def transfer(port, data):
    """Sends data, half-closes, reads the echo; returns the client's own address."""
    with socket.create_connection((LOCAL, port), timeout=10) as s:
        me = s.getsockname()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        assert got == data
        return f"{me[0]}:{me[1]}"


def greeter():
    """An upstream that says hello and closes first."""
    def hello(c):
        c.sendall(b"hello")
        c.close()
    return Server(hello)


def case_json_records_each_ending():
    """client_close with exact bytes, upstream_close, connect_failure, idle_timeout, rejected,
    drained, and a UDP session's idle_timeout: each one line, fields exact."""
    log = tempfile.mktemp(suffix=".log")
    echo, greeter_up, udp_up = Echo(), greeter(), UdpEcho()
    dead = free_port()  # nothing listens: connects are refused
    p_echo, p_greet, p_dead, p_udp = free_port(), free_port(), free_port(), udp_free_port()
    p = Proxy(BINARY, [
        {"name": "echo", "listen": (LOCAL, p_echo), "upstreams": [(LOCAL, echo.port)],
         "extra": ["max_connections: 2", "timeouts: {idle: 1s}"]},
        {"name": "greet", "listen": (LOCAL, p_greet), "upstreams": [(LOCAL, greeter_up.port)]},
        {"name": "dead", "listen": (LOCAL, p_dead), "upstreams": [(LOCAL, dead)]},
        {"name": "udp", "protocol": "udp", "listen": (LOCAL, p_udp),
         "upstreams": [(LOCAL, udp_up.port)], "extra": ["session_timeout: 1s"]},
    ], extra=[f"access_log: {{path: {log}, format: json}}"]).start()

    data = os.urandom(300_000)
    client = transfer(p_echo, data)
    r = records(log, 1)[0]
    assert r["listener"] == "echo" and r["protocol"] == "tcp", r
    assert r["client"] == client and r["upstream"] == f"{LOCAL}:{echo.port}", r
    assert r["bytes_client_to_upstream"] == r["bytes_upstream_to_client"] == len(data), r
    assert r["end"] == "client_close" and r["duration_ms"] >= 0, r
    t = time.strptime(r["time"][:19], "%Y-%m-%dT%H:%M:%S")
    assert abs(time.mktime(t) - time.timezone - time.time()) < 60, r  # UTC, now

    with socket.create_connection((LOCAL, p_greet), timeout=10) as s:
        assert s.recv(5) == b"hello"
        assert s.recv(1) == b""
    r = records(log, 2)[1]
    assert r["end"] == "upstream_close" and r["bytes_upstream_to_client"] == 5, r

    with socket.create_connection((LOCAL, p_dead), timeout=10) as s:
        assert s.recv(1) == b""  # the clean close of a client that cannot be served
    r = records(log, 3)[2]
    assert r["end"] == "connect_failure" and r["upstream"] == f"{LOCAL}:{dead}", r

    idle = socket.create_connection((LOCAL, p_echo), timeout=10)
    idle2 = socket.create_connection((LOCAL, p_echo), timeout=10)
    for s in (idle, idle2):  # both established (their accepts may run on either worker)
        s.sendall(b"i")
        assert s.recv(1) == b"i"
    third = socket.create_connection((LOCAL, p_echo), timeout=10)  # max_connections: 2
    assert third.recv(1) == b""
    assert idle.recv(1) == b"" and idle2.recv(1) == b""  # the 1 s idle timeout
    got = records(log, 6)[3:]
    assert sorted(r["end"] for r in got) == ["idle_timeout", "idle_timeout", "rejected"], got
    rejected = next(r for r in got if r["end"] == "rejected")
    me = third.getsockname()
    assert rejected["client"] == f"{me[0]}:{me[1]}" and rejected["upstream"] is None, rejected
    for s in (idle, idle2, third):
        s.close()

    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(5)
    u.sendto(b"x" * 100, (LOCAL, p_udp))
    assert u.recvfrom(200)[0] == b"x" * 100
    r = records(log, 7)[6]
    assert r["protocol"] == "udp" and r["end"] == "idle_timeout", r
    assert r["bytes_client_to_upstream"] == r["bytes_upstream_to_client"] == 100, r
    assert r["client"] == f"{LOCAL}:{u.getsockname()[1]}", r

    held = socket.create_connection((LOCAL, p_echo), timeout=10)
    held.sendall(b"abc")
    assert held.recv(3) == b"abc"
    p.finish()  # drain_timeout 0s: the stop closes it
    r = records(log, 8)[7]
    assert r["end"] == "drained" and r["bytes_client_to_upstream"] == 3, r
    held.close()
    u.close()
    echo.stop()
    udp_up.stop()
    os.unlink(log)


def case_text_format_and_reopen():
    """format: text; after the file is moved away (logrotate), SIGUSR1 opens the path again."""
    log = tempfile.mktemp(suffix=".log")
    echo = Echo()
    port = free_port()
    p = Proxy(BINARY, [{"name": "t", "listen": (LOCAL, port), "upstreams": [(LOCAL, echo.port)]}],
              extra=[f"access_log: {{path: {log}, format: text}}"]).start()
    client = transfer(port, b"12345")
    wait_for(lambda: len(lines(log)) == 1, 10, "the first line")
    f = lines(log)[0].split()
    assert f[1:] == ["t", "tcp", client, f"{LOCAL}:{echo.port}", f[5], "5", "5", "client_close"], f
    assert f[5].endswith("ms"), f
    os.rename(log, log + ".1")
    p.proc.send_signal(signal.SIGUSR1)  # also writes the stats: wait for that file
    wait_for(lambda: os.path.exists(p.stats_path), 10, "SIGUSR1 handled")
    wait_for(lambda: os.path.exists(log), 10, "the log reopened")
    transfer(port, b"678")
    wait_for(lambda: len(lines(log)) == 1, 10, "a line in the new file")
    assert lines(log)[0].split()[6:8] == ["3", "3"]
    assert len(lines(log + ".1")) == 1
    p.finish()
    echo.stop()
    os.unlink(log)
    os.unlink(log + ".1")


if __name__ == "__main__":
    run_cases(globals())
