#!/usr/bin/env python3
"""Integration tests of the UDP proxy: the real binary on loopback.
Usage: udp_proxy_test.py FRAGPROXY_BINARY [CASE ...]"""
import faulthandler
import os
import random
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SKIP, Proxy, free_port, io_uring_has, iperf3_through, require  # noqa: E402
from harness import wait_for  # noqa: E402
from harness import UdpEcho as Echo, udp_free_port  # noqa: E402

BINARY = sys.argv[1]
faulthandler.dump_traceback_later(240, exit=True)  # a hang prints where it hangs


def proxy(listen_port, up_port, extra=(), workers=2, host="127.0.0.1", top=()):
    return Proxy(BINARY, [{"protocol": "udp", "listen": (host, listen_port),
                           "upstreams": [(host, up_port)], "extra": list(extra)}],
                 workers=workers, extra=top).start()


def finish(p):
    """Exit 0, no page or fd held at exit; the UDP counters at exit (--stats-json)."""
    return p.finish()["udp"]


def client(bind="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((bind, 0))
    s.settimeout(5)
    return s


def ping_all(socks, port, expected, short):
    """Each socket sends one datagram to the proxy; returns how many got their echo. The first
    `expected` answers are waited for 2 s each, later ones only `short` s (they should not come)."""
    for s in socks:
        s.sendto(b"x", ("127.0.0.1", port))
    answered = 0
    for s in socks:
        s.settimeout(short if answered >= expected else 2)
        try:
            s.recvfrom(10)
            answered += 1
        except socket.timeout:
            pass
    return answered


def case_echo_many_clients():
    """60 client sockets x 200 datagrams (0 - 1472 bytes, and some of 65507), in paced windows:
    every reply comes back, unchanged, to the socket that sent the request."""
    up = Echo()
    port = udp_free_port()
    p = proxy(port, up.port, ["max_sessions_per_source: 1000"])
    rng = random.Random(3)
    clients = [client() for _ in range(60)]
    sent = 0
    for rnd in range(40):  # 40 windows of 5 datagrams per client
        expect = {}
        for ci, c in enumerate(clients):
            for k in range(5):
                size = 65507 if (rnd * 5 + k) % 97 == 0 else rng.randrange(0, 1473)
                d = rng.randbytes(size)
                c.sendto(d, ("127.0.0.1", port))
                expect.setdefault(ci, []).append(d)
                sent += 1
        for ci, c in enumerate(clients):
            got = []
            for _ in expect[ci]:
                d, addr = c.recvfrom(70000)
                assert addr == ("127.0.0.1", port), addr
                got.append(d)
            assert sorted(got) == sorted(expect[ci]), f"client {ci}: replies differ"
    up.stop()
    st = finish(p)
    assert st["datagrams_in"] == sent and st["datagrams_out"] == 2 * sent, st
    assert st["sessions"] == 60, st
    print(f"  {sent} datagrams each way")


def case_session_expiry_and_caps():
    """session_timeout 1s ends idle sessions (thousands, without a leak); max_sessions and the
    per-source cap drop new sessions, and existing ones carry on."""
    up = Echo()
    port = udp_free_port()
    p = proxy(port, up.port, ["session_timeout: 1s", "max_sessions: 2000",
                              "max_sessions_per_source: 1500"], workers=1)
    socks = [client() for _ in range(1600)]  # over the per-source cap of 1500
    answered = ping_all(socks, port, 1500, 0.05)
    assert answered == 1500, answered
    # Existing sessions still work while new ones are refused.
    socks[0].settimeout(2)
    socks[0].sendto(b"again", ("127.0.0.1", port))
    assert socks[0].recvfrom(10)[0] == b"again"
    p.wait_stats(lambda s: s["udp"]["sessions_expired"] >= 1500, 10, "every session to expire")
    late = client("127.0.0.2")  # a new source: gets a session now
    late.sendto(b"new", ("127.0.0.1", port))
    assert late.recvfrom(10)[0] == b"new"
    for s in socks:
        s.close()
    up.stop()
    st = finish(p)
    assert st["sessions_expired"] >= 1500 and st["sessions_refused"] == 100, st


def case_max_sessions_per_listener():
    """max_sessions is each listener's own: a second UDP listener does not lift the first's cap."""
    up = Echo()
    a, b = udp_free_port(), udp_free_port()
    p = Proxy(BINARY, [{"protocol": "udp", "listen": ("127.0.0.1", a),
                        "upstreams": [("127.0.0.1", up.port)], "extra": ["max_sessions: 5"]},
                       {"protocol": "udp", "listen": ("127.0.0.1", b),
                        "upstreams": [("127.0.0.1", up.port)]}], workers=1).start()
    socks = [client() for _ in range(20)]
    answered = ping_all(socks, a, 5, 0.3)
    assert answered == 5, answered
    st = p.stats()["udp"]
    assert st["sessions"] == 5 and st["sessions_refused"] == 15, st
    other = client()
    other.sendto(b"y", ("127.0.0.1", b))  # the other listener still takes sessions
    assert other.recvfrom(10)[0] == b"y"
    up.stop()
    finish(p)


def case_many_listeners():
    """300 UDP listeners, each with its own upstream: a datagram to listener i reaches upstream
    i (the session key keeps the listener in more than 8 bits: 256 would alias 0)."""
    n = 300
    ups = []
    for i in range(n):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        u.settimeout(5)
        ups.append(u)
    held = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    for h in held:  # all bound at once: n distinct free ports
        h.bind(("127.0.0.1", 0))
    ports = [h.getsockname()[1] for h in held]
    for h in held:
        h.close()
    p = Proxy(BINARY, [{"protocol": "udp", "listen": ("127.0.0.1", ports[i]),
                        "upstreams": [("127.0.0.1", ups[i].getsockname()[1])]}
                       for i in range(n)], workers=1).start()
    c = client()
    for i in (0, 256, 1, 257, 299, 43):  # one client, so its address is the same key each time
        c.sendto(str(i).encode(), ("127.0.0.1", ports[i]))
        d, _ = ups[i].recvfrom(100)
        assert d == str(i).encode(), (i, d)
    for u in ups:
        u.close()
    finish(p)


def case_replies_need_client_traffic():
    """A session lives on its client's datagrams only: an upstream that keeps streaming does not
    keep it alive past session_timeout, and max_responses bounds replies per client datagram
    (a spoofed source cannot be flooded for long)."""
    code = ("import socket,time\n"
            "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.bind(('127.0.0.1', 0)); print(s.getsockname()[1], flush=True)\n"
            "d,a=s.recvfrom(100)\n"
            "while True:\n s.sendto(b'r', a); time.sleep(0.01)\n")
    streamer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    up_port = int(streamer.stdout.readline())
    port = udp_free_port()
    p = proxy(port, up_port, ["session_timeout: 1s", "max_responses: 20"], workers=1)
    c = client()
    c.sendto(b"go", ("127.0.0.1", port))
    got, t0 = 0, time.monotonic()
    c.settimeout(0.5)
    try:
        while time.monotonic() - t0 < 5:
            c.recvfrom(10)
            got += 1
    except socket.timeout:
        pass
    assert got == 20, got  # max_responses, then nothing more however long the upstream sends
    st = p.wait_stats(lambda s: s["udp"]["sessions_expired"] == 1, 10, "the session to expire")
    assert st["udp"]["dropped_responses"] > 0, st
    streamer.kill()
    finish(p)


def case_upstream_down():
    """No upstream listening: ICMP port unreachable ends the session; the worker carries on and
    serves the next client when an upstream is back."""
    port, up_port = udp_free_port(), udp_free_port()
    p = proxy(port, up_port, workers=1)
    c = client()
    c.settimeout(0.5)
    for _ in range(3):
        c.sendto(b"anyone?", ("127.0.0.1", port))
        try:
            c.recvfrom(10)
            raise AssertionError("a reply from nowhere")
        except socket.timeout:
            pass
    up = Echo()
    p2_port = udp_free_port()
    p.stop()
    p = proxy(p2_port, up.port, workers=1)
    c.settimeout(2)
    c.sendto(b"back", ("127.0.0.1", p2_port))
    assert c.recvfrom(10)[0] == b"back"
    up.stop()
    finish(p)


def case_ipv6():
    up = Echo("::1")
    port = udp_free_port("::1")
    p = proxy(port, up.port, host="::1")
    c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    c.settimeout(2)
    for size in (0, 1, 1400, 65507):
        d = os.urandom(size)
        c.sendto(d, ("::1", port))
        assert c.recvfrom(70000)[0] == d
    up.stop()
    finish(p)


def case_drain_keeps_sessions_refuses_new():
    """SIGTERM with a drain_timeout: an established session goes on being relayed, a new client
    gets no session (counted as refused), and the proxy exits by itself once the session has
    expired (session_timeout), long before drain_timeout."""
    up = Echo()
    port = udp_free_port()
    p = Proxy(BINARY, [{"protocol": "udp", "listen": ("127.0.0.1", port),
                        "upstreams": [("127.0.0.1", up.port)], "extra": ["session_timeout: 1s"]}],
              workers=1, drain="20s").start()
    old = client()
    old.settimeout(2)
    old.sendto(b"before", ("127.0.0.1", port))
    assert old.recvfrom(100)[0] == b"before"
    p.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "draining" in p.output(), 10, "the drain")
    old.sendto(b"during", ("127.0.0.1", port))
    assert old.recvfrom(100)[0] == b"during"  # the established session is still relayed
    new = client("127.0.0.2")
    new.sendto(b"new", ("127.0.0.1", port))
    p.wait_stats(lambda s: s["udp"]["sessions_refused"] == 1, 10, "the new client refused")
    t0 = time.monotonic()
    assert p.proc.wait(15) == 0, p.output()  # the session expires, the drain ends
    assert time.monotonic() - t0 < 10
    up.stop()
    st = finish(p)
    assert st["sessions"] == 1 and st["sessions_expired"] == 1 and st["datagrams_in"] == 2, st


def proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def case_paused_process_keeps_sessions():
    """The proxy stopped (SIGSTOP) for three times its session_timeout: the time it did not run
    counts toward no session's timeout, so the session is there on resume (the next datagram
    takes it, no new session), and expires as usual once it is idle again."""
    up = Echo()
    port = udp_free_port()
    p = proxy(port, up.port, ["session_timeout: 1s"], workers=1)
    c = client()
    c.sendto(b"before", ("127.0.0.1", port))
    assert c.recvfrom(10)[0] == b"before"
    os.kill(p.proc.pid, signal.SIGSTOP)
    wait_for(lambda: proc_state(p.proc.pid) == "T", 10, "the proxy to stop")
    time.sleep(3)  # the pause itself is what is tested, not a synchronisation
    os.kill(p.proc.pid, signal.SIGCONT)
    c.sendto(b"after", ("127.0.0.1", port))
    assert c.recvfrom(10)[0] == b"after"
    st = p.stats()["udp"]
    assert st["sessions"] == 1 and st["sessions_expired"] == 0, st
    p.wait_stats(lambda s: s["udp"]["sessions_expired"] == 1, 10, "the idle session to expire")
    up.stop()
    st = finish(p)
    assert st["sessions"] == 1 and st["illegal_transitions"] == 0, st


