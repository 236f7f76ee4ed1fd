#pragma once
// FragCache: the kernel's page_frag_cache in userspace (mm/page_frag_cache.c).
//
// A cache holds one page, an offset counting up, and a *local, non-atomic* bias. On refill the
// page's atomic count is charged once with `bias = page bytes + 1` (more than the fragments the
// page can ever hold). Each fragment only decrements the local bias: no atomic op per allocation.
// Each free through frag_free() is one atomic decrement of the page count, so at any quiet moment
//     page.refs == live fragments of the page + bias still held by the cache.
// When all the references of a page are back (refs == bias) it is reused in place, with no trip
// to the pool (unless it came from the reserve: then it goes back, the pfmemalloc rule).
//
// Two steps beyond the kernel, both because fragproxy's owner knows its cache when it frees (the
// kernel's page_frag_free() does not), and both keep the invariant above:
//  - Owner frees move the bias back. free() of a fragment of a page the cache holds increments
//    that page's local bias instead of decrementing the atomic count. When the current page's bias
//    is full again (size + 1), every fragment came back this way: the page is rewound to offset 0
//    while still hot in the CPU cache, with no atomic op at all.
//  - Retired pages. When the current page is full the kernel gives its bias back at once (one
//    atomic sub_and_test). Here the page stays in a ring of 32 slots with its bias still held, so
//    the owner's frees of its fragments stay local too; a retired page whose references are all
//    back becomes the next current page (no pool trip, no atomic RMW). Only a page pushed out of
//    the ring is reconciled with the kernel's single sub_and_test. In fragproxy a worker receives
//    into fragments and frees them when their sends complete, on the same thread, a few pages
//    later: the common case costs no atomic op per fragment on either side.
//
// A request larger than a base page is served by refilling whenever the configured page could hold
// it (fragproxy's fragments are routinely whole 64 KiB receives). A request that even an empty page
// could not hold (the cache fell back to order 0) fails and keeps the cached page, as in the
// kernel.
//
// probe(min)/commit(used) is the prepare/probe/commit API of the newer patch sets: an io_uring
// receive learns its size only at completion, so the caller borrows the free tail and charges only
// what arrived.
//
// Not thread-safe: one owner (a worker's completion handler, the "softirq context"). Fragments may
// be freed on any thread with frag_free() (frag.hpp). SharedFragCache is the locked variant.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <type_traits>

#include "alloc/biased_page.hpp"
#include "alloc/check.hpp"
#include "alloc/counter.hpp"
#include "alloc/frag.hpp"
#include "alloc/frag_debug.hpp"
#include "alloc/page_pool.hpp"
#include "alloc/poison.hpp"

namespace fp {

struct FragStats {
    Counter refills;        // pages taken from the pool
    Counter reuses;         // pages reused in place after every reference came back
    Counter rewinds;        // current pages rewound by owner frees alone
    Counter fragments;      // fragments carved
    Counter drains;         // drain() of the whole cache
    Counter evictions;      // retired pages reconciled with one atomic op to make room
    Counter fallbacks;      // refills that had to take an order-0 page
    Counter reserve_pages;  // refills served from the reserve (past the soft limit)
    Counter failures;       // requests that got no memory
};

class FragCache {
    static_assert(std::is_trivially_copyable_v<BiasedPage> && sizeof(BiasedPage) == 32);

  public:
    static constexpr unsigned kSlots = 32;  // current + retired pages: 2 MiB of 64 KiB pages

    // `depth`: how deep into the pool's reserve refills may dig (Depth::kMemalloc only for a
    // cache whose fragments give memory back, such as compact copies of stuck queues).
    explicit FragCache(PagePool& pool, Depth depth = Depth::kReserve);
    ~FragCache() { drain(); }
    FragCache(const FragCache&) = delete;
    FragCache& operator=(const FragCache&) = delete;

