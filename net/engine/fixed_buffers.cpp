#include "net/engine/fixed_buffers.hpp"

#include <sys/resource.h>
#include <sys/uio.h>

#include <cstring>
#include <string>
#include <system_error>
#include <vector>

namespace fp::net {
namespace {

std::string memlock_limit() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_MEMLOCK, &rl) != 0) return "unknown";
    if (rl.rlim_cur == RLIM_INFINITY) return "unlimited";
    return std::to_string(rl.rlim_cur >> 10) + " KiB";
}

[[noreturn]] void fail(int err, std::size_t arena_bytes) {
    std::string what = "registering the " + std::to_string(arena_bytes >> 20) +
                       " MiB arena with io_uring failed: " +
                       std::error_code(err, std::generic_category()).message();
    if (err == ENOMEM || err == EPERM)
        what += " (the arena is pinned and counts against RLIMIT_MEMLOCK, which is " +
                memlock_limit() +
                " for this user: raise it (ulimit -l, systemd LimitMEMLOCK=), grant "
                "CAP_IPC_LOCK, or lower memory.arena)";
    throw std::system_error(err, std::generic_category(), what);
}

}  // namespace

FixedBuffers::FixedBuffers(UringRing& ring, const PagePool& pool)
    : ring_(ring), base_(pool.arena().base()) {
    const std::size_t bytes = pool.arena().size();
    shift_ = PagePool::kBaseShift + pool.order();
    while ((bytes >> shift_) > kMaxBuffers)
        ++shift_;
    count_ = static_cast<unsigned>(bytes >> shift_);
    std::vector<iovec> iov(count_);
    for (unsigned i = 0; i < count_; ++i)
        iov[i] = {const_cast<std::byte*>(base_) + (std::size_t{i} << shift_), buffer_bytes()};
    int rc = ring_.register_buffers(iov.data(), count_);
    if (rc < 0) fail(-rc, bytes);
}

FixedBuffers::~FixedBuffers() {
    ring_.unregister_buffers();
}

}  // namespace fp::net
