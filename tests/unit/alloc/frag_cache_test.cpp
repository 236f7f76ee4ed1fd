#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "alloc/frag.hpp"
#include "alloc/frag_cache.hpp"

using namespace fp;

namespace {
constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr std::size_t kPage = 64 * 1024;
PoolConfig small_pool() {
    return {2 * kMiB, 4, 4 * kPage, false};
}
std::uint32_t refs(const Page* p) {
    return p->refs.load();
}
// Leaves only order-0 pages free: one block is split (15 base pages stay free) and every other
// block, normal and reserve, is taken. give_back() returns them all.
struct OrderZeroOnly {
    PagePool& pool;
    Page* splitter;
    std::vector<Page*> hog;
    explicit OrderZeroOnly(PagePool& p) : pool(p), splitter(p.alloc(0, Depth::kNormal)) {
        while (Page* q = pool.alloc(4, Depth::kNormal))
            hog.push_back(q);
        while (Page* q = pool.alloc(4, Depth::kMemalloc))
            hog.push_back(q);
    }
    void give_back() {
        pool.release(splitter);
        for (Page* q : hog)
            pool.release(q);
    }
};
}  // namespace

TEST_CASE("a refill charges the page once; fragments only move the local bias") {
    PagePool pool(small_pool());
    FragCache cache(pool);
    void* a = cache.alloc(100);
    REQUIRE(a);
    const Page* page = cache.page();
    CHECK(refs(page) == kPage + 1);
    CHECK(cache.bias() == kPage);
    void* b = cache.alloc(200);
    void* c = cache.alloc(300);
    CHECK(static_cast<std::byte*>(b) == static_cast<std::byte*>(a) + 100);
    CHECK(static_cast<std::byte*>(c) == static_cast<std::byte*>(b) + 200);
    CHECK(refs(page) == kPage + 1);  // untouched by the three allocations
    CHECK(refs(page) == 3 + cache.bias());
    frag_free(b);
    CHECK(refs(page) == 2 + cache.bias());
    cache.free(a);
    frag_free(c);
    CHECK(refs(page) == cache.bias());
    CHECK(cache.stats().refills.get() == 1);
    CHECK(cache.stats().fragments.get() == 3);
}

TEST_CASE("a page whose fragments are all gone is reused in place") {
    PagePool pool(small_pool());
    FragCache cache(pool);
    std::vector<void*> frags;
    for (int i = 0; i < 4; ++i)
        frags.push_back(cache.alloc(kPage / 4));
    const Page* page = cache.page();
    std::byte* first = static_cast<std::byte*>(frags[0]);
    for (void* f : frags)
        frag_free(f);
    void* again = cache.alloc(kPage / 2);
    CHECK(again == first);
    CHECK(cache.page() == page);
    CHECK(cache.stats().reuses.get() == 1);
    CHECK(cache.stats().refills.get() == 1);
    CHECK(pool.pages_in_use() == 1);
    frag_free(again);
}

TEST_CASE("a full page retires with its bias; owner frees of its fragments stay local") {
    PagePool pool(small_pool());
    FragCache cache(pool);
    void* a = cache.alloc(kPage - 10);
    void* b = cache.alloc(kPage - 10);  // does not fit: the first page retires, a new one comes
    const Page* first = pool.page_of(a);
    CHECK(cache.page() != first);
    CHECK(cache.bias_of(first) == kPage);  // the bias stays with the cache
    CHECK(refs(first) == 1 + cache.bias_of(first));
    cache.free(a);  // no atomic op: the retired page's bias takes the reference back
    CHECK(refs(first) == kPage + 1);
    CHECK(cache.bias_of(first) == kPage + 1);
    void* c = cache.alloc(kPage - 10);  // the retired page, all references back, is reused
    CHECK(c == a);
    CHECK(cache.stats().reuses.get() == 1);
    CHECK(cache.stats().refills.get() == 2);
    cache.free(b);
    cache.free(c);
    cache.drain();
    CHECK(pool.pages_in_use() == 0);
}

TEST_CASE("a page pushed out of a full ring is left to its fragments and returns with the last") {
    PagePool pool(PoolConfig{8 * kMiB, 4, 0, false});
    FragCache cache(pool);
    std::vector<void*> frags;
    for (unsigned i = 0; i < (FragCache::kSlots - 1) + 2; ++i)
        frags.push_back(cache.alloc(kPage));
    CHECK(cache.stats().evictions.get() == 1);
    const Page* oldest = pool.page_of(frags[0]);
    CHECK(cache.bias_of(oldest) == 0);
    CHECK(refs(oldest) == 1);  // only the fragment's reference is left
    CHECK(pool.pages_in_use() == (FragCache::kSlots - 1) + 2);
    cache.free(frags[0]);  // not held by the cache any more: the atomic path
    CHECK(pool.pages_in_use() == (FragCache::kSlots - 1) + 1);
    frag_free(frags[1]);  // held (retired): the count falls to the bias, the page stays cached
    CHECK(refs(pool.page_of(frags[1])) == cache.bias_of(pool.page_of(frags[1])));
    CHECK(pool.pages_in_use() == (FragCache::kSlots - 1) + 1);
    for (std::size_t i = 2; i < frags.size(); ++i)
        cache.free(frags[i]);
    cache.drain();
    CHECK(pool.pages_in_use() == 0);
}

