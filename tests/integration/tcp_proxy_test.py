#!/usr/bin/env python3
"""Integration tests of the TCP proxy: the real binary on loopback.
Usage: tcp_proxy_test.py FRAGPROXY_BINARY [CASE ...]"""
import asyncio
import hashlib
import os
import random
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Proxy, bound, echo_transfer, free_port, iperf3_through,  # noqa: E402
                     read_all, require, wait_for)
from harness import io_uring_has as has_feature  # noqa: E402

BINARY = sys.argv[1]
MiB = 1 << 20


def reply_for(digest, mode):
    """The bytes the upstream sends back in 'H' mode: derived from what it received."""
    rng = random.Random(digest)
    return rng.randbytes(rng.randrange(0, 8 * MiB) if mode == "H" else 0)


async def upstream_handler(reader, writer):
    """First byte picks the mode. E: echo everything back as it arrives, close after EOF.
    H: read to EOF (client half-closed), then send a reply derived from the digest and close.
    R: read 100 KiB, then reset the connection."""
    try:
        mode = (await reader.readexactly(1)).decode()
        if mode == "E":
            while b := await reader.read(65536):
                writer.write(b)
                await writer.drain()
        elif mode == "H":
            h = hashlib.sha256()
            while b := await reader.read(65536):
                h.update(b)
            writer.write(reply_for(h.digest(), "H"))
            await writer.drain()
        elif mode == "R":
            await reader.readexactly(100 * 1024)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
        writer.close()


async def client_half_close(port, size, slow):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = random.randbytes(size)
    writer.write(b"H" + data)
    await writer.drain()
    writer.write_eof()  # half-close: the reply still has to arrive
    got = await read_all(reader, slow)
    writer.close()
    expect = reply_for(hashlib.sha256(data).digest(), "H")
    assert got == expect, f"half-close reply: {len(got)} bytes, expected {len(expect)}"


async def client_echo(port, size, slow):
    await echo_transfer(port, size, slow)


async def start_upstream(host="127.0.0.1"):
    server = await asyncio.start_server(upstream_handler, host, 0, limit=1 << 20, backlog=4096)
    return server, server.sockets[0].getsockname()[1]


def run_proxy(listeners, **kw):
    return Proxy(BINARY, listeners, **kw).start(("127.0.0.1", listeners[0]["listen"][1])
                                               if ":" not in listeners[0]["listen"][0]
                                               else (listeners[0]["listen"][0],
                                                     listeners[0]["listen"][1]))


def finish(proxy):
    """Exit 0, no page or fd held at exit; the TCP counters at exit (--stats-json)."""
    return proxy.finish()["tcp"]


async def case_forwarding():
    """250 concurrent connections, sizes 0 B - 8 MiB, checksums both ways, half of them
    half-closing, a fifth reading slowly."""
    server, up = await start_upstream()
    port = free_port()
    proxy = run_proxy([{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)]}])
    rng = random.Random(7)
    jobs = []
    for i in range(250):
        size = rng.choice([0, 1, rng.randrange(1, 4096), rng.randrange(1, 256 * 1024),
                           rng.randrange(1, 8 * MiB)])
        slow = i % 5 == 0 and size < 2 * MiB
        jobs.append((client_half_close if i % 2 else client_echo)(port, size, slow))
    try:
        await asyncio.wait_for(asyncio.gather(*jobs), 240)
    except BaseException:
        print(proxy.stop()[1])
        raise
    await stats_when(proxy, lambda s: s["tcp"]["closed"] == 251, "every connection closed")
    server.close()
    st = finish(proxy)
    assert st["accepted"] == 251, st  # 250 + the start probe
    # Each ended by two FINs, the second passed on by the close (no shutdown: tcp_relay.cpp).
    assert st["resets"] == 0 and st["fin_by_close"] == 251, st
    # ... with nothing left in flight to cancel (a cancel by fd walks the ring's poll table).
    assert st["close_cancels"] == 0, st
    # Receives in bundles (on by default where the kernel has them): some filled several
    # buffers in one completion.
    assert (st["recv_bundles"] > 0) == io_uring_has("send/recv bundles (6.10)"), st


