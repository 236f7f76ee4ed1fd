#include "alloc/frag_cache.hpp"

#include <utility>

namespace fp {

FragCache::FragCache(PagePool& pool, Depth depth)
    : pool_(pool),
      depth_(depth),
      base_(pool.arena().base()),
      arena_bytes_(pool.arena().size()),
      block_shift_(PagePool::kBaseShift + pool.order()),
      slot_of_(std::make_unique<std::uint8_t[]>(pool.arena().size() >> block_shift_)) {}

std::uint32_t FragCache::bias_of(const Page* page) const noexcept {
    if (cur_.va && page == cur_.page) return cur_.bias;
    for (const Held& h : slots_)
        if (page && h.page == page) return h.bias;
    return 0;
}

void* FragCache::alloc_slow(std::size_t size) noexcept {
    if (!refill(size)) return nullptr;
    return carve(0, size);
}

// A fragment the block table did not place (of an order-0 page, or of no page of this cache): a
// retired page's still goes back to its bias, found through the Page; any other fragment takes
// the atomic path.
void FragCache::free_slow(std::byte* frag) noexcept {
    const unsigned i = slot_by_page(frag);  // (free() looked at the block table already)
    if (i >= kSlots) return frag_free(pool_, frag);
    poison(frag, frag_debug::untrack(frag));
    Held& h = slots_[i];
    h.give_back();
    if (h.full()) ready_ |= 1u << i;
}

// The ring slot holding p's page: the block table for whole-block pages, the Page's tag for
// order-0 ones; kSlots when the cache does not hold it (the current page is cur_, not looked at).
unsigned FragCache::slot_holding(const std::byte* p) noexcept {
    const auto off = static_cast<std::size_t>(p - base_);
    if (off < arena_bytes_) {
        const unsigned i = slot_of_[off >> block_shift_] - 1u;
        if (i < kSlots && slots_[i].contains(p)) return i;
    }
    return slot_by_page(p);
}

unsigned FragCache::slot_by_page(const std::byte* p) noexcept {
    Page* page = pool_.page_of(p);
    const unsigned i = page && page->held ? page->held - 1u : kSlots;
    return i < kSlots && slots_[i].page == page ? i : kSlots;
}

std::byte* FragCache::split(std::byte* frag, std::uint32_t len, std::uint32_t at) noexcept {
    stats_.fragments.add();
    if (cur_.va && cur_.contains(frag)) return cur_.split(frag, len, at);
    if (const unsigned i = slot_holding(frag); i < kSlots) return slots_[i].split(frag, len, at);
    return BiasedPage::split_unheld(*pool_.page_of(frag), frag, len, at);
}

std::span<std::byte> FragCache::probe(std::size_t min, std::size_t align) noexcept {
    check_request(min, align, max_alloc());
    std::uint32_t off = align_up(offset_, align);
    if (FP_UNLIKELY(off + min > cur_.size)) {
        if (!refill(min)) return {};
        off = 0;
    }
    probe_off_ = off;
    unpoison(cur_.va + off, cur_.size - off);
    return {cur_.va + off, cur_.size - off};
}

void* FragCache::commit(std::size_t used) noexcept {
    FP_CHECK(probe_off_ != kNoProbe && used <= cur_.size - probe_off_,
             "frag commit of %zu bytes without a probe() that large", used);
    std::uint32_t off = probe_off_;
    probe_off_ = kNoProbe;
    void* frag = used ? carve(off, used) : nullptr;
    std::uint32_t tail = off + static_cast<std::uint32_t>(used);
    poison(cur_.va + tail, cur_.size - tail);
    return frag;
}

// The current page cannot take the request. In order of preference, with no atomic RMW for the
// first three: reuse it in place if all its references came back through owner frees; take a
// retired page whose references all came back that way (neither touches a Page); reuse the current
// page if its references came back through frag_free() (the kernel's path: one load of its count);
// evict the ring's oldest page with the kernel's single sub_and_test and reuse it if that was its
// last reference; take a pool page. The current page then retires into the ring. When no page can
// be had the current one stays, even if it is too small for this request.
bool FragCache::refill(std::size_t size) noexcept {
    leave_current();
    Held& c = slots_[cur_slot_];
    const bool fits = c.page && size <= c.size;
    if (fits && c.full() && !c.reserve) {
        charge(cur_slot_, true);
        stats_.reuses.add();
        return true;
    }
    if (reuse_ready(size)) return true;
    if (fits && c.all_back()) {
        if (!c.reserve) {
            charge(cur_slot_, c.full());
            stats_.reuses.add();
            return true;
        }
        reconcile(cur_slot_);  // pfmemalloc rule: a reserve page goes back to the pool
    }
    unsigned slot = next_ == cur_slot_ ? (next_ + 1) % kSlots : next_;
    Page* page = evict(slot, size);
    if (page) {
        stats_.reuses.add();
    } else if ((page = new_page(size))) {
        stats_.refills.add();
        if (page->reserve) stats_.reserve_pages.add();
    } else {
        stats_.failures.add();
        if (slots_[cur_slot_].page) make_current(cur_slot_);  // the current page stays current
        return false;
    }
    hold(slot, page);
    next_ = (slot + 1) % kSlots;
    charge(slot);  // the old current page is retired where it is
    return true;
}

bool FragCache::reuse_ready(std::size_t size) noexcept {
    for (std::uint32_t mask = ready_; mask; mask &= mask - 1) {
        unsigned i = static_cast<unsigned>(__builtin_ctz(mask));
        if (slots_[i].reserve) {
            reconcile(i);
            continue;
        }
        if (size > slots_[i].size) continue;
        ready_ &= ~(1u << i);
        charge(i, true);  // ready: every reference came back through owner frees
        stats_.reuses.add();
        return true;
    }
    return false;
}

// Empties a ring slot: one atomic sub_and_test gives the retired page's bias back. Returns the
// page when that was its last reference and it can serve the request (in-place reuse).
Page* FragCache::evict(unsigned slot, std::size_t size) noexcept {
    if (!slots_[slot].page) return nullptr;
    stats_.evictions.add();
    const bool reusable = !slots_[slot].reserve && slots_[slot].size >= size;
    Page* page = unhold(slot);
    if (!page || reusable) return page;
    page_release(pool_, *page);
    return nullptr;
}

// The kernel's refill order: the high order, then order 0; reserve pages only when the normal zone
// has neither (and down to the cache's depth). Order 0 only when the request fits a base page.
Page* FragCache::new_page(std::size_t size) noexcept {
    const bool small_ok = pool_.order() != 0 && size <= PagePool::kBasePage;
    for (Depth depth : {Depth::kNormal, depth_}) {
        if (Page* p = pool_.alloc(pool_.order(), depth)) return p;
        if (!small_ok) continue;
        if (Page* p = pool_.alloc(0, depth)) {
            stats_.fallbacks.add();
            return p;
        }
    }
    return nullptr;
}

// The slot's page becomes current, charged (BiasedPage::charge; refs_intact: every reference
// came back through owner frees, so the Page is not touched).
void FragCache::charge(unsigned slot, bool refs_intact) noexcept {
    slots_[slot].charge(refs_intact);
    make_current(slot);
    offset_ = 0;
}

void FragCache::make_current(unsigned slot) noexcept {
    cur_slot_ = slot;
    copy_current(slots_[slot]);
    probe_off_ = kNoProbe;
}

// Writes the current page's bias back to its slot; no page is current until the next charge.
void FragCache::leave_current() noexcept {
    if (cur_.va) slots_[cur_slot_].bias = cur_.bias;
    cur_ = Held{};
}

// Gives the bias back in one atomic op; the page goes to the pool if that was the last reference.
void FragCache::reconcile(unsigned slot) noexcept {
    if (Page* page = unhold(slot)) page_release(pool_, *page);
}

void FragCache::hold(unsigned slot, Page* page) noexcept {
    Held& h = slots_[slot];
    h.hold(pool_, page, static_cast<std::uint8_t>(slot + 1));
    if (h.size == max_alloc())
        slot_of_[static_cast<std::size_t>(h.va - base_) >> block_shift_] =
            static_cast<std::uint8_t>(slot + 1);
}

// Empties the slot, giving its bias back (BiasedPage::reconcile): the page when that was its
// last reference, else null.
Page* FragCache::unhold(unsigned slot) noexcept {
    Held& h = slots_[slot];
    std::uint8_t& s = slot_of_[static_cast<std::size_t>(h.va - base_) >> block_shift_];
    if (s == slot + 1) s = 0;
    ready_ &= ~(1u << slot);
    return h.reconcile();
}

void FragCache::trim() noexcept {
    for (unsigned i = 0; i < kSlots; ++i)
        if (slots_[i].page && !(i == cur_slot_ && cur_.va) && slots_[i].all_back()) reconcile(i);
}

void FragCache::drain() noexcept {
    leave_current();
    bool held = false;
    for (unsigned i = 0; i < kSlots; ++i) {
        if (!slots_[i].page) continue;
        held = true;
        reconcile(i);
    }
    probe_off_ = kNoProbe;
    if (held) stats_.drains.add();
}

}  // namespace fp
