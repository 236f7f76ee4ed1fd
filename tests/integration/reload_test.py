#!/usr/bin/env python3
"""Hot reload (SIGHUP, POST /reload): listeners added, removed and changed while connections run;
established connections keep their bytes and their settings; a broken file changes nothing.
Usage: reload_test.py FRAGPROXY_BINARY [CASE ...]"""
import asyncio
import faulthandler
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_cases  # noqa: E402
from harness import Echo, Proxy, UdpEcho, free_port, get, metrics, total  # noqa: E402
from harness import bound, udp_free_port, wait_for  # noqa: E402

BINARY = sys.argv[1]
faulthandler.dump_traceback_later(240, exit=True)  # a hang prints where it hangs
LOCAL = "127.0.0.1"


def listener(name, port, *ups, protocol="tcp", extra=()):
    return {"name": name, "listen": (LOCAL, port), "upstreams": [(LOCAL, u) for u in ups],
            "protocol": protocol, "extra": list(extra)}


def start(listeners, extra=()):
    admin = free_port()
    p = Proxy(BINARY, listeners, extra=[f'admin: {{listen: "{LOCAL}:{admin}"}}', *extra])
    p.start((LOCAL, listeners[0]["listen"][1]))
    return p, admin


def reloads(admin, result):
    return total(metrics(admin), "fragproxy_config_reloads_total", result=result)


def reload_by_signal(p, admin):
    """SIGHUP, then waits until the reload counted (the workers have applied it by then)."""
    before = reloads(admin, "ok") + reloads(admin, "error")
    p.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloads(admin, "ok") + reloads(admin, "error") > before, 10, "the reload")


def reload_by_post(admin):
    status, _, body = get(admin, "/reload", "POST")
    assert status == 200, (status, body)


def echo_once(port, data=b"ping"):
    with socket.create_connection((LOCAL, port), timeout=10) as s:
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = s.recv(65536)
            assert chunk, "closed early"
            got += chunk
        assert got == data


async def long_lived(port, stop, pool, up):
    """Sends 16 KiB chunks and compares each echo exactly until stop; then a clean close.
    up: a list of asyncio.Event, one of which it sets once its first echo is back."""
    r, w = await asyncio.open_connection(LOCAL, port)
    n = off = 0
    while not stop.is_set():
        chunk = pool[off:off + 16384]
        off = (off + 4099) % (len(pool) - 16384)
        w.write(chunk)
        await w.drain()
        got = await asyncio.wait_for(r.readexactly(len(chunk)), 10)
        assert got == chunk, "an echo differs"
        n += len(chunk)
        if n == len(chunk):
            up.pop().set()
        await asyncio.sleep(0.02)  # pacing, not synchronisation: 100 of these share the loop
    w.write_eof()
    assert await asyncio.wait_for(r.read(), 10) == b""
    w.close()
    return n


async def connect_loop(port, stop):
    """Connects to a listener that every reload keeps, again and again: never refused."""
    n = 0
    while not stop.is_set():
        try:
            r, w = await asyncio.open_connection(LOCAL, port)
        except ConnectionRefusedError:
            raise AssertionError(f"refused during the reloads (after {n} connections)") from None
        w.write(b"ping")
        assert await asyncio.wait_for(r.readexactly(4), 10) == b"ping"
        w.close()
        n += 1
    return n


def case_under_load():
    """100 long-lived connections stay byte-exact across 20 reloads that add and remove a
    listener and switch the kept listener's upstream; a client connecting in a loop to the kept
    listener is never refused; a broken file in the middle changes nothing."""
    a, b = Echo(), Echo()
    stay, extra_port = free_port(), free_port()
    p, admin = start([listener("stay", stay, a.port)])

    def driver():
        for i in range(20):
            up = b if i % 2 == 0 else a
            ls = [listener("stay", stay, up.port)]
            if i % 2 == 0:
                ls.append(listener("extra", extra_port, a.port))
            p.write_config(ls, extra=[f'admin: {{listen: "{LOCAL}:{admin}"}}'])
            reload_by_post(admin) if i % 4 < 2 else reload_by_signal(p, admin)
            before = up.accepted
            echo_once(stay)  # a new connection goes to the new upstream
            wait_for(lambda: up.accepted > before, 10, f"reload {i}: the new upstream's accept")
            if i % 2 == 0:
                echo_once(extra_port)
            else:
                try:
                    socket.create_connection((LOCAL, extra_port), timeout=10).close()
                    raise AssertionError(f"reload {i}: the removed listener still accepts")
                except ConnectionRefusedError:
                    pass
            if i == 10:  # a broken file: logged with file:line:col, nothing changes
                with open(p.config, "a") as f:
                    f.write("listeners: [oops\n")
                status, _, body = get(admin, "/reload", "POST")
                assert status == 500 and f"{p.config}:" in body, (status, body)
                echo_once(stay)
                echo_once(extra_port)

    async def main():
        stop = asyncio.Event()
        pool = os.urandom(1 << 20)
        started = [asyncio.Event() for _ in range(100)]
        events = list(started)
        conns = [asyncio.create_task(long_lived(stay, stop, pool, events)) for _ in range(100)]
        looping = asyncio.create_task(connect_loop(stay, stop))
        # Every connection relays before the first reload.
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 30)
        try:
            await asyncio.to_thread(driver)
        finally:
            stop.set()
        return await asyncio.gather(*conns), await looping
    sent, looped = asyncio.run(main())
    assert len(sent) == 100 and all(n > 0 for n in sent), sent
    m = metrics(admin)
    assert total(m, "fragproxy_config_reloads_total", result="ok") == 20, m
    assert total(m, "fragproxy_config_reloads_total", result="error") == 1, m
    out = p.output()
    assert "reload failed: " + p.config + ":" in out, out
    st = p.finish()
    assert st["tcp"]["cut_with_data"] == 0 and st["tcp"]["resets"] == 0, st
    print(f"  100 connections, {sum(sent) >> 20} MiB echoed byte-exact across 20 reloads; "
          f"{looped} connections to the kept listener, none refused")
    a.stop()
    b.stop()