async def case_upstream_refuses():
    """No upstream listening: the client gets a clean close (EOF), not a hang or a reset."""
    port, dead = free_port(), free_port()
    proxy = run_proxy([{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", dead)]}])
    # The start probe closes at once: its connect may fail first or be cancelled by its close.
    probe = proxy.wait_stats(lambda s: s["tcp"]["closed"] >= 1, 10, "the start probe's close")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello")
    assert await asyncio.wait_for(reader.read(100), 10) == b""
    writer.close()
    st = finish(proxy)
    assert st["upstream_failures"] == probe["tcp"]["upstream_failures"] + 1, st


async def case_retry_next_upstream():
    """The first upstream refuses, the second serves: the connection is retried there."""
    server, up = await start_upstream()
    port, dead = free_port(), free_port()
    proxy = run_proxy([{"listen": ("127.0.0.1", port),
                        "upstreams": [("127.0.0.1", dead), ("127.0.0.1", up)]}], workers=1)
    for _ in range(4):  # round robin starts on each upstream in turn
        await asyncio.wait_for(client_echo(port, 100000, False), 20)
    server.close()
    finish(proxy)


def blackhole():
    """A listener whose accept queue is full: the SYNs sent to it are dropped, a connect hangs."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    filler = socket.create_connection(lsock.getsockname())
    return lsock, filler, lsock.getsockname()[1]


async def case_connect_timeout():
    """An upstream that never answers: after timeouts.connect the next upstream is tried, and with
    no other upstream the client gets a clean close (EOF), not a hang."""
    lsock, filler, hole = blackhole()
    server, up = await start_upstream()
    port, lone = free_port(), free_port()
    short = ["timeouts: {connect: 300ms}"]
    proxy = run_proxy([{"listen": ("127.0.0.1", port), "extra": short,
                        "upstreams": [("127.0.0.1", hole), ("127.0.0.1", up)]},
                       {"listen": ("127.0.0.1", lone), "extra": short,
                        "upstreams": [("127.0.0.1", hole)]}], workers=1)
    waits = []
    for _ in range(2):  # round robin: one of the two starts on the silent upstream
        t0 = time.monotonic()
        await asyncio.wait_for(client_echo(port, 100000, False), 20)
        waits.append(time.monotonic() - t0)
    assert max(waits) >= 0.25, waits  # waited for the connect timeout, then was served
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", lone)
    writer.write(b"hello")
    assert await asyncio.wait_for(reader.read(100), 10) == b""
    assert 0.25 <= time.monotonic() - t0 < 5
    writer.close()
    server.close()
    filler.close()
    lsock.close()
    st = finish(proxy)
    assert st["upstream_failures"] == 3, st  # the start probe, one retried client, the lone one


def proxy_tcp_sockets(pid):
    """The connected TCP sockets in the proxy's fd table, as (peer address, TCP_NODELAY), read
    from copies taken with pidfd_getfd (listeners have no peer and are left out)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if not os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                continue
        except OSError:
            continue
        got = libc.syscall(438, pidfd, int(fd), 0)  # SYS_pidfd_getfd
        if got < 0:
            continue
        s = socket.socket(fileno=got)
        try:
            if s.type == socket.SOCK_STREAM and s.family == socket.AF_INET:
                found.append((s.getpeername(),
                              s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
        except OSError:
            pass  # the listener: no peer
        finally:
            s.close()
    os.close(pidfd)
    return found


def direct_descriptors_here():
    """Whether this run's proxy makes its TCP sockets as direct descriptors: the kernel has
    them (fragproxy --features), the io_uring backend runs, and FP_DIRECT does not turn them
    off."""
    if os.environ.get("FP_DIRECT") == "false":
        return False
    return io_uring_has("direct descriptors (6.8)")


def io_uring_has(feature):
    """Whether this run's proxy has an io_uring feature (harness.io_uring_has)."""
    return has_feature(BINARY, feature)


async def case_nodelay_both_sides():
    """TCP_NODELAY on the client side (inherited from the listener) and on the upstream side (a
    socket command on the ring): read from the proxy's own sockets through pidfd_getfd, so on
    plain fds (direct descriptors are in no fd table: case_direct_descriptors checks their
    socket commands succeed)."""
    server, up = await start_upstream()
    port = free_port()
    proxy = run_proxy([{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)]}],
                      workers=1, io_uring={"direct_descriptors": "false"})
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    mine = writer.get_extra_info("sockname")
    writer.write(b"E" + b"x" * 100)
    await reader.readexactly(100)  # connected both ways: the echo came back
    sides = {}
    for peer, nodelay in proxy_tcp_sockets(proxy.proc.pid):
        if peer == mine:
            sides["client"] = nodelay
        elif peer[1] == up:
            sides["upstream"] = nodelay
    assert sides == {"client": 1, "upstream": 1}, sides
    writer.close()
    server.close()
    finish(proxy)


async def stats_when(proxy, cond, what, timeout=10):
    """proxy.wait_stats for a test whose upstream runs on this event loop (which a blocking
    wait would stop)."""
    deadline = time.monotonic() + timeout
    while not cond(s := proxy.stats()):
        assert time.monotonic() < deadline, f"timed out waiting for {what} (last stats: {s})"
        await asyncio.sleep(0.02)
    return s


async def case_direct_descriptors():
    """40 connections held open through one worker: on direct descriptors (where this kernel
    and run have them) none of their 80 sockets is in the process's fd table, every socket
    command on them succeeded, and the exit report still counts them (0 at exit); on plain fds
    all 80 are there."""
    server, up = await start_upstream()
    port = free_port()
    proxy = run_proxy([{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)]}],
                      workers=1)
    direct = direct_descriptors_here()
    # (the harness's start probe made one connection: counted before ours)
    st0 = (await stats_when(proxy, lambda s: s["tcp"]["closed"] >= 1, "the probe's close"))["tcp"]
    conns = []
    for _ in range(40):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"E" + b"x" * 100)
        await reader.readexactly(100)  # connected both ways
        conns.append((reader, writer))
    st = (await stats_when(proxy, lambda s: s["tcp"]["accepted"] == st0["accepted"] + 40,
                           "40 connections"))["tcp"]
    sockets = proxy_tcp_sockets(proxy.proc.pid)
    made = st["direct_sides"] - st0["direct_sides"]
    print(f"  direct descriptors {'on' if direct else 'off'}: {len(sockets)} connection "
          f"sockets in the fd table, {made} direct sides")
    if direct:
        assert sockets == [] and made == 80, (sockets, st0, st)
    else:
        assert len(sockets) == 80 and st["direct_sides"] == 0, (len(sockets), st)
    for reader, writer in conns:
        writer.close()
    server.close()
    st = finish(proxy)
    assert st["sockopt_failures"] == 0, st


