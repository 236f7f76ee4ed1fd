#!/usr/bin/env python3
"""The stats registry (net/base/stats.hpp): every stat it declares is in --stats-json (by its
section and key) and in /metrics (its family and labels, per worker), with the same value in
both once traffic has stopped; and each one moves under the workload that should move it: here
(TCP through a dead and a live upstream, an idle timeout, UDP sessions that expire), or in the
test named for it, which must read it. Usage: stats_test.py FRAGPROXY_BINARY [CASE ...]"""
import json
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_cases  # noqa: E402
from harness import Echo, Proxy, UdpEcho, free_port, metrics, wait_for  # noqa: E402

BINARY = sys.argv[1]
HERE = os.path.dirname(os.path.abspath(__file__))
UNIT = os.path.join(HERE, "..", "unit", "net", "tcp_relay_test.cpp")

# Moved by this test's workload (section.key).
MOVED_HERE = {
    "tcp.accepted", "tcp.closed", "tcp.upstream_failures", "tcp.retries",
    "tcp.bytes_client_to_upstream", "tcp.bytes_upstream_to_client", "tcp.idle_timeouts",
    "tcp.fragments", "tcp.pages_new", "tcp.live_connections", "tcp.fin_by_close",
    "tcp.close_cancels", "tcp.pages_in_use",
    "udp.datagrams_in", "udp.datagrams_out", "udp.sessions", "udp.sessions_expired",
    "udp.sends", "udp.fragments", "udp.pages_new", "udp.live_sessions",
    "ring.sqes", "ring.cqes", "ring.enters",
}
# Moved, and read, by another test: section.key -> (file, what it looks for there).
ELSEWHERE = {
    "tcp.refused": ("policy_test.py", "refused"),
    "tcp.resets": ("tcp_relay_test.cpp", "stats.resets"),
    "tcp.cut_with_data": ("tcp_proxy_test.py", "cut_with_data"),
    "tcp.connect_timeouts": ("tcp_relay_test.cpp", "stats.connect_timeouts"),
    "tcp.send_stalls": ("hostile_test.py", "send_stalls"),
    "tcp.recv_buffer_waits": ("tcp_relay_test.cpp", "stats.starved"),
    "tcp.pressure_pauses": ("hostile_test.py", "pressure_pauses"),
    "tcp.collapses": ("hostile_test.py", "collapses"),
    "tcp.collapsed_bytes": ("hostile_test.py", "collapsed_bytes"),
    "tcp.collapse_failures": ("hostile_test.py", "collapse_failures"),
    "tcp.buffer_clamps": ("hostile_test.py", "buffer_clamps"),
    "tcp.buffer_unclamps": ("hostile_test.py", "buffer_unclamps"),
    "tcp.fd_exhausted": ("tcp_relay_test.cpp", "stats.fd_exhausted"),
    "tcp.accept_pauses": ("tcp_relay_test.cpp", "stats.accept_pauses"),
    "tcp.direct_sides": ("tcp_proxy_test.py", "direct_sides"),
    "tcp.sockopt_failures": ("tcp_relay_test.cpp", "stats.sockopt_failures"),
    "tcp.zc_sends": ("tcp_relay_test.cpp", "stats.zc_sends"),
    "tcp.recv_bundles": ("tcp_proxy_test.py", "recv_bundles"),
    "tcp.queued_bytes": ("hostile_test.py", "queued_bytes"),
    "tcp.queue_peak_bytes": ("tcp_proxy_test.py", "queue_peak_bytes"),
    "tcp.page_drains": ("tcp_relay_test.cpp", "stats.page_drains"),
    "udp.sessions_refused": ("udp_proxy_test.py", "sessions_refused"),
    "udp.dropped_no_buffer": ("udp_proxy_test.py", "dropped_no_buffer"),
    "udp.dropped_responses": ("udp_proxy_test.py", "dropped_responses"),
    "udp.upstream_errors": ("udp_proxy_test.py", "upstream_errors"),
    "udp.denied": ("policy_test.py", "denied"),
    "udp.gso_refused": ("udp_proxy_test.py", "gso_refused"),
    "ring.batch_waits": ("udp_proxy_test.py", "batch_waits"),
}
# Not moved by any test, and why.
UNMOVED = {
    "tcp.illegal_transitions": "a bug counter: every test asserts 0",
    "udp.illegal_transitions": "a bug counter: every test asserts 0",
    "tcp.zc_copied": "only when the kernel copies a zero-copy send: loopback always does, and "
                     "zero-copy is off by default (bench peer fragproxy-zc)",
    "tcp.fd_installs": "direct descriptors under a clamp: hostile_test on a 6.8+ kernel",
    "tcp.pressure_level": "a gauge, 0 except during hostile_test's memory pressure",
    "tcp.pages_reused": "pages charged again in place: a churn longer than this test",
    "udp.pages_reused": "pages charged again in place: a churn longer than this test",
    "udp.dropped_no_upstream": "UDP with every upstream out by health checks",
    "udp.buffer_waits": "a UDP receive ring run dry: a flood past the ring's pages",
}


