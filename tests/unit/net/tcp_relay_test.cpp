// The TCP relay's error paths, driven through the scripted ring (tests/support/scripted_ring.hpp):
// each case chooses the CQEs that real sockets produce only by luck (a linked timeout's cancel,
// a short send, an empty buffer ring, a multishot that ends, a CQE after its slot's close,
// -EAGAIN, failed socket ops) and checks what the relay does with them, then that every page,
// fragment and fd went back (TcpRig's destructor: stop, every op completed, 0 and 0).
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "net/base/access_record.hpp"
#include "net/engine/reactor.hpp"
#include "net/tcp/tcp_relay.hpp"
#include "tests/support/scripted_ring.hpp"

using namespace fp;
using net::Op;
using test::ScriptedRing;

namespace {

net::RingFeatures scripted_features() {
    net::RingFeatures f;
    f.socket_op = f.shutdown_op = f.uring_cmd = true;  // every step of a connection on the ring
    return f;
}

// A connected AF_UNIX pair: fd[0] is the relay's (it closes it through the ring), fd[1] the
// test's peer.
struct Peer {
    int fd[2] = {-1, -1};
    Peer() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd) == 0); }
    ~Peer() { ::close(fd[1]); }
    Peer(const Peer&) = delete;
    Peer& operator=(const Peer&) = delete;
};

std::size_t end_count(const net::TcpStats& s, net::AccessEnd e) {
    return s.closed_by[std::size_t(e)].get();
}

struct RigOptions {
    unsigned upstreams = 1;
    bool send_zc = false;  // zero-copy sends (the ring says it has them)
};

struct TcpRig {
    explicit TcpRig(RigOptions o = {}) : ring(features(o)), reactor(ring), shared(1) {
        settings.memory = PoolConfig{std::size_t{8} << 20, 4, 0, false};
        settings.recv_path = net::RecvPath::kFragments;
        settings.buf_ring_pages = 4;
        settings.recv_fragment = 16 * 1024;
        settings.direct_descriptors = false;
        settings.send_zc = o.send_zc;
        net::TcpListenerSettings l;
        l.name = "scripted";
        l.listen = *net::parse_address("127.0.0.1:1");  // then port 0: the kernel's choice
        reinterpret_cast<sockaddr_in*>(&l.listen.ss)->sin_port = 0;
        for (unsigned i = 0; i < o.upstreams; ++i) {
            // Never dialled: the connect is the scripted ring's, completed by the test.
            l.upstreams.push_back(*net::parse_address("127.0.0.1:" + std::to_string(9 + i)));
            up.push_back(std::make_unique<net::UpstreamShared>(1));
            l.upstream_shared.push_back(up.back().get());
        }
        l.balancing.weights.assign(o.upstreams, 1);  // (the config's default: one each)
        l.shared = &shared;
        settings.listeners.push_back(l);
        reactor.update_clock();
        relay = std::make_unique<net::TcpRelay>(reactor, settings, 0, stats, nullptr);
        relay->start();
        ring.submit();
    }
    // The end of every case: the relay stops, every op still pending completes as the kernel
    // would complete it, and nothing is left: no page, no fd, nothing in flight.
    ~TcpRig() {
        relay->stop();
        for (int round = 0; round < 100 && !(relay->idle() && reactor.in_flight() == 0); ++round) {
            pump();
            ring.cancel_everything();
            pump();
        }
        CHECK(relay->idle());
        CHECK(reactor.in_flight() == 0);
        CHECK(relay->leaked_pages() == 0);
        CHECK(relay->open_fds() == 0);
        CHECK(stats.illegal_transitions.get() == 0);
    }
    static net::RingFeatures features(const RigOptions& o) {
        net::RingFeatures f = scripted_features();
        f.sendmsg_zc = o.send_zc;
        return f;
    }
    TcpRig(const TcpRig&) = delete;
    TcpRig& operator=(const TcpRig&) = delete;

