#!/usr/bin/env python3
"""The PROXY protocol both ways. send_proxy: v1 and v2 to real peers that accept it, HAProxy
(`accept-proxy`) and nginx (`listen ... proxy_protocol`), each answering with the client address it
was told: the test client's own. accept_proxy: behind HAProxy's send-proxy / send-proxy-v2, the
client HAProxy saw is the one fragproxy passes on; headers in pieces, with payload, invalid, too
slow, from an untrusted peer, and the policy applied to the client the header names.
Usage: proxy_protocol_test.py FRAGPROXY_BINARY [CASE ...]"""
import faulthandler
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_cases  # noqa: E402
from harness import Proxy, Server, free_port, metrics, require, total, wait_bound  # noqa: E402
from harness import wait_for  # noqa: E402

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


def run_haproxy(mode, sections, *ports):
    """HAProxy in `mode` with these sections; returns (process, config path) once every port is
    bound."""
    cfg = tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False)
    cfg.write(f"""global
    maxconn 100
defaults
    mode {mode}
    timeout connect 5s
    timeout client 10s
    timeout server 10s
{sections}""")
    cfg.close()
    proc = subprocess.Popen(["haproxy", "-db", "-f", cfg.name], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for port in ports:
        wait_bound(port, "tcp", proc)
    return proc, cfg.name


def haproxy(port):
    return run_haproxy("http", f"""frontend told
    bind {LOCAL}:{port} accept-proxy
    http-request return status 200 content-type text/plain lf-string "%ci:%cp"
""", port)


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


def haproxy_in_front(port, to_port, send):
    """HAProxy in TCP mode on `port`, passing connections to `to_port` with `send` (send-proxy,
    send-proxy-v2)."""
    return run_haproxy("tcp", f"""frontend front
    bind {LOCAL}:{port}
    default_backend fp
backend fp
    server fp {LOCAL}:{to_port} {send}
""", port)


def case_accept_behind_haproxy():
    """client -> HAProxy (send-proxy[-v2]) -> fragproxy (accept_proxy, send_proxy v1) -> nginx
    (proxy_protocol): nginx is told the client HAProxy saw."""
    require("haproxy", "nginx")
    ng = free_port()
    ng_proc = nginx(ng)
    try:
        for send in ("send-proxy", "send-proxy-v2"):
            fp_port, front = free_port(), free_port()
            admin = free_port()
            p = Proxy(BINARY, [{"name": "ap", "listen": (LOCAL, fp_port),
                                "upstreams": [(LOCAL, ng)],
                                "extra": ["accept_proxy: {trusted: [127.0.0.1]}",
                                          "send_proxy: v1"]}],
                      extra=[f'admin: {{listen: "{LOCAL}:{admin}"}}']).start()
            hp, cfg = haproxy_in_front(front, fp_port, send)
            try:
                told, me = ask(front)
                assert told == me, (send, told, me)
                print(f"  HAProxy {send} -> fragproxy accept_proxy -> nginx: told {told}")
            finally:
                hp.kill()
                hp.wait()
                os.unlink(cfg)
            p.finish()
    finally:
        ng_proc.kill()
        ng_proc.wait()


def teller():
    """An upstream that reads everything (a PROXY v1 line and the payload after it) until the
    client's FIN, and sends it all back."""
    def tell(c):
        data = b""
        while chunk := c.recv(65536):
            data += chunk
        c.sendall(data)
        c.close()
    return Server(tell)


V2_SIG = bytes([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A])


def v2_header(src, sport, dst, dport, tlv=b""):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + sport.to_bytes(2, "big") + \
        dport.to_bytes(2, "big") + tlv
    return V2_SIG + bytes([0x21, 0x11]) + len(body).to_bytes(2, "big") + body


def through(port, chunks, source=LOCAL, pause=0.0):
    """Sends the chunks (pausing between them), half-closes, returns what comes back."""
    with socket.create_connection((LOCAL, port), timeout=10, source_address=(source, 0)) as s:
        out = b""
        try:  # a refused connection may be closed (reset) while we still write
            for i, c in enumerate(chunks):
                if i and pause:
                    time.sleep(pause)  # pieces of a header arriving apart, not synchronisation
                s.sendall(c)
            s.shutdown(socket.SHUT_WR)
            while chunk := s.recv(65536):
                out += chunk
        except OSError:
            pass
        return out


def case_accept_rules():
    up = teller()
    port, admin = free_port(), free_port()
    p = Proxy(BINARY, [{"name": "ap", "listen": (LOCAL, port), "upstreams": [(LOCAL, up.port)],
                        "extra": ["accept_proxy: {versions: [v2], trusted: [127.0.0.0/29],"
                                  " timeout: 1s}", "send_proxy: v1", "deny: [198.51.100.0/24]"]}],
              extra=[f'admin: {{listen: "{LOCAL}:{admin}"}}']).start()
    payload = os.urandom(200_000)
    header = v2_header("203.0.113.5", 4444, "192.0.2.9", 443, tlv=b"\x04\x00\x01x")
    got = through(port, [header + payload])
    want = b"PROXY TCP4 203.0.113.5 192.0.2.9 4444 443\r\n" + payload
    assert got == want, (got[:60], len(got))
    got = through(port, [header[:7], header[7:20], header[20:] + payload[:10]], pause=0.05)
    assert got == want[:len(want) - len(payload) + 10], got[:80]
    st = p.wait_stats(lambda st: st["tcp"]["closed"] == 2, 10, "both closed")
    assert st["tcp"]["bytes_client_to_upstream"] == len(payload) + 10, st  # not the headers
    reason = lambda r: total(metrics(admin), "fragproxy_connections_rejected_total", reason=r)
    assert through(port, [b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nhello"]) == b""  # v1 not allowed
    assert through(port, [b"GET / HTTP/1.0\r\n\r\n"]) == b""
    assert reason("proxy_invalid") == 2
    assert through(port, [header], source="127.0.0.9") == b""  # outside trusted
    assert reason("untrusted") == 1
    deny = v2_header("198.51.100.7", 1, "192.0.2.9", 443)
    assert through(port, [deny + b"x"]) == b""  # the client it names is denied
    assert reason("denied") == 1
    with socket.create_connection((LOCAL, port), timeout=10) as s:
        s.sendall(header[:10])
        t0 = time.monotonic()
        try:  # closed by its 1 s timeout (the tick's second at most more); reset: bytes unread
            assert s.recv(1) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - t0 < 5
    wait_for(lambda: reason("proxy_timeout") == 1, 5, "the timeout counted")
    p.finish()
    up.stop()


def crc32c(data):
    """CRC-32C (Castagnoli), bit by bit: the CRC32C TLV's checksum."""
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


def with_crc(header):
    """A v2 header with a CRC32C TLV appended (its length and checksum filled in)."""
    h = header[:14] + (int.from_bytes(header[14:16], "big") + 7).to_bytes(2, "big") + \
        header[16:] + b"\x03\x00\x04\x00\x00\x00\x00"
    return h[:-4] + crc32c(h).to_bytes(4, "big")


def tlvs_of(data):
    """The TLVs of the v2 header at the start of data, as (type, value); and its length."""
    assert data[:12] == V2_SIG, data[:20]
    end = 16 + int.from_bytes(data[14:16], "big")
    off, out = 16 + (12 if data[13] >> 4 == 1 else 36), []
    while off < end:
        n = int.from_bytes(data[off + 1:off + 3], "big")
        out.append((data[off], data[off + 3:off + 3 + n]))
        off += 3 + n
    return out, end


def case_tlvs_passed():
    """accept_proxy and send_proxy v2 with pass_tlvs and crc32c: the TLVs asked for go on in
    their order, the others stay, the header sent carries its own valid checksum; a header whose
    checksum does not match is refused."""
    up = teller()
    port, admin = free_port(), free_port()
    p = Proxy(BINARY, [{"name": "tlv", "listen": (LOCAL, port), "upstreams": [(LOCAL, up.port)],
                        "extra": ["accept_proxy: {versions: [v2], trusted: [127.0.0.1]}",
                                  "send_proxy: {version: v2, pass_tlvs: [authority, 0xE0], "
                                  "crc32c: true}"]}],
              extra=[f'admin: {{listen: "{LOCAL}:{admin}"}}']).start()
    authority = b"\x02\x00\x0bexample.com"
    tlvs = b"\x01\x00\x02h2" + authority + b"\x04\x00\x00" + b"\xe0\x00\x03abc" + \
        b"\xe1\x00\x02zz"
    header = with_crc(v2_header("203.0.113.5", 4444, "192.0.2.9", 443, tlv=tlvs))
    payload = os.urandom(100_000)
    got = through(port, [header[:30], header[30:] + payload], pause=0.05)
    sent, end = tlvs_of(got)
    assert [t for t, _ in sent] == [0x02, 0xE0, 0x03], sent
    assert sent[0][1] == b"example.com" and sent[1][1] == b"abc", sent
    head = got[:end]
    assert crc32c(head[:-4] + b"\0\0\0\0").to_bytes(4, "big") == sent[2][1], "its checksum"
    assert head[16:28] == socket.inet_aton("203.0.113.5") + socket.inet_aton("192.0.2.9") + \
        (4444).to_bytes(2, "big") + (443).to_bytes(2, "big"), head
    assert got[end:] == payload, (len(got), end)
    print(f"  passed on: {[(hex(t), v) for t, v in sent[:2]]} and a checksum")
    bad = bytearray(header)
    bad[-1] ^= 1
    assert through(port, [bytes(bad) + b"x"]) == b""
    wait_for(lambda: total(metrics(admin), "fragproxy_connections_rejected_total",
                           reason="proxy_invalid") == 1, 5, "the bad checksum counted")
    p.finish()
    up.stop()


def case_tlvs_between_haproxies():
    """HAProxy (http, unique-id-format; send-proxy-v2 with unique-id and crc32c) -> fragproxy
    (accept_proxy; send_proxy v2 passing unique_id, with crc32c) -> HAProxy (accept-proxy, which
    checks the checksum) answering with the client and the unique id it was told."""
    require("haproxy")
    origin, fp_port, front = free_port(), free_port(), free_port()
    proc, cfg = run_haproxy("http", f"""frontend front
    bind {LOCAL}:{front}
    unique-id-format "uid-%ci-%cp"
    default_backend fp
backend fp
    server fp {LOCAL}:{fp_port} send-proxy-v2 proxy-v2-options unique-id,crc32c
frontend told
    bind {LOCAL}:{origin} accept-proxy
    http-request return status 200 content-type text/plain lf-string "%ci:%cp %[fc_pp_unique_id]"
""", front, origin)
    try:
        p = Proxy(BINARY, [{"name": "mid", "listen": (LOCAL, fp_port),
                            "upstreams": [(LOCAL, origin)],
                            "extra": ["accept_proxy: {versions: [v2], trusted: [127.0.0.1]}",
                                      "send_proxy: {version: v2, pass_tlvs: [unique_id], "
                                      "crc32c: true}"]}]).start()
        for _ in range(3):
            told, me = ask(front)
            addr, uid = told.split(" ")
            assert addr == me and uid == "uid-" + me.replace(":", "-"), (told, me)
        print(f"  HAProxy -> fragproxy -> HAProxy: told {told}")
        p.finish()
    finally:
        proc.kill()
        proc.wait()
        os.unlink(cfg)


if __name__ == "__main__":
    run_cases(globals())
