#!/usr/bin/env python3
"""fragproxy as a service: the sd_notify protocol as systemd sees it (READY=1 once listening,
RELOADING=1 then READY=1 around a reload, STOPPING=1 when the drain begins), and the privilege
drop (`user:`): started as root, every thread runs as that user and still serves.
Usage: service_test.py FRAGPROXY_BINARY [CASE ...]"""
import faulthandler
import os
import pwd
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_cases  # noqa: E402
from harness import Echo, Proxy, free_port, skip  # noqa: E402

BINARY = sys.argv[1]
faulthandler.dump_traceback_later(120, exit=True)


def echo_once(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"


def case_sd_notify():
    up = Echo()
    port = free_port()
    path = os.path.join(tempfile.mkdtemp(), "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    p = Proxy(BINARY, [{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up.port)]}],
              env=env, drain="5s")
    p.start()

    def message():
        return dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())

    m = message()
    assert m.get("READY") == "1" and "listener" in m.get("STATUS", ""), m
    echo_once(port)  # READY=1 came after the listeners were bound: this connects
    p.proc.send_signal(signal.SIGHUP)
    m = message()
    assert m.get("RELOADING") == "1", m
    now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert 0 < now_us - int(m["MONOTONIC_USEC"]) < 10_000_000, m
    assert message().get("READY") == "1"
    p.proc.send_signal(signal.SIGTERM)
    m = message()
    assert m.get("STOPPING") == "1" and m.get("STATUS") == "draining", m
    assert p.proc.wait(15) == 0, p.output()
    p.finish()
    up.stop()
    sock.close()


def case_privilege_drop():
    if os.geteuid() != 0:
        skip("privilege drop: needs root to start as root")
    nobody = pwd.getpwnam("nobody")
    up = Echo()
    port = free_port()
    p = Proxy(BINARY, [{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up.port)]}],
              extra=["user: nobody"])
    # (The stats file is written after the drop, as nobody: the harness puts it in /tmp.)
    p.start()
    assert f"running as nobody (uid {nobody.pw_uid}" in p.output(), p.output()
    tasks = os.listdir(f"/proc/{p.proc.pid}/task")
    assert len(tasks) >= 3, tasks  # main, 2 workers
    for tid in tasks:
        with open(f"/proc/{p.proc.pid}/task/{tid}/status") as f:
            ids = {k: v.split() for k, v in (line.split(":", 1) for line in f) if k in ("Uid", "Gid")}
        assert ids["Uid"] == [str(nobody.pw_uid)] * 4, (tid, ids)
        assert ids["Gid"] == [str(nobody.pw_gid)] * 4, (tid, ids)
    for _ in range(20):
        echo_once(port)
    st = p.finish()
    assert st["tcp"]["accepted"] == 20, st
    up.stop()


if __name__ == "__main__":
    run_cases(globals())
