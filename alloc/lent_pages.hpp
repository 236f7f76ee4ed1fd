#pragma once
// LentPages: pages lent to a filler that picks the offsets itself: the kernel, through an io_uring
// provided-buffer ring. It is FragCache's protocol (BiasedPage) with the offsets reported after
// the fact: slot `bid` holds one charged page; each report "len bytes of slot bid" becomes a
// fragment at that slot's running offset (a completion carries no offset) and costs the bias one.
// When the filler is done with a slot (eject) its bias is reconciled once: if every fragment was
// already freed the page is charged again in place, otherwise it belongs to its fragments and a
// pool page takes the slot. Owner frees of fragments whose page is still lent go back to its bias.
//
// The caller (net/engine/recv_pages.hpp) hands each slot's bytes to the filler whenever refill() or
// eject() reports that the slot holds a freshly charged page.
//
// Owner thread only. Fragments may be freed on any thread with frag_free().
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "alloc/biased_page.hpp"
#include "alloc/counter.hpp"
#include "alloc/page_pool.hpp"

namespace fp {

struct LentStats {
    Counter reuses;   // slots whose page came back whole at eject and was charged again in place
    Counter refills;  // pool pages put into slots
};

class LentPages {
  public:
    // Page::held of a lent page (FragCache tags its pages with slot + 1, at most 32).
    static constexpr std::uint8_t kTag = 0xff;

    // `entries` slots, empty until refill().
    LentPages(PagePool& pool, unsigned entries);
    ~LentPages() { drain(); }
    LentPages(const LentPages&) = delete;
    LentPages& operator=(const LentPages&) = delete;

    // Puts a pool page into one empty slot: its id, or nothing (no empty slot, or no memory).
    // The normal zone first; when it is empty, the reserve but for its last quarter (the
    // kernel's pfmemalloc rule; the last quarter is for Depth::kMemalloc).
    std::optional<std::uint16_t> refill() noexcept;
    // The filler reports `len` bytes written at slot `bid`'s running offset: that fragment.
    std::byte* take(std::uint16_t bid, std::uint32_t len) noexcept;
    // The filler is done with slot `bid`. True when the slot holds a page again (reused in place
    // or fresh) to be handed to the filler; false leaves it empty for refill().
    bool eject(std::uint16_t bid) noexcept;
    // An owner free: local when the fragment's page is still lent, else frag_free().
    void free(std::byte* frag) noexcept;
    // `count` fragments of one page at once (a closing connection's queue): one bias update or
    // one atomic drain. The caller has untracked them (debug builds).
    void free_run(std::byte* any_frag, std::uint32_t count) noexcept;
    // Gives every bias back and empties every slot (the filler must hold none of them any more).
    void drain() noexcept;

    std::span<std::byte> bytes(std::uint16_t bid) const noexcept {
        return {slots_[bid].va, slots_[bid].size};
    }
    // What slot `bid` has left past its running offset (what the filler may still write there).
    std::uint32_t room(std::uint16_t bid) const noexcept { return slots_[bid].size - offset_[bid]; }
    const BiasedPage& slot(std::uint16_t bid) const noexcept { return slots_[bid]; }
    unsigned entries() const noexcept { return unsigned(slots_.size()); }
    unsigned lent() const noexcept { return entries() - unsigned(empty_.size()); }
    const LentStats& stats() const noexcept { return stats_; }

  private:
    BiasedPage* slot_of(const Page* page) noexcept;
    void lend(std::uint16_t bid, Page* page) noexcept;

    PagePool& pool_;
    std::vector<BiasedPage> slots_;
    std::vector<std::uint32_t> offset_;  // per slot: where the filler's next bytes land
    std::vector<std::uint16_t> empty_;   // slots with no page, reserved up front (no growth)
    LentStats stats_;
};

}  // namespace fp
