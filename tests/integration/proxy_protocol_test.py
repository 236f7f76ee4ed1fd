#!/usr/bin/env python3
"""send_proxy: v1 and v2 to real peers that accept the PROXY protocol, HAProxy (`accept-proxy`)
and nginx (`listen ... proxy_protocol`), each answering with the client address it was told; the
answer must be the test client's own address and port.
Usage: proxy_protocol_test.py FRAGPROXY_BINARY [CASE ...]"""
import faulthandler
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Proxy, free_port, require, wait_bound  # noqa: E402

BINARY = sys.argv[1]
faulthandler.dump_traceback_later(120, exit=True)
LOCAL = "127.0.0.1"


def ask(port, source="127.0.0.7"):
    """An HTTP request through the proxy from `source`; (the body, our own address)."""
    with socket.create_connection((LOCAL, port), timeout=10, source_address=(source, 0)) as s:
        me = "%s:%d" % s.getsockname()
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1."), reply
    return body.decode().strip(), me


def haproxy(port):
    cfg = tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False)
    cfg.write(f"""global
    maxconn 100
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend told
    bind {LOCAL}:{port} accept-proxy
    http-request return status 200 content-type text/plain lf-string "%ci:%cp"
""")
    cfg.close()
    proc = subprocess.Popen(["haproxy", "-db", "-f", cfg.name], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_bound(port, "tcp", proc)
    return proc, cfg.name


def nginx(port):
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(f"""daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};
    uwsgi_temp_path {d}; scgi_temp_path {d};
    server {{
        listen {LOCAL}:{port} proxy_protocol;
        location / {{ return 200 "$proxy_protocol_addr:$proxy_protocol_port\\n"; }}
    }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", os.path.join(d, "nginx.conf"), "-p", d],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_bound(port, "tcp", proc)
    return proc


def run(peer_port, version):
    port = free_port()
    p = Proxy(BINARY, [{"name": "pp", "listen": (LOCAL, port), "upstreams": [(LOCAL, peer_port)],
                        "extra": [f"send_proxy: {version}"]}]).start()
    for _ in range(3):
        told, me = ask(port)
        assert told == me, (version, told, me)
    p.finish()
    return told


def case_to_haproxy():
    require("haproxy")
    port = free_port()
    proc, cfg = haproxy(port)
    try:
        for version in ("v1", "v2"):
            print(f"  HAProxy accept-proxy, {version}: told {run(port, version)}")
    finally:
        proc.kill()
        proc.wait()
        os.unlink(cfg)


def case_to_nginx():
    require("nginx")
    port = free_port()
    proc = nginx(port)
    try:
        for version in ("v1", "v2"):
            print(f"  nginx proxy_protocol, {version}: told {run(port, version)}")
    finally:
        proc.kill()
        proc.wait()


CASES = {n[5:]: f for n, f in globals().items() if n.startswith("case_")}

if __name__ == "__main__":
    for n in sys.argv[2:] or list(CASES):
        t0 = time.monotonic()
        CASES[n]()
        print(f"ok {n} ({time.monotonic() - t0:.1f} s)", flush=True)
