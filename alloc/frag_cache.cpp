#include "alloc/frag_cache.hpp"

#include "alloc/check.hpp"
#include "alloc/frag.hpp"
#include "alloc/frag_debug.hpp"
#include "alloc/poison.hpp"

namespace fp {
namespace {

constexpr bool is_pow2(std::size_t x) { return x && !(x & (x - 1)); }
constexpr std::uint32_t align_up(std::uint32_t off, std::size_t align) {
    return static_cast<std::uint32_t>((off + align - 1) & ~(align - 1));
}

}  // namespace

void* FragCache::alloc(std::size_t size, std::size_t align) noexcept {
    FP_CHECK(size != 0 && size <= max_alloc(), "frag alloc of %zu bytes: sizes are 1..%zu", size,
             max_alloc());
    FP_CHECK(is_pow2(align) && align <= max_alloc(),
             "frag alloc aligned to %zu: alignment must be a power of two up to %zu", align,
             max_alloc());
    FP_DCHECK(probe_off_ == kNoProbe, "frag alloc between probe() and commit()");
    std::uint32_t off = align_up(offset_, align);
    if (FP_UNLIKELY(!page_ || off + size > size_)) {
        if (!refill(size)) return nullptr;
        off = 0;
    }
    return carve(off, size);
}

std::span<std::byte> FragCache::probe(std::size_t min, std::size_t align) noexcept {
    FP_CHECK(min != 0 && min <= max_alloc(), "frag probe of %zu bytes: sizes are 1..%zu", min,
             max_alloc());
    FP_CHECK(is_pow2(align) && align <= max_alloc(), "frag probe aligned to %zu", align);
    std::uint32_t off = align_up(offset_, align);
    if (FP_UNLIKELY(!page_ || off + min > size_)) {
        if (!refill(min)) return {};
        off = 0;
    }
    probe_off_ = off;
    unpoison(va_ + off, size_ - off);
    return {va_ + off, size_ - off};
}

void* FragCache::commit(std::size_t used) noexcept {
    FP_CHECK(probe_off_ != kNoProbe && used <= size_ - probe_off_,
             "frag commit of %zu bytes without a probe() that large", used);
    std::uint32_t off = probe_off_;
    probe_off_ = kNoProbe;
    void* frag = used ? carve(off, used) : nullptr;
    std::uint32_t tail = off + static_cast<std::uint32_t>(used);
    poison(va_ + tail, size_ - tail);
    return frag;
}

void* FragCache::carve(std::uint32_t off, std::size_t size) noexcept {
    --bias_;  // never reaches zero: a page holds at most size_ fragments, the bias starts at size_+1
    offset_ = off + static_cast<std::uint32_t>(size);
    stats_.fragments.add();
    std::byte* p = va_ + off;
    unpoison(p, size);
    frag_debug::track(p, size);
    return p;
}

// The cached page cannot take the request. Give the bias back; reuse the page in place if that
// freed it, else take a new one. Keeps a cached page that is merely too small when no new page
// can be had.
bool FragCache::refill(std::size_t size) noexcept {
    if (page_ && size <= size_) {
        if (page_ref_sub_and_test(*page_, bias_)) {
            if (!page_->reserve) {
                frag_debug::forget_page(va_, size_);
                charge(page_);
                stats_.reuses.add();
                return true;
            }
            page_release(pool_, *page_);  // pfmemalloc rule: reserve pages go back
        }
        page_ = nullptr;
    }
    Page* fresh = new_page(size);
    if (!fresh) {
        stats_.failures.add();
        return false;
    }
    detach();  // a page too small for this request, if one is still cached
    va_ = pool_.address(fresh);
    charge(fresh);
    stats_.refills.add();
    if (fresh->reserve) stats_.reserve_pages.add();
    return true;
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

// One store, not an atomic add: the page is ours alone (fresh, or its count just reached zero).
void FragCache::charge(Page* page) noexcept {
    page_ = page;
    size_ = static_cast<std::uint32_t>(PagePool::page_bytes(*page));
    bias_ = size_ + 1;
    offset_ = 0;
    page->refs.store(bias_, std::memory_order_relaxed);
    poison(va_, size_);
}

void FragCache::detach() noexcept {
    if (!page_) return;
    if (page_ref_sub_and_test(*page_, bias_)) page_release(pool_, *page_);
    page_ = nullptr;
    probe_off_ = kNoProbe;
}

void FragCache::drain() noexcept {
    if (!page_) return;
    stats_.drains.add();
    detach();
}

void FragCache::free(void* frag) noexcept { frag_free(pool_, frag); }

}  // namespace fp
