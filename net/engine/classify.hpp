#pragma once
// What a CQE's result means, per operation, in one place: the relays act on the Verdict, never on
// raw errno values. Hot path: a table in code, no allocation, no exceptions.
//
//   op                 result                          verdict
//   recv (TCP)         > 0                             kOk: data
//                      0                               kEnd: the peer's FIN (half-close)
//                      -ENOBUFS                        kNoBuffers: wait for pages, re-arm
//                      -ECANCELED                      kCancelled: our pause or close
//                      -EAGAIN                         kCancelled: nothing read, re-armed
//                      -EINVAL                         kUnsupported: no multishot limits (< 6.17)
//                      other < 0                       kReset: the peer is gone
//   send (TCP)         >= 0                            kOk: bytes sent (a short send goes on)
//                      -ECANCELED, -EINTR              kCancelled: our cancel for a collapse
//                      -EAGAIN                         kCancelled: nothing sent, sent again
//                      other < 0                       kReset
//   socket             >= 0                            kOk: the upstream fd
//                      -EMFILE, -ENFILE                kOutOfFds: accepting pauses, retried
//                      other < 0                       kClose: a clean close of the client
//   sockopt command    >= 0                            kOk
//                      -ECANCELED                      kCancelled
//                      other < 0                       kUnsupported: plain setsockopt (< 6.7)
//   connect            0                               kOk
//                      < 0 (refused, unreachable,      kNextUpstream: the next one; after the
//                      -ECANCELED: timed out)          last, a clean close
//   accept             >= 0                            kOk: the client fd
//                      -EMFILE, -ENFILE                kOutOfFds
//                      -ECANCELED                      kCancelled
//                      other < 0                       kRearm
//   recvmsg (UDP       >= 0                            kOk: a datagram
//   listener)          -ENOBUFS                        kNoBuffers: it waits in the socket
//                      other < 0                       kRearm: a listener never closes
//   recv (UDP          >= 0                            kOk: a reply (0 bytes is a datagram too)
//   session)           -ENOBUFS                        kNoBuffers
//                      -ECANCELED                      kCancelled
//                      other < 0 (-ECONNREFUSED: ICMP  kReset: the session ends
//                      port unreachable)
//   sendmsg (UDP)      >= 0                            kOk
//                      -EINVAL, -EMSGSIZE, -EIO        kResend: a GSO batch the path refused
//                      other < 0                       kDrop: dropped and counted
//   shutdown, cancel, link timeout, close, tick,      kIgnore: only the completion counts
//   wake, accept resume
#include <cerrno>

#include "net/engine/user_data.hpp"

namespace fp::net {

enum class Verdict : std::uint8_t {
    kOk,
    kEnd,
    kNoBuffers,
    kCancelled,
    kUnsupported,
    kOutOfFds,
    kNextUpstream,
    kResend,
    kRearm,
    kReset,
    kClose,
    kDrop,
    kIgnore,
};

constexpr Verdict classify(Op op, int res) noexcept {
    switch (op) {
        case Op::kRecv:
            if (res > 0) return Verdict::kOk;
            if (res == 0) return Verdict::kEnd;
            if (res == -ENOBUFS) return Verdict::kNoBuffers;
            if (res == -ECANCELED || res == -EAGAIN) return Verdict::kCancelled;
            if (res == -EINVAL) return Verdict::kUnsupported;
            return Verdict::kReset;
        case Op::kSend:
            if (res >= 0) return Verdict::kOk;
            if (res == -ECANCELED || res == -EINTR || res == -EAGAIN) return Verdict::kCancelled;
            return Verdict::kReset;
        case Op::kSocket:
            if (res >= 0) return Verdict::kOk;
            if (res == -EMFILE || res == -ENFILE) return Verdict::kOutOfFds;
            return Verdict::kClose;
        case Op::kSockopt:
            if (res >= 0) return Verdict::kOk;
            if (res == -ECANCELED) return Verdict::kCancelled;
            return Verdict::kUnsupported;
        case Op::kConnect:
            return res == 0 ? Verdict::kOk : Verdict::kNextUpstream;
        case Op::kAccept:
            if (res >= 0) return Verdict::kOk;
            if (res == -EMFILE || res == -ENFILE) return Verdict::kOutOfFds;
            if (res == -ECANCELED) return Verdict::kCancelled;
            return Verdict::kRearm;
        case Op::kUdpRecv:
            if (res >= 0) return Verdict::kOk;
            if (res == -ENOBUFS) return Verdict::kNoBuffers;
            return Verdict::kRearm;
        case Op::kUdpUpRecv:
            if (res >= 0) return Verdict::kOk;
            if (res == -ENOBUFS) return Verdict::kNoBuffers;
            if (res == -ECANCELED) return Verdict::kCancelled;
            return Verdict::kReset;
        case Op::kUdpSend:
            if (res >= 0) return Verdict::kOk;
            if (res == -EINVAL || res == -EMSGSIZE || res == -EIO) return Verdict::kResend;
            return Verdict::kDrop;
        default:
            return Verdict::kIgnore;
    }
}

}  // namespace fp::net
