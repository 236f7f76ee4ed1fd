// Tag (an SQE's user_data) and classify (what a CQE result means): the two ends of the one way
// SQEs are submitted and completed.
#include <doctest/doctest.h>

#include <cerrno>
#include <initializer_list>

#include "net/engine/classify.hpp"
#include "net/engine/user_data.hpp"

using namespace fp::net;

TEST_CASE("Tag packs and unpacks every field, at the edges of each") {
    for (Op op : {Op::kTick, Op::kRecv, Op::kUdpCancel})
        for (unsigned side : {0u, 1u})
            for (std::uint32_t slot : {0u, 1u, Tag::kMaxSlot - 1, Tag::kMaxSlot})
                for (std::uint32_t gen : {0u, 1u, 0x7fffffffu, 0xffffffffu}) {
                    const Tag t{op, side, slot, gen};
                    const Tag u = Tag::unpack(t.pack());
                    CHECK(u.op == op);
                    CHECK(u.side == side);
                    CHECK(u.slot == slot);
                    CHECK(u.gen == gen);
                }
    CHECK(Tag::kMaxSlot == (1u << 23) - 1);
    // Fields never bleed into each other: a slot past 23 bits is cut, not carried into gen.
    const Tag wide = Tag::unpack(Tag{Op::kSend, 1, Tag::kMaxSlot + 1, 7}.pack());
    CHECK(wide.slot == 0);
    CHECK(wide.gen == 7);
    CHECK(wide.side == 1);
    CHECK(wide.op == Op::kSend);
}

TEST_CASE("every op has one owner: the reactor, a relay, or a relay's slot table") {
    CHECK(owner(Op::kTick) == Owner::kReactor);
    CHECK(owner(Op::kWake) == Owner::kReactor);
    CHECK(owner(Op::kMisc) == Owner::kReactor);
    CHECK(owner(Op::kAccept) == Owner::kTcp);
    CHECK(owner(Op::kAcceptResume) == Owner::kTcp);
    for (Op op : {Op::kSocket, Op::kSockopt, Op::kConnect, Op::kLinkTimeout, Op::kRecv, Op::kSend,
                  Op::kShutdown, Op::kCancel})
        CHECK(owner(op) == Owner::kTcpConn);
    CHECK(owner(Op::kUdpRecv) == Owner::kUdp);
    CHECK(owner(Op::kUdpSend) == Owner::kUdp);
    CHECK(owner(Op::kUdpUpRecv) == Owner::kUdpSession);
    CHECK(owner(Op::kUdpCancel) == Owner::kUdpSession);
}

TEST_CASE("classify: what each result means for each op") {
    // TCP receive.
    CHECK(classify(Op::kRecv, 1) == Verdict::kOk);
    CHECK(classify(Op::kRecv, 0) == Verdict::kEnd);
    CHECK(classify(Op::kRecv, -ENOBUFS) == Verdict::kNoBuffers);
    CHECK(classify(Op::kRecv, -ECANCELED) == Verdict::kCancelled);
    CHECK(classify(Op::kRecv, -EINVAL) == Verdict::kUnsupported);
    CHECK(classify(Op::kRecv, -EAGAIN) == Verdict::kCancelled);  // nothing read: re-armed
    for (int e : {ECONNRESET, EPIPE, ETIMEDOUT, EHOSTUNREACH})
        CHECK(classify(Op::kRecv, -e) == Verdict::kReset);
    // TCP send: 0 bytes is progress of nothing, not an end.
    CHECK(classify(Op::kSend, 0) == Verdict::kOk);
    CHECK(classify(Op::kSend, -ECANCELED) == Verdict::kCancelled);
    CHECK(classify(Op::kSend, -EINTR) == Verdict::kCancelled);
    CHECK(classify(Op::kSend, -EAGAIN) == Verdict::kCancelled);  // nothing sent: sent again
    CHECK(classify(Op::kSend, -EPIPE) == Verdict::kReset);
    // Upstream socket and connect.
    CHECK(classify(Op::kSocket, 0) == Verdict::kOk);
    CHECK(classify(Op::kSocket, -EMFILE) == Verdict::kOutOfFds);
    CHECK(classify(Op::kSocket, -ENFILE) == Verdict::kOutOfFds);
    CHECK(classify(Op::kSocket, -EAFNOSUPPORT) == Verdict::kClose);
    CHECK(classify(Op::kSockopt, -EOPNOTSUPP) == Verdict::kUnsupported);
    CHECK(classify(Op::kSockopt, -ECANCELED) == Verdict::kCancelled);
    CHECK(classify(Op::kConnect, 0) == Verdict::kOk);
    for (int e : {ECONNREFUSED, ENETUNREACH, ECANCELED})
        CHECK(classify(Op::kConnect, -e) == Verdict::kNextUpstream);
    // Accept.
    CHECK(classify(Op::kAccept, 5) == Verdict::kOk);
    CHECK(classify(Op::kAccept, -EMFILE) == Verdict::kOutOfFds);
    CHECK(classify(Op::kAccept, -ECANCELED) == Verdict::kCancelled);
    CHECK(classify(Op::kAccept, -ECONNABORTED) == Verdict::kRearm);
    // UDP: a 0-byte datagram is a datagram; a listener never closes.
    CHECK(classify(Op::kUdpRecv, 0) == Verdict::kOk);
    CHECK(classify(Op::kUdpRecv, -ENOBUFS) == Verdict::kNoBuffers);
    CHECK(classify(Op::kUdpRecv, -ECONNREFUSED) == Verdict::kRearm);
    CHECK(classify(Op::kUdpUpRecv, 0) == Verdict::kOk);
    CHECK(classify(Op::kUdpUpRecv, -ECONNREFUSED) == Verdict::kReset);
    CHECK(classify(Op::kUdpUpRecv, -ECANCELED) == Verdict::kCancelled);
    for (int e : {EINVAL, EMSGSIZE, EIO})
        CHECK(classify(Op::kUdpSend, -e) == Verdict::kResend);
    CHECK(classify(Op::kUdpSend, -ECONNREFUSED) == Verdict::kDrop);
    // Ops whose completion is all that matters.
    for (Op op : {Op::kShutdown, Op::kCancel, Op::kLinkTimeout, Op::kMisc, Op::kTick, Op::kWake,
                  Op::kAcceptResume, Op::kUdpCancel})
        for (int res : {0, -ECANCELED, -ETIME, -ENOENT})
            CHECK(classify(op, res) == Verdict::kIgnore);
}