def udp_rcvbuf_errors():
    """The kernel's count of UDP datagrams dropped on a full socket receive buffer (IPv4 and
    IPv6, the whole machine)."""
    total = 0
    for path, tag in (("/proc/net/snmp", "Udp:"), ("/proc/net/snmp6", "Udp6RcvbufErrors")):
        with open(path) as f:
            lines = [l.split() for l in f]
        if tag == "Udp:":
            rows = [l for l in lines if l and l[0] == tag]
            total += int(rows[1][rows[0].index("RcvbufErrors")])
        else:
            total += sum(int(l[1]) for l in lines if l and l[0] == tag)
    return total


def case_iperf3_udp():
    """iperf3 -u through the proxy, 2 s at 200 Mbit/s: completes, and the proxy loses nothing
    itself: no datagram dropped or refused by it, and every datagram iperf3 counts lost is one
    the kernel dropped on a full socket buffer (a loaded machine, e.g. CTest's other job, may
    leave the proxy or iperf3 behind; how many is a timing, not a pass/fail figure)."""
    ip_port, port = free_port(), free_port()
    # iperf3 needs its TCP control connection too: a TCP listener on the same port number.
    p = Proxy(BINARY, [{"protocol": "udp", "listen": ("127.0.0.1", port),
                        "upstreams": [("127.0.0.1", ip_port)]},
                       {"protocol": "tcp", "listen": ("127.0.0.1", port),
                        "upstreams": [("127.0.0.1", ip_port)]}]).start(("127.0.0.1", port))
    kernel_drops = udp_rcvbuf_errors()
    s = iperf3_through(p, port, ip_port, "-u", "-b", "200M", "-t", "2")["end"]["sum"]
    kernel_drops = udp_rcvbuf_errors() - kernel_drops
    print(f"  iperf3 -u 200M: {s['packets']} datagrams, {s['lost_packets']} lost "
          f"({s['lost_percent']:.3f} %), {kernel_drops} dropped by the kernel on full buffers")
    assert s["packets"] > 0 and s["lost_packets"] < s["packets"], s
    assert s["lost_packets"] <= kernel_drops, (s, kernel_drops)
    u = finish(p)
    assert all(u[k] == 0 for k in ("dropped_no_buffer", "dropped_responses",
                                   "upstream_errors", "sessions_refused", "denied")), u
    assert u["datagrams_in"] <= s["packets"] + 1 <= u["datagrams_in"] + kernel_drops + 1, (u, s)


