#!/usr/bin/env python3
"""Upstream DNS names, resolved by the system's resolver (getaddrinfo through Asio): the test
runs in its own mount and network namespaces (unshare -m -n) with its own /etc/hosts and
/etc/resolv.conf bind-mounted, so it can change what a name resolves to, and a name missing from
the hosts file fails at once (the nameserver is a closed port in an empty namespace) instead of
waiting on a real DNS server. A name that resolves serves; a reload follows the name to its new
address; a name that stops resolving keeps its last addresses at a reload, logged; a name that
does not resolve at start is a config error. Exits 77 when it cannot make the namespaces.
Usage: dns_test.py FRAGPROXY_BINARY [CASE ...]"""
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Proxy, Server, free_port, get, wait_for  # noqa: E402

BINARY = sys.argv[1]
HOSTS = os.environ.get("FP_HOSTS", "")


def set_hosts(text):
    """Rewrites the bind-mounted hosts file in place (a rename would leave the mount on the old
    file): getaddrinfo reads it again at each lookup."""
    with open(HOSTS, "r+") as f:
        f.seek(0)
        f.truncate()
        f.write("127.0.0.1 localhost\n" + text)


def tagged_echo(addr, port, tag):
    """A server on addr:port that answers every connection with its tag, then echoes."""
    def handle(c):
        with c:
            c.sendall(tag)
            while data := c.recv(65536):
                c.sendall(data)
    return Server(handle, (addr, port))


def who(port):
    """The tag of the upstream a new connection through the proxy reaches."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        return s.recv(100)


def case_follows_the_name_and_keeps_it():
    up_port = free_port()
    first = tagged_echo("127.0.0.1", up_port, b"first")
    second = tagged_echo("127.0.0.2", up_port, b"second")
    set_hosts("127.0.0.1 backend.test\n")
    port, admin = free_port(), free_port()
    listeners = [{"name": "named", "listen": ("127.0.0.1", port),
                  "upstreams": [("backend.test", up_port)]}]
    p = Proxy(BINARY, listeners, extra=[f'admin: {{listen: "127.0.0.1:{admin}"}}']).start()
    assert who(port) == b"first"
    status, _, body = get(admin, "/config")
    assert status == 200 and f'"127.0.0.1:{up_port}"' in body, body

    set_hosts("127.0.0.2 backend.test\n")  # the name moves: a reload follows it
    status, _, body = get(admin, "/reload", "POST")
    assert status == 200, body
    assert who(port) == b"second"

    set_hosts("")  # the name is gone: the reload keeps its last address, and says so
    status, _, body = get(admin, "/reload", "POST")
    assert status == 200, body
    wait_for(lambda: f"upstream backend.test:{up_port} does not resolve" in p.output(), 10,
             "the reload's note")
    assert f"keeps 127.0.0.2:{up_port}" in p.output(), p.output()
    assert who(port) == b"second"
    p.finish()
    first.stop()
    second.stop()


def case_unresolved_at_start_is_an_error():
    set_hosts("")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write("listeners:\n  - name: a\n    listen: 127.0.0.1:9\n"
                "    upstreams: [nowhere.test:80]\n")
        f.flush()
        r = subprocess.run([BINARY, "-c", f.name, "--check"], capture_output=True, text=True,
                           timeout=30)
    assert r.returncode == 1, r
    assert f"{f.name}:4:17: listeners[0].upstreams 'nowhere.test:80' does not resolve" in \
        r.stderr, r.stderr


CASES = {n[5:]: f for n, f in globals().items() if n.startswith("case_")}


def enter_namespaces():
    """Re-runs this script in new mount and network namespaces with its own hosts and
    resolv.conf; returns its exit."""
    d = tempfile.mkdtemp(prefix="fragproxy-dns-")
    hosts, resolv = os.path.join(d, "hosts"), os.path.join(d, "resolv.conf")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost\n")
    with open(resolv, "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    script = ('ip link set lo up && mount --make-rprivate / && '
              f'mount --bind {hosts} /etc/hosts && mount --bind {resolv} /etc/resolv.conf && '
              'exec "$0" "$@"')
    try:
        r = subprocess.run(["unshare", "-m", "-n", "sh", "-c", script, sys.executable, *sys.argv],
                           env={**os.environ, "FP_HOSTS": hosts}, timeout=300)
    except (OSError, subprocess.SubprocessError) as e:
        print(f"SKIP: cannot make the namespaces: {e}")
        return 77
    return r.returncode


if __name__ == "__main__":
    if not HOSTS:
        probe = subprocess.run(["unshare", "-m", "-n", "true"], capture_output=True)
        if probe.returncode != 0:
            print("SKIP: unshare -m -n is not permitted here (needs root or user namespaces)")
            sys.exit(77)
        sys.exit(enter_namespaces())
    for n in sys.argv[2:] or list(CASES):
        t0 = time.monotonic()
        CASES[n]()
        print(f"ok {n} ({time.monotonic() - t0:.1f} s)", flush=True)
