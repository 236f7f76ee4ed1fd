#include "net/ring.hpp"

#include <cstring>
#include <string>
#include <system_error>

namespace fp::net {

Ring::Ring(unsigned entries, unsigned flags) {
    int rc = io_uring_queue_init(entries, &ring_, flags);
    if (rc < 0)
        throw std::system_error(-rc, std::generic_category(),
                                "io_uring_queue_init(" + std::to_string(entries) + ")");
    live_ = true;
    features_.setup_flags = flags;
    probe();
}

Ring Ring::best(unsigned entries) {
    constexpr unsigned kTries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        0,
    };
    int last = 0;
    for (unsigned flags : kTries) {
        Ring r;
        last = io_uring_queue_init(entries, &r.ring_, flags);
        if (last < 0) continue;
        r.live_ = true;
        r.features_.setup_flags = flags;
        r.probe();
        return r;
    }
    throw std::system_error(-last, std::generic_category(), "io_uring_queue_init");
}

Ring::Ring(Ring&& o) noexcept : ring_(o.ring_), live_(o.live_), features_(o.features_) {
    o.live_ = false;
}

Ring::~Ring() {
    if (live_) io_uring_queue_exit(&ring_);
}

void Ring::probe() {
    io_uring_probe* p = io_uring_get_probe_ring(&ring_);
    if (!p) return;
    features_.send_zc = io_uring_opcode_supported(p, IORING_OP_SEND_ZC);
    features_.socket_op = io_uring_opcode_supported(p, IORING_OP_SOCKET);
    features_.shutdown_op = io_uring_opcode_supported(p, IORING_OP_SHUTDOWN);
    io_uring_free_probe(p);
}

io_uring_sqe* Ring::sqe() noexcept {
    io_uring_sqe* s = io_uring_get_sqe(&ring_);
    if (s) return s;
    io_uring_submit(&ring_);
    return io_uring_get_sqe(&ring_);
}

std::string RingFeatures::describe() const {
    std::string s = "setup";
    if (setup_flags & IORING_SETUP_SINGLE_ISSUER) s += " SINGLE_ISSUER";
    if (setup_flags & IORING_SETUP_DEFER_TASKRUN) s += " DEFER_TASKRUN";
    if (setup_flags & IORING_SETUP_COOP_TASKRUN) s += " COOP_TASKRUN";
    if (setup_flags & IORING_SETUP_SUBMIT_ALL) s += " SUBMIT_ALL";
    if (!setup_flags) s += " (none)";
    s += std::string(", send_zc ") + (send_zc ? "yes" : "no");
    s += std::string(", socket op ") + (socket_op ? "yes" : "no");
    return s;
}

}  // namespace fp::net
