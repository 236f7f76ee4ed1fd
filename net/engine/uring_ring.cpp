#include "net/engine/uring_ring.hpp"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>

#include "net/engine/uapi.hpp"

namespace fp::net {
namespace {

std::string read_first_line(const char* path) {
    std::FILE* f = std::fopen(path, "r");
    if (!f) return "";
    char line[256] = {};
    bool ok = std::fgets(line, sizeof line, f) != nullptr;
    std::fclose(f);
    std::string s = ok ? line : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
        s.pop_back();
    return s;
}

bool under_seccomp() {
    std::FILE* f = std::fopen("/proc/self/status", "r");
    if (!f) return false;
    char line[256];
    int mode = 0;
    while (std::fgets(line, sizeof line, f))
        if (std::sscanf(line, "Seccomp: %d", &mode) == 1) break;
    std::fclose(f);
    return mode != 0;
}

}  // namespace

std::string ring_error_cause(int err, unsigned entries) {
    if (err == ENOMEM) {
        rlimit rl{};
        ::getrlimit(RLIMIT_MEMLOCK, &rl);
        // SQEs (64 B), CQEs (16 B, twice as many) and the ring headers, rounded to pages.
        std::size_t need = (std::size_t(entries) * 64 + std::size_t(entries) * 2 * 16 + 8192) >> 10;
        return "RLIMIT_MEMLOCK is " +
               (rl.rlim_cur == RLIM_INFINITY ? std::string("unlimited")
                                             : std::to_string(rl.rlim_cur >> 10) + " KiB") +
               "; each worker's ring locks about " + std::to_string(need) +
               " KiB (raise it: ulimit -l, LimitMEMLOCK= in systemd, or fewer workers)";
    }
    if (err == EPERM || err == EACCES || err == ENOSYS) {
        std::string disabled = read_first_line("/proc/sys/kernel/io_uring_disabled");
        if (disabled == "2")
            return "kernel.io_uring_disabled = 2: io_uring is off for every process";
        if (disabled == "1")
            return "kernel.io_uring_disabled = 1: only members of kernel.io_uring_group (" +
                   read_first_line("/proc/sys/kernel/io_uring_group") + ") may use io_uring";
        if (under_seccomp())
            return "a seccomp filter refuses the io_uring syscalls (container runtimes' default "
                   "profiles do: allow io_uring_setup, io_uring_enter, io_uring_register)";
        if (err == ENOSYS) return "this kernel has no io_uring";
    }
    return "";
}

namespace {

std::system_error ring_error(int err, unsigned entries) {
    std::string what = "io_uring_queue_init(" + std::to_string(entries) + ")";
    std::string cause = ring_error_cause(err, entries);
    if (!cause.empty()) what += " (" + cause + ")";
    return std::system_error(err, std::generic_category(), what);
}

}  // namespace

UringRing::UringRing(unsigned entries, unsigned flags) {
    int rc = io_uring_queue_init(entries, &ring_, flags);
    if (rc < 0) throw ring_error(-rc, entries);
    live_ = true;
    features_.setup_flags = flags;
    probe();
}

UringRing UringRing::best(unsigned entries, TaskRun taskrun) {
    constexpr unsigned kTries[] = {
        // in TaskRun's order: defer, coop, none
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        0,
    };
    const std::size_t first = taskrun == TaskRun::kAuto ? 0 : std::size_t(taskrun) - 1;
    const std::size_t end = taskrun == TaskRun::kAuto ? std::size(kTries) : first + 1;
    int last = 0;
    for (std::size_t k = first; k < end; ++k) {
        const unsigned flags = kTries[k];
        UringRing r;
        last = io_uring_queue_init(entries, &r.ring_, flags);
        if (last < 0) continue;
        r.live_ = true;
        r.features_.setup_flags = flags;
        r.probe();
        return r;
    }
    throw ring_error(-last, entries);
}

UringRing::UringRing(UringRing&& o) noexcept : ring_(o.ring_), live_(o.live_) {
    features_ = o.features_;
    o.live_ = false;
}

int UringRing::submit_and_wait(const __kernel_timespec* timeout) noexcept {
    if (!timeout) return io_uring_submit_and_wait(&ring_, 1);
    io_uring_cqe* first = nullptr;
    auto ts = *timeout;
    return io_uring_submit_and_wait_timeout(&ring_, &first, 1, &ts, nullptr);
}

bool UringRing::batch_wait() const noexcept {
    return (features_.kernel_features & uapi::kFeatMinTimeout);
}

int UringRing::submit_and_wait_batch(unsigned batch, unsigned min_wait_us) noexcept {
    const int submitted = io_uring_submit(&ring_);
    if (submitted < 0) return submitted;
    // With no timeout the wait would end at the minimum timeout even with nothing: a second,
    // and the worker's tick comes before it (-ETIME then, as for submit_and_wait's timeout).
    __kernel_timespec ts{1, 0};
    uapi::GeteventsArg arg{};
    arg.sigmask_sz = _NSIG / 8;
    arg.min_wait_usec = min_wait_us;
    arg.ts = reinterpret_cast<std::uintptr_t>(&ts);
    const int rc = io_uring_enter2(unsigned(ring_.ring_fd), 0, batch,
                                   IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
                                   reinterpret_cast<sigset_t*>(&arg), sizeof arg);
    return rc < 0 ? rc : submitted;
}

UringRing::~UringRing() {
    if (live_) io_uring_queue_exit(&ring_);
}

void UringRing::probe() {
    io_uring_probe* p = io_uring_get_probe_ring(&ring_);
    if (!p) return;
    features_.send_zc = io_uring_opcode_supported(p, IORING_OP_SEND_ZC);
    features_.sendmsg_zc = io_uring_opcode_supported(p, IORING_OP_SENDMSG_ZC);
    features_.socket_op = io_uring_opcode_supported(p, IORING_OP_SOCKET);
    features_.shutdown_op = io_uring_opcode_supported(p, IORING_OP_SHUTDOWN);
    features_.uring_cmd = io_uring_opcode_supported(p, IORING_OP_URING_CMD);
    features_.fd_install = io_uring_opcode_supported(p, uapi::kOpFixedFdInstall);
    features_.kernel_features = ring_.features;
    io_uring_free_probe(p);
}

bool UringRing::register_direct(unsigned n) noexcept {
    if (n == 0) return false;
    if (io_uring_register_files_sparse(&ring_, n) != 0) return false;
    features_.direct_files = n;
    return true;
}

int UringRing::register_napi(std::uint32_t us) noexcept {
    uapi::Napi napi{};
    napi.busy_poll_to = us;
    napi.prefer_busy_poll = 1;
    const long rc = ::syscall(__NR_io_uring_register, ring_.ring_fd, uapi::kRegisterNapi, &napi, 1);
    return rc < 0 ? -errno : 0;
}

int UringRing::unregister_napi(std::uint32_t* us) noexcept {
    uapi::Napi napi{};
    const long rc =
        ::syscall(__NR_io_uring_register, ring_.ring_fd, uapi::kUnregisterNapi, &napi, 1);
    if (rc < 0) return -errno;
    if (us) *us = napi.busy_poll_to;
    return 0;
}

void UringRing::close_direct_now(int index) noexcept {
    int none = -1;
    io_uring_register_files_update(&ring_, unsigned(index), &none, 1);
}

std::string RingFeatures::describe_flags() const {
    std::string s = "setup";
    if (setup_flags & IORING_SETUP_SINGLE_ISSUER) s += " SINGLE_ISSUER";
    if (setup_flags & IORING_SETUP_DEFER_TASKRUN) s += " DEFER_TASKRUN";
    if (setup_flags & IORING_SETUP_COOP_TASKRUN) s += " COOP_TASKRUN";
    if (setup_flags & IORING_SETUP_SUBMIT_ALL) s += " SUBMIT_ALL";
    if (!setup_flags) s += " (none)";
    return s;
}

std::string RingFeatures::describe() const {
    std::string s = describe_flags();
    s += std::string(", send_zc ") + (send_zc ? "yes" : "no");
    s += std::string(", socket op ") + (socket_op ? "yes" : "no");
    if (direct_files) s += ", " + std::to_string(direct_files) + " direct descriptors";
    s += std::string(", batch waits ") + (kernel_features & uapi::kFeatMinTimeout ? "yes" : "no");
    return s;
}

}  // namespace fp::net