TEST_CASE("alignment is honoured within the page") {
    PagePool pool(small_pool());
    FragCache cache(pool);
    std::vector<void*> frags;
    for (std::size_t align : {1, 2, 8, 64, 256, 4096}) {
        frags.push_back(cache.alloc(3));
        void* p = cache.alloc(5, align);
        CHECK(reinterpret_cast<std::uintptr_t>(p) % align == 0);
        frags.push_back(p);
    }
    void* whole = cache.alloc(kPage, kPage);  // a page-aligned full page: always a fresh one
    CHECK(reinterpret_cast<std::uintptr_t>(whole) % kPage == 0);
    frags.push_back(whole);
    for (void* f : frags)
        frag_free(f);
    cache.drain();
    CHECK(pool.pages_in_use() == 0);
}

TEST_CASE("probe exposes the free tail without charging it; commit charges what arrived") {
    PagePool pool(small_pool());
    FragCache cache(pool);
    void* head = cache.alloc(1000);
    auto tail = cache.probe(512);
    REQUIRE(tail.size() == kPage - 1000);
    CHECK(tail.data() == static_cast<std::byte*>(head) + 1000);
    CHECK(cache.bias() == kPage);  // nothing charged by probe
    std::memset(tail.data(), 0xab, 700);
    void* got = cache.commit(700);
    CHECK(got == tail.data());
    CHECK(cache.bias() == kPage - 1);
    CHECK(static_cast<unsigned char*>(got)[699] == 0xab);
    CHECK(cache.probe(1).data() == static_cast<std::byte*>(got) + 700);
    CHECK(cache.commit(0) == nullptr);  // an empty receive makes no fragment
    CHECK(cache.bias() == kPage - 1);
    auto full = cache.probe(kPage);  // needs a whole page: refill
    CHECK(full.size() == kPage);
    CHECK(cache.commit(kPage) == full.data());
    for (void* f : {head, got, static_cast<void*>(full.data())})
        frag_free(f);
    cache.drain();
    CHECK(pool.pages_in_use() == 0);
}

TEST_CASE("drain(page, count) drops several references in one call") {
    PagePool pool(small_pool());
    FragCache cache(pool);
    std::vector<void*> frags;
    for (int i = 0; i < 10; ++i)
        frags.push_back(cache.alloc(128));
    Page* page = pool.page_of(frags[0]);
    cache.drain();  // the cache lets go of the page; 10 fragment references remain
    CHECK(refs(page) == 10);
    drain(pool, *page, 6);
    CHECK(refs(page) == 4);
    CHECK(pool.pages_in_use() == 1);
    drain(frags[9], 4);  // by any pointer into the page
    CHECK(pool.pages_in_use() == 0);
    CHECK(cache.stats().drains.get() == 1);
}

TEST_CASE("reserve pages serve past the soft limit and are never reused in place") {
    PagePool pool(small_pool());
    std::vector<Page*> hog;
    while (Page* p = pool.alloc(4, Depth::kNormal))
        hog.push_back(p);  // the normal zone is gone
    FragCache cache(pool);
    void* a = cache.alloc(kPage / 2);
    REQUIRE(a);
    const Page* reserve = cache.page();
    CHECK(reserve->reserve);
    CHECK(cache.stats().reserve_pages.get() == 1);
    frag_free(a);
    for (Page* p : hog)
        pool.release(p);           // pressure gone
    void* b = cache.alloc(kPage);  // does not fit: reconcile hits zero, but reserve → back to pool
    CHECK(cache.stats().reuses.get() == 0);
    CHECK_FALSE(cache.page()->reserve);
    frag_free(b);
    cache.drain();
    CHECK(pool.pages_in_use() == 0);
}

TEST_CASE("exhausted high orders fall back to order 0; too-large requests then fail cleanly") {
    PagePool pool(small_pool());
    OrderZeroOnly only(pool);
    FragCache cache(pool);
    void* a = cache.alloc(1000);
    REQUIRE(a);
    CHECK(cache.page()->order == 0);
    CHECK(cache.stats().fallbacks.get() == 1);
    const Page* small = cache.page();
    CHECK(cache.alloc(8000) == nullptr);  // larger than a base page: no order-N page to be had
    CHECK(cache.page() == small);         // and the cached page was not dropped
    CHECK(cache.stats().failures.get() == 1);
    void* b = cache.alloc(3000);
    CHECK(b);
    frag_free(a);
    frag_free(b);
    cache.drain();
    only.give_back();
    CHECK(pool.pages_in_use() == 0);
}

