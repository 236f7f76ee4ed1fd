#include "alloc/frag_cache.hpp"

#include <utility>

namespace fp {

// All the page's references are back with the cache: the bias filled up through owner frees, or
// the count fell to the bias through frag_free() elsewhere. Either way nobody else holds the page.
bool FragCache::Held::all_back() const noexcept {
    return bias == size + 1 || page->refs.load(std::memory_order_acquire) == bias;
}

std::uint32_t FragCache::bias_of(const Page* page) const noexcept {
    if (page && page == cur_.page) return cur_.bias;
    for (const Held& h : retired_)
        if (page && h.page == page) return h.bias;
    return 0;
}

void* FragCache::alloc_slow(std::size_t size) noexcept {
    if (!refill(size)) return nullptr;
    return carve(0, size);
}

// A fragment of a retired page hands its reference back to that page's bias; when the bias is
// full the page is ready for reuse. Any other fragment takes the atomic path.
void FragCache::free_slow(std::byte* frag) noexcept {
    Page* page = pool_.page_of(frag);
    unsigned i = page && page->held ? page->held - 1u : kRetired;
    if (i >= kRetired || retired_[i].page != page) return frag_free(pool_, frag);
    poison(frag, frag_debug::untrack(frag));
    Held& h = retired_[i];
    if (++h.bias == h.size + 1) ready_ |= 1u << i;
}

std::span<std::byte> FragCache::probe(std::size_t min, std::size_t align) noexcept {
    check_request(min, align, max_alloc());
    std::uint32_t off = align_up(offset_, align);
    if (FP_UNLIKELY(!cur_.page || off + min > cur_.size)) {
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
// first two: reuse it in place if all its references are back (the kernel's path); take a retired
// page whose references all came back through owner frees; evict the ring's oldest page with the
// kernel's single sub_and_test and reuse it if that was its last reference; take a pool page. The
// current page then retires into the ring. When no page can be had the current one stays, even if
// it is too small for this request.
bool FragCache::refill(std::size_t size) noexcept {
    if (cur_.page && size <= cur_.size && cur_.all_back()) {
        if (!cur_.page->reserve) {
            charge(cur_);
            stats_.reuses.add();
            return true;
        }
        reconcile(cur_);  // pfmemalloc rule: a reserve page goes back to the pool
    }
    if (reuse_ready(size)) return true;
    Page* next = evict_oldest(size);
    if (next) {
        stats_.reuses.add();
    } else if (!(next = new_page(size))) {
        stats_.failures.add();
        return false;
    } else {
        stats_.refills.add();
        if (next->reserve) stats_.reserve_pages.add();
    }
    install(next);
    return true;
}

bool FragCache::reuse_ready(std::size_t size) noexcept {
    for (std::uint32_t mask = ready_; mask; mask &= mask - 1) {
        unsigned i = static_cast<unsigned>(__builtin_ctz(mask));
        Held& h = retired_[i];
        if (h.page->reserve) {
            reconcile(h);
            clear_slot(i);
            continue;
        }
        if (size > h.size) continue;
        ready_ &= ~(1u << i);
        h.page->held = 0;
        std::swap(h, cur_);  // the old current page retires into the ready page's slot
        if (h.page) h.page->held = static_cast<std::uint8_t>(i + 1);
        charge(cur_);
        stats_.reuses.add();
        return true;
    }
    return false;
}

// Makes room in the ring for the current page: reconciles the oldest retired page with one atomic
// op. Returns it when that was its last reference and it can serve the request (in-place reuse).
Page* FragCache::evict_oldest(std::size_t size) noexcept {
    Held h = retired_[next_slot_];
    if (!h.page) return nullptr;
    stats_.evictions.add();
    clear_slot(next_slot_);
    Page* page = h.page;
    if (!page_ref_sub_and_test(*page, h.bias)) return nullptr;
    if (!page->reserve && PagePool::page_bytes(*page) >= size) return page;
    page_release(pool_, *page);
    return nullptr;
}

// Retires the current page into the ring's oldest slot (emptied by evict_oldest) and makes `page`
// current.
void FragCache::install(Page* page) noexcept {
    if (cur_.page) {
        Held& slot = retired_[next_slot_];
        slot = std::exchange(cur_, Held{});
        slot.page->held = static_cast<std::uint8_t>(next_slot_ + 1);
        next_slot_ = (next_slot_ + 1) % kRetired;
    }
    cur_ = {page, pool_.address(page), static_cast<std::uint32_t>(PagePool::page_bytes(*page)), 0};
    charge(cur_);
}

void FragCache::clear_slot(unsigned i) noexcept {
    if (retired_[i].page) retired_[i].page->held = 0;
    retired_[i] = Held{};
    ready_ &= ~(1u << i);
}

// The kernel's refill order: the high order, then order 0; reserve pages only when the normal zone
// has neither. Order 0 only when the request fits a base page.
Page* FragCache::new_page(std::size_t size) noexcept {
    const bool small_ok = pool_.order() != 0 && size <= PagePool::kBasePage;
    for (bool reserve : {false, true}) {
        if (Page* p = pool_.alloc(pool_.order(), reserve)) return p;
        if (!small_ok) continue;
        if (Page* p = pool_.alloc(0, reserve)) {
            stats_.fallbacks.add();
            return p;
        }
    }
    return nullptr;
}

// One store, not an atomic add: the page is ours alone (fresh, or all its references are back).
void FragCache::charge(Held& h) noexcept {
    frag_debug::forget_page(h.va, h.size);
    h.bias = h.size + 1;
    h.page->refs.store(h.bias, std::memory_order_relaxed);
    offset_ = 0;
    probe_off_ = kNoProbe;
    poison(h.va, h.size);
}

// Gives the bias back in one atomic op; the page goes to the pool if that was the last reference.
void FragCache::reconcile(Held& h) noexcept {
    h.page->held = 0;
    if (page_ref_sub_and_test(*h.page, h.bias)) page_release(pool_, *h.page);
    h = Held{};
}

void FragCache::drain() noexcept {
    bool held = cur_.page != nullptr;
    if (cur_.page) reconcile(cur_);
    for (unsigned i = 0; i < kRetired; ++i) {
        held |= retired_[i].page != nullptr;
        if (retired_[i].page) reconcile(retired_[i]);
        clear_slot(i);
    }
    probe_off_ = kNoProbe;
    if (held) stats_.drains.add();
}

}  // namespace fp
