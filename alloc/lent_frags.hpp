#pragma once
// LentFrags: fragments carved by a FragCache and lent to a filler that writes each one from its
// start: an io_uring provided-buffer ring without incremental consumption (kernels before 6.12).
// This is the seed's own shape: receive buffers sliced from compound pages by a per-worker
// fragment cache, in completion context. A completion takes what arrived at its slot's fragment's
// start. A short one leaves a tail: when at least a quarter of the fragment (and 4 KiB) is left,
// the tail is split off (FragCache::split, one more reference on the page, no atomic op while the
// cache holds it) and stays lent in the slot, so a few bytes never pin a whole fragment (what
// incremental consumption does in the kernel); else the fragment is taken whole (the rest unused
// until it is freed, the kernel's truesize) and the slot is carved again at once. Frees go back
// through the cache: an owner free only moves the page's bias (FragCache::free).
//
// Owner thread only. Fragments may be freed on any thread with frag_free().
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "alloc/frag_cache.hpp"
#include "alloc/page_pool.hpp"

namespace fp {

class LentFrags {
  public:
    // `entries` slots, carved `frag_bytes` each (a power of two, at most a page), empty until
    // refill().
    LentFrags(PagePool& pool, unsigned entries, std::uint32_t frag_bytes);
    ~LentFrags() { drain(); }
    LentFrags(const LentFrags&) = delete;
    LentFrags& operator=(const LentFrags&) = delete;

    // Carves a fragment into one empty slot: its id, or nothing (no empty slot, or no memory).
    std::optional<std::uint16_t> refill() noexcept;
    // The filler wrote `len` bytes at the start of slot `bid`'s fragment: that fragment (len bytes,
    // rounded up to kTailAlign when a tail is split off). The slot then lends the tail
    // (lent_at(bid) not null: offer it again) or is empty.
    std::byte* take(std::uint16_t bid, std::uint32_t len) noexcept;
    void free(std::byte* frag) noexcept { cache_.free(frag); }
    // `count` fragments of one page at once (a closing connection's queue), in one atomic op.
    // The caller has untracked them (debug builds).
    void free_run(std::byte* any_frag, std::uint32_t count) noexcept;
    // Frees the fragments still lent (the filler must hold none any more) and drains the cache.
    void drain() noexcept;
    // Gives back the cache's idle pages (FragCache::trim): once a second, off the data path.
    void trim() noexcept { cache_.trim(); }

    std::span<std::byte> bytes(std::uint16_t bid) const noexcept {
        return {frag_[bid], size_[bid]};
    }
    std::byte* lent_at(std::uint16_t bid) const noexcept { return frag_[bid]; }
    unsigned entries() const noexcept { return unsigned(frag_.size()); }
    unsigned lent() const noexcept { return entries() - unsigned(empty_.size()); }
    std::uint32_t frag_bytes() const noexcept { return frag_bytes_; }
    const FragCache& cache() const noexcept { return cache_; }

    static constexpr std::uint32_t kTailAlign = 64;  // a split tail starts on a cache line
    // The smallest tail lent again: smaller ones would cost a completion for a few bytes.
    std::uint32_t min_tail() const noexcept { return std::max(frag_bytes_ / 4, 4096u); }

  private:
    PagePool& pool_;
    FragCache cache_;
    std::uint32_t frag_bytes_;
    std::vector<std::byte*> frag_;      // per slot: the fragment lent, or null
    std::vector<std::uint32_t> size_;   // per slot: its bytes (frag_bytes_, or a tail)
    std::vector<std::uint16_t> empty_;  // slots with no fragment, reserved up front
};

}  // namespace fp
