#pragma once
// user_data of every SQE: operation, socket side, slot and the slot's generation (Tag). Which
// slot table an op's slot indexes, and whether its generation is checked, follows from the op
// (owner()): connection slots for the TCP relay's per-connection ops, session slots for the UDP
// relay's, and plain indexes (a listener, a send batch) for the rest.
#include <cstdint>

namespace fp::net {

enum class Op : std::uint8_t {
    // The reactor's own.
    kTick,  // the once-a-second timer (timeouts, gauges)
    kWake,  // the stop eventfd
    kMisc,  // a cancel or close nothing waits for
    // TCP, slot = listener.
    kAccept,        // multishot accept
    kAcceptResume,  // accepting paused for want of fds resumes
    // TCP, slot = connection.
    kSocket,       // socket() of the upstream side
    kSockopt,      // setsockopt(TCP_NODELAY) of the upstream socket, a socket command
    kConnect,      // connect of the upstream socket
    kLinkTimeout,  // the connect's timeout
    kRecv,         // multishot recv from side's fd
    kSend,         // sendmsg to side's fd
    kShutdown,     // shutdown(SHUT_WR) of side's fd
    kInstall,      // a plain fd for side's direct descriptor (the memory budget's syscalls)
    kCancel,       // async cancel of a connection's ops
    // UDP.
    kUdpRecv,    // multishot recvmsg on a listener (slot = listener)
    kUdpSend,    // a batch of datagrams on its way (slot = send node)
    kUdpUpRecv,  // multishot recv on a session's connected upstream socket (slot = session)
    kUdpCancel,  // cancel of a session's receive (slot = session)
};

enum class Owner : std::uint8_t { kReactor, kTcp, kTcpConn, kUdp, kUdpSession };

constexpr Owner owner(Op op) noexcept {
    if (op <= Op::kMisc) return Owner::kReactor;
    if (op <= Op::kAcceptResume) return Owner::kTcp;
    if (op <= Op::kCancel) return Owner::kTcpConn;
    if (op <= Op::kUdpSend) return Owner::kUdp;
    return Owner::kUdpSession;
}

struct Tag {
    static constexpr unsigned kSlotBits = 23;
    static constexpr std::uint32_t kMaxSlot = (1u << kSlotBits) - 1;

    Op op;
    unsigned side;       // 0 = client, 1 = upstream
    std::uint32_t slot;  // at most kMaxSlot
    std::uint32_t gen;

    std::uint64_t pack() const noexcept {
        return std::uint64_t(op) | std::uint64_t(side & 1) << 8 |
               std::uint64_t(slot & kMaxSlot) << 9 | std::uint64_t(gen) << 32;
    }
    static Tag unpack(std::uint64_t v) noexcept {
        return {Op(v & 0xff), unsigned(v >> 8) & 1, std::uint32_t(v >> 9) & kMaxSlot,
                std::uint32_t(v >> 32)};
    }
};

static_assert(sizeof(Op) == 1);

}  // namespace fp::net