    // A fragment of `size` bytes (1..max_alloc()) aligned to `align` (a power of two), or null when
    // the pool is exhausted. Misuse (bad size or alignment) is a checked error.
    void* alloc(std::size_t size, std::size_t align = 1) noexcept;
    // The current page's free tail, at least `min` bytes, refilling if needed; nothing is charged.
    // Empty when no memory. Only commit() may follow before the next alloc/probe.
    std::span<std::byte> probe(std::size_t min, std::size_t align = 1) noexcept;
    // Turns the first `used` bytes of the probed tail into a fragment; null for used == 0.
    void* commit(std::size_t used) noexcept;
    // Frees a fragment of this cache's pool. Owner thread only: no atomic op when the cache holds
    // its page, else frag_free() without the registry lookup.
    void free(void* frag) noexcept;
    // The fragment [frag, frag + len) becomes two, [frag, frag + at) and the one returned,
    // [frag + at, frag + len): one more reference on their page (the kernel's get_page() for a
    // split fragment). Taken from the bias when the cache holds the page (no atomic op), else one
    // atomic increment, safe as the fragment itself holds a reference. Owner thread only.
    std::byte* split(std::byte* frag, std::uint32_t len, std::uint32_t at) noexcept;
    // Gives every bias back (page_frag_cache_drain, for the current and the retired pages).
    void drain() noexcept;
    // Gives back the retired pages nothing lives on any more (every reference back): memory the
    // cache keeps only for reuse. The current page and pages with live fragments stay.
    void trim() noexcept;

    std::size_t max_alloc() const noexcept { return std::size_t{1} << block_shift_; }
    const FragStats& stats() const noexcept { return stats_; }
    PagePool& pool() noexcept { return pool_; }
    const Page* page() const noexcept { return cur_.page; }
    std::uint32_t bias() const noexcept { return cur_.bias; }
    // The references the cache holds on `page` (current or retired), 0 if it holds none.
    std::uint32_t bias_of(const Page* page) const noexcept;
    // Calls fn(const Page&, bias) for every page the cache holds (introspection, metrics, tests).
    template <class Fn>
    void for_each_held(Fn&& fn) const {
        for (unsigned i = 0; i < kSlots; ++i)
            if (slots_[i].page)
                fn(*slots_[i].page, i == cur_slot_ && cur_.va ? cur_.bias : slots_[i].bias);
    }

  private:
    using Held = BiasedPage;
    static constexpr std::uint32_t kNoProbe = UINT32_MAX;

    static void check_request(std::size_t size, std::size_t align, std::size_t max) noexcept {
        FP_CHECK(size != 0 && size <= max, "frag alloc of %zu bytes: sizes are 1..%zu", size, max);
        FP_CHECK(align && !(align & (align - 1)) && align <= max,
                 "frag alloc aligned to %zu: alignment must be a power of two up to %zu", align,
                 max);
    }
    static std::uint32_t align_up(std::uint32_t off, std::size_t align) noexcept {
        return static_cast<std::uint32_t>((off + align - 1) & ~(align - 1));
    }
    void* alloc_slow(std::size_t size) noexcept;
    inline bool take_ready(std::size_t size) noexcept;
    void free_slow(std::byte* frag) noexcept;
    unsigned slot_holding(const std::byte* p) noexcept;  // a retired slot, or kSlots
    unsigned slot_by_page(const std::byte* p) noexcept;  // the same from the Page's tag alone
    bool refill(std::size_t size) noexcept;
    bool reuse_ready(std::size_t size) noexcept;
    Page* evict(unsigned slot, std::size_t size) noexcept;
    Page* new_page(std::size_t size) noexcept;
    void charge(unsigned slot, bool refs_intact = false) noexcept;
    void reconcile(unsigned slot) noexcept;
    void make_current(unsigned slot) noexcept;
    void hold(unsigned slot, Page* page) noexcept;
    Page* unhold(unsigned slot) noexcept;
    void leave_current() noexcept;
    inline void* carve(std::uint32_t off, std::size_t size) noexcept;
    // cur_ = h as two aligned 16-byte moves. A plain assignment copies the 25 bytes of members
    // (GCC: a 16-byte move at 0 and an overlapping one at 9), and the loads of va and bias that
    // follow at once each span two stores: store-to-load forwarding fails, a stall per refill
    // (perf annotate; a burst of 32 64 KiB fragments, one refill each, took 2.5x as long).
    void copy_current(const Held& h) noexcept { std::memcpy(&cur_, &h, sizeof cur_); }

