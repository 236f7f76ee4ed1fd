#pragma once
// user_data of every SQE: operation, socket side, connection slot and the slot's generation. A
// connection slot is reused only after every CQE of its previous life has arrived (close waits for
// them), and the generation makes any CQE that still reached a reused slot recognisable.
#include <cstdint>

namespace fp::net {

enum class Op : std::uint8_t {
    kAccept,        // slot = listener index
    kRecv,          // multishot recv from side's fd
    kSend,          // sendmsg to side's fd
    kConnect,       // connect of the upstream socket
    kLinkTimeout,   // the connect's timeout
    kSocket,        // socket() of the upstream side
    kSockopt,       // setsockopt(TCP_NODELAY) of the upstream socket, a socket command
    kShutdown,      // shutdown(SHUT_WR) of side's fd
    kCancel,        // async cancel of a connection's ops
    kClose,         // close of an fd no connection owns any more
    kTick,          // the once-a-second timer (idle timeouts)
    kAcceptResume,  // accepting paused for want of fds resumes (slot = listener)
    kWake,          // the stop eventfd
    kUdpRecv,       // multishot recvmsg on a UDP listener (slot = listener)
    kUdpUpRecv,     // multishot recv on a session's connected upstream socket (slot = session)
    kUdpSend,       // a datagram on its way (slot = send node)
    kUdpCancel,     // cancel of a session's receive (slot = session)
    kUdpMisc,       // cancel or close nothing waits for
};

struct Tag {
    Op op;
    unsigned side;  // 0 = client, 1 = upstream
    std::uint32_t slot;
    std::uint32_t gen;

    std::uint64_t pack() const noexcept {
        return std::uint64_t(op) | std::uint64_t(side & 1) << 8 | std::uint64_t(slot) << 9 |
               std::uint64_t(gen) << 32;
    }
    static Tag unpack(std::uint64_t v) noexcept {
        return {Op(v & 0xff), unsigned(v >> 8) & 1, std::uint32_t(v >> 9) & 0x7fffff,
                std::uint32_t(v >> 32)};
    }
};

static_assert(sizeof(Op) == 1);

}  // namespace fp::net