async def transfers_with(io_uring, seed):
    """16 checksummed transfers both ways (echo and half-close, up to 8 MiB) through a proxy
    with these io_uring settings; every connection closed, nothing held at exit. The TCP
    counters at exit."""
    server, up = await start_upstream()
    port = free_port()
    proxy = run_proxy([{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)]}],
                      io_uring=io_uring)
    rng = random.Random(seed)
    jobs = [(client_half_close if i % 2 else client_echo)(port, rng.randrange(1, 8 * MiB), False)
            for i in range(16)]
    await asyncio.wait_for(asyncio.gather(*jobs), 120)
    await stats_when(proxy, lambda s: s["tcp"]["closed"] == 17, "every connection closed")
    server.close()
    return finish(proxy)


async def case_send_zc():
    """io_uring: {send_zc: true}: checksummed transfers with sends of 3 KiB or more zero-copy,
    their fragments freed on the kernel's notification. Loopback copies them all the same
    (zc_copied, reported)."""
    st = await transfers_with({"send_zc": "true"}, 3)
    print(f"  {st['zc_sends']} zero-copy sends, {st['zc_copied']} copied by the kernel")
    zc = io_uring_has("zero-copy send and sendmsg (6.1)")
    assert (st["zc_sends"] > 0) == zc and st["resets"] == 0, st