    // What the worker's loop does with the CQEs posted so far, until none is left.
    void pump() {
        for (int round = 0; round < 100; ++round) {
            ring.submit();
            if (!ring.has_cqes()) return;
            reactor.update_clock();
            ring.for_each_cqe([this](io_uring_cqe* cqe) {
                const net::Tag t = net::Tag::unpack(cqe->user_data);
                reactor.complete(cqe);
                if (net::owner(t.op) == net::Owner::kTcp ||
                    net::owner(t.op) == net::Owner::kTcpConn)
                    relay->handle(t, cqe);
            });
            relay->refill();
            relay->tend();
        }
        FAIL("the relay never stopped posting work");
    }

    // The cancels the relay submitted, carried out as the kernel does, and their CQEs handled.
    void settle() {
        ring.carry_cancels();
        pump();
    }
    // A client arrives on the multishot accept (which goes on).
    void accept(int fd, unsigned more = IORING_CQE_F_MORE) {
        ring.complete(ring.need(Op::kAccept), fd, more);
        pump();
    }
    // The upstream socket, its TCP_NODELAY command and the connect (res) in turn.
    void connect(int upstream_fd, int res = 0) {
        ring.complete(ring.need(Op::kSocket), upstream_fd);
        pump();
        ring.complete(ring.need(Op::kSockopt), 0);
        ring.complete_linked(ring.need(Op::kConnect), res);
        pump();
    }
    // A client relayed to its upstream: accepted, connected, both receives armed.
    void establish(Peer& client, Peer& upstream) {
        accept(client.fd[0]);
        connect(upstream.fd[0]);
        REQUIRE(ring.find(Op::kRecv, 0));
        REQUIRE(ring.find(Op::kRecv, 1));
    }
    // `text` received on side s (0: from the client).
    void receive(unsigned s, const std::string& text, bool more = true) {
        REQUIRE(ring.receive(ring.need(Op::kRecv, int(s)), text, more));
        pump();
    }
    // The bytes a pending send to side s carries, its iovecs read as the kernel reads them.
    std::string sending(unsigned s) const {
        const io_uring_sqe q = ring.need(Op::kSend, int(s));
        const auto* m = reinterpret_cast<const msghdr*>(q.addr);
        std::string out;
        for (std::size_t k = 0; k < m->msg_iovlen; ++k)
            out.append(static_cast<const char*>(m->msg_iov[k].iov_base), m->msg_iov[k].iov_len);
        return out;
    }
    void sent(unsigned s, int res, unsigned flags = 0) {
        ring.complete(ring.need(Op::kSend, int(s)), res, flags);
        pump();
    }
    // Both FINs, each passed on by a shutdown (or by the close, for the last).
    void finish_both() {
        receive(0, "", false);  // (an empty receive: the client's FIN)
        if (const io_uring_sqe* q = ring.find(Op::kShutdown, 1)) ring.complete(*q, 0);
        pump();
        receive(1, "", false);
        if (const io_uring_sqe* q = ring.find(Op::kShutdown, 0)) ring.complete(*q, 0);
        pump();
    }

    ScriptedRing ring;
    net::Reactor reactor;
    net::ListenerShared shared;
    std::vector<std::unique_ptr<net::UpstreamShared>> up;
    net::WorkerSettings settings;
    net::TcpStats stats;
    std::unique_ptr<net::TcpRelay> relay;
};

}  // namespace

TEST_CASE("scripted TCP: a connection relays both ways and closes clean on both FINs") {
    TcpRig rig;
    Peer client, upstream;
    rig.establish(client, upstream);
    rig.receive(0, "hello upstream");
    CHECK(rig.sending(1) == "hello upstream");
    rig.sent(1, 14);
    rig.receive(1, "hello client");
    CHECK(rig.sending(0) == "hello client");
    rig.sent(0, 12);
    rig.finish_both();
    CHECK(rig.relay->idle());
    CHECK(rig.stats.closed.get() == 1);
    CHECK(rig.stats.resets.get() == 0);
    CHECK(end_count(rig.stats, net::AccessEnd::kClientClose) == 1);
    CHECK(rig.stats.bytes_client.get() == 14);
    CHECK(rig.stats.bytes_upstream.get() == 12);
}

