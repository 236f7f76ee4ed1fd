#!/usr/bin/env python3
"""Hostile and careless clients against the real binary (loopback, bounded in time and count).
Usage: hostile_test.py FRAGPROXY_BINARY [CASE ...]

Runs inside a network namespace it creates (unshare -n) whose loopback has a 1500-byte MTU, as
an internet-facing proxy sees: on the host's 64 KiB-MTU loopback every connection starts with
megabyte kernel buffers (twice ten 64 KiB segments) and a few thousand of them put the whole
host under tcp_mem pressure whatever the proxy does. Exits 77 when it cannot make a namespace.

The acceptance case: 1,000 clients that never read and 1,000 that read 1 KiB/s, against an
upstream that streams to all of them, while fresh clients make 10 MB checksummed echo transfers.
Fresh transfers must keep finishing throughout: their median within 1 s and every one within 5 s
(alone one takes about 0.07 s), the proxy's RSS must stay within its arenas, and once the hostile
clients leave every page is back in the pool. Every socket of the test shares one kernel, whose
TCP memory limits (tcp_mem) are the host's: the peers' buffers are kept small so that only the
proxy's sockets are as a real deployment has them (HOSTILE_TCP_MEMORY); the case is skipped on a
host whose tcp_mem is below that."""
import asyncio
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Proxy, echo_transfer, free_port, io_uring_has, wait_for  # noqa: E402

BINARY = sys.argv[1]
MiB = 1 << 20
CHUNK = bytes(range(256)) * 256  # 64 KiB the streaming upstream writes again and again


# --- the upstream, in its own process so the clients' event loop does not slow it -------------

async def upstream_handler(reader, writer):
    """First byte: S = stream CHUNK forever; E = echo until EOF. A streaming socket's send buffer
    is kept to 32 KiB (the kernel makes it 64): a backend on its own host; here it shares the
    proxy's kernel, whose TCP memory (tcp_mem) would otherwise fill with the backend's buffers,
    not the proxy's (see open_streams)."""
    try:
        mode = await reader.readexactly(1)
        if mode == b"S":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
            while True:
                writer.write(CHUNK)
                await writer.drain()
        while b := await reader.read(65536):
            writer.write(b)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
        pass
    writer.close()


