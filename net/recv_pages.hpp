#pragma once
// RecvPages: the worker's provided-buffer ring. Its buffers are whole pages of
// the worker's arena, registered with incremental consumption (IOU_PBUF_RING_INC, 6.12): every
// connection's multishot recv draws from the same few pages, the kernel filling each piece by
// piece. An idle connection therefore holds no buffer memory; memory follows the bytes in flight.
//
// It is the FragCache algorithm with the kernel choosing the offsets. A page entering the ring is
// charged once with bias = size + 1. Each completion (buffer id, length) becomes a fragment at that
// buffer's running offset (the CQE carries no offset) and costs the local bias one. When the kernel
// is done with a buffer (no IORING_CQE_F_BUF_MORE) the bias is given back in one atomic
// sub_and_test: zero means every fragment was already sent and freed, and the page goes straight
// back into the ring; otherwise it belongs to its fragments and a pool page takes its slot. Owner
// frees of fragments whose page is still in the ring return the reference to the local bias.
//
// Owner thread only (the worker's completion handler).
#include <cstdint>
#include <vector>

#include "alloc/page_pool.hpp"
#include "net/ring.hpp"

namespace fp::net {

class RecvPages {
  public:
    // Throws std::system_error when the kernel refuses the ring (e.g. no IOU_PBUF_RING_INC).
    // incremental = false: every completion consumes its whole buffer (one page per datagram).
    RecvPages(Ring& ring, PagePool& pool, unsigned entries, std::uint16_t group,
              bool incremental = true);
    ~RecvPages();
    RecvPages(const RecvPages&) = delete;
    RecvPages& operator=(const RecvPages&) = delete;

    // A completion consumed `len` bytes of buffer `bid`; `more` = IORING_CQE_F_BUF_MORE.
    std::byte* take(std::uint16_t bid, std::uint32_t len, bool more) noexcept;
    // Frees a fragment taken here (or any fragment of the pool): local when its page is in the
    // ring.
    void free(std::byte* frag) noexcept;
    // Drops `count` fragments of one page at once (a closing connection's queue): one bias update
    // or one atomic drain, never one per fragment. The caller has untracked them (debug builds).
    void free_run(std::byte* any_frag, std::uint32_t count) noexcept;
    // Puts pool pages into empty slots; returns the number of pages now offered to the kernel.
    unsigned replenish() noexcept;
    unsigned offered() const noexcept { return entries_ - static_cast<unsigned>(empty_.size()); }
    std::uint16_t group() const noexcept { return group_; }
    // Gives every bias back and takes the pages out of the ring (shutdown; no recv may be armed).
    void drain() noexcept;

  private:
    struct Slot {
        Page* page = nullptr;
        std::byte* va = nullptr;
        std::uint32_t size = 0;
        std::uint32_t offset = 0;
        std::uint32_t bias = 0;
    };
    void offer(std::uint16_t bid, Page* page) noexcept;
    Page* fresh_page() noexcept;
    Slot* slot_of(const Page* page) noexcept;
    void eject(std::uint16_t bid) noexcept;

    Ring& ring_;
    PagePool& pool_;
    unsigned entries_;
    std::uint16_t group_;
    io_uring_buf_ring* br_ = nullptr;
    std::size_t br_bytes_ = 0;
    std::vector<Slot> slots_;
    std::vector<std::uint16_t> empty_;  // bids with no page, reserved up front (no growth later)
};

}  // namespace fp::net
