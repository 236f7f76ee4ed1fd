#!/usr/bin/env python3
"""Balancing across upstreams (balance: round_robin with weights, least_conn, random2,
source_hash), measured from the upstreams' side: each upstream answers with its own name.
Usage: balance_test.py FRAGPROXY_BINARY [CASE ...]"""
import collections
import faulthandler
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_cases  # noqa: E402
from harness import Proxy, Server, free_port, get, metrics, total, wait_for  # noqa: E402

BINARY = sys.argv[1]
faulthandler.dump_traceback_later(120, exit=True)
LOCAL = "127.0.0.1"


class Named(Server):
    """An upstream that sends its one-byte name on accept, then holds the connection open until
    the client closes it (hold) or closes at once."""

    def __init__(self, name, hold=True):
        self.name, self.hold = name, hold
        super().__init__(self.greet)

    def greet(self, c):
        c.sendall(self.name)
        if self.hold:
            threading.Thread(target=self.drain, args=(c,), daemon=True).start()
        else:
            c.close()

    @staticmethod
    def drain(c):
        while c.recv(4096):
            pass
        c.close()


def which(port, source=LOCAL):
    """(upstream name, the open socket) of a new connection from `source`."""
    s = socket.create_connection((LOCAL, port), timeout=10, source_address=(source, 0))
    name = s.recv(1)
    assert name, "closed before the upstream's name"
    return name, s


def proxy(ups, balance, workers=2, admin=None):
    """ups: [(upstream, weight)]; returns (the started proxy, its port)."""
    port = free_port()
    p = Proxy(BINARY, [{"name": "b", "listen": (LOCAL, port),
                        "upstreams": [(LOCAL, u.port) for u, _ in ups],
                        "weights": [w for _, w in ups], "extra": [f"balance: {balance}"]}],
              workers=workers, extra=[f'admin: {{listen: "{LOCAL}:{admin}"}}'] if admin else ())
    return p.start(), port


def case_weighted_round_robin():
    """Weights 3:1: 200 connections split 150:50 (each worker's smooth round robin keeps the
    ratio within one connection)."""
    a, b = Named(b"A", hold=False), Named(b"B", hold=False)
    p, port = proxy([(a, 3), (b, 1)], "round_robin")
    seen = collections.Counter()
    for _ in range(200):
        name, s = which(port)
        seen[name] += 1
        s.close()
    assert abs(seen[b"A"] - 150) <= 2 and seen[b"A"] + seen[b"B"] == 200, seen
    p.finish()
    a.stop()
    b.stop()


def case_least_conn_goes_where_connections_end():
    """Upstream A holds its connections, B closes each at once: least_conn sends nearly every
    new connection to B (its count is back to 0), where round robin would send half to A."""
    a, b = Named(b"A", hold=True), Named(b"B", hold=False)
    held = []
    for balance in ("least_conn", "round_robin"):
        admin = free_port()
        p, port = proxy([(a, 1), (b, 1)], balance, admin=admin)
        seen = collections.Counter()
        for _ in range(20):
            name, s = which(port)
            seen[name] += 1
            if name == b"A":
                held.append(s)
            else:
                assert s.recv(1) == b""  # B closed it
                s.close()
            # Each connection counted where it went, and let go when it ended (exact, at once).
            wait_for(lambda: total(metrics(admin), "fragproxy_connections_active") == len(held),
                     10, "the closed connections to end in the proxy")
        if balance == "least_conn":
            assert seen[b"A"] <= 2, seen  # one per worker at most: the first picks
        else:
            assert seen[b"A"] >= 8, seen
        for s in held:
            s.close()
        held.clear()
        p.finish()
    a.stop()
    b.stop()


def case_random2_serves_all():
    ups = [Named(bytes([ord("A") + i]), hold=False) for i in range(4)]
    p, port = proxy([(u, 1) for u in ups], "random2")
    seen = collections.Counter()
    for _ in range(80):
        name, s = which(port)
        seen[name] += 1
        s.close()
    assert set(seen) == {b"A", b"B", b"C", b"D"}, seen
    p.finish()
    for u in ups:
        u.stop()


def case_source_hash_sticks_and_moves_little():
    """40 sources (127.0.0.10-49) each go to the same upstream every time; a reload that removes
    one of the 4 upstreams moves only the sources that were on it."""
    ups = [Named(bytes([ord("A") + i]), hold=False) for i in range(4)]
    admin = free_port()
    p, port = proxy([(u, 1) for u in ups], "source_hash", admin=admin)
    sources = [f"127.0.0.{i}" for i in range(10, 50)]

    def mapping():
        out = {}
        for src in sources:
            names = set()
            for _ in range(3):
                name, s = which(port, src)
                names.add(name)
                s.close()
            assert len(names) == 1, (src, names)  # sticks
            out[src] = names.pop()
        return out
    before = mapping()
    assert len(set(before.values())) >= 3, before  # spread
    text = open(p.config).read().replace(f', "{LOCAL}:{ups[3].port}"', "")
    with open(p.config, "w") as f:
        f.write(text)
    status, _, body = get(admin, "/reload", "POST")
    assert status == 200, body
    after = mapping()
    moved = [s for s in sources if before[s] != after[s]]
    on_d = [s for s in sources if before[s] == b"D"]
    # Maglev: the removed one's sources move, and (nearly) no other.
    assert set(on_d) <= set(moved) and len(moved) - len(on_d) <= len(sources) // 10, (moved, on_d)
    print(f"  {len(sources)} sources over 4 upstreams; removing one moved {len(moved)} "
          f"(the {len(on_d)} that were on it)")
    p.finish()
    for u in ups:
        u.stop()


if __name__ == "__main__":
    run_cases(globals())