TEST_CASE("scripted TCP: the connect's linked timeout fires: counted, the client closed clean") {
    TcpRig rig;
    Peer client, upstream;
    rig.accept(client.fd[0]);
    rig.ring.complete(rig.ring.need(Op::kSocket), upstream.fd[0]);
    rig.pump();
    rig.ring.complete(rig.ring.need(Op::kSockopt), 0);
    rig.ring.complete_linked(rig.ring.need(Op::kConnect), 0, /*timed_out=*/true);
    rig.pump();
    CHECK(rig.stats.connect_timeouts.get() == 1);
    CHECK(rig.stats.upstream_failures.get() == 1);
    CHECK(rig.up[0]->per_worker[0].connect_failures.get() == 1);
    // The one upstream failed: a lingering close (FIN to the client, its rest read and dropped).
    rig.ring.complete(rig.ring.need(Op::kShutdown, 0), 0);
    rig.receive(0, "late bytes");
    CHECK_FALSE(rig.ring.find(Op::kSend));  // dropped, never queued
    rig.receive(0, "", false);
    CHECK(rig.relay->idle());
    CHECK(end_count(rig.stats, net::AccessEnd::kConnectFailure) == 1);
    CHECK(rig.stats.resets.get() == 0);
}

TEST_CASE("scripted TCP: a refused connect goes on to the next upstream, which relays") {
    TcpRig rig({.upstreams = 2});
    Peer client, first, second;
    rig.accept(client.fd[0]);
    rig.connect(first.fd[0], -ECONNREFUSED);
    CHECK(rig.stats.retries.get() == 1);
    rig.connect(second.fd[0]);
    CHECK(rig.up[1]->per_worker[0].connects.get() == 1);
    rig.receive(0, "to the second");
    CHECK(rig.sending(1) == "to the second");
    rig.sent(1, 13);
    rig.finish_both();
    CHECK(end_count(rig.stats, net::AccessEnd::kClientClose) == 1);
}

TEST_CASE("scripted TCP: a short send is sent on from where it stopped, byte-exact") {
    TcpRig rig;
    Peer client, upstream;
    rig.establish(client, upstream);
    std::string expect(1000, 'a');
    for (std::size_t i = 0; i < expect.size(); ++i)
        expect[i] = char('a' + i % 26);
    rig.receive(0, expect);
    rig.sent(1, 400);
    CHECK(rig.sending(1) == expect.substr(400));
    rig.sent(1, 1);
    CHECK(rig.sending(1) == expect.substr(401));
    rig.sent(1, 599);
    CHECK_FALSE(rig.ring.find(Op::kSend, 1));
    rig.finish_both();
    CHECK(rig.stats.closed.get() == 1);
}

TEST_CASE(
    "scripted TCP: a short send across two queued fragments frees the first, keeps the rest") {
    TcpRig rig;
    Peer client, upstream;
    rig.establish(client, upstream);
    rig.receive(0, "first fragment|");
    rig.receive(0, "second fragment");  // queued behind the send in flight
    CHECK(rig.sending(1) == "first fragment|");
    rig.sent(1, 15);
    CHECK(rig.sending(1) == "second fragment");
    rig.receive(0, "+third");
    rig.sent(1, 8);  // "second f"
    CHECK(rig.sending(1) == "ragment+third");
    rig.sent(1, 13);
    rig.finish_both();
    CHECK(rig.stats.bytes_client.get() == 36);
}

TEST_CASE("scripted TCP: -ENOBUFS starves the receive; it is armed again when pages are back") {
    TcpRig rig;
    Peer client, upstream;
    rig.establish(client, upstream);
    rig.ring.complete(rig.ring.need(Op::kRecv, 0), -ENOBUFS);
    rig.pump();
    CHECK(rig.stats.starved.get() == 1);
    // The ring still has buffers on offer: the refill after the batch re-armed it at once.
    const io_uring_sqe* again = rig.ring.find(Op::kRecv, 0);
    REQUIRE(again);
    rig.receive(0, "after the wait");
    CHECK(rig.sending(1) == "after the wait");
    rig.sent(1, 14);
}