def run_upstream(port):
    async def main():
        server = await asyncio.start_server(upstream_handler, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()
    raise_nofile()
    asyncio.run(main())


def start_upstream():
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--upstream", str(port)])
    wait_for(lambda: can_connect(port), 10, "the upstream to listen")
    return proc, port


def can_connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def kernel_tcp_counters():
    """The namespace's TCP counters (nstat's JSON; {} when nstat is missing): retransmission
    timeouts are what a connection whose packets were dropped pays, in seconds."""
    try:
        out = subprocess.run(["nstat", "-azj"], capture_output=True, text=True, timeout=10).stdout
        return json.loads(out).get("kernel", {})
    except (OSError, ValueError, subprocess.SubprocessError):
        return {}


def tcp_memory_pages():
    """(pages of TCP memory the host's sockets hold now, tcp_mem's pressure threshold): both are
    the kernel's, for the whole host (tcp_mem is not per namespace, and not shown inside one: it
    was read before entering it, enter_netns)."""
    with open("/proc/net/sockstat") as f:
        used = next(int(line.split()[-1]) for line in f if line.startswith("TCP:"))
    return used, int(os.environ["FP_TCP_MEM"].split()[1])


# What the 2,000 hostile connections and their peers hold in the kernel here, all of them on one
# host: 810-920 MiB at the peak (the proxy's own sockets about 550 of it, measured with ss -m;
# 1,500 MiB, over tcp_mem's pressure threshold, with the peers' default buffers). Past
# tcp_mem's pressure threshold the kernel shrinks every socket's window to four segments and
# past its limit drops packets for all, fresh transfers included: transfers of 1-2.5 s, then
# stalls of tens of seconds in retransmission backoff, whatever the proxy does.
HOSTILE_TCP_MEMORY = 1200 * MiB


class Skip(Exception):
    """A case's prerequisite is missing (the message says which)."""


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- clients -----------------------------------------------------------------------------------

async def fresh_echo(port, size=10 * MiB, data=None):
    """A 10 MB checksummed echo transfer through the proxy; returns its duration in seconds."""
    return await echo_transfer(port, size, data=data)


def open_streams(port, n):
    """n raw client sockets that asked the upstream for an endless stream. Their receive buffers
    are small: these clients' memory is on their own hosts, not on the proxy's (the upstream's
    send buffers likewise); the proxy's sockets keep the kernel's defaults."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        s.connect(("127.0.0.1", port))
        s.sendall(b"S")
        s.setblocking(False)
        socks.append(s)
    return socks


async def read_slowly(sock, stop):
    """1 KiB per second until stop is set."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        await asyncio.sleep(1)
        try:
            await asyncio.wait_for(loop.sock_recv(sock, 1024), 0.5)
        except (asyncio.TimeoutError, OSError):
            pass


async def case_slow_clients_do_not_stop_others():
    _, threshold = tcp_memory_pages()
    if threshold * 4096 < HOSTILE_TCP_MEMORY:
        raise Skip(f"tcp_mem's pressure threshold is {threshold * 4096 >> 20} MiB on this host, "
                   f"below the {HOSTILE_TCP_MEMORY >> 20} MiB the hostile clients and their peers "
                   "hold in its kernel (a host with more memory has a higher one)")
    raise_nofile()
    up_proc, up = start_upstream()
    port = free_port()
    workers, arena_mib, ring_pages = 2, 64, 16
    if os.environ.get("FP_RECEIVE") == "fragments":
        ring_pages += 1  # the ring's fragments, and the FragCache's current page they came from
    proxy = Proxy(BINARY, [{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)]}],
                  workers=workers, memory=f"{{arena: {arena_mib}MiB, page_order: 4}}")
    proxy.start(("127.0.0.1", port))
    stop, readers = asyncio.Event(), []
    try:
        base = [await asyncio.wait_for(fresh_echo(port), 30) for _ in range(3)]
        rss_before = proxy.rss_kib()
        never = open_streams(port, 1000)
        slow = open_streams(port, 1000)
        readers = [asyncio.create_task(read_slowly(s, stop)) for s in slow]
        # The attack has taken hold once every hostile connection is up, the budget has paused
        # them, and the initial flood (the kernel buffers of 2,000 connections filling, a few
        # hundred MB through 2 shared cores) has ended: less than 4 MB forwarded in a second.
        last = [0]

        def settled(s):
            t = s["tcp"]
            flowing = t["bytes_upstream_to_client"] - last[0]
            last[0] = t["bytes_upstream_to_client"]
            time.sleep(1)
            return t["live_connections"] >= 2000 and t["pressure_pauses"] > 0 and flowing < 4 * MiB
        await asyncio.to_thread(proxy.wait_stats, settled, 90, "the hostile clients to fill up")
        during, peak, tcp_peak = [], 0, 0
        pressures = kernel_tcp_counters().get("TcpExtTCPMemoryPressures", 0)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            during.append(await asyncio.wait_for(fresh_echo(port), 30))
            peak = max(peak, proxy.rss_kib())
            tcp_peak = max(tcp_peak, tcp_memory_pages()[0])
        s = proxy.stats()["tcp"]
        print(f"  fresh 10 MB echo: {min(base):.2f}-{max(base):.2f} s alone, "
              f"{min(during):.2f}-{max(during):.2f} s ({len(during)} transfers) under 2,000 "
              f"hostile clients; RSS {rss_before >> 10} MiB before, peak {peak >> 10} MiB during "
              f"(arenas {workers * arena_mib} MiB); queued {s['queued_bytes'] >> 10} KiB, "
              f"{s['collapses']} collapses ({s['collapsed_bytes'] >> 10} KiB copied), "
              f"{s['pressure_pauses']} budget pauses, {s['buffer_clamps']} clamps, "
              f"{s['buffer_unclamps']} unclamps", flush=True)
        k = kernel_tcp_counters()
        pressures = k.get("TcpExtTCPMemoryPressures", 0) - pressures
        print(f"  kernel (this namespace): {k.get('TcpExtTCPTimeouts', 0)} retransmission "
              f"timeouts, {k.get('TcpExtTCPRcvQDrop', 0)} segments dropped at full receive "
              f"buffers, {k.get('TcpRetransSegs', 0)} retransmitted; host TCP memory peak "
              f"{tcp_peak * 4096 >> 20} MiB (tcp_mem pressure at {threshold * 4096 >> 20} MiB, "
              f"entered {pressures} times)", flush=True)
        assert statistics.median(during) < 1.0 and max(during) < 5.0, (during, pressures)
        assert peak < (workers * arena_mib + 48) * 1024, peak
        stop.set()
        await asyncio.gather(*readers)
        for sock in never + slow:
            sock.close()
        # Everything back: only the receive rings' pages are left in use (the fragments path's
        # cache gives back its idle pages once a second).
        await asyncio.to_thread(proxy.wait_stats,
                                lambda s: s["tcp"]["live_connections"] == 0 and
                                s["tcp"]["pages_in_use"] <= workers * ring_pages, 30,
                                "the hostile clients' pages to return")
        await asyncio.wait_for(fresh_echo(port), 30)
        proxy.finish()
    finally:  # a failure ends the slow readers too (else asyncio.run waits for them)
        stop.set()
        for t in readers:
            t.cancel()
        if proxy.proc.poll() is None:
            proxy.proc.kill()
        up_proc.kill()
        up_proc.wait()