def udp_queue(port, remote=False):
    """Bytes (truesize) queued in the UDP sockets bound to port (connected to it, if remote)."""
    col = 2 if remote else 1
    with open("/proc/net/udp") as f:
        return sum(int(line.split()[4].split(":")[1], 16) for line in list(f)[1:]
                   if int(line.split()[col].split(":")[1], 16) == port)


def settle(port, remote=False):
    """Waits until the receive queue of the UDP socket bound to port (connected to it, if
    remote) holds something and stops growing; for the remote one, also until the socket bound
    to port (the echo) has read everything sent to it. Says what it saw if that never comes."""
    last, stable, seen = -1, 0, []
    for _ in range(400):
        q = udp_queue(port, remote)
        drained = not remote or udp_queue(port) == 0
        stable = stable + 1 if q == last and q > 0 and drained else 0
        if stable >= 4:
            return
        last = q
        if not seen or seen[-1] != (q, drained):
            seen.append((q, drained))
        time.sleep(0.05)
    raise AssertionError(f"port {port}{' (remote)' if remote else ''}: queue never settled; "
                         f"(queued, echo drained) seen: {seen[-12:]}")


def burst(mtu_note="", top=()):
    """Bursts queued while the proxy (then the upstream) is stopped reach it in one CQE batch, so
    they leave in GSO batches: runs of one size, a shorter datagram ending a run, 0-byte and 65507
    byte datagrams in between. Every reply arrives unchanged and in order."""
    up = Echo()
    port = udp_free_port()
    p = proxy(port, up.port, workers=1, top=top)
    c = client()
    c.sendto(b"hello", ("127.0.0.1", port))
    assert c.recvfrom(10)[0] == b"hello"
    sizes = [100] * 40 + [37] + [1472] * 40 + [0] * 5 + [1000] * 30 + [65507] + [1] * 50
    sizes += [1400] * 20 + [700] * 3 + [1200] * 10
    data = [i.to_bytes(4, "big")[:n] + os.urandom(max(0, n - 4)) for i, n in enumerate(sizes)]
    os.kill(p.proc.pid, signal.SIGSTOP)
    for d in data:
        c.sendto(d, ("127.0.0.1", port))
    os.kill(up.proc.pid, signal.SIGSTOP)
    os.kill(p.proc.pid, signal.SIGCONT)
    settle(up.port)  # the proxy forwarded the burst; it waits in the stopped upstream's socket
    os.kill(p.proc.pid, signal.SIGSTOP)
    os.kill(up.proc.pid, signal.SIGCONT)
    settle(up.port, remote=True)  # echoed into the stopped proxy's session socket, connected to it
    os.kill(p.proc.pid, signal.SIGCONT)
    got = [c.recvfrom(70000)[0] for _ in data]
    assert got == data, "replies differ or out of order" + mtu_note
    up.stop()
    full = p.finish()
    st = full["udp"]
    n = len(data) + 1
    # The burst came in one pass of many CQEs: the next waits were batch waits (io_uring's min
    # timeout) where the kernel has it, unless turned off.
    batching = "io_uring: {batch_wait_us: 0}" not in top
    assert ((full["ring"]["batch_waits"] > 0)
            == (batching and io_uring_has(BINARY, "batch waits, min timeout (6.12)"))), full
    assert st["datagrams_in"] == n and st["datagrams_out"] == 2 * n, st
    calls, refused = st["sends"], st["gso_refused"]
    print(f"  {2 * n} datagrams in {calls} sendmsg calls, {refused} GSO batches refused{mtu_note}")
    return calls, refused, n


