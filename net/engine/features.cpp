#include "net/engine/features.hpp"

#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "net/engine/uapi.hpp"
#include "net/engine/uring_ring.hpp"

namespace fp::net {
namespace {

constexpr unsigned kProbeEntries = 8;
constexpr std::uint16_t kProbeGroup = 0;

// A one-entry provided-buffer ring registered with `flags`; unregistered on destruction.
class ProbeBufRing {
  public:
    ProbeBufRing(io_uring* ring, unsigned flags) : ring_(ring) {
        mem_ = ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem_ == MAP_FAILED) return;
        auto* br = static_cast<io_uring_buf_ring*>(mem_);
        io_uring_buf_ring_init(br);
        io_uring_buf_reg reg{};
        reg.ring_addr = reinterpret_cast<std::uint64_t>(br);
        reg.ring_entries = 1;
        reg.bgid = kProbeGroup;
        reg.pad = flags;
        ok_ = io_uring_register_buf_ring(ring_, &reg, 0) == 0;
        if (!ok_) return;
        io_uring_buf_ring_add(br, buf_, sizeof buf_, 0, io_uring_buf_ring_mask(1), 0);
        io_uring_buf_ring_advance(br, 1);
    }
    ~ProbeBufRing() {
        if (ok_) io_uring_unregister_buf_ring(ring_, kProbeGroup);
        if (mem_ != MAP_FAILED) ::munmap(mem_, kBytes);
    }
    ProbeBufRing(const ProbeBufRing&) = delete;
    ProbeBufRing& operator=(const ProbeBufRing&) = delete;
    bool ok() const noexcept { return ok_; }

  private:
    static constexpr std::size_t kBytes = 4096;
    io_uring* ring_;
    void* mem_ = MAP_FAILED;
    bool ok_ = false;
    char buf_[64] = {};
};

// A multishot recv with buffer select on a socketpair holding one byte: supported when its first
// CQE carries the byte and IORING_CQE_F_MORE (older kernels refuse the flag with -EINVAL).
bool probe_recv_multishot(io_uring* ring) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return false;
    bool ok = false;
    if (::write(sv[0], "x", 1) == 1) {
        io_uring_sqe* s = io_uring_get_sqe(ring);
        io_uring_prep_recv_multishot(s, sv[1], nullptr, 0, 0);
        s->flags |= IOSQE_BUFFER_SELECT;
        s->buf_group = kProbeGroup;
        io_uring_sqe_set_data64(s, 1);
        io_uring_cqe* cqe = nullptr;
        if (io_uring_submit_and_wait(ring, 1) >= 0 && io_uring_peek_cqe(ring, &cqe) == 0) {
            ok = cqe->res == 1 && (cqe->flags & IORING_CQE_F_MORE);
            io_uring_cqe_seen(ring, cqe);
        }
    }
    ::close(sv[0]);  // ends the multishot (its last CQE is left in the ring, which goes away)
    ::close(sv[1]);
    return ok;
}

}  // namespace

std::string KernelFeatures::refusal() const {
    if (io_uring()) return "";
    const char* name = ::strerrorname_np(setup_error);
    return std::string("io_uring_setup: ") + (name ? name : std::strerror(setup_error)) + " (" +
           refused + ")";
}

KernelFeatures probe_kernel() {
    KernelFeatures f;
    try {
        UringRing ring = UringRing::best(kProbeEntries);
        const RingFeatures& rf = ring.features();
        f.setup_flags = rf.setup_flags;
        f.socket_op = rf.socket_op;
        f.send_zc = rf.send_zc && rf.sendmsg_zc;
        f.sockopt_cmd = rf.uring_cmd;
        f.direct = rf.socket_op && rf.uring_cmd && rf.fd_install && ring.register_direct(8);
        f.bundles = rf.kernel_features & uapi::kFeatRecvsendBundle;
        f.min_timeout = rf.kernel_features & uapi::kFeatMinTimeout;
        {
            ProbeBufRing plain(ring.get(), 0);
            f.pbuf_ring = plain.ok();
            if (f.pbuf_ring) f.recv_multishot = probe_recv_multishot(ring.get());
        }
        ProbeBufRing inc(ring.get(), uapi::kPbufRingInc);
        f.pbuf_inc = inc.ok();
    } catch (const std::system_error& e) {
        f.setup_error = e.code().value();
        f.refused = ring_error_cause(f.setup_error, kProbeEntries);
        if (f.refused.empty()) f.refused = e.what();
    }
    return f;
}