    PagePool& pool_;
    Depth depth_;
    // The current page, copied out of its slot for the fast paths (its slot's bias is stale while
    // it is current). No current page: all empty (va null, size 0), so every request takes the
    // slow path.
    alignas(16) Held cur_;
    Held slots_[kSlots];
    unsigned cur_slot_ = 0;     // the current page's slot; the others hold retired pages
    unsigned next_ = 0;         // round-robin cursor: the slot the next new page evicts
    std::uint32_t ready_ = 0;   // bit i: slot i, retired, has every reference back (owner frees)
    std::uint32_t offset_ = 0;  // first free byte of the current page
    std::uint32_t probe_off_ = kNoProbe;
    // Block of the arena -> slot + 1 of the whole-block page the cache holds there: the owner's
    // free of a retired page's fragment finds its slot with one byte load, without touching the
    // Page. Order-0 pages (a split block) are not entered; their frees take page_of().
    std::byte* base_;
    std::size_t arena_bytes_;
    unsigned block_shift_;
    std::unique_ptr<std::uint8_t[]> slot_of_;
    FragStats stats_;
};

inline void* FragCache::alloc(std::size_t size, std::size_t align) noexcept {
    check_request(size, align, max_alloc());
    FP_DCHECK(probe_off_ == kNoProbe, "frag alloc between probe() and commit()");
    std::uint32_t off = align_up(offset_, align);
    if (FP_LIKELY(off + size <= cur_.size)) return carve(off, size);
    if (FP_LIKELY(ready_ != 0) && take_ready(size)) return carve(0, size);
    return alloc_slow(size);
}

// refill()'s most common case, inline: the current page retires with its bias into its slot and a
// retired page whose references all came back through owner frees becomes current. Its count
// still holds its last charge, so no Page is touched and no atomic op is made.
inline bool FragCache::take_ready(std::size_t size) noexcept {
    unsigned i = static_cast<unsigned>(__builtin_ctz(ready_));
    Held& h = slots_[i];
    if (FP_UNLIKELY(h.reserve || size > h.size || !cur_.va)) return false;
    ready_ &= ready_ - 1;
    slots_[cur_slot_].bias = cur_.bias;
    cur_slot_ = i;
    copy_current(h);
    cur_.charge(true);  // every reference came back through owner frees: the count is intact
    // (charged on the copy: the slot's bias is stale while its page is current, and a store to
    // it just before the copy's load would not forward either)
    offset_ = 0;
    stats_.reuses.add();
    return true;
}

inline void* FragCache::carve(std::uint32_t off, std::size_t size) noexcept {
    offset_ = off + static_cast<std::uint32_t>(size);
    stats_.fragments.add();
    return cur_.carve(off, size);
}

inline void FragCache::free(void* frag) noexcept {
    auto* p = static_cast<std::byte*>(frag);
    if (FP_UNLIKELY(static_cast<std::size_t>(p - cur_.va) >= cur_.size)) {
        // A retired page's fragment, found through the block table: its reference goes back to
        // that page's bias, and a full bias makes the page ready for reuse.
        auto off = static_cast<std::size_t>(p - base_);
        unsigned i = off < arena_bytes_ ? slot_of_[off >> block_shift_] - 1u : kSlots;
        if (FP_UNLIKELY(i >= kSlots)) return free_slow(p);
        Held& h = slots_[i];
        FP_DCHECK(h.contains(p), "block table: slot %u does not hold %p", i, frag);
        poison(p, frag_debug::untrack(p));
        h.give_back();
        if (h.full()) ready_ |= 1u << i;
        return;
    }
    poison(p, frag_debug::untrack(p));
    cur_.give_back();
    if (cur_.full() && probe_off_ == kNoProbe) {
        offset_ = 0;  // every reference is back with the cache: rewind
        stats_.rewinds.add();
    }
}

}  // namespace fp
