#pragma once
// FragCache: the kernel's page_frag_cache in userspace (mm/page_frag_cache.c).
//
// A cache holds one page, an offset counting up, and a *local, non-atomic* bias. On refill the
// page's atomic count is charged once with `bias = page bytes + 1` (more than the fragments the page
// can ever hold). Each fragment only decrements the local bias: no atomic op per allocation. Each
// fragment free is one atomic decrement of the page count, so at any quiet moment
//     page.refs == live fragments of the page + bias still held by the cache.
// When a request does not fit, the cache gives its bias back in one atomic sub_and_test. Zero
// means every fragment is already gone and the page is reused in place, with no trip to the pool
// (unless it came from the reserve: then it goes back). Otherwise the page now belongs to its
// fragments alone, the last free returns it to the pool, and the cache refills.
//
// Unlike the kernel, a request larger than a base page is served by refilling whenever the
// configured page could hold it: fragproxy's fragments are routinely whole 64 KiB receives. A request
// that even an empty page could not hold (the cache fell back to order 0) fails without dropping
// the cached page, as in the kernel.
//
// probe(min)/commit(used) is the prepare/probe/commit API of the newer patch sets: an io_uring
// receive learns its size only at completion, so the caller borrows the free tail and charges only
// what arrived.
//
// Not thread-safe: one owner (a worker's completion handler, the "softirq context"). Fragments may
// be freed on any thread (frag.hpp). SharedFragCache is the locked variant.
#include <cstddef>
#include <cstdint>
#include <span>

#include "alloc/counter.hpp"
#include "alloc/page_pool.hpp"

namespace fp {

struct FragStats {
    Counter refills;        // pages taken from the pool
    Counter reuses;         // pages reused in place after every fragment came back
    Counter fragments;      // fragments carved
    Counter drains;         // drain() of the whole cache
    Counter fallbacks;      // refills that had to take an order-0 page
    Counter reserve_pages;  // refills served from the reserve (past the soft limit)
    Counter failures;       // requests that got no memory
};

class FragCache {
public:
    explicit FragCache(PagePool& pool) noexcept : pool_(pool) {}
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
    // Gives the cache's bias back (page_frag_cache_drain): the cache no longer holds a page.
    void drain() noexcept;
    // frag_free() for a fragment of this cache's pool, without the registry lookup.
    void free(void* frag) noexcept;

    std::size_t max_alloc() const noexcept { return pool_.block_bytes(); }
    const FragStats& stats() const noexcept { return stats_; }
    PagePool& pool() noexcept { return pool_; }
    const Page* page() const noexcept { return page_; }
    std::uint32_t bias() const noexcept { return page_ ? bias_ : 0; }

private:
    static constexpr std::uint32_t kNoProbe = UINT32_MAX;

    bool refill(std::size_t size) noexcept;
    Page* new_page(std::size_t size) noexcept;
    void charge(Page* page) noexcept;
    void detach() noexcept;
    void* carve(std::uint32_t off, std::size_t size) noexcept;

    PagePool& pool_;
    Page* page_ = nullptr;
    std::byte* va_ = nullptr;
    std::uint32_t size_ = 0;    // bytes in the cached page
    std::uint32_t offset_ = 0;  // first free byte
    std::uint32_t bias_ = 0;    // references held by the cache, not yet given to fragments
    std::uint32_t probe_off_ = kNoProbe;
    FragStats stats_;
};

}  // namespace fp