TaskRun KernelFeatures::taskrun() const noexcept {
    if (setup_flags & IORING_SETUP_DEFER_TASKRUN) return TaskRun::kDefer;
    if (setup_flags & IORING_SETUP_COOP_TASKRUN) return TaskRun::kCoop;
    return TaskRun::kNone;
}

RecvPath KernelFeatures::resolve(RecvPath want) const noexcept {
    const bool fragments = io_uring() && pbuf_ring && recv_multishot;
    const bool incremental = fragments && pbuf_inc;
    switch (want) {
        case RecvPath::kIncremental:
            return incremental ? want : RecvPath::kAuto;
        case RecvPath::kFragments:
            return fragments ? want : RecvPath::kAuto;
        default:
            return incremental ? RecvPath::kIncremental
                   : fragments ? RecvPath::kFragments
                               : RecvPath::kAuto;
    }
}

std::string KernelFeatures::why_not(RecvPath want) const {
    if (!io_uring()) return refusal();
    if (!pbuf_ring) return "this kernel has no provided-buffer rings (Linux 5.19)";
    if (!recv_multishot) return "this kernel has no multishot recv (Linux 6.0)";
    if (want == RecvPath::kIncremental && !pbuf_inc)
        return "receive: incremental needs IOU_PBUF_RING_INC (Linux 6.12); receive: fragments "
               "runs here";
    return "";
}

std::string KernelFeatures::describe() const {
    auto yes = [](bool b) { return b ? "yes" : "no"; };
    std::string s;
    if (!io_uring()) {
        s += "io_uring: refused: " + refusal() + "\n";
        s += "backend: auto picks epoll (Asio), receive: fragments\n";
        return s;
    }
    RingFeatures rf;
    rf.setup_flags = setup_flags;
    s += "io_uring: yes; " + rf.describe_flags() + "\n";
    s += std::string("socket op (5.19): ") + yes(socket_op) + "\n";
    s += std::string("socket commands, setsockopt (6.7): ") + yes(sockopt_cmd) + "\n";
    s += std::string("zero-copy send and sendmsg (6.1): ") + yes(send_zc) + "\n";
    s += std::string("provided-buffer rings (5.19): ") + yes(pbuf_ring) + "\n";
    s += std::string("multishot recv (6.0): ") + yes(recv_multishot) + "\n";
    s += std::string("incremental buffer consumption (6.12): ") + yes(pbuf_inc) + "\n";
    s += std::string("send/recv bundles (6.10): ") + yes(bundles) + "\n";
    s += std::string("batch waits, min timeout (6.12): ") + yes(min_timeout) +
         (min_timeout ? ", UDP floods use them (io_uring: {batch_wait_us: 0}: not)\n" : "\n");
    s += std::string("direct descriptors (6.8): ") + yes(direct) +
         (direct ? ", TCP connections use them (io_uring: {direct_descriptors: false}: not)\n"
                 : "\n");
    const RecvPath pick = resolve(RecvPath::kAuto);
    s += std::string("receive: auto picks ") +
         (pick == RecvPath::kAuto ? "nothing: " + why_not(pick) : recv_path_name(pick)) + "\n";
    s += pick == RecvPath::kAuto
             ? "backend: auto picks epoll (Asio), receive: fragments\n"
             : "backend: auto picks io_uring (epoll, on Asio, where io_uring is refused)\n";
    return s;
}

}  // namespace fp::net
