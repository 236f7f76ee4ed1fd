#!/usr/bin/env python3
"""routes: TLS passthrough by server name, against real TLS servers (openssl s_server, each with
its own self-signed certificate: the certificate a client gets says which server it reached) and
real TLS clients (Python's ssl, OpenSSL underneath). Exact and wildcard names, no name, not TLS,
no route, the ClientHello in pieces and split across records, the largest and a too large one,
its timeout, a PROXY header in front of it, and a byte-exact transfer through a TLS echo.
Usage: sni_test.py FRAGPROXY_BINARY [CASE ...]"""
import asyncio
import faulthandler
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (CHILDREN, Proxy, Server, free_port, metrics, skip, total,  # noqa: E402
                     wait_bound)

BINARY = sys.argv[1]
faulthandler.dump_traceback_later(180, exit=True)
LOCAL = "127.0.0.1"
CERTS = tempfile.mkdtemp(prefix="fragproxy-sni-")


def cert(name):
    """A self-signed certificate for `name`: (cert path, key path, its DER)."""
    c, k = os.path.join(CERTS, name + ".crt"), os.path.join(CERTS, name + ".key")
    if not os.path.exists(c):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", k, "-out", c,
                        "-days", "2", "-subj", f"/CN={name}", "-addext",
                        f"subjectAltName=DNS:{name}"], check=True, capture_output=True)
    with open(c) as f:
        return c, k, ssl.PEM_cert_to_DER_cert(f.read())