def case_gso_bursts():
    calls, refused, n = burst()
    assert calls < n and refused == 0, (calls, refused)


def case_gso_off():
    """udp_gso: false (the ablation switch): the same bursts, every datagram its own sendmsg."""
    calls, refused, n = burst(" (udp_gso: false)", top=["udp_gso: false"])
    assert calls == 2 * n and refused == 0, (calls, refused)


def case_no_batch_waits():
    """io_uring: {batch_wait_us: 0} (the ablation switch): the same bursts, every wait for one CQE,
    and nothing lost or reordered."""
    calls, refused, n = burst(" (batch_wait_us: 0)", top=["io_uring: {batch_wait_us: 0}"])
    assert calls < n and refused == 0, (calls, refused)


def case_gso_refused_by_mtu():
    """In a network namespace of our own whose loopback MTU is 1280, batches of 1400-byte replies
    are refused by the path (EINVAL); they are sent again one by one, nothing is lost."""
    if os.environ.get("FP_IN_NETNS") != "1":
        script = (f"ip link set lo up mtu 1280 && FP_IN_NETNS=1 {sys.executable} "
                  f"{os.path.abspath(__file__)} {BINARY} gso_refused_by_mtu")
        if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
            return "unshare -n is not permitted here (needs root or user namespaces)"
        r = subprocess.run(["unshare", "-n", "sh", "-c", script], timeout=120)
        assert r.returncode == 0, "the case failed in its network namespace"
        return
    calls, refused, n = burst(" (loopback MTU 1280)")
    assert refused >= 1, refused


CASES = {n[5:]: f for n, f in globals().items() if n.startswith("case_")}

if __name__ == "__main__":
    require("iperf3")
    skipped = []
    for n in sys.argv[2:] or list(CASES):
        t0 = time.monotonic()
        why = CASES[n]()
        if isinstance(why, str):  # a case whose prerequisite is missing here
            skipped.append(n)
            print(f"skip {n}: {why}", flush=True)
            continue
        print(f"ok {n} ({time.monotonic() - t0:.1f} s)", flush=True)
    if skipped:
        print(f"SKIP: {', '.join(skipped)} could not run here (the other cases passed)")
        sys.exit(SKIP)
