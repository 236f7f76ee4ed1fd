#pragma once
// SharedFragCache: the kernel's netdev_alloc_cache, usable from any context. The same FragCache
// over its own pool, behind a mutex, for code outside a worker (admin thread, tools, tests).
// Fragments are freed with frag_free() from any thread, without the lock.
#include <cstddef>
#include <mutex>

#include "alloc/frag_cache.hpp"
#include "alloc/page_pool.hpp"

namespace fp {

class SharedFragCache {
  public:
    explicit SharedFragCache(const PoolConfig& config)
        : pool_(config, PagePool::Owner::kShared), cache_(pool_) {}

    void* alloc(std::size_t size, std::size_t align = 1) noexcept {
        std::lock_guard lock(mu_);
        return cache_.alloc(size, align);
    }
    void drain() noexcept {
        std::lock_guard lock(mu_);
        cache_.drain();
    }
    std::size_t pages_in_use() noexcept {
        std::lock_guard lock(mu_);
        return pool_.pages_in_use();
    }
    const FragStats& stats() const noexcept { return cache_.stats(); }

  private:
    PagePool pool_;
    std::mutex mu_;
    FragCache cache_;  // declared last: drained before the pool goes
};

}  // namespace fp