TEST_CASE("scripted TCP: a multishot receive that ends with data is armed again, data kept") {
    TcpRig rig;
    Peer client, upstream;
    rig.establish(client, upstream);
    const std::size_t before = rig.ring.submitted();
    rig.receive(0, "last of this multishot", /*more=*/false);
    CHECK(rig.ring.submitted() > before);
    REQUIRE(rig.ring.find(Op::kRecv, 0));  // a new multishot
    CHECK(rig.sending(1) == "last of this multishot");
    rig.sent(1, 22);
    rig.receive(0, "on the new one");
    CHECK(rig.sending(1) == "on the new one");
    rig.sent(1, 14);
}

TEST_CASE("scripted TCP: a multishot accept that ends is armed again, and its client served") {
    TcpRig rig;
    Peer client, upstream;
    rig.accept(client.fd[0], 0);  // F_MORE clear: its last CQE
    CHECK(rig.ring.count(Op::kAccept) == 1);
    rig.connect(upstream.fd[0]);
    CHECK(rig.stats.accepted.get() == 1);
    REQUIRE(rig.ring.find(Op::kRecv, 0));
}

TEST_CASE("scripted TCP: accept -EMFILE pauses accepting; the resume arms it again") {
    TcpRig rig;
    rig.ring.complete(rig.ring.need(Op::kAccept), -EMFILE);  // (the multishot's end)
    rig.pump();
    CHECK(rig.stats.fd_exhausted.get() == 1);
    CHECK(rig.stats.accept_pauses.get() == 1);
    rig.settle();  // the pause's cancel ends the multishot accept
    CHECK(rig.ring.count(Op::kAccept) == 0);
    rig.ring.complete(rig.ring.need(Op::kAcceptResume), -ETIME);
    rig.pump();
    CHECK(rig.ring.count(Op::kAccept) == 1);
    Peer client, upstream;
    rig.accept(client.fd[0]);
    rig.connect(upstream.fd[0]);
    CHECK(rig.stats.accepted.get() == 1);
}

TEST_CASE("scripted TCP: accept -EAGAIN and -ECONNABORTED end the multishot; it is re-armed") {
    TcpRig rig;
    for (int err : {EAGAIN, ECONNABORTED}) {
        rig.ring.complete(rig.ring.need(Op::kAccept), -err);
        rig.pump();
        CHECK(rig.ring.count(Op::kAccept) == 1);
    }
    CHECK(rig.stats.accepted.get() == 0);
    CHECK(rig.stats.fd_exhausted.get() == 0);
}

TEST_CASE("scripted TCP: the upstream socket -EMFILE makes the client wait, then it connects") {
    TcpRig rig;
    Peer client, upstream;
    rig.accept(client.fd[0]);
    rig.ring.complete(rig.ring.need(Op::kSocket), -EMFILE);
    rig.pump();
    CHECK(rig.stats.fd_exhausted.get() == 1);
    CHECK_FALSE(rig.ring.find(Op::kSocket));
    rig.settle();
    rig.ring.complete(rig.ring.need(Op::kAcceptResume), -ETIME);
    rig.pump();
    rig.connect(upstream.fd[0]);  // tried again: the same client, not dropped
    CHECK(rig.stats.closed.get() == 0);
    rig.receive(0, "waited");
    CHECK(rig.sending(1) == "waited");
    rig.sent(1, 6);
}

TEST_CASE("scripted TCP: the upstream socket failing otherwise closes the client, counted") {
    TcpRig rig;
    Peer client;
    rig.accept(client.fd[0]);
    rig.ring.complete(rig.ring.need(Op::kSocket), -EAFNOSUPPORT);
    rig.pump();
    CHECK(rig.relay->idle());
    CHECK(end_count(rig.stats, net::AccessEnd::kConnectFailure) == 1);
}

