#pragma once
// A statistic written by one thread (its owner) and read by any: a relaxed atomic that the owner
// bumps with a plain load+store, which costs the same as a plain increment on x86 and arm64.
#include <atomic>
#include <cstdint>

namespace fp {

class Counter {
  public:
    void add(std::uint64_t n = 1) noexcept {
        v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    void sub(std::uint64_t n = 1) noexcept {  // a gauge its owner moves both ways
        v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
    }
    void set(std::uint64_t v) noexcept { v_.store(v, std::memory_order_relaxed); }  // a gauge
    std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

  private:
    std::atomic<std::uint64_t> v_{0};
};

}  // namespace fp