async def download_client(port, n_read, slow=0.0):
    """Asks the upstream for an endless stream; reads n_read bytes (pausing `slow` s per 64 KiB);
    then reads to the end: returns ('eof'|'reset', bytes read)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"S")
    got = 0
    try:
        while True:
            b = await reader.read(65536)
            if not b:
                return "eof", got
            got += len(b)
            if got >= n_read and slow:
                await asyncio.sleep(slow)
    except ConnectionResetError:
        return "reset", got
    finally:
        writer.close()


async def case_collapse_keeps_every_byte():
    """A small arena (6 MiB, one worker) and 400 clients that stop reading: the pool comes under
    pressure and stuck queues are collapsed into compact fragments. Then every client reads
    2 MiB of its stream: each byte is where the stream put it (byte k is k % 256). (The budget
    aims to keep the pool out of pressure: with 8 MiB and 300 clients it sometimes settled below
    it before any collapse, 1 run in 5 or so; 6 MiB and 400 clients: 12 runs in 12 collapsed.)
    Receives one buffer each (no bundles): the pressure these figures were tuned for."""
    await collapse_keeps_every_byte("6MiB", bundles=False, clients=400)


async def case_collapse_keeps_every_byte_bundles():
    """The same with receive bundles (a receive fills several ring buffers, so a stuck queue holds
    the pieces of many pages): 6 MiB settled below pressure before any collapse in 3 CI runs of 6;
    4 MiB and 400 clients starved instead (44,270 collapses found no memory, 65 s in one CI run);
    4 MiB and 300 clients collapsed in 10 runs of 10 here (4 with two other processes busy), in
    4-6 s, with a handful of failed collapses at most."""
    await collapse_keeps_every_byte("4MiB", bundles=True, clients=300)


async def collapse_keeps_every_byte(arena, bundles, clients):
    raise_nofile()
    up_proc, up = start_upstream()
    port = free_port()
    proxy = Proxy(BINARY, [{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)]}],
                  workers=1, memory=f"{{arena: {arena}, page_order: 4}}",
                  io_uring={"bundles": "true" if bundles else "false"})
    proxy.start(("127.0.0.1", port))
    try:
        socks = open_streams(port, clients)
        st = await asyncio.to_thread(proxy.wait_stats, lambda s: s["tcp"]["collapses"] > 0, 30,
                                     "a collapse")
        loop = asyncio.get_running_loop()

        async def check(sock):
            got = bytearray()
            while len(got) < 2 * MiB:
                b = await loop.sock_recv(sock, 65536)
                assert b, "stream ended"
                got += b
            expect = (CHUNK * (len(got) // len(CHUNK) + 1))[:len(got)]
            assert got == expect, "stream corrupted"
        await asyncio.wait_for(asyncio.gather(*(check(s) for s in socks)), 120)
        for s in socks:
            s.close()
        st = proxy.finish()["tcp"]
        print(f"  {st['collapses']} collapses, {st['collapsed_bytes'] >> 10} KiB copied, "
              f"{st['collapse_failures']} found no memory, {st['recv_bundles']} receive "
              f"bundles", flush=True)
        assert st["collapses"] > 0, st
        # Bundles were on where the kernel has them. (Not checked on the fragments receive path:
        # its ring of 16 KiB buffers is starved here, recv_buffer_waits in the hundreds of
        # thousands, so a receive finds one buffer on offer and fills no more.)
        if (bundles and io_uring_has(BINARY, "send/recv bundles (6.10)")
                and os.environ.get("FP_RECEIVE") != "fragments"):
            assert st["recv_bundles"] > 0, st
    finally:
        if proxy.proc.poll() is None:
            proxy.proc.kill()
        up_proc.kill()


async def case_stop_resets_streams():
    """SIGTERM mid-download: the client sees a reset, never a clean EOF that would pass a
    truncated download for a complete one."""
    up_proc, up = start_upstream()
    port = free_port()
    proxy = Proxy(BINARY, [{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)]}],
                  workers=1).start(("127.0.0.1", port))
    try:
        task = asyncio.create_task(download_client(port, 4 * MiB, slow=0.01))
        await asyncio.to_thread(proxy.wait_stats,
                                lambda s: s["tcp"]["bytes_upstream_to_client"] >= 4 * MiB, 20,
                                "4 MiB downloaded")
        proxy.proc.send_signal(signal.SIGTERM)
        how, got = await asyncio.wait_for(task, 20)
        assert how == "reset", (how, got)
        proxy.proc.wait(20)
        s = proxy.stats()
        assert s["tcp"]["resets"] >= 1 and s["at_exit"]["pages_in_use"] == 0, s
    finally:
        if proxy.proc.poll() is None:
            proxy.proc.kill()
        up_proc.kill()


async def case_idle_timeout_with_queued_data_resets():
    """A client that stops reading while data is queued for it: at the idle timeout the proxy
    discards that data, so the client gets a reset (and the cut is counted), not a FIN."""
    up_proc, up = start_upstream()
    port = free_port()
    proxy = Proxy(BINARY, [{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)],
                            "extra": ["timeouts: {idle: 1s}"]}], workers=1)
    proxy.start(("127.0.0.1", port))
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"S")
        st = proxy.wait_stats(lambda st: st["tcp"]["cut_with_data"] >= 1, 20, "the idle cut")
        assert st["tcp"]["idle_timeouts"] >= 1, st
        s.settimeout(10)
        try:
            while s.recv(65536):
                pass
            raise AssertionError("clean EOF after discarded data")
        except ConnectionResetError:
            pass
        s.close()
        proxy.finish()
    finally:
        up_proc.kill()


async def case_send_stall_resets():
    """A client that never reads but keeps sending keeps its connection active (the idle timer
    never fires) while its download queue makes no progress: timeouts.send_stall resets it."""
    up_proc, up = start_upstream()
    port = free_port()
    proxy = Proxy(BINARY, [{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)],
                            "extra": ["timeouts: {idle: 60s, send_stall: 2s}"]}], workers=1)
    proxy.start(("127.0.0.1", port))
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"S")
        t0 = time.monotonic()
        with pytest_raises_reset():
            while time.monotonic() - t0 < 30:
                s.sendall(b"x")  # activity toward the upstream, never a read
                await asyncio.sleep(0.2)
        took = time.monotonic() - t0
        s.close()
        assert 1.5 < took < 10, took
        st = proxy.stats()["tcp"]
        assert st["send_stalls"] == 1 and st["idle_timeouts"] == 0, st
        proxy.finish()
    finally:
        up_proc.kill()


class pytest_raises_reset:
    """with pytest_raises_reset(): ... -- the block must end in a reset of the connection."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        assert kind in (ConnectionResetError, BrokenPipeError), f"no reset: {kind} {value}"
        return True


