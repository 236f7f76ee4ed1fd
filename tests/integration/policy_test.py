#!/usr/bin/env python3
"""Who gets in: allow/deny by CIDR (v4 and v6), max_connections_per_source and
new_connections_per_source, all decided at accept before any upstream is touched, counted by
reason; tcp_keepalive on both sides. Sources are 127.0.0.x and ::1.
Usage: policy_test.py FRAGPROXY_BINARY [CASE ...]"""
import faulthandler
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_cases  # noqa: E402
from harness import Echo, Proxy, free_port, metrics, total, wait_for  # noqa: E402

BINARY = sys.argv[1]
faulthandler.dump_traceback_later(120, exit=True)
LOCAL = "127.0.0.1"


def served(port, source, host=LOCAL):
    """True if a connection from `source` is relayed (an echo comes back), False if the proxy
    closes it unserved."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((source, 0))
    s.connect((host, port))
    try:
        s.sendall(b"hi")
        return s.recv(2) == b"hi"
    except OSError:  # reset: closed unserved with our bytes unread
        return False
    finally:
        s.close()


def start(echo, extra, listen=LOCAL):
    port, admin = free_port(listen), free_port()
    p = Proxy(BINARY, [{"name": "p", "listen": (listen, port), "upstreams": [(LOCAL, echo.port)],
                        "extra": extra}],
              extra=[f'admin: {{listen: "{LOCAL}:{admin}"}}']).start()
    return p, port, admin


def rejected(admin, reason):
    return total(metrics(admin), "fragproxy_connections_rejected_total", reason=reason)


def case_allow_deny():
    up = Echo()
    p, port, admin = start(up, ["allow: [127.0.0.0/24]", "deny: [127.0.0.3, 127.0.0.128/25]"])
    assert served(port, "127.0.0.2")
    assert not served(port, "127.0.0.3")    # /32 deny inside the /24 allow
    assert not served(port, "127.0.0.200")  # /25 deny
    assert not served(port, "127.0.1.1")    # outside every allow
    assert served(port, "127.0.0.127")
    assert rejected(admin, "denied") == 3
    assert up.accepted == 2, up.accepted  # refused before any upstream connect
    p.finish()
    q, port6, admin6 = start(up, ['deny: ["::1"]'], listen="::1")
    assert not served(port6, "::1", host="::1")
    assert rejected(admin6, "denied") == 1
    q.finish()
    up.stop()


def case_per_source_cap():
    up = Echo()
    p, port, admin = start(up, ["max_connections_per_source: 3"])
    held = []
    for _ in range(3):
        s = socket.create_connection((LOCAL, port), timeout=10, source_address=("127.0.0.2", 0))
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        held.append(s)
    assert not served(port, "127.0.0.2")  # the 4th from that source
    assert served(port, "127.0.0.3")      # another source has its own count
    held.pop().close()
    wait_for(lambda: total(metrics(admin), "fragproxy_connections_active") == 2, 10,
             "the closed connection to end")
    assert served(port, "127.0.0.2")      # room again
    assert rejected(admin, "source_connections") == 1
    for s in held:
        s.close()
    p.finish()
    up.stop()


def case_per_source_rate():
    """rate 1/m with a burst of 3: three connections pass, the fourth within the minute does not;
    another source is not affected."""
    up = Echo()
    p, port, admin = start(up, ["new_connections_per_source: {rate: 1/m, burst: 3}"])
    assert [served(port, "127.0.0.4") for _ in range(4)] == [True, True, True, False]
    assert served(port, "127.0.0.5")
    assert rejected(admin, "source_rate") == 1
    p.finish()
    up.stop()


def tcp_info_keepalive(port_filter):
    """The sockets to or from port_filter (/proc/net/tcp rows; column 5 is timer:expiry, timer 2
    is the keepalive timer)."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return [r for r in rows if int(r[1].split(":")[1], 16) == port_filter
            or int(r[2].split(":")[1], 16) == port_filter]


def case_keepalive_both_sides():
    """tcp_keepalive: both sides' sockets carry the keepalive timer (/proc/net/tcp timer 2)."""
    up = Echo()
    p, port, admin = start(up, ["tcp_keepalive: {idle: 30s, interval: 5s, count: 3}"])
    s = socket.create_connection((LOCAL, port), timeout=10)
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    client_side = [r for r in tcp_info_keepalive(port)
                   if int(r[1].split(":")[1], 16) == port and r[3] == "01"]
    upstream_side = [r for r in tcp_info_keepalive(up.port)
                     if int(r[2].split(":")[1], 16) == up.port and r[3] == "01"]
    assert client_side and client_side[0][5].startswith("02:"), client_side
    assert upstream_side and upstream_side[0][5].startswith("02:"), upstream_side
    s.close()
    p.finish()
    up.stop()


if __name__ == "__main__":
    run_cases(globals())
