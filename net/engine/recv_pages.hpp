#pragma once
// RecvPages: a worker's provided-buffer ring, in one of three shapes (RecvMode):
//   kIncremental  whole pages of the arena, registered with incremental consumption
//                 (IOU_PBUF_RING_INC, 6.12): every connection's multishot recv draws from the
//                 same few pages, the kernel filling each piece by piece. An idle connection holds
//                 no buffer memory; memory follows the bytes in flight. Accounting: LentPages.
//   kFragments    fragments carved by a FragCache (kernels before 6.12): a completion takes
//                 what arrived at its buffer's start; a short one's tail is offered again in the
//                 same slot, else the slot is carved again at once, in completion context.
//                 Accounting: LentFrags.
//   kWholePages   whole pages, each consumed by one completion (a UDP datagram must never be
//                 split). Accounting: LentPages.
// This class registers the ring and hands the kernel each buffer the accounting charges; the
// bias protocol itself is in alloc/. It keeps the ring's order (which buffer went in at which
// entry): a bundle completion (IORING_RECVSEND_BUNDLE) names only its first buffer and fills
// those offered after it.
//
// Owner thread only (the worker's completion handler).
#include <cstdint>
#include <memory>
#include <vector>

#include "alloc/lent_frags.hpp"
#include "alloc/lent_pages.hpp"
#include "alloc/page_pool.hpp"
#include "net/engine/ring.hpp"

namespace fp::net {

enum class RecvMode : std::uint8_t { kIncremental, kFragments, kWholePages };

class RecvPages {
  public:
    // `pages` of the pool go on offer at once (kFragments: as fragments of `fragment` bytes); the
    // ring's size is rounded up to a power of two. Throws std::system_error when the kernel
    // refuses the ring, naming what the mode needs.
    RecvPages(Ring& ring, PagePool& pool, unsigned pages, std::uint16_t group, RecvMode mode,
              std::uint32_t fragment = 0);
    ~RecvPages();
    RecvPages(const RecvPages&) = delete;
    RecvPages& operator=(const RecvPages&) = delete;

    // A completion consumed `len` bytes of buffer `bid`; `more` = IORING_CQE_F_BUF_MORE.
    std::byte* take(std::uint16_t bid, std::uint32_t len, bool more) noexcept;
    // A completion of `len` bytes from buffer `bid` on: that buffer's room from its running offset
    // (the whole of it without incremental consumption), then each buffer offered after it, in
    // ring order, until the bytes are placed; `more` is the last buffer's. Calls each(fragment,
    // bytes) per buffer, in order; returns how many. A receive without bundles fills one.
    template <class Each>
    unsigned take_each(std::uint16_t bid, std::uint32_t len, bool more, Each&& each) noexcept {
        std::uint16_t at = pos_[bid];
        for (unsigned n = 1;; ++n) {
            const std::uint32_t room =
                frags_ ? std::uint32_t(frags_->bytes(bid).size()) : pages_->room(bid);
            if (len <= room) {
                each(take(bid, len, more), len);
                return n;
            }
            const std::uint16_t next = order_[++at & (entries_ - 1)];  // before take() offers
            each(take(bid, room, false), room);
            len -= room;
            bid = next;
        }
    }
    // Frees a fragment taken here (or any fragment of the pool): local when its page is held.
    void free(std::byte* frag) noexcept {
        if (frags_)
            frags_->free(frag);
        else
            pages_->free(frag);
    }
    // Drops `count` fragments of one page at once (a closing connection's queue).
    void free_run(std::byte* any_frag, std::uint32_t count) noexcept {
        if (frags_)
            frags_->free_run(any_frag, count);
        else
            pages_->free_run(any_frag, count);
    }
    // Fills empty slots; returns the number of buffers now offered to the kernel.
    unsigned replenish() noexcept;
    unsigned offered() const noexcept { return frags_ ? frags_->lent() : pages_->lent(); }
    unsigned entries() const noexcept { return entries_; }
    std::uint16_t group() const noexcept { return group_; }
    RecvMode mode() const noexcept { return mode_; }
    std::uint32_t buffer_bytes() const noexcept { return buffer_bytes_; }
    // Gives every bias back and takes the buffers out of the ring (no recv may be armed).
    void drain() noexcept;
    // Pages kept only for reuse go back to the pool (kFragments: the cache's idle pages).
    void trim() noexcept {
        if (frags_) frags_->trim();
    }
    const LentPages* pages() const noexcept { return pages_.get(); }
    // Pages charged again in place after all their fragments came back, and pages taken from
    // the pool: what the receive buffers have cost the allocator so far.
    std::uint64_t pages_reused() const noexcept {
        return frags_ ? frags_->cache().stats().reuses.get() : pages_->stats().reuses.get();
    }
    std::uint64_t pages_new() const noexcept {
        return frags_ ? frags_->cache().stats().refills.get() : pages_->stats().refills.get();
    }

  private:
    void offer(std::uint16_t bid) noexcept;

    Ring& ring_;
    RecvMode mode_;
    unsigned entries_;
    std::uint32_t buffer_bytes_;
    std::uint16_t group_;
    std::unique_ptr<LentPages> pages_;  // kIncremental, kWholePages
    std::unique_ptr<LentFrags> frags_;  // kFragments
    io_uring_buf_ring* br_ = nullptr;
    std::size_t br_bytes_ = 0;
    std::vector<std::uint16_t> pos_;    // per buffer id: the ring entry it was last offered at
    std::vector<std::uint16_t> order_;  // per ring entry (modulo entries_): the buffer id there
};

}  // namespace fp::net