class TlsServer:
    """openssl s_server -www on a port of its own: answers GET with a status page."""

    def __init__(self, name):
        self.name = name
        c, k, self.der = cert(name)
        self.port = free_port()
        self.proc = subprocess.Popen(["openssl", "s_server", "-accept", f"{LOCAL}:{self.port}",
                                      "-cert", c, "-key", k, "-www", "-quiet"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        CHILDREN.append(self.proc)
        wait_bound(self.port, "tcp", self.proc)


def client_context(alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the certificate says who answered; trust is not the point
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def fetch(port, name, alpn=None):
    """A TLS connection through the proxy asking for `name` (None: no server name): the peer's
    certificate (DER) and the page it served."""
    with socket.create_connection((LOCAL, port), timeout=10) as raw:
        with client_context(alpn).wrap_socket(raw, server_hostname=name) as s:
            der = s.getpeercert(binary_form=True)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            page = b""
            while chunk := s.recv(65536):
                page += chunk
    assert page.startswith(b"HTTP/1.0 200"), page[:100]
    return der


def refused(port, name=None, data=None):
    """True when the proxy closes the connection without reaching a server: a TLS handshake
    (or plain `data`) that gets EOF or a reset."""
    with socket.create_connection((LOCAL, port), timeout=10) as raw:
        if data is not None:
            raw.sendall(data)
            try:
                return raw.recv(100) == b""
            except ConnectionResetError:
                return True
        try:
            client_context().wrap_socket(raw, server_hostname=name).close()
            return False
        except (ssl.SSLError, ConnectionResetError, ssl.SSLEOFError, OSError):
            return True


def client_hello(name, alpn=None):
    """The first flight of a TLS client asking for `name`, and the TLS object to go on with."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context(alpn).wrap_bio(inc, out, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read(), (obj, inc, out)


def two_records(hello, cut):
    """The same handshake message carried by two TLS records, split `cut` bytes in."""
    body = hello[5:]
    rec = lambda b: bytes([0x16, 3, 1, len(b) >> 8, len(b) & 255]) + b  # noqa: E731
    return rec(body[:cut]) + rec(body[cut:])


def fetch_manual(port, name, pieces, prefix=b""):
    """A TLS connection whose first flight goes out as these pieces of bytes (prefix + the
    ClientHello, transformed by `pieces`), each its own segment; then the handshake and a GET
    through memory BIOs. Returns the peer's certificate (DER)."""
    hello, (obj, inc, out) = client_hello(name)
    with socket.create_connection((LOCAL, port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i, piece in enumerate(pieces(prefix + hello)):
            if i:
                time.sleep(0.05)  # its own segment (the scenario, not a synchronisation)
            s.sendall(piece)

        def pump():
            data = s.recv(65536)
            if not data:
                raise ConnectionError("EOF during the handshake")
            inc.write(data)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if out.pending:
                    s.sendall(out.read())
                pump()
        obj.write(b"GET / HTTP/1.0\r\n\r\n")
        s.sendall(out.read())
        page = b""
        while True:
            try:
                chunk = obj.read(65536)
                if not chunk:
                    break
                page += chunk
            except ssl.SSLWantReadError:
                try:
                    pump()
                except ConnectionError:
                    break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
        assert page.startswith(b"HTTP/1.0 200"), page[:100]
        return obj.getpeercert(binary_form=True)


def start(listeners, admin=True):
    port = free_port()
    extra = [f'admin: {{listen: "{LOCAL}:{port}"}}'] if admin else []
    return Proxy(BINARY, listeners, extra=extra).start(), port


def routed(name, port, routes, more=()):
    return {"name": name, "listen": (LOCAL, port), "upstreams": [],
            "extra": ["routes:", *[f"  - {r}" for r in routes], *more]}


def rejected(admin, listener, reason):
    return total(metrics(admin), "fragproxy_connections_rejected_total", listener=listener,
                 reason=reason)


def case_routes_by_name():
    api, svc1, svc2, other = (TlsServer(n) for n in ("api.example.com", "one.svc.example.com",
                                                     "two.svc.example.com", "default.example.com"))
    port = free_port()
    p, admin = start([routed("tls", port, [
        f'{{sni: [api.example.com], upstreams: ["{LOCAL}:{api.port}"]}}',
        f'{{sni: ["*.svc.example.com"], upstreams: ["{LOCAL}:{svc1.port}", "{LOCAL}:{svc2.port}"]}}',
        f'{{default: true, upstreams: ["{LOCAL}:{other.port}"]}}'])])
    assert fetch(port, "api.example.com") == api.der
    seen = {fetch(port, n) for n in ("x.svc.example.com", "a.b.svc.example.com",
                                     "y.svc.example.com", "z.svc.example.com")}
    assert seen == {svc1.der, svc2.der}, "the route's two servers take turns"
    assert fetch(port, "svc.example.com") == other.der  # a wildcard is not its own apex
    assert fetch(port, "www.example.org") == other.der
    assert fetch(port, None) == other.der  # no server name sent
    # The ClientHello in three segments, and split across two TLS records.
    assert fetch_manual(port, "api.example.com",
                        lambda b: [b[:3], b[3:40], b[40:]]) == api.der
    assert fetch_manual(port, "api.example.com", lambda b: [two_records(b, 50)]) == api.der
    assert fetch_manual(port, "q.svc.example.com",
                        lambda b: (lambda t: [t[:20], t[20:70], t[70:]])(two_records(b, 60))) \
        in (svc1.der, svc2.der)
    # The largest ClientHello (a long ALPN list: about 12 KiB) is read; one past 16 KiB is not.
    long_alpn = [f"proto-{i:03d}-" + "x" * 240 for i in range(48)]
    assert len(client_hello("api.example.com", long_alpn)[0]) > 12000
    assert fetch(port, "api.example.com", alpn=long_alpn) == api.der
    too_long = [f"proto-{i:03d}-" + "x" * 240 for i in range(70)]
    assert refused(port, data=client_hello("api.example.com", too_long)[0])
    assert rejected(admin, "tls", "client_hello_invalid") == 1
    assert rejected(admin, "tls", "no_route") == 0
    m = metrics(admin)
    routes = {r: total(m, "fragproxy_route_connections_total", listener="tls", route=r)
              for r in ("api.example.com", "*.svc.example.com", "default")}
    assert routes == {"api.example.com": 4, "*.svc.example.com": 5, "default": 3}, routes
    p.finish()


def case_not_tls_and_no_route():
    """Plain bytes go to the default route at once; without a default route an unknown name and
    plain bytes are closed, counted; an invalid ClientHello is reset, counted."""
    api = TlsServer("api.example.com")

    def banner_echo(conn):
        with conn:
            conn.sendall(b"220 plain server\r\n")
            while data := conn.recv(65536):
                conn.sendall(data)
    plain = Server(banner_echo)
    with_default, without = free_port(), free_port()
    p, admin = start([
        routed("mixed", with_default, [
            f'{{sni: [api.example.com], upstreams: ["{LOCAL}:{api.port}"]}}',
            f'{{default: true, upstreams: ["{LOCAL}:{plain.port}"]}}']),
        routed("strict", without, [
            f'{{sni: [api.example.com], upstreams: ["{LOCAL}:{api.port}"]}}'])])
    with socket.create_connection((LOCAL, with_default), timeout=10) as s:
        s.sendall(b"hello plain\n")
        got = b""
        while len(got) < len(b"220 plain server\r\nhello plain\n"):
            got += s.recv(100)
        assert got == b"220 plain server\r\nhello plain\n", got
    assert fetch(with_default, "api.example.com") == api.der
    assert fetch(without, "api.example.com") == api.der
    assert refused(without, "other.example.com")
    assert refused(without, None)
    assert refused(without, data=b"GET / HTTP/1.1\r\n\r\n")
    assert rejected(admin, "strict", "no_route") == 3
    assert refused(with_default, data=b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00")  # not a hello
    assert rejected(admin, "mixed", "client_hello_invalid") == 1
    assert rejected(admin, "mixed", "no_route") == 0
    p.finish()
    plain.stop()


def case_timeout():
    """client_hello_timeout: a client that sent nothing goes to the default route (its server
    speaks first); one that sent part of a ClientHello is reset, counted."""
    def banner(conn):
        with conn:
            conn.sendall(b"220 speaks first\r\n")
            conn.recv(100)
    first = Server(banner)
    port = free_port()
    p, admin = start([routed("t", port, [
        f'{{sni: [api.example.com], upstreams: ["{LOCAL}:{first.port}"]}}',
        f'{{default: true, upstreams: ["{LOCAL}:{first.port}"]}}'],
        ["client_hello_timeout: 1s"])])
    t0 = time.monotonic()
    with socket.create_connection((LOCAL, port), timeout=10) as s:
        assert s.recv(100) == b"220 speaks first\r\n"
    assert time.monotonic() - t0 >= 0.9
    hello = client_hello("api.example.com")[0]
    assert refused(port, data=hello[:30])
    assert rejected(admin, "t", "client_hello_timeout") == 1
    p.finish()
    first.stop()


def case_proxy_header_then_client_hello():
    """accept_proxy and routes: the PROXY header, then the ClientHello (in the same segment, or
    after it), routed by its name."""
    api, other = TlsServer("api.example.com"), TlsServer("default.example.com")
    port = free_port()
    p, _ = start([routed("pp", port, [
        f'{{sni: [api.example.com], upstreams: ["{LOCAL}:{api.port}"]}}',
        f'{{default: true, upstreams: ["{LOCAL}:{other.port}"]}}'],
        ["accept_proxy: {versions: [v1]}"])])
    header = b"PROXY TCP4 198.51.100.7 127.0.0.1 5555 443\r\n"
    assert fetch_manual(port, "api.example.com", lambda b: [b], prefix=header) == api.der
    assert fetch_manual(port, "api.example.com",
                        lambda b: [b[:len(header)], b[len(header):]], prefix=header) == api.der
    assert fetch_manual(port, "www.example.org", lambda b: [b], prefix=header) == other.der
    p.finish()


def case_byte_exact_through_tls_echo():
    """8 MiB both ways through a route to a TLS echo server: the ClientHello and everything after
    it arrive unchanged (the handshake would fail otherwise, the checksum checks the rest)."""
    c, k, der = cert("echo.example.com")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(c, k)

    def echo(conn):
        try:
            with sctx.wrap_socket(conn, server_side=True) as s:
                while data := s.recv(65536):
                    s.sendall(data)
        except (ssl.SSLError, OSError):
            pass
    server = Server(echo)
    port = free_port()
    p, _ = start([routed("e", port, [
        f'{{sni: [echo.example.com], upstreams: ["{LOCAL}:{server.port}"]}}'])])

    async def transfer():
        data = os.urandom(8 << 20)
        reader, writer = await asyncio.open_connection(LOCAL, port, ssl=client_context(),
                                                       server_hostname="echo.example.com")
        assert writer.get_extra_info("ssl_object").getpeercert(binary_form=True) == der

        async def send():
            for i in range(0, len(data), 1 << 18):
                writer.write(data[i:i + (1 << 18)])
                await writer.drain()
        sender = asyncio.create_task(send())
        got = await reader.readexactly(len(data))
        await sender
        writer.close()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    asyncio.run(asyncio.wait_for(transfer(), 60))
    p.finish()
    server.stop()


CASES = {n[5:]: f for n, f in globals().items() if n.startswith("case_")}

if __name__ == "__main__":
    if not shutil.which("openssl"):
        skip("openssl is missing (scripts/deps.sh installs it)")
    try:
        for n in sys.argv[2:] or list(CASES):
            t0 = time.monotonic()
            CASES[n]()
            print(f"ok {n} ({time.monotonic() - t0:.1f} s)", flush=True)
    finally:
        shutil.rmtree(CERTS, ignore_errors=True)
