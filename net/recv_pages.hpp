#pragma once
// RecvPages: the worker's provided-buffer ring. Its buffers are whole pages of
// the worker's arena, registered with incremental consumption (IOU_PBUF_RING_INC, 6.12): every
// connection's multishot recv draws from the same few pages, the kernel filling each piece by
// piece. An idle connection therefore holds no buffer memory; memory follows the bytes in flight.
//
// The pages' accounting is LentPages (alloc/lent_pages.hpp): the FragCache protocol with the
// kernel choosing the offsets. This class only registers the ring and hands the kernel each page
// that LentPages charges.
//
// Owner thread only (the worker's completion handler).
#include <cstdint>

#include "alloc/lent_pages.hpp"
#include "alloc/page_pool.hpp"
#include "net/ring.hpp"

namespace fp::net {

class RecvPages {
  public:
    // Throws std::system_error when the kernel refuses the ring (e.g. no IOU_PBUF_RING_INC).
    // incremental = false: every completion consumes its whole buffer (one page per datagram).
    // `pages` is rounded up to a power of two (the ring's size).
    RecvPages(Ring& ring, PagePool& pool, unsigned pages, std::uint16_t group,
              bool incremental = true);
    ~RecvPages();
    RecvPages(const RecvPages&) = delete;
    RecvPages& operator=(const RecvPages&) = delete;

    // A completion consumed `len` bytes of buffer `bid`; `more` = IORING_CQE_F_BUF_MORE.
    std::byte* take(std::uint16_t bid, std::uint32_t len, bool more) noexcept;
    // Frees a fragment taken here (or any fragment of the pool): local when its page is lent.
    void free(std::byte* frag) noexcept { pages_.free(frag); }
    // Drops `count` fragments of one page at once (a closing connection's queue).
    void free_run(std::byte* any_frag, std::uint32_t count) noexcept {
        pages_.free_run(any_frag, count);
    }
    // Puts pool pages into empty slots; returns the number of pages now offered to the kernel.
    unsigned replenish() noexcept;
    unsigned offered() const noexcept { return pages_.lent(); }
    unsigned entries() const noexcept { return entries_; }
    std::uint16_t group() const noexcept { return group_; }
    // Gives every bias back and takes the pages out of the ring (shutdown; no recv may be armed).
    void drain() noexcept { pages_.drain(); }
    const LentPages& pages() const noexcept { return pages_; }

  private:
    void offer(std::uint16_t bid) noexcept;

    Ring& ring_;
    LentPages pages_;
    unsigned entries_;
    std::uint16_t group_;
    io_uring_buf_ring* br_ = nullptr;
    std::size_t br_bytes_ = 0;
};

}  // namespace fp::net
