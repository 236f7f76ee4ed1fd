#include "alloc/lent_pages.hpp"

#include "alloc/check.hpp"
#include "alloc/frag.hpp"

namespace fp {

LentPages::LentPages(PagePool& pool, unsigned entries)
    : pool_(pool), slots_(entries), offset_(entries) {
    FP_CHECK(entries && entries <= 32768, "lent pages: 1..32768 slots, not %u", entries);
    empty_.reserve(entries);
    for (unsigned i = entries; i-- > 0;)
        empty_.push_back(static_cast<std::uint16_t>(i));
}

void LentPages::lend(std::uint16_t bid, Page* page) noexcept {
    slots_[bid].hold(pool_, page, kTag);
    slots_[bid].charge();
    offset_[bid] = 0;
}

std::optional<std::uint16_t> LentPages::refill() noexcept {
    if (empty_.empty()) return std::nullopt;
    Page* page = pool_.alloc(pool_.order(), Depth::kNormal);
    if (!page) page = pool_.alloc(pool_.order(), Depth::kReserve);
    if (!page) return std::nullopt;
    std::uint16_t bid = empty_.back();
    empty_.pop_back();
    lend(bid, page);
    stats_.refills.add();
    return bid;
}

std::byte* LentPages::take(std::uint16_t bid, std::uint32_t len) noexcept {
    FP_CHECK(bid < slots_.size() && slots_[bid].page, "fragment reported in empty slot %u", bid);
    BiasedPage& s = slots_[bid];
    FP_CHECK(offset_[bid] + len <= s.size, "slot %u overrun: %u + %u bytes of %u", bid,
             offset_[bid], len, s.size);
    std::byte* frag = s.carve(offset_[bid], len);
    offset_[bid] += len;
    return frag;
}

bool LentPages::eject(std::uint16_t bid) noexcept {
    const bool reserve = slots_[bid].reserve;
    if (Page* page = slots_[bid].reconcile()) {
        if (!reserve) {  // every fragment was already freed: charged again in place
            lend(bid, page);
            stats_.reuses.add();
            return true;
        }
        page_release(pool_, *page);  // a reserve page goes back at once
    }
    empty_.push_back(bid);
    return refill().has_value();
}

// Lent pages are few (memory.recv_pages); the tag keeps the scan off the common path of pages
// that have left the slots.
BiasedPage* LentPages::slot_of(const Page* page) noexcept {
    if (!page || page->held != kTag) return nullptr;
    for (BiasedPage& s : slots_)
        if (s.page == page) return &s;
    return nullptr;
}

void LentPages::free(std::byte* frag) noexcept {
    BiasedPage* s = slot_of(pool_.page_of(frag));
    if (!s) return frag_free(pool_, frag);
    poison(frag, frag_debug::untrack(frag));
    s->give_back();
}

void LentPages::free_run(std::byte* any_frag, std::uint32_t count) noexcept {
    Page* page = pool_.page_of(any_frag);
    if (BiasedPage* s = slot_of(page))
        s->give_back(count);
    else
        fp::drain(pool_, *page, count);
}

void LentPages::drain() noexcept {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
        if (!slots_[i].page) continue;
        slots_[i].release(pool_);
        empty_.push_back(static_cast<std::uint16_t>(i));
    }
}

}  // namespace fp