TEST_CASE("exhaustion returns null, counts it, and recovers when pages come back") {
    PagePool pool(small_pool());
    FragCache cache(pool);
    std::vector<void*> held;
    while (void* p = cache.alloc(kPage))
        held.push_back(p);
    CHECK(held.size() == 31);  // every block but the reserve's last quarter
    CHECK(cache.stats().failures.get() == 1);
    FragCache reclaimer(pool, Depth::kMemalloc);  // a cache that gives memory back gets it
    void* copy = reclaimer.alloc(kPage);
    CHECK(copy != nullptr);
    CHECK(reclaimer.alloc(kPage) == nullptr);
    frag_free(held.back());
    held.pop_back();
    CHECK(cache.alloc(kPage) == nullptr);  // the page came back, the reclaimer still holds its own
    frag_free(copy);
    reclaimer.drain();
    void* again = cache.alloc(kPage);
    CHECK(again != nullptr);
    held.push_back(again);
    for (void* p : held)
        frag_free(p);
    cache.drain();
    CHECK(pool.pages_in_use() == 0);
}

TEST_CASE("injected page failures surface as a null fragment") {
    PagePool pool(small_pool());
    FragCache cache(pool);
    pool.inject_failures(4);  // high order and order 0, normal and reserve
    CHECK(cache.alloc(64) == nullptr);
    void* p = cache.alloc(64);
    CHECK(p);
    frag_free(p);
}

TEST_CASE("FragRef frees on scope exit and can hand ownership on") {
    PagePool pool(small_pool());
    FragCache cache(pool);
    const Page* page = nullptr;
    void* kept = nullptr;
    {
        FragRef a(cache.alloc(10), 10);
        FragRef b(cache.alloc(20), 20);
        page = cache.page();
        CHECK(refs(page) == 2 + cache.bias());
        FragRef c = std::move(b);
        CHECK_FALSE(b);
        kept = c.release();
    }
    CHECK(refs(page) == 1 + cache.bias());
    frag_free(kept);
    cache.drain();
    CHECK(pool.pages_in_use() == 0);
}

TEST_CASE("owner frees of the cached page move the bias back and rewind it, with no atomic op") {
    PagePool pool(small_pool());
    FragCache cache(pool);
    void* a = cache.alloc(100);
    void* b = cache.alloc(100);
    const Page* page = cache.page();
    cache.free(a);
    CHECK(refs(page) == kPage + 1);  // the count was never touched
    CHECK(refs(page) == 1 + cache.bias());
    cache.free(b);
    CHECK(cache.bias() == kPage + 1);
    CHECK(cache.stats().rewinds.get() == 1);
    CHECK(cache.alloc(100) == a);  // rewound to offset 0

    // One atomic free in between: the bias can no longer fill up, so no rewind; the next
    // reconcile still finds the page free and reuses it.
    void* c = cache.alloc(100);
    frag_free(c);
    cache.free(a);
    CHECK(cache.stats().rewinds.get() == 1);
    CHECK(refs(page) == cache.bias());
    CHECK(cache.alloc(kPage) == a);
    CHECK(cache.stats().reuses.get() == 1);
    cache.free(a);
    cache.drain();
    CHECK(pool.pages_in_use() == 0);
}

TEST_CASE("owner frees of retired order-0 pages go back to their bias, and the pages are reused") {
    PagePool pool(small_pool());
    OrderZeroOnly only(pool);
    FragCache cache(pool);
    std::vector<void*> frags;
    for (int i = 0; i < 6; ++i)  // one 3000-byte fragment per 4 KiB page: six pages of one block
        frags.push_back(cache.alloc(3000));
    const std::size_t in_use = pool.pages_in_use();
    CHECK(cache.stats().fallbacks.get() == 6);
    for (void* f : frags) {
        const Page* p = pool.page_of(f);
        CHECK(p->order == 0);
        cache.free(f);  // retired pages of a split block: found through the Page, no atomic op
        CHECK(refs(p) == cache.bias_of(p));
    }
    for (int i = 0; i < 6; ++i)
        frags[i] = cache.alloc(3000);
    CHECK(pool.pages_in_use() == in_use);  // every page came from the cache's own ring
    CHECK(cache.stats().reuses.get() >= 5);
    for (void* f : frags)
        cache.free(f);
    cache.drain();
    only.give_back();
    CHECK(pool.pages_in_use() == 0);
}

TEST_CASE("a split fragment is two references: from the bias while held, the count after") {
    PagePool pool(small_pool());
    FragCache cache(pool);
    auto* a = static_cast<std::byte*>(cache.alloc(1000));
    REQUIRE(a);
    const Page* page = cache.page();
    std::byte* tail = cache.split(a, 1000, 400);  // the cache holds the page: no atomic op
    CHECK(tail == a + 400);
    CHECK(refs(page) == kPage + 1);  // the count is untouched
    CHECK(refs(page) == 2 + cache.bias());
    cache.drain();  // the cache lets go: the page is its fragments' alone
    CHECK(refs(page) == 2);
    std::byte* last = cache.split(tail, 600, 100);  // no holder: one increment of the count
    CHECK(last == tail + 100);
    CHECK(refs(page) == 3);
    frag_free(a);
    frag_free(tail);
    CHECK(pool.pages_in_use() == 1);
    frag_free(last);
    CHECK(pool.pages_in_use() == 0);
    CHECK(cache.stats().fragments.get() == 3);
}