TEST_CASE("scripted TCP: a socket command refused (< 6.7) falls back to setsockopt for good") {
    TcpRig rig;
    Peer client, upstream, client2, upstream2;
    rig.accept(client.fd[0]);
    rig.ring.complete(rig.ring.need(Op::kSocket), upstream.fd[0]);
    rig.pump();
    rig.ring.complete(rig.ring.need(Op::kSockopt), -EOPNOTSUPP);
    rig.ring.complete_linked(rig.ring.need(Op::kConnect), 0);
    rig.pump();
    CHECK(rig.stats.sockopt_failures.get() == 1);
    rig.accept(client2.fd[0]);
    rig.ring.complete(rig.ring.need(Op::kSocket), upstream2.fd[0]);
    rig.pump();
    CHECK_FALSE(rig.ring.find(Op::kSockopt));  // a plain setsockopt this time
    rig.ring.complete_linked(rig.ring.need(Op::kConnect), 0);
    rig.pump();
    CHECK(rig.ring.count(Op::kRecv) == 4);
}

TEST_CASE("scripted TCP: a CQE for a slot already closed frees its buffer and touches nothing") {
    TcpRig rig;
    Peer client, upstream;
    rig.establish(client, upstream);
    const io_uring_sqe recv = rig.ring.need(Op::kRecv, 0);
    rig.finish_both();
    REQUIRE(rig.relay->idle());
    // A receive completion of that connection arrives after all (its generation is the old one):
    // the buffer goes back (offered to the ring again), no connection is touched.
    const unsigned offered = rig.ring.buffers();
    REQUIRE(rig.ring.receive(recv, "stale"));
    CHECK(rig.ring.buffers() == offered - 1);
    rig.pump();
    CHECK(rig.ring.buffers() == offered);
    CHECK(rig.stats.bytes_client.get() == 0);
    // The slot serves a new connection; the stale generation still finds nothing.
    Peer client2, upstream2;
    rig.establish(client2, upstream2);
    REQUIRE(rig.ring.receive(recv, "stale again"));
    rig.pump();
    CHECK_FALSE(rig.ring.find(Op::kSend));
    CHECK(rig.stats.bytes_client.get() == 0);
}

TEST_CASE("scripted TCP: a send -EAGAIN sends the same bytes again; nothing lost, no reset") {
    TcpRig rig;
    Peer client, upstream;
    rig.establish(client, upstream);
    rig.receive(0, "try again");
    rig.sent(1, -EAGAIN);
    CHECK(rig.sending(1) == "try again");
    rig.sent(1, 9);
    CHECK(rig.stats.resets.get() == 0);
    rig.finish_both();
    CHECK(end_count(rig.stats, net::AccessEnd::kClientClose) == 1);
}

TEST_CASE("scripted TCP: a receive -EAGAIN is armed again; the connection goes on") {
    TcpRig rig;
    Peer client, upstream;
    rig.establish(client, upstream);
    rig.ring.complete(rig.ring.need(Op::kRecv, 1), -EAGAIN);
    rig.pump();
    REQUIRE(rig.ring.find(Op::kRecv, 1));
    rig.receive(1, "still here");
    CHECK(rig.sending(0) == "still here");
    rig.sent(0, 10);
    CHECK(rig.stats.closed.get() == 0);
}

TEST_CASE("scripted TCP: the upstream resets with the client's bytes queued: a cut, a reset") {
    TcpRig rig;
    Peer client, upstream;
    rig.establish(client, upstream);
    rig.receive(0, "never delivered");
    rig.ring.complete(rig.ring.need(Op::kRecv, 1), -ECONNRESET);
    rig.pump();
    CHECK(rig.stats.cut.get() == 1);
    CHECK(rig.stats.resets.get() == 1);
    rig.settle();                             // the send in flight and the client's receive
    CHECK(rig.stats.page_drains.get() == 1);  // the queue released in one call for its page
    CHECK(rig.relay->idle());
    CHECK(end_count(rig.stats, net::AccessEnd::kReset) == 1);
}