def case_established_keep_their_settings():
    """A reload that shortens the idle timeout applies to new connections; one established
    before it keeps its own (and is never cut by the reload)."""
    up = Echo()
    port = free_port()
    p, admin = start([listener("l", port, up.port, extra=["timeouts: {idle: 60s}"])])
    old = socket.create_connection((LOCAL, port), timeout=10)
    old.sendall(b"x")
    assert old.recv(1) == b"x"
    p.write_config([listener("l", port, up.port, extra=["timeouts: {idle: 1s}"])],
                   workers=3, extra=[f'admin: {{listen: "{LOCAL}:{admin}"}}'])
    status, _, body = get(admin, "/reload", "POST")
    assert status == 200 and "next start" in body, (status, body)  # workers: 3 needs a restart
    new = socket.create_connection((LOCAL, port), timeout=10)
    new.sendall(b"y")
    assert new.recv(1) == b"y"
    t0 = time.monotonic()
    assert new.recv(1) == b"", "the new connection ends by its 1 s idle timeout"
    assert time.monotonic() - t0 < 10
    old.sendall(b"z")  # idle longer than 1 s, but accepted under idle: 60s
    assert old.recv(1) == b"z"
    old.close()
    new.close()
    assert "workers: 2" in get(admin, "/config")[2]  # as running
    st = p.finish()
    assert st["tcp"]["idle_timeouts"] == 1, st
    up.stop()


def case_udp_listener_added_and_removed():
    """A reload adds a UDP listener to workers that had none (its relay comes with it), then
    removes it: the session it has goes on until it expires, new clients get none, and the port
    is let go once its last session ended."""
    up, tcp_up = UdpEcho(), Echo()
    tcp, udp = free_port(), udp_free_port()
    base = [listener("t", tcp, tcp_up.port)]
    p, admin = start(base)
    admin_line = [f'admin: {{listen: "{LOCAL}:{admin}"}}']
    p.write_config(base + [listener("u", udp, up.port, protocol="udp",
                                    extra=["session_timeout: 2s"])], extra=admin_line)
    reload_by_post(admin)
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(5)
    c.sendto(b"hello", (LOCAL, udp))
    assert c.recvfrom(100)[0] == b"hello"
    p.write_config(base, extra=admin_line)
    reload_by_post(admin)
    c.sendto(b"again", (LOCAL, udp))  # its session goes on
    assert c.recvfrom(100)[0] == b"again"
    d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    d.sendto(b"new", (LOCAL, udp))  # a new client: no session on a removed listener
    wait_for(lambda: p.stats()["udp"]["sessions_refused"] >= 1, 10, "the new client refused")
    wait_for(lambda: not bound(udp, "udp"), 15, "the removed listener's port let go")
    echo_once(tcp)
    st = p.finish()
    assert st["udp"]["sessions"] == 1 and st["udp"]["sessions_expired"] == 1, st
    c.close()
    d.close()
    up.stop()
    tcp_up.stop()


def case_port_zero():
    """Listeners and the admin endpoint on port 0: the kernel picks each port, every worker's
    socket binds that same one, and the ready record (--ready-file) names them; a reload keeps a
    port-0 listener's port while its name stays, a new one gets its own, and the record is
    rewritten."""
    up, uup = Echo(), UdpEcho()
    zt = listener("zt", 0, up.port)
    zu = listener("zu", 0, uup.port, protocol="udp")
    p = Proxy(BINARY, [zt, zu], workers=2, extra=[f'admin: {{listen: "{LOCAL}:0"}}'])
    p.start()
    r = p.ready()
    assert r["pid"] == p.proc.pid, r
    host, tport = p.address("zt")
    _, uport = p.address("zu")
    assert host == LOCAL and tport and uport, r
    admin = int(r["admin"].rpartition(":")[2])
    assert admin and r["admin"] == f"{LOCAL}:{admin}", r
    for _ in range(40):
        echo_once(tport)
    m = metrics(admin)
    per_worker = [total(m, "fragproxy_tcp_accepted_total", worker=str(w)) for w in (0, 1)]
    assert sum(per_worker) == 40 and min(per_worker) > 0, per_worker  # both workers' sockets
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(5)
    u.sendto(b"dgram", (LOCAL, uport))
    assert u.recvfrom(100)[0] == b"dgram"
    # A reload: zt and zu keep their ports, zn is new and gets one of its own.
    p.write_config([zt, zu, listener("zn", 0, up.port)], workers=2,
                   extra=[f'admin: {{listen: "{LOCAL}:0"}}'])
    p.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "zn" in {l["name"] for l in p.ready()["listeners"]}, 10, "the new record")
    assert p.address("zt")[1] == tport and p.address("zu")[1] == uport, p.ready()
    nport = p.address("zn")[1]
    assert nport and nport not in (tport, uport), p.ready()
    echo_once(nport)
    echo_once(tport)
    u.sendto(b"again", (LOCAL, uport))
    assert u.recvfrom(100)[0] == b"again"
    u.close()
    up.stop()
    uup.stop()
    p.finish()


if __name__ == "__main__":
    run_cases(globals())
