// Alloc+free of 64 B - 64 KiB fragments: FragCache vs malloc/free vs a naive fragment allocator
// that does one atomic increment per fragment (what the bias trick avoids). Each iteration carves a
// batch of fragments and frees them, so pages are refilled or reused as in a receive burst.
// The bm_cross_* variants free on another thread: the owner allocates a burst and hands it over a
// bounded single-producer queue to a thread that frees it (sends completing on another worker,
// remote frees), the same queue for every allocator.
#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

#include "alloc/frag.hpp"
#include "alloc/frag_cache.hpp"

namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr int kBatch = 32;

// The naive page-fragment allocator: same pages and pool, but it takes one atomic reference per
// fragment (get_page per allocation), the cost the kernel's bias trick was written to remove.
class NaiveFragAlloc {
  public:
    explicit NaiveFragAlloc(fp::PagePool& pool) : pool_(pool) {}
    void* alloc(std::size_t size) {
        if (!page_ || offset_ + size > fp::PagePool::page_bytes(*page_)) {
            if (page_ && fp::page_ref_sub_and_test(*page_, 1)) fp::page_release(pool_, *page_);
            page_ = pool_.alloc(pool_.order(), fp::Depth::kNormal);
            if (!page_) return nullptr;
            page_->refs.store(1, std::memory_order_relaxed);
            offset_ = 0;
        }
        page_->refs.fetch_add(1, std::memory_order_relaxed);
        void* p = pool_.address(page_) + offset_;
        offset_ += size;
        return p;
    }

  private:
    fp::PagePool& pool_;
    fp::Page* page_ = nullptr;
    std::size_t offset_ = 0;
};

// The measured loop, shared by every allocator: a burst of kBatch allocations, then their frees.
template <class Alloc, class Free>
void burst(benchmark::State& state, Alloc&& alloc, Free&& free) {
    const auto size = static_cast<std::size_t>(state.range(0));
    void* frags[kBatch];
    for (auto _ : state) {
        for (auto& f : frags)
            benchmark::DoNotOptimize(f = alloc(size));
        for (auto* f : frags)
            free(f);
    }
    state.SetItemsProcessed(state.iterations() * kBatch);
}

// A bounded single-producer, single-consumer queue of bursts (kBatch fragments each, handed over
// together as a worker hands a batch of completions), each index on its own line.
class Handoff {
  public:
    using Burst = std::array<void*, kBatch>;
    bool push(const Burst& b) noexcept {
        const std::size_t h = head_.load(std::memory_order_relaxed);
        if (h - tail_.load(std::memory_order_acquire) == kDepth) return false;
        slot_[h % kDepth] = b;
        head_.store(h + 1, std::memory_order_release);
        return true;
    }
    bool pop(Burst& b) noexcept {
        const std::size_t t = tail_.load(std::memory_order_relaxed);
        if (t == head_.load(std::memory_order_acquire)) return false;
        b = slot_[t % kDepth];
        tail_.store(t + 1, std::memory_order_release);
        return true;
    }
    void close() noexcept { closed_.store(true, std::memory_order_release); }
    bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }

  private:
    static constexpr std::size_t kDepth = 8;  // 256 fragments, 16 MiB in flight at 64 KiB
    std::array<Burst, kDepth> slot_{};
    alignas(64) std::atomic<std::size_t> head_{0};
    alignas(64) std::atomic<std::size_t> tail_{0};
    alignas(64) std::atomic<bool> closed_{false};
};

// The owner allocates bursts and hands each to a freeing thread; `alloc` may return null while
// the pool waits for the other thread's frees (it then takes them back and retries).
template <class Alloc, class Free>
void cross(benchmark::State& state, Alloc&& alloc, Free&& free) {
    const auto size = static_cast<std::size_t>(state.range(0));
    Handoff q;
    std::thread freer([&] {
        Handoff::Burst b;
        for (;;) {
            if (q.pop(b)) {
                for (void* p : b)
                    free(p);
            } else if (q.closed()) {
                break;
            }
        }
    });
    Handoff::Burst b;
    for (auto _ : state) {
        for (auto& f : b) {
            while (!(f = alloc(size))) {
            }
            benchmark::DoNotOptimize(f);
        }
        while (!q.push(b)) {
        }
    }
    q.close();
    freer.join();
    while (q.pop(b))
        for (void* p : b)
            free(p);
    state.SetItemsProcessed(state.iterations() * kBatch);
}

// Where the fragments are freed: on the thread that allocated them, or handed to another.
struct OneThread {
    template <class Alloc, class Free>
    static void run(benchmark::State& state, Alloc&& alloc, Free&& free) {
        burst(state, alloc, free);
    }
};
struct OtherThread {
    template <class Alloc, class Free>
    static void run(benchmark::State& state, Alloc&& alloc, Free&& free) {
        cross(state, alloc, free);
    }
};

void bm_frag_cache(benchmark::State& state) {
    fp::PagePool pool(fp::PoolConfig{64 * kMiB, 4, 0, false});
    fp::FragCache cache(pool);
    burst(
        state, [&](std::size_t n) { return cache.alloc(n); }, [&](void* f) { cache.free(f); });
}

// The same cache, but every fragment freed with frag_free(): one atomic decrement each, as the
// kernel's page_frag_free() and as any free from a thread other than the owner.
template <class Where>
void bm_frag_cache_atomic_free(benchmark::State& state) {
    fp::PagePool pool(fp::PoolConfig{64 * kMiB, 4, 0, false});
    fp::FragCache cache(pool);
    Where::run(
        state, [&](std::size_t n) { return cache.alloc(n); },
        [&](void* f) { fp::frag_free(pool, f); });
}

template <class Where>
void bm_malloc(benchmark::State& state) {
    Where::run(
        state, [](std::size_t n) { return std::malloc(n); }, [](void* f) { std::free(f); });
}

template <class Where>
void bm_naive_atomic(benchmark::State& state) {
    fp::PagePool pool(fp::PoolConfig{64 * kMiB, 4, 0, false});
    NaiveFragAlloc naive(pool);
    Where::run(
        state, [&](std::size_t n) { return naive.alloc(n); },
        [&](void* f) { fp::frag_free(pool, f); });
}

}  // namespace

BENCHMARK(bm_frag_cache)->RangeMultiplier(4)->Range(64, 64 << 10);
BENCHMARK(bm_frag_cache_atomic_free<OneThread>)
    ->Name("bm_frag_cache_atomic_free")
    ->RangeMultiplier(4)
    ->Range(64, 64 << 10);
BENCHMARK(bm_malloc<OneThread>)->Name("bm_malloc")->RangeMultiplier(4)->Range(64, 64 << 10);
BENCHMARK(bm_naive_atomic<OneThread>)
    ->Name("bm_naive_atomic")
    ->RangeMultiplier(4)
    ->Range(64, 64 << 10);
// Freed on another thread: wall time (both threads work)
BENCHMARK(bm_frag_cache_atomic_free<OtherThread>)
    ->Name("bm_cross_frag_cache")
    ->RangeMultiplier(4)
    ->Range(64, 64 << 10)
    ->UseRealTime();
BENCHMARK(bm_malloc<OtherThread>)
    ->Name("bm_cross_malloc")
    ->RangeMultiplier(4)
    ->Range(64, 64 << 10)
    ->UseRealTime();
BENCHMARK(bm_naive_atomic<OtherThread>)
    ->Name("bm_cross_naive_atomic")
    ->RangeMultiplier(4)
    ->Range(64, 64 << 10)
    ->UseRealTime();
BENCHMARK_MAIN();
