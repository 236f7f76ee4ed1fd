// Cross-thread frees, run under TSan: fragments carved by one owner thread are freed on others
// (the page count is the only shared state), pages whose last reference drops on a foreign thread
// come back through the owner's remote list, and SharedFragCache is used from many threads.
#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "alloc/frag.hpp"
#include "alloc/frag_cache.hpp"
#include "alloc/shared_frag_cache.hpp"

using namespace fp;

namespace {
constexpr std::size_t kMiB = std::size_t{1} << 20;

// A bounded hand-off queue from the owner to the freeing threads.
struct Handoff {
    std::mutex mu;
    std::vector<std::pair<void*, std::size_t>> items;
    bool done = false;
};
}  // namespace

TEST_CASE("fragments allocated on the owner thread are freed on three others") {
    PagePool pool(PoolConfig{8 * kMiB, 4, 0, false});
    FragCache cache(pool);
    Handoff q;
    std::atomic<std::size_t> freed{0};
    std::vector<std::thread> freers;
    for (int t = 0; t < 3; ++t)
        freers.emplace_back([&] {
            for (;;) {
                std::pair<void*, std::size_t> item{nullptr, 0};
                {
                    std::lock_guard lock(q.mu);
                    if (!q.items.empty()) {
                        item = q.items.back();
                        q.items.pop_back();
                    } else if (q.done) {
                        return;
                    }
                }
                if (!item.first) {
                    std::this_thread::yield();
                    continue;
                }
                auto* b = static_cast<unsigned char*>(item.first);
                CHECK(b[0] == static_cast<unsigned char>(item.second));  // written by the owner
                frag_free(item.first);
                freed.fetch_add(1, std::memory_order_relaxed);
            }
        });
    constexpr std::size_t kFrags = 20000;
    std::size_t made = 0;
    while (made < kFrags) {
        std::size_t n = 1 + (made * 7919) % 3000;
        void* p = cache.alloc(n);
        if (!p) {  // everything is in flight to the freers: take back what they returned
            pool.reclaim();
            std::this_thread::yield();
            continue;
        }
        std::memset(p, static_cast<unsigned char>(n), n);
        std::lock_guard lock(q.mu);
        q.items.emplace_back(p, n);
        ++made;
    }
    {
        std::lock_guard lock(q.mu);
        q.done = true;
    }
    for (auto& t : freers)
        t.join();
    CHECK(freed.load() == kFrags);
    CHECK(cache.stats().fragments.get() == kFrags);
    cache.drain();
    CHECK(pool.pages_in_use() == 0);
}

TEST_CASE("the owner reuses a page in place after foreign threads freed its fragments") {
    PagePool pool(PoolConfig{2 * kMiB, 4, 0, false});
    FragCache cache(pool);
    std::vector<void*> frags;
    for (int i = 0; i < 64; ++i)
        frags.push_back(cache.alloc(1024));
    const Page* page = cache.page();
    std::thread([&] {
        for (std::size_t i = 0; i < frags.size(); i += 2)
            frag_free(frags[i]);
    }).join();
    std::thread([&] {
        for (std::size_t i = 1; i < frags.size(); i += 2)
            frag_free(frags[i]);
    }).join();
    void* again = cache.alloc(100);
    CHECK(cache.page() == page);
    CHECK(cache.stats().reuses.get() == 1);
    frag_free(again);
    cache.drain();
    CHECK(pool.pages_in_use() == 0);
}

TEST_CASE("SharedFragCache serves and frees from many threads at once") {
    SharedFragCache shared(PoolConfig{8 * kMiB, 4, 0, false});
    std::vector<std::thread> threads;
    std::atomic<std::size_t> failures{0};
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            std::vector<FragRef> mine;
            for (int i = 0; i < 5000; ++i) {
                std::size_t n = 1 + static_cast<std::size_t>((i * 31 + t) % 2000);
                void* p = shared.alloc(n, 8);
                if (!p) {
                    failures.fetch_add(1);
                    continue;
                }
                std::memset(p, t, n);
                mine.emplace_back(p, n);
                if (mine.size() > 32) mine.erase(mine.begin());
            }
            for (auto& f : mine)
                CHECK(f.data()[f.size() - 1] == std::byte(t));
        });
    for (auto& t : threads)
        t.join();
    CHECK(failures.load() == 0);
    CHECK(shared.stats().fragments.get() == 20000);
    shared.drain();
    CHECK(shared.pages_in_use() == 0);
}
