#pragma once
// FixedBuffers: registers a pool's whole arena with an io_uring as fixed buffers, once, so the
// kernel pins it once instead of on every I/O, and maps any fragment to the (buffer index,
// address) pair that read_fixed / write_fixed / send_zc with IORING_RECVSEND_FIXED_BUF take.
//
// One iovec per block of the pool's order (a fragment never crosses a page, so never an iovec), or
// a power-of-two multiple of it when the arena would need more than the kernel's 16384 buffers.
// Registration pins the arena: for a user without CAP_IPC_LOCK it counts against RLIMIT_MEMLOCK,
// and a failure says so (std::system_error naming the limit and the config key).
#include <cstddef>

#include "alloc/page_pool.hpp"
#include "net/engine/uring_ring.hpp"

namespace fp::net {

struct FixedSlice {
    int index;   // buffer index for the *_fixed ops
    void* addr;  // the fragment's address, unchanged: fixed ops take addresses inside the buffer
};

class FixedBuffers {
  public:
    static constexpr std::size_t kMaxBuffers = 16384;  // the kernel's IORING_MAX_REG_BUFFERS

    FixedBuffers(UringRing& ring, const PagePool& pool);
    ~FixedBuffers();
    FixedBuffers(const FixedBuffers&) = delete;
    FixedBuffers& operator=(const FixedBuffers&) = delete;

    FixedSlice locate(const void* frag) const noexcept {
        auto off = static_cast<std::size_t>(static_cast<const std::byte*>(frag) - base_);
        return {static_cast<int>(off >> shift_), const_cast<void*>(frag)};
    }
    unsigned count() const noexcept { return count_; }
    std::size_t buffer_bytes() const noexcept { return std::size_t{1} << shift_; }

  private:
    UringRing& ring_;
    const std::byte* base_;
    unsigned shift_;
    unsigned count_;
};

}  // namespace fp::net