async def case_no_bundles():
    """io_uring: {bundles: false}: checksummed transfers, each receive filling one buffer."""
    st = await transfers_with({"bundles": "false"}, 5)
    assert st["recv_bundles"] == 0 and st["resets"] == 0, st


async def case_upstream_resets():
    """The upstream resets mid-stream: the reset is passed on (the client's read fails with
    ECONNRESET, never a clean EOF), counted once; the proxy carries on serving."""
    server, up = await start_upstream()
    port = free_port()
    proxy = run_proxy([{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)]}])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"R" + os.urandom(200 * 1024))
    got = None
    try:
        await writer.drain()
        got = await asyncio.wait_for(reader.read(100), 10)
    except ConnectionResetError:
        pass
    assert got is None, f"a clean end ({got!r}) instead of the upstream's reset"
    writer.close()
    await asyncio.wait_for(client_echo(port, 300000, False), 20)  # still serving
    # (every connection over before the stop, which would reset one still closing)
    await stats_when(proxy, lambda s: s["tcp"]["closed"] == 3, "3 connections closed")
    server.close()
    st = finish(proxy)
    assert st["resets"] == 1 and st["accepted"] == 3, st


async def case_client_resets():
    """A client resets mid-stream: the upstream side is torn down; nothing leaks."""
    server, up = await start_upstream()
    port = free_port()
    proxy = run_proxy([{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)]}])
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"E" + os.urandom(500 * 1024))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    # Every reset connection is torn down (the start probe's too), then a new one is served.
    await asyncio.to_thread(proxy.wait_stats, lambda s: s["tcp"]["closed"] == 21, 20,
                            "the 20 reset connections to close")
    await asyncio.wait_for(client_echo(port, 300000, False), 20)
    server.close()
    st = finish(proxy)
    assert st["resets"] >= 20 and st["accepted"] == 22, st


async def case_ipv6():
    """An IPv6 listener in front of an IPv6 upstream."""
    server, up = await start_upstream("::1")
    port = free_port("::1")
    proxy = run_proxy([{"listen": ("::1", port), "upstreams": [("::1", up)]}])
    reader, writer = await asyncio.open_connection("::1", port)
    data = os.urandom(1 * MiB)
    writer.write(b"H" + data)
    writer.write_eof()
    got = await asyncio.wait_for(read_all(reader), 20)
    assert got == reply_for(hashlib.sha256(data).digest(), "H")
    writer.close()
    server.close()
    finish(proxy)


async def case_max_connections():
    """max_connections 5: five idle clients hold their slots, the sixth is closed at once; when
    one leaves, a new client gets in."""
    server, up = await start_upstream()
    port = free_port()
    proxy = run_proxy([{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)],
                        "extra": ["max_connections: 5"]}])

    def closed(n):
        return asyncio.to_thread(proxy.wait_stats, lambda s: s["tcp"]["closed"] == n, 10,
                                 f"{n} connection(s) closed")
    await closed(1)  # the start probe's slot is released
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
    for r, w in held:
        w.write(b"E")
    await asyncio.to_thread(proxy.wait_stats, lambda s: s["tcp"]["accepted"] == 6, 10,
                            "five clients accepted")
    r6, w6 = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await asyncio.wait_for(r6.read(10), 5) == b""
    except ConnectionResetError:
        pass
    held[0][1].close()
    await closed(2)
    await asyncio.wait_for(client_echo(port, 1000, False), 10)
    for r, w in held[1:]:
        w.close()
    server.close()
    st = finish(proxy)
    assert st["refused"] == 1 and st["accepted"] == 7, st