TEST_CASE("scripted TCP: a send -EPIPE closes with a reset; the queue's pages go back") {
    TcpRig rig;
    Peer client, upstream;
    rig.establish(client, upstream);
    rig.receive(1, "for a client who left");
    rig.receive(1, "and more");
    rig.sent(0, -EPIPE);
    CHECK(rig.stats.resets.get() == 1);
    rig.settle();
    CHECK(rig.relay->idle());
}

TEST_CASE("scripted TCP: no SQE for the upstream receive (SQ full): the connection resets") {
    TcpRig rig;
    Peer client, upstream;
    rig.accept(client.fd[0]);
    rig.ring.complete(rig.ring.need(Op::kSocket), upstream.fd[0]);
    rig.pump();
    rig.ring.complete(rig.ring.need(Op::kSockopt), 0);
    rig.ring.complete_linked(rig.ring.need(Op::kConnect), 0);
    rig.ring.fail_sqes(2);  // the client's receive armed at the connect (then: a plain close)
    rig.pump();
    CHECK(rig.stats.resets.get() == 1);
    rig.settle();
    CHECK(rig.relay->idle());
}

TEST_CASE(
    "scripted TCP: no SQE for the connect's timeout: the connect is a NOP, the client freed") {
    TcpRig rig;
    Peer client, upstream;
    rig.accept(client.fd[0]);
    rig.ring.complete(rig.ring.need(Op::kSocket), upstream.fd[0]);
    rig.ring.fail_sqes(1, 2);  // the socket command and the connect go in, its timeout does not
    rig.pump();
    CHECK_FALSE(rig.ring.find(Op::kLinkTimeout));
    const io_uring_sqe nop = rig.ring.need(Op::kConnect);
    CHECK(nop.opcode == IORING_OP_NOP);
    rig.ring.cancel_everything();
    rig.pump();
    CHECK(rig.relay->idle());
    CHECK(end_count(rig.stats, net::AccessEnd::kConnectFailure) == 1);
}

TEST_CASE("scripted TCP: a close waits for its last CQE, the cancel's before its target's") {
    TcpRig rig;
    Peer client, upstream;
    rig.establish(client, upstream);
    rig.ring.complete(rig.ring.need(Op::kRecv, 1), -ECONNRESET);
    rig.pump();
    // The cancel of the client's receive completes first; the receive is still in flight.
    rig.ring.complete(rig.ring.need(Op::kCancel), 1);
    rig.pump();
    CHECK_FALSE(rig.relay->idle());
    CHECK(rig.stats.closed.get() == 0);
    rig.ring.complete(rig.ring.need(Op::kRecv, 0), -ECANCELED);
    rig.pump();
    CHECK(rig.relay->idle());
    CHECK(end_count(rig.stats, net::AccessEnd::kReset) == 1);
}

TEST_CASE("scripted TCP: a stop with bytes queued cuts the connection with a reset") {
    TcpRig rig;
    Peer client, upstream;
    rig.establish(client, upstream);
    rig.receive(1, "queued at the stop");
    rig.relay->stop();
    rig.pump();
    CHECK(rig.stats.cut.get() == 1);
    CHECK(rig.stats.resets.get() == 1);
    rig.settle();
    CHECK(end_count(rig.stats, net::AccessEnd::kDrained) == 1);
}

TEST_CASE("scripted TCP: a zero-copy send is done at its notification, not at its result") {
    TcpRig rig({.send_zc = true});
    Peer client, upstream;
    rig.establish(client, upstream);
    const std::string big(8192, 'z');
    rig.receive(0, big);
    CHECK(rig.stats.zc_sends.get() == 1);
    rig.sent(1, 8192, IORING_CQE_F_MORE);  // the result; the kernel still reads the pages
    CHECK(rig.ring.find(Op::kSend, 1));    // the same send, waiting for its notification
    rig.receive(0, "behind it");           // queued: one send in flight per side
    CHECK(rig.ring.count(Op::kSend) == 1);
    rig.sent(1, 0, IORING_CQE_F_NOTIF);
    CHECK(rig.sending(1) == "behind it");
    rig.sent(1, 9);
    rig.finish_both();
    CHECK(rig.stats.closed.get() == 1);
    CHECK(rig.stats.zc_copied.get() == 0);
}
