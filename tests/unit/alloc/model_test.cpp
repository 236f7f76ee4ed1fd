// Randomized model test: thousands of random alloc / free (owner or atomic) / probe+commit / drain
// steps against a reference model. After every step:
//   - a fragment that fits the current page is exactly where the model says; one that does not
//     starts a page (reused or fresh) that no live fragment is on,
//   - the cache rewinds exactly when the model says every reference came back through owner frees,
//   - for every page, refs == live fragments + bias held by the cache (current or retired),
//   - the pool's pages in use are exactly the pages with live fragments or held by the cache,
//   - every live fragment still holds the byte pattern written into it (no overlap, no reuse).
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "alloc/frag.hpp"
#include "alloc/frag_cache.hpp"

using namespace fp;

namespace {

struct Frag {
    std::size_t size;
    Page* page;
    unsigned char fill;
};

struct Model {
    PagePool& pool;
    FragCache& cache;
    std::mt19937_64 rng;
    std::map<std::byte*, Frag> live;
    std::byte* va = nullptr;  // the model's idea of the cached page
    std::size_t offset = 0;
    std::size_t expect_rewinds = 0;
    bool atomic_hit = false;  // an atomic decrement reached the cached page since it was charged

    std::size_t live_in(const Page* p) const {
        std::size_t n = 0;
        for (auto& [ptr, f] : live)
            n += f.page == p;
        return n;
    }

    // Where the next fragment of `size` aligned to `align` must start; null = a fresh page.
    std::byte* predict(std::size_t size, std::size_t align) {
        if (!va) {
            atomic_hit = false;
            return nullptr;
        }
        std::size_t off = (offset + align - 1) & ~(align - 1);
        if (off + size <= pool.block_bytes()) return va + off;
        atomic_hit = false;  // the page changes or is charged again
        return nullptr;
    }

    void born(std::byte* p, std::size_t size, std::byte* predicted) {
        REQUIRE(p);
        if (predicted) {
            CHECK(p == predicted);
        } else {
            CHECK(p == pool.address(pool.page_of(p)));  // the start of a page
            CHECK(live_in(pool.page_of(p)) == 0);       // that nothing else lives on
        }
        auto fill = static_cast<unsigned char>(rng());
        std::memset(p, fill, size);
        live[p] = {size, pool.page_of(p), fill};
        va = pool.address(pool.page_of(p));
        offset = static_cast<std::size_t>(p - va) + size;
    }

    std::size_t pick_size() {
        switch (rng() % 4) {
            case 0:
                return 1 + rng() % 64;
            case 1:
                return 1 + rng() % 1500;
            case 2:
                return 1 + rng() % 9000;
            default:
                return 1 + rng() % pool.block_bytes();
        }
    }
    std::size_t pick_align() { return std::size_t{1} << (rng() % 8 == 0 ? rng() % 13 : 0); }

    void step_alloc() {
        std::size_t size = pick_size(), align = pick_align();
        std::byte* predicted = predict(size, align);
        born(static_cast<std::byte*>(cache.alloc(size, align)), size, predicted);
    }

    void step_probe_commit() {
        std::size_t min = pick_size();
        std::byte* predicted = predict(min, 1);
        auto tail = cache.probe(min);
        REQUIRE(tail.size() >= min);
        if (predicted) CHECK(tail.data() == predicted);
        std::size_t used = rng() % 5 == 0 ? 0 : 1 + rng() % tail.size();
        auto* p = static_cast<std::byte*>(cache.commit(used));
        if (used == 0) {
            CHECK(p == nullptr);
            va = pool.address(pool.page_of(tail.data()));  // a refill by probe still counts
            offset = static_cast<std::size_t>(tail.data() - va);
            return;
        }
        if (!predicted) CHECK(tail.data() == pool.address(pool.page_of(tail.data())));
        born(p, used, tail.data());
    }

    bool cached(const Page* p) const { return va && p == pool.page_of(va); }

    // Frees through the owning cache (no atomic op on the cached page, rewinds when the page is
    // empty again) or through frag_free (always the atomic decrement), at random.
    void step_free() {
        auto it = std::next(live.begin(), static_cast<long>(rng() % live.size()));
        auto* bytes = reinterpret_cast<unsigned char*>(it->first);
        for (std::size_t i = 0; i < it->second.size; i += 97)
            REQUIRE(bytes[i] == it->second.fill);
        REQUIRE(bytes[it->second.size - 1] == it->second.fill);
        Page* page = it->second.page;
        bool via_cache = rng() % 2;
        if (via_cache)
            cache.free(it->first);
        else
            frag_free(it->first);
        live.erase(it);
        if (!cached(page)) return;
        if (!via_cache)
            atomic_hit = true;
        else if (!atomic_hit && live_in(page) == 0)
            offset = 0, ++expect_rewinds;
    }

    // A closing connection: every live fragment of one page, released with one drain call.
    void step_drain_page() {
        Page* page = std::next(live.begin(), static_cast<long>(rng() % live.size()))->second.page;
        std::uint32_t n = 0;
        for (auto it = live.begin(); it != live.end();) {
            if (it->second.page == page) {
                it = live.erase(it);
                ++n;
            } else {
                ++it;
            }
        }
        if (cached(page)) atomic_hit = true;
        drain(pool, *page, n);
    }

    void check_invariant() {
        std::set<const Page*> pages;
        for (auto& [p, f] : live)
            pages.insert(f.page);
        cache.for_each_held([&](const Page& page, std::uint32_t) { pages.insert(&page); });
        for (const Page* page : pages)
            REQUIRE(page->refs.load() == live_in(page) + cache.bias_of(page));
        REQUIRE(pool.pages_in_use() == pages.size());
        REQUIRE(cache.stats().rewinds.get() == expect_rewinds);
    }
};

}  // namespace

TEST_CASE("random alloc/free/probe/commit/drain steps keep refs == live + bias") {
    constexpr std::size_t kMiB = std::size_t{1} << 20;
    for (std::uint64_t seed : {1, 2, 3, 4}) {
        CAPTURE(seed);
        PagePool pool(PoolConfig{16 * kMiB, 4, 0, false});
        FragCache cache(pool);
        Model m{pool, cache, std::mt19937_64(seed), {}};
        for (int step = 0; step < 5000; ++step) {
            unsigned op = m.rng() % 100;
            if (m.live.size() > 150 || (op < 40 && !m.live.empty()))
                m.step_free();
            else if (op < 45 && !m.live.empty())
                m.step_drain_page();
            else if (op < 47)
                m.cache.drain(), m.va = nullptr;
            else if (op < 70)
                m.step_probe_commit();
            else
                m.step_alloc();
            m.check_invariant();
        }
        CHECK(cache.stats().reuses.get() > 0);
        CHECK(cache.stats().rewinds.get() > 0);
        CHECK(cache.stats().failures.get() == 0);
        CHECK(cache.stats().reserve_pages.get() == 0);
        while (!m.live.empty())
            m.step_free();
        cache.drain();
        CHECK(pool.pages_in_use() == 0);
    }
}