async def case_idle_timeout():
    """idle 1s: a silent connection is closed by the proxy within a couple of ticks."""
    server, up = await start_upstream()
    port = free_port()
    proxy = run_proxy([{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)],
                        "extra": ["timeouts: {idle: 1s}"]}])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"E")
    t0 = time.monotonic()
    assert await asyncio.wait_for(reader.read(10), 10) == b""
    took = time.monotonic() - t0
    assert 0.9 <= took <= 3.5, took
    writer.close()
    server.close()
    finish(proxy)


async def case_memory_bound():
    """A client pushes up to 256 MiB at an upstream that reads 1 KiB per ms, for 6 s: backpressure
    keeps the connection's queue within max_inflight_kib (256 KiB) plus what one batch of
    receive completions can add before the pause lands (the receive ring: 16 pages of 64 KiB),
    far below the 16 MiB arena it would fill without; the queue did fill to its bound."""
    async def slow_upstream(reader, writer):
        try:
            while await reader.read(1024):
                await asyncio.sleep(0.001)
        except (ConnectionError, asyncio.CancelledError):
            pass
        writer.close()

    server = await asyncio.start_server(slow_upstream, "127.0.0.1", 0)
    up = server.sockets[0].getsockname()[1]
    port = free_port()
    proxy = run_proxy([{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)],
                        "extra": ["max_inflight_kib: 256"]}])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunk = os.urandom(1 * MiB)
    sent, peak = 0, 0
    deadline = time.monotonic() + 6
    while sent < 256 * MiB and time.monotonic() < deadline:
        writer.write(chunk)
        try:
            await asyncio.wait_for(writer.drain(), 0.2)
        except asyncio.TimeoutError:
            pass
        sent += len(chunk)
        peak = max(peak, proxy.rss_kib())
    writer.transport.abort()
    server.close()
    st = finish(proxy)
    print(f"  memory bound: client wrote {sent >> 20} MiB into its socket, largest queue "
          f"{st['queue_peak_bytes'] >> 10} KiB, proxy peak RSS {peak} KiB")
    assert 128 * 1024 <= st["queue_peak_bytes"] <= 256 * 1024 + 16 * 64 * 1024, st


async def case_drain_lets_transfers_finish():
    """SIGTERM with a drain_timeout: the listeners close at once (a new client is refused), a
    transfer in progress completes byte for byte, and the proxy exits by itself as soon as it
    has ended: nothing reset, nothing cut, nothing leaked."""
    server, up = await start_upstream()
    port = free_port()
    proxy = run_proxy([{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)]}],
                      drain="20s")
    await asyncio.to_thread(proxy.wait_stats, lambda s: s["tcp"]["closed"] == 1, 10,
                            "the start probe's connection to close")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = os.urandom(8 * MiB)
    writer.write(b"E" + data[:MiB])
    got = await asyncio.wait_for(reader.readexactly(MiB // 2), 10)  # mid-transfer, both ways
    proxy.proc.send_signal(signal.SIGTERM)
    await asyncio.to_thread(wait_for, lambda: not bound(port), 10, "the listeners to close")
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        raise AssertionError("a new connection was accepted while draining")
    except ConnectionRefusedError:
        pass
    for i in range(MiB, len(data), 256 * 1024):
        writer.write(data[i:i + 256 * 1024])
        await writer.drain()
    writer.write_eof()
    got += await asyncio.wait_for(read_all(reader), 30)
    writer.close()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), len(got)
    code = await asyncio.to_thread(proxy.proc.wait, 10)  # ends by itself, long before 20 s
    assert code == 0, proxy.output()
    server.close()
    st = finish(proxy)
    assert st["resets"] == 0 and st["cut_with_data"] == 0 and st["closed"] == 2, st
    assert "drained: every connection ended" in proxy.output(), proxy.output()


async def case_drain_timeout_closes_the_rest():
    """A connection that does not end within drain_timeout is closed when it passes (reset: its
    peer must not take it for a complete end), and counted; the proxy exits 0, nothing leaked."""
    server, up = await start_upstream()
    port = free_port()
    proxy = run_proxy([{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)]}],
                      drain="1s")
    await asyncio.to_thread(proxy.wait_stats, lambda s: s["tcp"]["closed"] == 1, 10,
                            "the start probe's connection to close")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"E" + b"x" * 1000)
    assert await asyncio.wait_for(reader.readexactly(1000), 10) == b"x" * 1000
    t0 = time.monotonic()
    proxy.proc.send_signal(signal.SIGTERM)
    got = None
    try:
        got = await asyncio.wait_for(reader.read(100), 10)
    except ConnectionResetError:
        pass
    took = time.monotonic() - t0
    assert got is None, f"a clean end ({got!r}) of a connection cut by the drain deadline"
    assert 0.9 <= took < 5, took
    code = await asyncio.to_thread(proxy.proc.wait, 10)
    assert code == 0, proxy.output()
    writer.close()
    server.close()
    st = finish(proxy)
    assert st["resets"] == 1 and st["closed"] == 2, st