async def case_paused_proxy_is_not_idle():
    """The proxy stopped (SIGSTOP) for twice its idle timeout while 8 transfers run: on resume
    the completions waiting in the batch prove the connections alive; none is cut."""
    up_proc, up = start_upstream()
    port = free_port()
    # 64 MiB arenas: memory is not tight here (this case is about timers, not memory).
    proxy = Proxy(BINARY, [{"listen": ("127.0.0.1", port), "upstreams": [("127.0.0.1", up)],
                            "extra": ["timeouts: {idle: 2s}"]}], workers=2,
                  memory="{arena: 64MiB}")
    proxy.start(("127.0.0.1", port))
    try:
        await asyncio.wait_for(fresh_echo(port, MiB), 30)  # upstream and proxy both serving
        # One payload for all 8, made before any connection opens: making 8 x 64 MiB of random
        # bytes inside the event loop took longer than the 2 s idle timeout on a loaded machine.
        payload = os.urandom(64 * MiB)
        jobs = [asyncio.create_task(fresh_echo(port, data=payload)) for _ in range(8)]
        try:
            await asyncio.to_thread(proxy.wait_stats,
                                    lambda s: s["tcp"]["bytes_client_to_upstream"] >= 16 * MiB,
                                    30, "transfers under way")
        except AssertionError:
            print(proxy.output())
            raise
        proxy.proc.send_signal(signal.SIGSTOP)
        await asyncio.to_thread(wait_for, lambda: proc_state(proxy.proc.pid) == "T", 10,
                                "the proxy to stop")
        await asyncio.sleep(4)  # the pause itself is what is tested, not a synchronisation
        proxy.proc.send_signal(signal.SIGCONT)
        try:
            await asyncio.wait_for(asyncio.gather(*jobs), 120)
        except (ConnectionError, AssertionError):
            print(proxy.stats(), proxy.output())
            raise
        s = proxy.finish()["tcp"]
        assert s["idle_timeouts"] == 0 and s["resets"] == 0, s
    finally:
        if proxy.proc.poll() is None:
            proxy.proc.kill()
        up_proc.kill()


def proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


CASES = {n[5:]: f for n, f in globals().items() if n.startswith("case_")}

def enter_netns():
    """Re-runs this script in a new network namespace with lo at MTU 1500; returns its exit."""
    script = ('ip link set lo mtu 1500 up && exec "$0" "$@"')
    with open("/proc/sys/net/ipv4/tcp_mem") as f:
        tcp_mem = f.read()
    try:
        r = subprocess.run(["unshare", "-n", "sh", "-c", script, sys.executable, *sys.argv],
                           env={**os.environ, "FP_IN_NETNS": "1", "FP_TCP_MEM": tcp_mem},
                           timeout=900)
    except (OSError, subprocess.SubprocessError) as e:
        print(f"SKIP: cannot run in a network namespace: {e}")
        return 77
    return r.returncode


if __name__ == "__main__":
    if sys.argv[1] == "--upstream":
        run_upstream(int(sys.argv[2]))
        sys.exit(0)
    if not os.environ.get("FP_IN_NETNS"):
        if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
            print("SKIP: unshare -n is not permitted here (needs root or user namespaces)")
            sys.exit(77)
        sys.exit(enter_netns())
    import faulthandler
    names = sys.argv[2:] or list(CASES)
    skipped = False
    for n in names:
        t0 = time.monotonic()
        faulthandler.dump_traceback_later(240, exit=True)  # a hung case says where, and ends
        try:
            asyncio.run(CASES[n]())
        except Skip as e:
            print(f"SKIP {n}: {e}", flush=True)
            skipped = True
            continue
        finally:
            faulthandler.cancel_dump_traceback_later()
        print(f"ok {n} ({time.monotonic() - t0:.1f} s)", flush=True)
    sys.exit(77 if skipped else 0)