def registry():
    out = subprocess.run([BINARY, "--list-metrics=json"], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


def labels_of(text):
    """'k="v",k2="v2"' -> {(k, '"v"'), ...}"""
    out = set()
    for part in filter(None, text.split(",")):
        k, v = part.split("=", 1)
        out.add((k, v))
    return out


def sample_sum(samples, metric, labels):
    """The family's samples with these labels (and a worker label), summed over the workers."""
    want = labels_of(labels)
    hits = [v for (n, ls), v in samples.items()
            if n == metric and {k for k, _ in ls} == {k for k, _ in want} | {"worker"}
            and want <= ls]
    return hits


def case_every_stat_in_both_and_moving():
    stats = registry()
    keys = {f"{s['section']}.{s['key']}" for s in stats}
    assert len(keys) == len(stats), "a key twice in one section"
    # Every stat is accounted for, once.
    listed = MOVED_HERE | set(ELSEWHERE) | set(UNMOVED)
    assert keys == listed, (sorted(keys - listed), sorted(listed - keys))
    assert not (MOVED_HERE & set(ELSEWHERE)) and not (MOVED_HERE & set(UNMOVED))
    for key, (name, token) in ELSEWHERE.items():
        path = UNIT if name.endswith(".cpp") else os.path.join(HERE, name)
        with open(path) as f:
            assert token in f.read(), f"{key}: {name} does not read {token}"

    echo, udp_up = Echo(), UdpEcho()
    dead = free_port()  # nothing listens there: connects are refused, the next upstream tried
    port, idle_port, uport, admin = free_port(), free_port(), free_port(), free_port()
    p = Proxy(BINARY, [
        {"name": "t", "listen": ("127.0.0.1", port),
         "upstreams": [("127.0.0.1", dead), ("127.0.0.1", echo.port)]},
        {"name": "idle", "listen": ("127.0.0.1", idle_port),
         "upstreams": [("127.0.0.1", echo.port)], "extra": ["timeouts: {idle: 1s}"]},
        {"name": "u", "protocol": "udp", "listen": ("127.0.0.1", uport),
         "upstreams": [("127.0.0.1", udp_up.port)], "extra": ["session_timeout: 1s"]},
    ], workers=1, extra=[f'admin: {{listen: "127.0.0.1:{admin}"}}'])
    p.start(("127.0.0.1", admin))
    # TCP: round robin sends one of each pair of connections to the dead upstream first.
    for _ in range(4):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"x" * 10000)
            got = b""
            while len(got) < 10000:
                chunk = c.recv(65536)
                assert chunk, "closed early"
                got += chunk
            c.shutdown(socket.SHUT_WR)
            assert c.recv(10) == b""
    # One connection held open over a tick (the gauges), then left to its idle timeout.
    held = socket.create_connection(("127.0.0.1", idle_port), timeout=5)
    held.sendall(b"ping")
    assert held.recv(10) == b"ping"
    # UDP: sessions that answer, then expire.
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(5)
    for i in range(5):
        u.sendto(b"d%d" % i, ("127.0.0.1", uport))
        assert u.recvfrom(100)[0] == b"d%d" % i
    p.wait_stats(lambda s: s["tcp"]["live_connections"] >= 1 and s["udp"]["live_sessions"] >= 1
                 and s["tcp"]["pages_in_use"] > 0, 10, "the gauges published")
    p.wait_stats(lambda s: s["tcp"]["idle_timeouts"] >= 1 and s["udp"]["sessions_expired"] >= 1,
                 10, "the idle timeout and the session expiry")
    held.close()
    u.close()

    # The counters are still now: --stats-json and /metrics must agree on each one.
    def agree():
        s, m = p.stats(), metrics(admin)
        for st in stats:
            hits = sample_sum(m, st["metric"], st["labels"])
            assert hits, f"{st['metric']}{{{st['labels']}}} not in /metrics"
            if st["type"] == "counter" and sum(hits) != s[st["section"]][st["key"]]:
                return False
        return True
    wait_for(agree, 10, "--stats-json and /metrics to agree")
    s, m = p.stats(), metrics(admin)
    for how, n in s["tcp"]["closed_by"].items():
        assert sum(sample_sum(m, "fragproxy_connections_closed_total", f'how="{how}"')) == n, how
    assert sum(s["tcp"]["closed_by"].values()) == s["tcp"]["closed"], s["tcp"]
    # ... and the workload moved what it should (gauges: seen above, while it ran).
    gauges = {"tcp.live_connections", "udp.live_sessions", "tcp.pages_in_use"}
    for key in MOVED_HERE - gauges:
        section, k = key.split(".")
        assert s[section][k] > 0, f"{key} did not move: {s[section]}"
    for key in ("tcp.illegal_transitions", "udp.illegal_transitions"):
        section, k = key.split(".")
        assert s[section][k] == 0, key
    echo.stop()
    udp_up.stop()
    p.finish()


if __name__ == "__main__":
    run_cases(globals())