async def case_second_signal_stops_at_once():
    """A second SIGTERM during the drain stops at once (what is left is reset)."""
    server, up = await start_upstream()
    port = free_port()
    proxy = run_proxy([{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)]}],
                      drain="60s")
    await asyncio.to_thread(proxy.wait_stats, lambda s: s["tcp"]["closed"] == 1, 10,
                            "the start probe's connection to close")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"E" + b"y" * 10)
    assert await asyncio.wait_for(reader.readexactly(10), 10) == b"y" * 10
    proxy.proc.send_signal(signal.SIGTERM)
    await asyncio.to_thread(wait_for, lambda: "draining" in proxy.output(), 10, "the drain")
    t0 = time.monotonic()
    proxy.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(proxy.proc.wait, 10)
    assert code == 0 and time.monotonic() - t0 < 5, proxy.output()
    writer.close()
    server.close()
    st = finish(proxy)
    assert st["resets"] == 1, st


def kernel_max(name):
    """The largest socket buffer TCP's autotuning may give (net.ipv4.tcp_rmem/tcp_wmem)."""
    with open(f"/proc/sys/net/ipv4/{name}") as f:
        return int(f.read().split()[2])


async def case_iperf3():
    """iperf3 through the proxy, 2 s, 1 and 4 streams, no errors. iperf3's server stops counting
    when the end-of-test message overtakes the data still in flight (the control connection is a
    separate TCP connection), so with any buffering proxy (HAProxy too) 'received' trails 'sent'
    by what was in flight; the test checks that gap is bounded by what can be in flight: per
    stream, two hops of a send and a receive buffer at the kernel's largest, and the proxy's
    largest queue each way (--stats-json queue_peak_bytes; byte exactness is case_forwarding's
    job, with checksums)."""
    ip_port, port = free_port(), free_port()
    proxy = run_proxy([{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", ip_port)]}])
    runs = []
    for streams in (1, 4):
        j = iperf3_through(proxy, port, ip_port, "-t", "2", "-P", str(streams))
        sent, recv = j["end"]["sum_sent"]["bytes"], j["end"]["sum_received"]["bytes"]
        print(f"  iperf3 -P {streams}: {sent} bytes sent, {recv} received, "
              f"{j['end']['sum_received']['bits_per_second'] / 1e9:.2f} Gbit/s")
        runs.append((streams, sent, recv))
    st = finish(proxy)
    hop = kernel_max("tcp_wmem") + kernel_max("tcp_rmem")
    for streams, sent, recv in runs:
        bound = streams * (2 * hop + 2 * st["queue_peak_bytes"])
        assert 0 < recv <= sent and sent - recv <= bound, (streams, sent, recv, bound)


CASES = {n[5:]: f for n, f in globals().items() if n.startswith("case_")}

if __name__ == "__main__":
    require("iperf3")
    names = sys.argv[2:] or list(CASES)
    for n in names:
        t0 = time.monotonic()
        asyncio.run(CASES[n]())
        print(f"ok {n} ({time.monotonic() - t0:.1f} s)", flush=True)
