#include <doctest/doctest.h>

#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

#include "alloc/page_pool.hpp"

using fp::Depth;
using fp::Page;
using fp::PagePool;
using fp::PoolConfig;

namespace {
constexpr std::size_t kMiB = std::size_t{1} << 20;
PoolConfig small_pool(unsigned order = 4) {
    return {2 * kMiB, order, 4 * 64 * 1024, false};
}
}  // namespace

TEST_CASE("arena is 2 MiB aligned and carved into blocks of the configured order") {
    PagePool pool(small_pool());
    auto base = reinterpret_cast<std::uintptr_t>(pool.arena().base());
    CHECK(base % (2 * kMiB) == 0);
    CHECK(pool.block_bytes() == 64 * 1024);
    CHECK(pool.blocks() == 32);
    CHECK(pool.reserve_blocks() == 4);
    CHECK(pool.pages_in_use() == 0);
}

TEST_CASE("bad pool configs are rejected with a reason") {
    CHECK_THROWS_WITH_AS(PagePool(PoolConfig{3 * kMiB, 4, 0, false}),
                         doctest::Contains("multiple of 2 MiB"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(PagePool(PoolConfig{2 * kMiB, 10, 0, false}),
                         doctest::Contains("page_order 10"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(PagePool(PoolConfig{2 * kMiB, 9, 2 * kMiB, false}),
                         doctest::Contains("leaves no normal pages"), std::invalid_argument);
}

TEST_CASE("page_of finds the head page from any address inside it") {
    PagePool pool(small_pool());
    Page* p = pool.alloc(4, Depth::kNormal);
    REQUIRE(p);
    std::byte* va = pool.address(p);
    CHECK(pool.page_of(va) == p);
    CHECK(pool.page_of(va + 4096 * 3 + 17) == p);
    CHECK(pool.page_of(va + pool.block_bytes() - 1) == p);
    CHECK(pool.page_of(va + pool.block_bytes()) != p);
    int outside = 0;
    CHECK(pool.page_of(&outside) == nullptr);
    CHECK(PagePool::owner_of(va + 100) == &pool);
    CHECK(PagePool::owner_of(&outside) == nullptr);
    pool.release(p);
    CHECK(pool.pages_in_use() == 0);
}

TEST_CASE("the normal zone runs out, then the reserve, its last quarter kept for kMemalloc") {
    PagePool pool(small_pool());
    std::vector<Page*> pages;
    while (Page* p = pool.alloc(4, Depth::kNormal)) {
        CHECK_FALSE(p->reserve);
        pages.push_back(p);
    }
    CHECK(pages.size() == 28);
    CHECK(pool.memalloc_blocks() == 1);
    while (Page* p = pool.alloc(4, Depth::kReserve)) {
        CHECK(p->reserve);
        pages.push_back(p);
    }
    CHECK(pages.size() == 31);  // receives stop one block short of the end...
    CHECK(pool.alloc(0, Depth::kReserve) == nullptr);
    Page* last = pool.alloc(4, Depth::kMemalloc);  // ... which the reclaimer may take
    REQUIRE(last);
    CHECK(last->reserve);
    pages.push_back(last);
    CHECK(pool.alloc(4, Depth::kMemalloc) == nullptr);
    CHECK(pages.size() == 32);
    CHECK(pool.pages_in_use() == 32);
    for (Page* p : pages)
        pool.release(p);
    CHECK(pool.pages_in_use() == 0);
}

TEST_CASE("order-0 requests split a block, and the block merges back when all are free") {
    PagePool pool(small_pool());
    std::vector<Page*> small;
    for (int i = 0; i < 16; ++i) {
        Page* p = pool.alloc(0, Depth::kNormal);
        REQUIRE(p);
        CHECK(p->order == 0);
        CHECK(PagePool::page_bytes(*p) == 4096);
        CHECK(pool.page_of(pool.address(p) + 4095) == p);
        small.push_back(p);
    }
    // 16 base pages = one split block: 27 whole blocks remain in the normal zone.
    std::vector<Page*> big;
    while (Page* p = pool.alloc(4, Depth::kNormal))
        big.push_back(p);
    CHECK(big.size() == 27);
    CHECK(pool.alloc(0, Depth::kNormal) == nullptr);  // no whole block left to split
    pool.release(small.back());
    small.pop_back();
    Page* last = pool.alloc(0, Depth::kNormal);  // the freed base page is handed out again
    REQUIRE(last);
    CHECK(pool.page_of(pool.address(last)) == last);
    for (Page* p : big)
        pool.release(p);
    for (Page* p : small)
        pool.release(p);
    // The split block merges back only when its last base page returns.
    CHECK(pool.pages_in_use() == 1);
    pool.release(last);
    CHECK(pool.pages_in_use() == 0);
    std::size_t whole = 0;
    while (pool.alloc(4, Depth::kNormal))
        ++whole;
    CHECK(whole == 28);
}

TEST_CASE("fault injection makes the next allocations fail") {
    PagePool pool(small_pool());
    pool.inject_failures(2);
    CHECK(pool.alloc(4, Depth::kNormal) == nullptr);
    CHECK(pool.alloc(0, Depth::kNormal) == nullptr);
    Page* p = pool.alloc(4, Depth::kNormal);
    CHECK(p != nullptr);
    pool.release(p);
}

TEST_CASE("pages released on another thread wait on the remote list until reclaimed") {
    PagePool pool(small_pool());
    std::vector<Page*> pages;
    for (int i = 0; i < 8; ++i)
        pages.push_back(pool.alloc(4, Depth::kNormal));
    std::thread([&] {
        for (Page* p : pages)
            pool.release(p);
    }).join();
    CHECK(pool.reclaim());
    CHECK_FALSE(pool.reclaim());
    CHECK(pool.pages_in_use() == 0);
}

TEST_CASE("an order-0 pool never splits") {
    PagePool pool(PoolConfig{2 * kMiB, 0, 4096, false});
    CHECK(pool.blocks() == 512);
    Page* p = pool.alloc(0, Depth::kNormal);
    REQUIRE(p);
    CHECK(PagePool::page_bytes(*p) == 4096);
    pool.release(p);
    CHECK(pool.pages_in_use() == 0);
}
