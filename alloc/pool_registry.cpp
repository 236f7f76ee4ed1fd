#include "alloc/pool_registry.hpp"

#include <atomic>
#include <cstdint>
#include <stdexcept>

namespace fp {
namespace {

struct Slot {
    std::atomic<bool> claimed{false};
    std::atomic<std::uintptr_t> lo{0};
    std::atomic<std::uintptr_t> hi{0};
    std::atomic<PagePool*> pool{nullptr};  // published last, with release
};

constexpr std::size_t kSlots = 256;  // pools alive at once: one per worker, plus tests and tools
Slot g_slots[kSlots];
std::atomic<std::size_t> g_used{0};  // slots ever claimed: lookups scan only these

}  // namespace

void registry_add(PagePool* pool, const void* base, std::size_t size) {
    for (std::size_t i = 0; i < kSlots; ++i) {
        Slot& s = g_slots[i];
        bool expected = false;
        if (!s.claimed.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) continue;
        auto lo = reinterpret_cast<std::uintptr_t>(base);
        s.lo.store(lo, std::memory_order_relaxed);
        s.hi.store(lo + size, std::memory_order_relaxed);
        s.pool.store(pool, std::memory_order_release);
        std::size_t used = g_used.load(std::memory_order_relaxed);
        while (used < i + 1 &&
               !g_used.compare_exchange_weak(used, i + 1, std::memory_order_release))
            ;
        return;
    }
    throw std::length_error("page pool registry is full (256 live pools)");
}

void registry_remove(PagePool* pool) noexcept {
    for (Slot& s : g_slots) {
        if (s.pool.load(std::memory_order_relaxed) != pool) continue;
        s.pool.store(nullptr, std::memory_order_release);
        s.claimed.store(false, std::memory_order_release);
        return;
    }
}

PagePool* registry_find(const void* p) noexcept {
    auto a = reinterpret_cast<std::uintptr_t>(p);
    std::size_t used = g_used.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < used; ++i) {
        Slot& s = g_slots[i];
        PagePool* pool = s.pool.load(std::memory_order_acquire);
        if (pool && a >= s.lo.load(std::memory_order_relaxed) &&
            a < s.hi.load(std::memory_order_relaxed))
            return pool;
    }
    return nullptr;
}

}  // namespace fp
